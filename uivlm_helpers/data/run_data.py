"""The data of one run: prepare its splits in the run folder and read them back as plain records.

Notebooks and the training/evaluation functions use plain dicts (``id``, ``image`` as an absolute
path, ``instruction``, ``action`` in pixels, ``bbox``, ``element_type``, ``source``, ``image_size``), read
from the validated JSONL splits in ``RUN_DIR/data``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from PIL import Image

from . import miniwob_env, synth, synth_episodes, synth_tasks
from ..core.config import RunConfig
from ..core.paths import RunPaths, SPLIT_FILES
from .miniwob_env import DEFAULT_TASKS, ORACLE_TASKS
from .schema import UIRecord, read_records
from .synth_tasks import FAMILIES, NEW_PLACES


def prepare_data(config: RunConfig, paths: RunPaths) -> dict[str, Path]:
    """Create (synthetic, MiniWoB++) or link (a folder with ``train.jsonl``/``test.jsonl``) the run's splits.

    ``config.data.source`` is one of:

    * ``"synthetic"``: screens generated from ``config.data`` (sizes, image size, seed);
    * ``"tasks"`` or ``"tasks:colour,kind,..."``: task screens (:mod:`.synth_tasks`, see
      :func:`task_spec`), sized like ``"synthetic"``;
    * ``"episodes"``: the synthetic two-step task in which only the history tells the next step
      (:mod:`.synth_episodes`); ``train_size`` / ``eval_size`` count records, two per episode;
    * ``"miniwob"`` or ``"miniwob:click-test,enter-text,..."``: MiniWoB++ oracle demonstrations
      recorded in a headless Chromium (see :func:`prepare_miniwob`; needs ``make system-deps``);
    * a folder holding ``train.jsonl`` and ``test.jsonl`` (e.g. written by :mod:`.converters`),
      used in place.
    """
    d = config.data
    if d.source == "synthetic":
        splits = synth.make_splits(paths.data, seed=d.seed, n_train=d.train_size, n_eval=d.eval_size,
                                   image_size=(d.image_width, d.image_height))
        return {name: Path(p) for name, p in splits.items()}
    if d.source == synth_episodes.EPISODES_SOURCE:
        splits = synth_episodes.make_episode_splits(paths.data, seed=d.seed, n_train=math.ceil(d.train_size / 2),
                                                    n_eval=math.ceil(d.eval_size / 2),
                                                    image_size=(d.image_width, d.image_height))
        return {name: Path(p) for name, p in splits.items()}
    spec = task_spec(d.source)
    if spec is not None:
        splits = synth_tasks.make_task_splits(paths.data, seed=d.seed, n_train=d.train_size, n_eval=d.eval_size,
                                              image_size=(d.image_width, d.image_height), **spec)
        return {name: Path(p) for name, p in splits.items()}
    tasks = miniwob_tasks(d.source)
    if tasks is not None:
        return prepare_miniwob(paths, tasks, train_size=d.train_size, eval_size=d.eval_size, seed=d.seed)
    folder = Path(d.source)
    missing = [f for f in SPLIT_FILES.values() if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"data.source={d.source!r}: expected 'synthetic', 'tasks[:family,...]', 'episodes', "
                                f"'miniwob[:task,...]' or a "
                                f"folder holding {list(SPLIT_FILES.values())}; missing {missing}")
    paths.data.mkdir(parents=True, exist_ok=True)
    (paths.data / "source.txt").write_text(str(folder.resolve()))
    return {name: folder / f for name, f in SPLIT_FILES.items()}


def _listed_source(source: str, prefix: str, default, known, what: str) -> list[str] | None:
    """The names a ``"<prefix>"`` / ``"<prefix>:a,b"`` source lists (``default`` for the bare prefix);
    None when ``source`` is another kind of source."""
    if source != prefix and not source.startswith(prefix + ":"):
        return None
    if source == prefix:
        return list(default)
    names = [n.strip() for n in source.split(":", 1)[1].split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"data.source={source!r}: expected '{prefix}' or '{prefix}:<name>,<name>,...' with "
                         f"{what}; unknown: {unknown}; available: {list(known)}")
    return names


TASKS_SOURCE = "tasks"


def task_spec(source: str) -> dict | None:
    """What a ``data.source`` of task screens draws (:func:`.synth_tasks.make_task_splits` arguments),
    or None for other sources.

    ``"tasks"`` is the default fine-tune task: 3-5 large buttons of different colours, the target named
    by its place with one of :data:`.synth_tasks.NEW_PLACES` ("Click the rightmost element", "Click the
    bottom element": words the shipped base never heard), on screens where the other word names another
    button, so that only the word tells the target apart (an instruction-blind policy scores 50%).
    ``"tasks:colour,kind"`` draws mixed widgets (4-6), the target named by the families listed.

    Raises:
        ValueError: an unknown family (the message lists them).
    """

    families = _listed_source(source, TASKS_SOURCE, [], FAMILIES, "instruction families")
    if families is None:
        return None
    if not families:
        return {"families": ["extreme"], "places": list(NEW_PLACES), "min_candidates": 2, "boxes": True,
                "n_widgets": (3, 5)}
    return {"families": families, "colours": None, "boxes": False, "n_widgets": (4, 6)}


MINIWOB_SOURCE = "miniwob"
MINIWOB_SPEC = "miniwob.json"  # what the recorded MiniWoB++ splits were made from (reuse check)


def miniwob_tasks(source: str) -> list[str] | None:
    """The MiniWoB++ tasks a ``data.source`` names, or None when it is not a MiniWoB++ source.

    ``"miniwob"`` means :data:`.miniwob_env.DEFAULT_TASKS` (ten tasks: single clicks on buttons,
    links, tabs, dialogs and text fields, plus multi-step form filling); ``"miniwob:a,b"`` names
    tasks that have an oracle policy.

    Raises:
        ValueError: a named task has no oracle (the message lists those that do).
    """
    if source != MINIWOB_SOURCE and not source.startswith(MINIWOB_SOURCE + ":"):
        return None

    return _listed_source(source, MINIWOB_SOURCE, DEFAULT_TASKS, ORACLE_TASKS, "tasks that have an oracle policy")


def prepare_miniwob(paths: RunPaths, tasks: list[str], train_size: int, eval_size: int, seed: int) -> dict[str, Path]:
    """Record MiniWoB++ oracle demonstrations as the run's ``train``/``test`` splits in ``paths.data``.

    Each split gets (at most) its size in records, shared evenly between the tasks; every step of
    a successful oracle episode is one record (multi-step tasks give several, with ``history``).
    The splits draw disjoint task instances from ``seed`` (see :func:`.miniwob_env.episode_seed`).
    Screenshots are MiniWoB++'s own 160x210 (``data.image_width``/``image_height`` do not apply).
    When the folder already holds splits recorded with the same tasks, sizes and seed, they are
    reused instead of recorded again.
    """

    folder = paths.data
    spec = {"tasks": list(tasks), "train_size": train_size, "eval_size": eval_size, "seed": seed}
    splits = {name: folder / f for name, f in SPLIT_FILES.items()}
    spec_file = folder / MINIWOB_SPEC
    if (spec_file.is_file() and json.loads(spec_file.read_text()) == spec
            and all(p.is_file() for p in splits.values())):
        return splits
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (folder / "source.txt", spec_file):
        stale.unlink(missing_ok=True)  # a folder source chosen earlier must not shadow these splits
    with miniwob_env.MiniWoBTask(tasks[0]) as env:
        for name, size in (("train", train_size), ("test", eval_size)):
            # each episode gives at least one record; a few spare episodes cover rare oracle failures
            episodes = math.ceil(size / len(tasks)) + 3
            miniwob_env.record_demonstrations(tasks, episodes, seed, folder, split=name, max_records=size,
                                              jsonl_name=SPLIT_FILES[name], env=env)
    spec_file.write_text(json.dumps(spec, indent=2) + "\n")
    return splits


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


def as_plain(record: UIRecord) -> dict:
    """A record as the plain dict the collator, predictor and metrics use (absolute image paths); a step of
    an episode keeps ``episode_id``, ``step``, ``history`` and ``history_images``."""
    image = record.image if isinstance(record.image, Image.Image) else str(record.image_path)
    earlier = [value if path is None else str(path)
               for value, path in zip(record.history_images, record.history_image_paths)]
    return {"id": record.id, "image": image, "instruction": record.instruction, "action": record.action,
            "bbox": record.bbox, "element_type": record.element_type, "source": record.source,
            "platform": record.platform, "image_size": list(record.image_size),
            "distractors": record.distractors, "history": [dict(a) for a in record.history],
            "episode_id": record.episode_id, "step": record.step,
            "history_images": earlier}


def load_split(paths: RunPaths, split: str, limit: int | None = None) -> list[dict]:
    """The records of a split, validated, as plain dicts (the first ``limit`` when given).

    Raises:
        ValueError: the split's file holds no records.
    """
    path = split_file(paths, split)
    records = [as_plain(r) for r in read_records(path)]
    if not records:
        raise ValueError(f"{path}: the {split} split has no records; expected at least one "
                         "(prepare the data again with 01_setup, or check data.source)")
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

    return pd.DataFrame([{
        "instruction": r["instruction"], "raw output": p.raw_text,
        "decoded action (pixels)": p.action if p.action is not None else None,
        "failure reason": p.failure, "clamped": p.clamped, "target": r["action"],
    } for r, p in zip(records, predictions)])

