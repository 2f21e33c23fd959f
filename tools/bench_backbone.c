/* bench_backbone.c: `proxygml bench-backbone --arch mlp|cnn [--batch B]
 * [--threads T] [--seconds S]`: each layer of the backbone (Fashion-MNIST
 * input, 1 x 28 x 28, embedding 128), forward and backward, timed alone with
 * the buffers of the model, beside sgemm on the GEMM shapes that layer
 * stands for: linear, its own products; conv3x3, the im2col products
 * (Cout x Cin*9 times Cin*9 x B*H*W, and the two of the backward), whatever
 * algorithm the layer runs (Winograd does fewer flops than it is credited
 * with). Layer and sgemm alternate rep by rep; medians. The backward of a
 * layer includes zeroing its input gradient, as model_backward does. relu
 * and max-pooling have no GEMM: their time counts against the network's
 * rate. Prints one line per layer and a total; exit 0, or 2 on bad arguments. */
#include "tools.h"

#include "benchutil.h"

#include "common.h"
#include "layers.h"
#include "model.h"
#include "rng.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static size_t out_size(const ModelLayer *l) { return (size_t)l->oc * l->oh * l->ow; }

/* The GEMMs a layer stands for, as (m, n, k) of C (m x n) = A (m x k) B (k x n):
 * forward first, then the backward's (dW; dX unless the input is the data). */
typedef struct { int n; int mnk[3][3]; int ta[3], tb[3]; } Gemms;   /* ta, tb: 1 = transposed, as the layer stores it */

static Gemms layer_gemms(const ModelLayer *l, int first, int B) {
  Gemms g = {0, {{0}}, {0}, {0}};
  if (l->op == MODEL_OP_LINEAR) {
    g.tb[g.n] = 1; g.mnk[g.n][0] = B; g.mnk[g.n][1] = l->oc; g.mnk[g.n++][2] = l->c;   /* out = x W^T */
    g.ta[g.n] = 1; g.mnk[g.n][0] = l->oc; g.mnk[g.n][1] = l->c; g.mnk[g.n++][2] = B;   /* dW = dout^T x */
    if (!first) { g.mnk[g.n][0] = B; g.mnk[g.n][1] = l->c; g.mnk[g.n++][2] = l->oc; }   /* dx = dout W */
  } else if (l->op == MODEL_OP_CONV3X3) {
    const int P = B * l->h * l->w, K9 = l->c * 9;
    g.mnk[g.n][0] = l->oc; g.mnk[g.n][1] = P; g.mnk[g.n++][2] = K9;          /* out = W col */
    g.tb[g.n] = 1; g.mnk[g.n][0] = l->oc; g.mnk[g.n][1] = K9; g.mnk[g.n++][2] = P;   /* dW = dout col^T */
    if (!first) { g.ta[g.n] = 1; g.mnk[g.n][0] = K9; g.mnk[g.n][1] = P; g.mnk[g.n++][2] = l->oc; }   /* dcol = W^T dout */
  }
  return g;
}

static double gemm_flops(const int *mnk) { return 2.0 * mnk[0] * mnk[1] * mnk[2]; }

int tool_bench_backbone(int argc, char **argv) {
  const char *arch = NULL;
  int B = 64, threads = 1;
  double seconds = 2.0;
  for (int i = 1, common; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: proxygml bench-backbone --arch mlp|cnn [--batch B] [--threads T] [--seconds S]\n"
             "Median forward and backward time of each layer (input 1 x 28 x 28, embedding 128, batch B,\n"
             "default 64) and of sgemm on the GEMM shapes of that layer (conv3x3: the im2col shapes).\n");
      return 0;
    } else if (!strcmp(argv[i], "--arch") && i + 1 < argc) {
      arch = argv[++i];
      if (strcmp(arch, "mlp") && strcmp(arch, "cnn")) {
        fprintf(stderr, "bench-backbone: unknown architecture '%s' (mlp, cnn)\n", arch);
        return 2;
      }
    } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
      B = atoi(argv[++i]);
      if (B < 1 || B > 4096) { fprintf(stderr, "bench-backbone: --batch must be in [1, 4096]\n"); return 2; }
    } else if ((common = bench_common_option("bench-backbone", argc, argv, &i, &threads, &seconds)) != 0) {
      if (common < 0) return 2;
    } else {
      fprintf(stderr, "bench-backbone: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!arch) { fprintf(stderr, "bench-backbone: --arch is required (mlp, cnn)\n"); return 2; }
  omp_set_num_threads(threads);
  openblas_set_num_threads(threads);

  Model m;
  if (model_init(&m, arch, 1, 28, 28, 128, B) != 0) {
    /* unreachable in tests: the fixed architectures on a fixed input always build */
    fprintf(stderr, "bench-backbone: %s\n", err_msg());
    return 2;
  }
  const size_t np = model_num_params(&m);
  float *params = xmalloc_f32(np), *grads = xcalloc(np, sizeof(float));
  Rng rng;
  rng_init(&rng, 0);
  model_bind(&m, params, grads);
  model_init_params(&m, &rng);
  float *img = xmalloc_f32((size_t)B * m.in_size), *dlast = xmalloc_f32((size_t)B * m.embed_dim);
  for (size_t i = 0; i < (size_t)B * m.in_size; i++) img[i] = rng_uniform(&rng);
  for (size_t i = 0; i < (size_t)B * m.embed_dim; i++) dlast[i] = (float)rng_normal(&rng) * 1e-3f;
  model_forward(&m, img, B);   /* every activation and cache in place */
  for (int i = 0; i < m.nlayers; i++)   /* and every gradient of an activation */
    if (m.layers[i].dout)
      for (size_t k = 0; k < (size_t)B * out_size(&m.layers[i]); k++) m.layers[i].dout[k] = (float)rng_normal(&rng) * 1e-3f;

  /* operands for the sgemms: big enough for any shape of the network */
  size_t big = 1;
  for (int i = 0; i < m.nlayers; i++) {
    Gemms g = layer_gemms(&m.layers[i], i == 0, B);
    for (int k = 0; k < g.n; k++) {
      size_t a = (size_t)g.mnk[k][0] * g.mnk[k][2], b = (size_t)g.mnk[k][2] * g.mnk[k][1], c = (size_t)g.mnk[k][0] * g.mnk[k][1];
      big = a > big ? a : big; big = b > big ? b : big; big = c > big ? c : big;
    }
  }
  float *A = xmalloc_f32(big), *Bm = xmalloc_f32(big), *Cm = xmalloc_f32(big);
  for (size_t i = 0; i < big; i++) { A[i] = rng_uniform(&rng) - 0.5f; Bm[i] = rng_uniform(&rng) - 0.5f; }

  enum { MAXREP = 4000 };
  double *tf = xmalloc(MAXREP * sizeof(double)), *tb = xmalloc(MAXREP * sizeof(double));
  double *gf = xmalloc(MAXREP * sizeof(double)), *gb = xmalloc(MAXREP * sizeof(double));
  double sum_f = 0, sum_b = 0, sum_gf = 0, sum_gb = 0, fl_f = 0, fl_b = 0;
  printf("arch=%s batch=%d threads=%d\n", arch, B, threads);
  printf("%-3s %-8s %-22s %9s %9s %9s %9s %8s %8s %8s %8s\n", "i", "layer", "shape", "fwd_ms", "sgemm_ms", "bwd_ms",
         "sgemm_ms", "fwd_GF", "sgemm_GF", "bwd_GF", "sgemm_GF");
  const double per_layer = seconds / m.nlayers;
  for (int i = 0; i < m.nlayers; i++) {
    const ModelLayer *l = &m.layers[i];
    const Gemms g = layer_gemms(l, i == 0, B);
    int n = 0;
    double start = now_sec();
    for (int it = 0; n < MAXREP; it++) {
      double t0 = now_sec();
      model_layer_forward(&m, i, B);
      double t1 = now_sec();
      model_layer_backward(&m, i, dlast, B);
      double t2 = now_sec(), sf = 0, sb = 0;
      for (int k = 0; k < g.n; k++) {   /* the forward's product, then the backward's */
        double s0 = now_sec();
        const int mm = g.mnk[k][0], nn = g.mnk[k][1], kk = g.mnk[k][2];
        cblas_sgemm(CblasRowMajor, g.ta[k] ? CblasTrans : CblasNoTrans, g.tb[k] ? CblasTrans : CblasNoTrans, mm, nn,
                    kk, 1.0f, A, g.ta[k] ? mm : kk, Bm, g.tb[k] ? kk : nn, 0.0f, Cm, nn);
        *(k == 0 ? &sf : &sb) += now_sec() - s0;
      }
      if (it < 3) continue;   /* warm-up */
      tf[n] = t1 - t0; tb[n] = t2 - t1; gf[n] = sf; gb[n] = sb;
      n++;
      if (n >= 10 && now_sec() - start > per_layer) break;
    }
    double mf = bench_median(tf, n), mb = bench_median(tb, n), mgf = bench_median(gf, n), mgb = bench_median(gb, n);
    double ff = g.n ? gemm_flops(g.mnk[0]) : 0, fb = 0;
    for (int k = 1; k < g.n; k++) fb += gemm_flops(g.mnk[k]);
    char shape[64];
    const char *name = l->op == MODEL_OP_LINEAR ? "linear" : l->op == MODEL_OP_CONV3X3 ? "conv3x3"
                       : l->op == MODEL_OP_RELU ? "relu" : "maxpool2";
    if (l->op == MODEL_OP_LINEAR) snprintf(shape, sizeof shape, "%d->%d", l->c, l->oc);
    else if (l->op == MODEL_OP_CONV3X3) snprintf(shape, sizeof shape, "%dx%dx%d->%d%s", l->c, l->h, l->w, l->oc,
                                                 conv3x3_winograd(l->c) ? " wino" : " im2col");
    else snprintf(shape, sizeof shape, "%dx%dx%d", l->c, l->h, l->w);
    if (g.n)
      printf("%-3d %-8s %-22s %9.4f %9.4f %9.4f %9.4f %8.1f %8.1f %8.1f %8.1f\n", i, name, shape, mf * 1e3, mgf * 1e3,
             mb * 1e3, mgb * 1e3, ff / mf * 1e-9, ff / mgf * 1e-9, fb / mb * 1e-9, fb / mgb * 1e-9);
    else
      printf("%-3d %-8s %-22s %9.4f %9s %9.4f %9s\n", i, name, shape, mf * 1e3, "-", mb * 1e3, "-");
    sum_f += mf; sum_b += mb; sum_gf += mgf; sum_gb += mgb; fl_f += ff; fl_b += fb;
  }
  printf("total fwd_ms=%.4f bwd_ms=%.4f sgemm_fwd_ms=%.4f sgemm_bwd_ms=%.4f gflops=%.2f sgemm_gflops=%.2f "
         "rate_vs_sgemm=%.3f\n", sum_f * 1e3, sum_b * 1e3, sum_gf * 1e3, sum_gb * 1e3, (fl_f + fl_b) / (sum_f + sum_b) * 1e-9,
         (fl_f + fl_b) / (sum_gf + sum_gb) * 1e-9, (sum_gf + sum_gb) / (sum_f + sum_b));
  free(tf); free(tb); free(gf); free(gb); free(A); free(Bm); free(Cm);
  free(img); free(dlast); free(params); free(grads);
  model_free(&m);
  return 0;
}
