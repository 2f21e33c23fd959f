#!/usr/bin/env bash
# test_train_refusals.sh: proxygml train on a small real dataset against the
# refusals test_train.sh and test_resume.sh leave out: a dataset whose splits
# disagree or that is damaged, sizes that do not fit the test split or the
# ranks (2 and 3 ranks under mpirun), init_from files that hold a NaN, a
# wrong shape or nothing to start from, order_from that is missing, run
# directories of another experiment or of no proxygml run, and checkpoints
# whose counters disagree or whose payload is gone. Each: exit 2, one line
# that names the fault, and no run file that claims success.
set -u
BIN=${PROXYGML_BIN:?}
SRC=${PROXYGML_SRC:?}
PY=/usr/bin/python3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T" || exit 1
fails=0
TO="timeout 120"
CFG="$SRC/experiments/fmnist_mlp.cfg"

# small.h5: 6 features, 40 train rows and 20 test rows of 4 classes
"$PY" - <<'EOF' || { echo "FAIL: cannot write the sources"; exit 1; }
import gzip, os, struct, numpy as np
r = np.random.default_rng(0)
np.save("xtr.npy", r.normal(size=(40, 6)).astype(np.float32)); np.save("ytr.npy", np.arange(40) % 4)
np.save("xte.npy", r.normal(size=(20, 6)).astype(np.float32)); np.save("yte.npy", np.arange(20) % 4)
np.save("xte1.npy", r.normal(size=(1, 6)).astype(np.float32)); np.save("yte1.npy", np.zeros(1, np.int64))
# one training label at the converter's limit 2^24 - 1: with C = 0 the classes
# come from the labels, and C*N overflows an int only there, past the config check
y = np.arange(40) % 4; y[0] = 2 ** 24 - 1; np.save("ytop.npy", y)
np.save("xte2.npy", r.normal(size=(2, 6)).astype(np.float32)); np.save("yte2.npy", np.arange(2))
# Fashion-MNIST IDX files of 2 x 2 images: too small for the cnn
os.makedirs("idx")
def idx(name, magic, dims, data):
    with gzip.open("idx/" + name, "wb") as f:
        f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", x) for x in dims) + data)
for p, n in (("train", 8), ("t10k", 4)):
    idx(p + "-images-idx3-ubyte.gz", 0x803, [n, 2, 2], bytes(range(4 * n)))
    idx(p + "-labels-idx1-ubyte.gz", 0x801, [n], bytes(i % 4 for i in range(n)))
EOF
D=(--train-x xtr.npy --train-y ytr.npy)
"$BIN" data features small.h5 "${D[@]}" --test-x xte.npy --test-y yte.npy >/dev/null &&
"$BIN" data features test1.h5 "${D[@]}" --test-x xte1.npy --test-y yte1.npy >/dev/null &&
"$BIN" data features test2.h5 "${D[@]}" --test-x xte2.npy --test-y yte2.npy >/dev/null &&
"$BIN" data fashion-mnist tiny_images.h5 --idx-dir idx --protocol seen >/dev/null ||
  { echo "FAIL: cannot convert the sources"; exit 1; }
"$BIN" data features toplabel.h5 --train-x xtr.npy --train-y ytop.npy --test-x xte.npy --test-y yte.npy >/dev/null ||
  { echo "FAIL: cannot convert the sources"; exit 1; }
S=(--set data=small.h5 --set C=4 --set N=2 --set batch=8 --set recall_ks=1 --set epochs=1 --set kmeans_restarts=1)

# refused LABEL PATTERN ARGS...: exit 2, one line matching PATTERN, no run file of status complete
refused() {
  local label=$1 pat=$2
  shift 2
  rm -rf bad
  $TO "$@" >out.txt 2>err.txt
  local rc=$?
  if [ $rc -ne 2 ] || [ "$(grep -c . err.txt)" -ne 1 ] || ! grep -qE -- "$pat" err.txt; then
    echo "FAIL $label: exit $rc (want 2), want one line matching /$pat/, got:"; cat err.txt; tail -3 out.txt
    fails=$((fails + 1))
  elif [ -f bad/run.h5 ] && "$PY" -c "import h5py, sys; sys.exit(h5py.File('bad/run.h5', 'r').attrs['status'] != 'complete')"; then
    echo "FAIL $label: left a complete run file"; fails=$((fails + 1))
  else echo "ok   $label: $(cut -c1-170 err.txt)"; fi
}
train() { refused "$1" "$2" "$BIN" train --config "$CFG" "${S[@]}" --out bad "${@:3}"; }
# mpi_refused LABEL PATTERN NP ARGS...: the same under mpirun, which adds its own lines about the exit:
# exit 2 and one line of proxygml's, from rank 0
mpi_refused() {
  local label=$1 pat=$2 np=$3
  shift 3
  $TO mpirun --timeout 100 -np "$np" --bind-to none "$BIN" train --config "$CFG" "${S[@]}" --out bad "$@" >out.txt 2>err.txt
  local rc=$?
  if [ $rc -ne 2 ] || [ "$(grep -c '^proxygml' err.txt)" -ne 1 ] || ! grep -qE -- "^proxygml train: \[rank 0\] $pat" err.txt; then
    echo "FAIL $label: exit $rc (want 2), want one line matching /$pat/, got:"; cat err.txt; fails=$((fails + 1))
  else echo "ok   $label: $(grep '^proxygml' err.txt)"; fi
}

# --- a run to start from, with a checkpoint after each of its 5 steps
$TO "$BIN" train --config "$CFG" "${S[@]}" --set eval_epochs=[] --set checkpoint_every=1 --out run >/dev/null 2>&1 ||
  { echo "FAIL: cannot train the reference run"; exit 1; }
"$PY" - <<'EOF' || { echo "FAIL: cannot write the damaged files"; exit 1; }
import h5py, numpy as np, shutil
def copy(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f: edit(f)
def replace(f, name, value):
    del f[name]; f[name] = value
copy("small.h5", "widths.h5", lambda f: replace(f, "test/features", f["test/features"][:, :4]))
copy("small.h5", "width0.h5", lambda f: replace(f, "train/features", np.zeros((40, 0), np.float32)))
copy("run/run.h5", "params_nan.h5", lambda f: f["model/parameters"].__setitem__(3, np.nan))
# a signature and a superblock that HDF5 cannot use, at the file's full length
b = bytearray(open("small.h5", "rb").read()); b[8:48] = b"\xff" * 40
open("superblock.h5", "wb").write(bytes(b))
# tensors by name, from the run's block: the mlp on 6 features, 8 proxies
p = h5py.File("run/run.h5", "r")["model/parameters"][()]
shapes = [("body.1.weight", (512, 6)), ("body.1.bias", (512,)), ("body.3.weight", (512, 512)), ("body.3.bias", (512,)),
          ("embedding.weight", (128, 512)), ("embedding.bias", (128,)), ("proxies", (8, 128))]
def named(path, edit):
    with h5py.File(path, "w") as f:
        off = 0
        for name, shape in shapes:
            n = int(np.prod(shape))
            f["params/" + name] = edit(name, p[off:off + n].reshape(shape).copy())
            off += n
        assert off == len(p)
named("named_body_nan.h5", lambda n, a: np.where(np.arange(a.size).reshape(a.shape) == 9, np.nan, a) if n == "body.3.weight" else a)
named("named_proxies.h5", lambda n, a: a[:4] if n == "proxies" else a)
EOF

# --- the dataset
train "splits of different widths" "widths.h5: train and test rows differ in kind or size" --set data=widths.h5
train "features of width 0" "width0.h5: /train/features has a bad width F = 0" --set data=width0.h5
train "C*N beyond an int" "config key 'N': C\*200 = 16777216\*200 proxies is out of range" --set data=toplabel.h5 \
  --set C=0 --set N=200
train "one test row" "test1.h5: the test split needs at least 2 rows for retrieval" --set data=test1.h5
train "a path below a file" "small.h5/x.h5: cannot read it: Not a directory" --set data=small.h5/x.h5
train "a damaged superblock" "superblock.h5: corrupt HDF5 file \(it has the HDF5 signature but cannot be opened\)" \
  --set data=superblock.h5
train "17 recall ks" "config key 'recall_ks': at most 16 values" --set recall_ks=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17
train "cnn on 2 x 2 images" "config key 'arch': tiny_images.h5 rows \(1 x 2 x 2\): " --set data=tiny_images.h5 --set arch=cnn
# --- sizes that depend on the rank count
mpi_refused "batch over 3 ranks" "config key 'batch': the global batch 8 does not divide over 3 ranks$" 3
mpi_refused "more ranks than test rows" "test2.h5: fewer test rows than ranks$" 3 --set batch=6 --set data=test2.h5
mpi_refused "sharded proxies, more ranks than classes" "config key 'shard_proxies': 4 classes cannot be sharded over 5 ranks \(one class or more each\)$" 5 --set batch=10 --set shard_proxies=1
train "the sampled regulariser, replicated" "config key 'reg_sampled': the sampled regulariser needs shard_proxies = 1" --set reg_sampled=1
train "dump_grads beyond one MPI message" "config key 'dump_grads': M x D = 2560000000 proxy values exceed one MPI message" --set C=1000000 --set N=20 --set dump_grads=1
train "sharded proxies of a baseline" "config key 'shard_proxies': only the proxygml loss shards its proxies \(loss = proxynca\)" --set loss=proxynca --set shard_proxies=1
# --- init_from and order_from
train "init_from, NaN in a run file" "init_from params_nan.h5: model/parameters holds a non-finite value at element 3" \
  --set init_from=params_nan.h5
train "init_from, NaN in a tensor" "init_from named_body_nan.h5: 'params/body.3.weight' holds a non-finite value at element 9" \
  --set init_from=named_body_nan.h5
train "init_from, proxies of another shape" "init_from named_proxies.h5: params/proxies must be M x D = 8 x 128" \
  --set init_from=named_proxies.h5
train "init_from, a dataset file" "init_from small.h5: neither model/parameters \(a run file\) nor params/" --set init_from=small.h5
train "order_from missing" "order_from nope.h5: no such file" --set order_from=nope.h5
# --- run directories
# (a directory in which no file can be created, even by root)
refused "output directory not writable" "output directory '/proc/self' is not writable: No such file or directory" \
  "$BIN" train --config "$CFG" "${S[@]}" --out /proc/self
# --- resuming into a directory
mkdir -p notrun && cp small.h5 notrun/run.h5
refused "resume into a file that is no run" "notrun/run.h5 has no config/config_hash: not a run file of proxygml" \
  "$BIN" train --config "$CFG" "${S[@]}" --out notrun --resume auto
refused "resume into another experiment" "run/run.h5 belongs to another experiment \(config hash [0-9a-f]{16}, this one [0-9a-f]{16}\)" \
  "$BIN" train --config "$CFG" "${S[@]}" --set N=3 --out run --resume auto
# checkpoints without the run file: counters that contradict each other, a payload that is gone
mkdir -p ck1/checkpoints ck2/checkpoints
cp run/checkpoints/step-000000003.h5 ck1/checkpoints/ && cp run/checkpoints/step-000000003.h5 ck2/checkpoints/
"$PY" -c "
import h5py
h5py.File('ck1/checkpoints/step-000000003.h5', 'r+').attrs['step_in_epoch'] = 1
del h5py.File('ck2/checkpoints/step-000000003.h5', 'r+')['params']"
refused "checkpoint counters disagree" "step-000000003.h5: epoch 1, step 1 of the epoch and step 3 do not fit 5 steps per epoch: corrupt" \
  "$BIN" train --config "$CFG" "${S[@]}" --out ck1 --resume auto
# (the warning about the broken checkpoint goes to stderr first: the refusal is the last line)
$TO "$BIN" train --config "$CFG" "${S[@]}" --out ck2 --resume auto >out.txt 2>err.txt
rc=$?
if [ $rc -eq 2 ] && grep -q "^warning: checkpoint ck2/checkpoints/step-000000003.h5 is truncated or corrupt" err.txt &&
   tail -1 err.txt | grep -q "every checkpoint in ck2/checkpoints is truncated or corrupt: move them away to start over$"; then
  echo "ok   every checkpoint broken: $(tail -1 err.txt)"
else echo "FAIL every checkpoint broken: exit $rc, stderr:"; cat err.txt; fails=$((fails + 1)); fi

[ "$fails" = 0 ] && echo "OK" || echo "$fails failure(s)"
[ "$fails" = 0 ]
