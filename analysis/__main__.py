"""CLI: /usr/bin/python3 -m analysis COMMAND ... (or scripts/analyze COMMAND ...).

Exit status 0 ok, 2 bad input (one line on stderr: missing file, not a run file, no runs).
Picture commands write one file and print its path (last line of stdout).
"""
import argparse
import os
import sys

from . import AnalysisError
from .runs import class_names, find_runs, load_run
from .summary import METRICS, Summary


def _out_path(args, default_dir, stem):
    """--out if given, else DEFAULT_DIR/STEM.FORMAT."""
    if args.out:
        ext = os.path.splitext(args.out)[1].lstrip(".").lower()
        if ext not in ("png", "svg"):
            raise AnalysisError(f"--out {args.out}: the name must end in .png or .svg")
        if args.format and args.format != ext:
            raise AnalysisError(f"--out {args.out} does not match --format {args.format}")
        return args.out
    return os.path.join(default_dir, f"{stem}.{args.format or 'png'}")


def _run_dir(path):
    return path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))


def _where(items):
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AnalysisError(f"--where {item}: expected KEY=VALUE")
        out[key] = value
    return out


def cmd_summarize(args):
    s = Summary(find_runs(args.runs_dir), metric=args.metric)
    md = s.markdown(title=f"Sweep summary: {os.path.basename(os.path.abspath(args.runs_dir))}")
    for path, text in ((args.csv, s.csv_text()), (args.md, md)):
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    sys.stdout.write(md)


def cmd_heatmap(args):
    from .plots import heatmap_figure, save_figure
    fig = heatmap_figure(find_runs(args.runs_dir), args.metric, args.x, args.y, args.value, _where(args.where))
    print(save_figure(fig, _out_path(args, args.runs_dir, f"heatmap_{args.metric}_{args.value}")))


def cmd_curves(args):
    from .plots import curves_figure, save_figure
    runs = [load_run(p) for p in args.runs]
    dirs = [_run_dir(p) for p in args.runs]
    default = dirs[0] if len(dirs) == 1 else os.path.commonpath(dirs)
    fig = curves_figure(runs, args.metrics.split(",") if args.metrics else None)
    print(save_figure(fig, _out_path(args, default, "curves")))


def cmd_embed(args):
    from .plots import embed_figure, save_figure
    run = load_run(args.run)
    fig = embed_figure(run, args.max_points, args.seed, class_names(run, args.data), args.threads)
    print(save_figure(fig, _out_path(args, _run_dir(args.run), "embed")))


def cmd_retrieval(args):
    from .plots import retrieval_figure, save_figure
    run = load_run(args.run)
    data = args.data or run.config.get("data", "")
    if not args.data and not os.path.isfile(data):
        raise AnalysisError(f"the run's dataset {data!r} is not found from here: give --data DATASET.h5")
    fig = retrieval_figure(run, data, args.queries, args.k, args.seed)
    print(save_figure(fig, _out_path(args, _run_dir(args.run), "retrieval")))


def cmd_proxies(args):
    from .plots import proxies_figure, save_figure
    from .proxies import proxy_usage, usage_csv, usage_report
    run = load_run(args.run)
    name = class_names(run, args.data)
    u = proxy_usage(run.path)
    print(usage_report(u, name))
    if args.csv:
        with open(args.csv, "w", encoding="utf-8") as f:
            f.write(usage_csv(u, name))
    fig = proxies_figure(u, name, title=f"proxy usage: {run.name}")
    print(save_figure(fig, _out_path(args, _run_dir(args.run), "proxies")))


def cmd_frontier(args):
    from .frontier import frontier_figure, frontier_markdown, frontier_points
    from .plots import save_figure
    points, skipped = frontier_points(find_runs(args.runs_dir))
    title = args.title or os.path.basename(os.path.abspath(args.runs_dir))
    md = frontier_markdown(points, skipped, title=f"Frontier: {title}")
    if args.md:
        with open(args.md, "w", encoding="utf-8") as f:
            f.write(md)
    sys.stdout.write(md)
    print(save_figure(frontier_figure(points, title), _out_path(args, args.runs_dir, "frontier")))


def build_parser():
    p = argparse.ArgumentParser(prog="analysis", description="Summaries and pictures of proxygml run files "
                                "(run.h5). Exit 0 ok, 2 bad input.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def picture(sp):
        sp.add_argument("--out", help="output file (.png or .svg); default: next to the input")
        sp.add_argument("--format", choices=["png", "svg"], help="picture format (default png)")

    s = sub.add_parser("summarize", help="table of a sweep: one row per swept point, mean ± std over seeds",
                       description="Find every run.h5 below RUNS_DIR; one row per swept point (config keys that "
                       "differ, plus K and N), final and best of each metric, mean ± std over seeds of complete "
                       "runs; runs not complete are listed separately. Prints Markdown.")
    s.add_argument("runs_dir", metavar="RUNS_DIR")
    s.add_argument("--csv", metavar="OUT.csv", help="also write the table as CSV")
    s.add_argument("--md", metavar="OUT.md", help="also write the Markdown to a file")
    s.add_argument("--metric", default="map_at_r", help="sort by this metric (final, descending); "
                   f"shown besides {', '.join(METRICS)} (default map_at_r)")
    s.set_defaults(func=cmd_summarize)

    s = sub.add_parser("heatmap", help="a metric over a grid of two keys (default K x N), mean over seeds")
    s.add_argument("runs_dir", metavar="RUNS_DIR")
    s.add_argument("--metric", default="map_at_r")
    s.add_argument("--x", default="K", help="key on the x axis (default K)")
    s.add_argument("--y", default="N", help="key on the y axis (default N)")
    s.add_argument("--value", choices=["final", "best"], default="final")
    s.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="keep only runs with this key value (repeatable); needed when other keys were swept")
    picture(s)
    s.set_defaults(func=cmd_heatmap)

    s = sub.add_parser("frontier", help="R@1 and MAP@R against the total number of proxies, one line per loss",
                       description="Find every run.h5 below RUNS_DIR; group the complete runs by loss and M = "
                       "C x proxies per class, pool the seeds; print a Markdown table and draw R@1, MAP@R and "
                       "training seconds per epoch against M (docs/baselines.md).")
    s.add_argument("runs_dir", metavar="RUNS_DIR")
    s.add_argument("--md", metavar="OUT.md", help="also write the table to a file")
    s.add_argument("--title", help="title of the figure and table (default: the directory's name)")
    picture(s)
    s.add_argument("-o", dest="out", help="same as --out")
    s.set_defaults(func=cmd_frontier)

    s = sub.add_parser("curves", help="loss and metrics per epoch of some runs, one panel per quantity")
    s.add_argument("runs", nargs="+", metavar="RUN.h5")
    s.add_argument("--metrics", help=f"comma-separated metric columns (default {','.join(METRICS)})")
    picture(s)
    s.set_defaults(func=cmd_curves)

    s = sub.add_parser("embed", help="t-SNE of the test embeddings with the proxies")
    s.add_argument("run", metavar="RUN.h5")
    s.add_argument("--max-points", type=int, default=3000, help="test embeddings sampled (default 3000)")
    s.add_argument("--seed", type=int, default=0, help="seed of the sample and of t-SNE")
    s.add_argument("--threads", type=int, default=1, help="OpenMP threads of t-SNE (default 1: on busy "
                   "shared cores more threads were many times slower)")
    s.add_argument("--data", metavar="DATASET.h5", help="dataset file for class names (default: the run's data)")
    picture(s)
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser("retrieval", help="query images and their top-k neighbours")
    s.add_argument("run", metavar="RUN.h5")
    s.add_argument("--data", metavar="DATASET.h5", help="the run's dataset file (default: the run's data key, "
                   "relative to the working directory)")
    s.add_argument("--queries", type=int, default=8)
    s.add_argument("--k", type=int, default=5)
    s.add_argument("--seed", type=int, default=0, help="seed of the query sample")
    picture(s)
    s.set_defaults(func=cmd_retrieval)

    s = sub.add_parser("proxies", help="proxy usage: selection counts, dead proxies, purity")
    s.add_argument("run", metavar="RUN.h5")
    s.add_argument("--data", metavar="DATASET.h5", help="dataset file for class names (default: the run's data)")
    s.add_argument("--csv", metavar="OUT.csv", help="also write the per-proxy table")
    picture(s)
    s.set_defaults(func=cmd_proxies)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ("max_points", "queries", "k", "threads"):
        if getattr(args, name, 1) < 1:
            print(f"analysis: --{name.replace('_', '-')} must be at least 1", file=sys.stderr)
            return 2
    try:
        args.func(args)
    except AnalysisError as e:
        print(f"analysis {args.command}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
