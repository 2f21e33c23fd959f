/* convert.h: what the converters of the conversion library share: list and
 * text files, class names, progress lines. The library, libproxygml_convert,
 * is the only part that links libjpeg, libpng and FreeType; `proxygml data`
 * (tools/data.c) is its command line. Each converter writes a dataset file
 * (docs/dataset-format.md) through DatasetWriter (dataset_writer.h),
 * atomically:
 *
 *   convert_fmnist.h    the gzipped Fashion-MNIST IDX files
 *   convert_images.h    image folders, CUB-200-2011, Cars196, Stanford Online Products
 *   convert_features.h  precomputed features: .npy files or datasets of HDF5 files
 *   convert_glyphs.h    CJK ideographs rendered from fonts (glyphs.h)
 *   convert_synthetic.h class-clustered random features, up to millions of classes
 *
 * Formats, protocols and commands are documented in docs/datasets.md. Class
 * ids are global over both splits. Every converter returns 0 or -1 with one
 * line in err_msg(); no output file is left behind on failure. The helpers
 * below follow the same rule; allocation failures are CHECKs. */
#ifndef PROXYGML_CONVERT_H
#define PROXYGML_CONVERT_H

#include <stdint.h>
#include <stdio.h>

#define CONVERT_MAX_CLASSES (1 << 24)   /* the reader's limit on n_classes */

char *convert_strdup(const char *s);                       /* never NULL */
char *convert_path_join(const char *a, const char *b);     /* "a/b", owned by the caller */
int convert_is_dir(const char *p);

/* a growing list of strings (copies) */
typedef struct {
  char **v;
  int n, cap;
} ConvertStrList;
void convert_strlist_add(ConvertStrList *l, const char *s);
void convert_strlist_free(ConvertStrList *l);

/* one line of a text file, without the newline (and a trailing CR); 0 at the end */
int convert_read_line(FILE *f, char **buf, size_t *cap);
int convert_blank(const char *s);                          /* only white space */
int convert_parse_i64(const char *s, int64_t *v);          /* strict decimal integer: 0 or -1 */

/* Splits one CSV line (double quotes, "" inside quotes) or, when it has no
 * comma, whitespace-separated fields. Fields point into line (modified).
 * Returns the number of fields, at most maxf. */
int convert_split_fields(char *line, char **f, int maxf);

/* "<int> <rest>" lines of a list file into (ids, rest); comments and blank lines skipped */
typedef struct {
  int64_t *id;
  char **rest;
  int64_t n, cap;
} ConvertIdLines;
int convert_idlines_read(const char *path, ConvertIdLines *l);   /* no entries is an error */
void convert_idlines_free(ConvertIdLines *l);

/* class names "class_<id>" for ids that have no name of their own */
void convert_names_fill(char **names, int n);
void convert_names_free(char **names, int n);              /* names (n) and the array; NULL is fine */

/* On a terminal: one line rewritten in place (at most 5 times a second);
 * otherwise (logs, batch jobs): a line every `every` items. */
typedef struct {
  const char *what, *unit;
  int64_t total;
  int every, tty;
  double t0, last;
  int64_t next;
} ConvertProgress;
void convert_progress_init(ConvertProgress *p, const char *what, const char *unit, int64_t total, int every);
void convert_progress_step(ConvertProgress *p, int64_t done);   /* done: items so far */

#endif
