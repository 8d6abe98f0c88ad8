#!/usr/bin/env bash
# Receives the VP8/RTP stream of pipelines/rtp-send.sh and shows it; Ctrl-C ends.
#   pipelines/rtp-receive.sh [gst-launch-1.0 options, e.g. -v]
# VDIT_RTP_PORT (5000) is the port; VDIT_SINK replaces the video sink (e.g.
# "fakesink" without a display).
set -euo pipefail
caps="application/x-rtp,media=video,clock-rate=90000,encoding-name=VP8,payload=96"
# shellcheck disable=SC2086
exec gst-launch-1.0 "$@" udpsrc port="${VDIT_RTP_PORT:-5000}" caps="$caps" \
  ! rtpjitterbuffer latency=200 ! rtpvp8depay ! vp8dec ! videoconvert \
  ! videoscale method=nearest-neighbour add-borders=true \
  ! video/x-raw,width=512,height=512,pixel-aspect-ratio=1/1 \
  ! ${VDIT_SINK:-autovideosink}
