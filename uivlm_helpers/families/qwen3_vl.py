"""Qwen3-VL (``Qwen3VLForConditionalGeneration``, model_type ``qwen3_vl``).

* **Language model**: the Qwen3 decoder (q/k RMSNorm, no q/k/v bias) with *interleaved* M-RoPE: the rotary
  frequencies cycle t, h, w (``mrope_interleaved``) instead of Qwen2-VL's three contiguous sections; the 3-D
  ``position_ids`` still come from ``get_rope_index`` (with the processor's ``mm_token_type_ids``).
* **Vision tower**: a ViT with 16-pixel patches (Qwen2/2.5-VL: 14), so ``smart_resize`` rounds to multiples
  of 32; learned position embeddings resampled to each grid; a 2x2 patch merger into the language model.
  **DeepStack**: the merged features of a few intermediate ViT blocks (``deepstack_visual_indexes``) pass
  through their own mergers and are *added* to the image tokens' hidden states after the first
  language-model layers (level k after layer k). The cached-feature fast path therefore stores them too and
  hands the tower's whole output back to the model (``mm_encoder_outputs``); replacing the input embeddings
  alone would drop them.
* **Coordinates**: a relative 0-1000 grid whatever the image size (the Qwen3-VL README: "changed from the
  absolute coordinates used in Qwen2.5-VL to relative coordinates ranging from 0 to 1000"; Alibaba Cloud
  Model Studio documents 0-999): the package's ``norm1000`` (whole numbers 0..999), as for Qwen2-VL.
* **Chat template**: Qwen3-VL-*-Instruct has no default system message (Qwen2-VL adds "You are a helpful
  assistant."). **Processor**: ``Qwen3VLProcessor`` (``Qwen2VLImageProcessor`` with patch 16 and mean/std
  0.5, ``Qwen3VLVideoProcessor``, ``Qwen2Tokenizer``), published pixel budget 65,536 .. 16,777,216.

The MoE models (Qwen3-VL-30B-A3B, 235B-A22B; model_type ``qwen3_vl_moe``) are another architecture and not
part of this family: their names and model type are not recognised.
"""

from __future__ import annotations

from pathlib import Path

from .adapters import ChatTemplateAdapter, LLM_LINEAR
from .plugin import FamilyPlugin
from .qwen3_common import (QWEN3_PIXELS, QWEN3_SPECIAL_TOKENS, QWEN3_VISION_24, QWEN3_VISION_27, build_qwen3_checkpoint,
                           chat_template, image_tokens, read_rope, rope_parameters, vision_config, vision_counts,
                           vision_spec)
from .tinybuild import build_tiny_tokenizer

QWEN3_VL = ChatTemplateAdapter(
    name="qwen3_vl",
    coordinate_space="norm1000",
    vision_module_prefixes=("visual.",),
    # The patch merger and the DeepStack mergers map ViT features into the language model.
    projector_module_prefixes=("visual.merger.", "visual.deepstack_merger_list."),
    lora_target_modules=LLM_LINEAR,
    # ViT attention and MLP, and the MLPs of the merger and DeepStack mergers (linear_fc1/2 in all three);
    # "attn.proj" leaves out patch_embed.proj, a Conv3d.
    vision_lora_target_modules=("attn.qkv", "attn.proj", "linear_fc1", "linear_fc2"),
    answer_suffix="<|im_end|>",
    uses_pixel_budget=True,
    resize_factor=32,  # patch 16 x merge 2
)

CHAT_TEMPLATE = chat_template("{{- '<|im_start|>assistant\\n' }}")

TINY_QWEN3_VL_RECIPE = {
    "family": "qwen3_vl",
    "seed": 0,
    "bpe_vocab_size": 900,
    "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 32, "max_position_embeddings": 4096,
             # Interleaved M-RoPE sections (t, h, w) sum to head_dim / 2 = 16 (published [24, 20, 20] of 64).
             "mrope_section": [6, 5, 5], "rope_theta": 5_000_000.0},
    # DeepStack level k is added after language-model layer k, so there must be fewer levels than layers (a
    # level added after the last layer reaches no answer token). Published: 3 levels from ViT blocks
    # [5, 11, 17] of 24 or [8, 16, 24] of 27, into layers 0-2 of 28-64.
    "vision": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "patch_size": 16,
               "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 256,
               "deepstack_visual_indexes": [0]},
    # Pixel budget (smart_resize factor 32): a 224x224 screenshot stays 224x224 (7x7 = 49 image tokens).
    "min_pixels": 64 * 64,
    "max_pixels": 224 * 224,
}


def build_tiny(out_dir: Path, recipe: dict) -> None:
    """The tiny Qwen3-VL: ``Qwen2Tokenizer`` over the workbook BPE, the recipe's dimensions, random weights."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = build_tiny_tokenizer(QWEN3_SPECIAL_TOKENS, recipe["bpe_vocab_size"])
    text = recipe["text"]
    text_config = {k: text[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                        "num_attention_heads", "num_key_value_heads", "head_dim",
                                        "max_position_embeddings")}
    text_config.update(rope_parameters=rope_parameters(text),
                       bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
                       eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
    build_qwen3_checkpoint(out_dir, recipe, config_class=Qwen3VLConfig, model_class=Qwen3VLForConditionalGeneration,
                           tokenizer=tokenizer, template=CHAT_TEMPLATE, text_config=text_config)


# -- published configurations ------------------------------------------------------------------------------
# Shared by every published dense Qwen3-VL (config.json of Qwen3-VL-2B/4B/8B-Instruct and copies).
_TEXT = {"head_dim": 128, "vocab_size": 151936, "attention_bias": False, "hidden_act": "silu",
         "max_position_embeddings": 262144, "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
         "rms_norm_eps": 1e-6, "qk_norm": True, "norm": "rms", "mlp": "gated"}
TOKEN_IDS = {"image_token_id": 151655, "video_token_id": 151656, "vision_start_token_id": 151652,
             "vision_end_token_id": 151653, "bos_token_id": 151643, "eos_token_id": 151645}


def _published(text: dict, vision: dict, deepstack: list[int], sources: str, unconfirmed=()) -> dict:
    return {"family": "qwen3_vl", "model_type": "qwen3_vl", "architecture": "decoder",
            "checkpoint_dtype": "bfloat16", "text": {**_TEXT, **text},
            "vision": {**vision, "deepstack_visual_indexes": deepstack, "out_hidden_size": text["hidden_size"]},
            "image_tokens": {"rule": "qwen_smart_resize", "factor": 32, **QWEN3_PIXELS},
            "token_ids": dict(TOKEN_IDS), "sources": sources, "unconfirmed": list(unconfirmed)}


PUBLISHED = {
    "Qwen/Qwen3-VL-2B-Instruct": _published(
        {"hidden_size": 2048, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
         "intermediate_size": 6144, "tie_word_embeddings": True}, QWEN3_VISION_24, [5, 11, 17],
        "config.json of Qwen/Qwen3-VL-2B-Instruct at commit 89644892 quoted verbatim in a public TensorRT test "
        "(the Hub repository's model.safetensors, 4.26 GB = 2.13 B bf16 parameters, confirms the tied head); "
        "vision MLP 4096 and 16 heads also in InternLM xtuner qwen3_vl_config.py (Qwen3VLDense4BConfig) and "
        "sgl-jax's Qwen3VLVisionConfig; preprocessor_config.json of Qwen3-VL-2B-Instruct (pixel budget)"),
    "Qwen/Qwen3-VL-4B-Instruct": _published(
        {"hidden_size": 2560, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
         "intermediate_size": 9728, "tie_word_embeddings": True}, QWEN3_VISION_24, [5, 11, 17],
        "the full config.json copied in kohya-ss/musubi-tuner src/musubi_tuner/krea2/krea2_encoder.py "
        "(QWEN3_VL_4B_INSTRUCT_CONFIG); xtuner's Qwen3VLDense4BConfig agrees"),
    "Qwen/Qwen3-VL-8B-Instruct": _published(
        {"hidden_size": 4096, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
         "intermediate_size": 12288, "tie_word_embeddings": False}, QWEN3_VISION_27, [8, 16, 24],
        "config.json of Qwen3-VL-8B-Instruct fine-tunes on the Hub (Steinate/Cortex, "
        "Chhagan005/CSM-DocExtract-8N) and xtuner's Qwen3VLDense8BConfig (vision 27 / 1152 / 4304, deepstack "
        "[8, 16, 24], text 4096); preprocessor_config.json of Qwen3-VL-8B-Instruct (pixel budget)"),
    "Qwen/Qwen3-VL-32B-Instruct": _published(
        {"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 64, "num_key_value_heads": 8,
         "intermediate_size": 25600, "tie_word_embeddings": False}, QWEN3_VISION_27, [8, 16, 24],
        "config.json of a Qwen3-VL-32B-architecture checkpoint (huggingface.co/quanliang/F1, transformers 5); its "
        "text dimensions equal Qwen3-32B's; preprocessor_config.json of Qwen3-VL-32B-Instruct (pixel budget)",
        ["all dimensions: read from a third-party copy, not from the Qwen/Qwen3-VL-32B-Instruct repository"]),
}


# -- specs from a checkpoint's config.json, config objects and parameter counts ----------------------------
def read_hf_config(config: dict, processor: dict) -> dict:
    """A Qwen3-VL checkpoint's spec from its ``config.json`` (defaults filled in) and image processor."""
    text, vision = config["text_config"], config["vision_config"]
    heads = text["num_attention_heads"]
    text_spec = {**_TEXT, "hidden_size": text["hidden_size"], "num_hidden_layers": text["num_hidden_layers"],
                 "num_attention_heads": heads, "num_key_value_heads": text.get("num_key_value_heads") or heads,
                 "head_dim": text.get("head_dim") or text["hidden_size"] // heads,
                 "intermediate_size": text["intermediate_size"], "vocab_size": text["vocab_size"],
                 "tie_word_embeddings": bool(config.get("tie_word_embeddings",
                                                        text.get("tie_word_embeddings", False))),
                 "attention_bias": bool(text.get("attention_bias", False)),
                 "hidden_act": text.get("hidden_act", "silu"),
                 "max_position_embeddings": text.get("max_position_embeddings"),
                 "rms_norm_eps": text.get("rms_norm_eps", 1e-6), **read_rope(text)}
    tower = vision_spec({**vision, "out_hidden_size": vision.get("out_hidden_size") or text["hidden_size"]})
    return {"family": "qwen3_vl", "architecture": "decoder", "text": text_spec, "vision": tower,
            "image_tokens": image_tokens(processor, tower),
            "token_ids": {k: config.get(k, text.get(k)) for k in TOKEN_IDS}}


def build_config(spec: dict):
    """The ``Qwen3VLConfig`` a spec describes."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen3VLConfig

    text, ids = spec["text"], spec["token_ids"]
    text_config = {k: text[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                        "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size",
                                        "max_position_embeddings", "rms_norm_eps", "attention_bias", "hidden_act")}
    text_config.update(rope_parameters=rope_parameters(text), bos_token_id=ids.get("bos_token_id"),
                       eos_token_id=ids.get("eos_token_id"), tie_word_embeddings=text["tie_word_embeddings"])
    # An empty list, not the class default [8, 16, 24], for a tower without DeepStack.
    tower = {"deepstack_visual_indexes": [], **vision_config(spec["vision"])}
    return Qwen3VLConfig(text_config=text_config, vision_config=tower, tie_word_embeddings=text["tie_word_embeddings"],
                         **{k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                                "vision_end_token_id")})


def text_counts(text: dict) -> dict:
    """Parameters of the Qwen3 decoder (q/k RMSNorm over head_dim, no attention bias)."""
    h, hd, vocab = text["hidden_size"], text["head_dim"], text["vocab_size"]
    q, kv = text["num_attention_heads"] * hd, text["num_key_value_heads"] * hd
    linear = h * q + 2 * h * kv + q * h + 3 * h * text["intermediate_size"]
    bias = (q + 2 * kv) if text.get("attention_bias") else 0
    per_layer = linear + bias + 2 * hd + 2 * h                     # q_norm, k_norm; two RMSNorms
    embedding = vocab * h
    lm_head = 0 if text["tie_word_embeddings"] else vocab * h
    return {"text": text["num_hidden_layers"] * per_layer + h + embedding + lm_head,
            "text_linear": text["num_hidden_layers"] * linear, "embedding": embedding, "lm_head": lm_head}


def count_params(spec: dict) -> dict:
    """Exact parameter counts of a Qwen3-VL spec (checked against the real class on the meta device)."""
    counts = {**text_counts(spec["text"]), **vision_counts(spec["vision"])}
    counts["total"] = counts["text"] + counts["vision"]
    return counts


FAMILY = FamilyPlugin(
    name="qwen3_vl",
    display="Qwen3-VL",
    # Dense models only: "Qwen3-VL-30B-A3B" (MoE, another architecture) is not taken for this family.
    name_patterns=(r"qwen3-vl(?!-\d+b-a\d+b)", r"tiny-qwen3-vl"),
    model_types=("qwen3_vl",),
    adapter=QWEN3_VL,
    model_class="Qwen3VLForConditionalGeneration",
    processor_class="Qwen3VLProcessor",
    tokenizer_class="Qwen2Tokenizer",
    tiny_models={"uivlm/tiny-qwen3-vl": TINY_QWEN3_VL_RECIPE},
    tiny_builder=build_tiny,
    published=PUBLISHED,
    hub_billions={"Qwen/Qwen3-VL-2B-Instruct": 2.13, "Qwen/Qwen3-VL-4B-Instruct": 4.44,
                  "Qwen/Qwen3-VL-8B-Instruct": 8.77, "Qwen/Qwen3-VL-32B-Instruct": 33.36},
    read_hf_config=read_hf_config,
    build_config=build_config,
    sub_models=("qwen3_vl_text", "qwen3_vl_vision"),
    count_params=count_params,
    # liger-kernel 0.8 patches model type qwen3_vl (fused linear cross-entropy; Liger-Kernel PR #911).
    fused_cross_entropy=True,
    rope_index=True,
    multi_image=True,
    picker=(("offline tiny (0.8 M, random weights, CPU)", "uivlm/tiny-qwen3-vl"),
            ("2B Instruct", "Qwen/Qwen3-VL-2B-Instruct"), ("4B Instruct", "Qwen/Qwen3-VL-4B-Instruct"),
            ("8B Instruct", "Qwen/Qwen3-VL-8B-Instruct"), ("32B Instruct", "Qwen/Qwen3-VL-32B-Instruct")),
)
