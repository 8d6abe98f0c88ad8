#!/usr/bin/python3
"""A rehearsal of a config's whole pipeline at its real shapes on this machine's CPU, before
GPU time is spent on it: each trained stage runs a few steps of a small batch, the
evaluations and SynthBench a few held-out prompts, the mask search one prompt, so that a
config or a seeded model that would fail in MLCD, the search, KD, the export or SynthBench
fails here in minutes.  Prints what each stage took (seconds a step at that batch, and
wall time), which also tells how the stages' costs compare.

    /usr/bin/python3 train/rehearse.py --config train/configs/gpu.json \\
        --seed models/synth-gpu-base --run-dir /tmp/rehearsal

--seed starts from exported finished stages (as `run_state.py seed`): they keep their
weights and are not trained again.  The run directory must not exist yet; the rehearsal's
config is RUN-DIR.json beside it.
"""

import cpuenv  # noqa: F401  (before numpy and torch)
import argparse
import os
import sys
import time

import trainlib as tl

TRAINED = ("base", "mlcd", "kd")


def rehearsal_config(run, seeded, steps=2, batch=2, prompts=2, threads=None):
    """The run config `run` cut down for a rehearsal on the CPU; `seeded` maps a seeded
    stage to the steps it finished with (kept, so that it is not trained further)."""
    r = {k: (dict(v) if isinstance(v, dict) else v) for k, v in run.items()}
    r.update(device="cpu", threads=threads or len(os.sched_getaffinity(0)), eval_prompts=prompts)
    for stage in TRAINED:
        if stage in seeded:
            r[stage]["steps"] = seeded[stage]
            continue
        r[stage].update(steps=steps, batch=batch, eval_at_start=False, eval_every=steps,
                        log_every=1, ckpt_every=steps)
        r[stage].pop("restart", None)
    r["search"].update(prompts=1, threads=r["threads"])
    r["bench"] = dict(r.get("bench", {}), prompts=prompts, seeds=1, device="cpu", jobs=1,
                      timing=["cpu"], timing_prompts=1, threads=r["threads"])
    return r


def rehearse(config, run_dir, seed_models=(), vdit=None, steps=2, batch=2, prompts=2,
             threads=None, out=sys.stdout):
    """Runs the rehearsal; returns [(stage, wall seconds, seconds a step or None)]."""
    import pipeline
    import run_state as rs
    cfg_path = run_dir.rstrip("/") + ".json"
    for path in (run_dir, cfg_path):
        if os.path.exists(path):
            raise SystemExit(f"{path} exists: rehearse in a new directory")
    if not os.path.isdir(os.path.dirname(os.path.abspath(cfg_path))):
        raise SystemExit(f"{os.path.dirname(os.path.abspath(cfg_path))}: no such directory")
    seeded = {}
    for d in seed_models:
        try:
            stage, done = rs.finished_export(d)
        except rs.StateError as e:
            raise SystemExit(str(e)) from None
        seeded[stage] = int(done["steps"])
    tl.write_json(cfg_path, rehearsal_config(tl.load_run_config(config), seeded, steps, batch,
                                             prompts, threads))
    if seed_models:
        try:
            rs.seed(list(seed_models), run_dir, cfg_path)
        except rs.StateError as e:
            os.remove(cfg_path)  # nothing of the rehearsal is left behind
            raise SystemExit(str(e)) from None
    report = []
    for stage in pipeline.STAGES:
        t0 = time.time()
        if not pipeline.run_pipeline(cfg_path, run_dir, until=stage, vdit=vdit, quiet=True):
            raise SystemExit(f"the rehearsal stopped in {stage}: see {run_dir}/log.txt")
        done = tl.stage_done(run_dir, stage) or {}
        per_step = (3600 * done["hours"] / done["steps"]
                    if stage in TRAINED and stage not in seeded and done.get("steps") else None)
        report.append((stage, time.time() - t0, per_step))
        what = ("seeded" if stage in seeded else
                f"{per_step:.3g} s a step of batch {batch}" if per_step else "")
        print(f"{stage:7} {time.time() - t0:7.1f} s  {what}", file=out, flush=True)
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="train/configs/*.json")
    ap.add_argument("--run-dir", required=True, help="a new directory for the rehearsal")
    ap.add_argument("--seed", nargs="+", default=[], metavar="MODEL_DIR",
                    help="exports of the finished base (and MLCD) to start from")
    ap.add_argument("--vdit", help="the vdit program (default: found in build*/tools)")
    ap.add_argument("--steps", type=int, default=2, help="steps of each trained stage (2)")
    ap.add_argument("--batch", type=int, default=2, help="their batch (2)")
    ap.add_argument("--prompts", type=int, default=2,
                    help="held-out prompts of the evaluations and SynthBench (2)")
    ap.add_argument("--threads", type=int, help="CPU threads (default: all)")
    a = ap.parse_args()
    for name in ("steps", "batch", "prompts", "threads"):
        if getattr(a, name) is not None and getattr(a, name) < 1:
            ap.error(f"--{name} must be at least 1")
    rehearse(a.config, a.run_dir, a.seed, a.vdit, a.steps, a.batch, a.prompts, a.threads)
    print(f"rehearsal finished: {a.run_dir}")


if __name__ == "__main__":
    main()
