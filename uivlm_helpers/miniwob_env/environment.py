"""MiniWoB++ in the workbook's terms: screenshots + utterances in, pixel actions out.

`MiniWoB++ <https://miniwob.farama.org>`_ (PyPI ``miniwob``, gymnasium API) runs small web tasks in a
headless Chromium. This module wraps one task environment so that

* an observation becomes the workbook's record: the 160x210 screenshot as the image and the task's
  utterance ("Click button ONE.") as the instruction (:meth:`MiniWoBTask.record`);
* an :class:`~uivlm_helpers.actions.Action` in **screenshot pixels** becomes MiniWoB++ actions
  (:meth:`MiniWoBTask.to_miniwob_actions`);

and adds scripted **oracle policies** that read the DOM (exact element positions) to produce
demonstrations (:func:`record_demonstrations`) and to check the environment (:func:`rollout`).

Coordinates. MiniWoB++ clicks at CSS pixels of the page; its screenshot is the task area (160x210 CSS
px) cut from the browser's screenshot and *resized to the task size*, so one screenshot pixel is one
CSS pixel whatever the device pixel ratio. The mapping is still computed from the real screenshot
size (``MiniWoBState.scale``) rather than assumed, and a test checks it against the browser's own
``document.elementFromPoint``.

Browser. Debian's ``chromium`` and ``chromium-driver`` (``make system-deps``); ``MINIWOB_CHROME_BINARY``
and ``MINIWOB_CHROMEDRIVER`` default to ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` when unset.
Chromium runs headless with :data:`CHROME_FLAGS` (``--no-sandbox`` because it often runs as root in
containers), passed through a small subclass of miniwob's ``SeleniumInstance`` (site-packages are not
edited).

Policies. A policy is any callable ``policy(record: dict) -> dict | None`` returning an action dict in
screenshot pixels (``{"type": "click", "x": 30, "y": 140}``). The record dict has the plain-record
keys (``id``, ``image`` as a ``PIL.Image``, ``instruction``, ``image_size``, ``history``, ``source``,
``platform``) plus ``"miniwob"``: the :class:`MiniWoBState` (DOM elements, fields), which only oracle
policies read. :func:`policy_from_wrapper` turns a :class:`~uivlm_helpers.wrapper.VLMWrapper` into a
policy. Success is the binary reward of the MiniWoB++ papers: the episode ended with raw reward 1.

Example::

    from uivlm_helpers import miniwob_env as mw

    path = mw.record_demonstrations(["click-test-2", "enter-text"], episodes=20, seed=0, out_dir="data/mw")
    rates = mw.rollout(mw.oracle_policy, ["click-test-2"], episodes_per_task=10, seed=0)
    rates = mw.rollout(mw.policy_from_wrapper(wrapper), ["click-test-2"], episodes_per_task=10, seed=0)
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .. import data
from ..actions import Action

__all__ = [
    "CHROME_FLAGS", "DEFAULT_TASKS", "ORACLE_TASKS", "REQUIRED_ORACLE_TASKS",
    "Element", "MiniWoBState", "MiniWoBTask", "OracleStep", "EpisodeResult",
    "chrome_available", "configure_browser", "episode_seed", "oracle_step", "oracle_policy",
    "policy_from_wrapper", "run_episode", "record_demonstrations", "rollout", "rollout_episodes",
]

DEFAULT_CHROME_BINARY = "/usr/bin/chromium"
DEFAULT_CHROMEDRIVER = "/usr/bin/chromedriver"
#: Chromium switches used for every MiniWoB++ browser (headless, root-safe, no background traffic).
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
PLATFORM = "web"
SOURCE_PREFIX = "miniwob"
DEFAULT_MAX_STEPS = 12


# --------------------------------------------------------------------------------------------------
# Browser set-up
# --------------------------------------------------------------------------------------------------

def configure_browser() -> tuple[str, str]:
    """Point MiniWoB++ at Debian's Chromium unless the environment already names a browser.

    Returns:
        ``(chrome_binary, chromedriver)`` as they are now set in ``os.environ``.
    """
    if not os.environ.get("MINIWOB_CHROME_BINARY") and not os.environ.get("MINIWOB_CHROMEDRIVER"):
        os.environ["MINIWOB_CHROME_BINARY"] = DEFAULT_CHROME_BINARY
        os.environ["MINIWOB_CHROMEDRIVER"] = DEFAULT_CHROMEDRIVER
    return os.environ.get("MINIWOB_CHROME_BINARY", ""), os.environ.get("MINIWOB_CHROMEDRIVER", "")


def chrome_available() -> tuple[bool, str]:
    """Whether a Chromium and its driver can be found, and a reason when not."""
    binary = os.environ.get("MINIWOB_CHROME_BINARY") or DEFAULT_CHROME_BINARY
    driver = os.environ.get("MINIWOB_CHROMEDRIVER") or DEFAULT_CHROMEDRIVER
    missing = [p for p in (binary, driver) if not (Path(p).is_file() or shutil.which(p))]
    if missing:
        return False, (f"Chromium/chromedriver not found ({', '.join(missing)}): install them with "
                       "`make system-deps` (Debian packages chromium and chromium-driver)")
    try:
        import miniwob  # noqa: F401
    except ImportError as error:  # pragma: no cover - a declared dependency
        return False, f"the miniwob package is not installed: {error}"
    return True, ""


def _selenium_instance_class():
    """miniwob's SeleniumInstance with our Chromium switches (imported lazily: selenium is heavy)."""
    from miniwob.selenium_instance import SeleniumInstance
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.wait import WebDriverWait

    class _Instance(SeleniumInstance):
        # Same as miniwob's create_driver, with CHROME_FLAGS instead of its three headless switches.
        def create_driver(self):
            assert not hasattr(self, "driver"), f"instance {self.index} already has a driver"
            binary, chromedriver = configure_browser()
            options = webdriver.ChromeOptions()
            for flag in CHROME_FLAGS:
                options.add_argument(flag)
            if binary:
                options.binary_location = binary
            service = ChromeService(executable_path=chromedriver) if chromedriver else None
            self.driver = (webdriver.Chrome(service=service, options=options) if service
                           else webdriver.Chrome(options=options))
            self.driver.implicitly_wait(5)
            self.driver.get(self.url)
            try:
                WebDriverWait(self.driver, 5).until(EC.element_to_be_clickable((By.ID, self.SYNC_SCREEN_ID)))
            except TimeoutException:
                self.driver.quit()
                raise
            self.inner_width, self.inner_height = self.driver.execute_script(
                "return [window.innerWidth, window.innerHeight];")

    return _Instance


def _environment_class():
    from miniwob.environment import MiniWoBEnvironment

    instance_class = _selenium_instance_class()

    class _Environment(MiniWoBEnvironment):
        def _hard_reset_instance(self):
            if getattr(self, "instance", None):
                self.instance.close()
            self.instance = instance_class(index=0, **self.instance_kwargs)
            self.instance.start()
            self.instance.wait()

    return _Environment


def _action_space_config():
    """All of miniwob's action types, and every key combination for PRESS_KEY."""
    from miniwob.action import ActionSpaceConfig
    from miniwob.constants import ALL_POSSIBLE_KEYS

    config = ActionSpaceConfig.get_preset("all_supported")
    config.allowed_keys = ALL_POSSIBLE_KEYS
    return config


# --------------------------------------------------------------------------------------------------
# Observations
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Element:
    """One DOM element of an observation, in CSS pixels of the page."""

    ref: int
    parent: int
    tag: str          # lower case; inputs carry their type ("input_text"); text nodes are "t"
    text: str
    value: str
    id: str
    classes: str
    left: float
    top: float
    width: float
    height: float
    focused: bool

    @property
    def class_list(self) -> list[str]:
        return self.classes.split()


@dataclass
class MiniWoBState:
    """One observation: screenshot, utterance, fields and DOM elements.

    Attributes:
        task: MiniWoB++ task name (``click-test-2``).
        utterance: The instruction shown in the task's yellow band.
        fields: Values the utterance names (``{"target": "ONE"}``), from miniwob's field extractor.
        elements: DOM elements in document order.
        screenshot: The task area as an RGB ``PIL.Image`` (160x210 for the standard tasks).
        scale: ``(sx, sy)``: screenshot pixels per CSS pixel.
    """

    task: str
    utterance: str
    fields: dict[str, str]
    elements: list[Element]
    screenshot: Image.Image
    scale: tuple[float, float] = (1.0, 1.0)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.screenshot.size

    # -- looking elements up --------------------------------------------------------------------
    def find(self, tag: str | None = None, text: str | None = None, id: str | None = None,
             cls: str | None = None, where: Callable[[Element], bool] | None = None) -> list[Element]:
        """Elements matching every given criterion (``tag`` may be a prefix ending in ``*``)."""
        found = []
        for e in self.elements:
            if tag is not None and not (e.tag.startswith(tag[:-1]) if tag.endswith("*") else e.tag == tag):
                continue
            if text is not None and e.text != text:
                continue
            if id is not None and e.id != id:
                continue
            if cls is not None and cls not in e.class_list:
                continue
            if where is not None and not where(e):
                continue
            found.append(e)
        return found

    def one(self, **criteria) -> Element:
        """The first element matching ``criteria`` (see :meth:`find`); LookupError if none."""
        found = self.find(**criteria)
        if not found:
            raise LookupError(f"{self.task}: no element with {criteria} in {self.utterance!r}")
        return found[0]

    def children(self, element: Element) -> list[Element]:
        return [e for e in self.elements if e.parent == element.ref]

    # -- coordinates ----------------------------------------------------------------------------
    def to_pixels(self, x_css: float, y_css: float) -> tuple[float, float]:
        """A CSS point of the page as screenshot pixels."""
        return x_css * self.scale[0], y_css * self.scale[1]

    def to_css(self, x_px: float, y_px: float) -> tuple[float, float]:
        """A screenshot pixel as a CSS point of the page (what MiniWoB++ clicks)."""
        return x_px / self.scale[0], y_px / self.scale[1]

    def box_pixels(self, element: Element) -> list[float] | None:
        """The element's box ``[x1, y1, x2, y2]`` in screenshot pixels, clipped to the screenshot;
        None when nothing of it is visible."""
        width, height = self.image_size
        x1, y1 = self.to_pixels(element.left, element.top)
        x2, y2 = self.to_pixels(element.left + element.width, element.top + element.height)
        box = [round(max(0.0, x1), 2), round(max(0.0, y1), 2), round(min(float(width), x2), 2),
               round(min(float(height), y2), 2)]
        return box if box[0] < box[2] and box[1] < box[3] else None

    def center_pixels(self, element: Element) -> tuple[int, int]:
        """The whole screenshot pixel at the centre of the element's visible box."""
        box = self.box_pixels(element)
        if box is None:
            raise LookupError(f"{self.task}: element {element.tag} {element.text!r} is not on the screenshot")
        width, height = self.image_size
        x = min(int((box[0] + box[2]) / 2), width - 1)
        y = min(int((box[1] + box[3]) / 2), height - 1)
        return x, y

    def is_inside(self, element: Element, ancestor: Element) -> bool:
        """Whether ``element`` is ``ancestor`` or one of its descendants."""
        parents = {e.ref: e.parent for e in self.elements}
        ref = element.ref
        while ref:
            if ref == ancestor.ref:
                return True
            ref = parents.get(ref, 0)
        return False

    def click_point(self, element: Element) -> tuple[int, int]:
        """A screenshot pixel that clicks ``element``: its centre, unless an element drawn later
        (a positioned sibling, say) covers the centre; then the visible pixel deepest inside the
        uncovered part of the element."""
        import numpy as np

        x, y = self.center_pixels(element)
        box = self.box_pixels(element)
        order = {e.ref: i for i, e in enumerate(self.elements)}
        covers = [b for e in self.elements
                  if order[e.ref] > order[element.ref] and not self.is_inside(e, element)
                  and e.tag != "t" and (b := self.box_pixels(e)) is not None
                  and b[0] < box[2] and box[0] < b[2] and b[1] < box[3] and box[1] < b[3]]
        if not any(b[0] <= x + 0.5 < b[2] and b[1] <= y + 0.5 < b[3] for b in covers):
            return x, y
        xs, ys = np.meshgrid(np.arange(math.floor(box[0]), math.ceil(box[2])) + 0.5,
                             np.arange(math.floor(box[1]), math.ceil(box[3])) + 0.5)
        # Distance to the element's own edges, then to each covering box (0 inside it).
        depth = np.minimum.reduce([xs - box[0], box[2] - xs, ys - box[1], box[3] - ys])
        for b in covers:
            dx = np.maximum(np.maximum(b[0] - xs, xs - b[2]), 0)
            dy = np.maximum(np.maximum(b[1] - ys, ys - b[3]), 0)
            outside = np.maximum(dx, dy)
            depth = np.minimum(depth, np.where((dx == 0) & (dy == 0), 0, outside))
        if depth.max() <= 0:
            raise LookupError(f"{self.task}: element {element.tag} {element.text!r} is fully covered")
        row, col = np.unravel_index(np.argmax(depth), depth.shape)
        return int(xs[row, col]), int(ys[row, col])


def _state_from_observation(task: str, obs: dict, css_size: tuple[int, int]) -> MiniWoBState:
    screenshot = Image.fromarray(obs["screenshot"]).convert("RGB")
    elements = []
    for e in obs["dom_elements"]:
        elements.append(Element(
            ref=int(e["ref"]), parent=int(e["parent"]), tag=str(e["tag"]), text=str(e["text"]),
            value=str(e["value"]), id=str(e["id"]), classes=str(e["classes"]),
            left=float(e["left"][0]), top=float(e["top"][0]), width=float(e["width"][0]),
            height=float(e["height"][0]), focused=bool(e["flags"][0])))
    scale = (screenshot.width / css_size[0], screenshot.height / css_size[1])
    return MiniWoBState(task=task, utterance=str(obs["utterance"]), fields=dict(obs["fields"]),
                        elements=elements, screenshot=screenshot, scale=scale)


# --------------------------------------------------------------------------------------------------
# One task
# --------------------------------------------------------------------------------------------------

# Our key names -> miniwob's ("<Enter>", "C-a"); modifiers in miniwob's A-C-M-S order.
_MODIFIERS = {"alt": "A-", "ctrl": "C-", "control": "C-", "meta": "M-", "cmd": "M-", "shift": "S-"}
_MODIFIER_ORDER = "ACMS"
_SPECIAL_KEYS = {"esc": "Escape", "return": "Enter", "del": "Delete", "up": "ArrowUp", "down": "ArrowDown",
                 "left": "ArrowLeft", "right": "ArrowRight", "pgup": "PageUp", "pgdn": "PageDown"}


def _miniwob_key(key: str) -> str:
    from miniwob.constants import WEBDRIVER_SPECIAL_KEYS

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
        from miniwob.reward import get_binary_reward

        self.task = task
        self.time_limit_s = time_limit_s
        self.settle_ms = settle_ms
        self._env = _environment_class()(subdomain=task, action_space_config=_action_space_config(),
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
        import urllib.parse

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
        self.state = _state_from_observation(self.task, obs, self.css_size)
        self.done, self.reward, self.info = False, 0.0, info
        return self.state

    # -- actions --------------------------------------------------------------------------------
    def _coords(self, x: float, y: float):
        import numpy as np

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
        from miniwob.action import ActionTypes as T

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
        self.state = _state_from_observation(self.task, obs, self.css_size)
        return self.state, self.reward, False

    # -- records --------------------------------------------------------------------------------
    def record_dict(self, state: MiniWoBState, history: Sequence[dict], record_id: str = "") -> dict:
        """The plain record a policy reads (see the module docstring)."""
        return {"id": record_id or f"{SOURCE_PREFIX}-{state.task}", "image": state.screenshot,
                "instruction": state.utterance, "image_size": list(state.image_size),
                "history": [dict(a) for a in history], "source": f"{SOURCE_PREFIX}/{state.task}",
                "platform": PLATFORM, "bbox": None, "element_type": None, "miniwob": state}

    @staticmethod
    def record(state: MiniWoBState, action: dict, history: Sequence[dict], record_id: str,
               element: Element | None = None, split: str = "train") -> data.UIRecord:
        """A workbook record for one step: this screenshot + utterance -> ``action`` (pixels)."""
        return data.UIRecord(
            id=record_id, image=state.screenshot, image_size=list(state.image_size),
            instruction=state.utterance, action=dict(action),
            bbox=state.box_pixels(element) if element is not None else None,
            element_type=_element_type(element) if element is not None else None,
            source=f"{SOURCE_PREFIX}/{state.task}", platform=PLATFORM,
            history=[dict(a) for a in history], split=split)


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


# --------------------------------------------------------------------------------------------------
# Oracle policies
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OracleStep:
    """One oracle decision: the action (screenshot pixels) and the element it aims at, if any."""

    action: dict
    element: Element | None = None


def _click(state: MiniWoBState, element: Element) -> OracleStep:
    x, y = state.click_point(element)
    return OracleStep({"type": "click", "x": x, "y": y}, element)


def _type(text: str) -> OracleStep:
    return OracleStep({"type": "type", "text": text})


def _plan_step(plan: list[Callable[[], OracleStep]], step: int, state: MiniWoBState) -> OracleStep:
    if step >= len(plan):
        raise LookupError(f"{state.task}: the oracle's plan has {len(plan)} steps; asked for step {step + 1}")
    return plan[step]()


def _button(state: MiniWoBState, text: str) -> Element:
    return state.one(tag="button", text=text)


def _labelled_input(state: MiniWoBState, tag: str, label: str) -> Element:
    """The checkbox/radio whose label text is ``label``."""
    for e in state.find(tag=tag):
        if any(c.tag == "t" and c.text.strip() == label for c in state.children(_parent(state, e))):
            return e
    raise LookupError(f"{state.task}: no {tag} labelled {label!r}")


def _parent(state: MiniWoBState, element: Element) -> Element:
    for e in state.elements:
        if e.ref == element.parent:
            return e
    raise LookupError(f"{state.task}: element {element.ref} has no parent")


def _fill(state: MiniWoBState, step: int, entries: list[tuple[Element, str]], submit: Element) -> OracleStep:
    """Click each field and type its text, then click ``submit``."""
    plan: list[Callable[[], OracleStep]] = []
    for element, text in entries:
        plan += [lambda e=element: _click(state, e), lambda t=text: _type(t)]
    plan.append(lambda: _click(state, submit))
    return _plan_step(plan, step, state)


def _targets(state: MiniWoBState) -> list[str]:
    keys = sorted((k for k in state.fields if k.startswith("target")),
                  key=lambda k: int(k.split()[-1]) if k.split()[-1].isdigit() else -1)
    return [state.fields[k] for k in keys]


def _oracle_click_test(state, step):
    return _plan_step([lambda: _click(state, state.one(tag="button"))], step, state)


def _oracle_click_target_button(state, step):  # click-test-2, click-test-transfer, click-button, unicode-test
    return _plan_step([lambda: _click(state, _button(state, state.fields["target"]))], step, state)


def _oracle_click_link(state, step):
    link = state.one(tag="span", cls="alink", text=state.fields["target"])
    return _plan_step([lambda: _click(state, link)], step, state)


def _oracle_click_dialog(state, step):
    return _plan_step([lambda: _click(state, state.one(tag="button", cls="ui-dialog-titlebar-close"))], step, state)


def _oracle_focus_text(state, step):
    return _plan_step([lambda: _click(state, state.one(tag="input_text"))], step, state)


def _oracle_focus_text_2(state, step):
    field = state.one(tag="input_text", id=f"tt{int(state.fields['target'])}")
    return _plan_step([lambda: _click(state, field)], step, state)


def _oracle_enter_text(state, step):
    return _fill(state, step, [(state.one(tag="input_text"), state.fields["target"])], _button(state, "Submit"))


def _oracle_enter_text_2(state, step):
    text = state.fields["text"]
    text = text.upper() if state.fields["case"] == "upper" else text.lower()
    return _fill(state, step, [(state.one(tag="input_text"), text)], _button(state, "Submit"))


def _oracle_login_user(state, step):
    entries = [(state.one(id="username"), state.fields["username"]),
               (state.one(id="password"), state.fields["password"])]
    return _fill(state, step, entries, _button(state, "Login"))


def _oracle_enter_password(state, step):
    target = state.fields["target"]
    return _fill(state, step, [(state.one(id="password"), target), (state.one(id="verify"), target)],
                 _button(state, "Submit"))


def _oracle_click_checkboxes(state, step):
    plan = [lambda name=name: _click(state, _labelled_input(state, "input_checkbox", name))
            for name in _targets(state)]
    plan.append(lambda: _click(state, _button(state, "Submit")))
    return _plan_step(plan, step, state)


def _oracle_click_option(state, step):
    plan = [lambda: _click(state, _labelled_input(state, "input_radio", state.fields["target"])),
            lambda: _click(state, _button(state, "Submit"))]
    return _plan_step(plan, step, state)


def _oracle_click_tab(state, step):
    tab = state.one(cls="ui-tabs-anchor", text=f"Tab #{state.fields['target']}")
    return _plan_step([lambda: _click(state, tab)], step, state)


def _oracle_click_button_sequence(state, step):
    return _plan_step([lambda: _click(state, _button(state, "ONE")), lambda: _click(state, _button(state, "TWO"))],
                      step, state)


def _oracle_click_collapsible(state, step):
    # The section opens with a jQuery animation: wait for it, then click the button where it now is.
    plan = [lambda: _click(state, state.one(cls="ui-accordion-header")),
            lambda: OracleStep({"type": "wait", "seconds": 1}),
            lambda: _click(state, _button(state, "Submit"))]
    return _plan_step(plan, step, state)


_WIDGET_TAGS = {"radio": "input_radio", "checkbox": "input_checkbox", "text": "input_text",
                "textarea": "textarea", "button": "button"}


def _oracle_click_widget(state, step):
    widget = state.one(tag=_WIDGET_TAGS[state.fields["target"]])
    return _plan_step([lambda: _click(state, widget)], step, state)


#: task -> oracle ``(state, step_index) -> OracleStep``. The step index is the number of actions
#: already taken in the episode (``len(history)``); each call re-reads the current DOM.
ORACLES: dict[str, Callable[[MiniWoBState, int], OracleStep]] = {
    "click-test": _oracle_click_test,
    "click-test-2": _oracle_click_target_button,
    "click-button": _oracle_click_target_button,
    "click-link": _oracle_click_link,
    "click-dialog": _oracle_click_dialog,
    "focus-text": _oracle_focus_text,
    "enter-text": _oracle_enter_text,
    "login-user": _oracle_login_user,
    "click-checkboxes": _oracle_click_checkboxes,
    "click-tab": _oracle_click_tab,
    "click-test-transfer": _oracle_click_target_button,
    "unicode-test": _oracle_click_target_button,
    "focus-text-2": _oracle_focus_text_2,
    "enter-text-2": _oracle_enter_text_2,
    "enter-password": _oracle_enter_password,
    "click-option": _oracle_click_option,
    "click-button-sequence": _oracle_click_button_sequence,
    "click-collapsible": _oracle_click_collapsible,
    "click-widget": _oracle_click_widget,
}
#: Every task with an oracle.
ORACLE_TASKS = tuple(ORACLES)
#: The ten tasks the issue asked for (also the default task list of ``data.source: miniwob``).
REQUIRED_ORACLE_TASKS = ("click-test", "click-test-2", "click-button", "click-link", "click-dialog",
                         "focus-text", "enter-text", "login-user", "click-checkboxes", "click-tab")
DEFAULT_TASKS = REQUIRED_ORACLE_TASKS


def oracle_step(state: MiniWoBState, step: int) -> OracleStep:
    """The oracle's decision for ``state`` after ``step`` actions.

    Raises:
        KeyError: no oracle for the task (the message lists those there are).
        LookupError: the expected element is not on the page.
    """
    if state.task not in ORACLES:
        raise KeyError(f"no oracle policy for MiniWoB++ task {state.task!r}; oracles: {sorted(ORACLES)}")
    return ORACLES[state.task](state, step)


def oracle_policy(record: dict) -> dict:
    """The oracle as a policy: ``record`` must come from :meth:`MiniWoBTask.record_dict`."""
    return oracle_step(record["miniwob"], len(record["history"])).action


def policy_from_wrapper(vlm_wrapper, examples=None) -> Callable[[dict], dict | None]:
    """A policy that asks a :class:`~uivlm_helpers.wrapper.VLMWrapper` for the next action.

    The answer is decoded and mapped back to screenshot pixels by the wrapper; an answer that does
    not parse returns None, which :func:`run_episode` counts as a failed episode.
    """

    def policy(record: dict) -> dict | None:
        prediction = vlm_wrapper.predict([record["image"]], [record["instruction"]], examples=examples)[0]
        return prediction.action

    policy.wrapper = vlm_wrapper
    return policy


# --------------------------------------------------------------------------------------------------
# Episodes
# --------------------------------------------------------------------------------------------------

def episode_seed(seed: int, split: str, task: str, episode: int) -> int:
    """The MiniWoB++ seed of one episode: a stable hash, so splits and tasks never share instances."""
    digest = hashlib.sha256(f"{seed}/{split}/{task}/{episode}".encode()).hexdigest()
    return int(digest[:8], 16)


@dataclass
class EpisodeResult:
    """What happened in one episode."""

    task: str
    seed: int
    success: bool
    reward: float
    actions: list[dict] = field(default_factory=list)
    failure: str | None = None   # why it failed, when it did (policy error, step limit, wrong answer)


def run_episode(env: MiniWoBTask, policy: Callable[[dict], dict | None], seed: int,
                max_steps: int = DEFAULT_MAX_STEPS,
                on_step: Callable[[MiniWoBState, list[dict], dict], None] | None = None) -> EpisodeResult:
    """Run one episode of ``policy`` on ``env``.

    The policy's action is validated (an invalid one, None or an exception fails the episode, with
    the reason in ``failure``). ``done`` ends the episode: it succeeds only if the task itself ended
    with success. ``on_step(state, history, action)`` is called before each action is carried out.
    """
    state = env.reset(seed)
    history: list[dict] = []
    for _ in range(max_steps):
        record = env.record_dict(state, history, record_id=f"{SOURCE_PREFIX}-{env.task}-{seed}-{len(history)}")
        try:
            action = policy(record)
            if action is None:
                raise ValueError("the policy returned no action (unparseable answer?)")
            action = Action.from_dict(dict(action)).to_dict()
        except Exception as error:  # a policy's failure is a failed episode, not a crash
            return EpisodeResult(env.task, seed, False, -1.0, history, f"policy: {error}")
        if on_step is not None:
            on_step(state, history, action)
        if action["type"] == "done":
            return EpisodeResult(env.task, seed, False, -1.0, history + [action], "done() before the task ended")
        try:
            state, reward, done = env.step(action)
        except ValueError as error:
            return EpisodeResult(env.task, seed, False, -1.0, history, f"action: {error}")
        history.append(action)
        if done:
            reason = None if reward > 0 else f"task ended with reward {reward} ({env.info.get('reason')})"
            return EpisodeResult(env.task, seed, reward > 0, reward, history, reason)
    return EpisodeResult(env.task, seed, False, -1.0, history, f"no result after {max_steps} steps")


class _Browser:
    """One MiniWoBTask for a series of tasks: the caller's, or a new one closed at the end."""

    def __init__(self, env: MiniWoBTask | None, time_limit_s: float | None = None):
        self.env, self.own, self.time_limit_s = env, env is None, time_limit_s
        self.saved_limit = env.time_limit_s if env is not None else None

    def __enter__(self):
        return self

    def task(self, task: str) -> MiniWoBTask:
        if self.env is None:
            self.env = MiniWoBTask(task, time_limit_s=self.time_limit_s)
        else:
            self.env.load_task(task)
            if self.time_limit_s is not None:
                self.env.time_limit_s = self.time_limit_s
        return self.env

    def __exit__(self, *exc):
        if self.own and self.env is not None:
            self.env.close()
        elif self.env is not None:
            self.env.time_limit_s = self.saved_limit


def rollout_episodes(policy: Callable[[dict], dict | None], tasks: Iterable[str], episodes_per_task: int,
                     seed: int = 0, split: str = "test", max_steps: int = DEFAULT_MAX_STEPS,
                     time_limit_s: float | None = None,
                     env: MiniWoBTask | None = None) -> dict[str, list[EpisodeResult]]:
    """Every episode of :func:`rollout`, per task (same arguments)."""
    results: dict[str, list[EpisodeResult]] = {}
    with _Browser(env, time_limit_s) as browser:
        for task in tasks:
            task_env = browser.task(task)
            results[task] = [run_episode(task_env, policy, episode_seed(seed, split, task, i), max_steps)
                             for i in range(episodes_per_task)]
    return results


def rollout(policy: Callable[[dict], dict | None], tasks: Iterable[str], episodes_per_task: int,
            seed: int = 0, split: str = "test", max_steps: int = DEFAULT_MAX_STEPS,
            time_limit_s: float | None = None, env: MiniWoBTask | None = None) -> dict[str, float]:
    """Success rate of ``policy`` per task over seeded episodes.

    Args:
        policy: ``policy(record) -> action dict`` in screenshot pixels (e.g. :func:`oracle_policy`
            or :func:`policy_from_wrapper`).
        tasks: MiniWoB++ task names.
        episodes_per_task: episodes per task.
        seed: the same seed gives the same task instances (and, for a deterministic policy, the same
            rates). ``split="test"`` draws instances disjoint from ``record_demonstrations``' train split.
        max_steps: actions allowed per episode.
        time_limit_s: episode time limit (None: the task's own, usually 10 s).
        env: an open :class:`MiniWoBTask` to reuse (switched from task to task, left open; its own
            time limit comes back afterwards); None starts one browser for all the tasks and
            closes it at the end.

    Returns:
        ``{task: success_rate}`` with rates in [0, 1].
    """
    episodes = rollout_episodes(policy, tasks, episodes_per_task, seed, split, max_steps, time_limit_s, env)
    return {task: sum(r.success for r in results) / max(len(results), 1) for task, results in episodes.items()}


def record_demonstrations(tasks: Iterable[str], episodes: int, seed: int, out_dir: str | Path, *,
                          split: str = "train", max_records: int | None = None,
                          jsonl_name: str | None = None, max_steps: int = DEFAULT_MAX_STEPS,
                          env: MiniWoBTask | None = None) -> Path:
    """Record oracle demonstrations as a validated JSONL dataset.

    Every step of a successful oracle episode is one record (screenshot + utterance -> the oracle's
    action, ``bbox``/``element_type`` of the element it aims at, ``history`` = the episode's earlier
    actions). Failed episodes are left out; :func:`rollout` measures how rare they are.

    Args:
        tasks: MiniWoB++ tasks with an oracle (:data:`ORACLE_TASKS`).
        episodes: episodes per task (at most; see ``max_records``).
        seed: seeds the episodes (with ``split``, see :func:`episode_seed`): same arguments, same data.
        out_dir: dataset folder; screenshots go to ``out_dir/images``.
        split: the records' split, also part of the episode seeds.
        max_records: cap on the records written: each task stops once it has its share
            (``ceil(max_records / len(tasks))``) and the list is cut to ``max_records``.
        jsonl_name: file name (default ``<split>.jsonl``).
        env: an open :class:`MiniWoBTask` to reuse (see :func:`rollout`).

    Returns:
        The path of the JSONL file.
    """
    tasks = list(tasks)
    missing = [t for t in tasks if t not in ORACLES]
    if missing:
        raise KeyError(f"no oracle policy for {missing}; tasks with an oracle: {sorted(ORACLES)}")
    quota = math.ceil(max_records / len(tasks)) if max_records is not None else None
    records: list[data.UIRecord] = []
    with _Browser(env) as browser:
        for task in tasks:
            task_records: list[data.UIRecord] = []
            task_env = browser.task(task)
            for episode in range(episodes):
                if quota is not None and len(task_records) >= quota:
                    break
                steps: list[data.UIRecord] = []
                ep_seed = episode_seed(seed, split, task, episode)

                def remember(state, history, action, task=task, episode=episode, steps=steps):
                    decision = oracle_step(state, len(history))
                    record_id = f"{SOURCE_PREFIX}-{split}-{task}-{episode:05d}-{len(history):02d}"
                    steps.append(MiniWoBTask.record(state, action, history, record_id,
                                                    decision.element, split))

                result = run_episode(task_env, oracle_policy, ep_seed, max_steps, on_step=remember)
                if result.success:
                    task_records += steps
            records += task_records[:quota] if quota is not None else task_records
    if max_records is not None:
        records = records[:max_records]
    out = Path(out_dir) / (jsonl_name or f"{split}.jsonl")
    return data.write_records(records, out)
