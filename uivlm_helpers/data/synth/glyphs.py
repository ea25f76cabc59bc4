"""Icon glyphs: the icons a screen can show, the words that name each, and how each is drawn."""

from __future__ import annotations

import math

from PIL import ImageDraw

from .theme import RGB

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


def draw_glyph(draw: ImageDraw.ImageDraw, name: str, box: tuple[float, float, float, float], c: RGB, bg: RGB) -> None:
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
