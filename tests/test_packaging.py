"""Project hygiene: the two commands, the conda environment, and notebooks committed clean."""

import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from uivlm_helpers.nbclean import is_clean
from uivlm_helpers.workbook import NOTEBOOKS, NOTEBOOKS_DIR, REPO_ROOT


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


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in ci.splitlines()[-1]
    assert "make test" in readme and "make run" in readme and "make lab" in readme
