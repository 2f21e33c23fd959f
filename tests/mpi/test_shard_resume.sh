#!/usr/bin/env bash
# The sharded optimizer (shard_optimizer = 1) keeps checkpoints independent
# of the rank count, under real mpirun with the MLP:
#
# 1. On 2 ranks the sharded, overlapped path and the blocking, replicated one
#    write bitwise equal checkpoints (parameters and both Adam moments): each
#    gradient element is one addition of two partial sums in either path, and
#    Adam is elementwise (docs/scaling.md).
# 2. A checkpoint written by 2 sharded ranks resumes on 1, 2 and 3 ranks.
#    From that one state, the first resumed step's gradient agrees within the
#    rank-invariance bound, and the moments after it within what that
#    gradient difference allows: moments loaded wrongly (zeros, another
#    rank's piece) miss the bound by orders of magnitude.
# 3. Resuming on the rank count that wrote it is exact: the run ends bitwise
#    where the uninterrupted run ended.
. "${PROXYGML_SRC:?}/tests/lib.sh" fmnist
train() {   # train NP OUT [--set ...]
  local np=$1 out=$2; shift 2
  timeout 300 mpirun --timeout 280 -np "$np" --bind-to none "$BIN" train --config "$SRC/experiments/fmnist_mlp.cfg" \
    --set "data=$tmp/fm.h5" --set threads=1 --set eval_epochs= --set epochs=1 --set max_steps_per_epoch=20 --set batch=96 \
    --out "$out" "$@" >"$out.log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || { echo "FAIL np=$np $out exited $rc"; tail -5 "$out.log"; exit 1; }
}
check_seed() {   # SEED: exit 0 agree, 1 disagree, 3 a near-tie at the resumed step (try another)
  local seed=$1 d=$tmp/s$1
  mkdir -p "$d"
  train 2 "$d/shard" --set seed=$seed --set checkpoint_every=10 --set shard_optimizer=1 --set overlap=1 \
    --set bucket_mib=0.25
  train 2 "$d/plain" --set seed=$seed --set checkpoint_every=10 --set shard_optimizer=0 --set overlap=0
  for np in 1 2 3; do
    mkdir -p "$d/np$np"
    cp -r "$d/shard/checkpoints" "$d/np$np/"
    train $np "$d/np$np" --set seed=$seed --set checkpoint_every=11 --set shard_optimizer=1 --set overlap=1 \
      --set bucket_mib=0.25 --set dump_grads=1 --resume auto
    grep -q "resuming from .*step 10" "$d/np$np.log" || { echo "FAIL np=$np did not resume from step 10"; exit 1; }
  done
  $PY - "$d" <<'PYEOF'
import sys, h5py, numpy as np
d = sys.argv[1]
ok = True
def check(cond, what):
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok &= bool(cond)
def ckpt(run, step):
    return h5py.File("%s/%s/checkpoints/step-%09d.h5" % (d, run, step), "r")
a, b = ckpt("shard", 10), ckpt("plain", 10)
for k in ("params", "adam/m", "adam/v"):
    check(np.array_equal(a[k][()], b[k][()]), "np=2 step 10: sharded + overlapped and blocking + replicated write the same %s bitwise" % k)
check(np.count_nonzero(a["adam/v"][()]) > 0.9 * a["adam/v"].shape[0], "the sharded checkpoint holds every rank's moments")

grads = {n: h5py.File("%s/np%d/grads.h5" % (d, n), "r") for n in (1, 2, 3)}
margin = min(float(g["topk_margin"][0]) for g in grads.values())
if margin <= 1e-5:   # as in test_np_invariance.sh: a near-tie may select differently
    print("note: least top-K margin %.2e <= 1e-5 at the resumed step: trying another seed" % margin)
    sys.exit(3)
s = {n: ckpt("np%d" % n, 11) for n in (1, 2, 3)}
p = a["params"][()].astype(np.float64)
m0, v0 = a["adam/m"][()].astype(np.float64), a["adam/v"][()].astype(np.float64)
cfg = h5py.File("%s/shard/run.h5" % d, "r")["config"].attrs
b1, b2, wd = float(cfg["beta1"]), float(cfg["beta2"]), float(cfg["weight_decay"])
c1, c2 = float(np.float32(1 - b1)), float(np.float32(1 - b2))   # rounded to float32 as adam_step does
u = 2.0 ** -24
g2 = grads[2]["grads"][0].astype(np.float64)
for n in (1, 3):
    check(int(s[n].attrs["step"]) == 11 and int(s[n].attrs["ranks"]) == n, "np=%d resumed from the np=2 checkpoint and wrote step 11" % n)
    g = grads[n]["grads"][0].astype(np.float64)
    rel = np.max(np.abs(g - g2)) / np.max(np.abs(g2))
    # the rank-invariance bound of test_np_invariance.sh: regrouped float sums
    check(rel <= 1e-4, "np=%d gradient of the first resumed step: max|diff| / max|g| = %.2e <= 1e-4" % (n, rel))
    # m' = b1 m + c1 g', v' = b2 v + c2 g'^2 with g' = g + wd p, from
    # the same m, v, p (b1 m and b2 v round alike on both sides): the
    # differences follow from |dg| alone, plus the float32 roundings of each
    # side's g' and of its products with c1 and c2 (relative to those
    # products, not to m', which may be their cancellation) and of the sums
    ga, gb = g2 + wd * p, g + wd * p
    gmax = np.maximum(np.abs(ga), np.abs(gb))
    dg = np.abs(g - g2) + 4 * u * gmax
    for name, want, bound in (
            ("m", b1 * m0 + c1 * ga, c1 * dg),
            ("v", b2 * v0 + c2 * ga * ga, c2 * (2 * gmax + dg) * dg + 6 * u * c2 * gmax * gmax)):
        got_n = s[n]["adam/" + name][()].astype(np.float64)
        got_2 = s[2]["adam/" + name][()].astype(np.float64)
        tol = bound + 4 * u * (np.abs(got_2) + np.abs(want))
        excess = np.max(np.abs(got_n - got_2) - tol)
        check(excess <= 0, "np=%d Adam %s after the resumed step within the bound of its gradient difference (worst excess %.2e)" % (n, name, excess))
    # the moments moved: the comparison is not vacuous
    check(np.max(np.abs(s[n]["adam/m"][()] - m0)) > 0, "np=%d the first moments moved" % n)
# resuming on the writing rank count is exact
fa, fb = h5py.File("%s/shard/run.h5" % d, "r"), h5py.File("%s/np2/run.h5" % d, "r")
check(np.array_equal(fa["model/parameters"][()], fb["model/parameters"][()]),
      "np=2 resumed at step 10 ends bitwise where the uninterrupted run ended")
sys.exit(0 if ok else 1)
PYEOF
}
verdict=3
for seed in 0 1 2 3 4; do
  check_seed $seed
  verdict=$?
  [ $verdict -eq 3 ] || break
done
[ $verdict -eq 3 ] && echo "FAIL five seeds in a row with a near-tie at the resumed step"
exit $((verdict != 0))
