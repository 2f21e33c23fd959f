/* check_metrics.c: `proxygml check-metrics FILE.h5`: kNN, Recall@k, MAP@R,
 * R-precision and NMI (include/metrics.h) recomputed from the inputs of an
 * HDF5 file in the layout of the golden tests/data/metrics.h5 and compared
 * with the expected values stored there. Exit 0 all match, 1 a mismatch,
 * 2 bad input. */
#include "tools.h"

#include "common.h"
#include "h5io.h"
#include "metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_usage(FILE *out) {
  fprintf(out,
          "usage: proxygml check-metrics FILE.h5\n"
          "\n"
          "Recomputes kNN, Recall@k, MAP@R, R-precision and NMI from FILE.h5 and compares them\n"
          "with the expected values stored there (layout of the golden metrics.h5).\n"
          "  required:  embeddings (n x D, finite), labels (n), ks (1..%d values >= 1), n >= 2\n"
          "  compared when present:  recall_at_k (len(ks)), map_at_r, r_precision (scalars),\n"
          "    R (n), knn (n x depth, depth <= n - 1), nmi_labels + nmi_assignment + nmi,\n"
          "    nmi2_labels + nmi2_assignment + nmi2\n"
          "exit status: 0 all within 1e-9 (knn, R: exactly equal), 1 a mismatch, 2 bad input\n",
          METRICS_MAXK);
}

static void fmt_shape(char *buf, size_t cap, int nd, const int64_t *dims) {
  if (nd == 0) { snprintf(buf, cap, "scalar"); return; }
  size_t o = 0;
  for (int i = 0; i < nd && o < cap; i++)
    o += (size_t)snprintf(buf + o, cap - o, i ? " x %lld" : "%lld", (long long)dims[i]);
}

/* shape of `name` must be nd x dims (nd = 0: a scalar, or one element) */
static int check_shape(hid_t f, const char *name, int nd, const int64_t *dims) {
  int got;
  int64_t gd[H5IO_MAXDIM];
  if (h5io_shape(f, name, &got, gd) != 0) return -1;
  int ok = nd == 0 ? (got == 0 || (got == 1 && gd[0] == 1)) : got == nd;
  for (int i = 0; ok && i < nd; i++) ok = gd[i] == dims[i];
  if (ok) return 0;
  char a[64], b[64];
  fmt_shape(a, sizeof a, got, gd);
  fmt_shape(b, sizeof b, nd, dims);
  return err_set("dataset '%s' has shape %s, expected %s", name, a, b);
}

static int read_f64_checked(hid_t f, const char *name, int nd, const int64_t *dims, double *buf) {
  size_t count = 1;
  for (int i = 0; i < nd; i++) count *= (size_t)dims[i];
  if (check_shape(f, name, nd, dims) != 0 || h5io_read(f, name, H5T_NATIVE_DOUBLE, buf, count) != 0) return -1;
  for (size_t i = 0; i < count; i++)
    if (!isfinite(buf[i])) return err_set("dataset '%s' holds a NaN or infinity at element %zu", name, i);
  return 0;
}

static int read_i32_checked(hid_t f, const char *name, int nd, const int64_t *dims, int *buf) {
  size_t count = 1;
  for (int i = 0; i < nd; i++) count *= (size_t)dims[i];
  if (check_shape(f, name, nd, dims) != 0) return -1;
  return h5io_read(f, name, H5T_NATIVE_INT, buf, count);
}

/* length of a 1-D dataset, checked to be in [lo, hi] */
static int len_1d(hid_t f, const char *name, int64_t lo, int64_t hi, int *len) {
  int nd;
  int64_t d[H5IO_MAXDIM];
  if (h5io_shape(f, name, &nd, d) != 0) return -1;
  if (nd != 1) return err_set("dataset '%s' must be one-dimensional (it has %d dimensions)", name, nd);
  if (d[0] < lo || d[0] > hi)
    return err_set("dataset '%s' has %lld elements, expected %lld to %lld", name, (long long)d[0], (long long)lo,
                   (long long)hi);
  *len = (int)d[0];
  return 0;
}

static int report(const char *name, double err, double tol) {
  int ok = err <= tol;
  printf("  %-14s max abs err %.3e  %s\n", name, err, ok ? "ok" : "MISMATCH");
  return ok;
}

/* one expected NMI: prefix_labels, prefix_assignment (m each) and prefix */
typedef struct {
  const char *name;
  int present, m;
  int *lab, *asg;   /* m, m */
  double want;
} NmiCase;

/* reads the triple if any of it is present (then all of it must be) */
static int read_nmi(hid_t f, NmiCase *c) {
  char nl[64], na[64];
  snprintf(nl, sizeof nl, "%s_labels", c->name);
  snprintf(na, sizeof na, "%s_assignment", c->name);
  const char *names[3] = {nl, na, c->name};
  for (int i = 0; i < 3; i++) c->present += h5io_has(f, names[i]);
  if (!c->present) return 0;
  for (int i = 0; i < 3; i++)
    if (!h5io_has(f, names[i]))
      return err_set("dataset '%s' is missing (other %s datasets are present)", names[i], c->name);
  if (len_1d(f, nl, 1, INT32_MAX, &c->m) != 0) return -1;
  const int64_t dm[1] = {c->m};
  c->lab = xmalloc((size_t)c->m * sizeof *c->lab);
  c->asg = xmalloc((size_t)c->m * sizeof *c->asg);
  if (read_i32_checked(f, nl, 1, dm, c->lab) != 0 || read_i32_checked(f, na, 1, dm, c->asg) != 0) return -1;
  return read_f64_checked(f, c->name, 0, NULL, &c->want);
}

int tool_check_metrics(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) { check_usage(stdout); return 0; }
  if (argc != 2 || argv[1][0] == '-') { check_usage(stderr); return 2; }
  const char *path = argv[1];
  hid_t f = H5I_INVALID_HID;
  float *emb = NULL;                             /* n x D */
  int *labels = NULL, *R = NULL;                 /* n, n */
  int *knn_want = NULL, *knn_got = NULL;         /* n x kk each */
  double *recall = NULL;                         /* nk */
  MetricsEval ev = {0};
  MetricsKnn kw = {0};
  NmiCase nmi[2] = {{.name = "nmi"}, {.name = "nmi2"}};
  int rc = 2, nk = 0, ks[METRICS_MAXK];
  int nd;
  int64_t dims[H5IO_MAXDIM];

  if (h5io_open(path, &f) != 0) {
    fprintf(stderr, "check-metrics: %s\n", err_msg());
    return 2;
  }
  /* --- the inputs */
  if (h5io_shape(f, "embeddings", &nd, dims) != 0) goto bad;
  if (nd != 2) { err_set("dataset 'embeddings' must be n x D (it has %d dimensions)", nd); goto bad; }
  if (dims[0] < 2 || dims[1] < 1 || dims[0] > INT32_MAX || dims[1] > INT32_MAX) {
    err_set("dataset 'embeddings' is %lld x %lld: need n >= 2 items and D >= 1", (long long)dims[0],
            (long long)dims[1]);
    goto bad;
  }
  const int n = (int)dims[0], D = (int)dims[1];
  const int64_t dn[1] = {n};
  emb = xmalloc_f32((size_t)n * D);
  if (h5io_read(f, "embeddings", H5T_NATIVE_FLOAT, emb, (size_t)n * D) != 0) goto bad;
  for (size_t i = 0; i < (size_t)n * D; i++)
    if (!isfinite(emb[i])) {
      err_set("dataset 'embeddings' holds a NaN or infinity (row %zu)", i / (size_t)D);
      goto bad;
    }
  labels = xmalloc((size_t)n * sizeof *labels);
  if (read_i32_checked(f, "labels", 1, dn, labels) != 0) goto bad;
  if (len_1d(f, "ks", 1, METRICS_MAXK, &nk) != 0 || h5io_read(f, "ks", H5T_NATIVE_INT, ks, (size_t)nk) != 0) goto bad;
  for (int i = 0; i < nk; i++)
    if (ks[i] < 1) { err_set("dataset 'ks' holds k = %d (need k >= 1)", ks[i]); goto bad; }

  /* --- the expected values: read (and validate) all before computing anything */
  const int64_t dk[1] = {nk};
  double map_want = 0, rprec_want = 0;
  int has_recall = h5io_has(f, "recall_at_k"), has_map = h5io_has(f, "map_at_r");
  int has_rprec = h5io_has(f, "r_precision"), has_R = h5io_has(f, "R"), has_knn = h5io_has(f, "knn");
  recall = xmalloc_f64((size_t)nk);
  if (has_recall && read_f64_checked(f, "recall_at_k", 1, dk, recall) != 0) goto bad;
  if (has_map && read_f64_checked(f, "map_at_r", 0, NULL, &map_want) != 0) goto bad;
  if (has_rprec && read_f64_checked(f, "r_precision", 0, NULL, &rprec_want) != 0) goto bad;
  if (has_R) {
    R = xmalloc((size_t)n * sizeof *R);
    if (read_i32_checked(f, "R", 1, dn, R) != 0) goto bad;
  }
  int kk = 0;
  if (has_knn) {
    if (h5io_shape(f, "knn", &nd, dims) != 0) goto bad;
    if (nd != 2 || dims[0] != n || dims[1] < 1 || dims[1] > n - 1) {
      char a[64];
      fmt_shape(a, sizeof a, nd, dims);
      err_set("dataset 'knn' has shape %s, expected %d x depth with 1 <= depth <= %d", a, n, n - 1);
      goto bad;
    }
    kk = (int)dims[1];
    knn_want = xmalloc((size_t)n * kk * sizeof *knn_want);
    knn_got = xmalloc((size_t)n * kk * sizeof *knn_got);
    if (h5io_read(f, "knn", H5T_NATIVE_INT, knn_want, (size_t)n * kk) != 0) goto bad;
  }
  for (int i = 0; i < 2; i++)
    if (read_nmi(f, &nmi[i]) != 0) goto bad;
  if (!(has_recall || has_map || has_rprec || has_R || has_knn || nmi[0].present || nmi[1].present)) {
    err_set("no expected values to compare (recall_at_k, map_at_r, r_precision, R, knn, nmi, nmi2)");
    goto bad;
  }

  /* --- compute and compare */
  int all_ok = 1, nchecked = 0;
  printf("check-metrics %s: n = %d, D = %d\n", path, n, D);
  if (has_recall || has_map || has_rprec || has_R) {
    MetricsSums s;
    Metrics m;
    metrics_eval_init(&ev, labels, n, D, ks, nk, 0, 0);
    metrics_sums_reset(&s, ks, nk);
    metrics_sums_add_range(&s, &ev, emb, labels, 0, n);
    metrics_finish(&m, &s);
    if (has_recall) {
      double err = 0;
      for (int i = 0; i < nk; i++) err = fmax(err, fabs(m.recall[i] - recall[i]));
      all_ok &= report("recall_at_k", err, 1e-9);
      nchecked++;
    }
    /* no query with R > 0 makes MAP@R NaN: any expected value is then a mismatch */
    if (has_map) { all_ok &= report("map_at_r", isnan(m.map_r) ? INFINITY : fabs(m.map_r - map_want), 1e-9); nchecked++; }
    if (has_rprec) {
      all_ok &= report("r_precision", isnan(m.r_precision) ? INFINITY : fabs(m.r_precision - rprec_want), 1e-9);
      nchecked++;
    }
    if (has_R) {
      double err = 0;
      for (int i = 0; i < n; i++) err = fmax(err, fabs((double)ev.R[i] - R[i]));
      all_ok &= report("R", err, 0);
      nchecked++;
    }
  }
  if (has_knn) {
    metrics_knn_init(&kw, D, kk, 0, 0);
    metrics_knn(knn_got, &kw, emb, n, 0, n);
    double err = 0;
    size_t bad_n = 0;
    for (size_t i = 0; i < (size_t)n * kk; i++) {
      err = fmax(err, fabs((double)knn_got[i] - knn_want[i]));
      bad_n += knn_got[i] != knn_want[i];
    }
    all_ok &= report("knn", err, 0);
    if (bad_n) printf("  %-14s %zu of %zu indices differ\n", "", bad_n, (size_t)n * kk);
    nchecked++;
  }
  for (int i = 0; i < 2; i++) {
    if (!nmi[i].present) continue;
    all_ok &= report(nmi[i].name, fabs(metrics_nmi(nmi[i].lab, nmi[i].asg, nmi[i].m) - nmi[i].want), 1e-9);
    nchecked++;
  }
  printf("check-metrics: %s (%d quantities)\n", all_ok ? "all match" : "MISMATCH", nchecked);
  rc = all_ok ? 0 : 1;
  goto done;

bad:
  fprintf(stderr, "check-metrics: %s: %s\n", path, err_msg());
  rc = 2;
done:
  metrics_eval_free(&ev);
  metrics_knn_free(&kw);
  free(emb); free(labels); free(R); free(knn_want); free(knn_got); free(recall);
  for (int i = 0; i < 2; i++) { free(nmi[i].lab); free(nmi[i].asg); }
  if (f >= 0) H5Fclose(f);
  return rc;
}
