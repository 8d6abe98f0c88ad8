#!/usr/bin/python3
"""Where does a model lose the motion of its prompts?

For the held-out prompts with a direction, renders the true clips, noises them to flow
time t and asks the model for its one-step estimate of the clean clip,
x̂0 = x_t − t·v(x_t, t); SynthBench's judge then reads the direction from x̂0.  A model
that keeps the direction at small t but loses it near t = 1 can denoise motion but not
start it: the first sampling steps, where the layout is decided, are what it lacks.  The
last rows sample the same prompts from noise (PyTorch flow_euler with CFG).

    /usr/bin/python3 train/motion_probe.py --run-dir train/runs/cpu [--checkpoint base/final.pt]
    # the few-step student against the number of steps, two noise seeds
    /usr/bin/python3 train/motion_probe.py --run-dir train/runs/cpu \
        --checkpoint mlcd/final.pt --samplers 4:1,8:1,16:1 --seeds 2
"""

import cpuenv  # noqa: F401  (before numpy and torch)

import argparse
import os

import numpy as np
import torch

import trainlib as tl
import synthvideo as sv
import synthmetrics as sm

TIMES = (0.2, 0.4, 0.6, 0.8, 0.9, 0.95, 0.99)
SAMPLERS = "16:4.5,32:4.5,32:1,32:4.5:3,32:8:3"


def parse_samplers(text):
    """"STEPS:CFG[:SHIFT],..." → [(steps, guidance, shift)]."""
    out = []
    for item in text.split(","):
        f = item.split(":")
        try:
            if len(f) not in (2, 3) or int(f[0]) < 1:
                raise ValueError
            out.append((int(f[0]), float(f[1]), float(f[2]) if len(f) == 3 else 1.0))
        except ValueError:
            raise SystemExit(f"--samplers: '{item}' is not STEPS:CFG[:SHIFT] "
                             "(e.g. 4:1 or 32:4.5:3)") from None
    return out


def checkpoint_command_line(doc, default_samplers):
    """The command line of a probe of one checkpoint → (the parsed arguments, the run
    config, a model with the checkpoint's EMA weights, the samplers); bad values exit
    with a message."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--checkpoint", default="base/final.pt",
                    help="relative to the run directory; EMA weights are used")
    ap.add_argument("--samplers", default=default_samplers,
                    help=f"STEPS:CFG[:SHIFT],... sampled from noise (default {default_samplers})")
    ap.add_argument("--seeds", type=int, default=1, help="noise seeds per sampler")
    a = ap.parse_args()
    if a.seeds < 1:
        ap.error("--seeds must be at least 1")
    samplers = parse_samplers(a.samplers)
    run = tl.load_run_config(os.path.join(a.run_dir, "run.json"))
    tl.set_threads(run)
    model = tl.load_model(run, a.run_dir, os.path.join(a.run_dir, a.checkpoint))
    return a, run, model, samplers


def motion_accuracy(latents, prompts):
    results = [(sm.analyse(tl.latent_to_frames(x)), combo) for x, (_, combo) in
               zip(latents, prompts)]
    return sm.score(results)["motion"]


def main():
    a, run, model, samplers = checkpoint_command_line(__doc__, SAMPLERS)

    prompts = [(p, c) for p, c in sv.heldout_prompts() if c[2] in sv.DIRECTIONS]
    v = run["video"]
    specs = [{"objects": [c[:3]], "background": c[3]} for _, c in prompts]
    x0 = torch.from_numpy(sv.render_many(specs, v["frames"], v["height"], v["width"],
                                         np.random.default_rng(3))).to(tl.DEVICE)
    batcher = tl.TextBatcher(model.tokenizer)
    ids, mask = batcher([p for p, _ in prompts])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).to(tl.DEVICE)

    print(f"{len(prompts)} held-out prompts with a direction (chance 0.25)")
    print(f"true clips: motion {motion_accuracy(x0.cpu(), prompts):.2f}")
    with torch.no_grad():
        for t in TIMES:
            tt = torch.full((len(prompts),), t, device=tl.DEVICE)
            xt = (1 - t) * x0 + t * eps
            x0_hat = xt - t * tl.velocity(model, xt, tt, ids, mask)
            print(f"one-step estimate from t = {t:.2f}: motion "
                  f"{motion_accuracy(x0_hat.cpu(), prompts):.2f}")
    for steps, guidance, shift in samplers:
        acc = [motion_accuracy(tl.sample(model, [p for p, _ in prompts], batcher, steps,
                                         guidance, seed=5 + 100 * k, shape=tuple(x0.shape[1:]),
                                         shift=shift).cpu(), prompts)
               for k in range(a.seeds)]
        print(f"sampled, {steps} steps, CFG {guidance:g}, shift {shift:g}: motion "
              f"{np.mean(acc):.2f} ({', '.join(f'{x:.2f}' for x in acc)})")


if __name__ == "__main__":
    main()
