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
    "uivlm/tiny-qwen2.5-vl": "qwen2_5_vl",
    "uivlm/tiny-llava": "llava",
    "uivlm/tiny-idefics2": "idefics2",
    "uivlm/tiny-florence2": "florence2",
    "uivlm/tiny-paligemma": "paligemma",
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


def _workbook_phrases() -> str:
    """The default task prompt in each format and coordinate space, and the task screens' words.

    Repeated so that BPE merges them into whole-word tokens: the default prompt then costs about as
    many tokens as it would with a real model's tokenizer (a quarter of a character-level split).
    """
    from .config import DEFAULT_TASK_PROMPT
    from .prompts import COORDINATE_HINTS, FORMAT_HINTS
    from .synth_tasks import LABELS, PALETTE

    prompts = [DEFAULT_TASK_PROMPT.format(instruction="", format_hint=f, coordinate_hint=c)
               for f in FORMAT_HINTS.values() for c in COORDINATE_HINTS.values()]
    words = [f"Click the {colour} {noun} one element" for colour in PALETTE
             for noun in ("button", "text field", "link", "checkbox", "icon")]
    words += [" ".join(labels) for labels in LABELS.values()]
    words += ["Tap the only topmost bottom leftmost rightmost fifth sixth last"]
    return "\n".join(prompts * 8 + words * 4)


_TOKENIZER_CORPUS += _workbook_phrases()

TINY_QWEN2_VL_RECIPE = {
    "family": "qwen2_vl",
    "seed": 0,
    "bpe_vocab_size": 900,
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
    if special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": special_tokens[1:]})
        tokenizer.add_tokens([special_tokens[0]], special_tokens=True)
    return tokenizer


def _build_qwen(out_dir: Path, recipe: dict, config_class, model_class, processor_class, vision_config: dict,
                image_processor_args: dict) -> None:
    """Write a Qwen-family checkpoint: tokenizer, config, random weights (seeded) and processor."""
    import torch
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = build_tiny_tokenizer(_QWEN_SPECIAL_TOKENS, recipe["bpe_vocab_size"])
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE  # Qwen2.5-VL-Instruct publishes the same template
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in _QWEN_SPECIAL_TOKENS}
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"

    text = recipe["text"]
    config = config_class(
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
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    torch.manual_seed(recipe["seed"])
    model = model_class(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out_dir, safe_serialization=True)

    budget = {"shortest_edge": recipe["min_pixels"], "longest_edge": recipe["max_pixels"]}
    processor = processor_class(
        image_processor=Qwen2VLImageProcessor(size=budget, **image_processor_args),
        video_processor=Qwen2VLVideoProcessor(size=budget),
        tokenizer=tokenizer, chat_template=QWEN2_VL_CHAT_TEMPLATE)
    processor.save_pretrained(out_dir)


def _build_qwen2_vl(out_dir: Path, recipe: dict) -> None:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    vision = recipe["vision"]
    vision_config = {**{k: vision[k] for k in ("depth", "embed_dim", "num_heads", "mlp_ratio", "patch_size",
                                               "spatial_merge_size", "temporal_patch_size")},
                     "hidden_size": recipe["text"]["hidden_size"]}
    _build_qwen(out_dir, recipe, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor,
                vision_config, {})


# --- Qwen2.5-VL ------------------------------------------------------------------------------------

TINY_QWEN2_5_VL_RECIPE = {
    "family": "qwen2_5_vl",
    "seed": 0,
    "bpe_vocab_size": 900,
    "text": TINY_QWEN2_VL_RECIPE["text"],
    # Qwen2.5-VL's ViT: RMSNorm + SwiGLU blocks, window attention except in the full-attention blocks.
    "vision": {"depth": 2, "hidden_size": 128, "intermediate_size": 256, "num_heads": 4, "patch_size": 14,
               "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
               "fullatt_block_indexes": [1]},
    "min_pixels": 56 * 56,
    "max_pixels": 224 * 224,
}


def _build_qwen2_5_vl(out_dir: Path, recipe: dict) -> None:
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    vision = recipe["vision"]
    _build_qwen(out_dir, recipe, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                {**vision, "out_hidden_size": recipe["text"]["hidden_size"]},
                {"patch_size": vision["patch_size"], "merge_size": vision["spatial_merge_size"]})


# --- SentencePiece-style tokenizers (LLaMA, Mistral, Gemma) ----------------------------------------

_BYTE_FALLBACK_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
_PRINTABLE_ASCII = [chr(i) for i in range(33, 127)]


def _train_metaspace_bpe(special_tokens: list[str], vocab_size: int, prepend_scheme: str):
    """Vocabulary and merges of a SentencePiece-like BPE ("▁" marks a space, byte fallback for the rest),
    trained on the workbook corpus. ``special_tokens`` get the first ids, then the 256 byte tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=special_tokens + _BYTE_FALLBACK_TOKENS,
                                  initial_alphabet=_PRINTABLE_ASCII + ["▁"])
    bpe.train_from_iterator(_TOKENIZER_CORPUS.split("\n"), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_llama_tokenizer(vocab_size: int, extra_special: dict[str, str] | None = None, **named):
    """A ``LlamaTokenizer`` (the class LLaVA-1.5 and Idefics2 ship) over a tiny trained BPE.

    Args:
        extra_special: named model-specific special tokens (``{"image_token": "<image>"}``): added to
            the vocabulary as special tokens and exposed as attributes (``tokenizer.image_token``).
        named: other tokenizer arguments (``pad_token``...).
    """
    from transformers import AddedToken, LlamaTokenizer

    vocab, merges = _train_metaspace_bpe(["<unk>", "<s>", "</s>"], vocab_size, "first")
    extra_special = extra_special or {}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False,
                               **extra_special, **named)
    new = [AddedToken(t, normalized=False, special=True) for t in [*extra_special.values(), *named.values()]
           if t not in vocab]
    tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    return tokenizer


# --- LLaVA-1.5 -------------------------------------------------------------------------------------

# The chat template llava-hf publishes with llava-1.5-*-hf: "USER: <image>\n... ASSISTANT:".
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}"
    "{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

TINY_LLAVA_RECIPE = {
    "family": "llava",
    "seed": 0,
    "bpe_vocab_size": 900,
    "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048},
    # CLIP ViT-L/14-336 in miniature: 112 px, 14 px patches -> 8x8 = 64 image tokens (+ CLS, dropped).
    "vision": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
               "num_attention_heads": 4, "image_size": 112, "patch_size": 14, "projection_dim": 128},
}


def _build_llava(out_dir: Path, recipe: dict) -> None:
    import torch
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration,
                              LlavaImageProcessor, LlavaProcessor)

    tokenizer = build_llama_tokenizer(recipe["bpe_vocab_size"], {"image_token": "<image>"}, pad_token="<pad>")
    tokenizer.chat_template = LLAVA_CHAT_TEMPLATE
    vision = recipe["vision"]
    side = vision["image_size"]
    # The published llava-1.5 processor: resize the shortest edge + centre crop. do_pad=True is the
    # original LLaVA "expand2square" (pad with the mean colour), which keeps a screenshot's edges; the
    # family adapter turns it on for every LLaVA checkpoint, this one ships with it.
    image_processor = LlavaImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side},
                                          do_pad=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               patch_size=vision["patch_size"], vision_feature_select_strategy="default",
                               num_additional_image_tokens=1, chat_template=LLAVA_CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>", "<image>")}
    text = recipe["text"]
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision),
        text_config=LlamaConfig(**text, vocab_size=len(tokenizer), bos_token_id=ids["<s>"],
                                eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"]),
        image_token_index=ids["<image>"], image_seq_length=(side // vision["patch_size"]) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-2,
    )
    torch.manual_seed(recipe["seed"])
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["</s>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)


# --- Idefics2 --------------------------------------------------------------------------------------

# HuggingFaceM4/idefics2-8b's chat template: "User:<image>...<end_of_utterance>\nAssistant:".
IDEFICS2_CHAT_TEMPLATE = (
    "{% for message in messages %}{{message['role'].capitalize()}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

TINY_IDEFICS2_RECIPE = {
    "family": "idefics2",
    "seed": 0,
    "bpe_vocab_size": 900,
    # Mistral-style language model.
    "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048},
    # SigLIP-style ViT at native aspect ratio (patch attention mask), up to 112 px per side.
    "vision": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
               "num_attention_heads": 4, "image_size": 112, "patch_size": 14},
    # Perceiver resampler: every image becomes resampler_n_latents tokens.
    "perceiver": {"resampler_n_latents": 16, "resampler_depth": 1, "resampler_n_heads": 4,
                  "resampler_head_dim": 32, "num_key_value_heads": 2},
    "size": {"shortest_edge": 56, "longest_edge": 112},
}


def _build_idefics2(out_dir: Path, recipe: dict) -> None:
    import torch
    from transformers import (Idefics2Config, Idefics2ForConditionalGeneration, Idefics2ImageProcessor,
                              Idefics2Processor)

    tokenizer = build_llama_tokenizer(
        recipe["bpe_vocab_size"],
        {"image_token": "<image>", "image_boundary_token": "<fake_token_around_image>",
         "end_of_utterance_token": "<end_of_utterance>"}, pad_token="<unk>")
    tokenizer.chat_template = IDEFICS2_CHAT_TEMPLATE
    perceiver = recipe["perceiver"]
    processor = Idefics2Processor(
        image_processor=Idefics2ImageProcessor(size=recipe["size"], do_image_splitting=False),
        tokenizer=tokenizer, image_seq_len=perceiver["resampler_n_latents"],
        chat_template=IDEFICS2_CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<unk>", "<image>", "<end_of_utterance>")}
    text = recipe["text"]
    config = Idefics2Config(
        vision_config=recipe["vision"],
        perceiver_config={**perceiver, "hidden_size": text["hidden_size"]},
        text_config={"model_type": "mistral", **text, "vocab_size": len(tokenizer),
                     "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["<unk>"]},
        image_token_id=ids["<image>"], tie_word_embeddings=False,
    )
    torch.manual_seed(recipe["seed"])
    model = Idefics2ForConditionalGeneration(config)
    model.generation_config.eos_token_id = [ids["<end_of_utterance>"], ids["</s>"]]
    model.generation_config.pad_token_id = ids["<unk>"]
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)


# --- PaliGemma -------------------------------------------------------------------------------------

TINY_PALIGEMMA_RECIPE = {
    "family": "paligemma",
    "seed": 0,
    "bpe_vocab_size": 900,
    # Gemma: multi-query attention, head_dim given explicitly.
    "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32,
             "max_position_embeddings": 2048},
    # SigLIP at 112 px, 14 px patches -> 64 image tokens (the 3B pt-224 model: 224 px, 256 tokens).
    "vision": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
               "num_attention_heads": 4, "image_size": 112, "patch_size": 14},
}


def _build_paligemma(out_dir: Path, recipe: dict) -> None:
    import torch
    from transformers import (AddedToken, GemmaTokenizer, PaliGemmaConfig, PaliGemmaForConditionalGeneration,
                              PaliGemmaProcessor, SiglipImageProcessor)

    vocab, merges = _train_metaspace_bpe(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"],
                                         recipe["bpe_vocab_size"], "never")
    tokenizer = GemmaTokenizer(vocab=vocab, merges=merges, image_token="<image>")
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken("<image>", normalized=False,
                                                                           special=True)]},
                                 replace_extra_special_tokens=False)
    vision, text = recipe["vision"], recipe["text"]
    side = vision["image_size"]
    image_processor = SiglipImageProcessor(size={"height": side, "width": side})
    image_processor.image_seq_length = (side // vision["patch_size"]) ** 2
    # The processor adds the 1024 <locNNNN> and 128 <segNNN> tokens (ordinary tokens, not special).
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<bos>", "<eos>", "<pad>", "<image>")}
    config = PaliGemmaConfig(
        vision_config={**vision, "vision_use_head": False},
        text_config={"model_type": "gemma", **text, "vocab_size": len(tokenizer), "bos_token_id": ids["<bos>"],
                     "eos_token_id": ids["<eos>"], "pad_token_id": ids["<pad>"]},
        image_token_index=ids["<image>"], vocab_size=len(tokenizer), projection_dim=text["hidden_size"],
        hidden_size=text["hidden_size"],
    )
    torch.manual_seed(recipe["seed"])
    model = PaliGemmaForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<eos>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)


# --- Florence-2 ------------------------------------------------------------------------------------

# Florence-2's task and structure tokens (the 1000 <loc_N> tokens come on top).
_FLORENCE_TASK_TOKENS = ["<od>", "</od>", "<ocr>", "</ocr>", "<cap>", "</cap>", "<ncap>", "</ncap>", "<dcap>",
                         "</dcap>", "<grounding>", "</grounding>", "<seg>", "</seg>", "<sep>", "<region_cap>",
                         "</region_cap>", "<proposal>", "</proposal>", "<poly>", "</poly>", "<and>"]

TINY_FLORENCE2_RECIPE = {
    "family": "florence2",
    "seed": 0,
    "bpe_vocab_size": 900,
    # BART encoder-decoder language model.
    "text": {"d_model": 128, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
             "decoder_attention_heads": 4, "encoder_ffn_dim": 256, "decoder_ffn_dim": 256,
             "max_position_embeddings": 1024},
    # DaViT in miniature: four stages (total stride 32); 128 px -> 4x4 = 16 tokens + 1 pooled = 17.
    "vision": {"depths": [1, 1, 1, 1], "embed_dim": [32, 32, 64, 128], "num_heads": [1, 1, 2, 4],
               "num_groups": [1, 1, 2, 4], "window_size": 4, "drop_path_rate": 0.0},
    "image_size": 128,
}


def _build_florence2(out_dir: Path, recipe: dict) -> None:
    import torch
    from transformers import (AddedToken, BartConfig, BartTokenizer, CLIPImageProcessor, Florence2Config,
                              Florence2ForConditionalGeneration, Florence2Processor)

    # BART's byte-level BPE (RoBERTa's specials at 0-3, <mask> last), then Florence's added tokens.
    bpe_tokenizer = build_tiny_tokenizer([], recipe["bpe_vocab_size"])
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for token in sorted(bpe_tokenizer.get_vocab(), key=bpe_tokenizer.get_vocab().get):
        vocab.setdefault(token, len(vocab))
    vocab["<mask>"] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(bpe_tokenizer.backend_tokenizer.to_str())["model"]["merges"]]
    tokenizer = BartTokenizer(vocab=vocab, merges=merges, image_token="<image>")
    special = ["<image>", *_FLORENCE_TASK_TOKENS, *(f"<loc_{i}>" for i in range(1000))]
    tokenizer.add_special_tokens({"additional_special_tokens": [AddedToken(t, normalized=False, special=True)
                                                                for t in special]},
                                 replace_extra_special_tokens=False)
    vision, text = recipe["vision"], recipe["text"]
    side = recipe["image_size"]
    image_processor = CLIPImageProcessor(
        size={"height": side, "width": side}, crop_size={"height": side, "width": side}, do_center_crop=False,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], resample=3)
    image_processor.image_seq_length = (side // 32) ** 2 + 1
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "</s>", "<pad>", "<image>")}
    config = Florence2Config(
        vision_config={**vision, "projection_dim": text["d_model"]},
        text_config=BartConfig(**text, vocab_size=len(tokenizer), bos_token_id=ids["<s>"], eos_token_id=ids["</s>"],
                               pad_token_id=ids["<pad>"], decoder_start_token_id=ids["</s>"],
                               forced_eos_token_id=ids["</s>"]),
        image_token_id=ids["<image>"],
    )
    torch.manual_seed(recipe["seed"])
    model = Florence2ForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["</s>"]
    model.generation_config.pad_token_id = ids["<pad>"]
    model.generation_config.decoder_start_token_id = ids["</s>"]
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)


_BUILDERS = {
    "qwen2_vl": (_build_qwen2_vl, TINY_QWEN2_VL_RECIPE),
    "qwen2_5_vl": (_build_qwen2_5_vl, TINY_QWEN2_5_VL_RECIPE),
    "llava": (_build_llava, TINY_LLAVA_RECIPE),
    "idefics2": (_build_idefics2, TINY_IDEFICS2_RECIPE),
    "paligemma": (_build_paligemma, TINY_PALIGEMMA_RECIPE),
    "florence2": (_build_florence2, TINY_FLORENCE2_RECIPE),
}


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
