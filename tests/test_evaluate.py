"""Metrics against hand-computed expectations, overlays checked pixel by pixel, and the browser."""

import pytest
from PIL import Image

from uivlm_helpers.evaluation.evaluate import (best_and_worst, cell_averages, compute_metrics, point_in_box,
                                    score_prediction)
from uivlm_helpers.workbook.viz import (PREDICTION_COLOUR, TARGET_COLOUR, candidate_bars, draw_overlay, gallery,
                               metric_bars)
from uivlm_helpers.workbook.widgets import PredictionBrowser


def test_point_in_box_includes_edges():
    assert point_in_box(10, 20, [10, 20, 30, 40]) and point_in_box(30, 40, [10, 20, 30, 40])
    assert not point_in_box(9.9, 25, [10, 20, 30, 40]) and not point_in_box(15, 40.1, [10, 20, 30, 40])


def test_score_click_inside_outside_and_wrong_type():
    target, box = {"type": "click", "x": 20, "y": 30}, [10, 20, 30, 40]
    inside = score_prediction({"type": "click", "x": 29, "y": 21}, target, box)
    assert inside["click_correct"] and inside["correct"] and inside["distance_px"] == pytest.approx(((9) ** 2 + 9 ** 2) ** 0.5)
    outside = score_prediction({"type": "click", "x": 31, "y": 30}, target, box)
    assert outside["type_correct"] and not outside["click_correct"] and not outside["correct"]
    wrong_type = score_prediction({"type": "type", "text": "x"}, target, box)
    assert not wrong_type["type_correct"] and wrong_type["click_correct"] is False
    unparsed = score_prediction(None, target, box)
    assert not unparsed["parsed"] and unparsed["click_correct"] is False and not unparsed["correct"]


def test_score_typed_text_exact_match():
    target = {"type": "type", "text": "hello"}
    assert score_prediction({"type": "type", "text": "hello"}, target)["text_correct"]
    assert not score_prediction({"type": "type", "text": "hello "}, target)["text_correct"]
    assert score_prediction({"type": "type", "text": "hello"}, target)["click_correct"] is None


def _row(correct_click, element_type, platform, parsed=True, distance=1.0):
    return {"parsed": parsed, "type_correct": parsed, "click_correct": correct_click if parsed else False,
            "text_correct": None, "distance_px": distance if parsed else None, "correct": parsed and correct_click,
            "element_type": element_type, "source": "s", "platform": platform}


def test_metrics_by_hand():
    rows = [_row(True, "text", "web", distance=2), _row(False, "text", "web", distance=10),
            _row(True, "icon", "mobile", distance=3), _row(False, "icon", "mobile", parsed=False)]
    m = compute_metrics(rows)
    assert m["n"] == 4 and m["parse_rate"] == 0.75 and m["type_accuracy"] == 0.75
    assert m["click_accuracy"] == 0.5
    assert m["mean_distance_px"] == pytest.approx(5.0)
    assert m["by_element_type"]["icon"]["click_accuracy"] == 0.5
    assert m["by_element_type"]["text"]["parse_rate"] == 1.0


def test_score_click_on_a_distractor():
    target, box = {"type": "click", "x": 20, "y": 30}, [10, 20, 30, 40]
    distractors = [[50, 20, 70, 40], [10, 60, 30, 80]]
    on_other = score_prediction({"type": "click", "x": 60, "y": 25}, target, box, distractors)
    assert on_other["on_distractor"] is True and on_other["candidates"] == 3 and not on_other["click_correct"]
    between = score_prediction({"type": "click", "x": 40, "y": 50}, target, box, distractors)
    assert between["on_distractor"] is False
    hit = score_prediction({"type": "click", "x": 20, "y": 30}, target, box, distractors)
    assert hit["on_distractor"] is False and hit["click_correct"]
    alone = score_prediction({"type": "click", "x": 60, "y": 25}, target, box, [])
    assert alone["candidates"] == 1 and alone["on_distractor"] is False
    unknown = score_prediction({"type": "click", "x": 60, "y": 25}, target, box)
    assert unknown["candidates"] is None and unknown["on_distractor"] is None


def test_blind_baseline_and_distractor_rate_by_hand():
    def row(correct, candidates, on_distractor):
        return {**_row(correct, "button", None), "candidates": candidates, "on_distractor": on_distractor}

    rows = [row(True, 1, False), row(False, 2, True), row(True, 2, False), row(False, 4, True),
            {**_row(True, "button", None), "candidates": None, "on_distractor": None}]
    m = compute_metrics(rows)
    # A policy blind to the words clicks one of the candidates at random: mean of 1, 1/2, 1/2, 1/4.
    assert m["blind_baseline"] == pytest.approx((1 + 0.5 + 0.5 + 0.25) / 4)
    assert m["distractor_click_rate"] == pytest.approx(2 / 4)
    assert m["click_accuracy"] == pytest.approx(3 / 5)
    assert set(m["by_candidates"]) == {"1", "2", "4"}
    assert m["by_candidates"]["2"]["click_accuracy"] == 0.5 and m["by_candidates"]["2"]["blind_baseline"] == 0.5
    assert m["by_candidates"]["4"]["distractor_click_rate"] == 1.0
    plain = compute_metrics([_row(True, "text", "web")])
    assert plain["blind_baseline"] is None and "by_candidates" not in plain


def test_candidate_bars_draw_each_model_and_the_blind_baseline(tmp_path):
    metrics = {"base": {"by_candidates": {"1": {"click_accuracy": 0.0}, "3": {"click_accuracy": 0.0}}},
               "tuned": {"by_candidates": {"1": {"click_accuracy": 1.0}, "3": {"click_accuracy": 0.6}}}}
    fig = candidate_bars(metrics, path=tmp_path / "c.png")
    ax = fig.axes[0]
    heights = sorted(round(bar.get_height(), 3) for bar in ax.patches)
    assert heights == [0.0, 0.0, 0.6, 1.0]
    baselines = sorted(round(float(seg[0][1]), 3) for line in ax.collections for seg in line.get_segments())
    assert baselines == [0.333, 1.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1 candidate", "3 candidates"]
    assert (tmp_path / "c.png").is_file()
    assert candidate_bars({"base": {"click_accuracy": 0.5}}, path=tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_cell_averages_plain_and_sample_weighted_differ_on_unbalanced_cells():
    rows = [_row(True, "text", "web")] * 3 + [_row(False, "text", "web")] + [_row(False, "icon", "mobile")]
    cells = cell_averages(rows)
    assert cells["click_accuracy_by_cell"] == {"mobile / icon": 0.0, "web / text": 0.75}
    assert cells["plain_mean_of_cells"] == pytest.approx(0.375)
    assert cells["sample_weighted_mean"] == pytest.approx(3 / 5)


def test_overlay_draws_box_and_marker_at_the_mapped_points():
    image = Image.new("RGB", (100, 80), "white")
    out = draw_overlay(image, target_box=[10, 10, 40, 30], target_point=(25, 20), predicted_point=(70, 50))
    assert image.getpixel((10, 20)) == (255, 255, 255), "the original is not modified"
    assert out.getpixel((10, 20)) == TARGET_COLOUR          # box edge
    assert out.getpixel((25, 20)) == TARGET_COLOUR          # target dot
    assert out.getpixel((70, 50)) == PREDICTION_COLOUR      # cross centre at the prediction
    assert out.getpixel((75, 50)) == PREDICTION_COLOUR      # circle edge, radius 5
    assert out.getpixel((90, 70)) == (255, 255, 255)


@pytest.fixture
def prediction_rows(tmp_path):
    rows = []
    for i, (correct, parsed) in enumerate([(True, True), (False, True), (False, False)]):
        path = tmp_path / f"s{i}.png"
        Image.new("RGB", (64, 64), (200, 200, 200)).save(path)
        rows.append({"id": i, "image": str(path), "instruction": f"Click item {i}", "raw_text": "click(1, 2)",
                     "target": {"type": "click", "x": 20, "y": 20}, "bbox": [10, 10, 30, 30],
                     "predicted": {"type": "click", "x": 20 + 30 * (not correct), "y": 20} if parsed else None,
                     "correct": correct, "parsed": parsed, "failure": None if parsed else "no action found",
                     "distance_px": 30.0 * (not correct) if parsed else None})
    return rows


def test_gallery_and_bars_are_non_trivial_images(prediction_rows, tmp_path):
    gallery(prediction_rows, path=tmp_path / "g.png", title="t")
    metric_bars({"a": {"click_accuracy": 0.5}, "b": {"click_accuracy": 1.0}}, path=tmp_path / "b.png")
    for name in ("g.png", "b.png"):
        picture = Image.open(tmp_path / name)
        assert picture.size[0] > 200 and len(picture.convert("RGB").getcolors(1 << 20)) > 10


def test_best_and_worst(prediction_rows):
    best, worst = best_and_worst(prediction_rows, 1)
    assert best[0]["id"] == 0 and worst[0]["id"] == 2


def test_prediction_browser_pages_and_filters(prediction_rows):
    browser = PredictionBrowser(prediction_rows)
    first = browser.image.value
    assert first and browser.position.value == "1 / 3"
    browser.next()
    assert browser.image.value != first and browser.position.value == "2 / 3"
    browser.filter.value = "incorrect"
    assert browser.position.value == "1 / 2" and "Click item 1" in browser.caption.value
    browser.filter.value = "unparsed"
    assert "no action found" in browser.caption.value
    browser.filter.value = "correct"
    browser.previous()
    assert browser.position.value == "1 / 1"
    assert "on a distractor" not in browser.filter.options, "offered only when the rows know their distractors"


def test_prediction_browser_shows_clicks_on_distractors(prediction_rows):
    for row in prediction_rows:  # row 1 missed the target by 30 px: put a distractor where it clicked
        row.update(score_prediction(row["predicted"], row["target"], row["bbox"], [[45, 10, 60, 30]]))
    browser = PredictionBrowser(prediction_rows)
    browser.filter.value = "on a distractor"
    assert browser.position.value == "1 / 1" and "Click item 1" in browser.caption.value
    assert "on a distractor" in browser.caption.value
