#!/usr/bin/env bash
# The seed-to-seed spread of a short training run at np = 1 and np = 2: the
# statistics that the trajectory test (tests/mpi/test_np_trajectory.sh) takes
# its bounds from. Not run by the tests (about 2 minutes on 2 cores).
#   scripts/measure-spread.sh [SEEDS]       default: 0 1 2 3 4 5
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/proxygml}
SEEDS=${1:-0 1 2 3 4 5}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMP_NUM_THREADS=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p data
[ -f data/fmnist_seen.h5 ] || "$BIN" data fashion-mnist data/fmnist_seen.h5 --protocol seen
for seed in $SEEDS; do
  for np in 1 2; do
    mpirun -np $np --bind-to none "$BIN" train --config experiments/fmnist_mlp.cfg --set data=data/fmnist_seen.h5 \
      $(cat tests/mpi/trajectory.args) --set seed=$seed --out "$out/s${seed}_np$np" >/dev/null
  done
done
/usr/bin/python3 - "$out" $SEEDS <<'PYEOF'
import sys, h5py, numpy as np
out, seeds = sys.argv[1], sys.argv[2:]
rows = {}
for np_ in (1, 2):
    for s in seeds:
        f = h5py.File("%s/s%s_np%d/run.h5" % (out, s, np_), "r")
        m = f["metrics"]
        rows[(np_, s)] = (m["loss"][-1], m["map_at_r"][-1], m["recall_at_1"][-1])
print("%4s %4s %10s %10s %10s" % ("np", "seed", "loss", "MAP@R", "R@1"))
for (np_, s), v in sorted(rows.items()):
    print("%4d %4s %10.5f %10.5f %10.5f" % ((np_, s) + v))
a = np.array([rows[(1, s)] for s in seeds]); b = np.array([rows[(2, s)] for s in seeds])
for i, name in enumerate(("loss", "MAP@R", "R@1")):
    print("%-6s over seeds: np=1 mean %.5f sd %.5f (range %.5f), np=2 mean %.5f sd %.5f; |np1-np2| same seed: max %.5f"
          % (name, a[:, i].mean(), a[:, i].std(ddof=1), np.ptp(a[:, i]), b[:, i].mean(), b[:, i].std(ddof=1),
             np.max(np.abs(a[:, i] - b[:, i]))))
PYEOF
