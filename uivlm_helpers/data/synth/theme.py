"""Colour themes of the synthetic screens: a light and a dark palette, drawn per screen."""

from __future__ import annotations

import random
from dataclasses import dataclass

THEMES = ("light", "dark")

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Theme:
    """The colours one screen is drawn with (every widget on it uses these)."""

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


def make_theme(rng: random.Random, name: str) -> Theme:
    """Draw the colours of one ``name`` ("light" or "dark") screen: a slight tint, greys and an accent."""
    tint = (rng.randint(-4, 0), rng.randint(-3, 0), rng.randint(0, 4))  # slight cool/warm cast
    if name == "light":
        accent = rng.choice(_ACCENTS_LIGHT)
        return Theme(
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
        return Theme(
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
