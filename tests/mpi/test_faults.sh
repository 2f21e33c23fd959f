#!/usr/bin/env bash
# A failure on rank 1 only (through the test-only PROXYGML_INJECT_FAULT) ends
# every rank within seconds, with a non-zero exit and a message naming the
# rank or the cause, and never a run file that claims success.
set -u
BIN=${PROXYGML_BIN:?}
SRC=${PROXYGML_SRC:?}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" data fashion-mnist "$tmp/fm.h5" --protocol seen >/dev/null || { echo "FAIL convert"; exit 1; }
fail=0
inject() {   # inject FAULT EXPECTED_PATTERN
  local fault=$1 pat=$2 out="$tmp/run-${1//:/_}"
  local t0=$SECONDS
  PROXYGML_INJECT_FAULT=$fault timeout 60 mpirun --timeout 50 -x PROXYGML_INJECT_FAULT -np 2 --bind-to none \
    "$BIN" train --config "$SRC/experiments/fmnist_mlp.cfg" --set "data=$tmp/fm.h5" --set epochs=1 \
    --set max_steps_per_epoch=40 --set eval_epochs=1 --set threads=1 --out "$out" >"$out.log" 2>&1
  local rc=$? dt=$((SECONDS - t0))
  local status=none
  [ -f "$out/run.h5" ] && status=$(/usr/bin/python3 -c "import h5py; print(h5py.File('$out/run.h5')['/'].attrs['status'])")
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $dt -gt 30 ] || ! grep -qE "$pat" "$out.log" || [ "$status" = complete ]; then
    echo "FAIL fault $fault: exit $rc after ${dt}s, run file status $status"; tail -5 "$out.log"; fail=1
  else
    echo "ok   fault $fault: exit $rc after ${dt}s, run file status $status: $(grep -E "$pat" "$out.log" | head -1)"
  fi
}
inject 1:0:io     "rank 1.*injected I/O fault"
inject 1:7:nan    "non-finite loss"
inject 1:7:crash  "rank 1.*injected crash|exited on signal|aborted"
exit $fail
