"""How much device memory training needs, estimated before loading anything.

One job per module, each importing only the ones before it:

* :mod:`.components`: what each item costs (bytes per element, per token, per image; LoRA parameter
  counts; the settings a configuration implies; the allocator and CUDA-context overhead);
* :mod:`.estimate`: :func:`estimate_training_memory` adds the items up at the step's peak (the episode
  history's tokens, :func:`history_cost`, included), with the
  layer plan that ``training.uncheckpointed_layers: auto`` resolves to (:func:`plan_uncheckpointed_layers`,
  :func:`auto_uncheckpointed_layers`) and :func:`compare_with_measurement`;
* :mod:`.suggest`: :func:`suggest_changes`, the cheapest settings change that makes an estimate fit;
* :mod:`.present`: the estimate as a table, a figure, a one-line verdict (:func:`fits_message`) and a
  widget (:class:`EstimateView`).

The measured peak is :func:`uivlm_helpers.training.profiling.profile_training_peak`.
"""

from .components import (ALLOCATOR_SLACK, COMPONENTS, CPU_PROCESS_GIB, CUDA_CONTEXT_GIB, DEFAULT_ANSWER_TOKENS,
                         DEFAULT_TEXT_TOKENS, EPISODE_SOURCES, GIB, HISTORY_ACTION_SAMPLES, HISTORY_ACTION_TOKENS,
                         HISTORY_BLOCK_TOKENS, HISTORY_IMAGE_WRAPPER_TOKENS, INT8_BYTES, LIGER_FAMILIES, NF4_BYTES,
                         history_action_tokens, history_pixel_budget, history_window_for, layer_bytes,
                         lora_param_count, multi_image_families)
from .estimate import (auto_uncheckpointed_layers, compare_with_measurement, estimate_training_memory,
                       history_cost, plan_uncheckpointed_layers)
from .present import EstimateView, estimate_figure, estimate_table, fits_message
from .suggest import suggest_changes

__all__ = [
    "ALLOCATOR_SLACK", "COMPONENTS", "CPU_PROCESS_GIB", "CUDA_CONTEXT_GIB", "DEFAULT_ANSWER_TOKENS",
    "DEFAULT_TEXT_TOKENS", "EPISODE_SOURCES", "GIB", "HISTORY_ACTION_SAMPLES", "HISTORY_ACTION_TOKENS",
    "HISTORY_BLOCK_TOKENS", "HISTORY_IMAGE_WRAPPER_TOKENS", "INT8_BYTES", "LIGER_FAMILIES", "NF4_BYTES", "EstimateView",
    "auto_uncheckpointed_layers", "compare_with_measurement", "estimate_figure", "estimate_table",
    "estimate_training_memory", "fits_message", "history_action_tokens", "history_cost", "history_pixel_budget",
    "history_window_for", "layer_bytes", "lora_param_count", "multi_image_families", "plan_uncheckpointed_layers",
    "suggest_changes",
]
