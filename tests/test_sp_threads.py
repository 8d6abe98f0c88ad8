#!/usr/bin/python3
"""Sequence parallelism over ranks of one process, on the CPU (sp_threads_check.c).

usage: test_sp_threads.py PROGRAM MODEL CASE
The model's attention settings are those of the MPI tests: blocks of 16 tokens, so the
adaptive pattern has blocks to skip; two steps: a search with dense attention, then one
with the cached LSE and a sparse run.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

PROGRAM, MODEL, CASE = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
ROOT = os.environ.get("VDIT_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), ".."))

with tempfile.TemporaryDirectory() as tmp:
    src, dst = os.path.join(ROOT, "models", MODEL), os.path.join(tmp, MODEL)
    os.mkdir(dst)
    for entry in os.listdir(src):
        if entry != "config.json":
            os.symlink(os.path.join(src, entry), os.path.join(dst, entry))
    with open(os.path.join(src, "config.json")) as f:
        config = json.load(f)
    config["attention"].update(block=16, sparsity=0.5, warmup=0.0, search_steps=[0.0, 0.5])
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f)
    start = time.monotonic()
    proc = subprocess.run([PROGRAM, dst, CASE], capture_output=True, text=True, timeout=600)
    print(proc.stdout.strip(), f"({time.monotonic() - start:.1f} s)")
    if proc.returncode != 0:
        print("FAIL:", proc.stderr.strip())
        sys.exit(1)
