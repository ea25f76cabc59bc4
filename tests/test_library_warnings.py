"""The workbook's outputs show its own messages: the library warnings the package has dealt with do
not escape the calls the notebooks make, and the filters stay around those calls (nothing global)."""

import warnings
from pathlib import Path

import pytest

from uivlm_helpers.core.config import RunConfig
from uivlm_helpers.models.wrapper import VLMWrapper
from uivlm_helpers.training import memory, train

_NOISY = (FutureWarning, DeprecationWarning, UserWarning)


def _library_warnings(record) -> list[str]:
    """Warnings raised inside transformers or peft (where a user cannot act on them)."""
    libraries = ("transformers", "peft")
    return [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in record
            if issubclass(w.category, _NOISY) and any(part in libraries for part in Path(w.filename).parts)]


def _recording():
    manager = warnings.catch_warnings(record=True)
    record = manager.__enter__()
    warnings.simplefilter("always")  # not once per place: every warning counts
    return manager, record


def test_setup_notebook_calls_raise_no_library_warnings():
    # 01_setup: load the default model with LoRA, then the memory estimate and its table.
    filters_before = list(warnings.filters)
    manager, record = _recording()
    try:
        config = RunConfig()
        agent = VLMWrapper.from_config(config)
        memory.estimate_table(memory.estimate_training_memory(config))
    finally:
        manager.__exit__(None, None, None)
    assert agent.has_adapter
    assert _library_warnings(record) == []
    assert warnings.filters == filters_before
    # The filter covers the wrapping call only: the deprecated property still warns elsewhere.
    with pytest.warns(FutureWarning, match="is_gradient_checkpointing"):
        agent.model.get_base_model().is_gradient_checkpointing


def test_loading_a_saved_adapter_raises_no_library_warnings(tmp_path):
    # 04_eval and 05_share load the trained agent (PeftModel.from_pretrained).
    saved = VLMWrapper(use_lora=True).save_pretrained(tmp_path / "agent")
    manager, record = _recording()
    try:
        reloaded = VLMWrapper.load_pretrained(saved)
    finally:
        manager.__exit__(None, None, None)
    assert reloaded.has_adapter
    assert _library_warnings(record) == []


@pytest.mark.parametrize("checkpointing", [True, False])
def test_training_arguments_raise_no_library_warnings(tmp_path, checkpointing):
    # 03_lora_train builds the Trainer's arguments; the setting still arrives under either name.
    config = RunConfig()
    config.training.gradient_checkpointing = checkpointing
    manager, record = _recording()
    try:
        args = train.training_arguments(config, tmp_path)
    finally:
        manager.__exit__(None, None, None)
    assert _library_warnings(record) == []
    assert args.gradient_checkpointing is checkpointing
    assert getattr(args, "activation_checkpointing", checkpointing) is checkpointing
