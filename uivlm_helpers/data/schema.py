"""UI-grounding records: schema, validation, JSONL I/O and Hugging Face loading.

A dataset is a ``.jsonl`` file with one JSON object per line plus image files
stored next to it (``image`` paths are relative to the ``.jsonl`` file's
folder, so a dataset folder can be moved or zipped as a whole). One record is
one training/evaluation example: a screenshot, an instruction, and the single
next action that carries the instruction out::

    {"id": "synth-000001", "image": "images/synth-000001.png",
     "image_size": [224, 224], "instruction": "Click the Save button",
     "action": {"type": "click", "x": 112, "y": 40},
     "bbox": [90, 30, 134, 50], "element_type": "button",
     "source": "synthetic", "platform": "web", "history": [], "split": "train"}

All coordinates are screenshot pixels. ``bbox`` is ``[x1, y1, x2, y2]`` with
``x1 < x2`` and ``y1 < y2``, lying within ``[0, width] x [0, height]``.

An optional ``distractors`` list holds the boxes of the *other* elements on the
screen that an instruction of the same kind could have named (e.g. the other
coloured buttons when the instruction names a colour). Evaluation uses it to
tell instruction following from clicking any plausible element: it reports the
accuracy of an instruction-blind policy and how often a click lands on a
distractor. Absent (null) means "not recorded"; ``[]`` means "no other candidate".

Episodes. A multi-step task (AITW, AndroidControl, Mind2Web, MiniWoB++ demonstrations) is stored
as one record per step, tied together by ``episode_id`` and ``step`` (0-based position of the step
among the episode's records). ``history`` then holds the actions of the episode's earlier steps,
oldest first, and the optional ``history_images`` their screenshots (paths relative to the
``.jsonl`` folder, like ``image``; as many as ``history`` entries)::

    {"id": "aitw-ep1-2", ..., "history": [{"type": "click", "x": 51, "y": 320},
     {"type": "type", "text": "hotels in paris"}], "split": "train", "episode_id": "aitw-ep1",
     "step": 2, "history_images": ["images/general/ep1_0.png", "images/general/ep1_1.png"]}

The three keys are written only when set, so single-step datasets keep their exact bytes.
:func:`validate_episodes` checks that each episode's steps run 0..n-1 without gaps or repeats and
that every record's ``history`` (and ``history_images``) is exactly the actions (screenshots) of its
episode's earlier steps; :func:`read_records` and :func:`write_records` apply it, and
:func:`split_records` never cuts an episode in two.

Validation is strict on purpose: a bad record found while reading raises
:class:`RecordError` naming the file, the record number (= 1-based line
number, so an editor can jump to it), the field and what was expected. With
``strict=False`` bad records are skipped, but always with a warning and a
:class:`ReadReport` - never silently. A line that is not UTF-8 or not JSON is
such a bad record too.

Image paths must stay inside the dataset folder: a path that leaves it through
``..`` or through a symbolic link pointing elsewhere is refused
(:func:`resolve_inside`), so reading or copying a dataset never reads files
from outside it. Screenshots larger than :data:`MAX_IMAGE_PIXELS` are refused
before they are decoded (``max_pixels=`` changes the limit per call).

Action dicts are checked against :data:`ACTION_FIELDS`: the action types and
fields of :mod:`uivlm_helpers.core.actions` (the one action schema), each field
with the kind of value a record holds there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..core import actions as _actions

__all__ = [
    "ACTION_FIELDS",
    "MAX_IMAGE_PIXELS",
    "PLATFORMS",
    "SPLITS",
    "ReadReport",
    "RecordError",
    "RecordList",
    "SkippedRecordsWarning",
    "UIRecord",
    "image_file_size",
    "iter_jsonl",
    "load_dataset",
    "read_records",
    "record_from_row",
    "resolve_inside",
    "select_split",
    "split_records",
    "validate_action",
    "validate_episodes",
    "validate_record",
    "write_records",
]

SPLITS = ("train", "validation", "test")
PLATFORMS = ("web", "mobile", "desktop")
SCROLL_DIRECTIONS = _actions.SCROLL_DIRECTIONS

#: Largest screenshot (width x height) that validation accepts, unless a call passes ``max_pixels``.
#: An 8K screen (7680x4320) is 33.2 MP and two 5K screens side by side (10240x2880) 29.5 MP, so
#: 50 MP takes every real screen with room for tall full-page captures (1280 x 39,000), while one
#: decoded RGB image stays under 150 MB. Pillow's own guard only stops images above 179 MP.
MAX_IMAGE_PIXELS = 50_000_000

# The kind of value each action field holds in a record. "point" fields are x/y coordinates that
# must also lie inside the screenshot.
_FIELD_KINDS = {"x": "point_x", "y": "point_y", "x2": "point_x", "y2": "point_y", "text": "text", "key": "text",
                "direction": "direction", "amount": "number", "seconds": "number"}
#: Required fields per action type (core.actions.ACTION_FIELDS, in its order) -> kind of value.
ACTION_FIELDS: dict[str, dict[str, str]] = {
    kind: {name: _FIELD_KINDS[name] for name in names} for kind, names in _actions.ACTION_FIELDS.items()
}

# Keys a record may omit, with the value used instead. Everything else in the
# schema is required so that a typo in a converter fails loudly.
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "bbox": None,
    "element_type": None,
    "source": "unknown",
    "platform": None,
    "history": [],
    "split": "train",
    "distractors": None,
    "episode_id": None,
    "step": None,
    "history_images": [],
}
_REQUIRED_KEYS = ("id", "image", "image_size", "instruction", "action")
_ALL_KEYS = _REQUIRED_KEYS + tuple(_OPTIONAL_DEFAULTS)


class RecordError(ValueError):
    """A record does not match the schema.

    Attributes:
        where: Which record, e.g. ``"data/train.jsonl record 7"``.
        field: The offending field (``"action.x"``, ``"bbox"``...), or None
            when the whole line is unusable (malformed JSON).
        reason: What was expected and what was found.
    """

    def __init__(self, where: str, field: str | None, reason: str):
        self.where = where
        self.field = field
        self.reason = reason
        location = f"{where}: field '{field}'" if field else where
        super().__init__(f"{location}: {reason}")


class SkippedRecordsWarning(UserWarning):
    """Emitted when ``strict=False`` reading drops bad records."""


@dataclass
class UIRecord:
    """One example: screenshot + instruction -> next action.

    Attributes:
        id: Unique identifier within a dataset.
        image: Path to the screenshot (relative to ``base_dir`` when that is
            set, as in records read from a ``.jsonl`` file), or an in-memory
            ``PIL.Image`` for records built in code.
        image_size: ``[width, height]`` of the screenshot in pixels.
        instruction: What the user asked for, e.g. "Click the Save button".
        action: Target action as a seed-shaped dict, e.g.
            ``{"type": "click", "x": 112, "y": 40}`` (screenshot pixels).
        bbox: Target element box ``[x1, y1, x2, y2]`` in pixels, or None.
        element_type: Kind of target element ("button", "link"...), or None.
        source: Dataset or generator the record came from.
        platform: "web", "mobile", "desktop" or None.
        history: Previous actions in the episode (action dicts), oldest first.
        split: "train", "validation" or "test".
        distractors: Boxes of the other elements an instruction of the same
            kind could have named, or None when not recorded.
        episode_id: The episode (multi-step task) the record is a step of,
            or None for a single-step record.
        step: 0-based position of the record among its episode's records
            (set exactly when ``episode_id`` is).
        history_images: Screenshots of the episode's earlier steps, oldest
            first, one per ``history`` action (paths like ``image``, or
            ``PIL.Image`` objects for records built in code); empty when not
            recorded.
        base_dir: Folder that a relative ``image`` path is relative to. Not
            part of the schema (never serialised, ignored by ``==``).
    """

    id: str
    image: str | Image.Image
    image_size: list[int]
    instruction: str
    action: dict[str, Any]
    bbox: list[float] | None = None
    element_type: str | None = None
    source: str = "unknown"
    platform: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    split: str = "train"
    distractors: list[list[float]] | None = None
    episode_id: str | None = None
    step: int | None = None
    history_images: list[str | Image.Image] = field(default_factory=list)
    base_dir: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Normalise containers so records built from tuples compare equal to
        # records read back from JSON (which only has lists).
        self.image_size = list(self.image_size)
        if self.bbox is not None:
            self.bbox = list(self.bbox)
        self.action = dict(self.action)
        self.history = [dict(a) for a in self.history]
        if self.distractors is not None:
            self.distractors = [list(b) for b in self.distractors]
        if isinstance(self.image, Path):
            self.image = str(self.image)
        self.history_images = [str(p) if isinstance(p, Path) else p for p in self.history_images]

    @property
    def image_path(self) -> Path | None:
        """Absolute path of the screenshot, or None for in-memory images."""
        if isinstance(self.image, Image.Image):
            return None
        path = Path(self.image)
        if not path.is_absolute() and self.base_dir is not None:
            path = Path(self.base_dir) / path
        return path.resolve()

    @property
    def history_image_paths(self) -> list[Path | None]:
        """Absolute paths of the earlier screenshots (None for in-memory images), oldest first."""
        return [_absolute(value, self.base_dir) for value in self.history_images]

    def load_history_images(self) -> list[Image.Image]:
        """The earlier screenshots as RGB ``PIL.Image`` copies, oldest first."""
        images = []
        for value, path in zip(self.history_images, self.history_image_paths):
            if path is None:
                images.append(value.convert("RGB"))
            else:
                with Image.open(path) as img:
                    images.append(img.convert("RGB"))
        return images

    def to_json(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict in schema key order.

        Raises:
            TypeError: If the image is an in-memory ``PIL.Image``; use
                :func:`write_records`, which saves it to a file first.
        """
        if isinstance(self.image, Image.Image) or any(isinstance(p, Image.Image) for p in self.history_images):
            raise TypeError(
                f"record {self.id!r} holds an in-memory image; "
                "write_records() saves it to a file and stores the path"
            )
        return {
            "id": self.id,
            "image": self.image,
            "image_size": list(self.image_size),
            "instruction": self.instruction,
            "action": dict(self.action),
            "bbox": None if self.bbox is None else list(self.bbox),
            "element_type": self.element_type,
            "source": self.source,
            "platform": self.platform,
            "history": [dict(a) for a in self.history],
            "split": self.split,
            # Written only when recorded, so datasets without it keep their exact bytes.
            **({"distractors": [list(b) for b in self.distractors]} if self.distractors is not None else {}),
            **({"episode_id": self.episode_id} if self.episode_id is not None else {}),
            **({"step": self.step} if self.step is not None else {}),
            **({"history_images": list(self.history_images)} if self.history_images else {}),
        }

    def load_image(self) -> Image.Image:
        """Return the screenshot as an RGB ``PIL.Image`` (a fresh copy)."""
        if isinstance(self.image, Image.Image):
            return self.image.convert("RGB")
        with Image.open(self.image_path) as img:
            return img.convert("RGB")


def _absolute(value: str | Image.Image, base_dir: Path | None) -> Path | None:
    """The absolute path of an image value (relative to ``base_dir``), or None for an in-memory image."""
    if isinstance(value, Image.Image):
        return None
    path = Path(value)
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path.resolve()


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    # bool is an int subclass; True as a coordinate is always a bug.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def validate_action(
    action: Any, where: str, field_name: str = "action", image_size: Sequence[int] | None = None
) -> dict[str, Any]:
    """Check one action dict against :data:`ACTION_FIELDS`.

    Args:
        action: The candidate action dict.
        where: Record location used in error messages.
        field_name: Name of the field holding the action (for messages).
        image_size: ``(width, height)``; when given, points must lie inside.

    Returns:
        A shallow copy of the action.

    Raises:
        RecordError: On an unknown type, a missing/extra field or a bad value.
    """
    if not isinstance(action, Mapping):
        example = "{'type': 'click', 'x': 10, 'y': 20}"
        raise RecordError(where, field_name, f"expected an action object like {example}, got {action!r}")
    kind = action.get("type")
    if kind not in ACTION_FIELDS:
        raise RecordError(
            where, f"{field_name}.type", f"unknown action type {kind!r}; expected one of {sorted(ACTION_FIELDS)}"
        )
    spec = ACTION_FIELDS[kind]
    for name, value_kind in spec.items():
        fname = f"{field_name}.{name}"
        if name not in action:
            raise RecordError(where, fname, f"missing; a {kind!r} action needs fields {sorted(spec)}")
        value = action[name]
        if value_kind in ("point_x", "point_y", "number"):
            if not _is_number(value):
                raise RecordError(where, fname, f"expected a finite number, got {value!r}")
            if value_kind == "number" and value < 0:
                raise RecordError(where, fname, f"expected a number >= 0, got {value!r}")
            if value_kind != "number" and image_size is not None:
                limit = image_size[0] if value_kind == "point_x" else image_size[1]
                axis = "width" if value_kind == "point_x" else "height"
                if not 0 <= value < limit:
                    raise RecordError(
                        where,
                        fname,
                        f"point is outside the image: expected 0 <= {name} < {limit} (image {axis}), got {value!r}",
                    )
        elif value_kind == "text":
            if not _nonempty_str(value):
                raise RecordError(where, fname, f"expected a non-empty string, got {value!r}")
        elif value_kind == "direction":
            if value not in SCROLL_DIRECTIONS:
                raise RecordError(where, fname, f"expected one of {list(SCROLL_DIRECTIONS)}, got {value!r}")
    extra = sorted(set(action) - set(spec) - {"type"})
    if extra:
        reason = f"unexpected field for a {kind!r} action; allowed: {sorted(spec)}"
        raise RecordError(where, f"{field_name}.{extra[0]}", reason)
    return dict(action)


def resolve_inside(
    folder: str | Path, name: str | Path, where: str, field_name: str = "image", folder_kind: str = "the .jsonl folder"
) -> Path:
    """Resolve the relative path ``name`` against ``folder``, refusing any that ends up outside it.

    Symbolic links are followed, so both ``../elsewhere.png`` and a link inside the folder that
    points out of it are refused: a dataset never reads (or copies in) files from outside its
    folder. Links and ``..`` that stay inside are fine.

    Args:
        folder: The folder the path is relative to.
        name: The path as the record holds it.
        where: Record location for messages (file and record number).
        field_name: The field holding the path.
        folder_kind: How messages call ``folder`` ("the .jsonl folder", "the image root").

    Returns:
        The resolved, absolute path (the file itself need not exist).

    Raises:
        RecordError: If ``name`` is absolute or resolves outside ``folder``.
    """
    folder = Path(folder).resolve()
    if Path(name).is_absolute():
        raise RecordError(where, field_name, f"expected a path relative to {folder_kind}, got absolute path {str(name)!r}")
    try:
        path = (folder / name).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise RecordError(where, field_name, f"cannot resolve {str(name)!r} under {folder}: {exc}") from exc
    if not path.is_relative_to(folder):
        how = "through '..'" if ".." in Path(name).parts else "through a symbolic link"
        raise RecordError(
            where,
            field_name,
            f"expected a path inside {folder_kind} {folder}, but {str(name)!r} leads {how} to {path}; "
            "copy the file into the folder instead",
        )
    return path


def _too_many_pixels(width: int, height: int, limit: int) -> str | None:
    """The reason a ``width`` x ``height`` image is refused, or None when it is within ``limit``."""
    if width * height <= limit:
        return None
    return (
        f"expected at most {limit:,} pixels (max_pixels; default data.MAX_IMAGE_PIXELS), "
        f"got a {width}x{height} image = {width * height:,} pixels; downscale it or pass a larger max_pixels"
    )


def image_file_size(
    path: str | Path, where: str, *, field_name: str = "image", max_pixels: int | None = None, verify: bool = True
) -> tuple[int, int]:
    """Return the real ``(width, height)`` of an image file, reading its header only.

    Args:
        path: The image file.
        where: Record location for messages (file and record number).
        field_name: The field naming the file.
        max_pixels: Refuse images with more pixels (default :data:`MAX_IMAGE_PIXELS`), before
            anything is decoded.
        verify: Also walk the whole file (chunk CRCs for PNG), catching truncated or corrupt
            files that reading the header alone would accept.

    Raises:
        RecordError: If the file is missing, not an image PIL can read, or too large.
    """
    path = Path(path)
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if not path.is_file():
        raise RecordError(
            where,
            field_name,
            f"expected an existing image file (paths are relative to the .jsonl folder), but {path} does not exist",
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns above 89 MP; the limit below decides instead, with a message naming the record.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                size = img.size
                reason = _too_many_pixels(*size, limit)
                if reason is None and verify:
                    img.verify()
    except Image.DecompressionBombError as exc:
        # Pillow refuses to even open images above twice its MAX_IMAGE_PIXELS (179 MP by default).
        raise RecordError(
            where, field_name, f"expected at most {limit:,} pixels (max_pixels), but {path} is larger than Pillow "
            f"accepts: {exc}"
        ) from exc
    except Exception as exc:  # PIL raises many types for bad files
        raise RecordError(where, field_name, f"expected a readable image, but PIL cannot open {path}: {exc}") from exc
    if reason is not None:
        raise RecordError(where, field_name, f"{path.name}: {reason}")
    return size


def _check_image_size(path: Path, real: tuple[int, int], declared: Sequence[int], where: str) -> None:
    if list(real) != list(declared):
        reason = f"expected the real size of {path.name}, {list(real)}, got {list(declared)}"
        raise RecordError(where, "image_size", reason)


def _check_image_file(path: Path, image_size: Sequence[int], where: str, max_pixels: int | None) -> None:
    _check_image_size(path, image_file_size(path, where, max_pixels=max_pixels), image_size, where)


def _validate_box(box: Any, where: str, field_name: str, width: int, height: int, nullable: bool = False) -> list:
    """Check one ``[x1, y1, x2, y2]`` box: four numbers, ordered, inside the image."""
    is_box = isinstance(box, Sequence) and not isinstance(box, str) and len(box) == 4
    if not (is_box and all(map(_is_number, box))):
        expected = "[x1, y1, x2, y2] (four numbers)" + (" or null" if nullable else "")
        raise RecordError(where, field_name, f"expected {expected}, got {box!r}")
    x1, y1, x2, y2 = box
    if not (x1 < x2 and y1 < y2):
        raise RecordError(
            where,
            field_name,
            f"wrong coordinate order: expected [x1, y1, x2, y2] with x1 < x2 and y1 < y2, got {list(box)}",
        )
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise RecordError(
            where, field_name, f"box is outside the image: expected within [0, 0, {width}, {height}], got {list(box)}"
        )
    return list(box)


def validate_record(
    obj: Any,
    where: str,
    *,
    base_dir: str | Path | None = None,
    check_image: bool = False,
    max_pixels: int | None = None,
) -> UIRecord:
    """Validate one decoded JSON object and turn it into a :class:`UIRecord`.

    Args:
        obj: The decoded JSON object.
        where: Human-readable location for messages, e.g.
            ``"data/train.jsonl record 7"``.
        base_dir: Folder that the ``image`` path is relative to (the
            ``.jsonl`` file's folder). Stored on the returned record. When
            given, the path must resolve inside it (see :func:`resolve_inside`).
        check_image: Also check that the image file exists, can be decoded
            and has the declared ``image_size`` (needs ``base_dir``).
        max_pixels: Largest accepted ``image_size`` (width x height), and with
            ``check_image`` the largest real image; default :data:`MAX_IMAGE_PIXELS`.

    Returns:
        The validated record (optional keys filled with their defaults).

    Raises:
        RecordError: Naming ``where``, the field and what was expected.
    """
    if not isinstance(obj, Mapping):
        raise RecordError(where, None, f"expected a JSON object, got {type(obj).__name__}")
    for key in _REQUIRED_KEYS:
        if key not in obj:
            raise RecordError(where, key, "missing required field")
    unknown = sorted(set(obj) - set(_ALL_KEYS))
    if unknown:
        raise RecordError(where, unknown[0], f"unknown field; allowed fields are {list(_ALL_KEYS)}")
    values = {**_OPTIONAL_DEFAULTS, **obj}

    if not _nonempty_str(values["id"]):
        raise RecordError(where, "id", f"expected a non-empty string, got {values['id']!r}")
    image = values["image"]
    _check_relative_image(image, where, "image", base_dir)

    size = values["image_size"]
    if not (
        isinstance(size, Sequence)
        and not isinstance(size, str)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    ):
        raise RecordError(where, "image_size", f"expected [width, height] as two positive integers, got {size!r}")
    width, height = size
    too_large = _too_many_pixels(width, height, MAX_IMAGE_PIXELS if max_pixels is None else max_pixels)
    if too_large:
        raise RecordError(where, "image_size", too_large)

    if not _nonempty_str(values["instruction"]):
        raise RecordError(where, "instruction", f"expected a non-empty string, got {values['instruction']!r}")

    action = validate_action(values["action"], where, "action", image_size=size)

    bbox = values["bbox"]
    if bbox is not None:
        bbox = _validate_box(bbox, where, "bbox", width, height, nullable=True)

    for key in ("element_type", "platform"):
        if values[key] is not None and not _nonempty_str(values[key]):
            raise RecordError(where, key, f"expected a non-empty string or null, got {values[key]!r}")
    if values["platform"] is not None and values["platform"] not in PLATFORMS:
        raise RecordError(where, "platform", f"expected one of {list(PLATFORMS)} or null, got {values['platform']!r}")
    if not _nonempty_str(values["source"]):
        raise RecordError(where, "source", f"expected a non-empty string, got {values['source']!r}")
    if values["split"] not in SPLITS:
        raise RecordError(where, "split", f"expected one of {list(SPLITS)}, got {values['split']!r}")

    history = values["history"]
    if not isinstance(history, list):
        raise RecordError(where, "history", f"expected a list of action objects, got {history!r}")
    # Earlier actions happened on earlier screens, so their points are not
    # checked against this screenshot's size.
    history = [validate_action(a, where, f"history[{i}]") for i, a in enumerate(history)]

    distractors = values["distractors"]
    if distractors is not None:
        if not isinstance(distractors, list):
            raise RecordError(where, "distractors", f"expected a list of [x1, y1, x2, y2] boxes or null, got {distractors!r}")
        distractors = [_validate_box(b, where, f"distractors[{i}]", width, height) for i, b in enumerate(distractors)]

    episode_id, step = values["episode_id"], values["step"]
    if episode_id is not None and not _nonempty_str(episode_id):
        raise RecordError(where, "episode_id", f"expected a non-empty string or null, got {episode_id!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise RecordError(where, "step", f"expected an integer >= 0 (the step's 0-based position in its episode) "
                                         f"or null, got {step!r}")
    if step is not None and episode_id is None:
        raise RecordError(where, "step", f"step {step} is set without an episode_id; a step belongs to an episode")
    if episode_id is not None and step is None:
        raise RecordError(where, "step", f"missing for a record of episode {episode_id!r}; expected its 0-based "
                                         "position in the episode")

    history_images = values["history_images"]
    if not isinstance(history_images, list):
        raise RecordError(where, "history_images", f"expected a list of image paths, got {history_images!r}")
    if history_images and len(history_images) != len(history):
        raise RecordError(where, "history_images", f"expected one earlier screenshot per history action "
                                                   f"({len(history)}), got {len(history_images)}")
    for i, name in enumerate(history_images):
        _check_relative_image(name, where, f"history_images[{i}]", base_dir)

    record = UIRecord(
        id=values["id"],
        image=image,
        image_size=list(size),
        instruction=values["instruction"],
        action=action,
        bbox=None if bbox is None else list(bbox),
        element_type=values["element_type"],
        source=values["source"],
        platform=values["platform"],
        history=history,
        split=values["split"],
        distractors=distractors,
        episode_id=episode_id,
        step=step,
        history_images=list(history_images),
        base_dir=None if base_dir is None else Path(base_dir).resolve(),
    )
    if check_image:
        if base_dir is None:
            raise ValueError("check_image=True needs base_dir (the .jsonl file's folder)")
        _check_image_file(record.image_path, size, where, max_pixels)
        _check_history_files(record, where)
    return record


def _check_relative_image(name: Any, where: str, field_name: str, base_dir: str | Path | None) -> None:
    """An image path as a record holds it: a non-empty string, relative, inside the .jsonl folder."""
    if not _nonempty_str(name):
        raise RecordError(where, field_name, f"expected a non-empty path string, got {name!r}")
    if Path(name).is_absolute():
        raise RecordError(where, field_name, f"expected a path relative to the .jsonl folder, got absolute path {name!r}")
    if base_dir is not None:
        resolve_inside(base_dir, name, where, field_name)
    elif os.path.normpath(name).split(os.sep)[0] == "..":
        # Without the folder at hand only '..' can be checked; links are checked once base_dir is known.
        raise RecordError(where, field_name, f"expected a path inside the .jsonl folder, got {name!r}, which leaves it")


def _check_history_files(record: UIRecord, where: str) -> list[Path]:
    """The record's earlier screenshots must exist; returns their paths."""
    paths = record.history_image_paths
    for i, path in enumerate(paths):
        if path is not None and not path.is_file():
            raise RecordError(where, f"history_images[{i}]", f"record {record.id!r}: expected an existing earlier "
                                                             f"screenshot file, but {path} does not exist")
    return paths


def _image_key(value: str | Image.Image, base_dir: Path | None) -> Any:
    """What makes two image values the same screenshot: the resolved file, or the very same PIL object."""
    return ("pil", id(value)) if isinstance(value, Image.Image) else ("path", _absolute(value, base_dir))


def _episode_problems(records: Iterable[UIRecord], where_of) -> dict[str, RecordError]:
    """The first problem of each bad episode, keyed by ``episode_id`` (episodes in order of appearance)."""
    episodes: dict[str, list[UIRecord]] = {}
    for record in records:
        if record.episode_id is not None:
            episodes.setdefault(record.episode_id, []).append(record)
    problems: dict[str, RecordError] = {}
    for episode_id, members in episodes.items():
        try:
            _check_episode(episode_id, members, where_of)
        except RecordError as error:
            problems[episode_id] = error
    return problems


def _check_episode(episode_id: str, members: list[UIRecord], where_of) -> None:
    by_step: dict[int, UIRecord] = {}
    for record in members:
        step = record.step
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise RecordError(where_of(record), "step", f"record {record.id!r} of episode {episode_id!r}: expected "
                                                        f"its 0-based position in the episode, got {step!r}")
        if step in by_step:
            raise RecordError(where_of(record), "step", f"record {record.id!r}: step {step} of episode "
                                                        f"{episode_id!r} appears twice (also record "
                                                        f"{by_step[step].id!r})")
        by_step[step] = record
    for expected, step in enumerate(sorted(by_step)):
        if step != expected:
            record = by_step[step]
            raise RecordError(where_of(record), "step", f"record {record.id!r} is step {step} of episode "
                                                        f"{episode_id!r}, but step {expected} has no record; "
                                                        f"expected steps 0..{len(by_step) - 1} with no gap")
    ordered = [by_step[i] for i in range(len(by_step))]
    for step, record in enumerate(ordered):
        earlier = ordered[:step]
        expected_history = [r.action for r in earlier]
        if record.history != expected_history:
            if len(record.history) != step:
                detail = f"got {len(record.history)} action(s)"
            else:
                i = next(i for i, (a, b) in enumerate(zip(record.history, expected_history)) if a != b)
                detail = f"history[{i}] is {record.history[i]!r}, but step {i} ({earlier[i].id!r}) did {expected_history[i]!r}"
            raise RecordError(where_of(record), "history", f"record {record.id!r} (step {step} of episode "
                                                           f"{episode_id!r}): expected the actions of the "
                                                           f"episode's {step} earlier step(s), oldest first; {detail}")
        if record.history_images:
            for i, (value, previous) in enumerate(zip(record.history_images, earlier)):
                if _image_key(value, record.base_dir) != _image_key(previous.image, previous.base_dir):
                    shown = value if isinstance(value, str) else "an in-memory image"
                    theirs = previous.image if isinstance(previous.image, str) else "an in-memory image"
                    raise RecordError(where_of(record), f"history_images[{i}]",
                                      f"record {record.id!r}: expected the screenshot of step {i} "
                                      f"({previous.id!r}), {theirs!r}, got {shown!r}")


def validate_episodes(records: Iterable[UIRecord]) -> None:
    """Check that the records of each episode fit together.

    Records with an ``episode_id`` are grouped by it; within an episode the ``step`` values must be
    0..n-1, each once, and every record's ``history`` must equal the actions of the episode's
    earlier steps (oldest first), and its ``history_images``, when given, their ``image``
    screenshots (the same files, or the same in-memory images). Records without an ``episode_id``
    are single-step and not checked.

    Raises:
        RecordError: For the first bad episode, naming the record (its id) and the field.
    """
    problems = _episode_problems(records, lambda record: f"episode {record.episode_id!r}")
    if problems:
        raise next(iter(problems.values()))


# ---------------------------------------------------------------------------
# Reading and writing JSONL
# ---------------------------------------------------------------------------


@dataclass
class ReadReport:
    """What :func:`read_records` kept and skipped.

    Attributes:
        path: The ``.jsonl`` file read.
        n_ok: Number of records kept.
        skipped: One message per skipped record (file, record, field, reason).
    """

    path: Path
    n_ok: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def n_skipped(self) -> int:
        """Number of records skipped."""
        return len(self.skipped)

    def summary(self, max_reasons: int = 10) -> str:
        """Return a short multi-line description, listing the first reasons."""
        lines = [f"{self.path}: kept {self.n_ok} record(s), skipped {self.n_skipped} bad record(s)"]
        lines += [f"  - {reason}" for reason in self.skipped[:max_reasons]]
        if self.n_skipped > max_reasons:
            lines.append(f"  ... and {self.n_skipped - max_reasons} more (see the .report.skipped list)")
        return "\n".join(lines)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, decoded JSON value)`` for every non-blank line of a JSONL file.

    A line that is not UTF-8 text or not JSON yields a :class:`RecordError` (naming the file and
    line) in place of its value, so that a caller can skip it (``strict=False``) and still read
    the lines after it. Lines are split on ``\\n`` only, as JSONL defines them, and decoded one by
    one, so a bad byte is reported on its own line; a UTF-8 byte-order mark on line 1 is dropped.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
    """
    path = Path(path)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            where = f"{path} record {number}"
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                column = len(raw[: exc.start].decode("utf-8", errors="replace")) + 1
                reason = f"expected UTF-8 text, got byte 0x{raw[exc.start]:02x} at column {column} ({exc.reason})"
                yield number, RecordError(where, None, reason)
                continue
            if not text.strip():
                continue  # blank lines (e.g. a trailing newline) are not records
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, RecordError(where, None, f"malformed JSON line ({exc.msg} at column {exc.colno})")


class RecordList(list):
    """A plain list of :class:`UIRecord` with the :class:`ReadReport` attached as ``.report``."""

    report: ReadReport


def read_records(
    jsonl_path: str | Path,
    strict: bool = True,
    check_images: bool = True,
    max_pixels: int | None = None,
    check_episodes: bool = True,
) -> RecordList:
    """Read and validate every record of a ``.jsonl`` file.

    Args:
        jsonl_path: The file to read. Image paths are relative to its folder.
        strict: Raise on the first bad record (default). With False, bad
            records are skipped, a :class:`SkippedRecordsWarning` lists them
            and ``result.report`` holds the count and every reason.
        check_images: Check each image exists, decodes and matches
            ``image_size``. Turn off only for speed on data already checked.
        max_pixels: Largest screenshot accepted (width x height); default
            :data:`MAX_IMAGE_PIXELS`.
        check_episodes: Check the episodes with :func:`validate_episodes`
            once every record is read. With ``strict=False`` an inconsistent
            episode (including one that lost a record to another error) is
            left out whole, each of its records listed in the report.

    Returns:
        The records, as a list subclass with a ``report`` attribute.

    Raises:
        RecordError: In strict mode, for the first bad record.
        FileNotFoundError: If ``jsonl_path`` does not exist.
    """
    path = Path(jsonl_path)
    base_dir = path.parent.resolve()
    report = ReadReport(path=path)
    records = RecordList()
    seen_ids: dict[str, int] = {}
    image_sizes: dict[Path, tuple[int, int]] = {}  # screenshots are often shared by many records

    for number, obj in iter_jsonl(path):
        where = f"{path} record {number}"
        try:
            if isinstance(obj, RecordError):
                raise obj
            record = validate_record(obj, where, base_dir=base_dir, check_image=False, max_pixels=max_pixels)
            if record.id in seen_ids:
                reason = f"expected a unique id, but {record.id!r} already appears in record {seen_ids[record.id]}"
                raise RecordError(where, "id", reason)
            if check_images:
                if record.image_path not in image_sizes:
                    image_sizes[record.image_path] = image_file_size(record.image_path, where, max_pixels=max_pixels)
                _check_image_size(record.image_path, image_sizes[record.image_path], record.image_size, where)
                for i, history_path in enumerate(_check_history_files(record, where)):
                    if history_path not in image_sizes:
                        image_sizes[history_path] = image_file_size(history_path, where, max_pixels=max_pixels,
                                                                    field_name=f"history_images[{i}]")
        except RecordError as exc:
            if strict:
                raise
            report.skipped.append(str(exc))
            continue
        seen_ids[record.id] = number
        records.append(record)

    if check_episodes:
        problems = _episode_problems(records, lambda record: f"{path} record {seen_ids[record.id]}")
        if problems and strict:
            raise next(iter(problems.values()))
        for episode_id, error in problems.items():
            for record in records:
                if record.episode_id == episode_id:
                    report.skipped.append(str(error) if str(error).startswith(f"{path} record {seen_ids[record.id]}:")
                                          else f"{path} record {seen_ids[record.id]}: left out with its episode "
                                               f"{episode_id!r}, which is inconsistent: {error}")
        if problems:
            records[:] = [record for record in records if record.episode_id not in problems]

    report.n_ok = len(records)
    records.report = report
    if report.skipped:
        warnings.warn(report.summary(), SkippedRecordsWarning, stacklevel=2)
    return records


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _image_source(value: str | Image.Image, base_dir: Path | None, root: Path, where: str, field_name: str,
                  missing: str = "expected an existing image file") -> Path | Image.Image:
    """The file (or in-memory image) an image value of a record to be written names."""
    if isinstance(value, Image.Image):
        return value
    source = Path(value)
    if source.is_absolute():
        # Only records built in code hold absolute paths (validation refuses them in files):
        # the caller named that file, so it is copied in.
        source = source.resolve()
    elif base_dir is not None:
        # Relative to the dataset the record was read from: it must not leave that folder.
        source = resolve_inside(base_dir, value, where, field_name, folder_kind="the record's folder (base_dir)")
    else:
        # Records built in code without a base_dir are relative to the destination folder.
        source = resolve_inside(root, value, where, field_name)
    if not source.is_file():
        raise RecordError(where, field_name, f"{missing}, but {source} does not exist")
    return source


def _place_source(source: Path | Image.Image, root: Path, target_stem: str) -> str:
    """Make sure ``source`` is a file under ``root`` (saved or copied to ``target_stem`` + suffix); its relative path."""
    if isinstance(source, Image.Image):
        target = root / f"{target_stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        source.save(target, format="PNG")
        return target.relative_to(root).as_posix()
    if source.is_relative_to(root):
        return source.relative_to(root).as_posix()
    # Keep datasets self-contained: copy images living elsewhere into the folder.
    target = root / f"{target_stem}{source.suffix or '.png'}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target.relative_to(root).as_posix()


def _source_key(source: Path | Image.Image) -> Any:
    return ("pil", id(source)) if isinstance(source, Image.Image) else ("path", source)


def _place_image(record: UIRecord, root: Path, image_dir: str, where: str) -> tuple[str, Any]:
    """Make sure the record's image is a file under ``root``; return its relative path and source key."""
    source = _image_source(record.image, record.base_dir, root, where, "image")
    return _place_source(source, root, f"{image_dir}/{_safe_filename(record.id)}"), _source_key(source)


def _place_history_images(record: UIRecord, root: Path, image_dir: str, where: str, placed: dict[Any, str],
                          placed_steps: dict[tuple[str, int], tuple[Any, str]]) -> list[str]:
    """Relative paths of the record's earlier screenshots, reusing the files written for the earlier steps."""
    relative = []
    for i, value in enumerate(record.history_images):
        source = _image_source(value, record.base_dir, root, where, f"history_images[{i}]",
                               missing=f"record {record.id!r}: expected an existing earlier screenshot file")
        key = _source_key(source)
        step_key, step_path = placed_steps.get((record.episode_id, i), (None, None))
        if step_key == key:
            relative.append(step_path)  # the very file written for that step's record
        elif key in placed:
            relative.append(placed[key])
        else:
            # Not the screenshot of any record written here. Record images are named by their id in
            # image_dir itself (ids lose their '/'), so the history/ sub-folder cannot clash with them.
            path = _place_source(source, root, f"{image_dir}/history/{_safe_filename(record.id)}-{i:02d}")
            placed[key] = path
            relative.append(path)
    return relative


def write_records(
    records: Iterable[UIRecord], jsonl_path: str | Path, image_dir: str = "images", max_pixels: int | None = None
) -> Path:
    """Validate records and write them as a ``.jsonl`` file.

    Image paths are stored relative to the file's folder:

    * an in-memory ``PIL.Image`` is saved as ``<image_dir>/<id>.png``;
    * a path already inside the folder is kept (made relative); relative
      paths are taken relative to the record's ``base_dir``, or to the
      destination folder when it has none;
    * an absolute path outside the folder is copied to
      ``<image_dir>/<id><suffix>`` so the dataset folder stays self-contained;
    * a relative path that leaves its folder (through ``..`` or a symbolic
      link pointing out) is refused, as when reading.

    ``history_images`` entries are placed the same way, but an earlier
    screenshot that is the image of a record written here (the same file, or
    the same in-memory image) points at that record's file, so that it names
    the very file of the episode's earlier step; any other is saved or copied
    to ``<image_dir>/history/<id>-<i><suffix>``. Once placed, the episodes are
    checked with :func:`validate_episodes`.

    The file is written to a temporary name and renamed, so a failure never
    leaves a half-written dataset behind.

    Args:
        records: The records to write.
        jsonl_path: Destination ``.jsonl`` file (folders are created).
        image_dir: Sub-folder for saved/copied images.
        max_pixels: Largest screenshot accepted; default :data:`MAX_IMAGE_PIXELS`.

    Returns:
        The path written.

    Raises:
        RecordError: If a record is invalid, an id repeats or an episode's
            records do not fit together.
    """
    path = Path(jsonl_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    root = path.parent.resolve()
    records = list(records)
    seen_ids: set[str] = set()
    images: list[str] = []
    placed: dict[Any, str] = {}  # source file or in-memory image -> its path in the folder (first record's)
    placed_steps: dict[tuple[str, int], tuple[Any, str]] = {}  # (episode_id, step) -> (source, path)
    for number, record in enumerate(records, start=1):
        where = f"{path} record {number}"
        if record.id in seen_ids:
            raise RecordError(where, "id", f"expected a unique id, but {record.id!r} repeats")
        seen_ids.add(record.id)
        relative, key = _place_image(record, root, image_dir, where)
        images.append(relative)
        placed.setdefault(key, relative)
        if record.episode_id is not None and record.step is not None:
            placed_steps[(record.episode_id, record.step)] = (key, relative)
    # Earlier screenshots are placed once every record's own is, so that each points at the file of
    # its step's record, in whatever order the records come.
    lines, written, line_of = [], [], {}
    for number, (record, relative) in enumerate(zip(records, images), start=1):
        where = f"{path} record {number}"
        history = _place_history_images(record, root, image_dir, where, placed, placed_steps)
        obj = dataclasses.replace(record, image=relative, history_images=history, base_dir=root).to_json()
        written.append(validate_record(obj, where, base_dir=root, check_image=True, max_pixels=max_pixels))
        line_of[record.id] = number
        lines.append(json.dumps(obj, ensure_ascii=False) + "\n")
    problems = _episode_problems(written, lambda record: f"{path} record {line_of[record.id]}")
    if problems:
        raise next(iter(problems.values()))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------
# Hugging Face datasets
# ---------------------------------------------------------------------------

# Bump when the row layout below changes, so old Arrow caches are not reused.
_ARROW_SCHEMA_VERSION = "3"


def _features():
    # lazy: datasets (pyarrow) takes seconds to import; only the Arrow view of records needs it
    import datasets

    return datasets.Features(
        {
            "id": datasets.Value("string"),
            "image": datasets.Value("string"),
            "image_size": datasets.List(datasets.Value("int32"), length=2),
            "instruction": datasets.Value("string"),
            # Action dicts have a different key set per type; Arrow structs
            # would pad every one with nulls, so they are stored as JSON text.
            "action": datasets.Value("string"),
            "bbox": datasets.List(datasets.Value("float64"), length=4),
            "element_type": datasets.Value("string"),
            "source": datasets.Value("string"),
            "platform": datasets.Value("string"),
            "history": datasets.Value("string"),
            "split": datasets.Value("string"),
            # JSON text: null (not recorded) and [] (no other candidate) must stay apart.
            "distractors": datasets.Value("string"),
            "episode_id": datasets.Value("string"),
            "step": datasets.Value("int32"),
            # Absolute paths, like "image".
            "history_images": datasets.List(datasets.Value("string")),
        }
    )


def _record_to_row(record: UIRecord) -> dict[str, Any]:
    row = record.to_json()
    row["image"] = str(record.image_path)
    row["action"] = json.dumps(record.action)
    row["history"] = json.dumps(record.history)
    row["distractors"] = json.dumps(record.distractors)
    row["episode_id"] = record.episode_id
    row["step"] = record.step
    row["history_images"] = [str(p) for p in record.history_image_paths]
    return row


def _generate_rows(rows: list[dict[str, Any]]):
    # Module-level so that datasets can pickle it for its cache machinery.
    yield from rows


def load_dataset(
    jsonl_path: str | Path,
    strict: bool = True,
    check_images: bool = True,
    cache_dir: str | Path | None = None,
    keep_in_memory: bool = False,
    max_pixels: int | None = None,
):
    """Validate a ``.jsonl`` file and load it as a Hugging Face ``datasets.Dataset``.

    The data is written once to an Arrow file under ``cache_dir`` (the
    ``datasets`` default cache when None) and memory-mapped from there; a
    second call with unchanged content reuses it. The cache key is a hash of
    the validated rows, so editing the file invalidates it.

    Columns: ``image`` is the absolute path of the screenshot (cast it with
    ``ds.cast_column("image", datasets.Image())`` to decode lazily);
    ``action`` and ``history`` are JSON strings; ``bbox`` is null or four
    floats; ``episode_id`` and ``step`` are null for single-step records and
    ``history_images`` holds absolute paths, like ``image``. :func:`record_from_row` turns a row back into a :class:`UIRecord`.

    Args:
        jsonl_path: The ``.jsonl`` file.
        strict: Passed to :func:`read_records`.
        check_images: Passed to :func:`read_records`.
        cache_dir: Where the Arrow cache lives.
        keep_in_memory: Load into RAM instead of memory-mapping.
        max_pixels: Passed to :func:`read_records`.

    Returns:
        The dataset.
    """
    # lazy: datasets (pyarrow) takes seconds to import; only the Arrow view of records needs it
    import datasets

    records = read_records(jsonl_path, strict=strict, check_images=check_images, max_pixels=max_pixels)
    rows = [_record_to_row(r) for r in records]
    digest = hashlib.sha256(_ARROW_SCHEMA_VERSION.encode())
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True).encode())
    return datasets.Dataset.from_generator(
        _generate_rows,
        features=_features(),
        cache_dir=None if cache_dir is None else str(cache_dir),
        keep_in_memory=keep_in_memory,
        gen_kwargs={"rows": rows},
        fingerprint=digest.hexdigest()[:32],
    )


def record_from_row(row: Mapping[str, Any]) -> UIRecord:
    """Turn a row of :func:`load_dataset`'s dataset back into a :class:`UIRecord`.

    The image paths in the row (``image``, ``history_images``) are absolute, so the record needs no ``base_dir``.
    """
    bbox = row["bbox"]
    if bbox is not None:
        # Arrow stores floats; give back ints where nothing was lost.
        bbox = [int(v) if float(v).is_integer() else v for v in bbox]
    return UIRecord(
        id=row["id"],
        image=row["image"],
        image_size=list(row["image_size"]),
        instruction=row["instruction"],
        action=json.loads(row["action"]),
        bbox=bbox,
        element_type=row["element_type"],
        source=row["source"],
        platform=row["platform"],
        history=json.loads(row["history"]),
        split=row["split"],
        distractors=json.loads(row["distractors"]) if row.get("distractors") is not None else None,
        episode_id=row.get("episode_id"),
        step=row.get("step"),
        history_images=list(row.get("history_images") or []),
    )


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


def split_records(
    records: Sequence[UIRecord],
    fractions: Mapping[str, float] | None = None,
    seed: int = 0,
    group_by_image: bool = True,
) -> dict[str, list[UIRecord]]:
    """Randomly assign records to splits, deterministically under ``seed``.

    The records of one episode (same ``episode_id``) always go to the same
    split: an episode cut in two would leave steps whose ``history`` names
    actions of records in another split. Records sharing a screenshot are
    kept in the same split too (when ``group_by_image``), because a model
    that saw a screen during training would otherwise be tested on it; an
    episode and a record sharing one of its screenshots form one group.
    Groups, not records, are shuffled and cut at the fractions.

    Args:
        records: Records to split (not modified).
        fractions: Split name -> fraction, summing to 1. Defaults to
            ``{"train": 0.8, "validation": 0.1, "test": 0.1}``.
        seed: Shuffle seed.
        group_by_image: Keep records with the same image together (episodes
            are kept whole either way).

    Returns:
        Split name -> records, each a copy with its ``split`` field set.
    """
    fractions = dict(fractions or {"train": 0.8, "validation": 0.1, "test": 0.1})
    for name, value in fractions.items():
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
        if value < 0:
            raise ValueError(f"split fraction for {name!r} must be >= 0, got {value}")
    if not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must sum to 1, got {sum(fractions.values())}")

    # Union-find over record positions: records sharing an episode or (with group_by_image) a
    # screenshot end up in one group. Groups keep the order of their first record, so without
    # episodes the groups, and the split, are the image groups of before.
    parent = list(range(len(records)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with_key: dict[Any, int] = {}
    for i, record in enumerate(records):
        keys = []
        if record.episode_id is not None:
            keys.append(("episode", record.episode_id))
        if group_by_image:
            if isinstance(record.image, Image.Image):
                keys.append(("pil", id(record.image)))
            else:
                keys.append(("path", str(record.image_path)))
        for key in keys:
            if key in first_with_key:
                a, b = root(first_with_key[key]), root(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first_with_key[key] = i
    groups: dict[int, list[UIRecord]] = {}
    for i, record in enumerate(records):
        groups.setdefault(root(i), []).append(record)
    ordered = [groups[key] for key in sorted(groups)]
    random.Random(seed).shuffle(ordered)

    # Cut the shuffled groups at cumulative fraction boundaries of the group count.
    result: dict[str, list[UIRecord]] = {name: [] for name in fractions}
    start, cumulative = 0, 0.0
    names = list(fractions)
    for i, name in enumerate(names):
        cumulative += fractions[name]
        end = len(ordered) if i == len(names) - 1 else round(cumulative * len(ordered))
        for group in ordered[start:end]:
            result[name].extend(dataclasses.replace(r, split=name) for r in group)
        start = end
    return result


def select_split(records: Iterable[UIRecord], split: str) -> list[UIRecord]:
    """Return the records whose ``split`` field is ``split``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return [r for r in records if r.split == split]
