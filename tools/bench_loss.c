/* bench_loss.c: `proxygml bench-loss --preset {cub,sop,bigbatch} [--loss L]
 * [--threads T] [--seconds S]`: the median forward+backward time of the loss
 * (ProxyGML, or a baseline through include/loss.h: the preset's N is
 * SoftTriple's centres, the other baselines have one proxy per class) on the
 * presets of the PyTorch baseline, and the sgemm rate of the same dense
 * products. Prints one line "preset=... threads=... median_ms=... gflops=...
 * sgemm_gflops=..."; exit 0, or 2 on bad arguments. */
#include "tools.h"

#include "common.h"
#include "loss.h"
#include "proxygml.h"
#include "rng.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *name; int B, D, C, N; double r, lambda; } Preset;
static const Preset PRESETS[] = {   /* as in the PyTorch baseline's presets */
  {"cub", 32, 512, 100, 12, 0.05, 0.3},
  {"sop", 32, 512, 11318, 1, 0.05, 0.0},
  {"bigbatch", 256, 512, 100, 12, 0.05, 0.3},
};

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *t, int n) {
  qsort(t, (size_t)n, sizeof *t, cmp_double);
  return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

int tool_bench_loss(int argc, char **argv) {
  const Preset *p = NULL;
  LossKind kind = LOSS_PROXYGML;
  int threads = 1;
  double seconds = 2.0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: proxygml bench-loss --preset {cub,sop,bigbatch} [--loss NAME] [--threads T] [--seconds S]\n"
             "NAME: proxygml (default), proxynca, proxyanchor, softtriple (N of the preset = centres),\n"
             "normsoftmax.\n"
             "Times forward+backward of the loss (median after warm-up, at least S seconds of runs)\n"
             "and the sgemm rate of the same dense products.\n");
      return 0;
    } else if (!strcmp(argv[i], "--preset") && i + 1 < argc) {
      const char *name = argv[++i];
      for (size_t k = 0; k < sizeof PRESETS / sizeof PRESETS[0]; k++)
        if (!strcmp(PRESETS[k].name, name)) p = &PRESETS[k];
      if (!p) { fprintf(stderr, "bench-loss: unknown preset '%s' (cub, sop, bigbatch)\n", name); return 2; }
    } else if (!strcmp(argv[i], "--loss") && i + 1 < argc) {
      if (loss_kind_parse(argv[++i], &kind) != 0) { fprintf(stderr, "bench-loss: %s\n", err_msg()); return 2; }
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      threads = atoi(argv[++i]);
      if (threads < 1 || threads > 256) { fprintf(stderr, "bench-loss: --threads must be in [1, 256]\n"); return 2; }
    } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
      seconds = atof(argv[++i]);
      if (!(seconds > 0 && seconds < 600)) { fprintf(stderr, "bench-loss: --seconds must be in (0, 600)\n"); return 2; }
    } else {
      fprintf(stderr, "bench-loss: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!p) { fprintf(stderr, "bench-loss: --preset is required (cub, sop, bigbatch)\n"); return 2; }
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);

  LossParams lp = loss_defaults();
  lp.kind = kind;
  lp.N = p->N;
  lp.base.st_centers = p->N;
  lp.lambda = p->lambda;
  int B = p->B, D = p->D, C = p->C, N = loss_proxies_per_class(&lp), M = C * N;
  int K = kind == LOSS_PROXYGML ? proxygml_k_from_ratio(p->r, C, N) : N;
  lp.K = K;
  enum { NBATCH = 8 };   /* cycle through a few batches, as the baseline does */
  Rng rng;
  rng_init(&rng, 0);
  float *x = xmalloc_f32((size_t)NBATCH * B * D), *P = xmalloc_f32((size_t)M * D);
  int *y = xmalloc((size_t)NBATCH * B * sizeof(int));
  for (size_t i = 0; i < (size_t)NBATCH * B * D; i++) x[i] = (float)rng_normal(&rng);
  for (int i = 0; i < NBATCH * B; i++) y[i] = (int)rng_below(&rng, (uint32_t)C);
  float bound = 1.0f / sqrtf((float)M);   /* kaiming_uniform(a=sqrt 5) on a D x M tensor: fan_in = M */
  for (size_t i = 0; i < (size_t)M * D; i++) P[i] = bound * (2 * rng_uniform(&rng) - 1);
  float *dx = xcalloc((size_t)B * D, 4), *dP = xcalloc((size_t)M * D, 4);

  Loss l;
  loss_init(&l, &lp, B, D, C);
  enum { MAXREP = 2000 };
  double *t = xmalloc(MAXREP * sizeof(double));
  int n = 0;
  double start = now_sec();
  for (int it = 0; n < MAXREP; it++) {
    const float *xb = x + (size_t)(it % NBATCH) * B * D;
    double t0 = now_sec();
    loss_forward(&l, xb, y + (it % NBATCH) * B, P, B);
    loss_backward(&l, dx, dP);
    double t1 = now_sec();
    if (it >= 10) t[n++] = t1 - t0;
    if (n >= 20 && t1 - start > seconds) break;
  }
  double med = median(t, n);
  /* useful work: S = x W^T, the sparse backward (2 products over K entries per
   * row) and, with lambda, the three D*M*C regulariser products */
  int reg = kind == LOSS_PROXYGML && p->lambda > 0;
  double flops = kind == LOSS_PROXYGML ? 2.0 * B * D * M + 4.0 * B * K * D + (reg ? 6.0 * M * C * D : 0)
                                       : 6.0 * B * D * M;   /* the baselines: three dense products */

  /* the same dense products through sgemm alone, for the achievable rate */
  float *Sb = xmalloc_f32((size_t)B * M), *Zc = xmalloc_f32((size_t)M * C), *U = xmalloc_f32((size_t)C * D);
  float *GW = xmalloc_f32((size_t)M * D);
  for (size_t i = 0; i < (size_t)C * D; i++) U[i] = P[i];
  int ng = 0;
  start = now_sec();
  for (int it = 0; ng < MAXREP; it++) {
    double t0 = now_sec();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, M, D, 1.0f, x, D, P, D, 0.0f, Sb, M);
    if (reg) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, C, D, 1.0f, P, D, U, D, 0.0f, Zc, C);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, D, C, 1.0f, Zc, C, U, D, 0.0f, GW, D);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, M, 1.0f, Zc, C, P, D, 0.0f, U, D);
    }
    double t1 = now_sec();
    if (it >= 10) t[ng++] = t1 - t0;
    if (ng >= 20 && t1 - start > seconds / 2) break;
  }
  double gemm_flops = 2.0 * B * D * M + (reg ? 6.0 * M * C * D : 0);
  double gmed = median(t, ng);
  printf("preset=%s loss=%s threads=%d median_ms=%.4f gflops=%.2f sgemm_gflops=%.2f reps=%d B=%d D=%d C=%d N=%d K=%d lambda=%g\n",
         p->name, loss_kind_name(kind), threads, med * 1e3, flops / med * 1e-9, gemm_flops / gmed * 1e-9, n, B, D, C, N, K, p->lambda);
  free(Sb); free(Zc); free(U); free(GW);
  free(t); free(x); free(P); free(y); free(dx); free(dP);
  loss_free(&l);
  return 0;
}
