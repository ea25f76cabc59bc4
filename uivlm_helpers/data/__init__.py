"""Data: the record schema and everything that makes or reads records.

``schema`` (the JSONL record schema, reading and writing, with errors that name the file and line),
``converters`` (public GUI-grounding data sets into records), ``synth`` (synthetic screens),
``synth_tasks`` (the task screens the tiny models learn from), ``miniwob_env`` (MiniWoB++ environments,
oracle policies, rollouts, demonstrations) and ``run_data`` (a run's train/test splits). Imports only
from :mod:`uivlm_helpers.core`.
"""
