"""Evaluation: predictions on held-out records, metrics, breakdowns and live MiniWoB++ episodes
(``evaluate``); step, episode and Mind2Web scoring as the benchmarks score (``episode_metrics``).
Imports from the layers below (core, data, families, models)."""

from .episode_metrics import episode_metrics, episode_table, mind2web_metrics, score_step  # noqa: F401
