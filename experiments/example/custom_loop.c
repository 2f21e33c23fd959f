/* custom_loop.c: a training loop of your own over libproxygml's public API,
 * built against the installed library through pkg-config (Makefile here):
 *
 *   make && ./custom_loop
 *
 * The data are synthetic (C classes, each a Gaussian blob in F dimensions);
 * the network is the "mlp" backbone, the loss ProxyGML, the optimizer Adam.
 * Parameters and gradients live in one flat block [network | proxies], as in
 * the library's trainer, so the optimizer touches one pointer. It prints the
 * loss as it goes down and Recall@1 of held-out points before and after, and
 * exits 1 if the loss did not go down. One process, no MPI: the library's
 * MPI parts (dist.h, the trainer) are simply not called. */
#include <proxygml/common.h>
#include <proxygml/metrics.h>
#include <proxygml/model.h>
#include <proxygml/optim.h>
#include <proxygml/proxygml.h>
#include <proxygml/rng.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { C = 8, N = 2, M = C * N, K = 6, F = 32, D = 16, B = 64, STEPS = 150, NTEST = 512 };

/* n points: class i % C, its centre plus unit noise */
static void make_points(float *x /* n x F */, int *y /* n */, int n, const float *centres /* C x F */, Rng *r) {
  for (int i = 0; i < n; i++) {
    y[i] = i % C;
    for (int f = 0; f < F; f++) x[(size_t)i * F + f] = centres[y[i] * F + f] + (float)rng_normal(r);
  }
}

/* Recall@1 of the held-out points, embedded in batches of B and L2-normalised */
static double recall_at_1(Model *m, const float *x, const int *y, int n) {
  float *emb = xmalloc_f32((size_t)n * D);
  for (int i0 = 0; i0 < n; i0 += B) {
    int b = n - i0 < B ? n - i0 : B;
    model_forward(m, x + (size_t)i0 * F, b);
    for (int i = 0; i < b; i++) {
      const float *o = m->out + (size_t)i * D;
      double s = 0;
      for (int d = 0; d < D; d++) s += (double)o[d] * o[d];
      for (int d = 0; d < D; d++) emb[(size_t)(i0 + i) * D + d] = (float)(o[d] / fmax(sqrt(s), 1e-12));
    }
  }
  Metrics r;
  const int ks[1] = {1};
  metrics_evaluate(&r, emb, y, n, D, ks, 1, NULL);
  free(emb);
  return r.recall[0];
}

int main(void) {
  Rng rng;
  rng_init(&rng, 7);
  float centres[C * F];
  for (int i = 0; i < C * F; i++) centres[i] = 0.6f * (float)rng_normal(&rng);
  float *test_x = xmalloc_f32((size_t)NTEST * F);
  int *test_y = xmalloc(NTEST * sizeof(int));
  make_points(test_x, test_y, NTEST, centres, &rng);

  /* the network: F values per sample are an F x 1 x 1 input */
  Model m;
  if (model_init(&m, "mlp", F, 1, 1, D, B) != 0) {
    fprintf(stderr, "custom_loop: %s\n", err_msg());
    return 2;
  }
  size_t n_net = model_num_params(&m), n = n_net + (size_t)M * D;
  float *params = xmalloc_f32(n), *grads = xmalloc_f32(n);
  float *proxies = params + n_net, *dproxies = grads + n_net;   /* M x D */
  model_bind(&m, params, grads);
  model_init_params(&m, &rng);
  for (size_t i = 0; i < (size_t)M * D; i++) proxies[i] = (2 * rng_uniform(&rng) - 1) / sqrtf((float)M);

  ProxyGML loss;
  proxygml_init(&loss, B, D, C, N, K, 0.3f, 1.0f);
  Adam opt;
  adam_init(&opt, n, 0.9, 0.999, 0.01, 1e-4);
  adam_add_group(&opt, 0, n_net, 1e-3);    /* the network */
  adam_add_group(&opt, n_net, n, 0.03);    /* the proxies */

  double r1_before = recall_at_1(&m, test_x, test_y, NTEST);
  float *x = xmalloc_f32((size_t)B * F), *dx = xmalloc_f32((size_t)B * D);
  int y[B];
  double first = 0, last = 0;   /* mean loss of the first and the last 10 steps */
  for (int step = 1; step <= STEPS; step++) {
    make_points(x, y, B, centres, &rng);
    memset(grads, 0, n * sizeof *grads);   /* backward passes add (+=) to their gradients */
    memset(dx, 0, (size_t)B * D * sizeof *dx);
    model_forward(&m, x, B);
    float l = proxygml_forward(&loss, m.out, y, proxies, B);
    proxygml_backward(&loss, dx, dproxies);
    model_backward(&m, dx, B);
    adam_step(&opt, params, grads);
    if (step <= 10) first += l / 10.0;
    if (step > STEPS - 10) last += l / 10.0;
    if (step == 1 || step % 25 == 0) printf("step %3d  loss %.4f\n", step, l);
  }
  double r1_after = recall_at_1(&m, test_x, test_y, NTEST);
  printf("Recall@1 of %d held-out points: %.3f before, %.3f after\n", NTEST, r1_before, r1_after);
  int ok = last < first;
  printf("loss %s: %.4f over the first 10 steps, %.4f over the last 10\n", ok ? "decreased" : "did NOT decrease", first,
         last);

  free(x); free(dx); free(params); free(grads); free(test_x); free(test_y);
  adam_free(&opt);
  proxygml_free(&loss);
  model_free(&m);
  return ok ? 0 : 1;
}
