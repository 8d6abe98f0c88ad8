#!/usr/bin/env bash
# Open-Sora-Plan v1.2 at full size on one GPU, end to end (docs/performance.md, "Open-Sora-Plan
# v1.2 at full size"): a random-weight checkpoint in the published layout written by
# train/make_osp_checkpoint.py (DiT 11.1 GB F32, mT5-XXL with TEXT_LAYERS of its 24 blocks,
# the CausalVideoVAE), converted by train/convert_osp.py to a bf16 vdit model with a tile
# plan of k = 3 in every layer, then `vdit generate --stats` in three settings:
#   a  the reference: 100 steps, guidance 7.5, full attention
#   b  the Efficient-vDiT setting: FEW_STEPS (default 8; a list such as "4 8" runs each)
#      steps, no guidance (distilled into the student), tile attention k = 3 (3:5 at 29
#      frames, 3:21 at 93)
#   c  adaptive attention at sparsity 0.8, 100 steps, guidance 7.5
# at 29 frames (parts a29 b29 c29) and 93 frames (a93 b93 c93), each a JSON line in
# OUTDIR/bench.jsonl (load, text, denoising and decoding ms, peak GiB). Beside them, the
# PyTorch peer of the same shapes (peer29, peer93): tools/bench/peers.py's Open-Sora-Plan
# DiT step as a guided pair (batch 2, eager as Open-Sora-Plan's sample script runs it) and
# its CausalVideoVAE decode (bf16 autocast, tiled) of a latent of the same size; vditsrc
# with setting b (element29, element93; needs the plug-in built: gpu-run.sh's gst part).
#
#   tools/bench/gpu-run.sh OUTDIR build,gst            # builds build-gpu
#   tools/bench/osp-full-run.sh OUTDIR [PARTS]         # default prepare,b29,a29,c29,peer29
#
# `prepare` writes and converts once into WORK (default /dev/shm/osp-full-work) and
# MODEL_DIR (default /dev/shm/osp-full-model): RAM-backed, as the GPU machine's 64 GB disk
# does not hold the published files (34 GB) and the converted ones (16 GB) together, and
# the writer is faster there; the published files go once converted. Later calls on the
# same machine find the model there and skip it. SIZE=tiny DEVICE=cpu BUILD=build tries the
# script on the CPU with the tiny layout (tests/osp/osp_full_run_tiny.sh: the `osp` suite);
# VDIT and PYTHON name the programs. STEPS_A (default 100) shortens a and c
# for a part that would not fit one call (the line's "steps" says what ran); BG=1 runs
# the generation parts of the call in the background instead and the `wait` part, in this
# or a following call on the same machine, collects them: one background run at a time,
# e.g. `BG=1 osp-full-run.sh OUT a93,wait`, then `osp-full-run.sh OUT wait`.
set -uo pipefail
out=${1:?usage: osp-full-run.sh OUTDIR [PARTS]}
parts=${2:-prepare,b29,a29,c29,peer29}
work=${WORK:-/dev/shm/osp-full-work}
model=${MODEL_DIR:-/dev/shm/osp-full-model}
vdit=${VDIT:-${BUILD:-build-gpu}/tools/vdit}
py=${PYTHON:-python3}
steps_a=${STEPS_A:-100}
few=${FEW_STEPS:-8}
prompt="a red panda climbing a snowy pine tree at sunrise, cinematic"
mkdir -p "$out"
has () { [[ ",$parts," == *",$1,"* ]]; }
log () { echo "== $(date +%T) $*" | tee -a "$out/env.txt"; }
seconds () { echo $(( $(date +%s%N) / 1000000 )); }
# LABEL COMMAND...: with its time and peak resident set where /usr/bin/time is installed
measured () {
  local label=$1; shift
  if [ -x /usr/bin/time ]; then /usr/bin/time -f "$label: %e s, peak RSS %M kB" "$@"; else "$@"; fi
}
[ -f .devdeps/device-env.sh ] && . .devdeps/device-env.sh

if has prepare && [ ! -f "$model/config.json" ]; then
  df -h "$(dirname "$work")" "$(dirname "$model")" >> "$out/env.txt"
  mkdir -p "$work"
  log "write the published checkpoint (text layers ${TEXT_LAYERS:-24})"
  t0=$(seconds)
  measured write "$py" train/make_osp_checkpoint.py \
    --size "${SIZE:-full}" --text-layers "${TEXT_LAYERS:-24}" "$work/osp" >> "$out/env.txt" 2>&1 || exit 1
  t1=$(seconds)
  log "convert"
  dit=$(ls -d "$work"/osp/*x*p)
  plan=$("$py" -c 'import json,sys; print(",".join(["3"] * json.load(open(sys.argv[1]))["num_layers"]))' \
    "$dit/config.json")
  measured convert "$py" train/convert_osp.py \
    --transformer "$dit" --text-encoder "$work/osp/mt5-xxl" --vae "$work/osp/vae" \
    --attention tile --plan "$plan" --steps 100 --guidance 7.5 "$model" >> "$out/env.txt" 2>&1 ||
    { rm -rf "$model"; exit 1; }
  t2=$(seconds)
  du -sh "$dit" "$work/osp/mt5-xxl" "$work/osp/vae" "$model" >> "$out/env.txt"
  echo "{\"bench\":\"osp-prepare\",\"text_layers\":${TEXT_LAYERS:-24},\"write_ms\":$((t1 - t0)),\"convert_ms\":$((t2 - t1))}" |
    tee -a "$out/bench.jsonl"
  [ "${KEEP:-0}" = 1 ] || rm -rf "$work/osp"
fi
[ -f "$model/config.json" ] || { echo "no converted model in $model: run the prepare part" >&2; exit 1; }

# one generation; the stats line goes to bench.jsonl, the clip to /tmp. With BG=1 it runs
# in a session of its own that outlives the call (up to 25 min; the machine stays while
# calls follow each other within its idle time) and the `wait` part collects its line.
bg=/dev/shm/osp-full-bg
gen () {
  local limit=$1; shift
  if [ "${BG:-0}" = 1 ]; then
    log "generate in the background: $*"
    rm -f $bg.jsonl $bg.log $bg.pid
    setsid bash -c 'echo $$ > "$0.pid"; exec "$@"' $bg timeout 1500 "$vdit" generate       -m "$model" -d "${DEVICE:-cuda}" -p "$prompt" -o /tmp/osp-full-bg.y4m -q       --stats $bg.jsonl "$@" > $bg.log 2>&1 < /dev/null &
    return
  fi
  log "generate $*"
  timeout "$limit" "$vdit" generate -m "$model" -d "${DEVICE:-cuda}" -p "$prompt" -o /tmp/osp-full.y4m -q \
    --stats "$out/bench.jsonl" "$@" 2>> "$out/env.txt"
  local rc=$?
  echo "rc=$rc" >> "$out/env.txt"
  [ "$rc" = 0 ] || { echo "generate $* failed (exit status $rc): see env.txt" >&2; failed=1; }
  tail -1 "$out/bench.jsonl"
}
for f in 29 93; do
  t=$(( (f - 1) / 4 + 1 ))
  if has b$f; then
    for n in $few; do gen 300 -f $f -s "$n" -g 1 -a tile; done
  fi
  has a$f && gen 590 -f $f -s "$steps_a" -g 7.5 -a full
  has c$f && gen 590 -f $f -s "$steps_a" -g 7.5 -a adaptive --sparsity 0.8
  if has peer$f; then
    log "peer: PyTorch DiT step (guided pair) and VAE decode, T=$t"
    PYTHONUNBUFFERED=1 timeout 200 python3 tools/bench/peers.py --no-attention --step \
      --frames $t --batch 2 --step-impls "${PEER_IMPLS:-eager}" --step-repeat 2 \
      2>> "$out/env.txt" | tee -a "$out/bench.jsonl"
    PYTHONUNBUFFERED=1 timeout 150 python3 tools/bench/peers.py --no-attention --vae \
      --frames $t --vae-precisions bf16 --vae-repeat 1 2>> "$out/env.txt" | tee -a "$out/bench.jsonl"
  fi
  if has element$f; then
    log "vditsrc, setting b, $f frames"
    GST_PLUGIN_PATH=$PWD/${BUILD:-build-gpu}/gst timeout 300 \
      "${BUILD:-build-gpu}"/gst/vdit-element-timing "vditsrc model=$model device=${DEVICE:-cuda} frames=$f steps=${few%% *} guidance=1 attention=tile prompt=\"$prompt\" ! fakesink name=sink" \
      2>> "$out/env.txt" | tee -a "$out/bench.jsonl"
  fi
done
if has wait; then
  log "wait for the background generation (at most ${WAIT_S:-560} s)"
  end=$(( $(date +%s) + ${WAIT_S:-560} ))
  while [ -f $bg.pid ] && kill -0 "$(cat $bg.pid)" 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do
    sleep 5
  done
  if [ -f $bg.pid ] && kill -0 "$(cat $bg.pid)" 2>/dev/null; then
    echo "still running: call the wait part again" | tee -a "$out/env.txt"
  else
    cat $bg.log >> "$out/env.txt"
    cat $bg.jsonl 2>/dev/null | tee -a "$out/bench.jsonl"
    rm -f $bg.pid
  fi
fi
log "done"
exit "${failed:-0}"
