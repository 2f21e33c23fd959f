/* benchutil.c: see benchutil.h. */
#include "benchutil.h"

#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const BenchPreset PRESETS[] = {   /* as in the PyTorch baseline's presets */
  {"cub", 32, 512, 100, 12, 0.05, 0.3},
  {"sop", 32, 512, 11318, 1, 0.05, 0.0},
  {"bigbatch", 256, 512, 100, 12, 0.05, 0.3},
};

const BenchPreset *bench_preset(const char *name) {
  for (size_t k = 0; k < sizeof PRESETS / sizeof PRESETS[0]; k++)
    if (!strcmp(PRESETS[k].name, name)) return &PRESETS[k];
  return NULL;
}

int bench_common_option(const char *tool, int argc, char **argv, int *i, int *threads, double *seconds) {
  if (*i + 1 >= argc) return 0;
  if (!strcmp(argv[*i], "--threads")) {
    *threads = atoi(argv[++*i]);
    if (*threads < 1 || *threads > 256) { fprintf(stderr, "%s: --threads must be in [1, 256]\n", tool); return -1; }
    return 1;
  }
  if (!strcmp(argv[*i], "--seconds")) {
    *seconds = atof(argv[++*i]);
    if (!(*seconds > 0 && *seconds < 600)) { fprintf(stderr, "%s: --seconds must be in (0, 600)\n", tool); return -1; }
    return 1;
  }
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double bench_median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

void bench_loss_data(const BenchPreset *p, int M, int nbatch, float *x, int *y, float *P) {
  Rng rng;
  rng_init(&rng, 0);
  const size_t rows = (size_t)nbatch * p->B;
  for (size_t i = 0; i < rows * p->D; i++) x[i] = (float)rng_normal(&rng);
  for (size_t i = 0; i < rows; i++) y[i] = (int)rng_below(&rng, (uint32_t)p->C);
  float bound = 1.0f / sqrtf((float)M);   /* fan_in of the D x M tensor = M */
  for (size_t i = 0; i < (size_t)M * p->D; i++) P[i] = bound * (2 * rng_uniform(&rng) - 1);
}
