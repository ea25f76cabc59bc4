"""Tiny, randomly initialised checkpoints of real VLM architectures, built offline.

The workbook's embedded default model is not a toy re-implementation: it is a real transformers
architecture (config class, model class, tokenizer class, image processor and processor class) with
very small dimensions and random weights. It is written to a cache folder with ``save_pretrained``
(safetensors) and then loaded through ``AutoProcessor`` / ``AutoModelForImageTextToText`` exactly like
a Hub checkpoint, so the code path for tiny and real models is the same.

A checkpoint is rebuilt only when its recipe (dimensions, tokenizer corpus, library versions that
change the file format) changes: the recipe's hash is part of the folder name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

#: Public names of the embedded tiny models, by family.
TINY_MODELS = {
    "uivlm/tiny-qwen2-vl": "qwen2_vl",
}

_QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>", "<|box_start|>", "<|box_end|>",
]

# The chat template published with Qwen2-VL-*-Instruct (image and text parts; video kept for parity).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the tiny tokenizer's BPE merges are learned from: the words the workbook's prompts, synthetic
# screens and action formats use. Any other text still tokenizes (byte-level fallback).
_TOKENIZER_CORPUS = """
You are a helpful assistant. You operate a graphical user interface. Look at the screenshot and
answer with the next action only. Instruction: Click the Save button. Click the Cancel button.
Click the OK button. Click the Submit button. Click the Email field. Click the Password field.
Click the Search field. Click the Username field. Click the link. Check the Remember me box.
Click the settings icon. Click the home icon. Click the search icon. Click the trash icon.
Click the star icon. Click the first second third fourth checkbox button link field icon.
Sign in Log in Forgot password? Create account Next Back Close Delete Edit Open Help Profile
Notifications Dark mode Wi-Fi Bluetooth Location Sound Display Privacy Language Results
click(x, y) double_click(x, y) long_press(x, y) drag(x, y, x2, y2) type("text") press(Enter)
press(Tab) press(Backspace) scroll(down, 100) scroll(up, 100) scroll(left, 100) scroll(right, 100)
wait(1) done() {"type": "click", "x": 100, "y": 200} {"type": "type", "text": "hello"}
{"type": "scroll", "direction": "down", "amount": 100} {"type": "wait", "seconds": 1}
{"type": "press", "key": "Enter"} {"type": "done"} 100 200 click type "hello" scroll down 100
system user assistant Example Answer Action The answer is
"""

TINY_QWEN2_VL_RECIPE = {
    "family": "qwen2_vl",
    "seed": 0,
    "bpe_vocab_size": 600,
    "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 4096,
             # M-RoPE sections (temporal, height, width) must sum to head_dim / 2 = 16.
             "mrope_section": [4, 6, 6]},
    "vision": {"depth": 2, "embed_dim": 128, "num_heads": 4, "mlp_ratio": 2, "patch_size": 14,
               "spatial_merge_size": 2, "temporal_patch_size": 2},
    # Pixel budget: a 224x224 screenshot stays 224x224 (8x8 merged patches = 64 image tokens).
    "min_pixels": 56 * 56,
    "max_pixels": 224 * 224,
}


def cache_root() -> Path:
    """Folder for built checkpoints: ``$UIVLM_CACHE`` or ``~/.cache/uivlm``."""
    return Path(os.environ.get("UIVLM_CACHE", Path.home() / ".cache" / "uivlm"))


def _recipe_hash(recipe: dict) -> str:
    import transformers

    payload = json.dumps({"recipe": recipe, "corpus": _TOKENIZER_CORPUS,
                          "transformers_major": transformers.__version__.split(".")[0]},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def build_tiny_tokenizer(special_tokens: list[str], vocab_size: int):
    """Train a small byte-level BPE on the workbook's vocabulary and wrap it in Qwen2's tokenizer class."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(_TOKENIZER_CORPUS.split("\n"), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": special_tokens[1:]})
    tokenizer.add_tokens([special_tokens[0]], special_tokens=True)
    return tokenizer


def _build_qwen2_vl(out_dir: Path, recipe: dict) -> None:
    import torch
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    tokenizer = build_tiny_tokenizer(_QWEN_SPECIAL_TOKENS, recipe["bpe_vocab_size"])
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in _QWEN_SPECIAL_TOKENS}
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"

    text, vision = recipe["text"], recipe["vision"]
    config = Qwen2VLConfig(
        text_config={
            "hidden_size": text["hidden_size"], "intermediate_size": text["intermediate_size"],
            "num_hidden_layers": text["num_hidden_layers"],
            "num_attention_heads": text["num_attention_heads"],
            "num_key_value_heads": text["num_key_value_heads"],
            "max_position_embeddings": text["max_position_embeddings"],
            "vocab_size": len(tokenizer),
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                                "mrope_section": text["mrope_section"]},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={**{k: vision[k] for k in ("depth", "embed_dim", "num_heads", "mlp_ratio",
                                                 "patch_size", "spatial_merge_size",
                                                 "temporal_patch_size")},
                       "hidden_size": text["hidden_size"]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(recipe["seed"])
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out_dir, safe_serialization=True)

    budget = {"shortest_edge": recipe["min_pixels"], "longest_edge": recipe["max_pixels"]}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=budget),
        video_processor=Qwen2VLVideoProcessor(size=budget),
        tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)


_BUILDERS = {"qwen2_vl": (_build_qwen2_vl, TINY_QWEN2_VL_RECIPE)}


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
    if model_name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {model_name!r}; embedded tiny models: {sorted(TINY_MODELS)}")
    builder, recipe = _BUILDERS[TINY_MODELS[model_name]]
    root = Path(cache_dir) if cache_dir else cache_root() / "tiny"
    target = root / f"{model_name.split('/')[-1]}-{_recipe_hash(recipe)}"
    if target.is_dir() and (target / "model.safetensors").is_file() and not rebuild:
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=root))
    try:
        builder(staging, recipe)
        (staging / "uivlm_recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True))
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
