#!/usr/bin/env bash
# The demo (README): installs what is missing, builds, converts Fashion-MNIST
# from the Debian package, and trains the MLP with ProxyGML on 2 MPI ranks.
# Ends with the metrics of the untrained and the trained network and the path
# of the run file.
#   scripts/demo.sh                 MLP, seen protocol (about a minute)
#   CONFIG=experiments/fmnist_cnn.cfg scripts/demo.sh
#   RANKS=1 scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f build/build.ninja ]; then meson setup --reconfigure build >/dev/null; else meson setup build >/dev/null; fi
meson compile -C build >/dev/null
mkdir -p data
[ -f data/fmnist_seen.h5 ] || ./build/proxygml data fashion-mnist data/fmnist_seen.h5 --protocol seen
[ -f data/fmnist_zeroshot.h5 ] || ./build/proxygml data fashion-mnist data/fmnist_zeroshot.h5 --protocol zeroshot

CONFIG=${CONFIG:-experiments/fmnist_mlp.cfg}
RANKS=${RANKS:-2}
OUT=${OUT:-runs/demo-$(basename "$CONFIG" .cfg)}
# mpirun as root needs these two; --bind-to none lets each rank pick its threads
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun -np "$RANKS" --bind-to none --oversubscribe \
  ./build/proxygml train --config "$CONFIG" --out "$OUT" --force "$@"
