/* test_loss.c: the ProxyGML loss against the golden files, the float32 path
 * against the float64 reference on random problems of many shapes, the
 * reference against finite differences, and the special cases of the issue. */
#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "h5io.h"
#include "proxygml.h"
#include "rng.h"
#include "testutil.h"

/* ------------------------------------------------------------ golden files */

typedef struct {
  int B, D, C, N, M, K;
  double lambda, scale;
  float *x_raw; int *labels; float *proxies;   /* proxies M x D */
} Golden;

static void golden_read(Golden *g, hid_t f) {
  int64_t v;
  cr_assert_eq(h5io_attr_i64(f, "C", &v), 0); g->C = (int)v;
  cr_assert_eq(h5io_attr_i64(f, "N", &v), 0); g->N = (int)v;
  cr_assert_eq(h5io_attr_i64(f, "K", &v), 0); g->K = (int)v;
  cr_assert_eq(h5io_attr_i64(f, "B", &v), 0); g->B = (int)v;
  cr_assert_eq(h5io_attr_i64(f, "D", &v), 0); g->D = (int)v;
  double r;
  cr_assert_eq(h5io_attr_f64(f, "r", &r), 0);
  cr_assert_eq(proxygml_k_from_ratio(r, g->C, g->N), g->K, "K from r disagrees with the stored K");
  cr_assert_eq(h5io_attr_f64(f, "lambda", &g->lambda), 0);
  cr_assert_eq(h5io_attr_f64(f, "scale", &g->scale), 0);
  g->M = g->C * g->N;
  g->x_raw = xmalloc_f32((size_t)g->B * g->D);
  g->labels = xmalloc((size_t)g->B * sizeof(int));
  g->proxies = xmalloc_f32((size_t)g->M * g->D);
  float *pt = xmalloc_f32((size_t)g->M * g->D);
  cr_assert_eq(h5io_read(f, "x_raw", H5T_NATIVE_FLOAT, g->x_raw, (size_t)g->B * g->D), 0);
  cr_assert_eq(h5io_read(f, "labels", H5T_NATIVE_INT, g->labels, (size_t)g->B), 0);
  cr_assert_eq(h5io_read(f, "proxies", H5T_NATIVE_FLOAT, pt, (size_t)g->M * g->D), 0);
  for (int d = 0; d < g->D; d++)
    for (int j = 0; j < g->M; j++) g->proxies[(size_t)j * g->D + d] = pt[(size_t)d * g->M + j];
  free(pt);
}

static void golden_free(Golden *g) { free(g->x_raw); free(g->labels); free(g->proxies); }

/* D x M (file layout) from M x D */
static double *to_dm(const float *a, int M, int D) {
  double *o = xmalloc_f64((size_t)M * D);
  for (int j = 0; j < M; j++)
    for (int d = 0; d < D; d++) o[(size_t)d * M + j] = a[(size_t)j * D + d];
  return o;
}

static void check_golden_fast(const char *path) {
  hid_t f;
  cr_assert_eq(h5io_open(path, &f), 0, "%s", err_msg());
  Golden g;
  golden_read(&g, f);
  ProxyGML l;
  proxygml_init(&l, g.B, g.D, g.C, g.N, g.K, (float)g.lambda, (float)g.scale);
  float *dx = xcalloc((size_t)g.B * g.D, 4), *dp = xcalloc((size_t)g.M * g.D, 4);
  proxygml_forward(&l, g.x_raw, g.labels, g.proxies, g.B);
  proxygml_backward(&l, dx, dp);

  size_t n;
  /* masks: exactly equal */
  double *sel = read_f64(f, "selected", &n);
  for (int b = 0; b < g.B; b++) {
    int cnt = 0;
    for (int j = 0; j < g.M; j++) cnt += sel[(size_t)b * g.M + j] != 0;
    cr_assert_eq(cnt, g.K, "%s: golden row %d does not have K ones", path, b);
    for (int i = 0; i < g.K; i++)
      cr_assert(sel[(size_t)b * g.M + l.sel[(size_t)b * g.K + i]] == 1, "%s: row %d selects proxy %d, not in golden",
                path, b, l.sel[(size_t)b * g.K + i]);
  }
  double *zm = read_f64(f, "logits_mask", &n);
  for (size_t i = 0; i < n; i++) cr_assert_eq((int)zm[i], l.zmask[i], "%s: logits_mask[%zu]", path, i);

  double *x = read_f64(f, "x", &n);
  cr_assert(check_close_f32("x", l.x, x, n, 1e-5, 0));
  double *S = read_f64(f, "similarity", &n);
  cr_assert(check_close_f32("similarity", l.S, S, n, 1e-5, 0));
  double *Z = read_f64(f, "logits", &n);
  cr_assert(check_close_f32("logits", l.Z, Z, n, 1e-5 * g.N, 0));
  double *P = read_f64(f, "predict", &n);
  cr_assert(check_close_f32("predict", l.P, P, n, 1e-5, 0));
  const char *names[] = {"loss", "loss_cls", "loss_reg"};
  float got[] = {l.loss, l.loss_cls, l.loss_reg};
  for (int k = 0; k < 3; k++) {
    double *want = read_f64(f, names[k], &n);
    cr_assert(fabs(got[k] - want[0]) <= 1e-5 * fmax(1, fabs(want[0])), "%s: %s = %.9g, want %.9g", path, names[k],
              got[k], want[0]);
    free(want);
  }
  double *gx = read_f64(f, "grad_x_raw", &n);
  cr_assert(check_close_f32("grad_x_raw", dx, gx, n, 1e-8, 1e-4), "%s", path);
  double *gp = read_f64(f, "grad_proxies", &n);
  double *dpm = to_dm(dp, g.M, g.D);
  cr_assert(check_close("grad_proxies", dpm, gp, n, 1e-8, 1e-4), "%s", path);

  free(sel); free(zm); free(x); free(S); free(Z); free(P); free(gx); free(gp); free(dpm); free(dx); free(dp);
  proxygml_free(&l);
  golden_free(&g);
  H5Fclose(f);
}

static void check_golden_ref(const char *path) {
  hid_t f;
  cr_assert_eq(h5io_open(path, &f), 0, "%s", err_msg());
  Golden g;
  golden_read(&g, f);
  double *x = xmalloc_f64((size_t)g.B * g.D), *p = xmalloc_f64((size_t)g.M * g.D);
  for (size_t i = 0; i < (size_t)g.B * g.D; i++) x[i] = g.x_raw[i];
  for (size_t i = 0; i < (size_t)g.M * g.D; i++) p[i] = g.proxies[i];
  ProxyGMLRef r;
  proxygml_ref(&r, x, g.labels, p, g.B, g.D, g.C, g.N, g.K, g.lambda, g.scale);
  size_t n;
  double *sel = read_f64(f, "selected", &n);
  for (size_t i = 0; i < n; i++) cr_assert_eq((int)sel[i], r.sel[i], "%s: selected[%zu]", path, i);
  double *want = read_f64(f, "loss", &n);
  cr_assert(fabs(r.loss - want[0]) <= 1e-12 * fmax(1, fabs(want[0])), "%s: ref loss %.17g want %.17g", path, r.loss, want[0]);
  double *gx = read_f64(f, "grad_x_raw", &n);
  cr_assert(check_close("ref grad_x_raw", r.dx_raw, gx, n, 1e-15, 1e-10), "%s", path);
  double *gp = read_f64(f, "grad_proxies", &n);
  double *dpm = xmalloc_f64((size_t)g.M * g.D);
  for (int j = 0; j < g.M; j++)
    for (int d = 0; d < g.D; d++) dpm[(size_t)d * g.M + j] = r.dproxies[(size_t)j * g.D + d];
  cr_assert(check_close("ref grad_proxies", dpm, gp, n, 1e-15, 1e-10), "%s", path);
  free(sel); free(want); free(gx); free(gp); free(dpm); free(x); free(p);
  proxygml_ref_free(&r);
  golden_free(&g);
  H5Fclose(f);
}

static int golden_files(glob_t *gl) {
  char pat[4200];
  snprintf(pat, sizeof pat, "%s", testdata_path("loss_*.h5"));
  cr_assert_eq(glob(pat, 0, NULL, gl), 0, "no golden files match %s", pat);
  cr_assert_geq(gl->gl_pathc, 10, "expected the 10 golden loss files, found %zu", gl->gl_pathc);
  return (int)gl->gl_pathc;
}

Test(golden, float32_every_file) {
  glob_t gl;
  int n = golden_files(&gl);
  for (int i = 0; i < n; i++) check_golden_fast(gl.gl_pathv[i]);
  globfree(&gl);
}

Test(golden, float64_reference_every_file, .timeout = 120) {
  glob_t gl;
  int n = golden_files(&gl);
  for (int i = 0; i < n; i++) check_golden_ref(gl.gl_pathv[i]);
  globfree(&gl);
}

Test(golden, k_from_ratio_rounding) {
  cr_assert_eq(proxygml_k_from_ratio(0.07, 100, 5), 36);   /* (0.07*100)*5 = 35.00000000000001 */
  cr_assert_eq(proxygml_k_from_ratio(0.05, 100, 12), 60);  /* not 61 as float32 r would give */
  cr_assert_eq(proxygml_k_from_ratio(1.0, 6, 3), 18);
}

/* ------------------------------------------------------------ random problems */

typedef struct {
  int B, D, C, N, K;
  double lambda, scale;
  float *x_raw; int *labels; float *proxies;
} Problem;

/* boosted top-K gap of row b under the reference: the K-th minus the (K+1)-th */
static double topk_gap(const ProxyGMLRef *r, const int *labels, int b) {
  int M = r->M;
  double kth = INFINITY, next = -INFINITY;
  for (int j = 0; j < M; j++) {
    double t = r->S[(size_t)b * M + j] + 1000.0 * (j / r->N == labels[b]);
    if (r->sel[(size_t)b * M + j]) kth = fmin(kth, t); else next = fmax(next, t);
  }
  return kth - next;
}

/* random inputs, rows redrawn until every row's top-K boundary is clear of
 * near-ties by `gap` (float32 and float64 must then select the same set) */
static void problem_make(Problem *p, uint64_t seed, int B, int D, int C, int N, int K, double lambda, double scale,
                         double gap, const int *labels, int positive) {
  *p = (Problem){B, D, C, N, K, lambda, scale, NULL, NULL, NULL};
  int M = C * N;
  Rng rng;
  rng_init(&rng, seed);
  p->x_raw = xmalloc_f32((size_t)B * D);
  p->labels = xmalloc((size_t)B * sizeof(int));
  p->proxies = xmalloc_f32((size_t)M * D);
  /* positive inputs make all similarities large: logits near N, for the overflow test */
#define DRAW() (positive ? (float)fabs(rng_normal(&rng)) : (float)rng_normal(&rng))
  for (size_t i = 0; i < (size_t)M * D; i++) p->proxies[i] = DRAW();
  for (int b = 0; b < B; b++) p->labels[b] = labels ? labels[b] : (int)rng_below(&rng, (uint32_t)C);
  for (size_t i = 0; i < (size_t)B * D; i++) p->x_raw[i] = DRAW();
  for (int attempt = 0; attempt < 200; attempt++) {
    double *x = xmalloc_f64((size_t)B * D), *pr = xmalloc_f64((size_t)M * D);
    for (size_t i = 0; i < (size_t)B * D; i++) x[i] = p->x_raw[i];
    for (size_t i = 0; i < (size_t)M * D; i++) pr[i] = p->proxies[i];
    ProxyGMLRef r;
    proxygml_ref(&r, x, p->labels, pr, B, D, C, N, K, 0, scale);
    int bad = 0;
    for (int b = 0; b < B; b++)
      if (K < M && topk_gap(&r, p->labels, b) < gap) {
        bad = 1;
        for (int d = 0; d < D; d++) p->x_raw[(size_t)b * D + d] = DRAW();
      }
    proxygml_ref_free(&r);
    free(x); free(pr);
    if (!bad) return;
  }
  cr_assert_fail("could not draw a problem without near-ties");
#undef DRAW
}

static void problem_free(Problem *p) { free(p->x_raw); free(p->labels); free(p->proxies); }

/* float32 path vs float64 reference on one problem */
static void check_fast_vs_ref(const Problem *p) {
  int B = p->B, D = p->D, M = p->C * p->N;
  double *x = xmalloc_f64((size_t)B * D), *pr = xmalloc_f64((size_t)M * D);
  for (size_t i = 0; i < (size_t)B * D; i++) x[i] = p->x_raw[i];
  for (size_t i = 0; i < (size_t)M * D; i++) pr[i] = p->proxies[i];
  ProxyGMLRef r;
  proxygml_ref(&r, x, p->labels, pr, B, D, p->C, p->N, p->K, p->lambda, p->scale);
  ProxyGML l;
  proxygml_init(&l, B + 3, D, p->C, p->N, p->K, (float)p->lambda, (float)p->scale);   /* B < B_max works */
  float *dx = xcalloc((size_t)B * D, 4), *dp = xcalloc((size_t)M * D, 4);
  proxygml_forward(&l, p->x_raw, p->labels, p->proxies, B);
  proxygml_backward(&l, dx, dp);
  for (int b = 0; b < B; b++)
    for (int i = 0; i < p->K; i++)
      cr_assert(r.sel[(size_t)b * M + l.sel[(size_t)b * p->K + i]], "B=%d D=%d C=%d N=%d K=%d: row %d selection differs",
                B, D, p->C, p->N, p->K, b);
  for (int i = 0; i < B * p->C; i++) cr_assert_eq(l.zmask[i], r.zmask[i]);
  char lab[128];
  snprintf(lab, sizeof lab, "B=%d D=%d C=%d N=%d K=%d lambda=%g scale=%g", B, D, p->C, p->N, p->K, p->lambda, p->scale);
  cr_assert(isfinite(l.loss), "%s: loss not finite", lab);
  cr_assert(fabs(l.loss - r.loss) <= 2e-5 * fmax(1, fabs(r.loss)), "%s: loss %.9g vs ref %.9g", lab, l.loss, r.loss);
  cr_assert(fabs(l.loss_reg - r.loss_reg) <= 2e-5 * fmax(1, fabs(r.loss_reg)), "%s: loss_reg", lab);
  cr_assert(check_close_f32(lab, dx, r.dx_raw, (size_t)B * D, 1e-8, 2e-4), "%s: grad_x_raw", lab);
  cr_assert(check_close_f32(lab, dp, r.dproxies, (size_t)M * D, 1e-8, 2e-4), "%s: grad_proxies", lab);
  free(dx); free(dp); free(x); free(pr);
  proxygml_free(&l);
  proxygml_ref_free(&r);
}

Test(random, fast_matches_reference_many_shapes, .timeout = 120) {
  /* B, D, C, N, K, lambda, scale: odd sizes, K < N, K = N, K = M, B = 1 */
  const struct { int B, D, C, N, K; double lam, s; } cases[] = {
    {1, 7, 3, 2, 3, 0.3, 1},   {5, 13, 7, 3, 9, 0.3, 1},   {17, 33, 11, 5, 20, 0.5, 1},
    {9, 16, 5, 4, 2, 0.3, 1},  {9, 16, 6, 3, 3, 0.3, 1},   {8, 16, 6, 3, 18, 0.3, 1},
    {31, 65, 13, 1, 4, 0, 1},  {3, 300, 257, 1, 40, 0, 1}, {33, 128, 40, 6, 31, 0.3, 1},
    {64, 24, 8, 3, 6, 0.3, 20}, {12, 20, 9, 8, 30, 0.2, 40}, {7, 9, 300, 2, 77, 0.1, 1},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    Problem p;
    problem_make(&p, 100 + k, cases[k].B, cases[k].D, cases[k].C, cases[k].N, cases[k].K, cases[k].lam, cases[k].s, 1e-4, NULL, 0);
    check_fast_vs_ref(&p);
    problem_free(&p);
  }
}

Test(random, absent_and_repeated_classes) {
  /* every row of class 2 but one of class 5: most classes absent from the batch,
   * yet their proxies still compete in the rows that select them */
  int labels[20];
  for (int b = 0; b < 20; b++) labels[b] = b == 0 ? 5 : 2;
  Problem p;
  problem_make(&p, 7, 20, 24, 9, 3, 8, 0.3, 1, 1e-4, labels, 0);
  check_fast_vs_ref(&p);
  problem_free(&p);
}

Test(random, large_scale_does_not_overflow_float32) {
  /* scale 40 with N = 8: s * Z reaches 320, far past float32's exp range */
  for (int k = 0; k < 2; k++) {
    double scale = k ? 40 : 20;
    Problem p;
    problem_make(&p, 11 + k, 16, 12, 5, 8, 20, 0.3, scale, 1e-4, NULL, 1);
    ProxyGML l;
    proxygml_init(&l, p.B, p.D, p.C, p.N, p.K, 0.3f, (float)scale);
    float *dx = xcalloc((size_t)p.B * p.D, 4), *dp = xcalloc((size_t)p.C * p.N * p.D, 4);
    proxygml_forward(&l, p.x_raw, p.labels, p.proxies, p.B);
    proxygml_backward(&l, dx, dp);
    float zmax = 0;
    for (int i = 0; i < p.B * p.C; i++) zmax = fmaxf(zmax, l.Z[i]);
    cr_assert_gt(scale * zmax, 88.8, "test does not reach float32 overflow (s*Zmax = %g)", scale * zmax);
    cr_assert(isfinite(l.loss));
    for (size_t i = 0; i < (size_t)p.B * p.D; i++) cr_assert(isfinite(dx[i]));
    for (size_t i = 0; i < (size_t)p.C * p.N * p.D; i++) cr_assert(isfinite(dp[i]));
    free(dx); free(dp);
    proxygml_free(&l);
    check_fast_vs_ref(&p);
    problem_free(&p);
  }
}

Test(random, deterministic_bitwise) {
  Problem p;
  problem_make(&p, 3, 40, 64, 30, 4, 12, 0.3, 1, 0, NULL, 0);
  int M = p.C * p.N;
  float *dx[2], *dp[2], loss[2];
  for (int run = 0; run < 2; run++) {
    ProxyGML l;
    proxygml_init(&l, p.B, p.D, p.C, p.N, p.K, 0.3f, 1.0f);
    dx[run] = xcalloc((size_t)p.B * p.D, 4);
    dp[run] = xcalloc((size_t)M * p.D, 4);
    loss[run] = proxygml_forward(&l, p.x_raw, p.labels, p.proxies, p.B);
    proxygml_backward(&l, dx[run], dp[run]);
    proxygml_free(&l);
  }
  cr_assert_eq(memcmp(&loss[0], &loss[1], sizeof(float)), 0);
  cr_assert_eq(memcmp(dx[0], dx[1], (size_t)p.B * p.D * 4), 0);
  cr_assert_eq(memcmp(dp[0], dp[1], (size_t)M * p.D * 4), 0);
  for (int run = 0; run < 2; run++) { free(dx[run]); free(dp[run]); }
  problem_free(&p);
}

/* Two processes' parts (half the batch each with batch_norm = B, half the
 * regulariser rows each) sum to the whole: what the MPI trainer relies on. */
Test(random, split_batch_and_regulariser_sum_to_whole) {
  Problem p;
  problem_make(&p, 5, 24, 32, 10, 3, 7, 0.3, 1, 1e-4, NULL, 0);
  int M = p.C * p.N, B = p.B, D = p.D, h = B / 2;
  ProxyGML l;
  proxygml_init(&l, B, D, p.C, p.N, p.K, 0.3f, 1.0f);
  float *dx = xcalloc((size_t)B * D, 4), *dp = xcalloc((size_t)M * D, 4);
  float whole = proxygml_forward(&l, p.x_raw, p.labels, p.proxies, B);
  proxygml_backward(&l, dx, dp);
  float *dx2 = xcalloc((size_t)B * D, 4), *dp2 = xcalloc((size_t)M * D, 4);
  double parts = 0;
  l.batch_norm = B;
  for (int r = 0; r < 2; r++) {
    int b0 = r ? h : 0, nb = r ? B - h : h;
    l.reg_begin = r ? M / 2 : 0;
    l.reg_end = r ? M : M / 2;
    parts += proxygml_forward(&l, p.x_raw + (size_t)b0 * D, p.labels + b0, p.proxies, nb);
    proxygml_backward(&l, dx2 + (size_t)b0 * D, dp2);
  }
  cr_assert(fabs(parts - whole) <= 1e-6 * fmax(1, fabs(whole)), "parts %.9g whole %.9g", parts, whole);
  double *w = xmalloc_f64((size_t)M * D);
  for (size_t i = 0; i < (size_t)M * D; i++) w[i] = dp[i];
  cr_assert(check_close_f32("split grad_proxies", dp2, w, (size_t)M * D, 1e-9, 1e-5));
  free(w);
  w = xmalloc_f64((size_t)B * D);
  for (size_t i = 0; i < (size_t)B * D; i++) w[i] = dx[i];
  cr_assert(check_close_f32("split grad_x_raw", dx2, w, (size_t)B * D, 1e-9, 1e-5));
  free(w); free(dx); free(dp); free(dx2); free(dp2);
  proxygml_free(&l);
  problem_free(&p);
}

/* ------------------------------------------------------------ finite differences */

static double ref_loss(const double *x, const int *y, const double *p, const Problem *pr) {
  ProxyGMLRef r;
  proxygml_ref(&r, x, y, p, pr->B, pr->D, pr->C, pr->N, pr->K, pr->lambda, pr->scale);
  double v = r.loss;
  proxygml_ref_free(&r);
  return v;
}

static void finite_differences(const Problem *pr) {
  int B = pr->B, D = pr->D, M = pr->C * pr->N;
  double *x = xmalloc_f64((size_t)B * D), *p = xmalloc_f64((size_t)M * D);
  for (size_t i = 0; i < (size_t)B * D; i++) x[i] = pr->x_raw[i];
  for (size_t i = 0; i < (size_t)M * D; i++) p[i] = pr->proxies[i];
  ProxyGMLRef r;
  proxygml_ref(&r, x, pr->labels, p, B, D, pr->C, pr->N, pr->K, pr->lambda, pr->scale);
  const double h = 1e-6;
  double gmax = fmax(max_abs(r.dx_raw, (size_t)B * D), max_abs(r.dproxies, (size_t)M * D));
  double worst = 0;
  for (int which = 0; which < 2; which++) {
    double *a = which ? p : x, *g = which ? r.dproxies : r.dx_raw;
    size_t n = which ? (size_t)M * D : (size_t)B * D;
    for (size_t i = 0; i < n; i++) {
      double keep = a[i];
      a[i] = keep + h;
      double up = ref_loss(x, pr->labels, p, pr);
      a[i] = keep - h;
      double dn = ref_loss(x, pr->labels, p, pr);
      a[i] = keep;
      double fd = (up - dn) / (2 * h);
      worst = fmax(worst, fabs(fd - g[i]));
      cr_assert(fabs(fd - g[i]) <= 1e-7 * fmax(gmax, 1e-3) + 1e-9, "B=%d D=%d C=%d N=%d K=%d %s[%zu]: fd %.10g analytic %.10g",
                B, D, pr->C, pr->N, pr->K, which ? "proxies" : "x_raw", i, fd, g[i]);
    }
  }
  proxygml_ref_free(&r);
  free(x); free(p);
}

Test(finite_differences, reference_backward, .timeout = 120) {
  /* away from the top-K boundary (gap >= 1e-2 >> h), so the masks stay put */
  const struct { int B, D, C, N, K; double lam, s; } cases[] = {
    {4, 5, 3, 2, 3, 0.3, 1}, {6, 4, 4, 3, 7, 0.5, 1}, {5, 6, 5, 2, 10, 0.3, 1},
    {3, 4, 4, 3, 2, 0.3, 1}, {3, 5, 3, 3, 3, 0, 1},   {4, 4, 3, 2, 4, 0.3, 20},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    Problem p;
    problem_make(&p, 50 + k, cases[k].B, cases[k].D, cases[k].C, cases[k].N, cases[k].K, cases[k].lam, cases[k].s, 1e-2, NULL, 0);
    finite_differences(&p);
    problem_free(&p);
  }
}

/* ------------------------------------------------------------ the selection */

/* proxygml_select (histogram threshold) against proxygml_select_ref (a full
 * sort) on rows built to tie: values from a handful of levels, +0 and -0,
 * huge and tiny magnitudes, every K from 1 to M for small M, and the bucket
 * of the threshold holding most of the row. */
static void select_case(Rng *rng, int C, int N, int K, int levels, int y) {
  const int M = C * N;
  float *s = xmalloc_f32((size_t)M), *v = xmalloc_f32(2 * (size_t)M);
  int *idx = xmalloc((size_t)M * sizeof(int)), *got = xmalloc((size_t)K * sizeof(int)), *want = xmalloc((size_t)K * sizeof(int));
  for (int j = 0; j < M; j++) {
    double u = rng_uniform(rng);
    if (levels > 0) s[j] = (float)((int)(u * levels) - levels / 2) * 0.125f;   /* many exact ties, +0 among them */
    else s[j] = (float)rng_normal(rng) * 0.05f;
    if (levels > 0 && s[j] == 0 && rng_uniform(rng) < 0.5) s[j] = -0.0f;
    if (levels == -1) s[j] = 0.0625f + (float)j * 1e-9f * (float)(j % 3);   /* one narrow bucket */
    if (levels == -2) s[j] = u < 0.8 ? -3e38f : 3e38f * (float)u;   /* candidates spanning more than FLT_MAX */
  }
  if (M > 4) { s[1] = 3e38f; s[2] = -3e38f; s[3] = 1e-40f; }
  if (M > 5 && levels == -2) s[5] = INFINITY;   /* an infinite negative still ranks behind the positives */
  proxygml_select(got, s, y, C, N, K, v, idx);
  proxygml_select_ref(want, s, y, C, N, K);
  for (int i = 0; i < K; i++)
    cr_assert_eq(got[i], want[i], "C=%d N=%d K=%d levels=%d y=%d: entry %d is %d, the sort says %d", C, N, K, levels,
                 y, i, got[i], want[i]);
  free(s); free(v); free(idx); free(got); free(want);
}

Test(select, matches_full_sort_with_ties) {
  Rng rng;
  rng_init(&rng, 7);
  const int shapes[][2] = {{1, 1}, {2, 1}, {5, 3}, {7, 2}, {13, 1}, {10, 4}, {3, 8}};
  for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
    const int C = shapes[sh][0], N = shapes[sh][1], M = C * N;
    for (int K = 1; K <= M; K++)
      for (int levels = -1; levels <= 9; levels += 5)
        select_case(&rng, C, N, K, levels, (int)rng_below(&rng, (uint32_t)C));
  }
  for (int rep = 0; rep < 24; rep++) {   /* sop-like rows: thousands of negatives, K - N in the hundreds */
    const int C = 3000 + (int)rng_below(&rng, 2000), N = 1 + (int)rng_below(&rng, 2), M = C * N;
    const int K = N + 1 + (int)rng_below(&rng, (uint32_t)(M / 10));
    const int levels[] = {0, 3, -1, -2};
    select_case(&rng, C, N, K, levels[rep % 4], (int)rng_below(&rng, (uint32_t)C));
  }
}

/* A row whose sampled negatives (proxygml_select_sample) are its largest:
 * the sample's bound then keeps fewer than K - N negatives, and the
 * selection must notice and still return the sort's set. */
Test(select, sample_that_misleads_falls_back) {
  Rng rng;
  rng_init(&rng, 11);
  const int C = 5000, N = 1, M = C * N, K = 300, y = 1234;
  float *s = xmalloc_f32((size_t)M), *v = xmalloc_f32(2 * (size_t)M);
  int *idx = xmalloc((size_t)M * sizeof(int)), got[300], want[300], ns = 0;
  for (int j = 0; j < M; j++) s[j] = (float)rng_uniform(&rng) * 0.1f;
  for (int i = 0; proxygml_select_sample(i) < M - N; i++, ns++) {
    const int j = proxygml_select_sample(i);
    s[j + (j >= y * N ? N : 0)] = 1.0f + (float)rng_uniform(&rng);
  }
  /* the premise: the sampled are the row's largest negatives, so the few
   * times (K - N) / stride that the sample's bound reaches for are all that
   * pass it, far fewer than K - N */
  int high = 0;
  for (int j = 0; j < M; j++) high += j != y && s[j] >= 1.0f;
  cr_assert(high == ns && ns > K - N, "high %d, sampled %d", high, ns);
  proxygml_select(got, s, y, C, N, K, v, idx);
  proxygml_select_ref(want, s, y, C, N, K);
  for (int i = 0; i < K; i++) cr_assert_eq(got[i], want[i], "entry %d is %d, the sort says %d", i, got[i], want[i]);
  free(s); free(v); free(idx);
}

/* infinite negatives tie with each other, never with the positives: the
 * positive and the lower-indexed infinity (the rule, worked by hand) */
Test(select, infinite_negatives_rank_behind_positives) {
  const float s[3] = {INFINITY, INFINITY, 0.0f};
  float v[6];
  int idx[3], got[2], want[2];
  proxygml_select(got, s, 2, 3, 1, 2, v, idx);
  proxygml_select_ref(want, s, 2, 3, 1, 2);
  for (int i = 0; i < 2; i++) {
    cr_assert_eq(got[i], i == 0 ? 0 : 2, "entry %d is %d", i, got[i]);
    cr_assert_eq(want[i], got[i], "the sort's entry %d is %d", i, want[i]);
  }
}

/* a NaN row keeps the heap's order, which selects the positives and K valid entries */
Test(select, nan_row_keeps_positives) {
  const int C = 6, N = 2, M = C * N, K = 5, y = 2;
  float s[12], v[24];
  int idx[12], out[5];
  for (int j = 0; j < M; j++) s[j] = (float)j * 0.1f;
  s[7] = NAN;
  proxygml_select(out, s, y, C, N, K, v, idx);
  int pos = 0;
  for (int i = 0; i < K; i++) {
    cr_assert(out[i] >= 0 && out[i] < M && (i == 0 || out[i] > out[i - 1]), "entry %d = %d", i, out[i]);
    pos += out[i] / N == y;
  }
  cr_assert_eq(pos, N);
}

/* ------------------------------------------------------------ the regulariser's row */

/* proxygml_regulariser_row (float, its own vectorised exponential) against
 * the same softmax in double with libm's exp, on rows whose spread reaches
 * far below the exponential's cut at -87 (logits of up to 2N apart; N is
 * unbounded). Bounds: each e^x is within a few float ulps (Taylor remainder
 * < 1e-8, a dozen rounded operations), so a probability is within ~1e-6 of
 * itself relatively, and the terms the cut drops are below e^-87 beside
 * the maximum's 1: the outputs ((softmax - onehot) / M) to 1e-6 of 1 / M
 * absolute, the loss term to 1e-6 absolute plus relative. */
Test(regulariser, row_matches_double_softmax) {
  Rng rng;
  rng_init(&rng, 11);
  const int M = 40;
  for (int rep = 0; rep < 200; rep++) {
    const int C = 1 + (int)rng_below(&rng, 300), own = (int)rng_below(&rng, (uint32_t)C);
    const double spread = rep % 4 == 0 ? 200.0 : rep % 4 == 1 ? 30.0 : rep % 4 == 2 ? 2.0 : 1e-4;
    float *z = xmalloc_f32((size_t)C);
    double *zd = xmalloc((size_t)C * sizeof(double));
    for (int c = 0; c < C; c++) zd[c] = z[c] = (float)((rng_uniform_f64(&rng) - 0.5) * spread);
    double m = -INFINITY, se = 0;
    for (int c = 0; c < C; c++) m = fmax(m, zd[c]);
    for (int c = 0; c < C; c++) se += exp(zd[c] - m);
    const double want_loss = m + log(se) - zd[own];
    const double got_loss = proxygml_regulariser_row(z, own, C, M);
    cr_assert(fabs(got_loss - want_loss) <= 1e-6 * (1 + fabs(want_loss)), "C=%d spread=%g: loss %.9g, double %.9g", C,
              spread, got_loss, want_loss);
    for (int c = 0; c < C; c++) {
      const double want = exp(zd[c] - m) / se / M - (c == own ? 1.0 / M : 0.0);
      cr_assert(fabs(z[c] - want) <= 1e-6 / M, "C=%d spread=%g class %d: %.9g, double %.9g", C, spread, c, z[c], want);
    }
    free(z);
    free(zd);
  }
}
