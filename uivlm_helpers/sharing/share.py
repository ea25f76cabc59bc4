"""Sharing a trained agent: merge the adapter, write a model card, and push to the Hub token-safely.

The token is looked up (``HF_TOKEN`` or the Hub login cache) only at push time, passed straight to
``huggingface_hub`` and never printed, logged, stored in the run configuration or returned.
Without a token, or without ``push=True``, :func:`push_to_hub` is a dry run that lists exactly what
would be uploaded.

Shared files name the dataset and the base model, never a local path: a data folder or a model folder
on this machine is named by its folder's name (:func:`portable_name`), and machine-specific settings
(the feature-cache folder, the run-only ``share.push`` / ``share.private``) are left out of the shared
run configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import yaml
from huggingface_hub import HfApi, get_token

from ..core.config import RunConfig, without_run_only_settings
from ..evaluation.evaluate import predict_records, read_predictions
from ..models.wrapper import AGENT_FILE, VLMWrapper

REPO_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


def merge_and_save(wrapper: VLMWrapper, folder: str | Path) -> Path:
    """Merge the wrapper's LoRA adapter into its base and save a standalone agent (safetensors).

    A quantized base (QLoRA, 8-bit) is not merged into: its rounded weights would be saved. The
    adapter is merged into a full-precision copy of the base instead (in the wrapper's
    ``torch_dtype``), loaded afresh; ``wrapper`` itself is left as it was.
    """
    if not wrapper.has_adapter:
        raise ValueError("nothing to merge: the agent has no LoRA adapter (a full fine-tune is saved as it is; "
                         "use save_agent(..., merge=False))")
    if getattr(wrapper.model, "is_quantized", False):
        with tempfile.TemporaryDirectory() as adapter_dir:
            wrapper.save_pretrained(adapter_dir)
            dtype = "float32" if wrapper.torch_dtype == "auto" else wrapper.torch_dtype
            full = VLMWrapper(adapter_dir, device="cpu", torch_dtype=dtype)
            full.merge_lora()
            return full.save_pretrained(folder)
    wrapper.merge_lora()
    return wrapper.save_pretrained(folder)


RUN_CONFIG_FILE = "uivlm_run_config.yaml"


def _is_local_path(value: str) -> bool:
    """A path on this machine (absolute, home-relative, explicitly relative or an existing folder), as
    opposed to a Hub id (``owner/name``) or a data-source spec (``tasks:colour``)."""
    return (os.path.isabs(os.path.expanduser(value)) or value.startswith((".", "~")) or "\\" in value
            or Path(value).exists())


def portable_name(value: str | None) -> str | None:
    """How shared files name a dataset or a model: a local path becomes its folder's name; Hub ids and
    data-source specs (``tasks``, ``miniwob:click-test``) stay as they are."""
    if value is None or not _is_local_path(str(value)):
        return value
    return Path(str(value)).expanduser().resolve().name


def shareable_config(config: RunConfig) -> RunConfig:
    """The run configuration as it is shared: datasets and models by name, no machine-specific folders,
    no run-only settings (a push or a visibility is this run's, never the shared configuration's)."""

    shared = without_run_only_settings(config)
    shared.model.name = portable_name(shared.model.name)
    shared.data.source = portable_name(shared.data.source)
    shared.training.feature_cache_dir = None  # a folder of this machine
    return shared


def _scrub_saved_agent(wrapper: VLMWrapper, folder: Path) -> None:
    """Make a saved agent folder name its base model by name: peft writes the base's local folder into
    ``adapter_config.json`` and a template ``README.md`` (the model card replaces it)."""

    agent_file = folder / AGENT_FILE
    settings = json.loads(agent_file.read_text())
    settings["base_model"] = portable_name(settings.get("base_model"))
    agent_file.write_text(json.dumps(settings, indent=2))
    adapter_config = folder / "adapter_config.json"
    if adapter_config.is_file():
        settings = json.loads(adapter_config.read_text())
        # Loading reads the base from uivlm_agent.json; this field is for the Hub's listing.
        settings["base_model_name_or_path"] = portable_name(wrapper.base_model_name)
        adapter_config.write_text(json.dumps(settings, indent=2, sort_keys=True))
        (folder / "README.md").unlink(missing_ok=True)


def load_trained_agent(adapter_dir: str | Path) -> VLMWrapper:
    """The agent 03_lora_train saved in ``RUN_DIR/adapter``, or a clear error when there is none."""

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / AGENT_FILE).is_file():
        raise FileNotFoundError(f"no trained agent in {adapter_dir}: run 03_lora_train (it saves the adapter "
                                "there) before sharing")
    return VLMWrapper(str(adapter_dir))


def save_agent(wrapper: VLMWrapper, folder: str | Path, merge: bool = True,
               config: RunConfig | None = None) -> Path:
    """Save what is shared: the base with the adapter merged in (``merge``), or the adapter alone
    (small; loading it fetches the base model named in its ``uivlm_agent.json``); with ``config``, the
    run configuration that trained it goes along (``uivlm_run_config.yaml``, see :func:`shareable_config`).

    Raises:
        ValueError: the adapter alone is asked for, but its base model is a local folder (others could
            not load it); share it merged instead.
    """
    if wrapper.has_adapter and not merge and _is_local_path(wrapper.base_model_name):
        raise ValueError(f"share.merge is false, so the adapter is shared alone and loads its base model by "
                         f"name, but the base {portable_name(wrapper.base_model_name)!r} is a folder on this "
                         "machine that others cannot load: share the merged agent (MERGE = True) or train from "
                         "a Hub model")
    if merge and wrapper.has_adapter:
        folder = merge_and_save(wrapper, folder)
    else:
        folder = wrapper.save_pretrained(folder)
    _scrub_saved_agent(wrapper, Path(folder))
    if config is not None:
        shareable_config(config).save(Path(folder) / RUN_CONFIG_FILE)
    return folder


def attach_figure(figure: str | Path, folder: str | Path) -> str:
    """Copy a figure into the shared folder; returns its name for the model card's link."""

    figure = Path(figure)
    shutil.copy(figure, Path(folder) / figure.name)
    return figure.name


def reproduces_predictions(agent: VLMWrapper, predictions_file: str | Path, batch_size: int = 8) -> dict:
    """Predict the records of a ``predictions.jsonl`` again and compare the raw answers.

    Returns the number of records, how many answers are identical, and the ids of those that differ.
    """

    before = read_predictions(predictions_file)
    records = [{"id": r["id"], "image": r["image"], "instruction": r["instruction"], "action": r["target"],
                "bbox": r["bbox"]} for r in before]
    after = predict_records(agent, records, batch_size, progress=False)
    differing = [b["id"] for b, a in zip(before, after) if b["raw_text"] != a["raw_text"]]
    return {"n": len(before), "identical": len(before) - len(differing), "differing_ids": differing,
            "all_identical": not differing}


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def model_card(config: RunConfig, metrics: dict[str, dict], training: dict | None = None,
               data_summary: dict | None = None, repo_id: str | None = None,
               overlay_file: str | None = None) -> str:
    """A Hub model card (README.md with YAML metadata) describing the run and its evaluation.

    ``training`` is 03_lora_train's results; its ``trained`` (:meth:`.VLMWrapper.trained_parts`, counted
    from the model's parameters) says which parts were trained. The dataset and the base model are named,
    never given as local paths.
    """
    m = config.model
    base_model, dataset = portable_name(m.name), portable_name(config.data.source)
    header = {"base_model": base_model, "library_name": "transformers", "license": "other",
              "pipeline_tag": "image-text-to-text",
              "tags": ["uivlm", "gui-agent", "ui-grounding", "lora" if m.use_lora else "full-finetune"],
              "datasets": [dataset]}
    keys = ("n", "parse_rate", "type_accuracy", "click_accuracy", "mean_distance_px")
    table = ["| model | " + " | ".join(keys) + " | MiniWoB++ live success (mean) |", "|---" * (len(keys) + 2) + "|"]
    table += [f"| {name} | " + " | ".join(_fmt(values.get(k)) for k in keys)
              + f" | {_fmt((values.get('live_success') or {}).get('mean'))} |" for name, values in metrics.items()]
    blind = next((v["blind_baseline"] for v in metrics.values() if v.get("blind_baseline") is not None), None)
    if blind is not None:  # accuracy means little without what ignoring the instruction would score
        table += ["", f"Instruction-blind baseline on this split: {_fmt(blind)} (clicking one of the elements the "
                  "instruction's kind could name, at random); clicks on another such element: "
                  + ", ".join(f"{name} {_fmt(v.get('distractor_click_rate'))}" for name, v in metrics.items()) + "."]
    lora = m.lora_config
    trained = (training or {}).get("trained")
    trained_line = (f"- What trained (counted from the parameters): {trained['summary'].removeprefix('trained: ')}"
                    if trained else "- What trained: not recorded (03_lora_train's results have no parameter "
                    "count; run 03 again)")
    lines = [
        "---", _yaml(header), "---", "",
        f"# {repo_id or 'uivlm agent'}", "",
        f"A UI agent fine-tuned from `{base_model}` with uivlm: it reads a screenshot "
        "and an instruction and answers with the next action "
        f"(`{m.action_format}` format, e.g. `click(x, y)`).", "",
        "## Training", "",
        f"- Method: {'LoRA' if m.use_lora else 'full fine-tune'}"
        + (f" (r={lora.r}, alpha={lora.lora_alpha}, dropout={lora.lora_dropout})" if m.use_lora else ""),
        trained_line,
        f"- Steps: {(training or {}).get('global_step', config.training.max_steps)}, batch "
        f"{config.training.batch_size} × accumulation {config.training.gradient_accumulation_steps}, "
        f"learning rate {config.algorithm.learning_rate}",
        f"- Data: {dataset}" + (f" ({data_summary})" if data_summary else ""),
        f"- Pixel budget: min {m.min_pixels}, max {m.max_pixels} (None = the checkpoint's)", "",
        "## Evaluation", "", *table, "",
    ]
    if overlay_file:
        lines += [f"![predicted (red) vs target (green) clicks]({overlay_file})", ""]
    lines += [
        "## How to load", "", "```python", "from uivlm_helpers import VLMWrapper",
        f"agent = VLMWrapper(model_name={repo_id or 'path/to/this/folder'!r})",
        'action = agent.predict_action(screenshot, "Click the Save button")', "```", "",
        "## Intended use and limitations", "",
        "Research on UI grounding and GUI agents. It predicts one action per screenshot; it was "
        "evaluated only on the data above and can click the wrong element on unfamiliar screens. "
        "Keep a person in the loop before it acts on real systems.", "",
    ]
    return "\n".join(lines)


def _yaml(mapping: dict) -> str:
    return yaml.safe_dump(mapping, sort_keys=False).strip()


def upload_plan(folder: str | Path) -> list[dict]:
    """Every file a push would upload, with its size in bytes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"nothing to share: {folder} does not exist; run 05_share's save step first")
    return [{"path": str(p.relative_to(folder)), "bytes": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file()]


def _find_token() -> str | None:
    return os.environ.get("HF_TOKEN") or get_token()


def push_to_hub(folder: str | Path, repo_id: str | None, private: bool = True, push: bool = False) -> dict:
    """Upload ``folder`` to ``repo_id`` when asked and a token exists; otherwise a dry run.

    Returns a summary (repo id, visibility, files, total bytes, whether it was pushed and why not) that
    never contains the token.
    """
    if repo_id is None or not REPO_ID_PATTERN.match(repo_id):
        raise ValueError(f"share.repo_id: expected 'owner/name' (letters, digits, '-', '_', '.'), got {repo_id!r}")
    files = upload_plan(folder)
    summary = {"repo_id": repo_id, "private": private, "files": files,
               "total_bytes": sum(f["bytes"] for f in files), "pushed": False}
    token = _find_token() if push else None
    if not push:
        summary["reason"] = "dry run: set PUSH_TO_HUB=True to upload"
        return summary
    if token is None:
        summary["reason"] = "dry run: no Hub token (set HF_TOKEN or run `hf auth login`)"
        return summary

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload uivlm agent")
    except Exception as error:  # network down, permission, ... : say what to do, keep the run intact
        message = str(error).replace(token, "***")
        raise RuntimeError(f"push to {repo_id} failed ({type(error).__name__}: {message}); the run folder "
                           "is unchanged: check the network and the token's write access, then run "
                           "05_share again") from None
    summary["pushed"] = True
    return summary
