"""What each item of the training memory estimate costs: bytes per element, per token, per image.

The per-token and per-image sizes of what autograd saves (decoder layers of each kind, encoder-decoder
language models, vision towers and projectors, pixels), the parameter counts LoRA adds, the settings a
run configuration implies (weight dtype, adapted modules, device, the fast path's switches) and the
constants the estimate adds on top (CUDA context, allocator slack). :mod:`.estimate` adds them up.
"""

from __future__ import annotations

import importlib.util

import torch

from ...core.actions import ACTION_FORMATS, Action, render_action
from ...core.config import AUTO_HISTORY_WINDOW, RunConfig
from ...data.synth_episodes import EPISODES_SOURCE
from ...families.registry import FAMILIES
from ..features import cache_decision, mode_dependent_in_spec

GIB = 2 ** 30

# Sequence text around the image: chat template, system prompt, task prompt, instruction and the
# answer. The H100 anchor's prompt had 62 (1,258 tokens - 1,196 image tokens), 12 of them answer tokens.
DEFAULT_TEXT_TOKENS = 64
DEFAULT_ANSWER_TOKENS = 16          # decoder length of encoder-decoder models (Florence-2)

# Bytes per element.
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)   # 4-bit + uint8 absmax per 64 + fp32 per 256 blocks (double quant)
INT8_BYTES = 1.0                             # LLM.int8 weights (+ one fp32 scale per row, negligible)

# The CUDA context (cuBLAS/cuDNN workspaces included) lives outside torch's allocator, and the caching
# allocator reserves more than it hands out: the H100 anchor's peak_reserved / peak_alloc is 1.06-1.25
# (mean ~1.15) across recipes.
CUDA_CONTEXT_GIB = 0.5
ALLOCATOR_SLACK = 0.15
# A CPU training process: Python with torch, transformers and peft imported (resident set size).
CPU_PROCESS_GIB = 0.6

# -- episode history (data.history_window, data.history_images) ---------------------------------------
#: Data sources whose records are steps of episodes, so ``data.history_window: auto`` writes earlier actions
#: (MiniWoB++ demonstrations and the synthetic two-step episodes, ``"episodes"``, are episodes too); every
#: other source is single-step.
EPISODE_SOURCES = ("aitw", "androidcontrol", "mind2web", "miniwob", EPISODES_SOURCE)

#: The actions the per-action token count is measured on: episode steps are mostly clicks (two, with three
#: and four digits), then typing, scrolling and keys.
HISTORY_ACTION_SAMPLES = (Action("click", x=512, y=300), Action("click", x=1088, y=64),
                          Action("type", text="weather in paris"), Action("scroll", direction="down", amount=100),
                          Action("press", key="Enter"))
#: Tokens one earlier action costs in the user turn. The prompt's history block
#: (:func:`uivlm_helpers.core.prompts.history_text`) writes each as a numbered line, ``"1. click(512, 300)"``,
#: in the run's action format; the count is that line with its newline, the mean over
#: :data:`HISTORY_ACTION_SAMPLES` rounded up, per ``model.action_format``. Measured with
#: :func:`history_action_tokens` on the tiny Qwen2-VL tokenizer (``uivlm/tiny-qwen2-vl``; per sample, text:
#: 14 14 16 12 7, json: 25 25 24 23 15, coordinates: 12 12 16 9 7); ``python -m bench.bench_history`` prints
#: them again. That tokenizer splits text with the published Qwen2 pre-tokenizer's rules (every digit its
#: own token, punctuation and the space before a number apart), so clicks, scrolls and keys count the same
#: as with the published 151k-token vocabulary; only the typed words merge further there ("weather in
#: paris": 3 tokens instead of 9), which makes these counts an upper bound by at most ~1 token per action.
HISTORY_ACTION_TOKENS = {"text": 13, "json": 23, "coordinates": 12}
#: Tokens of the history block besides its action lines, by how many earlier screenshots it explains (0, 1,
#: 2 or more): the heading "Previous actions, oldest first:", the blank line before the task prompt and the
#: sentence saying which image is which. Measured on the same tokenizer (``bench.bench_history``); the
#: published vocabulary merges these English words further, so they too are an upper bound.
HISTORY_BLOCK_TOKENS = {0: 18, 1: 47, 2: 55}
#: Tokens around each extra image besides its image tokens: Qwen's ``<|vision_start|>`` / ``<|vision_end|>``
#: (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5), Idefics2's two ``<fake_token_around_image>``.
HISTORY_IMAGE_WRAPPER_TOKENS = 2


def history_window_for(source: str, window) -> int:
    """How many earlier actions ``data.history_window`` writes for a ``data.source``.

    An int is itself; ``"auto"`` is :data:`AUTO_HISTORY_WINDOW` for an episode source
    (:data:`EPISODE_SOURCES`, also with a ``":..."`` selection such as ``"miniwob:click-test"``, or a folder
    whose name is one of them or starts with one and ``-`` / ``_``, e.g. ``data/aitw_general``) and 0 for
    every other source.

    Raises:
        ValueError: ``window`` is neither ``"auto"`` nor a whole number >= 0.
    """
    if isinstance(window, str) and window.strip().lower() == "auto":
        text = str(source or "").strip().lower()
        name = text.split(":", 1)[0]
        folder = text.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        episode = name in EPISODE_SOURCES or any(folder == s or folder.startswith((s + "-", s + "_"))
                                                 for s in EPISODE_SOURCES)
        return AUTO_HISTORY_WINDOW if episode else 0
    if isinstance(window, str) and window.strip().isdigit():
        return int(window)
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"data.history_window: expected 'auto' or 0 or more earlier actions, got {window!r}")
    return window


def history_action_tokens(tokenizer, action_format: str = "text") -> float:
    """The mean tokens of one earlier action's numbered line (``"1. click(512, 300)"`` and its newline) over
    :data:`HISTORY_ACTION_SAMPLES`, counted with a real tokenizer (what :data:`HISTORY_ACTION_TOKENS` holds,
    rounded up)."""
    if action_format not in ACTION_FORMATS:
        raise ValueError(f"action_format: expected one of {ACTION_FORMATS}, got {action_format!r}")
    counts = [len(tokenizer(f"{i}. {render_action(action, action_format)}\n", add_special_tokens=False)["input_ids"])
              for i, action in enumerate(HISTORY_ACTION_SAMPLES, 1)]
    return sum(counts) / len(counts)


def history_block_tokens(images: int) -> int:
    """:data:`HISTORY_BLOCK_TOKENS` for a block explaining ``images`` earlier screenshots."""
    return HISTORY_BLOCK_TOKENS[min(images, 2)]


def multi_image_families() -> list[str]:
    """The families whose processor takes several images in one user turn (plug-in ``multi_image``)."""
    return sorted(plugin.display for plugin in FAMILIES.values() if plugin.multi_image)


def check_history_images(config: RunConfig, spec: dict) -> int:
    """``data.history_images`` for this model: the count, or 0.

    Raises:
        ValueError: history screenshots asked of a single-image family (LLaVA-1.5, PaliGemma, Florence-2...).
    """
    count = config.data.history_images
    if count and not FAMILIES[spec["family"]].multi_image:
        raise ValueError(f"data.history_images={count}: {FAMILIES[spec['family']].display} "
                         f"({config.model.name}) takes one image per prompt; earlier screenshots need a "
                         f"multi-image family: {', '.join(multi_image_families())} (or set data.history_images "
                         f"to 0 and keep the earlier actions as text, data.history_window)")
    return count


def history_pixel_budget(config: RunConfig, spec: dict, image_size: tuple[int, int]) -> int | None:
    """Pixels of each history screenshot next to a current one of ``image_size``: ``model.history_max_pixels``,
    else a quarter of what the current screenshot gets (its own pixels, capped by ``model.max_pixels``, else
    the checkpoint's budget), as :meth:`uivlm_helpers.models.wrapper.VLMWrapper.history_pixel_budget`. None
    for a family whose image tokens do not depend on a pixel budget (fixed-size or tiled images)."""
    if config.model.history_max_pixels is not None:
        return config.model.history_max_pixels
    rule = spec["image_tokens"]
    main = config.model.max_pixels if config.model.max_pixels is not None else rule.get("max_pixels")
    if not main:
        return None
    return max(1, min(image_size[0] * image_size[1], main) // 4)


COMPONENTS = ("weights", "lora", "gradients", "optimizer", "activations", "logits", "overhead")


# -- settings derived from the run configuration -----------------------------------------------------
def weight_dtype(config: RunConfig, spec: dict) -> str:
    dtype = config.model.torch_dtype
    return spec.get("checkpoint_dtype", "float32") if dtype == "auto" else dtype


def lora_targets(config: RunConfig, spec: dict) -> list[str]:
    """Adapted module names: the configured ones, or the family default (all attention + MLP projections)."""
    names = config.model.lora_config.target_modules
    available = {name for group in spec["lora"] for name in group["modules"]}
    if not names:
        return sorted(available)
    return [n for n in names if n in available]


def lora_param_count(spec: dict, targets: list[str], r: int) -> int:
    """r x (in + out) per adapted projection, per layer (LoRA's A is r x in, B is out x r)."""
    return sum(group["layers"] * r * (shape[0] + shape[1])
               for group in spec["lora"] for name, shape in group["modules"].items() if name in targets)


def is_gpu(config: RunConfig) -> bool:
    return not config.model.device.startswith("cpu")


def detect_device_gib() -> tuple[float | None, str]:
    """``(GiB, name)`` of this machine's first GPU, or ``(None, "no GPU")``."""
    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return props.total_memory / GIB, props.name
    except Exception:  # no usable CUDA: report as no GPU
        pass
    return None, "no GPU"


# -- activation bytes per token ------------------------------------------------------------------------
def _decoder_layer_bytes(text: dict, *, act: int, norm: int, lora_in: int, mask: int, targets: list[str],
                         shapes: dict, full_finetune: bool, mlp_saved: int = 3, repeated_kv: bool = False) -> float:
    """Bytes autograd keeps per token for one Llama-style decoder layer (Qwen2, Llama, Mistral, Gemma).

    What is saved, following the transformers 5 / peft 0.21 code paths:

    * each RMSNorm upcasts its input to fp32 and saves it (``norm`` bytes x hidden, two per layer);
    * a frozen ``nn.Linear`` saves nothing (its weight needs no gradient and the input gradient only needs
      the weight); a LoRA-wrapped one saves its dropout mask (1 byte on CUDA, a float on CPU) and the
      dropout output that ``lora_A`` reads, cast to the adapter's fp32 (``lora_in`` bytes x in_features);
    * SDPA (flash / memory-efficient kernels) saves q, k, v and the output (the softmax is recomputed);
      with an attention mask (a batch padded to its longest sample) transformers repeats k and v to every
      query head before SDPA (its GQA kernel needs no mask), so they are saved at the query width
      (``repeated_kv``);
    * the gated MLP saves the gate projection (for SiLU/GELU), the activation and the up projection;
    * Qwen3-generation attention (``qk_norm``) also normalises q and k per head (fp32 inputs saved), and a
      gated one (``attn_output_gate``, Qwen3.5) saves the sigmoid of its output gate.
    """
    h, i = text["hidden_size"], text["intermediate_size"]
    q_dim = text["num_attention_heads"] * text["head_dim"]
    kv_dim = text["num_key_value_heads"] * text["head_dim"]
    total = 2 * norm * h + act * (2 * q_dim + 2 * (q_dim if repeated_kv else kv_dim)) + mlp_saved * act * i
    if text.get("qk_norm"):
        total += 4 * (q_dim + kv_dim)
    if text.get("attn_output_gate"):
        total += act * q_dim
    total += sum((mask + lora_in) * shapes[name][0] for name in targets if name in shapes)
    if full_finetune:  # trainable linears and norm weights also save their inputs
        total += 4 * act * h + act * i
    return total


def _linear_attention_layer_bytes(text: dict, *, act: int, norm: int, lora_in: int, mask: int,
                                  targets: list[str], shapes: dict, full_finetune: bool, mlp_saved: int = 3,
                                  **_) -> float:
    """Bytes autograd keeps per token for one Gated-DeltaNet layer (a hybrid model's ``linear_attention``
    layers, Qwen3.5), with the flash-linear-attention and causal-conv1d kernels on a GPU.

    An estimate from the code path, not yet checked against a GPU measurement: the two RMSNorms' fp32
    inputs; the causal convolution's input and the delta rule's q, k, v (its output), both as wide as
    ``in_proj_qkv``'s output; the delta rule's per-chunk attention (64 tokens) per value head in fp32; the
    gated RMSNorm's fp32 input, gate and SiLU output; the MLP and LoRA inputs as in
    :func:`_decoder_layer_bytes`. The pure-torch fallback (no flash-linear-attention) keeps more.
    """
    h, i = text["hidden_size"], text["intermediate_size"]
    heads = text["linear_num_value_heads"]
    values = heads * text["linear_value_head_dim"]
    channels = 2 * text["linear_num_key_heads"] * text["linear_key_head_dim"] + values
    total = 2 * norm * h + 2 * act * channels + 4 * 64 * heads + (12 + act) * values + mlp_saved * act * i
    total += sum((mask + lora_in) * shapes[name][0] for name in targets if name in shapes)
    if full_finetune:
        total += 4 * act * h + act * i
    return total


def layer_bytes(spec: dict, **settings) -> float:
    """Bytes autograd keeps per token for one decoder layer, averaged over the layer kinds of a hybrid
    language model (its LoRA groups, see :func:`uivlm_helpers.models.model_configs.lora_shapes`)."""
    text = spec["text"]
    total = 0.0
    for group in spec["lora"]:
        kind = _linear_attention_layer_bytes if group["group"] == "linear_attention" else _decoder_layer_bytes
        total += group["layers"] * kind(text, shapes=group["modules"], **settings)
    return total / sum(group["layers"] for group in spec["lora"])


def encoder_decoder_bytes(text: dict, *, act: int, lora_in: int, mask: int, targets: list[str],
                           full_finetune: bool, enc_tokens: int, dec_tokens: int) -> float:
    """Bytes saved per sample by a BART-style encoder-decoder (Florence-2's language model).

    Post-LayerNorm layers (LayerNorm saves its input), plain GELU MLP (saves fc1's output), SDPA saves
    q, k, v, out; decoder layers add cross-attention whose k/v projections read every encoder token.
    """
    h, i = text["hidden_size"], text["intermediate_size"]
    lora = mask + lora_in
    t = set(targets)
    attn_lora = lora * h * sum(n in t for n in ("q_proj", "k_proj", "v_proj", "out_proj"))
    mlp_lora = lora * (h * ("fc1" in t) + i * ("fc2" in t))
    full = (3 * act * h + act * i) if full_finetune else 0
    encoder_layer = 2 * act * h + 4 * act * h + act * i + attn_lora + mlp_lora + full
    decoder_self = 3 * act * h + 4 * act * h + act * i + attn_lora + mlp_lora + full
    decoder_cross_q = 2 * act * h + lora * h * sum(n in t for n in ("q_proj", "out_proj"))
    decoder_cross_kv = 2 * act * h + lora * h * sum(n in t for n in ("k_proj", "v_proj"))
    return (text["encoder_layers"] * encoder_layer * enc_tokens
            + text["decoder_layers"] * ((decoder_self + decoder_cross_q) * dec_tokens
                                        + decoder_cross_kv * enc_tokens))


def _vision_block_bytes(vision: dict, act: int, trainable: bool) -> float:
    """Bytes saved per patch by one vision-tower block when autograd records it."""
    if vision["type"] == "davit":  # approximate: spatial + channel block per depth, ViT-like each
        return 0.0  # handled per stage in vision_bytes
    e, m = vision["embed_dim"], vision["mlp_dim"]
    if vision["norm"] == "rms":             # RMSNorm (fp32 upcast), gated SiLU MLP (Qwen2.5-VL)
        total = 2 * 4 * e + act * (4 * e + 3 * m)
    elif vision["mlp"] == "quick_gelu":     # LayerNorm, fc1 -> x * sigmoid(1.702 x) -> fc2 (Qwen2-VL, CLIP)
        total = act * (6 * e + 2 * m)
    else:                                   # LayerNorm, fc1 -> GELU(tanh) -> fc2 (SigLIP)
        total = act * (6 * e + m)
    if trainable:                           # linears with trainable weights save their inputs
        total += act * (2 * e + m)
    return total


def vision_bytes(spec: dict, patches: int, image_tokens: int, act: int, *, graph: bool, checkpointing: bool,
                  trainable: bool) -> float:
    """Bytes the vision tower and projector keep for backward, per image."""
    vision = spec["vision"]
    if not graph:
        return 0.0
    if vision["type"] == "davit":
        side = vision["image_size"]
        total = 0.0
        stride = 1
        for s, (dim, depth) in enumerate(zip(vision["embed_dim"], vision["depths"])):
            stride *= vision["patch_stride"][s]
            tokens = (side // stride) ** 2
            per_unit = act * dim if checkpointing else 2 * act * (6 * dim + int(vision["mlp_ratio"] * dim))
            total += tokens * depth * per_unit
        return total
    e = vision["embed_dim"]
    if checkpointing:
        blocks = vision["depth"] * act * e * patches
    else:
        blocks = vision["depth"] * _vision_block_bytes(vision, act, trainable) * patches
    # Projector / merger: Qwen's patch merger (LayerNorm or RMSNorm + GELU inputs, per patch); LLaVA's GELU input.
    if "spatial_merge_size" in vision:
        norm = act if vision["norm"] == "layer" else 4
        projector = (norm * e + act * e) * patches
    else:
        projector = act * spec["text"]["hidden_size"] * image_tokens
    return blocks + projector


def pixel_bytes(spec: dict, patches: int) -> float:
    """``pixel_values`` as the processor returns them (fp32)."""
    vision = spec["vision"]
    if "temporal_patch_size" in vision:     # Qwen: flattened patches (channels x frames x patch x patch)
        return 4 * patches * vision["in_channels"] * vision["temporal_patch_size"] * vision["patch_size"] ** 2
    side = spec["image_tokens"].get("image_size")
    if not side:   # native aspect ratio (Idefics2): the patches the processor cut
        return 4 * 3 * patches * vision["patch_size"] ** 2
    return 4 * 3 * side * side


# -- the fast path switches -----------------------------------------------------------------------------
#: Families liger-kernel 0.8 patches (fused linear cross-entropy; each family plug-in's ``fused_cross_entropy``).
LIGER_FAMILIES = tuple(name for name, plugin in FAMILIES.items() if plugin.fused_cross_entropy)


def fast_path_switches(config: RunConfig, spec: dict, gpu: bool) -> tuple[bool, bool]:
    """``(cache_vision_features, fused_cross_entropy)`` as training would resolve them.

    ``auto`` asks :func:`uivlm_helpers.training.features.cache_decision`, the rule training applies to the loaded model, with
    the facts the configuration and spec give: the tower trains when ``model.freeze_vision_encoder`` is
    false (fully, or under LoRA through adapters on its layers), and the spec's dropout / stochastic-depth
    rates. ``true`` is estimated as asked. The cache holds earlier screenshots (``data.history_images``) as it
    holds the current ones. The fused loss needs a GPU, liger-kernel installed and a family it patches.
    """

    t = config.training
    cache_setting = str(getattr(t, "cache_vision_features", "false")).lower()
    fused_setting = str(getattr(t, "fused_cross_entropy", "false")).lower()
    if cache_setting == "true":
        cache = True                                   # estimated as asked
    elif cache_setting == "auto":
        cache = cache_decision(
            cache_setting, spec["family"], mode_dependent=mode_dependent_in_spec(spec),
            trainable_vision=None if config.model.freeze_vision_encoder else "model.freeze_vision_encoder is false",
        ).enabled
    else:
        cache = False
    liger = importlib.util.find_spec("liger_kernel") is not None
    fused = fused_setting == "true" or (fused_setting == "auto" and gpu and liger
                                        and spec.get("family") in LIGER_FAMILIES)
    return cache, fused
