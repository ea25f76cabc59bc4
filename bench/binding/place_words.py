"""PLACES=leftmost,topmost limits the ``extreme`` family's instructions to those place words (screens where
the target is beyond the others only in another direction are drawn again)."""
import os


def apply_from_env() -> bool:
    if not os.environ.get("PLACES"):
        return False
    from uivlm_helpers import synth_tasks

    words = os.environ["PLACES"].split(",")
    extremes = synth_tasks._extremes

    def limited(widgets):
        found = {i: [t for t in texts if any(f" {w} " in t for w in words)] for i, texts in extremes(widgets).items()}
        return {i: texts for i, texts in found.items() if texts}

    synth_tasks._extremes = limited
    return True
