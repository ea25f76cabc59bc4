"""One MiniWoB++ observation: the screenshot, the utterance, its fields and the DOM elements.

Coordinates. MiniWoB++ clicks at CSS pixels of the page; its screenshot is the task area (160x210 CSS
px) cut from the browser's screenshot and *resized to the task size*, so one screenshot pixel is one
CSS pixel whatever the device pixel ratio. The mapping is still computed from the real screenshot
size (``MiniWoBState.scale``) rather than assumed, and a test checks it against the browser's own
``document.elementFromPoint``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image


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


def state_from_observation(task: str, obs: dict, css_size: tuple[int, int]) -> MiniWoBState:
    """A :class:`MiniWoBState` from a miniwob observation; ``css_size`` is the task area in CSS pixels."""
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
