#!/usr/bin/env bash
# ProxyGML loss, forward + backward: proxygml bench-loss side by side with the
# PyTorch CPU baselines (--impl fast, and --impl onehot = the published
# structure) at the same thread counts, in one run, reported as ratios. Then
# the baseline losses (LOSSES, default all four) the same way against their
# plain-PyTorch versions (bench/torch_baselines.py): the preset's N is
# SoftTriple's centres, the other baselines have one proxy per class.
#   bench/bench_loss.sh [PRESETS] [THREADS]     default: "cub sop bigbatch" "1 2"
#   LOSSES="softtriple" bench/bench_loss.sh cub 1     only one baseline; LOSSES= none
#   PROXYGML=0 bench/bench_loss.sh                     only the baselines
# The baseline is bench/torch_loss.py (TORCH_BENCH=path/to/another.py to
# swap it); it needs Debian's python3-torch.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/proxygml}
TORCH_BENCH=${TORCH_BENCH:-bench/torch_loss.py}
PY=/usr/bin/python3          # Debian's interpreter: the one with torch
PRESETS=${1:-cub sop bigbatch}
LOSSES=${LOSSES-proxynca proxyanchor softtriple normsoftmax}
THREADS=${2:-1 2}
[ -x "$BIN" ] || { echo "bench_loss: build first (meson setup build && meson compile -C build)" >&2; exit 2; }
[ -f "$TORCH_BENCH" ] || { echo "bench_loss: $TORCH_BENCH not found (set TORCH_BENCH)" >&2; exit 2; }

if [ "${PROXYGML:-1}" != 0 ]; then
printf "%-9s %3s %10s %10s %10s %8s %8s %9s %9s %6s\n" preset thr c_ms torch_fast torch_1hot x_fast x_1hot c_gflops sgemm gemm_x
for p in $PRESETS; do
  for t in $THREADS; do
    c=$("$BIN" bench-loss --preset "$p" --threads "$t" --seconds 3)
    cms=$(sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' <<<"$c")
    gf=$(sed -n 's/.*gflops=\([0-9.]*\) sgemm.*/\1/p' <<<"$c")
    sg=$(sed -n 's/.*sgemm_gflops=\([0-9.]*\).*/\1/p' <<<"$c")
    fast=$($PY "$TORCH_BENCH" --preset "$p" --threads "$t" --impl fast --reps 40 | sed -n 's/^median_ms \([0-9.]*\).*/\1/p')
    reps=40; [ "$p" = sop ] && reps=10
    hot=$($PY "$TORCH_BENCH" --preset "$p" --threads "$t" --impl onehot --reps $reps | sed -n 's/^median_ms \([0-9.]*\).*/\1/p')
    awk -v p="$p" -v t="$t" -v c="$cms" -v f="$fast" -v h="$hot" -v g="$gf" -v s="$sg" 'BEGIN {
      printf "%-9s %3d %10.3f %10.3f %10.3f %7.2fx %7.2fx %9.1f %9.1f %5.2fx\n", p, t, c, f, h, f / c, h / c, g, s, s / g }'
  done
done
fi
[ -n "$LOSSES" ] || exit 0
echo
printf "%-12s %-9s %3s %10s %10s %8s\n" loss preset thr c_ms torch_ms x_torch
for l in $LOSSES; do
  for p in $PRESETS; do
    for t in $THREADS; do
      c=$("$BIN" bench-loss --preset "$p" --loss "$l" --threads "$t" --seconds 3)
      cms=$(sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' <<<"$c")
      tms=$($PY "$TORCH_BENCH" --preset "$p" --loss "$l" --threads "$t" --reps 40 | sed -n 's/^median_ms \([0-9.]*\).*/\1/p')
      awk -v l="$l" -v p="$p" -v t="$t" -v c="$cms" -v f="$tms" 'BEGIN {
        printf "%-12s %-9s %3d %10.3f %10.3f %7.2fx\n", l, p, t, c, f, f / c }'
    done
  done
done
