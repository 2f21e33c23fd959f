/* bench_loss.c: `proxygml bench-loss --preset {cub,sop,bigbatch} [--loss L]
 * [--threads T] [--seconds S]`: the median forward+backward time of the loss
 * (ProxyGML, or a baseline through include/loss.h: the preset's N is
 * SoftTriple's centres, the other baselines have one proxy per class) on the
 * presets of the PyTorch baseline, and the sgemm rate of the same dense
 * products. Prints one line "preset=... threads=... median_ms=... gflops=...
 * sgemm_gflops=..."; exit 0, or 2 on bad arguments. */
#include "tools.h"

#include "benchutil.h"

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

int tool_bench_loss(int argc, char **argv) {
  const BenchPreset *p = NULL;
  LossKind kind = LOSS_PROXYGML;
  int threads = 1;
  double seconds = 2.0;
  for (int i = 1, common; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: proxygml bench-loss --preset {cub,sop,bigbatch} [--loss NAME] [--threads T] [--seconds S]\n"
             "NAME: proxygml (default), proxynca, proxyanchor, softtriple (N of the preset = centres),\n"
             "normsoftmax.\n"
             "Times forward+backward of the loss (median after warm-up, at least S seconds of runs)\n"
             "and the sgemm rate of the same dense products.\n");
      return 0;
    } else if (!strcmp(argv[i], "--preset") && i + 1 < argc) {
      const char *name = argv[++i];
      if (!(p = bench_preset(name))) {
        fprintf(stderr, "bench-loss: unknown preset '%s' (" BENCH_PRESET_NAMES ")\n", name);
        return 2;
      }
    } else if (!strcmp(argv[i], "--loss") && i + 1 < argc) {
      if (loss_kind_parse(argv[++i], &kind) != 0) { fprintf(stderr, "bench-loss: %s\n", err_msg()); return 2; }
    } else if ((common = bench_common_option("bench-loss", argc, argv, &i, &threads, &seconds)) != 0) {
      if (common < 0) return 2;
    } else {
      fprintf(stderr, "bench-loss: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!p) { fprintf(stderr, "bench-loss: --preset is required (" BENCH_PRESET_NAMES ")\n"); return 2; }
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
  float *x = xmalloc_f32((size_t)NBATCH * B * D), *P = xmalloc_f32((size_t)M * D);
  int *y = xmalloc((size_t)NBATCH * B * sizeof(int));
  bench_loss_data(p, M, NBATCH, x, y, P);
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
  double med = bench_median(t, n);
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
  double gmed = bench_median(t, ng);
  printf("preset=%s loss=%s threads=%d median_ms=%.4f gflops=%.2f sgemm_gflops=%.2f reps=%d B=%d D=%d C=%d N=%d K=%d lambda=%g\n",
         p->name, loss_kind_name(kind), threads, med * 1e3, flops / med * 1e-9, gemm_flops / gmed * 1e-9, n, B, D, C, N, K, p->lambda);
  free(Sb); free(Zc); free(U); free(GW);
  free(t); free(x); free(P); free(y); free(dx); free(dP);
  loss_free(&l);
  return 0;
}
