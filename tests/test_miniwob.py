"""MiniWoB++ in a real headless Chromium: coordinate mapping, oracles, demonstrations, rollouts.

Skipped (with the reason) only when Chromium or its driver is missing and CI is not set; under CI
they always run. The 50-episode oracle figures come from ``bench/oracle_success.py``; here each
oracle runs a few episodes, and the multi-step ones (plus two one-click tasks) 20 each.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from uivlm_helpers.data import schema
from uivlm_helpers.data import miniwob_env as mw

_available, _reason = mw.chrome_available()
if not _available and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.skip(_reason, allow_module_level=True)

EPISODES = 3


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the whole file (tasks are switched with ``load_task``)."""
    with mw.MiniWoBTask("click-test") as env:
        yield env


@pytest.fixture
def click_test_2(browser):
    browser.load_task("click-test-2")
    return browser


def _element_at(env: mw.MiniWoBTask, x_px: float, y_px: float) -> str:
    """What the browser itself finds under a screenshot pixel (mapped to CSS pixels)."""
    x, y = env.state.to_css(x_px, y_px)
    return env.driver.execute_script(
        "var e = document.elementFromPoint(arguments[0], arguments[1]);"
        "return e ? (e.id || e.tagName) : null;", x, y)


def test_observation_becomes_a_record_with_the_screenshot_and_utterance(click_test_2):
    state = click_test_2.reset(seed=1)
    assert state.image_size == (160, 210) and state.scale == (1.0, 1.0)
    record = click_test_2.record_dict(state, history=[])
    assert record["instruction"] == state.utterance == f"Click button {state.fields['target']}."
    assert record["image"].size == (160, 210) and record["image_size"] == [160, 210]
    assert record["platform"] == "web" and record["source"] == "miniwob/click-test-2"
    # The yellow instruction band is the top 50 CSS pixels: the screenshot is not offset or scaled.
    pixels = state.screenshot.load()
    assert pixels[80, 45][:2] == (255, 255) and pixels[80, 45][2] < 50
    assert pixels[80, 55] != pixels[80, 45]


def test_screenshot_pixels_map_onto_the_dom_elements(click_test_2):
    for seed in range(4):
        state = click_test_2.reset(seed=seed)
        for button in state.find(tag="button"):
            x, y = state.center_pixels(button)
            if state.click_point(button) == (x, y):  # not covered by the other button
                assert _element_at(click_test_2, x, y) == button.id
            x1, y1, x2, y2 = state.box_pixels(button)
            assert (x2 - x1, y2 - y1) == (button.width * state.scale[0], button.height * state.scale[1])
            assert _element_at(click_test_2, state.click_point(button)[0], state.click_point(button)[1]) == button.id


def test_a_pixel_click_is_carried_out_where_it_was_aimed(click_test_2):
    state = click_test_2.reset(seed=5)
    target = state.one(tag="button", text=state.fields["target"])
    _, reward, done = click_test_2.step({"type": "click", "x": state.click_point(target)[0],
                                         "y": state.click_point(target)[1]})
    assert done and reward == 1.0
    state = click_test_2.reset(seed=5)
    other = next(b for b in state.find(tag="button") if b.text != state.fields["target"])
    x, y = state.click_point(other)
    _, reward, done = click_test_2.step({"type": "click", "x": x, "y": y})
    assert done and reward == -1.0
    state = click_test_2.reset(seed=5)
    _, reward, done = click_test_2.step({"type": "click", "x": 150, "y": 200})  # empty space
    assert not done and reward == 0.0


def test_pixel_to_css_mapping_follows_the_screenshot_scale(click_test_2):
    state = click_test_2.reset(seed=0)
    double = mw.MiniWoBState(state.task, state.utterance, state.fields, state.elements,
                             state.screenshot.resize((320, 420)), scale=(2.0, 2.0))
    button = double.one(tag="button", text="ONE")
    assert double.to_css(*double.center_pixels(button)) == pytest.approx(
        (button.left + button.width / 2, button.top + button.height / 2), abs=0.5)
    assert double.box_pixels(button) == [2 * button.left, 2 * button.top, 2 * (button.left + button.width),
                                         2 * (button.top + button.height)]
    click_test_2.state = double
    (action, _), = click_test_2.to_miniwob_actions({"type": "click", "x": 100, "y": 300})
    assert list(action["coords"]) == [50, 150]
    (action, _), = click_test_2.to_miniwob_actions({"type": "click", "x": 1000, "y": -5})  # clamped onto the screen
    assert 159 < action["coords"][0] < 160 and action["coords"][1] == 0


@pytest.mark.parametrize("kind", ["click", "double_click", "long_press"])
def test_pointer_actions_hit_the_target_and_end_the_episode_once(browser, kind):
    browser.load_task("click-test")
    for seed in range(2):
        state = browser.reset(seed=seed)
        x, y = state.click_point(state.one(tag="button"))
        # a double click whose first click ends the episode must not start a new one
        assert browser.step({"type": kind, "x": x, "y": y}) == (None, 1.0, True)


def test_every_action_type_has_a_miniwob_translation(click_test_2):
    from miniwob.action import ActionTypes as T

    click_test_2.reset(seed=0)
    config = click_test_2._env.action_space_config

    def kinds(action):
        return [config.action_types[a["action_type"]] for a, _ in click_test_2.to_miniwob_actions(action)]

    assert kinds({"type": "click", "x": 1, "y": 2}) == [T.CLICK_COORDS]
    assert kinds({"type": "double_click", "x": 1, "y": 2}) == [T.DBLCLICK_COORDS]
    assert kinds({"type": "long_press", "x": 1, "y": 2}) == [T.MOUSEDOWN_COORDS, T.MOUSEUP_COORDS]
    assert kinds({"type": "drag", "x": 1, "y": 2, "x2": 30, "y2": 40}) == [
        T.MOUSEDOWN_COORDS, T.MOVE_COORDS, T.MOUSEUP_COORDS]
    assert kinds({"type": "type", "text": "hi"}) == [T.TYPE_TEXT]
    assert kinds({"type": "scroll", "direction": "down", "amount": 100}) == [T.SCROLL_DOWN_COORDS]
    assert kinds({"type": "scroll", "direction": "left", "amount": 100}) == [T.NONE]
    assert kinds({"type": "wait", "seconds": 0.5}) == [T.NONE]
    for key, expected in [("Enter", "<Enter>"), ("ctrl+a", "C-a"), ("shift+ctrl+Tab", "C-S-<Tab>"),
                          ("a", "a"), ("Escape", "<Escape>"), ("ArrowDown", "<ArrowDown>")]:
        (action, _), = click_test_2.to_miniwob_actions({"type": "press", "key": key})
        assert config.allowed_keys[action["key"]] == expected
    with pytest.raises(ValueError, match="no MiniWoB"):
        click_test_2.to_miniwob_actions({"type": "press", "key": "Hyper"})


def test_typing_and_keys_reach_the_page(browser):
    browser.load_task("enter-text")
    state = browser.reset(seed=3)
    x, y = state.center_pixels(state.one(tag="input_text"))
    state, _, _ = browser.step({"type": "click", "x": x, "y": y})
    state, _, _ = browser.step({"type": "type", "text": "Hello"})
    state, _, _ = browser.step({"type": "press", "key": "Backspace"})
    assert state.one(tag="input_text").value == "Hell" and state.one(tag="input_text").focused


@pytest.mark.parametrize("task", mw.ORACLE_TASKS)
def test_oracle_succeeds(task, browser):
    episodes = mw.rollout_episodes(mw.oracle_policy, [task], EPISODES, seed=0, env=browser)[task]
    assert [e.failure for e in episodes] == [None] * EPISODES
    assert all(e.success for e in episodes)


#: Tasks of one to six steps whose oracles must succeed in at least 95% of 20 live episodes.
EPISODE_TASKS = ("click-checkboxes", "enter-text", "login-user", "click-tab-2", "use-autocomplete",
                 "click-test-2", "click-button", "click-link")
EPISODE_RUNS = 20


def test_oracles_succeed_in_live_multi_step_episodes(browser):
    started = time.perf_counter()
    episodes = mw.rollout_episodes(mw.oracle_policy, EPISODE_TASKS, EPISODE_RUNS, seed=11, env=browser)
    elapsed = time.perf_counter() - started
    rates = {task: sum(e.success for e in runs) / len(runs) for task, runs in episodes.items()}
    failures = {task: [e.failure for e in runs if not e.success] for task, runs in episodes.items()}
    assert all(rate >= 0.95 for rate in rates.values()), (rates, failures)
    steps = {task: mw.mean_steps(runs) for task, runs in episodes.items()}
    # fixed plans: one click; click + type + Submit; two fields + Login
    assert steps["click-test-2"] == steps["click-button"] == steps["click-link"] == 1
    assert steps["enter-text"] == 3 and steps["login-user"] == 5
    # click, type the start, wait for the menu (once more on a busy machine), pick the suggestion, Submit
    assert min(e.steps for e in episodes["use-autocomplete"]) == 5
    assert all(e.steps <= 7 for e in episodes["use-autocomplete"] if e.success)
    # the link is on the first, second or third tab: one to three clicks, and each of them happens
    assert {e.steps for e in episodes["click-tab-2"]} == {1, 2, 3}
    # one click per checkbox to tick (none to all), then Submit
    assert 1 <= min(e.steps for e in episodes["click-checkboxes"]) < max(e.steps for e in episodes["click-checkboxes"])
    print(f"\n{len(EPISODE_TASKS) * EPISODE_RUNS} oracle episodes in {elapsed:.1f} s: {rates}, mean steps {steps}")


def test_click_tab_2_oracle_opens_tabs_until_the_link_shows(browser):
    browser.load_task("click-tab-2")
    for episode in range(EPISODE_RUNS):
        state = browser.reset(seed=mw.episode_seed(0, "test", "click-tab-2", episode))
        if not state.find(tag="span", cls="alink", text=state.fields["target"]):
            break
    else:
        pytest.fail("every instance shows its link on the first tab")
    step = mw.oracle_step(state, 0)
    assert step.element.text == "Tab #2" and "ui-tabs-anchor" in step.element.class_list
    state, reward, done = browser.step(step.action)
    assert not done and reward == 0.0
    panel = [e for e in state.find(tag="div") if e.id.startswith("tabs-")]
    assert [e.id for e in panel] == ["tabs-2"]  # only the open tab's text is on the page


def test_use_autocomplete_oracle_narrows_a_menu_that_runs_off_the_screen(browser):
    import dataclasses

    browser.load_task("use-autocomplete")
    state = browser.reset(seed=0)
    state, _, _ = browser.step(mw.oracle_step(state, 0).action)  # click the field
    state, _, _ = browser.step({"type": "type", "text": "A"})
    state, _, _ = browser.step({"type": "wait", "seconds": 0.5})
    suggestions = [e.text for e in state.find(cls="ui-menu-item-wrapper")]
    assert "Argentina" in suggestions and state.one(text="Argentina").top > 210  # below the screenshot

    def asked_for_argentina(observed):  # the page's own menu, with an utterance whose answer is off screen
        return dataclasses.replace(observed, fields={"start": "A", "end": "ina"})

    step = mw.oracle_step(asked_for_argentina(state), 3)
    assert step.action == {"type": "type", "text": "rgentina"}
    state, _, _ = browser.step(step.action)
    for index in range(4, 8):  # wait until the menu narrows, then pick the suggestion
        step = mw.oracle_step(asked_for_argentina(state), index)
        state, _, _ = browser.step(step.action)
        if step.element is not None:
            break
    assert step.element.text == "Argentina" and state.one(id="tags").value == "Argentina"
    assert not state.find(cls="ui-menu-item-wrapper")  # picking it closed the menu


def test_the_ten_required_tasks_have_oracles():
    assert set(mw.REQUIRED_ORACLE_TASKS) <= set(mw.ORACLES) and len(mw.REQUIRED_ORACLE_TASKS) == 10


def test_demonstrations_validate_and_carry_history(tmp_path, browser):
    path = mw.record_demonstrations(["click-test-2", "login-user"], episodes=2, seed=0, out_dir=tmp_path,
                                    env=browser)
    assert path == tmp_path / "train.jsonl"
    records = schema.read_records(path)  # validated, images checked
    assert len(records) == 2 * 1 + 2 * 5
    login = [r for r in records if r.source == "miniwob/login-user"]
    assert [len(r.history) for r in login[:5]] == [0, 1, 2, 3, 4]
    assert [r.action["type"] for r in login[:5]] == ["click", "type", "click", "type", "click"]
    assert login[1].history == [login[0].action] and login[4].history == [r.action for r in login[:4]]
    for record in records:
        assert record.image_size == [160, 210] and record.platform == "web" and record.split == "train"
        if record.action["type"] == "click":
            x1, y1, x2, y2 = record.bbox
            assert x1 <= record.action["x"] < x2 and y1 <= record.action["y"] < y2
            assert record.element_type in ("button", "text_field")
        else:
            assert record.bbox is None
    assert login[0].instruction.startswith("Enter the username")
    # same arguments, same data; the test split draws other task instances
    again = schema.read_records(mw.record_demonstrations(["click-test-2"], 2, 0, tmp_path / "again", env=browser))
    assert [r.action for r in again] == [r.action for r in records if r.source == "miniwob/click-test-2"]
    assert [r.instruction for r in again] == [r.instruction for r in records if r.source == "miniwob/click-test-2"]
    test = schema.read_records(mw.record_demonstrations(["click-test-2"], 2, 0, tmp_path / "t", split="test",
                                                      env=browser))
    assert {r.id for r in test}.isdisjoint({r.id for r in again}) and test[0].split == "test"


def test_record_demonstrations_caps_records(tmp_path):
    # env=None: a browser of its own, closed at the end
    path = mw.record_demonstrations(["click-test", "enter-text"], episodes=5, seed=1, out_dir=tmp_path,
                                    max_records=5)
    records = schema.read_records(path)
    assert len(records) == 5
    assert sum(r.source == "miniwob/click-test" for r in records) == 3


def _pseudo_random_policy(record):
    """Deterministic given the screen: clicks somewhere below the instruction band."""
    digest = sum(record["image"].resize((8, 8)).tobytes()) + 31 * len(record["history"])
    return {"type": "click", "x": digest % 160, "y": 50 + (digest // 160) % 160}


def test_rollout_is_reproducible_with_a_seed(browser):
    first = mw.rollout_episodes(_pseudo_random_policy, ["click-test-2"], 6, seed=7, max_steps=2, env=browser)
    browser.load_task("click-test")  # whatever ran before, the same seed gives the same episodes
    second = mw.rollout_episodes(_pseudo_random_policy, ["click-test-2"], 6, seed=7, max_steps=2, env=browser)
    assert [(e.seed, e.success, e.actions) for e in first["click-test-2"]] == [
        (e.seed, e.success, e.actions) for e in second["click-test-2"]]
    rates = mw.rollout(_pseudo_random_policy, ["click-test-2"], 6, seed=7, max_steps=2, env=browser)
    assert rates == {"click-test-2": sum(e.success for e in first["click-test-2"]) / 6}
    other = mw.rollout_episodes(_pseudo_random_policy, ["click-test-2"], 6, seed=8, max_steps=2, env=browser)
    assert [e.seed for e in other["click-test-2"]] != [e.seed for e in first["click-test-2"]]
    assert mw.rollout(mw.oracle_policy, ["click-test-2"], 2, seed=7, env=browser) == {"click-test-2": 1.0}


def test_policy_failures_fail_the_episode_not_the_rollout(click_test_2):
    def broken(record):
        raise RuntimeError("model crashed")

    result = mw.run_episode(click_test_2, broken, seed=0)
    assert not result.success and "model crashed" in result.failure
    assert "no action" in mw.run_episode(click_test_2, lambda r: None, seed=0).failure
    assert "done()" in mw.run_episode(click_test_2, lambda r: {"type": "done"}, seed=0).failure
    result = mw.run_episode(click_test_2, lambda r: {"type": "click", "x": 150, "y": 200}, seed=0, max_steps=2)
    assert result.failure == "no result after 2 steps" and len(result.actions) == 2


def test_policy_from_a_real_tiny_wrapper(tiny_path, browser):
    from uivlm_helpers.models.wrapper import VLMWrapper

    wrapper = VLMWrapper(max_new_tokens=8)
    episodes = mw.rollout_episodes(mw.policy_from_wrapper(wrapper), ["click-test"], 1, seed=0, max_steps=1,
                                   time_limit_s=60, env=browser)
    (episode,) = episodes["click-test"]
    assert episode.failure is None or episode.failure.startswith(("policy:", "no result", "task ended"))
    assert browser.time_limit_s is None  # the shared browser's own setting is back
    browser.reset(seed=0)
    assert browser.driver.execute_script("return core.EPISODE_MAX_TIME") == 10000  # and the task's own limit



def _pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def test_episode_records_carry_the_earlier_actions_and_screens(browser):
    browser.load_task("login-user")
    seen = []

    def watching_oracle(record):
        seen.append(record)
        return mw.oracle_policy(record)

    result = mw.run_episode(browser, watching_oracle, seed=3, keep_frames=True)
    assert result.success and result.steps == len(result.actions) == 5 == len(seen)
    for step, record in enumerate(seen):
        assert record["history"] == result.actions[:step]
        assert len(record["history_frames"]) == step
        for earlier, frame in zip(seen, record["history_frames"]):
            assert np.array_equal(_pixels(frame), _pixels(earlier["image"]))
    # one frame per action: the screen each action was taken on (the finished task shows no screen)
    assert len(result.frames) == 5
    assert all(np.array_equal(_pixels(f), _pixels(r["image"])) for f, r in zip(result.frames, seen))
    # typing changes the screen: the frames are the successive screens, not one screen repeated
    assert not np.array_equal(_pixels(result.frames[1]), _pixels(result.frames[2]))
    # an episode stopped by the step limit also keeps the screen it stopped on; frames are optional
    stopped = mw.run_episode(browser, mw.oracle_policy, seed=3, max_steps=2, keep_frames=True)
    assert stopped.failure == "no result after 2 steps" and stopped.steps == 2 and len(stopped.frames) == 3
    assert mw.run_episode(browser, mw.oracle_policy, seed=3).frames == []


def test_rollout_reports_mean_steps(browser):
    rates, steps = mw.rollout(mw.oracle_policy, ["enter-text", "click-test-2"], 3, seed=2, env=browser,
                              with_steps=True)
    assert rates == {"enter-text": 1.0, "click-test-2": 1.0} and steps == {"enter-text": 3.0, "click-test-2": 1.0}
    assert mw.rollout(mw.oracle_policy, ["enter-text"], 3, seed=2, env=browser) == {"enter-text": 1.0}
    assert mw.mean_steps([]) is None


@pytest.fixture(scope="module")
def history_agent(tiny_path):
    """The tiny Qwen2-VL (a multi-image family) showing two earlier actions and one earlier screenshot."""
    from uivlm_helpers.models.wrapper import VLMWrapper

    return VLMWrapper("uivlm/tiny-qwen2-vl", max_new_tokens=24, constrained=True, history_window=2,
                      history_images=1)


def test_policy_from_wrapper_feeds_the_models_own_history_back(history_agent, browser, monkeypatch):
    predict_calls, prompts = [], []
    real_predict, real_prompt_text = history_agent.predict, history_agent.prompt_text

    def observed_predict(images, instructions, **kwargs):
        predict_calls.append({"images": images, "instructions": instructions, **kwargs})
        return real_predict(images, instructions, **kwargs)

    def observed_prompt_text(instruction, examples=None, history=None, image_count=1):
        prompts.append(real_prompt_text(instruction, examples, history, image_count))
        return prompts[-1]

    monkeypatch.setattr(history_agent, "predict", observed_predict)
    monkeypatch.setattr(history_agent, "prompt_text", observed_prompt_text)
    policy = mw.policy_from_wrapper(history_agent, history_window=2, history_images=1)
    browser.load_task("login-user")  # five steps: clicks on the page rarely end the episode
    for seed in range(4):
        predict_calls.clear(), prompts.clear()
        episode = mw.run_episode(browser, policy, seed=seed, max_steps=3, keep_frames=True)
        if episode.steps >= 2:
            break
    else:
        pytest.fail(f"the tiny agent never took a second step: {episode.failure}")
    first, second = predict_calls[0], predict_calls[1]
    assert first["images"][0].size == (160, 210) and first["instructions"][0].startswith("Enter the username")
    assert first["histories"] == [[]] and first["history_images"] == [[]]
    # the second step gets the first action and the screen it was taken on, and its prompt shows them
    assert second["histories"] == [episode.actions[:1]]
    (earlier_screens,) = second["history_images"]
    assert len(earlier_screens) == 1 and np.array_equal(_pixels(earlier_screens[0]), _pixels(first["images"][0]))
    rendered = history_agent.render_target(episode.actions[0], (160, 210))
    assert f"1. {rendered}" in prompts[1] and f"1. {rendered}" not in prompts[0]
    if episode.steps == 3:  # the window keeps the last two actions
        assert predict_calls[2]["histories"] == [episode.actions[:2]]
        assert len(predict_calls[2]["history_images"][0]) == 1


def test_policy_from_wrapper_refuses_history_the_agent_would_drop(tiny_path):
    from uivlm_helpers.models.wrapper import VLMWrapper

    single_step = VLMWrapper("uivlm/tiny-qwen2-vl")
    with pytest.raises(ValueError, match="history_window=2.*history_window is 0"):
        mw.policy_from_wrapper(single_step, history_window=2)
    with pytest.raises(ValueError, match="history_images=1.*history_images is 0"):
        mw.policy_from_wrapper(single_step, history_images=1)
    with pytest.raises(ValueError, match="history_window: expected"):
        mw.policy_from_wrapper(single_step, history_window=-1)
    with pytest.raises(ValueError, match="history_images: expected"):
        mw.policy_from_wrapper(single_step, history_images="2")


def test_live_success_reports_rates_steps_and_saves_episode_frames(history_agent, tmp_path):
    from uivlm_helpers.evaluation import evaluate

    live = evaluate.live_success({"tiny agent": history_agent}, "click-test-2, login-user", 2, seed=1,
                                 history_window=2, history_images=1, frames_dir=tmp_path / "frames", max_steps=3)
    assert set(live) == {"tiny agent"} and set(live["tiny agent"]) == {"click-test-2", "login-user", "mean"}
    assert all(0 <= rate <= 1 for rate in live["tiny agent"].values())
    steps = live.steps["tiny agent"]
    assert set(steps) == {"click-test-2", "login-user", "mean"} and all(1 <= s <= 3 for s in steps.values())
    assert steps["mean"] == pytest.approx((steps["click-test-2"] + steps["login-user"]) / 2)
    for task in ("click-test-2", "login-user"):
        folders = sorted((tmp_path / "frames" / "tiny_agent" / task).iterdir())
        assert [f.name for f in folders] == ["episode_000", "episode_001"]
        for folder in folders:
            summary = json.loads((folder / "episode.json").read_text())
            assert summary["task"] == task and summary["steps"] == len(summary["actions"])
            pngs = sorted(p.name for p in folder.glob("*.png"))
            assert pngs == summary["frames"] and len(pngs) in (summary["steps"], summary["steps"] + 1)
        assert sum(json.loads((f / "episode.json").read_text())["steps"] for f in folders) / 2 == steps[task]
    assert live.frames_dir == tmp_path / "frames"
    assert evaluate.live_success({"tiny agent": history_agent}, "", 2) == {}


# ---------------------------------------------------------------------------------------------------
# data.source: miniwob for a run
# ---------------------------------------------------------------------------------------------------

def test_prepare_data_records_miniwob_splits_into_the_run_folder(tmp_path):
    from uivlm_helpers.core.config import load_config
    from uivlm_helpers.core.paths import RunPaths
    from uivlm_helpers.data.run_data import load_split, prepare_data

    config = load_config({"data": {"source": "miniwob:click-test-2,enter-text", "train_size": 7,
                                   "eval_size": 3, "seed": 4}})
    paths = RunPaths(tmp_path / "run")
    splits = prepare_data(config, paths)
    assert splits == {"train": paths.data / "train.jsonl", "test": paths.data / "test.jsonl"}
    train, test = load_split(paths, "train"), load_split(paths, "test")
    assert len(train) == 7 and len(test) == 3
    assert {r["source"] for r in train} == {"miniwob/click-test-2", "miniwob/enter-text"}
    assert {r["id"] for r in train}.isdisjoint({r["id"] for r in test})
    assert all(r["image_size"] == [160, 210] and r["platform"] == "web" for r in train + test)
    # the same configuration reuses the recorded splits
    stamp = splits["train"].stat().st_mtime_ns
    assert prepare_data(config, paths) == splits and splits["train"].stat().st_mtime_ns == stamp


def test_miniwob_sources_are_checked_before_starting_a_browser():
    from uivlm_helpers.data.run_data import miniwob_tasks

    assert miniwob_tasks("miniwob") == list(mw.DEFAULT_TASKS)
    assert miniwob_tasks("miniwob: click-test , click-tab") == ["click-test", "click-tab"]
    assert miniwob_tasks("synthetic") is None and miniwob_tasks("data/miniwob_copy") is None
    with pytest.raises(ValueError, match="book-flight.*available"):
        miniwob_tasks("miniwob:book-flight")
