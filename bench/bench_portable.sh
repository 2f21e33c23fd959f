#!/usr/bin/env bash
# The portable default build against a build tuned for this CPU, side by
# side in one run: the loss (bench-loss presets, 1 and 2 threads) and
# training (MLP and CNN, samples/s of a short run). Prints each figure of
# both builds and their ratio (portable / native; 1.00 = as fast).
#   bench/bench_portable.sh [ROUNDS]      default 3: builds alternate, medians reported
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
for b in portable native; do
  opt=false; [ $b = native ] && opt=true
  [ -f build-bench-$b/build.ninja ] || meson setup build-bench-$b -Dnative=$opt -Dtests=false >/dev/null
  meson compile -C build-bench-$b proxygml:executable >/dev/null
done
mkdir -p data
[ -f data/fmnist_seen.h5 ] || build-bench-portable/proxygml data fashion-mnist data/fmnist_seen.h5 --protocol seen
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$ROUNDS"); do
  for b in portable native; do
    bin=build-bench-$b/proxygml
    for p in cub sop; do
      for t in 1 2; do
        OMP_NUM_THREADS=$t $bin bench-loss --preset $p --threads $t --seconds 2 |
          sed -n "s/.*median_ms=\([0-9.]*\).*/loss_${p}_t$t \1/p" >>"$out/$b"
      done
    done
    for arch in mlp cnn; do
      $bin train --config experiments/fmnist_$arch.cfg --set epochs=1 --set max_steps_per_epoch=300 \
        --set eval_epochs= --set threads=2 --out "$out/run" --force >/dev/null
      /usr/bin/python3 -c 'import h5py,sys; print("train_%s_sps %.1f" % (sys.argv[2], h5py.File(sys.argv[1])["timing/samples_per_second"][-1]))' \
        "$out/run/run.h5" $arch >>"$out/$b"
    done
  done
done
/usr/bin/python3 - "$out" <<'PYEOF'
import sys, collections, statistics
d = sys.argv[1]
vals = {b: collections.defaultdict(list) for b in ("portable", "native")}
for b in vals:
    for line in open("%s/%s" % (d, b)):
        k, v = line.split()
        vals[b][k].append(float(v))
print("%-16s %12s %12s %8s" % ("figure", "portable", "native", "ratio"))
for k in vals["portable"]:
    p, n = statistics.median(vals["portable"][k]), statistics.median(vals["native"][k])
    # ms: lower is better, samples/s: higher is better; the ratio is speed portable / speed native
    ratio = n / p if k.startswith("loss") else p / n
    print("%-16s %12.2f %12.2f %8.2f" % (k + (" ms" if k.startswith("loss") else ""), p, n, ratio))
PYEOF
