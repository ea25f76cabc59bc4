"""The data of one run: prepare its splits in the run folder and read them back as plain records.

Notebooks and the training/evaluation functions use plain dicts (``id``, ``image`` as an absolute
path, ``instruction``, ``action`` in pixels, ``bbox``, ``element_type``, ``source``, ``image_size``), read
from the validated JSONL splits in ``RUN_DIR/data``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from . import data, synth
from .config import RunConfig
from .workbook import RunPaths

SPLIT_FILES = {"train": "train.jsonl", "test": "test.jsonl"}


def prepare_data(config: RunConfig, paths: RunPaths) -> dict[str, Path]:
    """Create (synthetic) or link (a folder with ``train.jsonl``/``test.jsonl``) the run's splits.

    Synthetic splits are generated from ``config.data`` (sizes, image size, seed); a folder source is
    validated and used in place.
    """
    d = config.data
    if d.source == "synthetic":
        splits = synth.make_splits(paths.data, seed=d.seed, n_train=d.train_size, n_eval=d.eval_size,
                                   image_size=(d.image_width, d.image_height))
        return {name: Path(p) for name, p in splits.items()}
    folder = Path(d.source)
    missing = [f for f in SPLIT_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"data.source={d.source!r}: expected 'synthetic' or a folder holding "
                                f"{list(SPLIT_FILES.values())}; missing {missing}")
    paths.data.mkdir(parents=True, exist_ok=True)
    (paths.data / "source.txt").write_text(str(folder.resolve()))
    return {name: folder / f for name, f in SPLIT_FILES.items()}


def split_file(paths: RunPaths, split: str) -> Path:
    """The JSONL file of a split (in the run folder, or where a folder source lives)."""
    if split not in SPLIT_FILES:
        raise ValueError(f"split: expected one of {list(SPLIT_FILES)}, got {split!r}")
    source = paths.data / "source.txt"
    folder = Path(source.read_text().strip()) if source.is_file() else paths.data
    path = folder / SPLIT_FILES[split]
    if not path.is_file():
        raise FileNotFoundError(f"no {split} split at {path}; run 01_setup (data step) for this run folder")
    return path


def as_plain(record: data.UIRecord) -> dict:
    """A record as the plain dict the collator, predictor and metrics use (absolute image path)."""
    image = record.image if isinstance(record.image, Image.Image) else str(record.image_path)
    return {"id": record.id, "image": image, "instruction": record.instruction, "action": record.action,
            "bbox": record.bbox, "element_type": record.element_type, "source": record.source,
            "platform": record.platform, "image_size": list(record.image_size)}


def load_split(paths: RunPaths, split: str, limit: int | None = None) -> list[dict]:
    """The records of a split, validated, as plain dicts (the first ``limit`` when given)."""
    records = [as_plain(r) for r in data.read_records(split_file(paths, split))]
    return records[:limit] if limit else records


def open_image(record: dict) -> Image.Image:
    image = record["image"]
    return image if isinstance(image, Image.Image) else Image.open(image).convert("RGB")


def few_shot_examples(paths: RunPaths, agent, n: int) -> list[tuple[str, str]]:
    """``n`` (instruction, answer) pairs from the training split, answers rendered as the agent trains."""
    if not n:
        return []
    records = load_split(paths, "train", limit=n)
    return [(r["instruction"], agent.render_target(r["action"], tuple(r["image_size"]))) for r in records]


def prediction_table(records: list[dict], predictions):
    """Instruction, raw output, decoded action (or the reason it failed) and target, one row each."""
    import pandas as pd

    return pd.DataFrame([{
        "instruction": r["instruction"], "raw output": p.raw_text,
        "decoded action (pixels)": p.action if p.action is not None else None,
        "failure reason": p.failure, "clamped": p.clamped, "target": r["action"],
    } for r, p in zip(records, predictions)])

