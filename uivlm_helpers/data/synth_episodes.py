"""Synthetic multi-step episodes in which only the history tells the next step.

Each episode is one screen of 3-5 large buttons (:func:`.synth_tasks.generate_box_screen`) and one
instruction naming two of them by place, in order: "Click the leftmost element, then the topmost
element". The screen does not change between the steps, and both steps carry the same screenshot and the
same instruction, so a model that sees no history gets the same input twice: it can click the first named
button or the second, and is right on at most one of the two steps (the history-blind baseline: 50% step
accuracy, 0% episode success). The history - "Previous actions: none" at the first step, the first click
at the second - is the only thing that tells the steps apart.

The place words are the ones the shipped base learned (``leftmost``, ``topmost``), in either order, and
the two named buttons are always different ones, each clearly beyond the others in its direction.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from .schema import UIRecord, write_records
from .synth_tasks import BASE_PLACES, generate_box_screen

#: ``data.source`` of the synthetic multi-step task.
EPISODES_SOURCE = "episodes"
#: The records' ``source``.
EPISODE_RECORD_SOURCE = "synthetic-episode"
#: Pixels the named button must lie beyond every other in its direction (as the single-step task).
CLEAR_MARGIN = 24
_AXES = {"leftmost": (0, min), "topmost": (1, min), "rightmost": (0, max), "bottom": (1, max)}


def _extreme(widgets, word: str) -> int | None:
    """The widget clearly beyond all others in ``word``'s direction, or None."""
    axis, pick = _AXES[word]
    centres = [w.centre[axis] for w in widgets]
    best = pick(range(len(widgets)), key=lambda i: centres[i])
    others = [c for i, c in enumerate(centres) if i != best]
    if others and min(abs(centres[best] - c) for c in others) >= CLEAR_MARGIN:
        return best
    return None


def episode_example(split: str, seed: int, index: int, image_size: tuple[int, int] = (224, 224),
                    places: Sequence[str] = BASE_PLACES, n_boxes: tuple[int, int] = (3, 5)) -> dict:
    """Episode ``index`` of ``(split, seed)``: ``{"image", "instruction", "steps": [(word, widget)...]}``.

    The same arguments always give the same episode. ``places``: the words named, in a random order
    (two of them per episode).
    """
    if len(places) < 2 or any(p not in _AXES for p in places):
        raise ValueError(f"places: expected two or more of {list(_AXES)}, got {list(places)}")
    rng = random.Random(f"episodes/{split}/{seed}/{index}")
    for _ in range(200):
        screen = generate_box_screen(rng, image_size, n_boxes=n_boxes)
        words = rng.sample(list(places), 2)
        targets = [_extreme(screen.widgets, w) for w in words]
        if None in targets or targets[0] == targets[1]:
            continue
        instruction = f"Click the {words[0]} element, then the {words[1]} element"
        return {"image": screen.image, "instruction": instruction,
                "steps": [(word, screen.widgets[t]) for word, t in zip(words, targets)]}
    raise ValueError(f"no screen in 200 draws has distinct, clear {list(places)} buttons")


def generate_episode_records(n_episodes: int, seed: int, out_dir: str | Path, split: str = "train",
                             image_size: tuple[int, int] = (224, 224),
                             places: Sequence[str] = BASE_PLACES) -> Path:
    """Write ``n_episodes`` two-step episodes as a dataset folder (``<split>.jsonl`` + ``images/``).

    Both steps of an episode share its screenshot file and instruction; the second step's ``history`` is
    the first step's click and its ``history_images`` the (unchanged) screenshot.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(n_episodes):
        episode = episode_example(split, seed, index, image_size, places)
        episode_id = f"{EPISODES_SOURCE}-{split}-{index:06d}"
        relative = f"images/{episode_id}.png"
        episode["image"].save(out / relative, format="PNG")
        history: list[dict] = []
        for step, (_, widget) in enumerate(episode["steps"]):
            x, y = widget.centre
            action = {"type": "click", "x": x, "y": y}
            records.append(UIRecord(
                id=f"{episode_id}-{step}", image=relative, image_size=list(episode["image"].size),
                instruction=episode["instruction"], action=action, bbox=list(widget.bbox),
                element_type=widget.kind, source=EPISODE_RECORD_SOURCE, platform=None,
                history=list(history), split=split, episode_id=episode_id, step=step,
                history_images=[relative] * step, base_dir=out))
            history.append(action)
    return write_records(records, out / f"{split}.jsonl")


def make_episode_splits(out_dir: str | Path, seed: int = 0, n_train: int = 500, n_eval: int = 50,
                        image_size: tuple[int, int] = (224, 224)) -> dict[str, Path]:
    """A train and a test split of ``n_train`` / ``n_eval`` episodes (two records each) in ``out_dir``."""
    return {split: generate_episode_records(n, seed, out_dir, split, image_size)
            for split, n in (("train", n_train), ("test", n_eval))}
