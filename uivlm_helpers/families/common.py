"""Generic pieces the family modules share: vision towers used by several families, and the readers
and builders of Llama-style language models and CLIP / SigLIP towers (no family constants).
"""

from __future__ import annotations

# CLIP ViT-L/14-336 (openai/clip-vit-large-patch14-336), LLaVA-1.5's tower.
CLIP_L_336 = {"type": "clip", "depth": 24, "embed_dim": 1024, "num_heads": 16, "mlp_dim": 4096,
               "patch_size": 14, "image_size": 336, "in_channels": 3, "hidden_act": "quick_gelu",
               "norm": "layer", "mlp": "quick_gelu", "projection_dim": 768}
# SigLIP so400m/14 (PaliGemma at 224 px; Idefics2 uses the same tower at up to 980 px).
SIGLIP_SO400M = {"type": "siglip", "depth": 27, "embed_dim": 1152, "num_heads": 16, "mlp_dim": 4304,
                  "patch_size": 14, "in_channels": 3, "hidden_act": "gelu_pytorch_tanh", "norm": "layer",
                  "mlp": "gelu"}


def decoder_text_spec(config: dict) -> dict:
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


def vit_spec(vision: dict, tower: dict) -> dict:
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


def config_image_token_id(config: dict) -> int | None:
    """The image token's id in a config.json (``image_token_id``, or LLaVA-style ``image_token_index``)."""
    return config.get("image_token_id", config.get("image_token_index"))


def processor_side(processor: dict) -> int | None:
    """Side of the square image a fixed-size image processor returns: its centre crop, else its resize."""
    crop, size = processor.get("crop_size") or {}, processor.get("size") or {}
    if crop and processor.get("do_center_crop", True):
        return crop.get("height")
    return size.get("height") or size.get("shortest_edge")



def llama_like(text: dict, model_type: str) -> dict:
    """A Llama-style ``text_config`` (Llama, Mistral, Gemma) of a spec's ``text``."""
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


def vit_config(vision: dict, model_type: str) -> dict:
    """A CLIP / SigLIP ``vision_config`` of a spec's ``vision``."""
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


def lm_shapes(text: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of the projections in one decoder layer of a Llama-style language model.

    With ``attn_output_gate`` (Qwen3.5's gated attention) ``q_proj`` also gives the output gate: twice as wide.
    """
    h, hd = text["hidden_size"], text.get("head_dim") or text["hidden_size"] // text["num_attention_heads"]
    q, kv, i = text["num_attention_heads"] * hd, text["num_key_value_heads"] * hd, text["intermediate_size"]
    return {"q_proj": (h, 2 * q if text.get("attn_output_gate") else q), "k_proj": (h, kv), "v_proj": (h, kv),
            "o_proj": (q, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}


def linear_attention_shapes(text: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of the projections in one Gated-DeltaNet linear-attention layer (the ``linear_attention``
    layers of a hybrid model such as Qwen3.5) and its MLP: ``in_proj_qkv`` (queries, keys, values into the
    causal convolution), ``in_proj_z`` (output gate), ``in_proj_b`` / ``in_proj_a`` (one write strength and
    one decay per value head), ``out_proj``."""
    h, i = text["hidden_size"], text["intermediate_size"]
    keys = text["linear_num_key_heads"] * text["linear_key_head_dim"]
    heads = text["linear_num_value_heads"]
    values = heads * text["linear_value_head_dim"]
    return {"in_proj_qkv": (h, 2 * keys + values), "in_proj_z": (h, values), "in_proj_b": (h, heads),
            "in_proj_a": (h, heads), "out_proj": (values, h), "gate_proj": (h, i), "up_proj": (h, i),
            "down_proj": (i, h)}

