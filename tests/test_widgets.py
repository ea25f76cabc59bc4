"""The 01_setup pickers, driven headless: setting a widget's value changes the run configuration."""

import pytest

from uivlm_helpers.config import ConfigError, load_config
from uivlm_helpers.widgets import SetupWidgets, model_options


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
