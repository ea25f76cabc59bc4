"""Architecture facts of the full-size models the workbook offers, written down without any download.

The memory estimator and the GPU experiments need the real dimensions of Qwen2-VL, Qwen2.5-VL, LLaVA-1.5,
Idefics2, Florence-2 and PaliGemma, while a notebook must not fetch a multi-GB checkpoint just to say
whether it would fit. The values below are the published ``config.json`` / processor values; the
``sources`` entry of each model says where they were read, and ``unconfirmed`` lists what could not be
checked against a copy of the published file.

* :func:`published_config` - a plain dict: text and vision dimensions, the image-token rule, the
  parameter counts (total, vision tower + projector, linear weights that quantization replaces) and the
  shapes LoRA adapts. Needs no transformers import.
* :func:`build_config` - the real transformers config object, so a random-weight full-size model can be
  built on a GPU (``AutoModelForImageTextToText.from_config(build_config(name))``) or on the ``meta``
  device to count parameters (:func:`config_from_spec` does the same for any spec).
* :func:`architecture_spec` - the same plain dict for a published name, an embedded tiny model or a local
  checkpoint folder of one of these families (read from its ``config.json`` and processor settings by
  :func:`spec_from_hf_config`).
* :func:`image_token_count` - how many image tokens (and vision-tower patches) a screenshot becomes.

The published values, the ``config.json`` readers and the config builders are each family's (its plug-in
in ``uivlm_helpers/families/<family>.py``: ``published``, ``read_hf_config``, ``build_config``); this
module holds the machinery that looks them up.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from torch import nn
from transformers import AutoConfig
import torch
import transformers
from ..core.coords import smart_resize
from ..families.common import linear_attention_shapes, lm_shapes
from ..families.registry import FAMILIES, get_family, published_specs
from .resolve import local_folder

# -- published values ----------------------------------------------------------------------------
_PUBLISHED: dict[str, dict] = published_specs()

MODEL_NAMES: tuple[str, ...] = tuple(_PUBLISHED)

# Parameter counts of the published models whose family counts no formula (LLaVA, Idefics2, Florence-2,
# PaliGemma; each family's ``pinned_counts``): obtained by building build_config(name) on the meta device
# and summing (count_parameters_meta with transformers 5.24); tests/test_memory.py rebuilds and checks
# them. "vision" = vision tower + projector/connector (what a frozen vision encoder freezes); "*_linear" =
# nn.Linear weights (what 4/8-bit quantization replaces; the lm_head is never quantized).
_PINNED_COUNTS: dict[str, dict] = {name: counts for plugin in FAMILIES.values()
                                   for name, counts in plugin.pinned_counts.items()}


# -- image tokens ---------------------------------------------------------------------------------
def image_token_count(spec: dict, width: int, height: int, min_pixels: int | None = None,
                      max_pixels: int | None = None) -> dict:
    """Image tokens in the language model's sequence and patches through the vision tower, for one image.

    Args:
        spec: :func:`architecture_spec` / :func:`published_config` output.
        width, height: screenshot size in pixels.
        min_pixels, max_pixels: pixel budget override (Qwen families); None keeps the checkpoint's.

    Returns:
        ``{"tokens", "patches", "resized": (width, height)}``. For Qwen, tokens = (h/28)*(w/28) of the
        smart-resized image and patches = 4 x tokens (2 x 2 merge).
    """
    rule = spec["image_tokens"]
    if rule["rule"] == "qwen_smart_resize":
        vision = spec["vision"]
        patch, merge = vision["patch_size"], vision["spatial_merge_size"]
        h, w = smart_resize(height, width, factor=patch * merge,
                            min_pixels=min_pixels if min_pixels is not None else rule["min_pixels"],
                            max_pixels=max_pixels if max_pixels is not None else rule["max_pixels"])
        patches = (h // patch) * (w // patch)
        return {"tokens": patches // (merge * merge), "patches": patches, "resized": (w, h)}
    family_rule = get_family(spec["family"]).image_tokens
    if family_rule is not None:
        return family_rule(rule, width, height)
    size = rule.get("image_size")
    return {"tokens": rule["tokens"], "patches": rule["patches"], "resized": (size, size)}



# -- parameter counting -----------------------------------------------------------------------------
def _bart_shapes(text: dict) -> dict[str, tuple[int, int]]:
    h, i = text["hidden_size"], text["intermediate_size"]
    return {"q_proj": (h, h), "k_proj": (h, h), "v_proj": (h, h), "out_proj": (h, h), "fc1": (h, i),
            "fc2": (i, h)}


def lora_shapes(spec: dict) -> list[tuple[str, int, dict[str, tuple[int, int]]]]:
    """Groups of identical layers LoRA can adapt: ``[(group, n_layers, {module: (in, out)})]``.

    Language model only (the tower's adapters, with ``model.freeze_vision_encoder: false``, are counted by
    :func:`vision_lora_parameter_count`). Florence-2's decoder layers also
    have cross-attention projections (``encoder_attn.*``), listed under the same module names. A hybrid
    language model (``text.layer_types`` with ``linear_attention`` layers, Qwen3.5) has one group per layer
    kind: ``linear_attention`` (Gated DeltaNet) and ``full_attention``.
    """
    text = spec["text"]
    if spec["architecture"] == "encoder_decoder":
        shapes = _bart_shapes(text)
        return [("encoder", text["encoder_layers"], shapes),
                ("decoder", text["decoder_layers"], shapes),
                ("decoder.encoder_attn", text["decoder_layers"],
                 {k: v for k, v in shapes.items() if k.endswith("proj")})]
    kinds = list(text.get("layer_types") or [])
    if "linear_attention" in kinds:
        return [("linear_attention", kinds.count("linear_attention"), linear_attention_shapes(text)),
                ("full_attention", kinds.count("full_attention"), lm_shapes(text))]
    return [("decoder", text["num_hidden_layers"], lm_shapes(text))]



def count_parameters(spec: dict) -> dict:
    """Parameter counts of an architecture spec.

    Exact formulas where the family has one (``count_params``: Qwen2-VL / Qwen2.5-VL, checked against the
    real classes on the meta device); pinned meta-device counts for the other published models; any other
    spec (an embedded tiny model, a local checkpoint) is counted by building its transformers model from
    the spec on the ``meta`` device (see :func:`config_from_spec`; needs transformers).

    Returns:
        ``{"total", "vision", "text", "text_linear", "vision_linear", "embedding", "lm_head"}`` where
        ``vision`` includes the projector / merger and ``*_linear`` are nn.Linear weights (no biases, no
        lm_head): what bitsandbytes replaces when loading in 4 or 8 bits.
    """
    plugin = get_family(spec["family"])
    if plugin.count_params is not None:
        return plugin.count_params(spec)
    if spec.get("name") in _PINNED_COUNTS:
        return dict(_PINNED_COUNTS[spec["name"]])
    return _count_on_meta(config_from_spec(spec), _model_class(spec["family"]))


def count_parameters_meta(model_name: str) -> dict:
    """Count parameters by building the real transformers model on the ``meta`` device (no memory).

    Splits as :func:`count_parameters` does, from module names: the vision tower and its projector
    (``visual``, ``vision_tower``, ``vision_model``, ``multi_modal_projector``, ``connector``,
    ``image_projection``/``image_proj_norm``/``image_pos_embed``/``visual_temporal_embed``) vs the rest.
    """
    return _count_on_meta(build_config(model_name), model_class_for(model_name))


def _count_on_meta(config, model_class) -> dict:
    """:func:`count_parameters_meta`'s counts for a transformers config object and model class."""

    with torch.device("meta"):
        model = model_class(config)
    vision_keys = ("visual", "vision_tower", "vision_model", "multi_modal_projector", "connector",
                   "image_projection", "image_proj_norm", "image_pos_embed", "visual_temporal_embed")
    counts = dict.fromkeys(("total", "vision", "text", "text_linear", "vision_linear", "embedding",
                            "lm_head"), 0)
    seen = set()
    for name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        part = "vision" if any(k in name.split(".") or name.startswith(k) for k in vision_keys) else "text"
        counts["total"] += param.numel()
        counts[part] += param.numel()
    output = model.get_output_embeddings()
    input_embeddings = model.get_input_embeddings()
    counts["embedding"] = input_embeddings.weight.numel()
    counts["lm_head"] = 0 if output.weight is input_embeddings.weight else output.weight.numel()
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module is not output:
            part = "vision" if any(k in name.split(".") for k in vision_keys) else "text"
            counts[f"{part}_linear"] += module.weight.numel()
    return counts


def vision_lora_parameter_count(spec: dict, r: int) -> int:
    """Parameters LoRA adds to the vision tower and projector (``model.freeze_vision_encoder: false``):
    r x (in + out) for each linear layer the family's adapter targets there (its
    ``vision_lora_target_modules``, matched by the regex the wrapper gives peft), counted on a ``meta``
    build of the spec's model."""

    adapter = get_family(spec["family"]).adapter
    pattern = re.compile(adapter.lora_target_regex(vision=True))
    with torch.device("meta"):
        model = _model_class(spec["family"])(config_from_spec(spec))
    return sum(r * (module.in_features + module.out_features) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and pattern.match(name) and adapter.part_of(name) != "language_model")


def build_config(model_name: str):
    """The transformers config object of a published model, built from :func:`published_config`.

    ``AutoModelForImageTextToText.from_config(build_config(name))`` gives the full-size architecture with
    random weights (on a GPU for memory experiments, or inside ``torch.device("meta")`` to count).
    """
    return config_from_spec(_raw(model_name))


def config_from_spec(spec: dict):
    """The transformers config object an architecture spec describes (published, tiny or local)."""
    return get_family(spec["family"]).build_config(spec)


def model_class_for(model_name: str):
    """The transformers model class that ``AutoModelForImageTextToText`` builds for a published model."""
    return _model_class(_raw(model_name)["family"])


def _model_class(family: str):
    """The transformers model class of a family."""

    return getattr(transformers, get_family(family).model_class)


# -- public lookups ----------------------------------------------------------------------------------
def _raw(model_name: str) -> dict:
    if model_name not in _PUBLISHED:
        raise KeyError(f"no published config for {model_name!r}; known: {list(MODEL_NAMES)}")
    return {**copy.deepcopy(_PUBLISHED[model_name]), "name": model_name}


def _with_derived(name: str, spec: dict) -> dict:
    spec = copy.deepcopy(spec)
    spec["name"] = name
    spec["params"] = count_parameters(spec)
    spec["lora"] = [{"group": g, "layers": n, "modules": {k: list(v) for k, v in shapes.items()}}
                    for g, n, shapes in lora_shapes(spec)]
    return spec


def published_config(model_name: str) -> dict:
    """Key dimensions of a published model as a plain dict (a fresh copy each call).

    Keys: ``family``, ``architecture`` ("decoder" or "encoder_decoder"), ``checkpoint_dtype``, ``text``
    (hidden size, layers, heads, kv heads, head_dim, intermediate size, vocabulary, ...), ``vision`` (depth,
    embed dim, heads, MLP dim, patch size, ...), ``image_tokens`` (the rule a screenshot's token count
    follows), ``token_ids``, ``params`` (see :func:`count_parameters`), ``lora`` (adaptable shapes),
    ``sources`` and ``unconfirmed``.

    Raises:
        KeyError: the name is not one of :data:`MODEL_NAMES` (the message lists them).
    """
    return _with_derived(model_name, _raw(model_name))


# -- specs read from a checkpoint's config.json -----------------------------------------------------
#: config.json ``model_type`` -> the family that reads it.
_READER_FAMILIES = {model_type: plugin for plugin in FAMILIES.values() for model_type in plugin.model_types}

#: The ``model_type`` values :func:`spec_from_hf_config` reads.
CONFIG_MODEL_TYPES: tuple[str, ...] = tuple(_READER_FAMILIES)


def _complete_config(config: dict, name: str) -> dict:
    """The config.json with its transformers config class's defaults filled in.

    Files written by transformers 4 leave out what equals the default (llava-1.5-7b-hf's ``text_config``
    has no ``hidden_size``: Llama's 4096 is meant).
    """

    settings = {k: v for k, v in config.items() if k != "model_type"}
    try:
        return AutoConfig.for_model(config["model_type"], **settings).to_dict()
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{name}: config.json of model_type {config['model_type']!r} cannot be read: "
                         f"{error}") from error



def _check_sub_models(config: dict, name: str) -> None:
    """Raise unless the language model and vision tower are the ones the family's spec describes."""
    family = config["model_type"]
    expected = _READER_FAMILIES[family].sub_models
    found = (config["text_config"].get("model_type"), config["vision_config"].get("model_type"))
    if found != expected:
        raise ValueError(f"{name}: a {family} config.json with text model {found[0]!r} and vision model "
                         f"{found[1]!r} is not supported; the {family} spec describes {expected[0]!r} text "
                         f"and a {expected[1]!r} tower")


def spec_from_hf_config(config: dict, name: str = "local", image_processor: dict | None = None) -> dict:
    """Architecture spec of a checkpoint's ``config.json`` (a tiny checkpoint or a local copy).

    Reads the model types in :data:`CONFIG_MODEL_TYPES` (Qwen2-VL, Qwen2.5-VL, LLaVA, Idefics2,
    Florence-2, PaliGemma) into the shape :func:`published_config` gives that family, without the derived
    ``params`` and ``lora`` (see :func:`architecture_spec`).

    Args:
        config: the parsed ``config.json``.
        name: the model's name in messages and in ``sources``.
        image_processor: the image processor's saved settings; its pixel budget (Qwen, Idefics2) or image
            size (LLaVA, PaliGemma, Florence-2) sets ``image_tokens``. None: the family processor's
            defaults (LLaVA and PaliGemma: the tower's image size).

    Raises:
        ValueError: the model_type is not supported (the message names it and lists the supported ones),
            or the family's config names another language model or vision tower than its spec describes.
    """
    model_type = config.get("model_type")
    if model_type not in _READER_FAMILIES:
        raise ValueError(f"{name}: reading model_type {model_type!r} from config.json is not supported; "
                         f"supported model types: {list(CONFIG_MODEL_TYPES)}; or use one of the published "
                         f"names {list(MODEL_NAMES)}")
    plugin = _READER_FAMILIES[model_type]
    if plugin.sub_models is not None:
        config = _complete_config(config, name)
        _check_sub_models(config, name)
    spec = plugin.read_hf_config(config, image_processor or {})
    return {**spec, "model_type": model_type,
            "checkpoint_dtype": config.get("dtype") or config.get("torch_dtype") or "float32",
            "sources": f"{name}/config.json", "unconfirmed": []}


def _image_processor_settings(folder: Path) -> dict:
    """The image processor's settings saved in a checkpoint folder ({} when there are none)."""
    for file in ("preprocessor_config.json", "processor_config.json"):
        path = folder / file
        if path.is_file():
            data = json.loads(path.read_text())
            data = data.get("image_processor", data)
            if any(key in data for key in ("size", "crop_size", "min_pixels", "max_pixels")):
                return data
    return {}


def architecture_spec(model_name: str) -> dict:
    """Architecture spec for a published name, an embedded tiny model or a local checkpoint folder.

    Folders (a tiny model's is built by ``tiny.tiny_checkpoint``) are read from their ``config.json`` and
    image processor settings (:func:`spec_from_hf_config`), so a tiny model's counts are those of the
    weights the workbook really trains. No network access.

    Raises:
        ValueError: neither a published name nor a folder with a ``config.json``, or a ``config.json``
            :func:`spec_from_hf_config` does not read.
    """
    if model_name in _PUBLISHED:
        return published_config(model_name)
    folder = local_folder(model_name) or Path(model_name)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{model_name!r} is neither a published model ({list(MODEL_NAMES)}), an embedded tiny "
                         f"model nor a folder with config.json; cannot estimate it without downloading")
    spec = spec_from_hf_config(json.loads(config_file.read_text()), name=model_name,
                               image_processor=_image_processor_settings(folder))
    return _with_derived(model_name, spec)
