"""Shared fixtures: the embedded tiny checkpoint and a few synthetic screens."""

import pytest

from uivlm_helpers.models.tiny import tiny_checkpoint


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
