/* test_baselines.c: the baseline losses (ProxyNCA, Proxy-Anchor, SoftTriple,
 * Normalized Softmax) against every golden file in tests/data/baselines
 * (through losscheck, with the files' own hyper-parameters), the float32 path
 * against the float64 reference on random problems, the split over two
 * "ranks" against the whole batch, the reference against central finite
 * differences, and the loss interface's dispatch. */
#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "baselines.h"
#include "common.h"
#include "h5io.h"
#include "loss.h"
#include "losscheck.h"
#include "rng.h"
#include "testutil.h"

static const char *const KIND_NAMES[] = {"proxynca", "proxyanchor", "softtriple", "normsoftmax"};

/* ------------------------------------------------------------ golden files */

/* every quantity of the file within the tolerances of tests/data/README.md
 * (losscheck_items holds them); returns how many were compared */
static int check_file(const char *path, int use_ref) {
  hid_t f;
  cr_assert_eq(h5io_open(path, &f), 0, "%s", err_msg());
  LossCheckCase c;
  cr_assert_eq(losscheck_case_read(&c, f), 0, "%s: %s", path, err_msg());
  cr_assert_neq(c.kind, LOSS_PROXYGML, "%s has no loss_name: not a baseline file", path);
  LossCheckOut o;
  losscheck_compute(&o, &c, use_ref);
  LossCheckItem it[LOSSCHECK_NITEMS];
  int n = losscheck_items(it, &o, &c, use_ref), compared = 0, grads = 0;
  for (int i = 0; i < n; i++) {
    LossCheckResult r;
    int got = losscheck_compare(&r, f, &it[i]);
    cr_assert_geq(got, 0, "%s: %s unreadable: %s", path, it[i].name, err_msg());
    if (!got) continue;
    compared++;
    grads += !strncmp(it[i].name, "grad_", 5);
    cr_assert(r.ok, "%s (%s): %s max_abs %.3e > tol %.3e", path, use_ref ? "ref" : "float32", it[i].name, r.max_abs,
              r.tol);
  }
  cr_assert_eq(grads, 2, "%s: grad_x_raw and grad_proxies must both be compared", path);
  losscheck_out_free(&o);
  losscheck_case_free(&c);
  H5Fclose(f);
  return compared;
}

static void check_every_file(int use_ref) {
  glob_t gl;
  cr_assert_eq(glob(testdata_path("baselines/*.h5"), 0, NULL, &gl), 0, "no baseline golden files");
  int seen[4] = {0};
  for (size_t i = 0; i < gl.gl_pathc; i++) {
    cr_assert_geq(check_file(gl.gl_pathv[i], use_ref), 4, "%s: too few quantities compared", gl.gl_pathv[i]);
    for (int k = 0; k < 4; k++) {   /* file names spell the loss with underscores */
      char stem[32];
      const char *stems[] = {"proxy_nca", "proxy_anchor", "soft_triple", "normalized_softmax"};
      snprintf(stem, sizeof stem, "/%s_", stems[k]);
      seen[k] += strstr(gl.gl_pathv[i], stem) != NULL;
    }
  }
  for (int k = 0; k < 4; k++) cr_assert_geq(seen[k], 2, "no golden files for %s", KIND_NAMES[k]);
  globfree(&gl);
}

Test(golden, float32_every_baseline_file) { check_every_file(0); }
Test(golden, float64_reference_every_baseline_file) { check_every_file(1); }

/* ------------------------------------------------------------ random problems */

typedef struct {
  BaselineKind kind;
  BaselineParams p;
  int B, D, C, M;
  float *x_raw, *proxies;   /* B x D, M x D */
  int *labels;
} Problem;

static void problem_make(Problem *q, uint64_t seed, BaselineKind kind, const BaselineParams *p, int B, int D, int C) {
  memset(q, 0, sizeof *q);
  q->kind = kind; q->p = *p; q->B = B; q->D = D; q->C = C;
  q->M = C * baseline_proxies_per_class(kind, p);
  Rng rng;
  rng_init(&rng, seed);
  q->x_raw = xmalloc_f32((size_t)B * D);
  q->proxies = xmalloc_f32((size_t)q->M * D);
  q->labels = xmalloc((size_t)B * sizeof(int));
  for (size_t i = 0; i < (size_t)B * D; i++) q->x_raw[i] = (float)rng_normal(&rng);
  for (size_t i = 0; i < (size_t)q->M * D; i++) q->proxies[i] = (float)rng_normal(&rng);
  /* classes repeat and some are absent: C/2 + 1 distinct labels at most */
  for (int b = 0; b < B; b++) q->labels[b] = (int)rng_below(&rng, (uint32_t)(C / 2 + 1));
}

static void problem_free(Problem *q) { free(q->x_raw); free(q->proxies); free(q->labels); }

static BaselineRef problem_ref(const Problem *q) {
  double *x = xmalloc_f64((size_t)q->B * q->D), *w = xmalloc_f64((size_t)q->M * q->D);
  for (size_t i = 0; i < (size_t)q->B * q->D; i++) x[i] = q->x_raw[i];
  for (size_t i = 0; i < (size_t)q->M * q->D; i++) w[i] = q->proxies[i];
  BaselineRef r;
  baseline_ref(&r, q->kind, &q->p, x, q->labels, w, q->B, q->D, q->C);
  free(x); free(w);
  return r;
}

/* float32 against float64: the loss within 2e-5 relative and the gradients
 * within 2e-4 of their largest entry, twice the golden tolerances because
 * these problems are larger and their gradients less uniform */
static void check_fast_vs_ref(const Problem *q) {
  BaselineRef r = problem_ref(q);
  Baseline l;
  baseline_init(&l, q->kind, &q->p, q->B + 3, q->D, q->C);   /* B < B_max works */
  float *dx = xcalloc((size_t)q->B * q->D, 4), *dp = xcalloc((size_t)q->M * q->D, 4);
  float loss = baseline_forward(&l, q->x_raw, q->labels, q->proxies, q->B);
  baseline_backward(&l, dx, dp);
  char lab[128];
  snprintf(lab, sizeof lab, "%s B=%d D=%d C=%d M=%d tau=%g", KIND_NAMES[q->kind], q->B, q->D, q->C, q->M, q->p.st_tau);
  cr_assert(isfinite(loss), "%s: loss not finite", lab);
  cr_assert(fabs(loss - r.loss) <= 2e-5 * fmax(1, fabs(r.loss)), "%s: loss %.9g vs ref %.9g", lab, loss, r.loss);
  cr_assert(fabs(l.loss_reg - r.loss_reg) <= 2e-5 * fmax(1, fabs(r.loss_reg)), "%s: loss_reg", lab);
  cr_assert(check_close_f32(lab, dx, r.dx_raw, (size_t)q->B * q->D, 1e-9, 2e-4), "%s: grad_x_raw", lab);
  cr_assert(check_close_f32(lab, dp, r.dproxies, (size_t)q->M * q->D, 1e-9, 2e-4), "%s: grad_proxies", lab);
  free(dx); free(dp);
  baseline_free(&l);
  baseline_ref_free(&r);
}

Test(random, fast_matches_reference_many_shapes, .timeout = 120) {
  /* odd sizes, B = 1, C = 1, shapes past the OpenMP thresholds (B*M > 16384) */
  const struct { int B, D, C, k; double tau; } cases[] = {
    {1, 7, 3, 2, 0.2}, {5, 13, 7, 3, 0.2}, {17, 33, 11, 1, 0}, {64, 24, 300, 4, 0.2}, {33, 128, 40, 10, 0},
    {9, 3, 1, 3, 0.5},
  };
  for (int kind = 0; kind < 4; kind++)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      BaselineParams p = baseline_defaults();
      p.st_centers = cases[i].k;
      p.st_tau = cases[i].tau;
      Problem q;
      problem_make(&q, 100 + 10 * kind + i, (BaselineKind)kind, &p, cases[i].B, cases[i].D, cases[i].C);
      check_fast_vs_ref(&q);
      problem_free(&q);
    }
}

Test(random, other_hyper_parameters) {
  BaselineParams p = baseline_defaults();
  p.nca_scale = 8; p.pa_margin = 0.3; p.pa_alpha = 16; p.st_lambda = 5; p.st_gamma = 0.5; p.st_margin = 0.2;
  p.st_centers = 3; p.ns_temperature = 0.5;
  for (int kind = 0; kind < 4; kind++) {
    Problem q;
    problem_make(&q, 7 + kind, (BaselineKind)kind, &p, 12, 10, 9);
    check_fast_vs_ref(&q);
    problem_free(&q);
  }
}

/* Two "ranks", each with half the batch, batch_norm = B and half the classes'
 * per-proxy terms, Proxy-Anchor's batch sums added between the halves of the
 * forward: their losses and gradients add up to the whole batch's. This is
 * what the trainer's allreduce relies on (docs/baselines.md 6). */
Test(random, split_over_two_ranks_sums_to_whole) {
  for (int kind = 0; kind < 4; kind++) {
    BaselineParams p = baseline_defaults();
    p.st_centers = 3;
    Problem q;
    problem_make(&q, 31 + kind, (BaselineKind)kind, &p, 26, 20, 9);
    int B = q.B, D = q.D, M = q.M, h = 11;   /* unequal halves */
    Baseline whole;
    baseline_init(&whole, q.kind, &p, B, D, q.C);
    float *dx = xcalloc((size_t)B * D, 4), *dp = xcalloc((size_t)M * D, 4);
    float lw = baseline_forward(&whole, q.x_raw, q.labels, q.proxies, B);
    baseline_backward(&whole, dx, dp);
    Baseline part[2];
    float *dx2 = xcalloc((size_t)B * D, 4), *dp2 = xcalloc((size_t)M * D, 4);
    for (int r = 0; r < 2; r++) {
      baseline_init(&part[r], q.kind, &p, B, D, q.C);
      part[r].batch_norm = B;
      part[r].part_begin = r ? q.C / 2 : 0;
      part[r].part_end = r ? q.C : q.C / 2;
      int b0 = r ? h : 0, nb = r ? B - h : h;
      baseline_forward_local(&part[r], q.x_raw + (size_t)b0 * D, q.labels + b0, q.proxies, nb);
    }
    cr_assert_eq(part[0].nstats, kind == BASELINE_PROXYANCHOR ? 3 * q.C : 0);
    for (int i = 0; i < part[0].nstats; i++) part[0].stats[i] = part[1].stats[i] += part[0].stats[i];
    double parts = 0;
    for (int r = 0; r < 2; r++) {
      int b0 = r ? h : 0;
      parts += baseline_forward_finish(&part[r]);
      baseline_backward(&part[r], dx2 + (size_t)b0 * D, dp2);
      baseline_free(&part[r]);
    }
    cr_assert(fabs(parts - lw) <= 1e-6 * fmax(1, fabs(lw)), "%s: parts %.9g whole %.9g", KIND_NAMES[kind], parts, lw);
    double *w = xmalloc_f64((size_t)M * D);
    for (size_t i = 0; i < (size_t)M * D; i++) w[i] = dp[i];
    cr_assert(check_close_f32(KIND_NAMES[kind], dp2, w, (size_t)M * D, 1e-9, 1e-5), "split grad_proxies");
    free(w);
    w = xmalloc_f64((size_t)B * D);
    for (size_t i = 0; i < (size_t)B * D; i++) w[i] = dx[i];
    cr_assert(check_close_f32(KIND_NAMES[kind], dx2, w, (size_t)B * D, 1e-9, 1e-5), "split grad_x_raw");
    free(w); free(dx); free(dp); free(dx2); free(dp2);
    baseline_free(&whole);
    problem_free(&q);
  }
}

Test(random, deterministic_bitwise) {
  for (int kind = 0; kind < 4; kind++) {
    BaselineParams p = baseline_defaults();
    Problem q;
    problem_make(&q, 3, (BaselineKind)kind, &p, 40, 64, 30);
    float *dx[2], *dp[2], loss[2];
    for (int run = 0; run < 2; run++) {
      Baseline l;
      baseline_init(&l, q.kind, &p, q.B, q.D, q.C);
      dx[run] = xcalloc((size_t)q.B * q.D, 4);
      dp[run] = xcalloc((size_t)q.M * q.D, 4);
      loss[run] = baseline_forward(&l, q.x_raw, q.labels, q.proxies, q.B);
      baseline_backward(&l, dx[run], dp[run]);
      baseline_free(&l);
    }
    cr_assert_eq(memcmp(&loss[0], &loss[1], sizeof(float)), 0);
    cr_assert_eq(memcmp(dx[0], dx[1], (size_t)q.B * q.D * 4), 0);
    cr_assert_eq(memcmp(dp[0], dp[1], (size_t)q.M * q.D * 4), 0);
    for (int run = 0; run < 2; run++) { free(dx[run]); free(dp[run]); }
    problem_free(&q);
  }
}

/* ------------------------------------------------------------ finite differences */

static double ref_loss(const Problem *q, const double *x, const double *w) {
  BaselineRef r;
  baseline_ref(&r, q->kind, &q->p, x, q->labels, w, q->B, q->D, q->C);
  double v = r.loss;
  baseline_ref_free(&r);
  return v;
}

/* Every gradient entry of the reference against (L(a + h) - L(a - h)) / 2h.
 * The losses are smooth everywhere (no selection; SoftTriple's regulariser
 * keeps its square root off zero by eps), so no point needs avoiding. With
 * h = 1e-5 on inputs of order 1 the truncation error is h^2/6 |L'''|, about
 * 1e-11 |L'''|, and rounding adds eps |L| / h, about 1e-11 |L|; measured:
 * at most 4e-10 of max|g| at the published scales (alpha = 32, lambda = 20,
 * gamma = 0.1). The bound 1e-7 max|g| + 1e-9 leaves a factor of 250, while a
 * wrong term (a factor, a sign, a missed path) is off by a sizeable fraction
 * of max|g|. */
static double finite_differences(const Problem *q) {
  int B = q->B, D = q->D, M = q->M;
  double *x = xmalloc_f64((size_t)B * D), *w = xmalloc_f64((size_t)M * D);
  for (size_t i = 0; i < (size_t)B * D; i++) x[i] = q->x_raw[i];
  for (size_t i = 0; i < (size_t)M * D; i++) w[i] = q->proxies[i];
  BaselineRef r;
  baseline_ref(&r, q->kind, &q->p, x, q->labels, w, B, D, q->C);
  const double h = 1e-5;
  double gmax = fmax(max_abs(r.dx_raw, (size_t)B * D), max_abs(r.dproxies, (size_t)M * D)), worst = 0;
  for (int which = 0; which < 2; which++) {
    double *a = which ? w : x, *g = which ? r.dproxies : r.dx_raw;
    size_t n = which ? (size_t)M * D : (size_t)B * D;
    for (size_t i = 0; i < n; i++) {
      double keep = a[i];
      a[i] = keep + h;
      double up = ref_loss(q, x, w);
      a[i] = keep - h;
      double dn = ref_loss(q, x, w);
      a[i] = keep;
      double fd = (up - dn) / (2 * h);
      worst = fmax(worst, fabs(fd - g[i]) / gmax);
      cr_assert(fabs(fd - g[i]) <= 1e-7 * gmax + 1e-9, "%s %s[%zu]: fd %.10g analytic %.10g (max|g| %.3g)",
                KIND_NAMES[q->kind], which ? "proxies" : "x_raw", i, fd, g[i], gmax);
    }
  }
  cr_assert_gt(gmax, 1e-3, "%s: gradients too small for the test to mean anything", KIND_NAMES[q->kind]);
  baseline_ref_free(&r);
  free(x); free(w);
  return worst;
}

Test(finite_differences, reference_backward_every_loss, .timeout = 120) {
  for (int kind = 0; kind < 4; kind++)
    for (int variant = 0; variant < 2; variant++) {
      BaselineParams p = baseline_defaults();   /* the published scales: the stiffest case */
      p.st_centers = 3;
      p.st_tau = variant ? 0.2 : 0;   /* SoftTriple with and without its regulariser */
      if (variant && kind != BASELINE_SOFTTRIPLE) p.nca_scale = 3, p.pa_margin = -0.05, p.ns_temperature = 0.3;
      Problem q;
      problem_make(&q, 60 + 2 * kind + variant, (BaselineKind)kind, &p, 6, 5, 4);
      double worst = finite_differences(&q);
      cr_log_info("%s variant %d: worst |fd - g| / max|g| = %.2e", KIND_NAMES[kind], variant, worst);
      problem_free(&q);
    }
}

/* ------------------------------------------------------------ the interface */

Test(loss, names_round_trip_and_dispatch) {
  for (int k = 0; k < LOSS_NKINDS; k++) {
    LossKind got;
    cr_assert_eq(loss_kind_parse(loss_kind_name((LossKind)k), &got), 0);
    cr_assert_eq(got, k);
  }
  LossKind dummy;
  cr_assert_eq(loss_kind_parse("softmax", &dummy), -1);
  cr_assert(strstr(err_msg(), "proxyanchor"), "the message lists the names: %s", err_msg());
  LossParams p = loss_defaults();
  p.N = 3; p.K = 4; p.base.st_centers = 5;
  const int per_class[LOSS_NKINDS] = {3, 1, 1, 5, 1};
  for (int k = 0; k < LOSS_NKINDS; k++) {
    p.kind = (LossKind)k;
    cr_assert_eq(loss_proxies_per_class(&p), per_class[k], "%s", loss_kind_name((LossKind)k));
  }
}

/* the interface computes what the loss inside computes, and with a reduce
 * function that doubles the sums (two identical ranks) Proxy-Anchor's
 * per-proxy terms see a batch twice as large */
static int reduce_calls;
static void double_it(void *ctx, double *buf, size_t n) {
  (void)ctx;
  reduce_calls++;
  for (size_t i = 0; i < n; i++) buf[i] *= 2;
}

Test(loss, interface_matches_the_loss_and_calls_reduce) {
  for (int k = 1; k < LOSS_NKINDS; k++) {
    LossParams p = loss_defaults();
    p.kind = (LossKind)k;
    p.base.st_centers = 2;
    Problem q;
    problem_make(&q, 90 + k, (BaselineKind)(k - 1), &p.base, 10, 8, 6);
    Loss l;
    loss_init(&l, &p, q.B, q.D, q.C);
    cr_assert_eq(l.M, q.M);
    BaselineRef r = problem_ref(&q);
    float v = loss_forward(&l, q.x_raw, q.labels, q.proxies, q.B);
    cr_assert(fabs(v - r.loss) <= 2e-5 * fmax(1, fabs(r.loss)), "%s: %.9g vs %.9g", loss_kind_name(p.kind), v, r.loss);
    reduce_calls = 0;
    loss_set_reduce(&l, double_it, NULL);
    float v2 = loss_forward(&l, q.x_raw, q.labels, q.proxies, q.B);
    cr_assert_eq(reduce_calls, p.kind == LOSS_PROXYANCHOR, "%s: reduce called %d times", loss_kind_name(p.kind),
                 reduce_calls);
    if (p.kind == LOSS_PROXYANCHOR) {
      /* log(1 + 2s) per proxy instead of log(1 + s): larger, and not twice */
      cr_assert(v2 > v && v2 < 2 * v, "%s: %.9g with doubled sums, %.9g without", loss_kind_name(p.kind), v2, v);
    } else {
      cr_assert_eq(v2, v);
    }
    loss_free(&l);
    baseline_ref_free(&r);
    problem_free(&q);
  }
}
