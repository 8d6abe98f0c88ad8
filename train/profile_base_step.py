#!/usr/bin/python3
"""Times one base-training step of a config on its device, piece by piece, and the same
step with torch.compile, so that a GPU run is planned from measured step times:

    python3 train/profile_base_step.py --config train/configs/gpu.json [--steps 20]

Each variant runs `--warmup` steps, then `--steps` timed steps; a JSON line per variant
gives the mean wall time of a step and the parts of the last one (data, forward and
loss, backward, clipping + AdamW + EMA), measured with CUDA events on a GPU. Variants:
eager (for-each AdamW), fused (fused AdamW, what training uses on a GPU), compile-blocks
(each block compiled, VDIT_TRAIN_COMPILE=1), compile-blocks-cudnn (the same with
cuDNN's fused attention, VDIT_TRAIN_SDPA=cudnn), compile-dit (the whole DiT compiled).
`--profile` adds the torch profiler's table of the eager step's most expensive kernels.
The run directory (`--run-dir`, default a temporary one) only holds the tokenizer."""

import cpuenv  # noqa: F401  (before numpy and torch)
import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

import trainlib as tl
from stage_base import flow_loss, training_batch


def make_step(run, model, ema, opt, batcher, rng):
    B = int(run["base"]["batch"])
    cuda = tl.DEVICE.type == "cuda"

    def mark():
        if cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def span(a, b):
        if cuda:
            return a.elapsed_time(b) / 1e3
        return b - a

    def step():
        marks = [mark()]
        batch = training_batch(rng, run, batcher, B)
        marks.append(mark())
        loss = flow_loss(model, run, *batch)
        marks.append(mark())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        marks.append(mark())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, 1000)
        marks.append(mark())
        return marks, loss

    return step, span


def emit(rec, out):
    """A JSON line on standard output and, with out, appended to that file."""
    print(json.dumps(rec), flush=True)
    if out:
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")


def run_variant(run, run_dir, name, steps, warmup, compile_mode=None, fused=False,
                attention="default", profile=False, out=None):
    torch.manual_seed(1)
    tl.set_attention_backend(attention)
    model = tl.new_model(run, run_dir, seed=1)
    ema = tl.EMA(model, 0.999)
    cfg = run["base"]
    opt = tl.make_optimizer(model, cfg["lr"], cfg.get("weight_decay", 0.01))
    if not fused:  # the unfused (for-each) AdamW, as before the fused one
        opt = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]}
                                 for g in opt.param_groups],
                                lr=cfg["lr"], betas=(0.9, 0.99), eps=1e-8)
    if compile_mode == "dit":
        model.dit.compile()
    elif compile_mode == "blocks":
        os.environ["VDIT_TRAIN_COMPILE"] = "1"
        tl.compile_blocks(print, model)
    batcher = tl.TextBatcher(model.tokenizer)
    rng = np.random.default_rng(1)
    step, span = make_step(run, model, ema, opt, batcher, rng)
    model.train()
    t0 = time.time()
    for _ in range(warmup):
        _, loss = step()
        float(loss)
    warm_s = time.time() - t0
    sync = torch.cuda.synchronize if tl.DEVICE.type == "cuda" else (lambda: None)
    sync()
    prof = None
    if profile:
        prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                  torch.profiler.ProfilerActivity.CUDA])
        prof.__enter__()
    t0 = time.time()
    losses = []
    for _ in range(steps):
        marks, loss = step()
        losses.append(loss.detach())
    sync()
    wall = (time.time() - t0) / steps
    if prof is not None:
        prof.__exit__(None, None, None)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30))
    # the events of the last step only (the others were overwritten): wall covers all
    parts = [span(marks[i], marks[i + 1]) for i in range(4)]
    rec = {"variant": name, "device": str(tl.DEVICE),
           "gpu": torch.cuda.get_device_name() if tl.DEVICE.type == "cuda" else None,
           "torch": torch.__version__, "attention": attention,
           "batch": int(cfg["batch"]), "steps": steps,
           "warmup_s": round(warm_s, 1), "s_per_step": round(wall, 4),
           "last_step_parts_s": {k: round(v, 4) for k, v in
                                 zip(("data", "forward_loss", "backward", "update"), parts)},
           "loss_last": round(float(losses[-1]), 4),
           "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
           if tl.DEVICE.type == "cuda" else None}
    emit(rec, out)
    del model, ema, opt
    if tl.DEVICE.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="train/configs/gpu.json")
    ap.add_argument("--run-dir")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--variants",
                    default="eager,fused,compile-blocks,compile-blocks-cudnn,compile-dit")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", help="append the JSON lines to this file as well")
    a = ap.parse_args()
    run_dir = a.run_dir or tempfile.mkdtemp(prefix="vdit-prof-")
    run = tl.prepare_run(a.config, run_dir)
    tl.set_threads(run)
    for v in a.variants.split(","):
        kw = {"eager": {}, "fused": {"fused": True},
              "compile-blocks": {"compile_mode": "blocks", "fused": True},
              "compile-blocks-cudnn": {"compile_mode": "blocks", "fused": True,
                                       "attention": "cudnn"},
              "compile-dit": {"compile_mode": "dit", "fused": True}}[v]
        warm = a.warmup + (10 if "compile" in v else 0)
        try:
            run_variant(run, run_dir, v, a.steps, warm, profile=a.profile and v == "eager",
                        out=a.out, **kw)
        except Exception as e:  # a variant that fails (compile) must not hide the others
            emit({"variant": v, "error": repr(e)[:400]}, a.out)
        finally:
            tl.set_attention_backend("default")


if __name__ == "__main__":
    main()
