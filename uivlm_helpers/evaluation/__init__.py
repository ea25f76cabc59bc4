"""Evaluation: predictions on held-out records, metrics, breakdowns and live MiniWoB++ episodes
(``evaluate``); step, episode and Mind2Web scoring as the benchmarks score (``episode_metrics``).
Imports from the layers below (core, data, families, models).

The function ``episode_metrics`` is not re-exported here: under the module's own name it would hide
the module (``import uivlm_helpers.evaluation.episode_metrics as m`` would return the function)."""

from .episode_metrics import episode_table, mind2web_metrics, score_step  # noqa: F401
