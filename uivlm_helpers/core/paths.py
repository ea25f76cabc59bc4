"""Where things live: the repository's folders, one run's files and folders, and the split file names.

Every layer names the same files through these (the workbook runner, data preparation, training's
command line, the fast path's cache folder), so they sit at the bottom of the package.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The repository checkout this package is installed from (editable installs; see ``models/``).
REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEFAULT_RUN_DIR = REPO_ROOT / "runs" / "default"

#: Split name -> file name, in a run's ``data/`` folder or a converted dataset's folder.
SPLIT_FILES = {"train": "train.jsonl", "test": "test.jsonl"}


@dataclass(frozen=True)
class RunPaths:
    """The files and folders of one run, all under ``root`` (see the README's "Where results go")."""

    root: Path

    config = property(lambda self: self.root / "config.yaml")
    notebooks = property(lambda self: self.root / "notebooks")      # executed copies
    data = property(lambda self: self.root / "data")                # generated or converted splits
    checkpoints = property(lambda self: self.root / "checkpoints")  # Trainer checkpoints
    adapter = property(lambda self: self.root / "adapter")          # the trained agent (LoRA adapter)
    logs = property(lambda self: self.root / "logs")                # train.log, TensorBoard
    eval = property(lambda self: self.root / "eval")                # predictions.jsonl, metrics.json
    figures = property(lambda self: self.root / "figures")          # saved pictures
    share = property(lambda self: self.root / "share")              # merged model, model card
    results = property(lambda self: self.root / "results")          # <notebook>.json
