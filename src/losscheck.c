/* losscheck.c: the loss against the golden HDF5 files (include/losscheck.h):
 * validated reading of their inputs, the loss (float32 or the float64
 * reference) in the files' layouts, and one comparison per quantity. */
#include "losscheck.h"

#include "common.h"
#include "h5io.h"
#include "proxygml.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void losscheck_case_free(LossCheckCase *c) {
  free(c->x_raw); free(c->labels); free(c->proxies);
  memset(c, 0, sizeof *c);
}

static int all_finite(const float *a, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(a[i])) return 0;
  return 1;
}

/* transpose rows x cols (row-major) into cols x rows */
static void transpose_f64(double *out, const double *in, int rows, int cols) {
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) out[(size_t)j * rows + i] = in[(size_t)i * cols + j];
}

int losscheck_case_read(LossCheckCase *c, hid_t f) {
  memset(c, 0, sizeof *c);
  int64_t C, N, K = 0;
  double r = 0;
  if (h5io_attr_i64(f, "C", &C) || h5io_attr_i64(f, "N", &N)) return -1;
  if (h5io_attr_f64(f, "lambda", &c->lambda) || h5io_attr_f64(f, "scale", &c->scale)) return -1;
  if (C < 1 || N < 1 || C * N > (1 << 26)) return err_set("C=%lld, N=%lld: both must be >= 1", (long long)C, (long long)N);
  if (H5Aexists(f, "K") > 0) {
    if (h5io_attr_i64(f, "K", &K)) return -1;
  } else if (H5Aexists(f, "r") > 0) {
    if (h5io_attr_f64(f, "r", &r)) return -1;
    if (!(r > 0 && r <= 1)) return err_set("attribute r=%g outside (0, 1]", r);
    K = proxygml_k_from_ratio(r, (int)C, (int)N);
  } else {
    return err_set("neither attribute 'K' nor 'r' is present");
  }
  c->C = (int)C; c->N = (int)N; c->M = (int)(C * N); c->K = (int)K;
  if (K < 1 || K > C * N) return err_set("K=%lld outside [1, C*N=%lld]", (long long)K, (long long)(C * N));
  if (!(c->lambda >= 0) || !isfinite(c->lambda)) return err_set("attribute lambda=%g must be >= 0", c->lambda);
  if (!(c->scale > 0) || !isfinite(c->scale)) return err_set("attribute scale=%g must be > 0", c->scale);

  int nd; int64_t dx[H5IO_MAXDIM], dl[H5IO_MAXDIM], dp[H5IO_MAXDIM];
  if (h5io_shape(f, "x_raw", &nd, dx)) return -1;
  if (nd != 2 || dx[0] < 1 || dx[1] < 1) return err_set("dataset 'x_raw' must be B x D with B, D >= 1");
  c->B = (int)dx[0]; c->D = (int)dx[1];
  if (h5io_shape(f, "labels", &nd, dl)) return -1;
  if (nd != 1 || dl[0] != c->B) return err_set("dataset 'labels' must have B=%d entries", c->B);
  if (h5io_shape(f, "proxies", &nd, dp)) return -1;
  if (nd != 2 || dp[0] != c->D || dp[1] != c->M)
    return err_set("dataset 'proxies' must be D x C*N = %d x %d", c->D, c->M);

  c->x_raw = xmalloc_f32((size_t)c->B * c->D);
  c->labels = xmalloc((size_t)c->B * sizeof(int));
  float *pt = xmalloc_f32((size_t)c->D * c->M);
  c->proxies = xmalloc_f32((size_t)c->M * c->D);
  int rc = h5io_read(f, "x_raw", H5T_NATIVE_FLOAT, c->x_raw, (size_t)c->B * c->D);
  if (!rc) rc = h5io_read(f, "labels", H5T_NATIVE_INT, c->labels, (size_t)c->B);
  if (!rc) rc = h5io_read(f, "proxies", H5T_NATIVE_FLOAT, pt, (size_t)c->D * c->M);
  if (!rc) {
    for (int d = 0; d < c->D; d++)
      for (int j = 0; j < c->M; j++) c->proxies[(size_t)j * c->D + d] = pt[(size_t)d * c->M + j];
    if (!all_finite(c->x_raw, (size_t)c->B * c->D)) rc = err_set("dataset 'x_raw' holds NaN or Inf");
    else if (!all_finite(c->proxies, (size_t)c->M * c->D)) rc = err_set("dataset 'proxies' holds NaN or Inf");
    for (int b = 0; !rc && b < c->B; b++)
      if (c->labels[b] < 0 || c->labels[b] >= c->C)
        rc = err_set("labels[%d]=%d outside [0, C=%d)", b, c->labels[b], c->C);
  }
  free(pt);
  return rc;
}

static void out_alloc(LossCheckOut *o, const LossCheckCase *c) {
  size_t BD = (size_t)c->B * c->D, BM = (size_t)c->B * c->M, BC = (size_t)c->B * c->C, MD = (size_t)c->M * c->D;
  o->x = xcalloc(BD, 8); o->S = xcalloc(BM, 8); o->sel = xcalloc(BM, 8); o->Z = xcalloc(BC, 8);
  o->zmask = xcalloc(BC, 8); o->P = xcalloc(BC, 8); o->dx_raw = xcalloc(BD, 8); o->dproxies = xcalloc(MD, 8);
  o->gx = xcalloc(BD, 8); o->GZ = xcalloc(BC, 8); o->GS = xcalloc(BM, 8); o->W = xcalloc(MD, 8); o->GW = xcalloc(MD, 8);
}

void losscheck_out_free(LossCheckOut *o) {
  double *b[] = {o->x, o->S, o->sel, o->Z, o->zmask, o->P, o->dx_raw, o->dproxies, o->gx, o->GZ, o->GS, o->W, o->GW};
  for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) free(b[i]);
  memset(o, 0, sizeof *o);
}

static void run_fast(LossCheckOut *o, const LossCheckCase *c) {
  ProxyGML l;
  proxygml_init(&l, c->B, c->D, c->C, c->N, c->K, (float)c->lambda, (float)c->scale);
  l.keep_grad_w = 1;
  float *dx = xcalloc((size_t)c->B * c->D, 4), *dp = xcalloc((size_t)c->M * c->D, 4);
  proxygml_forward(&l, c->x_raw, c->labels, c->proxies, c->B);
  proxygml_backward(&l, dx, dp);
  int B = c->B, D = c->D, C = c->C, M = c->M, N = c->N;
  o->loss = l.loss; o->loss_cls = l.loss_cls; o->loss_reg = l.loss_reg;
  for (size_t i = 0; i < (size_t)B * D; i++) { o->x[i] = l.x[i]; o->dx_raw[i] = dx[i]; o->gx[i] = l.gx[i]; }
  for (size_t i = 0; i < (size_t)B * M; i++) o->S[i] = l.S[i];
  for (size_t i = 0; i < (size_t)B * C; i++) { o->Z[i] = l.Z[i]; o->zmask[i] = l.zmask[i]; o->P[i] = l.P[i]; o->GZ[i] = l.GZ[i]; }
  for (int b = 0; b < B; b++)
    for (int i = 0; i < c->K; i++) {
      int j = l.sel[(size_t)b * c->K + i];
      o->sel[(size_t)b * M + j] = 1;
      o->GS[(size_t)b * M + j] = l.GZ[(size_t)b * C + j / N];
    }
  for (int j = 0; j < M; j++)
    for (int d = 0; d < D; d++) {
      o->dproxies[(size_t)d * M + j] = dp[(size_t)j * D + d];
      o->W[(size_t)d * M + j] = c->proxies[(size_t)j * D + d] / l.pnorm[j];
      o->GW[(size_t)d * M + j] = l.GW[(size_t)j * D + d];
    }
  free(dx); free(dp);
  proxygml_free(&l);
}

static void run_ref(LossCheckOut *o, const LossCheckCase *c) {
  size_t BD = (size_t)c->B * c->D, MD = (size_t)c->M * c->D;
  double *x = xmalloc_f64(BD), *p = xmalloc_f64(MD);
  for (size_t i = 0; i < BD; i++) x[i] = c->x_raw[i];
  for (size_t i = 0; i < MD; i++) p[i] = c->proxies[i];
  ProxyGMLRef r;
  proxygml_ref(&r, x, c->labels, p, c->B, c->D, c->C, c->N, c->K, c->lambda, c->scale);
  int B = c->B, M = c->M, C = c->C, N = c->N;
  o->loss = r.loss; o->loss_cls = r.loss_cls; o->loss_reg = r.loss_reg;
  memcpy(o->x, r.x, BD * 8); memcpy(o->dx_raw, r.dx_raw, BD * 8); memcpy(o->gx, r.gx, BD * 8);
  memcpy(o->S, r.S, (size_t)B * M * 8);
  memcpy(o->Z, r.Z, (size_t)B * C * 8); memcpy(o->P, r.P, (size_t)B * C * 8); memcpy(o->GZ, r.GZ, (size_t)B * C * 8);
  for (size_t i = 0; i < (size_t)B * C; i++) o->zmask[i] = r.zmask[i];
  for (int b = 0; b < B; b++)
    for (int j = 0; j < M; j++) {
      o->sel[(size_t)b * M + j] = r.sel[(size_t)b * M + j];
      o->GS[(size_t)b * M + j] = r.sel[(size_t)b * M + j] ? r.GZ[b * C + j / N] : 0;
    }
  transpose_f64(o->dproxies, r.dproxies, M, c->D);
  transpose_f64(o->W, r.W, M, c->D);
  transpose_f64(o->GW, r.GW, M, c->D);
  proxygml_ref_free(&r);
  free(x); free(p);
}

void losscheck_compute(LossCheckOut *o, const LossCheckCase *c, int use_ref) {
  memset(o, 0, sizeof *o);
  out_alloc(o, c);
  if (use_ref) run_ref(o, c); else run_fast(o, c);
}

void losscheck_items(LossCheckItem it[LOSSCHECK_NITEMS], const LossCheckOut *o, const LossCheckCase *c,
                     int use_ref) {
  double a = use_ref ? 1e-12 : 1e-5, g = use_ref ? 1e-10 : 1e-4, ga = use_ref ? 1e-14 : 1e-8;
  size_t BD = (size_t)c->B * c->D, BM = (size_t)c->B * c->M, BC = (size_t)c->B * c->C, MD = (size_t)c->M * c->D;
  const LossCheckItem all[LOSSCHECK_NITEMS] = {
    {"selected", o->sel, BM, 0, 0, 1},
    {"logits_mask", o->zmask, BC, 0, 0, 1},
    {"x", o->x, BD, a, 0, 0},
    {"similarity", o->S, BM, a, 0, 0},
    {"centers", o->W, MD, a, 0, 0},
    {"logits", o->Z, BC, a * c->N, 0, 0},
    {"predict", o->P, BC, a, 0, 0},
    {"loss", &o->loss, 1, a * fmax(1, fabs(o->loss)), 0, 0},
    {"loss_cls", &o->loss_cls, 1, a * fmax(1, fabs(o->loss_cls)), 0, 0},
    {"loss_reg", &o->loss_reg, 1, a * fmax(1, fabs(o->loss_reg)), 0, 0},
    {"grad_x_raw", o->dx_raw, BD, ga, g, 0},
    {"grad_proxies", o->dproxies, MD, ga, g, 0},
    {"grad_x", o->gx, BD, ga, g, 0},
    {"grad_logits", o->GZ, BC, ga, g, 0},
    {"grad_similarity", o->GS, BM, ga, g, 0},
    {"grad_centers", o->GW, MD, ga, g, 0},
  };
  memcpy(it, all, sizeof all);
}

int losscheck_compare(LossCheckResult *r, hid_t f, const LossCheckItem *it) {
  memset(r, 0, sizeof *r);
  if (!h5io_has(f, it->name)) return 0;
  double *want = xmalloc_f64(it->n ? it->n : 1);
  if (h5io_read(f, it->name, H5T_NATIVE_DOUBLE, want, it->n) != 0) {
    free(want);
    return -1;
  }
  double ma = 0, mw = 0;
  for (size_t i = 0; i < it->n; i++) {
    double d = fabs(it->got[i] - want[i]);
    if (isnan(d)) d = INFINITY;
    ma = fmax(ma, d);
    mw = fmax(mw, fabs(want[i]));
  }
  free(want);
  r->max_abs = ma;
  r->max_rel = mw > 0 ? ma / mw : ma;
  r->tol = it->exact ? 0 : it->atol + it->rtol * mw;
  r->ok = ma <= r->tol;
  return 1;
}
