"""Open-Sora-Plan v1.2's sampler: diffusers' EulerAncestralDiscreteScheduler with its
default config (1,000 linear betas 1e-4 → 0.02, epsilon prediction, "linspace" timestep
spacing), written from the published formulas with the same float32 / float64 steps
diffusers takes:

    β = torch.linspace(β0, β1, N, float32); ᾱ = cumprod(1 − β) (float32)
    σ_table = ((1 − ᾱ)/ᾱ)^0.5 (float32)
    τ = numpy.linspace(0, N − 1, S, dtype=float32)[::-1]          (not rounded)
    σ = float32(concat(numpy.interp(τ, arange(N), σ_table), [0]))
    x ← noise · max(σ)                                         (init_noise_sigma)
    step k: input x / (σ² + 1)^0.5, model at timestep τ_k (a float)
            x0 = x − σ·ε;  σ_up = (σ'²(σ² − σ'²)/σ²)^0.5;  σ_down = (σ'² − σ_up²)^0.5
            x ← x + (x − x0)/σ · (σ_down − σ) + noise_k · σ_up
Guidance: out = u + g·(c − u), the batch ordered [negative, positive]."""

import numpy as np
import torch


class EulerAncestral:
    def __init__(self, steps, train_timesteps=1000, beta_start=1e-4, beta_end=0.02):
        betas = torch.linspace(beta_start, beta_end, train_timesteps, dtype=torch.float32)
        acp = torch.cumprod(1.0 - betas, dim=0)
        table = (((1 - acp) / acp) ** 0.5).numpy()
        tau = np.linspace(0, train_timesteps - 1, steps, dtype=np.float32)[::-1].copy()
        sig = np.interp(tau, np.arange(0, train_timesteps), table)
        self.sigmas = torch.from_numpy(np.concatenate([sig, [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(tau)
        self.init_noise_sigma = self.sigmas.max()

    def scale_model_input(self, x, k):
        return x / ((self.sigmas[k] ** 2 + 1) ** 0.5)

    def step(self, k, model_out, x, noise):
        sigma, sigma_to = self.sigmas[k], self.sigmas[k + 1]
        x0 = x - sigma * model_out
        sigma_up = (sigma_to ** 2 * (sigma ** 2 - sigma_to ** 2) / sigma ** 2) ** 0.5
        sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
        derivative = (x - x0) / sigma
        return x + derivative * (sigma_down - sigma) + noise * sigma_up


def guided(model, x_in, tau, cond, uncond, guidance):
    """One classifier-free-guided model call as the OSP pipeline batches it."""
    batch = torch.cat([x_in, x_in])
    text = torch.cat([uncond, cond])
    out = model(batch, torch.full((2,), float(tau)), text)
    u, c = out.chunk(2)
    return u + guidance * (c - u)
