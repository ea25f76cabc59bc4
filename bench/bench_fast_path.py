"""Plain vs fast training path (cached vision features) in the same run, on this machine.

    .venv/bin/python -m bench.bench_fast_path                  # tiny Qwen2-VL on CPU, two screen sizes
    .venv/bin/python -m bench.bench_fast_path --steps 20 --batch-size 8
    python3 -m bench.bench_fast_path --device cuda             # full-size Qwen2-VL-2B and 7B, 1288x728, batch 4 and 8

On a GPU (``--device cuda``) see :func:`run_full_size`: full-size models with random bf16 weights, the
plain recipe (LoRA on every language-model projection, gradient checkpointing, fast path off) against the
same recipe with the fast path (cached features, then cached features + liger's fused cross-entropy),
and the same pairs without checkpointing for 2B.

For each setting the same records train twice through the workbook's own path
(``VLMWrapper.from_config`` + ``train.train``, i.e. ``build_trainer`` and ``transformers.Trainer``), once with
``training.cache_vision_features=false`` and once with ``true``:

* **Trainer**: samples/s and tokens/s over ``--steps`` steps (``train_runtime``; the cache is built before
  and timed on its own), and whether both runs logged the same losses;
* **one batch**: the collator's time plus the median forward + backward + AdamW step, and the step's peak
  memory (:func:`uivlm_helpers.training.profiling.profile_training_peak`: live tensor storages + weights and batch), via
  :func:`uivlm_helpers.training.features.compare_paths`;
* **cache**: build time, size on disk, MiB per screenshot.

Writes ``bench/results/bench_fast_path.json`` (machine and versions included). The fused cross-entropy
(liger-kernel) needs a CUDA GPU and is not measured here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.common import RESULTS_DIR, Results, print_table

# (name, screenshot size, model.max_pixels): the tiny model's own budget (224x224 = 64 image tokens),
# and a 4x larger budget (448x448 = 256 image tokens).
SETTINGS = [("224x224, default budget", (224, 224), None), ("448x448, max_pixels 448^2", (448, 448), 448 * 448)]


def _config(cache: str, batch: int, steps: int, max_pixels):
    from uivlm_helpers.core.config import load_config

    return load_config({"model": {"max_pixels": max_pixels},
                        "training": {"batch_size": batch, "max_steps": steps, "logging_steps": 1,
                                     "checkpoint_interval": 10_000, "cache_vision_features": cache,
                                     "fused_cross_entropy": "false"},
                        "algorithm": {"learning_rate": 1e-3}})


def run_setting(name, size, max_pixels, args, folder: Path) -> dict:
    import torch

    from bench.common import synthetic_records
    from uivlm_helpers.models.wrapper import VLMWrapper
    from uivlm_helpers.training import features
    from uivlm_helpers.training.collate import UICollator
    from uivlm_helpers.training.train import train

    records = synthetic_records(args.batch_size * args.steps, folder / "screens", size=size, seed=1)
    row = {"setting": name, "batch": args.batch_size, "steps": args.steps}
    runs = {}
    for mode in ("false", "true"):
        config = _config(mode, args.batch_size, args.steps, max_pixels)
        wrapper = VLMWrapper.from_config(config)
        if mode == "false":
            sample = UICollator(wrapper)(records[:args.batch_size])
            row["tokens_per_sample"] = round(float(sample["attention_mask"].sum()) / args.batch_size, 1)
            row["image_tokens_per_sample"] = int(
                (sample["input_ids"] == features.image_token_id(wrapper.model)).sum()) // args.batch_size
        start = time.perf_counter()
        summary = train(config, wrapper, records, folder / f"run-{mode}-{size[0]}")
        total = time.perf_counter() - start
        runs[mode] = summary
        samples = summary["global_step"] * args.batch_size
        prefix = "plain" if mode == "false" else "cached"
        row[f"{prefix}_samples_per_s"] = samples / summary["runtime_s"]
        row[f"{prefix}_tokens_per_s"] = samples * row["tokens_per_sample"] / summary["runtime_s"]
        row[f"{prefix}_train_s"] = summary["runtime_s"]
        row[f"{prefix}_total_s"] = total
        if mode == "true":
            cache_info = summary["fast_path"]["cache"]
            row.update(cache_build_s=cache_info["build_s"], cache_mib=cache_info["size_mib"],
                       cache_mib_per_image=cache_info["mib_per_image"], cache_images=cache_info["images"])
            cache = features.FeatureCache(summary["fast_path"]["cache_dir"])
            batch_records = records[:args.batch_size]
            compared = features.compare_paths(wrapper, batch_records, cache, steps=args.profile_steps)
            for path in ("plain", "cached"):
                for key in ("step_s", "collate_s", "model_step_s", "peak_mib"):
                    row[f"{path}_batch_{key}"] = compared[path][key]
            row["batch_speedup"] = compared["speedup"]
        del wrapper
    row["speedup"] = row["cached_samples_per_s"] / row["plain_samples_per_s"]
    row["same_losses"] = all(abs(a - b) <= 1e-6 * max(1.0, abs(a))
                             for a, b in zip(runs["false"]["losses"], runs["true"]["losses"]))
    return row


# Full-size runs: (name, settings, label). Everything is LoRA on all seven language-model projections
# with the vision tower frozen; "plain" is the fast path off. liger patches the model *class* for the
# whole process, so every run that may use it ("fused") comes after all the others, of both models.
def _switches(checkpointing: bool, cache: bool, fused: bool) -> dict:
    on_off = lambda flag: "true" if flag else "false"  # noqa: E731
    return {"training__gradient_checkpointing": checkpointing, "training__cache_vision_features": on_off(cache),
            "training__fused_cross_entropy": on_off(fused)}


FULL_SIZE_RUNS = {name: (_switches(*flags), label) for name, flags, label in [
    ("plain_ckpt", (True, False, False), "plain recipe (ckpt on, fast path off)"),
    ("cache_ckpt", (True, True, False), "ckpt on, cached features"),
    ("plain", (False, False, False), "ckpt off, fast path off"),
    ("cache", (False, True, False), "ckpt off, cached features"),
    ("cache_partial", (True, True, False), "partial ckpt, cached features"),
    ("fused_ckpt", (True, True, True), "ckpt on, cached features + fused CE"),
    ("fused_partial", (True, True, True), "partial ckpt, cached features + fused CE"),
    ("fused", (False, True, True), "ckpt off, cached features + fused CE")]}
UNFUSED_RUNS = ("plain_ckpt", "cache_ckpt", "cache_partial", "plain", "cache")
FUSED_RUNS = ("fused_ckpt", "fused_partial", "fused")
# Which runs each model gets by default (7B without checkpointing is left out: device time).
DEFAULT_RUNS = {"2b": ("plain_ckpt", "cache_ckpt", "plain", "fused_ckpt", "fused"),
                "7b": ("plain_ckpt", "cache_ckpt", "fused_ckpt", "fused_partial")}
# A partial run leaves the last N language-model layers unchecked (training.uncheckpointed_layers). N is
# planned (memory.plan_uncheckpointed_layers) so that the run's peak stays within the plain recipe's
# measured peak: the estimated cost of each layer is added to the measured peak of the same run with
# every layer checkpointed (the "*_ckpt" run, which must come first).
PARTIAL_BASE = {"cache_partial": "cache_ckpt", "fused_partial": "fused_ckpt"}


def plan_partial(config, by_run: dict, base_run: str, batch: int, offset: int = 0) -> dict:
    """N for a partial run from the measured peaks of the plain recipe and of ``base_run``."""
    from uivlm_helpers.training import memory

    plain, base = by_run.get("plain_ckpt"), by_run.get(base_run)
    if not (plain and base and plain.get("peak_gib") and base.get("peak_gib")):
        raise RuntimeError(f"planning needs measured peaks of plain_ckpt and {base_run} first")
    image_tokens = memory.estimate_training_memory(config)["image_tokens"]
    text_tokens = round(base["tokens_per_batch"] / batch) - image_tokens
    plan = memory.plan_uncheckpointed_layers(config, plain["peak_gib"], text_tokens=text_tokens,
                                             measured_gib=base["peak_gib"])
    kept = max(0, plan["uncheckpointed_layers"] + offset)
    plan.update(uncheckpointed_layers=kept, estimate_gib=plan["estimates"][kept], offset=offset)
    return plan


def _weights_gib(model) -> float:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())) / 2 ** 30


def run_full_size(args) -> dict:
    """Full-size Qwen2-VL (random bf16 weights, sdpa) on a GPU, through ``build_trainer`` and the Trainer.

    Each step is timed end to end (data loading and collation included, ``--workers`` dataloader workers
    on both paths); peak memory is ``max_memory_allocated`` during ``trainer.train()`` (the cache build
    before it is reported apart: ``build_peak_gib``), less the other model's weights (``peak_own_gib``).
    """
    import torch

    from bench import common
    from bench_throughput import workbook_run

    names = {"2b": common.QWEN_2B, "7b": common.QWEN_7B}
    models = [m.strip() for m in args.models.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    screen = tuple(int(v) for v in args.screen.split("x")) if args.screen else common.SCREEN
    gpu = args.device.startswith("cuda")
    dtype, precision = ("bfloat16", "bf16") if gpu else ("float32", "no")
    layers = {"text_layers": args.shrink, "vision_depth": args.shrink} if args.shrink else {}
    results = Results(args.out, "bench_fast_path", " ".join(["python3 -m bench.bench_fast_path", *args.argv]),
                      device=args.device, screen=list(screen), warmup_steps=args.warmup, steps=args.steps,
                      workers=args.workers, shrink=args.shrink)
    with tempfile.TemporaryDirectory() as tmp:
        records = common.synthetic_records(max(batches) * (args.warmup + args.steps), tmp, size=screen, seed=1)
        processor = common.bench_processor()
        bases = {}
        for model in models:
            bases[model] = common.build_full_model(names[model], processor, device=args.device, dtype=dtype, **layers)
            print(f"built {names[model]} in {bases[model]._bench_build_s:.1f} s", flush=True)
        wrapper_cls = common.full_size_wrapper_class(processor, {})
        wanted = {m: args.runs.split(",") if args.runs else DEFAULT_RUNS[m] for m in models}
        order = [(m, b, r, o) for phase in (UNFUSED_RUNS, FUSED_RUNS) for m in models for b in batches
                 for r in phase if r in wanted[m] for o in (args.partial_offsets if r in PARTIAL_BASE else [0])]
        done = {}
        for model, batch, run, offset in order:
            settings, label = FULL_SIZE_RUNS[run]
            config = common.run_config(names[model], args.device, dtype, training__batch_size=batch,
                                       training__mixed_precision=precision,
                                       training__dataloader_num_workers=args.workers, **settings)
            config.data.image_width, config.data.image_height = screen
            wrapper_cls.models = {"bf16": bases[model]}
            plan, name = None, run if not offset else f"{run}{offset:+d}"
            try:
                if run in PARTIAL_BASE:
                    if args.uncheckpointed is not None:
                        plan = {"uncheckpointed_layers": args.uncheckpointed + offset, "planned": False}
                    else:
                        plan = plan_partial(config, done.get((model, batch), {}), PARTIAL_BASE[run], batch, offset)
                    config.training.uncheckpointed_layers = plan["uncheckpointed_layers"]
                    label = f"{label} ({plan['uncheckpointed_layers']} layers unchecked)"
                row, _ = workbook_run(config, wrapper_cls, records, args.warmup, args.steps, label, args.device)
            except Exception as error:  # noqa: BLE001 - record and go on (e.g. out of memory)
                row = {"trainer": label, "error": f"{type(error).__name__}: {str(error)[:300]}"}
                common.free_memory()
            if plan is not None:
                row.update(uncheckpointed_layers=plan["uncheckpointed_layers"], plan=plan)
            done.setdefault((model, batch), {})[name] = row
            # Both models stay on the GPU (liger's class patch forces this run order), so the other one's
            # weights sit inside max_memory_allocated: recorded, and taken out in peak_own_gib.
            other = sum(_weights_gib(bases[m]) for m in bases if m != model)
            row.update(model=common.SHORT[names[model]], run=name, batch=batch, other_models_gib=other,
                       peak_own_gib=row["peak_gib"] - other if row.get("peak_gib") is not None else None)
            results.add(row)
            print(f"{row['model']} b{batch} {label}: {common.fmt(row.get('tokens_per_s'), 0)} tokens/s, "
                  f"peak {common.fmt(row.get('peak_gib'))} GiB {row.get('error', '')}", flush=True)
    rows = results.data["rows"]
    by = {(r["model"], r["batch"], r["run"]): r for r in rows if r.get("tokens_per_s")}
    speedups = []
    for (model, batch, run), row in by.items():
        base_run = "plain" if run in ("plain", "cache", "fused") else "plain_ckpt"   # partial runs: plain_ckpt
        base = by.get((model, batch, base_run))
        if base and run != base_run:
            speedups.append({"model": model, "batch": batch, "run": run, "over": base_run,
                             "speedup": row["tokens_per_s"] / base["tokens_per_s"],
                             "peak_gib": row["peak_own_gib"], "plain_peak_gib": base["peak_own_gib"],
                             "peak_no_higher": (row["peak_gib"] <= base["peak_gib"]
                                                if row["peak_gib"] is not None and base["peak_gib"] is not None
                                                else None)})
    results.data["speedups"] = speedups
    results.save()
    print_table(rows, [("model", "model"), ("batch", "batch"), ("trainer", "run"), ("step_s_median", "step s"),
                       ("samples_per_s", "samples/s"), ("tokens_per_s", "tokens/s"), ("peak_own_gib", "peak GiB"),
                       ("build_trainer_s", "build s")],
                title=f"full-size Qwen2-VL{f' ({args.shrink} layers)' if args.shrink else ''}, "
                      f"{screen[0]}x{screen[1]}, LoRA all, {dtype}, {args.device}")
    print_table(speedups, [("model", "model"), ("batch", "batch"), ("run", "run"), ("over", "over"),
                           ("speedup", "tokens/s ×"), ("peak_gib", "peak GiB"), ("plain_peak_gib", "plain peak GiB"),
                           ("peak_no_higher", "peak ≤ plain")], title="speed-up over the plain recipe")
    print(f"\nwrote {args.out}")
    return results.data


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (tiny model) or cuda (full-size 2B / 7B)")
    parser.add_argument("--models", default="2b,7b", help="GPU: full-size models (2b, 7b)")
    parser.add_argument("--batches", default="4,8", help="GPU: batch sizes")
    parser.add_argument("--runs", default=None, help=f"GPU: runs for every model (default per model: {DEFAULT_RUNS})")
    parser.add_argument("--uncheckpointed", type=int, default=None,
                        help="partial runs: this many layers unchecked instead of the planned number")
    parser.add_argument("--partial-offsets", default="0",
                        help="partial runs: one run per offset from the planned number, e.g. 0,-2")
    parser.add_argument("--warmup", type=int, default=2, help="GPU: untimed steps per run")
    parser.add_argument("--workers", type=int, default=4, help="GPU: dataloader workers (both paths)")
    parser.add_argument("--shrink", type=int, default=None,
                        help="rehearsal of the GPU runs on any device: full widths, this many layers")
    parser.add_argument("--screen", default=None, help="full-size runs: WxH (default 1288x728)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=None, help="Trainer steps per path (timed steps on a GPU; "
                        "default 12 on the CPU, 6 on a GPU)")
    parser.add_argument("--profile-steps", type=int, default=3, help="steps of the one-batch measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    args.partial_offsets = [int(o) for o in args.partial_offsets.split(",")]
    gpu = args.device.startswith("cuda")
    args.out = args.out or RESULTS_DIR / ("bench_fast_path_gpu.json" if gpu else "bench_fast_path.json")
    args.steps = args.steps or (6 if gpu or args.shrink else 12)
    if gpu or args.shrink:
        if args.shrink and not gpu:
            args.out = args.out.with_name("bench_fast_path_rehearsal.json")
        return run_full_size(args)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = Results(args.out, "bench_fast_path", " ".join(["python -m bench.bench_fast_path", *(argv or sys.argv[1:])]),
                      model="uivlm/tiny-qwen2-vl", device="cpu", batch_size=args.batch_size, steps=args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        for name, size, max_pixels in SETTINGS:
            results.add(run_setting(name, size, max_pixels, args, Path(tmp)))
    rows = results.data["rows"]
    print_table(rows, [("setting", "setting"), ("image_tokens_per_sample", "img tok"),
                       ("plain_samples_per_s", "plain samples/s"), ("cached_samples_per_s", "cached samples/s"),
                       ("plain_tokens_per_s", "plain tok/s"), ("cached_tokens_per_s", "cached tok/s"),
                       ("speedup", "speed-up"), ("same_losses", "same losses")],
                title=f"Trainer, tiny Qwen2-VL on CPU ({torch.get_num_threads()} threads), batch {args.batch_size}")
    print_table(rows, [("setting", "setting"), ("plain_batch_step_s", "plain step s"),
                       ("cached_batch_step_s", "cached step s"), ("batch_speedup", "speed-up"),
                       ("plain_batch_peak_mib", "plain peak MiB"), ("cached_batch_peak_mib", "cached peak MiB"),
                       ("plain_batch_collate_s", "plain collate s"), ("cached_batch_collate_s", "cached collate s")],
                title="one batch: collate + median step (forward, backward, AdamW); peak = live tensors + weights + batch")
    print_table(rows, [("setting", "setting"), ("cache_images", "images"), ("cache_build_s", "build s"),
                       ("cache_mib", "MiB on disk"), ("cache_mib_per_image", "MiB / image")], title="cache")
    results.note("GPU figures are not measured by this run; bench/README.md §5b has the H200 ones (3.6-3.7x on 2B).")
    print(f"\nwrote {args.out}")
    return results.data


if __name__ == "__main__":
    main()
