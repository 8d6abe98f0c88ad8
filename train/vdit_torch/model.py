"""A whole vdit model: config, tokenizer, text encoder and DiT; load/save a model directory.

Tensor names of a model directory: `text_encoder.` + the TextEncoder's state_dict keys,
and the DiT's state_dict keys as they are (docs/model-format.md, Tensor names).
"""

import glob
import math
import os
from collections import OrderedDict

import torch
from torch import nn

from . import config as config_mod
from . import safetensors_io, samplers
from .dit import DiT
from .text_encoder import TextEncoder
from .tokenize import Tokenizer

TEXT_PREFIX = "text_encoder."


def expected_shapes(cfg):
    """OrderedDict name → shape of every tensor the config implies (the format's table)."""
    t, d = cfg.text_encoder, cfg.dit
    E, I, G = t.d_model, t.n_heads * t.d_kv, t.d_ff
    D, F, C = d.hidden, d.ffn_hidden, d.in_channels
    s = OrderedDict()
    p = "text_encoder."
    s[p + "shared.weight"] = (t.vocab_size, E)
    for i in range(t.n_layers):
        b = f"{p}encoder.block.{i}.layer."
        s[b + "0.layer_norm.weight"] = (E,)
        for n in "qkv":
            s[b + f"0.SelfAttention.{n}.weight"] = (I, E)
        s[b + "0.SelfAttention.o.weight"] = (E, I)
        if i == 0:
            s[b + "0.SelfAttention.relative_attention_bias.weight"] = (t.rel_buckets, t.n_heads)
        s[b + "1.layer_norm.weight"] = (E,)
        s[b + "1.DenseReluDense.wi_0.weight"] = (G, E)
        s[b + "1.DenseReluDense.wi_1.weight"] = (G, E)
        s[b + "1.DenseReluDense.wo.weight"] = (E, G)
    s[p + "encoder.final_layer_norm.weight"] = (E,)

    def linear(name, n_out, n_in):
        s[name + ".weight"] = (n_out, n_in)
        s[name + ".bias"] = (n_out,)

    s["pos_embed.proj.weight"] = (D, C, *d.patch)
    s["pos_embed.proj.bias"] = (D,)
    linear("adaln_single.emb.timestep_embedder.linear_1", D, d.freq_dim)
    linear("adaln_single.emb.timestep_embedder.linear_2", D, D)
    linear("adaln_single.linear", 6 * D, D)
    linear("caption_projection.linear_1", D, E)
    linear("caption_projection.linear_2", D, D)
    for i in range(d.depth):
        b = f"transformer_blocks.{i}."
        s[b + "scale_shift_table"] = (6, D)
        for a in ("attn1", "attn2"):
            for n in ("to_q", "to_k", "to_v", "to_out.0"):
                linear(f"{b}{a}.{n}", D, D)
        linear(b + "ff.net.0.proj", F, D)
        linear(b + "ff.net.2", D, F)
    s["scale_shift_table"] = (2, D)
    linear("proj_out", d.patch_size * C, D)
    return s


class VditModel(nn.Module):
    def __init__(self, cfg, tokenizer=None):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.text_encoder = TextEncoder(cfg.text_encoder)
        self.dit = DiT(cfg.dit, cfg.text_encoder.d_model)

    # ---- weights in the format's names ----

    def format_state_dict(self):
        sd = OrderedDict()
        for k, v in self.text_encoder.state_dict().items():
            sd[TEXT_PREFIX + k] = v
        for k, v in self.dit.state_dict().items():
            sd[k] = v
        return sd

    def load_format_state_dict(self, tensors, origin="weights"):
        """Copies {name: tensor}; the set of names and every shape must be exactly the
        config's."""
        want = expected_shapes(self.cfg)
        for name in want:
            if name not in tensors:
                raise ValueError(f"{origin}: missing tensor {name}")
        for name, t in tensors.items():
            if name not in want:
                raise ValueError(f"{origin}: unexpected tensor {name}")
            if tuple(t.shape) != tuple(want[name]):
                raise ValueError(f"{origin}: tensor {name} has shape {list(t.shape)}, "
                                 f"expected {list(want[name])}")
        text = {k[len(TEXT_PREFIX):]: v for k, v in tensors.items() if k.startswith(TEXT_PREFIX)}
        dit = {k: v for k, v in tensors.items() if not k.startswith(TEXT_PREFIX)}
        self.text_encoder.load_state_dict({k: v.to(torch.float32) for k, v in text.items()})
        self.dit.load_state_dict({k: v.to(torch.float32) for k, v in dit.items()})

    @classmethod
    def from_config(cls, cfg, seed=0, tokenizer=None):
        """Random initialisation for training: T5-style normal init for the text encoder,
        Xavier for DiT linears, zero adaLN modulation and output projection (PixArt)."""
        model = cls(cfg, tokenizer)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.text_encoder.named_parameters():
                if name.endswith("layer_norm.weight"):
                    p.fill_(1.0)
                else:
                    p.normal_(0.0, 1.0 / math.sqrt(p.shape[-1]), generator=g)
            for name, p in model.dit.named_parameters():
                if name.endswith("bias"):
                    p.zero_()
                elif p.dim() >= 2 and "scale_shift_table" not in name:
                    fan_out, fan_in = p.shape[0], p[0].numel()
                    bound = math.sqrt(6.0 / (fan_in + fan_out))
                    p.uniform_(-bound, bound, generator=g)
                else:
                    p.normal_(0.0, 1.0 / math.sqrt(cfg.dit.hidden), generator=g)
            model.dit.adaln_single.linear.weight.zero_()
            model.dit.proj_out.weight.zero_()
        return model

    @classmethod
    def from_dir(cls, path):
        """Loads config.json, every *.safetensors (names unique across files) and
        tokenizer.model (if present); weights are the stored values converted to f32."""
        cfg = config_mod.load(os.path.join(path, "config.json"))
        tok_path = os.path.join(path, "tokenizer.model")
        tok = Tokenizer(tok_path, cfg.text_encoder.max_tokens) if os.path.exists(tok_path) \
            else None
        tensors, origins = {}, {}
        files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
        if not files:
            raise ValueError(f"{path}: no .safetensors file")
        for f in files:
            t, _ = safetensors_io.load(f)
            for k, v in t.items():
                if k in tensors:
                    raise ValueError(f"{f}: tensor {k} also in {origins[k]}")
                tensors[k], origins[k] = v, f
        model = cls(cfg, tok)
        model.load_format_state_dict(tensors, origin=path)
        model.eval()
        return model

    def save_dir(self, path, dtype_of=lambda name: "F32", metadata=None):
        """Writes config.json and model.safetensors (not the tokenizer)."""
        os.makedirs(path, exist_ok=True)
        config_mod.save(self.cfg, os.path.join(path, "config.json"))
        sd = self.format_state_dict()
        safetensors_io.save(os.path.join(path, "model.safetensors"), sd,
                            dtypes={k: dtype_of(k) for k in sd}, metadata=metadata)

    # ---- inference ----

    def tokens(self, prompt, negative=False):
        if self.tokenizer is None:
            raise ValueError("model has no tokenizer")
        return self.tokenizer.encode_negative(prompt) if negative \
            else self.tokenizer.encode(prompt)

    @torch.no_grad()
    def encode_text(self, ids):
        return self.text_encoder(torch.tensor(ids, dtype=torch.long))

    @torch.no_grad()
    def generate(self, prompt, negative_prompt="", seed=0, frames=None, sampler=None,
                 steps=None, guidance=None):
        """The final latent [T, H, W, C] for a prompt, as the engine computes it."""
        scfg = sampler or self.cfg.sampler
        if steps is not None or guidance is not None:
            from dataclasses import replace
            scfg = replace(scfg, steps=steps or scfg.steps,
                           guidance=scfg.guidance if guidance is None else guidance)
        cond = self.encode_text(self.tokens(prompt))
        uncond = self.encode_text(self.tokens(negative_prompt, negative=True))
        guided = samplers.Guided(self.dit, cond, uncond, scfg.guidance)
        shape = self.cfg.latent_shape(frames)
        if shape[0] % self.cfg.dit.patch[0]:
            raise ValueError(f"{shape[0]} latent frames not divisible by the temporal patch "
                             f"{self.cfg.dit.patch[0]}")
        return samplers.sample(guided, shape, seed, scfg)
