"""Tests for uivlm_helpers.data: schema validation, JSONL round trips, HF loading."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
from PIL import Image

from uivlm_helpers.data import (
    ACTION_FIELDS,
    RecordError,
    SkippedRecordsWarning,
    UIRecord,
    load_dataset,
    read_records,
    record_from_row,
    select_split,
    split_records,
    validate_record,
    write_records,
)


def _png(path: Path, size=(224, 224), colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, (250, 250, 250))
    img.paste(colour, (90, 30, 134, 50))
    img.save(path)
    return path


def _good(i: int = 1, **changes) -> dict:
    obj = {
        "id": f"rec-{i}",
        "image": "images/a.png",
        "image_size": [224, 224],
        "instruction": "Click the Save button",
        "action": {"type": "click", "x": 112, "y": 40},
        "bbox": [90, 30, 134, 50],
        "element_type": "button",
        "source": "test",
        "platform": "web",
        "history": [{"type": "type", "text": "hello"}],
        "split": "train",
    }
    obj.update(changes)
    return obj


def _write_lines(path: Path, lines: list) -> Path:
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "images" / "b.png", colour=(30, 30, 200))
    return tmp_path


# -- the happy path ------------------------------------------------------------


def test_valid_file_reads_and_fills_defaults(folder: Path):
    minimal = {k: _good(2)[k] for k in ("id", "image", "image_size", "instruction", "action")}
    path = _write_lines(folder / "train.jsonl", [_good(1), "", minimal])
    records = read_records(path)
    assert [r.id for r in records] == ["rec-1", "rec-2"]
    assert records.report.n_ok == 2 and records.report.n_skipped == 0
    assert records[1].bbox is None and records[1].history == [] and records[1].split == "train"
    assert records[0].image_path == (folder / "images" / "a.png").resolve()
    img = records[0].load_image()
    assert img.mode == "RGB" and img.size == (224, 224)


def test_every_action_type_is_accepted(folder: Path):
    examples = {
        "click": {"x": 1, "y": 2},
        "double_click": {"x": 1, "y": 2},
        "long_press": {"x": 1.5, "y": 2.5},
        "drag": {"x": 1, "y": 2, "x2": 200, "y2": 210},
        "type": {"text": "hi"},
        "press": {"key": "Enter"},
        "scroll": {"direction": "down", "amount": 100},
        "wait": {"seconds": 1},
        "done": {},
    }
    assert set(examples) == set(ACTION_FIELDS)
    for kind, fields in examples.items():
        record = validate_record(_good(action={"type": kind, **fields}), "t")
        assert record.action == {"type": kind, **fields}


def test_round_trip_write_read_load_dataset(tmp_path: Path):
    src = _png(tmp_path / "elsewhere" / "shot.png")  # outside the dataset folder: gets copied
    pil = Image.new("RGB", (320, 200), (10, 120, 200))  # in memory: gets saved
    out = tmp_path / "ds"
    _png(out / "images" / "inside.png")  # already inside: kept
    records = [
        UIRecord(id="a", image=str(src), image_size=(224, 224), instruction="Click Save",
                 action={"type": "click", "x": 112, "y": 40}, bbox=(90, 30, 134, 50), element_type="button",
                 source="test", platform="web"),
        UIRecord(id="b/2", image=pil, image_size=[320, 200], instruction="Scroll down",
                 action={"type": "scroll", "direction": "down", "amount": 3},
                 history=[{"type": "click", "x": 5, "y": 6}], split="test"),
        UIRecord(id="c", image="images/inside.png", image_size=[224, 224], instruction="Done",
                 action={"type": "done"}, bbox=[0.5, 1.25, 10, 20], platform="mobile", split="validation"),
        UIRecord(id="d", image="images/inside.png", image_size=[224, 224], instruction="Click the red one",
                 action={"type": "click", "x": 5, "y": 5}, bbox=[0, 0, 10, 10], distractors=[(20, 20, 40, 30)]),
        UIRecord(id="e", image="images/inside.png", image_size=[224, 224], instruction="Click the blue one",
                 action={"type": "click", "x": 5, "y": 5}, bbox=[0, 0, 10, 10], distractors=[]),
    ]
    path = write_records(records, out / "all.jsonl")
    assert path == out / "all.jsonl"
    assert not (out / "all.jsonl.tmp").exists()

    back = read_records(path)
    assert [r.image for r in back] == ["images/a.png", "images/b_2.png"] + ["images/inside.png"] * 3
    # Not recorded (None) and "no other candidate" ([]) stay apart; None is not written at all.
    assert [r.distractors for r in back] == [None, None, None, [[20, 20, 40, 30]], []]
    assert "distractors" not in json.loads(path.read_text().splitlines()[0])
    for original, loaded in zip(records, back):
        # Everything but the (now relative) image path survives unchanged.
        assert loaded.to_json() == dataclasses.replace(original, image=loaded.image).to_json()
        assert loaded == dataclasses.replace(original, image=loaded.image)
    assert back[1].load_image().getpixel((0, 0)) == (10, 120, 200)

    ds = load_dataset(path, cache_dir=tmp_path / "cache")
    assert ds.cache_files, "expected an Arrow file on disk (memory-mapped), not an in-memory table"
    assert all(Path(f["filename"]).is_file() for f in ds.cache_files)
    assert len(ds) == 5
    for row, loaded in zip(ds, back):
        assert Path(row["image"]).is_absolute() and Path(row["image"]).is_file()
        rebuilt = record_from_row(row)
        assert rebuilt.to_json() == {**loaded.to_json(), "image": str(loaded.image_path)}

    again = load_dataset(path, cache_dir=tmp_path / "cache")
    assert again.cache_files == ds.cache_files, "unchanged data should reuse the Arrow cache"


def test_load_dataset_cache_follows_content(folder: Path, tmp_path: Path):
    path = _write_lines(folder / "d.jsonl", [_good(1)])
    first = load_dataset(path, cache_dir=tmp_path / "cache")
    _write_lines(path, [_good(1, instruction="Click the Cancel button")])
    second = load_dataset(path, cache_dir=tmp_path / "cache")
    assert second[0]["instruction"] == "Click the Cancel button"
    assert first.cache_files != second.cache_files


# -- bad input -------------------------------------------------------------------------

# (name, how to corrupt record 2, field named in the error, words in the reason)
BAD_CASES = [
    ("missing image file", lambda d: _good(2, image="images/nope.png"), "image", "does not exist"),
    ("corrupt image", lambda d: _good(2, image="images/corrupt.png"), "image", "cannot open"),
    ("truncated image", lambda d: _good(2, image="images/truncated.png"), "image", "cannot open"),
    ("absolute image path", lambda d: _good(2, image=str(d / "images" / "a.png")), "image", "relative"),
    ("image_size mismatch", lambda d: _good(2, image_size=[300, 224]), "image_size", "real size"),
    ("bbox outside image", lambda d: _good(2, bbox=[200, 200, 300, 300]), "bbox", "outside the image"),
    ("bbox negative", lambda d: _good(2, bbox=[-5, 0, 10, 10]), "bbox", "outside the image"),
    ("bbox x1 > x2", lambda d: _good(2, bbox=[134, 30, 90, 50]), "bbox", "wrong coordinate order"),
    ("bbox y1 > y2", lambda d: _good(2, bbox=[90, 50, 134, 30]), "bbox", "wrong coordinate order"),
    ("bbox three numbers", lambda d: _good(2, bbox=[1, 2, 3]), "bbox", "four numbers"),
    ("click outside image", lambda d: _good(2, action={"type": "click", "x": 500, "y": 40}), "action.x", "outside the image"),
    ("click y outside", lambda d: _good(2, action={"type": "click", "x": 5, "y": 224}), "action.y", "outside the image"),
    ("drag end outside", lambda d: _good(2, action={"type": "drag", "x": 1, "y": 1, "x2": 1, "y2": -1}), "action.y2", "outside"),
    ("unknown action type", lambda d: _good(2, action={"type": "hover", "x": 5, "y": 5}), "action.type", "unknown action type"),
    ("missing action field", lambda d: _good(2, action={"type": "click", "x": 5}), "action.y", "missing"),
    ("missing scroll direction", lambda d: _good(2, action={"type": "scroll", "amount": 1}), "action.direction", "missing"),
    ("bad scroll direction", lambda d: _good(2, action={"type": "scroll", "direction": "sideways", "amount": 1}), "action.direction", "expected one of"),
    ("extra action field", lambda d: _good(2, action={"type": "done", "x": 1}), "action.x", "unexpected"),
    ("string coordinate", lambda d: _good(2, action={"type": "click", "x": "5", "y": 5}), "action.x", "number"),
    ("bool coordinate", lambda d: _good(2, action={"type": "click", "x": True, "y": 5}), "action.x", "number"),
    ("empty instruction", lambda d: _good(2, instruction="   "), "instruction", "non-empty"),
    ("missing instruction", lambda d: {k: v for k, v in _good(2).items() if k != "instruction"}, "instruction", "missing"),
    ("typo field", lambda d: {**_good(2), "instuction": "x"}, "instuction", "unknown field"),
    ("bad split", lambda d: _good(2, split="dev"), "split", "expected one of"),
    ("bad platform", lambda d: _good(2, platform="tv"), "platform", "expected one of"),
    ("bad history action", lambda d: _good(2, history=[{"type": "fly"}]), "history[0].type", "unknown action type"),
    ("duplicate id", lambda d: _good(1), "id", "unique"),
    ("distractors not a list", lambda d: _good(2, distractors=[1, 2, 3, 4][0]), "distractors", "list of"),
    ("distractor box reversed", lambda d: _good(2, distractors=[[0, 0, 10, 10], [50, 9, 40, 20]]), "distractors[1]", "wrong coordinate order"),
    ("distractor outside image", lambda d: _good(2, distractors=[[200, 0, 230, 10]]), "distractors[0]", "outside the image"),
    ("not an object", lambda d: [1, 2, 3], None, "JSON object"),
    ("malformed JSON line", lambda d: '{"id": "rec-2", "image": ', None, "malformed JSON"),
]


def _bad_folder(folder: Path) -> Path:
    (folder / "images" / "corrupt.png").write_bytes(b"this is not a png at all")
    good = (folder / "images" / "a.png").read_bytes()
    (folder / "images" / "truncated.png").write_bytes(good[: len(good) // 2])
    return folder


@pytest.mark.parametrize("name,make,field,words", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_record_raises_naming_file_record_and_field(folder: Path, name, make, field, words):
    _bad_folder(folder)
    path = _write_lines(folder / "train.jsonl", [_good(1), make(folder)])
    with pytest.raises(RecordError) as info:
        read_records(path)
    err = info.value
    message = str(err)
    assert str(path) in message and "record 2" in message, message
    assert err.field == field
    if field:
        assert f"field '{field}'" in message
    assert words in message, message


def test_non_strict_skips_and_reports_every_bad_record(folder: Path):
    _bad_folder(folder)
    lines = [_good(1)] + [make(folder) for _, make, _, _ in BAD_CASES] + [_good(99)]
    path = _write_lines(folder / "mixed.jsonl", lines)
    with pytest.warns(SkippedRecordsWarning, match=rf"skipped {len(BAD_CASES)} bad record"):
        records = read_records(path, strict=False)
    assert [r.id for r in records] == ["rec-1", "rec-99"]
    report = records.report
    assert report.n_ok == 2 and report.n_skipped == len(BAD_CASES)
    for number, reason in enumerate(report.skipped, start=2):
        assert f"record {number}" in reason and str(path) in reason
    assert "... and" in report.summary(max_reasons=3)


def test_non_strict_load_dataset_warns(folder: Path, tmp_path: Path):
    path = _write_lines(folder / "d.jsonl", [_good(1), _good(2, instruction="")])
    with pytest.warns(SkippedRecordsWarning):
        ds = load_dataset(path, strict=False, cache_dir=tmp_path / "cache")
    assert ds["id"] == ["rec-1"]


def test_clean_file_does_not_warn(folder: Path):
    path = _write_lines(folder / "ok.jsonl", [_good(1)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_records(path, strict=False)


def test_check_images_false_skips_file_checks(folder: Path):
    path = _write_lines(folder / "d.jsonl", [_good(1, image="images/nope.png")])
    assert len(read_records(path, check_images=False)) == 1


def test_validate_record_message_uses_where():
    with pytest.raises(RecordError, match=r"^data/train\.jsonl record 7: field 'bbox': wrong coordinate order"):
        validate_record(_good(bbox=[10, 10, 5, 20]), "data/train.jsonl record 7")


def test_write_records_rejects_invalid_and_leaves_no_file(folder: Path):
    bad = UIRecord(id="x", image="images/a.png", image_size=[224, 224], instruction="Click",
                   action={"type": "click", "x": 999, "y": 1}, base_dir=folder)
    target = folder / "out.jsonl"
    with pytest.raises(RecordError, match=r"out\.jsonl record 1: field 'action\.x'"):
        write_records([bad], target)
    assert not target.exists()
    dup = UIRecord(id="x", image="images/a.png", image_size=[224, 224], instruction="Click",
                   action={"type": "done"}, base_dir=folder)
    with pytest.raises(RecordError, match="record 2: field 'id'"):
        write_records([dup, dup], target)
    with pytest.raises(RecordError, match="field 'image'"):
        write_records([UIRecord(id="y", image="nope.png", image_size=[1, 1], instruction="i",
                                action={"type": "done"})], target)


def test_to_json_refuses_in_memory_image():
    record = UIRecord(id="m", image=Image.new("RGB", (4, 4)), image_size=[4, 4], instruction="i",
                      action={"type": "done"})
    with pytest.raises(TypeError, match="write_records"):
        record.to_json()
    assert record.load_image().size == (4, 4)


# -- splits ------------------------------------------------------------------------------


def _records(n: int, shared_every: int = 1) -> list[UIRecord]:
    return [
        UIRecord(id=f"r{i}", image=f"images/{i // shared_every}.png", image_size=[10, 10], instruction="i",
                 action={"type": "done"}, base_dir=Path("/data"))
        for i in range(n)
    ]


def test_split_records_is_deterministic_and_complete():
    records = _records(100)
    a = split_records(records, seed=1)
    b = split_records(records, seed=1)
    c = split_records(records, seed=2)
    assert {k: [r.id for r in v] for k, v in a.items()} == {k: [r.id for r in v] for k, v in b.items()}
    assert [r.id for r in a["test"]] != [r.id for r in c["test"]]
    assert {k: len(v) for k, v in a.items()} == {"train": 80, "validation": 10, "test": 10}
    assert sorted(r.id for v in a.values() for r in v) == sorted(r.id for r in records)
    assert all(r.split == name for name, v in a.items() for r in v)
    assert all(r.split == "train" for r in records), "inputs must not be modified"
    assert select_split(a["test"] + a["train"], "test") == a["test"]


def test_split_records_keeps_shared_screens_together():
    records = _records(60, shared_every=3)  # 20 screenshots, 3 instructions each
    splits = split_records(records, {"train": 0.5, "test": 0.5}, seed=0)
    train_images = {r.image for r in splits["train"]}
    assert train_images.isdisjoint(r.image for r in splits["test"])
    assert len(splits["train"]) == len(splits["test"]) == 30


def test_split_records_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        split_records(_records(3), {"train": 0.5, "test": 0.4})
    with pytest.raises(ValueError, match="unknown split"):
        split_records(_records(3), {"train": 0.5, "dev": 0.5})
    with pytest.raises(ValueError, match="unknown split"):
        select_split([], "dev")
