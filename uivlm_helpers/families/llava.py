"""LLaVA-1.5: chat template ("USER: <image>\n... ASSISTANT:"), a CLIP ViT-L/14-336 tower and a
two-layer GELU projector, norm1000 coordinates of the screenshot padded to a centred square.

LLaVA-1.5's published processor resizes the shortest edge to 336 and centre-crops, which cuts the left
and right edges off a wide screenshot; the adapter switches it to the original "expand2square" (pad to a
centred square with the mean colour, then resize) and encodes coordinates relative to that square.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .adapters import CLIP_LINEAR, LLM_LINEAR, SquarePadAdapter
from .common import (CLIP_L_336, config_image_token_id, decoder_text_spec, llama_like, processor_side, vit_config,
                     vit_spec)
from .plugin import FamilyPlugin
from .tinybuild import build_llama_tokenizer

LLAVA = SquarePadAdapter(
    name="llava",
    coordinate_space="norm1000",
    vision_module_prefixes=("vision_tower.", "multi_modal_projector."),
    projector_module_prefixes=("multi_modal_projector.",),
    lora_target_modules=LLM_LINEAR,
    vision_lora_target_modules=CLIP_LINEAR + ("linear_1", "linear_2"),  # CLIP ViT + the MLP projector
    # "USER: <image>\n... ASSISTANT: click(1, 2)</s>"
    answer_prefix=" ",
    answer_suffix="</s>",
)

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


def build_tiny(out_dir: Path, recipe: dict) -> None:
    """Write the tiny LLaVA checkpoint of ``recipe`` to ``out_dir``."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
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


PUBLISHED: dict[str, dict] = {
    "llava-hf/llava-1.5-7b-hf": {
        "family": "llava", "model_type": "llava", "architecture": "decoder",
        "checkpoint_dtype": "float16",
        "text": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 32, "head_dim": 128, "intermediate_size": 11008, "vocab_size": 32064,
                 "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu",
                 "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "norm": "rms", "mlp": "gated"},
        "vision": dict(CLIP_L_336),
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
        "vision": dict(CLIP_L_336),
        "connector": {"type": "mlp2x_gelu", "vision_feature_layer": -2,
                      "vision_feature_select_strategy": "default"},
        "image_tokens": {"rule": "fixed", "tokens": 576, "patches": 577, "image_size": 336},
        "token_ids": {"image_token_id": 32000},
        "sources": "Llama-2-13B dimensions (5120 / 13824 / 40 layers / 40 heads, several configs); same "
                   "CLIP tower and projector as the 7B",
        "unconfirmed": ["vocab_size 32064 (the 7B's padded vocabulary; not read from the 13B's config.json)"],
    },
}

# Parameter counts measured with model_configs.count_parameters_meta (transformers 5.24) on the meta
# device; tests/test_memory.py rebuilds and checks them.
PINNED_COUNTS = {
    "llava-hf/llava-1.5-7b-hf": {
        "total": 7063427072, "vision": 324487168, "text": 6738939904, "text_linear": 6476005376,
        "vision_linear": 322961408, "embedding": 131334144, "lm_head": 131334144},
    "llava-hf/llava-1.5-13b-hf": {
        "total": 13351494656, "vision": 334974976, "text": 13016519680, "text_linear": 12687769600,
        "vision_linear": 333447168, "embedding": 164167680, "lm_head": 164167680},
}


def read_hf_config(config: dict, processor: dict) -> dict:
    """LLaVA-1.5: Llama text, CLIP tower, two-layer GELU projector; one fixed-size square image."""
    vision = vit_spec(config["vision_config"], CLIP_L_336)
    strategy = config.get("vision_feature_select_strategy", "default")
    side = processor_side(processor) or vision["image_size"]
    grid = (side // vision["patch_size"]) ** 2
    return {"family": "llava", "architecture": "decoder", "text": decoder_text_spec(config), "vision": vision,
            "connector": {"type": "mlp2x_gelu", "vision_feature_layer": config.get("vision_feature_layer", -2),
                          "vision_feature_select_strategy": strategy},
            # The tower sees the patches and the CLS token; "default" drops the CLS feature, "full" keeps it.
            "image_tokens": {"rule": "fixed", "tokens": grid + (strategy == "full"), "patches": grid + 1,
                             "image_size": side},
            "token_ids": {"image_token_id": config_image_token_id(config)}}


def build_config(spec: dict):
    """The ``LlavaConfig`` of a spec."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import LlavaConfig

    text, vision = spec["text"], spec["vision"]
    return LlavaConfig(vision_config=vit_config(vision, "clip_vision_model"),
                       text_config=llama_like(text, "llama"),
                       image_token_index=spec["token_ids"]["image_token_id"],
                       image_seq_length=spec["image_tokens"]["tokens"], projector_hidden_act="gelu",
                       vision_feature_layer=spec["connector"]["vision_feature_layer"],
                       vision_feature_select_strategy=spec["connector"]["vision_feature_select_strategy"],
                       tie_word_embeddings=text["tie_word_embeddings"])


FAMILY = FamilyPlugin(
    name="llava",
    display="LLaVA-1.5",
    name_patterns=(r"llava-1\.5", r"llava"),
    model_types=("llava",),
    adapter=LLAVA,
    model_class="LlavaForConditionalGeneration",
    processor_class="LlavaProcessor",
    tokenizer_class="LlamaTokenizer",
    tiny_models={"uivlm/tiny-llava": TINY_LLAVA_RECIPE},
    tiny_builder=build_tiny,
    published=PUBLISHED,
    hub_billions={"llava-hf/llava-1.5-7b-hf": 7.06, "llava-hf/llava-1.5-13b-hf": 13.35},
    pinned_counts=PINNED_COUNTS,
    read_hf_config=read_hf_config,
    build_config=build_config,
    sub_models=("llama", "clip_vision_model"),
    fused_cross_entropy=True,
    picker=(("offline tiny (0.9 M, random weights, CPU)", "uivlm/tiny-llava"),
            ("7B", "llava-hf/llava-1.5-7b-hf"), ("13B", "llava-hf/llava-1.5-13b-hf")),
)
