"""Training throughput: the workbook's Trainer path against a plain TRL ``SFTTrainer`` VLM baseline.

    .venv/bin/python -m bench.bench_throughput                   # CPU: tiny model (needs trl importable)
    python3 -m bench.bench_throughput --device cuda              # GPU: full-size Qwen2-VL-2B, random weights

Both sides train the same model (one base, re-wrapped per run), on the same synthetic screens (1288x728 on
the GPU, 224x224 with the tiny model on the CPU), with the same LoRA (r 16, alpha 32, dropout 0.05, the
same regex over the language model's seven projections: identical trainable parameters), batch size,
learning rate and precision (bf16 weights + bf16 autocast on the GPU; float32 on the CPU), in one process.

* **workbook**: ``VLMWrapper.from_config`` + ``train.build_trainer`` (``UICollator``, answer-only labels).
* **TRL**: ``trl.SFTTrainer`` with ``peft_config``, ``processing_class=processor`` and a prompt-completion
  conversational ``datasets.Dataset`` of the same images (``DataCollatorForVisionLanguageModeling``,
  completion-only loss), ``max_length=None`` (TRL's default 1,024 would cut the 1,196 image tokens).
  Run with TRL's defaults (gradient checkpointing **on**) and with checkpointing off.

Throughput = wall time between the ends of consecutive optimizer steps after ``--warmup`` steps, so data
loading and collation are included. samples/s = batch / step; tokens/s = non-padding tokens / step.
Writes ``bench/results/bench_throughput_<cpu|gpu>.json`` after every run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import traceback

from bench import common
from bench.common import QWEN_2B, SCREEN

COMMAND_GPU = "python3 -m bench.bench_throughput --device cuda"
# The workbook's runs: (settings, label). "plain" turns the fast path (cached vision features, liger's
# fused cross-entropy) off; the defaults ("auto") use it. liger patches the model class for the whole
# process, so the runs that may use it come after the TRL and plain runs.
WORKBOOK_RUNS = {
    "workbook_plain": ({"training__cache_vision_features": "false", "training__fused_cross_entropy": "false"},
                       "workbook, fast path off (ckpt off)"),
    "workbook_plain_ckpt": ({"training__cache_vision_features": "false", "training__fused_cross_entropy": "false",
                             "training__gradient_checkpointing": True}, "workbook, fast path off, ckpt on"),
    "workbook_cache": ({"training__cache_vision_features": "auto", "training__fused_cross_entropy": "false"},
                       "workbook, cached vision features only (ckpt off)"),
    "workbook": ({}, "workbook defaults (fast path auto, ckpt off)"),
    "workbook_ckpt": ({"training__gradient_checkpointing": True}, "workbook defaults + ckpt on"),
    "workbook_fp_default": ({"training__mixed_precision": "no"}, "workbook defaults, mixed_precision 'no' (config default)"),
}
RUNS_GPU = ["trl_default", "trl_no_ckpt", "workbook_plain", "workbook_plain_ckpt", "workbook_cache", "workbook",
            "workbook_ckpt"]
# On the CPU nothing is process-wide (no liger): interleave, so load from other processes hits both sides.
RUNS_CPU = ["trl_no_ckpt", "workbook_plain", "trl_default", "workbook_plain_ckpt", "workbook", "workbook_ckpt"]
COMMAND_CPU = "PYTHONPATH=<trl site> .venv/bin/python -m bench.bench_throughput"
TARGET = 1.3


class StepClock:
    """Wall-clock times between consecutive ``on_step_end`` events (data loading included)."""

    def __init__(self, device):
        from transformers import TrainerCallback

        clock = self
        self.ends: list[float] = []

        class Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                common.sync(device)
                clock.ends.append(time.perf_counter())

            def on_step_end(self, args, state, control, **kwargs):
                common.sync(device)
                clock.ends.append(time.perf_counter())

        self.callback = Callback()

    def step_times(self, warmup: int) -> list[float]:
        gaps = [b - a for a, b in zip(self.ends, self.ends[1:])]
        return gaps[warmup:]


def _summary(name, kind, times, batch, tokens_per_batch, peak_gib, trainable, extra=None):
    total = sum(times)
    row = {"trainer": name, "kind": kind, "batch": batch, "timed_steps": len(times),
           "step_s_mean": total / len(times) if times else None, "step_s_median": common.median(times),
           "samples_per_s": batch * len(times) / total if total else None,
           "tokens_per_s": tokens_per_batch * len(times) / total if total else None,
           "tokens_per_batch": tokens_per_batch, "peak_gib": peak_gib, "trainable_params": trainable}
    row.update(extra or {})
    return row


def _peak(device):
    import torch

    return torch.cuda.max_memory_allocated() / common.GIB if device.startswith("cuda") else None


def _reset_peak(device):
    import torch

    common.free_memory()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def workbook_run(config, wrapper_cls, records, warmup, steps, label, device):
    """The workbook's path: ``VLMWrapper.from_config`` + ``build_trainer`` + ``trainer.train()``."""
    from uivlm_helpers.training.collate import UICollator
    from uivlm_helpers.training.train import build_trainer

    config.training.max_steps = warmup + steps
    config.training.logging_steps = 1000
    config.training.checkpoint_interval = 10_000
    wrapper = wrapper_cls.from_config(config)
    base = wrapper.model.get_base_model()
    hooks = common.snapshot_hooks(base)
    batch = config.training.batch_size
    sample = UICollator(wrapper)(records[:batch])
    tokens = int(sample["attention_mask"].sum())
    trainable = sum(p.numel() for p in wrapper.model.parameters() if p.requires_grad)
    _reset_peak(device)
    n_records = batch * (warmup + steps)
    try:
        with tempfile.TemporaryDirectory() as run_dir:
            start = time.perf_counter()
            trainer, _ = build_trainer(config, wrapper, records[:n_records], run_dir)
            build_s = time.perf_counter() - start
            build_peak = _peak(device)  # the feature cache and its self-check; training's peak is apart
            _reset_peak(device)
            fast = dict(getattr(trainer, "fast_path", {}) or {})
            clock = StepClock(device)
            trainer.add_callback(clock.callback)
            trainer.train()
            peak = _peak(device)
            trainer.accelerator.free_memory()
            del trainer
    finally:
        common.restore_base(wrapper, hooks)
        try:
            from uivlm_helpers.training.features import remove_feature_hook

            remove_feature_hook(wrapper.model)
        except Exception:  # noqa: BLE001 - none installed
            pass
    cache_on = bool(fast.get("cache_vision_features"))
    return _summary(label, "workbook", clock.step_times(warmup), batch, tokens, peak, trainable,
                    {"sequence_tokens": int(sample["input_ids"].shape[1]),
                     "gradient_checkpointing": config.training.gradient_checkpointing,
                     "mixed_precision": config.training.mixed_precision,
                     "cache_vision_features": cache_on, "fused_cross_entropy": bool(fast.get("fused_cross_entropy")),
                     "fast_path_reasons": {k: fast.get(k) for k in ("cache_reason", "fused_reason")},
                     "text_only_batches": fast.get("text_only_batches"),
                     "build_trainer_s": build_s, "build_peak_gib": build_peak, "records_cached": n_records if cache_on else 0,
                     "cache_s_per_image": build_s / n_records if cache_on else None}), wrapper.model


def trl_dataset(records, wrapper):
    """Prompt-completion conversational records with the same images, prompts and answers."""
    from datasets import Dataset, Image, List

    from uivlm_helpers.core.images import as_image
    from uivlm_helpers.core.prompts import user_text

    rows = []
    for record in records:
        image = as_image(record["image"])
        text = user_text(wrapper.task_prompt, record["instruction"], wrapper.action_format,
                         wrapper.adapter.coordinate_space)
        target = wrapper.render_target(record["action"], image.size)
        rows.append({"images": [str(record["image"])],
                     "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}],
                     "completion": [{"role": "assistant", "content": [{"type": "text", "text": target}]}]})
    return Dataset.from_list(rows).cast_column("images", List(Image()))


def trl_run(model, processor, dataset, lora_regex, config, warmup, steps, label, device, checkpointing):
    """Plain TRL: ``SFTTrainer(model, args=SFTConfig(...), peft_config=LoraConfig(...))``."""
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    batch = config.training.batch_size
    cpu = not device.startswith("cuda")
    hooks = common.snapshot_hooks(model)
    lora = config.model.lora_config
    peft_config = LoraConfig(r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout, bias="none",
                             target_modules=lora_regex, task_type="CAUSAL_LM")
    kwargs = {} if checkpointing is None else {"gradient_checkpointing": checkpointing}
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(output_dir=out, per_device_train_batch_size=batch, max_steps=warmup + steps,
                         learning_rate=config.algorithm.learning_rate, lr_scheduler_type="linear",
                         logging_steps=1000, save_strategy="no", report_to="none", max_length=None,
                         seed=config.training.seed, dataloader_num_workers=0, bf16=not cpu, use_cpu=cpu, **kwargs)
        _reset_peak(device)
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                             peft_config=peft_config)
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
        sample = trainer.data_collator([dataset[i] for i in range(batch)])
        tokens = int(sample["attention_mask"].sum())
        clock = StepClock(device)
        trainer.add_callback(clock.callback)
        try:
            trainer.train()
            peak = _peak(device)
        finally:
            wrapped = trainer.model
            trainer.accelerator.free_memory()
            del trainer

            class _Holder:  # restore_base works on anything with a .model
                pass

            holder = _Holder()
            holder.model = wrapped
            common.restore_base(holder, hooks)
            model = holder.model
    return _summary(label, "trl", clock.step_times(warmup), batch, tokens, peak, trainable,
                    {"sequence_tokens": int(sample["input_ids"].shape[1]),
                     "gradient_checkpointing": args.gradient_checkpointing,
                     "mixed_precision": "bf16" if args.bf16 else "no"}), model


COLUMNS = [("trainer", "trainer"), ("batch", "batch"), ("sequence_tokens", "tokens/sample"),
           ("gradient_checkpointing", "ckpt"), ("mixed_precision", "precision"), ("cache_vision_features", "cached"),
           ("fused_cross_entropy", "fused CE"), ("cache_s_per_image", "cache s/img"), ("step_s_mean", "step s"),
           ("samples_per_s", "samples/s"), ("tokens_per_s", "tokens/s"), ("peak_gib", "peak GiB"),
           ("trainable_params", "trainable")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default: 6 on a GPU, 40 on the CPU)")
    parser.add_argument("--shrink", type=int, default=None, help="rehearsal: full widths, this many layers")
    parser.add_argument("--screen", default=None, help="WxH (full-size path; default 1288x728)")
    parser.add_argument("--runs", default=None, help="comma-separated runs, in order (default: all; see RUNS)")
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)

    import torch

    gpu = args.device.startswith("cuda")
    full_size = gpu or args.shrink
    args.steps = args.steps or (6 if gpu or args.shrink else 40)
    path = common.results_path("bench_throughput" + ("_rehearsal" if args.shrink and not gpu else ""),
                               args.device, args.out_dir)
    results = common.Results(path, "bench_throughput", COMMAND_GPU if gpu else COMMAND_CPU, device=args.device,
                             batch_size=args.batch_size, warmup_steps=args.warmup, timed_steps=args.steps)
    try:
        import trl  # noqa: F401
    except ImportError as error:
        results.note(f"TRL baseline skipped: trl is not importable here ({error}); install it into a "
                     "separate environment or put it on PYTHONPATH (it is not a project dependency)")
        trl = None
    screen = tuple(int(v) for v in args.screen.split("x")) if args.screen else (SCREEN if full_size else (224, 224))
    dtype = "bfloat16" if gpu else "float32"
    precision = "bf16" if gpu else "no"
    with tempfile.TemporaryDirectory() as tmp:
        records = common.synthetic_records(args.batch_size * (args.warmup + args.steps), tmp, size=screen)
        if full_size:
            processor = common.bench_processor()
            layers = {"text_layers": args.shrink, "vision_depth": args.shrink} if args.shrink else {}
            base = common.build_full_model(QWEN_2B, processor, device=args.device, dtype=dtype, **layers)
            wrapper_cls = common.full_size_wrapper_class(processor, {"bf16": base})
            name = QWEN_2B
        else:
            from uivlm_helpers.models.wrapper import VLMWrapper

            name = "uivlm/tiny-qwen2-vl"
            wrapper_cls = VLMWrapper
            base = None
        results.data.update(model=name, screen=list(screen), dtype=dtype)

        def config_for(**settings):
            settings = {"training__batch_size": args.batch_size, "training__mixed_precision": precision, **settings}
            config = common.run_config(name, args.device, dtype, **settings)
            config.data.image_width, config.data.image_height = screen
            return config

        probe = wrapper_cls.from_config(config_for(), with_lora=False)
        processor = probe.processor
        names = probe.adapter.lora_target_modules
        vision = "|".join(p.rstrip(".") for p in probe.adapter.vision_module_prefixes)
        lora_regex = rf"^(?!.*(?:{vision})).*\.(?:{'|'.join(names)})$"   # the same regex as VLMWrapper.add_lora
        dataset = trl_dataset(records, probe) if trl else None
        tiny_base = probe.model if base is None else None
        for run in (args.runs.split(",") if args.runs else RUNS_GPU if gpu else RUNS_CPU):
            try:
                if run.startswith("trl"):
                    if trl is None:
                        continue
                    model = base if base is not None else tiny_base
                    checkpointing = None if run == "trl_default" else False
                    label = "TRL SFTTrainer (its defaults: ckpt on)" if run == "trl_default" else "TRL SFTTrainer, ckpt off"
                    row, model = trl_run(model, processor, dataset, lora_regex, config_for(), args.warmup, args.steps,
                                         label, args.device, checkpointing)
                    if base is not None:
                        base = model
                        wrapper_cls.models["bf16"] = model
                    else:
                        tiny_base = model
                else:
                    settings, label = WORKBOOK_RUNS[run]
                    row, _ = workbook_run(config_for(**settings), wrapper_cls, records, args.warmup, args.steps,
                                          label, args.device)
                row["run"] = run
            except Exception as error:  # noqa: BLE001 - record and go on
                traceback.print_exc()
                row = {"run": run, "trainer": run, "error": f"{type(error).__name__}: {str(error)[:500]}"}
                common.free_memory()
            results.add(row)
            print(f"{row['trainer']}: {common.fmt(row.get('samples_per_s'))} samples/s, "
                  f"{common.fmt(row.get('tokens_per_s'), 0)} tokens/s {row.get('error', '')}", flush=True)

    rows = {r["run"]: r for r in results.data["rows"] if r.get("samples_per_s")}
    comparisons = []
    for workbook, baseline, what in [
            ("workbook", "trl_default", "each with its own defaults (workbook: fast path auto, ckpt off; TRL: ckpt on)"),
            ("workbook", "trl_no_ckpt", "both ckpt off; workbook fast path auto"),
            ("workbook_ckpt", "trl_default", "both ckpt on; workbook fast path auto"),
            ("workbook_plain", "trl_no_ckpt", "both ckpt off; workbook fast path off"),
            ("workbook_plain_ckpt", "trl_default", "both ckpt on; workbook fast path off")]:
        if workbook in rows and baseline in rows:
            speedup = rows[workbook]["samples_per_s"] / rows[baseline]["samples_per_s"]
            comparisons.append({"comparison": f"{workbook} / {baseline}", "what": what, "speedup": speedup,
                                "meets_1.3x": speedup >= TARGET})
    results.data["comparisons"] = comparisons
    results.save()
    common.print_table(results.data["rows"], COLUMNS,
                       f"training throughput, {common.SHORT.get(name, name)}, {screen[0]}x{screen[1]}, "
                       f"batch {args.batch_size}, {dtype}")
    common.print_table(comparisons, [("comparison", "runs"), ("what", "setting"), ("speedup", "workbook ÷ TRL"),
                                     ("meets_1.3x", "≥1.3×?")])
    print(f"saved {path}")
    return results.data


if __name__ == "__main__":
    main()
