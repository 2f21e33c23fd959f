/* convert_synthetic.h: a synthetic dataset of class-clustered features, for
 * as many classes as the format allows (10^6 and more): one random unit
 * centre per class, samples = centre + isotropic Gaussian noise, written as
 * float32 rows of a features dataset file; part of the conversion library
 * (convert.h). `proxygml data synthetic` is its command line,
 * docs/datasets.md the exact generator.
 *
 *   ConvertSyntheticOpts o = {.classes = 1000000, .dim = 64, .train_per_class = 2, .test_per_class = 1,
 *                             .spread = 0.5, .seed = 0};
 *   if (convert_synthetic_write("synth.h5", &o) != 0) fprintf(stderr, "%s\n", err_msg());
 *
 * Both splits hold every class ("seen" protocol): /train has train_per_class
 * rows of class 0, then of class 1, ...; /test likewise.
 *
 * Every row (and every centre) is drawn from a stream of its own, seeded by
 * (seed, kind, class, row), so a row does not depend on the order or the
 * number of threads that made it, nor on the other options: the same seed
 * gives the same file bytes apart from the attribute `created`. Rows are
 * generated and appended one block of classes at a time (about 8 MB), so the
 * memory does not grow with C x F; what grows with the size is the writer's
 * labels (4 bytes a row) and the class names (C short strings).
 *
 * Returns 0 or -1 with one line in err_msg() naming the bad option; no output
 * file is left behind on failure. */
#ifndef PROXYGML_CONVERT_SYNTHETIC_H
#define PROXYGML_CONVERT_SYNTHETIC_H

#include <stdint.h>

#define CONVERT_SYNTHETIC_MAX_DIM 65536
#define CONVERT_SYNTHETIC_MAX_PER_CLASS 100000

/* the kinds of stream of convert_synthetic_seed */
#define CONVERT_SYNTHETIC_CENTRE 0
#define CONVERT_SYNTHETIC_TRAIN 1
#define CONVERT_SYNTHETIC_TEST 2

typedef struct {
  int classes;                         /* C, >= 2 */
  int dim;                             /* F, features per row */
  int train_per_class, test_per_class; /* rows per class in /train and /test, >= 1 */
  double spread;                       /* root mean square norm of the noise, >= 0 (per feature: spread / sqrt(F)) */
  uint64_t seed;
  int progress_every;                  /* rows between progress lines when not a terminal; 0 = quiet */
} ConvertSyntheticOpts;

int convert_synthetic_write(const char *out, const ConvertSyntheticOpts *o);

/* the seed of one stream: kind CONVERT_SYNTHETIC_CENTRE (row 0) or _TRAIN/_TEST row r of class c */
uint64_t convert_synthetic_seed(uint64_t seed, int kind, int c, int r);
/* the centre of class c: F standard normals of its stream, divided by their norm */
void convert_synthetic_centre(double *mu /* F */, uint64_t seed, int c, int F);
/* row r of class c: x_j = (float)(mu_j + spread / sqrt(F) * z_j), z_j the normals of the row's stream */
void convert_synthetic_row(float *x /* F */, const double *mu /* F */, uint64_t seed, int kind, int c, int r, int F,
                           double spread);

#endif
