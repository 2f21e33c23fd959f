/* test_metrics.c: the metrics module against the golden metrics.h5 (Recall@k,
 * MAP@R, R-precision, R, kNN, NMI), the blocked kNN against its _ref, partial
 * sums against the whole, and k-means on synthetic blobs. */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "common.h"
#include "h5io.h"
#include "metrics.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the golden file, read whole */
typedef struct {
  int n, D, nk;
  float *emb;    /* n x D */
  int *labels;   /* n */
  int *R;        /* n */
  int ks[METRICS_MAXK];
  hid_t f;
} Golden;

static Golden golden_open(void) {
  Golden g = {0};
  cr_assert(h5io_open(testdata_path("metrics.h5"), &g.f) == 0, "%s", err_msg());
  int nd;
  int64_t dims[H5IO_MAXDIM];
  cr_assert(h5io_shape(g.f, "embeddings", &nd, dims) == 0 && nd == 2);
  g.n = (int)dims[0];
  g.D = (int)dims[1];
  g.emb = xmalloc_f32((size_t)g.n * g.D);
  g.labels = xmalloc((size_t)g.n * sizeof(int));
  g.R = xmalloc((size_t)g.n * sizeof(int));
  cr_assert(h5io_read(g.f, "embeddings", H5T_NATIVE_FLOAT, g.emb, (size_t)g.n * g.D) == 0, "%s", err_msg());
  cr_assert(h5io_read(g.f, "labels", H5T_NATIVE_INT, g.labels, (size_t)g.n) == 0, "%s", err_msg());
  cr_assert(h5io_read(g.f, "R", H5T_NATIVE_INT, g.R, (size_t)g.n) == 0, "%s", err_msg());
  cr_assert(h5io_shape(g.f, "ks", &nd, dims) == 0 && nd == 1 && dims[0] <= METRICS_MAXK);
  g.nk = (int)dims[0];
  cr_assert(h5io_read(g.f, "ks", H5T_NATIVE_INT, g.ks, (size_t)g.nk) == 0, "%s", err_msg());
  return g;
}

static void golden_close(Golden *g) {
  free(g->emb);
  free(g->labels);
  free(g->R);
  H5Fclose(g->f);
}

static void eval_range(Metrics *m, const float *emb, const int *labels, int n, int D, const int *ks, int nk,
                       int qblock, int rblock) {
  MetricsEval ev;
  MetricsSums s;
  metrics_eval_init(&ev, labels, n, D, ks, nk, qblock, rblock);
  metrics_sums_reset(&s, ks, nk);
  metrics_sums_add_range(&s, &ev, emb, labels, 0, n);
  metrics_finish(m, &s);
  metrics_eval_free(&ev);
}

static void check_golden_metrics(const Golden *g, const Metrics *m) {
  size_t cnt;
  double *want = read_f64(g->f, "recall_at_k", &cnt);
  cr_assert_eq(cnt, (size_t)g->nk);
  cr_expect(check_close("recall_at_k", m->recall, want, cnt, 1e-12, 0));
  free(want);
  want = read_f64(g->f, "map_at_r", &cnt);
  cr_expect(check_close("map_at_r", &m->map_r, want, 1, 1e-12, 0));
  free(want);
  want = read_f64(g->f, "r_precision", &cnt);
  cr_expect(check_close("r_precision", &m->r_precision, want, 1, 1e-12, 0));
  free(want);
}

Test(metrics, golden_retrieval) {
  Golden g = golden_open();
  Metrics m;
  eval_range(&m, g.emb, g.labels, g.n, g.D, g.ks, g.nk, 0, 0);
  check_golden_metrics(&g, &m);
  /* blocks much smaller than n, and not dividing it */
  eval_range(&m, g.emb, g.labels, g.n, g.D, g.ks, g.nk, 37, 61);
  check_golden_metrics(&g, &m);
  golden_close(&g);
}

Test(metrics, golden_R_and_depth) {
  Golden g = golden_open();
  MetricsEval ev;
  metrics_eval_init(&ev, g.labels, g.n, g.D, g.ks, g.nk, 0, 0);
  int maxR = 0;
  for (int i = 0; i < g.n; i++) {
    cr_expect_eq(ev.R[i], g.R[i], "R[%d]: got %d want %d", i, ev.R[i], g.R[i]);
    if (g.R[i] > maxR) maxR = g.R[i];
  }
  int want = maxR > g.ks[g.nk - 1] ? maxR : g.ks[g.nk - 1];
  cr_expect_eq(ev.depth, want < g.n - 1 ? want : g.n - 1);
  metrics_eval_free(&ev);
  golden_close(&g);
}

/* labels are arbitrary ints: an injective relabelling changes nothing */
Test(metrics, golden_relabelled) {
  Golden g = golden_open();
  int *lab = xmalloc((size_t)g.n * sizeof *lab);
  for (int i = 0; i < g.n; i++) lab[i] = g.labels[i] * -7919 + 1000003;
  Metrics m;
  eval_range(&m, g.emb, lab, g.n, g.D, g.ks, g.nk, 0, 0);
  check_golden_metrics(&g, &m);
  free(lab);
  golden_close(&g);
}

Test(metrics, golden_knn) {
  Golden g = golden_open();
  int nd;
  int64_t dims[H5IO_MAXDIM];
  cr_assert(h5io_shape(g.f, "knn", &nd, dims) == 0 && nd == 2 && dims[0] == g.n);
  const int depth = (int)dims[1];
  int *want = xmalloc((size_t)g.n * depth * sizeof *want);   /* n x depth */
  int *got = xmalloc((size_t)g.n * depth * sizeof *got);     /* n x depth */
  cr_assert(h5io_read(g.f, "knn", H5T_NATIVE_INT, want, (size_t)g.n * depth) == 0, "%s", err_msg());
  const int blocks[3][2] = {{0, 0}, {64, 128}, {13, 7}};
  for (int b = 0; b < 3; b++) {
    MetricsKnn w;
    metrics_knn_init(&w, g.D, depth, blocks[b][0], blocks[b][1]);
    metrics_knn(got, &w, g.emb, g.n, 0, g.n);
    metrics_knn_free(&w);
    cr_expect(!memcmp(got, want, (size_t)g.n * depth * sizeof *got), "blocked knn (blocks %d, %d) differs",
              blocks[b][0], blocks[b][1]);
  }
  metrics_knn_ref(got, g.emb, g.n, g.D, 0, g.n, depth);
  cr_expect(!memcmp(got, want, (size_t)g.n * depth * sizeof *got), "knn_ref differs");
  free(want);
  free(got);
  golden_close(&g);
}

Test(metrics, golden_nmi) {
  Golden g = golden_open();
  const char *pairs[2][3] = {{"nmi_labels", "nmi_assignment", "nmi"}, {"nmi2_labels", "nmi2_assignment", "nmi2"}};
  for (int p = 0; p < 2; p++) {
    size_t na, nb, one;
    double *a = read_f64(g.f, pairs[p][0], &na), *b = read_f64(g.f, pairs[p][1], &nb);
    double *want = read_f64(g.f, pairs[p][2], &one);
    cr_assert_eq(na, nb);
    int *ia = xmalloc(na * sizeof *ia), *ib = xmalloc(na * sizeof *ib);
    for (size_t i = 0; i < na; i++) { ia[i] = (int)a[i]; ib[i] = (int)b[i]; }
    double got = metrics_nmi(ia, ib, (int)na);
    cr_expect(check_close(pairs[p][2], &got, want, 1, 1e-12, 0));
    free(a); free(b); free(want); free(ia); free(ib);
  }
  golden_close(&g);
}

Test(metrics, nmi_edge_cases) {
  const int one[5] = {7, 7, 7, 7, 7}, other[5] = {-3, -3, -3, -3, -3};
  const int a[6] = {0, 0, 1, 1, 2, 2}, b[6] = {1000000, 1000000, -5, -5, 42, 42};
  const int split[5] = {0, 1, 2, 3, 4};
  cr_expect_eq(metrics_nmi(one, other, 5), 1.0, "both a single cluster");
  cr_expect_eq(metrics_nmi(one, split, 5), 0.0, "one single cluster");
  cr_expect_eq(metrics_nmi(split, one, 5), 0.0, "one single cluster, swapped");
  cr_expect(fabs(metrics_nmi(a, b, 6) - 1.0) < 1e-12, "relabelled identical partition");
  cr_expect_eq(metrics_nmi(NULL, NULL, 0), 1.0, "empty");
  /* symmetric for the arithmetic mean */
  const int c[6] = {0, 0, 0, 1, 1, 2};
  cr_expect(fabs(metrics_nmi(a, c, 6) - metrics_nmi(c, a, 6)) < 1e-15);
}

/* ---------------------------------------------- NMI at many classes */

/* NMI from first principles: the cells of the contingency table are the runs
 * of (a, b) pairs sorted together, the marginals are counted in sorted copies
 * of a and b; MI = sum_ij p_ij log(p_ij / (p_i p_j)) */
typedef struct { int a, b; } Pair;

static int cmp_pair(const void *x, const void *y) {
  const Pair *p = x, *q = y;
  if (p->a != q->a) return (p->a > q->a) - (p->a < q->a);
  return (p->b > q->b) - (p->b < q->b);
}

static int cmp_i32(const void *x, const void *y) {
  int p = *(const int *)x, q = *(const int *)y;
  return (p > q) - (p < q);
}

/* occurrences of v in s (n, ascending) */
static int count_sorted(const int *s, int n, int v) {
  int lo = 0, hi = n;
  while (lo < hi) { int m = lo + (hi - lo) / 2; if (s[m] < v) lo = m + 1; else hi = m; }
  int first = lo;
  hi = n;
  while (lo < hi) { int m = lo + (hi - lo) / 2; if (s[m] <= v) lo = m + 1; else hi = m; }
  return lo - first;
}

/* -sum p log p over the distinct values of s (n, ascending) */
static double entropy_sorted(const int *s, int n) {
  double h = 0;
  for (int i = 0; i < n;) {
    int c = count_sorted(s, n, s[i]);
    h -= (double)c / n * log((double)c / n);
    i += c;
  }
  return h;
}

static double nmi_plain(const int *a, const int *b, int n) {
  Pair *p = xmalloc((size_t)n * sizeof *p);   /* n */
  int *sa = xmalloc((size_t)n * sizeof *sa), *sb = xmalloc((size_t)n * sizeof *sb);   /* n each */
  for (int i = 0; i < n; i++) { p[i].a = sa[i] = a[i]; p[i].b = sb[i] = b[i]; }
  qsort(sa, (size_t)n, sizeof *sa, cmp_i32);
  qsort(sb, (size_t)n, sizeof *sb, cmp_i32);
  qsort(p, (size_t)n, sizeof *p, cmp_pair);
  double mi = 0;
  for (int s = 0, e; s < n; s = e) {
    for (e = s; e < n && p[e].a == p[s].a && p[e].b == p[s].b; e++) {}
    const double pij = (double)(e - s) / n, pi = (double)count_sorted(sa, n, p[s].a) / n,
                 pj = (double)count_sorted(sb, n, p[s].b) / n;
    mi += pij * log(pij / (pi * pj));
  }
  const double nmi = mi / ((entropy_sorted(sa, n) + entropy_sorted(sb, n)) / 2);
  free(p); free(sa); free(sb);
  return nmi;
}

/* 50 000 classes of 2 over n = 100 000, 25 138 clusters: a dense table
 * would be 1.26e9 cells (5 GB of int32). Labels from a formula that Python
 * repeats: sklearn 1.2.1 normalized_mutual_info_score gives
 * 0.9474042640081888 for
 *   a = (i * 2654435761) % 50000,  b = (a + (i % 1000 if i % 7 == 0 else 0)) // 2 */
Test(metrics, nmi_many_classes) {
  const int n = 100000, C = 50000;
  int *a = xmalloc((size_t)n * sizeof *a), *b = xmalloc((size_t)n * sizeof *b);   /* n each */
  for (int i = 0; i < n; i++) {
    a[i] = (int)((uint64_t)i * 2654435761u % C);
    b[i] = (a[i] + (i % 7 == 0 ? i % 1000 : 0)) / 2;
  }
  cr_assert_eq(metrics_count_distinct(a, n), C);
  cr_assert_eq(metrics_count_distinct(b, n), 25138);
  const double got = metrics_nmi(a, b, n), plain = nmi_plain(a, b, n), sklearn = 0.9474042640081888;
  cr_expect(fabs(got - plain) <= 1e-12 * plain, "NMI %.17g, plain %.17g", got, plain);
  cr_expect(fabs(got - sklearn) <= 1e-12 * sklearn, "NMI %.17g, sklearn %.17g", got, sklearn);
  free(a); free(b);
}

/* ------------------------------------------------ blocked kNN vs _ref */

/* n x D, entries multiples of 1/8 in [-1, 1]: every dot product is exact in
 * float, so both versions see identical similarities and many exact ties */
static float *quantised_data(int n, int D, uint64_t seed) {
  Rng r;
  rng_init(&r, seed);
  float *x = xmalloc_f32((size_t)n * D);
  for (size_t i = 0; i < (size_t)n * D; i++) x[i] = ((int)rng_below(&r, 17) - 8) / 8.0f;
  return x;
}

static float *normal_rows(int n, int D, uint64_t seed) {
  Rng r;
  rng_init(&r, seed);
  float *x = xmalloc_f32((size_t)n * D);
  for (int i = 0; i < n; i++) {
    double ss = 0;
    for (int d = 0; d < D; d++) { x[(size_t)i * D + d] = (float)rng_normal(&r); ss += x[(size_t)i * D + d] * x[(size_t)i * D + d]; }
    for (int d = 0; d < D; d++) x[(size_t)i * D + d] /= (float)sqrt(ss);
  }
  return x;
}

/* vec: the best scan allowed (METRICS_KNN_PORTABLE, _AVX2, _AVX512), if the CPU has it */
static int *run_knn(const float *x, int n, int D, int q0, int q1, int depth, int qb, int rb, int vec) {
  int *knn = xmalloc((size_t)(q1 - q0) * depth * sizeof *knn);   /* (q1 - q0) x depth */
  MetricsKnn w;
  metrics_knn_init(&w, D, depth, qb, rb);
  if (w.vector > vec) w.vector = vec;
  metrics_knn(knn, &w, x, n, q0, q1);
  metrics_knn_free(&w);
  return knn;
}

Test(metrics, knn_vs_ref_exact_ties) {
  const int cases[][7] = {  /* n, D, q0, q1, depth, qblock, rblock */
    {301, 7, 0, 301, 19, 17, 23}, {301, 7, 5, 250, 300, 64, 100}, {97, 33, 0, 97, 1, 1, 1},
    {97, 3, 40, 41, 96, 0, 0}, {255, 5, 3, 254, 40, 256, 11},
  };
  for (size_t c = 0; c < 3 * sizeof cases / sizeof cases[0]; c++) {
    const int *p = cases[c / 3], vec = (int)(c % 3);
    float *x = quantised_data(p[0], p[1], 100 + c / 3);
    int *got = run_knn(x, p[0], p[1], p[2], p[3], p[4], p[5], p[6], vec);
    int *want = xmalloc((size_t)(p[3] - p[2]) * p[4] * sizeof *want);
    metrics_knn_ref(want, x, p[0], p[1], p[2], p[3], p[4]);
    cr_expect(!memcmp(got, want, (size_t)(p[3] - p[2]) * p[4] * sizeof *got), "case %zu (vector %d) differs", c / 3, vec);
    free(x); free(got); free(want);
  }
}

/* n = 8 x METRICS_KNN_SAMPLE_ROWS: the thresholds start from the sample.
 * Similarities are multiples of 1/64 (a few hundred values), so the sampled
 * threshold and every cut-back land on long runs of exact ties, which the
 * filter must pass and the keys order by index. Query blocks of 8: both
 * threads at work. */
Test(metrics, knn_sampled_threshold_on_ties) {
  const int n = 8 * METRICS_KNN_SAMPLE_ROWS, D = 4, q0 = 1000, q1 = 1040;
  const int depths[] = {1, 300, 2000};
  float *x = quantised_data(n, D, 11);
  for (size_t c = 0; c < 3 * sizeof depths / sizeof depths[0]; c++) {
    const int depth = depths[c / 3], vec = (int)(c % 3);
    int *got = run_knn(x, n, D, q0, q1, depth, 8, 1000, vec);
    int *want = xmalloc((size_t)(q1 - q0) * depth * sizeof *want);
    metrics_knn_ref(want, x, n, D, q0, q1, depth);
    cr_expect(!memcmp(got, want, (size_t)(q1 - q0) * depth * sizeof *got), "depth %d (vector %d) differs", depth, vec);
    free(got); free(want);
  }
  free(x);
}

/* A sample that misleads: the first 40 sampled rows are copies of the
 * query, every other row is short, so the sampled threshold (the query's own
 * norm) lets 40 < depth candidates through. The query must be scanned again,
 * and the answer (40 tied copies by index, then the rest) stay exact. */
Test(metrics, knn_sample_too_high_rescans) {
  const int n = 8 * METRICS_KNN_SAMPLE_ROWS, D = 3, q = 1, depth = 100;
  float *x = quantised_data(n, D, 12);
  for (size_t i = 0; i < (size_t)n * D; i++) x[i] /= 8;   /* short rows: |dot| <= 3/8 with the query */
  const float qv[3] = {1.0f, 0.5f, -0.75f};
  memcpy(x + (size_t)q * D, qv, sizeof qv);
  int copies[40];
  for (int r = 0; r < 40; r++) {
    copies[r] = metrics_knn_sample_row(r, n);
    cr_assert(copies[r] >= 8 * r && copies[r] < 8 * (r + 1) && copies[r] != q, "sample row %d: %d", r, copies[r]);
    memcpy(x + (size_t)copies[r] * D, qv, sizeof qv);
  }
  MetricsKnn w;
  metrics_knn_init(&w, D, depth, 0, 0);
  int got[100], want[100];
  metrics_knn(got, &w, x, n, q, q + 1);
  double sec[METRICS_KNN_NPHASE];
  long refills;
  metrics_knn_times(sec, &refills, &w);
  metrics_knn_free(&w);
  metrics_knn_ref(want, x, n, D, q, q + 1, depth);
  cr_expect_eq(refills, 1, "refilled queries: %ld", refills);
  cr_expect(!memcmp(got, want, sizeof got), "differs");
  for (int j = 0; j < 40; j++) cr_expect_eq(got[j], copies[j], "rank %d: %d", j, got[j]);
  free(x);
}

/* Similarities a few thousand float steps apart (one digit of the final
 * sort, where the tests above take two or three): scalars 1 + m 2^-23, the
 * queries exactly 1, so every product is exact in float and in double. */
Test(metrics, knn_narrow_range_one_digit) {
  const int n = 3000, q0 = 0, q1 = 10, depth = 500;
  float *x = xmalloc_f32((size_t)n);
  for (int r = 0; r < n; r++) x[r] = r < q1 ? 1.0f : 1.0f + (float)((r * 7919) % 4000) * 0x1p-23f;
  for (int vec = METRICS_KNN_PORTABLE; vec <= METRICS_KNN_AVX512; vec++) {
    int *got = run_knn(x, n, 1, q0, q1, depth, 4, 256, vec);
    int *want = xmalloc((size_t)(q1 - q0) * depth * sizeof *want);
    metrics_knn_ref(want, x, n, 1, q0, q1, depth);
    cr_expect(!memcmp(got, want, (size_t)(q1 - q0) * depth * sizeof *got), "vector %d differs", vec);
    free(got); free(want);
  }
  free(x);
}

/* float vs double similarities: positions may swap only on near-ties */
Test(metrics, knn_vs_ref_random) {
  const int n = 257, D = 19, depth = 31;
  float *x = normal_rows(n, D, 7);
  int *got = run_knn(x, n, D, 0, n, depth, 50, 77, METRICS_KNN_AVX512);
  int *want = xmalloc((size_t)n * depth * sizeof *want);
  metrics_knn_ref(want, x, n, D, 0, n, depth);
  int same = 0;
  for (int q = 0; q < n; q++)
    for (int j = 0; j < depth; j++) {
      int a = got[q * depth + j], b = want[q * depth + j];
      double sa = 0, sb = 0;
      for (int d = 0; d < D; d++) { sa += (double)x[q * D + d] * x[a * D + d]; sb += (double)x[q * D + d] * x[b * D + d]; }
      cr_assert(a != q && fabs(sa - sb) < 1e-6, "query %d rank %d: %d (%.9f) vs %d (%.9f)", q, j, a, sa, b, sb);
      same += a == b;
    }
  cr_expect_geq(same, n * depth - 4);
  free(x); free(got); free(want);
}

/* ------------------------------------------------------- partial sums */

static int *class_labels(int n, int classes, uint64_t seed) {
  Rng r;
  rng_init(&r, seed);
  int *lab = xmalloc((size_t)n * sizeof *lab);
  for (int i = 0; i < n; i++) lab[i] = (int)rng_below(&r, (uint32_t)classes) * 3 - 10;
  lab[n / 2] = 99999;   /* a singleton: a Recall miss, skipped by MAP@R */
  return lab;
}

Test(metrics, partial_sums_equal_whole) {
  const int n = 403, D = 11, ks[3] = {1, 5, 17};
  float *x = normal_rows(n, D, 3);
  int *lab = class_labels(n, 9, 4);
  MetricsEval ev, ev2;
  MetricsSums whole, a, b;
  metrics_eval_init(&ev, lab, n, D, ks, 3, 0, 0);
  metrics_eval_init(&ev2, lab, n, D, ks, 3, 29, 50);
  metrics_sums_reset(&whole, ks, 3);
  metrics_sums_reset(&a, ks, 3);
  metrics_sums_reset(&b, ks, 3);
  metrics_sums_add_range(&whole, &ev, x, lab, 0, n);
  metrics_sums_add_range(&a, &ev2, x, lab, 0, 150);
  metrics_sums_add_range(&b, &ev, x, lab, 150, n);
  cr_expect_eq(a.n_query, 150);
  metrics_sums_merge(&a, &b);
  for (int k = 0; k < 3; k++) cr_expect_eq(a.hits[k], whole.hits[k], "hits@%d", ks[k]);
  cr_expect_eq(a.n_query, whole.n_query);
  cr_expect_eq(a.n_rel, whole.n_rel);
  cr_expect_eq(whole.n_rel, n - 1, "the singleton is skipped");
  cr_expect(fabs(a.ap_sum - whole.ap_sum) < 1e-12 * n);
  cr_expect(fabs(a.rprec_sum - whole.rprec_sum) < 1e-12 * n);
  Metrics m;
  metrics_finish(&m, &whole);
  cr_expect(m.recall[0] <= m.recall[1] && m.recall[1] <= m.recall[2]);
  cr_expect(m.recall[2] < 1.0, "the singleton never hits");
  metrics_eval_free(&ev);
  metrics_eval_free(&ev2);
  free(x);
  free(lab);
}

/* ------------------------------------------------------------ k-means */

/* `k` blobs of radius ~0.05 around centres ~10 apart; sizes differ; labels
 * are not 0..k-1 */
static float *blobs(int **labels, int *n_out, int k, int D, uint64_t seed) {
  Rng r;
  rng_init(&r, seed);
  int n = 0;
  for (int c = 0; c < k; c++) n += 31 + 7 * c;
  float *cent = xmalloc_f32((size_t)k * D), *x = xmalloc_f32((size_t)n * D);
  int *lab = xmalloc((size_t)n * sizeof *lab);
  for (int i = 0; i < k * D; i++) cent[i] = (float)(10.0 * rng_normal(&r));
  for (int i = 0; i < n; i++) {
    int c = (int)rng_below(&r, (uint32_t)k);
    lab[i] = 1000 + 17 * c;
    for (int d = 0; d < D; d++) x[(size_t)i * D + d] = cent[c * D + d] + (float)(0.05 * rng_normal(&r));
  }
  free(cent);
  *labels = lab;
  *n_out = n;
  return x;
}

Test(metrics, kmeans_recovers_blobs) {
  const int k = 7, D = 9;
  int n, *lab;
  float *x = blobs(&lab, &n, k, D, 11);
  int kk = metrics_count_distinct(lab, n);
  cr_assert_eq(kk, k);
  int *assign = xmalloc((size_t)n * sizeof *assign);
  float *c = xmalloc_f32((size_t)k * D);
  double inertia;
  MetricsKmeansOpts o = metrics_kmeans_defaults();
  o.seed = 5;
  metrics_kmeans(assign, c, &inertia, x, n, D, k, &o);
  cr_expect(fabs(metrics_nmi(lab, assign, n) - 1.0) < 1e-12, "NMI %.15f", metrics_nmi(lab, assign, n));
  cr_expect(inertia < n * D * 0.05 * 0.05 * 2, "inertia %g", inertia);
  free(x); free(lab); free(assign); free(c);
}

Test(metrics, kmeans_deterministic) {
  const int k = 10, D = 16, n = 1001;
  float *x = normal_rows(n, D, 9);   /* no cluster structure: seeding matters */
  int *a1 = xmalloc(n * sizeof *a1), *a2 = xmalloc(n * sizeof *a2);
  float *c1 = xmalloc_f32(k * D), *c2 = xmalloc_f32(k * D);
  double i1, i2, i3;
  MetricsKmeansOpts o = metrics_kmeans_defaults();
  o.seed = 1234;
  metrics_kmeans(a1, c1, &i1, x, n, D, k, &o);
  metrics_kmeans(a2, c2, &i2, x, n, D, k, &o);
  cr_expect(!memcmp(a1, a2, n * sizeof *a1) && !memcmp(c1, c2, k * D * sizeof *c1) && i1 == i2);
  /* each cluster non-empty, and more restarts never do worse on the same stream */
  int *cnt = xcalloc(k, sizeof *cnt);
  for (int i = 0; i < n; i++) cnt[a1[i]]++;
  for (int j = 0; j < k; j++) cr_expect_gt(cnt[j], 0);
  o.restarts = 8;
  metrics_kmeans(a2, c2, &i3, x, n, D, k, &o);
  cr_expect_leq(i3, i1);
  free(x); free(a1); free(a2); free(c1); free(c2); free(cnt);
}

/* ----------------------------------------------------- the big case */

/* Fashion-MNIST test split shape: 10000 x 128, 10 classes of 1000 (depth 999) */
Test(metrics, large_1000_per_class, .timeout = 120) {
  const int C = 10, per = 1000, n = C * per, D = 128, ks[4] = {1, 2, 4, 8};
  Rng r;
  rng_init(&r, 77);
  float *cent = normal_rows(C, D, 78);
  float *x = xmalloc_f32((size_t)n * D);   /* n x D: class centre + noise, normalised */
  int *lab = xmalloc((size_t)n * sizeof *lab);
  /* exactly 1000 per class (interleaved), so depth = 999 */
  for (int i = 0; i < n; i++) lab[i] = i % C;
  for (int i = 0; i < n; i++) {
    double ss = 0;
    for (int d = 0; d < D; d++) {
      float v = cent[lab[i] * D + d] + (float)(0.12 * rng_normal(&r));
      x[(size_t)i * D + d] = v;
      ss += (double)v * v;
    }
    for (int d = 0; d < D; d++) x[(size_t)i * D + d] /= (float)sqrt(ss);
  }
  MetricsEval ev;
  MetricsSums s;
  Metrics m;
  double t0 = now_sec();
  metrics_eval_init(&ev, lab, n, D, ks, 4, 0, 0);
  cr_assert_eq(ev.depth, per - 1);
  metrics_sums_reset(&s, ks, 4);
  metrics_sums_add_range(&s, &ev, x, lab, 0, n);
  metrics_finish(&m, &s);
  double t1 = now_sec();
  metrics_eval_free(&ev);
  cr_log_info("kNN + metrics, n = %d, D = %d, depth = %d: %.3f s (R@1 %.4f, MAP@R %.4f)", n, D, per - 1, t1 - t0,
              m.recall[0], m.map_r);
  cr_expect(m.recall[0] > 0.5 && m.map_r > 0 && m.map_r <= m.r_precision + 1e-12);

  int *assign = xmalloc((size_t)n * sizeof *assign);
  float *c = xmalloc_f32((size_t)C * D);
  double inertia;
  MetricsKmeansOpts o = metrics_kmeans_defaults();
  t0 = now_sec();
  metrics_kmeans(assign, c, &inertia, x, n, D, C, &o);
  t1 = now_sec();
  double nmi = metrics_nmi(lab, assign, n);
  cr_log_info("k-means, n = %d, D = %d, k = %d, %d restarts: %.3f s (NMI %.4f)", n, D, C, o.restarts, t1 - t0, nmi);
  cr_expect(nmi > 0.9);
  free(cent); free(x); free(lab); free(assign); free(c);
}
