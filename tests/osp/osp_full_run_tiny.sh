#!/bin/sh
# tools/bench/osp-full-run.sh on the CPU with the tiny layout: the published checkpoint
# written and converted (prepare), then setting b through `vdit generate --stats`; its
# bench.jsonl must hold both lines. Exit 77 (skip) without torch and numpy.
#
#   osp_full_run_tiny.sh PYTHON VDIT
set -eu
py=${1:?usage: $0 PYTHON VDIT}
vdit=${2:?usage: $0 PYTHON VDIT}
"$py" -c 'import torch, numpy' 2>/dev/null || { echo "torch or numpy missing: skipped"; exit 77; }
root=${VDIT_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
SIZE=tiny TEXT_LAYERS=2 DEVICE=cpu FEW_STEPS=2 PYTHON=$py VDIT=$vdit WORK=$tmp/work \
  MODEL_DIR=$tmp/model tools/bench/osp-full-run.sh "$tmp/out" prepare,b29
cat "$tmp/out/bench.jsonl"
grep -q '"bench":"osp-prepare"' "$tmp/out/bench.jsonl"
grep -q '"bench":"generate".*"attention":"tile","frames":29.*"steps":2,' "$tmp/out/bench.jsonl"
grep -q '"decode_ms"' "$tmp/out/bench.jsonl"
[ ! -e "$tmp/work/osp" ] # the published files go once converted
echo "ok"
