"""What the history is worth: an agent's step and episode metrics with its history window and without,
next to the best any history-blind policy can do on the same records.

A history-blind policy sees only (screenshot, instruction). Steps of an episode that share both - a
screen that does not change, an instruction that names the whole task - look the same to it, so it gives
them one answer; at best that answer is right for the most common target among them.
:func:`blind_baseline` computes that ceiling from the records, so "without history, no better than
the blind baseline" is a statement about the data, not about a particular model.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..models.wrapper import VLMWrapper
from .episode_metrics import episode_metrics, mind2web_metrics
from .evaluate import predict_records


def _target_key(record: dict):
    """Targets a single answer hits together: the same box, else the same action."""
    if record.get("bbox"):
        return ("box", tuple(record["bbox"]))
    return ("action", tuple(sorted(record["action"].items())))


def blind_baseline(records: list[dict]) -> dict:
    """The best step accuracy and episode success of any policy that ignores the history.

    Records with the same screenshot and instruction are one input to such a policy; it is credited with
    the most common target of each input (a ceiling: a real model does no better). An episode can succeed
    only if all its steps are credited.

    Returns:
        ``{"step_accuracy", "episode_success", "n_steps", "n_episodes"}``.
    """
    if not records:
        raise ValueError("blind_baseline: no records")
    inputs: dict[tuple, Counter] = defaultdict(Counter)
    for record in records:
        inputs[(str(record["image"]), record["instruction"])][_target_key(record)] += 1
    best = {key: counts.most_common(1)[0][0] for key, counts in inputs.items()}
    credited = [best[(str(r["image"]), r["instruction"])] == _target_key(r) for r in records]
    episodes: dict[str, list[bool]] = defaultdict(list)
    for record, hit in zip(records, credited):
        episodes[record.get("episode_id") or f"single:{record.get('id')}"].append(hit)
    return {"step_accuracy": sum(credited) / len(credited),
            "episode_success": sum(all(hits) for hits in episodes.values()) / len(episodes),
            "n_steps": len(credited), "n_episodes": len(episodes)}


def has_episodes(records: list[dict]) -> bool:
    """Whether any record is a step of an episode."""
    return any(r.get("episode_id") is not None for r in records)


def without_history(agent: VLMWrapper, records: list[dict], batch_size: int = 8, progress: bool = True) -> list[dict]:
    """Prediction rows of ``agent`` with its history window set to 0 (restored afterwards)."""
    window, images = agent.history_window, agent.history_images
    agent.history_window, agent.history_images = 0, 0
    try:
        return predict_records(agent, records, batch_size, progress)
    finally:
        agent.history_window, agent.history_images = window, images


def history_report(named_rows: dict[str, list[dict]], records: list[dict]) -> dict:
    """Episode metrics per agent (rows from :func:`predict_records`), plus the blind baseline.

    Returns:
        ``{agent: episode_metrics(...), "blind baseline": blind_baseline(records)}``; an agent's metrics
        gain ``"mind2web"`` (:func:`.episode_metrics.mind2web_metrics`) when rows come from Mind2Web.
    """
    report = {name: episode_metrics(rows) for name, rows in named_rows.items()}
    for name, rows in named_rows.items():  # Mind2Web's own metrics for its records
        web = [r for r in rows if str(r.get("source") or "").startswith("mind2web")]
        if web:
            report[name]["mind2web"] = mind2web_metrics(web)
    report["blind baseline"] = blind_baseline(records)
    return report


def episode_evaluation(named_rows: dict[str, list[dict]], records: list[dict], agent: VLMWrapper,
                       batch_size: int = 8, progress: bool = True) -> dict:
    """04's episode section: when the split holds episodes, ``agent`` is also evaluated without its
    history (added to ``named_rows`` as ``"<name> without history"``, ``name`` being the last agent of
    ``named_rows``) and every agent's episode metrics come back with the blind baseline
    (:func:`history_report`); ``{}`` for a split of single steps."""
    if not has_episodes(records):
        return {}
    name = list(named_rows)[-1]
    named_rows[f"{name} without history"] = without_history(agent, records, batch_size, progress)
    return history_report(named_rows, records)


def live_history(records: list[dict], agent: VLMWrapper) -> dict:
    """``live_success``'s history settings: an agent trained on episodes gets its own earlier actions
    (and screenshots) back at every live step, one trained on single steps is asked single steps, as
    it was trained."""
    if has_episodes(records):
        return {"history_window": "auto", "history_images": agent.history_images}
    return {"history_window": 0, "history_images": 0}


def history_table(report: dict):
    """Step accuracy and episode success side by side, one row per agent and the blind baseline."""
    import pandas as pd  # lazy: only the notebooks' tables need pandas here

    table = {}
    if not report:
        return pd.DataFrame({"note": ["no episodes in this split: every record is a single step"]})
    for name, metrics in report.items():
        if name == "blind baseline":
            table[name] = {"steps": metrics["n_steps"], "episodes": metrics["n_episodes"],
                           "step accuracy": metrics["step_accuracy"], "episode success": metrics["episode_success"]}
        else:
            table[name] = {"steps": metrics["n_steps"], "episodes": metrics["n_episodes"],
                           "step accuracy": metrics["step_success_rate"],
                           "episode success": metrics["episode_success_rate"]}
    return pd.DataFrame(table).T


def breakdown_table(report: dict, by: str = "source"):
    """Step accuracy and episode success per ``source`` (AndroidControl's modes included) or ``platform``,
    one row per agent and group: where each agent does well and where it drops."""
    import pandas as pd  # lazy: only the notebooks' tables need pandas here

    rows = {}
    for name, metrics in report.items():
        for group, part in (metrics.get(f"by_{by}") or {}).items():
            rows[(name, group)] = {"steps": part["n_steps"], "episodes": part["n_episodes"],
                                   "step accuracy": part["step_success_rate"],
                                   "episode success": part["episode_success_rate"]}
    if not rows:
        return pd.DataFrame({"note": [f"no episodes in this split to break down by {by}"]})
    return pd.DataFrame(rows).T.rename_axis(["agent", by])
