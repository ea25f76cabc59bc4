"""MiniWoB++ in the workbook's terms (see :mod:`.environment`)."""

from .environment import *  # noqa: F403
from .environment import ORACLES, __all__  # noqa: F401
