/* dataset.c: reading dataset HDF5 files (see include/dataset.h and
 * docs/dataset-format.md): validation, split and row-range reads and the
 * batch conversion. Writing them is the conversion library's
 * (dataset_writer.c, convert_*.c). Serial HDF5 only: each MPI rank
 * opens the file read-only and reads its own rows. */
#include "dataset.h"

#include "common.h"
#include "h5io.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  /* unreachable in tests: h5io_shape has just opened the same dataset */
  if (h5io_type(g, data, &cls, &tsize, &sign) != 0) return err_set("%s: /%s/%s cannot be opened", path, split, data);
  if (has_img) {
    if (nd != 4) return err_set("%s: /%s/images has rank %d, expected 4 (n x H x W x channels)", path, split, nd);
    if (cls != H5T_INTEGER || tsize != 1 || sign != H5T_SGN_NONE)
      return err_set("%s: /%s/images is not uint8", path, split);
    /* divisions, not a product: dimensions up to 2^64 - 1 would overflow it */
    if (dims[1] < 1 || dims[2] < 1 || dims[3] < 1 || dims[1] > INT_MAX || dims[2] > INT_MAX / dims[1] ||
        dims[3] > INT_MAX / (dims[1] * dims[2]))
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
  /* unreachable in tests: allocation failure */
  for (int i = 0; rc == 0 && i < n; i++) CHECK(names[i], "out of memory");
  if (rc != 0) {
    free(names);
    /* unreachable in tests: dataset_info has checked class_names to be a 1-d string dataset; HDF5 fails to read
     * it only on a library or disk fault */
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
