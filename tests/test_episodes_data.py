"""Episodes as data: episode_id / step / history_images on records, validate_episodes, whole-episode
splits, and MiniWoB++ demonstrations recorded as episodes in a real headless Chromium."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from uivlm_helpers.data import miniwob_env as mw
from uivlm_helpers.data.schema import (RecordError, SkippedRecordsWarning, UIRecord, load_dataset, read_records,
                                       record_from_row, split_records, validate_episodes, validate_record,
                                       write_records)

ACTIONS = [{"type": "click", "x": 10, "y": 20}, {"type": "type", "text": "ada"}, {"type": "press", "key": "Enter"},
           {"type": "done"}]


def _screen(colour) -> Image.Image:
    return Image.new("RGB", (64, 48), colour)


def _episode(episode_id: str, n: int = 4, images=None) -> list[UIRecord]:
    """n steps of one episode built in code: in-memory screenshots, full history and history_images."""
    images = images or [_screen((40 * i, 100, 200 - 40 * i)) for i in range(n)]
    return [UIRecord(id=f"{episode_id}-{i}", image=images[i], image_size=[64, 48], instruction="Log in as ada",
                     action=ACTIONS[i], history=ACTIONS[:i], episode_id=episode_id, step=i,
                     history_images=images[:i], source="test", platform="web")
            for i in range(n)]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """Two episodes and a single-step record, written to ``tmp_path/ds/train.jsonl``."""
    single = UIRecord(id="single", image=_screen((0, 0, 0)), image_size=[64, 48], instruction="Click",
                      action={"type": "click", "x": 1, "y": 1})
    return write_records(_episode("ep-a") + [single] + _episode("ep-b", 3), tmp_path / "ds" / "train.jsonl")


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write_lines(path: Path, objs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


# -- writing and reading -----------------------------------------------------------------------


def test_history_images_point_at_the_earlier_steps_files(dataset: Path):
    lines = _lines(dataset)
    by_id = {line["id"]: line for line in lines}
    assert by_id["ep-a-3"]["history_images"] == [by_id[f"ep-a-{i}"]["image"] for i in range(3)]
    assert [by_id[f"ep-a-{i}"]["step"] for i in range(4)] == [0, 1, 2, 3]
    assert "history_images" not in by_id["ep-a-0"] and by_id["ep-a-0"]["episode_id"] == "ep-a"
    # single-step records write none of the three keys (their bytes are those of before)
    assert list(by_id["single"]) == ["id", "image", "image_size", "instruction", "action", "bbox",
                                     "element_type", "source", "platform", "history", "split"]
    # no extra copies: one file per screenshot
    assert len(list((dataset.parent / "images").rglob("*.png"))) == 8

    records = {r.id: r for r in read_records(dataset)}
    last = records["ep-a-3"]
    assert last.history_image_paths == [records[f"ep-a-{i}"].image_path for i in range(3)]
    assert [im.getpixel((0, 0)) for im in last.load_history_images()] == [(0, 100, 200), (40, 100, 160),
                                                                          (80, 100, 120)]
    # read back and written again elsewhere: the same dataset
    again = write_records(list(records.values()), dataset.parent.parent / "copy" / "train.jsonl")
    assert _lines(again) == lines


def test_records_with_absolute_paths_and_out_of_order_steps(tmp_path: Path):
    shots = []
    for i in range(3):
        shots.append(tmp_path / "raw" / f"s{i}.png")
        shots[-1].parent.mkdir(exist_ok=True)
        _screen((i, i, i)).save(shots[-1])
    episode = [UIRecord(id=f"e-{i}", image=str(shots[i]), image_size=[64, 48], instruction="go",
                        action=ACTIONS[i], history=ACTIONS[:i], episode_id="e", step=i,
                        history_images=[str(p) for p in shots[:i]]) for i in range(3)]
    # the last step first: its earlier screenshots still end up as the files of their steps
    path = write_records(episode[::-1], tmp_path / "ds" / "d.jsonl")
    by_id = {line["id"]: line for line in _lines(path)}
    assert by_id["e-2"]["history_images"] == [by_id["e-0"]["image"], by_id["e-1"]["image"]]
    assert not (tmp_path / "ds" / "images" / "history").exists()
    # an earlier screenshot no record of the file shows is copied under images/history/
    lone = dataclasses.replace(episode[1], id="lone", episode_id=None, step=None,
                               history_images=[str(shots[2])], history=ACTIONS[:1])
    path = write_records([lone], tmp_path / "lone" / "d.jsonl")
    (written,) = read_records(path)
    assert written.history_images == ["images/history/lone-00.png"]
    assert written.load_history_images()[0].getpixel((0, 0)) == (2, 2, 2)


def test_load_dataset_and_record_from_row_carry_the_fields(dataset: Path, tmp_path: Path):
    records = read_records(dataset)
    ds = load_dataset(dataset, cache_dir=tmp_path / "cache")
    for row, record in zip(ds, records):
        rebuilt = record_from_row(row)
        assert (rebuilt.episode_id, rebuilt.step) == (record.episode_id, record.step)
        assert rebuilt.history_image_paths == record.history_image_paths
        assert all(Path(p).is_absolute() for p in row["history_images"])
    validate_episodes([record_from_row(row) for row in ds])


# -- validation of one record ---------------------------------------------------------------------


def _good(**changes) -> dict:
    obj = {"id": "r", "image": "images/a.png", "image_size": [64, 48], "instruction": "go",
           "action": {"type": "done"}, "history": ACTIONS[:2], "episode_id": "e", "step": 2,
           "history_images": ["images/a.png", "images/b.png"]}
    return {**obj, **changes}


@pytest.mark.parametrize("changes, field, words", [
    ({"episode_id": 7}, "episode_id", "non-empty string"),
    ({"episode_id": ""}, "episode_id", "non-empty string"),
    ({"step": -1}, "step", "integer >= 0"),
    ({"step": True}, "step", "integer >= 0"),
    ({"step": "2"}, "step", "integer >= 0"),
    ({"episode_id": None}, "step", "without an episode_id"),
    ({"step": None}, "step", "missing for a record of episode 'e'"),
    ({"history_images": "images/a.png"}, "history_images", "list of image paths"),
    ({"history_images": ["images/a.png"]}, "history_images", "one earlier screenshot per history action (2), got 1"),
    ({"history_images": ["images/a.png", 3]}, "history_images[1]", "non-empty path string"),
    ({"history_images": ["images/a.png", "/tmp/b.png"]}, "history_images[1]", "absolute path"),
    ({"history_images": ["../a.png", "images/b.png"]}, "history_images[0]", "leaves it"),
])
def test_bad_episode_fields_name_the_field(changes, field, words):
    with pytest.raises(RecordError) as info:
        validate_record(_good(**changes), "d.jsonl record 3")
    assert info.value.where == "d.jsonl record 3" and info.value.field == field
    assert words in str(info.value), str(info.value)


def test_missing_or_escaping_earlier_screenshot_is_refused_when_read(tmp_path: Path):
    ds = tmp_path / "ds"
    (ds / "images").mkdir(parents=True)
    for name in ("a", "b"):
        _screen((1, 2, 3)).save(ds / "images" / f"{name}.png")
    _screen((9, 9, 9)).save(tmp_path / "secret.png")
    (ds / "images" / "link.png").symlink_to(tmp_path / "secret.png")
    first = _good(id="e-0", step=0, history=[], history_images=[])
    second = _good(id="e-1", step=1, history=[first["action"]], history_images=["images/gone.png"])
    path = _write_lines(ds / "d.jsonl", [first, second])
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert info.value.where == f"{path} record 2" and info.value.field == "history_images[0]"
    assert "'e-1'" in str(info.value) and str(ds / "images" / "gone.png") in str(info.value)
    for escape, how in (("../secret.png", "'..'"), ("images/link.png", "symbolic link")):
        _write_lines(path, [first, {**second, "history_images": [escape]}])
        with pytest.raises(RecordError, match=rf"record 2: field 'history_images\[0\]'.*{how}"):
            read_records(path, check_images=False)


# -- validate_episodes ------------------------------------------------------------------------------


def test_validate_episodes_accepts_whole_episodes_and_single_steps():
    validate_episodes(_episode("a") + _episode("b", 2) + [dataclasses.replace(_episode("c")[2], episode_id=None,
                                                                              step=None, id="single")])
    # history_images is optional: without it only the actions are compared
    validate_episodes([dataclasses.replace(r, history_images=[]) for r in _episode("a")])


def _broken(kind: str) -> tuple[list[UIRecord], str, str, str]:
    """(records, record id named, field, words) for one kind of inconsistent episode."""
    steps = _episode("e")
    if kind == "gap":
        return steps[:1] + steps[2:], "e-2", "step", "step 1 has no record"
    if kind == "repeat":
        return steps + [dataclasses.replace(steps[2], id="e-2bis")], "e-2bis", "step", "appears twice"
    if kind == "not from 0":
        return steps[1:], "e-1", "step", "step 0 has no record"
    if kind == "history differs":
        steps[3].history[1] = {"type": "type", "text": "bob"}
        return steps, "e-3", "history", "history[1]"
    if kind == "history short":
        steps[2].history = steps[2].history[1:]
        steps[2].history_images = steps[2].history_images[1:]
        return steps, "e-2", "history", "got 1 action(s)"
    if kind == "screenshot differs":
        steps[3].history_images[0] = steps[3].image
        return steps, "e-3", "history_images[0]", "screenshot of step 0 ('e-0')"
    raise KeyError(kind)


BROKEN = ["gap", "repeat", "not from 0", "history differs", "history short", "screenshot differs"]


@pytest.mark.parametrize("kind", BROKEN)
def test_validate_episodes_names_the_record(kind):
    records, record_id, field, words = _broken(kind)
    with pytest.raises(RecordError) as info:
        validate_episodes(records)
    assert info.value.where == "episode 'e'" and info.value.field == field
    assert f"'{record_id}'" in str(info.value) and words in str(info.value), str(info.value)


def _broken_lines(kind: str, lines: list[dict]) -> list[dict]:
    """The JSON lines of a good episode 'e' (steps e-0..e-3) broken as :func:`_broken` breaks records."""
    by_id = {line["id"]: json.loads(json.dumps(line)) for line in lines}
    steps = [by_id[f"e-{i}"] for i in range(4)]
    if kind == "gap":
        return steps[:1] + steps[2:]
    if kind == "repeat":
        return steps + [{**steps[2], "id": "e-2bis"}]
    if kind == "not from 0":
        return steps[1:]
    if kind == "history differs":
        steps[3]["history"][1] = {"type": "type", "text": "bob"}
    elif kind == "history short":
        steps[2]["history"], steps[2]["history_images"] = steps[2]["history"][1:], steps[2]["history_images"][1:]
    elif kind == "screenshot differs":
        steps[3]["history_images"][0] = steps[3]["image"]
    return steps


@pytest.mark.parametrize("kind", BROKEN)
def test_write_and_read_refuse_inconsistent_episodes(tmp_path: Path, kind):
    _, record_id, field, words = _broken(kind)
    good = write_records(_episode("e"), tmp_path / "ds" / "good.jsonl")
    other = {**_lines(good)[0], "id": "other-0", "episode_id": "other"}
    objs = _broken_lines(kind, _lines(good))
    path = _write_lines(good.parent / "bad.jsonl", objs + [other])
    with pytest.raises(RecordError) as info:
        read_records(path)
    assert info.value.where.startswith(f"{path} record ") and info.value.field == field
    assert f"'{record_id}'" in str(info.value) and words in str(info.value), str(info.value)
    # strict=False leaves the whole bad episode out, one report line per record, and keeps the rest
    with pytest.warns(SkippedRecordsWarning):
        kept = read_records(path, strict=False)
    assert [r.id for r in kept] == ["other-0"] and kept.report.n_skipped == len(objs)
    assert all(f"{path} record {n}:" in reason for n, reason in enumerate(kept.report.skipped, start=1))
    assert len(read_records(path, check_episodes=False)) == len(objs) + 1

    # write_records checks the episodes too (records read from a file: paths relative to their folder)
    records = [validate_record(obj, "x", base_dir=good.parent) for obj in objs]
    target = tmp_path / "w" / "d.jsonl"
    with pytest.raises(RecordError) as info:
        write_records(records, target)
    assert re.match(rf"{re.escape(str(target))} record \d+$", info.value.where) and info.value.field == field
    assert f"'{record_id}'" in str(info.value) and not target.exists()


def test_a_record_lost_to_another_error_takes_its_episode_with_it(dataset: Path):
    lines = _lines(dataset)
    lines[1]["image_size"] = [1, 1]  # ep-a step 1 is bad on its own
    path = _write_lines(dataset.parent / "bad.jsonl", lines)
    with pytest.warns(SkippedRecordsWarning):
        kept = read_records(path, strict=False)
    assert [r.id for r in kept] == ["single", "ep-b-0", "ep-b-1", "ep-b-2"]
    assert kept.report.n_skipped == 4 and "left out with its episode 'ep-a'" in kept.report.skipped[1]


# -- splits ----------------------------------------------------------------------------------------------


def test_split_records_never_cuts_an_episode():
    records = []
    for e in range(30):
        records += [UIRecord(id=f"e{e}-{i}", image=f"images/e{e}-{i}.png", image_size=[10, 10], instruction="i",
                             action={"type": "done"}, history=[{"type": "done"}] * i, episode_id=f"e{e}", step=i,
                             base_dir=Path("/data")) for i in range(1 + e % 4)]
    singles = [UIRecord(id=f"s{i}", image=f"images/s{i}.png", image_size=[10, 10], instruction="i",
                        action={"type": "done"}, base_dir=Path("/data")) for i in range(10)]
    for group_by_image in (True, False):
        splits = split_records(records + singles, {"train": 0.6, "validation": 0.2, "test": 0.2}, seed=3,
                               group_by_image=group_by_image)
        where = {r.episode_id: name for name, members in splits.items() for r in members if r.episode_id}
        for name, members in splits.items():
            assert all(where[r.episode_id] == name for r in members if r.episode_id)
            validate_episodes(members)  # every split holds whole episodes
        # groups (30 episodes + 10 single records) are cut at the fractions
        assert [len({r.episode_id or r.id for r in members}) for members in splits.values()] == [24, 8, 8]
        again = split_records(records + singles, {"train": 0.6, "validation": 0.2, "test": 0.2}, seed=3,
                              group_by_image=group_by_image)
        assert {k: [r.id for r in v] for k, v in again.items()} == {k: [r.id for r in v] for k, v in splits.items()}
    other = split_records(records + singles, {"train": 0.6, "validation": 0.2, "test": 0.2}, seed=4)
    assert [r.id for r in other["test"]] != [r.id for r in splits["test"]]


def test_split_records_joins_an_episode_and_a_record_sharing_its_screen():
    episode = [UIRecord(id=f"e-{i}", image=f"images/e{i}.png", image_size=[10, 10], instruction="i",
                        action={"type": "done"}, history=[{"type": "done"}] * i, episode_id="e", step=i,
                        base_dir=Path("/data")) for i in range(3)]
    same_screen = UIRecord(id="x", image="images/e2.png", image_size=[10, 10], instruction="j",
                           action={"type": "done"}, base_dir=Path("/data"))
    for seed in range(6):
        splits = split_records([same_screen] + episode, {"train": 0.5, "test": 0.5}, seed=seed)
        assert sorted(len(v) for v in splits.values()) == [0, 4]


# -- MiniWoB++ demonstrations in a real Chromium ------------------------------------------------------------

_available, _reason = mw.chrome_available()
_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.mark.skipif(not _available and not _ci, reason=_reason)
def test_miniwob_demonstrations_are_episodes(tmp_path: Path):
    path = mw.record_demonstrations(["login-user"], episodes=2, seed=0, out_dir=tmp_path)
    records = read_records(path)  # validated, episodes checked
    assert len(records) == 10
    assert [r.episode_id for r in records] == ["miniwob-train-login-user-00000"] * 5 + \
        ["miniwob-train-login-user-00001"] * 5
    assert [r.step for r in records] == [0, 1, 2, 3, 4] * 2
    for episode in (records[:5], records[5:]):
        for step, record in enumerate(episode):
            assert record.history == [r.action for r in episode[:step]]
            assert record.history_images == [r.image for r in episode[:step]]
            assert record.id == f"{record.episode_id}-{step:02d}"
        # the earlier screenshots are what the browser showed then: typing the username changed the screen
        before, after = (im.tobytes() for im in episode[4].load_history_images()[1:3])
        assert before != after
        assert episode[4].load_history_images()[2].tobytes() == episode[2].load_image().tobytes()
    # one file per step: history_images reuse the steps' own screenshots
    assert len(list((tmp_path / "images").rglob("*.png"))) == 10
    validate_episodes(records)
    splits = split_records(records, {"train": 0.5, "test": 0.5}, seed=0)
    assert sorted(len(v) for v in splits.values()) == [5, 5]
