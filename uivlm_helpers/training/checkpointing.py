"""Gradient checkpointing on only some of the language model's layers (``training.uncheckpointed_layers``).

With ``training.gradient_checkpointing`` the Trainer checkpoints every decoder layer: each layer keeps only
its input and recomputes its activations during the backward pass, one more forward of the whole language
model per step. When memory allows, the last ``N`` layers can keep their activations instead and skip that
recomputation: the step gets faster by about ``N / layers`` of one forward, and the peak grows by about
``N - 1`` layers' activations (:func:`uivlm_helpers.training.memory.plan_uncheckpointed_layers` finds the largest
``N`` that fits a budget; ``auto`` uses it). The last layers are the ones left out because the backward
pass frees their activations before any checkpointed layer recomputes its own: the two never add up, so
the first layer left out costs next to nothing (measured on Qwen2-VL-7B, bench/README.md 5c).

Checkpointing changes what is stored, never what is computed: losses and gradients are the same either way.
"""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.modeling_layers import GradientCheckpointingLayer

from . import memory


def language_model_layers(wrapper) -> list[tuple[str, object]]:
    """The language model's checkpointable layers (``GradientCheckpointingLayer``), in forward order.

    Vision-tower and projector blocks are left out: the tower is frozen (or its features are cached),
    so it is not where the step's recomputation goes. Encoder-decoder models list encoder then decoder.
    """

    prefixes = tuple(wrapper.adapter.vision_module_prefixes)
    return [(name, module) for name, module in wrapper.model.named_modules()
            if isinstance(module, GradientCheckpointingLayer)
            and not any(prefix in name + "." for prefix in prefixes)]


def checkpointed_layer_count(wrapper) -> tuple[int, int]:
    """(checkpointed, total) language-model layers, as the model's flags stand now."""
    layers = language_model_layers(wrapper)
    return sum(bool(getattr(module, "gradient_checkpointing", False)) for _, module in layers), len(layers)


def last_layers(wrapper, count: int) -> list[tuple[str, object]]:
    """The last ``count`` language-model layers (``(name, module)``, in forward order).

    Raises:
        ValueError: ``count`` is more than the language model has layers.
    """
    layers = language_model_layers(wrapper)
    if count > len(layers):
        raise ValueError(f"training.uncheckpointed_layers={count}: the language model of "
                         f"{wrapper.model_name} has {len(layers)} layers")
    return layers[len(layers) - count:] if count else []


def resolve_uncheckpointed_layers(config, wrapper) -> tuple[int, str]:
    """``training.uncheckpointed_layers`` as a number of this model's layers, and one line saying why
    (``auto``: :func:`uivlm_helpers.training.memory.auto_uncheckpointed_layers`)."""

    setting = config.training.uncheckpointed_layers
    if setting != "auto":
        return setting, f"training.uncheckpointed_layers={setting}"
    count, reason = memory.auto_uncheckpointed_layers(config)
    return min(count, len(language_model_layers(wrapper))), reason


class PartialCheckpointing(TrainerCallback):
    """Leaves the last ``count`` language-model layers unchecked once the Trainer has enabled checkpointing.

    ``Trainer.train`` turns checkpointing on for every layer just before ``on_train_begin``, on fresh and
    resumed runs alike, so this is the first moment the flags can be changed and stay changed.
    """

    def __init__(self, wrapper, count: int, reason: str = ""):
        # Chosen (and a count beyond the model refused) here, before the feature cache is built.
        self.wrapper, self.reason = wrapper, reason
        self.layers = last_layers(wrapper, count)

    def on_train_begin(self, args, state, control, **kwargs):
        for _, module in self.layers:
            module.gradient_checkpointing = False
        checkpointed, total = checkpointed_layer_count(self.wrapper)
        print(f"gradient checkpointing on {checkpointed} of {total} language-model layers "
              f"(the last {len(self.layers)} keep their activations; {self.reason})")
