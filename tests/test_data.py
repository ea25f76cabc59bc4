"""Tests for uivlm_helpers.data.schema: schema validation, JSONL round trips, HF loading."""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path

import pytest
from PIL import Image

from uivlm_helpers.data.schema import (
    ACTION_FIELDS,
    MAX_IMAGE_PIXELS,
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
    """One line per item: bytes as they are (to write text that is not UTF-8), str as UTF-8, else JSON."""

    def encode(line) -> bytes:
        if isinstance(line, bytes):
            return line
        return (line if isinstance(line, str) else json.dumps(line)).encode("utf-8")

    path.write_bytes(b"".join(encode(line) + b"\n" for line in lines))
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
    ("image path leaving the folder", lambda d: _good(2, image="../a.png"), "image", "inside the .jsonl folder"),
    ("image_size over the pixel limit", lambda d: _good(2, image_size=[12000, 12000]), "image_size", "50,000,000"),
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
    ("not UTF-8", lambda d: b'{"id": "rec-2", "instruction": "caf\xe9"}', None, "UTF-8"),
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


# -- image paths stay inside the dataset folder -------------------------------------------


@pytest.fixture
def escape_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A dataset folder ``ds`` and a screenshot ``secret.png`` beside it, reached from ``ds`` through
    ``../secret.png`` and through the link ``ds/images/link.png``."""
    ds = tmp_path / "ds"
    _png(ds / "images" / "a.png")
    secret = _png(tmp_path / "secret.png", colour=(1, 2, 3))
    (ds / "images" / "link.png").symlink_to(secret)
    (ds / "images" / "inner.png").symlink_to(ds / "images" / "a.png")  # a link that stays inside is fine
    return ds, secret


def test_image_paths_leaving_the_folder_are_refused(escape_folder):
    ds, secret = escape_folder
    lines = [_good(1), _good(2, image="../secret.png"), _good(3, image="images/link.png"),
             _good(4, image="images/../images/inner.png")]
    path = _write_lines(ds / "d.jsonl", lines)
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert info.value.where == f"{path} record 2" and info.value.field == "image"
    assert "'../secret.png'" in str(info.value) and str(secret) in str(info.value) and "'..'" in str(info.value)

    for check_images in (True, False):  # the path is checked even when the files are not
        with pytest.warns(SkippedRecordsWarning):
            records = read_records(path, strict=False, check_images=check_images)
        assert [r.id for r in records] == ["rec-1", "rec-4"]
        two, three = records.report.skipped
        assert f"{path} record 2: field 'image'" in two
        assert f"{path} record 3: field 'image'" in three and "symbolic link" in three and str(secret) in three


def test_validate_record_without_a_folder_refuses_dot_dot():
    with pytest.raises(RecordError, match=r"^t: field 'image': expected a path inside the \.jsonl folder"):
        validate_record(_good(image="images/../../x.png"), "t")
    assert validate_record(_good(image="images/../images/a.png"), "t").image == "images/../images/a.png"


def test_write_records_does_not_copy_files_from_outside_the_folder(escape_folder, tmp_path: Path):
    ds, secret = escape_folder
    out = tmp_path / "out"
    for record in (
        # read from ds (base_dir set), or built in code for the destination folder (no base_dir)
        UIRecord(id="up", image="../secret.png", image_size=[224, 224], instruction="i", action={"type": "done"},
                 base_dir=ds),
        UIRecord(id="link", image="images/link.png", image_size=[224, 224], instruction="i",
                 action={"type": "done"}, base_dir=ds),
    ):
        with pytest.raises(RecordError, match=rf"out\.jsonl record 1: field 'image': expected a path inside"):
            write_records([record], out / "out.jsonl")
        assert not (out / "out.jsonl").exists() and not (out / "images").exists()
    (out / "images").mkdir(parents=True)
    (out / "images" / "link.png").symlink_to(secret)
    no_base = UIRecord(id="x", image="images/link.png", image_size=[224, 224], instruction="i",
                       action={"type": "done"})
    with pytest.raises(RecordError, match="symbolic link"):
        write_records([no_base], out / "out.jsonl")
    # An absolute path names the file explicitly and is copied in, as documented.
    explicit = dataclasses.replace(no_base, image=str(secret))
    (written,) = read_records(write_records([explicit], out / "out.jsonl"))
    assert written.image == "images/x.png" and written.load_image().getpixel((100, 40)) == (1, 2, 3)


# -- text that is not UTF-8 ---------------------------------------------------------------


def test_non_utf8_byte_names_file_and_line(folder: Path):
    latin1 = json.dumps(_good(2, instruction="Click Café"), ensure_ascii=False).encode("latin-1")
    path = _write_lines(folder / "d.jsonl", [_good(1), latin1, _good(3, instruction="Clique « Enregistrer »")])
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert info.value.where == f"{path} record 2" and info.value.field is None
    assert "expected UTF-8 text, got byte 0xe9 at column" in str(info.value)

    with pytest.warns(SkippedRecordsWarning, match="skipped 1 bad record"):
        records = read_records(path, strict=False)
    assert [r.id for r in records] == ["rec-1", "rec-3"] and records[1].instruction == "Clique « Enregistrer »"
    assert records.report.n_skipped == 1 and f"{path} record 2" in records.report.skipped[0]


def test_utf8_byte_order_mark_and_line_separator_characters_are_text(folder: Path):
    # U+2028 is legal unescaped inside a JSON string and must not end the record.
    obj = _good(1, instruction="Click\u2028Save")
    path = folder / "d.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(obj, ensure_ascii=False).encode() + b"\r\n")
    (record,) = read_records(path)
    assert record.instruction == "Click\u2028Save"


# -- pixel limit -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A real 12000x12000 PNG (144 MP, 1-bit): about 20 kB on disk, 432 MB once decoded as RGB."""
    path = tmp_path_factory.mktemp("huge") / "huge.png"
    Image.new("1", (12000, 12000)).save(path)
    return path


def test_oversize_screenshot_is_refused_before_decoding(folder: Path, huge_png: Path):
    assert MAX_IMAGE_PIXELS == 50_000_000
    shutil.copyfile(huge_png, folder / "images" / "huge.png")
    declared_small = _good(2, image="images/huge.png")  # the header, not the declared size, decides
    path = _write_lines(folder / "d.jsonl", [_good(1), declared_small])
    with pytest.raises(RecordError) as info:
        read_records(path)
    message = str(info.value)
    assert info.value.where == f"{path} record 2" and info.value.field == "image"
    for words in ("huge.png", "12000x12000", "144,000,000 pixels", "50,000,000", "max_pixels"):
        assert words in message, message

    honest = _good(2, image="images/huge.png", image_size=[12000, 12000])
    path = _write_lines(folder / "d.jsonl", [_good(1), honest])
    with pytest.raises(RecordError, match=r"record 2: field 'image_size': expected at most 50,000,000 pixels"):
        read_records(path, check_images=False)
    # The limit is per call: a caller who means it can raise it.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and Pillow's own 89 MP warning stays quiet
        records = read_records(path, max_pixels=150_000_000)
    assert records[1].image_size == [12000, 12000]
    with pytest.raises(RecordError, match="expected at most 50,000 pixels"):
        read_records(path, max_pixels=50_000, check_images=False)


def test_pillow_decompression_bomb_comes_out_as_a_record_error(folder: Path, monkeypatch):
    # Pillow refuses to open images above twice its own MAX_IMAGE_PIXELS; lowering that makes the
    # 224x224 screenshot one, without writing a 179 MP file.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path = _write_lines(folder / "d.jsonl", [_good(1)])
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert info.value.where == f"{path} record 1" and info.value.field == "image"
    assert "larger than Pillow accepts" in str(info.value) and "50,000,000" in str(info.value)


def test_write_records_applies_the_pixel_limit(tmp_path: Path):
    record = UIRecord(id="big", image=Image.new("1", (300, 300)), image_size=[300, 300], instruction="i",
                      action={"type": "done"})
    with pytest.raises(RecordError, match=r"d\.jsonl record 1: field 'image_size': expected at most 80,000"):
        write_records([record], tmp_path / "d.jsonl", max_pixels=80_000)
    assert not (tmp_path / "d.jsonl").exists()
    assert len(read_records(write_records([record], tmp_path / "d.jsonl"))) == 1


def test_record_schema_takes_its_action_types_and_fields_from_core_actions():
    """One action schema: a record's action types, field names and order are core.actions' own."""
    from uivlm_helpers.core import actions
    from uivlm_helpers.data import schema

    assert {kind: tuple(fields) for kind, fields in schema.ACTION_FIELDS.items()} == actions.ACTION_FIELDS
    assert schema.SCROLL_DIRECTIONS == actions.SCROLL_DIRECTIONS
    with pytest.raises(schema.RecordError, match="expected one of"):
        schema.validate_action({"type": "tap", "x": 1, "y": 2}, "r.jsonl:1")
