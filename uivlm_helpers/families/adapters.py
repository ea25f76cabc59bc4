"""Adapters: what differs between VLM families, in one small object each (the generic classes).

An adapter knows how a prompt (and, for training, a target answer) becomes model inputs, where the
answer starts so only its tokens carry labels, which coordinate space the family speaks (per
screenshot where the space depends on the image), where the vision tower lives (for
``freeze_vision_encoder``), which modules LoRA should target and how generated ids become answer text.
Each family's module (:mod:`uivlm_helpers.families`) makes one instance of these classes.

:class:`SquarePaddedSpace` is the coordinate space of a screenshot padded to a centred square (LLaVA's
"expand2square" instead of its published centre crop, which cuts a wide screenshot's edges off); a
predicted point that lands in the padding is clamped to the screenshot and flagged.

With LoRA and ``model.freeze_vision_encoder: false``, adapters also go on the linear layers of the
vision tower and its projector (``vision_lora_target_modules``); otherwise LoRA adapts the language
model alone and the tower stays as it was loaded.

A saved agent may speak another coordinate space than its family's default (``uivlm_agent.json``):
:meth:`ChatTemplateAdapter.space_for` takes the space's name, and every family can encode any of
:data:`uivlm_helpers.core.coords.SPACE_NAMES` (``resized`` with the Qwen ``smart_resize`` factor 28).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..core.coords import CoordinateSpace, GridSpace, SPACE_NAMES, get_space

IGNORE_INDEX = -100

#: Special tokens that carry meaning in an answer and survive decoding: location tokens (PaliGemma's
#: ``<locNNNN>``, Florence-2's ``<loc_N>``, which Florence's tokenizer marks special) and Qwen's box
#: and object-reference markers. Every other special token (pad, eos, bos, chat and image tokens) is
#: removed from generated answers.
KEPT_SPECIAL_TOKENS = re.compile(r"<loc_?\d+>|<\|box_start\|>|<\|box_end\|>|<\|object_ref_start\|>"
                                 r"|<\|object_ref_end\|>")


# --- Coordinate space of a padded square -----------------------------------------------------------

def square_padding(image_size: tuple[int, int]) -> tuple[int, int, int]:
    """``(side, left, top)`` of the centred square a screenshot is padded to (LLaVA's expand2square;
    the same integer split as ``LlavaImageProcessor.pad_to_square``)."""
    width, height = image_size
    if not (width > 0 and height > 0):
        raise ValueError(f"image_size must be a positive (width, height), got {image_size!r}")
    side = max(width, height)
    return side, (side - width) // 2, (side - height) // 2


@dataclass(frozen=True)
class SquarePaddedSpace(GridSpace):
    """A whole-number grid over the screenshot padded to a centred square.

    ``to_model`` shifts a screenshot point into the square and encodes it on the grid; ``to_pixels``
    decodes, shifts back and clamps a point that fell into the padding onto the screenshot's edge
    (reported as ``clamped``). Any point of the screenshot, corners included, has a code.
    """

    def to_model(self, x, y, image_size):
        width, height = image_size
        side, left, top = square_padding(image_size)
        if not (0 <= x <= width and 0 <= y <= height):
            raise ValueError(f"point ({x}, {y}) lies outside the {width}x{height} screenshot")
        return super().to_model(x + left, y + top, (side, side))

    def to_pixels(self, mx, my, image_size):
        width, height = image_size
        side, left, top = square_padding(image_size)
        sx, sy, clamped = super().to_pixels(mx, my, (side, side))
        x, y = sx - left, sy - top
        inside_x, inside_y = min(max(x, 0), width), min(max(y, 0), height)
        return inside_x, inside_y, clamped or inside_x != x or inside_y != y


NORM1000_SQUARE = SquarePaddedSpace("norm1000_square", (1000, 1000))


# --- Adapters --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ChatTemplateAdapter:
    """Adapter for decoder-only families prompted through the processor's chat template.

    Attributes:
        name: the family.
        coordinate_space: the space's name (prompt hints, saved agent settings).
        vision_module_prefixes: parameter-name fragments of the vision tower and its projector.
        lora_target_modules: the language model's linear layers LoRA adapts by default.
        vision_lora_target_modules: the linear layers of the tower and projector (names as they end,
            matched only inside ``vision_module_prefixes``) that LoRA adapts when the tower trains.
        projector_module_prefixes: the part of ``vision_module_prefixes`` that is the projector into
            the language model (reported apart from the tower).
        answer_suffix: the text that closes an answer (trained, so the model learns to stop).
        answer_prefix: text between the generation prompt and the answer (LLaVA: a space).
        generation_defaults: ``generate`` settings the family needs (the wrapper's own win).
        uses_pixel_budget: the processor has a min/max pixel budget (Qwen families).
        peft_task_type: peft's task type for LoRA.
        resize_factor: ``smart_resize``'s factor for the ``resized`` space (patch 14 x merge 2).
    """

    name: str
    coordinate_space: str
    vision_module_prefixes: tuple[str, ...]
    lora_target_modules: tuple[str, ...]
    answer_suffix: str
    vision_lora_target_modules: tuple[str, ...] = ()
    projector_module_prefixes: tuple[str, ...] = ()
    answer_prefix: str = ""
    generation_defaults: dict = field(default_factory=dict)
    uses_pixel_budget: bool = False
    is_encoder_decoder: bool = False
    peft_task_type: str = "CAUSAL_LM"
    resize_factor: int = 28

    # -- processor and coordinate space ----------------------------------------------------------
    def configure_processor(self, processor, min_pixels: int | None = None, max_pixels: int | None = None):
        """Apply a pixel budget (Qwen families) and any family fix-ups to a loaded processor."""
        if min_pixels is None and max_pixels is None:
            return processor
        if not self.uses_pixel_budget:
            raise ValueError(f"min_pixels/max_pixels set a pixel budget, which only the Qwen families "
                             f"(qwen2_vl, qwen2_5_vl) have; {self.name} resizes screenshots to its own "
                             "fixed size: leave them unset (None)")
        image_processor = processor.image_processor
        size = dict(image_processor.size)
        size["shortest_edge"] = min_pixels if min_pixels is not None else size["shortest_edge"]
        size["longest_edge"] = max_pixels if max_pixels is not None else size["longest_edge"]
        image_processor.size = size
        return processor

    def pixel_budget(self, processor) -> dict:
        """``{"min_pixels", "max_pixels"}`` of the processor (None for families without a budget)."""
        if not self.uses_pixel_budget:
            return {"min_pixels": None, "max_pixels": None}
        size = processor.image_processor.size
        return {"min_pixels": size.get("shortest_edge"), "max_pixels": size.get("longest_edge")}

    def space_for(self, image_size: tuple[int, int] | None = None, pixel_budget: dict | None = None,
                  name: str | None = None) -> CoordinateSpace:
        """The coordinate space of one screenshot (``image_size`` = its ``(width, height)``).

        ``name`` picks another space than the family's (a saved agent's ``coordinate_space``); ``resized``
        depends on the screenshot size and the pixel budget.
        """
        name = name or self.coordinate_space
        if name not in SPACE_NAMES:
            raise ValueError(f"unknown coordinate space {name!r}; supported: {', '.join(SPACE_NAMES)}")
        if name != "resized":
            return get_space(name)
        if image_size is None:
            raise ValueError(f"{self.name} speaks pixels of the resized screenshot: its coordinate space "
                             "depends on the screenshot size; use space_for(image_size)")
        budget = {k: v for k, v in (pixel_budget or {}).items() if k in ("min_pixels", "max_pixels") and v}
        return get_space("resized", image_size=tuple(image_size), factor=self.resize_factor, **budget)

    # -- prompts and batches ----------------------------------------------------------------------
    @staticmethod
    def chat_messages(user_text: str, system_prompt: str | None = None, image_count: int = 1) -> list[dict]:
        """The conversation of one step: the system prompt, then one user turn holding ``image_count``
        images (earlier screenshots first, the current one last) and the text."""
        messages = []
        if system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
        images = [{"type": "image"} for _ in range(image_count)]
        messages.append({"role": "user", "content": [*images, {"type": "text", "text": user_text}]})
        return messages

    def prompt_text(self, processor, user_text: str, system_prompt: str | None = None, image_count: int = 1) -> str:
        """Chat-formatted prompt for one step (``image_count`` screenshots, the current one last) and its
        text, ending where the answer starts."""
        return processor.apply_chat_template(self.chat_messages(user_text, system_prompt, image_count),
                                             add_generation_prompt=True, tokenize=False)

    def full_answer(self, target: str) -> str:
        """The text appended to the prompt for training: prefix + answer + suffix."""
        return self.answer_prefix + target + self.answer_suffix

    def _process(self, processor, images, texts, padding_side, targets=None):
        tokenizer = processor.tokenizer
        previous_side, tokenizer.padding_side = tokenizer.padding_side, padding_side
        try:
            return processor(text=texts, images=list(images), padding=True, return_tensors="pt")
        finally:
            tokenizer.padding_side = previous_side

    def encode(self, processor, images, prompt_texts, targets=None, padding_side="right",
               max_length: int | None = None, record_ids=None):
        """Tokenize prompts (+ targets) with their screenshots into one padded batch.

        Args:
            processor: the family's processor.
            images: PIL images, one per sample.
            prompt_texts: outputs of :meth:`prompt_text`.
            targets: answer strings; when given, ``labels`` hold only the answer tokens.
            padding_side: "right" for training, "left" for batched generation.
            max_length: longest allowed sequence; a longer one is an error naming the record
                (never truncated, since cutting image tokens breaks the model's input).
            record_ids: names of the samples, used in error messages.

        Returns:
            The processor's ``BatchFeature`` (``input_ids``, ``attention_mask``, ``pixel_values``, ...
            everything the family's forward needs, e.g. ``mm_token_type_ids``), plus ``labels``.
        """
        record_ids = list(record_ids) if record_ids is not None else list(range(len(prompt_texts)))
        texts = list(prompt_texts)
        if targets is not None:
            texts = [t + self.full_answer(target) for t, target in zip(texts, targets)]
        batch = self._process(processor, images, texts, padding_side)
        self.check_length(batch, max_length, record_ids)
        if targets is not None:
            batch["labels"] = self.answer_labels(processor.tokenizer, batch, prompt_texts, targets, record_ids)
        return batch

    @staticmethod
    def check_length(batch, max_length, record_ids):
        if max_length is None:
            return
        for rid, length in zip(record_ids, batch["attention_mask"].sum(dim=1).tolist()):
            if length > max_length:
                raise ValueError(f"record {rid}: {length} tokens (text + image) exceed max_length="
                                 f"{max_length}; lower the pixel budget or raise max_length")

    def answer_token_ids(self, tokenizer, prompt_text: str, target: str) -> list[int] | None:
        """The tokens the answer adds after the prompt, or None if the tokenizer merges across the
        prompt/answer boundary (then no exact mask exists)."""
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        full_ids = tokenizer(prompt_text + self.full_answer(target), add_special_tokens=False)["input_ids"]
        if full_ids[:len(prompt_ids)] != prompt_ids:
            return None
        return full_ids[len(prompt_ids):]

    def answer_labels(self, tokenizer, batch, prompt_texts, targets, record_ids):
        """Labels equal to ``input_ids`` on the answer tokens and ``IGNORE_INDEX`` everywhere else.

        The answer is located exactly: the last real tokens of each row must be the tokens the answer
        adds after the prompt. A mismatch (a tokenizer that merges across the prompt/answer boundary)
        is an error, because guessing would silently train on prompt tokens.
        """
        input_ids, attention = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, (prompt, target, rid) in enumerate(zip(prompt_texts, targets, record_ids)):
            answer = self.answer_token_ids(tokenizer, prompt, target)
            positions = attention[row].nonzero().flatten()
            answer_positions = positions[-len(answer):] if answer else positions[:0]
            if not answer or input_ids[row, answer_positions].tolist() != answer:
                raise ValueError(f"record {rid}: the answer {target!r} does not tokenize the same inside "
                                 "the prompt as on its own; cannot mask the prompt exactly")
            labels[row, answer_positions] = input_ids[row, answer_positions]
        return labels

    # -- generation -------------------------------------------------------------------------------
    def new_tokens(self, output, batch):
        """The generated part of ``generate``'s output (decoder-only models echo the prompt)."""
        return output if self.is_encoder_decoder else output[:, batch["input_ids"].shape[1]:]

    def decode(self, tokenizer, sequences, stop_token_ids=()) -> list[str]:
        """Answer texts of generated token rows.

        Each row is cut at its first stop token (eos, end of turn); pad, bos, chat and image tokens are
        dropped; location tokens and box markers are kept even where the tokenizer marks them special
        (``skip_special_tokens=True`` would erase Florence-2's ``<loc_N>``).
        """
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        special = {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
        special |= set(tokenizer.all_special_ids)
        dropped = {i for i in special
                   if not KEPT_SPECIAL_TOKENS.fullmatch(tokenizer.convert_ids_to_tokens(i) or "")}
        stops = {i for i in stop_token_ids if i is not None}
        for name in ("eos_token_id",):
            if getattr(tokenizer, name, None) is not None:
                stops.add(getattr(tokenizer, name))
        for token in (self.answer_suffix,):
            if token and token in tokenizer.get_vocab():
                stops.add(tokenizer.convert_tokens_to_ids(token))
        texts = []
        for row in (sequences.tolist() if hasattr(sequences, "tolist") else sequences):
            kept = []
            # An encoder-decoder's output starts with its decoder start token (Florence-2: </s>).
            for token_id in row[1:] if self.is_encoder_decoder else row:
                if token_id in stops:
                    break
                if token_id not in dropped:
                    kept.append(token_id)
            texts.append(tokenizer.decode(kept, skip_special_tokens=False).strip())
        return texts

    # -- training parts ---------------------------------------------------------------------------
    def vision_parameter_names(self, model) -> list[str]:
        """Names of the parameters that belong to the vision tower (and its projector)."""
        return [n for n, _ in model.named_parameters()
                if any(prefix in n for prefix in self.vision_module_prefixes)]

    def part_of(self, parameter_name: str) -> str:
        """``"projector"``, ``"vision_tower"`` or ``"language_model"``: where a parameter belongs (by name;
        the embeddings are told apart by :meth:`.VLMWrapper.trained_parts`, which sees the modules)."""
        if any(prefix in parameter_name for prefix in self.projector_module_prefixes):
            return "projector"
        if any(prefix in parameter_name for prefix in self.vision_module_prefixes):
            return "vision_tower"
        return "language_model"

    def lora_target_regex(self, language_targets=None, vision: bool = False) -> str:
        """peft's ``target_modules`` regex (matched against whole module names).

        Args:
            language_targets: the language model's layers (None: :attr:`lora_target_modules`). The vision
                modules are excluded, so their same-named projections (``q_proj``...) are not adapted.
            vision: also adapt :attr:`vision_lora_target_modules` inside the tower and projector.
        """
        vision_modules = "|".join(re.escape(p.rstrip(".")) for p in self.vision_module_prefixes)
        names = "|".join(re.escape(n) for n in (language_targets or self.lora_target_modules))
        pattern = rf"(?!.*(?:{vision_modules})\.).*\.(?:{names})"
        if vision:
            if not self.vision_lora_target_modules:
                raise ValueError(f"{self.name}: no vision-tower layers are known for LoRA")
            tower = "|".join(re.escape(n) for n in self.vision_lora_target_modules)
            pattern = rf"(?:{pattern}|.*(?:{vision_modules})\.(?:.*\.)?(?:{tower}))"
        return rf"^{pattern}$"


@dataclass(frozen=True)
class ResizedPixelsAdapter(ChatTemplateAdapter):
    """Qwen2.5-VL: absolute pixels of the image the model saw after ``smart_resize`` (factor 28; its
    ``coordinate_space`` is ``resized``, which :meth:`ChatTemplateAdapter.space_for` builds per screenshot)."""


@dataclass(frozen=True)
class SquarePadAdapter(ChatTemplateAdapter):
    """LLaVA-1.5: the screenshot is padded to a centred square (never centre-cropped); coordinates are
    norm1000 of that square."""

    def configure_processor(self, processor, min_pixels=None, max_pixels=None):
        super().configure_processor(processor, min_pixels, max_pixels)
        image_processor = processor.image_processor
        if hasattr(image_processor, "do_pad"):
            image_processor.do_pad = True  # expand2square with the mean colour, then resize
        return processor

    def space_for(self, image_size=None, pixel_budget=None, name=None):
        # The model sees the padded square, so its norm1000 is of that square; other spaces are of the
        # screenshot itself.
        if (name or self.coordinate_space) == "norm1000":
            return NORM1000_SQUARE
        return super().space_for(image_size, pixel_budget, name)


def _one_image(family: str, image_count: int) -> None:
    if image_count != 1:
        raise ValueError(f"{family} takes one image per prompt, got {image_count} (history screenshots need a "
                         "multi-image family)")


@dataclass(frozen=True)
class PrefixSuffixAdapter(ChatTemplateAdapter):
    """PaliGemma: ``<image>`` + prefix, and the answer as the processor's ``suffix``.

    The processor writes ``<image>...<bos>prefix\\n`` + ``suffix<eos>`` and labels exactly the suffix
    tokens (``token_type_ids == 1``); the prefix attends bidirectionally.
    """

    def prompt_text(self, processor, user_text, system_prompt=None, image_count=1):
        _one_image(self.name, image_count)
        text = f"{system_prompt}\n{user_text}" if system_prompt else user_text
        return processor.image_token + text

    def full_answer(self, target):
        return target + self.answer_suffix

    def encode(self, processor, images, prompt_texts, targets=None, padding_side="right", max_length=None,
               record_ids=None):
        record_ids = list(record_ids) if record_ids is not None else list(range(len(prompt_texts)))
        tokenizer = processor.tokenizer
        previous_side, tokenizer.padding_side = tokenizer.padding_side, padding_side
        try:
            batch = processor(text=list(prompt_texts), images=list(images),
                              suffix=list(targets) if targets is not None else None,
                              padding=True, return_tensors="pt")
        finally:
            tokenizer.padding_side = previous_side
        self.check_length(batch, max_length, record_ids)
        if targets is None:
            batch.pop("labels", None)  # all IGNORE_INDEX without a suffix; generate must not get it
        return batch


@dataclass(frozen=True)
class EncoderDecoderAdapter(ChatTemplateAdapter):
    """Florence-2: the image and the prompt go into the encoder; the answer is the decoder's sequence.

    Labels are the tokenized answer (``<s>answer</s>``), padded with ``IGNORE_INDEX``; the model shifts
    them right behind its decoder start token, and generation returns only decoder tokens.
    """

    def prompt_text(self, processor, user_text, system_prompt=None, image_count=1):
        _one_image(self.name, image_count)
        return f"{system_prompt}\n{user_text}" if system_prompt else user_text

    def encode(self, processor, images, prompt_texts, targets=None, padding_side="right", max_length=None,
               record_ids=None):
        record_ids = list(record_ids) if record_ids is not None else list(range(len(prompt_texts)))
        batch = self._process(processor, images, list(prompt_texts), padding_side)
        self.check_length(batch, max_length, record_ids)
        if targets is not None:
            tokenizer = processor.tokenizer
            previous_side, tokenizer.padding_side = tokenizer.padding_side, "right"
            try:
                answers = tokenizer(list(targets), padding=True, add_special_tokens=True, return_tensors="pt")
            finally:
                tokenizer.padding_side = previous_side
            labels = answers["input_ids"].masked_fill(answers["attention_mask"] == 0, IGNORE_INDEX)
            if max_length is not None:
                for rid, length in zip(record_ids, answers["attention_mask"].sum(dim=1).tolist()):
                    if length > max_length:
                        raise ValueError(f"record {rid}: the answer has {length} tokens, more than "
                                         f"max_length={max_length}")
            batch["labels"] = labels
        return batch


#: A Llama-style language model's linear layers (Qwen2, Llama, Mistral, Gemma).
LLM_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: A CLIP / SigLIP encoder layer's linear layers (and BART's).
CLIP_LINEAR = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
