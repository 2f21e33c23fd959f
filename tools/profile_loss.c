/* profile_loss.c: `proxygml profile-loss --preset {cub,sop,bigbatch}
 * [--threads T] [--seconds S]`: where a forward+backward of the loss spends
 * its time, phase by phase (ProxyGML.phase_sec), beside sgemm alone on the
 * dense products of the same shapes, timed in the same process with the
 * two alternating so that a busy neighbour slows both alike. Prints one line
 * per phase ("phase=NAME ms=..."), then the total and the sgemm times, then
 * the proxy loop's memory traffic alone ("stream_ms=... floor_gap=..."); exit
 * 0, or 2 on bad arguments. The presets are bench-loss's (tools/bench_loss.c). */
#include "tools.h"

#include "benchutil.h"

#include "common.h"
#include "proxygml.h"
#include "rng.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double median_of(const double *t, int n, double *tmp) {
  memcpy(tmp, t, (size_t)n * sizeof *t);
  return bench_median(tmp, n);
}

/* The proxy loop's unavoidable memory traffic alone: each proxy row that has
 * a gradient (csr_start, M + 1) read, and its gradient row read and written,
 * as the loss's backward must (dP accumulates). Threads as the loss's. */
static void stream_selected(float *dP, const float *P, const int *start, int M, int D) {
#pragma omp parallel for schedule(static)
  for (int j = 0; j < M; j++) {
    if (start[j + 1] == start[j]) continue;
    float *dp = dP + (size_t)j * D;
    const float *p = P + (size_t)j * D;
    for (int d = 0; d < D; d++) dp[d] += p[d] * 1e-30f;
  }
}

int tool_profile_loss(int argc, char **argv) {
  const BenchPreset *p = NULL;
  int threads = 1;
  double seconds = 3.0;
  for (int i = 1, common; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: proxygml profile-loss --preset {cub,sop,bigbatch} [--threads T] [--seconds S]\n"
             "Median time of each phase of the loss's forward+backward, and of sgemm alone on the\n"
             "same dense products (S = x W^T; with lambda > 0 the regulariser's three products).\n");
      return 0;
    } else if (!strcmp(argv[i], "--preset") && i + 1 < argc) {
      const char *name = argv[++i];
      if (!(p = bench_preset(name))) {
        fprintf(stderr, "profile-loss: unknown preset '%s' (" BENCH_PRESET_NAMES ")\n", name);
        return 2;
      }
    } else if ((common = bench_common_option("profile-loss", argc, argv, &i, &threads, &seconds)) != 0) {
      if (common < 0) return 2;
    } else {
      fprintf(stderr, "profile-loss: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!p) { fprintf(stderr, "profile-loss: --preset is required (" BENCH_PRESET_NAMES ")\n"); return 2; }
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);

  const int B = p->B, D = p->D, C = p->C, N = p->N, M = C * N, K = proxygml_k_from_ratio(p->r, C, N);
  enum { NBATCH = 8, MAXREP = 1000 };
  float *x = xmalloc_f32((size_t)NBATCH * B * D), *P = xmalloc_f32((size_t)M * D);   /* as bench-loss */
  int *y = xmalloc((size_t)NBATCH * B * sizeof(int));
  bench_loss_data(p, M, NBATCH, x, y, P);
  float *dx = xcalloc((size_t)B * D, 4), *dP = xcalloc((size_t)M * D, 4);
  float *Sb = xmalloc_f32((size_t)B * M), *Zc = xmalloc_f32((size_t)M * C), *U = xmalloc_f32((size_t)C * D);
  float *GW = xmalloc_f32((size_t)M * D);
  for (size_t i = 0; i < (size_t)C * D; i++) U[i] = P[i];

  ProxyGML l;
  proxygml_init(&l, B, D, C, N, K, (float)p->lambda, 1.0f);
  double *ph = xmalloc((size_t)MAXREP * PROXYGML_NPHASE * sizeof(double));   /* rep x phase */
  double *tot = xmalloc(MAXREP * sizeof(double)), *gs = xmalloc(MAXREP * sizeof(double));
  double *gr = xmalloc(MAXREP * sizeof(double)), *tmp = xmalloc(MAXREP * sizeof(double));
  double *st = xmalloc(MAXREP * sizeof(double));
  int n = 0;
  double start = now_sec();
  for (int it = 0; n < MAXREP; it++) {   /* loss and sgemm alternate, step by step */
    memset(l.phase_sec, 0, sizeof l.phase_sec);
    double t0 = now_sec();
    proxygml_forward(&l, x + (size_t)(it % NBATCH) * B * D, y + (it % NBATCH) * B, P, B);
    proxygml_backward(&l, dx, dP);
    double t1 = now_sec();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, M, D, 1.0f, x, D, P, D, 0.0f, Sb, M);
    double t2 = now_sec();
    if (p->lambda > 0) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, C, D, 1.0f, P, D, U, D, 0.0f, Zc, C);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, D, C, 1.0f, Zc, C, U, D, 0.0f, GW, D);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, M, 1.0f, Zc, C, P, D, 0.0f, U, D);
    }
    double t3 = now_sec();
    stream_selected(dP, P, l.csr_start, M, D);
    double t4 = now_sec();
    if (it < 5) continue;   /* warm-up */
    for (int k = 0; k < PROXYGML_NPHASE; k++) ph[(size_t)k * MAXREP + n] = l.phase_sec[k];
    tot[n] = t1 - t0; gs[n] = t2 - t1; gr[n] = t3 - t2; st[n] = t4 - t3;
    n++;
    if (n >= 20 && t4 - start > seconds) break;
  }
  const double flops = 2.0 * B * D * M + 4.0 * B * K * D + (p->lambda > 0 ? 6.0 * M * C * D : 0);
  const double gemm_flops = 2.0 * B * D * M + (p->lambda > 0 ? 6.0 * M * C * D : 0);
  printf("preset=%s threads=%d B=%d D=%d C=%d N=%d K=%d lambda=%g reps=%d\n", p->name, threads, B, D, C, N, K,
         p->lambda, n);
  double sum = 0;
  for (int k = 0; k < PROXYGML_NPHASE; k++) {
    double m = median_of(ph + (size_t)k * MAXREP, n, tmp);
    sum += m;
    printf("phase=%-16s ms=%8.4f\n", proxygml_phase_name(k), m * 1e3);
  }
  const double mt = median_of(tot, n, tmp), ms = median_of(gs, n, tmp), mr = median_of(gr, n, tmp);
  printf("loss_ms=%.4f phases_ms=%.4f gflops=%.2f sgemm_S_ms=%.4f sgemm_reg_ms=%.4f sgemm_gflops=%.2f gap=%.2f\n",
         mt * 1e3, sum * 1e3, flops / mt * 1e-9, ms * 1e3, mr * 1e3, gemm_flops / (ms + mr) * 1e-9,
         gemm_flops / (ms + mr) / (flops / mt));
  /* the memory traffic the proxy loop cannot avoid, alone: a loss that cost
   * sgemm plus this would have floor_gap */
  const double mst = median_of(st, n, tmp);
  printf("stream_ms=%.4f floor_gap=%.2f\n", mst * 1e3, gemm_flops / (ms + mr) / (flops / (ms + mr + mst)));
  free(ph); free(tot); free(gs); free(gr); free(tmp); free(st);
  free(Sb); free(Zc); free(U); free(GW);
  free(x); free(P); free(y); free(dx); free(dP);
  proxygml_free(&l);
  return 0;
}
