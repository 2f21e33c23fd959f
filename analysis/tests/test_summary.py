"""summarize: the numbers equal those read from the run files directly; unfinished runs are listed."""
import csv
import io
import math

import h5py
import numpy as np
import pytest

from analysis.__main__ import main
from analysis.runs import find_runs
from analysis.summary import METRICS, Summary


def direct(sweep):
    """{(K, N): [(final, best) dicts of the complete runs]} straight from h5py."""
    out = {}
    for path in sorted(sweep.glob("*/run.h5")):
        with h5py.File(path, "r") as f:
            key = (int(f.attrs["K"]), int(f.attrs["N"]))
            out.setdefault(key, [])
            if f.attrs["status"] != "complete":
                continue
            epoch = f["metrics/epoch"][()]
            out[key].append({m: (f["metrics"][m][-1], f["metrics"][m][epoch > 0].max()) for m in METRICS})
    return out


def test_points_match_run_files(sweep):
    s = Summary(find_runs(sweep))
    assert s.keys == ["K", "N"]
    want = direct(sweep)
    assert {p["values"] for p in s.points} == set(want)
    for p in s.points:
        runs = want[p["values"]]
        assert p["n_seeds"] == len(runs)
        for m in METRICS:
            for i, which in enumerate(("final", "best")):
                vals = np.array([r[m][i] for r in runs])
                if not len(vals):
                    assert math.isnan(p[f"{m}_{which}_mean"])
                    continue
                assert p[f"{m}_{which}_mean"] == pytest.approx(vals.mean(), rel=1e-12)
                assert p[f"{m}_{which}_std"] == pytest.approx(vals.std(ddof=1), rel=1e-9)


def test_cli_csv_and_markdown(sweep, tmp_path, capsys):
    csv_path, md_path = tmp_path / "s.csv", tmp_path / "s.md"
    assert main(["summarize", str(sweep), "--csv", str(csv_path), "--md", str(md_path)]) == 0
    md = capsys.readouterr().out
    assert md == md_path.read_text()
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    points = [r for r in rows if r["row"] == "point"]
    assert len(points) == 5                                   # 2 k x 2 N, plus the N=3 point
    want = direct(sweep)
    for r in points:
        runs = want[(int(r["K"]), int(r["N"]))]
        assert int(r["n_seeds"]) == len(runs)
        if runs:
            assert float(r["map_at_r_final_mean"]) == pytest.approx(np.mean([x["map_at_r"][0] for x in runs]))
            assert float(r["nmi_best_mean"]) == pytest.approx(np.mean([x["nmi"][1] for x in runs]))
    # sorted by final map_at_r, descending; the point without a complete run last
    finals = [float(r["map_at_r_final_mean"]) for r in points if r["map_at_r_final_mean"]]
    assert finals == sorted(finals, reverse=True)
    assert points[-1]["n_seeds"] == "0" and points[-1]["status"] == "1 running"
    # the incomplete run is listed, in CSV and Markdown; the sweep's logs/ holds no run.h5: not a run
    listed = {r["runs"]: r["status"] for r in rows if r["row"] == "run"}
    assert listed == {"k=5_N=3_seed=0": "running"}
    assert "## Runs not complete (1)" in md and "| logs |" not in md
    assert "| k=5_N=3_seed=0 | 5 | 3 | 0 | running |" in md


def test_failed_run_listed(failing, capsys):
    assert main(["summarize", str(failing)]) == 0
    md = capsys.readouterr().out
    s = Summary(find_runs(failing))
    assert "lr" in s.keys and "proxy_lr" in s.keys
    (bad,) = s.unfinished
    assert bad.status == "failed" and "non-finite" in bad.message
    assert "| lr=1e30 |" in md and "failed" in md and "non-finite" in md


@pytest.mark.parametrize("args, msg", [
    (["summarize", "/nonexistent/runs"], "no such directory"),
    (["summarize", "{tmp}"], "no run.h5 below"),
    (["curves", "{tmp}/x.h5"], "no such file"),
    (["curves", "{data}"], "not a proxygml run file"),
    (["curves", "{tmp}/garbage.h5"], "not an HDF5 file"),
    (["summarize", "{sweep}", "--metric", "accuracy"], "unknown metric"),
])
def test_bad_input_exit_2(args, msg, sweep, fmnist, tmp_path, capsys):
    (tmp_path / "garbage.h5").write_text("not hdf5")
    args = [a.format(tmp=tmp_path, data=fmnist[0], sweep=sweep) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
