#!/usr/bin/env bash
# proxygml check-loss on the golden files, ProxyGML's and the baselines' (exit
# 0), on perturbed copies (exit 1) and on bad input (exit 2, one line naming
# the problem).
set -u
BIN=${PROXYGML_BIN:?}
DATA=${PROXYGML_TESTDATA:?}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() {   # expect CODE DESCRIPTION CMD...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL $what: exit $rc, want $want"; cat "$tmp/out" "$tmp/err" | tail -5; fail=1
  elif [ "$want" -eq 2 ] && [ "$(wc -l <"$tmp/err")" -ne 1 ]; then
    echo "FAIL $what: want one error line, got:"; cat "$tmp/err"; fail=1
  else
    echo "ok   $what${2:+}: $(tail -1 "$tmp/err" "$tmp/out" 2>/dev/null | grep -v '^==>' | grep . | tail -1)"
  fi
}

expect 0 "all golden files, float32" "$BIN" check-loss "$DATA"/loss_*.h5
expect 0 "all golden files, float64 reference" "$BIN" check-loss --ref "$DATA"/loss_tiny.h5 "$DATA"/loss_scale20.h5 "$DATA"/loss_k_lt_n.h5

expect 0 "all baseline golden files, float32" "$BIN" check-loss "$DATA"/baselines/*.h5
expect 0 "all baseline golden files, float64 reference" "$BIN" check-loss --ref "$DATA"/baselines/*.h5
# the loss and its hyper-parameters come from the file: each file names its loss
for f in "$DATA"/baselines/*.h5; do
  want=$(basename "$f" | sed 's/_tiny.*//; s/_medium.*//; s/proxy_nca/proxynca/; s/proxy_anchor/proxyanchor/; s/soft_triple/softtriple/; s/normalized_softmax/normsoftmax/')
  "$BIN" check-loss "$f" | head -1 | grep -q ": $want " || { echo "FAIL $f is not checked as $want"; fail=1; }
done
"$BIN" check-loss "$DATA"/baselines/proxy_nca_tiny_scale10.h5 | head -1 | grep -q "scale=10 " ||
  { echo "FAIL softmax_scale is not read from the file"; fail=1; }

# variants of the baseline files
$PY - "$DATA/baselines" "$tmp" <<'PYEOF'
import sys, shutil, h5py, numpy as np
src, out = sys.argv[1], sys.argv[2]
def variant(base, name, fn):
    shutil.copy(f"{src}/{base}.h5", f"{out}/{name}.h5")
    with h5py.File(f"{out}/{name}.h5", "r+") as f:
        fn(f)
def perturb(f):
    g = f["grad_proxies"][()]; g[0, 0] += 1e-2 * np.abs(g).max(); f["grad_proxies"][...] = g
variant("soft_triple_medium", "st_perturbed_grad", perturb)
# another hyper-parameter than the expected values were computed with
variant("proxy_anchor_tiny", "pa_other_alpha", lambda f: f.attrs.__setitem__("alpha", 16.0))
variant("normalized_softmax_tiny", "ns_unknown_loss", lambda f: f.attrs.__setitem__("loss_name", "ArcFaceLoss"))
variant("proxy_nca_tiny", "nca_no_scale", lambda f: f.attrs.__delitem__("softmax_scale"))
# malformed attributes of a baseline file, one each
variant("proxy_anchor_tiny", "pa_margin_out", lambda f: f.attrs.__setitem__("margin", 2.0))
variant("proxy_nca_tiny", "nca_c_zero", lambda f: f.attrs.__setitem__("C", 0))
variant("soft_triple_tiny", "st_no_centres", lambda f: f.attrs.__setitem__("centers_per_class", 0))
variant("normalized_softmax_tiny", "ns_bad_layout", lambda f: f.attrs.__setitem__("proxies_layout", "M by D"))
PYEOF
expect 1 "baseline: perturbed gradient" "$BIN" check-loss "$tmp/st_perturbed_grad.h5"
expect 1 "baseline: other alpha" "$BIN" check-loss "$tmp/pa_other_alpha.h5"
expect 2 "baseline: unknown loss_name" "$BIN" check-loss "$tmp/ns_unknown_loss.h5"
expect 2 "baseline: missing hyper-parameter" "$BIN" check-loss "$tmp/nca_no_scale.h5"
base_refused() {   # base_refused VARIANT MESSAGE: exit 2 and the one line ends with MESSAGE
  expect 2 "baseline: $1" "$BIN" check-loss "$tmp/$1.h5"
  grep -qF -- "$2" "$tmp/err" && [ "$(tail -c "$((${#2} + 1))" "$tmp/err")" = "$2" ] ||
    { echo "FAIL $1: want the message '$2', got: $(cat "$tmp/err")"; fail=1; }
}
base_refused pa_margin_out "attribute margin=2 outside [-1, 1]"
base_refused nca_c_zero    "attribute C=0 outside [1, 2^24]"
base_refused st_no_centres "attribute centers_per_class=0 outside [1, 2^26 / C]"
base_refused ns_bad_layout "attribute proxies_layout='M by D': expected 'C x D ...' or 'D x ...'"

# variants of a golden file, written by h5py under Debian's interpreter
$PY - "$DATA/loss_lam05.h5" "$tmp" <<'PYEOF'
import sys, shutil, h5py, numpy as np
src, out = sys.argv[1], sys.argv[2]
def variant(name, fn):
    shutil.copy(src, f"{out}/{name}.h5")
    with h5py.File(f"{out}/{name}.h5", "r+") as f:
        fn(f)
def perturb(f):
    g = f["grad_proxies"][()]; g[0, 0] += 1e-2 * np.abs(g).max(); f["grad_proxies"][...] = g
def swap_loss(f):
    v = f["loss"][()]; del f["loss"]; f["loss"] = v * 1.001
variant("perturbed_grad", perturb)
variant("perturbed_loss", swap_loss)
variant("missing_labels", lambda f: f.__delitem__("labels"))
def bad_labels(f):
    y = f["labels"][()]; y[3] = f.attrs["C"]; f["labels"][...] = y
variant("label_out_of_range", bad_labels)
def nan_x(f):
    x = f["x_raw"][()]; x[1, 2] = np.nan; f["x_raw"][...] = x
variant("nan_input", nan_x)
def big_k(f):
    f.attrs["K"] = f.attrs["C"] * f.attrs["N"] + 1
variant("k_too_large", big_k)
variant("k_zero", lambda f: f.attrs.__setitem__("K", 0))
def wrong_shape(f):
    p = f["proxies"][()]; del f["proxies"]; f["proxies"] = p[:, :-1]
variant("wrong_shape", wrong_shape)
variant("c_zero", lambda f: f.attrs.__setitem__("C", 0))
def r_only(f, r):
    del f.attrs["K"]; f.attrs["r"] = r
variant("r_too_large", lambda f: r_only(f, 1.5))
variant("r_ok", lambda f: r_only(f, 0.25))                 # K = ceil(0.25 * 24) = 6, as the file's K
def no_k(f):
    del f.attrs["K"]; del f.attrs["r"]
variant("no_k", no_k)
variant("lambda_negative", lambda f: f.attrs.__setitem__("lambda", -1.0))
variant("scale_zero", lambda f: f.attrs.__setitem__("scale", 0.0))
def x_1d(f):
    x = f["x_raw"][()]; del f["x_raw"]; f["x_raw"] = x.ravel()
variant("x_1d", x_1d)
def labels_short(f):
    y = f["labels"][()]; del f["labels"]; f["labels"] = y[:-1]
variant("labels_short", labels_short)
def inf_proxies(f):
    p = f["proxies"][()]; p[2, 5] = np.inf; f["proxies"][...] = p
variant("inf_proxies", inf_proxies)
PYEOF
[ -f "$tmp/perturbed_grad.h5" ] || { echo "FAIL could not write variants with h5py"; exit 1; }
expect 1 "perturbed gradient" "$BIN" check-loss "$tmp/perturbed_grad.h5"
expect 1 "perturbed loss" "$BIN" check-loss "$tmp/perturbed_loss.h5"
expect 2 "missing labels" "$BIN" check-loss "$tmp/missing_labels.h5"
expect 2 "label >= C" "$BIN" check-loss "$tmp/label_out_of_range.h5"
expect 2 "NaN in x_raw" "$BIN" check-loss "$tmp/nan_input.h5"
expect 2 "K > C*N" "$BIN" check-loss "$tmp/k_too_large.h5"
expect 2 "K = 0" "$BIN" check-loss "$tmp/k_zero.h5"
expect 2 "wrong proxies shape" "$BIN" check-loss "$tmp/wrong_shape.h5"
expect 2 "missing file" "$BIN" check-loss "$tmp/nope.h5"
expect 0 "K from the attribute r" "$BIN" check-loss "$tmp/r_ok.h5"
# each malformed attribute or dataset: exit 2 and the line that names it
refused() {   # refused VARIANT MESSAGE: the one line ends with MESSAGE
  expect 2 "$1" "$BIN" check-loss "$tmp/$1.h5"
  grep -qF -- "$2" "$tmp/err" && [ "$(tail -c "$((${#2} + 1))" "$tmp/err")" = "$2" ] ||
    { echo "FAIL $1: want the message '$2', got: $(cat "$tmp/err")"; fail=1; }
}
refused c_zero          "C=0, N=3: both must be >= 1"
refused r_too_large     "attribute r=1.5 outside (0, 1]"
refused no_k            "neither attribute 'K' nor 'r' is present"
refused lambda_negative "attribute lambda=-1 must be >= 0"
refused scale_zero      "attribute scale=0 must be > 0"
refused x_1d            "dataset 'x_raw' must be B x D with B, D >= 1"
refused labels_short    "dataset 'labels' must have B=16 entries"
refused inf_proxies     "dataset 'proxies' holds NaN or Inf"
head -c 4096 /dev/urandom >"$tmp/garbage.h5"
expect 2 "not an HDF5 file" "$BIN" check-loss "$tmp/garbage.h5"
expect 2 "no file given" "$BIN" check-loss
# messages name the problem
"$BIN" check-loss "$tmp/label_out_of_range.h5" 2>&1 | grep -q "labels\[3\]" || { echo "FAIL label message does not name labels[3]"; fail=1; }
"$BIN" check-loss "$tmp/k_too_large.h5" 2>&1 | grep -q "K=" || { echo "FAIL K message does not name K"; fail=1; }
exit $fail
