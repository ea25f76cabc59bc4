"""The fast path measured: the self-check (:func:`check_exact`, the plain and the cached forward's loss on one
batch) and the notebook's report (:func:`fast_path_report`: cache size, step time and peak memory of both
paths)."""

from __future__ import annotations

import inspect
import time

import pandas as pd
import torch

from ...core.images import as_image
from ...models.wrapper import VLMWrapper
from ..collate import UICollator
from ..profiling import profile_training_peak
from .collate import CachedFeaturesCollator, install_feature_hook
from .store import FeatureCache, describe_cache
from .tower import hf_model, vision_device_dtype


def _answer_loss(model, batch: dict) -> torch.Tensor:
    """The model's loss on a batch; where the forward takes ``logits_to_keep``, only the logits that
    predict answer tokens are computed (not the whole sequence x vocabulary: 2.4 GiB on Qwen2-VL-2B)."""
    hf = hf_model(model)
    labels = batch.get("labels")
    if labels is None or getattr(hf.config, "is_encoder_decoder", False) \
            or "logits_to_keep" not in inspect.signature(hf.forward).parameters:
        return model(**batch).loss
    shifted = labels[:, 1:]                                   # logits at p predict the token at p + 1
    positions = (shifted != -100).any(dim=0).nonzero().flatten()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, logits_to_keep=positions.to(labels.device)).logits.float()
    targets = shifted[:, positions].to(logits.device)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=-100)


def check_exact(wrapper: VLMWrapper, plain_batch: dict, cached_batch: dict) -> dict:
    """The loss of one batch through the plain forward and through the cached one, without gradients.

    Both forwards run in the model's training mode from the same random state (so LoRA dropout draws
    the same masks; the global random state is restored afterwards): what training computes, and no
    eval-mode switch (which repacks bitsandbytes' 4-bit CPU weights for inference only). Only the
    logits of answer tokens are computed where the model allows it.

    Returns ``{"plain", "cached", "abs_diff", "rel_diff", "tolerance", "ok"}``; the tolerance is 1e-4
    relative for fp32 models and 5e-3 for half precision (different batch shapes round differently).
    """
    model = wrapper.model
    device = next(model.parameters()).device
    move = lambda b: {k: (v.to(device) if hasattr(v, "to") else v) for k, v in b.items()}  # noqa: E731
    was_training = model.training
    model.train()
    losses = []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            for batch in (plain_batch, cached_batch):
                torch.manual_seed(0)
                losses.append(float(_answer_loss(model, move(batch))))
    finally:
        model.train(was_training)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    plain, cached = losses
    _, dtype = vision_device_dtype(wrapper)
    tolerance = 1e-4 if dtype == torch.float32 else 5e-3
    diff = abs(plain - cached)
    rel = diff / max(abs(plain), 1e-12)
    return {"plain": plain, "cached": cached, "abs_diff": diff, "rel_diff": rel, "tolerance": tolerance,
            "ok": rel <= tolerance}


def _median_step_s(model, batch: dict, steps: int) -> float:
    """Median seconds of a training step (forward, backward, AdamW with lr=0) after one warm-up step."""
    device = next(model.parameters()).device
    batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in batch.items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)
    was_training = model.training
    model.train()
    times = []
    try:
        for _ in range(steps + 1):
            start = time.perf_counter()
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    times = sorted(times[1:])
    return times[len(times) // 2]


def compare_paths(wrapper: VLMWrapper, records, cache: FeatureCache | None = None, steps: int = 3,
                  max_length: int | None = None) -> dict:
    """Time a few training steps on one batch, plain vs cached, and measure each step's peak memory.

    Step time = the collator's time for the batch + the median of ``steps`` training steps (forward,
    backward, AdamW with lr=0: the weights do not move) after a warm-up step. Peak memory from
    :func:`~uivlm_helpers.training.memory.profile_training_peak` (CUDA: ``max_memory_allocated``; CPU: live tensors).

    Returns:
        ``{"plain": {...}, "cached": {...}, "speedup", "same_loss", "batch_size"}``, each path with
        ``step_s``, ``collate_s``, ``model_step_s``, ``samples_per_s``, ``tokens_per_s``, ``peak_mib`` and
        ``loss``.
    """

    if cache is None:
        raise ValueError("compare_paths needs the FeatureCache (build_cache, or FeatureCache(summary['fast_path']"
                         "['cache_dir']) after training)")
    install_feature_hook(wrapper.model)
    plain_collator = UICollator(wrapper, max_length)
    cached_collator = CachedFeaturesCollator(wrapper, cache, max_length)
    plain_batch = plain_collator(records)
    images = [as_image(r["image"]) for r in records]
    cached_batch = cached_collator.finish(dict(plain_batch), images)
    check = check_exact(wrapper, plain_batch, cached_batch)
    tokens = int(plain_batch["attention_mask"].sum())
    out = {}
    for name, batch, collator in (("plain", plain_batch, plain_collator), ("cached", cached_batch, cached_collator)):
        collate = []
        for _ in range(3):
            start = time.perf_counter()
            collator(records)
            collate.append(time.perf_counter() - start)
        collate_s = sorted(collate)[1]
        model_s = _median_step_s(wrapper.model, batch, steps)
        peak = profile_training_peak(wrapper, batch, steps=1)
        step = model_s + collate_s
        out[name] = {"step_s": round(step, 4), "model_step_s": round(model_s, 4), "collate_s": round(collate_s, 4),
                     "samples_per_s": round(len(records) / step, 2), "tokens_per_s": round(tokens / step, 1),
                     "peak_mib": round(peak["peak_gib"] * 1024, 1), "loss": check[name]}
    out["speedup"] = round(out["plain"]["step_s"] / out["cached"]["step_s"], 2)
    out["same_loss"] = check["ok"]
    out["batch_size"] = len(records)
    return out


def fast_path_report(wrapper: VLMWrapper, records, run_dir, cache_dir=None, steps: int = 3):
    """The notebook's view of the fast path: the cache (size on disk) and the measured speed-up.

    Prints one line (screenshots cached, MiB on disk, build time, speed-up on one batch) and returns a
    two-row table (plain, cached): seconds per step (collate + forward/backward/AdamW), samples/s,
    tokens/s, peak memory of the step (MiB) and the loss (the same on both). None when the run has no
    cache (``training.cache_vision_features`` off).

    Args:
        records: one batch of training records (e.g. the first ``batch_size``).
        run_dir: the run folder (or its :class:`~uivlm_helpers.core.paths.RunPaths`).
        cache_dir: ``training.feature_cache_dir`` when the run set one.
    """

    info = describe_cache(cache_dir or run_dir)
    if not info["images"]:
        print("no vision-feature cache in this run (training.cache_vision_features was off)")
        return None
    result = compare_paths(wrapper, list(records), FeatureCache(info["folder"]), steps=steps)
    table = pd.DataFrame({k: result[k] for k in ("plain", "cached")}).T
    table.columns.name = "path"  # in the header's corner; an index name would add a row of empty cells
    print(f"vision-feature cache: {info['images']} screenshots, {info['size_mib']:.2f} MiB on disk "
          f"({info['mib_per_image']:.3f} MiB each), built in {info['build_s']:.1f} s; one batch of "
          f"{result['batch_size']}: {result['speedup']:.2f}x faster with the cache "
          f"(same loss: {result['same_loss']})")
    table.attrs.update(speedup=result["speedup"], cache=info)
    return table
