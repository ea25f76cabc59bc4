"""Action decoding speed, and what constrained decoding costs in generation.

    .venv/bin/python -m bench.bench_actions                 # everything (2-3 minutes on a 2-core CPU)
    .venv/bin/python -m bench.bench_actions --reps 1 --skip-large-vocab

Three parts, printed as tables and saved to ``bench/results/bench_actions.json`` with the machine
(platform, CPU count, torch/transformers versions):

1. **Decode throughput**: ``ActionDecoder.decode`` (tolerant parsing) over a corpus of realistic raw
   model outputs: hand-written messy outputs (``MESSY_OUTPUTS``: keyword arguments, boxes, Qwen box
   tokens, chat-template leftovers, malformed actions) plus canonical actions wrapped the ways models wrap them (prose, code fences, chat-template leftovers, trailing tokens, a second
   action). Actions per second, per format, and the share that parsed.
2. **Generation overhead** on the embedded tiny Qwen2-VL (untrained, so unconstrained answers are
   junk): greedy generation, batch 1 and 8, constrained vs unconstrained, per format: wall time per
   sample, decoding steps per ``generate`` call and wall time per step (the untrained model rarely
   ends on its own, so free runs take all ``max_new_tokens`` steps while constrained ones stop after
   the action: compare per step), text tokens per sample (special tokens are dropped), time inside the
   logits processor, and the parse rate. Times are medians over the ``generate`` calls (other
   processes on a shared machine cause outliers). The processor's own time is the overhead that
   does not depend on the (tiny) model's speed. Mask caches are warm (one warm-up call first); the
   cold cost is part 3.
3. **Cold costs on a 152k-token vocabulary** (Qwen2-VL's size; a synthetic byte-level vocabulary,
   since no real checkpoint is downloaded here): time to index the vocabulary once, and to compute the
   allowed tokens of a new state at the start, inside a number and inside typed text.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
import transformers

from uivlm_helpers.models import constrained as cd
from uivlm_helpers.core.actions import (ACTION_FORMATS, Action, ActionDecoder, ParseFailure, parse_action,
                                        render_action)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_actions.json"


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "torch_threads": torch.get_num_threads()}


# --- 1. decode throughput --------------------------------------------------------------------------

SAMPLE_ACTIONS = [
    Action("click", x=512, y=87), Action("double_click", x=40, y=913), Action("long_press", x=300, y=300),
    Action("drag", x=10, y=20, x2=800, y2=20), Action("type", text='hello "world"\nbye'),
    Action("type", text="héllo 😀"), Action("press", key="ctrl+a"), Action("press", key="Enter"),
    Action("scroll", direction="down", amount=300), Action("wait", seconds=1.5), Action("done"),
]
WRAPPERS = [
    "{a}", "{a}<|im_end|>", "The answer is {a}.", "```\n{a}\n```", "```json\n{a}\n```",
    "<|im_start|>assistant\n{a}<|im_end|>", "Thought: the target is visible on the screen, near the "
    "top right corner next to the search field.\nAction: {a}", "{a}</s></s>", "  {a}  \n\n", "{a} {a}",
]


# Raw outputs that rendering + wrapping does not produce: other argument spellings, boxes instead of
# points, Qwen's box tokens, chat-template leftovers, and malformed actions (so the failure path is timed).
MESSY_OUTPUTS = {
    "text": ["click(x=100, y=200)", "click(y=200, x=100)", "CLICK(  10 ,   20 )", "click(100 200)",
             "click((10,20),(30,40))", "click([10, 20, 30, 41])",
             "<|object_ref_start|>Save button<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|><|im_end|>",
             "assistant\nclick(5, 6)</s>", "drag(x1=1, y1=2, x2=3, y2=4)", 'Type(text="héllo 😀")',
             "scroll(direction=up, amount=3)", "tap(10, 20)", "click(100)", "click(10, 20", "type(hello)",
             "scroll(sideways, 5)", "done(now)"],
    "json": ['{"type": "Click", "x": 1.5, "y": 2, "reason": "the Save button"}',
             '{"action": {"type": "scroll", "direction": "DOWN", "amount": 3}}', "click(1, 2)",
             '{"type": "click", "x": 1', "{'type': 'click', 'x': 1, 'y': 2}", '{"type": "tap", "x": 1, "y": 2}',
             '{"type": "click", "x": "100", "y": 200}'],
    "coordinates": ["100, 200 Click", "Step 2: 100 200 click", "10 20 30 40 click", 'type "wait 5"',
                    "press Enter.", "scroll Down 100", "click(100, 200)", "100 200 tap", "1 2 3 click",
                    "type the name"],
}


def decode_corpus() -> dict[str, list[str]]:
    corpus = {fmt: [] for fmt in ACTION_FORMATS}
    for fmt, outputs in MESSY_OUTPUTS.items():
        corpus[fmt] += outputs
    for fmt in ACTION_FORMATS:
        for action in SAMPLE_ACTIONS:
            for wrapper in WRAPPERS:
                corpus[fmt].append(wrapper.format(a=render_action(action, fmt)))
        corpus[fmt] += ["I cannot help with that.", "", "click the button", "{\"thought\": \"unsure\"}"]
    return corpus


def bench_decode(min_seconds: float) -> list[dict]:
    rows = []
    for fmt, texts in decode_corpus().items():
        decoder = ActionDecoder(fmt)
        parsed = sum(not isinstance(decoder.decode(t), ParseFailure) for t in texts)
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < min_seconds:
            for text in texts:
                decoder.decode(text)
            count += len(texts)
        seconds = time.perf_counter() - start
        rows.append({"format": fmt, "outputs": len(texts), "parsed_share": parsed / len(texts),
                     "decodes": count, "actions_per_s": count / seconds,
                     "us_per_action": 1e6 * seconds / count})
    return rows


# --- 2. generation overhead ------------------------------------------------------------------------

def _pass_through(input_ids, scores):
    return scores


class _Timed:
    """Wraps a logits processor to add up the time spent inside it."""

    def __init__(self, inner):
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def __call__(self, input_ids, scores):
        start = time.perf_counter()
        try:
            return self.inner(input_ids, scores)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def bench_generation(reps: int, screens: int, max_new_tokens: int) -> list[dict]:
    from transformers import LogitsProcessorList

    from uivlm_helpers.data import schema, synth
    from uivlm_helpers.data.run_data import as_plain
    from uivlm_helpers.models.wrapper import VLMWrapper

    folder = tempfile.mkdtemp(prefix="bench-actions-")
    records = [as_plain(r) for r in schema.read_records(synth.generate_records(screens, seed=7, out_dir=folder))]
    rows = []
    for fmt in ACTION_FORMATS:
        agent = VLMWrapper(action_format=fmt, max_new_tokens=max_new_tokens)
        tokenizer = agent.processor.tokenizer
        for batch in (1, 8):
            chunks = [records[i:i + batch] for i in range(0, len(records), batch)]
            for constrained in (False, True):
                def run(chunk, timers):
                    images = [r["image"] for r in chunk]
                    # Unconstrained runs get a pass-through processor, so both count their steps.
                    inner = agent.action_logits_processor(images)[0] if constrained else _pass_through
                    timer = _Timed(inner)
                    timers.append(timer)
                    processors = LogitsProcessorList([timer])
                    return agent.generate_text(images, [r["instruction"] for r in chunk], logits_processor=processors)

                run(chunks[0], [])  # warm-up: kernels, and the constrained masks of the common states
                timers, texts, calls = [], [], []  # calls: (seconds, samples, steps) of each generate
                for _ in range(reps):
                    for chunk in chunks:
                        start = time.perf_counter()
                        texts += run(chunk, timers)
                        calls.append((time.perf_counter() - start, len(chunk), timers[-1].calls))
                seconds = sum(c[0] for c in calls)
                steps = sum(t.calls for t in timers)
                tokens = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
                # Medians over generate calls: other processes on a shared machine cause outliers.
                rows.append({
                    "format": fmt, "batch": batch, "constrained": constrained, "samples": len(texts),
                    "generate_calls": len(calls),
                    "s_per_sample": statistics.median(c[0] / c[1] for c in calls),
                    "steps_per_generate": steps / len(calls),
                    "ms_per_step": statistics.median(1e3 * c[0] / c[2] for c in calls),
                    "tokens_per_sample": statistics.mean(tokens),
                    "processor_ms_per_step": 1e3 * sum(t.seconds for t in timers) / steps,
                    "processor_share": sum(t.seconds for t in timers) / seconds,
                    "parse_rate": sum(isinstance(parse_action(t, fmt, "norm1000"), Action) for t in texts)
                    / len(texts),
                    "example": texts[0],
                })
                r = rows[-1]
                print(f"  {fmt:11s} batch {batch}  {'constrained  ' if constrained else 'unconstrained'}"
                      f"  {r['s_per_sample']:.3f} s/sample  parse {r['parse_rate']:.0%}", flush=True)
    return rows


# --- 3. cold costs on a large vocabulary -----------------------------------------------------------

def synthetic_vocabulary(size: int, seed: int = 0) -> cd.TokenVocabulary:
    """A byte-level vocabulary shaped like Qwen2's: every byte, digits alone, words with and without a
    leading space, punctuation runs, whitespace runs and multi-byte characters (some split)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    tokens = {bytes((b,)) for b in range(256)}
    punctuation = ['("', '")', '",', '":', ' "', '{"', '"}', "()", ", ", ");", "()\n", "):", "==", "->"]
    tokens.update(p.encode() for p in punctuation)
    tokens.update((" " * n).encode() for n in range(1, 65))
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 20_000)]
    while len(tokens) < size:
        kind = rng.random()
        if kind < 0.65:
            word = "".join(rng.choice(letters) for _ in range(rng.randint(2, 10)))
            tokens.add(((" " if rng.random() < 0.5 else "") + word).encode())
        elif kind < 0.9:
            tokens.add("".join(rng.choice(cjk) for _ in range(rng.randint(1, 3))).encode())
        else:
            tokens.add(rng.choice(cjk).encode()[:2])  # a split character
    vocabulary = cd.TokenVocabulary.__new__(cd.TokenVocabulary)
    ordered = sorted(tokens)
    start = time.perf_counter()
    vocabulary.token_bytes = ordered
    vocabulary.size = len(ordered)
    vocabulary.root = [{}, []]
    for token_id, data in enumerate(ordered):  # the same indexing as TokenVocabulary.__init__
        node = vocabulary.root
        for byte in data:
            node = node[0].setdefault(byte, [{}, []])
        node[1].append(token_id)
    vocabulary.max_token_len = max(len(t) for t in ordered)
    vocabulary.single_bytes = frozenset(t[0] for t in ordered if len(t) == 1)
    vocabulary.masks = {}
    vocabulary.index_seconds = time.perf_counter() - start
    return vocabulary


def bench_large_vocabulary(size: int) -> dict:
    vocabulary = synthetic_vocabulary(size)
    result = {"vocab_size": vocabulary.size, "index_s": vocabulary.index_seconds, "states": []}
    for fmt, prefix in (("text", ""), ("text", "click(51"), ("text", 'type("hello wor'),
                        ("json", '{"type": "type", "text": "'), ("coordinates", "")):
        grammar = cd.action_grammar(fmt, "norm1000")
        state = grammar.state_of(prefix)
        start = time.perf_counter()
        ids, _ = vocabulary.walk(grammar, state)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        vocabulary.walk(grammar, state)  # the grammar's step memo is warm now
        warm = time.perf_counter() - start
        result["states"].append({"format": fmt, "prefix": prefix, "allowed": len(ids), "cold_s": cold,
                                 "rewalk_s": warm})
    return result


# --- main --------------------------------------------------------------------------------------------

def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="passes over the screens per generation setting")
    parser.add_argument("--screens", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--decode-seconds", type=float, default=1.0, help="time per format for part 1")
    parser.add_argument("--vocab-size", type=int, default=151_643)
    parser.add_argument("--skip-large-vocab", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    print("1. decode throughput (ActionDecoder.decode)")
    decode = bench_decode(args.decode_seconds)
    print("\n| format | outputs | parsed | actions/s | µs/action |\n|---|---|---|---|---|")
    for r in decode:
        print(f"| {r['format']} | {r['outputs']} | {r['parsed_share']:.0%} | {r['actions_per_s']:,.0f} | "
              f"{r['us_per_action']:.1f} |")

    print(f"\n2. generation on the tiny model (greedy, max_new_tokens={args.max_new_tokens}, "
          f"{args.screens} screens x {args.reps})")
    generation = bench_generation(args.reps, args.screens, args.max_new_tokens)
    print("\n| format | batch | decoding | s/sample | steps/generate | ms/step | text tokens/sample "
          "| processor ms/step | processor share | parse rate |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in generation:
        print(f"| {r['format']} | {r['batch']} | {'constrained' if r['constrained'] else 'free'} | "
              f"{r['s_per_sample']:.3f} | {r['steps_per_generate']:.1f} | {r['ms_per_step']:.0f} | "
              f"{r['tokens_per_sample']:.1f} | {r['processor_ms_per_step']:.2f} | "
              f"{r['processor_share']:.1%} | {r['parse_rate']:.0%} |")

    large = None
    if not args.skip_large_vocab:
        print(f"\n3. cold costs on a synthetic {args.vocab_size:,}-token byte-level vocabulary")
        large = bench_large_vocabulary(args.vocab_size)
        print(f"index built in {large['index_s']:.2f} s\n\n| format | state after | allowed tokens | "
              "cold walk s | re-walk s |\n|---|---|---|---|---|")
        for r in large["states"]:
            print(f"| {r['format']} | `{r['prefix']}` | {r['allowed']:,} | {r['cold_s']:.3f} | "
                  f"{r['rewalk_s']:.3f} |")

    result = {"benchmark": "bench_actions", "decode": decode, "generation": generation,
              "generation_settings": {"reps": args.reps, "screens": args.screens,
                                      "max_new_tokens": args.max_new_tokens, "greedy": True,
                                      "model": "uivlm/tiny-qwen2-vl (untrained)", "space": "norm1000"},
              "large_vocabulary": large, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"\nsaved {args.out}")
    return result


if __name__ == "__main__":
    main()
