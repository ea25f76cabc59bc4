"""Inference: ``predict_action`` greedy latency at batch 1 and throughput at batch 8 and 32.

    .venv/bin/python -m bench.bench_inference                   # CPU: the embedded tiny Qwen2-VL
    python3 -m bench.bench_inference --device cuda              # GPU: full-size Qwen2-VL-2B, random weights

Each call is the workbook's own ``wrapper.predict_action(images, instructions)``: image processor and
chat template, left-padded batch, greedy ``generate``, answer decoding and parsing. With random weights
the answers are junk, so the unconstrained rows force a fixed answer length (``min_new_tokens`` =
``max_new_tokens`` = ``--new-tokens``, 16 by default) and the timing is that of a real answer of that
length. The constrained rows (``constrained=True``: :mod:`uivlm_helpers.models.constrained` masks every step to the
action grammar) stop when the grammar's action is complete, so their answers are whatever length the
grammar allows the model (the new-token count is reported); ``max_new_tokens`` stays the workbook's 24.

GPU: full-size Qwen2-VL-2B (bf16, sdpa) built from ``model_configs.build_config`` with the offline
processor of ``bench/common.py`` (published pixel budget), synthetic 1288x728 screens (1,196 image
tokens). CPU: the tiny model on the workbook's 224x224 screens. Latency = median over ``--repeats`` calls
after one warm-up call at each batch size. Writes ``bench/results/bench_inference_<cpu|gpu>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback

from bench import common
from bench.common import QWEN_2B, SCREEN

COMMAND_GPU = "python3 -m bench.bench_inference --device cuda"
COMMAND_CPU = ".venv/bin/python -m bench.bench_inference"


class GenerateRecorder:
    """Records the prompt length and output shape of every ``model.generate`` call on one model."""

    def __init__(self, model, eos_ids):
        self.model, self.calls, self.eos = model, [], set(eos_ids)
        original = model.generate

        def generate(*args, **kwargs):
            output = original(*args, **kwargs)
            prompt = kwargs["input_ids"].shape[1] if "input_ids" in kwargs else args[0].shape[1]
            new = output[:, prompt:]
            lengths = []
            for row in new.tolist():
                n = next((i + 1 for i, t in enumerate(row) if t in self.eos), len(row))
                lengths.append(n)
            self.calls.append({"prompt_tokens": prompt, "new_tokens_max": new.shape[1],
                               "new_tokens_mean": sum(lengths) / len(lengths)})
            return output

        model.generate = generate


def measure(wrapper, records, batch, repeats, constrained, device, recorder):
    """Median seconds of ``predict_action`` on ``batch`` screens (after one warm-up call)."""
    from uivlm_helpers.core.images import as_image

    chosen = [records[i % len(records)] for i in range(batch)]
    images = [as_image(r["image"]) for r in chosen]
    prompts = [r["instruction"] for r in chosen]
    wrapper.predict_action(images, prompts, constrained=constrained)  # warm-up (kernels, grammar masks)
    times, answers = [], None
    recorder.calls.clear()
    for _ in range(repeats):
        common.sync(device)
        start = time.perf_counter()
        answers = wrapper.predict_action(images, prompts, constrained=constrained)
        common.sync(device)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    wrapper.encode(images, prompts, padding_side="left")
    encode_s = time.perf_counter() - start
    calls = recorder.calls or [{}]
    parsed = sum(1 for a in answers if a)
    return {"seconds": common.median(times), "times": times, "encode_s": encode_s,
            "prompt_tokens": calls[-1].get("prompt_tokens"), "new_tokens_max": calls[-1].get("new_tokens_max"),
            "new_tokens_mean": calls[-1].get("new_tokens_mean"), "parsed": parsed,
            "example": str(answers[0])[:120]}


COLUMNS = [("batch", "batch"), ("decoding", "decoding"), ("prompt_tokens", "prompt tokens"),
           ("new_tokens_mean", "new tokens"), ("latency_s", "latency s"), ("per_sample_ms", "ms/sample"),
           ("samples_per_s", "samples/s"), ("new_tokens_per_s", "new tokens/s"), ("encode_ms", "processor ms"),
           ("parsed", "parsed")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per row (default 5 at batch 1, else 3)")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--shrink", type=int, default=None, help="rehearsal: full widths, this many layers")
    parser.add_argument("--screen", default=None)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)

    gpu = args.device.startswith("cuda")
    full_size = gpu or args.shrink
    path = common.results_path("bench_inference" + ("_rehearsal" if args.shrink and not gpu else ""),
                               args.device, args.out_dir)
    results = common.Results(path, "bench_inference", COMMAND_GPU if gpu else COMMAND_CPU, device=args.device,
                             new_tokens=args.new_tokens)
    try:
        from uivlm_helpers.models import constrained  # noqa: F401
        has_constrained = True
    except ImportError as error:
        has_constrained = False
        results.note(f"constrained decoding skipped: uivlm_helpers.models.constrained is not importable ({error})")
    screen = tuple(int(v) for v in args.screen.split("x")) if args.screen else (SCREEN if full_size else (224, 224))
    dtype = "bfloat16" if gpu else "float32"
    with tempfile.TemporaryDirectory() as tmp:
        records = common.synthetic_records(32, tmp, size=screen)
        if full_size:
            processor = common.bench_processor()
            layers = {"text_layers": args.shrink, "vision_depth": args.shrink} if args.shrink else {}
            model = common.build_full_model(QWEN_2B, processor, device=args.device, dtype=dtype, **layers)
            wrapper_cls = common.full_size_wrapper_class(processor, {"bf16": model})
            name = QWEN_2B
        else:
            from uivlm_helpers.models.wrapper import VLMWrapper

            wrapper_cls, name = VLMWrapper, "uivlm/tiny-qwen2-vl"
        config = common.run_config(name, args.device, dtype)
        config.data.image_width, config.data.image_height = screen
        wrapper = wrapper_cls.from_config(config, with_lora=False)
        wrapper.model.eval()
        for param in wrapper.model.parameters():
            param.requires_grad_(False)
        eos = wrapper.model.generation_config.eos_token_id
        recorder = GenerateRecorder(wrapper.model, [eos] if isinstance(eos, int) else list(eos))
        results.data.update(model=name, screen=list(screen), dtype=dtype,
                            attention=getattr(wrapper.model.config, "_attn_implementation", None))
        fixed = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens,
                 "temperature": 0.0, "do_sample": False}
        grammar = {"max_new_tokens": config.model.max_new_tokens, "temperature": 0.0, "do_sample": False}
        modes = [("greedy", False)] + ([("greedy + constrained", True)] if has_constrained else [])
        for batch in [int(b) for b in args.batches.split(",")]:
            repeats = args.repeats or (5 if batch == 1 else 3)
            for label, constrained_on in modes:
                wrapper.generation = dict(grammar if constrained_on else fixed)
                row = {"batch": batch, "decoding": label, "repeats": repeats,
                       "generation": dict(wrapper.generation)}
                try:
                    got = measure(wrapper, records, batch, repeats, constrained_on, args.device, recorder)
                    row.update(got)
                    row.update(latency_s=got["seconds"], per_sample_ms=1000 * got["seconds"] / batch,
                               samples_per_s=batch / got["seconds"], encode_ms=1000 * got["encode_s"],
                               new_tokens_per_s=batch * (got["new_tokens_mean"] or 0) / got["seconds"])
                except Exception as error:  # noqa: BLE001 - e.g. out of memory at batch 32: record, go on
                    traceback.print_exc()
                    row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
                    common.free_memory()
                results.add(row)
                print(f"batch {batch} {label}: {common.fmt(row.get('latency_s'), 3)} s, "
                      f"{common.fmt(row.get('samples_per_s'))} samples/s {row.get('error', '')}", flush=True)
    common.print_table(results.data["rows"], COLUMNS,
                       f"predict_action, {common.SHORT.get(name, name)}, {screen[0]}x{screen[1]}, {dtype}")
    print(f"saved {path}")
    return results.data


if __name__ == "__main__":
    main()
