/* proxygml_cmd.c: `proxygml check-loss` (the loss against golden HDF5 files)
 * and `proxygml bench-loss` (its speed). See include/proxygml_cmd.h. */
#include "proxygml_cmd.h"

#include "common.h"
#include "h5io.h"
#include "proxygml.h"
#include "rng.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ check-loss */

typedef struct {
  int B, D, C, N, M, K;
  double lambda, scale;
  float *x_raw;    /* B x D */
  int *labels;     /* B */
  float *proxies;  /* M x D (transposed from the file's D x M) */
} LossCase;

static void losscase_free(LossCase *c) {
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

static int losscase_read(LossCase *c, hid_t f) {
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

/* one compared quantity: got (double, in the file's layout) vs the dataset `name` */
typedef struct {
  int failures, compared;
  double worst_ratio;
} Tally;

static void compare(Tally *t, hid_t f, const char *name, const double *got, size_t n, double atol, double rtol,
                    int exact) {
  if (!h5io_has(f, name)) return;
  double *want = xmalloc_f64(n ? n : 1);
  if (h5io_read(f, name, H5T_NATIVE_DOUBLE, want, n) != 0) {
    printf("  %-15s unreadable: %s\n", name, err_msg());
    t->failures++;
    free(want);
    return;
  }
  double ma = 0, mw = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs(got[i] - want[i]);
    if (isnan(d)) d = INFINITY;
    ma = fmax(ma, d);
    mw = fmax(mw, fabs(want[i]));
  }
  double tol = exact ? 0 : atol + rtol * mw;
  int ok = ma <= tol;
  printf("  %-15s max_abs %.3e  max_rel %.3e  tol %.1e  %s\n", name, ma, mw > 0 ? ma / mw : ma, tol,
         ok ? "ok" : "MISMATCH");
  t->compared++;
  if (!ok) t->failures++;
  if (tol > 0) t->worst_ratio = fmax(t->worst_ratio, ma / tol);
  free(want);
}

/* Everything the golden files hold, as doubles in the files' layouts. */
typedef struct {
  double loss, loss_cls, loss_reg;
  double *x, *S, *sel, *Z, *zmask, *P, *dx_raw, *dproxies, *gx, *GZ, *GS, *W, *GW;  /* proxies-side arrays D x M */
} LossOut;

static void lossout_alloc(LossOut *o, const LossCase *c) {
  size_t BD = (size_t)c->B * c->D, BM = (size_t)c->B * c->M, BC = (size_t)c->B * c->C, MD = (size_t)c->M * c->D;
  o->x = xcalloc(BD, 8); o->S = xcalloc(BM, 8); o->sel = xcalloc(BM, 8); o->Z = xcalloc(BC, 8);
  o->zmask = xcalloc(BC, 8); o->P = xcalloc(BC, 8); o->dx_raw = xcalloc(BD, 8); o->dproxies = xcalloc(MD, 8);
  o->gx = xcalloc(BD, 8); o->GZ = xcalloc(BC, 8); o->GS = xcalloc(BM, 8); o->W = xcalloc(MD, 8); o->GW = xcalloc(MD, 8);
}

static void lossout_free(LossOut *o) {
  double *b[] = {o->x, o->S, o->sel, o->Z, o->zmask, o->P, o->dx_raw, o->dproxies, o->gx, o->GZ, o->GS, o->W, o->GW};
  for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) free(b[i]);
}

static void run_fast(LossOut *o, const LossCase *c) {
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

static void run_ref(LossOut *o, const LossCase *c) {
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

/* 0 all within tolerance, 1 mismatch, 2 bad input */
static int check_one(const char *path, int use_ref) {
  hid_t f;
  if (h5io_open(path, &f) != 0) {
    fprintf(stderr, "check-loss: %s\n", err_msg());
    return 2;
  }
  LossCase c;
  if (losscase_read(&c, f) != 0) {
    fprintf(stderr, "check-loss: %s: %s\n", path, err_msg());
    losscase_free(&c);
    H5Fclose(f);
    return 2;
  }
  LossOut o = {0};
  lossout_alloc(&o, &c);
  if (use_ref) run_ref(&o, &c); else run_fast(&o, &c);
  printf("%s: B=%d D=%d C=%d N=%d K=%d lambda=%g scale=%g (%s)\n", path, c.B, c.D, c.C, c.N, c.K, c.lambda, c.scale,
         use_ref ? "float64 reference" : "float32");
  /* tolerances of the golden data's README; the float64 reference must agree to ~1e-12 */
  double a = use_ref ? 1e-12 : 1e-5, g = use_ref ? 1e-10 : 1e-4, ga = use_ref ? 1e-14 : 1e-8;
  size_t BD = (size_t)c.B * c.D, BM = (size_t)c.B * c.M, BC = (size_t)c.B * c.C, MD = (size_t)c.M * c.D;
  Tally t = {0};
  compare(&t, f, "selected", o.sel, BM, 0, 0, 1);
  compare(&t, f, "logits_mask", o.zmask, BC, 0, 0, 1);
  compare(&t, f, "x", o.x, BD, a, 0, 0);
  compare(&t, f, "similarity", o.S, BM, a, 0, 0);
  compare(&t, f, "centers", o.W, MD, a, 0, 0);
  compare(&t, f, "logits", o.Z, BC, a * c.N, 0, 0);
  compare(&t, f, "predict", o.P, BC, a, 0, 0);
  compare(&t, f, "loss", &o.loss, 1, a * fmax(1, fabs(o.loss)), 0, 0);
  compare(&t, f, "loss_cls", &o.loss_cls, 1, a * fmax(1, fabs(o.loss_cls)), 0, 0);
  compare(&t, f, "loss_reg", &o.loss_reg, 1, a * fmax(1, fabs(o.loss_reg)), 0, 0);
  compare(&t, f, "grad_x_raw", o.dx_raw, BD, ga, g, 0);
  compare(&t, f, "grad_proxies", o.dproxies, MD, ga, g, 0);
  compare(&t, f, "grad_x", o.gx, BD, ga, g, 0);
  compare(&t, f, "grad_logits", o.GZ, BC, ga, g, 0);
  compare(&t, f, "grad_similarity", o.GS, BM, ga, g, 0);
  compare(&t, f, "grad_centers", o.GW, MD, ga, g, 0);
  int rc = t.failures ? 1 : 0;
  if (!t.compared) {
    fprintf(stderr, "check-loss: %s: holds no expected dataset to compare with\n", path);
    rc = 2;
  }
  printf("%s: %s (%d quantities, worst at %.2f of its tolerance)\n", path, rc == 0 ? "ok" : "MISMATCH", t.compared,
         t.worst_ratio);
  lossout_free(&o);
  losscase_free(&c);
  H5Fclose(f);
  return rc;
}

int proxygml_cmd_check_loss(int argc, char **argv) {
  int use_ref = 0, nfiles = 0, worst = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: proxygml check-loss [--ref] FILE.h5 [FILE.h5 ...]\n"
             "Computes the ProxyGML loss and gradients from the inputs of each golden file\n"
             "(x_raw, labels, proxies; attributes C, N, K or r, lambda, scale) and compares\n"
             "every expected dataset present. --ref uses the float64 reference instead of the\n"
             "float32 implementation (tolerance ~1e-10). Exit 0 ok, 1 mismatch, 2 bad input.\n");
      return 0;
    }
    if (!strcmp(argv[i], "--ref")) { use_ref = 1; continue; }
    if (argv[i][0] == '-') {
      fprintf(stderr, "check-loss: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-') continue;
    int rc = check_one(argv[i], use_ref);
    nfiles++;
    if (rc == 2 || (rc == 1 && worst != 2)) worst = rc;
  }
  if (!nfiles) {
    fprintf(stderr, "check-loss: no file given (usage: proxygml check-loss [--ref] FILE.h5 ...)\n");
    return 2;
  }
  return worst;
}

/* ------------------------------------------------------------ bench-loss */

typedef struct { const char *name; int B, D, C, N; double r, lambda; } Preset;
static const Preset PRESETS[] = {   /* as in the PyTorch baseline's presets */
  {"cub", 32, 512, 100, 12, 0.05, 0.3},
  {"sop", 32, 512, 11318, 1, 0.05, 0.0},
  {"bigbatch", 256, 512, 100, 12, 0.05, 0.3},
};

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

int proxygml_cmd_bench_loss(int argc, char **argv) {
  const Preset *p = NULL;
  int threads = 1;
  double seconds = 2.0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: proxygml bench-loss --preset {cub,sop,bigbatch} [--threads T] [--seconds S]\n"
             "Times forward+backward of the loss (median after warm-up, at least S seconds of runs)\n"
             "and the sgemm rate of the same dense products.\n");
      return 0;
    } else if (!strcmp(argv[i], "--preset") && i + 1 < argc) {
      const char *name = argv[++i];
      for (size_t k = 0; k < sizeof PRESETS / sizeof PRESETS[0]; k++)
        if (!strcmp(PRESETS[k].name, name)) p = &PRESETS[k];
      if (!p) { fprintf(stderr, "bench-loss: unknown preset '%s' (cub, sop, bigbatch)\n", name); return 2; }
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
      if (threads < 1 || threads > 256) { fprintf(stderr, "bench-loss: --threads must be in [1, 256]\n"); return 2; }
    } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = atof(argv[++i]);
      if (!(seconds > 0 && seconds < 600)) { fprintf(stderr, "bench-loss: --seconds must be in (0, 600)\n"); return 2; }
    } else {
      fprintf(stderr, "bench-loss: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!p) { fprintf(stderr, "bench-loss: --preset is required (cub, sop, bigbatch)\n"); return 2; }
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);

  int B = p->B, D = p->D, C = p->C, N = p->N, M = C * N, K = proxygml_k_from_ratio(p->r, C, N);
  enum { NBATCH = 8 };   /* cycle through a few batches, as the baseline does */
  Rng rng;
  rng_init(&rng, 0);
  float *x = xmalloc_f32((size_t)NBATCH * B * D), *P = xmalloc_f32((size_t)M * D);
  int *y = xmalloc((size_t)NBATCH * B * sizeof(int));
  for (size_t i = 0; i < (size_t)NBATCH * B * D; i++) x[i] = (float)rng_normal(&rng);
  for (int i = 0; i < NBATCH * B; i++) y[i] = (int)rng_below(&rng, (uint32_t)C);
  float bound = 1.0f / sqrtf((float)M);   /* kaiming_uniform(a=sqrt 5) on a D x M tensor: fan_in = M */
  for (size_t i = 0; i < (size_t)M * D; i++) P[i] = bound * (2 * rng_uniform(&rng) - 1);
  float *dx = xcalloc((size_t)B * D, 4), *dP = xcalloc((size_t)M * D, 4);

  ProxyGML l;
  proxygml_init(&l, B, D, C, N, K, (float)p->lambda, 1.0f);
  enum { MAXREP = 2000 };
  double *t = xmalloc(MAXREP * sizeof(double));
  int n = 0;
  double start = now_sec();
  for (int it = 0; n < MAXREP; it++) {
    const float *xb = x + (size_t)(it % NBATCH) * B * D;
    double t0 = now_sec();
    proxygml_forward(&l, xb, y + (it % NBATCH) * B, P, B);
    proxygml_backward(&l, dx, dP);
    double t1 = now_sec();
    if (it >= 10) t[n++] = t1 - t0;
    if (n >= 20 && t1 - start > seconds) break;
  }
  double med = median(t, n);
  /* useful work: S = x W^T, the sparse backward (2 products over K entries per
   * row) and, with lambda, the three D*M*C regulariser products */
  double flops = 2.0 * B * D * M + 4.0 * B * K * D + (p->lambda > 0 ? 6.0 * M * C * D : 0);

  /* the same dense products through sgemm alone, for the achievable rate */
  float *Sb = xmalloc_f32((size_t)B * M), *Zc = xmalloc_f32((size_t)M * C), *U = xmalloc_f32((size_t)C * D);
  float *GW = xmalloc_f32((size_t)M * D);
  for (size_t i = 0; i < (size_t)C * D; i++) U[i] = P[i];
  int ng = 0;
  start = now_sec();
  for (int it = 0; ng < MAXREP; it++) {
    double t0 = now_sec();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, M, D, 1.0f, x, D, P, D, 0.0f, Sb, M);
    if (p->lambda > 0) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, C, D, 1.0f, P, D, U, D, 0.0f, Zc, C);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, D, C, 1.0f, Zc, C, U, D, 0.0f, GW, D);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, M, 1.0f, Zc, C, P, D, 0.0f, U, D);
    }
    double t1 = now_sec();
    if (it >= 10) t[ng++] = t1 - t0;
    if (ng >= 20 && t1 - start > seconds / 2) break;
  }
  double gemm_flops = 2.0 * B * D * M + (p->lambda > 0 ? 6.0 * M * C * D : 0);
  double gmed = median(t, ng);
  printf("preset=%s threads=%d median_ms=%.4f gflops=%.2f sgemm_gflops=%.2f reps=%d B=%d D=%d C=%d N=%d K=%d lambda=%g\n",
         p->name, threads, med * 1e3, flops / med * 1e-9, gemm_flops / gmed * 1e-9, n, B, D, C, N, K, p->lambda);
  free(Sb); free(Zc); free(U); free(GW);
  free(t); free(x); free(P); free(y); free(dx); free(dP);
  proxygml_free(&l);
  return 0;
}
