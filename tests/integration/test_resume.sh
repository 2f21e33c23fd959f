#!/usr/bin/env bash
# proxygml train --resume auto against what a run directory may hold: a
# checkpoint or run file beyond the new number of epochs (no crash, no hang:
# the checkpoint's header is checked before its payload is read), a
# checkpoint of another configuration, an unreadable run.h5, partial
# checkpoint files a crash left behind, a complete run whose epochs were
# raised (it continues, bitwise equal to a run trained that long at once),
# and ranks that see different checkpoints (2 ranks under mpirun, each in its
# own working directory). Every refusal: exit 2, one line, nothing changed.
. "${PROXYGML_SRC:?}/tests/lib.sh"
cd "$tmp" || exit 1
fail=0
T="timeout 120"
"$BIN" data fashion-mnist fm.h5 --protocol seen >/dev/null || { echo "FAIL cannot convert Fashion-MNIST"; exit 1; }
CFG="$SRC/experiments/fmnist_mlp.cfg"
# 10 steps per epoch, checkpoints every 4 steps and at every epoch end but the last
S=(--set data=fm.h5 --set max_steps_per_epoch=10 --set checkpoint_every=4 --set kmeans_restarts=1)

ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

# refused LABEL PATTERN ARGS...: exit 2 (not a crash, not a timeout), one line on stderr matching PATTERN
refused() {
  local label=$1 pat=$2
  shift 2
  $T "$BIN" train --config "$CFG" "${S[@]}" "$@" >out.txt 2>err.txt
  local rc=$?
  if [ $rc -eq 2 ] && [ "$(grep -c . err.txt)" -eq 1 ] && grep -qE "$pat" err.txt; then ok "$label: $(cat err.txt)"
  else bad "$label: exit $rc (want 2), stderr:"; cat err.txt; tail -3 out.txt; fi
}

# --- a complete 3-epoch run, resumed with fewer epochs --------------------------------
$T "$BIN" train --config "$CFG" "${S[@]}" --set epochs=3 --out three >/dev/null 2>&1 || bad "cannot train the 3-epoch run"
md5sum three/run.h5 three/checkpoints/* >three.md5
refused "complete run, fewer epochs" "three/run.h5 has 3 epochs done \(status complete\), more than the 1 asked for" \
  --set epochs=1 --out three --resume auto
mv three/run.h5 three.h5
refused "checkpoint beyond the new epochs (run.h5 removed)" \
  "three/checkpoints/step-0+28.h5 is at step 28 \(epoch 3\), beyond the 10 steps of this configuration \(epochs = 1\)" \
  --set epochs=1 --out three --resume auto
refused "checkpoint of another configuration (lr 0.001, now 0.002)" \
  "three/checkpoints/step-0+28.h5 was written by another configuration \(hash [0-9a-f]{16}, this one [0-9a-f]{16}\)" \
  --set epochs=3 --set lr=0.002 --out three --resume auto
mv three.h5 three/run.h5
md5sum -c --quiet three.md5 && ok "the refusals left run.h5 and the checkpoints as they were" || bad "a refusal changed the run"

# --- a run killed in epoch 3 (run.h5 says running after epoch 2), resumed with 2 epochs ---
PROXYGML_INJECT_FAULT=0:25:crash $T "$BIN" train --config "$CFG" "${S[@]}" --set epochs=3 --out killed >/dev/null 2>&1
refused "killed run, checkpoint beyond the new epochs (run.h5 kept)" \
  "killed/checkpoints/step-0+24.h5 is at step 24 \(epoch 3\), beyond the 20 steps" --set epochs=2 --out killed --resume auto

# a crash during a checkpoint write leaves step-*.h5.tmp: a start removes it, and resumes from the newest complete one
head -c 5000 killed/checkpoints/step-000000024.h5 >killed/checkpoints/step-000000028.h5.tmp
$T "$BIN" train --config "$CFG" "${S[@]}" --set epochs=3 --out killed --resume auto >out.txt 2>err.txt
rc=$?
if [ $rc -eq 0 ] && ! ls killed/checkpoints | grep -q '\.tmp$' && grep -q "removed 1 partial checkpoint file" out.txt &&
   grep -q "resuming from killed/checkpoints/step-000000024.h5: epoch 3, step 24" out.txt; then
  ok "partial checkpoint removed, resumed from step 24: $(grep removed out.txt)"
else bad "partial checkpoint: exit $rc, checkpoints: $(ls killed/checkpoints)"; cat out.txt err.txt; fi

# --- an unreadable run.h5 is not "another experiment" -------------------------------
mkdir -p cut && head -c 20000 three/run.h5 >cut/run.h5
refused "truncated run.h5" "cannot resume: cut/run.h5: truncated HDF5 file .*move it away" --set epochs=3 --out cut --resume auto

# --- raising epochs continues a complete run ------------------------------------------
$T "$BIN" train --config "$CFG" "${S[@]}" --set epochs=2 --out grow >/dev/null 2>&1 || bad "cannot train the 2-epoch run"
$T "$BIN" train --config "$CFG" "${S[@]}" --set epochs=2 --out grow --resume auto >out.txt 2>&1
[ $? -eq 0 ] && grep -q "grow/run.h5 is complete (2 epochs): nothing to do" out.txt && ok "same epochs: $(head -1 out.txt)" ||
  { bad "resuming a complete run with the same epochs"; cat out.txt; }
$T "$BIN" train --config "$CFG" "${S[@]}" --set epochs=3 --out grow --resume auto >out.txt 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "grow/run.h5 is complete after 2 epochs; epochs = 3: continuing it" out.txt &&
   grep -q "resuming from grow/checkpoints/" out.txt; then ok "more epochs: $(head -1 out.txt)"
else bad "raising epochs: exit $rc"; cat out.txt; fi
$PY - three/run.h5 grow/run.h5 <<'PYEOF' || fail=1
import sys, h5py
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
names = ["model/parameters", "trace/loss", "embeddings/test", "subgraph/proxies"]
names += ["metrics/" + c for c in a["metrics"] if c not in ("train_seconds", "eval_seconds")]
diff = [n for n in names if a[n][()].tobytes() != b[n][()].tobytes()]
diff += [k for k in ("status", "steps_done", "epochs_done") if a.attrs[k] != b.attrs[k]]
print(("FAIL differs from the 3-epoch run: %s" % diff) if diff else
      "ok   2 epochs continued to 3: bitwise equal to the 3-epoch run (%d datasets)" % len(names))
sys.exit(1 if diff else 0)
PYEOF

# --- 2 ranks that do not see the same run directory ----------------------------------
mkdir -p wa wb && ln -s ../fm.h5 wa/fm.h5 && ln -s ../fm.h5 wb/fm.h5 && cp -r killed wa/run && rm wa/run/run.h5
t0=$SECONDS
timeout 60 mpirun --timeout 50 -np 1 --wdir "$tmp/wa" "$BIN" train --config "$CFG" "${S[@]}" --set epochs=3 --out run --resume auto \
  : -np 1 --wdir "$tmp/wb" "$BIN" train --config "$CFG" "${S[@]}" --set epochs=3 --out run --resume auto >out.txt 2>err.txt
rc=$?
n=$(grep -c "the ranks see different checkpoints in run (one no checkpoint, another step 28)" err.txt)
if [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$n" = 1 ] && [ $((SECONDS - t0)) -lt 30 ]; then
  ok "ranks with different checkpoints: exit $rc after $((SECONDS - t0)) s: $(grep "different checkpoints" err.txt)"
else bad "ranks with different checkpoints: exit $rc, $n messages"; cat err.txt; fi
exit $fail
