"""The run configuration: the seed guide's YAML, overrides and clear errors."""

import re

import pytest

from uivlm_helpers.core.config import ConfigError, RunConfig, load_config, validate
from uivlm_helpers.core.prompts import user_text

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
task_prompt: "Given the screenshot, perform the following task: {task_description}"
few_shot_prompt: |
  Here are examples of UI actions:
  Task: Click the login button -> click(540, 1200)
  Task: Type the username -> type("alice")
  Now, given the screenshot, perform the following task: {task_description}
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
    assert config.task_prompt == "Given the screenshot, perform the following task: {task_description}"
    assert config.few_shot_prompt.startswith("Here are examples of UI actions:\n")
    assert config.few_shot_prompt.endswith("perform the following task: {task_description}\n")


@pytest.mark.parametrize("task_prompt", ["Do this: {instruction}", "Do this: {task_description}"])
def test_both_instruction_placeholders_put_the_instruction_in_the_user_text(task_prompt):
    config = load_config({"task_prompt": task_prompt})
    assert user_text(config.task_prompt, "Click the OK button", "text", "norm1000") == "Do this: Click the OK button"


def test_seed_few_shot_prompt_is_the_template_when_examples_are_shown(tmp_path):
    path = tmp_path / "seed.yaml"
    path.write_text(SEED_YAML)
    config = load_config(path)
    examples = [("Click the red button", "click(100, 200)")]
    few_shot = user_text(config.task_prompt, "Click OK", "text", "norm1000", examples, config.few_shot_prompt)
    assert few_shot.startswith("Examples of instructions and answers:\nInstruction: Click the red button\n"
                               "Answer: click(100, 200)\n\nHere are examples of UI actions:\n")
    assert few_shot.endswith('Type the username -> type("alice")\n'
                             "Now, given the screenshot, perform the following task: Click OK\n")
    # zero-shot (no examples) keeps the task prompt
    assert (user_text(config.task_prompt, "Click OK", "text", "norm1000", None, config.few_shot_prompt)
            == "Given the screenshot, perform the following task: Click OK")


def test_wrapper_from_the_seed_config_prompts_with_the_few_shot_prompt(tmp_path):
    from uivlm_helpers.models.wrapper import VLMWrapper

    path = tmp_path / "seed.yaml"
    path.write_text(SEED_YAML)
    config = load_config(path)
    # the seed's Qwen2-VL-2B is not available offline; the embedded tiny Qwen2-VL (a bare base, which
    # unlike a saved agent brings no prompt of its own) reads the same chat template
    config.set_many({"model.name": "uivlm/tiny-qwen2-vl", "model.device": "cpu", "model.torch_dtype": "float32"})
    agent = VLMWrapper.from_config(config, with_lora=False)
    few_shot = agent.prompt_text("Click OK", [("Click the red button", "click(100, 200)")])
    assert "Here are examples of UI actions:" in few_shot
    assert "Now, given the screenshot, perform the following task: Click OK" in few_shot
    zero_shot = agent.prompt_text("Click OK")
    assert "Here are examples" not in zero_shot
    assert "Given the screenshot, perform the following task: Click OK" in zero_shot


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
    ({"model": {"max_new_tokens": 0}}, "model.max_new_tokens: expected 1 or more tokens, got 0"),
    ({"model": {"load_in_8bit": True, "load_in_4bit": True}}, "choose at most one"),
    ({"task_prompt": "no placeholder"}, "task_prompt: must contain '{instruction}'"),
    ({"few_shot_prompt": "Examples: click(1, 2)"}, "few_shot_prompt: must contain '{instruction}' (or the "
                                                    "seed guide's '{task_description}')"),
    # unknown placeholders fail when the configuration loads, not with a KeyError at the first prompt
    ({"task_prompt": "Do {task}"}, "task_prompt: unknown placeholder {task}; allowed placeholders: "
                                   "{instruction}, {task_description}, {format_hint}, {coordinate_hint}"),
    ({"few_shot_prompt": "Task: Login -> click(1, 2)\nTask: {task}"},
     "few_shot_prompt: unknown placeholder {task}; allowed placeholders: {instruction}, {task_description}"),
    ({"task_prompt": '{instruction} as {"type": "click"}'}, 'task_prompt: unknown placeholder {"type"}'),
    ({"task_prompt": "{instruction} then {"}, "task_prompt: Single '{' encountered in format string; "
                                               "write literal braces as {{ and }}"),
    ({"task_prompt": "{instruction:%}"}, "task_prompt: cannot be filled in (ValueError"),
    ({"algorithm": {"learning_rate": -1}}, "algorithm.learning_rate: expected more than 0, got -1.0"),
    ({"algorithm": {"learning_rate": float("nan")}}, "algorithm.learning_rate: expected a finite number, got nan"),
    ({"algorithm": {"learning_rate": "nan"}}, "algorithm.learning_rate: expected a finite number, got 'nan'"),
    ({"algorithm": {"learning_rate": float("inf")}}, "algorithm.learning_rate: expected a finite number, got inf"),
    ({"algorithm": {"learning_rate": "-inf"}}, "algorithm.learning_rate: expected a finite number, got '-inf'"),
    ({"algorithm": {"weight_decay": -0.1}}, "algorithm.weight_decay: expected 0 or more, got -0.1"),
    ({"training": {"max_steps": "1e400"}}, "training.max_steps: expected a finite number, got '1e400'"),
    ({"training": {"max_steps": 10 ** 30}},
     "training.max_steps: expected a whole number between -2**63 and 2**63, got 1000000000000000000000000000000"),
    ({"training": {"num_epochs": 10 ** 400}}, "training.num_epochs: expected a finite number, got 1000000000"),
    ({"training": {"max_steps": -5}}, "training.max_steps: expected 0 or more steps (0: train for "
                                      "training.num_epochs), got -5"),
    ({"training": {"num_epochs": -1}}, "training.num_epochs: expected more than 0 epochs, got -1.0"),
    ({"training": {"warmup_steps": -1}}, "training.warmup_steps: expected 0 or more steps, got -1"),
    ({"training": {"logging_steps": 0}}, "training.logging_steps: expected 1 or more steps, got 0"),
    ({"training": {"max_length": 0}}, "training.max_length: expected 1 or more tokens, or null for no limit, got 0"),
    ({"training": {"seed": -1}}, "training.seed: expected a whole number from 0 to 4294967295, got -1"),
    ({"data": {"seed": 2 ** 32}}, "data.seed: expected a whole number from 0 to 4294967295, got 4294967296"),
    ({"training": {"seed": "123456789012345678901234"}},
     "training.seed: expected a whole number between -2**63 and 2**63, got '123456789012345678901234'"),
    ({"data": {"train_size": -1}}, "data.train_size: expected 1 or more records, got -1"),
    ({"data": {"eval_size": 0}}, "data.eval_size: expected 1 or more records, got 0"),
    ({"data": {"image_width": 0}}, "data.image_width: expected 160 or more pixels (generated screens need "
                                   "room for readable labels), got 0"),
    ({"data": {"image_height": 100}}, "data.image_height: expected 160 or more pixels"),
    ({"model": {"lora_config": {"lora_alpha": -16}}},
     "model.lora_config.lora_alpha: expected 1 or more (the update is scaled by lora_alpha / r), got -16"),
    ({"model": {"lora_config": {"r": 0}}}, "model.lora_config.r: expected a rank of 1 or more, got 0"),
    ({"model": {"lora_config": {"lora_dropout": 1.0}}},
     "model.lora_config.lora_dropout: expected a probability with 0 <= value < 1, got 1.0"),
    ({"model": {"max_pixels": -1}}, "model.max_pixels: expected 1 or more pixels, or null for the checkpoint's "
                                    "budget, got -1"),
    ({"model": {"min_pixels": 1000, "max_pixels": 500}},
     "model.min_pixels=1000 and model.max_pixels=500: expected min_pixels <= max_pixels"),
    ({"model": {"temperature": -0.5}}, "model.temperature: expected 0 or more, got -0.5"),
    ({"model": {"temperature": 0, "do_sample": True}}, "model.temperature: expected more than 0 with "
                                                      "model.do_sample=true"),
    ({"model": {"device": "gpu"}}, "model.device: expected 'cpu', 'cuda', 'cuda:N' (a GPU index such as "
                                   "cuda:1) or 'auto', got 'gpu'"),
    ({"model": {"device": "cuda:x"}}, "model.device: expected 'cpu', 'cuda', 'cuda:N'"),
    ({"evaluation": {"split": "bogus"}}, "evaluation.split: expected one of ['train', 'test'], got 'bogus'"),
    ({"evaluation": {"max_samples": 0}},
     "evaluation.max_samples: expected 1 or more records, or null for the whole split, got 0"),
    ({"evaluation": {"batch_size": 0}}, "evaluation.batch_size: expected 1 or more, got 0"),
    ({"evaluation": {"gallery_size": -1}}, "evaluation.gallery_size: expected 0 or more screenshots, got -1"),
    ({"few_shot": -2}, "few_shot: expected 0 or more examples (0: zero-shot), got -2"),
    ({"share": {"repo_id": "my agent"}}, "share.repo_id: expected a Hub repository id 'namespace/name' "
                                          "(letters, digits, '-', '_', '.'), got 'my agent'"),
    ({"share": {"repo_id": "ui-agent"}}, "share.repo_id: expected a Hub repository id 'namespace/name'"),
    ({"share": {"repo_id": "alice/ui/agent"}}, "share.repo_id: expected a Hub repository id 'namespace/name' "
                                                "(letters, digits, '-', '_', '.'), got 'alice/ui/agent'"),
    ({"share": {"repo_id": "alice/ui--agent"}}, "share.repo_id: expected a Hub repository id 'namespace/name' "
                                                 "(letters, digits, '-', '_', '.'), got 'alice/ui--agent' ("),
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


def test_edge_values_that_are_allowed_load():
    config = load_config({
        "model": {"device": "cuda:1", "temperature": 0, "min_pixels": 3136, "max_pixels": 3136},
        "training": {"max_steps": 0, "warmup_steps": 0, "seed": 2 ** 32 - 1, "max_length": None},
        "algorithm": {"weight_decay": 0, "learning_rate": "1e-4"},
        "data": {"image_width": 160, "image_height": 160, "train_size": 1, "eval_size": 1},
        "evaluation": {"split": "train", "max_samples": None, "gallery_size": 0},
        "share": {"repo_id": "alice/ui-agent.v2"}, "few_shot": 0,
    })
    assert (config.model.device, config.training.max_steps, config.share.repo_id) == ("cuda:1", 0, "alice/ui-agent.v2")
    for device in ("cpu", "cuda", "auto"):
        assert load_config({"model": {"device": device}}).model.device == device


def test_values_set_as_attributes_are_checked_too():
    """Code that fills a RunConfig directly (the benches) gets the same checks from validate."""
    config = RunConfig()
    config.algorithm.learning_rate = float("nan")
    with pytest.raises(ConfigError, match=re.escape("algorithm.learning_rate: expected more than 0, got nan")):
        validate(config)
    config = RunConfig()
    config.training.max_steps = float("inf")
    with pytest.raises(ConfigError, match=re.escape("training.max_steps: expected 0 or more steps")):
        validate(config)


def test_a_failed_set_names_the_key_and_changes_nothing():
    config = load_config(None)
    with pytest.raises(ConfigError, match=re.escape("training.max_steps: expected a finite number, got '1e400'")):
        config.set("training.max_steps", "1e400")
    with pytest.raises(ConfigError, match=re.escape("share.repo_id: expected a Hub repository id")):
        config.set("share.repo_id", "not a repo id")
    assert config == load_config(None)


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
