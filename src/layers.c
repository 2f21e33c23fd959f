/* layers.c: backbone layers (see include/layers.h). */
#include "layers.h"

#include <math.h>

/* ---------------------------------------------------------------- l2norm */

void l2norm_forward(float *out, float *norm, const float *inp, int B, int D) {
#pragma omp parallel for schedule(static) if (B * D > 32768)
  for (int b = 0; b < B; b++) {
    const float *x = inp + (long)b * D;
    float *y = out + (long)b * D;
    double ss = 0;   /* double accumulation: norms enter every gradient */
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
