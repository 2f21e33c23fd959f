/* dataset_convert.h: the converters, each writing a dataset file
 * (docs/dataset-format.md) through DatasetWriter (dataset_writer.h),
 * atomically; with the writer, imageio and glyphs they make the conversion
 * library, libproxygml_convert, the only part that links libjpeg, libpng and
 * FreeType. `proxygml data` (tools/data.c) is their command line.
 *
 *   fashion-mnist  the gzipped Fashion-MNIST IDX files
 *   folder    ROOT/train/<class>/<image>.jpg|png, ROOT/test/<class>/...
 *   cub       CUB-200-2011 (images.txt, image_class_labels.txt, images/)
 *   cars      Cars196 (a CSV/TXT export of cars_annos.mat: relative_im_path,class)
 *   sop       Stanford Online Products (Ebay_train.txt, Ebay_test.txt)
 *   features  precomputed features: .npy files or datasets of HDF5 files
 *   glyphs    CJK ideographs rendered from fonts (include/glyphs.h)
 *
 * Formats, protocols and commands are documented in docs/datasets.md.
 *
 *   DatasetImageOpts o = {.size = 224, .on_error = DATASET_ON_ERROR_SKIP, .progress_every = 1000};
 *   if (dataset_convert_cub("cub.h5", "CUB_200_2011", &o) != 0) fprintf(stderr, "%s\n", err_msg());
 *
 * Class ids are global over both splits. Image converters decode in blocks
 * with OpenMP and write the images S x S x 3 (uint8, RGB, shorter side
 * resized to S, centre crop). A corrupt or unreadable image is reported on
 * stderr with its path and skipped (counted in the split attribute
 * n_skipped), or, with DATASET_ON_ERROR_FAIL, fails the conversion. A
 * structural problem (missing list file, empty class folder, a label out of
 * range) always fails. Every function returns 0 or -1 with one line in
 * err_msg(); no output file is left behind on failure.
 */
#ifndef PROXYGML_DATASET_CONVERT_H
#define PROXYGML_DATASET_CONVERT_H

#include <stdint.h>

typedef enum { DATASET_PROTOCOL_SEEN = 0, DATASET_PROTOCOL_ZEROSHOT = 1 } DatasetProtocol;

/* Fashion-MNIST: reads the four gzipped IDX files in idx_dir and writes out
 * atomically (out.tmp.<pid>, validated, then renamed), so a failure leaves no
 * file and never replaces an existing one. seen: all of train -> /train, all
 * of t10k -> /test; zeroshot: classes 0-4 of train -> /train, classes 5-9 of
 * t10k -> /test. */
int dataset_convert_fashion_mnist(const char *out, const char *idx_dir, DatasetProtocol protocol);
#define DATASET_FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"  /* Debian dataset-fashion-mnist */

typedef enum { DATASET_ON_ERROR_FAIL = 0, DATASET_ON_ERROR_SKIP = 1 } DatasetOnError;

#define DATASET_IMAGE_SIZE_DEFAULT 224
#define DATASET_PROGRESS_EVERY 1000   /* images between progress lines when stderr is not a terminal */

typedef struct {
  int size;                  /* S */
  DatasetOnError on_error;
  int progress_every;        /* 0 = no progress output */
} DatasetImageOpts;

int dataset_convert_folder(const char *out, const char *root, const DatasetImageOpts *o);
int dataset_convert_cub(const char *out, const char *root, const DatasetImageOpts *o);
/* annos: the CSV/TXT export; NULL = ROOT/cars_annos.csv */
int dataset_convert_cars(const char *out, const char *root, const char *annos, const DatasetImageOpts *o);
int dataset_convert_sop(const char *out, const char *root, const DatasetImageOpts *o);

/* Each source is "X.npy" or "FILE.h5:DATASET". x: 2-d float32/float64
 * (n x F), y: 1-d integers (n), labels >= 0 used as class ids as they are.
 * class_names: optional text file, line i = name of class i. */
typedef struct {
  const char *train_x, *train_y, *test_x, *test_y;
  const char *class_names;
} DatasetFeatureSources;
int dataset_convert_features(const char *out, const DatasetFeatureSources *s);

/* The .npy header: little-endian (or 1-byte) scalar dtype, C order. */
typedef struct {
  char type;                 /* 'f' float, 'i' signed, 'u' unsigned integer */
  int itemsize;              /* bytes */
  int ndim;                  /* 0..2 */
  int64_t dims[2];
  long offset;               /* bytes before the data */
} DatasetNpy;
int dataset_npy_header(const char *path, DatasetNpy *h);

typedef struct {
  int train_classes, test_classes;
  int size;                  /* S */
  int augment;               /* samples per (character, face) */
  uint64_t seed;
  const char *fonts;         /* comma-separated font specs; NULL = GLYPHS_DEFAULT_FONTS (missing ones skipped) */
  const char *font_dir;      /* NULL = GLYPHS_FONT_DIR */
  int progress_every;        /* glyphs between progress lines when not a terminal; 0 = quiet */
} DatasetGlyphsOpts;
int dataset_convert_glyphs(const char *out, const DatasetGlyphsOpts *o);

#endif
