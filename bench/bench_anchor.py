"""The H100 anchor: full-size Qwen2-VL-2B training steps in a plain PyTorch loop (no Trainer).

The memory estimator (``uivlm_helpers.training.memory``) was calibrated against the rows this loop measured on
one H100 80GB (``bench/results/gpu_anchor_2b_h100.jsonl``, torch 2.11 cu130, transformers 5.17,
peft 0.21, bitsandbytes 0.50.2, liger-kernel 0.8.5). Each row: the published 2B configuration with
random bf16 weights (``model_configs.build_config``), sdpa attention, LoRA r 16 / alpha 32 / dropout
0.05, AdamW on the trainable parameters, one synthetic 1288x728 screenshot per sample and a short
prompt (1,258 tokens, 12 of them answer tokens carrying labels), the vision tower frozen. ``peak_alloc_gib``
is ``torch.cuda.max_memory_allocated`` over 8 steps, ``step_s`` their median. The loop keeps the model
output (its logits) alive through backward, as a hand-written loop does; the Trainer rows of
``bench_memory.py`` do not.

Modes: ``lora_qv`` (the seed guide's q,v targets), ``lora_all`` (q,k,v,o,gate,up,down),
``lora_all_ckpt`` (with gradient checkpointing), ``qlora4_all_ckpt`` (4-bit NF4 + double quant),
``generate16`` (greedy latency of 16 tokens); ``--liger`` applies liger-kernel's Qwen2-VL patch first.
``--cache`` measures the cached-feature path instead: the tower's ``get_image_features`` run once,
scattered into ``inputs_embeds`` with M-RoPE ``position_ids`` from ``get_rope_index``, against the
ordinary forward (LoRA all + checkpointing).

GPU: ``python3 -m bench.bench_anchor --device cuda [--liger] [--cache]``
CPU rehearsal of the same code path: ``.venv/bin/python -m bench.bench_anchor --shrink 1 --res 448x252``
(writes to ``$BENCH_OUT`` or a temporary folder, never over the recorded rows).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import GIB, QWEN_2B, bench_processor, build_full_model, free_memory, sync

MODES = ("lora_qv", "lora_all", "lora_all_ckpt", "qlora4_all_ckpt", "generate16")
ALL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PROMPT = "Click the Sign in button."
ANSWER = "click(512, 384)<|im_end|>"


def _batch(processor, size: tuple[int, int], batch: int, device: str):
    """``batch`` copies of one screenshot + prompt, labels on the answer tokens only."""
    from PIL import Image

    image = Image.new("RGB", size, (236, 240, 244))
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}],
        add_generation_prompt=True)
    inputs = processor(text=[prompt + ANSWER] * batch, images=[image] * batch, return_tensors="pt")
    answer_tokens = len(processor.tokenizer(ANSWER)["input_ids"])
    labels = inputs["input_ids"].clone()
    labels[:, :-answer_tokens] = -100
    inputs["labels"] = labels
    return {k: v.to(device) for k, v in inputs.items()}, answer_tokens


def _wrap(model, mode: str):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets = ["q_proj", "v_proj"] if mode == "lora_qv" else ALL_TARGETS
    if mode.startswith("qlora4"):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    elif mode.endswith("ckpt"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    # LoRA on the language model only: the vision tower stays frozen in every row.
    config = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, bias="none",
                        target_modules=rf"^(?!.*visual).*\.({'|'.join(targets)})$")
    return get_peft_model(model, config)


def _steps(model, inputs, device: str, steps: int, embeds_fn=None) -> list[float]:
    import torch

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for _ in range(steps):
        sync(device)
        start = time.perf_counter()
        batch = embeds_fn(inputs) if embeds_fn else inputs
        output = model(**batch)
        output.loss.backward()            # output (and its logits) stays alive through backward
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - start)
        del output
    return times


def _cached_embeds(model, inputs):
    """The cached path: features once, then ``inputs_embeds`` + M-RoPE ``position_ids`` every step."""
    import torch

    inner = model.get_base_model().model
    with torch.no_grad():
        features = inner.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
        features = torch.cat(getattr(features, "pooler_output", features) if not torch.is_tensor(features)
                             else [features])
    position_ids, _ = inner.get_rope_index(inputs["input_ids"], inputs["image_grid_thw"], None,
                                           attention_mask=inputs["attention_mask"])
    image_mask = inputs["input_ids"] == model.config.image_token_id

    def build(batch):
        embeds = inner.get_input_embeddings()(batch["input_ids"])
        embeds = embeds.masked_scatter(image_mask.unsqueeze(-1).expand_as(embeds), features.to(embeds.dtype))
        return {"inputs_embeds": embeds, "attention_mask": batch["attention_mask"], "position_ids": position_ids,
                "labels": batch["labels"]}

    return build


def main(argv=None) -> Path:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--res", default="1288x728")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--liger", action="store_true", help="apply liger-kernel's Qwen2-VL patch first")
    parser.add_argument("--cache", action="store_true", help="plain vs cached-feature steps (LoRA all + ckpt)")
    parser.add_argument("--shrink", type=int, help="text layers and vision depth (CPU rehearsal)")
    parser.add_argument("--out", help="JSONL to append to (default: $BENCH_OUT or a temporary folder)")
    args = parser.parse_args(argv)
    out = Path(args.out or Path(os.environ.get("BENCH_OUT") or tempfile.mkdtemp()) / "gpu_anchor_2b.jsonl")
    width, height = map(int, args.res.split("x"))
    device, dtype = args.device, ("bfloat16" if args.device.startswith("cuda") else "float32")
    if args.liger:
        from liger_kernel.transformers import apply_liger_kernel_to_qwen2_vl

        apply_liger_kernel_to_qwen2_vl()
    tags = {"liger": True} if args.liger else {}

    def write(row):
        with out.open("a") as handle:
            handle.write(json.dumps({**tags, **row}) + "\n")
        print(row, flush=True)

    write({"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu"})
    processor = bench_processor()
    model = build_full_model(QWEN_2B, processor, device=device, dtype=dtype,
                             text_layers=args.shrink, vision_depth=args.shrink)
    vision = sum(p.numel() for p in model.model.visual.parameters())
    write({"size": "2b", "params": sum(p.numel() for p in model.parameters()), "vision_params": vision,
           "weights_gib": round(sum(p.numel() * p.element_size() for p in model.parameters()) / GIB, 2)})
    modes = ["lora_all_ckpt"] if args.cache else args.modes.split(",")
    for mode in modes:
        for batch in map(int, args.batches.split(",")):
            inputs, answer = _batch(processor, (width, height), batch, device)
            row = {"size": "2b", "mode": mode, "bs": batch, "res": args.res, "seq": inputs["input_ids"].shape[1]}
            free_memory()
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            if mode == "generate16":
                with torch.no_grad():
                    sync(device)
                    start = time.perf_counter()
                    model.generate(**{k: v for k, v in inputs.items() if k != "labels"}, max_new_tokens=16,
                                   min_new_tokens=16, do_sample=False)
                    sync(device)
                write({**row, "latency_s": round(time.perf_counter() - start, 3)})
                break
            base = model
            if mode.startswith("qlora4"):
                from bench.common import quantize_4bit

                base = quantize_4bit(model, device)
            peft_model = _wrap(base, mode)
            row["trainable"] = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
            paths = {"plain": None}
            if args.cache:
                paths["cached"] = _cached_embeds(peft_model, inputs)
            for path, embeds_fn in paths.items():
                if device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                times = _steps(peft_model, inputs, device, args.steps, embeds_fn)
                measured = {"step_s": round(statistics.median(times), 4),
                            "tokens_per_s": round(batch * row["seq"] / statistics.median(times))}
                if device.startswith("cuda"):
                    measured["peak_alloc_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
                    measured["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / GIB, 2)
                write({**row, **({"path": path} if args.cache else {}), **measured})
            model = peft_model.unload() if base is model else model
            model.gradient_checkpointing_disable()
            del peft_model, base
            free_memory()
    print(f"rows appended to {out}")
    return out


if __name__ == "__main__":
    main()
