/* test_dataset.c: the dataset module. Small dataset files are written with
 * h5io into a fresh temp dir per test; every validation failure must return
 * -1 with a message naming the problem. The IDX converter runs on a tiny
 * gzipped IDX set written here with zlib (the real Fashion-MNIST is converted
 * by tests/integration/test_data.sh). */
#include "common.h"
#include "convert_fmnist.h"
#include "dataset.h"
#include "h5io.h"
#include "testutil.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* ---- a temp dir per test (Criterion runs each test in its own process) ---- */

static char g_dir[256];

static void tmpdir_init(void) {
  const char *t = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/pgml_dataset_XXXXXX", t && *t ? t : "/tmp");
  cr_assert(mkdtemp(g_dir), "mkdtemp failed");
}

static void tmpdir_free(void) {
  DIR *d = opendir(g_dir);
  if (!d) return;
  struct dirent *e;
  char p[512];
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
      snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
      unlink(p);
    }
  closedir(d);
  rmdir(g_dir);
}

TestSuite(dataset, .init = tmpdir_init, .fini = tmpdir_free);

static const char *tpath(const char *name) {
  static char buf[2][512];
  static int k;
  k ^= 1;
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
  return buf[k];
}

#define EXPECT_ERR(call, substr)                                                                  \
  do {                                                                                            \
    int rc_ = (call);                                                                             \
    cr_assert_eq(rc_, -1, "%s returned %d, expected -1", #call, rc_);                             \
    cr_assert(strstr(err_msg(), substr), "message '%s' does not mention '%s'", err_msg(), substr); \
  } while (0)

/* ---- writing small dataset files ---------------------------------------------- */

enum { N = 7, H = 3, W = 2, C = 3, F = 5, NC = 4 };

/* what a split gets; each field can be broken on purpose */
typedef struct {
  int n;              /* rows in images/features */
  int n_labels;       /* rows in labels */
  int features;       /* 1: features n x F, 0: images n x H x W x C */
  int both;           /* write images and features */
  int neither;        /* write neither */
  int bad_label;      /* label of row 3 */
  float bad_feature;  /* value of features[2][1] if nonzero */
  int n_names;        /* entries of class_names */
} Spec;

static Spec good(void) { return (Spec){N, N, 0, 0, 0, 2, 0.0f, NC}; }

static int32_t label_of(int r) { return r == 3 ? 2 : r % 3; }   /* good(): row 3 holds bad_label = 2 */
static uint8_t pixel(int r, int h, int w, int c) { return (uint8_t)(r * 31 + h * 7 + w * 3 + c * 101); }
static float feature(int r, int j) { return (float)r + 0.125f * (float)j; }

static void write_split(hid_t f, const char *split, Spec s) {
  hid_t g = H5Gcreate2(f, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  cr_assert(g >= 0);
  if ((!s.features || s.both) && !s.neither) {
    uint8_t *img = xmalloc((size_t)s.n * H * W * C + 1);   /* n x H x W x C */
    for (int r = 0; r < s.n; r++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++)
          for (int c = 0; c < C; c++) img[((r * H + h) * W + w) * C + c] = pixel(r, h, w, c);
    int64_t d[4] = {s.n, H, W, C};
    cr_assert_eq(h5io_write(g, "images", H5T_NATIVE_UINT8, 4, d, img), 0, "%s", err_msg());
    free(img);
  }
  if ((s.features || s.both) && !s.neither) {
    float *x = xmalloc_f32((size_t)s.n * F + 1);   /* n x F */
    for (int r = 0; r < s.n; r++)
      for (int j = 0; j < F; j++) x[r * F + j] = feature(r, j);
    if (s.bad_feature != 0.0f) x[2 * F + 1] = s.bad_feature;
    int64_t d[2] = {s.n, F};
    cr_assert_eq(h5io_write(g, "features", H5T_NATIVE_FLOAT, 2, d, x), 0, "%s", err_msg());
    free(x);
  }
  int32_t lab[64];   /* n_labels */
  for (int r = 0; r < s.n_labels; r++) lab[r] = r % 3;   /* classes 0..2 of NC = 4 */
  if (s.n_labels > 3) lab[3] = s.bad_label;
  int64_t dl[1] = {s.n_labels};
  cr_assert_eq(h5io_write(g, "labels", H5T_NATIVE_INT32, 1, dl, lab), 0, "%s", err_msg());
  const char *names[8] = {"zero", "one", "two", "three", "four", "five", "six", "seven"};
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, H5T_VARIABLE);
  int64_t dn[1] = {s.n_names};
  cr_assert_eq(h5io_write(g, "class_names", st, 1, dn, names), 0, "%s", err_msg());
  H5Tclose(st);
  H5Gclose(g);
}

/* a file with /train = tr and /test = te (te.n < 0: no /test) */
static const char *write_file(const char *name, Spec tr, Spec te, int with_n_classes) {
  const char *p = tpath(name);
  hid_t f;
  cr_assert_eq(h5io_create(p, &f), 0, "%s", err_msg());
  if (with_n_classes) cr_assert_eq(h5io_set_attr_i64(f, "n_classes", NC), 0);
  h5io_set_attr_i64(f, "format_version", 1);
  write_split(f, "train", tr);
  if (te.n >= 0) write_split(f, "test", te);
  H5Fclose(f);
  return p;
}

/* ---- reads of good files -------------------------------------------------------- */

Test(dataset, info_of_an_image_split) {
  const char *p = write_file("a.h5", good(), good(), 1);
  DatasetInfo in;
  cr_assert_eq(dataset_info(p, "train", &in), 0, "%s", err_msg());
  cr_assert_eq(in.kind, DATASET_IMAGES);
  cr_assert_eq(in.n, N);
  cr_assert(in.H == H && in.W == W && in.channels == C && in.F == 0);
  cr_assert_eq(in.row_size, H * W * C);
  cr_assert_eq(in.n_classes, NC);
  cr_assert_eq(in.n_distinct, 3);
  cr_assert(in.label_min == 0 && in.label_max == 2);
}

Test(dataset, row_range_read_returns_those_rows) {
  const char *p = write_file("a.h5", good(), good(), 1);
  DatasetSplit s;
  cr_assert_eq(dataset_split_read(&s, p, "test", 2, 3), 0, "%s", err_msg());
  cr_assert(s.row0 == 2 && s.nrows == 3 && s.features == NULL);
  for (int r = 0; r < 3; r++) {
    cr_assert_eq(s.labels[r], label_of(r + 2));
    for (int h = 0; h < H; h++)
      for (int w = 0; w < W; w++)
        for (int c = 0; c < C; c++)
          cr_assert_eq(s.images[((r * H + h) * W + w) * C + c], pixel(r + 2, h, w, c), "row %d", r + 2);
  }
  cr_assert_str_eq(s.class_names[3], "three");
  dataset_split_free(&s);
  cr_assert(s.images == NULL && s.labels == NULL && s.class_names == NULL);
  dataset_split_free(&s);   /* safe twice */

  cr_assert_eq(dataset_split_read(&s, p, "train", 5, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(s.nrows, N - 5);
  cr_assert_eq(s.images[0], pixel(5, 0, 0, 0));
  dataset_split_free(&s);
  cr_assert_eq(dataset_split_read(&s, p, "train", N, 0), 0, "%s", err_msg());   /* a rank without rows */
  cr_assert_eq(s.nrows, 0);
  dataset_split_free(&s);
}

Test(dataset, batch_is_nchw_over_255) {
  const char *p = write_file("a.h5", good(), good(), 1);
  DatasetSplit s;
  cr_assert_eq(dataset_split_read(&s, p, "train", 1, 4), 0, "%s", err_msg());
  int idx[3] = {3, 0, 2};   /* local rows: file rows 4, 1, 3 */
  float x[3 * C * H * W];   /* 3 x C x H x W */
  int32_t y[3];
  dataset_batch(x, y, &s, idx, 3);
  for (int b = 0; b < 3; b++) {
    int r = 1 + idx[b];
    cr_assert_eq(y[b], label_of(r));
    for (int c = 0; c < C; c++)
      for (int h = 0; h < H; h++)
        for (int w = 0; w < W; w++) {
          float want = (float)pixel(r, h, w, c) / 255.0f;
          cr_assert_eq(x[((b * C + c) * H + h) * W + w], want, "b %d c %d h %d w %d", b, c, h, w);
        }
  }
  dataset_batch(x, NULL, &s, idx, 1);   /* y optional */
  dataset_split_free(&s);
}

Test(dataset, feature_split_reads_and_copies) {
  Spec fs = good();
  fs.features = 1;
  const char *p = write_file("f.h5", fs, fs, 1);
  DatasetInfo in;
  cr_assert_eq(dataset_info(p, "test", &in), 0, "%s", err_msg());
  cr_assert(in.kind == DATASET_FEATURES && in.F == F && in.row_size == F && in.H == 0);
  DatasetSplit s;
  cr_assert_eq(dataset_split_read(&s, p, "test", 3, 4), 0, "%s", err_msg());
  cr_assert(s.images == NULL);
  int idx[2] = {1, 3};
  float x[2 * F];   /* 2 x F */
  dataset_batch(x, NULL, &s, idx, 2);
  for (int b = 0; b < 2; b++)
    for (int j = 0; j < F; j++) cr_assert_eq(x[b * F + j], feature(3 + idx[b], j));
  dataset_split_free(&s);
}

Test(dataset, labels_read_gets_all_labels) {
  const char *p = write_file("a.h5", good(), good(), 1);
  int32_t lab[N];
  cr_assert_eq(dataset_labels_read(p, "train", lab, N), 0, "%s", err_msg());
  cr_assert(lab[0] == 0 && lab[1] == 1 && lab[3] == 2 && lab[5] == 2);
  EXPECT_ERR(dataset_labels_read(p, "train", lab, N - 1), "rows");
}

/* ---- validation ------------------------------------------------------------------ */

Test(dataset, missing_group) {
  Spec none = good();
  none.n = -1;
  const char *p = write_file("a.h5", good(), none, 1);
  DatasetInfo in;
  EXPECT_ERR(dataset_info(p, "test", &in), "'/test' is missing");
  cr_assert(strstr(err_msg(), "a.h5"));
  EXPECT_ERR(dataset_info(p, "valid", &in), "unknown split");
}

Test(dataset, label_out_of_range) {
  Spec s = good();
  s.bad_label = NC;
  const char *p = write_file("a.h5", good(), s, 1);
  DatasetInfo in;
  EXPECT_ERR(dataset_info(p, "test", &in), "/test/labels: row 3 has label 4, outside [0, 4)");
  s.bad_label = -1;
  p = write_file("b.h5", s, good(), 1);
  EXPECT_ERR(dataset_info(p, "train", &in), "label -1");
  DatasetSplit sp;
  EXPECT_ERR(dataset_split_read(&sp, p, "train", 0, 2), "outside");   /* even when row 3 is not read */
  cr_assert(sp.labels == NULL);
}

Test(dataset, nan_and_inf_features) {
  Spec s = good();
  s.features = 1;
  s.bad_feature = NAN;
  const char *p = write_file("a.h5", s, good(), 1);
  DatasetInfo in;
  cr_assert_eq(dataset_info(p, "train", &in), 0, "info does not read the features: %s", err_msg());
  DatasetSplit sp;
  EXPECT_ERR(dataset_split_read(&sp, p, "train", 0, DATASET_ALL_ROWS), "/train/features: row 2, column 1 is NaN");
  cr_assert(sp.features == NULL && sp.labels == NULL);
  cr_assert_eq(dataset_split_read(&sp, p, "train", 3, 2), 0, "rows without the NaN are fine: %s", err_msg());
  dataset_split_free(&sp);
  s.bad_feature = -INFINITY;
  p = write_file("b.h5", s, good(), 1);
  EXPECT_ERR(dataset_split_read(&sp, p, "train", 1, 3), "row 2, column 1 is infinite");
}

Test(dataset, empty_split) {
  Spec s = good();
  s.n = s.n_labels = 0;
  const char *p = write_file("a.h5", good(), s, 1);
  DatasetInfo in;
  EXPECT_ERR(dataset_info(p, "test", &in), "/test is empty");
}

Test(dataset, length_mismatch) {
  Spec s = good();
  s.n_labels = N - 1;
  const char *p = write_file("a.h5", s, good(), 1);
  DatasetInfo in;
  EXPECT_ERR(dataset_info(p, "train", &in), "/train/labels has 6 rows but images has 7");
  s = good();
  s.n_names = NC + 1;
  p = write_file("b.h5", s, good(), 1);
  EXPECT_ERR(dataset_info(p, "train", &in), "class_names has 5 entries but n_classes = 4");
}

Test(dataset, images_xor_features) {
  Spec s = good();
  s.both = 1;
  const char *p = write_file("a.h5", s, good(), 1);
  DatasetInfo in;
  EXPECT_ERR(dataset_info(p, "train", &in), "both 'images' and 'features'");
  s = good();
  s.neither = 1;
  p = write_file("b.h5", s, good(), 1);
  EXPECT_ERR(dataset_info(p, "train", &in), "neither 'images' nor 'features'");
}

Test(dataset, missing_n_classes) {
  const char *p = write_file("a.h5", good(), good(), 0);
  DatasetInfo in;
  EXPECT_ERR(dataset_info(p, "train", &in), "'n_classes' is missing");
}

Test(dataset, corrupt_and_missing_files) {
  const char *p = tpath("junk.h5");
  FILE *fp = fopen(p, "wb");
  cr_assert(fp);
  unsigned s = 12345;
  for (int i = 0; i < 4096; i++) {
    s = s * 1103515245u + 12345u;
    fputc((int)(s >> 16) & 255, fp);
  }
  fclose(fp);
  DatasetInfo in;
  /* each says which of missing, not HDF5, truncated it is */
  EXPECT_ERR(dataset_info(p, "train", &in), "junk.h5: not an HDF5 file");
  EXPECT_ERR(dataset_info(tpath("nope.h5"), "train", &in), "nope.h5: no such file");
  const char *good_file = write_file("good.h5", good(), good(), 1);
  FILE *src = fopen(good_file, "rb");
  cr_assert(src);
  char buf[2048];
  size_t n = fread(buf, 1, sizeof buf, src);
  fclose(src);
  const char *cut = tpath("cut.h5");
  fp = fopen(cut, "wb");
  cr_assert(fp && n == sizeof buf);
  fwrite(buf, 1, n, fp);   /* the header, without the data behind it */
  fclose(fp);
  EXPECT_ERR(dataset_info(cut, "train", &in), "cut.h5: truncated HDF5 file (2048 bytes");
  EXPECT_ERR(dataset_info(tpath(""), "train", &in), "is a directory");
}

Test(dataset, rows_out_of_range) {
  const char *p = write_file("a.h5", good(), good(), 1);
  DatasetSplit s;
  EXPECT_ERR(dataset_split_read(&s, p, "train", 5, 3), "rows [5, 8) are outside [0, 7)");
  EXPECT_ERR(dataset_split_read(&s, p, "train", -1, 2), "outside");
}

/* ---- the IDX converter on a tiny gzipped set ---------------------------------------- */

enum { IH = 4, IW = 3 };

static uint8_t ipix(int split, int r, int j) { return (uint8_t)(split * 100 + r * 5 + j); }

/* n images IH x IW with labels r % 10; magic/trunc break the file on purpose */
static void write_idx(const char *prefix, int split, int n, uint32_t img_magic, int truncate_by, int n_labels) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", g_dir, prefix);
  gzFile gz = gzopen(p, "wb");
  cr_assert(gz);
  unsigned char hdr[16];
  uint32_t v[4] = {img_magic, (uint32_t)n, IH, IW};
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < 4; k++) hdr[4 * i + k] = (unsigned char)(v[i] >> (24 - 8 * k));
  gzwrite(gz, hdr, 16);
  int bytes = n * IH * IW - truncate_by;
  for (int b = 0; b < bytes; b++) {
    uint8_t px = ipix(split, b / (IH * IW), b % (IH * IW));
    gzwrite(gz, &px, 1);
  }
  gzclose(gz);
  snprintf(p, sizeof p, "%s/%s-labels-idx1-ubyte.gz", g_dir, prefix);
  gz = gzopen(p, "wb");
  uint32_t lv[2] = {0x801, (uint32_t)n_labels};
  for (int i = 0; i < 2; i++)
    for (int k = 0; k < 4; k++) hdr[4 * i + k] = (unsigned char)(lv[i] >> (24 - 8 * k));
  gzwrite(gz, hdr, 8);
  for (int r = 0; r < n_labels; r++) {
    uint8_t l = (uint8_t)(r % 10);
    gzwrite(gz, &l, 1);
  }
  gzclose(gz);
}

static void write_idx_set(void) {
  write_idx("train", 0, 20, 0x803, 0, 20);
  write_idx("t10k", 1, 13, 0x803, 0, 13);
}

Test(dataset, convert_seen) {
  write_idx_set();
  const char *out = tpath("fm.h5");
  cr_assert_eq(convert_fmnist_write(out, g_dir, CONVERT_FMNIST_SEEN), 0, "%s", err_msg());
  DatasetInfo in;
  cr_assert_eq(dataset_info(out, "train", &in), 0, "%s", err_msg());
  cr_assert(in.n == 20 && in.H == IH && in.W == IW && in.channels == 1 && in.n_classes == 10 && in.n_distinct == 10);
  DatasetSplit s;
  cr_assert_eq(dataset_split_read(&s, out, "test", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert(s.nrows == 13 && s.info.label_min == 0 && s.info.label_max == 9);
  for (int r = 0; r < 13; r++) {
    cr_assert_eq(s.labels[r], r % 10);
    for (int j = 0; j < IH * IW; j++) cr_assert_eq(s.images[r * IH * IW + j], ipix(1, r, j));
  }
  cr_assert_str_eq(s.class_names[0], "T-shirt/top");
  cr_assert_str_eq(s.class_names[9], "Ankle boot");
  dataset_split_free(&s);
  hid_t f;
  char buf[64];
  cr_assert_eq(h5io_open(out, &f), 0);
  cr_assert_eq(h5io_attr_str(f, "protocol", buf, sizeof buf), 0);
  cr_assert_str_eq(buf, "seen");
  H5Fclose(f);
}

Test(dataset, convert_zeroshot_keeps_global_ids) {
  write_idx_set();
  const char *out = tpath("fm.h5");
  cr_assert_eq(convert_fmnist_write(out, g_dir, CONVERT_FMNIST_ZEROSHOT), 0, "%s", err_msg());
  DatasetSplit tr, te;
  cr_assert_eq(dataset_split_read(&tr, out, "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&te, out, "test", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(tr.nrows, 10);   /* rows 0-4 and 10-14 of 20 */
  cr_assert_eq(te.nrows, 5);    /* rows 5-9 of 13 (labels r % 10) */
  cr_assert(tr.info.label_min == 0 && tr.info.label_max == 4 && tr.info.n_distinct == 5);
  cr_assert(te.info.label_min == 5 && te.info.label_max == 9 && te.info.n_classes == 10);
  int want_tr[10] = {0, 1, 2, 3, 4, 10, 11, 12, 13, 14};
  for (int k = 0; k < 10; k++) {
    cr_assert_eq(tr.labels[k], want_tr[k] % 10);
    cr_assert_eq(tr.images[k * IH * IW + 1], ipix(0, want_tr[k], 1));
  }
  cr_assert_eq(te.labels[0], 5);
  cr_assert_eq(te.images[0], ipix(1, 5, 0));
  dataset_split_free(&tr);
  dataset_split_free(&te);
}

static int count_tmp_files(void) {
  DIR *d = opendir(g_dir);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
  closedir(d);
  return n;
}

/* a failed conversion leaves the old file alone and no temp file behind */
static void expect_convert_fails(const char *dir, const char *substr) {
  const char *out = tpath("keep.h5");
  FILE *fp = fopen(out, "w");
  fputs("previous good file", fp);
  fclose(fp);
  EXPECT_ERR(convert_fmnist_write(out, dir, CONVERT_FMNIST_SEEN), substr);
  char buf[64] = {0};
  fp = fopen(out, "r");
  cr_assert(fgets(buf, sizeof buf, fp));
  fclose(fp);
  cr_assert_str_eq(buf, "previous good file");
  cr_assert_eq(count_tmp_files(), 0);
}

Test(dataset, convert_missing_dir_and_file) {
  expect_convert_fails(tpath("no-such-dir"), "no such directory");
  write_idx("train", 0, 20, 0x803, 0, 20);   /* no t10k files */
  expect_convert_fails(g_dir, "t10k-images-idx3-ubyte.gz: cannot open");
}

Test(dataset, convert_bad_magic) {
  write_idx_set();
  write_idx("t10k", 1, 13, 0x801, 0, 13);
  expect_convert_fails(g_dir, "bad magic 0x00000801, expected 0x00000803");
}

Test(dataset, convert_truncated) {
  write_idx_set();
  write_idx("train", 0, 20, 0x803, 7, 20);
  expect_convert_fails(g_dir, "truncated: 233 of 240 bytes");
}

Test(dataset, convert_count_mismatch) {
  write_idx_set();
  write_idx("train", 0, 20, 0x803, 0, 19);
  expect_convert_fails(g_dir, "19 labels but");
}

Test(dataset, convert_output_directory) {
  write_idx_set();
  /* a directory that does not exist yet is made (data/ of a fresh checkout) */
  char out[512];
  snprintf(out, sizeof out, "%s", tpath("new-dir/x.h5"));
  cr_assert_eq(convert_fmnist_write(out, g_dir, CONVERT_FMNIST_SEEN), 0, "%s", err_msg());
  cr_assert_eq(access(out, F_OK), 0, "no %s", out);
  unlink(out);
  rmdir(tpath("new-dir"));
  /* one that cannot be made is an error naming it */
  FILE *f = fopen(tpath("plain"), "w");
  cr_assert(f);
  fclose(f);
  EXPECT_ERR(convert_fmnist_write(tpath("plain/x.h5"), g_dir, CONVERT_FMNIST_SEEN),
             "cannot create directory");
  cr_assert(strstr(err_msg(), "plain': a file is in the way"), "%s", err_msg());
}
