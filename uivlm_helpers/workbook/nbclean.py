"""Strip outputs, execution counts and widget state from notebooks, keeping cell tags.

``python -m uivlm_helpers.workbook.nbclean notebooks/*.ipynb`` cleans in place; ``--check`` only reports and
exits non-zero when a notebook would change (for CI and tests).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove outputs, execution counts and widget state in place; tags and ids stay."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "collapsed", "scrolled", "papermill"):
            cell.metadata.pop(key, None)
    for key in ("widgets", "papermill"):
        notebook.metadata.pop(key, None)
    return notebook


def is_clean(path: str | Path) -> bool:
    notebook = nbformat.read(path, as_version=4)
    before = nbformat.writes(notebook)
    return nbformat.writes(clean(notebook)) == before


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--check", action="store_true", help="report unclean notebooks, change nothing")
    args = parser.parse_args(argv)
    unclean = [p for p in args.paths if not is_clean(p)]
    if args.check:
        for p in unclean:
            print(f"not clean: {p}")
        return 1 if unclean else 0
    for p in unclean:
        nbformat.write(clean(nbformat.read(p, as_version=4)), p)
        print(f"cleaned {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
