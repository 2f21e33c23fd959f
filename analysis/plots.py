"""The pictures. Each `*_figure` function returns a matplotlib Figure (Agg, no pyplot state),
so callers (and tests) can inspect its axes; `save_figure` writes it (PNG or SVG).

- heatmap_figure:   a metric over a grid of two keys (K x N), mean over seeds, 1 axes + colorbar
- curves_figure:    loss and metrics per epoch for some runs, one axes per quantity
- embed_figure:     t-SNE of (sampled) test embeddings and the normalised proxies, 1 axes
- retrieval_figure: queries x (1 + k) axes, neighbours bordered green (same class) / red
- proxies_figure:   proxy usage (counts, purity, dead per class), 3 axes
"""
import math
import os

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from . import AnalysisError  # noqa: E402
from .runs import read_datasets, read_test_split  # noqa: E402
from .summary import METRICS, mean_std, swept_keys  # noqa: E402

DPI = 100
OK_COLOR, BAD_COLOR = "#1a9641", "#d7191c"


def save_figure(fig, path):
    """Write the figure (format from the extension: .png or .svg); returns the path."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def class_colors(n):
    """n distinguishable colours indexed by class id."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20" if n <= 20 else "hsv"]
    return [cmap(i % cmap.N) if n <= 20 else cmap(i / n) for i in range(n)]


def _matches(run, where):
    for key, want in where.items():
        got = run.get(key)
        if got is None:
            raise AnalysisError(f"--where {key}={want}: no run has a key {key!r}")
        try:
            if float(got) != float(want):
                return False
        except (TypeError, ValueError):
            if str(got) != want:
                return False
    return True


# --- heatmap -------------------------------------------------------------------------------------
def heatmap_figure(runs, metric="map_at_r", x="K", y="N", value="final", where=None):
    """Mean over seeds (complete runs) of the final/best `metric` on the x-by-y grid. Cells with
    no complete run are grey and say `missing` or the statuses of their runs. The other swept
    keys must be fixed (by --where KEY=VALUE), else AnalysisError."""
    runs = [r for r in runs if r.readable and _matches(r, where or {})]
    if not runs:
        raise AnalysisError("no readable run matches" + (f" --where {where}" if where else ""))
    for key in (x, y):
        if any(r.get(key) is None for r in runs):
            raise AnalysisError(f"key {key!r} is not a run attribute or config key")
    if not any(metric in r.metrics for r in runs):
        raise AnalysisError(f"unknown metric {metric!r}")
    others = [k for k in swept_keys(runs) if k not in (x, y)]
    if others:
        vals = {k: sorted({str(r.get(k)) for r in runs}) for k in others}
        raise AnalysisError("the runs also differ in " + ", ".join(f"{k} ({' '.join(v)})" for k, v in vals.items())
                            + ": fix them with --where KEY=VALUE")
    xs = sorted({r.get(x) for r in runs})
    ys = sorted({r.get(y) for r in runs})
    mean = np.full((len(ys), len(xs)), np.nan)
    fig = Figure(figsize=(1.5 + 1.25 * len(xs), 1.2 + 0.8 * len(ys)), layout="constrained")
    ax = fig.add_subplot()
    texts = {}
    for i, yv in enumerate(ys):
        for j, xv in enumerate(xs):
            cell = [r for r in runs if r.get(x) == xv and r.get(y) == yv]
            done = [r for r in cell if r.complete]
            m, s, n = mean_std([getattr(r, value)(metric) for r in done])
            mean[i, j] = m
            if n:
                texts[i, j] = f"{m:.3f}" + (f"\n±{s:.3f}" if math.isfinite(s) else "") + f"\nn={n}"
            else:
                statuses = sorted({r.status for r in cell})
                texts[i, j] = "missing" if not statuses else "\n".join(statuses)
    if not np.isfinite(mean).any():
        raise AnalysisError(f"no complete run with {metric} to show")
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("#dddddd")
    im = ax.imshow(np.ma.masked_invalid(mean), cmap=cmap, origin="lower", aspect="auto")
    lo, hi = np.nanmin(mean), np.nanmax(mean)
    for (i, j), t in texts.items():
        v = mean[i, j]
        dark = math.isfinite(v) and (v - lo) < 0.5 * (hi - lo + 1e-12)
        ax.text(j, i, t, ha="center", va="center", fontsize=8,
                color="white" if dark else "black", style="normal" if math.isfinite(v) else "italic")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{metric} ({value}), mean over seeds", fontsize=10)
    fig.colorbar(im, ax=ax, label=metric)
    return fig


# --- curves --------------------------------------------------------------------------------------
def curves_figure(runs, metrics=None):
    """Panel 1: loss per epoch (markers) over the per-step trace/loss (thin, light), x in epochs;
    then one panel per metric per evaluated epoch. One colour per run."""
    metrics = list(metrics or METRICS)
    n = 1 + len(metrics)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.0 * ncols, 3.0 * nrows), layout="constrained")
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n)]
    colors = class_colors(max(len(runs), 1))
    names = [r.name for r in runs]
    for i, r in enumerate(runs):
        label = r.name if names.count(r.name) == 1 else r.path
        if not r.complete:
            label += f" ({r.status})"
        c = colors[i]
        epoch = r.metrics.get("epoch", np.zeros(0))
        spe = r.steps_per_epoch
        if spe and len(r.trace_loss):
            axes[0].plot((np.arange(len(r.trace_loss)) + 1) / spe, r.trace_loss, color=c, alpha=0.3, lw=0.7)
        loss = r.metrics.get("loss")
        if loss is not None:
            keep = (epoch > 0) & np.isfinite(loss)
            axes[0].plot(epoch[keep], loss[keep], "o-", color=c, ms=4, label=label)
        for ax, m in zip(axes[1:], metrics):
            if m in r.metrics:
                ax.plot(epoch, r.metrics[m], "o-", color=c, ms=4, label=label)
    for ax, q in zip(axes, ["loss (per step, and epoch mean)"] + metrics):
        ax.set_title(q, fontsize=10)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return fig


# --- embedding -----------------------------------------------------------------------------------
def embed_figure(run, max_points=3000, seed=0, name=lambda c: f"class {c}", threads=1):
    """t-SNE (sklearn) of up to max_points test embeddings (random sample) together with the
    L2-normalised proxies; points coloured by class, proxies as black-edged stars. `threads`
    OpenMP threads for t-SNE: 1 by default, as spinning threads on busy shared cores made it
    3-40x slower (about 15 s for 3000 points on one core)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    emb, labels, proxies, pcls = read_datasets(run.path, "embeddings/test", "embeddings/labels",
                                               "proxies/values", "proxies/classes")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(emb), size=min(max_points, len(emb)), replace=False))
    P = proxies / np.maximum(np.linalg.norm(proxies, axis=1, keepdims=True), 1e-12)
    X = np.vstack([emb[idx], P]).astype(np.float64)
    if len(X) < 5:
        raise AnalysisError("too few points for t-SNE")
    with threadpool_limits(threads):
        Y = TSNE(n_components=2, perplexity=min(30.0, (len(X) - 1) / 3), init="pca", learning_rate="auto",
                 random_state=seed).fit_transform(X)
    pts, prx = Y[:len(idx)], Y[len(idx):]
    lab = labels[idx].astype(np.int64)
    n_cls = int(max(lab.max(), pcls.max())) + 1
    colors = class_colors(n_cls)
    fig = Figure(figsize=(7.5, 6), layout="constrained")
    ax = fig.add_subplot()
    for c in np.unique(lab):
        m = lab == c
        ax.scatter(pts[m, 0], pts[m, 1], s=4, color=colors[c], alpha=0.6, linewidths=0, label=name(int(c)))
    for c in np.unique(pcls):
        m = pcls == c
        ax.scatter(prx[m, 0], prx[m, 1], s=140, marker="*", color=colors[c], edgecolors="black",
                   linewidths=0.8, label=f"proxies: {name(int(c))}" if c not in lab else None)
    ax.scatter([], [], s=140, marker="*", color="white", edgecolors="black", label="proxy")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE: {len(idx)} test embeddings and {len(P)} proxies ({run.name})", fontsize=10)
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return fig


# --- retrieval -----------------------------------------------------------------------------------
def retrieval_neighbours(emb, queries, k):
    """Top-k rows of emb by inner product with each query row (the query itself excluded):
    (k_idx queries x k, scores queries x k), best first."""
    scores = emb[queries] @ emb.T                       # queries x n
    scores[np.arange(len(queries)), queries] = -np.inf
    idx = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(scores, idx, axis=1)


def retrieval_figure(run, dataset, queries=8, k=5, seed=0):
    """Random test queries (rows) with their top-k neighbours in embeddings/test; neighbour
    borders green when the label matches the query's, red otherwise. Images and class names
    from the dataset file's /test split, which must be the run's test split."""
    emb, labels = read_datasets(run.path, "embeddings/test", "embeddings/labels")
    ds_labels, names, _ = read_test_split(dataset)
    if len(ds_labels) != len(labels) or not np.array_equal(ds_labels, labels):
        raise AnalysisError(f"{dataset} does not match the run: its /test has {len(ds_labels)} rows, the run "
                            f"{len(labels)}" + (" (labels differ)" if len(ds_labels) == len(labels) else ""))
    n = len(labels)
    k = min(k, n - 1)
    rng = np.random.default_rng(seed)
    q = rng.choice(n, size=min(queries, n), replace=False)
    nn, sim = retrieval_neighbours(emb.astype(np.float32), q, k)
    _, _, imgs = read_test_split(dataset, np.concatenate([q, nn.ravel()]))
    q_img, nn_img = imgs[:len(q)], imgs[len(q):].reshape(len(q), k, *imgs.shape[1:])
    name = lambda c: names[c] if 0 <= c < len(names) else f"class {c}"  # noqa: E731
    fig = Figure(figsize=(1.25 * (k + 1) + 0.4, 1.4 * len(q) + 0.5), layout="constrained")
    axes = fig.subplots(len(q), k + 1, squeeze=False)
    hits = labels[nn] == labels[q][:, None]

    def show(ax, img, title, color):
        img = img[..., 0] if img.shape[-1] == 1 else img
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title, fontsize=7)
        for s in ax.spines.values():
            s.set_color(color)
            s.set_linewidth(3)

    for i in range(len(q)):
        show(axes[i, 0], q_img[i], f"query: {name(labels[q[i]])}", "black")
        for j in range(k):
            show(axes[i, j + 1], nn_img[i, j], f"{name(labels[nn[i, j]])}\n{sim[i, j]:.2f}",
                 OK_COLOR if hits[i, j] else BAD_COLOR)
    fig.suptitle(f"{run.name}: top-{k} neighbours, precision@{k} of these queries {hits.mean():.2f}",
                 fontsize=9)
    return fig


# --- proxy usage ---------------------------------------------------------------------------------
def proxies_figure(u, name=lambda c: f"class {c}", title=""):
    """Three panels: selections per proxy (dead ones marked x), purity per proxy, dead per class."""
    M = len(u.classes)
    n_cls = int(u.classes.max()) + 1
    colors = class_colors(max(n_cls, int(u.majority.max()) + 1))
    fig = Figure(figsize=(min(16.0, max(7.0, 0.16 * M + 2)), 8.5), layout="constrained")
    ax1, ax2, ax3 = [fig.add_subplot(3, 1, i + 1) for i in range(3)]
    bar_colors = [colors[c] for c in u.classes]
    x = np.arange(M)
    ax1.bar(x, u.count, color=bar_colors, width=0.85)
    if u.dead.any():
        ax1.plot(x[u.dead], np.zeros(u.dead.sum()), "x", color="black", ms=7, label="dead (never selected)")
        ax1.legend(fontsize=7)
    ax1.set_title(f"test subgraphs containing each proxy ({u.n_test} test samples, K={u.K}); "
                  f"{int(u.dead.sum())} dead", fontsize=9)
    ax1.set_ylabel("selections")
    ax2.bar(x, np.nan_to_num(u.purity), color=bar_colors, width=0.85)
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("purity")
    ax2.set_title("purity: share of the proxy's own class among the test samples selecting it"
                  if not u.zero_shot else
                  "purity: share of the majority test class (zero-shot: proxy classes are not test classes)",
                  fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel("proxy (coloured by class)")
        ax.set_xlim(-0.6, M - 0.4)
    per = u.dead_per_class()
    cls = list(per)
    ax3.bar(range(len(cls)), [per[c][1] for c in cls], color="#dddddd", label="proxies")
    ax3.bar(range(len(cls)), [per[c][0] for c in cls], color=[colors[c] for c in cls], label="dead")
    ax3.set_xticks(range(len(cls)), [name(c) for c in cls], fontsize=8, rotation=20)
    ax3.set_ylabel("proxies")
    ax3.set_title("dead proxies per class (coloured) out of the class's proxies (grey)", fontsize=9)
    ax3.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
