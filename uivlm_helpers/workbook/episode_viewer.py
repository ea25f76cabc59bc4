"""The episode viewer of 04_eval: one multi-step episode at a time, as a filmstrip of its steps.

Each step's cell shows the screenshot with the true action (green) and the predicted action (red)
drawn on it, the step number (from 1, like the episodes) with ✓ or ✗, both actions as text and the
history lines the model saw in its prompt. Point actions (click, double_click, long_press, a drag's two
ends) are drawn as markers with :func:`.viz.draw_overlay`; the others (type, press, scroll, wait, done)
and an unparsed answer are written as text in a strip under the screenshot, so no writing ever covers
the screen itself.

Buttons page through the episodes (wrapping at either end) and a checkbox keeps only the failed ones;
an episode succeeds when every one of its steps is correct. Works headless:
:meth:`EpisodeViewer.render_episode` returns the content (PIL images and text) of one episode without
any front end.

Input rows, one per step (the rows of ``predictions.jsonl`` plus the episode keys):

========================  ============================================================================
``episode_id``            a string or number naming the episode (rows may come in any order); None or
                          absent: a single-screen record, shown as an episode of one step
``step``                  the step's 0-based position in its episode (an int, unique there)
``image``                 required; the screenshot: a file path or a PIL image
``target``                required; the true action dict, in screenshot pixels
``predicted``             the predicted action dict in screenshot pixels; None (or absent) when unparsed
``bbox``                  the target element's box ``[x1, y1, x2, y2]`` in pixels, or None
``correct``               the step's success (bool); absent: scored here with
                          :func:`.evaluation.evaluate.score_prediction` (with ``distractors`` if given)
``history_text``          the history lines of the step's prompt: a string or a list of lines; may be empty
``instruction``           the instruction the model was given
``raw_text`` (or ``raw``) the model's answer as text, shown when nothing could be parsed from it
``failure``               why the answer did not parse (as :func:`predict_records` writes it)
``id``, ``image_size``    ``id`` is shown beside the step number; ``image_size`` must match the screenshot
========================  ============================================================================
"""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import ipywidgets as w
from IPython.display import display
from PIL import Image, ImageDraw, ImageFont

from ..core.actions import Action, render_action
from ..core.images import as_image
from ..evaluation.evaluate import score_prediction
from .viz import PREDICTION_COLOUR, TARGET_COLOUR, draw_overlay

#: Button and checkbox texts (a browser test finds the controls by them).
PREVIOUS_LABEL = "◀ previous episode"
NEXT_LABEL = "next episode ▶"
FAILED_ONLY_LABEL = "failed episodes only"
#: Actions drawn as a marker at their point; every other action is written under the screenshot.
_MARKED_TYPES = ("click", "double_click", "long_press", "drag")
_REQUIRED_KEYS = ("image", "target")
_STRIP_BACKGROUND = (255, 255, 255)


@dataclass
class StepView:
    """What one step's cell shows: the drawn screenshot and the texts beside it."""

    step: int
    correct: bool
    parsed: bool
    image: Image.Image
    predicted_text: str
    target_text: str
    history_text: str
    instruction: str
    raw_text: str | None
    id: object = None

    @property
    def verdict(self) -> str:
        return "✓" if self.correct else "✗"


@dataclass
class EpisodeView:
    """One episode as the viewer shows it; ``position`` is 0-based among the episodes the filter keeps."""

    episode_id: object
    position: int
    total: int
    success: bool
    steps: list[StepView] = field(default_factory=list)
    hidden_steps: int = 0

    @property
    def counter(self) -> str:
        return f"episode {self.position + 1} / {self.total}"

    @property
    def steps_correct(self) -> int:
        return sum(s.correct for s in self.steps)


def action_text(action: dict | None, failure: str | None = None) -> str:
    """An action as the workbook's text format (``click(12, 30)``, ``type("abc")``); ``unparsed`` for None."""
    if action is None:
        return "unparsed" + (f" ({failure})" if failure else "")
    try:
        return render_action(Action.from_dict({k: v for k, v in action.items() if v is not None}), "text")
    except ValueError:  # a hand-written or older row: still show what it holds
        return str(action)


def _history_lines(row: dict, where: str) -> str:
    history = row.get("history_text") or ""
    if isinstance(history, (list, tuple)):
        if not all(isinstance(line, str) for line in history):
            raise ValueError(f"{where}: history_text must be a string or a list of strings, got {history!r}")
        history = "\n".join(history)
    if not isinstance(history, str):
        raise ValueError(f"{where}: history_text must be a string or a list of strings, got {history!r}")
    return history


def _font(size: int):
    return ImageFont.load_default(size=size)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut (with …) to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def draw_step(image: Image.Image, target: dict, predicted: dict | None, bbox=None,
              failure: str | None = None) -> Image.Image:
    """The screenshot with the true and predicted actions drawn, in screenshot pixels.

    Point actions are markers (:func:`.viz.draw_overlay`: the target box and point in green, the predicted
    point as a red circled cross; a drag's end points too). Other actions, and an unparsed prediction, are
    written in a white strip added under the screenshot (true in green, predicted in red), so the
    screenshot's pixels keep their coordinates and nothing covers them.
    """
    width = image.width
    marker = max(5, round(width / 45))
    target_point = (target["x"], target["y"]) if target.get("type") in _MARKED_TYPES else None
    predicted_point = ((predicted["x"], predicted["y"])
                       if predicted and predicted.get("type") in _MARKED_TYPES else None)
    canvas = draw_overlay(image, target_box=bbox, target_point=target_point, predicted_point=predicted_point,
                          marker_radius=marker)
    draw = ImageDraw.Draw(canvas)
    marked = ((target, TARGET_COLOUR, target_point), (predicted, PREDICTION_COLOUR, predicted_point))
    for action, colour, point in marked:
        if action and action.get("type") == "drag":  # the end point, and a line from the start
            draw.line([point, (action["x2"], action["y2"])], fill=colour, width=2)
            x2, y2 = action["x2"], action["y2"]
            draw.rectangle([x2 - 3, y2 - 3, x2 + 3, y2 + 3], outline=colour, width=2)
    lines = []
    if target_point is None:
        lines.append((f"true: {action_text(target)}", TARGET_COLOUR))
    if predicted_point is None:
        lines.append((f"predicted: {action_text(predicted, failure)}", PREDICTION_COLOUR))
    if not lines:
        return canvas
    font = _font(max(11, round(width / 22)))
    line_height = round(font.size * 1.35)
    strip = Image.new("RGB", (width, image.height + line_height * len(lines) + 4), _STRIP_BACKGROUND)
    strip.paste(canvas, (0, 0))
    draw = ImageDraw.Draw(strip)
    for i, (text, colour) in enumerate(lines):
        draw.text((3, image.height + 2 + i * line_height), _fit(draw, text, font, width - 6), fill=colour, font=font)
    return strip


class EpisodeViewer:
    """Page through evaluation episodes, each as a filmstrip of its steps (see the module docstring).

    Args:
        rows: one dict per step (keys in the module docstring); checked here, errors name the row.
        max_steps_shown: at most this many steps are drawn (the first ones); the rest are counted.

    Headless use: :meth:`render_episode` (content as data), :meth:`next` / :meth:`previous`, and
    ``failed_only.value = True``; :attr:`position` holds "episode i / n".
    """

    def __init__(self, rows, max_steps_shown: int = 8):
        if not isinstance(max_steps_shown, int) or isinstance(max_steps_shown, bool) or max_steps_shown < 1:
            raise ValueError(f"max_steps_shown must be an int of 1 or more, got {max_steps_shown!r}")
        self.max_steps_shown = max_steps_shown
        self.episodes = _group_episodes(rows)
        self.previous_button = w.Button(description=PREVIOUS_LABEL, tooltip="the previous episode (wraps)",
                                        layout=w.Layout(width="170px"))
        self.next_button = w.Button(description=NEXT_LABEL, tooltip="the next episode (wraps)",
                                    layout=w.Layout(width="170px"))
        self.position = w.Label()
        self.failed_only = w.Checkbox(value=False, description=FAILED_ONLY_LABEL, indent=False,
                                      layout=w.Layout(width="200px"))
        self.header = w.HTML()
        self.filmstrip = w.HBox(layout=w.Layout(overflow="auto", width="100%", align_items="flex-start"))
        self.index = 0
        self.previous_button.on_click(lambda _: self.previous())
        self.next_button.on_click(lambda _: self.next())
        self.failed_only.observe(self._filter_changed, names="value")
        self.box = w.VBox([w.HBox([self.previous_button, self.next_button, self.position, self.failed_only]),
                           self.header, self.filmstrip])
        self.box.add_class("uivlm-episode-viewer")
        self.show(0)

    # -- which episodes ---------------------------------------------------------------------------------
    @property
    def selected(self) -> list[dict]:
        """The episodes the filter keeps, in the order they first appear in the rows."""
        if self.failed_only.value:
            return [e for e in self.episodes if not e["success"]]
        return self.episodes

    def _filter_changed(self, _change) -> None:
        # stay on the episode shown if the new selection still has it
        current = self._shown_id
        ids = [e["episode_id"] for e in self.selected]
        self.show(ids.index(current) if current in ids else 0)

    # -- content ----------------------------------------------------------------------------------------
    def render_episode(self, index: int) -> EpisodeView:
        """The content of the ``index``-th (0-based) episode the filter keeps: drawn steps and texts.

        Raises:
            IndexError: ``index`` outside ``0 .. len(selected) - 1``; the message gives the range.
        """
        episodes = self.selected
        if not 0 <= index < len(episodes):
            raise IndexError(f"episode index {index} is outside 0..{len(episodes) - 1} "
                             f"({len(episodes)} episodes{' failed' if self.failed_only.value else ''})")
        episode = episodes[index]
        steps = []
        for row in episode["rows"][:self.max_steps_shown]:
            image = as_image(row["image"])
            size = row.get("image_size")
            if size is not None and list(size) != list(image.size):
                raise ValueError(f"episode {episode['episode_id']!r} step {row['step']}: image_size {list(size)} "
                                 f"is not the screenshot's size {list(image.size)} (actions are in its pixels)")
            steps.append(StepView(
                step=row["step"], correct=row["_correct"], parsed=row.get("predicted") is not None,
                image=draw_step(image, row["target"], row.get("predicted"), row.get("bbox"), row.get("failure")),
                predicted_text=action_text(row.get("predicted"), row.get("failure")),
                target_text=action_text(row["target"]), history_text=row["_history"],
                instruction=row.get("instruction") or "", raw_text=row.get("raw_text", row.get("raw")),
                id=row.get("id")))
        return EpisodeView(episode_id=episode["episode_id"], position=index, total=len(episodes),
                           success=episode["success"], steps=steps,
                           hidden_steps=max(0, len(episode["rows"]) - self.max_steps_shown))

    # -- paging -----------------------------------------------------------------------------------------
    def show(self, index: int) -> None:
        """Show the ``index``-th selected episode; indices wrap around at both ends."""
        episodes = self.selected
        if not episodes:
            self.index, self._shown_id = 0, None
            self.position.value = "episode 0 / 0"
            if self.failed_only.value and self.episodes:
                message = (f"no failed episodes: all {len(self.episodes)} episode"
                           f"{'s' if len(self.episodes) != 1 else ''} succeeded")
            else:
                message = "no episodes to show"
            self.header.value = f'<i class="uivlm-episode-empty">{html.escape(message)}</i>'
            self.filmstrip.children = ()
            return
        self.index = index % len(episodes)
        view = self.render_episode(self.index)
        self._shown_id = view.episode_id
        self.position.value = view.counter
        self.header.value = _header_html(view)
        self.filmstrip.children = tuple(_step_cell(s) for s in view.steps) + (
            (w.HTML(f"<i>… {view.hidden_steps} more step{'s' if view.hidden_steps != 1 else ''} "
                    f"not shown</i>"),) if view.hidden_steps else ())

    def next(self) -> None:
        self.show(self.index + 1)

    def previous(self) -> None:
        self.show(self.index - 1)

    def _ipython_display_(self):
        display(self.box)


def episode_viewer(rows, max_steps_shown: int = 8) -> EpisodeViewer:
    """An :class:`EpisodeViewer` of ``rows`` (display it as a notebook cell's last value)."""
    return EpisodeViewer(rows, max_steps_shown=max_steps_shown)


# -- building blocks ------------------------------------------------------------------------------------
def _group_episodes(rows) -> list[dict]:
    """Rows checked and grouped by ``episode_id`` (first-appearance order), steps sorted, success computed."""
    if isinstance(rows, (str, bytes, dict)) or not hasattr(rows, "__iter__"):
        raise ValueError(f"rows must be a list of step dicts, got {type(rows).__name__}")
    groups: dict = {}
    for i, row in enumerate(rows):
        where = f"row {i}" + (f" (id {row.get('id')!r})" if isinstance(row, dict) and row.get("id") is not None else "")
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a dict per step, got {type(row).__name__}")
        missing = [key for key in _REQUIRED_KEYS if key not in row]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)} (each step row needs "
                             f"{', '.join(_REQUIRED_KEYS)})")
        episode_id, step = row.get("episode_id"), row.get("step")
        if episode_id is None:  # a single-screen record (predict_records writes None): an episode of one step
            if step not in (None, 0):
                raise ValueError(f"{where}: step {step!r} without an episode_id (a step belongs to an episode)")
            step, key, episode_id = 0, ("single-screen row", i), row.get("id", f"row {i}")
        else:
            try:
                hash(episode_id)
            except TypeError:
                raise ValueError(f"{where}: episode_id must be a string or a number, got {episode_id!r}") from None
            key = episode_id
            if not isinstance(step, int) or isinstance(step, bool) or step < 0:
                raise ValueError(f"{where}: step must be a 0-based int, got {step!r}")
        if not isinstance(row["target"], dict) or "type" not in row["target"]:
            raise ValueError(f"{where}: target must be an action dict with a 'type', got {row['target']!r}")
        predicted = row.get("predicted")
        if predicted is not None and (not isinstance(predicted, dict) or "type" not in predicted):
            raise ValueError(f"{where}: predicted must be an action dict with a 'type' or None (unparsed), "
                             f"got {predicted!r}")
        if not isinstance(row["image"], (str, Path, Image.Image)):
            raise ValueError(f"{where}: image must be a file path or a PIL image, got {type(row['image']).__name__}")
        if "correct" in row and row["correct"] is not None:
            if not isinstance(row["correct"], bool):
                raise ValueError(f"{where}: correct must be true or false, got {row['correct']!r}")
            correct = row["correct"]
        else:
            correct = score_prediction(predicted, row["target"], row.get("bbox"), row.get("distractors"))["correct"]
        episode = groups.setdefault(key, {"episode_id": episode_id, "rows": []})
        if any(r["step"] == step for r in episode["rows"]):
            raise ValueError(f"{where}: episode {episode_id!r} has step {step} twice")
        episode["rows"].append({**row, "step": step, "_correct": correct, "_history": _history_lines(row, where)})
    episodes = list(groups.values())
    for episode in episodes:
        episode["rows"].sort(key=lambda r: r["step"])
        episode["success"] = all(r["_correct"] for r in episode["rows"])
    return episodes


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _header_html(view: EpisodeView) -> str:
    n = len(view.steps) + view.hidden_steps
    right = view.steps_correct
    verdict = ('<span style="color:#008a00">✓ episode succeeded</span>' if view.success
               else '<span style="color:#c00000">✗ episode failed</span>')
    instruction = view.steps[0].instruction if view.steps else ""
    return (f'<div class="uivlm-episode-header"><b>episode {html.escape(str(view.episode_id))}</b> · {verdict} '
            f'({right} of the {len(view.steps)} steps shown correct, {n} step{"s" if n != 1 else ""} in all)'
            + (f"<br>{html.escape(instruction)}" if instruction else "") + "</div>")


def _step_cell(step: StepView) -> w.VBox:
    colour = "#008a00" if step.correct else "#c00000"
    title = w.HTML(f'<b style="color:{colour}">step {step.step + 1} {step.verdict}</b>'
                   + (f' <span style="color:#666;font-size:90%">{html.escape(str(step.id))}</span>'
                      if step.id is not None else ""))
    image = w.Image(value=_png(step.image), format="png", layout=w.Layout(max_width="260px"))
    raw = (f'<br>raw: <code>{html.escape(repr(step.raw_text))}</code>' if not step.parsed and step.raw_text is not None
           else "")
    actions = w.HTML(f'<div style="font-size:90%;line-height:1.3">'
                     f'<span style="color:#c00000">predicted</span>: '
                     f'<code>{html.escape(step.predicted_text)}</code><br>'
                     f'<span style="color:#008a00">true</span>: <code>{html.escape(step.target_text)}</code>{raw}'
                     + (f"<br>{html.escape(step.instruction)}" if step.instruction else "") + "</div>")
    history = step.history_text or "(no earlier actions)"
    history_box = w.HTML(f'<pre class="uivlm-episode-history" style="font-size:10px;line-height:1.25;margin:0;'
                         f'max-height:110px;overflow:auto;white-space:pre-wrap;background:#f6f6f6;padding:3px">'
                         f'{html.escape(history)}</pre>')
    cell = w.VBox([title, image, actions, history_box],
                  layout=w.Layout(width="270px", min_width="270px", margin="0 6px 0 0",
                                  border=f"1px solid {colour}", padding="4px"))
    cell.add_class("uivlm-episode-step")  # one per step: a browser test counts and reads them
    return cell
