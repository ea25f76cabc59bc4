"""Plain vs fast training path (cached vision features) in the same run, on this machine.

    .venv/bin/python bench/bench_fast_path.py                  # tiny Qwen2-VL on CPU, two screen sizes
    .venv/bin/python bench/bench_fast_path.py --steps 20 --batch-size 8

For each setting the same records train twice through the workbook's own path
(``VLMWrapper.from_config`` + ``train.train``, i.e. ``build_trainer`` and ``transformers.Trainer``), once with
``training.cache_vision_features=false`` and once with ``true``:

* **Trainer**: samples/s and tokens/s over ``--steps`` steps (``train_runtime``; the cache is built before
  and timed on its own), and whether both runs logged the same losses;
* **one batch**: the collator's time plus the median forward + backward + AdamW step, and the step's peak
  memory (:func:`uivlm_helpers.memory.profile_training_peak`: live tensor storages + weights and batch), via
  :func:`uivlm_helpers.features.compare_paths`;
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, Results, print_table  # noqa: E402

# (name, screenshot size, model.max_pixels): the tiny model's own budget (224x224 = 64 image tokens),
# and a 4x larger budget (448x448 = 256 image tokens).
SETTINGS = [("224x224, default budget", (224, 224), None), ("448x448, max_pixels 448^2", (448, 448), 448 * 448)]


def _config(cache: str, batch: int, steps: int, max_pixels):
    from uivlm_helpers.config import load_config

    return load_config({"model": {"max_pixels": max_pixels},
                        "training": {"batch_size": batch, "max_steps": steps, "logging_steps": 1,
                                     "checkpoint_interval": 10_000, "cache_vision_features": cache,
                                     "fused_cross_entropy": "false"},
                        "algorithm": {"learning_rate": 1e-3}})


def run_setting(name, size, max_pixels, args, folder: Path) -> dict:
    import torch

    from common import synthetic_records
    from uivlm_helpers import features
    from uivlm_helpers.train import UICollator, train
    from uivlm_helpers.wrapper import VLMWrapper

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
                (sample["input_ids"] == features._image_token_id(wrapper.model)).sum()) // args.batch_size
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


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=12, help="Trainer steps per path")
    parser.add_argument("--profile-steps", type=int, default=3, help="steps of the one-batch measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "bench_fast_path.json")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = Results(args.out, "bench_fast_path", " ".join(["bench/bench_fast_path.py", *(argv or sys.argv[1:])]),
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
    results.note("GPU figures are not measured by this run; MEASURED.md has the H100 ones (2.4-2.7x on 2B).")
    print(f"\nwrote {args.out}")
    return results.data


if __name__ == "__main__":
    main()
