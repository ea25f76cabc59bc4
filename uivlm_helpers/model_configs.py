"""Architecture facts of the full-size models the workbook offers, written down without any download.

The memory estimator and the GPU experiments need the real dimensions of Qwen2-VL, Qwen2.5-VL, LLaVA-1.5,
Idefics2, Florence-2 and PaliGemma, while a notebook must not fetch a multi-GB checkpoint just to say
whether it would fit. The values below are the published ``config.json`` / processor values; the
``sources`` entry of each model says where they were read, and ``unconfirmed`` lists what could not be
checked against a copy of the published file.

* :func:`published_config` - a plain dict: text and vision dimensions, the image-token rule, the
  parameter counts (total, vision tower + projector, linear weights that quantization replaces) and the
  shapes LoRA adapts. Needs no transformers import.
* :func:`build_config` - the real transformers config object, so a random-weight full-size model can be
  built on a GPU (``AutoModelForImageTextToText.from_config(build_config(name))``) or on the ``meta``
  device to count parameters (:func:`config_from_spec` does the same for any spec).
* :func:`architecture_spec` - the same plain dict for a published name, an embedded tiny model or a local
  checkpoint folder of one of these families (read from its ``config.json`` and processor settings by
  :func:`spec_from_hf_config`).
* :func:`image_token_count` - how many image tokens (and vision-tower patches) a screenshot becomes.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

# -- published values ----------------------------------------------------------------------------
# Qwen processors: the published preprocessor_config.json of Qwen2-VL-*-Instruct and Qwen2.5-VL-*-Instruct
# have min_pixels = 56*56 = 3136 and max_pixels = 28*28*16384 = 12845056.
_QWEN_PIXELS = {"min_pixels": 3136, "max_pixels": 12845056}

_QWEN2_VL_VISION = {"type": "qwen2_vl", "depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_dim": 5120,
                    "mlp_ratio": 4, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                    "in_channels": 3, "hidden_act": "quick_gelu", "norm": "layer", "mlp": "quick_gelu"}
_QWEN2_5_VL_VISION = {"type": "qwen2_5_vl", "depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_dim": 3420,
                      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3,
                      "hidden_act": "silu", "norm": "rms", "mlp": "gated", "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2}
_QWEN_TOKEN_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
                   "vision_end_token_id": 151653, "bos_token_id": 151643, "eos_token_id": 151645}
# CLIP ViT-L/14-336 (openai/clip-vit-large-patch14-336), LLaVA-1.5's tower.
_CLIP_L_336 = {"type": "clip", "depth": 24, "embed_dim": 1024, "num_heads": 16, "mlp_dim": 4096,
               "patch_size": 14, "image_size": 336, "in_channels": 3, "hidden_act": "quick_gelu",
               "norm": "layer", "mlp": "quick_gelu", "projection_dim": 768}
# SigLIP so400m/14 (PaliGemma at 224 px; Idefics2 uses the same tower at up to 980 px).
_SIGLIP_SO400M = {"type": "siglip", "depth": 27, "embed_dim": 1152, "num_heads": 16, "mlp_dim": 4304,
                  "patch_size": 14, "in_channels": 3, "hidden_act": "gelu_pytorch_tanh", "norm": "layer",
                  "mlp": "gelu"}

_PUBLISHED: dict[str, dict] = {
    "Qwen/Qwen2-VL-2B-Instruct": {
        "family": "qwen2_vl", "model_type": "qwen2_vl", "architecture": "decoder",
        "checkpoint_dtype": "bfloat16",
        "text": {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                 "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 8960, "vocab_size": 151936,
                 "tie_word_embeddings": True, "attention_bias": True, "hidden_act": "silu",
                 "max_position_embeddings": 32768, "rope_theta": 1000000.0, "mrope_section": [16, 24, 24],
                 "rms_norm_eps": 1e-6, "norm": "rms", "mlp": "gated"},
        "vision": {**_QWEN2_VL_VISION, "out_hidden_size": 1536},
        "image_tokens": {"rule": "qwen_smart_resize", "factor": 28, **_QWEN_PIXELS},
        "token_ids": dict(_QWEN_TOKEN_IDS),
        # Exact: 2,208,985,600 parameters, 665,271,296 in the vision tower (measured on the GPU anchor
        # with the published config, and reproduced by build_config on the meta device).
        "sources": "text dims: mllm configuration_qwen2vl.hpp (Qwen2-VL-2B defaults); parameter counts "
                   "match the H100 anchor's full-size build exactly (bench/results/gpu_anchor_2b_h100.jsonl)",
        "unconfirmed": [],
    },
    "Qwen/Qwen2-VL-7B-Instruct": {
        "family": "qwen2_vl", "model_type": "qwen2_vl", "architecture": "decoder",
        "checkpoint_dtype": "bfloat16",
        "text": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                 "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 18944, "vocab_size": 152064,
                 "tie_word_embeddings": False, "attention_bias": True, "hidden_act": "silu",
                 "max_position_embeddings": 32768, "rope_theta": 1000000.0, "mrope_section": [16, 24, 24],
                 "rms_norm_eps": 1e-6, "norm": "rms", "mlp": "gated"},
        "vision": {**_QWEN2_VL_VISION, "out_hidden_size": 3584},
        "image_tokens": {"rule": "qwen_smart_resize", "factor": 28, **_QWEN_PIXELS},
        "token_ids": dict(_QWEN_TOKEN_IDS),
        "sources": "printed module tree of Qwen2VLForConditionalGeneration (zhenhua32/Qwen2-VL READ.md, "
                   "acproject/duorou docs): Embedding(152064, 3584), k_proj 3584->512, 28 layers, "
                   "MLP 18944, untied lm_head",
        "unconfirmed": ["max_position_embeddings"],
    },
    "Qwen/Qwen2.5-VL-3B-Instruct": {
        "family": "qwen2_5_vl", "model_type": "qwen2_5_vl", "architecture": "decoder",
        "checkpoint_dtype": "bfloat16",
        "text": {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
                 "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 11008, "vocab_size": 151936,
                 "tie_word_embeddings": True, "attention_bias": True, "hidden_act": "silu",
                 "max_position_embeddings": 128000, "rope_theta": 1000000.0, "mrope_section": [16, 24, 24],
                 "rms_norm_eps": 1e-6, "norm": "rms", "mlp": "gated"},
        "vision": {**_QWEN2_5_VL_VISION, "out_hidden_size": 2048},
        "image_tokens": {"rule": "qwen_smart_resize", "factor": 28, **_QWEN_PIXELS},
        "token_ids": dict(_QWEN_TOKEN_IDS),
        "sources": "a verbatim copy of the published config.json (model card dump with torchinfo counts)",
        "unconfirmed": [],
    },
    "Qwen/Qwen2.5-VL-7B-Instruct": {
        "family": "qwen2_5_vl", "model_type": "qwen2_5_vl", "architecture": "decoder",
        "checkpoint_dtype": "bfloat16",
        "text": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
                 "num_key_value_heads": 4, "head_dim": 128, "intermediate_size": 18944, "vocab_size": 152064,
                 "tie_word_embeddings": False, "attention_bias": True, "hidden_act": "silu",
                 "max_position_embeddings": 128000, "rope_theta": 1000000.0, "mrope_section": [16, 24, 24],
                 "rms_norm_eps": 1e-6, "norm": "rms", "mlp": "gated"},
        "vision": {**_QWEN2_5_VL_VISION, "out_hidden_size": 3584},
        "image_tokens": {"rule": "qwen_smart_resize", "factor": 28, **_QWEN_PIXELS},
        "token_ids": dict(_QWEN_TOKEN_IDS),
        "sources": "printed module tree of Qwen2_5_VLForConditionalGeneration (acproject/duorou "
                   "docs/qwen2.5vl_graph.md): vision 1280/3420 gated, merger -> 3584, Embedding(152064, 3584), "
                   "k_proj 3584->512, 28 layers, MLP 18944, untied lm_head",
        "unconfirmed": ["max_position_embeddings"],
    },
    "llava-hf/llava-1.5-7b-hf": {
        "family": "llava", "model_type": "llava", "architecture": "decoder",
        "checkpoint_dtype": "float16",
        "text": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 32, "head_dim": 128, "intermediate_size": 11008, "vocab_size": 32064,
                 "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu",
                 "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "norm": "rms", "mlp": "gated"},
        "vision": dict(_CLIP_L_336),
        "connector": {"type": "mlp2x_gelu", "vision_feature_layer": -2,
                      "vision_feature_select_strategy": "default"},
        # 336 px square: (336/14)^2 = 576 patch features (the CLS token is dropped by "default").
        "image_tokens": {"rule": "fixed", "tokens": 576, "patches": 577, "image_size": 336},
        "token_ids": {"image_token_id": 32000},
        "sources": "config quoted in a third-party test (LLAVA_15_CONFIG: vocab 32064, Llama-2-7B dims, "
                   "CLIP-L/14-336 vision, image_token_index 32000)",
        "unconfirmed": [],
    },
    "llava-hf/llava-1.5-13b-hf": {
        "family": "llava", "model_type": "llava", "architecture": "decoder",
        "checkpoint_dtype": "float16",
        "text": {"hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40,
                 "num_key_value_heads": 40, "head_dim": 128, "intermediate_size": 13824, "vocab_size": 32064,
                 "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu",
                 "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "norm": "rms", "mlp": "gated"},
        "vision": dict(_CLIP_L_336),
        "connector": {"type": "mlp2x_gelu", "vision_feature_layer": -2,
                      "vision_feature_select_strategy": "default"},
        "image_tokens": {"rule": "fixed", "tokens": 576, "patches": 577, "image_size": 336},
        "token_ids": {"image_token_id": 32000},
        "sources": "Llama-2-13B dimensions (5120 / 13824 / 40 layers / 40 heads, several configs); same "
                   "CLIP tower and projector as the 7B",
        "unconfirmed": ["vocab_size 32064 (the 7B's padded vocabulary; not read from the 13B's config.json)"],
    },
    "HuggingFaceM4/idefics2-8b": {
        "family": "idefics2", "model_type": "idefics2", "architecture": "decoder",
        "checkpoint_dtype": "bfloat16",
        "text": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336, "vocab_size": 32003,
                 "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu",
                 "max_position_embeddings": 32768, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
                 "norm": "rms", "mlp": "gated"},
        "vision": {**_SIGLIP_SO400M, "image_size": 980},
        "connector": {"type": "perceiver", "resampler_n_latents": 64, "resampler_depth": 3,
                      "resampler_n_heads": 16, "resampler_head_dim": 96, "num_key_value_heads": 4},
        # The processor resizes so the shorter edge is >= 378 and the longer <= 980; the perceiver turns
        # any image into 64 tokens (5 x 64 with do_image_splitting, off by default).
        "image_tokens": {"rule": "idefics2", "tokens_per_image": 64, "shortest_edge": 378,
                         "longest_edge": 980, "patch_size": 14},
        "token_ids": {"image_token_id": 32001},
        "sources": "text: Mistral-7B-v0.1 dims + vocab 32003 (an Idefics2 loader checked against the "
                   "checkpoint's weight shapes); perceiver: transformers' Idefics2PerceiverConfig defaults "
                   "(documented as idefics2-8b's); vision: the SigLIP-so400m 980 px config also shipped by "
                   "MiniCPM-V (same tower)",
        "unconfirmed": ["vision dims read from MiniCPM-V's copy of the tower config, not idefics2-8b's own "
                        "config.json", "checkpoint_dtype", "max_position_embeddings"],
    },
    "microsoft/Florence-2-large": {
        "family": "florence2", "model_type": "florence2", "architecture": "encoder_decoder",
        "checkpoint_dtype": "float16",
        "text": {"hidden_size": 1024, "encoder_layers": 12, "decoder_layers": 12, "num_hidden_layers": 24,
                 "num_attention_heads": 16, "num_key_value_heads": 16, "head_dim": 64,
                 "intermediate_size": 4096, "vocab_size": 51289, "tie_word_embeddings": True,
                 "attention_bias": True, "hidden_act": "gelu", "max_position_embeddings": 1024,
                 "norm": "layer", "mlp": "plain"},
        "vision": {"type": "davit", "embed_dim": [256, 512, 1024, 2048], "depths": [1, 1, 9, 1],
                   "num_heads": [8, 16, 32, 64], "num_groups": [8, 16, 32, 64], "patch_size": [7, 3, 3, 3],
                   "patch_stride": [4, 2, 2, 2], "patch_padding": [3, 1, 1, 1],
                   "patch_prenorm": [False, True, True, True], "window_size": 12, "projection_dim": 1024,
                   "mlp_ratio": 4.0, "image_size": 768, "norm": "layer", "mlp": "gelu"},
        # 768 px: 24 x 24 spatial features + 1 pooled token = 577 tokens into the BART encoder.
        "image_tokens": {"rule": "fixed", "tokens": 577, "patches": 577, "image_size": 768},
        "token_ids": {"image_token_id": 51289},
        "sources": "DaViT + BART-large values quoted by X-VLA (built on Florence-2-large): dim_embed "
                   "[256,512,1024,2048], depths [1,1,9,1], heads [8,16,32,64], projection 1024, vocab 51289, "
                   "d_model 1024, 12 encoder layers, encoder_ffn_dim 4096",
        "unconfirmed": ["decoder_layers 12 and 16 attention heads (BART-large values)", "checkpoint_dtype",
                        "transformers' native Florence2 port (florence-community/Florence-2-large) is used "
                        "for build_config; microsoft/Florence-2-large itself needs trust_remote_code"],
    },
    "google/paligemma-3b-pt-224": {
        "family": "paligemma", "model_type": "paligemma", "architecture": "decoder",
        "checkpoint_dtype": "float32",
        "text": {"hidden_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 8,
                 "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 16384, "vocab_size": 257216,
                 "tie_word_embeddings": True, "attention_bias": False, "hidden_act": "gelu_pytorch_tanh",
                 "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "norm": "rms", "mlp": "gated"},
        "vision": {**_SIGLIP_SO400M, "image_size": 224, "projection_dim": 2048},
        "connector": {"type": "linear", "projection_dim": 2048},
        "image_tokens": {"rule": "fixed", "tokens": 256, "patches": 256, "image_size": 224},
        "token_ids": {"image_token_id": 257152},
        "sources": "PaliGemma config quoted in several repositories (Gemma-2B text 2048/16384/18 layers/8 "
                   "heads/1 kv head/vocab 257216; SigLIP 1152/4304/27 layers; projection 2048; 256 image "
                   "tokens at 224 px)",
        "unconfirmed": ["checkpoint_dtype", "max_position_embeddings"],
    },
}

MODEL_NAMES: tuple[str, ...] = tuple(_PUBLISHED)

# Parameter counts of the families whose towers are not counted by formula below (LLaVA, Idefics2,
# Florence-2, PaliGemma): obtained by building build_config(name) on the meta device and summing;
# tests/test_memory.py rebuilds and checks them. "vision" = vision tower + projector/connector (what a
# frozen vision encoder freezes); "*_linear" = nn.Linear weights (what 4/8-bit quantization replaces;
# the lm_head is never quantized).
_PINNED_COUNTS: dict[str, dict] = {}  # filled in below, after the counting helpers


# -- image tokens ---------------------------------------------------------------------------------
def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56,
                 max_pixels: int = 28 * 28 * 1280) -> tuple[int, int]:
    """Qwen2-VL's resize rule: sides rounded to multiples of ``factor`` with the area kept in budget.

    Same arithmetic as ``transformers.models.qwen2_vl.image_processing_qwen2_vl.smart_resize``.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def image_token_count(spec: dict, width: int, height: int, min_pixels: int | None = None,
                      max_pixels: int | None = None) -> dict:
    """Image tokens in the language model's sequence and patches through the vision tower, for one image.

    Args:
        spec: :func:`architecture_spec` / :func:`published_config` output.
        width, height: screenshot size in pixels.
        min_pixels, max_pixels: pixel budget override (Qwen families); None keeps the checkpoint's.

    Returns:
        ``{"tokens", "patches", "resized": (width, height)}``. For Qwen, tokens = (h/28)*(w/28) of the
        smart-resized image and patches = 4 x tokens (2 x 2 merge).
    """
    rule = spec["image_tokens"]
    if rule["rule"] == "qwen_smart_resize":
        vision = spec["vision"]
        patch, merge = vision["patch_size"], vision["spatial_merge_size"]
        h, w = smart_resize(height, width, factor=patch * merge,
                            min_pixels=min_pixels if min_pixels is not None else rule["min_pixels"],
                            max_pixels=max_pixels if max_pixels is not None else rule["max_pixels"])
        patches = (h // patch) * (w // patch)
        return {"tokens": patches // (merge * merge), "patches": patches, "resized": (w, h)}
    if rule["rule"] == "idefics2":
        scale = min(rule["longest_edge"] / max(width, height), 1.0)
        w, h = width * scale, height * scale
        if min(w, h) < rule["shortest_edge"]:
            up = rule["shortest_edge"] / min(w, h)
            w, h = min(w * up, rule["longest_edge"]), min(h * up, rule["longest_edge"])
        patches = math.ceil(h / rule["patch_size"]) * math.ceil(w / rule["patch_size"])
        return {"tokens": rule["tokens_per_image"], "patches": patches, "resized": (round(w), round(h))}
    size = rule.get("image_size")
    return {"tokens": rule["tokens"], "patches": rule["patches"], "resized": (size, size)}


# -- parameter counting -----------------------------------------------------------------------------
def _lm_shapes(text: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of the projections in one decoder layer of a Llama-style language model."""
    h, hd = text["hidden_size"], text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    q, kv, i = text["num_attention_heads"] * hd, text["num_key_value_heads"] * hd, text["intermediate_size"]
    return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def _bart_shapes(text: dict) -> dict[str, tuple[int, int]]:
    h, i = text["hidden_size"], text["intermediate_size"]
    return {"q_proj": (h, h), "k_proj": (h, h), "v_proj": (h, h), "out_proj": (h, h), "fc1": (h, i),
            "fc2": (i, h)}


def lora_shapes(spec: dict) -> list[tuple[str, int, dict[str, tuple[int, int]]]]:
    """Groups of identical layers LoRA can adapt: ``[(group, n_layers, {module: (in, out)})]``.

    Language model only (the wrapper never adapts the vision tower). Florence-2's decoder layers also
    have cross-attention projections (``encoder_attn.*``), listed under the same module names.
    """
    text = spec["text"]
    if spec["architecture"] == "encoder_decoder":
        shapes = _bart_shapes(text)
        return [("encoder", text["encoder_layers"], shapes),
                ("decoder", text["decoder_layers"], shapes),
                ("decoder.encoder_attn", text["decoder_layers"],
                 {k: v for k, v in shapes.items() if k.endswith("proj")})]
    return [("decoder", text["num_hidden_layers"], _lm_shapes(text))]


def _qwen_text_counts(text: dict) -> dict:
    h, layers, vocab = text["hidden_size"], text["num_hidden_layers"], text["vocab_size"]
    shapes = _lm_shapes(text)
    linear = sum(a * b for a, b in shapes.values())
    bias = (shapes["q_proj"][1] + 2 * shapes["k_proj"][1]) if text.get("attention_bias", True) else 0
    per_layer = linear + bias + 2 * h
    embed = vocab * h
    lm_head = 0 if text["tie_word_embeddings"] else vocab * h
    return {"text": layers * per_layer + h + embed + lm_head, "text_linear": layers * linear,
            "embedding": embed, "lm_head": lm_head}


def _qwen_vision_counts(vision: dict) -> dict:
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


def count_parameters(spec: dict) -> dict:
    """Parameter counts of an architecture spec.

    Exact formulas for the Qwen2-VL / Qwen2.5-VL families (checked against the real classes on the meta
    device); pinned meta-device counts for the other published models; any other spec of those families
    (an embedded tiny model, a local checkpoint) is counted by building its transformers model from the
    spec on the ``meta`` device (see :func:`config_from_spec`; needs transformers).

    Returns:
        ``{"total", "vision", "text", "text_linear", "vision_linear", "embedding", "lm_head"}`` where
        ``vision`` includes the projector / merger and ``*_linear`` are nn.Linear weights (no biases, no
        lm_head): what bitsandbytes replaces when loading in 4 or 8 bits.
    """
    if spec["family"] in ("qwen2_vl", "qwen2_5_vl"):
        counts = {**_qwen_text_counts(spec["text"]), **_qwen_vision_counts(spec["vision"])}
        counts["total"] = counts["text"] + counts["vision"]
        return counts
    if spec.get("name") in _PINNED_COUNTS:
        return dict(_PINNED_COUNTS[spec["name"]])
    return _count_on_meta(config_from_spec(spec), _model_class(spec["family"]))


def count_parameters_meta(model_name: str) -> dict:
    """Count parameters by building the real transformers model on the ``meta`` device (no memory).

    Splits as :func:`count_parameters` does, from module names: the vision tower and its projector
    (``visual``, ``vision_tower``, ``vision_model``, ``multi_modal_projector``, ``connector``,
    ``image_projection``/``image_proj_norm``/``image_pos_embed``/``visual_temporal_embed``) vs the rest.
    """
    return _count_on_meta(build_config(model_name), model_class_for(model_name))


def _count_on_meta(config, model_class) -> dict:
    """:func:`count_parameters_meta`'s counts for a transformers config object and model class."""
    import torch
    from torch import nn

    with torch.device("meta"):
        model = model_class(config)
    vision_keys = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "connector",
                   "image_projection", "image_proj_norm", "image_pos_embed", "visual_temporal_embed")
    counts = dict.fromkeys(("total", "vision", "text", "text_linear", "vision_linear", "embedding",
                            "lm_head"), 0)
    seen = set()
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        part = "vision" if any(k in name.split(".") or name.startswith(k) for k in vision_keys) else "text"
        counts["total"] += param.numel()
        counts[part] += param.numel()
    output = model.get_output_embeddings()
    input_embeddings = model.get_input_embeddings()
    counts["embedding"] = input_embeddings.weight.numel()
    counts["lm_head"] = 0 if output.weight is input_embeddings.weight else output.weight.numel()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module is not output:
            part = "vision" if any(k in name.split(".") for k in vision_keys) else "text"
            counts[f"{part}_linear"] += module.weight.numel()
    return counts


# -- transformers config objects ------------------------------------------------------------------
def _qwen_config(spec: dict):
    text, vision = spec["text"], spec["vision"]
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
    if spec["family"] == "qwen2_vl":
        from transformers import Qwen2VLConfig

        vision_config = {k: vision[k] for k in ("depth", "embed_dim", "num_heads", "mlp_ratio", "patch_size",
                                                "spatial_merge_size", "temporal_patch_size", "in_channels")}
        vision_config["hidden_size"] = vision["out_hidden_size"]
        return Qwen2VLConfig(text_config=text_config, vision_config=vision_config,
                             tie_word_embeddings=text["tie_word_embeddings"], **tokens)
    from transformers import Qwen2_5_VLConfig

    vision_config = {"depth": vision["depth"], "hidden_size": vision["embed_dim"],
                     "intermediate_size": vision["mlp_dim"], "num_heads": vision["num_heads"],
                     "out_hidden_size": vision["out_hidden_size"], "patch_size": vision["patch_size"],
                     "spatial_merge_size": vision["spatial_merge_size"],
                     "temporal_patch_size": vision["temporal_patch_size"], "in_channels": vision["in_channels"],
                     "window_size": vision["window_size"],
                     "fullatt_block_indexes": list(vision["fullatt_block_indexes"]),
                     "tokens_per_second": vision["tokens_per_second"], "hidden_act": vision["hidden_act"]}
    return Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config,
                            tie_word_embeddings=text["tie_word_embeddings"], **tokens)


def _llama_like(text: dict, model_type: str) -> dict:
    config = {"model_type": model_type, "hidden_size": text["hidden_size"],
              "intermediate_size": text["intermediate_size"], "num_hidden_layers": text["num_hidden_layers"],
              "num_attention_heads": text["num_attention_heads"],
              "num_key_value_heads": text["num_key_value_heads"], "vocab_size": text["vocab_size"],
              "max_position_embeddings": text["max_position_embeddings"], "rms_norm_eps": text["rms_norm_eps"],
              "hidden_act": text["hidden_act"], "tie_word_embeddings": text["tie_word_embeddings"],
              "head_dim": text["head_dim"], "attention_bias": text["attention_bias"]}
    if "rope_theta" in text:
        config["rope_parameters"] = {"rope_type": "default", "rope_theta": text["rope_theta"]}
    return config


def _vit(vision: dict, model_type: str) -> dict:
    config = {"model_type": model_type, "hidden_size": vision["embed_dim"], "intermediate_size": vision["mlp_dim"],
              "num_hidden_layers": vision["depth"], "num_attention_heads": vision["num_heads"],
              "patch_size": vision["patch_size"], "image_size": vision["image_size"],
              "hidden_act": vision["hidden_act"]}
    if model_type == "clip_vision_model":
        config["projection_dim"] = vision["projection_dim"]
    if model_type == "siglip_vision_model":
        # PaliGemma uses the patch features; the SigLIP pooling head is not part of the checkpoint.
        config["vision_use_head"] = False
        if "projection_dim" in vision:
            config["projection_dim"] = vision["projection_dim"]
    return config


def build_config(model_name: str):
    """The transformers config object of a published model, built from :func:`published_config`.

    ``AutoModelForImageTextToText.from_config(build_config(name))`` gives the full-size architecture with
    random weights (on a GPU for memory experiments, or inside ``torch.device("meta")`` to count).
    """
    return config_from_spec(_raw(model_name))


def config_from_spec(spec: dict):
    """The transformers config object an architecture spec describes (published, tiny or local)."""
    family = spec["family"]
    if family in ("qwen2_vl", "qwen2_5_vl"):
        return _qwen_config(spec)
    text, vision = spec["text"], spec["vision"]
    if family == "llava":
        from transformers import LlavaConfig

        return LlavaConfig(vision_config=_vit(vision, "clip_vision_model"),
                           text_config=_llama_like(text, "llama"),
                           image_token_index=spec["token_ids"]["image_token_id"],
                           image_seq_length=spec["image_tokens"]["tokens"], projector_hidden_act="gelu",
                           vision_feature_layer=spec["connector"]["vision_feature_layer"],
                           vision_feature_select_strategy=spec["connector"]["vision_feature_select_strategy"],
                           tie_word_embeddings=text["tie_word_embeddings"])
    if family == "idefics2":
        from transformers import Idefics2Config

        connector = spec["connector"]
        vision_config = _vit(vision, "idefics2_vision")
        perceiver = {"model_type": "idefics2_perceiver", "hidden_size": text["hidden_size"],
                     "resampler_n_latents": connector["resampler_n_latents"],
                     "resampler_depth": connector["resampler_depth"],
                     "resampler_n_heads": connector["resampler_n_heads"],
                     "resampler_head_dim": connector["resampler_head_dim"],
                     "num_key_value_heads": connector["num_key_value_heads"], "hidden_act": "silu"}
        return Idefics2Config(vision_config=vision_config, perceiver_config=perceiver,
                              text_config=_llama_like(text, "mistral"),
                              image_token_id=spec["token_ids"]["image_token_id"],
                              tie_word_embeddings=text["tie_word_embeddings"])
    if family == "paligemma":
        from transformers import PaliGemmaConfig

        return PaliGemmaConfig(vision_config=_vit(vision, "siglip_vision_model"),
                               text_config=_llama_like(text, "gemma"),
                               image_token_index=spec["token_ids"]["image_token_id"],
                               projection_dim=spec["connector"]["projection_dim"],
                               hidden_size=text["hidden_size"], vocab_size=text["vocab_size"])
    if family == "florence2":
        from transformers import Florence2Config

        vision_config = {"embed_dim": list(vision["embed_dim"]), "depths": list(vision["depths"]),
                         "num_heads": list(vision["num_heads"]), "num_groups": list(vision["num_groups"]),
                         "patch_size": list(vision["patch_size"]), "patch_stride": list(vision["patch_stride"]),
                         "patch_padding": list(vision["patch_padding"]),
                         "patch_prenorm": list(vision["patch_prenorm"]), "window_size": vision["window_size"],
                         "projection_dim": vision["projection_dim"], "mlp_ratio": vision["mlp_ratio"]}
        text_config = {"model_type": "bart", "vocab_size": text["vocab_size"], "d_model": text["hidden_size"],
                       "encoder_layers": text["encoder_layers"], "decoder_layers": text["decoder_layers"],
                       "encoder_attention_heads": text["num_attention_heads"],
                       "decoder_attention_heads": text["num_attention_heads"],
                       "encoder_ffn_dim": text["intermediate_size"], "decoder_ffn_dim": text["intermediate_size"],
                       "max_position_embeddings": text["max_position_embeddings"]}
        return Florence2Config(vision_config=vision_config, text_config=text_config,
                               image_token_id=spec["token_ids"]["image_token_id"],
                               tie_word_embeddings=text["tie_word_embeddings"])
    raise ValueError(f"no config builder for family {family!r}")


def model_class_for(model_name: str):
    """The transformers model class that ``AutoModelForImageTextToText`` builds for a published model."""
    return _model_class(_raw(model_name)["family"])


def _model_class(family: str):
    """The transformers model class of a family."""
    import transformers

    names = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
             "llava": "LlavaForConditionalGeneration", "idefics2": "Idefics2ForConditionalGeneration",
             "paligemma": "PaliGemmaForConditionalGeneration", "florence2": "Florence2ForConditionalGeneration"}
    return getattr(transformers, names[family])


# -- public lookups ----------------------------------------------------------------------------------
def _raw(model_name: str) -> dict:
    if model_name not in _PUBLISHED:
        raise KeyError(f"no published config for {model_name!r}; known: {list(MODEL_NAMES)}")
    return {**copy.deepcopy(_PUBLISHED[model_name]), "name": model_name}


def _with_derived(name: str, spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    spec["name"] = name
    spec["params"] = count_parameters(spec)
    spec["lora"] = [{"group": g, "layers": n, "modules": {k: list(v) for k, v in shapes.items()}}
                    for g, n, shapes in lora_shapes(spec)]
    return spec


def published_config(model_name: str) -> dict:
    """Key dimensions of a published model as a plain dict (a fresh copy each call).

    Keys: ``family``, ``architecture`` ("decoder" or "encoder_decoder"), ``checkpoint_dtype``, ``text``
    (hidden size, layers, heads, kv heads, head_dim, intermediate size, vocabulary, ...), ``vision`` (depth,
    embed dim, heads, MLP dim, patch size, ...), ``image_tokens`` (the rule a screenshot's token count
    follows), ``token_ids``, ``params`` (see :func:`count_parameters`), ``lora`` (adaptable shapes),
    ``sources`` and ``unconfirmed``.

    Raises:
        KeyError: the name is not one of :data:`MODEL_NAMES` (the message lists them).
    """
    return _with_derived(model_name, _raw(model_name))


# -- specs read from a checkpoint's config.json -----------------------------------------------------
# The language model and vision tower each family's spec describes (what config_from_spec rebuilds).
_FAMILY_SUB_MODELS = {"llava": ("llama", "clip_vision_model"), "idefics2": ("mistral", "idefics2_vision"),
                      "paligemma": ("gemma", "siglip_vision_model"), "florence2": ("bart", "florence_vision")}


def _decoder_text_spec(config: dict) -> dict:
    """Dimensions of a Llama-style language model (Qwen2, Llama, Mistral, Gemma) from a config.json.

    The text keys are read from ``text_config`` (or the top level, where transformers 4 wrote Qwen's).
    """
    text = config.get("text_config") or config
    heads = text["num_attention_heads"]
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    tie = config.get("tie_word_embeddings", text.get("tie_word_embeddings", False))
    spec = {"hidden_size": text["hidden_size"], "num_hidden_layers": text["num_hidden_layers"],
            "num_attention_heads": heads, "num_key_value_heads": text.get("num_key_value_heads") or heads,
            "head_dim": text.get("head_dim") or text["hidden_size"] // heads,
            "intermediate_size": text["intermediate_size"], "vocab_size": text["vocab_size"],
            "tie_word_embeddings": bool(tie), "attention_bias": bool(text.get("attention_bias", False)),
            "hidden_act": text.get("hidden_act", "silu"),
            "max_position_embeddings": text.get("max_position_embeddings"),
            "rms_norm_eps": text.get("rms_norm_eps", 1e-6), "norm": "rms", "mlp": "gated"}
    theta = rope.get("rope_theta", text.get("rope_theta"))
    if theta is not None:
        spec["rope_theta"] = theta
    return spec


def _vit_spec(vision: dict, tower: dict) -> dict:
    """A CLIP / SigLIP tower's dimensions from its ``vision_config``, over the family's published ``tower``."""
    act = vision.get("hidden_act", tower["hidden_act"])
    spec = {**tower, "depth": vision["num_hidden_layers"], "embed_dim": vision["hidden_size"],
            "num_heads": vision["num_attention_heads"], "mlp_dim": vision["intermediate_size"],
            "patch_size": vision["patch_size"], "image_size": vision["image_size"],
            "in_channels": vision.get("num_channels", 3), "hidden_act": act,
            "mlp": "quick_gelu" if act == "quick_gelu" else "gelu"}
    if "projection_dim" in vision:
        spec["projection_dim"] = vision["projection_dim"]
    return spec


def _image_token_id(config: dict) -> int | None:
    return config.get("image_token_id", config.get("image_token_index"))


def _processor_side(processor: dict) -> int | None:
    """Side of the square image a fixed-size image processor returns: its centre crop, else its resize."""
    crop, size = processor.get("crop_size") or {}, processor.get("size") or {}
    if crop and processor.get("do_center_crop", True):
        return crop.get("height")
    return size.get("height") or size.get("shortest_edge")


def _qwen_pixels(processor: dict) -> dict:
    """The Qwen processor's pixel budget (``min_pixels``/``max_pixels``), when its settings give one."""
    size = processor.get("size") or {}
    low = processor.get("min_pixels", size.get("shortest_edge"))
    high = processor.get("max_pixels", size.get("longest_edge"))
    return {"min_pixels": int(low), "max_pixels": int(high)} if low and high else {}


def _qwen_from_hf(config: dict, processor: dict) -> dict:
    """Qwen2-VL / Qwen2.5-VL: Qwen2 text (biased q/k/v, M-RoPE), the family's ViT and patch merger."""
    model_type = config["model_type"]
    text = config.get("text_config") or config
    vision = config["vision_config"]
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    text_spec = {**_decoder_text_spec(config), "attention_bias": True,
                 "rope_theta": rope.get("rope_theta", text.get("rope_theta")),
                 "mrope_section": rope.get("mrope_section")}
    out_hidden = vision.get("out_hidden_size") or (vision["hidden_size"] if model_type == "qwen2_vl"
                                                   else text["hidden_size"])
    shared = {"depth": vision["depth"], "num_heads": vision["num_heads"], "patch_size": vision["patch_size"],
              "spatial_merge_size": vision["spatial_merge_size"],
              "temporal_patch_size": vision["temporal_patch_size"],
              "in_channels": vision.get("in_channels", vision.get("in_chans", 3)), "out_hidden_size": out_hidden}
    if model_type == "qwen2_vl":
        embed = vision["embed_dim"]
        vision_spec = {**_QWEN2_VL_VISION, **shared, "embed_dim": embed, "mlp_ratio": vision["mlp_ratio"],
                       "mlp_dim": int(embed * vision["mlp_ratio"])}
    else:
        vision_spec = {**_QWEN2_5_VL_VISION, **shared, "embed_dim": vision["hidden_size"],
                       "mlp_dim": vision["intermediate_size"]}
    factor = vision["patch_size"] * vision["spatial_merge_size"]
    return {"family": model_type, "architecture": "decoder", "text": text_spec, "vision": vision_spec,
            "image_tokens": {"rule": "qwen_smart_resize", "factor": factor, **_QWEN_PIXELS, **_qwen_pixels(processor)},
            "token_ids": {k: config.get(k) for k in _QWEN_TOKEN_IDS}}


def _llava_from_hf(config: dict, processor: dict) -> dict:
    """LLaVA-1.5: Llama text, CLIP tower, two-layer GELU projector; one fixed-size square image."""
    vision = _vit_spec(config["vision_config"], _CLIP_L_336)
    strategy = config.get("vision_feature_select_strategy", "default")
    side = _processor_side(processor) or vision["image_size"]
    grid = (side // vision["patch_size"]) ** 2
    return {"family": "llava", "architecture": "decoder", "text": _decoder_text_spec(config), "vision": vision,
            "connector": {"type": "mlp2x_gelu", "vision_feature_layer": config.get("vision_feature_layer", -2),
                          "vision_feature_select_strategy": strategy},
            # The tower sees the patches and the CLS token; "default" drops the CLS feature, "full" keeps it.
            "image_tokens": {"rule": "fixed", "tokens": grid + (strategy == "full"), "patches": grid + 1,
                             "image_size": side},
            "token_ids": {"image_token_id": _image_token_id(config)}}


def _idefics2_from_hf(config: dict, processor: dict) -> dict:
    """Idefics2: Mistral text, SigLIP tower at native aspect ratio, perceiver resampler (fixed tokens)."""
    vision = _vit_spec(config["vision_config"], _SIGLIP_SO400M)
    perceiver = config["perceiver_config"]
    size = processor.get("size") or {}
    default = _PUBLISHED["HuggingFaceM4/idefics2-8b"]["image_tokens"]  # Idefics2ImageProcessor's defaults
    keys = ("resampler_n_latents", "resampler_depth", "resampler_n_heads", "resampler_head_dim",
            "num_key_value_heads")
    return {"family": "idefics2", "architecture": "decoder", "text": _decoder_text_spec(config), "vision": vision,
            "connector": {"type": "perceiver", **{k: perceiver[k] for k in keys}},
            "image_tokens": {"rule": "idefics2", "tokens_per_image": perceiver["resampler_n_latents"],
                             "shortest_edge": size.get("shortest_edge", default["shortest_edge"]),
                             "longest_edge": size.get("longest_edge", default["longest_edge"]),
                             "patch_size": vision["patch_size"]},
            "token_ids": {"image_token_id": _image_token_id(config)}}


def _paligemma_from_hf(config: dict, processor: dict) -> dict:
    """PaliGemma: Gemma text, SigLIP tower without its pooling head, one linear projection."""
    projection = config.get("projection_dim") or config["vision_config"]["projection_dim"]
    vision = {**_vit_spec(config["vision_config"], _SIGLIP_SO400M), "projection_dim": projection}
    side = _processor_side(processor) or vision["image_size"]
    tokens = (side // vision["patch_size"]) ** 2
    return {"family": "paligemma", "architecture": "decoder", "text": _decoder_text_spec(config),
            "vision": vision, "connector": {"type": "linear", "projection_dim": projection},
            "image_tokens": {"rule": "fixed", "tokens": tokens, "patches": tokens, "image_size": side},
            "token_ids": {"image_token_id": _image_token_id(config)}}


def _florence2_from_hf(config: dict, processor: dict) -> dict:
    """Florence-2: DaViT tower (its image size is the processor's) into a BART encoder-decoder."""
    text, vision = config["text_config"], config["vision_config"]
    side = _processor_side(processor) or _PUBLISHED["microsoft/Florence-2-large"]["vision"]["image_size"]
    # The last stage's grid (total stride 32 for the published strides) plus one pooled token.
    tokens = (side // math.prod(vision["patch_stride"])) ** 2 + 1
    heads = text["encoder_attention_heads"]
    text_spec = {"hidden_size": text["d_model"], "encoder_layers": text["encoder_layers"],
                 "decoder_layers": text["decoder_layers"],
                 "num_hidden_layers": text["encoder_layers"] + text["decoder_layers"],
                 "num_attention_heads": heads, "num_key_value_heads": heads, "head_dim": text["d_model"] // heads,
                 "intermediate_size": text["encoder_ffn_dim"], "vocab_size": text["vocab_size"],
                 "tie_word_embeddings": bool(config.get("tie_word_embeddings", True)), "attention_bias": True,
                 "hidden_act": text.get("activation_function", "gelu"),
                 "max_position_embeddings": text["max_position_embeddings"], "norm": "layer", "mlp": "plain"}
    stages = ("embed_dim", "depths", "num_heads", "num_groups", "patch_size", "patch_stride", "patch_padding",
              "patch_prenorm")
    vision_spec = {"type": "davit", **{k: list(vision[k]) for k in stages}, "window_size": vision["window_size"],
                   "projection_dim": vision["projection_dim"], "mlp_ratio": vision["mlp_ratio"],
                   "image_size": side, "norm": "layer", "mlp": "gelu"}
    return {"family": "florence2", "architecture": "encoder_decoder", "text": text_spec, "vision": vision_spec,
            "image_tokens": {"rule": "fixed", "tokens": tokens, "patches": tokens, "image_size": side},
            "token_ids": {"image_token_id": _image_token_id(config)}}


_HF_READERS = {"qwen2_vl": _qwen_from_hf, "qwen2_5_vl": _qwen_from_hf, "llava": _llava_from_hf,
               "idefics2": _idefics2_from_hf, "florence2": _florence2_from_hf, "paligemma": _paligemma_from_hf}

#: The ``model_type`` values :func:`spec_from_hf_config` reads.
CONFIG_MODEL_TYPES: tuple[str, ...] = tuple(_HF_READERS)


def _complete_config(config: dict, name: str) -> dict:
    """The config.json with its transformers config class's defaults filled in.

    Files written by transformers 4 leave out what equals the default (llava-1.5-7b-hf's ``text_config``
    has no ``hidden_size``: Llama's 4096 is meant).
    """
    from transformers import AutoConfig

    settings = {k: v for k, v in config.items() if k != "model_type"}
    try:
        return AutoConfig.for_model(config["model_type"], **settings).to_dict()
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{name}: config.json of model_type {config['model_type']!r} cannot be read: "
                         f"{error}") from error


def _check_sub_models(config: dict, name: str) -> None:
    """Raise unless the language model and vision tower are the ones the family's spec describes."""
    family = config["model_type"]
    expected = _FAMILY_SUB_MODELS[family]
    found = (config["text_config"].get("model_type"), config["vision_config"].get("model_type"))
    if found != expected:
        raise ValueError(f"{name}: a {family} config.json with text model {found[0]!r} and vision model "
                         f"{found[1]!r} is not supported; the {family} spec describes {expected[0]!r} text "
                         f"and a {expected[1]!r} tower")


def spec_from_hf_config(config: dict, name: str = "local", image_processor: dict | None = None) -> dict:
    """Architecture spec of a checkpoint's ``config.json`` (a tiny checkpoint or a local copy).

    Reads the model types in :data:`CONFIG_MODEL_TYPES` (Qwen2-VL, Qwen2.5-VL, LLaVA, Idefics2,
    Florence-2, PaliGemma) into the shape :func:`published_config` gives that family, without the derived
    ``params`` and ``lora`` (see :func:`architecture_spec`).

    Args:
        config: the parsed ``config.json``.
        name: the model's name in messages and in ``sources``.
        image_processor: the image processor's saved settings; its pixel budget (Qwen, Idefics2) or image
            size (LLaVA, PaliGemma, Florence-2) sets ``image_tokens``. None: the family processor's
            defaults (LLaVA and PaliGemma: the tower's image size).

    Raises:
        ValueError: the model_type is not supported (the message names it and lists the supported ones),
            or the family's config names another language model or vision tower than its spec describes.
    """
    model_type = config.get("model_type")
    if model_type not in _HF_READERS:
        raise ValueError(f"{name}: reading model_type {model_type!r} from config.json is not supported; "
                         f"supported model types: {list(CONFIG_MODEL_TYPES)}; or use one of the published "
                         f"names {list(MODEL_NAMES)}")
    if model_type in _FAMILY_SUB_MODELS:
        config = _complete_config(config, name)
        _check_sub_models(config, name)
    spec = _HF_READERS[model_type](config, image_processor or {})
    return {**spec, "model_type": model_type,
            "checkpoint_dtype": config.get("dtype") or config.get("torch_dtype") or "float32",
            "sources": f"{name}/config.json", "unconfirmed": []}


def _image_processor_settings(folder: Path) -> dict:
    """The image processor's settings saved in a checkpoint folder ({} when there are none)."""
    for file in ("preprocessor_config.json", "processor_config.json"):
        path = folder / file
        if path.is_file():
            data = json.loads(path.read_text())
            data = data.get("image_processor", data)
            if any(key in data for key in ("size", "crop_size", "min_pixels", "max_pixels")):
                return data
    return {}


def architecture_spec(model_name: str) -> dict:
    """Architecture spec for a published name, an embedded tiny model or a local checkpoint folder.

    Folders (a tiny model's is built by ``tiny.tiny_checkpoint``) are read from their ``config.json`` and
    image processor settings (:func:`spec_from_hf_config`), so a tiny model's counts are those of the
    weights the workbook really trains. No network access.

    Raises:
        ValueError: neither a published name nor a folder with a ``config.json``, or a ``config.json``
            :func:`spec_from_hf_config` does not read.
    """
    if model_name in _PUBLISHED:
        return published_config(model_name)
    from .pretrained import local_checkpoint

    folder = local_checkpoint(model_name) or Path(model_name)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{model_name!r} is neither a published model ({list(MODEL_NAMES)}), an embedded tiny "
                         f"model nor a folder with config.json; cannot estimate it without downloading")
    spec = spec_from_hf_config(json.loads(config_file.read_text()), name=model_name,
                               image_processor=_image_processor_settings(folder))
    return _with_derived(model_name, spec)


# Pinned counts (see _PINNED_COUNTS above): count_parameters_meta(name) with transformers 5.24. They agree
# with the published totals: LLaVA-1.5-7B 7.06 B, 13B 13.35 B, Idefics2-8B 8.40 B, Florence-2-large 0.77 B,
# PaliGemma-3B 2.92 B (2,923,466,480).
_PINNED_COUNTS.update({
    "llava-hf/llava-1.5-7b-hf": {
        "total": 7063427072, "vision": 324487168, "text": 6738939904, "text_linear": 6476005376,
        "vision_linear": 322961408, "embedding": 131334144, "lm_head": 131334144},
    "llava-hf/llava-1.5-13b-hf": {
        "total": 13351494656, "vision": 334974976, "text": 13016519680, "text_linear": 12687769600,
        "vision_linear": 333447168, "embedding": 164167680, "lm_head": 164167680},
    "HuggingFaceM4/idefics2-8b": {
        "total": 8402768112, "vision": 1161011440, "text": 7241756672, "text_linear": 6979321856,
        "vision_linear": 1153986560, "embedding": 131084288, "lm_head": 131084288},
    "microsoft/Florence-2-large": {
        "total": 770173952, "vision": 362833920, "text": 407340032, "text_linear": 352321536,
        "vision_linear": 337117184, "embedding": 52519936, "lm_head": 0},
    "google/paligemma-3b-pt-224": {
        "total": 2923466480, "vision": 414803696, "text": 2508662784, "text_linear": 1981808640,
        "vision_linear": 413429760, "embedding": 526778368, "lm_head": 0},
})
