"""Training with cached features: :class:`CachedFeaturesCollator` (the plain collator's batches with the
pixels replaced by cached features, M-RoPE ``position_ids`` for the Qwen families) and the model's forward
pre-hook (:func:`install_feature_hook`) that scatters them at the image tokens, or hands DeepStack levels
back as ``mm_encoder_outputs``."""

from __future__ import annotations

import copy
import inspect
import os

import torch
from PIL import Image
from transformers import BatchFeature
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ...core.images import as_image
from ...families.registry import FAMILIES
from ...models.wrapper import VLMWrapper
from ..collate import UICollator
from .key import image_hash
from .store import FeatureCache, load_hash_index, record_image_keys
from .tower import compute_features, hf_model, image_token_id

#: The batch key that carries the cached features from the collator to the model's pre-hook.
FEATURES_KEY = "cached_image_features"
#: Batch keys that only the vision tower reads (dropped from a cached batch).
VISION_INPUT_KEYS = {"pixel_values", "image_grid_thw", "pixel_attention_mask", "image_sizes",
                     "pixel_values_videos", "video_grid_thw"}
#: Families whose language model uses M-RoPE: their 3-D ``position_ids`` come from ``get_rope_index``
#: (each family plug-in's ``rope_index``).
ROPE_INDEX_FAMILIES = {name for name, plugin in FAMILIES.items() if plugin.rope_index}


def _rope_module(model):
    for module in hf_model(model).modules():
        if hasattr(module, "get_rope_index"):
            return module
    return None


def rope_position_ids(model, batch: dict) -> torch.Tensor:
    """M-RoPE ``position_ids`` (3, batch, length) exactly as the plain forward computes them."""
    module = _rope_module(model)
    fn = module.get_rope_index
    accepted = inspect.signature(fn).parameters
    kwargs = {k: batch[k] for k in ("mm_token_type_ids", "image_grid_thw", "attention_mask", "second_per_grid_ts")
              if k in accepted and k in batch}
    position_ids, _rope_deltas = fn(batch["input_ids"], **kwargs)
    return position_ids


class _LayoutOnlyImageProcessor:
    """Stands in for a Qwen image processor when the features are cached: it returns the cached
    ``image_grid_thw`` (all the processor needs to expand the image tokens) and touches no pixel."""

    def __init__(self, real, grids: list[list[int]]):
        self._real = real
        self._grids = grids

    def __getattr__(self, name):
        return getattr(self._real, name)

    def fetch_images(self, images):
        return images

    def __call__(self, images=None, *args, **kwargs):
        return BatchFeature({"image_grid_thw": torch.tensor(self._grids, dtype=torch.long)})


class CachedFeaturesCollator:
    """:class:`~uivlm_helpers.training.train.UICollator`'s batches with the pixels replaced by cached features.

    Tokens, labels and every text input are the processor's own (the same call as the plain collator);
    the vision inputs are dropped, :data:`FEATURES_KEY` holds the features of the batch's images in
    order, and the Qwen families get their M-RoPE ``position_ids``. A screenshot missing from the cache
    (or whose entry fails its checksum) is computed on the spot and kept in memory. Earlier screenshots
    (``data.history_images``) come from the cache too, scaled as the agent shows them
    (:func:`.store.record_history_screens`), ahead of each sample's own.

    For Qwen families with screenshot files whose cache entries carry their token layout, a batch is
    built without decoding or resizing any screenshot (``text_only``): the file's hash comes from the
    cache's image index, its size from the file header, and the processor lays out the image tokens
    from the cached ``image_grid_thw``. The fast path's self-check compares such a batch with the plain
    collator's, token for token, and turns ``text_only`` off if they differ.
    """

    def __init__(self, wrapper: VLMWrapper, cache: FeatureCache, max_length: int | None = None,
                 mixed_precision: str = "no"):
        self.wrapper = wrapper
        self.cache = cache
        self.max_length = max_length
        self.plain = UICollator(wrapper, max_length)
        self.mixed_precision = mixed_precision
        self.computed_on_the_fly = 0
        self.text_only = wrapper.family in ROPE_INDEX_FAMILIES
        self.text_only_batches = 0
        self._image_index = load_hash_index(cache.folder.parent)  # build_cache wrote it in the cache root
        self._extra: dict[str, torch.Tensor] = {}  # computed here, kept in memory (the next build stores them)

    def features(self, image) -> torch.Tensor:
        image_key = image_hash(image)
        features = self._extra.get(image_key)
        if features is None:
            features = self.cache.get(image_key)
        if features is None:
            features = compute_features(self.wrapper, [image], self.mixed_precision)[0]
            self._extra[image_key] = features
            self.computed_on_the_fly += 1
        return features

    def __call__(self, records: list[dict]):
        with_history = bool(self.wrapper.history_images) and any(r.get("history_images") for r in records)
        batch = self._text_only_batch(records) if self.text_only and not with_history else None
        if batch is not None:
            return batch
        images = [as_image(r["image"]) for r in records]
        batch = self.plain.encode(records, images, [img.size for img in images])
        if not with_history:
            return self.finish(batch, images)
        # Each sample's image tokens are its earlier screenshots' (as the agent scales them), then its own.
        shown = [[*self.wrapper.history_screens(r.get("history_images"), image.size), image]
                 for r, image in zip(records, images)]
        return self._attach(batch, [torch.cat([self.features(i) for i in row]) for row in shown])

    def _text_only_batch(self, records: list[dict]) -> dict | None:
        """The batch from cached layouts and features, or None when a screenshot is not a cached file."""

        if not all(isinstance(r["image"], (str, os.PathLike)) for r in records):
            return None
        keys = record_image_keys(records, index=self._image_index)
        layouts = [self.cache.layout(k) for k in keys]
        if not all(layout and "image_grid_thw" in layout for layout in layouts):
            return None
        features = [self._extra.get(k) if k in self._extra else self.cache.get(k) for k in keys]
        if any(f is None for f in features):
            return None
        sizes = []
        for record in records:
            with Image.open(record["image"]) as image:  # reads the header, not the pixels
                sizes.append(image.size)
        processor = copy.copy(self.wrapper.processor)
        processor.image_processor = _LayoutOnlyImageProcessor(self.wrapper.processor.image_processor,
                                                              [layout["image_grid_thw"] for layout in layouts])
        placeholders = [Image.new("RGB", (1, 1)) for _ in records]
        batch = self.plain.encode(records, placeholders, sizes, processor=processor)
        self.text_only_batches += 1
        return self._attach(batch, features)

    def finish(self, batch: dict, images) -> dict:
        """Turn a plain batch (with pixels) of ``images`` into the cached one."""
        return self._attach(batch, [self.features(image) for image in images])

    def _attach(self, batch: dict, features: list[torch.Tensor]) -> dict:
        token_id = image_token_id(self.wrapper.model)
        per_row = (batch["input_ids"] == token_id).sum(dim=1).tolist()
        if per_row != [f.shape[0] for f in features]:
            raise ValueError(f"cached features do not fit the batch: image tokens per sample {per_row}, cached "
                             f"feature rows {[f.shape[0] for f in features]} (pixel budget changed?)")
        if self.wrapper.family in ROPE_INDEX_FAMILIES:
            batch["position_ids"] = rope_position_ids(self.wrapper.model, batch)
            batch.pop("mm_token_type_ids", None)
        for name in VISION_INPUT_KEYS:
            batch.pop(name, None)
        batch[FEATURES_KEY] = torch.cat(features) if features else torch.empty(0)
        return batch


def deepstack_levels(model) -> int:
    """How many DeepStack levels the model's vision tower adds inside the language model: the
    ``deepstack_visual_indexes`` of its vision config (Qwen3-VL), 0 for a tower without them."""
    vision = getattr(hf_model(model).config, "vision_config", None)
    return len(getattr(vision, "deepstack_visual_indexes", None) or [])


def _encoder_outputs(module, kwargs, features):
    """Hand cached DeepStack features back to the model as its own ``get_image_features`` output
    (``mm_encoder_outputs``): the merger's rows replace the image tokens' embeddings and each level is
    added after its language-model layer, as in the plain forward. ``input_ids`` stay (they mark the image
    tokens)."""

    levels = module._uivlm_deepstack_levels
    hidden = module.get_input_embeddings().weight.shape[-1]
    if features.shape[-1] != hidden * (1 + levels):
        raise ValueError(f"cached features are {features.shape[-1]} wide; this model needs {hidden} (merger) x "
                         f"{1 + levels} (with its {levels} DeepStack levels): the cache was built for another model")
    pooler, *deepstack = features.split(hidden, dim=-1)
    output = BaseModelOutputWithPooling(pooler_output=(pooler,))
    output["deepstack_features"] = [(level,) for level in deepstack]
    kwargs["mm_encoder_outputs"] = {"image": output}
    return kwargs


def _feature_pre_hook(module, args, kwargs):
    features = kwargs.pop(FEATURES_KEY, None)
    if features is None:
        return None
    if module._uivlm_deepstack_levels:
        return args, _encoder_outputs(module, kwargs, features)
    input_ids = kwargs.pop("input_ids", None)
    if input_ids is None and args:
        input_ids, args = args[0], args[1:]
    if input_ids is None:
        raise ValueError(f"{FEATURES_KEY} needs input_ids to find the image tokens")
    embeddings = module.get_input_embeddings()(input_ids)
    mask = (input_ids == module._uivlm_image_token_id).unsqueeze(-1).expand_as(embeddings)
    if int(mask.sum()) != features.numel():
        raise ValueError(f"cached features ({features.shape[0]} rows) do not match the batch's "
                         f"{int(mask[..., 0].sum())} image tokens")
    kwargs["inputs_embeds"] = embeddings.masked_scatter(mask, features.to(embeddings.device, embeddings.dtype))
    kwargs["input_ids"] = None
    return args, kwargs


def install_feature_hook(model) -> None:
    """Let the model take :data:`FEATURES_KEY` instead of pixels (idempotent; inert without the key).

    A forward pre-hook on the transformers model embeds ``input_ids``, scatters the features at the
    image-token positions (``masked_scatter``, as the plain forward does) and passes ``inputs_embeds``.
    The text embedding runs inside the forward, so gradients (full fine-tuning) and the gradient-
    checkpointing input hook on the embeddings behave as in the plain path. A tower with DeepStack levels
    (:func:`deepstack_levels`) gets its cached output back as ``mm_encoder_outputs`` instead: input
    embeddings alone would lose the levels the language model adds after its first layers.
    """
    hf = hf_model(model)
    handle = getattr(hf, "_uivlm_feature_hook", None)
    if handle is not None and handle.id in hf._forward_pre_hooks:
        return
    hf._uivlm_image_token_id = image_token_id(model)
    hf._uivlm_deepstack_levels = deepstack_levels(model)
    hf._uivlm_feature_hook = hf.register_forward_pre_hook(_feature_pre_hook, with_kwargs=True)


def remove_feature_hook(model) -> None:
    hf = hf_model(model)
    handle = getattr(hf, "_uivlm_feature_hook", None)
    if handle is not None:
        handle.remove()
        hf._uivlm_feature_hook = None
