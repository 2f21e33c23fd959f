#!/usr/bin/env bash
# Data parallelism: training samples/s of 1 rank x 2 threads against 2 ranks
# x 1 thread (same global batch), and the share of the step spent in the
# gradient allreduce, from the run files' timing tables. The two ranks run on
# this node (shared memory), or with --bed RATE on the two "nodes" of the
# test bed (scripts/netbed.sh: one rank in each of two network namespaces,
# TCP over a veth pair shaped to RATE; run as root).
#   bench/bench_scaling.sh [--bed RATE] [ARCH] [STEPS]     default: cnn 300
#   e.g. bench/bench_scaling.sh --bed 10gbit mlp 900;  bench/bench_scaling.sh --bed 1gbit mlp 900
set -euo pipefail
cd "$(dirname "$0")/.."
BED_RATE=""
if [ "${1:-}" = --bed ]; then BED_RATE=${2:?--bed RATE, e.g. 10gbit or 1gbit}; shift 2; fi
BIN=${BIN:-build/proxygml}
ARCH=${1:-cnn}
STEPS=${2:-300}
out=${OUT:-bench/out}
mkdir -p "$out" data
[ -f data/fmnist_seen.h5 ] || "$BIN" data fashion-mnist data/fmnist_seen.h5 --protocol seen
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
common=(--config "experiments/fmnist_$ARCH.cfg" --set epochs=1 --set max_steps_per_epoch="$STEPS" --set eval_epochs=1 --force)
mpirun -np 1 --bind-to none "$BIN" train "${common[@]}" --set threads=2 --out "$out/scale_np1" >/dev/null
if [ -z "$BED_RATE" ]; then
  mpirun -np 2 --bind-to core "$BIN" train "${common[@]}" --set threads=1 --out "$out/scale_np2" >/dev/null
  two="scale_np2" label="2 ranks x 1 thread" ratio="np=2 x 1 thread / np=1 x 2 threads"
else
  bed=$(bash scripts/netbed.sh up --rate "$BED_RATE" --owner $$)
  # shellcheck disable=SC2064
  trap "bash scripts/netbed.sh down $bed" EXIT
  trap 'exit 130' INT; trap 'exit 143' TERM
  # --bind-to none: each node's daemon would bind its one rank to the first
  # core, the same core on both "nodes" of one machine
  bash scripts/netbed.sh mpirun "$bed" -np 2 --bind-to none "$BIN" train "${common[@]}" --set threads=1 \
    --out "$out/scale_bed" >/dev/null &
  wait $!
  echo "veth bytes a->b b->a: $(bash scripts/netbed.sh bytes "$bed")"
  two="scale_bed" label="2 nodes x 1 thread ($BED_RATE)" ratio="2 nodes x 1 thread ($BED_RATE) / 1 rank x 2 threads"
fi
/usr/bin/python3 - "$out" "$two" "$label" "$ratio" <<'PYEOF'
import sys, h5py
out, two, label, ratio = sys.argv[1:]
w = max(20, len(label))
rows = {}
for name, lab in (("scale_np1", "1 rank x 2 threads"), (two, label)):
    f = h5py.File("%s/%s/run.h5" % (out, name), "r")
    t = f["timing"]
    phases = ["data", "forward", "loss", "backward", "allreduce", "optimizer"]
    total = sum(float(t[p][0]) for p in phases)
    sps = float(t["samples_per_second"][0])
    rows[name] = sps
    print("%-*s %8.0f samples/s  step %.2f ms  allreduce %.1f%%  (%s)" % (w, lab, sps, 1e3 * total / f.attrs["steps_done"],
          100 * float(t["allreduce"][0]) / total, ", ".join("%s %.2fs" % (p, float(t[p][0])) for p in phases)))
print("%s: %.2f" % (ratio, rows[two] / rows["scale_np1"]))
PYEOF
