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

from uivlm_helpers.core.config import load_config
from uivlm_helpers.data import run_data
from uivlm_helpers.training.train import (COMPLETE_MARKER, NonFiniteTrainingError, last_complete_checkpoint, seal_checkpoint,
                                 train, train_run, training_arguments)
from uivlm_helpers.core.paths import REPO_ROOT, RunPaths
from uivlm_helpers.models.wrapper import VLMWrapper

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
    subprocess.run([PYTHON, "-m", "uivlm_helpers.training", "--run-dir", str(straight.root)], check=True,
                   capture_output=True)

    interrupted = RunPaths(tmp_path / "interrupted")
    shutil.copytree(straight.root / "data", interrupted.root / "data")
    shutil.copy(straight.config, interrupted.config)
    process = subprocess.Popen([PYTHON, "-m", "uivlm_helpers.training", "--run-dir", str(interrupted.root)],
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
    # ...and an earlier kill while writing the same checkpoint left one moved aside already.
    (interrupted.checkpoints / "incomplete-checkpoint-25").mkdir()
    (interrupted.checkpoints / "incomplete-checkpoint-25" / "optimizer.pt").write_bytes(b"older")

    resumed_run = subprocess.run([PYTHON, "-m", "uivlm_helpers.training", "--run-dir", str(interrupted.root),
                                  "--resume"], check=True, capture_output=True, text=True)
    assert "resuming from" in resumed_run.stdout, resumed_run.stdout
    assert (interrupted.checkpoints / "incomplete-checkpoint-25" / "optimizer.pt").read_bytes() == b"older"
    assert (interrupted.checkpoints / "incomplete-checkpoint-25-2" / "adapter_model.safetensors").is_file()
    expected, resumed = _adapter(straight), _adapter(interrupted)
    assert expected.keys() == resumed.keys()
    for name in expected:
        torch.testing.assert_close(resumed[name], expected[name], rtol=1e-5, atol=1e-6)
    summary = json.loads((interrupted.logs / "train_summary.json").read_text())
    assert summary["global_step"] == 30
    # train_loss is the whole run's mean, not the mean of the steps after the resume
    straight_summary = json.loads((straight.logs / "train_summary.json").read_text())
    assert summary["train_loss"] == pytest.approx(straight_summary["train_loss"], rel=1e-5)
    logged_steps = [json.loads(line)["step"] for line in (interrupted.logs / "train.log").read_text().splitlines()]
    assert logged_steps == sorted(set(logged_steps)) and logged_steps[-1] == 30


def _checkpoint(folder: Path, step: int, sealed: bool = True) -> Path:
    """A checkpoint folder holding a few files (a nested one too), sealed like the Trainer's are."""
    path = folder / f"checkpoint-{step}"
    (path / "nested").mkdir(parents=True)
    (path / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 40)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (path / "nested" / "rng_state.pth").write_bytes(b"rng" * 10)
    if sealed:
        seal_checkpoint(path, step)
    return path


def test_last_complete_checkpoint_skips_unsealed_folders(tmp_path, capsys):
    for step, sealed in [(4, True), (8, True), (12, False)]:
        _checkpoint(tmp_path, step, sealed)
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-8"
    assert (tmp_path / "incomplete-checkpoint-12" / "adapter_model.safetensors").is_file()
    assert "checkpoint-12 was never sealed complete" in capsys.readouterr().out
    assert last_complete_checkpoint(tmp_path / "nothing-here") is None
    seal = json.loads((tmp_path / "checkpoint-8" / COMPLETE_MARKER).read_text())
    assert seal["files"]["nested/rng_state.pth"]["size"] == 30
    assert len(seal["files"]["adapter_model.safetensors"]["sha256"]) == 64


def test_a_second_kill_while_saving_the_same_checkpoint_does_not_block_resume(tmp_path):
    _checkpoint(tmp_path, 5)
    for attempt in range(3):   # the run is killed three times while writing checkpoint-10
        _checkpoint(tmp_path, 10, sealed=False)
        (tmp_path / "checkpoint-10" / "attempt").write_text(str(attempt))
        assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-5"
    assert [(tmp_path / name / "attempt").read_text() for name in
            ("incomplete-checkpoint-10", "incomplete-checkpoint-10-2", "incomplete-checkpoint-10-3")] == ["0", "1", "2"]


@pytest.mark.parametrize("damage, reason", [
    (lambda p: (p / "adapter_model.safetensors").write_bytes(b"cut short"),
     "adapter_model.safetensors is 9 bytes; it was 10240 bytes when sealed"),
    (lambda p: (p / "nested" / "rng_state.pth").write_bytes(b"RNG" * 10),
     "nested/rng_state.pth does not match the SHA-256 recorded when it was sealed"),
    (lambda p: (p / "trainer_state.json").unlink(), "trainer_state.json is missing"),
    (lambda p: (p / COMPLETE_MARKER).write_text('{"global_step": 1'), f"its seal {COMPLETE_MARKER} cannot be read"),
])
def test_a_damaged_sealed_checkpoint_is_moved_aside_and_resume_falls_back(tmp_path, capsys, damage, reason):
    _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 8)
    damage(_checkpoint(tmp_path, 12))
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-8"
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "skipped checkpoint-12" in out[0] and reason in out[0], out
    assert "damaged-checkpoint-12" in out[0]
    assert (tmp_path / "damaged-checkpoint-12" / "adapter_model.safetensors").is_file()   # kept, not deleted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-8", "damaged-checkpoint-12"]


def test_a_checkpoint_sealed_before_seals_listed_files_is_still_resumed(tmp_path):
    _checkpoint(tmp_path, 4, sealed=False)
    (tmp_path / "checkpoint-4" / COMPLETE_MARKER).write_text(json.dumps({"global_step": 4}))
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"


def test_two_processes_train_together_with_accelerate(tmp_path):
    paths = _make_run(tmp_path / "ddp", max_steps=4, checkpoint_interval=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([str(Path(PYTHON).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
                    "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                    "-m", "uivlm_helpers.training", "--run-dir", str(paths.root)],
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


def test_full_fine_tune_resumes_with_the_checkpointed_weights(tmp_path, capsys):
    # A full fine-tune's checkpoint holds the whole model under the checkpoint's key names; a resume
    # that failed to load them would silently continue from the initial weights.
    paths = _make_run(tmp_path / "full", max_steps=6, checkpoint_interval=3)
    config = load_config(paths.config)
    config.model.use_lora = False
    records = run_data.load_split(paths, "train")
    straight = VLMWrapper.from_config(config)
    initial = {k: v.clone() for k, v in straight.model.state_dict().items()}
    straight_summary = train(config, straight, records, paths.root)
    expected = straight.model.state_dict()

    # The newest checkpoint was sealed complete and then cut short (a full disk, a bad copy): resume
    # falls back to the one before it instead of failing in the safetensors loader.
    weights = paths.checkpoints / "checkpoint-6" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    resumed = VLMWrapper.from_config(config)
    summary = train(config, resumed, records, paths.root, resume=True)
    out = capsys.readouterr().out
    assert "skipped checkpoint-6: model.safetensors is 1000 bytes" in out
    assert f"resuming from {paths.checkpoints / 'checkpoint-3'}" in out
    assert (paths.checkpoints / "damaged-checkpoint-6" / "model.safetensors").stat().st_size == 1000
    assert summary["global_step"] == 6
    assert summary["train_loss"] == pytest.approx(straight_summary["train_loss"], rel=1e-5)
    got = resumed.model.state_dict()
    moved = [k for k in expected if not torch.equal(expected[k], initial[k])]
    assert moved, "training changed no weight"
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_dataloader_workers_auto_is_four_on_a_gpu_and_none_on_the_cpu(monkeypatch):
    from uivlm_helpers.training.train import dataloader_workers

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
    from uivlm_helpers.training.checkpointing import language_model_layers

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
    from uivlm_helpers.training import memory

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


def test_a_diverging_run_stops_with_a_clear_error_and_saves_no_agent(tmp_path):
    # 1e30 is a finite learning rate, so the configuration accepts it; its first update sends the
    # next loss to inf or nan.
    paths = _make_run(tmp_path / "diverging", max_steps=6, checkpoint_interval=1, warmup_steps=0)
    config = load_config(paths.config)
    config.set("algorithm.learning_rate", 1e30)
    config.save(paths.config)
    with pytest.raises(NonFiniteTrainingError, match=r"training stopped at step 2: the loss is (nan|inf)\b.*"
                                                     r"lower algorithm\.learning_rate \(now 1e\+30\)"):
        train_run(paths.root)
    assert not (paths.adapter / "adapter_model.safetensors").exists()
    sealed = [p for p in paths.checkpoints.iterdir() if (p / COMPLETE_MARKER).exists()]
    assert [p.name for p in sealed] == ["checkpoint-1"]
    assert all(torch.isfinite(t).all() for t in load_file(sealed[0] / "adapter_model.safetensors").values())


def test_a_non_finite_gradient_stops_before_the_update(tmp_path, records):
    config = load_config({"training": {"max_steps": 3, "batch_size": 2, "checkpoint_interval": 100,
                                       "warmup_steps": 0}})
    agent = VLMWrapper.from_config(config)
    before = {n: p.detach().clone() for n, p in agent.model.named_parameters()}
    weight = next(p for p in agent.model.parameters() if p.requires_grad)
    weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))   # the loss itself stays finite
    with pytest.raises(NonFiniteTrainingError, match=r"training stopped at step 1: the gradient norm is (nan|inf)\b"):
        train(config, agent, records, tmp_path)
    for name, value in agent.model.named_parameters():
        assert torch.equal(value.detach(), before[name]), f"{name} was updated"


def test_non_finite_weights_are_never_sealed(tmp_path, records):
    from torch.optim.optimizer import register_optimizer_step_post_hook

    def poison(optimizer, args, kwargs):   # a last update that leaves NaN behind, as lr=inf does
        optimizer.param_groups[0]["params"][0].data.fill_(float("nan"))

    config = load_config({"training": {"max_steps": 1, "batch_size": 2, "checkpoint_interval": 100}})
    agent = VLMWrapper.from_config(config)
    handle = register_optimizer_step_post_hook(poison)
    try:
        with pytest.raises(NonFiniteTrainingError, match=r"checkpoint-1 holds non-finite weights \(.*lora_"):
            train(config, agent, records, tmp_path)
    finally:
        handle.remove()
    assert (tmp_path / "checkpoints" / "checkpoint-1").is_dir()
    assert not (tmp_path / "checkpoints" / "checkpoint-1" / COMPLETE_MARKER).exists()
    assert last_complete_checkpoint(tmp_path / "checkpoints") is None


def test_an_empty_split_is_a_clear_error_before_the_model_loads(tmp_path, monkeypatch):
    paths = _make_run(tmp_path / "empty", max_steps=2)
    for split in ("train", "test"):
        run_data.split_file(paths, split).write_text("")
    monkeypatch.setattr(VLMWrapper, "from_config", classmethod(lambda cls, config: pytest.fail("the model loaded")))
    with pytest.raises(ValueError, match=r"train\.jsonl: the train split has no records"):
        train_run(paths.root)
    with pytest.raises(ValueError, match=r"test\.jsonl: the test split has no records"):
        run_data.load_split(paths, "test")
    with pytest.raises(ValueError, match="train_records is empty"):
        train(load_config(paths.config), None, [], paths.root)
