"""Every supported family through the same ``VLMWrapper`` API, on tiny offline checkpoints of the real
architectures (real config, model, tokenizer, image processor and processor classes, saved and loaded
like Hub checkpoints): training loss, label masking on the real processor's tokens, LoRA, freezing,
batched prediction mapped back to screenshot pixels, save/load and merge; plus QLoRA / 8-bit on CPU
(bitsandbytes), device and dtype handling, and clear errors."""

import json
from functools import lru_cache

import pytest
import torch
from PIL import Image, ImageDraw

from uivlm_helpers.core.actions import ParseFailure
from uivlm_helpers.families import ADAPTERS, FAMILIES, IGNORE_INDEX, NORM1000_SQUARE, get_adapter
from uivlm_helpers.models.tiny import TINY_MODELS, tiny_checkpoint
from uivlm_helpers.models.wrapper import AGENT_FILE, VLMWrapper, quantization_config

FAMILY_MODELS = sorted(TINY_MODELS, key=lambda name: list(ADAPTERS).index(TINY_MODELS[name]))

# Where each family keeps its language model (everything else is vision tower or projector).
LANGUAGE_PARTS = ("language_model", "text_model", "lm_head")


def _scaled(record, size):
    """A synthetic screen resized to ``size`` (width, height), its action and box scaled with it."""
    width, height = record["image_size"]
    sx, sy = size[0] / width, size[1] / height
    image = Image.open(record["image"]).convert("RGB").resize(size)
    x0, y0, x1, y1 = record["bbox"]
    action = {**record["action"], "x": record["action"]["x"] * sx, "y": record["action"]["y"] * sy}
    return {"image": image, "instruction": record["instruction"], "action": action,
            "bbox": [x0 * sx, y0 * sy, x1 * sx, y1 * sy], "image_size": list(size)}


@pytest.fixture(scope="module")
def shots(screens):
    """Three screens of different shapes (square, wide, tall): image-token counts and padding differ."""
    return [_scaled(screens[0], (224, 224)), _scaled(screens[1], (256, 144)), _scaled(screens[2], (140, 210))]


@lru_cache(maxsize=None)
def _base(name):
    """One read-only base agent per family (tests that change weights load their own)."""
    return VLMWrapper(name, max_new_tokens=8)


def _inside(point, box, tolerance=0.0):
    x, y = point
    return box[0] - tolerance <= x <= box[2] + tolerance and box[1] - tolerance <= y <= box[3] + tolerance


# --- the checkpoints -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_tiny_checkpoint_is_the_real_architecture(name):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family = TINY_MODELS[name]
    path = tiny_checkpoint(name)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == family and (path / "model.safetensors").is_file()
    # The classes the family's published checkpoints load as, as its plug-in names them.
    plugin = FAMILIES[family]
    assert json.loads((path / "tokenizer_config.json").read_text())["tokenizer_class"] == plugin.tokenizer_class
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path)
    assert type(model).__name__ == plugin.model_class and type(processor).__name__ == plugin.processor_class
    text = model.config.get_text_config()
    assert text.hidden_size >= 128  # bitsandbytes' 4-bit kernels failed on narrower layers
    assert sum(p.numel() for p in model.parameters()) < 3_000_000
    assert len(processor.tokenizer) <= text.vocab_size
    # built once: asking again returns the same folder without rebuilding
    before = (path / "model.safetensors").stat().st_mtime_ns
    assert tiny_checkpoint(name) == path and (path / "model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("name, token_format, count, special", [
    ("uivlm/tiny-paligemma", "<loc{:04d}>", 1024, False),
    ("uivlm/tiny-florence2", "<loc_{}>", 1000, True),
])
def test_location_tokens_are_single_tokens_and_survive_decoding(name, token_format, count, special):
    agent = _base(name)
    tokenizer = agent.processor.tokenizer
    tokens = [token_format.format(i) for i in range(count)]
    ids = tokenizer.convert_tokens_to_ids(tokens)
    assert len(set(ids)) == count and tokenizer.unk_token_id not in ids
    assert (ids[0] in tokenizer.all_special_ids) == special  # Florence-2 marks them special...
    answer = "click(" + tokens[512] + tokens[256] + ")"
    # ...so skip_special_tokens=True would erase them; the wrapper's decoding keeps them.
    encoded = tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(encoded).count(tokens[512]) == 1
    assert (tokens[512] in tokenizer.decode(encoded, skip_special_tokens=True)) != special


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_decoding_keeps_the_answer_and_drops_eos_pad_and_chat_tokens(name, shots):
    agent = _base(name)
    tokenizer = agent.processor.tokenizer
    target = agent.render_target(shots[1]["action"], tuple(shots[1]["image_size"]))
    answer = tokenizer(target, add_special_tokens=False)["input_ids"]
    eos = agent.model.generation_config.eos_token_id
    stop = eos if isinstance(eos, int) else eos[0]
    start = [agent.model.generation_config.decoder_start_token_id, tokenizer.bos_token_id] \
        if agent.adapter.is_encoder_decoder else []
    row = start + answer + [stop] + answer + [tokenizer.pad_token_id] * 3
    assert agent.adapter.decode(tokenizer, [row], [stop]) == [target]


# --- training inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_forward_returns_a_loss(name, shots):
    agent = _base(name)
    with torch.no_grad():
        out = agent.forward([s["image"] for s in shots[:2]], [s["instruction"] for s in shots[:2]],
                            [s["action"] for s in shots[:2]])
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"]) and out["loss"] > 0


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_only_answer_tokens_carry_labels(name, shots):
    agent = _base(name)
    tokenizer = agent.processor.tokenizer
    targets = [agent.render_target(s["action"], tuple(s["image_size"])) for s in shots[:2]]
    batch = agent.encode([s["image"] for s in shots[:2]], [s["instruction"] for s in shots[:2]], targets)
    image_token = agent.processor.image_token_id if hasattr(agent.processor, "image_token_id") \
        else agent.model.config.image_token_id
    for row, target in enumerate(targets):
        labelled = batch["labels"][row] != IGNORE_INDEX
        answer = batch["labels"][row][labelled]
        if agent.adapter.is_encoder_decoder:
            # Florence-2: the encoder gets image + prompt, the decoder's labels are exactly the answer.
            assert tokenizer.decode(answer, skip_special_tokens=False) == f"<s>{target}</s>"
            assert image_token not in answer.tolist()
            continue
        decoded = tokenizer.decode(batch["input_ids"][row][labelled], skip_special_tokens=False).strip()
        assert decoded == target + agent.adapter.answer_suffix
        positions = labelled.nonzero().flatten()
        assert (positions.diff() == 1).all()  # one contiguous span: the answer at the end
        assert not (labelled & (batch["input_ids"][row] == image_token)).any()
        assert not (labelled & (batch["attention_mask"][row] == 0)).any()
        if "token_type_ids" in batch:  # PaliGemma: the processor's suffix mask is the label mask
            assert torch.equal(labelled, batch["token_type_ids"][row].bool())
    if TINY_MODELS[name].startswith("qwen"):
        assert "mm_token_type_ids" in batch  # transformers >= 5.3 Qwen needs it in the forward


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_an_over_long_sequence_is_an_error_naming_the_record_never_truncated(name, shots):
    agent = _base(name)
    with pytest.raises(ValueError, match="record screen-7: .* exceed max_length=10"):
        agent.encode([shots[0]["image"]], [shots[0]["instruction"]], ["wait(1)"], max_length=10,
                     record_ids=["screen-7"])


# --- coordinates -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_targets_round_trip_through_the_family_space(name, shots):
    agent = _base(name)
    for shot in shots:
        size = tuple(shot["image_size"])
        space = agent.space_for(size)
        # The plug-in's space; LLaVA's is the same grid over the padded square (tested below).
        assert space.name in (FAMILIES[agent.family].adapter.coordinate_space, "norm1000_square")
        assert (space.name == "norm1000_square") == (agent.family == "llava")
        target = agent.render_target(shot["action"], size)
        prediction = agent.decode_prediction(target, size)
        assert prediction.action is not None and not prediction.clamped
        assert _inside(prediction.point, shot["bbox"])


def test_qwen2_5_vl_speaks_pixels_of_the_image_the_processor_made(shots):
    agent = _base("uivlm/tiny-qwen2.5-vl")
    for shot in shots:
        grid = agent.processor.image_processor(shot["image"], return_tensors="pt")["image_grid_thw"][0]
        patch = agent.processor.image_processor.patch_size
        assert agent.space_for(shot["image"].size).grid == (int(grid[2]) * patch, int(grid[1]) * patch)
    # the space follows the pixel budget
    small = VLMWrapper("uivlm/tiny-qwen2.5-vl", max_pixels=112 * 112)
    assert small.pixel_budget["max_pixels"] == 112 * 112
    assert small.space_for((224, 224)).grid == (112, 112)


def test_llava_pads_to_a_square_instead_of_cropping_and_maps_corners():
    agent = _base("uivlm/tiny-llava")
    assert agent.processor.image_processor.do_pad
    size = (300, 100)
    # a red stripe on the left edge survives preprocessing (a centre crop would cut it off)
    image = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(image).rectangle([0, 0, 9, 99], fill=(255, 0, 0))
    pixels = agent.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]
    middle = pixels.shape[1] // 2
    red, green = pixels[0, middle, 1], pixels[1, middle, 1]
    assert red > 1.5 and green < -1.0
    # corner targets: encoded inside 0..999, decoded back inside the corner box
    for corner, box in [((1, 1), (0, 0, 4, 4)), ((299, 99), (296, 96, 300, 100))]:
        target = agent.render_target({"type": "click", "x": corner[0], "y": corner[1]}, size)
        x, y = (int(v) for v in target[len("click("):-1].split(","))
        assert 0 <= x <= 999 and 0 <= y <= 999
        prediction = agent.decode_prediction(target, size)
        assert _inside(prediction.point, box) and not prediction.clamped
    # a point in the padding above the screenshot is clamped onto it and flagged
    prediction = agent.decode_prediction("click(500, 10)", size)
    assert prediction.clamped and prediction.point[1] == 0
    assert NORM1000_SQUARE.to_model(150, 50, size) == (500, 500)


# --- LoRA, freezing ----------------------------------------------------------------------------------

def _vision_names(model):
    return {n for n, _ in model.named_parameters() if not any(part in n for part in LANGUAGE_PARTS)}


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_freeze_vision_encoder_leaves_no_vision_parameter_trainable(name):
    agent = VLMWrapper(name)
    vision = _vision_names(agent.model)
    assert vision and set(agent.adapter.vision_parameter_names(agent.model)) == vision
    assert agent.freeze_vision_encoder() == len(vision)
    assert not any(p.requires_grad for n, p in agent.model.named_parameters() if n in vision)
    counts = agent.get_trainable_parameters()
    assert 0 < counts["trainable"] < counts["total"]


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_lora_step_changes_only_adapter_weights(name, shots):
    agent = VLMWrapper(name, use_lora=True, lora_config={"r": 4})
    agent.freeze_vision_encoder()
    before = {n: p.detach().clone() for n, p in agent.model.named_parameters()}
    trainable = {n for n, p in agent.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert not trainable & _vision_names(agent.model)  # LoRA sits in the language model only
    optimizer = torch.optim.AdamW([p for p in agent.model.parameters() if p.requires_grad], lr=1e-2)
    loss = agent.forward([s["image"] for s in shots[:2]], [s["instruction"] for s in shots[:2]],
                         [s["action"] for s in shots[:2]])["loss"]
    loss.backward()
    optimizer.step()
    changed = {n for n, p in agent.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


# --- prediction, save/load, merge ------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_predict_action_batched_maps_back_to_screenshot_pixels(name, shots):
    agent = _base(name)
    results = agent.predict_action([s["image"] for s in shots], [s["instruction"] for s in shots])
    assert len(results) == len(shots)
    for result, shot in zip(results, shots):
        assert isinstance(result, (dict, ParseFailure))
        if isinstance(result, dict) and "x" in result:
            width, height = shot["image_size"]
            assert 0 <= result["x"] <= width and 0 <= result["y"] <= height
    # left padding: a row answers the same alone as in the batch
    assert agent.predict_action(shots[1]["image"], shots[1]["instruction"]) == results[1]


def _logits(agent, images, prompts, targets):
    with torch.no_grad():
        return agent.forward(images, prompts, targets)["logits"]


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_save_load_and_merge_reproduce_predictions(name, shots, tmp_path):
    images, prompts = [s["image"] for s in shots[1:]], [s["instruction"] for s in shots[1:]]
    actions = [s["action"] for s in shots[1:]]
    agent = VLMWrapper(name, use_lora=True, lora_config={"r": 4}, max_new_tokens=8)
    optimizer = torch.optim.AdamW([p for p in agent.model.parameters() if p.requires_grad], lr=5e-2)
    for _ in range(2):
        agent.forward(images, prompts, actions)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    agent.model.eval()
    expected_text = agent.generate_text(images, prompts)
    expected = _logits(agent, images, prompts, actions)
    assert not torch.allclose(expected, _logits(_base(name), images, prompts, actions)), "training changed nothing"

    saved = agent.save_pretrained(tmp_path / "adapter")
    assert (saved / "adapter_model.safetensors").is_file() and (saved / AGENT_FILE).is_file()
    reloaded = VLMWrapper.load_pretrained(saved)
    assert reloaded.has_adapter and reloaded.family == agent.family
    assert reloaded.generate_text(images, prompts) == expected_text
    torch.testing.assert_close(_logits(reloaded, images, prompts, actions), expected, atol=1e-4, rtol=1e-4)

    reloaded.merge_lora()
    assert not reloaded.has_adapter
    assert reloaded.generate_text(images, prompts) == expected_text
    # W + BA folded into one matrix rounds differently from W x + B(A x): float32 noise only.
    torch.testing.assert_close(_logits(reloaded, images, prompts, actions), expected, atol=2e-3, rtol=2e-3)


# --- quantization (bitsandbytes on CPU) ------------------------------------------------------------

def test_quantization_config_is_qlora_nf4_with_the_compute_dtype_asked_for():
    config = quantization_config(load_in_4bit=True, compute_dtype=torch.bfloat16, skip_modules=("visual.",))
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(load_in_4bit=True, compute_dtype="float16").bnb_4bit_compute_dtype == torch.float16
    assert quantization_config(load_in_8bit=True).load_in_8bit
    assert quantization_config() is None
    with pytest.raises(ValueError, match="choose at most one"):
        quantization_config(load_in_8bit=True, load_in_4bit=True)


def test_qlora_4bit_forward_backward_on_cpu(shots):
    import bitsandbytes as bnb

    agent = VLMWrapper("uivlm/tiny-qwen2-vl", load_in_4bit=True, use_lora=True, lora_config={"r": 4})
    received = agent.model.config.quantization_config
    assert received.load_in_4bit and received.bnb_4bit_quant_type == "nf4" and received.bnb_4bit_use_double_quant
    assert received.bnb_4bit_compute_dtype == torch.float32  # what the wrapper asked for (float32 on CPU)
    quantized = [n for n, m in agent.model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all("language_model" in n for n in quantized)  # the vision tower stays as it was
    loss = agent.forward([shots[0]["image"]], [shots[0]["instruction"]], [shots[0]["action"]])["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for n, p in agent.model.named_parameters() if p.requires_grad and "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_8bit_loads_and_runs_on_cpu(shots):
    import bitsandbytes as bnb

    agent = VLMWrapper("uivlm/tiny-qwen2-vl", load_in_8bit=True)
    assert agent.model.config.quantization_config.load_in_8bit
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in agent.model.modules())
    with torch.no_grad():
        loss = agent.forward([shots[0]["image"]], [shots[0]["instruction"]], [shots[0]["action"]])["loss"]
    assert torch.isfinite(loss)


# --- devices, dtypes, errors -----------------------------------------------------------------------

def test_device_auto_and_dtype_strings(monkeypatch):
    from transformers import AutoModelForImageTextToText

    seen = {}
    load = AutoModelForImageTextToText.from_pretrained

    def recording(*args, **kwargs):
        seen.update(kwargs)
        return load(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", recording)
    agent = VLMWrapper("uivlm/tiny-llava", device="auto", torch_dtype="bfloat16")
    assert seen["device_map"] == "auto" and seen["dtype"] == torch.bfloat16
    assert agent.model.dtype == torch.bfloat16 and agent.model.device.type == "cpu"  # no GPU here


def test_unknown_models_and_missing_files_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="supported families"):
        VLMWrapper("someone/mystery-model")
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')  # a folder without the rest
    with pytest.raises(ValueError, match=r"cannot load model .*uivlm/tiny-qwen2-vl.*supported families"):
        VLMWrapper(str(tmp_path))
    with pytest.raises(ValueError, match="pixel budget"):
        VLMWrapper("uivlm/tiny-llava", max_pixels=100_000)
    assert get_adapter("llava-hf/llava-1.5-7b-hf").name == "llava"


@pytest.mark.parametrize("name", FAMILY_MODELS)
def test_lora_reaches_every_linear_layer_of_an_unfrozen_tower(name, shots):
    from peft.tuners.lora import LoraLayer

    from uivlm_helpers.core.config import load_config

    def config(freeze):
        return load_config({"model": {"name": name, "use_lora": True, "freeze_vision_encoder": freeze,
                                      "lora_config": {"r": 2}}})

    agent = VLMWrapper.from_config(config(False))
    prefixes = agent.adapter.vision_module_prefixes
    modules = dict(agent.model.named_modules())
    in_vision = [n for n in modules if any(p in n + "." for p in prefixes)]
    adapted = [n for n in in_vision if isinstance(modules[n], LoraLayer)]
    # Every linear layer of the tower and projector has an adapter, and only linear layers (no convolution).
    bare = [n for n in in_vision if type(modules[n]) is torch.nn.Linear
            and not n.endswith("base_layer") and ".lora_" not in n]
    assert adapted and not bare, f"linear layers without LoRA: {bare[:5]}"
    assert all(type(modules[n].base_layer) is torch.nn.Linear for n in adapted)
    parts = agent.trained_parts()["parts"]
    for part in ("vision_tower", "projector", "language_model"):
        assert parts[part]["lora"] > 0 and parts[part]["full"] == 0, part
    # The adapters on the tower get gradients: the tower really trains.
    agent.forward([s["image"] for s in shots[:2]], [s["instruction"] for s in shots[:2]],
                  [s["action"] for s in shots[:2]])["loss"].backward()
    tower_grads = [p.grad for n, p in agent.model.named_parameters()
                   if "lora_B" in n and agent.adapter.part_of(n) == "vision_tower"]
    assert tower_grads and any(g is not None and g.abs().sum() > 0 for g in tower_grads)

    frozen = VLMWrapper.from_config(config(True)).trained_parts()["parts"]
    assert frozen["vision_tower"]["trainable"] == frozen["projector"]["trainable"] == 0
    assert frozen["language_model"]["lora"] == parts["language_model"]["lora"]
