#!/usr/bin/env bash
# Each kernel against sgemm on its own shapes, for several builds side by
# side in one run (builds alternate, medians over rounds): the loss
# (bench-loss: cub and sop, 1 and 2 threads; gap = sgemm GFLOP/s / loss
# GFLOP/s), the backbones (bench-backbone, 1 thread; rate = sgemm time /
# layer time over the network) and the evaluation (bench-eval: kNN time /
# GEMM time, k-means seconds).
#   bench/bench_floor.sh [ROUNDS] LABEL=BINARY...
#   e.g. bench/bench_floor.sh 3 portable=build/proxygml native=build-native/proxygml
set -euo pipefail
ROUNDS=${1:-3}; shift
[ $# -ge 1 ] || { echo "usage: bench_floor.sh [ROUNDS] LABEL=BINARY..." >&2; exit 2; }
EVAL_N=${EVAL_N:-30000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$ROUNDS"); do
  for lb in "$@"; do
    label=${lb%%=*} bin=${lb#*=}
    for p in cub sop; do
      for t in 1 2; do
        "$bin" bench-loss --preset $p --threads $t --seconds 2 |
          awk -v k="loss_${p}_t$t" '{ for (i = 1; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
                                      print k "_gap", v["sgemm_gflops"] / v["gflops"]; print k "_ms", v["median_ms"] }' >>"$out/$label"
      done
    done
    for a in mlp cnn; do
      "$bin" bench-backbone --arch $a --threads 1 --seconds 3 |
        sed -n "s/.*rate_vs_sgemm=\([0-9.]*\).*/backbone_${a}_rate \1/p" >>"$out/$label"
    done
    if [ "$r" = 1 ]; then
      "$bin" bench-eval --n "$EVAL_N" --threads 1 --restarts 1 |
        awk '/knn_over_gemm/ { for (i = 1; i <= NF; i++) { split($i, a, "="); v[a[1]] = a[2] }
                               print "eval_knn_over_gemm", v["knn_over_gemm"] }
             /kmeans_s/ { split($1, a, "="); print "eval_kmeans_s", a[2] }' >>"$out/$label"
    fi
  done
done
/usr/bin/python3 - "$out" "$@" <<'PYEOF'
import sys, collections, statistics
d, labels = sys.argv[1], [a.split("=", 1)[0] for a in sys.argv[2:]]
vals = {l: collections.defaultdict(list) for l in labels}
for l in labels:
    for line in open("%s/%s" % (d, l)):
        k, v = line.split()
        vals[l][k].append(float(v))
print("%-22s" % "figure" + "".join("%12s" % l for l in labels))
for k in vals[labels[0]]:
    print("%-22s" % k + "".join("%12.3f" % statistics.median(vals[l][k]) for l in labels))
PYEOF
