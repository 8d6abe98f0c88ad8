#!/usr/bin/python3
"""Stage 2: per-layer tile mask search, done by the engine (`vdit search-masks`) on the
exported MLCD model: for each layer the smallest k whose k:(T−k) mask keeps the
self-attention output within relative error `threshold` of full attention while the
few-step student generates sample (training) prompts.  The plan goes to
RUN/search/plan.json (and the exported model's config.json).

    /usr/bin/python3 train/stage_search.py --config train/configs/cpu.json --run-dir DIR
"""

import cpuenv  # noqa: F401  (before numpy and torch)
import argparse
import json
import os
import subprocess
import time

import numpy as np

import trainlib as tl
import synthvideo as sv
from export import attention_of, export, stage_model, stage_sampler


def run_stage(run, run_dir, vdit=None, quiet=False):
    tl.set_threads(run)
    cfg = run["search"]
    out = os.path.join(run_dir, "search")
    os.makedirs(out, exist_ok=True)
    log = tl.Log(run_dir, "search", quiet)
    model_dir = os.path.join(out, "model")
    steps, guidance = stage_sampler(run, "mlcd")
    export(stage_model(run, run_dir, "mlcd"), run, model_dir, steps, guidance,
           attention_of("full"))
    rng = np.random.default_rng(cfg.get("seed", 500))
    prompts = []
    while len(prompts) < int(cfg.get("prompts", 6)):
        s = sv.sample_spec(rng, 0.0)
        prompts.append(sv.prompt_of(s["objects"], s["background"]))
    pfile = os.path.join(out, "prompts.txt")
    with open(pfile, "w", encoding="utf-8") as f:
        f.write("\n".join(prompts) + "\n")
    exe = tl.find_vdit(vdit)
    cmd = [exe, "search-masks", "--model", model_dir, "--prompts", pfile,
           "--threshold", str(cfg["threshold"]), "--json", "--device", "cpu",
           "--threads", str(cfg.get("threads", run.get("bench", {}).get("threads", 2))),
           "--seed", str(cfg.get("seed", 500))]
    log(" ".join(cmd))
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"vdit search-masks failed ({proc.returncode}):\n{proc.stderr}")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    layers = [d for d in lines if "layer" in d]
    summary = [d for d in lines if "layers" in d][-1]
    plan = tl.read_json(os.path.join(model_dir, "config.json"))["attention"]["plan"]
    assert plan == [d["k"] for d in sorted(layers, key=lambda d: d["layer"])], plan
    for d in layers:
        log(f"layer {d['layer']}: k {d['k']} ({d['k']}:{d['frames'] - d['k']}) density "
            f"{d['density']:.3f} error {d['error']:.4f}")
    result = {"plan": plan, "threshold": cfg["threshold"], "frames": summary["frames"],
              "density": summary["density"], "layers": layers, "prompts": prompts,
              "seconds": time.time() - t0}
    tl.write_json(os.path.join(out, "plan.json"), result)
    tl.write_json(os.path.join(out, "done.json"), result)
    log(f"plan {plan}: mean density {summary['density']:.3f} ({time.time() - t0:.0f} s)")
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--vdit", help="the vdit program (default: found in build*/tools)")
    a = ap.parse_args()
    run = tl.prepare_run(a.config, a.run_dir)
    tl.acquire_lock(a.run_dir)
    run_stage(run, a.run_dir, a.vdit)


if __name__ == "__main__":
    main()
