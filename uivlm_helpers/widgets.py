"""Widgets for the notebooks, built explicitly so they also work (and are tested) headless.

Each widget is seeded from the run configuration (which papermill parameters have already set) and
writes every change back into it through ``observe``; later cells read the configuration, never the
widget, so an interactive choice and a papermill parameter reach the run the same way.
"""

from __future__ import annotations

import ipywidgets as w

from .actions import ACTION_FORMATS
from .config import RunConfig

#: The model picker's entries by family: (label, model name). Sizes are total parameters.
MODEL_CHOICES = {
    "Qwen2-VL": [("offline tiny (1.1 M, random weights, CPU)", "uivlm/tiny-qwen2-vl"),
                 ("2B Instruct", "Qwen/Qwen2-VL-2B-Instruct"), ("7B Instruct", "Qwen/Qwen2-VL-7B-Instruct")],
    "Qwen2.5-VL": [("3B Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"), ("7B Instruct", "Qwen/Qwen2.5-VL-7B-Instruct")],
    "LLaVA-1.5": [("7B", "llava-hf/llava-1.5-7b-hf"), ("13B", "llava-hf/llava-1.5-13b-hf")],
    "Idefics2": [("8B", "HuggingFaceM4/idefics2-8b")],
    "Florence-2": [("large (0.77 B)", "microsoft/Florence-2-large")],
    "PaliGemma": [("3B pt 224", "google/paligemma-3b-pt-224")],
}


def model_options() -> list[tuple[str, str]]:
    """Dropdown options grouped by family: ``("Family · size", name)``."""
    return [(f"{family} · {label}", name) for family, entries in MODEL_CHOICES.items()
            for label, name in entries]


class SetupWidgets:
    """The model and action-format pickers of 01_setup, bound to a run configuration.

    Args:
        config: the run configuration the choices are written into.
        on_change: called after each change (e.g. to refresh the memory estimate).
    """

    def __init__(self, config: RunConfig, on_change=None):
        self.config = config
        self.on_change = on_change
        options = model_options()
        if config.model.name not in {name for _, name in options}:
            options.append((f"custom · {config.model.name}", config.model.name))
        style = {"description_width": "120px"}
        self.model = w.Dropdown(options=options, value=config.model.name, description="Model",
                                style=style, layout=w.Layout(width="520px"))
        self.action_format = w.ToggleButtons(options=list(ACTION_FORMATS), value=config.model.action_format,
                                             description="Action format", style=style,
                                             tooltips=["click(100, 200)", '{"type": "click", ...}', "100 200 click"])
        self.message = w.Output()
        self.model.observe(self._set("model.name"), names="value")
        self.action_format.observe(self._set("model.action_format"), names="value")
        self.box = w.VBox([self.model, self.action_format, self.message])

    def _set(self, key):
        def handler(change):
            # Output.capture shows a callback's error in the notebook instead of losing it.
            with self.message:
                self.message.clear_output()
                self.config.set(key, change["new"])
                if self.on_change:
                    self.on_change(self.config)
        return handler

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)


PREDICTION_FILTERS = ("all", "correct", "incorrect", "unparsed")


class PredictionBrowser:
    """Page through evaluation predictions (rows of ``predictions.jsonl``) as overlays.

    A filter (all / correct / incorrect / unparsed, plus each action type of the targets) picks the
    rows; the arrows page through them. Works headless: set ``filter.value`` or call :meth:`next`.
    """

    def __init__(self, rows: list[dict]):
        self.rows = list(rows)
        types = sorted({r["target"]["type"] for r in self.rows})
        self.filter = w.Dropdown(options=list(PREDICTION_FILTERS) + [f"type: {t}" for t in types],
                                 value="all", description="Show")
        self.previous_button = w.Button(description="◀ previous", layout=w.Layout(width="110px"))
        self.next_button = w.Button(description="next ▶", layout=w.Layout(width="110px"))
        self.position = w.Label()
        self.caption = w.HTML()
        self.image = w.Image(format="png", layout=w.Layout(max_width="480px"))
        self.index = 0
        self.filter.observe(lambda _: self.show(0), names="value")
        self.previous_button.on_click(lambda _: self.previous())
        self.next_button.on_click(lambda _: self.next())
        self.box = w.VBox([w.HBox([self.filter, self.previous_button, self.next_button, self.position]),
                           self.caption, self.image])
        self.show(0)

    @property
    def selected(self) -> list[dict]:
        choice = self.filter.value
        if choice == "all":
            return self.rows
        if choice == "correct":
            return [r for r in self.rows if r["correct"]]
        if choice == "incorrect":
            return [r for r in self.rows if not r["correct"]]
        if choice == "unparsed":
            return [r for r in self.rows if not r["parsed"]]
        return [r for r in self.rows if r["target"]["type"] == choice.removeprefix("type: ")]

    def show(self, index: int) -> None:
        import html
        import io

        from .viz import overlay_for_row

        rows = self.selected
        if not rows:
            self.index, self.image.value = 0, b""
            self.position.value = "0 / 0"
            self.caption.value = "<i>no predictions match this filter</i>"
            return
        self.index = index % len(rows)
        row = rows[self.index]
        buffer = io.BytesIO()
        overlay_for_row(row).save(buffer, format="PNG")
        self.image.value = buffer.getvalue()
        self.position.value = f"{self.index + 1} / {len(rows)}"
        verdict = "correct" if row["correct"] else ("unparsed: " + (row.get("failure") or "") if not row["parsed"]
                                                     else "incorrect")
        self.caption.value = (f"<b>{html.escape(row['instruction'])}</b><br>raw: <code>"
                              f"{html.escape(repr(row.get('raw_text')))}</code><br>{html.escape(verdict)}")

    def next(self) -> None:
        self.show(self.index + 1)

    def previous(self) -> None:
        self.show(self.index - 1)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)
