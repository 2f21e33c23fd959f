/* fuzz_dataset.c: libFuzzer harness of dataset validation (dataset_info,
 * dataset_labels_read, dataset_split_read and dataset_batch; include/dataset.h).
 *
 * The input is a recipe, not file bytes: HDF5's own parser of the bytes on
 * disk is not the target, the project's checks of what a well-formed HDF5
 * file holds are. The harness writes a valid dataset file (n_classes, two
 * splits of images or features, labels, class_names; sizes from the
 * recipe), then applies the recipe's edits through the HDF5 API: delete or
 * replace a dataset or group, give it another type, rank or shape, change
 * the root attributes, soft, hard and external links, single labels and
 * feature values. Then every reader runs on both splits. Beyond "no crash,
 * no sanitizer report":
 *   - every call returns 0, or -1 with a message, and leaves no HDF5
 *     identifier open;
 *   - what dataset_info accepts, dataset_labels_read and dataset_split_read
 *     accept (the same validation), and what it refuses, dataset_split_read
 *     refuses (each file open costs milliseconds under ASan: the harness
 *     makes the calls that can disagree);
 *   - reported sizes and label statistics agree with the labels read;
 *     row ranges outside the split are refused, a failed read leaves the
 *     split zeroed, features read are finite, images convert into [0, 1].
 * Declared sizes are allocated as declared (a file may hold 2^40 rows), so
 * the recipe keeps row counts at most 2^20 and reads at most 2^26 bytes;
 * the other dimensions go up to 2^63 - 1, where only validation runs.
 */
#include "fuzz_util.h"

#include "common.h"
#include "dataset.h"

#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH "fuzz.h5"
#define MAX_EDITS 24
#define MAX_ROWS (1 << 20)
#define MAX_READ_BYTES (1 << 26)

static const char *const SPLITS[2] = {"train", "test"};
static const char *const TARGETS[] = {"train",        "test",        "train/images",      "train/features",
                                      "train/labels", "test/images", "test/features",     "test/labels",
                                      "train/class_names", "test/class_names", "train/extra"};
#define NTARGETS ((int)(sizeof TARGETS / sizeof TARGETS[0]))
static const int64_t ROW_DIMS[] = {0, 1, 2, 3, 4, 5, 7, 16, 255, 4096, MAX_ROWS};
static const int64_t DIMS[] = {0, 1, 2, 3, 4, 5, 16, 255, 65536, INT_MAX, (int64_t)INT_MAX + 1, (int64_t)1 << 32,
                               (int64_t)1 << 40, (int64_t)1 << 62, INT64_MAX};
static const int64_t VALUES[] = {0, 1, 2, 3, 5, -1, 1 << 24, (1 << 24) + 1, INT_MAX, (int64_t)INT_MAX + 1, INT_MIN,
                                 INT64_MAX, INT64_MIN, 10, 255};
#define N_OF(t) ((int)(sizeof t / sizeof t[0]))

/* ---- writing the base file --------------------------------------------------------- */

static void attr_i64(hid_t loc, const char *name, int64_t v) {
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, H5T_NATIVE_INT64, &v);
  H5Aclose(a);
  H5Sclose(s);
}

static void write_1d(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                     const void *buf) {
  hid_t s = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(loc, name, ftype, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  H5Dclose(d);
  H5Sclose(s);
}

static void write_base(hid_t f, FuzzIn *in) {
  int nc = 1 + fuzz_below(in, 6);
  attr_i64(f, "n_classes", nc);
  attr_i64(f, "format_version", DATASET_FORMAT_VERSION);
  char names[6][8];
  const char *ptrs[6];
  for (int c = 0; c < nc; c++) {
    snprintf(names[c], sizeof names[c], "c%d", c);
    ptrs[c] = names[c];
  }
  hid_t vstr = H5Tcopy(H5T_C_S1);
  H5Tset_size(vstr, H5T_VARIABLE);
  H5Tset_cset(vstr, H5T_CSET_UTF8);
  for (int s = 0; s < 2; s++) {
    hid_t g = H5Gcreate2(f, SPLITS[s], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int images = fuzz_u8(in) & 1, n = 1 + fuzz_below(in, 6);
    hsize_t dims[4] = {(hsize_t)n, 1 + (hsize_t)fuzz_below(in, 3), 1 + (hsize_t)fuzz_below(in, 3),
                       1 + (hsize_t)fuzz_below(in, 3)};
    size_t row = images ? dims[1] * dims[2] * dims[3] : dims[1];
    if (images) {
      uint8_t px[6 * 27];
      for (size_t i = 0; i < (size_t)n * row; i++) px[i] = (uint8_t)(i * 37 + fuzz_u8(in));
      write_1d(g, "images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, dims, px);
    } else {
      float x[6 * 3];
      for (size_t i = 0; i < (size_t)n * row; i++) x[i] = (float)(int8_t)fuzz_u8(in) / 16;
      write_1d(g, "features", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dims, x);
    }
    int32_t lab[6];
    for (int i = 0; i < n; i++) lab[i] = fuzz_u8(in) % nc;
    write_1d(g, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, dims, lab);
    hsize_t ncd = (hsize_t)nc;
    write_1d(g, "class_names", vstr, vstr, 1, &ncd, ptrs);
    H5Gclose(g);
  }
  H5Tclose(vstr);
}

/* ---- the recipe's edits ------------------------------------------------------------ */

/* one element of a split's labels or features */
static void edit_value(hid_t f, FuzzIn *in, int features) {
  static const double SPECIAL[] = {NAN, INFINITY, -INFINITY, 1e39, -1e300, 5e-324, 0.5, -0.0};
  char name[32];
  snprintf(name, sizeof name, "%s/%s", SPLITS[fuzz_u8(in) & 1], features ? "features" : "labels");
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  if (d < 0) return;
  hid_t s = H5Dget_space(d);
  hsize_t dims[8];
  int nd = H5Sget_simple_extent_ndims(s);
  if (nd >= 1 && nd <= 8 && H5Sget_simple_extent_dims(s, dims, NULL) >= 0) {
    hsize_t start[8], one[8], total = 1;
    int ok = 1;
    for (int i = 0; i < nd; i++) {
      /* HDF5 1.10 creates shapes of more than 2^64 elements but crashes writing to them */
      ok &= dims[i] > 0 && total <= ((hsize_t)1 << 62) / dims[i];
      total *= dims[i] ? dims[i] : 1;
      start[i] = dims[i] ? (hsize_t)fuzz_u8(in) % dims[i] : 0;
      one[i] = 1;
    }
    if (ok && H5Sselect_hyperslab(s, H5S_SELECT_SET, start, NULL, one, NULL) >= 0) {
      hid_t m = H5Screate(H5S_SCALAR);
      if (features) {
        double v = SPECIAL[fuzz_below(in, N_OF(SPECIAL))];
        H5Dwrite(d, H5T_NATIVE_DOUBLE, m, s, H5P_DEFAULT, &v);
      } else {
        int64_t v = fuzz_pick(in, VALUES, N_OF(VALUES));
        H5Dwrite(d, H5T_NATIVE_INT64, m, s, H5P_DEFAULT, &v);
      }
      H5Sclose(m);
    }
  }
  H5Sclose(s);
  H5Dclose(d);
}

enum { E_LINK, E_DATASET, E_ATTR, E_EXTERNAL, E_LABEL, E_FEATURE, E_NEDITS };

static void apply_edits(hid_t f, FuzzIn *in) {
  static const char *const ATTR_OBJS[] = {"/", "/train", "/test", "/train/labels"};
  static const char *const ATTRS[] = {"n_classes", "format_version"};
  static const char *const FILES[] = {"other.h5", "missing.h5", PATH};
  for (int e = 0; e < MAX_EDITS && !fuzz_done(in); e++) {
    int op = fuzz_below(in, E_NEDITS);
    const char *target = TARGETS[fuzz_below(in, NTARGETS)], *other = TARGETS[fuzz_below(in, NTARGETS)];
    char abs[64];
    switch (op) {
    case E_LINK: fuzz_h5_link(f, target, other, fuzz_u8(in)); break;
    case E_DATASET: fuzz_h5_dataset(f, target, in, ROW_DIMS, N_OF(ROW_DIMS), DIMS, N_OF(DIMS)); break;
    case E_ATTR:
      fuzz_h5_attr(f, ATTR_OBJS[fuzz_below(in, N_OF(ATTR_OBJS))], ATTRS[fuzz_below(in, 2)], in, VALUES, N_OF(VALUES));
      break;
    case E_EXTERNAL:
      snprintf(abs, sizeof abs, "/%s", other);
      H5Ldelete(f, target, H5P_DEFAULT);
      H5Lcreate_external(FILES[fuzz_below(in, N_OF(FILES))], abs, f, target, H5P_DEFAULT, H5P_DEFAULT);
      break;
    case E_LABEL: edit_value(f, in, 0); break;
    case E_FEATURE: edit_value(f, in, 1); break;
    }
  }
}

/* ---- the readers ---------------------------------------------------------------------- */

static int zeroed(const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i]) return 0;
  return 1;
}

static void check_refused(const char *split) {
  DatasetSplit s;
  memset(&s, 0x5a, sizeof s);
  fuzz_h5_mark();
  FUZZ_CHECK(dataset_split_read(&s, PATH, split, 0, DATASET_ALL_ROWS) != 0,
             "/%s: dataset_split_read accepts a split dataset_info refuses", split);
  fuzz_h5_check("dataset_split_read");
  FUZZ_CHECK(zeroed(&s, sizeof s), "/%s: a failed dataset_split_read left the split non-zero", split);
}

static void check_labels(const DatasetInfo *in, const int32_t *lab, int64_t n, const char *split) {
  int lo = INT_MAX, hi = -1, distinct = 0;
  uint8_t *seen = calloc((size_t)in->n_classes, 1);
  FUZZ_CHECK(seen, "out of memory");
  for (int64_t i = 0; i < n; i++) {
    FUZZ_CHECK(lab[i] >= 0 && lab[i] < in->n_classes, "/%s: label %d of row %lld outside [0, %d) was accepted", split,
               (int)lab[i], (long long)i, in->n_classes);
    if (!seen[lab[i]]) { seen[lab[i]] = 1; distinct++; }
    if (lab[i] < lo) lo = lab[i];
    if (lab[i] > hi) hi = lab[i];
  }
  free(seen);
  FUZZ_CHECK(lo == in->label_min && hi == in->label_max && distinct == in->n_distinct,
             "/%s: dataset_info says labels %d..%d, %d distinct; they are %d..%d, %d distinct", split, in->label_min,
             in->label_max, in->n_distinct, lo, hi, distinct);
}

static void check_split(FuzzIn *in, const char *split) {
  DatasetInfo info;
  fuzz_h5_mark();
  int rc = dataset_info(PATH, split, &info);
  fuzz_h5_check("dataset_info");
  if (rc != 0) {
    check_refused(split);
    return;
  }
  FUZZ_CHECK(info.n >= 1 && info.n_classes >= 1 && info.row_size >= 1, "/%s: dataset_info accepted n = %lld, "
             "n_classes = %d, row_size = %d", split, (long long)info.n, info.n_classes, info.row_size);
  if (info.kind == DATASET_IMAGES)
    FUZZ_CHECK(info.F == 0 && info.H >= 1 && info.W >= 1 && info.channels >= 1 &&
               (int64_t)info.H * info.W * info.channels == info.row_size, "/%s: image shape %d x %d x %d, row_size %d",
               split, info.H, info.W, info.channels, info.row_size);
  else
    FUZZ_CHECK(info.kind == DATASET_FEATURES && info.F == info.row_size && info.H == 0, "/%s: feature shape F = %d, "
               "row_size %d", split, info.F, info.row_size);
  FUZZ_CHECK(info.n_distinct >= 1 && info.n_distinct <= info.n && info.n_distinct <= info.n_classes,
             "/%s: %d distinct labels in %lld rows", split, info.n_distinct, (long long)info.n);
  FUZZ_CHECK(info.n <= MAX_ROWS, "/%s: %lld rows, more than the recipe can make", split, (long long)info.n);

  int64_t n = info.n;
  int32_t *lab = malloc((size_t)n * sizeof *lab);
  FUZZ_CHECK(lab, "out of memory");
  fuzz_h5_mark();
  FUZZ_CHECK(dataset_labels_read(PATH, split, lab, n) == 0, "/%s: dataset_labels_read refuses what dataset_info "
             "accepts: %s", split, err_msg());
  fuzz_h5_check("dataset_labels_read");
  check_labels(&info, lab, n, split);

  size_t bytes = (size_t)n * (size_t)info.row_size * (info.kind == DATASET_IMAGES ? 1 : sizeof(float));
  if (bytes <= MAX_READ_BYTES) {
    const int64_t row0s[] = {0, 1, n - 1, n, n + 1, -1, 2};
    int64_t row0 = fuzz_pick(in, row0s, N_OF(row0s));
    const int64_t counts[] = {DATASET_ALL_ROWS, 0, 1, n, n - row0, 2, -2};
    int64_t nrows = fuzz_pick(in, counts, N_OF(counts));
    int in_range = row0 >= 0 && row0 <= n && (nrows == DATASET_ALL_ROWS || (nrows >= 0 && nrows <= n - row0));
    DatasetSplit s;
    fuzz_h5_mark();
    rc = dataset_split_read(&s, PATH, split, row0, nrows);
    fuzz_h5_check("dataset_split_read");
    FUZZ_CHECK(rc != 0 || in_range, "/%s: dataset_split_read accepts rows %lld + %lld of %lld", split, (long long)row0,
               (long long)nrows, (long long)n);
    if (rc != 0) {
      FUZZ_CHECK(zeroed(&s, sizeof s), "/%s: a failed dataset_split_read left the split non-zero", split);
    } else {
      int64_t want = nrows == DATASET_ALL_ROWS ? n - row0 : nrows;
      FUZZ_CHECK(s.row0 == row0 && s.nrows == want && !memcmp(&s.info, &info, sizeof info),
                 "/%s: dataset_split_read holds rows %lld + %lld, asked for %lld + %lld", split, (long long)s.row0,
                 (long long)s.nrows, (long long)row0, (long long)want);
      FUZZ_CHECK(!memcmp(s.labels, lab + row0, (size_t)want * sizeof *lab), "/%s: the split's labels differ from "
                 "dataset_labels_read's", split);
      FUZZ_CHECK(s.class_names && (info.kind == DATASET_IMAGES ? s.images != NULL : s.features != NULL),
                 "/%s: a read split misses its data", split);
      for (int c = 0; c < info.n_classes; c++) FUZZ_CHECK(s.class_names[c], "/%s: class name %d is NULL", split, c);
      int B = want < 4 ? (int)want : 4, idx[4];
      float *x = malloc((size_t)(B ? B : 1) * (size_t)info.row_size * sizeof *x);
      int32_t y[4];
      for (int b = 0; b < B; b++) idx[b] = (int)((int64_t)b * (want - 1) / (B > 1 ? B - 1 : 1));
      dataset_batch(x, y, &s, idx, B);
      for (int b = 0; b < B; b++) FUZZ_CHECK(y[b] == s.labels[idx[b]], "/%s: dataset_batch label", split);
      for (size_t i = 0; i < (size_t)B * (size_t)info.row_size; i++)
        FUZZ_CHECK(isfinite(x[i]) && (info.kind != DATASET_IMAGES || (x[i] >= 0 && x[i] <= 1)),
                   "/%s: dataset_batch gives %g", split, x[i]);
      free(x);
    }
    dataset_split_free(&s);
    FUZZ_CHECK(zeroed(&s, sizeof s), "dataset_split_free left the split non-zero");
  }
  free(lab);
}

static void setup(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  /* the target of external links: a valid file */
  hid_t f = H5Fcreate("other.h5", H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  FUZZ_CHECK(f >= 0, "cannot create other.h5");
  static const uint8_t ZERO[64];
  FuzzIn none = {ZERO, sizeof ZERO, 0};
  write_base(f, &none);
  H5Fclose(f);
}

static int run(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    setup();
    ready = 1;
  }
  FuzzIn in = {data, size, 0};
  /* in memory until closed: the core driver writes the file once, at the end */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, 1 << 16, 1);
  hid_t f = H5Fcreate(PATH, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  FUZZ_CHECK(f >= 0, "cannot create %s", PATH);
  write_base(f, &in);
  apply_edits(f, &in);
  if (H5Fclose(f) < 0) return -1;   /* a recipe HDF5 itself cannot write */
  ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  FUZZ_CHECK(open_ids == 0, "the harness left %zd HDF5 objects open", open_ids);
  for (int s = 0; s < 2; s++) check_split(&in, SPLITS[s]);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_enter();
  int rc = run(data, size);
  fuzz_leave();
  return rc;
}
