#!/usr/bin/python3
"""The whole training pipeline, end to end, from one config; resumable.

    /usr/bin/python3 train/pipeline.py --config train/configs/cpu.json
    nohup /usr/bin/python3 train/pipeline.py --config train/configs/cpu.json \
        > train/runs/cpu.out 2>&1 &           # in the background; progress in RUN/log.txt

Stages (each skipped when RUN/<stage>/done.json says it finished with the configured
number of steps; an interrupted stage resumes from RUN/<stage>/ckpt.pt):
  base     flow-matching training of text encoder + DiT        (stage_base.py)
  mlcd     stage 1: multi-step consistency distillation        (stage_mlcd.py)
  search   stage 2: per-layer tile masks, `vdit search-masks`  (stage_search.py)
  kd       stage 3: layer-wise distillation with the masks     (stage_kd.py)
  export   RUN/export/{base,mlcd,tile}: the engine's format    (export.py)
  bench    SynthBench through the engine: RUN/bench/           (synthbench.py)
Raising a stage's `steps` in the config and running again continues that stage from its
checkpoint; the stages after it are then redone (their old directories are kept as
<stage>.stale-<time>).  --ship DIR copies the final tile-sparse model to DIR.
"""

import cpuenv  # noqa: F401  (before numpy and torch)
import argparse
import os
import shutil
import time

import trainlib as tl

STAGES = ["base", "mlcd", "search", "kd", "export", "bench"]
TRAINED = {"base", "mlcd", "kd"}


def is_done(run, run_dir, stage):
    d = tl.stage_done(run_dir, stage)
    if d is None:
        return False
    if stage in TRAINED:
        return d.get("steps", 0) >= int(run[stage]["steps"])
    return True


def invalidate_after(run_dir, stage, log):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for later in STAGES[STAGES.index(stage) + 1:]:
        d = os.path.join(run_dir, later)
        if os.path.isdir(d):
            os.rename(d, f"{d}.stale-{stamp}")
            log(f"{later}: redone after {stage} (old results in {later}.stale-{stamp})")


def export_all(run, run_dir, log):
    from export import attention_of, export, stage_model, stage_sampler, trained_metadata
    out = os.path.join(run_dir, "export")
    plan = tl.load_plan(run_dir)
    name = run["name"]
    for stage, sub, att in (("base", "base", attention_of("full")),
                            ("mlcd", "mlcd", attention_of("full", plan)),
                            ("kd", "tile", attention_of("tile", plan))):
        steps, guidance = stage_sampler(run, stage)
        export(stage_model(run, run_dir, stage), run, os.path.join(out, sub), steps, guidance,
               att, name=f"{name}-{sub}",
               metadata=trained_metadata(stage, tl.stage_done(run_dir, stage)))
        log(f"{stage} → {os.path.join(out, sub)} ({steps} steps, guidance {guidance}, "
            f"attention {att['mode']})")
    tl.write_json(os.path.join(out, "done.json"), {"plan": plan})


def run_pipeline(config, run_dir, until=None, vdit=None, ship=None, quiet=False):
    run = tl.prepare_run(config, run_dir)
    tl.acquire_lock(run_dir)
    log = tl.Log(run_dir, "pipeline", quiet)
    last = STAGES.index(until) if until else len(STAGES) - 1
    tl.catch_stop_signals()
    for i, stage in enumerate(STAGES[:last + 1]):
        if is_done(run, run_dir, stage):
            log(f"{stage}: done already")
            continue
        if tl.stop_requested():  # a signal during the stage before, which has finished
            tl.clear_stop()
            log(f"stopped before {stage}; run the same command to resume")
            return False
        log(f"stage {i + 1}/{len(STAGES)}: {stage}")
        if stage == "base":
            import stage_base
            res = stage_base.run_stage(run, run_dir, quiet=quiet)
        elif stage == "mlcd":
            import stage_mlcd
            res = stage_mlcd.run_stage(run, run_dir, quiet=quiet)
        elif stage == "search":
            import stage_search
            res = stage_search.run_stage(run, run_dir, vdit, quiet=quiet)
        elif stage == "kd":
            import stage_kd
            res = stage_kd.run_stage(run, run_dir, quiet=quiet)
        elif stage == "export":
            export_all(run, run_dir, log)
            res = True
        else:
            import synthbench
            res = synthbench.run_stage(run, run_dir, vdit, quiet=quiet)
        if res is None:  # stopped by a signal: resumable
            tl.clear_stop()
            log(f"{stage}: interrupted; run the same command to resume")
            return False
        invalidate_after(run_dir, stage, log)
    if ship and last == len(STAGES) - 1:
        src = os.path.join(run_dir, "export", "tile")
        os.makedirs(ship, exist_ok=True)
        for f in ("config.json", "model.safetensors", "tokenizer.model"):
            shutil.copyfile(os.path.join(src, f), os.path.join(ship, f))
        log(f"shipped {src} → {ship}")
    log("pipeline finished" if last == len(STAGES) - 1 else f"stopped after {until}")
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="train/configs/{tiny,cpu,gpu}.json")
    ap.add_argument("--run-dir", help="default: train/runs/<config name>")
    ap.add_argument("--until", choices=STAGES, help="stop after this stage")
    ap.add_argument("--vdit", help="the vdit program (default: found in build*/tools)")
    ap.add_argument("--ship", help="copy the final model directory here (e.g. models/default)")
    ap.add_argument("--quiet", action="store_true", help="log only to RUN/log.txt")
    a = ap.parse_args()
    run_dir = a.run_dir or os.path.join(tl.HERE, "runs",
                                        os.path.splitext(os.path.basename(a.config))[0])
    ok = run_pipeline(a.config, run_dir, a.until, a.vdit, a.ship, a.quiet)
    raise SystemExit(0 if ok else 3)


if __name__ == "__main__":
    main()
