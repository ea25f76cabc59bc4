"""How much device memory training needs, estimated before loading anything, and measured for real.

:func:`estimate_training_memory` adds up what is alive at the step's peak, from the run configuration and
the architecture's published dimensions (:mod:`uivlm_helpers.models.model_configs`; nothing is downloaded):

* **weights** by dtype and quantization (nf4 = 0.5 byte + block constants; 8-bit = 1 byte; what 4/8-bit
  leaves unquantized is upcast to fp32 by ``prepare_model_for_kbit_training``);
* **lora** adapter weights (fp32: peft upcasts bf16/fp16 adapters), **gradients** and the AdamW
  **optimizer** state (two tensors per trainable parameter, in the parameter's dtype);
* **activations**: the tensors autograd saves for the backward pass, counted per token and layer from
  what the transformers / peft code paths really save (see :func:`_decoder_layer_bytes`), with gradient
  checkpointing (layer inputs plus one recomputed layer; ``training.uncheckpointed_layers`` keeps the
  last layers' activations whole, see :func:`plan_uncheckpointed_layers`) and the frozen vision tower
  (nothing saved, unless gradients are made to flow into it - see ``frozen_vision_graph``);
* **logits** over the vocabulary: bf16 logits, their fp32 upcast, log-softmax and its gradients: 12-14
  bytes per token per vocabulary entry, the largest item for Qwen's 152k vocabulary;
* **overhead**: the CUDA context and the caching allocator's slack (not in ``max_memory_allocated``).

The fast path (:mod:`uivlm_helpers.training.features`) changes two items: ``training.cache_vision_features`` (on
with ``auto`` whenever the tower is frozen) removes the vision tower's activations and pixels (the batch
carries image tokens x hidden features instead); ``training.fused_cross_entropy`` (liger-kernel, on a GPU)
replaces the vocabulary logits by one chunk of them plus the hidden states' gradient, and liger's RMSNorm
and SwiGLU save less per layer. Both were checked against the H100 anchor's liger and cache rows
(``bench/results/gpu_anchor_2b_h100.jsonl``, within 1-7%).

Calibrated against full-size Qwen2-VL-2B measured on an H100 (``bench/results/gpu_anchor_2b_h100.jsonl``,
measured by ``bench/bench_anchor.py``; bench/README.md §0): the estimate
matches ``torch.cuda.max_memory_allocated`` of every plain measured recipe within 1% (one row -5%) (see
``tests/test_memory.py``, which prints the comparison). The cost of each layer left out of checkpointing
(``training.uncheckpointed_layers``) matches full-size Qwen2-VL-7B on an H200 within 2% (bench/README.md 5c).

:func:`.profiling.profile_training_peak` measures the real peak of a few training steps on a real batch;
:func:`compare_with_measurement` sets it beside the estimate.
"""

from __future__ import annotations

import copy
import html
import importlib.util
import math
from pathlib import Path

import ipywidgets as w
import matplotlib.pyplot as plt
import pandas as pd
import torch
from IPython.display import display

from ..core.config import RunConfig
from ..families.registry import FAMILIES
from ..models.model_configs import architecture_spec, image_token_count, vision_lora_parameter_count
from .features import cache_decision, mode_dependent_in_spec

GIB = 2 ** 30

# Sequence text around the image: chat template, system prompt, task prompt, instruction and the
# answer. The H100 anchor's prompt had 62 (1,258 tokens - 1,196 image tokens), 12 of them answer tokens.
DEFAULT_TEXT_TOKENS = 64
DEFAULT_ANSWER_TOKENS = 16          # decoder length of encoder-decoder models (Florence-2)

# Bytes per element.
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)   # 4-bit + uint8 absmax per 64 + fp32 per 256 blocks (double quant)
INT8_BYTES = 1.0                             # LLM.int8 weights (+ one fp32 scale per row, negligible)

# The CUDA context (cuBLAS/cuDNN workspaces included) lives outside torch's allocator, and the caching
# allocator reserves more than it hands out: the H100 anchor's peak_reserved / peak_alloc is 1.06-1.25
# (mean ~1.15) across recipes.
CUDA_CONTEXT_GIB = 0.5
ALLOCATOR_SLACK = 0.15
# A CPU training process: Python with torch, transformers and peft imported (resident set size).
CPU_PROCESS_GIB = 0.6

COMPONENTS = ("weights", "lora", "gradients", "optimizer", "activations", "logits", "overhead")
_DESCRIPTIONS = {
    "weights": "model weights (dtype / quantization)",
    "lora": "LoRA adapter weights (fp32)",
    "gradients": "gradients of the trainable parameters",
    "optimizer": "AdamW state (2 per trainable parameter)",
    "activations": "tensors saved for backward (+ batch inputs)",
    "logits": "vocabulary logits, log-softmax and their gradients",
    "overhead": "CUDA context / process and allocator slack",
}


# -- settings derived from the run configuration -----------------------------------------------------
def _weight_dtype(config: RunConfig, spec: dict) -> str:
    dtype = config.model.torch_dtype
    return spec.get("checkpoint_dtype", "float32") if dtype == "auto" else dtype


def _lora_targets(config: RunConfig, spec: dict) -> list[str]:
    """Adapted module names: the configured ones, or the family default (all attention + MLP projections)."""
    names = config.model.lora_config.target_modules
    available = {name for group in spec["lora"] for name in group["modules"]}
    if not names:
        return sorted(available)
    return [n for n in names if n in available]


def _lora_param_count(spec: dict, targets: list[str], r: int) -> int:
    """r x (in + out) per adapted projection, per layer (LoRA's A is r x in, B is out x r)."""
    return sum(group["layers"] * r * (shape[0] + shape[1])
               for group in spec["lora"] for name, shape in group["modules"].items() if name in targets)


def _is_gpu(config: RunConfig) -> bool:
    return not config.model.device.startswith("cpu")


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


def _layer_bytes(spec: dict, **settings) -> float:
    """Bytes autograd keeps per token for one decoder layer, averaged over the layer kinds of a hybrid
    language model (its LoRA groups, see :func:`uivlm_helpers.models.model_configs.lora_shapes`)."""
    text = spec["text"]
    total = 0.0
    for group in spec["lora"]:
        kind = _linear_attention_layer_bytes if group["group"] == "linear_attention" else _decoder_layer_bytes
        total += group["layers"] * kind(text, shapes=group["modules"], **settings)
    return total / sum(group["layers"] for group in spec["lora"])


def _encoder_decoder_bytes(text: dict, *, act: int, lora_in: int, mask: int, targets: list[str],
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
        return 0.0  # handled per stage in _vision_bytes
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


def _vision_bytes(spec: dict, patches: int, image_tokens: int, act: int, *, graph: bool, checkpointing: bool,
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


def _pixel_bytes(spec: dict, patches: int) -> float:
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


def _fast_path_switches(config: RunConfig, spec: dict, gpu: bool) -> tuple[bool, bool]:
    """``(cache_vision_features, fused_cross_entropy)`` as training would resolve them.

    ``auto`` asks :func:`uivlm_helpers.training.features.cache_decision`, the rule training applies to the loaded model, with
    the facts the configuration and spec give: the tower trains when ``model.freeze_vision_encoder`` is
    false (fully, or under LoRA through adapters on its layers), and the spec's dropout / stochastic-depth
    rates. ``true`` is estimated as asked. The fused loss needs a GPU, liger-kernel installed and a family
    it patches.
    """

    t = config.training
    cache_setting = str(getattr(t, "cache_vision_features", "false")).lower()
    fused_setting = str(getattr(t, "fused_cross_entropy", "false")).lower()
    cache = cache_setting == "true" or (cache_setting == "auto" and cache_decision(
        "auto", spec["family"], mode_dependent=mode_dependent_in_spec(spec),
        trainable_vision=None if config.model.freeze_vision_encoder else "model.freeze_vision_encoder is false",
    ).enabled)
    liger = importlib.util.find_spec("liger_kernel") is not None
    fused = fused_setting == "true" or (fused_setting == "auto" and gpu and liger
                                        and spec.get("family") in LIGER_FAMILIES)
    return cache, fused


# -- the estimate -----------------------------------------------------------------------------------
def estimate_training_memory(config: RunConfig, image_size: tuple[int, int] | None = None, *,
                             text_tokens: int | None = None, answer_tokens: int | None = None,
                             keep_logits: bool = False, frozen_vision_graph: bool | None = None,
                             padded: bool = True, spec: dict | None = None) -> dict:
    """Estimate the peak device memory of one training step with these settings.

    Args:
        config: the run configuration (model, LoRA, quantization, dtype, batch size, checkpointing...).
        image_size: screenshot ``(width, height)``; default ``config.data.image_width/height``.
        text_tokens: text tokens per sample around the image (prompt + answer); default
            :data:`DEFAULT_TEXT_TOKENS`.
        answer_tokens: decoder tokens of encoder-decoder models; default :data:`DEFAULT_ANSWER_TOKENS`.
        keep_logits: the training loop keeps the model output (its logits) alive through ``backward``
            (a hand-written ``out = model(**batch); out.loss.backward()``). ``transformers.Trainer`` and
            :func:`.profiling.profile_training_peak` drop it, which saves one logits copy.
        frozen_vision_graph: gradients flow into the frozen vision tower, so autograd records it. None
            follows the workbook: with gradient checkpointing ``train.py`` calls
            ``enable_input_require_grads()``, which in transformers 5 also hooks the vision patch
            embedding, so the frozen tower keeps its checkpoints (block inputs) for a backward pass.
        padded: batches of two or more are padded to their longest sample (instructions differ in
            length), so SDPA gets an attention mask and the decoder's k/v are repeated to every query
            head (grouped-query models save them that wide). False: every sample has the same length.
        spec: an architecture spec to use instead of looking up ``config.model.name``.

    Returns:
        ``{"components": {name: GiB}, "total_gib", "peak_allocated_gib", "params", "trainable_params",
        "sequence_tokens", "image_tokens", "assumptions": {...}}``. ``total_gib`` includes the overhead
        (what the device must have); ``peak_allocated_gib`` is what ``torch.cuda.max_memory_allocated``
        reports.

    Raises:
        ValueError: the model is not known offline (see ``model_configs.architecture_spec``).
    """

    spec = spec or architecture_spec(config.model.name)
    if config.training.gradient_checkpointing and config.training.uncheckpointed_layers == "auto":
        config = copy.deepcopy(config)
        config.training.uncheckpointed_layers, _ = auto_uncheckpointed_layers(
            config, image_size, text_tokens=text_tokens, answer_tokens=answer_tokens, keep_logits=keep_logits,
            frozen_vision_graph=frozen_vision_graph, padded=padded, spec=spec)
    m, t = config.model, config.training
    width, height = image_size or (config.data.image_width, config.data.image_height)
    batch = t.batch_size
    gpu = _is_gpu(config)
    params = spec["params"]
    text = spec["text"]
    quantized = "4bit" if m.load_in_4bit else "8bit" if m.load_in_8bit else None
    weight_dtype = _weight_dtype(config, spec)
    weight_bytes = _DTYPE_BYTES[weight_dtype]
    autocast = t.mixed_precision in ("fp16", "bf16")

    # Activation element sizes. Quantized models run with an fp32 residual stream: prepare_model_for_
    # kbit_training upcasts norms and embeddings to fp32 and bitsandbytes returns its input's dtype.
    act = 4 if quantized else (2 if autocast else weight_bytes)
    norm = 4                                     # RMSNorm saves its fp32 upcast of the input
    lora_in = 2 if autocast else 4               # peft casts the input to the fp32 adapter dtype
    dropout = m.lora_config.lora_dropout > 0
    mask = (1 if gpu else lora_in) if dropout else 0
    if not dropout and lora_in == act:
        lora_in = 0                              # lora_A reads the very tensor the base layer got

    # Tokens.
    image = image_token_count(spec, width, height, m.min_pixels, m.max_pixels)
    text_tokens = DEFAULT_TEXT_TOKENS if text_tokens is None else text_tokens
    encoder_decoder = spec["architecture"] == "encoder_decoder"
    seq = image["tokens"] + text_tokens
    dec = (DEFAULT_ANSWER_TOKENS if answer_tokens is None else answer_tokens) if encoder_decoder else 0
    tokens = batch * seq
    patches = batch * image["patches"]

    # Parameters.
    # The tower trains unless frozen: with LoRA through adapters on its linear layers (the wrapper's
    # lora_on_vision), without LoRA fully.
    vision_frozen = m.freeze_vision_encoder
    if m.use_lora:
        targets = _lora_targets(config, spec)
        trainable = _lora_param_count(spec, targets, m.lora_config.r)
        if not vision_frozen:
            trainable += vision_lora_parameter_count(spec, m.lora_config.r)
        trainable_bytes = 4                      # peft autocast_adapter_dtype: adapters in fp32
    else:
        targets = []
        trainable = params["total"] - (params["vision"] if m.freeze_vision_encoder else 0)
        if quantized:                            # quantized linears cannot train; the rest can
            trainable -= params["text_linear"] + (0 if m.freeze_vision_encoder else params["vision_linear"])
        trainable_bytes = 4 if (quantized or weight_bytes == 4) else weight_bytes

    if quantized:
        linear = params["text_linear"] + params["vision_linear"]
        rest_bytes = 4 if m.use_lora else weight_bytes   # prepare_model_for_kbit_training upcasts
        weights = linear * (NF4_BYTES if quantized == "4bit" else INT8_BYTES) + (params["total"] - linear) * rest_bytes
    else:
        weights = params["total"] * weight_bytes
    lora = trainable * trainable_bytes if m.use_lora else 0.0
    gradients = trainable * trainable_bytes
    optimizer = 2 * trainable * trainable_bytes  # torch AdamW: exp_avg, exp_avg_sq like the parameter

    # The fast path (uivlm_helpers.training.features): cached tower features skip the tower and its pixels; the
    # fused cross-entropy never materialises the vocabulary logits.
    cache_features, fused_loss = _fast_path_switches(config, spec, gpu)

    # Activations.
    checkpointing = t.gradient_checkpointing
    vision_graph = (not vision_frozen) or (checkpointing if frozen_vision_graph is None else frozen_vision_graph)
    vision_graph = vision_graph and not cache_features
    vision = _vision_bytes(spec, patches, batch * image["tokens"], act, graph=vision_graph,
                           checkpointing=checkpointing, trainable=not vision_frozen)
    if cache_features:   # the batch carries the tower's output (image tokens x hidden) instead of pixels
        # (with DeepStack, Qwen3-VL, also each level's features: one more hidden-wide row per level)
        widths = 1 + len(spec["vision"].get("deepstack_visual_indexes") or [])
        inputs = batch * image["tokens"] * text["hidden_size"] * widths * act + 64 * tokens
    else:
        inputs = _pixel_bytes(spec, image["patches"]) * batch + 64 * tokens   # pixels; ids, masks, positions
    h = text["hidden_size"]
    if encoder_decoder:
        per_sample = _encoder_decoder_bytes(text, act=act, lora_in=lora_in, mask=mask, targets=targets,
                                            full_finetune=not m.use_lora, enc_tokens=seq, dec_tokens=dec)
        layers_total = text["encoder_layers"] + text["decoder_layers"]
        layer_avg = per_sample / layers_total
        kept = _uncheckpointed(t, layers_total)
        stored = (((layers_total - kept) * act * h * (seq + dec) + kept * layer_avg) * batch if checkpointing
                  else per_sample * batch)
        one_layer = layer_avg * batch
        logit_tokens = batch * dec
        outside = (2 * act * h + 2 * act * h) * tokens               # embeddings, final norms
    else:
        # liger's patch also swaps RMSNorm (saves its input in the activation dtype) and SwiGLU (saves
        # gate and up, recomputes the activation).
        layer = _layer_bytes(spec, act=act, norm=act if fused_loss else norm, lora_in=lora_in, mask=mask,
                             targets=targets, full_finetune=not m.use_lora, mlp_saved=2 if fused_loss else 3,
                             repeated_kv=padded and batch > 1)
        layers_total = text["num_hidden_layers"]
        kept = _uncheckpointed(t, layers_total)
        # Checkpointed layers keep their input; the last `kept` layers keep everything (uncheckpointed_layers).
        stored = ((layers_total - kept) * act * h + kept * layer if checkpointing else layers_total * layer) * tokens
        one_layer = layer * tokens
        logit_tokens = tokens
        head_dim = text["head_dim"]
        outside = (norm * h + act * h + 2 * act * head_dim) * tokens  # final norm, embeddings, rotary cos/sin
    activations = stored + vision + inputs + outside

    # Logits: the lm_head output (act bytes) is upcast to fp32 for the loss (a no-op when already fp32);
    # at the peak inside the loss's backward: fp32 log-softmax output, its incoming gradient and the
    # gradient it produces (3 x 4 bytes), plus the logits themselves if the loop still holds them.
    vocab = text["vocab_size"]
    logits_peak = (12 + (act if keep_logits else 0)) * vocab * logit_tokens
    logits_kept = (act if keep_logits else 0) * vocab * logit_tokens
    if fused_loss:
        # liger's fused linear cross-entropy: logits of one chunk of tokens at a time (chunk x vocab ~
        # tokens x hidden, act + fp32 copies), and the hidden states' gradient it keeps for backward.
        chunk = 2 ** math.ceil(math.log2(max(1, math.ceil(logit_tokens / math.ceil(vocab / h)))))
        logits_peak = (act + 4) * chunk * vocab + act * h * logit_tokens
        logits_kept = act * h * logit_tokens
    # Two candidate peaks: inside the loss's backward, or while the last layer is back-propagated: its
    # gradient temporaries (~1/4 of its saved bytes, measured on the tiny model) on top of what is
    # stored, plus - with checkpointing - the layer's recomputed activations.
    loss_phase = activations + logits_peak
    # With uncheckpointed_layers the last layers' activations are freed by their own backward before the
    # first checkpointed layer recomputes, so the two never add up: the first layer left out is free.
    full_layers = (kept if checkpointing else layers_total) * one_layer
    recompute = one_layer if checkpointing and kept < layers_total else 0
    layer_phase = activations - full_layers + logits_kept + max(full_layers, recompute) + 0.25 * one_layer
    peak_phase = "loss backward" if loss_phase >= layer_phase else "layer recompute"
    if peak_phase == "loss backward":
        act_component, logits_component = activations, logits_peak
    else:
        act_component, logits_component = layer_phase - logits_kept, logits_kept

    allocated = weights + lora + gradients + optimizer + act_component + logits_component
    overhead = ALLOCATOR_SLACK * allocated + (CUDA_CONTEXT_GIB if gpu else CPU_PROCESS_GIB) * GIB
    components = {"weights": weights, "lora": lora, "gradients": gradients, "optimizer": optimizer,
                  "activations": act_component, "logits": logits_component, "overhead": overhead}
    components = {k: v / GIB for k, v in components.items()}
    return {
        "model": m.name,
        "components": components,
        "total_gib": sum(components.values()),
        "peak_allocated_gib": allocated / GIB,
        "params": int(params["total"]),
        "trainable_params": int(trainable),
        "sequence_tokens": int(seq),
        "image_tokens": int(image["tokens"]),
        "batch_size": batch,
        "assumptions": {
            "device": "cuda" if gpu else "cpu",
            "weights": f"{quantized or weight_dtype}" + (" (rest fp32 after prepare_model_for_kbit_training)"
                                                         if quantized and m.use_lora else ""),
            "activation_bytes": act,
            "mixed_precision": t.mixed_precision,
            "lora_targets": targets if m.use_lora else "full fine-tune",
            "vision_lora": bool(m.use_lora and not vision_frozen),
            "vision_frozen": vision_frozen,
            "vision_graph": vision_graph,
            "gradient_checkpointing": checkpointing,
            "checkpointed_layers": (layers_total - kept if checkpointing else 0, layers_total),
            "image": {"size": (width, height), "resized": image["resized"], "patches": image["patches"],
                      "tokens": image["tokens"]},
            "text_tokens": text_tokens,
            "decoder_tokens": dec or None,
            "keep_logits": keep_logits and not fused_loss,
            "padded": padded,
            "cache_vision_features": cache_features,
            "fused_cross_entropy": fused_loss,
            "peak_phase": peak_phase,
            "optimizer": "torch AdamW (2 states per trainable parameter, in its dtype)",
            "overhead": (f"{ALLOCATOR_SLACK:.0%} allocator slack + "
                         + (f"{CUDA_CONTEXT_GIB} GiB CUDA context" if gpu else f"{CPU_PROCESS_GIB} GiB Python process")),
            "max_length_exceeded": bool(t.max_length and seq + dec > t.max_length),
        },
        "inputs": {"config": copy.deepcopy(config), "image_size": (width, height),
                   "options": {"text_tokens": text_tokens, "answer_tokens": answer_tokens,
                               "keep_logits": keep_logits, "frozen_vision_graph": frozen_vision_graph,
                               "padded": padded,
                               "spec": spec}},
    }


def auto_uncheckpointed_layers(config: RunConfig, image_size: tuple[int, int] | None = None,
                               **options) -> tuple[int, str]:
    """What ``training.uncheckpointed_layers: auto`` resolves to, and one line saying why.

    As many layers as :func:`plan_uncheckpointed_layers` fits in ``training.memory_budget_gib`` (the
    estimate's total, overhead included), or without a budget in the GPU's memory when training on one;
    on the CPU without a budget, none.
    """
    budget, where = config.training.memory_budget_gib, "training.memory_budget_gib"
    if budget is None and _is_gpu(config):
        budget, name = _detect_device_gib()
        where = f"the memory of {name}"
    if budget is None:
        return 0, ("training.uncheckpointed_layers=auto: no GPU and no training.memory_budget_gib, "
                   "so every layer stays checkpointed")
    plan = plan_uncheckpointed_layers(config, budget, image_size, measure="total_gib", **options)
    if not plan["fits"]:
        return 0, (f"training.uncheckpointed_layers=auto: even with every layer checkpointed the estimate "
                   f"(~{plan['estimates'][0]:.1f} GiB) exceeds {where} ({budget:.1f} GiB); none left out")
    count = plan["uncheckpointed_layers"]
    return count, (f"training.uncheckpointed_layers=auto: {count} of {plan['layers']} layers fit {where} "
                   f"({budget:.1f} GiB; estimate ~{plan['estimate_gib']:.1f} GiB)")


def _uncheckpointed(training, layers: int) -> int:
    """``training.uncheckpointed_layers`` checked against the model's layer count."""
    kept = training.uncheckpointed_layers if training.gradient_checkpointing else 0
    if kept > layers:
        raise ValueError(f"training.uncheckpointed_layers={kept}: the language model has {layers} layers")
    return kept


def plan_uncheckpointed_layers(config: RunConfig, budget_gib: float, image_size: tuple[int, int] | None = None,
                               *, measure: str = "peak_allocated_gib", measured_gib: float | None = None,
                               **options) -> dict:
    """The most language-model layers that can skip gradient checkpointing within a memory budget.

    Every layer left out of checkpointing saves one layer's recomputation per step and costs its
    activations; this walks ``training.uncheckpointed_layers`` from 0 up and keeps the largest value whose
    estimate stays within ``budget_gib``.

    Args:
        config: the run configuration; gradient checkpointing is assumed on.
        budget_gib: the memory the step may use.
        measure: which estimate to hold under the budget: ``peak_allocated_gib`` (what
            ``torch.cuda.max_memory_allocated`` reports, e.g. another recipe's measured peak) or
            ``total_gib`` (what the device must have, overhead included).
        measured_gib: the measured peak of this run with every layer checkpointed (e.g. from a first
            run or :func:`.profiling.profile_training_peak`). The plan then adds the estimated cost of each
            uncheckpointed layer to that measurement instead of to the estimate's own base, so the
            estimate's error on everything else does not move the answer.
        options: passed on to :func:`estimate_training_memory` (``text_tokens``, ``keep_logits``...).

    Returns:
        ``{"uncheckpointed_layers", "layers", "estimate_gib", "budget_gib", "fits", "estimates"}``:
        ``fits`` is False when even full checkpointing exceeds the budget (then 0 layers);
        ``estimates`` lists the estimate for every count tried.
    """
    config = copy.deepcopy(config)
    config.training.gradient_checkpointing = True
    config.training.uncheckpointed_layers = 0
    first = estimate_training_memory(config, image_size, **options)
    layers = first["assumptions"]["checkpointed_layers"][1]
    estimates = [first[measure]]
    for kept in range(1, layers + 1):
        config.training.uncheckpointed_layers = kept
        estimates.append(estimate_training_memory(config, image_size, **options)[measure])
    if measured_gib is not None:
        estimates = [gib - estimates[0] + measured_gib for gib in estimates]
    fitting = [kept for kept, gib in enumerate(estimates) if gib <= budget_gib]
    best = max(fitting) if fitting else 0
    return {"uncheckpointed_layers": best, "layers": layers, "estimate_gib": estimates[best],
            "budget_gib": budget_gib, "fits": bool(fitting), "measured_gib": measured_gib,
            "estimates": estimates}


def _reestimate(estimate: dict, **changes) -> dict:
    """The same estimate with dotted configuration keys changed (``{"training.batch_size": 2}``)."""
    config = copy.deepcopy(estimate["inputs"]["config"])
    for key, value in changes.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return estimate_training_memory(config, estimate["inputs"]["image_size"], **estimate["inputs"]["options"])


# -- presentation -------------------------------------------------------------------------------------
def estimate_table(estimate: dict):
    """The estimate as a table: one row per component (GiB, share of the total, what it is), then the total."""

    total = estimate["total_gib"]
    rows = [{"component": name, "GiB": round(gib, 3), "share %": round(100 * gib / total, 1) if total else 0.0,
             "what": _DESCRIPTIONS[name]} for name, gib in estimate["components"].items()]
    rows.append({"component": "total", "GiB": round(total, 3), "share %": 100.0,
                 "what": f"{estimate['model']}, batch {estimate['batch_size']} x {estimate['sequence_tokens']} "
                         f"tokens ({estimate['image_tokens']} image)"})
    table = pd.DataFrame(rows).set_index("component")
    # The label moves from the index to the column axis: an index name renders as a second header
    # row of empty cells, a column-axis name sits in the one header row's corner.
    table.index.name, table.columns.name = None, "component"
    return table


def estimate_figure(estimate: dict, path=None, gpu_gib: float | None = None):
    """A single stacked bar of the components (GiB); saved to ``path`` when given. Returns the figure."""

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    bottom = 0.0
    colors = plt.get_cmap("tab10").colors
    for (name, gib), color in zip(estimate["components"].items(), colors):
        if gib <= 0:
            continue
        ax.bar([0], [gib], bottom=bottom, color=color, width=0.5, label=f"{name} {gib:.2f}")
        bottom += gib
    if gpu_gib:
        ax.axhline(gpu_gib, color="black", linestyle="--", linewidth=1, label=f"GPU {gpu_gib:.0f} GiB")
    ax.set_xticks([0], [estimate["model"].split("/")[-1]])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("GiB")
    ax.set_title(f"training memory estimate: {estimate['total_gib']:.2f} GiB", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def _candidate_changes(estimate: dict) -> list[tuple[str, dict]]:
    """Settings changes from cheapest to dearest (speed first, then quality), as dotted-key dicts.

    Order from the H100 anchor's 2B timings (bench/results/gpu_anchor_2b_h100.jsonl): a smaller batch with gradient accumulation costs ~1.5x per
    sample, gradient checkpointing ~1.6-2x, 4-bit ~2.8x; a smaller pixel budget loses screen detail.
    """
    config = estimate["inputs"]["config"]
    t, m = config.training, config.model
    changes = []
    if t.gradient_checkpointing and t.uncheckpointed_layers:   # a few percent of speed, no quality
        changes.append(("training.uncheckpointed_layers=0", {"training.uncheckpointed_layers": 0}))
    batch = t.batch_size
    while batch > 1:
        batch //= 2
        accumulation = t.gradient_accumulation_steps * (t.batch_size // batch)
        changes.append((f"training.batch_size={batch} with training.gradient_accumulation_steps={accumulation}",
                        {"training.batch_size": batch, "training.gradient_accumulation_steps": accumulation}))
    if not t.gradient_checkpointing:
        changes.append(("training.gradient_checkpointing=true", {"training.gradient_checkpointing": True}))
    if m.use_lora and not (m.load_in_4bit or m.load_in_8bit):
        changes.append(("model.load_in_4bit=true (QLoRA, needs bitsandbytes)", {"model.load_in_4bit": True}))
    spec = estimate["inputs"]["options"]["spec"]
    if spec and spec["image_tokens"]["rule"] == "qwen_smart_resize":
        pixels = estimate["assumptions"]["image"]["resized"]
        budget = pixels[0] * pixels[1]
        for tokens in (1024, 512, 256):
            max_pixels = tokens * 28 * 28
            if max_pixels < budget:
                changes.append((f"model.max_pixels={max_pixels} (~{tokens} image tokens)",
                                {"model.max_pixels": max_pixels}))
    return changes


def suggest_changes(estimate: dict, gpu_gib: float) -> tuple[str, dict, dict] | None:
    """The cheapest settings change that makes the estimate fit ``gpu_gib``: ``(text, changes, estimate)``.

    Single changes are tried from cheapest to dearest, then the same list applied cumulatively. None when
    it already fits or nothing fits.
    """
    if estimate["total_gib"] <= gpu_gib:
        return None
    candidates = _candidate_changes(estimate)
    for text, change in candidates:
        new = _reestimate(estimate, **change)
        if new["total_gib"] <= gpu_gib:
            return text, change, new
    combined, texts = {}, []
    for text, change in candidates:
        if any(key in combined for key in change) and "training.batch_size" in change:
            continue  # halving batches are alternatives; the list's smallest comes first cumulatively
        combined.update(change)
        texts.append(text)
        new = _reestimate(estimate, **combined)
        if new["total_gib"] <= gpu_gib:
            return " and ".join(texts), dict(combined), new
    return None


def _detect_device_gib() -> tuple[float | None, str]:
    try:
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            return props.total_memory / GIB, props.name
    except Exception:  # no usable CUDA: report as no GPU
        pass
    return None, "no GPU"


def fits_message(estimate: dict, gpu_gib: float | None = None) -> str:
    """One line: does the estimate fit ``gpu_gib`` (default: this machine's first GPU), and if not, the
    cheapest settings change that makes it fit (found by re-estimating)."""
    name = None
    if gpu_gib is None:
        gpu_gib, name = _detect_device_gib()
        if gpu_gib is None:
            return (f"No GPU here: training these settings needs ~{estimate['total_gib']:.1f} GiB "
                    f"({'RAM on the CPU' if estimate['assumptions']['device'] == 'cpu' else 'of GPU memory'})"
                    + _length_note(estimate))
    where = f"{gpu_gib:.1f} GiB" + (f" ({name})" if name else "")
    total = estimate["total_gib"]
    if total <= gpu_gib:
        message = f"fits: ~{total:.1f} GiB of {where} ({100 * total / gpu_gib:.0f}%)" + _room_note(estimate, gpu_gib)
    else:
        found = suggest_changes(estimate, gpu_gib)
        if found is None:
            message = (f"won't fit in {where}: needs ~{total:.1f} GiB even with batch 1, gradient checkpointing, "
                       "4-bit and a small pixel budget; use a larger GPU or a smaller model")
        else:
            text, _, new = found
            message = f"won't fit in {where} (needs ~{total:.1f} GiB): try {text} (~{new['total_gib']:.1f} GiB)"
    return message + _length_note(estimate)


def _room_note(estimate: dict, gpu_gib: float) -> str:
    """With gradient checkpointing and memory to spare: how many layers could skip it and still fit."""
    config = estimate["inputs"]["config"]
    if not config.training.gradient_checkpointing:
        return ""
    plan = plan_uncheckpointed_layers(config, gpu_gib, estimate["inputs"]["image_size"], measure="total_gib",
                                      **estimate["inputs"]["options"])
    current = estimate["assumptions"]["checkpointed_layers"]
    if plan["uncheckpointed_layers"] <= current[1] - current[0]:
        return ""
    return (f"; room for training.uncheckpointed_layers={plan['uncheckpointed_layers']} of {plan['layers']} "
            f"(less recomputation, ~{plan['estimate_gib']:.1f} GiB)")


def _length_note(estimate: dict) -> str:
    config = estimate["inputs"]["config"]
    if not estimate["assumptions"]["max_length_exceeded"]:
        return ""
    return (f"; note: {estimate['sequence_tokens']} tokens per sample exceed training.max_length="
            f"{config.training.max_length} (lower model.max_pixels or raise max_length)")


class EstimateView:
    """The memory estimate as a widget: a table and a fits / won't-fit line, refreshed by :meth:`update`.

    Works headless: :attr:`text` holds what is shown, and :attr:`estimate` the last estimate.

    Args:
        config: the run configuration to estimate.
        gpu_gib: GPU memory to compare with; None detects this machine's GPU.
    """

    def __init__(self, config: RunConfig, gpu_gib: float | None = None):
        self.gpu_gib = gpu_gib
        self.estimate: dict | None = None
        self.text = ""
        self.table = w.HTML()
        self.message = w.HTML()
        self.box = w.VBox([w.HTML("<b>Training memory estimate</b>"), self.table, self.message])
        self.update(config)

    def update(self, config: RunConfig) -> None:
        """Recompute for ``config`` (e.g. after the model picker changed); errors are shown, not raised."""

        try:
            self.estimate = estimate_training_memory(config)
        except (ValueError, KeyError) as error:
            self.estimate = None
            self.text = f"{config.model.name}: no estimate ({error})"
            self.table.value = ""
            self.message.value = html.escape(self.text)
            return
        table = estimate_table(self.estimate)
        message = fits_message(self.estimate, self.gpu_gib)
        self.text = f"{table[['GiB', 'share %']].to_string()}\n{message}"
        self.table.value = table.to_html()
        self.message.value = html.escape(message)

    def _ipython_display_(self):
        display(self.box)


def compare_with_measurement(estimate: dict, measured: dict) -> dict:
    """Estimated vs measured peak (allocated bytes, overhead excluded) and the relative error."""
    estimated = estimate["peak_allocated_gib"]
    return {"estimated_gib": estimated, "measured_gib": measured["peak_gib"],
            "error": (estimated - measured["peak_gib"]) / measured["peak_gib"] if measured["peak_gib"] else math.nan}
