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
of each round's ratio of means, "speedup_min" the ratio of the fastest forwards,
"speedup_cpu" the median of the per-round ratios of CPU time (above 1 means vdit is
faster).

Each round runs `vdit bench step` (a fresh process: `repeat` timed forwards after
`warmup`) and then `repeat` timed PyTorch forwards after `warmup`, so both see the same
machine load; "ms" is the median over rounds of each round's mean, "ms_min" the fastest
single forward of all rounds, "cpu_ms" the median over rounds of the CPU time (user +
system, all threads) per forward, which other jobs on a shared machine disturb less
than wall time (vdit's from two runs, one of a single step, subtracted; null where the
difference is under 0.2 s, which the kernel's tick-based accounting cannot resolve). PyTorch runs eagerly under torch.inference_mode, torch.set_num_threads and OpenBLAS
(the BLAS Debian's torch calls) both set to the thread count, with
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
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "train"))

PROMPT = "a benchmark prompt"  # engine/generate.c, vdit_bench_dit_step


def children_cpu_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_vdit(vdit, model_dir, threads, repeat, warmup):
    """`vdit bench step`'s JSON line, plus "cpu_ms": CPU time (user + system, all
    threads) per forward, from a second run of one step subtracted (model load, text
    encoding and the first step cancel out)."""
    def bench(r, w):
        t0 = children_cpu_s()
        out = subprocess.run([vdit, "bench", "step", "--model", model_dir, "--device", "cpu",
                              "--threads", str(threads), "--repeat", str(r),
                              "--warmup", str(w)],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1]), children_cpu_s() - t0

    line, cpu_full = bench(repeat, warmup)
    _, cpu_one = bench(1, 0)
    # the kernel accounts CPU time in scheduler ticks: below ~0.2 s the difference is noise
    diff = cpu_full - cpu_one
    line["cpu_ms"] = diff * 1000.0 / max(repeat + warmup - 1, 1) if diff >= 0.2 else None
    return line


def set_openblas_threads(threads):
    """Debian's torch multiplies through the system BLAS (OpenBLAS) without telling it how
    many threads to use, so OpenBLAS would start one per CPU whatever
    torch.set_num_threads says: give it the same count."""
    import ctypes
    try:
        ctypes.CDLL("libopenblas.so.0").openblas_set_num_threads(threads)
    except (OSError, AttributeError):
        pass  # another BLAS: torch.set_num_threads is all there is


class TorchForward:
    def __init__(self, model_dir, threads):
        import torch
        from vdit_torch import dit as dit_mod
        from vdit_torch.model import VditModel
        from vdit_torch.tile_mask import plan_masks

        self.torch = torch
        torch.set_num_threads(threads)
        set_openblas_threads(threads)
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
        """Wall milliseconds of each timed forward, and CPU milliseconds (user + system,
        all threads) per forward."""
        torch = self.torch
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeat):
                if i == warmup:
                    c0 = time.process_time()
                t0 = time.perf_counter()
                self.model.dit(self.x, self.t, self.text, None, self.masks)
                ms = (time.perf_counter() - t0) * 1000.0
                if i >= warmup:
                    times.append(ms)
        return times, (time.process_time() - c0) * 1000.0 / repeat


def median_or_none(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def bench_model(a, model_dir, threads):
    tf = TorchForward(model_dir, threads)
    ms = {"vdit": [], "torch": []}
    ms_min = {"vdit": [], "torch": []}
    cpu = {"vdit": [], "torch": []}
    ratios, cpu_ratios = [], []
    name = attention = None
    for _ in range(a.rounds):
        v = run_vdit(a.vdit, model_dir, threads, a.repeat, a.warmup)
        name, attention = v["model"], v["attention"]
        t, t_cpu = tf.time_ms(a.repeat, a.warmup)
        for impl, mean, mn, c in (("vdit", v["ms"], v["ms_min"], v["cpu_ms"]),
                                  ("torch", statistics.mean(t), min(t), t_cpu)):
            ms[impl].append(mean)
            ms_min[impl].append(mn)
            cpu[impl].append(c)
        ratios.append(ms["torch"][-1] / ms["vdit"][-1])
        if cpu["vdit"][-1] is not None:
            cpu_ratios.append(cpu["torch"][-1] / cpu["vdit"][-1])
    common = {"bench": "cpu-vs-torch", "model": name, "threads": threads,
              "tokens": tf.tokens, "rounds": a.rounds, "repeat": a.repeat,
              "load1": round(os.getloadavg()[0], 2)}
    for impl, att in (("vdit", attention), ("torch", tf.attention)):
        print(json.dumps(dict(common, impl=impl, attention=att,
                              ms=round(statistics.median(ms[impl]), 3),
                              ms_min=round(min(ms_min[impl]), 3),
                              cpu_ms=median_or_none(cpu[impl]),
                              ms_rounds=[round(x, 3) for x in ms[impl]])), flush=True)
    print(json.dumps(dict(common, impl="ratio", speedup=round(statistics.median(ratios), 3),
                          speedup_rounds=[round(x, 3) for x in ratios],
                          speedup_min=round(min(ms_min["torch"]) / min(ms_min["vdit"]), 3),
                          speedup_cpu=median_or_none(cpu_ratios))),
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
