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
# most 10 minutes each. What a machine trains stays on it (a machine given back loses the
# run in progress) unless it is packed and brought back (STATE_OUT below).
#
# Across machines (a machine lent for half an hour, a stage trained for longer): the run
# goes back and forth packed in parts of 15 MiB (train/run_state.py), a few each call, as
# a call carries at most 64 MiB there and brings at most 8 files back:
#
#   STATE_IN=DIR   before training, DIR's parts (carried there) join those of earlier
#                  calls; once all have come the run is unpacked (on a machine without it)
#   STATE_OUT=a-b  after the slice: the background pipeline is stopped (its stage saves),
#                  the run packed once, and parts a to b (numbered from 0) and state.json
#                  copied to OUTDIR; call again with the next range and SECONDS 0 (no
#                  training) for the rest
#   STATE_LIGHT=1  with STATE_OUT: the stage in progress packs as its weights and EMA in
#                  bf16 (no optimiser moments, no best.pt): 48 MB instead of 143 for the
#                  GPU config's base stage, so one call brings it back; it resumes with
#                  fresh moments
#   SEED="MODEL.." a machine without the run starts it from exports of finished stages
#                  (train/export.py; the base, or the base and MLCD, in that order:
#                  models/synth-gpu-base; `run_state.py seed`): the pipeline goes on after
#                  them, or continues the last one from its weights where CONFIG asks it
#                  for more steps than it was trained for
#   EXPORT_OUT=1   at the end of a call before the pipeline has finished, each trained
#                  stage that has finished here (not one that came finished by SEED or
#                  STATE_IN and was not trained further) exported to
#                  the engine's format (base, mlcd) as OUTDIR/STAGE-model.tar.part-*, 15
#                  MiB each: what a run has learnt outlasts the machine and its packs; once
#                  it has finished, the result below holds the export of the first such
#                  stage instead (the base, or MLCD after a seeded base)
#   UNTIL=STAGE    stop after STAGE (base and mlcd are PyTorch alone: no engine build, so
#                  a call need not carry the engine's packages; the mask search before kd
#                  runs the engine)
#
# PYTHON names the interpreter (default python3), RUNS the runs' folder (train/runs),
# VDIT an engine built already (default: build-train/tools/vdit, built here when missing).
# COMPILE=auto|1|0 (default 0): torch.compile the transformer blocks, and SDPA=default|cudnn
# the attention kernels (see choose_compile).
#
# Needs GLib, json-glib, SentencePiece and OpenBLAS for the engine: on a machine
# without them, source a prefix that has them first (DEVELOPERS: .devdeps, or another
# folder of the same kind named by DEVDEPS, e.g. one without GStreamer's packages, which
# -Dgst=disabled does not need).
set -uo pipefail
out=${1:?usage: gpu-train.sh OUTDIR [SECONDS] [CONFIG]}
seconds=${2:-480}
config=${3:-train/configs/gpu.json}
name=$(basename "$config" .json)
run=${RUNS:-train/runs}/$name
until_stage=${UNTIL:-}
py=${PYTHON:-python3}
mkdir -p "$out"
log () { echo "== $(date +%T) $*" | tee -a "$out/slice.txt"; }

devdeps=${DEVDEPS:-.devdeps}
[ -f "$devdeps/device-env.sh" ] && . "$devdeps/device-env.sh"
export PATH=/usr/local/cuda/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$out/slice.txt" 2>&1
"$py" -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' >> "$out/slice.txt" 2>&1

# the trained stages a run had finished when it came to this machine (unpacked or seeded),
# each with its done.json's checksum: EXPORT_OUT brings back only what finished here,
# which includes a stage that came finished and was continued here
done_sum () { echo "$1 $(cksum < "$run/$1/done.json")"; }
note_arrived () {
  for stage in base mlcd kd; do
    [ -f "$run/$stage/done.json" ] && done_sum "$stage"
  done > "$run.arrived"
}

bg=$run/background
# the background pipeline's session (its bash leads it; timeout and python are in it)
running () { [ -f "$bg.pid" ] && pgrep -s "$(cat "$bg.pid")" > /dev/null; }

if [ -n "${STATE_IN:-}" ]; then
  if [ -f "$run/run.json" ]; then
    log "$run is here already: the parts in $STATE_IN are not needed"
  else
    mkdir -p "$run.incoming"
    cp "$STATE_IN"/state.json "$STATE_IN"/state.tar.part-* "$run.incoming/" 2>/dev/null
    if "$py" train/run_state.py status "$run.incoming" | tee -a "$out/slice.txt"; then
      "$py" train/run_state.py unpack "$run.incoming" "$run" 2>&1 | tee -a "$out/slice.txt" &&
        rm -rf "$run.incoming" && note_arrived
    else
      log "carry the missing parts in the next call (STATE_IN again)"
      exit 0
    fi
    [ -f "$run/run.json" ] || exit 1
  fi
fi

if [ -n "${SEED:-}" ] && [ ! -f "$run/run.json" ]; then
  # shellcheck disable=SC2086  # one word per model directory
  "$py" train/run_state.py seed $SEED "$run" --config "$config" 2>&1 | tee -a "$out/slice.txt"
  [ -f "$run/run.json" ] || exit 1
  note_arrived
fi

vdit=${VDIT:-build-train/tools/vdit}
case "$until_stage:$seconds" in
  base:*|mlcd:*|*:0) ;;
  *) if [ -n "${VDIT:-}" ] && ! { [ -f "$vdit" ] && [ -x "$vdit" ]; }; then
       log "VDIT=$VDIT is not a program here"
       exit 1
     elif [ ! -x "$vdit" ]; then
       log "build"
       # the log comes back only when the build fails: a call brings back 8 files at most
       if ! { meson setup build-train -Dgst=disabled -Dgpu_archs=90a &&
              ninja -C build-train; } > /tmp/vdit-build-train.log 2>&1; then
         cp /tmp/vdit-build-train.log "$out/build.log"
         tail -30 "$out/build.log"
         exit 1
       fi
     fi ;;
esac

# COMPILE=auto: time a base step eager, with compiled blocks, and with compiled blocks on
# cuDNN's fused attention (train/profile_base_step.py, a minute or two) once per run on
# this machine, and train with the fastest; COMPILE=1 or 0 decides without measuring, and
# SDPA=cudnn or default (PyTorch's choice) the attention kernels. The choices are kept in
# $run/compile.txt and $run/attention.txt.
choose_compile () {
  case "${COMPILE:-0}" in
    auto) mkdir -p "$run"
          if [ ! -f "$run/compile.txt" ]; then
            log "timing eager and compiled base steps"
            rm -f "$out/profile.jsonl"
            "$py" train/profile_base_step.py --config "$config" --steps 10 --warmup 3 \
              --variants fused,compile-blocks,compile-blocks-cudnn --out "$out/profile.jsonl" \
              > /dev/null 2>&1
            "$py" - "$out/profile.jsonl" "$run/compile.txt" "$run/attention.txt" <<'PY'
import json, sys
t = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "s_per_step" in r and r["device"].startswith("cuda"):
        t[r["variant"]] = r["s_per_step"]
best = min(t, key=t.get) if t else "fused"
if best.startswith("compile") and t[best] >= 0.9 * t.get("fused", float("inf")):
    best = "fused"  # compiling must win back its minute of compilation
open(sys.argv[2], "w").write("1\n" if best.startswith("compile") else "0\n")
open(sys.argv[3], "w").write("cudnn\n" if best.endswith("-cudnn") else "default\n")
PY
            log "$(cat "$out/profile.jsonl" | tr '\n' ' ')"
          fi
          VDIT_TRAIN_COMPILE=$(cat "$run/compile.txt")
          VDIT_TRAIN_SDPA=$(cat "$run/attention.txt" 2>/dev/null || echo default) ;;
    *) VDIT_TRAIN_COMPILE=${COMPILE:-0}
       VDIT_TRAIN_SDPA=${SDPA:-default} ;;
  esac
  export VDIT_TRAIN_COMPILE VDIT_TRAIN_SDPA
  log "VDIT_TRAIN_COMPILE=$VDIT_TRAIN_COMPILE VDIT_TRAIN_SDPA=$VDIT_TRAIN_SDPA"
}

pipeline () {
  PYTHONUNBUFFERED=1 timeout -s TERM -k 60 "$seconds" "$py" train/pipeline.py \
    --config "$config" --run-dir "$run" --vdit "$vdit" --ship "$run/ship" \
    ${until_stage:+--until "$until_stage"} --quiet
}
if [ "${BG:-0}" = 1 ]; then
  # the pipeline in a session of its own, which outlives this call: later calls on the
  # same machine (within its idle time) wait for it with WAIT_S and collect what it made
  mkdir -p "$run"
  if running; then
    log "pipeline already running in the background (pid $(cat "$bg.pid"))"
  else
    choose_compile
    log "pipeline in the background ($config, at most $seconds s)"
    rm -f "$bg.rc"
    export -f pipeline; export config run seconds until_stage py vdit
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
elif [ "$seconds" -gt 0 ]; then
  choose_compile
  log "pipeline ($config, at most $seconds s)"
  pipeline
  rc=$?
else
  rc=skipped
fi
if [ -n "${STATE_OUT:-}" ]; then
  if running; then
    # timeout passes TERM to the pipeline, whose stage saves its checkpoint and stops
    log "stopping the background pipeline to pack the run"
    pkill -TERM -x timeout -s "$(cat "$bg.pid")"
    for _ in $(seq 150); do running || break; sleep 1; done
    running && { log "the pipeline did not stop: nothing packed"; exit 1; }
    rc=stopped
  fi
  # packed once per stop: later calls (SECONDS 0) fetch the other parts of the same pack
  if [ ! -f "$run.outgoing/state.json" ] || [ "$run/log.txt" -nt "$run.outgoing/state.json" ]; then
    "$py" train/run_state.py pack "$run" "$run.outgoing" ${STATE_LIGHT:+--light} 2>&1 |
      tee -a "$out/slice.txt" || exit 1
  fi
  first=${STATE_OUT%-*}; last=${STATE_OUT#*-}
  cp "$run.outgoing/state.json" "$out/"
  for ((i = first; i <= last; i++)); do
    part=$(printf '%s/state.tar.part-%03d' "$run.outgoing" "$i")
    [ -f "$part" ] && cp "$part" "$out/"
  done
  log "parts $STATE_OUT of $(ls "$run.outgoing"/state.tar.part-* | wc -l) (numbered from 0) in $out"
fi
log "pipeline rc=$rc (0: finished, 3 or 124: stopped, resumable)"
cp "$run/log.txt" "$out/log.txt" 2>/dev/null
cat "$run"/*/evals.jsonl > "$out/evals.jsonl" 2>/dev/null
tail -5 "$run/log.txt"

finished=no
[ "$rc" = 0 ] && [ -f "$run/ship/model.safetensors" ] && finished=yes
trained_here () {  # a trained stage that finished on this machine (not unpacked or seeded)
  [ -f "$run/$1/done.json" ] && ! grep -qxF "$(done_sum "$1")" "$run.arrived" 2>/dev/null
}
if [ "${EXPORT_OUT:-0}" = 1 ] && [ $finished = no ]; then
  for stage in base mlcd; do
    trained_here "$stage" || continue
    rm -rf "$run/export-out/$stage" "$out/$stage-model.tar.part-"*
    if "$py" train/export.py --run-dir "$run" --stage "$stage" --out "$run/export-out/$stage" \
         > /dev/null; then
      tar cf - -C "$run/export-out" "$stage" | split -b 15M - "$out/$stage-model.tar.part-"
      log "$stage exported: cat $stage-model.tar.part-* | tar x"
    else
      log "$stage: the export failed"
    fi
  done
fi

if [ $finished = yes ]; then
  log "packing the model and SynthBench"
  # with EXPORT_OUT also the whole export of the first trained stage that finished here
  # (the base, or MLCD after a seeded base): what a later run seeds from; one, as two
  # beside the shipped model would pass the 64 MiB a call brings back
  exports="export/base/config.json export/mlcd/config.json"
  if [ "${EXPORT_OUT:-0}" = 1 ]; then
    for stage in base mlcd; do
      if trained_here "$stage"; then
        exports=${exports/export\/$stage\/config.json/export/$stage}
        break
      fi
    done
  fi
  # shellcheck disable=SC2086  # one word per path
  tar cf - -C "$run" ship bench $exports search/plan.json | split -b 15M - "$out/result.tar.part-"
  ls -l "$out"
fi
exit 0
