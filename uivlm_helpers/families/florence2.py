"""Florence-2: the task prompt and the image go into a BART encoder, the answer is the decoder's
sequence; a DaViT tower; ``<loc_N>`` location tokens (x before y).
"""

from __future__ import annotations

from pathlib import Path

import json
import math

import torch

from .adapters import EncoderDecoderAdapter
from .common import config_image_token_id, processor_side
from .plugin import FamilyPlugin
from .tinybuild import build_tiny_tokenizer

FLORENCE2 = EncoderDecoderAdapter(
    name="florence2",
    coordinate_space="florence_loc",
    # DaViT + the image projection / position embeddings into the BART encoder.
    vision_module_prefixes=("vision_tower.", "multi_modal_projector."),
    projector_module_prefixes=("multi_modal_projector.",),
    # DaViT's window and channel attention and feed-forward layers (its convolutions stay), and the
    # image projection into BART.
    vision_lora_target_modules=("qkv", "window_attn.proj", "channel_attn.proj", "fc1", "fc2", "image_projection"),
    # BART's attention (encoder self, decoder self and cross) and feed-forward layers.
    lora_target_modules=("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
    answer_suffix="</s>",
    is_encoder_decoder=True,
    peft_task_type="SEQ_2_SEQ_LM",
)

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


def build_tiny(out_dir: Path, recipe: dict) -> None:
    """Write the tiny Florence-2 checkpoint of ``recipe`` to ``out_dir``."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
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


PUBLISHED: dict[str, dict] = {
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
                   "mlp_ratio": 4.0, "image_size": 768, "norm": "layer", "mlp": "gelu",
                   # Stochastic depth while training (transformers' Florence2VisionConfig default).
                   "drop_path_rate": 0.1},
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
}

# Parameter counts measured with model_configs.count_parameters_meta (transformers 5.24) on the meta
# device; tests/test_memory.py rebuilds and checks them.
PINNED_COUNTS = {
    "microsoft/Florence-2-large": {
        "total": 770173952, "vision": 362833920, "text": 407340032, "text_linear": 352321536,
        "vision_linear": 337117184, "embedding": 52519936, "lm_head": 0},
}


def read_hf_config(config: dict, processor: dict) -> dict:
    """Florence-2: DaViT tower (its image size is the processor's) into a BART encoder-decoder."""
    text, vision = config["text_config"], config["vision_config"]
    side = processor_side(processor) or PUBLISHED["microsoft/Florence-2-large"]["vision"]["image_size"]
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
                   "image_size": side, "norm": "layer", "mlp": "gelu",
                   "drop_path_rate": vision.get("drop_path_rate", 0.1)}
    return {"family": "florence2", "architecture": "encoder_decoder", "text": text_spec, "vision": vision_spec,
            "image_tokens": {"rule": "fixed", "tokens": tokens, "patches": tokens, "image_size": side},
            "token_ids": {"image_token_id": config_image_token_id(config)}}


def build_config(spec: dict):
    """The ``Florence2Config`` of a spec."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Florence2Config

    text, vision = spec["text"], spec["vision"]
    vision_config = {"embed_dim": list(vision["embed_dim"]), "depths": list(vision["depths"]),
                     "num_heads": list(vision["num_heads"]), "num_groups": list(vision["num_groups"]),
                     "patch_size": list(vision["patch_size"]), "patch_stride": list(vision["patch_stride"]),
                     "patch_padding": list(vision["patch_padding"]),
                     "patch_prenorm": list(vision["patch_prenorm"]), "window_size": vision["window_size"],
                     "projection_dim": vision["projection_dim"], "mlp_ratio": vision["mlp_ratio"],
                     "drop_path_rate": vision.get("drop_path_rate", 0.1)}
    text_config = {"model_type": "bart", "vocab_size": text["vocab_size"], "d_model": text["hidden_size"],
                   "encoder_layers": text["encoder_layers"], "decoder_layers": text["decoder_layers"],
                   "encoder_attention_heads": text["num_attention_heads"],
                   "decoder_attention_heads": text["num_attention_heads"],
                   "encoder_ffn_dim": text["intermediate_size"], "decoder_ffn_dim": text["intermediate_size"],
                   "max_position_embeddings": text["max_position_embeddings"]}
    return Florence2Config(vision_config=vision_config, text_config=text_config,
                           image_token_id=spec["token_ids"]["image_token_id"],
                           tie_word_embeddings=text["tie_word_embeddings"])


FAMILY = FamilyPlugin(
    name="florence2",
    display="Florence-2",
    name_patterns=(r"florence-2", r"florence2"),
    model_types=("florence2",),
    adapter=FLORENCE2,
    model_class="Florence2ForConditionalGeneration",
    processor_class="Florence2Processor",
    # transformers 5 makes BartTokenizer an alias of RobertaTokenizer (the same byte-level BPE).
    tokenizer_class="RobertaTokenizer",
    tiny_models={"uivlm/tiny-florence2": TINY_FLORENCE2_RECIPE},
    tiny_builder=build_tiny,
    published=PUBLISHED,
    hub_billions={"microsoft/Florence-2-large": 0.77},
    pinned_counts=PINNED_COUNTS,
    read_hf_config=read_hf_config,
    build_config=build_config,
    sub_models=("bart", "florence_vision"),
    picker=(("offline tiny (1.8 M, random weights, CPU)", "uivlm/tiny-florence2"),
            ("large (0.77 B)", "microsoft/Florence-2-large")),
)
