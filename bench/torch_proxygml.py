"""torch_proxygml.py: the ProxyGML loss and the retrieval metrics in PyTorch,
the reference half of the project's baselines (bench/torch_train.py,
bench/torch_loss.py). Not a script: import it.

  from torch_proxygml import ProxyGMLLoss, retrieval_metrics
  crit = ProxyGMLLoss(D=128, C=10, N=4, r=0.25, lam=0.3)
  loss, loss_cls, loss_reg = crit(x, labels)      # x: B x D, rows of unit length

The loss follows docs/loss.md (the section numbers below are its
sections), the same function src/proxygml.c computes. Import it after the
thread-count environment variables are set: torch reads them when it loads.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

SOFTMAX_EPS = 1e-8   # in the denominator of the masked softmax (§3.5)
LOG_EPS = 1e-20      # inside the log of the classification loss (§3.6)


def kept_proxies(r, C, N):
    """K = ceil(r*C*N), multiplied left to right in double as the published
    code does (§2: the order changes K at exact multiples)."""
    return int(math.ceil(float(r) * C * N))


class ProxyGMLLoss(torch.nn.Module):
    """ProxyGML on normalised embeddings x (B x D) and integer labels (B,).

    `proxies` (D x M, M = C*N, the trainable parameter) is drawn at
    construction with nn.Linear's default weight initialisation; column j
    belongs to class j // N. forward() returns (loss, loss_cls, loss_reg),
    loss_reg being 0 (and not computed) when lam = 0.

    impl selects one of two computations of the same function:
      "fast"    per-class sums by reshaping to (.., C, N), regulariser as
                W^T (W Y) without the M x M matrix (§3.7, §4.4);
      "onehot"  the structure of the published code: products with the dense
                M x C one-hot class matrix Y, regulariser through W^T W (§3.7).
    """

    def __init__(self, D, C, N, r, lam, scale=1.0, impl="fast", dtype=torch.float32):
        super().__init__()
        if impl not in ("fast", "onehot"):
            raise ValueError("impl must be fast or onehot, not %r" % impl)
        M = C * N
        self.C, self.N, self.impl = C, N, impl
        self.lam, self.scale = float(lam), float(scale)
        self.K = kept_proxies(r, C, N)
        if not 1 <= self.K <= M:
            raise ValueError("K = %d is outside [1, %d]" % (self.K, M))
        # drawn here, right after the network: the baselines' initialisation
        # order (bench/torch_init.py exports it for the C side)
        self.proxies = torch.nn.Parameter(torch.empty(D, M, dtype=dtype))
        torch.nn.init.kaiming_uniform_(self.proxies, a=math.sqrt(5))
        self.register_buffer("proxy_class", torch.arange(M) // N, persistent=False)
        if impl == "onehot":
            self.register_buffer("Y", F.one_hot(self.proxy_class, C).to(dtype), persistent=False)

    # -- pieces of the forward pass ------------------------------------------
    def subgraph(self, S, labels):
        """B x M mask of the K proxies kept per row (§3.3): all N positives
        first, then the most similar negatives; with K < N the K most similar
        positives. Ranking by S itself, not by S + 1000, avoids the float32
        ties among boosted positives (§5.5); the selection is the same otherwise."""
        positive = labels[:, None] == self.proxy_class[None, :]
        if self.K >= self.N:
            score = S.masked_fill(positive, math.inf)
        else:
            score = S.masked_fill(~positive, -math.inf)
        kept = torch.zeros_like(S)
        return kept.scatter_(1, score.topk(self.K, dim=1).indices, 1.0)

    def per_class(self, A):
        """Sums over each class's N columns: (rows x M) -> (rows x C) (§3.4)."""
        if self.impl == "onehot":
            return A @ self.Y
        return A.reshape(A.shape[0], self.C, self.N).sum(dim=2)

    def classification(self, Z, labels):
        """Mean -log of the label's masked-softmax probability (§3.4-3.6):
        classes with no kept proxy (Z exactly 0) leave the softmax."""
        E = torch.exp(self.scale * Z) * (Z != 0).to(Z.dtype)
        p = E / (SOFTMAX_EPS + E.sum(dim=1, keepdim=True))
        return -torch.log(p.gather(1, labels[:, None]) + LOG_EPS).mean()

    def regulariser(self, W):
        """Softmax cross-entropy of every proxy against its own class, on the
        per-class sums of proxy similarities (§3.7, §4.4)."""
        if self.impl == "onehot":
            Zc = (W.t() @ W) @ self.Y
        else:
            Zc = W.t() @ self.per_class(W)          # M x D times D x C
        return F.cross_entropy(Zc, self.proxy_class)

    def forward(self, x, labels):
        W = F.normalize(self.proxies, p=2.0, dim=0)   # D x M, unit columns (§3.1)
        S = x @ W                                      # B x M cosine similarities (§3.2)
        with torch.no_grad():                          # the selection is a constant (§4.1)
            kept = self.subgraph(S, labels)
        loss_cls = self.classification(self.per_class(kept * S), labels)
        if self.lam == 0:                              # published code: skipped, reported as 0
            return loss_cls, loss_cls, torch.zeros((), dtype=S.dtype)
        loss_reg = self.regulariser(W)
        return loss_cls + self.lam * loss_reg, loss_cls, loss_reg


# -- retrieval metrics (§9): inner-product neighbours, the query excluded -------
def neighbour_labels(emb, labels, depth, rows_per_block=1024):
    """n x depth: the labels of every item's `depth` nearest neighbours,
    nearest first. Blocks of rows bound the n x n similarity memory."""
    E = torch.as_tensor(emb, dtype=torch.float32)
    lab = torch.as_tensor(np.asarray(labels))
    blocks = []
    for start in range(0, E.shape[0], rows_per_block):
        sim = E[start:start + rows_per_block] @ E.t()
        own = torch.arange(sim.shape[0])
        sim[own, own + start] = -math.inf             # an item is not its own neighbour
        blocks.append(lab[sim.topk(depth, dim=1).indices])
    return torch.cat(blocks).numpy()


def retrieval_metrics(emb, labels, ks=(1, 2, 4, 8)):
    """{"recall@k": ..., "map@r": ..., "r_precision": ...} of the embeddings.

    Recall@k: share of queries with a same-label item among their k nearest.
    MAP@R and R-precision over the R nearest, R = the number of other items
    with the query's label; queries with R = 0 are left out of both."""
    labels = np.asarray(labels)
    _, label_index, label_count = np.unique(labels, return_inverse=True, return_counts=True)
    R = label_count[label_index] - 1
    depth = int(min(len(labels) - 1, max(max(ks), R.max())))
    hit = neighbour_labels(emb, labels, depth) == labels[:, None]
    out = {"recall@%d" % k: float(hit[:, :k].any(axis=1).mean()) for k in ks}

    queries = R > 0
    R = R[queries]
    rank = np.arange(1, depth + 1)
    relevant = hit[queries] & (rank[None, :] <= R[:, None])     # hits within the first R
    precision = np.cumsum(relevant, axis=1) / rank              # precision at each rank
    out["map@r"] = float(np.mean((precision * relevant).sum(axis=1) / R))
    out["r_precision"] = float(np.mean(relevant.sum(axis=1) / R))
    return out
