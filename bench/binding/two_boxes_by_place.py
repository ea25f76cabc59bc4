"""Control for two_boxes.py: the same screens, the target named by place ("Click the left button").

Usage (repo root): python -m bench.binding.two_boxes_by_place TAG STEPS LR
"""
import sys

from bench.binding import two_boxes


def pick_by_place(rng, available, families=None, weights=None):
    index = rng.randrange(2)
    return index, f"Click the {('left', 'right')[index]} button", "colour"


if __name__ == "__main__":
    two_boxes.S._choose_target = pick_by_place
    two_boxes.main(sys.argv[1:])
