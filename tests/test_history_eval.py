"""What the history is worth: the history-blind ceiling computed from records, the agent without its
history, and 04's tables, on real synthetic episodes and a real tiny model."""

import pytest

from uivlm_helpers.data import synth_episodes
from uivlm_helpers.data.run_data import as_plain
from uivlm_helpers.data.schema import read_records
from uivlm_helpers.evaluation import history_eval
from uivlm_helpers.evaluation.evaluate import predict_records
from uivlm_helpers.models.wrapper import VLMWrapper


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("episodes")
    path = synth_episodes.generate_episode_records(6, seed=5, out_dir=folder, split="test")
    return [as_plain(r) for r in read_records(path)]


def test_synthetic_episodes_need_the_history(episodes):
    assert len(episodes) == 12 and {r["step"] for r in episodes} == {0, 1}
    for first, second in zip(episodes[::2], episodes[1::2]):
        assert first["episode_id"] == second["episode_id"]
        assert (first["image"], first["instruction"]) == (second["image"], second["instruction"])
        assert first["bbox"] != second["bbox"]                  # the two steps name different buttons
        assert second["history"] == [first["action"]] and first["history"] == []
    assert history_eval.blind_baseline(episodes) == {"step_accuracy": 0.5, "episode_success": 0.0,
                                                     "n_steps": 12, "n_episodes": 6}


def test_blind_baseline_credits_inputs_that_tell_steps_apart(episodes):
    # give every second step its own instruction: a history-blind policy can now answer both
    told_apart = [dict(r, instruction=f"{r['instruction']} (step {r['step'] + 1})") for r in episodes]
    assert history_eval.blind_baseline(told_apart)["step_accuracy"] == 1.0
    assert history_eval.blind_baseline(told_apart)["episode_success"] == 1.0
    # single steps (no episode_id) count as one-step episodes
    singles = [dict(r, episode_id=None) for r in episodes[:2]]
    assert history_eval.blind_baseline(singles)["n_episodes"] == 2
    with pytest.raises(ValueError, match="no records"):
        history_eval.blind_baseline([])


def test_episode_evaluation_adds_the_agent_without_history_and_restores_it(episodes):
    agent = VLMWrapper("uivlm/tiny-qwen2-vl-ui", history_window="auto")
    rows = {"fine-tuned": predict_records(agent, episodes, 12, progress=False)}
    assert all("Previous actions" not in r["history_text"] for r in rows["fine-tuned"])  # answers only
    assert rows["fine-tuned"][1]["history_text"] == agent.render_target(episodes[0]["action"],
                                                                        tuple(episodes[0]["image_size"]))
    report = history_eval.episode_evaluation(rows, episodes, agent, 12, progress=False)
    assert set(report) == {"fine-tuned", "fine-tuned without history", "blind baseline"}
    assert agent.history_window == "auto"                              # restored
    assert all(r["history_text"] == "" for r in rows["fine-tuned without history"])
    assert report["fine-tuned"]["n_episodes"] == 6 and report["fine-tuned"]["n_steps"] == 12
    table = history_eval.history_table(report)
    assert list(table.index) == ["fine-tuned", "fine-tuned without history", "blind baseline"]
    assert table.loc["blind baseline", "step accuracy"] == 0.5
    by_source = history_eval.breakdown_table(report, by="source")
    assert ("fine-tuned", synth_episodes.EPISODE_RECORD_SOURCE) in by_source.index
    # a split of single steps: nothing to add, the tables say so
    singles = [dict(r, episode_id=None, step=None) for r in episodes]
    assert history_eval.episode_evaluation({"x": []}, singles, agent) == {}
    assert "no episodes" in history_eval.history_table({}).iloc[0, 0]
    assert "no episodes" in history_eval.breakdown_table({}).iloc[0, 0]


def test_mind2web_rows_get_mind2web_metrics(episodes):
    rows = []
    for record in episodes:
        rows.append({"id": record["id"], "episode_id": record["episode_id"], "step": record["step"],
                     "source": "mind2web/example.com", "predicted": record["action"], "target": record["action"],
                     "bbox": record["bbox"], "image_size": record["image_size"], "platform": "web"})
    report = history_eval.history_report({"agent": rows}, episodes)
    assert report["agent"]["mind2web"]["element_accuracy"] == 1.0
    assert report["agent"]["episode_success_rate"] == 1.0
    assert "mind2web" not in history_eval.history_report({"agent": [dict(r, source="aitw") for r in rows]},
                                                         episodes)["agent"]
