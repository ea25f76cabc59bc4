"""The 01_setup pickers, driven headless: setting a widget's value changes the run configuration."""

import pytest

from uivlm_helpers.core.config import ConfigError, load_config
from uivlm_helpers.workbook.widgets import SetupWidgets, model_options


def test_pickers_start_from_the_configuration():
    config = load_config({"model": {"action_format": "json"}})
    picker = SetupWidgets(config)
    assert picker.model.value == config.model.name
    assert picker.action_format.value == "json"


def test_changing_a_picker_writes_the_configuration_and_notifies():
    config = load_config(None)
    seen = []
    picker = SetupWidgets(config, on_change=lambda c: seen.append(c.model.name))
    picker.model.value = "Qwen/Qwen2-VL-2B-Instruct"
    picker.action_format.value = "coordinates"
    assert config.model.name == "Qwen/Qwen2-VL-2B-Instruct"
    assert config.model.action_format == "coordinates"
    assert seen == ["Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-2B-Instruct"]


def test_model_picker_is_grouped_by_family_with_an_offline_tiny_entry():
    labels = [label for label, _ in model_options()]
    assert any("offline tiny" in label for label in labels)
    families = {label.split(" · ")[0] for label in labels}
    assert {"Qwen2-VL", "Qwen2.5-VL", "LLaVA-1.5", "Idefics2", "Florence-2", "PaliGemma"} <= families


def test_a_custom_model_name_stays_selectable():
    config = load_config({"model": {"name": "/models/my-local-qwen"}})
    picker = SetupWidgets(config)
    assert picker.model.value == "/models/my-local-qwen"


def test_configuration_rejects_what_the_widget_cannot_offer():
    with pytest.raises(ConfigError, match="model.action_format"):
        load_config(None).set("model.action_format", "xml")


# -- availability of a choice on this machine ---------------------------------------------------------
from uivlm_helpers.workbook import widgets  # noqa: E402


@pytest.fixture
def cpu_only_offline(monkeypatch):
    """A machine without CUDA, with HF_HUB_OFFLINE set and an empty Hugging Face cache."""
    monkeypatch.setattr(widgets, "_cuda_available", lambda: False)
    monkeypatch.setattr(widgets, "_hub_cached", lambda name: False)
    monkeypatch.setattr(widgets, "_hub_reachable", lambda timeout=2.0: pytest.fail("offline: no network probe"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_default_tiny_model_on_cpu_is_available(cpu_only_offline):
    assert widgets.availability_message(load_config(None)) is None


def test_every_offline_tiny_entry_is_available_offline(cpu_only_offline):
    tiny = [name for label, name in model_options() if "offline tiny" in label]
    assert len(tiny) == len(widgets.MODEL_CHOICES) + 1  # one per family, plus the shipped UI base
    assert "uivlm/tiny-qwen2-vl-ui" in tiny
    for name in tiny:
        assert widgets.availability_message(load_config({"model": {"name": name}})) is None, name


def test_a_hub_model_without_a_cached_copy_is_not_available_offline(cpu_only_offline):
    message = widgets.availability_message(load_config({"model": {"name": "Qwen/Qwen2-VL-2B-Instruct"}}))
    assert "Qwen/Qwen2-VL-2B-Instruct is not available here" in message and "HF_HUB_OFFLINE" in message
    assert "offline tiny" in message


def test_a_hub_model_without_network_is_not_available(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(widgets, "_cuda_available", lambda: False)
    monkeypatch.setattr(widgets, "_hub_cached", lambda name: False)
    monkeypatch.setattr(widgets, "_hub_reachable", lambda timeout=2.0: False)
    message = widgets.availability_message(load_config({"model": {"name": "llava-hf/llava-1.5-7b-hf"}}))
    assert "cannot be reached" in message
    monkeypatch.setattr(widgets, "_hub_reachable", lambda timeout=2.0: True)
    message = widgets.availability_message(load_config({"model": {"name": "llava-hf/llava-1.5-7b-hf"}}))
    assert "downloads it from the Hub" in message


def test_a_cached_hub_model_and_a_local_folder_are_available(cpu_only_offline, monkeypatch, tmp_path):
    monkeypatch.setattr(widgets, "_hub_cached", lambda name: name == "Qwen/Qwen2-VL-2B-Instruct")
    assert widgets.availability_message(load_config({"model": {"name": "Qwen/Qwen2-VL-2B-Instruct"}})) is None
    (tmp_path / "config.json").write_text("{}")
    assert widgets.availability_message(load_config({"model": {"name": str(tmp_path)}})) is None
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no config.json" in widgets.availability_message(load_config({"model": {"name": str(empty)}}))
    missing = widgets.availability_message(load_config({"model": {"name": str(tmp_path / "nope")}}))
    assert "no folder" in missing


@pytest.mark.parametrize("settings, expected", [
    ({"model": {"load_in_4bit": True}}, "4-bit loading"),
    ({"model": {"load_in_8bit": True}}, "8-bit loading"),
    ({"model": {"torch_dtype": "bfloat16"}}, "torch_dtype bfloat16"),
    ({"model": {"device": "cuda"}}, "no CUDA GPU"),
    ({"training": {"mixed_precision": "bf16"}}, "mixed precision bf16"),
])
def test_gpu_only_settings_without_cuda_say_so(cpu_only_offline, settings, expected):
    message = widgets.availability_message(load_config(settings))
    assert message is not None and expected in message


def test_quantization_with_cuda_needs_only_bitsandbytes(cpu_only_offline, monkeypatch):
    monkeypatch.setattr(widgets, "_cuda_available", lambda: True)
    monkeypatch.setattr(widgets, "_bitsandbytes_installed", lambda: False)
    config = load_config({"model": {"load_in_4bit": True, "torch_dtype": "bfloat16"}})
    assert widgets.availability_message(config) == "4-bit loading needs the bitsandbytes package: pip install bitsandbytes."
    monkeypatch.setattr(widgets, "_bitsandbytes_installed", lambda: True)
    assert widgets.availability_message(config) is None


def test_several_problems_are_listed_one_per_line(cpu_only_offline):
    config = load_config({"model": {"name": "google/paligemma-3b-pt-224", "load_in_4bit": True}})
    assert len(widgets.availability_message(config).splitlines()) == 2


def test_the_picker_shows_availability_when_the_choice_changes(cpu_only_offline):
    picker = SetupWidgets(load_config(None))
    assert picker.notice.value == ""
    picker.model.value = "Qwen/Qwen2-VL-2B-Instruct"
    assert "not available here" in picker.notice.value and "⚠" in picker.notice.value
    picker.model.value = "uivlm/tiny-qwen2.5-vl"
    assert picker.notice.value == ""


def test_the_picker_shows_a_problem_set_by_a_parameter_at_once(cpu_only_offline):
    picker = SetupWidgets(load_config({"model": {"load_in_4bit": True}}))
    assert "4-bit loading" in picker.notice.value


def test_the_picker_labels_say_what_they_are():
    picker = SetupWidgets(load_config(None))
    assert picker.model.description.startswith("Model")
    assert picker.action_format.description == "Action format"
    labels = dict((name, label) for label, name in model_options())
    assert labels["uivlm/tiny-qwen2-vl"].startswith("Qwen2-VL · offline tiny")
    assert all(any(ch.isdigit() for ch in label) for label in labels.values())  # each entry gives a size


def test_the_picker_saves_each_change_when_given_a_path(tmp_path):
    path = tmp_path / "config.yaml"
    picker = SetupWidgets(load_config(None), path=path)
    assert not path.exists()  # nothing changed yet
    picker.action_format.value = "json"
    assert load_config(path).model.action_format == "json"
