"""VLMWrapper on the embedded tiny Qwen2-VL: loading, label masking, LoRA, freezing, prediction,
save/load and merge — all on real objects (real processor, real model, real files)."""

import json

import pytest
import torch

from uivlm_helpers.core.actions import ParseFailure
from uivlm_helpers.families import IGNORE_INDEX, family_name_for
from uivlm_helpers.models.wrapper import AGENT_FILE, VLMWrapper


def test_tiny_checkpoint_is_a_real_qwen2_vl(tiny_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    assert (tiny_path / "model.safetensors").is_file()
    processor = AutoProcessor.from_pretrained(tiny_path)
    model = AutoModelForImageTextToText.from_pretrained(tiny_path)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert json.loads((tiny_path / "config.json").read_text())["model_type"] == "qwen2_vl"
    tokens = processor.tokenizer.convert_ids_to_tokens(processor.tokenizer("<|image_pad|><|im_end|>")["input_ids"])
    assert tokens == ["<|image_pad|>", "<|im_end|>"]


def test_tiny_checkpoint_is_built_once(tiny_path):
    from uivlm_helpers.models.tiny import tiny_checkpoint

    before = (tiny_path / "model.safetensors").stat().st_mtime_ns
    assert tiny_checkpoint("uivlm/tiny-qwen2-vl") == tiny_path
    assert (tiny_path / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("name, family", [
    ("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl"), ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl"),
    ("llava-hf/llava-1.5-7b-hf", "llava"), ("HuggingFaceM4/idefics2-8b", "idefics2"),
    ("microsoft/Florence-2-large", "florence2"), ("google/paligemma-3b-pt-224", "paligemma"),
    ("uivlm/tiny-qwen2-vl", "qwen2_vl"),
])
def test_model_names_resolve_to_families_offline(name, family):
    assert family_name_for(name) == family


def test_unknown_model_names_say_what_is_supported(tmp_path):
    with pytest.raises(ValueError, match="supported families"):
        family_name_for("someone/mystery-model")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="model_type 'bert'"):
        family_name_for(str(tmp_path))


def test_only_answer_tokens_carry_labels(screens):
    agent = VLMWrapper()
    record = screens[0]
    target = agent.render_target(record["action"], tuple(record["image_size"]))
    batch = agent.encode([record["image"], screens[1]["image"]], [record["instruction"], "Click it"],
                         [target, "wait(1)"])
    tokenizer = agent.processor.tokenizer
    for row, answer in enumerate([target, "wait(1)"]):
        labelled = batch["labels"][row] != IGNORE_INDEX
        assert tokenizer.decode(batch["input_ids"][row][labelled]) == answer + "<|im_end|>"
        # nothing of the prompt or the image is labelled, and padding is not either
        image_token = agent.model.config.image_token_id
        assert not (labelled & (batch["input_ids"][row] == image_token)).any()
        assert not (labelled & (batch["attention_mask"][row] == 0)).any()
    assert "mm_token_type_ids" in batch


def test_forward_returns_loss_from_pixel_targets(screens):
    agent = VLMWrapper()
    out = agent.forward([s["image"] for s in screens[:2]], [s["instruction"] for s in screens[:2]],
                        [s["action"] for s in screens[:2]])
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"]) and out["loss"] > 0


def test_lora_step_changes_only_adapter_weights(screens):
    agent = VLMWrapper(use_lora=True, lora_config={"r": 4})
    agent.freeze_vision_encoder()
    before = {n: p.detach().clone() for n, p in agent.model.named_parameters()}
    trainable = {n for n, p in agent.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    optimizer = torch.optim.AdamW([p for p in agent.model.parameters() if p.requires_grad], lr=1e-2)
    loss = agent.forward([screens[0]["image"]], [screens[0]["instruction"]], [screens[0]["action"]])["loss"]
    loss.backward()
    optimizer.step()
    changed = {n for n, p in agent.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


def test_freeze_vision_encoder_leaves_no_vision_parameter_trainable():
    agent = VLMWrapper()
    assert agent.freeze_vision_encoder() > 0
    vision = [n for n, p in agent.model.named_parameters() if "visual" in n]
    assert vision and not any(p.requires_grad for n, p in agent.model.named_parameters() if "visual" in n)
    counts = agent.get_trainable_parameters()
    assert 0 < counts["trainable"] < counts["total"]


def test_predict_action_batched_returns_pixel_actions_or_failures(screens):
    agent = VLMWrapper(max_new_tokens=8)
    results = agent.predict_action([s["image"] for s in screens[:3]], [s["instruction"] for s in screens[:3]])
    assert len(results) == 3
    for result in results:
        assert isinstance(result, (dict, ParseFailure))
    single = agent.predict_action(screens[0]["image"], screens[0]["instruction"])
    assert single == results[0]


def _trained_agent(screens, steps=3):
    agent = VLMWrapper(use_lora=True, lora_config={"r": 4}, max_new_tokens=10)
    optimizer = torch.optim.AdamW([p for p in agent.model.parameters() if p.requires_grad], lr=5e-2)
    for _ in range(steps):
        loss = agent.forward([s["image"] for s in screens[:4]], [s["instruction"] for s in screens[:4]],
                             [s["action"] for s in screens[:4]])["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return agent


def test_save_load_and_merge_reproduce_predictions(screens, tmp_path):
    agent = _trained_agent(screens)
    images, prompts = [s["image"] for s in screens[:4]], [s["instruction"] for s in screens[:4]]
    base = VLMWrapper(max_new_tokens=10).generate_text(images, prompts)
    expected = agent.generate_text(images, prompts)
    assert expected != base, "training should have changed the answers"

    saved = agent.save_pretrained(tmp_path / "adapter")
    assert (saved / "adapter_model.safetensors").is_file() and (saved / AGENT_FILE).is_file()
    assert not list(saved.glob("*.bin"))
    reloaded = VLMWrapper.load_pretrained(saved)
    assert reloaded.has_adapter and reloaded.action_format == agent.action_format
    assert reloaded.generate_text(images, prompts) == expected

    reloaded.merge_lora()
    assert not reloaded.has_adapter
    assert reloaded.generate_text(images, prompts) == expected
    merged = VLMWrapper(str(reloaded.save_pretrained(tmp_path / "merged")))
    assert merged.generate_text(images, prompts) == expected


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="torch_dtype"):
        VLMWrapper(torch_dtype="float8")
    with pytest.raises(ValueError, match="lora_config: unknown keys"):
        VLMWrapper(use_lora=True, lora_config={"rank": 4})


def test_trainable_tokens_train_only_those_embeddings(screens):
    agent = VLMWrapper("uivlm/tiny-qwen2-vl", use_lora=True, lora_config={"r": 4, "trainable_tokens": ["orange"]})
    ids = agent.token_ids_of(["orange"])
    assert ids and agent.processor.tokenizer.decode(ids).strip() == "orange"
    embeddings = agent.model.get_input_embeddings()
    before = embeddings(torch.arange(len(agent.processor.tokenizer))).detach().clone()
    optimizer = torch.optim.SGD([p for p in agent.model.parameters() if p.requires_grad], lr=1.0)
    agent.forward([screens[0]["image"]], ["Click the orange button"], ["click(10, 20)"])["loss"].backward()
    optimizer.step()
    after = embeddings(torch.arange(len(agent.processor.tokenizer))).detach()
    changed = (after - before).abs().sum(dim=1).nonzero().flatten().tolist()
    assert changed == ids


def test_trained_parts_counts_what_trains_from_the_parameters():
    def count(model, keep):
        return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and keep(n))

    full = VLMWrapper("uivlm/tiny-qwen2-vl")
    report = full.trained_parts()
    assert report["trainable"] == report["total"] == full.get_trainable_parameters()["total"]
    parts = report["parts"]
    assert parts["projector"]["full"] == count(full.model, lambda n: "visual.merger." in n)
    assert parts["vision_tower"]["full"] == count(full.model, lambda n: "visual." in n and "merger" not in n)
    assert parts["embeddings"]["full"] == full.model.get_input_embeddings().weight.numel()
    full.freeze_vision_encoder()
    report = full.trained_parts()
    assert report["parts"]["vision_tower"]["trainable"] == report["parts"]["projector"]["trainable"] == 0
    assert report["summary"].endswith("frozen: vision tower, projector")

    lora = VLMWrapper("uivlm/tiny-qwen2-vl", use_lora=True, lora_config={"r": 4, "trainable_tokens": ["orange"]})
    report = lora.trained_parts()
    assert report["trainable"] == lora.get_trainable_parameters()["trainable"]
    assert report["parts"]["language_model"]["lora"] == count(lora.model, lambda n: "lora_" in n) > 0
    assert report["parts"]["embeddings"]["tokens"] == count(lora.model, lambda n: "trainable_tokens" in n) > 0
    assert report["summary"] == ("trained: language model: LoRA ({:,} parameters); embeddings: trainable tokens "
                                 "({:,} parameters); frozen: vision tower, projector").format(
        report["parts"]["language_model"]["lora"], report["parts"]["embeddings"]["tokens"])


def test_a_saved_agent_answers_in_the_coordinate_space_it_names(screens, tmp_path):
    agent = VLMWrapper("uivlm/tiny-qwen2-vl", use_lora=True, lora_config={"r": 4}, max_new_tokens=10)
    saved = agent.save_pretrained(tmp_path / "adapter")
    settings = json.loads((saved / AGENT_FILE).read_text())
    assert settings["coordinate_space"] == "norm1000"   # the family's
    settings["coordinate_space"] = "pixels"
    (saved / AGENT_FILE).write_text(json.dumps(settings))

    reloaded = VLMWrapper(str(saved))
    size = (224, 224)
    assert reloaded.space_for(size).name == "pixels"
    assert reloaded.render_target({"type": "click", "x": 100, "y": 50}, size) == "click(100, 50)"
    assert agent.render_target({"type": "click", "x": 100, "y": 50}, size) == "click(446, 223)"
    assert reloaded.decode_prediction("click(100, 50)", size).action == {"type": "click", "x": 100, "y": 50}
    assert "in screenshot pixels" in reloaded.prompt_text("Click OK")
    # Predictions decode in the saved space, constrained decoding included, and it is saved again.
    image, instruction = screens[0]["image"], screens[0]["instruction"]
    for prediction in reloaded.predict([image], [instruction], constrained=True):
        assert prediction.action == reloaded.decode_prediction(prediction.raw_text, tuple(screens[0]["image_size"])).action
    resaved = reloaded.save_pretrained(tmp_path / "again")
    assert json.loads((resaved / AGENT_FILE).read_text())["coordinate_space"] == "pixels"

    with pytest.raises(ValueError) as error:
        VLMWrapper(str(saved), coordinate_space="norm1000")
    assert str(saved / AGENT_FILE) in str(error.value)
    assert "'pixels'" in str(error.value) and "'norm1000'" in str(error.value)
    assert VLMWrapper(str(saved), coordinate_space="pixels").coordinate_space_name == "pixels"
    settings["coordinate_space"] = "norm42"
    (saved / AGENT_FILE).write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=r"uivlm_agent.json: coordinate_space is 'norm42', not a known"):
        VLMWrapper(str(saved))


def test_an_agent_with_non_finite_weights_is_never_saved(tmp_path):
    """A diverged run's weights (nan) must not replace a saved agent, whatever cell saves them."""
    agent = VLMWrapper(model_name="uivlm/tiny-qwen2-vl", use_lora=True, lora_config={"r": 4})
    name, weight = next((n, p) for n, p in agent.model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        weight.view(-1)[0] = float("nan")
    with pytest.raises(ValueError, match=r"hold nan or inf .*not saved.*learning_rate"):
        agent.save_pretrained(tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()
