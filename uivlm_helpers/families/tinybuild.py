"""Shared pieces of the embedded tiny checkpoints: the tokenizer corpus and tokenizer training.

Every family's tiny checkpoint (``uivlm_helpers.families.<family>.build_tiny``) trains its tokenizer here
on the same corpus: the words the workbook's prompts, synthetic screens and action formats use. The
corpus is part of every recipe's hash (:func:`uivlm_helpers.models.tiny.recipe_hash`), so changing it
rebuilds the checkpoints.
"""

from __future__ import annotations

import json

from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from ..core.config import DEFAULT_TASK_PROMPT
from ..core.prompts import COORDINATE_HINTS, FORMAT_HINTS
from ..data.synth_tasks import LABELS, PALETTE

# Text the tiny tokenizer's BPE merges are learned from: the words the workbook's prompts, synthetic
# screens and action formats use. Any other text still tokenizes (byte-level fallback).
TOKENIZER_CORPUS = """
You are a helpful assistant. You operate a graphical user interface. Look at the screenshot and
answer with the next action only. Instruction: Click the Save button. Click the Cancel button.
Click the OK button. Click the Submit button. Click the Email field. Click the Password field.
Click the Search field. Click the Username field. Click the link. Check the Remember me box.
Click the settings icon. Click the home icon. Click the search icon. Click the trash icon.
Click the star icon. Click the first second third fourth checkbox button link field icon.
Sign in Log in Forgot password? Create account Next Back Close Delete Edit Open Help Profile
Notifications Dark mode Wi-Fi Bluetooth Location Sound Display Privacy Language Results
click(x, y) double_click(x, y) long_press(x, y) drag(x, y, x2, y2) type("text") press(Enter)
press(Tab) press(Backspace) scroll(down, 100) scroll(up, 100) scroll(left, 100) scroll(right, 100)
wait(1) done() {"type": "click", "x": 100, "y": 200} {"type": "type", "text": "hello"}
{"type": "scroll", "direction": "down", "amount": 100} {"type": "wait", "seconds": 1}
{"type": "press", "key": "Enter"} {"type": "done"} 100 200 click type "hello" scroll down 100
system user assistant Example Answer Action The answer is
"""


def workbook_phrases() -> str:
    """The default task prompt in each format and coordinate space, and the task screens' words.

    Repeated so that BPE merges them into whole-word tokens: the default prompt then costs about as
    many tokens as it would with a real model's tokenizer (a quarter of a character-level split).
    """

    prompts = [DEFAULT_TASK_PROMPT.format(instruction="", format_hint=f, coordinate_hint=c)
               for f in FORMAT_HINTS.values() for c in COORDINATE_HINTS.values()]
    words = [f"Click the {colour} {noun} one element" for colour in PALETTE
             for noun in ("button", "text field", "link", "checkbox", "icon")]
    words += [" ".join(labels) for labels in LABELS.values()]
    words += ["Tap the only topmost bottom leftmost rightmost fifth sixth last"]
    return "\n".join(prompts * 8 + words * 4)


TOKENIZER_CORPUS += workbook_phrases()


def build_tiny_tokenizer(special_tokens: list[str], vocab_size: int, tokenizer_class=None):
    """Train a small byte-level BPE on the workbook's vocabulary and wrap it in a Qwen tokenizer class.

    ``tokenizer_class`` takes ``vocab`` and ``merges`` (default ``Qwen2Tokenizer``; Qwen3.5 ships
    ``Qwen3_5Tokenizer``). The first special token is added as an ordinary special token (Qwen's
    ``<|endoftext|>``), the others as additional special tokens.
    """
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(TOKENIZER_CORPUS.split("\n"), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    tokenizer = (tokenizer_class or Qwen2Tokenizer)(vocab=model["vocab"], merges=merges)
    if special_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": special_tokens[1:]})
        tokenizer.add_tokens([special_tokens[0]], special_tokens=True)
    return tokenizer



BYTE_FALLBACK_TOKENS = [f"<0x{i:02X}>" for i in range(256)]
PRINTABLE_ASCII = [chr(i) for i in range(33, 127)]


def train_metaspace_bpe(special_tokens: list[str], vocab_size: int, prepend_scheme: str):
    """Vocabulary and merges of a SentencePiece-like BPE ("▁" marks a space, byte fallback for the rest),
    trained on the workbook corpus. ``special_tokens`` get the first ids, then the 256 byte tokens."""

    bpe = Tokenizer(models.BPE(byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  special_tokens=special_tokens + BYTE_FALLBACK_TOKENS,
                                  initial_alphabet=PRINTABLE_ASCII + ["▁"])
    bpe.train_from_iterator(TOKENIZER_CORPUS.split("\n"), trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges


def build_llama_tokenizer(vocab_size: int, extra_special: dict[str, str] | None = None, **named):
    """A ``LlamaTokenizer`` (the class LLaVA-1.5 and Idefics2 ship) over a tiny trained BPE.

    Args:
        extra_special: named model-specific special tokens (``{"image_token": "<image>"}``): added to
            the vocabulary as special tokens and exposed as attributes (``tokenizer.image_token``).
        named: other tokenizer arguments (``pad_token``...).
    """
    # lazy: transformers' model classes take seconds to import; only building or reading a checkpoint needs them
    from transformers import AddedToken, LlamaTokenizer

    vocab, merges = train_metaspace_bpe(["<unk>", "<s>", "</s>"], vocab_size, "first")
    extra_special = extra_special or {}
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True, add_eos_token=False,
                               **extra_special, **named)
    new = [AddedToken(t, normalized=False, special=True) for t in [*extra_special.values(), *named.values()]
           if t not in vocab]
    tokenizer.add_special_tokens({"additional_special_tokens": new}, replace_extra_special_tokens=False)
    return tokenizer

