/* test_convert_synthetic.c: the synthetic features generator
 * (convert_synthetic.h): distinct streams, centres uniform on the unit
 * sphere, noise of the requested spread, rows that do not depend on the
 * other options, a written file read back through the validating reader,
 * and the refusals of the API (NaN and infinite spreads included, which the
 * command line stops before). The command line and the bit-exact match with
 * the documented generator: tests/integration/test_data_synthetic.sh. */
#include "common.h"
#include "convert_synthetic.h"
#include "dataset.h"
#include "testutil.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[256];

static void tmpdir_init(void) { cr_assert(tmpdir_make(g_dir, sizeof g_dir, "syn") == 0, "mkdtemp failed"); }

static void tmpdir_free(void) { tmpdir_remove(g_dir); }

TestSuite(convert_synthetic, .init = tmpdir_init, .fini = tmpdir_free);

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* 3 kinds x 200 classes x 20 rows x 2 seeds: 24000 streams, no two alike */
Test(convert_synthetic, streams_are_distinct) {
  enum { K = 3, NC = 200, NR = 20, NS = 2, N = K * NC * NR * NS };
  uint64_t *s = malloc(N * sizeof *s);
  int i = 0;
  for (int seed = 0; seed < NS; seed++)
    for (int k = 0; k < K; k++)
      for (int c = 0; c < NC; c++)
        for (int r = 0; r < NR; r++) s[i++] = convert_synthetic_seed((uint64_t)seed, k, c, r);
  qsort(s, N, sizeof *s, cmp_u64);
  for (i = 1; i < N; i++) cr_assert_neq(s[i], s[i - 1], "two streams share the seed %llu", (unsigned long long)s[i]);
  free(s);
}

/* Unit norm, and the mean of n centres near 0: each coordinate of a uniform
 * point on the sphere of R^F has variance 1/F, so the mean over n has
 * standard deviation 1/sqrt(F n) = 0.0056 here; 5 of them over F coordinates
 * is exceeded with probability < 1e-5. A fixed direction or an unnormalised
 * Gaussian would fail one of the two. */
Test(convert_synthetic, centres_uniform_on_the_sphere) {
  enum { F = 16, NC = 2000 };
  double mu[F], mean[F] = {0};
  for (int c = 0; c < NC; c++) {
    convert_synthetic_centre(mu, 11, c, F);
    double ss = 0;
    for (int j = 0; j < F; j++) {
      ss += mu[j] * mu[j];
      mean[j] += mu[j] / NC;
    }
    cr_assert(fabs(ss - 1) < 1e-12, "centre %d has norm^2 %.17g", c, ss);
  }
  double sd = 1 / sqrt((double)F * NC);
  for (int j = 0; j < F; j++) cr_assert(fabs(mean[j]) < 5 * sd, "coordinate %d: mean %g (sd %g)", j, mean[j], sd);
}

/* Residuals x - mu: mean 0 and standard deviation spread / sqrt(F). From n =
 * R x F values the standard deviation is estimated with a relative standard
 * error of 1/sqrt(2n) = 0.35 %, the mean with an error sd of sigma/sqrt(n). */
Test(convert_synthetic, rows_have_the_spread) {
  enum { F = 8, R = 5000 };
  double mu[F];
  float x[F];
  convert_synthetic_centre(mu, 3, 7, F);
  double sigma = 0.4 / sqrt((double)F), s1 = 0, s2 = 0;
  for (int r = 0; r < R; r++) {
    convert_synthetic_row(x, mu, 3, CONVERT_SYNTHETIC_TRAIN, 7, r, F, 0.4);
    for (int j = 0; j < F; j++) {
      double d = x[j] - mu[j];
      s1 += d;
      s2 += d * d;
    }
  }
  double n = (double)R * F, est = sqrt(s2 / n);
  cr_assert(fabs(s1 / n) < 5 * sigma / sqrt(n), "residual mean %g", s1 / n);
  cr_assert(fabs(est / sigma - 1) < 0.02, "residual sd %g, want %g", est, sigma);
  /* spread 0: the centre itself, rounded once to float32 */
  convert_synthetic_row(x, mu, 3, CONVERT_SYNTHETIC_TEST, 7, 0, F, 0);
  for (int j = 0; j < F; j++) cr_assert_eq(x[j], (float)mu[j]);
}

/* the file read back: shapes, labels, every row as convert_synthetic_row makes it */
static void check_file(const char *path, const ConvertSyntheticOpts *o) {
  static const char *const SPL[2] = {"train", "test"};
  for (int s = 0; s < 2; s++) {
    int per = s ? o->test_per_class : o->train_per_class, F = o->dim;
    DatasetSplit sp;
    cr_assert_eq(dataset_split_read(&sp, path, SPL[s], 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
    cr_assert_eq(sp.info.kind, DATASET_FEATURES);
    cr_assert_eq(sp.info.F, F);
    cr_assert_eq(sp.info.n, (int64_t)o->classes * per);
    cr_assert_eq(sp.info.n_classes, o->classes);
    char last[16];
    snprintf(last, sizeof last, "%d", o->classes - 1);
    cr_assert_str_eq(sp.class_names[o->classes - 1], last);   /* names are the ids */
    double *mu = malloc((size_t)F * sizeof *mu);
    float *want = malloc((size_t)F * sizeof *want);
    for (int64_t k = 0; k < sp.info.n; k++) {
      int c = (int)(k / per), r = (int)(k % per);
      cr_assert_eq(sp.labels[k], c, "%s row %lld", SPL[s], (long long)k);
      convert_synthetic_centre(mu, o->seed, c, F);
      convert_synthetic_row(want, mu, o->seed, s ? CONVERT_SYNTHETIC_TEST : CONVERT_SYNTHETIC_TRAIN, c, r, F,
                            o->spread);
      cr_assert(!memcmp(sp.features + k * F, want, (size_t)F * sizeof *want), "%s row %lld", SPL[s], (long long)k);
    }
    free(mu);
    free(want);
    dataset_split_free(&sp);
  }
}

/* a row is a function of (seed, class, split, row index) only: more rows per
 * class or another dimension of the file do not move the first rows */
Test(convert_synthetic, file_and_independence_of_options) {
  char a[300], b[300];
  snprintf(a, sizeof a, "%s/a.h5", g_dir);
  snprintf(b, sizeof b, "%s/b.h5", g_dir);
  ConvertSyntheticOpts oa = {.classes = 13, .dim = 5, .train_per_class = 2, .test_per_class = 1, .spread = 0.7,
                             .seed = 42};
  ConvertSyntheticOpts ob = oa;
  ob.train_per_class = 5;
  ob.test_per_class = 3;
  cr_assert_eq(convert_synthetic_write(a, &oa), 0, "%s", err_msg());
  cr_assert_eq(convert_synthetic_write(b, &ob), 0, "%s", err_msg());
  check_file(a, &oa);
  check_file(b, &ob);
  DatasetSplit sa, sb;
  cr_assert_eq(dataset_split_read(&sa, a, "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&sb, b, "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  for (int c = 0; c < 13; c++)
    cr_assert(!memcmp(sa.features + (size_t)c * 2 * 5, sb.features + (size_t)c * 5 * 5, 2 * 5 * sizeof(float)),
              "class %d: the first two rows moved", c);
  dataset_split_free(&sa);
  dataset_split_free(&sb);
}

#define EXPECT_ERR(o, want)                                                                           \
  do {                                                                                                \
    char p_[300];                                                                                     \
    snprintf(p_, sizeof p_, "%s/bad.h5", g_dir);                                                      \
    cr_assert_eq(convert_synthetic_write(p_, &(o)), -1, "accepted, expected '%s'", want);             \
    cr_assert(strstr(err_msg(), want), "error '%s' does not contain '%s'", err_msg(), want);          \
    cr_assert_neq(access(p_, F_OK), 0, "a refused write left %s", p_);                                \
  } while (0)

Test(convert_synthetic, refusals) {
  const ConvertSyntheticOpts ok = {.classes = 4, .dim = 3, .train_per_class = 1, .test_per_class = 1, .spread = 1};
  ConvertSyntheticOpts o = ok;
  o.classes = 1;
  EXPECT_ERR(o, "--classes 1 is outside [2, 16777216]");
  o = ok;
  o.dim = 0;
  EXPECT_ERR(o, "--dim 0 is outside [1, 65536]");
  o = ok;
  o.train_per_class = 100001;
  EXPECT_ERR(o, "--train-per-class 100001 is outside [1, 100000]");
  o = ok;
  o.test_per_class = 0;
  EXPECT_ERR(o, "--test-per-class 0 is outside [1, 100000]");
  o = ok;
  o.spread = NAN;
  EXPECT_ERR(o, "--spread nan must be a finite number >= 0");
  o = ok;
  o.spread = INFINITY;
  EXPECT_ERR(o, "--spread inf must be a finite number >= 0");
}
