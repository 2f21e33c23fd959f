/* benchutil.h: what the benchmark commands (bench-loss, profile-loss,
 * bench-backbone) share: the loss presets of the PyTorch baseline and their
 * data, the --threads and --seconds options, medians. */
#ifndef PROXYGML_BENCHUTIL_H
#define PROXYGML_BENCHUTIL_H

typedef struct { const char *name; int B, D, C, N; double r, lambda; } BenchPreset;
#define BENCH_PRESET_NAMES "cub, sop, bigbatch"

/* the preset called name, or NULL */
const BenchPreset *bench_preset(const char *name);
/* --threads T or --seconds S at argv[*i]: 1 taken (*i moved past its
 * value), 0 another option, -1 a bad value (one line "TOOL: ..." printed) */
int bench_common_option(const char *tool, int argc, char **argv, int *i, int *threads, double *seconds);
/* the median of t[0..n) (n >= 1); sorts t */
double bench_median(double *t, int n);
/* nbatch batches of a preset's rows and its M proxies, drawn as the
 * baseline draws them: x (nbatch B x D) normal, y (nbatch B) uniform
 * classes, P (M x D) kaiming_uniform(a = sqrt 5) of a D x M tensor */
void bench_loss_data(const BenchPreset *p, int M, int nbatch, float *x, int *y, float *P);

#endif
