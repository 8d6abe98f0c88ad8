#!/usr/bin/python3
"""Scores a checkpoint on the held-out prompts in PyTorch, every SynthBench attribute
(colour, shape, motion, consistency), for several samplers and noise seeds: the quick
check of a training variant before it goes through the engine.

    /usr/bin/python3 train/eval_samplers.py --run-dir train/runs/cpu \
        --checkpoint base/final.pt --samplers 32:4.5,8:4.5,4:4.5 --seeds 3
    /usr/bin/python3 train/eval_samplers.py --run-dir train/runs/cpu \
        --checkpoint mlcd/final.pt --samplers 4:1 --seeds 3

Each line is the mean over the seeds (noise seed 1000·(k+1) for seed k, the prompts of
the base stage's evaluations); the time shift is 1 unless STEPS:CFG:SHIFT names one.
"""

import cpuenv  # noqa: F401  (before numpy and torch)
import numpy as np
import torch

import synthmetrics as sm
import trainlib as tl
from motion_probe import checkpoint_command_line
from stage_base import evaluate


def main():
    a, run, model, samplers = checkpoint_command_line(__doc__, "32:4.5")
    batcher = tl.TextBatcher(model.tokenizer)
    for steps, guidance, shift in samplers:
        r = dict(run, sampler=dict(run["sampler"], shift=shift))
        with torch.no_grad():
            scores = [evaluate(model, r, batcher, steps, guidance, seed=1000 * (k + 1))
                      for k in range(a.seeds)]
        print(f"{a.checkpoint}, {steps} steps, CFG {guidance:g}, shift {shift:g}, "
              f"{a.seeds} seed(s): " +
              " ".join(f"{k} {np.mean([s[k] for s in scores]):.2f}" for k in sm.ATTRIBUTES),
              flush=True)


if __name__ == "__main__":
    main()
