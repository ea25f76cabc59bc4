"""Episodes: one policy played on seeded task instances, and its success rate per task.

Success is the binary reward of the MiniWoB++ papers: the episode ended with raw reward 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ...core.actions import Action
from .environment import MiniWoBTask, SOURCE_PREFIX
from .state import MiniWoBState

#: Actions allowed per episode unless the caller says otherwise.
DEFAULT_MAX_STEPS = 12


def policy_from_wrapper(vlm_wrapper, examples=None) -> Callable[[dict], dict | None]:
    """A policy that asks a :class:`~uivlm_helpers.models.wrapper.VLMWrapper` for the next action.

    The answer is decoded and mapped back to screenshot pixels by the wrapper; an answer that does
    not parse returns None, which :func:`run_episode` counts as a failed episode.
    """

    def policy(record: dict) -> dict | None:
        prediction = vlm_wrapper.predict([record["image"]], [record["instruction"]], examples=examples)[0]
        return prediction.action

    policy.wrapper = vlm_wrapper
    return policy


def episode_seed(seed: int, split: str, task: str, episode: int) -> int:
    """The MiniWoB++ seed of one episode: a stable hash, so splits and tasks never share instances."""
    digest = hashlib.sha256(f"{seed}/{split}/{task}/{episode}".encode()).hexdigest()
    return int(digest[:8], 16)


@dataclass
class EpisodeResult:
    """What happened in one episode."""

    task: str
    seed: int
    success: bool
    reward: float
    actions: list[dict] = field(default_factory=list)
    failure: str | None = None   # why it failed, when it did (policy error, step limit, wrong answer)


def run_episode(env: MiniWoBTask, policy: Callable[[dict], dict | None], seed: int,
                max_steps: int = DEFAULT_MAX_STEPS,
                on_step: Callable[[MiniWoBState, list[dict], dict], None] | None = None) -> EpisodeResult:
    """Run one episode of ``policy`` on ``env``.

    The policy's action is validated (an invalid one, None or an exception fails the episode, with
    the reason in ``failure``). ``done`` ends the episode: it succeeds only if the task itself ended
    with success. ``on_step(state, history, action)`` is called before each action is carried out.
    """
    state = env.reset(seed)
    history: list[dict] = []
    for _ in range(max_steps):
        record = env.record_dict(state, history, record_id=f"{SOURCE_PREFIX}-{env.task}-{seed}-{len(history)}")
        try:
            action = policy(record)
            if action is None:
                raise ValueError("the policy returned no action (unparseable answer?)")
            action = Action.from_dict(dict(action)).to_dict()
        except Exception as error:  # a policy's failure is a failed episode, not a crash
            return EpisodeResult(env.task, seed, False, -1.0, history, f"policy: {error}")
        if on_step is not None:
            on_step(state, history, action)
        if action["type"] == "done":
            return EpisodeResult(env.task, seed, False, -1.0, history + [action], "done() before the task ended")
        try:
            state, reward, done = env.step(action)
        except ValueError as error:
            return EpisodeResult(env.task, seed, False, -1.0, history, f"action: {error}")
        history.append(action)
        if done:
            reason = None if reward > 0 else f"task ended with reward {reward} ({env.info.get('reason')})"
            return EpisodeResult(env.task, seed, reward > 0, reward, history, reason)
    return EpisodeResult(env.task, seed, False, -1.0, history, f"no result after {max_steps} steps")


class TaskSeries:
    """One MiniWoBTask for a series of tasks: the caller's, or a new one closed at the end."""

    def __init__(self, env: MiniWoBTask | None, time_limit_s: float | None = None):
        self.env, self.own, self.time_limit_s = env, env is None, time_limit_s
        self.saved_limit = env.time_limit_s if env is not None else None

    def __enter__(self):
        return self

    def task(self, task: str) -> MiniWoBTask:
        if self.env is None:
            self.env = MiniWoBTask(task, time_limit_s=self.time_limit_s)
        else:
            self.env.load_task(task)
            if self.time_limit_s is not None:
                self.env.time_limit_s = self.time_limit_s
        return self.env

    def __exit__(self, *exc):
        if self.own and self.env is not None:
            self.env.close()
        elif self.env is not None:
            self.env.time_limit_s = self.saved_limit


def rollout_episodes(policy: Callable[[dict], dict | None], tasks: Iterable[str], episodes_per_task: int,
                     seed: int = 0, split: str = "test", max_steps: int = DEFAULT_MAX_STEPS,
                     time_limit_s: float | None = None,
                     env: MiniWoBTask | None = None) -> dict[str, list[EpisodeResult]]:
    """Every episode of :func:`rollout`, per task (same arguments)."""
    results: dict[str, list[EpisodeResult]] = {}
    with TaskSeries(env, time_limit_s) as browser:
        for task in tasks:
            task_env = browser.task(task)
            results[task] = [run_episode(task_env, policy, episode_seed(seed, split, task, i), max_steps)
                             for i in range(episodes_per_task)]
    return results


def rollout(policy: Callable[[dict], dict | None], tasks: Iterable[str], episodes_per_task: int,
            seed: int = 0, split: str = "test", max_steps: int = DEFAULT_MAX_STEPS,
            time_limit_s: float | None = None, env: MiniWoBTask | None = None) -> dict[str, float]:
    """Success rate of ``policy`` per task over seeded episodes.

    Args:
        policy: ``policy(record) -> action dict`` in screenshot pixels (e.g.
            :func:`~uivlm_helpers.data.miniwob_env.oracle_policy` or :func:`policy_from_wrapper`).
        tasks: MiniWoB++ task names.
        episodes_per_task: episodes per task.
        seed: the same seed gives the same task instances (and, for a deterministic policy, the same
            rates). ``split="test"`` draws instances disjoint from ``record_demonstrations``' train split.
        max_steps: actions allowed per episode.
        time_limit_s: episode time limit (None: the task's own, usually 10 s).
        env: an open :class:`MiniWoBTask` to reuse (switched from task to task, left open; its own
            time limit comes back afterwards); None starts one browser for all the tasks and
            closes it at the end.

    Returns:
        ``{task: success_rate}`` with rates in [0, 1].
    """
    episodes = rollout_episodes(policy, tasks, episodes_per_task, seed, split, max_steps, time_limit_s, env)
    return {task: sum(r.success for r in results) / max(len(results), 1) for task, results in episodes.items()}
