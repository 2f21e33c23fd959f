/* dataset_convert.c: the converters of include/dataset_convert.h
 * (Fashion-MNIST, image folders, CUB-200-2011, Cars196, Stanford Online
 * Products, precomputed features, rendered CJK glyphs). The file layout,
 * atomic write and validation are DatasetWriter's (src/dataset_writer.c);
 * decoding is imageio's, rendering glyphs'. */
#include "dataset_convert.h"

#include "common.h"
#include "config.h"
#include "dataset.h"
#include "dataset_writer.h"
#include "glyphs.h"
#include "h5io.h"
#include "imageio.h"
#include "rng.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_CLASSES (1 << 24)   /* the reader's limit on n_classes */

/* ---- small helpers ---------------------------------------------------------------- */

static char *xstrdup(const char *s) {
  char *d = strdup(s);
  CHECK(d, "out of memory");
  return d;
}

static char *path_join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = xmalloc(n);
  snprintf(p, n, "%s/%s", a, b);
  return p;
}

static int is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* a growing list of strings */
typedef struct {
  char **v;
  int n, cap;
} StrList;

static void strlist_add(StrList *l, const char *s) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    char **nv = realloc(l->v, (size_t)l->cap * sizeof *nv);
    CHECK(nv, "out of memory");
    l->v = nv;
  }
  l->v[l->n++] = xstrdup(s);
}

static void strlist_free(StrList *l) {
  for (int i = 0; l->v && i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* one line of a text file, without the newline (and a trailing CR) */
static int read_line(FILE *f, char **buf, size_t *cap) {
  ssize_t n = getline(buf, cap, f);
  if (n < 0) return 0;
  while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r')) (*buf)[--n] = 0;
  return 1;
}

static int blank(const char *s) {
  while (*s && isspace((unsigned char)*s)) s++;
  return *s == 0;
}

/* strict decimal integer */
static int parse_i64(const char *s, int64_t *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (end == s || *end || errno) return -1;
  *v = x;
  return 0;
}

/* class names "class_<id>" for ids that have no name of their own */
static void names_fill(char **names, int n) {
  for (int i = 0; i < n; i++)
    if (!names[i]) {
      char b[32];
      snprintf(b, sizeof b, "class_%d", i);
      names[i] = xstrdup(b);
    }
}

static void names_free(char **names, int n) {
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names);
}

/* ---- progress ----------------------------------------------------------------------- */

/* On a terminal: one line rewritten in place (at most 5 times a second);
 * otherwise (logs, batch jobs): a line every `every` items. */
typedef struct {
  const char *what, *unit;
  int64_t total;
  int every, tty;
  double t0, last;
  int64_t next;
} Progress;

static void progress_init(Progress *p, const char *what, const char *unit, int64_t total, int every) {
  p->what = what;
  p->unit = unit;
  p->total = total;
  p->every = every;
  p->tty = every > 0 && isatty(2);
  p->t0 = p->last = now_sec();
  p->next = every;
}

static void progress_step(Progress *p, int64_t done) {
  if (p->every <= 0) return;
  double t = now_sec(), rate = done / (t - p->t0 > 1e-9 ? t - p->t0 : 1e-9);
  if (p->tty) {
    if (t - p->last < 0.2 && done < p->total) return;
    p->last = t;
    fprintf(stderr, "\r  %s: %lld/%lld %s (%.0f/s)", p->what, (long long)done, (long long)p->total, p->unit, rate);
    if (done >= p->total) fputc('\n', stderr);
  } else if (done >= p->next || done >= p->total) {
    while (p->next <= done) p->next += p->every;
    fprintf(stderr, "  %s: %lld/%lld %s (%.0f/s)\n", p->what, (long long)done, (long long)p->total, p->unit, rate);
  }
}

/* ---- Fashion-MNIST: the IDX files ------------------------------------------------------- */

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

/* ---- Fashion-MNIST: writing ------------------------------------------------------------- */

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

/* ---- images -> a split ------------------------------------------------------------------ */

typedef struct {
  char *path;
  int32_t label;
} ImgItem;

typedef struct {
  ImgItem *v;
  int64_t n, cap;
} ImgList;

static void imglist_add(ImgList *l, char *path_owned, int32_t label) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 1024;
    ImgItem *nv = realloc(l->v, (size_t)l->cap * sizeof *nv);
    CHECK(nv, "out of memory");
    l->v = nv;
  }
  l->v[l->n++] = (ImgItem){path_owned, label};
}

static void imglist_free(ImgList *l) {
  for (int64_t i = 0; l->v && i < l->n; i++) free(l->v[i].path);
  free(l->v);
  memset(l, 0, sizeof *l);
}

#define DECODE_BLOCK 64   /* images decoded in parallel, then appended in list order */

/* Decodes, resizes and appends every image of L to a new split. Skipped
 * images are listed on stderr and counted in *skipped and the split
 * attribute n_skipped. The group is left open for the caller's attributes. */
static int write_images(DatasetWriter *w, const char *split, const ImgList *L, const DatasetImageOpts *o,
                        int64_t *skipped) {
  const int S = o->size;
  const size_t row = (size_t)S * S * 3;
  *skipped = 0;
  if (L->n == 0) return err_set("%s: the %s split has no images", w->out, split);
  if (dataset_writer_begin(w, split, DATASET_IMAGES, S, S, 3) != 0) return -1;
  uint8_t *px = xmalloc(DECODE_BLOCK * row);                    /* DECODE_BLOCK x S x S x 3 */
  int32_t lab[DECODE_BLOCK];
  int ok[DECODE_BLOCK];
  char(*why)[IMAGEIO_ERR_MAX] = xmalloc(DECODE_BLOCK * sizeof *why);
  Progress pr;
  progress_init(&pr, split, "images", L->n, o->progress_every);
  int rc = 0;
  for (int64_t b0 = 0; rc == 0 && b0 < L->n; b0 += DECODE_BLOCK) {
    int m = L->n - b0 < DECODE_BLOCK ? (int)(L->n - b0) : DECODE_BLOCK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < m; i++) ok[i] = imageio_read_square(px + (size_t)i * row, L->v[b0 + i].path, S, why[i]) == 0;
    int k = 0;
    for (int i = 0; i < m; i++) {
      if (!ok[i]) {
        if (o->on_error == DATASET_ON_ERROR_FAIL) {
          rc = err_set("%s (use --on-error skip to leave it out)", why[i]);
          break;
        }
        fprintf(stderr, "%sskipped %s\n", pr.tty ? "\n" : "", why[i]);
        (*skipped)++;
        continue;
      }
      if (k != i) memcpy(px + (size_t)k * row, px + (size_t)i * row, row);
      lab[k++] = L->v[b0 + i].label;
    }
    if (rc == 0) rc = dataset_writer_append(w, px, lab, k);
    progress_step(&pr, b0 + m);
  }
  if (rc != 0 && pr.tty) fputc('\n', stderr);   /* end the progress line before the error */
  if (rc == 0 && w->n == 0) rc = err_set("%s: every image of the %s split failed to decode", w->out, split);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "n_skipped", *skipped);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "n_source_rows", L->n);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "image_size", S);
  free(px);
  free(why);
  return rc;
}

/* root attributes shared by the image converters */
static int image_root_attrs(DatasetWriter *w, const char *source, const char *dir, const char *protocol_desc,
                            const DatasetImageOpts *o) {
  int rc = h5io_set_attr_str(w->file, "source", source);
  if (rc == 0) rc = h5io_set_attr_str(w->file, "source_dir", dir);
  if (rc == 0) rc = h5io_set_attr_str(w->file, "protocol", "zeroshot");
  if (rc == 0) rc = h5io_set_attr_str(w->file, "protocol_description", protocol_desc);
  if (rc == 0)
    rc = h5io_set_attr_str(w->file, "preprocessing",
                           "decoded to RGB (gray expanded, alpha over white), shorter side resized to image_size "
                           "(area average when shrinking, linear when enlarging), centre crop image_size x image_size");
  if (rc == 0) rc = h5io_set_attr_str(w->file, "on_error", o->on_error == DATASET_ON_ERROR_SKIP ? "skip" : "fail");
  return rc;
}

/* Both splits, committed. sel: the selection attribute of each split. */
static int write_image_file(const char *out, const char *converter, int n_classes, char **names, const ImgList *tr,
                            const ImgList *te, const char *source, const char *dir, const char *protocol_desc,
                            const char *sel[2], const DatasetImageOpts *o) {
  if (o->size < 1 || o->size > 4096) return err_set("--size %d is outside [1, 4096]", o->size);
  DatasetWriter w;
  int64_t sk[2] = {0, 0};
  int rc = dataset_writer_init(&w, out, n_classes, (const char *const *)names, converter);
  if (rc == 0) rc = image_root_attrs(&w, source, dir, protocol_desc, o);
  if (rc == 0) rc = write_images(&w, "train", tr, o, &sk[0]);
  if (rc == 0) rc = h5io_set_attr_str(w.group, "selection", sel[0]);
  if (rc == 0) rc = dataset_writer_end(&w);
  if (rc == 0) rc = write_images(&w, "test", te, o, &sk[1]);
  if (rc == 0) rc = h5io_set_attr_str(w.group, "selection", sel[1]);
  if (rc == 0) rc = dataset_writer_end(&w);
  if (rc == 0) rc = h5io_set_attr_i64(w.file, "n_skipped", sk[0] + sk[1]);
  if (rc == 0) rc = dataset_writer_commit(&w);
  dataset_writer_free(&w);
  if (rc == 0 && sk[0] + sk[1] > 0)
    fprintf(stderr, "note: %lld image(s) could not be decoded and were skipped (attribute n_skipped)\n",
            (long long)(sk[0] + sk[1]));
  return rc;
}

/* ---- folder ----------------------------------------------------------------------------- */

static int has_image_ext(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

/* sorted visible entries of dir: sub-directories (want_dirs) or image files */
static int list_dir(const char *dir, int want_dirs, StrList *out) {
  DIR *d = opendir(dir);
  if (!d) return err_set("%s: cannot open directory (%s)", dir, strerror(errno));
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *p = path_join(dir, e->d_name);
    int isd = is_dir(p);
    if (want_dirs ? isd : (!isd && has_image_ext(e->d_name))) strlist_add(out, e->d_name);
    free(p);
  }
  closedir(d);
  if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
  return 0;
}

static int find_name(char **names, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (!strcmp(names[i], s)) return i;
  return -1;
}

int dataset_convert_folder(const char *out, const char *root, const DatasetImageOpts *o) {
  if (!is_dir(root)) return err_set("%s: no such directory", root);
  StrList cls[2] = {{0}, {0}};
  static const char *const SPLITS[2] = {"train", "test"};
  ImgList lists[2] = {{0}, {0}};
  char **names = NULL;
  int nc = 0, rc = 0;
  for (int s = 0; rc == 0 && s < 2; s++) {
    char *sd = path_join(root, SPLITS[s]);
    if (!is_dir(sd)) rc = err_set("%s: no such directory (expected ROOT/train/<class>/ and ROOT/test/<class>/)", sd);
    else if (list_dir(sd, 1, &cls[s]) != 0) rc = -1;
    else if (cls[s].n == 0) rc = err_set("%s: no class folders in it", sd);
    free(sd);
  }
  if (rc == 0) {
    /* ids: train classes sorted, then the test-only classes sorted */
    names = xcalloc((size_t)cls[0].n + cls[1].n, sizeof *names);
    for (int i = 0; i < cls[0].n; i++) names[nc++] = xstrdup(cls[0].v[i]);
    for (int i = 0; i < cls[1].n; i++)
      if (find_name(names, cls[0].n, cls[1].v[i]) < 0) names[nc++] = xstrdup(cls[1].v[i]);
  }
  for (int s = 0; rc == 0 && s < 2; s++)
    for (int c = 0; rc == 0 && c < cls[s].n; c++) {
      char *sd = path_join(root, SPLITS[s]), *cd = path_join(sd, cls[s].v[c]);
      StrList files = {0};
      if (list_dir(cd, 0, &files) != 0) rc = -1;
      else if (files.n == 0) rc = err_set("%s: empty class folder (no .jpg, .jpeg or .png files)", cd);
      int id = find_name(names, nc, cls[s].v[c]);
      for (int i = 0; rc == 0 && i < files.n; i++) imglist_add(&lists[s], path_join(cd, files.v[i]), id);
      strlist_free(&files);
      free(sd);
      free(cd);
    }
  if (rc == 0) {
    int shared = cls[1].n - (nc - cls[0].n);
    char desc[512];
    snprintf(desc, sizeof desc,
             "train: ROOT/train/<class>/ (%d classes, ids 0-%d in sorted order); test: ROOT/test/<class>/ (%d classes, "
             "%d also in train with the same ids, the others after the train classes)",
             cls[0].n, cls[0].n - 1, cls[1].n, shared);
    const char *sel[2] = {"all .jpg/.jpeg/.png files of ROOT/train/<class>/", "all .jpg/.jpeg/.png files of ROOT/test/<class>/"};
    rc = write_image_file(out, "proxygml " PROXYGML_VERSION " data folder", nc, names, &lists[0], &lists[1],
                          "image folders ROOT/{train,test}/<class>/", root, desc, sel, o);
  }
  names_free(names, nc);
  for (int s = 0; s < 2; s++) {
    strlist_free(&cls[s]);
    imglist_free(&lists[s]);
  }
  return rc;
}

/* ---- CUB-200-2011 --------------------------------------------------------------------- */

/* "<int> <rest>" lines of a list file into (ids, rest); comments and blank lines skipped */
typedef struct {
  int64_t *id;
  char **rest;
  int64_t n, cap;
} IdLines;

static void idlines_free(IdLines *l) {
  for (int64_t i = 0; l->rest && i < l->n; i++) free(l->rest[i]);
  free(l->id);
  free(l->rest);
  memset(l, 0, sizeof *l);
}

static int read_id_lines(const char *path, IdLines *l) {
  memset(l, 0, sizeof *l);
  FILE *f = fopen(path, "r");
  if (!f) return err_set("%s: cannot open (%s)", path, strerror(errno));
  char *buf = NULL;
  size_t cap = 0;
  int64_t lineno = 0;
  int rc = 0;
  while (rc == 0 && read_line(f, &buf, &cap)) {
    lineno++;
    if (blank(buf) || buf[0] == '#') continue;
    char *p = buf;
    while (isspace((unsigned char)*p)) p++;
    char *sp = p;
    while (*sp && !isspace((unsigned char)*sp)) sp++;
    char *rest = sp;
    while (isspace((unsigned char)*rest)) rest++;
    *sp = 0;
    int64_t id;
    if (parse_i64(p, &id) != 0 || !*rest) {
      rc = err_set("%s:%lld: expected '<id> <value>', got '%s'", path, (long long)lineno, buf);
      break;
    }
    if (l->n == l->cap) {
      l->cap = l->cap ? 2 * l->cap : 1024;
      l->id = realloc(l->id, (size_t)l->cap * sizeof *l->id);
      l->rest = realloc(l->rest, (size_t)l->cap * sizeof *l->rest);
      CHECK(l->id && l->rest, "out of memory");
    }
    l->id[l->n] = id;
    l->rest[l->n++] = xstrdup(rest);
  }
  free(buf);
  fclose(f);
  if (rc == 0 && l->n == 0) rc = err_set("%s: no entries", path);
  if (rc != 0) idlines_free(l);
  return rc;
}

/* "001.Black_footed_Albatross" -> "Black_footed_Albatross" */
static char *strip_number(const char *s) {
  const char *p = s;
  while (isdigit((unsigned char)*p)) p++;
  return xstrdup(p > s && *p == '.' && p[1] ? p + 1 : s);
}

int dataset_convert_cub(const char *out, const char *root, const DatasetImageOpts *o) {
  enum { NC = 200, SPLIT_AT = 100 };   /* classes 1-100 train, 101-200 test */
  if (!is_dir(root)) return err_set("%s: no such directory", root);
  char *p_img = path_join(root, "images.txt"), *p_lab = path_join(root, "image_class_labels.txt"),
       *p_cls = path_join(root, "classes.txt"), *p_dir = path_join(root, "images");
  IdLines im = {0}, lb = {0}, cl = {0};
  ImgList lists[2] = {{0}, {0}};
  char **names = xcalloc(NC, sizeof *names);
  int64_t *cls_of = NULL;   /* image id -> class id (1-based), 0 = none */
  int64_t max_id = 0;
  int rc = 0;
  if (read_id_lines(p_img, &im) != 0 || read_id_lines(p_lab, &lb) != 0) rc = -1;
  if (rc == 0 && access(p_cls, F_OK) == 0 && read_id_lines(p_cls, &cl) != 0) rc = -1;
  if (rc == 0 && !is_dir(p_dir)) rc = err_set("%s: no such directory (the CUB images)", p_dir);
  for (int64_t i = 0; rc == 0 && i < im.n; i++) {
    if (im.id[i] < 1 || im.id[i] > 100000000) rc = err_set("%s: image id %lld out of range", p_img, (long long)im.id[i]);
    if (im.id[i] > max_id) max_id = im.id[i];
  }
  if (rc == 0) cls_of = xcalloc((size_t)max_id + 1, sizeof *cls_of);
  for (int64_t i = 0; rc == 0 && i < lb.n; i++) {
    int64_t c;
    if (parse_i64(lb.rest[i], &c) != 0 || c < 1 || c > NC)
      rc = err_set("%s: image %lld has class '%s' (expected 1-%d)", p_lab, (long long)lb.id[i], lb.rest[i], NC);
    else if (lb.id[i] >= 1 && lb.id[i] <= max_id) cls_of[lb.id[i]] = c;
  }
  for (int64_t i = 0; rc == 0 && i < cl.n; i++)
    if (cl.id[i] >= 1 && cl.id[i] <= NC && !names[cl.id[i] - 1]) names[cl.id[i] - 1] = strip_number(cl.rest[i]);
  for (int64_t i = 0; rc == 0 && i < im.n; i++) {
    int64_t c = cls_of[im.id[i]];
    if (c == 0) {
      rc = err_set("%s: image %lld (%s) has no class", p_lab, (long long)im.id[i], im.rest[i]);
      break;
    }
    if (!names[c - 1]) {   /* no classes.txt: the image's folder names the class */
      char *d = xstrdup(im.rest[i]), *sl = strchr(d, '/');
      if (sl) {
        *sl = 0;
        names[c - 1] = strip_number(d);
      }
      free(d);
    }
    imglist_add(&lists[c > SPLIT_AT], path_join(p_dir, im.rest[i]), (int32_t)(c - 1));
  }
  if (rc == 0) {
    names_fill(names, NC);
    const char *sel[2] = {"images of classes 1-100 (ids 0-99)", "images of classes 101-200 (ids 100-199)"};
    rc = write_image_file(out, "proxygml " PROXYGML_VERSION " data cub", NC, names, &lists[0], &lists[1],
                          "CUB-200-2011 (Wah et al. 2011): images.txt, image_class_labels.txt, images/", root,
                          "train: classes 1-100 (ids 0-99); test: classes 101-200 (ids 100-199), the metric-learning "
                          "split (train_test_split.txt is not used)",
                          sel, o);
  }
  names_free(names, NC);
  free(cls_of);
  idlines_free(&im);
  idlines_free(&lb);
  idlines_free(&cl);
  imglist_free(&lists[0]);
  imglist_free(&lists[1]);
  free(p_img);
  free(p_lab);
  free(p_cls);
  free(p_dir);
  return rc;
}

/* ---- Cars196 ------------------------------------------------------------------------------ */

/* Splits one CSV line (double quotes, "" inside quotes) or, when it has no
 * comma, whitespace-separated fields. Fields point into line (modified). */
static int split_fields(char *line, char **f, int maxf) {
  int n = 0;
  int csv = strchr(line, ',') != NULL;
  char *p = line;
  while (*p && n < maxf) {
    if (!csv) {
      while (isspace((unsigned char)*p)) p++;
      if (!*p) break;
      f[n++] = p;
      while (*p && !isspace((unsigned char)*p)) p++;
      if (*p) *p++ = 0;
      continue;
    }
    while (*p == ' ') p++;
    if (*p == '"') {
      char *w = ++p;
      f[n++] = w;
      while (*p) {
        if (*p == '"' && p[1] == '"') { *w++ = '"'; p += 2; }
        else if (*p == '"') { p++; break; }
        else *w++ = *p++;
      }
      while (*p && *p != ',') p++;
      if (*p) p++;
      *w = 0;
    } else {
      f[n++] = p;
      while (*p && *p != ',') p++;
      if (*p) *p++ = 0;
      char *e = f[n - 1] + strlen(f[n - 1]);
      while (e > f[n - 1] && isspace((unsigned char)e[-1])) *--e = 0;
    }
  }
  return n;
}

int dataset_convert_cars(const char *out, const char *root, const char *annos, const DatasetImageOpts *o) {
  enum { NC = 196, SPLIT_AT = 98, MAXF = 32 };   /* classes 1-98 train, 99-196 test */
  if (!is_dir(root)) return err_set("%s: no such directory", root);
  char *ap = annos ? xstrdup(annos) : path_join(root, "cars_annos.csv");
  FILE *f = fopen(ap, "r");
  if (!f) {
    int e = errno;
    int rc = err_set("%s: cannot open (%s); export cars_annos.mat to CSV first (docs/datasets.md)", ap, strerror(e));
    free(ap);
    return rc;
  }
  ImgList lists[2] = {{0}, {0}};
  char **names = xcalloc(NC, sizeof *names);
  char *buf = NULL;
  size_t cap = 0;
  int64_t lineno = 0;
  int col_path = 0, col_class = 1, col_name = -1, rc = 0, first = 1;
  while (rc == 0 && read_line(f, &buf, &cap)) {
    lineno++;
    if (blank(buf) || buf[0] == '#') continue;
    char *fl[MAXF];
    int nf = split_fields(buf, fl, MAXF);
    if (first) {
      first = 0;
      int hp = -1, hc = -1, hn = -1;
      for (int i = 0; i < nf; i++) {
        if (!strcmp(fl[i], "relative_im_path")) hp = i;
        else if (!strcmp(fl[i], "class")) hc = i;
        else if (!strcmp(fl[i], "class_name")) hn = i;
      }
      if (hp >= 0 || hc >= 0) {   /* a header: columns by name */
        if (hp < 0 || hc < 0) {
          rc = err_set("%s:1: the header needs the columns relative_im_path and class", ap);
          break;
        }
        col_path = hp;
        col_class = hc;
        col_name = hn;
        continue;
      }
      if (nf >= 3) col_name = 2;   /* no header: path, class[, class_name] */
    }
    int64_t c;
    if (nf <= col_path || nf <= col_class) {
      rc = err_set("%s:%lld: expected relative_im_path,class", ap, (long long)lineno);
      break;
    }
    if (parse_i64(fl[col_class], &c) != 0 || c < 1 || c > NC) {
      rc = err_set("%s:%lld: class '%s' (expected 1-%d)", ap, (long long)lineno, fl[col_class], NC);
      break;
    }
    if (col_name >= 0 && col_name < nf && fl[col_name][0] && !names[c - 1]) names[c - 1] = xstrdup(fl[col_name]);
    imglist_add(&lists[c > SPLIT_AT], path_join(root, fl[col_path]), (int32_t)(c - 1));
  }
  free(buf);
  fclose(f);
  if (rc == 0 && lists[0].n + lists[1].n == 0) rc = err_set("%s: no annotations", ap);
  if (rc == 0) {
    names_fill(names, NC);
    const char *sel[2] = {"images of classes 1-98 (ids 0-97)", "images of classes 99-196 (ids 98-195)"};
    rc = write_image_file(out, "proxygml " PROXYGML_VERSION " data cars", NC, names, &lists[0], &lists[1],
                          "Cars196 (Krause et al. 2013): a CSV export of cars_annos.mat (relative_im_path,class)",
                          root, "train: classes 1-98 (ids 0-97); test: classes 99-196 (ids 98-195); the 'test' flag "
                                "of cars_annos.mat is not used",
                          sel, o);
  }
  names_free(names, NC);
  imglist_free(&lists[0]);
  imglist_free(&lists[1]);
  free(ap);
  return rc;
}

/* ---- Stanford Online Products ------------------------------------------------------------------ */

/* one Ebay_*.txt: "image_id class_id super_class_id path" after a header line */
static int read_sop_list(const char *path, const char *root, ImgList *l, char ***names, int *cap_names,
                         int *max_class) {
  FILE *f = fopen(path, "r");
  if (!f) return err_set("%s: cannot open (%s)", path, strerror(errno));
  char *buf = NULL;
  size_t cap = 0;
  int64_t lineno = 0;
  int rc = 0;
  while (rc == 0 && read_line(f, &buf, &cap)) {
    lineno++;
    if (blank(buf)) continue;
    char *fl[8];
    int nf = split_fields(buf, fl, 8);
    if (lineno == 1 && nf >= 1 && !strcmp(fl[0], "image_id")) continue;
    int64_t img, c, sc;
    if (nf != 4 || parse_i64(fl[0], &img) != 0 || parse_i64(fl[1], &c) != 0 || parse_i64(fl[2], &sc) != 0) {
      rc = err_set("%s:%lld: expected 'image_id class_id super_class_id path'", path, (long long)lineno);
      break;
    }
    if (c < 1 || c > MAX_CLASSES) {
      rc = err_set("%s:%lld: class_id %lld out of range", path, (long long)lineno, (long long)c);
      break;
    }
    if (c > *cap_names) {
      int nc = *cap_names ? *cap_names : 1024;
      while (nc < c) nc *= 2;
      char **nn = realloc(*names, (size_t)nc * sizeof *nn);
      CHECK(nn, "out of memory");
      memset(nn + *cap_names, 0, (size_t)(nc - *cap_names) * sizeof *nn);
      *names = nn;
      *cap_names = nc;
    }
    if (!(*names)[c - 1]) {
      /* "bicycle_final/111085122871_0.JPG" -> "bicycle_final/111085122871": folder and product */
      char *n = xstrdup(fl[3]), *sl = strrchr(n, '/'), *us = strrchr(n, '_');
      if (us && (!sl || us > sl)) *us = 0;
      (*names)[c - 1] = n;
    }
    if (c > *max_class) *max_class = (int)c;
    imglist_add(l, path_join(root, fl[3]), (int32_t)(c - 1));
  }
  free(buf);
  fclose(f);
  if (rc == 0 && l->n == 0) rc = err_set("%s: no images listed", path);
  return rc;
}

int dataset_convert_sop(const char *out, const char *root, const DatasetImageOpts *o) {
  if (!is_dir(root)) return err_set("%s: no such directory", root);
  char *p_tr = path_join(root, "Ebay_train.txt"), *p_te = path_join(root, "Ebay_test.txt");
  ImgList lists[2] = {{0}, {0}};
  char **names = NULL;
  int cap = 0, nc = 0;
  int rc = read_sop_list(p_tr, root, &lists[0], &names, &cap, &nc);
  if (rc == 0) rc = read_sop_list(p_te, root, &lists[1], &names, &cap, &nc);
  if (rc == 0) {
    names_fill(names, nc);
    const char *sel[2] = {"the images of Ebay_train.txt", "the images of Ebay_test.txt"};
    rc = write_image_file(out, "proxygml " PROXYGML_VERSION " data sop", nc, names, &lists[0], &lists[1],
                          "Stanford Online Products (Oh Song et al. 2016): Ebay_train.txt, Ebay_test.txt", root,
                          "train: Ebay_train.txt; test: Ebay_test.txt (disjoint products); id = class_id - 1", sel,
                          o);
  }
  names_free(names, cap);
  imglist_free(&lists[0]);
  imglist_free(&lists[1]);
  free(p_tr);
  free(p_te);
  return rc;
}

/* ---- features ------------------------------------------------------------------------------------- */

int dataset_npy_header(const char *path, DatasetNpy *h) {
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

/* a feature or label source: a .npy file or FILE.h5:DATASET */
typedef struct {
  const char *spec;
  int h5;
  DatasetNpy npy;
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
    if (dataset_npy_header(spec, &s->npy) != 0) return -1;
    s->ndim = s->npy.ndim;
    s->dims[0] = s->npy.dims[0];
    s->dims[1] = s->npy.dims[1];
    s->is_float = s->npy.type == 'f';
    s->f = fopen(spec, "rb");
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
      return err_set("%s: %s", s->spec, err_msg());
    }
    return 0;
  }
  size_t isz = (size_t)s->npy.itemsize, cnt = (size_t)(n * cols);
  unsigned char *raw = xmalloc(cnt * isz);
  int rc = 0;
  if (fseek(s->f, s->npy.offset + (long)(r0 * cols * (int64_t)isz), SEEK_SET) != 0 || fread(raw, isz, cnt, s->f) != cnt)
    rc = err_set("%s: read error at row %lld", s->spec, (long long)r0);
  for (size_t i = 0; rc == 0 && i < cnt; i++) out[i] = npy_value(raw + i * isz, s->npy.type, (int)isz);
  free(raw);
  return rc;
}

/* One split's labels (validated) and the open feature source. */
static int split_sources(const char *split, const char *xs, const char *ys, Src *x, int32_t **labels, int *max_label) {
  Src y;
  *labels = NULL;
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
      if (v[i] < 0 || v[i] >= MAX_CLASSES)
        rc = err_set("%s: row %lld has label %.0f (labels must be in [0, %d))", ys, (long long)i, v[i], MAX_CLASSES);
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
  while (i < n && read_line(f, &buf, &cap)) names[i++] = xstrdup(buf);
  free(buf);
  fclose(f);
  return 0;
}

int dataset_convert_features(const char *out, const DatasetFeatureSources *s) {
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
        names[i] = xstrdup(b);
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
  names_free(names, nc);
  for (int k = 0; k < 2; k++) {
    src_close(&x[k]);
    free(lab[k]);
  }
  return rc;
}

/* ---- glyphs ------------------------------------------------------------------------------------ */

#define CJK_LO 0x4E00u
#define CJK_HI 0x9FFFu

/* rows of classes [c0, c1) of chosen into a new split: class x face x augmentation */
static int write_glyph_split(DatasetWriter *w, const char *split, const Glyphs *g, const uint32_t *chosen, int c0,
                             int c1, const DatasetGlyphsOpts *o) {
  const int S = o->size, per = g->nfaces * o->augment;
  if (dataset_writer_begin(w, split, DATASET_IMAGES, S, S, 1) != 0) return -1;
  uint8_t *px = xmalloc((size_t)per * S * S);                  /* per x S x S x 1 */
  int32_t *lab = xmalloc((size_t)per * sizeof *lab);
  Progress pr;
  progress_init(&pr, split, "glyphs", (int64_t)(c1 - c0) * per, o->progress_every);
  int rc = 0;
  for (int c = c0; rc == 0 && c < c1; c++) {
    for (int f = 0; rc == 0 && f < g->nfaces; f++)
      for (int a = 0; rc == 0 && a < o->augment; a++) {
        int r = f * o->augment + a;
        Rng rng;
        GlyphsAug aug;
        rng_init(&rng, glyphs_seed(o->seed, chosen[c], f, a));
        glyphs_aug_draw(&aug, &rng);
        rc = glyphs_render(g, f, chosen[c], &aug, px + (size_t)r * S * S);
        lab[r] = c;
      }
    if (rc == 0) rc = dataset_writer_append(w, px, lab, per);
    progress_step(&pr, (int64_t)(c + 1 - c0) * per);
  }
  char sel[256];
  snprintf(sel, sizeof sel, "characters %d-%d of the seeded shuffle (ids %d-%d), every face x %d augmentations", c0,
           c1 - 1, c0, c1 - 1, o->augment);
  if (rc == 0) rc = h5io_set_attr_str(w->group, "selection", sel);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "n_source_rows", (int64_t)(c1 - c0) * per);
  if (rc == 0) rc = dataset_writer_end(w);
  free(px);
  free(lab);
  return rc;
}

int dataset_convert_glyphs(const char *out, const DatasetGlyphsOpts *o) {
  if (o->train_classes < 1 || o->test_classes < 1) return err_set("--train-classes and --test-classes must be >= 1");
  if (o->augment < 1 || o->augment > 1000) return err_set("--augment %d is outside [1, 1000]", o->augment);
  if (o->size < 8 || o->size > 1024) return err_set("--size %d is outside [8, 1024]", o->size);
  const char *list = o->fonts ? o->fonts : GLYPHS_DEFAULT_FONTS;
  const char *dir = o->font_dir ? o->font_dir : GLYPHS_FONT_DIR;
  StrList specs = {0};
  char *copy = xstrdup(list), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
    if (!blank(t)) strlist_add(&specs, t);
  free(copy);
  if (specs.n == 0) {
    strlist_free(&specs);
    return err_set("--fonts is empty");
  }
  Glyphs g;
  int rc = glyphs_init(&g, (const char *const *)specs.v, specs.n, dir, o->size, o->fonts == NULL);
  strlist_free(&specs);
  if (rc != 0) return -1;
  uint32_t *common = NULL, *chosen = NULL;
  int ncommon = 0, *perm = NULL, need = o->train_classes + o->test_classes, k = 0;
  char **names = NULL;
  double t0 = now_sec();
  rc = glyphs_common(&g, CJK_LO, CJK_HI, &common, &ncommon);
  if (rc == 0 && ncommon < need)
    rc = err_set("only %d characters of U+%04X..U+%04X are covered by all %d font faces; %d needed "
                 "(--train-classes + --test-classes)", ncommon, CJK_LO, CJK_HI, g.nfaces, need);
  if (rc == 0) {
    /* a seeded shuffle of the common set, walked until `need` drawable characters */
    Rng r;
    rng_init(&r, o->seed);
    perm = xmalloc((size_t)ncommon * sizeof *perm);
    rng_permutation(&r, perm, ncommon);
    chosen = xmalloc((size_t)need * sizeof *chosen);
    for (int i = 0; i < ncommon && k < need; i++)
      if (glyphs_drawable(&g, common[perm[i]])) chosen[k++] = common[perm[i]];
    if (k < need)
      rc = err_set("only %d of the %d common characters have an outline in every face; %d needed", k, ncommon, need);
  }
  if (rc == 0) {
    names = xcalloc((size_t)need, sizeof *names);
    for (int i = 0; i < need; i++) {
      char b[8];
      glyphs_utf8(chosen[i], b);
      names[i] = xstrdup(b);
    }
  }
  DatasetWriter w;
  memset(&w, 0, sizeof w);
  w.file = w.group = w.data = -1;
  if (rc == 0) rc = dataset_writer_init(&w, out, need, (const char *const *)names, "proxygml " PROXYGML_VERSION " data glyphs");
  if (rc == 0) {
    /* provenance: every face, one line each: path#index<TAB>family<TAB>style */
    size_t cap = (size_t)g.nfaces * 1400 + 1, len = 0;
    char *fonts = xcalloc(cap, 1);
    for (int i = 0; i < g.nfaces; i++)
      len += (size_t)snprintf(fonts + len, cap - len, "%s%s#%d\t%s\t%s", i ? "\n" : "", g.faces[i].path,
                              g.faces[i].index, g.faces[i].family, g.faces[i].style);
    char src[512], desc[512], aug[512];
    snprintf(src, sizeof src,
             "CJK Unified Ideographs (U+%04X..U+%04X) rendered with FreeType %s from %d font faces", CJK_LO, CJK_HI,
             g.version, g.nfaces);
    snprintf(desc, sizeof desc,
             "classes = characters covered by every face (%d), shuffled with the seed; train: the first %d "
             "(ids 0-%d), test: the next %d (ids %d-%d): disjoint classes",
             ncommon, o->train_classes, o->train_classes - 1, o->test_classes, o->train_classes, need - 1);
    snprintf(aug, sizeof aug,
             "per sample, seeded by (seed, codepoint, face, augmentation): rotation +-%.0f deg, scale %.2f-%.2f, "
             "shift +-%.0f px, stroke width +-%.3f em (FT_Outline_EmboldenXY); em = %.2f x size; bounding box centred; "
             "0 = background, 255 = ink",
             GLYPHS_AUG_ANGLE, GLYPHS_AUG_SCALE_LO, GLYPHS_AUG_SCALE_HI, GLYPHS_AUG_SHIFT, GLYPHS_AUG_STROKE,
             GLYPHS_EM_FRACTION);
    rc = h5io_set_attr_str(w.file, "source", src);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "source_dir", dir);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "protocol", "zeroshot");
    if (rc == 0) rc = h5io_set_attr_str(w.file, "protocol_description", desc);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "fonts", fonts);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "n_fonts", g.nfaces);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "freetype_version", g.version);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "augmentation", aug);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "augment", o->augment);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "seed", (int64_t)o->seed);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "image_size", o->size);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "n_common_characters", ncommon);
    free(fonts);
  }
  if (rc == 0) rc = write_glyph_split(&w, "train", &g, chosen, 0, o->train_classes, o);
  if (rc == 0) rc = write_glyph_split(&w, "test", &g, chosen, o->train_classes, need, o);
  if (rc == 0) rc = dataset_writer_commit(&w);
  if (rc == 0 && o->progress_every > 0)
    fprintf(stderr, "  rendered %lld glyphs from %d faces in %.1f s\n", (long long)need * g.nfaces * o->augment,
            g.nfaces, now_sec() - t0);
  dataset_writer_free(&w);
  names_free(names, need);
  free(common);
  free(chosen);
  free(perm);
  glyphs_free(&g);
  return rc;
}
