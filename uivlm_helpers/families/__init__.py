"""Model families as plug-ins: one module per family, one registry.

Everything that makes a family what it is - its adapter (prompt layout, label start, coordinate space,
vision modules, LoRA targets), its embedded tiny checkpoint (recipe, builder, chat template), its
published full-size configurations and ``config.json`` reader, its memory and fast-path traits and its
entries in the model picker - lives in ``uivlm_helpers/families/<family>.py`` as a
:class:`.plugin.FamilyPlugin`. :mod:`.registry` lists the modules and names a model's family;
:mod:`.tinybuild` trains the tiny checkpoints' tokenizers. Resolving a name to a folder is the job of
:mod:`uivlm_helpers.models.resolve`.

==============  ====================  ==================================  ==============================
family          prompt                coordinate space                    vision tower + projector
==============  ====================  ==================================  ==============================
qwen2_vl        chat template         norm1000                            ``visual.``
qwen2_5_vl      chat template         resized (smart_resize pixels;       ``visual.``
                                      depends on image and pixel budget)
llava           chat template         norm1000 of the screenshot padded   ``vision_tower.``,
                ("USER: ... ASSISTANT:")  to a centred square (.llava)    ``multi_modal_projector.``
idefics2        chat template         norm1000                            ``vision_model.``,
                ("User:... Assistant:")                                   ``connector.``
paligemma       prefix + suffix       paligemma_loc (``<locNNNN>``, y x)  ``vision_tower.``,
                (the processor                                            ``multi_modal_projector.``
                labels the suffix)
florence2       task prompt into the  florence_loc (``<loc_N>``, x y)     ``vision_tower.``,
                encoder; the answer                                       ``multi_modal_projector.``
                is the decoder's
==============  ====================  ==================================  ==============================

Families are recognised from a Hub name, an embedded tiny model name or a local folder's
``config.json`` (``model_type``), without downloading anything.
"""

from .adapters import (CLIP_LINEAR, IGNORE_INDEX, KEPT_SPECIAL_TOKENS, LLM_LINEAR, NORM1000_SQUARE,
                       ChatTemplateAdapter, EncoderDecoderAdapter, PrefixSuffixAdapter, ResizedPixelsAdapter,
                       SquarePadAdapter, SquarePaddedSpace, square_padding)
from .florence2 import FLORENCE2
from .idefics2 import IDEFICS2
from .llava import LLAVA
from .paligemma import PALIGEMMA
from .plugin import FamilyPlugin
from .qwen2_5_vl import QWEN2_5_VL
from .qwen2_vl import QWEN2_VL
from .registry import (ADAPTERS, FAMILIES, FAMILY_MODULES, KNOWN_FAMILIES, TINY_MODELS, family_name_for, get_adapter,
                       get_family, published_specs, tiny_recipe)

__all__ = [
    "ADAPTERS", "CLIP_LINEAR", "FAMILIES", "FAMILY_MODULES", "FLORENCE2", "IDEFICS2", "IGNORE_INDEX",
    "KEPT_SPECIAL_TOKENS", "KNOWN_FAMILIES", "LLAVA", "LLM_LINEAR", "NORM1000_SQUARE", "PALIGEMMA", "QWEN2_5_VL",
    "QWEN2_VL", "TINY_MODELS", "ChatTemplateAdapter", "EncoderDecoderAdapter", "FamilyPlugin",
    "PrefixSuffixAdapter", "ResizedPixelsAdapter", "SquarePadAdapter", "SquarePaddedSpace",
    "family_name_for", "get_adapter", "get_family", "published_specs",
    "square_padding", "tiny_recipe",
]
