"""Sharing: model card, dry-run upload plan, and a push that fails safely without leaking the token."""

import json

import pytest

from uivlm_helpers.core.config import load_config
from uivlm_helpers.sharing import share

FAKE_TOKEN = "hf_uivlmFakeTokenForTests0123456789abcd"


@pytest.fixture
def shared_folder(tmp_path):
    folder = tmp_path / "share"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 1234)
    (folder / "README.md").write_text("card")
    return folder


def test_model_card_has_hub_metadata_and_the_evaluation_table():
    config = load_config(None)
    metrics = {"base": {"n": 10, "parse_rate": 0.1, "click_accuracy": 0.0},
               "fine-tuned": {"n": 10, "parse_rate": 1.0, "click_accuracy": 0.8}}
    card = share.model_card(config, metrics, {"global_step": 42}, repo_id="me/agent", overlay_file="g.png")
    header = card.split("---")[1]
    import yaml

    meta = yaml.safe_load(header)
    assert meta["base_model"] == config.model.name and meta["library_name"] == "transformers"
    assert "license" in meta and "uivlm" in meta["tags"]
    assert "| fine-tuned | 10 | 1.000 |" in card and "0.800" in card and "live success" in card
    assert "Steps: 42" in card and "![" in card and "VLMWrapper(model_name='me/agent')" in card
    assert "blind" not in card
    metrics["fine-tuned"].update(blind_baseline=0.6, distractor_click_rate=0.25)
    metrics["base"].update(blind_baseline=0.6, distractor_click_rate=0.0)
    card = share.model_card(config, metrics)
    assert "Instruction-blind baseline on this split: 0.600" in card
    assert "base 0.000, fine-tuned 0.250" in card


def test_dry_run_lists_exactly_what_would_be_uploaded(shared_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    plan = share.push_to_hub(shared_folder, "me/agent", private=True, push=False)
    assert plan["pushed"] is False and plan["private"] is True and plan["repo_id"] == "me/agent"
    assert {f["path"]: f["bytes"] for f in plan["files"]} == {"README.md": 4, "model.safetensors": 1234}
    assert plan["total_bytes"] == 1238
    assert FAKE_TOKEN not in repr(plan)


def test_push_without_a_token_is_a_dry_run(shared_folder, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    plan = share.push_to_hub(shared_folder, "me/agent", push=True)
    assert plan["pushed"] is False and "no Hub token" in plan["reason"]


@pytest.mark.parametrize("repo_id", [None, "agent", "me/", "/agent", "me/agent/extra", "me/a gent"])
def test_malformed_repo_ids_are_refused(shared_folder, repo_id):
    with pytest.raises(ValueError, match="share.repo_id: expected 'owner/name'"):
        share.push_to_hub(shared_folder, repo_id)


def test_failed_push_says_what_to_do_hides_the_token_and_keeps_the_folder(shared_folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the network is "down"
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", "1")
    before = sorted((p.name, p.stat().st_size) for p in shared_folder.iterdir())
    with pytest.raises(RuntimeError) as error:
        share.push_to_hub(shared_folder, "me/agent", push=True)
    assert "push to me/agent failed" in str(error.value) and "run 05_share again" in str(error.value)
    assert FAKE_TOKEN not in str(error.value)
    assert sorted((p.name, p.stat().st_size) for p in shared_folder.iterdir()) == before


def test_nothing_to_share_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to share"):
        share.upload_plan(tmp_path / "missing")


def test_qlora_adapter_merges_into_a_full_precision_copy_of_the_base(tmp_path):
    import json

    import torch
    from PIL import Image

    from uivlm_helpers.models.wrapper import VLMWrapper

    agent = VLMWrapper("uivlm/tiny-qwen2-vl", load_in_4bit=True, use_lora=True, lora_config={"r": 4})
    torch.manual_seed(0)
    with torch.no_grad():  # a non-zero adapter, so that merging it changes the weights
        for name, param in agent.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    adapter_dir = agent.save_pretrained(tmp_path / "adapter")

    merged_dir = share.save_agent(agent, tmp_path / "merged", merge=True)
    assert agent.has_adapter and agent.model.is_quantized  # the trained agent is left as it was
    config = json.loads((merged_dir / "config.json").read_text())
    assert "quantization_config" not in config
    merged = VLMWrapper(str(merged_dir))
    assert not merged.has_adapter and not getattr(merged.model, "is_quantized", False)
    assert all(p.dtype == torch.float32 for p in merged.model.parameters())

    # The merged weights answer like the adapter on the full-precision base (not on the 4-bit one).
    reference = VLMWrapper(str(adapter_dir))
    image = Image.new("RGB", (224, 224), (240, 240, 240))
    with torch.no_grad():
        expected = reference.forward([image], ["Click the Save button"], ["click(10, 20)"])["logits"]
        got = merged.forward([image], ["Click the Save button"], ["click(10, 20)"])["logits"]
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_adapter_only_share_is_small_and_loads_with_its_base(tmp_path):
    from uivlm_helpers.models.wrapper import VLMWrapper

    agent = VLMWrapper("uivlm/tiny-qwen2-vl", use_lora=True, lora_config={"r": 4})
    folder = share.save_agent(agent, tmp_path / "adapter", merge=False)
    assert (folder / "adapter_model.safetensors").is_file() and not (folder / "model.safetensors").exists()
    assert VLMWrapper(str(folder)).has_adapter


def test_sharing_without_a_trained_agent_says_run_03_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="run 03_lora_train"):
        share.load_trained_agent(tmp_path / "adapter")


def test_the_run_configuration_travels_with_the_agent(tmp_path):
    from uivlm_helpers.models.wrapper import VLMWrapper

    config = load_config({"training": {"max_steps": 7}})
    folder = share.save_agent(VLMWrapper("uivlm/tiny-qwen2-vl", use_lora=True, lora_config={"r": 4}),
                              tmp_path / "share", merge=True, config=config)
    assert load_config(folder / share.RUN_CONFIG_FILE) == config
    assert (folder / "model.safetensors").is_file()


def test_model_card_says_what_was_trained_counted_from_the_parameters():
    from uivlm_helpers.models.wrapper import VLMWrapper

    metrics = {"fine-tuned": {"n": 1}}
    for freeze in (False, True):
        config = load_config({"model": {"name": "uivlm/tiny-qwen2-vl", "freeze_vision_encoder": freeze,
                                        "lora_config": {"r": 2}}})
        trained = VLMWrapper.from_config(config).trained_parts()
        card = share.model_card(config, metrics, {"global_step": 1, "trained": trained})
        assert "vision encoder trained" not in card and "vision encoder frozen" not in card
        assert f"language model: LoRA ({trained['parts']['language_model']['lora']:,} parameters)" in card
        if freeze:
            assert "frozen: vision tower, projector, embeddings" in card and "vision tower: LoRA" not in card
        else:
            assert f"vision tower: LoRA ({trained['parts']['vision_tower']['lora']:,} parameters)" in card
            assert f"projector: LoRA ({trained['parts']['projector']['lora']:,} parameters)" in card
    assert "What trained: not recorded" in share.model_card(config, metrics, {"global_step": 1})


def test_push_and_visibility_hold_for_the_run_that_sets_them_and_are_never_saved(shared_folder, tmp_path,
                                                                                 monkeypatch):
    import yaml

    from uivlm_helpers.workbook import runner

    run = str(tmp_path / "run")
    runner.start_notebook("01_setup", {"RUN_DIR": run})
    asked = {"RUN_DIR": run, "REPO_ID": "me/agent", "PUSH_TO_HUB": True, "PRIVATE": False, "MERGE": None}
    config, paths = runner.start_notebook("05_share", asked)
    assert config.share.push is True and config.share.private is False   # this run pushes, publicly
    saved = yaml.safe_load(paths.config.read_text())["share"]
    assert saved["push"] is False and saved["private"] is True and saved["repo_id"] == "me/agent"
    shared = share.shareable_config(config)  # the run configuration that travels with the agent
    assert (shared.share.push, shared.share.private, shared.share.repo_id) == (False, True, "me/agent")

    # The next run, asking nothing: a private dry run, with the repo id kept.
    again, _ = runner.start_notebook("05_share", {"RUN_DIR": run, "PUSH_TO_HUB": None, "PRIVATE": None})
    assert (again.share.push, again.share.private, again.share.repo_id) == (False, True, "me/agent")
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    plan = share.push_to_hub(shared_folder, again.share.repo_id, private=again.share.private, push=again.share.push)
    assert plan["pushed"] is False and plan["reason"].startswith("dry run: set PUSH_TO_HUB")

    # A config.yaml that says push: true (written before this rule, or by hand) does not push by itself.
    stale = yaml.safe_load(paths.config.read_text())
    stale["share"].update(push=True, private=False)
    paths.config.write_text(yaml.safe_dump(stale))
    third, _ = runner.start_notebook("05_share", {"RUN_DIR": run})
    assert (third.share.push, third.share.private) == (False, True)
    assert yaml.safe_load(paths.config.read_text())["share"]["push"] is False


def _mentions(folder, needles):
    """Files under ``folder`` whose bytes contain one of ``needles``."""
    return [f"{path.relative_to(folder)} mentions {needle}" for path in sorted(folder.rglob("*")) if path.is_file()
            for needle in needles if needle.encode() in path.read_bytes()]


def test_shared_files_name_datasets_and_models_never_local_paths(tmp_path):
    import shutil
    from pathlib import Path

    from uivlm_helpers.models.tiny import tiny_checkpoint
    from uivlm_helpers.models.wrapper import AGENT_FILE, VLMWrapper

    data_dir = tmp_path / "my-screens"
    data_dir.mkdir()
    tiny = tiny_checkpoint("uivlm/tiny-qwen2-vl")
    base = shutil.copytree(tiny, tmp_path / "my-base")
    config = load_config({"model": {"name": str(base), "lora_config": {"r": 2}}, "data": {"source": str(data_dir)},
                          "training": {"feature_cache_dir": str(tmp_path / "cache")}})
    needles = [str(tmp_path), str(tiny.parent)] + ([str(Path.home())] if len(Path.home().parts) > 1 else [])
    agent = VLMWrapper.from_config(config)

    merged = share.save_agent(agent, tmp_path / "run" / "share", merge=True, config=config)
    card = share.model_card(config, {"fine-tuned": {"n": 1}}, {"global_step": 1})
    (merged / "README.md").write_text(card)
    assert _mentions(merged, needles) == []
    assert "datasets:\n- my-screens" in card and "- Data: my-screens" in card and "base_model: my-base" in card
    shared = load_config(merged / share.RUN_CONFIG_FILE)
    assert (shared.data.source, shared.model.name, shared.training.feature_cache_dir) == ("my-screens", "my-base", None)
    assert json.loads((merged / AGENT_FILE).read_text())["base_model"] == "my-base"
    assert not VLMWrapper(str(merged)).has_adapter  # still loads: the merged folder is the model

    # The adapter alone, on a base named by its Hub-style name: peft's files named the base's cache folder.
    named = VLMWrapper("uivlm/tiny-qwen2-vl", use_lora=True, lora_config={"r": 2})
    adapter_only = share.save_agent(named, tmp_path / "adapter-share", merge=False, config=config)
    assert _mentions(adapter_only, needles) == []
    assert json.loads((adapter_only / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "uivlm/tiny-qwen2-vl"
    assert VLMWrapper(str(adapter_only)).has_adapter
    # ... but on a local base, nobody else could load it: refused before anything is written.
    with pytest.raises(ValueError, match="'my-base' is a folder on this machine.*MERGE = True"):
        share.save_agent(VLMWrapper(str(base), use_lora=True, lora_config={"r": 2}), tmp_path / "refused",
                         merge=False)
    assert not (tmp_path / "refused").exists()
