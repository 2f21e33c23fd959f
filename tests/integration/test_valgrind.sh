#!/usr/bin/env bash
# One short 1-rank training under valgrind memcheck: a features dataset made
# by `proxygml data features`, a run of 1 epoch that writes a checkpoint, then
# --resume auto with 2 epochs, which continues from that checkpoint. Every
# command must exit 0 with no memcheck error and no leak in the project's
# code; the reports of Open MPI, HDF5, OpenBLAS and libgomp themselves are
# suppressed by library object in tests/valgrind.supp. Runs on the normal
# build (ASan and valgrind do not mix); skipped without valgrind or numpy.
set -u
BIN=${PROXYGML_BIN:?}
SRC=${PROXYGML_SRC:?}
PY=/usr/bin/python3
[ "${PROXYGML_SANITIZE:-0}" = 1 ] && { echo "SKIP: a sanitizer build (valgrind cannot run ASan's binaries)"; exit 77; }
command -v valgrind >/dev/null || { echo "SKIP: valgrind is not installed (scripts/setup.sh installs it)"; exit 77; }
$PY -c "import numpy" 2>/dev/null || { echo "SKIP: $PY cannot import numpy"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
# GOMP_SPINCOUNT stays unset on purpose: the program must not re-execute
# itself under valgrind (tools/main.c): it did, and valgrind refused to run it
unset GOMP_SPINCOUNT OMP_WAIT_POLICY
export OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fail=0
# --keep-debuginfo: Open MPI unloads its components at MPI_Finalize, and a leak
# report names their objects only so; --num-callers: the stacks of component
# loading are deep, and a suppression matches only the frames that are kept
VG=(valgrind --error-exitcode=99 --leak-check=full --keep-debuginfo=yes --num-callers=40
    --suppressions="$SRC/tests/valgrind.supp")

run() {   # run LABEL ARGS...: the binary under memcheck, exit 0 and no error
  local label=$1 t0=$SECONDS
  shift
  "${VG[@]}" --log-file="$tmp/vg-$label.log" "$BIN" "$@" >"$tmp/$label.out" 2>&1
  local rc=$? summary
  summary=$(grep -h "ERROR SUMMARY" "$tmp/vg-$label.log" | tail -1 | sed 's/^==[0-9]*== //')
  if [ $rc -eq 0 ]; then
    echo "ok   $label: $((SECONDS - t0)) s, $summary"
  else
    echo "FAIL $label: exit $rc (99: memcheck errors), $summary"
    sed -n '/Parent PID/,$p' "$tmp/vg-$label.log" | tail -n +2 | head -80
    tail -5 "$tmp/$label.out"; fail=1
  fi
}

# 400 training rows of 10 classes, 200 test rows of 10 others, 32 features
$PY - <<'PYEOF' || { echo "FAIL cannot write the .npy files"; exit 1; }
import numpy as np
rng = np.random.default_rng(0)
centers = rng.normal(size=(20, 32))
for split, classes, n in (("train", range(10), 40), ("test", range(10, 20), 20)):
    y = np.repeat(np.array(classes, dtype=np.int64), n)
    np.save(split + "_x.npy", (centers[y] + 0.5 * rng.normal(size=(len(y), 32))).astype(np.float32))
    np.save(split + "_y.npy", y)
PYEOF
run convert data features feat.h5 --train-x train_x.npy --train-y train_y.npy --test-x test_x.npy --test-y test_y.npy
# 5 steps an epoch, a checkpoint every 3: the first run leaves step 3, the resumed one continues from it
S=(--config "$SRC/experiments/fmnist_mlp.cfg" --set data=feat.h5 --set batch=32 --set max_steps_per_epoch=5
   --set checkpoint_every=3 --set kmeans_restarts=1 --set threads=2 --out run)
run train train "${S[@]}" --set epochs=1 --set eval_epochs=0
[ -f run/checkpoints/step-000000003.h5 ] || { echo "FAIL no checkpoint at step 3: $(ls run/checkpoints 2>&1)"; fail=1; }
run resume train "${S[@]}" --set epochs=2 --set eval_epochs=0,2 --resume auto
grep -q "resuming from run/checkpoints/step-000000003.h5" resume.out ||
  { echo "FAIL the second run did not resume from the checkpoint:"; head -3 resume.out; fail=1; }
$PY - <<'PYEOF' || fail=1
import sys, h5py
a = h5py.File("run/run.h5", "r").attrs
ok = a["status"] == "complete" and a["steps_done"] == 10 and a["epochs_done"] == 2
print(("ok  " if ok else "FAIL") + " run.h5: status %s, %d steps, %d epochs" % (a["status"], a["steps_done"], a["epochs_done"]))
sys.exit(0 if ok else 1)
PYEOF
exit $fail
