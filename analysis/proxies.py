"""Proxy usage in the test subgraphs of a run: selection counts, dead proxies, purity.

A test sample's subgraph (`subgraph/proxies`, n_test x K) is the K proxies most similar to
its embedding. For proxy j, S_j = the test samples whose subgraph contains j.
- count[j] = |S_j| (equals `proxies/selection_count`); dead = never selected (count 0).
- purity[j] = share of S_j whose label is the proxy's class, when that class is among the
  test labels ("own" purity, seen-class protocols). With zero-shot splits the test classes
  have no proxies, so purity[j] is the share of the majority test class in S_j instead
  ("majority" purity), and `majority[j]` names that class. NaN for dead proxies.
"""
from dataclasses import dataclass

import numpy as np

from .runs import read_datasets


@dataclass
class ProxyUsage:
    classes: np.ndarray      # M, class of each proxy
    count: np.ndarray        # M, test subgraphs containing it (from subgraph/proxies)
    stored_count: np.ndarray  # M, proxies/selection_count as written by the trainer
    purity: np.ndarray       # M, see the module comment (NaN if dead)
    majority: np.ndarray     # M, the most frequent test class in S_j (-1 if dead)
    own: np.ndarray          # M bool, purity is w.r.t. the proxy's own class
    n_test: int
    K: int

    @property
    def dead(self):
        return self.count == 0

    @property
    def zero_shot(self):
        """True when no proxy's class is among the test labels."""
        return not self.own.any()

    def dead_per_class(self):
        """{class: (dead proxies, proxies)}."""
        return {int(c): (int(self.dead[self.classes == c].sum()), int((self.classes == c).sum()))
                for c in np.unique(self.classes)}


def proxy_usage(run_path):
    """Compute ProxyUsage from a run file."""
    classes, stored, sub, labels = read_datasets(run_path, "proxies/classes", "proxies/selection_count",
                                                 "subgraph/proxies", "embeddings/labels")
    classes, sub, labels = classes.astype(np.int64), sub.astype(np.int64), labels.astype(np.int64)
    M, (n, K) = len(classes), sub.shape
    n_cls = int(max(classes.max(), labels.max())) + 1
    hist = np.zeros((M, n_cls), dtype=np.int64)            # hist[j, c]: samples of class c in S_j
    np.add.at(hist, (sub.ravel(), np.repeat(labels, K)), 1)
    count = hist.sum(axis=1)
    own = np.isin(classes, np.unique(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        own_share = hist[np.arange(M), classes] / count
        major_share = hist.max(axis=1) / count
    purity = np.where(own, own_share, major_share)
    majority = np.where(count > 0, hist.argmax(axis=1), -1)
    return ProxyUsage(classes, count, np.asarray(stored, dtype=np.int64), purity, majority, own, n, K)


def usage_report(u, name=lambda c: f"class {c}"):
    """A short text report: per class proxies, dead, selections, mean purity; the dead proxies."""
    kind = ("purity = share of the proxy's own class among the test samples selecting it"
            if not u.zero_shot else
            "zero-shot split (proxy classes are not test classes): purity = share of the majority test "
            "class among the test samples selecting the proxy")
    lines = [f"{len(u.classes)} proxies, {u.n_test} test subgraphs of K={u.K}; {int(u.dead.sum())} dead "
             f"(never selected); {kind}",
             f"{'class':<18} {'proxies':>7} {'dead':>5} {'selections':>10} {'mean purity':>11}"]
    for c, (dead, total) in u.dead_per_class().items():
        m = u.classes == c
        pur = u.purity[m][np.isfinite(u.purity[m])]
        lines.append(f"{name(c)[:18]:<18} {total:>7} {dead:>5} {int(u.count[m].sum()):>10} "
                     f"{(f'{pur.mean():.3f}' if len(pur) else '-'):>11}")
    if u.dead.any():
        lines.append("dead proxies: " + " ".join(str(j) for j in np.flatnonzero(u.dead)))
    if not np.array_equal(u.count, u.stored_count):
        lines.append("warning: proxies/selection_count differs from the counts in subgraph/proxies")
    return "\n".join(lines)


def usage_csv(u, name=lambda c: f"class {c}"):
    """Per-proxy CSV text: proxy, class, count, dead, purity, purity_kind, majority_class."""
    rows = ["proxy,class,class_name,count,dead,purity,purity_kind,majority_class"]
    for j in range(len(u.classes)):
        pur = "" if not np.isfinite(u.purity[j]) else f"{u.purity[j]:.6f}"
        rows.append(f"{j},{u.classes[j]},\"{name(int(u.classes[j]))}\",{u.count[j]},{int(u.dead[j])},{pur},"
                    f"{'own' if u.own[j] else 'majority'},{u.majority[j]}")
    return "\n".join(rows) + "\n"
