#!/usr/bin/env bash
# test_convert_refusals.sh: the converters of `proxygml data` on broken
# sources, one case per refusal: image-folder trees without classes or
# images, CUB, Cars196 and Stanford Online Products layouts with missing or
# malformed list files, Fashion-MNIST IDX files that are corrupt, cut short,
# too long or inconsistent, and glyph fonts that cannot serve (a bitmap font,
# a collection with a damaged face, a font whose ideographs have no outline,
# no usable default font). The sources are made here with Debian's
# /usr/bin/python3 (PIL, fontTools). Each: exit 2, one line that names the
# file and the fault, and no output file.
set -u
BIN=${PROXYGML_BIN:?}
PY=/usr/bin/python3
if ! $PY -c 'import PIL, numpy, fontTools' 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 lacks PIL, numpy or fontTools (scripts/setup.sh installs python3-pil, python3-numpy, python3-fonttools)"
  exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0

"$PY" - "$T" <<'EOF' || { echo "FAIL: cannot write the test sources"; exit 1; }
import gzip, os, struct, sys
from PIL import Image
d = sys.argv[1]
def put(rel, text):
    p = os.path.join(d, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, "w").write(text)
def img(rel, color=(200, 10, 10)):
    p = os.path.join(d, rel); os.makedirs(os.path.dirname(p), exist_ok=True)
    Image.new("RGB", (8, 8), color).save(p)
# image folders: no class folders; a test split whose only image does not decode
os.makedirs(d + "/noclass/train"); os.makedirs(d + "/noclass/test")
img("undecodable/train/cat/a.png"); put("undecodable/test/cat/b.png", "not an image")
# CUB: images/ missing; an image id 0; a malformed line; no entries; only train classes
for name, images, labels in [("cub_noimg", "1 001.A/a.png\n", "1 1\n"),
                             ("cub_id0", "0 001.A/a.png\n", "0 1\n"),
                             ("cub_line", "1\n", "1 1\n"),
                             ("cub_empty", "# nothing\n", "1 1\n"),
                             ("cub_notest", "1 001.A/a.png\n", "1 1\n")]:
    put(name + "/images.txt", images); put(name + "/image_class_labels.txt", labels)
    if name != "cub_noimg": img(name + "/images/001.A/a.png")
# Cars: a header without 'class'; a short line; a header only; only train classes
put("cars_hdr/cars_annos.csv", "relative_im_path,label\na.png,1\n")
put("cars_short/cars_annos.csv", "a.png\n")
put("cars_none/cars_annos.csv", "relative_im_path,class\n")
put("cars_notest/cars_annos.csv", "relative_im_path,class\na.png,1\n"); img("cars_notest/a.png")
# SOP: no Ebay_train.txt; a malformed line; class_id 0; a header only
os.makedirs(d + "/sop_none")
put("sop_line/Ebay_train.txt", "image_id class_id super_class_id path\n1 1 1\n")
put("sop_class0/Ebay_train.txt", "image_id class_id super_class_id path\n1 0 1 a/b_0.JPG\n")
put("sop_empty/Ebay_train.txt", "image_id class_id super_class_id path\n")
# Fashion-MNIST IDX files (gzip): a valid pair per split, then one fault per directory
def idx(path, magic, dims, data=b"", raw=None):
    body = raw if raw is not None else struct.pack(">I", magic) + b"".join(struct.pack(">I", x) for x in dims) + data
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wb") as f: f.write(body)
def fm(name, tr=(4, 2, 2), te=(3, 2, 2), trl=None, tel=None, extra=b""):
    trl = trl if trl is not None else [i % 10 for i in range(tr[0])]
    tel = tel if tel is not None else [i % 10 for i in range(te[0])]
    idx(f"{d}/{name}/train-images-idx3-ubyte.gz", 0x803, tr, bytes(tr[0] * tr[1] * tr[2]) + extra)
    idx(f"{d}/{name}/train-labels-idx1-ubyte.gz", 0x801, [len(trl)], bytes(trl))
    idx(f"{d}/{name}/t10k-images-idx3-ubyte.gz", 0x803, te, bytes(te[0] * te[1] * te[2]))
    idx(f"{d}/{name}/t10k-labels-idx1-ubyte.gz", 0x801, [len(tel)], bytes(tel))
fm("fm_long", extra=b"\0")
fm("fm_count", trl=[0, 1, 2])
fm("fm_label", trl=[0, 1, 12, 3])
fm("fm_size", te=(3, 3, 3))
fm("fm_seen_only", trl=[5, 6, 7, 8])                    # zeroshot: no train rows of classes 0-4
fm("fm_dim0"); idx(d + "/fm_dim0/train-images-idx3-ubyte.gz", 0x803, [4, 0, 2])
fm("fm_huge"); idx(d + "/fm_huge/train-images-idx3-ubyte.gz", 0x803, [100000000, 100000000, 1])
fm("fm_gzip")
g = bytearray(gzip.compress(bytes(32), mtime=0))
g[10] = 0xFF                                            # the first deflate block: type 3, which does not exist
open(d + "/fm_gzip/train-images-idx3-ubyte.gz", "wb").write(bytes(g))
# fonts: a bitmap font (BDF); a collection whose second face is damaged; ideographs without outlines
rows = "".join("FF\n" for _ in range(8))
put("fonts/bitmap.bdf", "STARTFONT 2.1\nFONT -misc-test-medium-r-normal--8-80-75-75-c-80-iso10646-1\nSIZE 8 75 75\n"
    "FONTBOUNDINGBOX 8 8 0 0\nSTARTPROPERTIES 2\nFONT_ASCENT 8\nFONT_DESCENT 0\nENDPROPERTIES\nCHARS 1\n"
    "STARTCHAR A\nENCODING 65\nSWIDTH 500 0\nDWIDTH 8 0\nBBX 8 8 0 0\nBITMAP\n" + rows + "ENDCHAR\nENDFONT\n")
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont
def font(path, outline):
    names = [".notdef"] + ["g%d" % i for i in range(4)]
    fb = FontBuilder(1000, isTTF=True)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({0x4E00 + i: "g%d" % i for i in range(4)})
    glyphs = {}
    for n in names:
        pen = TTGlyphPen(None)
        if outline:
            pen.moveTo((100, 0)); pen.lineTo((100, 700)); pen.lineTo((600, 700)); pen.closePath()
        glyphs[n] = pen.glyph()
    fb.setupGlyf(glyphs)
    fb.setupHorizontalMetrics({n: (700, 0) for n in names})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": "Test", "styleName": "Regular"})
    fb.setupOS2(); fb.setupPost(); fb.save(path)
font(d + "/fonts/empty.ttf", False)
font(d + "/fonts/solid.ttf", True)
c = TTCollection(); c.fonts = [TTFont(d + "/fonts/solid.ttf"), TTFont(d + "/fonts/solid.ttf")]
c.save(d + "/fonts/two.ttc")
b = bytearray(open(d + "/fonts/two.ttc", "rb").read())
b[16:20] = struct.pack(">I", len(b) + 4096)            # the second face's offset: beyond the end
open(d + "/fonts/two.ttc", "wb").write(bytes(b))
os.makedirs(d + "/nofonts")
EOF

# refused LABEL PATTERN ARGS...: exit 2, one error line matching PATTERN, no output file
# (besides "note:" lines, which name the default fonts not installed, and
# "skipped" lines, which name the images --on-error skip leaves out)
refused() {
  local label=$1 pat=$2
  shift 2
  rm -f "$T/out.h5"
  "$BIN" data "$@" >"$T/stdout" 2>"$T/stderr"
  local rc=$?
  if [ $rc -ne 2 ] || [ "$(grep -vEc '^(note:|skipped) ' "$T/stderr")" -ne 1 ] || ! grep -qE -- "$pat" "$T/stderr"; then
    echo "FAIL $label: exit $rc (want 2), want one line matching /$pat/, got:"; cat "$T/stderr"; fails=$((fails + 1))
  elif [ -e "$T/out.h5" ]; then echo "FAIL $label: left an output file"; fails=$((fails + 1))
  else echo "ok   $label: $(grep -vE '^(note:|skipped) ' "$T/stderr" | cut -c1-150)"; fi
}
O=$T/out.h5
# --- image folders, CUB, Cars196, SOP
refused "folder without class folders" "noclass/train: no class folders in it" folder "$T/noclass" "$O"
refused "a split with no decodable image" "out.h5: every image of the test split failed to decode" \
  folder "$T/undecodable" "$O" --on-error skip --progress-every 0
refused "CUB root missing"      "nope: no such directory$"                  cub "$T/nope" "$O"
refused "CUB without images/"   "cub_noimg/images: no such directory \(the CUB images\)" cub "$T/cub_noimg" "$O"
refused "CUB image id 0"        "cub_id0/images.txt: image id 0 out of range" cub "$T/cub_id0" "$O"
refused "CUB malformed line"    "cub_line/images.txt:1: expected '<id> <value>', got '1'" cub "$T/cub_line" "$O"
refused "CUB no entries"        "cub_empty/images.txt: no entries"          cub "$T/cub_empty" "$O"
refused "CUB no test classes"   "out.h5: the test split has no images"      cub "$T/cub_notest" "$O" --progress-every 0
refused "Cars root missing"     "nope: no such directory$"                  cars "$T/nope" "$O"
refused "Cars without annotations" "cars_hdr/nope.csv: cannot open \(No such file or directory\); export cars_annos.mat" \
  cars "$T/cars_hdr" "$O" --annos "$T/cars_hdr/nope.csv"
refused "Cars header without class" "cars_annos.csv:1: the header needs the columns relative_im_path and class" cars "$T/cars_hdr" "$O"
refused "Cars short line"       "cars_annos.csv:1: expected relative_im_path,class" cars "$T/cars_short" "$O"
refused "Cars header only"      "cars_none/cars_annos.csv: no annotations"  cars "$T/cars_none" "$O"
refused "Cars no test classes"  "out.h5: the test split has no images"      cars "$T/cars_notest" "$O" --progress-every 0
refused "SOP root missing"      "nope: no such directory$"                  sop "$T/nope" "$O"
refused "SOP without Ebay_train.txt" "sop_none/Ebay_train.txt: cannot open \(No such file or directory\)" sop "$T/sop_none" "$O"
refused "SOP malformed line"    "Ebay_train.txt:2: expected 'image_id class_id super_class_id path'" sop "$T/sop_line" "$O"
refused "SOP class_id 0"        "Ebay_train.txt:2: class_id 0 out of range" sop "$T/sop_class0" "$O"
refused "SOP header only"       "sop_empty/Ebay_train.txt: no images listed" sop "$T/sop_empty" "$O"
# --- features: a class-names file that is not there
"$PY" -c "import numpy as np, sys; np.save(sys.argv[1] + '/x.npy', np.ones((4, 2), np.float32)); np.save(sys.argv[1] + '/y.npy', np.arange(4) % 2)" "$T"
refused "features, missing class names" "names.txt: cannot open \(No such file or directory\)" features "$O" \
  --train-x "$T/x.npy" --train-y "$T/y.npy" --test-x "$T/x.npy" --test-y "$T/y.npy" --class-names "$T/names.txt"
# --- Fashion-MNIST IDX files
fm() { local label=$1 pat=$2 dir=$3; shift 3; refused "$label" "$pat" fashion-mnist "$O" --idx-dir "$T/$dir" "${@:---protocol=seen}"; }
fm "IDX corrupt gzip"     "train-images-idx3-ubyte.gz: corrupt gzip data in the header \(invalid block type\)" fm_gzip
fm "IDX dimension 0"      "train-images-idx3-ubyte.gz: implausible dimension 1 = 0 in the header" fm_dim0
fm "IDX 10^16 values"     "train-images-idx3-ubyte.gz: the header announces more than 2\^34 values" fm_huge
fm "IDX longer than its header" "train-images-idx3-ubyte.gz: more bytes than the header announces \(16 values\)" fm_long
fm "IDX label count"      "train-labels-idx1-ubyte.gz: 3 labels but .*train-images-idx3-ubyte.gz has 4 images" fm_count
fm "IDX label 12"         "train-labels-idx1-ubyte.gz: label 12 at row 2, Fashion-MNIST has classes 0-9" fm_label
fm "IDX image sizes differ" "fm_size: train images are 2 x 2 but t10k images are 3 x 3" fm_size
fm "zeroshot without train classes" "fm_seen_only: the train split would be empty" fm_seen_only --protocol zeroshot
# --- glyph fonts
F=$T/fonts
refused "fonts list empty"      "^proxygml data glyphs: --fonts is empty$"  glyphs "$O" --fonts " , "
refused "font face index"       "font 'solid.ttf#x': '#x' is not a face index" glyphs "$O" --fonts "solid.ttf#x" --font-dir "$F"
refused "font empty file name"  "font '#0': empty file name"                glyphs "$O" --fonts "#0" --font-dir "$F"
refused "bitmap font"           "bitmap.bdf: face 0 is a bitmap font \(scalable outlines needed\)" glyphs "$O" --fonts "$F/bitmap.bdf"
refused "damaged face of a collection" "two.ttc: face 1 cannot be loaded by FreeType \(of 2\)" glyphs "$O" --fonts "$F/two.ttc"
refused "ideographs without outlines" "only 0 of the 4 common characters have an outline in every face; 2 needed" \
  glyphs "$O" --fonts "$F/empty.ttf" --train-classes 1 --test-classes 1
refused "no default font installed" "no usable font among the [0-9]+ given \(install e.g. fonts-noto-cjk" \
  glyphs "$O" --font-dir "$T/nofonts"

[ "$fails" = 0 ] && echo "OK" || echo "$fails failure(s)"
[ "$fails" = 0 ]
