#!/usr/bin/python3
"""Converts published Open-Sora-Plan v1.2 folders into a vdit model directory
(docs/model-format.md, "Converting Open-Sora-Plan v1.2"):

    /usr/bin/python3 train/convert_osp.py --transformer OSP/29x720p \\
        --text-encoder CACHE/mt5-xxl OUT [--keep-f32] [--scheduler scheduler_config.json]
        [--attention tile --plan k0,k1,...]

    OUT/config.json               the architecture, sampler and decoder in vdit's schema
    OUT/dit.safetensors           the transformer, bf16 (f32 with --keep-f32)
    OUT/text_encoder.safetensors  the mT5 encoder under "text_encoder." (decoder dropped)
    OUT/tokenizer.model           the mT5 SentencePiece model (spiece.model)
    OUT/vae/vae.safetensors       with --vae: the CausalVideoVAE decoder's weights, and
    OUT/vae/config.json           its config (+ scaling_factor): what the engine decodes
                                  with (a model without vae/ does not load)

Tensors are streamed one chunk at a time (16 MB), so converting the 11 GB transformer
or the mT5-XXL encoder needs little memory; safetensors inputs need only numpy. A
text encoder stored as pytorch_model*.bin is read with torch.load(weights_only=True),
which loads each shard whole."""

import argparse
import glob
import json
import math
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from osp import st_stream  # noqa: E402

# Open-Sora-Plan's sample script: EulerAncestralDiscreteScheduler() with diffusers'
# defaults, 100 steps, guidance 7.5, prompts of at most 512 tokens.
OSP_SAMPLER = {"type": "euler_ancestral", "prediction": "epsilon", "steps": 100,
               "guidance": 7.5, "train_timesteps": 1000, "beta_start": 0.0001,
               "beta_end": 0.02, "beta_schedule": "linear", "timestep_spacing": "linspace"}
VAE_SCALING_FACTOR = 0.18215
MAX_JSON = 16 << 20  # config.json, scheduler_config.json (the engine's limit too)
MAX_LAYERS = 1024    # num_layers: the published models have 32 (transformer), 24 (mT5)
MAX_DIM = 1 << 20    # widths, heads, vocabulary
MAX_SAMPLE = 1024    # sample_size (8 pixels each) and sample_size_t: the engine's 8192 side
MAX_STEPS = 10000    # and the engine's limits on the sampler
MAX_TRAIN_TIMESTEPS = 100000


class ConvertError(Exception):
    """Bad input: a one-line message naming the file (or the option) and what is wrong."""


_show = st_stream.show
_MISSING = object()


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _load_json(path):
    """The file's JSON object (strict: no NaN or Infinity, at most MAX_JSON bytes)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON + 1)
    except OSError as e:
        raise ConvertError(f"{path}: {e}") from None
    if len(data) > MAX_JSON:
        raise ConvertError(f"{path}: larger than {MAX_JSON >> 20} MB: not a config")
    try:
        d = json.loads(data, parse_constant=_reject_constant)
    except ValueError as e:
        raise ConvertError(f"{path}: {e}") from None
    except RecursionError:
        raise ConvertError(f"{path}: nested too deeply") from None
    if not isinstance(d, dict):
        raise ConvertError(f"{path}: {_show(d, 40)} is not a JSON object")
    return d


def _need(cfg, key, path):
    if key not in cfg:
        raise ConvertError(f"{path}: key \"{key}\" is missing")
    return cfg[key]


def _int(cfg, key, path, lo, hi, default=_MISSING):
    """cfg[key] (default when absent), an integer in [lo, hi]."""
    v = cfg.get(key, default)
    if v is _MISSING:
        raise ConvertError(f"{path}: key \"{key}\" is missing")
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConvertError(f"{path}: {key} = {_show(v)}: must be an integer in [{lo}, {hi}]")
    return v


def _number(cfg, key, path, default, lo=0.0, hi=math.inf, lo_open=True):
    """cfg[key] (default when absent or null), a finite number in (lo, hi) ([lo, hi) with
    lo_open False)."""
    v = cfg.get(key)
    if v is None:
        return default
    try:
        f = float(v) if not isinstance(v, bool) and isinstance(v, (int, float)) else None
    except OverflowError:
        f = None
    if f is None or not math.isfinite(f) or not (f > lo if lo_open else f >= lo) or f >= hi:
        want = f"{'(' if lo_open else '['}{lo:g}, {hi:g})"
        raise ConvertError(f"{path}: {key} = {_show(v)}: must be a finite number in {want}")
    return v


def check_transformer_config(t, path):
    """The transformer's config.json: the keys the conversion reads, with their types and
    ranges (OpenSoraT2V's arguments), before any size is computed from them."""
    _int(t, "num_layers", path, 1, MAX_LAYERS)
    for key in ("num_attention_heads", "attention_head_dim", "in_channels",
                "caption_channels", "cross_attention_dim", "patch_size", "patch_size_t"):
        _int(t, key, path, 1, MAX_DIM)
    if t.get("out_channels") is not None:
        _int(t, "out_channels", path, 1, MAX_DIM)
    size = _need(t, "sample_size", path)
    for v in size if isinstance(size, list) and len(size) == 2 else [size]:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SAMPLE:
            raise ConvertError(f"{path}: sample_size = {_show(size)}: must be an integer in "
                               f"[1, {MAX_SAMPLE}] or [height, width] of them")
    _int(t, "sample_size_t", path, 1, MAX_SAMPLE)
    for key in ("interpolation_scale_t", "interpolation_scale_h", "interpolation_scale_w"):
        _number(t, key, path, None)
    _number(t, "norm_eps", path, 1e-6, hi=1.0)


def check_mt5_config(m, path):
    """The text encoder's config.json (MT5Config), likewise."""
    _int(m, "vocab_size", path, 2, MAX_DIM)
    _int(m, "num_layers", path, 1, MAX_LAYERS)
    for key in ("d_model", "num_heads", "d_kv", "d_ff"):
        _int(m, key, path, 1, MAX_DIM)
    buckets = _int(m, "relative_attention_num_buckets", path, 4, MAX_DIM, 32)
    dist = _int(m, "relative_attention_max_distance", path, 1, MAX_DIM, 128)
    if dist <= buckets // 4:
        raise ConvertError(f"{path}: relative_attention_max_distance = {dist}: must be greater"
                           f" than relative_attention_num_buckets/4 = {buckets // 4}")
    _number(m, "layer_norm_epsilon", path, 1e-6, hi=1.0)


def interpolation_scales(t):
    """(t, h, w) as OpenSoraT2V resolves them: the config's values, or from sample_size."""
    size = t["sample_size"]
    size = size if isinstance(size, list) else [size, size]
    st = t["sample_size_t"]
    dt = ((st - 1) // 16 + 1) if st % 2 == 1 else st / 16
    pick = [t.get("interpolation_scale_t"), t.get("interpolation_scale_h"),
            t.get("interpolation_scale_w")]
    default = [dt, size[0] / 30, size[1] / 40]
    return [float(p if p is not None else d) for p, d in zip(pick, default)]


def check_transformer(t, path):
    check_transformer_config(t, path)
    for key, want in (("norm_type", "ada_norm_single"), ("use_rope", True),
                      ("activation_fn", "gelu-approximate"), ("attention_bias", True),
                      ("norm_elementwise_affine", False), ("downsampler", None)):
        v = t.get(key, want)
        if type(v) is not type(want) or v != want:
            raise ConvertError(f"{path}: {key} = {_show(v)}: only {json.dumps(want)}"
                               " (Open-Sora-Plan v1.2's architecture) can be converted")
    out = t.get("out_channels") or t["in_channels"]
    if out != t["in_channels"]:
        raise ConvertError(f"{path}: out_channels = {out} differs from in_channels = "
                           f"{t['in_channels']} (a learned-sigma model): not supported")


def attention_section(mode, plan, depth):
    """Efficient-vDiT's distilled weights come with a per-layer tile plan (k global
    reference frames per layer, docs/model-format.md "attention")."""
    a = {"mode": mode}
    if plan:
        try:
            ks = [int(k) for k in plan.split(",")]
        except ValueError:
            raise ConvertError(f"--plan {plan}: must be comma-separated integers") from None
        if len(ks) != depth or min(ks) < 0:
            raise ConvertError(f"--plan has {len(ks)} entries: it needs one k >= 0 for each of"
                               f" the transformer's {depth} layers")
        a["plan"] = ks
    return a


def vdit_config(t, m, sampler, frames=None, height=None, width=None, name="osp-v1.2",
                attention=None):
    heads, hd = t["num_attention_heads"], t["attention_head_dim"]
    size = t["sample_size"] if isinstance(t["sample_size"], list) else [t["sample_size"]] * 2
    return {
        "format": "vdit", "version": 1, "name": name,
        "video": {"frames": frames or 1 + 4 * (t["sample_size_t"] - 1),
                  "height": height or 8 * size[0], "width": width or 8 * size[1], "fps": 24.0},
        "decoder": {"type": "causal_video_vae", "channels": t["in_channels"],
                    "scaling_factor": VAE_SCALING_FACTOR},
        "text_encoder": {
            "vocab_size": m["vocab_size"], "d_model": m["d_model"],
            "n_layers": m["num_layers"], "n_heads": m["num_heads"], "d_kv": m["d_kv"],
            "d_ff": m["d_ff"], "rel_buckets": m.get("relative_attention_num_buckets", 32),
            "rel_max_distance": m.get("relative_attention_max_distance", 128),
            "max_tokens": 512,
            "eps": m["layer_norm_epsilon"] if m.get("layer_norm_epsilon") is not None else 1e-6},
        "dit": {
            "hidden": heads * hd, "depth": t["num_layers"], "heads": heads, "head_dim": hd,
            "patch": [t["patch_size_t"], t["patch_size"], t["patch_size"]],
            "in_channels": t["in_channels"], "ffn_hidden": 4 * heads * hd, "freq_dim": 256,
            "rope_theta": 10000.0, "rope_scale": interpolation_scales(t),
            "eps": t["norm_eps"] if t.get("norm_eps") is not None else 1e-6},
        "sampler": sampler,
        "attention": attention or {"mode": "full"},
    }


def sampler_from(path, steps, guidance):
    s = dict(OSP_SAMPLER)
    if path:
        d = _load_json(path)
        cls = d.get("_class_name", "EulerAncestralDiscreteScheduler")
        if cls != "EulerAncestralDiscreteScheduler":
            raise ConvertError(f"{path}: _class_name {_show(cls)}: only "
                               "EulerAncestralDiscreteScheduler (what Open-Sora-Plan v1.2 "
                               "samples with) is converted")
        pred = d.get("prediction_type", "epsilon")
        if pred not in ("epsilon", "v_prediction"):
            raise ConvertError(f"{path}: prediction_type {_show(pred)} is not supported")
        if d.get("timestep_spacing", "linspace") != "linspace":
            raise ConvertError(f"{path}: timestep_spacing {_show(d['timestep_spacing'])}: only"
                               " \"linspace\" is supported")
        sched = d.get("beta_schedule", "linear")
        if sched not in ("linear", "scaled_linear"):
            raise ConvertError(f"{path}: beta_schedule {_show(sched)}: only \"linear\" and "
                               "\"scaled_linear\" are supported")
        for key in ("trained_betas", "rescale_betas_zero_snr"):
            if d.get(key) not in (None, False):
                raise ConvertError(f"{path}: {key} = {_show(d[key])} is not supported")
        b0 = _number(d, "beta_start", path, 0.0001, hi=1.0)
        b1 = _number(d, "beta_end", path, 0.02, lo=b0, hi=1.0, lo_open=False)
        s.update(prediction="epsilon" if pred == "epsilon" else "v",
                 train_timesteps=_int(d, "num_train_timesteps", path, 1, MAX_TRAIN_TIMESTEPS,
                                      1000),
                 beta_start=b0, beta_end=b1, beta_schedule=sched)
    if steps:
        if not 1 <= steps <= MAX_STEPS:
            raise ConvertError(f"--steps {steps}: must be in [1, {MAX_STEPS}]")
        s["steps"] = steps
    if s["steps"] > s["train_timesteps"]:
        raise ConvertError(f"{path or '--steps'}: num_train_timesteps = {s['train_timesteps']} "
                           f"is fewer than"
                           f" the {s['steps']} sampling steps")
    if guidance is not None:
        if not (math.isfinite(guidance) and guidance >= 0):
            raise ConvertError(f"--guidance {guidance}: must be a finite number >= 0")
        s["guidance"] = guidance
    return s


def _finite(chunks, path, name):
    """chunks' arrays, refused at the first value that is not finite (NaN or infinity:
    a broken checkpoint, and not representable as the engine's weights)."""
    for c in chunks:
        if not np.isfinite(c).all():
            raise ConvertError(f"{path}: tensor {_show(name)} holds a value that is not finite"
                               " (NaN or infinity)")
        yield c


def _torch_state_dict(path):
    """A torch pickle of {name: tensor}, read with weights_only=True (which refuses code)."""
    try:
        import torch
    except ImportError:
        raise ConvertError(f"{path}: reading this pickle needs torch") from None
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a pickle with code in it, or not a checkpoint at all
        raise ConvertError(f"{path}: cannot be read as weights only "
                           f"({_show(str(e), 200)})") from None
    return sd


def _float_array(v, path, name):
    """A tensor of a torch pickle as float32 numpy."""
    import torch
    if not isinstance(v, torch.Tensor) or v.is_complex():
        raise ConvertError(f"{path}: {_show(name)} is not a tensor of real numbers")
    try:
        return v.detach().float().contiguous().numpy()
    except (RuntimeError, TypeError) as e:  # sparse, quantized, meta...
        raise ConvertError(f"{path}: {_show(name)}: {_show(str(e), 200)}") from None


class Source:
    """The tensors of a folder's *.safetensors files (or pytorch_model*.bin via torch)."""

    def __init__(self, folder, patterns):
        self.tensors = {}  # name -> (path, info, start) or (path, numpy array)
        files = sorted(f for p in patterns for f in glob.glob(os.path.join(folder, p)))
        st_files = [f for f in files if f.endswith(".safetensors")]
        bin_files = [f for f in files if f.endswith(".bin")]
        if not st_files and not bin_files:
            raise ConvertError(f"{folder}: no {' or '.join(patterns)} file")
        for f in st_files:
            try:
                header, _, start = st_stream.read_header(f)
            except (OSError, ValueError) as e:
                raise ConvertError(f"{f}: not a safetensors file ({e})") from None
            for name, info in header.items():
                if info["dtype"] not in st_stream.ITEMSIZE:
                    raise ConvertError(f"{f}: tensor {_show(name)} is {info['dtype']}: only"
                                       " F32, F16 and BF16 tensors are converted")
                self._add(name, (f, info, start))
        if not st_files:
            for f in bin_files:
                sd = _torch_state_dict(f)
                if not isinstance(sd, dict):
                    raise ConvertError(f"{f}: not a state dict")
                for name, v in sd.items():
                    if not isinstance(name, str):
                        raise ConvertError(f"{f}: tensor name {_show(name)} is not a string")
                    self._add(name, (f, _float_array(v, f, name)))

    def _add(self, name, value):
        if name in self.tensors:
            raise ConvertError(f"{value[0]}: tensor {_show(name)} is also in "
                               f"{self.tensors[name][0]}")
        self.tensors[name] = value

    def shape(self, name):
        v = self.tensors[name]
        return list(v[1].shape) if len(v) == 2 else v[1]["shape"]

    def chunks(self, name):
        v = self.tensors[name]
        if len(v) == 2:
            return lambda: _finite(iter([v[1].reshape(-1)]), v[0], name)

        def read():
            try:
                yield from _finite(st_stream.read_chunks(*v), v[0], name)
            except (OSError, ValueError) as e:  # the file changed since its header was read
                raise ConvertError(f"{v[0]}: tensor {_show(name)}: {e}") from None
        return read


def _check_shapes(src, want, folder):
    for name, shape in want.items():
        if name not in src.tensors:
            raise ConvertError(f"{folder}: tensor {name} is missing")
        if src.shape(name) != shape:
            raise ConvertError(f"{folder}: tensor {name} has shape {src.shape(name)}, "
                               f"config.json implies {shape}")


def convert_transformer(folder, out_path, dtype):
    from osp import layout  # HERE is on sys.path since the module's import
    cfg_path = os.path.join(folder, "config.json")
    t = _load_json(cfg_path)
    for key in ("num_layers", "num_attention_heads", "attention_head_dim", "in_channels",
                "caption_channels", "cross_attention_dim", "patch_size", "patch_size_t",
                "sample_size", "sample_size_t"):
        _need(t, key, cfg_path)
    check_transformer(t, cfg_path)  # types and ranges too, before any size is computed
    src = Source(folder, ["diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin"])
    want = layout.transformer_shapes(dict(t, out_channels=t.get("out_channels") or t["in_channels"]))
    _check_shapes(src, want, folder)
    extra = sorted(set(src.tensors) - set(want))
    if extra:
        raise ConvertError(f"{folder}: unexpected tensor {_show(extra[0])} (and {len(extra) - 1}"
                           " more):"
                           " not an Open-Sora-Plan v1.2 transformer")
    entries = []
    for name in sorted(want):
        shape = want[name]
        if name == "pos_embed.proj.weight":  # Conv2d per frame → the engine's [D, C, pt, ph, pw]
            shape = [shape[0], shape[1], 1, shape[2], shape[3]]
        entries.append((name, dtype, shape, src.chunks(name)))
    st_stream.write(out_path, entries, {"source": "Open-Sora-Plan v1.2 transformer"})
    return t


def convert_text_encoder(folder, out_path, dtype):
    from osp import layout
    cfg_path = os.path.join(folder, "config.json")
    m = _load_json(cfg_path)
    for key in ("vocab_size", "d_model", "num_layers", "num_heads", "d_kv", "d_ff"):
        _need(m, key, cfg_path)
    check_mt5_config(m, cfg_path)
    if m.get("feed_forward_proj", "gated-gelu") != "gated-gelu":
        raise ConvertError(f"{cfg_path}: feed_forward_proj {_show(m['feed_forward_proj'])}: "
                           "only gated-gelu (mT5, T5 v1.1) is supported")
    src = Source(folder, ["model*.safetensors", "pytorch_model*.bin"])
    want = layout.mt5_encoder_shapes(dict(m, relative_attention_num_buckets=m.get(
        "relative_attention_num_buckets", 32)))
    _check_shapes(src, want, folder)
    entries = [("text_encoder." + n, dtype, want[n], src.chunks(n)) for n in sorted(want)]
    st_stream.write(out_path, entries, {"source": "mT5 encoder"})
    spiece = os.path.join(folder, "spiece.model")
    if not os.path.isfile(spiece):
        raise ConvertError(f"{folder}: spiece.model (the SentencePiece tokenizer) is missing")
    return m, spiece


def vae_state_dict(ckpt, path="checkpoint.ckpt"):
    """The weights OSP's CausalVAEModel.init_from_ckpt takes from checkpoint.ckpt: a
    non-empty ema_state_dict ("module." prefixes dropped), else state_dict["gen_model"],
    else state_dict. Names that are not strings are left out."""
    if not isinstance(ckpt, dict):
        raise ConvertError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict")
    ema = ckpt.get("ema_state_dict")
    if ema is not None and not isinstance(ema, dict):  # (a tensor has no truth value)
        raise ConvertError(f"{path}: ema_state_dict is a {type(ema).__name__}, not a dict")
    if ema:
        return {k.replace("module.", ""): v for k, v in ema.items() if isinstance(k, str)}
    sd = ckpt.get("state_dict")
    if sd is None:
        raise ConvertError(f"{path}: has neither ema_state_dict nor state_dict")
    if isinstance(sd, dict) and "gen_model" in sd:
        sd = sd["gen_model"]
    if not isinstance(sd, dict):
        raise ConvertError(f"{path}: state_dict is a {type(sd).__name__}, not a dict")
    return {k: v for k, v in sd.items() if isinstance(k, str)}


def convert_vae(folder, out_dir, dtype):
    """vae/checkpoint.ckpt (a pickle: torch.load with weights_only=True, which refuses
    code) → OUT/vae/vae.safetensors with the decoder's tensors (decoder.*,
    post_quant_conv.*, names unchanged) and OUT/vae/config.json with the scaling factor."""
    ckpt_path = os.path.join(folder, "checkpoint.ckpt")
    cfg = _load_json(os.path.join(folder, "config.json"))
    sd = vae_state_dict(_torch_state_dict(ckpt_path), ckpt_path)
    keep = sorted(k for k in sd if k.startswith(("decoder.", "post_quant_conv.")))
    if not any(k.startswith("decoder.conv_in.") for k in keep):
        raise ConvertError(f"{ckpt_path}: no decoder.conv_in weights: not a CausalVAEModel")
    os.makedirs(out_dir, exist_ok=True)
    entries = []
    for k in keep:
        a = _float_array(sd[k], ckpt_path, k)
        entries.append((k, dtype, list(a.shape),
                        lambda a=a, k=k: _finite(iter([a.reshape(-1)]), ckpt_path, k)))
    st_stream.write(os.path.join(out_dir, "vae.safetensors"), entries,
                    {"source": "Open-Sora-Plan v1.2 CausalVideoVAE decoder"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        # the sample script's --enable_tiling (tile sizes at 720p), read by the engine
        json.dump(dict(cfg, scaling_factor=VAE_SCALING_FACTOR, use_tiling=True,
                       tile_latent_min_size=64, tile_sample_min_size=512,
                       tile_latent_min_size_t=8, tile_overlap_factor=0.125),
                  f, indent=2, sort_keys=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="the vdit model directory to write")
    ap.add_argument("--transformer", required=True, help="e.g. Open-Sora-Plan-v1.2.0/29x720p")
    ap.add_argument("--text-encoder", required=True, help="google/mt5-xxl's folder")
    ap.add_argument("--vae", help="the VAE's folder (checkpoint.ckpt + config.json); needs torch")
    ap.add_argument("--scheduler", help="a diffusers scheduler_config.json (default: OSP's)")
    ap.add_argument("--keep-f32", action="store_true", help="keep f32 weights (default bf16)")
    ap.add_argument("--attention", choices=("full", "tile", "adaptive"), default="full")
    ap.add_argument("--plan", help="tile plan: one k per transformer layer, e.g. 1,2,1,...")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--guidance", type=float)
    ap.add_argument("--frames", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--width", type=int)
    a = ap.parse_args(argv)
    dtype = "F32" if a.keep_f32 else "BF16"
    try:
        os.makedirs(a.out, exist_ok=True)
        sampler = sampler_from(a.scheduler, a.steps, a.guidance)
        t = convert_transformer(a.transformer, os.path.join(a.out, "dit.safetensors"), dtype)
        m, spiece = convert_text_encoder(a.text_encoder,
                                         os.path.join(a.out, "text_encoder.safetensors"), dtype)
        shutil.copyfile(spiece, os.path.join(a.out, "tokenizer.model"))
        if a.vae:
            convert_vae(a.vae, os.path.join(a.out, "vae"), dtype)
        attention = attention_section(a.attention, a.plan, t["num_layers"])
        cfg = vdit_config(t, m, sampler, a.frames, a.height, a.width,
                          name="osp-v1.2-" + os.path.basename(os.path.normpath(a.transformer)),
                          attention=attention)
        with open(os.path.join(a.out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
            f.write("\n")
    except ConvertError as e:
        print(f"convert_osp: {e}", file=sys.stderr)
        return 1
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
