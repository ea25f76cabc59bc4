r"""The action language the workbook's models predict: one :class:`Action`, three surface formats.

Action types and the fields each one takes (``ACTION_FIELDS``)::

    click / double_click / long_press   x, y            the point, in the space's units
    drag                                x, y, x2, y2    from (x, y) to (x2, y2)
    type                                text            any string, "" included
    press                               key             names joined by "+": Enter, Tab, ctrl+a
    scroll                              direction, amount   up | down | left | right; whole number >= 0
    wait                                seconds         number >= 0
    done                                (nothing)       the task is finished

Canonical rendering (:func:`render_action`; templates in ``FORMAT_TEMPLATES``)::

    text                        json                                        coordinates
    click(100, 200)             {"type": "click", "x": 100, "y": 200}       100 200 click
    double_click(1, 2)          {"type": "double_click", "x": 1, "y": 2}    1 2 double_click
    long_press(1, 2)            {"type": "long_press", "x": 1, "y": 2}      1 2 long_press
    drag(1, 2, 3, 4)            {"type": "drag", "x": 1, ..., "y2": 4}      1 2 3 4 drag
    type("say \"hi\"")          {"type": "type", "text": "say \"hi\""}      type "say \"hi\""
    press(ctrl+a)               {"type": "press", "key": "ctrl+a"}          press ctrl+a
    scroll(down, 100)           {"type": "scroll", "direction": "down", "amount": 100}
                                                                            scroll down 100
    wait(1.5)                   {"type": "wait", "seconds": 1.5}            wait 1.5
    done()                      {"type": "done"}                            done

* Numbers keep their type: ints are written as ints, floats as Python's shortest round-trip
  ``repr`` (``100.0`` stays a float, ``1e-05`` is allowed).
* Typed text is a JSON string literal (``json.dumps`` with non-ASCII kept), so quotes,
  backslashes, newlines and any Unicode round-trip exactly, in every format.
* JSON keys come in ``ACTION_FIELDS`` order after ``"type"``, with ``json.dumps``' default
  separators.
* In a location-token space (``paligemma_loc``, ``florence_loc``; see :mod:`.coords`) the text and
  coordinates formats write each point as the space's token pair instead of ``X, Y`` / ``X Y``:
  ``click(<loc0512><loc0256>)`` (PaliGemma, y first), ``<loc_256><loc_512> click`` (Florence-2,
  x first), ``drag(<loc..><loc..>, <loc..><loc..>)``. JSON always keeps plain numbers.

Tolerant parsing (:func:`parse_action`) never raises on model output; what cannot be read comes back
as a :class:`ParseFailure` with a short reason. The parser looks for *candidates* anywhere in the
text and returns the earliest one (by position) that reads as a valid action, so surrounding prose,
code fences, chat-template leftovers (``assistant\n``, ``<|im_end|>``, ``</s>``...) and trailing
tokens are ignored. Within a candidate it accepts:

* any letter case in the action name, direction and JSON ``"type"`` (keys stay case-sensitive);
* named arguments ``click(x=100, y=200)`` / ``x: 100``, arbitrary spaces, missing commas;
* single-quoted strings ``type('hi')``;
* for click-like actions, a box instead of a point, clicked at its centre: four numbers in any
  grouping (``click((10,20),(30,40))``, ``click([10,20,30,40])``, ``10 20 30 40 click``), Qwen's
  ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` (also bare, as Qwen2-VL answers grounding
  questions) and four location tokens; ``<|object_ref_start|>...<|object_ref_end|>`` is skipped;
* extra JSON keys (models add ``"reason"``...), which are ignored.

Cross-format rule: the text and JSON shapes are unambiguous, so every format accepts both (a model
told "json" that answers ``click(1, 2)`` still decodes). The bare coordinates shape is only accepted
by the ``coordinates`` format, because its verbs (``done``, ``press the ...``) occur in ordinary
prose; in that format keep answers bare. When nothing parses, the reported reason comes from the
first candidate of the requested format, else from the first candidate of any shape.

Limits that keep decoding safe and quick on any output:

* An answer longer than :data:`MAX_ANSWER_CHARS` characters (configurable per call and per
  :class:`ActionDecoder`) is not read at all: it is a failure naming its length and the limit.
  Real answers are a few dozen characters (generation stops after ``max_new_tokens``, 24 by
  default), so the limit only stops runaway or garbage output from costing seconds to scan.
* Numbers must fit a float (magnitude at most about ``1.8e308``): ``click(9...9, 5)`` with
  hundreds of digits, ``1e400`` or a JSON ``Infinity`` is a failure such as ``"x coordinate is
  too large ..."``, never an exception.
"""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, replace

from .coords import CoordinateSpace, LocTokenSpace, SPACE_NAMES, get_space, smart_resize

__all__ = [
    "ACTION_TYPES", "ACTION_FORMATS", "ACTION_FIELDS", "POINT_ACTIONS", "SCROLL_DIRECTIONS",
    "KEY_PATTERN", "KEY_NAMES", "MODIFIER_KEYS", "FORMAT_TEMPLATES", "MAX_ANSWER_CHARS",
    "Action", "ParseFailure", "ActionDecoder", "render_action", "parse_action",
    "encode_action", "decode_to_pixels",
    "CoordinateSpace", "SPACE_NAMES", "get_space", "smart_resize",
]

# --- Grammar data (shared with prompts and the constrained decoder) --------------------------------

ACTION_TYPES = ("click", "double_click", "long_press", "drag", "type", "press", "scroll", "wait", "done")
ACTION_FORMATS = ("text", "json", "coordinates")

#: The fields each action type takes, in canonical order (also the JSON key order after "type").
ACTION_FIELDS = {
    "click": ("x", "y"),
    "double_click": ("x", "y"),
    "long_press": ("x", "y"),
    "drag": ("x", "y", "x2", "y2"),
    "type": ("text",),
    "press": ("key",),
    "scroll": ("direction", "amount"),
    "wait": ("seconds",),
    "done": (),
}
#: Actions aimed at a single point, which also accept a box (clicked at its centre).
POINT_ACTIONS = ("click", "double_click", "long_press")
SCROLL_DIRECTIONS = ("up", "down", "left", "right")
#: What a key may look like: names joined by "+". Keys are case-sensitive and not limited to
#: KEY_NAMES, so a model's "Return" parses as written.
KEY_PATTERN = r"[A-Za-z0-9_]+(?:\+[A-Za-z0-9_]+)*"
#: The suggested key vocabulary (for prompts and constrained decoding), combined as "ctrl+a".
KEY_NAMES = ("Enter", "Tab", "Backspace", "Delete", "Escape", "Space", "Home", "End", "PageUp",
             "PageDown", "ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight")
MODIFIER_KEYS = ("ctrl", "alt", "shift", "meta")

#: ``str.format`` templates of the text and coordinates formats. Placeholders: ``{point}`` and
#: ``{end}`` (a point: "X, Y" in text, "X Y" in coordinates, or a location-token pair), ``{text}``
#: (a JSON string literal), ``{key}``, ``{direction}``, ``{amount}``, ``{seconds}``.
FORMAT_TEMPLATES = {
    "text": {
        "click": "click({point})", "double_click": "double_click({point})",
        "long_press": "long_press({point})", "drag": "drag({point}, {end})", "type": "type({text})",
        "press": "press({key})", "scroll": "scroll({direction}, {amount})", "wait": "wait({seconds})",
        "done": "done()",
    },
    "coordinates": {
        "click": "{point} click", "double_click": "{point} double_click",
        "long_press": "{point} long_press", "drag": "{point} {end} drag", "type": "type {text}",
        "press": "press {key}", "scroll": "scroll {direction} {amount}", "wait": "wait {seconds}",
        "done": "done",
    },
}


#: Longest model answer (in characters) the decoder reads; longer ones are a ParseFailure. Real
#: answers are tens of characters; 10,000 leaves room for long typed text and chatty prose while
#: keeping the worst-case decode of garbage well under a second.
MAX_ANSWER_CHARS = 10_000

_FLOAT_MAX = sys.float_info.max
# An integer literal with more significant digits than this exceeds any float (10**309 > 1.8e308).
_MAX_INT_DIGITS = len(str(int(_FLOAT_MAX)))


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _too_large(value) -> bool:
    """±inf, or an int beyond the float range (``math.isfinite`` would raise OverflowError on it)."""
    return math.isinf(value) if isinstance(value, float) else not -_FLOAT_MAX <= value <= _FLOAT_MAX


def _is_number(value) -> bool:
    # bool is an int subclass but never a coordinate; NaN/inf cannot be rendered or clicked.
    return _numeric(value) and not math.isnan(value) and not _too_large(value)


# field -> (label used in messages, what is expected, check)
_FIELD_RULES = {
    "x": ("x coordinate", "a number", _is_number),
    "y": ("y coordinate", "a number", _is_number),
    "x2": ("x2 coordinate", "a number", _is_number),
    "y2": ("y2 coordinate", "a number", _is_number),
    "text": ("text", "a string", lambda v: isinstance(v, str)),
    "key": ("key", "a key name like Enter or ctrl+a",
            lambda v: isinstance(v, str) and re.fullmatch(KEY_PATTERN, v) is not None),
    "direction": ("direction", f"one of {', '.join(SCROLL_DIRECTIONS)}", lambda v: v in SCROLL_DIRECTIONS),
    "amount": ("amount", "a whole number >= 0",
               lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    "seconds": ("seconds", "a number >= 0", lambda v: _is_number(v) and v >= 0),
}
_FIELD_NAMES = ("type", *_FIELD_RULES)
_POINT_FIELDS = (("x", "y"), ("x2", "y2"))


# --- Actions ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Action:
    """One UI action. Construction validates, so every ``Action`` is well formed and renderable.

    Coordinates are in whatever space the caller works in (screenshot pixels, or model units; see
    :func:`encode_action`). Fields that do not apply to ``type`` must be ``None``.

    Raises:
        ValueError: unknown type, a missing or wrongly typed field, or a field the type does not
            take; the message names the field and what was expected.
    """

    type: str
    x: float | None = None
    y: float | None = None
    x2: float | None = None
    y2: float | None = None
    text: str | None = None
    key: str | None = None
    direction: str | None = None
    amount: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if self.type not in ACTION_TYPES:
            raise ValueError(f"unknown action {self.type!r} (expected one of {', '.join(ACTION_TYPES)})")
        wanted = ACTION_FIELDS[self.type]
        for name, (label, expected, check) in _FIELD_RULES.items():
            value = getattr(self, name)
            if name not in wanted:
                if value is not None:
                    takes = ", ".join(wanted) or "nothing"
                    raise ValueError(f"{self.type} takes no {name} (it takes {takes})")
            elif value is None:
                raise ValueError(f"missing {label} for {self.type}")
            elif _numeric(value) and _too_large(value):
                # Not repr(value): a huge int has thousands of digits (past 4,300 repr raises).
                raise ValueError(f"{label} is too large: a number must be finite and at most "
                                 f"{_FLOAT_MAX:.2g} in magnitude")
            elif not check(value):
                raise ValueError(f"{label} must be {expected}, got {value!r}")

    def to_dict(self) -> dict:
        """The type and its fields in canonical order, e.g. ``{"type": "click", "x": 100, "y": 200}``."""
        return {"type": self.type, **{name: getattr(self, name) for name in ACTION_FIELDS[self.type]}}

    @classmethod
    def from_dict(cls, d: dict) -> Action:
        """Build an action from :meth:`to_dict`'s shape (``None`` values count as absent).

        Raises:
            ValueError: not a dict, no ``"type"``, an unknown key, or anything :class:`Action` rejects.
        """
        if not isinstance(d, dict):
            raise ValueError(f"an action must be a dict, got {type(d).__name__}")
        if "type" not in d:
            raise ValueError("missing field 'type'")
        unknown = [key for key in d if key not in _FIELD_NAMES]
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r} (fields: {', '.join(_FIELD_NAMES)})")
        return cls(**d)

    @property
    def point(self) -> tuple[float, float] | None:
        """The point the action acts on (a drag's start), or ``None``."""
        return None if self.x is None else (self.x, self.y)


@dataclass(frozen=True)
class ParseFailure:
    """Model output that is not an action. Falsy, so ``if result:`` tells success from failure.

    Attributes:
        reason: short human reason, e.g. ``"no action found"``, ``"unknown action 'tap'"``,
            ``"missing y coordinate for click"``.
        text: the raw model output.
    """

    reason: str
    text: str

    def __bool__(self):
        return False


# --- Rendering -------------------------------------------------------------------------------------

def _check_format(action_format):
    if action_format not in ACTION_FORMATS:
        raise ValueError(f"unknown action format {action_format!r}; supported: {', '.join(ACTION_FORMATS)}")


def _resolve_space(space) -> CoordinateSpace | None:
    if space is None or isinstance(space, CoordinateSpace):
        return space
    if isinstance(space, str):
        return get_space(space)
    raise TypeError(f"space must be a CoordinateSpace, a space name or None, got {type(space).__name__}")


def _render_point(x, y, separator, space) -> str:
    if isinstance(space, LocTokenSpace):
        return space.format_point(x, y)
    return f"{x}{separator}{y}"


def render_action(action: Action, action_format: str, space: CoordinateSpace | str | None = None) -> str:
    """The one canonical string for an action in a format (see the module docstring).

    Args:
        action: the action, its coordinates in ``space``'s units.
        action_format: one of :data:`ACTION_FORMATS`.
        space: only location-token spaces change the text (points become token pairs); ``None``
            writes plain numbers.

    Raises:
        ValueError: unknown format, or coordinates a location-token space has no token for.
    """
    _check_format(action_format)
    space = _resolve_space(space)
    if action_format == "json":
        return json.dumps(action.to_dict(), ensure_ascii=False)
    separator = ", " if action_format == "text" else " "
    parts = {"key": action.key, "direction": action.direction, "amount": action.amount,
             "seconds": action.seconds}
    if action.x is not None:
        parts["point"] = _render_point(action.x, action.y, separator, space)
    if action.x2 is not None:
        parts["end"] = _render_point(action.x2, action.y2, separator, space)
    if action.text is not None:
        parts["text"] = json.dumps(action.text, ensure_ascii=False)
    return FORMAT_TEMPLATES[action_format][action.type].format(**parts)


# --- Parsing: lexical pieces -----------------------------------------------------------------------

_NUMBER = r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?"
_STRING = r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"""
_LOC = r"<loc_?\d+>"
# Between argument tokens: whitespace, and Qwen object references (they name the target but carry
# no coordinates).
_SKIP = r"(?:\s|<\|object_ref_start\|>.*?<\|object_ref_end\|>)*"
_TOKEN = re.compile(
    _SKIP + "(?:"
    + rf"(?P<string>{_STRING})|(?P<loc>{_LOC})"
    + r"|(?P<open>\(|\[|<\|box_start\|>)|(?P<close>\)|\]|<\|box_end\|>)"
    + r"""|(?P<sep>[,=:])|(?P<word>[^\s()\[\]<>,=:"']+))""",
    re.S)
_CLOSERS = {"(": ")", "[": "]", "<|box_start|>": "<|box_end|>"}
_MAX_NESTING = 8  # deeper brackets are garbage; the limit also keeps recursion bounded


def _int_literal(raw: str) -> int | float:
    """A decimal integer literal's value; ±inf when it has more digits than any float holds, as
    ``float()`` reads ``1e400``, so :class:`Action` reports the field as too large. (``int()``
    would take time growing with the length, and past 4,300 digits raise Python's own error.)"""
    if len(raw.lstrip("+-").lstrip("0")) > _MAX_INT_DIGITS:
        return -math.inf if raw.startswith("-") else math.inf
    return int(raw)


def _to_number(raw: str) -> int | float | None:
    if re.fullmatch(_NUMBER, raw) is None:
        return None
    return _int_literal(raw) if re.fullmatch(r"[+-]?\d+", raw) else float(raw)


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    if literal[0] == "'":
        # Re-escape a single-quoted literal as a JSON one: \' is a quote, a bare " needs escaping.
        body = re.sub(r'\\(.)|"', lambda m: '\\"' if m[1] is None else ("'" if m[1] == "'" else m[0]),
                      body, flags=re.S)
    try:
        # strict=False: models may put raw newlines/tabs inside the quotes.
        return json.loads(f'"{body}"', strict=False)
    except ValueError:
        raise ValueError(f"invalid string literal {literal}") from None


def _describe(kind: str, raw) -> str:
    return {"group": "a bracketed list", "locs": "location tokens"}.get(kind, repr(raw))


class _Reader:
    """Reads a call's arguments from one position of the model's text.

    Values are ``(kind, raw)`` pairs: ``("string", unquoted)``, ``("word", text)`` (numbers, keys,
    directions), ``("locs", [tokens])`` (a run of location tokens) or ``("group", [values])``.
    """

    def __init__(self, text: str, pos: int):
        self.text, self.pos = text, pos

    def peek(self):
        match = _TOKEN.match(self.text, self.pos)
        return (match.lastgroup, match[match.lastgroup]) if match else None

    def take(self):
        match = _TOKEN.match(self.text, self.pos)
        if match is None:
            rest = self.text[self.pos:].strip()
            if not rest:
                raise ValueError("incomplete action (unclosed bracket)")
            raise ValueError("unterminated string" if rest[0] in "\"'" else f"unexpected {rest[:12]!r}")
        self.pos = match.end()
        return match.lastgroup, match[match.lastgroup]

    def arguments(self, closer: str, depth: int = 0) -> list[tuple[str | None, tuple]]:
        """``(name or None, value)`` pairs up to ``closer``; commas are optional."""
        items = []
        while True:
            kind, raw = self.take()
            if kind == "close":
                if raw != closer:
                    raise ValueError(f"expected {closer!r} but found {raw!r}")
                return items
            if kind == "sep":
                if raw != ",":
                    raise ValueError(f"unexpected {raw!r}")
                continue
            name = None
            following = self.peek()
            if kind == "word" and following is not None and following[0] == "sep" and following[1] in "=:":
                name = raw.lower()
                self.take()
                kind, raw = self.take()
            items.append((name, self.value(kind, raw, depth)))

    def value(self, kind: str, raw: str, depth: int = 0) -> tuple:
        if kind == "string":
            return "string", _unquote(raw)
        if kind == "word":
            return "word", raw
        if kind == "loc":
            run = [raw]
            while (following := self.peek()) is not None and following[0] == "loc":
                run.append(self.take()[1])
            return "locs", run
        if kind == "open":
            if depth >= _MAX_NESTING:
                raise ValueError("brackets nested too deep")
            return "group", [v for _, v in self.arguments(_CLOSERS[raw], depth + 1)]
        raise ValueError(f"unexpected {raw!r}")


# --- Parsing: from values to an Action -------------------------------------------------------------

_COORD_NAMES = {"x": "x", "y": "y", "x1": "x", "y1": "y", "x2": "x2", "y2": "y2"}
_COORD_ACTIONS = (*POINT_ACTIONS, "drag")
_COORD_USAGE = {"drag": "two points (x, y, x2, y2)"}


def _number(kind: str, raw) -> int | float:
    number = _to_number(raw) if kind == "word" else None
    if number is None:
        raise ValueError(f"expected a number, got {_describe(kind, raw)}")
    return number


def _numbers(values: list[tuple], space) -> list:
    """Flatten coordinate values (numbers, groups, location tokens) into ``[x, y, x, y, ...]``."""
    numbers = []
    for kind, raw in values:
        if kind == "group":
            numbers += _numbers(raw, space)
        elif kind == "locs":
            if not isinstance(space, LocTokenSpace):
                raise ValueError(f"location token {raw[0]} needs a location-token space "
                                 "(paligemma_loc or florence_loc)")
            numbers += space.read_tokens(raw)
        else:
            numbers.append(_number(kind, raw))
    return numbers


def _middle(a, b):
    if _too_large(a) or _too_large(b):
        return math.inf  # Action reports the coordinate as too large (inf - inf would be NaN)
    # Whole-number units stay whole when the centre falls on a unit; otherwise keep the half.
    total = a + b
    return total // 2 if isinstance(total, int) and total % 2 == 0 else total / 2


def _coordinate_action(verb: str, numbers: list) -> Action:
    fields = ACTION_FIELDS[verb]
    if verb in POINT_ACTIONS and len(numbers) == 4:
        x1, y1, x2, y2 = numbers
        return Action(verb, x=_middle(x1, x2), y=_middle(y1, y2))
    if len(numbers) > len(fields):
        usage = _COORD_USAGE.get(verb, "a point (x, y) or a box (x1, y1, x2, y2)")
        raise ValueError(f"{verb} takes {usage}, got {len(numbers)} numbers")
    # Fewer numbers than fields: Action names the first missing one.
    return Action(verb, **dict(zip(fields, numbers)))


def _scroll(values: list[tuple]) -> Action:
    if len(values) > 2:
        raise ValueError("scroll takes a direction and an amount, e.g. scroll(down, 100)")
    direction = amount = None
    for kind, raw in values:  # in either order: the number is the amount
        number = _to_number(raw) if kind == "word" else None
        if number is not None:
            amount = number
        elif kind in ("word", "string"):
            direction = raw.lower()
        else:
            raise ValueError(f"unexpected scroll argument: {_describe(kind, raw)}")
    return Action("scroll", direction=direction, amount=amount)


def _call_action(verb: str, items: list[tuple], space) -> Action:
    """The action for ``verb`` applied to ``(name, value)`` arguments."""
    if verb in _COORD_ACTIONS:
        if items and all(name in _COORD_NAMES for name, _ in items):
            return Action(verb, **{_COORD_NAMES[name]: _number(*value) for name, value in items})
        # Other names (point=, start_box=...) are read positionally.
        return _coordinate_action(verb, _numbers([value for _, value in items], space))
    values = [value for _, value in items]
    if verb == "scroll":
        return _scroll(values)
    if verb == "done":
        if values:
            raise ValueError("done takes no arguments")
        return Action("done")
    if len(values) > 1:
        raise ValueError(f"{verb} takes one argument, got {len(values)}")
    if not values:
        return Action(verb)  # raises "missing <field> for <verb>"
    kind, raw = values[0]
    if verb == "type":
        if kind != "string":
            raise ValueError(f'type needs a quoted string, e.g. type("hello"), got {_describe(kind, raw)}')
        return Action("type", text=raw)
    if verb == "press":
        if kind not in ("word", "string"):
            raise ValueError(f"press needs a key name, got {_describe(kind, raw)}")
        return Action("press", key=raw)
    return Action("wait", seconds=_number(kind, raw))


# --- Parsing: candidate shapes ---------------------------------------------------------------------
# Each reader gets the model text, the regex match where a candidate starts, the space, and whether
# the shape is the requested format's own. It returns an Action, None (not an action after all:
# say, a JSON object without "type"), or raises ValueError with the failure reason.

_VERBS = "|".join(ACTION_TYPES)
_CALL_START = re.compile(rf"(?<!\w)({_VERBS})\s*\(", re.I)
_UNKNOWN_CALL_START = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")
_JSON_START = re.compile(r"\{")
_BOX_START = re.compile(re.escape("<|box_start|>"))
_COORD_START = re.compile(r"(?<![\w.+-])(?:[+-]?\.?\d|<loc)|(?<!\w)(type|press|scroll|wait|done)(?!\w)", re.I)
_COORD_ITEM = re.compile(rf"[\s,]*(?:({_NUMBER})(?!\w)|({_LOC}))")
_COORD_VERB = re.compile(r"[\s,]*(click|double_click|long_press|drag)(?!\w)", re.I)
_COORD_WORD = re.compile(r"[\s,]*([A-Za-z_]\w*)")
# A coordinate item (and separators) ending where a candidate starts: the candidate is the tail of
# a longer run of numbers, which is read whole from its first number instead.
_AFTER_ITEM = re.compile(rf"(?:(?<![\w.+-]){_NUMBER}|{_LOC})[\s,]*\Z")
_COORD_ARGUMENTS = {
    "type": re.compile(rf"\s+({_STRING})"),
    "press": re.compile(rf"\s+({_STRING}|{KEY_PATTERN})(?!\w)"),
    "scroll": re.compile(rf"\s+([A-Za-z]+)[\s,]+({_NUMBER})(?!\w)"),
    "wait": re.compile(rf"\s+({_NUMBER})(?!\w)"),
    "done": re.compile(""),
}
_JSON = json.JSONDecoder(parse_int=_int_literal)


def _read_call(text, match, space, native):
    return _call_action(match[1].lower(), _Reader(text, match.end()).arguments(")"), space)


def _read_unknown_call(text, match, space, native):
    if match[1].lower() in ACTION_TYPES:
        return None
    raise ValueError(f"unknown action {match[1]!r}")


def _read_json(text, match, space, native):
    try:
        # From a copy of the rest, not raw_decode(text, start): a decode error counts the lines
        # before its position, which over every "{" of a long text would take quadratic time.
        obj, _ = _JSON.raw_decode(text[match.start():])
    except (ValueError, RecursionError) as error:
        # A stray "{" in prose is only worth reporting when JSON was asked for.
        if native:
            detail = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deep"
            raise ValueError(f"invalid JSON: {detail}") from None
        return None
    if not isinstance(obj, dict) or "type" not in obj:
        return None
    fields = {key: value for key, value in obj.items() if key in _FIELD_NAMES}
    for key in ("type", "direction"):
        if isinstance(fields.get(key), str):
            fields[key] = fields[key].lower()
    return Action.from_dict(fields)


def _read_box(text, match, space, native):
    reader = _Reader(text, match.start())
    return _coordinate_action("click", _numbers([reader.value(*reader.take())], space))


def _read_coordinates(text, match, space, native):
    verb = match[1]
    if verb is not None:
        arguments = _COORD_ARGUMENTS[verb.lower()].match(text, match.end())
        if arguments is None:
            return None  # a verb in prose ("type the name"), not an action
        values = [("string", _unquote(a)) if a[0] in "\"'" else ("word", a) for a in arguments.groups()]
        return _call_action(verb.lower(), [(None, value) for value in values], space)
    values, pos = [], match.start()
    if _AFTER_ITEM.search(text, max(0, pos - 64), pos):
        return None
    # At most 4 numbers (a drag, or a box) come before a verb.
    while len(values) < 4 and (item := _COORD_ITEM.match(text, pos)):
        number, loc = item.groups()
        if loc and values and values[-1][0] == "locs":
            values[-1][1].append(loc)
        else:
            values.append(("locs", [loc]) if loc else ("word", number))
        pos = item.end()
    verb_match = _COORD_VERB.match(text, pos)
    if verb_match:
        return _call_action(verb_match[1].lower(), [(None, value) for value in values], space)
    word = _COORD_WORD.match(text, pos)
    if word and len(values) >= 2:  # "100 200 tap": a point, then something that is not a verb
        raise ValueError(f"unknown action {word[1]!r}")
    return None  # numbers in prose


# (format the shape belongs to, where candidates start, reader)
_SHAPES = (
    ("text", _CALL_START, _read_call),
    ("text", _UNKNOWN_CALL_START, _read_unknown_call),
    ("text", _BOX_START, _read_box),
    ("json", _JSON_START, _read_json),
    ("coordinates", _COORD_START, _read_coordinates),
)
_ACCEPTED_SHAPES = {"text": ("text", "json"), "json": ("text", "json"),
                    "coordinates": ("text", "json", "coordinates")}


def _shorten(reason: str, limit: int = 200) -> str:
    # Reasons quote the model's words, which can be thousands of characters of garbage; the quote
    # is for recognising the problem (the full output stays in ParseFailure.text).
    return reason if len(reason) <= limit else f"{reason[:limit - 70]} ... {reason[-60:]}"


def _check_max_chars(max_chars) -> int:
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise ValueError(f"max_chars must be a whole number >= 1, got {max_chars!r}")
    return max_chars


def parse_action(text: str, action_format: str, space: CoordinateSpace | str | None = None, *,
                 max_chars: int = MAX_ANSWER_CHARS) -> Action | ParseFailure:
    """Read the action in a model's output; never raises on the output itself.

    Args:
        text: raw model output (prose, fences and template tokens around the action are fine).
        action_format: the format the model was asked for (see the module docstring for which
            other shapes each format also accepts).
        space: needed to read location tokens (``paligemma_loc``, ``florence_loc``); the action's
            coordinates come back in the space's units either way.
        max_chars: longer outputs are a failure without being read (see :data:`MAX_ANSWER_CHARS`).

    Returns:
        The :class:`Action`, or a :class:`ParseFailure` saying why there is none.

    Raises:
        ValueError: unknown ``action_format`` or space name, or a ``max_chars`` below 1 (caller
            errors, not model errors).
    """
    _check_format(action_format)
    space = _resolve_space(space)
    _check_max_chars(max_chars)
    if not isinstance(text, str):
        return ParseFailure(f"expected text, got {type(text).__name__}", repr(text))
    if len(text) > max_chars:
        return ParseFailure(f"answer too long: {len(text):,} characters; the decoder reads at most "
                            f"{max_chars:,} (max_chars)", text)
    candidates = sorted((match.start(), index, match)
                        for index, (shape_format, start, _) in enumerate(_SHAPES)
                        if shape_format in _ACCEPTED_SHAPES[action_format]
                        for match in start.finditer(text))
    failures = {}  # first failure reason per "is the requested format's own shape"
    for _, index, match in candidates:
        shape_format, _, read = _SHAPES[index]
        native = shape_format == action_format
        try:
            action = read(text, match, space, native)
        except ValueError as error:
            failures.setdefault(native, _shorten(str(error)))
            continue
        if action is not None:
            return action
    reason = failures.get(True, failures.get(False, "no action found" if text.strip() else "empty output"))
    return ParseFailure(reason, text)


class ActionDecoder:
    """Decodes model outputs of one format (and space) into actions.

    ``ActionDecoder("text").decode("click(100, 200)") == {"type": "click", "x": 100, "y": 200}``
    """

    def __init__(self, action_format: str = "text", space: CoordinateSpace | str | None = None, *,
                 max_chars: int = MAX_ANSWER_CHARS):
        """Args:
            action_format: one of :data:`ACTION_FORMATS`.
            space: the coordinate space, needed for location tokens (see :func:`parse_action`).
            max_chars: the longest answer read; longer ones are a :class:`ParseFailure` naming
                the length and this limit (see :data:`MAX_ANSWER_CHARS`).

        Raises:
            ValueError: unknown format (the message lists the supported ones) or space name, or
                a ``max_chars`` below 1.
        """
        _check_format(action_format)
        self.action_format = action_format
        self.space = _resolve_space(space)
        self.max_chars = _check_max_chars(max_chars)

    def decode(self, text: str) -> dict | ParseFailure:
        """The action as :meth:`Action.to_dict`, or the :class:`ParseFailure`."""
        action = self.decode_action(text)
        return action.to_dict() if isinstance(action, Action) else action

    def decode_action(self, text: str) -> Action | ParseFailure:
        """The :class:`Action`, or the :class:`ParseFailure`."""
        return parse_action(text, self.action_format, self.space, max_chars=self.max_chars)


# --- Coordinates of whole actions ------------------------------------------------------------------

def _required_space(space) -> CoordinateSpace:
    space = _resolve_space(space)
    if space is None:
        raise ValueError("a coordinate space is required")
    return space


def encode_action(action_px: Action, space: CoordinateSpace | str, image_size: tuple[int, int]) -> Action:
    """The action with every coordinate mapped from screenshot pixels to ``space``'s units.

    Raises:
        ValueError: a point lies outside the ``(width, height)`` screenshot.
    """
    space = _required_space(space)
    changes = {}
    for fx, fy in _POINT_FIELDS:
        if getattr(action_px, fx) is not None:
            changes[fx], changes[fy] = space.to_model(
                getattr(action_px, fx), getattr(action_px, fy), image_size)
    return replace(action_px, **changes)


def decode_to_pixels(action_model: Action, space: CoordinateSpace | str,
                     image_size: tuple[int, int]) -> tuple[Action, bool]:
    """The action with every coordinate mapped from ``space``'s units to screenshot pixels.

    Returns:
        ``(action_in_pixels, clamped)``: ``clamped`` is True when any point was out of the space's
        range and had to be clamped into it.
    """
    space = _required_space(space)
    changes, clamped = {}, False
    for fx, fy in _POINT_FIELDS:
        if getattr(action_model, fx) is not None:
            changes[fx], changes[fy], point_clamped = space.to_pixels(
                getattr(action_model, fx), getattr(action_model, fy), image_size)
            clamped = clamped or point_clamped
    return replace(action_model, **changes), clamped
