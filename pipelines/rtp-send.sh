#!/usr/bin/env bash
# Streams a generated video as VP8 over RTP to 127.0.0.1, at the frame rate.
# Start pipelines/rtp-receive.sh first.
#   pipelines/rtp-send.sh ["PROMPT" [property=value ...]]
# VDIT_RTP_HOST (127.0.0.1) and VDIT_RTP_PORT (5000) pick the receiver.
set -euo pipefail
. "$(dirname "$0")/common.sh"
vdit_src_args "$@"

exec gst-launch-1.0 "${VDIT_SRC[@]}" ! videoconvert ! video/x-raw,format=I420 \
  ! vp8enc deadline=1 ! rtpvp8pay pt=96 \
  ! udpsink host="${VDIT_RTP_HOST:-127.0.0.1}" port="${VDIT_RTP_PORT:-5000}"
