"""What the two Qwen families (Qwen2-VL, Qwen2.5-VL) share: tokenizer and chat template, the tiny
checkpoint builder, the published processor and token ids, the config reader's and builder's text part and
the exact parameter-count formulas."""

from __future__ import annotations

from pathlib import Path

import torch

from .common import decoder_text_spec, lm_shapes
from .tinybuild import build_tiny_tokenizer

QWEN_SPECIAL_TOKENS = [
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


def build_qwen(out_dir: Path, recipe: dict, config_class, model_class, processor_class, vision_config: dict,
               image_processor_args: dict) -> None:
    """Write a Qwen-family checkpoint: tokenizer, config, random weights (seeded) and processor."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    tokenizer = build_tiny_tokenizer(QWEN_SPECIAL_TOKENS, recipe["bpe_vocab_size"])
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE  # Qwen2.5-VL-Instruct publishes the same template
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN_SPECIAL_TOKENS}
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



# -- published values and config.json reading ------------------------------------------------------
# Qwen processors: the published preprocessor_config.json of Qwen2-VL-*-Instruct and Qwen2.5-VL-*-Instruct
# have min_pixels = 56*56 = 3136 and max_pixels = 28*28*16384 = 12845056.
QWEN_PIXELS = {"min_pixels": 3136, "max_pixels": 12845056}

QWEN_TOKEN_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
                   "vision_end_token_id": 151653, "bos_token_id": 151643, "eos_token_id": 151645}


def qwen_pixels(processor: dict) -> dict:
    """The Qwen processor's pixel budget (``min_pixels``/``max_pixels``), when its settings give one."""
    size = processor.get("size") or {}
    low = processor.get("min_pixels", size.get("shortest_edge"))
    high = processor.get("max_pixels", size.get("longest_edge"))
    return {"min_pixels": int(low), "max_pixels": int(high)} if low and high else {}



def read_qwen_config(config: dict, processor: dict, vision_spec) -> dict:
    """A Qwen checkpoint's spec: Qwen2 text (biased q/k/v, M-RoPE) and the family's ViT and patch merger.

    ``vision_spec(vision_config, text_config, shared)`` gives the family's tower spec over the ``shared``
    keys (depth, heads, patch and merge sizes, channels).
    """
    text = config.get("text_config") or config
    vision = config["vision_config"]
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    text_spec = {**decoder_text_spec(config), "attention_bias": True,
                 "rope_theta": rope.get("rope_theta", text.get("rope_theta")),
                 "mrope_section": rope.get("mrope_section")}
    shared = {"depth": vision["depth"], "num_heads": vision["num_heads"], "patch_size": vision["patch_size"],
              "spatial_merge_size": vision["spatial_merge_size"],
              "temporal_patch_size": vision["temporal_patch_size"],
              "in_channels": vision.get("in_channels", vision.get("in_chans", 3))}
    factor = vision["patch_size"] * vision["spatial_merge_size"]
    return {"family": config["model_type"], "architecture": "decoder", "text": text_spec,
            "vision": vision_spec(vision, text, shared),
            "image_tokens": {"rule": "qwen_smart_resize", "factor": factor, **QWEN_PIXELS, **qwen_pixels(processor)},
            "token_ids": {k: config.get(k) for k in QWEN_TOKEN_IDS}}


def qwen_config_parts(spec: dict) -> tuple[dict, dict]:
    """``(text_config, token ids)`` of a Qwen spec, for the family's config class."""
    text = spec["text"]
    ids = spec["token_ids"]
    text_config = {
        "hidden_size": text["hidden_size"], "intermediate_size": text["intermediate_size"],
        "num_hidden_layers": text["num_hidden_layers"], "num_attention_heads": text["num_attention_heads"],
        "num_key_value_heads": text["num_key_value_heads"], "vocab_size": text["vocab_size"],
        "max_position_embeddings": text["max_position_embeddings"], "rms_norm_eps": text["rms_norm_eps"],
        "rope_parameters": {"rope_type": "default", "rope_theta": text["rope_theta"],
                            "mrope_section": list(text["mrope_section"])},
        "bos_token_id": ids["bos_token_id"], "eos_token_id": ids["eos_token_id"],
    }
    tokens = {k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                  "vision_end_token_id")}
    return text_config, tokens


# -- parameter counts (exact; checked against the real classes on the meta device) --------------------
def qwen_text_counts(text: dict) -> dict:
    h, layers, vocab = text["hidden_size"], text["num_hidden_layers"], text["vocab_size"]
    shapes = lm_shapes(text)
    linear = sum(a * b for a, b in shapes.values())
    bias = (shapes["q_proj"][1] + 2 * shapes["k_proj"][1]) if text.get("attention_bias", True) else 0
    per_layer = linear + bias + 2 * h
    embed = vocab * h
    lm_head = 0 if text["tie_word_embeddings"] else vocab * h
    return {"text": layers * per_layer + h + embed + lm_head, "text_linear": layers * linear,
            "embedding": embed, "lm_head": lm_head}


def qwen_vision_counts(vision: dict) -> dict:
    e, m, out = vision["embed_dim"], vision["mlp_dim"], vision["out_hidden_size"]
    merged = e * vision["spatial_merge_size"] ** 2
    patch_embed = e * vision["in_channels"] * vision["temporal_patch_size"] * vision["patch_size"] ** 2
    if vision["type"] == "qwen2_vl":   # LayerNorm (weight + bias), fc1 -> QuickGELU -> fc2, all with bias
        norms, mlp_linear, mlp_bias, ln_q = 4 * e, 2 * e * m, m + e, 2 * e
    else:                              # Qwen2.5-VL: RMSNorm, gated SiLU MLP with bias
        norms, mlp_linear, mlp_bias, ln_q = 2 * e, 3 * e * m, 2 * m + e, e
    block_linear = 3 * e * e + e * e + mlp_linear
    block = block_linear + 3 * e + e + mlp_bias + norms
    merger_linear = merged * merged + merged * out
    merger = merger_linear + merged + out + ln_q
    return {"vision": vision["depth"] * block + patch_embed + merger,
            "vision_linear": vision["depth"] * block_linear + merger_linear}


def count_qwen_parameters(spec: dict) -> dict:
    """:func:`uivlm_helpers.models.model_configs.count_parameters` of a Qwen spec, by formula."""
    counts = {**qwen_text_counts(spec["text"]), **qwen_vision_counts(spec["vision"])}
    counts["total"] = counts["text"] + counts["vision"]
    return counts
