"""bench/ is a package run from the repository root (``python -m bench.bench_memory``): no script edits
sys.path or loads a test file, the benchmark modules import without running, and ``bench.common``
builds run configurations through RunConfig's own validation."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from uivlm_helpers.core.config import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_FILES = sorted((REPO_ROOT / "bench").rglob("*.py"))
# Scripts that import without running (the binding experiments base_errors / continue_base run at import).
BENCH_MODULES = ["bench.common", "bench.bench_actions", "bench.bench_anchor", "bench.bench_data", "bench.bench_history",
                 "bench.bench_fast_path", "bench.bench_inference", "bench.bench_memory", "bench.bench_throughput",
                 "bench.oracle_success", "bench.binding.prompt_order", "bench.binding.two_boxes"]


def test_bench_folders_are_packages():
    assert (REPO_ROOT / "bench" / "__init__.py").is_file()
    assert (REPO_ROOT / "bench" / "binding" / "__init__.py").is_file()


@pytest.mark.parametrize("path", BENCH_FILES, ids=[str(p.relative_to(REPO_ROOT)) for p in BENCH_FILES])
def test_no_sys_path_edits_and_no_test_files_loaded(path):
    text = path.read_text()
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", None) == "sys":
            pytest.fail(f"{path.relative_to(REPO_ROOT)}:{node.lineno} touches sys.path; run it as python -m bench.X")
        if isinstance(node, ast.Attribute) and node.attr == "spec_from_file_location":
            pytest.fail(f"{path.relative_to(REPO_ROOT)}:{node.lineno} loads a file as a module")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                assert not name.startswith("tests"), f"{path.relative_to(REPO_ROOT)}:{node.lineno} imports {name}"
                assert name not in {"common", "prompt_order", "two_boxes"}, (
                    f"{path.relative_to(REPO_ROOT)}:{node.lineno} imports {name!r} as a top-level module; "
                    f"use bench.common / bench.binding.{name}")


@pytest.mark.parametrize("module", BENCH_MODULES)
def test_bench_modules_import_as_a_package(module):
    assert importlib.import_module(module).__name__ == module


def test_bench_runs_as_a_module_from_the_repository_root():
    result = subprocess.run([sys.executable, "-m", "bench.bench_data", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--records" in result.stdout


def test_run_config_sets_dotted_keys_through_runconfig_validation():
    from bench import common

    config = common.run_config(common.QWEN_2B, "cuda", "bfloat16", training__batch_size=4,
                               model__lora_config__target_modules=["q_proj", "v_proj"])
    assert (config.model.name, config.model.device, config.training.batch_size) == (common.QWEN_2B, "cuda", 4)
    assert (config.data.image_width, config.data.image_height) == common.SCREEN
    assert list(config.model.lora_config.target_modules) == ["q_proj", "v_proj"]
    with pytest.raises(ConfigError, match="training.batch_sise"):
        common.run_config(common.QWEN_2B, "cuda", training__batch_sise=4)
