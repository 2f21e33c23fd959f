"""The picture commands: each writes a non-empty image with the expected panels/cells, and the
numbers behind them (neighbours, proxy usage) agree with a direct computation."""
import os
import struct
import subprocess

import h5py
import numpy as np
import pytest

from analysis.__main__ import main
from analysis.plots import (curves_figure, embed_figure, heatmap_figure, proxies_figure,
                            retrieval_figure, OK_COLOR, BAD_COLOR)
from analysis.proxies import proxy_usage, usage_report
from analysis.runs import find_runs, load_run
from analysis.summary import Summary
from matplotlib.colors import to_rgba

from .conftest import REPO


def png_size(path):
    """(width, height) from the PNG header."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def run_cli(args, capsys):
    assert main(args) == 0
    path = capsys.readouterr().out.strip().splitlines()[-1]
    assert os.path.getsize(path) > 1000
    return path


def test_heatmap(sweep, tmp_path, capsys):
    runs = find_runs(sweep)
    fig = heatmap_figure(runs, "map_at_r")
    ax, cbar = fig.axes                                         # the grid and its colorbar
    grid = ax.images[0].get_array()
    assert grid.shape == (3, 2)                                 # N in {2, 3, 4} x K in {5, 10}
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 6
    assert "running" in texts and "missing" in texts           # (K=5, N=3) and (K=10, N=3)
    assert grid.mask.sum() == 2
    means = {p["values"]: p["map_at_r_final_mean"] for p in Summary(runs).points}
    assert grid[0, 1] == pytest.approx(means[(10, 2)])          # row N=2, column K=10
    path = run_cli(["heatmap", str(sweep), "--out", str(tmp_path / "h.png")], capsys)
    w, h = png_size(path)
    assert w > 200 and h > 150
    svg = run_cli(["heatmap", str(sweep), "--value", "best", "--format", "svg"], capsys)
    assert svg.endswith(".svg") and open(svg).read(200).lstrip().startswith("<?xml")


def test_heatmap_needs_where_when_other_keys_vary(failing, capsys):
    assert main(["heatmap", str(failing)]) == 2
    assert "--where" in capsys.readouterr().err
    fig = heatmap_figure(find_runs(failing), where={"lr": "0.001"})
    assert fig.axes[0].images[0].get_array().shape == (1, 1)


def test_curves(sweep, capsys):
    runs = [load_run(sweep / d / "run.h5") for d in ("k=5_N=2_seed=0", "k=10_N=4_seed=1", "k=5_N=3_seed=0")]
    fig = curves_figure(runs)
    assert len(fig.axes) == 5                                   # loss + 4 metrics
    assert len(fig.axes[0].lines) == 2 * len(runs)              # per-step trace + epoch means
    assert all(len(ax.lines) == len(runs) for ax in fig.axes[1:])
    assert len(fig.axes[0].lines[0].get_xdata()) == 20          # 2 epochs x 10 steps
    assert len(curves_figure(runs[:1], ["recall_at_2"]).axes) == 2
    path = run_cli(["curves", *(r.path for r in runs)], capsys)
    assert path == str(sweep / "curves.png") and png_size(path)[0] > 500


def test_embed(sweep, capsys):
    run = load_run(sweep / "k=10_N=4_seed=0" / "run.h5")
    fig = embed_figure(run, max_points=200)
    (ax,) = fig.axes
    n_points = sum(len(c.get_offsets()) for c in ax.collections)
    assert n_points == 200 + 40                                 # sampled embeddings + C*N proxies
    path = run_cli(["embed", run.path, "--max-points", "150"], capsys)
    assert png_size(path)[0] > 300


def test_retrieval(sweep, fmnist, capsys):
    run = load_run(sweep / "k=10_N=4_seed=0" / "run.h5")
    fig = retrieval_figure(run, str(fmnist[0]), queries=3, k=4, seed=1)
    assert len(fig.axes) == 3 * 5
    with h5py.File(run.path, "r") as f:
        emb, labels = f["embeddings/test"][()], f["embeddings/labels"][()]
    q = np.random.default_rng(1).choice(len(emb), size=3, replace=False)
    for i, qi in enumerate(q):                                  # brute force top-4, query excluded
        sim = emb @ emb[qi]
        sim[qi] = -np.inf
        nn = np.argsort(-sim, kind="stable")[:4]
        for j, n in enumerate(nn):
            want = OK_COLOR if labels[n] == labels[qi] else BAD_COLOR
            assert fig.axes[i * 5 + j + 1].spines["top"].get_edgecolor() == to_rgba(want)
    path = run_cli(["retrieval", run.path, "--data", str(fmnist[0]), "--queries", "2", "--k", "3"], capsys)
    assert png_size(path)[0] > 200


def test_retrieval_wrong_dataset(zeroshot, fmnist, capsys):
    assert main(["retrieval", str(zeroshot), "--data", str(fmnist[0])]) == 2
    assert "does not match the run" in capsys.readouterr().err


def test_proxies_seen(sweep, capsys):
    path = sweep / "k=5_N=2_seed=1" / "run.h5"
    u = proxy_usage(path)
    with h5py.File(path, "r") as f:
        sub, labels = f["subgraph/proxies"][()], f["embeddings/labels"][()]
        cls, stored = f["proxies/classes"][()], f["proxies/selection_count"][()]
    assert np.array_equal(u.count, stored)
    assert not u.zero_shot
    for j in range(len(cls)):
        rows = (sub == j).any(axis=1)
        assert u.count[j] == rows.sum()
        if rows.any():
            assert u.purity[j] == pytest.approx((labels[rows] == cls[j]).mean())
    assert len(proxies_figure(u).axes) == 3
    out = run_cli(["proxies", str(path), "--csv", str(sweep / "p.csv")], capsys)
    assert png_size(out)[1] > 300
    assert len((sweep / "p.csv").read_text().splitlines()) == 1 + len(cls)


def test_proxies_zeroshot(zeroshot):
    u = proxy_usage(zeroshot)
    with h5py.File(zeroshot, "r") as f:
        sub, labels = f["subgraph/proxies"][()], f["embeddings/labels"][()]
    assert u.zero_shot and set(np.unique(u.classes)) == set(range(5))
    for j in range(len(u.classes)):
        rows = (sub == j).any(axis=1)
        if rows.any():
            assert u.purity[j] == pytest.approx(np.bincount(labels[rows]).max() / rows.sum())
            assert u.majority[j] >= 5
    assert "zero-shot" in usage_report(u)
    assert "majority" in proxies_figure(u).axes[1].get_title()


def test_wrapper_uses_debian_python(sweep, tmp_path):
    """scripts/analyze runs /usr/bin/python3 even when another python3 comes first on PATH."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3").write_text("#!/bin/sh\necho wrong python >&2; exit 1\n")
    (fake / "python3").chmod(0o755)
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}")
    p = subprocess.run([str(REPO / "scripts" / "analyze"), "summarize", str(sweep)], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "| K | N |" in p.stdout
