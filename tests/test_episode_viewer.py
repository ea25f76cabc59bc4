"""The episode viewer of 04_eval on real synthetic screenshots: grouping, scoring, drawn pixels, paging,
the failed-only filter, and a headless kernel displaying it."""

import io
import json
import random

import nbformat
import pytest
from ipywidgets.embed import embed_minimal_html
from nbclient import NotebookClient
from PIL import Image

from uivlm_helpers.evaluation.evaluate import score_prediction
from uivlm_helpers.workbook.episode_viewer import (FAILED_ONLY_LABEL, NEXT_LABEL, PREVIOUS_LABEL, EpisodeViewer,
                                                   action_text, episode_viewer)
from uivlm_helpers.workbook.viz import PREDICTION_COLOUR, TARGET_COLOUR


def _inside(box, dx):
    """A point inside ``box``, ``dx`` px right of its left edge (away from the target point)."""
    x1, y1, x2, y2 = box
    return {"type": "click", "x": x1 + dx, "y": (y1 + y2) // 2}


def _step(record, episode_id, step, predicted, target=None, bbox="record", history=()):
    return {"id": record["id"], "episode_id": episode_id, "step": step, "image": record["image"],
            "image_size": [224, 224], "instruction": record["instruction"], "predicted": predicted,
            "target": target or record["action"], "bbox": record["bbox"] if bbox == "record" else bbox,
            "raw_text": json.dumps(predicted) if predicted else "I would press the big button",
            "failure": None if predicted else "no action found", "history_text": list(history)}


@pytest.fixture
def episode_rows(screens):
    """Three episodes: 'login' succeeds (2 steps), 'settings' fails (wrong click, unparsed, right click),
    'search' fails (right click, then wait instead of scroll). Rows are shuffled: the viewer groups them."""
    s = screens
    rows = [
        _step(s[0], "login", 0, _inside(s[0]["bbox"], 3)),
        _step(s[1], "login", 1, {"type": "type", "text": "alice"}, {"type": "type", "text": "alice"}, None,
              ["step 1: click(115, 164)"]),
        # 4 px left of the box: wrong
        _step(s[2], "settings", 0, {"type": "click", "x": s[2]["bbox"][0] - 4, "y": s[2]["bbox"][1] + 2}),
        _step(s[3], "settings", 1, None, history=["step 1: click(31, 121)"]),
        _step(s[4], "settings", 2, _inside(s[4]["bbox"], 4),
              history=["step 1: click(31, 121)", "step 2: click(112, 190)"]),
        _step(s[5], "search", 0, _inside(s[5]["bbox"], 5)),
        _step(s[6], "search", 1, {"type": "wait", "seconds": 1}, {"type": "scroll", "direction": "down", "amount": 3},
              None, ["step 1: click(51, 158)"]),
    ]
    random.Random(0).shuffle(rows)
    return rows


def _by_step(rows, episode_id):
    return sorted((r for r in rows if r["episode_id"] == episode_id), key=lambda r: r["step"])


def test_steps_grouped_in_order_and_scored_like_the_evaluation(episode_rows):
    viewer = EpisodeViewer(episode_rows)
    order = list(dict.fromkeys(r["episode_id"] for r in episode_rows))  # first appearance
    assert [e["episode_id"] for e in viewer.episodes] == order
    for index, episode_id in enumerate(order):
        view = viewer.render_episode(index)
        rows = _by_step(episode_rows, episode_id)
        expected = [score_prediction(r["predicted"], r["target"], r["bbox"])["correct"] for r in rows]
        assert view.episode_id == episode_id and [s.step for s in view.steps] == [r["step"] for r in rows]
        assert [s.correct for s in view.steps] == expected
        assert [s.verdict for s in view.steps] == ["✓" if c else "✗" for c in expected]
        assert view.success == all(expected) == (episode_id == "login")
        assert [s.history_text for s in view.steps] == ["\n".join(r["history_text"]) for r in rows]
    settings = viewer.render_episode(order.index("settings"))
    assert [s.correct for s in settings.steps] == [False, False, True]
    assert settings.steps[1].predicted_text == "unparsed (no action found)" and not settings.steps[1].parsed
    assert settings.steps[1].raw_text == "I would press the big button"
    search = viewer.render_episode(order.index("search"))
    assert [s.predicted_text for s in search.steps][1] == "wait(1)"
    assert search.steps[1].target_text == 'scroll(down, 3)'


def test_given_correct_flag_is_used_as_the_step_success(episode_rows):
    for row in episode_rows:  # as evaluate.predict_records writes them: scored, with "correct"
        row.update(score_prediction(row["predicted"], row["target"], row["bbox"]))
    row = next(r for r in episode_rows if r["episode_id"] == "login" and r["step"] == 0)
    row["correct"] = False  # a stricter scorer upstream: the viewer follows the row, not its own scoring
    viewer = EpisodeViewer(episode_rows)
    assert not any(e["success"] for e in viewer.episodes)
    login = viewer.render_episode([e["episode_id"] for e in viewer.episodes].index("login"))
    assert [s.correct for s in login.steps] == [False, True]


def test_overlay_pixels_at_the_predicted_and_true_points(episode_rows, screens):
    viewer = EpisodeViewer(episode_rows)
    ids = [e["episode_id"] for e in viewer.episodes]
    settings = viewer.render_episode(ids.index("settings"))
    for view, row in zip(settings.steps, _by_step(episode_rows, "settings")):
        screenshot = Image.open(row["image"]).convert("RGB")
        target = (row["target"]["x"], row["target"]["y"])
        assert screenshot.getpixel(target) != TARGET_COLOUR, "the screenshot itself must not already be green there"
        assert view.image.getpixel(target) == TARGET_COLOUR
        x1, y1, x2, y2 = row["bbox"]
        assert view.image.getpixel((x2, (y1 + y2) // 2)) == TARGET_COLOUR, "the target box's outline"
        if row["predicted"]:  # click steps: same size as the screenshot, red cross centre at the prediction
            point = (row["predicted"]["x"], row["predicted"]["y"])
            assert screenshot.getpixel(point) != PREDICTION_COLOUR
            assert view.image.getpixel(point) == PREDICTION_COLOUR
            assert view.image.size == screenshot.size
        else:  # unparsed: the screenshot untouched but for the target, a red text strip under it
            assert view.image.height > screenshot.height
            strip = view.image.crop((0, screenshot.height, 224, view.image.height))
            assert PREDICTION_COLOUR in {c for _, c in strip.getcolors(1 << 16)}
            top = view.image.crop((0, 0, 224, screenshot.height))
            assert PREDICTION_COLOUR not in {c for _, c in top.getcolors(1 << 16)}
    search = viewer.render_episode(ids.index("search"))
    screenshot = Image.open(_by_step(episode_rows, "search")[1]["image"]).convert("RGB")
    wait_step = search.steps[1].image  # scroll vs wait: both written under an unchanged screenshot
    assert wait_step.crop((0, 0, 224, 224)).tobytes() == screenshot.tobytes()
    strip_colours = {c for _, c in wait_step.crop((0, 224, 224, wait_step.height)).getcolors(1 << 16)}
    assert {TARGET_COLOUR, PREDICTION_COLOUR} <= strip_colours


def test_paging_wraps_at_both_ends_and_render_episode_checks_its_index(episode_rows):
    viewer = EpisodeViewer(episode_rows)
    assert viewer.position.value == "episode 1 / 3"
    first = viewer.header.value
    viewer.next_button.click()
    assert viewer.position.value == "episode 2 / 3" and viewer.header.value != first
    viewer.next_button.click()
    viewer.next_button.click()
    assert viewer.position.value == "episode 1 / 3" and viewer.header.value == first
    viewer.previous_button.click()
    assert viewer.position.value == "episode 3 / 3"
    assert viewer.previous_button.description == PREVIOUS_LABEL == "◀ previous episode"
    assert viewer.next_button.description == NEXT_LABEL == "next episode ▶"
    with pytest.raises(IndexError, match=r"episode index 3 is outside 0\.\.2"):
        viewer.render_episode(3)


def test_failed_only_keeps_the_failed_episodes(episode_rows):
    viewer = EpisodeViewer(episode_rows)
    assert viewer.failed_only.description == FAILED_ONLY_LABEL == "failed episodes only"
    failed = [e["episode_id"] for e in viewer.episodes if e["episode_id"] != "login"]
    while viewer.render_episode(viewer.index).episode_id != failed[1]:
        viewer.next()
    viewer.failed_only.value = True
    assert viewer.position.value == "episode 2 / 2", "the failed episode shown stays shown"
    seen = []
    for _ in range(2):
        seen.append(viewer.render_episode(viewer.index).episode_id)
        assert "✗ episode failed" in viewer.header.value
        viewer.next()
    assert sorted(seen) == sorted(failed)
    viewer.failed_only.value = False
    assert viewer.position.value.endswith("/ 3")


def test_failed_only_with_no_failures_says_so(episode_rows):
    viewer = EpisodeViewer([r for r in episode_rows if r["episode_id"] == "login"])
    assert viewer.position.value == "episode 1 / 1" and "✓ episode succeeded" in viewer.header.value
    viewer.failed_only.value = True
    assert viewer.position.value == "episode 0 / 0" and viewer.filmstrip.children == ()
    assert "no failed episodes: all 1 episode succeeded" in viewer.header.value
    viewer.next_button.click()  # paging an empty selection is harmless
    assert viewer.position.value == "episode 0 / 0"
    with pytest.raises(IndexError):
        viewer.render_episode(0)


def test_filmstrip_cells_show_image_actions_and_history(episode_rows):
    viewer = EpisodeViewer(episode_rows)
    while viewer.render_episode(viewer.index).episode_id != "settings":
        viewer.next()
    view = viewer.render_episode(viewer.index)
    cells = viewer.filmstrip.children
    assert len(cells) == 3 and all("uivlm-episode-step" in c._dom_classes for c in cells)
    for cell, step in zip(cells, view.steps):
        title, image, actions, history = cell.children
        assert f"step {step.step + 1} {step.verdict}" in title.value
        assert Image.open(io.BytesIO(image.value)).convert("RGB").tobytes() == step.image.tobytes()
        assert step.predicted_text in actions.value.replace("&quot;", '"')
        assert step.target_text in actions.value
    assert "(no earlier actions)" in cells[0].children[3].value
    assert "step 1: click(31, 121)\nstep 2: click(112, 190)" in cells[2].children[3].value
    assert "raw: <code>&#x27;I would press the big button&#x27;</code>" in cells[1].children[2].value


def test_max_steps_shown_counts_the_rest(episode_rows):
    viewer = episode_viewer(episode_rows, max_steps_shown=2)
    index = [e["episode_id"] for e in viewer.episodes].index("settings")
    view = viewer.render_episode(index)
    assert [s.step for s in view.steps] == [0, 1] and view.hidden_steps == 1
    viewer.show(index)
    assert "1 more step not shown" in viewer.filmstrip.children[-1].value
    with pytest.raises(ValueError, match="max_steps_shown"):
        EpisodeViewer(episode_rows, max_steps_shown=0)


def test_action_text_of_every_kind():
    assert action_text({"type": "type", "text": "abc"}) == 'type("abc")'
    assert action_text({"type": "click", "x": 3, "y": 4}) == "click(3, 4)"
    assert action_text({"type": "drag", "x": 1, "y": 2, "x2": 30, "y2": 40}) == "drag(1, 2, 30, 40)"
    assert action_text({"type": "press", "key": "Enter"}) == "press(Enter)"
    assert action_text(None) == "unparsed"


def test_drag_is_drawn_from_start_to_end(screens):
    record = screens[7]
    drag = {"type": "drag", "x": 20, "y": 20, "x2": 200, "y2": 20}
    row = {"episode_id": "e", "step": 0, "image": Image.open(record["image"]), "target": drag, "predicted": None}
    step = EpisodeViewer([row]).render_episode(0).steps[0]
    assert step.image.getpixel((110, 20)) == TARGET_COLOUR, "the line between the drag's ends"
    assert step.image.getpixel((20, 20)) == TARGET_COLOUR and not step.correct


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("image"), r"row 2 \(id 'synth-train-\d+'\): missing image \(each step row needs image, target\)"),
    (lambda r: r.update(episode_id=None), r"row 2 \(id 'synth-train-\d+'\): step \d without an episode_id"),
    (lambda r: r.update(step=None), r"step must be a 0-based int, got None"),
    (lambda r: r.update(step=-1), r"step must be a 0-based int, got -1"),
    (lambda r: r.update(step="0"), r"step must be a 0-based int, got '0'"),
    (lambda r: r.update(target={"x": 1}), r"target must be an action dict with a 'type'"),
    (lambda r: r.update(predicted="click(1, 2)"), r"predicted must be an action dict with a 'type' or None"),
    (lambda r: r.update(correct="yes"), r"correct must be true or false, got 'yes'"),
    (lambda r: r.update(history_text=[1, 2]), r"history_text must be a string or a list of strings"),
    (lambda r: r.update(episode_id=["a"]), r"episode_id must be a string or a number"),
])
def test_bad_rows_are_named(episode_rows, change, message):
    change(episode_rows[2])
    with pytest.raises(ValueError, match=message):
        EpisodeViewer(episode_rows)


def test_single_screen_rows_are_one_step_episodes(episode_rows, screens):
    """predict_records writes episode_id and step as None for a record outside any episode."""
    single = _step(screens[7], None, None, _inside(screens[7]["bbox"], 2))
    viewer = EpisodeViewer([single] + episode_rows)
    assert len(viewer.episodes) == 4 and viewer.position.value == "episode 1 / 4"
    view = viewer.render_episode(0)
    assert view.episode_id == screens[7]["id"] and [s.step for s in view.steps] == [0] and view.success
    assert "step 1 ✓" in viewer.filmstrip.children[0].children[0].value
    viewer.failed_only.value = True
    assert viewer.position.value == "episode 1 / 2"


def test_a_step_twice_and_a_wrong_image_size_are_named(episode_rows):
    twice = dict(next(r for r in episode_rows if r["episode_id"] == "search"))
    with pytest.raises(ValueError, match="episode 'search' has step 0 twice"):
        EpisodeViewer(episode_rows + [twice])
    for row in episode_rows:
        row["image_size"] = [448, 448]
    with pytest.raises(ValueError, match=r"step 0: image_size \[448, 448\] is not the screenshot's size \[224, 224\]"):
        EpisodeViewer(episode_rows)


def test_widget_state_carries_the_controls_a_browser_finds(episode_rows, tmp_path):
    viewer = EpisodeViewer(episode_rows)
    page = tmp_path / "viewer.html"
    embed_minimal_html(page, views=[viewer.box], title="episodes")
    text = page.read_text(encoding="utf-8")
    for shown in ("◀ previous episode", "next episode ▶", "failed episodes only", "episode 1 / 3"):
        assert shown in text or json.dumps(shown)[1:-1] in text, shown


def test_a_headless_kernel_displays_the_viewer(episode_rows, tmp_path):
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(episode_rows))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import json\nfrom uivlm_helpers.workbook.episode_viewer import EpisodeViewer\n"
        f"viewer = EpisodeViewer(json.load(open({str(rows)!r})))\nviewer.next()\nprint(viewer.position.value)\n"
        "viewer")])
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    assert [o.get("text") for o in outputs if o.output_type == "stream"] == ["episode 2 / 3\n"]
    views = [o for o in outputs if o.output_type == "display_data"]
    assert views and "application/vnd.jupyter.widget-view+json" in views[0].data
