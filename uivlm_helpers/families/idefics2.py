"""Idefics2: chat template ("User:<image>...<end_of_utterance>\nAssistant:"), a SigLIP tower at
native aspect ratio and a perceiver resampler (a fixed number of tokens per image), norm1000 coordinates.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .adapters import CLIP_LINEAR, ChatTemplateAdapter, LLM_LINEAR
from .common import SIGLIP_SO400M, config_image_token_id, decoder_text_spec, llama_like, vit_config, vit_spec
from .plugin import FamilyPlugin
from .tinybuild import build_llama_tokenizer

IDEFICS2 = ChatTemplateAdapter(
    name="idefics2",
    coordinate_space="norm1000",
    # SigLIP vision model; the connector is the perceiver resampler + modality projection.
    vision_module_prefixes=("vision_model.", "connector."),
    projector_module_prefixes=("connector.",),
    lora_target_modules=LLM_LINEAR,
    # SigLIP; the resampler's attention (q/k/v/o_proj) and the modality projection's MLP.
    vision_lora_target_modules=CLIP_LINEAR + ("o_proj", "gate_proj", "up_proj", "down_proj"),
    # "User:<image>...<end_of_utterance>\nAssistant: click(1, 2)<end_of_utterance>"
    answer_prefix=" ",
    answer_suffix="<end_of_utterance>",
)

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


def build_tiny(out_dir: Path, recipe: dict) -> None:
    """Write the tiny Idefics2 checkpoint of ``recipe`` to ``out_dir``."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
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


PUBLISHED: dict[str, dict] = {
    "HuggingFaceM4/idefics2-8b": {
        "family": "idefics2", "model_type": "idefics2", "architecture": "decoder",
        "checkpoint_dtype": "bfloat16",
        "text": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 14336, "vocab_size": 32003,
                 "tie_word_embeddings": False, "attention_bias": False, "hidden_act": "silu",
                 "max_position_embeddings": 32768, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
                 "norm": "rms", "mlp": "gated"},
        "vision": {**SIGLIP_SO400M, "image_size": 980},
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
}

# Parameter counts measured with model_configs.count_parameters_meta (transformers 5.24) on the meta
# device; tests/test_memory.py rebuilds and checks them.
PINNED_COUNTS = {
    "HuggingFaceM4/idefics2-8b": {
        "total": 8402768112, "vision": 1161011440, "text": 7241756672, "text_linear": 6979321856,
        "vision_linear": 1153986560, "embedding": 131084288, "lm_head": 131084288},
}


def read_hf_config(config: dict, processor: dict) -> dict:
    """Idefics2: Mistral text, SigLIP tower at native aspect ratio, perceiver resampler (fixed tokens)."""
    vision = vit_spec(config["vision_config"], SIGLIP_SO400M)
    perceiver = config["perceiver_config"]
    size = processor.get("size") or {}
    default = PUBLISHED["HuggingFaceM4/idefics2-8b"]["image_tokens"]  # Idefics2ImageProcessor's defaults
    keys = ("resampler_n_latents", "resampler_depth", "resampler_n_heads", "resampler_head_dim",
            "num_key_value_heads")
    return {"family": "idefics2", "architecture": "decoder", "text": decoder_text_spec(config), "vision": vision,
            "connector": {"type": "perceiver", **{k: perceiver[k] for k in keys}},
            "image_tokens": {"rule": "idefics2", "tokens_per_image": perceiver["resampler_n_latents"],
                             "shortest_edge": size.get("shortest_edge", default["shortest_edge"]),
                             "longest_edge": size.get("longest_edge", default["longest_edge"]),
                             "patch_size": vision["patch_size"]},
            "token_ids": {"image_token_id": config_image_token_id(config)}}


def image_tokens(rule: dict, width: int, height: int) -> dict:
    """Image tokens and tower patches of one screenshot: the processor resizes so the longer edge is at
    most ``longest_edge`` and the shorter at least ``shortest_edge``; the perceiver makes a fixed number of
    tokens of any image."""
    scale = min(rule["longest_edge"] / max(width, height), 1.0)
    w, h = width * scale, height * scale
    if min(w, h) < rule["shortest_edge"]:
        up = rule["shortest_edge"] / min(w, h)
        w, h = min(w * up, rule["longest_edge"]), min(h * up, rule["longest_edge"])
    patches = math.ceil(h / rule["patch_size"]) * math.ceil(w / rule["patch_size"])
    return {"tokens": rule["tokens_per_image"], "patches": patches, "resized": (round(w), round(h))}


def build_config(spec: dict):
    """The ``Idefics2Config`` of a spec."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Idefics2Config

    text, vision = spec["text"], spec["vision"]
    connector = spec["connector"]
    vision_config = vit_config(vision, "idefics2_vision")
    perceiver = {"model_type": "idefics2_perceiver", "hidden_size": text["hidden_size"],
                 "resampler_n_latents": connector["resampler_n_latents"],
                 "resampler_depth": connector["resampler_depth"],
                 "resampler_n_heads": connector["resampler_n_heads"],
                 "resampler_head_dim": connector["resampler_head_dim"],
                 "num_key_value_heads": connector["num_key_value_heads"], "hidden_act": "silu"}
    return Idefics2Config(vision_config=vision_config, perceiver_config=perceiver,
                          text_config=llama_like(text, "mistral"),
                          image_token_id=spec["token_ids"]["image_token_id"],
                          tie_word_embeddings=text["tie_word_embeddings"])


FAMILY = FamilyPlugin(
    name="idefics2",
    display="Idefics2",
    name_patterns=(r"idefics2",),
    model_types=("idefics2",),
    adapter=IDEFICS2,
    model_class="Idefics2ForConditionalGeneration",
    processor_class="Idefics2Processor",
    tokenizer_class="LlamaTokenizer",
    tiny_models={"uivlm/tiny-idefics2": TINY_IDEFICS2_RECIPE},
    tiny_builder=build_tiny,
    published=PUBLISHED,
    hub_billions={"HuggingFaceM4/idefics2-8b": 8.4},
    pinned_counts=PINNED_COUNTS,
    read_hf_config=read_hf_config,
    build_config=build_config,
    sub_models=("mistral", "idefics2_vision"),
    image_tokens=image_tokens,
    multi_image=True,
    picker=(("offline tiny (1.2 M, random weights, CPU)", "uivlm/tiny-idefics2"),
            ("8B", "HuggingFaceM4/idefics2-8b")),
)
