#!/usr/bin/env bash
# Writes each generated frame as a PNG file: $VDIT_OUT_DIR/frame-0000.png, ...
#   pipelines/png-frames.sh ["PROMPT" [property=value ...]]
#   VDIT_OUT_DIR=frames pipelines/png-frames.sh "a green triangle" seed=5
set -euo pipefail
. "$(dirname "$0")/common.sh"
vdit_src_args "$@"
dir=${VDIT_OUT_DIR:-frames}
mkdir -p "$dir"

gst-launch-1.0 "${VDIT_SRC[@]}" ! videoconvert ! video/x-raw,format=RGB ! pngenc \
  ! multifilesink location="$dir/frame-%04d.png"
echo "png-frames: wrote $(find "$dir" -name 'frame-*.png' | wc -l) frames to $dir/"
