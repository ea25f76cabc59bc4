"""Control for two_boxes.py: the same screens, the target named by place ("Click the left button").

Usage (repo root): python bench/binding/two_boxes_by_place.py TAG STEPS LR
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import two_boxes  # noqa: E402


def pick_by_place(rng, available, families=None, weights=None):
    index = rng.randrange(2)
    return index, f"Click the {('left', 'right')[index]} button", "colour"


if __name__ == "__main__":
    two_boxes.S._choose_target = pick_by_place
    two_boxes.main(sys.argv[1:])
