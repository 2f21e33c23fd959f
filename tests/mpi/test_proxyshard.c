/* test_proxyshard.c: under mpirun (np = 1, 2, 3), the class-sharded loss
 * equals the replicated one (include/proxygml.h) run on the whole global
 * batch: the same subgraph of every row, the same loss, the same gradients
 * of the embeddings and of the proxies, for class counts that do not divide
 * over the ranks, K > N, K = N, K < N, the regulariser, a large scale, a row
 * whose whole top-K lies on one rank, exact ties at the K-th place, and
 * similarities that differ only in their last bits.
 *
 * What is guaranteed: both compute the same float32 similarities up to the
 * GEMM's grouping of D products (a few ulps), then the same selection rule,
 * the same per-class sums in the same order and the softmax in double. So
 * a subgraph can differ only where two similarities lie within that
 * rounding: the random cases' data are asserted to keep every row's
 * replicated top-K margin above 1e-4 (far above a few ulps of values in
 * [-1, 1]), and the tie and close cases need no margin, whose similarities are exact (one-hot embeddings
 * against integer proxies: one exact product, an exactly rounded norm and
 * quotient, whatever the grouping). Values then agree to a few ulps times
 * the softmax's sensitivity, s N: the bound used is 2e-5 * max(1, s N)
 * relative to the largest reference magnitude. Exit status: the verdict. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dist.h"
#include "proxygml.h"
#include "proxyshard.h"
#include "rng.h"

static int g_ok = 1;
static void verdict(int rank, int cond, const char *what) {
  if (!cond) g_ok = 0;
  if (rank == 0 || !cond) printf("%s [rank %d] %s\n", cond ? "ok  " : "FAIL", rank, what);
  fflush(stdout);
}

typedef enum { DATA_RANDOM, DATA_ONE_RANK, DATA_TIES, DATA_CLOSE } DataKind;

typedef struct {
  const char *name;
  int G, D, C, N, K;
  float lambda, scale;
  DataKind data;
} Case;

/* the same global batch and proxies on every rank */
static void make_data(const Case *c, float *x, int *y, float *p) {
  Rng r;
  rng_init(&r, (uint64_t)(c->C * 131 + c->K * 7 + c->N));
  const int M = c->C * c->N, D = c->D;
  for (int b = 0; b < c->G; b++) y[b] = (int)rng_below(&r, (uint32_t)c->C);
  if (c->data == DATA_TIES) {
    /* one-hot embeddings (scaled: the norm divides exactly) and proxies
     * drawn from three small-integer rows: exact, massively tied similarities */
    float pool[3][64];
    for (int k = 0; k < 3; k++)
      for (int d = 0; d < D; d++) pool[k][d] = (float)((int)rng_below(&r, 5) - 2);
    for (int k = 0; k < 3; k++) pool[k][k] = 3.0f;   /* no zero row */
    for (int j = 0; j < M; j++) memcpy(p + (size_t)j * D, pool[rng_below(&r, 3)], (size_t)D * sizeof(float));
    memset(x, 0, (size_t)c->G * D * sizeof(float));
    for (int b = 0; b < c->G; b++) x[(size_t)b * D + b % D] = 2.0f;
    return;
  }
  if (c->data == DATA_CLOSE) {
    /* one-hot embeddings against proxies 4096 (1, ..., 1) + small integers:
     * exact similarities near 1/sqrt(D) that differ only in their low bits,
     * all in one value bin, so the selection must resolve them key digit by
     * key digit (and meets some exact ties on the way) */
    for (size_t i = 0; i < (size_t)M * D; i++) p[i] = 4096.0f + (float)rng_below(&r, 64);
    memset(x, 0, (size_t)c->G * D * sizeof(float));
    for (int b = 0; b < c->G; b++) x[(size_t)b * D + b % D] = 2.0f;
    return;
  }
  for (size_t i = 0; i < (size_t)c->G * D; i++) x[i] = (float)rng_normal(&r);
  for (size_t i = 0; i < (size_t)M * D; i++) p[i] = (float)rng_normal(&r);
  if (c->data == DATA_ONE_RANK) {
    /* row 0 (class 0) points along e0, and so do the proxies of the two last
     * classes, which every rank count places on the last rank */
    for (int d = 0; d < D; d++) x[d] = d == 0 ? 1.0f : 0.01f * (float)rng_normal(&r);
    for (int j = (c->C - 2) * c->N; j < M; j++)
      for (int d = 0; d < D; d++) p[(size_t)j * D + d] = d == 0 ? 1.0f : 0.01f * (float)rng_normal(&r);
    y[0] = 0;
  }
}

static float max_abs(const float *a, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; i++) m = fabsf(a[i]) > m ? fabsf(a[i]) : m;
  return m;
}

static float max_diff(const float *a, const float *b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; i++) m = fabsf(a[i] - b[i]) > m ? fabsf(a[i] - b[i]) : m;
  return m;
}

static void run_case(const Dist *d, const Case *c) {
  const int P = d->size, G = c->G, D = c->D, M = c->C * c->N;
  float *x = xmalloc_f32((size_t)G * D), *p = xmalloc_f32((size_t)M * D);
  int *y = xmalloc((size_t)G * sizeof(int));
  make_data(c, x, y, p);

  ProxyGML ref;
  proxygml_init(&ref, G, D, c->C, c->N, c->K, c->lambda, c->scale);
  float *dx_ref = xcalloc((size_t)G * D, sizeof(float)), *dp_ref = xcalloc((size_t)M * D, sizeof(float));
  float loss_ref = proxygml_forward(&ref, x, y, p, G);
  proxygml_backward(&ref, dx_ref, dp_ref);

  ProxyShard s;
  proxyshard_init(&s, d, G, D, c->C, c->N, c->K, c->lambda, c->scale, 0);
  const int B = s.B;
  float *dx = xcalloc((size_t)B * D, sizeof(float)), *dp = xcalloc((size_t)s.Mp * D, sizeof(float));
  double loss = proxyshard_forward(&s, x + (size_t)s.row0 * D, y + s.row0, p + (size_t)s.j0 * D);
  proxyshard_backward(&s, dx, dp);
  float margin = proxyshard_topk_margin(&s);
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, d->comm));

  /* subgraphs: every rank's kept proxies of each row, summed over ranks */
  int *mask = xcalloc((size_t)G * M, sizeof(int)), *mask_ref = xcalloc((size_t)G * M, sizeof(int));
  int *kept = xmalloc((size_t)M * sizeof(int));
  for (int b = 0; b < G; b++) {
    int n = proxyshard_kept(&s, b, kept);
    for (int i = 0; i < n; i++) mask[(size_t)b * M + kept[i]]++;
    for (int i = 0; i < c->K; i++) mask_ref[(size_t)b * M + ref.sel[(size_t)b * c->K + i]] = 1;
  }
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, mask, G * M, MPI_INT, MPI_SUM, d->comm));
  int rows_checked = 0, rows_same = 0;
  float margin_ref = INFINITY;
  for (int b = 0; b < G; b++) {
    float m = proxygml_topk_margin(&ref, b, y[b]);
    margin_ref = m < margin_ref ? m : margin_ref;
    if (c->data != DATA_TIES && c->data != DATA_CLOSE && !(m > 1e-4f)) continue;
    rows_checked++;
    rows_same += !memcmp(mask + (size_t)b * M, mask_ref + (size_t)b * M, (size_t)M * sizeof(int));
  }
  char what[256];
  if (c->data != DATA_TIES && c->data != DATA_CLOSE) {
    /* the gradients are compared on every row: no row of random data may
     * sit within rounding of a tie (the data are fixed, this holds anywhere) */
    snprintf(what, sizeof what, "%s: the data have no near-tie (least top-K margin %.2e > 1e-4)", c->name, margin_ref);
    verdict(d->rank, margin_ref > 1e-4f, what);
  }
  snprintf(what, sizeof what, "%s (np %d, C %d over %d ranks): the same subgraph in %d of %d rows checked (%ld "
           "selection collectives)", c->name, P, c->C, P, rows_same, rows_checked, s.rounds);
  verdict(d->rank, rows_checked > 0 && rows_same == rows_checked, what);
  if (c->data == DATA_ONE_RANK) {
    /* the construction: row 0's negatives all on the last rank */
    int lo, hi, all_there = 1;
    proxyshard_classes(c->C, P, P - 1, &lo, &hi);
    for (int j = 0; j < M; j++)
      if (mask[j] && j / c->N != y[0] && (j / c->N < lo || j / c->N >= hi)) all_there = 0;
    snprintf(what, sizeof what, "%s (np %d): row 0's negatives all lie on rank %d", c->name, P, P - 1);
    verdict(d->rank, all_there, what);
  }
  const double tol = 2e-5 * fmax(1.0, (double)c->scale * c->N);
  snprintf(what, sizeof what, "%s (np %d): loss %.9g, replicated %.9g", c->name, P, loss, (double)loss_ref);
  verdict(d->rank, fabs(loss - loss_ref) <= tol * fmax(1.0, fabs(loss_ref)), what);
  float ex = max_diff(dx, dx_ref + (size_t)s.row0 * D, (size_t)B * D), sx = max_abs(dx_ref, (size_t)G * D);
  snprintf(what, sizeof what, "%s (np %d): dL/dx of this rank's rows within %.1e of the largest (%.2e off)", c->name,
           P, tol, sx > 0 ? ex / sx : ex);
  verdict(d->rank, ex <= tol * sx, what);
  float ep = max_diff(dp, dp_ref + (size_t)s.j0 * D, (size_t)s.Mp * D), sp = max_abs(dp_ref, (size_t)M * D);
  snprintf(what, sizeof what, "%s (np %d): dL/dproxies of this rank's slab within %.1e of the largest (%.2e off)",
           c->name, P, tol, sp > 0 ? ep / sp : ep);
  verdict(d->rank, ep <= tol * sp, what);
  if (c->data != DATA_TIES && c->data != DATA_CLOSE) {
    snprintf(what, sizeof what, "%s (np %d): top-K margin %.6g, replicated %.6g", c->name, P, margin, margin_ref);
    verdict(d->rank, margin == margin_ref || fabsf(margin - margin_ref) <= 1e-5f, what);
  }
  /* inference subgraphs: the K nearest proxies of every (normalised) row, no labels */
  int *idx = xmalloc((size_t)G * c->K * sizeof(int)), *idx_ref = xmalloc((size_t)c->K * sizeof(int));
  float *sim = xmalloc_f32((size_t)G * c->K), *tv = xmalloc_f32((size_t)c->K);
  int64_t *sel = xcalloc((size_t)M, sizeof(int64_t)), *sel_ref = xcalloc((size_t)M, sizeof(int64_t));
  proxyshard_topk(&s, p + (size_t)s.j0 * D, ref.x, G, 0, G, idx, sim, sel + s.j0);
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, sel, M, MPI_INT64_T, MPI_SUM, d->comm));
  int checked = 0, same = 0, all_rows = 1;
  for (int b = 0; b < G; b++) {
    proxygml_topk(idx_ref, ref.S + (size_t)b * M, M, c->K, tv, kept);
    for (int i = 0; i < c->K; i++) sel_ref[idx_ref[i]]++;
    /* the gap at the K-th place of the plain top-K */
    const float *sr = ref.S + (size_t)b * M;
    float kth = INFINITY, next = -INFINITY;   /* the least kept, the largest dropped */
    for (int i = 0; i < c->K; i++) kth = fminf(kth, sr[idx_ref[i]]);
    for (int i = 0, t = 0; i < M; i++) {
      while (t < c->K && idx_ref[t] < i) t++;
      if (!(t < c->K && idx_ref[t] == i)) next = fmaxf(next, sr[i]);
    }
    if (c->data != DATA_TIES && c->data != DATA_CLOSE && !(kth - next > 1e-4f)) { all_rows = 0; continue; }
    checked++;
    same += !memcmp(idx + (size_t)b * c->K, idx_ref, (size_t)c->K * sizeof(int));
  }
  snprintf(what, sizeof what, "%s (np %d): inference subgraphs equal proxygml_topk's in %d of %d rows checked", c->name,
           P, same, checked);
  verdict(d->rank, checked > 0 && same == checked, what);
  snprintf(what, sizeof what, "%s (np %d): the selection counts per proxy equal the replicated ones", c->name, P);
  if (all_rows) verdict(d->rank, !memcmp(sel, sel_ref, (size_t)M * sizeof(int64_t)), what);
  free(idx); free(idx_ref); free(sim); free(tv); free(sel); free(sel_ref);
  proxyshard_free(&s);
  proxygml_free(&ref);
  void *bufs[] = {x, p, y, dx_ref, dp_ref, dx, dp, mask, mask_ref, kept};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* The sampled regulariser (docs/sharding.md 3) in float64 from its
 * definition: the proxies of the batch's classes against every class sum,
 * softmax cross-entropy over the classes, averaged over those proxies.
 * Returns L_reg; grad (M x D) = dL_reg/d raw proxies. */
static double sampled_reg_ref(const double *p, const int *y, int G, int C, int N, int D, double *grad) {
  const int M = C * N;
  double *W = xcalloc((size_t)M * D, sizeof(double)), *U = xcalloc((size_t)C * D, sizeof(double));
  double *gW = xcalloc((size_t)M * D, sizeof(double)), *gU = xcalloc((size_t)C * D, sizeof(double));
  double *norm = xmalloc((size_t)M * sizeof(double)), *z = xmalloc((size_t)C * sizeof(double));
  for (int j = 0; j < M; j++) {
    double ss = 0;
    for (int d = 0; d < D; d++) ss += p[(size_t)j * D + d] * p[(size_t)j * D + d];
    norm[j] = fmax(sqrt(ss), 1e-12);
    for (int d = 0; d < D; d++) {
      W[(size_t)j * D + d] = p[(size_t)j * D + d] / norm[j];
      U[(size_t)(j / N) * D + d] += W[(size_t)j * D + d];
    }
  }
  int *in_batch = xcalloc((size_t)C, sizeof(int)), ns = 0;
  for (int b = 0; b < G; b++) in_batch[y[b]] = 1;
  for (int c = 0; c < C; c++) ns += in_batch[c] * N;
  double L = 0;
  for (int i = 0; i < M; i++) {
    if (!in_batch[i / N]) continue;
    double mx = -INFINITY, se = 0;
    for (int c = 0; c < C; c++) {
      z[c] = 0;
      for (int d = 0; d < D; d++) z[c] += W[(size_t)i * D + d] * U[(size_t)c * D + d];
      mx = fmax(mx, z[c]);
    }
    for (int c = 0; c < C; c++) se += exp(z[c] - mx);
    L += mx + log(se) - z[i / N];
    for (int c = 0; c < C; c++) {
      double g = (exp(z[c] - mx) / se - (c == i / N)) / ns;
      for (int d = 0; d < D; d++) {
        gW[(size_t)i * D + d] += g * U[(size_t)c * D + d];
        gU[(size_t)c * D + d] += g * W[(size_t)i * D + d];
      }
    }
  }
  for (int j = 0; grad && j < M; j++) {
    double dot = 0;
    for (int d = 0; d < D; d++) {
      gW[(size_t)j * D + d] += gU[(size_t)(j / N) * D + d];
      dot += W[(size_t)j * D + d] * gW[(size_t)j * D + d];
    }
    for (int d = 0; d < D; d++)
      grad[(size_t)j * D + d] = (gW[(size_t)j * D + d] - W[(size_t)j * D + d] * dot) / norm[j];
  }
  void *bufs[] = {W, U, gW, gU, norm, z, in_batch};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  return L / ns;
}

/* the sharded loss with the sampled regulariser = the replicated loss
 * without regulariser + lambda times the float64 reference, whose gradient
 * is first held against central differences (a smooth function in double:
 * they agree to ~1e-9, far inside the 1e-6 asked) */
static void run_sampled_case(const Dist *d) {
  const Case c = {"the sampled regulariser", 12, 8, 13, 3, 12, 0.5f, 1.0f, DATA_RANDOM};
  const int P = d->size, G = c.G, D = c.D, M = c.C * c.N;
  float *x = xmalloc_f32((size_t)G * D), *p = xmalloc_f32((size_t)M * D);
  int *y = xmalloc((size_t)G * sizeof(int));
  make_data(&c, x, y, p);
  double *pd = xmalloc((size_t)M * D * sizeof(double)), *g_ref = xmalloc((size_t)M * D * sizeof(double));
  for (size_t i = 0; i < (size_t)M * D; i++) pd[i] = p[i];
  double reg_ref = sampled_reg_ref(pd, y, G, c.C, c.N, D, g_ref);
  double fd_err = 0;
  Rng r;
  rng_init(&r, 7);
  for (int t = 0; t < 20; t++) {
    size_t i = rng_below(&r, (uint32_t)(M * D));
    double h = 1e-6, keep = pd[i];
    pd[i] = keep + h;
    double up = sampled_reg_ref(pd, y, G, c.C, c.N, D, NULL);
    pd[i] = keep - h;
    double dn = sampled_reg_ref(pd, y, G, c.C, c.N, D, NULL);
    pd[i] = keep;
    fd_err = fmax(fd_err, fabs((up - dn) / (2 * h) - g_ref[i]));
  }
  char what[256];
  snprintf(what, sizeof what, "%s: the float64 reference's gradient against central differences (%.1e off)", c.name,
           fd_err);
  verdict(d->rank, fd_err < 1e-6, what);

  ProxyGML ref;   /* the classification part */
  proxygml_init(&ref, G, D, c.C, c.N, c.K, 0.0f, c.scale);
  float *dx_ref = xcalloc((size_t)G * D, sizeof(float)), *dp_ref = xcalloc((size_t)M * D, sizeof(float));
  double loss_ref = proxygml_forward(&ref, x, y, p, G) + c.lambda * reg_ref;
  proxygml_backward(&ref, dx_ref, dp_ref);
  float margin = INFINITY;
  for (int b = 0; b < G; b++) margin = fminf(margin, proxygml_topk_margin(&ref, b, y[b]));
  snprintf(what, sizeof what, "%s: the data have no near-tie (least top-K margin %.2e > 1e-4)", c.name, margin);
  verdict(d->rank, margin > 1e-4f, what);
  for (size_t i = 0; i < (size_t)M * D; i++) dp_ref[i] += (float)(c.lambda * g_ref[i]);

  ProxyShard s;
  proxyshard_init(&s, d, G, D, c.C, c.N, c.K, c.lambda, c.scale, 1);
  float *dx = xcalloc((size_t)s.B * D, sizeof(float)), *dp = xcalloc((size_t)s.Mp * D, sizeof(float));
  double loss = proxyshard_forward(&s, x + (size_t)s.row0 * D, y + s.row0, p + (size_t)s.j0 * D);
  proxyshard_backward(&s, dx, dp);
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, d->comm));
  const double tol = 2e-5;   /* float32 GEMMs and sums against float64: a few ulps, amplified by at most N */
  snprintf(what, sizeof what, "%s (np %d): loss %.9g, reference %.9g", c.name, P, loss, loss_ref);
  verdict(d->rank, fabs(loss - loss_ref) <= tol * fmax(1.0, fabs(loss_ref)), what);
  float ex = max_diff(dx, dx_ref + (size_t)s.row0 * D, (size_t)s.B * D), sx = max_abs(dx_ref, (size_t)G * D);
  snprintf(what, sizeof what, "%s (np %d): dL/dx within %.1e of the largest (%.2e off)", c.name, P, tol, ex / sx);
  verdict(d->rank, ex <= tol * sx, what);
  float ep = max_diff(dp, dp_ref + (size_t)s.j0 * D, (size_t)s.Mp * D), sp = max_abs(dp_ref, (size_t)M * D);
  snprintf(what, sizeof what, "%s (np %d): dL/dproxies within %.1e of the largest (%.2e off)", c.name, P, tol, ep / sp);
  verdict(d->rank, ep <= tol * sp, what);
  proxyshard_free(&s);
  proxygml_free(&ref);
  void *bufs[] = {x, p, y, pd, g_ref, dx_ref, dp_ref, dx, dp};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* Many small exact-data cases (massive ties, similarities exact on any
 * CPU): C from P to P + 29, N 1-4, K from 1 to M; every row's subgraph
 * must be proxygml_select's. */
static void run_tie_stress(const Dist *d) {
  Rng r;
  rng_init(&r, 99);
  int bad = 0, cases = 0;
  for (int t = 0; t < 40; t++) {
    const int P = d->size, C = P + (int)rng_below(&r, 30), N = 1 + (int)rng_below(&r, 4), M = C * N;
    const int K = t % 4 == 0 ? M : t % 4 == 1 ? N : 1 + (int)rng_below(&r, (uint32_t)M);
    const Case c = {"stress", 6 * P, 8, C, N, K, 0.0f, 1.0f, DATA_TIES};
    const int G = c.G, D = c.D;
    float *x = xmalloc_f32((size_t)G * D), *p = xmalloc_f32((size_t)M * D);
    int *y = xmalloc((size_t)G * sizeof(int)), *kept = xmalloc((size_t)M * sizeof(int));
    int *mask = xcalloc((size_t)M, sizeof(int));
    make_data(&c, x, y, p);
    ProxyGML ref;
    proxygml_init(&ref, G, D, C, N, K, 0.0f, 1.0f);
    proxygml_forward(&ref, x, y, p, G);
    ProxyShard s;
    proxyshard_init(&s, d, G, D, C, N, K, 0.0f, 1.0f, 0);
    proxyshard_forward(&s, x + (size_t)s.row0 * D, y + s.row0, p + (size_t)s.j0 * D);
    for (int b = 0; b < G; b++) {
      memset(mask, 0, (size_t)M * sizeof(int));
      int n = proxyshard_kept(&s, b, kept);
      for (int i = 0; i < n; i++) mask[kept[i]] = 1;
      DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, mask, M, MPI_INT, MPI_SUM, d->comm));
      for (int i = 0; i < K; i++) mask[ref.sel[(size_t)b * K + i]] -= 1;
      for (int j = 0; j < M; j++) bad += mask[j] != 0;
    }
    cases++;
    proxyshard_free(&s);
    proxygml_free(&ref);
    free(x); free(p); free(y); free(kept); free(mask);
  }
  char what[160];
  snprintf(what, sizeof what, "tie stress (np %d): %d exact-data cases, %d proxies kept otherwise than proxygml_select",
           d->size, cases, bad);
  verdict(d->rank, bad == 0, what);
}

/* a NaN proxy makes the replicated loss NaN: the sharded one too, on every
 * rank, although its similarities may well not be selected */
static void run_nan_case(const Dist *d) {
  const Case c = {"a NaN proxy", 6, 8, 6, 2, 5, 0.0f, 1.0f, DATA_RANDOM};
  const int G = c.G, D = c.D, M = c.C * c.N;
  float *x = xmalloc_f32((size_t)G * D), *p = xmalloc_f32((size_t)M * D);
  int *y = xmalloc((size_t)G * sizeof(int));
  make_data(&c, x, y, p);
  for (int b = 0; b < G; b++) y[b] = 1 + b % (c.C - 1);   /* no row of class 0, whose proxy is NaN */
  p[0] = NAN;
  ProxyShard s;
  proxyshard_init(&s, d, G, D, c.C, c.N, c.K, 0.0f, 1.0f, 0);
  double loss = proxyshard_forward(&s, x + (size_t)s.row0 * D, y + s.row0, p + (size_t)s.j0 * D);
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &loss, 1, MPI_DOUBLE, MPI_SUM, d->comm));
  char what[160];
  snprintf(what, sizeof what, "a NaN proxy of a class in no row (np %d): the loss is %g", d->size, loss);
  verdict(d->rank, isnan(loss), what);
  proxyshard_free(&s);
  free(x); free(p); free(y);
}

int main(int argc, char **argv) {
  Dist d;
  dist_init(&d, &argc, &argv);
  /* C = 7, 5, 11: never a multiple of 2 or 3 ranks; G = 12, 6: always divisible */
  const Case cases[] = {
    {"K > N with the regulariser", 12, 16, 7, 3, 8, 0.3f, 1.0f, DATA_RANDOM},
    {"K > N, many classes", 12, 16, 301, 2, 61, 0.0f, 1.0f, DATA_RANDOM},
    {"K = N", 6, 8, 7, 2, 2, 0.0f, 1.0f, DATA_RANDOM},
    {"K < N", 6, 8, 5, 4, 2, 0.0f, 1.0f, DATA_RANDOM},
    {"scale 250 (s N > 600: the largest logit subtracted)", 12, 16, 7, 3, 11, 0.0f, 250.0f, DATA_RANDOM},
    {"a row whose top-K lies on one rank", 6, 8, 11, 2, 6, 0.0f, 1.0f, DATA_ONE_RANK},
    {"exact ties at the K-th place", 12, 8, 11, 3, 10, 0.0f, 1.0f, DATA_TIES},
    {"exact ties among the positives, K < N", 6, 8, 5, 4, 3, 0.0f, 1.0f, DATA_TIES},
    {"exact ties with the regulariser", 12, 8, 11, 3, 14, 0.5f, 1.0f, DATA_TIES},
    {"close similarities resolved in the key's low bits", 12, 8, 997, 2, 300, 0.0f, 1.0f, DATA_CLOSE},
    {"K = M: every proxy kept", 6, 8, 7, 2, 14, 0.0f, 1.0f, DATA_TIES},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&d, &cases[i]);
  run_sampled_case(&d);
  run_tie_stress(&d);
  run_nan_case(&d);
  int ok = g_ok;
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, d.comm));
  dist_finalize(&d);
  return ok ? 0 : 1;
}
