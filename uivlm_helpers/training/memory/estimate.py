"""How much device memory training needs, estimated before loading anything, and measured for real.

:func:`estimate_training_memory` adds up what is alive at the step's peak, from the run configuration and
the architecture's published dimensions (:mod:`uivlm_helpers.models.model_configs`; nothing is downloaded):

* **weights** by dtype and quantization (nf4 = 0.5 byte + block constants; 8-bit = 1 byte; what 4/8-bit
  leaves unquantized is upcast to fp32 by ``prepare_model_for_kbit_training``);
* **lora** adapter weights (fp32: peft upcasts bf16/fp16 adapters), **gradients** and the AdamW
  **optimizer** state (two tensors per trainable parameter, in the parameter's dtype);
* **activations**: the tensors autograd saves for the backward pass, counted per token and layer from
  what the transformers / peft code paths really save (see :func:`.components._decoder_layer_bytes`), with gradient
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

:func:`uivlm_helpers.training.profiling.profile_training_peak` measures the real peak of a few training steps on a real batch;
:func:`compare_with_measurement` sets it beside the estimate.

``training.uncheckpointed_layers: auto`` resolves inside the estimate (the most layers that fit the
budget), so the layer plan (:func:`plan_uncheckpointed_layers`, :func:`auto_uncheckpointed_layers`) lives
here beside it; what each item costs is in :mod:`.components`.
"""

from __future__ import annotations

import copy
import math

from ...core.config import RunConfig
from ...models.model_configs import architecture_spec, image_token_count, vision_lora_parameter_count
from .components import (ALLOCATOR_SLACK, CPU_PROCESS_GIB, CUDA_CONTEXT_GIB, DEFAULT_ANSWER_TOKENS,
                         DEFAULT_TEXT_TOKENS, DTYPE_BYTES, GIB, HISTORY_ACTION_TOKENS, HISTORY_IMAGE_WRAPPER_TOKENS,
                         INT8_BYTES, NF4_BYTES, check_history_images, detect_device_gib, encoder_decoder_bytes,
                         fast_path_switches, history_block_tokens, history_pixel_budget, history_window_for,
                         is_gpu, layer_bytes, lora_param_count, lora_targets, pixel_bytes, vision_bytes,
                         weight_dtype)


def history_cost(config: RunConfig, image_size: tuple[int, int] | None = None, *,
                 history_action_tokens: float | None = None, spec: dict | None = None) -> dict:
    """The tokens the episode history adds to each sample (``data.history_window``, ``data.history_images``).

    * text: the window (:func:`.components.history_window_for`: ``auto`` resolves by ``data.source``) times the
      tokens of one earlier action (``history_action_tokens``, e.g. counted with the run's tokenizer by
      :func:`.components.history_action_tokens`; default :data:`.components.HISTORY_ACTION_TOKENS` for
      ``model.action_format``), plus the block's heading and image note
      (:data:`.components.HISTORY_BLOCK_TOKENS`) when the window is not 0 (a step with a full window: the
      longest sample of an episode);
    * images: each earlier screenshot is the screen at the history pixel budget
      (:func:`.components.history_pixel_budget`), counted by the family's own rule
      (:func:`uivlm_helpers.models.model_configs.image_token_count`), plus the tokens around an image
      (:data:`.components.HISTORY_IMAGE_WRAPPER_TOKENS`).

    Returns:
        ``{"window", "action_tokens", "block_tokens", "text_tokens", "images", "pixels", "image",
        "image_tokens", "tokens"}``: ``image`` is one history screenshot's ``{"tokens", "patches", "resized"}`` (None
        without history images), ``image_tokens`` its tokens with the wrapper, ``tokens`` the total per
        sample.

    Raises:
        ValueError: history screenshots for a single-image family (the message names the families that
            take them), or a ``data.history_window`` that is neither ``auto`` nor a whole number >= 0.
    """
    spec = spec or architecture_spec(config.model.name)
    m = config.model
    width, height = image_size or (config.data.image_width, config.data.image_height)
    window = history_window_for(config.data.source, config.data.history_window)
    per_action = (HISTORY_ACTION_TOKENS[m.action_format] if history_action_tokens is None
                  else history_action_tokens)
    images = check_history_images(config, spec)
    pixels = history_pixel_budget(config, spec, (width, height)) if images else None
    image = None
    if images:
        rule = spec["image_tokens"]
        floor = m.min_pixels if m.min_pixels is not None else rule.get("min_pixels")
        image = image_token_count(spec, width, height, min(floor, pixels) if floor and pixels else floor, pixels)
    image_tokens = image["tokens"] + HISTORY_IMAGE_WRAPPER_TOKENS if image else 0
    block = history_block_tokens(images) if window else 0
    text_tokens = window * per_action + block
    return {"window": window, "action_tokens": per_action, "block_tokens": block, "text_tokens": text_tokens,
            "images": images,
            "pixels": pixels, "image": image, "image_tokens": image_tokens,
            "tokens": math.ceil(text_tokens) + images * image_tokens}


def estimate_training_memory(config: RunConfig, image_size: tuple[int, int] | None = None, *,
                             text_tokens: int | None = None, answer_tokens: int | None = None,
                             keep_logits: bool = False, frozen_vision_graph: bool | None = None,
                             padded: bool = True, history_action_tokens: float | None = None,
                             spec: dict | None = None) -> dict:
    """Estimate the peak device memory of one training step with these settings.

    Args:
        config: the run configuration (model, LoRA, quantization, dtype, batch size, checkpointing...).
        image_size: screenshot ``(width, height)``; default ``config.data.image_width/height``.
        text_tokens: text tokens per sample around the image (prompt + answer); default
            :data:`DEFAULT_TEXT_TOKENS`.
        answer_tokens: decoder tokens of encoder-decoder models; default :data:`DEFAULT_ANSWER_TOKENS`.
        keep_logits: the training loop keeps the model output (its logits) alive through ``backward``
            (a hand-written ``out = model(**batch); out.loss.backward()``). ``transformers.Trainer`` and
            :func:`uivlm_helpers.training.profiling.profile_training_peak` drop it, which saves one logits copy.
        frozen_vision_graph: gradients flow into the frozen vision tower, so autograd records it. None
            follows the workbook: with gradient checkpointing ``train.py`` calls
            ``enable_input_require_grads()``, which in transformers 5 also hooks the vision patch
            embedding, so the frozen tower keeps its checkpoints (block inputs) for a backward pass.
        padded: batches of two or more are padded to their longest sample (instructions differ in
            length), so SDPA gets an attention mask and the decoder's k/v are repeated to every query
            head (grouped-query models save them that wide). False: every sample has the same length.
        history_action_tokens: tokens of one earlier action in the prompt (``data.history_window``), e.g.
            counted with the run's tokenizer; default :data:`.components.HISTORY_ACTION_TOKENS`.
        spec: an architecture spec to use instead of looking up ``config.model.name``.

    The episode history (:func:`history_cost`) lengthens every sample: the earlier actions as text and the
    earlier screenshots (``data.history_images``) as image tokens, which also go through the vision tower
    (or come from the feature cache with the current ones).

    Returns:
        ``{"components": {name: GiB}, "total_gib", "peak_allocated_gib", "params", "trainable_params",
        "sequence_tokens", "image_tokens", "history", "assumptions": {...}}``. ``image_tokens`` counts the
        main screenshot; ``history`` is :func:`history_cost`'s answer, its ``tokens`` part of
        ``sequence_tokens``. ``total_gib`` includes the overhead
        (what the device must have); ``peak_allocated_gib`` is what ``torch.cuda.max_memory_allocated``
        reports.

    Raises:
        ValueError: the model is not known offline (see ``model_configs.architecture_spec``); history
            screenshots asked of a single-image family (see :func:`history_cost`).
    """

    spec = spec or architecture_spec(config.model.name)
    if config.training.gradient_checkpointing and config.training.uncheckpointed_layers == "auto":
        config = copy.deepcopy(config)
        config.training.uncheckpointed_layers, _ = auto_uncheckpointed_layers(
            config, image_size, text_tokens=text_tokens, answer_tokens=answer_tokens, keep_logits=keep_logits,
            frozen_vision_graph=frozen_vision_graph, padded=padded, history_action_tokens=history_action_tokens,
            spec=spec)
    m, t = config.model, config.training
    width, height = image_size or (config.data.image_width, config.data.image_height)
    batch = t.batch_size
    gpu = is_gpu(config)
    params = spec["params"]
    text = spec["text"]
    quantized = "4bit" if m.load_in_4bit else "8bit" if m.load_in_8bit else None
    dtype = weight_dtype(config, spec)
    weight_bytes = DTYPE_BYTES[dtype]
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
    history = history_cost(config, (width, height), history_action_tokens=history_action_tokens, spec=spec)
    text_tokens = DEFAULT_TEXT_TOKENS if text_tokens is None else text_tokens
    encoder_decoder = spec["architecture"] == "encoder_decoder"
    seq = image["tokens"] + text_tokens + history["tokens"]
    dec = (DEFAULT_ANSWER_TOKENS if answer_tokens is None else answer_tokens) if encoder_decoder else 0
    tokens = batch * seq
    # Every screenshot of a sample goes through the tower: the main one and the history's.
    history_patches = history["images"] * history["image"]["patches"] if history["images"] else 0
    history_image_tokens = history["images"] * history["image"]["tokens"] if history["images"] else 0
    patches = batch * (image["patches"] + history_patches)
    image_tokens_all = batch * (image["tokens"] + history_image_tokens)

    # Parameters.
    # The tower trains unless frozen: with LoRA through adapters on its linear layers (the wrapper's
    # lora_on_vision), without LoRA fully.
    vision_frozen = m.freeze_vision_encoder
    if m.use_lora:
        targets = lora_targets(config, spec)
        trainable = lora_param_count(spec, targets, m.lora_config.r)
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
    cache_features, fused_loss = fast_path_switches(config, spec, gpu)

    # Activations.
    checkpointing = t.gradient_checkpointing
    vision_graph = (not vision_frozen) or (checkpointing if frozen_vision_graph is None else frozen_vision_graph)
    vision_graph = vision_graph and not cache_features
    vision = vision_bytes(spec, patches, image_tokens_all, act, graph=vision_graph,
                           checkpointing=checkpointing, trainable=not vision_frozen)
    if cache_features:   # the batch carries the tower's output (image tokens x hidden) instead of pixels
        # (with DeepStack, Qwen3-VL, also each level's features: one more hidden-wide row per level)
        widths = 1 + len(spec["vision"].get("deepstack_visual_indexes") or [])
        inputs = image_tokens_all * text["hidden_size"] * widths * act + 64 * tokens
    else:   # pixels (the main screenshot's and the history's); ids, masks, positions
        history_pixels = history["images"] * pixel_bytes(spec, history["image"]["patches"]) if history["images"] else 0
        inputs = (pixel_bytes(spec, image["patches"]) + history_pixels) * batch + 64 * tokens
    h = text["hidden_size"]
    if encoder_decoder:
        per_sample = encoder_decoder_bytes(text, act=act, lora_in=lora_in, mask=mask, targets=targets,
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
        layer = layer_bytes(spec, act=act, norm=act if fused_loss else norm, lora_in=lora_in, mask=mask,
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
        "history": history,
        "batch_size": batch,
        "assumptions": {
            "device": "cuda" if gpu else "cpu",
            "weights": f"{quantized or dtype}" + (" (rest fp32 after prepare_model_for_kbit_training)"
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
            "history": (f"{history['window']} earlier actions x {history['action_tokens']:g} tokens + "
                        f"{history['images']} screenshots x {history['image_tokens']} tokens"
                        + (f" at {history['pixels']:,} px" if history["images"] and history["pixels"] else "")),
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
                               "padded": padded, "history_action_tokens": history_action_tokens,
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
    if budget is None and is_gpu(config):
        budget, name = detect_device_gib()
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
            run or :func:`uivlm_helpers.training.profiling.profile_training_peak`). The plan then adds the estimated cost of each
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


def compare_with_measurement(estimate: dict, measured: dict) -> dict:
    """Estimated vs measured peak (allocated bytes, overhead excluded) and the relative error."""
    estimated = estimate["peak_allocated_gib"]
    return {"estimated_gib": estimated, "measured_gib": measured["peak_gib"],
            "error": (estimated - measured["peak_gib"]) / measured["peak_gib"] if measured["peak_gib"] else math.nan}

