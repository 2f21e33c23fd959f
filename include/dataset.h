/* dataset.h: dataset HDF5 files (schema in docs/dataset-format.md): validated
 * reads of one split or of a row range of it (what one MPI rank holds) and
 * the per-step batch conversion to float32. Writing them is the conversion
 * library's (dataset_writer.h, convert.h); the global sampler is
 * sampler.h.
 *
 * A file holds the groups /train and /test. Each holds `images` (uint8,
 * n x H x W x channels) or `features` (float32, n x F), `labels` (int32, n)
 * and `class_names` (n_classes strings). Class ids are global: the root
 * attribute n_classes covers both splits, and in a zero-shot file /test keeps
 * ids 5..9 (info.label_min/label_max tell which ids a split uses).
 *
 *   DatasetInfo info;
 *   if (dataset_info(path, "train", &info) != 0) { fprintf(stderr, "%s\n", err_msg()); ... }
 *   int64_t row0 = info.n * rank / size, row1 = info.n * (rank + 1) / size;
 *   DatasetSplit tr = {0};
 *   if (dataset_split_read(&tr, path, "train", row0, row1 - row0) != 0) { ... }
 *   float *x = xmalloc_f32((size_t)B * tr.info.row_size);    // B x channels x H x W
 *   int32_t y[B];
 *   for (each step) dataset_batch(x, y, &tr, idx, B);          // idx: B local rows
 *   dataset_split_free(&tr);
 *
 * Errors: every function that touches a file returns 0 or -1 with one line
 * in err_msg() naming the file, the split and the dataset ("f.h5: /train/labels:
 * row 12 has label 10, outside [0, 10)"). An empty split is an error.
 *
 * Memory: DatasetSplit owns images/features, labels and class_names;
 * dataset_split_free releases them (safe on a zeroed struct) and zeroes it.
 * DatasetInfo has no pointers, so it can be broadcast as bytes.
 */
#ifndef PROXYGML_DATASET_H
#define PROXYGML_DATASET_H

#include <hdf5.h>
#include <stdint.h>

#define DATASET_FORMAT_VERSION 1
#define DATASET_ALL_ROWS (-1)     /* nrows for dataset_split_read: row0 to the end */

typedef enum { DATASET_IMAGES = 0, DATASET_FEATURES = 1 } DatasetKind;

typedef struct {
  DatasetKind kind;
  int64_t n;              /* rows in the split on file */
  int H, W, channels;     /* images; 0 for features */
  int F;                  /* features per row; 0 for images */
  int row_size;           /* floats per row after dataset_batch: channels*H*W or F */
  int n_classes;          /* root attribute, global over both splits */
  int n_distinct;         /* distinct labels present in this split */
  int label_min, label_max;   /* smallest / largest label present */
} DatasetInfo;

typedef struct {
  DatasetInfo info;       /* of the whole split on file */
  int64_t row0, nrows;    /* the rows held here: [row0, row0 + nrows) of the split */
  uint8_t *images;        /* nrows x H x W x channels, or NULL */
  float *features;        /* nrows x F, or NULL */
  int32_t *labels;        /* nrows */
  char **class_names;     /* n_classes, indexed by class id */
} DatasetSplit;

/* Validates the file and the split (`split` is "train" or "test") and fills
 * info. Reads the labels (n int32) but not images/features. */
int dataset_info(const char *path, const char *split, DatasetInfo *info);

/* All n labels of a split (validated), e.g. for the global sampler. */
int dataset_labels_read(const char *path, const char *split, int32_t *labels /* info.n */, int64_t n);

/* Validated read of rows [row0, row0 + nrows) (a hyperslab: only those rows
 * are read); nrows = DATASET_ALL_ROWS reads to the end, nrows = 0 is allowed
 * (a rank with no rows). Features are checked for NaN/Inf in the rows read.
 * On failure s is left zeroed. */
int dataset_split_read(DatasetSplit *s, const char *path, const char *split, int64_t row0, int64_t nrows);
void dataset_split_free(DatasetSplit *s);

/* The network input for one step: rows idx[0..B) (local to s, in
 * [0, s->nrows)) as float32. Images go to NCHW with pixel / 255 in [0, 1];
 * features are copied. y (may be NULL) gets the labels. No allocation:
 * called every training step. */
void dataset_batch(float *x /* B x row_size */, int32_t *y /* B, or NULL */, const DatasetSplit *s,
                   const int *idx /* B */, int B);

#endif
