/* testutil.c: see testutil.h. */
#include "testutil.h"

#include "common.h"
#include "h5io.h"

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

const char *testdata_path(const char *name) {
  static char buf[4096];
  const char *dir = getenv("PROXYGML_TESTDATA");
  snprintf(buf, sizeof buf, "%s/%s", dir ? dir : "tests/data", name);
  return buf;
}

int tmpdir_make(char *dir, size_t size, const char *tag) {
  const char *t = getenv("TMPDIR");
  snprintf(dir, size, "%s/pgml_%s_XXXXXX", t && *t ? t : "/tmp", tag);
  return mkdtemp(dir) ? 0 : -1;
}

static int remove_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
  (void)sb;
  (void)type;
  (void)ftw;
  return remove(p);
}

void tmpdir_remove(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

double max_abs(const double *a, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i]));
  return m;
}

double max_abs_diff(const double *a, const double *b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
  return m;
}

int check_close(const char *label, const double *got, const double *want, size_t n, double atol, double rtol) {
  double tol = atol + rtol * max_abs(want, n);
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (!(fabs(got[i] - want[i]) <= tol)) bad++;
  if (!bad) return 1;
  fprintf(stderr, "%s: %zu of %zu elements off by more than %.3g; worst:\n", label, bad, n, tol);
  for (int w = 0; w < 5; w++) {
    size_t wi = 0; double wd = -1;
    for (size_t i = 0; i < n; i++) {
      double d = fabs(got[i] - want[i]);
      if (isnan(d)) d = INFINITY;
      if (d > wd) { wd = d; wi = i; }
    }
    if (wd <= tol) break;
    fprintf(stderr, "  [%zu] got %.10g want %.10g (diff %.3g)\n", wi, got[wi], want[wi], wd);
    ((double *)got)[wi] = want[wi];   /* hide it to find the next one (test is failing anyway) */
  }
  return 0;
}

int check_close_f32(const char *label, const float *got, const double *want, size_t n, double atol, double rtol) {
  double *g = xmalloc(n * sizeof *g);
  for (size_t i = 0; i < n; i++) g[i] = got[i];
  int ok = check_close(label, g, want, n, atol, rtol);
  free(g);
  return ok;
}

double *read_f64(hid_t f, const char *name, size_t *n) {
  int nd; int64_t dims[H5IO_MAXDIM];
  CHECK(h5io_shape(f, name, &nd, dims) == 0, "%s", err_msg());
  size_t cnt = 1;
  for (int i = 0; i < nd; i++) cnt *= (size_t)dims[i];
  double *buf = xmalloc_f64(cnt ? cnt : 1);
  CHECK(h5io_read(f, name, H5T_NATIVE_DOUBLE, buf, cnt) == 0, "%s", err_msg());
  if (n) *n = cnt;
  return buf;
}
