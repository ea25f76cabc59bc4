"""Models shipped inside the repository, trained with the project's own code.

``uivlm/tiny-qwen2-vl-ui`` is a tiny Qwen2-VL pretrained from random weights on task screens by
``recipes/pretrain.py`` (how, and how well: ``models/tiny-qwen2-vl-ui/TRAINING.md``); it is the workbook's
default model. Its folder is an ordinary Hugging Face checkpoint (config, safetensors, tokenizer,
processor, plus the prompt it was trained with in ``uivlm_agent.json``), so
``VLMWrapper(model_name=shipped_model_path("uivlm/tiny-qwen2-vl-ui"))`` or
``AutoModelForImageTextToText.from_pretrained`` load it like a Hub model, offline.
"""

from __future__ import annotations

from pathlib import Path

from ..core.paths import REPO_ROOT


#: Public name -> folder in the repository.
SHIPPED_MODELS = {
    "uivlm/tiny-qwen2-vl-ui": REPO_ROOT / "models" / "tiny-qwen2-vl-ui",
    # The first stage of its training (pointing, colour words), which the second stage continued.
    "uivlm/tiny-qwen2-vl-ui-stage1": REPO_ROOT / "models" / "tiny-qwen2-vl-ui-stage1",
}


def shipped_model_path(name: str) -> Path:
    """The folder of a shipped model.

    Raises:
        ValueError: ``name`` is not a shipped model (the message lists them).
        FileNotFoundError: the folder or its weights are missing (e.g. a non-editable install that
            did not copy ``models/``).
    """
    if name not in SHIPPED_MODELS:
        raise ValueError(f"{name!r} is not a shipped model; shipped models: {sorted(SHIPPED_MODELS)}")
    path = SHIPPED_MODELS[name]
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{name}: no weights at {path}; the repository's models/ folder is missing "
                                "(install the project in editable mode from a full checkout)")
    return path
