#!/usr/bin/env python3
"""Times the PyTorch peers of vdit's CUDA kernels on the same shapes and masks, printing
the JSON lines `vdit bench attention` and `vdit bench step` print, with an "impl" key:

  torch-sdpa-cudnn, torch-sdpa-flash   dense attention (scaled_dot_product_attention)
  torch-flex                           FlexAttention with the tile k:(T-k) block mask
                                       (and a random block mask for adaptive)
  torch-eager, torch-compile           an Open-Sora-Plan v1.2 DiT step (bf16, random
                                       weights, SDPA attention), eager or under
                                       torch.compile
  torch-vae                            (--vae) the CausalVideoVAE decode of
                                       `vdit bench vae`: train/osp/vae.py's decoder with
                                       random weights, the reference's chunks and tiles,
                                       cuDNN conv3d (benchmark mode), f32 / tf32 / bf16

Shapes default to Open-Sora-Plan v1.2 at 720p: 24 heads x 96, 3,600 tokens per latent
frame; T = 8 (29 video frames) and T = 24 (93 frames). Run on the GPU machine:

  python3 tools/bench/peers.py                       # attention: dense, 1:7, 2:6, 3:21
  python3 tools/bench/peers.py --step --frames 8     # + one DiT step at 29 frames
  python3 tools/bench/peers.py --no-attention --step --frames 8,24 --batch 1,2 \
      --step-impls eager,compile
  python3 tools/bench/peers.py --no-attention --vae --frames 8,24   # VAE decode, 720p

Each figure is the median of --repeat timed runs (CUDA events) after --warmup runs;
ms_min is the fastest. FLOP counts follow `vdit bench attention`: 4·n²·heads·head_dim
for the dense-equivalent rate, times the kept fraction of frame (or block) pairs for the
kept-only rate.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F


def emit(record):
    print(json.dumps(record), flush=True)


def time_cuda(fn, warmup, repeat):
    """Median and min milliseconds of fn() over repeat runs, by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2], times[0]


def tile_kept(frames, k):
    """Kept frame tiles of the k:(T-k) mask (as vdit_tile_kept_count)."""
    if k >= frames:
        return frames * frames
    if k <= 0:
        return frames
    return frames * k + k * (frames - k) + (frames - k)


def attention_record(impl, mode, frames, tpf, heads, head_dim, ms, ms_min, density, repeat,
                     **extra):
    n = frames * tpf
    flops = 4.0 * n * n * heads * head_dim
    rec = {"bench": "attention", "impl": impl, "mode": mode, "frames": frames,
           "tokens_per_frame": tpf, "tokens": n, "heads": heads, "head_dim": head_dim}
    rec.update(extra)
    rec.update({"density": round(density, 6), "ms": round(ms, 3), "ms_min": round(ms_min, 3),
                "ms_per_frame": round(ms / frames, 3),
                "tflops_dense_equiv": round(flops / ms / 1e9, 4),
                "tflops_kept": round(flops * density / ms / 1e9, 4),
                "repeat": repeat, "backend": "cuda"})
    return rec


def bench_sdpa(args, frames):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n = frames * args.tokens_per_frame
    shape = (1, args.heads, n, args.head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    for impl, backend in (("torch-sdpa-cudnn", SDPBackend.CUDNN_ATTENTION),
                          ("torch-sdpa-flash", SDPBackend.FLASH_ATTENTION)):
        try:
            with sdpa_kernel([backend]):
                ms, ms_min = time_cuda(lambda: F.scaled_dot_product_attention(q, k, v),
                                       args.warmup, args.repeat)
        except RuntimeError as e:  # backend not available for this shape/GPU
            print(f"# {impl}: {e}".splitlines()[0], file=sys.stderr)
            continue
        emit(attention_record(impl, "full", frames, args.tokens_per_frame, args.heads,
                              args.head_dim, ms, ms_min, 1.0, args.repeat))
    del q, k, v
    torch.cuda.empty_cache()


def block_mask(create_block_mask, mask_mod, heads, n, blk):
    """A BlockMask over n x n tokens; mask creation compiled where supported (at 86,400
    tokens the eager path would materialise the whole mask)."""
    try:
        return create_block_mask(mask_mod, None, heads, n, n, device="cuda", BLOCK_SIZE=blk,
                                 _compile=True)
    except TypeError:
        return create_block_mask(mask_mod, None, heads, n, n, device="cuda", BLOCK_SIZE=blk)


def bench_flex(args, frames, ks):
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    tpf = args.tokens_per_frame
    n = frames * tpf
    shape = (1, args.heads, n, args.head_dim)
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flex = torch.compile(flex_attention, dynamic=False)

    for kk in ks:
        def tile_mask(b, h, qi, ki, kk=kk):
            qf, kf = qi // tpf, ki // tpf
            return (qf == kf) | (kf < kk) | (qf < kk)

        mask = block_mask(create_block_mask, tile_mask, None, n, args.flex_block)
        ms, ms_min = time_cuda(lambda: flex(q, k, v, block_mask=mask), args.warmup,
                               args.repeat)
        emit(attention_record("torch-flex", "tile", frames, tpf, args.heads, args.head_dim,
                              ms, ms_min, tile_kept(frames, kk) / frames**2, args.repeat,
                              k=min(kk, frames), flex_block=args.flex_block))

    if args.adaptive_sparsity is not None and frames == args.adaptive_frames:
        # AdaSpa-like pattern: random key blocks per (head, query block), the same count in
        # every row, the diagonal always kept; timing depends on the count, not the choice
        blk = args.flex_block
        nb = (n + blk - 1) // blk
        keep = max(1, round((1.0 - args.adaptive_sparsity) * nb))
        g = torch.Generator(device="cuda").manual_seed(0)
        scores = torch.rand(args.heads, nb, nb, device="cuda", generator=g)
        scores += torch.eye(nb, device="cuda") * 2.0
        top = scores.topk(keep, dim=-1).indices
        dense = torch.zeros(args.heads, nb, nb, dtype=torch.bool, device="cuda")
        dense.scatter_(-1, top, True)

        def block_mask_mod(b, h, qi, ki):
            return dense[h, qi // blk, ki // blk]

        mask = block_mask(create_block_mask, block_mask_mod, args.heads, n, blk)
        ms, ms_min = time_cuda(lambda: flex(q, k, v, block_mask=mask), args.warmup,
                               args.repeat)
        emit(attention_record("torch-flex", "adaptive", frames, tpf, args.heads,
                              args.head_dim, ms, ms_min, keep / nb, args.repeat,
                              sparsity=args.adaptive_sparsity, block=blk))
    del q, k, v
    torch.cuda.empty_cache()


def sdpa_lse(q, k, v):
    """Attention output and log-sum-exp (B, H, L) from cuDNN's fused kernel."""
    r = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True)
    return r[0], r[1].reshape(q.shape[:3])


def tile_decomposed(q, k, v, kk, tpf):
    """The k:(T-k) tile mask as dense cuDNN calls: the first kk query frames against every
    key; the other frames against the first kk key frames, and each against itself (one
    batched call), those two merged by their log-sum-exps."""
    h, n, d = q.shape[1], q.shape[2], q.shape[3]
    r = kk * tpf
    t_rest = (n - r) // tpf

    def frames(x):  # (1, H, rest, d) -> (T-k, H, tpf, d)
        return x[:, :, r:].reshape(h, t_rest, tpf, d).transpose(0, 1)

    parts = []
    if r > 0:
        parts.append(F.scaled_dot_product_attention(q[:, :, :r], k, v))
    if t_rest > 0:
        o_d, lse_d = sdpa_lse(frames(q), frames(k), frames(v))
        o_d = o_d.transpose(0, 1).reshape(1, h, n - r, d)
        lse_d = lse_d.transpose(0, 1).reshape(1, h, n - r)
        if r > 0:
            o_r, lse_r = sdpa_lse(q[:, :, r:], k[:, :, :r], v[:, :, :r])
            lse = torch.logaddexp(lse_r, lse_d)
            o_d = (o_r * torch.exp(lse_r - lse).unsqueeze(-1).to(o_r.dtype) +
                   o_d * torch.exp(lse_d - lse).unsqueeze(-1).to(o_d.dtype))
        parts.append(o_d)
    return torch.cat(parts, dim=2)


def bench_decomposed(args, frames, ks):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    tpf = args.tokens_per_frame
    n = frames * tpf
    shape = (1, args.heads, n, args.head_dim)
    # the decomposition checked against one masked call on a small shape first
    t_s, n_s = 5, 5 * 96
    qs, ks_, vs = (torch.randn(1, 2, n_s, args.head_dim, device="cuda", dtype=torch.bfloat16)
                   for _ in range(3))
    fi = torch.arange(n_s, device="cuda") // 96
    for kk in ks:
        allowed = (fi[:, None] == fi[None, :]) | (fi[None, :] < kk) | (fi[:, None] < kk)
        ref = F.scaled_dot_product_attention(qs, ks_, vs, attn_mask=allowed)
        err = (tile_decomposed(qs, ks_, vs, kk, 96) - ref).abs().max().item()
        if err > 0.05:
            print(f"# torch-cudnn-decomposed: wrong result for k={kk} (max error {err})",
                  file=sys.stderr)
            return
    q, k, v = (torch.randn(shape, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    for kk in ks:
        try:
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
                ms, ms_min = time_cuda(lambda: tile_decomposed(q, k, v, kk, tpf), args.warmup,
                                       args.repeat)
        except RuntimeError as e:
            print(f"# torch-cudnn-decomposed: {e}".splitlines()[0], file=sys.stderr)
            continue
        emit(attention_record("torch-cudnn-decomposed", "tile", frames, tpf, args.heads,
                              args.head_dim, ms, ms_min, tile_kept(frames, kk) / frames**2,
                              args.repeat, k=min(kk, frames)))
    del q, k, v
    torch.cuda.empty_cache()


# ---- Open-Sora-Plan v1.2 DiT (the computation of docs/model-format.md) --------------

def rope_tables(t, h, w, head_dim, theta=10000.0, scale=(1.0, 1.5, 2.0)):
    """cos/sin (n, head_dim/2) of the 3D rotate-half RoPE, t outermost, x innermost."""
    c = head_dim // 3
    inv = theta ** (-torch.arange(0, c, 2, dtype=torch.float32) / c)
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w),
                                indexing="ij")
    angles = [pos.reshape(-1, 1).float() / s * inv for pos, s in zip((tt, yy, xx), scale)]
    ang = torch.cat(angles, dim=1)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):
    """x (b, heads, n, hd); chunks of hd/3 rotated by t, y, x."""
    b, hh, n, hd = x.shape
    c = hd // 3
    xs = x.view(b, hh, n, 3, 2, c // 2)
    a, bb = xs[..., 0, :], xs[..., 1, :]
    cs = cos.view(1, 1, n, 3, c // 2).to(x.dtype)
    sn = sin.view(1, 1, n, 3, c // 2).to(x.dtype)
    return torch.stack((a * cs - bb * sn, bb * cs + a * sn), dim=-2).view(b, hh, n, hd)


def attend(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v)
    w = torch.softmax((q @ k.transpose(-1, -2)).float() / math.sqrt(q.shape[-1]), dim=-1)
    return w.to(v.dtype) @ v


class Block(torch.nn.Module):
    def __init__(self, d, heads, ffn):
        super().__init__()
        self.heads = heads
        lin = torch.nn.Linear
        self.qkv1 = lin(d, 3 * d)  # to_q, to_k, to_v fused (same math)
        self.out1 = lin(d, d)
        self.q2, self.kv2, self.out2 = lin(d, d), lin(d, 2 * d), lin(d, d)
        self.ff1, self.ff2 = lin(d, ffn), lin(ffn, d)
        self.table = torch.nn.Parameter(torch.randn(6, d) / d**0.5)

    def split(self, x):
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def merge(self, x):
        b, hh, n, hd = x.shape
        return x.transpose(1, 2).reshape(b, n, hh * hd)

    def forward(self, x, c, t6, cos, sin):
        d = x.shape[-1]
        sh1, sc1, g1, sh2, sc2, g2 = (self.table[None] + t6.view(-1, 6, d)).chunk(6, dim=1)
        h = F.layer_norm(x, (d,), eps=1e-6) * (1 + sc1) + sh1
        q, k, v = (self.split(t) for t in self.qkv1(h).chunk(3, dim=-1))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        x = x + g1 * self.out1(self.merge(attend(q, k, v)))
        q = self.split(self.q2(x))
        k, v = (self.split(t) for t in self.kv2(c).chunk(2, dim=-1))
        x = x + self.out2(self.merge(attend(q, k, v)))
        h = F.layer_norm(x, (d,), eps=1e-6) * (1 + sc2) + sh2
        return x + g2 * self.ff2(F.gelu(self.ff1(h), approximate="tanh"))


class OSPDiT(torch.nn.Module):
    def __init__(self, d=2304, heads=24, depth=32, ffn=9216, text_dim=4096, channels=4,
                 patch=(1, 2, 2), freq_dim=256):
        super().__init__()
        self.d, self.patch, self.freq_dim = d, patch, freq_dim
        p = patch[0] * patch[1] * patch[2] * channels
        lin = torch.nn.Linear
        self.embed = lin(p, d)
        self.t1, self.t2, self.t6 = lin(freq_dim, d), lin(d, d), lin(d, 6 * d)
        self.cap1, self.cap2 = lin(text_dim, d), lin(d, d)
        self.blocks = torch.nn.ModuleList(Block(d, heads, ffn) for _ in range(depth))
        self.final_table = torch.nn.Parameter(torch.randn(2, d) / d**0.5)
        self.proj_out = lin(d, p)

    def forward(self, patches, text, tau, cos, sin):
        half = self.freq_dim // 2
        f = torch.exp(-math.log(10000.0) * torch.arange(half, device=tau.device) / half)
        emb = torch.cat([torch.cos(tau[:, None] * f), torch.sin(tau[:, None] * f)], dim=-1)
        e = self.t2(F.silu(self.t1(emb.to(patches.dtype))))
        t6 = self.t6(F.silu(e))
        c = self.cap2(F.gelu(self.cap1(text), approximate="tanh"))
        x = self.embed(patches)
        for blk in self.blocks:
            x = blk(x, c, t6, cos, sin)
        sh, sc = (self.final_table[None] + e[:, None]).chunk(2, dim=1)
        return self.proj_out(F.layer_norm(x, (self.d,), eps=1e-6) * (1 + sc) + sh)


def bench_step(args, frames, impl, b):
    """One OSP-1.2-shaped DiT forward of batch b, as eager PyTorch or under torch.compile
    (default mode; the compile time is left out: warm-up runs first)."""
    dev, dt = "cuda", torch.bfloat16
    h, w = args.grid
    model = OSPDiT(depth=args.depth).to(dev, dt).eval()
    fwd = torch.compile(model, dynamic=False) if impl == "compile" else model
    n = frames * h * w
    patches = torch.randn(b, n, 16, device=dev, dtype=dt)
    text = torch.randn(b, args.text_tokens, 4096, device=dev, dtype=dt)
    tau = torch.full((b,), 500.0, device=dev)
    cos, sin = (t.to(dev) for t in rope_tables(frames, h, w, 96))
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        ms, ms_min = time_cuda(lambda: fwd(patches, text, tau, cos, sin),
                               args.step_warmup + (1 if impl == "compile" else 0),
                               args.step_repeat)
    emit({"bench": "step", "impl": "torch-" + impl, "model": "osp12-720p-shape",
          "backend": "cuda", "attention": "full", "tokens": n, "frames": frames,
          "batch": b, "text_tokens": args.text_tokens, "depth": args.depth,
          "ms": round(ms, 3), "ms_min": round(ms_min, 3), "repeat": args.step_repeat,
          "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
          "torch": torch.__version__})
    del model, fwd, patches, text
    torch.cuda.empty_cache()


# ---- Open-Sora-Plan v1.2 CausalVideoVAE decode (train/osp/vae.py) -------------------

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def vae_decoder(cfg):
    """The decoder half of train/osp/vae.py's CausalVAE (what a generation runs), with
    PyTorch's default initialisation: the same distribution `vdit bench vae
    --random-weights` draws from."""
    sys.path.insert(0, os.path.join(ROOT, "train"))
    from osp import vae

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = vae.Decoder(cfg)
            self.post_quant_conv = vae.CausalConv3d(cfg["embed_dim"], cfg["z_channels"], 1)

    return vae, Decoder()


def count_flops(model):
    """Forward hooks adding up what `vdit bench vae` counts as gflop: every Conv3d's
    2 * cout * cin * kernel volume per output value and each frame attention's QK^T and
    PV (4 * (h w)^2 * c per frame). Returns (counter list, hook handles)."""
    total = [0.0]

    def conv(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * m.kernel_size[2]
        total[0] += 2.0 * out.numel() * m.in_channels // m.groups * k

    def attn(m, inp, out):
        b, c, t, h, w = inp[0].shape
        total[0] += 4.0 * b * t * (h * w) ** 2 * c

    handles = []
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv3d):
            handles.append(mod.register_forward_hook(conv))
        elif type(mod).__name__ == "AttnBlock3DFix":
            handles.append(mod.register_forward_hook(attn))
    return total, handles


def time_host(fn, warmup, repeat):
    """time_cuda's figures by the host clock (CPU runs)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], times[0]


def bench_vae(args):
    """The decode of `vdit bench vae --config CONFIG` on the same latent shapes: the
    sample script's temporal chunks and spatial tiles (vae.decode_tiled, the seams
    blended on the device) or --vae-whole. Warm-up decodes each chunk length not yet
    decoded in this precision (cuDNN's benchmark mode tunes each new shape there, and
    the FLOPs are counted there); the timed decodes take the latent on the device to the
    video tensor on the device."""
    with open(args.vae_config) as f:
        cfg = json.load(f)
    vae, model = vae_decoder(cfg)
    dev = args.device
    model = model.to(dev).eval()
    tiling = {k: cfg.get(k, v) for k, v in vae.TILING.items()}
    whole = args.vae_whole or cfg.get("use_tiling") is False
    height, width = (int(v) for v in args.vae_size.split("x"))
    h, w = height // 8, width // 8
    lat, lat_t = tiling["tile_latent_min_size"], tiling["tile_latent_min_size_t"]
    stride = int(lat * (1 - tiling["tile_overlap_factor"]))
    if dev == "cuda":
        torch.backends.cudnn.benchmark = True
    warmed, flops_of = set(), {}
    # precision outermost: the cheap bf16 lines come first should a time limit cut the run
    for prec in args.vae_precisions.split(","):
        if prec not in ("f32", "tf32", "bf16"):
            raise SystemExit(f"peers.py: unknown precision {prec!r} (f32, tf32 or bf16)")
        # f32: no TF32 anywhere, as ours; tf32: PyTorch's default for convolutions
        torch.backends.cudnn.allow_tf32 = prec == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = prec == "tf32"
        for frames in (int(v) for v in args.frames.split(",")):
            tiled = not whole and (w > lat or h > lat or frames > lat_t)
            spans = vae.temporal_chunks(frames, lat_t) if tiled else [[0, frames]]
            tiles = -(-h // stride) * -(-w // stride) if tiled else 1
            g = torch.Generator().manual_seed(1)
            z = (torch.rand(1, cfg["z_channels"], frames, h, w, generator=g) * 2 - 1).to(dev)

            def decode(zz):
                if whole:
                    return model.decoder(model.post_quant_conv(zz / vae.SCALING_FACTOR))
                return vae.decode_tiled(model, zz, tiling)

            autocast = torch.autocast(dev, dtype=torch.bfloat16, enabled=prec == "bf16")
            try:
                with torch.inference_mode(), autocast:
                    for n in sorted({e - s for s, e in spans}, reverse=True):
                        if (prec, n) in warmed or args.vae_warmup == 0:
                            continue
                        counter, hooks = count_flops(model)
                        for _ in range(args.vae_warmup):
                            counter[0] = 0.0
                            decode(z[:, :, :n])
                        for hk in hooks:
                            hk.remove()
                        flops_of[n] = counter[0]
                        warmed.add((prec, n))
                    if dev == "cuda":
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                    timer = time_cuda if dev == "cuda" else time_host
                    ms, ms_min = timer(lambda: decode(z), 0, args.vae_repeat)
            except RuntimeError as e:  # e.g. bf16 autocast without group_norm on old CPUs
                print(f"# torch-vae {prec}: {e}".splitlines()[0], file=sys.stderr)
                continue
            n_frames = 1 + 4 * (frames - 1)
            rec = {"bench": "vae", "impl": "torch-vae",
                   "model": os.path.basename(args.vae_config), "backend": dev,
                   "precision": prec, "latent_frames": frames,
                   "latent_height": h, "latent_width": w, "frames": n_frames,
                   "height": height, "width": width, "decode": "tiled" if tiled else "whole",
                   "chunks": len(spans), "tiles": tiles,
                   "timed": "latent on the device to the video tensor on the device"}
            if all(e - s in flops_of for s, e in spans):
                flops = sum(flops_of[e - s] for s, e in spans)
                rec.update(gflop=round(flops / 1e9, 3), tflops=round(flops / ms / 1e9, 4))
            rec.update(ms=round(ms, 3), ms_min=round(ms_min, 3),
                       ms_per_frame=round(ms / n_frames, 3), repeat=args.vae_repeat,
                       warmup=args.vae_warmup)
            if dev == "cuda":
                rec.update(peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 3),
                           cudnn_benchmark=True)
            rec["torch"] = torch.__version__
            emit(rec)
    del model
    if dev == "cuda":
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", default="8,24", help="latent frames T, comma-separated")
    ap.add_argument("--tokens-per-frame", type=int, default=3600)
    ap.add_argument("--heads", type=int, default=24)
    ap.add_argument("--head-dim", type=int, default=96)
    ap.add_argument("--tile-k", default=None,
                    help="tile masks k per T as T:k,k;... (default 8:1,2;24:3)")
    ap.add_argument("--adaptive-sparsity", type=float, default=0.8,
                    help="random block mask of this sparsity (FlexAttention); <0 skips")
    ap.add_argument("--adaptive-frames", type=int, default=8,
                    help="the T at which the adaptive mask runs")
    ap.add_argument("--flex-block", type=int, default=128)
    ap.add_argument("--no-attention", action="store_true")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--step", action="store_true", help="time the OSP-1.2 DiT step too")
    ap.add_argument("--batch", default="1", help="DiT step batches, comma-separated (2 = CFG pair)")
    ap.add_argument("--step-impls", default="eager",
                    help="eager and/or compile (torch.compile), comma-separated")
    ap.add_argument("--text-tokens", type=int, default=512)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--grid", default="45x80", help="tokens per latent frame as HxW")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--step-warmup", type=int, default=1)
    ap.add_argument("--step-repeat", type=int, default=3)
    ap.add_argument("--vae", action="store_true",
                    help="time the CausalVideoVAE decode of --frames latent frames too")
    ap.add_argument("--vae-config",
                    default=os.path.join(ROOT, "tools", "bench", "osp12-vae.json"),
                    help="the VAE's config.json (default Open-Sora-Plan v1.2's)")
    ap.add_argument("--vae-size", default="720x1280", help="video HxW, multiples of 8")
    ap.add_argument("--vae-precisions", default="f32,bf16",
                    help="f32 (no TF32), tf32 and/or bf16 (autocast), comma-separated")
    ap.add_argument("--vae-whole", action="store_true",
                    help="decode in one piece, without the config's chunks and tiles")
    ap.add_argument("--vae-warmup", type=int, default=1)
    ap.add_argument("--vae-repeat", type=int, default=3)
    ap.add_argument("--device", default="cuda",
                    help="cuda, or cpu for the VAE decode alone (a check at tiny sizes)")
    args = ap.parse_args()
    args.grid = tuple(int(v) for v in args.grid.split("x"))
    if args.adaptive_sparsity is not None and args.adaptive_sparsity < 0:
        args.adaptive_sparsity = None
    tile_k = {8: [1, 2], 24: [3]}
    if args.tile_k:
        tile_k = {int(t): [int(x) for x in ks.split(",")]
                  for t, ks in (item.split(":") for item in args.tile_k.split(";"))}
    if args.device == "cpu":
        if not args.vae or not args.no_attention or args.step:
            print("peers.py: only --vae --no-attention runs on the CPU", file=sys.stderr)
            return 2
        bench_vae(args)
        return 0
    if not torch.cuda.is_available():
        print("peers.py: no CUDA device", file=sys.stderr)
        return 77
    frames_list = [int(f) for f in args.frames.split(",")]
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}", file=sys.stderr)
    for frames in frames_list:
        if not args.no_attention:
            bench_sdpa(args, frames)
            bench_decomposed(args, frames, tile_k.get(frames, [1]))
            if not args.no_flex:
                bench_flex(args, frames, tile_k.get(frames, [1]))
        if args.step:
            for impl in args.step_impls.split(","):
                for b in (int(v) for v in args.batch.split(",")):
                    bench_step(args, frames, impl, b)
    if args.vae:
        bench_vae(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
