"""The family registry.

:data:`FAMILY_MODULES` lists the family modules; adding a family is one new module (its ``FAMILY``
plug-in, see :mod:`.plugin`) and one entry here. Everything else - the adapters by name, the embedded tiny
models, the published specs, the model picker - is derived from these plug-ins.

:func:`family_name_for` names the family of a model (from an embedded tiny name, a folder's
``config.json`` ``model_type``, or Hub-name patterns, longest first) without downloading anything;
:func:`uivlm_helpers.models.resolve.resolve_model` (one layer up, where the tiny builder and the shipped
models live) turns a name into the folder to load.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from .adapters import ChatTemplateAdapter
from .plugin import FamilyPlugin

#: The registered family modules (``uivlm_helpers.families.<name>``), in the model picker's order; a new
#: family adds its line here.
FAMILY_MODULES = tuple(importlib.import_module(f"{__package__}.{name}") for name in (
    "qwen2_vl",
    "qwen2_5_vl",
    "llava",
    "idefics2",
    "florence2",
    "paligemma",
    "qwen3_vl",
    "qwen3_5",
))

#: Family name -> plug-in.
FAMILIES: dict[str, FamilyPlugin] = {module.FAMILY.name: module.FAMILY for module in FAMILY_MODULES}

#: Family name -> adapter.
ADAPTERS: dict[str, ChatTemplateAdapter] = {name: plugin.adapter for name, plugin in FAMILIES.items()}

#: Recognised families and the Hub-name patterns / config ``model_type`` values that identify them.
KNOWN_FAMILIES = {name: {"names": list(plugin.name_patterns), "model_types": list(plugin.model_types)}
                  for name, plugin in FAMILIES.items()}

#: Public names of the embedded tiny models, by family.
TINY_MODELS = {model: name for name, plugin in FAMILIES.items() for model in plugin.tiny_models}


def get_family(name: str) -> FamilyPlugin:
    """The plug-in of a family name (``"qwen2_vl"``).

    Raises:
        ValueError: no such family (the message lists the registered ones).
    """
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; registered families: {list(FAMILIES)}")
    return FAMILIES[name]


def tiny_recipe(model_name: str) -> dict:
    """The recipe of an embedded tiny model (see :data:`TINY_MODELS`)."""
    if model_name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {model_name!r}; embedded tiny models: {sorted(TINY_MODELS)}")
    return FAMILIES[TINY_MODELS[model_name]].tiny_models[model_name]


def published_specs() -> dict[str, dict]:
    """``{Hub name: published spec}`` of every family, in registry order."""
    return {name: spec for plugin in FAMILIES.values() for name, spec in plugin.published.items()}


def family_name_for(model_name_or_path: str) -> str:
    """Name the family of a model from its tiny name, local ``config.json`` or Hub name.

    Raises:
        ValueError: the model is not of a supported family (the message lists them).
    """
    if model_name_or_path in TINY_MODELS:
        return TINY_MODELS[model_name_or_path]
    config_file = Path(model_name_or_path) / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type")
        for name, plugin in FAMILIES.items():
            if model_type in plugin.model_types:
                return name
        raise ValueError(f"{model_name_or_path}: config.json has model_type {model_type!r}, which is "
                         f"not a supported family; supported: {sorted(FAMILIES)}")
    lowered = model_name_or_path.lower()
    # Longest pattern first, so "qwen2.5-vl" is not taken for "qwen2-vl".
    patterns = sorted(((p, name) for name, plugin in FAMILIES.items() for p in plugin.name_patterns),
                      key=lambda pf: -len(pf[0]))
    for pattern, name in patterns:
        if re.search(pattern, lowered):
            return name
    raise ValueError(f"cannot tell the model family of {model_name_or_path!r}: it is not an embedded "
                     f"tiny model ({sorted(TINY_MODELS)}), not a local folder with config.json, and its "
                     f"name matches none of the supported families {sorted(FAMILIES)}")


def get_adapter(model_name_or_path: str) -> ChatTemplateAdapter:
    """The adapter for a model name or folder (see :func:`family_name_for`)."""
    return FAMILIES[family_name_for(model_name_or_path)].adapter
