#!/usr/bin/env bash
# Install every Debian 12 package proxygml needs. Idempotent; run as root (or with sudo).
set -euo pipefail

PKGS=(
  # build
  build-essential meson ninja-build pkg-config
  # libraries
  libopenmpi-dev openmpi-bin libhdf5-openmpi-dev hdf5-tools libopenblas-dev libopenblas-openmp-dev
  libcriterion-dev zlib1g-dev libconfig-dev
  # image decoding and glyph rendering (proxygml data folder/cub/cars/sop/glyphs)
  libjpeg62-turbo-dev libpng-dev libfreetype-dev
  # data
  dataset-fashion-mnist
  # CJK fonts of the glyphs benchmark (docs/datasets.md)
  fonts-noto-cjk fonts-noto-cjk-extra fonts-arphic-ukai fonts-arphic-uming fonts-ipafont-gothic
  fonts-ipafont-mincho fonts-ipaexfont fonts-takao fonts-hanazono fonts-lxgw-wenkai fonts-wqy-microhei
  fonts-wqy-zenhei
  # analysis, tests and the PyTorch baselines (Debian's interpreter)
  python3 python3-h5py python3-numpy python3-pil python3-matplotlib python3-sklearn python3-pytest python3-torch
  # fonts built by tests/integration/test_convert_refusals.sh
  python3-fonttools
  # memcheck of a short training (tests/integration/test_valgrind.sh)
  valgrind
  # network namespaces, veth and tc tbf of the two-node test bed (scripts/netbed.sh)
  iproute2
  # coverage report (scripts/coverage.sh)
  gcovr
  # Slurm for the scheduler tests
  slurm-wlm slurmctld slurmd slurm-client munge
  # fuzzing (scripts/fuzz.sh): clang with libFuzzer and the sanitizer runtimes, its OpenMP, llvm-symbolizer
  clang libclang-rt-dev libomp-dev llvm
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
