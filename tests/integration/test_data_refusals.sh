#!/usr/bin/env bash
# test_data_refusals.sh: `proxygml data features` on every kind of broken
# source: .npy files whose header is cut short, of an unknown version, or
# lacks a key; a shape or size that contradicts the header; features of the
# wrong type, no rows, no width, a value beyond float32; HDF5 sources that are
# not 1-d or 2-d numbers. Each: exit 2, one line that names the file and the
# fault, and no output file.
set -u
BIN=${PROXYGML_BIN:?}
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0

"$PY" - "$T" <<'EOF'
import struct, sys, numpy as np, h5py
d = sys.argv[1]
def raw(name, header, data=b"", version=1, hlen=None):
    h = header.encode()
    n = len(h) if hlen is None else hlen
    pre = b"\x93NUMPY" + bytes([version, 0]) + (struct.pack("<H", n) if version == 1 else struct.pack("<I", n))
    open("%s/%s.npy" % (d, name), "wb").write(pre + h + data)
raw("version4", "", version=4)
open(d + "/cut_v2.npy", "wb").write(b"\x93NUMPY\x02\x00\x10\x00")   # the 4-byte length cut after 2
raw("huge_header", "", version=2, hlen=1 << 21)
raw("cut_header", "{'descr': '<f4', ", hlen=100)
raw("no_descr", "{'fortran_order': False, 'shape': (3,), }\n")
raw("odd_order", "{'descr': 'Xf4', 'fortran_order': False, 'shape': (3,), }\n")
raw("no_fortran", "{'descr': '<f4', 'shape': (3,), }\n")
raw("no_shape", "{'descr': '<f4', 'fortran_order': False, }\n")
raw("bad_shape", "{'descr': '<f4', 'fortran_order': False, 'shape': (3, -1), }\n")
raw("long", "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }\n", np.arange(4).tobytes())
np.save(d + "/x.npy", np.ones((6, 4), np.float32))
np.save(d + "/y.npy", np.arange(6) % 3)
np.save(d + "/x_int.npy", np.ones((6, 4), np.int32))
np.save(d + "/y_float.npy", np.arange(6, dtype=np.float32))
np.save(d + "/x_empty.npy", np.ones((0, 4), np.float32))
np.save(d + "/y_empty.npy", np.zeros(0, np.int64))
np.save(d + "/x_narrow.npy", np.ones((6, 0), np.float32))
big = np.ones((6, 4)); big[2, 1] = 1e300
np.save(d + "/x_big.npy", big)
with h5py.File(d + "/src.h5", "w") as f:
    f["cube"] = np.ones((6, 2, 2), np.float32)
    f["names"] = np.array([b"a", b"b", b"c", b"d", b"e", b"f"])
EOF
[ -f "$T/src.h5" ] || { echo "FAIL: cannot write the test files"; exit 1; }

# refused LABEL PATTERN TRAIN_X TRAIN_Y: exit 2, one line matching PATTERN, no output
refused() {
  local label=$1 pat=$2
  rm -f "$T/out.h5"
  "$BIN" data features "$T/out.h5" --train-x "$3" --train-y "$4" --test-x "$T/x.npy" --test-y "$T/y.npy" \
    >"$T/stdout" 2>"$T/stderr"
  local rc=$?
  if [ $rc -ne 2 ] || [ "$(grep -c . "$T/stderr")" -ne 1 ] || ! grep -qE "$pat" "$T/stderr"; then
    echo "FAIL $label: exit $rc (want 2), want one line matching /$pat/, got:"; cat "$T/stderr"; fails=$((fails + 1))
  elif [ -e "$T/out.h5" ]; then echo "FAIL $label: left an output file"; fails=$((fails + 1))
  else echo "ok   $label: $(cat "$T/stderr")"; fi
}
y=$T/y.npy x=$T/x.npy
refused "npy version 4"        "version4.npy: .npy format version 4 is not supported \(1-3 are\)" "$T/version4.npy" "$y"
refused "npy v2 cut in the prefix" "cut_v2.npy: truncated .npy header"                  "$T/cut_v2.npy" "$y"
refused "npy header length"    "huge_header.npy: implausible .npy header length 2097152"  "$T/huge_header.npy" "$y"
refused "npy header cut short" "cut_header.npy: truncated .npy header"                  "$T/cut_header.npy" "$y"
refused "npy without descr"    "no_descr.npy: .npy header has no simple 'descr'"       "$T/no_descr.npy" "$y"
refused "npy byte order"       "odd_order.npy: unsupported dtype 'Xf4'"                 "$T/odd_order.npy" "$y"
refused "npy without fortran_order" "no_fortran.npy: .npy header has no 'fortran_order'" "$T/no_fortran.npy" "$y"
refused "npy without shape"    "no_shape.npy: .npy header has no 'shape'"               "$T/no_shape.npy" "$y"
refused "npy negative shape"   "bad_shape.npy: bad shape in the .npy header"            "$T/bad_shape.npy" "$y"
refused "npy longer than its shape" "long.npy: 100 bytes, more than the header announces \(92\)" "$x" "$T/long.npy"
refused "integer features"     "x_int.npy: train features must be float32 or float64, got integers" "$T/x_int.npy" "$y"
refused "float labels"         "y_float.npy: train labels must be integers, got floating point" "$x" "$T/y_float.npy"
refused "no rows"              "x_empty.npy: no train rows"                             "$T/x_empty.npy" "$T/y_empty.npy"
refused "no columns"           "x_narrow.npy: bad feature width 0"                      "$T/x_narrow.npy" "$y"
refused "beyond float32"       "x_big.npy: train row 2, column 1 = 1e\+300 overflows float32" "$T/x_big.npy" "$y"
refused "3-d HDF5 dataset"     "src.h5:cube: 3-dimensional \(1-d labels or 2-d features expected\)" "$T/src.h5:cube" "$y"
refused "HDF5 strings"         "src.h5:names: not a numeric dataset"                    "$x" "$T/src.h5:names"

[ "$fails" = 0 ] && echo "OK" || echo "$fails failure(s)"
[ "$fails" = 0 ]
