#!/usr/bin/python3
"""Writes a shrunken Open-Sora-Plan v1.2 checkpoint in the published layout
(train/make_osp_checkpoint.py), converts it with train/convert_osp.py (f32 and the
default bf16), computes the PyTorch references' goldens (train/make_osp_goldens.py) and
runs tests/test_osp_model.c on them. Also checks that the converter refuses broken
inputs with a one-line message. Exit 77 (skip) without torch.

    run_osp_model.py BUILD/tests/test_osp_model BUILD/tests/osp_load_weights BUILD/tools/vdit

With OSP_DEVICE=cuda the parts that run on the backend (the mT5 encoder, the DiT, a
guided sample) run on the GPU against the same goldens; exit 77 without one.
"""

import os
import subprocess
import sys
import tempfile

try:
    import torch  # noqa: F401
    import numpy  # noqa: F401
except ImportError as e:
    print(f"{e.name} not available: skipped")
    sys.exit(77)

ROOT = os.environ.get("VDIT_SOURCE_ROOT") or os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "train")
PY = sys.executable


def run(*args, **kw):
    print("+", " ".join(args), flush=True)
    return subprocess.run(args, check=kw.pop("check", True), **kw)


def converter_refuses(osp, tmp):
    """A transformer whose weights do not match its config, and a missing tokenizer."""
    import json
    bad = os.path.join(tmp, "bad-transformer")
    os.makedirs(bad)
    src = os.path.join(osp, "9x64p")
    with open(os.path.join(src, "config.json")) as f:
        cfg = json.load(f)
    cfg["num_layers"] = 3
    with open(os.path.join(bad, "config.json"), "w") as f:
        json.dump(cfg, f)
    os.symlink(os.path.join(src, "diffusion_pytorch_model.safetensors"),
               os.path.join(bad, "diffusion_pytorch_model.safetensors"))
    r = run(PY, os.path.join(TRAIN, "convert_osp.py"), "--transformer", bad, "--text-encoder",
            os.path.join(osp, "mt5-xxl"), os.path.join(tmp, "out-bad"), check=False,
            capture_output=True, text=True)
    msg = r.stderr.strip()
    print(msg)
    assert r.returncode == 1 and "transformer_blocks.2." in msg and "missing" in msg, msg
    assert len(msg.splitlines()) == 1, msg


def tile_plan(conv, common, tmp, load_exe):
    """Efficient-vDiT's per-layer tile plan rides along; a wrong length is refused."""
    import json
    out = os.path.join(tmp, "model-tile")
    run(PY, conv, "--attention", "tile", "--plan", "1,0", *common, out)
    with open(os.path.join(out, "config.json")) as f:
        att = json.load(f)["attention"]
    assert att == {"mode": "tile", "plan": [1, 0]}, att
    r = run(load_exe, out, capture_output=True, text=True)
    print(r.stdout.strip())
    assert "bf16" in r.stdout, r.stdout
    r = run(PY, conv, "--attention", "tile", "--plan", "1,0,2", *common,
            os.path.join(tmp, "model-bad-plan"), check=False, capture_output=True, text=True)
    assert r.returncode == 1 and "one k >= 0 for each of the transformer's 2 layers" in r.stderr, \
        r.stderr


def vae_weights_converted(osp, model_dir):
    """--vae: the decoder's tensors land in OUT/vae/vae.safetensors unchanged (f32), the
    encoder's are left out; the scaling factor is recorded."""
    import json
    import torch
    sys.path.insert(0, TRAIN)
    from osp import st_stream
    sd = torch.load(os.path.join(osp, "vae", "checkpoint.ckpt"), weights_only=True)["state_dict"]
    path = os.path.join(model_dir, "vae", "vae.safetensors")
    header, _, _ = st_stream.read_header(path)
    want = sorted(k for k in sd if k.startswith(("decoder.", "post_quant_conv.")))
    assert sorted(header) == want, set(header) ^ set(want)
    for k in want:
        assert (st_stream.read_tensor(path, k) == sd[k].numpy()).all(), k
    with open(os.path.join(model_dir, "vae", "config.json")) as f:
        assert json.load(f)["scaling_factor"] == 0.18215
    print(f"vae: {len(want)} decoder tensors converted")


def inspect_plan(vdit_exe, model_dir):
    """vdit inspect's memory plan: the model's 9 frames and Open-Sora-Plan's 29 and 93,
    each with the VAE decode's host peak."""
    import json
    r = run(vdit_exe, "inspect", "--json", model_dir, capture_output=True, text=True)
    plan = json.loads(r.stdout)["memory_plan"]
    assert [p["frames"] for p in plan] == [9, 29, 93], plan
    for p in plan:
        assert p["host_vae_decode"] > 0 and p["dit_weights"] > 0 and p["text_encoder"] > 0, p
    assert plan[2]["activations"] > plan[1]["activations"] > plan[0]["activations"], plan
    r = run(vdit_exe, "inspect", model_dir, capture_output=True, text=True)
    assert "memory plan  93 frames" in r.stdout and "VAE decode peak" in r.stdout, r.stdout


def bench_vae(vdit_exe, model_dir, device):
    """`vdit bench vae --model` on the converted model's vae/ folder (2 latent frames of
    4 x 4, one piece): one JSON line, finite frames."""
    import json
    r = run(vdit_exe, "bench", "vae", "--model", model_dir, "--device", device,
            "--latent-frames", "2", "--height", "32", "--width", "32", "--repeat", "1",
            capture_output=True, text=True)
    rec = json.loads(r.stdout)
    assert rec["bench"] == "vae" and rec["backend"] == device and rec["frames"] == 5, rec
    assert rec["decode"] == "whole" and rec["nonfinite"] == 0 and rec["ms"] > 0, rec
    assert (device == "cuda") == ("peak_gib" in rec), rec


def main():
    exe, load_exe, vdit_exe = sys.argv[1], sys.argv[2], sys.argv[3]
    if os.environ.get("OSP_DEVICE") == "cuda":  # no GPU: skip before making anything
        rc = run(exe, "-p", "/osp-model/none", check=False).returncode
        if rc != 0:
            return rc
    with tempfile.TemporaryDirectory(prefix="vdit-osp-") as tmp:
        osp = os.path.join(tmp, "osp")
        run(PY, os.path.join(TRAIN, "make_osp_checkpoint.py"), "--size", "tiny", osp)
        conv = os.path.join(TRAIN, "convert_osp.py")
        common = ["--transformer", os.path.join(osp, "9x64p"),
                  "--text-encoder", os.path.join(osp, "mt5-xxl")]
        f32, bf16 = os.path.join(tmp, "model-f32"), os.path.join(tmp, "model-bf16")
        run(PY, conv, "--keep-f32", "--vae", os.path.join(osp, "vae"), *common, f32)
        vae_weights_converted(osp, f32)
        inspect_plan(vdit_exe, f32)
        bench_vae(vdit_exe, f32, "cuda" if os.environ.get("OSP_DEVICE") == "cuda" else "cpu")
        run(PY, conv, *common, bf16)
        golden = os.path.join(tmp, "golden.safetensors")
        run(PY, os.path.join(TRAIN, "make_osp_goldens.py"), osp, golden, "--with-vae")
        converter_refuses(osp, tmp)
        tile_plan(conv, common, tmp, load_exe)
        env = dict(os.environ, OSP_MODEL_F32=f32, OSP_MODEL_BF16=bf16, OSP_GOLDEN=golden)
        paths = []
        if os.environ.get("OSP_DEVICE") == "cuda":  # the parts that run on the backend
            for p in ["text-encoder", "dit-step", "dit-step-bf16", "guided-sample"]:
                paths += ["-p", "/osp-model/" + p]
        return run(exe, *paths, check=False, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
