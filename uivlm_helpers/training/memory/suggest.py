"""Which settings change makes a training memory estimate fit a device: the cheapest first, found by
re-estimating with each candidate (a smaller batch with more accumulation, checkpointing, 4-bit, fewer
pixels, smaller or no history screenshots), alone and then together."""

from __future__ import annotations

import copy

from .estimate import estimate_training_memory


def reestimate(estimate: dict, **changes) -> dict:
    """The same estimate with dotted configuration keys changed (``{"training.batch_size": 2}``), the same
    screenshot size and options."""
    config = copy.deepcopy(estimate["inputs"]["config"])
    for key, value in changes.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return estimate_training_memory(config, estimate["inputs"]["image_size"], **estimate["inputs"]["options"])


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
    # Earlier screenshots: fewer pixels each, then none (the earlier actions stay in the prompt as text).
    history = estimate.get("history") or {}
    if history.get("images"):
        pixels = history.get("pixels")
        if pixels and spec["image_tokens"]["rule"] == "qwen_smart_resize":
            factor = spec["vision"]["patch_size"] * spec["vision"]["spatial_merge_size"]
            if pixels > 256 * factor * factor:
                changes.append((f"model.history_max_pixels={256 * factor * factor} (~256 tokens per earlier "
                                "screenshot)", {"model.history_max_pixels": 256 * factor * factor}))
        changes.append(("data.history_images=0 (earlier actions stay as text)", {"data.history_images": 0}))
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
        new = reestimate(estimate, **change)
        if new["total_gib"] <= gpu_gib:
            return text, change, new
    combined, texts = {}, []
    for text, change in candidates:
        if any(key in combined for key in change) and "training.batch_size" in change:
            continue  # halving batches are alternatives; the list's smallest comes first cumulatively
        combined.update(change)
        texts.append(text)
        new = reestimate(estimate, **combined)
        if new["total_gib"] <= gpu_gib:
            return " and ".join(texts), dict(combined), new
    return None

