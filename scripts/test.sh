#!/usr/bin/env bash
# Installs what is missing, builds in build/, runs every test. The last line printed is
# the summary "N passed, N failed[, N skipped]"; the exit status is non-zero on any
# failure. VDIT_BUILD_DIR picks another build directory, VDIT_JOBS the compile jobs.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
. scripts/deps.sh
BUILD=${VDIT_BUILD_DIR:-build}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# shellcheck disable=SC2086
if ! vdit_install_packages $VDIT_PACKAGES; then
  echo "vdit: installing packages failed" >&2
  echo "0 passed, 1 failed"
  exit 1
fi
vdit_add_cuda_to_path

if ! vdit_build "$BUILD"; then
  echo "vdit: the build failed" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
meson test -C "$BUILD" --print-errorlogs --num-processes 2 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

# meson's summary: "Ok: N", "Expected Fail: N", "Fail: N", "Unexpected Pass: N",
# "Skipped: N", "Timeout: N".
count () {
  sed -n "s/^$1:[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$log" | tail -n 1
}
ok=$(count "Ok"); xfail=$(count "Expected Fail"); fail=$(count "Fail")
xpass=$(count "Unexpected Pass"); skipped=$(count "Skipped"); timeout=$(count "Timeout")
passed=$(( ${ok:-0} + ${xfail:-0} ))
failed=$(( ${fail:-0} + ${xpass:-0} + ${timeout:-0} ))
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # meson failed without a test failing (no summary, a setup error): count it.
  failed=1
fi

summary="$passed passed, $failed failed"
if [ "${skipped:-0}" -gt 0 ]; then
  summary="$summary, $skipped skipped"
fi
echo "$summary"
[ "$failed" -eq 0 ]
