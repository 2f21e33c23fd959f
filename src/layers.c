/* layers.c: backbone layers (see include/layers.h): l2norm, linear, conv3x3,
 * relu, maxpool2, each with a plain double `_ref` twin. Dense products go
 * through OpenBLAS; OpenMP splits the batch where BLAS does not thread. */
#include "layers.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* ---------------------------------------------------------------- l2norm */

void l2norm_forward(float *out, float *norm, const float *inp, int B, int D) {
#pragma omp parallel for schedule(static) if (B * D > 32768)
  for (int b = 0; b < B; b++) {
    const float *x = inp + (long)b * D;
    float *y = out + (long)b * D;
    double ss = 0;   /* double accumulation: norms enter every gradient */
#pragma omp simd reduction(+ : ss)
    for (int d = 0; d < D; d++) ss += (double)x[d] * x[d];
    double n = fmax(sqrt(ss), 1e-12);
    float inv = (float)(1.0 / n);
    norm[b] = (float)n;
    for (int d = 0; d < D; d++) y[d] = x[d] * inv;
  }
}

void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int B, int D) {
#pragma omp parallel for schedule(static) if (B * D > 32768)
  for (int b = 0; b < B; b++) {
    const float *g = dout + (long)b * D, *y = out + (long)b * D;
    float *dx = dinp + (long)b * D;
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int d = 0; d < D; d++) dot += (double)y[d] * g[d];
    float inv = 1.0f / norm[b], fdot = (float)dot;
    if (norm[b] <= 1e-12f) fdot = 0;   /* clamped: the map is linear, gradient g / 1e-12 */
    for (int d = 0; d < D; d++) dx[d] += (g[d] - y[d] * fdot) * inv;
  }
}

void l2norm_forward_ref(double *out, double *norm, const double *inp, int B, int D) {
  for (int b = 0; b < B; b++) {
    double ss = 0;
    for (int d = 0; d < D; d++) ss += inp[b * D + d] * inp[b * D + d];
    norm[b] = fmax(sqrt(ss), 1e-12);
    for (int d = 0; d < D; d++) out[b * D + d] = inp[b * D + d] / norm[b];
  }
}

void l2norm_backward_ref(double *dinp, const double *dout, const double *out, const double *norm, int B, int D) {
  for (int b = 0; b < B; b++) {
    double dot = 0;
    for (int d = 0; d < D; d++) dot += out[b * D + d] * dout[b * D + d];
    if (norm[b] <= 1e-12) dot = 0;
    for (int d = 0; d < D; d++) dinp[b * D + d] += (dout[b * D + d] - out[b * D + d] * dot) / norm[b];
  }
}

/* [the other layers follow below this line] */

/* Threads: every kernel below parallelises with OpenMP itself and calls BLAS
 * single-threaded inside its region. One pool of threads, never two: the
 * pthread OpenBLAS would otherwise run its own workers on top of OpenMP's
 * (and they keep spinning ~0.1 s after each call), oversubscribing the cores
 * (docs/infra.md, 3). openblas_set_num_threads only sets a counter once the
 * pool exists, so switching per call is cheap. */
static int blas_serial_begin(void) {
  int n = openblas_get_num_threads();
  if (n != 1) openblas_set_num_threads(1);
  return n;
}

static void blas_serial_end(int n) {
  if (n != 1) openblas_set_num_threads(n);
}

/* [lo, hi) of thread t of T over n items, boundaries on multiples of 16
 * floats (a cache line) so neighbouring threads do not share lines */
static void split16(int n, int t, int T, int *lo, int *hi) {
  int blocks = (n + 15) / 16;
  *lo = (int)((long)blocks * t / T) * 16;
  *hi = (int)((long)blocks * (t + 1) / T) * 16;
  if (*lo > n) *lo = n;
  if (*hi > n) *hi = n;
}

/* ---------------------------------------------------------------- linear */

/* Each thread owns a block of output features (forward, dweight, dbias) or
 * of input features (dinp): no reductions, and the result does not depend on
 * the thread count beyond BLAS's own blocking. */
void linear_forward(float *out, const float *inp, const float *weight, const float *bias, int B, int Fin, int Fout) {
  assert(B >= 0 && Fin > 0 && Fout > 0 && bias);
  if (B == 0) return;
  int nblas = blas_serial_begin();
#pragma omp parallel if ((long)B * Fin * Fout > 100000)
  {
    int o0, o1;
    split16(Fout, omp_get_thread_num(), omp_get_num_threads(), &o0, &o1);
    if (o1 > o0) {
      for (int b = 0; b < B; b++) memcpy(out + (long)b * Fout + o0, bias + o0, (o1 - o0) * sizeof *out);
      /* B x (o1-o0) += (B x Fin) . (Fin x (o1-o0)) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, o1 - o0, Fin, 1.0f, inp, Fin, weight + (long)o0 * Fin,
                  Fin, 1.0f, out + o0, Fout);
    }
  }
  blas_serial_end(nblas);
}

void linear_backward(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                     const float *weight, int B, int Fin, int Fout) {
  assert(B >= 0 && Fin > 0 && Fout > 0);
  if (B == 0) return;
  int nblas = blas_serial_begin();
#pragma omp parallel if ((long)B * Fin * Fout > 100000)
  {
    int t = omp_get_thread_num(), T = omp_get_num_threads(), lo, hi;
    split16(Fout, t, T, &lo, &hi);
    if (hi > lo) {   /* (hi-lo) x Fin += (B x (hi-lo))^T . (B x Fin) */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, Fin, B, 1.0f, dout + lo, Fout, inp, Fin, 1.0f,
                  dweight + (long)lo * Fin, Fin);
      for (int b = 0; b < B; b++)
        for (int o = lo; o < hi; o++) dbias[o] += dout[(long)b * Fout + o];
    }
    split16(Fin, t, T, &lo, &hi);
    if (dinp && hi > lo)   /* B x (hi-lo) += (B x Fout) . (Fout x (hi-lo)) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, hi - lo, Fout, 1.0f, dout, Fout, weight + lo, Fin,
                  1.0f, dinp + lo, Fin);
  }
  blas_serial_end(nblas);
}

void linear_forward_ref(double *out, const double *inp, const double *weight, const double *bias,
                        int B, int Fin, int Fout) {
  for (int b = 0; b < B; b++)
    for (int o = 0; o < Fout; o++) {
      double s = bias[o];
      for (int i = 0; i < Fin; i++) s += inp[(long)b * Fin + i] * weight[(long)o * Fin + i];
      out[(long)b * Fout + o] = s;
    }
}

void linear_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout, const double *inp,
                         const double *weight, int B, int Fin, int Fout) {
  for (int b = 0; b < B; b++)
    for (int o = 0; o < Fout; o++) {
      double g = dout[(long)b * Fout + o];
      dbias[o] += g;
      for (int i = 0; i < Fin; i++) {
        dweight[(long)o * Fin + i] += g * inp[(long)b * Fin + i];
        if (dinp) dinp[(long)b * Fin + i] += g * weight[(long)o * Fin + i];
      }
    }
}

/* --------------------------------------------------------------- conv3x3 */

/* col row k = (c*3 + ky)*3 + kx holds the input plane c shifted by
 * (dy, dx) = (ky-1, kx-1), zero outside: the k-th column of the 3x3 patches.
 * Each row is one block copy of the shifted plane (rows are short, 14 or 28
 * floats, so per-row copies would cost more in calls than in bytes), then
 * the column that wrapped around the row edge is zeroed. */
static void im2col3x3(float *col /* Cin*9 x H*W */, const float *img /* Cin x H x W */, int Cin, int H, int W) {
  const int P = H * W;
  for (int c = 0; c < Cin; c++)
    for (int k = 0; k < 9; k++) {
      const int dy = k / 3 - 1, dx = k % 3 - 1;
      const int y0 = dy < 0 ? 1 : 0, y1 = dy > 0 ? H - 1 : H;   /* rows whose source row exists */
      float *row = col + (long)(c * 9 + k) * P;
      const float *plane = img + (long)c * P;
      if (y1 <= y0) { memset(row, 0, P * sizeof *row); continue; }
      memset(row, 0, y0 * W * sizeof *row);
      memset(row + y1 * W, 0, (P - y1 * W) * sizeof *row);
      const int j0 = y0 * W + (dx < 0), j1 = y1 * W - (dx > 0), shift = dy * W + dx;
      memcpy(row + j0, plane + j0 + shift, (j1 - j0) * sizeof *row);
      if (dx < 0) for (int y = y0; y < y1; y++) row[y * W] = 0;
      if (dx > 0) for (int y = y0; y < y1; y++) row[y * W + W - 1] = 0;
    }
}

/* the adjoint of im2col3x3: img += the rows shifted back. The entries of
 * col that fall on padding are zeroed first (col is scratch), so each row is
 * again one block operation. */
static void col2im3x3_add(float *img /* Cin x H x W */, float *col /* Cin*9 x H*W, clobbered */, int Cin, int H,
                          int W) {
  const int P = H * W;
  for (int c = 0; c < Cin; c++)
    for (int k = 0; k < 9; k++) {
      const int dy = k / 3 - 1, dx = k % 3 - 1;
      const int y0 = dy < 0 ? 1 : 0, y1 = dy > 0 ? H - 1 : H;
      if (y1 <= y0) continue;
      float *restrict row = col + (long)(c * 9 + k) * P;
      float *restrict plane = img + (long)c * P;
      if (dx < 0) for (int y = y0; y < y1; y++) row[y * W] = 0;
      if (dx > 0) for (int y = y0; y < y1; y++) row[y * W + W - 1] = 0;
      const int j0 = y0 * W + (dx < 0), j1 = y1 * W - (dx > 0), shift = dy * W + dx;
      for (int j = j0; j < j1; j++) plane[j + shift] += row[j];
    }
}

/* dbias[o] += sum over the batch and the plane of dout[b][o][.]; float
 * partial sums per plane (vectorised), double across planes */
static void conv_dbias(float *dbias, const float *dout, int B, int Cout, int P, int o) {
  double s = 0;
  for (int b = 0; b < B; b++) {
    const float *g = dout + ((long)b * Cout + o) * P;
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int p = 0; p < P; p++) acc += g[p];
    s += acc;
  }
  dbias[o] += (float)s;
}

void conv3x3_forward(float *out, float *col, const float *inp, const float *weight, const float *bias,
                     int B, int Cin, int Cout, int H, int W) {
  assert(B >= 0 && Cin > 0 && Cout > 0 && H > 0 && W > 0);
  const int K = Cin * 9, P = H * W;
  int nblas = blas_serial_begin();
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    float *colb = col + (long)b * K * P, *outb = out + (long)b * Cout * P;
    im2col3x3(colb, inp + (long)b * Cin * P, Cin, H, W);
    for (int o = 0; o < Cout; o++)
      for (int p = 0; p < P; p++) outb[(long)o * P + p] = bias[o];
    /* Cout x P += (Cout x K) . (K x P) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, P, K, 1.0f, weight, K, colb, P, 1.0f, outb, P);
  }
  blas_serial_end(nblas);
}

void conv3x3_backward(float *dinp, float *dweight, float *dbias, float *dcol, const float *col, const float *dout,
                      const float *weight, int B, int Cin, int Cout, int H, int W) {
  assert(B >= 0 && Cin > 0 && Cout > 0 && H > 0 && W > 0);
  const int K = Cin * 9, P = H * W;
  int nblas = blas_serial_begin();
#pragma omp parallel
  {
    /* dweight = sum_b dout_b . col_b^T: each thread owns a block of it and
     * sums over the whole batch, so no reduction and a fixed order */
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    if (K >= 32) {   /* threads own column blocks [k0, k1) */
      int k0 = (int)((long)K * t / T), k1 = (int)((long)K * (t + 1) / T);
      for (int b = 0; b < B && k1 > k0; b++)   /* Cout x (k1-k0) += (Cout x P) . (P x (k1-k0)) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cout, k1 - k0, P, 1.0f, dout + (long)b * Cout * P, P,
                    col + ((long)b * K + k0) * P, P, 1.0f, dweight + k0, K);
    } else {   /* a first layer (Cin*9 = 9, 27): sgemm is slow with so few columns; threads own rows */
      int o0 = (int)((long)Cout * t / T), o1 = (int)((long)Cout * (t + 1) / T);
      for (int b = 0; b < B; b++)
        for (int o = o0; o < o1; o++) {
          const float *g = dout + ((long)b * Cout + o) * P;
          for (int k = 0; k < K; k++) {
            const float *c = col + ((long)b * K + k) * P;
            float acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int p = 0; p < P; p++) acc += g[p] * c[p];
            dweight[(long)o * K + k] += acc;
          }
        }
    }
#pragma omp for schedule(static)
    for (int o = 0; o < Cout; o++) conv_dbias(dbias, dout, B, Cout, P, o);
    if (dinp) {
#pragma omp for schedule(static)
      for (int b = 0; b < B; b++) {
        float *dcolb = dcol + (long)b * K * P;
        /* K x P = (Cout x K)^T . (Cout x P) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, Cout, 1.0f, weight, K, dout + (long)b * Cout * P, P,
                    0.0f, dcolb, P);
        col2im3x3_add(dinp + (long)b * Cin * P, dcolb, Cin, H, W);
      }
    }
  }
  blas_serial_end(nblas);
}

void conv3x3_forward_ref(double *out, const double *inp, const double *weight, const double *bias,
                         int B, int Cin, int Cout, int H, int W) {
  for (int b = 0; b < B; b++)
    for (int o = 0; o < Cout; o++)
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          double s = bias[o];
          for (int c = 0; c < Cin; c++)
            for (int ky = 0; ky < 3; ky++)
              for (int kx = 0; kx < 3; kx++) {
                int iy = y + ky - 1, ix = x + kx - 1;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += weight[((o * Cin + c) * 3 + ky) * 3 + kx] * inp[(((long)b * Cin + c) * H + iy) * W + ix];
              }
          out[(((long)b * Cout + o) * H + y) * W + x] = s;
        }
}

void conv3x3_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout, const double *inp,
                          const double *weight, int B, int Cin, int Cout, int H, int W) {
  for (int b = 0; b < B; b++)
    for (int o = 0; o < Cout; o++)
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
          double g = dout[(((long)b * Cout + o) * H + y) * W + x];
          dbias[o] += g;
          for (int c = 0; c < Cin; c++)
            for (int ky = 0; ky < 3; ky++)
              for (int kx = 0; kx < 3; kx++) {
                int iy = y + ky - 1, ix = x + kx - 1;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                long wi = ((o * Cin + c) * 3 + ky) * 3 + kx, ii = (((long)b * Cin + c) * H + iy) * W + ix;
                dweight[wi] += g * inp[ii];
                if (dinp) dinp[ii] += g * weight[wi];
              }
        }
}

/* ------------------------------------------------------------------ relu */

void relu_forward(float *out, const float *inp, long n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (long i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0;
}

void relu_backward(float *dinp, const float *dout, const float *out, long n) {
  assert(dinp != dout);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (long i = 0; i < n; i++) dinp[i] += out[i] > 0 ? dout[i] : 0;
}

void relu_forward_ref(double *out, const double *inp, long n) {
  for (long i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0;
}

void relu_backward_ref(double *dinp, const double *dout, const double *out, long n) {
  for (long i = 0; i < n; i++) dinp[i] += out[i] > 0 ? dout[i] : 0;
}

/* -------------------------------------------------------------- maxpool2 */

/* PyTorch's rule over the window in row-major order: the first maximum
 * wins ties, and NaN beats everything (the last NaN, as `v > m || isnan(v)`
 * scanning a, b, c, d gives). */
static inline int maxpool2_pick(const float *x, int base, int W) {
  const int cand[4] = {base, base + 1, base + W, base + W + 1};
  int k = cand[0];
  for (int j = 1; j < 4; j++)
    if (x[cand[j]] > x[k] || isnan(x[cand[j]])) k = cand[j];
  return k;
}

void maxpool2_forward(float *out, int *idx, const float *inp, int B, int C, int H, int W) {
  assert(B >= 0 && C > 0 && H >= 2 && W >= 2);
  const int Ho = H / 2, Wo = W / 2;
#pragma omp parallel for schedule(static) if ((long)B * C * H * W > 65536)
  for (long pl = 0; pl < (long)B * C; pl++) {
    const float *x = inp + pl * H * W;
    float *y = out + pl * Ho * Wo;
    int *id = idx + pl * Ho * Wo;
    for (int oy = 0; oy < Ho; oy++) {
      const float *r0 = x + 2 * oy * W, *r1 = r0 + W;
      int nan = 0;
      for (int ox = 0; ox < Wo; ox++) {
        /* a tournament of selects and integer arithmetic, no branches (random
         * data mispredicts half of them, and this way the loop vectorizes);
         * strict > keeps the first of a tie */
        float a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], d = r1[2 * ox + 1];
        int kab = b > a, kcd = d > c;
        float mab = kab ? b : a, mcd = kcd ? d : c;
        int kr = mcd > mab;
        y[oy * Wo + ox] = kr ? mcd : mab;
        id[oy * Wo + ox] = 2 * oy * W + 2 * ox + kr * W + kab + kr * (kcd - kab);
        nan |= (a != a) | (b != b) | (c != c) | (d != d);
      }
      if (nan)   /* rare: redo the row with the exact rule */
        for (int ox = 0; ox < Wo; ox++) {
          int k = maxpool2_pick(x, 2 * oy * W + 2 * ox, W);
          y[oy * Wo + ox] = x[k];
          id[oy * Wo + ox] = k;
        }
    }
  }
}

void maxpool2_backward(float *dinp, const float *dout, const int *idx, int B, int C, int H, int W) {
  assert(B >= 0 && C > 0 && H >= 2 && W >= 2);
  const int Ho = H / 2, Wo = W / 2;
#pragma omp parallel for schedule(static) if ((long)B * C * H * W > 65536)
  for (long pl = 0; pl < (long)B * C; pl++)
    for (int j = 0; j < Ho * Wo; j++) dinp[pl * H * W + idx[pl * Ho * Wo + j]] += dout[pl * Ho * Wo + j];
}

void maxpool2_forward_ref(double *out, int *idx, const double *inp, int B, int C, int H, int W) {
  const int Ho = H / 2, Wo = W / 2;
  for (long pl = 0; pl < (long)B * C; pl++)
    for (int oy = 0; oy < Ho; oy++)
      for (int ox = 0; ox < Wo; ox++) {
        const double *x = inp + pl * H * W;
        int best = 2 * oy * W + 2 * ox;
        for (int dy = 0; dy < 2; dy++)
          for (int dx = 0; dx < 2; dx++) {
            int i = (2 * oy + dy) * W + 2 * ox + dx;
            if (i != best && (x[i] > x[best] || isnan(x[i]))) best = i;
          }
        out[pl * Ho * Wo + oy * Wo + ox] = x[best];
        idx[pl * Ho * Wo + oy * Wo + ox] = best;
      }
}

void maxpool2_backward_ref(double *dinp, const double *dout, const int *idx, int B, int C, int H, int W) {
  const int Ho = H / 2, Wo = W / 2;
  for (long pl = 0; pl < (long)B * C; pl++)
    for (int j = 0; j < Ho * Wo; j++) dinp[pl * H * W + idx[pl * Ho * Wo + j]] += dout[pl * Ho * Wo + j];
}
