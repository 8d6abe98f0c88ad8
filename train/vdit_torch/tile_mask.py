"""Efficient-vDiT k:(T−k) tile masks over latent frames, as the engine's tile policy
(engine/attention_plan.c, vdit_tile_layout): tokens are grouped by latent frame (t
outermost); a query frame i sees key frame j when i == j (the diagonal), j < k (the k
global reference frames' keys) or i < k (the reference frames' queries see every frame).
k ≥ T keeps every tile (dense); k = 0 keeps only the diagonal."""

import torch


def tile_mask(frames, tokens_per_frame, k):
    """bool [N, N], N = frames · tokens_per_frame; True = kept."""
    f = torch.arange(frames * tokens_per_frame) // tokens_per_frame
    q, kk = f[:, None], f[None, :]
    return (q == kk) | (kk < k) | (q < k)


def kept_tiles(frames, k):
    """Number of kept frame×frame tiles (T² when k ≥ T, T when k = 0)."""
    if k >= frames:
        return frames * frames
    if k <= 0:
        return frames
    return frames * k + k * (frames - k) + (frames - k)


def plan_masks(plan, grid):
    """Per-layer masks for a DiT patch grid (gt, gy, gx); None where a layer is dense."""
    gt, gy, gx = grid
    return [None if k >= gt else tile_mask(gt, gy * gx, k) for k in plan]
