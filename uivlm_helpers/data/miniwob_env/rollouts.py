"""Episodes: one policy played on seeded task instances, and its success rate per task.

Success is the binary reward of the MiniWoB++ papers: the episode ended with raw reward 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from PIL import Image

from ...core.actions import Action
from .environment import MiniWoBTask, SOURCE_PREFIX
from .state import MiniWoBState

#: Actions allowed per episode unless the caller says otherwise.
DEFAULT_MAX_STEPS = 12


def policy_from_wrapper(vlm_wrapper, history_window: int | str = 0, history_images: int = 0,
                        examples=None) -> Callable[[dict], dict | None]:
    """A policy that asks a :class:`~uivlm_helpers.models.wrapper.VLMWrapper` for the next action.

    At every step the model sees the screenshot and the utterance and, for a multi-step episode,
    its own earlier actions and screenshots (the record's ``history`` and ``history_frames``):

    Args:
        vlm_wrapper: the agent; its ``predict(images, instructions, histories=..., history_images=...)``
            answers.
        history_window: earlier actions passed at each step: 0 none (every step is asked as a single
            step, as an agent trained on single steps expects), N the last N, ``"auto"`` all of them,
            the agent's own ``history_window`` choosing how many reach the prompt. The agent writes at
            most its own window into the prompt, so N > 0 needs an agent whose window is not 0.
        history_images: earlier screenshots passed at each step (the last N, oldest first; 0 none);
            N > 0 needs an agent built with ``history_images`` > 0 (a multi-image family).
        examples: few-shot examples passed on to ``predict``.

    The answer is decoded and mapped back to screenshot pixels by the wrapper; an answer that does
    not parse returns None, which :func:`run_episode` counts as a failed episode.

    Raises:
        ValueError: a window that is not an int >= 0 (or ``"auto"``), or history the agent would drop.
    """
    if not (history_window == "auto" or (isinstance(history_window, int) and history_window >= 0)):
        raise ValueError(f"history_window: expected 'auto' or an int >= 0 (earlier actions), got {history_window!r}")
    if not (isinstance(history_images, int) and history_images >= 0):
        raise ValueError(f"history_images: expected an int >= 0 (earlier screenshots), got {history_images!r}")
    agent_window = getattr(vlm_wrapper, "history_window", 0)
    if isinstance(history_window, int) and history_window > 0 and agent_window == 0:
        raise ValueError(f"history_window={history_window}: the agent writes no earlier actions into its prompt "
                         "(its history_window is 0); build the VLMWrapper with history_window > 0 or 'auto'")
    if history_images > 0 and getattr(vlm_wrapper, "history_images", 0) == 0:
        raise ValueError(f"history_images={history_images}: the agent shows no earlier screenshots (its "
                         "history_images is 0); build the VLMWrapper with history_images > 0")

    def policy(record: dict) -> dict | None:
        histories = frames = None
        if history_window == "auto":
            histories = [[dict(a) for a in record["history"]]]
        elif history_window > 0:
            histories = [[dict(a) for a in record["history"][-history_window:]]]
        if history_images > 0:
            frames = [list(record.get("history_frames", []))[-history_images:]]
        prediction = vlm_wrapper.predict([record["image"]], [record["instruction"]], examples=examples,
                                         histories=histories, history_images=frames)[0]
        return prediction.action

    policy.wrapper = vlm_wrapper
    policy.history_window, policy.history_images = history_window, history_images
    return policy


def episode_seed(seed: int, split: str, task: str, episode: int) -> int:
    """The MiniWoB++ seed of one episode: a stable hash, so splits and tasks never share instances."""
    digest = hashlib.sha256(f"{seed}/{split}/{task}/{episode}".encode()).hexdigest()
    return int(digest[:8], 16)


@dataclass
class EpisodeResult:
    """What happened in one episode.

    ``frames`` (only with ``keep_frames``): the screenshot before each action taken, oldest first,
    plus the last screenshot when the episode stopped with the task still running (step limit,
    policy failure). Once a task ends MiniWoB++ covers its area with its START screen, so a finished
    episode has one frame per action.
    """

    task: str
    seed: int
    success: bool
    reward: float
    actions: list[dict] = field(default_factory=list)
    failure: str | None = None   # why it failed, when it did (policy error, step limit, wrong answer)
    frames: list[Image.Image] = field(default_factory=list, repr=False)

    @property
    def steps(self) -> int:
        """Actions taken (a final ``done`` included)."""
        return len(self.actions)


def run_episode(env: MiniWoBTask, policy: Callable[[dict], dict | None], seed: int,
                max_steps: int = DEFAULT_MAX_STEPS,
                on_step: Callable[[MiniWoBState, list[dict], dict], None] | None = None,
                keep_frames: bool = False) -> EpisodeResult:
    """Run one episode of ``policy`` on ``env``.

    The policy reads, at every step, the record of :meth:`MiniWoBTask.record_dict` with the episode
    so far: ``history`` (earlier actions, screenshot pixels, oldest first) and ``history_frames``
    (the screenshots they were taken on, as PIL images, oldest first). Its action is validated (an
    invalid one, None or an exception fails the episode, with the reason in ``failure``). ``done``
    ends the episode: it succeeds only if the task itself ended with success. ``on_step(state,
    history, action)`` is called before each action is carried out. ``keep_frames`` keeps the
    screenshots in the result (see :class:`EpisodeResult`).
    """
    state = env.reset(seed)
    history: list[dict] = []
    frames: list[Image.Image] = []

    def result(success: bool, reward: float, actions: list[dict], failure: str | None,
               last: MiniWoBState | None = None) -> EpisodeResult:
        kept = (frames + ([last.screenshot] if last is not None else [])) if keep_frames else []
        return EpisodeResult(env.task, seed, success, reward, actions, failure, kept)

    for _ in range(max_steps):
        record = env.record_dict(state, history, record_id=f"{SOURCE_PREFIX}-{env.task}-{seed}-{len(history)}")
        record["history_frames"] = list(frames)
        try:
            action = policy(record)
            if action is None:
                raise ValueError("the policy returned no action (unparseable answer?)")
            action = Action.from_dict(dict(action)).to_dict()
        except Exception as error:  # a policy's failure is a failed episode, not a crash
            return result(False, -1.0, history, f"policy: {error}", state)
        if on_step is not None:
            on_step(state, history, action)
        if action["type"] == "done":
            frames.append(state.screenshot)
            return result(False, -1.0, history + [action], "done() before the task ended")
        try:
            next_state, reward, done = env.step(action)
        except ValueError as error:
            return result(False, -1.0, history, f"action: {error}", state)
        frames.append(state.screenshot)
        history.append(action)
        state = next_state
        if done:
            reason = None if reward > 0 else f"task ended with reward {reward} ({env.info.get('reason')})"
            return result(reward > 0, reward, history, reason)
    return result(False, -1.0, history, f"no result after {max_steps} steps", state)


def mean_steps(episodes: Iterable[EpisodeResult]) -> float | None:
    """Mean number of actions per episode (None for no episode)."""
    steps = [e.steps for e in episodes]
    return sum(steps) / len(steps) if steps else None


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
                     time_limit_s: float | None = None, env: MiniWoBTask | None = None,
                     keep_frames: bool = False) -> dict[str, list[EpisodeResult]]:
    """Every episode of :func:`rollout`, per task (same arguments); ``keep_frames`` keeps each
    episode's screenshots (:class:`EpisodeResult`; about 100 kB each)."""
    results: dict[str, list[EpisodeResult]] = {}
    with TaskSeries(env, time_limit_s) as browser:
        for task in tasks:
            task_env = browser.task(task)
            results[task] = [run_episode(task_env, policy, episode_seed(seed, split, task, i), max_steps,
                                         keep_frames=keep_frames)
                             for i in range(episodes_per_task)]
    return results


def rollout(policy: Callable[[dict], dict | None], tasks: Iterable[str], episodes_per_task: int,
            seed: int = 0, split: str = "test", max_steps: int = DEFAULT_MAX_STEPS,
            time_limit_s: float | None = None, env: MiniWoBTask | None = None,
            with_steps: bool = False) -> dict[str, float] | tuple[dict[str, float], dict[str, float]]:
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
        with_steps: also return the mean number of actions per episode, per task.

    Returns:
        ``{task: success_rate}`` with rates in [0, 1]; with ``with_steps``,
        ``({task: success_rate}, {task: mean_steps})``.
    """
    episodes = rollout_episodes(policy, tasks, episodes_per_task, seed, split, max_steps, time_limit_s, env)
    rates = {task: sum(r.success for r in results) / max(len(results), 1) for task, results in episodes.items()}
    if not with_steps:
        return rates
    return rates, {task: mean_steps(results) for task, results in episodes.items()}
