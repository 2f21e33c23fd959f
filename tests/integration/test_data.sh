#!/usr/bin/env bash
# test_data.sh: `proxygml data` on the real Fashion-MNIST: both protocols
# converted into a temp dir, the counts and class ids checked in the written
# HDF5 (h5py through Debian's /usr/bin/python3, else h5dump), `data info`, an
# output directory that does not exist yet (made), and bad input (missing IDX
# dir, unknown protocol; missing, non-HDF5 and truncated files, each named)
# -> exit 2 and no output file. Skips (exit 77) when the IDX files are not installed.
set -u
BIN=${PROXYGML_BIN:?PROXYGML_BIN is not set (run through meson test)}
IDX=${FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$IDX/train-images-idx3-ubyte.gz" ]; then
  echo "SKIP: no Fashion-MNIST in $IDX (install dataset-fashion-mnist or set FMNIST_DIR)"
  exit 77
fi
. "${PROXYGML_SRC:?}/tests/lib.sh"   # $tmp, fail, expect_exit
T=$tmp

# N_TRAIN N_TEST TRAIN_LABELS TEST_LABELS of FILE (labels as "min-max/distinct")
counts() {
  if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    /usr/bin/python3 - "$1" <<'EOF'
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    out = []
    for s in ("train", "test"):
        im, lab = f[s]["images"], f[s]["labels"][:]
        assert im.dtype == np.uint8 and im.shape[1:] == (28, 28, 1), im
        assert lab.dtype == np.int32 and lab.shape == (im.shape[0],)
        assert len(f[s]["class_names"]) == 10
        out.append(str(im.shape[0]))
    for s in ("train", "test"):
        lab = f[s]["labels"][:]
        out.append("%d-%d/%d" % (lab.min(), lab.max(), len(np.unique(lab))))
    print(" ".join(out), f.attrs["n_classes"], f.attrs["protocol"])
EOF
  else
    # no h5py: the shapes from the header only
    local a b
    a=$(h5dump -H -d /train/labels "$1" | sed -n 's/.*DATASPACE  SIMPLE { ( \([0-9]*\) ).*/\1/p')
    b=$(h5dump -H -d /test/labels "$1" | sed -n 's/.*DATASPACE  SIMPLE { ( \([0-9]*\) ).*/\1/p')
    echo "$a $b"
  fi
}

# --- both protocols --------------------------------------------------------------
for proto in seen zeroshot; do
  expect_exit 0 "$BIN" data fashion-mnist "$T/$proto.h5" --protocol "$proto" --idx-dir "$IDX"
  cat "$T/out"
  [ -f "$T/$proto.h5" ] || { fail "$proto: no output file"; continue; }
  got=$(counts "$T/$proto.h5")
  case $proto in
    seen) want="60000 10000 0-9/10 0-9/10 10 seen" ;;
    zeroshot) want="30000 5000 0-4/5 5-9/5 10 zeroshot" ;;
  esac
  /usr/bin/python3 -c 'import h5py' 2>/dev/null || want=${want%% [0-9]-*}
  [ "$got" = "$want" ] || fail "$proto: counts '$got', expected '$want'"
  expect_exit 0 "$BIN" data info "$T/$proto.h5"
  grep -q "Ankle boot" "$T/out" || fail "$proto: data info does not list the class names"
done
ls "$T" | grep -q '\.tmp\.' && fail "a temp file was left behind"

# the output's missing parent directories are made (`data/` of a fresh checkout)
expect_exit 0 "$BIN" data fashion-mnist "$T/new/data/zs.h5" --protocol zeroshot --idx-dir "$IDX"
[ -f "$T/new/data/zs.h5" ] || fail "no output file in a directory that did not exist: $(cat "$T/err")"

# FMNIST_DIR is the default when --idx-dir is absent
FMNIST_DIR="$T/nowhere" expect_exit 2 "$BIN" data fashion-mnist "$T/env.h5" --protocol seen
grep -q "$T/nowhere" "$T/err" || fail "FMNIST_DIR was not used: $(cat "$T/err")"

# --- bad input -----------------------------------------------------------------------
expect_exit 2 "$BIN" data fashion-mnist "$T/bad.h5" --protocol seen --idx-dir "$T/missing"
grep -q "no such directory" "$T/err" || fail "missing idx dir: unclear message: $(cat "$T/err")"
[ -e "$T/bad.h5" ] && fail "missing idx dir left an output file"
expect_exit 2 "$BIN" data fashion-mnist "$T/bad.h5" --protocol fewshot --idx-dir "$IDX"
grep -q "unknown protocol 'fewshot'" "$T/err" || fail "unknown protocol: unclear message: $(cat "$T/err")"
expect_exit 2 "$BIN" data fashion-mnist "$T/bad.h5" --idx-dir "$IDX"
[ -e "$T/bad.h5" ] && fail "bad arguments left an output file"

# a truncated IDX file fails and leaves the existing good file untouched
mkdir "$T/trunc"
cp "$IDX"/*labels* "$IDX"/t10k-images* "$T/trunc/"
head -c 1000000 "$IDX/train-images-idx3-ubyte.gz" >"$T/trunc/train-images-idx3-ubyte.gz"
cp "$T/seen.h5" "$T/keep.h5"
expect_exit 2 "$BIN" data fashion-mnist "$T/keep.h5" --protocol zeroshot --idx-dir "$T/trunc"
grep -q "train-images-idx3-ubyte.gz" "$T/err" || fail "truncated file: message does not name it: $(cat "$T/err")"
cmp -s "$T/seen.h5" "$T/keep.h5" || fail "a failed conversion changed the existing output"

# data info on invalid files
head -c 5000 /dev/urandom >"$T/junk.h5"
expect_exit 2 "$BIN" data info "$T/junk.h5"
grep -q "junk.h5: not an HDF5 file" "$T/err" || fail "data info junk: unclear message: $(cat "$T/err")"
expect_exit 2 "$BIN" data info "$T/none.h5"
grep -q "none.h5: no such file" "$T/err" || fail "data info on a missing file: unclear message: $(cat "$T/err")"
head -c 300000 "$T/seen.h5" >"$T/cut.h5"
expect_exit 2 "$BIN" data info "$T/cut.h5"
grep -q "cut.h5: truncated HDF5 file" "$T/err" || fail "data info on a truncated file: unclear message: $(cat "$T/err")"
expect_exit 2 "$BIN" data frobnicate
expect_exit 0 "$BIN" data --help
grep -q -- "--protocol" "$T/out" || fail "data --help does not document --protocol"

[ "$fails" = 0 ] && echo "OK" || echo "$fails failure(s)"
[ "$fails" = 0 ]
