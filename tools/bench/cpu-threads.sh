#!/usr/bin/env bash
# The CPU backend's default thread count against explicit ones: one JSON line per
# setting (vdit bench step on a model, CPU backend), each with "threads_arg" (0 = the
# default) and "quota" (the CPU quota the run was confined to, when one was asked for).
#
#   tools/bench/cpu-threads.sh VDIT MODEL "0 1 2 4" [QUOTA_CPUS]
#
# QUOTA_CPUS runs every setting inside a cgroup-v1 cpu quota of that many CPUs (needs a
# writable /sys/fs/cgroup/cpu, e.g. root in a container).
set -euo pipefail
vdit=${1:?usage: cpu-threads.sh VDIT MODEL "THREADS..." [QUOTA_CPUS]}
model=${2:?model directory}
settings=${3:-"0 1 2"}
quota=${4:-}
run () { "$vdit" bench step --model "$model" --device cpu --threads "$1" --repeat 20 --warmup 3; }
if [ -n "$quota" ]; then
  cg=/sys/fs/cgroup/cpu/vdit-bench-$$
  mkdir "$cg"
  trap 'rmdir "$cg" 2>/dev/null || true' EXIT
  echo 100000 > "$cg/cpu.cfs_period_us"
  awk -v q="$quota" 'BEGIN { printf "%d\n", q * 100000 }' > "$cg/cpu.cfs_quota_us"
fi
for t in $settings; do
  if [ -n "$quota" ]; then
    line=$(bash -c 'echo $$ > "$1/tasks"; shift; exec "$@"' _ "$cg" "$vdit" bench step \
             --model "$model" --device cpu --threads "$t" --repeat 20 --warmup 3)
  else
    line=$(run "$t")
  fi
  echo "${line%\}},\"threads_arg\":$t${quota:+,\"quota\":$quota}}"
done
