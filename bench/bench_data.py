"""Is the data pipeline fast enough to keep training busy? Loading + collating vs a train step.

    .venv/bin/python -m bench.bench_data                       # 128 synthetic 224x224 records, batch 4
    .venv/bin/python -m bench.bench_data --image-size 448 --batch-size 8

Measures, on synthetic records (``synth.generate_records``):

* **read + validate**: ``schema.read_records`` (JSON, schema, image files decoded and size-checked);
* **load images**: opening the screenshots as RGB ``PIL`` images (what the collator does first);
* **collate**: ``train.UICollator(VLMWrapper.from_config(default config))`` on batches (image
  processor, chat template, tokenizer, answer-only labels) - images included;
* **train step**: forward + backward + AdamW step of the same wrapper (the default run: tiny
  Qwen2-VL, LoRA, frozen vision tower) on collated batches.

Prints records/s for each and the ratio collate / train step (above 1: the collator keeps up with
one worker), and writes ``bench/results/bench_data.json`` with the machine and versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path


RESULTS = Path(__file__).resolve().parent / "results" / "bench_data.json"


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=8, help="timed train steps (after one warm-up)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    from uivlm_helpers.core.config import load_config
    from uivlm_helpers.core.images import as_image
    from uivlm_helpers.data import schema, synth
    from uivlm_helpers.data.run_data import as_plain
    from uivlm_helpers.models.wrapper import VLMWrapper
    from uivlm_helpers.training.collate import UICollator

    torch.manual_seed(0)
    size = (args.image_size, args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        jsonl = synth.generate_records(args.records, seed=0, out_dir=tmp, image_size=size)
        read_s = _median_seconds(lambda: schema.read_records(jsonl), 3)
        records = [as_plain(r) for r in schema.read_records(jsonl)]
        load_s = _median_seconds(lambda: [as_image(r["image"]) for r in records], 3)

        config = load_config(None)
        wrapper = VLMWrapper.from_config(config)
        collator = UICollator(wrapper, max_length=config.training.max_length)
        batches = [records[i:i + args.batch_size] for i in range(0, len(records) - args.batch_size + 1,
                                                                   args.batch_size)]
        collator(batches[0])  # warm-up (processor caches)
        start = time.perf_counter()
        collated = [collator(b) for b in batches]
        collate_s = (time.perf_counter() - start) / len(batches)

        model = wrapper.model
        model.train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=config.algorithm.learning_rate)

        def step(batch):
            batch = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return float(loss.detach())

        step(collated[0])  # warm-up
        times = []
        for i in range(args.steps):
            start = time.perf_counter()
            step(collated[(i + 1) % len(collated)])
            times.append(time.perf_counter() - start)
        step_s = statistics.median(times)
        tokens = int(collated[0]["input_ids"].shape[1])

    rows = [
        {"stage": "read + validate (schema.read_records)", "seconds_per_record": read_s / args.records},
        {"stage": "load images (PIL, RGB)", "seconds_per_record": load_s / args.records},
        {"stage": f"collate (UICollator, batch {args.batch_size})", "seconds_per_record": collate_s / args.batch_size},
        {"stage": f"train step (tiny Qwen2-VL, LoRA, batch {args.batch_size})",
         "seconds_per_record": step_s / args.batch_size},
    ]
    for row in rows:
        row["records_per_second"] = 1.0 / row["seconds_per_record"]
    ratio = step_s / collate_s
    print(f"{args.records} synthetic {size[0]}x{size[1]} records, batch {args.batch_size}, "
          f"{tokens} tokens per sequence, device {wrapper.model.device}\n")
    print("| stage | records/s | ms/record |\n|---|---|---|")
    for row in rows:
        print(f"| {row['stage']} | {row['records_per_second']:.0f} | {1000 * row['seconds_per_record']:.2f} |")
    print(f"\ncollate {1000 * collate_s:.1f} ms/batch vs train step {1000 * step_s:.1f} ms/batch: "
          f"the collator is {ratio:.1f}x as fast as the step it feeds")

    result = {
        "benchmark": "bench_data", "records": args.records, "batch_size": args.batch_size,
        "image_size": list(size), "tokens_per_sequence": tokens, "model": config.model.name,
        "recipe": "LoRA (default config), frozen vision tower, AdamW, float32",
        "stages": rows, "collate_seconds_per_batch": collate_s, "train_step_seconds_per_batch": step_s,
        "collate_vs_step_speed": ratio,
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "device": str(wrapper.model.device),
                    "python": platform.python_version(),
                    "packages": {p: metadata.version(p) for p in ("torch", "transformers", "peft", "pillow",
                                                                  "datasets")}},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {args.out}")
    return result


if __name__ == "__main__":
    main()
