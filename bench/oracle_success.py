"""Success rate of the scripted MiniWoB++ oracle policies (the demonstrations' quality check).

    .venv/bin/python -m bench.oracle_success                    # 50 episodes per task, every oracle task
    .venv/bin/python -m bench.oracle_success --episodes 10 --tasks click-test enter-text

Prints a table (task, successes, rate, seconds per episode) and writes
``bench/results/oracle_success.json`` with the machine and package versions. Success is MiniWoB++'s
binary reward (the task ended with raw reward 1); episodes use the ``test`` seed stream of
``miniwob_env.episode_seed`` with ``--seed``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from uivlm_helpers.data import miniwob_env as mw

RESULTS = Path(__file__).resolve().parent / "results" / "oracle_success.json"


def machine() -> dict:
    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    binary, driver = mw.configure_browser()
    packages = {name: metadata.version(name) for name in ("miniwob", "selenium", "gymnasium", "numpy", "pillow")}
    return {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "packages": packages,
            "chromium": version([binary, "--version"]), "chromedriver": version([driver, "--version"]),
            "chrome_flags": list(mw.CHROME_FLAGS)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="episodes per task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="*", default=list(mw.ORACLE_TASKS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    rows = []
    with mw.MiniWoBTask(args.tasks[0]) as env:  # one headless Chromium, switched from task to task
        for task in args.tasks:
            env.load_task(task)
            start = time.perf_counter()
            episodes = mw.rollout_episodes(mw.oracle_policy, [task], args.episodes, seed=args.seed, env=env)[task]
            seconds = time.perf_counter() - start
            wins = sum(e.success for e in episodes)
            rows.append({"task": task, "episodes": len(episodes), "successes": wins,
                         "success_rate": wins / len(episodes),
                         "mean_actions": sum(len(e.actions) for e in episodes) / len(episodes),
                         "seconds_per_episode": seconds / len(episodes),
                         "failures": [{"seed": e.seed, "reason": e.failure} for e in episodes if not e.success]})
            print(f"{task:24s} {wins:3d}/{len(episodes):<3d} {wins / len(episodes):6.1%}  "
                  f"{seconds / len(episodes):5.2f} s/episode", flush=True)

    mean = sum(r["success_rate"] for r in rows) / len(rows)
    print(f"\n| task | success | rate | actions/episode | s/episode |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['successes']}/{r['episodes']} | {r['success_rate']:.0%} | "
              f"{r['mean_actions']:.1f} | {r['seconds_per_episode']:.2f} |")
    print(f"| **mean over {len(rows)} tasks** | | {mean:.1%} | | |")
    result = {"benchmark": "oracle_success", "episodes_per_task": args.episodes, "seed": args.seed,
              "seed_split": "test", "success": "binary reward (raw reward == 1)", "mean_success_rate": mean,
              "tasks": rows, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nsaved {args.out}")
    return result


if __name__ == "__main__":
    main()
