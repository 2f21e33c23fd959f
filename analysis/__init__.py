"""analysis: read, summarise and plot the run files (`run.h5`) of `proxygml train`.

    /usr/bin/python3 -m analysis summarize runs/sweep --md summary.md
    scripts/analyze heatmap runs/sweep --metric map_at_r

Modules: `runs` reads run files, `summary` tabulates a sweep, `proxies`
measures proxy usage, `plots` draws the pictures, `__main__` is the CLI.
Uses only h5py, numpy, matplotlib (Agg) and scikit-learn (Debian 12 packages).
See docs/analysis.md and docs/run-file.md.
"""


class AnalysisError(Exception):
    """Bad input (missing file, not a run file, nothing to analyse): one line, exit 2."""
