"""The accuracy-against-proxies frontier (docs/baselines.md): runs of several losses with
different numbers of proxies, grouped by (loss, M = C * proxies per class), seeds pooled.

- frontier_points: one dict per (loss, M): proxies per class, seeds, mean/std/min/max of the
  final R@1 and MAP@R, mean training seconds per epoch
- frontier_markdown: those points as a Markdown table
- frontier_figure: R@1 and MAP@R against M (log axis), one line per loss through the seed means
  with a band from the lowest to the highest seed, and training seconds per epoch beside them

Runs that are not complete are left out and counted. A run file without a `loss` attribute
predates the baselines: its loss is proxygml.
"""
import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import AnalysisError  # noqa: E402

LOSS_ORDER = ["proxygml", "softtriple", "proxynca", "proxyanchor", "normsoftmax"]
LOSS_LABELS = {"proxygml": "ProxyGML", "softtriple": "SoftTriple", "proxynca": "ProxyNCA",
               "proxyanchor": "Proxy-Anchor", "normsoftmax": "Normalized Softmax"}
METRICS = [("recall_at_1", "R@1"), ("map_at_r", "MAP@R")]


def run_loss(run):
    return str(run.attrs.get("loss") or run.config.get("loss") or "proxygml")


def seconds_per_epoch(run):
    """Training seconds (evaluations excluded) over the epochs trained, at the last evaluation."""
    ts, ep = run.metrics.get("train_seconds"), run.metrics.get("epoch")
    if ts is None or ep is None or not len(ts) or ep[-1] <= 0:
        return float("nan")
    return float(ts[-1] / ep[-1])


def frontier_points(runs):
    """(points sorted by loss then M, number of runs left out as not complete)."""
    groups, skipped = {}, 0
    for r in runs:
        if not r.complete:
            skipped += 1
            continue
        key = (run_loss(r), int(r.attrs["C"]) * int(r.attrs["N"]))
        groups.setdefault(key, []).append(r)
    if not groups:
        raise AnalysisError("no complete run to draw a frontier from")
    points = []
    for (loss, M), rs in groups.items():
        p = {"loss": loss, "M": M, "N": int(rs[0].attrs["N"]), "C": int(rs[0].attrs["C"]), "seeds": len(rs),
             "sec_per_epoch": float(np.nanmean([seconds_per_epoch(r) for r in rs]))}
        for m, _ in METRICS:
            v = np.array([r.final(m) for r in rs])
            p[m] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                    "min": float(v.min()), "max": float(v.max())}
        points.append(p)
    rank = {name: i for i, name in enumerate(LOSS_ORDER)}
    points.sort(key=lambda p: (rank.get(p["loss"], len(rank)), p["loss"], p["M"]))
    return points, skipped


def frontier_markdown(points, skipped=0, title="Frontier"):
    lines = [f"## {title}", "",
             "| loss | proxies per class | M | seeds | R@1 | MAP@R | training s / epoch |",
             "|---|---|---|---|---|---|---|"]
    for p in points:
        cells = [LOSS_LABELS.get(p["loss"], p["loss"]), str(p["N"]), str(p["M"]), str(p["seeds"])]
        cells += [f"{p[m]['mean']:.4f} ± {p[m]['std']:.4f}" for m, _ in METRICS]
        cells.append(f"{p['sec_per_epoch']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", f"{skipped} run(s) not complete, left out."]
    return "\n".join(lines) + "\n"


def frontier_figure(points, title=""):
    """Three panels: R@1, MAP@R and training seconds per epoch against M."""
    fig = Figure(figsize=(15, 4.6))
    axes = fig.subplots(1, 3)
    losses = []
    for p in points:
        if p["loss"] not in losses:
            losses.append(p["loss"])
    cmap = matplotlib.colormaps["tab10"]
    for i, loss in enumerate(losses):
        ps = [p for p in points if p["loss"] == loss]
        M = np.array([p["M"] for p in ps])
        color, label = cmap(i % 10), LOSS_LABELS.get(loss, loss)
        for ax, (m, name) in zip(axes[:2], METRICS):
            mean = np.array([p[m]["mean"] for p in ps])
            lo, hi = np.array([p[m]["min"] for p in ps]), np.array([p[m]["max"] for p in ps])
            ax.plot(M, mean, "o-", color=color, label=label)
            if len(M) > 1:
                ax.fill_between(M, lo, hi, color=color, alpha=0.2, linewidth=0)
            else:   # one M: the band is a bar over the seeds
                ax.errorbar(M, mean, yerr=[mean - lo, hi - mean], color=color, capsize=4, fmt="none")
        axes[2].plot(M, [p["sec_per_epoch"] for p in ps], "o-", color=color, label=label)
    ticks = sorted({p["M"] for p in points})
    for ax, name in zip(axes, [n for _, n in METRICS] + ["training seconds per epoch"]):
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("total proxies M = C x proxies per class")
        ax.set_ylabel(name)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    seeds = sorted({p["seeds"] for p in points})
    fig.suptitle(f"{title}  (line: mean over {'/'.join(map(str, seeds))} seeds; band: lowest to highest seed)"
                 .strip())
    fig.tight_layout()
    return fig
