"""Pictures: loss curves, predicted-vs-true click overlays, galleries and metric bars.

Overlays draw in screenshot pixels: the target box in green, the target point as a small green dot,
the predicted point as a red cross inside a circle. Every figure can be saved, so a headless run has
the same pictures an interactive one shows.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image, ImageDraw

TARGET_COLOUR = (0, 170, 0)
PREDICTION_COLOUR = (230, 0, 0)


def save_figure(fig, path: str | Path, close: bool = False) -> Path:
    """Write ``fig`` as a PNG (creating folders); ``close`` keeps a notebook from showing it again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    if close:
        plt.close(fig)
    return path


def draw_overlay(image: Image.Image, target_box=None, target_point=None, predicted_point=None,
                 marker_radius: int = 5) -> Image.Image:
    """A copy of the screenshot with the target box/point and the predicted point drawn on it."""
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    if target_box:
        draw.rectangle(list(target_box), outline=TARGET_COLOUR, width=2)
    if target_point:
        x, y = target_point
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=TARGET_COLOUR)
    if predicted_point:
        x, y = predicted_point
        r = marker_radius
        draw.ellipse([x - r, y - r, x + r, y + r], outline=PREDICTION_COLOUR, width=2)
        draw.line([x - r, y, x + r, y], fill=PREDICTION_COLOUR, width=1)
        draw.line([x, y - r, x, y + r], fill=PREDICTION_COLOUR, width=1)
    return canvas


def overlay_for_row(row: dict) -> Image.Image:
    """Overlay for one row of ``predictions.jsonl`` (or any dict with image/bbox/target/predicted)."""
    target = row.get("target") or {}
    predicted = row.get("predicted") or {}
    return draw_overlay(Image.open(row["image"]),
                        target_box=row.get("bbox"),
                        target_point=(target["x"], target["y"]) if "x" in target else None,
                        predicted_point=(predicted["x"], predicted["y"]) if "x" in predicted else None)


def gallery(rows: list[dict], path: str | Path | None = None, columns: int = 3, title: str | None = None):
    """A grid of overlays with each instruction and answer as its caption; saved when ``path`` is given."""

    rows = list(rows)
    columns = max(1, min(columns, len(rows)))
    n_rows = max(1, -(-len(rows) // columns))
    fig, axes = plt.subplots(n_rows, columns, figsize=(3.2 * columns, 3.6 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        ax.imshow(overlay_for_row(row))
        verdict = {None: "", True: "✓ ", False: "✗ "}[None if row.get("correct") is None else bool(row["correct"])]
        ax.set_title(f"{verdict}{row['instruction'][:34]}\n{(row.get('raw_text') or '')[:34]!r}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    # leave the top strip to the title so it does not cover the captions
    fig.tight_layout(rect=(0, 0, 1, 0.94 if title else 1))
    if path:
        save_figure(fig, path)
    return fig


def candidate_bars(named_metrics: dict[str, dict], path=None, title=None):
    """Click accuracy by number of candidates on the screen, one bar per model, with the
    instruction-blind baseline (1 / candidates) as a black line over each group.

    Returns None (and writes nothing) when no model's metrics have ``by_candidates``.
    """

    counts = sorted({c for m in named_metrics.values() for c in m.get("by_candidates", {})}, key=int)
    if not counts:
        return None
    names = list(named_metrics)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(4, 1.4 * len(counts)), 3))
    for i, name in enumerate(names):
        groups = named_metrics[name].get("by_candidates", {})
        values = [(groups.get(c) or {}).get("click_accuracy") or 0.0 for c in counts]
        ax.bar([j - 0.4 + (i + 0.5) * width for j in range(len(counts))], values, width, label=name)
    for j, c in enumerate(counts):
        ax.hlines(1 / int(c), j - 0.4, j + 0.4, colors="black", linestyles="--",
                  label="instruction-blind baseline" if j == 0 else None)
    ax.set_xticks(range(len(counts)), [f"{c} candidate{'s' if c != '1' else ''}" for c in counts])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("click accuracy")
    ax.legend(fontsize=8)
    ax.set_title(title or "click accuracy by number of candidates")
    fig.tight_layout()
    if path:
        save_figure(fig, path)
    return fig


def metric_bars(breakdown: dict[str, dict], metric: str = "click_accuracy", path=None, title=None):
    """Bar chart of one metric per group (e.g. ``metrics['by_element_type']``)."""

    names = list(breakdown)
    values = [breakdown[n].get(metric) or 0.0 for n in names]
    fig, ax = plt.subplots(figsize=(max(4, 1.1 * len(names)), 3))
    ax.bar(names, values, color="tab:green")
    ax.set_ylim(0, 1)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or metric.replace("_", " "))
    fig.tight_layout()
    if path:
        save_figure(fig, path)
    return fig
