/* convert_features.h: precomputed features (.npy files or datasets of HDF5
 * files) into a dataset file of float32 rows; part of the conversion
 * library (convert.h). `proxygml data features` is its command line;
 * docs/datasets.md describes the sources.
 *
 *   ConvertFeaturesSources s = {"xtr.npy", "ytr.npy", "feat.h5:/test/x", "feat.h5:/test/y", NULL};
 *   if (convert_features_write("feat_ds.h5", &s) != 0) fprintf(stderr, "%s\n", err_msg());
 *
 * Sources are read in blocks of rows; every value is checked (NaN, Inf,
 * float32 overflow) and every label (>= 0, below the reader's limit on
 * classes); a failure names the source and the row. Every function returns
 * 0 or -1 with one line in err_msg(); no output file is left behind on
 * failure. */
#ifndef PROXYGML_CONVERT_FEATURES_H
#define PROXYGML_CONVERT_FEATURES_H

#include <stdint.h>

/* Each source is "X.npy" or "FILE.h5:DATASET". x: 2-d float32/float64
 * (n x F), y: 1-d integers (n), labels >= 0 used as class ids as they are.
 * class_names: optional text file, line i = name of class i. */
typedef struct {
  const char *train_x, *train_y, *test_x, *test_y;
  const char *class_names;
} ConvertFeaturesSources;
int convert_features_write(const char *out, const ConvertFeaturesSources *s);

/* The .npy header: little-endian (or 1-byte) scalar dtype, C order. */
typedef struct {
  char type;                 /* 'f' float, 'i' signed, 'u' unsigned integer */
  int itemsize;              /* bytes */
  int ndim;                  /* 0..2 */
  int64_t dims[2];
  long offset;               /* bytes before the data */
} ConvertFeaturesNpy;
/* also checks that the file holds exactly the data the header announces */
int convert_features_npy_header(const char *path, ConvertFeaturesNpy *h);

#endif
