"""Video DiT with Open-Sora-Plan v1.2 parameter names (docs/model-format.md, DiT).

Latents are [B, T, H, W, C] (channels last).  `state_dict()` keys are the format's tensor
names.  float32 throughout; tables that depend only on positions and timesteps (sinusoidal
timestep features, RoPE cos/sin) are computed in double and rounded to float32 once.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


_FAST = False


def set_fast_kernels(on):
    """Training switch: torch's fused tanh-GELU (the same formula, ~10x faster on a CPU)
    and, where torch has it (2.0+), fused scaled-dot-product attention, instead of the
    literal formulas the engine is checked with; results differ in the last bits."""
    global _FAST
    _FAST = bool(on)


def gelu_tanh(x):
    """0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))."""
    if _FAST:
        return F.gelu(x, approximate="tanh")
    return 0.5 * x * (1.0 + torch.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))


def patchify(x, patch):
    """[B, T, H, W, C] → [B, N, C·pt·ph·pw], tokens (t, y, x) with x innermost, each
    token's vector in order (c, dt, dy, dx)."""
    B, T, H, W, C = x.shape
    pt, ph, pw = patch
    x = x.reshape(B, T // pt, pt, H // ph, ph, W // pw, pw, C)
    x = x.permute(0, 1, 3, 5, 7, 2, 4, 6)  # B, gt, gy, gx, C, pt, ph, pw
    return x.reshape(B, (T // pt) * (H // ph) * (W // pw), C * pt * ph * pw)


def unpatchify(tokens, grid, patch, channels):
    """[B, N, pt·ph·pw·C] with each vector in order (dt, dy, dx, c) → [B, T, H, W, C]."""
    B = tokens.shape[0]
    gt, gy, gx = grid
    pt, ph, pw = patch
    x = tokens.reshape(B, gt, gy, gx, pt, ph, pw, channels)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7)  # B, gt, pt, gy, ph, gx, pw, C
    return x.reshape(B, gt * pt, gy * ph, gx * pw, channels)


def timestep_features(timesteps, freq_dim):
    """[B] → [B, freq_dim]: [cos(τ·f), sin(τ·f)], f_i = exp(−ln(10000)·i/half).
    Computed in double, rounded to float32."""
    half = freq_dim // 2
    i = torch.arange(half, dtype=torch.float64, device=timesteps.device)
    freqs = torch.exp(-math.log(10000.0) * i / half)
    args = timesteps.to(torch.float64)[:, None] * freqs[None, :]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(torch.float32)


def rope_tables(grid, head_dim, theta, scale):
    """cos, sin [N, 3, c/2] for tokens of the grid (t outermost); c = head_dim / 3.
    Chunk k rotates by the token's coordinate on axis k divided by scale[k];
    inv_j = theta^(−2j/c).  Computed in double, rounded to float32."""
    c = head_dim // 3
    j = np.arange(c // 2, dtype=np.float64)
    inv = np.array([theta ** (-2.0 * jj / c) for jj in j], dtype=np.float64)
    gt, gy, gx = grid
    t, y, x = np.meshgrid(np.arange(gt), np.arange(gy), np.arange(gx), indexing="ij")
    pos = np.stack([t.reshape(-1) / scale[0], y.reshape(-1) / scale[1],
                    x.reshape(-1) / scale[2]], axis=1).astype(np.float64)  # [N, 3]
    ang = pos[:, :, None] * inv[None, None, :]
    cos = torch.from_numpy(np.cos(ang).astype(np.float32))
    sin = torch.from_numpy(np.sin(ang).astype(np.float32))
    return cos, sin


ABS_POS_BASE = 100.0


def abs_pos_table(grid, hidden):
    """Fixed 3-D sine-cosine positions [N, hidden] added to the patch embedding (dit.abs_pos
    = "sincos").  Each third c = hidden/3 belongs to one axis (t, y, x) of the token's grid
    coordinate p: columns [0, c/2) are sin(p·w_i), [c/2, c) cos(p·w_i), w_i = 100^(−2i/c).
    RoPE alone tells a token only where others are relative to it; a small model needs
    the absolute frame and place to learn where an object moving left starts and ends.
    Computed in double, rounded to float32."""
    c = hidden // 3
    half = c // 2
    w = np.array([ABS_POS_BASE ** (-i / half) for i in range(half)], dtype=np.float64)
    gt, gy, gx = grid
    t, y, x = np.meshgrid(np.arange(gt), np.arange(gy), np.arange(gx), indexing="ij")
    out = np.zeros((gt * gy * gx, hidden), dtype=np.float64)
    for a, p in enumerate((t, y, x)):
        ang = p.reshape(-1, 1).astype(np.float64) * w[None, :]
        out[:, a * c:a * c + half] = np.sin(ang)
        out[:, a * c + half:(a + 1) * c] = np.cos(ang)
    return torch.from_numpy(out.astype(np.float32))


def apply_rope(x, cos, sin):
    """x [B, heads, N, hd]; each third of hd is a rotate-half chunk: with a = chunk[:c/2],
    b = chunk[c/2:], out = [a·cos − b·sin, b·cos + a·sin]."""
    B, Hh, N, hd = x.shape
    c = hd // 3
    x = x.reshape(B, Hh, N, 3, 2, c // 2)
    a, b = x[..., 0, :], x[..., 1, :]
    out = torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-2)
    return out.reshape(B, Hh, N, hd)


def layer_norm(x, eps):
    """LayerNorm without affine parameters."""
    return F.layer_norm(x, (x.shape[-1],), eps=eps)


class PatchEmbed(nn.Module):
    """`proj` holds the Conv3d weight [D, C, pt, ph, pw]; applied as a GEMM on patchified
    tokens (identical to the strided convolution)."""

    def __init__(self, in_channels, hidden, patch):
        super().__init__()
        self.patch = tuple(patch)
        self.proj = nn.Conv3d(in_channels, hidden, kernel_size=self.patch, stride=self.patch)

    def forward(self, x):
        w = self.proj.weight.reshape(self.proj.weight.shape[0], -1)
        return F.linear(patchify(x, self.patch), w, self.proj.bias)


class TimestepEmbedding(nn.Module):
    def __init__(self, freq_dim, hidden):
        super().__init__()
        self.linear_1 = nn.Linear(freq_dim, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, features):
        return self.linear_2(F.silu(self.linear_1(features)))


class CombinedEmbedding(nn.Module):
    def __init__(self, freq_dim, hidden):
        super().__init__()
        self.timestep_embedder = TimestepEmbedding(freq_dim, hidden)


class AdaLNSingle(nn.Module):
    """τ → (m [B, 6D], e [B, D]): e = timestep embedding, m = linear(silu(e))."""

    def __init__(self, hidden, freq_dim):
        super().__init__()
        self.freq_dim = freq_dim
        self.emb = CombinedEmbedding(freq_dim, hidden)
        self.linear = nn.Linear(hidden, 6 * hidden)

    def forward(self, timesteps):
        e = self.emb.timestep_embedder(timestep_features(timesteps, self.freq_dim))
        return self.linear(F.silu(e)), e


class CaptionProjection(nn.Module):
    def __init__(self, text_dim, hidden):
        super().__init__()
        self.linear_1 = nn.Linear(text_dim, hidden)
        self.linear_2 = nn.Linear(hidden, hidden)

    def forward(self, text):
        return self.linear_2(gelu_tanh(self.linear_1(text)))


class Attention(nn.Module):
    """Multi-head attention, head-major columns, softmax(q·kᵀ/sqrt(hd))·v, then to_out.0."""

    def __init__(self, hidden, heads, head_dim):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(hidden, hidden)
        self.to_k = nn.Linear(hidden, hidden)
        self.to_v = nn.Linear(hidden, hidden)
        self.to_out = nn.ModuleList([nn.Linear(hidden, hidden), nn.Identity()])

    def _split(self, x):
        B, N, _ = x.shape
        return x.view(B, N, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x, context=None, rope=None, key_mask=None, attn_mask=None):
        """key_mask [B, Nk] bool (True = real token); attn_mask [Nq, Nk] or [B, Nq, Nk]
        bool (True = kept), e.g. a tile mask (tile_mask.py)."""
        context = x if context is None else context
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(context)), \
            self._split(self.to_v(context))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if _FAST and hasattr(F, "scaled_dot_product_attention"):
            m = None
            if key_mask is not None:
                m = key_mask[:, None, None, :]
            if attn_mask is not None:
                a = attn_mask if attn_mask.dim() == 2 else attn_mask[:, None]
                m = a if m is None else (m & a)
            out = F.scaled_dot_product_attention(q.to(v.dtype), k.to(v.dtype), v, attn_mask=m)
            B, _, N, _ = out.shape
            return self.to_out[0](out.transpose(1, 2).reshape(B, N, -1))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        if attn_mask is not None:
            m = attn_mask if attn_mask.dim() == 2 else attn_mask[:, None]
            scores = scores.masked_fill(~m, float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        B, _, N, _ = out.shape
        out = out.transpose(1, 2).reshape(B, N, self.heads * self.head_dim)
        return self.to_out[0](out)


class GeluProj(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, x):
        return gelu_tanh(self.proj(x))


class FeedForward(nn.Module):
    """net.2(gelu_tanh(net.0.proj(h)))."""

    def __init__(self, hidden, ffn_hidden):
        super().__init__()
        self.net = nn.ModuleList([GeluProj(hidden, ffn_hidden), nn.Identity(),
                                  nn.Linear(ffn_hidden, hidden)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


class DiTBlock(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg.hidden
        self.eps = cfg.eps
        self.scale_shift_table = nn.Parameter(torch.zeros(6, D))
        self.attn1 = Attention(D, cfg.heads, cfg.head_dim)
        self.attn2 = Attention(D, cfg.heads, cfg.head_dim)
        self.ff = FeedForward(D, cfg.ffn_hidden)

    def forward(self, x, m, caption, rope, caption_mask=None, self_mask=None):
        """x [B, N, D]; m [B, 6D]; caption [B, L, D]; self_mask: see Attention."""
        s = self.scale_shift_table[None] + m.reshape(m.shape[0], 6, -1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = \
            (s[:, i:i + 1] for i in range(6))
        h = layer_norm(x, self.eps) * (1 + scale_msa) + shift_msa
        x = x + gate_msa * self.attn1(h, rope=rope, attn_mask=self_mask)
        x = x + self.attn2(x, context=caption, key_mask=caption_mask)
        h = layer_norm(x, self.eps) * (1 + scale_mlp) + shift_mlp
        return x + gate_mlp * self.ff(h)


class DiT(nn.Module):
    """(x [B, T, H, W, C], τ [B], text [B, L, E]) → model output [B, T, H, W, C]."""

    def __init__(self, cfg, text_dim):
        super().__init__()
        self.cfg = cfg
        D, C = cfg.hidden, cfg.in_channels
        self.pos_embed = PatchEmbed(C, D, cfg.patch)
        self.adaln_single = AdaLNSingle(D, cfg.freq_dim)
        self.caption_projection = CaptionProjection(text_dim, D)
        self.transformer_blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.depth)])
        self.scale_shift_table = nn.Parameter(torch.zeros(2, D))
        self.proj_out = nn.Linear(D, cfg.patch_size * C)
        self._rope_cache = {}

    def grid(self, shape):
        T, H, W = shape[-4], shape[-3], shape[-2]
        pt, ph, pw = self.cfg.patch
        if T % pt or H % ph or W % pw:
            raise ValueError(f"latent {list(shape)} not divisible by patch {self.cfg.patch}")
        return T // pt, H // ph, W // pw

    def rope(self, grid, device=None):
        key = (grid, str(device))
        if key not in self._rope_cache:
            c = self.cfg
            cos, sin = rope_tables(grid, c.head_dim, c.rope_theta, c.rope_scale)
            self._rope_cache[key] = (cos.to(device), sin.to(device)) if device else (cos, sin)
        return self._rope_cache[key]

    def abs_pos(self, grid, device=None):
        key = ("abs", grid, str(device))
        if key not in self._rope_cache:
            self._rope_cache[key] = abs_pos_table(grid, self.cfg.hidden).to(device)
        return self._rope_cache[key]

    def forward(self, x, timesteps, text, text_mask=None, self_masks=None, hidden=None):
        """self_masks: None or one self-attention mask (or None) per block; hidden: None or
        a list that receives every block's output [B, N, D] (layer-wise distillation)."""
        if x.dim() == 4:  # unbatched [T, H, W, C]
            t = torch.as_tensor(timesteps, dtype=torch.float32).reshape(1)
            m = None if text_mask is None else text_mask[None]
            return self.forward(x[None], t, text[None], m, self_masks, hidden)[0]
        grid = self.grid(x.shape)
        rope = self.rope(grid, x.device)
        h = self.pos_embed(x)
        if self.cfg.abs_pos == "sincos":
            h = h + self.abs_pos(grid, x.device)
        m, e = self.adaln_single(timesteps.to(torch.float32))
        caption = self.caption_projection(text)
        for i, block in enumerate(self.transformer_blocks):
            h = block(h, m, caption, rope, text_mask,
                      None if self_masks is None else self_masks[i])
            if hidden is not None:
                hidden.append(h)
        ss = self.scale_shift_table[None] + e[:, None]
        shift, scale = ss[:, 0:1], ss[:, 1:2]
        out = self.proj_out(layer_norm(h, self.cfg.eps) * (1 + scale) + shift)
        return unpatchify(out, grid, self.cfg.patch, self.cfg.in_channels)
