"""Converters: public dataset formats -> the workbook's records, with coordinates that land on target.

The annotation fixtures under ``tests/fixtures/<format>/`` are hand-written in each dataset's own
format. The screenshots are drawn here from ``SCREENS``: a plain background with each target element
painted in its own colour at hand-written pixel positions. After conversion, every click point and
box must sit on its target's colour, so a swapped x/y, a forgotten normalisation or a [x, y, w, h]
read as [x1, y1, x2, y2] fails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from uivlm_helpers.data import schema
from uivlm_helpers.data.converters import CONVERTERS, convert

FIXTURES = Path(__file__).parent / "fixtures"
BACKGROUND = (245, 245, 245)
RED, GREEN, BLUE = (220, 30, 30), (30, 170, 60), (40, 60, 220)
ORANGE, PURPLE = (250, 150, 20), (150, 40, 170)

# format -> screenshot file -> ((width, height), [((x1, y1, x2, y2) inclusive pixels, colour), ...])
SCREENS = {
    "screenspot": {
        "mobile_1.png": ((200, 400), [((30, 300, 109, 339), RED), ((150, 40, 179, 69), BLUE)]),
        "web_1.png": ((400, 240), [((250, 20, 369, 49), GREEN)]),
        "desktop_1.png": ((320, 220), [((5, 180, 30, 205), ORANGE)]),
    },
    "screenspot_pro": {
        "pro_1.png": ((480, 270), [((400, 200, 439, 229), PURPLE), ((10, 10, 89, 29), GREEN)]),
    },
    "mind2web": {
        "task-1-a1.jpg": ((320, 240), [((20, 150, 119, 179), RED)]),
        "task-1-a2.jpg": ((320, 240), [((180, 21, 299, 44), GREEN)]),
        "task-1-a3.jpg": ((320, 240), [((200, 190, 289, 219), BLUE)]),
        "task-1-a4.jpg": ((320, 240), [((10, 10, 69, 49), ORANGE)]),
    },
    "aitw": {
        "general/ep1_0.png": ((200, 400), [((40, 310, 61, 329), RED)]),
        "general/ep1_1.png": ((200, 400), []),
        "single/ep2_0.png": ((200, 400), [((120, 30, 159, 49), BLUE)]),
    },
    "androidcontrol": {
        **{f"ep101_{i}.png": ((240, 480), []) for i in (0, 2, 3, 5, 6)},
        "ep101_1.png": ((240, 480), [((30, 385, 89, 414), GREEN)]),
        "ep101_4.png": ((240, 480), [((180, 35, 219, 64), PURPLE)]),
    },
}
SOURCES = {
    "screenspot": "screenspot_v2.json",
    "screenspot_pro": "screenspot_pro_fixture.json",
    "mind2web": "mind2web_data_test.json",
    "aitw": "aitw_data_test.json",
    "androidcontrol": "androidcontrol_episodes.jsonl",
}


def draw_screens(fmt: str, root: Path) -> Path:
    for name, (size, targets) in SCREENS[fmt].items():
        image = Image.new("RGB", size, BACKGROUND)
        draw = ImageDraw.Draw(image)
        for box, colour in targets:
            draw.rectangle(box, fill=colour)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=95) if path.suffix == ".jpg" else image.save(path)
    return root


@pytest.fixture
def converted(tmp_path):
    """``converted(fmt, **options)`` -> (records by id, output path)."""

    def run(fmt: str, **options):
        images = draw_screens(fmt, tmp_path / "raw" / fmt)
        out = convert(fmt, FIXTURES / fmt / SOURCES[fmt], images, tmp_path / "out" / fmt / "test.jsonl", **options)
        records = schema.read_records(out)  # the output validates on its own
        return {r.id: r for r in records}, out

    return run


def colour_at(record: schema.UIRecord, x: float, y: float) -> tuple[int, int, int]:
    with Image.open(record.image_path) as image:
        return image.convert("RGB").getpixel((int(x), int(y)))


def close(a, b, tolerance=0):
    return all(abs(p - q) <= tolerance for p, q in zip(a, b))


def assert_on(record: schema.UIRecord, colour, tolerance: int = 0):
    """The click point and the box (corners just inside, and just outside) match the target."""
    if "x" in record.action:
        got = colour_at(record, record.action["x"], record.action["y"])
        assert close(got, colour, tolerance), f"{record.id}: click {record.action} is on {got}, not {colour}"
    if record.bbox is not None:
        x1, y1, x2, y2 = record.bbox
        for x, y in ((x1 + 1, y1 + 1), (x2 - 1.01, y1 + 1), (x1 + 1, y2 - 1.01), (x2 - 1.01, y2 - 1.01)):
            got = colour_at(record, x, y)
            assert close(got, colour, tolerance), f"{record.id}: bbox corner ({x}, {y}) is on {got}, not {colour}"
        width, height = record.image_size
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        for x, y in ((x1 - 2, my), (x2 + 1, my), (mx, y1 - 2), (mx, y2 + 1)):
            if 0 <= x < width and 0 <= y < height:
                assert not close(colour_at(record, x, y), colour, tolerance), f"{record.id}: bbox is too large"


# ---------------------------------------------------------------------------------------------------
# Coordinates land on the target
# ---------------------------------------------------------------------------------------------------

def test_screenspot_xywh_boxes_become_x1y1x2y2_and_clicks_land_on_target(converted):
    records, out = converted("screenspot")
    assert len(records) == 4
    first, second, web, desktop = (records[f"screenspot_v2-00000{i}"] for i in range(1, 5))
    assert first.bbox == [30, 300, 110, 340] and first.action == {"type": "click", "x": 70, "y": 320}
    for record, colour in ((first, RED), (second, BLUE), (web, GREEN), (desktop, ORANGE)):
        assert_on(record, colour)
    assert desktop.bbox == [5, 180, 30.5, 205.5] and desktop.action == {"type": "click", "x": 17.75, "y": 192.75}
    assert (first.element_type, second.element_type) == ("text", "icon")
    assert (first.platform, web.platform, desktop.platform) == ("mobile", "web", "desktop")
    assert first.source == "screenspot/android" and web.source == "screenspot/gitlab"
    assert {r.split for r in records.values()} == {"test"}
    # self-contained: one copy of each screenshot inside the output folder
    assert sorted(p.name for p in (out.parent / "images").iterdir()) == ["desktop_1.png", "mobile_1.png", "web_1.png"]
    assert out.report.n_read == 4 and out.report.n_written == 4 and out.report.n_skipped == 0


def test_screenspot_pro_x1y1x2y2_boxes_and_negatives_skipped_with_a_count(converted):
    records, out = converted("screenspot_pro")
    assert sorted(records) == ["screenspot_pro-blender_macos_0", "screenspot_pro-blender_macos_1"]
    render, menu = records["screenspot_pro-blender_macos_0"], records["screenspot_pro-blender_macos_1"]
    assert render.bbox == [400, 200, 440, 230] and render.action == {"type": "click", "x": 420, "y": 215}
    assert_on(render, PURPLE)
    assert_on(menu, GREEN)
    assert (render.element_type, menu.element_type, render.platform) == ("icon", "text", "desktop")
    assert render.source == "screenspot_pro/Creative/blender"
    assert out.report.n_read == 3 and out.report.n_written == 2
    assert out.report.skipped == {"negative sample (target not on screen)": 1}
    saved = json.loads(out.with_name("test.report.json").read_text())
    assert saved["skipped"] == {"negative sample (target not on screen)": 1}


def test_mind2web_operations_and_history(converted):
    records, out = converted("mind2web")
    click, typed, selected, hover = (records[f"mind2web-task-1-a{i}"] for i in range(1, 5))
    assert click.action == {"type": "click", "x": 70, "y": 165}
    assert typed.action == {"type": "type", "text": "New York"}
    assert selected.action == {"type": "type", "text": "2 adults"}  # select_as="type" (default)
    assert hover.action == {"type": "click", "x": 40, "y": 30}      # HOVER counts as click
    for record, colour in ((click, RED), (typed, GREEN), (selected, BLUE), (hover, ORANGE)):
        assert_on(record, colour, tolerance=40)  # JPEG screenshots
    assert typed.bbox == [180, 20.5, 300, 44.5]
    assert (click.element_type, typed.element_type, selected.element_type) == ("button", "searchbox", "combobox")
    assert hover.history == [click.action, typed.action, selected.action]
    assert click.history == [] and click.instruction == "Find events in New York for 2 adults."
    assert {r.platform for r in records.values()} == {"web"} and click.source == "mind2web/seatgeek"
    assert out.report.skipped == {"step without a bbox (SeeClick found no box for it)": 1}


def test_mind2web_select_as_click(converted):
    records, _ = converted("mind2web", select_as="click")
    selected = records["mind2web-task-1-a3"]
    assert selected.action == {"type": "click", "x": 245, "y": 205}
    assert_on(selected, BLUE, tolerance=40)


def test_aitw_touch_lift_are_x_y_and_every_action_code_maps(converted):
    records, out = converted("aitw")
    tap = records["aitw-ep1-0"]
    assert tap.action == {"type": "click", "x": 51, "y": 320}  # midpoint of (0.25, 0.8) and (0.26, 0.8)
    assert tap.bbox == [40, 310, 62, 330]  # the smallest annotation (y, x, h, w) box holding the tap
    assert_on(tap, RED)
    assert records["aitw-ep1-1"].action == {"type": "type", "text": "hotels in paris"}
    assert records["aitw-ep1-2"].action == {"type": "press", "key": "Enter"}
    assert records["aitw-ep1-3"].action == {"type": "scroll", "direction": "down", "amount": 240}
    assert records["aitw-ep1-4"].action == {"type": "scroll", "direction": "left", "amount": 120}
    assert records["aitw-ep1-5"].action == {"type": "done"}
    assert records["aitw-ep1-5"].history == [records[f"aitw-ep1-{i}"].action for i in range(5)]
    assert records["aitw-ep2-0"].action == {"type": "press", "key": "Home"}
    second_tap = records["aitw-ep2-1"]
    assert second_tap.action == {"type": "click", "x": 140, "y": 40}
    assert_on(second_tap, BLUE)
    assert records["aitw-ep2-2"].action == {"type": "press", "key": "Back"}
    assert "aitw-ep2-3" not in records  # IMPOSSIBLE
    assert out.report.skipped == {"STATUS_TASK_IMPOSSIBLE (no action in the workbook's language)": 1}
    assert tap.source == "aitw/general" and second_tap.source == "aitw/single"
    assert {r.platform for r in records.values()} == {"mobile"}
    assert tap.instruction == "search for hotels in paris"


def test_aitw_impossible_as_done(converted):
    records, out = converted("aitw", impossible_as_done=True)
    assert records["aitw-ep2-3"].action == {"type": "done"}
    assert out.report.n_skipped == 0


def test_androidcontrol_steps_pixels_and_history(converted):
    records, out = converted("androidcontrol")
    click, typed, scroll, long_press, press = (records[f"androidcontrol-101-00{i}"] for i in range(1, 6))
    assert click.action == {"type": "click", "x": 60, "y": 400}
    assert_on(click, GREEN)
    assert long_press.action == {"type": "long_press", "x": 200, "y": 50}
    assert_on(long_press, PURPLE)
    assert typed.action == {"type": "type", "text": "Ada"}
    assert scroll.action == {"type": "scroll", "direction": "down", "amount": 240}
    assert press.action == {"type": "press", "key": "Back"}
    assert records["androidcontrol-102-000"].action == {"type": "press", "key": "Home"}
    assert records["androidcontrol-102-001"].action == {"type": "wait", "seconds": 1}
    assert typed.history == [click.action]  # open_app (skipped) is not in the history
    assert click.instruction == "Add a new contact named Ada"
    assert out.report.skipped == {"open_app (no pixel action in the workbook's language)": 1}
    assert "androidcontrol-101-000" not in records
    step_level, _ = converted("androidcontrol", mode="low")
    assert step_level["androidcontrol-101-001"].instruction == "Tap the add contact button"


# ---------------------------------------------------------------------------------------------------
# Episodes: episode_id, step, history and history_images
# ---------------------------------------------------------------------------------------------------

# format -> {episode_id: [record ids in step order]} the fixtures must give
EPISODES = {
    "mind2web": {"mind2web-task-1": [f"mind2web-task-1-a{i}" for i in range(1, 5)]},
    "aitw": {"aitw-ep1": [f"aitw-ep1-{i}" for i in range(6)], "aitw-ep2": [f"aitw-ep2-{i}" for i in range(3)]},
    "androidcontrol": {"androidcontrol-101": [f"androidcontrol-101-00{i}" for i in range(1, 6)],
                       "androidcontrol-102": ["androidcontrol-102-000", "androidcontrol-102-001"]},
}


def assert_whole_episodes(records: dict[str, schema.UIRecord], expected: dict[str, list[str]], out: Path):
    """Each episode's records are steps 0..n-1 whose history and history_images are the earlier steps'."""
    episodes: dict[str, list[schema.UIRecord]] = {}
    for record in records.values():
        episodes.setdefault(record.episode_id, []).append(record)
    assert {e: [r.id for r in sorted(rs, key=lambda r: r.step)] for e, rs in episodes.items()} == expected
    for members in episodes.values():
        members.sort(key=lambda r: r.step)
        assert [r.step for r in members] == list(range(len(members)))
        for step, record in enumerate(members):
            assert record.history == [r.action for r in members[:step]]
            assert record.history_images == [r.image for r in members[:step]]
            # the earlier screenshots are the dataset's own files
            assert all(p.is_file() and p.is_relative_to(out.parent.resolve()) for p in record.history_image_paths)
    schema.validate_episodes(records.values())


@pytest.mark.parametrize("fmt", sorted(EPISODES))
def test_episode_formats_give_whole_episodes(converted, fmt):
    records, out = converted(fmt)
    assert_whole_episodes(records, EPISODES[fmt], out)
    first, last = (json.loads(line) for line in out.read_text().splitlines()[::len(records) - 1])
    assert list(first)[-2:] == ["episode_id", "step"] and "history_images" not in first  # step 0: none earlier
    assert list(last)[-3:] == ["episode_id", "step", "history_images"]
    again, _ = converted(fmt)  # stable: the same source gives the same episode ids
    assert {r.id: (r.episode_id, r.step) for r in again.values()} == {r.id: (r.episode_id, r.step)
                                                                       for r in records.values()}


def test_single_step_formats_write_no_episode_fields(converted):
    for fmt in ("screenspot", "screenspot_pro"):
        records, out = converted(fmt)
        assert all(r.episode_id is None and r.step is None and r.history_images == [] for r in records.values())
        assert not any({"episode_id", "step", "history_images"} & set(json.loads(line))
                       for line in out.read_text().splitlines())


def test_a_step_skipped_mid_episode_leaves_no_gap(tmp_path):
    images = draw_screens("aitw", tmp_path / "raw")
    episodes = json.loads((FIXTURES / "aitw" / "aitw_data_test.json").read_text())
    single = episodes["single"][0]
    single.insert(1, single.pop(3))  # the IMPOSSIBLE step (skipped) now sits second
    out = convert("aitw", write_json(tmp_path / "aitw.json", episodes), images, tmp_path / "out" / "test.jsonl")
    records = {r.id: r for r in schema.read_records(out)}
    assert_whole_episodes(records, EPISODES["aitw"], out)  # ids come from the steps' own "step" field
    assert records["aitw-ep2-1"].step == 1 and records["aitw-ep2-1"].history == [records["aitw-ep2-0"].action]
    assert out.report.skipped == {"STATUS_TASK_IMPOSSIBLE (no action in the workbook's language)": 1}


def test_a_source_episode_id_met_twice_gives_two_episodes(tmp_path):
    images = draw_screens("androidcontrol", tmp_path / "raw")
    episode = json.loads((FIXTURES / "androidcontrol" / "androidcontrol_episodes.jsonl").read_text().splitlines()[1])
    out = convert("androidcontrol", [episode, episode], images, tmp_path / "out" / "test.jsonl")
    records = {r.id: r for r in schema.read_records(out)}
    assert_whole_episodes(records, {"androidcontrol-102": ["androidcontrol-102-000", "androidcontrol-102-001"],
                                    "androidcontrol-102-2": ["androidcontrol-102-000-2", "androidcontrol-102-001-2"]},
                          out)


def test_androidcontrol_modes_set_the_instruction_and_the_source(converted, tmp_path):
    high, _ = converted("androidcontrol")
    low, out = converted("androidcontrol", mode="low")
    assert [r.instruction for r in high.values()][:2] == ["Add a new contact named Ada"] * 2
    assert [low[f"androidcontrol-101-00{i}"].instruction for i in range(1, 6)] == [
        "Tap the add contact button", "Type the name Ada", "Scroll down", "Long press the menu", "Go back"]
    assert {r.source for r in high.values()} == {"androidcontrol/high"}
    assert {r.source for r in low.values()} == {"androidcontrol/low"}
    assert_whole_episodes(low, EPISODES["androidcontrol"], out)  # the mode changes instructions only
    assert {i: r.action for i, r in low.items()} == {i: r.action for i, r in high.items()}

    images = draw_screens("androidcontrol", tmp_path / "raw")
    episode = json.loads((FIXTURES / "androidcontrol" / "androidcontrol_episodes.jsonl").read_text().splitlines()[0])
    episode["step_instructions"][2] = " "
    with pytest.raises(schema.RecordError) as error:
        convert("androidcontrol", [episode], images, tmp_path / "bad" / "test.jsonl", mode="low")
    assert error.value.where == "<records> record 1 step 3" and error.value.field == "step_instructions[2]"
    assert "mode='low'" in str(error.value)
    # The goal needs no step instructions; a bad step (strict=False) leaves no gap in the episode.
    assert len(schema.read_records(convert("androidcontrol", [episode], images, tmp_path / "h" / "t.jsonl"))) == 5
    out = convert("androidcontrol", [episode], images, tmp_path / "low" / "t.jsonl", mode="low", strict=False)
    kept = {r.id: r for r in schema.read_records(out)}
    assert sorted(kept) == ["androidcontrol-101-001", "androidcontrol-101-003", "androidcontrol-101-004",
                            "androidcontrol-101-005"] and len(out.report.errors) == 1
    assert [kept[i].step for i in sorted(kept)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="mode: expected 'high'"):
        convert("androidcontrol", [episode], images, tmp_path / "x" / "t.jsonl", mode="step")


def test_every_format_has_a_converter_and_a_fixture():
    assert set(SOURCES) <= set(CONVERTERS)
    for fmt, name in SOURCES.items():
        assert (FIXTURES / fmt / name).is_file()
    with pytest.raises(ValueError, match="known formats"):
        convert("rico", [], ".", "out.jsonl")


def test_records_in_memory_are_accepted(tmp_path):
    images = draw_screens("screenspot", tmp_path / "raw")
    samples = json.loads((FIXTURES / "screenspot" / "screenspot_v2.json").read_text())[:1]
    out = convert("screenspot", samples, images, tmp_path / "out" / "test.jsonl")
    (record,) = schema.read_records(out)
    assert_on(record, RED)


# ---------------------------------------------------------------------------------------------------
# Bad input: errors name the source file and the record number
# ---------------------------------------------------------------------------------------------------

def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_bad_box_names_source_file_and_record(tmp_path):
    images = draw_screens("screenspot", tmp_path / "raw")
    samples = json.loads((FIXTURES / "screenspot" / "screenspot_v2.json").read_text())
    samples[1]["bbox"] = [150, 40, 30]
    source = write_json(tmp_path / "screenspot_bad.json", samples)
    with pytest.raises(schema.RecordError, match=r"screenspot_bad\.json record 2: field 'bbox'"):
        convert("screenspot", source, images, tmp_path / "out" / "test.jsonl")
    assert not (tmp_path / "out" / "test.jsonl").exists()

    out = convert("screenspot", source, images, tmp_path / "out" / "test.jsonl", strict=False)
    assert out.report.n_written == 3 and len(out.report.errors) == 1
    assert "record 2" in out.report.errors[0] and len(schema.read_records(out)) == 3


@pytest.mark.parametrize("change, field, message", [
    (lambda s: s.update(img_filename="missing.png"), "img_filename", "not found"),
    (lambda s: s.update(bbox=[400, 300, 50, 50]), "bbox", "outside"),
    (lambda s: s.update(bbox=[30, 300, -80, 40]), "bbox", "positive width"),
    (lambda s: s.pop("instruction"), "instruction", "missing"),
    (lambda s: s.update(instruction="  "), "instruction", "non-empty"),
])
def test_bad_screenspot_records(tmp_path, change, field, message):
    images = draw_screens("screenspot", tmp_path / "raw")
    samples = json.loads((FIXTURES / "screenspot" / "screenspot_v2.json").read_text())
    change(samples[0])
    source = write_json(tmp_path / "ss.json", samples)
    with pytest.raises(schema.RecordError) as error:
        convert("screenspot", source, images, tmp_path / "out" / "test.jsonl")
    assert error.value.where == f"{source} record 1" and error.value.field == field
    assert message in str(error.value)


def test_screenspot_pro_img_size_must_match_the_file(tmp_path):
    images = draw_screens("screenspot_pro", tmp_path / "raw")
    samples = json.loads((FIXTURES / "screenspot_pro" / "screenspot_pro_fixture.json").read_text())
    samples[1]["img_size"] = [960, 540]
    source = write_json(tmp_path / "pro.json", samples)
    with pytest.raises(schema.RecordError, match=r"pro\.json record 2: field 'img_size'"):
        convert("screenspot_pro", source, images, tmp_path / "out" / "test.jsonl")


def test_aitw_pixel_coordinates_are_rejected_with_episode_and_step(tmp_path):
    images = draw_screens("aitw", tmp_path / "raw")
    episodes = json.loads((FIXTURES / "aitw" / "aitw_data_test.json").read_text())
    episodes["single"][0][1]["touch"] = [140, 40]  # pixels instead of 0-1
    source = write_json(tmp_path / "aitw.json", episodes)
    with pytest.raises(schema.RecordError, match=r"aitw\.json record 2 step 2: field 'touch'.*normalised"):
        convert("aitw", source, images, tmp_path / "out" / "test.jsonl")


def test_androidcontrol_bad_episodes(tmp_path):
    images = draw_screens("androidcontrol", tmp_path / "raw")
    lines = (FIXTURES / "androidcontrol" / "androidcontrol_episodes.jsonl").read_text().splitlines()
    episode = json.loads(lines[1])
    episode["screenshots"] = episode["screenshots"][:2]
    source = tmp_path / "ac.jsonl"
    source.write_text(lines[0] + "\n" + json.dumps(episode) + "\n")
    with pytest.raises(schema.RecordError, match=r"ac\.jsonl record 2: field 'actions': expected one fewer action"):
        convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl")
    source.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(schema.RecordError, match=r"ac\.jsonl record 2: malformed JSON"):
        convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl")
    bad_point = json.loads(lines[0])
    bad_point["actions"][1] = json.dumps({"action_type": "click", "x": 600, "y": 400})
    source.write_text(json.dumps(bad_point) + "\n")
    with pytest.raises(schema.RecordError, match=r"ac\.jsonl record 1 step 2: .*outside the 240x480"):
        convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl")


def test_mind2web_unknown_operation(tmp_path):
    images = draw_screens("mind2web", tmp_path / "raw")
    tasks = json.loads((FIXTURES / "mind2web" / "mind2web_data_test.json").read_text())
    tasks[0]["actions"][0]["operation"]["original_op"] = "DRAG"
    source = write_json(tmp_path / "m2w.json", tasks)
    with pytest.raises(schema.RecordError, match=r"m2w\.json record 1 step 1: field 'operation.original_op'"):
        convert("mind2web", source, images, tmp_path / "out" / "test.jsonl")


def test_converted_folder_is_self_contained(tmp_path, converted):
    _, out = converted("aitw")
    moved = tmp_path / "moved"
    shutil.copytree(out.parent, moved)
    shutil.rmtree(tmp_path / "raw")
    assert len(schema.read_records(moved / "test.jsonl")) == 9


def test_a_converted_folder_is_a_run_data_source(tmp_path):
    from uivlm_helpers.core.config import load_config
    from uivlm_helpers.core.paths import RunPaths
    from uivlm_helpers.data.run_data import load_split, prepare_data

    images = draw_screens("screenspot", tmp_path / "raw")
    folder = tmp_path / "screenspot_converted"
    source = FIXTURES / "screenspot" / "screenspot_v2.json"
    convert("screenspot", source, images, folder / "train.jsonl", split="train")
    convert("screenspot", source, images, folder / "test.jsonl")
    paths = RunPaths(tmp_path / "run")
    prepare_data(load_config({"data": {"source": str(folder)}}), paths)
    test = load_split(paths, "test")
    assert len(test) == 4 and test[0]["element_type"] == "text" and test[0]["platform"] == "mobile"
    assert Path(test[0]["image"]).is_relative_to(folder)


# ---------------------------------------------------------------------------------------------------
# Screenshots stay inside the image root
# ---------------------------------------------------------------------------------------------------

# format -> (set the first record's screenshot name in the loaded source, the file that name finds)
FIRST_SCREENSHOT = {
    "screenspot": (lambda source, name: source[0].update(img_filename=name), "mobile_1.png"),
    "screenspot_pro": (lambda source, name: source[0].update(img_filename=name), "pro_1.png"),
    # Mind2Web names a step's screenshot "{annotation_id}-{action_uid}.jpg".
    "mind2web": (lambda source, name: source[0].update(annotation_id=name.removesuffix("-a1.jpg")), "task-1-a1.jpg"),
    "aitw": (lambda source, name: source["general"][0][0].update(img_filename=name), "general/ep1_0.png"),
    "androidcontrol": (lambda source, name: source[0]["screenshots"].__setitem__(0, name), "ep101_0.png"),
}


def load_source(fmt: str):
    path = FIXTURES / fmt / SOURCES[fmt]
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def save_source(fmt: str, source, folder: Path) -> Path:
    path = folder / SOURCES[fmt]
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(item) + "\n" for item in source))
    else:
        path.write_text(json.dumps(source))
    return path


def secret_screenshot(fmt: str, root: Path, folder: Path) -> Path:
    """A screenshot outside the image root, the size of the first one but of a colour no screen has."""
    _, name = FIRST_SCREENSHOT[fmt]
    with Image.open(root / name) as first:
        size = first.size
    path = folder / Path(name).name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (1, 2, 3)).save(path, quality=95) if path.suffix == ".jpg" else Image.new(
        "RGB", size, (1, 2, 3)).save(path)
    return path


@pytest.mark.parametrize("how", ["dot-dot", "symlink"])
@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_screenshots_outside_the_image_root_are_refused_and_never_copied(tmp_path, fmt, how):
    root = draw_screens(fmt, tmp_path / "raw" / fmt)
    set_name, name = FIRST_SCREENSHOT[fmt]
    secret = secret_screenshot(fmt, root, tmp_path / "raw" / "outside")
    source = load_source(fmt)
    if how == "dot-dot":
        set_name(source, f"../outside/{secret.name}")
    else:
        (root / name).unlink()
        (root / name).symlink_to(secret)
    source = save_source(fmt, source, tmp_path)
    out = tmp_path / "out" / "test.jsonl"

    with pytest.raises(schema.RecordError) as error:
        convert(fmt, source, root, out)
    message = str(error.value)
    assert error.value.where.startswith(f"{source} record 1"), message
    assert "inside the image root" in message and str(secret) in message
    assert ("through '..'" if how == "dot-dot" else "through a symbolic link") in message
    assert not out.exists()

    converted = convert(fmt, source, root, out, strict=False)
    assert converted.report.errors and f"{source} record 1" in converted.report.errors[0]
    copied = [p for p in (out.parent / "images").rglob("*") if p.is_file()]
    assert secret.read_bytes() not in {p.read_bytes() for p in copied}
    assert len(schema.read_records(converted)) == converted.report.n_written


def test_absolute_screenshot_names_are_refused(tmp_path):
    images = draw_screens("screenspot", tmp_path / "raw")
    samples = json.loads((FIXTURES / "screenspot" / "screenspot_v2.json").read_text())
    samples[0]["img_filename"] = str(images / "mobile_1.png")
    with pytest.raises(schema.RecordError, match=r"<records> record 1: field 'img_filename': expected a path "
                                               r"relative to the image root, got absolute path"):
        convert("screenspot", samples, images, tmp_path / "out" / "test.jsonl")


# ---------------------------------------------------------------------------------------------------
# Text that is not UTF-8
# ---------------------------------------------------------------------------------------------------

def test_jsonl_line_that_is_not_utf8_names_file_and_line(tmp_path):
    images = draw_screens("androidcontrol", tmp_path / "raw")
    first, second = (FIXTURES / "androidcontrol" / "androidcontrol_episodes.jsonl").read_text().splitlines()[:2]
    latin1 = json.dumps({**json.loads(second), "goal": "Ouvre l'écran"}, ensure_ascii=False).encode("latin-1")
    source = tmp_path / "ac.jsonl"
    source.write_bytes(first.encode() + b"\n\n" + latin1 + b"\n")
    with pytest.raises(schema.RecordError, match=r"ac\.jsonl record 3: expected UTF-8 text, got byte 0xe9"):
        convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl")

    out = convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl", strict=False)
    assert len(out.report.errors) == 1 and "ac.jsonl record 3" in out.report.errors[0]
    assert {r.id.rsplit("-", 1)[0] for r in schema.read_records(out)} == {"androidcontrol-101"}


def test_json_record_that_is_not_utf8_is_that_record_only(tmp_path):
    images = draw_screens("screenspot", tmp_path / "raw")
    text = (FIXTURES / "screenspot" / "screenspot_v2.json").read_bytes()
    source = tmp_path / "ss.json"
    source.write_bytes(text.replace(b"tap the search icon", b"tap the search ic\xf4ne"))
    with pytest.raises(schema.RecordError) as error:
        convert("screenspot", source, images, tmp_path / "out" / "test.jsonl")
    assert error.value.where == f"{source} record 2" and error.value.field == "instruction"
    assert "expected UTF-8 text, got byte 0xf4 at character 18" in str(error.value)

    out = convert("screenspot", source, images, tmp_path / "out" / "test.jsonl", strict=False)
    assert out.report.n_read == 4 and out.report.n_written == 3 and "record 2" in out.report.errors[0]


def test_line_separator_characters_inside_jsonl_strings_are_text(tmp_path):
    images = draw_screens("androidcontrol", tmp_path / "raw")
    episode = json.loads((FIXTURES / "androidcontrol" / "androidcontrol_episodes.jsonl").read_text().splitlines()[0])
    episode["goal"] = "Add a contact\u2028named Ada"  # legal unescaped in JSON; not a line break in JSONL
    source = tmp_path / "ac.jsonl"
    source.write_text(json.dumps(episode, ensure_ascii=False) + "\n", encoding="utf-8")
    out = convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl")
    assert schema.read_records(out)[0].instruction == "Add a contact\u2028named Ada"


# ---------------------------------------------------------------------------------------------------
# Screenshot pixel limit
# ---------------------------------------------------------------------------------------------------

def test_oversize_screenshots_are_refused_from_their_header(tmp_path):
    images = draw_screens("screenspot", tmp_path / "raw")
    Image.new("1", (12000, 12000)).save(images / "web_1.png")  # 144 MP, about 20 kB on disk
    source = FIXTURES / "screenspot" / "screenspot_v2.json"
    with pytest.raises(schema.RecordError) as error:
        convert("screenspot", source, images, tmp_path / "out" / "test.jsonl")
    assert error.value.where == f"{source} record 3" and error.value.field == "img_filename"
    assert "web_1.png: expected at most 50,000,000 pixels" in str(error.value) and "12000x12000" in str(error.value)
    out = convert("screenspot", source, images, tmp_path / "out" / "test.jsonl", strict=False, max_pixels=200_000)
    assert out.report.n_written == 3 and "record 3" in out.report.errors[0] and "200,000" in out.report.errors[0]


# ---------------------------------------------------------------------------------------------------
# Boxes past the image edge: clipped and reported, or refused
# ---------------------------------------------------------------------------------------------------

def test_clipped_boxes_are_counted_and_listed_in_the_report(tmp_path):
    images = tmp_path / "raw"
    images.mkdir()
    Image.new("RGB", (100, 80), BACKGROUND).save(images / "small.png")
    sample = {"img_filename": "small.png", "instruction": "tap it", "data_type": "icon", "data_source": "ios"}
    source = write_json(tmp_path / "ss.json", [
        {**sample, "bbox": [90, 70, 50, 50]},   # reaches past the bottom-right corner
        {**sample, "bbox": [10, 10, 20, 20]},   # inside
        {**sample, "bbox": [120, 10, 10, 10]},  # entirely to the right of the image
        {**sample, "bbox": [-4, 0, 10, 80]},    # past the left edge
    ])
    with pytest.raises(schema.RecordError, match=r"ss\.json record 3: field 'bbox': .*lies outside the 100x80 image"):
        convert("screenspot", source, images, tmp_path / "out" / "test.jsonl")

    out = convert("screenspot", source, images, tmp_path / "out" / "test.jsonl", strict=False)
    records = {r.id: r for r in schema.read_records(out)}
    corner = records["ss-000001"]
    assert corner.bbox == [90, 70, 100, 80] and corner.action == {"type": "click", "x": 95, "y": 75}
    report = out.report
    assert report.n_written == 3 and report.n_clipped == 2 and len(report.errors) == 1
    assert report.clipped == [
        {"id": "ss-000001", "where": f"{source} record 1", "field": "bbox",
         "original": [90, 70, 140, 120], "clipped": [90, 70, 100, 80]},
        {"id": "ss-000004", "where": f"{source} record 4", "field": "bbox",
         "original": [-4, 0, 6, 80], "clipped": [0, 0, 6, 80]},
    ]
    assert "clipped 2 box(es)" in report.summary() and "[90, 70, 140, 120] -> [90, 70, 100, 80]" in report.summary()
    assert json.loads(out.with_name("test.report.json").read_text())["clipped"] == report.clipped


def test_clipped_annotation_boxes_are_reported_under_the_final_ids(tmp_path, converted):
    # The AITW tap's annotation box (y, x, h, w) reaches past the right edge of the screen.
    episodes = json.loads((FIXTURES / "aitw" / "aitw_data_test.json").read_text())
    episodes["general"][0][0]["annot_position"] = [0.775, 0.2, 0.05, 0.9]
    source = write_json(tmp_path / "aitw.json", episodes)
    images = draw_screens("aitw", tmp_path / "raw")
    out = convert("aitw", source, images, tmp_path / "out" / "test.jsonl")
    (clip,) = out.report.clipped
    assert clip["id"] == "aitw-ep1-0" and clip["field"] == "annot_position"
    assert clip["where"] == f"{source} record 1 step 1"
    assert clip["original"] == [40, 310, 220, 330] and clip["clipped"] == [40, 310, 200, 330]
    _, untouched = converted("aitw")
    assert untouched.report.clipped == [] and untouched.report.n_clipped == 0
