"""Offline evaluation: predictions for a split, and the metrics computed from them.

Every prediction is kept (raw text, decoded action, target, correctness) in ``eval/predictions.jsonl``
so metrics can be recomputed and failures browsed. Click accuracy follows ScreenSpot: the predicted
point (a box's centre when a box was emitted) must lie inside the target box, edges included, and an
unparseable answer counts as wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..core.images import as_image
from ..data.miniwob_env import MiniWoBTask, mean_steps, policy_from_wrapper, rollout_episodes
from ..data.miniwob_env.rollouts import DEFAULT_MAX_STEPS
from ..models.wrapper import VLMWrapper

POINT_TYPES = ("click", "double_click", "long_press")


def point_in_box(x: float, y: float, box) -> bool:
    """Is (x, y) inside ``[x1, y1, x2, y2]``, edges included?"""
    x1, y1, x2, y2 = box
    return x1 <= x <= x2 and y1 <= y <= y2


def score_prediction(predicted: dict | None, target: dict, bbox=None, distractors=None) -> dict:
    """Correctness of one predicted action (pixels) against the target action (pixels) and box.

    With ``distractors`` (boxes of the other elements the instruction's kind could name; ``[]``: none),
    a point action also gets ``on_distractor`` (the point is in one of them, not in the target) and
    ``candidates`` (target + distractors); both stay None when the record does not list them.
    """
    parsed = predicted is not None
    type_ok = parsed and predicted["type"] == target["type"]
    row = {"parsed": parsed, "type_correct": bool(type_ok), "click_correct": None,
           "text_correct": None, "distance_px": None, "on_distractor": None, "candidates": None}
    if target["type"] in POINT_TYPES:
        if type_ok:
            px, py = predicted["x"], predicted["y"]
            row["distance_px"] = math.hypot(px - target["x"], py - target["y"])
            inside = point_in_box(px, py, bbox) if bbox else row["distance_px"] == 0
            row["click_correct"] = bool(inside)
        else:
            row["click_correct"] = False
        if distractors is not None:
            row["candidates"] = 1 + len(distractors)
            row["on_distractor"] = bool(type_ok and not row["click_correct"]
                                        and any(point_in_box(predicted["x"], predicted["y"], b) for b in distractors))
    if target["type"] == "type":
        row["text_correct"] = bool(type_ok and predicted.get("text") == target.get("text"))
    row["correct"] = bool(type_ok) and row["click_correct"] is not False and row["text_correct"] is not False
    return row


def predict_records(wrapper: VLMWrapper, records, batch_size: int = 8, progress: bool = True) -> list[dict]:
    """Predict every record and score it; returns one row per record. A step of an episode is predicted
    with its history (the agent's ``history_window`` / ``history_images``); its row keeps ``episode_id``,
    ``step`` and ``history_text`` (the earlier actions the prompt showed, one per line)."""
    rows = []
    records = list(records)
    batches = range(0, len(records), batch_size)
    for start in tqdm(batches, desc="predicting", disable=not progress):
        chunk = records[start:start + batch_size]
        images = [as_image(r["image"]) for r in chunk]
        histories, history_images = wrapper.record_histories(chunk)
        predictions = wrapper.predict(images, [r["instruction"] for r in chunk], histories=histories,
                                      history_images=history_images)
        for record, prediction, image, history in zip(chunk, predictions, images, histories):
            shown = wrapper.history_answers(history, image.size)
            rows.append({
                "id": record.get("id"), "episode_id": record.get("episode_id"), "step": record.get("step"),
                "history_text": "\n".join(shown) if shown is not None else "",
                "image": str(record["image"]), "image_size": list(image.size),
                "instruction": record["instruction"], "raw_text": prediction.raw_text,
                "predicted": prediction.action, "failure": prediction.failure,
                "clamped": prediction.clamped, "target": record["action"], "bbox": record.get("bbox"),
                "element_type": record.get("element_type"), "source": record.get("source"),
                "platform": record.get("platform"),
                **score_prediction(prediction.action, record["action"], record.get("bbox"),
                                   record.get("distractors")),
            })
    return rows


def _rate(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def compute_metrics(rows: list[dict]) -> dict:
    """Parse rate, action-type accuracy, click accuracy, typed-text exact match, mean pixel distance,
    each also broken down by element type and by source.

    Where the records list their distractors, also: ``blind_baseline`` (the click accuracy of a policy
    that ignores the instruction's words and clicks one of the elements it could name, at random: the
    mean of 1 / candidates), ``distractor_click_rate`` (clicks on another such element) and the same
    figures ``by_candidates`` (number of elements the instruction could name).
    """
    def summary(subset):
        distances = [r["distance_px"] for r in subset if r["distance_px"] is not None]
        return {
            "n": len(subset),
            "parse_rate": _rate(r["parsed"] for r in subset),
            "type_accuracy": _rate(r["type_correct"] for r in subset),
            "click_accuracy": _rate(r["click_correct"] for r in subset),
            "text_exact_match": _rate(r["text_correct"] for r in subset),
            "mean_distance_px": sum(distances) / len(distances) if distances else None,
            "blind_baseline": _rate(1 / r["candidates"] for r in subset if r.get("candidates")),
            "distractor_click_rate": _rate(r.get("on_distractor") for r in subset),
        }

    metrics = summary(rows)
    counted = defaultdict(list)
    for r in rows:
        if r.get("candidates"):
            counted[r["candidates"]].append(r)
    if counted:
        metrics["by_candidates"] = {str(k): summary(group) for k, group in sorted(counted.items())}
    for key in ("element_type", "source", "platform"):
        groups = defaultdict(list)
        for r in rows:
            groups[str(r.get(key))].append(r)
        metrics[f"by_{key}"] = {name: summary(group) for name, group in sorted(groups.items())}
    metrics["cells"] = cell_averages(rows)
    return metrics


def cell_averages(rows: list[dict], keys=("platform", "element_type")) -> dict:
    """ScreenSpot-style click accuracy per (platform × element type) cell, averaged two ways.

    Papers report either the plain mean of the cells or the mean over samples; on unbalanced data
    they differ, so both are given, labelled.
    """
    cells = defaultdict(list)
    for r in rows:
        if r["click_correct"] is not None:
            cells[" / ".join(str(r.get(k)) for k in keys)].append(r["click_correct"])
    accuracy = {name: sum(v) / len(v) for name, v in sorted(cells.items())}
    n = sum(len(v) for v in cells.values())
    return {"click_accuracy_by_cell": accuracy,
            "cell_count": {name: len(v) for name, v in sorted(cells.items())},
            "plain_mean_of_cells": sum(accuracy.values()) / len(accuracy) if accuracy else None,
            "sample_weighted_mean": sum(sum(v) for v in cells.values()) / n if n else None}


def write_predictions(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def read_predictions(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_metrics(metrics: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2))
    return path


def read_metrics(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def best_and_worst(rows: list[dict], n: int) -> tuple[list[dict], list[dict]]:
    """The ``n`` closest correct predictions and the ``n`` furthest (or unparseable) ones."""
    def distance(row):
        return row["distance_px"] if row["distance_px"] is not None else float("inf")

    ranked = sorted(rows, key=lambda r: (not r["correct"], distance(r)))
    return ranked[:n], ranked[::-1][:n]


def check_pixel_budget(config, agent) -> None:
    """Refuse to evaluate an agent whose pixel budget differs from the run configuration's.

    Coordinates learned under one image resize do not transfer to another, so a mismatch would
    produce silently wrong clicks.
    """
    wanted = {"min_pixels": config.model.min_pixels, "max_pixels": config.model.max_pixels}
    actual = agent.pixel_budget
    for key, value in wanted.items():
        if value is not None and actual[key] != value:
            raise ValueError(f"pixel budget mismatch: the agent was trained with {key}={actual[key]} but "
                             f"the run configuration asks for {value}; evaluate with the training budget")


def metrics_table(named_metrics: dict[str, dict]):
    """A pandas table comparing the headline metrics of several models (e.g. base vs fine-tuned)."""

    keys = ("n", "parse_rate", "type_accuracy", "click_accuracy", "text_exact_match", "mean_distance_px")
    table = pd.DataFrame({name: {k: m.get(k) for k in keys} for name, m in named_metrics.items()}).T
    if any(m.get("blind_baseline") is not None for m in named_metrics.values()):
        for k in ("blind_baseline", "distractor_click_rate"):
            table[k] = [m.get(k) for m in named_metrics.values()]
    return table


class LiveSuccess(dict):
    """:func:`live_success`'s result: ``{agent: {task: success_rate, ..., "mean": rate}}``, with
    ``steps``, the same table of mean actions per episode (``{agent: {task: mean_steps, ..., "mean":
    steps}}``), and ``frames_dir``, where the episodes' screenshots were saved (None when not)."""

    def __init__(self, rates: dict, steps: dict, frames_dir: Path | None = None):
        super().__init__(rates)
        self.steps = steps
        self.frames_dir = frames_dir


def _folder_name(name: str) -> str:
    """An agent or task name as one folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "_"


def save_episode_frames(episode, folder: str | Path) -> Path:
    """One episode's screenshots as ``step_00.png``, ``step_01.png``... (the screen before each action)
    and ``episode.json`` (task, seed, success, reward, failure, actions in screenshot pixels, frame files)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, frame in enumerate(episode.frames):
        names.append(f"step_{i:02d}.png")
        frame.save(folder / names[-1])
    summary = {"task": episode.task, "seed": episode.seed, "success": episode.success, "reward": episode.reward,
               "failure": episode.failure, "steps": episode.steps, "actions": episode.actions, "frames": names}
    (folder / "episode.json").write_text(json.dumps(summary, indent=2))
    return folder


def live_success(agents: dict, tasks: str | list[str] | None, episodes_per_task: int, seed: int = 0,
                 history_window: int | str = 0, history_images: int = 0,
                 frames_dir: str | Path | None = None, max_steps: int = DEFAULT_MAX_STEPS) -> LiveSuccess:
    """Per-task MiniWoB++ success rate and mean steps of each agent (a table: tasks × agents, plus the mean).

    Args:
        agents: name -> :class:`~uivlm_helpers.models.wrapper.VLMWrapper`.
        tasks: task names, or one comma-separated string; empty or None (``-p LIVE_TASKS ""`` on the
            command line) skips the live evaluation.
        episodes_per_task: seeded episodes per task (the same instances for every agent).
        history_window, history_images: the agent's own earlier actions and screenshots fed back at
            every step (see :func:`~uivlm_helpers.data.miniwob_env.policy_from_wrapper`).
        frames_dir: save every episode's screenshots and actions under
            ``frames_dir/<agent>/<task>/episode_<i>/`` (see :func:`save_episode_frames`).
        max_steps: actions allowed per episode.

    Returns:
        A :class:`LiveSuccess`: ``{agent: {task: rate, ..., "mean": rate}}`` (empty when no task is
        given), with ``.steps``: ``{agent: {task: mean_steps, ..., "mean": steps}}``.
    """

    tasks = [t.strip() for t in tasks.split(",") if t.strip()] if isinstance(tasks, str) else list(tasks or [])
    frames_dir = Path(frames_dir) if frames_dir is not None else None
    if not tasks or episodes_per_task <= 0:
        return LiveSuccess({}, {}, None)
    rates, steps = {}, {}
    env = MiniWoBTask(tasks[0])
    try:
        for name, agent in agents.items():
            policy = policy_from_wrapper(agent, history_window=history_window, history_images=history_images)
            # CPU inference is slow next to a person: give each episode time for the model to answer.
            episodes = rollout_episodes(policy, tasks, episodes_per_task, seed=seed, max_steps=max_steps,
                                        time_limit_s=60, env=env, keep_frames=frames_dir is not None)
            agent_rates = {task: sum(e.success for e in runs) / len(runs) for task, runs in episodes.items()}
            agent_steps = {task: mean_steps(runs) for task, runs in episodes.items()}
            rates[name] = {**agent_rates, "mean": sum(agent_rates.values()) / len(agent_rates)}
            steps[name] = {**agent_steps, "mean": mean_steps([e for runs in episodes.values() for e in runs])}
            if frames_dir is not None:
                for task, runs in episodes.items():
                    for i, episode in enumerate(runs):
                        save_episode_frames(episode, frames_dir / _folder_name(name) / _folder_name(task)
                                            / f"episode_{i:03d}")
    finally:
        env.close()
    return LiveSuccess(rates, steps, frames_dir)
