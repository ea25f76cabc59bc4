"""The run configuration: one object that every notebook reads.

It loads the seed guide's YAML unchanged (``model:``, ``training:``, ``algorithm:``, ``task_prompt``),
adds the sections the workbook needs (``data:``, ``evaluation:``, ``share:``), validates every value with
an error that names the key and what was expected, and is saved into the run folder by 01_setup so the
later notebooks start from exactly what was chosen there.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

DEFAULT_MODEL = "uivlm/tiny-qwen2-vl-ui"
DEFAULT_TASK_PROMPT = ("{instruction}\nAnswer with the next action only, coordinates {coordinate_hint}. "
                       "Format: {format_hint}")
TORCH_DTYPES = ("auto", "float32", "float16", "bfloat16")
MIXED_PRECISION = ("no", "fp16", "bf16")


class ConfigError(ValueError):
    """A run-configuration key has a value of the wrong kind, or does not exist."""


@dataclass
class LoraSettings:
    r: int = 16
    lora_alpha: int = 32
    # None: the family adapter's defaults (all attention + MLP projections of the language model).
    target_modules: list[str] | None = None
    lora_dropout: float = 0.05
    bias: str = "none"
    # Words whose input embeddings train with the adapter (e.g. names the base model never read).
    trainable_tokens: list[str] | None = None


@dataclass
class ModelSettings:
    name: str = DEFAULT_MODEL
    torch_dtype: str = "float32"
    device: str = "cpu"
    use_lora: bool = True
    lora_config: LoraSettings = field(default_factory=LoraSettings)
    max_new_tokens: int = 24
    temperature: float = 0.0
    do_sample: bool = False
    freeze_vision_encoder: bool = True
    action_format: str = "text"
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    # Processor pixel budget; None keeps the checkpoint's. Training and evaluation must agree.
    min_pixels: int | None = None
    max_pixels: int | None = None
    constrained_decoding: bool = False
    trust_remote_code: bool = False


@dataclass
class TrainingSettings:
    # Defaults: the offline default run (LoRA on the tiny UI base, CPU). For a 2B-7B model on a GPU
    # start from batch 4, learning rate 1e-4 to 2e-4 and a few hundred steps.
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    checkpoint_interval: int = 500
    max_steps: int = 3000
    num_epochs: float = 1.0
    warmup_steps: int = 20
    lr_scheduler: str = "cosine"
    gradient_checkpointing: bool = False
    # With gradient_checkpointing: the last N language-model layers keep their activations instead of
    # recomputing them in the backward pass - faster, at N layers' activation memory. "auto": as many as
    # the memory estimate fits in memory_budget_gib (default: the GPU's memory).
    uncheckpointed_layers: int | str = 0
    # GiB the training step may use (the memory estimate's total, overhead included); None: the GPU's.
    memory_budget_gib: float | None = None
    mixed_precision: str = "no"
    logging_steps: int = 25
    seed: int = 0
    # Processes that prepare batches beside training (0: in the training process). "auto": up to 4 when
    # training on a CUDA GPU (the GPU then never waits for collation), 0 on the CPU (training needs the cores).
    dataloader_num_workers: int | str = "auto"
    max_length: int | None = 2048
    # The fast training path (uivlm_helpers.features): "auto", "true" or "false" (YAML true/false work too).
    # Cache the frozen vision tower's features on disk instead of recomputing them every step.
    cache_vision_features: str | bool = "auto"
    # liger-kernel's fused linear cross-entropy on CUDA (optional extra: pip install 'uivlm[fast]').
    fused_cross_entropy: str | bool = "auto"
    # Where the feature cache lives; None: RUN_DIR/cache/vision_features.
    feature_cache_dir: str | None = None


@dataclass
class AlgorithmSettings:
    learning_rate: float = 2e-3
    weight_decay: float = 0.0


@dataclass
class DataSettings:
    # "tasks" / "synthetic" generate screens into the run folder, "miniwob" records demonstrations;
    # otherwise a folder with train/test .jsonl (see run_data.prepare_data).
    source: str = "tasks"
    # The default fine-tune needs many distinct screens (3,000 steps of batch 16 see each of 16,384
    # about three times; with 1,024 an earlier default task was memorised). Generating them takes
    # about two minutes.
    train_size: int = 16384
    eval_size: int = 96
    image_width: int = 224
    image_height: int = 224
    seed: int = 0


@dataclass
class EvaluationSettings:
    split: str = "test"
    max_samples: int | None = None
    batch_size: int = 32
    gallery_size: int = 6


@dataclass
class ShareSettings:
    repo_id: str | None = None
    push: bool = False
    private: bool = True
    merge: bool = True


@dataclass
class RunConfig:
    model: ModelSettings = field(default_factory=ModelSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    algorithm: AlgorithmSettings = field(default_factory=AlgorithmSettings)
    data: DataSettings = field(default_factory=DataSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    share: ShareSettings = field(default_factory=ShareSettings)
    task_prompt: str = DEFAULT_TASK_PROMPT
    system_prompt: str | None = None
    few_shot: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the configuration as YAML (creating folders)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    def set(self, dotted_key: str, value: Any) -> None:
        """Set one value by dotted key (``"training.max_steps"``), validated like a YAML value."""
        self.set_many({dotted_key: value})

    def set_many(self, values: dict[str, Any]) -> None:
        """Set several values by dotted key, then validate them together (settings that depend on each
        other, such as ``training.gradient_checkpointing`` and ``training.uncheckpointed_layers``, can
        change in one call). Nothing changes when any value is invalid."""
        candidate = copy.deepcopy(self)
        for dotted_key, value in values.items():
            *parents, leaf = dotted_key.split(".")
            node = candidate
            for i, part in enumerate(parents):
                node = getattr(node, part) if _has_field(node, part) else _unknown(node, ".".join(parents[:i + 1]))
            if not _has_field(node, leaf):
                _unknown(node, dotted_key)
            setattr(node, leaf, _coerce(get_type_hints(type(node))[leaf], value, dotted_key))
        validate(candidate)
        for f in fields(self):
            setattr(self, f.name, getattr(candidate, f.name))


def _has_field(obj, name) -> bool:
    return dataclasses.is_dataclass(obj) and name in {f.name for f in fields(obj)}


def _unknown(node, key):
    valid = sorted(f.name for f in fields(node)) if dataclasses.is_dataclass(node) else []
    raise ConfigError(f"unknown configuration key {key!r}; valid keys here: {valid}")


def _coerce(hint, value, key):
    """Convert a YAML/papermill value to the field's type, or raise ConfigError naming the key."""
    origin, args = get_origin(hint), get_args(hint)
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = get_origin(hint), get_args(hint)
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return _build(hint, value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint in (int, float):
        # PyYAML reads "1e-5" as a string; accept numeric strings, reject anything else.
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value) if isinstance(value, str) else value
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not isinstance(number, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if hint is int:
            if float(number) != int(number):
                raise ConfigError(f"{key}: expected a whole number, got {value!r}")
            return int(number)
        return float(number)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    return value


def _build(cls, data: dict, prefix: str = ""):
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(f"unknown configuration key {dotted!r}; valid keys"
                              f"{' under ' + prefix if prefix else ''}: {sorted(names)}")
        kwargs[key] = _coerce(hints[key], value, dotted)
    return cls(**kwargs)


def _check_choice(value, choices, key):
    if value not in choices:
        raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")


SWITCHES = ("auto", "true", "false")


def _tristate(value, key) -> str:
    """``auto`` / ``true`` / ``false`` from a string or a YAML / papermill bool."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.strip().lower() in SWITCHES:
        return value.strip().lower()
    raise ConfigError(f"{key}: expected one of {list(SWITCHES)}, got {value!r}")


def validate(config: RunConfig) -> RunConfig:
    """Check values that have a fixed set of choices or ranges; returns the config."""
    from .actions import ACTION_FORMATS

    m, t = config.model, config.training
    _check_choice(m.action_format, ACTION_FORMATS, "model.action_format")
    _check_choice(m.torch_dtype, TORCH_DTYPES, "model.torch_dtype")
    _check_choice(m.lora_config.bias, ("none", "all", "lora_only"), "model.lora_config.bias")
    _check_choice(t.mixed_precision, MIXED_PRECISION, "training.mixed_precision")
    for key in ("cache_vision_features", "fused_cross_entropy"):
        setattr(t, key, _tristate(getattr(t, key), f"training.{key}"))
    if m.load_in_8bit and m.load_in_4bit:
        raise ConfigError("model.load_in_8bit and model.load_in_4bit: choose at most one")
    for key, value in [("model.lora_config.r", m.lora_config.r), ("training.batch_size", t.batch_size),
                       ("training.gradient_accumulation_steps", t.gradient_accumulation_steps),
                       ("training.checkpoint_interval", t.checkpoint_interval),
                       ("model.max_new_tokens", m.max_new_tokens)]:
        if value < 1:
            raise ConfigError(f"{key}: expected a positive number, got {value}")
    from transformers import SchedulerType

    _check_choice(t.lr_scheduler, [s.value for s in SchedulerType], "training.lr_scheduler")
    workers = t.dataloader_num_workers
    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"training.dataloader_num_workers: expected 'auto' or 0 or more, got {workers!r}")
    layers = t.uncheckpointed_layers
    if isinstance(layers, str) and layers.strip().lower() == "auto":
        layers = t.uncheckpointed_layers = "auto"
    elif isinstance(layers, str) and layers.strip().isdigit():
        layers = t.uncheckpointed_layers = int(layers)
    elif isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
        raise ConfigError(f"training.uncheckpointed_layers: expected 'auto' or 0 or more layers, got {layers!r}")
    if layers and not t.gradient_checkpointing:
        raise ConfigError(f"training.uncheckpointed_layers={layers!r} only applies with "
                          "training.gradient_checkpointing=true (without it no layer is checkpointed)")
    if t.memory_budget_gib is not None and t.memory_budget_gib <= 0:
        raise ConfigError(f"training.memory_budget_gib: expected a positive number of GiB, got {t.memory_budget_gib}")
    if not 0 <= m.lora_config.lora_dropout < 1:
        raise ConfigError(f"model.lora_config.lora_dropout: expected 0 <= value < 1, got {m.lora_config.lora_dropout}")
    if config.algorithm.learning_rate <= 0:
        raise ConfigError(f"algorithm.learning_rate: expected > 0, got {config.algorithm.learning_rate}")
    if "{instruction}" not in config.task_prompt:
        raise ConfigError("task_prompt: must contain '{instruction}' where the instruction goes")
    return config


def load_config(source: str | Path | dict | None = None) -> RunConfig:
    """Load a run configuration from a YAML file, a mapping, or defaults (None).

    The seed guide's YAML loads unchanged; unknown keys are errors that list the valid ones.
    """
    if source is None:
        return validate(RunConfig())
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    return validate(_build(RunConfig, data))
