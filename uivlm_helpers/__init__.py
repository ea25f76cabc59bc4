"""uivlm_helpers: the package behind the uivlm workbook.

Teach an open vision-language model to operate user interfaces: screenshot + instruction -> next
action (``click(x, y)``, ``type("text")``, ``scroll(down, 100)``, ``wait(1)``). The notebooks in
``notebooks/`` call these modules; so do the tests.

The seed API is importable from the top level (loaded lazily, so ``import uivlm_helpers`` is cheap):
``VLMWrapper``, ``ActionDecoder``, ``load_config``.

The sub-packages are layers, each importing only from the ones before it (``tests/test_layers.py``):

* ``core``: coordinate spaces, the action schema, prompts, the run configuration, run paths, images;
* ``data``: the record schema, converters, synthetic and task screens, MiniWoB++, a run's splits;
* ``families``: one plug-in per model family (adapter, tiny recipe and tokenizer, published specs);
* ``models``: name resolution, tiny and shipped checkpoints, constrained decoding, ``VLMWrapper``;
* ``training``: collator, Trainer, checkpointing, the fast path, the memory estimate
  (``python -m uivlm_helpers.training``);
* ``evaluation``, then ``sharing`` (which reproduces the evaluation);
* ``workbook``: the notebooks' runner (``python -m uivlm_helpers.workbook``), widgets, plots.
"""

import importlib
import logging

# bitsandbytes warns at import on CPUs with AVX512-BF16 that its optional fast 4-bit kernel (fetched
# from the Hub by the `kernels` package) is missing; the plain kernel works, so keep notebooks quiet.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

_EXPORTS = {"VLMWrapper": "models.wrapper", "ActionDecoder": "core.actions", "Action": "core.actions",
            "load_config": "core.config", "RunConfig": "core.config"}

#: The sub-packages as layers, bottom first; a tuple would hold layers side by side. A module imports only from
#: its own layer and the ones before it (``tests/test_layers.py``; ``docs/architecture.py`` draws them).
LAYERS = ["core", "data", "families", "models", "training", "evaluation", "sharing", "workbook"]

__all__ = sorted([*_EXPORTS, "LAYERS"])


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'uivlm_helpers' has no attribute {name!r}")
