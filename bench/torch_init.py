#!/usr/bin/python3
"""torch_init.py: the starting point of a PyTorch baseline run, as files that
`proxygml train` reads, so that both sides start from the same parameters and
see the samples in the same order (a same-trajectory comparison instead of
one between two random initialisations).

  torch_init.py TORCH_SCRIPT OUT.h5 --arch mlp --seed 0 --C 10 --N 4 --r 0.25 \
                --epochs 3 --n-train 60000

TORCH_SCRIPT is the baseline training script (bench/torch_train.py). The
network and the loss come from its build(), which its main() uses too:
torch.manual_seed(seed), the network, then the loss (whose proxies are drawn
next); the epoch permutations come from a separate torch.Generator seeded
with seed, as in its training loop.

OUT.h5 holds
  params/<state_dict name>   every network tensor, PyTorch's shape
  params/proxies             M x D (the loss keeps them D x M: transposed)
  order                      epochs x n_train int32, epoch e's permutation
so that `--set init_from=OUT.h5 --set order_from=OUT.h5` reproduces the start.
(PyTorch also trains on the last partial batch of an epoch; proxygml drops
it, so the two agree up to that one batch per epoch.)
"""
import argparse
import importlib.util
import os


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("torch_script")
    ap.add_argument("out")
    ap.add_argument("--arch", choices=["mlp", "cnn"], required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--C", type=int, required=True)
    ap.add_argument("--N", type=int, required=True)
    ap.add_argument("--r", type=float, required=True)
    ap.add_argument("--lam", type=float, default=0.3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, required=True)
    ap.add_argument("--n-train", type=int, required=True)
    a = ap.parse_args()

    # one thread is plenty for drawing parameters; set before torch loads
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    spec = importlib.util.spec_from_file_location("torch_baseline", a.torch_script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import h5py
    import numpy as np
    import torch

    model, crit = mod.build(a)      # seeds, then the network, then the proxies
    gen = torch.Generator().manual_seed(a.seed)
    orders = np.stack([torch.randperm(a.n_train, generator=gen).numpy() for _ in range(a.epochs)])

    tmp = a.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        for name, t in model.state_dict().items():
            f["params/" + name] = t.detach().numpy().astype(np.float32)
        f["params/proxies"] = crit.proxies.detach().numpy().T.astype(np.float32)
        f["order"] = orders.astype(np.int32)
        f.attrs["source"] = "%s, arch %s, seed %d" % (os.path.basename(a.torch_script), a.arch, a.seed)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
