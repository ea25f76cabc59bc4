"""Qwen3.5 (``Qwen3_5ForConditionalGeneration``, model_type ``qwen3_5``): natively multimodal, dense sizes.

* **Language model**: hybrid. ``layer_types`` repeats three Gated-DeltaNet ``linear_attention`` layers and one
  gated ``full_attention`` layer (``full_attention_interval`` 4). Full-attention layers have an output gate
  (``q_proj`` is twice as wide: query + gate), q/k RMSNorm and partial interleaved M-RoPE (a quarter of each
  256-wide head rotates); linear-attention layers project with ``in_proj_qkv`` / ``in_proj_z`` /
  ``in_proj_b`` / ``in_proj_a``, run a short causal convolution and the gated delta rule, and project back
  with ``out_proj``. LoRA adapts the linear layers of both kinds and the MLP. Without
  ``flash-linear-attention`` / ``causal-conv1d`` transformers runs its pure-torch delta rule (and says so once
  per function); only full-attention layers keep a KV cache.
* **Vision tower**: Qwen3-VL's ViT (patch 16, merge 2: ``smart_resize`` factor 32) without DeepStack, so the
  cached-feature fast path's input embeddings are the whole image input.
* **Chat template**: the generation prompt opens a thinking block (``<think>\\n``) unless
  ``enable_thinking=False``, which writes an empty one (``<think>\\n\\n</think>\\n\\n``). A UI agent answers
  with the action directly, so prompts - for training and for inference - are rendered with
  ``enable_thinking=False`` and the answer follows the empty block.
* **Coordinates**: ``norm1000``, a relative 0-1000 grid as Qwen3-VL's. A Qwen team member states that
  Qwen3.5-generation grounding is "relative coordinates normalized to [0, 1000]"
  (github.com/QwenLM/Qwen3.8-Flash-Next/issues/4); the model card itself does not say, and it has not been
  checked against real weights.
* **Processor**: ``Qwen3VLProcessor`` (as Qwen3-VL) with ``Qwen3_5Tokenizer`` (byte-level BPE with an NFC
  normaliser); ``<think>`` / ``</think>`` are ordinary added tokens.

The MoE models (Qwen3.5-35B-A3B, 122B-A10B, 397B-A17B; model_type ``qwen3_5_moe``) are another architecture and
not part of this family: their names and model type are not recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .adapters import ChatTemplateAdapter
from .plugin import FamilyPlugin
from .qwen3_common import (QWEN3_PIXELS, QWEN3_SPECIAL_TOKENS, QWEN3_VISION, QWEN3_VISION_24, QWEN3_VISION_27,
                           build_qwen3_checkpoint, chat_template, image_tokens, read_rope, rope_parameters,
                           vision_config, vision_counts, vision_spec)
from .tinybuild import build_tiny_tokenizer

FULL_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
LINEAR_ATTENTION = ("in_proj_qkv", "in_proj_z", "in_proj_b", "in_proj_a", "out_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class NoThinkingAdapter(ChatTemplateAdapter):
    """Qwen3.5: prompts end with the template's empty thinking block, so the answer is the action itself."""

    def prompt_text(self, processor, user_text, system_prompt=None, image_count=1):
        return processor.apply_chat_template(self.chat_messages(user_text, system_prompt, image_count),
                                             add_generation_prompt=True, tokenize=False, enable_thinking=False)


QWEN3_5 = NoThinkingAdapter(
    name="qwen3_5",
    coordinate_space="norm1000",
    vision_module_prefixes=("visual.",),
    projector_module_prefixes=("visual.merger.",),
    # Every linear layer of the language model: gated full attention, Gated DeltaNet and the MLP.
    lora_target_modules=FULL_ATTENTION + LINEAR_ATTENTION + MLP,
    # ViT attention and MLP, the merger's MLP; "attn.proj" leaves out patch_embed.proj, a Conv3d.
    vision_lora_target_modules=("attn.qkv", "attn.proj", "linear_fc1", "linear_fc2"),
    answer_suffix="<|im_end|>",
    uses_pixel_budget=True,
    resize_factor=32,  # patch 16 x merge 2
)

# The published template's thinking switch on the generation prompt.
CHAT_TEMPLATE = chat_template(
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- else %}{{- '<think>\\n' }}{%- endif %}")
THINK_TOKENS = ("<think>", "</think>")

TINY_QWEN3_5_RECIPE = {
    "family": "qwen3_5",
    "seed": 0,
    "bpe_vocab_size": 900,
    # Four layers = one published period: three linear-attention layers, then one full-attention layer.
    "text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
             "layer_types": ["linear_attention", "linear_attention", "linear_attention", "full_attention"],
             "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 64,
             "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 32,
             "linear_value_head_dim": 32, "linear_conv_kernel_dim": 4, "max_position_embeddings": 4096,
             # Rotary width 64 x 0.25 = 16: 8 frequencies = 3 + 3 + 2 (published [11, 11, 10] of 32).
             "partial_rotary_factor": 0.25, "mrope_section": [3, 3, 2], "rope_theta": 10_000_000.0},
    "vision": {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "patch_size": 16,
               "spatial_merge_size": 2, "temporal_patch_size": 2, "num_position_embeddings": 256},
    # Pixel budget (smart_resize factor 32): a 224x224 screenshot stays 224x224 (7x7 = 49 image tokens).
    "min_pixels": 64 * 64,
    "max_pixels": 224 * 224,
}

_TEXT_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "layer_types", "num_attention_heads",
              "num_key_value_heads", "head_dim", "linear_num_key_heads", "linear_num_value_heads",
              "linear_key_head_dim", "linear_value_head_dim", "linear_conv_kernel_dim", "max_position_embeddings")


def build_tiny(out_dir: Path, recipe: dict) -> None:
    """The tiny Qwen3.5: ``Qwen3_5Tokenizer`` over the workbook BPE (+ the think tokens), random weights."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import AddedToken, Qwen3_5Config, Qwen3_5ForConditionalGeneration, Qwen3_5Tokenizer

    tokenizer = build_tiny_tokenizer(QWEN3_SPECIAL_TOKENS, recipe["bpe_vocab_size"], tokenizer_class=Qwen3_5Tokenizer)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    text = recipe["text"]
    text_config = {k: text[k] for k in _TEXT_KEYS}
    # Qwen3.5 has no bos token; its text model ends a document with <|endoftext|>.
    text_config.update(rope_parameters=rope_parameters(text), tie_word_embeddings=True,
                       eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"))
    build_qwen3_checkpoint(out_dir, recipe, config_class=Qwen3_5Config,
                           model_class=Qwen3_5ForConditionalGeneration, tokenizer=tokenizer,
                           template=CHAT_TEMPLATE, text_config=text_config)


# -- published configurations ------------------------------------------------------------------------------
_TEXT = {"head_dim": 256, "vocab_size": 248320, "attention_bias": False, "hidden_act": "silu",
         "max_position_embeddings": 262144, "rope_theta": 10_000_000.0, "partial_rotary_factor": 0.25,
         "mrope_section": [11, 11, 10], "rms_norm_eps": 1e-6, "linear_num_key_heads": 16,
         "linear_key_head_dim": 128, "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4,
         # Full-attention layers gate their output (q_proj gives query and gate; config.json: attn_output_gate).
         "attn_output_gate": True, "qk_norm": True, "norm": "rms", "mlp": "gated"}
# Qwen3.5-0.8B's smaller tower (the other sizes use Qwen3-VL's 24- and 27-block towers).
_VISION_12 = {**QWEN3_VISION, "depth": 12, "embed_dim": 768, "mlp_dim": 3072, "num_heads": 12}
TOKEN_IDS = {"image_token_id": 248056, "video_token_id": 248057, "vision_start_token_id": 248053,
             "vision_end_token_id": 248054, "bos_token_id": None, "eos_token_id": 248046}
_SOURCES = ("NVIDIA Megatron-LM's Qwen3.5-VL configuration helpers (_VARIANT_CONFIGS / _VISION_VARIANT_CONFIGS: "
            "text and vision dimensions per size, vocabulary 248320, rotary base 1e7, partial rotary 0.25, "
            "mrope [11, 11, 10], image / video / vision start / end token ids); THUDM/slime "
            "scripts/models/qwen3.5-*.sh (text dimensions, tied embeddings where no "
            "--untie-embeddings-and-output-weights)")


def _published(text: dict, vision: dict, sources: str, unconfirmed=()) -> dict:
    layers = text["num_hidden_layers"]
    layer_types = ["full_attention" if (i + 1) % 4 == 0 else "linear_attention" for i in range(layers)]
    return {"family": "qwen3_5", "model_type": "qwen3_5", "architecture": "decoder",
            "checkpoint_dtype": "bfloat16", "text": {**_TEXT, **text, "layer_types": layer_types},
            "vision": {**vision, "out_hidden_size": text["hidden_size"]},
            "image_tokens": {"rule": "qwen_smart_resize", "factor": 32, **QWEN3_PIXELS},
            "token_ids": dict(TOKEN_IDS), "sources": f"{_SOURCES}; {sources}", "unconfirmed": list(unconfirmed)}


PUBLISHED = {
    "Qwen/Qwen3.5-0.8B": _published(
        {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 8, "num_key_value_heads": 2,
         "linear_num_value_heads": 16, "intermediate_size": 3584, "tie_word_embeddings": True}, _VISION_12,
        "config.json of a Qwen3.5-0.8B-architecture OCR checkpoint (1024 / 3584 / 8 / 2 heads, GDN 16 / 16, "
        "vision 12 / 768 / 3072 / 12 heads, tied)"),
    "Qwen/Qwen3.5-2B": _published(
        {"hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 8, "num_key_value_heads": 2,
         "linear_num_value_heads": 16, "intermediate_size": 6144, "tie_word_embeddings": True}, QWEN3_VISION_24,
        "config.json of a merge of Qwen/Qwen3.5-2B-Base (text 2048 / 6144 / 24 layers / 8 / 2 heads, GDN 16 / 16, "
        "vision 24 / 1024); preprocessor_config.json of Qwen/Qwen3.5-2B-Base (pixel budget)",
        ["tie_word_embeddings: assumed true like 0.8B and 4B, not seen in a full copy of the 2B's config.json"]),
    "Qwen/Qwen3.5-4B": _published(
        {"hidden_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 16, "num_key_value_heads": 4,
         "linear_num_value_heads": 32, "intermediate_size": 9216, "tie_word_embeddings": True}, QWEN3_VISION_24,
        "slime qwen3.5-4B.sh (tied)"),
    "Qwen/Qwen3.5-9B": _published(
        {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 16, "num_key_value_heads": 4,
         "linear_num_value_heads": 32, "intermediate_size": 12288, "tie_word_embeddings": False}, QWEN3_VISION_27,
        "full config.json copies of Qwen3.5-9B fine-tunes (huggingface.co/KnowledgeXLab/ComActor-9B, "
        "huggingface.co/khtsly/Mini-Coder with model_name Qwen/Qwen3.5-9B); preprocessor_config.json of "
        "Qwen/Qwen3.5-9B (pixel budget)"),
    "Qwen/Qwen3.5-27B": _published(
        {"hidden_size": 5120, "num_hidden_layers": 64, "num_attention_heads": 24, "num_key_value_heads": 4,
         "linear_num_value_heads": 48, "intermediate_size": 17408, "tie_word_embeddings": False}, QWEN3_VISION_27,
        "full config.json of a Qwen3.5-27B fine-tune (huggingface.co/MooreThreads/MusaCoder-27B); "
        "preprocessor_config.json of Qwen/Qwen3.5-27B (pixel budget)"),
}


# -- specs from a checkpoint's config.json, config objects and parameter counts ----------------------------
def read_hf_config(config: dict, processor: dict) -> dict:
    """A Qwen3.5 checkpoint's spec from its ``config.json`` (defaults filled in) and image processor."""
    text, vision = config["text_config"], config["vision_config"]
    spec_text = {**_TEXT, **{k: text[k] for k in _TEXT_KEYS if k in text}, **read_rope(text),
                 "vocab_size": text["vocab_size"], "hidden_act": text.get("hidden_act", "silu"),
                 "rms_norm_eps": text.get("rms_norm_eps", 1e-6),
                 "attention_bias": bool(text.get("attention_bias", False)),
                 "tie_word_embeddings": bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings")))}
    spec_text["layer_types"] = list(spec_text["layer_types"])
    tower = vision_spec({**vision, "out_hidden_size": vision.get("out_hidden_size") or text["hidden_size"]})
    return {"family": "qwen3_5", "architecture": "decoder", "text": spec_text, "vision": tower,
            "image_tokens": image_tokens(processor, tower),
            "token_ids": {k: config.get(k, text.get(k)) for k in TOKEN_IDS}}


def build_config(spec: dict):
    """The ``Qwen3_5Config`` a spec describes."""
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen3_5Config

    text, ids = spec["text"], spec["token_ids"]
    text_config = {k: text[k] for k in _TEXT_KEYS}
    text_config.update(vocab_size=text["vocab_size"], rms_norm_eps=text["rms_norm_eps"],
                       hidden_act=text["hidden_act"], attention_bias=text["attention_bias"],
                       layer_types=list(text["layer_types"]), rope_parameters=rope_parameters(text),
                       eos_token_id=ids.get("eos_token_id"), tie_word_embeddings=text["tie_word_embeddings"])
    return Qwen3_5Config(text_config=text_config, vision_config=vision_config(spec["vision"]),
                         tie_word_embeddings=text["tie_word_embeddings"],
                         **{k: ids[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id",
                                                "vision_end_token_id")})


def text_counts(text: dict) -> dict:
    """Parameters of the hybrid decoder (exact; checked against the real class on the meta device)."""
    h, i, vocab = text["hidden_size"], text["intermediate_size"], text["vocab_size"]
    hd, q, kv = text["head_dim"], text["num_attention_heads"] * text["head_dim"], \
        text["num_key_value_heads"] * text["head_dim"]
    kh, kd = text["linear_num_key_heads"], text["linear_key_head_dim"]
    vh, vd = text["linear_num_value_heads"], text["linear_value_head_dim"]
    conv = 2 * kh * kd + vh * vd
    mlp = 3 * h * i
    full_linear = h * 2 * q + 2 * h * kv + q * h                   # q_proj carries query + output gate
    linear_linear = h * conv + h * vh * vd + 2 * h * vh + vh * vd * h  # in_proj_qkv, _z, _b, _a; out_proj
    full = full_linear + 2 * hd                                    # q_norm, k_norm
    linear = linear_linear + conv * text["linear_conv_kernel_dim"] + 2 * vh + vd  # conv1d, A_log, dt_bias, norm
    kinds = text["layer_types"]
    n_full = sum(kind == "full_attention" for kind in kinds)
    n_linear = len(kinds) - n_full
    embedding = vocab * h
    lm_head = 0 if text["tie_word_embeddings"] else vocab * h
    return {"text": n_full * full + n_linear * linear + len(kinds) * (mlp + 2 * h) + h + embedding + lm_head,
            "text_linear": n_full * full_linear + n_linear * linear_linear + len(kinds) * mlp,
            "embedding": embedding, "lm_head": lm_head}


def count_params(spec: dict) -> dict:
    """Exact parameter counts of a Qwen3.5 spec (the checkpoints' multi-token-prediction block, ``mtp.*``, is
    not instantiated by transformers and not counted)."""
    counts = {**text_counts(spec["text"]), **vision_counts(spec["vision"])}
    counts["total"] = counts["text"] + counts["vision"]
    return counts


FAMILY = FamilyPlugin(
    name="qwen3_5",
    display="Qwen3.5",
    # Dense models only: "Qwen3.5-35B-A3B" (MoE, another architecture) is not taken for this family.
    name_patterns=(r"qwen3\.5-(?!\d+b-a\d+b)", r"qwen3_5-", r"tiny-qwen3\.5"),
    model_types=("qwen3_5",),
    adapter=QWEN3_5,
    model_class="Qwen3_5ForConditionalGeneration",
    processor_class="Qwen3VLProcessor",
    tokenizer_class="Qwen3_5Tokenizer",
    tiny_models={"uivlm/tiny-qwen3.5": TINY_QWEN3_5_RECIPE},
    tiny_builder=build_tiny,
    published=PUBLISHED,
    hub_billions={"Qwen/Qwen3.5-0.8B": 0.85, "Qwen/Qwen3.5-2B": 2.21, "Qwen/Qwen3.5-4B": 4.54,
                  "Qwen/Qwen3.5-9B": 9.41, "Qwen/Qwen3.5-27B": 27.36},
    read_hf_config=read_hf_config,
    build_config=build_config,
    sub_models=("qwen3_5_text", "qwen3_5_vision"),
    count_params=count_params,
    # liger-kernel 0.8 patches model type qwen3_5 (Liger-Kernel PRs #1123, #1150).
    fused_cross_entropy=True,
    rope_index=True,
    multi_image=True,
    picker=(("offline tiny (1.0 M, random weights, CPU)", "uivlm/tiny-qwen3.5"), ("0.8B", "Qwen/Qwen3.5-0.8B"),
            ("2B", "Qwen/Qwen3.5-2B"), ("4B", "Qwen/Qwen3.5-4B"), ("9B", "Qwen/Qwen3.5-9B"),
            ("27B", "Qwen/Qwen3.5-27B")),
)
