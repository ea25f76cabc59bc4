"""PaliGemma: ``<image>`` + prefix, the answer as the processor's suffix; a SigLIP tower (no pooling
head) and one linear projection into Gemma; ``<locNNNN>`` location tokens, y before x.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .adapters import CLIP_LINEAR, LLM_LINEAR, PrefixSuffixAdapter
from .common import (SIGLIP_SO400M, config_image_token_id, decoder_text_spec, llama_like, processor_side, vit_config,
                     vit_spec)
from .plugin import FamilyPlugin
from .tinybuild import train_metaspace_bpe

PALIGEMMA = PrefixSuffixAdapter(
    name="paligemma",
    coordinate_space="paligemma_loc",
    vision_module_prefixes=("vision_tower.", "multi_modal_projector."),
    projector_module_prefixes=("multi_modal_projector.",),
    lora_target_modules=LLM_LINEAR,
    vision_lora_target_modules=CLIP_LINEAR + ("linear",),  # SigLIP + the linear projector
    answer_suffix="<eos>",  # added by the processor after the suffix
)

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


def build_tiny(out_dir: Path, recipe: dict) -> None:
    """Write the tiny PaliGemma checkpoint of ``recipe`` to ``out_dir``."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import (AddedToken, GemmaTokenizer, PaliGemmaConfig, PaliGemmaForConditionalGeneration,
                              PaliGemmaProcessor, SiglipImageProcessor)

    vocab, merges = train_metaspace_bpe(["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"],
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


PUBLISHED: dict[str, dict] = {
    "google/paligemma-3b-pt-224": {
        "family": "paligemma", "model_type": "paligemma", "architecture": "decoder",
        "checkpoint_dtype": "float32",
        "text": {"hidden_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 8,
                 "num_key_value_heads": 1, "head_dim": 256, "intermediate_size": 16384, "vocab_size": 257216,
                 "tie_word_embeddings": True, "attention_bias": False, "hidden_act": "gelu_pytorch_tanh",
                 "max_position_embeddings": 8192, "rms_norm_eps": 1e-6, "norm": "rms", "mlp": "gated"},
        "vision": {**SIGLIP_SO400M, "image_size": 224, "projection_dim": 2048},
        "connector": {"type": "linear", "projection_dim": 2048},
        "image_tokens": {"rule": "fixed", "tokens": 256, "patches": 256, "image_size": 224},
        "token_ids": {"image_token_id": 257152},
        "sources": "PaliGemma config quoted in several repositories (Gemma-2B text 2048/16384/18 layers/8 "
                   "heads/1 kv head/vocab 257216; SigLIP 1152/4304/27 layers; projection 2048; 256 image "
                   "tokens at 224 px)",
        "unconfirmed": ["checkpoint_dtype", "max_position_embeddings"],
    },
}

# Parameter counts measured with model_configs.count_parameters_meta (transformers 5.24) on the meta
# device; tests/test_memory.py rebuilds and checks them.
PINNED_COUNTS = {
    "google/paligemma-3b-pt-224": {
        "total": 2923466480, "vision": 414803696, "text": 2508662784, "text_linear": 1981808640,
        "vision_linear": 413429760, "embedding": 526778368, "lm_head": 0},
}


def read_hf_config(config: dict, processor: dict) -> dict:
    """PaliGemma: Gemma text, SigLIP tower without its pooling head, one linear projection."""
    projection = config.get("projection_dim") or config["vision_config"]["projection_dim"]
    vision = {**vit_spec(config["vision_config"], SIGLIP_SO400M), "projection_dim": projection}
    side = processor_side(processor) or vision["image_size"]
    tokens = (side // vision["patch_size"]) ** 2
    return {"family": "paligemma", "architecture": "decoder", "text": decoder_text_spec(config),
            "vision": vision, "connector": {"type": "linear", "projection_dim": projection},
            "image_tokens": {"rule": "fixed", "tokens": tokens, "patches": tokens, "image_size": side},
            "token_ids": {"image_token_id": config_image_token_id(config)}}


def build_config(spec: dict):
    """The ``PaliGemmaConfig`` of a spec."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import PaliGemmaConfig

    text, vision = spec["text"], spec["vision"]
    return PaliGemmaConfig(vision_config=vit_config(vision, "siglip_vision_model"),
                           text_config=llama_like(text, "gemma"),
                           image_token_index=spec["token_ids"]["image_token_id"],
                           projection_dim=spec["connector"]["projection_dim"],
                           hidden_size=text["hidden_size"], vocab_size=text["vocab_size"])


FAMILY = FamilyPlugin(
    name="paligemma",
    display="PaliGemma",
    name_patterns=(r"paligemma",),
    model_types=("paligemma",),
    adapter=PALIGEMMA,
    model_class="PaliGemmaForConditionalGeneration",
    processor_class="PaliGemmaProcessor",
    tokenizer_class="GemmaTokenizer",
    tiny_models={"uivlm/tiny-paligemma": TINY_PALIGEMMA_RECIPE},
    tiny_builder=build_tiny,
    published=PUBLISHED,
    hub_billions={"google/paligemma-3b-pt-224": 2.92},
    pinned_counts=PINNED_COUNTS,
    read_hf_config=read_hf_config,
    build_config=build_config,
    sub_models=("gemma", "siglip_vision_model"),
    fused_cross_entropy=True,
    picker=(("offline tiny (0.9 M, random weights, CPU)", "uivlm/tiny-paligemma"),
            ("3B pt 224", "google/paligemma-3b-pt-224")),
)
