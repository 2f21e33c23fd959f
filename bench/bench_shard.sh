#!/usr/bin/env bash
# Replicated against class-sharded proxies at a million classes
# (docs/sharding.md, "Measured"): the same training (Fashion-MNIST MLP,
# D = 128, N = 2, lambda = 0, global batch G) on P ranks, with C raised
# past the dataset's labels so that the loss carries C*N proxies; per mode
# and C, the peak memory per rank, the step time and the communication per
# step, measured in the same session; then the largest C each mode can
# train in the machine's memory, from a straight line through the two Cs
# (memory is affine in C: the proxies, their gradient and moments, and the
# similarity block all grow linearly).
#   bench/bench_shard.sh [--classes "250000 1000000"] [--np 2] [--batch 64] [--steps 6] [--k 100] [--mem-gib 24]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${PROXYGML_BIN:-$ROOT/build/proxygml}
PY=/usr/bin/python3
classes="250000 1000000" np=2 batch=64 steps=6 k=100 mem_gib=24
while [ $# -gt 0 ]; do
  case $1 in
    --classes) classes=$2; shift 2 ;;
    --np) np=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --k) k=$2; shift 2 ;;
    --mem-gib) mem_gib=$2; shift 2 ;;
    *) echo "bench_shard.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$BIN" data fashion-mnist "$tmp/fm.h5" --protocol seen >/dev/null
rows=()
for C in $classes; do
  for mode in 0 1; do
    out="$tmp/run_${C}_$mode"
    mpirun -np "$np" --bind-to none "$BIN" train \
      --config "$ROOT/experiments/fmnist_mlp.cfg" --set "data=$tmp/fm.h5" --set threads=1 --set eval_epochs= \
      --set C="$C" --set N=2 --set k="$k" --set lambda=0 --set batch="$batch" --set epochs=1 \
      --set max_steps_per_epoch="$steps" --set shard_proxies=$mode --out "$out" >"$out.log" 2>&1 \
      || { echo "C=$C shard_proxies=$mode failed:"; tail -3 "$out.log"; rows+=("$C $mode failed"); continue; }
    rows+=("$C $mode $out")
  done
done
$PY - "$np" "$batch" "$mem_gib" "${rows[@]}" <<'EOF'
import re
import sys

import h5py

P, G, mem_gib = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
print(f"{P} ranks, global batch {G}, N = 2, D = 128, lambda = 0 (the loss's proxies; the MLP adds 0.7 M parameters)\n")
print("| C | mode | peak memory per rank | step | communication per step per rank |")
print("|---|---|---|---|---|")
fit = {}
for row in sys.argv[4:]:
    C, mode, out = row.split(" ", 2)
    name = "sharded" if mode == "1" else "replicated"
    if out == "failed":
        print(f"| {int(C):,} | {name} | failed (out of memory?) | | |")
        continue
    f = h5py.File(out + "/run.h5", "r")
    rss = float(f.attrs["peak_rss_mib"])
    sps = f["timing/samples_per_second"][-1]
    log = open(out + ".log").read()
    m = re.search(r"communication: ([0-9.]+) MiB per step per rank \(([0-9.]+) MiB", log)
    comm = float(m.group(1)) if m else float("nan")
    print(f"| {int(C):,} | {name} | {rss / 1024:.2f} GiB | {G / sps:.3f} s | {comm:.3f} MiB |")
    fit.setdefault(name, []).append((int(C), rss, comm, G / sps))
print()
for name, pts in fit.items():
    if len(pts) < 2:
        continue
    (c0, m0, _, _), (c1, m1, _, _) = pts[0], pts[-1]
    slope = (m1 - m0) / (c1 - c0)
    cmax = (mem_gib * 1024 / P - m0) / slope + c0
    print(f"{name}: {slope * 1e6 / 1024:.2f} GiB per million classes per rank; with {P} ranks in {mem_gib:g} GiB: "
          f"C up to {cmax / 1e6:.2f} million")
if "sharded" in fit and "replicated" in fit:
    for (c, mr, cr, tr), (_, ms, cs, ts) in zip(fit["replicated"], fit["sharded"]):
        print(f"C = {c:,}: memory sharded/replicated {ms / mr:.2f}, bytes replicated/sharded {cr / cs:.0f}x, "
              f"step time sharded/replicated {ts / tr:.2f}")
EOF
