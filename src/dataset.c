/* dataset.c: dataset HDF5 files (see include/dataset.h and
 * docs/dataset-format.md): validation, split and row-range reads, the batch
 * conversion, the writer of every converter, the Fashion-MNIST IDX converter
 * and the `proxygml data` dispatcher (the other converters are in
 * dataset_convert.c). Serial HDF5 only: each MPI rank opens the file
 * read-only and reads its own rows. */
#include "dataset.h"

#include "common.h"
#include "dataset_convert.h"
#include "config.h"
#include "h5io.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

/* ---- validation ------------------------------------------------------------ */

/* re-prefix the message of a failed h5io call with file and split */
static int fail_in(const char *path, const char *split) { return err_set("%s: /%s: %s", path, split, err_msg()); }

static int check_split_name(const char *split) {
  if (!split || (strcmp(split, "train") && strcmp(split, "test")))
    return err_set("unknown split '%s' (expected train or test)", split ? split : "(null)");
  return 0;
}

/* Opens path and its group /split. On failure nothing stays open. */
static int open_split(const char *path, const char *split, hid_t *f, hid_t *g) {
  *f = *g = -1;
  if (check_split_name(split) != 0) return -1;
  if (h5io_open(path, f) != 0) return -1;
  if (!h5io_has(*f, split)) {
    H5Fclose(*f);
    return err_set("%s: split '/%s' is missing", path, split);
  }
  H5O_info_t oi;
  if (H5Oget_info_by_name(*f, split, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_GROUP ||
      (*g = H5Gopen2(*f, split, H5P_DEFAULT)) < 0) {
    H5Fclose(*f);
    return err_set("%s: '/%s' is not a group", path, split);
  }
  return 0;
}

static void close_split(hid_t f, hid_t g) {
  if (g >= 0) H5Gclose(g);
  if (f >= 0) H5Fclose(f);
}

/* Everything except the pixel/feature values: the root attributes, the
 * datasets' presence, types and shapes, class_names, and all labels (their
 * range). labels_out (if not NULL) receives the n labels, owned by the caller. */
static int info_open(hid_t f, hid_t g, const char *path, const char *split, DatasetInfo *in, int32_t **labels_out) {
  memset(in, 0, sizeof *in);
  if (labels_out) *labels_out = NULL;
  int64_t nc;
  if (h5io_attr_i64(f, "n_classes", &nc) != 0)
    return err_set("%s: root attribute 'n_classes' is missing or not an integer (not a proxygml dataset file?)",
                   path);
  if (nc < 1 || nc > (1 << 24)) return err_set("%s: n_classes = %lld is out of range", path, (long long)nc);
  int64_t ver;
  if (H5Aexists(f, "format_version") > 0) {
    if (h5io_attr_i64(f, "format_version", &ver) != 0) return err_set("%s: format_version is not an integer", path);
    if (ver < 1 || ver > DATASET_FORMAT_VERSION)
      return err_set("%s: format_version %lld is not supported (this build reads up to %d)", path, (long long)ver,
                     DATASET_FORMAT_VERSION);
  }
  in->n_classes = (int)nc;

  int has_img = h5io_has(g, "images"), has_feat = h5io_has(g, "features");
  if (has_img && has_feat) return err_set("%s: /%s has both 'images' and 'features' (exactly one expected)", path, split);
  if (!has_img && !has_feat) return err_set("%s: /%s has neither 'images' nor 'features'", path, split);
  const char *data = has_img ? "images" : "features";
  int nd;
  int64_t dims[H5IO_MAXDIM];
  H5T_class_t cls;
  size_t tsize;
  H5T_sign_t sign;
  if (h5io_shape(g, data, &nd, dims) != 0) return fail_in(path, split);
  if (h5io_type(g, data, &cls, &tsize, &sign) != 0) return err_set("%s: /%s/%s cannot be opened", path, split, data);
  if (has_img) {
    if (nd != 4) return err_set("%s: /%s/images has rank %d, expected 4 (n x H x W x channels)", path, split, nd);
    if (cls != H5T_INTEGER || tsize != 1 || sign != H5T_SGN_NONE)
      return err_set("%s: /%s/images is not uint8", path, split);
    if (dims[1] < 1 || dims[2] < 1 || dims[3] < 1 || dims[1] * dims[2] * dims[3] > INT_MAX)
      return err_set("%s: /%s/images has a bad image shape %lld x %lld x %lld", path, split, (long long)dims[1],
                     (long long)dims[2], (long long)dims[3]);
    in->kind = DATASET_IMAGES;
    in->H = (int)dims[1];
    in->W = (int)dims[2];
    in->channels = (int)dims[3];
    in->row_size = in->H * in->W * in->channels;
  } else {
    if (nd != 2) return err_set("%s: /%s/features has rank %d, expected 2 (n x F)", path, split, nd);
    if (cls != H5T_FLOAT) return err_set("%s: /%s/features is not floating point", path, split);
    if (dims[1] < 1 || dims[1] > INT_MAX)
      return err_set("%s: /%s/features has a bad width F = %lld", path, split, (long long)dims[1]);
    in->kind = DATASET_FEATURES;
    in->F = (int)dims[1];
    in->row_size = in->F;
  }
  in->n = dims[0];
  if (in->n < 1) return err_set("%s: /%s is empty (0 rows in %s)", path, split, data);

  if (h5io_shape(g, "labels", &nd, dims) != 0) return fail_in(path, split);
  h5io_type(g, "labels", &cls, &tsize, &sign);
  if (nd != 1 || cls != H5T_INTEGER) return err_set("%s: /%s/labels is not a 1-d integer dataset", path, split);
  if (dims[0] != in->n)
    return err_set("%s: /%s/labels has %lld rows but %s has %lld", path, split, (long long)dims[0], data,
                   (long long)in->n);

  if (h5io_shape(g, "class_names", &nd, dims) != 0) return fail_in(path, split);
  h5io_type(g, "class_names", &cls, &tsize, &sign);
  if (nd != 1 || cls != H5T_STRING) return err_set("%s: /%s/class_names is not a 1-d string dataset", path, split);
  if (dims[0] != nc)
    return err_set("%s: /%s/class_names has %lld entries but n_classes = %lld", path, split, (long long)dims[0],
                   (long long)nc);

  int32_t *lab = xmalloc((size_t)in->n * sizeof *lab);   /* n */
  if (h5io_read(g, "labels", H5T_NATIVE_INT32, lab, (size_t)in->n) != 0) {
    free(lab);
    return fail_in(path, split);
  }
  uint8_t *seen = xcalloc((size_t)nc, 1);   /* n_classes: 1 if the label occurs */
  in->label_min = INT_MAX;
  in->label_max = -1;
  int rc = 0;
  for (int64_t i = 0; i < in->n; i++) {
    int32_t l = lab[i];
    if (l < 0 || l >= nc) {
      rc = err_set("%s: /%s/labels: row %lld has label %d, outside [0, %lld)", path, split, (long long)i, (int)l,
                   (long long)nc);
      break;
    }
    if (!seen[l]) { seen[l] = 1; in->n_distinct++; }
    if (l < in->label_min) in->label_min = l;
    if (l > in->label_max) in->label_max = l;
  }
  free(seen);
  if (rc == 0 && labels_out) *labels_out = lab;
  else free(lab);
  return rc;
}

int dataset_info(const char *path, const char *split, DatasetInfo *info) {
  hid_t f, g;
  memset(info, 0, sizeof *info);
  if (open_split(path, split, &f, &g) != 0) return -1;
  int rc = info_open(f, g, path, split, info, NULL);
  close_split(f, g);
  return rc;
}

int dataset_labels_read(const char *path, const char *split, int32_t *labels, int64_t n) {
  hid_t f, g;
  if (open_split(path, split, &f, &g) != 0) return -1;
  DatasetInfo in;
  int32_t *all = NULL;
  int rc = info_open(f, g, path, split, &in, &all);
  close_split(f, g);
  if (rc != 0) return -1;
  if (in.n != n) rc = err_set("%s: /%s has %lld rows, the caller expected %lld", path, split, (long long)in.n, (long long)n);
  else memcpy(labels, all, (size_t)n * sizeof *labels);
  free(all);
  return rc;
}

/* class_names as NUL-terminated strings, fixed or variable length on file */
static int read_class_names(hid_t g, const char *path, const char *split, int n, char ***out) {
  hid_t d = H5Dopen2(g, "class_names", H5P_DEFAULT);
  hid_t ft = H5Dget_type(d);
  char **names = xcalloc((size_t)n, sizeof *names);   /* n_classes */
  int rc = 0;
  if (H5Tis_variable_str(ft) > 0) {
    char **raw = xcalloc((size_t)n, sizeof *raw);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(ft));   /* HDF5 will not convert between ASCII and UTF-8 */
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) rc = -1;
    else {
      for (int i = 0; i < n; i++) names[i] = strdup(raw[i] ? raw[i] : "");
      hid_t sp = H5Dget_space(d);
#if H5_VERSION_GE(1, 12, 0)
      H5Treclaim(mt, sp, H5P_DEFAULT, raw);
#else
      H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, raw);
#endif
      H5Sclose(sp);
    }
    H5Tclose(mt);
    free(raw);
  } else {
    size_t len = H5Tget_size(ft);
    char *raw = xcalloc((size_t)n, len + 1);   /* n x (len + 1) */
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, len + 1);   /* +1 so every entry is NUL-terminated */
    H5Tset_cset(mt, H5Tget_cset(ft));
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) rc = -1;
    else
      for (int i = 0; i < n; i++) names[i] = strdup(raw + (size_t)i * (len + 1));
    H5Tclose(mt);
    free(raw);
  }
  H5Tclose(ft);
  H5Dclose(d);
  for (int i = 0; rc == 0 && i < n; i++) CHECK(names[i], "out of memory");
  if (rc != 0) {
    free(names);
    return err_set("%s: /%s/class_names: read failed", path, split);
  }
  *out = names;
  return 0;
}

void dataset_split_free(DatasetSplit *s) {
  free(s->images);
  free(s->features);
  free(s->labels);
  if (s->class_names)
    for (int i = 0; i < s->info.n_classes; i++) free(s->class_names[i]);
  free(s->class_names);
  memset(s, 0, sizeof *s);
}

int dataset_split_read(DatasetSplit *s, const char *path, const char *split, int64_t row0, int64_t nrows) {
  memset(s, 0, sizeof *s);
  hid_t f, g;
  if (open_split(path, split, &f, &g) != 0) return -1;
  int32_t *all = NULL;   /* n */
  int rc = info_open(f, g, path, split, &s->info, &all);
  const DatasetInfo *in = &s->info;
  if (rc == 0 && nrows == DATASET_ALL_ROWS && row0 >= 0 && row0 <= in->n) nrows = in->n - row0;
  if (rc == 0 && (row0 < 0 || nrows < 0 || row0 > in->n || nrows > in->n - row0))
    rc = err_set("%s: /%s: rows [%lld, %lld) are outside [0, %lld)", path, split, (long long)row0,
                 (long long)(row0 + nrows), (long long)in->n);
  if (rc == 0) {
    s->row0 = row0;
    s->nrows = nrows;
    s->labels = xmalloc((size_t)nrows * sizeof *s->labels);
    memcpy(s->labels, all + row0, (size_t)nrows * sizeof *s->labels);
    size_t count = (size_t)nrows * (size_t)in->row_size;
    if (in->kind == DATASET_IMAGES) {
      s->images = xmalloc(count);
      if (h5io_read_rows(g, "images", H5T_NATIVE_UINT8, row0, nrows, s->images) != 0) rc = fail_in(path, split);
    } else {
      s->features = xmalloc_f32(count);
      if (h5io_read_rows(g, "features", H5T_NATIVE_FLOAT, row0, nrows, s->features) != 0) rc = fail_in(path, split);
      /* NaN/Inf would poison every embedding they touch: refuse them here, once */
      for (size_t i = 0; rc == 0 && i < count; i++)
        if (!isfinite(s->features[i]))
          rc = err_set("%s: /%s/features: row %lld, column %d is %s", path, split,
                       (long long)(row0 + (int64_t)(i / (size_t)in->row_size)), (int)(i % (size_t)in->row_size),
                       isnan(s->features[i]) ? "NaN" : "infinite");
    }
  }
  if (rc == 0) rc = read_class_names(g, path, split, in->n_classes, &s->class_names);
  close_split(f, g);
  free(all);
  if (rc != 0) dataset_split_free(s);
  return rc;
}

/* ---- the batch, every step -------------------------------------------------- */

void dataset_batch(float *x, int32_t *y, const DatasetSplit *s, const int *idx, int B) {
  const DatasetInfo *in = &s->info;
  const size_t rs = (size_t)in->row_size;
  for (int b = 0; b < B; b++) {
    assert(idx[b] >= 0 && idx[b] < s->nrows);
    float *xb = x + (size_t)b * rs;   /* channels x H x W, or F */
    if (in->kind == DATASET_IMAGES) {
      const uint8_t *p = s->images + (size_t)idx[b] * rs;   /* H x W x channels */
      const int C = in->channels, HW = in->H * in->W;
      if (C == 1)
        for (size_t i = 0; i < rs; i++) xb[i] = (float)p[i] / 255.0f;
      else
        for (int c = 0; c < C; c++)
          for (int j = 0; j < HW; j++) xb[(size_t)c * HW + j] = (float)p[(size_t)j * C + c] / 255.0f;
    } else {
      memcpy(xb, s->features + (size_t)idx[b] * rs, rs * sizeof *xb);
    }
    if (y) y[b] = s->labels[idx[b]];
  }
}

/* ---- Fashion-MNIST IDX files -------------------------------------------------- */

static const char *const FMNIST_CLASSES[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static uint32_t be32(const unsigned char *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* gzread of exactly `want` bytes, in pieces (gzread takes an unsigned int) */
static int gz_exact(gzFile gz, const char *path, void *buf, size_t want, const char *what) {
  size_t got = 0;
  while (got < want) {
    size_t part = want - got > (1u << 30) ? (1u << 30) : want - got;
    int r = gzread(gz, (char *)buf + got, (unsigned)part);
    if (r < 0) {
      int zerr;
      const char *m = gzerror(gz, &zerr);
      return err_set("%s: corrupt gzip data in the %s (%s)", path, what, m);
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  if (got < want) return err_set("%s: truncated: %zu of %zu bytes of the %s", path, got, want, what);
  return 0;
}

/* One IDX file of uint8 values: magic 0x00000800 | ndim (0x803 images
 * n x rows x cols, 0x801 labels n), big-endian uint32 dims, then the data.
 * dims gets ndim values; *data is owned by the caller. */
static int idx_read(const char *path, int ndim, int64_t dims[3], uint8_t **data) {
  *data = NULL;
  errno = 0;
  gzFile gz = gzopen(path, "rb");
  if (!gz) return err_set("%s: cannot open (%s)", path, errno ? strerror(errno) : "zlib error");
  gzbuffer(gz, 1u << 20);
  unsigned char hdr[16];
  size_t hlen = 4 + 4 * (size_t)ndim;
  int rc = gz_exact(gz, path, hdr, hlen, "header");
  uint32_t magic = rc == 0 ? be32(hdr) : 0;
  if (rc == 0 && magic != (0x800u | (uint32_t)ndim))
    rc = err_set("%s: bad magic 0x%08x, expected 0x%08x (IDX %s file)", path, magic, 0x800u | (uint32_t)ndim,
                 ndim == 3 ? "image" : "label");
  size_t count = 1;
  for (int i = 0; rc == 0 && i < ndim; i++) {
    dims[i] = be32(hdr + 4 + 4 * i);
    if (dims[i] < 1 || dims[i] > 100000000)
      rc = err_set("%s: implausible dimension %d = %lld in the header", path, i, (long long)dims[i]);
    count *= (size_t)dims[i];   /* at most 2^34 * 10^8 < 2^64: cannot overflow */
    if (rc == 0 && count > ((size_t)1 << 34)) rc = err_set("%s: the header announces more than 2^34 values", path);
  }
  if (rc == 0) {
    *data = xmalloc(count);
    rc = gz_exact(gz, path, *data, count, "data");
  }
  if (rc == 0) {
    char extra;
    if (gzread(gz, &extra, 1) != 0)
      rc = err_set("%s: more bytes than the header announces (%zu values)", path, count);
  }
  gzclose(gz);
  if (rc != 0) {
    free(*data);
    *data = NULL;
  }
  return rc;
}

typedef struct {
  int64_t n;
  int H, W;
  uint8_t *images;   /* n x H x W */
  int32_t *labels;   /* n */
} Idx;

static void idx_free(Idx *d) {
  free(d->images);
  free(d->labels);
  memset(d, 0, sizeof *d);
}

static int idx_pair_read(Idx *d, const char *dir, const char *prefix) {
  memset(d, 0, sizeof *d);
  char ip[4096], lp[4096];
  snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
  snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
  int64_t idims[3], ldims[3];
  uint8_t *lab8 = NULL;
  if (idx_read(ip, 3, idims, &d->images) != 0) return -1;
  if (idx_read(lp, 1, ldims, &lab8) != 0) {
    idx_free(d);
    return -1;
  }
  int rc = 0;
  if (ldims[0] != idims[0])
    rc = err_set("%s: %lld labels but %s has %lld images", lp, (long long)ldims[0], ip, (long long)idims[0]);
  d->n = idims[0];
  d->H = (int)idims[1];
  d->W = (int)idims[2];
  d->labels = xmalloc((size_t)d->n * sizeof *d->labels);
  for (int64_t i = 0; rc == 0 && i < d->n; i++) {
    if (lab8[i] > 9) rc = err_set("%s: label %d at row %lld, Fashion-MNIST has classes 0-9", lp, lab8[i], (long long)i);
    d->labels[i] = lab8[i];
  }
  free(lab8);
  if (rc != 0) idx_free(d);
  return rc;
}

/* rows of d with label in [lo, hi], in file order */
static void idx_select(Idx *out, const Idx *d, int lo, int hi) {
  int64_t n = 0;
  for (int64_t i = 0; i < d->n; i++) n += d->labels[i] >= lo && d->labels[i] <= hi;
  size_t px = (size_t)d->H * (size_t)d->W;
  out->n = n;
  out->H = d->H;
  out->W = d->W;
  out->images = xmalloc((size_t)n * px);
  out->labels = xmalloc((size_t)n * sizeof *out->labels);
  int64_t k = 0;
  for (int64_t i = 0; i < d->n; i++)
    if (d->labels[i] >= lo && d->labels[i] <= hi) {
      memcpy(out->images + (size_t)k * px, d->images + (size_t)i * px, px);
      out->labels[k++] = d->labels[i];
    }
}

/* ---- writing: DatasetWriter ---------------------------------------------------- */

/* no object timestamps: the same input must give the same bytes */
static hid_t dcpl_rows(int ndim, const hsize_t *dims, size_t elem, int extendible) {
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_obj_track_times(dcpl, 0);
  size_t row = elem, n = dims[0];
  for (int i = 1; i < ndim; i++) row *= dims[i];
  if (extendible || n * row > 4096 * elem) {
    /* chunks of whole rows, about 1 MiB, as h5io_write */
    hsize_t chunk[H5IO_MAXDIM];
    hsize_t rows = (1u << 20) / row;
    if (rows < 1) rows = 1;
    if (!extendible && rows > n) rows = n;
    chunk[0] = rows;
    for (int i = 1; i < ndim; i++) chunk[i] = dims[i];
    H5Pset_chunk(dcpl, ndim, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 4);
  }
  return dcpl;
}

/* a whole 1-d dataset (labels, class_names) without timestamps */
static int write_1d(hid_t loc, const char *name, hid_t type, int64_t n, const void *buf) {
  hsize_t d = (hsize_t)n;
  hid_t s = H5Screate_simple(1, &d, NULL);
  hid_t dcpl = dcpl_rows(1, &d, H5Tget_size(type), 0);
  hid_t ds = H5Dcreate2(loc, name, type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  herr_t st = ds < 0 ? -1 : H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  if (ds >= 0) H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(s);
  return st < 0 ? err_set("cannot write dataset '%s'", name) : 0;
}

/* prefix the current message with the temp file's name */
static int fail_w(const DatasetWriter *w) { return err_set("%s: %s", w->tmp, err_msg()); }

int dataset_writer_init(DatasetWriter *w, const char *out, int n_classes, const char *const *class_names,
                        const char *converter) {
  memset(w, 0, sizeof *w);
  w->file = w->group = w->data = -1;
  if (strlen(out) >= sizeof w->out) return err_set("%s: output path too long", out);
  if (n_classes < 1) return err_set("%s: no classes to write", out);
  snprintf(w->out, sizeof w->out, "%s", out);
  snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", out, (long)getpid());
  w->n_classes = n_classes;
  w->class_names = xcalloc((size_t)n_classes, sizeof *w->class_names);
  for (int i = 0; i < n_classes; i++) {
    w->class_names[i] = strdup(class_names[i] ? class_names[i] : "");
    CHECK(w->class_names[i], "out of memory");
  }
  if (common_mkdir_parent(out) != 0) return -1;
  h5io_quiet();
  hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  /* the root group's timestamps too; and a fixed library format for the same bytes */
  H5Pset_obj_track_times(fcpl, 0);
  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, fapl);
  H5Pclose(fcpl);
  H5Pclose(fapl);
  if (w->file < 0) return err_set("%s: cannot create HDF5 file (directory missing or not writable?)", w->tmp);
  char created[32];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
  int rc = h5io_set_attr_str(w->file, "format", "proxygml-dataset");
  if (rc == 0) rc = h5io_set_attr_i64(w->file, "format_version", DATASET_FORMAT_VERSION);
  if (rc == 0) rc = h5io_set_attr_i64(w->file, "n_classes", n_classes);
  if (rc == 0) rc = h5io_set_attr_str(w->file, "created", created);
  if (rc == 0) rc = h5io_set_attr_str(w->file, "converter", converter);
  return rc == 0 ? 0 : fail_w(w);
}

int dataset_writer_begin(DatasetWriter *w, const char *split, DatasetKind kind, int d1, int d2, int d3) {
  assert(w->file >= 0 && w->group < 0);
  if (check_split_name(split) != 0) return -1;
  hsize_t dims[4], maxd[4];
  int nd;
  size_t elem;
  hid_t type;
  if (kind == DATASET_IMAGES) {
    if (d1 < 1 || d2 < 1 || d3 < 1) return err_set("%s: /%s: bad image shape %d x %d x %d", w->tmp, split, d1, d2, d3);
    w->H = d1; w->W = d2; w->channels = d3; w->F = 0;
    nd = 4; dims[1] = (hsize_t)d1; dims[2] = (hsize_t)d2; dims[3] = (hsize_t)d3;
    elem = 1; type = H5T_NATIVE_UINT8;
    w->row_bytes = (size_t)d1 * (size_t)d2 * (size_t)d3;
  } else {
    if (d1 < 1) return err_set("%s: /%s: bad feature width %d", w->tmp, split, d1);
    w->F = d1; w->H = w->W = w->channels = 0;
    nd = 2; dims[1] = (hsize_t)d1;
    elem = sizeof(float); type = H5T_NATIVE_FLOAT;
    w->row_bytes = (size_t)d1 * sizeof(float);
  }
  w->kind = kind;
  dims[0] = 0;
  maxd[0] = H5S_UNLIMITED;
  for (int i = 1; i < nd; i++) maxd[i] = dims[i];
  hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
  H5Pset_obj_track_times(gcpl, 0);
  w->group = H5Gcreate2(w->file, split, H5P_DEFAULT, gcpl, H5P_DEFAULT);
  H5Pclose(gcpl);
  if (w->group < 0) return err_set("%s: cannot create group /%s", w->tmp, split);
  hid_t s = H5Screate_simple(nd, dims, maxd);
  hid_t dcpl = dcpl_rows(nd, dims, elem, 1);
  w->data = H5Dcreate2(w->group, kind == DATASET_IMAGES ? "images" : "features", type, s, H5P_DEFAULT, dcpl,
                       H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(s);
  if (w->data < 0) return err_set("%s: /%s: cannot create the %s dataset", w->tmp, split,
                                  kind == DATASET_IMAGES ? "images" : "features");
  w->n = 0;
  return 0;
}

int dataset_writer_append(DatasetWriter *w, const void *rows, const int32_t *labels, int64_t n) {
  assert(w->data >= 0 && n >= 0);
  if (n == 0) return 0;
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < 0 || labels[i] >= w->n_classes)
      return err_set("%s: label %d of row %lld is outside [0, %d)", w->tmp, (int)labels[i], (long long)(w->n + i),
                     w->n_classes);
  int nd = w->kind == DATASET_IMAGES ? 4 : 2;
  hsize_t dims[4] = {(hsize_t)(w->n + n), (hsize_t)(w->kind == DATASET_IMAGES ? w->H : w->F), (hsize_t)w->W,
                     (hsize_t)w->channels};
  hsize_t start[4] = {(hsize_t)w->n, 0, 0, 0}, cnt[4];
  for (int i = 0; i < 4; i++) cnt[i] = dims[i];
  cnt[0] = (hsize_t)n;
  hid_t type = w->kind == DATASET_IMAGES ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
  if (H5Dset_extent(w->data, dims) < 0) return err_set("%s: cannot extend the dataset to %lld rows", w->tmp,
                                                       (long long)dims[0]);
  hid_t fs = H5Dget_space(w->data);
  hid_t ms = H5Screate_simple(nd, cnt, NULL);
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
  herr_t st = H5Dwrite(w->data, type, ms, fs, H5P_DEFAULT, rows);
  H5Sclose(ms);
  H5Sclose(fs);
  if (st < 0) return err_set("%s: writing rows %lld..%lld failed (disk full?)", w->tmp, (long long)w->n,
                             (long long)(w->n + n - 1));
  if (w->n + n > w->labels_cap) {
    int64_t cap = w->labels_cap ? w->labels_cap : 1024;
    while (cap < w->n + n) cap *= 2;
    int32_t *nl = realloc(w->labels, (size_t)cap * sizeof *nl);
    CHECK(nl, "out of memory");
    w->labels = nl;
    w->labels_cap = cap;
  }
  memcpy(w->labels + w->n, labels, (size_t)n * sizeof *labels);
  w->n += n;
  return 0;
}

int dataset_writer_end(DatasetWriter *w) {
  assert(w->group >= 0);
  int rc = 0;
  if (w->n == 0) rc = err_set("%s: the split would be empty (no rows)", w->out);
  if (rc == 0 && write_1d(w->group, "labels", H5T_NATIVE_INT32, w->n, w->labels) != 0) rc = fail_w(w);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, H5T_VARIABLE);
  H5Tset_cset(st, H5T_CSET_UTF8);
  if (rc == 0 && write_1d(w->group, "class_names", st, w->n_classes, w->class_names) != 0) rc = fail_w(w);
  H5Tclose(st);
  H5Dclose(w->data);
  H5Gclose(w->group);
  w->data = w->group = -1;
  return rc;
}

/* flush the file to disk before the rename makes it visible under its name */
static int fsync_path(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return err_set("%s: cannot reopen to sync (%s)", path, strerror(errno));
  int r = fsync(fd);
  close(fd);
  if (r != 0) return err_set("%s: fsync failed (%s)", path, strerror(errno));
  return 0;
}

int dataset_writer_commit(DatasetWriter *w) {
  assert(w->file >= 0 && w->group < 0);
  herr_t st = H5Fclose(w->file);
  w->file = -1;
  if (st < 0) return err_set("%s: closing the HDF5 file failed (disk full?)", w->tmp);
  /* read it back through the validating reader before it gets its name */
  DatasetInfo in;
  if (dataset_info(w->tmp, "train", &in) != 0 || dataset_info(w->tmp, "test", &in) != 0) return -1;
  if (fsync_path(w->tmp) != 0) return -1;
  if (rename(w->tmp, w->out) != 0) return err_set("%s: cannot rename %s to it (%s)", w->out, w->tmp, strerror(errno));
  w->committed = 1;
  return 0;
}

void dataset_writer_free(DatasetWriter *w) {
  if (w->data >= 0) H5Dclose(w->data);
  if (w->group >= 0) H5Gclose(w->group);
  if (w->file >= 0) H5Fclose(w->file);
  if (!w->committed && w->tmp[0]) unlink(w->tmp);
  if (w->class_names)
    for (int i = 0; i < w->n_classes; i++) free(w->class_names[i]);
  free(w->class_names);
  free(w->labels);
  memset(w, 0, sizeof *w);
  w->file = w->group = w->data = -1;
}

/* ---- Fashion-MNIST: writing --------------------------------------------------------- */

static int write_split(DatasetWriter *w, const char *split, const Idx *d, const char *prefix, const char *selection,
                       int64_t n_source) {
  char src[256];
  int rc = dataset_writer_begin(w, split, DATASET_IMAGES, d->H, d->W, 1);
  if (rc == 0) rc = dataset_writer_append(w, d->images, d->labels, d->n);
  snprintf(src, sizeof src, "%s-images-idx3-ubyte.gz", prefix);
  if (rc == 0) rc = h5io_set_attr_str(w->group, "source_images", src);
  snprintf(src, sizeof src, "%s-labels-idx1-ubyte.gz", prefix);
  if (rc == 0) rc = h5io_set_attr_str(w->group, "source_labels", src);
  if (rc == 0) rc = h5io_set_attr_str(w->group, "selection", selection);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "n_source_rows", n_source);
  if (rc == 0) rc = dataset_writer_end(w);
  return rc;
}

static int write_fmnist(const char *out, const Idx *tr, const Idx *te, const Idx *tr_src, const Idx *te_src,
                        const char *idx_dir, DatasetProtocol protocol) {
  DatasetWriter w;
  int zs = protocol == DATASET_PROTOCOL_ZEROSHOT;
  int rc = dataset_writer_init(&w, out, 10, FMNIST_CLASSES, "proxygml " PROXYGML_VERSION " data fashion-mnist");
  if (rc == 0) rc = h5io_set_attr_str(w.file, "source", "Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747), gzipped IDX files");
  if (rc == 0) rc = h5io_set_attr_str(w.file, "source_dir", idx_dir);
  if (rc == 0) rc = h5io_set_attr_str(w.file, "protocol", zs ? "zeroshot" : "seen");
  if (rc == 0)
    rc = h5io_set_attr_str(w.file, "protocol_description",
                           zs ? "train: classes 0-4 of the train file; test: classes 5-9 of the t10k file (disjoint classes)"
                              : "train: the whole train file; test: the whole t10k file (same 10 classes)");
  if (rc == 0) rc = write_split(&w, "train", tr, "train", zs ? "rows with label 0-4" : "all rows", tr_src->n);
  if (rc == 0) rc = write_split(&w, "test", te, "t10k", zs ? "rows with label 5-9" : "all rows", te_src->n);
  if (rc == 0) rc = dataset_writer_commit(&w);
  dataset_writer_free(&w);
  return rc;
}

int dataset_convert_fashion_mnist(const char *out, const char *idx_dir, DatasetProtocol protocol) {
  struct stat sb;
  if (stat(idx_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return err_set("%s: no such directory (the Fashion-MNIST IDX files; see --idx-dir)", idx_dir);
  if (protocol != DATASET_PROTOCOL_SEEN && protocol != DATASET_PROTOCOL_ZEROSHOT)
    return err_set("unknown protocol %d", (int)protocol);
  Idx tr = {0}, te = {0}, trs = {0}, tes = {0};
  if (idx_pair_read(&tr, idx_dir, "train") != 0) return -1;
  if (idx_pair_read(&te, idx_dir, "t10k") != 0) {
    idx_free(&tr);
    return -1;
  }
  int rc = 0;
  if (tr.H != te.H || tr.W != te.W)
    rc = err_set("%s: train images are %d x %d but t10k images are %d x %d", idx_dir, tr.H, tr.W, te.H, te.W);
  const Idx *wtr = &tr, *wte = &te;
  if (rc == 0 && protocol == DATASET_PROTOCOL_ZEROSHOT) {
    idx_select(&trs, &tr, 0, 4);
    idx_select(&tes, &te, 5, 9);
    wtr = &trs;
    wte = &tes;
  }
  if (rc == 0 && (wtr->n == 0 || wte->n == 0))
    rc = err_set("%s: the %s split would be empty (no rows of its classes in the IDX files)", idx_dir,
                 wtr->n == 0 ? "train" : "test");
  if (rc == 0) rc = write_fmnist(out, wtr, wte, &tr, &te, idx_dir, protocol);
  idx_free(&tr);
  idx_free(&te);
  idx_free(&trs);
  idx_free(&tes);
  return rc;
}

/* ---- proxygml data ----------------------------------------------------------- */

static void data_usage(FILE *out) {
  fprintf(out,
          "usage: proxygml data fashion-mnist OUT.h5 --protocol {seen,zeroshot} [--idx-dir DIR]\n"
          "       proxygml data info FILE.h5\n");
  dataset_convert_usage(out);
  fprintf(out,
          "\n"
          "fashion-mnist  convert the gzipped Fashion-MNIST IDX files into a dataset file\n"
          "               (docs/dataset-format.md). The file is written as OUT.h5.tmp.<pid>,\n"
          "               validated and renamed: a failure leaves no OUT.h5 and never\n"
          "               replaces an existing one.\n"
          "  --protocol seen      /train = all 60000 train images (classes 0-9),\n"
          "                       /test = all 10000 t10k images (classes 0-9)\n"
          "  --protocol zeroshot  /train = train images of classes 0-4 (30000),\n"
          "                       /test = t10k images of classes 5-9 (5000); ids stay global\n"
          "  --idx-dir DIR        folder with train-{images-idx3,labels-idx1}-ubyte.gz and\n"
          "                       t10k-...; default $FMNIST_DIR, else %s\n"
          "info           validate FILE.h5 completely and print its splits, shapes and classes\n"
          "folder, cub, cars, sop, features, glyphs: other datasets (proxygml data folder --help,\n"
          "               docs/datasets.md)\n"
          "\n"
          "exit status: 0 ok, 2 bad arguments, invalid input or a failed write (one line on stderr)\n",
          DATASET_FMNIST_DEFAULT_DIR);
}

static int cmd_fashion_mnist(int argc, char **argv) {
  const char *out = NULL, *proto = NULL, *dir = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      data_usage(stdout);
      return 0;
    } else if (!strcmp(a, "--protocol") || !strcmp(a, "--idx-dir")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "proxygml data fashion-mnist: %s needs a value\n", a);
        return 2;
      }
      if (!strcmp(a, "--protocol")) proto = argv[++i];
      else dir = argv[++i];
    } else if (!strncmp(a, "--protocol=", 11)) {
      proto = a + 11;
    } else if (!strncmp(a, "--idx-dir=", 10)) {
      dir = a + 10;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "proxygml data fashion-mnist: unknown option '%s'\n", a);
      return 2;
    } else if (!out) {
      out = a;
    } else {
      fprintf(stderr, "proxygml data fashion-mnist: unexpected argument '%s'\n", a);
      return 2;
    }
  }
  if (!out || !proto) {
    fprintf(stderr, "proxygml data fashion-mnist: %s is required (see proxygml data --help)\n",
            !out ? "OUT.h5" : "--protocol");
    return 2;
  }
  DatasetProtocol p;
  if (!strcmp(proto, "seen")) p = DATASET_PROTOCOL_SEEN;
  else if (!strcmp(proto, "zeroshot")) p = DATASET_PROTOCOL_ZEROSHOT;
  else {
    fprintf(stderr, "proxygml data fashion-mnist: unknown protocol '%s' (seen or zeroshot)\n", proto);
    return 2;
  }
  if (!dir) dir = getenv("FMNIST_DIR");
  if (!dir || !*dir) dir = DATASET_FMNIST_DEFAULT_DIR;

  double t0 = now_sec();
  if (dataset_convert_fashion_mnist(out, dir, p) != 0) {
    fprintf(stderr, "proxygml data fashion-mnist: %s\n", err_msg());
    return 2;
  }
  DatasetInfo a, b;
  CHECK(dataset_info(out, "train", &a) == 0 && dataset_info(out, "test", &b) == 0, "%s", err_msg());
  printf("wrote %s (%s): /train %lld x %dx%dx%d (classes %d-%d), /test %lld x %dx%dx%d (classes %d-%d) in %.2f s\n",
         out, proto, (long long)a.n, a.H, a.W, a.channels, a.label_min, a.label_max, (long long)b.n, b.H, b.W,
         b.channels, b.label_min, b.label_max, now_sec() - t0);
  return 0;
}

static void print_attr(hid_t f, const char *name) {
  char buf[1024];
  if (H5Aexists(f, name) > 0 && h5io_attr_str(f, name, buf, sizeof buf) == 0) printf("  %-10s %s\n", name, buf);
}

static int cmd_info(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    data_usage(stdout);
    return 0;
  }
  if (argc != 2) {
    fprintf(stderr, "usage: proxygml data info FILE.h5\n");
    return 2;
  }
  const char *path = argv[1];
  static const char *const SPLITS[2] = {"train", "test"};
  DatasetInfo in[2];
  int64_t *counts[2] = {NULL, NULL};   /* n_classes each: rows per class */
  char **names = NULL;
  int nc = 0, rc = 0;
  for (int s = 0; rc == 0 && s < 2; s++) {
    if (dataset_info(path, SPLITS[s], &in[s]) != 0) { rc = -1; break; }
    /* read in blocks of rows: the full read checks every feature for NaN/Inf
     * and proves the data decompresses, without holding a large file at once */
    int64_t block = in[s].row_size > 0 ? (int64_t)(256 << 20) / in[s].row_size / 4 + 1 : in[s].n;
    counts[s] = xcalloc((size_t)in[s].n_classes, sizeof *counts[s]);
    for (int64_t r = 0; rc == 0 && r < in[s].n; r += block) {
      DatasetSplit sp;
      int64_t m = in[s].n - r < block ? in[s].n - r : block;
      if (dataset_split_read(&sp, path, SPLITS[s], r, m) != 0) { rc = -1; break; }
      for (int64_t i = 0; i < sp.nrows; i++) counts[s][sp.labels[i]]++;
      if (!names) {
        nc = sp.info.n_classes;
        names = sp.class_names;   /* keep the names of /train */
        sp.class_names = NULL;
      }
      dataset_split_free(&sp);
    }
  }
  if (rc == 0 && in[0].n_classes != in[1].n_classes)
    rc = err_set("%s: /train and /test disagree on n_classes", path);
  if (rc != 0) {
    fprintf(stderr, "proxygml data info: %s\n", err_msg());
  } else {
    hid_t f;
    CHECK(h5io_open(path, &f) == 0, "%s", err_msg());
    printf("%s: valid dataset file, %d classes\n", path, nc);
    print_attr(f, "source");
    print_attr(f, "protocol");
    print_attr(f, "created");
    print_attr(f, "converter");
    H5Fclose(f);
    for (int s = 0; s < 2; s++) {
      const DatasetInfo *d = &in[s];
      if (d->kind == DATASET_IMAGES)
        printf("  /%-5s %7lld images %d x %d x %d (uint8)", SPLITS[s], (long long)d->n, d->H, d->W, d->channels);
      else
        printf("  /%-5s %7lld features x %d (float32)", SPLITS[s], (long long)d->n, d->F);
      printf(", %d distinct labels in %d..%d\n", d->n_distinct, d->label_min, d->label_max);
    }
    if (nc <= 50) {
      printf("  %5s  %-24s %8s %8s\n", "class", "name", "train", "test");
      for (int c = 0; c < nc; c++)
        printf("  %5d  %-24s %8lld %8lld\n", c, names[c], (long long)counts[0][c], (long long)counts[1][c]);
    }
  }
  for (int c = 0; names && c < nc; c++) free(names[c]);
  free(names);
  free(counts[0]);
  free(counts[1]);
  return rc == 0 ? 0 : 2;
}

int dataset_cmd_data(int argc, char **argv) {
  if (argc < 2) {
    data_usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    data_usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "fashion-mnist")) return cmd_fashion_mnist(argc - 1, argv + 1);
  if (!strcmp(argv[1], "info")) return cmd_info(argc - 1, argv + 1);
  if (!strcmp(argv[1], "folder") || !strcmp(argv[1], "cub") || !strcmp(argv[1], "cars") || !strcmp(argv[1], "sop") ||
      !strcmp(argv[1], "features") || !strcmp(argv[1], "glyphs"))
    return dataset_convert_cmd(argc - 1, argv + 1);
  fprintf(stderr, "proxygml data: unknown subcommand '%s'\n", argv[1]);
  data_usage(stderr);
  return 2;
}
