#!/usr/bin/env bash
# test_check_metrics.sh: `proxygml check-metrics` on the golden metrics.h5 (exit 0),
# on bad input (exit 2, one line) and on a perturbed expected value (exit 1).
# Needs PROXYGML_BIN and PROXYGML_TESTDATA (set by tests/meson.build).
set -u
BIN=${PROXYGML_BIN:?PROXYGML_BIN not set}
GOLD=${PROXYGML_TESTDATA:?PROXYGML_TESTDATA not set}/metrics.h5
PY=/usr/bin/python3   # Debian's interpreter: the one with h5py
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# expect CODE DESCRIPTION CMD...: run, compare the exit status, keep the output
expect() {
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; cat "$tmp/out" "$tmp/err"; fails=$((fails + 1))
  else
    echo "ok:   $what (exit $got)"
  fi
}

# one clear line on stderr, containing `word` (quoted dataset names: the
# temporary file names must not match by accident)
expect_one_line() {
  local what=$1 word=$2
  if [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -q -- "$word" "$tmp/err"; then
    echo "FAIL: $what: expected one stderr line naming '$word', got:"; cat "$tmp/err"; fails=$((fails + 1))
  fi
}

# copy the golden file, then apply a python snippet to h5py.File `f`
variant() {
  local name=$1 code=$2
  "$PY" - "$GOLD" "$tmp/$name.h5" <<PYEOF || { echo "FAIL: cannot make $name"; fails=$((fails + 1)); }
import shutil, sys
import h5py, numpy as np
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "r+") as f:
    $code
PYEOF
}

expect 0 "golden metrics.h5" "$BIN" check-metrics "$GOLD"
for q in recall_at_k map_at_r r_precision knn nmi nmi2; do
  grep -q "^ *$q " "$tmp/out" || { echo "FAIL: no line for $q"; fails=$((fails + 1)); }
done
expect 0 "--help" "$BIN" check-metrics --help
grep -q "usage" "$tmp/out" || { echo "FAIL: --help prints no usage"; fails=$((fails + 1)); }
expect 2 "no argument" "$BIN" check-metrics

expect 2 "missing file" "$BIN" check-metrics "$tmp/does-not-exist.h5"
expect_one_line "missing file" "does-not-exist.h5"

variant no_labels 'del f["labels"]'
expect 2 "file without labels" "$BIN" check-metrics "$tmp/no_labels.h5"
expect_one_line "file without labels" "'labels' is missing"

variant short_labels 'l = f["labels"][:-1]; del f["labels"]; f["labels"] = l'
expect 2 "labels of the wrong length" "$BIN" check-metrics "$tmp/short_labels.h5"
expect_one_line "labels of the wrong length" "'labels' has shape"

variant nan_emb 'e = f["embeddings"][:]; e[3, 2] = np.nan; f["embeddings"][:] = e'
expect 2 "NaN embedding" "$BIN" check-metrics "$tmp/nan_emb.h5"
expect_one_line "NaN embedding" "NaN"

variant one_item 'e = f["embeddings"][:1]; l = f["labels"][:1]; del f["embeddings"], f["labels"]; f["embeddings"] = e; f["labels"] = l'
expect 2 "n < 2" "$BIN" check-metrics "$tmp/one_item.h5"
expect_one_line "n < 2" "n >= 2"

variant half_nmi 'del f["nmi2_assignment"]'
expect 2 "incomplete nmi2 triple" "$BIN" check-metrics "$tmp/half_nmi.h5"
expect_one_line "incomplete nmi2 triple" "'nmi2_assignment' is missing"

variant bad_map 'f["map_at_r"][()] = f["map_at_r"][()] + 1e-6'
expect 1 "perturbed map_at_r" "$BIN" check-metrics "$tmp/bad_map.h5"
grep -q "map_at_r.*MISMATCH" "$tmp/out" || { echo "FAIL: map_at_r not flagged"; fails=$((fails + 1)); }

variant bad_knn 'k = f["knn"][:]; k[10, [2, 3]] = k[10, [3, 2]]; f["knn"][:] = k'
expect 1 "swapped knn entries" "$BIN" check-metrics "$tmp/bad_knn.h5"

if [ "$fails" -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "all check-metrics cases passed"
