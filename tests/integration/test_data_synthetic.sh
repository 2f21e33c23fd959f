#!/usr/bin/env bash
# test_data_synthetic.sh: `proxygml data synthetic` through the real binary,
# the file read back with Debian's /usr/bin/python3 (numpy, h5py): shapes,
# labels and rows per class in both splits; every row equal to the generator
# of docs/datasets.md re-implemented here in Python (xoshiro256**, Box-Muller);
# class means near their centres and the noise of the requested spread; the
# same seed giving the same bytes (and another thread count too), another
# seed other features; a class cut by a row block; and bad options: exit 2,
# one line naming the option, no output file. Skips (exit 77) without
# numpy/h5py.
set -u
BIN=${PROXYGML_BIN:?PROXYGML_BIN is not set (run through meson test)}
PY=/usr/bin/python3
if ! $PY -c 'import numpy, h5py' 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 lacks numpy or h5py (scripts/setup.sh installs python3-numpy, python3-h5py)"
  exit 77
fi
. "${PROXYGML_SRC:?}/tests/lib.sh"   # $tmp, fail, expect_exit
T=$tmp

# The generator of docs/datasets.md ("Synthetic features"), written from the
# document, not from the C code. Plain Python floats are IEEE doubles and
# math.log/math.cos are the C library's, and the build compiles without
# floating-point contraction, so the rows must agree to the bit.
cat >"$T/gen.py" <<'EOF'
import math
M = (1 << 64) - 1
GOLD = 0x9e3779b97f4a7c15
def mix64(z):
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M
    return z ^ (z >> 31)
def stream_seed(seed, kind, c, r):          # kind 0 centre, 1 train, 2 test
    h = mix64((seed + GOLD) & M)
    h = mix64(h ^ c)
    return mix64(h ^ (kind << 32 | r))
class Rng:                                  # xoshiro256**, state from splitmix64
    def __init__(self, seed):
        self.s = []
        for _ in range(4):
            seed = (seed + GOLD) & M
            self.s.append(mix64(seed))
    def u64(self):
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & M
        out = (rotl((s[1] * 5) & M, 7) * 9) & M
        t = (s[1] << 17) & M
        s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]
        s[2] ^= t; s[3] = rotl(s[3], 45)
        return out
    def normal(self):
        u1 = 1.0 - (self.u64() >> 11) * 2.0 ** -53
        u2 = (self.u64() >> 11) * 2.0 ** -53
        return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)
def centre(seed, c, F):
    g = Rng(stream_seed(seed, 0, c, 0))
    z = [g.normal() for _ in range(F)]
    ss = 0.0
    for v in z: ss += v * v
    inv = 1.0 / math.sqrt(ss)
    return [v * inv for v in z]
def row(mu, seed, kind, c, r, spread):
    import numpy as np
    g = Rng(stream_seed(seed, kind, c, r))
    sigma = spread / math.sqrt(len(mu))
    return np.array([m + sigma * g.normal() for m in mu], np.float32)
EOF

# --- a small set: contents, the generator, the statistics -----------------------------------
C=40 F=6 A=20 B=10 S=0.3
expect_exit 0 "$BIN" data synthetic "$T/s1.h5" --classes $C --dim $F --train-per-class $A --test-per-class $B \
  --spread $S --seed 7 --progress-every 0
grep -q "wrote .*/train 800 x 6 features (40 classes, ids 0-39), /test 400 x 6" "$T/out" || fail "summary: $(cat "$T/out")"
PYTHONPATH=$T $PY - "$T/s1.h5" $C $F $A $B $S 7 <<'EOF' || fail "synthetic: wrong contents"
import math, sys, h5py, numpy as np
from gen import centre, row
path, C, F, A, B, S, seed = sys.argv[1], *map(int, sys.argv[2:6]), float(sys.argv[6]), int(sys.argv[7])
with h5py.File(path, "r") as f:
    assert f.attrs["n_classes"] == C and f.attrs["seed"] == seed and f.attrs["spread"] == S, dict(f.attrs)
    names = [n.decode() if isinstance(n, bytes) else n for n in f["train/class_names"][:]]
    assert names == [str(c) for c in range(C)], names[:5]
    mus = np.array([centre(seed, c, F) for c in range(C)])          # C x F
    assert np.allclose(np.linalg.norm(mus, axis=1), 1.0, atol=1e-12)
    sigma = S / math.sqrt(F)
    for split, kind, per in (("train", 1, A), ("test", 2, B)):
        x, y = f[split + "/features"][:], f[split + "/labels"][:]
        assert x.shape == (C * per, F) and x.dtype == np.float32 and y.shape == (C * per,), (x.shape, y.shape)
        assert (y == np.repeat(np.arange(C), per)).all(), "labels: rows of class 0, then class 1, ..."
        assert (np.bincount(y, minlength=C) == per).all()
        # every row as the document defines it, to the bit
        for k in range(C * per):
            c, r = divmod(k, per)
            want = row(mus[c], seed, kind, c, r, S)
            assert np.array_equal(x[k], want), (split, k, x[k], want)
        # The mean of `per` rows of a class minus its centre is N(0, sigma^2 / per)
        # in each feature; 5 standard deviations over C*F = 240 features is
        # exceeded with probability < 2e-4 (and a wrong centre or scale misses
        # by far more: centres are unit vectors, sigma / sqrt(per) is 0.03-0.04).
        d = x.reshape(C, per, F).mean(axis=1) - mus
        worst = np.abs(d).max() / (sigma / math.sqrt(per))
        assert worst < 5, (split, worst)
        # the spread: the residuals' standard deviation estimates sigma from
        # C*per*F values, with a relative standard error of 1/sqrt(2 n) < 1.5 %
        resid = x - np.repeat(mus, per, axis=0)
        est = math.sqrt((resid.astype(np.float64) ** 2).mean())
        assert abs(est / sigma - 1) < 0.08, (split, est, sigma)
print("synthetic: contents, the documented generator, centres and spread ok")
EOF

# --- determinism: same seed (and another thread count) -> same bytes; another seed -> other rows --
sleep 1   # a different creation second: the only bytes allowed to differ
expect_exit 0 env OMP_NUM_THREADS=1 "$BIN" data synthetic "$T/s2.h5" --classes $C --dim $F --train-per-class $A \
  --test-per-class $B --spread $S --seed 7 --progress-every 0
expect_exit 0 "$BIN" data synthetic "$T/s3.h5" --classes $C --dim $F --train-per-class $A --test-per-class $B \
  --spread $S --seed 8 --progress-every 0
[ "$(stat -c %s "$T/s1.h5")" = "$(stat -c %s "$T/s2.h5")" ] || fail "same seed, different file sizes"
ndiff=$(cmp -l "$T/s1.h5" "$T/s2.h5" | wc -l)
[ "$ndiff" -le 20 ] || fail "same seed, $ndiff bytes differ (only the 20-byte creation time may)"
# large enough for both OpenMP loops to run in parallel (nc x F > 16384)
expect_exit 0 env OMP_NUM_THREADS=1 "$BIN" data synthetic "$T/t1.h5" --classes 3000 --dim 8 --progress-every 0
expect_exit 0 env OMP_NUM_THREADS=2 "$BIN" data synthetic "$T/t2.h5" --classes 3000 --dim 8 --progress-every 0
$PY - "$T" <<'EOF' || fail "determinism"
import sys, h5py, numpy as np
d = sys.argv[1]
def payload(name):
    with h5py.File(f"{d}/{name}.h5", "r") as f:
        return [f[s + "/" + k][:] for s in ("train", "test") for k in ("features", "labels")]
a, b, c = payload("s1"), payload("s2"), payload("s3")
assert all(u.tobytes() == v.tobytes() for u, v in zip(a, b)), "same seed, different payload"
assert a[1].tobytes() == c[1].tobytes(), "the labels do not depend on the seed"
assert (a[0] != c[0]).mean() > 0.99 and (a[2] != c[2]).mean() > 0.99, "another seed, the same features"
assert all(u.tobytes() == v.tobytes() for u, v in zip(payload("t1"), payload("t2"))), "1 and 2 threads differ"
print("synthetic: same seed same bytes (1 or 2 threads), another seed other rows")
EOF

# --- a class cut by a block boundary: F = 65536 makes blocks of 32 rows, so rows
# 30, 31 of class 10 end the first block and its row 32 begins the second ---------------------
expect_exit 0 "$BIN" data synthetic "$T/w.h5" --classes 12 --dim 65536 --train-per-class 3 --test-per-class 1 \
  --seed 5 --progress-every 0
PYTHONPATH=$T $PY - "$T/w.h5" <<'EOF' || fail "synthetic: a class across two blocks"
import sys, h5py, numpy as np
from gen import centre, row
mu = centre(5, 10, 65536)
with h5py.File(sys.argv[1], "r") as f:
    x = f["train/features"]
    assert x.shape == (36, 65536) and (f["train/labels"][30:33] == 10).all()
    for k, r in ((31, 1), (32, 2)):
        assert np.array_equal(x[k], row(mu, 5, 1, 10, r, 0.5)), k
print("synthetic: class 10 across two blocks ok")
EOF

# --- bad options: exit 2, one line naming the option, no output; an existing file stays -------
refused() {
  local label=$1 pat=$2; shift 2
  rm -f "$T/bad.h5"
  "$BIN" data synthetic "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -ne 2 ] || [ "$(grep -c . "$T/err")" -ne 1 ] || ! grep -qE -- "$pat" "$T/err"; then
    fail "$label: exit $rc (want 2), want one line matching /$pat/, got: $(cat "$T/err")"
  elif [ -e "$T/bad.h5" ]; then fail "$label: left an output file"
  else echo "ok   $label: $(cat "$T/err")"; fi
}
refused "one class"         "--classes 1 is outside \[2, 16777216\]"         "$T/bad.h5" --classes 1
refused "too many classes"  "--classes 16777217 is outside \[2, 16777216\]"  "$T/bad.h5" --classes 16777217
refused "no features"       "--dim 0 is outside \[1, 65536\]"                "$T/bad.h5" --classes 5 --dim 0
refused "too wide"          "--dim 65537 is outside \[1, 65536\]"            "$T/bad.h5" --classes 5 --dim 65537
refused "no train rows"     "--train-per-class 0 is outside \[1, 100000\]"   "$T/bad.h5" --classes 5 --train-per-class 0
refused "no test rows"      "--test-per-class -1 is outside \[1, 100000\]"   "$T/bad.h5" --classes 5 --test-per-class -1
refused "negative spread"   "--spread -0.1 must be a finite number >= 0"     "$T/bad.h5" --classes 5 --spread -0.1
refused "spread not finite" "--spread 'nan' is not a finite number"          "$T/bad.h5" --classes 5 --spread nan
refused "spread not a number" "--spread '1x' is not a finite number"         "$T/bad.h5" --classes 5 --spread 1x
refused "classes not an integer" "--classes '1e6' is not an integer\$"        "$T/bad.h5" --classes 1e6
refused "negative seed"     "--seed '-1' is not an integer in \[0, "         "$T/bad.h5" --classes 5 --seed -1
refused "no --classes"      "--classes is required"                          "$T/bad.h5"
refused "no OUT.h5"         "OUT.h5 is required"                             --classes 5
refused "unknown option"    "unknown option '--clases'"                      "$T/bad.h5" --clases 5
refused "unwritable output" "cannot create HDF5 file"                        /proc/bad.h5 --classes 5
cp "$T/s1.h5" "$T/keep.h5"
"$BIN" data synthetic "$T/keep.h5" --classes 5 --dim 0 >/dev/null 2>&1
cmp -s "$T/s1.h5" "$T/keep.h5" || fail "a refused run changed an existing OUT.h5"

[ "$fails" = 0 ] && echo "OK" || echo "$fails failure(s)"
[ "$fails" = 0 ]
