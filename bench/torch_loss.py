#!/usr/bin/python3
"""torch_loss.py: the PyTorch CPU baseline of `proxygml bench-loss`. Times one
forward + backward of the ProxyGML loss (bench/torch_proxygml.py) and prints
the median, the 10th and 90th percentiles and the minimum in milliseconds.

  bench/torch_loss.py --preset cub --threads 1
  bench/torch_loss.py --preset sop --impl onehot --reps 10
  bench/torch_loss.py --B 32 --D 512 --C 11318 --N 1 --r 0.05 --lam 0
  bench/torch_loss.py --check TESTDATA_DIR     # both impls against the golden loss_*.h5
  bench/torch_loss.py --preset cub --loss softtriple   # a baseline (bench/torch_baselines.py)

--impl fast is the cheap form (per-class sums by reshaping, regulariser as
W^T (W Y)); --impl onehot the structure of the published code (dense one-hot
products, the M x M proxy similarity matrix). They compute the same numbers.
A timed step clears the proxy gradient, runs the loss on an L2-normalised
batch and backpropagates to the embeddings and the raw proxies; a few
different batches are cycled so that the selection varies. The output ends
with the line `median_ms X  p10_ms X  p90_ms X  min_ms X  (...)`, which
bench/bench_loss.sh reads.
"""
import argparse
import glob
import os
import sys
import time

# the settings of the paper's benchmarks that the C side's presets share
PRESETS = {
    "cub": dict(B=32, D=512, C=100, N=12, r=0.05, lam=0.3),        # CUB-200: 1200 proxies
    "sop": dict(B=32, D=512, C=11318, N=1, r=0.05, lam=0.0),       # SOP: one proxy per class
    "bigbatch": dict(B=256, D=512, C=100, N=12, r=0.05, lam=0.3),  # CUB with 8x the batch
}
BATCHES = 8                     # distinct batches cycled through


def parse_args():
    ap = argparse.ArgumentParser(description="time the ProxyGML loss, forward + backward, in PyTorch on the CPU")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="overrides B, D, C, N, r and lam")
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--D", type=int, default=512)
    ap.add_argument("--C", type=int, default=100)
    ap.add_argument("--N", type=int, default=12)
    ap.add_argument("--r", type=float, default=0.05)
    ap.add_argument("--lam", type=float, default=0.3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--impl", choices=["fast", "onehot"], default="fast")
    ap.add_argument("--loss", choices=["proxygml", "proxynca", "proxyanchor", "softtriple", "normsoftmax"],
                    default="proxygml", help="a baseline: the preset's N is SoftTriple's centres, the others have 1")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=50, help="timed repetitions")
    ap.add_argument("--warmup", type=int, default=5, help="untimed repetitions first")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", metavar="TESTDATA_DIR",
                    help="instead of timing, compare both impls with the golden loss_*.h5 files there")
    a = ap.parse_args()
    if a.preset:
        vars(a).update(PRESETS[a.preset])
    return a


ARGS = parse_args()
# before torch loads: its OpenMP and BLAS read the thread counts once. Passive
# waiting stops idle OpenMP workers spinning against OpenBLAS's threads, which
# otherwise ruins the 2-thread timings on a 2-core machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_proxygml import ProxyGMLLoss  # noqa: E402
import torch_baselines  # noqa: E402

torch.set_num_threads(ARGS.threads)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass

CHECK_TOLERANCE = 1e-12         # float64 against float64 golden values
ONEHOT_MAX_PROXIES = 5000       # above this the dense M x M matrices only waste time


def check(folder):
    """Runs both impls in float64 on every golden file; exit status 0 when all
    of loss, loss_cls and both gradients agree within CHECK_TOLERANCE."""
    import h5py
    files = sorted(glob.glob(os.path.join(folder, "loss_*.h5")))
    if not files:
        sys.exit("torch_loss: no loss_*.h5 in %s" % folder)
    worst = 0.0
    for path in files:
        with h5py.File(path, "r") as f:
            at = f.attrs
            C, N, D = int(at["C"]), int(at["N"]), int(at["D"])
            r, lam, scale = float(at["r"]), float(at["lambda"]), float(at["scale"])
            x_raw = f["x_raw"][()].astype(np.float64)
            labels = torch.from_numpy(f["labels"][()].astype(np.int64))
            proxies = torch.from_numpy(f["proxies"][()].astype(np.float64))
            want = {k: f[k][()] for k in ("loss", "loss_cls", "grad_x_raw", "grad_proxies")}
        for impl in ("fast", "onehot"):
            if impl == "onehot" and C * N > ONEHOT_MAX_PROXIES:
                continue
            crit = ProxyGMLLoss(D, C, N, r, lam, scale, impl, torch.float64)
            with torch.no_grad():
                crit.proxies.copy_(proxies)
            x = torch.tensor(x_raw, requires_grad=True)
            loss, loss_cls, _ = crit(F.normalize(x, dim=1), labels)
            loss.backward()
            diff = max(abs(loss.item() - float(want["loss"])),
                       abs(loss_cls.item() - float(want["loss_cls"])),
                       float(np.abs(x.grad.numpy() - want["grad_x_raw"]).max()),
                       float(np.abs(crit.proxies.grad.numpy() - want["grad_proxies"]).max()))
            worst = max(worst, diff)
            print("%-28s %-6s max|diff| %.2e" % (os.path.basename(path), impl, diff))
    ok = worst < CHECK_TOLERANCE
    print("worst %.2e -> %s" % (worst, "OK" if ok else "MISMATCH"))
    sys.exit(0 if ok else 1)


def bench_baseline(a):
    """forward + backward of a baseline from raw embeddings (it normalises them, as the C code does)"""
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(a.seed)
    k = a.N if a.loss == "softtriple" else 1
    crit = torch_baselines.make(a.loss, a.D, a.C, k, dtype)
    gen = torch.Generator().manual_seed(a.seed)
    xs = [torch.randn(a.B, a.D, generator=gen, dtype=dtype) for _ in range(BATCHES)]
    ys = [torch.randint(0, a.C, (a.B,), generator=gen) for _ in range(BATCHES)]
    ms = []
    for rep in range(a.warmup + a.reps):
        x = xs[rep % BATCHES].clone().requires_grad_(True)
        t0 = time.perf_counter()
        crit.proxies.grad = None
        crit(x, ys[rep % BATCHES]).backward()
        elapsed = time.perf_counter() - t0
        if rep >= a.warmup:
            ms.append(1e3 * elapsed)
    ms = np.array(ms)
    print("config loss=%s B=%d D=%d C=%d k=%d dtype=%s threads=%d reps=%d"
          % (a.loss, a.B, a.D, a.C, k, a.dtype, a.threads, a.reps))
    print("median_ms %.3f  p10_ms %.3f  p90_ms %.3f  min_ms %.3f  (torch %s, %d threads, OMP_WAIT_POLICY=%s)"
          % (np.median(ms), np.percentile(ms, 10), np.percentile(ms, 90), ms.min(),
             torch.__version__, torch.get_num_threads(), os.environ["OMP_WAIT_POLICY"]))


def bench(a):
    if a.loss != "proxygml":
        return bench_baseline(a)
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(a.seed)
    crit = ProxyGMLLoss(a.D, a.C, a.N, a.r, a.lam, a.scale, a.impl, dtype)
    gen = torch.Generator().manual_seed(a.seed)
    xs = [F.normalize(torch.randn(a.B, a.D, generator=gen, dtype=dtype), dim=1) for _ in range(BATCHES)]
    ys = [torch.randint(0, a.C, (a.B,), generator=gen) for _ in range(BATCHES)]
    ms = []
    for rep in range(a.warmup + a.reps):
        x = xs[rep % BATCHES].clone().requires_grad_(True)   # a fresh leaf: its gradient starts empty
        t0 = time.perf_counter()
        crit.proxies.grad = None
        loss, _, _ = crit(x, ys[rep % BATCHES])
        loss.backward()
        elapsed = time.perf_counter() - t0
        if rep >= a.warmup:
            ms.append(1e3 * elapsed)
    ms = np.array(ms)
    print("config B=%d D=%d C=%d N=%d K=%d r=%g lambda=%g scale=%g dtype=%s impl=%s threads=%d reps=%d"
          % (a.B, a.D, a.C, a.N, crit.K, a.r, a.lam, a.scale, a.dtype, a.impl, a.threads, a.reps))
    print("median_ms %.3f  p10_ms %.3f  p90_ms %.3f  min_ms %.3f  (torch %s, %d threads, OMP_WAIT_POLICY=%s)"
          % (np.median(ms), np.percentile(ms, 10), np.percentile(ms, 90), ms.min(),
             torch.__version__, torch.get_num_threads(), os.environ["OMP_WAIT_POLICY"]))


if __name__ == "__main__":
    if ARGS.check:
        check(ARGS.check)
    else:
        bench(ARGS)
