"""Whether the fast path's two switches are on, and why: ``training.cache_vision_features`` (the one rule,
:func:`cache_decision`, on facts read off the loaded model or the run configuration) and
``training.fused_cross_entropy`` (liger-kernel on CUDA)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from ...families.registry import get_family
from ...models.wrapper import VLMWrapper
from .tower import hf_model, image_token_id, in_vision, vision_prefixes

FAST_EXTRA = "pip install 'uivlm[fast]'"
SWITCH_CHOICES = ("auto", "true", "false")


class FastPathError(ValueError):
    """A fast-path switch was set to ``true`` where it cannot work (or cannot be exact)."""


@dataclass(frozen=True)
class Decision:
    """Whether a fast-path switch is on, and why (shown once when ``auto`` turns it off)."""

    enabled: bool
    reason: str


def switch(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    value = str(value).lower()
    if value not in SWITCH_CHOICES:
        raise FastPathError(f"expected one of {list(SWITCH_CHOICES)}, got {value!r}")
    return value


def trainable_vision_parameters(wrapper: VLMWrapper) -> list[str]:
    """Names of the vision tower's (and projector's) parameters that require gradients (LoRA included)."""
    names = set(wrapper.adapter.vision_parameter_names(wrapper.model))
    return [n for n, p in wrapper.model.named_parameters() if n in names and p.requires_grad]


def mode_dependent_vision_modules(wrapper: VLMWrapper) -> list[str]:
    """Parts of the tower that compute differently in training mode: dropout modules with p > 0, stochastic
    depth (DropPath, e.g. Florence-2's DaViT with ``drop_path_rate`` > 0), batch norm, and functional
    attention dropout set in the vision (or perceiver) configuration."""
    prefixes = vision_prefixes(wrapper)
    found = []
    for name, module in wrapper.model.named_modules():
        if not in_vision(name, prefixes):
            continue
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            found.append(f"{name} (dropout p={module.p})")
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            found.append(f"{name} (batch norm)")
        elif "droppath" in type(module).__name__.lower() and getattr(module, "drop_prob", 0) > 0:
            found.append(f"{name} (stochastic depth p={module.drop_prob})")
    config = hf_model(wrapper.model).config
    for part in ("vision_config", "perceiver_config"):
        sub = getattr(config, part, None)
        for key, value in (sub.to_dict().items() if sub is not None else ()):
            if ("dropout" in key or "drop_path" in key) and isinstance(value, (int, float)) and value > 0:
                found.append(f"{part}.{key}={value}")
    return found


def mode_dependent_in_spec(spec: dict) -> list[str]:
    """What an architecture spec (:func:`uivlm_helpers.models.model_configs.architecture_spec`) says computes differently in
    training mode in the vision tower: its dropout and stochastic-depth rates above 0 (the spec-level
    counterpart of :func:`mode_dependent_vision_modules`, for estimates made without loading the model)."""
    return [f"vision_config.{key}={value}" for key, value in spec.get("vision", {}).items()
            if ("dropout" in key or "drop_path" in key) and isinstance(value, (int, float)) and value > 0]


def cache_decision(setting, family: str, *, trainable_vision: str | None = None, mode_dependent=(),
                   augments_images: bool = False, has_image_features: bool = True) -> Decision:
    """Whether vision features are cached, from the facts that decide it (the one rule: training's
    :func:`decide_cache` reads the facts off the loaded model, the memory estimate off the run
    configuration and the architecture spec).

    Args:
        setting: ``"auto"``, ``"true"`` or ``"false"`` (or a bool).
        family: the model's family (its plug-in may rule the cache out: ``feature_cache``).
        trainable_vision: what makes the vision tower train (None: it is frozen).
        mode_dependent: parts of the tower that compute differently in training mode.
        augments_images: the training images change from epoch to epoch.
        has_image_features: the model has an image-token id and ``get_image_features``.

    Raises:
        FastPathError: ``true`` where the cached path cannot equal the plain one.
    """
    setting = switch(setting)
    if setting == "false":
        return Decision(False, "training.cache_vision_features is false")
    problems = []
    if trainable_vision:
        problems.append(f"{trainable_vision}: its features change as it trains (model.freeze_vision_encoder: false "
                        "trains the tower, under LoRA through adapters on its layers; set it to true to cache)")
    if mode_dependent:
        problems.append(f"the vision tower computes differently while training ({', '.join(list(mode_dependent)[:3])})")
    if augments_images:
        problems.append("the images are augmented per epoch, so each epoch's features differ")
    plugin = get_family(family)
    if not plugin.feature_cache:
        problems.append(f"{family}: {plugin.feature_cache_reason}")
    if not has_image_features:
        problems.append(f"{family}: the model has no image-token id or get_image_features")
    if not problems:
        return Decision(True, "the vision tower is frozen and the images are not augmented: features cached")
    if setting == "true":
        raise FastPathError("training.cache_vision_features=true, but cached features would not equal the "
                            "plain forward's: " + "; ".join(problems) + ". Use auto or false.")
    return Decision(False, "vision features not cached: " + "; ".join(problems))


def decide_cache(setting, wrapper: VLMWrapper, augments_images: bool = False) -> Decision:
    """Resolve ``training.cache_vision_features`` for this model (:func:`cache_decision` on its facts).

    Args:
        setting: ``"auto"``, ``"true"`` or ``"false"`` (or a bool).
        augments_images: the training images change from epoch to epoch (random crops, colour jitter...);
            the workbook's datasets do not; a dataset that does should say so with an
            ``augments_images = True`` attribute.

    Raises:
        FastPathError: ``true`` where the cached path cannot equal the plain one.
    """
    if switch(setting) == "false":
        return cache_decision(setting, wrapper.family)
    trainable = trainable_vision_parameters(wrapper)
    return cache_decision(
        setting, wrapper.family,
        trainable_vision=(f"the vision tower has {len(trainable)} trainable parameter tensors (e.g. {trainable[0]})"
                          if trainable else None),
        mode_dependent=mode_dependent_vision_modules(wrapper), augments_images=augments_images,
        has_image_features=(image_token_id(wrapper.model) is not None
                            and hasattr(hf_model(wrapper.model), "get_image_features")))


def _liger_model_types() -> set[str] | None:
    """Model types liger-kernel can patch, or None when it is not installed."""

    if importlib.util.find_spec("liger_kernel") is None:
        return None
    try:
        # lazy: liger-kernel is the optional 'fast' extra (CUDA only)
        from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    except Exception:  # noqa: BLE001 - an installed but broken liger (no triton...) is "not usable"
        return None
    return set(MODEL_TYPE_TO_APPLY_LIGER_FN)


def decide_fused_ce(setting, wrapper: VLMWrapper) -> Decision:
    """Resolve ``training.fused_cross_entropy``: liger-kernel's patch on CUDA, the plain loss elsewhere.

    Raises:
        FastPathError: ``true`` without CUDA, without liger-kernel (the ``fast`` extra), or for a
            model type liger-kernel cannot patch.
    """
    setting = switch(setting)
    if setting == "false":
        return Decision(False, "training.fused_cross_entropy is false")
    problems = []
    if next(wrapper.model.parameters()).device.type != "cuda":
        problems.append("the model is not on a CUDA GPU (liger-kernel's Triton kernels need one)")
    types = _liger_model_types()
    model_type = hf_model(wrapper.model).config.model_type
    if types is None:
        problems.append(f"liger-kernel is not installed ({FAST_EXTRA})")
    elif model_type not in types:
        problems.append(f"liger-kernel has no patch for model type {model_type!r}")
    if not problems:
        return Decision(True, "liger-kernel fused linear cross-entropy (+ RMSNorm, RoPE)")
    if setting == "true":
        raise FastPathError("training.fused_cross_entropy=true needs liger-kernel (the optional extra: "
                            f"{FAST_EXTRA}) on a CUDA GPU: " + "; ".join(problems) + ". Use auto or false.")
    return Decision(False, "plain cross-entropy: " + "; ".join(problems))


def apply_fused_ce(wrapper: VLMWrapper) -> None:
    """Patch the model with liger-kernel (fused linear cross-entropy, RMSNorm, RoPE...).

    liger patches the model class's ``forward`` (all instances of that class in this process).
    """
    # lazy: liger-kernel is the optional 'fast' extra (CUDA only)
    from liger_kernel.transformers import _apply_liger_kernel_to_instance

    _apply_liger_kernel_to_instance(model=hf_model(wrapper.model), fused_linear_cross_entropy=True,
                                    cross_entropy=False)
