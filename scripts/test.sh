#!/usr/bin/env bash
# Installs what is missing, builds in build/, runs every test; then the same test suite
# built with AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/, gcc, no CUDA)
# and a short run of each fuzz target (build-fuzz/, clang; fuzz/: the libFuzzer ones and
# fuzz_convert.py, plain Python, for train/convert_osp.py's input). The last
# line printed is the summary "N passed, N failed[, N skipped]" of all three runs; the
# exit status is non-zero on any failure. VDIT_BUILD_DIR picks another build directory,
# VDIT_JOBS the compile jobs; VDIT_ASAN_BUILD_DIR and VDIT_FUZZ_BUILD_DIR the extra ones,
# VDIT_SANITIZE=0 and VDIT_FUZZ=0 skip those runs, VDIT_FUZZ_SECONDS sets the time per
# fuzz target (default 25).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
. scripts/deps.sh
BUILD=${VDIT_BUILD_DIR:-build}
ASAN_BUILD=${VDIT_ASAN_BUILD_DIR:-build-asan}
FUZZ_BUILD=${VDIT_FUZZ_BUILD_DIR:-build-fuzz}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# shellcheck disable=SC2086
if ! vdit_install_packages $VDIT_PACKAGES; then
  echo "vdit: installing packages failed" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
vdit_add_cuda_to_path

log=$(mktemp)
trap 'rm -f "$log"' EXIT
passed=0 failed=0 skipped=0

# meson's summary: "Ok: N", "Expected Fail: N", "Fail: N", "Unexpected Pass: N",
# "Skipped: N", "Timeout: N".
count () {
  sed -n "s/^$1:[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$log" | tail -n 1
}

# Runs `meson test "$@"` and adds its counts to the totals; a meson failure without a
# failed test (no summary, a setup error) counts as one failure.
run_tests () {
  : > "$log"
  meson test "$@" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  local ok xfail fail xpass skip timeout f
  ok=$(count "Ok"); xfail=$(count "Expected Fail"); fail=$(count "Fail")
  xpass=$(count "Unexpected Pass"); skip=$(count "Skipped"); timeout=$(count "Timeout")
  f=$(( ${fail:-0} + ${xpass:-0} + ${timeout:-0} ))
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
  fi
  passed=$(( passed + ${ok:-0} + ${xfail:-0} ))
  failed=$(( failed + f ))
  skipped=$(( skipped + ${skip:-0} ))
}

if vdit_build "$BUILD"; then
  run_tests -C "$BUILD" --print-errorlogs --num-processes 2
else
  echo "vdit: the build failed" >&2
  failed=$(( failed + 1 ))
fi

# The whole suite again under ASan + UBSan. CUDA is left out (fast; the sanitizers do not
# see into the GPU anyway). The GStreamer suite is left out: the instrumented vditsrc
# plug-in cannot be loaded by gst-plugin-scanner, gst-launch-1.0 or python3, which are
# not instrumented (the ASan runtime must come first in a process). UBSan reports are
# fatal; leak checking stays on.
if [ "${VDIT_SANITIZE:-1}" != 0 ]; then
  echo "vdit: the test suite with -Db_sanitize=address,undefined in $ASAN_BUILD" >&2
  if vdit_build "$ASAN_BUILD" -Dcuda=disabled -Db_sanitize=address,undefined \
      -Db_lundef=false -Dfuzz=disabled; then
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
      run_tests -C "$ASAN_BUILD" --print-errorlogs --num-processes 2 --no-suite gst \
        --timeout-multiplier 3
  else
    echo "vdit: the sanitizer build failed" >&2
    failed=$(( failed + 1 ))
  fi
fi

# A short run of each target in fuzz/ (clang only; its own build, in which only the fuzz
# targets are compiled): the libFuzzer ones, and fuzz_convert.py (the meson test
# `convert`; /usr/bin/python3 with python3-numpy, nothing to compile).
if [ "${VDIT_FUZZ:-1}" != 0 ]; then
  if command -v clang >/dev/null 2>&1 && command -v clang++ >/dev/null 2>&1; then
    echo "vdit: fuzzing each target for ${VDIT_FUZZ_SECONDS:-25} s in $FUZZ_BUILD" >&2
    if CC=${VDIT_FUZZ_CC:-clang} CXX=${VDIT_FUZZ_CXX:-clang++} vdit_setup "$FUZZ_BUILD" \
        -Dcuda=disabled -Dgst=disabled -Dfuzz=enabled &&
      meson compile -C "$FUZZ_BUILD" -j "${VDIT_JOBS:-$(nproc 2>/dev/null || echo 2)}" \
        fuzz/fuzz_safetensors fuzz/fuzz_config fuzz/fuzz_json fuzz/fuzz_tokenizer \
        fuzz/fuzz_writers; then
      run_tests -C "$FUZZ_BUILD" --no-rebuild --print-errorlogs --num-processes 2 \
        --suite fuzz
    else
      echo "vdit: the fuzz build failed" >&2
      failed=$(( failed + 1 ))
    fi
  else
    echo "vdit: clang is missing: the fuzz targets are not run" >&2
    failed=$(( failed + 1 ))
  fi
fi

summary="$passed passed, $failed failed"
if [ "$skipped" -gt 0 ]; then
  summary="$summary, $skipped skipped"
fi
echo "$summary"
[ "$failed" -eq 0 ]
