/* losscheck.c: a loss against the golden HDF5 files (include/losscheck.h):
 * validated reading of their inputs, the loss (float32 or the float64
 * reference) in the files' layouts, and one comparison per quantity.
 * ProxyGML files and the baselines' files differ in their attributes and
 * intermediates; both end in the same comparisons. */
#include "losscheck.h"

#include "common.h"
#include "baselines.h"
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

/* the reference library's class names in `loss_name`, in LossKind order */
static const char *const PML_NAMES[LOSS_NKINDS] = {"", "ProxyNCALoss", "ProxyAnchorLoss", "SoftTripleLoss",
                                                   "NormalizedSoftmaxLoss"};

/* a float attribute in [lo, hi]; an optional one (required = 0) may be absent and leaves *out */
static int attr_in(hid_t f, const char *name, double *out, double lo, double hi, int required) {
  if (H5Aexists(f, name) <= 0) return required ? err_set("attribute '%s' is missing", name) : 0;
  if (h5io_attr_f64(f, name, out)) return -1;
  if (!(*out >= lo && *out <= hi)) return err_set("attribute %s=%g outside [%g, %g]", name, *out, lo, hi);
  return 0;
}

/* x_raw, labels and proxies (D x M in the file when proxies_dm, else M x D;
 * M x D after loading), checked against C and M */
static int read_inputs(LossCheckCase *c, hid_t f) {
  int nd; int64_t dx[H5IO_MAXDIM], dl[H5IO_MAXDIM], dp[H5IO_MAXDIM];
  if (h5io_shape(f, "x_raw", &nd, dx)) return -1;
  if (nd != 2 || dx[0] < 1 || dx[1] < 1) return err_set("dataset 'x_raw' must be B x D with B, D >= 1");
  c->B = (int)dx[0]; c->D = (int)dx[1];
  if (h5io_shape(f, "labels", &nd, dl)) return -1;
  if (nd != 1 || dl[0] != c->B) return err_set("dataset 'labels' must have B=%d entries", c->B);
  if (h5io_shape(f, "proxies", &nd, dp)) return -1;
  int64_t want0 = c->proxies_dm ? c->D : c->M, want1 = c->proxies_dm ? c->M : c->D;
  if (nd != 2 || dp[0] != want0 || dp[1] != want1)
    return err_set("dataset 'proxies' must be %s = %lld x %lld", c->proxies_dm ? "D x C*N" : "C*N x D",
                   (long long)want0, (long long)want1);
  c->x_raw = xmalloc_f32((size_t)c->B * c->D);
  c->labels = xmalloc((size_t)c->B * sizeof(int));
  float *pt = xmalloc_f32((size_t)c->D * c->M);
  c->proxies = xmalloc_f32((size_t)c->M * c->D);
  int rc = h5io_read(f, "x_raw", H5T_NATIVE_FLOAT, c->x_raw, (size_t)c->B * c->D);
  if (!rc) rc = h5io_read(f, "labels", H5T_NATIVE_INT, c->labels, (size_t)c->B);
  if (!rc) rc = h5io_read(f, "proxies", H5T_NATIVE_FLOAT, pt, (size_t)c->D * c->M);
  if (!rc) {
    if (c->proxies_dm)
      for (int d = 0; d < c->D; d++)
        for (int j = 0; j < c->M; j++) c->proxies[(size_t)j * c->D + d] = pt[(size_t)d * c->M + j];
    else memcpy(c->proxies, pt, (size_t)c->M * c->D * sizeof(float));
    if (!all_finite(c->x_raw, (size_t)c->B * c->D)) rc = err_set("dataset 'x_raw' holds NaN or Inf");
    else if (!all_finite(c->proxies, (size_t)c->M * c->D)) rc = err_set("dataset 'proxies' holds NaN or Inf");
    for (int b = 0; !rc && b < c->B; b++)
      if (c->labels[b] < 0 || c->labels[b] >= c->C)
        rc = err_set("labels[%d]=%d outside [0, C=%d)", b, c->labels[b], c->C);
  }
  free(pt);
  return rc;
}

/* a baseline file: which loss, its hyper-parameters, the proxies' layout */
static int baseline_case_read(LossCheckCase *c, hid_t f, const char *name) {
  int kind = -1;
  for (int i = 1; i < LOSS_NKINDS; i++)
    if (!strcmp(name, PML_NAMES[i])) kind = i;
  if (kind < 0)
    return err_set("attribute loss_name='%s' is none of ProxyNCALoss, ProxyAnchorLoss, SoftTripleLoss, "
                   "NormalizedSoftmaxLoss", name);
  c->kind = (LossKind)kind;
  /* the reference library's defaults; its SoftTriple has no regulariser */
  c->base = baseline_defaults();
  c->base.st_tau = 0;
  int64_t C;
  if (h5io_attr_i64(f, "C", &C)) return -1;
  if (C < 1 || C > (1 << 24)) return err_set("attribute C=%lld outside [1, 2^24]", (long long)C);
  int rc = 0;
  switch (c->kind) {
  case LOSS_PROXYNCA: rc = attr_in(f, "softmax_scale", &c->base.nca_scale, 1e-6, 1e6, 1); break;
  case LOSS_PROXYANCHOR:
    rc = attr_in(f, "margin", &c->base.pa_margin, -1, 1, 1);
    if (!rc) rc = attr_in(f, "alpha", &c->base.pa_alpha, 1e-6, 300, 1);
    break;
  case LOSS_SOFTTRIPLE: {
    int64_t k;
    if (h5io_attr_i64(f, "centers_per_class", &k)) return -1;
    if (k < 1 || k * C > (1 << 26)) return err_set("attribute centers_per_class=%lld outside [1, 2^26 / C]", (long long)k);
    c->base.st_centers = (int)k;
    rc = attr_in(f, "la", &c->base.st_lambda, 1e-6, 1e6, 1);
    if (!rc) rc = attr_in(f, "gamma", &c->base.st_gamma, 1e-6, 1e6, 1);
    if (!rc) rc = attr_in(f, "margin", &c->base.st_margin, -1e6, 1e6, 1);
    if (!rc) rc = attr_in(f, "tau", &c->base.st_tau, 0, 1e6, 0);
    break;
  }
  case LOSS_NORMSOFTMAX: rc = attr_in(f, "temperature", &c->base.ns_temperature, 1e-6, 1e6, 1); break;
  default: break;
  }
  if (rc) return -1;
  LossParams p = loss_defaults();
  p.kind = c->kind;
  p.base = c->base;
  c->C = (int)C;
  c->N = loss_proxies_per_class(&p);
  c->M = c->C * c->N;
  char layout[128] = "";
  if (H5Aexists(f, "proxies_layout") > 0 && h5io_attr_str(f, "proxies_layout", layout, sizeof layout)) return -1;
  if (!layout[0]) c->proxies_dm = c->kind == LOSS_SOFTTRIPLE || c->kind == LOSS_NORMSOFTMAX;   /* the library's own */
  else if (!strncmp(layout, "D x ", 4)) c->proxies_dm = 1;
  else if (!strncmp(layout, "C x D", 5)) c->proxies_dm = 0;
  else return err_set("attribute proxies_layout='%s': expected 'C x D ...' or 'D x ...'", layout);
  return read_inputs(c, f);
}

int losscheck_case_read(LossCheckCase *c, hid_t f) {
  memset(c, 0, sizeof *c);
  if (H5Aexists(f, "loss_name") > 0) {
    char name[64];
    if (h5io_attr_str(f, "loss_name", name, sizeof name)) return -1;
    return baseline_case_read(c, f, name);
  }
  c->kind = LOSS_PROXYGML;
  c->proxies_dm = 1;
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

  return read_inputs(c, f);
}

static void out_alloc(LossCheckOut *o, const LossCheckCase *c) {
  size_t BD = (size_t)c->B * c->D, BM = (size_t)c->B * c->M, BC = (size_t)c->B * c->C, MD = (size_t)c->M * c->D;
  o->x = xcalloc(BD, 8); o->S = xcalloc(BM, 8); o->sel = xcalloc(BM, 8); o->Z = xcalloc(BC, 8);
  o->zmask = xcalloc(BC, 8); o->P = xcalloc(BC, 8); o->dx_raw = xcalloc(BD, 8); o->dproxies = xcalloc(MD, 8);
  o->gx = xcalloc(BD, 8); o->GZ = xcalloc(BC, 8); o->GS = xcalloc(BM, 8); o->W = xcalloc(MD, 8); o->GW = xcalloc(MD, 8);
  o->Zc = xcalloc(BC, 8); o->row_loss = xcalloc((size_t)c->B, 8);
  o->pos = xcalloc((size_t)c->C, 8); o->neg = xcalloc((size_t)c->C, 8);
}

void losscheck_out_free(LossCheckOut *o) {
  double *b[] = {o->x, o->S, o->sel, o->Z, o->zmask, o->P, o->dx_raw, o->dproxies, o->gx, o->GZ, o->GS, o->W, o->GW,
                 o->Zc, o->row_loss, o->pos, o->neg};
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

/* the proxies' gradient (M x D) in the file's layout */
static void store_dproxies(double *out, const double *g, const LossCheckCase *c) {
  if (c->proxies_dm) transpose_f64(out, g, c->M, c->D);
  else memcpy(out, g, (size_t)c->M * c->D * sizeof(double));
}

static BaselineKind base_kind(LossKind k) {
  return k == LOSS_PROXYNCA ? BASELINE_PROXYNCA : k == LOSS_PROXYANCHOR ? BASELINE_PROXYANCHOR
         : k == LOSS_SOFTTRIPLE ? BASELINE_SOFTTRIPLE : BASELINE_NORMSOFTMAX;
}

static void run_baseline_fast(LossCheckOut *o, const LossCheckCase *c) {
  Baseline l;
  baseline_init(&l, base_kind(c->kind), &c->base, c->B, c->D, c->C);
  size_t BD = (size_t)c->B * c->D, MD = (size_t)c->M * c->D;
  float *dx = xcalloc(BD, 4), *dp = xcalloc(MD, 4);
  baseline_forward(&l, c->x_raw, c->labels, c->proxies, c->B);
  baseline_backward(&l, dx, dp);
  o->loss = l.loss; o->loss_cls = l.loss_cls; o->loss_reg = l.loss_reg;
  o->pos_loss = l.pos_loss; o->neg_loss = l.neg_loss;
  double *g = xmalloc_f64(MD);
  for (size_t i = 0; i < BD; i++) { o->dx_raw[i] = dx[i]; o->x[i] = l.x[i]; }
  for (size_t i = 0; i < MD; i++) g[i] = dp[i];
  store_dproxies(o->dproxies, g, c);
  for (size_t i = 0; i < (size_t)c->B * c->M; i++) o->S[i] = l.S[i];
  for (size_t i = 0; i < (size_t)c->B * c->C; i++) o->Zc[i] = l.Zc[i];
  for (int b = 0; b < c->B; b++) o->row_loss[b] = l.row_loss[b];
  for (int i = 0; l.pos && i < c->C; i++) { o->pos[i] = l.pos[i]; o->neg[i] = l.neg[i]; }
  free(g); free(dx); free(dp);
  baseline_free(&l);
}

static void run_baseline_ref(LossCheckOut *o, const LossCheckCase *c) {
  size_t BD = (size_t)c->B * c->D, MD = (size_t)c->M * c->D;
  double *x = xmalloc_f64(BD), *p = xmalloc_f64(MD);
  for (size_t i = 0; i < BD; i++) x[i] = c->x_raw[i];
  for (size_t i = 0; i < MD; i++) p[i] = c->proxies[i];
  BaselineRef r;
  baseline_ref(&r, base_kind(c->kind), &c->base, x, c->labels, p, c->B, c->D, c->C);
  o->loss = r.loss; o->loss_cls = r.loss_cls; o->loss_reg = r.loss_reg;
  o->pos_loss = r.pos_loss; o->neg_loss = r.neg_loss;
  memcpy(o->dx_raw, r.dx_raw, BD * 8); memcpy(o->x, r.x, BD * 8);
  store_dproxies(o->dproxies, r.dproxies, c);
  memcpy(o->S, r.S, (size_t)c->B * c->M * 8);
  memcpy(o->Zc, r.Zc, (size_t)c->B * c->C * 8);
  memcpy(o->row_loss, r.row_loss, (size_t)c->B * 8);
  memcpy(o->pos, r.pos, (size_t)c->C * 8); memcpy(o->neg, r.neg, (size_t)c->C * 8);
  baseline_ref_free(&r);
  free(x); free(p);
}

void losscheck_compute(LossCheckOut *o, const LossCheckCase *c, int use_ref) {
  memset(o, 0, sizeof *o);
  out_alloc(o, c);
  if (c->kind == LOSS_PROXYGML) {
    if (use_ref) run_ref(o, c); else run_fast(o, c);
  } else {
    if (use_ref) run_baseline_ref(o, c); else run_baseline_fast(o, c);
  }
}

/* tests/data/README.md, baselines: the loss within 1e-5 relative, the
 * gradients within 1e-4 and the intermediates within 1e-5 of their array's
 * largest entry (float32); the float64 reference within 1e-12, gradients 1e-10 */
static int baseline_items(LossCheckItem it[LOSSCHECK_NITEMS], const LossCheckOut *o, const LossCheckCase *c,
                          int use_ref) {
  double a = use_ref ? 1e-12 : 1e-5, g = use_ref ? 1e-10 : 1e-4;
  size_t BD = (size_t)c->B * c->D, BM = (size_t)c->B * c->M, BC = (size_t)c->B * c->C, MD = (size_t)c->M * c->D;
  int n = 0;
  it[n++] = (LossCheckItem){"loss", &o->loss, 1, 0, a, 0};
  switch (c->kind) {
  case LOSS_PROXYNCA: it[n++] = (LossCheckItem){"sqdist", o->Zc, BC, 0, a, 0}; break;
  case LOSS_PROXYANCHOR:
    it[n++] = (LossCheckItem){"cos", o->Zc, BC, 0, a, 0};
    it[n++] = (LossCheckItem){"pos_loss_per_proxy", o->pos, (size_t)c->C, 0, a, 0};
    it[n++] = (LossCheckItem){"neg_loss_per_proxy", o->neg, (size_t)c->C, 0, a, 0};
    it[n++] = (LossCheckItem){"pos_loss", &o->pos_loss, 1, 0, a, 0};
    it[n++] = (LossCheckItem){"neg_loss", &o->neg_loss, 1, 0, a, 0};
    break;
  case LOSS_SOFTTRIPLE:
    it[n++] = (LossCheckItem){"sim_to_centers", o->S, BM, 0, a, 0};
    it[n++] = (LossCheckItem){"sim_to_classes", o->Zc, BC, 0, a, 0};
    break;
  case LOSS_NORMSOFTMAX: it[n++] = (LossCheckItem){"logits", o->Zc, BC, 0, a, 0}; break;
  default: break;
  }
  if (c->kind != LOSS_PROXYANCHOR) it[n++] = (LossCheckItem){"per_row_loss", o->row_loss, (size_t)c->B, 0, a, 0};
  it[n++] = (LossCheckItem){"grad_x_raw", o->dx_raw, BD, 0, g, 0};
  it[n++] = (LossCheckItem){"grad_proxies", o->dproxies, MD, 0, g, 0};
  return n;
}

int losscheck_items(LossCheckItem it[LOSSCHECK_NITEMS], const LossCheckOut *o, const LossCheckCase *c,
                    int use_ref) {
  if (c->kind != LOSS_PROXYGML) return baseline_items(it, o, c, use_ref);
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
  return LOSSCHECK_NITEMS;
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
