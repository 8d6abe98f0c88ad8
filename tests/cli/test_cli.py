#!/usr/bin/env python3
"""Tests of the `vdit` command line, run by meson: test_cli.py VDIT CASE.

Each case runs the real program on models/tiny (or its config with random weights)
and checks outputs, exit statuses and messages. Exit 0 pass, 1 fail, 77 skip."""

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

VDIT = sys.argv[1] if len(sys.argv) > 1 else "vdit"
ROOT = os.environ.get("VDIT_SOURCE_ROOT",
                      os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TINY = os.path.join(ROOT, "models", "tiny")
PROMPT = "a red ball bouncing"
# Few steps, one thread (the tiny model gains nothing from more, and a busy machine
# makes spinning threads slow) keep each case to a few seconds on 2 cores.
FAST = ["--steps", "2", "--threads", "1", "--device", "cpu"]


class Failure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def run(*args, timeout=120):
    proc = subprocess.run([VDIT, *args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode < 0:
        raise Failure(f"vdit {' '.join(args)} died of signal {-proc.returncode}:\n{proc.stderr}")
    return proc


def run_ok(*args):
    proc = run(*args)
    check(proc.returncode == 0,
          f"vdit {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def tiny_config():
    with open(os.path.join(TINY, "config.json")) as f:
        return json.load(f)


def generate(out, *extra, seed="1", frames=None):
    args = ["generate", "--model", TINY, "--prompt", PROMPT, "--seed", seed, "--out", out,
            *FAST, *extra]
    if frames is not None:
        args += ["--frames", str(frames)]
    return run_ok(*args)


def read_y4m(path):
    """Returns (header fields, list of frame byte strings); checks the structure."""
    with open(path, "rb") as f:
        data = f.read()
    end = data.index(b"\n")
    header = data[:end].split(b" ")
    check(header[0] == b"YUV4MPEG2", f"{path}: not a y4m stream: {header[0]!r}")
    fields = {h[:1].decode(): h[1:].decode() for h in header[1:]}
    w, h = int(fields["W"]), int(fields["H"])
    plane = {"444": 3, "420jpeg": 1.5, "420": 1.5}[fields.get("C", "420")]
    size = int(w * h * plane)
    frames, pos = [], end + 1
    while pos < len(data):
        check(data[pos:pos + 6] == b"FRAME\n", f"{path}: bad frame marker at byte {pos}")
        pos += 6
        check(pos + size <= len(data), f"{path}: truncated frame {len(frames)}")
        frames.append(data[pos:pos + size])
        pos += size
    return fields, frames


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    check(head[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG file")
    check(head[12:16] == b"IHDR", f"{path}: no IHDR chunk")
    return struct.unpack(">II", head[16:24])


def png_pixels(path):
    """Decodes an 8-bit RGB, non-interlaced PNG (what vdit writes) to rows of bytes."""
    with open(path, "rb") as f:
        data = f.read()
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            check((depth, colour, interlace) == (8, 2, 0), f"{path}: not 8-bit RGB")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * 3, [], bytearray(width * 3)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b, c = prev[i], prev[i - 3] if i >= 3 else 0
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def frame_counts():
    """Two valid frame counts for the tiny model (its temporal patch divides them)."""
    pt = tiny_config()["dit"]["patch"][0]
    return pt, 2 * pt


# ---- cases ---------------------------------------------------------------------------

def case_help():
    proc = run_ok("--help")
    for word in ("generate", "inspect", "bench step", "bench attention", "bench clip",
                 "search-masks"):
        check(word in proc.stdout, f"--help does not list {word!r}:\n{proc.stdout}")
    proc = run_ok("--version")
    check(proc.stdout.startswith("vdit "), f"--version printed {proc.stdout!r}")
    for sub in (["generate"], ["inspect"], ["bench", "step"], ["bench", "clip"]):
        proc = run_ok(*sub, "--help")
        check("Usage" in proc.stdout, f"vdit {' '.join(sub)} --help:\n{proc.stdout}")
    proc = run()
    check(proc.returncode == 2 and "Usage" in proc.stderr, "no command: expected usage, exit 2")
    proc = run("frobnicate")
    check(proc.returncode == 2 and "vdit: unknown command 'frobnicate'" in proc.stderr,
          f"unknown command: exit {proc.returncode}, {proc.stderr!r}")
    proc = run("bench")
    check(proc.returncode == 2 and "vdit:" in proc.stderr, "bench alone: expected exit 2")


def case_generate_y4m():
    cfg = tiny_config()
    for frames in frame_counts():
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "clip.y4m")
            generate(out, frames=frames)
            fields, data = read_y4m(out)
            check(len(data) == frames, f"asked for {frames} frames, the y4m has {len(data)}")
            check(int(fields["W"]) == cfg["video"]["width"] and
                  int(fields["H"]) == cfg["video"]["height"], f"y4m size {fields}")
            check(fields.get("C") == "444", f"expected C444, header has {fields}")
            check(fields["F"] == f"{int(cfg['video']['fps'])}:1", f"frame rate {fields['F']}")


def case_generate_png():
    cfg = tiny_config()
    size = (cfg["video"]["width"], cfg["video"]["height"])
    for frames in frame_counts():
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "frames") + "/"
            generate(out, frames=frames)
            names = sorted(os.listdir(out))
            want = [f"frame-{i:04d}.png" for i in range(frames)]
            check(names == want, f"asked for {frames} PNG frames, got {names}")
            for name in names:
                got = png_size(os.path.join(out, name))
                check(got == size, f"{name}: {got[0]}x{got[1]}, expected {size[0]}x{size[1]}")
    # An existing folder without the trailing slash is a folder too.
    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, frames=frame_counts()[0])
        check(len(os.listdir(tmp)) == frame_counts()[0], f"existing folder: {os.listdir(tmp)}")


def case_determinism():
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, n) for n in ("a.y4m", "b.y4m", "c.y4m")]
        frames = frame_counts()[0]
        generate(paths[0], seed="7", frames=frames)
        generate(paths[1], seed="7", frames=frames)
        generate(paths[2], seed="8", frames=frames)
        blobs = [open(p, "rb").read() for p in paths]
        check(blobs[0] == blobs[1], "same seed twice gave different bytes")
        check(blobs[0] != blobs[2], "different seeds gave identical bytes")
        # "--out -" streams the same bytes to stdout.
        proc = subprocess.run([VDIT, "generate", "--model", TINY, "--prompt", PROMPT, "--seed",
                               "7", "--frames", str(frames), "--out", "-", *FAST],
                              capture_output=True, timeout=120)
        check(proc.returncode == 0 and proc.stdout == blobs[0],
              f"--out - differs from the file (exit {proc.returncode})")
        # PNG frames hold the same pixels, so they repeat byte for byte too.
        a, b = os.path.join(tmp, "pa/"), os.path.join(tmp, "pb/")
        generate(a, seed="7", frames=frames)
        generate(b, seed="7", frames=frames)
        for name in os.listdir(a):
            check(open(a + name, "rb").read() == open(b + name, "rb").read(),
                  f"{name} differs between two runs with one seed")


def case_policies():
    """Each attention policy renders the whole clip; the tile mask changes the pixels."""
    with tempfile.TemporaryDirectory() as tmp:
        frames = 4 * frame_counts()[0]  # 4 latent frames: a 1:3 mask skips tiles
        blobs = {}
        for mode in ("full", "tile", "adaptive"):
            path = os.path.join(tmp, mode + ".y4m")
            generate(path, "--attention", mode, "--sparsity", "0.5", frames=frames)
            _, got = read_y4m(path)
            check(len(got) == frames, f"--attention {mode}: {len(got)} frames, not {frames}")
            blobs[mode] = open(path, "rb").read()
        check(blobs["full"] != blobs["tile"], "--attention tile gave the dense result")


def case_formats_agree():
    """The y4m and the PNG frames of one seed show the same picture: the y4m converted
    back to RGB (BT.601, limited range) is within rounding of the PNG pixels."""
    with tempfile.TemporaryDirectory() as tmp:
        frames = frame_counts()[0]
        y4m, png = os.path.join(tmp, "clip.y4m"), os.path.join(tmp, "png") + "/"
        generate(y4m, seed="3", frames=frames)
        generate(png, seed="3", frames=frames)
        fields, data = read_y4m(y4m)
        w, h = int(fields["W"]), int(fields["H"])
        worst = 0
        for index, frame in enumerate(data):
            pw, ph, rows = png_pixels(os.path.join(png, f"frame-{index:04d}.png"))
            check((pw, ph) == (w, h), f"PNG {pw}x{ph} vs y4m {w}x{h}")
            for y in range(h):
                for x in range(w):
                    i = y * w + x
                    luma = (frame[i] - 16) * 255 / 219
                    cb = (frame[w * h + i] - 128) * 255 / 224
                    cr = (frame[2 * w * h + i] - 128) * 255 / 224
                    rgb = (luma + 1.402 * cr, luma - 0.344136 * cb - 0.714136 * cr,
                           luma + 1.772 * cb)
                    for k in range(3):
                        worst = max(worst, abs(min(255, max(0, rgb[k])) - rows[y][3 * x + k]))
        check(worst <= 4, f"y4m and PNG pixels differ by up to {worst}")


def expect_error(args, status, words, out=None):
    proc = run(*args)
    label = "vdit " + " ".join(args)
    check(proc.returncode == status,
          f"{label}: exit {proc.returncode}, expected {status}\n{proc.stderr}")
    check(proc.stderr.startswith("vdit: "), f"{label}: message should start 'vdit: ':\n"
          f"{proc.stderr}")
    for w in words:
        check(w.lower() in proc.stderr.lower(), f"{label}: message lacks {w!r}:\n{proc.stderr}")
    if out is not None:
        check(not os.path.exists(out), f"{label}: left {out} behind after failing")


def case_errors():
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "clip.y4m")
        base = ["generate", "--model", TINY, "--out", out, *FAST]
        missing = os.path.join(tmp, "no-such-model")
        expect_error(["generate", "--model", missing, "--prompt", PROMPT, "--out", out],
                     1, ["no-such-model"], out)
        expect_error([*base, "--prompt", ""], 2, ["empty"], out)
        expect_error([*base, "--prompt", "   "], 2, ["empty"], out)
        expect_error(base, 2, ["--prompt"], out)
        expect_error(["generate", "--prompt", PROMPT, "--out", out], 2, ["--model"], out)
        expect_error(["generate", "--model", TINY, "--prompt", PROMPT], 2, ["--out"])
        pt = tiny_config()["dit"]["patch"][0]
        if pt > 1:
            expect_error([*base, "--prompt", PROMPT, "--frames", str(pt + 1)], 1,
                         [str(pt + 1)], out)
        expect_error([*base, "--prompt", PROMPT, "--frames", "abc"], 2, ["abc", "--frames"],
                     out)
        expect_error([*base, "--prompt", PROMPT, "--frames", "0"], 2, ["--frames"], out)
        expect_error([*base, "--prompt", PROMPT, "--steps", "-1"], 2, ["--steps"], out)
        expect_error([*base, "--prompt", PROMPT, "--guidance", "lots"], 2, ["lots"], out)
        expect_error([*base, "--prompt", PROMPT, "--seed", "-3"], 2, ["seed"], out)
        expect_error([*base, "--prompt", PROMPT, "--seed", "1x"], 2, ["seed"], out)
        expect_error([*base, "--prompt", PROMPT, "--attention", "sparse"], 2, ["sparse"], out)
        expect_error([*base, "--prompt", PROMPT, "--device", "tpu"], 2, ["tpu"], out)
        expect_error([*base, "--prompt", PROMPT, "--sparsity", "1.5"], 2, ["--sparsity"], out)
        expect_error([*base, "--prompt", PROMPT, "--bogus"], 2, ["--bogus"], out)
        expect_error([*base, "--prompt", PROMPT, "stray"], 2, ["stray"], out)
        mp4 = os.path.join(tmp, "clip.mp4")
        expect_error(["generate", "--model", TINY, "--prompt", PROMPT, "--out", mp4, *FAST], 2,
                     ["clip.mp4"], mp4)
        nodir = os.path.join(tmp, "missing", "clip.y4m")
        expect_error(["generate", "--model", TINY, "--prompt", PROMPT, "--out", nodir, *FAST],
                     1, ["missing"], nodir)
        check(os.listdir(tmp) == [], f"errors left files behind: {os.listdir(tmp)}")


def case_inspect():
    cfg = tiny_config()
    proc = run_ok("inspect", TINY)
    for word in ("parameters", "dtypes", "memory", "patch", "sampler", "attention",
                 cfg["name"]):
        check(word in proc.stdout, f"inspect output lacks {word!r}:\n{proc.stdout}")
    info = json.loads(run_ok("inspect", "--json", TINY).stdout)
    check(info["dit"]["patch"] == cfg["dit"]["patch"], f"patch {info['dit']['patch']}")
    check(info["dit"]["hidden"] == cfg["dit"]["hidden"], "hidden width")
    check(info["params"]["total"] > 0 and
          info["params"]["total"] == info["params"]["text_encoder"] + info["params"]["dit"],
          f"params {info['params']}")
    check(info["memory_bytes"]["f32"] > 0, f"memory {info['memory_bytes']}")
    check(info["dtypes"], "empty dtype summary")
    d, v = cfg["dit"], cfg["video"]
    per_frame = (v["height"] // d["patch"][1]) * (v["width"] // d["patch"][2])
    check(info["tokens_per_frame"] == per_frame, f"tokens per frame {info['tokens_per_frame']}")
    expect_error(["inspect", os.path.join(TINY, "no-such-dir")], 1, ["no-such-dir"])
    expect_error(["inspect"], 2, ["model directory"])


def case_bench_step():
    config = os.path.join(TINY, "config.json")
    proc = run_ok("bench", "step", "--config", config, "--random-weights", "--device", "cpu",
                  "--threads", "1", "--repeat", "2", "--warmup", "1")
    lines = proc.stdout.strip().splitlines()
    check(len(lines) == 1, f"expected one JSON line, got:\n{proc.stdout}")
    rec = json.loads(lines[0])
    for key in ("bench", "backend", "tokens", "frames", "ms", "ms_min", "repeat"):
        check(key in rec, f"bench step JSON lacks {key!r}: {rec}")
    check(rec["bench"] == "step" and rec["backend"] == "cpu", f"{rec}")
    check(rec["repeat"] == 2 and rec["tokens"] > 0, f"{rec}")
    check(0 < rec["ms_min"] <= rec["ms"], f"times {rec['ms_min']} / {rec['ms']}")
    check(rec["batch"] == 1 and "breakdown" not in rec, f"{rec}")
    proc = run_ok("bench", "step", "--config", config, "--random-weights", "--device", "cpu",
                  "--threads", "1", "--repeat", "2", "--warmup", "1", "--breakdown")
    rec = json.loads(proc.stdout)
    kinds = ("gemm", "attention", "norm", "elementwise", "transfer")
    parts = rec.get("breakdown", {})
    check(set(parts) == set(kinds) | {"unaccounted"}, f"breakdown keys: {rec}")
    check(all(parts[k] >= 0 for k in kinds), f"negative kind time: {parts}")
    # the kinds are timed inside the step, so together they cannot exceed it
    check(sum(parts[k] for k in kinds) <= rec["ms"] * 1.01 + 0.01, f"{parts} vs {rec['ms']}")
    check(abs(rec["ms"] - sum(parts[k] for k in kinds) - parts["unaccounted"]) < 0.01 * rec["ms"]
          + 0.01, f"unaccounted is not ms minus the kinds: {rec}")
    for k in ("gemm", "attention", "norm", "elementwise"):
        check(rec["calls"][k] > 0, f"no {k} calls counted: {rec}")
    guided_args = ("bench", "step", "--config", config, "--random-weights", "--device", "cpu",
                   "--threads", "1", "--repeat", "1", "--warmup", "0", "--guidance", "4",
                   "--breakdown")
    depth = tiny_config()["dit"]["depth"]
    guided = json.loads(run_ok(*guided_args).stdout)
    check(guided["batch"] == 2 and guided["guidance"] == 4 and guided["shared_prefix"] == 1,
          f"{guided}")
    # two passes, the second without what it shares with the first: the embedding's four
    # GEMMs (patches, timestep MLP, adaLN) and block 0's QKV and output projections and
    # self-attention; and the empty negative prompt is one key, so the second pass has no
    # cross-attention Q projection, attention or output projection in any block
    check(guided["negative_tokens"] == 1, f"{guided}")
    check(guided["calls"]["gemm"] == 2 * rec["calls"]["gemm"] - 6 - 2 * depth,
          f"{guided} vs {rec}")
    check(guided["calls"]["attention"] == 2 * rec["calls"]["attention"] - 1 - depth,
          f"{guided} vs {rec}")
    # a negative prompt of several tokens has its cross-attention in full
    negative = guided_args + ("--negative-prompt", "blurry, dark")
    neg = json.loads(run_ok(*negative).stdout)
    check(neg["negative_tokens"] > 1, f"{neg}")
    check(neg["calls"]["gemm"] == 2 * rec["calls"]["gemm"] - 6 and
          neg["calls"]["attention"] == 2 * rec["calls"]["attention"] - 1, f"{neg} vs {rec}")
    # without sharing: twice the ops of one pass
    os.environ["VDIT_GUIDED_PREFIX"] = "0"
    try:
        full = json.loads(run_ok(*negative).stdout)
    finally:
        del os.environ["VDIT_GUIDED_PREFIX"]
    check(full["shared_prefix"] == 0 and full["calls"]["gemm"] == 2 * rec["calls"]["gemm"] and
          full["calls"]["attention"] == 2 * rec["calls"]["attention"], f"{full} vs {rec}")
    expect_error(["bench", "step", "--config", config, "--random-weights", "--negative-prompt",
                  "dark"], 2, ["--guidance"])
    expect_error(["bench", "step", "--config", config, "--random-weights", "--guidance", "1"],
                 2, ["--guidance"])
    expect_error(["bench", "step", "--config", config, "--random-weights", "--guidance", "nan"],
                 2, ["--guidance"])
    expect_error(["bench", "step", "--config", config], 2, ["--random-weights"])
    expect_error(["bench", "step"], 2, ["--model"])
    proc = run_ok("bench", "step", "--model", TINY, "--device", "cpu", "--threads", "1",
                  "--repeat", "1", "--warmup", "0")
    check(json.loads(proc.stdout)["bench"] == "step", proc.stdout)


def micro_vae_config(tmp, **extra):
    """Open-Sora-Plan v1.2's VAE config (tools/bench/osp12-vae.json) shrunk until a
    decode takes a fraction of a second: 32 channels at every level, one ResNet block
    more than the minimum, tiles of 4 latent pixels, chunks of 2 latent frames."""
    with open(os.path.join(ROOT, "tools", "bench", "osp12-vae.json")) as f:
        cfg = json.load(f)
    cfg.update(hidden_size=32, hidden_size_mult=[1, 1, 1, 1], num_res_blocks=1,
               tile_latent_min_size=4, tile_sample_min_size=32, tile_latent_min_size_t=2,
               tile_overlap_factor=0.25)
    cfg.update(extra)
    path = os.path.join(tmp, "vae-config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def case_bench_clip():
    """`vdit bench clip`: whole clips of the tiny model, the first apart from the rest."""
    proc = run_ok("bench", "clip", "--model", TINY, "--device", "cpu", "--threads", "1",
                  "--repeat", "2", "--warmup", "2", "--steps", "3", "--guidance", "1")
    rec = json.loads(proc.stdout)
    for key in ("bench", "model", "backend", "attention", "frames", "width", "height", "steps",
                "guidance", "load_ms", "first_ms", "ms", "ms_min", "repeat", "warmup"):
        check(key in rec, f"bench clip JSON lacks {key!r}: {rec}")
    check(rec["bench"] == "clip" and rec["backend"] == "cpu" and rec["steps"] == 3 and
          rec["guidance"] == 1 and rec["repeat"] == 2 and rec["frames"] == 8, f"{rec}")
    check(0 < rec["ms_min"] <= rec["ms"] and rec["first_ms"] > 0 and rec["load_ms"] > 0,
          f"{rec}")
    # where the first clip's time and the last one's went, step by step
    for key in ("first", "last"):
        stages = rec[key]
        check(len(stages.get("step_ms", [])) == 3 and
              stages["denoise_ms"] >= 0.9 * sum(stages["step_ms"]) and "text_ms" in stages,
              f"{key}: {stages}")
    # the model's own settings; --warmup 0 times the first clip as well
    rec = json.loads(run_ok("bench", "clip", "--model", TINY, "--device", "cpu", "--threads",
                            "1", "--repeat", "1", "--warmup", "0").stdout)
    check(rec["steps"] == 4 and rec["guidance"] == 4 and rec["ms"] == rec["first_ms"], f"{rec}")
    # a clip whose steps cost more takes longer: the clock times the generations
    few = json.loads(run_ok("bench", "clip", "--model", TINY, "--device", "cpu", "--steps",
                            "1", "--threads", "1", "--repeat", "3").stdout)
    many = json.loads(run_ok("bench", "clip", "--model", TINY, "--device", "cpu", "--steps",
                             "40", "--threads", "1", "--repeat", "3").stdout)
    check(many["ms_min"] > few["ms_min"], f"40 steps {many['ms_min']} ms, 1 step {few['ms_min']}")
    expect_error(["bench", "clip"], 2, ["--model"])
    expect_error(["bench", "clip", "--model", TINY, "--repeat", "0"], 2, ["--repeat"])
    expect_error(["bench", "clip", "--model", TINY, "stray"], 2, ["stray"])
    # the bounds of `vdit generate`, checked before the model loads
    expect_error(["bench", "clip", "--model", TINY, "--guidance", "500"], 2, ["--guidance"])
    expect_error(["bench", "clip", "--model", TINY, "--steps", "0"], 2, ["--steps"])
    expect_error(["bench", "clip", "--model", TINY, "--prompt", " "], 2, ["empty"])
    expect_error(["bench", "clip", "--model", TINY, "--repeat", "2147483647", "--warmup",
                  "2147483647"], 2, ["--repeat"])
    expect_error(["bench", "clip", "--model", os.path.join(ROOT, "nowhere")], 1, ["nowhere"])


def case_bench_clip_cuda():
    """`vdit bench clip` on CUDA (skipped without a GPU): the tiny model's clips there, the
    first slower than the ones after it, which replay what it set up."""
    proc = run("bench", "clip", "--model", TINY, "--device", "cuda", "--repeat", "3",
               "--warmup", "2")
    if proc.returncode == 1 and "no CUDA device" in proc.stderr:
        raise Skip("no CUDA device")
    check(proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}")
    rec = json.loads(proc.stdout)
    check(rec["backend"] == "cuda" and 0 < rec["ms_min"] <= rec["ms"] and
          rec["first_ms"] > rec["ms_min"], f"{rec}")


def bench_vae(config, *args):
    proc = run_ok("bench", "vae", "--config", config, "--random-weights", "--device", "cpu",
                  "--height", "32", "--width", "48", *args)
    return [json.loads(line) for line in proc.stdout.strip().splitlines()]


def case_bench_vae():
    """`vdit bench vae` on the CPU: tiled and whole decodes of a tiny random decoder."""
    with tempfile.TemporaryDirectory() as tmp:
        config = micro_vae_config(tmp)
        recs = bench_vae(config, "--latent-frames", "3,2", "--repeat", "2")
        check(len(recs) == 2, f"expected a line per shape: {recs}")
        rec = recs[0]
        for key in ("bench", "backend", "precision", "latent_frames", "frames", "height",
                    "width", "decode", "chunks", "tiles", "gflop", "ms", "ms_min",
                    "ms_median", "ms_per_frame", "tflops", "repeat", "warmup", "plan_gib"):
            check(key in rec, f"bench vae JSON lacks {key!r}: {rec}")
        check(rec["bench"] == "vae" and rec["backend"] == "cpu" and rec["precision"] == "f32",
              f"{rec}")
        # 3 latent frames of 4 x 6: chunks [0, 2) and [1, 3), 2 x 2 tiles of stride 3
        check((rec["latent_frames"], rec["frames"], rec["height"], rec["width"]) ==
              (3, 9, 32, 48) and (rec["latent_height"], rec["latent_width"]) == (4, 6), f"{rec}")
        check(rec["decode"] == "tiled" and rec["chunks"] == 2 and rec["tiles"] == 4, f"{rec}")
        check(0 < rec["ms_min"] <= rec["ms_median"] and rec["ms_min"] <= rec["ms"], f"{rec}")
        check(abs(rec["ms_per_frame"] * 9 - rec["ms"]) < 0.01 * rec["ms"] + 0.01, f"{rec}")
        check(rec["warmup"] == 1 and rec["nonfinite"] == 0, f"{rec}")
        check("peak_gib" not in rec and "breakdown" not in rec, f"{rec}")
        # the second shape reuses the warm process; one chunk of 2 frames, same tiles
        two = recs[1]
        check(two["warmup"] == 0 and "nonfinite" not in two, f"{two}")
        check(two["chunks"] == 1 and two["tiles"] == 4 and two["frames"] == 5, f"{two}")
        check(abs(2 * two["gflop"] - rec["gflop"]) < 1e-3 * rec["gflop"],
              f"two chunks of 2 frames should be twice one: {two['gflop']} {rec['gflop']}")
        # video frames name the same shape; --whole decodes once, without tile overlap
        same = bench_vae(config, "--frames", "9", "--repeat", "1", "--warmup", "0")[0]
        check(same["latent_frames"] == 3 and same["gflop"] == rec["gflop"], f"{same}")
        whole = bench_vae(config, "--frames", "9", "--repeat", "1", "--whole")[0]
        check(whole["decode"] == "whole" and whole["chunks"] == 1 and whole["tiles"] == 1,
              f"{whole}")
        check(0 < whole["gflop"] < rec["gflop"], f"whole {whole['gflop']} tiled {rec['gflop']}")
        # per kind of layer, timed inside the decode
        rec = bench_vae(config, "--latent-frames", "3", "--repeat", "1", "--warmup", "0",
                        "--breakdown")[0]
        kinds = ("conv3d", "group_norm", "upsample", "attention", "transfer")
        parts = rec.get("breakdown", {})
        check(set(parts) == set(kinds) | {"unaccounted"}, f"breakdown keys: {rec}")
        check(all(parts[k] >= 0 for k in kinds), f"negative kind time: {parts}")
        check(sum(parts[k] for k in kinds) <= rec["ms"] * 1.01 + 0.01, f"{parts} vs {rec['ms']}")
        # per tile: 2 chunks x 4 tiles; the micro decoder has 30 convolutions, 22 norms
        calls = rec["calls"]
        check(calls["conv3d"] == 8 * 30 and calls["group_norm"] == 8 * 22 and
              calls["attention"] == 8 and calls["upsample"] == 8 * 3 and
              calls["transfer"] == 0, f"calls per decode: {calls}")
        expect_error(["bench", "vae", "--config", config], 2, ["--random-weights"])
        expect_error(["bench", "vae"], 2, ["--model"])
        for bad, words in ((["--frames", "10"], ["1 + 4k"]), (["--height", "30"], ["multiples of 8"]),
                           (["--latent-frames", "0"], ["positive"]),
                           (["--frames", "9", "--latent-frames", "3"], ["not both"]),
                           (["--device", "tpu"], ["tpu"]), (["--repeat", "0"], ["--repeat"])):
            expect_error(["bench", "vae", "--config", config, "--random-weights", *bad], 2, words)
        broken = micro_vae_config(tmp, hidden_size=33)
        expect_error(["bench", "vae", "--config", broken, "--random-weights"], 1,
                     ["hidden_size"])
        expect_error(["bench", "vae", "--model", os.path.join(tmp, "no-such-model")], 1,
                     ["no-such-model"])


def case_bench_vae_peer():
    """tools/bench/peers.py --vae on the CPU at the micro size: PyTorch's decoder
    (train/osp/vae.py) decodes the shapes `vdit bench vae` decodes, in the same chunks
    and tiles, counting the same work. Skipped without torch (run by /usr/bin/python3)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise Skip("torch is not importable")
    with tempfile.TemporaryDirectory() as tmp:
        config = micro_vae_config(tmp)
        for extra, ours_extra in (([], []), (["--vae-whole"], ["--whole"])):
            proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench", "peers.py"),
                                   "--device", "cpu", "--no-attention", "--vae", "--vae-config",
                                   config, "--vae-size", "32x48", "--frames", "3,2",
                                   "--vae-precisions", "f32", "--vae-repeat", "1", *extra],
                                  capture_output=True, text=True, timeout=300)
            check(proc.returncode == 0, f"peers.py exited {proc.returncode}:\n{proc.stderr}")
            peers = [json.loads(line) for line in proc.stdout.strip().splitlines()]
            ours = bench_vae(config, "--latent-frames", "3,2", "--repeat", "1", "--warmup", "0",
                             *ours_extra)
            check(len(peers) == 2, f"expected a line per shape: {proc.stdout}")
            for p, o in zip(peers, ours):
                check(p["impl"] == "torch-vae" and p["precision"] == "f32" and p["ms"] > 0, f"{p}")
                for key in ("latent_frames", "frames", "height", "width", "decode", "chunks",
                            "tiles"):
                    check(p[key] == o[key], f"{key}: peer {p[key]} ours {o[key]}")
                check(abs(p["gflop"] - o["gflop"]) <= 1e-3 * o["gflop"],
                      f"the peer counts {p['gflop']} GFLOP, ours {o['gflop']}")


def case_interrupt():
    """Ctrl-C stops a long generation cleanly: exit 130, a message, no crash."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "clip.y4m")
        proc = subprocess.Popen([VDIT, "generate", "--model", TINY, "--prompt", PROMPT,
                                 "--out", out, "--steps", "10000", "--threads", "2",
                                 "--device", "cpu"],
                                stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        # Whatever happens, the child does not outlive the test.
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        try:
            # Wait until denoising has begun, then interrupt.
            for line in proc.stderr:
                if "denoising step" in line:
                    break
            time.sleep(0.2)
            start = time.monotonic()
            proc.send_signal(signal.SIGINT)
            rest = proc.stderr.read()
            status = proc.wait()
            check(status == 130, f"exit {status} after SIGINT, expected 130:\n{rest[-2000:]}")
            check("interrupted" in rest, f"no 'interrupted' message:\n{rest[-2000:]}")
            check(time.monotonic() - start < 10, "took more than 10 s to stop")
        finally:
            watchdog.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if os.path.exists(out):
            read_y4m(out)  # whatever was written is whole frames


def case_valgrind():
    """No invalid memory access and no definite leak in the command's own paths."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise Skip("valgrind is not installed")
    memcheck = [valgrind, "-q", "--error-exitcode=9", "--leak-check=full",
                "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite"]
    with tempfile.TemporaryDirectory() as tmp:
        frames = str(frame_counts()[0])
        # One step is enough to cover the command's paths; each run costs seconds.
        quick = ["--steps", "1", "--threads", "1", "--device", "cpu", "-q"]
        prompt = os.path.join(tmp, "prompt.txt")
        with open(prompt, "w") as f:
            f.write(PROMPT + "\n")
        runs = [
            ["generate", "--model", TINY, "--prompt-file", prompt, "--frames", frames,
             "--out", os.path.join(tmp, "clip.y4m"), *quick],
            ["generate", "--model", TINY, "--prompt", PROMPT, "--frames", frames,
             "--out", os.path.join(tmp, "png") + "/", *quick],
            ["generate", "--model", os.path.join(tmp, "none"), "--prompt", PROMPT,
             "--out", os.path.join(tmp, "x.y4m")],
        ]
        for args in runs:
            proc = subprocess.run([*memcheck, VDIT, *args], capture_output=True, text=True,
                                  timeout=300)
            check(proc.returncode != 9, f"valgrind vdit {' '.join(args)}:\n{proc.stderr}")


# ---- the output is replaced only by a finished clip ----------------------------------

PRECIOUS = b"an earlier clip the user wants to keep\n"


def listing(folder):
    """Every name in folder, hidden temporaries included."""
    return sorted(os.listdir(folder))


def check_untouched(path, label, content=PRECIOUS):
    check(os.path.exists(path), f"{label}: {path} was deleted")
    with open(path, "rb") as f:
        got = f.read()
    check(got == content, f"{label}: {path} was changed ({len(got)} bytes now)")


def tiny_copy(tmp, **sampler):
    """models/tiny with some sampler settings changed (weights linked, not copied)."""
    model = os.path.join(tmp, "model")
    os.mkdir(model)
    for name in os.listdir(TINY):
        if name != "config.json":
            os.symlink(os.path.join(TINY, name), os.path.join(model, name))
    cfg = tiny_config()
    cfg["sampler"].update(sampler)
    with open(os.path.join(model, "config.json"), "w") as f:
        json.dump(cfg, f)
    return model


def expect_kept(args, status, words, path, content=PRECIOUS):
    """Like expect_error, but first checks that path still holds content."""
    run(*args)
    check_untouched(path, "vdit " + " ".join(args), content)
    expect_error(args, status, words)


def interrupt_early(args):
    """Runs vdit with args, interrupts it during denoising (before any frame)."""
    proc = subprocess.Popen([VDIT, *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    try:
        for line in proc.stderr:
            if "denoising step" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        status = proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    check(status == 130, f"exit {status} after SIGINT, expected 130:\n{rest[-2000:]}")
    check("interrupted after 0 frames" in rest, f"interrupt message:\n{rest[-2000:]}")


def case_keep_output():
    """A run that fails or is interrupted before its first frame leaves an existing
    output as it was, and leaves no temporary file; a finished run replaces it."""
    frames = str(frame_counts()[0])
    with tempfile.TemporaryDirectory() as tmp:
        keep = os.path.join(tmp, "keep.y4m")
        with open(keep, "wb") as f:
            f.write(PRECIOUS)
        os.chmod(keep, 0o640)
        base = ["generate", "--model", TINY, "--prompt", PROMPT, "--out", keep, *FAST]
        # Bad values the engine would only reject after the output was opened.
        for bad in (["--guidance", "nan"], ["--guidance", "inf"], ["--guidance", "-2"],
                    ["--guidance", "1000"], ["--steps", "20000"]):
            expect_kept([*base, *bad], 2, [bad[0]], keep)
        # A model whose own default is out of range fails the same way.
        model = tiny_copy(tmp, steps=20000)
        expect_kept(["generate", "--model", model, "--prompt", PROMPT, "--out", keep,
                     "--threads", "1", "--device", "cpu"], 1, ["steps", "20000"], keep)
        # Ctrl-C before the first frame.
        interrupt_early(["generate", "--model", TINY, "--prompt", PROMPT, "--out", keep,
                         "--steps", "10000", "--threads", "1", "--device", "cpu"])
        check_untouched(keep, "Ctrl-C before frame 0")
        check(listing(tmp) == ["keep.y4m", "model"], f"left behind: {listing(tmp)}")
        # A finished run replaces the file, keeping its permissions.
        generate(keep, frames=frames)
        _, got = read_y4m(keep)
        check(len(got) == int(frames), f"replaced clip has {len(got)} frames")
        check(os.stat(keep).st_mode & 0o777 == 0o640,
              f"mode {oct(os.stat(keep).st_mode & 0o777)} after replacing, expected 0o640")
        check(listing(tmp) == ["keep.y4m", "model"], f"left behind: {listing(tmp)}")
        # A symbolic link to the clip stays a link; the clip it points at is replaced.
        before = open(keep, "rb").read()
        link = os.path.join(tmp, "link.y4m")
        os.symlink("keep.y4m", link)
        generate(link, frames=frames, seed="2")
        check(os.path.islink(link), "writing through a symbolic link replaced the link")
        after = open(keep, "rb").read()
        check(after != before and len(read_y4m(keep)[1]) == int(frames),
              "writing through a symbolic link did not replace the clip it points at")
        check(listing(tmp) == ["keep.y4m", "link.y4m", "model"], f"left behind: {listing(tmp)}")

    # The same for a folder of PNG frames.
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "frames")
        os.mkdir(folder)
        old = os.path.join(folder, "frame-0000.png")
        with open(old, "wb") as f:
            f.write(PRECIOUS)
        base = ["generate", "--model", TINY, "--prompt", PROMPT, "--out", folder + "/", *FAST]
        expect_kept([*base, "--guidance", "nan"], 2, ["--guidance"], old)
        interrupt_early(["generate", "--model", TINY, "--prompt", PROMPT, "--out", folder,
                         "--steps", "10000", "--threads", "1", "--device", "cpu"])
        check_untouched(old, "PNG, Ctrl-C before frame 0")
        check(listing(folder) == ["frame-0000.png"], f"left behind: {listing(folder)}")
        generate(folder, frames=frames)
        check(listing(folder) == [f"frame-{i:04d}.png" for i in range(int(frames))],
              f"after a finished run: {listing(folder)}")
        png_size(old)
        # A folder the run created is removed again when it fails before frame 0.
        fresh = os.path.join(tmp, "new", "deeper") + "/"
        interrupt_early(["generate", "--model", TINY, "--prompt", PROMPT, "--out", fresh,
                         "--steps", "10000", "--threads", "1", "--device", "cpu"])
        check(listing(tmp) == ["frames"], f"left behind: {listing(tmp)}")


# ---- write errors (disk full) ---------------------------------------------------------

def limited(max_bytes):
    """preexec_fn: files may not grow past max_bytes, as on a full disk. SIGXFSZ is
    ignored (the disposition survives exec), so write() fails with EFBIG instead."""
    def apply():
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


def run_limited(max_bytes, *args):
    proc = subprocess.run([VDIT, *args], capture_output=True, text=True, timeout=120,
                          preexec_fn=limited(max_bytes))
    if proc.returncode < 0:
        raise Failure(f"vdit {' '.join(args)} died of signal {-proc.returncode}:\n{proc.stderr}")
    return proc


def case_disk_full():
    """A write error fails the run with the file and the OS error named, and leaves
    nothing partial behind: no temporary, no truncated frame, the old output intact."""
    cfg = tiny_config()
    frame_bytes = 3 * cfg["video"]["width"] * cfg["video"]["height"]
    frames = str(frame_counts()[1])
    efbig, enospc = os.strerror(errno.EFBIG), os.strerror(errno.ENOSPC)
    with tempfile.TemporaryDirectory() as tmp:
        for existing in (True, False):
            out = os.path.join(tmp, "clip.y4m")
            if existing:
                with open(out, "wb") as f:
                    f.write(PRECIOUS)
            # Room for the header, frame 0 and half of frame 1.
            proc = run_limited(64 + 6 + frame_bytes + frame_bytes // 2, "generate",
                               "--model", TINY, "--prompt", PROMPT, "--out", out,
                               "--frames", frames, *FAST)
            label = f"y4m, disk full ({'existing' if existing else 'new'} file)"
            check(proc.returncode == 1, f"{label}: exit {proc.returncode}\n{proc.stderr}")
            check("clip.y4m" in proc.stderr and efbig in proc.stderr,
                  f"{label}: the message should name clip.y4m and '{efbig}':\n{proc.stderr}")
            if existing:
                check_untouched(out, label)
                os.unlink(out)
            check(listing(tmp) == [], f"{label}: left behind {listing(tmp)}")

        # PNG frames: frame 0 does not fit.
        folder = os.path.join(tmp, "png") + "/"
        proc = run_limited(100, "generate", "--model", TINY, "--prompt", PROMPT, "--out",
                           folder, "--frames", frames, *FAST)
        check(proc.returncode == 1, f"PNG, disk full: exit {proc.returncode}\n{proc.stderr}")
        check("frame-0000.png" in proc.stderr and efbig in proc.stderr,
              f"PNG, disk full: the message should name frame-0000.png and '{efbig}':\n"
              f"{proc.stderr}")
        check(listing(tmp) == [], f"PNG, disk full: left behind {listing(tmp)}")
        # The same into an existing folder: its frame stays as it was.
        os.mkdir(folder)
        old = os.path.join(folder, "frame-0000.png")
        with open(old, "wb") as f:
            f.write(PRECIOUS)
        proc = run_limited(100, "generate", "--model", TINY, "--prompt", PROMPT, "--out",
                           folder, "--frames", frames, *FAST)
        check(proc.returncode == 1 and efbig in proc.stderr,
              f"PNG, disk full, existing folder: exit {proc.returncode}\n{proc.stderr}")
        check_untouched(old, "PNG, disk full, existing folder")
        check(listing(folder) == ["frame-0000.png"],
              f"PNG, disk full, existing folder: left {listing(folder)}")
        shutil.rmtree(folder)

        # /dev/full through a link: written in place (it is no regular file), and the
        # error is ENOSPC; the link itself stays.
        if os.path.exists("/dev/full"):
            full = os.path.join(tmp, "full.y4m")
            os.symlink("/dev/full", full)
            proc = run("generate", "--model", TINY, "--prompt", PROMPT, "--out", full, *FAST)
            check(proc.returncode == 1 and "full.y4m" in proc.stderr and enospc in proc.stderr,
                  f"/dev/full: exit {proc.returncode}, expected 1 naming full.y4m and "
                  f"'{enospc}':\n{proc.stderr}")
            check(os.path.islink(full), "/dev/full: the link was removed")
            check(listing(tmp) == ["full.y4m"], f"/dev/full: left behind {listing(tmp)}")


# ---- --prompt-file --------------------------------------------------------------------

def case_prompt_file():
    frames = str(frame_counts()[0])
    with tempfile.TemporaryDirectory() as tmp:
        ref = os.path.join(tmp, "ref.y4m")
        generate(ref, frames=frames)
        want = open(ref, "rb").read()
        common = ["generate", "--model", TINY, "--seed", "1", "--frames", frames, *FAST]

        # A file with a final newline gives what --prompt gives.
        pfile = os.path.join(tmp, "prompt.txt")
        with open(pfile, "w") as f:
            f.write(PROMPT + "\n")
        out = os.path.join(tmp, "file.y4m")
        run_ok(*common, "--prompt-file", pfile, "--out", out)
        check(open(out, "rb").read() == want, "--prompt-file differs from --prompt")

        # A byte-order mark (Windows editors) is not part of the prompt.
        with open(pfile, "wb") as f:
            f.write(b"\xef\xbb\xbf" + PROMPT.encode() + b"\r\n")
        run_ok(*common, "--prompt-file", pfile, "--out", out)
        check(open(out, "rb").read() == want, "--prompt-file with a BOM differs from --prompt")

        # "-" reads standard input.
        proc = subprocess.run([VDIT, *common, "--prompt-file", "-", "--out", "-"],
                              input=(PROMPT + "\r\n").encode(), capture_output=True,
                              timeout=120)
        check(proc.returncode == 0 and proc.stdout == want,
              f"--prompt-file - : exit {proc.returncode}, {len(proc.stdout)} bytes\n"
              f"{proc.stderr.decode(errors='replace')}")

        # Longer than one command-line argument may be (128 KiB).
        long = os.path.join(tmp, "long.txt")
        with open(long, "w") as f:
            f.write(("a red ball bouncing on a green field. " * 4000).strip() + "\n")
        check(os.path.getsize(long) > 128 * 1024, "the long prompt is not long")
        out = os.path.join(tmp, "long.y4m")
        run_ok(*common, "--prompt-file", long, "--out", out)
        check(len(read_y4m(out)[1]) == int(frames), "long prompt: wrong clip")

        out = os.path.join(tmp, "never.y4m")
        both = [*common, "--out", out]
        expect_error([*both, "--prompt", PROMPT, "--prompt-file", pfile], 2,
                     ["--prompt", "--prompt-file"], out)
        expect_error(both, 2, ["--prompt", "--prompt-file"], out)
        missing = os.path.join(tmp, "no-such-prompt.txt")
        expect_error([*both, "--prompt-file", missing], 1, ["no-such-prompt.txt"], out)
        expect_error([*both, "--prompt-file", tmp], 1, [tmp], out)
        bad = os.path.join(tmp, "latin1.txt")
        with open(bad, "wb") as f:
            f.write("une balle rouge sur un pr\u00e9\n".encode("latin-1"))
        expect_error([*both, "--prompt-file", bad], 1, ["latin1.txt", "UTF-8"], out)
        nul = os.path.join(tmp, "nul.txt")
        with open(nul, "wb") as f:
            f.write(b"a red\0ball\n")
        expect_error([*both, "--prompt-file", nul], 1, ["nul.txt"], out)
        for text in ("", "\n", "  \t\n\n"):
            empty = os.path.join(tmp, "empty.txt")
            with open(empty, "w") as f:
                f.write(text)
            expect_error([*both, "--prompt-file", empty], 1, ["empty.txt", "empty"], out)
        if os.geteuid() != 0:
            locked = os.path.join(tmp, "locked.txt")
            with open(locked, "w") as f:
                f.write(PROMPT)
            os.chmod(locked, 0)
            expect_error([*both, "--prompt-file", locked], 1, ["locked.txt"], out)
        proc = run_ok("generate", "--help")
        check("--prompt-file" in proc.stdout, f"--help lacks --prompt-file:\n{proc.stdout}")


def case_stats():
    """--stats appends one JSON line per run with the stage and step times; a bad path
    fails first."""
    with tempfile.TemporaryDirectory() as tmp:
        out, stats = os.path.join(tmp, "clip.y4m"), os.path.join(tmp, "stats.jsonl")
        for _ in range(2):
            generate(out, "--stats", stats, frames=4)
        with open(stats) as f:
            lines = [json.loads(line) for line in f]
        check(len(lines) == 2, f"two runs gave {len(lines)} stats lines")
        s = lines[0]
        check(s["bench"] == "generate" and s["device"] == "cpu" and s["frames"] == 4 and
              s["steps"] == 2, f"stats line {s}")
        for key in ("load_ms", "text_ms", "denoise_ms", "decode_ms", "first_frame_ms",
                    "run_ms", "total_ms"):
            check(isinstance(s.get(key), (int, float)) and s[key] >= 0, f"{key} in {s}")
        check(s["text_ms"] + s["denoise_ms"] <= s["run_ms"] + 0.2 and
              s["run_ms"] <= s["total_ms"] and s["first_frame_ms"] <= s["run_ms"],
              f"stage times do not add up: {s}")
        # each denoising step's time: as many as steps, within the denoising stage
        steps = s.get("step_ms")
        check(isinstance(steps, list) and len(steps) == s["steps"] and
              all(isinstance(x, (int, float)) and x >= 0 for x in steps) and
              sum(steps) <= s["denoise_ms"] + 0.1 * len(steps), f"step_ms in {s}")
        bad = os.path.join(tmp, "missing", "stats.jsonl")
        expect_error(["generate", "--model", TINY, "--prompt", PROMPT, "--out", out,
                      "--stats", bad, *FAST], 2, ["stats file", "missing"])


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        print(f"usage: {sys.argv[0]} VDIT {{{','.join(CASES)}}}", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(TINY, "config.json")):
        print(f"FAIL: the tiny model is missing: {TINY}", file=sys.stderr)
        return 1
    try:
        CASES[sys.argv[2]]()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except Skip as e:
        print(f"skip: {e}")
        return 77
    print(f"ok: {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
