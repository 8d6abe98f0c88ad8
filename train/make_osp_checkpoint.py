#!/usr/bin/python3
"""Writes a random-weight Open-Sora-Plan v1.2 checkpoint in the published layout
(train/osp/layout.py has the names, shapes and configs):

    OUT/29x720p/config.json, OUT/29x720p/diffusion_pytorch_model.safetensors   (F32)
    OUT/mt5-xxl/config.json, OUT/mt5-xxl/model.safetensors, OUT/mt5-xxl/spiece.model
    OUT/vae/config.json, OUT/vae/checkpoint.ckpt                                (a pickle)

    /usr/bin/python3 train/make_osp_checkpoint.py --size tiny OUT
    /usr/bin/python3 train/make_osp_checkpoint.py --size full --parts transformer OUT

`tiny` builds the reference model (train/osp/model.py) from --seed and saves its
state_dict, so its names are checked against the layout table; `full` streams normal
noise (std 0.02) tensor by tensor without holding the model (11.1 GB of F32). The
tokenizer is a stand-in SentencePiece model (models/tiny's): google/mt5-xxl's own
spiece.model cannot be downloaded here."""

import argparse
import collections
import concurrent.futures
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from osp import layout, st_stream  # noqa: E402

_WORKERS = os.cpu_count() or 1
_POOL = concurrent.futures.ThreadPoolExecutor(_WORKERS)


def _chunks_of(array):
    flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)

    def chunks():
        for i in range(0, flat.size, st_stream.CHUNK_ELEMS):
            yield flat[i:i + st_stream.CHUNK_ELEMS]
    return chunks


def _noise_chunk(seed, i, n, std):
    a = np.random.default_rng((seed, i)).standard_normal(n, dtype=np.float32)
    a *= np.float32(std)
    return a


def _noise(shape, seed, std):
    """Chunk i of the tensor from its own stream (seed, i), drawn on every core a few
    chunks ahead of the writer (numpy's generators let go of the GIL while they fill)."""
    def chunks():
        total = int(np.prod(shape, dtype=np.int64))
        sizes = [min(st_stream.CHUNK_ELEMS, total - o)
                 for o in range(0, total, st_stream.CHUNK_ELEMS)]
        ahead = collections.deque()
        for i, n in enumerate(sizes):
            ahead.append(_POOL.submit(_noise_chunk, seed, i, n, std))
            if len(ahead) > 2 * _WORKERS:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()
    return chunks


def tiny_transformer_state(seed):
    import torch
    from osp import model
    torch.manual_seed(seed)
    cfg = model.OspConfig.from_published(layout.transformer_config_json(layout.TINY_TRANSFORMER))
    m = model.OpenSoraT2V(cfg)
    sd = {k: v.detach().numpy() for k, v in m.state_dict().items()}
    # PyTorch's default init leaves attention nearly uniform, where position and mask
    # errors hardly show: sharper queries and keys make the goldens sensitive to them
    for k in sd:
        if k.endswith(("to_q.weight", "to_k.weight")):
            sd[k] = sd[k] * np.float32(4.0)
    want = layout.transformer_shapes(layout.TINY_TRANSFORMER)
    got = {k: list(v.shape) for k, v in sd.items()}
    if got != want:
        raise SystemExit(f"reference model and layout table disagree: {set(got) ^ set(want)}")
    return sd


def tiny_mt5_state(seed):
    """Scaled so that activations stay O(1) through the blocks, as trained T5s do."""
    rng = np.random.default_rng(seed)
    sd = {}
    for name, shape in layout.mt5_encoder_shapes(layout.TINY_MT5).items():
        if name.endswith("layer_norm.weight"):
            sd[name] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif name == "shared.weight" or "relative_attention_bias" in name:
            sd[name] = rng.standard_normal(shape).astype(np.float32)
        else:
            sd[name] = (rng.standard_normal(shape) / np.sqrt(shape[1])).astype(np.float32)
    return sd


def write_transformer(out, size, seed):
    t = layout.TINY_TRANSFORMER if size == "tiny" else layout.FULL_TRANSFORMER
    frames = 1 + 4 * (t["sample_size_t"] - 1)
    height = t["sample_size"][0] * 8
    folder = os.path.join(out, f"{frames}x{height}p")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(layout.transformer_config_json(t), f, indent=2, sort_keys=True)
    shapes = layout.transformer_shapes(t)
    if size == "tiny":
        sd = tiny_transformer_state(seed)
        entries = [(n, "F32", shapes[n], _chunks_of(sd[n])) for n in sorted(shapes)]
    else:
        entries = [(n, "F32", shapes[n], _noise(shapes[n], seed + i, 0.02))
                   for i, n in enumerate(sorted(shapes))]
    st_stream.write(os.path.join(folder, "diffusion_pytorch_model.safetensors"), entries,
                    {"format": "pt"})
    return folder


def write_text_encoder(out, size, seed, layers=None):
    m = layout.TINY_MT5 if size == "tiny" else layout.FULL_MT5
    if layers:
        m = dict(m, num_layers=layers)
    folder = os.path.join(out, "mt5-xxl")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(layout.mt5_config_json(m), f, indent=2, sort_keys=True)
    shapes = layout.mt5_encoder_shapes(m)
    if size == "tiny":
        sd = tiny_mt5_state(seed)
        entries = [(n, "F32", shapes[n], _chunks_of(sd[n])) for n in sorted(shapes)]
    else:
        entries = [(n, "F32", shapes[n], _noise(shapes[n], seed + 1000 + i, 0.02))
                   for i, n in enumerate(sorted(shapes))]
    st_stream.write(os.path.join(folder, "model.safetensors"), entries, {"format": "pt"})
    shutil.copyfile(os.path.join(os.path.dirname(HERE), "models", "tiny", "tokenizer.model"),
                    os.path.join(folder, "spiece.model"))
    return folder


def write_vae(out, size, seed):
    """vae/config.json + vae/checkpoint.ckpt: a torch pickle {"state_dict": {name: f32}}
    of CausalVAEModel (encoder, decoder, quant convs), as OSP's init_from_ckpt reads."""
    import torch
    from osp import vae
    cfg = vae.TINY_VAE_CONFIG if size == "tiny" else vae.VAE_CONFIG
    folder = os.path.join(out, "vae")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    torch.manual_seed(seed + 7)
    model = vae.CausalVAE(cfg)
    torch.save({"state_dict": model.state_dict()}, os.path.join(folder, "checkpoint.ckpt"))
    return folder


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--parts", default="transformer,text_encoder,vae")
    ap.add_argument("--seed", type=int, default=23)
    ap.add_argument("--text-layers", type=int,
                    help="fewer mT5 blocks than the published 24 (to save disk: each is 0.77 GB)")
    a = ap.parse_args()
    parts = a.parts.split(",")
    if "transformer" in parts:
        print(write_transformer(a.out, a.size, a.seed))
    if "text_encoder" in parts:
        print(write_text_encoder(a.out, a.size, a.seed, a.text_layers))
    if "vae" in parts:
        print(write_vae(a.out, a.size, a.seed))


if __name__ == "__main__":
    main()
