#!/usr/bin/env bash
# Installs what is missing, builds, renders a clip with the shipped model and, when a
# display exists, plays it.
#
# Settings (environment):
#   VDIT_DEMO_MODEL     model directory                (models/default, else models/tiny)
#   VDIT_DEMO_PROMPT    the prompt     ("a red circle moving left on a gray background")
#   VDIT_DEMO_OUT       demo.y4m, or a folder ending in / for PNG frames
#   VDIT_DEMO_RENDERER  gst: gst-launch-1.0 with vditsrc (default); cli: the vdit command
#   VDIT_BUILD_DIR      build directory                (build)
set -euo pipefail

cd "$(dirname "$0")/.."
. scripts/deps.sh

if [ -d models/default ]; then DEFAULT_MODEL=models/default; else DEFAULT_MODEL=models/tiny; fi
MODEL=${VDIT_DEMO_MODEL:-$DEFAULT_MODEL}
PROMPT=${VDIT_DEMO_PROMPT:-a red circle moving left on a gray background}
OUT=${VDIT_DEMO_OUT:-demo.y4m}
RENDERER=${VDIT_DEMO_RENDERER:-gst}
SEED=${VDIT_DEMO_SEED:-1}
BUILD=${VDIT_BUILD_DIR:-build}
# OpenMP threads sleep instead of spinning between the engine's many small kernels
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

# shellcheck disable=SC2086
vdit_install_packages $VDIT_PACKAGES
vdit_add_cuda_to_path
vdit_build "$BUILD"

render_cli () {
  "$BUILD/tools/vdit" generate --model "$MODEL" --prompt "$PROMPT" --seed "$SEED" --out "$OUT"
}

# The same clip through the GStreamer element (y4m only).
render_gst () {
  GST_PLUGIN_PATH="$PWD/$BUILD/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}" \
    gst-launch-1.0 -e vditsrc model="$MODEL" prompt="$PROMPT" seed="$SEED" \
      ! videoconvert ! y4menc ! filesink location="$OUT"
}

case "$RENDERER" in
  cli) render_cli ;;
  gst) render_gst ;;
  *) echo "demo: VDIT_DEMO_RENDERER must be cli or gst, not '$RENDERER'" >&2; exit 2 ;;
esac
echo "demo: wrote $OUT"

if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
  echo "demo: no display; play $OUT with any video player (e.g. ffplay or mpv)"
  exit 0
fi

# Small models make small frames: scale up by a whole factor, without smoothing.
scale_caps () {
  local w=$1 h=$2 k=1
  while [ $(( w * (k + 1) )) -le 640 ] && [ $(( h * (k + 1) )) -le 640 ]; do
    k=$(( k + 1 ))
  done
  echo "video/x-raw,width=$(( w * k )),height=$(( h * k )),pixel-aspect-ratio=1/1"
}
SINK="videoconvert ! videoscale method=nearest-neighbour"

case "$OUT" in
  */)
    first="${OUT}frame-0000.png"
    # IHDR: width and height are big-endian 32-bit at bytes 16 and 20.
    read -r w h < <(od -An -tu1 -j16 -N8 "$first" |
      awk '{ print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8 }')
    fps=$("$BUILD/tools/vdit" inspect --json "$MODEL" |
      python3 -c 'import json,sys; print(round(json.load(sys.stdin)["video"]["fps"]))')
    # shellcheck disable=SC2086
    gst-launch-1.0 multifilesrc location="${OUT}frame-%04d.png" \
      caps="image/png,framerate=$fps/1" ! pngdec ! $SINK ! "$(scale_caps "$w" "$h")" \
      ! autovideosink
    ;;
  *)
    # y4mdec is in the "bad" plug-ins; only a preview needs it.
    vdit_install_packages gstreamer1.0-plugins-bad
    header=$(head -c 128 "$OUT" | head -n 1)
    w=$(sed -n 's/.* W\([0-9]*\).*/\1/p' <<<"$header")
    h=$(sed -n 's/.* H\([0-9]*\).*/\1/p' <<<"$header")
    # shellcheck disable=SC2086
    gst-launch-1.0 filesrc location="$OUT" ! y4mdec ! $SINK ! "$(scale_caps "$w" "$h")" \
      ! autovideosink
    ;;
esac
