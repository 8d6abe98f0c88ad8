#!/usr/bin/env bash
# A long run of one fuzz target, for the figures in docs/reliability.md (not part of the
# suite). Stops after RUNS executions or SECONDS seconds, whichever comes first, and
# keeps the corpus between runs so later runs add to it:
#   fuzz/run_long.sh BUILD_DIR NAME RUNS SECONDS
# Prints libFuzzer's final stats (stat::number_of_executed_units is the count).
set -euo pipefail
build=$1 name=$2 runs=$3 seconds=$4
src=$(cd "$(dirname "$0")/.." && pwd)
corpus="$build/fuzz/corpus-$name"
seeds="$corpus-seeds"
artifacts="$build/fuzz/artifacts-$name"
mkdir -p "$corpus" "$seeds" "$artifacts"
python3 "$src/fuzz/make_seeds.py" "$name" "$src/models" "$seeds"
dirs=("$corpus" "$seeds")
[ -d "$src/fuzz/seeds/$name" ] && dirs+=("$src/fuzz/seeds/$name")
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export G_DEBUG=fatal-criticals VDIT_SOURCE_ROOT="$src"
exec nice -n 10 "$build/fuzz/fuzz_$name" -runs="$runs" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "${dirs[@]}"
