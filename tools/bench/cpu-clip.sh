#!/usr/bin/env bash
# The CPU backend against PyTorch on the same cores, and the demo clip's engine time:
#
#   tools/bench/cpu-clip.sh VDIT OUTDIR [CPUS] [ROUNDS]
#
# CPUS (e.g. 0,1) pins everything to those CPUs with taskset, so that a bigger machine
# can stand in for a small one; empty = no pinning. Writes OUTDIR/bench.jsonl
# (tools/bench/cpu-vs-torch.py on models/default and models/tiny, 1 and 2 threads) and
# OUTDIR/clip.txt (the clip ./scripts/demo.sh renders, `vdit generate` with the default
# threads, ROUNDS times; each line the time vdit prints: prompt to last frame written).
# PYTHON names the interpreter that has torch (default python3).
set -euo pipefail
vdit=${1:?usage: cpu-clip.sh VDIT OUTDIR [CPUS] [ROUNDS]}
out=${2:?output directory}
cpus=${3:-}
rounds=${4:-10}
py=${PYTHON:-python3}
mkdir -p "$out"
pin=(); [ -n "$cpus" ] && pin=(taskset -c "$cpus")
here=$(cd "$(dirname "$0")" && pwd)
"${pin[@]}" "$py" "$here/cpu-vs-torch.py" --vdit "$vdit" --threads 1,2 --rounds "$rounds" \
  models/default models/tiny | tee "$out/bench.jsonl"
: > "$out/clip.txt"
for _ in $(seq "$rounds"); do
  "${pin[@]}" "$vdit" generate --model models/default \
    --prompt "a red circle moving left on a gray background" --seed 1 \
    --out "$out/clip.y4m" 2>&1 | grep -o 'in [0-9.]* s' | tee -a "$out/clip.txt"
done
rm -f "$out/clip.y4m"
