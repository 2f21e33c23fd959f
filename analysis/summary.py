"""Summary of a sweep: one row per swept point, mean ± std over seeds; unfinished runs listed.

Swept keys: K and N (resolved root attributes) always, plus every config key whose value
differs between the runs, except `seed` (averaged over), `k` and `N` (represented by K and
N), `config`/`config_hash` (derived) and the keys that do not change the result (`name`,
`threads`, `checkpoint_every`, `check_sync_every`, `collective_timeout`, `dump_grads`,
`shard_optimizer`, `overlap`, `bucket_mib`, `shard_proxies`). Per run: final =
last evaluation, best = max over evaluations with epoch > 0. Only complete runs enter the
means; every other run (running, failed, preempted, unreadable) is listed with its status
and message.
"""
import csv
import io
import math

import numpy as np

from . import AnalysisError

METRICS = ["recall_at_1", "map_at_r", "r_precision", "nmi"]
NOT_SWEPT = {"seed", "k", "N", "config", "config_hash", "name", "threads", "checkpoint_every",
             "check_sync_every", "collective_timeout", "dump_grads", "shard_optimizer", "overlap", "bucket_mib",
             "shard_proxies"}


def swept_keys(runs):
    """["K", "N", other config keys that differ between the readable runs (sorted)]."""
    readable = [r for r in runs if r.readable]
    keys = sorted({k for r in readable for k in r.config} - NOT_SWEPT)
    # keys newer than some run files (init_from, order_from: "" when unset) count as unset there
    differ = [k for k in keys if len({repr(r.config.get(k, "")) for r in readable}) > 1]
    return ["K", "N"] + differ


def _sort_value(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def mean_std(values):
    """(mean, sample std (ddof 1; NaN for one value), n) of the finite values; NaNs if none."""
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=np.float64)
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"), len(v)


class Summary:
    """`points`: one dict per swept point; `unfinished`: the runs that are not complete."""

    def __init__(self, runs, metric="map_at_r", metrics=None):
        self.runs = runs
        self.metric = metric
        self.metrics = list(metrics or METRICS)
        if metric not in self.metrics:
            self.metrics.append(metric)
        known = {c for r in runs for c in r.columns}
        if known and metric not in known:
            raise AnalysisError(f"unknown metric {metric!r} (the run files have: {', '.join(sorted(known))})")
        self.keys = swept_keys(runs)
        groups = {}
        for r in runs:
            if r.readable:
                groups.setdefault(tuple(r.get(k) for k in self.keys), []).append(r)
        self.points = [self._point(p, rs) for p, rs in groups.items()]
        self.points.sort(key=lambda p: tuple(_sort_value(v) for v in p["values"]))
        self.points.sort(key=lambda p: -p[f"{metric}_final_mean"] if math.isfinite(p[f"{metric}_final_mean"])
                         else math.inf)
        self.unfinished = [r for r in runs if not r.complete]

    def _point(self, values, runs):
        done = [r for r in runs if r.complete]
        counts = {}
        for r in runs:
            counts[r.status] = counts.get(r.status, 0) + 1
        status = "complete" if len(counts) == 1 and done else \
            ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        p = {"values": values, "n_seeds": len(done), "seeds": sorted(r.seed for r in done),
             "status": status, "wall_seconds": mean_std([r.wall_seconds for r in done])[0],
             "runs": [r.name for r in runs]}
        for m in self.metrics:
            for which in ("final", "best"):
                mean, std, _ = mean_std([getattr(r, which)(m) for r in done])
                p[f"{m}_{which}_mean"], p[f"{m}_{which}_std"] = mean, std
        return p

    # --- output -----------------------------------------------------------------------------
    def csv_text(self):
        """CSV: a `point` row per swept point, then a `run` row per run that is not complete."""
        cols = ["row"] + self.keys + ["seed", "n_seeds", "status", "wall_seconds"]
        for m in self.metrics:
            cols += [f"{m}_final_mean", f"{m}_final_std", f"{m}_best_mean", f"{m}_best_std"]
        cols += ["runs", "message"]
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(cols)
        fmt = lambda x: "" if isinstance(x, float) and not math.isfinite(x) else x  # noqa: E731
        for p in self.points:
            row = ["point"] + list(p["values"]) + [" ".join(map(str, p["seeds"])), p["n_seeds"], p["status"],
                                                   fmt(p["wall_seconds"])]
            for m in self.metrics:
                row += [fmt(p[f"{m}_{w_}_{s}"]) for w_ in ("final", "best") for s in ("mean", "std")]
            w.writerow(row + [";".join(p["runs"]), ""])
        for r in self.unfinished:
            row = ["run"] + [r.get(k) if r.readable else "" for k in self.keys]
            row += [r.seed if r.seed is not None else "", "", r.status, fmt(r.wall_seconds)]
            for m in self.metrics:
                row += [fmt(r.final(m)), "", fmt(r.best(m)), ""]
            w.writerow(row + [r.name, r.message])
        return out.getvalue()

    def markdown(self, title="Sweep summary"):
        def ms(p, m, which):
            mean, std = p[f"{m}_{which}_mean"], p[f"{m}_{which}_std"]
            if not math.isfinite(mean):
                return "–"
            return f"{mean:.4f} ± {std:.4f}" if math.isfinite(std) else f"{mean:.4f}"

        n_points = len(self.points)
        lines = [f"# {title}", "",
                 f"{len(self.runs)} run directories, {n_points} swept points; swept keys: {', '.join(self.keys)}. "
                 f"final = last evaluation, best = max over epochs ≥ 1; mean ± std (sample) over the seeds "
                 f"of complete runs. Sorted by final {self.metric}.", ""]
        head = self.keys + ["seeds"] + [f"{m} {w}" for m in self.metrics for w in ("final", "best")] + \
            ["status", "wall s"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for p in self.points:
            cells = [str(v) for v in p["values"]] + [str(p["n_seeds"])]
            cells += [ms(p, m, w) for m in self.metrics for w in ("final", "best")]
            wall = p["wall_seconds"]
            cells += [p["status"], f"{wall:.0f}" if math.isfinite(wall) else "–"]
            lines.append("| " + " | ".join(cells) + " |")
        if self.unfinished:
            lines += ["", f"## Runs not complete ({len(self.unfinished)})", "",
                      "Not in the means above.", "",
                      "| run | " + " | ".join(self.keys) + " | seed | status | epochs done | message |",
                      "|" + "---|" * (len(self.keys) + 5)]
            for r in self.unfinished:
                vals = [str(r.get(k)) if r.readable else "" for k in self.keys]
                epochs = f"{r.attrs.get('epochs_done', '?')}/{r.config.get('epochs', '?')}" if r.readable else ""
                msg = (r.message or "").replace("|", "\\|").replace("\n", " ")
                lines.append(f"| {r.name} | " + " | ".join(vals) +
                             f" | {r.seed if r.seed is not None else ''} | {r.status} | {epochs} | {msg} |")
        return "\n".join(lines) + "\n"
