r"""Constrained decoding: generation that can only write a well-formed action.

A :class:`ActionLogitsProcessor` (a ``transformers`` ``LogitsProcessor``) masks, at every step, the
tokens that would take the answer off the action grammar. Whatever the model's weights, greedy or
sampled generation then writes one canonical action in the configured format (:mod:`uivlm_helpers.core.actions`),
with coordinates inside the model's coordinate space, followed by the end-of-answer token; the
decoded text always reads back with :func:`~uivlm_helpers.core.actions.parse_action`.

The grammar (:class:`ActionGrammar`, built by :func:`action_grammar`) is the language of
:func:`~uivlm_helpers.core.actions.render_action`, taken from ``FORMAT_TEMPLATES`` and ``ACTION_FIELDS``,
restricted to values the model should be able to say:

==============  ===================================================================================
coordinates     ``norm1000``: whole numbers 0..999; ``resized``: 0..w-1 / 0..h-1 of the resized
                image; ``norm1``: 0..1 with at most ``space.decimals`` decimals; ``pixels``: 0..W /
                0..H with at most 2 decimals when the screenshot size is known, else up to 5 digits
                (also for ``space=None``); location-token spaces: the space's token pair (``<loc0512>``
                tokens, 0..1023, or ``<loc_N>``, 0..999). No signs, exponents or leading zeros.
typed text      any JSON string literal (escapes ``\" \\ \/ \b \f \n \r \t \uXXXX``, no raw control
                characters, valid UTF-8, no lone surrogates) of at most ``max_text_len`` bytes as
                written (default 200).
key             ``keys="vocabulary"`` (default): modifiers (``ctrl alt shift meta``) joined with ``+``
                to a key from ``KEY_NAMES``, a modifier, ``a``..``z``, ``0``..``9`` or ``F1``..``F12``
                (``ctrl+a``, ``shift+Tab``); ``keys="any"``: anything ``KEY_PATTERN`` matches, up to
                32 characters.
amount          whole numbers 0..10000; seconds: 0..999 with at most 3 decimals.
==============  ===================================================================================

How it works:

* **Byte-level automaton.** The grammar runs over UTF-8 bytes, so byte-level BPE tokens that split a
  character (most non-ASCII text in Qwen's vocabulary) are handled exactly. A state is the set of
  live positions in the alternatives (one per action type; an NFA, so the coordinates format's
  "numbers first" shapes need no look-ahead). :meth:`ActionGrammar.is_valid_prefix` /
  :meth:`~ActionGrammar.is_complete` expose it for text.
* **Vocabulary index.** Each token's bytes are computed once per tokenizer (from the byte-level
  alphabet, SentencePiece ``▁``/``<0xNN>`` pieces, else ``decode``) and stored in a byte trie
  (:func:`token_vocabulary`, cached per tokenizer object). Special tokens never count as text
  (location tokens excepted); the end-of-answer ids are allowed exactly when the action is complete.
* **Masks per state.** The allowed tokens of a state are found by walking the trie from that state,
  pruning a whole subtree at the first byte the grammar rejects, and are cached per (vocabulary,
  grammar, state). Inside typed text the byte count is dropped from the cache key while it is far
  from the limit, so one walk serves every position of a string.
* **Rows.** Each call re-derives every row's state from the tokens generated so far
  (``input_ids[:, prompt_len:]``, the prompt length being the input length at the first call, which
  left padding keeps equal for all rows), memoised per prefix; beams and sampling need nothing else.
* **Budget.** With ``max_new_tokens`` given, a token is allowed only if the shortest completion
  after it (in bytes, :meth:`ActionGrammar.min_remaining`) fits in the tokens left. Every ASCII byte
  being a token of its own (byte-level BPE, byte-fallback SentencePiece; checked, with a warning
  otherwise), a completion always exists, so a model that rambles is steered to close its string
  and its brackets in time: the answer is complete even when it is cut at the length limit (then
  without the end token). The shortest action must fit: ``done()`` (6 bytes) in text,
  ``{"type": "done"}`` (16) in JSON, ``done`` (4) in coordinates.

Cost (``bench/bench_actions.py``, results in ``bench/results/bench_actions.json``): with the tiny
model's vocabulary (609 tokens) the processor takes 0.1-1.5 ms per generation step for a batch of 1-8
(under 1% of the wall time even for that 2-layer model). For a 152k-token byte-level vocabulary
(Qwen2-VL's size; measured on a synthetic one) indexing takes 3-5 s once per tokenizer; a new state
with few valid first bytes (the start, inside a number) takes about a millisecond, while a
free-text state (almost every token valid) walks the whole trie, about 0.3-0.6 s, once per distinct
string state (a handful per process thanks to the count-free cache key). Cached states then cost a
dictionary lookup, a boolean filter and one masked fill per row and step.

Limits: the grammar is the canonical rendering only (models are trained on it; other spellings the
tolerant parser accepts are not generated); special tokens are never text, except location tokens
(``<loc_N>``, which the family adapters' decoding keeps); a token that an earlier processor forces
(BART's forced BOS, a forced EOS at ``max_length``) wins over the grammar, so a forced EOS can cut an
answer one token early; a processor serves one ``generate`` call (the wrapper makes one per call).
"""

from __future__ import annotations

import json
import re
import warnings
import weakref
from functools import lru_cache
from typing import Sequence

import torch
from transformers import LogitsProcessor

from ..core.actions import (ACTION_FIELDS, ACTION_FORMATS, ACTION_TYPES, FORMAT_TEMPLATES, KEY_NAMES, MODIFIER_KEYS,
                            SCROLL_DIRECTIONS)
from ..core.coords import CoordinateSpace, GridSpace, LocTokenSpace, Norm1Space, PixelSpace, get_space

__all__ = [
    "ActionGrammar", "ActionLogitsProcessor", "TokenVocabulary", "action_grammar", "token_vocabulary",
    "is_valid_prefix", "is_complete", "DEFAULT_MAX_TEXT_LEN", "KEY_MODES",
]

DEFAULT_MAX_TEXT_LEN = 200
KEY_MODES = ("vocabulary", "any")
#: Range of numbers when the space gives none (pixels of an unknown screenshot, no space).
UNBOUNDED_DIGITS = 5
PIXEL_DECIMALS = 2
MAX_AMOUNT = 10_000
MAX_SECONDS = 999
SECONDS_DECIMALS = 3
MAX_MODIFIERS = 3
MAX_FREE_KEY_LEN = 32
_DIGITS = frozenset(b"0123456789")
_HEX = frozenset(b"0123456789abcdefABCDEF")
_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


# --- Leaves: small deterministic machines over bytes -----------------------------------------------
# A leaf knows its start state, how one byte moves it (None: rejected), whether it may end in a state
# and the fewest bytes that end it. Every state a leaf accepts must be completable: the budget guard
# relies on min_rest being exact.

class _Leaf:
    def start(self):
        raise NotImplementedError

    def step(self, state, byte: int):
        raise NotImplementedError

    def done(self, state) -> bool:
        raise NotImplementedError

    def min_rest(self, state) -> int:
        raise NotImplementedError

    def cache_key(self, state, slack: int):
        """A state with the same allowed next tokens (see :class:`_String`)."""
        return state

    @property
    def min_len(self) -> int:
        return self.min_rest(self.start())


class _Literal(_Leaf):
    def __init__(self, text: bytes):
        self.text = text

    def start(self):
        return 0

    def step(self, state, byte):
        return state + 1 if state < len(self.text) and self.text[state] == byte else None

    def done(self, state):
        return state == len(self.text)

    def min_rest(self, state):
        return len(self.text) - state

    def __repr__(self):
        return f"Literal({self.text!r})"


class _Words(_Leaf):
    """One of a fixed set of words (scroll directions)."""

    def __init__(self, words: Sequence[str]):
        self.words = frozenset(w.encode() for w in words)
        self.rest = _prefix_rest(self.words)

    def start(self):
        return b""

    def step(self, state, byte):
        new = state + bytes((byte,))
        return new if new in self.rest else None

    def done(self, state):
        return state in self.words

    def min_rest(self, state):
        return self.rest[state]


def _prefix_rest(words) -> dict[bytes, int]:
    """Every prefix of ``words`` -> the fewest bytes that complete it to one of them."""
    rest = {}
    for word in words:
        for i in range(len(word) + 1):
            prefix = word[:i]
            rest[prefix] = min(rest.get(prefix, len(word)), len(word) - i)
    return rest


class _Number(_Leaf):
    """A plain decimal ``0|[1-9][0-9]*`` with up to ``decimals`` fraction digits, at most ``int_max``.

    State: (integer part or None before the first digit, fraction digits so far or -1 before the
    point). Integers, not strings: number states are the most frequent new states in a generation.
    """

    def __init__(self, int_max: int, decimals: int = 0):
        self.int_max, self.decimals = int_max, decimals

    def start(self):
        return (None, -1)

    def step(self, state, byte):
        whole, fraction = state
        if 0x30 <= byte <= 0x39:
            digit = byte - 0x30
            if fraction < 0:
                if whole == 0:
                    return None  # no leading zeros: render_action never writes them
                new = digit if whole is None else whole * 10 + digit
                return (new, -1) if new <= self.int_max else None
            if fraction >= self.decimals or (whole == self.int_max and digit):
                return None  # at the maximum only zeros may follow the point
            return (whole, fraction + 1)
        if byte == 0x2E and fraction < 0 and whole is not None and self.decimals:
            return (whole, 0)
        return None

    def done(self, state):
        return state[0] is not None and state[1] != 0

    def min_rest(self, state):
        return 0 if self.done(state) else 1

    def __repr__(self):
        return f"Number(max={self.int_max}, decimals={self.decimals})"


class _FixedDigits(_Leaf):
    """Exactly ``width`` digits, leading zeros included, at most ``maximum`` (PaliGemma's 0512)."""

    def __init__(self, width: int, maximum: int):
        self.width, self.maximum = width, maximum

    def start(self):
        return ""

    def step(self, state, byte):
        if byte not in _DIGITS or len(state) >= self.width:
            return None
        new = state + chr(byte)
        # The smallest number this prefix can still become must be in range.
        return new if int(new.ljust(self.width, "0")) <= self.maximum else None

    def done(self, state):
        return len(state) == self.width

    def min_rest(self, state):
        return self.width - len(state)


def _utf8_lead(byte: int):
    """(continuation bytes needed, allowed range of the next byte) for a UTF-8 lead byte, or None."""
    if 0xC2 <= byte <= 0xDF:
        return 1, 0x80, 0xBF
    if byte == 0xE0:
        return 2, 0xA0, 0xBF
    if 0xE1 <= byte <= 0xEC or byte in (0xEE, 0xEF):
        return 2, 0x80, 0xBF
    if byte == 0xED:
        return 2, 0x80, 0x9F  # no UTF-16 surrogates
    if byte == 0xF0:
        return 3, 0x90, 0xBF
    if 0xF1 <= byte <= 0xF3:
        return 3, 0x80, 0xBF
    if byte == 0xF4:
        return 3, 0x80, 0x8F
    return None


_SIMPLE_ESCAPES = frozenset(b'"\\/bfnrt')


class _String(_Leaf):
    """A JSON string literal, quotes included, with at most ``max_len`` content bytes as written.

    State: (phase, count, mode). phase 0 before the opening quote, 1 inside, 2 closed; count is the
    content bytes written so far (kept 0 without a limit); mode is None (plain), "\\" (after a
    backslash), ("u", hex digits so far) or ("utf8", bytes needed, low, high).
    """

    def __init__(self, max_len: int | None):
        self.max_len = max_len

    def start(self):
        return (0, 0, None)

    def _fits(self, count, extra):
        return self.max_len is None or count + extra <= self.max_len

    def step(self, state, byte):
        phase, count, mode = state
        if phase == 0:
            return (1, 0, None) if byte == 0x22 else None
        if phase == 2:
            return None
        grow = 0 if self.max_len is None else 1
        if mode is None:
            if byte == 0x22:
                return (2, 0, None)
            if byte == 0x5C:
                return (1, count + grow, "\\") if self._fits(count, 2) else None
            if byte < 0x20:
                return None  # json.dumps escapes control characters; raw ones are not JSON
            if byte < 0x80:
                return (1, count + grow, None) if self._fits(count, 1) else None
            lead = _utf8_lead(byte)
            if lead is None or not self._fits(count, 1 + lead[0]):
                return None
            return (1, count + grow, ("utf8", *lead))
        if mode == "\\":
            if byte in _SIMPLE_ESCAPES:
                return (1, count + grow, None)
            if byte == 0x75 and self._fits(count, 5):  # \uXXXX: 4 more bytes
                return (1, count + grow, ("u", ""))
            return None
        if mode[0] == "u":
            digits = mode[1]
            if byte not in _HEX:
                return None
            if len(digits) == 1 and digits in "dD" and byte not in b"01234567":
                return None  # \uD800-\uDFFF: a lone surrogate is not text
            digits += chr(byte)
            return (1, count + grow, None if len(digits) == 4 else ("u", digits))
        _, need, low, high = mode
        if not low <= byte <= high:
            return None
        return (1, count + grow, None if need == 1 else ("utf8", need - 1, 0x80, 0xBF))

    def done(self, state):
        return state[0] == 2

    def min_rest(self, state):
        phase, _, mode = state
        if phase != 1:
            return 2 if phase == 0 else 0
        if mode is None:
            pending = 0
        elif mode == "\\":
            pending = 1
        elif mode[0] == "u":
            pending = 4 - len(mode[1])
        else:
            pending = mode[1]
        return pending + 1  # and the closing quote

    def cache_key(self, state, slack):
        # Far from the limit, no token can reach it, so the allowed tokens do not depend on the count.
        phase, count, mode = state
        if self.max_len is not None and phase == 1 and count + slack <= self.max_len:
            return (1, -1, mode)
        return state


class _Key(_Leaf):
    """A key: ``keys="vocabulary"``: modifier+...+key from the suggested names; ``"any"``: KEY_PATTERN."""

    def __init__(self, mode: str):
        if mode not in KEY_MODES:
            raise ValueError(f"keys: expected one of {KEY_MODES}, got {mode!r}")
        self.mode = mode
        self.modifiers = frozenset(m.encode() for m in MODIFIER_KEYS)
        singles = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
        self.keys = frozenset(k.encode() for k in (*KEY_NAMES, *MODIFIER_KEYS, *singles,
                                                    *(f"F{n}" for n in range(1, 13))))
        self.rest = _prefix_rest(self.keys)

    def start(self):
        return (0, b"") if self.mode == "vocabulary" else (0, 0)

    def step(self, state, byte):
        if self.mode == "any":
            total, segment = state
            if byte in _WORD_BYTES and total < MAX_FREE_KEY_LEN:
                return (total + 1, segment + 1)
            if byte == 0x2B and segment and total + 2 <= MAX_FREE_KEY_LEN:
                return (total + 1, 0)
            return None
        modifiers, segment = state
        if byte == 0x2B:
            return (modifiers + 1, b"") if segment in self.modifiers and modifiers < MAX_MODIFIERS else None
        new = segment + bytes((byte,))
        return (modifiers, new) if new in self.rest else None

    def done(self, state):
        return state[1] > 0 if self.mode == "any" else state[1] in self.keys

    def min_rest(self, state):
        if self.mode == "any":
            return 0 if state[1] else 1
        return self.rest[state[1]]


# --- The grammar: one alternative per action type --------------------------------------------------

class ActionGrammar:
    """The canonical actions of one format (and coordinate range) as a byte-level automaton.

    States are immutable and hashable (frozensets of live positions); ``None`` is the dead state.
    Build grammars with :func:`action_grammar`, which caches them.

    Args:
        alternatives: action type -> its sequence of leaves.
        description: a short human name, e.g. ``"text/norm1000"``.
    """

    def __init__(self, alternatives: dict[str, list[_Leaf]], description: str):
        self.names = tuple(alternatives)
        self.alternatives = tuple(tuple(_merge_literals(seq)) for seq in alternatives.values())
        self.description = description
        # suffix[a][i]: fewest bytes for leaves i.. of alternative a.
        self._suffix = tuple(tuple(sum(leaf.min_len for leaf in seq[i:]) for i in range(len(seq) + 1))
                             for seq in self.alternatives)
        self.start = self._closure((a, 0, seq[0].start()) for a, seq in enumerate(self.alternatives))
        self._steps: dict = {}
        self._rests: dict = {}

    def __repr__(self):
        return f"ActionGrammar({self.description})"

    def _closure(self, positions) -> frozenset | None:
        out, stack = set(), list(positions)
        while stack:
            position = stack.pop()
            if position in out:
                continue
            out.add(position)
            a, i, state = position
            seq = self.alternatives[a]
            if i < len(seq) and seq[i].done(state):
                stack.append((a, i + 1, seq[i + 1].start()) if i + 1 < len(seq) else (a, i + 1, None))
        return frozenset(out) if out else None

    def step(self, state: frozenset | None, byte: int) -> frozenset | None:
        """The state after one more byte (``None``: the byte leaves the grammar)."""
        if state is None:
            return None
        key = (state, byte)
        cached = self._steps.get(key, False)
        if cached is not False:
            return cached
        moved = []
        for a, i, leaf_state in state:
            seq = self.alternatives[a]
            if i < len(seq):
                new = seq[i].step(leaf_state, byte)
                if new is not None:
                    moved.append((a, i, new))
        result = self._closure(moved)
        if len(self._steps) > 500_000:  # bounded memory for long sampling sessions
            self._steps.clear()
        self._steps[key] = result
        return result

    def advance(self, state: frozenset | None, data: bytes) -> frozenset | None:
        """The state after ``data`` (bytes)."""
        for byte in data:
            state = self.step(state, byte)
            if state is None:
                return None
        return state

    def complete(self, state: frozenset | None) -> bool:
        """Whether the text so far is a whole action (it may still go on, e.g. ``wait 1`` -> ``wait 12``)."""
        return state is not None and any(i == len(self.alternatives[a]) for a, i, _ in state)

    def min_rest(self, state: frozenset | None) -> int | None:
        """The fewest bytes that complete the action from ``state`` (0 when complete; None when dead)."""
        if state is None:
            return None
        cached = self._rests.get(state)
        if cached is None:
            cached = min((self.alternatives[a][i].min_rest(s) + self._suffix[a][i + 1]
                          if i < len(self.alternatives[a]) else 0) for a, i, s in state)
            self._rests[state] = cached
        return cached

    def cache_key(self, state: frozenset, slack: int) -> frozenset:
        """A state with the same allowed tokens of at most ``slack - 5`` bytes (see :class:`_String`)."""
        seqs = self.alternatives
        return frozenset((a, i, seqs[a][i].cache_key(s, slack) if i < len(seqs[a]) else s) for a, i, s in state)

    def allowed_bytes(self, state: frozenset | None) -> list[int]:
        """The bytes that keep the text valid after ``state``."""
        return [b for b in range(256) if self.step(state, b) is not None]

    def action_types(self, state: frozenset | None) -> list[str]:
        """The action types still possible in ``state``."""
        return sorted({self.names[a] for a, _, _ in state}) if state else []

    @property
    def min_length(self) -> int:
        """Bytes of the shortest action (``done()`` in text)."""
        return self.min_rest(self.start)

    # -- text helpers -----------------------------------------------------------------------------
    def state_of(self, text: str | bytes) -> frozenset | None:
        """The state after ``text`` (a str is taken as UTF-8)."""
        return self.advance(self.start, text.encode() if isinstance(text, str) else text)

    def is_valid_prefix(self, text: str | bytes) -> bool:
        """Whether ``text`` can still be continued into an action of this grammar."""
        return self.state_of(text) is not None

    def is_complete(self, text: str | bytes) -> bool:
        """Whether ``text`` is a whole action of this grammar."""
        return self.complete(self.state_of(text))

    def min_remaining(self, text: str | bytes) -> int | None:
        """The fewest bytes that complete ``text`` (None when it is not a valid prefix)."""
        return self.min_rest(self.state_of(text))


def _merge_literals(seq: list[_Leaf]) -> list[_Leaf]:
    merged = []
    for leaf in seq:
        if isinstance(leaf, _Literal) and merged and isinstance(merged[-1], _Literal):
            merged[-1] = _Literal(merged[-1].text + leaf.text)
        elif not (isinstance(leaf, _Literal) and not leaf.text):
            merged.append(leaf)
    return merged


def _number_bounds(space: CoordinateSpace | None, image_size) -> tuple[_Leaf, _Leaf]:
    """The x and y number leaves of a space (plain numbers, as JSON writes them)."""
    if isinstance(space, GridSpace):  # norm1000, resized, and loc spaces in JSON
        columns, rows = space.grid
        return _Number(columns - 1), _Number(rows - 1)
    if isinstance(space, Norm1Space):
        return _Number(1, space.decimals), _Number(1, space.decimals)
    if image_size is not None and (space is None or isinstance(space, PixelSpace)):
        width, height = image_size
        return _Number(int(width), PIXEL_DECIMALS), _Number(int(height), PIXEL_DECIMALS)
    unbounded = _Number(10 ** UNBOUNDED_DIGITS - 1, PIXEL_DECIMALS)
    return unbounded, unbounded


def _loc_token(space: LocTokenSpace, maximum: int) -> list[_Leaf]:
    """Leaves of one location token, from the space's ``token_format`` (``<loc{:04d}>``, ``<loc_{}>``)."""
    match = re.fullmatch(r"(.*)\{(?::0?(\d+)d)?\}(.*)", space.token_format)
    if match is None:
        raise ValueError(f"{space.name}: cannot read token_format {space.token_format!r}")
    prefix, width, suffix = match.groups()
    digits = _FixedDigits(int(width), maximum) if width else _Number(maximum)
    return [_Literal(prefix.encode()), digits, _Literal(suffix.encode())]


def _point(space, image_size, separator: bytes) -> list[_Leaf]:
    if isinstance(space, LocTokenSpace):
        columns, rows = space.grid
        first, second = (rows, columns) if space.y_first else (columns, rows)
        return _loc_token(space, first - 1) + _loc_token(space, second - 1)
    x, y = _number_bounds(space, image_size)
    return [x, _Literal(separator), y]


def _field_leaves(field: str, space, image_size, max_text_len, keys, json_form: bool) -> list[_Leaf]:
    quoted = (lambda leaf: [_Literal(b'"'), leaf, _Literal(b'"')]) if json_form else (lambda leaf: [leaf])
    if field == "text":
        return [_String(max_text_len)]
    if field == "key":
        return quoted(_Key(keys))
    if field == "direction":
        return quoted(_Words(SCROLL_DIRECTIONS))
    if field == "amount":
        return [_Number(MAX_AMOUNT)]
    if field == "seconds":
        return [_Number(MAX_SECONDS, SECONDS_DECIMALS)]
    x, y = _number_bounds(space, image_size)
    return [x if field in ("x", "x2") else y]


def _template_leaves(template: str, space, image_size, separator: bytes, max_text_len, keys) -> list[_Leaf]:
    leaves = []
    for piece in re.split(r"(\{\w+\})", template):
        if piece.startswith("{"):
            name = piece[1:-1]
            if name in ("point", "end"):
                leaves += _point(space, image_size, separator)
            else:
                leaves += _field_leaves(name, space, image_size, max_text_len, keys, json_form=False)
        elif piece:
            leaves.append(_Literal(piece.encode()))
    return leaves


def _json_leaves(action_type: str, space, image_size, max_text_len, keys) -> list[_Leaf]:
    # json.dumps' default separators, keys in ACTION_FIELDS order: exactly what render_action writes.
    leaves = [_Literal(json.dumps({"type": action_type})[:-1].encode())]
    for field in ACTION_FIELDS[action_type]:
        leaves.append(_Literal(f", {json.dumps(field)}: ".encode()))
        leaves += _field_leaves(field, space, image_size, max_text_len, keys, json_form=True)
    leaves.append(_Literal(b"}"))
    return leaves


def _resolve(space, image_size) -> CoordinateSpace | None:
    if space is None or isinstance(space, CoordinateSpace):
        return space
    if space == "resized":
        # The resized grid needs the screenshot size; without one, numbers get the digit bound.
        return get_space("resized", image_size=tuple(image_size)) if image_size is not None else None
    return get_space(space)


@lru_cache(maxsize=256)
def _cached_grammar(action_format, space, image_size, max_text_len, keys) -> ActionGrammar:
    if action_format == "json":
        alternatives = {t: _json_leaves(t, space, image_size, max_text_len, keys) for t in ACTION_TYPES}
    else:
        separator = b", " if action_format == "text" else b" "
        alternatives = {t: _template_leaves(FORMAT_TEMPLATES[action_format][t], space, image_size, separator,
                                            max_text_len, keys) for t in ACTION_TYPES}
    where = space.name if space is not None else "plain"
    if image_size is not None and isinstance(space, (PixelSpace, type(None))):
        where += f"@{image_size[0]}x{image_size[1]}"
    elif isinstance(space, GridSpace) and space.name == "resized":
        where += f"@{space.grid[0]}x{space.grid[1]}"
    return ActionGrammar(alternatives, f"{action_format}/{where}")


def action_grammar(action_format: str = "text", space: CoordinateSpace | str | None = None,
                   image_size: tuple[int, int] | None = None, max_text_len: int | None = DEFAULT_MAX_TEXT_LEN,
                   keys: str = "vocabulary") -> ActionGrammar:
    """The grammar of canonical actions in a format and coordinate space (cached).

    Args:
        action_format: one of :data:`~uivlm_helpers.core.actions.ACTION_FORMATS`.
        space: the model's coordinate space (object or name); it sets the coordinate range (see the
            module docstring). ``None`` writes plain numbers with the digit bound.
        image_size: the screenshot's ``(width, height)``: bounds ``pixels`` coordinates and sizes a
            ``resized`` space given by name (Qwen2.5-VL ``smart_resize`` defaults).
        max_text_len: most bytes of typed text as written (escapes included); None: no limit (the
            token budget still ends it).
        keys: ``"vocabulary"`` or ``"any"`` (see the module docstring).

    Raises:
        ValueError: unknown format, space or key mode.
    """
    if action_format not in ACTION_FORMATS:
        raise ValueError(f"unknown action format {action_format!r}; supported: {', '.join(ACTION_FORMATS)}")
    if keys not in KEY_MODES:
        raise ValueError(f"keys: expected one of {KEY_MODES}, got {keys!r}")
    size = (int(image_size[0]), int(image_size[1])) if image_size is not None else None
    resolved = _resolve(space, size)
    if size is not None and not isinstance(resolved, PixelSpace) and resolved is not None:
        size = None  # only pixel bounds depend on the screenshot; keeps the cache small
    return _cached_grammar(action_format, resolved, size, max_text_len, keys)


def is_valid_prefix(text: str, action_format: str = "text", space: CoordinateSpace | str | None = None,
                    **options) -> bool:
    """Whether ``text`` can be continued into a canonical action (see :func:`action_grammar`)."""
    return action_grammar(action_format, space, **options).is_valid_prefix(text)


def is_complete(text: str, action_format: str = "text", space: CoordinateSpace | str | None = None,
                **options) -> bool:
    """Whether ``text`` is a whole canonical action (see :func:`action_grammar`)."""
    return action_grammar(action_format, space, **options).is_complete(text)


# --- The tokenizer's vocabulary as bytes -----------------------------------------------------------

@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: printable stand-in character -> byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


# Location tokens stay text even where the tokenizer marks them special (Florence-2's <loc_N>): the
# family adapters' decode keeps them, so the grammar may use them as single tokens.
_LOC_TOKEN = re.compile(r"<loc_?\d+>")


def _token_strings(tokenizer) -> list[bytes | None]:
    size = len(tokenizer)
    added = tokenizer.added_tokens_decoder
    special = set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}
    special = {i for i in special if not (i in added and _LOC_TOKEN.fullmatch(added[i].content))}
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    ordinary = [p for i, p in enumerate(pieces) if i not in special and p is not None]
    decoder = _byte_decoder()
    byte_level = bool(ordinary) and all(c in decoder for p in ordinary for c in p)
    sentencepiece = not byte_level and any(p.startswith("\u2581") for p in ordinary)
    out = []
    for i, piece in enumerate(pieces):
        if i in special or piece is None:
            out.append(None)
        elif i in added:
            out.append(added[i].content.encode())  # added tokens are written as they read
        elif byte_level:
            out.append(bytes(decoder[c] for c in piece))
        elif sentencepiece:
            byte = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece)
            out.append(bytes((int(byte[1], 16),)) if byte else piece.replace("\u2581", " ").encode())
        else:
            text = tokenizer.decode([i])
            out.append(None if "\ufffd" in text else text.encode())
    return out


class TokenVocabulary:
    """A tokenizer's tokens as byte strings, in a byte trie (built once per tokenizer; see
    :func:`token_vocabulary`).

    Attributes:
        token_bytes: per token id, its bytes, or None for special tokens (never text).
        size: number of ids (``len(tokenizer)``).
        max_token_len: bytes of the longest token.
        single_bytes: bytes that are a token on their own (what the budget guard relies on).
    """

    def __init__(self, tokenizer):
        self.token_bytes = _token_strings(tokenizer)
        self.size = len(self.token_bytes)
        # node: [children {byte: node}, token ids ending here]
        self.root = [{}, []]
        for token_id, data in enumerate(self.token_bytes):
            if not data:
                continue
            node = self.root
            for byte in data:
                node = node[0].setdefault(byte, [{}, []])
            node[1].append(token_id)
        self.max_token_len = max((len(d) for d in self.token_bytes if d), default=1)
        self.single_bytes = frozenset(d[0] for d in self.token_bytes if d is not None and len(d) == 1)
        self.masks: dict = {}  # (grammar, end ids, state key) -> cached allowed tokens

    def walk(self, grammar: ActionGrammar, state: frozenset) -> tuple[list[int], list[frozenset]]:
        """Every token valid after ``state`` and the state it leads to (a pruned trie walk)."""
        ids, states = [], []
        stack = [(self.root, state)]
        step = grammar.step
        while stack:
            node, current = stack.pop()
            for byte, child in node[0].items():
                new = step(current, byte)
                if new is None:
                    continue  # the whole subtree starts with a rejected byte
                if child[1]:
                    ids += child[1]
                    states += [new] * len(child[1])
                if child[0]:
                    stack.append((child, new))
        return ids, states


_VOCABULARIES: dict[int, tuple] = {}


def token_vocabulary(tokenizer) -> TokenVocabulary:
    """The :class:`TokenVocabulary` of a tokenizer (or a processor with ``.tokenizer``), cached per object."""
    tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
    key = id(tokenizer)
    entry = _VOCABULARIES.get(key)
    if entry is not None and entry[0]() is tokenizer and entry[1].size == len(tokenizer):
        return entry[1]
    vocabulary = TokenVocabulary(tokenizer)
    try:
        reference = weakref.ref(tokenizer, lambda _: _VOCABULARIES.pop(key, None))
    except TypeError:  # not weak-referenceable: keep a strong reference instead
        reference = (lambda t: (lambda: t))(tokenizer)
    _VOCABULARIES[key] = (reference, vocabulary)
    return vocabulary


# --- The logits processor --------------------------------------------------------------------------

_MAX_MASKS = 20_000


class ActionLogitsProcessor(LogitsProcessor):
    """Masks every token that would take a row's answer off the action grammar.

    Use one instance per ``generate`` call: ``model.generate(..., logits_processor=
    LogitsProcessorList([ActionLogitsProcessor(tokenizer, "json", "norm1000", max_new_tokens=24)]))``.

    Args:
        tokenizer: the tokenizer (or processor) the model generates with.
        action_format: one of :data:`~uivlm_helpers.core.actions.ACTION_FORMATS`.
        space: the model's coordinate space (object or name), or one per row.
        image_sizes: screenshot ``(width, height)`` per row, for ``pixels`` bounds and ``resized``
            spaces given by name. Rows of ``num_return_sequences``/beams map to their sample.
        max_new_tokens: the generation budget; when given, the answer is steered to finish inside it.
        end_token_ids: the tokens that end the answer (allowed exactly when the action is complete);
            default: the tokenizer's eos and ``<|im_end|>`` when it exists.
        prompt_len: length of the (left-padded) prompt; default: the input length at the first call.
        max_text_len / keys: see :func:`action_grammar`.
    """

    def __init__(self, tokenizer, action_format: str = "text", space=None,
                 image_sizes: Sequence[tuple[int, int]] | None = None, max_new_tokens: int | None = None,
                 end_token_ids: Sequence[int] | int | None = None, prompt_len: int | None = None,
                 max_text_len: int | None = DEFAULT_MAX_TEXT_LEN, keys: str = "vocabulary"):
        tokenizer = getattr(tokenizer, "tokenizer", tokenizer)
        self.vocabulary = token_vocabulary(tokenizer)
        spaces = list(space) if isinstance(space, (list, tuple)) else None
        rows = len(image_sizes) if image_sizes is not None else len(spaces) if spaces is not None else 1
        self.grammars = [action_grammar(action_format, spaces[r] if spaces is not None else space,
                                        image_sizes[r] if image_sizes is not None else None,
                                        max_text_len, keys) for r in range(rows)]
        if end_token_ids is None:
            end_token_ids = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
        elif isinstance(end_token_ids, int):
            end_token_ids = [end_token_ids]
        unknown = getattr(tokenizer, "unk_token_id", None)
        self.end_ids = sorted({int(i) for i in end_token_ids if i is not None and i != unknown and i >= 0})
        if not self.end_ids:
            raise ValueError("constrained decoding needs an end-of-answer token id (the tokenizer has none)")
        # Tokens another processor may force before the answer (BART's forced <s>): no text, no harm.
        self.skip_ids = {i for i in (tokenizer.bos_token_id, getattr(tokenizer, "cls_token_id", None))
                         if i is not None and i not in self.end_ids
                         and (i >= self.vocabulary.size or self.vocabulary.token_bytes[i] is None)}
        self.max_new_tokens = max_new_tokens
        self.prompt_len = prompt_len
        self._fixed_prompt_len = prompt_len is not None
        self._states: dict = {}
        self._end_tensors: dict = {}
        shortest = min(g.min_length for g in self.grammars)
        if max_new_tokens is not None and max_new_tokens < shortest:
            warnings.warn(f"max_new_tokens={max_new_tokens} may be too few for any {action_format} action "
                          f"(the shortest takes {shortest} bytes); answers can end incomplete", stacklevel=2)
        missing = set(range(0x20, 0x7F)) - self.vocabulary.single_bytes
        if max_new_tokens is not None and missing:
            warnings.warn(f"the tokenizer has no single-byte token for {bytes(sorted(missing))[:20]!r}...; "
                          "finishing inside max_new_tokens is best effort", stacklevel=2)

    # -- per-row state ----------------------------------------------------------------------------
    def row_state(self, grammar_index: int, generated: tuple[int, ...]):
        """``"end"`` once an end token was generated, else the grammar state (None: off the grammar)."""
        grammar = self.grammars[grammar_index]
        # Memoised per prefix: each step usually extends a known prefix by one token.
        known = len(generated)
        while known and (grammar_index, generated[:known]) not in self._states:
            known -= 1
        state = self._states.get((grammar_index, generated[:known]), grammar.start)
        for n in range(known, len(generated)):
            token = generated[n]
            if state == "end" or token in self.end_ids:
                state = "end"
            elif state is not None and token not in self.skip_ids:
                data = self.vocabulary.token_bytes[token] if 0 <= token < self.vocabulary.size else None
                state = None if data is None else grammar.advance(state, data)
            self._states[(grammar_index, generated[:n + 1])] = state
        return state

    def _entry(self, grammar: ActionGrammar, state: frozenset):
        """(allowed ids, bytes to complete after each, complete) for a state, cached per vocabulary."""
        vocabulary = self.vocabulary
        key = (grammar, tuple(self.end_ids), grammar.cache_key(state, vocabulary.max_token_len + 5))
        entry = vocabulary.masks.get(key)
        if entry is None:
            ids, states = vocabulary.walk(grammar, state)
            pairs = [(i, grammar.min_rest(s)) for i, s in zip(ids, states) if i not in self.end_ids]
            entry = (torch.tensor([i for i, _ in pairs], dtype=torch.long),
                     torch.tensor([r for _, r in pairs], dtype=torch.long), grammar.complete(state), {})
            if len(vocabulary.masks) > _MAX_MASKS:
                vocabulary.masks.clear()
            vocabulary.masks[key] = entry
        return entry

    def allowed_tokens(self, grammar_index: int, generated: Sequence[int], device=None) -> torch.Tensor:
        """The ids a row may generate next, given the ids it generated so far."""
        device = torch.device(device or "cpu")
        end = self._end_tensors.get(device)
        if end is None:
            end = self._end_tensors[device] = torch.tensor(self.end_ids, dtype=torch.long, device=device)
        state = self.row_state(grammar_index, tuple(generated))
        if state == "end" or state is None:
            return end  # finished (generate pads it anyway), or pushed off the grammar from outside
        grammar = self.grammars[grammar_index]
        ids, rests, complete, on_device = self._entry(grammar, state)
        if device not in on_device:
            on_device[device] = (ids.to(device), rests.to(device))
        ids, rests = on_device[device]
        if self.max_new_tokens is not None:
            # After this token, max_new_tokens - len(generated) - 1 tokens remain; each ASCII byte of
            # the shortest completion is one token, so tokens whose completion is longer cannot finish.
            left = self.max_new_tokens - len(generated) - 1
            fits = rests <= left
            if not bool(fits.any()) and not complete and len(ids):
                fits = rests == rests.min()  # budget already too small: head for the shortest ending
            ids = ids[fits]
        return torch.cat([ids, end]) if complete else ids if len(ids) else end

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, length = input_ids.shape
        if self.prompt_len is None or (not self._fixed_prompt_len and length < self.prompt_len):
            self.prompt_len, self._states = length, {}
        per_grammar = max(batch // len(self.grammars), 1)
        blocked = torch.ones_like(scores, dtype=torch.bool)
        generated = input_ids[:, self.prompt_len:].tolist()
        for row in range(batch):
            grammar_index = min(row // per_grammar, len(self.grammars) - 1)
            blocked[row, self.allowed_tokens(grammar_index, generated[row], scores.device)] = False
        masked = scores.masked_fill(blocked, float("-inf"))
        # A row that an earlier processor forced onto a token the grammar does not allow (forced BOS,
        # forced EOS at max_length) keeps the forced choice: all -inf would break sampling.
        dead = torch.isinf(masked).all(dim=-1) & ~torch.isinf(scores).all(dim=-1)
        if bool(dead.any()):
            masked[dead] = scores[dead]
        return masked
