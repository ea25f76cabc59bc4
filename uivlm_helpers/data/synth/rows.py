"""Vertical stacking for layouts: rows planned to fit the screen (optional ones dropped), and button rows."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .canvas import Canvas, NoFit


@dataclass
class Row:
    """One horizontal band of a layout: its height and how to draw it at a given top y."""

    height: int
    draw: Callable[[int], None]  # called with the row's top y
    optional: bool = False


def plan_rows(c: Canvas, rows: list[Row], room: int) -> tuple[list[Row], int, int]:
    """Drop optional rows (last first) until ``rows`` fit in ``room`` pixels.

    Returns the kept rows, the gap between them and their total height.
    Raises NoFit when even the required rows do not fit.
    """
    gap = round(c.fs * 0.55)
    rows = list(rows)

    def total() -> int:
        return sum(r.height for r in rows) + gap * (len(rows) - 1)

    while total() > room:
        optional = [i for i, r in enumerate(rows) if r.optional]
        if not optional:
            raise NoFit("required rows do not fit")
        del rows[optional[-1]]
    # Spread some of the spare room between rows so bigger screens breathe.
    if len(rows) > 1:
        gap += min((room - total()) // (len(rows) - 1), round(c.fs * c.rng.uniform(0.2, 0.9)))
    return rows, gap, total()


def draw_rows(rows: list[Row], gap: int, top: int) -> None:
    y = top
    for row in rows:
        row.draw(y)
        y += row.height + gap


def stack_rows(c: Canvas, rows: list[Row], top: int, bottom: int, centre: bool = False) -> None:
    """Fit ``rows`` between ``top`` and ``bottom`` (see plan_rows) and draw them."""
    rows, gap, height = plan_rows(c, rows, bottom - top)
    draw_rows(rows, gap, top + (bottom - top - height) // 2 if centre else top)


def sample_fitting(rng: random.Random, pool: Sequence[str], k: int, fits: Callable[[str], bool]) -> list[str]:
    candidates = [s for s in pool if fits(s)]
    return rng.sample(candidates, min(k, len(candidates)))


def column(c: Canvas, lo: float, hi: float) -> tuple[int, int]:
    """A content column ``fs * U(lo, hi)`` wide (capped by the image), centred or left."""
    width = min(c.w - 2 * c.margin, round(c.fs * c.rng.uniform(lo, hi)))
    x = (c.w - width) // 2 if c.rng.random() < 0.7 else c.margin
    return x, width


def button_row(c: Canvas, x: int, y: int, width: int, labels: Sequence[str], align: str) -> None:
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


def buttons_fit(c: Canvas, labels: Sequence[str], width: int) -> bool:
    return sum(c.button_w(s) for s in labels) + round(c.fs * 0.6) * (len(labels) - 1) <= width
