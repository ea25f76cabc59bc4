"""Pretrain a tiny model of a real VLM architecture from random weights on task screens.

    python -m recipes.pretrain --family qwen2_vl --run-dir runs/pretrain --out models/tiny-qwen2-vl-ui

The model is a Qwen2-VL (real config, tokenizer, processor and model classes, as in :mod:`uivlm_helpers.models.tiny`) with
the dimensions of a :data:`SHAPES` entry, trained in full (``use_lora: false``) with the *same*
``Trainer``, ``UICollator`` and run configuration as notebook 03 (:func:`uivlm_helpers.training.train.build_trainer`); this
module only adds what pretraining needs around it:

* an endless stream of task screens (:mod:`uivlm_helpers.data.synth_tasks`), drawn lazily in dataloader workers,
  so no data set has to be written first (on a GPU use many workers: drawing and processing the
  screens, ~15 ms a sample, is what limits the speed);
* a curriculum: one widget per screen for the first ``single_steps`` steps (pure pointing), then
  3-5 widgets; *coarse* answers for the first ``coarse_steps`` steps - the target point moved to the
  centre of its 100x100 cell of the 0-1000 grid (``click(350, 650)``) - then exact ones. From random
  weights the exact 3-digit answers plateau at the digits' marginal distribution; coarse answers are
  what broke that plateau in this project's runs (``bench/results/pretrain_recipes_cpu.json``);
* a warmup-stable-decay learning-rate schedule (high through the switches, decayed at the end),
  optionally planned from a time budget (``--time-budget-s``: the step count is fitted to the
  measured speed and recorded in ``plan.json``);
* click accuracy on held-out screens every ``eval_every`` steps (``curve.json``, ``curve.png``);
* resume: Trainer checkpoints in ``run_dir/checkpoints``; ``--resume`` continues from the newest
  (with the weights loaded correctly, see :class:`uivlm_helpers.training.train.UITrainer`).

The result is saved like a Hub checkpoint (config, safetensors, tokenizer, processor): it loads
with ``VLMWrapper(model_name=<folder>)`` / ``from_pretrained``.

Measured (``models/tiny-qwen2-vl-ui/TRAINING.md``, ``bench/results/pretrain_recipes_cpu.json``): the
defaults below are the CPU recipe (7,000 steps of batch 32, about 25 minutes on 2 cores, 49% of held-out
screens); the shipped base ran the same curriculum on a GPU with batch 128 and a 300 s time budget
(3,929 steps, 62%). One small widget per screen in the first stage, or mixed widgets from the start,
kept the loss at the plateau. ``--init`` continues a saved base instead of starting from random weights:
the shipped base is that GPU run continued on the CPU for 1,000 steps on place words (``--families
extreme --places leftmost,topmost``, about 4 minutes).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import TrainerCallback

from uivlm_helpers.core.config import DEFAULT_TASK_PROMPT, load_config
from uivlm_helpers.data import synth_tasks
from uivlm_helpers.data.schema import read_records
from uivlm_helpers.data.run_data import as_plain
from uivlm_helpers.evaluation.evaluate import compute_metrics, predict_records
from uivlm_helpers.families.qwen2_vl import FAMILY as QWEN2_VL_FAMILY, build_tiny as build_tiny_qwen2_vl
from uivlm_helpers.families.registry import get_family
from uivlm_helpers.models.tiny import TINY_QWEN2_VL_RECIPE
from uivlm_helpers.models.wrapper import AGENT_FILE, VLMWrapper
from uivlm_helpers.training.train import build_trainer

#: Model shapes (Qwen2-VL dimensions): tiny 1.1 M parameters, small 3.8 M, base 5.4 M.
SHAPES = {
    "tiny": {"text": {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "num_key_value_heads": 2, "mrope_section": [4, 6, 6]},
             "vision": {"depth": 2, "embed_dim": 128, "num_heads": 4}},
    "small": {"text": {"hidden_size": 192, "intermediate_size": 512, "num_hidden_layers": 4,
                       "num_attention_heads": 6, "num_key_value_heads": 2, "mrope_section": [4, 6, 6]},
              "vision": {"depth": 4, "embed_dim": 192, "num_heads": 6}},
    "base": {"text": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
                      "num_attention_heads": 8, "num_key_value_heads": 2, "mrope_section": [4, 6, 6]},
             "vision": {"depth": 4, "embed_dim": 192, "num_heads": 6}},
}
#: The families pretraining builds (its shapes are Qwen2-VL dimensions).
FAMILIES_BUILT = (QWEN2_VL_FAMILY.name,)
CURVE_FILE = "curve.json"


@dataclass
class PretrainOptions:
    """Everything one pretraining run depends on (written to ``run_dir/pretrain_options.json``)."""

    family: str = QWEN2_VL_FAMILY.name
    shape: str = "tiny"
    seed: int = 0
    image_size: int = 224          # side of the drawn screens (pixels)
    input_side: int = 112          # side the processor resizes them to (its max_pixels = side^2); 0: image_size
    families: list[str] = field(default_factory=lambda: ["colour"])
    family_weights: list[float] | None = None
    colours: list[str] | None = field(default_factory=lambda: list(synth_tasks.BASE_COLOURS))  # None: any colour
    places: list[str] | None = None  # words "extreme" instructions may use (None: any of synth_tasks.PLACES)
    min_candidates: int = 1        # screens where the instruction's family names at least this many widgets
    init: str | None = None        # start from this checkpoint folder instead of random weights (shape ignored)
    task_prompt: str | None = "{instruction}"  # None: the workbook's default task prompt
    screens: str = "boxes"         # after the one-box stage: "boxes" (large buttons) or "widgets" (mixed kinds)
    n_widgets: list[int] = field(default_factory=lambda: [3, 5])
    max_steps: int = 7000
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    adam_beta2: float = 0.95       # below Adam's 0.999: runs at 2e-3 with 0.999 had loss spikes that undid progress
    warmup_steps: int = 100
    schedule: str = "wsd"          # wsd (warmup, stable, decay over the last decay_fraction) | cosine | constant
    decay_fraction: float = 0.2
    coarse_steps: int = 4000       # curriculum: coarse answers before this step, exact ones from it
    coarse_fraction: float = 0.0   # >0: coarse answers for this share of the (planned) steps instead
    single_steps: int = 1500       # curriculum: one large button per screen before this step
    eval_every: int = 500
    eval_size: int = 128
    checkpoint_every: int = 1000
    workers: int = -1              # dataloader workers; -1: one per spare CPU core (up to 15) on a GPU, 0 on CPU
    time_budget_s: float = 0.0     # >0: plan the number of steps from the measured speed (max_steps caps it)
    device: str = "auto"           # auto: cuda when available, else cpu
    mixed_precision: str = "no"


# --- model -----------------------------------------------------------------------------------------

def recipe_for(shape: str, seed: int = 0, image_size: int = 224) -> dict:
    # image_size here is the processor's input side: screens larger than it are scaled down to it.
    """The :mod:`uivlm_helpers.models.tiny` Qwen2-VL recipe with the dimensions of ``SHAPES[shape]``."""

    if shape not in SHAPES:
        raise ValueError(f"shape: expected one of {sorted(SHAPES)}, got {shape!r}")
    base = json.loads(json.dumps(TINY_QWEN2_VL_RECIPE))
    base["seed"] = seed
    base["text"].update(SHAPES[shape]["text"])
    base["vision"].update(SHAPES[shape]["vision"])
    base["max_pixels"] = image_size * image_size
    base["min_pixels"] = min(base["min_pixels"], base["max_pixels"])
    return base


def build_initial_checkpoint(out_dir: str | Path, shape: str, seed: int = 0, image_size: int = 224) -> Path:
    """Write a randomly initialised Qwen2-VL of ``shape`` (safetensors + processor) to ``out_dir``."""

    out = Path(out_dir)
    recipe = recipe_for(shape, seed, image_size)
    if (out / "model.safetensors").is_file() and (out / "uivlm_recipe.json").is_file():
        if json.loads((out / "uivlm_recipe.json").read_text()) == recipe:
            return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    build_tiny_qwen2_vl(out, recipe)
    (out / "uivlm_recipe.json").write_text(json.dumps(recipe, indent=2, sort_keys=True))
    return out


# --- data ------------------------------------------------------------------------------------------

def coarse_action(action: dict, image_size) -> dict:
    """The click moved to the centre of its 100x100 cell of the 0-1000 grid (in pixels)."""
    width, height = image_size

    def snap(value, side):
        unit = min(999, int(value * 1000 / side))
        return (unit // 100 * 100 + 50 + 0.5) * side / 1000

    return {**action, "x": snap(action["x"], width), "y": snap(action["y"], height)}


class TaskStream(torch.utils.data.Dataset):
    """``length`` task examples of ``(split, seed)``, drawn when asked for (in dataloader workers).

    ``coarse`` is a shared flag (a ``multiprocessing.Value``, visible to forked workers): while it is
    set, answers are coarse (:func:`coarse_action`).
    """

    def __init__(self, length: int, seed: int, options: PretrainOptions, split: str = "train"):
        self.length, self.seed, self.split = length, seed, split
        self.options = options
        self.coarse = multiprocessing.Value("b", 0)
        self.single = multiprocessing.Value("b", 0)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        o = self.options
        families, weights, n_widgets = o.families, o.family_weights, tuple(o.n_widgets)
        single = bool(self.single.value)
        if single:  # one large button: named by its label, kind or colour, not its place
            keep = [i for i, f in enumerate(families) if f in ("label", "kind", "colour")] or [0]
            families = [families[i] for i in keep]
            weights = [weights[i] for i in keep] if weights else None
        example = synth_tasks.task_example(self.split, self.seed, int(index), families, weights,
                                           (o.image_size, o.image_size), n_widgets, colours=o.colours, box=single,
                                           boxes=o.screens == "boxes", places=o.places,
                                           min_candidates=1 if single else o.min_candidates)
        if self.coarse.value:
            example["action"] = coarse_action(example["action"], example["image_size"])
        return example


def heldout_examples(options: PretrainOptions, n: int, families=None) -> list[dict]:
    """``n`` held-out examples (split ``test``: never the training screens)."""
    o = options
    return [synth_tasks.task_example("test", o.seed, i, families or o.families, o.family_weights,
                                     (o.image_size, o.image_size), tuple(o.n_widgets), colours=o.colours,
                                     boxes=o.screens == "boxes", places=o.places, min_candidates=o.min_candidates)
            for i in range(n)]


# --- callbacks -------------------------------------------------------------------------------------

class CurriculumCallback(TrainerCallback):
    """Coarse answers before ``coarse_steps`` (or ``fraction`` of the schedule's planned steps), exact
    ones after (also right after a resume)."""

    def __init__(self, stream: TaskStream, coarse_steps: int, fraction: float = 0.0, schedule=None,
                 single_steps: int = 0):
        self.stream, self.coarse_steps, self.fraction, self.schedule = stream, coarse_steps, fraction, schedule
        self.single_steps = single_steps

    def _set(self, step):
        end = int(self.fraction * self.schedule.total) if self.fraction and self.schedule else self.coarse_steps
        self.stream.coarse.value = 1 if step < end else 0
        self.stream.single.value = 1 if step < self.single_steps else 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._set(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        self._set(state.global_step)


def evaluate_accuracy(wrapper, records, batch_size: int = 64) -> dict:
    """Click accuracy (overall and by instruction family) and parse rate of ``wrapper`` on ``records``,
    with the instruction-blind baseline, the distractor click rate and the accuracy by number of
    candidates (see :func:`uivlm_helpers.evaluation.evaluate.compute_metrics`)."""

    rows = predict_records(wrapper, records, batch_size=batch_size, progress=False)
    by_family: dict[str, list[bool]] = {}
    for record, row in zip(records, rows):
        by_family.setdefault(record.get("family", "all"), []).append(bool(row["click_correct"]))
    metrics = compute_metrics(rows)
    return {"n": metrics["n"], "click_accuracy": metrics["click_accuracy"], "parse_rate": metrics["parse_rate"],
            "by_family": {f: sum(v) / len(v) for f, v in sorted(by_family.items())},
            "blind_baseline": metrics["blind_baseline"], "distractor_click_rate": metrics["distractor_click_rate"],
            "by_candidates": {k: {"n": m["n"], "click_accuracy": m["click_accuracy"],
                                  "blind_baseline": m["blind_baseline"]}
                              for k, m in metrics.get("by_candidates", {}).items()}}


class AccuracyCurve(TrainerCallback):
    """Held-out click accuracy every ``every`` steps and at the end, appended to ``run_dir/curve.json``."""

    def __init__(self, wrapper, records, every: int, run_dir: Path, batch_size: int = 64):
        self.wrapper, self.records, self.every = wrapper, records, every
        self.path = Path(run_dir) / CURVE_FILE
        self.points = json.loads(self.path.read_text()) if self.path.is_file() else []
        self.started = time.time()
        self.batch_size = batch_size

    def _measure(self, state):
        if any(p["step"] == state.global_step for p in self.points):
            return
        t0 = time.time()
        result = evaluate_accuracy(self.wrapper, self.records, self.batch_size)
        loss = next((h["loss"] for h in reversed(state.log_history) if "loss" in h), None)
        point = {"step": state.global_step, **result, "train_loss": loss,
                 "elapsed_s": round(time.time() - self.started, 1), "eval_s": round(time.time() - t0, 1)}
        self.points.append(point)
        self.path.write_text(json.dumps(self.points, indent=1))
        fam = " ".join(f"{k}={v:.2f}" for k, v in point["by_family"].items())
        blind = result.get("blind_baseline")
        print(f"[step {state.global_step}] held-out click accuracy {result['click_accuracy']:.3f} ({fam}) "
              + (f"instruction-blind baseline {blind:.3f} " if blind is not None else "")
              + f"parse {result['parse_rate']:.2f} loss {loss} t={point['elapsed_s']}s", flush=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.every and state.global_step % self.every == 0:
            self._measure(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._measure(state)


class PrintLoss(TrainerCallback):
    def on_train_begin(self, args, state, control, **kwargs):
        self.t0 = time.time()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            print(f"step {state.global_step} loss {logs['loss']:.4f} lr {logs.get('learning_rate', 0):.2e} "
                  f"t={time.time() - self.t0:.0f}s", flush=True)


class WSDSchedule:
    """Warmup, stable, decay (cosine over the last ``decay_fraction``) learning-rate factor by step.

    ``total`` can be re-planned while training (:class:`TimeBudget`) until the decay has begun; as a
    callable object its state is saved with the Trainer's scheduler, so a resumed run keeps its plan.
    """

    def __init__(self, warmup: int, total: int, decay_fraction: float, min_ratio: float = 0.02):
        self.warmup, self.total, self.decay_fraction, self.min_ratio = warmup, total, decay_fraction, min_ratio

    @property
    def decay_start(self) -> int:
        return int(self.total * (1 - self.decay_fraction))

    def __call__(self, step: int) -> float:
        import math

        if step < self.warmup:
            return (step + 1) / self.warmup
        if step < self.decay_start:
            return 1.0
        progress = min(1.0, (step - self.decay_start) / max(1, self.total - self.decay_start))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class TimeBudget(TrainerCallback):
    """Stop at the schedule's planned last step; with a time budget, plan it from the measured speed.

    Until the decay phase starts, ``schedule.total`` is re-planned after every step so that the run
    (evaluations included) ends ``reserve_s`` before ``budget_s``; then the plan is frozen.
    """

    def __init__(self, schedule: WSDSchedule, budget_s: float, cap: int, run_dir: Path, reserve_s: float = 25.0):
        self.schedule, self.budget_s, self.cap, self.reserve_s = schedule, budget_s, cap, reserve_s
        self.plan_file = Path(run_dir) / "plan.json"

    def on_train_begin(self, args, state, control, **kwargs):
        self.t0, self.step0, self.frozen = time.time(), state.global_step, False

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        if self.budget_s and not self.frozen and step - self.step0 >= 20:
            elapsed = time.time() - self.t0
            per_step = elapsed / (step - self.step0)
            planned = step + int((self.budget_s - self.reserve_s - elapsed) / per_step)
            self.schedule.total = max(step + 1, min(self.cap, planned))
        if step >= self.schedule.decay_start and not self.frozen:
            self.frozen = True
            self.plan_file.write_text(json.dumps({"planned_steps": self.schedule.total, "frozen_at": step}))
            print(f"[step {step}] learning-rate decay begins; the run ends at step {self.schedule.total}",
                  flush=True)
        if step >= self.schedule.total:
            control.should_training_stop = True


class PositionCollator:
    """:class:`uivlm_helpers.training.collate.UICollator`'s batch plus Qwen2-VL's M-RoPE ``position_ids``.

    The model computes the same ids itself when they are missing, in a Python loop over the batch;
    computed here they are built in the dataloader workers, off the training process.
    """

    def __init__(self, collator, model):
        self.collator, self.model = collator, model
        self.failed = False

    def __call__(self, records):
        batch = self.collator(records)
        if not self.failed:
            try:
                position_ids, _ = self.model.model.get_rope_index(
                    input_ids=batch["input_ids"], mm_token_type_ids=batch["mm_token_type_ids"],
                    image_grid_thw=batch["image_grid_thw"], attention_mask=batch["attention_mask"])
                batch["position_ids"] = position_ids
            except TypeError as err:  # another transformers version: let the model compute them
                self.failed = True
                print(f"position ids left to the model ({err})", flush=True)
        return batch


# --- training --------------------------------------------------------------------------------------

def run_config(options: PretrainOptions, model_dir: Path):
    """The ordinary run configuration of a full fine-tune (``use_lora: false``) of ``model_dir``."""

    device = options.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    scheduler = {"wsd": "warmup_stable_decay", "cosine": "cosine", "constant": "constant_with_warmup"}
    if options.schedule not in scheduler:
        raise ValueError(f"schedule: expected one of {sorted(scheduler)}, got {options.schedule!r}")
    extra = {"task_prompt": options.task_prompt} if options.task_prompt else {}
    return load_config({
        **extra,
        "model": {"name": str(model_dir), "device": device, "use_lora": False, "freeze_vision_encoder": False,
                  "action_format": "text"},
        "training": {"batch_size": options.batch_size, "max_steps": options.max_steps,
                     "warmup_steps": options.warmup_steps, "lr_scheduler": scheduler[options.schedule],
                     "checkpoint_interval": options.checkpoint_every,
                     "logging_steps": max(1, min(25, options.max_steps // 2)),
                     "seed": options.seed, "mixed_precision": options.mixed_precision, "max_length": 512},
        "algorithm": {"learning_rate": options.learning_rate, "weight_decay": options.weight_decay},
    })


def pretrain(options: PretrainOptions, run_dir: str | Path, out_dir: str | Path | None = None,
             resume: bool = False) -> dict:
    """Train (or continue training) a base model; returns a summary and writes ``out_dir``.

    Args:
        run_dir: checkpoints, logs, ``curve.json`` and the initial random checkpoint (``init/``).
        out_dir: where the final model is saved like a Hub checkpoint (None: ``run_dir/final``).
        resume: continue from the newest checkpoint in ``run_dir/checkpoints`` when there is one.
    """
    from transformers.trainer_callback import ProgressCallback

    if options.family not in FAMILIES_BUILT:
        raise ValueError(f"family: pretraining builds {FAMILIES_BUILT}, got {options.family!r}")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    options_file = run_dir / "pretrain_options.json"
    checkpoints = sorted((run_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    resume_from = bool(resume and checkpoints)
    if resume_from and options_file.is_file():
        saved = json.loads(options_file.read_text())
        changed = {k for k, v in asdict(options).items() if saved.get(k) != v and k not in ("workers", "device", "time_budget_s")}
        if changed:
            raise ValueError(f"--resume: options differ from the interrupted run's ({sorted(changed)}); "
                             f"use the same options or a new run folder")
    if not resume_from:
        for stale in (run_dir / CURVE_FILE, run_dir / "logs" / "train.log", run_dir / "plan.json"):
            stale.unlink(missing_ok=True)
    elif (run_dir / CURVE_FILE).is_file():  # points measured after the checkpoint are measured again
        resumed_at = int(checkpoints[-1].name.split("-")[1])
        points = [p for p in json.loads((run_dir / CURVE_FILE).read_text()) if p["step"] <= resumed_at]
        (run_dir / CURVE_FILE).write_text(json.dumps(points, indent=1))
    options_file.write_text(json.dumps(asdict(options), indent=2))

    torch.manual_seed(options.seed)
    if options.init:
        init = Path(options.init)
        if not (init / "config.json").is_file() or not (init / "model.safetensors").is_file():
            raise FileNotFoundError(f"init: expected a checkpoint folder with config.json and model.safetensors, "
                                    f"got {options.init!r}")
    else:
        init = build_initial_checkpoint(run_dir / "init", options.shape, options.seed,
                                        options.input_side or options.image_size)
    config = run_config(options, init)
    wrapper = VLMWrapper.from_config(config)
    total = options.max_steps * options.batch_size
    stream = TaskStream(total, options.seed, options)
    heldout = heldout_examples(options, options.eval_size)

    logging.getLogger("transformers.trainer").setLevel(logging.WARNING)
    trainer, history = build_trainer(config, wrapper, stream, run_dir)
    args = trainer.args
    workers = options.workers
    if workers < 0:
        workers = min(15, max(0, (os.cpu_count() or 1) - 1)) if config.model.device.startswith("cuda") else 0
    args.dataloader_num_workers = workers
    if workers:
        args.dataloader_prefetch_factor = 4
        args.dataloader_persistent_workers = True
    args.save_total_limit = 2
    args.adam_beta2 = options.adam_beta2
    # M-RoPE positions are computed in the workers (get_rope_index), off the training step.
    if workers and get_family(options.family).rope_index:
        trainer.data_collator = PositionCollator(trainer.data_collator, wrapper.model)
    schedule = WSDSchedule(options.warmup_steps, options.max_steps, options.decay_fraction)
    if options.schedule == "wsd":
        def create_scheduler(num_training_steps, optimizer=None):
            if trainer.lr_scheduler is None:
                trainer.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or trainer.optimizer, schedule)
            return trainer.lr_scheduler

        trainer.create_scheduler = create_scheduler
        trainer.add_callback(TimeBudget(schedule, options.time_budget_s, options.max_steps, run_dir))
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(CurriculumCallback(stream, options.coarse_steps, options.coarse_fraction, schedule,
                                            options.single_steps))
    trainer.add_callback(AccuracyCurve(wrapper, heldout, options.eval_every, run_dir))
    trainer.add_callback(PrintLoss())
    start = f"from {options.init}" if options.init else f"{options.family}/{options.shape}"
    print(f"pretraining {start} on {config.model.device}: "
          f"{wrapper.get_trainable_parameters()['total'] / 1e6:.2f} M parameters, {options.max_steps} steps x "
          f"{options.batch_size}, coarse answers until step {options.coarse_steps}"
          + (f", resuming from {checkpoints[-1].name}" if resume_from else ""), flush=True)
    started = time.time()
    output = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if resume_from else None)
    out = Path(out_dir) if out_dir else run_dir / "final"
    save_base(wrapper, out)
    curve = json.loads((run_dir / CURVE_FILE).read_text()) if (run_dir / CURVE_FILE).is_file() else []
    return {"global_step": output.global_step, "train_loss": output.training_loss,
            "resumed_from": int(checkpoints[-1].name.split("-")[1]) if resume_from else None,
            "runtime_s": round(time.time() - started, 1), "out_dir": str(out), "curve": curve}


def save_base(wrapper, out_dir: str | Path, dtype: str = "float16") -> Path:
    """Save the model like a Hub checkpoint: config, safetensors (in ``dtype``, half the size of
    float32), tokenizer, processor; plus, when it was trained with another prompt than the workbook's
    default, a ``uivlm_agent.json`` holding only that prompt."""
    import copy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(wrapper.model).to("cpu", getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    wrapper.processor.save_pretrained(out)
    if wrapper.task_prompt != DEFAULT_TASK_PROMPT:
        # The prompt it was trained with travels with it: VLMWrapper uses it by default.
        (out / AGENT_FILE).write_text(json.dumps({"adapter": False, "task_prompt": wrapper.task_prompt,
                                                  "system_prompt": wrapper.system_prompt}, indent=2))
    return out


SMALL_HELDOUT = "heldout_small"


def write_base_report(options: PretrainOptions, run_dir: str | Path, out_dir: str | Path, command: str,
                      heldout_n: int = 512, small_n: int = 48) -> dict:
    """Evaluate the saved base on held-out screens and put its record beside the weights.

    Writes to ``out_dir``: ``evaluation.json`` (click accuracy on ``heldout_n`` held-out screens, and on a
    small held-out set stored in ``heldout_small/`` that a test re-evaluates), ``curve.json`` /
    ``curve.png`` (accuracy against step), ``train.log`` and ``TRAINING.md`` (the command, seed, options,
    hardware and time).
    """
    import platform

    run_dir, out = Path(run_dir), Path(out_dir)
    agent = VLMWrapper(str(out))
    large = evaluate_accuracy(agent, heldout_examples(options, heldout_n))
    small_file = synth_tasks.generate_task_records(
        small_n, options.seed, out / SMALL_HELDOUT, "test", options.families, options.family_weights,
        (options.image_size, options.image_size), tuple(options.n_widgets), colours=options.colours,
        boxes=options.screens == "boxes", places=options.places, min_candidates=options.min_candidates)
    small_records = [as_plain(r) for r in read_records(small_file)]
    small = compute_metrics(predict_records(agent, small_records, batch_size=16, progress=False))
    evaluation = {
        "heldout": {**large, "split": "test", "seed": options.seed},
        "small_heldout": {"file": f"{SMALL_HELDOUT}/test.jsonl", "n": small_n,
                          "click_accuracy": small["click_accuracy"], "parse_rate": small["parse_rate"],
                          # a few answers may flip with another CPU's float arithmetic
                          "tolerance": round(3 / small_n, 3)},
    }
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2))
    curve = json.loads((run_dir / CURVE_FILE).read_text()) if (run_dir / CURVE_FILE).is_file() else []
    (out / CURVE_FILE).write_text(json.dumps(curve, indent=1))
    curve_figure(curve, out / "curve.png", title=f"{out.name}: held-out click accuracy vs step")
    if (run_dir / "logs" / "train.log").is_file():
        shutil.copy(run_dir / "logs" / "train.log", out / "train.log")
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available() and options.device != "cpu"
              else f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"{torch.get_num_threads()} torch threads")
    (out / "TRAINING.md").write_text("\n".join([
        f"# {out.name}: how it was trained", "",
        "A Qwen2-VL of real architecture (config, tokenizer, processor, model classes), pretrained "
        + (f"further from `{options.init}` (see its own TRAINING.md)" if options.init else "from random weights")
        + " on the project's task screens (`uivlm_helpers.data.synth_tasks`) with the project's own Trainer, "
        "collator and data path (`recipes/pretrain.py`).", "",
        "## Command", "", "```bash", command.strip(), "```", "",
        f"- seed {options.seed}; {summary.get('global_step', '?')} steps of batch {options.batch_size}; "
        f"{summary.get('runtime_s', '?')} s of training",
        f"- hardware: {device}",
        f"- options: `{json.dumps(asdict(options))}`", "",
        "## Held-out evaluation", "",
        f"- {large['n']} held-out screens (split `test`, never trained on): click accuracy "
        f"{large['click_accuracy']:.3f}, parse rate {large['parse_rate']:.3f}; by instruction family: "
        + ", ".join(f"{k} {v:.3f}" for k, v in large["by_family"].items()),
        f"- instruction-blind baseline (click one of the widgets the instruction's kind could name, at random): "
        f"{large['blind_baseline']:.3f}; clicks on another such widget: {large['distractor_click_rate']:.3f}; "
        "by number of candidates: " + ", ".join(
            f"{k}: {v['click_accuracy']:.3f} (blind {v['blind_baseline']:.3f}, n {v['n']})"
            for k, v in large["by_candidates"].items()),
        f"- `{SMALL_HELDOUT}/` ({small_n} screens, checked by the tests): click accuracy "
        f"{small['click_accuracy']:.3f}", "",
        "Accuracy against step: `curve.json`, `curve.png`; loss log: `train.log`.", ""]))
    return evaluation


def curve_figure(points: list[dict], path: str | Path | None = None, title: str | None = None):
    """Held-out click accuracy (overall and by family) against the training step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    steps = [p["step"] for p in points]
    ax.plot(steps, [p["click_accuracy"] for p in points], "o-", color="black", label="all")
    families = sorted({f for p in points for f in p.get("by_family", {})})
    for family in families:
        ax.plot(steps, [p["by_family"].get(family) for p in points], ".--", label=family)
    blind = [p.get("blind_baseline") for p in points]
    if any(b is not None for b in blind):  # what clicking any widget the instruction could name would score
        ax.plot(steps, blind, ":", color="grey", label="instruction-blind baseline")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out click accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "pretraining: accuracy vs step")
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def _parse(argv=None):
    defaults = PretrainOptions()
    p = argparse.ArgumentParser(prog="python -m recipes.pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--family", default=defaults.family, choices=FAMILIES_BUILT)
    p.add_argument("--shape", default=defaults.shape, choices=sorted(SHAPES))
    p.add_argument("--run-dir", default="runs/pretrain", help="checkpoints, logs and the accuracy curve")
    p.add_argument("--out", default=None, help="where the final model goes (default RUN_DIR/final)")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in RUN_DIR")
    for name in ("seed", "image_size", "input_side", "max_steps", "batch_size", "warmup_steps", "coarse_steps", "single_steps",
                 "eval_every",
                 "eval_size", "checkpoint_every", "workers"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("learning_rate", "weight_decay", "decay_fraction", "time_budget_s", "coarse_fraction",
                 "adam_beta2"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    p.add_argument("--schedule", default=defaults.schedule, choices=("wsd", "cosine", "constant"))
    p.add_argument("--families", default=",".join(defaults.families))
    p.add_argument("--family-weights", default=None, help="comma-separated, one per family")
    p.add_argument("--screens", default=defaults.screens, choices=("widgets", "boxes"),
                   help="screens after the one-box stage: mixed widgets or large buttons")
    p.add_argument("--task-prompt", default=defaults.task_prompt,
                   help="task prompt template ('' for the workbook's default prompt)")
    p.add_argument("--colours", default=",".join(defaults.colours or []),
                   help="comma-separated colours that colour instructions may name ('' for any)")
    p.add_argument("--places", default="", help="comma-separated words extreme instructions may use "
                   f"(from {','.join(synth_tasks.PLACES)}; '' for any)")
    p.add_argument("--min-candidates", type=int, default=defaults.min_candidates,
                   help="only screens where the instruction's family can name at least this many widgets")
    p.add_argument("--init", default=None, help="continue from this checkpoint folder (a saved base) instead of "
                   "random weights; --shape and --input-side are then the checkpoint's")
    p.add_argument("--n-widgets", default="3,5", help="least,most widgets per screen")
    p.add_argument("--device", default=defaults.device)
    p.add_argument("--report", action="store_true",
                   help="evaluate the result on held-out screens and write its record (TRAINING.md, curve, log) "
                        "beside the weights")
    p.add_argument("--report-size", type=int, default=512, help="held-out screens for --report")
    p.add_argument("--mixed-precision", default=defaults.mixed_precision, choices=("no", "bf16", "fp16"))
    a = p.parse_args(argv)
    options = PretrainOptions(
        family=a.family, shape=a.shape, seed=a.seed, image_size=a.image_size, input_side=a.input_side, families=a.families.split(","),
        family_weights=[float(w) for w in a.family_weights.split(",")] if a.family_weights else None,
        colours=a.colours.split(",") if a.colours else None, places=a.places.split(",") if a.places else None,
        min_candidates=a.min_candidates, init=a.init, task_prompt=a.task_prompt or None, screens=a.screens,
        n_widgets=[int(v) for v in a.n_widgets.split(",")], max_steps=a.max_steps, batch_size=a.batch_size,
        learning_rate=a.learning_rate, weight_decay=a.weight_decay, adam_beta2=a.adam_beta2,
        warmup_steps=a.warmup_steps,
        schedule=a.schedule, decay_fraction=a.decay_fraction, coarse_steps=a.coarse_steps,
        single_steps=a.single_steps,
        eval_every=a.eval_every, eval_size=a.eval_size, checkpoint_every=a.checkpoint_every, workers=a.workers,
        time_budget_s=a.time_budget_s, coarse_fraction=a.coarse_fraction,
        device=a.device, mixed_precision=a.mixed_precision)
    return options, a


def main(argv=None) -> int:
    options, a = _parse(argv)
    summary = pretrain(options, a.run_dir, a.out, resume=a.resume)
    run_dir = Path(a.run_dir)
    if summary["curve"]:
        curve_figure(summary["curve"], run_dir / "curve.png")
    (run_dir / "command.txt").write_text("python -m recipes.pretrain " + " ".join(
        sys.argv[1:] if argv is None else argv) + "\n")
    (run_dir / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=2))
    if a.report:
        command = (run_dir / "command.txt").read_text()
        evaluation = write_base_report(options, run_dir, summary["out_dir"], command, a.report_size,
                                       min(48, a.report_size))
        print(json.dumps(evaluation, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
