"""Family plug-ins: every registered family passes one contract; no module outside families/ keeps a
family rule; the memory estimate and training take the same fast-path decision."""

import ast
import re
from pathlib import Path

import pytest
import torch

from uivlm_helpers import families
from uivlm_helpers.core.config import load_config
from uivlm_helpers.core.coords import SPACE_NAMES
from uivlm_helpers.families import FAMILIES, FAMILY_MODULES, family_name_for
from uivlm_helpers.models import model_configs, tiny
from uivlm_helpers.models.resolve import resolve_model
from uivlm_helpers.training import memory
from uivlm_helpers.workbook import widgets

PACKAGE = Path(families.__file__).resolve().parents[1]


def test_registry_names_each_family_once_and_derives_the_package_tables():
    names = [module.FAMILY.name for module in FAMILY_MODULES]
    assert len(names) == len(set(names)) == len(FAMILIES) and list(FAMILIES) == names
    assert list(families.ADAPTERS) == names and list(families.KNOWN_FAMILIES) == names
    assert tiny.TINY_MODELS == {m: p.name for p in FAMILIES.values() for m in p.tiny_models}
    assert list(widgets.MODEL_CHOICES) == [p.display for p in FAMILIES.values()]
    assert set(model_configs.MODEL_NAMES) == {n for p in FAMILIES.values() for n in p.published}
    with pytest.raises(ValueError, match="unknown model family 'nope'.*qwen2_vl"):
        families.get_family("nope")


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_contract(name):
    """What every family plug-in must give: a loadable tiny model of its architecture, an adapter whose
    coordinate space, vision modules and LoRA targets exist in that model, picker entries and published
    specs of this family, and a config reader that reads its own tiny checkpoint."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    plugin = FAMILIES[name]
    adapter = plugin.adapter
    assert adapter.name == name and plugin.model_types[0] == name
    assert adapter.coordinate_space in SPACE_NAMES
    assert adapter.space_for((320, 200)).name

    # The tiny model: built (or reused) by tiny.py, loaded the way a Hub checkpoint is.
    assert plugin.tiny_models, f"{name} has no embedded tiny model"
    for model_name, recipe in plugin.tiny_models.items():
        assert recipe["family"] == name and family_name_for(model_name) == name
        resolved = resolve_model(model_name)
        assert resolved.family == name and Path(resolved.path).is_dir()
        model = AutoModelForImageTextToText.from_pretrained(resolved.path)
        AutoProcessor.from_pretrained(resolved.path)
        assert type(model).__name__ == plugin.model_class
        modules = [n for n, _ in model.named_modules()]
        parameters = [n for n, _ in model.named_parameters()]
        # The vision tower and projector the adapter names are there.
        assert adapter.vision_parameter_names(model)
        assert any(adapter.part_of(n) == "projector" for n in parameters)
        # Every LoRA target (language model, then tower) names at least one linear layer of the model.
        for target in adapter.lora_target_modules:
            assert any(n.endswith("." + target) and adapter.part_of(n) == "language_model" for n in modules), target
        for target in adapter.vision_lora_target_modules:
            assert any(n.endswith("." + target) and adapter.part_of(n) != "language_model" for n in modules), target
        vision_regex = re.compile(adapter.lora_target_regex(vision=True))
        assert any(vision_regex.match(n) and adapter.part_of(n) != "language_model" for n in modules)
        # Fast-path traits: M-RoPE families compute positions with get_rope_index; a cacheable family's
        # model exposes get_image_features and an image-token id.
        if plugin.rope_index:
            assert hasattr(model.model, "get_rope_index")
        if plugin.feature_cache:
            config = model.config
            assert hasattr(model, "get_image_features")
            assert isinstance(getattr(config, "image_token_id", getattr(config, "image_token_index", None)), int)
        else:
            assert plugin.feature_cache_reason
        # The config reader reads its own family's checkpoint.
        spec = model_configs.architecture_spec(model_name)
        assert spec["family"] == name and spec["params"]["total"] == sum(p.numel() for p in model.parameters())

    # Picker entries resolve to this family (by name; no download).
    assert plugin.picker
    for _label, model_name in plugin.picker:
        assert family_name_for(model_name) == name, model_name

    # Published specs: of this family, named to it, and building its model class on the meta device.
    assert plugin.published
    for hub_name, spec in plugin.published.items():
        assert spec["family"] == name and family_name_for(hub_name) == name and spec["sources"]
        assert resolve_model(hub_name).spec == spec and resolve_model(hub_name).path == hub_name
        config = model_configs.build_config(hub_name)
        with torch.device("meta"):
            full = model_configs.model_class_for(hub_name)(config)
        assert type(full).__name__ == plugin.model_class
        assert sum(p.numel() for p in full.parameters()) == model_configs.published_config(hub_name)["params"]["total"]


def _family_literals(path: Path) -> list[tuple[int, str]]:
    """String constants in a module that are a family's name (docstrings and comments are not rules)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if node.value in FAMILIES:
                found.append((node.lineno, node.value))
    return found


def test_no_module_outside_families_names_a_family():
    """Family rules live in the family's plug-in: elsewhere a family's name is never a string constant
    (``family == "florence2"``, ``("qwen2_vl", ...)``, a dict keyed by family)."""
    scanned = [path for path in sorted(PACKAGE.rglob("*.py")) if "families" not in path.relative_to(PACKAGE).parts]
    assert any(len(path.relative_to(PACKAGE).parts) > 1 for path in scanned)  # sub-packages are scanned too
    offenders = {str(path.relative_to(PACKAGE)): hits for path in scanned if (hits := _family_literals(path))}
    assert offenders == {}


def test_the_family_scan_finds_a_rule(tmp_path):
    rule = tmp_path / "rule.py"
    rule.write_text('"""Mentions florence2 in prose."""\n\ndef f(spec):\n    return spec["family"] != "florence2"\n')
    assert _family_literals(rule) == [(4, "florence2")]


# -- the fast path: one decision for training and for the estimate ------------------------------------------
def test_estimate_counts_the_vision_lora_and_leaves_the_cache_off_when_lora_trains_the_tower():
    """With LoRA and model.freeze_vision_encoder false the wrapper puts adapters on the tower's layers, so
    the tower trains: the estimate counts those adapters (exactly the loaded model's trainable parameters),
    records the tower's activations, and - like training's decide_cache - does not cache its features."""
    from uivlm_helpers.models.wrapper import VLMWrapper
    from uivlm_helpers.training.features import decide_cache

    def config(freeze):
        return load_config({"model": {"name": "uivlm/tiny-qwen2-vl", "use_lora": True,
                                      "freeze_vision_encoder": freeze},
                            "training": {"cache_vision_features": "auto"}})

    tower, frozen = config(False), config(True)
    estimate, frozen_estimate = memory.estimate_training_memory(tower), memory.estimate_training_memory(frozen)
    wrapper = VLMWrapper.from_config(tower)
    loaded = sum(p.numel() for p in wrapper.model.parameters() if p.requires_grad)
    assert estimate["trainable_params"] == loaded > frozen_estimate["trainable_params"]
    assert estimate["assumptions"]["vision_lora"] and not frozen_estimate["assumptions"]["vision_lora"]
    assert estimate["assumptions"]["cache_vision_features"] is decide_cache("auto", wrapper).enabled is False
    assert frozen_estimate["assumptions"]["cache_vision_features"] is True
    assert estimate["assumptions"]["vision_graph"] and not frozen_estimate["assumptions"]["vision_graph"]
    assert estimate["components"]["activations"] > frozen_estimate["components"]["activations"]
    assert estimate["components"]["lora"] > frozen_estimate["components"]["lora"]


def test_estimate_and_training_agree_on_the_cache_for_a_stochastic_tower():
    """Florence-2's published DaViT trains with stochastic depth (drop_path_rate 0.1): not cacheable, from
    the spec as on the loaded model; the tiny Florence-2 has none, so its features are cached."""
    from uivlm_helpers.models.wrapper import VLMWrapper
    from uivlm_helpers.training.features import decide_cache

    def estimate(name):
        return memory.estimate_training_memory(load_config({"model": {"name": name},
                                                            "training": {"cache_vision_features": "auto"}}))

    assert estimate("microsoft/Florence-2-large")["assumptions"]["cache_vision_features"] is False
    tiny_config = load_config({"model": {"name": "uivlm/tiny-florence2"}})
    wrapper = VLMWrapper.from_config(tiny_config)
    assert estimate("uivlm/tiny-florence2")["assumptions"]["cache_vision_features"] is \
        decide_cache("auto", wrapper).enabled is True
