/* test_layers.c: linear, conv3x3, relu and maxpool2 (float32) against their
 * double `_ref` twins on random data of several (odd) shapes, including the
 * += accumulation of every gradient; and each `_ref` backward against central
 * finite differences of L = sum(g . out), skipping ReLU kinks and maxpool
 * near-ties. (l2norm is tested with the loss.) */
#include <criterion/criterion.h>

#include "common.h"
#include "layers.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FD_H 1e-6

static float *rand_f32(Rng *r, size_t n, float lo, float hi) {
  float *x = xmalloc_f32(n ? n : 1);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(r);
  return x;
}

static double *to_f64(const float *x, size_t n) {
  double *y = xmalloc_f64(n ? n : 1);
  for (size_t i = 0; i < n; i++) y[i] = x[i];
  return y;
}

static double *rand_f64(Rng *r, size_t n, double lo, double hi) {
  double *x = xmalloc_f64(n ? n : 1);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform_f64(r);
  return x;
}

static double dot(const double *a, const double *b, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += a[i] * b[i];
  return s;
}

/* central difference of f at p[i] */
static double fd(double (*f)(void *), void *ctx, double *p, size_t i) {
  double keep = p[i];
  p[i] = keep + FD_H;
  double lp = f(ctx);
  p[i] = keep - FD_H;
  double lm = f(ctx);
  p[i] = keep;
  return (lp - lm) / (2 * FD_H);
}

/* ---------------------------------------------------------------- linear */

static void linear_case(int B, int Fin, int Fout, int with_dinp, uint64_t seed) {
  Rng r; rng_init(&r, seed);
  size_t ni = (size_t)B * Fin, nw = (size_t)Fout * Fin, no = (size_t)B * Fout;
  float *x = rand_f32(&r, ni, -1, 1), *w = rand_f32(&r, nw, -1, 1), *b = rand_f32(&r, Fout, -1, 1);
  float *g = rand_f32(&r, no, -1, 1);
  /* gradients start non-zero: the kernels must accumulate */
  float *dx = rand_f32(&r, ni, -1, 1), *dw = rand_f32(&r, nw, -1, 1), *db = rand_f32(&r, Fout, -1, 1);
  double *xd = to_f64(x, ni), *wd = to_f64(w, nw), *bd = to_f64(b, Fout), *gd = to_f64(g, no);
  double *dxd = to_f64(dx, ni), *dwd = to_f64(dw, nw), *dbd = to_f64(db, Fout);
  float *out = xmalloc_f32(no); double *outd = xmalloc_f64(no);

  linear_forward(out, x, w, b, B, Fin, Fout);
  linear_forward_ref(outd, xd, wd, bd, B, Fin, Fout);
  linear_backward(with_dinp ? dx : NULL, dw, db, g, x, w, B, Fin, Fout);
  linear_backward_ref(with_dinp ? dxd : NULL, dwd, dbd, gd, xd, wd, B, Fin, Fout);

  char lab[96];
  snprintf(lab, sizeof lab, "linear B=%d Fin=%d Fout=%d", B, Fin, Fout);
  cr_expect(check_close_f32(lab, out, outd, no, 1e-6, 2e-6), "%s: out", lab);
  cr_expect(check_close_f32(lab, dx, dxd, ni, 1e-6, 2e-6), "%s: dinp", lab);
  cr_expect(check_close_f32(lab, dw, dwd, nw, 1e-6, 2e-6), "%s: dweight", lab);
  cr_expect(check_close_f32(lab, db, dbd, Fout, 1e-6, 2e-6), "%s: dbias", lab);
  free(x); free(w); free(b); free(g); free(dx); free(dw); free(db); free(out);
  free(xd); free(wd); free(bd); free(gd); free(dxd); free(dwd); free(dbd); free(outd);
}

Test(linear, matches_ref) {
  linear_case(1, 1, 1, 1, 1);
  linear_case(3, 5, 7, 1, 2);
  linear_case(17, 33, 9, 1, 3);
  linear_case(64, 784, 13, 1, 4);
  linear_case(5, 100, 301, 1, 5);
  linear_case(7, 31, 11, 0, 6);   /* no input gradient */
}

typedef struct { double *x, *w, *b, *g, *out; int B, Fin, Fout; } LinCtx;

static double linear_loss(void *p) {
  LinCtx *c = p;
  linear_forward_ref(c->out, c->x, c->w, c->b, c->B, c->Fin, c->Fout);
  return dot(c->g, c->out, (size_t)c->B * c->Fout);
}

Test(linear, ref_backward_finite_differences) {
  Rng r; rng_init(&r, 11);
  LinCtx c = {.B = 3, .Fin = 5, .Fout = 4};
  size_t ni = c.B * c.Fin, nw = c.Fout * c.Fin, no = c.B * c.Fout;
  c.x = rand_f64(&r, ni, -1, 1); c.w = rand_f64(&r, nw, -1, 1); c.b = rand_f64(&r, c.Fout, -1, 1);
  c.g = rand_f64(&r, no, -1, 1); c.out = xmalloc_f64(no);
  double *dx = calloc(ni, sizeof *dx), *dw = calloc(nw, sizeof *dw), *db = calloc(c.Fout, sizeof *db);
  linear_backward_ref(dx, dw, db, c.g, c.x, c.w, c.B, c.Fin, c.Fout);
  double *num = xmalloc_f64(nw);
  for (size_t i = 0; i < ni; i++) num[i] = fd(linear_loss, &c, c.x, i);
  cr_expect(check_close("linear fd dinp", dx, num, ni, 1e-8, 1e-7));
  for (size_t i = 0; i < nw; i++) num[i] = fd(linear_loss, &c, c.w, i);
  cr_expect(check_close("linear fd dweight", dw, num, nw, 1e-8, 1e-7));
  for (int i = 0; i < c.Fout; i++) num[i] = fd(linear_loss, &c, c.b, i);
  cr_expect(check_close("linear fd dbias", db, num, c.Fout, 1e-8, 1e-7));
  free(c.x); free(c.w); free(c.b); free(c.g); free(c.out); free(dx); free(dw); free(db); free(num);
}

/* --------------------------------------------------------------- conv3x3 */

static void conv_case(int B, int Cin, int Cout, int H, int W, int with_dinp, uint64_t seed) {
  Rng r; rng_init(&r, seed);
  size_t ni = (size_t)B * Cin * H * W, nw = (size_t)Cout * Cin * 9, no = (size_t)B * Cout * H * W;
  float *x = rand_f32(&r, ni, -1, 1), *w = rand_f32(&r, nw, -1, 1), *b = rand_f32(&r, Cout, -1, 1);
  float *g = rand_f32(&r, no, -1, 1);
  float *dx = rand_f32(&r, ni, -1, 1), *dw = rand_f32(&r, nw, -1, 1), *db = rand_f32(&r, Cout, -1, 1);
  double *xd = to_f64(x, ni), *wd = to_f64(w, nw), *bd = to_f64(b, Cout), *gd = to_f64(g, no);
  double *dxd = to_f64(dx, ni), *dwd = to_f64(dw, nw), *dbd = to_f64(db, Cout);
  float *out = xmalloc_f32(no), *cache = xmalloc_f32(conv3x3_cache_size(B, Cin, H, W));
  float *scratch = xmalloc_f32(conv3x3_scratch_size(B, Cin, Cout, H, W));
  double *outd = xmalloc_f64(no);

  conv3x3_forward(out, cache, scratch, x, w, b, B, Cin, Cout, H, W);
  conv3x3_forward_ref(outd, xd, wd, bd, B, Cin, Cout, H, W);
  conv3x3_backward(with_dinp ? dx : NULL, dw, db, scratch, cache, g, w, B, Cin, Cout, H, W);
  conv3x3_backward_ref(with_dinp ? dxd : NULL, dwd, dbd, gd, xd, wd, B, Cin, Cout, H, W);

  /* Winograd's transforms add a few ulps of the largest terms */
  double rtol = conv3x3_winograd(Cin) ? 1e-5 : 2e-6;
  char lab[96];
  snprintf(lab, sizeof lab, "conv3x3 %s B=%d Cin=%d Cout=%d H=%d W=%d", conv3x3_winograd(Cin) ? "winograd" : "im2col",
           B, Cin, Cout, H, W);
  cr_expect(check_close_f32(lab, out, outd, no, 1e-6, rtol), "%s: out", lab);
  cr_expect(check_close_f32(lab, dx, dxd, ni, 1e-6, rtol), "%s: dinp", lab);
  cr_expect(check_close_f32(lab, dw, dwd, nw, 1e-6, rtol), "%s: dweight", lab);
  cr_expect(check_close_f32(lab, db, dbd, Cout, 1e-6, rtol), "%s: dbias", lab);
  free(x); free(w); free(b); free(g); free(dx); free(dw); free(db); free(out); free(cache); free(scratch);
  free(xd); free(wd); free(bd); free(gd); free(dxd); free(dwd); free(dbd); free(outd);
}

Test(conv3x3, matches_ref) {
  /* im2col: few input channels */
  cr_expect(!conv3x3_winograd(1) && !conv3x3_winograd(3) && conv3x3_winograd(8) && conv3x3_winograd(32));
  conv_case(1, 1, 1, 1, 1, 1, 1);
  conv_case(2, 3, 5, 7, 5, 1, 2);
  conv_case(3, 1, 4, 6, 9, 1, 3);
  conv_case(3, 2, 3, 1, 6, 1, 4);      /* a single row */
  conv_case(2, 4, 9, 5, 8, 1, 5);      /* Cin*9 = 36: sgemm for dweight */
  conv_case(3, 1, 32, 28, 28, 0, 6);   /* the cnn's first conv: no input gradient */
  /* Winograd */
  conv_case(1, 8, 1, 1, 1, 1, 11);
  conv_case(2, 8, 5, 7, 5, 1, 12);     /* odd sizes: half tiles */
  conv_case(3, 9, 4, 1, 6, 1, 13);
  conv_case(2, 11, 3, 6, 1, 1, 14);
  conv_case(5, 13, 7, 11, 13, 1, 15);
  conv_case(2, 16, 6, 4, 4, 0, 16);
  conv_case(4, 32, 64, 14, 14, 1, 17);  /* the cnn's second conv */
  conv_case(5, 16, 16, 42, 42, 1, 18);  /* big planes: the batch goes in chunks of 2, 2, 1 */
  conv_case(3, 16, 24, 45, 43, 1, 19);  /* chunks of 1 sample, odd sizes */
}

typedef struct { double *x, *w, *b, *g, *out; int B, Cin, Cout, H, W; } ConvCtx;

static double conv_loss(void *p) {
  ConvCtx *c = p;
  conv3x3_forward_ref(c->out, c->x, c->w, c->b, c->B, c->Cin, c->Cout, c->H, c->W);
  return dot(c->g, c->out, (size_t)c->B * c->Cout * c->H * c->W);
}

Test(conv3x3, ref_backward_finite_differences) {
  Rng r; rng_init(&r, 12);
  ConvCtx c = {.B = 2, .Cin = 2, .Cout = 3, .H = 5, .W = 4};
  size_t ni = (size_t)c.B * c.Cin * c.H * c.W, nw = (size_t)c.Cout * c.Cin * 9, no = (size_t)c.B * c.Cout * c.H * c.W;
  c.x = rand_f64(&r, ni, -1, 1); c.w = rand_f64(&r, nw, -1, 1); c.b = rand_f64(&r, c.Cout, -1, 1);
  c.g = rand_f64(&r, no, -1, 1); c.out = xmalloc_f64(no);
  double *dx = calloc(ni, sizeof *dx), *dw = calloc(nw, sizeof *dw), *db = calloc(c.Cout, sizeof *db);
  conv3x3_backward_ref(dx, dw, db, c.g, c.x, c.w, c.B, c.Cin, c.Cout, c.H, c.W);
  double *num = xmalloc_f64(ni > nw ? ni : nw);
  for (size_t i = 0; i < ni; i++) num[i] = fd(conv_loss, &c, c.x, i);
  cr_expect(check_close("conv3x3 fd dinp", dx, num, ni, 1e-8, 1e-7));
  for (size_t i = 0; i < nw; i++) num[i] = fd(conv_loss, &c, c.w, i);
  cr_expect(check_close("conv3x3 fd dweight", dw, num, nw, 1e-8, 1e-7));
  for (int i = 0; i < c.Cout; i++) num[i] = fd(conv_loss, &c, c.b, i);
  cr_expect(check_close("conv3x3 fd dbias", db, num, c.Cout, 1e-8, 1e-7));
  free(c.x); free(c.w); free(c.b); free(c.g); free(c.out); free(dx); free(dw); free(db); free(num);
}

/* ------------------------------------------------------------------ relu */

Test(relu, matches_ref) {
  const long sizes[] = {1, 7, 1001, 200003};   /* the last one takes the OpenMP path */
  for (int s = 0; s < 4; s++) {
    long n = sizes[s];
    Rng r; rng_init(&r, 20 + s);
    float *x = rand_f32(&r, n, -1, 1), *g = rand_f32(&r, n, -1, 1), *dx = rand_f32(&r, n, -1, 1);
    float *out = xmalloc_f32(n);
    double *xd = to_f64(x, n), *gd = to_f64(g, n), *dxd = to_f64(dx, n), *outd = xmalloc_f64(n);
    relu_forward(out, x, n);
    relu_forward_ref(outd, xd, n);
    relu_backward(dx, g, out, n);
    relu_backward_ref(dxd, gd, outd, n);
    cr_expect(check_close_f32("relu out", out, outd, n, 0, 0));
    cr_expect(check_close_f32("relu dinp", dx, dxd, n, 0, 0));
    relu_forward(x, x, n);   /* in place is allowed */
    cr_expect(check_close_f32("relu in place", x, outd, n, 0, 0));
    free(x); free(g); free(dx); free(out); free(xd); free(gd); free(dxd); free(outd);
  }
}

typedef struct { double *x, *g, *out; long n; } ReluCtx;

static double relu_loss(void *p) {
  ReluCtx *c = p;
  relu_forward_ref(c->out, c->x, c->n);
  return dot(c->g, c->out, c->n);
}

Test(relu, ref_backward_finite_differences) {
  Rng r; rng_init(&r, 13);
  ReluCtx c = {.n = 257};
  c.x = rand_f64(&r, c.n, -1, 1); c.g = rand_f64(&r, c.n, -1, 1); c.out = xmalloc_f64(c.n);
  double *dx = calloc(c.n, sizeof *dx), *num = xmalloc_f64(c.n);
  relu_forward_ref(c.out, c.x, c.n);
  relu_backward_ref(dx, c.g, c.out, c.n);
  int used = 0;
  for (long i = 0; i < c.n; i++) {
    if (fabs(c.x[i]) < 1e3 * FD_H) { num[i] = dx[i]; continue; }   /* a kink */
    num[i] = fd(relu_loss, &c, c.x, i);
    used++;
  }
  cr_expect(used > c.n / 2);
  cr_expect(check_close("relu fd dinp", dx, num, c.n, 1e-8, 1e-7));
  free(c.x); free(c.g); free(c.out); free(dx); free(num);
}

/* -------------------------------------------------------------- maxpool2 */

static void maxpool_case(int B, int C, int H, int W, int ties, uint64_t seed) {
  Rng r; rng_init(&r, seed);
  const int Ho = H / 2, Wo = W / 2;
  size_t ni = (size_t)B * C * H * W, no = (size_t)B * C * Ho * Wo;
  float *x = rand_f32(&r, ni, -1, 1);
  if (ties)   /* few distinct values: most windows hold ties */
    for (size_t i = 0; i < ni; i++) x[i] = (float)rng_below(&r, 3);
  float *g = rand_f32(&r, no, -1, 1), *dx = rand_f32(&r, ni, -1, 1), *out = xmalloc_f32(no);
  double *xd = to_f64(x, ni), *gd = to_f64(g, no), *dxd = to_f64(dx, ni), *outd = xmalloc_f64(no);
  int *idx = xmalloc(no * sizeof *idx), *idxd = xmalloc(no * sizeof *idxd);

  maxpool2_forward(out, idx, x, B, C, H, W);
  maxpool2_forward_ref(outd, idxd, xd, B, C, H, W);
  maxpool2_backward(dx, g, idx, B, C, H, W);
  maxpool2_backward_ref(dxd, gd, idxd, B, C, H, W);

  char lab[96];
  snprintf(lab, sizeof lab, "maxpool2 B=%d C=%d H=%d W=%d ties=%d", B, C, H, W, ties);
  cr_expect(check_close_f32(lab, out, outd, no, 0, 0), "%s: out", lab);
  cr_expect(check_close_f32(lab, dx, dxd, ni, 1e-7, 0), "%s: dinp", lab);
  size_t bad = 0;
  for (size_t j = 0; j < no; j++) {
    const float *plane = x + j / (Ho * Wo) * H * W;
    int oy = (int)(j % (Ho * Wo)) / Wo, ox = (int)(j % (Ho * Wo)) % Wo;
    int first = -1;   /* PyTorch's choice: the first maximum in row-major order */
    for (int dy = 0; dy < 2; dy++)
      for (int dx_ = 0; dx_ < 2; dx_++) {
        int i = (2 * oy + dy) * W + 2 * ox + dx_;
        if (first < 0 || plane[i] > plane[first]) first = i;
      }
    if (idx[j] != idxd[j] || idx[j] != first) bad++;
  }
  cr_expect(bad == 0, "%s: %zu argmax indices differ", lab, bad);
  free(x); free(g); free(dx); free(out); free(xd); free(gd); free(dxd); free(outd); free(idx); free(idxd);
}

Test(maxpool2, matches_ref) {
  maxpool_case(1, 1, 2, 2, 0, 1);
  maxpool_case(2, 3, 5, 7, 0, 2);   /* odd: the last row and column are dropped */
  maxpool_case(3, 2, 8, 9, 0, 3);
  maxpool_case(64, 32, 28, 28, 0, 4);
  maxpool_case(3, 5, 6, 7, 1, 5);
}

Test(maxpool2, nan_wins) {
  /* one plane 4 x 6, windows: [1 NaN 3 0], [NaN 2 NaN 5], [4 4 4 4] (a tie), ... */
  const float x[24] = {1, NAN, NAN, 2, 4, 4,   3, 0, NAN, 5, 4, 4,
                       0, 0, -1, -2, 7, 7,      0, 0, -3, -4, 7, 8};
  double xd[24];
  for (int i = 0; i < 24; i++) xd[i] = x[i];
  float out[6]; double outd[6]; int idx[6], idxd[6];
  maxpool2_forward(out, idx, x, 1, 1, 4, 6);
  maxpool2_forward_ref(outd, idxd, xd, 1, 1, 4, 6);
  const int want[6] = {1, 8, 4, 12, 14, 23};   /* PyTorch's: NaN wins (the last one), ties keep the first */
  for (int j = 0; j < 6; j++) {
    cr_expect(idx[j] == want[j] && idxd[j] == want[j], "window %d: idx %d, ref %d, want %d", j, idx[j], idxd[j],
              want[j]);
    cr_expect(isnan(out[j]) == isnan(x[want[j]]) && (isnan(out[j]) || out[j] == x[want[j]]));
  }
}

typedef struct { double *x, *g, *out; int *idx; int B, C, H, W; } PoolCtx;

static double pool_loss(void *p) {
  PoolCtx *c = p;
  maxpool2_forward_ref(c->out, c->idx, c->x, c->B, c->C, c->H, c->W);
  return dot(c->g, c->out, (size_t)c->B * c->C * (c->H / 2) * (c->W / 2));
}

Test(maxpool2, ref_backward_finite_differences) {
  Rng r; rng_init(&r, 14);
  PoolCtx c = {.B = 2, .C = 3, .H = 7, .W = 6};
  const int Ho = c.H / 2, Wo = c.W / 2;
  size_t ni = (size_t)c.B * c.C * c.H * c.W, no = (size_t)c.B * c.C * Ho * Wo;
  c.x = rand_f64(&r, ni, -1, 1); c.g = rand_f64(&r, no, -1, 1); c.out = xmalloc_f64(no);
  c.idx = xmalloc(no * sizeof *c.idx);
  double *dx = calloc(ni, sizeof *dx), *num = xmalloc_f64(ni);
  maxpool2_forward_ref(c.out, c.idx, c.x, c.B, c.C, c.H, c.W);
  maxpool2_backward_ref(dx, c.g, c.idx, c.B, c.C, c.H, c.W);
  int used = 0;
  for (size_t i = 0; i < ni; i++) {
    const double *plane = c.x + i / (c.H * c.W) * c.H * c.W;
    int y = (int)(i % (c.H * c.W)) / c.W, x = (int)(i % (c.H * c.W)) % c.W;
    double gap = INFINITY;   /* distance to the others of its window */
    if (y / 2 < Ho && x / 2 < Wo)
      for (int dy = 0; dy < 2; dy++)
        for (int dx_ = 0; dx_ < 2; dx_++) {
          int j = (y / 2 * 2 + dy) * c.W + x / 2 * 2 + dx_;
          if (j != y * c.W + x) gap = fmin(gap, fabs(plane[j] - c.x[i]));
        }
    if (gap < 1e3 * FD_H) { num[i] = dx[i]; continue; }   /* a near-tie */
    num[i] = fd(pool_loss, &c, c.x, i);
    used++;
  }
  cr_expect(used > (int)ni / 2);
  cr_expect(check_close("maxpool2 fd dinp", dx, num, ni, 1e-8, 1e-7));
  free(c.x); free(c.g); free(c.out); free(c.idx); free(dx); free(num);
}
