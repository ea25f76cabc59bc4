"""Model family adapters: what differs between VLM families, in one small object each.

An adapter knows how a prompt (and, for training, a target answer) becomes model inputs, where the
answer starts so only its tokens carry labels, which coordinate space the family speaks, where the
vision tower lives (for ``freeze_vision_encoder``) and which modules LoRA should target.

Families are recognised from a Hub name, an embedded tiny model name or a local folder's
``config.json`` (``model_type``), without downloading anything.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .tiny import TINY_MODELS

IGNORE_INDEX = -100

#: Recognised families and the Hub-name patterns / config ``model_type`` values that identify them.
KNOWN_FAMILIES = {
    "qwen2_vl": {"names": [r"qwen2-vl", r"tiny-qwen2-vl"], "model_types": ["qwen2_vl"]},
    "qwen2_5_vl": {"names": [r"qwen2\.5-vl", r"qwen2_5-vl"], "model_types": ["qwen2_5_vl"]},
    "llava": {"names": [r"llava-1\.5", r"llava"], "model_types": ["llava"]},
    "idefics2": {"names": [r"idefics2"], "model_types": ["idefics2"]},
    "florence2": {"names": [r"florence-2"], "model_types": ["florence2"]},
    "paligemma": {"names": [r"paligemma"], "model_types": ["paligemma"]},
}


def family_name_for(model_name_or_path: str) -> str:
    """Name the family of a model from its tiny name, local ``config.json`` or Hub name.

    Raises:
        ValueError: the model is not of a supported family (the message lists them).
    """
    if model_name_or_path in TINY_MODELS:
        return TINY_MODELS[model_name_or_path]
    config_file = Path(model_name_or_path) / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type")
        for family, spec in KNOWN_FAMILIES.items():
            if model_type in spec["model_types"]:
                return family
        raise ValueError(f"{model_name_or_path}: config.json has model_type {model_type!r}, which is "
                         f"not a supported family; supported: {sorted(KNOWN_FAMILIES)}")
    lowered = model_name_or_path.lower()
    # Longest pattern first, so "qwen2.5-vl" is not taken for "qwen2-vl".
    patterns = sorted(((p, f) for f, s in KNOWN_FAMILIES.items() for p in s["names"]),
                      key=lambda pf: -len(pf[0]))
    for pattern, family in patterns:
        if re.search(pattern, lowered):
            return family
    raise ValueError(f"cannot tell the model family of {model_name_or_path!r}: it is not an embedded "
                     f"tiny model ({sorted(TINY_MODELS)}), not a local folder with config.json, and its "
                     f"name matches none of the supported families {sorted(KNOWN_FAMILIES)}")


@dataclass(frozen=True)
class ChatTemplateAdapter:
    """Adapter for decoder-only families prompted through the processor's chat template."""

    name: str
    coordinate_space: str
    vision_module_prefixes: tuple[str, ...]
    lora_target_modules: tuple[str, ...]
    # The text that closes an answer in the chat template, trained so the model learns to stop.
    answer_suffix: str
    generation_defaults: dict = field(default_factory=dict)

    def prompt_text(self, processor, user_text: str, system_prompt: str | None = None) -> str:
        """Chat-formatted prompt for one screenshot and one instruction, ending where the answer starts."""
        messages = []
        if system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": user_text}]})
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

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
            texts = [t + target + self.answer_suffix for t, target in zip(texts, targets)]
        tokenizer = processor.tokenizer
        previous_side, tokenizer.padding_side = tokenizer.padding_side, padding_side
        try:
            batch = processor(text=texts, images=list(images), padding=True, return_tensors="pt")
        finally:
            tokenizer.padding_side = previous_side
        lengths = batch["attention_mask"].sum(dim=1)
        if max_length is not None:
            for rid, length in zip(record_ids, lengths.tolist()):
                if length > max_length:
                    raise ValueError(f"record {rid}: {length} tokens (text + image) exceed max_length="
                                     f"{max_length}; lower the pixel budget or raise max_length")
        if targets is not None:
            batch["labels"] = self.answer_labels(tokenizer, batch, targets, record_ids)
        return batch

    def answer_labels(self, tokenizer, batch, targets, record_ids):
        """Labels equal to ``input_ids`` on the answer tokens and ``IGNORE_INDEX`` everywhere else.

        The answer is located exactly: the last real tokens of each row must be the tokenized answer.
        A mismatch (a tokenizer that merges across the prompt/answer boundary) is an error, because
        guessing would silently train on prompt tokens.
        """
        input_ids, attention = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for row, (target, rid) in enumerate(zip(targets, record_ids)):
            answer = tokenizer(target + self.answer_suffix, add_special_tokens=False)["input_ids"]
            positions = attention[row].nonzero().flatten()
            answer_positions = positions[-len(answer):]
            if input_ids[row, answer_positions].tolist() != answer:
                raise ValueError(f"record {rid}: the answer {target!r} does not tokenize the same inside "
                                 "the prompt as on its own; cannot mask the prompt exactly")
            labels[row, answer_positions] = input_ids[row, answer_positions]
        return labels

    def vision_parameter_names(self, model) -> list[str]:
        """Names of the parameters that belong to the vision tower (and its projector)."""
        return [n for n, _ in model.named_parameters()
                if any(prefix in n for prefix in self.vision_module_prefixes)]


QWEN2_VL = ChatTemplateAdapter(
    name="qwen2_vl",
    coordinate_space="norm1000",
    # "visual." holds the ViT and its patch merger (the projector into the language model).
    vision_module_prefixes=("visual.",),
    lora_target_modules=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    answer_suffix="<|im_end|>",
)

ADAPTERS = {"qwen2_vl": QWEN2_VL}


def get_adapter(model_name_or_path: str) -> ChatTemplateAdapter:
    """The adapter for a model name or folder (see :func:`family_name_for`)."""
    family = family_name_for(model_name_or_path)
    if family not in ADAPTERS:
        raise ValueError(f"{model_name_or_path!r} is a {family} model; this version of uivlm supports "
                         f"{sorted(ADAPTERS)}")
    return ADAPTERS[family]
