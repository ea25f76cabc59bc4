"""The fast training path: the frozen vision tower's features cached on disk, and a fused cross-entropy.

**Cached vision features** (``training.cache_vision_features``). A frozen vision tower gives the same
features for the same screenshot every epoch, and on a GPU its forward costs about as much as the
language model's LoRA step (bench/README.md §5b: 3.6-3.7x the plain recipe's tokens/s on Qwen2-VL-2B
on an H200). :func:`build_cache` runs the tower once per distinct screenshot before training and stores the
output of the model's own ``get_image_features`` as safetensors shards. During training
:class:`CachedFeaturesCollator` batches records exactly as :class:`~uivlm_helpers.training.train.UICollator` does,
drops the pixels and adds the cached features (and, for the Qwen families, the M-RoPE ``position_ids``
from the model's ``get_rope_index``, the same call the plain forward makes). A forward pre-hook on the
model (:func:`install_feature_hook`) then builds ``inputs_embeds`` from the text embeddings with the
cached features scattered at the image-token positions - what the plain forward does after running the
tower - so the loss and the LoRA gradients are the plain path's (bit-identical on the tiny models on
CPU; see ``tests/test_features.py``). A tower with DeepStack (Qwen3-VL: features of intermediate ViT
blocks added inside the first language-model layers) caches those levels beside the merger's output, and
the hook hands them back as the model's own ``mm_encoder_outputs``. A self-check compares the two paths'
losses on a real batch before training starts.

It is exact only while nothing in the tower trains (no trainable parameter, LoRA or otherwise), no
layer of the tower behaves differently in training mode (dropout, stochastic depth, batch norm) and the
images are not augmented per epoch. ``auto`` caches when all three hold and says why not otherwise;
``true`` raises :class:`FastPathError` where it cannot be exact.

The cache lives in ``RUN_DIR/cache/vision_features/`` (or ``training.feature_cache_dir``), in one folder
per *feature key*: the model configuration, a hash of the vision tower's weights (and dtype), the
processor's pixel budget and image-processor settings, the compute device and mixed precision and the
transformers version. Change any of them and the folder's name changes, so nothing stale is ever
reused. Within a folder entries are keyed by a hash of each image's decoded pixels. Shards are written
to a temporary file and renamed into place; a manifest (also written atomically) lists each shard's
length and each entry's checksum. An interrupted build leaves only shards the manifest does not list or
temporary files: both are deleted and their entries rebuilt. A shard that is truncated or does not match
its manifest is dropped and rebuilt, and an entry whose checksum fails when read is recomputed.

**Fused cross-entropy** (``training.fused_cross_entropy``). liger-kernel's model patch (fused linear
cross-entropy, RMSNorm, RoPE) never materialises the fp32 logits over the vocabulary, which dominate
peak memory with Qwen's 152k vocabulary (Qwen2-VL-2B, batch 4 with checkpointing: 16.4 -> 7.4 GiB,
``bench/results/gpu_anchor_2b_h100.jsonl``). It needs CUDA and the
optional extra ``pip install 'uivlm[fast]'``; ``auto`` uses it when both are there.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import transformers
from peft import PeftModel
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save
from tqdm.auto import tqdm
from transformers import BatchFeature
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..core.images import as_image
from ..families.registry import FAMILIES, get_family
from ..models.wrapper import VLMWrapper
from .collate import UICollator
from .profiling import profile_training_peak

#: The batch key that carries the cached features from the collator to the model's pre-hook.
FEATURES_KEY = "cached_image_features"
CACHE_SUBDIR = Path("cache") / "vision_features"
CACHE_FORMAT = 1
FAST_EXTRA = "pip install 'uivlm[fast]'"
MANIFEST = "manifest.json"
KEY_FILE = "key.json"
SWITCH_CHOICES = ("auto", "true", "false")

#: Batch keys that only the vision tower reads (dropped from a cached batch).
VISION_INPUT_KEYS = {"pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes",
                     "pixel_values_videos", "video_grid_thw"}
#: Families whose language model uses M-RoPE: their 3-D ``position_ids`` come from ``get_rope_index``
#: (each family plug-in's ``rope_index``).
ROPE_INDEX_FAMILIES = {name for name, plugin in FAMILIES.items() if plugin.rope_index}

# Config entries that do not change what the vision tower computes (left out of the feature key).
_CONFIG_NOISE = {"_name_or_path", "transformers_version", "use_cache", "architectures", "output_attentions",
                 "output_hidden_states", "return_dict", "torch_dtype", "dtype", "_commit_hash",
                 "_attn_implementation_autoset", "id2label", "label2id", "pad_token_id", "bos_token_id",
                 "eos_token_id", "tie_word_embeddings", "gradient_checkpointing"}


class FastPathError(ValueError):
    """A fast-path switch was set to ``true`` where it cannot work (or cannot be exact)."""


@dataclass(frozen=True)
class Decision:
    """Whether a fast-path switch is on, and why (shown once when ``auto`` turns it off)."""

    enabled: bool
    reason: str


def _switch(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    value = str(value).lower()
    if value not in SWITCH_CHOICES:
        raise FastPathError(f"expected one of {list(SWITCH_CHOICES)}, got {value!r}")
    return value


def _hf_model(model):
    """The transformers model under a peft wrapper (the module whose forward takes ``labels``)."""

    return model.get_base_model() if isinstance(model, PeftModel) else model


def _vision_prefixes(wrapper: VLMWrapper) -> tuple[str, ...]:
    return tuple(wrapper.adapter.vision_module_prefixes)


def _in_vision(name: str, prefixes) -> bool:
    name = name + "."
    return any(prefix in name for prefix in prefixes)


def trainable_vision_parameters(wrapper: VLMWrapper) -> list[str]:
    """Names of the vision tower's (and projector's) parameters that require gradients (LoRA included)."""
    names = set(wrapper.adapter.vision_parameter_names(wrapper.model))
    return [n for n, p in wrapper.model.named_parameters() if n in names and p.requires_grad]


def mode_dependent_vision_modules(wrapper: VLMWrapper) -> list[str]:
    """Parts of the tower that compute differently in training mode: dropout modules with p > 0, stochastic
    depth (DropPath, e.g. Florence-2's DaViT with ``drop_path_rate`` > 0), batch norm, and functional
    attention dropout set in the vision (or perceiver) configuration."""
    prefixes = _vision_prefixes(wrapper)
    found = []
    for name, module in wrapper.model.named_modules():
        if not _in_vision(name, prefixes):
            continue
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            found.append(f"{name} (dropout p={module.p})")
        elif isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            found.append(f"{name} (batch norm)")
        elif "droppath" in type(module).__name__.lower() and getattr(module, "drop_prob", 0) > 0:
            found.append(f"{name} (stochastic depth p={module.drop_prob})")
    config = _hf_model(wrapper.model).config
    for part in ("vision_config", "perceiver_config"):
        sub = getattr(config, part, None)
        for key, value in (sub.to_dict().items() if sub is not None else ()):
            if ("dropout" in key or "drop_path" in key) and isinstance(value, (int, float)) and value > 0:
                found.append(f"{part}.{key}={value}")
    return found


def image_token_id(model) -> int | None:
    """The image token's id in a loaded model's config (None when it has none)."""
    config = _hf_model(model).config
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


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
    setting = _switch(setting)
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
    if _switch(setting) == "false":
        return cache_decision(setting, wrapper.family)
    trainable = trainable_vision_parameters(wrapper)
    return cache_decision(
        setting, wrapper.family,
        trainable_vision=(f"the vision tower has {len(trainable)} trainable parameter tensors (e.g. {trainable[0]})"
                          if trainable else None),
        mode_dependent=mode_dependent_vision_modules(wrapper), augments_images=augments_images,
        has_image_features=(image_token_id(wrapper.model) is not None
                            and hasattr(_hf_model(wrapper.model), "get_image_features")))


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
    setting = _switch(setting)
    if setting == "false":
        return Decision(False, "training.fused_cross_entropy is false")
    problems = []
    if next(wrapper.model.parameters()).device.type != "cuda":
        problems.append("the model is not on a CUDA GPU (liger-kernel's Triton kernels need one)")
    types = _liger_model_types()
    model_type = _hf_model(wrapper.model).config.model_type
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

    _apply_liger_kernel_to_instance(model=_hf_model(wrapper.model), fused_linear_cross_entropy=True,
                                    cross_entropy=False)


# -- keys and hashes ----------------------------------------------------------------------------------
def _blake(data=None, size: int = 16):
    digest = hashlib.blake2b(digest_size=size)
    if data is not None:
        digest.update(data)
    return digest


def image_hash(image) -> str:
    """Hash of an image's decoded RGB pixels (and size): the same screenshot gives the same hash whatever
    file it came from; any changed pixel gives another."""
    image = as_image(image)
    digest = _blake(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _tensor_bytes(tensor: torch.Tensor):
    return tensor.detach().cpu().contiguous().view(torch.uint8).numpy()


def tensor_checksum(tensor: torch.Tensor) -> str:
    digest = _blake()
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
    prefixes = _vision_prefixes(wrapper)
    digest = _blake()
    tensors = list(wrapper.model.named_parameters()) + list(wrapper.model.named_buffers())
    for name, tensor in sorted(((_strip_peft(n), t) for n, t in tensors if _in_vision(n, prefixes)),
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


def _vision_device_dtype(wrapper: VLMWrapper):
    prefixes = _vision_prefixes(wrapper)
    for name, param in wrapper.model.named_parameters():
        if _in_vision(name, prefixes):
            return param.device, param.dtype
    param = next(wrapper.model.parameters())
    return param.device, param.dtype


def feature_key(wrapper: VLMWrapper, mixed_precision: str = "no") -> dict:
    """Everything that changes the vision tower's output for a given image."""

    hf = _hf_model(wrapper.model)
    config = _clean(hf.config.to_dict())
    config["_attn_implementation"] = getattr(hf.config, "_attn_implementation", None)
    image_processor = getattr(wrapper.processor, "image_processor", None)
    processor_settings = _clean(image_processor.to_dict()) if image_processor is not None else None
    device, dtype = _vision_device_dtype(wrapper)
    return {
        "format": CACHE_FORMAT,
        "family": wrapper.family,
        "model_type": hf.config.model_type,
        "model_config": _blake(json.dumps(config, sort_keys=True).encode()).hexdigest(),
        "vision_weights": vision_weights_hash(wrapper),
        "vision_dtype": str(dtype),
        "pixel_budget": wrapper.pixel_budget,
        "image_processor": _blake(json.dumps(processor_settings, sort_keys=True).encode()).hexdigest(),
        "device": device.type,
        "mixed_precision": mixed_precision,
        "transformers": transformers.__version__,
    }


def key_hash(key: dict) -> str:
    return _blake(json.dumps(key, sort_keys=True).encode(), size=8).hexdigest()


# -- computing features ---------------------------------------------------------------------------------
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
    hf = _hf_model(wrapper.model)
    hidden = hf.get_input_embeddings().weight.shape[-1]
    device, _ = _vision_device_dtype(wrapper)
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


# -- storage ------------------------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class FeatureCache:
    """One feature-key folder: safetensors shards plus ``manifest.json`` and ``key.json``.

    Use :func:`build_cache` to create or complete one; :meth:`get` reads an entry (checksum verified on
    its first read in this process).
    """

    def __init__(self, folder: str | Path, key: dict | None = None, shard_bytes: int = 256 * 2 ** 20):
        self.folder = Path(folder)
        self.shard_bytes = shard_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / KEY_FILE
        if key is not None and not key_file.is_file():
            _write_atomic(key_file, json.dumps(key, indent=2, sort_keys=True).encode())
        self.key = key if key is not None else (json.loads(key_file.read_text()) if key_file.is_file() else {})
        self.manifest = self._read_manifest()
        self._pending: dict[str, dict] = {}
        self._pending_bytes = 0
        self._handles: dict[str, object] = {}
        self._verified: set[str] = set()
        self.repaired: dict = {}

    # manifest ------------------------------------------------------------------------------------
    def _empty_manifest(self) -> dict:
        return {"format": CACHE_FORMAT, "shards": {}, "entries": {}, "build_s": 0.0}

    def _read_manifest(self) -> dict:
        path = self.folder / MANIFEST
        if not path.is_file():
            return self._empty_manifest()
        try:
            manifest = json.loads(path.read_text())
            assert manifest.get("format") == CACHE_FORMAT and {"shards", "entries"} <= set(manifest)
            return manifest
        except (ValueError, AssertionError):  # unreadable: start over (written atomically, so rare)
            return self._empty_manifest()

    def _write_manifest(self) -> None:
        self.manifest["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
        _write_atomic(self.folder / MANIFEST, json.dumps(self.manifest, indent=1, sort_keys=True).encode())

    @property
    def entries(self) -> dict:
        return self.manifest["entries"]

    def __contains__(self, image_key: str) -> bool:
        return image_key in self.manifest["entries"]

    def __len__(self) -> int:
        return len(self.manifest["entries"])

    # integrity ------------------------------------------------------------------------------------
    def repair(self, full: bool = False) -> dict:
        """Delete what an interrupted or damaged build left, so it is rebuilt instead of read.

        * temporary files (a write cut short) and shards the manifest does not list (written, but the
          process stopped before the manifest named them) are deleted;
        * a listed shard that is missing, has another length than the manifest says, fails to open as
          safetensors, lacks one of its entries or (``full=True``) fails its checksum is deleted and its
          entries dropped from the manifest.

        Returns what was removed: ``{"temporary", "orphan_shards", "bad_shards", "dropped_entries"}``.
        """

        report = {"temporary": [], "orphan_shards": [], "bad_shards": [], "dropped_entries": 0}
        shards = self.manifest["shards"]
        for path in sorted(self.folder.iterdir()):
            if ".tmp-" in path.name:
                path.unlink(missing_ok=True)
                report["temporary"].append(path.name)
            elif path.suffix == ".safetensors" and path.name not in shards:
                path.unlink(missing_ok=True)
                report["orphan_shards"].append(path.name)
        by_shard: dict[str, list[str]] = {}
        for image_key, entry in self.manifest["entries"].items():
            by_shard.setdefault(entry["shard"], []).append(image_key)
        for name in sorted(set(shards) | set(by_shard)):
            path = self.folder / name
            info = shards.get(name)
            ok = info is not None and path.is_file() and path.stat().st_size == info["bytes"]
            if ok:
                try:
                    with safe_open(str(path), "pt") as handle:
                        names = set(handle.keys())
                    ok = all(k in names for k in by_shard.get(name, []))
                except Exception:  # noqa: BLE001 - any unreadable shard is rebuilt
                    ok = False
            if ok and full:
                digest = _blake()
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 22), b""):
                        digest.update(block)
                ok = digest.hexdigest() == info["blake2b"]
            if not ok:
                path.unlink(missing_ok=True)
                shards.pop(name, None)
                for image_key in by_shard.get(name, []):
                    self.manifest["entries"].pop(image_key, None)
                    report["dropped_entries"] += 1
                report["bad_shards"].append(name)
        if report["bad_shards"]:
            self._write_manifest()
        self._handles.clear()
        self.repaired = report
        return report

    # writing --------------------------------------------------------------------------------------
    def add(self, image_key: str, features: torch.Tensor, layout: dict | None = None) -> None:
        """Queue one image's features (and its :func:`image_layouts` entry); a shard is written once
        ``shard_bytes`` are queued."""
        features = features.detach().to("cpu").contiguous()
        self._pending[image_key] = {"features": features, "checksum": tensor_checksum(features),
                                    "layout": dict(layout or {})}
        self._pending_bytes += features.numel() * features.element_size()
        if self._pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the queued entries as one shard (temporary file, fsync, rename), then the manifest."""
        if not self._pending:
            return

        index = 1 + max([int(n.split("-")[1].split(".")[0]) for n in self.manifest["shards"]] or [-1])
        name = f"shard-{index:05d}.safetensors"
        blob = save({k: v["features"] for k, v in self._pending.items()}, metadata={"format": str(CACHE_FORMAT)})
        _write_atomic(self.folder / name, blob)
        self.manifest["shards"][name] = {"bytes": len(blob), "blake2b": _blake(blob).hexdigest(),
                                         "entries": len(self._pending)}
        for image_key, item in self._pending.items():
            features = item["features"]
            self.manifest["entries"][image_key] = {
                "shard": name, "tokens": int(features.shape[0]), "hidden": int(features.shape[-1]),
                "dtype": str(features.dtype).replace("torch.", ""), "blake2b": item["checksum"],
                "layout": item["layout"]}
        self._write_manifest()
        self._pending.clear()
        self._pending_bytes = 0

    def layout(self, image_key: str) -> dict | None:
        """The entry's image layout (``{"image_grid_thw": [t, h, w]}`` for Qwen), None when unknown."""
        entry = self.manifest["entries"].get(image_key) or self._pending.get(image_key)
        return entry.get("layout") if entry else None

    def drop(self, image_key: str) -> None:
        """Forget one entry (its bytes stay in the shard until the folder is rebuilt)."""
        if self.manifest["entries"].pop(image_key, None) is not None:
            self._write_manifest()

    # reading --------------------------------------------------------------------------------------
    def _handle(self, shard: str):
        if shard not in self._handles:
            self._handles[shard] = safe_open(str(self.folder / shard), "pt")
        return self._handles[shard]

    def get(self, image_key: str) -> torch.Tensor | None:
        """An entry's features, or None when absent or damaged (a damaged entry is dropped)."""
        entry = self.manifest["entries"].get(image_key)
        if entry is None:
            pending = self._pending.get(image_key)
            return pending["features"] if pending else None
        try:
            features = self._handle(entry["shard"]).get_tensor(image_key)
        except Exception:  # noqa: BLE001 - missing or unreadable shard
            features = None
        if features is not None and image_key not in self._verified:
            if (tuple(features.shape) != (entry["tokens"], entry["hidden"])
                    or tensor_checksum(features) != entry["blake2b"]):
                features = None
            else:
                self._verified.add(image_key)
        if features is None:
            self.drop(image_key)
        return features

    # size ------------------------------------------------------------------------------------------
    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


def cache_root(run_dir=None, cache_dir=None) -> Path:
    """``cache_dir`` when given, else ``RUN_DIR/cache/vision_features``."""
    if cache_dir:
        return Path(cache_dir)
    if run_dir is None:
        raise ValueError("cache_root: give run_dir or cache_dir")
    return _run_folder(run_dir) / CACHE_SUBDIR


def _run_folder(source) -> Path:
    """A path from a path or a :class:`~uivlm_helpers.core.paths.RunPaths` (whose folder is ``.root``)."""
    return Path(source) if isinstance(source, (str, os.PathLike)) else Path(source.root)


def _load_hash_index(root: Path) -> dict:
    try:
        return json.loads((root / "image_index.json").read_text())
    except (OSError, ValueError):
        return {}


def record_image_keys(records, root: Path | None = None, index: dict | None = None) -> list[str]:
    """Each record's :func:`image_hash`; image files already hashed (same path, size and mtime) are not
    decoded again (``image_index.json`` in the cache root, or the ``index`` dict given, updated in place)."""
    if index is None:
        index = _load_hash_index(root) if root else {}
    keys, changed = [], False
    for record in records:
        image = record["image"]
        if isinstance(image, (str, Path)):
            path = str(Path(image).resolve())
            stat = os.stat(path)
            stamp = [stat.st_size, stat.st_mtime_ns]
            known = index.get(path)
            if known and known[:2] == stamp:
                keys.append(known[2])
                continue
            key = image_hash(image)
            index[path] = stamp + [key]
            changed = True
            keys.append(key)
        else:
            keys.append(image_hash(image))
    if root and changed:
        root.mkdir(parents=True, exist_ok=True)
        _write_atomic(root / "image_index.json", json.dumps(index).encode())
    return keys


def build_cache(wrapper: VLMWrapper, records, cache_dir: str | Path, *, mixed_precision: str = "no",
                batch_size: int = 8, shard_mb: float = 256, progress: bool = True, keep_stale: bool = False,
                verify: bool = False) -> FeatureCache:
    """Compute and store the vision features of every distinct screenshot in ``records`` not cached yet.

    Args:
        cache_dir: the cache root (``RUN_DIR/cache/vision_features`` or the user's folder); the features
            go to ``<cache_dir>/<feature key hash>/``.
        mixed_precision: the run's ``training.mixed_precision`` (the tower runs under the same autocast).
        batch_size: images per vision forward while building.
        shard_mb: size of one safetensors shard.
        keep_stale: keep feature-key folders of other models / weights / pixel budgets (default: delete
            them, they would never be read again by this configuration).
        verify: also re-hash every shard against the manifest (reads the whole cache).

    Returns:
        The :class:`FeatureCache`, complete for ``records``; ``cache.build_report`` says what was reused,
        computed and repaired.
    """
    root = Path(cache_dir)
    key = feature_key(wrapper, mixed_precision)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        cache = _build_cache(wrapper, records, root, key, mixed_precision=mixed_precision, batch_size=batch_size,
                             shard_mb=shard_mb, progress=progress, keep_stale=keep_stale, verify=verify)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the tower's temporaries: do not keep them reserved through training
    return cache


class _locked:
    """An exclusive ``flock`` on a file: one process builds or repairs a cache root at a time."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.handle = open(self.path, "a")
        try:
            # lazy: fcntl exists on POSIX only; the cache lock is taken only while building the cache
            import fcntl

            fcntl.flock(self.handle, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no lock (one process at a time is then up to the user)
            pass
        return self

    def __exit__(self, *exc):
        self.handle.close()  # releases the lock


def _build_cache(wrapper, records, root: Path, key: dict, *, mixed_precision, batch_size, shard_mb, progress,
                 keep_stale, verify) -> FeatureCache:
    folder = root / key_hash(key)
    stale = [p for p in root.iterdir() if p.is_dir() and p != folder and (p / KEY_FILE).is_file()] \
        if root.is_dir() else []
    if stale and not keep_stale:
        for path in stale:
            shutil.rmtree(path, ignore_errors=True)
        print(f"vision-feature cache: removed {len(stale)} stale folder(s) made for other weights, "
              f"pixel budget or settings: {', '.join(p.name for p in stale)}")
    cache = FeatureCache(folder, key, shard_bytes=int(shard_mb * 2 ** 20))
    repaired = cache.repair(full=verify)
    if repaired["temporary"] or repaired["orphan_shards"] or repaired["bad_shards"]:
        print(f"vision-feature cache: completing an interrupted or damaged cache ({repaired})")
    image_keys = record_image_keys(records, root)
    todo, seen = [], set()
    for record, image_key in zip(records, image_keys):
        if image_key not in cache and image_key not in seen:
            seen.add(image_key)
            todo.append((image_key, record["image"]))
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc="caching vision features", unit="img", disable=not progress or not todo)
    try:
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            features, layouts = compute_features(wrapper, [image for _, image in chunk], mixed_precision,
                                                 with_layouts=True)
            for (image_key, _), feats, layout in zip(chunk, features, layouts):
                cache.add(image_key, feats, layout)
            bar.update(len(chunk))
        cache.flush()
    finally:
        bar.close()
    cache.manifest["build_s"] = float(cache.manifest.get("build_s", 0.0)) + time.perf_counter() - start
    cache._write_manifest()
    cache.build_report = {"records": len(records), "distinct_images": len(set(image_keys)),
                          "computed": len(todo), "reused": len(set(image_keys)) - len(todo),
                          "seconds": time.perf_counter() - start, "repaired": repaired,
                          "stale_removed": [p.name for p in stale] if not keep_stale else []}
    return cache


# -- training with cached features -------------------------------------------------------------------
def _rope_module(model):
    for module in _hf_model(model).modules():
        if hasattr(module, "get_rope_index"):
            return module
    return None


def rope_position_ids(model, batch: dict) -> torch.Tensor:
    """M-RoPE ``position_ids`` (3, batch, length) exactly as the plain forward computes them."""
    module = _rope_module(model)
    fn = module.get_rope_index
    accepted = inspect.signature(fn).parameters
    kwargs = {k: batch[k] for k in ("mm_token_type_ids", "image_grid_thw", "attention_mask", "second_per_grid_ts")
              if k in accepted and k in batch}
    position_ids, _rope_deltas = fn(batch["input_ids"], **kwargs)
    return position_ids


class _LayoutOnlyImageProcessor:
    """Stands in for a Qwen image processor when the features are cached: it returns the cached
    ``image_grid_thw`` (all the processor needs to expand the image tokens) and touches no pixel."""

    def __init__(self, real, grids: list[list[int]]):
        self._real = real
        self._grids = grids

    def __getattr__(self, name):
        return getattr(self._real, name)

    def fetch_images(self, images):
        return images

    def __call__(self, images=None, *args, **kwargs):
        return BatchFeature({"image_grid_thw": torch.tensor(self._grids, dtype=torch.long)})


class CachedFeaturesCollator:
    """:class:`~uivlm_helpers.training.train.UICollator`'s batches with the pixels replaced by cached features.

    Tokens, labels and every text input are the processor's own (the same call as the plain collator);
    the vision inputs are dropped, :data:`FEATURES_KEY` holds the features of the batch's images in
    order, and the Qwen families get their M-RoPE ``position_ids``. A screenshot missing from the cache
    (or whose entry fails its checksum) is computed on the spot and kept in memory.

    For Qwen families with screenshot files whose cache entries carry their token layout, a batch is
    built without decoding or resizing any screenshot (``text_only``): the file's hash comes from the
    cache's image index, its size from the file header, and the processor lays out the image tokens
    from the cached ``image_grid_thw``. The fast path's self-check compares such a batch with the plain
    collator's, token for token, and turns ``text_only`` off if they differ.
    """

    def __init__(self, wrapper: VLMWrapper, cache: FeatureCache, max_length: int | None = None,
                 mixed_precision: str = "no"):
        self.wrapper = wrapper
        self.cache = cache
        self.max_length = max_length
        self.plain = UICollator(wrapper, max_length)
        self.mixed_precision = mixed_precision
        self.computed_on_the_fly = 0
        self.text_only = wrapper.family in ROPE_INDEX_FAMILIES
        self.text_only_batches = 0
        self._image_index = _load_hash_index(cache.folder.parent)  # build_cache wrote it in the cache root
        self._extra: dict[str, torch.Tensor] = {}  # computed here, kept in memory (the next build stores them)

    def features(self, image) -> torch.Tensor:
        image_key = image_hash(image)
        features = self._extra.get(image_key)
        if features is None:
            features = self.cache.get(image_key)
        if features is None:
            features = compute_features(self.wrapper, [image], self.mixed_precision)[0]
            self._extra[image_key] = features
            self.computed_on_the_fly += 1
        return features

    def __call__(self, records: list[dict]):
        batch = self._text_only_batch(records) if self.text_only else None
        if batch is not None:
            return batch
        images = [as_image(r["image"]) for r in records]
        return self.finish(self.plain.encode(records, images, [img.size for img in images]), images)

    def _text_only_batch(self, records: list[dict]) -> dict | None:
        """The batch from cached layouts and features, or None when a screenshot is not a cached file."""

        if not all(isinstance(r["image"], (str, os.PathLike)) for r in records):
            return None
        keys = record_image_keys(records, index=self._image_index)
        layouts = [self.cache.layout(k) for k in keys]
        if not all(layout and "image_grid_thw" in layout for layout in layouts):
            return None
        features = [self._extra.get(k) if k in self._extra else self.cache.get(k) for k in keys]
        if any(f is None for f in features):
            return None
        sizes = []
        for record in records:
            with Image.open(record["image"]) as image:  # reads the header, not the pixels
                sizes.append(image.size)
        processor = copy.copy(self.wrapper.processor)
        processor.image_processor = _LayoutOnlyImageProcessor(self.wrapper.processor.image_processor,
                                                              [layout["image_grid_thw"] for layout in layouts])
        placeholders = [Image.new("RGB", (1, 1)) for _ in records]
        batch = self.plain.encode(records, placeholders, sizes, processor=processor)
        self.text_only_batches += 1
        return self._attach(batch, features)

    def finish(self, batch: dict, images) -> dict:
        """Turn a plain batch (with pixels) of ``images`` into the cached one."""
        return self._attach(batch, [self.features(image) for image in images])

    def _attach(self, batch: dict, features: list[torch.Tensor]) -> dict:
        token_id = image_token_id(self.wrapper.model)
        per_row = (batch["input_ids"] == token_id).sum(dim=1).tolist()
        if per_row != [f.shape[0] for f in features]:
            raise ValueError(f"cached features do not fit the batch: image tokens per sample {per_row}, cached "
                             f"feature rows {[f.shape[0] for f in features]} (pixel budget changed?)")
        if self.wrapper.family in ROPE_INDEX_FAMILIES:
            batch["position_ids"] = rope_position_ids(self.wrapper.model, batch)
            batch.pop("mm_token_type_ids", None)
        for name in VISION_INPUT_KEYS:
            batch.pop(name, None)
        batch[FEATURES_KEY] = torch.cat(features) if features else torch.empty(0)
        return batch


def deepstack_levels(model) -> int:
    """How many DeepStack levels the model's vision tower adds inside the language model: the
    ``deepstack_visual_indexes`` of its vision config (Qwen3-VL), 0 for a tower without them."""
    vision = getattr(_hf_model(model).config, "vision_config", None)
    return len(getattr(vision, "deepstack_visual_indexes", None) or [])


def _encoder_outputs(module, kwargs, features):
    """Hand cached DeepStack features back to the model as its own ``get_image_features`` output
    (``mm_encoder_outputs``): the merger's rows replace the image tokens' embeddings and each level is
    added after its language-model layer, as in the plain forward. ``input_ids`` stay (they mark the image
    tokens)."""

    levels = module._uivlm_deepstack_levels
    hidden = module.get_input_embeddings().weight.shape[-1]
    if features.shape[-1] != hidden * (1 + levels):
        raise ValueError(f"cached features are {features.shape[-1]} wide; this model needs {hidden} (merger) x "
                         f"{1 + levels} (with its {levels} DeepStack levels): the cache was built for another model")
    pooler, *deepstack = features.split(hidden, dim=-1)
    output = BaseModelOutputWithPooling(pooler_output=(pooler,))
    output["deepstack_features"] = [(level,) for level in deepstack]
    kwargs["mm_encoder_outputs"] = {"image": output}
    return kwargs


def _feature_pre_hook(module, args, kwargs):
    features = kwargs.pop(FEATURES_KEY, None)
    if features is None:
        return None
    if module._uivlm_deepstack_levels:
        return args, _encoder_outputs(module, kwargs, features)
    input_ids = kwargs.pop("input_ids", None)
    if input_ids is None and args:
        input_ids, args = args[0], args[1:]
    if input_ids is None:
        raise ValueError(f"{FEATURES_KEY} needs input_ids to find the image tokens")
    embeddings = module.get_input_embeddings()(input_ids)
    mask = (input_ids == module._uivlm_image_token_id).unsqueeze(-1).expand_as(embeddings)
    if int(mask.sum()) != features.numel():
        raise ValueError(f"cached features ({features.shape[0]} rows) do not match the batch's "
                         f"{int(mask[..., 0].sum())} image tokens")
    kwargs["inputs_embeds"] = embeddings.masked_scatter(mask, features.to(embeddings.device, embeddings.dtype))
    kwargs["input_ids"] = None
    return args, kwargs


def install_feature_hook(model) -> None:
    """Let the model take :data:`FEATURES_KEY` instead of pixels (idempotent; inert without the key).

    A forward pre-hook on the transformers model embeds ``input_ids``, scatters the features at the
    image-token positions (``masked_scatter``, as the plain forward does) and passes ``inputs_embeds``.
    The text embedding runs inside the forward, so gradients (full fine-tuning) and the gradient-
    checkpointing input hook on the embeddings behave as in the plain path. A tower with DeepStack levels
    (:func:`deepstack_levels`) gets its cached output back as ``mm_encoder_outputs`` instead: input
    embeddings alone would lose the levels the language model adds after its first layers.
    """
    hf = _hf_model(model)
    handle = getattr(hf, "_uivlm_feature_hook", None)
    if handle is not None and handle.id in hf._forward_pre_hooks:
        return
    hf._uivlm_image_token_id = image_token_id(model)
    hf._uivlm_deepstack_levels = deepstack_levels(model)
    hf._uivlm_feature_hook = hf.register_forward_pre_hook(_feature_pre_hook, with_kwargs=True)


def remove_feature_hook(model) -> None:
    hf = _hf_model(model)
    handle = getattr(hf, "_uivlm_feature_hook", None)
    if handle is not None:
        handle.remove()
        hf._uivlm_feature_hook = None


def _answer_loss(model, batch: dict) -> torch.Tensor:
    """The model's loss on a batch; where the forward takes ``logits_to_keep``, only the logits that
    predict answer tokens are computed (not the whole sequence x vocabulary: 2.4 GiB on Qwen2-VL-2B)."""
    hf = _hf_model(model)
    labels = batch.get("labels")
    if labels is None or getattr(hf.config, "is_encoder_decoder", False) \
            or "logits_to_keep" not in inspect.signature(hf.forward).parameters:
        return model(**batch).loss
    shifted = labels[:, 1:]                                   # logits at p predict the token at p + 1
    positions = (shifted != -100).any(dim=0).nonzero().flatten()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, logits_to_keep=positions.to(labels.device)).logits.float()
    targets = shifted[:, positions].to(logits.device)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=-100)


def check_exact(wrapper: VLMWrapper, plain_batch: dict, cached_batch: dict) -> dict:
    """The loss of one batch through the plain forward and through the cached one, without gradients.

    Both forwards run in the model's training mode from the same random state (so LoRA dropout draws
    the same masks; the global random state is restored afterwards): what training computes, and no
    eval-mode switch (which repacks bitsandbytes' 4-bit CPU weights for inference only). Only the
    logits of answer tokens are computed where the model allows it.

    Returns ``{"plain", "cached", "abs_diff", "rel_diff", "tolerance", "ok"}``; the tolerance is 1e-4
    relative for fp32 models and 5e-3 for half precision (different batch shapes round differently).
    """
    model = wrapper.model
    device = next(model.parameters()).device
    move = lambda b: {k: (v.to(device) if hasattr(v, "to") else v) for k, v in b.items()}  # noqa: E731
    was_training = model.training
    model.train()
    losses = []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            for batch in (plain_batch, cached_batch):
                torch.manual_seed(0)
                losses.append(float(_answer_loss(model, move(batch))))
    finally:
        model.train(was_training)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    plain, cached = losses
    _, dtype = _vision_device_dtype(wrapper)
    tolerance = 1e-4 if dtype == torch.float32 else 5e-3
    diff = abs(plain - cached)
    rel = diff / max(abs(plain), 1e-12)
    return {"plain": plain, "cached": cached, "abs_diff": diff, "rel_diff": rel, "tolerance": tolerance,
            "ok": rel <= tolerance}


# -- the switch build_trainer calls ------------------------------------------------------------------
def prepare_fast_path(config, wrapper: VLMWrapper, train_records, run_dir, collator):
    """Apply ``training.fused_cross_entropy`` and ``training.cache_vision_features`` before training.

    Returns ``(collator, info)``: the collator to train with (``collator`` itself, or a
    :class:`CachedFeaturesCollator` over a freshly built or completed cache) and what was decided and why.
    Prints one line per switch that ``auto`` turned off.
    """
    t = config.training
    info = {}
    fused = decide_fused_ce(t.fused_cross_entropy, wrapper)
    if fused.enabled:
        apply_fused_ce(wrapper)
    elif _switch(t.fused_cross_entropy) == "auto":
        print(f"fused_cross_entropy auto -> off: {fused.reason}")
    info["fused_cross_entropy"], info["fused_reason"] = fused.enabled, fused.reason
    cache_decision = decide_cache(t.cache_vision_features, wrapper,
                                  augments_images=bool(getattr(train_records, "augments_images", False)))
    info["cache_vision_features"], info["cache_reason"] = cache_decision.enabled, cache_decision.reason
    if not cache_decision.enabled:
        if _switch(t.cache_vision_features) == "auto":
            print(f"cache_vision_features auto -> off: {cache_decision.reason}")
        return collator, info
    root = cache_root(run_dir, getattr(t, "feature_cache_dir", None))
    # Several training processes (DDP) share the cache: build_cache locks it, the first builds, the
    # others find it complete. Only the first process shows a progress bar.
    cache = build_cache(wrapper, train_records, root, mixed_precision=t.mixed_precision,
                        progress=int(os.environ.get("RANK", "0")) == 0)
    install_feature_hook(wrapper.model)
    cached_collator = CachedFeaturesCollator(wrapper, cache, t.max_length, t.mixed_precision)
    sample = [train_records[i] for i in range(min(1, len(train_records)))]
    check = None
    if sample:
        plain_batch = collator(sample)
        images = [as_image(r["image"]) for r in sample]
        cached_batch = cached_collator.finish(dict(plain_batch), images)
        text_only = cached_collator._text_only_batch(sample) if cached_collator.text_only else None
        if text_only is not None:
            differs = [k for k in ("input_ids", "attention_mask", "labels", "position_ids")
                       if k in cached_batch and not torch.equal(text_only.get(k), cached_batch[k])]
            if differs:  # never train on a layout that is not the processor's own
                print(f"vision-feature cache: batches without pixels differ from the processor's in {differs}; "
                      "decoding screenshots in the collator instead")
                cached_collator.text_only = False
            else:
                cached_batch = text_only
        info["text_only_batches"] = cached_collator.text_only and text_only is not None
        check = check_exact(wrapper, plain_batch, cached_batch)
    info.update(cache_dir=str(cache.folder), cache=describe_cache(cache), self_check=check)
    if check is not None and not check["ok"]:
        remove_feature_hook(wrapper.model)
        message = (f"cached features give loss {check['cached']:.6f} where the plain forward gives "
                   f"{check['plain']:.6f} (relative difference {check['rel_diff']:.1e} > {check['tolerance']:.0e})")
        if _switch(t.cache_vision_features) == "true":
            raise FastPathError(f"training.cache_vision_features=true: {message}")
        print(f"cache_vision_features auto -> off: {message}")
        info["cache_vision_features"], info["cache_reason"] = False, message
        return collator, info
    report = cache.build_report
    print(f"vision features cached in {cache.folder} ({report['computed']} computed, {report['reused']} reused, "
          f"{cache.bytes_on_disk() / 2 ** 20:.1f} MiB; self-check: loss {check['plain']:.6f} plain vs "
          f"{check['cached']:.6f} cached)" if check else f"vision features cached in {cache.folder}")
    return cached_collator, info


# -- for the notebook --------------------------------------------------------------------------------
def _find_cache(source) -> FeatureCache | None:
    if isinstance(source, FeatureCache):
        return source
    folder = _run_folder(source)
    for candidate in (folder, folder / CACHE_SUBDIR):
        if (candidate / KEY_FILE).is_file():
            return FeatureCache(candidate)
        if candidate.is_dir():
            found = sorted((p for p in candidate.iterdir() if (p / KEY_FILE).is_file()),
                           key=lambda p: (p / MANIFEST).stat().st_mtime if (p / MANIFEST).exists() else 0)
            if found:
                return FeatureCache(found[-1])
    return None


def describe_cache(source) -> dict:
    """What a vision-feature cache holds and its size on disk.

    Args:
        source: a :class:`FeatureCache`, a run folder / :class:`~uivlm_helpers.core.paths.RunPaths`
            (``RUN_DIR/cache/vision_features``), a cache root or a feature-key folder.

    Returns:
        ``{"folder", "images", "shards", "size_mib", "mib_per_image", "tokens_per_image", "hidden",
        "dtype", "build_s", "key"}`` (``{"folder": None, "images": 0}`` when there is no cache).
    """
    cache = _find_cache(source)
    if cache is None:
        return {"folder": None, "images": 0, "size_mib": 0.0}
    entries = list(cache.entries.values())
    size = cache.bytes_on_disk()
    tokens = [e["tokens"] for e in entries]
    return {"folder": str(cache.folder), "images": len(entries), "shards": len(cache.manifest["shards"]),
            "size_mib": round(size / 2 ** 20, 3),
            "mib_per_image": round(size / 2 ** 20 / len(entries), 4) if entries else None,
            "tokens_per_image": round(sum(tokens) / len(tokens), 1) if tokens else None,
            "hidden": entries[0]["hidden"] if entries else None,
            "dtype": entries[0]["dtype"] if entries else None,
            "build_s": round(float(cache.manifest.get("build_s", 0.0)), 2),
            "key": {k: cache.key.get(k) for k in ("family", "model_type", "pixel_budget", "vision_dtype",
                                                  "device", "mixed_precision")}}


def _median_step_s(model, batch: dict, steps: int) -> float:
    """Median seconds of a training step (forward, backward, AdamW with lr=0) after one warm-up step."""
    device = next(model.parameters()).device
    batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    was_training = model.training
    model.train()
    times = []
    try:
        for _ in range(steps + 1):
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    times = sorted(times[1:])
    return times[len(times) // 2]


def compare_paths(wrapper: VLMWrapper, records, cache: FeatureCache | None = None, steps: int = 3,
                  max_length: int | None = None) -> dict:
    """Time a few training steps on one batch, plain vs cached, and measure each step's peak memory.

    Step time = the collator's time for the batch + the median of ``steps`` training steps (forward,
    backward, AdamW with lr=0: the weights do not move) after a warm-up step. Peak memory from
    :func:`~uivlm_helpers.training.memory.profile_training_peak` (CUDA: ``max_memory_allocated``; CPU: live tensors).

    Returns:
        ``{"plain": {...}, "cached": {...}, "speedup", "same_loss", "batch_size"}``, each path with
        ``step_s``, ``collate_s``, ``model_step_s``, ``samples_per_s``, ``tokens_per_s``, ``peak_mib`` and
        ``loss``.
    """

    if cache is None:
        raise ValueError("compare_paths needs the FeatureCache (build_cache, or FeatureCache(summary['fast_path']"
                         "['cache_dir']) after training)")
    install_feature_hook(wrapper.model)
    plain_collator = UICollator(wrapper, max_length)
    cached_collator = CachedFeaturesCollator(wrapper, cache, max_length)
    plain_batch = plain_collator(records)
    images = [as_image(r["image"]) for r in records]
    cached_batch = cached_collator.finish(dict(plain_batch), images)
    check = check_exact(wrapper, plain_batch, cached_batch)
    tokens = int(plain_batch["attention_mask"].sum())
    out = {}
    for name, batch, collator in (("plain", plain_batch, plain_collator), ("cached", cached_batch, cached_collator)):
        collate = []
        for _ in range(3):
            start = time.perf_counter()
            collator(records)
            collate.append(time.perf_counter() - start)
        collate_s = sorted(collate)[1]
        model_s = _median_step_s(wrapper.model, batch, steps)
        peak = profile_training_peak(wrapper, batch, steps=1)
        step = model_s + collate_s
        out[name] = {"step_s": round(step, 4), "model_step_s": round(model_s, 4), "collate_s": round(collate_s, 4),
                     "samples_per_s": round(len(records) / step, 2), "tokens_per_s": round(tokens / step, 1),
                     "peak_mib": round(peak["peak_gib"] * 1024, 1), "loss": check[name]}
    out["speedup"] = round(out["plain"]["step_s"] / out["cached"]["step_s"], 2)
    out["same_loss"] = check["ok"]
    out["batch_size"] = len(records)
    return out


def fast_path_report(wrapper: VLMWrapper, records, run_dir, cache_dir=None, steps: int = 3):
    """The notebook's view of the fast path: the cache (size on disk) and the measured speed-up.

    Prints one line (screenshots cached, MiB on disk, build time, speed-up on one batch) and returns a
    two-row table (plain, cached): seconds per step (collate + forward/backward/AdamW), samples/s,
    tokens/s, peak memory of the step (MiB) and the loss (the same on both). None when the run has no
    cache (``training.cache_vision_features`` off).

    Args:
        records: one batch of training records (e.g. the first ``batch_size``).
        run_dir: the run folder (or its :class:`~uivlm_helpers.core.paths.RunPaths`).
        cache_dir: ``training.feature_cache_dir`` when the run set one.
    """

    info = describe_cache(cache_dir or run_dir)
    if not info["images"]:
        print("no vision-feature cache in this run (training.cache_vision_features was off)")
        return None
    result = compare_paths(wrapper, list(records), FeatureCache(info["folder"]), steps=steps)
    table = pd.DataFrame({k: result[k] for k in ("plain", "cached")}).T
    table.columns.name = "path"  # in the header's corner; an index name would add a row of empty cells
    print(f"vision-feature cache: {info['images']} screenshots, {info['size_mib']:.2f} MiB on disk "
          f"({info['mib_per_image']:.3f} MiB each), built in {info['build_s']:.1f} s; one batch of "
          f"{result['batch_size']}: {result['speedup']:.2f}x faster with the cache "
          f"(same loss: {result['same_loss']})")
    table.attrs.update(speedup=result["speedup"], cache=info)
    return table
