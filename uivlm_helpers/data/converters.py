"""Converters from public UI-agent datasets to the workbook's record schema (:mod:`.schema`).

Each converter reads the dataset in its **original** form and writes a validated JSONL file with
:func:`write_records`; screenshots are copied once into ``<out folder>/images/`` (keeping their
relative paths), so the output folder is self-contained. Every action ends up in screenshot pixels.

======================  ==========================================================================
format                  input
======================  ==========================================================================
``screenspot``          ScreenSpot v1/v2 (``screenspot_{mobile,desktop,web}[_v2].json``): a JSON
                        list of ``{img_filename, bbox: [x, y, w, h] px, instruction, data_type,
                        data_source}``. -> click at the box centre, ``bbox`` as ``[x1, y1, x2, y2]``,
                        ``element_type`` text/icon, ``platform`` from ``data_source``.
``screenspot_pro``      ScreenSpot-Pro: ``bbox: [x1, y1, x2, y2]`` px, ``img_size: [w, h]`` (checked
                        against the file), ``id``, ``application``, ``platform``, ``group``,
                        ``ui_type``. Negative samples (``gt_type: "negative"``, no target on the
                        screen) are skipped and counted.
``mind2web``            Mind2Web tasks as SeeClick processed them: ``{annotation_id, website,
                        confirmed_task, action_reprs, actions: [{action_uid, operation: {op,
                        original_op, value}, bbox: {x, y, width, height}}]}``; the screenshot of a
                        step is ``{annotation_id}-{action_uid}.jpg``. CLICK/HOVER/ENTER -> click at
                        the box centre; TYPE -> ``type(value)`` with the field in ``bbox``; SELECT ->
                        see ``select_as``. Steps without a ``bbox`` are skipped and counted.
``aitw``                Android in the Wild as SeeClick's JSON: ``{category: [episode: [step]]}`` (or
                        a list of episodes), step = ``{img_filename, goal, action_type_id,
                        action_type_text, touch: [x, y], lift: [x, y], type_text, annot_position}``
                        with ``touch``/``lift`` normalised **(x, y)** (the TFRecords store (y, x)).
``androidcontrol``      AndroidControl episodes (JSON list or JSONL): ``{episode_id, goal, screenshots:
                        [file], screenshot_widths, screenshot_heights, actions: [JSON string],
                        step_instructions}``; one fewer action than screenshots; pixels;
                        ``mode`` "high" (goal) or "low" (step instructions).
======================  ==========================================================================

Action mapping for the two Android datasets:

* AITW ``action_type_id`` 4 DUAL_POINT is a tap when ``|touch - lift| <= 0.04`` (normalised, as the
  AITW action-matching code decides) -> ``click`` at the midpoint (as SeeClick), with ``bbox`` the
  smallest ``annot_position`` box (``y, x, h, w`` normalised) containing it; otherwise a swipe ->
  ``scroll(direction, amount)``: a finger moving up scrolls the content **down** (SeeClick's
  "scroll down" is touch (0.5, 0.8) -> lift (0.5, 0.2)), amount = swipe length along the main axis in
  pixels. 3 TYPE -> ``type(type_text)``; 5 BACK / 6 HOME / 7 ENTER -> ``press(Back)``,
  ``press(Home)``, ``press(Enter)`` (on ``platform: mobile``, ``Back``/``Home`` are the system
  buttons); 10 COMPLETE -> ``done``; 11 IMPOSSIBLE has no action in the workbook's language and is
  skipped (counted), unless ``impossible_as_done=True``.
* AndroidControl ``click``/``long_press`` -> same, pixels; ``input_text`` -> ``type``;
  ``scroll {direction}`` -> ``scroll(direction, amount)`` with amount = half the screen along that
  axis (AndroidControl gives no distance); ``navigate_home``/``navigate_back`` -> ``press(Home)``/
  ``press(Back)``; ``wait`` -> ``wait(1)``; ``open_app`` (no pixel action) is skipped and counted.

**SELECT (Mind2Web).** The workbook has no "select option" action. ``select_as="type"`` (default)
writes ``type(value)`` with the ``<select>`` element in ``bbox``: the chosen option is kept (what
Mind2Web's operation F1 scores) and the element is kept for element accuracy, and in a browser typing
an option's text into a focused ``<select>`` picks it. ``select_as="click"`` writes a click on the
element instead (element grounding only; the value is dropped).

Episodes: for the episode formats (Mind2Web, AITW, AndroidControl) every record carries
``episode_id`` (the source's id with the format as prefix: ``mind2web-<annotation_id>``,
``aitw-<ep_id>``, ``androidcontrol-<episode_id>``; a source id met twice gets ``-2``, ``-3``... in
file order), ``step`` (its position among the episode's records, from 0), ``history`` (the
converted actions of the episode's earlier records, oldest first) and ``history_images`` (their
screenshots, the files copied into the output). Skipped steps (open_app, IMPOSSIBLE, steps without
a box, bad steps with ``strict=False``) have no record and are in no history, so the steps stay
0..n-1 and the output passes :func:`~.schema.validate_episodes`.

AndroidControl ``mode``: ``"high"`` (default) gives every step the episode's goal as instruction,
``"low"`` the step's own instruction; the mode is kept in ``source`` (``androidcontrol/high``,
``androidcontrol/low``), the field evaluation breaks results down by, so no new field is needed.

Bad input. Source records that cannot be converted raise :class:`~.schema.RecordError` naming the
**source file and record number** (1-based position in the JSON list or line of a JSONL file; for
episode formats also the step), the field and what was expected. With ``strict=False`` such
records are skipped and listed in the report instead. A JSONL line that is not UTF-8 or not JSON
is such a record, and so is a record of a ``.json`` file holding text that is not UTF-8 (a
``.json`` file that is not JSON at all cannot be read and always raises). Skipped-by-design records
(negatives, open_app, steps without a box) are never errors; they are counted in the report.

Screenshot names are relative to ``image_root`` (the current folder when it is None) and must stay
inside it: a name that is absolute, climbs out through ``..`` or reaches a symbolic link pointing
out of the root is a bad record (:func:`resolve_inside`), so no file from elsewhere is copied
into the output. Screenshots above ``max_pixels`` (default :data:`MAX_IMAGE_PIXELS`) are bad
records too, refused from their header before anything is decoded.

Boxes. A box that reaches past the image edge is clipped to the image (the click moves to the
centre of the visible part) and listed in the report's ``clipped`` entries with its original and
clipped box; a box with no part on the image is a bad record, never a degenerate box.

Each converter returns the written path; its ``.report`` (a :class:`ConversionReport`) says how many
records were read, written, skipped and clipped and why, and is also saved next to the file as
``<name>.report.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .schema import (PLATFORMS, RecordError, UIRecord, image_file_size, iter_jsonl, resolve_inside, validate_record,
                      write_records)

__all__ = ["ANDROIDCONTROL_MODES", "CONVERTERS", "ConversionReport", "ConvertedPath", "convert",
           "convert_screenspot", "convert_screenspot_pro", "convert_mind2web", "convert_aitw", "convert_androidcontrol"]

TAP_THRESHOLD = 0.04  # AITW: a dual-point action is a tap when touch and lift are this close (normalised)
SCREENSPOT_PLATFORMS = {"ios": "mobile", "android": "mobile", "macos": "desktop", "windows": "desktop",
                        "linux": "desktop", "gitlab": "web", "shop": "web", "forum": "web", "tool": "web"}


# --------------------------------------------------------------------------------------------------
# Reports and paths
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Clip:
    """A source box that reached past the image and the part of it that was kept."""

    where: str
    field: str
    original: list[float]
    clipped: list[float]


@dataclass
class ConversionReport:
    """What a conversion read, wrote and skipped.

    Attributes:
        source: Where the records came from (a file, or ``<records>``).
        output: The JSONL file written.
        n_read: Source records (for episode formats: steps) read.
        n_written: Records written.
        skipped: Count per reason for records left out by design (negatives, unsupported actions).
        errors: With ``strict=False``, one message per bad source record that was skipped.
        clipped: One entry per written record whose box reached past the image and was clipped:
            ``{"id", "where", "field", "original", "clipped"}`` (boxes as ``[x1, y1, x2, y2]``
            pixels; ``where`` names the source file and record).
    """

    source: str
    output: str = ""
    n_read: int = 0
    n_written: int = 0
    skipped: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    clipped: list[dict] = field(default_factory=list)
    # (record, entry) for each clip noted while converting; only written records reach ``clipped``.
    _clips: list[tuple[UIRecord, dict]] = field(default_factory=list, repr=False, compare=False)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values()) + len(self.errors)

    @property
    def n_clipped(self) -> int:
        return len(self.clipped)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def note_clip(self, record: UIRecord, clip: _Clip | None) -> None:
        """Remember that ``record``'s box was clipped (``clip`` None: it was not)."""
        if clip is not None:
            self._clips.append((record, {"where": clip.where, "field": clip.field,
                                         "original": clip.original, "clipped": clip.clipped}))

    def settle_clips(self, written: list[UIRecord]) -> None:
        """Fill ``clipped`` from the noted clips of the records written, under their final ids."""
        kept = {id(record) for record in written}
        self.clipped = [{"id": record.id, **entry} for record, entry in self._clips if id(record) in kept]

    def summary(self) -> str:
        lines = [f"{self.source}: read {self.n_read}, wrote {self.n_written} to {self.output}, "
                 f"skipped {self.n_skipped}, clipped {self.n_clipped} box(es) to the image"]
        lines += [f"  - {count} x {reason}" for reason, count in self.skipped.most_common()]
        lines += [f"  - bad record: {message}" for message in self.errors[:10]]
        if len(self.errors) > 10:
            lines.append(f"  ... and {len(self.errors) - 10} more bad records")
        lines += [f"  - clipped {c['id']} ({c['where']}, {c['field']}): {c['original']} -> {c['clipped']}"
                  for c in self.clipped[:10]]
        if len(self.clipped) > 10:
            lines.append(f"  ... and {len(self.clipped) - 10} more clipped boxes (see .clipped)")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {"source": self.source, "output": self.output, "n_read": self.n_read,
                "n_written": self.n_written, "skipped": dict(self.skipped), "errors": self.errors,
                "clipped": self.clipped}


class ConvertedPath(type(Path())):
    """The written JSONL path, with the :class:`ConversionReport` as ``.report``."""

    report: ConversionReport


class _Skip(Exception):
    """A record left out by design (counted in the report under ``reason``)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------

_BLANK = object()  # a blank JSONL line: a placeholder that keeps item i at line i + 1


def _load(source) -> tuple[Any, str, bool]:
    """``(items, name, is_jsonl)`` from a path (JSON or JSONL) or records already in memory.

    A JSONL line that is not UTF-8 or not JSON becomes a :class:`RecordError` item (raised or
    listed by :func:`_source_items`), so the lines after it can still be converted. A ``.json``
    file is decoded with each non-UTF-8 byte kept as a lone surrogate, so that the record holding
    it, not the whole file, is refused (:func:`_check_utf8`).
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"no such dataset file: {path}")
        if path.suffix == ".jsonl":
            items: list = []
            for number, value in iter_jsonl(path):
                items += [_BLANK] * (number - 1 - len(items))
                items.append(value)
            return items, str(path), True
        text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
        try:
            return json.loads(text), str(path), False
        except json.JSONDecodeError as exc:
            raise RecordError(str(path), None, f"malformed JSON ({exc.msg} at line {exc.lineno}, column "
                                                    f"{exc.colno}); a .json file is read as a whole") from exc
    if isinstance(source, (list, tuple, Mapping)):
        return source, "<records>", False
    raise TypeError(f"expected a dataset file path or a list of records, got {type(source).__name__}")


def _check_utf8(value: Any, where: str, name: str = "") -> None:
    """Refuse a record holding text that was not UTF-8 in the source (decoded as lone surrogates)."""
    if isinstance(value, str):
        for i, char in enumerate(value):
            if "\udc80" <= char <= "\udcff":
                raise RecordError(where, name or None, f"expected UTF-8 text, got byte "
                                                            f"0x{ord(char) - 0xDC00:02x} at character {i + 1}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_utf8(key, where, name)
            _check_utf8(item, where, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_utf8(item, where, f"{name}[{i}]")


def _source_items(items: Iterable, name: str, report: ConversionReport, strict: bool) -> Iterator[tuple[int, Any]]:
    """``(record number, item)`` for each source record, skipping blank JSONL lines.

    Lines that are not UTF-8 or not JSON, and records holding non-UTF-8 text, are raised
    (``strict``) or listed in ``report.errors``.
    """
    for number, item in enumerate(items, start=1):
        if item is _BLANK:
            continue
        try:
            if isinstance(item, RecordError):
                raise item
            _check_utf8(item, f"{name} record {number}")
        except RecordError as error:
            if strict:
                raise
            report.errors.append(str(error))
            continue
        yield number, item


def _n_records(items: Iterable) -> int:
    return sum(item is not _BLANK for item in items)


def _require(obj: Any, key: str, where: str, kind: str = "a value") -> Any:
    if not isinstance(obj, Mapping):
        raise RecordError(where, None, f"expected a JSON object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        raise RecordError(where, key, f"missing; expected {kind}")
    return obj[key]


def _number(value: Any, where: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(where, name, f"expected a finite number, got {value!r}")
    return value


def _numbers(value: Any, n: int, where: str, name: str, shape: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise RecordError(where, name, f"expected {shape}, got {value!r}")
    return [_number(v, where, name) for v in value]


class _Images:
    """Finds each source screenshot inside the image root, copies it once into ``<out>/images/``
    and remembers its size."""

    def __init__(self, image_root: str | Path | None, out_root: Path, max_pixels: int | None):
        # Without an image root, names are relative to the current folder, as a shell reads them.
        self.root = Path(image_root if image_root is not None else ".").resolve()
        self.out_root = out_root
        self.max_pixels = max_pixels
        self.sizes: dict[Path, tuple[int, int]] = {}

    def find(self, name: str, where: str, field_name: str, suffixes: Iterable[str] = ("",)) -> Path:
        if not isinstance(name, str) or not name.strip():
            raise RecordError(where, field_name, f"expected an image file name, got {name!r}")
        tried = []
        for suffix in suffixes:
            # Refused before looking for the file: nothing outside the image root is ever read.
            candidate = resolve_inside(self.root, name + suffix, where, field_name, folder_kind="the image root")
            if candidate.is_file():
                return candidate
            tried.append(str(candidate))
        raise RecordError(where, field_name, f"expected an existing image file under the image root; "
                                                  f"not found: {', '.join(tried)}")

    def size(self, path: Path, where: str, field_name: str) -> tuple[int, int]:
        if path not in self.sizes:
            # Header only: the pixel limit is checked before anything is decoded.
            self.sizes[path] = image_file_size(path, where, field_name=field_name, max_pixels=self.max_pixels,
                                                    verify=False)
        return self.sizes[path]

    def stage(self, path: Path) -> Path:
        """The screenshot's copy inside the output folder (made on first use)."""
        out_images = (self.out_root / "images").resolve()
        if path.is_relative_to(self.out_root.resolve()):
            return path
        target = out_images / path.relative_to(self.root)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        return target


def _box_in_image(box: list[float], size: tuple[int, int], where: str,
                  name: str = "bbox") -> tuple[list[float], _Clip | None]:
    """A source box ``[x1, y1, x2, y2]`` (pixels) checked and clipped to the image.

    Returns the box and, when clipping changed it, a :class:`_Clip` for the report. A box with no
    part on the image is refused: clipping would leave a line or a point, not the element.
    """
    x1, y1, x2, y2 = box
    width, height = size
    if not (x1 < x2 and y1 < y2):
        raise RecordError(where, name, f"expected a box with positive width and height, got {box!r} "
                                            f"as [x1, y1, x2, y2]")
    clipped = [max(0, x1), max(0, y1), min(width, x2), min(height, y2)]
    if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
        raise RecordError(where, name, f"box {box!r} (as [x1, y1, x2, y2]) lies outside the "
                                            f"{width}x{height} image")
    kept = [_tidy(v) for v in clipped]
    clip = _Clip(where, name, [_tidy(v) for v in box], kept) if clipped != [x1, y1, x2, y2] else None
    return kept, clip


def _tidy(value: float) -> int | float:
    """Pixels rounded to 0.01, as an int when whole (``140.0`` -> ``140``)."""
    value = round(float(value), 2)
    return int(value) if value.is_integer() else value


def _centre(box: list[float]) -> tuple[float, float]:
    return _tidy((box[0] + box[2]) / 2), _tidy((box[1] + box[3]) / 2)


def _point_in_image(x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
    """Keep a point on the screenshot (a point on the far edge moves onto the last pixel)."""
    width, height = size
    return _tidy(min(max(x, 0), width - 1)), _tidy(min(max(y, 0), height - 1))


def _validated(record: UIRecord, where: str, images: _Images) -> UIRecord:
    # The staged paths are absolute until write_records makes them relative: check the rest.
    placeholder = dataclasses.replace(record, image="x.png", history_images=["x.png"] * len(record.history_images))
    validate_record(placeholder.to_json(), where, max_pixels=images.max_pixels)
    return record


def _finish(records: list[UIRecord], report: ConversionReport, out_jsonl: Path,
            images: _Images) -> ConvertedPath:
    written = write_records(records, out_jsonl, max_pixels=images.max_pixels)
    report.output, report.n_written = str(written), len(records)
    report.settle_clips(records)
    report_file = written.with_name(written.stem + ".report.json")
    report_file.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    path = ConvertedPath(written)
    path.report = report
    return path


def _run(items: Iterable[tuple[str, Callable[[], Iterable[UIRecord]]]], report: ConversionReport,
         strict: bool) -> list[UIRecord]:
    """Call each ``(where, make)``; collect records, count skips, raise or list errors."""
    records: list[UIRecord] = []
    for where, make in items:
        try:
            records.extend(make())
        except _Skip as skip:
            report.skip(skip.reason)
        except RecordError as error:
            if strict:
                raise
            report.errors.append(str(error))
    return records


def _unique_ids(records: list[UIRecord]) -> None:
    seen: Counter = Counter()
    for record in records:
        seen[record.id] += 1
        if seen[record.id] > 1:
            record.id = f"{record.id}-{seen[record.id]}"


def _out_root(out_jsonl) -> tuple[Path, Path]:
    out = Path(out_jsonl)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out, out.parent


class _EpisodeIds:
    """Source-prefixed episode ids, made unique within one conversion (a repeated source id gets
    ``-2``, ``-3``... in file order, so the same source converts to the same ids)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.seen: Counter = Counter()

    def new(self, source_id: Any) -> str:
        episode_id = f"{self.prefix}-{_slug(source_id)}"
        self.seen[episode_id] += 1
        return episode_id if self.seen[episode_id] == 1 else f"{episode_id}-{self.seen[episode_id]}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


# --------------------------------------------------------------------------------------------------
# ScreenSpot v1/v2 and ScreenSpot-Pro
# --------------------------------------------------------------------------------------------------

def _screenspot_platform(obj: Mapping, name: str) -> str | None:
    source = str(obj.get("data_source", "")).lower()
    if source in SCREENSPOT_PLATFORMS:
        return SCREENSPOT_PLATFORMS[source]
    for platform in PLATFORMS:  # screenspot_mobile.json ...
        if platform in Path(name).stem.lower():
            return platform
    return None


def convert_screenspot(source_path_or_records, image_root, out_jsonl, *, split: str = "test",
                       strict: bool = True, max_pixels: int | None = None) -> ConvertedPath:
    """ScreenSpot v1/v2 (``bbox`` = ``[x, y, w, h]`` pixels) -> records (click at the box centre).

    Args:
        source_path_or_records: ``screenspot_*.json`` or the list it holds.
        image_root: folder holding the ``img_filename`` screenshots.
        out_jsonl: JSONL file to write (screenshots are copied to its folder's ``images/``).
        split: the records' split.
        strict: raise on a bad source record (default) or skip it and list it in the report.
        max_pixels: largest screenshot accepted (default :data:`MAX_IMAGE_PIXELS`); every
            converter takes ``strict`` and ``max_pixels``.
    """
    items, name, _ = _load(source_path_or_records)
    if not isinstance(items, list):
        raise RecordError(name, None, "expected a JSON list of samples")
    out, root = _out_root(out_jsonl)
    images, report = _Images(image_root, root, max_pixels), ConversionReport(name)
    prefix = _slug(Path(name).stem if name != "<records>" else "screenspot")

    def make(number: int, obj: Any):
        where = f"{name} record {number}"
        image = images.find(_require(obj, "img_filename", where, "the screenshot file name"), where, "img_filename")
        size = images.size(image, where, "img_filename")
        x, y, w, h = _numbers(_require(obj, "bbox", where, "[x, y, w, h]"), 4, where, "bbox",
                              "[x, y, w, h] (four numbers, pixels)")
        box, clip = _box_in_image([x, y, x + w, y + h], size, where)
        cx, cy = _point_in_image(*_centre(box), size)
        instruction = _require(obj, "instruction", where, "the instruction text")
        record = UIRecord(
            id=f"{prefix}-{number:06d}", image=str(images.stage(image)), image_size=list(size),
            instruction=instruction, action={"type": "click", "x": cx, "y": cy}, bbox=box,
            element_type=obj.get("data_type") or None,
            source=f"screenspot/{obj.get('data_source') or 'unknown'}",
            platform=_screenspot_platform(obj, name), split=split)
        _validated(record, where, images)
        report.note_clip(record, clip)
        return [record]

    report.n_read = _n_records(items)
    records = _run(((f"{number}", lambda n=number, o=obj: make(n, o))
                    for number, obj in _source_items(items, name, report, strict)), report, strict)
    return _finish(records, report, out, images)


def convert_screenspot_pro(source_path_or_records, image_root, out_jsonl, *, split: str = "test",
                           strict: bool = True, max_pixels: int | None = None) -> ConvertedPath:
    """ScreenSpot-Pro (``bbox`` = ``[x1, y1, x2, y2]`` pixels, ``img_size``) -> records.

    Negative samples (``gt_type: "negative"``: the target is not on the screen) have no correct
    click; they are skipped and counted in the report.
    """
    items, name, _ = _load(source_path_or_records)
    if not isinstance(items, list):
        raise RecordError(name, None, "expected a JSON list of samples")
    out, root = _out_root(out_jsonl)
    images, report = _Images(image_root, root, max_pixels), ConversionReport(name)

    def make(number: int, obj: Any):
        where = f"{name} record {number}"
        if isinstance(obj, Mapping) and str(obj.get("gt_type", "positive")).lower() == "negative":
            raise _Skip("negative sample (target not on screen)")
        image = images.find(_require(obj, "img_filename", where, "the screenshot file name"), where, "img_filename")
        size = images.size(image, where, "img_filename")
        if obj.get("img_size") is not None:
            declared = _numbers(obj["img_size"], 2, where, "img_size", "[width, height]")
            if list(declared) != list(size):
                raise RecordError(where, "img_size", f"expected the real size of {image.name}, "
                                                          f"{list(size)}, got {list(declared)}")
        box, clip = _box_in_image(_numbers(_require(obj, "bbox", where, "[x1, y1, x2, y2]"), 4, where, "bbox",
                                           "[x1, y1, x2, y2] (four numbers, pixels)"), size, where)
        cx, cy = _point_in_image(*_centre(box), size)
        sample_id = obj.get("id")
        record = UIRecord(
            id=f"screenspot_pro-{_slug(sample_id) if sample_id is not None else f'{number:06d}'}",
            image=str(images.stage(image)), image_size=list(size),
            instruction=_require(obj, "instruction", where, "the instruction text"),
            action={"type": "click", "x": cx, "y": cy}, bbox=box, element_type=obj.get("ui_type") or None,
            source=f"screenspot_pro/{obj.get('group') or 'unknown'}/{obj.get('application') or 'unknown'}",
            platform="desktop", split=split)
        _validated(record, where, images)
        report.note_clip(record, clip)
        return [record]

    report.n_read = _n_records(items)
    records = _run(((f"{n}", lambda n=n, o=o: make(n, o)) for n, o in _source_items(items, name, report, strict)),
                   report, strict)
    _unique_ids(records)
    return _finish(records, report, out, images)


# --------------------------------------------------------------------------------------------------
# Mind2Web (SeeClick's processed form)
# --------------------------------------------------------------------------------------------------

_M2W_CLICKS = ("CLICK", "HOVER", "ENTER")
_REPR_TAG = re.compile(r"^\s*\[([^\]]*)\]")


def convert_mind2web(source_path_or_records, image_root, out_jsonl, *, split: str = "train",
                     select_as: str = "type", strict: bool = True, max_pixels: int | None = None) -> ConvertedPath:
    """Mind2Web (SeeClick's ``mind2web_data_*.json``) -> one record per step with a box.

    Args:
        select_as: ``"type"`` (default: ``type(value)``, element in ``bbox``) or ``"click"`` (a click
            on the element); see the module docstring.
    """
    if select_as not in ("type", "click"):
        raise ValueError(f"select_as: expected 'type' or 'click', got {select_as!r}")
    items, name, _ = _load(source_path_or_records)
    if not isinstance(items, list):
        raise RecordError(name, None, "expected a JSON list of tasks")
    out, root = _out_root(out_jsonl)
    images, report = _Images(image_root, root, max_pixels), ConversionReport(name)
    records: list[UIRecord] = []
    episode_ids = _EpisodeIds("mind2web")

    for number, task in _source_items(items, name, report, strict):
        where_task = f"{name} record {number}"
        try:
            annotation_id = str(_require(task, "annotation_id", where_task, "the task id"))
            goal = _require(task, "confirmed_task", where_task, "the task text")
            actions = _require(task, "actions", where_task, "the list of steps")
            if not isinstance(actions, list):
                raise RecordError(where_task, "actions", f"expected a list of steps, got {actions!r}")
        except RecordError as error:
            if strict:
                raise
            report.errors.append(str(error))
            continue
        reprs = task.get("action_reprs") or []
        history: list[dict] = []
        history_images: list[str] = []
        episode_id = episode_ids.new(annotation_id)

        def make(step_number: int, step: Any, history=history, history_images=history_images, goal=goal,
                 annotation_id=annotation_id, task=task, where_task=where_task, episode_id=episode_id):
            where = f"{where_task} step {step_number}"
            operation = _require(step, "operation", where, "{op, original_op, value}")
            op = str(operation.get("original_op") or operation.get("op") or "").upper()
            if step.get("bbox") is None:
                raise _Skip("step without a bbox (SeeClick found no box for it)")
            raw = step["bbox"]
            if not isinstance(raw, Mapping):
                raise RecordError(where, "bbox", f"expected {{x, y, width, height}}, got {raw!r}")
            x, y, w, h = (_number(_require(raw, k, where, "a number"), where, f"bbox.{k}")
                          for k in ("x", "y", "width", "height"))
            uid = str(_require(step, "action_uid", where, "the step id"))
            image = images.find(f"{annotation_id}-{uid}", where, "action_uid", suffixes=(".jpg", ".png", ""))
            size = images.size(image, where, "action_uid")
            box, clip = _box_in_image([x, y, x + w, y + h], size, where)
            value = operation.get("value") or ""
            if op in _M2W_CLICKS or (op == "SELECT" and select_as == "click"):
                cx, cy = _point_in_image(*_centre(box), size)
                action = {"type": "click", "x": cx, "y": cy}
            elif op in ("TYPE", "SELECT"):
                if not str(value).strip():
                    raise _Skip(f"{op} with an empty value")
                action = {"type": "type", "text": str(value)}
            else:
                raise RecordError(where, "operation.original_op",
                                       f"expected CLICK, HOVER, ENTER, TYPE or SELECT, got {op!r}")
            match = _REPR_TAG.match(reprs[step_number - 1]) if step_number - 1 < len(reprs) else None
            element_type = (match.group(1).strip() or None) if match else None
            record = UIRecord(
                id=f"mind2web-{_slug(annotation_id)}-{_slug(uid)}", image=str(images.stage(image)),
                image_size=list(size), instruction=goal, action=action, bbox=box, element_type=element_type,
                source=f"mind2web/{task.get('website') or 'unknown'}", platform="web",
                history=list(history), split=split, episode_id=episode_id, step=len(history),
                history_images=list(history_images))
            _validated(record, where, images)
            report.note_clip(record, clip)
            history.append(action)
            history_images.append(record.image)
            return [record]

        report.n_read += len(actions)
        records += _run(((f"{s}", lambda s=s, st=st: make(s, st)) for s, st in enumerate(actions, 1)),
                        report, strict)
    _unique_ids(records)
    return _finish(records, report, out, images)


# --------------------------------------------------------------------------------------------------
# Android in the Wild (SeeClick's JSON) and AndroidControl
# --------------------------------------------------------------------------------------------------

_AITW_KEYS = {5: "Back", 6: "Home", 7: "Enter"}
_AITW_NAMES = {3: "TYPE", 4: "DUAL_POINT", 5: "PRESS_BACK", 6: "PRESS_HOME", 7: "PRESS_ENTER",
               10: "STATUS_TASK_COMPLETE", 11: "STATUS_TASK_IMPOSSIBLE"}


def _swipe_direction(dx: float, dy: float) -> tuple[str, str]:
    """``(direction, axis)`` of the scroll a finger swipe (dx, dy) makes: the content moves with
    the finger, so a finger moving up scrolls down."""
    if abs(dy) >= abs(dx):
        return ("down" if dy < 0 else "up"), "y"
    return ("right" if dx < 0 else "left"), "x"


def _aitw_episodes(items: Any, name: str) -> list[tuple[str, Any]]:
    """``[(category, episode_steps)]`` from SeeClick's dict of categories, a list of episodes, or a
    flat list of steps (grouped by ``ep_id``)."""
    if isinstance(items, Mapping):
        return [(str(cat), ep) for cat, episodes in items.items() for ep in (episodes or [])]
    if isinstance(items, list) and all(isinstance(e, list) for e in items):
        return [("", ep) for ep in items]
    if isinstance(items, list):
        groups: dict[str, list] = {}
        for step in items:
            key = str(step.get("ep_id", step.get("episode_id", ""))) if isinstance(step, Mapping) else ""
            groups.setdefault(key, []).append(step)
        return [("", steps) for steps in groups.values()]
    raise RecordError(name, None, "expected a dict of categories, a list of episodes or a list of steps")


def convert_aitw(source_path_or_records, image_root, out_jsonl, *, split: str = "train",
                 impossible_as_done: bool = False, strict: bool = True,
                 max_pixels: int | None = None) -> ConvertedPath:
    """AITW in SeeClick's JSON form (``touch``/``lift`` normalised (x, y)) -> one record per step.

    Record numbers in messages count episodes in file order (categories in order), then the step.
    """
    items, name, is_jsonl = _load(source_path_or_records)
    out, root = _out_root(out_jsonl)
    images, report = _Images(image_root, root, max_pixels), ConversionReport(name)
    records: list[UIRecord] = []
    episode_ids = _EpisodeIds("aitw")
    if is_jsonl:  # one episode (or one step) per line: bad lines are reported by line number
        items = [item for _, item in _source_items(items, name, report, strict)]

    for number, (category, episode) in enumerate(_aitw_episodes(items, name), start=1):
        where_episode = f"{name} record {number}"
        try:
            if not isinstance(episode, list):
                raise RecordError(where_episode, None, f"expected an episode (a list of steps), got "
                                                            f"{type(episode).__name__}")
            _check_utf8(episode, where_episode)
        except RecordError as error:
            if strict:
                raise
            report.errors.append(str(error))
            continue
        history: list[dict] = []
        history_images: list[str] = []
        first = episode[0] if episode and isinstance(episode[0], Mapping) else {}
        episode_id = episode_ids.new(first.get("ep_id", first.get("episode_id", number)))

        def make(step_number: int, step: Any, history=history, history_images=history_images, category=category,
                 number=number, where_episode=where_episode, episode_id=episode_id):
            where = f"{where_episode} step {step_number}"
            code = _require(step, "action_type_id", where, "an AITW action type code")
            if isinstance(code, bool) or not isinstance(code, int):
                raise RecordError(where, "action_type_id", f"expected an integer code, got {code!r}")
            if code == 11 and not impossible_as_done:
                raise _Skip("STATUS_TASK_IMPOSSIBLE (no action in the workbook's language)")
            if code not in _AITW_NAMES:
                raise RecordError(where, "action_type_id", f"expected one of {sorted(_AITW_NAMES)} "
                                                                f"({', '.join(_AITW_NAMES.values())}), got {code}")
            image = images.find(_require(step, "img_filename", where, "the screenshot file name"), where,
                                "img_filename", suffixes=("", ".png", ".jpg"))
            size = images.size(image, where, "img_filename")
            width, height = size
            bbox, clip = None, None
            if code == 4:
                tx, ty = _numbers(_require(step, "touch", where, "[x, y]"), 2, where, "touch",
                                  "[x, y] normalised to 0-1")
                lx, ly = _numbers(_require(step, "lift", where, "[x, y]"), 2, where, "lift",
                                  "[x, y] normalised to 0-1")
                for label, value in (("touch", (tx, ty)), ("lift", (lx, ly))):
                    if not all(0 <= v <= 1 for v in value):
                        raise RecordError(where, label, f"expected (x, y) normalised to 0-1, got {list(value)}")
                if math.hypot(tx - lx, ty - ly) <= TAP_THRESHOLD:
                    nx, ny = (tx + lx) / 2, (ty + ly) / 2
                    x, y = _point_in_image(nx * width, ny * height, size)
                    action = {"type": "click", "x": x, "y": y}
                    bbox, clip = _aitw_box(step.get("annot_position"), nx, ny, size, where)
                else:
                    direction, axis = _swipe_direction(lx - tx, ly - ty)
                    amount = round(abs(ly - ty) * height if axis == "y" else abs(lx - tx) * width)
                    action = {"type": "scroll", "direction": direction, "amount": int(amount)}
            elif code == 3:
                text = step.get("type_text") or ""
                if not str(text).strip():
                    raise _Skip("TYPE with empty text")
                action = {"type": "type", "text": str(text)}
            elif code in _AITW_KEYS:
                action = {"type": "press", "key": _AITW_KEYS[code]}
            else:  # 10 COMPLETE, or 11 IMPOSSIBLE with impossible_as_done
                action = {"type": "done"}
            source_episode = step.get("ep_id", step.get("episode_id", number))
            step_id = step.get("step", step.get("step_id", step_number - 1))
            record = UIRecord(
                id=f"aitw-{_slug(source_episode)}-{_slug(step_id)}", image=str(images.stage(image)),
                image_size=list(size), instruction=_require(step, "goal", where, "the episode goal"),
                action=action, bbox=bbox, element_type=None,
                source=f"aitw/{category}" if category else "aitw", platform="mobile",
                history=list(history), split=split, episode_id=episode_id, step=len(history),
                history_images=list(history_images))
            _validated(record, where, images)
            report.note_clip(record, clip)
            history.append(action)
            history_images.append(record.image)
            return [record]

        report.n_read += len(episode)
        records += _run(((f"{s}", lambda s=s, st=st: make(s, st)) for s, st in enumerate(episode, 1)),
                        report, strict)
    _unique_ids(records)
    return _finish(records, report, out, images)


def _aitw_box(annotations: Any, nx: float, ny: float, size: tuple[int, int],
              where: str) -> tuple[list[float] | None, _Clip | None]:
    """The smallest UI annotation box (``y, x, h, w`` normalised, flattened) holding the tap, and
    its clip (see :func:`_box_in_image`)."""
    if not annotations:
        return None, None
    flat = annotations if not isinstance(annotations[0], (list, tuple)) else [v for box in annotations for v in box]
    if len(flat) % 4:
        raise RecordError(where, "annot_position", f"expected (y, x, h, w) quadruples, got {len(flat)} numbers")
    width, height = size
    best = None
    for i in range(0, len(flat), 4):
        y, x, h, w = (_number(v, where, "annot_position") for v in flat[i:i + 4])
        if x <= nx <= x + w and y <= ny <= y + h and w > 0 and h > 0 and (best is None or w * h < best[2] * best[3]):
            best = (x, y, w, h)
    if best is None:
        return None, None
    x, y, w, h = best
    box = [x * width, y * height, (x + w) * width, (y + h) * height]
    return _box_in_image(box, size, where, "annot_position")


ANDROIDCONTROL_MODES = ("high", "low")


def convert_androidcontrol(source_path_or_records, image_root, out_jsonl, *, split: str = "train",
                           mode: str = "high", strict: bool = True,
                           max_pixels: int | None = None) -> ConvertedPath:
    """AndroidControl episodes -> one record per action (pixels).

    Args:
        source_path_or_records: a JSON list or JSONL file of episodes (the TFRecords exported with
            each screenshot saved as a file named in ``screenshots``), or the episodes themselves.
        mode: AndroidControl's two settings. ``"high"`` (default): every step's instruction is the
            episode's ``goal``. ``"low"``: the step's own ``step_instructions`` entry; a step
            without one is a bad record. The mode is recorded in ``source``
            (``androidcontrol/high`` or ``androidcontrol/low``), so evaluation, which reports by
            source, reports by mode.
    """
    if mode not in ANDROIDCONTROL_MODES:
        raise ValueError(f"mode: expected 'high' (the goal) or 'low' (the step instructions), got {mode!r}")
    items, name, _ = _load(source_path_or_records)
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        raise RecordError(name, None, "expected a list of episodes")
    out, root = _out_root(out_jsonl)
    images, report = _Images(image_root, root, max_pixels), ConversionReport(name)
    records: list[UIRecord] = []
    episode_ids = _EpisodeIds("androidcontrol")

    for number, episode in _source_items(items, name, report, strict):
        where_episode = f"{name} record {number}"
        try:
            episode_id = _require(episode, "episode_id", where_episode, "the episode id")
            screenshots = _require(episode, "screenshots", where_episode, "a list of screenshot files")
            actions = _require(episode, "actions", where_episode, "a list of actions (JSON strings)")
            if not isinstance(screenshots, list) or not isinstance(actions, list):
                raise RecordError(where_episode, "actions", "expected lists of screenshots and actions")
            if len(screenshots) != len(actions) + 1:
                raise RecordError(where_episode, "actions",
                                       f"expected one fewer action than screenshots, got {len(actions)} actions "
                                       f"for {len(screenshots)} screenshots")
        except RecordError as error:
            if strict:
                raise
            report.errors.append(str(error))
            continue
        widths = episode.get("screenshot_widths") or []
        heights = episode.get("screenshot_heights") or []
        steps_text = episode.get("step_instructions") or []
        history: list[dict] = []
        history_images: list[str] = []
        record_episode = episode_ids.new(episode_id)

        def make(step_number: int, raw: Any, history=history, history_images=history_images, episode=episode,
                 episode_id=episode_id, record_episode=record_episode, screenshots=screenshots, widths=widths,
                 heights=heights, steps_text=steps_text, where_episode=where_episode):
            where = f"{where_episode} step {step_number}"
            i = step_number - 1
            try:
                act = json.loads(raw) if isinstance(raw, str) else raw
            except json.JSONDecodeError as exc:
                raise RecordError(where, f"actions[{i}]", f"expected a JSON action string ({exc.msg})") from exc
            kind = _require(act, "action_type", where, "the action type")
            image = images.find(screenshots[i], where, f"screenshots[{i}]")
            size = images.size(image, where, f"screenshots[{i}]")
            declared = (widths[i] if i < len(widths) else None, heights[i] if i < len(heights) else None)
            if None not in declared and list(declared) != list(size):
                raise RecordError(where, "screenshot_widths/heights",
                                       f"expected the real size of {image.name}, {list(size)}, got {list(declared)}")
            width, height = size
            if kind in ("click", "long_press"):
                x = _number(_require(act, "x", where, "x in pixels"), where, f"actions[{i}].x")
                y = _number(_require(act, "y", where, "y in pixels"), where, f"actions[{i}].y")
                if not (0 <= x <= width and 0 <= y <= height):
                    raise RecordError(where, f"actions[{i}]", f"point ({x}, {y}) is outside the "
                                                                   f"{width}x{height} screenshot")
                x, y = _point_in_image(x, y, size)
                action = {"type": kind, "x": x, "y": y}
            elif kind == "scroll":
                direction = str(_require(act, "direction", where, "up/down/left/right")).lower()
                if direction not in ("up", "down", "left", "right"):
                    raise RecordError(where, f"actions[{i}].direction",
                                           f"expected up, down, left or right, got {direction!r}")
                action = {"type": "scroll", "direction": direction,
                          "amount": (height if direction in ("up", "down") else width) // 2}
            elif kind == "input_text":
                text = str(act.get("text") or "")
                if not text.strip():
                    raise _Skip("input_text with empty text")
                action = {"type": "type", "text": text}
            elif kind == "navigate_home":
                action = {"type": "press", "key": "Home"}
            elif kind == "navigate_back":
                action = {"type": "press", "key": "Back"}
            elif kind == "wait":
                action = {"type": "wait", "seconds": 1}
            elif kind == "open_app":
                raise _Skip("open_app (no pixel action in the workbook's language)")
            else:
                raise RecordError(where, f"actions[{i}].action_type",
                                       "expected click, long_press, scroll, input_text, navigate_home, "
                                       f"navigate_back, wait or open_app, got {kind!r}")
            if mode == "low":
                text = steps_text[i] if i < len(steps_text) else None
                if not isinstance(text, str) or not text.strip():
                    raise RecordError(where, f"step_instructions[{i}]",
                                      f"expected the step's instruction (mode='low'), got {text!r}")
            else:
                text = _require(episode, "goal", where_episode, "the episode goal")
            record = UIRecord(
                id=f"androidcontrol-{_slug(episode_id)}-{i:03d}", image=str(images.stage(image)),
                image_size=list(size), instruction=text, action=action, bbox=None, element_type=None,
                source=f"androidcontrol/{mode}", platform="mobile", history=list(history), split=split,
                episode_id=record_episode, step=len(history), history_images=list(history_images))
            _validated(record, where, images)
            history.append(action)
            history_images.append(record.image)
            return [record]

        report.n_read += len(actions)
        records += _run(((f"{s}", lambda s=s, a=a: make(s, a)) for s, a in enumerate(actions, 1)), report, strict)
    _unique_ids(records)
    return _finish(records, report, out, images)


# --------------------------------------------------------------------------------------------------
# Dispatcher
# --------------------------------------------------------------------------------------------------

#: format name -> converter ``(source_path_or_records, image_root, out_jsonl, **options) -> path``.
CONVERTERS: dict[str, Callable[..., ConvertedPath]] = {
    "screenspot": convert_screenspot,
    "screenspot_v2": convert_screenspot,
    "screenspot_pro": convert_screenspot_pro,
    "mind2web": convert_mind2web,
    "aitw": convert_aitw,
    "androidcontrol": convert_androidcontrol,
}


def convert(format_name: str, source_path_or_records, image_root, out_jsonl, **options) -> ConvertedPath:
    """Convert a dataset in ``format_name`` (a key of :data:`CONVERTERS`) to a JSONL file.

    Example::

        convert("screenspot", "ScreenSpot/screenspot_mobile.json", "ScreenSpot/images", "data/ss/test.jsonl")

    ``options`` go to the converter: every one takes ``split``, ``strict`` and ``max_pixels``.

    Raises:
        ValueError: unknown format (the message lists the known ones).
        RecordError: a bad source record, naming the source file and record number.
    """
    key = format_name.lower().replace("-", "_")
    if key not in CONVERTERS:
        raise ValueError(f"unknown dataset format {format_name!r}; known formats: {sorted(CONVERTERS)}")
    return CONVERTERS[key](source_path_or_records, image_root, out_jsonl, **options)
