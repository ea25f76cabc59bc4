"""Tests for uivlm_helpers.data.synth: determinism, widget geometry, instructions, dataset files."""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uivlm_helpers.data.schema import load_dataset, read_records
from uivlm_helpers.data.synth import (
    ICON_WORDS,
    LAYOUTS,
    TARGET_KINDS,
    THEMES,
    Widget,
    candidate_instructions,
    generate_records,
    generate_screen,
    make_splits,
    pick_target,
)

SIZES = [(224, 224), (448, 448), (1280, 720)]


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_screen(img, widgets: list[Widget]) -> None:
    """Invariants every generated screen must satisfy."""
    width, height = img.size
    pixels = np.asarray(img, dtype=np.float32)
    targets = [w for w in widgets if w.kind in TARGET_KINDS]
    assert len(targets) >= 3, [w.label for w in widgets]
    assert len({w.kind for w in targets}) >= 2
    keys = [(w.kind, w.label) for w in targets]
    assert len(keys) == len(set(keys)), f"duplicate kind+label: {keys}"
    for w in targets:
        x1, y1, x2, y2 = w.bbox
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, w
        crop = pixels[y1:y2, x1:x2]
        # The widget is drawn: its box is not a flat patch of background.
        assert crop.std() > 8, f"{w} looks empty (std {crop.std():.1f})"
        cx, cy = w.centre
        assert x1 <= cx < x2 and y1 <= cy < y2
    for i, a in enumerate(targets):
        for b in targets[i + 1 :]:
            overlap = a.bbox[0] < b.bbox[2] and b.bbox[0] < a.bbox[2] and a.bbox[1] < b.bbox[3] and b.bbox[1] < a.bbox[3]
            assert not overlap, (a, b)


def _check_instructions(widgets: list[Widget]) -> None:
    candidates = candidate_instructions(widgets)
    # Every targetable widget can be named, and no instruction names two widgets.
    assert set(candidates) == {i for i, w in enumerate(widgets) if w.kind in TARGET_KINDS}
    owners: dict[str, int] = {}
    for i, texts in candidates.items():
        for text in texts:
            assert owners.setdefault(text.lower(), i) == i, f"{text!r} names widgets {owners[text.lower()]} and {i}"
            w = widgets[i]
            words = ICON_WORDS[w.label] if w.kind == "icon" else (w.label,)
            assert any(word in text for word in words) or re.search(r"\b(first|second|third|fourth|fifth|sixth|last)\b", text)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_renders_valid_screens(layout, theme, size):
    for seed in range(4):
        img, widgets = generate_screen(random.Random(seed), size, layout=layout, theme=theme)
        assert img.mode == "RGB" and img.size == size
        _check_screen(img, widgets)
        _check_instructions(widgets)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    layout=st.sampled_from(LAYOUTS),
    size=st.sampled_from([(224, 224), (160, 160), (200, 320), (360, 640), (448, 448), (640, 480), (1280, 720)]),
)
def test_any_seed_gives_a_valid_screen(seed, layout, size):
    img, widgets = generate_screen(random.Random(seed), size, layout=layout)
    _check_screen(img, widgets)
    _check_instructions(widgets)


def test_positional_instructions_follow_reading_order():
    seen = 0
    for seed in range(200):
        img, widgets = generate_screen(random.Random(seed), layout="settings_list")
        for i, texts in candidate_instructions(widgets).items():
            for text in texts:
                if text == "Click the second checkbox":
                    boxes = sorted((w.bbox[1], w.label) for w in widgets if w.kind == "checkbox")
                    assert widgets[i].label == boxes[1][1]
                    seen += 1
    assert seen > 50


def test_labels_are_readable_size():
    # Font >= 10 px: caption text boxes are at least ~7 px tall (cap height).
    for layout in LAYOUTS:
        _, widgets = generate_screen(random.Random(1), (224, 224), layout=layout)
        texts = [w for w in widgets if w.kind in ("text", "link")]
        assert texts and min(w.bbox[3] - w.bbox[1] for w in texts) >= 7
    _, small = generate_screen(random.Random(1), (224, 224), layout="login_form", theme="light")
    _, large = generate_screen(random.Random(1), (1280, 720), layout="login_form", theme="light")
    height = lambda ws: max(w.bbox[3] - w.bbox[1] for w in ws if w.kind == "text_field")  # noqa: E731
    assert height(large) > 1.4 * height(small), "larger screens should scale the layout"


def test_generate_screen_is_deterministic():
    a_img, a_widgets = generate_screen(random.Random(42))
    b_img, b_widgets = generate_screen(random.Random(42))
    c_img, _ = generate_screen(random.Random(43))
    assert a_img.tobytes() == b_img.tobytes() and a_widgets == b_widgets
    assert a_img.tobytes() != c_img.tobytes()


def test_generate_screen_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown layout"):
        generate_screen(random.Random(0), layout="spreadsheet")
    with pytest.raises(ValueError, match="unknown theme"):
        generate_screen(random.Random(0), theme="sepia")
    with pytest.raises(ValueError, match="at least 160"):
        generate_screen(random.Random(0), (100, 100))


def test_generate_records_same_seed_gives_identical_files(tmp_path: Path):
    a = generate_records(10, seed=7, out_dir=tmp_path / "a")
    b = generate_records(10, seed=7, out_dir=tmp_path / "b")
    c = generate_records(10, seed=8, out_dir=tmp_path / "c")
    files_a, files_b, files_c = _files(a.parent), _files(b.parent), _files(c.parent)
    assert files_a == files_b, "same seed must give byte-identical jsonl and PNGs"
    assert files_a["train.jsonl"] != files_c["train.jsonl"]
    pngs = [name for name in files_a if name.endswith(".png")]
    assert len(pngs) == 10 and all(files_a[n] != files_c[n] for n in pngs)
    # Record i does not depend on how many records are generated.
    d = generate_records(3, seed=7, out_dir=tmp_path / "d")
    assert d.read_text().splitlines() == a.read_text().splitlines()[:3]


def test_generate_records_targets_match_widgets(tmp_path: Path):
    path = generate_records(25, seed=1, out_dir=tmp_path, split="validation")
    assert path == tmp_path / "validation.jsonl"
    records = read_records(path)  # validates schema, files and sizes
    assert len(records) == 25
    assert {r.split for r in records} == {"validation"}
    assert records[0].id == "synth-validation-000000"
    assert {r.platform for r in records} == {"web", "mobile", "desktop"}
    for record in records:
        x1, y1, x2, y2 = record.bbox
        assert record.action == {"type": "click", "x": (x1 + x2) // 2, "y": (y1 + y2) // 2}
        assert record.element_type in TARGET_KINDS
        assert record.source == "synthetic" and record.history == []
        crop = np.asarray(record.load_image().crop(record.bbox), dtype=np.float32)
        assert crop.std() > 8


def test_generate_records_rebuilds_the_same_target(tmp_path: Path):
    # The record's instruction is one of the unique instructions for its bbox.
    path = generate_records(5, seed=3, out_dir=tmp_path, layouts=("dialog",))
    for i, record in enumerate(read_records(path)):
        rng = random.Random(f"uivlm-synth/train/3/{i}")
        img, widgets = generate_screen(rng, (224, 224), layout="dialog")
        index, instruction = pick_target(rng, widgets)
        assert list(widgets[index].bbox) == record.bbox and instruction == record.instruction
        assert img.tobytes() == record.load_image().tobytes()


def test_make_splits_writes_disjoint_train_and_test(tmp_path: Path):
    paths = make_splits(tmp_path, seed=0, n_train=15, n_eval=10, n_validation=5)
    assert set(paths) == {"train", "validation", "test"}
    hashes = {}
    for split, path in paths.items():
        records = read_records(path)
        assert {r.split for r in records} == {split}
        hashes[split] = {hashlib.sha256(r.image_path.read_bytes()).hexdigest() for r in records}
        assert len(hashes[split]) == len(records)
    assert hashes["train"].isdisjoint(hashes["test"]) and hashes["train"].isdisjoint(hashes["validation"])
    ds = load_dataset(paths["test"], cache_dir=tmp_path / "cache")
    assert len(ds) == 10 and ds.cache_files
    assert set(make_splits(tmp_path / "two", n_train=2, n_eval=2)) == {"train", "test"}


def test_kindless_instruction_is_blocked_by_same_visible_text():
    black = (0, 0, 0)
    widgets = [
        Widget("text_field", "Search", (0, 0, 80, 20), black),
        Widget("button", "Search", (90, 0, 130, 20), black),
        Widget("button", "Help", (140, 0, 180, 20), black),
        Widget("text", "Help", (0, 40, 30, 50), black),
        Widget("link", "Terms", (0, 60, 40, 75), black),
    ]
    found = candidate_instructions(widgets)
    assert 3 not in found, "static text is never a target"
    assert "Click the Search button" in found[1] and "Click the Search field" in found[0]
    assert "Click 'Search'" not in found[1], "the field's placeholder also reads 'Search'"
    assert "Click 'Help'" not in found[2], "a caption also reads 'Help'"
    assert "Click 'Terms'" in found[4]
    assert "Click the first button from the left" in found[1]
    assert {"Click the second button from the left", "Click the last button from the left"} <= set(found[2])
