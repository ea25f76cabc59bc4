"""uivlm_helpers: the package behind the uivlm workbook.

Teach an open vision-language model to operate user interfaces: screenshot + instruction -> next
action (``click(x, y)``, ``type("text")``, ``scroll(down, 100)``, ``wait(1)``). The notebooks in
``notebooks/`` call these modules; so do the tests.

The seed API is importable from the top level (loaded lazily, so ``import uivlm_helpers`` is cheap):
``VLMWrapper``, ``ActionDecoder``, ``load_config``.
"""

import logging

# bitsandbytes warns at import on CPUs with AVX512-BF16 that its optional fast 4-bit kernel (fetched
# from the Hub by the `kernels` package) is missing; the plain kernel works, so keep notebooks quiet.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

_EXPORTS = {"VLMWrapper": "wrapper", "ActionDecoder": "actions", "Action": "actions",
            "load_config": "config", "RunConfig": "config"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'uivlm_helpers' has no attribute {name!r}")
