# shellcheck shell=bash
# Sourced by the pipeline scripts. Makes vditsrc available (installed, or from a
# build tree: $VDIT_BUILD_DIR, else build/) and splits the arguments into a prompt
# and vditsrc properties:  script.sh ["PROMPT" [property=value ...]]

VDIT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

vdit_find_plugin () {
  local dir
  gst-inspect-1.0 vditsrc > /dev/null 2>&1 && return 0
  for dir in "${VDIT_BUILD_DIR:-}" "$VDIT_ROOT/build"; do
    [ -n "$dir" ] || continue
    case "$dir" in /*) ;; *) dir="$VDIT_ROOT/$dir" ;; esac
    if [ -e "$dir/gst/libgstvdit.so" ]; then
      export GST_PLUGIN_PATH="$dir/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
      gst-inspect-1.0 vditsrc > /dev/null 2>&1 && return 0
    fi
  done
  echo "vditsrc not found: install vdit, or build it (meson setup build &&" \
    "meson compile -C build), or set VDIT_BUILD_DIR" >&2
  return 1
}

# True when gst-inspect-1.0 knows every element named.
vdit_have () {
  local e
  for e in "$@"; do
    gst-inspect-1.0 "$e" > /dev/null 2>&1 || return 1
  done
}

# VDIT_SRC: the vditsrc element with its properties, one argument each, for
# gst-launch-1.0 (which keeps the spaces inside an argument).
vdit_src_args () {
  VDIT_SRC=(vditsrc "prompt=${1:-a red circle moving left}")
  [ $# -gt 0 ] && shift
  VDIT_SRC+=("$@")
}

vdit_find_plugin || exit 1
