"""The run configuration: the seed guide's YAML, overrides and clear errors."""

import re

import pytest

from uivlm_helpers.config import ConfigError, RunConfig, load_config

SEED_YAML = """
model:
  name: "Qwen/Qwen2-VL-2B-Instruct"
  torch_dtype: "bfloat16"
  device: "auto"
  use_lora: true
  lora_config:
    r: 16
    lora_alpha: 32
    target_modules: ["q_proj", "v_proj"]
    lora_dropout: 0.05
    bias: "none"
  max_new_tokens: 128
  temperature: 0.1
  do_sample: false
  freeze_vision_encoder: true
  action_format: "text"
training:
  batch_size: 4
  gradient_accumulation_steps: 4
  checkpoint_interval: 100
algorithm:
  learning_rate: 1e-5
task_prompt: "Given the screenshot, perform: {instruction}"
"""


def test_seed_yaml_loads_unchanged(tmp_path):
    path = tmp_path / "seed.yaml"
    path.write_text(SEED_YAML)
    config = load_config(path)
    assert config.model.name == "Qwen/Qwen2-VL-2B-Instruct"
    assert config.model.lora_config.target_modules == ["q_proj", "v_proj"]
    assert config.model.temperature == 0.1
    # PyYAML reads 1e-5 as text; the configuration turns it into the number it means.
    assert config.algorithm.learning_rate == pytest.approx(1e-5)
    assert config.training.gradient_accumulation_steps == 4
    assert config.task_prompt.endswith("{instruction}")


def test_saved_config_round_trips(tmp_path):
    config = load_config(None)
    config.set("training.max_steps", 7)
    config.set("model.action_format", "json")
    again = load_config(config.save(tmp_path / "config.yaml"))
    assert again == config
    assert again.training.max_steps == 7 and again.model.action_format == "json"


@pytest.mark.parametrize("data, message", [
    ({"model": {"nmae": "x"}}, "unknown configuration key 'model.nmae'"),
    ({"training": {"batch_size": "four"}}, "training.batch_size: expected a number"),
    ({"training": {"batch_size": 2.5}}, "training.batch_size: expected a whole number"),
    ({"model": {"use_lora": "yes"}}, "model.use_lora: expected true or false"),
    ({"model": {"action_format": "xml"}}, "model.action_format: expected one of"),
    ({"model": {"load_in_8bit": True, "load_in_4bit": True}}, "choose at most one"),
    ({"task_prompt": "no placeholder"}, "task_prompt: must contain '{instruction}'"),
    ({"algorithm": {"learning_rate": -1}}, "algorithm.learning_rate"),
    ({"training": {"lr_scheduler": "cosin"}}, "training.lr_scheduler: expected one of ['linear', 'cosine'"),
    ({"training": {"dataloader_num_workers": -1}}, "training.dataloader_num_workers: expected 'auto' or 0 or more"),
    ({"training": {"dataloader_num_workers": "many"}}, "training.dataloader_num_workers: expected 'auto' or 0"),
    ({"training": {"gradient_checkpointing": True, "uncheckpointed_layers": -1}},
     "training.uncheckpointed_layers: expected 'auto' or 0 or more layers, got -1"),
    ({"training": {"gradient_checkpointing": True, "uncheckpointed_layers": "most"}},
     "training.uncheckpointed_layers: expected 'auto' or 0 or more layers, got 'most'"),
    ({"training": {"uncheckpointed_layers": "auto"}},
     "training.uncheckpointed_layers='auto' only applies with training.gradient_checkpointing=true"),
    ({"training": {"memory_budget_gib": 0}}, "training.memory_budget_gib: expected a positive number of GiB"),
    ({"training": {"uncheckpointed_layers": 4}},
     "training.uncheckpointed_layers=4 only applies with training.gradient_checkpointing=true"),
])
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(data)


def test_set_many_validates_dependent_settings_together_and_changes_nothing_on_error():
    config = load_config({"training": {"gradient_checkpointing": True, "uncheckpointed_layers": 4}})
    with pytest.raises(ConfigError, match="training.uncheckpointed_layers=4 only applies with"):
        config.set("training.gradient_checkpointing", False)
    assert config.training.gradient_checkpointing is True              # unchanged by the failed set
    config.set_many({"training.gradient_checkpointing": False, "training.uncheckpointed_layers": 0})
    assert (config.training.gradient_checkpointing, config.training.uncheckpointed_layers) == (False, 0)
    config.set_many({"training.gradient_checkpointing": True, "training.uncheckpointed_layers": "AUTO",
                     "training.memory_budget_gib": "40"})
    assert (config.training.uncheckpointed_layers, config.training.memory_budget_gib) == ("auto", 40.0)


def test_set_rejects_unknown_dotted_key():
    config = RunConfig()
    with pytest.raises(ConfigError, match="unknown configuration key 'training.max_step'"):
        config.set("training.max_step", 3)
    with pytest.raises(ConfigError, match="unknown configuration key 'trainig'"):
        config.set("trainig.max_steps", 3)
