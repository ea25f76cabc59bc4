"""The switch ``build_trainer`` calls: apply both fast-path settings before training and hand back the
collator to train with."""

from __future__ import annotations

import os

import torch

from ...core.images import as_image
from ...models.wrapper import VLMWrapper
from .collate import CachedFeaturesCollator, install_feature_hook, remove_feature_hook
from .decide import FastPathError, apply_fused_ce, decide_cache, decide_fused_ce, switch
from .report import check_exact
from .store import build_cache, cache_root, describe_cache


def prepare_fast_path(config, wrapper: VLMWrapper, train_records, run_dir, collator):
    """Apply ``training.fused_cross_entropy`` and ``training.cache_vision_features`` before training.

    Returns ``(collator, info)``: the collator to train with (``collator`` itself, or a
    :class:`CachedFeaturesCollator` over a freshly built or completed cache) and what was decided and why.
    Prints one line per switch that ``auto`` turned off.
    """
    t = config.training
    info = {}
    fused = decide_fused_ce(t.fused_cross_entropy, wrapper)
    if fused.enabled:
        apply_fused_ce(wrapper)
    elif switch(t.fused_cross_entropy) == "auto":
        print(f"fused_cross_entropy auto -> off: {fused.reason}")
    info["fused_cross_entropy"], info["fused_reason"] = fused.enabled, fused.reason
    cache_decision = decide_cache(t.cache_vision_features, wrapper,
                                  augments_images=bool(getattr(train_records, "augments_images", False)))
    info["cache_vision_features"], info["cache_reason"] = cache_decision.enabled, cache_decision.reason
    if not cache_decision.enabled:
        if switch(t.cache_vision_features) == "auto":
            print(f"cache_vision_features auto -> off: {cache_decision.reason}")
        return collator, info
    root = cache_root(run_dir, getattr(t, "feature_cache_dir", None))
    # Several training processes (DDP) share the cache: build_cache locks it, the first builds, the
    # others find it complete. Only the first process shows a progress bar.
    cache = build_cache(wrapper, train_records, root, mixed_precision=t.mixed_precision,
                        progress=int(os.environ.get("RANK", "0")) == 0)
    install_feature_hook(wrapper.model)
    cached_collator = CachedFeaturesCollator(wrapper, cache, t.max_length, t.mixed_precision)
    sample = [train_records[i] for i in range(min(1, len(train_records)))]
    check = None
    if sample:
        plain_batch = collator(sample)
        images = [as_image(r["image"]) for r in sample]
        cached_batch = cached_collator.finish(dict(plain_batch), images)
        text_only = cached_collator._text_only_batch(sample) if cached_collator.text_only else None
        if text_only is not None:
            differs = [k for k in ("input_ids", "attention_mask", "labels", "position_ids")
                       if k in cached_batch and not torch.equal(text_only.get(k), cached_batch[k])]
            if differs:  # never train on a layout that is not the processor's own
                print(f"vision-feature cache: batches without pixels differ from the processor's in {differs}; "
                      "decoding screenshots in the collator instead")
                cached_collator.text_only = False
            else:
                cached_batch = text_only
        info["text_only_batches"] = cached_collator.text_only and text_only is not None
        check = check_exact(wrapper, plain_batch, cached_batch)
    info.update(cache_dir=str(cache.folder), cache=describe_cache(cache), self_check=check)
    if check is not None and not check["ok"]:
        remove_feature_hook(wrapper.model)
        message = (f"cached features give loss {check['cached']:.6f} where the plain forward gives "
                   f"{check['plain']:.6f} (relative difference {check['rel_diff']:.1e} > {check['tolerance']:.0e})")
        if switch(t.cache_vision_features) == "true":
            raise FastPathError(f"training.cache_vision_features=true: {message}")
        print(f"cache_vision_features auto -> off: {message}")
        info["cache_vision_features"], info["cache_reason"] = False, message
        return collator, info
    report = cache.build_report
    print(f"vision features cached in {cache.folder} ({report['computed']} computed, {report['reused']} reused, "
          f"{cache.bytes_on_disk() / 2 ** 20:.1f} MiB; self-check: loss {check['plain']:.6f} plain vs "
          f"{check['cached']:.6f} cached)" if check else f"vision features cached in {cache.folder}")
    return cached_collator, info
