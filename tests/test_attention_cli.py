#!/usr/bin/python3
"""`vdit bench attention` and `vdit search-masks` end to end.

usage: test_attention_cli.py VDIT bench|search
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

VDIT = sys.argv[1]
ROOT = os.environ.get("VDIT_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), ".."))
TINY = os.path.join(ROOT, "models", "tiny")


def run(*args):
    return subprocess.run([VDIT, *args], capture_output=True, text=True, timeout=120)


def check(cond, message):
    if not cond:
        print("FAIL:", message)
        sys.exit(1)


def bench():
    keys = ("mode", "frames", "tokens", "heads", "head_dim", "density", "ms",
            "tflops_dense_equiv", "tflops_kept", "backend")
    for mode, extra, density in (("full", [], 1.0), ("tile", ["--k", "1"], 10 / 16),
                                 ("adaptive", ["--sparsity", "0.5", "--block", "16"], 0.5)):
        proc = run("bench", "attention", "--mode", mode, "--frames", "4",
                   "--tokens-per-frame", "32", "--heads", "2", "--head-dim", "12",
                   "--backend", "cpu", "--repeat", "2", *extra)
        check(proc.returncode == 0, f"{mode}: exit {proc.returncode}: {proc.stderr}")
        lines = proc.stdout.strip().splitlines()
        check(len(lines) == 1, f"{mode}: expected one JSON line: {proc.stdout!r}")
        rec = json.loads(lines[0])
        for key in keys:
            check(key in rec, f"{mode}: no {key!r} in {rec}")
        check(rec["mode"] == mode and rec["backend"] == "cpu" and rec["tokens"] == 128, rec)
        check(abs(rec["density"] - density) < 1e-6, f"{mode}: density {rec['density']}")
        check(rec["ms"] > 0 and rec["tflops_kept"] <= rec["tflops_dense_equiv"], rec)
    for bad in (["--mode", "sparse"], ["--frames", "0"], ["--sparsity", "1"],
                ["--backend", "tpu"]):
        proc = run("bench", "attention", *bad)
        check(proc.returncode == 2 and "vdit:" in proc.stderr, f"{bad}: {proc.returncode}")


def search():
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "tiny")
        shutil.copytree(TINY, model)
        prompts = os.path.join(tmp, "prompts.txt")
        with open(prompts, "w") as f:
            f.write("a red ball\n# a comment\n\na blue square moving up\n")
        proc = run("search-masks", "--model", model, "--prompts", prompts, "--threshold",
                   "0.3", "--steps", "2", "--device", "cpu", "--json")
        check(proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr}")
        recs = [json.loads(line) for line in proc.stdout.strip().splitlines()]
        with open(os.path.join(model, "config.json")) as f:
            cfg = json.load(f)
        depth = cfg["dit"]["depth"]
        check(len(recs) == depth + 1, f"expected {depth} layers and a summary: {recs}")
        plan = [r["k"] for r in recs[:depth]]
        check(cfg["attention"]["plan"] == plan, f"written plan {cfg['attention']['plan']} "
              f"!= printed {plan}")
        for r in recs[:depth]:
            errors = r["errors"]
            check(r["error"] <= 0.3 and errors[-1] == 0.0, r)
            check(all(e > 0.3 for e in errors[:r["k"]]), f"k is not the smallest: {r}")
        check(recs[-1]["prompts"] == 2 and recs[-1]["written"] is True, recs[-1])

        # the model still loads with its new plan, and a dry run leaves it alone
        proc = run("inspect", model)
        check(proc.returncode == 0, f"inspect after search: {proc.stderr}")
        before = open(os.path.join(model, "config.json")).read()
        proc = run("search-masks", "--model", model, "--prompts", prompts, "--threshold",
                   "0", "--steps", "1", "--device", "cpu", "--dry-run")
        check(proc.returncode == 0 and "dry run" in proc.stdout, proc.stdout + proc.stderr)
        check(open(os.path.join(model, "config.json")).read() == before, "dry run wrote")

        empty = os.path.join(tmp, "empty.txt")
        open(empty, "w").write("# nothing\n\n")
        proc = run("search-masks", "--model", model, "--prompts", empty, "--threshold", "0.1")
        check(proc.returncode == 1 and "no prompts" in proc.stderr, proc.stderr)
        proc = run("search-masks", "--model", model, "--prompts", prompts)
        check(proc.returncode == 2 and "--threshold" in proc.stderr, proc.stderr)


{"bench": bench, "search": search}[sys.argv[2]]()
print("ok")
