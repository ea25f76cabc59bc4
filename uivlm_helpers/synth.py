"""Deterministic synthetic UI screens with labelled widgets.

The generator draws small but realistic-looking screens with PIL - login
forms, settings lists, toolbars, dialogs, search results - and records the
box of every widget it draws. One widget per screen becomes the target of a
grounding example: an instruction that names it unambiguously ("Click the
Save button", "Check the Remember me box", "Click the second checkbox") and
a click at the centre of its box.

Why synthetic data: it is free, unlimited, has exact labels, and a tiny model
on a laptop CPU can learn it in minutes, which is what a teaching workbook
needs before moving to real screenshots.

Everything is a pure function of a ``random.Random``: the same seed gives
byte-identical PNGs and identical records on every machine with the same
Pillow version (Pillow's bundled font is used, never a system font).
"""

from __future__ import annotations

import functools
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .data import UIRecord, write_records

__all__ = [
    "ICON_NAMES",
    "LAYOUTS",
    "TARGET_KINDS",
    "THEMES",
    "Widget",
    "candidate_instructions",
    "generate_records",
    "generate_screen",
    "make_splits",
    "pick_target",
]

LAYOUTS = ("login_form", "settings_list", "toolbar", "dialog", "search_results")
THEMES = ("light", "dark")
# Kinds that can be the target of an instruction; "text" widgets (titles,
# captions) are recorded too, as distractors, but never targeted.
TARGET_KINDS = ("button", "text_field", "link", "checkbox", "icon")
PLATFORM_BY_LAYOUT = {
    "login_form": "web",
    "settings_list": "mobile",
    "toolbar": "desktop",
    "dialog": "desktop",
    "search_results": "web",
}
# Icon name -> words an instruction may use for it. No word is shared between
# icons, so "Click the delete icon" always means one glyph.
ICON_WORDS = {
    "settings": ("settings", "gear"),
    "trash": ("trash", "delete"),
    "star": ("star", "favourite"),
    "search": ("search", "magnifying glass"),
    "home": ("home",),
    "close": ("close",),
    "add": ("add", "plus"),
    "bell": ("bell", "notifications"),
    "menu": ("menu", "hamburger menu"),
    "user": ("user", "profile"),
    "back": ("back", "back arrow"),
    "download": ("download",),
}
ICON_NAMES = tuple(ICON_WORDS)

_BASE_SIZE = 224  # the image side the layouts were designed at
_MIN_FONT = 10  # smallest font size still readable in a 224 px screenshot
_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
_KIND_NOUN = {"button": "button", "text_field": "text field", "link": "link", "checkbox": "checkbox", "icon": "icon"}

RGB = tuple[int, int, int]
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Widget:
    """One drawn element.

    Attributes:
        kind: "button", "text_field", "link", "checkbox", "icon" or "text".
        label: Visible text (field name for text fields, icon name for icons).
        bbox: ``(x1, y1, x2, y2)`` in pixels; the widget covers
            ``x1 <= x < x2``, ``y1 <= y < y2`` (so ``img.crop(bbox)`` is it).
        colour: Main colour it was drawn with (fill, border or text).
        checked: For checkboxes, whether it is ticked; otherwise None.
    """

    kind: str
    label: str
    bbox: Box
    colour: RGB
    checked: bool | None = None

    @property
    def centre(self) -> tuple[int, int]:
        """Integer pixel at the middle of the box (always inside it)."""
        x1, y1, x2, y2 = self.bbox
        return (x1 + x2) // 2, (y1 + y2) // 2


# ---------------------------------------------------------------------------
# Themes and fonts
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Theme:
    name: str
    bg: RGB
    surface: RGB
    fg: RGB
    muted: RGB
    border: RGB
    field_bg: RGB
    accent: RGB
    on_accent: RGB
    link: RGB


# Saturated accents dark enough for white text (light theme), and lighter
# ones for dark text (dark theme).
_ACCENTS_LIGHT = (
    (37, 99, 235), (22, 128, 61), (124, 58, 237), (194, 65, 12), (190, 18, 60), (15, 118, 110), (3, 105, 161),
)
_ACCENTS_DARK = ((96, 165, 250), (74, 222, 128), (167, 139, 250), (251, 146, 60), (251, 113, 133), (45, 212, 191))


def _grey(v: int, tint: RGB = (0, 0, 0)) -> RGB:
    return tuple(max(0, min(255, v + t)) for t in tint)  # type: ignore[return-value]


def _make_theme(rng: random.Random, name: str) -> _Theme:
    tint = (rng.randint(-4, 0), rng.randint(-3, 0), rng.randint(0, 4))  # slight cool/warm cast
    if name == "light":
        accent = rng.choice(_ACCENTS_LIGHT)
        return _Theme(
            name=name,
            bg=_grey(rng.randint(240, 252), tint),
            surface=_grey(255),
            fg=_grey(rng.randint(15, 45)),
            muted=_grey(rng.randint(95, 115)),
            border=_grey(rng.randint(150, 185)),
            field_bg=_grey(255),
            accent=accent,
            on_accent=(255, 255, 255),
            link=rng.choice((accent, (26, 13, 171), (0, 90, 200))),
        )
    if name == "dark":
        accent = rng.choice(_ACCENTS_DARK)
        return _Theme(
            name=name,
            bg=_grey(rng.randint(16, 30), tint),
            surface=_grey(rng.randint(38, 50)),
            fg=_grey(rng.randint(225, 245)),
            muted=_grey(rng.randint(150, 170)),
            border=_grey(rng.randint(90, 115)),
            field_bg=_grey(rng.randint(30, 42)),
            accent=accent,
            on_accent=(15, 15, 20),
            link=rng.choice((accent, (138, 180, 248))),
        )
    raise ValueError(f"unknown theme {name!r}; expected one of {THEMES}")


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled scalable font: identical glyphs on every machine, which
    # keeps screens byte-identical across platforms.
    return ImageFont.load_default(size=size)


# ---------------------------------------------------------------------------
# Canvas: drawing primitives that also record widgets
# ---------------------------------------------------------------------------


class _NoFit(Exception):
    """The layout does not fit the image at this font size."""


class _Canvas:
    def __init__(self, rng: random.Random, size: tuple[int, int], theme: _Theme, fs: int):
        self.rng = rng
        self.w, self.h = size
        self.theme = theme
        self.fs = fs
        self.img = Image.new("RGB", size, theme.bg)
        self.draw = ImageDraw.Draw(self.img)
        self.widgets: list[Widget] = []
        self.margin = max(4, round(min(size) * rng.uniform(0.035, 0.065)))
        # Per-screen style choices, so widgets on one screen look consistent.
        self.radius = rng.choice((0, 2, 4, 8, 99))  # 99 -> pill-shaped
        self.pad_x = round(fs * rng.uniform(0.8, 1.4))
        self.line_w = 1 if fs < 16 else 2
        self.button_style = rng.choice(("filled", "filled", "outline", "neutral"))

    # -- measurement -------------------------------------------------------

    def font(self, scale: float = 1.0) -> ImageFont.FreeTypeFont:
        return _font(max(_MIN_FONT, round(self.fs * scale)))

    def text_w(self, text: str, scale: float = 1.0) -> int:
        return math.ceil(self.font(scale).getlength(text))

    def fit_text(self, text: str, width: int, scale: float = 1.0) -> str:
        """Shorten ``text`` with an ellipsis until it fits in ``width`` pixels."""
        if self.text_w(text, scale) <= width:
            return text
        while text and self.text_w(text + "…", scale) > width:
            text = text[:-1]
        return text.rstrip() + "…"

    def wrap(self, text: str, width: int, scale: float = 1.0) -> list[str]:
        lines: list[str] = []
        for word in text.split():
            if lines and self.text_w(lines[-1] + " " + word, scale) <= width:
                lines[-1] += " " + word
            else:
                lines.append(word)
        return lines

    @property
    def secondary_style(self) -> str:
        """Style of non-primary buttons: plain next to a filled primary, else the same."""
        return "neutral" if self.button_style == "filled" else self.button_style

    @property
    def button_h(self) -> int:
        return round(self.fs * 2.1)

    @property
    def line_h(self) -> int:
        return round(self.fs * 1.4)

    def button_w(self, label: str) -> int:
        return self.text_w(label) + 2 * self.pad_x

    # -- recording ---------------------------------------------------------

    def add(self, widget: Widget) -> Widget:
        x1, y1, x2, y2 = widget.bbox
        if not (0 <= x1 < x2 <= self.w and 0 <= y1 < y2 <= self.h):
            raise _NoFit(f"{widget.kind} {widget.label!r} at {widget.bbox} is outside the image")
        if widget.kind in TARGET_KINDS:
            for other in self.widgets:
                if other.kind not in TARGET_KINDS:
                    continue
                if (other.kind, other.label) == (widget.kind, widget.label):
                    raise AssertionError(f"duplicate {widget.kind} {widget.label!r}: instructions would be ambiguous")
                ox1, oy1, ox2, oy2 = other.bbox
                if x1 < ox2 and ox1 < x2 and y1 < oy2 and oy1 < y2:
                    raise AssertionError(f"{widget.label!r} overlaps {other.label!r}")
        self.widgets.append(widget)
        return widget

    def _rrect(
        self, box: Box, fill: RGB | None, outline: RGB | None, width: int = 1, radius: int | None = None
    ) -> None:
        x1, y1, x2, y2 = box
        r = self.radius if radius is None else radius
        r = min(r, (y2 - y1) // 2, (x2 - x1) // 2)
        # PIL boxes are inclusive; widget boxes are exclusive at x2/y2.
        self.draw.rounded_rectangle((x1, y1, x2 - 1, y2 - 1), radius=r, fill=fill, outline=outline, width=width)

    # -- primitives ----------------------------------------------------------

    def text(self, x: int, yc: int, text: str, fill: RGB | None = None, scale: float = 1.0, record: bool = True) -> Box:
        """Draw left-aligned static text vertically centred on ``yc``."""
        fill = fill or self.theme.fg
        font = self.font(scale)
        self.draw.text((x, yc), text, font=font, fill=fill, anchor="lm")
        x1, y1, x2, y2 = (round(v) for v in self.draw.textbbox((x, yc), text, font=font, anchor="lm"))
        box = (max(0, x1), max(0, y1), min(self.w, x2 + 1), min(self.h, y2 + 1))
        if record and box[0] < box[2] and box[1] < box[3]:
            self.widgets.append(Widget("text", text, box, fill))
        return box

    def button(self, x: int, y: int, label: str, width: int | None = None, style: str | None = None) -> Widget:
        t = self.theme
        style = style or self.button_style
        w = width or self.button_w(label)
        box = (x, y, x + w, y + self.button_h)
        if style == "filled":
            self._rrect(box, t.accent, None)
            colour, text_colour = t.accent, t.on_accent
        elif style == "outline":
            self._rrect(box, None, t.accent, width=self.line_w)
            colour, text_colour = t.accent, t.accent
        else:
            self._rrect(box, t.surface, t.border, width=1)
            colour, text_colour = t.surface, t.fg
        self.draw.text((x + w / 2, y + self.button_h / 2), label, font=self.font(), fill=text_colour, anchor="mm")
        return self.add(Widget("button", label, box, colour))

    def text_field(self, x: int, y: int, w: int, name: str, placeholder: str | None) -> Widget:
        t = self.theme
        h = round(self.fs * 2.2)
        box = (x, y, x + w, y + h)
        self._rrect(box, t.field_bg, t.border, width=1, radius=min(self.radius, 6))
        if placeholder:
            hint = self.fit_text(placeholder, w - 2 * self.pad_x // 2 - 4)
            self.draw.text((x + max(4, self.pad_x // 2), y + h / 2), hint, font=self.font(), fill=t.muted, anchor="lm")
        else:
            # An empty field still shows a caret-like bar so it reads as an input.
            cx = x + max(4, self.pad_x // 2)
            self.draw.line((cx, y + h * 0.3, cx, y + h * 0.7), fill=t.border, width=1)
        return self.add(Widget("text_field", name, box, t.border))

    def link(self, x: int, yc: int, label: str) -> Widget:
        t = self.theme
        font = self.font()
        self.draw.text((x, yc), label, font=font, fill=t.link, anchor="lm")
        w = self.text_w(label)
        underline_y = yc + round(self.fs * 0.55)
        self.draw.line((x, underline_y, x + w - 1, underline_y), fill=t.link, width=1)
        half = self.line_h // 2
        return self.add(Widget("link", label, (x, yc - half, x + w, yc + half + 1), t.link))

    def checkbox_w(self, label: str) -> int:
        return round(self.fs * 1.1) + round(self.fs * 0.5) + self.text_w(label)

    def checkbox(self, x: int, yc: int, label: str, checked: bool) -> Widget:
        t = self.theme
        b = round(self.fs * 1.1)
        gap = round(self.fs * 0.5)
        box = (x, yc - b // 2, x + b, yc - b // 2 + b)
        if checked:
            self._rrect(box, t.accent, None, radius=min(self.radius, 3))
            # Tick mark in two strokes.
            bx, by = box[0], box[1]
            self.draw.line(
                [(bx + b * 0.22, by + b * 0.52), (bx + b * 0.42, by + b * 0.72), (bx + b * 0.78, by + b * 0.28)],
                fill=t.on_accent,
                width=max(1, b // 7),
            )
        else:
            edge = t.border if t.name == "light" else t.muted
            self._rrect(box, t.field_bg, edge, width=self.line_w, radius=min(self.radius, 3))
        self.draw.text((x + b + gap, yc), label, font=self.font(), fill=t.fg, anchor="lm")
        half = max(b, self.line_h) // 2
        bbox = (x, yc - half, x + b + gap + self.text_w(label), yc + half + 1)
        return self.add(Widget("checkbox", label, bbox, t.accent if checked else t.border, checked=checked))

    def icon(self, x: int, y: int, size: int, name: str, colour: RGB, behind: RGB, plate: RGB | None = None) -> Widget:
        """Draw a glyph in a ``size`` square; ``behind`` is the colour under it."""
        box = (x, y, x + size, y + size)
        if plate is not None:
            self._rrect(box, plate, None, radius=size // 2 if self.radius >= 8 else min(self.radius, 6))
            behind = plate
        inset = round(size * 0.2)
        _draw_glyph(self.draw, name, (x + inset, y + inset, x + size - inset, y + size - inset), colour, behind)
        return self.add(Widget("icon", name, box, colour))


def _draw_glyph(draw: ImageDraw.ImageDraw, name: str, box: tuple[float, float, float, float], c: RGB, bg: RGB) -> None:
    """Draw a simple line/shape icon filling ``box``."""
    x0, y0, x1, y1 = box
    w = x1 - x0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    lw = max(1, round(w / 8))
    if name == "settings":  # gear: eight teeth, a disc and a hole
        for k in range(8):
            a = k * math.pi / 4
            tip = (cx + 0.5 * w * math.cos(a), cy + 0.5 * w * math.sin(a))
            draw.line((cx, cy, *tip), fill=c, width=max(2, round(w * 0.2)))
        r = 0.34 * w
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=c)
        r = 0.14 * w
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=bg)
    elif name == "trash":
        draw.line((x0, y0 + 0.2 * w, x1, y0 + 0.2 * w), fill=c, width=lw)
        draw.rectangle((cx - 0.15 * w, y0, cx + 0.15 * w, y0 + 0.2 * w), outline=c, width=1)
        body = [(x0 + 0.12 * w, y0 + 0.3 * w), (x1 - 0.12 * w, y0 + 0.3 * w), (x1 - 0.22 * w, y1), (x0 + 0.22 * w, y1)]
        draw.polygon(body, outline=c, width=lw)
        for fx in (0.4, 0.6):
            draw.line((x0 + fx * w, y0 + 0.42 * w, x0 + fx * w, y1 - 0.14 * w), fill=c, width=1)
    elif name == "star":
        points = []
        for k in range(10):
            r = 0.5 * w if k % 2 == 0 else 0.21 * w
            a = -math.pi / 2 + k * math.pi / 5
            points.append((cx + r * math.cos(a), cy + 0.05 * w + r * math.sin(a)))
        draw.polygon(points, fill=c)
    elif name == "search":
        r = 0.3 * w
        ex, ey = x0 + 0.38 * w, y0 + 0.38 * w
        draw.ellipse((ex - r, ey - r, ex + r, ey + r), outline=c, width=lw)
        draw.line((ex + 0.7 * r, ey + 0.7 * r, x1, y1), fill=c, width=lw + 1)
    elif name == "home":
        eave = y0 + 0.45 * w
        draw.line([(x0, eave), (cx, y0), (x1, eave)], fill=c, width=lw, joint="curve")
        draw.rectangle((x0 + 0.15 * w, eave, x1 - 0.15 * w, y1), outline=c, width=lw)
        draw.rectangle((cx - 0.1 * w, y1 - 0.3 * w, cx + 0.1 * w, y1), fill=c)
    elif name == "close":
        draw.line((x0, y0, x1, y1), fill=c, width=lw + 1)
        draw.line((x0, y1, x1, y0), fill=c, width=lw + 1)
    elif name == "add":
        draw.line((cx, y0, cx, y1), fill=c, width=lw + 1)
        draw.line((x0, cy, x1, cy), fill=c, width=lw + 1)
    elif name == "bell":
        draw.pieslice((cx - 0.32 * w, y0 + 0.05 * w, cx + 0.32 * w, y0 + 0.7 * w), 180, 360, fill=c)
        draw.rectangle((cx - 0.32 * w, y0 + 0.37 * w, cx + 0.32 * w, y0 + 0.75 * w), fill=c)
        draw.rectangle((x0 + 0.05 * w, y0 + 0.75 * w, x1 - 0.05 * w, y0 + 0.8 * w + lw), fill=c)
        r = 0.1 * w
        draw.ellipse((cx - r, y1 - 2 * r, cx + r, y1), fill=c)
    elif name == "menu":
        for fy in (0.15, 0.5, 0.85):
            draw.line((x0, y0 + fy * w, x1, y0 + fy * w), fill=c, width=lw + 1)
    elif name == "user":
        r = 0.22 * w
        draw.ellipse((cx - r, y0, cx + r, y0 + 2 * r), fill=c)
        draw.pieslice((x0 + 0.05 * w, y0 + 0.52 * w, x1 - 0.05 * w, y1 + 0.45 * w), 180, 360, fill=c)
    elif name == "back":
        draw.line((x0, cy, x1, cy), fill=c, width=lw + 1)
        draw.line([(cx - 0.05 * w, y0 + 0.1 * w), (x0, cy), (cx - 0.05 * w, y1 - 0.1 * w)], fill=c, width=lw + 1)
    elif name == "download":
        draw.line((cx, y0, cx, y0 + 0.68 * w), fill=c, width=lw + 1)
        head = [(cx - 0.28 * w, y0 + 0.4 * w), (cx, y0 + 0.68 * w), (cx + 0.28 * w, y0 + 0.4 * w)]
        draw.line(head, fill=c, width=lw + 1)
        draw.line([(x0, y1 - 0.2 * w), (x0, y1), (x1, y1), (x1, y1 - 0.2 * w)], fill=c, width=lw)
    else:
        raise ValueError(f"unknown icon {name!r}; expected one of {ICON_NAMES}")


# ---------------------------------------------------------------------------
# Vertical stacking
# ---------------------------------------------------------------------------


@dataclass
class _Row:
    height: int
    draw: Callable[[int], None]  # called with the row's top y
    optional: bool = False


def _plan(c: _Canvas, rows: list[_Row], room: int) -> tuple[list[_Row], int, int]:
    """Drop optional rows (last first) until ``rows`` fit in ``room`` pixels.

    Returns the kept rows, the gap between them and their total height.
    Raises _NoFit when even the required rows do not fit.
    """
    gap = round(c.fs * 0.55)
    rows = list(rows)

    def total() -> int:
        return sum(r.height for r in rows) + gap * (len(rows) - 1)

    while total() > room:
        optional = [i for i, r in enumerate(rows) if r.optional]
        if not optional:
            raise _NoFit("required rows do not fit")
        del rows[optional[-1]]
    # Spread some of the spare room between rows so bigger screens breathe.
    if len(rows) > 1:
        gap += min((room - total()) // (len(rows) - 1), round(c.fs * c.rng.uniform(0.2, 0.9)))
    return rows, gap, total()


def _draw_rows(rows: list[_Row], gap: int, top: int) -> None:
    y = top
    for row in rows:
        row.draw(y)
        y += row.height + gap


def _stack(c: _Canvas, rows: list[_Row], top: int, bottom: int, centre: bool = False) -> None:
    """Fit ``rows`` between ``top`` and ``bottom`` (see _plan) and draw them."""
    rows, gap, height = _plan(c, rows, bottom - top)
    _draw_rows(rows, gap, top + (bottom - top - height) // 2 if centre else top)


def _sample_fitting(rng: random.Random, pool: Sequence[str], k: int, fits: Callable[[str], bool]) -> list[str]:
    candidates = [s for s in pool if fits(s)]
    return rng.sample(candidates, min(k, len(candidates)))


def _column(c: _Canvas, lo: float, hi: float) -> tuple[int, int]:
    """A content column ``fs * U(lo, hi)`` wide (capped by the image), centred or left."""
    width = min(c.w - 2 * c.margin, round(c.fs * c.rng.uniform(lo, hi)))
    x = (c.w - width) // 2 if c.rng.random() < 0.7 else c.margin
    return x, width


def _button_row(c: _Canvas, x: int, y: int, width: int, labels: Sequence[str], align: str) -> None:
    """Buttons side by side (or one per line when they do not fit - callers size rows for that)."""
    gap = round(c.fs * 0.6)
    widths = [c.button_w(s) for s in labels]
    if align == "fill":
        each = (width - gap * (len(labels) - 1)) // len(labels)
        widths = [max(w, each) for w in widths]
    total = sum(widths) + gap * (len(labels) - 1)
    bx = x + width - total if align == "right" else x
    # Primary action drawn filled, the others in the screen's secondary style.
    for i, (label, w) in enumerate(zip(labels, widths)):
        style = None if i == 0 else c.secondary_style
        c.button(bx, y, label, width=w, style=style)
        bx += w + gap


def _buttons_fit(c: _Canvas, labels: Sequence[str], width: int) -> bool:
    return sum(c.button_w(s) for s in labels) + round(c.fs * 0.6) * (len(labels) - 1) <= width


# ---------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------

_LOGIN_TITLES = ("Sign in", "Log in", "Welcome back", "Member login", "Create account", "Account access")
_LOGIN_FIELDS = (
    ("Email", "you@example.com"), ("Username", "Enter username"),
    ("Email address", "name@mail.com"), ("Phone number", "+1 555 0100"),
)
_PASSWORD_FIELDS = (("Password", "Enter password"), ("Password", "••••••••"), ("PIN", "4-digit PIN"))
_REMEMBER = ("Remember me", "Keep me signed in", "Stay logged in", "Trust this device")
_FORGOT = ("Forgot password?", "Reset password", "Need help?", "Trouble signing in?")
_PRIMARY_LOGIN = ("Sign in", "Log in", "Continue", "Submit", "Next")
_SECONDARY_LOGIN = ("Cancel", "Sign up", "Register", "Back")
_BOTTOM_LINKS = ("Create an account", "Privacy policy", "Terms of use", "Contact us")


def _login_form(c: _Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    x, width = _column(c, 17, 24)
    field_h = round(fs * 2.2)
    label_above = rng.random() < 0.4
    card = rng.random() < 0.5
    rows: list[_Row] = []

    title = rng.choice(_LOGIN_TITLES)
    title_h = round(fs * 1.9)
    rows.append(_Row(title_h, lambda y: c.text(x, y + title_h // 2, title, scale=1.4)))

    (name1, hint1), (name2, hint2) = rng.choice(_LOGIN_FIELDS), rng.choice(_PASSWORD_FIELDS)
    for name, hint in ((name1, hint1), (name2, hint2)):
        if label_above:
            cap_h = c.line_h

            def draw_field(y: int, name=name, hint=hint, cap_h=cap_h) -> None:
                c.text(x, y + cap_h // 2, name)
                c.text_field(x, y + cap_h, width, name, hint if rng.random() < 0.5 else None)

            rows.append(_Row(cap_h + field_h, draw_field))
        else:
            rows.append(_Row(field_h, lambda y, name=name: c.text_field(x, y, width, name, name)))

    remember, forgot = rng.choice(_REMEMBER), rng.choice(_FORGOT)
    want_check, want_forgot = rng.random() < 0.75, rng.random() < 0.7
    one_line = c.checkbox_w(remember) + c.text_w(forgot) + fs <= width
    row_h = round(fs * 1.6)
    checked = rng.random() < 0.3
    if want_check and want_forgot and one_line and rng.random() < 0.6:

        def draw_both(y: int) -> None:
            c.checkbox(x, y + row_h // 2, remember, checked)
            c.link(x + width - c.text_w(forgot), y + row_h // 2, forgot)

        rows.append(_Row(row_h, draw_both, optional=True))
    else:
        if want_check:
            rows.append(_Row(row_h, lambda y: c.checkbox(x, y + row_h // 2, remember, checked), optional=True))
        if want_forgot:
            rows.append(_Row(row_h, lambda y: c.link(x, y + row_h // 2, forgot), optional=True))

    labels = [rng.choice(_PRIMARY_LOGIN)]
    if rng.random() < 0.5:
        labels.append(rng.choice(_SECONDARY_LOGIN))
    if not _buttons_fit(c, labels, width):
        labels = labels[:1]
    align = rng.choice(("fill", "left", "right")) if len(labels) > 1 else rng.choice(("fill", "left"))
    rows.append(_Row(c.button_h, lambda y: _button_row(c, x, y, width, labels, align)))

    if rng.random() < 0.5:
        footer = rng.choice([s for s in _BOTTOM_LINKS if s not in labels])
        rows.append(_Row(c.line_h, lambda y: c.link(x, y + c.line_h // 2, footer), optional=True))

    if card:
        pad = round(fs * 0.9)
        rows, gap, height = _plan(c, rows, c.h - 2 * c.margin - 2 * pad)
        top = (c.h - height) // 2 - pad if rng.random() < 0.7 else c.margin
        c._rrect((x - pad, top, x + width + pad, top + height + 2 * pad), t.surface, t.border, radius=min(c.radius, 10))
        _draw_rows(rows, gap, top + pad)
    else:
        _stack(c, rows, c.margin, c.h - c.margin, centre=rng.random() < 0.5)


_SETTINGS_TITLES = ("Settings", "Preferences", "Notifications", "Privacy", "Account", "Display")
_SETTINGS_OPTIONS = (
    "Wi-Fi", "Bluetooth", "Dark mode", "Notifications", "Location", "Auto-update", "Sync contacts",
    "Airplane mode", "Sound", "Vibration", "Show previews", "Battery saver", "Auto-rotate", "Backup photos",
)
_SETTINGS_LINKS = ("Advanced settings", "Learn more", "Reset to defaults", "About this app", "Privacy policy")
_SETTINGS_BUTTONS = (("Save", "Cancel"), ("Apply", "Reset"), ("Done",), ("Save changes",), ("OK", "Cancel"))


def _header_bar(c: _Canvas, title: str | None, left: list[str], right: list[str], filled: bool) -> int:
    """A bar across the top with icons at both ends; returns its height."""
    t = c.theme
    h = round(c.fs * 2.6)
    bar = t.accent if filled else t.surface
    fg = t.on_accent if filled else t.fg
    c.draw.rectangle((0, 0, c.w - 1, h - 1), fill=bar)
    if not filled:
        c.draw.line((0, h - 1, c.w - 1, h - 1), fill=t.border)
    size = round(c.fs * 1.8)
    step = size + round(c.fs * 0.5)
    y = (h - size) // 2
    x = c.margin
    for name in left:
        c.icon(x, y, size, name, fg, bar)
        x += step
    text_x = x + (round(c.fs * 0.3) if left else 0)
    x_right = c.w - c.margin - size
    for name in right:
        c.icon(x_right, y, size, name, fg, bar)
        x_right -= step
    if title:
        room = x_right + size - text_x - round(c.fs * 0.5)
        c.text(text_x, h // 2, c.fit_text(title, room, 1.2), fill=fg, scale=1.2)
    return h


def _settings_list(c: _Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    icons = rng.sample(("back", "menu", "home", "close", "search", "user"), 2)
    left = [icons[0]] if rng.random() < 0.8 else []
    right = [icons[1]] if rng.random() < 0.6 else []
    header_h = _header_bar(c, rng.choice(_SETTINGS_TITLES), left, right, filled=rng.random() < 0.5)

    x = c.margin
    width = c.w - 2 * c.margin
    row_h = round(fs * 2.0)
    options = _sample_fitting(rng, _SETTINGS_OPTIONS, rng.randint(3, 6), lambda s: c.checkbox_w(s) <= width)
    rows: list[_Row] = []
    if rng.random() < 0.4:
        section = rng.choice(("General", "Connections", "Alerts", "Privacy"))
        heading = section.upper()
        rows.append(
            _Row(c.line_h, lambda y: c.text(x, y + c.line_h // 2, heading, fill=t.muted, scale=0.9), optional=True)
        )
    separators = rng.random() < 0.6
    for i, option in enumerate(options):
        checked = rng.random() < 0.5

        def draw_option(y: int, option=option, checked=checked) -> None:
            c.checkbox(x, y + row_h // 2, option, checked)
            if separators:
                c.draw.line((x, y + row_h + 1, c.w - c.margin, y + row_h + 1), fill=t.border)

        # Two options are required so "the second checkbox" stays meaningful.
        rows.append(_Row(row_h, draw_option, optional=i >= 2))
    if rng.random() < 0.5:
        link = rng.choice(_SETTINGS_LINKS)
        rows.append(_Row(c.line_h, lambda y: c.link(x, y + c.line_h // 2, link), optional=True))
    labels = list(rng.choice(_SETTINGS_BUTTONS))
    if not _buttons_fit(c, labels, width):
        labels = labels[:1]
    align = rng.choice(("right", "fill", "left"))
    # Required, so _stack drops options/link rows to fit but never the buttons.
    rows.append(_Row(c.button_h, lambda y: _button_row(c, x, y, width, labels, align)))
    _stack(c, rows, header_h + round(fs * 0.6), c.h - c.margin)


_APP_TITLES = ("Documents", "Photos", "Mail", "Projects", "Notes", "Files", "Music")
_DOC_TITLES = ("Quarterly report", "Trip photos", "Meeting notes", "Budget 2025", "Inbox", "Shopping list")
_TOOLBAR_BUTTONS = ("Share", "Edit", "Export", "New file", "Upload", "Print", "Rename")
_TOOLBAR_LINKS = ("View history", "Open in new tab", "Show details", "Version info")


def _toolbar(c: _Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    filled = rng.random() < 0.5
    bar_bg = t.accent if filled else t.surface
    fg = t.on_accent if filled else t.fg
    h = round(fs * 2.6)
    size = round(fs * 1.8)
    step = size + round(fs * rng.uniform(0.4, 0.9))
    plates = rng.random() < 0.3 and not filled

    title = rng.choice(_APP_TITLES) if rng.random() < 0.6 else None
    title_w = c.text_w(title, 1.2) + fs if title else 0
    room = c.w - 2 * c.margin - title_w
    n = min(rng.randint(3, 6), (room + step - size) // step)
    if n < 3:
        title, title_w, n = None, 0, min(6, (c.w - 2 * c.margin + step - size) // step)
    names = rng.sample(ICON_NAMES, n)

    c.draw.rectangle((0, 0, c.w - 1, h - 1), fill=bar_bg)
    if not filled:
        c.draw.line((0, h - 1, c.w - 1, h - 1), fill=t.border)
    if title:
        c.text(c.margin, h // 2, title, fill=fg, scale=1.2)
        x = c.w - c.margin - n * step + (step - size)  # icons right-aligned after the title
    else:
        x = c.margin
    for name in names:
        c.icon(x, (h - size) // 2, size, name, fg, bar_bg, plate=t.bg if plates else None)
        x += step

    # Body: a document with greyed-out text lines, action buttons and a link.
    left, width = c.margin, c.w - 2 * c.margin
    doc = rng.choice(_DOC_TITLES)
    rows = [_Row(round(fs * 1.8), lambda y: c.text(left, y + round(fs * 0.9), doc, scale=1.25))]
    for _ in range(rng.randint(2, 4)):
        frac = rng.uniform(0.55, 1.0)
        rows.append(
            _Row(
                round(fs * 0.7),
                lambda y, frac=frac: c.draw.rounded_rectangle(
                    (left, y, left + round(width * frac), y + round(fs * 0.55)),
                    radius=2,
                    fill=t.border if t.name == "light" else t.surface,
                ),
                optional=True,
            )
        )
    labels = rng.sample(_TOOLBAR_BUTTONS, rng.choice((1, 2, 2)))
    if not _buttons_fit(c, labels, width):
        labels = labels[:1]
    rows.append(_Row(c.button_h, lambda y: _button_row(c, left, y, width, labels, "left")))
    if rng.random() < 0.6:
        link = rng.choice(_TOOLBAR_LINKS)
        rows.append(_Row(c.line_h, lambda y: c.link(left, y + c.line_h // 2, link), optional=True))
    _stack(c, rows, h + round(fs * 0.8), c.h - c.margin)


# (title, message, buttons with the primary action first)
_DIALOGS = (
    ("Delete file?", "This file will be moved to the trash.", ("Delete", "Cancel")),
    ("Save changes?", "Your changes will be lost if you don't save them.", ("Save", "Don't save", "Cancel")),
    ("Allow notifications?", "Get an alert when someone messages you.", ("Allow", "Block")),
    ("Sign out?", "You will need to sign in again to continue.", ("Sign out", "Stay")),
    ("Update available", "Restart the app to finish installing the update.", ("Restart", "Later")),
    ("Discard draft?", "This message has not been sent yet.", ("Discard", "Keep editing")),
    ("Share document", "Anyone with the link will be able to view it.", ("Copy link", "Done")),
    ("Enable location?", "Location is used to show places near you.", ("Enable", "Not now")),
)
_DONT_ASK = ("Don't ask again", "Remember my choice", "Apply to all files")


def _dialog(c: _Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    # Faint app content behind the dialog (not recorded: it is under a scrim).
    c.draw.rectangle((0, 0, c.w - 1, round(fs * 2.4)), fill=t.surface)
    y = round(fs * 3.4)
    while y < c.h - fs:
        bar_w = round((c.w - 2 * c.margin) * rng.uniform(0.4, 1.0))
        c.draw.rounded_rectangle((c.margin, y, c.margin + bar_w, y + round(fs * 0.6)), radius=2, fill=t.border)
        y += round(fs * 1.5)
    scrim = Image.new("RGB", c.img.size, (0, 0, 0))
    c.img.paste(Image.blend(c.img, scrim, rng.uniform(0.35, 0.55)))
    c.draw = ImageDraw.Draw(c.img)

    title, message, buttons = rng.choice(_DIALOGS)
    pad = round(fs * rng.uniform(0.8, 1.2))
    card_w = min(c.w - 2 * c.margin, round(fs * rng.uniform(18, 26)))
    inner = card_w - 2 * pad
    cx0 = (c.w - card_w) // 2
    x = cx0 + pad

    labels = list(buttons)
    if len(labels) == 3 and rng.random() < 0.5:
        labels = labels[:2]
    stacked = not _buttons_fit(c, labels, inner)
    lines = c.wrap(message, inner)[:3]
    close = rng.random() < 0.7
    extra_check = rng.choice(_DONT_ASK) if rng.random() < 0.4 else None
    extra_link = "Learn more" if rng.random() < 0.3 else None
    if not close and not extra_check and not extra_link and len(labels) < 3:
        close = True  # keep >= 3 targets per screen

    title_h = round(fs * 2.0)
    rows: list[_Row] = []
    icon_size = round(fs * 1.6)

    def draw_title(y: int) -> None:
        room = inner - (icon_size + fs // 2 if close else 0)
        c.text(x, y + title_h // 2, c.fit_text(title, room, 1.25), scale=1.25)
        if close:
            icon_x, icon_y = cx0 + card_w - pad - icon_size, y + (title_h - icon_size) // 2
            c.icon(icon_x, icon_y, icon_size, "close", t.muted, t.surface)

    rows.append(_Row(title_h, draw_title))

    def draw_message(y: int) -> None:
        for k, line in enumerate(lines):  # one row, so the lines stay tight
            c.text(x, y + k * c.line_h + c.line_h // 2, line, fill=t.muted)

    rows.append(_Row(c.line_h * len(lines), draw_message))
    if extra_check:
        rows.append(_Row(round(fs * 1.6), lambda y: c.checkbox(x, y + round(fs * 0.8), extra_check, False)))
    if extra_link:
        rows.append(_Row(c.line_h, lambda y: c.link(x, y + c.line_h // 2, extra_link)))
    if stacked:
        for i, label in enumerate(labels):  # one full-width button per line, primary first
            style = None if i == 0 else c.secondary_style
            rows.append(_Row(c.button_h, lambda y, label=label, style=style: c.button(x, y, label, inner, style)))
    else:
        rows.append(_Row(c.button_h, lambda y: _button_row(c, x, y, inner, labels, "right")))

    rows, gap, content_h = _plan(c, rows, c.h - 2 * c.margin - 2 * pad)
    card_h = content_h + 2 * pad
    top = (c.h - card_h) // 2
    edge = t.border if t.name == "light" else None
    c._rrect((cx0, top, cx0 + card_w, top + card_h), t.surface, edge, radius=min(c.radius, 12))
    _draw_rows(rows, gap, top + pad)


_SEARCH_PLACEHOLDERS = ("Search", "Search products", "Search docs", "Search the web", "Find a file")
_RESULT_TITLES = (
    "Getting started guide", "Pricing and plans", "Install on Windows", "Release notes", "API reference",
    "Contact support", "Keyboard shortcuts", "Troubleshooting tips", "Reset your password", "Shipping and returns",
    "Best hiking boots", "Weather in Paris", "Python tutorial", "Cheap flights to Rome", "Easy pasta recipes",
    "Used bikes for sale", "Learn to play guitar", "Train times", "Museum opening hours",
)
_SNIPPETS = (
    "A step-by-step introduction for new users.",
    "Compare features and choose the right plan.",
    "Updated last week with new examples.",
    "Answers to the most common questions.",
    "Read reviews and compare prices today.",
    "Everything you need to know in five minutes.",
)
_SEARCH_FILTERS = ("Exact match", "Only in stock", "Include archived", "Safe search")


def _search_results(c: _Canvas) -> None:
    rng, t, fs = c.rng, c.theme, c.fs
    x, width = c.margin, c.w - 2 * c.margin
    placeholder = rng.choice(_SEARCH_PLACEHOLDERS)
    field_h = round(fs * 2.2)
    use_icon = rng.random() < 0.5
    go = rng.choice(("Search", "Go", "Find"))
    side_w = field_h if use_icon else c.button_w(go)
    gap = round(fs * 0.5)

    def draw_search(y: int) -> None:
        c.text_field(x, y, width - side_w - gap, placeholder, placeholder)
        if use_icon:
            c.icon(x + width - side_w, y, field_h, "search", t.on_accent, t.bg, plate=t.accent)
        else:
            c.button(x + width - side_w, y + (field_h - c.button_h) // 2, go, style="filled")

    rows = [_Row(max(field_h, c.button_h), draw_search)]
    if rng.random() < 0.4:
        filt = rng.choice(_SEARCH_FILTERS)
        ticked = rng.random() < 0.5
        rows.append(_Row(round(fs * 1.6), lambda y: c.checkbox(x, y + round(fs * 0.8), filt, ticked), optional=True))
    titles = _sample_fitting(rng, _RESULT_TITLES, rng.randint(2, 4), lambda s: c.text_w(s) <= width)
    result_h = c.line_h + round(fs * 1.2)
    for i, title in enumerate(titles):
        snippet = c.fit_text(rng.choice(_SNIPPETS), width, 0.9)

        def draw_result(y: int, title=title, snippet=snippet) -> None:
            c.link(x, y + c.line_h // 2, title)
            c.text(x, y + c.line_h + round(fs * 0.55), snippet, fill=t.muted, scale=0.9)

        rows.append(_Row(result_h, draw_result, optional=i >= 2))
    if rng.random() < 0.6:
        labels = ["Next"] if rng.random() < 0.5 else ["Previous", "Next"]
        if not _buttons_fit(c, labels, width):
            labels = ["Next"]
        rows.append(_Row(c.button_h, lambda y: _button_row(c, x, y, width, labels, rng.choice(("left", "right")))))
    else:
        more = rng.choice(("More results", "Next page", "Show all"))
        rows.append(_Row(c.line_h, lambda y: c.link(x, y + c.line_h // 2, more)))
    _stack(c, rows, c.margin, c.h - c.margin)


_LAYOUT_FUNCS: dict[str, Callable[[_Canvas], None]] = {
    "login_form": _login_form,
    "settings_list": _settings_list,
    "toolbar": _toolbar,
    "dialog": _dialog,
    "search_results": _search_results,
}


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def generate_screen(
    rng: random.Random,
    image_size: tuple[int, int] = (224, 224),
    layout: str | None = None,
    theme: str | None = None,
) -> tuple[Image.Image, list[Widget]]:
    """Draw one synthetic screen.

    The font grows with the square root of the image size (11 px at 224,
    about 16 px at 448, 20 px at 1280x720) - real UIs get more content, not
    just bigger letters, on bigger screens - and never goes below 10 px.

    Args:
        rng: Source of all randomness (the screen is a pure function of it).
        image_size: ``(width, height)`` in pixels; at least 160 on each side.
        layout: One of :data:`LAYOUTS`, or None to pick one at random.
        theme: "light", "dark", or None to pick one at random.

    Returns:
        The RGB image and every widget drawn (including "text" widgets),
        in drawing order. At least three are targetable, of two or more kinds.
    """
    width, height = image_size
    if min(width, height) < 160:
        raise ValueError(f"image_size must be at least 160x160 for readable labels, got {image_size}")
    layout = layout or rng.choice(LAYOUTS)
    if layout not in _LAYOUT_FUNCS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    theme_obj = _make_theme(rng, theme or rng.choice(THEMES))
    fs = max(_MIN_FONT, round(11 * math.sqrt(min(width, height) / _BASE_SIZE)) + rng.choice((-1, 0, 0, 1)))
    # Draw; if the random choices do not fit, retry (smaller font first).
    for attempt in range(12):
        canvas = _Canvas(rng, (width, height), theme_obj, max(_MIN_FONT, fs - attempt // 3))
        try:
            _LAYOUT_FUNCS[layout](canvas)
        except _NoFit:
            continue
        targets = [w for w in canvas.widgets if w.kind in TARGET_KINDS]
        if len(targets) >= 3 and len({w.kind for w in targets}) >= 2:
            return canvas.img, canvas.widgets
    raise ValueError(f"could not fit layout {layout!r} into {image_size}; use a larger image_size")


def _templates(widget: Widget) -> list[str]:
    """Instructions that name ``widget`` by its label (may be ambiguous; filtered later)."""
    label, kind = widget.label, widget.kind
    named = [label, f"'{label}'"]
    if kind == "button":
        return [f"{verb} the {n} button" for verb in ("Click", "Press", "Tap") for n in named] + [f"Click '{label}'"]
    if kind == "text_field":
        return [
            f"Click the {label} field", f"Click the {label} text field",
            f"Select the '{label}' input box", f"Click into the {label} box",
        ]
    if kind == "link":
        return [f"Click the '{label}' link", f"Open the '{label}' link", f"Click the {label} link", f"Click '{label}'"]
    if kind == "checkbox":
        verbs = ("Uncheck", "Untick") if widget.checked else ("Check", "Tick")
        toggles = [f"Click the {label} checkbox", f"Toggle the '{label}' checkbox"]
        return [f"{v} the {n} box" for v in verbs for n in named] + toggles
    if kind == "icon":
        return [f"{v} the {word} icon" for v in ("Click", "Tap") for word in ICON_WORDS[label]]
    return []  # static text is never a target


def _claims(widget: Widget) -> list[str]:
    """Kind-less instructions that could be read as pointing at ``widget``.

    "Click 'Save'" must not be used for a button when a caption, a field's
    placeholder or a checkbox label also reads "Save". Icons show no text.
    """
    return [] if widget.kind == "icon" else [f"Click '{widget.label}'"]


def candidate_instructions(widgets: Sequence[Widget]) -> dict[int, list[str]]:
    """Unambiguous instructions for each targetable widget.

    Every template is generated for every widget, plus "Click 'X'" for every
    widget showing the text X (captions and placeholders included); any
    instruction that would fit two widgets is dropped. Positional instructions ("Click the second
    checkbox", "Click the third icon from the left") are added for kinds whose
    widgets all sit in one row or one column each on its own line.

    Returns:
        Widget index -> its unique instructions (only widgets with at least one).
    """
    owners: dict[str, set[int]] = defaultdict(set)
    texts: dict[int, list[str]] = defaultdict(list)
    for i, widget in enumerate(widgets):
        for text in _claims(widget):
            owners[text.lower()].add(i)
        if widget.kind in TARGET_KINDS:
            for text in _templates(widget):
                owners[text.lower()].add(i)
                texts[i].append(text)

    for kind in TARGET_KINDS:
        group = [i for i, w in enumerate(widgets) if w.kind == kind]
        if len(group) < 2:
            continue
        centres = {i: widgets[i].centre for i in group}
        tol = min(widgets[i].bbox[3] - widgets[i].bbox[1] for i in group) / 2
        ys = sorted(centres[i][1] for i in group)
        same_row = ys[-1] - ys[0] <= tol
        own_lines = all(b - a > tol for a, b in zip(ys, ys[1:]))
        if same_row:
            order, suffix = sorted(group, key=lambda i: centres[i][0]), " from the left"
        elif own_lines:
            order, suffix = sorted(group, key=lambda i: centres[i][1]), ""
        else:
            continue  # a grid: "second button" would be a guess
        if len(order) > len(_ORDINALS):
            continue
        for rank, i in enumerate(order):
            words = [_ORDINALS[rank]] + (["last"] if rank == len(order) - 1 else [])
            for word in words:
                text = f"Click the {word} {_KIND_NOUN[kind]}{suffix}"
                owners[text.lower()].add(i)
                texts[i].append(text)

    result = {i: [s for s in found if len(owners[s.lower()]) == 1] for i, found in texts.items()}
    return {i: found for i, found in result.items() if found}


def pick_target(rng: random.Random, widgets: Sequence[Widget], positional_rate: float = 0.2) -> tuple[int, str]:
    """Choose a target widget and an instruction that names only it.

    Args:
        rng: Randomness source.
        widgets: The screen's widgets.
        positional_rate: Chance of preferring an ordinal instruction
            ("the second checkbox") when one exists for the chosen widget.

    Returns:
        ``(index into widgets, instruction)``.
    """
    candidates = candidate_instructions(widgets)
    if not candidates:
        raise ValueError("no widget can be named unambiguously")
    index = rng.choice(sorted(candidates))
    positional = [s for s in candidates[index] if any(f" {o} " in s for o in _ORDINALS + ("last",))]
    by_label = [s for s in candidates[index] if s not in positional]
    pool = positional if positional and (rng.random() < positional_rate or not by_label) else by_label
    return index, rng.choice(pool)


def _screen_rng(split: str, seed: int, index: int) -> random.Random:
    # One independent stream per screen: record i is the same whatever n is,
    # and the split name is part of the key so train and test never share
    # screens even with the same seed. String seeds hash stably (SHA-512).
    return random.Random(f"uivlm-synth/{split}/{seed}/{index}")


def generate_records(
    n: int,
    seed: int,
    out_dir: str | Path,
    image_size: tuple[int, int] = (224, 224),
    split: str = "train",
    layouts: Sequence[str] = LAYOUTS,
    id_prefix: str = "synth",
) -> Path:
    """Generate ``n`` grounding examples and write them as a dataset folder.

    Writes ``out_dir/<split>.jsonl`` and ``out_dir/images/<id>.png``. Record
    ids are ``<id_prefix>-<split>-<index:06d>``, so several splits can share
    one folder. Layouts cycle in order, giving balanced layout counts.

    Args:
        n: Number of records (one screen each).
        seed: Seed; the same arguments always produce identical files.
        out_dir: Destination folder (created).
        image_size: ``(width, height)`` of each screenshot.
        split: Value of the records' ``split`` field and the file name.
        layouts: Layouts to use.
        id_prefix: Prefix of record ids and image names.

    Returns:
        Path of the written ``.jsonl`` file.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    if not layouts:
        raise ValueError("layouts must not be empty")
    records = []
    for i in range(n):
        rng = _screen_rng(split, seed, i)
        layout = layouts[i % len(layouts)]
        image, widgets = generate_screen(rng, image_size, layout=layout)
        index, instruction = pick_target(rng, widgets)
        target = widgets[index]
        x, y = target.centre
        record_id = f"{id_prefix}-{split}-{i:06d}"
        relative = f"images/{record_id}.png"
        image.save(out / relative, format="PNG")
        records.append(
            UIRecord(
                id=record_id,
                image=relative,
                image_size=[image.width, image.height],
                instruction=instruction,
                action={"type": "click", "x": x, "y": y},
                bbox=list(target.bbox),
                element_type=target.kind,
                source="synthetic",
                platform=PLATFORM_BY_LAYOUT[layout],
                history=[],
                split=split,
                base_dir=out,
            )
        )
    return write_records(records, out / f"{split}.jsonl")


def make_splits(
    out_dir: str | Path,
    seed: int = 0,
    n_train: int = 500,
    n_eval: int = 100,
    image_size: tuple[int, int] = (224, 224),
    layouts: Sequence[str] = LAYOUTS,
    n_validation: int = 0,
) -> dict[str, Path]:
    """Write a train and a test split (and optionally validation) into ``out_dir``.

    Each split draws from its own random streams (see :func:`generate_records`),
    so no screen appears in two splits.

    Args:
        out_dir: Destination folder.
        seed: Base seed.
        n_train: Training records.
        n_eval: Test records.
        image_size: Screenshot size.
        layouts: Layouts to use.
        n_validation: Validation records; 0 (default) writes no validation split.

    Returns:
        Split name -> ``.jsonl`` path.
    """
    sizes = {"train": n_train, "validation": n_validation, "test": n_eval}
    return {
        split: generate_records(n, seed, out_dir, image_size=image_size, split=split, layouts=layouts)
        for split, n in sizes.items()
        if split != "validation" or n > 0
    }
