#!/usr/bin/env bash
# Runs one libFuzzer target for a while (a meson test of suite 'fuzz'):
#   run_fuzz.sh FUZZER NAME CORPUS_DIR
# Seeds: fuzz/seeds/NAME/ (committed, small) and what fuzz/make_seeds.py derives from the
# shipped models (models/*/config.json, the safetensors headers). New inputs go to
# CORPUS_DIR (kept between runs, in the build directory). VDIT_FUZZ_SECONDS: how long
# (default 25). Crashes are written to CORPUS_DIR/../artifacts-NAME/.
set -euo pipefail
fuzzer=$1 name=$2 corpus=$3
src=${VDIT_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
seeds="$corpus-seeds"
artifacts="$(dirname "$corpus")/artifacts-$name"
mkdir -p "$corpus" "$seeds" "$artifacts"
python3 "$src/fuzz/make_seeds.py" "$name" "$src/models" "$seeds"
dirs=("$corpus" "$seeds")
if [ -d "$src/fuzz/seeds/$name" ]; then
  dirs+=("$src/fuzz/seeds/$name")
fi
# GLib's type system keeps its registrations for the life of the process: no leak noise
# from it is expected, but leaks in the loaders are findings.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec "$fuzzer" -max_total_time="${VDIT_FUZZ_SECONDS:-25}" -timeout=10 -rss_limit_mb=2048 \
  -max_len=65536 -print_final_stats=1 -artifact_prefix="$artifacts/" "${dirs[@]}"
