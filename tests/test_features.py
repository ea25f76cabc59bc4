"""The fast training path on CPU with the tiny models: cached vision features give the plain forward's loss
and LoRA gradients, the cache is keyed by everything that changes the features and survives interruption
and damage, and the switches turn themselves off (``auto``) or fail (``true``) where they cannot be exact.

Tolerance: losses within 1e-6 relative and gradients within rtol 1e-5 / atol 1e-7 (on CPU in fp32 the two
paths are in fact bit-identical for the Qwen families; the batched vision tower of other families can
round differently in the last bit)."""

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from uivlm_helpers.core.config import ConfigError, load_config
from uivlm_helpers.training import features
from uivlm_helpers.training.features import (FEATURES_KEY, CachedFeaturesCollator, FastPathError, build_cache, decide_cache,
                                    decide_fused_ce, describe_cache, install_feature_hook)
from uivlm_helpers.models.wrapper import VLMWrapper
from uivlm_helpers.training.collate import UICollator

QWEN = "uivlm/tiny-qwen2-vl"
LOSS_RTOL, GRAD_RTOL, GRAD_ATOL = 1e-6, 1e-5, 1e-7


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _wrapper(name=QWEN, **kwargs):
    wrapper = VLMWrapper(name, use_lora=True, **kwargs)
    wrapper.freeze_vision_encoder()
    return wrapper


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # the same LoRA dropout masks on both paths
    loss = model(**batch).loss
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.item(), grads


def _assert_same(plain, cached):
    (plain_loss, plain_grads), (cached_loss, cached_grads) = plain, cached
    assert cached_loss == pytest.approx(plain_loss, rel=LOSS_RTOL)
    assert plain_grads.keys() == cached_grads.keys() and plain_grads
    assert any("lora_" in n for n in plain_grads)
    for name in plain_grads:
        torch.testing.assert_close(cached_grads[name], plain_grads[name], rtol=GRAD_RTOL, atol=GRAD_ATOL)


def test_cached_qwen2_vl_loss_and_lora_gradients_equal_the_plain_forward(screens, tmp_path):
    wrapper = _wrapper()
    records = screens[:4]
    cache = build_cache(wrapper, records, tmp_path / "cache", progress=False)
    install_feature_hook(wrapper.model)
    plain_batch = UICollator(wrapper)(records)
    cached_batch = CachedFeaturesCollator(wrapper, cache)(records)
    assert "pixel_values" not in cached_batch and "image_grid_thw" not in cached_batch
    image_tokens = int((plain_batch["input_ids"] == features.image_token_id(wrapper.model)).sum())
    assert cached_batch[FEATURES_KEY].shape[0] == image_tokens > 0
    assert cached_batch["position_ids"].shape == (3, *plain_batch["input_ids"].shape)   # M-RoPE positions
    torch.testing.assert_close(cached_batch["labels"], plain_batch["labels"], rtol=0, atol=0)
    _assert_same(_loss_and_grads(wrapper.model, plain_batch), _loss_and_grads(wrapper.model, cached_batch))
    # The self-check's loss (only the answer's logits computed) is the model's own loss.
    wrapper.model.eval()
    with torch.no_grad():
        assert float(features._answer_loss(wrapper.model, cached_batch)) == pytest.approx(
            float(wrapper.model(**plain_batch).loss), rel=1e-6)
    wrapper.model.train()
    # The hook is inert without cached features: prediction and the plain batch are untouched.
    assert wrapper.predict([records[0]["image"]], [records[0]["instruction"]])[0].raw_text is not None


@pytest.mark.parametrize("name", ["uivlm/tiny-qwen2.5-vl", "uivlm/tiny-llava", "uivlm/tiny-idefics2",
                                  "uivlm/tiny-paligemma", "uivlm/tiny-florence2"])
def test_other_families_cached_path_equals_plain(name, screens, tmp_path):
    wrapper = _wrapper(name)
    records = screens[:2]
    cache = build_cache(wrapper, records, tmp_path / "cache", progress=False)
    install_feature_hook(wrapper.model)
    plain = _loss_and_grads(wrapper.model, UICollator(wrapper)(records))
    cached = _loss_and_grads(wrapper.model, CachedFeaturesCollator(wrapper, cache)(records))
    _assert_same(plain, cached)


def test_cache_is_keyed_by_vision_weights_pixel_budget_and_image(screens, tmp_path):
    wrapper = _wrapper()
    records = [dict(r) for r in screens[:3]]
    root = tmp_path / "cache"
    first = build_cache(wrapper, records, root, progress=False)
    assert first.build_report["computed"] == 3 and first.build_report["reused"] == 0
    again = build_cache(wrapper, records, root, progress=False)
    assert again.folder == first.folder and again.build_report["reused"] == 3 and again.build_report["computed"] == 0

    # A changed vision weight: another key, every entry rebuilt, the stale folder removed.
    with torch.no_grad():
        next(p for n, p in wrapper.model.named_parameters() if ".visual.merger." in n).add_(1e-3)
    changed = build_cache(wrapper, records, root, progress=False)
    assert changed.folder != first.folder and not first.folder.exists()
    assert changed.build_report["computed"] == 3 and changed.build_report["stale_removed"] == [first.folder.name]
    image_key = features.image_hash(records[0]["image"])
    torch.testing.assert_close(changed.get(image_key), features.compute_features(wrapper, [records[0]["image"]])[0])

    # Another pixel budget: another key (and another number of image tokens per screenshot).
    budget = _wrapper(max_pixels=112 * 112)
    small = build_cache(budget, records, root, progress=False, keep_stale=True)
    assert small.folder not in (first.folder, changed.folder) and small.build_report["computed"] == 3
    assert small.get(image_key).shape[0] < changed.get(image_key).shape[0]

    # A changed image: only that entry is computed; the others are reused.
    path = Path(records[1]["image"])
    image = Image.open(path).convert("RGB")
    image.putpixel((0, 0), tuple(255 - v for v in image.getpixel((0, 0))))
    image.save(tmp_path / "edited.png")
    records[1]["image"] = str(tmp_path / "edited.png")
    edited = build_cache(wrapper, records, root, progress=False)
    assert edited.folder == changed.folder
    assert edited.build_report["computed"] == 1 and edited.build_report["reused"] == 2
    assert describe_cache(root)["images"] == 4


def test_truncated_interrupted_or_corrupted_cache_is_rebuilt_not_read(screens, tmp_path):
    wrapper = _wrapper()
    records = screens[:4]
    root = tmp_path / "cache"
    # Small shards: several files, so one can be damaged while the others stay valid.
    cache = build_cache(wrapper, records, root, progress=False, shard_mb=0.05)
    shards = sorted(cache.folder.glob("shard-*.safetensors"))
    assert len(shards) >= 2
    keys = [features.image_hash(r["image"]) for r in records]
    expected = {k: cache.get(k).clone() for k in keys}

    # Truncated shard (a copy cut short), plus what a killed build leaves: a temporary file and a shard
    # written but never named in the manifest.
    shards[0].write_bytes(shards[0].read_bytes()[: shards[0].stat().st_size // 2])
    (cache.folder / "shard-00042.safetensors.tmp-123").write_bytes(b"partial")
    (cache.folder / "shard-00099.safetensors").write_bytes(shards[1].read_bytes())
    rebuilt = build_cache(wrapper, records, root, progress=False, shard_mb=0.05)
    report = rebuilt.build_report
    assert report["repaired"]["bad_shards"] == [shards[0].name]
    assert report["repaired"]["orphan_shards"] == ["shard-00099.safetensors"]
    assert report["repaired"]["temporary"] == ["shard-00042.safetensors.tmp-123"]
    assert report["computed"] == report["repaired"]["dropped_entries"] >= 1
    for key in keys:
        torch.testing.assert_close(rebuilt.get(key), expected[key], rtol=0, atol=0)

    # Same length, different bytes (bit rot): the entry's checksum fails on read, it is not used; the
    # collator computes those features again and the batch is still exact.
    fresh = features.FeatureCache(rebuilt.folder)
    entry_shard = fresh.folder / fresh.entries[keys[0]]["shard"]
    blob = bytearray(entry_shard.read_bytes())
    blob[-8:] = bytes(8)
    entry_shard.write_bytes(bytes(blob))
    damaged_key = next(k for k in keys if fresh.entries[k]["shard"] == entry_shard.name
                       and fresh.get(k) is None)
    assert damaged_key not in fresh
    collator = CachedFeaturesCollator(wrapper, fresh)
    collator([r for r, k in zip(records, keys) if k == damaged_key])
    assert collator.computed_on_the_fly == 1


def test_auto_turns_off_with_a_trainable_vision_tower_and_true_fails(screens, tmp_path, capsys):
    wrapper = VLMWrapper(QWEN)   # full fine-tuning, tower not frozen
    assert features.trainable_vision_parameters(wrapper)
    decision = decide_cache("auto", wrapper)
    assert not decision.enabled and "trainable" in decision.reason
    with pytest.raises(FastPathError, match="cache_vision_features=true.*trainable"):
        decide_cache("true", wrapper)
    # LoRA on the tower counts as trainable too.
    from peft import LoraConfig, get_peft_model

    tower = VLMWrapper(QWEN)
    tower.model = get_peft_model(tower.model, LoraConfig(target_modules=r".*visual.*\.qkv", r=2))
    assert all(".visual." in n for n in features.trainable_vision_parameters(tower))
    assert not decide_cache("auto", tower).enabled
    # A tower with stochastic layers in training mode (Florence-2's published DaViT: drop_path_rate 0.1).
    florence = _wrapper("uivlm/tiny-florence2")
    assert decide_cache("auto", florence).enabled
    florence.model.get_base_model().config.vision_config.drop_path_rate = 0.1
    decision = decide_cache("auto", florence)
    assert not decision.enabled and "drop_path_rate=0.1" in decision.reason
    # Augmented images: auto off, true an error.
    frozen = _wrapper()
    assert decide_cache("auto", frozen).enabled
    assert not decide_cache("auto", frozen, augments_images=True).enabled
    with pytest.raises(FastPathError, match="augmented"):
        decide_cache(True, frozen, augments_images=True)

    # Through build_trainer's switch: the plain collator, and one line saying why.
    config = load_config({"model": {"use_lora": False, "freeze_vision_encoder": False}})
    plain = UICollator(wrapper)
    collator, info = features.prepare_fast_path(config, wrapper, screens[:2], tmp_path, plain)
    assert collator is plain and info["cache_vision_features"] is False
    assert "cache_vision_features auto -> off" in capsys.readouterr().out
    config.training.cache_vision_features = "true"
    with pytest.raises(FastPathError):
        features.prepare_fast_path(config, wrapper, screens[:2], tmp_path, plain)


def test_fused_cross_entropy_needs_cuda_and_the_fast_extra():
    wrapper = _wrapper()
    decision = decide_fused_ce("auto", wrapper)
    assert not decision.enabled and "CUDA" in decision.reason
    with pytest.raises(FastPathError, match=r"uivlm\[fast\]"):
        decide_fused_ce("true", wrapper)
    assert not decide_fused_ce("false", wrapper).enabled


def test_config_switches_validate():
    config = load_config({"training": {"cache_vision_features": True, "fused_cross_entropy": "AUTO"}})
    assert (config.training.cache_vision_features, config.training.fused_cross_entropy) == ("true", "auto")
    assert load_config(None).training.cache_vision_features == "auto"
    with pytest.raises(ConfigError, match="training.fused_cross_entropy: expected one of"):
        load_config({"training": {"fused_cross_entropy": "yes"}})


def test_training_with_the_cache_gives_the_plain_runs_weights(screens, tmp_path, capsys):
    """Trainer end to end (3 steps, with gradient checkpointing and its input-gradient hook on the text
    embeddings): the same losses and LoRA weights; the cache lives in the run folder."""
    from uivlm_helpers.training.train import train

    weights = {}
    for mode in ("false", "auto"):
        config = load_config({"training": {"batch_size": 2, "max_steps": 3, "logging_steps": 1,
                                           "gradient_checkpointing": True, "cache_vision_features": mode},
                              "algorithm": {"learning_rate": 5e-3}})
        wrapper = VLMWrapper.from_config(config)
        summary = train(config, wrapper, screens[:6], tmp_path / mode)
        weights[mode] = ({n: p.detach().clone() for n, p in wrapper.model.named_parameters() if p.requires_grad},
                         summary["losses"], summary["fast_path"])
    plain, cached = weights["false"], weights["auto"]
    assert cached[2]["cache_vision_features"] and not plain[2]["cache_vision_features"]
    assert cached[2]["self_check"]["ok"]
    assert Path(cached[2]["cache_dir"]).parent == tmp_path / "auto" / "cache" / "vision_features"
    assert cached[1] == pytest.approx(plain[1], rel=LOSS_RTOL) and len(set(plain[1])) == 3   # it trains
    for name in plain[0]:
        torch.testing.assert_close(cached[0][name], plain[0][name], rtol=GRAD_RTOL, atol=1e-6)
    described = describe_cache(tmp_path / "auto")
    assert described["images"] == 6 and described["size_mib"] > 0
    assert "vision features cached in" in capsys.readouterr().out
    assert os.listdir(tmp_path / "auto" / "cache" / "vision_features")


def test_qlora_trains_the_same_with_cached_features(screens, tmp_path):
    """A 4-bit base (bitsandbytes on CPU): the pre-training self-check must not switch the model to eval
    (bitsandbytes would repack its CPU weights for inference and training would fail)."""
    pytest.importorskip("bitsandbytes")
    from uivlm_helpers.training.train import train

    losses = {}
    for mode in ("false", "true"):
        config = load_config({"model": {"load_in_4bit": True},
                              "training": {"batch_size": 2, "max_steps": 2, "logging_steps": 1,
                                           "cache_vision_features": mode}})
        losses[mode] = train(config, VLMWrapper.from_config(config), screens[:4], tmp_path / mode)["losses"]
    assert losses["true"] == pytest.approx(losses["false"], rel=LOSS_RTOL)


def test_gpu_weight_fingerprint_sees_any_single_changed_element():
    """The vision-weight hash of a GPU tower is computed on the GPU (:func:`features._fingerprint`); here on
    CPU tensors: one flipped low bit anywhere changes it, the same values give the same one."""
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        weights = torch.randn(300, 70).to(dtype)
        assert features._fingerprint(weights) == features._fingerprint(weights.clone())
        for index in (0, 12_345, weights.numel() - 1):
            changed = weights.clone()
            changed.view(-1).view(features._INT_OF_SIZE[weights.element_size()])[index] ^= 1
            assert features._fingerprint(changed) != features._fingerprint(weights)


def _same_batch(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_qwen_batches_are_built_without_decoding_a_screenshot(screens, tmp_path, monkeypatch):
    """The cache keeps each screenshot's token layout (``image_grid_thw``); a batch of cached screenshot
    files is then built without decoding or resizing any of them, equal to the decoded batch value for
    value (two screen sizes in one batch). In-memory screenshots and caches without layouts fall back."""
    wrapper = _wrapper()
    wide = Image.open(screens[1]["image"]).convert("RGB").resize((336, 240))
    wide.save(tmp_path / "wide.png")
    records = [screens[0], {**screens[1], "image": str(tmp_path / "wide.png")}, screens[2]]
    cache = build_cache(wrapper, records, tmp_path / "cache", progress=False)
    grids = wrapper.processor.image_processor(images=[Image.open(r["image"]).convert("RGB") for r in records],
                                              return_tensors="pt")["image_grid_thw"].tolist()
    keys = features.record_image_keys(records)
    assert [cache.layout(k) for k in keys] == [{"image_grid_thw": g} for g in grids]
    assert grids[0] != grids[1]                                    # the batch mixes two token layouts
    install_feature_hook(wrapper.model)
    decoding = CachedFeaturesCollator(wrapper, cache)
    decoding.text_only = False
    expected = decoding(records)

    collator = CachedFeaturesCollator(wrapper, cache)
    def no_pixels(*args, **kwargs):
        raise AssertionError("a screenshot was decoded or processed")
    for module in (features.store, features.collate):   # where the collator hashes screenshots
        monkeypatch.setattr(module, "image_hash", no_pixels)
    monkeypatch.setattr(type(wrapper.processor.image_processor), "__call__", no_pixels)
    _same_batch(collator(records), expected)
    assert collator.text_only_batches == 1
    monkeypatch.undo()

    in_memory = [{**r, "image": Image.open(r["image"]).convert("RGB")} for r in records]
    _same_batch(collator(in_memory), expected)
    assert collator.text_only_batches == 1                          # decoded this time
    for entry in cache.manifest["entries"].values():                # a cache written before layouts existed
        entry.pop("layout")
    _same_batch(CachedFeaturesCollator(wrapper, cache)(records), expected)


def test_self_check_turns_batches_without_pixels_off_when_they_differ(screens, tmp_path, capsys):
    """A stored layout that lays the image tokens out differently (same count, other M-RoPE positions) is
    caught by the fast path's self-check before training: the collator decodes screenshots instead."""
    import json

    from uivlm_helpers.training.train import build_trainer

    config = load_config({"training": {"batch_size": 2, "max_steps": 1, "cache_vision_features": "true"}})
    wrapper = VLMWrapper.from_config(config)
    trainer, _ = build_trainer(config, wrapper, screens[:2], tmp_path / "run")
    assert trainer.fast_path["text_only_batches"] is True
    folder = Path(trainer.fast_path["cache_dir"])
    manifest = json.loads((folder / "manifest.json").read_text())
    for entry in manifest["entries"].values():
        t, h, w = entry["layout"]["image_grid_thw"]
        entry["layout"]["image_grid_thw"] = [t, h * 2, w // 2]      # as many tokens, another shape
    (folder / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    wrapper = VLMWrapper.from_config(config)
    trainer, _ = build_trainer(config, wrapper, screens[:2], tmp_path / "run")
    assert trainer.fast_path["text_only_batches"] is False and trainer.fast_path["self_check"]["ok"]
    assert "differ from the processor's in ['position_ids']" in capsys.readouterr().out
    assert trainer.data_collator.text_only is False


def test_lora_on_an_unfrozen_tower_turns_the_cache_off_with_one_line_and_true_fails(screens, tmp_path, capsys):
    # model.freeze_vision_encoder: false under LoRA puts adapters on the tower: its features change as it
    # trains, so auto must not cache them.
    config = load_config({"model": {"name": QWEN, "use_lora": True, "freeze_vision_encoder": False,
                                    "lora_config": {"r": 2}}})
    wrapper = VLMWrapper.from_config(config)
    tower = features.trainable_vision_parameters(wrapper)
    assert tower and all("lora_" in n for n in tower)
    plain = UICollator(wrapper)
    collator, info = features.prepare_fast_path(config, wrapper, screens[:2], tmp_path, plain)
    assert collator is plain and info["cache_vision_features"] is False
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cache_vision_features")]
    assert len(lines) == 1 and "trainable" in lines[0] and "lora_" in lines[0]
    assert "freeze_vision_encoder" in info["cache_reason"]
    config.training.cache_vision_features = "true"
    with pytest.raises(FastPathError, match="cache_vision_features=true.*trainable"):
        features.prepare_fast_path(config, wrapper, screens[:2], tmp_path, plain)
    # Frozen (the default): LoRA stays off the tower and auto caches.
    frozen = VLMWrapper.from_config(load_config({"model": {"name": QWEN, "lora_config": {"r": 2}}}))
    assert not features.trainable_vision_parameters(frozen) and decide_cache("auto", frozen).enabled
