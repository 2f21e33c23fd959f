/* convert_fmnist.c: Fashion-MNIST's IDX files into a dataset file
 * (include/convert_fmnist.h); the layout and the atomic write are
 * DatasetWriter's. */
#include "convert_fmnist.h"

#include "common.h"
#include "config.h"
#include "dataset.h"
#include "dataset_writer.h"
#include "h5io.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

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
      size_t n = strlen(path);
      if (!strncmp(m, path, n) && !strncmp(m + n, ": ", 2)) m += n + 2;   /* zlib's message repeats the path */
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
                        const char *idx_dir, ConvertFmnistProtocol protocol) {
  DatasetWriter w;
  int zs = protocol == CONVERT_FMNIST_ZEROSHOT;
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

int convert_fmnist_write(const char *out, const char *idx_dir, ConvertFmnistProtocol protocol) {
  struct stat sb;
  if (stat(idx_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return err_set("%s: no such directory (the Fashion-MNIST IDX files; see --idx-dir)", idx_dir);
  /* unreachable in tests: the command line maps the protocol's name to one of the two values (tools/data.c) */
  if (protocol != CONVERT_FMNIST_SEEN && protocol != CONVERT_FMNIST_ZEROSHOT)
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
  if (rc == 0 && protocol == CONVERT_FMNIST_ZEROSHOT) {
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
