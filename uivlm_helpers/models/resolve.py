"""The one resolver of model names: what to load for a name, and its family.

A model is named by an embedded tiny name (``uivlm/tiny-qwen2-vl``, built on first use), a shipped model
(``uivlm/tiny-qwen2-vl-ui``), a Hub id or a local folder. :func:`resolve_model` turns any of them into
the folder or id to load, its family and (for a published name) its published spec, without downloading
anything.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ..families.registry import TINY_MODELS, family_name_for, published_specs
from .pretrained import SHIPPED_MODELS, shipped_model_path
from .tiny import tiny_checkpoint


def local_folder(name: str) -> Path | None:
    """The folder behind an offline model name: an embedded tiny model (built on first use) or a
    shipped one; None for any other name (Hub ids, folders)."""
    if name in TINY_MODELS:
        return Path(tiny_checkpoint(name))
    if name in SHIPPED_MODELS:
        return shipped_model_path(name)
    return None


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved: ``path`` to load (a folder, or the Hub id itself), its ``family``, and its
    published ``spec`` (a fresh copy; None unless the name is a published one)."""

    name: str
    path: str
    family: str
    spec: dict | None = None


def resolve_model(name_or_path: str) -> ResolvedModel:
    """The one resolver: what to load for a model name, and its family.

    Tiny names are built on first use and shipped names checked (see :func:`local_folder`); a Hub id or a
    folder is kept as it is. The family comes from the resolved folder's ``config.json`` when there is one,
    else from the name.

    Raises:
        ValueError: the family cannot be told (see :func:`family_name_for`).
        FileNotFoundError: a shipped model's folder is missing.
    """
    folder = local_folder(name_or_path)
    path = str(folder) if folder is not None else name_or_path
    published = published_specs().get(name_or_path)
    return ResolvedModel(name=name_or_path, path=path, family=family_name_for(path),
                         spec=copy.deepcopy(published) if published is not None else None)


def resolve_model_path(model_name: str) -> str:
    """Local folder for an offline model name (embedded tiny or shipped); other names pass through
    unchanged (Hub ids, folders). See :func:`resolve_model`."""
    folder = local_folder(model_name)
    return str(folder) if folder is not None else model_name
