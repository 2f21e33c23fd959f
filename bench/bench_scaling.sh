#!/usr/bin/env bash
# Data parallelism on one node: training samples/s of 1 rank x 2 threads
# against 2 ranks x 1 thread (same global batch), and the share of the step
# spent in the gradient allreduce, from the run files' timing tables.
#   bench/bench_scaling.sh [ARCH] [STEPS]       default: cnn 300
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/proxygml}
ARCH=${1:-cnn}
STEPS=${2:-300}
out=${OUT:-bench/out}
mkdir -p "$out" data
[ -f data/fmnist_seen.h5 ] || "$BIN" data fashion-mnist data/fmnist_seen.h5 --protocol seen
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--config "experiments/fmnist_$ARCH.cfg" --set epochs=1 --set max_steps_per_epoch="$STEPS" --set eval_epochs=1 --force)
mpirun -np 1 --bind-to none "$BIN" train "${common[@]}" --set threads=2 --out "$out/scale_np1" >/dev/null
mpirun -np 2 --bind-to core "$BIN" train "${common[@]}" --set threads=1 --out "$out/scale_np2" >/dev/null
/usr/bin/python3 - "$out" <<'PYEOF'
import sys, h5py
out = sys.argv[1]
rows = {}
for name, label in (("scale_np1", "1 rank x 2 threads"), ("scale_np2", "2 ranks x 1 thread")):
    f = h5py.File("%s/%s/run.h5" % (out, name), "r")
    t = f["timing"]
    phases = ["data", "forward", "loss", "backward", "allreduce", "optimizer"]
    total = sum(float(t[p][0]) for p in phases)
    sps = float(t["samples_per_second"][0])
    rows[name] = sps
    print("%-20s %8.0f samples/s  step %.2f ms  allreduce %.1f%%  (%s)" % (label, sps, 1e3 * total / f.attrs["steps_done"],
          100 * float(t["allreduce"][0]) / total, ", ".join("%s %.2fs" % (p, float(t[p][0])) for p in phases)))
print("np=2 x 1 thread / np=1 x 2 threads: %.2f" % (rows["scale_np2"] / rows["scale_np1"]))
PYEOF
