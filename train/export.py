#!/usr/bin/python3
"""Export a trained stage to the engine's model format (docs/model-format.md):
config.json (sampler steps and guidance of the stage, attention mode and plan),
model.safetensors (every tensor BF16, the format's names) and tokenizer.model.

    /usr/bin/python3 train/export.py --run-dir DIR --stage kd --out models/default
"""

import cpuenv  # noqa: F401  (before numpy and torch)
import argparse
import json
import os
import shutil

import trainlib as tl
from vdit_torch import config as config_mod

# What each stage's weights are for: few-step stages drop CFG (it is distilled in).
STAGE_FILES = {"base": "base/final.pt", "mlcd": "mlcd/final.pt", "kd": "kd/final.pt"}


def stage_model(run, run_dir, stage, path=None):
    """The stage's final EMA weights in a VditModel."""
    return tl.load_model(run, run_dir, path or os.path.join(run_dir, STAGE_FILES[stage]))


def stage_sampler(run, stage):
    """(steps, guidance) the stage is meant to be sampled with."""
    if stage == "base":
        return run["sampler"]["steps"], run["sampler"]["guidance"]
    return tl.student_sampler(run)


def export(model, run, out_dir, steps, guidance, attention=None, name=None, metadata=None):
    """Writes the model directory; returns its ModelConfig."""
    os.makedirs(out_dir, exist_ok=True)
    tok = model.tokenizer
    cfg = tl.model_config(run, tok.vocab_size, steps=steps, guidance=guidance,
                          attention=attention)
    if name:
        cfg.name = name
    model.cfg = cfg
    meta = {"format": "vdit", "name": cfg.name}
    meta.update(metadata or {})
    model.save_dir(out_dir, dtype_of=lambda n: "BF16", metadata=meta)
    shutil.copyfile(tok.path, os.path.join(out_dir, "tokenizer.model"))
    return cfg


def trained_metadata(stage, done):
    """What the weights are, for the safetensors header: the stage and, for a finished
    stage's final weights, its done.json (run_state.py seed continues from them)."""
    meta = {"stage": stage}
    if done is not None:
        meta["trained"] = json.dumps(done, sort_keys=True)
    return meta


def attention_of(mode, plan=None, tile_k=1):
    a = {"mode": mode, "tile_k": tile_k}
    if plan is not None:
        a["plan"] = list(plan)
    return a


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--stage", choices=sorted(STAGE_FILES), default="kd")
    ap.add_argument("--weights", help="checkpoint file instead of the stage's final.pt")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--attention", choices=["full", "tile", "adaptive"])
    ap.add_argument("--name", help="the model's name (default: the run's, then -STAGE)")
    a = ap.parse_args()
    run = tl.load_run_config(os.path.join(a.run_dir, "run.json"))
    model = stage_model(run, a.run_dir, a.stage, a.weights)
    steps, guidance = stage_sampler(run, a.stage)
    done = tl.stage_done(a.run_dir, a.stage)
    plan = tl.load_plan(a.run_dir) if a.stage == "kd" else None  # KD trained with it
    mode = a.attention or ("tile" if plan is not None else "full")
    cfg = export(model, run, a.out, a.steps or steps,
                 guidance if a.guidance is None else a.guidance,
                 attention_of(mode, plan), name=a.name or f"{run['name']}-{a.stage}",
                 metadata=trained_metadata(a.stage, None if a.weights else done))
    print(config_mod.dumps(cfg), end="")


if __name__ == "__main__":
    main()
