"""The run configuration: one object that every notebook reads.

It loads the seed guide's YAML unchanged (``model:``, ``training:``, ``algorithm:``, ``task_prompt`` and
``few_shot_prompt`` with their ``{task_description}`` placeholder), adds the sections the workbook needs
(``data:``, ``evaluation:``, ``share:``), validates every value with an error that names the key, the value
and what is allowed, and is saved into the run folder by 01_setup so the later notebooks start from exactly
what was chosen there.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml
from huggingface_hub.utils import HFValidationError, validate_repo_id

from .actions import ACTION_FORMATS
from .paths import SPLIT_FILES
from .prompts import template_problem

DEFAULT_MODEL = "uivlm/tiny-qwen2-vl-ui"
DEFAULT_TASK_PROMPT = ("{instruction}\nAnswer with the next action only, coordinates {coordinate_hint}. "
                       "Format: {format_hint}")
TORCH_DTYPES = ("auto", "float32", "float16", "bfloat16")
MIXED_PRECISION = ("no", "fp16", "bf16")
#: Settings that hold only for the run whose notebook parameters set them: a push happens only in the
#: run that asks for it, and the visibility falls back to private. They are reset to their defaults
#: when a configuration is loaded and never written to ``config.yaml``.
RUN_ONLY_KEYS = ("share.push", "share.private")
#: Earlier actions ``data.history_window: auto`` writes for a step of an episode (the wrapper's prompts and
#: the memory estimate read this one value).
AUTO_HISTORY_WINDOW = 4


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
    # Pixel budget of each history screenshot (data.history_images); None: a quarter of the pixels the
    # current screenshot gets.
    # Locked between training and evaluation like the main budget.
    history_max_pixels: int | None = None
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
    # The fast training path (uivlm_helpers.training.features): "auto", "true" or "false" (YAML true/false work too).
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
    # Earlier actions of the episode written into the user turn, newest last, in the run's action format
    # and the family's coordinate space. "auto": 4 for episode sources (AITW, AndroidControl, Mind2Web,
    # MiniWoB++ demonstrations, the synthetic multi-step task), 0 for single-step sources.
    history_window: int | str = "auto"
    # Earlier screenshots shown as extra images, oldest first (multi-image families only).
    history_images: int = 0


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
    # Worked examples (drawn from the training split) shown before the instruction; 0: zero-shot.
    few_shot: int = 0
    # The template used instead of task_prompt when few-shot examples are shown (the seed guide's key;
    # it may carry written examples of its own). None: task_prompt.
    few_shot_prompt: str | None = None

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
        return _number(hint, value, key)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    return value


# Whole numbers end up in torch / numpy int64 values (steps, seeds, sizes); larger ones cannot mean anything.
_INT_LIMIT = 2 ** 63


def _number(hint, value, key):
    """A YAML / papermill value as a finite ``int`` or ``float``, or ConfigError naming the key."""
    # PyYAML reads "1e-5" as a string; accept numeric strings, reject anything else.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    number = value
    if isinstance(value, str):
        try:  # whole-number text is read exactly (float would round 20-digit seeds)
            number = int(value) if hint is int and re.fullmatch(r"\s*[-+]?\d[\d_]*\s*", value) else float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    try:
        as_float = float(number)
    except OverflowError:  # an int too large for a float
        as_float = math.inf
    if (isinstance(number, float) and not math.isfinite(number)) or (hint is float and not math.isfinite(as_float)):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    if hint is float:
        return as_float
    if isinstance(number, float):
        if not number.is_integer():
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        number = int(number)
    if not -_INT_LIMIT < number < _INT_LIMIT:
        raise ConfigError(f"{key}: expected a whole number between -2**63 and 2**63, got {value!r}")
    return number


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


# numpy's seeds (transformers.set_seed seeds numpy too) must lie below 2**32.
SEED_LIMIT = 2 ** 32
_SEED_RANGE = (lambda v: 0 <= v < SEED_LIMIT, f"a whole number from 0 to {SEED_LIMIT - 1}")
_PIXEL_BUDGET = (lambda v: v >= 1, "1 or more pixels, or null for the checkpoint's budget")
# Generated screens ("synthetic", "tasks") need this many pixels a side for readable labels.
MIN_SCREEN_SIDE = 160
_SCREEN_SIDE = (lambda v: v >= MIN_SCREEN_SIDE, f"{MIN_SCREEN_SIDE} or more pixels (generated screens need "
                                                 "room for readable labels)")

#: The numeric settings and the values each accepts: dotted key -> (test, what is allowed). A None value
#: means "not set" (the key's default behaviour) and is not tested; every value must also be finite.
NUMBER_RANGES = {
    "model.lora_config.r": (lambda v: v >= 1, "a rank of 1 or more"),
    "model.lora_config.lora_alpha": (lambda v: v >= 1, "1 or more (the update is scaled by lora_alpha / r)"),
    "model.lora_config.lora_dropout": (lambda v: 0 <= v < 1, "a probability with 0 <= value < 1"),
    "model.max_new_tokens": (lambda v: v >= 1, "1 or more tokens"),
    "model.temperature": (lambda v: v >= 0, "0 or more"),
    "model.min_pixels": _PIXEL_BUDGET,
    "model.max_pixels": _PIXEL_BUDGET,
    "model.history_max_pixels": (lambda v: v >= 1, "1 or more pixels, or null for a quarter of the current screenshot's"),
    "training.batch_size": (lambda v: v >= 1, "1 or more"),
    "training.gradient_accumulation_steps": (lambda v: v >= 1, "1 or more"),
    "training.checkpoint_interval": (lambda v: v >= 1, "1 or more steps"),
    "training.max_steps": (lambda v: v >= 0, "0 or more steps (0: train for training.num_epochs)"),
    "training.num_epochs": (lambda v: v > 0, "more than 0 epochs"),
    "training.warmup_steps": (lambda v: v >= 0, "0 or more steps"),
    "training.logging_steps": (lambda v: v >= 1, "1 or more steps"),
    "training.seed": _SEED_RANGE,
    "training.max_length": (lambda v: v >= 1, "1 or more tokens, or null for no limit"),
    "training.memory_budget_gib": (lambda v: v > 0, "a positive number of GiB, or null for the GPU's memory"),
    "algorithm.learning_rate": (lambda v: v > 0, "more than 0"),
    "algorithm.weight_decay": (lambda v: v >= 0, "0 or more"),
    "data.train_size": (lambda v: v >= 1, "1 or more records"),
    "data.eval_size": (lambda v: v >= 1, "1 or more records"),
    "data.image_width": _SCREEN_SIDE,
    "data.image_height": _SCREEN_SIDE,
    "data.seed": _SEED_RANGE,
    "data.history_images": (lambda v: v >= 0, "0 or more earlier screenshots (0: none)"),
    "evaluation.max_samples": (lambda v: v >= 1, "1 or more records, or null for the whole split"),
    "evaluation.batch_size": (lambda v: v >= 1, "1 or more"),
    "evaluation.gallery_size": (lambda v: v >= 0, "0 or more screenshots"),
    "few_shot": (lambda v: v >= 0, "0 or more examples (0: zero-shot)"),
}

#: ``model.device`` values the model loader understands (``auto``: ``device_map="auto"``).
DEVICE_PATTERN = re.compile(r"cpu|auto|cuda(:\d+)?")
DEVICE_FORMS = "'cpu', 'cuda', 'cuda:N' (a GPU index such as cuda:1) or 'auto'"


def _value(config, dotted_key):
    node = config
    for part in dotted_key.split("."):
        node = getattr(node, part)
    return node


def _check_numbers(config: RunConfig) -> None:
    for key, (accepts, allowed) in NUMBER_RANGES.items():
        value = _value(config, key)
        if value is None:
            continue
        # values set as attributes skip _coerce; a NaN would slip through every comparison
        finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not finite or not accepts(value):
            raise ConfigError(f"{key}: expected {allowed}, got {value!r}")


def _check_prompt(template, key) -> None:
    if not isinstance(template, str):
        raise ConfigError(f"{key}: expected text, got {template!r}")
    problem = template_problem(template)
    if problem:
        raise ConfigError(f"{key}: {problem}; got {template!r}")


def _check_repo_id(repo_id) -> None:
    expected = "expected a Hub repository id 'namespace/name' (letters, digits, '-', '_', '.')"
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ConfigError(f"share.repo_id: {expected}, got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ConfigError(f"share.repo_id: {expected}, got {repo_id!r} ({error})") from None


def validate(config: RunConfig) -> RunConfig:
    """Check values that have a fixed set of choices or ranges; returns the config."""
    m, t = config.model, config.training
    _check_choice(m.action_format, ACTION_FORMATS, "model.action_format")
    _check_choice(m.torch_dtype, TORCH_DTYPES, "model.torch_dtype")
    _check_choice(m.lora_config.bias, ("none", "all", "lora_only"), "model.lora_config.bias")
    _check_choice(t.mixed_precision, MIXED_PRECISION, "training.mixed_precision")
    _check_choice(config.evaluation.split, list(SPLIT_FILES), "evaluation.split")
    if not isinstance(m.device, str) or not DEVICE_PATTERN.fullmatch(m.device):
        raise ConfigError(f"model.device: expected {DEVICE_FORMS}, got {m.device!r}")
    for key in ("cache_vision_features", "fused_cross_entropy"):
        setattr(t, key, _tristate(getattr(t, key), f"training.{key}"))
    if m.load_in_8bit and m.load_in_4bit:
        raise ConfigError("model.load_in_8bit and model.load_in_4bit: choose at most one")
    _check_numbers(config)
    if m.min_pixels is not None and m.max_pixels is not None and m.min_pixels > m.max_pixels:
        raise ConfigError(f"model.min_pixels={m.min_pixels} and model.max_pixels={m.max_pixels}: "
                          "expected min_pixels <= max_pixels")
    if m.do_sample and m.temperature == 0:
        raise ConfigError("model.temperature: expected more than 0 with model.do_sample=true (sampling at "
                          "temperature 0 is undefined; use do_sample=false for greedy decoding), got 0.0")
    # lazy: importing transformers' Trainer stack takes seconds; configurations load where no model does
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
    window = config.data.history_window
    if isinstance(window, str) and window.strip().lower() == "auto":
        window = config.data.history_window = "auto"
    elif isinstance(window, str) and window.strip().isdigit():
        window = config.data.history_window = int(window)
    elif isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ConfigError(f"data.history_window: expected 'auto' or 0 or more earlier actions, got {window!r}")
    _check_prompt(config.task_prompt, "task_prompt")
    if config.few_shot_prompt is not None:
        _check_prompt(config.few_shot_prompt, "few_shot_prompt")
    if config.share.repo_id is not None:
        _check_repo_id(config.share.repo_id)
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


def without_run_only_settings(config: RunConfig) -> RunConfig:
    """A copy of ``config`` with the run-only settings (:data:`RUN_ONLY_KEYS`) at their defaults: what may
    be saved or shared."""
    kept, defaults = copy.deepcopy(config), RunConfig()
    for key in RUN_ONLY_KEYS:
        section, leaf = key.split(".")
        setattr(getattr(kept, section), leaf, getattr(getattr(defaults, section), leaf))
    return kept
