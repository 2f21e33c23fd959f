#!/usr/bin/python3
"""torch_train.py: the PyTorch CPU baseline of `proxygml train`. Trains the
MLP or the CNN embedding network with the ProxyGML loss on Fashion-MNIST and
reports, before training and after every epoch, the test Recall@1/2/4/8,
MAP@R, R-precision and NMI.

  bench/torch_train.py --arch mlp --epochs 5 --threads 2
  bench/torch_train.py --arch cnn --protocol seen --C 10 --N 4 --r 0.25 \
      --epochs 3 --json out.json

Protocols: zeroshot (default) trains on the training-file images of classes
0..C-1 and tests on the t10k images of classes 5-9, which it never saw;
seen (--C 10) trains on the whole training file and tests on all of t10k.
Pixels are scaled to [0, 1], without augmentation. The gzipped IDX files are
those of Debian's dataset-fashion-mnist package (found with dpkg -L), or the
folder given by --data-dir or FMNIST_DIR.

Networks (128-d output, L2-normalised), as include/model.h:
  mlp  784-512-512-128, ReLU between the linear layers;
  cnn  conv3x3(1->32)-ReLU-maxpool2-conv3x3(32->64)-ReLU-maxpool2-
       linear(3136->256)-ReLU-linear(256->128).
Loss: bench/torch_proxygml.py, K = ceil(r*C*N). Optimiser: torch.optim.Adam,
network and proxies as two groups with their own learning rates, L2 weight
decay added to the gradient of both.

The start is reproducible and shared with the C side: torch.manual_seed(seed),
then the network, then the loss (its proxies), and the epoch permutations from
a separate generator seeded with seed; bench/torch_init.py imports this module
to export exactly that start. --json writes {"args": ..., "history": [one
record per evaluation: epoch (0 = untrained), the metrics, and for trained
epochs loss, loss_cls, train_s, eval_s, batches]}.
"""
import argparse
import gzip
import json
import os
import subprocess
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description="ProxyGML on Fashion-MNIST, PyTorch on the CPU")
    ap.add_argument("--arch", choices=["mlp", "cnn"], default="mlp")
    ap.add_argument("--protocol", choices=["zeroshot", "seen"], default="zeroshot",
                    help="zeroshot: train classes 0..C-1, test the unseen classes 5-9; "
                         "seen: train and test on all ten classes (needs --C 10)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-batches", type=int, default=0,
                    help="stop each epoch after this many batches (0: the whole epoch)")
    ap.add_argument("--C", type=int, default=5, help="training classes")
    ap.add_argument("--N", type=int, default=4, help="proxies per class")
    ap.add_argument("--r", type=float, default=0.4, help="ratio of proxies kept: K = ceil(r*C*N)")
    ap.add_argument("--lam", type=float, default=0.3, help="weight of the proxy regulariser")
    ap.add_argument("--scale", type=float, default=1.0, help="softmax scale")
    ap.add_argument("--lr", type=float, default=1e-3, help="learning rate of the network")
    ap.add_argument("--proxy-lr", type=float, default=0.03, help="learning rate of the proxies")
    ap.add_argument("--eps", type=float, default=0.01, help="Adam epsilon")
    ap.add_argument("--wd", type=float, default=1e-4, help="L2 weight decay of both groups")
    ap.add_argument("--decay-epochs", type=int, nargs="*", default=[],
                    help="1-based epochs from which every learning rate is multiplied by --rate")
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--warm", type=int, default=0,
                    help="epochs 1..warm train only the embedding layer and the proxies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=os.environ.get("FMNIST_DIR"),
                    help="folder of the IDX files (default: FMNIST_DIR, else the Debian package)")
    ap.add_argument("--also-seen", action="store_true",
                    help="also report R@1 and MAP@R on the t10k images of the training classes")
    ap.add_argument("--json", default=None, help="write the arguments and per-epoch results here")
    a = ap.parse_args(argv)
    if a.protocol == "seen" and a.C != 10:
        ap.error("--protocol seen trains on all ten classes: give --C 10")
    return a


def limit_threads(n):
    """Thread counts must be in the environment before torch loads OpenMP and
    BLAS. Passive waiting keeps idle OpenMP workers from spinning against
    OpenBLAS's threads on a small machine."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


if __name__ == "__main__":
    ARGS = parse_args()
    limit_threads(ARGS.threads)

import numpy as np  # noqa: E402  (after the thread settings)
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_proxygml import ProxyGMLLoss, retrieval_metrics  # noqa: E402

EMBED_DIM = 128


# -- data ---------------------------------------------------------------------
def idx_name(split, kind):
    """File name of one IDX file: split "train" or "t10k", kind "images" or "labels"."""
    return "%s-%s-idx%d-ubyte.gz" % (split, kind, 3 if kind == "images" else 1)


def fashion_mnist_dir(given):
    """The folder of the IDX files: the one given, else the Debian package's."""
    if given:
        return given
    try:
        files = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True,
                               text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        files = []
    for path in files:
        if os.path.basename(path) == idx_name("train", "images"):
            return os.path.dirname(path)
    sys.exit("torch_train: no Fashion-MNIST: install Debian's dataset-fashion-mnist, "
             "or give --data-dir or FMNIST_DIR")


def read_idx(path):
    """An unsigned-byte IDX file as a numpy array of its dimensions."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("%s: not an IDX file of unsigned bytes" % path)
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def as_images(pixels):
    """uint8 n x 28 x 28 -> float32 tensor n x 1 x 28 x 28 in [0, 1]."""
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(1)


def load_fashion_mnist(folder, protocol, C):
    """The training and test sets of a protocol, as a dict: train_x (tensor
    n x 1 x 28 x 28), train_y (int64 tensor), test_x, test_y (int64 numpy),
    and seen_x, seen_y: the t10k images of the training classes."""
    train_x = read_idx(os.path.join(folder, idx_name("train", "images")))
    train_y = read_idx(os.path.join(folder, idx_name("train", "labels"))).astype(np.int64)
    test_x = read_idx(os.path.join(folder, idx_name("t10k", "images")))
    test_y = read_idx(os.path.join(folder, idx_name("t10k", "labels"))).astype(np.int64)
    if protocol == "seen":
        train_rows = np.ones(len(train_y), bool)
        test_rows = np.ones(len(test_y), bool)
    else:
        train_rows = train_y < C
        test_rows = test_y >= 5                        # classes 5-9, whatever C is
    seen_rows = test_y < C
    return dict(train_x=as_images(train_x[train_rows]), train_y=torch.from_numpy(train_y[train_rows]),
                test_x=as_images(test_x[test_rows]), test_y=test_y[test_rows],
                seen_x=as_images(test_x[seen_rows]), seen_y=test_y[seen_rows])


# -- networks: PyTorch's module names are the parameter names of the C side ----
class MLP(nn.Module):
    def __init__(self, dim=EMBED_DIM):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 512), nn.ReLU(),
                                  nn.Linear(512, 512), nn.ReLU())
        self.embedding = nn.Linear(512, dim)

    def forward(self, x):
        return F.normalize(self.embedding(self.body(x)), p=2.0, dim=1)


class CNN(nn.Module):
    def __init__(self, dim=EMBED_DIM):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten(), nn.Linear(64 * 7 * 7, 256), nn.ReLU())
        self.embedding = nn.Linear(256, dim)

    def forward(self, x):
        return F.normalize(self.embedding(self.body(x)), p=2.0, dim=1)


NETWORKS = {"mlp": MLP, "cnn": CNN}


# -- evaluation ---------------------------------------------------------------
def embed(model, images, rows_per_block=1000):
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(images[i:i + rows_per_block]) for i in range(0, len(images), rows_per_block)])
    model.train()
    return out


def kmeans_nmi(emb, labels, seed):
    """NMI of a k-means clustering (k = number of classes, 10 restarts)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score
    # threadpoolctl's probe of the loaded BLAS libraries raises a harmless
    # error while it is garbage-collected; keep it off the output
    hook, sys.unraisablehook = sys.unraisablehook, (lambda *_: None)
    try:
        km = KMeans(n_clusters=len(np.unique(labels)), n_init=10, random_state=seed)
        clusters = km.fit(emb.astype(np.float64)).labels_
    finally:
        sys.unraisablehook = hook
    return float(normalized_mutual_info_score(labels, clusters, average_method="arithmetic"))


def evaluate(model, data, a):
    t0 = time.perf_counter()
    emb = embed(model, data["test_x"])
    m = retrieval_metrics(emb, data["test_y"])
    m["nmi"] = kmeans_nmi(emb.numpy(), data["test_y"], a.seed)
    if a.also_seen:
        s = retrieval_metrics(embed(model, data["seen_x"]), data["seen_y"])
        m["seen_recall@1"], m["seen_map@r"] = s["recall@1"], s["map@r"]
    return m, time.perf_counter() - t0


def report(epoch, m, what):
    line = "epoch %d  %s  R@1 %.4f R@2 %.4f R@4 %.4f R@8 %.4f  MAP@R %.4f  RP %.4f  NMI %.4f" % (
        epoch, what, m["recall@1"], m["recall@2"], m["recall@4"], m["recall@8"],
        m["map@r"], m["r_precision"], m["nmi"])
    if "seen_recall@1" in m:
        line += "  | training classes: R@1 %.4f MAP@R %.4f" % (m["seen_recall@1"], m["seen_map@r"])
    print(line, flush=True)


# -- training -----------------------------------------------------------------
def build(a):
    """The network and the loss, in the order that fixes the initial
    parameters (bench/torch_init.py relies on it): seed, network, proxies."""
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    model = NETWORKS[a.arch]()
    crit = ProxyGMLLoss(EMBED_DIM, a.C, a.N, a.r, a.lam, a.scale)
    return model, crit


def train_epoch(model, crit, opt, x, y, order, a):
    """One pass over x in the given order; returns the mean loss, the mean
    classification loss and the number of batches."""
    n_batches = -(-len(x) // a.batch)                  # the last, partial batch too
    if a.max_batches:
        n_batches = min(n_batches, a.max_batches)
    loss_sum = cls_sum = 0.0
    for i in range(n_batches):
        rows = order[i * a.batch:(i + 1) * a.batch]
        loss, loss_cls, _ = crit(model(x[rows]), y[rows])
        opt.zero_grad(set_to_none=True)                # frozen parameters get no step at all
        loss.backward()
        opt.step()
        loss_sum += loss.item()
        cls_sum += loss_cls.item()
    return loss_sum / n_batches, cls_sum / n_batches, n_batches


def main(a):
    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:                               # already fixed by an earlier parallel call
        pass
    t0 = time.perf_counter()
    data = load_fashion_mnist(fashion_mnist_dir(a.data_dir), a.protocol, a.C)
    print("data (%s): train %d images of classes 0-%d, test %d images of classes %s (%.1fs)"
          % (a.protocol, len(data["train_y"]), a.C - 1, len(data["test_y"]),
             "0-9" if a.protocol == "seen" else "5-9", time.perf_counter() - t0))

    model, crit = build(a)
    opt = torch.optim.Adam([{"params": model.parameters(), "lr": a.lr},
                            {"params": crit.parameters(), "lr": a.proxy_lr}],
                           eps=a.eps, weight_decay=a.wd)
    print("arch %s (%d parameters), C=%d N=%d K=%d r=%g lambda=%g scale=%g, batch %d, lr %g / proxies %g, "
          "eps %g, wd %g, threads %d, torch %s"
          % (a.arch, sum(p.numel() for p in model.parameters()), a.C, a.N, crit.K, a.r, a.lam, a.scale,
             a.batch, a.lr, a.proxy_lr, a.eps, a.wd, torch.get_num_threads(), torch.__version__))
    order_gen = torch.Generator().manual_seed(a.seed)   # apart from the global generator
    head = {id(p) for p in model.embedding.parameters()}

    m, eval_s = evaluate(model, data, a)
    history = [dict(epoch=0, eval_s=eval_s, **m)]
    report(0, m, "(untrained)  eval %.1fs" % eval_s)
    for epoch in range(1, a.epochs + 1):
        if epoch in a.decay_epochs:
            for group in opt.param_groups:
                group["lr"] *= a.rate
        warming = epoch <= a.warm
        for p in model.parameters():
            p.requires_grad_(not warming or id(p) in head)
        order = torch.randperm(len(data["train_y"]), generator=order_gen)
        t0 = time.perf_counter()
        loss, loss_cls, n_batches = train_epoch(model, crit, opt, data["train_x"], data["train_y"], order, a)
        train_s = time.perf_counter() - t0
        m, eval_s = evaluate(model, data, a)
        history.append(dict(epoch=epoch, loss=loss, loss_cls=loss_cls, train_s=train_s, eval_s=eval_s,
                            batches=n_batches, **m))
        report(epoch, m, "loss %.4f (cls %.4f)  train %.1fs (%.1f ms/batch)  eval %.1fs"
               % (loss, loss_cls, train_s, 1e3 * train_s / n_batches, eval_s))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(dict(args=vars(a), history=history), fh, indent=1)


if __name__ == "__main__":
    main(ARGS)
