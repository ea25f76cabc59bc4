"""Memory estimator: hand-computed cases, the H100 calibration rows, and the tiny model measured on CPU."""

import json
import re
from pathlib import Path

import pytest
import torch

from uivlm_helpers.core.config import DEFAULT_MODEL, RunConfig, load_config
from uivlm_helpers.families import FAMILIES
from uivlm_helpers.models import model_configs
from uivlm_helpers.models.tiny import TINY_MODELS
from uivlm_helpers.training import memory, profiling

# Full-size Qwen2-VL-2B on an H100, measured by bench/bench_anchor.py (bench/README.md §0).
ANCHOR = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu_anchor_2b_h100.jsonl"
QWEN_2B = "Qwen/Qwen2-VL-2B-Instruct"


def _config(name=QWEN_2B, **settings):
    config = RunConfig()
    config.model.name = name
    # The measured rows ran the plain path (test_fast_path_switches covers the cache and the fused loss).
    config.training.cache_vision_features = config.training.fused_cross_entropy = "false"
    for key, value in settings.items():
        node = config
        *parents, leaf = key.split("__")
        for part in parents:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return config


# -- model_configs ------------------------------------------------------------------------------------
def test_qwen2_vl_2b_config_builds_the_measured_parameter_count():
    from transformers import AutoModelForImageTextToText

    config = model_configs.build_config(QWEN_2B)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    assert (total, vision) == (2_208_985_600, 665_271_296)      # the H100 anchor's full-size build
    params = model_configs.published_config(QWEN_2B)["params"]  # the analytic formula agrees
    assert (params["total"], params["vision"]) == (total, vision)


@pytest.mark.parametrize("name", [n for n in model_configs.MODEL_NAMES if n != QWEN_2B])
def test_parameter_counts_match_the_real_classes(name):
    assert model_configs.count_parameters_meta(name) == model_configs.published_config(name)["params"]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_published_totals_match_the_hub(family):
    """Each published spec's total rounds to the count the Hub shows for that checkpoint (plug-in's hub_billions)."""
    plugin = FAMILIES[family]
    assert plugin.hub_billions and set(plugin.hub_billions) == set(plugin.published)
    billions = {n: round(model_configs.published_config(n)["params"]["total"] / 1e9, 2) for n in plugin.published}
    assert billions == plugin.hub_billions


def test_tiny_spec_counts_the_real_checkpoint(tiny_path):
    from safetensors import safe_open

    with safe_open(str(tiny_path / "model.safetensors"), "pt") as weights:
        stored = sum(_numel(weights.get_slice(k).get_shape()) for k in weights.keys())
    spec = model_configs.architecture_spec("uivlm/tiny-qwen2-vl")
    assert spec["params"]["total"] == stored == 1_139_840
    assert spec["image_tokens"]["max_pixels"] == 224 * 224


def _numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


@pytest.mark.parametrize("name", list(TINY_MODELS))
def test_tiny_spec_counts_match_the_loaded_model(name):
    """Every embedded tiny model: the spec's counts are the loaded model's, split where the wrapper freezes."""
    from uivlm_helpers.models.wrapper import VLMWrapper

    wrapper = VLMWrapper(name)
    vision_names = set(wrapper.adapter.vision_parameter_names(wrapper.model))
    loaded = {"vision": 0, "text": 0}
    for param_name, param in wrapper.model.named_parameters():   # tied weights are listed once
        loaded["vision" if param_name in vision_names else "text"] += param.numel()
    params = model_configs.architecture_spec(name)["params"]
    assert (params["total"], params["vision"], params["text"]) == (sum(loaded.values()), loaded["vision"],
                                                                   loaded["text"])
    view = memory.EstimateView(load_config({"model": {"name": name}}), gpu_gib=24.0)
    assert view.estimate["params"] == params["total"] and view.text.splitlines()[-1].startswith("fits")


@pytest.mark.parametrize("name,tokens", [("uivlm/tiny-llava", 64), ("uivlm/tiny-idefics2", 16),
                                         ("uivlm/tiny-florence2", 17), ("uivlm/tiny-paligemma", 64)])
def test_tiny_image_tokens_follow_the_processor(name, tokens):
    """The spec's image tokens are what the checkpoint's processor puts in the sequence for a screenshot."""
    from PIL import Image

    from uivlm_helpers.models.wrapper import VLMWrapper

    wrapper = VLMWrapper(name)
    image_token = wrapper.processor.tokenizer.convert_tokens_to_ids(wrapper.processor.image_token)
    batch = wrapper.encode([Image.new("RGB", (320, 200), "white")], ["Click the Save button"], ["click(1, 2)"])
    spec = model_configs.architecture_spec(name)
    count = model_configs.image_token_count(spec, 320, 200)
    assert count["tokens"] == tokens == int((batch["input_ids"] == image_token).sum())


# llava-hf/llava-1.5-7b-hf's config.json as transformers 4 wrote it: the Llama dimensions equal to
# LlamaConfig's defaults (4096 hidden, 32 layers...) are left out.
LLAVA_15_7B_CONFIG = {
    "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000,
    "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
    "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
                    "max_position_embeddings": 4096, "model_type": "llama", "rms_norm_eps": 1e-05,
                    "torch_dtype": "float16", "vocab_size": 32064},
    "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
    "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                      "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                      "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064,
}


def test_local_llava_folder_reads_like_the_published_spec(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAVA_15_7B_CONFIG))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"crop_size": {"height": 336, "width": 336}, "do_center_crop": True, "size": {"shortest_edge": 336}}))
    local = model_configs.architecture_spec(str(tmp_path))
    published = model_configs.published_config("llava-hf/llava-1.5-7b-hf")
    for key in ("family", "architecture", "checkpoint_dtype", "vision", "connector", "image_tokens",
                "token_ids", "params", "lora"):
        assert local[key] == published[key], key
    assert {k: local["text"][k] for k in published["text"]} == published["text"]


@pytest.mark.parametrize("config,message", [
    ({"model_type": "llava_next"}, "model_type 'llava_next' from config.json is not supported; supported "
                                   "model types: " + re.escape(str(list(model_configs.CONFIG_MODEL_TYPES)))),
    ({**LLAVA_15_7B_CONFIG, "text_config": {"model_type": "qwen2"}}, "text model 'qwen2'"),
])
def test_unsupported_config_json_is_a_clear_error(tmp_path, config, message):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"{tmp_path}: .*{message}"):
        model_configs.architecture_spec(str(tmp_path))


def test_hybrid_language_model_counts_its_layer_kinds_apart():
    """A hybrid language model (``layer_types`` with Gated-DeltaNet ``linear_attention`` layers between
    gated ``full_attention`` ones, as Qwen3.5's): LoRA shapes come per layer kind, and one layer's estimated
    activations are the layer-weighted mean of the two kinds' (each kind saves other tensors)."""
    base = model_configs.published_config(QWEN_2B)
    kinds = (["linear_attention"] * 3 + ["full_attention"]) * (base["text"]["num_hidden_layers"] // 4)
    text = {**base["text"], "layer_types": kinds, "attn_output_gate": True, "linear_num_key_heads": 16,
            "linear_key_head_dim": 128, "linear_num_value_heads": 32, "linear_value_head_dim": 128}
    hybrid = {**base, "text": text}
    groups = model_configs.lora_shapes(hybrid)
    assert [(group, layers) for group, layers, _ in groups] == [("linear_attention", 21), ("full_attention", 7)]
    linear, full = groups[0][2], groups[1][2]
    assert full["q_proj"] == (1536, 2 * 12 * 128)                   # the query and its output gate
    assert linear["in_proj_qkv"] == (1536, 2 * 16 * 128 + 32 * 128) and linear["in_proj_b"] == (1536, 32)
    assert linear["out_proj"] == (32 * 128, 1536) and linear["down_proj"] == full["down_proj"]

    def layer(spec_groups):
        spec = {**hybrid, "lora": [{"group": g, "layers": n, "modules": m} for g, n, m in spec_groups]}
        return memory.layer_bytes(spec, act=2, norm=4, lora_in=4, mask=1, targets=["q_proj", "in_proj_qkv"],
                                   full_finetune=False, repeated_kv=True)

    only_linear, only_full = layer([("linear_attention", 28, linear)]), layer([("full_attention", 28, full)])
    assert only_linear != only_full
    assert layer(groups) == pytest.approx((21 * only_linear + 7 * only_full) / 28)
    estimate = memory.estimate_training_memory(_config(), (1288, 728),
                                               spec={**hybrid, "lora": [{"group": g, "layers": n, "modules": m}
                                                                        for g, n, m in groups]})
    assert estimate["total_gib"] > 0


def test_published_config_is_a_fresh_copy_and_unknown_names_fail():
    model_configs.published_config(QWEN_2B)["text"]["hidden_size"] = 1
    assert model_configs.published_config(QWEN_2B)["text"]["hidden_size"] == 1536
    with pytest.raises(KeyError, match="known"):
        model_configs.published_config("someone/unknown")


@pytest.mark.parametrize("size,tokens,patches", [((1288, 728), 1196, 4784), ((672, 392), 336, 1344),
                                                 ((1932, 1092), 2691, 10764), ((2800, 1568), 5600, 22400)])
def test_qwen_image_tokens(size, tokens, patches):
    count = model_configs.image_token_count(model_configs.published_config(QWEN_2B), *size)
    assert (count["tokens"], count["patches"]) == (tokens, patches)   # the H100 anchor: seq - 62 text tokens


def test_pixel_budget_caps_image_tokens():
    spec = model_configs.published_config(QWEN_2B)
    count = model_configs.image_token_count(spec, 2800, 1568, max_pixels=256 * 28 * 28)
    assert count["tokens"] <= 256 and count["resized"][0] % 28 == 0 and count["resized"][1] % 28 == 0
    assert model_configs.image_token_count(model_configs.architecture_spec("uivlm/tiny-qwen2-vl"), 224, 224)["tokens"] == 64


# -- hand-computed estimate components ---------------------------------------------------------------
def test_weights_by_dtype_and_quantization():
    gib = memory.GIB
    bf16 = memory.estimate_training_memory(_config(model__torch_dtype="bfloat16"), (1288, 728))
    assert bf16["components"]["weights"] == pytest.approx(2_208_985_600 * 2 / gib)
    tiny = memory.estimate_training_memory(RunConfig())
    assert tiny["components"]["weights"] == pytest.approx(1_139_840 * 4 / gib)
    nf4 = memory.estimate_training_memory(_config(model__torch_dtype="bfloat16", model__load_in_4bit=True), (1288, 728))
    params = model_configs.published_config(QWEN_2B)["params"]
    linear = params["text_linear"] + params["vision_linear"]
    # nf4 linears + fp32 for the rest (prepare_model_for_kbit_training upcasts it)
    assert nf4["components"]["weights"] == pytest.approx((linear * memory.NF4_BYTES + (params["total"] - linear) * 4) / gib)
    assert memory.NF4_BYTES == pytest.approx(0.5 + 1 / 64 + 4 / 16384)


def test_lora_parameters_gradients_and_adam_state():
    # one q_proj of the 2B model: A is 16 x 1536, B is 1536 x 16
    assert memory.lora_param_count(model_configs.published_config(QWEN_2B), ["q_proj"], 16) == 28 * 16 * (1536 + 1536)
    qv = memory.estimate_training_memory(_config(model__lora_config__target_modules=["q_proj", "v_proj"]), (1288, 728))
    every = memory.estimate_training_memory(_config(), (1288, 728))
    assert (qv["trainable_params"], every["trainable_params"]) == (2_179_072, 18_464_768)  # measured on the H100
    gib = memory.GIB
    c = every["components"]
    assert (c["lora"], c["gradients"], c["optimizer"]) == pytest.approx(
        (18_464_768 * 4 / gib, 18_464_768 * 4 / gib, 18_464_768 * 8 / gib))
    full = memory.estimate_training_memory(_config(model__use_lora=False, model__torch_dtype="bfloat16"), (1288, 728))
    assert full["trainable_params"] == 2_208_985_600 - 665_271_296        # vision tower frozen
    assert full["components"]["optimizer"] == pytest.approx(full["trainable_params"] * 4 / gib)


def test_logits_bytes_and_activation_scaling():
    base = _config(model__torch_dtype="bfloat16", model__device="cuda", training__gradient_checkpointing=True,
                   training__batch_size=1)
    e = memory.estimate_training_memory(base, (1288, 728), text_tokens=62)
    # fp32 log-softmax, its incoming gradient and the gradient it returns: 12 bytes per token per entry
    assert e["components"]["logits"] == pytest.approx(12 * 151936 * 1258 / memory.GIB)
    kept = memory.estimate_training_memory(base, (1288, 728), text_tokens=62, keep_logits=True)
    assert kept["components"]["logits"] == pytest.approx(14 * 151936 * 1258 / memory.GIB)
    base.training.batch_size = 2
    doubled = memory.estimate_training_memory(base, (1288, 728), text_tokens=62)
    assert doubled["components"]["logits"] == pytest.approx(2 * e["components"]["logits"])
    base.training.gradient_checkpointing = False
    plain = memory.estimate_training_memory(base, (1288, 728), text_tokens=62)
    assert plain["components"]["activations"] > 5 * doubled["components"]["activations"]
    assert plain["assumptions"]["vision_graph"] is False and doubled["assumptions"]["vision_graph"] is True


# -- calibration against the H100 rows ----------------------------------------------------------------
def _anchor_rows():
    return [json.loads(line) for line in ANCHOR.read_text().splitlines() if line.strip()]


def _calibration_rows():
    return [r for r in _anchor_rows() if "peak_alloc_gib" in r and not r.get("liger") and not r.get("cache")]


def test_calibration_against_measured_h100_rows(capsys):
    """Every plain (non-liger) H100 row within +-15% (aim +-10%), printed as a table.

    The anchor loop kept the model output through backward (keep_logits=True: 14 bytes/logit fit every
    row, 12 fit none). Its batch-4 no-checkpointing row ran after the checkpointed rows on the same
    model, whose enable_input_require_grads hooks (vision patch embedding included) stay registered
    after peft's unload(): the frozen tower's activations were recorded there (frozen_vision_graph=True).
    """
    lines = [f"{'recipe':16s} {'bs':>2s} {'screen':>9s} {'tokens':>6s} {'estimate':>8s} {'measured':>8s} {'error':>7s}"]
    errors = []
    for row in _calibration_rows():
        mode = row["mode"]
        config = _config(model__torch_dtype="bfloat16", model__device="cuda", training__batch_size=row["bs"],
                         training__gradient_checkpointing=mode.endswith("ckpt"),
                         model__load_in_4bit=mode.startswith("qlora4"),
                         model__lora_config__target_modules=["q_proj", "v_proj"] if "qv" in mode else None)
        width, height = map(int, row["res"].split("x"))
        after_ckpt_rows = mode == "lora_all" and row["bs"] == 4
        estimate = memory.estimate_training_memory(config, (width, height), text_tokens=62, keep_logits=True,
                                                   frozen_vision_graph=True if after_ckpt_rows else None)
        if "seq" in row:
            assert estimate["sequence_tokens"] == row["seq"]
        error = estimate["peak_allocated_gib"] / row["peak_alloc_gib"] - 1
        errors.append((mode, row["bs"], row["res"], error))
        lines.append(f"{mode:16s} {row['bs']:2d} {row['res']:>9s} {estimate['sequence_tokens']:6d} "
                     f"{estimate['peak_allocated_gib']:8.2f} {row['peak_alloc_gib']:8.2f} {100 * error:+6.1f}%")
    with capsys.disabled():
        print("\nestimate vs torch.cuda.max_memory_allocated (GiB), Qwen2-VL-2B on an H100:\n" + "\n".join(lines))
    assert len(errors) == 10
    assert all(abs(e) <= 0.15 for *_, e in errors), errors


def test_fast_path_switches_against_measured_h100_rows(capsys):
    """training.cache_vision_features drops the tower's activations and pixels; training.fused_cross_entropy
    (liger-kernel) drops the fp32 logits. Checked against the H100 anchor's liger rows (anchor loop: logits kept,
    frozen tower recorded under checkpointing) and its cache table (Trainer-like loop), all Qwen2-VL-2B."""
    def estimate(bs, ckpt, cache="false", fused="false", res=(1288, 728), **kwargs):
        config = _config(model__torch_dtype="bfloat16", model__device="cuda", training__batch_size=bs,
                         training__gradient_checkpointing=ckpt, training__cache_vision_features=cache,
                         training__fused_cross_entropy=fused)
        return memory.estimate_training_memory(config, res, text_tokens=62, **kwargs)

    anchor = _anchor_rows()
    liger = [r for r in anchor if r.get("liger") and not r.get("cache") and r.get("mode", "").startswith("lora_all")]
    lines, errors = [], []
    for row in liger:
        after_ckpt_rows = row["mode"] == "lora_all" and row["bs"] == 4
        e = estimate(row["bs"], row["mode"].endswith("ckpt"), fused="true",
                     res=tuple(map(int, row["res"].split("x"))), keep_logits=True,
                     frozen_vision_graph=True if after_ckpt_rows else None)
        errors.append(e["peak_allocated_gib"] / row["peak_alloc_gib"] - 1)
        lines.append(f"liger {row['mode']:14s} bs {row['bs']} {row['res']:>9s}: {e['peak_allocated_gib']:6.2f} "
                     f"vs {row['peak_alloc_gib']:6.2f} ({100 * errors[-1]:+.1f}%)")
    # The anchor's cache rows: plain vs cached features, LoRA all + checkpointing, with and without liger.
    cache_rows = {(r["bs"], "true" if r.get("liger") else "false", r["path"]): r["peak_alloc_gib"]
                  for r in anchor if r.get("cache") and "path" in r}
    assert len(cache_rows) == 8
    for bs, fused in ((4, "false"), (8, "false"), (4, "true"), (8, "true")):
        plain_gib, cached_gib = cache_rows[(bs, fused, "plain")], cache_rows[(bs, fused, "cached")]
        plain = estimate(bs, True, fused=fused, frozen_vision_graph=True)
        cached = estimate(bs, True, cache="true", fused=fused, frozen_vision_graph=True)
        assert cached["assumptions"]["cache_vision_features"] and not cached["assumptions"]["vision_graph"]
        assert cached["components"]["activations"] < plain["components"]["activations"]
        for est, measured in ((plain, plain_gib), (cached, cached_gib)):
            errors.append(est["peak_allocated_gib"] / measured - 1)
        lines.append(f"cache bs {bs} fused={fused}: plain {plain['peak_allocated_gib']:.2f} vs {plain_gib}, "
                     f"cached {cached['peak_allocated_gib']:.2f} vs {cached_gib} ({100 * errors[-1]:+.1f}%)")
    with capsys.disabled():
        print("\nfast-path estimates vs H100 measurements (GiB):\n" + "\n".join(lines))
    assert len(liger) == 7 and all(abs(e) <= 0.10 for e in errors), errors
    # The fused loss removes the vocabulary-sized logits: 12+ bytes x 151,936 per token -> a few MiB.
    fused, plain = estimate(1, True, fused="true"), estimate(1, True)
    assert plain["components"]["logits"] > 2.0 and fused["components"]["logits"] < 0.05
    # auto: cached when the tower is frozen; fused only with a GPU and liger-kernel installed.
    auto = memory.estimate_training_memory(_config(training__cache_vision_features="auto"), (1288, 728))
    assert auto["assumptions"]["cache_vision_features"] is True
    unfrozen = memory.estimate_training_memory(
        _config(training__cache_vision_features="auto", model__use_lora=False, model__freeze_vision_encoder=False),
        (1288, 728))
    assert unfrozen["assumptions"]["cache_vision_features"] is False
    cpu = memory.estimate_training_memory(_config(training__fused_cross_entropy="auto"), (1288, 728))
    assert cpu["assumptions"]["fused_cross_entropy"] is False


# -- the tiny model, estimated and measured on CPU ---------------------------------------------------
@pytest.fixture
def one_thread():
    """Two OpenMP threads on a busy 2-core CI box run ~10x slower than one; memory is the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_batch_of_four():
    """The tiny Qwen2-VL (224x224 screenshots stay 64 image tokens) and a plain batch of four (pixels)."""
    from PIL import Image, ImageDraw

    from uivlm_helpers.models.wrapper import VLMWrapper

    config = RunConfig()
    config.model.name = "uivlm/tiny-qwen2-vl"
    config.training.batch_size = 4
    config.training.cache_vision_features = "false"   # profiled on a plain batch (with pixels)
    wrapper = VLMWrapper.from_config(config)
    images = []
    for i in range(4):
        image = Image.new("RGB", (224, 224), "white")
        ImageDraw.Draw(image).rectangle([20 + 10 * i, 30, 90 + 10 * i, 60], fill="blue")
        images.append(image)
    batch = wrapper.encode(images, [f"Click the Save button {i}" for i in range(4)], ["click(100, 200)"] * 4)
    return config, wrapper, batch


def test_tiny_estimate_matches_profiled_peak_on_cpu(capsys, one_thread):
    config, wrapper, batch = _tiny_batch_of_four()
    estimate = memory.estimate_training_memory(config, (224, 224),
                                               text_tokens=batch["input_ids"].shape[1] - 64)
    before = [p.detach().clone() for p in wrapper.model.parameters() if p.requires_grad]
    measured = profiling.profile_training_peak(wrapper, batch, steps=2)
    after = [p for p in wrapper.model.parameters() if p.requires_grad]
    assert all(torch.equal(a, b) for a, b in zip(before, after))   # lr=0: the model is unchanged
    comparison = memory.compare_with_measurement(estimate, measured)
    with capsys.disabled():
        print(f"\ntiny Qwen2-VL, batch 4, CPU: estimate {comparison['estimated_gib'] * 1024:.1f} MiB, "
              f"measured {measured['peak_gib'] * 1024:.1f} MiB ({100 * comparison['error']:+.1f}%), "
              f"peak RSS {measured['rss_peak_gib'] * 1024:.1f} MiB")
    assert measured["device"] == "cpu" and measured["peak_gib"] > measured["resident_gib"]
    assert abs(comparison["error"]) <= 0.15


def test_uncheckpointed_layers_cost_one_layer_each_and_all_of_them_equal_no_checkpointing():
    def estimate(ckpt=True, kept=0, name="Qwen/Qwen2-VL-7B-Instruct", bs=4):
        config = _config(name, model__torch_dtype="bfloat16", model__device="cuda", training__batch_size=bs,
                         training__gradient_checkpointing=ckpt, training__uncheckpointed_layers=kept,
                         training__mixed_precision="bf16", training__cache_vision_features="true",
                         training__fused_cross_entropy="true")
        return memory.estimate_training_memory(config, (1288, 728), text_tokens=101)

    layers = estimate()["assumptions"]["checkpointed_layers"]
    assert layers == (28, 28)
    peaks = [estimate(kept=k)["peak_allocated_gib"] for k in range(29)]
    steps = [b - a for a, b in zip(peaks, peaks[1:])]
    # The first layer left out costs nothing: its activations are freed by its own backward before the
    # first checkpointed layer recomputes (and it no longer stores a checkpoint of its input).
    assert -0.05 < steps[0] <= 0
    assert all(s > 0.5 for s in steps[1:]) and max(steps[1:]) == pytest.approx(min(steps[1:]), rel=0.05)
    assert estimate(kept=28)["assumptions"]["checkpointed_layers"] == (0, 28)
    assert peaks[28] == pytest.approx(estimate(ckpt=False)["peak_allocated_gib"])
    assert estimate(bs=8, kept=2)["peak_allocated_gib"] - estimate(bs=8, kept=1)["peak_allocated_gib"] == pytest.approx(
        2 * steps[1], rel=0.05)                                         # a layer's activations scale with the batch
    with pytest.raises(ValueError, match="training.uncheckpointed_layers=29: the language model has 28 layers"):
        estimate(kept=29)


def test_padded_batches_save_keys_and_values_at_the_query_width():
    """A padded batch gives SDPA a mask; transformers then repeats k/v to every query head (GQA needs no mask)."""
    def layer_cost(bs, padded):
        config = _config("Qwen/Qwen2-VL-7B-Instruct", model__torch_dtype="bfloat16", model__device="cuda",
                         training__batch_size=bs, training__mixed_precision="bf16",
                         training__gradient_checkpointing=True, training__cache_vision_features="true",
                         training__fused_cross_entropy="true")
        plan = memory.plan_uncheckpointed_layers(config, 1e6, (1288, 728), text_tokens=101, padded=padded)
        return plan["estimates"][2] - plan["estimates"][1]

    text = model_configs.architecture_spec("Qwen/Qwen2-VL-7B-Instruct")["text"]
    q_dim = text["num_attention_heads"] * text["head_dim"]
    kv_dim = text["num_key_value_heads"] * text["head_dim"]
    extra = layer_cost(4, True) - layer_cost(4, False)
    assert extra * memory.GIB == pytest.approx(2 * 2 * (q_dim - kv_dim) * 4 * 1297, rel=1e-6)   # bf16 k and v
    assert layer_cost(1, True) == pytest.approx(layer_cost(1, False))   # one sample: nothing to pad
    # Measured on an H200 (bench/README.md 5c): 1.145 GiB per layer at batch 4, 2.290 at batch 8.
    assert layer_cost(4, True) == pytest.approx(1.145, rel=0.03)
    assert layer_cost(8, True) == pytest.approx(2.290, rel=0.03)


def test_plan_uncheckpointed_layers_keeps_the_largest_count_within_the_budget():
    config = _config("Qwen/Qwen2-VL-7B-Instruct", model__torch_dtype="bfloat16", model__device="cuda",
                     training__batch_size=4, training__mixed_precision="bf16", training__gradient_checkpointing=True,
                     training__cache_vision_features="true", training__fused_cross_entropy="true")
    full = memory.plan_uncheckpointed_layers(config, 1e6, (1288, 728))
    assert full["uncheckpointed_layers"] == full["layers"] == 28 and full["fits"]
    estimates = full["estimates"]
    budget = (estimates[7] + estimates[8]) / 2
    plan = memory.plan_uncheckpointed_layers(config, budget, (1288, 728))
    assert plan["uncheckpointed_layers"] == 7 and plan["estimate_gib"] == estimates[7] <= budget
    # Anchored on a measured peak 1 GiB above the estimate: every count costs 1 GiB more, one layer fewer fits.
    anchored = memory.plan_uncheckpointed_layers(config, budget, (1288, 728), measured_gib=estimates[0] + 1.0)
    assert anchored["estimates"] == pytest.approx([e + 1.0 for e in estimates])
    assert anchored["uncheckpointed_layers"] < 7
    none = memory.plan_uncheckpointed_layers(config, estimates[0] - 0.1, (1288, 728))
    assert none["uncheckpointed_layers"] == 0 and not none["fits"]
    assert config.training.uncheckpointed_layers == 0                   # the caller's configuration is untouched
    total = memory.plan_uncheckpointed_layers(config, budget, (1288, 728), measure="total_gib")
    assert total["uncheckpointed_layers"] < 7                           # the overhead counts against the budget
    # uncheckpointed_layers: auto resolves to the same plan within training.memory_budget_gib.
    config.training.uncheckpointed_layers, config.training.memory_budget_gib = "auto", budget
    auto = memory.estimate_training_memory(config, (1288, 728))
    assert auto["assumptions"]["checkpointed_layers"] == (28 - total["uncheckpointed_layers"], 28)
    assert auto["total_gib"] == pytest.approx(total["estimate_gib"]) and auto["total_gib"] <= budget
    count, reason = memory.auto_uncheckpointed_layers(config, (1288, 728))
    assert count == total["uncheckpointed_layers"] and f"{count} of 28 layers fit training.memory_budget_gib" in reason


def test_fits_message_names_the_uncheckpointed_layers_that_still_fit():
    config = _config("Qwen/Qwen2-VL-7B-Instruct", model__torch_dtype="bfloat16", model__device="cuda",
                     training__batch_size=4, training__mixed_precision="bf16", training__gradient_checkpointing=True,
                     training__cache_vision_features="true", training__fused_cross_entropy="true")
    estimate = memory.estimate_training_memory(config, (1288, 728))
    plan = memory.plan_uncheckpointed_layers(config, 40.0, (1288, 728), measure="total_gib")
    assert 0 < plan["uncheckpointed_layers"] < 28
    message = memory.fits_message(estimate, 40.0)
    assert message.startswith("fits") and f"room for training.uncheckpointed_layers={plan['uncheckpointed_layers']} of 28" in message
    config.training.uncheckpointed_layers = plan["uncheckpointed_layers"]
    already = memory.estimate_training_memory(config, (1288, 728))
    assert "room for" not in memory.fits_message(already, 40.0)
    tight = memory.fits_message(already, already["total_gib"] - 0.5)
    assert tight.startswith("won't fit") and "training.uncheckpointed_layers=0" in tight


def test_uncheckpointed_layer_cost_matches_the_profiled_tiny_model_on_cpu(capsys, one_thread):
    """The measured peak grows with every layer left out of checkpointing, by about the estimated amount."""
    from uivlm_helpers.training.checkpointing import language_model_layers

    config, wrapper, batch = _tiny_batch_of_four()
    config.training.gradient_checkpointing = True
    wrapper.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    wrapper.model.get_input_embeddings().register_forward_hook(lambda m, i, out: out.requires_grad_(True))
    layers = language_model_layers(wrapper)
    measured, estimated = [], []
    for kept in range(len(layers) + 1):
        for index, (_, module) in enumerate(layers):
            module.gradient_checkpointing = index < len(layers) - kept
        config.training.uncheckpointed_layers = kept
        measured.append(profiling.profile_training_peak(wrapper, batch, steps=1)["peak_gib"])
        estimated.append(memory.estimate_training_memory(config, (224, 224), text_tokens=batch["input_ids"].shape[1] - 64,
                                                         frozen_vision_graph=False)["peak_allocated_gib"])
    with capsys.disabled():
        print("\ntiny Qwen2-VL, batch 4, CPU, peak MiB by uncheckpointed layers: measured "
              f"{[round(m * 1024, 1) for m in measured]}, estimated {[round(e * 1024, 1) for e in estimated]}")
    # Here the peak is inside the loss's backward (the tiny model's logits outweigh its layers), where
    # every layer left out adds its activations, the first one included.
    assert all(b > a for a, b in zip(measured, measured[1:]))
    for k in range(len(layers) + 1):
        assert estimated[k] - estimated[0] == pytest.approx(measured[k] - measured[0], rel=0.25, abs=0.02 / 1024)


# -- presentation and advice --------------------------------------------------------------------------
def test_table_and_figure(tmp_path):
    estimate = memory.estimate_training_memory(_config(model__torch_dtype="bfloat16"), (1288, 728))
    table = memory.estimate_table(estimate)
    assert list(table.index) == [*memory.COMPONENTS, "total"]
    assert table.loc["total", "GiB"] == pytest.approx(table["GiB"].iloc[:-1].sum(), abs=0.01)
    assert estimate["total_gib"] == pytest.approx(sum(estimate["components"].values()))
    fig = memory.estimate_figure(estimate, path=tmp_path / "figures" / "memory.png", gpu_gib=24)
    assert (tmp_path / "figures" / "memory.png").stat().st_size > 0
    import matplotlib.pyplot as plt

    plt.close(fig)


def _header_rows(html: str) -> list[list[str]]:
    import re

    head = re.search(r"<thead>(.*?)</thead>", html, re.S)[1]
    return [re.findall(r"<th[^>]*>(.*?)</th>", row, re.S) for row in re.findall(r"<tr.*?</tr>", head, re.S)]


def test_table_renders_one_header_row_named_component():
    # An index name rendered as a second header row of empty cells under the column names.
    table = memory.estimate_table(memory.estimate_training_memory(_config(), (1288, 728)))
    expected = [["component", "GiB", "share %", "what"]]
    assert _header_rows(table.to_html()) == expected
    assert _header_rows(table._repr_html_()) == expected  # what a notebook cell shows
    view = memory.EstimateView(RunConfig(), gpu_gib=24.0)
    assert _header_rows(view.table.value) == expected
    assert view.text.splitlines()[0].split() == ["component", "GiB", "share", "%"]


def test_fits_message_suggests_the_cheapest_change_that_fits():
    seven = _config("Qwen/Qwen2-VL-7B-Instruct", model__torch_dtype="bfloat16", model__device="cuda",
                    training__batch_size=4, training__gradient_checkpointing=True)
    estimate = memory.estimate_training_memory(seven, (1288, 728))
    message = memory.fits_message(estimate, 24.0)
    assert message.startswith("won't fit in 24.0 GiB") and "training.batch_size=1" in message
    text, change, new = memory.suggest_changes(estimate, 24.0)
    assert new["total_gib"] <= 24.0 and change["training.gradient_accumulation_steps"] == 4
    # batch 1 already, no checkpointing: checkpointing is the cheapest fix
    big = _config(model__torch_dtype="bfloat16", model__device="cuda", training__batch_size=1)
    message = memory.fits_message(memory.estimate_training_memory(big, (2800, 1568)), 24.0)
    assert "training.gradient_checkpointing=true" in message
    assert memory.fits_message(estimate, 80.0).startswith("fits")
    assert "room for training.uncheckpointed_layers=" in memory.fits_message(estimate, 80.0)
    seven.training.gradient_checkpointing = False
    unchecked = memory.fits_message(memory.estimate_training_memory(seven, (1288, 728)), 100.0)
    assert unchecked.startswith("fits") and "uncheckpointed_layers" not in unchecked   # nothing to skip
    assert "larger GPU" in memory.fits_message(estimate, 4.0)


def test_estimate_view_headless():
    config = RunConfig()
    view = memory.EstimateView(config, gpu_gib=24.0)
    assert "total" in view.text and "fits" in view.text and view.estimate["model"] == DEFAULT_MODEL
    config.set("model.name", "Qwen/Qwen2-VL-7B-Instruct")
    config.set("model.torch_dtype", "bfloat16")
    view.update(config)
    assert view.estimate["params"] == 8_291_375_616 and "won't fit" in view.text and "try" in view.text
    config.model.name = "someone/not-a-known-model"
    view.update(config)
    assert view.estimate is None and "no estimate" in view.text


# -- episode history (data.history_window, data.history_images) ---------------------------------------------
@pytest.mark.parametrize("source,window,expected", [
    ("aitw", "auto", 4), ("androidcontrol", "auto", 4), ("mind2web", "auto", 4), ("miniwob", "auto", 4),
    ("miniwob:click-test,enter-text", "auto", 4), ("episodes", "auto", 4), ("data/aitw_general", "auto", 4),
    ("tasks", "auto", 0), ("synthetic", "auto", 0), ("data/screenspot", "auto", 0), ("tasks", 3, 3),
    ("aitw", 0, 0), ("aitw", "2", 2)])
def test_history_window_resolves_auto_by_data_source(source, window, expected):
    assert memory.history_window_for(source, window) == expected


@pytest.mark.parametrize("window", [-1, 1.5, True, "four"])
def test_history_window_rejects_what_is_not_a_count(window):
    with pytest.raises(ValueError, match="data.history_window"):
        memory.history_window_for("aitw", window)


def test_history_grows_the_sequence_by_exactly_the_counted_tokens():
    """Qwen2-VL-2B, 1288x728 screens: 4 earlier actions and 2 earlier screenshots at 200,704 px, which
    smart-resize to 588x336 = (336/28) x (588/28) = 252 image tokens each (+ vision start / end)."""
    base = _config(training__batch_size=1, data__image_width=1288, data__image_height=728)
    plain = memory.estimate_training_memory(base)
    assert plain["history"]["tokens"] == 0 and plain["sequence_tokens"] == 1196 + memory.DEFAULT_TEXT_TOKENS

    text_only = _config(training__batch_size=1, data__image_width=1288, data__image_height=728, data__source="aitw")
    with_text = memory.estimate_training_memory(text_only)
    text = 4 * memory.HISTORY_ACTION_TOKENS["text"] + memory.HISTORY_BLOCK_TOKENS[0]
    assert with_text["sequence_tokens"] - plain["sequence_tokens"] == text

    both = _config(training__batch_size=1, data__image_width=1288, data__image_height=728, data__source="aitw",
                   data__history_images=2, model__history_max_pixels=200_704)
    with_both = memory.estimate_training_memory(both)
    history = with_both["history"]
    assert history["image"]["resized"] == (588, 336) and history["image"]["tokens"] == (336 // 28) * (588 // 28)
    images = 2 * ((336 // 28) * (588 // 28) + 2)
    text = 4 * memory.HISTORY_ACTION_TOKENS["text"] + memory.HISTORY_BLOCK_TOKENS[2]
    assert with_both["sequence_tokens"] - plain["sequence_tokens"] == text + images == history["tokens"]
    assert with_both["image_tokens"] == plain["image_tokens"] == 1196      # the main screenshot is unchanged
    # Longer sequences cost activations and logits; the weights and the optimizer do not change.
    grown = {k: with_both["components"][k] - plain["components"][k] for k in plain["components"]}
    assert grown["activations"] > 0 and grown["logits"] > 0
    assert grown["weights"] == grown["optimizer"] == grown["lora"] == 0
    # Logits scale with tokens exactly (plain path, loss-backward peak): 12 bytes x vocabulary per token.
    assert plain["assumptions"]["peak_phase"] == with_both["assumptions"]["peak_phase"] == "loss backward"
    vocab = model_configs.published_config(QWEN_2B)["text"]["vocab_size"]
    assert grown["logits"] * memory.GIB == pytest.approx(12 * vocab * (text + images))


def test_history_screenshots_default_to_a_quarter_of_the_main_budget():
    config = _config(training__batch_size=1, data__image_width=1288, data__image_height=728,
                     data__history_images=1, model__max_pixels=802_816)        # 1,024 tokens at most
    history = memory.estimate_training_memory(config)["history"]
    assert history["pixels"] == 802_816 // 4 and history["image"]["tokens"] <= 256
    assert history["window"] == 0 and history["block_tokens"] == 0   # "tasks" is single-step: no text history


@pytest.mark.parametrize("family", sorted(name for name, plugin in FAMILIES.items() if not plugin.multi_image))
def test_history_screenshots_need_a_multi_image_family(family):
    name = next(iter(FAMILIES[family].published))
    config = _config(name, data__history_images=1)
    with pytest.raises(ValueError, match="data.history_images=1") as error:
        memory.estimate_training_memory(config)
    for plugin in FAMILIES.values():
        assert (plugin.display in str(error.value)) == (plugin.multi_image or plugin.name == family)
    config.data.history_images = 0            # earlier actions as text are fine for every family
    config.data.source = "aitw"
    assert memory.estimate_training_memory(config)["history"]["window"] == 4


def test_fits_message_says_what_the_history_costs():
    config = _config(training__batch_size=1, training__gradient_checkpointing=True, data__image_width=1288,
                     data__image_height=728, data__source="androidcontrol", data__history_images=2,
                     model__history_max_pixels=200_704)
    estimate = memory.estimate_training_memory(config)
    message = memory.fits_message(estimate, gpu_gib=80.0)
    text = 4 * memory.HISTORY_ACTION_TOKENS["text"] + memory.HISTORY_BLOCK_TOKENS[2]
    assert f"history: 4 actions (~{text} tokens) + 2 screenshots at 200,704 px (~{2 * 254} tokens)" in message
    config.data.history_images, config.data.history_window = 0, 0
    cost = estimate["total_gib"] - memory.estimate_training_memory(config)["total_gib"]
    assert f": +{cost:.2f} GiB;" in message and "4 more actions +" in message and "one more screenshot +" in message
    plain = memory.estimate_training_memory(_config(training__batch_size=1))
    assert "history" not in memory.fits_message(plain, gpu_gib=80.0)
    # A single-image family is offered no extra screenshot.
    llava = memory.estimate_training_memory(_config("llava-hf/llava-1.5-7b-hf", training__batch_size=1,
                                                    data__source="mind2web"))
    assert "4 more actions +" in memory.fits_message(llava, 80.0)
    assert "screenshot" not in memory.fits_message(llava, 80.0)


@pytest.fixture(scope="module")
def tiny_qwen_history_wrapper():
    from uivlm_helpers.models.wrapper import VLMWrapper

    return VLMWrapper("uivlm/tiny-qwen2-vl", history_window="auto", history_images=2)


@pytest.mark.parametrize("action_format", ["text", "json", "coordinates"])
def test_per_action_tokens_are_measured_on_the_tiny_qwen2_vl_tokenizer(tiny_qwen_history_wrapper, action_format):
    import math

    measured = memory.history_action_tokens(tiny_qwen_history_wrapper.processor.tokenizer, action_format)
    assert memory.HISTORY_ACTION_TOKENS[action_format] == math.ceil(measured)


def test_history_tokens_match_the_real_processor(tiny_qwen_history_wrapper):
    """The tiny Qwen2-VL's processor and chat template (``history_window="auto"``): one step of an episode
    with 4 earlier actions and 2 earlier screenshots against the same screen as a single step (no history
    block): the image part matches exactly, the text part within the per-action approximation (the rendered
    coordinates' digits vary; here 146 real against 143 estimated)."""
    from PIL import Image

    wrapper = tiny_qwen_history_wrapper
    screens = [Image.new("RGB", (1120, 1120), colour) for colour in ("white", "gray", "black")]
    earlier = [a.to_dict() for a in memory.HISTORY_ACTION_SAMPLES[:4]]
    single = wrapper.encode(screens[-1:], ["Click the Save button"], ["click(10, 20)"])
    episode = wrapper.encode(screens[-1:], ["Click the Save button"], ["click(10, 20)"], histories=[earlier],
                             history_images=[screens[:2]])
    config = RunConfig()
    config.model.name, config.data.source, config.data.history_images = "uivlm/tiny-qwen2-vl", "aitw", 2
    history = memory.history_cost(config, (1120, 1120))
    grid = episode["image_grid_thw"]
    assert grid.shape[0] == 3 and int(grid[0].prod()) == history["image"]["patches"]   # the earlier screenshots
    assert int(grid[0].prod()) // 4 == history["image"]["tokens"] == (112 // 28) * (112 // 28)
    real = episode["input_ids"].shape[1] - single["input_ids"].shape[1]
    estimated = history["tokens"]
    real_images = 2 * (history["image"]["tokens"] + memory.HISTORY_IMAGE_WRAPPER_TOKENS)
    assert history["images"] * history["image_tokens"] == real_images
    assert abs(real - estimated) <= history["window"] * 2, (real, estimated)


def test_suggested_changes_can_shrink_or_drop_history_screenshots():
    from uivlm_helpers.training.memory import suggest

    config = _config(training__batch_size=1, training__gradient_checkpointing=True, data__image_width=1288,
                     data__image_height=728, data__source="aitw", data__history_images=2)
    estimate = memory.estimate_training_memory(config)
    assert estimate["history"]["pixels"] == 1288 * 728 // 4   # a quarter of the current screenshot (under the budget)
    changes = dict(suggest._candidate_changes(estimate))
    smaller = changes["model.history_max_pixels=200704 (~256 tokens per earlier screenshot)"]
    none = changes["data.history_images=0 (earlier actions stay as text)"]
    smaller_estimate = suggest.reestimate(estimate, **smaller)
    none_estimate = suggest.reestimate(estimate, **none)
    assert none_estimate["total_gib"] < smaller_estimate["total_gib"] < estimate["total_gib"]
    assert none_estimate["history"]["window"] == 4                 # the earlier actions stay


def test_history_screenshots_come_from_the_feature_cache_too():
    """The feature cache holds earlier screenshots like current ones: with ``auto`` the estimate keeps it,
    and the screenshots' tokens still lengthen every sample (features instead of pixels)."""
    settings = dict(training__batch_size=1, data__image_width=1288, data__image_height=728, data__source="aitw",
                    training__cache_vision_features="auto")
    actions_only = memory.estimate_training_memory(_config(**settings))
    with_screens = memory.estimate_training_memory(_config(**settings, data__history_images=1))
    plain = memory.estimate_training_memory(_config(**{**settings, "training__cache_vision_features": "false"},
                                                    data__history_images=1))
    assert actions_only["assumptions"]["cache_vision_features"] is True
    assert with_screens["assumptions"]["cache_vision_features"] is True
    assert with_screens["sequence_tokens"] > actions_only["sequence_tokens"]
    assert actions_only["total_gib"] < with_screens["total_gib"] < plain["total_gib"]