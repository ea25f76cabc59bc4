"""Evaluation: predictions on held-out records, metrics, breakdowns and live MiniWoB++ episodes
(``evaluate``). Imports from the layers below (core, data, families, models)."""
