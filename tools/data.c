/* data.c: `proxygml data ...`: making dataset files with the converters of
 * the conversion library (include/convert_*.h) and `data info`, the
 * full validation of a file through the reader (include/dataset.h). Exit 0
 * ok, 2 bad arguments, invalid input or a failed write (one line on stderr). */
#include "tools.h"

#include "common.h"
#include "convert_features.h"
#include "convert_fmnist.h"
#include "convert_glyphs.h"
#include "convert_images.h"
#include "convert_synthetic.h"
#include "dataset.h"
#include "glyphs.h"
#include "h5io.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* strict decimal integer */
static int parse_i64(const char *s, int64_t *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (end == s || *end || errno) return -1;
  *v = x;
  return 0;
}

/* one line per converter, for the usage of `proxygml data` and its converters */
static void convert_usage(FILE *out) {
  fprintf(out,
          "       proxygml data folder ROOT OUT.h5 [--size S] [--on-error skip|fail]\n"
          "       proxygml data cub ROOT OUT.h5 [--size S] [--on-error skip|fail]\n"
          "       proxygml data cars ROOT OUT.h5 [--annos FILE.csv] [--size S] [--on-error skip|fail]\n"
          "       proxygml data sop ROOT OUT.h5 [--size S] [--on-error skip|fail]\n"
          "       proxygml data features OUT.h5 --train-x SRC --train-y SRC --test-x SRC --test-y SRC\n"
          "       proxygml data features OUT.h5 --h5 IN.h5 --x NAME --y NAME\n"
          "       proxygml data glyphs OUT.h5 [--train-classes 1000|all] [--test-classes 1000] [--size 32]\n"
          "                            [--augment 3] [--seed 0] [--fonts LIST] [--font-dir DIR]\n"
          "       proxygml data synthetic OUT.h5 --classes C [--dim 64] [--train-per-class 2]\n"
          "                            [--test-per-class 1] [--spread 0.5] [--seed 0]\n");
}

static void data_usage(FILE *out) {
  fprintf(out,
          "usage: proxygml data fashion-mnist OUT.h5 --protocol {seen,zeroshot} [--idx-dir DIR]\n"
          "       proxygml data info FILE.h5\n");
  convert_usage(out);
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
          "folder, cub, cars, sop, features, glyphs, synthetic: other datasets (proxygml data folder --help,\n"
          "               docs/datasets.md)\n"
          "\n"
          "exit status: 0 ok, 2 bad arguments, invalid input or a failed write (one line on stderr)\n",
          CONVERT_FMNIST_DEFAULT_DIR);
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
  ConvertFmnistProtocol p;
  if (!strcmp(proto, "seen")) p = CONVERT_FMNIST_SEEN;
  else if (!strcmp(proto, "zeroshot")) p = CONVERT_FMNIST_ZEROSHOT;
  else {
    fprintf(stderr, "proxygml data fashion-mnist: unknown protocol '%s' (seen or zeroshot)\n", proto);
    return 2;
  }
  if (!dir) dir = getenv("FMNIST_DIR");
  if (!dir || !*dir) dir = CONVERT_FMNIST_DEFAULT_DIR;

  double t0 = now_sec();
  if (convert_fmnist_write(out, dir, p) != 0) {
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

static void convert_help(FILE *out) {
  fprintf(out, "usage: ");
  convert_usage(out);
  fprintf(out,
          "\n"
          "folder    ROOT/train/<class>/*.jpg|png and ROOT/test/<class>/*: class names are the folder\n"
          "          names, ids = the train classes sorted, then the test-only classes sorted\n"
          "cub       CUB-200-2011: images.txt, image_class_labels.txt, [classes.txt], images/;\n"
          "          classes 1-100 -> /train, 101-200 -> /test, stored as ids 0-199\n"
          "cars      Cars196: a CSV/TXT export of cars_annos.mat with the columns relative_im_path,class\n"
          "          [,class_name] (default ROOT/cars_annos.csv; see docs/datasets.md);\n"
          "          classes 1-98 -> /train, 99-196 -> /test, ids 0-195\n"
          "sop       Stanford Online Products: Ebay_train.txt -> /train, Ebay_test.txt -> /test, id = class_id - 1\n"
          "  --size S            images are RGB S x S: shorter side resized to S, centre crop (default %d)\n"
          "  --on-error skip     report an undecodable image by path and leave it out (counted in the\n"
          "                      attribute n_skipped); fail (the default): stop, exit 2\n"
          "features  precomputed features. SRC is X.npy (float32/float64 2-d, int 1-d; little-endian, C order)\n"
          "          or FILE.h5:DATASET. --h5 IN.h5 --x NAME --y NAME reads IN.h5's /train/NAME and /test/NAME.\n"
          "          Labels are class ids (>= 0, global over both splits). --class-names FILE: line i names class i\n"
          "glyphs    CJK ideographs (U+4E00..U+9FFF) covered by every font face, rendered with FreeType in\n"
          "          grayscale S x S; each face x --augment seeded augmentations is a sample; the first\n"
          "          --train-classes characters of a seeded shuffle -> /train, the next --test-classes -> /test;\n"
          "          --train-classes all: every CJK Unified Ideographs block (extensions A-I too), /train = every\n"
          "          covered character but the --test-classes ones\n"
          "  --fonts LIST        comma-separated: paths or file names found under --font-dir (default %s),\n"
          "                      '#i' picks face i of a collection, else every face of the file counts;\n"
          "                      default: %s\n"
          "synthetic class-clustered float32 features: per class a random unit centre (seeded), rows =\n"
          "          centre + Gaussian noise of root mean square norm --spread; every class in both splits,\n"
          "          --train-per-class rows in /train, --test-per-class in /test; written in blocks of rows\n"
          "  --progress-every N  items between progress lines when stderr is not a terminal (0 = quiet)\n"
          "\n"
          "Every converter writes OUT.h5.tmp.<pid>, validates it and renames it: a failure leaves no OUT.h5.\n"
          "exit status: 0 ok, 2 bad arguments or invalid input (one line on stderr)\n",
          CONVERT_IMAGES_SIZE_DEFAULT, GLYPHS_FONT_DIR, GLYPHS_DEFAULT_FONTS);
}

typedef struct {
  const char *name;
  const char *value;   /* NULL = not given */
} Opt;

/* --name value / --name=value into opts; other arguments are positionals.
 * Returns 0, or the exit code (0 after --help, 2 on a bad argument). */
static int parse_args(const char *cmd, int argc, char **argv, Opt *opts, int nopts, const char **pos, int maxpos,
                      int *npos, int *done) {
  *npos = 0;
  *done = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      convert_help(stdout);
      *done = 1;
      return 0;
    }
    if (a[0] == '-' && a[1] == '-') {
      const char *eq = strchr(a, '=');
      size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
      int k;
      for (k = 0; k < nopts; k++)
        if (strlen(opts[k].name) == len && !strncmp(opts[k].name, a + 2, len)) break;
      if (k == nopts) {
        fprintf(stderr, "proxygml data %s: unknown option '%s' (see proxygml data %s --help)\n", cmd, a, cmd);
        *done = 1;
        return 2;
      }
      if (eq) opts[k].value = eq + 1;
      else if (i + 1 < argc) opts[k].value = argv[++i];
      else {
        fprintf(stderr, "proxygml data %s: %s needs a value\n", cmd, a);
        *done = 1;
        return 2;
      }
    } else if (*npos < maxpos) {
      pos[(*npos)++] = a;
    } else {
      fprintf(stderr, "proxygml data %s: unexpected argument '%s'\n", cmd, a);
      *done = 1;
      return 2;
    }
  }
  return 0;
}

static int opt_int(const char *cmd, const Opt *o, int lo, int hi, int dflt, int *out) {
  *out = dflt;
  if (!o->value) return 0;
  int64_t v;
  if (parse_i64(o->value, &v) != 0 || v < lo || v > hi) {
    if (lo == INT_MIN && hi == INT_MAX)   /* the range is the library's to check */
      fprintf(stderr, "proxygml data %s: --%s '%s' is not an integer\n", cmd, o->name, o->value);
    else
      fprintf(stderr, "proxygml data %s: --%s '%s' is not an integer in [%d, %d]\n", cmd, o->name, o->value, lo, hi);
    return -1;
  }
  *out = (int)v;
  return 0;
}

static int finish(const char *cmd, int rc, const char *out, double t0) {
  if (rc != 0) {
    fprintf(stderr, "proxygml data %s: %s\n", cmd, err_msg());
    return 2;
  }
  DatasetInfo a, b;
  if (dataset_info(out, "train", &a) != 0 || dataset_info(out, "test", &b) != 0) {
    fprintf(stderr, "proxygml data %s: %s\n", cmd, err_msg());
    return 2;
  }
  if (a.kind == DATASET_IMAGES)
    printf("wrote %s: /train %lld x %dx%dx%d (%d classes, ids %d-%d), /test %lld x %dx%dx%d (%d classes, ids %d-%d) "
           "in %.1f s\n",
           out, (long long)a.n, a.H, a.W, a.channels, a.n_distinct, a.label_min, a.label_max, (long long)b.n, b.H, b.W,
           b.channels, b.n_distinct, b.label_min, b.label_max, now_sec() - t0);
  else
    printf("wrote %s: /train %lld x %d features (%d classes, ids %d-%d), /test %lld x %d (%d classes, ids %d-%d) in "
           "%.1f s\n",
           out, (long long)a.n, a.F, a.n_distinct, a.label_min, a.label_max, (long long)b.n, b.F, b.n_distinct,
           b.label_min, b.label_max, now_sec() - t0);
  return 0;
}

static int cmd_images(const char *cmd, int argc, char **argv) {
  Opt opts[] = {{"size", NULL}, {"on-error", NULL}, {"progress-every", NULL}, {"annos", NULL}};
  int nopts = !strcmp(cmd, "cars") ? 4 : 3;
  const char *pos[2];
  int npos, done;
  int ex = parse_args(cmd, argc, argv, opts, nopts, pos, 2, &npos, &done);
  if (done) return ex;
  if (npos != 2) {
    fprintf(stderr, "proxygml data %s: ROOT and OUT.h5 are required (see proxygml data %s --help)\n", cmd, cmd);
    return 2;
  }
  ConvertImagesOpts o = {0};
  if (opt_int(cmd, &opts[0], 1, 4096, CONVERT_IMAGES_SIZE_DEFAULT, &o.size) != 0 ||
      opt_int(cmd, &opts[2], 0, INT_MAX, CONVERT_IMAGES_PROGRESS_EVERY, &o.progress_every) != 0)
    return 2;
  const char *oe = opts[1].value ? opts[1].value : "fail";
  if (!strcmp(oe, "skip")) o.on_error = CONVERT_IMAGES_ON_ERROR_SKIP;
  else if (!strcmp(oe, "fail")) o.on_error = CONVERT_IMAGES_ON_ERROR_FAIL;
  else {
    fprintf(stderr, "proxygml data %s: --on-error takes skip or fail, got '%s'\n", cmd, oe);
    return 2;
  }
  double t0 = now_sec();
  int rc;
  if (!strcmp(cmd, "folder")) rc = convert_images_folder(pos[1], pos[0], &o);
  else if (!strcmp(cmd, "cub")) rc = convert_images_cub(pos[1], pos[0], &o);
  else if (!strcmp(cmd, "cars")) rc = convert_images_cars(pos[1], pos[0], opts[3].value, &o);
  else rc = convert_images_sop(pos[1], pos[0], &o);
  return finish(cmd, rc, pos[1], t0);
}

static int cmd_features(int argc, char **argv) {
  Opt opts[] = {{"train-x", NULL}, {"train-y", NULL}, {"test-x", NULL}, {"test-y", NULL},
                {"h5", NULL},      {"x", NULL},       {"y", NULL},      {"class-names", NULL}};
  const char *pos[1];
  int npos, done;
  int ex = parse_args("features", argc, argv, opts, 8, pos, 1, &npos, &done);
  if (done) return ex;
  if (npos != 1) {
    fprintf(stderr, "proxygml data features: OUT.h5 is required (see proxygml data features --help)\n");
    return 2;
  }
  char spec[4][4200];
  ConvertFeaturesSources s = {opts[0].value, opts[1].value, opts[2].value, opts[3].value, opts[7].value};
  if (opts[4].value) {
    if (!opts[5].value || !opts[6].value) {
      fprintf(stderr, "proxygml data features: --h5 needs --x NAME and --y NAME\n");
      return 2;
    }
    if (s.train_x || s.train_y || s.test_x || s.test_y) {
      fprintf(stderr, "proxygml data features: give either --h5 with --x/--y, or the four --train-/--test- sources\n");
      return 2;
    }
    const char *nm[4] = {opts[5].value, opts[6].value, opts[5].value, opts[6].value};
    for (int i = 0; i < 4; i++)
      snprintf(spec[i], sizeof spec[i], "%s:/%s/%s", opts[4].value, i < 2 ? "train" : "test",
               nm[i][0] == '/' ? nm[i] + 1 : nm[i]);
    s.train_x = spec[0];
    s.train_y = spec[1];
    s.test_x = spec[2];
    s.test_y = spec[3];
  } else if (opts[5].value || opts[6].value) {
    fprintf(stderr, "proxygml data features: --x and --y go with --h5 IN.h5\n");
    return 2;
  }
  if (!s.train_x || !s.train_y || !s.test_x || !s.test_y) {
    fprintf(stderr, "proxygml data features: --train-x, --train-y, --test-x and --test-y are required (or --h5)\n");
    return 2;
  }
  double t0 = now_sec();
  return finish("features", convert_features_write(pos[0], &s), pos[0], t0);
}

static int cmd_glyphs(int argc, char **argv) {
  Opt opts[] = {{"train-classes", NULL}, {"test-classes", NULL}, {"size", NULL},     {"augment", NULL},
                {"seed", NULL},          {"fonts", NULL},        {"font-dir", NULL}, {"progress-every", NULL}};
  const char *pos[1];
  int npos, done;
  int ex = parse_args("glyphs", argc, argv, opts, 8, pos, 1, &npos, &done);
  if (done) return ex;
  if (npos != 1) {
    fprintf(stderr, "proxygml data glyphs: OUT.h5 is required (see proxygml data glyphs --help)\n");
    return 2;
  }
  ConvertGlyphsOpts o = {0};
  int seed;
  int all = opts[0].value && !strcmp(opts[0].value, "all");
  if ((!all && opt_int("glyphs", &opts[0], 1, 20992, 1000, &o.train_classes) != 0) ||
      opt_int("glyphs", &opts[1], 1, 20992, 1000, &o.test_classes) != 0 ||
      opt_int("glyphs", &opts[2], 8, 1024, 32, &o.size) != 0 || opt_int("glyphs", &opts[3], 1, 1000, 3, &o.augment) != 0 ||
      opt_int("glyphs", &opts[4], 0, INT_MAX, 0, &seed) != 0 ||
      opt_int("glyphs", &opts[7], 0, INT_MAX, 20000, &o.progress_every) != 0)
    return 2;
  if (all) o.train_classes = CONVERT_GLYPHS_ALL;
  o.seed = (uint64_t)seed;
  o.fonts = opts[5].value;
  o.font_dir = opts[6].value;
  double t0 = now_sec();
  return finish("glyphs", convert_glyphs_write(pos[0], &o), pos[0], t0);
}

/* a finite decimal number */
static int opt_f64(const char *cmd, const Opt *o, double dflt, double *out) {
  *out = dflt;
  if (!o->value) return 0;
  char *end;
  errno = 0;
  double v = strtod(o->value, &end);
  if (end == o->value || *end || errno || !isfinite(v)) {
    fprintf(stderr, "proxygml data %s: --%s '%s' is not a finite number\n", cmd, o->name, o->value);
    return -1;
  }
  *out = v;
  return 0;
}

static int cmd_synthetic(int argc, char **argv) {
  Opt opts[] = {{"classes", NULL}, {"dim", NULL},  {"train-per-class", NULL}, {"test-per-class", NULL},
                {"spread", NULL},  {"seed", NULL}, {"progress-every", NULL}};
  const char *pos[1] = {NULL};
  int npos, done;
  int ex = parse_args("synthetic", argc, argv, opts, 7, pos, 1, &npos, &done);
  if (done) return ex;
  if (npos != 1 || !opts[0].value) {
    fprintf(stderr, "proxygml data synthetic: %s is required (see proxygml data synthetic --help)\n",
            npos != 1 ? "OUT.h5" : "--classes");
    return 2;
  }
  /* the ranges are the library's to check (INT_MIN..INT_MAX here): one message for the command line and the API */
  ConvertSyntheticOpts o = {0};
  int seed;
  if (opt_int("synthetic", &opts[0], INT_MIN, INT_MAX, 0, &o.classes) != 0 ||
      opt_int("synthetic", &opts[1], INT_MIN, INT_MAX, 64, &o.dim) != 0 ||
      opt_int("synthetic", &opts[2], INT_MIN, INT_MAX, 2, &o.train_per_class) != 0 ||
      opt_int("synthetic", &opts[3], INT_MIN, INT_MAX, 1, &o.test_per_class) != 0 ||
      opt_f64("synthetic", &opts[4], 0.5, &o.spread) != 0 ||
      opt_int("synthetic", &opts[5], 0, INT_MAX, 0, &seed) != 0 ||
      opt_int("synthetic", &opts[6], 0, INT_MAX, 1000000, &o.progress_every) != 0)
    return 2;
  o.seed = (uint64_t)seed;
  double t0 = now_sec();
  return finish("synthetic", convert_synthetic_write(pos[0], &o), pos[0], t0);
}

/* argv[0] is the converter */
static int cmd_convert(int argc, char **argv) {
  const char *cmd = argv[0];
  if (!strcmp(cmd, "folder") || !strcmp(cmd, "cub") || !strcmp(cmd, "cars") || !strcmp(cmd, "sop"))
    return cmd_images(cmd, argc, argv);
  if (!strcmp(cmd, "features")) return cmd_features(argc, argv);
  if (!strcmp(cmd, "glyphs")) return cmd_glyphs(argc, argv);
  if (!strcmp(cmd, "synthetic")) return cmd_synthetic(argc, argv);
  fprintf(stderr, "proxygml data: unknown converter '%s'\n", cmd);
  return 2;
}

int tool_data(int argc, char **argv) {
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
      !strcmp(argv[1], "features") || !strcmp(argv[1], "glyphs") || !strcmp(argv[1], "synthetic"))
    return cmd_convert(argc - 1, argv + 1);
  fprintf(stderr, "proxygml data: unknown subcommand '%s'\n", argv[1]);
  data_usage(stderr);
  return 2;
}
