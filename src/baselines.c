/* baselines.c: ProxyNCA, Proxy-Anchor, SoftTriple and Normalized Softmax,
 * forward and backward, float32 (the fast path) and float64 (baseline_ref).
 * reference: docs/baselines.md 2-6; bare section numbers below refer to it.
 * Not here: the miners and reducer variants of pytorch-metric-learning
 * (each loss has the one reduction of docs/baselines.md), ProxyNCA's
 * dropping of rows whose probability underflows (docs/baselines.md 2). */
#include "baselines.h"

#include "common.h"
#include "layers.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

BaselineParams baseline_defaults(void) {
  return (BaselineParams){.nca_scale = 1.0, .pa_margin = 0.1, .pa_alpha = 32.0, .st_centers = 10,
                          .st_lambda = 20.0, .st_gamma = 0.1, .st_tau = 0.2, .st_margin = 0.01,
                          .ns_temperature = 0.05};
}

int baseline_proxies_per_class(BaselineKind kind, const BaselineParams *p) {
  return kind == BASELINE_SOFTTRIPLE ? p->st_centers : 1;
}

/* the epsilon under SoftTriple's regulariser square root, as in the
 * published SoftTriple code: keeps sqrt differentiable when two centres meet */
#define ST_REG_EPS 1e-5

void baseline_init(Baseline *l, BaselineKind kind, const BaselineParams *p, int B_max, int D, int C) {
  int k = baseline_proxies_per_class(kind, p);
  CHECK(B_max >= 1 && D >= 1 && C >= 1 && k >= 1, "baseline_init: bad sizes B=%d D=%d C=%d k=%d", B_max, D, C, k);
  memset(l, 0, sizeof *l);
  l->kind = kind; l->p = *p;
  l->B_max = B_max; l->D = D; l->C = C; l->k = k; l->M = C * k;
  l->part_begin = 0; l->part_end = C;
  size_t Bm = (size_t)B_max, M = (size_t)l->M;
  l->x = xmalloc_f32(Bm * D);
  l->xnorm = xmalloc_f32(Bm);
  l->W = xmalloc_f32(M * D);
  l->pnorm = xmalloc_f32(M);
  l->S = xmalloc_f32(Bm * M);
  l->Zc = xmalloc_f32(Bm * C);
  l->G = xmalloc_f32(Bm * M);
  l->GT = xmalloc_f32(Bm * M);
  l->gx = xmalloc_f32(Bm * D);
  l->GW = xmalloc_f32(M * D);
  l->row_loss = xcalloc(Bm, sizeof(double));
  l->nthreads = omp_get_max_threads();
  l->scratch = xmalloc_f64((size_t)l->nthreads * (C + M));
  l->gram = xmalloc_f32((size_t)k * k);
  if (kind == BASELINE_PROXYANCHOR) {
    l->nstats = 3 * C;
    l->stats = xcalloc((size_t)l->nstats, sizeof(double));
    l->pos = xcalloc((size_t)C, sizeof(double));
    l->neg = xcalloc((size_t)C, sizeof(double));
  }
}

void baseline_free(Baseline *l) {
  void *bufs[] = {l->x, l->xnorm, l->W, l->pnorm, l->S, l->Zc, l->G, l->GT, l->gx, l->GW, l->row_loss, l->scratch, l->gram, l->stats,
                  l->pos, l->neg};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------ per-row losses */

/* softmax cross-entropy of one row of logits z (n, overwritten by the
 * probabilities): returns -log softmax(z)[y], computed as lse(z) - z_y */
static double softmax_xent(double *z, int n, int y) {
  double m = -INFINITY;
  for (int c = 0; c < n; c++) m = z[c] > m ? z[c] : m;
  double se = 0, zy = z[y];
  for (int c = 0; c < n; c++) { z[c] = exp(z[c] - m); se += z[c]; }
  for (int c = 0; c < n; c++) z[c] /= se;
  return m + log(se) - zy;
}

/* 2: ProxyNCA. d2 = ||x - w||^2 = 2 - 2 s for unit vectors, logits -scale d2;
 * dL/ds = 2 scale (P - onehot) */
static double proxynca_row(float *zc, float *g, double *z, const float *s, int y, int C, double scale, double inv_b) {
  for (int c = 0; c < C; c++) {
    double d2 = 2.0 - 2.0 * s[c];
    zc[c] = (float)d2;
    z[c] = -scale * d2;
  }
  double loss = softmax_xent(z, C, y);
  for (int c = 0; c < C; c++) g[c] = (float)(2.0 * scale * inv_b * (z[c] - (c == y)));
  return loss;
}

/* 5: Normalized Softmax, logits s / T */
static double normsoftmax_row(float *zc, float *g, double *z, const float *s, int y, int C, double T, double inv_b) {
  for (int c = 0; c < C; c++) {
    z[c] = s[c] / T;
    zc[c] = (float)z[c];
  }
  double loss = softmax_xent(z, C, y);
  for (int c = 0; c < C; c++) g[c] = (float)(inv_b / T * (z[c] - (c == y)));
  return loss;
}

/* 4.1-4.2: SoftTriple. Per class a softmax over its k centres at temperature
 * gamma gives the relaxed similarity SC = sum_m q_m s_m; the class logits are
 * lambda (SC - delta [c = y]). q: scratch of M (the centre weights). */
static double softtriple_row(float *zc, float *g, double *z, double *q, const float *s, int y, int C, int k,
                             const BaselineParams *p, double inv_b) {
  const double ig = 1.0 / p->st_gamma;
  for (int c = 0; c < C; c++) {
    const float *sc = s + (size_t)c * k;
    double *qc = q + (size_t)c * k, m = -INFINITY, se = 0, sim = 0;
    for (int t = 0; t < k; t++) m = sc[t] > m ? sc[t] : m;
    for (int t = 0; t < k; t++) { qc[t] = exp((sc[t] - m) * ig); se += qc[t]; }
    for (int t = 0; t < k; t++) { qc[t] /= se; sim += qc[t] * sc[t]; }
    zc[c] = (float)sim;
    z[c] = p->st_lambda * (sim - (c == y ? p->st_margin : 0.0));
  }
  double loss = softmax_xent(z, C, y);
  /* dL/dSC_c = lambda (P_c - [c = y]); dSC/ds_t = q_t (1 + (s_t - SC) / gamma) */
  for (int c = 0; c < C; c++) {
    double dsim = p->st_lambda * inv_b * (z[c] - (c == y)), sim = zc[c];
    const double *qc = q + (size_t)c * k;
    for (int t = 0; t < k; t++) {
      double st = s[(size_t)c * k + t];
      g[(size_t)c * k + t] = (float)(dsim * qc[t] * (1.0 + (st - sim) * ig));
    }
  }
  return loss;
}

/* 4.3: the centre regulariser of classes [c0, c1): sum over pairs t < t' of
 * one class of sqrt(2 + eps - 2 w_t.w_t'), over C k (k - 1). A class's k x k
 * Gram matrix is one small sgemm; with gw, its gradient tau dR/dW_c = F W_c
 * is another (F[t,u] = -tau / (dist_tu C k (k - 1)), zero diagonal).
 * gram: scratch of k x k. */
static double softtriple_reg(float *gw /* M x D or NULL */, float *gram, const float *W, int c0, int c1, int k, int C,
                             int D, double tau) {
  if (k < 2) return 0;
  const double norm = 1.0 / ((double)C * k * (k - 1));
  double total = 0;
  for (int c = c0; c < c1; c++) {
    const float *Wc = W + (size_t)c * k * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k, k, D, 1.0f, Wc, D, Wc, D, 0.0f, gram, k);
    for (int t = 0; t < k; t++) {
      gram[t * k + t] = 0;
      for (int u = t + 1; u < k; u++) {   /* in pair order: the sum is the same run to run */
        double dist = sqrt(2.0 + ST_REG_EPS - 2.0 * gram[t * k + u]);
        total += dist;
        gram[t * k + u] = gram[u * k + t] = (float)(-tau * norm / dist);
      }
    }
    if (gw) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, k, D, k, 1.0f, gram, k, Wc, D, 1.0f,
                        gw + (size_t)c * k * D, D);
  }
  return total * norm;
}

/* ------------------------------------------------------------ forward */

void baseline_forward_local(Baseline *l, const float *x_raw, const int *labels, const float *proxies, int B) {
  CHECK(B >= 1 && B <= l->B_max, "baseline_forward: B=%d outside [1, %d]", B, l->B_max);
  const int D = l->D, M = l->M, C = l->C;
  l->B = B;
  l->labels = labels;
  l2norm_forward(l->x, l->xnorm, x_raw, B, D);
  l2norm_forward(l->W, l->pnorm, proxies, M, D);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, M, D, 1.0f, l->x, D, l->W, D, 0.0f, l->S, M);
  if (l->kind != BASELINE_PROXYANCHOR) return;
  /* 3.2: this rank's batch sums per proxy, in row order (the same bits for any thread count) */
  const double a = l->p.pa_alpha, dm = l->p.pa_margin;
  double *pos = l->stats, *neg = l->stats + C, *cnt = l->stats + 2 * C;
#pragma omp parallel for schedule(static) num_threads(l->nthreads) if ((long)B * C > 65536)
  for (int c = 0; c < C; c++) {
    double ps = 0, ns = 0, n = 0;
    for (int b = 0; b < B; b++) {
      double s = l->S[(size_t)b * M + c];
      if (labels[b] == c) { ps += exp(-a * (s - dm)); n += 1; }
      else ns += exp(a * (s + dm));
    }
    pos[c] = ps; neg[c] = ns; cnt[c] = n;
  }
}

/* 3.1-3.3 from the batch sums (global after the caller's allreduce) */
static double proxyanchor_finish(Baseline *l) {
  const int B = l->B, C = l->C, M = l->M;
  const double a = l->p.pa_alpha, dm = l->p.pa_margin;
  const double *ps = l->stats, *ns = l->stats + C, *cnt = l->stats + 2 * C;
  int npos = 0;
  for (int c = 0; c < C; c++) npos += cnt[c] > 0;
  const double inv_pos = npos > 0 ? 1.0 / npos : 0.0, inv_c = 1.0 / C;
  l->pos_loss = l->neg_loss = 0;
  for (int c = 0; c < C; c++) {
    l->pos[c] = cnt[c] > 0 ? log1p(ps[c]) : 0.0;
    l->neg[c] = log1p(ns[c]);
    if (c >= l->part_begin && c < l->part_end) {   /* in class order: fixed */
      l->pos_loss += l->pos[c] * inv_pos;
      l->neg_loss += l->neg[c] * inv_c;
    }
  }
#pragma omp parallel for schedule(static) num_threads(l->nthreads) if ((long)B * C > 65536)
  for (int b = 0; b < B; b++) {
    const float *s = l->S + (size_t)b * M;
    float *g = l->G + (size_t)b * M, *zc = l->Zc + (size_t)b * C;
    for (int c = 0; c < C; c++) {
      zc[c] = s[c];
      if (l->labels[b] == c) g[c] = (float)(-a * exp(-a * (s[c] - dm)) / (1.0 + ps[c]) * inv_pos);
      else g[c] = (float)(a * exp(a * (s[c] + dm)) / (1.0 + ns[c]) * inv_c);
    }
  }
  return l->pos_loss + l->neg_loss;
}

float baseline_forward_finish(Baseline *l) {
  const int B = l->B, C = l->C, M = l->M, k = l->k;
  const double inv_b = 1.0 / (l->batch_norm > 0 ? l->batch_norm : B);
  double loss_cls = 0, loss_reg = 0;
  if (l->kind == BASELINE_PROXYANCHOR) {
    loss_cls = proxyanchor_finish(l);
  } else {
#pragma omp parallel num_threads(l->nthreads) if ((long)B * M > 16384)
    {
      double *z = l->scratch + (size_t)omp_get_thread_num() * (C + M);   /* logits C, SoftTriple's weights M */
#pragma omp for schedule(static)
      for (int b = 0; b < B; b++) {
        const float *s = l->S + (size_t)b * M;
        float *g = l->G + (size_t)b * M, *zc = l->Zc + (size_t)b * C;
        int y = l->labels[b];
        switch (l->kind) {
        case BASELINE_PROXYNCA: l->row_loss[b] = proxynca_row(zc, g, z, s, y, C, l->p.nca_scale, inv_b); break;
        case BASELINE_NORMSOFTMAX:
          l->row_loss[b] = normsoftmax_row(zc, g, z, s, y, C, l->p.ns_temperature, inv_b);
          break;
        case BASELINE_SOFTTRIPLE: l->row_loss[b] = softtriple_row(zc, g, z, z + C, s, y, C, k, &l->p, inv_b); break;
        default: break;
        }
      }
    }
    for (int b = 0; b < B; b++) loss_cls += l->row_loss[b];
    loss_cls *= inv_b;
    if (l->kind == BASELINE_SOFTTRIPLE && l->p.st_tau > 0)
      loss_reg = softtriple_reg(NULL, l->gram, l->W, l->part_begin, l->part_end, k, C, l->D, 0);
  }
  l->loss_cls = (float)loss_cls;
  l->loss_reg = (float)loss_reg;
  l->loss = (float)(loss_cls + (l->kind == BASELINE_SOFTTRIPLE ? l->p.st_tau * loss_reg : 0.0));
  return l->loss;
}

float baseline_forward(Baseline *l, const float *x_raw, const int *labels, const float *proxies, int B) {
  baseline_forward_local(l, x_raw, labels, proxies, B);
  return baseline_forward_finish(l);
}

/* ------------------------------------------------------------ backward */

void baseline_backward(Baseline *l, float *dx_raw, float *dproxies) {
  const int B = l->B, D = l->D, M = l->M;
  /* G_x = G W (B x D), G_W = G^T x (M x D): this rank's rows; the allreduce adds the ranks */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, M, 1.0f, l->G, M, l->W, D, 0.0f, l->gx, D);
  /* G^T laid out M x B first: OpenBLAS's transposed-A path packs a tall thin G slowly (measured 2-3x) */
  for (int j = 0; j < M; j++)
    for (int b = 0; b < B; b++) l->GT[(size_t)j * B + b] = l->G[(size_t)b * M + j];
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, D, B, 1.0f, l->GT, B, l->x, D, 0.0f, l->GW, D);
  if (l->kind == BASELINE_SOFTTRIPLE && l->p.st_tau > 0)
    softtriple_reg(l->GW, l->gram, l->W, l->part_begin, l->part_end, l->k, l->C, D, l->p.st_tau);
  l2norm_backward(dx_raw, l->gx, l->x, l->xnorm, B, D);
  l2norm_backward(dproxies, l->GW, l->W, l->pnorm, M, D);
}

/* ------------------------------------------------------------ float64 reference */

void baseline_ref_free(BaselineRef *r) {
  void *bufs[] = {r->x, r->W, r->S, r->Zc, r->row_loss, r->pos, r->neg, r->dx_raw, r->dproxies};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  memset(r, 0, sizeof *r);
}

/* -log softmax(z)[y] over n logits; leaves the probabilities in z */
static double xent_ref(double *z, int n, int y) {
  double m = -INFINITY, se = 0;
  for (int c = 0; c < n; c++) m = fmax(m, z[c]);
  for (int c = 0; c < n; c++) se += exp(z[c] - m);
  double loss = m + log(se) - z[y];
  for (int c = 0; c < n; c++) z[c] = exp(z[c] - m) / se;
  return loss;
}

/* The formulas of docs/baselines.md as written, one element at a time. */
void baseline_ref(BaselineRef *r, BaselineKind kind, const BaselineParams *p, const double *x_raw, const int *labels,
                  const double *proxies, int B, int D, int C) {
  int k = baseline_proxies_per_class(kind, p), M = C * k;
  memset(r, 0, sizeof *r);
  r->B = B; r->D = D; r->C = C; r->k = k; r->M = M;
  r->x = xcalloc((size_t)B * D, sizeof(double));
  r->W = xcalloc((size_t)M * D, sizeof(double));
  r->S = xcalloc((size_t)B * M, sizeof(double));
  r->Zc = xcalloc((size_t)B * C, sizeof(double));
  r->row_loss = xcalloc((size_t)B, sizeof(double));
  r->pos = xcalloc((size_t)C, sizeof(double));
  r->neg = xcalloc((size_t)C, sizeof(double));
  r->dx_raw = xcalloc((size_t)B * D, sizeof(double));
  r->dproxies = xcalloc((size_t)M * D, sizeof(double));
  double *xn = xcalloc((size_t)B, sizeof(double)), *pn = xcalloc((size_t)M, sizeof(double));
  double *gx = xcalloc((size_t)B * D, sizeof(double)), *gw = xcalloc((size_t)M * D, sizeof(double));
  double *gs = xcalloc((size_t)B * M, sizeof(double)), *z = xcalloc((size_t)C, sizeof(double));
  double *q = xcalloc((size_t)M, sizeof(double));
  l2norm_forward_ref(r->x, xn, x_raw, B, D);
  l2norm_forward_ref(r->W, pn, proxies, M, D);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < M; j++) {
      double s = 0;
      for (int d = 0; d < D; d++) s += r->x[(size_t)b * D + d] * r->W[(size_t)j * D + d];
      r->S[(size_t)b * M + j] = s;
    }
  double loss = 0;
  switch (kind) {
  case BASELINE_PROXYNCA:   /* 2, through the distances themselves: d(d2)/dx = 2 (x - w) */
    for (int b = 0; b < B; b++) {
      for (int c = 0; c < C; c++) {
        double d2 = 0;
        for (int d = 0; d < D; d++) {
          double t = r->x[(size_t)b * D + d] - r->W[(size_t)c * D + d];
          d2 += t * t;
        }
        r->Zc[(size_t)b * C + c] = d2;
        z[c] = -p->nca_scale * d2;
      }
      r->row_loss[b] = xent_ref(z, C, labels[b]);
      loss += r->row_loss[b] / B;
      for (int c = 0; c < C; c++) {
        double g = -p->nca_scale * (z[c] - (c == labels[b])) / B;   /* dL/d(d2) */
        for (int d = 0; d < D; d++) {
          double t = 2 * (r->x[(size_t)b * D + d] - r->W[(size_t)c * D + d]);
          gx[(size_t)b * D + d] += g * t;
          gw[(size_t)c * D + d] -= g * t;
        }
      }
    }
    break;
  case BASELINE_NORMSOFTMAX:   /* 5 */
    for (int b = 0; b < B; b++) {
      for (int c = 0; c < C; c++) z[c] = r->Zc[(size_t)b * C + c] = r->S[(size_t)b * M + c] / p->ns_temperature;
      r->row_loss[b] = xent_ref(z, C, labels[b]);
      loss += r->row_loss[b] / B;
      for (int c = 0; c < C; c++) gs[(size_t)b * M + c] = (z[c] - (c == labels[b])) / (p->ns_temperature * B);
    }
    break;
  case BASELINE_SOFTTRIPLE:   /* 4 */
    for (int b = 0; b < B; b++) {
      int y = labels[b];
      for (int c = 0; c < C; c++) {
        double m = -INFINITY, se = 0, sim = 0;
        for (int t = 0; t < k; t++) m = fmax(m, r->S[(size_t)b * M + c * k + t]);
        for (int t = 0; t < k; t++) se += exp((r->S[(size_t)b * M + c * k + t] - m) / p->st_gamma);
        for (int t = 0; t < k; t++) {
          q[c * k + t] = exp((r->S[(size_t)b * M + c * k + t] - m) / p->st_gamma) / se;
          sim += q[c * k + t] * r->S[(size_t)b * M + c * k + t];
        }
        r->Zc[(size_t)b * C + c] = sim;
        z[c] = p->st_lambda * (sim - (c == y) * p->st_margin);
      }
      r->row_loss[b] = xent_ref(z, C, y);
      loss += r->row_loss[b] / B;
      for (int c = 0; c < C; c++)
        for (int t = 0; t < k; t++) {
          double s = r->S[(size_t)b * M + c * k + t], sim = r->Zc[(size_t)b * C + c];
          gs[(size_t)b * M + c * k + t] =
              p->st_lambda * (z[c] - (c == y)) / B * q[c * k + t] * (1 + (s - sim) / p->st_gamma);
        }
    }
    r->loss_cls = loss;
    if (p->st_tau > 0 && k > 1) {
      double norm = (double)C * k * (k - 1), reg = 0;
      for (int c = 0; c < C; c++)
        for (int t = 0; t < k; t++)
          for (int u = t + 1; u < k; u++) {
            int i = c * k + t, j = c * k + u;
            double dot = 0;
            for (int d = 0; d < D; d++) dot += r->W[(size_t)i * D + d] * r->W[(size_t)j * D + d];
            double dist = sqrt(2 + ST_REG_EPS - 2 * dot);
            reg += dist / norm;
            for (int d = 0; d < D; d++) {   /* d(dist)/dw_i = -w_j / dist */
              gw[(size_t)i * D + d] -= p->st_tau * r->W[(size_t)j * D + d] / (dist * norm);
              gw[(size_t)j * D + d] -= p->st_tau * r->W[(size_t)i * D + d] / (dist * norm);
            }
          }
      r->loss_reg = reg;
      loss += p->st_tau * reg;
    }
    break;
  case BASELINE_PROXYANCHOR: {   /* 3 */
    double a = p->pa_alpha, dm = p->pa_margin;
    int npos = 0;
    for (int c = 0; c < C; c++) {
      double ps = 0, ns = 0;
      int present = 0;
      for (int b = 0; b < B; b++) {
        double s = r->S[(size_t)b * M + c];
        if (labels[b] == c) { ps += exp(-a * (s - dm)); present = 1; }
        else ns += exp(a * (s + dm));
      }
      npos += present;
      r->pos[c] = present ? log(1 + ps) : 0;
      r->neg[c] = log(1 + ns);
    }
    for (int c = 0; c < C; c++) {
      r->pos_loss += r->pos[c] / npos;
      r->neg_loss += r->neg[c] / C;
      double ps = exp(r->pos[c]) - 1, ns = exp(r->neg[c]) - 1;   /* the sums again */
      for (int b = 0; b < B; b++) {
        double s = r->S[(size_t)b * M + c];
        r->Zc[(size_t)b * C + c] = s;
        gs[(size_t)b * M + c] = labels[b] == c ? -a * exp(-a * (s - dm)) / (1 + ps) / npos
                                               : a * exp(a * (s + dm)) / (1 + ns) / C;
      }
    }
    loss = r->pos_loss + r->neg_loss;
    break;
  }
  }
  if (kind != BASELINE_SOFTTRIPLE) r->loss_cls = loss;
  r->loss = loss;
  /* G_x = G_S W, G_W = G_S^T x (ProxyNCA filled gx, gw directly) */
  for (int b = 0; b < B; b++)
    for (int j = 0; j < M; j++) {
      double g = gs[(size_t)b * M + j];
      for (int d = 0; d < D; d++) {
        gx[(size_t)b * D + d] += g * r->W[(size_t)j * D + d];
        gw[(size_t)j * D + d] += g * r->x[(size_t)b * D + d];
      }
    }
  l2norm_backward_ref(r->dx_raw, gx, r->x, xn, B, D);
  l2norm_backward_ref(r->dproxies, gw, r->W, pn, M, D);
  free(xn); free(pn); free(gx); free(gw); free(gs); free(z); free(q);
}
