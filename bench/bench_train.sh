#!/usr/bin/env bash
# Training on Fashion-MNIST (seen protocol, C=10, N=4, r=0.25): proxygml side
# by side with the PyTorch baseline (same architecture, hyperparameters, data
# and thread count) in one run. Both start from the same point: the baseline's
# seed-0 initial parameters and epoch permutations, exported by
# bench/torch_init.py and read through init_from / order_from, so that the
# per-epoch losses compare one trajectory with itself (two random
# initialisations differ by a few percent on their own). Prints per-epoch
# training loss of both, the test MAP@R before and after training, and
# training samples/s as a ratio of the medians over epochs (PyTorch at its best
# thread count, 1 or 2).
#   bench/bench_train.sh [ARCHS] [EPOCHS]       default: "mlp cnn" 3
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/proxygml}
TORCH_TRAIN=${TORCH_TRAIN:-bench/torch_train.py}
PY=/usr/bin/python3
ARCHS=${1:-mlp cnn}
EPOCHS=${2:-3}
out=${OUT:-bench/out}
mkdir -p "$out" data
[ -f data/fmnist_seen.h5 ] || "$BIN" data fashion-mnist data/fmnist_seen.h5 --protocol seen
for arch in $ARCHS; do
  $PY bench/torch_init.py "$TORCH_TRAIN" "$out/init_$arch.h5" --arch "$arch" --seed 0 --C 10 --N 4 --r 0.25 \
    --epochs "$EPOCHS" --n-train "$($PY -c 'import h5py, sys; print(len(h5py.File(sys.argv[1], "r")["train/labels"]))' data/fmnist_seen.h5)"
  for t in 1 2; do
    $PY "$TORCH_TRAIN" --arch "$arch" --protocol seen --C 10 --N 4 --r 0.25 --epochs "$EPOCHS" --threads "$t" \
      --batch 64 --lr 1e-3 --proxy-lr 0.03 --json "$out/torch_${arch}_t$t.json" >"$out/torch_${arch}_t$t.log"
  done
  "$BIN" train --config "experiments/fmnist_$arch.cfg" --set epochs="$EPOCHS" --set threads=2 --set kmeans_restarts=10 \
    --set init_from="$out/init_$arch.h5" --set order_from="$out/init_$arch.h5" --out "$out/c_$arch" --force >"$out/c_$arch.log"
  $PY - "$out" "$arch" <<'PYEOF'
import json, sys, h5py, numpy as np
out, arch = sys.argv[1], sys.argv[2]
f = h5py.File("%s/c_%s/run.h5" % (out, arch), "r")
m, t = f["metrics"], f["timing"]
# the median of the per-epoch rates on both sides: this machine's neighbours
# sometimes take a core for a second or two, which drags one epoch's rate down
c_rates = [float(x) for x in t["samples_per_second"][()]]
c_sps = float(np.median(c_rates))
print("== %s: %d parameters, %d threads" % (arch, f.attrs["n_params"], f.attrs["threads"]))
print("same start (PyTorch's seed-0 parameters and sample order)")
print("%5s %12s %12s %8s" % ("epoch", "loss proxygml", "loss torch", "diff"))
runs = {}
for th in (1, 2):
    h = json.load(open("%s/torch_%s_t%d.json" % (out, arch, th)))["history"]
    sps = [60000 / r["train_s"] for r in h if r["epoch"] > 0]   # torch trains the last partial batch too
    runs[th] = (h, float(np.median(sps)), sps)
best = max(runs, key=lambda k: runs[k][1])
h, t_sps, t_rates = runs[best]
for r in h:
    if r["epoch"] == 0: continue
    i = list(m["epoch"][()]).index(r["epoch"])
    c = m["loss"][i]
    print("%5d %12.4f %12.4f %7.2f%%" % (r["epoch"], c, r["loss"], 100 * (c - r["loss"]) / r["loss"]))
print("MAP@R untrained -> trained: proxygml %.4f -> %.4f, torch %.4f -> %.4f" % (m["map_at_r"][0], m["map_at_r"][-1], h[0]["map@r"], h[-1]["map@r"]))
print("R@1   untrained -> trained: proxygml %.4f -> %.4f, torch %.4f -> %.4f" % (m["recall_at_1"][0], m["recall_at_1"][-1], h[0]["recall@1"], h[-1]["recall@1"]))
print("samples/s per epoch: proxygml %s, torch %s" % (" ".join("%.0f" % x for x in c_rates),
                                                      " ".join("%.0f" % x for x in t_rates)))
print("samples/s (median over epochs): proxygml %.0f (2 threads), torch %.0f (best: %d thread%s; other: %.0f) -> ratio %.2fx"
      % (c_sps, t_sps, best, "s" if best > 1 else "", runs[3 - best][1], c_sps / t_sps))
PYEOF
done
