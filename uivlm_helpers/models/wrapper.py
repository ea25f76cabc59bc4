"""``VLMWrapper``: the seed guide's model API over any supported VLM family.

One object loads a model (embedded tiny, local folder or Hub name) with its processor, optionally wraps
it with LoRA or loads it quantized, computes the answer-only loss for (screenshot, instruction, target
action) batches, and predicts actions mapped back to screenshot pixels.
"""

from __future__ import annotations

import json
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training
from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig, LogitsProcessorList

from ..core.actions import (Action, ActionDecoder, ParseFailure, decode_to_pixels, encode_action, get_space,
                            render_action)
from ..core.config import AUTO_HISTORY_WINDOW, DEFAULT_MODEL, DEFAULT_TASK_PROMPT, RunConfig
from ..core.coords import SPACE_NAMES, smart_resize
from ..core.images import as_image
from ..core.prompts import user_text
from ..families import FAMILIES, KNOWN_FAMILIES, family_name_for, get_adapter
from .constrained import ActionLogitsProcessor
from .resolve import resolve_model_path
from .tiny import TINY_MODELS

AGENT_FILE = "uivlm_agent.json"  # what travels with a saved agent besides weights and processor
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@contextmanager
def _peft_wrapping():
    """While peft wraps a model, drop the FutureWarning it triggers by asking for the model's
    ``is_gradient_checkpointing``: transformers 5 renamed that property, and the old name still
    returns the new one's value (``is_activation_checkpointing``) in every version pyproject allows
    (<6), so peft's decision is right and the warning, addressed to peft, is nothing a user can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        yield


@dataclass
class Prediction:
    """One predicted action: the raw text, the action in screenshot pixels (or why it failed)."""

    raw_text: str
    action: dict | None          # seed dict shape, screenshot pixels; None when the text did not parse
    failure: str | None = None   # parse-failure reason
    clamped: bool = False        # a coordinate was outside the model space and was clamped

    @property
    def point(self) -> tuple[float, float] | None:
        if self.action and "x" in self.action:
            return self.action["x"], self.action["y"]
        return None


def quantization_config(load_in_8bit: bool = False, load_in_4bit: bool = False, compute_dtype="auto",
                        skip_modules=()):
    """The bitsandbytes config for an 8-bit or a QLoRA 4-bit base (None when neither is asked for).

    4-bit is QLoRA's recipe: NF4 weights, double quantization, matmuls in ``compute_dtype``
    (a torch dtype; ``"auto"``: bfloat16 on a GPU, float32 on the CPU). ``skip_modules`` (the vision
    tower and projector) and the output head stay unquantized.
    """

    if load_in_8bit and load_in_4bit:
        raise ValueError("load_in_8bit and load_in_4bit: choose at most one")
    if not (load_in_8bit or load_in_4bit):
        return None
    try:
        # lazy: bitsandbytes is only needed (and only checked for) when a quantized base is asked for
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ImportError("load_in_8bit/load_in_4bit need the bitsandbytes package (pip install bitsandbytes)") from err
    if compute_dtype == "auto" or compute_dtype is None:
        compute_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    compute_dtype = _DTYPES.get(compute_dtype, compute_dtype)
    # transformers matches these from the start of a module's full name, as regular expressions.
    skip = [rf".*{p.strip('.')}" for p in skip_modules] + ["lm_head"]
    if load_in_4bit:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def _load_error(path: str, what: str, err: Exception) -> ValueError:
    """One clear error for a model that cannot be loaded: what was asked and what is supported."""

    where = (f"the folder {path} has no loadable {what}" if Path(path).is_dir() else
             f"{path!r} is not a local folder and could not be fetched ({what}); this machine may have no Hub access")
    return ValueError(f"cannot load model {path!r}: {where} ({type(err).__name__}: {str(err).splitlines()[0]}). "
                      f"Embedded tiny models that always work offline: {sorted(TINY_MODELS)}; supported "
                      f"families: {sorted(KNOWN_FAMILIES)}")


def _agent_space(agent_file: Path, agent: dict | None, requested: str | None, adapter) -> str:
    """The coordinate space an agent answers in: the one its ``uivlm_agent.json`` names (a saved agent
    keeps the space it was trained in), else ``requested``, else the family's."""

    saved = (agent or {}).get("coordinate_space")
    for value, where in ((saved, f"{agent_file}: coordinate_space"), (requested, "coordinate_space")):
        if value is not None and value not in SPACE_NAMES:
            raise ValueError(f"{where} is {value!r}, not a known coordinate space; expected one of "
                             f"{list(SPACE_NAMES)}")
    if saved is not None and requested is not None and requested != saved:
        raise ValueError(f"{agent_file} says this agent answers in coordinate_space {saved!r}, but "
                         f"{requested!r} was asked for: an agent is decoded in the space it was trained in "
                         f"(drop coordinate_space={requested!r}, or train an agent in that space)")
    return saved or requested or adapter.coordinate_space


def _keep_trainable_4bit_layout(model) -> None:
    """Turn off bitsandbytes' CPU inference repacking of 4-bit weights.

    On a CPU with AVX512-BF16, ``Linear4bit`` repacks its weights at the first forward pass in eval mode
    without gradients (a prediction) and keeps them packed: a later training step then backpropagates
    through a kernel that has no gradient (zero gradients reach every earlier layer, with only a warning),
    and layers whose output width is not a multiple of 32 (Qwen3.5's per-head ``in_proj_a`` / ``in_proj_b``)
    fail outright. An agent predicts and trains in one process (04 after 03, notebooks run by hand), so
    its 4-bit layers keep the layout that trains.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _history_settings(family: str, window, images) -> tuple[int | str, int]:
    """Validated ``(history_window, history_images)``; earlier screenshots need a multi-image family."""
    if window != "auto" and (isinstance(window, bool) or not isinstance(window, int) or window < 0):
        raise ValueError(f"history_window: expected 'auto' or 0 or more earlier actions, got {window!r}")
    if isinstance(images, bool) or not isinstance(images, int) or images < 0:
        raise ValueError(f"history_images: expected 0 or more earlier screenshots, got {images!r}")
    if images and not FAMILIES[family].multi_image:
        able = ", ".join(p.display for p in FAMILIES.values() if p.multi_image)
        raise ValueError(f"history_images={images}: {FAMILIES[family].display} takes one image per prompt; "
                         f"earlier screenshots need a multi-image family ({able}). Use history_images=0 "
                         "(the earlier actions still go into the prompt as text)")
    return window, images


#: The parts :meth:`VLMWrapper.trained_parts` counts, in report order.
PARTS = ("language_model", "vision_tower", "projector", "embeddings")
_PART_NAMES = {"language_model": "language model", "vision_tower": "vision tower", "projector": "projector",
               "embeddings": "embeddings"}


def describe_trained(parts: dict) -> str:
    """One line saying which parts train and how (``trained_parts()["parts"]``), e.g. ``"LoRA on the
    language model (1,024 parameters); frozen: vision tower, projector, embeddings"``."""
    trained, frozen = [], []
    for part in PARTS:
        counts = parts.get(part)
        if not counts or not counts["total"]:
            continue
        if not counts["trainable"]:
            frozen.append(_PART_NAMES[part])
            continue
        how = [f"LoRA ({counts['lora']:,} parameters)"] if counts["lora"] else []
        how += [f"trainable tokens ({counts['tokens']:,} parameters)"] if counts["tokens"] else []
        how += [f"all weights ({counts['full']:,} parameters)"] if counts["full"] else []
        trained.append(f"{_PART_NAMES[part]}: {' + '.join(how)}")
    line = "trained: " + ("; ".join(trained) if trained else "nothing")
    return line + (f"; frozen: {', '.join(frozen)}" if frozen else "")


def non_finite_parameters(model) -> list[str]:
    """Names of the trainable parameters holding a nan or inf."""
    return [name for name, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]


class VLMWrapper:
    """A vision-language model that reads a screenshot and an instruction and answers with an action.

    Args:
        model_name: embedded tiny name (``uivlm/tiny-qwen2-vl``), Hub id (``Qwen/Qwen2-VL-2B-Instruct``),
            a local checkpoint folder, or a folder saved by :meth:`save_pretrained`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (``device_map="auto"``).
        torch_dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or ``"auto"``.
        use_lora: wrap the model with a new LoRA adapter.
        lora_config: ``r``, ``lora_alpha``, ``target_modules``, ``lora_dropout``, ``bias``.
        load_in_8bit / load_in_4bit: quantize the base with bitsandbytes (4-bit = QLoRA's NF4).
        action_format: ``"text"``, ``"json"`` or ``"coordinates"``.
        few_shot_prompt: the template used instead of ``task_prompt`` when few-shot examples are given.
        min_pixels / max_pixels: the processor's pixel budget (None keeps the checkpoint's).
        trust_remote_code: off unless you trust the checkpoint's code.
        constrained: constrained decoding by default in :meth:`predict` (answers can only be
            well-formed actions inside the coordinate space; see :mod:`.constrained`).
        lora_on_vision: with ``use_lora``, adapt the vision tower's and projector's linear layers too
            (``model.freeze_vision_encoder: false``); otherwise LoRA leaves the tower as loaded.
        coordinate_space: the space answers are written in (a name of :data:`uivlm_helpers.core.coords.SPACE_NAMES`; None:
            the family's). A saved agent answers in the space its ``uivlm_agent.json`` names; asking for
            another is an error.
        history_window: earlier actions of the episode written into each prompt (``"auto"``:
            :data:`AUTO_HISTORY_WINDOW` for a step of an episode, none for a single step).
        history_images: earlier screenshots shown before the current one (multi-image families only).
        history_max_pixels: pixel budget of each earlier screenshot (None: a quarter of the current one's).
        A saved agent brings its own history settings, as it brings its prompt.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL, device: str = "cpu", torch_dtype: str = "float32",
                 use_lora: bool = False, lora_config: dict | None = None, load_in_8bit: bool = False,
                 load_in_4bit: bool = False, action_format: str = "text", max_new_tokens: int = 24,
                 temperature: float = 0.0, do_sample: bool = False, task_prompt: str = DEFAULT_TASK_PROMPT,
                 system_prompt: str | None = None, few_shot_prompt: str | None = None, min_pixels: int | None = None,
                 max_pixels: int | None = None, trust_remote_code: bool = False, constrained: bool = False,
                 seed: int = 0, lora_on_vision: bool = False, coordinate_space: str | None = None,
                 history_window: int | str = 0, history_images: int = 0, history_max_pixels: int | None = None):
        model_path = resolve_model_path(model_name)
        saved = Path(model_path) / AGENT_FILE
        agent = json.loads(saved.read_text()) if saved.is_file() else None
        if agent:  # a saved agent brings its own prompt, format and pixel budget (a base: its prompt)
            action_format = agent.get("action_format", action_format)
            task_prompt, system_prompt = agent.get("task_prompt", task_prompt), agent.get("system_prompt", system_prompt)
            min_pixels, max_pixels = agent.get("min_pixels", min_pixels), agent.get("max_pixels", max_pixels)
            generation = agent.get("generation", {})
            max_new_tokens = generation.get("max_new_tokens", max_new_tokens)
            temperature, do_sample = generation.get("temperature", temperature), generation.get("do_sample", do_sample)
            history = agent.get("history", {})
            history_window = history.get("window", history_window)
            history_images = history.get("images", history_images)
            history_max_pixels = history.get("max_pixels", history_max_pixels)
        self.model_name = model_name
        self.device = device
        self.torch_dtype = torch_dtype
        self.action_format = action_format
        self.decoder = ActionDecoder(action_format)
        self.generation = {"max_new_tokens": max_new_tokens, "temperature": temperature, "do_sample": do_sample}
        self.task_prompt, self.system_prompt = task_prompt, system_prompt
        self.few_shot_prompt = few_shot_prompt
        self.trust_remote_code = trust_remote_code
        self.constrained = constrained
        base_name = agent["base_model"] if agent and agent.get("adapter") else model_name
        self.base_model_name = agent.get("base_model") or model_name if agent else model_name
        base_path = model_path if base_name == model_name else resolve_model_path(base_name)
        self.family = family_name_for(base_path)
        self.adapter = get_adapter(base_path)
        self.coordinate_space_name = _agent_space(saved, agent, coordinate_space, self.adapter)
        self.history_window, self.history_images = _history_settings(self.family, history_window, history_images)
        self.history_max_pixels = history_max_pixels
        self.processor = self._load_processor(model_path, min_pixels, max_pixels)
        self.model = self._load_model(base_path, load_in_8bit, load_in_4bit)
        if agent and agent.get("adapter"):
            with _peft_wrapping():
                self.model = PeftModel.from_pretrained(self.model, model_name)
        if use_lora:
            self.add_lora(lora_config or {}, seed=seed, vision=lora_on_vision)

    @classmethod
    def from_config(cls, config: RunConfig, with_lora: bool = True) -> "VLMWrapper":
        """Build the wrapper that a run configuration describes (LoRA and freezing included).

        Args:
            with_lora: False loads the base model alone (for prompting and before/after comparisons).
        """
        m = config.model
        wrapper = cls(model_name=m.name, device=m.device, torch_dtype=m.torch_dtype,
                      use_lora=m.use_lora and with_lora,
                      lora_config=vars(m.lora_config), load_in_8bit=m.load_in_8bit,
                      load_in_4bit=m.load_in_4bit, action_format=m.action_format,
                      max_new_tokens=m.max_new_tokens, temperature=m.temperature, do_sample=m.do_sample,
                      task_prompt=config.task_prompt, system_prompt=config.system_prompt,
                      few_shot_prompt=config.few_shot_prompt,
                      min_pixels=m.min_pixels, max_pixels=m.max_pixels,
                      trust_remote_code=m.trust_remote_code, constrained=m.constrained_decoding,
                      seed=config.training.seed, lora_on_vision=not m.freeze_vision_encoder,
                      history_window=config.data.history_window, history_images=config.data.history_images,
                      history_max_pixels=m.history_max_pixels)
        if m.freeze_vision_encoder:
            wrapper.freeze_vision_encoder()
        return wrapper

    # -- loading -------------------------------------------------------------------------------
    def _load_processor(self, path: str, min_pixels, max_pixels):
        try:
            processor = AutoProcessor.from_pretrained(path, trust_remote_code=self.trust_remote_code)
        except OSError as err:
            raise _load_error(path, "processor", err) from err
        return self.adapter.configure_processor(processor, min_pixels, max_pixels)

    @property
    def pixel_budget(self) -> dict:
        """The processor's pixel budget (min/max pixels); training and evaluation must agree on it."""
        return self.adapter.pixel_budget(self.processor)

    def _load_model(self, path: str, load_in_8bit: bool, load_in_4bit: bool):
        if self.torch_dtype not in ("auto", *_DTYPES):
            raise ValueError(f"torch_dtype: expected one of {['auto', *_DTYPES]}, got {self.torch_dtype!r}")
        dtype = "auto" if self.torch_dtype == "auto" else _DTYPES[self.torch_dtype]
        kwargs = {"dtype": dtype, "trust_remote_code": self.trust_remote_code, "use_safetensors": True}
        if load_in_8bit or load_in_4bit:
            kwargs["quantization_config"] = quantization_config(
                load_in_8bit, load_in_4bit, dtype, skip_modules=self.adapter.vision_module_prefixes)
        if self.device == "auto":
            kwargs["device_map"] = "auto"
        elif load_in_8bit or load_in_4bit:
            kwargs["device_map"] = {"": self.device}  # bitsandbytes places the weights as it loads them
        try:
            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        except OSError as err:
            raise _load_error(path, "weights", err) from err
        if self.device != "auto" and not (load_in_8bit or load_in_4bit):
            model.to(self.device)
        self.quantized = load_in_8bit or load_in_4bit
        if load_in_4bit:
            _keep_trainable_4bit_layout(model)
        return model

    def add_lora(self, lora_config: dict, seed: int = 0, vision: bool = False) -> None:
        """Wrap the model with a fresh LoRA adapter (QLoRA when the base is quantized).

        The adapter's random initialisation is drawn from ``seed`` (without touching the global
        random state), so the same run configuration trains to the same weights. ``target_modules``
        name the language model's layers; ``vision`` adds the family's vision-tower and projector
        layers (:attr:`uivlm_helpers.families.ChatTemplateAdapter.vision_lora_target_modules`).
        """

        settings = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none", "target_modules": None,
                    "trainable_tokens": None}
        unknown = set(lora_config) - set(settings)
        if unknown:
            raise ValueError(f"lora_config: unknown keys {sorted(unknown)}; valid: {sorted(settings)}")
        settings.update({k: v for k, v in lora_config.items() if v is not None})
        words = settings.pop("trainable_tokens")
        if words:  # new words: their input embeddings train beside the adapter (peft's trainable tokens)
            settings["trainable_token_indices"] = self.token_ids_of(words)
        # A regex so the language model's projections are adapted, not same-named vision modules
        # (those only when the tower trains).
        targets = self.adapter.lora_target_regex(settings.pop("target_modules"), vision=vision)
        if self.quantized:
            self.model = prepare_model_for_kbit_training(self.model, use_gradient_checkpointing=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with _peft_wrapping():
                self.model = get_peft_model(self.model, LoraConfig(
                    target_modules=targets, task_type=self.adapter.peft_task_type, **settings))

    def token_ids_of(self, words: list[str]) -> list[int]:
        """The vocabulary ids that spell ``words`` as they stand in a sentence (after a space)."""
        tokenizer = self.processor.tokenizer
        return sorted({i for word in words for i in tokenizer(" " + word, add_special_tokens=False)["input_ids"]})

    def freeze_vision_encoder(self) -> int:
        """Stop gradients in the vision tower and its projector; returns how many tensors were frozen."""
        names = set(self.adapter.vision_parameter_names(self.model))
        for name, param in self.model.named_parameters():
            if name in names:
                param.requires_grad_(False)
        return len(names)

    def get_trainable_parameters(self) -> dict:
        """Trainable and total parameter counts (and the trainable share in percent)."""
        total = sum(p.numel() for p in self.model.parameters())
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / max(total, 1)}

    def trained_parts(self) -> dict:
        """What trains, counted from the live model's parameters (``requires_grad``), part by part.

        Returns ``{"parts": {part: {"total", "trainable", "lora", "full", "tokens"}}, "trainable",
        "total", "summary"}`` for the parts ``vision_tower``, ``projector``, ``language_model`` and
        ``embeddings`` (input and output embeddings). ``lora`` counts adapter weights, ``tokens`` peft's
        trainable-token rows, ``full`` the model's own weights trained directly; ``total`` is the part's
        size, adapters included. ``summary`` is one line for reports and the model card.
        """
        hf = self.model.get_base_model() if self.has_adapter else self.model
        embedding_ids = {id(p) for module in (hf.get_input_embeddings(), hf.get_output_embeddings())
                         if module is not None for p in module.parameters()}
        parts = {part: {"total": 0, "trainable": 0, "lora": 0, "full": 0, "tokens": 0} for part in PARTS}
        for name, param in self.model.named_parameters():
            part = "embeddings" if id(param) in embedding_ids else self.adapter.part_of(name)
            counts = parts[part]
            counts["total"] += param.numel()
            if param.requires_grad:
                kind = "lora" if "lora_" in name else "tokens" if "trainable_tokens" in name else "full"
                counts[kind] += param.numel()
                counts["trainable"] += param.numel()
        trainable = sum(c["trainable"] for c in parts.values())
        total = sum(c["total"] for c in parts.values())
        return {"parts": parts, "trainable": trainable, "total": total, "summary": describe_trained(parts)}

    # -- prompts and targets ------------------------------------------------------------------
    @property
    def coordinate_space(self):
        """The agent's coordinate space where it does not depend on the screenshot (else an error:
        use :meth:`space_for`)."""
        return self.adapter.space_for(None, self.pixel_budget, self.coordinate_space_name)

    def space_for(self, image_size: tuple[int, int]):
        """The coordinate space of one screenshot (``resized``, Qwen2.5-VL's, depends on its size and the
        pixel budget)."""
        return self.adapter.space_for(tuple(image_size), self.pixel_budget, self.coordinate_space_name)

    def prompt_text(self, instruction: str, examples=None, history: list | None = None,
                    image_count: int = 1) -> str:
        """The full model prompt (chat template applied) for one instruction.

        ``history``: the earlier actions written into the prompt, as rendered answers (see
        :meth:`history_answers`); ``image_count``: screenshots in the prompt (earlier ones first).
        """
        text = user_text(self.task_prompt, instruction, self.action_format, self.coordinate_space_name,
                         examples, self.few_shot_prompt, history=history, history_image_count=image_count - 1)
        return self.adapter.prompt_text(self.processor, text, self.system_prompt, image_count=image_count)

    def render_target(self, action: dict | Action, image_size: tuple[int, int]) -> str:
        """The training answer for an action given in screenshot pixels."""
        action = action if isinstance(action, Action) else Action.from_dict(action)
        space = self.space_for(image_size)
        model_action = encode_action(action, space, image_size)
        return render_action(model_action, self.action_format, space)

    # -- episode history ------------------------------------------------------------------------
    def window_for(self, history: list | None) -> int:
        """Earlier actions shown for one step: ``history`` None marks a single step (not part of an
        episode), a list (empty at an episode's first step) a step of an episode."""
        if self.history_window == "auto":
            return AUTO_HISTORY_WINDOW if history is not None else 0
        return self.history_window

    def history_answers(self, history: list | None, image_size: tuple[int, int]) -> list[str] | None:
        """The last :meth:`window_for` earlier actions (screenshot pixels) rendered exactly as answers are,
        in the agent's format and coordinate space (of the current screenshot); None: no history block."""
        window = self.window_for(history)
        if not window:
            return None
        return [self.render_target(action, image_size) for action in (history or [])[-window:]]

    @staticmethod
    def record_histories(records: list[dict]) -> tuple[list, list]:
        """``(histories, history_images)`` of plain records for :meth:`encode` / :meth:`predict`: a record
        of an episode (``episode_id`` set, or a non-empty ``history``) gives its earlier actions (a list,
        empty at the first step), a single-step record None; ``history_images`` are the earlier
        screenshots' paths (empty when not recorded)."""
        histories = [list(r.get("history") or []) if r.get("episode_id") is not None or r.get("history") else None
                     for r in records]
        return histories, [list(r.get("history_images") or []) for r in records]

    def history_pixel_budget(self, image_size: tuple[int, int]) -> int | None:
        """Pixels of each earlier screenshot next to a current one of ``image_size``: ``history_max_pixels``,
        else a quarter of what the current screenshot gets (its own pixels, capped by the main budget).
        None where the family's processor sizes every image itself."""
        if self.history_max_pixels:
            return self.history_max_pixels
        if not self.adapter.uses_pixel_budget:
            return None
        area = image_size[0] * image_size[1]
        main = self.pixel_budget.get("max_pixels")
        return max(1, min(area, main) // 4 if main else area // 4)

    def history_screens(self, screens: list | None, image_size: tuple[int, int]) -> list:
        """The last ``history_images`` earlier screenshots (PIL images or paths), oldest first, scaled to
        :meth:`history_pixel_budget` (for a current screenshot of ``image_size``) with the family's resize
        arithmetic."""
        if not self.history_images or not screens:
            return []
        budget = self.history_pixel_budget(image_size)
        chosen = [as_image(s) for s in list(screens)[-self.history_images:]]
        if not budget or not self.adapter.uses_pixel_budget:
            return chosen
        factor = self.adapter.resize_factor
        resized = []
        for screen in chosen:
            width, height = screen.size
            height_r, width_r = smart_resize(height, width, factor=factor, min_pixels=factor * factor,
                                             max_pixels=max(budget, factor * factor))
            resized.append(screen if (width_r, height_r) == screen.size else screen.resize((width_r, height_r)))
        return resized

    def encode(self, images, instructions, targets=None, padding_side="right", max_length=None,
               record_ids=None, examples=None, processor=None, histories=None, history_images=None,
               image_sizes=None):
        """Model inputs for a batch; ``targets`` are answer strings (labels cover only them).

        ``histories``: per sample, the episode's earlier actions in screenshot pixels, oldest first (None
        for a single step); ``history_images``: per sample, the earlier screenshots, oldest first. How many
        of each reach the prompt is the agent's ``history_window`` / ``history_images``.
        ``processor`` replaces the wrapper's own for this call (the feature cache passes one whose image
        processor only lays out tokens, with placeholder images and the screenshots' real ``image_sizes``,
        which the history's coordinates are written for).
        """
        images = [as_image(i) for i in images]
        sizes = [tuple(s) for s in image_sizes] if image_sizes is not None else [i.size for i in images]
        histories = list(histories) if histories is not None else [None] * len(images)
        history_images = list(history_images) if history_images is not None else [None] * len(images)
        if not len(histories) == len(history_images) == len(images):
            raise ValueError(f"encode: {len(images)} screenshots, {len(histories)} histories and "
                             f"{len(history_images)} history image lists; expected one of each per sample")
        per_sample, prompts = [], []
        for image, size, instruction, history, screens in zip(images, sizes, instructions, histories,
                                                               history_images):
            earlier = self.history_screens(screens, size)
            per_sample.append([*earlier, image])
            prompts.append(self.prompt_text(instruction, examples, self.history_answers(history, size),
                                            image_count=len(earlier) + 1))
        batch_images = per_sample if any(len(s) > 1 for s in per_sample) else images
        return self.adapter.encode(processor or self.processor, batch_images, prompts, targets, padding_side,
                                   max_length, record_ids)

    # -- the seed API -------------------------------------------------------------------------
    def forward(self, images, prompts, labels=None) -> dict:
        """Loss (answer tokens only) and logits for screenshots, instructions and target actions.

        ``labels`` are target actions in screenshot pixels (dicts or :class:`Action`) or answer strings.
        """
        images = [as_image(i) for i in images]
        targets = None
        if labels is not None:
            targets = [t if isinstance(t, str) else self.render_target(t, img.size)
                       for t, img in zip(labels, images)]
        batch = self.encode(images, prompts, targets).to(self.model.device)
        out = self.model(**batch)
        return {"loss": out.loss, "logits": out.logits}

    @torch.no_grad()
    def generate_text(self, images, instructions, examples=None, logits_processor=None, histories=None,
                      history_images=None) -> list[str]:
        """Raw generated answers (special tokens removed), batched with left padding (``histories`` and
        ``history_images``: see :meth:`encode`)."""
        batch = self.encode(images, instructions, padding_side="left", examples=examples, histories=histories,
                            history_images=history_images)
        batch = batch.to(self.model.device)
        generation = {**self.adapter.generation_defaults, **self.generation}
        if not generation["do_sample"]:
            generation.pop("temperature")
        was_training = self.model.training
        self.model.eval()
        try:
            output = self.model.generate(**batch, **generation, logits_processor=logits_processor)
        finally:
            self.model.train(was_training)
        # Not skip_special_tokens=True: it would erase location tokens that a tokenizer marks special.
        eos = self.model.generation_config.eos_token_id
        stops = [eos] if isinstance(eos, int) else list(eos or [])
        return self.adapter.decode(self.processor.tokenizer, self.adapter.new_tokens(output, batch), stops)

    def action_logits_processor(self, images):
        """A ``LogitsProcessorList`` that keeps one generation over ``images`` on the action grammar."""

        eos = self.model.generation_config.eos_token_id
        ends = [eos] if isinstance(eos, int) else list(eos or [])
        ends.append(self.processor.tokenizer.eos_token_id)
        return LogitsProcessorList([ActionLogitsProcessor(
            self.processor.tokenizer, self.action_format, [self.space_for(as_image(i).size) for i in images],
            image_sizes=[as_image(i).size for i in images], end_token_ids=ends,
            max_new_tokens=self.generation["max_new_tokens"])])

    def predict(self, images, instructions, examples=None, constrained: bool | None = None, histories=None,
                history_images=None) -> list[Prediction]:
        """Predict one action per (screenshot, instruction), mapped back to screenshot pixels.

        Args:
            constrained: constrained decoding for this call (None: the wrapper's ``constrained``).
            histories: per sample, the episode's earlier actions (screenshot pixels, oldest first; None:
                a single step).
            history_images: per sample, the episode's earlier screenshots, oldest first.
        """
        images = [as_image(i) for i in images]
        constrained = self.constrained if constrained is None else constrained
        processors = self.action_logits_processor(images) if constrained else None
        texts = self.generate_text(images, instructions, examples, logits_processor=processors,
                                   histories=histories, history_images=history_images)
        return [self.decode_prediction(text, image.size) for text, image in zip(texts, images)]

    def decode_prediction(self, text: str, image_size: tuple[int, int]) -> Prediction:
        """Parse a raw answer and map its coordinates from model space to screenshot pixels."""
        space = self.space_for(image_size)
        parsed = ActionDecoder(self.action_format, space).decode_action(text)
        if isinstance(parsed, ParseFailure):
            return Prediction(raw_text=text, action=None, failure=parsed.reason)
        pixels, clamped = decode_to_pixels(parsed, space, image_size)
        return Prediction(raw_text=text, action=pixels.to_dict(), clamped=clamped)

    def predict_action(self, images, prompt, constrained: bool | None = None):
        """Seed API: the action dict (screenshot pixels) for one image, or a list for a list of images.

        Unparseable answers come back as a :class:`ParseFailure` value (falsy), never an exception.
        ``constrained`` overrides the wrapper's constrained decoding for this call.
        """
        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        prompts = [prompt] * len(images) if isinstance(prompt, str) else list(prompt)
        results = [p.action if p.action is not None else ParseFailure(reason=p.failure, text=p.raw_text)
                   for p in self.predict(images, prompts, constrained=constrained)]
        return results[0] if single else results

    # -- saving -------------------------------------------------------------------------------
    @property
    def has_adapter(self) -> bool:
        return isinstance(self.model, PeftModel)

    def agent_settings(self) -> dict:
        """What a saved agent needs besides weights to answer exactly as this one does."""
        return {"base_model": self.base_model_name, "family": self.family, "adapter": self.has_adapter,
                "action_format": self.action_format, "coordinate_space": self.coordinate_space_name,
                "task_prompt": self.task_prompt, "system_prompt": self.system_prompt,
                "generation": self.generation, **self.pixel_budget,
                "history": {"window": self.history_window, "images": self.history_images,
                            "max_pixels": self.history_max_pixels}}

    def save_pretrained(self, path: str | Path) -> Path:
        """Save weights (the LoRA adapter alone when there is one) as safetensors, the processor and
        the agent settings, so ``VLMWrapper(model_name=path)`` restores a working agent."""
        bad = non_finite_parameters(self.model)
        if bad:  # a diverged run: such an agent answers nothing, and would replace a good one
            raise ValueError(f"save_pretrained: {len(bad)} trainable parameter(s) hold nan or inf (first: {bad[0]}); "
                             "the agent is not saved. Train again with a lower algorithm.learning_rate")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.processor.save_pretrained(path)
        (path / AGENT_FILE).write_text(json.dumps(self.agent_settings(), indent=2))
        return path

    @classmethod
    def load_pretrained(cls, path: str | Path, **kwargs) -> "VLMWrapper":
        """Load an agent saved by :meth:`save_pretrained` (seed API)."""
        return cls(model_name=str(path), **kwargs)

    def merge_lora(self) -> None:
        """Fold the LoRA adapter into the base weights (``merge_and_unload``)."""
        if not self.has_adapter:
            raise ValueError("merge_lora: this model has no LoRA adapter to merge")
        self.model = self.model.merge_and_unload()
