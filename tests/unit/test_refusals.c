/* test_refusals.c: the refusals of the library functions that no command
 * line reaches with a user's input: the CHECKs that guard kernel
 * preconditions and allocation (docs/contributing.md 3.1: one line
 * "[rank 0] file:line: message", exit 1 without MPI), and the status returns
 * of h5io, fsutil and the dataset writer on arguments the converters never
 * pass. Each case asserts its own message. */
#include "common.h"
#include "convert_glyphs.h"
#include "convert_images.h"
#include "dataset_writer.h"
#include "fsutil.h"
#include "glyphs.h"
#include "h5io.h"
#include "imageio.h"
#include "loss.h"
#include "metrics.h"
#include "optim.h"
#include "proxygml.h"
#include "proxyshard.h"
#include "recorder.h"
#include "reducer.h"
#include "runfile.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs fn in a child with stderr captured: it must exit with status 1 after
 * exactly one line that starts "[rank 0] " and contains `want`. */
static void expect_check(void (*fn)(void), const char *want) {
  int p[2];
  cr_assert_eq(pipe(p), 0);
  fflush(NULL);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    dup2(p[1], 2);
    close(p[0]);
    fn();
    _exit(0);   /* the check did not fire */
  }
  close(p[1]);
  char buf[2048];
  size_t len = 0;
  ssize_t r;
  while (len < sizeof buf - 1 && (r = read(p[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)r;
  buf[len] = 0;
  close(p[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "want exit 1 with '%s'; status %#x, stderr: %s", want, st, buf);
  cr_assert(!strncmp(buf, "[rank 0] ", 9) && strstr(buf, want), "want '%s', got: %s", want, buf);
  cr_assert(len > 0 && strchr(buf, '\n') == buf + len - 1, "want one line, got: %s", buf);
}

/* ------------------------------------------------------------ metrics */

static const float EMB[6] = {1, 0, 0, 1, 1, 1};   /* 3 x 2 */
static const int LAB[3] = {0, 1, 0};

static void knn_init_d0(void) { MetricsKnn w; metrics_knn_init(&w, 0, 1, 8, 8); }
static void knn_range(void) {
  MetricsKnn w;
  int knn[8];
  metrics_knn_init(&w, 2, 1, 8, 8);
  metrics_knn(knn, &w, EMB, 3, 2, 5);
}
static void knn_depth(void) {
  MetricsKnn w;
  int knn[8];
  metrics_knn_init(&w, 2, 5, 8, 8);
  metrics_knn(knn, &w, EMB, 3, 0, 1);
}
static void knn_ref_sizes(void) { int knn[8]; metrics_knn_ref(knn, EMB, 3, 2, 0, 1, 3); }
static void knn_nan(void) {   /* a NaN row: its query has no neighbour to compare */
  const float emb[6] = {NAN, 0, 0, 1, 1, 1};
  MetricsKnn w;
  int knn[8];
  metrics_knn_init(&w, 2, 1, 8, 8);
  metrics_knn(knn, &w, emb, 3, 0, 1);
}

Test(refusals, metrics_knn_preconditions) {
  expect_check(knn_init_d0, "metrics_knn_init: D = 0, depth = 1");
  expect_check(knn_range, "metrics_knn: query range [2, 5) outside [0, 3)");
  expect_check(knn_depth, "metrics_knn: depth 5 > n - 1 = 2");
  expect_check(knn_ref_sizes, "metrics_knn_ref: bad sizes");
  expect_check(knn_nan, "metrics_knn: query 0 has fewer neighbours to compare than the 1 asked (NaN in the embeddings)");
}

static const int KS[2] = {1, 2};
static void eval_n1(void) { MetricsEval e; metrics_eval_init(&e, LAB, 1, 2, KS, 1, 8, 8); }
static void eval_nk0(void) { MetricsEval e; metrics_eval_init(&e, LAB, 3, 2, KS, 0, 8, 8); }
static void eval_k0(void) {
  const int ks[1] = {0};
  MetricsEval e;
  metrics_eval_init(&e, LAB, 3, 2, ks, 1, 8, 8);
}
static void sums_nk0(void) { MetricsSums s; metrics_sums_reset(&s, KS, 0); }
static void sums_other_ks(void) {
  MetricsEval e;
  MetricsSums s;
  metrics_eval_init(&e, LAB, 3, 2, KS, 2, 8, 8);
  metrics_sums_reset(&s, KS, 1);
  metrics_sums_add_range(&s, &e, EMB, LAB, 0, 3);
}
static void merge_other_ks(void) {
  MetricsSums a, b;
  metrics_sums_reset(&a, KS, 1);
  metrics_sums_reset(&b, KS, 2);
  metrics_sums_merge(&a, &b);
}

Test(refusals, metrics_eval_preconditions) {
  expect_check(eval_n1, "metrics_eval_init: n = 1, D = 2 (need n >= 2)");
  expect_check(eval_nk0, "metrics_eval_init: 0 ks (1..");
  expect_check(eval_k0, "metrics_eval_init: k = 0");
  expect_check(sums_nk0, "metrics_sums_reset: 0 ks (1..");
  expect_check(sums_other_ks, "metrics_sums_add_range: sums and eval have different ks");
  expect_check(merge_other_ks, "metrics_sums_merge: different ks");
}

static void kmeans_k(void) {
  int assign[3];
  float c[8];
  double inertia;
  MetricsKmeansOpts o = metrics_kmeans_defaults();
  metrics_kmeans(assign, c, &inertia, EMB, 3, 2, 4, &o);
}
static void kmeans_restarts(void) {
  int assign[3];
  float c[8];
  double inertia;
  MetricsKmeansOpts o = metrics_kmeans_defaults();
  o.restarts = 0;
  metrics_kmeans(assign, c, &inertia, EMB, 3, 2, 2, &o);
}

Test(refusals, metrics_kmeans_preconditions) {
  expect_check(kmeans_k, "metrics_kmeans: n = 3, D = 2, k = 4");
  expect_check(kmeans_restarts, "metrics_kmeans: restarts 0, max_iter 300");
}

/* ------------------------------------------------ optimizer, loss, recorder */

static void adam_range(void) {
  Adam o;
  adam_init(&o, 10, 0.9, 0.999, 1e-8, 0);
  adam_add_group(&o, 4, 11, 1e-3);
}
static void adam_overlap(void) {
  Adam o;
  adam_init(&o, 10, 0.9, 0.999, 1e-8, 0);
  adam_add_group(&o, 0, 5, 1e-3);
  adam_add_group(&o, 4, 10, 1e-3);
}
static void adam_groups(void) {
  Adam o;
  adam_init(&o, 10, 0.9, 0.999, 1e-8, 0);
  for (size_t g = 0; g <= OPTIM_MAX_GROUPS; g++) adam_add_group(&o, g, g + 1, 1e-3);
}

static void adam_shard_range(void) {
  Adam o;
  adam_init(&o, 10, 0.9, 0.999, 1e-8, 0);
  const OptimRange pieces[2] = {{0, 4}, {6, 12}};
  adam_shard(&o, pieces, 2);
}
/* the CHECK comes before the reducer is touched: no MPI needed */
static void reducer_stats(void) {
  Reducer r;
  memset(&r, 0, sizeof r);
  float grads[1], stats[REDUCER_MAX_STATS + 1];
  reducer_begin(&r, grads, stats, REDUCER_MAX_STATS + 1);
}

Test(refusals, adam_add_group_preconditions) {
  expect_check(adam_range, "adam_add_group: range [4, 11) outside [0, 10)");
  expect_check(adam_overlap, "adam_add_group: groups overlap");
  expect_check(adam_groups, "adam_add_group: more than 8 groups");
  expect_check(adam_shard_range, "adam_shard: piece [6, 12) outside [0, 10)");
  expect_check(reducer_stats, "reducer_begin: 9 stats");
}

static void loss_sizes(void) { ProxyGML l; proxygml_init(&l, 4, 0, 2, 2, 2, 0.3f, 10); }
static void loss_k(void) { ProxyGML l; proxygml_init(&l, 4, 2, 2, 2, 5, 0.3f, 10); }
static void loss_batch(void) {
  ProxyGML l;
  float x[10] = {0}, prox[8] = {1, 0, 0, 1, -1, 0, 0, -1};
  int y[5] = {0};
  proxygml_init(&l, 4, 2, 2, 2, 2, 0.3f, 10);
  proxygml_forward(&l, x, y, prox, 5);
}

Test(refusals, proxygml_preconditions) {
  expect_check(loss_sizes, "proxygml_init: bad sizes B=4 D=0 C=2 N=2");
  expect_check(loss_k, "proxygml_init: K=5 outside [1, C*N=4]");
  expect_check(loss_batch, "proxygml_forward: B=5 outside [1, 4]");
}

/* the CHECKs come before any MPI call: a Dist of 2 ranks without MPI */
static const Dist TWO_RANKS = {.rank = 0, .size = 2};
static void shard_batch(void) { ProxyShard s; proxyshard_init(&s, &TWO_RANKS, 5, 4, 6, 2, 3, 0, 1, 0); }
static void shard_classes(void) { ProxyShard s; proxyshard_init(&s, &TWO_RANKS, 4, 4, 1, 2, 1, 0, 1, 0); }
static void shard_k(void) { ProxyShard s; proxyshard_init(&s, &TWO_RANKS, 4, 4, 6, 2, 13, 0, 1, 0); }
static void shard_loss_kind(void) {
  Loss l;
  LossParams p = loss_defaults();
  p.kind = LOSS_PROXYNCA;
  loss_init_sharded(&l, &p, &TWO_RANKS, 4, 4, 6);
}

Test(refusals, proxyshard_preconditions) {
  expect_check(shard_batch, "proxyshard_init: the global batch 5 does not divide over 2 ranks");
  expect_check(shard_classes, "proxyshard_init: 1 classes cannot be sharded over 2 ranks");
  expect_check(shard_k, "proxyshard_init: bad sizes C=6 N=2 K=13 D=4");
  expect_check(shard_loss_kind, "loss_init_sharded: only ProxyGML shards its proxies");
}

static void baseline_sizes(void) {
  Baseline b;
  BaselineParams p = {.st_centers = 2};
  baseline_init(&b, BASELINE_SOFTTRIPLE, &p, 4, 0, 3);
}
static void baseline_batch(void) {
  Baseline b;
  BaselineParams p = {.nca_scale = 1};
  float x[8] = {0}, w[6] = {0};
  int y[4] = {0};
  baseline_init(&b, BASELINE_PROXYNCA, &p, 2, 2, 3);
  baseline_forward(&b, x, y, w, 3);
}
static void loss_kind_range(void) {
  Loss l;
  LossParams p = {.kind = LOSS_NKINDS};
  loss_init(&l, &p, 4, 2, 3);
}
static void loss_split_rank(void) {
  Loss l;
  LossParams p = {.kind = LOSS_NORMSOFTMAX, .base = {.ns_temperature = 0.05}};
  loss_init(&l, &p, 4, 2, 3);
  loss_set_split(&l, 8, 2, 2);
}

Test(refusals, baseline_and_loss_preconditions) {
  expect_check(baseline_sizes, "baseline_init: bad sizes B=4 D=0 C=3 k=2");
  expect_check(baseline_batch, "baseline_forward: B=3 outside [1, 2]");
  expect_check(loss_kind_range, "loss_init: bad kind 5");
  expect_check(loss_split_rank, "loss_set_split: rank 2 of 2");
}

static const char *const PHASES[1] = {"data"};
static void recorder_nk0(void) { Recorder r; recorder_init(&r, KS, 0, 4, PHASES, 1); }
static void recorder_step(void) {
  Recorder r;
  const float loss[3] = {1, 1, 0};
  recorder_init(&r, KS, 1, 4, PHASES, 1);
  recorder_trace(&r, 5, loss);
}
static void recorder_column(void) {
  Recorder r;
  recorder_init(&r, KS, 1, 4, PHASES, 1);
  recorder_get(&r, 0, "no_such_column");
}
static void runtable_cols(void) {
  RunTable t;
  runtable_init(&t, 0, PHASES);
}

Test(refusals, recorder_preconditions) {
  expect_check(recorder_nk0, "recorder_init: 0 ks, 1 phases");
  expect_check(recorder_step, "recorder_trace: step 5 beyond 4");
  expect_check(recorder_column, "recorder_get: no no_such_column in row 0");
  expect_check(runtable_cols, "runtable_init: 0 columns");
}

/* ------------------------------------------------------------ allocation */

/* sizes no allocator grants; volatile, or the compiler warns about the constant */
static volatile size_t g_huge = SIZE_MAX;
static void alloc_bytes(void) { free(xmalloc(g_huge)); }
static void alloc_array(void) { free(xcalloc(g_huge / 2, 4)); }
static void alloc_aligned(void) { free(xmalloc_f32(g_huge / 8)); }

/* a sanitizer reports such a request itself instead of returning NULL */
Test(refusals, allocation_failure_is_fatal) {
  if (getenv("PROXYGML_SANITIZE")) cr_skip_test("a sanitizer's allocator does not return NULL");
  expect_check(alloc_bytes, "out of memory allocating 18446744073709551615 bytes");
  expect_check(alloc_array, "out of memory allocating 9223372036854775807 x 4 bytes");
  expect_check(alloc_aligned, "out of memory allocating 9223372036854775804 bytes");
}

/* ------------------------------------------------------ files: status returns */

static char g_dir[256];

static void make_dir(void) {
  snprintf(g_dir, sizeof g_dir, "%s/refusals_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  cr_assert(mkdtemp(g_dir));
}
static void remove_dir(void) {
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (g_dir[0] && system(cmd) != 0) cr_log_warn("cannot remove %s", g_dir);
}
TestSuite(files, .init = make_dir, .fini = remove_dir);

static const char *in_dir(const char *name) {
  static char path[4][512];
  static int next;
  char *p = path[next++ % 4];
  snprintf(p, 512, "%s/%s", g_dir, name);
  return p;
}

#define EXPECT_ERR(call, want)                                                               \
  do {                                                                                       \
    cr_assert_eq((call), -1, "%s did not fail", #call);                                      \
    cr_assert(strstr(err_msg(), (want)), "%s: want '%s', got '%s'", #call, (want), err_msg()); \
  } while (0)

Test(files, fsutil_refusals) {
  char longname[5000];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  longname[0] = '/';
  EXPECT_ERR(fsutil_mkdir_p(longname), "directory name too long: '/aaaa");
  longname[4500] = '/';
  EXPECT_ERR(fsutil_mkdir_parent(longname), "path too long: '/aaaa");
  FILE *f = fopen(in_dir("plain"), "w");
  cr_assert(f);
  fclose(f);
  EXPECT_ERR(fsutil_mkdir_p(in_dir("plain/sub")), "/plain': a file is in the way");
  /* procfs makes no directories, not even for root */
  EXPECT_ERR(fsutil_mkdir_p("/proc/refusals/sub"), "cannot create directory '/proc/refusals': No such file");
  EXPECT_ERR(fsutil_commit(in_dir("missing.tmp"), in_dir("out")), "missing.tmp: cannot reopen to flush it");
  /* a rename onto a non-empty directory fails after the flush */
  cr_assert_eq(mkdir(in_dir("full"), 0777), 0);
  f = fopen(in_dir("full/x"), "w");
  cr_assert(f);
  fclose(f);
  f = fopen(in_dir("new.tmp"), "w");
  cr_assert(f);
  fclose(f);
  EXPECT_ERR(fsutil_commit(in_dir("new.tmp"), in_dir("full")), "cannot rename");
  cr_assert(access(in_dir("new.tmp"), F_OK) != 0, "the temp file of a failed commit is removed");
}

Test(files, h5io_refusals) {
  hid_t f;
  EXPECT_ERR(h5io_create(in_dir("nodir/x.h5"), &f), "x.h5: cannot create HDF5 file (directory missing");
  cr_assert_eq(h5io_create(in_dir("a.h5"), &f), 0);
  const int64_t dims[2] = {4, 2};
  const float v[8] = {0};
  cr_assert_eq(h5io_write(f, "x", H5T_NATIVE_FLOAT, 2, dims, v), 0);
  cr_assert_eq(h5io_set_attr_str(f, "s", "text"), 0);
  EXPECT_ERR(h5io_write_rows(f, "y", H5T_NATIVE_FLOAT, 2, dims, 3, 2, v), "dataset 'y': rows [3, 5) out of range");
  float out[8];
  EXPECT_ERR(h5io_read_rows(f, "x", H5T_NATIVE_FLOAT, 2, 3, out), "dataset 'x': rows [2, 5) out of range");
  char text[16];
  EXPECT_ERR(h5io_attr_str(f, "absent", text, sizeof text), "attribute 'absent' is missing");
  /* 9 dimensions: more than any file of the project has */
  hsize_t d9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  hid_t s = H5Screate_simple(9, d9, NULL);
  hid_t d = H5Dcreate2(f, "deep", H5T_NATIVE_FLOAT, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  cr_assert_geq(d, 0);
  H5Dclose(d);
  H5Sclose(s);
  int nd;
  int64_t shape[H5IO_MAXDIM];
  EXPECT_ERR(h5io_shape(f, "deep", &nd, shape), "dataset 'deep' has an unsupported rank");
  /* strings do not convert to numbers */
  const char *strs[2] = {"a", "b"};
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, H5T_VARIABLE);
  hsize_t d2[1] = {2};
  s = H5Screate_simple(1, d2, NULL);
  d = H5Dcreate2(f, "names", st, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  cr_assert_geq(d, 0);
  H5Dwrite(d, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, strs);
  H5Dclose(d);
  H5Sclose(s);
  H5Tclose(st);
  EXPECT_ERR(h5io_read(f, "names", H5T_NATIVE_FLOAT, out, 2), "dataset 'names': read failed");
  H5Fclose(f);
}

Test(files, dataset_writer_refusals) {
  DatasetWriter w;
  const char *names[2] = {"a", "b"};
  char longpath[5000];
  memset(longpath, 'a', sizeof longpath - 1);
  longpath[sizeof longpath - 1] = 0;
  EXPECT_ERR(dataset_writer_init(&w, longpath, 2, names, "test"), "output path too long: 'aaaa");
  dataset_writer_free(&w);
  EXPECT_ERR(dataset_writer_init(&w, in_dir("d.h5"), 0, names, "test"), "d.h5: no classes to write");
  dataset_writer_free(&w);
  EXPECT_ERR(dataset_writer_init(&w, "/proc/d.h5", 2, names, "test"), "cannot create HDF5 file");
  dataset_writer_free(&w);

  cr_assert_eq(dataset_writer_init(&w, in_dir("d.h5"), 2, names, "test"), 0);
  EXPECT_ERR(dataset_writer_begin(&w, "valid", DATASET_FEATURES, 4, 0, 0), "unknown split 'valid' (expected train or test)");
  EXPECT_ERR(dataset_writer_begin(&w, "train", DATASET_IMAGES, 28, 0, 1), "/train: bad image shape 28 x 0 x 1");
  EXPECT_ERR(dataset_writer_begin(&w, "train", DATASET_FEATURES, 0, 0, 0), "/train: bad feature width 0");
  cr_assert_eq(dataset_writer_begin(&w, "train", DATASET_FEATURES, 2, 0, 0), 0, "%s", err_msg());
  const float rows[4] = {0};
  const int32_t labels[2] = {1, 2};
  EXPECT_ERR(dataset_writer_append(&w, rows, labels, 2), "label 2 of row 1 is outside [0, 2)");
  EXPECT_ERR(dataset_writer_end(&w), "d.h5: the split would be empty (no rows)");
  dataset_writer_free(&w);
  cr_assert(access(in_dir("d.h5"), F_OK) != 0, "a failed conversion leaves no output");
}

/* ------------------------------------------------ converters, fonts, PNG */

Test(files, imageio_png_refusals) {
  const uint8_t px[2 * 2 * 2] = {0};
  EXPECT_ERR(imageio_write_png(in_dir("a.png"), px, 2, 2, 2), "a.png: PNG writer takes 1 or 3 channels, got 2");
  EXPECT_ERR(imageio_write_png(in_dir("no/such/dir/a.png"), px, 2, 2, 1), "no/such/dir/a.png: cannot write PNG (");
}

/* the options the command line bounds before it calls the converters */
Test(files, converter_options) {
  /* a valid tree: ROOT/{train,test}/a/x.png */
  const uint8_t px[4 * 4] = {0};
  char dir[600];
  const char *sub[] = {"tree", "tree/train", "tree/train/a", "tree/test", "tree/test/a"};
  for (int i = 0; i < 5; i++) {
    snprintf(dir, sizeof dir, "%s/%s", g_dir, sub[i]);
    cr_assert_eq(mkdir(dir, 0755), 0);
  }
  cr_assert_eq(imageio_write_png(in_dir("tree/train/a/x.png"), px, 4, 4, 1), 0, "%s", err_msg());
  cr_assert_eq(imageio_write_png(in_dir("tree/test/a/y.png"), px, 4, 4, 1), 0, "%s", err_msg());
  ConvertImagesOpts io = {.size = 0};
  EXPECT_ERR(convert_images_folder(in_dir("f.h5"), in_dir("tree"), &io), "--size 0 is outside [1, 4096]");
  io.size = 5000;
  EXPECT_ERR(convert_images_folder(in_dir("f.h5"), in_dir("tree"), &io), "--size 5000 is outside [1, 4096]");
  cr_assert(access(in_dir("f.h5"), F_OK) != 0, "a refused conversion leaves no output");

  ConvertGlyphsOpts go = {.train_classes = 0, .test_classes = 1, .size = 32, .augment = 1};
  EXPECT_ERR(convert_glyphs_write(in_dir("g.h5"), &go), "--train-classes and --test-classes must be >= 1");
  go = (ConvertGlyphsOpts){.train_classes = 1, .test_classes = 1, .size = 32, .augment = 1001};
  EXPECT_ERR(convert_glyphs_write(in_dir("g.h5"), &go), "--augment 1001 is outside [1, 1000]");
  go = (ConvertGlyphsOpts){.train_classes = 1, .test_classes = 1, .size = 7, .augment = 1};
  EXPECT_ERR(convert_glyphs_write(in_dir("g.h5"), &go), "--size 7 is outside [8, 1024]");
}

/* glyphs on one CJK font that scripts/setup.sh installs (fonts-ipafont-gothic) */
Test(files, glyphs_refusals) {
  const char *font[1] = {"ipag.ttf"};
  Glyphs g;
  EXPECT_ERR(glyphs_init(&g, font, 1, GLYPHS_FONT_DIR, 4, 0), "glyph size 4 is outside [8, 1024]");
  cr_assert_eq(glyphs_init(&g, font, 1, GLYPHS_FONT_DIR, 16, 0), 0, "%s", err_msg());
  uint32_t *cps = NULL;
  int n = -1;
  EXPECT_ERR(glyphs_common(&g, 0x9FFF, 0x4E00, &cps, &n), "bad codepoint range U+9FFF..U+4E00");
  cr_assert(cps == NULL && n == 0);
  GlyphsAug aug = {0};
  aug.scale = 1;
  uint8_t out[16 * 16];
  EXPECT_ERR(glyphs_render(&g, 0, 0x10FFFF, &aug, out), "ipag.ttf#0: no glyph for U+10FFFF");
  cr_assert_eq(glyphs_render(&g, 0, 0x4E00, &aug, out), 0, "%s", err_msg());   /* the face itself renders */
  glyphs_free(&g);
}
