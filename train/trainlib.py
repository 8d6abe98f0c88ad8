"""What every training stage shares: the run config, the model it implies, batched text,
flow-matching pieces, EMA, the learning-rate schedule, checkpoints and the progress log.

A run lives in one directory (train/runs/NAME by default):
    run.json               the run config used (copied on the first start)
    tokenizer.model        SentencePiece model of the grammar
    log.txt                progress of every stage, appended
    <stage>/ckpt.pt        latest checkpoint of a stage (resume point)
    <stage>/done.json      written when a stage finished, with its results
"""

import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from vdit_torch import config as config_mod  # noqa: E402
from vdit_torch.model import VditModel  # noqa: E402
from vdit_torch.tokenize import Tokenizer  # noqa: E402

import synthvideo as sv  # noqa: E402


# ---------------------------------------------------------------- run config

def load_run_config(path):
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg.setdefault("threads", 2)
    cfg.setdefault("seed", 1)
    return cfg


def model_config(run, vocab_size, steps=None, guidance=None, attention=None):
    """The vdit ModelConfig of a run (docs/model-format.md)."""
    v, te, d, s = run["video"], run["text_encoder"], run["dit"], run["sampler"]
    return config_mod.from_dict({
        "format": "vdit", "version": 1, "name": run["name"],
        "video": dict(v),
        "decoder": {"type": "identity", "channels": 3},
        "text_encoder": {"vocab_size": vocab_size, "d_model": te["d_model"],
                         "n_layers": te["n_layers"], "n_heads": te["n_heads"],
                         "d_kv": te["d_kv"], "d_ff": te["d_ff"],
                         "rel_buckets": te.get("rel_buckets", 32),
                         "rel_max_distance": te.get("rel_max_distance", 64),
                         "max_tokens": te.get("max_tokens", 32), "eps": 1e-6},
        "dit": {"hidden": d["hidden"], "depth": d["depth"], "heads": d["heads"],
                "head_dim": d["hidden"] // d["heads"], "patch": d["patch"],
                "in_channels": 3, "ffn_hidden": d["ffn_hidden"],
                "freq_dim": d.get("freq_dim", 128), "rope_theta": d.get("rope_theta", 100.0),
                "rope_scale": [1.0, 1.0, 1.0], "eps": 1e-6},
        "sampler": {"type": "flow_euler", "prediction": "flow",
                    "steps": steps or s["steps"],
                    "guidance": s["guidance"] if guidance is None else guidance,
                    "shift": s.get("shift", 1.0)},
        "attention": attention or {"mode": "full", "tile_k": 1},
    })


def prepare_run(run_cfg_path, run_dir):
    """Creates the run directory (config copy, tokenizer) or checks it matches."""
    os.makedirs(run_dir, exist_ok=True)
    run = load_run_config(run_cfg_path)
    saved = os.path.join(run_dir, "run.json")
    if os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            old = json.load(f)
        for key in ("video", "text_encoder", "dit", "tokenizer"):
            if old.get(key) != run.get(key):
                raise SystemExit(f"{run_dir}: run.json differs from {run_cfg_path} in "
                                 f"'{key}'; use another --run-dir")
    with open(saved, "w", encoding="utf-8") as f:
        json.dump(run, f, indent=1)
    tok = os.path.join(run_dir, "tokenizer.model")
    if not os.path.exists(tok):
        sv.train_tokenizer(tok, run.get("tokenizer", {}).get("vocab_size", 64))
    return run


def tokenizer_of(run, run_dir):
    return Tokenizer(os.path.join(run_dir, "tokenizer.model"),
                     run["text_encoder"].get("max_tokens", 32))


def new_model(run, run_dir, seed=0):
    tok = tokenizer_of(run, run_dir)
    cfg = model_config(run, tok.vocab_size)
    return VditModel.from_config(cfg, seed=seed, tokenizer=tok)


# ---------------------------------------------------------------- text

class TextBatcher:
    """Prompts → padded ids [B, L] and mask [B, L] (True = real token).  The empty prompt
    is the engine's unconditional input [EOS].  Padding at the end with a key mask gives
    each real token exactly the values of the engine's unpadded computation."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.cache = {}

    def ids(self, prompt):
        if prompt not in self.cache:
            self.cache[prompt] = self.tok.encode_negative("") if prompt == "" \
                else self.tok.encode(prompt)
        return self.cache[prompt]

    def __call__(self, prompts):
        seqs = [self.ids(p) for p in prompts]
        L = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), L, dtype=torch.long)
        mask = torch.zeros(len(seqs), L, dtype=torch.bool)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = True
        return ids, mask


def velocity(model, x, t, ids, mask, self_masks=None, hidden=None):
    """Model output v for latents x [B, T, H, W, C] at flow times t [B] (τ = 1000·t)."""
    text = model.text_encoder(ids, mask)
    return model.dit(x, 1000.0 * t, text, mask, self_masks=self_masks, hidden=hidden)


def guided_velocity(model, x, t, ids, mask, uids, umask, guidance, self_masks=None):
    """u + g·(c − u), both passes in one batch."""
    if guidance <= 1.0:
        return velocity(model, x, t, ids, mask, self_masks)
    L = max(ids.shape[1], uids.shape[1])

    def pad(a, n):
        return torch.nn.functional.pad(a, (0, n - a.shape[1]))
    both_ids = torch.cat([pad(ids, L), pad(uids, L)])
    both_mask = torch.cat([pad(mask, L), pad(umask, L)])
    v = velocity(model, torch.cat([x, x]), torch.cat([t, t]), both_ids, both_mask, self_masks)
    c, u = v.chunk(2)
    return u + guidance * (c - u)


def sample_times(rng, n, mean, std, uniform_frac):
    """Logit-normal flow times (mean > 0 leans towards noise, where layout and motion are
    decided), a fraction drawn uniformly so that no time is starved."""
    t = 1.0 / (1.0 + np.exp(-(mean + std * rng.standard_normal(n))))
    u = rng.random(n)
    t = np.where(rng.random(n) < uniform_frac, u, t)
    return torch.from_numpy(np.clip(t, 1e-4, 1.0).astype(np.float32))


def flow_times(steps, shift=1.0):
    t = [1.0 - k / steps for k in range(steps + 1)]
    return [shift * v / (1.0 + (shift - 1.0) * v) for v in t]


@torch.no_grad()
def sample(model, prompts, batcher, steps, guidance, seed=0, shape=None, shift=1.0,
           self_masks=None, noise=None):
    """flow_euler with guidance for a list of prompts → latents [B, T, H, W, C]."""
    ids, mask = batcher(prompts)
    uids, umask = batcher([""] * len(prompts))
    if noise is None:
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn((len(prompts),) + tuple(shape), generator=g)
    x = noise
    ts = flow_times(steps, shift)
    for k in range(steps):
        t = torch.full((len(prompts),), ts[k])
        x = x + (ts[k + 1] - ts[k]) * guided_velocity(model, x, t, ids, mask, uids, umask,
                                                      guidance, self_masks)
    return x


# ---------------------------------------------------------------- optimisation

class EMA:
    """Exponential moving average of a model's parameters (and buffers copied)."""

    def __init__(self, model, decay):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model, step):
        d = min(self.decay, (1.0 + step) / (10.0 + step))
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1.0 - d)


def make_optimizer(model, lr, weight_decay):
    """AdamW; no decay on biases, norms, embeddings' scale tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and "scale_shift_table" not in name else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.99), eps=1e-8)


def lr_at(step, total, peak, warmup, min_frac):
    """Linear warm-up, then cosine decay to min_frac · peak at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * p)))


# ---------------------------------------------------------------- checkpoints, log

def save_atomic(obj, path):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_if_exists(path):
    if os.path.exists(path):
        return torch.load(path, map_location="cpu")
    return None


class Log:
    """Appends timestamped lines to run_dir/log.txt and echoes them."""

    def __init__(self, run_dir, stage, quiet=False):
        self.path = os.path.join(run_dir, "log.txt")
        self.stage, self.quiet = stage, quiet

    def __call__(self, msg):
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{self.stage}] {msg}"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if not self.quiet:
            print(line, flush=True)


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def rng_state(rng):
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state()}


def set_rng_state(rng, state):
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(state["torch"])


def set_threads(run):
    torch.set_num_threads(int(run.get("threads", 2)))
