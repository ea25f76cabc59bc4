"""Shared fixtures: the embedded tiny checkpoint and a few synthetic screens.

Under pytest-xdist (``make test`` runs two workers, one test file each at a time) the cores are shared
between the workers: each worker's torch, and every process it starts (notebook kernels, training
launches), gets its share of threads, since two processes each running one thread per core spend their
time waiting on each other.
"""

import os

_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _THREADS)

import pytest  # noqa: E402

from uivlm_helpers.models.tiny import tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="session")
def tiny_path():
    """The embedded tiny Qwen2-VL checkpoint folder (built once into the user cache)."""
    return tiny_checkpoint("uivlm/tiny-qwen2-vl")


@pytest.fixture(scope="session")
def screens(tmp_path_factory):
    """Eight synthetic screens (train split) as plain records."""
    from uivlm_helpers.data import schema, synth
    from uivlm_helpers.data.run_data import as_plain

    folder = tmp_path_factory.mktemp("screens")
    jsonl = synth.generate_records(8, seed=3, out_dir=folder)
    return [as_plain(r) for r in schema.read_records(jsonl)]


def pytest_collection_modifyitems(items):
    """Files with end-to-end (``slow``) tests first, the fine-tuning runs (the longest) leading: two workers
    start on the longest files and the short ones fill in around them, instead of one long file running
    alone at the end."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    # stable: file and test order kept otherwise
    items.sort(key=lambda item: (item.path not in slow_files, "learning" not in item.path.name))
