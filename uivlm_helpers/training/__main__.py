"""``python -m uivlm_helpers.training --run-dir RUN [--resume]`` (also under ``accelerate launch -m``)."""

import sys

from .train import main

sys.exit(main())
