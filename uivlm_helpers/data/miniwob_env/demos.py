"""Oracle demonstrations recorded as a validated JSONL dataset of the workbook's records."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

from ..schema import UIRecord, write_records
from .environment import MiniWoBTask, SOURCE_PREFIX
from .oracles import ORACLES, oracle_policy, oracle_step
from .rollouts import DEFAULT_MAX_STEPS, TaskSeries, episode_seed, run_episode


def record_demonstrations(tasks: Iterable[str], episodes: int, seed: int, out_dir: str | Path, *,
                          split: str = "train", max_records: int | None = None,
                          jsonl_name: str | None = None, max_steps: int = DEFAULT_MAX_STEPS,
                          env: MiniWoBTask | None = None) -> Path:
    """Record oracle demonstrations as a validated JSONL dataset.

    Every step of a successful oracle episode is one record (screenshot + utterance -> the oracle's
    action, ``bbox``/``element_type`` of the element it aims at, ``history`` = the episode's earlier
    actions). The records of an episode share ``episode_id`` (``miniwob-<split>-<task>-<episode>``,
    episode numbered from 0 in 5 digits) and carry their ``step`` and, in ``history_images``, the
    earlier steps' screenshots (the files written for those steps). Failed episodes are left out; :func:`~uivlm_helpers.data.miniwob_env.rollout` measures
    how rare they are.

    Args:
        tasks: MiniWoB++ tasks with an oracle (:data:`~uivlm_helpers.data.miniwob_env.ORACLE_TASKS`).
        episodes: episodes per task (at most; see ``max_records``).
        seed: seeds the episodes (with ``split``, see :func:`episode_seed`): same arguments, same data.
        out_dir: dataset folder; screenshots go to ``out_dir/images``.
        split: the records' split, also part of the episode seeds.
        max_records: cap on the records written: each task stops once it has its share
            (``ceil(max_records / len(tasks))``) and the list is cut to ``max_records``.
        jsonl_name: file name (default ``<split>.jsonl``).
        env: an open :class:`MiniWoBTask` to reuse (see :func:`~uivlm_helpers.data.miniwob_env.rollout`).

    Returns:
        The path of the JSONL file.
    """
    tasks = list(tasks)
    missing = [t for t in tasks if t not in ORACLES]
    if missing:
        raise KeyError(f"no oracle policy for {missing}; tasks with an oracle: {sorted(ORACLES)}")
    quota = math.ceil(max_records / len(tasks)) if max_records is not None else None
    records: list[UIRecord] = []
    with TaskSeries(env) as browser:
        for task in tasks:
            task_records: list[UIRecord] = []
            task_env = browser.task(task)
            for episode in range(episodes):
                if quota is not None and len(task_records) >= quota:
                    break
                steps: list[UIRecord] = []
                ep_seed = episode_seed(seed, split, task, episode)

                def remember(state, history, action, task=task, episode=episode, steps=steps):
                    decision = oracle_step(state, len(history))
                    episode_id = f"{SOURCE_PREFIX}-{split}-{task}-{episode:05d}"
                    steps.append(MiniWoBTask.record(state, action, history, f"{episode_id}-{len(history):02d}",
                                                    decision.element, split, episode_id=episode_id,
                                                    history_images=[s.image for s in steps]))

                result = run_episode(task_env, oracle_policy, ep_seed, max_steps, on_step=remember)
                if result.success:
                    task_records += steps
            records += task_records[:quota] if quota is not None else task_records
    if max_records is not None:
        records = records[:max_records]
    out = Path(out_dir) / (jsonl_name or f"{split}.jsonl")
    return write_records(records, out)
