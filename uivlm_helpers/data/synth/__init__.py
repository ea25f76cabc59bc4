"""Deterministic synthetic UI screens with labelled widgets.

The generator draws small but realistic-looking screens with PIL - login
forms, settings lists, toolbars, dialogs, search results - and records the
box of every widget it draws. One widget per screen becomes the target of a
grounding example: an instruction that names it unambiguously ("Click the
Save button", "Check the Remember me box", "Click the second checkbox") and
a click at the centre of its box.

Why synthetic data: it is free, unlimited, has exact labels, and a tiny model
on a laptop CPU can learn it in minutes, which is what a teaching workbook
needs before moving to real screenshots.

Everything is a pure function of a ``random.Random``: the same seed gives
byte-identical PNGs and identical records on every machine with the same
Pillow version (Pillow's bundled font is used, never a system font).

One job per module:

* :mod:`.theme` - the light and dark colour themes;
* :mod:`.glyphs` - the icons, the words that name them, how each is drawn;
* :mod:`.canvas` - :class:`Widget` and the :class:`Canvas` whose drawing primitives record widgets;
* :mod:`.rows` - vertical stacking of rows (optional ones dropped to fit) and button rows;
* :mod:`.layouts` - the five layouts and the words each draws from;
* :mod:`.wording` - unambiguous instructions for a widget, and the choice of target;
* :mod:`.records` - one screen from a random stream, dataset files and splits.
"""

from __future__ import annotations

from .canvas import MIN_FONT, TARGET_KINDS, Box, Canvas, NoFit, Widget
from .glyphs import ICON_NAMES, ICON_WORDS, draw_glyph
from .layouts import (
    APP_TITLES,
    BOTTOM_LINKS,
    DIALOGS,
    DOC_TITLES,
    DONT_ASK,
    FORGOT,
    LAYOUT_FUNCS,
    LAYOUTS,
    LOGIN_FIELDS,
    LOGIN_TITLES,
    PASSWORD_FIELDS,
    PLATFORM_BY_LAYOUT,
    PRIMARY_LOGIN,
    REMEMBER,
    RESULT_TITLES,
    SEARCH_FILTERS,
    SEARCH_PLACEHOLDERS,
    SECONDARY_LOGIN,
    SETTINGS_BUTTONS,
    SETTINGS_LINKS,
    SETTINGS_OPTIONS,
    SETTINGS_TITLES,
    SNIPPETS,
    TOOLBAR_BUTTONS,
    TOOLBAR_LINKS,
)
from .records import generate_records, generate_screen, make_splits
from .theme import RGB, THEMES, Theme, make_theme
from .wording import ORDINALS, candidate_instructions, pick_target

# The documented entry points. Everything imported above is importable from here too: the word lists
# of the layouts and instructions in particular, so code that collects the screens' vocabulary from
# this package (the benchmarks' tokenizer corpus reads every list of strings here) sees all of it.
__all__ = [
    "ICON_NAMES",
    "LAYOUTS",
    "TARGET_KINDS",
    "THEMES",
    "Widget",
    "candidate_instructions",
    "generate_records",
    "generate_screen",
    "make_splits",
    "pick_target",
]
