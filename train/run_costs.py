#!/usr/bin/python3
"""What each stage of a pipeline run cost: steps, clips, minutes of training steps and of
evaluations (from RUN/<stage>/done.json and evals.jsonl), the mask search's and
SynthBench's minutes, and the device that finished each stage.  Prints a Markdown table
(SynthBench writes it to RUN/bench/stages.md).

    /usr/bin/python3 train/run_costs.py RUN
"""

import json
import os
import sys

import trainlib as tl


def _evals_seconds(run_dir, stage):
    path = os.path.join(run_dir, stage, "evals.jsonl")
    if not os.path.exists(path):
        return 0.0
    with open(path, encoding="utf-8") as f:
        return sum(json.loads(line).get("eval_s", 0.0) for line in f if line.strip())


def table(run_dir, bench_seconds=None):
    run = tl.load_run_config(os.path.join(run_dir, "run.json"))
    lines = ["| stage | steps × batch | clips | training min | evaluation min | device |",
             "|---|---|---|---|---|---|"]
    for stage in ("base", "mlcd", "kd"):
        done = tl.stage_done(run_dir, stage)
        if done is None:
            continue
        lines.append(f"| {stage} | {done['steps']:,} × {run[stage]['batch']} | "
                     f"{done['clips']:,} | {60 * done['hours']:.1f} | "
                     f"{_evals_seconds(run_dir, stage) / 60:.1f} | "
                     f"{done.get('device', '?')} |")
    search = os.path.join(run_dir, "search", "done.json")
    if os.path.exists(search):
        lines.append(f"| search (engine, CPU) | | | {tl.read_json(search)['seconds'] / 60:.1f}"
                     " | | |")
    if bench_seconds is not None:
        lines.append(f"| SynthBench | | | {bench_seconds / 60:.1f} | | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    print(table(sys.argv[1]), end="")
