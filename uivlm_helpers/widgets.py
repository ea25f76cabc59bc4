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
