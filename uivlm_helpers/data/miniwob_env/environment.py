"""One MiniWoB++ task in a headless Chromium, speaking screenshot pixels and the workbook's records.

:class:`MiniWoBTask` wraps one task environment so that an observation becomes the workbook's
record (:meth:`MiniWoBTask.record`, :meth:`MiniWoBTask.record_dict`) and an
:class:`~uivlm_helpers.core.actions.Action` in screenshot pixels becomes MiniWoB++ actions
(:meth:`MiniWoBTask.to_miniwob_actions`).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ...core.actions import Action
from ..schema import UIRecord
from .browser import chrome_available, configure_browser, environment_class
from .state import Element, MiniWoBState, state_from_observation

#: The records' ``platform``.
PLATFORM = "web"
#: Start of the records' ``source`` (``miniwob/<task>``) and ``id``.
SOURCE_PREFIX = "miniwob"


def _action_space_config():
    """All of miniwob's action types, and every key combination for PRESS_KEY."""
    # lazy: miniwob is slow to import, and only a started browser needs it
    from miniwob.action import ActionSpaceConfig
    from miniwob.constants import ALL_POSSIBLE_KEYS

    config = ActionSpaceConfig.get_preset("all_supported")
    config.allowed_keys = ALL_POSSIBLE_KEYS
    return config


# Our key names -> miniwob's ("<Enter>", "C-a"); modifiers in miniwob's A-C-M-S order.
_MODIFIERS = {"alt": "A-", "ctrl": "C-", "control": "C-", "meta": "M-", "cmd": "M-", "shift": "S-"}
_MODIFIER_ORDER = "ACMS"
_SPECIAL_KEYS = {"esc": "Escape", "return": "Enter", "del": "Delete", "up": "ArrowUp", "down": "ArrowDown",
                 "left": "ArrowLeft", "right": "ArrowRight", "pgup": "PageUp", "pgdn": "PageDown"}


def _miniwob_key(key: str) -> str:
    from miniwob.constants import WEBDRIVER_SPECIAL_KEYS  # lazy: miniwob is slow to import

    special = {name[1:-1].lower(): name for name in WEBDRIVER_SPECIAL_KEYS}
    *mods, base = key.split("+") if key != "+" else [key]
    prefixes = sorted({_MODIFIERS[m.lower()] for m in mods if m.lower() in _MODIFIERS},
                      key=lambda p: _MODIFIER_ORDER.index(p[0]))
    unknown = [m for m in mods if m.lower() not in _MODIFIERS]
    if unknown:
        raise ValueError(f"unknown modifier {unknown[0]!r} in key {key!r}")
    name = _SPECIAL_KEYS.get(base.lower(), base)
    if len(name) == 1:
        base_key = name
    elif name.lower() in special:
        base_key = special[name.lower()]
    else:
        raise ValueError(f"key {key!r} has no MiniWoB++ equivalent")
    return "".join(prefixes) + base_key


# When an episode ends, MiniWoB++ shows its "START" cover, and a click on it starts a new episode:
# the second click of a double click that ended the episode would silently restart the task. The
# environment starts episodes from Python (core.startEpisodeReal), so the cover's click is not needed.
_DISARM_COVER = "if (core.cover_div) { core.cover_div.onclick = null; }"


class MiniWoBTask:
    """One MiniWoB++ task in a headless Chromium, speaking screenshot pixels.

    Args:
        task: task name, e.g. ``"click-test-2"`` (see ``miniwob.envs``).
        time_limit_s: episode time limit; None keeps the task's own (10 s for most). Slow policies
            (a VLM on a CPU) may need more; published MiniWoB++ numbers use the task's own.
        settle_ms: pause after every action before the next screenshot (animations).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, task: str, time_limit_s: float | None = None, settle_ms: float = 0.0):
        ok, reason = chrome_available()
        if not ok:
            raise RuntimeError(reason)
        configure_browser()
        from miniwob.reward import get_binary_reward  # lazy: miniwob is slow to import

        self.task = task
        self.time_limit_s = time_limit_s
        self.settle_ms = settle_ms
        self._env = environment_class()(subdomain=task, action_space_config=_action_space_config(),
                                         reward_processor=get_binary_reward)
        instance = self._env.instance
        self.css_size = (instance.task_width, instance.task_height)
        self._key_index = {k: i for i, k in enumerate(self._env.action_space_config.allowed_keys)}
        self.state: MiniWoBState | None = None
        self.done = True
        self.reward = 0.0
        self.info: dict = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self) -> MiniWoBTask:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        env, self._env = getattr(self, "_env", None), None
        if env is not None:
            env.close()

    def load_task(self, task: str) -> None:
        """Switch this browser to another task (faster than a new browser: one page load)."""
        if task == self.task:
            return
        if task.startswith("flight.") or self.task.startswith("flight."):
            raise ValueError("FlightWoB tasks need their own MiniWoBTask")
        # lazy: miniwob and selenium are slow to import
        from miniwob.fields import get_field_extractor
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as EC
        from selenium.webdriver.support.wait import WebDriverWait

        instance = self._env.instance
        instance.url = urllib.parse.urljoin(instance.url, f"{task}.html")
        instance.field_extractor = get_field_extractor(task)
        instance.cached_fields = []
        self._env.subdomain = task
        self._env.instance_kwargs["subdomain"] = task  # used if miniwob has to restart the browser
        instance.driver.get(instance.url)
        WebDriverWait(instance.driver, 5).until(EC.element_to_be_clickable((By.ID, instance.SYNC_SCREEN_ID)))
        self.task = task
        self.state, self.done, self.reward, self.info = None, True, 0.0, {}

    @property
    def driver(self):
        """The Selenium WebDriver (for tests and debugging)."""
        return self._env.instance.driver

    def reset(self, seed: int) -> MiniWoBState:
        """Start a new episode; the same seed gives the same task instance."""
        # The page keeps EPISODE_MAX_TIME between episodes: remember the task's own, set ours or restore it.
        limit = "core.uivlmTaskTime" if self.time_limit_s is None else str(int(self.time_limit_s * 1000))
        self.driver.execute_script(_DISARM_COVER + "if (core.uivlmTaskTime === undefined) "
                                   f"core.uivlmTaskTime = core.EPISODE_MAX_TIME; core.EPISODE_MAX_TIME = {limit};")
        obs, info = self._env.reset(seed=int(seed))
        self.state = state_from_observation(self.task, obs, self.css_size)
        self.done, self.reward, self.info = False, 0.0, info
        return self.state

    # -- actions --------------------------------------------------------------------------------
    def _coords(self, x: float, y: float):
        state = self.state
        width, height = state.image_size if state is not None else self.css_size
        x = min(max(float(x), 0.0), width - 1e-3)  # a point off the screenshot is clamped onto it
        y = min(max(float(y), 0.0), height - 1e-3)
        x_css, y_css = state.to_css(x, y) if state is not None else (x, y)
        return np.array([x_css, y_css], dtype=np.float32)

    def to_miniwob_actions(self, action: dict | Action) -> list[tuple[dict, float]]:
        """MiniWoB++ actions that carry out a workbook action, each with a pause (s) to take before it.

        ``click``/``double_click`` -> CLICK/DBLCLICK_COORDS at the point mapped to CSS pixels;
        ``long_press`` -> MOUSEDOWN, 0.6 s, MOUSEUP; ``drag`` -> MOUSEDOWN, MOVE, MOUSEUP;
        ``type`` -> TYPE_TEXT (into the focused element); ``press`` -> PRESS_KEY (``ctrl+a`` ->
        ``C-a``, ``Enter`` -> ``<Enter>``); ``scroll`` up/down -> the mouse wheel at the screen
        centre by ``amount`` CSS pixels (left/right have no MiniWoB++ action: nothing happens);
        ``wait`` -> nothing after ``seconds``; ``done`` -> no action (the caller ends the episode).

        Raises:
            ValueError: an invalid action, or a key with no MiniWoB++ equivalent.
        """
        from miniwob.action import ActionTypes as T  # lazy: miniwob is slow to import

        act = action if isinstance(action, Action) else Action.from_dict(dict(action))
        make = self._env.create_action
        if act.type == "click":
            return [(make(T.CLICK_COORDS, coords=self._coords(act.x, act.y)), 0.0)]
        if act.type == "double_click":
            return [(make(T.DBLCLICK_COORDS, coords=self._coords(act.x, act.y)), 0.0)]
        if act.type == "long_press":
            return [(make(T.MOUSEDOWN_COORDS, coords=self._coords(act.x, act.y)), 0.0),
                    (make(T.MOUSEUP_COORDS, coords=self._coords(act.x, act.y)), 0.6)]
        if act.type == "drag":
            return [(make(T.MOUSEDOWN_COORDS, coords=self._coords(act.x, act.y)), 0.0),
                    (make(T.MOVE_COORDS, coords=self._coords(act.x2, act.y2)), 0.0),
                    (make(T.MOUSEUP_COORDS, coords=self._coords(act.x2, act.y2)), 0.0)]
        if act.type == "type":
            return [(make(T.TYPE_TEXT, text=act.text), 0.0)]
        if act.type == "press":
            key = _miniwob_key(act.key)
            if key not in self._key_index:
                raise ValueError(f"key {act.key!r} ({key}) is not a MiniWoB++ key")
            return [(make(T.PRESS_KEY, key=self._key_index[key]), 0.0)]
        if act.type == "scroll" and act.direction in ("up", "down"):
            width, height = self.state.image_size if self.state is not None else self.css_size
            kind = T.SCROLL_UP_COORDS if act.direction == "up" else T.SCROLL_DOWN_COORDS
            return [(make(kind, coords=self._coords(width / 2, height / 2)), 0.0)]
        if act.type == "wait":
            return [(make(T.NONE), float(act.seconds))]
        return [(make(T.NONE), 0.0)]  # scroll left/right, done

    def step(self, action: dict | Action) -> tuple[MiniWoBState | None, float, bool]:
        """Carry out one workbook action (screenshot pixels).

        Returns:
            ``(state, reward, done)``: the new observation (None once the episode ended), the
            binary reward (1 success, -1 failure, 0 while running) and whether it ended.
        """
        if self.done:
            raise RuntimeError("the episode has ended; call reset() first")
        act = action if isinstance(action, Action) else Action.from_dict(dict(action))
        config = self._env.action_space_config
        for miniwob_action, pause in self.to_miniwob_actions(act):
            if pause:
                time.sleep(pause)
            saved_amount = config.scroll_amount
            if act.type == "scroll":
                config.scroll_amount = max(1, int(round(act.amount / self.state.scale[1])))
            try:
                obs, reward, done, _, info = self._env.step(miniwob_action)
            finally:
                config.scroll_amount = saved_amount
            self.reward, self.done, self.info = float(reward), bool(done), info
            if done:
                self.state = None
                return None, self.reward, True
        if self.settle_ms:
            time.sleep(self.settle_ms / 1000)
            obs, reward, done, _, info = self._env.step(self._env.create_action("NONE"))
            self.reward, self.done, self.info = float(reward), bool(done), info
            if done:
                self.state = None
                return None, self.reward, True
        self.state = state_from_observation(self.task, obs, self.css_size)
        return self.state, self.reward, False

    # -- records --------------------------------------------------------------------------------
    def record_dict(self, state: MiniWoBState, history: Sequence[dict], record_id: str = "") -> dict:
        """The plain record a policy reads (see the package docstring)."""
        return {"id": record_id or f"{SOURCE_PREFIX}-{state.task}", "image": state.screenshot,
                "instruction": state.utterance, "image_size": list(state.image_size),
                "history": [dict(a) for a in history], "source": f"{SOURCE_PREFIX}/{state.task}",
                "platform": PLATFORM, "bbox": None, "element_type": None, "miniwob": state}

    @staticmethod
    def record(state: MiniWoBState, action: dict, history: Sequence[dict], record_id: str,
               element: Element | None = None, split: str = "train", *, episode_id: str | None = None,
               history_images: Sequence[Image.Image | str] = ()) -> UIRecord:
        """A workbook record for one step: this screenshot + utterance -> ``action`` (pixels).

        With ``episode_id`` the record is step ``len(history)`` of that episode;
        ``history_images`` are the earlier steps' screenshots (one per ``history`` action, the
        very images of their records, so :func:`~uivlm_helpers.data.schema.write_records` points
        them at those records' files).
        """
        return UIRecord(
            id=record_id, image=state.screenshot, image_size=list(state.image_size),
            instruction=state.utterance, action=dict(action),
            bbox=state.box_pixels(element) if element is not None else None,
            element_type=_element_type(element) if element is not None else None,
            source=f"{SOURCE_PREFIX}/{state.task}", platform=PLATFORM,
            history=[dict(a) for a in history], split=split, episode_id=episode_id,
            step=len(history) if episode_id is not None else None, history_images=list(history_images))


def _element_type(element: Element) -> str:
    tag, classes = element.tag, element.class_list
    if tag in ("input_text", "input_password", "textarea", "input_email", "input_number"):
        return "text_field"
    if tag == "input_checkbox":
        return "checkbox"
    if tag == "input_radio":
        return "radio"
    if "ui-tabs-anchor" in classes:
        return "tab"
    if tag == "a" or "alink" in classes:
        return "link"
    if "ui-accordion-header" in classes:
        return "section_header"
    if tag == "button" or tag.startswith("input_"):
        return "button"
    return tag
