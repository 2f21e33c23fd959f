/* convert_synthetic.c: class-clustered synthetic features
 * (include/convert_synthetic.h): the per-row streams, the centres and rows
 * they give, and the two splits written block by block of classes through
 * DatasetWriter. Generator: docs/datasets.md, "Synthetic features". */
#include "convert_synthetic.h"

#include "common.h"
#include "config.h"
#include "convert.h"
#include "dataset.h"
#include "dataset_writer.h"
#include "h5io.h"
#include "rng.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t z) {   /* splitmix64's finaliser */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t convert_synthetic_seed(uint64_t seed, int kind, int c, int r) {
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ (uint64_t)(uint32_t)c);
  return mix64(h ^ ((uint64_t)(uint32_t)kind << 32 | (uint32_t)r));
}

void convert_synthetic_centre(double *mu, uint64_t seed, int c, int F) {
  Rng rng;
  rng_init(&rng, convert_synthetic_seed(seed, CONVERT_SYNTHETIC_CENTRE, c, 0));
  /* a normalised Gaussian vector is uniform on the sphere; a zero vector has probability 0 */
  double ss = 0;
  for (int j = 0; j < F; j++) {
    mu[j] = rng_normal(&rng);
    ss += mu[j] * mu[j];
  }
  double inv = 1.0 / sqrt(ss);
  for (int j = 0; j < F; j++) mu[j] *= inv;
}

void convert_synthetic_row(float *x, const double *mu, uint64_t seed, int kind, int c, int r, int F, double spread) {
  Rng rng;
  rng_init(&rng, convert_synthetic_seed(seed, kind, c, r));
  double sigma = spread / sqrt((double)F);
  for (int j = 0; j < F; j++) x[j] = (float)(mu[j] + sigma * rng_normal(&rng));
}

static int check_opts(const ConvertSyntheticOpts *o) {
  if (o->classes < 2 || o->classes > CONVERT_MAX_CLASSES)
    return err_set("--classes %d is outside [2, %d]", o->classes, CONVERT_MAX_CLASSES);
  if (o->dim < 1 || o->dim > CONVERT_SYNTHETIC_MAX_DIM)
    return err_set("--dim %d is outside [1, %d]", o->dim, CONVERT_SYNTHETIC_MAX_DIM);
  if (o->train_per_class < 1 || o->train_per_class > CONVERT_SYNTHETIC_MAX_PER_CLASS)
    return err_set("--train-per-class %d is outside [1, %d]", o->train_per_class, CONVERT_SYNTHETIC_MAX_PER_CLASS);
  if (o->test_per_class < 1 || o->test_per_class > CONVERT_SYNTHETIC_MAX_PER_CLASS)
    return err_set("--test-per-class %d is outside [1, %d]", o->test_per_class, CONVERT_SYNTHETIC_MAX_PER_CLASS);
  if (!(o->spread >= 0) || !isfinite(o->spread))
    return err_set("--spread %g must be a finite number >= 0", o->spread);
  return 0;
}

/* One split: rows k = c * per + r (class c, its row r), in blocks of about
 * 8 MB. The centres of a block's classes are drawn again for each split (and
 * for a class cut by a block boundary): C x F doubles would not fit at
 * C = 10^6, and a centre costs what one row costs. */
static int write_split(DatasetWriter *w, const char *split, int kind, int per, const ConvertSyntheticOpts *o) {
  const int F = o->dim;
  const int64_t n = (int64_t)o->classes * per;
  int64_t block = (8 << 20) / ((int64_t)F * (int64_t)sizeof(float));
  if (block < 1) block = 1;
  if (block > n) block = n;
  float *x = xmalloc_f32((size_t)(block * F));          /* block x F */
  double *mu = xmalloc_f64((size_t)((block + 1) * F));  /* classes of a block (at most block + 1) x F */
  int32_t *lab = xmalloc((size_t)block * sizeof *lab);
  ConvertProgress pr;
  convert_progress_init(&pr, split, "rows", n, o->progress_every);
  int rc = dataset_writer_begin(w, split, DATASET_FEATURES, F, 0, 0);
  for (int64_t k0 = 0; rc == 0 && k0 < n; k0 += block) {
    int64_t m = n - k0 < block ? n - k0 : block;
    int c0 = (int)(k0 / per), nc = (int)((k0 + m - 1) / per) - c0 + 1;
    /* every centre and row has its own stream: the thread count cannot change a byte */
#pragma omp parallel for schedule(static) if (nc * (int64_t)F > 16384)
    for (int i = 0; i < nc; i++) convert_synthetic_centre(mu + (size_t)i * F, o->seed, c0 + i, F);
#pragma omp parallel for schedule(static) if (m * F > 16384)
    for (int64_t i = 0; i < m; i++) {
      int c = (int)((k0 + i) / per), r = (int)((k0 + i) % per);
      convert_synthetic_row(x + (size_t)i * F, mu + (size_t)(c - c0) * F, o->seed, kind, c, r, F, o->spread);
      lab[i] = c;
    }
    rc = dataset_writer_append(w, x, lab, m);
    convert_progress_step(&pr, k0 + m);
  }
  char sel[128];
  snprintf(sel, sizeof sel, "%d rows of every class", per);
  if (rc == 0) rc = h5io_set_attr_str(w->group, "selection", sel);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "n_source_rows", n);
  if (rc == 0) rc = dataset_writer_end(w);
  free(x);
  free(mu);
  free(lab);
  return rc;
}

/* provenance: enough to make the file again */
static int write_attrs(DatasetWriter *w, const ConvertSyntheticOpts *o) {
  char src[256], desc[256];
  snprintf(src, sizeof src,
           "synthetic class-clustered features: %d classes, F = %d, centre uniform on the unit sphere, "
           "noise N(0, (spread^2 / F) I), spread %.17g, seed %llu",
           o->classes, o->dim, o->spread, (unsigned long long)o->seed);
  snprintf(desc, sizeof desc, "every class in both splits: /train %d rows per class, /test %d rows per class",
           o->train_per_class, o->test_per_class);
  int rc = h5io_set_attr_str(w->file, "source", src);
  if (rc == 0) rc = h5io_set_attr_str(w->file, "protocol", "seen");
  if (rc == 0) rc = h5io_set_attr_str(w->file, "protocol_description", desc);
  if (rc == 0) rc = h5io_set_attr_str(w->file, "generator", "docs/datasets.md, Synthetic features");
  if (rc == 0) rc = h5io_set_attr_i64(w->file, "seed", (int64_t)o->seed);
  if (rc == 0) rc = h5io_set_attr_f64(w->file, "spread", o->spread);
  if (rc == 0) rc = h5io_set_attr_i64(w->file, "train_per_class", o->train_per_class);
  if (rc == 0) rc = h5io_set_attr_i64(w->file, "test_per_class", o->test_per_class);
  return rc;
}

int convert_synthetic_write(const char *out, const ConvertSyntheticOpts *o) {
  if (check_opts(o) != 0) return -1;
  const int C = o->classes;
  /* class names are the ids: one buffer of C short strings, copied by the writer */
  char *buf = xmalloc((size_t)C * 12);   /* C x 12: a decimal int and its NUL */
  const char **names = xmalloc((size_t)C * sizeof *names);
  for (int c = 0; c < C; c++) {
    snprintf(buf + (size_t)c * 12, 12, "%d", c);
    names[c] = buf + (size_t)c * 12;
  }
  DatasetWriter w;
  int rc = dataset_writer_init(&w, out, C, names, "proxygml " PROXYGML_VERSION " data synthetic");
  free(names);
  free(buf);
  /* Gaussian mantissas do not compress: deflate saved 14 % of the bytes at 3x the time */
  w.deflate = 0;
  if (rc == 0) rc = write_attrs(&w, o);
  if (rc == 0) rc = write_split(&w, "train", CONVERT_SYNTHETIC_TRAIN, o->train_per_class, o);
  if (rc == 0) rc = write_split(&w, "test", CONVERT_SYNTHETIC_TEST, o->test_per_class, o);
  if (rc == 0) rc = dataset_writer_commit(&w);
  dataset_writer_free(&w);
  return rc;
}
