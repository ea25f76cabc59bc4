"""What the Qwen3-generation families (Qwen3-VL, Qwen3.5) share: their special tokens and chat-template
body, the ViT (16-pixel patches, learned position embeddings, 2x2 patch merger; Qwen3-VL adds DeepStack
mergers), the processor (``Qwen3VLProcessor`` for both), the tiny checkpoint writer, the tower's spec,
config and exact parameter counts, and the published pixel budget."""

from __future__ import annotations

from pathlib import Path

import torch

QWEN3_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]


def chat_template(generation_prompt: str) -> str:
    """The image/video/text rendering of the published Qwen3-VL / Qwen3.5 chat templates (their tool-calling
    branches left out): no default system message, ``Picture N: `` only with ``add_vision_id``, then
    ``generation_prompt`` (a Jinja fragment) when ``add_generation_prompt`` is set."""
    return (
        "{%- if messages[0].role == 'system' %}{{- '<|im_start|>system\\n' }}"
        "{%- if messages[0].content is string %}{{- messages[0].content }}"
        "{%- else %}{%- for content in messages[0].content %}{%- if 'text' in content %}{{- content.text }}"
        "{%- endif %}{%- endfor %}{%- endif %}{{- '<|im_end|>\\n' }}{%- endif %}"
        "{%- set image_count = namespace(value=0) %}{%- set video_count = namespace(value=0) %}"
        "{%- for message in messages %}"
        "{%- if message.role == 'user' or message.role == 'assistant' %}"
        "{{- '<|im_start|>' + message.role + '\\n' }}"
        "{%- if message.content is string %}{{- message.content }}{%- else %}"
        "{%- for content in message.content %}"
        "{%- if content.type == 'image' or 'image' in content or 'image_url' in content %}"
        "{%- set image_count.value = image_count.value + 1 %}"
        "{%- if add_vision_id %}{{- 'Picture ' ~ image_count.value ~ ': ' }}{%- endif %}"
        "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
        "{%- elif content.type == 'video' or 'video' in content %}"
        "{%- set video_count.value = video_count.value + 1 %}"
        "{%- if add_vision_id %}{{- 'Video ' ~ video_count.value ~ ': ' }}{%- endif %}"
        "{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
        "{%- elif 'text' in content %}{{- content.text }}{%- endif %}"
        "{%- endfor %}{%- endif %}{{- '<|im_end|>\\n' }}"
        "{%- endif %}{%- endfor %}"
        "{%- if add_generation_prompt %}" + generation_prompt + "{%- endif %}"
    )


def build_qwen3_checkpoint(out_dir: Path, recipe: dict, *, config_class, model_class, tokenizer, template: str,
                           text_config: dict) -> None:
    """Write a tiny Qwen3-VL / Qwen3.5 checkpoint: config, seeded random weights, processor, chat template.

    ``tokenizer`` holds :data:`QWEN3_SPECIAL_TOKENS`; ``text_config`` has the family's language-model
    dimensions (vocabulary size and token ids are filled in here); the tower is ``recipe["vision"]``.
    """
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    tokenizer.chat_template = template
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in QWEN3_SPECIAL_TOKENS}
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    vision = recipe["vision"]
    config = config_class(
        text_config={**text_config, "vocab_size": len(tokenizer), "pad_token_id": ids["<|endoftext|>"]},
        vision_config={**vision, "out_hidden_size": text_config["hidden_size"]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,  # as the small published sizes
    )
    torch.manual_seed(recipe["seed"])
    model = model_class(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.save_pretrained(out_dir, safe_serialization=True)

    budget = {"shortest_edge": recipe["min_pixels"], "longest_edge": recipe["max_pixels"]}
    image_processor = Qwen2VLImageProcessor(size=budget, patch_size=vision["patch_size"],
                                            merge_size=vision["spatial_merge_size"],
                                            temporal_patch_size=vision["temporal_patch_size"],
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    video_processor = Qwen3VLVideoProcessor(size=budget, patch_size=vision["patch_size"],
                                            merge_size=vision["spatial_merge_size"])
    Qwen3VLProcessor(image_processor=image_processor, video_processor=video_processor, tokenizer=tokenizer,
                     chat_template=template).save_pretrained(out_dir)


# -- published values -----------------------------------------------------------------------------------
# preprocessor_config.json of Qwen3-VL-2B/8B/32B-Instruct and Qwen3.5-2B-Base/9B/27B (identical files):
# size {"shortest_edge": 65536, "longest_edge": 16777216}, i.e. 256x256 .. 4096x4096 px, 64 .. 16,384 tokens.
QWEN3_PIXELS = {"min_pixels": 65536, "max_pixels": 16777216}

# The tower both families publish: patch 16, merge 2, temporal 2, 48x48 learned position embeddings.
QWEN3_VISION = {"type": "qwen3_vl", "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                "in_channels": 3, "num_position_embeddings": 2304, "hidden_act": "gelu_pytorch_tanh",
                "norm": "layer", "mlp": "gelu", "deepstack_visual_indexes": []}
QWEN3_VISION_24 = {**QWEN3_VISION, "depth": 24, "embed_dim": 1024, "mlp_dim": 4096, "num_heads": 16}
QWEN3_VISION_27 = {**QWEN3_VISION, "depth": 27, "embed_dim": 1152, "mlp_dim": 4304, "num_heads": 16}


def image_tokens(processor: dict, vision: dict) -> dict:
    """The ``qwen_smart_resize`` rule (factor = patch x merge) with the processor's saved pixel budget, or
    the published one when the processor saved none."""
    size = processor.get("size") or {}
    low = processor.get("min_pixels", size.get("shortest_edge"))
    high = processor.get("max_pixels", size.get("longest_edge"))
    budget = {"min_pixels": int(low), "max_pixels": int(high)} if low and high else dict(QWEN3_PIXELS)
    return {"rule": "qwen_smart_resize", "factor": vision["patch_size"] * vision["spatial_merge_size"], **budget}


def vision_spec(vision: dict) -> dict:
    """The tower's spec from a Qwen3-VL / Qwen3.5 ``vision_config`` (defaults filled in)."""
    return {**QWEN3_VISION, "depth": vision["depth"], "embed_dim": vision["hidden_size"],
            "mlp_dim": vision["intermediate_size"], "num_heads": vision["num_heads"],
            "patch_size": vision["patch_size"], "spatial_merge_size": vision["spatial_merge_size"],
            "temporal_patch_size": vision["temporal_patch_size"], "in_channels": vision.get("in_channels", 3),
            "num_position_embeddings": vision["num_position_embeddings"],
            "hidden_act": vision.get("hidden_act", QWEN3_VISION["hidden_act"]),
            "deepstack_visual_indexes": list(vision.get("deepstack_visual_indexes") or []),
            "out_hidden_size": vision["out_hidden_size"]}


def vision_config(vision: dict) -> dict:
    """The ``vision_config`` of a tower spec (``deepstack_visual_indexes`` only where the tower has them)."""
    config = {"depth": vision["depth"], "hidden_size": vision["embed_dim"], "intermediate_size": vision["mlp_dim"],
              "num_heads": vision["num_heads"], "patch_size": vision["patch_size"],
              "spatial_merge_size": vision["spatial_merge_size"],
              "temporal_patch_size": vision["temporal_patch_size"], "in_channels": vision["in_channels"],
              "num_position_embeddings": vision["num_position_embeddings"], "hidden_act": vision["hidden_act"],
              "out_hidden_size": vision["out_hidden_size"]}
    if vision.get("deepstack_visual_indexes"):
        config["deepstack_visual_indexes"] = list(vision["deepstack_visual_indexes"])
    return config


def vision_counts(vision: dict) -> dict:
    """Parameters of the tower: ViT blocks, patch merger and DeepStack mergers (exact; checked on meta)."""
    d, i, out = vision["embed_dim"], vision["mlp_dim"], vision["out_hidden_size"]
    merged = d * vision["spatial_merge_size"] ** 2
    patch_embed = vision["in_channels"] * vision["temporal_patch_size"] * vision["patch_size"] ** 2 * d + d
    position = vision["num_position_embeddings"] * d
    block_linear = 3 * d * d + d * d + 2 * d * i                   # qkv, proj, linear_fc1, linear_fc2
    block = block_linear + 3 * d + d + i + d + 4 * d               # their biases, two LayerNorms
    merger_linear = merged * merged + merged * out                 # linear_fc1, linear_fc2
    merger = merger_linear + merged + out + 2 * d                  # LayerNorm before the 2x2 merge
    deepstack = merger_linear + merged + out + 2 * merged          # LayerNorm after it
    levels = len(vision.get("deepstack_visual_indexes") or [])
    return {"vision": patch_embed + position + vision["depth"] * block + merger + levels * deepstack,
            "vision_linear": vision["depth"] * block_linear + merger_linear * (1 + levels)}


def rope_parameters(text: dict) -> dict:
    """The interleaved M-RoPE ``rope_parameters`` of a text spec."""
    rope = {"rope_type": "default", "rope_theta": text["rope_theta"], "mrope_section": list(text["mrope_section"]),
            "mrope_interleaved": True}
    if text.get("partial_rotary_factor") is not None:
        rope["partial_rotary_factor"] = text["partial_rotary_factor"]
    return rope


def read_rope(text: dict) -> dict:
    """``rope_theta``, ``mrope_section`` (and ``partial_rotary_factor``) of a ``text_config``; transformers 4
    files keep them in ``rope_scaling`` and a top-level ``rope_theta``."""
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    spec = {"rope_theta": rope.get("rope_theta", text.get("rope_theta")),
            "mrope_section": list(rope.get("mrope_section") or [])}
    factor = rope.get("partial_rotary_factor", text.get("partial_rotary_factor"))
    if factor is not None:
        spec["partial_rotary_factor"] = factor
    return spec
