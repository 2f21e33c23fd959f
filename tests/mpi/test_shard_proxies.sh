#!/usr/bin/env bash
# Proxies sharded by class (shard_proxies = 1, docs/sharding.md), under real
# mpirun, on the Fashion-MNIST MLP with C = 10 classes (never a multiple of 3):
#
# 1. From one state, one step sharded over np = 1, 2 and 3 gives the summed
#    gradient and the parameters after Adam of the replicated run, within
#    the bounds of data parallelism (compare_step.py): the sharded loss
#    computes the same function, only its float sums are grouped otherwise.
#    Two sharded runs of the same seed and rank count are bitwise identical.
# 2. A sharded checkpoint holds the whole block: a sharded run of 2 ranks
#    resumes on 3 ranks sharded and on 1 rank replicated, and both resumed
#    runs take the same first step (the same loss within float rounding).
# 3. A sweep over K and N runs sharded (with the sampled regulariser),
#    task after task, to completion.
. "${PROXYGML_SRC:?}/tests/lib.sh" fmnist
train() {   # train NP OUT [--set ...]
  local np=$1 out=$2; shift 2
  timeout 300 mpirun --timeout 280 -np "$np" --bind-to none "$BIN" train --config "$SRC/experiments/fmnist_mlp.cfg" \
    --set "data=$tmp/fm.h5" --set threads=1 --set eval_epochs= "$@" --out "$out" >"$out.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || { echo "FAIL np=$np $out exited $rc"; tail -5 "$out.log"; exit 1; }
}
fail=0

# 1. one step from a state, sharded against replicated
verdict=3
for seed in 0 1 2 3 4; do
  train 1 "$tmp/state" --set epochs=1 --set max_steps_per_epoch=20 --set seed=$seed --force
  step=(--set epochs=1 --set max_steps_per_epoch=1 --set batch=96 --set dump_grads=1 --set seed=$seed
        --set init_from="$tmp/state/run.h5" --force)
  train 1 "$tmp/repl" "${step[@]}"
  specs=()
  for np in 1 2 3; do
    # the most moving parts on 3 ranks: the optimizer sharded too and the network's reduction overlapped
    extra=(); [ $np = 3 ] && extra=(--set overlap=1 --set bucket_mib=0.5)
    train $np "$tmp/shard$np" "${step[@]}" --set shard_proxies=1 "${extra[@]}"
    grep -q "proxies sharded by class" "$tmp/shard$np.log" || { echo "FAIL np=$np: the run did not shard"; fail=1; }
    specs+=("sharded np=$np:$np:$tmp/shard$np")
  done
  $PY "$SRC/tests/mpi/compare_step.py" step mlp "$tmp/state" "$tmp/repl" "${specs[@]}"
  verdict=$?
  [ $verdict -eq 3 ] || break
done
[ $verdict -eq 0 ] || { [ $verdict -eq 3 ] && echo "FAIL five states in a row with a near-tie"; fail=1; }

# the test subgraphs of the sharded evaluation: the state's, evaluated before a step, sharded on 3 ranks and replicated
ev=(--set epochs=1 --set max_steps_per_epoch=1 --set batch=96 --set eval_epochs=0 --set kmeans_restarts=1
    --set init_from="$tmp/state/run.h5" --force)
train 1 "$tmp/ev_repl" "${ev[@]}"
train 3 "$tmp/ev_shard" "${ev[@]}" --set shard_proxies=1
$PY - "$tmp/ev_repl/run.h5" "$tmp/ev_shard/run.h5" <<'EOF' || fail=1
import sys
import h5py
import numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
ia, ib = a["subgraph/proxies"][()], b["subgraph/proxies"][()]
sa, sb = a["subgraph/similarity"][()], b["subgraph/similarity"][()]
same = (ia == ib).all(axis=1).mean()
# a row differs only where its K-th and (K+1)-th similarities lie within
# the grouping of the similarity's float sums (a few ulps): rare, not never
ok = ia.shape == ib.shape and same >= 0.999 and np.abs(sa - sb).max() < 1e-5 and \
    (a["proxies/selection_count"][()] .sum() == b["proxies/selection_count"][()].sum() == ia.size)
print(("ok   " if ok else "FAIL ") + f"sharded test subgraphs: {same:.4%} of {len(ia)} rows as replicated, "
      f"similarities within {np.abs(sa - sb).max():.1e}, selection counts summing to n_test x K")
sys.exit(0 if ok else 1)
EOF

# bitwise repeatability: the same seed and rank count, twice, 30 steps with evaluation
for run in a b; do
  train 2 "$tmp/rep_$run" --set epochs=2 --set max_steps_per_epoch=15 --set eval_epochs=0,2 --set kmeans_restarts=1 \
    --set shard_proxies=1 --set reg_sampled=1 --force
done
$PY "$SRC/tests/mpi/compare_step.py" same "two sharded np=2 runs with the same seed" "$tmp/rep_a/run.h5" \
  "$tmp/rep_b/run.h5" || fail=1

# 2. resume a sharded checkpoint with another rank count, sharded or not
train 2 "$tmp/ck" --set batch=96 --set epochs=2 --set max_steps_per_epoch=10 --set shard_proxies=1 --force
cp -r "$tmp/ck" "$tmp/ck_repl"
train 3 "$tmp/ck" --set batch=96 --set epochs=3 --set max_steps_per_epoch=10 --set shard_proxies=1 --resume auto
train 1 "$tmp/ck_repl" --set batch=96 --set epochs=3 --set max_steps_per_epoch=10 --resume auto
# the newest checkpoint: the start of the last epoch trained (no checkpoint follows the last one)
s0=$(sed -n 's/^resuming from .*, step \([0-9]*\)$/\1/p' "$tmp/ck_repl.log")
$PY - "$tmp/ck/run.h5" "$tmp/ck_repl/run.h5" "${s0:-0}" <<'EOF' || fail=1
import sys
import h5py
import numpy as np
ok = True
def check(cond, what):
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok &= bool(cond)
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
for f, what in ((a, "sharded, 3 ranks"), (b, "replicated, 1 rank")):
    check(f.attrs["status"] == "complete" and f.attrs["steps_done"] == 30, f"resumed {what}: complete after 30 steps")
    check(np.isfinite(f["proxies/values"][()]).all() and f["proxies/values"].shape == (40, 128),
          f"resumed {what}: all 40 proxies written, finite")
# the first resumed step starts from the same checkpoint: its loss differs by
# the grouping of float sums only (a few ulps of each similarity, amplified
# by at most s N = 4 in the softmax)
s0 = int(sys.argv[3])
check(s0 > 0, f"the replicated run resumed at step {s0}")
la, lb = a["trace/loss"][s0], b["trace/loss"][s0]
check(abs(la - lb) <= 1e-4 * max(1.0, abs(lb)), f"the first resumed step: loss {la:.7f} sharded, {lb:.7f} replicated")
# the steps before it come from the same sharded run
check(np.array_equal(a["trace/loss"][:s0], b["trace/loss"][:s0]), f"the first {s0} steps are the checkpoint's in both")
sys.exit(0 if ok else 1)
EOF

# 3. a K x N sweep, sharded over 2 ranks (its runs add no code path the sanitizers have not seen above)
[ "${PROXYGML_SANITIZE:-0}" = 1 ] && exit $fail
cat >"$tmp/kn.sweep" <<EOF
config = "$SRC/experiments/fmnist_mlp.cfg";
out = "$tmp/sweep";
grid = { k = [4, 8]; N = [2, 3]; };
set = { data = "$tmp/fm.h5"; shard_proxies = 1; reg_sampled = 1; epochs = 1; max_steps_per_epoch = 5; eval_epochs = "1";
        kmeans_restarts = 1; threads = 1; };
EOF
PROXYGML_BIN=$BIN timeout 600 bash "$SRC/slurm/run_local_sweep.sh" "$tmp/kn.sweep" -np 2 >"$tmp/sweep.log" 2>&1 \
  || { echo "FAIL the sharded sweep"; tail -5 "$tmp/sweep.log"; fail=1; }
status=$("$BIN" sweep status "$tmp/kn.sweep")
n_complete=$(awk '$1 ~ /^[0-9]+$/ && $2 == "complete"' <<<"$status" | wc -l)
if [ "$n_complete" -eq 4 ]; then echo "ok   the sharded K x N sweep: 4 of 4 tasks complete"
else echo "FAIL the sharded K x N sweep: $n_complete of 4 tasks complete"; echo "$status"; fail=1; fi
$PY - "$tmp"/sweep/*/run.h5 <<'EOF' || fail=1
import sys
import h5py
import numpy as np
def sharded(p):
    f = h5py.File(p, "r")
    reg = f["trace/loss_reg"][()]   # lambda = 0.3: the sampled regulariser is a positive cross-entropy
    return int(f["config"].attrs["shard_proxies"]) == 1 and np.isfinite(reg).all() and (reg > 0).all()
bad = [p for p in sys.argv[1:] if not sharded(p)]
print(("FAIL " if bad or not sys.argv[1:] else "ok   ") +
      f"every sweep task trained sharded, with a finite positive sampled regulariser ({len(sys.argv) - 1} run files)")
sys.exit(1 if bad or not sys.argv[1:] else 0)
EOF
exit $fail
