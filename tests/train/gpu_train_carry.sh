#!/bin/sh
# train/gpu-train.sh carrying a run between machines, on the CPU with the tiny config:
# a background slice stopped and packed (STATE_OUT), the run gone as on a fresh machine,
# its manifest carried alone (the run waits for the part) and then with its part
# (STATE_IN): unpacked, resumed from the step it was stopped at, stopped again and packed
# light (STATE_LIGHT); then a finished base exported and a run seeded from the export
# (SEED) that continues it; then that run finished through every stage with the engine
# given (VDIT), its result packed with the base's export (EXPORT_OUT).
# Exit 77 (skip) without torch or pgrep.
#
#   gpu_train_carry.sh PYTHON VDIT
set -eu
py=${1:?usage: $0 PYTHON VDIT}
vdit_exe=$(cd "$(dirname "${2:?usage: $0 PYTHON VDIT}")" && pwd)/$(basename "$2")
"$py" -c 'import torch, numpy, sentencepiece' 2>/dev/null || { echo "no torch: skipped"; exit 77; }
command -v pgrep >/dev/null || { echo "no pgrep (procps): skipped"; exit 77; }
root=${VDIT_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d)
stop_bg () {  # a background slice a failed check left running
  [ -f "$tmp/runs/carry/background.pid" ] &&
    pkill -TERM -x timeout -s "$(cat "$tmp/runs/carry/background.pid")" 2>/dev/null || true
  rm -rf "$tmp"
}
trap stop_bg EXIT
cd "$root"
"$py" -c 'import json, sys
c = json.load(open("train/configs/tiny.json"))
c["name"] = "carry"
c["base"]["steps"] = 1000000  # stopped long before
json.dump(c, open(sys.argv[1], "w"))' "$tmp/carry.json"
export PYTHON="$py" RUNS="$tmp/runs" UNTIL=base VDIT_TRAIN_THREADS=1
slice () { train/gpu-train.sh "$@" "$tmp/carry.json"; }
fail () { echo "FAIL: $*"; exit 1; }

COMPILE=auto BG=1 WAIT_S=4 slice "$tmp/out1" 120
# the compiled blocks were timed against the eager ones, and not chosen off a GPU
grep -q '"variant": "compile-blocks"' "$tmp/out1/profile.jsonl" || fail "no timing"
grep -q '"variant": "compile-blocks-cudnn"' "$tmp/out1/profile.jsonl" || fail "no cuDNN timing"
[ "$(cat "$tmp/runs/carry/compile.txt")" = 0 ] || fail "compiled blocks chosen on a CPU"
[ "$(cat "$tmp/runs/carry/attention.txt")" = default ] || fail "cuDNN attention chosen on a CPU"
grep -q "VDIT_TRAIN_COMPILE=0 VDIT_TRAIN_SDPA=default" "$tmp/out1/slice.txt" ||
  fail "the choice not logged"
STATE_OUT=0-0 slice "$tmp/out1" 0
[ -f "$tmp/out1/state.json" ] && [ -f "$tmp/out1/state.tar.part-000" ] || fail "no parts back"
! pgrep -s "$(cat "$tmp/runs/carry/background.pid")" >/dev/null || fail "still training"
step=$(sed -n 's/.*\[base\] stopped at step \([0-9]*\).*/\1/p' "$tmp/runs/carry/log.txt")
[ -n "$step" ] || fail "the stage did not stop and save"

rm -rf "$tmp/runs"                         # a fresh machine
mkdir "$tmp/carry1" "$tmp/carry2"
cp "$tmp/out1/state.json" "$tmp/carry1/"
cp "$tmp/out1/state.json" "$tmp/out1/state.tar.part-000" "$tmp/carry2/"
STATE_IN="$tmp/carry1" BG=1 WAIT_S=0 slice "$tmp/out2" 120 | tee "$tmp/call1.txt"
grep -q "carry the missing parts" "$tmp/call1.txt" || fail "no word of the missing part"
[ ! -e "$tmp/runs/carry/run.json" ] || fail "unpacked without its part"
STATE_IN="$tmp/carry2" BG=1 WAIT_S=4 slice "$tmp/out2" 120
grep -q "\[base\] resumed at step $step " "$tmp/runs/carry/log.txt" || fail "not resumed at $step"
STATE_LIGHT=1 STATE_OUT=0-0 slice "$tmp/out2" 0
grep -c "stopped at step" "$tmp/runs/carry/log.txt" | grep -qx 2 || fail "second stop"
grep -q '"base": "step [0-9]* (light)"' "$tmp/out2/state.json" || fail "not packed light"
echo "ok: stopped at step $step, carried, resumed and stopped again"

base_steps () {
  "$py" -c 'import json, sys
c = json.load(open(sys.argv[1]))
c["base"]["steps"] = int(sys.argv[2])
json.dump(c, open(sys.argv[1], "w"))' "$tmp/carry.json" "$1"
}
# SEED: a finished base exported at the end of its call (EXPORT_OUT), then a machine
# without the run starts from the export and continues the base where the config asks
# for more steps
base_steps 3
rm -rf "$tmp/runs"
EXPORT_OUT=1 slice "$tmp/out3" 120 > /dev/null
ls "$tmp/out3"/base-model.tar.part-* > /dev/null 2>&1 || fail "EXPORT_OUT brought no base back"
! ls "$tmp/out3"/mlcd-model.tar.part-* > /dev/null 2>&1 || fail "an unfinished stage exported"
(cd "$tmp" && cat out3/base-model.tar.part-* | tar xf -)
rm -rf "$tmp/runs"
base_steps 5
EXPORT_OUT=1 SEED="$tmp/base" slice "$tmp/out4" 120 > /dev/null
grep -q "seeded .*base finished at step 3 " "$tmp/out4/slice.txt" || fail "not seeded"
grep -q "\[base\] continued from the step-3 final weights" "$tmp/runs/carry/log.txt" ||
  fail "the base not continued from the export"
grep -q '"steps": 5' "$tmp/runs/carry/base/done.json" || fail "the continued base did not finish"
ls "$tmp/out4"/base-model.tar.part-* > /dev/null 2>&1 || fail "the continued base not exported"
echo "ok: a run seeded from an exported base continued it"

# the rest of the pipeline on the engine built here: a finished run's result holds the
# shipped model, SynthBench and, with EXPORT_OUT, the whole export of the first stage
# trained on this machine (here the base, continued after its seed), the others' configs
result_has () {  # OUT EXPORTED-STAGE OTHER-STAGE
  rm -rf "$tmp/result"; mkdir "$tmp/result"
  (cd "$tmp/result" && cat "$1"/result.tar.part-* | tar xf -)
  for f in ship/model.safetensors ship/config.json bench/synthbench.md bench/sheet.png \
           "export/$2/model.safetensors" "export/$2/tokenizer.model" "export/$3/config.json" \
           search/plan.json; do
    [ -f "$tmp/result/$f" ] || fail "$f not in the result"
  done
  [ ! -e "$tmp/result/export/$3/model.safetensors" ] || fail "$3's export came back too"
}
UNTIL= EXPORT_OUT=1 VDIT="$vdit_exe" slice "$tmp/out5" 120 > /dev/null
grep -q "pipeline rc=0 " "$tmp/out5/slice.txt" || fail "the pipeline did not finish"
! ls "$tmp/out5"/*-model.tar.part-* > /dev/null 2>&1 || fail "stage exports beside the result"
result_has "$tmp/out5" base mlcd
# seeded with a base it does not train further: the result brings MLCD's export, which
# seeds the next run after that base
mv "$tmp/result/export/base" "$tmp/base5"
rm -rf "$tmp/runs"
UNTIL= EXPORT_OUT=1 SEED="$tmp/base5" VDIT="$vdit_exe" slice "$tmp/out6" 120 > /dev/null
result_has "$tmp/out6" mlcd base
"$py" train/run_state.py seed "$tmp/base5" "$tmp/result/export/mlcd" "$tmp/reseeded" \
  --config "$tmp/carry.json" > /dev/null || fail "the MLCD export seeds no run"
UNTIL= VDIT=/nowhere/vdit slice "$tmp/out7" 120 > /dev/null && fail "ran without its engine"
grep -q "VDIT=/nowhere/vdit is not a program here" "$tmp/out7/slice.txt" ||
  fail "no word of the missing engine"
echo "ok: the finished pipeline's result carries the model, SynthBench and the first trained stage's export"
