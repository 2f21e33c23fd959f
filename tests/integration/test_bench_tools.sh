#!/usr/bin/env bash
# The measuring commands on tiny problems: profile-loss prints every phase
# and the sgemm figures, bench-backbone a line per layer and the total,
# bench-eval the kNN against its GEMM, the metrics and the memory; bad
# arguments exit 2 with one line.
set -u
BIN=${PROXYGML_BIN:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() {   # expect CODE PATTERN DESCRIPTION CMD...: exit CODE, and stdout matching PATTERN (exit 0)
  local want=$1 pat=$2 what=$3; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $what: exit $rc, want $want"; cat "$tmp/out" "$tmp/err" | tail -5; fail=1
  elif [ "$want" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -ne 1 ]; then
    echo "FAIL $what: want one error line, got:"; cat "$tmp/err"; fail=1
  elif [ "$want" -eq 0 ] && ! grep -Eq "$pat" "$tmp/out"; then
    echo "FAIL $what: no line matching '$pat' in:"; cat "$tmp/out"; fail=1
  else
    echo "ok   $what"
  fi
}

expect 0 'phase=sparse_backward +ms= *[0-9.]+' "profile-loss cub" "$BIN" profile-loss --preset cub --seconds 0.2
expect 0 'loss_ms=[0-9.]+ phases_ms=[0-9.]+ .*sgemm_gflops=[0-9.]+' "profile-loss totals" "$BIN" profile-loss --preset cub --seconds 0.2
[ "$(grep -c '^phase=' "$tmp/out")" -eq 8 ] || { echo "FAIL profile-loss: want 8 phases"; fail=1; }
expect 0 '^stream_ms=[0-9.]+ floor_gap=[0-9.]+$' "profile-loss memory floor" "$BIN" profile-loss --preset sop --seconds 0.2
expect 0 '^total fwd_ms=[0-9.]+ .*rate_vs_sgemm=[0-9.]+' "bench-backbone mlp" "$BIN" bench-backbone --arch mlp --batch 4 --seconds 0.3
[ "$(grep -c '^[0-9]' "$tmp/out")" -eq 5 ] || { echo "FAIL bench-backbone mlp: want 5 layers"; fail=1; }
expect 0 '^4 +maxpool2 +64x14x14' "bench-backbone cnn" "$BIN" bench-backbone --arch cnn --batch 2 --seconds 0.3
expect 0 'knn_s=[0-9.]+ gemm_s=[0-9.]+ knn_over_gemm=[0-9.]+' "bench-eval" "$BIN" bench-eval --n 300 --d 8 --classes 3
expect 0 'nmi=[0-9.]+' "bench-eval k-means" "$BIN" bench-eval --n 300 --d 8 --classes 3 --restarts 2
expect 0 'sample=[0-9.]+ gemm=[0-9.]+ scan=[0-9.]+ finish=[0-9.]+ refilled_queries=[0-9]+' "bench-eval sampled, interleaved" \
  "$BIN" bench-eval --n 9000 --d 8 --classes 30 --interleaved --qblock 16 --rblock 500 --restarts 1 --kmeans-iter 2
expect 2 '' "profile-loss without a preset" "$BIN" profile-loss
expect 2 '' "profile-loss unknown preset" "$BIN" profile-loss --preset nope
expect 2 '' "bench-backbone unknown arch" "$BIN" bench-backbone --arch resnet
expect 2 '' "bench-backbone bad batch" "$BIN" bench-backbone --arch mlp --batch 0
# the scan's code paths (whichever this CPU has) find the same neighbours: the same metrics
expect 0 'scan=portable' "bench-eval portable scan" "$BIN" bench-eval --n 9000 --d 8 --classes 30 --scan portable --restarts 0
grep '^recall@1' "$tmp/out" >"$tmp/metrics_portable"
best=portable
grep -q avx2 /proc/cpuinfo && best=avx2
grep -q avx512f /proc/cpuinfo && best=avx512
expect 0 "scan=$best" "bench-eval best scan" "$BIN" bench-eval --n 9000 --d 8 --classes 30 --restarts 0
grep '^recall@1' "$tmp/out" | cmp -s - "$tmp/metrics_portable" || { echo "FAIL bench-eval: the scans' metrics differ"; fail=1; }
expect 2 '' "bench-eval bad scan" "$BIN" bench-eval --scan sse9
expect 2 '' "bench-eval bad n" "$BIN" bench-eval --n 2
expect 2 '' "bench-eval too many classes" "$BIN" bench-eval --n 10 --classes 6
expect 2 '' "bench-eval unknown argument" "$BIN" bench-eval --k 3
expect 2 '' "bench-eval bad kmeans-iter" "$BIN" bench-eval --kmeans-iter 0
exit $fail
