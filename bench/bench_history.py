"""Episode history: what earlier actions and earlier screenshots cost, measured and estimated.

    .venv/bin/python -m bench.bench_history            # CPU: the embedded tiny Qwen2-VL

Three tables, written to ``bench/results/bench_history_<cpu|gpu>.json``:

1. **Tokens per earlier action**: :func:`uivlm_helpers.training.memory.history_action_tokens` on the tiny
   Qwen2-VL tokenizer for each action format (the numbered lines of the prompt's history block), and the
   block's own tokens (heading, blank line, the sentence naming the images) by earlier-screenshot count,
   measured with :func:`uivlm_helpers.core.prompts.history_text`. These are the estimator's
   ``HISTORY_ACTION_TOKENS`` and ``HISTORY_BLOCK_TOKENS``.
2. **Tiny Qwen2-VL training steps** with ``history_window`` 0 / 4 and ``history_images`` 0 / 2: batches
   built by ``VLMWrapper.encode(..., histories=, history_images=)`` (the workbook's prompt with the history
   block, earlier screenshots scaled to the history pixel budget), then
   :func:`uivlm_helpers.training.profiling.profile_training_peak` (live tensor storages on the CPU; the
   process's peak RSS beside it) and its step time, against
   :func:`~uivlm_helpers.training.memory.estimate_training_memory` for the same settings.
3. **Full-size Qwen2-VL-2B, estimated only** (1288x728 screens, LoRA on all projections, the workbook's
   fast-path defaults on a GPU: cached tower features; the fused loss only where liger-kernel is
   installed; earlier screenshots come from the cache too): 4 earlier
   actions with 0 or 2 earlier screenshots, at the default history budget (a
   quarter of the pixels the current screenshot gets: 234,416 for 1288x728) and at 200,704 pixels (252 tokens).

The step time is the fastest of ``--rounds`` rounds' median of ``--steps`` steps, the rounds going over
the settings in turn: the CPU box is shared, and a single median moves by tens of percent between runs. The peak RSS column is the process's high-water mark less its resident set before the steps:
memory the C allocator kept from an earlier row lowers it, so only the live-tensor column compares rows.
"""

from __future__ import annotations

import argparse
import math

from bench import common
from bench.common import QWEN_2B, SCREEN

COMMAND_CPU = ".venv/bin/python -m bench.bench_history"
TINY = "uivlm/tiny-qwen2-vl"
TOKEN_COLUMNS = [("format", "format"), ("per_sample", "tokens per sample line"), ("mean", "mean"),
                 ("constant", "HISTORY_ACTION_TOKENS")]
BLOCK_COLUMNS = [("images", "earlier screenshots"), ("measured", "block tokens"), ("constant", "HISTORY_BLOCK_TOKENS")]
STEP_COLUMNS = [("window", "window"), ("images", "screenshots"), ("sequence_tokens", "tokens/sample"),
                ("estimated_tokens", "estimated tokens"), ("peak_mib", "measured MiB"),
                ("estimated_mib", "estimated MiB"), ("error_pct", "error %"), ("rss_peak_mib", "peak RSS MiB"),
                ("step_s", "step s")]
FULL_COLUMNS = [("recipe", "recipe"), ("window", "window"), ("images", "screenshots"),
                ("history_pixels", "px / screenshot"), ("history_tokens", "history tokens"),
                ("cached_features", "cached features"),
                ("sequence_tokens", "tokens/sample"), ("peak_gib", "peak GiB"), ("total_gib", "total GiB"),
                ("added_gib", "+ GiB vs none")]


def action_token_rows(tokenizer) -> tuple[list[dict], list[dict]]:
    """Table 1: per-action tokens by format and the block's tokens by earlier-screenshot count."""
    from uivlm_helpers.core.actions import render_action
    from uivlm_helpers.core.prompts import history_text
    from uivlm_helpers.training import memory

    def count(text):
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    actions, blocks = [], []
    for action_format in ("text", "json", "coordinates"):
        rendered = [render_action(a, action_format) for a in memory.HISTORY_ACTION_SAMPLES]
        lines = [count(f"{i}. {a}\n") for i, a in enumerate(rendered, 1)]
        actions.append({"format": action_format, "per_sample": " ".join(map(str, lines)),
                        "mean": sum(lines) / len(lines),
                        "measured_by_function": memory.history_action_tokens(tokenizer, action_format),
                        "constant": memory.HISTORY_ACTION_TOKENS[action_format],
                        "example": f"1. {rendered[0]}"})
        if action_format == "text":
            for images in (0, 1, 2, 3):
                # The block around the lines: the history text (and the blank line before the task prompt)
                # less its action lines.
                measured = count(history_text(rendered, images) + "\n\n") - sum(lines)
                blocks.append({"images": images, "measured": measured,
                               "constant": memory.HISTORY_BLOCK_TOKENS[min(images, 2)]})
    return actions, blocks


def _screens(size, count):
    from PIL import Image, ImageDraw

    screens = []
    for i in range(count):
        image = Image.new("RGB", size, (255 - 40 * i, 255, 255))
        ImageDraw.Draw(image).rectangle([40 + 30 * i, 60, 300 + 30 * i, 160], fill=(20, 60 + 40 * i, 200))
        screens.append(image)
    return screens


def tiny_step_rows(screen, batch_size: int, steps: int, rounds: int, results) -> list[dict]:
    """Table 2: the tiny model's measured step (peak memory, time) and the estimate, per history setting."""
    from uivlm_helpers.models.wrapper import VLMWrapper
    from uivlm_helpers.training import memory, profiling

    width, height = screen
    # Earlier actions in screenshot pixels (the samples, clicks kept inside the screen).
    earlier = []
    for action in memory.HISTORY_ACTION_SAMPLES[:4]:
        values = action.to_dict()
        if "x" in values:
            values.update(x=min(values["x"], width - 1), y=min(values["y"], height - 1))
        earlier.append(values)
    current = _screens(screen, batch_size)
    previous = _screens(screen, 2)
    instructions = [f"Click the Save button {i}" for i in range(batch_size)]   # same length: no padding
    settings = ((0, 0), (4, 0), (0, 2), (4, 2))
    prepared = []
    for window, images in settings:
        config = common.run_config(TINY, "cpu", "float32", training__batch_size=batch_size,
                                   training__cache_vision_features="false", training__fused_cross_entropy="false",
                                   data__source="aitw", data__history_window=window, data__history_images=images)
        config.data.image_width, config.data.image_height = screen
        wrapper = VLMWrapper.from_config(config)
        batch = wrapper.encode(current, instructions, ["click(100, 200)"] * batch_size,
                               histories=[earlier] * batch_size, history_images=[previous] * batch_size)
        prepared.append((window, images, config, wrapper, batch))
    # The prompt and answer around the main screenshot, without history (the first setting's).
    first = prepared[0]
    text_tokens = first[4]["input_ids"].shape[1] - memory.estimate_training_memory(
        first[2], screen, text_tokens=0, padded=False)["image_tokens"]
    # One untimed round first (thread pools, allocator), then `rounds` rounds over the settings in turn, so
    # that load from other work on the shared CPU spreads over all of them; step time = the fastest round's
    # median.
    profiling.profile_training_peak(first[3], first[4], steps=2)
    measured = {i: [] for i in range(len(prepared))}
    for _ in range(rounds):
        for i, (_, _, _, wrapper, batch) in enumerate(prepared):
            measured[i].append(profiling.profile_training_peak(wrapper, batch, steps=steps))
    rows = []
    for i, (window, images, config, wrapper, batch) in enumerate(prepared):
        estimate = memory.estimate_training_memory(config, screen, text_tokens=text_tokens, padded=False)
        runs = measured[i]
        row = {"window": window, "images": images, "batch": batch_size,
               "sequence_tokens": batch["input_ids"].shape[1], "estimated_tokens": estimate["sequence_tokens"],
               "history": estimate["history"], "peak_mib": max(r["peak_gib"] for r in runs) * 1024,
               "estimated_mib": estimate["peak_allocated_gib"] * 1024,
               "rss_peak_mib": runs[0]["rss_peak_gib"] * 1024 if runs[0].get("rss_peak_gib") else None,
               "step_s": min(r["step_s"] for r in runs), "round_step_s": [r["step_s"] for r in runs],
               "steps": steps, "rounds": rounds}
        row["error_pct"] = 100 * (row["estimated_mib"] - row["peak_mib"]) / row["peak_mib"]
        rows.append(results.add(row))
        print(f"window {window}, screenshots {images}: {row['sequence_tokens']} tokens, {row['peak_mib']:.1f} MiB "
              f"measured, {row['estimated_mib']:.1f} MiB estimated, {row['step_s']:.3f} s/step "
              f"(rounds {', '.join(f'{t:.3f}' for t in row['round_step_s'])})", flush=True)
    del prepared
    common.free_memory()
    return rows


def full_size_rows() -> list[dict]:
    """Table 3: the estimator for full-size Qwen2-VL-2B with 4 earlier actions and 0 / 2 earlier screenshots."""
    from uivlm_helpers.training import memory

    rows = []
    recipes = {"LoRA all + ckpt, b1": {"training__batch_size": 1, "training__gradient_checkpointing": True},
               "LoRA all, b4": {"training__batch_size": 4, "training__gradient_checkpointing": False}}
    for recipe, settings in recipes.items():
        none = None
        for window, images, pixels in ((0, 0, None), (4, 0, None), (4, 2, None), (4, 2, 200_704)):
            config = common.run_config(QWEN_2B, "cuda", "bfloat16", data__source="aitw", data__history_window=window,
                                       data__history_images=images, model__history_max_pixels=pixels, **settings)
            estimate = memory.estimate_training_memory(config, SCREEN)
            none = none if none is not None else estimate["total_gib"]
            history = estimate["history"]
            rows.append({"recipe": recipe, "window": window, "images": images,
                         "history_pixels": history["pixels"], "history_tokens": history["tokens"],
                         "cached_features": estimate["assumptions"]["cache_vision_features"],
                         "sequence_tokens": estimate["sequence_tokens"], "peak_gib": estimate["peak_allocated_gib"],
                         "total_gib": estimate["total_gib"], "added_gib": estimate["total_gib"] - none,
                         "message": memory.fits_message(estimate, gpu_gib=80.0)})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screen", default="1120x1120",
                        help="tiny model's screenshots (1120x1120: 64 image tokens, history 16 each)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds over the settings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-dir", default=None)
    args = parser.parse_args(argv)

    import torch

    from uivlm_helpers.models.wrapper import VLMWrapper

    torch.set_num_threads(args.threads)
    screen = tuple(int(v) for v in args.screen.split("x"))
    path = common.results_path("bench_history", "cpu", args.out_dir)
    results = common.Results(path, "bench_history", COMMAND_CPU, model=TINY, screen=list(screen),
                             batch=args.batch, threads=args.threads)
    tokenizer = VLMWrapper(TINY).processor.tokenizer
    actions, blocks = action_token_rows(tokenizer)
    results.data.update(action_tokens=actions, block_tokens=blocks)
    common.print_table(actions, TOKEN_COLUMNS, "Tokens per earlier action (tiny Qwen2-VL tokenizer, '1. <action>\\n')")
    common.print_table(blocks, BLOCK_COLUMNS, "Tokens of the history block besides its action lines")
    if any(math.ceil(r["mean"]) != r["constant"] for r in actions) or any(r["measured"] != r["constant"]
                                                                         for r in blocks):
        results.note("the measured token counts differ from the estimator's constants")
    steps = tiny_step_rows(screen, args.batch, args.steps, args.rounds, results)
    common.print_table(steps, STEP_COLUMNS, f"Tiny Qwen2-VL, LoRA all, batch {args.batch}, {screen[0]}x{screen[1]}, "
                                            f"CPU, {args.threads} thread(s), fastest of {args.rounds} rounds' median of "
                                            f"{args.steps} steps")
    full = full_size_rows()
    results.data["full_size_estimates"] = full
    results.save()
    common.print_table(full, FULL_COLUMNS, "Full-size Qwen2-VL-2B, 1288x728, estimated (no GPU measured)")
    print(f"saved {path}")
    return results.data


if __name__ == "__main__":
    main()
