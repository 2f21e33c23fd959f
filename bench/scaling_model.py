"""The tables of bench/bench_scaling.sh: measured throughput of every layout
and variant (medians over rounds), the step-time model of docs/scaling.md
against the measured steps, and the model extrapolated to 8-256 nodes.

    scaling_model.py OUT ROUNDS "ARCHS" TRANSPORT... (shm, then bed names)

The model, per step of P ranks with one thread each:

    T = T_data + T_fwd + T_loss + T_bwd      (one rank at the per-rank batch, measured)
      + T_red(S)                             (bench-reduce on the same transport, S = 4 n_params)
      + T_adam / (P if sharded else 1)       (Adam over the whole block on one thread, measured)

T_red is a straight-line fit t = a + S/b over the bench-reduce sizes of
the variant's path (one allreduce, or reduce-scatter + allgather), and the
overlap is given no credit: the prediction is the same with and without.
"""
import statistics
import sys

import h5py
import numpy as np

PHASES = ["data", "forward", "loss", "backward", "allreduce", "optimizer"]
VARIANTS = [(0, 0), (1, 0), (0, 1), (1, 1)]


def run(path):
    f = h5py.File(path + "/run.h5", "r")
    steps = int(f.attrs["steps_done"])
    t = {p: float(f["timing"][p][0]) / steps for p in PHASES}
    t["sps"] = float(f["timing"]["samples_per_second"][0])
    t["n_params"] = int(f.attrs["n_params"])
    return t


def median_run(out, rounds, arch, name):
    runs = [run("%s/r%d/%s/%s" % (out, r, arch, name)) for r in range(1, rounds + 1)]
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


# bench-reduce's columns of each (shard_optimizer, overlap) path
COLUMNS = {(0, 0): "allreduce_ms", (1, 0): "rs_ag_ms", (0, 1): "iallreduce_ms", (1, 1): "irs_iag_ms"}


def reduce_fit(path):
    """{(shard, overlap): (alpha s, beta B/s)} from bench-reduce's lines"""
    pts = {v: [] for v in COLUMNS}
    for line in open(path):
        if not line.startswith("mib="):
            continue
        kv = dict(f.split("=") for f in line.split() if "=" in f)
        S = float(kv["mib"]) * 1048576
        for v, col in COLUMNS.items():
            pts[v].append((S, float(kv[col]) / 1e3))
    fit = {}
    for k, xy in pts.items():
        x, y = np.array(xy).T
        slope, icpt = np.polyfit(x, y, 1)
        fit[k] = (max(icpt, 0.0), 1.0 / slope)
    return fit


def main():
    out, rounds, archs, transports = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
    fits = {tr: reduce_fit("%s/reduce_%s.txt" % (out, tr)) for tr in transports}
    print("== the reduction alone (bench-reduce, 2 ranks): t = alpha + S/beta, per path (shard, overlap)")
    for tr, fit in fits.items():
        print("  %-14s " % tr + "   ".join("s%do%d: alpha %5.0f us beta %6.2f GB/s" % (v[0], v[1], fit[v][0] * 1e6, fit[v][1] / 1e9)
                                        for v in VARIANTS))
    errors = []
    for arch in archs:
        base = median_run(out, rounds, arch, "np1t2")
        cal = median_run(out, rounds, arch, "np1t1")
        S = 4.0 * cal["n_params"]
        print("\n== %s (%d parameters, %.2f MB of gradient), medians of %d rounds" % (arch, cal["n_params"], S / 1e6, rounds))
        print("  %-28s %9s %6s %8s %8s %6s   %s" % ("layout", "samples/s", "ratio", "step ms", "model ms", "err",
                                                  "per step ms: " + " ".join(PHASES)))
        print("  %-28s %9.0f %6s %8.3f %8s %6s   %s" % ("1 rank x 2 threads", base["sps"], "1.00",
              1e3 * sum(base[p] for p in PHASES), "", "", " ".join("%.3f" % (1e3 * base[p]) for p in PHASES)))
        for tr in transports:
            for shard, overlap in VARIANTS:
                m = median_run(out, rounds, arch, "%s_s%do%d" % (tr, shard, overlap))
                a, b = fits[tr][(shard, overlap)]
                model = (cal["data"] + cal["forward"] + cal["loss"] + cal["backward"] + a + S / b
                         + cal["optimizer"] / (2 if shard else 1))
                step = sum(m[p] for p in PHASES)
                err = (model - step) / step
                errors.append((arch, tr, shard, overlap, err))
                label = "2 x 1 %s shard %d overlap %d" % ("node" if tr == "shm" else tr.replace("bench", "bed "), shard, overlap)
                print("  %-28s %9.0f %6.2f %8.3f %8.3f %+5.0f%%   %s" % (label, m["sps"], m["sps"] / base["sps"], 1e3 * step,
                      1e3 * model, 100 * err, " ".join("%.3f" % (1e3 * m[p]) for p in PHASES)))
    worst = max(abs(e[-1]) for e in errors)
    print("\nmodel against measured: worst |error| %.0f%% over %d layouts (goal: within 20%%)" % (100 * worst, len(errors)))

    # Extrapolation: a CUB-like 10 M-parameter dense network, G = 32 per node
    # (weak scaling: the global batch grows with the nodes, as it must beyond
    # 32 nodes), one rank per node. Compute rate and Adam bandwidth from the
    # MLP calibration run of this machine; the links from the bed's fits.
    if "mlp" not in archs:
        return
    cal = median_run(out, rounds, "mlp", "np1t1")
    n_net = cal["n_params"]
    flops = 6.0 * n_net * 32   # forward + backward of a dense network, per 32 samples (the calibration batch)
    rate = flops / (cal["forward"] + cal["backward"])
    adam_bw = 16.0 * cal["n_params"] / cal["optimizer"]
    n = 10e6 + 100 * 12 * 512
    S = 4 * n
    t_comp = 6.0 * 10e6 * 32 / rate
    t_adam = 16.0 * n / adam_bw
    print("\n== extrapolated: CUB-like, 10 M-parameter dense network + 0.61 M proxy parameters, 32 samples per node")
    print("   compute %.1f GFLOP/s per node (measured, MLP), Adam %.1f GB/s (measured); ring reduction on each link:"
          % (rate / 1e9, adam_bw / 1e9))
    print("   T_red(P) = 2(P-1) alpha + 2(P-1)/P S/beta_bus, alpha and beta_bus from the 2-rank fit of each bed")
    links = [(tr, fits[tr][(1, 0)]) for tr in transports if tr != "shm"]
    print("  %6s %10s %10s" % ("nodes", "compute ms", "Adam ms") + "".join(" %24s" % ("%s: step ms / eff." % tr.replace("bench", "")) for tr, _ in links))
    for P in (8, 16, 32, 64, 128, 256):
        row = "  %6d %10.1f %10.2f" % (P, 1e3 * t_comp, 1e3 * t_adam / P)
        for tr, (a, b) in links:
            # the 2-rank fit holds one step of the ring: alpha per step, 2 S/2 bytes
            t_red = 2 * (P - 1) * a / 2 + 2.0 * (P - 1) / P * S / b
            t = t_comp + t_red + t_adam / P
            row += " %15.1f / %5.2f" % (1e3 * t, t_comp / t)
        print(row)


if __name__ == "__main__":
    main()
