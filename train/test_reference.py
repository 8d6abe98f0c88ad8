#!/usr/bin/python3
"""Self-checks of train/vdit_torch against hand-computed values and an independent float64
numpy implementation written straight from docs/model-format.md; also checks that the
committed models/tiny and tests/data/golden.safetensors are what the reference computes.

    /usr/bin/python3 train/test_reference.py        (exit 0 = pass, 77 = torch missing)
"""

import copy
import json
import math
import os
import sys
import tempfile
import traceback
from dataclasses import replace

import numpy as np

try:
    __import__("sentencepiece")
    import torch
except ImportError as e:  # optional: machines without torch skip these checks
    print(f"{e.name} not available: skipped")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from vdit_torch import config, philox, safetensors_io, samplers  # noqa: E402
from vdit_torch.dit import patchify, rope_tables, apply_rope, timestep_features, \
    unpatchify  # noqa: E402
from vdit_torch.model import VditModel, expected_shapes  # noqa: E402
from vdit_torch.text_encoder import relative_bucket  # noqa: E402
from vdit_torch.tokenize import finish  # noqa: E402
import make_tiny_model  # noqa: E402

TINY = os.path.join(ROOT, "models", "tiny")
GOLDEN = os.path.join(ROOT, "tests", "data", "golden.safetensors")


def small_config(**dit):
    d = {"format": "vdit", "version": 1, "name": "t",
         "video": {"frames": 4, "height": 8, "width": 12, "fps": 8},
         "decoder": {"type": "identity", "channels": 3},
         "text_encoder": {"vocab_size": 50, "d_model": 16, "n_layers": 2, "n_heads": 2,
                          "d_kv": 6, "d_ff": 24, "rel_buckets": 32, "rel_max_distance": 128,
                          "max_tokens": 32, "eps": 1e-6},
         "dit": {"hidden": 24, "depth": 2, "heads": 2, "head_dim": 12, "patch": [2, 2, 4],
                 "in_channels": 3, "ffn_hidden": 40, "freq_dim": 16, "rope_theta": 10000.0,
                 "rope_scale": [1.0, 2.0, 0.5], "eps": 1e-6},
         "sampler": {"type": "flow_euler", "prediction": "flow", "steps": 3, "guidance": 2.0},
         "attention": {"mode": "full"}}
    d["dit"].update(dit)
    return config.from_dict(d)


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


# ---------------------------------------------------------------- philox

def test_philox_known_answers():
    # Random123 known-answer vectors for Philox4x32-10: counter, key -> output.
    kat = [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
           ((0xffffffff,) * 4, (0xffffffff,) * 2,
            (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
           ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
            (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
    for ctr, key, want in kat:
        got = tuple(int(w) for w in philox.philox4x32_10(ctr, key))
        assert got == want, (ctr, [hex(w) for w in got])


def test_philox_normals_layout():
    # Element i = lane i % 4 of block i // 4; hand-built from the raw words.
    seed, stream = 0xDEADBEEFCAFE, 5
    r = philox.philox4x32_10((np.uint64(1), 0, stream, 0), (seed & 0xffffffff, seed >> 32))
    u = [(int(w) + 0.5) / 2 ** 32 for w in r]
    rad = math.sqrt(-2.0 * math.log(u[2]))
    z3 = np.float32(rad * math.sin(2.0 * math.pi * u[3]))
    assert philox.normals(seed, stream, 8)[7] == z3
    full = philox.normals(1234, 3, 103)
    for first, n in ((0, 1), (1, 6), (5, 98), (100, 3)):
        assert np.array_equal(philox.normals(1234, 3, n, first), full[first:first + n])
    # high counter word and stream word are used
    assert not np.array_equal(philox.normals(1, 0, 4, 4 * 2 ** 32), philox.normals(1, 0, 4))
    assert not np.array_equal(philox.normals(1, 1, 4), philox.normals(1, 0, 4))
    big = philox.normals(99, 0, 200000)
    assert abs(big.mean()) < 0.01 and abs(big.std() - 1) < 0.01


# ---------------------------------------------------------------- safetensors

def test_bf16_rounding():
    vals = np.array([1.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, 1.0 + 2 ** -8 + 2 ** -20,
                     -2.5, 3.0e38, 1e-40], dtype=np.float32)
    want = np.array([0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC020, 0x7F62, 0x0001], dtype=np.uint16)
    got = safetensors_io.f32_to_bf16_bits(vals)
    assert np.array_equal(got, want), [hex(v) for v in got]
    assert safetensors_io.bf16_bits_to_f32(np.array([0x3F82], np.uint16))[0] == 1.015625


def test_bf16_rounding_boundaries():
    """Every bf16 value's neighbourhood (just below, at and just above the halfway point,
    both signs, subnormals to the largest finite) against the rounding done in 64 bits."""
    hi = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
    lo = np.array([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint32)
    u = (hi[:, None] | lo[None, :]).reshape(-1)
    vals = u.view(np.float32)
    vals = vals[np.isfinite(vals)]
    w = vals.view(np.uint32).astype(np.uint64)
    want = ((w + 0x7FFF + ((w >> 16) & 1)) >> 16).astype(np.uint16)
    assert np.array_equal(safetensors_io.f32_to_bf16_bits(vals), want)


def test_safetensors_roundtrip():
    rng = np.random.default_rng(0)
    t = {"a": rng.standard_normal((3, 5)).astype(np.float32),
         "b": rng.standard_normal(7).astype(np.float32),
         "c": rng.standard_normal((2, 2, 3)).astype(np.float32)}
    dt = {"a": "F16", "b": "BF16", "c": "F32"}
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "x.safetensors")
        safetensors_io.save(p, t, dtypes=dt, metadata={"k": "v"})
        got, meta, dtypes = safetensors_io.load(p, with_dtypes=True)
        header, _, start, size = safetensors_io.read_header(p)
        assert meta == {"k": "v"} and dtypes == dt and start % 8 == 0
        spans = sorted(h["data_offsets"] for h in header.values())
        assert spans[0][0] == 0 and spans[-1][1] == size - start
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # no holes
        for name, h in header.items():
            assert h["data_offsets"][0] % safetensors_io.ITEMSIZE[h["dtype"]] == 0
            q = safetensors_io.quantize(t[name], dt[name])
            assert torch.equal(got[name], q)
        assert torch.equal(got["c"], torch.from_numpy(t["c"]))
        with open(p, "rb") as f:
            data = f.read()
        with open(p, "wb") as f:
            f.write(data[:-3])
        try:
            safetensors_io.load(p)
            raise AssertionError("truncated file loaded")
        except ValueError:
            pass


# ---------------------------------------------------------------- config

def test_config_roundtrip_and_errors():
    cfg = small_config()
    again = config.from_dict(json.loads(config.dumps(cfg)))
    assert config.dumps(again) == config.dumps(cfg)
    d = cfg.to_dict()
    for path, value in ((("dit", "head_dim"), 8), (("video", "height"), 9),
                        (("sampler", "prediction"), "epsilon"), (("format",), "x"),
                        (("attention", "plan"), [1]), (("video", "frames"), 3)):
        bad = copy.deepcopy(d)
        node = bad
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        try:
            config.from_dict(bad)
            raise AssertionError(f"accepted {path}={value}")
        except config.ConfigError as e:
            assert path[-1] in str(e) or "frames" in str(e), str(e)


# ---------------------------------------------------------------- tokens

def test_token_finish():
    assert finish([], 32) == [1]
    assert finish([5, 6], 32) == [5, 6, 1]
    assert finish(list(range(10, 50)), 32) == list(range(10, 41)) + [1]
    assert len(finish(list(range(10, 41)), 32)) == 32  # 31 ids + EOS: not cut
    assert finish(list(range(10, 42)), 32)[-2] == 40


def test_tiny_tokenizer():
    m = VditModel.from_dir(TINY)
    ids = m.tokens("a red circle moving left on a gray background")
    assert ids[-1] == 1 and 1 not in ids[:-1] and 2 not in ids
    assert m.tokens("", negative=True) == [1]
    try:
        m.tokens("")
        raise AssertionError("empty prompt accepted")
    except ValueError:
        pass
    long = m.tokens("a red circle " * 40)
    assert len(long) == 32 and long[-1] == 1


# ---------------------------------------------------------------- layout and tables

def test_patchify_roundtrip_and_order():
    x = torch.randn(2, 4, 8, 12, 3)
    patch = (2, 2, 4)
    tok = patchify(x, patch)
    assert tok.shape == (2, 2 * 4 * 3, 3 * 16)
    # token (t=1, y=2, x=1) = n 1·12 + 2·3 + 1; element (c=2, dt=1, dy=0, dx=3)
    n, e = 1 * 12 + 2 * 3 + 1, ((2 * 2 + 1) * 2 + 0) * 4 + 3
    assert tok[1, n, e] == x[1, 1 * 2 + 1, 2 * 2 + 0, 1 * 4 + 3, 2]
    conv = torch.nn.Conv3d(3, 5, patch, stride=patch)
    ref = conv(x.permute(0, 4, 1, 2, 3)).flatten(2).transpose(1, 2)
    mine = torch.nn.functional.linear(tok, conv.weight.reshape(5, -1), conv.bias)
    assert torch.allclose(ref, mine, atol=1e-5)
    # output order (dt, dy, dx, c)
    out = torch.randn(2, 24, 16 * 3)
    y = unpatchify(out, (2, 4, 3), patch, 3)
    assert y[1, 1 * 2 + 1, 2 * 2 + 0, 1 * 4 + 3, 2] == out[1, n, ((1 * 2 + 0) * 4 + 3) * 3 + 2]
    # round trip when the vector order is converted
    v = tok.reshape(2, 24, 3, 16).transpose(2, 3).reshape(2, 24, 48)
    assert torch.equal(unpatchify(v, (2, 4, 3), patch, 3), x)


def bucket_double(rel, num_buckets, max_distance):
    n = num_buckets // 2
    ret = n if rel > 0 else 0
    a = abs(rel)
    me = n // 2
    if a < me:
        return ret + a
    return ret + min(n - 1, me + int(math.log(a / me) / math.log(max_distance / me) * (n - me)))


def test_relative_bucket():
    # Hugging Face T5 values (32 buckets, max distance 128)
    rel = np.array([0, -1, 1, -7, 7, -8, 8, -15, 16, 31, -31, 64, -127, 128, 1000, -1000])
    want = [0, 1, 17, 7, 23, 8, 24, 9, 26, 27, 11, 30, 15, 31, 31, 15]
    assert relative_bucket(rel, 32, 128).tolist() == want
    # float32 log (the spec) and double log agree everywhere that matters
    r = np.arange(-4096, 4097)
    for nb, md in ((32, 128), (32, 64), (16, 32), (64, 256), (8, 20)):
        got = relative_bucket(r, nb, md)
        assert got.tolist() == [bucket_double(int(v), nb, md) for v in r], (nb, md)


def test_timestep_features():
    f = timestep_features(torch.tensor([0.0, 637.5]), 8)
    assert torch.equal(f[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    want = [math.cos(637.5 * math.exp(-math.log(10000) * i / 4)) for i in range(4)]
    assert torch.equal(f[1, :4], torch.tensor(want, dtype=torch.float32))


def test_rope():
    grid, hd = (2, 3, 4), 12
    cos, sin = rope_tables(grid, hd, 10000.0, [1.0, 1.0, 1.0])
    q = torch.randn(1, 1, 24, hd)
    k = torch.randn(1, 1, 24, hd)
    rq, rk = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    # token 0 is at the origin: unchanged
    assert torch.equal(rq[0, 0, 0], q[0, 0, 0])
    # scores depend on position differences only: shift every token by one x step
    qq = q.clone()
    kk = k.clone()
    n1, n2 = (0 * 3 + 1) * 4 + 0, (1 * 3 + 2) * 4 + 2  # (0,1,0), (1,2,2)
    m1, m2 = n1 + 1, n2 + 1                             # (0,1,1), (1,2,3)
    qq[0, 0, m1], kk[0, 0, m2] = q[0, 0, n1], k[0, 0, n2]
    rqq, rkk = apply_rope(qq, cos, sin), apply_rope(kk, cos, sin)
    assert abs(float(rq[0, 0, n1] @ rk[0, 0, n2]) - float(rqq[0, 0, m1] @ rkk[0, 0, m2])) < 1e-4
    # y chunk (columns 4..7) of a token at (0, 1, 0): a = cols 4,5 and b = cols 6,7
    n = 4
    ang = [1.0 * 10000.0 ** (-2.0 * j / 4) for j in range(2)]
    a, b = q[0, 0, n, 4:6], q[0, 0, n, 6:8]
    c = torch.tensor([math.cos(t) for t in ang])
    s = torch.tensor([math.sin(t) for t in ang])
    assert torch.allclose(rq[0, 0, n, 4:8], torch.cat([a * c - b * s, b * c + a * s]), atol=1e-6)
    assert torch.equal(rq[0, 0, n, 0:4], q[0, 0, n, 0:4])


# ---------------------------------------------------------------- independent float64 model

def np_gelu(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def np_softmax(s):
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def np_text_encoder(W, tc, ids):
    P = "text_encoder.encoder.block."
    h = W["text_encoder.shared.weight"][ids]
    L, H, dk = len(ids), tc.n_heads, tc.d_kv

    def rms(x, w):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + tc.eps) * w

    table = W[P + "0.layer.0.SelfAttention.relative_attention_bias.weight"]
    bias = np.zeros((H, L, L))
    for i in range(L):
        for j in range(L):
            bias[:, i, j] = table[bucket_double(j - i, tc.rel_buckets, tc.rel_max_distance)]
    for b in range(tc.n_layers):
        p = f"{P}{b}.layer."
        x = rms(h, W[p + "0.layer_norm.weight"])
        q, k, v = (x @ W[p + f"0.SelfAttention.{n}.weight"].T for n in "qkv")
        heads = []
        for hh in range(H):
            cs = slice(hh * dk, (hh + 1) * dk)
            heads.append(np_softmax(q[:, cs] @ k[:, cs].T + bias[hh]) @ v[:, cs])
        h = h + np.concatenate(heads, -1) @ W[p + "0.SelfAttention.o.weight"].T
        x = rms(h, W[p + "1.layer_norm.weight"])
        f = np_gelu(x @ W[p + "1.DenseReluDense.wi_0.weight"].T) * \
            (x @ W[p + "1.DenseReluDense.wi_1.weight"].T)
        h = h + f @ W[p + "1.DenseReluDense.wo.weight"].T
    return rms(h, W["text_encoder.encoder.final_layer_norm.weight"])


def np_dit(W, dc, X, tau, text):
    T, Hh, Ww, C = X.shape
    pt, ph, pw = dc.patch
    gt, gy, gx = T // pt, Hh // ph, Ww // pw
    D, nh, hd = dc.hidden, dc.heads, dc.head_dim

    def lin(x, name):
        return x @ W[name + ".weight"].T + W[name + ".bias"]

    def silu(x):
        return x / (1 + np.exp(-x))

    def ln(x):
        mu = x.mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + dc.eps)

    coords, toks = [], []
    for t in range(gt):
        for y in range(gy):
            for x in range(gx):
                coords.append((t, y, x))
                toks.append([X[t * pt + dt, y * ph + dy, x * pw + dx, c]
                             for c in range(C) for dt in range(pt)
                             for dy in range(ph) for dx in range(pw)])
    h = np.array(toks) @ W["pos_embed.proj.weight"].reshape(D, -1).T + W["pos_embed.proj.bias"]
    half = dc.freq_dim // 2
    f = np.array([math.exp(-math.log(10000) * i / half) for i in range(half)])
    emb = np.concatenate([np.cos(tau * f), np.sin(tau * f)])
    e = lin(silu(lin(emb, "adaln_single.emb.timestep_embedder.linear_1")),
            "adaln_single.emb.timestep_embedder.linear_2")
    m = lin(silu(e), "adaln_single.linear")
    cap = lin(np_gelu(lin(text, "caption_projection.linear_1")), "caption_projection.linear_2")
    c3 = hd // 3

    def rope(v):  # v [N, hd] of one head
        out = v.copy()
        for n, pos in enumerate(coords):
            for axis in range(3):
                p = pos[axis] / dc.rope_scale[axis]
                for j in range(c3 // 2):
                    th = p * dc.rope_theta ** (-2.0 * j / c3)
                    a, b = v[n, axis * c3 + j], v[n, axis * c3 + c3 // 2 + j]
                    out[n, axis * c3 + j] = a * math.cos(th) - b * math.sin(th)
                    out[n, axis * c3 + c3 // 2 + j] = b * math.cos(th) + a * math.sin(th)
        return out

    def attn(xq, xkv, name, use_rope):
        q, k, v = lin(xq, name + ".to_q"), lin(xkv, name + ".to_k"), lin(xkv, name + ".to_v")
        outs = []
        for hh in range(nh):
            cs = slice(hh * hd, (hh + 1) * hd)
            qh, kh = (rope(q[:, cs]), rope(k[:, cs])) if use_rope else (q[:, cs], k[:, cs])
            outs.append(np_softmax(qh @ kh.T / math.sqrt(hd)) @ v[:, cs])
        return lin(np.concatenate(outs, -1), name + ".to_out.0")

    for i in range(dc.depth):
        p = f"transformer_blocks.{i}."
        s = W[p + "scale_shift_table"] + m.reshape(6, D)
        hm = ln(h) * (1 + s[1]) + s[0]
        h = h + s[2] * attn(hm, hm, p + "attn1", True)
        h = h + attn(h, cap, p + "attn2", False)
        hm = ln(h) * (1 + s[4]) + s[3]
        h = h + s[5] * lin(np_gelu(lin(hm, p + "ff.net.0.proj")), p + "ff.net.2")
    ss = W["scale_shift_table"] + e
    out = lin(ln(h) * (1 + ss[1]) + ss[0], "proj_out")
    Y = np.zeros_like(X)
    for n, (t, y, x) in enumerate(coords):
        for dt in range(pt):
            for dy in range(ph):
                for dx in range(pw):
                    for c in range(C):
                        Y[t * pt + dt, y * ph + dy, x * pw + dx, c] = \
                            out[n, ((dt * ph + dy) * pw + dx) * C + c]
    return Y


def test_against_float64_numpy():
    cfg = small_config()
    model = randomize(VditModel(cfg), 3)
    W = {k: v.double().numpy() for k, v in model.format_state_dict().items()}
    ids = [5, 17, 3, 42, 8, 1]
    with torch.no_grad():
        text = model.encode_text(ids)
        x = torch.randn(4, 8, 12, 3, generator=torch.Generator().manual_seed(1))
        out = model.dit(x, 637.5, text)
    ref_text = np_text_encoder(W, cfg.text_encoder, ids)
    assert np.abs(text.numpy() - ref_text).max() < 1e-4 * max(1, np.abs(ref_text).max())
    ref = np_dit(W, cfg.dit, x.double().numpy(), 637.5, text.double().numpy())
    err = np.abs(out.numpy() - ref).max()
    assert err < 1e-4 * max(1, np.abs(ref).max()), err


# ---------------------------------------------------------------- samplers

def oracle(x0, kind, scfg):
    """Exact model outputs for a known clean sample x0 (and the sampler's own x)."""
    ac = samplers.alphas_cumprod(scfg)

    def f(x, tau):
        x = x.double()
        if kind == "flow":  # x = (1 − t)x0 + tε → v = ε − x0 = (x − x0)/t
            t = float(tau) / 1000.0
            return ((x - x0) / t).float()
        a, b = math.sqrt(ac[int(tau)]), math.sqrt(1 - ac[int(tau)])
        if scfg.type == "euler_ancestral":  # input x/sqrt(σ²+1) = a·x_σ, x_σ = x0 + σε
            sigma = b / a
            eps = (x / a - x0) / sigma
        else:
            eps = (x - a * x0) / b
        if kind == "epsilon":
            return eps.float()
        return (a * eps - b * x0).float()  # v
    return f


def test_samplers_recover_x0():
    x0 = torch.randn(4, 4, 4, 3, generator=torch.Generator().manual_seed(5)).double()
    cfg = small_config()
    for typ, pred in (("flow_euler", "flow"), ("ddim", "epsilon"), ("ddim", "v"),
                      ("euler_ancestral", "epsilon"), ("euler_ancestral", "v")):
        for steps in (1, 2, 5):
            for sched in ("linear", "scaled_linear"):
                scfg = replace(cfg.sampler, type=typ, prediction=pred, steps=steps,
                               beta_schedule=sched, shift=2.0 if steps == 5 else 1.0)
                out = samplers.sample(oracle(x0, pred, scfg), x0.shape, 11, scfg)
                err = float((out.double() - x0).abs().max())
                assert err < 2e-3, (typ, pred, steps, sched, err)


def test_schedules():
    assert samplers.ddpm_timesteps(1000, 2) == [999, 0]
    assert samplers.ddpm_timesteps(1000, 4) == [999, 666, 333, 0]
    assert samplers.ddpm_timesteps(1000, 3) == [999, 500, 0]
    assert samplers.ddpm_timesteps(1000, 1) == [0]
    assert samplers.flow_times(4, 1.0) == [1.0, 0.75, 0.5, 0.25, 0.0]
    t = samplers.flow_times(2, 3.0)
    assert t[0] == 1.0 and abs(t[1] - 0.75) < 1e-15 and t[2] == 0.0
    scfg = small_config().sampler
    ac = samplers.alphas_cumprod(scfg)
    assert abs(ac[0] - (1 - 1e-4)) < 1e-15 and abs(ac[-1] - 4.035e-5) < 1e-7
    _, sig = samplers.ancestral_sigmas(replace(scfg, steps=2))
    assert sig[2] == 0.0 and abs(sig[0] - math.sqrt((1 - ac[999]) / ac[999])) < 1e-12


def test_guidance():
    cfg = small_config()
    model = randomize(VditModel(cfg), 4)
    cond, unc = torch.randn(3, 16), torch.randn(2, 16)
    x = torch.randn(4, 8, 12, 3)
    with torch.no_grad():
        c = model.dit(x, 500.0, cond)
        u = model.dit(x, 500.0, unc)
    g1 = samplers.Guided(model.dit, cond, unc, 1.0)
    assert torch.equal(g1(x, 500.0), c) and g1.calls == 1
    g3 = samplers.Guided(model.dit, cond, unc, 3.0)
    assert torch.equal(g3(x, 500.0), u + 3.0 * (c - u)) and g3.calls == 2


def test_frames():
    x = torch.tensor([-1.0, 1.0, 0.0, -2.0, 3.0, -0.5, 0.5])  # 0.0 → 127.5 ties up
    assert samplers.latent_to_frames(x).tolist() == [0, 255, 128, 0, 255, 64, 191]


# ---------------------------------------------------------------- committed assets

def test_tiny_model_files():
    cfg = config.load(os.path.join(TINY, "config.json"))
    _, _, dtypes = safetensors_io.load(os.path.join(TINY, "model.safetensors"),
                                       with_dtypes=True)
    assert set(dtypes) == set(expected_shapes(cfg))
    for name, dt in dtypes.items():
        want = "BF16" if name.startswith("text_encoder.") else \
            "F16" if name.startswith("transformer_blocks.1.") else "F32"
        assert dt == want, (name, dt)
    assert cfg.text_encoder.vocab_size == VditModel.from_dir(TINY).tokenizer.vocab_size


def close(a, b, rel=1e-5):
    """Same values up to BLAS/thread differences (the files are made on one machine)."""
    return float((a - b).abs().max()) <= rel * float(b.abs().max())


def test_abs_pos_table():
    """Rows are (t, y, x) with x innermost; each third of a row is sin then cos of the
    coordinate on its axis; the golden forward's change comes from these values."""
    from vdit_torch.dit import abs_pos_table
    tab = abs_pos_table((2, 3, 4), 12).double()                # c = 4, two frequencies
    assert tab.shape == (24, 12)
    n = (1 * 3 + 2) * 4 + 3                                     # t = 1, y = 2, x = 3
    for axis, p in enumerate((1, 2, 3)):
        for i, w in enumerate((1.0, 0.1)):                      # 100^(-i/2)
            assert abs(tab[n, axis * 4 + i] - math.sin(p * w)) < 1e-6
            assert abs(tab[n, axis * 4 + 2 + i] - math.cos(p * w)) < 1e-6
    assert torch.equal(tab[0], torch.tensor([0.0, 0, 1, 1] * 3, dtype=torch.float64))


def test_golden_is_current():
    g, meta = safetensors_io.load(GOLDEN)
    model = VditModel.from_dir(TINY)
    ids = model.tokens(meta["prompt"])
    assert g["tokens.prompt"].tolist() == ids
    assert g["tokens.negative"].tolist() == model.tokens(meta["negative"], negative=True)
    assert close(model.encode_text(ids), g["text.prompt"])
    assert np.array_equal(philox.normals(1234, 0, 100), g["noise.s0"].numpy())
    assert np.array_equal(philox.normals(0xDEADBEEFCAFE, 5, 100), g["noise.s5"].numpy())
    with torch.no_grad():
        out = model.dit(g["dit.input"], float(g["dit.timestep"][0]), g["text.prompt"])
    assert close(out, g["dit.output"])
    with torch.no_grad():
        out = make_tiny_model.dit_with_abs_pos(model, g["dit.input"], g["text.prompt"])
    assert close(out, g["dit.output_abs_pos"])
    scfg = replace(model.cfg.sampler, steps=int(meta["steps"]),
                   guidance=float(meta["guidance"]))
    guided = samplers.Guided(model.dit, g["text.prompt"], g["text.negative"], scfg.guidance)
    x = samplers.sample(guided, g["dit.input"].shape, int(meta["seed"]), scfg)
    assert close(x, g["sample.flow_euler"])
    frames = samplers.latent_to_frames(x).astype(np.int32)
    assert np.abs(frames - g["frames.flow_euler"].numpy()).max() <= 1


def main():
    torch.set_num_threads(2)
    tests = [(k, v) for k, v in sorted(globals().items()) if k.startswith("test_")]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"ok   {name}")
        except Exception:  # report every failure, then exit non-zero
            failed += 1
            print(f"FAIL {name}")
            traceback.print_exc()
    print(f"{len(tests) - failed}/{len(tests)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
