"""Instructions that name one widget unambiguously, and the choice of a screen's target and instruction."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence

from .canvas import TARGET_KINDS, Widget
from .glyphs import ICON_WORDS

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth")
_KIND_NOUN = {"button": "button", "text_field": "text field", "link": "link", "checkbox": "checkbox", "icon": "icon"}


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
        if len(order) > len(ORDINALS):
            continue
        for rank, i in enumerate(order):
            words = [ORDINALS[rank]] + (["last"] if rank == len(order) - 1 else [])
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
    positional = [s for s in candidates[index] if any(f" {o} " in s for o in ORDINALS + ("last",))]
    by_label = [s for s in candidates[index] if s not in positional]
    pool = positional if positional and (rng.random() < positional_rate or not by_label) else by_label
    return index, rng.choice(pool)
