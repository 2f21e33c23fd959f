#!/usr/bin/python3
"""torch_baselines.py: the four baseline proxy losses in plain PyTorch, the
counterpart of src/baselines.c for the benchmark (bench/torch_loss.py --loss)
and a second check of the definitions (docs/baselines.md):

  bench/torch_baselines.py --check TESTDATA_DIR/baselines   # float64 against every golden file

Each module holds its proxies as an M x D parameter (M = C * k, proxy j of
class j // k) and takes raw embeddings: it L2-normalises both sides itself,
as the C code does, so gradients reach the raw inputs.
"""
import argparse
import glob
import os
import sys

import torch
import torch.nn.functional as F


class _ProxyLoss(torch.nn.Module):
    def __init__(self, D, C, k, dtype):
        super().__init__()
        self.C, self.k = C, k
        bound = 1.0 / (C * k) ** 0.5   # the trainer's initialisation: U(-1/sqrt(M), 1/sqrt(M))
        self.proxies = torch.nn.Parameter(torch.empty(C * k, D, dtype=dtype).uniform_(-bound, bound))

    def cosines(self, x_raw):
        return F.normalize(x_raw, dim=1) @ F.normalize(self.proxies, dim=1).t()   # B x M


class ProxyNCA(_ProxyLoss):
    """-log softmax over classes of -s ||x - w||^2, mean over rows."""
    def __init__(self, D, C, dtype, scale=1.0):
        super().__init__(D, C, 1, dtype)
        self.scale = scale

    def forward(self, x_raw, y):
        d2 = torch.cdist(F.normalize(x_raw, dim=1), F.normalize(self.proxies, dim=1)) ** 2
        return F.cross_entropy(-self.scale * d2, y)


class ProxyAnchor(_ProxyLoss):
    """per proxy: log(1 + sum over its positives of exp(-alpha (s - delta)))
    averaged over the classes present, plus log(1 + sum over its negatives of
    exp(alpha (s + delta))) averaged over all C."""
    def __init__(self, D, C, dtype, margin=0.1, alpha=32.0):
        super().__init__(D, C, 1, dtype)
        self.margin, self.alpha = margin, alpha

    def forward(self, x_raw, y):
        s = self.cosines(x_raw)
        pos = F.one_hot(y, self.C).to(s.dtype)
        zero = torch.zeros(1, self.C, dtype=s.dtype)
        # log(1 + sum e^z) as logsumexp over the terms and one 0; masked terms get -inf
        lp = torch.where(pos > 0, -self.alpha * (s - self.margin), torch.full_like(s, -float("inf")))
        ln = torch.where(pos > 0, torch.full_like(s, -float("inf")), self.alpha * (s + self.margin))
        pos_c = torch.logsumexp(torch.cat([lp, zero]), dim=0)
        neg_c = torch.logsumexp(torch.cat([ln, zero]), dim=0)
        present = pos.sum(0) > 0
        return pos_c[present].sum() / present.sum() + neg_c.sum() / self.C


class SoftTriple(_ProxyLoss):
    """k centres per class; softmax over them at temperature gamma gives the
    relaxed class similarity; softmax cross-entropy of lambda (S - delta [c = y]);
    plus tau times the mean over same-class centre pairs of sqrt(2 + eps - 2 w.w')."""
    def __init__(self, D, C, k, dtype, la=20.0, gamma=0.1, tau=0.2, margin=0.01):
        super().__init__(D, C, k, dtype)
        self.la, self.gamma, self.tau, self.margin = la, gamma, tau, margin

    def forward(self, x_raw, y):
        s = self.cosines(x_raw).view(-1, self.C, self.k)
        q = F.softmax(s / self.gamma, dim=2)
        sim = (q * s).sum(2)                                   # B x C
        logits = self.la * (sim - self.margin * F.one_hot(y, self.C).to(sim.dtype))
        loss = F.cross_entropy(logits, y)
        if self.tau > 0 and self.k > 1:
            w = F.normalize(self.proxies, dim=1).view(self.C, self.k, -1)
            g = w @ w.transpose(1, 2)                          # C x k x k
            iu = torch.triu_indices(self.k, self.k, offset=1)
            d = torch.sqrt(2.0 + 1e-5 - 2.0 * g[:, iu[0], iu[1]])
            loss = loss + self.tau * d.sum() / (self.C * self.k * (self.k - 1))
        return loss


class NormSoftmax(_ProxyLoss):
    """softmax cross-entropy of cosines / T"""
    def __init__(self, D, C, dtype, temperature=0.05):
        super().__init__(D, C, 1, dtype)
        self.temperature = temperature

    def forward(self, x_raw, y):
        return F.cross_entropy(self.cosines(x_raw) / self.temperature, y)


def make(loss, D, C, k, dtype, **hyper):
    if loss == "proxynca":
        return ProxyNCA(D, C, dtype, **hyper)
    if loss == "proxyanchor":
        return ProxyAnchor(D, C, dtype, **hyper)
    if loss == "softtriple":
        return SoftTriple(D, C, k, dtype, **hyper)
    if loss == "normsoftmax":
        return NormSoftmax(D, C, dtype, **hyper)
    raise ValueError(loss)


def check(folder):
    """float64 against every golden file: loss and both gradients within 1e-10 relative"""
    import h5py
    import numpy as np
    files = sorted(glob.glob(os.path.join(folder, "*.h5")))
    if not files:
        sys.exit("torch_baselines: no .h5 files in %s" % folder)
    worst = 0.0
    for path in files:
        with h5py.File(path, "r") as f:
            at = f.attrs
            name = at["loss_name"]
            C, D = int(at["C"]), int(at["D"])
            k, hyper = 1, {}
            if name == "ProxyNCALoss":
                loss, hyper = "proxynca", dict(scale=float(at["softmax_scale"]))
            elif name == "ProxyAnchorLoss":
                loss, hyper = "proxyanchor", dict(margin=float(at["margin"]), alpha=float(at["alpha"]))
            elif name == "SoftTripleLoss":
                loss, k = "softtriple", int(at["centers_per_class"])
                hyper = dict(la=float(at["la"]), gamma=float(at["gamma"]), margin=float(at["margin"]), tau=0.0)
            else:
                loss, hyper = "normsoftmax", dict(temperature=float(at["temperature"]))
            p = f["proxies"][()]
            dm = str(at["proxies_layout"]).startswith("D x")   # stored D x M: transpose
            if dm:
                p = p.T
            x_raw = torch.tensor(f["x_raw"][()], requires_grad=True)
            y = torch.from_numpy(f["labels"][()].astype(np.int64))
            want = {n: f[n][()] for n in ("loss", "grad_x_raw", "grad_proxies")}
        crit = make(loss, D, C, k, torch.float64, **hyper)
        with torch.no_grad():
            crit.proxies.copy_(torch.from_numpy(np.ascontiguousarray(p)))
        v = crit(x_raw, y)
        v.backward()
        gp = crit.proxies.grad.numpy()
        if dm:
            gp = gp.T
        rel = max(abs(v.item() - float(want["loss"])) / abs(float(want["loss"])),
                  np.abs(x_raw.grad.numpy() - want["grad_x_raw"]).max() / np.abs(want["grad_x_raw"]).max(),
                  np.abs(gp - want["grad_proxies"]).max() / np.abs(want["grad_proxies"]).max())
        worst = max(worst, rel)
        print("%-32s %-12s max rel diff %.2e" % (os.path.basename(path), loss, rel))
    ok = worst < 1e-10
    print("worst %.2e -> %s" % (worst, "OK" if ok else "MISMATCH"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="the baseline losses in PyTorch; --check against golden files")
    ap.add_argument("--check", metavar="DIR", required=True, help="folder of the baselines' golden .h5 files")
    check(ap.parse_args().check)
