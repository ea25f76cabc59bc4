"""Tiny, randomly initialised checkpoints of real VLM architectures, built offline.

The workbook's embedded default model is not a toy re-implementation: it is a real transformers
architecture (config class, model class, tokenizer class, image processor and processor class) with
very small dimensions and random weights. It is written to a cache folder with ``save_pretrained``
(safetensors) and then loaded through ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly like
a Hub checkpoint, so the code path for tiny and real models is the same.

Each family's recipe and builder live in its plug-in (``uivlm_helpers/families/<family>.py``:
``tiny_models``, ``tiny_builder``); this module names them (:data:`TINY_MODELS`), hashes recipes and
builds. A checkpoint is rebuilt only when its recipe (dimensions, tokenizer corpus, library versions that
change the file format) changes: the recipe's hash is part of the folder name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import transformers

from ..families.florence2 import TINY_FLORENCE2_RECIPE
from ..families.idefics2 import IDEFICS2_CHAT_TEMPLATE, TINY_IDEFICS2_RECIPE
from ..families.llava import LLAVA_CHAT_TEMPLATE, TINY_LLAVA_RECIPE
from ..families.paligemma import TINY_PALIGEMMA_RECIPE
from ..families.qwen2_5_vl import TINY_QWEN2_5_VL_RECIPE
from ..families.qwen2_vl import TINY_QWEN2_VL_RECIPE
from ..families.qwen_common import QWEN2_VL_CHAT_TEMPLATE
from ..families.registry import FAMILIES, TINY_MODELS, tiny_recipe
from ..families.tinybuild import TOKENIZER_CORPUS, build_llama_tokenizer, build_tiny_tokenizer

__all__ = ["IDEFICS2_CHAT_TEMPLATE", "LLAVA_CHAT_TEMPLATE", "QWEN2_VL_CHAT_TEMPLATE", "TINY_FLORENCE2_RECIPE",
           "TINY_IDEFICS2_RECIPE", "TINY_LLAVA_RECIPE", "TINY_MODELS", "TINY_PALIGEMMA_RECIPE",
           "TINY_QWEN2_5_VL_RECIPE", "TINY_QWEN2_VL_RECIPE", "build_llama_tokenizer", "build_tiny_tokenizer",
           "cache_root", "recipe_hash", "tiny_checkpoint"]


def cache_root() -> Path:
    """Folder for built checkpoints: ``$UIVLM_CACHE`` or ``~/.cache/uivlm``."""
    return Path(os.environ.get("UIVLM_CACHE", Path.home() / ".cache" / "uivlm"))


def recipe_hash(recipe: dict) -> str:
    """The 12-hex-digit hash that names a recipe's built folder (recipe, tokenizer corpus, transformers
    major version)."""

    payload = json.dumps({"recipe": recipe, "corpus": TOKENIZER_CORPUS,
                          "transformers_major": transformers.__version__.split(".")[0]},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def tiny_checkpoint(model_name: str = "uivlm/tiny-qwen2-vl", cache_dir: str | Path | None = None,
                    rebuild: bool = False) -> Path:
    """Return the folder of an embedded tiny checkpoint, building it first if needed.

    Args:
        model_name: one of :data:`TINY_MODELS`.
        cache_dir: where to build (default :func:`cache_root`/``tiny``).
        rebuild: build again even if a complete copy exists.

    The build goes to a temporary sibling folder and is renamed into place when complete, so an
    interrupted build is never mistaken for a checkpoint.
    """
    recipe = tiny_recipe(model_name)
    builder = FAMILIES[TINY_MODELS[model_name]].tiny_builder
    root = Path(cache_dir) if cache_dir else cache_root() / "tiny"
    target = root / f"{model_name.split('/')[-1]}-{recipe_hash(recipe)}"
    if target.is_dir() and (target / "model.safetensors").is_file() and not rebuild:
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=root))
    try:
        builder(staging, recipe)
        (staging / "uivlm_recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True))
        # Another process (a second notebook, a parallel test worker) may have finished the same build
        # meanwhile: its copy is identical (seeded), and it may be reading it, so it stays.
        if not rebuild and (target / "model.safetensors").is_file():
            return target
        if target.exists():
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
