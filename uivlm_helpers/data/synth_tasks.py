"""Task screens: a few large, coloured widgets and instructions from chosen *families*.

:mod:`.synth` draws realistic layouts (login forms, settings lists...) with small text, which a tiny
model cannot learn to read in minutes. This module draws an easier screen style with the same
drawing primitives (``synth.Canvas``): 3-6 widgets of mixed kinds (buttons, text fields, links,
checkboxes, icons) at random non-overlapping places, each in its own colour from :data:`PALETTE`,
with labels in a 13-16 px font. The target is named by one instruction *family*:

=============  =====================================================================================
``label``      its text or icon name: "Click the Save button", "Check the Wi-Fi box", "Click 'Help'"
``kind``       its kind, when it is the only one of that kind: "Click the checkbox"
``position``   its place: "Click the second button", "Click the topmost element"
``extreme``    only its place beyond all the others: "Click the leftmost element", "Click the bottom element"
``colour``     its colour: "Click the red button" (several buttons share the screen),
               "Click the green one" (colour alone)
=============  =====================================================================================

Two easier screen styles serve the pretraining curriculum (``recipes/pretrain.py``):
:func:`generate_box_screen` draws one large filled button, or 3-5 large buttons of different colours.
The shipped base (``models/tiny-qwen2-vl-ui``) first learned to point at buttons named by
:data:`BASE_COLOURS`, then to follow the place words :data:`BASE_PLACES`; the default workbook run
fine-tunes it to follow :data:`NEW_PLACES`, words it never read, on screens where each of them names a
different button (``min_candidates=2``, ``run_data.task_spec("tasks")``). The background is a soft
colour wash that codes position (see :func:`_wash`).

Everything is a pure function of the seed (string-seeded ``random.Random`` per screen), like
:mod:`.synth`: the same arguments give byte-identical screens and identical records.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from . import synth
from .schema import UIRecord, write_records
from .synth import ICON_NAMES, ICON_WORDS, TARGET_KINDS, Widget, candidate_instructions

__all__ = [
    "FAMILIES", "FINETUNE_FAMILIES", "NEW_PLACES", "PALETTE", "PLACES", "PRETRAIN_FAMILIES", "TaskScreen", "family_instructions",
    "generate_box_screen",
    "generate_task_records", "generate_task_screen", "make_task_splits", "nameable_targets", "pick_task_target",
    "task_example",
]

#: Widget colours and the words instructions use for them (hues far apart; white text stays readable).
PALETTE = {
    "red": (210, 35, 35),
    "orange": (224, 110, 0),
    "green": (22, 135, 55),
    "blue": (30, 90, 225),
    "purple": (130, 50, 200),
    "pink": (215, 40, 140),
}
FAMILIES = ("label", "kind", "position", "colour", "extreme")
#: Colours whose names the pretrained base learns, and the ones the default fine-tune teaches it.
BASE_COLOURS = ("red", "green", "blue")
NEW_COLOURS = ("orange", "purple", "pink")
#: The words of ``extreme`` instructions; the shipped base learned the first two, the default fine-tune
#: teaches the other two.
PLACES = ("leftmost", "topmost", "rightmost", "bottom")
BASE_PLACES = ("leftmost", "topmost")
NEW_PLACES = ("rightmost", "bottom")
#: The generator's default families (reading labels, kinds and places), and the colour family alone.
PRETRAIN_FAMILIES = ("label", "kind", "position")
FINETUNE_FAMILIES = ("colour",)

LABELS = {
    "button": ("Save", "Cancel", "OK", "Submit", "Delete", "Next", "Back", "Open", "Edit", "Send", "Share",
               "Print", "Done", "Apply", "Close", "Log in"),
    "text_field": ("Email", "Password", "Search", "Username", "Name", "Phone", "City", "Address"),
    "link": ("Help", "Privacy", "Terms", "Learn more", "Sign up", "Contact us", "Settings", "About"),
    "checkbox": ("Remember me", "Dark mode", "Wi-Fi", "Bluetooth", "Sound", "Location", "Sync", "Alerts"),
    "icon": ICON_NAMES,
}
_NOUN = {"button": "button", "text_field": "text field", "link": "link", "checkbox": "checkbox", "icon": "icon"}
_ORDINAL_WORDS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "last")
_BACKGROUNDS = ((255, 255, 255), (246, 247, 249), (240, 244, 250), (250, 247, 240), (243, 246, 243))
_GAP = 6  # least free space between two widgets, pixels


def _wash(image: Image.Image, dark: bool, rng: random.Random) -> None:
    """Paint the background as a soft two-axis colour wash: red fades from top to bottom, blue from
    left to right (light screens; the reverse ramps on dark ones).

    Qwen2-VL's vision tower has no absolute position embedding (2-D rotary only), so a model trained
    from random weights has to discover where on the screen a patch is; the wash makes every patch's
    background colour say it, which is what lets a tiny model learn to point in minutes.
    """

    width, height = image.size
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    jitter = rng.uniform(-4, 4)
    pixels = np.empty((height, width, 3), dtype=np.float32)
    if dark:
        pixels[..., 0] = 22 + 70 * ys + jitter
        pixels[..., 1] = 26 + 0 * xs + jitter
        pixels[..., 2] = 22 + 70 * xs + jitter
    else:
        pixels[..., 0] = 252 - 70 * ys + jitter
        pixels[..., 1] = 248 + 0 * xs + jitter
        pixels[..., 2] = 252 - 70 * xs + jitter
    image.paste(Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "RGB"))


def _blank_canvas(rng: random.Random, image_size, dark_rate: float, wash: bool, font_sizes):
    """A light (one of :data:`_BACKGROUNDS`) or dark canvas, washed when ``wash``."""
    dark = rng.random() < dark_rate
    theme = synth.make_theme(rng, "dark" if dark else "light")
    if not dark:
        theme = dataclasses.replace(theme, bg=rng.choice(_BACKGROUNDS))
    c = synth.Canvas(rng, image_size, theme, rng.choice(tuple(font_sizes)))
    if wash:
        _wash(c.img, dark, rng)
    return c


def _free_place(rng: random.Random, boxes, w: int, h: int, image_size, margin: int):
    """A ``w`` x ``h`` box at a random place at least :data:`_GAP` from ``boxes`` (80 tries; None)."""
    width, height = image_size
    for _ in range(80):
        x = rng.randint(margin, width - margin - w)
        y = rng.randint(margin, height - margin - h)
        if all(x + w + _GAP <= b[0] or b[2] + _GAP <= x or y + h + _GAP <= b[1] or b[3] + _GAP <= y
               for b in boxes):
            return x, y, x + w, y + h
    return None


@dataclasses.dataclass(frozen=True)
class TaskScreen:
    """One drawn task screen: the image, its widgets and each widget's colour name (same order)."""

    image: Image.Image
    widgets: tuple[Widget, ...]
    colours: tuple[str, ...]


def _screen_rng(split: str, seed: int, index: int) -> random.Random:
    return random.Random(f"uivlm-synth-tasks/{split}/{seed}/{index}")


def _size(c, kind: str, label: str, rng: random.Random) -> tuple[int, int]:
    if kind == "button":
        return c.button_w(label) + rng.choice((0, 0, 8, 16)), c.button_h
    if kind == "text_field":
        low = c.text_w(label) + 2 * c.pad_x
        return max(low, round(c.w * rng.uniform(0.32, 0.55))), round(c.fs * 2.2)
    if kind == "link":
        return c.text_w(label), c.line_h + 1
    if kind == "checkbox":
        return c.checkbox_w(label), max(round(c.fs * 1.1), c.line_h) + 1
    side = round(c.fs * rng.uniform(1.9, 2.5))
    return side, side


def _draw(c, kind: str, label: str, colour: tuple[int, int, int], box, rng: random.Random) -> Widget:
    """Draw one widget in ``colour`` with synth's primitives at ``box`` (x1, y1, x2, y2)."""
    x1, y1, x2, y2 = box
    base = c.theme
    c.theme = dataclasses.replace(base, accent=colour, link=colour, border=colour, on_accent=(255, 255, 255))
    try:
        if kind == "button":
            widget = c.button(x1, y1, label, width=x2 - x1, style=rng.choice(("filled", "filled", "outline")))
        elif kind == "text_field":
            widget = c.text_field(x1, y1, x2 - x1, label, label)
            c.rrect((x1 + 1, y1 + 1, x2 - 1, y2 - 1), None, colour, width=1, radius=min(c.radius, 6))
        elif kind == "link":
            widget = c.link(x1, y1 + (y2 - y1 - 1) // 2, label)
        elif kind == "checkbox":
            widget = c.checkbox(x1, y1 + (y2 - y1 - 1) // 2, label, rng.random() < 0.4)
        else:
            plate = colour if rng.random() < 0.35 else None
            glyph = (255, 255, 255) if plate else colour
            widget = c.icon(x1, y1, x2 - x1, label, glyph, base.bg, plate=plate)
    finally:
        c.theme = base
    return dataclasses.replace(widget, colour=colour)


def generate_task_screen(rng: random.Random, image_size: tuple[int, int] = (224, 224),
                         n_widgets: tuple[int, int] = (3, 5), kinds: Sequence[str] = TARGET_KINDS,
                         font_sizes: Sequence[int] = (13, 14, 15, 16), dark_rate: float = 0.2,
                         wash: bool = True) -> TaskScreen:
    """Draw one task screen.

    Args:
        rng: source of all randomness.
        image_size: ``(width, height)``, at least 160 each.
        n_widgets: inclusive range of the number of widgets (at most one per palette colour). Task
            screens have 3 or more; fewer (down to 1) are for the first stage of a curriculum.
        kinds: widget kinds to draw from (at least two).
        font_sizes: label font sizes to choose from (one per screen).
        dark_rate: share of screens on a dark background.
        wash: paint the background as a position-coding colour wash (:func:`_wash`); False gives
            plain backgrounds.

    Returns:
        A :class:`TaskScreen`: every widget is a target (no static text), of two or more kinds, each in
        a different colour, none overlapping.
    """
    low, high = n_widgets
    if not 1 <= low <= high <= len(PALETTE):
        raise ValueError(f"n_widgets must satisfy 1 <= low <= high <= {len(PALETTE)}, got {n_widgets}")
    kinds = list(kinds)
    if len(set(kinds)) < 2 or not set(kinds) <= set(TARGET_KINDS):
        raise ValueError(f"kinds: at least two of {TARGET_KINDS}, got {kinds}")
    if min(image_size) < 160:
        raise ValueError(f"image_size must be at least 160x160, got {image_size}")
    width, height = image_size
    for _ in range(100):
        c = _blank_canvas(rng, image_size, dark_rate, wash, font_sizes)
        n = rng.randint(low, high)
        chosen = rng.sample(kinds, min(n, 2)) + [rng.choice(kinds) for _ in range(n - 2)]
        rng.shuffle(chosen)
        colours = rng.sample(list(PALETTE), n)
        pools = {k: rng.sample(LABELS[k], len(LABELS[k])) for k in sorted(set(chosen))}  # not hash order
        labels = [pools[k].pop() for k in chosen]
        margin = max(4, round(min(image_size) * 0.04))
        boxes: list[tuple[int, int, int, int]] = []
        for kind, label in zip(chosen, labels):
            w, h = _size(c, kind, label, rng)
            if w > width - 2 * margin:
                break
            box = _free_place(rng, boxes, w, h, image_size, margin)
            if box is None:
                break
            boxes.append(box)
        if len(boxes) < n:
            continue  # did not fit: new size, new places
        widgets = [_draw(c, k, lab, PALETTE[col], box, rng) for k, lab, col, box in zip(chosen, labels, colours, boxes)]
        return TaskScreen(c.img, tuple(widgets), tuple(colours))
    raise ValueError(f"could not place {n_widgets} widgets on a {image_size} screen")


def generate_box_screen(rng: random.Random, image_size: tuple[int, int] = (224, 224),
                        colours: Sequence[str] | None = None, dark_rate: float = 0.2,
                        wash: bool = True, n_boxes: tuple[int, int] = (1, 1)) -> TaskScreen:
    """Large filled buttons in different palette colours, labels in white: the easy end of a pointing
    curriculum, where colour is what tells the widgets apart.

    One box is a fifth to a half of the width and an eighth to a quarter of the height (the first
    stage: the only thing to learn is where the one salient thing is); several are a sixth to a third
    by a tenth to a sixth, never overlapping.

    Args:
        colours: colours a single box may have (None: any); with several boxes every palette colour
            can appear (restrict the *named* colour with :func:`pick_task_target`'s ``colours``).
        n_boxes: inclusive range of the number of boxes.
    """
    width, height = image_size
    low, high = n_boxes
    if not 1 <= low <= high <= len(PALETTE):
        raise ValueError(f"n_boxes must satisfy 1 <= low <= high <= {len(PALETTE)}, got {n_boxes}")
    margin = max(4, round(min(image_size) * 0.04))
    for _ in range(100):
        c = _blank_canvas(rng, image_size, dark_rate, wash, (13, 14, 15, 16))
        n = rng.randint(low, high)
        names = [rng.choice(list(colours or PALETTE))] if n == 1 else rng.sample(list(PALETTE), n)
        labels = rng.sample(LABELS["button"], n)
        boxes: list[tuple[int, int, int, int]] = []
        for _ in range(n):
            if n == 1:
                w, h = rng.randint(width // 5, width // 2), rng.randint(height // 8, height // 4)
            else:
                w, h = rng.randint(width // 6, width // 3), rng.randint(height // 10, height // 6)
            w = min(width - 2 * margin, max(w, c.text_w(labels[len(boxes)]) + 12))  # the label fits
            box = _free_place(rng, boxes, w, h, image_size, margin)
            if box is None:
                break
            boxes.append(box)
        if len(boxes) < n:
            continue
        widgets = []
        for name, label, (x1, y1, x2, y2) in zip(names, labels, boxes):
            c.rrect((x1, y1, x2, y2), PALETTE[name], None)
            c.draw.text(((x1 + x2) / 2, (y1 + y2) / 2), label, font=c.font(), fill=(255, 255, 255), anchor="mm")
            widgets.append(Widget("button", label, (x1, y1, x2, y2), PALETTE[name]))
        return TaskScreen(c.img, tuple(widgets), tuple(names))
    raise ValueError(f"could not place {n_boxes} boxes on a {image_size} screen")


def _extremes(widgets: Sequence[Widget]) -> dict[int, list[str]]:
    """"Click the topmost element"-style instructions for widgets clearly beyond all others."""
    found: dict[int, list[str]] = {}
    if len(widgets) < 2:
        return found
    tests = [("topmost", lambda w: w.centre[1], min), ("bottom", lambda w: w.centre[1], max),
             ("leftmost", lambda w: w.centre[0], min), ("rightmost", lambda w: w.centre[0], max)]
    for word, key, pick in tests:
        values = sorted(key(w) for w in widgets)
        best = pick(range(len(widgets)), key=lambda i: key(widgets[i]))
        runner_up = values[1] if pick is min else values[-2]
        if abs(key(widgets[best]) - runner_up) >= 24:
            found.setdefault(best, []).append(f"Click the {word} element")
    return found


def family_instructions(screen: TaskScreen) -> dict[str, dict[int, list[str]]]:
    """Unambiguous instructions per family: ``{family: {widget index: [instruction, ...]}}``."""
    widgets, colours = screen.widgets, screen.colours
    named = candidate_instructions(widgets)
    is_positional = lambda s: any(f" {o} " in s for o in _ORDINAL_WORDS)  # noqa: E731
    out: dict[str, dict[int, list[str]]] = {f: {} for f in FAMILIES}
    for i, texts in named.items():
        label = [s for s in texts if not is_positional(s)]
        position = [s for s in texts if is_positional(s)]
        if label:
            out["label"][i] = label
        if position:
            out["position"].setdefault(i, []).extend(position)
    for i, texts in _extremes(widgets).items():
        out["position"].setdefault(i, []).extend(texts)
        out["extreme"][i] = list(texts)
    counts = {k: sum(w.kind == k for w in widgets) for k in TARGET_KINDS}
    for i, w in enumerate(widgets):
        noun = _NOUN[w.kind]
        if counts[w.kind] == 1:
            out["kind"][i] = [f"Click the {noun}", f"Tap the {noun}", f"Click the only {noun}"]
        colour = colours[i]
        if counts[w.kind] >= 2:
            out["colour"][i] = [f"Click the {colour} {noun}", f"Tap the {colour} {noun}"]
        else:
            out["colour"][i] = [f"Click the {colour} one", f"Click the {colour} element"]
    return {f: found for f, found in out.items() if found}


def nameable_targets(screen: TaskScreen, colours: Sequence[str] | None = None,
                     places: Sequence[str] | None = None) -> dict[str, dict[int, list[str]]]:
    """:func:`family_instructions` with ``colour`` instructions limited to ``colours`` and ``extreme``
    instructions to the place words ``places`` (None: any).

    The widgets listed under a family are every widget an instruction of that family can name on this
    screen: a policy that ignores the instruction's words can do no better than pick one of them.
    """
    available = family_instructions(screen)
    if colours is not None and "colour" in available:
        available["colour"] = {i: t for i, t in available["colour"].items() if screen.colours[i] in colours}
        if not available["colour"]:
            del available["colour"]
    if places is not None and "extreme" in available:
        named = {i: [t for t in texts if any(f" {w} " in t for w in places)] for i, texts in available["extreme"].items()}
        available["extreme"] = {i: texts for i, texts in named.items() if texts}
        if not available["extreme"]:
            del available["extreme"]
    return available


def pick_task_target(rng: random.Random, screen: TaskScreen, families: Sequence[str] = PRETRAIN_FAMILIES,
                     weights: Sequence[float] | None = None,
                     colours: Sequence[str] | None = None,
                     places: Sequence[str] | None = None) -> tuple[int, str, str]:
    """Choose a family (among those with an instruction on this screen), a target and an instruction.

    Args:
        colours: the colours a ``colour`` instruction may name (None: any); widgets of other colours
            stay on the screen as distractors.
        places: the words an ``extreme`` instruction may use (None: any of :data:`PLACES`).

    Returns:
        ``(widget index, instruction, family)``.
    """
    _check_task_words(families, colours, places)
    return _choose_target(rng, nameable_targets(screen, colours, places), families, weights)


def _check_task_words(families: Sequence[str], colours: Sequence[str] | None,
                      places: Sequence[str] | None = None) -> None:
    unknown = set(families) - set(FAMILIES)
    if unknown or not families:
        raise ValueError(f"families: choose from {FAMILIES}, got {list(families)}")
    if colours is not None and (not colours or not set(colours) <= set(PALETTE)):
        raise ValueError(f"colours: choose from {list(PALETTE)}, got {list(colours)}")
    if places is not None and (not places or not set(places) <= set(PLACES)):
        raise ValueError(f"places: choose from {list(PLACES)}, got {list(places)}")


def _choose_target(rng: random.Random, available: dict[str, dict[int, list[str]]], families: Sequence[str],
                   weights: Sequence[float] | None) -> tuple[int, str, str]:
    """:func:`pick_task_target`'s choice among ``available`` (:func:`nameable_targets` of the screen)."""
    weights = list(weights) if weights is not None else [1.0] * len(families)
    options = [(f, wt) for f, wt in zip(families, weights) if f in available and wt > 0]
    if not options:
        raise ValueError(f"no widget on this screen can be named by {list(families)}")
    family = rng.choices([f for f, _ in options], [wt for _, wt in options])[0]
    index = rng.choice(sorted(available[family]))
    return index, rng.choice(available[family][index]), family


def task_example(split: str, seed: int, index: int, families: Sequence[str] = PRETRAIN_FAMILIES,
                 weights: Sequence[float] | None = None, image_size: tuple[int, int] = (224, 224),
                 n_widgets: tuple[int, int] = (3, 5), id_prefix: str = "task",
                 colours: Sequence[str] | None = None, box: bool = False,
                 boxes: bool = False, places: Sequence[str] | None = None, min_candidates: int = 1) -> dict:
    """One example as the plain record dict the collator and the evaluation use (image in memory).

    Example ``index`` of ``(split, seed)`` is the same whatever else is generated, so a dataset can
    draw examples lazily (in dataloader workers) and stay reproducible. A screen on which no widget
    can be named as asked (e.g. none in ``colours``) is drawn again from the same random stream.
    ``box``: one large button (:func:`generate_box_screen`) instead of ``n_widgets`` widgets;
    ``boxes``: ``n_widgets`` large buttons of different colours; ``places``: the words ``extreme``
    instructions may use (None: any); ``min_candidates``: draw again until the chosen family can name at
    least this many widgets on the screen, so that only the instruction's words tell the target from
    the others (with 2, a policy that ignores the words scores at most 50%).
    """
    _check_task_words(families, colours, places)
    if min_candidates < 1:
        raise ValueError(f"min_candidates: expected >= 1, got {min_candidates}")
    rng = _screen_rng(split, seed, index)
    for _ in range(200):
        if box or boxes:
            screen = generate_box_screen(rng, image_size, colours, n_boxes=(1, 1) if box else n_widgets)
        else:
            screen = generate_task_screen(rng, image_size, n_widgets=n_widgets)
        available = nameable_targets(screen, colours, places)  # the target's family also names its distractors
        try:
            target, instruction, family = _choose_target(rng, available, families, weights)
        except ValueError as err:
            if "can be named" not in str(err):
                raise
            continue
        if len(available[family]) >= min_candidates:
            break
    else:
        raise ValueError(f"no screen in 200 draws has {min_candidates} or more widgets that {list(families)} "
                         f"with colours {colours} and places {places} can name")
    widget = screen.widgets[target]
    x, y = widget.centre
    others = sorted(set(available[family]) - {target})
    return {"id": f"{id_prefix}-{split}-{index:06d}", "image": screen.image, "instruction": instruction,
            "action": {"type": "click", "x": x, "y": y}, "bbox": list(widget.bbox),
            "element_type": widget.kind, "source": f"synthetic-{family}", "platform": None,
            "image_size": list(screen.image.size), "family": family, "colour": screen.colours[target],
            "distractors": [list(screen.widgets[i].bbox) for i in others]}


def generate_task_records(n: int, seed: int, out_dir: str | Path, split: str = "train",
                          families: Sequence[str] = PRETRAIN_FAMILIES, weights: Sequence[float] | None = None,
                          image_size: tuple[int, int] = (224, 224), n_widgets: tuple[int, int] = (3, 5),
                          id_prefix: str = "task", colours: Sequence[str] | None = None,
                          boxes: bool = False, places: Sequence[str] | None = None,
                          min_candidates: int = 1) -> Path:
    """Write ``n`` task examples as a dataset folder (``<split>.jsonl`` + ``images/``), like
    :func:`.synth.generate_records`; ``source`` is ``synthetic-<family>``."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        ex = task_example(split, seed, i, families, weights, image_size, n_widgets, id_prefix, colours,
                          boxes=boxes, places=places, min_candidates=min_candidates)
        relative = f"images/{ex['id']}.png"
        ex["image"].save(out / relative, format="PNG")
        records.append(UIRecord(id=ex["id"], image=relative, image_size=ex["image_size"],
                                instruction=ex["instruction"], action=ex["action"], bbox=ex["bbox"],
                                element_type=ex["element_type"], source=ex["source"], platform=None,
                                history=[], split=split, distractors=ex["distractors"], base_dir=out))
    return write_records(records, out / f"{split}.jsonl")


def make_task_splits(out_dir: str | Path, seed: int = 0, n_train: int = 500, n_eval: int = 100,
                     image_size: tuple[int, int] = (224, 224), families: Sequence[str] = FINETUNE_FAMILIES,
                     n_widgets: tuple[int, int] = (4, 6), weights: Sequence[float] | None = None,
                     colours: Sequence[str] | None = None, boxes: bool = False,
                     places: Sequence[str] | None = None, min_candidates: int = 1) -> dict[str, Path]:
    """A train and a test split of task screens in ``out_dir`` (the workbook's data step).

    The defaults: colour instructions on screens of 4-6 widgets. The workbook's default fine-tune task
    (place words on 3-5 large buttons) passes its own arguments (``run_data.task_spec``).
    """
    return {split: generate_task_records(n, seed, out_dir, split, families, weights, image_size, n_widgets,
                                         colours=colours, boxes=boxes, places=places,
                                         min_candidates=min_candidates)
            for split, n in (("train", n_train), ("test", n_eval))}
