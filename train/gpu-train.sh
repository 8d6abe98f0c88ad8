#!/usr/bin/env bash
# One slice of the GPU training pipeline on a machine with one NVIDIA GPU:
#
#   train/gpu-train.sh OUTDIR [SECONDS] [CONFIG]
#
# Builds the engine (stage 2 and SynthBench run it), then runs train/pipeline.py with
# CONFIG (default train/configs/gpu.json) for at most SECONDS (default 480): the stage
# in progress saves its checkpoint on SIGTERM, and running the script again on the same
# machine continues from it (train/runs/ is kept between runs there). OUTDIR gets what
# is small enough to carry away: the log, the evaluations, and, once the pipeline has
# finished, the shipped model and SynthBench's results as one tar split into 15 MiB
# parts (rebuild it with `cat OUTDIR/result.tar.part-* | tar x`).
#
# BG=1 starts the pipeline in the background instead (SECONDS then bounds the whole run,
# e.g. 1700) and waits up to WAIT_S seconds for it; calling again with BG=1 on the same
# machine waits on the same run, so one machine can run every stage through calls of at
# most 10 minutes each. What a machine trains stays on it: a machine given back loses the
# run in progress.
#
# Needs GLib, json-glib, SentencePiece and OpenBLAS for the engine: on a machine
# without them, source a prefix that has them first (DEVELOPERS: .devdeps).
set -uo pipefail
out=${1:?usage: gpu-train.sh OUTDIR [SECONDS] [CONFIG]}
seconds=${2:-480}
config=${3:-train/configs/gpu.json}
name=$(basename "$config" .json)
run=train/runs/$name
mkdir -p "$out"
log () { echo "== $(date +%T) $*" | tee -a "$out/slice.txt"; }

[ -f .devdeps/device-env.sh ] && . .devdeps/device-env.sh
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/slice.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' >> "$out/slice.txt" 2>&1

if [ ! -x build-train/tools/vdit ]; then
  log "build"
  if ! { meson setup build-train -Dgst=disabled -Dgpu_archs=90a &&
         ninja -C build-train; } > "$out/build.log" 2>&1; then
    tail -30 "$out/build.log"
    exit 1
  fi
fi

pipeline () {
  PYTHONUNBUFFERED=1 timeout -s TERM -k 60 "$seconds" python3 train/pipeline.py \
    --config "$config" --run-dir "$run" --vdit build-train/tools/vdit --ship "$run/ship" --quiet
}
bg=$run/background
if [ "${BG:-0}" = 1 ]; then
  # the pipeline in a session of its own, which outlives this call: later calls on the
  # same machine (within its idle time) wait for it with WAIT_S and collect what it made
  mkdir -p "$run"
  if [ -f "$bg.pid" ] && kill -0 "$(cat "$bg.pid")" 2>/dev/null; then
    log "pipeline already running in the background (pid $(cat "$bg.pid"))"
  else
    log "pipeline in the background ($config, at most $seconds s)"
    rm -f "$bg.rc"
    export -f pipeline; export config run seconds
    setsid bash -c 'echo $$ > "$0.pid"; pipeline; echo $? > "$0.rc"' "$bg" \
      > "$bg.log" 2>&1 < /dev/null &
    sleep 1
  fi
  end=$(( $(date +%s) + ${WAIT_S:-0} ))
  while [ ! -f "$bg.rc" ] && [ "$(date +%s)" -lt "$end" ]; do
    sleep 5
  done
  if [ -f "$bg.rc" ]; then
    rc=$(cat "$bg.rc")
  else
    log "still running after ${WAIT_S:-0} s: call again with BG=1 to keep waiting"
    rc=running
  fi
else
  log "pipeline ($config, at most $seconds s)"
  pipeline
  rc=$?
fi
log "pipeline rc=$rc (0: finished, 3 or 124: stopped, resumable)"
cp "$run/log.txt" "$out/log.txt" 2>/dev/null
cat "$run"/*/evals.jsonl > "$out/evals.jsonl" 2>/dev/null
tail -5 "$run/log.txt"

if [ "$rc" = 0 ] && [ -f "$run/ship/model.safetensors" ]; then
  log "packing the model and SynthBench"
  tar cf - -C "$run" ship bench export/base/config.json export/mlcd/config.json \
    search/plan.json | split -b 15M - "$out/result.tar.part-"
  ls -l "$out"
fi
exit 0
