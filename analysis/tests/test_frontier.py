"""frontier: points grouped by (loss, M) with the seeds pooled, numbers equal to the runs' own,
incomplete runs left out and counted; the CLI prints the table and writes the figure."""
import numpy as np
import pytest

from analysis import AnalysisError
from analysis.__main__ import main
from analysis.frontier import frontier_figure, frontier_markdown, frontier_points
from analysis.runs import Run


def fake(loss, C, N, seed, r1, mapr, train_s, epochs=3, status="complete"):
    r = Run(path=f"{loss}_{N}_{seed}", name=f"{loss}_{N}_{seed}", status=status)
    r.attrs = {"C": C, "N": N, "status": status}
    if loss is not None:
        r.attrs["loss"] = loss
    r.config = {"seed": seed}
    r.metrics = {"epoch": np.array([0.0, epochs]), "recall_at_1": np.array([0.1, r1]),
                 "map_at_r": np.array([0.01, mapr]), "train_seconds": np.array([0.0, train_s])}
    return r


def test_points_pool_seeds_by_loss_and_m():
    runs = [fake("softtriple", 10, 4, s, 0.8 + 0.01 * s, 0.3 + 0.02 * s, 6.0) for s in range(3)]
    runs += [fake(None, 10, 2, s, 0.7, 0.2, 3.0) for s in range(2)]            # no loss attribute: proxygml
    runs += [fake("proxynca", 10, 1, 0, 0.5, 0.1, 1.5, status="running")]     # not complete
    points, skipped = frontier_points(runs)
    assert skipped == 1
    assert [(p["loss"], p["M"], p["seeds"]) for p in points] == [("proxygml", 20, 2), ("softtriple", 40, 3)]
    st = points[1]
    assert st["recall_at_1"]["mean"] == pytest.approx(0.81)
    assert st["recall_at_1"]["std"] == pytest.approx(np.std([0.8, 0.81, 0.82], ddof=1))
    assert (st["map_at_r"]["min"], st["map_at_r"]["max"]) == pytest.approx((0.3, 0.34))
    assert st["sec_per_epoch"] == pytest.approx(2.0)
    md = frontier_markdown(points, skipped)
    assert "| SoftTriple | 4 | 40 | 3 | 0.8100 ± 0.0100 |" in md and "1 run(s) not complete" in md
    fig = frontier_figure(points, "t")
    assert len(fig.axes) == 3
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["ProxyGML", "SoftTriple"]


def test_no_complete_run_is_an_error():
    with pytest.raises(AnalysisError):
        frontier_points([fake("proxynca", 5, 1, 0, 0.5, 0.1, 1.0, status="failed")])


def test_cli_on_real_runs(sweep, tmp_path, capsys):
    out = tmp_path / "f.png"
    assert main(["frontier", str(sweep), "-o", str(out), "--md", str(tmp_path / "f.md")]) == 0
    text = capsys.readouterr().out
    assert "| ProxyGML |" in text and out.stat().st_size > 0
    assert (tmp_path / "f.md").read_text() in text
