"""Qwen2.5-VL: chat template, ``resized`` coordinates (pixels of the smart-resized screenshot),
a window-attention ViT (RMSNorm, gated SiLU MLP) with its patch merger, M-RoPE.
"""

from __future__ import annotations

from pathlib import Path

from .adapters import LLM_LINEAR, ResizedPixelsAdapter
from .plugin import FamilyPlugin
from .qwen2_vl import TINY_QWEN2_VL_RECIPE
from .qwen_common import (QWEN_PIXELS, QWEN_TOKEN_IDS, build_qwen, count_qwen_parameters, qwen_config_parts,
                          read_qwen_config)

QWEN2_5_VL = ResizedPixelsAdapter(
    name="qwen2_5_vl",
    coordinate_space="resized",
    vision_module_prefixes=("visual.",),  # window-attention ViT + its merger
    projector_module_prefixes=("visual.merger.",),
    lora_target_modules=LLM_LINEAR,
    vision_lora_target_modules=("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj",
                                "merger.mlp.0", "merger.mlp.2"),
    answer_suffix="<|im_end|>",
    uses_pixel_budget=True,
)

QWEN2_5_VL_VISION = {"type": "qwen2_5_vl", "depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_dim": 3420,
                      "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3,
                      "hidden_act": "silu", "norm": "rms", "mlp": "gated", "window_size": 112,
                      "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2}

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


def build_tiny(out_dir: Path, recipe: dict) -> None:
    """Write the tiny Qwen2.5-VL checkpoint of ``recipe`` to ``out_dir``."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

    vision = recipe["vision"]
    build_qwen(out_dir, recipe, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                {**vision, "out_hidden_size": recipe["text"]["hidden_size"]},
                {"patch_size": vision["patch_size"], "merge_size": vision["spatial_merge_size"]})


PUBLISHED: dict[str, dict] = {
    "Qwen/Qwen2.5-VL-3B-Instruct": {
        "family": "qwen2_5_vl", "model_type": "qwen2_5_vl", "architecture": "decoder",
        "checkpoint_dtype": "bfloat16",
        "text": {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
                 "num_key_value_heads": 2, "head_dim": 128, "intermediate_size": 11008, "vocab_size": 151936,
                 "tie_word_embeddings": True, "attention_bias": True, "hidden_act": "silu",
                 "max_position_embeddings": 128000, "rope_theta": 1000000.0, "mrope_section": [16, 24, 24],
                 "rms_norm_eps": 1e-6, "norm": "rms", "mlp": "gated"},
        "vision": {**QWEN2_5_VL_VISION, "out_hidden_size": 2048},
        "image_tokens": {"rule": "qwen_smart_resize", "factor": 28, **QWEN_PIXELS},
        "token_ids": dict(QWEN_TOKEN_IDS),
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
        "vision": {**QWEN2_5_VL_VISION, "out_hidden_size": 3584},
        "image_tokens": {"rule": "qwen_smart_resize", "factor": 28, **QWEN_PIXELS},
        "token_ids": dict(QWEN_TOKEN_IDS),
        "sources": "printed module tree of Qwen2_5_VLForConditionalGeneration (acproject/duorou "
                   "docs/qwen2.5vl_graph.md): vision 1280/3420 gated, merger -> 3584, Embedding(152064, 3584), "
                   "k_proj 3584->512, 28 layers, MLP 18944, untied lm_head",
        "unconfirmed": ["max_position_embeddings"],
    },
}


def read_hf_config(config: dict, processor: dict) -> dict:
    """A Qwen2.5-VL checkpoint's spec (ViT: RMSNorm, gated MLP of ``intermediate_size``)."""
    def vision_spec(vision, text, shared):
        return {**QWEN2_5_VL_VISION, **shared,
                "out_hidden_size": vision.get("out_hidden_size") or text["hidden_size"],
                "embed_dim": vision["hidden_size"], "mlp_dim": vision["intermediate_size"]}

    return read_qwen_config(config, processor, vision_spec)


def build_config(spec: dict):
    """The ``Qwen2_5_VLConfig`` of a spec."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen2_5_VLConfig

    text_config, tokens = qwen_config_parts(spec)
    vision = spec["vision"]
    vision_config = {"depth": vision["depth"], "hidden_size": vision["embed_dim"],
                     "intermediate_size": vision["mlp_dim"], "num_heads": vision["num_heads"],
                     "out_hidden_size": vision["out_hidden_size"], "patch_size": vision["patch_size"],
                     "spatial_merge_size": vision["spatial_merge_size"],
                     "temporal_patch_size": vision["temporal_patch_size"], "in_channels": vision["in_channels"],
                     "window_size": vision["window_size"],
                     "fullatt_block_indexes": list(vision["fullatt_block_indexes"]),
                     "tokens_per_second": vision["tokens_per_second"], "hidden_act": vision["hidden_act"]}
    return Qwen2_5_VLConfig(text_config=text_config, vision_config=vision_config,
                            tie_word_embeddings=spec["text"]["tie_word_embeddings"], **tokens)


FAMILY = FamilyPlugin(
    name="qwen2_5_vl",
    display="Qwen2.5-VL",
    name_patterns=(r"qwen2\.5-vl", r"qwen2_5-vl"),
    model_types=("qwen2_5_vl",),
    adapter=QWEN2_5_VL,
    model_class="Qwen2_5_VLForConditionalGeneration",
    processor_class="Qwen2_5_VLProcessor",
    tokenizer_class="Qwen2Tokenizer",
    tiny_models={"uivlm/tiny-qwen2.5-vl": TINY_QWEN2_5_VL_RECIPE},
    tiny_builder=build_tiny,
    published=PUBLISHED,
    hub_billions={"Qwen/Qwen2.5-VL-3B-Instruct": 3.75, "Qwen/Qwen2.5-VL-7B-Instruct": 8.29},
    read_hf_config=read_hf_config,
    build_config=build_config,
    count_params=count_qwen_parameters,
    fused_cross_entropy=True,
    rope_index=True,
    multi_image=True,
    picker=(("offline tiny (1.2 M, random weights, CPU)", "uivlm/tiny-qwen2.5-vl"),
            ("3B Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"), ("7B Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")),
)
