#!/usr/bin/python3
"""Goldens of a shrunken Open-Sora-Plan v1.2 checkpoint in the published layout, computed
by the PyTorch references written from the published architecture (train/osp/model.py,
train/osp/mt5.py, train/osp/scheduler.py) on the published files, for
tests/test_osp_model.c to compare the converted model against:

    text.ids, text.output        mT5 encoder on 7 token ids (run padded to 10 with a mask)
    dit.latent, dit.text, dit.timestep, dit.output
                                 one transformer call: latent (T, H, W, C), caption
                                 embeddings (5 tokens; the reference pads them to 8 with
                                 OSP's −10000 mask bias), the fractional timestep of step 1
                                 of 100
    sample.noise, sample.cond, sample.uncond, sample.output
                                 a 2-step guided sample (guidance 7.5, batch
                                 [negative, positive]) with the given noise
    vae.tiled.params, vae.tiled.latent, vae.tiled.video
                                 (with --with-vae) the tiled decode of the sample script
                                 with small tiles (params: latent tile 8, sample tile 64,
                                 chunks of 2 latent frames, overlap 1/8): 2 × 2 spatial
                                 tiles, 2 temporal chunks
    e2e.latent, e2e.video        (with --with-vae) a whole generation as Open-Sora-Plan's
                                 pipeline runs it: prompt "a red ball moves left",
                                 negative "blurry" (tokens padded to 16 with masks), seed 3
                                 (the engine's Philox noise), 2 steps, guidance 7.5, 9
                                 frames: the final latent (T, H, W, C) and the decoded
                                 video (F, H, W, 3) before its 8-bit conversion
    vae.latent2, vae.video2, vae.latent3, vae.video3
                                 the CausalVideoVAE decoding 2 and 3 latent frames
                                 (5 and 9 video frames, (F, H, W, 3), in [−1, 1]
                                 unclamped): the causal padding at the clip's start;
                                 only with --with-vae (these take the CPU ~20 s)

Latents are stored channels-last (T, H, W, C), the engine's layout.

    /usr/bin/python3 train/make_osp_goldens.py OSP_DIR OUT.safetensors [--with-vae]
"""

import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from osp import model, mt5, scheduler, st_stream, vae  # noqa: E402
from vdit_torch import philox, safetensors_io  # noqa: E402

E2E_PROMPT, E2E_NEGATIVE, E2E_SEED, E2E_STEPS, E2E_GUIDANCE = \
    "a red ball moves left", "blurry", 3, 2, 7.5


def e2e(osp_dir, dit, msd, mcfg, v, shape):
    """A generation through the references: tokens (SentencePiece ids + EOS, padded), the
    mT5 encoder, [negative, positive] guided DiT calls, Euler ancestral with the engine's
    noise streams (0: the initial latent, 1 + k: after step k), the VAE."""
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=os.path.join(osp_dir, "mt5-xxl", "spiece.model"))
    pad = 16

    def text(prompt):
        ids = sp.encode(prompt) + [1]
        mask = torch.tensor([[1] * len(ids) + [0] * (pad - len(ids))])
        ids = torch.tensor([ids + [0] * (pad - len(ids))])
        return mt5.encode(msd, mcfg, ids, mask), mask

    cond, cmask = text(E2E_PROMPT)
    uncond, umask = text(E2E_NEGATIVE)
    T, H, W, C = shape

    def noise(stream):  # (T, H, W, C) row-major → [1, C, T, H, W]
        n = torch.from_numpy(philox.normals_like((T, H, W, C), E2E_SEED, stream))
        return n.permute(3, 0, 1, 2)[None]

    s = scheduler.EulerAncestral(E2E_STEPS)
    x = noise(0) * s.init_noise_sigma
    for k in range(E2E_STEPS):
        x_in = s.scale_model_input(x, k)
        out = dit(torch.cat([x_in, x_in]), torch.full((2,), float(s.timesteps[k])),
                  torch.cat([uncond, cond]), torch.cat([umask, cmask]))
        u, c = out.chunk(2)
        x = s.step(k, u + E2E_GUIDANCE * (c - u), x, noise(1 + k))
    return channels_last(x), channels_last(v.decode(x))


def load_state(path):
    header, _, _ = st_stream.read_header(path)
    return {n: torch.from_numpy(st_stream.read_tensor(path, n).copy()) for n in header}


def channels_last(x):
    """[1, C, T, H, W] → [T, H, W, C]."""
    return x[0].permute(1, 2, 3, 0).contiguous()


def main():
    osp_dir, out = sys.argv[1], sys.argv[2]
    tdir = next(os.path.join(osp_dir, d) for d in sorted(os.listdir(osp_dir))
                if os.path.isfile(os.path.join(osp_dir, d, "diffusion_pytorch_model.safetensors")))
    with open(os.path.join(tdir, "config.json")) as f:
        tcfg = model.OspConfig.from_published(json.load(f))
    dit = model.OpenSoraT2V(tcfg)
    dit.load_state_dict(load_state(os.path.join(tdir, "diffusion_pytorch_model.safetensors")))
    dit.eval()
    with open(os.path.join(osp_dir, "mt5-xxl", "config.json")) as f:
        mcfg = json.load(f)
    msd = load_state(os.path.join(osp_dir, "mt5-xxl", "model.safetensors"))

    g = torch.Generator().manual_seed(2312)
    t = {}
    with torch.no_grad():
        ids = torch.tensor([[5, 17, 42, 99, 3, 150, 1, 0, 0, 0]])
        mask = torch.tensor([[1] * 7 + [0] * 3])
        t["text.ids"] = ids[0, :7].float()
        t["text.output"] = mt5.encode(msd, mcfg, ids, mask)[0, :7]

        T, H, W = tcfg.sample_size_t, tcfg.sample_size[0], tcfg.sample_size[1]
        C, E = tcfg.in_channels, tcfg.caption_channels
        latent = torch.randn(1, C, T, H, W, generator=g)
        text = torch.zeros(1, 8, E)
        text[0, :5] = torch.randn(5, E, generator=g)
        text[0, 5:] = 3.0  # padding the mask must hide
        text_mask = torch.tensor([[1] * 5 + [0] * 3])
        tau = scheduler.EulerAncestral(100).timesteps[1]
        t["dit.latent"] = channels_last(latent)
        t["dit.text"] = text[0, :5]
        t["dit.timestep"] = tau.reshape(1)
        t["dit.output"] = channels_last(dit(latent, tau.reshape(1), text, text_mask))

        steps, guidance = 2, 7.5
        s = scheduler.EulerAncestral(steps)
        cond, uncond = torch.randn(1, 5, E, generator=g), torch.randn(1, 5, E, generator=g)
        ones = torch.ones(1, 5)
        noise = torch.randn(steps + 1, 1, C, T, H, W, generator=g)

        def guided(x_in, tau):
            batch = torch.cat([x_in, x_in])
            out = dit(batch, torch.full((2,), float(tau)), torch.cat([uncond, cond]),
                      torch.cat([ones, ones]))
            u, c = out.chunk(2)
            return u + guidance * (c - u)

        x = noise[0] * s.init_noise_sigma
        for k in range(steps):
            eps = guided(s.scale_model_input(x, k), s.timesteps[k])
            x = s.step(k, eps, x, noise[k + 1])
        t["sample.noise"] = torch.stack([channels_last(n) for n in noise])
        t["sample.cond"] = cond[0]
        t["sample.uncond"] = uncond[0]
        t["sample.output"] = channels_last(x)

        if "--with-vae" in sys.argv[3:]:
            with open(os.path.join(osp_dir, "vae", "config.json")) as f:
                vcfg = json.load(f)
            v = vae.CausalVAE(vcfg)
            ckpt = torch.load(os.path.join(osp_dir, "vae", "checkpoint.ckpt"),
                              map_location="cpu", weights_only=True)
            v.load_state_dict(ckpt["state_dict"])
            v.eval()
            for frames in (2, 3):
                z = torch.randn(1, C, frames, H, W, generator=g)
                t[f"vae.latent{frames}"] = channels_last(z)
                t[f"vae.video{frames}"] = channels_last(v.decode(z))
            tiling = {"tile_latent_min_size": 8, "tile_sample_min_size": 64,
                      "tile_latent_min_size_t": 2, "tile_overlap_factor": 0.125}
            z = torch.randn(1, C, 3, H, W, generator=g)
            t["vae.tiled.params"] = torch.tensor([8.0, 64.0, 2.0, 0.125])
            t["vae.tiled.latent"] = channels_last(z)
            t["vae.tiled.video"] = channels_last(vae.decode_tiled(v, z, tiling))
            t["e2e.latent"], t["e2e.video"] = e2e(osp_dir, dit, msd, mcfg, v, (T, H, W, C))
    safetensors_io.save(out, t)


if __name__ == "__main__":
    main()
