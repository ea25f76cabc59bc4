"""Qwen2-VL: chat template, norm1000 coordinates, the ``visual.`` ViT with its patch merger, M-RoPE.

The workbook's default family (its shipped tiny UI base is a Qwen2-VL).
"""

from __future__ import annotations

from pathlib import Path

from .adapters import ChatTemplateAdapter, LLM_LINEAR
from .plugin import FamilyPlugin
from .qwen_common import (QWEN2_VL_CHAT_TEMPLATE, QWEN_PIXELS, QWEN_TOKEN_IDS, build_qwen, count_qwen_parameters,
                          qwen_config_parts, read_qwen_config)

QWEN2_VL = ChatTemplateAdapter(
    name="qwen2_vl",
    coordinate_space="norm1000",
    # "visual." holds the ViT and its patch merger (the projector into the language model).
    vision_module_prefixes=("visual.",),
    projector_module_prefixes=("visual.merger.",),
    lora_target_modules=LLM_LINEAR,
    # ViT blocks (attention, MLP) and the merger's MLP; not patch_embed.proj, a Conv3d.
    vision_lora_target_modules=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "merger.mlp.0", "merger.mlp.2"),
    answer_suffix="<|im_end|>",
    uses_pixel_budget=True,
)

QWEN2_VL_VISION = {"type": "qwen2_vl", "depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_dim": 5120,
                    "mlp_ratio": 4, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                    "in_channels": 3, "hidden_act": "quick_gelu", "norm": "layer", "mlp": "quick_gelu"}

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


def build_tiny(out_dir: Path, recipe: dict) -> None:
    """Write the tiny Qwen2-VL checkpoint of ``recipe`` to ``out_dir``."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    vision = recipe["vision"]
    vision_config = {**{k: vision[k] for k in ("depth", "embed_dim", "num_heads", "mlp_ratio", "patch_size",
                                               "spatial_merge_size", "temporal_patch_size")},
                     "hidden_size": recipe["text"]["hidden_size"]}
    build_qwen(out_dir, recipe, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor,
                vision_config, {})


PUBLISHED: dict[str, dict] = {
    "Qwen/Qwen2-VL-2B-Instruct": {
        "family": "qwen2_vl", "model_type": "qwen2_vl", "architecture": "decoder",
        "checkpoint_dtype": "bfloat16",
        "text": {"hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
                 "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 8960, "vocab_size": 151936,
                 "tie_word_embeddings": True, "attention_bias": True, "hidden_act": "silu",
                 "max_position_embeddings": 32768, "rope_theta": 1000000.0, "mrope_section": [16, 24, 24],
                 "rms_norm_eps": 1e-6, "norm": "rms", "mlp": "gated"},
        "vision": {**QWEN2_VL_VISION, "out_hidden_size": 1536},
        "image_tokens": {"rule": "qwen_smart_resize", "factor": 28, **QWEN_PIXELS},
        "token_ids": dict(QWEN_TOKEN_IDS),
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
        "vision": {**QWEN2_VL_VISION, "out_hidden_size": 3584},
        "image_tokens": {"rule": "qwen_smart_resize", "factor": 28, **QWEN_PIXELS},
        "token_ids": dict(QWEN_TOKEN_IDS),
        "sources": "printed module tree of Qwen2VLForConditionalGeneration (zhenhua32/Qwen2-VL READ.md, "
                   "acproject/duorou docs): Embedding(152064, 3584), k_proj 3584->512, 28 layers, "
                   "MLP 18944, untied lm_head",
        "unconfirmed": ["max_position_embeddings"],
    },
}


def read_hf_config(config: dict, processor: dict) -> dict:
    """A Qwen2-VL checkpoint's spec (ViT: LayerNorm, QuickGELU MLP of ``mlp_ratio``)."""
    def vision_spec(vision, text, shared):
        embed = vision["embed_dim"]
        return {**QWEN2_VL_VISION, **shared, "out_hidden_size": vision.get("out_hidden_size") or vision["hidden_size"],
                "embed_dim": embed, "mlp_ratio": vision["mlp_ratio"], "mlp_dim": int(embed * vision["mlp_ratio"])}

    return read_qwen_config(config, processor, vision_spec)


def build_config(spec: dict):
    """The ``Qwen2VLConfig`` of a spec."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen2VLConfig

    text_config, tokens = qwen_config_parts(spec)
    vision = spec["vision"]
    vision_config = {k: vision[k] for k in ("depth", "embed_dim", "num_heads", "mlp_ratio", "patch_size",
                                            "spatial_merge_size", "temporal_patch_size", "in_channels")}
    vision_config["hidden_size"] = vision["out_hidden_size"]
    return Qwen2VLConfig(text_config=text_config, vision_config=vision_config,
                         tie_word_embeddings=spec["text"]["tie_word_embeddings"], **tokens)


FAMILY = FamilyPlugin(
    name="qwen2_vl",
    display="Qwen2-VL",
    name_patterns=(r"qwen2-vl", r"tiny-qwen2-vl"),
    model_types=("qwen2_vl",),
    adapter=QWEN2_VL,
    model_class="Qwen2VLForConditionalGeneration",
    processor_class="Qwen2VLProcessor",
    tokenizer_class="Qwen2Tokenizer",
    tiny_models={"uivlm/tiny-qwen2-vl": TINY_QWEN2_VL_RECIPE},
    tiny_builder=build_tiny,
    published=PUBLISHED,
    hub_billions={"Qwen/Qwen2-VL-2B-Instruct": 2.21, "Qwen/Qwen2-VL-7B-Instruct": 8.29},
    read_hf_config=read_hf_config,
    build_config=build_config,
    count_params=count_qwen_parameters,
    fused_cross_entropy=True,
    rope_index=True,
    multi_image=True,
    picker=(("offline tiny UI base (1.1 M, pretrained on task screens, CPU)", "uivlm/tiny-qwen2-vl-ui"),
            ("offline tiny (1.1 M, random weights, CPU)", "uivlm/tiny-qwen2-vl"),
            ("2B Instruct", "Qwen/Qwen2-VL-2B-Instruct"), ("7B Instruct", "Qwen/Qwen2-VL-7B-Instruct")),
)
