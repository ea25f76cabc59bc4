"""The five notebooks, executed for real with papermill on the embedded tiny model."""

import json
import subprocess
import sys

import nbformat
import papermill
import pytest

from uivlm_helpers.core.config import ConfigError
from uivlm_helpers.core.paths import REPO_ROOT
from uivlm_helpers.workbook import runner

# Small but real: enough steps that training visibly lowers the loss on this CPU.
SMALL = {"TRAIN_SIZE": 24, "EVAL_SIZE": 6, "MAX_STEPS": 24, "BATCH_SIZE": 4, "LEARNING_RATE": 2e-3, "LOGGING_STEPS": 4,
         "EVAL_SAMPLES": 6, "N_SAMPLES": 2}


FAKE_TOKEN = "hf_uivlmWorkbookFakeToken9876543210zyxw"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One small run of the whole workbook, with a (fake) Hub token in the environment."""
    run_dir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", FAKE_TOKEN)
        runner.run_workbook(run_dir, SMALL, progress=False)
    return run_dir


@pytest.mark.slow
def test_every_notebook_ran_and_recorded_results(run_dir):
    for nb in runner.NOTEBOOKS:
        executed = nbformat.read(run_dir / "notebooks" / f"{nb}.ipynb", as_version=4)
        assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
        assert (run_dir / "results" / f"{nb}.json").is_file()
    config = (run_dir / "config.yaml").read_text()
    assert "max_steps: 24" in config and "train_size: 24" in config


@pytest.mark.slow
def test_training_lowered_the_loss(run_dir):
    trained = runner.read_results(run_dir, "03_lora_train")
    assert trained["global_step"] == 24
    assert trained["last_loss"] < trained["first_loss"]
    assert (run_dir / "logs" / "train.log").read_text().count('"loss"') >= 3
    assert list((run_dir / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert (run_dir / "figures" / "loss_curve.png").stat().st_size > 5_000


@pytest.mark.slow
def test_every_prediction_decodes_or_counts_as_a_failure(run_dir):
    rows = [json.loads(line) for line in (run_dir / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == SMALL["EVAL_SAMPLES"]
    for row in rows:
        assert (row["predicted"] is not None) != (row["failure"] is not None)
    metrics = runner.read_results(run_dir, "04_eval")["metrics"]
    parsed = sum(r["predicted"] is not None for r in rows)
    assert metrics["fine-tuned"]["parse_rate"] == pytest.approx(parsed / len(rows))
    assert set(metrics) == {"base", "fine-tuned"}


@pytest.mark.slow
def test_merged_model_reproduces_the_evaluation(run_dir):
    shared = runner.read_results(run_dir, "05_share")
    assert shared["reproduces"]["all_identical"], shared["reproduces"]
    assert shared["upload"]["pushed"] is False
    assert {"model.safetensors", "README.md", "uivlm_run_config.yaml", "uivlm_agent.json"} <= set(shared["files"])
    card = (run_dir / "share" / "README.md").read_text()
    assert card.startswith("---\n") and "click_accuracy" in card


@pytest.mark.slow
def test_shared_folder_reloaded_in_a_new_process_reproduces_04(run_dir):
    script = ("import json, sys; from uivlm_helpers.sharing import share; from uivlm_helpers.models.wrapper import VLMWrapper; "
              "agent = VLMWrapper(sys.argv[1]); "
              "print(json.dumps(share.reproduces_predictions(agent, sys.argv[2])))")
    done = subprocess.run([sys.executable, "-c", script, str(run_dir / "share"),
                           str(run_dir / "eval" / "predictions.jsonl")],
                          check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    check = json.loads(done.stdout.strip().splitlines()[-1])
    assert check["n"] == SMALL["EVAL_SAMPLES"] and check["all_identical"], check


@pytest.mark.slow
def test_the_hub_token_is_nowhere_in_the_run_folder(run_dir):
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaked = [str(p) for p in files if FAKE_TOKEN.encode() in p.read_bytes()]
    assert not leaked


def test_mistyped_parameter_fails_before_running(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['MAX_STPES'\]"):
        runner.run_workbook(tmp_path, {"MAX_STPES": 3})
    assert not (tmp_path / "notebooks" / "01_setup.ipynb").exists()


@pytest.mark.slow
def test_mistyped_parameter_fails_inside_the_notebook_too(tmp_path):
    """Run by papermill directly (not through the workbook runner), a typo still stops the run."""
    with pytest.raises(papermill.PapermillExecutionError, match="unknown parameter"):
        papermill.execute_notebook(str(runner.NOTEBOOKS_DIR / "01_setup.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"RUN_DIR": str(tmp_path), "MODLE_NAME": "x"},
                                   cwd=str(runner.NOTEBOOKS_DIR), progress_bar=False)


def test_later_notebook_without_setup_says_run_01_first(tmp_path):
    with pytest.raises(ConfigError, match="run 01_setup"):
        runner.start_notebook("03_lora_train", {"RUN_DIR": str(tmp_path)})


def test_command_line_reports_a_typo_clearly(tmp_path):
    result = subprocess.run([sys.executable, "-m", "uivlm_helpers.workbook", "--run-dir", str(tmp_path),
                             "-p", "LERNING_RATE", "0.1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "unknown parameter(s) ['LERNING_RATE']" in result.stderr
