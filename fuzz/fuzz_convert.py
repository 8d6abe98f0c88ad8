#!/usr/bin/python3
"""A structure-aware mutation fuzzer for train/convert_osp.py's input (plain Python:
numpy, and torch only for the VAE pickle when it imports).

    fuzz/fuzz_convert.py [--seconds S] [--runs N] [--seed K] [--findings DIR]
    fuzz/fuzz_convert.py --replay DIR...      (saved reproducers, one by one)

The meson test `convert` (suite fuzz, the clang build of ./scripts/test.sh) runs it for
VDIT_FUZZ_SECONDS (default 25); `convert-known-bad` (suite osp) only replays KNOWN_BAD.

Seeds: Open-Sora-Plan v1.2 folders in the published layout (train/osp/layout.py) at
shrunken sizes, written to a temporary folder under /dev/shm: the transformer
(config.json + diffusion_pytorch_model.safetensors, F32, F16 and BF16 variants), the mT5
encoder (config.json + model.safetensors + spiece.model), a scheduler_config.json and,
with torch, the CausalVideoVAE's checkpoint.ckpt. Each execution mutates one folder:
bytes of any file (flips, interesting values, inserts, deletions, truncation, the
safetensors length prefix), the JSON of config.json and of the safetensors header
(types changed, negative and huge numbers, NaN, keys dropped or added, wrong shapes,
offsets and dtypes, tensors renamed or copied, non-dict entries, deep nesting), files
removed or a second shard added; then runs the converter's entry points on it
(convert_transformer, convert_text_encoder, sampler_from, convert_vae, Source and its
chunks, main). Success or ConvertError with a one-line message naming the input are
fine; any other exception, a run over --timeout seconds, an allocation past the memory
limit, or a converted config.json that is not strict JSON is a finding: the input and
traceback are printed, the reproducer saved under --findings, and the exit status is 1.
Inputs whose outcome is new (the ConvertError message with numbers and paths stripped)
join the corpus that later mutations start from.

Before fuzzing, KNOWN_BAD (inputs that once escaped as other exceptions) is replayed:
each must now end in ConvertError with the expected words. --runs 0 replays only that
table and checks that the seeds convert (the meson test convert-known-bad). The final
statistics are printed as libFuzzer's -print_final_stats=1 prints them."""

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback

ROOT = os.environ.get("VDIT_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "train"))

try:
    import numpy as np
except ImportError:
    print("numpy is not importable: skipped")
    sys.exit(77)

import convert_osp as co  # noqa: E402
from osp import layout, st_stream  # noqa: E402

TRANSFORMER = dict(layout.TINY_TRANSFORMER, num_layers=1, num_attention_heads=1,
                   attention_head_dim=6, in_channels=2, out_channels=2, caption_channels=3,
                   cross_attention_dim=5, patch_size=1, sample_size=[2, 3], sample_size_t=2)
MT5 = dict(layout.TINY_MT5, vocab_size=8, d_model=4, d_kv=2, d_ff=6, num_layers=1,
           num_heads=2, relative_attention_num_buckets=4, relative_attention_max_distance=8)
SCHEDULER = {"_class_name": "EulerAncestralDiscreteScheduler", "_diffusers_version": "0.28.0",
             "beta_end": 0.02, "beta_schedule": "linear", "beta_start": 0.0001,
             "num_train_timesteps": 1000, "prediction_type": "epsilon",
             "rescale_betas_zero_snr": False, "steps_offset": 0,
             "timestep_spacing": "linspace", "trained_betas": None}
ST_DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "U64",
             "F8_E4M3", "F8_E5M2", "", "f32", "F32 ", "F\n32"]
INTERESTING_INTS = [0, 1, -1, 2, 3, 7, 8, 255, 256, 1 << 16, (1 << 31) - 1, 1 << 31, 1 << 32,
                    (1 << 53) + 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 64, -(1 << 63),
                    10 ** 30, 100 << 20]
INTERESTING = INTERESTING_INTS + [
    None, True, False, 0.0, -0.0, 0.5, -1.5, 1e-300, 1e308, float("nan"), float("inf"),
    float("-inf"), "", "x", "1", "F32", "linear", "epsilon", "\n", "a\nb", "\u00e9\u4e2d",
    [], {}, [0], [1, 2], [2, 3, 4], [-1], [None], [1.5, 2], {"a": 1}, "x" * 300]
BYTES = [b"\x00", b"\xff", b"\x7f", b"\x80", b"[", b"]", b"{", b"}", b"\"", b",", b":",
         b"-", b"e", b"9", b"\n", b"\\", b"NaN", b"Infinity", b"1e999", b"-0", b"null",
         b"\xc3", b"\xff\xfe", b"\x00\x00\x80\x7f", b"\x00\x00\xc0\x7f", b"\x00\x7c",
         b"\x80\x7f"]


# ---------------------------------------------------------------------------------------
# seeds

def _file(path):
    with open(path, "rb") as f:
        return f.read()


def _st_bytes(tmp, shapes, dtype, rng, metadata=None):
    path = os.path.join(tmp, "seed.safetensors")
    entries = [(n, dtype, shapes[n],
                (lambda s=shapes[n]: iter([rng.standard_normal(
                    int(np.prod(s))).astype(np.float32) * np.float32(0.5)])))
               for n in sorted(shapes)]
    st_stream.write(path, entries, metadata if metadata is not None else {"format": "pt"})
    data = _file(path)
    os.unlink(path)
    return data


def make_seeds(tmp, torch_ok):
    """{target: [files]} where files maps a path relative to the target's folder to bytes."""
    rng = np.random.default_rng(5)
    seeds = {"transformer": [], "text_encoder": [], "scheduler": [], "vae": []}
    t2 = dict(TRANSFORMER, sample_size=4, interpolation_scale_t=None,
              interpolation_scale_h=None, interpolation_scale_w=None, out_channels=None,
              sample_size_t=3)
    for t, dtype in ((TRANSFORMER, "F32"), (t2, "F16"), (TRANSFORMER, "BF16")):
        cfg = layout.transformer_config_json(t)
        shapes = layout.transformer_shapes(dict(t, out_channels=t["out_channels"] or
                                                t["in_channels"]))
        seeds["transformer"].append({
            "config.json": json.dumps(cfg, indent=2, sort_keys=True).encode(),
            "diffusion_pytorch_model.safetensors": _st_bytes(tmp, shapes, dtype, rng)})
    # two shards, as large checkpoints are published
    shapes = layout.transformer_shapes(TRANSFORMER)
    names = sorted(shapes)
    half = len(names) // 2
    seeds["transformer"].append({
        "config.json": json.dumps(layout.transformer_config_json(TRANSFORMER)).encode(),
        "diffusion_pytorch_model-00001-of-00002.safetensors": _st_bytes(
            tmp, {n: shapes[n] for n in names[:half]}, "F32", rng),
        "diffusion_pytorch_model-00002-of-00002.safetensors": _st_bytes(
            tmp, {n: shapes[n] for n in names[half:]}, "F32", rng, {})})
    m = MT5
    seeds["text_encoder"].append({
        "config.json": json.dumps(layout.mt5_config_json(m), indent=2).encode(),
        "model.safetensors": _st_bytes(tmp, layout.mt5_encoder_shapes(m), "F32", rng),
        "spiece.model": b"\x0a\x05\x0a\x01a\x15\x00\x00\x00\x00"})
    m2 = {k: v for k, v in layout.mt5_config_json(m).items()
          if k not in ("relative_attention_num_buckets", "feed_forward_proj",
                       "layer_norm_epsilon", "relative_attention_max_distance")}
    seeds["text_encoder"].append({
        "config.json": json.dumps(m2).encode(),
        "model.safetensors": _st_bytes(tmp, layout.mt5_encoder_shapes(
            dict(m, relative_attention_num_buckets=32)), "BF16", rng),
        "spiece.model": b"x"})
    seeds["scheduler"].append({"scheduler_config.json": json.dumps(SCHEDULER).encode()})
    seeds["scheduler"].append({"scheduler_config.json": json.dumps(
        dict(SCHEDULER, prediction_type="v_prediction", beta_schedule="scaled_linear",
             beta_start=0.00085, beta_end=0.012, num_train_timesteps=500)).encode()})
    seeds["scheduler"].append({"scheduler_config.json": b"{}"})
    if torch_ok:
        import torch
        sd = {"decoder.conv_in.conv.weight": torch.randn(4, 2, 3, 3, 3),
              "decoder.conv_in.conv.bias": torch.randn(4),
              "post_quant_conv.conv.weight": torch.randn(2, 2, 1, 1, 1),
              "encoder.conv_in.conv.weight": torch.randn(4, 3, 3, 3, 3)}
        for ckpt in ({"state_dict": sd},
                     {"ema_state_dict": {"module." + k: v for k, v in sd.items()},
                      "state_dict": {}},
                     {"state_dict": {"gen_model": sd}}):
            buf = io.BytesIO()
            torch.save(ckpt, buf)
            seeds["vae"].append({"checkpoint.ckpt": buf.getvalue(),
                                 "config.json": b'{"hidden_size": 32, "z_channels": 4}'})
    return seeds


# ---------------------------------------------------------------------------------------
# mutations

class Mutator:
    def __init__(self, rng):
        self.r = rng

    def bytes_(self, data):
        r = self.r
        b = bytearray(data)
        op = r.randrange(10)
        pos = r.randrange(len(b) + 1)
        if op == 0 and b:  # bit flip
            i = min(pos, len(b) - 1)
            b[i] ^= 1 << r.randrange(8)
        elif op == 1 and b:  # random byte
            b[min(pos, len(b) - 1)] = r.randrange(256)
        elif op == 2:  # interesting bytes, overwritten
            v = r.choice(BYTES)
            b[pos:pos + len(v)] = v
        elif op == 3:  # inserted
            b[pos:pos] = r.choice(BYTES) * r.choice((1, 1, 2, 64))
        elif op == 4 and b:  # deleted
            del b[pos:pos + r.choice((1, 1, 4, 64, 4096))]
        elif op == 5:  # truncated
            del b[r.randrange(len(b) + 1):]
        elif op == 6:  # extended
            b += bytes(r.choice((1, 7, 8, 4096)))
        elif op == 7 and len(b) >= 8:  # the safetensors length prefix
            n = struct.unpack("<Q", bytes(b[:8]))[0]
            v = r.choice([0, 1, 2, 7, 8, n - 1, n + 1, n + 8, len(b) - 8, len(b) - 7,
                          len(b), 100 << 20, (100 << 20) + 1, 1 << 62, (1 << 64) - 1,
                          r.randrange(1 << 64)])
            b[:8] = struct.pack("<Q", v % (1 << 64))
        elif op == 8:  # a copied block
            if b:
                i = r.randrange(len(b))
                blk = b[i:i + r.choice((1, 4, 8, 32, 256))]
                b[pos:pos] = blk
        elif op == 9 and b:  # a float32 in the data replaced by a special value
            i = r.randrange(max(1, len(b) // 4)) * 4
            b[i:i + 4] = struct.pack("<f", r.choice((float("nan"), float("inf"), 3e38,
                                                     -float("inf"), 1e-45)))
        return bytes(b)

    def value(self, v, depth=0):
        """A mutated copy of JSON value v (a random node of its tree changed)."""
        r = self.r
        if isinstance(v, dict) and v and r.random() < 0.75 and depth < 40:
            k = r.choice(list(v))
            v = dict(v)
            op = r.randrange(8)
            if op == 0:
                del v[k]
            elif op == 1:
                v[r.choice([k + "x", "", "__metadata__", "dtype", "shape", "data_offsets",
                            "num_layers", "sample_size", "out_channels", k])] = \
                    self.leaf(v.get(k))
            elif op == 2:  # renamed
                v[r.choice([k + ".x", k[:-1], "x" + k, k.replace("0", "1")])] = v.pop(k)
            else:
                v[k] = self.value(v[k], depth + 1)
            return v
        if isinstance(v, list) and v and r.random() < 0.75 and depth < 40:
            v = list(v)
            i = r.randrange(len(v))
            op = r.randrange(6)
            if op == 0:
                del v[i]
            elif op == 1:
                v.insert(i, self.leaf(v[i]))
            elif op == 2:
                v.append(v[i])
            else:
                v[i] = self.value(v[i], depth + 1)
            return v
        return self.leaf(v)

    def leaf(self, v):
        r = self.r
        op = r.randrange(6)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or op < 2:
            if op == 0:  # nested a few levels
                x = r.choice(INTERESTING)
                for _ in range(r.randrange(1, 30)):
                    x = [x] if r.random() < 0.5 else {"a": x}
                return x
            return r.choice(INTERESTING)
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                return r.choice(INTERESTING)
            return r.choice([v * 2, -v, v + 1, 0.0, v * 1e300, float(int(v)), int(v), str(v)])
        if abs(v) > 1 << 256:
            return r.choice(INTERESTING_INTS)
        return r.choice([v + 1, v - 1, v * 2, v // 2, -v, 0, v * 1024, v ** 2, v + (1 << 32),
                         float(v), str(v), [v], v + 0.5, r.choice(INTERESTING_INTS)])

    def text(self, s):
        """JSON text mutations that the tree cannot express."""
        r = self.r
        op = r.randrange(4)
        pos = r.randrange(len(s) + 1)
        if op == 0:  # deep nesting
            k = r.choice((100, 990, 1100, 5000, 100000))
            inner = "[" * k + "1" + "]" * k if r.random() < 0.5 else '{"a":' * k + "1" + "}" * k
            if r.random() < 0.5:
                return inner
            m = re.search(r":\s*", s[pos:])
            if m:
                j = pos + m.end()
                return s[:j] + inner + "," + s[j:] if r.random() < 0.5 else s[:j] + inner
            return inner
        if op == 1:  # a number token made huge or odd
            m = re.search(r"-?\d+(\.\d+)?", s[pos:])
            if m:
                j, e = pos + m.start(), pos + m.end()
                return s[:j] + r.choice(["1" + "0" * 5000, "1e400", "-1e400", "NaN", "-0",
                                         "Infinity", "1.0", "0x10", "00", "1e-400"]) + s[e:]
            return s
        if op == 2:  # duplicated key
            m = re.search(r'"[^"]*"\s*:\s*[^,}]+', s[pos:])
            if m:
                j = pos + m.end()
                return s[:j] + "," + m.group(0) + s[j:]
            return s
        return r.choice(["", "null", "[]", "1", '"x"', "{", "{}" * 2, "\ufeff{}", s + "x"])

    def json_file(self, data):
        r = self.r
        try:
            v = json.loads(data)
        except (ValueError, RecursionError):
            return self.bytes_(data)
        for _ in range(r.choice((1, 1, 2, 3))):
            v = self.value(v)
        s = json.dumps(v, indent=r.choice((None, 2)))
        if r.random() < 0.1:
            s = self.text(s)
        return s.encode("utf-8", "surrogatepass")

    def safetensors(self, data):
        """Header-aware: the JSON header mutated (tensor entries' dtype, shape, offsets
        with domain knowledge) and re-framed with a right (mostly) length prefix."""
        r = self.r
        if len(data) < 8 or r.random() < 0.35:
            return self.bytes_(data)
        n = struct.unpack("<Q", data[:8])[0]
        try:
            h = json.loads(data[8:8 + n])
        except (ValueError, RecursionError):
            return self.bytes_(data)
        body = data[8 + n:]
        if not isinstance(h, dict):
            return self.bytes_(data)
        for _ in range(r.choice((1, 1, 2))):
            names = [k for k in h if k != "__metadata__" and isinstance(h[k], dict)]
            op = r.randrange(10)
            if names and op < 6:
                name = r.choice(names)
                e = dict(h[name])
                if op == 0:
                    e["dtype"] = r.choice(ST_DTYPES)
                elif op == 1:
                    s = e.get("shape")
                    if isinstance(s, list) and s and r.random() < 0.7:
                        s = list(s)
                        i = r.randrange(len(s))
                        s[i] = r.choice([0, -1, 1, s[i] + 1 if isinstance(s[i], int) else 1,
                                         (1 << 62), (1 << 64), 1 << 31, 2.0, "4", None])
                        e["shape"] = s
                    else:
                        e["shape"] = r.choice([[], [0], [1 << 40, 1 << 40], "x", None,
                                               [1] * 1000, {"0": 1}, [[2]]])
                elif op == 2:
                    o = e.get("data_offsets")
                    if isinstance(o, list) and len(o) == 2 and all(
                            isinstance(x, int) for x in o):
                        b, en = o
                        size = len(body)
                        e["data_offsets"] = r.choice([
                            [en, b], [b, en + 1], [b + 1, en], [b - 1, en - 1], [b, en + 4],
                            [b, size], [b, size + 1], [size, size], [b, b], [-4, en],
                            [b, (1 << 63)], [b, (1 << 64) + 4], [b + 0.0, en], [b, en, 0],
                            [b], None, [str(b), en]])
                    else:
                        e["data_offsets"] = self.leaf(o)
                elif op == 3:
                    if e:
                        del e[r.choice(list(e))]
                elif op == 4:  # another tensor's entry
                    e = dict(h[r.choice(names)])
                else:
                    h[name] = self.leaf(e)
                    continue
                h[name] = e
            elif names and op == 6:  # renamed / removed / copied under a new name
                name = r.choice(names)
                v = h.pop(name)
                if r.random() < 0.7:
                    h[r.choice([name + "x", name.replace("0", "1"), "__metadata__", ""])] = v
            elif op == 7:
                h["__metadata__"] = self.leaf(h.get("__metadata__"))
            else:
                h = self.value(h)
                if not isinstance(h, dict):
                    break
        try:
            text = json.dumps(h, separators=(",", ":")).encode("utf-8", "surrogatepass")
        except (ValueError, RecursionError):
            return self.bytes_(data)
        if r.random() < 0.05:
            text = self.text(text.decode("utf-8", "surrogatepass")).encode(
                "utf-8", "surrogatepass")
        text += b" " * (-len(text) % 8)
        if r.random() < 0.2:  # the data section too
            body = self.bytes_(body) if body else body
        ln = len(text)
        if r.random() < 0.05:
            ln = r.choice([max(ln - 1, 0), ln + 1, ln + 8, 0, 1 << 40])
        return struct.pack("<Q", ln) + text + body

    def checkpoint(self):
        """A VAE checkpoint.ckpt built from a mutated structure (torch.save): containers
        swapped for other values, tensors of other dtypes and shapes, NaN, names that are
        not strings."""
        import torch
        r = self.r
        sd = {"decoder.conv_in.conv.weight": torch.randn(4, 2, 3, 3, 3),
              "decoder.conv_in.conv.bias": torch.randn(4),
              "post_quant_conv.conv.weight": torch.randn(2, 2, 1, 1, 1)}
        odd = [torch.zeros(0), torch.tensor(1.5), torch.ones(2, dtype=torch.int64),
               torch.ones(2, dtype=torch.bool), torch.ones(2, dtype=torch.complex64),
               torch.tensor([float("nan"), 1.0]), torch.tensor([float("inf")]),
               torch.ones(2, dtype=torch.float16), torch.ones(2, dtype=torch.bfloat16),
               torch.ones(4)[::2], torch.ones(2, dtype=torch.float64), None, 3, "x", [1],
               {"a": torch.ones(1)}, (torch.ones(1),)]
        for _ in range(r.choice((1, 2))):
            k = r.choice(list(sd) + [7, "decoder.x", "module.decoder.conv_in.y"])
            sd[k] = r.choice(odd)
        ckpt = r.choice([{"state_dict": sd}, {"ema_state_dict": sd},
                         {"ema_state_dict": {"module." + k if isinstance(k, str) else k: v
                                             for k, v in sd.items()}, "state_dict": {}},
                         {"state_dict": {"gen_model": sd}}, {"state_dict": r.choice(odd)},
                         {"ema_state_dict": r.choice(odd), "state_dict": sd},
                         {"state_dict": {"gen_model": r.choice(odd)}}, r.choice(odd), sd, {}])
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        return buf.getvalue()

    def files(self, files, target):
        r = self.r
        files = dict(files)
        if target == "vae" and r.random() < 0.5:
            files["checkpoint.ckpt"] = self.checkpoint()
            return files
        for _ in range(r.choice((1, 1, 1, 2, 3))):
            op = r.random()
            if op < 0.03 and files:
                del files[r.choice(sorted(files))]
                continue
            if op < 0.06 and target in ("transformer", "text_encoder"):
                st = [k for k in files if k.endswith(".safetensors")]
                if st:  # a second shard (same or mutated tensors), or a stray file
                    k = r.choice(st)
                    extra = ("diffusion_pytorch_model-extra.safetensors"
                             if target == "transformer" else "model-extra.safetensors")
                    files[extra] = self.safetensors(files[k]) if r.random() < 0.5 else files[k]
                elif r.random() < 0.5:
                    files["model.bin" if target == "text_encoder"
                          else "diffusion_pytorch_model.bin"] = b"PK\x03\x04junk"
                continue
            k = r.choice(sorted(files)) if files else None
            if k is None:
                break
            try:
                if k.endswith(".json") and r.random() < 0.8:
                    files[k] = self.json_file(files[k])
                elif k.endswith(".safetensors"):
                    files[k] = self.safetensors(files[k])
                else:
                    files[k] = self.bytes_(files[k])
            except (ValueError, TypeError, OverflowError, RecursionError):
                # a structure the mutator's own JSON cannot take (NaN to int, an integer
                # past str()'s digit limit, ...): bytes instead
                files[k] = self.bytes_(files[k])
        return files


# ---------------------------------------------------------------------------------------
# one execution

class Hang(Exception):
    pass


class Finding(Exception):
    """An oracle's complaint about an accepted input."""


def _on_alarm(signum, frame):
    raise Hang("execution ran past the time limit")


def write_folder(folder, files):
    if os.path.isdir(folder):
        for f in os.listdir(folder):
            p = os.path.join(folder, f)
            if os.path.isdir(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
    else:
        os.makedirs(folder)
    for name, data in files.items():
        if "/" in name:
            os.makedirs(os.path.join(folder, os.path.dirname(name)), exist_ok=True)
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)


def _strict(cfg):
    """A converted config must be strict JSON (no NaN or Infinity) with the engine's types."""
    text = json.dumps(cfg, allow_nan=False)
    c = json.loads(text)
    for sec, keys in (("dit", ("hidden", "depth", "heads", "head_dim", "in_channels",
                               "ffn_hidden")),
                      ("text_encoder", ("vocab_size", "d_model", "n_layers", "n_heads",
                                        "d_kv", "d_ff", "rel_buckets", "rel_max_distance")),
                      ("video", ("frames", "height", "width")),
                      ("sampler", ("steps", "train_timesteps"))):
        for k in keys:
            v = c[sec][k]
            if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 1 << 31:
                raise Finding(f"converted config: {sec}.{k} = {v!r}")
    for k in ("beta_start", "beta_end", "guidance"):
        v = c["sampler"][k]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise Finding(f"converted config: sampler.{k} = {v!r}")
    for v in c["dit"]["rope_scale"] + c["dit"]["patch"]:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise Finding(f"converted config: dit.rope_scale/patch has {v!r}")


def _check_output(path):
    """What the converter wrote must read back: tensors of the shapes its header gives."""
    header, _, start = st_stream.read_header(path)
    for name, info in header.items():
        n = sum(c.size for c in st_stream.read_chunks(path, info, start))
        want = 1
        for s in info["shape"]:
            want *= s
        if n != want:
            raise Finding(f"{path}: {name} has {n} values for shape {info['shape']}")


class Runner:
    def __init__(self, work, seeds, rng):
        self.work = work
        self.seeds = seeds
        self.r = rng
        self.base_t = json.loads(seeds["transformer"][0]["config.json"])
        self.base_m = json.loads(seeds["text_encoder"][0]["config.json"])
        self.out = os.path.join(work, "out")
        os.makedirs(self.out, exist_ok=True)

    def folder(self, target):
        return os.path.join(self.work, target)

    def run(self, target, files, opts):
        """Runs the converter on files (as target's folder); returns the outcome: "ok" or
        the ConvertError's message. Other exceptions propagate."""
        folder = self.folder(target)
        write_folder(folder, files)
        dtype = opts.get("dtype", "F32")
        if target == "transformer":
            t = co.convert_transformer(folder, os.path.join(self.out, "dit.safetensors"), dtype)
            _check_output(os.path.join(self.out, "dit.safetensors"))
            att = co.attention_section(opts.get("attention", "full"), opts.get("plan"),
                                       t["num_layers"])
            _strict(co.vdit_config(t, self.base_m, dict(co.OSP_SAMPLER), attention=att))
        elif target == "text_encoder":
            m, _ = co.convert_text_encoder(folder, os.path.join(self.out, "te.safetensors"),
                                           dtype)
            _check_output(os.path.join(self.out, "te.safetensors"))
            _strict(co.vdit_config(self.base_t, m, dict(co.OSP_SAMPLER)))
        elif target == "scheduler":
            s = co.sampler_from(os.path.join(folder, "scheduler_config.json"),
                                opts.get("steps"), opts.get("guidance"))
            _strict(co.vdit_config(self.base_t, self.base_m, s))
        elif target == "safetensors":  # the reader alone: every tensor of every shard
            src = co.Source(folder, ["*.safetensors"])
            for name in sorted(src.tensors):
                shape = src.shape(name)
                n = sum(c.size for c in src.chunks(name)())
                want = 1
                for s in shape:
                    want *= s
                if n != want:
                    raise Finding(f"{name}: {n} values read for shape {shape}")
        elif target == "vae":
            co.convert_vae(folder, os.path.join(self.out, "vae"), dtype)
            _check_output(os.path.join(self.out, "vae", "vae.safetensors"))
        elif target == "main":  # files: transformer/*, text_encoder/*, scheduler/*
            argv = ["--transformer", os.path.join(folder, "transformer"),
                    "--text-encoder", os.path.join(folder, "text_encoder"),
                    "--scheduler", os.path.join(folder, "scheduler", "scheduler_config.json")]
            argv += opts.get("argv", [])
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                rc = co.main(argv + [os.path.join(self.out, "model")])
            msg = err.getvalue()
            if rc not in (0, 1) or (rc == 1) != bool(msg):
                raise Finding(f"main returned {rc} with stderr {msg!r}")
            if rc == 1:
                raise co.ConvertError(msg.rstrip("\n").removeprefix("convert_osp: "))
            with open(os.path.join(self.out, "model", "config.json"), "rb") as f:
                _strict(json.load(f))
        else:
            raise AssertionError(target)
        return "ok"

    def opts(self, target):
        r = self.r
        o = {"dtype": r.choice(("F32", "BF16"))}  # main's two (--keep-f32 or not)
        if target == "transformer" and r.random() < 0.3:
            o["attention"] = "tile"
            o["plan"] = r.choice(("1", "0", "1,0", "-1", "x", ""))
        if target == "scheduler":
            o["steps"] = r.choice((None, None, 0, 1, 20, 1000))
            o["guidance"] = r.choice((None, 7.5, 0.0))
        return o


def message_ok(msg, work):
    """One line, naming the input (a path under the work folder) or the bad option."""
    return (bool(msg) and "\n" not in msg and "\r" not in msg
            and (work in msg or msg.startswith(("--plan", "--steps", "--guidance"))))


def signature(target, outcome):
    s = re.sub(r"/[^\s:]*", "PATH", outcome)
    s = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "N", s)
    return target + ":" + s[:120]


# ---------------------------------------------------------------------------------------
# the table of known-bad inputs: each once escaped as another exception (or a hang, or a
# huge allocation); each must now be refused with ConvertError naming what is wrong.

def _st(header, body=b"", length=None):
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text) if length is None else length) + text + body


def _tweak_header(data, fn):
    n = struct.unpack("<Q", data[:8])[0]
    h = json.loads(data[8:8 + n])
    fn(h)
    return _st(h, data[8 + n:])


def _cfg(data, **kw):
    c = json.loads(data)
    for k, v in kw.items():
        if v is KeyError:
            c.pop(k, None)
        else:
            c[k] = v
    return json.dumps(c).encode()


def _first_tensor(h):
    return h[sorted(k for k in h if k != "__metadata__")[0]]


def _set(d, **kw):
    d.update(kw)
    return d


T_ST = "diffusion_pytorch_model.safetensors"
KNOWN_BAD = [
    # (what, target, {file: fn(seed bytes) -> bytes}, expected words in the message)
    ("safetensors shorter than its length prefix", "transformer",
     {T_ST: lambda d: d[:5]}, "not a safetensors file"),
    ("safetensors header a JSON list", "transformer",
     {T_ST: lambda d: _st([1, 2])}, "not a safetensors file"),
    ("safetensors header nested 100000 deep", "transformer",
     {T_ST: lambda d: struct.pack("<Q", 200000) + b"[" * 100000 + b"]" * 100000},
     "not a safetensors file"),
    ("tensor entry not an object", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: h.update(
         {sorted(k for k in h if k != "__metadata__")[0]: 5}))}, "not a safetensors file"),
    ("dtype I64", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).update(dtype="I64",
                                                                         shape=[3]))},
     "only F32, F16 and BF16"),
    ("dtype unknown", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).update(dtype="F\n32"))},
     "dtype \"F\\n32\""),
    ("dtype missing", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).pop("dtype"))}, "dtype"),
    ("data_offsets beyond the file", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).update(
         data_offsets=[0, 1 << 40]))}, "data_offsets"),
    ("data_offsets reversed", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).update(
         data_offsets=_first_tensor(h)["data_offsets"][::-1]))}, "data_offsets"),
    ("data_offsets not ints", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).update(
         data_offsets=["0", 4]))}, "data_offsets"),
    ("data span not the shape's size", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).update(
         data_offsets=[0, 4]))}, "data_offsets"),
    ("shape of 2^64", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).update(
         shape=[1 << 64]))}, "not those of F32 [18446744073709551616]"),
    ("shape with a string", "transformer",
     {T_ST: lambda d: _tweak_header(d, lambda h: _first_tensor(h).update(shape=["4"]))},
     "shape"),
    ("NaN in the weights (bf16 output)", "transformer",
     {T_ST: lambda d: d[:-4] + struct.pack("<f", float("nan"))}, "not finite"),
    ("config.json a list", "transformer", {"config.json": lambda d: b"[1]"}, "JSON object"),
    ("config.json nested 100000 deep", "transformer",
     {"config.json": lambda d: b"[" * 100000 + b"]" * 100000}, "config.json"),
    ("num_layers a string", "transformer",
     {"config.json": lambda d: _cfg(d, num_layers="2")}, "num_layers"),
    ("num_layers 10^9", "transformer",
     {"config.json": lambda d: _cfg(d, num_layers=10 ** 9)}, "num_layers"),
    ("attention_head_dim negative", "transformer",
     {"config.json": lambda d: _cfg(d, attention_head_dim=-6)}, "attention_head_dim"),
    ("sample_size of one entry", "transformer",
     {"config.json": lambda d: _cfg(d, sample_size=[8])}, "sample_size"),
    ("sample_size_t a string", "transformer",
     {"config.json": lambda d: _cfg(d, sample_size_t="3")}, "sample_size_t"),
    ("interpolation_scale_h a string", "transformer",
     {"config.json": lambda d: _cfg(d, interpolation_scale_h="x")}, "interpolation_scale_h"),
    ("interpolation_scale_t NaN", "transformer",
     {"config.json": lambda d: _cfg(d, interpolation_scale_t=float("nan"))},
     "NaN is not a JSON number"),
    ("interpolation_scale_t 1e400", "transformer",
     {"config.json": lambda d: _cfg(d, interpolation_scale_t=0.5).replace(b"0.5", b"1e400")},
     "interpolation_scale_t"),
    ("norm_eps a list", "transformer",
     {"config.json": lambda d: _cfg(d, norm_eps=[1])}, "norm_eps"),
    ("out_channels a string", "transformer",
     {"config.json": lambda d: _cfg(d, out_channels="x")}, "out_channels"),
    ("mT5 d_model a float", "text_encoder",
     {"config.json": lambda d: _cfg(d, d_model=4.0)}, "d_model"),
    ("mT5 relative_attention_num_buckets a string", "text_encoder",
     {"config.json": lambda d: _cfg(d, relative_attention_num_buckets="8")},
     "relative_attention_num_buckets"),
    ("mT5 layer_norm_epsilon a string", "text_encoder",
     {"config.json": lambda d: _cfg(d, layer_norm_epsilon="x")}, "layer_norm_epsilon"),
    ("mT5 feed_forward_proj with a newline", "text_encoder",
     {"config.json": lambda d: _cfg(d, feed_forward_proj="a\nb")}, "feed_forward_proj"),
    ("scheduler a list", "scheduler",
     {"scheduler_config.json": lambda d: b"[]"}, "JSON object"),
    ("scheduler num_train_timesteps a string", "scheduler",
     {"scheduler_config.json": lambda d: _cfg(d, num_train_timesteps="1000")},
     "num_train_timesteps"),
    ("scheduler beta_start NaN", "scheduler",
     {"scheduler_config.json": lambda d: _cfg(d, beta_start=float("nan"))}, "NaN"),
    ("scheduler beta_end below beta_start", "scheduler",
     {"scheduler_config.json": lambda d: _cfg(d, beta_end=0.00001)}, "beta_end"),
    ("scheduler beta_schedule squaredcos_cap_v2", "scheduler",
     {"scheduler_config.json": lambda d: _cfg(d, beta_schedule="squaredcos_cap_v2")},
     "beta_schedule"),
    ("scheduler _class_name with a newline", "scheduler",
     {"scheduler_config.json": lambda d: _cfg(d, _class_name="X\nY")}, "_class_name"),
]


def _vae_structures():
    """vae_state_dict's input as torch.load returns it (no torch needed)."""
    yield "a list", []
    yield "ema_state_dict a list", {"ema_state_dict": [1]}
    yield "state_dict an int", {"state_dict": 5}
    yield "gen_model a list", {"state_dict": {"gen_model": []}}
    try:
        import torch
    except ImportError:
        return
    yield "ema_state_dict a tensor", {"ema_state_dict": torch.ones(3)}
    yield "state_dict a tensor", {"state_dict": torch.ones(3)}


def replay_known_bad(runner, seeds):
    failures = 0
    for what, ckpt in _vae_structures():
        try:
            co.vae_state_dict(ckpt, os.path.join(runner.work, "checkpoint.ckpt"))
            outcome = "accepted"
        except co.ConvertError as e:
            outcome = str(e)
        except Exception as e:  # noqa: BLE001
            outcome = f"{type(e).__name__}: {e}"[:300]
        if "checkpoint.ckpt: " not in outcome:
            failures += 1
            print(f"known-bad checkpoint not refused as expected: {what}: {outcome}")
    for what, target, edits, words in KNOWN_BAD:
        files = dict(seeds[target][0])
        for k, fn in edits.items():
            files[k] = fn(files[k])
        opts = {"dtype": "BF16"}
        try:
            runner.run(target, files, opts)
            outcome = "accepted"
        except co.ConvertError as e:
            outcome = str(e)
        except Exception as e:  # noqa: BLE001 - the point
            outcome = f"{type(e).__name__}: {e}"[:300]
        ok = (outcome != "accepted" and words in outcome
              and message_ok(outcome, runner.work) and not outcome.startswith(
                  tuple(n + ":" for n in ("Hang", "MemoryError", "RecursionError"))))
        if not ok:
            failures += 1
            print(f"known-bad input not refused as expected: {what}: {outcome}")
    return failures


# ---------------------------------------------------------------------------------------

def save_finding(findings, target, files, opts, tb):
    h = hashlib.sha1(json.dumps([target, sorted((k, hashlib.sha1(v).hexdigest())
                                                for k, v in files.items())]).encode())
    d = os.path.join(findings, "crash-" + h.hexdigest()[:16])
    os.makedirs(d, exist_ok=True)
    write_folder(os.path.join(d, "input"), files)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump({"target": target, "opts": opts,
                   "traceback": tb}, f, indent=2)
    return d


def describe(files):
    out = []
    for k, v in sorted(files.items()):
        if k.endswith(".json"):
            out.append(f"  {k}: {v[:400]!r}{' ...' if len(v) > 400 else ''}")
        elif k.endswith(".safetensors") and len(v) >= 8:
            n = struct.unpack("<Q", v[:8])[0]
            out.append(f"  {k}: {len(v)} bytes, length prefix {n}, header "
                       f"{v[8:8 + min(n, 400)]!r}")
        else:
            out.append(f"  {k}: {len(v)} bytes {v[:40]!r}")
    return "\n".join(out)


def main_input(mut, rng, corpus):
    """main()'s input: the three folders from the corpus (mostly seeds), one mutated."""
    sub = rng.choice(("transformer", "text_encoder", "scheduler"))
    files = {}
    for target in ("transformer", "text_encoder", "scheduler"):
        f = rng.choice(corpus[target])
        if target == sub:
            f = mut.files(f, target)
        files.update({target + "/" + k: v for k, v in f.items()})
    argv = []
    if rng.random() < 0.5:
        argv.append("--keep-f32")
    if rng.random() < 0.2:
        argv += ["--attention", "tile", "--plan", rng.choice(("1", "1,0", "0"))]
    return files, {"argv": argv}


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def vm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("VDIT_FUZZ_SECONDS") or 25),
                    help="stop after S seconds (default: VDIT_FUZZ_SECONDS, else 25)")
    ap.add_argument("--runs", type=int, default=-1, help="stop after N executions (-1: none)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--findings", default="fuzz-convert-findings",
                    help="reproducers go to DIR/crash-*/")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds for one execution")
    ap.add_argument("--memory-mb", type=int, default=1024,
                    help="address space an execution may add (MemoryError past it)")
    ap.add_argument("--keep-going", action="store_true",
                    help="record every distinct finding instead of stopping at the first")
    ap.add_argument("--skip-known-bad", action="store_true",
                    help="fuzz without replaying KNOWN_BAD first")
    ap.add_argument("--no-torch", action="store_true", help="leave the VAE pickle out")
    ap.add_argument("--replay", nargs="+", metavar="DIR", help="run saved reproducers")
    a = ap.parse_args()

    torch_ok = False
    if not a.no_torch:
        try:
            import torch
            torch_ok = torch.__version__ is not None
        except ImportError:
            pass
    seed = a.seed if a.seed is not None else int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    work = tempfile.mkdtemp(prefix="vdit-fuzz-convert-", dir=shm)
    try:
        seeds = make_seeds(work, torch_ok)
        runner = Runner(work, seeds, rng)
        signal.signal(signal.SIGALRM, _on_alarm)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = vm_bytes() + (a.memory_mb << 20)
        if hard == resource.RLIM_INFINITY or hard >= limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        print(f"INFO: Seed: {seed}")
        print(f"INFO: fuzz_convert: convert_osp.py's readers; torch "
              f"{'on (VAE pickle fed)' if torch_ok else 'off (VAE pickle left out)'}; "
              f"work folder {work}", flush=True)
        if a.replay:
            return replay(a.replay, runner)
        bad = 0 if a.skip_known_bad else replay_known_bad(runner, seeds)
        for target in ("transformer", "text_encoder", "scheduler", "vae"):
            for files in seeds[target]:
                try:
                    runner.run(target, files, {"dtype": "BF16"})
                except Exception:  # noqa: BLE001
                    bad += 1
                    print(f"seed of {target} not converted:\n{traceback.format_exc()}")
        print(f"INFO: {len(KNOWN_BAD)} known-bad inputs replayed, "
              f"{sum(len(v) for v in seeds.values())} seeds converted, {bad} failed",
              flush=True)
        if bad:
            return 1
        return fuzz(a, runner, seeds, rng, torch_ok, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def execute(runner, target, files, opts, timeout):
    """Returns (outcome, traceback or None)."""
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        try:
            return runner.run(target, files, opts), None
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except co.ConvertError as e:
        msg = str(e)
        if not message_ok(msg, runner.work):
            return "bad-message", f"ConvertError message not one line naming the input: {msg!r}"
        return msg, None
    except Exception as e:  # noqa: BLE001 - anything else is a finding
        return f"{type(e).__name__}", traceback.format_exc()


def replay(dirs, runner):
    bad = 0
    for d in dirs:
        with open(os.path.join(d, "meta.json")) as f:
            meta = json.load(f)
        inp = os.path.join(d, "input")
        files = {n: _file(os.path.join(inp, n)) for n in sorted(os.listdir(inp))}
        target, opts = meta["target"], meta["opts"]
        outcome, tb = execute(runner, target, files, opts, 30)
        print(f"{d}: {target}: {outcome}")
        if tb:
            print(tb)
            bad += 1
    return 1 if bad else 0


def fuzz(a, runner, seeds, rng, torch_ok, work):
    mut = Mutator(rng)
    targets = ["transformer"] * 30 + ["text_encoder"] * 20 + ["scheduler"] * 12 + \
        ["safetensors"] * 25 + ["main"] * 5 + (["vae"] * 8 if torch_ok else [])
    corpus = {t: list(v) for t, v in seeds.items()}
    corpus["safetensors"] = [{k: v for k, v in f.items() if k.endswith(".safetensors")}
                             for f in seeds["transformer"] + seeds["text_encoder"]]
    seeds_of = {t: list(v) for t, v in corpus.items()}  # half the inputs start from these
    seen = set()
    mutator_errors = 0
    accepted = {}
    findings = {}
    execs = 0
    added = 0
    slowest = 0.0
    start = time.monotonic()
    next_report = 1
    deadline = start + a.seconds
    while (a.runs < 0 or execs < a.runs) and time.monotonic() < deadline:
        target = rng.choice(targets)
        try:
            if target == "main":
                files, opts = main_input(mut, rng, corpus)
            else:
                pool = seeds_of[target] if rng.random() < 0.5 else corpus[target]
                files = mut.files(rng.choice(pool), target)
                opts = runner.opts(target)
        except Exception:  # noqa: BLE001 - the mutator's own bug: reported, not fatal
            mutator_errors += 1
            if mutator_errors == 1:
                print(f"WARNING: the mutator failed:\n{traceback.format_exc()}", flush=True)
            continue
        t0 = time.monotonic()
        outcome, tb = execute(runner, target, files, opts, a.timeout)
        dt = time.monotonic() - t0
        slowest = max(slowest, dt)
        execs += 1
        if outcome == "ok":
            accepted[target] = accepted.get(target, 0) + 1
        if tb is not None:
            key = tb.strip().splitlines()[-1][:80] + "|" + "".join(
                ln for ln in tb.splitlines() if ln.strip().startswith("File")
                and "fuzz_convert" not in ln)[-300:]
            if key not in findings:
                d = save_finding(a.findings, target, files, opts, tb)
                findings[key] = d
                print(f"==ERROR: fuzz_convert: {outcome} on a {target} input "
                      f"(execution {execs})\n{describe(files)}\n{tb}\nreproducer: {d}",
                      flush=True)
                if not a.keep_going:
                    break
        else:
            sig = signature(target, outcome)
            if sig not in seen and len(seen) < 20000:  # (the messages quote the input)
                seen.add(sig)
                if target != "main" and len(corpus[target]) < 400:
                    corpus[target].append(files)
                    added += 1
        if execs >= next_report:
            el = time.monotonic() - start
            print(f"#{execs}\tpulse  corp: {sum(len(v) for v in corpus.values())} "
                  f"outcomes: {len(seen)} exec/s: {int(execs / max(el, 1e-9))} "
                  f"rss: {rss_mb()}Mb", flush=True)
            next_report = next_report * 2 if next_report < 1 << 16 else next_report + (1 << 16)
    el = time.monotonic() - start
    print(f"Done {execs} runs in {int(el)} second(s)")
    print(f"stat::number_of_executed_units: {execs}")
    print(f"stat::average_exec_per_sec:     {int(execs / max(el, 1e-9))}")
    print(f"stat::new_units_added:          {added}")
    print(f"stat::slowest_unit_time_sec:    {int(slowest)}")
    print(f"stat::peak_rss_mb:              {rss_mb()}")
    print(f"stat::findings:                 {len(findings)}")
    print(f"stat::mutator_errors:           {mutator_errors}")
    print("stat::accepted:                 " + " ".join(f"{t}={n}"
                                                         for t, n in sorted(accepted.items())))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
