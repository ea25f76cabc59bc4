"""The vision tower of a loaded model as the fast path sees it: the transformers model under peft, the
tower's parameter prefixes, device and dtype, the image-token id, and its forward (:func:`compute_features`,
``get_image_features`` with the projector, one tensor per image)."""

from __future__ import annotations

import inspect

import torch
from peft import PeftModel

from ...core.images import as_image
from ...models.wrapper import VLMWrapper


def hf_model(model):
    """The transformers model under a peft wrapper (the module whose forward takes ``labels``)."""

    return model.get_base_model() if isinstance(model, PeftModel) else model


def vision_prefixes(wrapper: VLMWrapper) -> tuple[str, ...]:
    return tuple(wrapper.adapter.vision_module_prefixes)


def in_vision(name: str, prefixes) -> bool:
    name = name + "."
    return any(prefix in name for prefix in prefixes)


def image_token_id(model) -> int | None:
    """The image token's id in a loaded model's config (None when it has none)."""
    config = hf_model(model).config
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def vision_device_dtype(wrapper: VLMWrapper):
    prefixes = vision_prefixes(wrapper)
    for name, param in wrapper.model.named_parameters():
        if in_vision(name, prefixes):
            return param.device, param.dtype
    param = next(wrapper.model.parameters())
    return param.device, param.dtype


def _feature_kwargs(hf, vision_inputs: dict) -> dict:
    """The image processor's outputs that ``get_image_features`` takes (by name)."""
    names = set()
    for fn in (hf.get_image_features, getattr(getattr(hf, "model", None), "get_image_features", None)):
        if fn is not None:
            names |= {n for n, p in inspect.signature(fn).parameters.items()
                      if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return {k: v for k, v in vision_inputs.items() if k in names}


def _split_features(output, n_images: int, hidden: int) -> list[torch.Tensor] | None:
    feats = getattr(output, "pooler_output", None)
    if feats is None:
        feats = output[0] if isinstance(output, tuple) and not isinstance(output[0], torch.Tensor) else output
    if isinstance(feats, (list, tuple)) and len(feats) == n_images:
        return [f.reshape(-1, hidden) for f in feats]
    if isinstance(feats, (list, tuple)):
        feats = torch.cat([f.reshape(-1, hidden) for f in feats])
    if n_images == 1:
        return [feats.reshape(-1, hidden)]
    if feats.dim() == 3 and feats.shape[0] == n_images:
        return list(feats)
    return None


def image_layouts(vision_inputs, n_images: int) -> list[dict]:
    """Per image, what the processor needs besides pixels to lay out its tokens (Qwen: ``image_grid_thw``).

    Empty dicts for families whose token count does not depend on the image.
    """
    grid = vision_inputs.get("image_grid_thw") if hasattr(vision_inputs, "get") else None
    if grid is None or len(grid) != n_images:
        return [{} for _ in range(n_images)]
    return [{"image_grid_thw": [int(v) for v in row]} for row in grid.tolist()]


def compute_features(wrapper: VLMWrapper, images, mixed_precision: str = "no", with_layouts: bool = False):
    """The vision tower's output (``get_image_features``, projector included) for each image, on the CPU.

    One row per image token, in the order the plain forward scatters them. Computed without gradients,
    under the Trainer's autocast when mixed precision is on. With ``with_layouts`` returns
    ``(features, layouts)`` (:func:`image_layouts`).
    """
    hf = hf_model(wrapper.model)
    hidden = hf.get_input_embeddings().weight.shape[-1]
    device, _ = vision_device_dtype(wrapper)
    vision_inputs = wrapper.processor.image_processor(images=[as_image(i) for i in images], return_tensors="pt")
    kwargs = {k: v.to(device) for k, v in _feature_kwargs(hf, dict(vision_inputs)).items()}
    autocast = (torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[mixed_precision])
                if mixed_precision in ("bf16", "fp16") else torch.autocast(device.type, enabled=False))
    # The model's mode is left alone: the tower has no mode-dependent layer (decide_cache checks), and
    # switching a 4-bit model to eval makes bitsandbytes repack its CPU weights for inference only.
    with torch.no_grad(), autocast:
        output = hf.get_image_features(**kwargs)
    features = _split_features(output, len(images), hidden)
    levels = [_split_features(level, len(images), hidden) for level in getattr(output, "deepstack_features", None) or []]
    if features is not None and levels:
        # DeepStack (Qwen3-VL): each level's row of an image token sits beside the merger's, in one tensor.
        features = None if any(level is None for level in levels) else \
            [torch.cat([f, *(level[i] for level in levels)], dim=-1) for i, f in enumerate(features)]
    if features is None:  # a tower whose batched output cannot be split per image: one at a time
        features = [compute_features(wrapper, [image], mixed_precision)[0] for image in images]
    features = [f.detach().to("cpu").contiguous().clone() for f in features]
    return (features, image_layouts(vision_inputs, len(images))) if with_layouts else features
