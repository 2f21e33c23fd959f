"""The comparisons of the rank-invariance tests (test_np_invariance.sh,
test_two_node.sh), run under Debian's /usr/bin/python3 (h5py, numpy).

  compare_step.py step ARCH STATE_DIR REF_DIR LABEL:NP:DIR...
      One training step from one state (STATE_DIR/run.h5), each run in a
      directory holding grads.h5 (dump_grads=1) and run.h5: every LABEL run,
      recorded with NP ranks, against the reference run REF_DIR. Exit 0 all
      agree, 1 a check failed, 3 the batch holds a top-K near-tie (the
      comparison says nothing about data parallelism: try another state).
  compare_step.py same WHAT RUN_A RUN_B
      Two run files bitwise equal in the trace, parameters, embeddings,
      metrics and proxies; WHAT names the pair in the verdict line.

The bounds and their reasons are in the comments below and in
docs/scaling.md (np-invariance).
"""
import sys

import h5py
import numpy as np

ok = True


def check(cond, what):
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok &= bool(cond)


def step(arch, state_dir, ref_dir, specs):
    def load(d):
        return h5py.File(d + "/grads.h5", "r"), h5py.File(d + "/run.h5", "r")

    runs = [(label, int(n), *load(d)) for label, n, d in (s.split(":", 2) for s in specs)]
    g1f, r1 = load(ref_dir)
    nb = int(g1f.attrs["n_backbone"])
    g1 = g1f["grads"][0].astype(np.float64)
    p1 = r1["model/parameters"][()].astype(np.float64)
    cfg = r1["config"].attrs
    lr = np.full(g1.shape, float(cfg["lr"]))
    lr[nb:] = float(cfg["proxy_lr"])
    eps = float(cfg["eps"])
    u = 2.0 ** -24
    # The subgraphs must be the same on every rank count for the gradients to
    # agree. The similarities (dot products of unit vectors) differ between
    # rank counts only by float rounding, below 1e-6 here, so a least top-K
    # margin above 1e-5 fixes the selection; a state with a nearer tie is not
    # a test of data parallelism but of tie-breaking, and another seed is tried.
    margin = min([float(g1f["topk_margin"][0])] + [float(r[2]["topk_margin"][0]) for r in runs])
    if margin <= 1e-5:
        print("note %s: least top-K margin %.2e <= 1e-5: a near-tie, trying another state" % (arch, margin))
        return 3
    if np.isinf(margin):
        check(True, "%s: no subgraph selection (a baseline loss): nothing can flip" % arch)
    else:
        check(True, "%s: least top-K margin of the batch %.2e > 1e-5: the selections cannot differ" % (arch, margin))
    for label, n, gf, r in runs:
        check(int(gf.attrs["ranks"]) == n and int(r.attrs["ranks"]) == n, "%s: %s recorded" % (arch, label))
        g = gf["grads"][0].astype(np.float64)
        # Each gradient entry is a sum over the global batch, split into P
        # partial sums and added by the allreduce in another order. Reordering
        # a float32 sum of n terms moves it by at most 2 n u sum|t| (n = 96:
        # 1.1e-5 sum|t|), and the per-sample terms, computed from embeddings
        # equal to float rounding, add a few u more. Measured: max|diff| /
        # max|g| about 1e-7 to 1e-6; the bound 1e-4 leaves room for sum|t| up
        # to ~10 max|g|, while a wrong divisor or a missing rank's part moves
        # it by O(1).
        for name, sl in (("backbone", slice(0, nb)), ("proxies", slice(nb, None))):
            rel = np.max(np.abs(g[sl] - g1[sl])) / np.max(np.abs(g1[sl]))
            check(rel <= 1e-4, "%s: %s %s gradient: max|diff| / max|g| = %.2e <= 1e-4" % (arch, label, name, rel))
        # the loss itself: each rank's share, summed with the gradients
        l1, l = float(r1["trace/loss"][0]), float(r["trace/loss"][0])
        check(abs(l - l1) <= 1e-5 * max(1, abs(l1)), "%s: %s loss %.7g vs %.7g (1e-5 relative)" % (arch, label, l, l1))
        # First Adam step: p -= lr g'/(|g'| + eps), g' = g + wd p; that map is
        # 1/eps-Lipschitz in g, so |dp| <= lr/eps |dg| + the float32 rounding
        # of the update and of p (a few u each).
        p = r["model/parameters"][()].astype(np.float64)
        bound = lr / eps * np.abs(g - g1) + 4 * u * (np.abs(p1) + lr)
        excess = np.max(np.abs(p - p1) - bound)
        check(excess <= 0, "%s: %s parameters after one Adam step within lr/eps |dg| + 4u(|p| + lr) (worst excess %.2e)"
              % (arch, label, excess))
        check(np.max(np.abs(p - p1)) > 0 or np.max(np.abs(g - g1)) == 0,
              "%s: %s the parameters moved as the gradients did" % (arch, label))
    # the step moved the parameters at all (the comparison above is not vacuous)
    p0 = h5py.File(state_dir + "/run.h5", "r")["model/parameters"][()]
    check(np.max(np.abs(p1 - p0)) > 1e-5, "%s: the step changed the parameters (max %.2e)" % (arch, np.max(np.abs(p1 - p0))))
    return 0 if ok else 1


def same(what, run_a, run_b):
    a, b = (h5py.File(f, "r") for f in (run_a, run_b))
    keys = ("trace/loss", "model/parameters", "embeddings/test", "metrics/map_at_r", "metrics/nmi", "proxies/values")
    equal = [k for k in keys if k in a and k in b and np.array_equal(a[k][()], b[k][()], equal_nan=True)]
    check(len(equal) == len(keys), "%s are bitwise equal in %s" % (what, ", ".join(equal)))
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "step":
        sys.exit(step(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
    if len(sys.argv) == 5 and sys.argv[1] == "same":
        sys.exit(same(*sys.argv[2:]))
    sys.exit(__doc__)
