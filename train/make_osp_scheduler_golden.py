#!/usr/bin/python3
"""Goldens of Open-Sora-Plan v1.2's scheduler (train/osp/scheduler.py) for
tests/test_osp_scheduler.c: the timesteps and σ for 100 and 7 steps, and a whole 100-step
trajectory of a toy model ε = 0.5·tanh(x_in) with stored noise.

    /usr/bin/python3 train/make_osp_scheduler_golden.py tests/data/osp_scheduler.safetensors
"""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from osp.scheduler import EulerAncestral  # noqa: E402
from vdit_torch import safetensors_io  # noqa: E402

N_LATENT = 48


def trajectory(steps, rng):
    s = EulerAncestral(steps)
    noise = torch.from_numpy(rng.standard_normal((steps + 1, N_LATENT)).astype(np.float32))
    x = noise[0] * s.init_noise_sigma
    inputs, outputs = [], []
    for k in range(steps):
        x_in = s.scale_model_input(x, k)
        eps = 0.5 * torch.tanh(x_in)
        x = s.step(k, eps, x, noise[k + 1])
        inputs.append(x_in)
        outputs.append(x)
    return s, noise, torch.stack(inputs), torch.stack(outputs)


def main():
    rng = np.random.default_rng(23)
    t = {}
    for steps in (100, 7, 1):
        s = EulerAncestral(steps)
        t[f"timesteps.{steps}"] = s.timesteps
        t[f"sigmas.{steps}"] = s.sigmas
    s, noise, inputs, outputs = trajectory(100, rng)
    t["trajectory.noise"] = noise
    t["trajectory.inputs"] = inputs
    t["trajectory.outputs"] = outputs
    safetensors_io.save(sys.argv[1], t)


if __name__ == "__main__":
    main()
