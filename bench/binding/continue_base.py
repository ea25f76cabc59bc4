"""Continue pretraining the shipped base (or SRC) and follow held-out accuracy.

Usage (repo root): python -m bench.binding.continue_base INPUT_SIDE STEPS LR TAG
Environment: SRC (model folder), PAL (palette, e.g. red,green,blue), NW (boxes, e.g. 2,3), COLS (named
colours), SCHED (wsd|constant), EVERY (eval interval), BS, SEED, TEXTFIRST=1 (instruction before the image),
FAMS (instruction families, e.g. extreme), PLACES (place words, e.g. leftmost,topmost).
"""
import json, shutil, sys, os
from pathlib import Path
OUT = os.environ.get("OUT", "runs/binding")  # run folders, checkpoints and curves
import torch
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
from recipes import pretrain as P
from uivlm_helpers.data import synth_tasks
if os.environ.get("PAL"):
    synth_tasks.PALETTE = {k: synth_tasks.PALETTE[k] for k in os.environ["PAL"].split(",")}
from bench.binding import prompt_order
prompt_order.apply_from_env()
side = int(sys.argv[1]); steps = int(sys.argv[2]); lr = float(sys.argv[3]); tag = sys.argv[4]
src = Path(os.environ.get("SRC", "models/tiny-qwen2-vl-ui"))
init = Path(f"{OUT}/init-{tag}")
if init.exists(): shutil.rmtree(init)
shutil.copytree(src, init, ignore=shutil.ignore_patterns("heldout_small", "*.png", "curve.json", "train.log"))
pc = json.loads((init / "processor_config.json").read_text())
pc["image_processor"]["size"] = {"longest_edge": side * side, "shortest_edge": min(3136, side * side)}
(init / "processor_config.json").write_text(json.dumps(pc, indent=2))
P.build_initial_checkpoint = lambda *a, **k: init
o = P.PretrainOptions(families=os.environ.get("FAMS", "colour").split(","),
                      places=os.environ["PLACES"].split(",") if os.environ.get("PLACES") else None, colours=os.environ.get("COLS", "red,green,blue").split(","), n_widgets=[int(v) for v in os.environ.get("NW", "3,5").split(",")], screens="boxes", input_side=side,
                      max_steps=steps, batch_size=int(os.environ.get("BS", "32")), learning_rate=lr,
                      schedule=os.environ.get("SCHED", "wsd"), warmup_steps=50,
                      coarse_steps=int(os.environ.get("COARSE", "0")), single_steps=0,
                      eval_every=int(os.environ.get("EVERY", "250")), eval_size=96, checkpoint_every=100000,
                      seed=int(os.environ.get("SEED", "1")))
r = P.pretrain(o, f"{OUT}/run-{tag}", f"{OUT}/out-{tag}")
print(json.dumps([(p["step"], round(p["click_accuracy"], 3), p["elapsed_s"]) for p in r["curve"]]))
