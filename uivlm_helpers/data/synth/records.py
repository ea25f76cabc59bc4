"""Screens and dataset files: one screen from a random stream, records written as a dataset folder, splits."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ..schema import UIRecord, write_records
from .canvas import Canvas, MIN_FONT, NoFit, TARGET_KINDS, Widget
from .layouts import LAYOUTS, LAYOUT_FUNCS, PLATFORM_BY_LAYOUT
from .theme import THEMES, make_theme
from .wording import pick_target

_BASE_SIZE = 224  # the image side the layouts were designed at


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
    if layout not in LAYOUT_FUNCS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    theme_obj = make_theme(rng, theme or rng.choice(THEMES))
    fs = max(MIN_FONT, round(11 * math.sqrt(min(width, height) / _BASE_SIZE)) + rng.choice((-1, 0, 0, 1)))
    # Draw; if the random choices do not fit, retry (smaller font first).
    for attempt in range(12):
        canvas = Canvas(rng, (width, height), theme_obj, max(MIN_FONT, fs - attempt // 3))
        try:
            LAYOUT_FUNCS[layout](canvas)
        except NoFit:
            continue
        targets = [w for w in canvas.widgets if w.kind in TARGET_KINDS]
        if len(targets) >= 3 and len({w.kind for w in targets}) >= 2:
            return canvas.img, canvas.widgets
    raise ValueError(f"could not fit layout {layout!r} into {image_size}; use a larger image_size")


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
