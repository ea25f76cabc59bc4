"""Fine-tuning with ``transformers.Trainer``: the arguments, the trainer and the run's callbacks.

There is no hand-written training loop: a :class:`~.collate.UICollator` turns records into the family's model
inputs with answer-only labels, and the Trainer does the rest (optimizer, schedule, accumulation,
mixed precision, checkpoints, resume, accelerate for several GPUs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from accelerate import PartialState, notebook_launcher
from IPython.display import display
from torch.utils.tensorboard import SummaryWriter
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.integrations import TensorBoardCallback

from ..core.config import RunConfig, load_config
from ..core.paths import RunPaths
from ..data import run_data
from ..models.wrapper import VLMWrapper, non_finite_parameters
from .checkpointing import PartialCheckpointing, checkpointed_layer_count, resolve_uncheckpointed_layers
from .collate import UICollator
from .features import prepare_fast_path


COMPLETE_MARKER = "uivlm-checkpoint-complete"
RUN_LOSS_FILE = "uivlm-run-loss.json"   # the loss summed over every step up to the checkpoint
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class NonFiniteTrainingError(RuntimeError):
    """Training produced a non-finite loss, gradient or weight and was stopped."""


def _what_to_try(args) -> str:
    precision = " or train in full precision (training.mixed_precision: no)" if args.fp16 or args.bf16 else ""
    return (f"try a lower algorithm.learning_rate (now {args.learning_rate:g}), more training.warmup_steps"
            f"{precision}; a non-finite value from the first step points at the data or model.torch_dtype")


class DivergenceGuard(TrainerCallback):
    """Stops training before an update with a non-finite gradient norm reaches the weights.

    The Trainer clips such gradients into nan and steps anyway, after which every loss is nan (or
    reads 0.0) and the saved agent is all nan. Checked on every step: one more norm over the
    gradients, small next to the step itself. Not under fp16, where an overflowing gradient is
    routine: the loss scaler skips that step and lowers its scale.
    """

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        grads = [p.grad for p in model.parameters() if p.grad is not None] if not args.fp16 else []
        if not grads:
            return
        norm = torch.nn.utils.get_total_norm(grads)
        if not torch.isfinite(norm):
            raise NonFiniteTrainingError(
                f"training stopped at step {state.global_step + 1}: the gradient norm is {norm.item()}; the step's "
                f"update was not applied and no trained agent is saved. {_what_to_try(args)}")


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def seal_checkpoint(folder: str | Path, global_step: int) -> None:
    """Mark a written checkpoint complete, recording every file's size and SHA-256.

    Hashing reads the checkpoint once more: nothing next to the save for a LoRA adapter, and for a
    full fine-tune's checkpoint (a 7B model with its optimizer state is ~45 GB) tens of seconds at
    disk speed per save. That is the price of telling a file damaged after sealing (cut short by a
    full disk, a bad copy) from an intact one before a resume loads it.
    """
    folder = Path(folder)
    pending = folder / f"{COMPLETE_MARKER}.tmp"
    files = {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": _file_sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (COMPLETE_MARKER, pending.name)}
    pending.write_text(json.dumps({"global_step": global_step, "files": files}, indent=1))
    os.replace(pending, folder / COMPLETE_MARKER)   # a kill while sealing leaves no seal, never half of one


def checkpoint_damage(folder: str | Path) -> str | None:
    """Why a sealed checkpoint no longer matches its seal (None: it does)."""
    folder = Path(folder)
    try:
        seal = json.loads((folder / COMPLETE_MARKER).read_text())
        files = seal.get("files", {}) if isinstance(seal, dict) else None
        if not isinstance(files, dict):
            raise ValueError(f"expected an object with a 'files' object, got {str(seal)[:80]!r}")
    except (OSError, ValueError) as error:
        return f"its seal {COMPLETE_MARKER} cannot be read ({error})"
    # A seal written before seals listed their files has none to check; it is trusted as it was then.
    # Sizes first: a file cut short is found without reading the others.
    for name, recorded in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != recorded["size"]:
            return f"{name} is {size} bytes; it was {recorded['size']} bytes when sealed"
    for name, recorded in files.items():
        if _file_sha256(folder / name) != recorded["sha256"]:
            return f"{name} does not match the SHA-256 recorded when it was sealed"
    return None


def _move_aside(path: Path, prefix: str) -> Path:
    """Rename ``path`` to ``<prefix>-<name>``, or ``<prefix>-<name>-2``, ``-3``... when taken (a run
    killed twice while writing the same checkpoint leaves two of them)."""
    target, n = path.with_name(f"{prefix}-{path.name}"), 2
    while target.exists():
        target, n = path.with_name(f"{prefix}-{path.name}-{n}"), n + 1
    path.rename(target)
    return target


class CheckpointSealer(TrainerCallback):
    """Seals a checkpoint (:func:`seal_checkpoint`) once the Trainer has written all of it.

    The Trainer writes a checkpoint file by file; a process killed in between leaves a folder that
    looks like a checkpoint. Only sealed folders are ever resumed from, and a checkpoint holding
    non-finite weights is never sealed: training stops there instead.
    """

    def on_save(self, args, state, control, model=None, **kwargs):
        name = f"checkpoint-{state.global_step}"
        broken = non_finite_parameters(model) if model is not None else []
        if broken:
            shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
            raise NonFiniteTrainingError(
                f"{name} holds non-finite weights ({shown}): it is left unsealed, so no resume starts from "
                f"it, training stops at step {state.global_step} and no trained agent is saved. "
                f"{_what_to_try(args)}")
        if state.is_world_process_zero:
            seal_checkpoint(Path(args.output_dir) / name, state.global_step)


def last_complete_checkpoint(checkpoints_dir: str | Path, verify: bool = True) -> Path | None:
    """The newest sealed checkpoint that still matches its seal.

    Unsealed (half-written) folders are renamed ``incomplete-checkpoint-N``; a sealed one that no longer
    matches its seal is renamed ``damaged-checkpoint-N`` (kept, never deleted) and the next older one is
    checked, each with one printed line. ``verify=False`` skips the file checks (another process
    has made them).
    """
    folder = Path(checkpoints_dir)
    if not folder.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in folder.iterdir()
                    if p.is_dir() and (m := _CHECKPOINT.match(p.name))), reverse=True)
    complete = None
    for _, path in found:
        if not (path / COMPLETE_MARKER).is_file():
            moved = _move_aside(path, "incomplete")
            print(f"{path.name} was never sealed complete (training stopped while writing it): moved to {moved.name}")
        elif complete is None:
            damage = checkpoint_damage(path) if verify else None
            if damage is None:
                complete = path
            else:
                moved = _move_aside(path, "damaged")
                print(f"skipped {path.name}: {damage}; moved to {moved.name}, falling back to an older checkpoint")
    return complete


def loss_curve_figure(steps, losses, title: str = "training loss"):
    """A matplotlib figure of loss against step."""

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, losses, marker=".", color="tab:blue")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@dataclass
class LossHistory(TrainerCallback):
    """Collects (step, loss) as the Trainer logs them, redraws a live plot, and writes a text log.

    Args:
        log_file: the run's ``logs/train.log``.
        plot: redraw an inline loss curve while training (for interactive notebooks).
    """

    log_file: Path | None = None
    plot: bool = False
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def __post_init__(self):
        self._display = None

    def restore(self, up_to_step: int) -> None:
        """Reload the curve logged before a resumed checkpoint (and drop what came after it)."""
        entries = []
        if self.log_file and self.log_file.is_file():
            entries = [json.loads(line) for line in self.log_file.read_text().splitlines() if line.strip()]
        entries = [e for e in entries if e["step"] <= up_to_step and "loss" in e]
        self.steps = [e["step"] for e in entries]
        self.losses = [float(e["loss"]) for e in entries]
        if self.log_file:
            self.log_file.write_text("".join(json.dumps(e) + "\n" for e in entries))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs:
            return
        self.steps.append(state.global_step)
        self.losses.append(float(logs["loss"]))
        if self.log_file:
            with open(self.log_file, "a") as f:
                f.write(json.dumps({"step": state.global_step, **logs}) + "\n")
        if self.plot:
            self._redraw()

    def _redraw(self):
        fig = loss_curve_figure(self.steps, self.losses)
        if self._display is None:
            self._display = display(fig, display_id=True)
        else:
            self._display.update(fig)

        plt.close(fig)


def label_table(wrapper: VLMWrapper, record: dict):
    """Each token of one training sample beside its label (``-100`` = ignored by the loss).

    The quickest way for a person to see that only the answer is trained on.
    """

    batch = UICollator(wrapper)([record])
    tokens = wrapper.processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][0].tolist())
    labels = batch["labels"][0].tolist()
    return pd.DataFrame({"token": tokens, "label": [
        "-100" if label == -100 else wrapper.processor.tokenizer.convert_ids_to_tokens(label)
        for label in labels]})


def dataloader_workers(config: RunConfig) -> int:
    """``training.dataloader_num_workers`` as a number: ``"auto"`` is up to 4 worker processes when the
    model trains on a CUDA GPU (collating a batch of four 1288x728 screenshots takes about 0.1 s of CPU,
    which workers hide behind the GPU's step) and 0 on the CPU, where workers would take the cores that
    training needs."""
    value = config.training.dataloader_num_workers
    if value != "auto":
        return int(value)
    on_gpu = config.model.device != "cpu" and torch.cuda.is_available()
    return min(4, max(0, (os.cpu_count() or 1) - 2)) if on_gpu else 0


_CHECKPOINTING_ARGUMENT = next(name for name in ("activation_checkpointing", "gradient_checkpointing")
                               if name in TrainingArguments.__dataclass_fields__)


def training_arguments(config: RunConfig, output_dir: Path) -> TrainingArguments:
    """Trainer arguments from the run configuration (the seed's keys plus the workbook's)."""
    t = config.training
    workers = dataloader_workers(config)
    precision = {"fp16": t.mixed_precision == "fp16", "bf16": t.mixed_precision == "bf16"}
    if t.mixed_precision != "no" and not torch.cuda.is_available():
        raise ValueError(f"training.mixed_precision={t.mixed_precision!r} needs a CUDA GPU and none is "
                         "available here; use 'no' on CPU")
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=config.algorithm.learning_rate,
        weight_decay=config.algorithm.weight_decay,
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        num_train_epochs=t.num_epochs,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.checkpoint_interval,
        # Newer transformers 5 releases renamed the argument (the old name warns); 5.17 has only the old one.
        **{_CHECKPOINTING_ARGUMENT: t.gradient_checkpointing},
        seed=t.seed,
        data_seed=t.seed,
        remove_unused_columns=False,
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        report_to="none",
        disable_tqdm=False,
        # On CPU this also makes several launched processes train together (DDP over gloo).
        use_cpu=config.model.device == "cpu",
        **precision,
    )


class UITrainer(Trainer):
    """``Trainer`` that resumes a full fine-tune with the weights it saved, stops on a non-finite loss,
    and keeps the whole run's loss across resumes.

    ``Trainer`` reloads a full model checkpoint with a raw ``load_state_dict(strict=False)``;
    transformers 5 saves models such as Qwen2-VL under their original key names (``visual.*``,
    ``model.layers.*``) while the module names are ``model.visual.*``, ``model.language_model.*``, so
    nothing matched and a resumed run silently restarted from the initial weights. ``from_pretrained``
    applies the key mapping; the loaded weights must then cover the model exactly.

    ``Trainer``'s ``training_loss`` averages the steps of one ``train()`` call only, so after a resume
    it left out everything before the checkpoint. Each checkpoint records the loss summed over all
    its steps (:data:`RUN_LOSS_FILE`); :meth:`run_mean_loss` adds the steps since.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_before_resume: float | None = 0.0   # None: the checkpoint recorded no run loss
        self._loss_since_resume = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # Trainer would replace a nan/inf loss by the running mean and go on training into nan weights.
        if not torch.isfinite(loss):
            raise NonFiniteTrainingError(
                f"training stopped at step {self.state.global_step + 1}: the loss is {loss.item()}; the step's "
                f"update was not applied and no trained agent is saved. {_what_to_try(self.args)}")
        self._loss_since_resume = loss if self._loss_since_resume is None else self._loss_since_resume + loss
        return loss

    def run_loss_sum(self) -> float | None:
        """The loss summed over every step so far, averaged over the processes (call it on all of them)."""
        if self.loss_before_resume is None:
            return None
        since = self._loss_since_resume if self._loss_since_resume is not None else torch.zeros((), device=self.args.device)
        return self.loss_before_resume + self.accelerator.reduce(since.detach().float(), reduction="mean").item()

    def run_mean_loss(self) -> float | None:
        """The mean training loss over all the run's steps, those before a resume included."""
        total = self.run_loss_sum()
        return None if total is None or not self.state.global_step else total / self.state.global_step

    def resume_run_loss(self, checkpoint: Path) -> None:
        """Take the loss summed up to ``checkpoint`` (None when it predates :data:`RUN_LOSS_FILE`)."""
        recorded = checkpoint / RUN_LOSS_FILE
        self.loss_before_resume = json.loads(recorded.read_text())["loss_sum"] if recorded.is_file() else None

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        loss_sum = self.run_loss_sum()
        if self.args.should_save:
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            (folder / RUN_LOSS_FILE).write_text(json.dumps({"global_step": self.state.global_step,
                                                            "loss_sum": loss_sum}))
        # Each process writes its own part (rng_state_<rank>.pth): all are done before the seal lists the files.
        self.accelerator.wait_for_everyone()

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        folder = Path(resume_from_checkpoint)
        if (folder / "config.json").is_file() and not list(folder.glob("adapter_model.*")):
            load_checkpoint_weights(model if model is not None else self.model, folder)
        else:
            super()._load_from_checkpoint(resume_from_checkpoint, model)


def load_checkpoint_weights(model, checkpoint: str | Path) -> None:
    """Load a full-model checkpoint (``save_pretrained`` layout) into ``model``, strictly."""
    dtype = next(model.parameters()).dtype
    loaded = type(model).from_pretrained(str(checkpoint), dtype=dtype)
    model.load_state_dict(loaded.state_dict(), strict=True)


def build_trainer(config: RunConfig, wrapper: VLMWrapper, train_records, run_dir: str | Path,
                  live_plot: bool = False) -> tuple[Trainer, LossHistory]:
    """A Trainer over the wrapper's model with the run folder's checkpoints and logs."""

    run_dir = Path(run_dir)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    history = LossHistory(log_file=run_dir / "logs" / "train.log", plot=live_plot)
    if config.training.gradient_checkpointing:
        # Checkpointed blocks backpropagate into LoRA weights only if their inputs carry gradients.
        # Hook the language model's embeddings alone: transformers' enable_input_require_grads()
        # also hooks the vision patch embedding, making a frozen tower keep its activations.
        wrapper.model.get_input_embeddings().register_forward_hook(
            lambda module, inputs, output: output.requires_grad_(True))
    callbacks = [history, CheckpointSealer(), DivergenceGuard(),
                 TensorBoardCallback(SummaryWriter(str(run_dir / "logs" / "tensorboard")))]
    if config.training.gradient_checkpointing and config.training.uncheckpointed_layers:
        count, reason = resolve_uncheckpointed_layers(config, wrapper)
        if count:
            callbacks.append(PartialCheckpointing(wrapper, count, reason))
        else:
            print(reason)

    # training.cache_vision_features / fused_cross_entropy: cached tower features, liger's fused loss.
    collator, fast_path = prepare_fast_path(config, wrapper, train_records, run_dir,
                                            UICollator(wrapper, config.training.max_length))
    trainer = UITrainer(
        model=wrapper.model,
        args=training_arguments(config, run_dir / "checkpoints"),
        train_dataset=train_records,
        data_collator=collator,
        callbacks=callbacks,
    )
    trainer.fast_path = fast_path
    return trainer, history


def train(config: RunConfig, wrapper: VLMWrapper, train_records, run_dir: str | Path,
          live_plot: bool = False, resume: bool | str = False) -> dict:
    """Fine-tune ``wrapper.model`` on records and return a summary (steps, first/last loss, curve).

    Args:
        resume: continue from the newest complete checkpoint in the run folder (a fresh start when
            there is none); False starts over.
    """
    if len(train_records) == 0:
        raise ValueError("train: train_records is empty; training needs at least one record "
                         "(run_data.load_split(paths, 'train') reads the run's training split)")
    logging.getLogger("transformers.trainer").setLevel(logging.WARNING)
    trainer, history = build_trainer(config, wrapper, train_records, run_dir, live_plot)
    checkpoint = None
    if resume:
        # The main process checks the seals and moves broken folders aside before the others look.
        with trainer.args.main_process_first(local=False, desc="checking checkpoints"):
            checkpoint = last_complete_checkpoint(Path(run_dir) / "checkpoints", verify=trainer.is_world_process_zero())
    if checkpoint is not None:
        step = int(_CHECKPOINT.match(checkpoint.name).group(1))
        history.restore(step)
        trainer.resume_run_loss(checkpoint)
        print(f"resuming from {checkpoint}")
        if trainer.loss_before_resume is None:
            print(f"{checkpoint.name} has no {RUN_LOSS_FILE}: train_loss covers the steps after {step} only")
    elif history.log_file.exists():
        history.log_file.unlink()  # a fresh run starts a fresh log
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    run_mean_loss = trainer.run_mean_loss()
    n_first = max(1, len(history.losses) // 5)
    return {
        "global_step": output.global_step,
        "train_loss": run_mean_loss if run_mean_loss is not None else output.training_loss,
        "first_loss": sum(history.losses[:n_first]) / n_first if history.losses else None,
        "last_loss": sum(history.losses[-n_first:]) / n_first if history.losses else None,
        "steps": history.steps,
        "losses": history.losses,
        "runtime_s": output.metrics.get("train_runtime"),
        "fast_path": getattr(trainer, "fast_path", None),
        "checkpointed_layers": _checkpointed_layers(config, wrapper),
    }


def _checkpointed_layers(config: RunConfig, wrapper: VLMWrapper) -> dict | None:
    """How many language-model layers trained under gradient checkpointing (None without it)."""
    if not config.training.gradient_checkpointing:
        return None

    checkpointed, total = checkpointed_layer_count(wrapper)
    return {"checkpointed": checkpointed, "layers": total}


def train_run(run_dir: str | Path, resume: bool = False) -> dict:
    """Train the run in ``run_dir`` from its saved configuration and data, and save its adapter.

    This is what ``python -m uivlm_helpers.training`` and ``accelerate launch -m uivlm_helpers.training``
    run, and what :func:`launch` starts from a notebook on several processes.
    """

    paths = RunPaths(Path(run_dir).resolve())
    config = load_config(paths.config)
    records = run_data.load_split(paths, "train")   # bad or empty data is reported before the model loads
    wrapper = VLMWrapper.from_config(config)
    summary = train(config, wrapper, records, paths.root, resume=resume)

    if PartialState().is_main_process:  # one writer when several processes train together
        wrapper.save_pretrained(paths.adapter)
        (paths.logs / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def launch(run_dir: str | Path, num_processes: int = 2, resume: bool = False) -> None:
    """Train on several processes from a notebook (``accelerate.notebook_launcher``; DDP)."""

    notebook_launcher(train_run, (str(run_dir), resume), num_processes=num_processes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Train the run in a run folder (after 01_setup).")
    parser.add_argument("--run-dir", required=True, help="run folder holding config.yaml and data/")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    args = parser.parse_args(argv)
    summary = train_run(args.run_dir, resume=args.resume)
    print(json.dumps({k: summary[k] for k in ("global_step", "first_loss", "last_loss")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
