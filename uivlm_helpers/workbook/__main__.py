"""``python -m uivlm_helpers.workbook --run-dir RUN [-p NAME VALUE ...] [-f params.yaml]``: run 01 -> 05."""

import sys

from .runner import main

sys.exit(main())
