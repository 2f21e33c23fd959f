#!/usr/bin/env bash
# The test command (README): installs what is missing, builds, and runs every
# suite on the portable build (the default binary): unit (Criterion), cli (the
# real binary on real files), mpi (real ranks under mpirun), slurm (a local
# Slurm), analysis; then the numerically sensitive suites (the loss, layers,
# metrics and mpi tests) again on a build tuned for this CPU (-Dnative=true),
# and the unit, fuzz-replay, cli and mpi suites under ASan + UBSan (a replayed
# finding that overran a buffer fails only where ASan watches) (the tests that a
# sanitizer cannot add to skip themselves, saying why).
#   scripts/test.sh                    everything
#   SKIP_NATIVE=1 SKIP_SANITIZE=1 scripts/test.sh    the portable build only
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh

build() {   # build DIR [meson options...]
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then meson setup --reconfigure "$dir" "$@" >/dev/null
  else meson setup "$dir" "$@" >/dev/null; fi
  meson compile -C "$dir"
}

build build -Dnative=false
# the slurm suite runs on a local single-node Slurm: start it unless it is up, stop it at the end
if ! bash scripts/slurm-lab.sh status >/dev/null 2>&1; then
  bash scripts/slurm-lab.sh start
  trap 'bash scripts/slurm-lab.sh stop' EXIT
fi
meson test -C build --print-errorlogs --num-processes 2

if [ "${SKIP_NATIVE:-0}" != 1 ]; then
  echo "== the numerically sensitive tests on a build tuned for this CPU (-march=native)"
  build build-native -Dnative=true
  meson test -C build-native --print-errorlogs --num-processes 2 loss adam layers model metrics
  meson test -C build-native --print-errorlogs metrics_np1 metrics_np2 metrics_np3 np_invariance np_trajectory
fi

if [ "${SKIP_SANITIZE:-0}" != 1 ]; then
  echo "== unit, cli and mpi tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  san_start=$(date +%s)
  build build-sanitize -Dsanitize=true -Dbuildtype=debugoptimized
  meson test -C build-sanitize --suite unit --suite fuzz --suite cli --suite mpi --print-errorlogs --num-processes 2
  echo "== sanitizer pass: $(( $(date +%s) - san_start )) s"
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
