"""Project hygiene: the two commands, the conda environment, and notebooks committed clean."""

import re
import subprocess
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from uivlm_helpers.core.config import ConfigError
from uivlm_helpers.core.paths import NOTEBOOKS_DIR, REPO_ROOT
from uivlm_helpers.workbook import runner
from uivlm_helpers.workbook.nbclean import is_clean
from uivlm_helpers.workbook.runner import NOTEBOOKS


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower().replace("_", "-")


def test_environment_yml_declares_the_same_dependencies_as_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert {_normalise(r) for r in pip_section} == declared
    assert "python=3.11" in env["dependencies"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebooks_are_committed_without_outputs_or_widget_state(name):
    path = NOTEBOOKS_DIR / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert is_clean(path), f"{path} has outputs, execution counts or widget state: run `make clean-notebooks`"
    assert "widgets" not in notebook.metadata
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    # literals only: papermill does not recompute derived values after injecting parameters
    for line in tagged[0].source.splitlines():
        code = line.split("#")[0].strip()
        if code:
            name_, value = (part.strip() for part in code.split("=", 1))
            assert name_.isupper(), line
            eval(value, {"__builtins__": {}}, {})  # a literal: no names, no calls


def test_ci_runs_the_readme_commands():
    """CI proves both README commands on a fresh clone: `make run` at smoke size (with a live episode),
    then `make test`."""
    ci = [line for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in ci[-1]
    assert any(line.startswith("make run") for line in ci)
    assert "make test" in readme and "make run" in readme and "make lab" in readme
    smoke = yaml.safe_load((REPO_ROOT / ".ci" / "smoke_params.yaml").read_text())
    assert smoke["LIVE_TASKS"] and smoke["LIVE_EPISODES"] >= 1 and smoke["MAX_STEPS"] <= 10
    # Every smoke parameter is one the notebooks declare (the runner would refuse it otherwise).
    known = set().union(*(runner.declared_parameters(nb) for nb in NOTEBOOKS))
    assert set(smoke) <= known


def _make_dry_run(target: str) -> str:
    """What `make <target>` would run on a machine with no .venv and no Chromium (commands only)."""
    result = subprocess.run(["make", "-n", "-B", target, "VENV=/nonexistent/venv"], cwd=REPO_ROOT,
                            capture_output=True, text=True, check=True)
    return result.stdout


@pytest.mark.parametrize("target", ["run", "test"])
def test_each_readme_command_sets_up_what_it_runs(target):
    """`make run` failed on a fresh machine when only `make test` installed Chromium: both set up
    the venv with the pinned torch pair and the Debian browser packages themselves."""
    commands = _make_dry_run(target)
    assert "pip install -q torch==2.14.1 torchvision==0.29.1" in commands
    assert "apt-get install" in commands and "chromium chromium-driver" in commands
    assert commands.index("torch==2.14.1") < commands.index('-e ".[dev]"')


def test_runner_refuses_a_live_run_without_a_browser_before_running_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIWOB_CHROME_BINARY", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("MINIWOB_CHROMEDRIVER", str(tmp_path / "no-chromedriver"))
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"04_eval's live MiniWoB\+\+ episodes .*no-chromium.*make run"):
        runner.run_workbook(run_dir, {"MAX_STEPS": 1}, progress=False)
    assert not run_dir.exists()          # refused before the first notebook started
    # Without live episodes nothing needs the browser.
    declared = {nb: runner.declared_parameters(nb) for nb in NOTEBOOKS}
    assert runner.browser_needs({"LIVE_TASKS": ""}, declared) == []
    assert runner.browser_needs({"LIVE_TASKS": "", "DATA_SOURCE": "miniwob:click-test"}, declared) == [
        "01_setup's MiniWoB++ demonstrations (DATA_SOURCE='miniwob:click-test')"]
