"""Training through transformers.Trainer on the tiny model: options, interruption and resume,
and the multi-process (accelerate / DDP over gloo) launch path."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from uivlm_helpers import run_data
from uivlm_helpers.config import load_config
from uivlm_helpers.train import COMPLETE_MARKER, last_complete_checkpoint, train, training_arguments
from uivlm_helpers.workbook import REPO_ROOT, RunPaths
from uivlm_helpers.wrapper import VLMWrapper

PYTHON = sys.executable


def _make_run(folder: Path, **training) -> RunPaths:
    config = load_config({"data": {"train_size": 16, "eval_size": 2, "seed": 1},
                          "training": {"batch_size": 2, "logging_steps": 1, **training},
                          "algorithm": {"learning_rate": 5e-3}})
    paths = RunPaths(folder)
    run_data.prepare_data(config, paths)
    config.save(paths.config)
    return paths


def _adapter(paths: RunPaths) -> dict:
    return load_file(paths.adapter / "adapter_model.safetensors")


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    straight = _make_run(tmp_path / "straight", max_steps=30, checkpoint_interval=5)
    subprocess.run([PYTHON, "-m", "uivlm_helpers.train", "--run-dir", str(straight.root)], check=True,
                   capture_output=True)

    interrupted = RunPaths(tmp_path / "interrupted")
    shutil.copytree(straight.root / "data", interrupted.root / "data")
    shutil.copy(straight.config, interrupted.config)
    process = subprocess.Popen([PYTHON, "-m", "uivlm_helpers.train", "--run-dir", str(interrupted.root)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sealed = interrupted.checkpoints / "checkpoint-10" / COMPLETE_MARKER
    deadline = time.time() + 240
    while not sealed.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training finished before it could be interrupted"
    assert not (interrupted.adapter / "adapter_model.safetensors").exists()

    # A checkpoint left half-written by the kill must never be resumed from.
    for path in interrupted.checkpoints.glob("checkpoint-*"):
        if not (path / COMPLETE_MARKER).exists():
            assert int(path.name.split("-")[1]) > 10
    half_written = interrupted.checkpoints / "checkpoint-25"
    half_written.mkdir(exist_ok=True)
    (half_written / "adapter_model.safetensors").write_bytes(b"trunc")

    resumed_run = subprocess.run([PYTHON, "-m", "uivlm_helpers.train", "--run-dir", str(interrupted.root),
                                  "--resume"], check=True, capture_output=True, text=True)
    assert "resuming from" in resumed_run.stdout, resumed_run.stdout
    assert (interrupted.checkpoints / "incomplete-checkpoint-25").is_dir()
    expected, resumed = _adapter(straight), _adapter(interrupted)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=1e-5, atol=1e-6)
    summary = json.loads((interrupted.logs / "train_summary.json").read_text())
    assert summary["global_step"] == 30
    logged_steps = [json.loads(line)["step"] for line in (interrupted.logs / "train.log").read_text().splitlines()]
    assert logged_steps == sorted(set(logged_steps)) and logged_steps[-1] == 30


def test_last_complete_checkpoint_skips_unsealed_folders(tmp_path):
    for step, sealed in [(4, True), (8, True), (12, False)]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if sealed:
            (folder / COMPLETE_MARKER).write_text("{}")
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-8"
    assert (tmp_path / "incomplete-checkpoint-12").is_dir()
    assert last_complete_checkpoint(tmp_path / "nothing-here") is None


def test_two_processes_train_together_with_accelerate(tmp_path):
    paths = _make_run(tmp_path / "ddp", max_steps=4, checkpoint_interval=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([str(Path(PYTHON).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m", "uivlm_helpers.train", "--run-dir", str(paths.root)],
                   check=True, capture_output=True, env=env, cwd=REPO_ROOT)
    state = json.loads((paths.checkpoints / "checkpoint-4" / "trainer_state.json").read_text())
    # 4 steps × batch 2 × 2 processes = 16 samples = one epoch (a single process would reach 0.5)
    assert state["epoch"] == pytest.approx(1.0)
    assert (paths.adapter / "adapter_model.safetensors").is_file()


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    paths = _make_run(tmp_path_factory.mktemp("options"), max_steps=4)
    return run_data.load_split(paths, "train")


def _run_option(tmp_path, records, **settings):
    config = load_config({"training": {"max_steps": 4, "batch_size": 2, "logging_steps": 1,
                                       "checkpoint_interval": 100, **settings.pop("training", {})},
                          "model": settings.pop("model", {}), "algorithm": {"learning_rate": 1e-2}})
    agent = VLMWrapper.from_config(config)
    before = {n: p.detach().clone() for n, p in agent.model.named_parameters()}
    summary = train(config, agent, records, tmp_path)
    changed = {n for n, p in agent.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    return agent, summary, changed


def test_lora_settings_reach_the_adapter(tmp_path, records):
    agent, summary, changed = _run_option(tmp_path, records, model={"lora_config": {
        "r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "bias": "none"}})
    lora = agent.model.peft_config["default"]
    assert lora.r == 4 and lora.lora_alpha == 8 and lora.lora_dropout == 0.0
    assert changed and all("lora_" in n for n in changed)
    assert {n.split(".")[-4] for n in changed} == {"q_proj", "v_proj"}
    assert summary["global_step"] == 4


def test_full_finetune_trains_the_language_model_not_the_frozen_vision(tmp_path, records):
    agent, _, changed = _run_option(tmp_path, records, model={"use_lora": False})
    assert not agent.has_adapter
    assert any("language_model" in n for n in changed)
    assert not any("visual" in n for n in changed)


def test_unfrozen_vision_tower_trains_too(tmp_path, records):
    _, _, changed = _run_option(tmp_path, records, model={"use_lora": False, "freeze_vision_encoder": False})
    assert any("visual" in n for n in changed)


def test_gradient_checkpointing_and_accumulation(tmp_path, records):
    agent, summary, changed = _run_option(tmp_path, records, training={
        "gradient_checkpointing": True, "gradient_accumulation_steps": 2, "warmup_steps": 2})
    assert changed and summary["global_step"] == 4
    assert agent.model.base_model.model.model.language_model.gradient_checkpointing


def test_same_seed_same_result_different_seed_different(tmp_path, records):
    _, a, _ = _run_option(tmp_path / "a", records, training={"seed": 3})
    _, b, _ = _run_option(tmp_path / "b", records, training={"seed": 3})
    _, c, _ = _run_option(tmp_path / "c", records, training={"seed": 4})
    assert a["losses"] == b["losses"]
    assert a["losses"] != c["losses"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_mixed_precision_without_a_gpu_is_a_clear_error(tmp_path, records):
    with pytest.raises(ValueError, match="training.mixed_precision='bf16' needs a CUDA GPU"):
        _run_option(tmp_path, records, training={"mixed_precision": "bf16"})


def test_full_fine_tune_resumes_with_the_checkpointed_weights(tmp_path):
    # A full fine-tune's checkpoint holds the whole model under the checkpoint's key names; a resume
    # that failed to load them would silently continue from the initial weights.
    paths = _make_run(tmp_path / "full", max_steps=6, checkpoint_interval=3)
    config = load_config(paths.config)
    config.model.use_lora = False
    records = run_data.load_split(paths, "train")
    straight = VLMWrapper.from_config(config)
    initial = {k: v.clone() for k, v in straight.model.state_dict().items()}
    train(config, straight, records, paths.root)
    expected = straight.model.state_dict()

    shutil.rmtree(paths.checkpoints / "checkpoint-6")
    resumed = VLMWrapper.from_config(config)
    summary = train(config, resumed, records, paths.root, resume=True)
    assert summary["global_step"] == 6
    got = resumed.model.state_dict()
    moved = [k for k in expected if not torch.equal(expected[k], initial[k])]
    assert moved, "training changed no weight"
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_dataloader_workers_auto_is_four_on_a_gpu_and_none_on_the_cpu(monkeypatch):
    from uivlm_helpers.train import dataloader_workers

    config = load_config({})
    assert config.training.dataloader_num_workers == "auto"
    assert dataloader_workers(config) == 0                       # CPU device: training keeps the cores
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert dataloader_workers(load_config({"model": {"device": "cuda"}})) == 4
    assert dataloader_workers(load_config({"model": {"device": "auto"}})) == 4
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert dataloader_workers(load_config({"model": {"device": "cuda"}})) == 1
    assert dataloader_workers(load_config({"model": {"device": "cpu"}})) == 0
    assert dataloader_workers(load_config({"model": {"device": "cuda"},
                                           "training": {"dataloader_num_workers": 0}})) == 0


def test_dataloader_workers_prepare_batches_in_other_processes(tmp_path):
    paths = _make_run(tmp_path / "workers", max_steps=2, checkpoint_interval=2, dataloader_num_workers=2)
    config = load_config(paths.config)
    assert config.training.dataloader_num_workers == 2
    trainer_args = training_arguments(config, paths.checkpoints)
    assert trainer_args.dataloader_num_workers == 2 and trainer_args.dataloader_persistent_workers
    summary = train(config, VLMWrapper.from_config(config), run_data.load_split(paths, "train"), paths.root)
    assert summary["global_step"] == 2 and all(loss == loss for loss in summary["losses"])


def test_partial_checkpointing_keeps_losses_and_leaves_the_last_layers_unchecked(tmp_path, records):
    """uncheckpointed_layers changes what is stored, not what is computed: same losses, same adapter."""
    from uivlm_helpers.checkpointing import language_model_layers

    runs = {}
    for name, training in [("all", {"gradient_checkpointing": True}),
                           ("partial", {"gradient_checkpointing": True, "uncheckpointed_layers": 1}),
                           ("none", {"gradient_checkpointing": False})]:
        agent, summary, changed = _run_option(tmp_path / name, records, training={"seed": 5, **training})
        adapter = {n: p.detach().clone() for n, p in agent.model.named_parameters() if "lora_" in n}
        runs[name] = (agent, summary, adapter, changed)
    layers = language_model_layers(runs["partial"][0])
    total = len(layers)
    assert total >= 2 and all("visual" not in name for name, _ in layers)
    assert [m.gradient_checkpointing for _, m in layers] == [True] * (total - 1) + [False]
    assert runs["partial"][1]["checkpointed_layers"] == {"checkpointed": total - 1, "layers": total}
    assert runs["all"][1]["checkpointed_layers"] == {"checkpointed": total, "layers": total}
    assert runs["none"][1]["checkpointed_layers"] is None
    reference = runs["none"]
    for name in ("all", "partial"):
        _, summary, adapter, changed = runs[name]
        assert changed == reference[3] and changed
        assert summary["losses"] == pytest.approx(reference[1]["losses"], rel=1e-5)
        for key, value in adapter.items():
            torch.testing.assert_close(value, reference[2][key], rtol=1e-4, atol=1e-6)


def test_more_uncheckpointed_layers_than_the_model_has_is_a_clear_error(tmp_path, records):
    with pytest.raises(ValueError, match=r"training.uncheckpointed_layers=99: the language model of .* has \d+ layers"):
        _run_option(tmp_path, records, training={"gradient_checkpointing": True, "uncheckpointed_layers": 99})
    assert not (tmp_path / "cache").exists()   # said before the feature cache is built


def test_auto_uncheckpointed_layers_leaves_out_what_the_budget_fits(tmp_path, records, capsys):
    from uivlm_helpers import memory

    config = load_config({"training": {"batch_size": 2, "gradient_checkpointing": True}})
    plan = memory.plan_uncheckpointed_layers(config, 1e6, measure="total_gib")
    total = plan["layers"]
    budget = (plan["estimates"][total - 1] + plan["estimates"][total]) / 2   # all but one layer fit
    _, summary, changed = _run_option(tmp_path / "budget", records, training={
        "gradient_checkpointing": True, "uncheckpointed_layers": "auto", "memory_budget_gib": budget})
    assert changed
    assert summary["checkpointed_layers"] == {"checkpointed": 1, "layers": total}
    assert f"training.uncheckpointed_layers=auto: {total - 1} of {total} layers fit training.memory_budget_gib" \
        in capsys.readouterr().out

    _, summary, _ = _run_option(tmp_path / "no-budget", records, training={
        "gradient_checkpointing": True, "uncheckpointed_layers": "auto"})
    assert summary["checkpointed_layers"] == {"checkpointed": total, "layers": total}
    assert "no GPU and no training.memory_budget_gib, so every layer stays checkpointed" in capsys.readouterr().out

    _, summary, _ = _run_option(tmp_path / "tight", records, training={
        "gradient_checkpointing": True, "uncheckpointed_layers": "auto", "memory_budget_gib": plan["estimates"][0] / 2})
    assert summary["checkpointed_layers"] == {"checkpointed": total, "layers": total}
    assert "even with every layer checkpointed the estimate" in capsys.readouterr().out
