"""MiniWoB++ in the workbook's terms: screenshots + utterances in, pixel actions out.

`MiniWoB++ <https://miniwob.farama.org>`_ (PyPI ``miniwob``, gymnasium API) runs small web tasks in a
headless Chromium. This package wraps one task environment so that

* an observation becomes the workbook's record: the 160x210 screenshot as the image and the task's
  utterance ("Click button ONE.") as the instruction (:meth:`MiniWoBTask.record`);
* an :class:`~uivlm_helpers.core.actions.Action` in **screenshot pixels** becomes MiniWoB++ actions
  (:meth:`MiniWoBTask.to_miniwob_actions`);

and adds scripted **oracle policies** that read the DOM (exact element positions) to produce
demonstrations (:func:`record_demonstrations`) and to check the environment (:func:`rollout`).

Modules, one job each (every public name is also importable from this package):

* :mod:`.browser`: the Chromium MiniWoB++ drives (:func:`chrome_available`, :data:`CHROME_FLAGS`,
  :func:`configure_browser`, the Selenium instance that starts it);
* :mod:`.state`: one observation read from the DOM (:class:`MiniWoBState`, :class:`Element`) and how
  screenshot pixels map onto CSS pixels;
* :mod:`.environment`: one task in a browser (:class:`MiniWoBTask`): reset, actions, records;
* :mod:`.oracles`: the oracle policies (:data:`ORACLES`, :data:`ORACLE_TASKS`,
  :data:`REQUIRED_ORACLE_TASKS`, :func:`oracle_step`, :func:`oracle_policy`);
* :mod:`.rollouts`: episodes, success rates and steps taken (:func:`run_episode`, :func:`rollout`,
  :func:`rollout_episodes`, :func:`episode_seed`, :class:`EpisodeResult`, :func:`mean_steps`,
  :func:`policy_from_wrapper`);
* :mod:`.demos`: oracle demonstrations as a JSONL dataset (:func:`record_demonstrations`).

Policies. A policy is any callable ``policy(record: dict) -> dict | None`` returning an action dict in
screenshot pixels (``{"type": "click", "x": 30, "y": 140}``). The record dict has the plain-record
keys (``id``, ``image`` as a ``PIL.Image``, ``instruction``, ``image_size``, ``history``, ``source``,
``platform``) plus ``"history_frames"`` (the screenshots of the earlier steps, PIL images, oldest first)
and ``"miniwob"``: the :class:`MiniWoBState` (DOM elements, fields), which only oracle policies read.
:func:`policy_from_wrapper` turns a :class:`~uivlm_helpers.models.wrapper.VLMWrapper` into a policy that can
show the model its own earlier actions and screenshots (``history_window``, ``history_images``). Success
is the binary reward of the MiniWoB++ papers: the episode ended with raw reward 1.

Example::

    from uivlm_helpers.data import miniwob_env as mw

    path = mw.record_demonstrations(["click-test-2", "enter-text"], episodes=20, seed=0, out_dir="data/mw")
    rates = mw.rollout(mw.oracle_policy, ["click-test-2"], episodes_per_task=10, seed=0)
    rates = mw.rollout(mw.policy_from_wrapper(wrapper), ["click-test-2"], episodes_per_task=10, seed=0)
"""

from .browser import CHROME_FLAGS, chrome_available, configure_browser
from .demos import record_demonstrations
from .environment import MiniWoBTask
from .oracles import (DEFAULT_TASKS, ORACLE_TASKS, ORACLES, REQUIRED_ORACLE_TASKS, OracleStep, oracle_policy,
                      oracle_step)
from .rollouts import (EpisodeResult, episode_seed, mean_steps, policy_from_wrapper, rollout, rollout_episodes,
                       run_episode)
from .state import Element, MiniWoBState

__all__ = [
    "CHROME_FLAGS", "DEFAULT_TASKS", "ORACLES", "ORACLE_TASKS", "REQUIRED_ORACLE_TASKS",
    "Element", "MiniWoBState", "MiniWoBTask", "OracleStep", "EpisodeResult",
    "chrome_available", "configure_browser", "episode_seed", "oracle_step", "oracle_policy",
    "mean_steps", "policy_from_wrapper", "run_episode", "record_demonstrations", "rollout", "rollout_episodes",
]
