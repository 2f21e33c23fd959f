"""Session fixtures: run files written by the real `proxygml train` on small subsets of
Fashion-MNIST (3000 training rows, 1000 test rows), so the whole suite stays fast.

- `sweep`:    k in {5, 10} x N in {2, 4} x seed in {0, 1}, plus k=5 N=3 seed=0 whose status
              is then set to "running" (a run killed mid-way), and a sweep's `logs/` directory.
- `failing`:  one run that really fails (huge learning rates: non-finite loss) beside a copy
              of a complete run.
- `zeroshot`: one run on a zero-shot subset (train classes 0-4, test classes 5-9).

Env: PROXYGML_BIN (default build/proxygml of the repository), PROXYGML_FMNIST (a seen-protocol
Fashion-MNIST dataset file; default data/fmnist_seen.h5 if present, else converted here with
`proxygml data fashion-mnist`).
"""
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("PROXYGML_BIN") or str(REPO / "build" / "proxygml")
SMALL = ["--set", "epochs=2", "--set", "max_steps_per_epoch=10", "--set", "kmeans_restarts=1",
         "--set", "threads=1"]


def train(out, data, cfg="fmnist_mlp.cfg", sets=(), expect=0):
    """Run the real trainer; fail the test with its stderr if the exit code is not `expect`."""
    cmd = [BIN, "train", "--config", str(REPO / "experiments" / cfg), "--set", f"data={data}", *SMALL]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True, timeout=300)
    assert p.returncode == expect, f"{' '.join(cmd)} exited {p.returncode}:\n{p.stderr[-2000:]}"
    return Path(out) / "run.h5"


def subset(src, dst, train_rows, test_rows, train_keep=None, test_keep=None, protocol=None):
    """Write a dataset file with the first rows of each split of src (optionally only some labels)."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        if protocol:
            g.attrs["protocol"] = protocol
        for split, n, keep in (("train", train_rows, train_keep), ("test", test_rows, test_keep)):
            labels = f[split]["labels"][:n]
            rows = np.flatnonzero(np.isin(labels, keep)) if keep is not None else np.arange(len(labels))
            h = g.create_group(split)
            h["images"] = f[split]["images"][:n][rows]
            h["labels"] = labels[rows].astype(np.int32)
            h.create_dataset("class_names", data=[s.decode() if isinstance(s, bytes) else s
                                                  for s in f[split]["class_names"][()]],
                             dtype=h5py.string_dtype())
    return dst


@pytest.fixture(scope="session")
def fmnist(tmp_path_factory):
    """(seen subset, zero-shot subset) dataset files."""
    assert os.access(BIN, os.X_OK), f"no proxygml binary at {BIN} (set PROXYGML_BIN)"
    tmp = tmp_path_factory.mktemp("data")
    src = os.environ.get("PROXYGML_FMNIST") or str(REPO / "data" / "fmnist_seen.h5")
    if not os.path.isfile(src):
        src = str(tmp / "fmnist_seen.h5")
        p = subprocess.run([BIN, "data", "fashion-mnist", src, "--protocol", "seen"],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"cannot convert Fashion-MNIST: {p.stderr}"
    seen = subset(src, tmp / "seen.h5", 3000, 1000)
    zs = subset(src, tmp / "zs.h5", 6000, 2000, train_keep=range(5), test_keep=range(5, 10), protocol="zeroshot")
    return seen, zs


@pytest.fixture(scope="session")
def sweep(fmnist, tmp_path_factory):
    """The sweep directory (see the module comment)."""
    root = tmp_path_factory.mktemp("runs") / "sweep"
    jobs = [(k, n, s) for k in (5, 10) for n in (2, 4) for s in (0, 1)] + [(5, 3, 0)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda j: train(root / f"k={j[0]}_N={j[1]}_seed={j[2]}", fmnist[0],
                                      sets=(f"k={j[0]}", f"N={j[1]}", f"seed={j[2]}")), jobs))
    with h5py.File(root / "k=5_N=3_seed=0" / "run.h5", "r+") as f:
        f.attrs["status"] = "running"
        f.attrs["end_time"] = ""
    (root / "logs").mkdir()   # as slurm/submit_sweep.sh leaves it: Slurm's own output, no run
    (root / "logs" / "slurm-7_0.out").write_text("")
    return root


@pytest.fixture(scope="session")
def failing(fmnist, sweep, tmp_path_factory):
    """A directory with a really failed run and a complete one."""
    root = tmp_path_factory.mktemp("runs") / "failing"
    train(root / "lr=1e30", fmnist[0], sets=("k=10", "N=4", "lr=1e30", "proxy_lr=1e30"), expect=3)
    shutil.copytree(sweep / "k=10_N=4_seed=0", root / "lr=0.001")
    return root


@pytest.fixture(scope="session")
def zeroshot(fmnist, tmp_path_factory):
    return train(tmp_path_factory.mktemp("runs") / "zs", fmnist[1], cfg="fmnist_zeroshot.cfg")
