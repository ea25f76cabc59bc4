"""Episode-aware scoring: AITW step matching on hand-built geometry, episode success, breakdowns,
Mind2Web's metrics worked by hand, and agreement with evaluate on rows from the real pipeline."""

import math

import pandas as pd
import pytest

import uivlm_helpers.evaluation.episode_metrics as em
from uivlm_helpers.evaluation.episode_metrics import (TAP_DISTANCE_THRESHOLD, episode_metrics, episode_table,
                                                      mind2web_metrics, mind2web_operation, operation_f1,
                                                      score_step)

SCREEN = [1000, 500]  # not square: AITW's tolerance is 140 px across and 70 px down on this screen


def click(x, y):
    return {"type": "click", "x": x, "y": y}


# --- score_step ----------------------------------------------------------------------------------------

def test_aitw_tap_tolerance_is_a_fraction_of_each_screen_side():
    target = click(500, 250)
    assert TAP_DISTANCE_THRESHOLD == 0.14
    # across: 0.14 of 1000 px
    assert score_step(click(639, 250), target, None, SCREEN)["click_correct"]
    assert not score_step(click(641, 250), target, None, SCREEN)["click_correct"]
    # down: 0.14 of 500 px, so 71 px is already outside although 71 < 140
    assert score_step(click(500, 319), target, None, SCREEN)["click_correct"]
    assert not score_step(click(500, 321), target, None, SCREEN)["click_correct"]
    # diagonally: (0.1, 0.096) is 0.1386 of the screen, (0.1, 0.098) is 0.14001
    inside = score_step(click(600, 298), target, None, SCREEN)
    outside = score_step(click(600, 299), target, None, SCREEN)
    assert inside["click_correct"] and inside["success"]
    assert inside["distance_screen"] == pytest.approx(math.hypot(0.1, 0.096))
    assert inside["distance_px"] == pytest.approx(math.hypot(100, 48))
    assert not outside["click_correct"] and not outside["success"] and outside["type_correct"]


def test_a_target_box_decides_instead_of_the_distance():
    target, box = click(20, 20), [10, 10, 30, 30]
    near_but_outside = score_step(click(31, 20), target, box, SCREEN)  # 0.011 of the screen away
    assert not near_but_outside["click_correct"] and not near_but_outside["success"]
    on_the_edge = score_step(click(30, 10), target, box, SCREEN)
    assert on_the_edge["click_correct"] and on_the_edge["success"]
    # the box needs no screen size; a point target without box or size cannot be judged
    assert score_step(click(25, 25), target, box)["click_correct"]
    with pytest.raises(ValueError, match="image_size"):
        score_step(click(25, 25), target, None)
    with pytest.raises(ValueError, match="bbox"):
        score_step(click(25, 25), target, [1, 2, 3], SCREEN)


def test_typed_text_ignores_case_and_surrounding_whitespace_only():
    target = {"type": "type", "text": "New York"}
    assert score_step({"type": "type", "text": "  new york\n"}, target)["text_correct"]
    assert not score_step({"type": "type", "text": "new  york"}, target)["text_correct"]
    assert not score_step({"type": "type", "text": "New Yor"}, target)["success"]
    wrong_type = score_step(click(1, 1), target, None, SCREEN)
    assert not wrong_type["type_correct"] and wrong_type["text_correct"] is False
    assert wrong_type["click_correct"] is None  # the target is not a click


def test_scroll_direction_press_key_and_drag_direction():
    down = {"type": "scroll", "direction": "down", "amount": 250}
    assert score_step({"type": "scroll", "direction": "down", "amount": 3}, down)["success"]
    up = score_step({"type": "scroll", "direction": "up", "amount": 250}, down)
    assert up["type_correct"] and up["scroll_correct"] is False and not up["success"]
    assert score_step({"type": "press", "key": "enter"}, {"type": "press", "key": "Enter"})["key_correct"]
    assert not score_step({"type": "press", "key": "Tab"}, {"type": "press", "key": "Enter"})["success"]
    drag = {"type": "drag", "x": 100, "y": 400, "x2": 100, "y2": 100}  # upwards
    assert score_step({"type": "drag", "x": 500, "y": 300, "x2": 520, "y2": 50}, drag, None, SCREEN)["success"]
    # 300 px across is 0.3 of the width, 200 px down 0.4 of the height: downward on this screen,
    # rightward in plain pixels
    slanted = {"type": "drag", "x": 0, "y": 0, "x2": 300, "y2": 200}
    downward = {"type": "drag", "x": 50, "y": 50, "x2": 50, "y2": 450}
    assert score_step(slanted, downward, None, SCREEN)["drag_correct"]
    assert not score_step(slanted, downward)["drag_correct"]
    assert not score_step(slanted, drag, None, SCREEN)["drag_correct"]
    assert score_step({"type": "done"}, {"type": "done"})["success"]
    assert not score_step({"type": "wait", "seconds": 1}, {"type": "done"})["success"]


def test_an_unparsed_answer_is_wrong_everywhere():
    for target, box in ((click(20, 20), [10, 10, 30, 30]), ({"type": "type", "text": "a"}, None),
                        ({"type": "scroll", "direction": "up", "amount": 1}, None)):
        row = score_step(None, target, box, SCREEN)
        assert row["parsed"] is False and row["type_correct"] is False and row["success"] is False
        assert [v for k, v in row.items() if k.endswith("_correct") and v is not None] == [False, False]


def test_malformed_actions_are_named():
    with pytest.raises(ValueError, match="target: 'type' must be one of"):
        score_step(None, {"type": "tap", "x": 1, "y": 2})
    with pytest.raises(ValueError, match="predicted: a click action needs x, y; missing y"):
        score_step({"type": "click", "x": 1}, click(1, 2), None, SCREEN)
    with pytest.raises(ValueError, match=r"image_size: expected the screenshot's \[width, height\]"):
        score_step(click(1, 2), click(1, 2), None, [0, 10])


# --- episodes ------------------------------------------------------------------------------------------

def step_row(episode, step, right, source="androidcontrol/high", platform="mobile", **extra):
    """A click step on SCREEN, right or wrong (a click outside its box)."""
    target, box = click(100, 100), [80, 80, 120, 120]
    return {"id": f"{episode}-{step}", "episode_id": episode, "step": step, "predicted": click(100, 100) if right
            else click(300, 300), "target": target, "bbox": box, "image_size": SCREEN, "source": source,
            "platform": platform, **extra}


def test_episode_success_needs_every_step_and_steps_are_ordered():
    rows = [step_row("a", 2, True), step_row("b", 1, False), step_row("a", 0, True), step_row("b", 0, True),
            step_row("a", 1, True),
            {**step_row(None, None, True), "id": "single", "episode_id": None, "step": None}]
    m = episode_metrics(rows)
    assert (m["n_steps"], m["n_episodes"]) == (6, 3)
    assert m["mean_episode_length"] == pytest.approx(2.0)
    assert m["step_success_rate"] == pytest.approx(5 / 6) and m["click_accuracy"] == pytest.approx(5 / 6)
    assert m["episode_success_rate"] == pytest.approx(2 / 3)  # "a" and the single step; "b" fails at step 1
    by_step = m["by_step"]
    assert list(by_step) == ["0", "1", "2"]
    assert by_step["0"] == {"n": 3, "step_success_rate": 1.0, "type_accuracy": 1.0, "click_accuracy": 1.0,
                            "prefix_success_rate": 1.0}
    assert by_step["1"]["n"] == 2 and by_step["1"]["step_success_rate"] == 0.5
    assert by_step["1"]["prefix_success_rate"] == 0.5
    assert by_step["2"]["n"] == 1 and by_step["2"]["prefix_success_rate"] == 1.0


def test_a_late_wrong_step_drops_the_prefix_rate_but_not_earlier_steps():
    rows = [step_row("a", 0, True), step_row("a", 1, False), step_row("a", 2, True)]
    m = episode_metrics(rows)
    assert m["episode_success_rate"] == 0.0 and m["step_success_rate"] == pytest.approx(2 / 3)
    assert [m["by_step"][k]["prefix_success_rate"] for k in "012"] == [1.0, 0.0, 0.0]
    assert [m["by_step"][k]["step_success_rate"] for k in "012"] == [1.0, 0.0, 1.0]


def test_breakdowns_by_source_platform_and_mode():
    # the converter keeps AndroidControl's instruction level in the source: androidcontrol/high|low
    rows = [step_row("e1", 0, True), step_row("e1", 1, True),
            step_row("e1", 0, True, source="androidcontrol/low"),
            step_row("e1", 1, False, source="androidcontrol/low"),
            step_row("w", 0, False, source="mind2web/site", platform="web")]
    m = episode_metrics(rows)
    # the same episode id under two sources is two episodes (AndroidControl's two instruction levels)
    assert m["n_episodes"] == 3
    assert set(m["by_source"]) == {"androidcontrol/high", "androidcontrol/low", "mind2web/site"}
    assert m["by_source"]["androidcontrol/high"]["episode_success_rate"] == 1.0
    assert m["by_source"]["androidcontrol/low"]["episode_success_rate"] == 0.0
    assert m["by_source"]["androidcontrol/low"]["step_success_rate"] == 0.5
    assert m["by_platform"]["mobile"]["n_episodes"] == 2 and m["by_platform"]["web"]["n_steps"] == 1
    assert m["by_mode"]["high"]["episode_success_rate"] == 1.0 and m["by_mode"]["low"]["n_steps"] == 2
    assert m["by_mode"]["None"]["n_steps"] == 1
    # a mode field wins over the source, and rows without any mode have no by_mode
    tagged = episode_metrics([step_row("x", 0, True, source="androidcontrol/high", mode="low")])
    assert set(tagged["by_mode"]) == {"low"}
    assert "by_mode" not in episode_metrics([step_row("x", 0, True, source="aitw/general")])


def test_bad_rows_are_named():
    with pytest.raises(ValueError, match=r"row 1 \(id 'a-7'\): 'step' must be"):
        episode_metrics([step_row("a", 0, True), {**step_row("a", 7, True), "step": "7"}])
    with pytest.raises(ValueError, match="episode 'a' .* has step 0 more than once"):
        episode_metrics([step_row("a", 0, True), step_row("a", 0, False)])
    with pytest.raises(ValueError, match=r"row 0 \(id 'a-0'\): missing 'target'"):
        episode_metrics([{k: v for k, v in step_row("a", 0, True).items() if k != "target"}])
    with pytest.raises(ValueError, match=r"row 0 \(id 'a-0'\): target: a click action needs x, y"):
        episode_metrics([{**step_row("a", 0, True), "target": {"type": "click", "x": 3}}])
    with pytest.raises(ValueError, match="row 0: expected a dict"):
        episode_metrics(["click(1, 2)"])


# --- Mind2Web ------------------------------------------------------------------------------------------

def test_operation_strings_and_token_f1():
    assert mind2web_operation(click(1, 2)) == "CLICK"
    assert mind2web_operation({"type": "long_press", "x": 1, "y": 2}) == "CLICK"
    assert mind2web_operation({"type": "type", "text": "new york"}) == "TYPE new york"
    assert mind2web_operation({"type": "scroll", "direction": "up", "amount": 3}) == "SCROLL up"
    assert mind2web_operation(None) == ""
    # {TYPE, new, york} against {TYPE, new, york, city}: precision 1, recall 3/4
    assert operation_f1("TYPE new york", "TYPE new york city") == pytest.approx(2 * 0.75 / 1.75)
    assert operation_f1("TYPE york new new", "TYPE new york") == 1.0  # tokens are sets
    assert operation_f1("TYPE hello !", "TYPE hello") == 1.0  # punctuation tokens dropped
    assert operation_f1("TYPE Hello", "TYPE hello") == pytest.approx(0.5)  # case kept, as Mind2Web
    assert operation_f1("", "CLICK") == 0.0 and operation_f1("", "") == 1.0
    assert operation_f1("CLICK", "TYPE x") == 0.0


def test_mind2web_metrics_by_hand():
    box = [10, 10, 50, 50]

    def row(task, step, predicted, target, source="mind2web/airline"):
        return {"id": f"{task}-{step}", "episode_id": task, "step": step, "predicted": predicted,
                "target": target, "bbox": box, "image_size": [200, 200], "source": source, "platform": "web"}

    city = {"type": "type", "text": "new york city"}
    rows = [row("t1", 0, click(30, 30), click(30, 30)),                                # element right, F1 1
            row("t1", 1, {"type": "type", "text": "new york"}, city),                  # no element, F1 6/7
            row("t2", 0, click(60, 30), click(30, 30)),                                # element wrong, F1 1
            row("t3", 0, click(11, 49), click(30, 30), source="mind2web/shop"),        # right
            row("t3", 1, {"type": "type", "text": "new york city"}, city, source="mind2web/shop")]  # right
    m = mind2web_metrics(rows)
    f1 = 2 * 0.75 / 1.75
    assert (m["n_steps"], m["n_tasks"], m["element_steps"]) == (5, 3, 3)
    assert m["element_accuracy_micro"] == pytest.approx(2 / 3)
    assert m["element_accuracy"] == pytest.approx((1 + 0 + 1) / 3)
    assert m["operation_f1_micro"] == pytest.approx((1 + f1 + 1 + 1 + 1) / 5)
    assert m["operation_f1"] == pytest.approx(((1 + f1) / 2 + 1 + 1) / 3)  # macro over tasks, as Mind2Web
    assert m["step_success_rate_micro"] == pytest.approx(3 / 5)
    assert m["step_success_rate"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert m["task_success_rate"] == pytest.approx(1 / 3)
    assert m["by_source"]["mind2web/shop"]["task_success_rate"] == 1.0
    assert m["by_source"]["mind2web/airline"]["n_tasks"] == 2
    # an unparsed answer: no element, F1 0
    unparsed = mind2web_metrics([row("t", 0, None, click(30, 30))])
    assert unparsed["element_accuracy"] == 0.0 and unparsed["operation_f1"] == 0.0
    with pytest.raises(ValueError, match=r"row 0 \(id 't-0'\): 'bbox' is needed"):
        mind2web_metrics([{**row("t", 0, click(1, 1), click(30, 30)), "bbox": None}])


def test_episode_table_puts_agents_side_by_side():
    base = episode_metrics([step_row("a", 0, True), step_row("a", 1, False)])
    tuned = episode_metrics([step_row("a", 0, True), step_row("a", 1, True)])
    table = episode_table({"base": base, "tuned": tuned})
    assert isinstance(table, pd.DataFrame) and list(table.index) == ["base", "tuned"]
    assert table.loc["base", "step_success_rate"] == 0.5 and table.loc["tuned", "episode_success_rate"] == 1.0
    assert "element_accuracy" not in table.columns
    merged = {**tuned, **mind2web_metrics([step_row("a", 0, True), step_row("a", 1, True)])}
    assert episode_table({"tuned": merged}).loc["tuned", "element_accuracy"] == 1.0
    with pytest.raises(ValueError, match="named: expected"):
        episode_table([base])


# --- rows from the real pipeline ----------------------------------------------------------------------

def _shipped_base():
    from uivlm_helpers.models.pretrained import SHIPPED_MODELS

    return SHIPPED_MODELS["uivlm/tiny-qwen2-vl-ui"]


@pytest.mark.skipif(not (_shipped_base() / "model.safetensors").is_file(),
                    reason="models/tiny-qwen2-vl-ui has no trained weights (recipes.pretrain fills it)")
def test_agrees_with_compute_metrics_on_real_predictions(tmp_path):
    """Task screens from synth_tasks plus the shipped base's own held-out screens (so that both right
    and wrong clicks occur), predicted by the shipped base through evaluate.predict_records."""
    from uivlm_helpers.data import schema, synth_tasks
    from uivlm_helpers.data.run_data import as_plain
    from uivlm_helpers.evaluation.evaluate import compute_metrics, predict_records
    from uivlm_helpers.models.wrapper import VLMWrapper

    fresh = synth_tasks.generate_task_records(6, seed=5, out_dir=tmp_path, split="test", families=("extreme",))
    records = [as_plain(r) for r in schema.read_records(fresh)]
    records += [as_plain(r) for r in schema.read_records(_shipped_base() / "heldout_small" / "test.jsonl")][:6]
    rows = predict_records(VLMWrapper(str(_shipped_base())), records, batch_size=12, progress=False)
    reference = compute_metrics(rows)
    ours = episode_metrics(rows)
    assert {r["click_correct"] for r in rows} == {True, False}  # the comparison covers both outcomes
    assert ours["n_episodes"] == ours["n_steps"] == len(rows)
    assert ours["click_accuracy"] == pytest.approx(reference["click_accuracy"])
    assert ours["parse_rate"] == pytest.approx(reference["parse_rate"])
    assert ours["episode_success_rate"] == pytest.approx(ours["step_success_rate"])
    for row in rows:
        assert score_step(row["predicted"], row["target"], row["bbox"], row["image_size"])["click_correct"] \
            == row["click_correct"], row["id"]
    for source, figures in reference["by_source"].items():
        assert ours["by_source"][source]["click_accuracy"] == pytest.approx(figures["click_accuracy"])

    # the same predictions as two 6-step episodes: an episode succeeds when evaluate scored all its steps right
    episodes = [{**row, "episode_id": f"ep{i // 6}", "step": i % 6} for i, row in enumerate(rows)]
    grouped = episode_metrics(episodes)
    expected = [all(r["correct"] for r in rows[k:k + 6]) for k in (0, 6)]
    assert grouped["n_episodes"] == 2 and grouped["mean_episode_length"] == 6
    assert grouped["episode_success_rate"] == pytest.approx(sum(expected) / 2)
    assert grouped["by_step"]["0"]["click_accuracy"] == pytest.approx((rows[0]["correct"] + rows[6]["correct"]) / 2)


def test_the_module_keeps_its_own_box_rule_in_step_with_evaluate():
    from uivlm_helpers.evaluation.evaluate import point_in_box

    box = [10, 20, 30, 40]
    for x, y in ((10, 20), (30, 40), (9.9, 25), (15, 40.1), (20, 30)):
        assert em.point_in_box(x, y, box) == point_in_box(x, y, box)
