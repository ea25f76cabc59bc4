"""The canvas: PIL drawing primitives that also record every widget they draw (kind, label, box)."""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

from .glyphs import draw_glyph
from .theme import RGB, Theme

# Kinds that can be the target of an instruction; "text" widgets (titles,
# captions) are recorded too, as distractors, but never targeted.
TARGET_KINDS = ("button", "text_field", "link", "checkbox", "icon")
MIN_FONT = 10  # smallest font size still readable in a 224 px screenshot

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


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    # Pillow's bundled scalable font: identical glyphs on every machine, which
    # keeps screens byte-identical across platforms.
    return ImageFont.load_default(size=size)


class NoFit(Exception):
    """The layout does not fit the image at this font size."""


class Canvas:
    """A screen being drawn: the image, its theme and font size, per-screen style choices, and the widgets so far.

    Every primitive (button, text field, link, checkbox, icon, text) draws with the theme and records a
    :class:`Widget`; a widget that would fall outside the image raises :class:`NoFit`.
    """

    def __init__(self, rng: random.Random, size: tuple[int, int], theme: Theme, fs: int):
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
        return _font(max(MIN_FONT, round(self.fs * scale)))

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
            raise NoFit(f"{widget.kind} {widget.label!r} at {widget.bbox} is outside the image")
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

    def rrect(
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
            self.rrect(box, t.accent, None)
            colour, text_colour = t.accent, t.on_accent
        elif style == "outline":
            self.rrect(box, None, t.accent, width=self.line_w)
            colour, text_colour = t.accent, t.accent
        else:
            self.rrect(box, t.surface, t.border, width=1)
            colour, text_colour = t.surface, t.fg
        self.draw.text((x + w / 2, y + self.button_h / 2), label, font=self.font(), fill=text_colour, anchor="mm")
        return self.add(Widget("button", label, box, colour))

    def text_field(self, x: int, y: int, w: int, name: str, placeholder: str | None) -> Widget:
        t = self.theme
        h = round(self.fs * 2.2)
        box = (x, y, x + w, y + h)
        self.rrect(box, t.field_bg, t.border, width=1, radius=min(self.radius, 6))
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
            self.rrect(box, t.accent, None, radius=min(self.radius, 3))
            # Tick mark in two strokes.
            bx, by = box[0], box[1]
            self.draw.line(
                [(bx + b * 0.22, by + b * 0.52), (bx + b * 0.42, by + b * 0.72), (bx + b * 0.78, by + b * 0.28)],
                fill=t.on_accent,
                width=max(1, b // 7),
            )
        else:
            edge = t.border if t.name == "light" else t.muted
            self.rrect(box, t.field_bg, edge, width=self.line_w, radius=min(self.radius, 3))
        self.draw.text((x + b + gap, yc), label, font=self.font(), fill=t.fg, anchor="lm")
        half = max(b, self.line_h) // 2
        bbox = (x, yc - half, x + b + gap + self.text_w(label), yc + half + 1)
        return self.add(Widget("checkbox", label, bbox, t.accent if checked else t.border, checked=checked))

    def icon(self, x: int, y: int, size: int, name: str, colour: RGB, behind: RGB, plate: RGB | None = None) -> Widget:
        """Draw a glyph in a ``size`` square; ``behind`` is the colour under it."""
        box = (x, y, x + size, y + size)
        if plate is not None:
            self.rrect(box, plate, None, radius=size // 2 if self.radius >= 8 else min(self.radius, 6))
            behind = plate
        inset = round(size * 0.2)
        draw_glyph(self.draw, name, (x + inset, y + inset, x + size - inset, y + size - inset), colour, behind)
        return self.add(Widget("icon", name, box, colour))
