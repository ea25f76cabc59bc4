"""Training memory: the estimator (``memory.estimate_training_memory``) against the measured peak.

    .venv/bin/python -m bench.bench_memory                      # CPU: the tiny model, every recipe
    python3 -m bench.bench_memory --device cuda                 # GPU: full-size Qwen2-VL-2B and 7B
    python3 -m bench.bench_memory --device cuda --models 7b --append   # add rows to the GPU file

GPU rows: full-size Qwen2-VL (random bf16 weights from ``model_configs.build_config``, built once per
model, re-wrapped per recipe; see ``bench/common.py``), one synthetic 1288x728 screenshot per sample
(1,196 image tokens) with the workbook's prompt, trained through the workbook's own path:
``VLMWrapper.from_config`` + ``train.build_trainer`` (transformers ``Trainer``, ``UICollator``) for 2 steps;
peak = ``torch.cuda.max_memory_allocated`` over them. Recipes: LoRA q,v (the seed's targets) / all
(the workbook's default), QLoRA (NF4 via bitsandbytes, as ``wrapper.quantization_config`` loads it),
gradient checkpointing on/off, full fine-tuning with the vision tower frozen / unfrozen, batch 1 and 4.

CPU rows: the embedded tiny Qwen2-VL on the workbook's 224x224 screens, measured by
``profiling.profile_training_peak`` (live tensor storages), checkpointing enabled as the Trainer does it.

Then the seed's table (2B ~8 GB, 7B ~16 GB, 13B ~24 GB with LoRA) beside what the workbook's recipes
need, estimated for all three (LLaVA-1.5-13B estimated only) and measured for 2B and 7B.

Writes ``bench/results/bench_memory_<cpu|gpu>.json`` after every row.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import traceback
from pathlib import Path

from bench import common
from bench.common import GIB, LLAVA_13B, QWEN_2B, QWEN_7B, SCREEN, SHORT

QV = ["q_proj", "v_proj"]
SEED_GB = {QWEN_2B: 8, QWEN_7B: 16, LLAVA_13B: 24}
TARGET_SHARE = 0.60

# (label, settings) - dotted RunConfig keys as in common.run_config.
RECIPES = {
    "lora_qv": {"model__lora_config__target_modules": QV},
    "lora_qv_ckpt": {"model__lora_config__target_modules": QV, "training__gradient_checkpointing": True},
    "lora_all": {},
    "lora_all_ckpt": {"training__gradient_checkpointing": True},
    "lora_all_ckpt_bf16amp": {"training__gradient_checkpointing": True, "training__mixed_precision": "bf16"},
    "full_frozen_ckpt": {"model__use_lora": False, "training__gradient_checkpointing": True},
    "full_unfrozen_ckpt": {"model__use_lora": False, "model__freeze_vision_encoder": False,
                           "training__gradient_checkpointing": True},
    "full_frozen": {"model__use_lora": False},
    "full_unfrozen": {"model__use_lora": False, "model__freeze_vision_encoder": False},
    "qlora_all_ckpt": {"model__load_in_4bit": True, "training__gradient_checkpointing": True},
    "qlora_all": {"model__load_in_4bit": True},
    "qlora_all_ckpt_512": {"model__load_in_4bit": True, "training__gradient_checkpointing": True,
                           "model__max_pixels": 512 * 28 * 28},
}
DESCRIBE = {
    "lora_qv": "LoRA q,v", "lora_qv_ckpt": "LoRA q,v + ckpt", "lora_all": "LoRA all",
    "lora_all_ckpt": "LoRA all + ckpt", "lora_all_ckpt_bf16amp": "LoRA all + ckpt, bf16 autocast",
    "full_frozen_ckpt": "full FT, vision frozen + ckpt", "full_unfrozen_ckpt": "full FT, vision trained + ckpt",
    "full_frozen": "full FT, vision frozen", "full_unfrozen": "full FT, vision trained",
    "qlora_all_ckpt": "QLoRA nf4 all + ckpt", "qlora_all": "QLoRA nf4 all",
    "qlora_all_ckpt_512": "QLoRA nf4 all + ckpt, max_pixels 512 tokens",
}
# (recipe, batch, fast) per model on the GPU. fast "plain": training.cache_vision_features and
# fused_cross_entropy false; "auto": the workbook's defaults (cached tower features when the tower is
# frozen; liger's fused cross-entropy when liger-kernel is installed). liger patches the model class for
# the whole process, so every "plain" row runs before the first "auto" one (see _phases).
GPU_PLAN = {
    "2b": [("lora_qv", 1, "plain"), ("lora_all", 1, "plain"), ("lora_all_ckpt", 1, "plain"), ("lora_all", 4, "plain"),
           ("full_unfrozen_ckpt", 1, "plain"),
           ("qlora_all_ckpt", 1, "plain"), ("qlora_all", 1, "plain"),
           ("qlora_all_ckpt", 1, "auto"), ("qlora_all_ckpt_512", 1, "auto"), ("qlora_all_ckpt", 4, "auto"),
           ("lora_all", 1, "auto"), ("lora_all_ckpt", 1, "auto"), ("lora_all", 4, "auto"), ("lora_all_ckpt", 4, "auto"),
           ("full_frozen_ckpt", 1, "auto"), ("full_unfrozen_ckpt", 1, "auto"), ("full_unfrozen", 1, "auto"),
           ("lora_all_ckpt_bf16amp", 1, "auto")],
    "7b": [("lora_qv", 1, "plain"), ("lora_all_ckpt", 1, "plain"), ("qlora_all_ckpt", 1, "plain"),
           ("qlora_all_ckpt", 1, "auto"), ("qlora_all_ckpt_512", 1, "auto"),
           ("lora_all_ckpt", 1, "auto"), ("lora_all", 4, "auto"), ("full_frozen_ckpt", 1, "auto"),
           ("full_unfrozen_ckpt", 1, "auto")],
}
CPU_PLAN = [("lora_qv", 4, "plain"), ("lora_all", 4, "plain"), ("lora_all_ckpt", 4, "plain"),
            ("lora_qv_ckpt", 4, "plain"), ("lora_all", 1, "plain"), ("full_frozen", 4, "plain"),
            ("full_unfrozen", 4, "plain"), ("full_unfrozen_ckpt", 4, "plain"), ("qlora_all", 1, "plain"),
            ("qlora_all_ckpt", 1, "plain")]
FAST = {"plain": {"training__cache_vision_features": "false", "training__fused_cross_entropy": "false"},
        "auto": {"training__cache_vision_features": "auto", "training__fused_cross_entropy": "auto"},
        # the fallback when an "auto" row fails with the feature cache on: the fused loss alone
        "fused": {"training__cache_vision_features": "false", "training__fused_cross_entropy": "auto"}}
MODELS = {"2b": QWEN_2B, "7b": QWEN_7B}
COMMAND_GPU = "python3 -m bench.bench_memory --device cuda --models 2b,7b"
COMMAND_CPU = ".venv/bin/python -m bench.bench_memory"


def _estimate(config, image_size, text_tokens):
    from uivlm_helpers.training import memory

    return memory.estimate_training_memory(config, image_size, text_tokens=text_tokens)


def _row_header(model_name, recipe, batch, config, fast="plain"):
    return {"model": SHORT.get(model_name, model_name), "model_name": model_name, "recipe": recipe,
            "describe": DESCRIBE[recipe] + {"plain": "", "auto": " [fast path auto]",
                                            "fused": " [fused CE only]"}[fast], "batch": batch,
            "fast": fast,
            "lora_targets": config.model.lora_config.target_modules or "all" if config.model.use_lora else None,
            "gradient_checkpointing": config.training.gradient_checkpointing,
            "mixed_precision": config.training.mixed_precision, "torch_dtype": config.model.torch_dtype,
            "load_in_4bit": config.model.load_in_4bit,
            "vision_frozen": config.model.use_lora or config.model.freeze_vision_encoder}


def _finish_row(row, estimate, measured_gib):
    row.update({"estimated_gib": estimate["peak_allocated_gib"], "estimated_total_gib": estimate["total_gib"],
                "estimate_peak_phase": estimate["assumptions"]["peak_phase"],
                "estimate_components_gib": {k: round(v, 3) for k, v in estimate["components"].items()}})
    if measured_gib:
        row["measured_gib"] = measured_gib
        row["error_pct"] = 100 * (estimate["peak_allocated_gib"] - measured_gib) / measured_gib
    return row


# -- GPU (or a CPU rehearsal of the GPU path) ---------------------------------------------------------
class _StepTimer:
    def __init__(self, device):
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                common.sync(device)
                timer.start = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                common.sync(device)
                timer.times.append(time.perf_counter() - timer.start)

        self.times, self.start, self.callback = [], 0.0, Callback()


def trainer_peak(config, wrapper, records, run_dir, steps: int = 2) -> dict:
    """Train ``steps`` steps through ``train.build_trainer``; peak allocated memory and step times.

    The peak counts from just before ``trainer.train()`` (weights, optimizer state, activations, logits);
    building the trainer (the vision-feature cache and its self-check, when on) is reported apart.
    """
    import torch

    from uivlm_helpers.training.collate import UICollator

    from uivlm_helpers.training.train import build_trainer

    device = config.model.device
    cuda = device.startswith("cuda")
    batch = config.training.batch_size
    config.training.max_steps = steps
    config.training.logging_steps = 1000
    config.training.checkpoint_interval = 10_000
    sample = UICollator(wrapper)(records[:batch])
    lengths = sample["attention_mask"].sum(dim=1)
    image_tokens = int((sample["input_ids"][0] == wrapper.model.config.image_token_id).sum())
    seq = int(sample["input_ids"].shape[1])
    del sample
    common.free_memory()
    before = torch.cuda.memory_allocated() if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer, _ = build_trainer(config, wrapper, records[:batch * steps], run_dir)
    build_s = time.perf_counter() - start
    fast = getattr(trainer, "fast_path", {}) or {}
    result = {"sequence_tokens": seq, "image_tokens": image_tokens, "text_tokens": seq - image_tokens,
              "real_tokens_per_batch": int(lengths.sum()), "build_trainer_s": build_s,
              "cache_vision_features_on": fast.get("cache_vision_features"),
              "fused_cross_entropy_on": fast.get("fused_cross_entropy"),
              "fast_path_reasons": {k: fast.get(k) for k in ("cache_reason", "fused_reason")}}
    if cuda:
        result["build_peak_gib"] = torch.cuda.max_memory_allocated() / GIB
        common.sync(device)
        torch.cuda.reset_peak_memory_stats()
        result["resident_before_gib"] = torch.cuda.memory_allocated() / GIB
    timer = _StepTimer(device)
    trainer.add_callback(timer.callback)
    trainer.train()
    common.sync(device)
    result.update(step_s=timer.times[-1] if timer.times else None, steps=len(timer.times))
    if cuda:
        result.update(measured_gib=torch.cuda.max_memory_allocated() / GIB,
                      peak_reserved_gib=torch.cuda.max_memory_reserved() / GIB, allocated_at_start_gib=before / GIB)
    trainer.accelerator.free_memory()
    del trainer
    return result


class ModelSource:
    """One base model at a time on the device: the bf16 build, or its 4-bit copy (built on demand)."""

    def __init__(self, name, processor, device, dtype, results, layers):
        self.name, self.processor, self.device, self.dtype = name, processor, device, dtype
        self.results, self.layers = results, layers
        self.models: dict = {}
        self.wrapper_cls = common.full_size_wrapper_class(processor, self.models)

    def get(self, kind: str):
        if kind in self.models:
            return self.models[kind]
        if kind == "4bit":
            bf16 = self.get("bf16")
            quantized = common.quantize_4bit(bf16, self.device)
            self.results.data["builds"].append({"model": self.name, "quantize_4bit_s": quantized._bench_build_s})
            self.models.clear()
            del bf16
            common.free_memory()
            self.models["4bit"] = quantized
        else:
            self.models.clear()
            common.free_memory()
            start = time.perf_counter()
            model = common.build_full_model(self.name, self.processor, device=self.device, dtype=self.dtype,
                                            **self.layers)
            self.results.data["builds"].append({"model": self.name, "build_s": time.perf_counter() - start,
                                                "params": sum(p.numel() for p in model.parameters()),
                                                "shrunk_to_layers": self.layers.get("text_layers")})
            self.models["bf16"] = model
        self.results.save()
        return self.models[kind]


def _phases(plan):
    """Rows in the order the shared base allows: plain bf16, plain 4-bit, auto 4-bit, auto bf16."""
    def key(entry):
        recipe, _, fast = entry
        four = RECIPES[recipe].get("model__load_in_4bit", False)
        return {("plain", False): 0, ("plain", True): 1, ("auto", True): 2, ("auto", False): 3}[(fast, four)]
    return sorted(plan, key=key)  # stable: the plan's order within a phase


def gpu_model_rows(results, model_key, device, dtype, plan, records, shrink=None, screen=SCREEN):
    import torch

    name = MODELS[model_key]
    processor = common.bench_processor()
    layers = {"text_layers": shrink, "vision_depth": shrink} if shrink else {}
    results.data.setdefault("builds", [])
    source = ModelSource(name, processor, device, dtype, results, layers)
    total_gib = torch.cuda.get_device_properties(0).total_memory / GIB if device.startswith("cuda") else None
    queue = list(_phases(plan))
    while queue:
        recipe, batch, fast = queue.pop(0)
        settings = {**RECIPES[recipe], **FAST[fast]}
        config = common.run_config(name, device, dtype, training__batch_size=batch, **settings)
        config.data.image_width, config.data.image_height = screen
        estimate = _estimate(config, screen, 101)  # refined below with the real token count
        row = _row_header(name, recipe, batch, config, fast)
        if total_gib and estimate["total_gib"] > 0.95 * total_gib:
            row.update(skipped=f"estimated {estimate['total_gib']:.1f} GiB > 95% of the GPU's {total_gib:.0f} GiB")
            results.add(_finish_row(row, estimate, None))
            print(f"skip {row['model']} {recipe} b{batch}: {row['skipped']}", flush=True)
            continue
        wrapper, hooks = None, {}
        try:
            source.get("4bit" if config.model.load_in_4bit else "bf16")
            wrapper = source.wrapper_cls.from_config(config)
            base = wrapper.model.get_base_model() if hasattr(wrapper.model, "get_base_model") else wrapper.model
            hooks = common.snapshot_hooks(base)
            with tempfile.TemporaryDirectory() as run_dir:
                measured = trainer_peak(config, wrapper, records, run_dir)
            row.update(measured)
            row["trainable_params"] = sum(p.numel() for p in wrapper.model.parameters() if p.requires_grad)
            estimate = _estimate(config, screen, measured["text_tokens"])
            _finish_row(row, estimate, measured.get("measured_gib"))
        except torch.cuda.OutOfMemoryError as error:
            row["error"] = f"CUDA out of memory: {str(error).splitlines()[0][:200]}"
            _finish_row(row, estimate, None)
        except Exception as error:  # noqa: BLE001 - record and carry on with the next recipe
            row["error"] = f"{type(error).__name__}: {str(error)[:300]}"
            traceback.print_exc()
            _finish_row(row, estimate, None)
            if fast == "auto":  # measure the same recipe with the fused loss alone
                queue.insert(0, (recipe, batch, "fused"))
        finally:
            if wrapper is not None:
                common.restore_base(wrapper, hooks)
                try:
                    from uivlm_helpers.training.features import remove_feature_hook

                    remove_feature_hook(wrapper.model)
                except Exception:  # noqa: BLE001 - no hook installed
                    pass
                del wrapper
            common.free_memory()
        if device.startswith("cuda"):
            row["allocated_after_gib"] = torch.cuda.memory_allocated() / GIB
        results.add(row)
        print(f"{row['model']} {row['describe']} b{batch}: measured {common.fmt(row.get('measured_gib'))} GiB, "
              f"estimated {row['estimated_gib']:.2f} GiB, error {common.fmt(row.get('error_pct'), 1)}%, "
              f"step {common.fmt(row.get('step_s'))} s, cache {row.get('cache_vision_features_on')}, "
              f"fused {row.get('fused_cross_entropy_on')} {row.get('error', '')}", flush=True)
    source.models.clear()
    common.free_memory()


# -- CPU: the tiny model --------------------------------------------------------------------------------
def enable_checkpointing_like_trainer(wrapper) -> None:
    """What ``build_trainer`` + ``Trainer`` do for ``gradient_checkpointing=True``."""
    model = wrapper.model
    model.get_input_embeddings().register_forward_hook(lambda module, inputs, output: output.requires_grad_(True))
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    enable()


def cpu_rows(results, plan, records):
    from uivlm_helpers.models.wrapper import VLMWrapper
    from uivlm_helpers.training.collate import UICollator
    from uivlm_helpers.training.profiling import profile_training_peak

    name = "uivlm/tiny-qwen2-vl"
    for recipe, batch, fast in plan:
        # profile_training_peak runs the plain forward (pixels through the tower, plain loss): estimate that.
        config = common.run_config(name, "cpu", "float32", training__batch_size=batch, **RECIPES[recipe],
                                   **FAST["plain"])
        config.data.image_width = config.data.image_height = 224
        row = _row_header(name, recipe, batch, config)
        try:
            wrapper = VLMWrapper.from_config(config)
            if config.training.gradient_checkpointing:
                enable_checkpointing_like_trainer(wrapper)
            batch_inputs = UICollator(wrapper)(records[:batch])
            image_tokens = int((batch_inputs["input_ids"][0] == wrapper.model.config.image_token_id).sum())
            seq = int(batch_inputs["input_ids"].shape[1])
            measured = profile_training_peak(wrapper, batch_inputs, steps=2)
            row.update(sequence_tokens=seq, image_tokens=image_tokens, text_tokens=seq - image_tokens,
                       step_s=measured["step_s"], rss_peak_gib=measured.get("rss_peak_gib"),
                       trainable_params=sum(p.numel() for p in wrapper.model.parameters() if p.requires_grad))
            estimate = _estimate(config, (224, 224), seq - image_tokens)
            _finish_row(row, estimate, measured["peak_gib"])
        except Exception as error:  # noqa: BLE001
            row["error"] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
        results.add(row)
        print(f"tiny {recipe} b{batch}: measured {common.fmt(row.get('measured_gib'), 4)} GiB, "
              f"estimated {common.fmt(row.get('estimated_gib'), 4)} GiB, error {common.fmt(row.get('error_pct'), 1)}%",
              flush=True)


# -- the seed's table -----------------------------------------------------------------------------------
SEED_RECIPES = [  # (label, recipe, batch, fast)
    ("workbook default: LoRA all, batch 4, no ckpt, fast path auto", "lora_all", 4, "auto"),
    ("seed's targets: LoRA q,v, batch 1, no ckpt, plain", "lora_qv", 1, "plain"),
    ("LoRA all, batch 1, ckpt, plain", "lora_all_ckpt", 1, "plain"),
    ("LoRA all, batch 1, ckpt, fast path auto", "lora_all_ckpt", 1, "auto"),
    ("QLoRA nf4 all, batch 1, ckpt, plain", "qlora_all_ckpt", 1, "plain"),
    ("QLoRA nf4 all, batch 1, ckpt, fast path auto", "qlora_all_ckpt", 1, "auto"),
    ("QLoRA nf4 all, batch 1, ckpt, max_pixels 512 tokens, fast path auto", "qlora_all_ckpt_512", 1, "auto"),
]


def seed_table(rows: list[dict], device: str, liger: bool | None = None) -> list[dict]:
    """Estimated (and measured, where a GPU row exists) memory per recipe beside the seed's figures."""
    measured = {(r["model_name"], r["recipe"], r["batch"], r.get("fast", "plain")): r
                for r in rows if r.get("measured_gib")}
    table = []
    for name, seed_gb in SEED_GB.items():
        for label, recipe, batch, fast in SEED_RECIPES:
            settings = dict(FAST[fast])
            if fast == "auto" and liger is not None:  # estimate as on the machine that measured (liger or not)
                settings["training__fused_cross_entropy"] = "true" if liger else "false"
            config = common.run_config(name, "cuda", "bfloat16", training__batch_size=batch, **RECIPES[recipe],
                                       **settings)
            estimate = _estimate(config, SCREEN, None)
            row = {"model": SHORT[name], "seed_gb": seed_gb, "recipe": label,
                   "estimated_total_gib": estimate["total_gib"], "estimated_total_gb": estimate["total_gib"] * GIB / 1e9,
                   "estimate_assumes": {k: estimate["assumptions"].get(k) for k in
                                        ("cache_vision_features", "fused_cross_entropy")},
                   "sequence_tokens": estimate["sequence_tokens"]}
            got = measured.get((name, recipe, batch, fast)) or (measured.get((name, recipe, batch, "fused"))
                                                                 if fast == "auto" else None)
            if got and got.get("fast") == "fused":
                row["recipe"] += " (measured: fused CE only, the cached-feature row failed)"
            if got and device.startswith("cuda"):
                # What the device must hold: the allocator's peak reserve (it keeps what building the trainer -
                # the feature cache and its self-check - took) + the CUDA context.
                device_gib = got["peak_reserved_gib"] + got.get("cuda_context_gib", 0.5)
                row.update(measured_alloc_gib=got["measured_gib"], measured_alloc_gb=got["measured_gib"] * GIB / 1e9,
                           measured_build_peak_gb=(got.get("build_peak_gib") or 0) * GIB / 1e9,
                           measured_device_gib=device_gib, measured_device_gb=device_gib * GIB / 1e9)
            best = row.get("measured_device_gb") or row["estimated_total_gb"]
            row["share_of_seed"] = best / seed_gb
            row["meets_60pct"] = best <= TARGET_SHARE * seed_gb
            table.append(row)
    return table


SEED_COLUMNS = [("model", "model"), ("seed_gb", "seed GB"), ("recipe", "recipe"),
                ("estimated_total_gb", "estimated GB (total)"), ("measured_alloc_gb", "measured train peak GB"),
                ("measured_build_peak_gb", "measured build peak GB"),
                ("measured_device_gb", "measured device GB"), ("share_of_seed", "× seed"), ("meets_60pct", "≤60%?")]
ROW_COLUMNS = [("model", "model"), ("describe", "recipe"), ("batch", "batch"), ("sequence_tokens", "tokens/sample"),
               ("measured_gib", "measured GiB"), ("estimated_gib", "estimated GiB"), ("error_pct", "error %"),
               ("step_s", "step s"), ("note", "note")]


def print_rows(rows):
    shown = []
    for row in rows:
        row = dict(row)
        row["note"] = row.get("skipped") or row.get("error") or ("within ±10%" if row.get("error_pct") is not None
                                                                 and abs(row["error_pct"]) <= 10 else
                                                                 "off by more than 10%" if row.get("error_pct") is not None
                                                                 else "")
        shown.append(row)
    return common.print_table(shown, ROW_COLUMNS, "estimator vs measured peak (allocated)")


def summarize(path: Path) -> dict:
    """Tables of a saved results file; the seed table is recomputed (estimates as on the measuring machine)."""
    data = json.loads(path.read_text())
    device = data.get("device", "cpu")
    print_rows(data["rows"])
    liger = any(r.get("fused_cross_entropy_on") for r in data["rows"]) if device.startswith("cuda") else None
    data["seed_table"] = seed_table(data["rows"], device, liger=liger)
    common.print_table(data["seed_table"], SEED_COLUMNS,
                       "the seed's memory table vs the workbook's recipes (GB = 1e9 bytes; 1288x728 screenshots)")
    errors = [abs(r["error_pct"]) for r in data["rows"] if r.get("error_pct") is not None]
    if errors:
        data["summary"] = {"rows_measured": len(errors), "within_10pct": sum(e <= 10 for e in errors),
                           "max_abs_error_pct": max(errors)}
        print(f"\n{data['summary']}")
    path.write_text(json.dumps(data, indent=2, default=common._jsonable) + "\n")
    return data


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (tiny model) or cuda (full-size models)")
    parser.add_argument("--models", default="2b,7b", help="GPU: comma-separated from 2b, 7b")
    parser.add_argument("--append", action="store_true", help="add rows to an existing results file")
    parser.add_argument("--shrink", type=int, default=None,
                        help="rehearsal: full widths but this many text/vision layers (e.g. on CPU)")
    parser.add_argument("--screen", default=None, help="WxH screenshot for the full-size path (default 1288x728)")
    parser.add_argument("--plan", default=None, help="recipe:batch[:plain|auto],... instead of the built-in plan")
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--summarize", default=None,
                        help="print the tables of a results file (and recompute its seed table); no training")
    args = parser.parse_args(argv)

    if args.summarize:
        return summarize(Path(args.summarize))

    import torch

    full_size = args.device.startswith("cuda") or args.shrink
    path = common.results_path("bench_memory" + ("_rehearsal" if args.shrink and not args.device.startswith("cuda") else ""),
                               args.device, args.out_dir)
    previous = json.loads(path.read_text()) if args.append and path.is_file() else None
    results = common.Results(path, "bench_memory", COMMAND_GPU if args.device.startswith("cuda") else COMMAND_CPU,
                             device=args.device)
    if previous:
        results.data["rows"] = previous.get("rows", [])
        results.data["builds"] = previous.get("builds", [])
        results.data["notes"] = previous.get("notes", [])
    screen = tuple(int(v) for v in args.screen.split("x")) if args.screen else SCREEN
    if args.device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        context = (total - free - torch.cuda.memory_reserved()) / GIB
        results.data["cuda_context_gib"] = context
    plan_override = ([(p.split(":")[0], int(p.split(":")[1]), p.split(":")[2] if p.count(":") > 1 else "plain")
                      for p in args.plan.split(",")] if args.plan else None)
    with tempfile.TemporaryDirectory() as tmp:
        if full_size:
            records = common.synthetic_records(8, tmp, size=screen)
            for key in args.models.split(","):
                dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
                try:
                    gpu_model_rows(results, key, args.device, dtype, plan_override or GPU_PLAN[key], records,
                                   shrink=args.shrink, screen=screen)
                except Exception as error:  # noqa: BLE001 - e.g. the model does not fit: keep the rest
                    traceback.print_exc()
                    results.note(f"{key}: {type(error).__name__}: {error}")
                    common.free_memory()
        else:
            records = common.synthetic_records(8, tmp, size=(224, 224))
            cpu_rows(results, plan_override or CPU_PLAN, records)
    for row in results.data["rows"]:
        row.setdefault("cuda_context_gib", results.data.get("cuda_context_gib", 0.5))
    print_rows(results.data["rows"])
    if args.device.startswith("cuda") and not args.shrink:
        results.data["seed_table"] = seed_table(results.data["rows"], args.device)
        common.print_table(results.data["seed_table"], SEED_COLUMNS,
                           "the seed's memory table vs the workbook's recipes (GB = 1e9 bytes; 1288x728 screenshots)")
    errors = [abs(r["error_pct"]) for r in results.data["rows"] if r.get("error_pct") is not None]
    if errors:
        results.data["summary"] = {"rows_measured": len(errors), "within_10pct": sum(e <= 10 for e in errors),
                                   "max_abs_error_pct": max(errors)}
        print(f"\n{results.data['summary']}")
    results.save()
    print(f"saved {path}")
    return results.data


if __name__ == "__main__":
    main()
