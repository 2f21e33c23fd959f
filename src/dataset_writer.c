/* dataset_writer.c: DatasetWriter (include/dataset_writer.h): a dataset file
 * written split by split under a temporary name, read back through the
 * validating reader (dataset.c), then committed atomically (fsutil). */
#include "dataset_writer.h"

#include "common.h"
#include "fsutil.h"
#include "h5io.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int check_split_name(const char *split) {
  if (!split || (strcmp(split, "train") && strcmp(split, "test")))
    return err_set("unknown split '%s' (expected train or test)", split ? split : "(null)");
  return 0;
}

/* no object timestamps: the same input must give the same bytes */
static hid_t dcpl_rows(int ndim, const hsize_t *dims, size_t elem, int extendible, int deflate) {
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
    if (deflate > 0) {
      H5Pset_shuffle(dcpl);
      H5Pset_deflate(dcpl, (unsigned)deflate);
    }
  }
  return dcpl;
}

/* a whole 1-d dataset (labels, class_names) without timestamps */
static int write_1d(hid_t loc, const char *name, hid_t type, int64_t n, const void *buf) {
  hsize_t d = (hsize_t)n;
  hid_t s = H5Screate_simple(1, &d, NULL);
  hid_t dcpl = dcpl_rows(1, &d, H5Tget_size(type), 0, 4);
  hid_t ds = H5Dcreate2(loc, name, type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  herr_t st = ds < 0 ? -1 : H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  if (ds >= 0) H5Dclose(ds);
  H5Pclose(dcpl);
  H5Sclose(s);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  return st < 0 ? err_set("cannot write dataset '%s'", name) : 0;
}

/* prefix the current message with the temp file's name
 * unreachable in tests: called only when HDF5 fails on the temp file the writer has just created */
static int fail_w(const DatasetWriter *w) { return err_set("%s: %s", w->tmp, err_msg()); }

int dataset_writer_init(DatasetWriter *w, const char *out, int n_classes, const char *const *class_names,
                        const char *converter) {
  memset(w, 0, sizeof *w);
  w->file = w->group = w->data = -1;
  /* the path itself would push the reason out of the message */
  if (strlen(out) >= sizeof w->out) return err_set("output path too long: '%.60s...'", out);
  if (n_classes < 1) return err_set("%s: no classes to write", out);
  snprintf(w->out, sizeof w->out, "%s", out);
  fsutil_temp_name(w->tmp, sizeof w->tmp, out);
  w->n_classes = n_classes;
  w->deflate = 4;
  w->class_names = xcalloc((size_t)n_classes, sizeof *w->class_names);
  for (int i = 0; i < n_classes; i++) {
    w->class_names[i] = strdup(class_names[i] ? class_names[i] : "");
    /* unreachable in tests: allocation failure */
    CHECK(w->class_names[i], "out of memory");
  }
  if (fsutil_mkdir_parent(out) != 0) return -1;
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
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (w->group < 0) return err_set("%s: cannot create group /%s", w->tmp, split);
  hid_t s = H5Screate_simple(nd, dims, maxd);
  hid_t dcpl = dcpl_rows(nd, dims, elem, 1, w->deflate);
  w->data = H5Dcreate2(w->group, kind == DATASET_IMAGES ? "images" : "features", type, s, H5P_DEFAULT, dcpl,
                       H5P_DEFAULT);
  H5Pclose(dcpl);
  H5Sclose(s);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
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
    /* unreachable in tests: allocation failure */
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

int dataset_writer_commit(DatasetWriter *w) {
  assert(w->file >= 0 && w->group < 0);
  herr_t st = H5Fclose(w->file);
  w->file = -1;
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (st < 0) return err_set("%s: closing the HDF5 file failed (disk full?)", w->tmp);
  /* read it back through the validating reader before it gets its name */
  DatasetInfo in;
  if (dataset_info(w->tmp, "train", &in) != 0 || dataset_info(w->tmp, "test", &in) != 0) return -1;
  if (fsutil_commit(w->tmp, w->out) != 0) return -1;
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
