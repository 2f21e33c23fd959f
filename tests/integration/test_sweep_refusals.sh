#!/usr/bin/env bash
# test_sweep_refusals.sh: `proxygml sweep plan` on broken sweep files, with
# no Slurm: a missing file, names too long, more keys or grid points than a
# sweep holds, a list value too long, two grid points that are one
# configuration, a dataset that does not exist, and an output directory in
# which no file can be made. Each: exit 2, one line that names the fault, and
# no manifest. (tests/slurm/test_bad_input.sh checks the same refusals
# through submit_sweep.sh.)
set -u
BIN=${PROXYGML_BIN:?}
SRC=${PROXYGML_SRC:?}
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
CFG="$SRC/experiments/fmnist_mlp.cfg"

# a small real dataset: 40 train rows of 4 classes, 12 test rows
"$PY" - <<'EOF'
import numpy as np
r = np.random.default_rng(0)
np.save("xtr.npy", r.normal(size=(40, 6)).astype(np.float32)); np.save("ytr.npy", np.arange(40) % 4)
np.save("xte.npy", r.normal(size=(12, 6)).astype(np.float32)); np.save("yte.npy", np.arange(12) % 4)
EOF
"$BIN" data features small.h5 --train-x xtr.npy --train-y ytr.npy --test-x xte.npy --test-y yte.npy >/dev/null ||
  { echo "FAIL: cannot write the small dataset"; exit 1; }

# refused LABEL PATTERN SWEEP_FILE: exit 2, one line matching PATTERN, no manifest written
refused() {
  local label=$1 pat=$2
  rm -rf out
  "$BIN" sweep plan "$3" >stdout 2>stderr
  local rc=$?
  if [ $rc -ne 2 ] || [ "$(grep -c . stderr)" -ne 1 ] || ! grep -qE -- "$pat" stderr; then
    echo "FAIL $label: exit $rc (want 2), want one line matching /$pat/, got:"; cat stderr; fails=$((fails + 1))
  elif [ -e out/manifest.tsv ]; then echo "FAIL $label: wrote a manifest"; fails=$((fails + 1))
  else echo "ok   $label: $(cut -c1-160 stderr)"; fi
}
# sweep NAME BODY: a sweep file on the base configuration, output in out/
sweep() { printf 'config = "%s";\nout = "out";\n%s\n' "$CFG" "$2" >"$1.sweep"; }
# N distinct keys "name = [0];" (only their count matters: the limit comes first)
keys() { for i in $(seq 1 "$1"); do printf 'key%d = [0]; ' "$i"; done; }

long=$(printf 'a%.0s' $(seq 1 1100))
refused "missing sweep file" "cannot open sweep file 'nope.sweep': No such file or directory" nope.sweep
refused "sweep file name too long" "^proxygml sweep plan: sweep file name too long$" "$long.sweep"
printf 'config = "%s.cfg";\ngrid = { k = [4]; };\n' "$long" >longcfg.sweep
refused "config path too long" "longcfg.sweep:1: 'config': the path is too long" longcfg.sweep
sweep manykeys "grid = { $(keys 33) };"
refused "33 grid keys" "manykeys.sweep:3: the grid has more than 32 keys" manykeys.sweep
sweep manyset "grid = { k = [4]; };
set = { $(keys 33 | sed 's/\[0\]/0/g') };"
refused "33 set keys" "manyset.sweep:4: 'set' has more than 32 keys" manyset.sweep
sweep longlist "grid = { k = [4]; };
set = { recall_ks = [$(seq -s, 1000 1200)]; };"
refused "list value too long" "longlist.sweep:4: set: key 'recall_ks': the array is too long" longlist.sweep
# 10^6 points: refused before any of them is built
sweep bigrid "grid = { seed = [0,1,2,3,4,5,6,7,8,9]; N = [1,2,3,4,5,6,7,8,9,10]; k = [1,2,3,4,5,6,7,8,9,10];
  batch = [1,2,3,4,5,6,7,8,9,10]; epochs = [1,2,3,4,5,6,7,8,9,10]; lr = [1,2,3,4,5,6,7,8,9,10]; };"
refused "a million grid points" "bigrid.sweep: the grid has more than 100000 points" bigrid.sweep
sweep dup "grid = { scale = (1, 1.0); };"
refused "one configuration twice" "dup.sweep: grid points scale=1 and scale=1.0 give the same configuration \(a duplicate grid point\)" dup.sweep
sweep nodata 'grid = { k = [4, 8]; };
set = { data = "nope.h5"; };'
refused "missing dataset" "nodata.sweep: task 0 \(k=4\): nope.h5: no such file" nodata.sweep
# a directory in which no file can be created, even by root
printf 'config = "%s";\nout = "/proc/self";\ngrid = { k = [4]; };\nset = { data = "%s/small.h5"; C = 4; N = 2; batch = 8; recall_ks = [1]; };\n' \
  "$CFG" "$T" >proc.sweep
refused "manifest cannot be written" "cannot write '/proc/self/manifest.tsv.tmp.[0-9]+': No such file or directory" proc.sweep

[ "$fails" = 0 ] && echo "OK" || echo "$fails failure(s)"
[ "$fails" = 0 ]
