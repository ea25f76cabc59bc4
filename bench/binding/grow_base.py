"""Depth up-scaling: copy a base, inserting near-identity decoder layers (o_proj, down_proj zero).

Usage: python -m bench.binding.grow_base SRC DST ORDER   (ORDER e.g. 0,n,1,n: old layer index or n for new)
"""
import json, shutil, sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
order = [int(v) if v != "n" else None for v in sys.argv[3].split(",")]  # e.g. 0,n,1,n
if dst.exists(): shutil.rmtree(dst)
shutil.copytree(src, dst, ignore=shutil.ignore_patterns("heldout_small", "*.png", "curve.json", "train.log"))
sd = load_file(src / "model.safetensors")
out = {k: v for k, v in sd.items() if not k.startswith("model.layers.")}
g = torch.Generator().manual_seed(0)
for new_i, old_i in enumerate(order):
    tmpl = 0 if old_i is None else old_i
    for k, v in sd.items():
        pre = f"model.layers.{tmpl}."
        if not k.startswith(pre): continue
        name = k[len(pre):]
        if old_i is not None:
            t = v.clone()
        elif "layernorm" in name:
            t = torch.ones_like(v)
        elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
            t = torch.zeros_like(v)
        elif name.endswith("bias"):
            t = torch.zeros_like(v)
        else:
            t = (torch.randn(v.shape, generator=g) * 0.02).to(v.dtype)
        out[f"model.layers.{new_i}.{name}"] = t
save_file(out, dst / "model.safetensors", metadata={"format": "pt"})
c = json.loads((dst / "config.json").read_text())
c["text_config"]["num_hidden_layers"] = len(order)
c["text_config"]["layer_types"] = ["full_attention"] * len(order)
(dst / "config.json").write_text(json.dumps(c, indent=2))
print("layers", len(order))
