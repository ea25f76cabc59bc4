"""Run the workbook's notebooks with papermill, and the bookkeeping every notebook shares.

``python -m uivlm_helpers.workbook`` runs 01 → 05 in order into one run folder. Each notebook starts
with :func:`start_notebook`, which rejects parameters the notebook does not declare (papermill itself
only warns about them), loads the run configuration, applies the notebook's parameters to it and saves
it back, so the five notebooks share one configuration. Run-only settings (``PUSH_TO_HUB``, ``PRIVATE``)
hold for the run that sets them and are never saved: every run starts from their defaults (no push,
private). Each ends with :func:`record_results`, which writes ``results/<notebook>.json`` for people
and tests to read.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
import types
from pathlib import Path

import papermill
import yaml

from ..core.config import ConfigError, RunConfig, load_config, without_run_only_settings
from ..core.paths import DEFAULT_RUN_DIR, NOTEBOOKS_DIR, RunPaths
from ..data.miniwob_env import chrome_available

NOTEBOOKS = ("01_setup", "02_prompting", "03_lora_train", "04_eval", "05_share")

#: Notebook parameters that set a run-configuration value (None in a notebook means "keep it").
PARAMETER_KEYS = {
    "MODEL_NAME": "model.name",
    "ACTION_FORMAT": "model.action_format",
    "DEVICE": "model.device",
    "TORCH_DTYPE": "model.torch_dtype",
    "USE_LORA": "model.use_lora",
    "LORA_R": "model.lora_config.r",
    "LORA_ALPHA": "model.lora_config.lora_alpha",
    "LOAD_IN_4BIT": "model.load_in_4bit",
    "LOAD_IN_8BIT": "model.load_in_8bit",
    "FREEZE_VISION": "model.freeze_vision_encoder",
    "MAX_NEW_TOKENS": "model.max_new_tokens",
    "DATA_SOURCE": "data.source",
    "TRAIN_SIZE": "data.train_size",
    "EVAL_SIZE": "data.eval_size",
    "DATA_SEED": "data.seed",
    "HISTORY_WINDOW": "data.history_window",
    "HISTORY_IMAGES": "data.history_images",
    "MAX_STEPS": "training.max_steps",
    "BATCH_SIZE": "training.batch_size",
    "GRAD_ACCUM": "training.gradient_accumulation_steps",
    "CHECKPOINT_INTERVAL": "training.checkpoint_interval",
    "GRADIENT_CHECKPOINTING": "training.gradient_checkpointing",
    "UNCHECKPOINTED_LAYERS": "training.uncheckpointed_layers",
    "MEMORY_BUDGET_GIB": "training.memory_budget_gib",
    "MIXED_PRECISION": "training.mixed_precision",
    "WARMUP_STEPS": "training.warmup_steps",
    "SEED": "training.seed",
    "LR_SCHEDULER": "training.lr_scheduler",
    "LOGGING_STEPS": "training.logging_steps",
    "DATALOADER_WORKERS": "training.dataloader_num_workers",
    "CACHE_VISION_FEATURES": "training.cache_vision_features",
    "FUSED_CROSS_ENTROPY": "training.fused_cross_entropy",
    "LEARNING_RATE": "algorithm.learning_rate",
    "EVAL_SAMPLES": "evaluation.max_samples",
    "FEW_SHOT": "few_shot",
    "REPO_ID": "share.repo_id",
    "PUSH_TO_HUB": "share.push",
    "PRIVATE": "share.private",
    "MERGE": "share.merge",
}
# Parameters that steer a notebook without being part of the configuration.
CONTROL_PARAMETERS = {"RUN_DIR", "CONFIG_FILE", "INTERACTIVE"}
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def declared_parameters(notebook: str) -> dict:
    """The parameters a notebook's ``parameters`` cell declares, with their defaults."""

    info = papermill.inspect_notebook(str(NOTEBOOKS_DIR / f"{notebook}.ipynb"))
    return {name: spec["default"] for name, spec in info.items()}


def unknown_parameters(notebook: str, names) -> list[str]:
    declared = declared_parameters(notebook)
    return sorted(set(names) - set(declared))


def _namespace_parameters(namespace: dict) -> dict:
    """Plain values a notebook's namespace holds (modules, functions, IPython internals skipped)."""
    return {name: value for name, value in namespace.items()
            if not name.startswith("_") and name not in _IPYTHON_NAMES
            and not isinstance(value, (types.ModuleType, types.FunctionType, type))
            and not callable(value)}


def start_notebook(notebook: str, namespace: dict) -> tuple[RunConfig, RunPaths]:
    """Validate a notebook's parameters, then load, update and save the run configuration.

    Call it in the cell after ``parameters`` with ``globals()``. 01_setup starts the configuration
    (from ``CONFIG_FILE`` or defaults); the others read the one in ``RUN_DIR``. The returned
    configuration holds this run's run-only settings (``PUSH_TO_HUB``, ``PRIVATE``); the saved one does not.

    Raises:
        ConfigError: a parameter the notebook does not declare (a typo in ``-p``), a bad value, or
            a missing run configuration.
    """
    declared = declared_parameters(notebook)
    values = _namespace_parameters(namespace)
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ConfigError(f"{notebook}: unknown parameter(s) {unknown}; this notebook takes {sorted(declared)}")
    paths = RunPaths(Path(values["RUN_DIR"]).resolve())
    if notebook == NOTEBOOKS[0]:
        config = load_config(values.get("CONFIG_FILE"))
    elif paths.config.is_file():
        config = load_config(paths.config)
    else:
        raise ConfigError(f"{notebook}: no run configuration at {paths.config}; run 01_setup with "
                          f"RUN_DIR={values['RUN_DIR']!r} first")
    # A configuration saved before run-only settings existed (or a CONFIG_FILE) must not push by itself.
    config = without_run_only_settings(config)
    config.set_many({PARAMETER_KEYS[name]: value for name, value in values.items()
                     if name in PARAMETER_KEYS and value is not None})
    for folder in ("results", "figures"):
        getattr(paths, folder).mkdir(parents=True, exist_ok=True)
    without_run_only_settings(config).save(paths.config)
    return config, paths


def record_results(paths: RunPaths, notebook: str, results: dict) -> Path:
    """Write what a notebook found to ``results/<notebook>.json`` (machine-readable, for tests)."""
    path = paths.results / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


def read_results(run_dir: str | Path, notebook: str) -> dict:
    return json.loads((Path(run_dir) / "results" / f"{notebook}.json").read_text())


def browser_needs(parameters: dict, declared: dict) -> list[str]:
    """What in this run drives a real Chromium: 04's live episodes and MiniWoB++ demonstrations as data.

    ``declared`` maps each notebook to run onto its declared parameters (their defaults count when a
    parameter is not given).
    """
    def value(notebook, name):
        if name in parameters:
            return parameters[name]
        default = declared.get(notebook, {}).get(name)   # papermill gives the cell's source text
        try:
            return ast.literal_eval(default) if isinstance(default, str) else default
        except (ValueError, SyntaxError):
            return default

    needs = []
    live_tasks, episodes = value("04_eval", "LIVE_TASKS"), value("04_eval", "LIVE_EPISODES")
    if "04_eval" in declared and live_tasks and str(live_tasks).strip() and (episodes or 0) > 0:
        needs.append(f"04_eval's live MiniWoB++ episodes (LIVE_TASKS={live_tasks!r})")
    source = value("01_setup", "DATA_SOURCE")
    if "01_setup" in declared and isinstance(source, str) and source.startswith("miniwob"):
        needs.append(f"01_setup's MiniWoB++ demonstrations (DATA_SOURCE={source!r})")
    return needs


def require_browser_if_needed(parameters: dict, declared: dict) -> None:
    """Refuse to start a run that would stop at its first browser step, minutes in, for want of Chromium."""

    needs = browser_needs(parameters, declared)
    if not needs:
        return
    available, reason = chrome_available()
    if not available:
        raise ConfigError(f"{' and '.join(needs)} need a browser: {reason}. `make run` installs it; "
                          "or skip the live episodes with -p LIVE_TASKS ''")


def run_workbook(run_dir: str | Path = DEFAULT_RUN_DIR, parameters: dict | None = None,
                 notebooks=NOTEBOOKS, kernel_name: str = "python3", progress: bool = True) -> dict:
    """Execute notebooks in order with papermill into ``run_dir/notebooks``.

    Every parameter must be declared by at least one of the notebooks; each notebook receives the
    ones it declares. Returns the wall time per notebook.
    """

    parameters = dict(parameters or {})
    run_dir = Path(run_dir).resolve()
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    known = set().union(*declared.values())
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; the notebooks take {sorted(known)}")
    require_browser_if_needed(parameters, declared)
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    timings = {}
    for nb in notebooks:
        own = {k: v for k, v in parameters.items() if k in declared[nb]}
        own["RUN_DIR"] = str(run_dir)
        start = time.perf_counter()
        papermill.execute_notebook(str(NOTEBOOKS_DIR / f"{nb}.ipynb"), str(run_dir / "notebooks" / f"{nb}.ipynb"),
                                   parameters=own, kernel_name=kernel_name, cwd=str(NOTEBOOKS_DIR),
                                   progress_bar=progress)
        timings[nb] = round(time.perf_counter() - start, 1)
    return timings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the uivlm workbook (01 → 05) with papermill.")
    parser.add_argument("--run-dir", default=str(DEFAULT_RUN_DIR), help="run folder (default runs/default)")
    parser.add_argument("-f", "--parameters-file", help="YAML file of notebook parameters")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="one notebook parameter (value read as YAML: 10, 1e-4, true, text)")
    parser.add_argument("--notebooks", nargs="+", default=list(NOTEBOOKS), choices=NOTEBOOKS)
    args = parser.parse_args(argv)
    parameters = yaml.safe_load(Path(args.parameters_file).read_text()) if args.parameters_file else {}
    for name, value in args.parameter:
        parameters[name] = yaml.safe_load(value)
    started = time.perf_counter()
    try:
        timings = run_workbook(args.run_dir, parameters, args.notebooks)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except papermill.PapermillExecutionError as error:
        print(f"error: a notebook cell failed ({error.ename}: {error.evalue}); the executed notebook with "
              f"the traceback is in {Path(args.run_dir).resolve() / 'notebooks'}", file=sys.stderr)
        return 1
    run_dir = Path(args.run_dir).resolve()
    print(f"\nWorkbook finished in {time.perf_counter() - started:.0f} s")
    for nb, seconds in timings.items():
        print(f"  {nb:<15} {seconds:7.1f} s")
    print(f"Executed notebooks: {run_dir / 'notebooks'}")
    print(f"Results:            {run_dir / 'results'}")
    print(f"Run configuration:  {run_dir / 'config.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
