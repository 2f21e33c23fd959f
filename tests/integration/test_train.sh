#!/usr/bin/env bash
# proxygml train end to end on real Fashion-MNIST (a few steps), the run file
# it writes, and every kind of bad input: one clear line, a non-zero exit,
# no hang, and no run file that claims success.
set -u
BIN=${PROXYGML_BIN:?}
SRC=${PROXYGML_SRC:?}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
T="timeout 120"
"$BIN" data fashion-mnist "$tmp/fm.h5" --protocol seen >/dev/null || { echo "FAIL cannot convert Fashion-MNIST"; exit 1; }
CFG="$SRC/experiments/fmnist_mlp.cfg"
SMALL=(--set "data=$tmp/fm.h5" --set epochs=2 --set max_steps_per_epoch=40 --set eval_epochs=0,2 --set kmeans_restarts=1)

# --- a real run --------------------------------------------------------------
$T "$BIN" train --config "$CFG" "${SMALL[@]}" --out "$tmp/run" >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 0 ] || { echo "FAIL training exited $rc"; tail -5 "$tmp/log"; fail=1; }
grep -q "untrained" "$tmp/log" && grep -q "run file: $tmp/run/run.h5" "$tmp/log" || { echo "FAIL summary missing"; tail "$tmp/log"; fail=1; }
$PY - "$tmp/run/run.h5" <<'PYEOF' || fail=1
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
a = f.attrs
def check(cond, what):
    if not cond:
        print("FAIL run file:", what); sys.exit(1)
check(a["status"] == "complete", "status %r" % a["status"])
check(a["C"] == 10 and a["N"] == 4 and a["K"] == 10 and a["ranks"] == 1, "sizes")
check(a["steps_done"] == 80 and a["epochs_done"] == 2, "steps %d" % a["steps_done"])
for key in ("version", "command_line", "start_time", "end_time", "threads"):
    check(key in a, "attribute " + key)
c = f["config"].attrs
check(c["N"] == 4 and abs(c["r"] - 0.25) < 1e-12 and c["arch"] == "mlp", "config attributes")
m = f["metrics"]
check(list(m["epoch"][()]) == [0, 2], "metrics rows %s" % m["epoch"][()])
for col in ("loss", "loss_cls", "loss_reg", "lr", "proxy_lr", "recall_at_1", "recall_at_8", "map_at_r", "r_precision", "nmi", "train_seconds", "eval_seconds"):
    check(col in m, "metrics column " + col)
check(np.isnan(m["loss"][0]) and np.isfinite(m["loss"][1]), "epoch-0 loss is NaN, trained loss finite")
check(m["map_at_r"][1] > m["map_at_r"][0] + 0.05, "MAP@R did not improve: %s" % m["map_at_r"][()])
check(abs(m["loss"][1] - (m["loss_cls"][1] + 0.3 * m["loss_reg"][1])) < 1e-5, "loss = cls + lambda reg")
tr = f["trace/loss"][()]
check(tr.shape == (80,) and np.all(np.isfinite(tr)), "trace")
check(abs(tr[40:].mean() - m["loss"][1]) < 1e-4, "epoch loss is the mean of its steps")
e = f["embeddings/test"][()]
check(e.shape == (10000, 128) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5), "embeddings normalised")
lab = f["embeddings/labels"][()]
check(lab.shape == (10000,) and lab.min() == 0 and lab.max() == 9, "labels")
check(f["proxies/values"].shape == (40, 128) and list(f["proxies/classes"][()][:5]) == [0, 0, 0, 0, 1], "proxies")
check(f["subgraph/proxies"].shape == (10000, 10) and f["proxies/selection_count"][()].sum() == 100000, "subgraphs")
check(f["model/parameters"].shape == (a["n_params"],), "parameters")
check(np.array_equal(f["model/parameters"][()][-40 * 128:].reshape(40, 128), f["proxies/values"][()]), "proxies are the block's tail")
t = f["timing"]
for col in ("data", "forward", "loss", "backward", "allreduce", "optimizer", "evaluation", "samples_per_second"):
    check(col in t and len(t[col]) == 2, "timing column " + col)
print("ok   run file: status complete, %d metrics rows, MAP@R %.3f -> %.3f" % (len(m["epoch"]), m["map_at_r"][0], m["map_at_r"][1]))
PYEOF

# more test classes than nmi_max_clusters: one note, NMI NaN, the rest evaluated
$T "$BIN" train --config "$CFG" --set "data=$tmp/fm.h5" --set epochs=0 --set nmi_max_clusters=9 --out "$tmp/nonmi" \
  >"$tmp/log_nonmi" 2>&1 || { echo "FAIL nmi_max_clusters run"; tail -5 "$tmp/log_nonmi"; fail=1; }
grep -q "NMI is not computed (NaN): 10 test classes > nmi_max_clusters = 9" "$tmp/log_nonmi" ||
  { echo "FAIL no NMI note"; tail "$tmp/log_nonmi"; fail=1; }
$PY -c 'import sys, h5py, numpy as np; m = h5py.File(sys.argv[1], "r")["metrics"]
sys.exit(0 if np.isnan(m["nmi"][0]) and m["map_at_r"][0] > 0 else 1)' "$tmp/nonmi/run.h5" ||
  { echo "FAIL nmi_max_clusters: NMI not NaN or MAP@R missing"; fail=1; }

# warm-up truly freezes everything but the embedding layer and the proxies:
# after one warm-up epoch the body equals the initialisation (an epochs=0 run)
W=(--set "data=$tmp/fm.h5" --set max_steps_per_epoch=20 --set kmeans_restarts=1)
$T "$BIN" train --config "$CFG" "${W[@]}" --set epochs=0 --set eval_epochs=0 --out "$tmp/init" >/dev/null 2>&1 &&
$T "$BIN" train --config "$CFG" "${W[@]}" --set epochs=1 --set warm=1 --set eval_epochs=1 --out "$tmp/warm" >/dev/null 2>&1 ||
  { echo "FAIL warm-up runs"; fail=1; }
$PY - "$tmp/init/run.h5" "$tmp/warm/run.h5" <<'PYEOF' || fail=1
import sys, h5py, numpy as np
a, b = (h5py.File(p, "r") for p in sys.argv[1:3])
pa, pb = a["model/parameters"][()], b["model/parameters"][()]
head, prox = 128 * 512 + 128, 40 * 128          # embedding layer (weight + bias), proxies
body = len(pa) - head - prox
ok = a.attrs["status"] == "complete" and np.array_equal(pa[:body], pb[:body]) \
     and not np.array_equal(pa[body:body + head], pb[body:body + head]) and not np.array_equal(pa[-prox:], pb[-prox:])
print(("ok   " if ok else "FAIL ") + "warm-up epoch: body frozen bit for bit, embedding layer and proxies trained")
sys.exit(0 if ok else 1)
PYEOF

# init_from replaces the seeded initialisation, from a run file or from the
# same tensors by name (params/, as a PyTorch state_dict): the parameters and
# test embeddings of an epochs=0 run equal the trained source run's, bit for
# bit. order_from: a permutation inside each batch changes nothing but
# rounding, moving a batch changes the losses.
$PY - "$tmp/warm/run.h5" "$tmp/named.h5" "$tmp" <<'PYEOF' || { echo "FAIL writing init files"; fail=1; }
import sys, h5py, numpy as np
p = h5py.File(sys.argv[1], "r")["model/parameters"][()]
shapes = [("body.1.weight", (512, 784)), ("body.1.bias", (512,)), ("body.3.weight", (512, 512)), ("body.3.bias", (512,)),
          ("embedding.weight", (128, 512)), ("embedding.bias", (128,)), ("proxies", (40, 128))]
def write(path, edit=lambda name, a: a):
    with h5py.File(path, "w") as f:
        off = 0
        for name, shape in shapes:
            n = int(np.prod(shape))
            a = edit(name, p[off:off + n].reshape(shape).copy())
            if a is not None: f["params/" + name] = a
            off += n
        assert off == len(p)
write(sys.argv[2])
d = sys.argv[3]
write(d + "/named_transposed.h5", lambda n, a: a.T if n == "body.1.weight" else a)
write(d + "/named_missing.h5", lambda n, a: None if n == "body.3.bias" else a)
write(d + "/named_nan.h5", lambda n, a: np.where(np.arange(a.size).reshape(a.shape) == 7, np.nan, a) if n == "proxies" else a)
with h5py.File(d + "/named_extra.h5", "w") as f:
    for k, v in h5py.File(sys.argv[2], "r")["params"].items(): f["params/" + k] = v[()]
    f["params/body.5.weight"] = np.zeros((4, 4), np.float32)
with h5py.File(d + "/order_dup.h5", "w") as f:
    o = np.arange(60000, dtype=np.int32); o[17] = 3; f["order"] = o[None]
with h5py.File(d + "/order_short.h5", "w") as f:
    f["order"] = np.arange(1000, dtype=np.int32)[None]
P = np.random.default_rng(5).permutation(60000).astype(np.int32)
within = P.copy(); within[:64 * 3] = P[:64 * 3].reshape(3, 64)[:, ::-1].ravel()   # each batch reversed
moved = P.copy(); moved[:64], moved[64:128] = P[64:128], P[:64]                 # batches 1 and 2 swapped
with h5py.File(d + "/order_float.h5", "w") as f:
    f["order"] = P[None].astype(np.float64)
for name, o in (("order_a", P), ("order_within", within), ("order_moved", moved)):
    with h5py.File("%s/%s.h5" % (d, name), "w") as f: f["order"] = o[None]
PYEOF
$T "$BIN" train --config "$CFG" "${W[@]}" --set epochs=0 --set eval_epochs=0 --set "init_from=$tmp/warm/run.h5" \
  --out "$tmp/from_run" >/dev/null 2>&1 &&
$T "$BIN" train --config "$CFG" "${W[@]}" --set epochs=0 --set eval_epochs=0 --set "init_from=$tmp/named.h5" \
  --out "$tmp/from_named" >/dev/null 2>&1 || { echo "FAIL init_from runs"; fail=1; }
for o in order_a order_within order_moved; do
  $T "$BIN" train --config "$CFG" "${W[@]}" --set epochs=1 --set max_steps_per_epoch=3 --set eval_epochs=[] \
    --set "order_from=$tmp/$o.h5" --out "$tmp/$o" >/dev/null 2>&1 || { echo "FAIL order_from run $o"; fail=1; }
done
$PY - "$tmp" <<'PYEOF' || fail=1
import sys, h5py, numpy as np
d = sys.argv[1]
w, r, n, i = (h5py.File("%s/%s/run.h5" % (d, x), "r") for x in ("warm", "from_run", "from_named", "init"))
ok = True
for name, f in (("a run file", r), ("tensors by name", n)):
    good = np.array_equal(w["model/parameters"][()], f["model/parameters"][()]) and \
           np.array_equal(w["embeddings/test"][()], f["embeddings/test"][()]) and \
           not np.array_equal(i["model/parameters"][()], f["model/parameters"][()])
    print(("ok   " if good else "FAIL ") + "init_from %s: the source's parameters and test embeddings, bit for bit" % name)
    ok &= good
a, b, c = (h5py.File("%s/%s/run.h5" % (d, x), "r")["trace/loss"][()] for x in ("order_a", "order_within", "order_moved"))
within = np.max(np.abs(a - b) / a)
moved = abs(a[0] - c[0]) / a[0]
good = len(a) == 3 and within < 1e-5 and moved > 1e-3
print(("ok   " if good else "FAIL ") + "order_from: reordering inside batches changes the losses by %.1e, moving a batch by %.1e"
      % (within, moved))
sys.exit(0 if ok and good else 1)
PYEOF

# K <= N: every subgraph holds only the sample's own proxies, nothing is learnt: one warning line up front
$T "$BIN" train --config "$CFG" --set "data=$tmp/fm.h5" --set k=4 --set N=4 --set epochs=1 --set max_steps_per_epoch=2 \
  --set eval_epochs=[] --out "$tmp/k_le_n" >"$tmp/out" 2>"$tmp/err"
rc=$?
n=$(grep -c "^warning: K = 4 <= N = 4: .*classification loss is constant" "$tmp/out")
if [ $rc -eq 0 ] && [ "$n" = 1 ] && ! grep -q "warning: K = " "$tmp/log"; then echo "ok   K <= N: $(grep "warning: K" "$tmp/out")"
else echo "FAIL K <= N: exit $rc, $n warning lines (want 1; none for K = 10 > N = 4)"; cat "$tmp/out" "$tmp/err"; fail=1; fi

# an existing run is not clobbered
$T "$BIN" train --config "$CFG" "${SMALL[@]}" --out "$tmp/run" >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -ne 2 ] || ! grep -q "already exists" "$tmp/err"; then echo "FAIL rerun into an existing run: exit $rc"; cat "$tmp/err"; fail=1; else echo "ok   existing run.h5 is kept"; fi

# --- bad input -----------------------------------------------------------------
$PY - "$tmp" <<'PYEOF'
import sys, h5py, numpy as np
d = sys.argv[1]
src = h5py.File(d + "/fm.h5", "r")
def make(name, mutate):
    with h5py.File("%s/%s.h5" % (d, name), "w") as f:
        for k, v in src.attrs.items(): f.attrs[k] = v
        for split in ("train", "test"):
            g = f.create_group(split)
            for k, v in src[split].attrs.items(): g.attrs[k] = v
            n = 600 if split == "train" else 200
            g["images"] = src[split]["images"][:n]
            g["labels"] = src[split]["labels"][:n]
            g["class_names"] = src[split]["class_names"][()] if "class_names" in src[split] else src["class_names"][()]
        mutate(f)
def labels_out_of_range(f):
    y = f["train/labels"][()]; y[5] = 99; del f["train/labels"]; f["train/labels"] = y
def wrong_shape(f):
    y = f["train/labels"][()][:-3]; del f["train/labels"]; f["train/labels"] = y
def empty_split(f):
    del f["test/images"]; del f["test/labels"]
    f["test/images"] = np.zeros((0, 28, 28, 1), np.uint8); f["test/labels"] = np.zeros((0,), np.int32)
def nan_features(f):
    for split in ("train", "test"):
        x = f[split]["images"][()].reshape(len(f[split]["images"]), -1).astype(np.float32) / 255
        x[3, 7] = np.nan
        del f[split]["images"]; f[split]["features"] = x
def features(f):
    for split in ("train", "test"):
        x = f[split]["images"][()].reshape(len(f[split]["images"]), -1).astype(np.float32) / 255
        del f[split]["images"]; f[split]["features"] = x
try:
    make("labels_out_of_range", labels_out_of_range)
    make("wrong_shape", wrong_shape)
    make("empty_split", empty_split)
    make("nan_features", nan_features)
    make("features", features)
except Exception as e:
    print("note: could not build a bad dataset:", e)
PYEOF
head -c 100000 /dev/urandom >"$tmp/corrupt.h5"
head -c 1000000 "$tmp/fm.h5" >"$tmp/truncated.h5"
printf 'epochs = 1;\n# the next line misses a value\nlr = 0.1 +;\n' >"$tmp/syntax.cfg"
touch "$tmp/a_file"
bad() {   # bad DESCRIPTION PATTERN ARGS...: exit 2, one line matching PATTERN, no successful run file
  local what=$1 pat=$2; shift 2
  rm -rf "$tmp/bad"
  $T "$BIN" train --config "$CFG" --set epochs=1 --set max_steps_per_epoch=2 --out "$tmp/bad" "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ $rc -ne 2 ]; then echo "FAIL $what: exit $rc, want 2"; tail -3 "$tmp/out" "$tmp/err"; fail=1; return; fi
  if [ "$(grep -c . "$tmp/err")" -ne 1 ] || ! grep -qiE "$pat" "$tmp/err"; then
    echo "FAIL $what: want one line matching /$pat/, got:"; cat "$tmp/err"; fail=1; return; fi
  if [ -f "$tmp/bad/run.h5" ]; then echo "FAIL $what: left a run file"; fail=1; return; fi
  echo "ok   $what: $(cat "$tmp/err")"
}
bad "missing dataset"        "nope.h5: no such file"  --set data="$tmp/nope.h5"
bad "not an HDF5 file"       "corrupt.h5: not an HDF5 file"  --set data="$tmp/corrupt.h5"
bad "truncated dataset"      "truncated.h5: truncated HDF5 file"  --set data="$tmp/truncated.h5"
bad "config syntax error"    "syntax.cfg:3: syntax error, in: lr = 0.1 \+;"  --config "$tmp/syntax.cfg"
bad "cnn on features"        "config key 'arch': cnn needs images, but .*features.h5 holds feature vectors \(784 values per row\)" \
  --set data="$tmp/features.h5" --set arch=cnn
bad "recall_ks beyond the test split" "'recall_ks': k = 20000, but .* only 9999 other rows" --set data="$tmp/fm.h5" --set recall_ks=1,20000
bad "recall_ks empty"        "'recall_ks': give at least one k"  --set data="$tmp/fm.h5" --set recall_ks=
bad "labels out of range"    "label"                --set data="$tmp/labels_out_of_range.h5" --set C=10
bad "wrong shapes"           "labels|rows|shape"    --set data="$tmp/wrong_shape.h5"
bad "empty split"            "empty|no rows|test"   --set data="$tmp/empty_split.h5"
bad "NaN features"           "nan"                  --set data="$tmp/nan_features.h5" --set arch=linear
bad "unknown architecture"   "arch"                 --set data="$tmp/fm.h5" --set arch=resnet
bad "unknown key"            "unknown config key"   --set data="$tmp/fm.h5" --set lamda=0.3
bad "K = 0 (r = 0)"          "'r'"                  --set data="$tmp/fm.h5" --set r=0
bad "K > C*N"                "K"                    --set data="$tmp/fm.h5" --set k=41
bad "N = 0"                  "'N'"                  --set data="$tmp/fm.h5" --set N=0
bad "batch larger than split" "batch"               --set data="$tmp/fm.h5" --set batch=70000
bad "unwritable output dir"  "directory"            --set data="$tmp/fm.h5" --out "$tmp/a_file/sub"
bad "missing config file"    "nope.cfg|config"      --config "$tmp/nope.cfg"
bad "labels >= C"            "label"                --set data="$tmp/fm.h5" --set C=5
bad "init_from missing"      "init_from.*nope"      --set data="$tmp/fm.h5" --set init_from="$tmp/nope.h5"
bad "init_from, wrong shape" "body.1.weight.*784 x 512.*512 x 784" --set data="$tmp/fm.h5" --set init_from="$tmp/named_transposed.h5"
bad "init_from, missing tensor" "params/body.3.bias' is missing"     --set data="$tmp/fm.h5" --set init_from="$tmp/named_missing.h5"
bad "init_from, extra tensor" "body.5.weight is not a tensor of the mlp" --set data="$tmp/fm.h5" --set init_from="$tmp/named_extra.h5"
bad "init_from, NaN"         "proxies.*non-finite"  --set data="$tmp/fm.h5" --set init_from="$tmp/named_nan.h5"
bad "init_from, another model" "holds 735360 values" --set data="$tmp/fm.h5" --set init_from="$tmp/run/run.h5" --set N=5
bad "order_from, not a permutation" "permutation.*position 17" --set data="$tmp/fm.h5" --set order_from="$tmp/order_dup.h5"
bad "order_from, not integers" "order.*integers"  --set data="$tmp/fm.h5" --set order_from="$tmp/order_float.h5"
bad "order_from, wrong size" "order.*1 x 60000"     --set data="$tmp/fm.h5" --set order_from="$tmp/order_short.h5"
exit $fail
