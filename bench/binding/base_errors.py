"""Where the base's misses land: inside another button (binding) or off every button (pointing), and
accuracy by the number of nameable buttons on the screen.

Usage (repo root): python -m bench.binding.base_errors N [MODEL] [COLOURS]   (SIDE=input side, TEXTFIRST=1)
"""
import json, sys, math, os
from bench.binding import prompt_order
prompt_order.apply_from_env()

import torch
torch.set_num_threads(2)
from uivlm_helpers.data import synth_tasks
from recipes.pretrain import PretrainOptions
from uivlm_helpers.evaluation.evaluate import predict_records
from uivlm_helpers.models.wrapper import VLMWrapper
screens = {}
orig = synth_tasks.generate_box_screen
def rec(*a, **k):
    s = orig(*a, **k); screens['last'] = s; return s
synth_tasks.generate_box_screen = rec
n = int(sys.argv[1]); model = sys.argv[2] if len(sys.argv) > 2 else "models/tiny-qwen2-vl-ui"
colours = sys.argv[3].split(",") if len(sys.argv) > 3 else ["red","green","blue"]
recs, allw, cols = [], [], []
from collections import Counter
conf=Counter()
for i in range(n):
    r = synth_tasks.task_example("test", 0, i, ["colour"], None, (224,224), (3,5), colours=colours, boxes=True)
    recs.append(r); allw.append([w.bbox for w in screens['last'].widgets]); cols.append(screens['last'].colours)
import os
side=int(os.environ.get("SIDE","0"))
w = VLMWrapper.load_pretrained(model, **({"max_pixels": side*side, "min_pixels": side*side} if side else {}))
rows = predict_records(w, recs, batch_size=32, progress=False)
cat = {"hit":0, "near_target":0, "other_widget":0, "near_other":0, "unparsed":0}
dist=[]
for r, row, boxes, cl in zip(recs, rows, allw, cols):
    if row["click_correct"]: cat["hit"]+=1; continue
    p = row["predicted"]
    if not p or p.get("type")!="click": cat["unparsed"]+=1; continue
    x,y = p["x"], p["y"]
    def d(b): 
        dx = max(b[0]-x, 0, x-b[2]); dy = max(b[1]-y,0,y-b[3]); return math.hypot(dx,dy)
    ds = [d(b) for b in boxes]
    ti = boxes.index(tuple(r["bbox"])) if tuple(r["bbox"]) in boxes else [list(b) for b in boxes].index(r["bbox"])
    j = min(range(len(boxes)), key=lambda k: ds[k])
    if ds[j]==0 and j!=ti: conf[(cl[ti], cl[j])]+=1
    if ds[j]==0: cat["other_widget" if j!=ti else "hit"]+=1
    else: cat["near_target" if j==ti else "near_other"]+=1; dist.append(ds[j])
print(cat, "median off-box dist", sorted(dist)[len(dist)//2] if dist else None)
print({k: rows[0][k] for k in rows[0] if k not in ('image',)})

print(conf.most_common())
from collections import defaultdict
by = defaultdict(list); heur = []
for r, row, cl in zip(recs, rows, cols):
    k = sum(c in colours for c in cl); by[k].append(bool(row["click_correct"])); heur.append(1/k)
print({k: (len(v), round(sum(v)/len(v),3)) for k,v in sorted(by.items())}, "random-named-colour-box heuristic:", round(sum(heur)/len(heur),3))
