#!/usr/bin/env bash
# Data parallelism, measured side by side in one run, and the step-time model
# of docs/scaling.md checked against it:
#
#  * one node: 1 rank x 2 threads against 2 ranks x 1 thread (the same
#    global batch), the 2-rank case with the optimizer sharded or not and the
#    reduction overlapped with backward or not;
#  * the two-node test bed (scripts/netbed.sh: one rank in each of two
#    network namespaces, TCP over a veth pair shaped with tbf) at each RATE,
#    with the same four variants;
#  * bench-reduce on each transport: the reduction alone, the model's input;
#  * the model's prediction of each 2-rank step from a 1-rank x 1-thread run
#    at the per-rank batch and the reduction time, against the measured step;
#  * the model extrapolated to 8-256 nodes for a CUB-like 10 M-parameter case.
#
# Variants alternate within each round and the medians over rounds are
# reported, so slow drift of a shared machine hits every variant alike.
#   bench/bench_scaling.sh [--rounds R] [--beds "10gbit 1gbit"] [--archs "mlp cnn"]
#   (--beds "" measures this node only; the bed needs root and namespaces)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 BEDS="10gbit 1gbit" ARCHS="mlp cnn"
while [ $# -gt 0 ]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --beds) BEDS=$2; shift 2 ;;
    --archs) ARCHS=$2; shift 2 ;;
    *) sed -n '2,19p' "$0"; exit 2 ;;
  esac
done
BIN=${BIN:-build/proxygml}
out=${OUT:-bench/out/scaling}
mkdir -p "$out" data
out=$(cd "$out" && pwd)   # absolute: the bed's ranks start elsewhere
[ -f data/fmnist_seen.h5 ] || "$BIN" data fashion-mnist data/fmnist_seen.h5 --protocol seen >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
declare -A STEPS=([mlp]=${STEPS_MLP:-900} [cnn]=${STEPS_CNN:-300})

beds=()
cleanup() { for b in "${beds[@]}"; do bash scripts/netbed.sh down "$b" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for rate in $BEDS; do
  bash scripts/netbed.sh check >/dev/null || { echo "bench_scaling: no test bed here ($(bash scripts/netbed.sh check 2>&1)); measuring this node only"; BEDS=""; break; }
  beds+=("$(bash scripts/netbed.sh up --name "bench${rate}" --rate "$rate" --owner $$)")
done

variants=("0 0" "1 0" "0 1" "1 1")   # shard_optimizer overlap
train() {   # train OUT LAUNCH... -- extra --set args
  local o=$1; shift
  "$@" >/dev/null 2>"$o.err" || { echo "bench_scaling: $o failed:"; tail -3 "$o.err"; exit 1; }
}
for r in $(seq 1 "$ROUNDS"); do
  for arch in $ARCHS; do
    common=(train --config "experiments/fmnist_$arch.cfg" --set data=data/fmnist_seen.h5 --set epochs=1
            --set "max_steps_per_epoch=${STEPS[$arch]}" --set eval_epochs= --force)
    d=$out/r$r/$arch
    mkdir -p "$d"
    train "$d/np1t2" mpirun -np 1 --bind-to none "$BIN" "${common[@]}" --set threads=2 --out "$d/np1t2"
    # the model's calibration: one rank, one thread, the per-rank batch
    train "$d/np1t1" mpirun -np 1 --bind-to none "$BIN" "${common[@]}" --set threads=1 --set batch=32 --out "$d/np1t1"
    for v in "${variants[@]}"; do
      set -- $v
      train "$d/shm_s$1o$2" mpirun -np 2 --bind-to core "$BIN" "${common[@]}" --set threads=1 \
        --set shard_optimizer=$1 --set overlap=$2 --out "$d/shm_s$1o$2"
      for b in "${beds[@]}"; do
        # --bind-to none: each "node" would bind its one rank to core 0, the same core
        train "$d/${b}_s$1o$2" bash scripts/netbed.sh mpirun "$b" -np 2 --bind-to none "$BIN" "${common[@]}" \
          --set threads=1 --set shard_optimizer=$1 --set overlap=$2 --out "$d/${b}_s$1o$2"
      done
    done
  done
done
# the reduction alone, at the two models' block sizes and around them
mib="0.5,1,2.8,3.3,8"
mpirun -np 2 --bind-to core "$BIN" bench-reduce --mib "$mib" --reps 30 >"$out/reduce_shm.txt"
for b in "${beds[@]}"; do
  bash scripts/netbed.sh mpirun "$b" -np 2 --bind-to none "$BIN" bench-reduce --mib "$mib" --reps 30 >"$out/reduce_$b.txt"
done
/usr/bin/python3 bench/scaling_model.py "$out" "$ROUNDS" "$ARCHS" shm "${beds[@]}"
