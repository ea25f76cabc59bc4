"""Pure binding from random weights: two boxes at fixed places, two of red/green/blue, the target named
by colour, so only binding the word to the pixels beats 50%.

Usage (repo root): python -m bench.binding.two_boxes TAG STEPS LR   (TEXTFIRST=1, SHAPE=small, FAMILY=paligemma optional)
"""
import json, os, random, sys
from pathlib import Path
OUT = os.environ.get("OUT", "runs/binding")  # run folders, checkpoints and curves
import torch
torch.set_num_threads(2)
from recipes import pretrain as P
from uivlm_helpers.data import synth_tasks as S
from bench.binding import prompt_order
prompt_order.apply_from_env()
def two_boxes(rng, image_size=(224, 224), colours=None, dark_rate=0.2, wash=True, n_boxes=(1, 1)):
    c = S._blank_canvas(rng, image_size, dark_rate, wash, (13,))
    names = rng.sample(["red", "green", "blue"], 2)
    boxes = [(20, 80, 100, 140), (124, 80, 204, 140)]
    ws = []
    for name, b in zip(names, boxes):
        c.rrect(b, S.PALETTE[name], None)
        ws.append(S.Widget("button", "OK", b, S.PALETTE[name]))
    return S.TaskScreen(c.img, tuple(ws), tuple(names))


def use_family(family):
    """Pretrain another tiny family's embedded checkpoint (its own shape) instead of a Qwen2-VL shape."""
    from uivlm_helpers.models import tiny
    P.FAMILIES_BUILT = (*P.FAMILIES_BUILT, family)
    P.build_initial_checkpoint = lambda out, shape, seed=0, side=224: tiny.tiny_checkpoint(
        f"uivlm/tiny-{family}", cache_dir=Path(out).parent / "tiny")


def main(argv):
    S.generate_box_screen = two_boxes
    family = os.environ.get("FAMILY", "qwen2_vl")
    if family != "qwen2_vl":
        use_family(family)
    tag, steps, lr = argv[0], int(argv[1]), float(argv[2])
    o = P.PretrainOptions(colours=["red", "green", "blue"], n_widgets=[2, 2], screens="boxes", input_side=112,
                          max_steps=steps, batch_size=32, learning_rate=lr, schedule="constant", warmup_steps=50,
                          coarse_steps=0, single_steps=0, eval_every=250, eval_size=96, checkpoint_every=100000,
                          seed=0, shape=os.environ.get("SHAPE", "tiny"), family=family)
    r = P.pretrain(o, f"{OUT}/run-{tag}", f"{OUT}/out-{tag}")
    print(json.dumps([(p["step"], round(p["click_accuracy"], 3)) for p in r["curve"]]))


if __name__ == "__main__":
    main(sys.argv[1:])
