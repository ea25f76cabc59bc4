"""Measured training memory: the real peak of a few training steps on a real batch.

The estimate (:mod:`.memory`) is checked against these measurements (``tests/test_memory.py``,
``bench/bench_memory.py``), and the fast path's self-check (:mod:`.features`) measures both paths with them.
"""

from __future__ import annotations

import gc
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

GIB = 2 ** 30


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0: ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _storage_tracker(known_storages):
    """A TorchDispatchMode that counts the bytes of live tensor storages created by torch ops.

    Every op of the forward, the backward (autograd runs it on this thread on CPU, and the checkpoint
    recomputation too) and the optimizer passes through ``__torch_dispatch__``; each new output storage is
    counted once, and a ``weakref.finalize`` on it (storage Python objects live exactly as long as the
    storage itself) subtracts it when freed. Storages that existed before (weights, the batch) are not
    counted. This is the CPU analogue of ``torch.cuda.max_memory_allocated``: exact for tensors, blind
    to temporaries inside a single kernel.
    """
    class StoragePeak(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.seen = weakref.WeakSet(known_storages)
            self.bytes = 0
            self.peak = 0

        def _freed(self, nbytes):
            self.bytes -= nbytes

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for value in tree_leaves(out):
                if isinstance(value, torch.Tensor):
                    try:
                        storage = value.untyped_storage()
                    except (RuntimeError, NotImplementedError):  # tensors without storage
                        continue
                    if storage not in self.seen:
                        self.seen.add(storage)
                        nbytes = storage.nbytes()
                        self.bytes += nbytes
                        weakref.finalize(storage, self._freed, nbytes)
            self.peak = max(self.peak, self.bytes)
            return out

    return StoragePeak()


def profile_training_peak(wrapper, batch, steps: int = 3, lr: float = 0.0) -> dict:
    """Measure the peak memory of ``steps`` real training steps (forward, backward, AdamW step) on a batch.

    The loop is the Trainer's: ``loss = model(**batch).loss; loss.backward(); optimizer.step();
    optimizer.zero_grad(set_to_none=True)``, so the model output is dropped before ``backward`` (compare
    with ``estimate_training_memory(..., keep_logits=False)``, the default). With the default ``lr=0`` AdamW
    allocates and updates its state but leaves the weights unchanged.

    How the peak is measured (weights, batch, gradients, optimizer state and activations included):

    * CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
    * CPU: torch keeps no allocator statistics there. ``peak_gib`` counts live tensor storages exactly
      (see :func:`_storage_tracker`) plus the weights and the batch. For reference ``rss_peak_gib`` is the
      process's peak resident set during the steps (``VmHWM`` from ``/proc/self/status``, reset through
      ``/proc/self/clear_refs``) minus the resident set before them, plus weights and batch: it also counts
      what the C allocator keeps after ``free`` (30-60% more than the tensors on the tiny model).
      ``tracemalloc`` would see none of torch's allocations.

    Args:
        wrapper: a :class:`~uivlm_helpers.wrapper.VLMWrapper` (or a bare model).
        batch: model inputs with ``labels``, e.g. ``wrapper.encode(images, instructions, targets)``.
        steps: training steps to run.
        lr: AdamW learning rate.

    Returns:
        ``{"device", "peak_gib", "peak_bytes", "step_s", "steps", "method", ...}``; CUDA adds
        ``peak_reserved_gib``; CPU adds ``rss_peak_gib`` and ``rss_reliable`` (False when the peak mark
        could not be reset, e.g. outside Linux).
    """
    model = getattr(wrapper, "model", wrapper)
    device = next(model.parameters()).device
    batch = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in dict(batch).items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("profile_training_peak: the model has no trainable parameters")
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    resident = list(model.parameters()) + list(model.buffers()) + [v for v in batch.values()
                                                                    if isinstance(v, torch.Tensor)]
    storages = {id(s): s for s in (t.untyped_storage() for t in resident)}
    resident_bytes = sum(s.nbytes() for s in storages.values())
    was_training = model.training
    model.train()
    gc.collect()
    cuda = device.type == "cuda"
    result = {"device": device.type, "steps": steps, "resident_gib": resident_bytes / GIB}
    tracker = None
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        result["method"] = "torch.cuda.max_memory_allocated"
    else:
        rss_before = _proc_status_kib("VmRSS")
        reset = _reset_peak_rss()
        tracker = _storage_tracker(list(storages.values()))
        result["method"] = "live tensor storages (TorchDispatchMode) + weights and batch"
    times = []
    try:
        if tracker is not None:
            tracker.__enter__()
        for _ in range(steps):
            start = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            del loss
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    finally:
        if tracker is not None:
            tracker.__exit__(None, None, None)
        model.train(was_training)
    times.sort()
    result["step_s"] = times[len(times) // 2] if times else None
    if cuda:
        peak = torch.cuda.max_memory_allocated(device)
        result["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
    else:
        peak = resident_bytes + tracker.peak
        hwm = _proc_status_kib("VmHWM")
        delta = max(0, (hwm or 0) - (rss_before or 0)) * 1024
        result.update({"rss_peak_gib": (resident_bytes + delta) / GIB,
                       "rss_reliable": bool(reset and hwm is not None and rss_before is not None)})
    del optimizer
    gc.collect()
    result.update({"peak_bytes": int(peak), "peak_gib": peak / GIB})
    return result
