#!/usr/bin/env bash
# What data parallelism promises, under real mpirun, for the MLP and the CNN:
#
# 1. From one identical state (the same parameters, proxies and global batch
#    of 96), np = 1, 2 and 3 compute the same summed gradient within float
#    rounding, and the same parameters after the Adam step. A wrong divisor,
#    a missed or doubled allreduce, or a rank training on the wrong rows
#    breaks this by orders of magnitude more than the bound. The baseline
#    losses (docs/baselines.md 6) are held to the same bounds, MLP only,
#    np = 1 against 2: Proxy-Anchor's batch sums and class count are global,
#    so a rank that used only its own rows would miss them by O(1).
# 2. Two runs of the same seed and rank count are bitwise identical.
# Every run here shards the optimizer and overlaps the reduction with
# backward in 0.5 MiB buckets, the path with the most moving parts; the
# blocking path is the default of every other test, and mpi/reducer_np*
# holds the paths against each other.
#
# Longer trajectories are compared statistically in test_np_trajectory.sh:
# top-K is discontinuous, so a 1e-7 difference in summation order flips a
# near-tie sooner or later and two rank counts then follow different (equally
# good) trajectories (docs/scaling.md).
. "${PROXYGML_SRC:?}/tests/lib.sh" fmnist
train() {   # train NP ARCH OUT [--set ...]
  local np=$1 arch=$2 out=$3; shift 3
  timeout 300 mpirun --timeout 280 -np "$np" --bind-to none "$BIN" train --config "$SRC/experiments/fmnist_$arch.cfg" \
    --set "data=$tmp/fm.h5" --set threads=1 --set eval_epochs= --set shard_optimizer=1 --set overlap=1 \
    --set bucket_mib=0.5 --out "$out" "$@" >"$out.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || { echo "FAIL np=$np $arch exited $rc"; tail -5 "$out.log"; exit 1; }
}
fail=0
check_state() {   # ARCH SEED [LOSS [NPS]]: exit 0 agree, 1 disagree, 3 a near-tie in this state (try another)
  local arch=$1 seed=$2 loss=${3:-proxygml} nps=${4:-1 2 3}
  local tag=${arch}_$loss
  # the state: 20 steps from the seed, so that no gradient is the special first one
  train 1 $arch "$tmp/${tag}_state" --set epochs=1 --set max_steps_per_epoch=20 --set seed=$seed --set loss=$loss \
    --set softtriple_centers=3 --force
  for np in $nps; do
    train $np $arch "$tmp/${tag}_np$np" --set epochs=1 --set max_steps_per_epoch=1 --set batch=96 --set dump_grads=1 \
      --set init_from="$tmp/${tag}_state/run.h5" --set seed=$seed --set loss=$loss --set softtriple_centers=3 --force
  done
  # the bounds and their reasons: compare_step.py
  local specs=() np
  for np in ${nps#1}; do specs+=("np=$np:$np:$tmp/${tag}_np$np"); done
  $PY "$SRC/tests/mpi/compare_step.py" step "$tag" "$tmp/${tag}_state" "$tmp/${tag}_np1" "${specs[@]}"
}
# Under sanitizers the bounds are the same and only memory errors are new:
# one network and one baseline carry every code path (the CNN's layers and
# the other losses run under ASan in the unit and cli suites), at half the time.
archs="mlp cnn" losses="proxynca proxyanchor softtriple normsoftmax"
[ "${PROXYGML_SANITIZE:-0}" = 1 ] && archs=mlp losses=proxyanchor
for arch in $archs; do
  verdict=3
  for seed in 0 1 2 3 4; do
    check_state $arch $seed
    verdict=$?
    [ $verdict -eq 3 ] || break
  done
  [ $verdict -eq 0 ] || { [ $verdict -eq 3 ] && echo "FAIL $arch: five states in a row with a near-tie"; fail=1; }
done
# the baselines select nothing, so no state has a near-tie: one state each
for loss in $losses; do
  check_state mlp 0 $loss "1 2" || fail=1
done

# bitwise repeatability: the same seed and rank count, twice, 40 steps with evaluation
for run in a b; do
  train 2 mlp "$tmp/rep_$run" --set epochs=2 --set max_steps_per_epoch=20 --set eval_epochs=0,2 --set kmeans_restarts=2
done
$PY "$SRC/tests/mpi/compare_step.py" same "two np=2 runs with the same seed" "$tmp/rep_a/run.h5" "$tmp/rep_b/run.h5" || fail=1
exit $fail
