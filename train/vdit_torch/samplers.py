"""Samplers and classifier-free guidance (docs/model-format.md, Guidance, Noise, Samplers).

A sampler gets `model(x, tau) -> output` (already guided), the latent shape, the seed and
the sampler config.  Latents are float32 tensors; schedule scalars (t, β, ᾱ, σ and the
coefficients made from them) are computed in double and rounded to float32 once, where
they multiply a tensor.  Noise: stream 0 is the initial latent, stream 1 + k the noise
added after step k; element i of a noise tensor is its row-major element i.
"""

import math

import numpy as np
import torch

from . import philox


def _f32(v):
    return torch.tensor(float(v), dtype=torch.float32)


def noise(shape, seed, stream):
    return torch.from_numpy(philox.normals_like(tuple(shape), seed, stream))


class Guided:
    """out = u + g·(c − u) from separate passes with the negative prompt (u) and the prompt
    (c) when g > 1; otherwise only the prompt's pass."""

    def __init__(self, dit, cond, uncond, guidance):
        self.dit, self.cond, self.uncond, self.guidance = dit, cond, uncond, float(guidance)
        self.calls = 0

    def __call__(self, x, tau):
        t = torch.tensor([float(tau)], dtype=torch.float32)
        with torch.no_grad():
            c = self.dit(x[None], t, self.cond[None])[0]
            self.calls += 1
            if self.guidance <= 1.0:
                return c
            u = self.dit(x[None], t, self.uncond[None])[0]
            self.calls += 1
        return u + _f32(self.guidance) * (c - u)


# ---- schedules (double precision) ----

def flow_times(steps, shift):
    """t_k = 1 − k/S for k = 0..S, warped t ← shift·t / (1 + (shift − 1)·t)."""
    t = [1.0 - k / steps for k in range(steps + 1)]
    return [shift * v / (1.0 + (shift - 1.0) * v) for v in t]


def alphas_cumprod(cfg):
    """ᾱ = cumprod(1 − β), β linear (or linear in sqrt(β)), in double."""
    n = cfg.train_timesteps
    if cfg.beta_schedule == "linear":
        betas = np.linspace(cfg.beta_start, cfg.beta_end, n, dtype=np.float64)
    elif cfg.beta_schedule == "scaled_linear":
        betas = np.linspace(math.sqrt(cfg.beta_start), math.sqrt(cfg.beta_end), n,
                            dtype=np.float64) ** 2
    else:
        raise ValueError(f"unknown beta_schedule {cfg.beta_schedule}")
    return np.cumprod(1.0 - betas)


def ddpm_timesteps(train_timesteps, steps):
    """round(linspace(0, N − 1, S)) reversed: y_k = k·((N − 1)/(S − 1)) in double
    (y_{S−1} = N − 1 exactly), rounded half to even."""
    return [int(v) for v in np.linspace(0, train_timesteps - 1, steps).round()[::-1]]


# ---- samplers ----

def flow_euler(model, shape, seed, cfg):
    ts = flow_times(cfg.steps, cfg.shift)
    x = noise(shape, seed, 0)
    for k in range(cfg.steps):
        v = model(x, np.float32(1000.0 * ts[k]))
        x = x + _f32(ts[k + 1] - ts[k]) * v
    return x


def ddim(model, shape, seed, cfg):
    ac = alphas_cumprod(cfg)
    taus = ddpm_timesteps(cfg.train_timesteps, cfg.steps)
    x = noise(shape, seed, 0)
    for k, tau in enumerate(taus):
        a, b = math.sqrt(ac[tau]), math.sqrt(1.0 - ac[tau])
        prev = ac[taus[k + 1]] if k + 1 < len(taus) else 1.0
        a_prev, b_prev = math.sqrt(prev), math.sqrt(1.0 - prev)
        out = model(x, np.float32(tau))
        if cfg.prediction == "epsilon":
            eps = out
            x0 = (x - _f32(b) * eps) / _f32(a)
        elif cfg.prediction == "v":
            x0 = _f32(a) * x - _f32(b) * out
            eps = _f32(a) * out + _f32(b) * x
        else:
            raise ValueError(f"ddim cannot use prediction {cfg.prediction}")
        x = _f32(a_prev) * x0 + _f32(b_prev) * eps
    return x


def ancestral_sigmas(cfg):
    """σ_k = sqrt((1 − ᾱ)/ᾱ) at the integer timesteps τ_k, then σ_S = 0."""
    ac = alphas_cumprod(cfg)
    taus = ddpm_timesteps(cfg.train_timesteps, cfg.steps)
    return taus, [math.sqrt((1.0 - ac[t]) / ac[t]) for t in taus] + [0.0]


def euler_ancestral(model, shape, seed, cfg):
    taus, sig = ancestral_sigmas(cfg)
    x = noise(shape, seed, 0) * _f32(sig[0])
    for k, tau in enumerate(taus):
        s, s_next = sig[k], sig[k + 1]
        out = model(x / _f32(math.sqrt(s * s + 1.0)), np.float32(tau))
        if cfg.prediction == "epsilon":
            x0 = x - _f32(s) * out
        elif cfg.prediction == "v":
            x0 = out * _f32(-s / math.sqrt(s * s + 1.0)) + x / _f32(s * s + 1.0)
        else:
            raise ValueError(f"euler_ancestral cannot use prediction {cfg.prediction}")
        s_up = math.sqrt(s_next ** 2 * (s * s - s_next ** 2) / (s * s))
        s_down = math.sqrt(max(0.0, s_next ** 2 - s_up ** 2))
        x = x + (x - x0) / _f32(s) * _f32(s_down - s)
        x = x + noise(shape, seed, 1 + k) * _f32(s_up)
    return x


SAMPLERS = {"flow_euler": flow_euler, "ddim": ddim, "euler_ancestral": euler_ancestral}


def sample(model, shape, seed, cfg):
    """Runs cfg.type with the (guided) model; returns the final latent."""
    if cfg.type not in SAMPLERS:
        raise ValueError(f"unknown sampler {cfg.type}")
    return SAMPLERS[cfg.type](model, shape, seed, cfg)


def latent_to_frames(latent):
    """Identity decoder: [T, H, W, 3] in [−1, 1] → uint8 frames, round((x + 1)·127.5)
    (f32 arithmetic, round half away from zero), clamped to [0, 255]."""
    v = ((torch.as_tensor(latent).cpu().to(torch.float32) + 1.0) * 127.5).numpy()
    v = v.astype(np.float64)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r, 0, 255).astype(np.uint8)
