# Shared by test.sh and demo.sh (sourced, not run): Debian packages and the build.

# Everything the build and the tests need on Debian 12.
# shellcheck disable=SC2034  # used by the scripts that source this file
VDIT_PACKAGES="meson ninja-build pkg-config gcc g++ libglib2.0-dev libjson-glib-dev
  libsentencepiece-dev libopenblas-dev libpng-dev libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev gstreamer1.0-tools gstreamer1.0-plugins-base
  gstreamer1.0-plugins-good check valgrind python3 python3-gi gir1.2-gstreamer-1.0
  python3-torch python3-numpy python3-sentencepiece clang libclang-rt-14-dev libomp-dev
  openmpi-bin libopenmpi-dev procps"

# Prints the packages of "$@" that are not installed.
vdit_missing_packages () {
  for pkg in "$@"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    case "$status" in
      *"install ok installed"*) ;;
      *) echo "$pkg" ;;
    esac
  done
}

# Installs whichever of "$@" are missing; does nothing (not even apt-get update) when
# all are present.
vdit_install_packages () {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "vdit: not a Debian system; install these by hand if the build fails: $*" >&2
    return 0
  fi
  missing=$(vdit_missing_packages "$@" | tr '\n' ' ')
  if [ -z "${missing% }" ]; then
    return 0
  fi
  echo "vdit: installing $missing" >&2
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
  fi
  # shellcheck disable=SC2086  # the package list is meant to split
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q &&
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      $missing
}

# nvcc lives outside PATH in NVIDIA's packages; meson finds it (and builds the CUDA
# backend) only when it is on PATH.
vdit_add_cuda_to_path () {
  if [ -x /usr/local/cuda/bin/nvcc ]; then
    case ":$PATH:" in
      *:/usr/local/cuda/bin:*) ;;
      *) PATH="$PATH:/usr/local/cuda/bin"; export PATH ;;
    esac
  fi
}

# Configures (or reconfigures) the build directory "$1" with the meson options that follow.
vdit_setup () {
  dir=$1
  shift
  if [ -f "$dir/meson-private/coredata.dat" ]; then
    meson setup --reconfigure "$dir" "$@" || return 1
  else
    meson setup "$dir" "$@" || return 1
  fi
}

# Configures (or reconfigures) and compiles the build directory "$1"; further arguments
# are meson options ("-Dcuda=disabled").
vdit_build () {
  vdit_setup "$@" || return 1
  meson compile -C "$1" -j "${VDIT_JOBS:-$(nproc 2>/dev/null || echo 2)}"
}
