#!/usr/bin/env bash
# test_data_extra.sh: the converters beyond Fashion-MNIST through the real
# binary. JPEG and PNG files (RGB, grayscale, RGBA, CMYK JPEG) and .npy
# files are made here with Debian's /usr/bin/python3 (PIL, numpy, h5py); the
# written HDF5 files are inspected with h5py. Covers: an image-folder tree
# (ids, sizes, a corrupt image skipped or failing), a CUB-layout tree, the
# features converter (.npy and --h5), glyphs with two fonts (determinism of
# the bytes, attributes), and bad input: exit 2, one clear line, no output
# file. Skips (exit 77) without PIL/numpy/h5py.
set -u
BIN=${PROXYGML_BIN:?PROXYGML_BIN is not set (run through meson test)}
PY=/usr/bin/python3
if ! $PY -c 'import PIL, numpy, h5py' 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 lacks PIL, numpy or h5py (scripts/setup.sh installs python3-pil, python3-numpy, python3-h5py)"
  exit 77
fi
. "${PROXYGML_SRC:?}/tests/lib.sh"   # $tmp, fail, expect_exit
T=$tmp
# expect_err SUBSTRING: the last command's stderr mentions it
expect_err() { grep -qF -- "$1" "$T/err" || fail "stderr does not mention '$1': $(cat "$T/err")"; }

# --- an image-folder tree -------------------------------------------------------------
$PY - "$T/tree" <<'EOF'
import sys, os
from PIL import Image
root = sys.argv[1]
def save(rel, mode, size, color, fmt):
    p = os.path.join(root, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    Image.new(mode, size, color).save(p, fmt)
save("train/cat/a.jpg", "RGB", (40, 30), (200, 10, 10), "JPEG")
save("train/cat/b.png", "L", (30, 30), 90, "PNG")
save("train/dog/c.png", "RGBA", (20, 40), (10, 200, 10, 255), "PNG")
save("train/dog/d.jpg", "CMYK", (32, 32), (0, 255, 255, 0), "JPEG")   # CMYK JPEG: red
save("test/dog/e.jpg", "L", (50, 20), 30, "JPEG")
save("test/emu/f.png", "P", (16, 16), 3, "PNG")
save("test/emu/g.jpg", "RGB", (16, 16), (1, 2, 250), "JPEG")
EOF
expect_exit 0 "$BIN" data folder "$T/tree" "$T/f.h5" --size 12
$PY - "$T/f.h5" <<'EOF' || fail "folder: wrong contents"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["n_classes"] == 3 and f.attrs["n_skipped"] == 0, dict(f.attrs)
    names = [n.decode() if isinstance(n, bytes) else n for n in f["train/class_names"][:]]
    assert names == ["cat", "dog", "emu"], names
    tr, te = f["train/images"][:], f["test/images"][:]
    assert tr.shape == (4, 12, 12, 3) and te.shape == (3, 12, 12, 3), (tr.shape, te.shape)
    assert list(f["train/labels"][:]) == [0, 0, 1, 1] and list(f["test/labels"][:]) == [1, 2, 2]
    assert abs(int(tr[0, 6, 6, 0]) - 200) < 6 and tr[0, 6, 6, 1] < 20           # the red JPEG
    assert (tr[1] == 90).all()                                                  # gray PNG -> 3 equal channels
    assert tr[3, 6, 6, 0] > 200 and tr[3, 6, 6, 1] < 40 and tr[3, 6, 6, 2] < 40, tr[3, 6, 6]   # CMYK -> red
EOF

# a corrupt image: skipped (path reported, counted) or fatal
head -c 300 "$T/tree/test/emu/g.jpg" >"$T/tree/test/emu/h.jpg"
printf 'not an image' >"$T/tree/test/emu/i.png"
expect_exit 0 "$BIN" data folder "$T/tree" "$T/skip.h5" --size 12 --on-error skip
expect_err "test/emu/h.jpg"
expect_err "test/emu/i.png"
$PY -c "
import sys, h5py
f = h5py.File(sys.argv[1], 'r')
assert f.attrs['n_skipped'] == 2 and f['test'].attrs['n_skipped'] == 2 and f['test/labels'].shape == (3,)
" "$T/skip.h5" || fail "skip: n_skipped or rows wrong"
expect_exit 2 "$BIN" data folder "$T/tree" "$T/failed.h5" --size 12 --on-error fail
expect_err "test/emu/h.jpg"
[ -e "$T/failed.h5" ] && fail "--on-error fail left an output file"
expect_exit 2 "$BIN" data folder "$T/tree" "$T/x.h5" --on-error maybe
expect_err "--on-error takes skip or fail"
rm "$T/tree/test/emu/h.jpg" "$T/tree/test/emu/i.png"
mkdir "$T/tree/train/fox"
expect_exit 2 "$BIN" data folder "$T/tree" "$T/x.h5" --size 12
expect_err "train/fox: empty class folder"
[ -e "$T/x.h5" ] && fail "an empty class folder left an output file"
rmdir "$T/tree/train/fox"
chmod 000 "$T/tree/train/cat/a.jpg"
if ! [ -r "$T/tree/train/cat/a.jpg" ]; then   # root reads anything: only meaningful for other users
  expect_exit 2 "$BIN" data folder "$T/tree" "$T/x.h5" --size 12
  expect_err "a.jpg: cannot open"
fi
chmod 644 "$T/tree/train/cat/a.jpg"

# --- CUB-200-2011 layout ------------------------------------------------------------------
$PY - "$T/CUB" <<'EOF'
import sys, os
from PIL import Image
root = sys.argv[1]
rows = [(1, "001.Black_footed_Albatross/x1.jpg", 1), (2, "100.Brown_Pelican/x2.jpg", 100),
        (3, "101.White_Pelican/x3.jpg", 101), (4, "200.Common_Yellowthroat/x4.png", 200)]
for i, p, c in rows:
    q = os.path.join(root, "images", p); os.makedirs(os.path.dirname(q), exist_ok=True)
    Image.new("RGB", (60, 45), (c, 0, 0)).save(q)
open(os.path.join(root, "images.txt"), "w").write("".join("%d %s\n" % (i, p) for i, p, c in rows))
open(os.path.join(root, "image_class_labels.txt"), "w").write("".join("%d %d\n" % (i, c) for i, p, c in rows))
EOF
expect_exit 0 "$BIN" data cub "$T/CUB" "$T/cub.h5" --size 16
$PY -c "
import sys, h5py
f = h5py.File(sys.argv[1], 'r')
assert f.attrs['n_classes'] == 200
assert list(f['train/labels'][:]) == [0, 99] and list(f['test/labels'][:]) == [100, 199]
n = f['train/class_names'][199]; n = n.decode() if isinstance(n, bytes) else n
assert n == 'Common_Yellowthroat', n
assert f['train/images'].shape == (2, 16, 16, 3)
" "$T/cub.h5" || fail "cub: wrong contents"
expect_exit 2 "$BIN" data cub "$T" "$T/x.h5"
expect_err "images.txt: cannot open"

# --- features -------------------------------------------------------------------------------
$PY - "$T" <<'EOF'
import sys, numpy as np, h5py
d = sys.argv[1]
rng = np.random.default_rng(0)
np.save(d + "/xtr.npy", rng.normal(size=(50, 8)).astype(np.float32))
np.save(d + "/ytr.npy", np.arange(50) % 5)
np.save(d + "/xte.npy", rng.normal(size=(20, 8)))                 # float64
np.save(d + "/yte.npy", (5 + np.arange(20) % 4).astype(np.int32))
np.save(d + "/yshort.npy", np.arange(19) % 4)
bad = rng.normal(size=(20, 8)); bad[7, 3] = np.nan
np.save(d + "/xnan.npy", bad)
np.save(d + "/x3d.npy", np.zeros((20, 2, 4), np.float32))
with h5py.File(d + "/feats.h5", "w") as f:
    f["train/emb"] = rng.normal(size=(30, 4)); f["train/lab"] = np.arange(30) % 3
    f["test/emb"] = rng.normal(size=(10, 4)).astype(np.float32); f["test/lab"] = 3 + np.arange(10) % 2
EOF
expect_exit 0 "$BIN" data features "$T/feat.h5" --train-x "$T/xtr.npy" --train-y "$T/ytr.npy" \
  --test-x "$T/xte.npy" --test-y "$T/yte.npy"
$PY -c "
import sys, h5py, numpy as np
d = sys.argv[1]
f = h5py.File(d + '/feat.h5', 'r')
assert f.attrs['n_classes'] == 9
assert np.array_equal(f['train/features'][:], np.load(d + '/xtr.npy'))
assert np.array_equal(f['test/features'][:], np.load(d + '/xte.npy').astype(np.float32))
assert np.array_equal(f['test/labels'][:], np.load(d + '/yte.npy'))
" "$T" || fail "features: values differ from the .npy files"
expect_exit 0 "$BIN" data features "$T/feat2.h5" --h5 "$T/feats.h5" --x emb --y lab
$PY -c "
import sys, h5py
f = h5py.File(sys.argv[1], 'r')
assert f['train/features'].shape == (30, 4) and f['test/features'].shape == (10, 4) and f.attrs['n_classes'] == 5
" "$T/feat2.h5" || fail "features --h5: wrong shapes"
expect_exit 2 "$BIN" data features "$T/bad.h5" --train-x "$T/xtr.npy" --train-y "$T/ytr.npy" \
  --test-x "$T/xte.npy" --test-y "$T/yshort.npy"
expect_err "20 test feature rows but"
expect_exit 2 "$BIN" data features "$T/bad.h5" --train-x "$T/xtr.npy" --train-y "$T/ytr.npy" \
  --test-x "$T/xnan.npy" --test-y "$T/yte.npy"
expect_err "row 7, column 3 is NaN"
expect_exit 2 "$BIN" data features "$T/bad.h5" --train-x "$T/x3d.npy" --train-y "$T/ytr.npy" \
  --test-x "$T/xte.npy" --test-y "$T/yte.npy"
expect_err "x3d.npy"
expect_exit 2 "$BIN" data features "$T/bad.h5" --h5 "$T/feats.h5" --x emb --y nolabels
expect_err "nolabels"
expect_exit 2 "$BIN" data features "$T/bad.h5" --train-x "$T/xtr.npy"
expect_err "are required"
[ -e "$T/bad.h5" ] && fail "a failed features conversion left an output file"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "the error is not one line: $(cat "$T/err")"

# --- glyphs (two Debian fonts) ----------------------------------------------------------------
FONTS="ipag.ttf,ukai.ttc#0"
if "$BIN" data glyphs "$T/g0.h5" --train-classes 1 --test-classes 1 --fonts "$FONTS" >/dev/null 2>&1; then
  expect_exit 0 "$BIN" data glyphs "$T/g1.h5" --train-classes 6 --test-classes 4 --size 24 --augment 2 --seed 3 --fonts "$FONTS"
  sleep 1   # a different creation second: the only bytes allowed to differ
  expect_exit 0 "$BIN" data glyphs "$T/g2.h5" --train-classes 6 --test-classes 4 --size 24 --augment 2 --seed 3 --fonts "$FONTS"
  [ "$(stat -c %s "$T/g1.h5")" = "$(stat -c %s "$T/g2.h5")" ] || fail "glyphs: same seed, different file sizes"
  ndiff=$(cmp -l "$T/g1.h5" "$T/g2.h5" | wc -l)
  [ "$ndiff" -le 20 ] || fail "glyphs: same seed, $ndiff bytes differ (only the 20-byte creation time may)"
  $PY -c "
import sys, h5py
f = h5py.File(sys.argv[1], 'r')
assert f['train/images'].shape == (6 * 2 * 2, 24, 24, 1) and f['test/images'].shape == (4 * 2 * 2, 24, 24, 1)
assert list(f['test/labels'][:4]) == [6, 6, 6, 6] and f.attrs['n_classes'] == 10
n = f['train/class_names'][0]; n = n.decode() if isinstance(n, bytes) else n
assert len(n) == 1 and 0x4E00 <= ord(n) <= 0x9FFF, n
fonts = f.attrs['fonts']; fonts = fonts.decode() if isinstance(fonts, bytes) else fonts
assert 'IPAGothic' in fonts and 'AR PL UKai' in fonts and f.attrs['freetype_version'], fonts
assert f['train/images'][:].max() == 255
" "$T/g1.h5" || fail "glyphs: wrong contents"
  # --train-classes all: every character of every CJK Unified Ideographs block that both faces
  # map (and draw), /train = all but the --test-classes; compared with the fonts' own cmaps
  expect_exit 0 "$BIN" data glyphs "$T/ga.h5" --train-classes all --test-classes 100 --size 8 --augment 1 \
    --fonts "$FONTS" --progress-every 0
  if $PY -c 'import fontTools' 2>/dev/null; then
    $PY -c "
import sys, h5py
from fontTools.ttLib import TTFont
f = h5py.File(sys.argv[1], 'r')
fonts = f.attrs['fonts']; fonts = fonts.decode() if isinstance(fonts, bytes) else fonts
blocks = [(0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0x20000, 0x2EE5F), (0x30000, 0x323AF)]
common = None
for line in fonts.split(chr(10)):
    path, index = line.split(chr(9))[0].rsplit('#', 1)
    cm = {c for c in TTFont(path, fontNumber=int(index), lazy=True).getBestCmap() if any(a <= c <= b for a, b in blocks)}
    common = cm if common is None else common & cm
names = [n.decode() if isinstance(n, bytes) else n for n in f['train/class_names'][:]]
cps = {ord(n) for n in names}
assert len(cps) == len(names) == f.attrs['n_classes'] and cps <= common, (len(cps), len(common))
# a character is left out only when a face maps it to an empty outline: a few at most
assert len(cps) > 0.99 * len(common), (len(cps), len(common))
assert any(0x3400 <= c <= 0x4DBF for c in cps), 'no character of extension A'
assert f['test/labels'].shape == (2 * 100,) and f['train/labels'].shape == (2 * (len(names) - 100),)   # 2 faces x 1 augmentation
assert f['test/labels'][0] == len(names) - 100 and f.attrs['n_common_characters'] == len(common)
" "$T/ga.h5" || fail "glyphs --train-classes all: wrong classes"
  fi
  expect_exit 2 "$BIN" data glyphs "$T/gb.h5" --train-classes all --test-classes 20000 --size 8 --fonts "$FONTS"
  expect_err "--test-classes 20000 leaves none for /train"
  [ "$(wc -l <"$T/err")" -eq 1 ] && [ ! -e "$T/gb.h5" ] || fail "glyphs all: not one line, or a file left"
  expect_exit 2 "$BIN" data glyphs "$T/gb.h5" --train-classes everything --fonts "$FONTS"
  expect_err "--train-classes 'everything' is not an integer in [1, 20992]"
else
  echo "note: fonts-ipafont-gothic / fonts-arphic-ukai missing: glyph rendering not tested"
fi
expect_exit 2 "$BIN" data glyphs "$T/g3.h5" --fonts "ipag.ttf,/no/such/font.otf"
expect_err "/no/such/font.otf"
expect_exit 2 "$BIN" data glyphs "$T/g3.h5" --fonts "NoSuchFont-Regular.ttf"
expect_err "no file of that name"
[ -e "$T/g3.h5" ] && fail "a missing font left an output file"
expect_exit 2 "$BIN" data glyphs "$T/g3.h5" --augment 0
expect_err "--augment"

ls "$T" | grep -q '\.tmp\.' && fail "a temp file was left behind"
[ "$fails" = 0 ] && echo "OK" || echo "$fails failure(s)"
[ "$fails" = 0 ]
