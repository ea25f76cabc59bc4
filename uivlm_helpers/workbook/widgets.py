"""Widgets for the notebooks, built explicitly so they also work (and are tested) headless.

Each widget is seeded from the run configuration (which papermill parameters have already set) and
writes every change back into it through ``observe``; later cells read the configuration, never the
widget, so an interactive choice and a papermill parameter reach the run the same way.
"""

from __future__ import annotations

import html
import importlib.util
import io
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

import ipywidgets as w
import torch
from huggingface_hub import try_to_load_from_cache
from IPython.display import display

from ..core.actions import ACTION_FORMATS
from ..core.config import RunConfig
from ..families.registry import FAMILIES, TINY_MODELS
from ..models.pretrained import SHIPPED_MODELS, shipped_model_path
from .viz import overlay_for_row

#: The model picker's entries by family title: (label, model name), from each family's plug-in (``picker``), in
#: registry order. Sizes are total parameters. Each family has an "offline tiny" entry: the embedded
#: random-weight checkpoint of that architecture (see ``tiny.py``), built on this machine, so it loads with no
#: network and no GPU.
MODEL_CHOICES = {plugin.display: [tuple(entry) for entry in plugin.picker] for plugin in FAMILIES.values()}


def model_options() -> list[tuple[str, str]]:
    """Dropdown options grouped by family: ``("Family · size", name)``."""
    return [(f"{family} · {label}", name) for family, entries in MODEL_CHOICES.items()
            for label, name in entries]


# -- is a choice usable on this machine? -----------------------------------------------------------------
def _cuda_available() -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # no usable torch/CUDA: treat as no GPU
        return False


def _bitsandbytes_installed() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) set to a true value."""
    return any(os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
               for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_cached(model_name: str) -> bool:
    """Whether the Hugging Face cache already holds the model's ``config.json`` (so it may load offline)."""
    try:
        return isinstance(try_to_load_from_cache(model_name, "config.json"), str)
    except Exception:  # a name that is not a valid repo id, or no huggingface_hub
        return False


_HUB_REACHABLE: dict[str, bool] = {}


def _hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hub's host accepts a TCP connection (checked once per process, at most ``timeout`` s).

    Runs in a thread so a hanging DNS lookup cannot block the widget callback longer than ``timeout``.
    """

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _HUB_REACHABLE:
        url = urlparse(endpoint)
        host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
        result = []

        def probe():
            try:
                socket.create_connection((host, port), timeout=timeout).close()
                result.append(True)
            except OSError:
                result.append(False)

        thread = threading.Thread(target=probe, daemon=True)
        thread.start()
        thread.join(timeout)
        _HUB_REACHABLE[endpoint] = bool(result and result[0])
    return _HUB_REACHABLE[endpoint]


def _model_availability(name: str) -> str | None:
    if name in TINY_MODELS:
        return None
    if name in SHIPPED_MODELS:
        try:
            shipped_model_path(name)
        except FileNotFoundError as err:
            return str(err)
        return None
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            return f"The folder {name} has no config.json: it is not a saved model."
        return None
    if name.startswith(("/", "./", "../", "~")):
        return f"There is no folder {name} on this machine."
    if _hub_cached(name):
        return None
    offline_hint = "pick an “offline tiny” entry, or a local folder with the model"
    if _hub_offline():
        return (f"{name} is not available here: HF_HUB_OFFLINE is set and the Hugging Face cache has no copy "
                f"of it; {offline_hint}.")
    if not _hub_reachable():
        return (f"{name} is not available here: the Hugging Face Hub cannot be reached from this machine and "
                f"the cache has no copy of it; {offline_hint}.")
    return f"{name} is not cached yet: loading it in the next cells downloads it from the Hub."


def availability_message(config: RunConfig) -> str | None:
    """What in ``config`` this machine cannot do, in plain words (one line per problem); None when all is fine.

    Checks the model (an embedded tiny model and a local folder always load; a Hub model needs a cached
    copy, or network with ``HF_HUB_OFFLINE`` unset), and what needs a CUDA GPU: 4-/8-bit loading
    (bitsandbytes), ``device: cuda``, a bfloat16/float16 ``torch_dtype`` and fp16/bf16 mixed precision.
    """
    m, t = config.model, config.training
    problems = []
    model = _model_availability(m.name)
    if model:
        problems.append(model)
    cuda = _cuda_available()
    quantized = "4-bit" if m.load_in_4bit else ("8-bit" if m.load_in_8bit else None)
    if quantized and not cuda:
        problems.append(f"{quantized} loading (bitsandbytes, QLoRA) needs a CUDA GPU and this machine has none: "
                        f"set model.load_in_{quantized[0]}bit to false here.")
    elif quantized and not _bitsandbytes_installed():
        problems.append(f"{quantized} loading needs the bitsandbytes package: pip install bitsandbytes.")
    if not cuda:
        if str(m.device).startswith("cuda"):
            problems.append(f"model.device is {m.device!r} but this machine has no CUDA GPU: use cpu (or auto).")
        if m.torch_dtype in ("bfloat16", "float16"):
            problems.append(f"torch_dtype {m.torch_dtype} without a CUDA GPU: on the CPU it is slow and some "
                            "operations do not support it; use float32 here.")
        if t.mixed_precision in ("bf16", "fp16"):
            problems.append(f"mixed precision {t.mixed_precision} needs a CUDA GPU: set training.mixed_precision "
                            "to no here.")
    return "\n".join(problems) if problems else None


def _notice_html(message: str | None) -> str:
    if not message:
        return ""
    lines = "<br>".join(f"⚠ {html.escape(line)}" for line in message.splitlines())
    return (f'<div class="uivlm-availability" style="color:#8a4b00;background:#fff4e0;padding:4px 8px;'
            f'border-left:3px solid #e69500;line-height:1.4">{lines}</div>')


class SetupWidgets:
    """The model and action-format pickers of 01_setup, bound to a run configuration.

    Args:
        config: the run configuration the choices are written into.
        on_change: called after each change (e.g. to refresh the memory estimate).
        path: when given (e.g. ``paths.config``), each change also saves the configuration there, so the
            next notebooks see a choice even before 01's last cell runs again.
    """

    def __init__(self, config: RunConfig, on_change=None, path=None):
        self.config = config
        self.on_change = on_change
        self.path = path
        options = model_options()
        if config.model.name not in {name for _, name in options}:
            options.append((f"custom · {config.model.name}", config.model.name))
        style = {"description_width": "150px"}
        self.model = w.Dropdown(options=options, value=config.model.name, description="Model (family · size)",
                                style=style, layout=w.Layout(width="560px"),
                                tooltip="model.name: an offline tiny model, a Hub model or a local folder")
        self.action_format = w.ToggleButtons(options=list(ACTION_FORMATS), value=config.model.action_format,
                                             description="Action format", style={**style, "button_width": "110px"},
                                             tooltips=["click(100, 200)", '{"type": "click", ...}', "100 200 click"])
        # JupyterLab 4 lays a ToggleButtons' description out on a line of its own; this puts it beside the
        # buttons, right-aligned like the model picker's.
        self.action_format.add_class("widget-inline-hbox")
        # Availability of the current choice on this machine (empty when everything is usable).
        self.notice = w.HTML(layout=w.Layout(width="560px"))
        self.message = w.Output()
        self.model.observe(self._set("model.name"), names="value")
        self.action_format.observe(self._set("model.action_format"), names="value")
        self.box = w.VBox([self.model, self.action_format, self.notice, self.message])
        self.check_availability()

    def check_availability(self) -> str | None:
        """Show :func:`availability_message` for the current configuration in the message area."""
        message = availability_message(self.config)
        self.notice.value = _notice_html(message)
        return message

    def _set(self, key):
        def handler(change):
            # Output.capture shows a callback's error in the notebook instead of losing it.
            with self.message:
                self.message.clear_output()
                self.config.set(key, change["new"])
                if self.path is not None:
                    self.config.save(self.path)
                try:
                    if self.on_change:
                        self.on_change(self.config)
                finally:  # after the (fast) estimate: a Hub check may wait up to 2 s for the network
                    self.check_availability()
        return handler

    def _ipython_display_(self):
        display(self.box)


PREDICTION_FILTERS = ("all", "correct", "incorrect", "unparsed")
#: Clicks on another widget the instruction's kind could name (rows scored with distractors).
ON_DISTRACTOR = "on a distractor"


class PredictionBrowser:
    """Page through evaluation predictions (rows of ``predictions.jsonl``) as overlays.

    A filter (all / correct / incorrect / unparsed, "on a distractor" where the records list their
    distractors, plus each action type of the targets) picks the rows; the arrows page through them.
    Works headless: set ``filter.value`` or call :meth:`next`.
    """

    def __init__(self, rows: list[dict]):
        self.rows = list(rows)
        types = sorted({r["target"]["type"] for r in self.rows})
        distractors = [ON_DISTRACTOR] if any(r.get("on_distractor") is not None for r in self.rows) else []
        self.filter = w.Dropdown(options=list(PREDICTION_FILTERS) + distractors + [f"type: {t}" for t in types],
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
        if choice == ON_DISTRACTOR:
            return [r for r in self.rows if r.get("on_distractor")]
        return [r for r in self.rows if r["target"]["type"] == choice.removeprefix("type: ")]

    def show(self, index: int) -> None:
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
                                                     else "incorrect" + (" (on a distractor)" if row.get("on_distractor")
                                                                         else ""))
        self.caption.value = (f"<b>{html.escape(row['instruction'])}</b><br>raw: <code>"
                              f"{html.escape(repr(row.get('raw_text')))}</code><br>{html.escape(verdict)}")

    def next(self) -> None:
        self.show(self.index + 1)

    def previous(self) -> None:
        self.show(self.index - 1)

    def _ipython_display_(self):
        display(self.box)
