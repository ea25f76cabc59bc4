"""Coordinate spaces: how a point on the screenshot is written in the units a model speaks.

Every space maps screenshot pixels to model units (:meth:`CoordinateSpace.to_model`) and back
(:meth:`CoordinateSpace.to_pixels`). Pixel coordinates are continuous: pixel column ``i`` covers
``[i, i + 1)``, so ``x = W`` is the right edge of a ``W``-pixel-wide screenshot.

Spaces (``get_space(name)``):

========================  ======================================================================
``pixels``                screenshot pixels, the identity; valid range ``[0, W]``.
``norm1``                 ``x / W`` rounded to 3 decimals; valid range ``[0, 1]``.
``norm1000``              Qwen2-VL: whole numbers ``0..999`` (the paper's ``[0, 1000)``).
``resized``               pixels of the image the model actually saw after resizing, e.g. by
                          Qwen2.5-VL's :func:`smart_resize`; whole numbers ``0..w-1``.
``paligemma_loc``         ``0..1023``, written as ``<locNNNN>`` tokens, **y before x**.
``florence_loc``          ``0..999``, written as ``<loc_N>`` tokens, x before y.
========================  ======================================================================

Rounding convention (whole-number spaces): model unit ``u`` covers the pixels
``[u * W / N, (u + 1) * W / N)``. Encoding takes the unit that contains the point (floor) and
decoding returns the *centre* of the unit, so a round trip moves a point by at most half a unit.
``norm1`` rounds to the nearest grid value instead, with the same half-unit bound. Consequence: a
point at least half a unit inside a box (in particular the centre of any box at least one unit
wide, which is what click targets are) decodes inside that box.

Decoding clamps out-of-range model units (``1200`` in ``norm1000``, negative numbers) into the
valid range and reports ``clamped=True``, so callers can count such predictions instead of
silently accepting them. Encoding a pixel point that lies outside the screenshot is an error: it
means the data or the image size is wrong.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = [
    "CoordinateSpace", "PixelSpace", "Norm1Space", "GridSpace", "LocTokenSpace",
    "SPACE_NAMES", "get_space", "smart_resize",
]

#: Names accepted by :func:`get_space`.
SPACE_NAMES = ("pixels", "norm1", "norm1000", "resized", "paligemma_loc", "florence_loc")

# Qwen2.5-VL's published defaults (qwen_vl_utils): 4 and 16384 patches of 28 x 28 pixels.
QWEN_MIN_PIXELS = 4 * 28 * 28
QWEN_MAX_PIXELS = 16384 * 28 * 28
QWEN_MAX_RATIO = 200


def _check_size(image_size) -> tuple[int, int]:
    width, height = image_size
    if not (width > 0 and height > 0):
        raise ValueError(f"image_size must be a positive (width, height), got {image_size!r}")
    return width, height


def _check_inside(x, y, width, height):
    # A pixel point outside the screenshot is a data bug (wrong image size, swapped axes), not
    # something to round away.
    if not (0 <= x <= width and 0 <= y <= height):
        raise ValueError(f"point ({x}, {y}) lies outside the {width}x{height} screenshot")


def _clamp(value, low, high) -> tuple[float, bool]:
    if value < low:
        return low, True
    if value > high:
        return high, True
    return value, False


@dataclass(frozen=True)
class CoordinateSpace(ABC):
    """The units in which a model reads and writes screen positions. Instances are immutable."""

    name: str

    @abstractmethod
    def to_model(self, x: float, y: float, image_size: tuple[int, int]) -> tuple[int | float, int | float]:
        """Map a screenshot pixel point to model units.

        Args:
            x: horizontal pixel coordinate, ``0 <= x <= width``.
            y: vertical pixel coordinate, ``0 <= y <= height``.
            image_size: the screenshot's ``(width, height)``.

        Raises:
            ValueError: the point lies outside the screenshot.
        """

    @abstractmethod
    def to_pixels(self, mx: float, my: float, image_size: tuple[int, int]) -> tuple[float, float, bool]:
        """Map a point in model units to screenshot pixels.

        Args:
            mx: horizontal position in model units.
            my: vertical position in model units.
            image_size: the screenshot's ``(width, height)``.

        Returns:
            ``(x, y, clamped)``: the pixel point, and whether the model point was out of range and
            had to be clamped into it.
        """


@dataclass(frozen=True)
class PixelSpace(CoordinateSpace):
    """Screenshot pixels: the identity mapping (numbers pass through unchanged)."""

    name: str = "pixels"

    def to_model(self, x, y, image_size):
        _check_inside(x, y, *_check_size(image_size))
        return x, y

    def to_pixels(self, mx, my, image_size):
        width, height = _check_size(image_size)
        x, clamped_x = _clamp(mx, 0, width)
        y, clamped_y = _clamp(my, 0, height)
        return x, y, clamped_x or clamped_y


@dataclass(frozen=True)
class Norm1Space(CoordinateSpace):
    """Fractions of the screenshot's width and height in ``[0, 1]``, rounded to ``decimals`` places."""

    name: str = "norm1"
    decimals: int = 3

    def to_model(self, x, y, image_size):
        width, height = _check_size(image_size)
        _check_inside(x, y, width, height)
        return round(x / width, self.decimals), round(y / height, self.decimals)

    def to_pixels(self, mx, my, image_size):
        width, height = _check_size(image_size)
        fx, clamped_x = _clamp(mx, 0, 1)
        fy, clamped_y = _clamp(my, 0, 1)
        return fx * width, fy * height, clamped_x or clamped_y


@dataclass(frozen=True)
class GridSpace(CoordinateSpace):
    """Whole-number units: ``grid = (columns, rows)`` units across the screenshot.

    Used for ``norm1000`` (a 1000 x 1000 grid whatever the image size) and ``resized`` (the grid
    is the resized image's own pixels).
    """

    grid: tuple[int, int]

    def to_model(self, x, y, image_size):
        width, height = _check_size(image_size)
        _check_inside(x, y, width, height)
        columns, rows = self.grid
        # min(): the far edge (x == width) belongs to the last unit.
        return (min(math.floor(x * columns / width), columns - 1),
                min(math.floor(y * rows / height), rows - 1))

    def to_pixels(self, mx, my, image_size):
        width, height = _check_size(image_size)
        columns, rows = self.grid
        ux, clamped_x = _clamp(mx, 0, columns - 1)
        uy, clamped_y = _clamp(my, 0, rows - 1)
        # The centre of the unit: see the module docstring for why.
        return (ux + 0.5) * width / columns, (uy + 0.5) * height / rows, clamped_x or clamped_y


@dataclass(frozen=True)
class LocTokenSpace(GridSpace):
    """A :class:`GridSpace` whose points are written as a pair of location tokens.

    Attributes:
        token_format: ``str.format`` template of one token, e.g. ``"<loc{:04d}>"``.
        token_regex: regular expression matching one token, the number in group 1.
        y_first: whether a point is written y before x (PaliGemma) rather than x before y.
    """

    token_format: str
    token_regex: str
    y_first: bool

    def format_point(self, x: int, y: int) -> str:
        """The token pair for a point in model units, e.g. ``<loc0512><loc0256>`` for PaliGemma.

        Raises:
            ValueError: a coordinate is not a whole number inside the grid (no token exists for it).
        """
        for value, size in ((x, self.grid[0]), (y, self.grid[1])):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
                raise ValueError(f"{self.name} writes whole numbers 0..{size - 1} as tokens, got {value!r}")
        first, second = (y, x) if self.y_first else (x, y)
        return self.token_format.format(first) + self.token_format.format(second)

    def read_tokens(self, tokens: list[str]) -> list[int]:
        """Numbers of a run of location tokens, reordered to ``[x, y, x, y, ...]``.

        Out-of-grid numbers are kept (decoding clamps and flags them).

        Raises:
            ValueError: a token belongs to another space, its number is too long to be a grid
                position, or the run has an odd length.
        """
        values = []
        for token in tokens:
            match = re.fullmatch(self.token_regex, token)
            shown = token if len(token) <= 24 else token[:20] + "...>"
            if match is None:
                raise ValueError(f"{shown} is not a {self.name} location token")
            # Such a number is far beyond any grid (clamping would not change the answer), and
            # int() of thousands of digits is slow and past 4,300 raises Python's own error.
            digits = len(match.group(1).lstrip("0"))
            if digits > _MAX_TOKEN_DIGITS:
                raise ValueError(f"{shown} is not a {self.name} location token: its number has "
                                 f"{digits:,} digits (the grid is 0..{max(self.grid) - 1})")
            values.append(int(match.group(1)))
        if len(values) % 2:
            raise ValueError(f"{len(values)} location tokens; a point needs two")
        if self.y_first:
            values = [v for i in range(0, len(values), 2) for v in (values[i + 1], values[i])]
        return values


# Location-token numbers are read (and clamped) up to this many digits; longer ones are an error.
_MAX_TOKEN_DIGITS = 16


PIXELS = PixelSpace()
NORM1 = Norm1Space()
NORM1000 = GridSpace("norm1000", (1000, 1000))
PALIGEMMA_LOC = LocTokenSpace("paligemma_loc", (1024, 1024), "<loc{:04d}>", r"<loc(\d+)>", True)
FLORENCE_LOC = LocTokenSpace("florence_loc", (1000, 1000), "<loc_{}>", r"<loc_(\d+)>", False)
_FIXED_SPACES = {space.name: space for space in (PIXELS, NORM1, NORM1000, PALIGEMMA_LOC, FLORENCE_LOC)}


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = QWEN_MIN_PIXELS,
                 max_pixels: int = QWEN_MAX_PIXELS) -> tuple[int, int]:
    """The size a Qwen-VL image processor resizes an image to (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5).

    Each side is rounded to a multiple of ``factor``; if the area then exceeds ``max_pixels`` both
    sides are scaled down (floored to the factor, at least one factor), if it is below ``min_pixels``
    scaled up (ceiled). The arithmetic of transformers' ``Qwen2VLImageProcessor`` (the processor the
    workbook feeds raw screenshots to), so the ``resized`` space and the image-token counts of
    :mod:`uivlm_helpers.models.model_configs` describe the image the model actually sees. The
    defaults are Qwen2.5-VL's published budget; callers with another family's budget (factor 32 for
    Qwen3-VL, 1,280 patches for Qwen2-VL's processor) pass it.

    Note the argument and result order is Qwen's: **height first**.

    Returns:
        ``(resized_height, resized_width)``.

    Raises:
        ValueError: the aspect ratio exceeds 200, as in Qwen's implementation.
    """
    if max(height, width) / min(height, width) > QWEN_MAX_RATIO:
        raise ValueError(f"absolute aspect ratio must be smaller than {QWEN_MAX_RATIO}, "
                         f"got {max(height, width) / min(height, width)}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def get_space(name: str, **kw) -> CoordinateSpace:
    """The coordinate space called ``name`` (see :data:`SPACE_NAMES`).

    Only ``resized`` takes options, and exactly one of:

    * ``size=(w, h)``: the resized image's width and height, or
    * ``image_size=(W, H)`` plus optional ``factor``, ``min_pixels``, ``max_pixels``: compute it
      with :func:`smart_resize` (which takes height first; this does the swap for you).

    A resized space belongs to one screenshot size; build one per size.

    Raises:
        ValueError: unknown name, or options that do not fit the space.
    """
    if name in _FIXED_SPACES:
        if kw:
            raise ValueError(f"space {name!r} takes no options, got {sorted(kw)}")
        return _FIXED_SPACES[name]
    if name != "resized":
        raise ValueError(f"unknown coordinate space {name!r}; supported: {', '.join(SPACE_NAMES)}")
    if "size" in kw:
        if len(kw) != 1:
            raise ValueError(f"'resized' takes size=(w, h) alone, got {sorted(kw)}")
        width, height = _check_size(kw["size"])
    elif "image_size" in kw:
        options = {k: v for k, v in kw.items() if k != "image_size"}
        unknown = set(options) - {"factor", "min_pixels", "max_pixels"}
        if unknown:
            raise ValueError(f"unknown smart_resize options {sorted(unknown)}")
        image_width, image_height = _check_size(kw["image_size"])
        height, width = smart_resize(image_height, image_width, **options)
    else:
        raise ValueError("'resized' needs size=(w, h) or image_size=(W, H) (then Qwen2.5-VL smart_resize)")
    return GridSpace("resized", (width, height))
