#!/usr/bin/python3
"""Makes models/tiny (a small random-weight model in the vdit format) and
tests/data/golden.safetensors (reference outputs of train/vdit_torch for the engine's
parity tests).  Deterministic: running it twice gives byte-identical files.

    /usr/bin/python3 train/make_tiny_model.py [--model-dir DIR] [--golden FILE]
"""

import argparse
import os
import shutil
import sys
import tempfile
from dataclasses import replace

import numpy as np
import sentencepiece as spm
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vdit_torch import config, philox, safetensors_io, samplers  # noqa: E402
from vdit_torch.model import VditModel, expected_shapes  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHT_SEED = 20241123

SENTENCES = """a red circle moving left on a gray background
a green square moving right on a black background
a blue triangle moving up on a white background
a yellow star moving down on a dark background
a purple ring spinning slowly on a gray background
an orange circle bouncing quickly on a striped background
a pink square growing on a checkered background
a cyan triangle shrinking on a black background
a brown star sliding left on a white background
a white ring rolling right on a dark background
a small red square drifting up on a gray background
a large green circle falling down on a blue background
a tiny blue star rotating clockwise on a yellow background
a big yellow triangle rotating counterclockwise on a purple background
two red circles moving apart on a gray background
three green squares moving together on a black background
a purple circle fading in on a white background
an orange square fading out on a dark background
a pink triangle zigzagging across a striped background
a cyan ring orbiting the center of a gray background
a bright red star pulsing on a black background
a pale blue circle wobbling on a checkered background
a dark green triangle jumping on a white background
a striped yellow square sliding diagonally on a gray background
a white circle and a black square swapping places on a gray background
a red ring expanding slowly on a dark blue background
a blue square bouncing off the edges of a white background
a green star spinning fast on a red background
a yellow circle moving left then right on a black background
a purple triangle drifting slowly down on a light gray background""".split("\n")

PROMPT = "a red circle moving left on a gray background"
NEGATIVE = "blurry"
# Longer than max_tokens: exercises truncation and the far relative-position buckets.
PROMPT_LONG = ("a small red square drifting up on a gray background while a tiny blue star "
               "rotates clockwise on a yellow background")
SAMPLE_SEED = 42
SAMPLE_STEPS = 2
SAMPLE_GUIDANCE = 3.0
# A second set with more steps, a flow shift and the scaled_linear schedule, where the
# middle steps (ancestral noise, ᾱ_prev, the shift warp) weigh more in the result.
SAMPLE4_STEPS = 4
SAMPLE4_SHIFT = 3.0
SAMPLE4_BETAS = (0.00085, 0.012, "scaled_linear")
DIT_TIMESTEP = 637.5
DIT_INPUT_SEED = 7


def train_tokenizer(dest):
    """Unigram SentencePiece model, ~100 pieces, pad 0, eos 1, unk 2, no bos.  Trained in a
    temporary directory with relative file names so that the model file (which records
    its input and prefix) does not depend on the directory."""
    cwd = os.getcwd()
    tmp = tempfile.mkdtemp(prefix="vdit-sp-")
    try:
        os.chdir(tmp)
        with open("sentences.txt", "w", encoding="utf-8") as f:
            f.write("\n".join(SENTENCES) + "\n")
        spm.SentencePieceTrainer.train(
            input="sentences.txt", model_prefix="tokenizer", model_type="unigram",
            vocab_size=100, hard_vocab_limit=False, character_coverage=1.0,
            pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
            normalization_rule_name="identity",  # no NFKC table: keeps the file ~1 KB
            num_threads=1, input_sentence_size=0, shuffle_input_sentence=False,
            minloglevel=2)
        shutil.copyfile("tokenizer.model", dest)
    finally:
        os.chdir(cwd)
        shutil.rmtree(tmp)
    return spm.SentencePieceProcessor(model_file=dest).get_piece_size()


def tiny_config(vocab_size):
    return config.from_dict({
        "format": "vdit", "version": 1, "name": "tiny",
        "video": {"frames": 8, "height": 16, "width": 16, "fps": 8},
        "decoder": {"type": "identity", "channels": 3},
        "text_encoder": {"vocab_size": vocab_size, "d_model": 32, "n_layers": 2,
                         "n_heads": 4, "d_kv": 8, "d_ff": 64, "rel_buckets": 32,
                         "rel_max_distance": 128, "max_tokens": 32, "eps": 1e-6},
        "dit": {"hidden": 48, "depth": 2, "heads": 4, "head_dim": 12, "patch": [2, 4, 4],
                "in_channels": 3, "ffn_hidden": 192, "freq_dim": 64, "rope_theta": 10000.0,
                "rope_scale": [1.0, 1.0, 1.0], "eps": 1e-6},
        "sampler": {"type": "flow_euler", "prediction": "flow", "steps": 4, "guidance": 4.0,
                    "shift": 1.0, "train_timesteps": 1000, "beta_start": 0.0001,
                    "beta_end": 0.02, "beta_schedule": "linear"},
        "attention": {"mode": "full", "tile_k": 1, "plan": [1, 1], "block": 64,
                      "sparsity": 0.8, "warmup": 0.2, "search_steps": [0.2, 0.6]},
    })


def storage_dtype(name):
    """Mixed dtypes exercise the loader: text encoder BF16, DiT block 1 F16, rest F32."""
    if name.startswith("text_encoder."):
        return "BF16"
    if name.startswith("transformer_blocks.1."):
        return "F16"
    return "F32"


def random_weights(cfg):
    """Seeded weights large enough that every layer visibly matters."""
    rng = np.random.default_rng(WEIGHT_SEED)
    out = {}
    for name, shape in expected_shapes(cfg).items():
        if name.endswith("layer_norm.weight"):
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith("shared.weight") or name.endswith("relative_attention_bias.weight"):
            w = rng.standard_normal(shape)
        elif name.startswith("text_encoder."):
            w = 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            w = 0.05 * rng.standard_normal(shape)
        elif name.endswith("ff.net.2.weight"):
            w = 0.1 * rng.standard_normal(shape)
        elif name == "proj_out.weight":  # model outputs of order 1: frames not saturated
            w = 0.05 * rng.standard_normal(shape)
        else:  # DiT weights and scale_shift_tables
            w = 0.2 * rng.standard_normal(shape)
        # Store, then use exactly the values a reader gets back.
        out[name] = safetensors_io.quantize(w.astype(np.float32), storage_dtype(name))
    return out


def make_model(model_dir):
    os.makedirs(model_dir, exist_ok=True)
    vocab = train_tokenizer(os.path.join(model_dir, "tokenizer.model"))
    cfg = tiny_config(vocab)
    weights = random_weights(cfg)
    config.save(cfg, os.path.join(model_dir, "config.json"))
    safetensors_io.save(os.path.join(model_dir, "model.safetensors"), weights,
                        dtypes={k: storage_dtype(k) for k in weights},
                        metadata={"format": "vdit", "name": "tiny"})


def dit_with_abs_pos(model, x, text):
    """The DiT forward of the same weights with dit.abs_pos = "sincos"."""
    cfg = model.dit.cfg
    cfg.abs_pos = "sincos"
    try:
        return model.dit(x, DIT_TIMESTEP, text)
    finally:
        cfg.abs_pos = "none"


def make_golden(model_dir, path):
    model = VditModel.from_dir(model_dir)  # the reference runs on the stored values
    cfg = model.cfg
    g, meta = {}, {}

    ids_p = model.tokens(PROMPT)
    ids_n = model.tokens(NEGATIVE, negative=True)
    ids_l = model.tokens(PROMPT_LONG)
    g["tokens.prompt"] = torch.tensor(ids_p, dtype=torch.float32)
    g["tokens.negative"] = torch.tensor(ids_n, dtype=torch.float32)
    g["tokens.long"] = torch.tensor(ids_l, dtype=torch.float32)
    text_p = model.encode_text(ids_p)
    text_n = model.encode_text(ids_n)
    g["text.prompt"] = text_p
    g["text.negative"] = text_n
    g["text.long"] = model.encode_text(ids_l)

    g["noise.s0"] = torch.from_numpy(philox.normals(1234, 0, 100))
    g["noise.s5"] = torch.from_numpy(philox.normals(0xDEADBEEFCAFE, 5, 100))

    shape = cfg.latent_shape()
    x = torch.from_numpy(philox.normals_like(shape, DIT_INPUT_SEED, 0))
    g["dit.input"] = x
    g["dit.timestep"] = torch.tensor([DIT_TIMESTEP], dtype=torch.float32)
    with torch.no_grad():
        g["dit.output"] = model.dit(x, DIT_TIMESTEP, text_p)
        g["dit.output_abs_pos"] = dit_with_abs_pos(model, x, text_p)

    base = replace(cfg.sampler, steps=SAMPLE_STEPS, guidance=SAMPLE_GUIDANCE, shift=1.0,
                   train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                   beta_schedule="linear")
    runs = [("flow_euler", "flow_euler", "flow"), ("ddim_epsilon", "ddim", "epsilon"),
            ("ddim_v", "ddim", "v"), ("euler_ancestral_epsilon", "euler_ancestral", "epsilon"),
            ("euler_ancestral_v", "euler_ancestral", "v")]
    base4 = replace(base, steps=SAMPLE4_STEPS, shift=SAMPLE4_SHIFT,
                    beta_start=SAMPLE4_BETAS[0], beta_end=SAMPLE4_BETAS[1],
                    beta_schedule=SAMPLE4_BETAS[2])
    for prefix, sbase in (("sample.", base), ("sample4.", base4)):
        for key, typ, pred in runs:
            scfg = replace(sbase, type=typ, prediction=pred)
            config.validate(replace(cfg, sampler=scfg))
            guided = samplers.Guided(model.dit, text_p, text_n, scfg.guidance)
            latent = samplers.sample(guided, shape, SAMPLE_SEED, scfg)
            assert guided.calls == 2 * scfg.steps
            g[prefix + key] = latent
            if prefix == "sample." and key == "flow_euler":
                frames = samplers.latent_to_frames(latent)
                g["frames.flow_euler"] = torch.from_numpy(frames.astype(np.float32))

    for k, v in g.items():
        if not torch.isfinite(v).all():
            raise RuntimeError(f"golden {k} is not finite")
    meta.update({
        "format": "vdit-golden",
        "model": "models/tiny",
        "prompt": PROMPT,
        "negative": NEGATIVE,
        "prompt_long": PROMPT_LONG,
        "seed": str(SAMPLE_SEED),
        "steps": str(SAMPLE_STEPS),
        "guidance": repr(SAMPLE_GUIDANCE),
        "shift": "1.0",
        "train_timesteps": "1000",
        "beta_start": "0.0001",
        "beta_end": "0.02",
        "beta_schedule": "linear",
        "timestep": repr(DIT_TIMESTEP),
        "dit.output_abs_pos": "dit.output with dit.abs_pos = \"sincos\"",
        "dit.input": f"philox seed {DIT_INPUT_SEED} stream 0",
        "noise.s0": "philox seed 1234 stream 0, elements 0..99",
        "noise.s5": f"philox seed {0xDEADBEEFCAFE} stream 5, elements 0..99",
        "samples": " ".join("sample." + r[0] for r in runs),
        "sample4.steps": str(SAMPLE4_STEPS),
        "sample4.shift": repr(SAMPLE4_SHIFT),
        "sample4.beta_start": repr(SAMPLE4_BETAS[0]),
        "sample4.beta_end": repr(SAMPLE4_BETAS[1]),
        "sample4.beta_schedule": SAMPLE4_BETAS[2],
        "sample4": "as sample.* (same seed, guidance, prompts) with sample4.* settings",
    })
    os.makedirs(os.path.dirname(path), exist_ok=True)
    safetensors_io.save(path, g, metadata=meta)
    return g


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models", "tiny"))
    ap.add_argument("--golden", default=os.path.join(ROOT, "tests", "data",
                                                     "golden.safetensors"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    make_model(args.model_dir)
    g = make_golden(args.model_dir, args.golden)
    for k, v in g.items():
        print(f"{k:32s} {str(list(v.shape)):16s} absmax {float(v.abs().max()):9.4g} "
              f"std {float(v.std()) if v.numel() > 1 else 0.0:8.4g}")


if __name__ == "__main__":
    main()
