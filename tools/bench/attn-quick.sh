#!/usr/bin/env bash
# A short GPU check of the attention kernels, for one device call while a kernel is being
# changed: build (CUDA, no GStreamer), the attention parity tests, then our attention
# timings beside each other (every kernel the dispatcher can force) and optionally the
# PyTorch peers, and optionally where an AdaSpa search's time goes at 24 frames (nsys's
# per-kernel sums, one-pass and two-pass: search-nsys.csv). The adaptive lines give
# search_ms (a first search: dense attention with LSE, block scores, the choice) and
# research_ms (a later one under the cached LSE) for each way of scoring. Output under
# OUTDIR: build.log, tests.log, bench.jsonl, env.txt.
#
#   tools/bench/attn-quick.sh OUTDIR [peers][,search-nsys]
set -uo pipefail
out=${1:?usage: attn-quick.sh OUTDIR [peers][,search-nsys]}
extra=",${2:-},"
mkdir -p "$out"
. .devdeps/device-env.sh
export PATH=/usr/local/cuda/bin:$PATH
b=${VDIT_GPU_BUILD:-/tmp/vdit-gpu}
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  nvcc --version | tail -2
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'
} > "$out/env.txt" 2>&1
reconf=; [ -f "$b/build.ninja" ] && reconf=--reconfigure
if ! { meson setup $reconf "$b" -Dgst=disabled -Dgpu_archs=90a && ninja -C "$b"; } > "$out/build.log" 2>&1; then
  tail -40 "$out/build.log"; exit 1
fi
echo "== tests"
VDIT_SOURCE_ROOT=$PWD timeout 120 "$b/tests/gpu/test_gpu_attention" > "$out/tests.log" 2>&1
echo "attention tests rc=$?"; tail -15 "$out/tests.log"
# attention at Open-Sora-Plan v1.2's shape (24 heads of 96, 3,600 tokens a frame)
attn_osp=("$b/tools/vdit" bench attention --backend cuda --heads 24 --head-dim 96 --tokens-per-frame 3600)
attn () {
  timeout 60 "${attn_osp[@]}" --repeat 10 --warmup 2 "$@" 2>> "$out/env.txt" | tee -a "$out/bench.jsonl"
}
short () { python3 -c 'import json,sys
for l in sys.stdin:
  try: r=json.loads(l)
  except Exception: continue
  print(r.get("impl",""),r.get("kernel",""),r.get("variant",""),r.get("mode"),r.get("frames"),r.get("k",""),"ms",r.get("ms"),"search",r.get("search_ms",""),"research",r.get("research_ms",""))'; }
echo "== ours"
{
  attn --mode full --frames 8
  VDIT_CUDA_ATTN=fa3-2x128 attn --mode full --frames 8
  VDIT_CUDA_ATTN=sm90 attn --mode full --frames 8
  attn --mode tile --frames 8 --k 2
  attn --mode tile --frames 8 --k 1
  attn --mode adaptive --frames 8 --sparsity 0.8
  VDIT_CUDA_ATTN=two-pass-search attn --mode adaptive --frames 8 --sparsity 0.8
  attn --mode full --frames 24
  attn --mode tile --frames 24 --k 3
  attn --mode adaptive --frames 24 --sparsity 0.8 --repeat 4
  VDIT_CUDA_ATTN=two-pass-search attn --mode adaptive --frames 24 --sparsity 0.8 --repeat 4
  VDIT_CUDA_ATTN=fa3-2x128 attn --mode adaptive --frames 24 --sparsity 0.8 --repeat 4
} | short
if [[ $extra == *,search-nsys,* ]]; then
  echo "== nsys: one adaptive search and step at 24 frames, each block-score kernel"
  for v in default two-pass-search; do
    rep=/tmp/attn-search-$v
    VDIT_CUDA_ATTN=$([ $v = default ] || echo $v) timeout 200 nsys profile -o $rep \
      --force-overwrite true -t cuda "${attn_osp[@]}" --frames 24 --mode adaptive \
      --sparsity 0.8 --repeat 1 --warmup 0 >> "$out/env.txt" 2>&1
    echo "# $v" >> "$out/search-nsys.csv"
    timeout 120 nsys stats -r cuda_gpu_kern_sum -f csv "$rep.nsys-rep" 2>> "$out/env.txt" |
      cut -c1-300 >> "$out/search-nsys.csv"
    rm -f "$rep.nsys-rep" "$rep.sqlite"
  done
  grep -iE "^#|scores|fa3_kernel|row_sort|recall_sum|balance|build_rows" "$out/search-nsys.csv" | cut -c1-160
fi
if [[ $extra == *,peers,* ]]; then
  echo "== peers"
  PYTHONUNBUFFERED=1 timeout 240 python3 tools/bench/peers.py --frames 8,24 \
    2>> "$out/env.txt" | tee -a "$out/bench.jsonl" | short
fi
