"""The episode's history in the prompt: earlier actions written as answers are (per action format and
coordinate space), earlier screenshots as extra images for multi-image families (real processors' tokens,
answer-only labels), single-image families refused, settings kept by saved agents and run configurations."""

from functools import lru_cache

import pytest
import torch
from PIL import Image

from uivlm_helpers.core.config import load_config
from uivlm_helpers.core.prompts import history_text, user_text
from uivlm_helpers.families import FAMILIES, IGNORE_INDEX
from uivlm_helpers.models.tiny import TINY_MODELS
from uivlm_helpers.models.wrapper import AUTO_HISTORY_WINDOW, VLMWrapper
from uivlm_helpers.training.collate import UICollator
from uivlm_helpers.training.features import cache_decision

MULTI_IMAGE = sorted(n for n, f in TINY_MODELS.items() if FAMILIES[f].multi_image)
SINGLE_IMAGE = sorted(n for n, f in TINY_MODELS.items() if not FAMILIES[f].multi_image)
HISTORY = [{"type": "click", "x": 30, "y": 40}, {"type": "type", "text": "hello"},
           {"type": "scroll", "direction": "down", "amount": 100}, {"type": "click", "x": 200, "y": 150},
           {"type": "click", "x": 10, "y": 220}]
SIZE = (224, 224)


@lru_cache(maxsize=None)
def _agent(name, action_format="text", window="auto", images=0):
    return VLMWrapper(name, action_format=action_format, history_window=window, history_images=images)


def test_history_block_says_what_happened_and_where_the_images_are():
    assert history_text(None) == ""
    assert history_text([]) == "Previous actions, oldest first:\nnone"
    assert history_text(["click(1, 2)", 'type("a")']) == "Previous actions, oldest first:\n1. click(1, 2)\n2. type(\"a\")"
    assert "The first image is the previous screen" in history_text(["click(1, 2)"], 1)
    assert "The first 2 images are earlier screens" in history_text(["click(1, 2)"], 2)
    text = user_text("{instruction}", "Click OK", "text", "norm1000", history=["click(1, 2)"])
    assert text.startswith("Previous actions") and text.endswith("Click OK")
    assert user_text("{instruction}", "Click OK", "text", "norm1000") == "Click OK"


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
@pytest.mark.parametrize("action_format", ["text", "json", "coordinates"])
def test_history_lines_read_exactly_like_answers(name, action_format):
    """Each history line is the answer the agent would be trained on for that action, in its format and
    coordinate space, and decodes back onto the action's point."""
    agent = _agent(name, action_format)
    lines = agent.history_answers(HISTORY, SIZE)
    assert len(lines) == AUTO_HISTORY_WINDOW
    assert lines == [agent.render_target(a, SIZE) for a in HISTORY[-AUTO_HISTORY_WINDOW:]]
    prompt = agent.prompt_text("Click OK", history=lines)
    for line in lines:
        assert line in prompt
    for action, line in zip(HISTORY[-AUTO_HISTORY_WINDOW:], lines):
        decoded = agent.decode_prediction(line, SIZE).action
        assert decoded is not None and decoded["type"] == action["type"]
        if action["type"] == "click":
            assert abs(decoded["x"] - action["x"]) <= 2 and abs(decoded["y"] - action["y"]) <= 2


def test_window_settings_auto_fixed_and_off():
    auto, fixed, off = (_agent("uivlm/tiny-qwen2-vl", window=w) for w in ("auto", 2, 0))
    assert auto.history_answers(None, SIZE) is None          # a single step: no block
    assert auto.history_answers([], SIZE) == []              # an episode's first step: "none"
    assert len(auto.history_answers(HISTORY, SIZE)) == AUTO_HISTORY_WINDOW
    assert fixed.history_answers(HISTORY, SIZE) == [fixed.render_target(a, SIZE) for a in HISTORY[-2:]]
    assert off.history_answers(HISTORY, SIZE) is None


def _screens():
    return [Image.new("RGB", SIZE, colour) for colour in ("red", "green", "blue")]


@pytest.mark.parametrize("name", MULTI_IMAGE)
def test_multi_image_batches_hold_every_screenshot_and_label_only_the_answer(name):
    agent = _agent(name, images=2)
    earlier_a, earlier_b, current = _screens()
    targets = [agent.render_target({"type": "click", "x": 50, "y": 60}, SIZE),
               agent.render_target({"type": "click", "x": 100, "y": 20}, SIZE)]
    with_history = agent.encode([current, current], ["Click OK", "Click OK"], targets,
                                histories=[HISTORY[:2], None], history_images=[[earlier_a, earlier_b], None])
    alone = agent.encode([current], ["Click OK"], targets[1:])
    tokenizer = agent.processor.tokenizer
    for row, target in enumerate(targets):
        labelled = with_history["labels"][row][with_history["labels"][row] != IGNORE_INDEX]
        assert tokenizer.decode(labelled).startswith(target)
    # the single-step row (no history) encodes exactly as it does alone
    length = int(alone["attention_mask"][0].sum())
    row = with_history["input_ids"][1][with_history["attention_mask"][1].bool()]
    assert row.tolist() == alone["input_ids"][0][:length].tolist()
    image_token = agent.model.config.image_token_id
    first = int((with_history["input_ids"][0] == image_token).sum())
    single = int((alone["input_ids"][0] == image_token).sum())
    assert first > single  # two earlier screenshots add image tokens
    if "image_grid_thw" in with_history:  # Qwen families: three images, the earlier two at a smaller budget
        grids = with_history["image_grid_thw"]
        assert grids.shape[0] == 4
        assert grids[0].prod() < grids[2].prod() and grids[1].prod() < grids[2].prod()
        merge = agent.processor.image_processor.merge_size ** 2
        assert first == int(grids[:3].prod(dim=1).sum()) // merge
    loss = agent.model(**with_history).loss
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", SINGLE_IMAGE)
def test_single_image_families_refuse_history_images_naming_those_that_can(name):
    with pytest.raises(ValueError, match=r"history_images=1: .* takes one image per prompt.*Qwen2-VL.*Idefics2"):
        VLMWrapper(name, history_images=1)
    # text history still works
    agent = _agent(name)
    assert "Previous actions" in agent.prompt_text("Click OK", history=agent.history_answers(HISTORY, SIZE))


def test_collator_reads_the_episode_from_records(tmp_path):
    agent = _agent("uivlm/tiny-qwen2-vl", images=1)
    earlier, current = tmp_path / "earlier.png", tmp_path / "current.png"
    _screens()[0].save(earlier)
    _screens()[1].save(current)
    records = [{"id": "ep-1", "image": str(current), "instruction": "Click OK", "action": HISTORY[3],
                "episode_id": "ep", "step": 1, "history": HISTORY[:1], "history_images": [str(earlier)]},
               {"id": "single", "image": str(current), "instruction": "Click OK", "action": HISTORY[3]}]
    batch = UICollator(agent)(records)
    text = agent.processor.tokenizer.decode(batch["input_ids"][0])
    assert "Previous actions" in text and agent.render_target(HISTORY[0], SIZE) in text
    assert "Previous actions" not in agent.processor.tokenizer.decode(batch["input_ids"][1])
    assert batch["image_grid_thw"].shape[0] == 3


def test_saved_agents_keep_their_history_settings(tmp_path):
    agent = VLMWrapper("uivlm/tiny-qwen2-vl", history_window=3, history_images=1, history_max_pixels=4096)
    agent.save_pretrained(tmp_path / "agent")
    loaded = VLMWrapper(str(tmp_path / "agent"))
    assert (loaded.history_window, loaded.history_images, loaded.history_max_pixels) == (3, 1, 4096)


def test_run_configuration_feeds_the_wrapper_and_names_bad_values():
    config = load_config({"data": {"history_window": 2, "history_images": 1}, "model": {"history_max_pixels": 5000}})
    agent = VLMWrapper.from_config(config, with_lora=False)
    assert (agent.history_window, agent.history_images, agent.history_pixel_budget((640, 480))) == (2, 1, 5000)
    assert VLMWrapper("uivlm/tiny-qwen2-vl").history_pixel_budget((200, 100)) == 5000  # a quarter of 200 x 100
    for bad, message in [({"data": {"history_window": "many"}}, "data.history_window"),
                         ({"data": {"history_images": -1}}, "data.history_images"),
                         ({"model": {"history_max_pixels": 0}}, "model.history_max_pixels")]:
        with pytest.raises(ValueError, match=message):
            load_config(bad)


@pytest.mark.parametrize("name", ["uivlm/tiny-qwen2-vl", "uivlm/tiny-qwen3-vl", "uivlm/tiny-idefics2"])
def test_feature_cache_serves_earlier_screenshots_once_and_equals_the_plain_batch(name, tmp_path):
    """The cache holds each screenshot the prompts show once - the same file as one step's current screen and
    the next steps' earlier one - and the cached batch gives the plain batch's loss (DeepStack included)."""
    from uivlm_helpers.training.collate import UICollator
    from uivlm_helpers.training.features import (CachedFeaturesCollator, build_cache, install_feature_hook,
                                                 remove_feature_hook)

    agent = VLMWrapper(name, history_window="auto", history_images=2, history_max_pixels=200 * 200)
    agent.freeze_vision_encoder()
    assert cache_decision("auto", agent.family).enabled
    paths = []
    for i, screen in enumerate(_screens()):
        paths.append(str(tmp_path / f"step{i}.png"))
        screen.save(paths[-1])
    records = [{"id": f"ep-{i}", "image": paths[i], "instruction": "Click OK", "action": HISTORY[i % 2 * 3],
                "episode_id": "ep", "step": i, "history": [HISTORY[j % 2 * 3] for j in range(i)],
                "history_images": paths[:i]} for i in range(3)]
    cache = build_cache(agent, records, tmp_path / "cache", progress=False)
    # three screens; a Qwen family shows the two earlier ones at the history budget (224 x 224 is over it:
    # two more entries), Idefics2 shows them as they are (the entries of the steps they were current in)
    assert cache.build_report["history_images"] == 2
    assert cache.build_report["distinct_images"] == (5 if agent.adapter.uses_pixel_budget else 3)
    assert build_cache(agent, records, tmp_path / "cache", progress=False).build_report["computed"] == 0
    agent.model.eval()
    plain = UICollator(agent)(records)
    cached_collator = CachedFeaturesCollator(agent, cache)
    cached = cached_collator(records)
    assert cached_collator.computed_on_the_fly == 0 and "pixel_values" not in cached
    with torch.no_grad():
        plain_loss = agent.model(**plain).loss
        install_feature_hook(agent.model)
        try:
            cached_loss = agent.model(**cached).loss
        finally:
            remove_feature_hook(agent.model)
    assert torch.allclose(plain_loss, cached_loss, atol=1e-5), (plain_loss, cached_loss)
