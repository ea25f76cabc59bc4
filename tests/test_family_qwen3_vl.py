"""Qwen3-VL on its tiny offline checkpoint: what the family adds to the checks every family gets in
tests/test_families.py - DeepStack and interleaved M-RoPE in the built model, the cached-feature fast path
with DeepStack, the 0-1000 grid and the 32-pixel resize factor, the chat template without a default system
message, 4-bit on CPU, name resolution that leaves the MoE models out, and the published specs."""

import pytest
import torch

from uivlm_helpers.families import get_family
from uivlm_helpers.families.registry import family_name_for
from uivlm_helpers.models import model_configs
from uivlm_helpers.models.wrapper import VLMWrapper
from uivlm_helpers.training import features
from uivlm_helpers.training.collate import UICollator
from uivlm_helpers.training.features import FEATURES_KEY, CachedFeaturesCollator, build_cache, install_feature_hook

NAME = "uivlm/tiny-qwen3-vl"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _lora_agent(**kwargs):
    agent = VLMWrapper(NAME, use_lora=True, lora_config={"r": 4}, **kwargs)
    agent.freeze_vision_encoder()
    return agent


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.item(), grads


def test_tiny_model_has_deepstack_and_interleaved_mrope():
    agent = VLMWrapper(NAME)
    config = agent.model.config
    rope = config.text_config.rope_parameters
    assert rope["mrope_interleaved"] and sum(rope["mrope_section"]) == config.text_config.head_dim // 2
    levels = config.vision_config.deepstack_visual_indexes
    # Level k is added after language-model layer k: every level must reach a later layer.
    assert 0 < len(levels) < config.text_config.num_hidden_layers
    mergers = agent.model.model.visual.deepstack_merger_list
    assert len(mergers) == len(levels)
    assert all(agent.adapter.part_of(n) == "projector" for n, _ in mergers.named_parameters(prefix="visual.deepstack_merger_list"))


def test_prompt_has_no_default_system_message_and_the_answer_is_labelled_exactly():
    agent = VLMWrapper(NAME)
    prompt = agent.prompt_text("Click the Save button.")
    assert prompt.startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>")
    assert prompt.endswith("<|im_start|>assistant\n") and "system" not in prompt
    assert agent.adapter.answer_token_ids(agent.processor.tokenizer, prompt, "click(500, 656)") is not None


def test_coordinates_are_a_relative_grid_and_resized_uses_factor_32(screens):
    agent = VLMWrapper(NAME)
    assert agent.space_for((224, 160)).name == "norm1000" and agent.space_for((224, 160)).grid == (1000, 1000)
    from PIL import Image

    image = Image.new("RGB", (300, 170))
    grid = agent.processor.image_processor(image, return_tensors="pt")["image_grid_thw"][0]
    patch = agent.processor.image_processor.patch_size
    resized = agent.adapter.space_for(image.size, agent.pixel_budget, name="resized")
    assert patch == 16 and resized.grid == (int(grid[2]) * patch, int(grid[1]) * patch)


def test_cached_features_carry_deepstack_and_equal_the_plain_forward(screens, tmp_path):
    agent = _lora_agent()
    records = screens[:3]
    cache = build_cache(agent, records, tmp_path / "cache", progress=False)
    install_feature_hook(agent.model)
    plain_batch = UICollator(agent)(records)
    cached_batch = CachedFeaturesCollator(agent, cache)(records)
    hidden = agent.model.get_input_embeddings().weight.shape[-1]
    levels = len(agent.model.config.vision_config.deepstack_visual_indexes)
    image_tokens = int((plain_batch["input_ids"] == features.image_token_id(agent.model)).sum())
    # One row per image token: the merger's output, then each DeepStack level, side by side.
    assert tuple(cached_batch[FEATURES_KEY].shape) == (image_tokens, hidden * (1 + levels))
    assert cached_batch["position_ids"].shape == (3, *plain_batch["input_ids"].shape)
    plain_loss, plain_grads = _loss_and_grads(agent.model, plain_batch)
    cached_loss, cached_grads = _loss_and_grads(agent.model, cached_batch)
    assert cached_loss == pytest.approx(plain_loss, rel=1e-6)
    assert plain_grads.keys() == cached_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(cached_grads[name], plain_grads[name], rtol=1e-5, atol=1e-7)
    # DeepStack matters: the same batch without its levels (zeroed) gives another loss, so the equality above
    # is not the merger's output alone.
    dropped = dict(cached_batch)
    dropped[FEATURES_KEY] = cached_batch[FEATURES_KEY].clone()
    dropped[FEATURES_KEY][:, hidden:] = 0
    assert _loss_and_grads(agent.model, dropped)[0] != pytest.approx(plain_loss, rel=1e-4)


def test_fast_path_self_check_passes_and_the_cache_is_used(screens, tmp_path):
    from uivlm_helpers.core.config import load_config

    agent = _lora_agent()
    config = load_config({"model": {"name": NAME}, "training": {"cache_vision_features": "true"}})
    collator, info = features.prepare_fast_path(config, agent, screens[:4], tmp_path, UICollator(agent))
    assert isinstance(collator, CachedFeaturesCollator) and info["self_check"]["ok"], info
    # Batches are laid out from the cached image grids without decoding a screenshot, token for token the
    # processor's own (the self-check compared them).
    assert info["text_only_batches"]


def test_qlora_4bit_forward_backward_on_cpu(screens):
    import bitsandbytes as bnb

    agent = VLMWrapper(NAME, load_in_4bit=True, use_lora=True, lora_config={"r": 4})
    quantized = [n for n, m in agent.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all("language_model" in n for n in quantized)
    loss = agent.forward([screens[0]["image"]], [screens[0]["instruction"]], [screens[0]["action"]])["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for n, p in agent.model.named_parameters() if p.requires_grad and "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name, family", [
    ("Qwen/Qwen3-VL-8B-Instruct", "qwen3_vl"), ("someone/my-qwen3-vl-2b-ui-agent", "qwen3_vl"),
    ("Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl"), ("Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl"),
])
def test_names_resolve_to_their_family(name, family):
    assert family_name_for(name) == family


def test_moe_models_are_not_taken_for_the_dense_family(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the model family"):
        family_name_for("Qwen/Qwen3-VL-30B-A3B-Instruct")
    (tmp_path / "config.json").write_text('{"model_type": "qwen3_vl_moe"}')
    with pytest.raises(ValueError, match="model_type 'qwen3_vl_moe'"):
        family_name_for(str(tmp_path))


def test_published_specs_count_the_real_class_and_name_their_sources():
    plugin = get_family("qwen3_vl")
    for name in plugin.published:
        spec = model_configs.published_config(name)
        assert spec["sources"] and spec["image_tokens"]["factor"] == 32
        assert model_configs.count_parameters_meta(name) == spec["params"], name
    # 2B: tied head, 2.13 B parameters (the Hub checkpoint's 4.26 GB of bf16).
    assert round(model_configs.published_config("Qwen/Qwen3-VL-2B-Instruct")["params"]["total"] / 1e9, 2) == 2.13
    # a 1288x728 screenshot: smart_resize to multiples of 32 -> 1280x736 = 40x23 tokens
    count = model_configs.image_token_count(model_configs.published_config("Qwen/Qwen3-VL-8B-Instruct"), 1288, 728)
    assert count == {"tokens": 920, "patches": 3680, "resized": (1280, 736)}


def test_tiny_spec_reads_the_checkpoint():
    spec = model_configs.architecture_spec(NAME)
    assert spec["family"] == "qwen3_vl" and spec["vision"]["deepstack_visual_indexes"] == [0]
    assert spec["image_tokens"] == {"rule": "qwen_smart_resize", "factor": 32, "min_pixels": 64 * 64,
                                    "max_pixels": 224 * 224}
