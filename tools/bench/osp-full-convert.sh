#!/bin/sh
# A full-size random Open-Sora-Plan v1.2 checkpoint in the published layout (11.1 GB
# F32 transformer; mT5-XXL at full width with TEXT_LAYERS of its 24 blocks, 0.77 GB
# each), converted to a bf16 vdit model and loaded memory-mapped; prints the converter's
# and the loader's peak resident set. Needs /usr/bin/python3 with numpy and torch,
# /usr/bin/time, and about 20 GB of disk in WORK (deleted afterwards unless KEEP=1).
#
#   tools/bench/osp-full-convert.sh WORK [BUILD_DIR]
set -eu
work=${1:?usage: $0 WORK [BUILD_DIR]}
build=${2:-build}
layers=${TEXT_LAYERS:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$work"
/usr/bin/python3 "$root/train/make_osp_checkpoint.py" --size full --text-layers "$layers" \
  "$work/osp"
/usr/bin/time -f 'convert: %e s, peak RSS %M kB' /usr/bin/python3 "$root/train/convert_osp.py" \
  --transformer "$work/osp/29x720p" --text-encoder "$work/osp/mt5-xxl" "$work/model"
du -sh "$work/osp/29x720p" "$work/osp/mt5-xxl" "$work/model"
"$build/tests/osp_load_weights" "$work/model"
[ "${KEEP:-0}" = 1 ] || rm -rf "$work/osp" "$work/model"
