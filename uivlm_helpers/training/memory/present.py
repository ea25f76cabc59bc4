"""The training memory estimate shown: a table, a stacked bar, a one-line fits / won't-fit verdict with
the cheapest change that fits, and a widget that keeps them current for the workbook."""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as w
import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import display

from ...core.config import RunConfig
from ...families.registry import FAMILIES
from .components import detect_device_gib
from .estimate import estimate_training_memory, plan_uncheckpointed_layers
from .suggest import reestimate, suggest_changes

_DESCRIPTIONS = {
    "weights": "model weights (dtype / quantization)",
    "lora": "LoRA adapter weights (fp32)",
    "gradients": "gradients of the trainable parameters",
    "optimizer": "AdamW state (2 per trainable parameter)",
    "activations": "tensors saved for backward (+ batch inputs)",
    "logits": "vocabulary logits, log-softmax and their gradients",
    "overhead": "CUDA context / process and allocator slack",
}


def estimate_table(estimate: dict):
    """The estimate as a table: one row per component (GiB, share of the total, what it is), then the total."""

    total = estimate["total_gib"]
    rows = [{"component": name, "GiB": round(gib, 3), "share %": round(100 * gib / total, 1) if total else 0.0,
             "what": _DESCRIPTIONS[name]} for name, gib in estimate["components"].items()]
    rows.append({"component": "total", "GiB": round(total, 3), "share %": 100.0,
                 "what": f"{estimate['model']}, batch {estimate['batch_size']} x {estimate['sequence_tokens']} "
                         f"tokens ({estimate['image_tokens']} image)"})
    table = pd.DataFrame(rows).set_index("component")
    # The label moves from the index to the column axis: an index name renders as a second header
    # row of empty cells, a column-axis name sits in the one header row's corner.
    table.index.name, table.columns.name = None, "component"
    return table


def estimate_figure(estimate: dict, path=None, gpu_gib: float | None = None):
    """A single stacked bar of the components (GiB); saved to ``path`` when given. Returns the figure."""

    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    bottom = 0.0
    colors = plt.get_cmap("tab10").colors
    for (name, gib), color in zip(estimate["components"].items(), colors):
        if gib <= 0:
            continue
        ax.bar([0], [gib], bottom=bottom, color=color, width=0.5, label=f"{name} {gib:.2f}")
        bottom += gib
    if gpu_gib:
        ax.axhline(gpu_gib, color="black", linestyle="--", linewidth=1, label=f"GPU {gpu_gib:.0f} GiB")
    ax.set_xticks([0], [estimate["model"].split("/")[-1]])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel("GiB")
    ax.set_title(f"training memory estimate: {estimate['total_gib']:.2f} GiB", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def fits_message(estimate: dict, gpu_gib: float | None = None) -> str:
    """One line: does the estimate fit ``gpu_gib`` (default: this machine's first GPU), and if not, the
    cheapest settings change that makes it fit (found by re-estimating); with an episode history, what the
    history costs and what a longer one would (:func:`history_note`)."""
    name = None
    if gpu_gib is None:
        gpu_gib, name = detect_device_gib()
        if gpu_gib is None:
            return (f"No GPU here: training these settings needs ~{estimate['total_gib']:.1f} GiB "
                    f"({'RAM on the CPU' if estimate['assumptions']['device'] == 'cpu' else 'of GPU memory'})"
                    + history_note(estimate) + _length_note(estimate))
    where = f"{gpu_gib:.1f} GiB" + (f" ({name})" if name else "")
    total = estimate["total_gib"]
    if total <= gpu_gib:
        message = f"fits: ~{total:.1f} GiB of {where} ({100 * total / gpu_gib:.0f}%)" + _room_note(estimate, gpu_gib)
    else:
        found = suggest_changes(estimate, gpu_gib)
        if found is None:
            message = (f"won't fit in {where}: needs ~{total:.1f} GiB even with batch 1, gradient checkpointing, "
                       "4-bit and a small pixel budget; use a larger GPU or a smaller model")
        else:
            text, _, new = found
            message = f"won't fit in {where} (needs ~{total:.1f} GiB): try {text} (~{new['total_gib']:.1f} GiB)"
    return message + history_note(estimate) + _length_note(estimate)


def history_note(estimate: dict) -> str:
    """What the episode history costs, e.g. ``"; history: 4 actions (~70 tokens) + 2 screenshots at
    200,704 px (~516 tokens): +1.23 GiB; 4 more actions +0.05 GiB, one more screenshot +0.41 GiB"`` (each
    found by re-estimating without the history, or with a longer one); ``""`` without history."""
    history = estimate.get("history")
    if not history or not history["tokens"]:
        return ""
    parts = []
    if history["window"]:
        parts.append(f"{history['window']} actions (~{history['text_tokens']:.0f} tokens)")
    if history["images"]:
        at = f" at {history['pixels']:,} px" if history["pixels"] else ""
        parts.append(f"{history['images']} screenshot{'s' if history['images'] > 1 else ''}{at} "
                     f"(~{history['images'] * history['image_tokens']:,} tokens)")
    total = estimate["total_gib"]
    without = reestimate(estimate, **{"data.history_window": 0, "data.history_images": 0})["total_gib"]
    more_actions = reestimate(estimate, **{"data.history_window": history["window"] + 4})["total_gib"] - total
    longer = [f"4 more actions +{more_actions:.2f} GiB"]
    if _multi_image(estimate):
        more_image = reestimate(estimate, **{"data.history_images": history["images"] + 1})["total_gib"] - total
        longer.append(f"one more screenshot +{more_image:.2f} GiB")
    return f"; history: {' + '.join(parts)}: +{total - without:.2f} GiB; " + ", ".join(longer)


def _multi_image(estimate: dict) -> bool:
    """The estimated model's family takes several images (so one more history screenshot is an option)."""
    spec = estimate["inputs"]["options"]["spec"]
    return bool(spec) and FAMILIES[spec["family"]].multi_image


def _room_note(estimate: dict, gpu_gib: float) -> str:
    """With gradient checkpointing and memory to spare: how many layers could skip it and still fit."""
    config = estimate["inputs"]["config"]
    if not config.training.gradient_checkpointing:
        return ""
    plan = plan_uncheckpointed_layers(config, gpu_gib, estimate["inputs"]["image_size"], measure="total_gib",
                                      **estimate["inputs"]["options"])
    current = estimate["assumptions"]["checkpointed_layers"]
    if plan["uncheckpointed_layers"] <= current[1] - current[0]:
        return ""
    return (f"; room for training.uncheckpointed_layers={plan['uncheckpointed_layers']} of {plan['layers']} "
            f"(less recomputation, ~{plan['estimate_gib']:.1f} GiB)")


def _length_note(estimate: dict) -> str:
    config = estimate["inputs"]["config"]
    if not estimate["assumptions"]["max_length_exceeded"]:
        return ""
    return (f"; note: {estimate['sequence_tokens']} tokens per sample exceed training.max_length="
            f"{config.training.max_length} (lower model.max_pixels or raise max_length)")


class EstimateView:
    """The memory estimate as a widget: a table and a fits / won't-fit line, refreshed by :meth:`update`.

    Works headless: :attr:`text` holds what is shown, and :attr:`estimate` the last estimate.

    Args:
        config: the run configuration to estimate.
        gpu_gib: GPU memory to compare with; None detects this machine's GPU.
    """

    def __init__(self, config: RunConfig, gpu_gib: float | None = None):
        self.gpu_gib = gpu_gib
        self.estimate: dict | None = None
        self.text = ""
        self.table = w.HTML()
        self.message = w.HTML()
        self.box = w.VBox([w.HTML("<b>Training memory estimate</b>"), self.table, self.message])
        self.update(config)

    def update(self, config: RunConfig) -> None:
        """Recompute for ``config`` (e.g. after the model picker changed); errors are shown, not raised."""

        try:
            self.estimate = estimate_training_memory(config)
        except (ValueError, KeyError) as error:
            self.estimate = None
            self.text = f"{config.model.name}: no estimate ({error})"
            self.table.value = ""
            self.message.value = html.escape(self.text)
            return
        table = estimate_table(self.estimate)
        message = fits_message(self.estimate, self.gpu_gib)
        self.text = f"{table[['GiB', 'share %']].to_string()}\n{message}"
        self.table.value = table.to_html()
        self.message.value = html.escape(message)

    def _ipython_display_(self):
        display(self.box)

