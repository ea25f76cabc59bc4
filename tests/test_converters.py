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

from uivlm_helpers import data
from uivlm_helpers.converters import CONVERTERS, convert

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
        records = data.read_records(out)  # the output validates on its own
        return {r.id: r for r in records}, out

    return run


def colour_at(record: data.UIRecord, x: float, y: float) -> tuple[int, int, int]:
    with Image.open(record.image_path) as image:
        return image.convert("RGB").getpixel((int(x), int(y)))


def close(a, b, tolerance=0):
    return all(abs(p - q) <= tolerance for p, q in zip(a, b))


def assert_on(record: data.UIRecord, colour, tolerance: int = 0):
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
    step_level, _ = converted("androidcontrol", instruction="step")
    assert step_level["androidcontrol-101-001"].instruction == "Tap the add contact button"


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
    (record,) = data.read_records(out)
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
    with pytest.raises(data.RecordError, match=r"screenspot_bad\.json record 2: field 'bbox'"):
        convert("screenspot", source, images, tmp_path / "out" / "test.jsonl")
    assert not (tmp_path / "out" / "test.jsonl").exists()

    out = convert("screenspot", source, images, tmp_path / "out" / "test.jsonl", strict=False)
    assert out.report.n_written == 3 and len(out.report.errors) == 1
    assert "record 2" in out.report.errors[0] and len(data.read_records(out)) == 3


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
    with pytest.raises(data.RecordError) as error:
        convert("screenspot", source, images, tmp_path / "out" / "test.jsonl")
    assert error.value.where == f"{source} record 1" and error.value.field == field
    assert message in str(error.value)


def test_screenspot_pro_img_size_must_match_the_file(tmp_path):
    images = draw_screens("screenspot_pro", tmp_path / "raw")
    samples = json.loads((FIXTURES / "screenspot_pro" / "screenspot_pro_fixture.json").read_text())
    samples[1]["img_size"] = [960, 540]
    source = write_json(tmp_path / "pro.json", samples)
    with pytest.raises(data.RecordError, match=r"pro\.json record 2: field 'img_size'"):
        convert("screenspot_pro", source, images, tmp_path / "out" / "test.jsonl")


def test_aitw_pixel_coordinates_are_rejected_with_episode_and_step(tmp_path):
    images = draw_screens("aitw", tmp_path / "raw")
    episodes = json.loads((FIXTURES / "aitw" / "aitw_data_test.json").read_text())
    episodes["single"][0][1]["touch"] = [140, 40]  # pixels instead of 0-1
    source = write_json(tmp_path / "aitw.json", episodes)
    with pytest.raises(data.RecordError, match=r"aitw\.json record 2 step 2: field 'touch'.*normalised"):
        convert("aitw", source, images, tmp_path / "out" / "test.jsonl")


def test_androidcontrol_bad_episodes(tmp_path):
    images = draw_screens("androidcontrol", tmp_path / "raw")
    lines = (FIXTURES / "androidcontrol" / "androidcontrol_episodes.jsonl").read_text().splitlines()
    episode = json.loads(lines[1])
    episode["screenshots"] = episode["screenshots"][:2]
    source = tmp_path / "ac.jsonl"
    source.write_text(lines[0] + "\n" + json.dumps(episode) + "\n")
    with pytest.raises(data.RecordError, match=r"ac\.jsonl record 2: field 'actions': expected one fewer action"):
        convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl")
    source.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(data.RecordError, match=r"ac\.jsonl record 2: malformed JSON"):
        convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl")
    bad_point = json.loads(lines[0])
    bad_point["actions"][1] = json.dumps({"action_type": "click", "x": 600, "y": 400})
    source.write_text(json.dumps(bad_point) + "\n")
    with pytest.raises(data.RecordError, match=r"ac\.jsonl record 1 step 2: .*outside the 240x480"):
        convert("androidcontrol", source, images, tmp_path / "out" / "test.jsonl")


def test_mind2web_unknown_operation(tmp_path):
    images = draw_screens("mind2web", tmp_path / "raw")
    tasks = json.loads((FIXTURES / "mind2web" / "mind2web_data_test.json").read_text())
    tasks[0]["actions"][0]["operation"]["original_op"] = "DRAG"
    source = write_json(tmp_path / "m2w.json", tasks)
    with pytest.raises(data.RecordError, match=r"m2w\.json record 1 step 1: field 'operation.original_op'"):
        convert("mind2web", source, images, tmp_path / "out" / "test.jsonl")


def test_converted_folder_is_self_contained(tmp_path, converted):
    _, out = converted("aitw")
    moved = tmp_path / "moved"
    shutil.copytree(out.parent, moved)
    shutil.rmtree(tmp_path / "raw")
    assert len(data.read_records(moved / "test.jsonl")) == 9


def test_a_converted_folder_is_a_run_data_source(tmp_path):
    from uivlm_helpers.config import load_config
    from uivlm_helpers.run_data import load_split, prepare_data
    from uivlm_helpers.workbook import RunPaths

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
