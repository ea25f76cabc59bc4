"""The family plug-in: everything that makes one model family what it is, in one object.

Each family module (``uivlm_helpers/families/<family>.py``) defines one :class:`FamilyPlugin` named
``FAMILY``; :mod:`.registry` lists the modules. The rest of the package reads these fields and keeps no
family lists or family-name rules of its own.

Fields:
    name: the family's name (``"qwen2_vl"``), also the tiny recipes' and specs' ``family``.
    display: its title in the model picker (``"Qwen2-VL"``).
    name_patterns: regular expressions matched (lower case) against Hub names; the longest pattern of all
        families is tried first, so ``qwen2\\.5-vl`` wins over ``qwen2-vl``.
    model_types: the ``config.json`` ``model_type`` values of the family (the first is the family's own,
        read by :attr:`read_hf_config`).
    adapter: the :class:`.adapters.ChatTemplateAdapter` (prompt layout, label start, coordinate space,
        vision modules, LoRA targets of the language model and - ``vision_lora_target_modules`` - of the
        vision tower, generation settings, peft task type).
    model_class: the transformers class ``AutoModelForImageTextToText`` builds (its name).
    processor_class, tokenizer_class: the classes ``AutoProcessor`` and ``tokenizer_config.json`` name in the
        published checkpoints (the tiny builder writes the same).
    tiny_models: ``{public name: recipe}`` of the embedded tiny checkpoints (the recipe's hash names the
        built folder, so a recipe is never edited without rebuilding).
    tiny_builder: ``builder(out_dir, recipe)`` writes a checkpoint (weights, tokenizer, processor).
    published: ``{Hub name: spec}`` - the published full-size configurations (see
        :func:`uivlm_helpers.models.model_configs.published_config`; each says in ``sources`` where its values were read).
    hub_billions: ``{Hub name: billions}`` - the parameter count the Hub shows for each published checkpoint
        (from its safetensors), to two decimals; the spec's counts must round to it.
    pinned_counts: ``{Hub name: parameter counts}`` measured on the meta device, for published models whose
        counts :attr:`count_params` does not compute.
    read_hf_config: ``read(config, image_processor) -> spec``: a checkpoint's ``config.json`` (defaults
        filled in) and image-processor settings as a spec of the published shape.
    build_config: ``build(spec) -> transformers config`` (random-weight full-size or meta builds).
    sub_models: ``(text model_type, vision model_type)`` the spec describes; a config.json naming other
        sub-models is refused. None: not checked (the family has one fixed pair).
    image_tokens: ``count(rule, width, height) -> {"tokens", "patches", "resized"}`` for a family whose
        image-token rule is its own (None: the generic ``fixed`` / ``qwen_smart_resize`` rules of
        :func:`uivlm_helpers.models.model_configs.image_token_count`).
    count_params: ``count(spec) -> counts`` by formula (exact, no transformers import); None: pinned
        counts or a meta-device build.
    fused_cross_entropy: liger-kernel has a fused-linear-cross-entropy patch for this family.
    rope_index: the language model uses M-RoPE, whose 3-D ``position_ids`` come from the model's
        ``get_rope_index`` (needed when cached features replace the vision inputs).
    feature_cache: vision features can be cached at all (the model exposes ``get_image_features`` and an
        image-token id); whether they *are* cached is :func:`uivlm_helpers.training.features.cache_decision`'s.
    feature_cache_reason: why not, when ``feature_cache`` is False.
    multi_image: the processor and chat template take several images in one user turn (the history
        screenshots of ``data.history_images``); single-image families refuse ``history_images > 0``.
    picker: ``((label, model name), ...)`` - the family's entries in the workbook's model picker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .adapters import ChatTemplateAdapter


@dataclass(frozen=True)
class FamilyPlugin:
    """One model family (see the module docstring for each field)."""

    name: str
    display: str
    name_patterns: tuple[str, ...]
    model_types: tuple[str, ...]
    adapter: ChatTemplateAdapter
    model_class: str
    processor_class: str
    tokenizer_class: str
    tiny_models: dict
    tiny_builder: Callable
    published: dict
    read_hf_config: Callable
    build_config: Callable
    picker: tuple[tuple[str, str], ...]
    hub_billions: dict = field(default_factory=dict)
    pinned_counts: dict = field(default_factory=dict)
    sub_models: tuple[str, str] | None = None
    image_tokens: Callable | None = None
    count_params: Callable | None = None
    fused_cross_entropy: bool = False
    rope_index: bool = False
    feature_cache: bool = True
    feature_cache_reason: str = ""
    multi_image: bool = False

    def __post_init__(self):
        if self.adapter.name != self.name:
            raise ValueError(f"family {self.name!r}: its adapter is named {self.adapter.name!r}")
        for model, recipe in self.tiny_models.items():
            if recipe.get("family") != self.name:
                raise ValueError(f"family {self.name!r}: the recipe of {model} is for {recipe.get('family')!r}")
        for model, spec in self.published.items():
            if spec.get("family") != self.name:
                raise ValueError(f"family {self.name!r}: the published spec of {model} is for "
                                 f"{spec.get('family')!r}")
        if set(self.hub_billions) != set(self.published):
            raise ValueError(f"family {self.name!r}: hub_billions names {sorted(self.hub_billions)}, "
                             f"published names {sorted(self.published)}")
