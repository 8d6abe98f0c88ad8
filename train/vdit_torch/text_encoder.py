"""T5 v1.1 / mT5 encoder (docs/model-format.md, Text encoder).

Parameter names follow Hugging Face's T5EncoderModel, so `state_dict()` keys prefixed with
`text_encoder.` are the format's tensor names.  float32 throughout.
"""

import math

import numpy as np
import torch
from torch import nn

from .dit import gelu_tanh


def relative_bucket(rel, num_buckets, max_distance):
    """T5's bidirectional bucket of relative positions rel = j − i (numpy int array).

    n = num_buckets / 2; ret = n if rel > 0 else 0; a = |rel|; max_exact = n / 2;
    a < max_exact → ret + a, else ret + min(n − 1, max_exact + int(log(a / max_exact) /
    log(max_distance / max_exact) · (n − max_exact))), the log term evaluated in float32.
    """
    rel = np.asarray(rel, dtype=np.int64)
    n = num_buckets // 2
    ret = np.where(rel > 0, n, 0)
    a = np.abs(rel)
    max_exact = n // 2
    ratio = np.maximum(a, 1).astype(np.float32) / np.float32(max_exact)
    # float32 logs, correctly rounded (as logf), from the double log.
    log_ratio = np.array([np.float32(math.log(float(x))) for x in ratio.reshape(-1)],
                         dtype=np.float32).reshape(ratio.shape)
    denom = np.float32(math.log(max_distance / max_exact))
    large = max_exact + (log_ratio / denom * np.float32(n - max_exact)).astype(np.int64)
    large = np.minimum(large, n - 1)
    return ret + np.where(a < max_exact, a, large)


def position_bias(table, length, num_buckets, max_distance):
    """[heads, L, L] bias[h, i, j] = table[bucket(j − i), h] from an Embedding weight."""
    pos = np.arange(length)
    buckets = relative_bucket(pos[None, :] - pos[:, None], num_buckets, max_distance)
    idx = torch.from_numpy(buckets).to(table.device)
    return table[idx].permute(2, 0, 1).contiguous()


class T5LayerNorm(nn.Module):
    """rms(x)·w with rms(x) = x / sqrt(mean(x²) + eps); no mean, no bias."""

    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(dim=-1, keepdim=True)
        return x / torch.sqrt(var + self.eps) * self.weight


class T5Attention(nn.Module):
    def __init__(self, cfg, has_relative_bias):
        super().__init__()
        inner = cfg.n_heads * cfg.d_kv
        self.n_heads, self.d_kv = cfg.n_heads, cfg.d_kv
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        if has_relative_bias:
            self.relative_attention_bias = nn.Embedding(cfg.rel_buckets, cfg.n_heads)

    def forward(self, h, bias, key_mask=None):
        """h [B, L, E]; bias [H, L, L]; key_mask [B, L] bool (True = real token) or None."""
        B, L, _ = h.shape

        def heads(x):
            return x.view(B, L, self.n_heads, self.d_kv).transpose(1, 2)

        q, k, v = heads(self.q(h)), heads(self.k(h)), heads(self.v(h))
        scores = torch.matmul(q, k.transpose(-1, -2)) + bias  # no 1/sqrt(d) in T5
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        att = torch.softmax(scores, dim=-1)
        out = torch.matmul(att, v).transpose(1, 2).reshape(B, L, self.n_heads * self.d_kv)
        return self.o(out)


class T5LayerSelfAttention(nn.Module):
    def __init__(self, cfg, has_relative_bias):
        super().__init__()
        self.SelfAttention = T5Attention(cfg, has_relative_bias)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.eps)

    def forward(self, h, bias, key_mask=None):
        return h + self.SelfAttention(self.layer_norm(h), bias, key_mask)


class T5DenseGatedGelu(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x):
        return self.wo(gelu_tanh(self.wi_0(x)) * self.wi_1(x))


class T5LayerFF(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.DenseReluDense = T5DenseGatedGelu(cfg)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.eps)

    def forward(self, h):
        return h + self.DenseReluDense(self.layer_norm(h))


class T5Block(nn.Module):
    def __init__(self, cfg, has_relative_bias):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(cfg, has_relative_bias),
                                    T5LayerFF(cfg)])

    def forward(self, h, bias, key_mask=None):
        return self.layer[1](self.layer[0](h, bias, key_mask))


class T5Stack(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.block = nn.ModuleList([T5Block(cfg, i == 0) for i in range(cfg.n_layers)])
        self.final_layer_norm = T5LayerNorm(cfg.d_model, cfg.eps)


class TextEncoder(nn.Module):
    """ids [B, L] (long) → embeddings [B, L, E]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = T5Stack(cfg)

    def forward(self, ids, key_mask=None):
        if ids.dim() == 1:
            return self.forward(ids[None], None if key_mask is None else key_mask[None])[0]
        cfg = self.cfg
        h = self.shared(ids)
        table = self.encoder.block[0].layer[0].SelfAttention.relative_attention_bias.weight
        bias = position_bias(table, ids.shape[1], cfg.rel_buckets, cfg.rel_max_distance)
        for block in self.encoder.block:
            h = block(h, bias, key_mask)
        return self.encoder.final_layer_norm(h)
