#!/usr/bin/env bash
# Encodes a generated video to a file: H.264 in MP4 when x264enc is installed
# (gstreamer1.0-plugins-ugly), else VP8 in WebM.
#   pipelines/encode.sh ["PROMPT" [property=value ...]]
#   VDIT_OUT=clip.mp4 pipelines/encode.sh "a red circle moving left" frames=16
# VDIT_OUT names the file; its extension must match the container that is used
# (default vdit.mp4 or vdit.webm).
set -euo pipefail
. "$(dirname "$0")/common.sh"
vdit_src_args "$@"

if vdit_have x264enc mp4mux; then
  out=${VDIT_OUT:-vdit.mp4}
  enc=(x264enc ! mp4mux)
elif vdit_have vp8enc webmmux; then
  out=${VDIT_OUT:-vdit.webm}
  enc=(vp8enc deadline=1 ! webmmux)
else
  echo "encode: neither x264enc+mp4mux nor vp8enc+webmmux is installed" >&2
  exit 1
fi

gst-launch-1.0 -e "${VDIT_SRC[@]}" ! videoconvert ! video/x-raw,format=I420 \
  ! "${enc[@]}" ! filesink location="$out"
echo "encode: wrote $out"
