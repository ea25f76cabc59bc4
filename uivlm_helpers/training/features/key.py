"""Feature keys: what changes the vision tower's output (model configuration, a hash of the tower's weights
and dtype, the pixel budget and image-processor settings, device, mixed precision, transformers version),
and the hashes of images and tensors the cache is keyed and checked by."""

from __future__ import annotations

import hashlib
import json

import torch
import transformers

from ...core.images import as_image
from ...models.wrapper import VLMWrapper
from .tower import hf_model, in_vision, vision_device_dtype, vision_prefixes

CACHE_FORMAT = 1
# Config entries that do not change what the vision tower computes (left out of the feature key).
_CONFIG_NOISE = {"_name_or_path", "transformers_version", "use_cache", "architectures", "output_attentions",
                 "output_hidden_states", "return_dict", "torch_dtype", "dtype", "_commit_hash",
                 "_attn_implementation_autoset", "id2label", "label2id", "pad_token_id", "bos_token_id",
                 "eos_token_id", "tie_word_embeddings", "gradient_checkpointing"}


def blake(data=None, size: int = 16):
    digest = hashlib.blake2b(digest_size=size)
    if data is not None:
        digest.update(data)
    return digest


def image_hash(image) -> str:
    """Hash of an image's decoded RGB pixels (and size): the same screenshot gives the same hash whatever
    file it came from; any changed pixel gives another."""
    image = as_image(image)
    digest = blake(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor):
    return tensor.detach().cpu().contiguous().view(torch.uint8).numpy()


def tensor_checksum(tensor: torch.Tensor) -> str:
    digest = blake()
    digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def _strip_peft(name: str) -> str:
    return name[len("base_model.model."):] if name.startswith("base_model.model.") else name

_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_MULTIPLIERS = (-7046029254386353131, 7640891576956012809)   # 0x9E3779B97F4A7C15, 0x6A09E667F3BCC909 (odd)


def _fingerprint(tensor: torch.Tensor, chunk: int = 1 << 22) -> tuple[int, int]:
    """Two 64-bit polynomial sums over a tensor's raw bits, computed where the tensor lives (no copy of a
    GPU tower to the host). Every element's bits count with an odd coefficient, so changing any single
    element always changes both sums (arithmetic modulo 2^64)."""
    flat = tensor.detach().contiguous().reshape(-1)
    if flat.dtype not in _INT_OF_SIZE.values():
        flat = flat.view(_INT_OF_SIZE[flat.element_size()])
    sums = [0, 0]
    for start in range(0, flat.numel(), chunk):
        x = flat[start:start + chunk].to(torch.int64)
        index = torch.arange(start, start + x.numel(), device=x.device, dtype=torch.int64)
        for i, multiplier in enumerate(_MULTIPLIERS):
            coefficients = (index * multiplier + (2 * i + 1)) | 1
            sums[i] = (sums[i] + int((x * coefficients).sum())) % (1 << 64)
    return sums[0], sums[1]


def vision_weights_hash(wrapper: VLMWrapper) -> str:
    """Hash of every parameter and buffer of the vision tower and projector: names, dtypes, shapes and
    values (the raw bytes of tensors in host memory; a GPU tensor's :func:`_fingerprint`, computed on the
    GPU instead of copying the tower to the host)."""
    prefixes = vision_prefixes(wrapper)
    digest = blake()
    tensors = list(wrapper.model.named_parameters()) + list(wrapper.model.named_buffers())
    for name, tensor in sorted(((_strip_peft(n), t) for n, t in tensors if in_vision(n, prefixes)),
                               key=lambda nt: nt[0]):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        if tensor.device.type == "cpu":
            digest.update(_tensor_bytes(tensor))
        else:
            digest.update(str(_fingerprint(tensor)).encode())
    return digest.hexdigest()


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in sorted(value.items()) if k not in _CONFIG_NOISE}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def feature_key(wrapper: VLMWrapper, mixed_precision: str = "no") -> dict:
    """Everything that changes the vision tower's output for a given image."""

    hf = hf_model(wrapper.model)
    config = _clean(hf.config.to_dict())
    config["_attn_implementation"] = getattr(hf.config, "_attn_implementation", None)
    image_processor = getattr(wrapper.processor, "image_processor", None)
    processor_settings = _clean(image_processor.to_dict()) if image_processor is not None else None
    device, dtype = vision_device_dtype(wrapper)
    return {
        "format": CACHE_FORMAT,
        "family": wrapper.family,
        "model_type": hf.config.model_type,
        "model_config": blake(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "vision_weights": vision_weights_hash(wrapper),
        "vision_dtype": str(dtype),
        "pixel_budget": wrapper.pixel_budget,
        "image_processor": blake(json.dumps(processor_settings, sort_keys=True).encode()).hexdigest(),
        "device": device.type,
        "mixed_precision": mixed_precision,
        "transformers": transformers.__version__,
    }


def key_hash(key: dict) -> str:
    return blake(json.dumps(key, sort_keys=True).encode(), size=8).hexdigest()
