"""Reading run files (docs/run-file.md) and finding them below a directory.

`load_run` reads the small parts (attributes, config, metrics, trace) into a
`Run`; the large datasets (embeddings, subgraphs, proxies) are read on demand
with `read_datasets`. Dataset files (docs/dataset-format.md) are read with
`read_test_split`. Nothing here writes.
"""
import datetime
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from . import AnalysisError

RUN_FILE = "run.h5"
FORMAT = "proxygml-run"
FORMAT_VERSION = 1


def _plain(value):
    """An HDF5 attribute as a Python value: str for strings, int/float for scalars."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _plain(value[()])
    return value


@dataclass
class Run:
    """One run file. `status` is the file's status, or `unreadable` (then `message` says why)."""
    path: str
    name: str                                    # path of the run directory relative to the searched dir
    status: str = "unreadable"
    message: str = ""
    attrs: dict = field(default_factory=dict)    # root attributes
    config: dict = field(default_factory=dict)   # group `config` attributes (every configuration key)
    metrics: dict = field(default_factory=dict)  # column -> float64 array, one row per evaluation
    columns: list = field(default_factory=list)  # metric columns in file order
    trace_loss: np.ndarray = field(default_factory=lambda: np.zeros(0))  # loss of every step

    @property
    def readable(self):
        """False for an unreadable file or a directory without one (no attributes to show)."""
        return self.status not in ("unreadable", "missing")

    @property
    def complete(self):
        return self.status == "complete"

    def get(self, key):
        """A root attribute (K, N, C, D, ...) or else a config key; None if neither."""
        if key in self.attrs:
            return self.attrs[key]
        return self.config.get(key)

    @property
    def seed(self):
        return self.config.get("seed")

    def final(self, metric):
        """The metric at the last evaluation (NaN if none)."""
        col = self.metrics.get(metric)
        return float(col[-1]) if col is not None and len(col) else float("nan")

    def best(self, metric):
        """The largest value of the metric over evaluations after training (epoch > 0); NaN if none."""
        col = self.metrics.get(metric)
        if col is None or not len(col):
            return float("nan")
        vals = col[self.metrics["epoch"] > 0]
        vals = vals[np.isfinite(vals)]
        return float(vals.max()) if len(vals) else float("nan")

    @property
    def wall_seconds(self):
        """end_time - start_time in seconds (NaN while running or if unparsable)."""
        try:
            fmt = "%Y-%m-%dT%H:%M:%SZ"
            t0 = datetime.datetime.strptime(self.attrs["start_time"], fmt)
            t1 = datetime.datetime.strptime(self.attrs["end_time"], fmt)
        except (KeyError, TypeError, ValueError):
            return float("nan")
        return (t1 - t0).total_seconds()

    @property
    def steps_per_epoch(self):
        """Training steps per epoch (from steps_done / epochs_done), or None before the first epoch."""
        steps, epochs = self.attrs.get("steps_done", 0), self.attrs.get("epochs_done", 0)
        return steps / epochs if epochs else None


def _open(path):
    if not os.path.exists(path):
        raise AnalysisError(f"no such file: {path}")
    if os.path.isdir(path):
        cand = os.path.join(path, RUN_FILE)
        if os.path.isfile(cand):
            path = cand
        else:
            raise AnalysisError(f"{path} is a directory without {RUN_FILE}")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise AnalysisError(f"not an HDF5 file: {path} ({e})") from None


def load_run(path, name=None):
    """Read a run file (or a run directory holding run.h5); AnalysisError if it is not one."""
    with _open(path) as f:
        fmt = _plain(f.attrs.get("format", ""))
        if fmt != FORMAT:
            raise AnalysisError(f"not a proxygml run file: {path} (format attribute {fmt!r})")
        version = _plain(f.attrs.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise AnalysisError(f"{path}: run file format_version {version} is newer than this analysis "
                                f"({FORMAT_VERSION})")
        run = Run(path=f.filename, name=name or os.path.basename(os.path.dirname(os.path.abspath(f.filename))))
        run.attrs = {k: _plain(v) for k, v in f.attrs.items()}
        run.status = run.attrs.get("status", "unknown")
        run.message = run.attrs.get("message", "")
        if "config" in f:
            run.config = {k: _plain(v) for k, v in f["config"].attrs.items()}
        if "metrics" in f:
            g = f["metrics"]
            cols = _plain(g.attrs.get("columns", ""))
            run.columns = [c for c in cols.split(",") if c] or sorted(g)
            run.metrics = {c: np.asarray(g[c][()], dtype=np.float64) for c in run.columns if c in g}
        if "epoch" not in run.metrics:
            run.metrics["epoch"] = np.zeros(0)
        if "trace/loss" in f:
            run.trace_loss = np.asarray(f["trace/loss"][()], dtype=np.float64)
    return run


def read_datasets(path, *names):
    """The named datasets of a run file as arrays; AnalysisError naming the first one missing."""
    with _open(path) as f:
        out = []
        for n in names:
            if n not in f:
                raise AnalysisError(f"{f.filename} has no dataset {n} (written after the first evaluation)")
            out.append(f[n][()])
    return out if len(out) > 1 else out[0]


def find_runs(runs_dir):
    """Every run.h5 below runs_dir as a Run (sorted by name), unreadable ones included with
    status `unreadable`. Only a directory holding a run.h5 is a run: a sweep's `logs/` is not,
    nor a task that never wrote one (`proxygml sweep status` lists those, with the reason).
    AnalysisError if runs_dir is not a directory or holds no run.h5 at all."""
    if not os.path.isdir(runs_dir):
        raise AnalysisError(f"no such directory: {runs_dir}")
    found = []
    for dirpath, dirnames, filenames in os.walk(runs_dir):
        dirnames.sort()
        rel = os.path.relpath(dirpath, runs_dir)
        name = os.path.basename(os.path.abspath(runs_dir)) if rel == "." else rel
        if RUN_FILE in filenames:
            path = os.path.join(dirpath, RUN_FILE)
            try:
                found.append(load_run(path, name))
            except (AnalysisError, OSError, KeyError, ValueError) as e:
                found.append(Run(path=path, name=name, status="unreadable", message=str(e)))
    if not found:
        raise AnalysisError(f"no {RUN_FILE} below {runs_dir}")
    return sorted(found, key=lambda r: r.name)


def read_test_split(dataset_path, rows=()):
    """(labels n, class_names, images of the given rows k x H x W x C uint8) of a dataset file's
    /test split; AnalysisError if it is not a dataset file or has no images (features only)."""
    if not os.path.isfile(dataset_path):
        raise AnalysisError(f"no such dataset file: {dataset_path}")
    try:
        f = h5py.File(dataset_path, "r")
    except OSError as e:
        raise AnalysisError(f"not an HDF5 file: {dataset_path} ({e})") from None
    with f:
        if "test" not in f or "labels" not in f["test"]:
            raise AnalysisError(f"not a proxygml dataset file: {dataset_path} (no /test/labels)")
        g = f["test"]
        labels = g["labels"][()].astype(np.int64)
        names = [_plain(s) for s in g["class_names"][()]] if "class_names" in g else []
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows):
            return labels, names, None
        if "images" not in g:
            raise AnalysisError(f"{dataset_path} has no /test/images (a features dataset): nothing to show")
        uniq, inverse = np.unique(rows, return_inverse=True)   # h5py wants increasing indices
        return labels, names, g["images"][uniq][inverse]


def class_names(run, dataset_path=None):
    """Class names: from the dataset file given, else from the run's `data` path if it exists
    (relative to the working directory), else `class i`. Returns a function id -> name."""
    if dataset_path and not os.path.isfile(dataset_path):
        raise AnalysisError(f"no such dataset file: {dataset_path}")
    names = []
    for p in (dataset_path, run.config.get("data")):
        if p and os.path.isfile(p):
            try:
                with h5py.File(p, "r") as f:
                    names = [_plain(s) for s in f["test/class_names"][()]]
                break
            except (OSError, KeyError):
                if p == dataset_path:
                    raise AnalysisError(f"cannot read class names from {p}") from None
    return lambda c: names[c] if 0 <= c < len(names) else f"class {c}"
