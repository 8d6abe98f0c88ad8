#!/usr/bin/python3
"""One DiT forward on the CPU: vdit's CPU backend beside the PyTorch reference
(train/vdit_torch) on the same model, weights, threads, prompt and latent shape.

    tools/bench/cpu-vs-torch.py [--vdit build/tools/vdit] [--threads 1,2]
                                [--rounds 5] [--repeat 20] [--warmup 3] MODEL_DIR...

Prints JSON lines: one per implementation and model,
  {"bench":"cpu-vs-torch","impl":"vdit"|"torch","model":..,"threads":..,"tokens":..,
   "attention":..,"ms":..,"ms_min":..,"ms_rounds":[..],"rounds":..,"repeat":..}
"load1" is the machine's 1-minute load average after the rounds; then one
{"impl":"ratio",...} line with torch's time over ours: "speedup" the median over rounds
of each round's ratio of means, "speedup_min" the ratio of the fastest forwards (above
1 means vdit is faster).

Each round runs `vdit bench step` (a fresh process: `repeat` timed forwards after
`warmup`) and then `repeat` timed PyTorch forwards after `warmup`, so both see the same
machine load; "ms" is the median over rounds of each round's mean, "ms_min" the fastest
single forward of all rounds. PyTorch runs eagerly under torch.inference_mode with
torch's fused tanh-GELU (vdit_torch.dit.set_fast_kernels), the model's tile masks where
its attention mode is tile (dense where the plan keeps every frame), and the same prompt
as `vdit bench step` ("a benchmark prompt"), encoded by the reference text encoder.
What is timed is the same on both sides: latent in, patch embedding, adaLN, every block,
final layer, latent out. PyTorch also projects the caption in every forward (a few
rows); vdit does that once per prompt.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "train"))

PROMPT = "a benchmark prompt"  # engine/generate.c, vdit_bench_dit_step


def run_vdit(vdit, model_dir, threads, repeat, warmup):
    out = subprocess.run([vdit, "bench", "step", "--model", model_dir, "--device", "cpu",
                          "--threads", str(threads), "--repeat", str(repeat),
                          "--warmup", str(warmup)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


class TorchForward:
    def __init__(self, model_dir, threads):
        import torch
        from vdit_torch import dit as dit_mod
        from vdit_torch.model import VditModel
        from vdit_torch.tile_mask import plan_masks

        self.torch = torch
        torch.set_num_threads(threads)
        dit_mod.set_fast_kernels(True)
        self.model = VditModel.from_dir(model_dir)
        cfg = self.model.cfg
        self.text = self.model.encode_text(self.model.tokens(PROMPT))[None]
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn((1,) + tuple(cfg.latent_shape()), generator=g)
        grid = self.model.dit.grid(self.x.shape)
        self.tokens = grid[0] * grid[1] * grid[2]
        self.attention = cfg.attention.mode
        self.masks = None
        if cfg.attention.mode == "tile":
            plan = cfg.attention.plan or [cfg.attention.tile_k] * cfg.dit.depth
            self.masks = plan_masks(plan, grid)
        self.t = torch.tensor([500.0])

    def time_ms(self, repeat, warmup):
        torch = self.torch
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeat):
                t0 = time.perf_counter()
                self.model.dit(self.x, self.t, self.text, None, self.masks)
                ms = (time.perf_counter() - t0) * 1000.0
                if i >= warmup:
                    times.append(ms)
        return times


def bench_model(a, model_dir, threads):
    tf = TorchForward(model_dir, threads)
    ours, theirs, ratios, ours_min, theirs_min = [], [], [], [], []
    name = attention = None
    for _ in range(a.rounds):
        v = run_vdit(a.vdit, model_dir, threads, a.repeat, a.warmup)
        name, attention = v["model"], v["attention"]
        t = tf.time_ms(a.repeat, a.warmup)
        ours.append(v["ms"])
        ours_min.append(v["ms_min"])
        theirs.append(statistics.mean(t))
        theirs_min.append(min(t))
        ratios.append(theirs[-1] / ours[-1])
    common = {"bench": "cpu-vs-torch", "model": name, "threads": threads,
              "tokens": tf.tokens, "rounds": a.rounds, "repeat": a.repeat,
              "load1": round(os.getloadavg()[0], 2)}
    for impl, ms, mn, att in (("vdit", ours, ours_min, attention),
                              ("torch", theirs, theirs_min, tf.attention)):
        print(json.dumps(dict(common, impl=impl, attention=att,
                              ms=round(statistics.median(ms), 3), ms_min=round(min(mn), 3),
                              ms_rounds=[round(x, 3) for x in ms])), flush=True)
    print(json.dumps(dict(common, impl="ratio", speedup=round(statistics.median(ratios), 3),
                          speedup_rounds=[round(x, 3) for x in ratios],
                          speedup_min=round(min(theirs_min) / min(ours_min), 3))),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", metavar="MODEL_DIR")
    ap.add_argument("--vdit", default=os.path.join(ROOT, "build", "tools", "vdit"))
    ap.add_argument("--threads", default="2", help="comma-separated thread counts")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    try:
        thread_counts = [int(t) for t in a.threads.split(",")]
    except ValueError:
        ap.error("--threads takes counts separated by commas, e.g. 1,2")
    if min(thread_counts) < 1 or a.rounds < 1 or a.repeat < 1 or a.warmup < 0:
        ap.error("--threads, --rounds and --repeat must be at least 1, --warmup not negative")
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("cpu-vs-torch: PyTorch is not installed for %s (Debian: python3-torch)"
                 % sys.executable)

    for model_dir in a.models:
        for threads in thread_counts:
            bench_model(a, model_dir, threads)


if __name__ == "__main__":
    main()
