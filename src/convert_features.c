/* convert_features.c: precomputed features into a dataset file
 * (include/convert_features.h): the .npy header parser, sources that are
 * .npy files or HDF5 datasets read in row blocks as doubles, the checks of
 * labels and values, and the float32 split written through DatasetWriter. */
#include "convert_features.h"

#include "common.h"
#include "config.h"
#include "convert.h"
#include "dataset.h"
#include "dataset_writer.h"
#include "h5io.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the .npy header ---------------------------------------------------------------------- */

int convert_features_npy_header(const char *path, ConvertFeaturesNpy *h) {
  memset(h, 0, sizeof *h);
  FILE *f = fopen(path, "rb");
  if (!f) return err_set("%s: cannot open (%s)", path, strerror(errno));
  unsigned char pre[12];
  int rc = 0;
  char *hdr = NULL;
  size_t hlen = 0, start = 0;
  if (fread(pre, 1, 10, f) != 10 || memcmp(pre, "\x93NUMPY", 6)) rc = err_set("%s: not a .npy file (bad magic)", path);
  else if (pre[6] == 1) {
    hlen = pre[8] | (size_t)pre[9] << 8;
    start = 10;
  } else if (pre[6] == 2 || pre[6] == 3) {
    if (fread(pre + 10, 1, 2, f) != 2) rc = err_set("%s: truncated .npy header", path);
    hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    start = 12;
  } else
    rc = err_set("%s: .npy format version %d is not supported (1-3 are)", path, pre[6]);
  if (rc == 0 && hlen > (1u << 20)) rc = err_set("%s: implausible .npy header length %zu", path, hlen);
  if (rc == 0) {
    hdr = xcalloc(hlen + 1, 1);
    if (fread(hdr, 1, hlen, f) != hlen) rc = err_set("%s: truncated .npy header", path);
  }
  /* the header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } */
  char descr[64] = "";
  if (rc == 0) {
    const char *d = strstr(hdr, "'descr'");
    const char *q = d ? strchr(d + 7, ':') : NULL;
    while (q && *q && (*q == ':' || *q == ' ')) q++;
    if (!q || (*q != '\'' && *q != '"'))
      rc = err_set("%s: .npy header has no simple 'descr' (structured dtypes are not supported): %s", path, hdr);
    else {
      char quote = *q++;
      size_t k = 0;
      while (*q && *q != quote && k + 1 < sizeof descr) descr[k++] = *q++;
      descr[k] = 0;
    }
  }
  if (rc == 0) {
    char order = descr[0];
    h->type = descr[1];
    h->itemsize = atoi(descr + 2);
    if (order == '>' && h->itemsize > 1) rc = err_set("%s: big-endian data ('%s'); save it little-endian", path, descr);
    else if (order != '<' && order != '|' && order != '=')
      rc = err_set("%s: unsupported dtype '%s'", path, descr);
    else if (!((h->type == 'f' && (h->itemsize == 4 || h->itemsize == 8)) ||
               ((h->type == 'i' || h->type == 'u') &&
                (h->itemsize == 1 || h->itemsize == 2 || h->itemsize == 4 || h->itemsize == 8))))
      rc = err_set("%s: dtype '%s' is not supported (float32/float64 or an integer type)", path, descr);
  }
  if (rc == 0) {
    const char *fo = strstr(hdr, "'fortran_order'");
    const char *v = fo ? strchr(fo + 15, ':') : NULL;
    while (v && (*v == ':' || *v == ' ')) v++;
    if (!v) rc = err_set("%s: .npy header has no 'fortran_order'", path);
    int fortran = v && !strncmp(v, "True", 4);   /* harmless for 1-d data: decided once the shape is known */
    const char *sh = strstr(hdr, "'shape'");
    const char *p = sh ? strchr(sh, '(') : NULL;
    if (rc == 0 && !p) rc = err_set("%s: .npy header has no 'shape'", path);
    if (rc == 0) {
      p++;
      h->ndim = 0;
      while (rc == 0) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0) rc = err_set("%s: bad shape in the .npy header: %s", path, hdr);
        else if (h->ndim >= 2) rc = err_set("%s: %s-dimensional array (1-d labels or 2-d features expected)", path, "3+");
        else h->dims[h->ndim++] = x;
        p = end;
      }
    }
    int both_big = h->ndim == 2 && h->dims[0] > 1 && h->dims[1] > 1;
    if (rc == 0 && fortran && both_big) rc = err_set("%s: Fortran-ordered array; save it in C order (np.ascontiguousarray)", path);
  }
  if (rc == 0) {
    h->offset = (long)(start + hlen);
    struct stat sb;
    uint64_t count = 1;
    for (int i = 0; i < h->ndim; i++) count *= (uint64_t)h->dims[i];
    uint64_t want = (uint64_t)h->offset + count * (uint64_t)h->itemsize;
    /* unreachable in tests: fstat of an open file fails only on a broken system */
    if (fstat(fileno(f), &sb) != 0) rc = err_set("%s: cannot stat", path);
    else if ((uint64_t)sb.st_size < want)
      rc = err_set("%s: truncated: %lld bytes, the header announces %llu", path, (long long)sb.st_size,
                   (unsigned long long)want);
    else if ((uint64_t)sb.st_size > want)
      rc = err_set("%s: %lld bytes, more than the header announces (%llu)", path, (long long)sb.st_size,
                   (unsigned long long)want);
  }
  free(hdr);
  fclose(f);
  return rc;
}

/* ---- sources ------------------------------------------------------------------------------ */

/* a feature or label source: a .npy file or FILE.h5:DATASET */
typedef struct {
  const char *spec;
  int h5;
  ConvertFeaturesNpy npy;
  FILE *f;
  hid_t file;
  char dset[1024];
  int ndim;
  int64_t dims[2];
  int is_float;
} Src;

static void src_close(Src *s) {
  if (s->f) fclose(s->f);
  if (s->h5 && s->file >= 0) H5Fclose(s->file);
  s->f = NULL;
  s->file = -1;
}

static int src_open(Src *s, const char *spec) {
  memset(s, 0, sizeof *s);
  s->spec = spec;
  s->file = -1;
  size_t L = strlen(spec);
  const char *colon = strrchr(spec, ':');
  if (L > 4 && !strcmp(spec + L - 4, ".npy")) {
    if (convert_features_npy_header(spec, &s->npy) != 0) return -1;
    s->ndim = s->npy.ndim;
    s->dims[0] = s->npy.dims[0];
    s->dims[1] = s->npy.dims[1];
    s->is_float = s->npy.type == 'f';
    s->f = fopen(spec, "rb");
    /* unreachable in tests: the header was read from the same file just before */
    if (!s->f) return err_set("%s: cannot open (%s)", spec, strerror(errno));
    return 0;
  }
  if (!colon || colon == spec || !colon[1])
    return err_set("'%s': expected X.npy or FILE.h5:DATASET", spec);
  s->h5 = 1;
  char file[4096];
  snprintf(file, sizeof file, "%.*s", (int)(colon - spec), spec);
  snprintf(s->dset, sizeof s->dset, "%s", colon + 1);
  if (h5io_open(file, &s->file) != 0) return -1;
  int64_t d[H5IO_MAXDIM];
  if (h5io_shape(s->file, s->dset, &s->ndim, d) != 0) {
    src_close(s);
    return err_set("%s: %s", file, err_msg());
  }
  if (s->ndim > 2) {
    src_close(s);
    return err_set("%s: %d-dimensional (1-d labels or 2-d features expected)", spec, s->ndim);
  }
  for (int i = 0; i < s->ndim; i++) s->dims[i] = d[i];
  hid_t ds = H5Dopen2(s->file, s->dset, H5P_DEFAULT), t = H5Dget_type(ds);
  H5T_class_t cls = H5Tget_class(t);
  s->is_float = cls == H5T_FLOAT;
  int ok = cls == H5T_FLOAT || cls == H5T_INTEGER;
  H5Tclose(t);
  H5Dclose(ds);
  if (!ok) {
    src_close(s);
    return err_set("%s: not a numeric dataset", spec);
  }
  return 0;
}

/* little-endian scalar of a .npy file as double */
static double npy_value(const unsigned char *b, char type, int size) {
  uint64_t u = 0;
  for (int i = 0; i < size; i++) u |= (uint64_t)b[i] << (8 * i);
  if (type == 'f') {
    if (size == 4) {
      uint32_t v = (uint32_t)u;
      float x;
      memcpy(&x, &v, 4);
      return x;
    }
    double x;
    memcpy(&x, &u, 8);
    return x;
  }
  if (type == 'u') return (double)u;
  int sh = 64 - 8 * size;   /* sign-extend */
  return (double)((int64_t)(u << sh) >> sh);
}

/* rows [r0, r0 + n) as doubles: n x cols (cols = 1 for 1-d) */
static int src_read(Src *s, int64_t r0, int64_t n, double *out) {
  int64_t cols = s->ndim == 2 ? s->dims[1] : 1;
  if (s->h5) {
    if (h5io_read_rows(s->file, s->dset, H5T_NATIVE_DOUBLE, r0, n, out) != 0) {
      /* unreachable in tests: the rows are within the shape just read (a library or disk fault) */
      return err_set("%s: %s", s->spec, err_msg());
    }
    return 0;
  }
  size_t isz = (size_t)s->npy.itemsize, cnt = (size_t)(n * cols);
  unsigned char *raw = xmalloc(cnt * isz);
  int rc = 0;
  /* unreachable in tests: the size was checked against the header; a read fails only if the file changes meanwhile */
  if (fseek(s->f, s->npy.offset + (long)(r0 * cols * (int64_t)isz), SEEK_SET) != 0 || fread(raw, isz, cnt, s->f) != cnt)
    rc = err_set("%s: read error at row %lld", s->spec, (long long)r0);
  for (size_t i = 0; rc == 0 && i < cnt; i++) out[i] = npy_value(raw + i * isz, s->npy.type, (int)isz);
  free(raw);
  return rc;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* One split's labels (validated) and the open feature source. */
static int split_sources(const char *split, const char *xs, const char *ys, Src *x, int32_t **labels, int *max_label) {
  Src y;
  *labels = NULL;
  /* unreachable in tests: the command line requires all four sources before it calls this (tools/data.c) */
  if (!xs || !ys) return err_set("--%s-x and --%s-y are both required", split, split);
  if (src_open(x, xs) != 0) return -1;
  if (src_open(&y, ys) != 0) {
    src_close(x);
    return -1;
  }
  int rc = 0;
  if (x->ndim != 2)
    rc = err_set("%s: %s features must be 2-d (n x F), got %d-d", xs, split, x->ndim);
  else if (!x->is_float)
    rc = err_set("%s: %s features must be float32 or float64, got integers", xs, split);
  else if (y.ndim != 1)
    rc = err_set("%s: %s labels must be 1-d (n), got %d-d%s", ys, split, y.ndim,
                 y.ndim == 2 && y.dims[1] == 1 ? " (n x 1: flatten it)" : "");
  else if (y.is_float)
    rc = err_set("%s: %s labels must be integers, got floating point", ys, split);
  else if (x->dims[0] != y.dims[0])
    rc = err_set("%s: %lld %s feature rows but %s has %lld labels", xs, (long long)x->dims[0], split, ys,
                 (long long)y.dims[0]);
  else if (x->dims[0] < 1)
    rc = err_set("%s: no %s rows", xs, split);
  else if (x->dims[1] < 1 || x->dims[1] > INT_MAX)
    rc = err_set("%s: bad feature width %lld", xs, (long long)x->dims[1]);
  if (rc == 0) {
    int64_t n = y.dims[0];
    double *v = xmalloc_f64((size_t)n);   /* n */
    rc = src_read(&y, 0, n, v);
    *labels = xmalloc((size_t)n * sizeof **labels);
    for (int64_t i = 0; rc == 0 && i < n; i++) {
      if (v[i] < 0 || v[i] >= CONVERT_MAX_CLASSES)
        rc = err_set("%s: row %lld has label %.0f (labels must be in [0, %d))", ys, (long long)i, v[i],
                     CONVERT_MAX_CLASSES);
      (*labels)[i] = (int32_t)v[i];
      if ((*labels)[i] > *max_label) *max_label = (*labels)[i];
    }
    free(v);
  }
  src_close(&y);
  if (rc != 0) {
    free(*labels);
    *labels = NULL;
    src_close(x);
  }
  return rc;
}

/* features of one split, streamed in blocks, checked for NaN/Inf and float32 range */
static int write_features(DatasetWriter *w, const char *split, Src *x, const int32_t *labels) {
  int64_t n = x->dims[0], F = x->dims[1];
  int64_t block = (8 << 20) / (F * 8) + 1;
  double *v = xmalloc_f64((size_t)(block * F));   /* block x F */
  float *f32 = xmalloc_f32((size_t)(block * F));  /* block x F */
  int rc = dataset_writer_begin(w, split, DATASET_FEATURES, (int)F, 0, 0);
  for (int64_t r = 0; rc == 0 && r < n; r += block) {
    int64_t m = n - r < block ? n - r : block;
    rc = src_read(x, r, m, v);
    for (int64_t i = 0; rc == 0 && i < m * F; i++) {
      if (!isfinite(v[i]))
        rc = err_set("%s: %s row %lld, column %lld is %s", x->spec, split, (long long)(r + i / F), (long long)(i % F),
                     isnan(v[i]) ? "NaN" : "infinite");
      else if (fabs(v[i]) > FLT_MAX)
        rc = err_set("%s: %s row %lld, column %lld = %g overflows float32", x->spec, split, (long long)(r + i / F),
                     (long long)(i % F), v[i]);
      f32[i] = (float)v[i];
    }
    if (rc == 0) rc = dataset_writer_append(w, f32, labels + r, m);
  }
  if (rc == 0) rc = h5io_set_attr_str(w->group, "source_features", x->spec);
  free(v);
  free(f32);
  return rc;
}

static int read_names_file(const char *path, int n, char **names) {
  FILE *f = fopen(path, "r");
  if (!f) return err_set("%s: cannot open (%s)", path, strerror(errno));
  char *buf = NULL;
  size_t cap = 0;
  int i = 0;
  while (i < n && convert_read_line(f, &buf, &cap)) names[i++] = convert_strdup(buf);
  free(buf);
  fclose(f);
  return 0;
}

int convert_features_write(const char *out, const ConvertFeaturesSources *s) {
  Src x[2];
  int32_t *lab[2] = {NULL, NULL};
  int max_label = -1;
  if (split_sources("train", s->train_x, s->train_y, &x[0], &lab[0], &max_label) != 0) return -1;
  if (split_sources("test", s->test_x, s->test_y, &x[1], &lab[1], &max_label) != 0) {
    src_close(&x[0]);
    free(lab[0]);
    return -1;
  }
  int rc = 0;
  if (x[0].dims[1] != x[1].dims[1])
    rc = err_set("train features have F = %lld (%s) but test features F = %lld (%s)", (long long)x[0].dims[1],
                 s->train_x, (long long)x[1].dims[1], s->test_x);
  int nc = max_label + 1;
  char **names = xcalloc((size_t)nc, sizeof *names);
  if (rc == 0 && s->class_names) rc = read_names_file(s->class_names, nc, names);
  if (rc == 0) {
    for (int i = 0; i < nc; i++)
      if (!names[i]) {
        char b[16];
        snprintf(b, sizeof b, "%d", i);
        names[i] = convert_strdup(b);
      }
    DatasetWriter w;
    rc = dataset_writer_init(&w, out, nc, (const char *const *)names, "proxygml " PROXYGML_VERSION " data features");
    char src[8400];
    snprintf(src, sizeof src, "precomputed features: train %s / %s, test %s / %s", s->train_x, s->train_y, s->test_x,
             s->test_y);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "source", src);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "protocol", "given");
    if (rc == 0)
      rc = h5io_set_attr_str(w.file, "protocol_description",
                             "the train and test rows as given; labels are the class ids as given (global over both splits)");
    static const char *const SPL[2] = {"train", "test"};
    for (int k = 0; rc == 0 && k < 2; k++) {
      rc = write_features(&w, SPL[k], &x[k], lab[k]);
      if (rc == 0) rc = h5io_set_attr_str(w.group, "source_labels", k ? s->test_y : s->train_y);
      if (rc == 0) rc = h5io_set_attr_str(w.group, "selection", "all rows");
      if (rc == 0) rc = dataset_writer_end(&w);
    }
    if (rc == 0) rc = dataset_writer_commit(&w);
    dataset_writer_free(&w);
  }
  convert_names_free(names, nc);
  for (int k = 0; k < 2; k++) {
    src_close(&x[k]);
    free(lab[k]);
  }
  return rc;
}

