#!/usr/bin/env bash
# The test command (README): installs what is missing, builds, and runs every
# suite: unit (Criterion), cli (the real binary on real files), mpi (real
# ranks under mpirun), slurm (a local Slurm), then the unit tests again under ASan + UBSan.
#   scripts/test.sh            everything
#   SKIP_SANITIZE=1 scripts/test.sh    without the sanitizer pass
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

build() {   # build DIR [meson options...]
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then meson setup --reconfigure "$dir" "$@" >/dev/null
  else meson setup "$dir" "$@" >/dev/null; fi
  meson compile -C "$dir"
}

build build
# the slurm suite runs on a local single-node Slurm: start it unless it is up, stop it at the end
if ! bash scripts/slurm-lab.sh status >/dev/null 2>&1; then
  bash scripts/slurm-lab.sh start
  trap 'bash scripts/slurm-lab.sh stop' EXIT
fi
meson test -C build --print-errorlogs --num-processes 2

if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== unit tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  build build-sanitize -Dsanitize=true -Dbuildtype=debugoptimized
  meson test -C build-sanitize --suite unit --print-errorlogs --num-processes 2
fi
echo "== all tests passed"
