#!/usr/bin/env bash
# Shows a generated video in a window.
#   pipelines/preview.sh ["PROMPT" [property=value ...]]
#   pipelines/preview.sh "a blue square moving up" frames=8 seed=3
# Small models give small frames: they are scaled up without smoothing to fit
# VDIT_PREVIEW_SIZE (512) pixels, with borders to keep the aspect ratio.
set -euo pipefail
. "$(dirname "$0")/common.sh"
vdit_src_args "$@"
size=${VDIT_PREVIEW_SIZE:-512}

exec gst-launch-1.0 "${VDIT_SRC[@]}" ! videoconvert \
  ! videoscale method=nearest-neighbour add-borders=true \
  ! "video/x-raw,width=$size,height=$size,pixel-aspect-ratio=1/1" \
  ! autovideosink
