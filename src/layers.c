/* layers.c: backbone layers (see include/layers.h): l2norm, linear, conv3x3,
 * relu, maxpool2, each with a plain double `_ref` twin. Dense products go
 * through OpenBLAS; OpenMP splits the batch where BLAS does not thread. */
#include "layers.h"

#include "common.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- l2norm */

static PROXYGML_HOT void l2norm_forward_row(float *y, float *norm, const float *x, int D) {
  double ss = 0;   /* double accumulation: norms enter every gradient */
#pragma omp simd reduction(+ : ss)
  for (int d = 0; d < D; d++) ss += (double)x[d] * x[d];
  double n = fmax(sqrt(ss), 1e-12);
  float inv = (float)(1.0 / n);
  *norm = (float)n;
  for (int d = 0; d < D; d++) y[d] = x[d] * inv;
}

void l2norm_forward(float *out, float *norm, const float *inp, int B, int D) {
#pragma omp parallel for schedule(static) if (B * D > 32768)
  for (int b = 0; b < B; b++) l2norm_forward_row(out + (long)b * D, norm + b, inp + (long)b * D, D);
}

static PROXYGML_HOT void l2norm_backward_row(float *dx, const float *g, const float *y, float norm, int D) {
  double dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int d = 0; d < D; d++) dot += (double)y[d] * g[d];
  float inv = 1.0f / norm, fdot = (float)dot;
  if (norm <= 1e-12f) fdot = 0;   /* clamped: the map is linear, gradient g / 1e-12 */
  for (int d = 0; d < D; d++) dx[d] += (g[d] - y[d] * fdot) * inv;
}

void l2norm_backward(float *dinp, const float *dout, const float *out, const float *norm, int B, int D) {
#pragma omp parallel for schedule(static) if (B * D > 32768)
  for (int b = 0; b < B; b++) l2norm_backward_row(dinp + (long)b * D, dout + (long)b * D, out + (long)b * D, norm[b], D);
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

/* Threads: every kernel below parallelises with OpenMP itself and calls BLAS
 * single-threaded inside its region. One pool of threads, never two.
 * OpenBLAS's OpenMP build already runs serially inside a parallel region, and
 * there openblas_set_num_threads is omp_set_num_threads: calling it would
 * shrink our own next region to one thread. Only the pthread build, whose
 * workers would run on top of OpenMP's (and keep spinning ~0.1 s after each
 * call, docs/infra.md, 3), is switched to one thread around the region;
 * once its pool exists that only sets a counter. */
static int blas_serial_begin(void) {
  if (openblas_get_parallel() == 2) return 1;   /* 2: the OpenMP build */
  int n = openblas_get_num_threads();
  if (n != 1) openblas_set_num_threads(1);
  return n;
}

static void blas_serial_end(int n) {
  if (n != 1) openblas_set_num_threads(n);
}

/* OpenBLAS's sgemm kernels prefetch ahead of the panel they work on, into
 * their work buffer. A process whose first products are small (the loss's
 * 256-proxy blocks) leaves the buffer's further pages never touched, so not
 * present: every such prefetch then costs a page walk that finds nothing and
 * caches nothing, dear under a hypervisor's nested tables. sop's loss ran
 * 1.7x slower so until one large product had run. Each thread that calls
 * BLAS inside our parallel regions takes a buffer of its own, so every
 * thread runs one 512^3 product (~5 ms), all at once so that each takes a
 * different buffer. The kernels' results do not depend on it. */
void layers_blas_warm(void) {
  static int warmed;   /* threads warmed so far; called from serial code (the modules' _init) */
  int nt = omp_get_max_threads();
  if (nt <= warmed) return;
  warmed = nt;
  enum { W = 512 };
  float *a = xcalloc((size_t)W * W, sizeof(float)), *c = xmalloc_f32((size_t)nt * W * W);
  int n = blas_serial_begin();
#pragma omp parallel num_threads(nt)
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, W, W, W, 1.0f, a, W, a, W, 0.0f,
              c + (size_t)omp_get_thread_num() * W * W, W);
  blas_serial_end(n);
  free(a);
  free(c);
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

/* Two algorithms behind one interface, chosen by the input channels:
 *  - im2col (Cin < 8: a first layer) per sample, col = the 3x3 patches as a
 *    Cin*9 x H*W matrix, out_b = weight . col_b, one sgemm per sample;
 *  - Winograd F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
 *    Neural Networks", 2016) otherwise: each 2x2 output tile from its 4x4
 *    input tile with 16 products instead of 36,
 *        Y = A^T [ (G g G^T) . (B^T d B) ] A,
 *    the channel sums done as 16 sgemms over the tiles of a chunk of
 *    samples. The backward is the exact adjoint of that forward. 2.25x
 *    fewer flops where the cnn spends most of its time, and sgemm is already
 *    near the core's peak, so fewer flops was the way left to go faster. */
int conv3x3_winograd(int Cin) { return Cin >= 8; }

static size_t wino_cache_size(int B, int C, int H, int W);
static size_t wino_scratch_size(int B, int C, int O, int H, int W);

size_t conv3x3_cache_size(int B, int Cin, int H, int W) {
  if (conv3x3_winograd(Cin)) return wino_cache_size(B, Cin, H, W);
  return (size_t)B * Cin * 9 * H * W;   /* col: B x Cin*9 x H*W */
}

size_t conv3x3_scratch_size(int B, int Cin, int Cout, int H, int W) {
  if (conv3x3_winograd(Cin)) return wino_scratch_size(B, Cin, Cout, H, W);
  return (size_t)B * Cin * 9 * H * W;   /* dcol */
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

/* ---- im2col */

/* col row k = c*9 + ky*3 + kx holds the input plane c shifted by
 * (dy, dx) = (ky-1, kx-1), zero outside: the k-th column of the 3x3 patches.
 * Each row is one block copy of the shifted plane (rows are short, 28
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

static void conv3x3_forward_im2col(float *out, float *col, const float *inp, const float *weight, const float *bias,
                                   int B, int Cin, int Cout, int H, int W) {
  const int K = Cin * 9, P = H * W;
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; b++) {
    float *colb = col + (long)b * K * P, *outb = out + (long)b * Cout * P;
    im2col3x3(colb, inp + (long)b * Cin * P, Cin, H, W);
    for (int o = 0; o < Cout; o++)
      for (int p = 0; p < P; p++) outb[(long)o * P + p] = bias[o];
    /* Cout x P += (Cout x K) . (K x P) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cout, P, K, 1.0f, weight, K, colb, P, 1.0f, outb, P);
  }
}

static void conv3x3_backward_im2col(float *dinp, float *dweight, float *dbias, float *dcol, const float *col,
                                    const float *dout, const float *weight, int B, int Cin, int Cout, int H, int W) {
  const int K = Cin * 9, P = H * W;
#pragma omp parallel
  {
    /* dweight = sum_b dout_b . col_b^T: each thread owns a block of rows
     * [o0, o1) and sums over the whole batch, so no reduction, fixed order */
    int t = omp_get_thread_num(), T = omp_get_num_threads();
    int o0 = (int)((long)Cout * t / T), o1 = (int)((long)Cout * (t + 1) / T);
    for (int b = 0; b < B && o1 > o0; b++)   /* (o1-o0) x K += ((o1-o0) x P) . (P x K) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, o1 - o0, K, P, 1.0f, dout + ((long)b * Cout + o0) * P, P,
                  col + (long)b * K * P, P, 1.0f, dweight + (long)o0 * K, K);
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
}

/* ---- Winograd F(2x2, 3x3), channels innermost, the batch in chunks
 * Tile (ty, tx) of a sample (th = ceil(H/2) by tw = ceil(W/2) tiles) makes
 * the outputs (2ty.., 2tx..) from the 4x4 input patch at (2ty-1, 2tx-1).
 * The transforms run with the channels innermost, so that every load and
 * store is a contiguous vector over channels: each sample is moved to
 * channels-last, into a zero-bordered Hp x Wp x C buffer (Hp = 2th+2, pixel
 * (y, x) at (y+1, x+1)) that holds every patch whole; that buffer is the
 * cache kept for the backward. The output is made in a (2th) x (2tw) x O
 * buffer and moved back (an odd H or W leaves half a tile, whose extra
 * outputs land in the margin and are dropped).
 * The batch goes in chunks of nb samples whose transformed tiles (16 x
 * tiles x (C + O) floats) stay within ~2 MiB: beyond a few MiB this machine's
 * cache bandwidth falls from ~100 to ~20 GB/s, and the skinny products
 * (inner dimension C) would wait on memory. Within a chunk each xi (the 16
 * positions of a tile) is one matrix: V[xi] tiles x C, U[xi] O x C,
 * M[xi] tiles x O. (`GCC ivdep` on the channel loops: their 16 loads and 16
 * stores never overlap, and GCC does not vectorise them without being told.) */

typedef struct {
  int th, tw, nt;    /* tiles per column, per row, per sample */
  int Hp, Wp;        /* the zero-bordered input buffer of a sample */
  int nb;            /* samples per chunk */
  long us, vs, ms;   /* distance between the xi planes of U, V, M */
} WinoShape;

static WinoShape wino_shape(int B, int C, int O, int H, int W) {
  WinoShape s;
  s.th = (H + 1) / 2;
  s.tw = (W + 1) / 2;
  s.nt = s.th * s.tw;
  s.Hp = 2 * s.th + 2;
  s.Wp = 2 * s.tw + 2;
  long per = 16L * s.nt * (C + O) * (long)sizeof(float);
  s.nb = (int)((2L << 20) / per);
  if (s.nb < 1) s.nb = 1;
  if (s.nb > B) s.nb = B;
  /* planes padded by 128 bytes: their size is often a multiple of 4 KiB, and
   * 16 streams on the same cache sets thrash L1 */
  s.us = (long)O * C + 32;
  s.vs = (long)s.nb * s.nt * C + 32;
  s.ms = (long)s.nb * s.nt * O + 32;
  return s;
}

/* cache: X (B x Hp x Wp x C). scratch: U, dU, V, M (or dM), dV, and per chunk
 * Y (or dY: nb x 2th x 2tw x O) and dX (nb x Hp x Wp x C) */
static size_t wino_cache_size(int B, int C, int H, int W) {
  WinoShape s = wino_shape(B, C, 1, H, W);
  return (size_t)B * s.Hp * s.Wp * C;
}

static size_t wino_scratch_size(int B, int C, int O, int H, int W) {
  WinoShape s = wino_shape(B, C, O, H, W);
  return (size_t)16 * (2 * s.us + 2 * s.vs + s.ms) + (size_t)s.nb * 4 * s.nt * O + (size_t)s.nb * s.Hp * s.Wp * C;
}

/* v = B^T d B, 4x4 row-major */
static inline void wino_input_tile(float v[16], const float d[16]) {
  float t[16];
  for (int j = 0; j < 4; j++) {
    float d0 = d[j], d1 = d[4 + j], d2 = d[8 + j], d3 = d[12 + j];
    t[j] = d0 - d2; t[4 + j] = d1 + d2; t[8 + j] = d2 - d1; t[12 + j] = d1 - d3;
  }
  for (int i = 0; i < 4; i++) {
    float t0 = t[4 * i], t1 = t[4 * i + 1], t2 = t[4 * i + 2], t3 = t[4 * i + 3];
    v[4 * i] = t0 - t2; v[4 * i + 1] = t1 + t2; v[4 * i + 2] = t2 - t1; v[4 * i + 3] = t1 - t3;
  }
}

/* dd = B dv B^T, the adjoint of wino_input_tile */
static inline void wino_input_tile_adjoint(float dd[16], const float dv[16]) {
  float q[16];
  for (int j = 0; j < 4; j++) {
    float v0 = dv[j], v1 = dv[4 + j], v2 = dv[8 + j], v3 = dv[12 + j];
    q[j] = v0; q[4 + j] = v1 - v2 + v3; q[8 + j] = v1 + v2 - v0; q[12 + j] = -v3;
  }
  for (int i = 0; i < 4; i++) {
    float q0 = q[4 * i], q1 = q[4 * i + 1], q2 = q[4 * i + 2], q3 = q[4 * i + 3];
    dd[4 * i] = q0; dd[4 * i + 1] = q1 - q2 + q3; dd[4 * i + 2] = q1 + q2 - q0; dd[4 * i + 3] = -q3;
  }
}

/* u = G g G^T: 3x3 kernel -> 4x4 */
static inline void wino_weight_tile(float u[16], const float g[9]) {
  float s[12];
  for (int j = 0; j < 3; j++) {
    float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
    s[j] = g0; s[3 + j] = 0.5f * (g0 + g1 + g2); s[6 + j] = 0.5f * (g0 - g1 + g2); s[9 + j] = g2;
  }
  for (int i = 0; i < 4; i++) {
    float s0 = s[3 * i], s1 = s[3 * i + 1], s2 = s[3 * i + 2];
    u[4 * i] = s0; u[4 * i + 1] = 0.5f * (s0 + s1 + s2); u[4 * i + 2] = 0.5f * (s0 - s1 + s2); u[4 * i + 3] = s2;
  }
}

/* dg = G^T du G, the adjoint of wino_weight_tile */
static inline void wino_weight_tile_adjoint(float dg[9], const float du[16]) {
  float p[12];
  for (int j = 0; j < 4; j++) {
    float u0 = du[j], u1 = du[4 + j], u2 = du[8 + j], u3 = du[12 + j];
    p[j] = u0 + 0.5f * (u1 + u2); p[4 + j] = 0.5f * (u1 - u2); p[8 + j] = 0.5f * (u1 + u2) + u3;
  }
  for (int i = 0; i < 3; i++) {
    float p0 = p[4 * i], p1 = p[4 * i + 1], p2 = p[4 * i + 2], p3 = p[4 * i + 3];
    dg[3 * i] = p0 + 0.5f * (p1 + p2); dg[3 * i + 1] = 0.5f * (p1 - p2); dg[3 * i + 2] = 0.5f * (p1 + p2) + p3;
  }
}

/* y = A^T m A: 4x4 -> 2x2 */
static inline void wino_output_tile(float y[4], const float m[16]) {
  float r[8];
  for (int j = 0; j < 4; j++) {
    float m0 = m[j], m1 = m[4 + j], m2 = m[8 + j], m3 = m[12 + j];
    r[j] = m0 + m1 + m2; r[4 + j] = m1 - m2 - m3;
  }
  for (int i = 0; i < 2; i++) {
    y[2 * i] = r[4 * i] + r[4 * i + 1] + r[4 * i + 2];
    y[2 * i + 1] = r[4 * i + 1] - r[4 * i + 2] - r[4 * i + 3];
  }
}

/* dm = A dy A^T, the adjoint of wino_output_tile */
static inline void wino_output_tile_adjoint(float dm[16], const float dy[4]) {
  float q[8];
  for (int j = 0; j < 2; j++) {
    float a = dy[j], b = dy[2 + j];
    q[j] = a; q[2 + j] = a + b; q[4 + j] = a - b; q[6 + j] = -b;
  }
  for (int i = 0; i < 4; i++) {
    float a = q[2 * i], b = q[2 * i + 1];
    dm[4 * i] = a; dm[4 * i + 1] = a + b; dm[4 * i + 2] = a - b; dm[4 * i + 3] = -b;
  }
}

/* The moves between channels-first and channels-last go 16 channels at a
 * time: 16 sequential streams on the channels-first side and one cache line
 * per pixel on the other, all within L1. (A plain loop over all channels per
 * pixel strides through 64 cache lines and thrashes L1.) */

/* dst (Hp x Wp x C, zero elsewhere) gets the sample src (C x H x W) channels-last at (off, off) */
static PROXYGML_HOT void wino_pack(float *dst, const float *src, int C, int H, int W, int Hp, int Wp, int off) {
  const size_t row = (size_t)Wp * C;
  memset(dst, 0, off * row * sizeof *dst);                                  /* the margins */
  memset(dst + (off + H) * row, 0, (Hp - off - H) * row * sizeof *dst);
  for (int y = 0; y < H; y++) {
    float *r = dst + (off + y) * row;
    for (size_t i = 0; i < (size_t)off * C; i++) r[i] = 0;
    for (size_t i = (size_t)(off + W) * C; i < row; i++) r[i] = 0;
  }
  const long P = (long)H * W;
  for (int c0 = 0; c0 < C; c0 += 16) {
    const int nc = C - c0 < 16 ? C - c0 : 16;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const float *s = src + c0 * P + (long)y * W + x;
        float *d = dst + ((long)(y + off) * Wp + x + off) * C + c0;
        if (nc == 16) for (int c = 0; c < 16; c++) d[c] = s[c * P];   /* (a fixed count unrolls) */
        else for (int c = 0; c < nc; c++) d[c] = s[c * P];
      }
  }
}

/* dst (C x H x W) = (or +=) src (. x Wp x C) at (off, off), back to channels-first */
static PROXYGML_HOT void wino_unpack(float *dst, const float *src, int C, int H, int W, int Wp, int off, int accumulate) {
  const long P = (long)H * W;
  for (int c0 = 0; c0 < C; c0 += 16) {
    const int nc = C - c0 < 16 ? C - c0 : 16;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        const float *s = src + ((long)(y + off) * Wp + x + off) * C + c0;
        float *d = dst + c0 * P + (long)y * W + x;
        if (accumulate) for (int c = 0; c < nc; c++) d[c * P] += s[c];
        else if (nc == 16) for (int c = 0; c < 16; c++) d[c * P] = s[c];
        else for (int c = 0; c < nc; c++) d[c * P] = s[c];
      }
  }
}

/* U[xi][o][c] = G W[o][c] G^T. (These helpers hold orphaned omp fors or run
 * on one sample; they are called inside the parallel regions below.) */
static void wino_weights(float *U, long us, const float *weight /* Cout x Cin x 3 x 3 */, int Cin, int Cout) {
#pragma omp for schedule(static)
  for (long oc = 0; oc < (long)Cout * Cin; oc++) {
    float u[16];
    wino_weight_tile(u, weight + oc * 9);
    for (int xi = 0; xi < 16; xi++) U[xi * us + oc] = u[xi];
  }
}

/* V[xi][t0 + t][.] = B^T d_t B for the tiles of one sample, X its Hp x Wp x C buffer */
static PROXYGML_HOT void wino_inputs(float *V, long vs, const float *X, long t0, int C, int th, int tw, int Wp) {
  for (int ty = 0; ty < th; ty++)
    for (int tx = 0; tx < tw; tx++) {
      const float *p = X + ((long)2 * ty * Wp + 2 * tx) * C;   /* patch (i, j) at p + (i*Wp + j)*C */
      float *v = V + (t0 + ty * tw + tx) * C;
#pragma GCC ivdep
      for (int c = 0; c < C; c++) {
        float d[16], u[16];
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) d[4 * i + j] = p[((long)i * Wp + j) * C + c];
        wino_input_tile(u, d);
        for (int k = 0; k < 16; k++) v[k * vs + c] = u[k];
      }
    }
}

/* dX (Hp x Wp x C) += the adjoint of wino_inputs for one sample */
static PROXYGML_HOT void wino_inputs_adjoint(float *dX, const float *dV, long vs, long t0, int C, int th, int tw, int Wp) {
  for (int ty = 0; ty < th; ty++)
    for (int tx = 0; tx < tw; tx++) {   /* in order: neighbouring patches overlap */
      float *p = dX + ((long)2 * ty * Wp + 2 * tx) * C;
      const float *v = dV + (t0 + ty * tw + tx) * C;
#pragma GCC ivdep
      for (int c = 0; c < C; c++) {
        float dv[16], dd[16];
        for (int k = 0; k < 16; k++) dv[k] = v[k * vs + c];
        wino_input_tile_adjoint(dd, dv);
        for (int i = 0; i < 4; i++)
          for (int j = 0; j < 4; j++) p[((long)i * Wp + j) * C + c] += dd[4 * i + j];
      }
    }
}

/* Y ((2th) x (2tw) x O) = A^T M_t A + bias for the tiles of one sample */
static PROXYGML_HOT void wino_outputs(float *Y, const float *M, long ms, const float *bias, long t0, int O, int th, int tw) {
  const long row = 2L * tw * O;
  for (int ty = 0; ty < th; ty++)
    for (int tx = 0; tx < tw; tx++) {
      const float *m = M + (t0 + ty * tw + tx) * O;
      float *y = Y + 2 * ty * row + 2L * tx * O;
#pragma GCC ivdep
      for (int o = 0; o < O; o++) {
        float mm[16], yy[4];
        for (int k = 0; k < 16; k++) mm[k] = m[k * ms + o];
        wino_output_tile(yy, mm);
        y[o] = yy[0] + bias[o];
        y[O + o] = yy[1] + bias[o];
        y[row + o] = yy[2] + bias[o];
        y[row + O + o] = yy[3] + bias[o];
      }
    }
}

/* dM[xi][t0 + t][.] = A dY_t A^T, the adjoint of wino_outputs, dY ((2th) x (2tw) x O) */
static PROXYGML_HOT void wino_outputs_adjoint(float *dM, long ms, const float *dY, long t0, int O, int th, int tw) {
  const long row = 2L * tw * O;
  for (int ty = 0; ty < th; ty++)
    for (int tx = 0; tx < tw; tx++) {
      const float *y = dY + 2 * ty * row + 2L * tx * O;
      float *m = dM + (t0 + ty * tw + tx) * O;
#pragma GCC ivdep
      for (int o = 0; o < O; o++) {
        float dy[4] = {y[o], y[O + o], y[row + o], y[row + O + o]}, dm[16];
        wino_output_tile_adjoint(dm, dy);
        for (int k = 0; k < 16; k++) m[k * ms + o] = dm[k];
      }
    }
}

static void conv3x3_forward_winograd(float *out, float *X, float *scratch, const float *inp, const float *weight,
                                     const float *bias, int B, int C, int O, int H, int W) {
  const WinoShape s = wino_shape(B, C, O, H, W);
  const long xsz = (long)s.Hp * s.Wp * C, ysz = 4L * s.nt * O;
  float *U = scratch, *V = U + 2 * 16 * s.us, *M = V + 16 * s.vs, *Y = M + 16 * s.ms + 16 * s.vs;
#pragma omp parallel
  {
    wino_weights(U, s.us, weight, C, O);
    for (int b0 = 0; b0 < B; b0 += s.nb) {   /* every thread runs every chunk, sharing its loops */
      const int nb = B - b0 < s.nb ? B - b0 : s.nb;
#pragma omp for schedule(static)
      for (int b = b0; b < b0 + nb; b++) {
        wino_pack(X + b * xsz, inp + (long)b * C * H * W, C, H, W, s.Hp, s.Wp, 1);
        wino_inputs(V, s.vs, X + b * xsz, (long)(b - b0) * s.nt, C, s.th, s.tw, s.Wp);
      }
#pragma omp for schedule(static)
      for (int xi = 0; xi < 16; xi++)   /* M[xi] (tiles x O) = V[xi] (tiles x C) . U[xi]^T (C x O) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb * s.nt, O, C, 1.0f, V + xi * s.vs, C, U + xi * s.us,
                    C, 0.0f, M + xi * s.ms, O);
#pragma omp for schedule(static)
      for (int b = b0; b < b0 + nb; b++) {
        float *yb = Y + (b - b0) * ysz;
        wino_outputs(yb, M, s.ms, bias, (long)(b - b0) * s.nt, O, s.th, s.tw);
        wino_unpack(out + (long)b * O * H * W, yb, O, H, W, 2 * s.tw, 0, 0);
      }
    }
  }
}

static void conv3x3_backward_winograd(float *dinp, float *dweight, float *dbias, float *scratch, const float *X,
                                      const float *dout, const float *weight, int B, int C, int O, int H, int W) {
  const WinoShape s = wino_shape(B, C, O, H, W);
  const long xsz = (long)s.Hp * s.Wp * C, ysz = 4L * s.nt * O;
  float *U = scratch, *dU = U + 16 * s.us, *V = dU + 16 * s.us, *dM = V + 16 * s.vs, *dV = dM + 16 * s.ms;
  float *dY = dV + 16 * s.vs, *dX = dY + s.nb * ysz;
#pragma omp parallel
  {
    if (dinp) wino_weights(U, s.us, weight, C, O);
#pragma omp for schedule(static) nowait
    for (int o = 0; o < O; o++) conv_dbias(dbias, dout, B, O, H * W, o);
    for (int b0 = 0; b0 < B; b0 += s.nb) {
      const int nb = B - b0 < s.nb ? B - b0 : s.nb;
#pragma omp for schedule(static)
      for (int b = b0; b < b0 + nb; b++) {   /* the forward's V again, from the cached input, and dM */
        wino_inputs(V, s.vs, X + b * xsz, (long)(b - b0) * s.nt, C, s.th, s.tw, s.Wp);
        float *yb = dY + (b - b0) * ysz;
        wino_pack(yb, dout + (long)b * O * H * W, O, H, W, 2 * s.th, 2 * s.tw, 0);
        wino_outputs_adjoint(dM, s.ms, yb, (long)(b - b0) * s.nt, O, s.th, s.tw);
      }
#pragma omp for schedule(static)
      for (int xi = 0; xi < 16; xi++) {
        /* dU[xi] (O x C) (+)= dM[xi]^T (O x tiles) . V[xi] (tiles x C), summed over the chunks */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, C, nb * s.nt, 1.0f, dM + xi * s.ms, O, V + xi * s.vs,
                    C, b0 > 0 ? 1.0f : 0.0f, dU + xi * s.us, C);
        if (dinp)   /* dV[xi] (tiles x C) = dM[xi] (tiles x O) . U[xi] (O x C) */
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nb * s.nt, C, O, 1.0f, dM + xi * s.ms, O,
                      U + xi * s.us, C, 0.0f, dV + xi * s.vs, C);
      }
      if (dinp) {
#pragma omp for schedule(static)
        for (int b = b0; b < b0 + nb; b++) {
          float *xb = dX + (b - b0) * xsz;
          memset(xb, 0, xsz * sizeof *xb);
          wino_inputs_adjoint(xb, dV, s.vs, (long)(b - b0) * s.nt, C, s.th, s.tw, s.Wp);
          wino_unpack(dinp + (long)b * C * H * W, xb, C, H, W, s.Wp, 1, 1);
        }
      }
    }
#pragma omp for schedule(static)
    for (long oc = 0; oc < (long)O * C; oc++) {
      float du[16], dg[9];
      for (int xi = 0; xi < 16; xi++) du[xi] = dU[xi * s.us + oc];
      wino_weight_tile_adjoint(dg, du);
      for (int k = 0; k < 9; k++) dweight[oc * 9 + k] += dg[k];
    }
  }
}

/* ---- the interface */

void conv3x3_forward(float *out, float *cache, float *scratch, const float *inp, const float *weight,
                     const float *bias, int B, int Cin, int Cout, int H, int W) {
  assert(B >= 0 && Cin > 0 && Cout > 0 && H > 0 && W > 0);
  if (B == 0) return;
  int nblas = blas_serial_begin();
  if (conv3x3_winograd(Cin)) conv3x3_forward_winograd(out, cache, scratch, inp, weight, bias, B, Cin, Cout, H, W);
  else conv3x3_forward_im2col(out, cache, inp, weight, bias, B, Cin, Cout, H, W);
  blas_serial_end(nblas);
}

void conv3x3_backward(float *dinp, float *dweight, float *dbias, float *scratch, const float *cache, const float *dout,
                      const float *weight, int B, int Cin, int Cout, int H, int W) {
  assert(B >= 0 && Cin > 0 && Cout > 0 && H > 0 && W > 0);
  if (B == 0) return;
  int nblas = blas_serial_begin();
  if (conv3x3_winograd(Cin))
    conv3x3_backward_winograd(dinp, dweight, dbias, scratch, cache, dout, weight, B, Cin, Cout, H, W);
  else conv3x3_backward_im2col(dinp, dweight, dbias, scratch, cache, dout, weight, B, Cin, Cout, H, W);
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

enum { RELU_CHUNK = 16384 };   /* elements per call of the kernels below */

static PROXYGML_HOT void relu_forward_chunk(float *out, const float *inp, long n) {
  for (long i = 0; i < n; i++) out[i] = inp[i] > 0 ? inp[i] : 0;
}

static PROXYGML_HOT void relu_backward_chunk(float *dinp, const float *dout, const float *out, long n) {
  for (long i = 0; i < n; i++) dinp[i] += out[i] > 0 ? dout[i] : 0;
}

void relu_forward(float *out, const float *inp, long n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (long i = 0; i < n; i += RELU_CHUNK) relu_forward_chunk(out + i, inp + i, n - i < RELU_CHUNK ? n - i : RELU_CHUNK);
}

void relu_backward(float *dinp, const float *dout, const float *out, long n) {
  assert(dinp != dout);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (long i = 0; i < n; i += RELU_CHUNK)
    relu_backward_chunk(dinp + i, dout + i, out + i, n - i < RELU_CHUNK ? n - i : RELU_CHUNK);
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

/* one plane: x (H x W) -> y, id (H/2 x W/2) */
static PROXYGML_HOT void maxpool2_plane(float *y, int *id, const float *x, int H, int W) {
  const int Ho = H / 2, Wo = W / 2;
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

void maxpool2_forward(float *out, int *idx, const float *inp, int B, int C, int H, int W) {
  assert(B >= 0 && C > 0 && H >= 2 && W >= 2);
  const int Ho = H / 2, Wo = W / 2;
#pragma omp parallel for schedule(static) if ((long)B * C * H * W > 65536)
  for (long pl = 0; pl < (long)B * C; pl++) maxpool2_plane(out + pl * Ho * Wo, idx + pl * Ho * Wo, inp + pl * H * W, H, W);
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
