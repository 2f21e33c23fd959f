/* dataset_writer.h: writing a dataset file (docs/dataset-format.md), the
 * one writer every converter uses (convert.h); part of the
 * conversion library, libproxygml_convert. Reading is dataset.h's.
 *
 * A file is written as out.tmp.<pid>, one split after the other, rows appended
 * in blocks (a converter never holds a whole split of images), then closed,
 * read back through dataset_info, fsynced and renamed to out. A failure, or
 * dataset_writer_free without a commit, removes the temp file: never a
 * half-written file under the final name, never a replaced good one.
 *
 *   DatasetWriter w;
 *   if (dataset_writer_init(&w, out, n_classes, class_names, "proxygml ... data glyphs") != 0) fail;
 *   h5io_set_attr_str(w.file, "source", "...");              // root provenance
 *   dataset_writer_begin(&w, "train", DATASET_IMAGES, H, W, channels);   // or FEATURES, F, 0, 0
 *   dataset_writer_append(&w, rows, labels, n);              // as often as needed
 *   h5io_set_attr_str(w.group, "selection", "...");          // split provenance
 *   dataset_writer_end(&w);
 *   ... the same for "test" ...
 *   rc = dataset_writer_commit(&w);
 *   dataset_writer_free(&w);
 *
 * Datasets are chunked by whole rows (about 1 MiB) with shuffle + deflate 4,
 * as h5io_write does, and carry no object timestamps: the same input gives
 * the same bytes apart from the root attribute `created`. A converter whose
 * rows do not compress (random features) sets w.deflate = 0 before
 * dataset_writer_begin: deflate would then be most of its time. */
#ifndef PROXYGML_DATASET_WRITER_H
#define PROXYGML_DATASET_WRITER_H

#include "dataset.h"

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  char out[4096], tmp[4160];
  hid_t file, group, data;   /* open file, open split group and its images/features; -1 when closed */
  DatasetKind kind;
  int H, W, channels, F;     /* row shape of the open split */
  size_t row_bytes;
  int64_t n;                 /* rows appended to the open split */
  int32_t *labels;           /* n (capacity labels_cap) */
  int64_t labels_cap;
  int n_classes;
  int deflate;               /* deflate level (with shuffle) of the next split's rows; 0 = none; init sets 4 */
  char **class_names;        /* n_classes, copies */
  int committed;
} DatasetWriter;

/* creates out.tmp.<pid> with the root attributes format, format_version,
 * n_classes, created and converter; class_names (n_classes) go to each split */
int dataset_writer_init(DatasetWriter *w, const char *out, int n_classes, const char *const *class_names,
                        const char *converter);
int dataset_writer_begin(DatasetWriter *w, const char *split, DatasetKind kind, int d1 /* H or F */, int d2 /* W */,
                         int d3 /* channels */);
/* rows: n x H x W x channels uint8, or n x F float32 */
int dataset_writer_append(DatasetWriter *w, const void *rows, const int32_t *labels /* n */, int64_t n);
int dataset_writer_end(DatasetWriter *w);       /* writes labels and class_names, closes the group */
int dataset_writer_commit(DatasetWriter *w);    /* close, validate, fsync, rename */
void dataset_writer_free(DatasetWriter *w);     /* closes; removes the temp file unless committed */

#endif
