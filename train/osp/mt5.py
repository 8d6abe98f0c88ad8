"""A PyTorch reference of the mT5 encoder (transformers' MT5EncoderModel: T5 v1.1 blocks,
gated-GELU, relative position buckets from block 0 shared by all blocks, no attention
scaling), written from the published architecture. It reads the Hugging Face tensor
names, takes a padding mask as Open-Sora-Plan's pipeline passes it, and returns the
last hidden state."""

import math

import torch
import torch.nn.functional as F


def relative_bucket(rel, num_buckets, max_distance):
    """T5's bidirectional bucket of relative positions (key − query)."""
    n = num_buckets // 2
    out = (rel > 0).long() * n
    a = rel.abs()
    max_exact = n // 2
    large = max_exact + (torch.log(a.float().clamp(min=1) / max_exact)
                         / math.log(max_distance / max_exact) * (n - max_exact)).long()
    large = torch.minimum(large, torch.full_like(large, n - 1))
    return out + torch.where(a < max_exact, a, large)


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def encode(sd, cfg, ids, mask):
    """sd: {HF name: tensor}; cfg: the MT5 config dict; ids, mask [B, L] → [B, L, d_model]."""
    eps = cfg["layer_norm_epsilon"]
    heads, dkv = cfg["num_heads"], cfg["d_kv"]
    b, n = ids.shape
    h = sd["shared.weight"][ids]
    pos = torch.arange(n)
    buckets = relative_bucket(pos[None, :] - pos[:, None], cfg["relative_attention_num_buckets"],
                              cfg["relative_attention_max_distance"])
    table = sd["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    bias = table[buckets].permute(2, 0, 1)[None]                     # [1, heads, q, k]
    bias = bias + (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i in range(cfg["num_layers"]):
        p = f"encoder.block.{i}.layer."
        x = rms_norm(h, sd[p + "0.layer_norm.weight"], eps)

        def split(w):
            return (x @ sd[f"{p}0.SelfAttention.{w}.weight"].T).view(b, n, heads, dkv).transpose(1, 2)

        q, k, v = split("q"), split("k"), split("v")
        att = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1) @ v
        att = att.transpose(1, 2).reshape(b, n, heads * dkv)
        h = h + att @ sd[p + "0.SelfAttention.o.weight"].T
        x = rms_norm(h, sd[p + "1.layer_norm.weight"], eps)
        gate = F.gelu(x @ sd[p + "1.DenseReluDense.wi_0.weight"].T, approximate="tanh")
        h = h + (gate * (x @ sd[p + "1.DenseReluDense.wi_1.weight"].T)) \
            @ sd[p + "1.DenseReluDense.wo.weight"].T
    return rms_norm(h, sd["encoder.final_layer_norm.weight"], eps)
