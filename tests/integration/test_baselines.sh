#!/usr/bin/env bash
# The baseline losses in a real training run: each trains (1 rank), and its
# run file names the loss, holds its hyper-parameters and C*N proxies (N =
# proxies per class: SoftTriple's centres); SoftTriple killed mid-run and
# resumed from its checkpoint ends bitwise equal to an uninterrupted run; a
# checkpoint of another loss is refused; bad values exit 2 with one line.
set -u
BIN=${PROXYGML_BIN:?}
SRC=${PROXYGML_SRC:?}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fail=0
T="timeout 120"
"$BIN" data fashion-mnist fm.h5 --protocol seen >/dev/null || { echo "FAIL cannot convert Fashion-MNIST"; exit 1; }
CFG="$SRC/experiments/fmnist_mlp.cfg"
S=(--set data=fm.h5 --set epochs=2 --set max_steps_per_epoch=6 --set eval_epochs=2 --set kmeans_restarts=1
   --set threads=1 --set softtriple_centers=3)
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

for loss in proxynca proxyanchor softtriple normsoftmax; do
  $T "$BIN" train --config "$CFG" "${S[@]}" --set loss=$loss --out $loss >$loss.log 2>&1 ||
    { bad "$loss: training failed"; tail -3 $loss.log; continue; }
  $PY - $loss <<'PYEOF' && ok "$loss: run file" || fail=1
import sys, h5py, numpy as np
loss = sys.argv[1]
f = h5py.File(loss + "/run.h5", "r")
cfg = f["config"].attrs
N = 3 if loss == "softtriple" else 1
checks = [
    (f.attrs["loss"] == loss and cfg["loss"] == loss, "the loss is named (%s)" % f.attrs["loss"]),
    (int(f.attrs["N"]) == N, "N = %d proxies per class (got %d)" % (N, f.attrs["N"])),
    (f["proxies/values"].shape == (10 * N, 128), "proxies C*N x D (got %s)" % (f["proxies/values"].shape,)),
    (float(cfg["proxyanchor_alpha"]) == 32 and int(cfg["softtriple_centers"]) == 3 and
     float(cfg["normsoftmax_temperature"]) == 0.05, "the hyper-parameters are recorded"),
    (np.all(np.isfinite(f["trace/loss"][()])) and f["trace/loss"].shape[0] == 12, "12 finite losses traced"),
    (f.attrs["status"] == "complete" and f["metrics/recall_at_1"][-1] > 0.3, "complete, R@1 %.3f" % f["metrics/recall_at_1"][-1]),
]
for good, what in checks:
    print(("ok   " if good else "FAIL ") + loss + ": " + what)
sys.exit(0 if all(c for c, _ in checks) else 1)
PYEOF
done

# SoftTriple's centres are the proxy block: a crash at step 9 and --resume auto
# from the checkpoint of step 8 give the parameters of the run that never stopped
R=(--set loss=softtriple --set checkpoint_every=4 --set eval_epochs=)
PROXYGML_INJECT_FAULT=0:9:crash $T "$BIN" train --config "$CFG" "${S[@]}" "${R[@]}" --out killed >killed.log 2>&1
[ -f killed/run.h5 ] && [ -d killed/checkpoints ] || bad "the killed run left no checkpoint"
$T "$BIN" train --config "$CFG" "${S[@]}" "${R[@]}" --out killed --resume auto >resumed.log 2>&1 ||
  { bad "resume failed"; tail -3 resumed.log; }
$T "$BIN" train --config "$CFG" "${S[@]}" "${R[@]}" --out whole >whole.log 2>&1 || bad "uninterrupted run failed"
$PY - <<'PYEOF' && ok "softtriple: killed and resumed = uninterrupted, bitwise" || fail=1
import h5py, numpy as np, sys
a, b = h5py.File("killed/run.h5", "r"), h5py.File("whole/run.h5", "r")
same = all(np.array_equal(a[k][()], b[k][()]) for k in ("model/parameters", "proxies/values", "trace/loss"))
print(("ok   " if same else "FAIL ") + "parameters, proxies and loss trace equal")
sys.exit(0 if same else 1)
PYEOF
grep -q "resuming from" resumed.log || bad "the second run did not resume"

# a checkpoint of another loss (or of other centres) is not resumed
for other in "--set loss=proxynca" "--set softtriple_centers=4"; do
  $T "$BIN" train --config "$CFG" "${S[@]}" "${R[@]}" $other --set epochs=3 --out killed --resume auto >out.txt 2>err.txt
  rc=$?
  if [ $rc -eq 2 ] && [ "$(grep -c . err.txt)" -eq 1 ] && grep -qE "another (configuration|experiment)" err.txt; then ok "refused ($other)"
  else bad "resume with $other: exit $rc"; cat err.txt; fi
done

# bad values: exit 2, one line naming the key
for kv in loss=arcface proxyanchor_alpha=0 softtriple_centers=0 softtriple_tau=-1; do
  "$BIN" train --config "$CFG" --set data=fm.h5 --set $kv --out bad >out.txt 2>err.txt
  rc=$?
  key=${kv%%=*}
  if [ $rc -eq 2 ] && [ "$(grep -c . err.txt)" -eq 1 ] && grep -q "'$key'" err.txt; then ok "$kv: $(cat err.txt)"
  else bad "$kv: exit $rc"; cat err.txt; fi
done
exit $fail
