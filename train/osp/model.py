"""A PyTorch reference of Open-Sora-Plan v1.2's transformer (`OpenSoraT2V` with
ada_norm_single, RoPE, no downsampler), written from the published architecture
(opensora/models/diffusion/opensora/{modeling_opensora,modules,rope}.py at v1.2.0 and the
diffusers modules it uses). Module names match the published checkpoint, so
`state_dict()` has the published tensor names; the layouts are OSP's own (latents
[B, C, T, H, W], a per-frame Conv2d patch embedding, a padded text mask turned into an
additive bias), independent of the engine's conventions.

`OspConfig.from_published(config_json_dict)` reads the transformer's config.json."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class OspConfig:
    num_layers: int = 32
    num_attention_heads: int = 24
    attention_head_dim: int = 96
    in_channels: int = 4
    out_channels: int = 4
    caption_channels: int = 4096
    cross_attention_dim: int = 2304
    patch_size: int = 2
    patch_size_t: int = 1
    sample_size: tuple = (90, 160)
    sample_size_t: int = 8
    norm_eps: float = 1e-6
    interpolation_scale_t: float = None
    interpolation_scale_h: float = None
    interpolation_scale_w: float = None

    @property
    def inner_dim(self):
        return self.num_attention_heads * self.attention_head_dim

    def interpolation_scales(self):
        """(t, h, w) as OpenSoraT2V._init_patched_inputs resolves them when null."""
        st = self.sample_size_t
        t = ((st - 1) // 16 + 1) if st % 2 == 1 else st / 16
        t = self.interpolation_scale_t if self.interpolation_scale_t is not None else t
        h = self.interpolation_scale_h if self.interpolation_scale_h is not None \
            else self.sample_size[0] / 30
        w = self.interpolation_scale_w if self.interpolation_scale_w is not None \
            else self.sample_size[1] / 40
        return float(t), float(h), float(w)

    @classmethod
    def from_published(cls, d):
        size = d["sample_size"]
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        return cls(num_layers=d["num_layers"], num_attention_heads=d["num_attention_heads"],
                   attention_head_dim=d["attention_head_dim"], in_channels=d["in_channels"],
                   out_channels=d.get("out_channels") or d["in_channels"],
                   caption_channels=d["caption_channels"],
                   cross_attention_dim=d["cross_attention_dim"], patch_size=d["patch_size"],
                   patch_size_t=d["patch_size_t"], sample_size=size,
                   sample_size_t=d["sample_size_t"], norm_eps=d["norm_eps"],
                   interpolation_scale_t=d.get("interpolation_scale_t"),
                   interpolation_scale_h=d.get("interpolation_scale_h"),
                   interpolation_scale_w=d.get("interpolation_scale_w"))


def gelu_tanh(x):
    return F.gelu(x, approximate="tanh")


def timestep_features(t, dim=256, max_period=10000):
    """diffusers get_timestep_embedding, flip_sin_to_cos=True, downscale_freq_shift=0."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / half
    emb = t[:, None].float() * torch.exp(exponent)[None, :]
    return torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)


class RoPE3D:
    """rope.py: the head splits in three chunks (t, y, x); positions / interpolation scale;
    rotate-half within a chunk; angles cast to the token dtype before cos/sin."""

    def __init__(self, scales, base=10000.0):
        self.scales, self.base = scales, base

    def _cos_sin(self, d, n, dtype, scale):
        inv = 1.0 / (self.base ** (torch.arange(0, d, 2).float() / d))
        pos = torch.arange(n, dtype=inv.dtype) / scale
        freqs = torch.einsum("i,j->ij", pos, inv).to(dtype)
        freqs = torch.cat((freqs, freqs), dim=-1)
        return freqs.cos(), freqs.sin()

    @staticmethod
    def _rotate_half(x):
        a, b = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return torch.cat((-b, a), dim=-1)

    def __call__(self, x, grid):
        """x [B, heads, N, hd]; grid (t, h, w) with N = t·h·w, t outermost."""
        t, h, w = grid
        pos = torch.cartesian_prod(torch.arange(t), torch.arange(h), torch.arange(w))
        d = x.shape[-1] // 3
        out = []
        for axis, chunk in enumerate(x.chunk(3, dim=-1)):
            cos, sin = self._cos_sin(d, grid[axis], x.dtype, self.scales[axis])
            c, s = cos[pos[:, axis]][None, None], sin[pos[:, axis]][None, None]
            out.append(chunk * c + self._rotate_half(chunk) * s)
        return torch.cat(out, dim=-1)


class Attention(nn.Module):
    """diffusers Attention's parameters: to_q, to_k, to_v, to_out.0 (biases on)."""

    def __init__(self, dim, heads, head_dim, context_dim=None):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(context_dim or dim, inner)
        self.to_v = nn.Linear(context_dim or dim, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Dropout(0.0)])

    def forward(self, x, context=None, bias=None, rope=None, grid=None):
        b = x.shape[0]
        ctx = x if context is None else context

        def heads(y):
            return y.view(b, -1, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.to_q(x)), heads(self.to_k(ctx)), heads(self.to_v(ctx))
        if rope is not None:
            q, k = rope(q, grid), rope(k, grid)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        if bias is not None:
            scores = scores + bias
        out = torch.softmax(scores, dim=-1) @ v
        out = out.transpose(1, 2).reshape(b, -1, self.heads * self.head_dim)
        return self.to_out[0](out)


class GELUProj(nn.Module):
    def __init__(self, dim, inner):
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x):
        return gelu_tanh(self.proj(x))


class FeedForward(nn.Module):
    """diffusers FeedForward, activation "gelu-approximate", mult 4: net.0.proj, net.2."""

    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GELUProj(dim, 4 * dim), nn.Dropout(0.0), nn.Linear(4 * dim, dim)])

    def forward(self, x):
        for layer in self.net:
            x = layer(x)
        return x


class Block(nn.Module):
    """BasicTransformerBlock, norm_type ada_norm_single, norm_elementwise_affine False."""

    def __init__(self, cfg):
        super().__init__()
        d = cfg.inner_dim
        self.eps = cfg.norm_eps
        self.attn1 = Attention(d, cfg.num_attention_heads, cfg.attention_head_dim)
        self.attn2 = Attention(d, cfg.num_attention_heads, cfg.attention_head_dim,
                               cfg.cross_attention_dim)
        self.ff = FeedForward(d)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) / d ** 0.5)

    def forward(self, x, t6, context, text_bias, rope, grid):
        b, d = x.shape[0], x.shape[-1]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.scale_shift_table[None] + t6.reshape(b, 6, -1)).chunk(6, dim=1)
        h = F.layer_norm(x, (d,), eps=self.eps) * (1 + scale_msa) + shift_msa
        x = gate_msa * self.attn1(h, rope=rope, grid=grid) + x
        x = self.attn2(x, context=context, bias=text_bias) + x  # no norm, no gate (PixArt)
        h = F.layer_norm(x, (d,), eps=self.eps) * (1 + scale_mlp) + shift_mlp
        return gate_mlp * self.ff(h) + x


class TimestepEmbedder(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.linear_1 = nn.Linear(256, d)
        self.linear_2 = nn.Linear(d, d)

    def forward(self, t):
        return self.linear_2(F.silu(self.linear_1(timestep_features(t))))


class CombinedEmbedding(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.timestep_embedder = TimestepEmbedder(d)


class AdaLayerNormSingle(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.emb = CombinedEmbedding(d)
        self.linear = nn.Linear(d, 6 * d)

    def forward(self, t):
        e = self.emb.timestep_embedder(t)
        return self.linear(F.silu(e)), e


class CaptionProjection(nn.Module):
    """PixArtAlphaTextProjection, act gelu_tanh."""

    def __init__(self, cin, d):
        super().__init__()
        self.linear_1 = nn.Linear(cin, d)
        self.linear_2 = nn.Linear(d, d)

    def forward(self, x):
        return self.linear_2(gelu_tanh(self.linear_1(x)))


class PatchEmbed2D(nn.Module):
    def __init__(self, cin, d, p):
        super().__init__()
        self.proj = nn.Conv2d(cin, d, kernel_size=p, stride=p)


class OpenSoraT2V(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg.patch_size_t == 1, "PatchEmbed2D: one latent frame per token"
        self.cfg = cfg
        d = cfg.inner_dim
        self.pos_embed = PatchEmbed2D(cfg.in_channels, d, cfg.patch_size)
        self.transformer_blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        self.scale_shift_table = nn.Parameter(torch.randn(2, d) / d ** 0.5)
        self.proj_out = nn.Linear(d, cfg.patch_size_t * cfg.patch_size ** 2 * cfg.out_channels)
        self.adaln_single = AdaLayerNormSingle(d)
        self.caption_projection = CaptionProjection(cfg.caption_channels, d)
        self.rope = RoPE3D(cfg.interpolation_scales())

    def forward(self, latent, timestep, text, text_mask):
        """latent [B, C, T, H, W]; timestep [B] (float); text [B, L, caption_channels];
        text_mask [B, L] (1 = token, 0 = padding). Returns [B, out_channels, T, H, W]."""
        cfg = self.cfg
        b, _, t, hgt, wid = latent.shape
        p = cfg.patch_size
        grid = (t, hgt // p, wid // p)
        bias = ((1 - text_mask.to(latent.dtype)) * -10000.0)[:, None, None, :]
        t6, embedded = self.adaln_single(timestep)
        context = self.caption_projection(text)
        x = latent.permute(0, 2, 1, 3, 4).reshape(b * t, -1, hgt, wid)
        x = self.pos_embed.proj(x).flatten(2).transpose(1, 2)       # (b t) (h w) D
        x = x.reshape(b, -1, x.shape[-1])                             # b (t h w) D
        for block in self.transformer_blocks:
            x = block(x, t6, context, bias, self.rope, grid)
        shift, scale = (self.scale_shift_table[None] + embedded[:, None]).chunk(2, dim=1)
        x = F.layer_norm(x, (x.shape[-1],), eps=1e-6) * (1 + scale) + shift
        x = self.proj_out(x)
        c = cfg.out_channels
        x = x.reshape(b, t, grid[1], grid[2], cfg.patch_size_t, p, p, c)
        x = torch.einsum("nthwopqc->nctohpwq", x)
        return x.reshape(b, c, t * cfg.patch_size_t, hgt, wid)
