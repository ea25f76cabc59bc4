"""Episode-aware scoring, the way the UI-agent benchmarks score their agents.

Three levels, all computed from the rows :func:`.evaluate.predict_records` writes (one per step):

* **Step** (:func:`score_step`): is one predicted action right? Android in the Wild's action matching
  (Rawles et al., 2023) decides it: the action types must match, then each type's own check.
* **Episode** (:func:`episode_metrics`): the steps of one episode, in order; the episode succeeds only
  when every one of its steps does. Step and episode success rates, broken down by source, platform,
  mode (AndroidControl's high- and low-level instructions) and step position.
* **Mind2Web** (:func:`mind2web_metrics`): element accuracy, operation F1, step success rate and task
  success rate as Deng et al. (2023) define them.

:func:`episode_table` puts several agents' figures side by side.

Row keys read (other keys are ignored):

==============  ===========================================================================================
``predicted``   the decoded action (screenshot pixels), or None when the answer did not parse
``target``      the target action (screenshot pixels)
``bbox``        the target element's box ``[x1, y1, x2, y2]`` in pixels, or None / absent
``image_size``  ``[width, height]`` of the screenshot; needed for a point or drag target without a box
``id``          names the row in error messages and identifies a row without an episode
``episode_id``  the episode the step belongs to; absent or None: the row is an episode of one step
``step``        the step's 0-based position in its episode (orders the steps; required with episode_id)
``source``      dataset or generator (``by_source``); part of the episode's identity, since two datasets
                may number their episodes alike
``platform``    ``by_platform``
``mode``        optional; AndroidControl's ``"high"`` / ``"low"`` instruction level (``by_mode``); without
                it, read from a source ``androidcontrol/high`` or ``androidcontrol/low`` (the converter's)
==============  ===========================================================================================
"""

from __future__ import annotations

import math
import re
import string
from collections import defaultdict
from collections.abc import Mapping

import pandas as pd

from ..core.actions import ACTION_FIELDS, ACTION_TYPES, POINT_ACTIONS

__all__ = ["TAP_DISTANCE_THRESHOLD", "score_step", "episode_metrics", "mind2web_operation", "operation_f1",
           "mind2web_metrics", "episode_table"]

#: Android in the Wild's tap tolerance: two taps match when the distance between them, with x measured
#: in screen widths and y in screen heights, is at most 0.14 ("fraction of the screen",
#: ``_TAP_DISTANCE_THRESHOLD`` in AITW's action_matching.py).
TAP_DISTANCE_THRESHOLD = 0.14

def point_in_box(x: float, y: float, box) -> bool:
    """Is (x, y) inside ``[x1, y1, x2, y2]``, edges included? The same rule as
    :func:`.evaluate.point_in_box`, kept here so that :mod:`.evaluate` can import this module (an import
    back would be a cycle)."""
    x1, y1, x2, y2 = box
    return x1 <= x <= x2 and y1 <= y <= y2


#: AndroidControl's sources name the instruction level: ``androidcontrol/high``, ``androidcontrol/low``.
_ANDROIDCONTROL_MODE = re.compile(r"^androidcontrol[/_-](high|low)$")

_CHECKS = ("click_correct", "text_correct", "scroll_correct", "drag_correct", "key_correct")


# --- Step level --------------------------------------------------------------------------------------

def _check_action(action, what: str) -> None:
    if not isinstance(action, Mapping):
        raise ValueError(f"{what}: expected an action dict such as {{'type': 'click', 'x': 10, 'y': 20}}, "
                         f"got {action!r}")
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        raise ValueError(f"{what}: 'type' must be one of {', '.join(ACTION_TYPES)}, got {kind!r}")
    missing = [f for f in ACTION_FIELDS[kind] if action.get(f) is None]
    if missing:
        raise ValueError(f"{what}: a {kind} action needs {', '.join(ACTION_FIELDS[kind])}; "
                         f"missing {', '.join(missing)} in {dict(action)!r}")


def _screen(image_size, what: str) -> tuple[float, float]:
    if (not isinstance(image_size, (list, tuple)) or len(image_size) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in image_size)):
        raise ValueError(f"{what}: expected the screenshot's [width, height] in pixels (two numbers > 0), "
                         f"got {image_size!r}")
    return float(image_size[0]), float(image_size[1])


def _normalised_distance(a, b, size) -> float:
    """Distance between two points with x in screen widths and y in screen heights (AITW's measure)."""
    w, h = size
    return math.hypot((a[0] - b[0]) / w, (a[1] - b[1]) / h)


def _drag_direction(action, size) -> str:
    """The drag's main direction: the axis it moves most along (in screen fractions when the size is
    known, as AITW compares them), and which way."""
    w, h = size if size else (1.0, 1.0)
    dx, dy = (action["x2"] - action["x"]) / w, (action["y2"] - action["y"]) / h
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def normalise_text(text: str) -> str:
    """Typed text as compared at step level: lower case, surrounding whitespace removed."""
    return str(text).strip().lower()


def score_step(predicted: dict | None, target: dict, bbox=None, image_size=None) -> dict:
    """Is one predicted action right? Android in the Wild's action matching (Rawles et al., 2023).

    The action types must be equal, then the type's own check decides:

    * ``click`` / ``double_click`` / ``long_press``: with a target box, the predicted point lies inside
      it (edges included, as :func:`.evaluate.score_prediction` counts a click); without one, it lies
      within :data:`TAP_DISTANCE_THRESHOLD` of the target point, measuring x in screen widths and y in
      screen heights, as AITW matches taps (``image_size`` is then required).
    * ``type``: the texts are equal after :func:`normalise_text` (case and surrounding whitespace
      ignored; AITW lower-cases both texts before comparing).
    * ``scroll``: same direction; the amount is ignored (AndroidControl gives none and AITW compares
      swipes by direction only).
    * ``drag``: same main direction (the axis moved along most and which way, in screen fractions when
      ``image_size`` is given).
    * ``press``: same key, ignoring case (``enter`` is ``Enter``).
    * ``wait`` / ``done``: the type alone.

    Args:
        predicted: the decoded action in screenshot pixels, or None when the model's answer did not
            parse (then every field is False).
        target: the target action in screenshot pixels.
        bbox: the target element's box ``[x1, y1, x2, y2]`` in pixels, or None.
        image_size: ``[width, height]`` of the screenshot.

    Returns:
        ``parsed``, ``type_correct``, one check per target type (``click_correct``, ``text_correct``,
        ``scroll_correct``, ``drag_correct``, ``key_correct``; None for the checks that do not apply to
        the target's type), ``distance_px`` and ``distance_screen`` (point actions with a matching
        type: the distance to the target point in pixels and in AITW's screen fractions, the latter
        None without ``image_size``) and ``success`` (type match and the type's own check).

    Raises:
        ValueError: a malformed target or prediction, a box that is not four numbers, or a point target
            without a box and without a usable ``image_size``; the message names the field.
    """
    _check_action(target, "target")
    if predicted is not None:
        _check_action(predicted, "predicted")
    if bbox is not None and (not isinstance(bbox, (list, tuple)) or len(bbox) != 4):
        raise ValueError(f"bbox: expected [x1, y1, x2, y2] in pixels or None, got {bbox!r}")
    kind = target["type"]
    size = _screen(image_size, "image_size") if image_size is not None else None
    if kind in POINT_ACTIONS and bbox is None and size is None:
        raise ValueError(f"image_size: a {kind} target without a bbox is matched within a fraction of the "
                         "screen (AITW), so the screenshot's [width, height] is needed; got None")

    parsed = predicted is not None
    type_ok = parsed and predicted["type"] == kind
    row = {"parsed": parsed, "type_correct": bool(type_ok), **{c: None for c in _CHECKS},
           "distance_px": None, "distance_screen": None}
    if kind in POINT_ACTIONS:
        row["click_correct"] = False
        if type_ok:
            point, goal = (predicted["x"], predicted["y"]), (target["x"], target["y"])
            row["distance_px"] = math.hypot(point[0] - goal[0], point[1] - goal[1])
            if size is not None:
                row["distance_screen"] = _normalised_distance(point, goal, size)
            row["click_correct"] = bool(point_in_box(*point, bbox) if bbox is not None
                                        else row["distance_screen"] <= TAP_DISTANCE_THRESHOLD)
    elif kind == "type":
        row["text_correct"] = bool(type_ok and normalise_text(predicted["text"]) == normalise_text(target["text"]))
    elif kind == "scroll":
        row["scroll_correct"] = bool(type_ok and predicted["direction"] == target["direction"])
    elif kind == "drag":
        row["drag_correct"] = bool(type_ok and _drag_direction(predicted, size) == _drag_direction(target, size))
    elif kind == "press":
        row["key_correct"] = bool(type_ok and str(predicted["key"]).lower() == str(target["key"]).lower())
    row["success"] = bool(type_ok) and all(row[c] is not False for c in _CHECKS)
    return row


# --- Grouping rows into episodes ---------------------------------------------------------------------

def _where(row, index: int) -> str:
    name = row.get("id") if isinstance(row, Mapping) else None
    return f"row {index}" + (f" (id {name!r})" if name is not None else "")


def _scored(rows) -> list[dict]:
    """Each row with its step score, checked for the keys the scoring reads."""
    out = []
    for index, row in enumerate(rows):
        where = _where(row, index)
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: expected a dict (a row of evaluate.predict_records), got {row!r}")
        for key, what in (("predicted", "the decoded action, or None"), ("target", "the target action")):
            if key not in row:
                raise ValueError(f"{where}: missing {key!r} ({what})")
        try:
            score = score_step(row["predicted"], row["target"], row.get("bbox"), row.get("image_size"))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        mode = row.get("mode")
        if mode is None:
            found = _ANDROIDCONTROL_MODE.match(str(row.get("source")))
            mode = found.group(1) if found else None
        out.append({"row": row, "index": index, "where": where, "mode": mode, **score})
    return out


def _episodes(scored: list[dict]) -> list[list[dict]]:
    """Steps grouped by (source, episode_id), each episode in step order; a row without an episode id is
    an episode of its own."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in scored:
        row = s["row"]
        episode = row.get("episode_id")
        if episode is None:
            groups[("single", s["index"])].append(s)
            continue
        step = row.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"{s['where']}: 'step' must be the step's 0-based position in episode "
                             f"{episode!r} (a whole number >= 0), got {step!r}")
        groups[("episode", str(row.get("source")), str(episode))].append(s)
    episodes = []
    for key, steps in groups.items():
        steps.sort(key=lambda s: s["row"].get("step") or 0)
        seen = [s["row"].get("step") for s in steps]
        if len(set(seen)) != len(seen):
            duplicate = next(v for v in seen if seen.count(v) > 1)
            raise ValueError(f"episode {key[2]!r} (source {key[1]!r}) has step {duplicate} more than once")
        episodes.append(steps)
    return episodes


def _rate(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _summary(episodes: list[list[dict]]) -> dict:
    steps = [s for episode in episodes for s in episode]
    return {
        "n_steps": len(steps),
        "n_episodes": len(episodes),
        "mean_episode_length": len(steps) / len(episodes) if episodes else None,
        "parse_rate": _rate(s["parsed"] for s in steps),
        "type_accuracy": _rate(s["type_correct"] for s in steps),
        "click_accuracy": _rate(s["click_correct"] for s in steps),
        "text_accuracy": _rate(s["text_correct"] for s in steps),
        "scroll_accuracy": _rate(s["scroll_correct"] for s in steps),
        "step_success_rate": _rate(s["success"] for s in steps),
        "episode_success_rate": _rate(all(s["success"] for s in episode) for episode in episodes),
    }


def _by_position(episodes: list[list[dict]]) -> dict:
    """Per position in the episode (0 = its first step): how often that step is right, and how often
    the episode is still right up to and including it."""
    longest = max((len(e) for e in episodes), default=0)
    out = {}
    for k in range(longest):
        reaching = [e for e in episodes if len(e) > k]
        out[str(k)] = {
            "n": len(reaching),
            "step_success_rate": _rate(e[k]["success"] for e in reaching),
            "type_accuracy": _rate(e[k]["type_correct"] for e in reaching),
            "click_accuracy": _rate(e[k]["click_correct"] for e in reaching),
            "prefix_success_rate": _rate(all(s["success"] for s in e[:k + 1]) for e in reaching),
        }
    return out


def _split_by(episodes: list[list[dict]], key: str) -> dict:
    """Episodes grouped by a row field (steps of one episode that disagree go to their own groups)."""
    groups: dict[str, list[list[dict]]] = defaultdict(list)
    for episode in episodes:
        parts: dict[str, list[dict]] = defaultdict(list)
        for s in episode:
            parts[str(s["mode"] if key == "mode" else s["row"].get(key))].append(s)
        for name, part in parts.items():
            groups[name].append(part)
    return groups


def episode_metrics(rows) -> dict:
    """Step- and episode-level success of a list of prediction rows.

    Steps are scored with :func:`score_step`. Rows sharing ``source`` and ``episode_id`` form an
    episode, ordered by ``step``; a row without ``episode_id`` is an episode of one step. An episode
    succeeds when every one of its steps succeeds (steps a converter skipped, e.g. AndroidControl's
    ``open_app``, are not in the rows and so not required).

    Returns:
        The headline figures (``n_steps``, ``n_episodes``, ``mean_episode_length``, ``parse_rate``,
        ``type_accuracy``, ``click_accuracy``, ``text_accuracy``, ``scroll_accuracy``,
        ``step_success_rate``, ``episode_success_rate``; a rate is None when no step it covers is
        present), the same figures ``by_source`` and ``by_platform`` (and ``by_mode`` when a row has a
        mode: AndroidControl's high- and low-level instructions, from a ``mode`` field or from the
        source ``androidcontrol/high`` / ``androidcontrol/low``, which also separates them in
        ``by_source``; rows with no mode are under ``"None"``), and ``by_step``: per position in
        the episode (``"0"`` first), ``n`` episodes reaching it, its ``step_success_rate``,
        ``type_accuracy``, ``click_accuracy`` and ``prefix_success_rate`` (episodes right up to and
        including that step): how accuracy falls along an episode.

    Raises:
        ValueError: a row that is not a dict, lacks ``predicted`` or ``target``, has a malformed action,
            an ``episode_id`` without a whole-number ``step``, or a step repeated within an episode; the
            message names the row (position and id) or the episode.
    """
    episodes = _episodes(_scored(rows))
    metrics = _summary(episodes)
    keys = ["source", "platform"] + (["mode"] if any(s["mode"] is not None for e in episodes for s in e) else [])
    for key in keys:
        metrics[f"by_{key}"] = {name: _summary(group) for name, group in sorted(_split_by(episodes, key).items())}
    metrics["by_step"] = _by_position(episodes)
    return metrics


# --- Mind2Web ----------------------------------------------------------------------------------------

def mind2web_operation(action: dict | None) -> str:
    """The Mind2Web operation string of a workbook action (Mind2Web has CLICK, TYPE and SELECT).

    ==========================================  ===============================================
    workbook action                             operation
    ==========================================  ===============================================
    ``click`` / ``double_click`` / ``long_press``  ``CLICK`` (the converter also turns Mind2Web's
                                                HOVER and ENTER into clicks)
    ``type(text)``                              ``TYPE <text>`` (a SELECT converted with
                                                ``select_as="type"`` is a type action too, so its
                                                value is scored as here; only the verb differs
                                                from Mind2Web's ``SELECT <value>``, on both sides)
    ``press(key)``                              ``PRESS <key>``
    ``scroll(direction, amount)``               ``SCROLL <direction>``
    ``drag`` / ``wait`` / ``done``              ``DRAG`` / ``WAIT`` / ``DONE``
    None (the answer did not parse)             ``""`` (F1 0 against any target)
    ==========================================  ===============================================

    The last four have no Mind2Web counterpart: predicted against a Mind2Web target they score 0.
    """
    if action is None:
        return ""
    kind = action["type"]
    if kind in POINT_ACTIONS:
        return "CLICK"
    if kind == "type":
        return f"TYPE {action['text']}"
    if kind == "press":
        return f"PRESS {action['key']}"
    if kind == "scroll":
        return f"SCROLL {action['direction']}"
    return kind.upper()


def operation_f1(predicted: str, target: str) -> float:
    """Mind2Web's operation F1: token-level F1 between two operation strings.

    As Mind2Web's ``calculate_f1``: the tokens are the whitespace-separated words of each string, as
    sets (a repeated word counts once), tokens that are punctuation marks are dropped, case is kept;
    two empty strings score 1, one empty string 0.
    """
    def tokens(text):
        return {t for t in str(text).strip().split() if t not in string.punctuation}

    pred, gold = tokens(predicted), tokens(target)
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    shared = len(pred & gold)
    if shared == 0:
        return 0.0
    precision, recall = shared / len(pred), shared / len(gold)
    return 2 * precision * recall / (precision + recall)


def mind2web_metrics(rows) -> dict:
    """Mind2Web's four metrics (Deng et al., 2023, "Mind2Web: Towards a Generalist Agent for the Web",
    NeurIPS Datasets and Benchmarks, section 4):

    * **Element accuracy**: the selected element is the target element; here, the predicted point
      (a click-like action) lies inside the target element's box, edges included.
    * **Operation F1**: token-level F1 between the predicted and target operation strings
      (:func:`operation_f1`; operations from actions by :func:`mind2web_operation`).
    * **Step success rate**: a step succeeds when its element is right and its operation F1 is 1.
    * **Success rate** (task level): every step of the task succeeds.

    Mind2Web reports each step-level metric as a macro average over tasks (the mean of each task's own
    average); those are ``element_accuracy``, ``operation_f1`` and ``step_success_rate``, and the
    averages over all steps come as ``*_micro``.

    The workbook's ``type`` action names no element (it types into the focused one), so a step whose
    target has no point (a TYPE or SELECT step) is left out of element accuracy (``element_correct``
    None) and succeeds on its operation alone; ``element_steps`` counts the steps element accuracy
    covers. A point target needs a ``bbox``: Mind2Web's element is a box.

    Tasks are episodes, grouped as in :func:`episode_metrics` (``source`` + ``episode_id``, ordered by
    ``step``). Returns also ``n_steps``, ``n_tasks`` and ``by_source``.

    Raises:
        ValueError: as :func:`episode_metrics`, and a point target without a ``bbox`` (naming the row).
    """
    episodes = _episodes(_scored(rows))
    for episode in episodes:
        for s in episode:
            row = s["row"]
            target, predicted = row["target"], row["predicted"]
            if target["type"] in POINT_ACTIONS:
                if row.get("bbox") is None:
                    raise ValueError(f"{s['where']}: 'bbox' is needed for Mind2Web's element accuracy "
                                     f"(the target element's [x1, y1, x2, y2]), got None")
                s["element_correct"] = bool(predicted is not None and predicted["type"] in POINT_ACTIONS
                                            and point_in_box(predicted["x"], predicted["y"], row["bbox"]))
            else:
                s["element_correct"] = None
            s["operation_f1"] = operation_f1(mind2web_operation(predicted), mind2web_operation(target))
            s["m2w_success"] = s["element_correct"] is not False and s["operation_f1"] == 1.0

    def summary(tasks):
        steps = [s for t in tasks for s in t]
        out = {"n_steps": len(steps), "n_tasks": len(tasks),
               "element_steps": sum(s["element_correct"] is not None for s in steps)}
        for name, field in (("element_accuracy", "element_correct"), ("operation_f1", "operation_f1"),
                            ("step_success_rate", "m2w_success")):
            out[name] = _rate(_rate(s[field] for s in t) for t in tasks)
            out[f"{name}_micro"] = _rate(s[field] for s in steps)
        out["task_success_rate"] = _rate(all(s["m2w_success"] for s in t) for t in tasks)
        return out

    metrics = summary(episodes)
    metrics["by_source"] = {name: summary(group) for name, group in sorted(_split_by(episodes, "source").items())}
    return metrics


# --- Table -------------------------------------------------------------------------------------------

_TABLE_COLUMNS = ("n_steps", "n_episodes", "mean_episode_length", "parse_rate", "type_accuracy",
                  "click_accuracy", "step_success_rate", "episode_success_rate",
                  "element_accuracy", "operation_f1", "task_success_rate")


def episode_table(named: dict[str, dict]) -> pd.DataFrame:
    """Step and episode figures side by side, one row per agent (e.g. base vs fine-tuned).

    Args:
        named: agent name -> the dict :func:`episode_metrics` returns, optionally merged with
            :func:`mind2web_metrics`' (its element accuracy, operation F1 and task success become
            columns; its ``step_success_rate`` is Mind2Web's when merged last).

    Returns:
        A DataFrame indexed by agent; columns that no agent has are left out.
    """
    if not isinstance(named, Mapping) or not all(isinstance(m, Mapping) for m in named.values()):
        raise ValueError("named: expected {agent name: metrics dict from episode_metrics}, got "
                         f"{type(named).__name__}")
    columns = [k for k in _TABLE_COLUMNS if any(m.get(k) is not None for m in named.values())]
    return pd.DataFrame([{k: m.get(k) for k in columns} for m in named.values()],
                        index=list(named), columns=columns)
