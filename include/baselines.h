/* baselines.h: four proxy losses to compare ProxyGML with, forward and
 * backward, as defined in docs/baselines.md (the definitions that
 * pytorch-metric-learning computes; the golden files tests/data/baselines
 * hold its numbers):
 *
 *   BASELINE_PROXYNCA     ProxyNCA: softmax over the C proxies of -s * squared distance
 *   BASELINE_PROXYANCHOR  Proxy-Anchor: per-proxy log-sum-exp over the batch (margin, alpha)
 *   BASELINE_SOFTTRIPLE   SoftTriple: k centres per class, a soft max over them,
 *                         softmax over classes (lambda, gamma, margin) + tau * centre regulariser
 *   BASELINE_NORMSOFTMAX  Normalized Softmax: softmax of cosines / temperature
 *
 * All four are functions of the cosine matrix S = x W^T of the normalised
 * embeddings and proxies, so they share one structure: normalise, one sgemm
 * for S, an O(B*M) pass in double per row (or per proxy) that leaves the loss
 * and G = dL/dS, then two sgemms (G W and G^T x) and the normalisations'
 * backward. Proxies are M x D with M = C*k, one proxy per row; proxy j
 * belongs to class j / k (k = 1 except for SoftTriple).
 *
 *   BaselineParams p = baseline_defaults();
 *   Baseline l;
 *   baseline_init(&l, BASELINE_SOFTTRIPLE, &p, B_max, D, C);
 *   float loss = baseline_forward(&l, x_raw, labels, proxies, B);
 *   baseline_backward(&l, dx_raw, dproxies);              // both accumulate (+=)
 *   baseline_free(&l);
 *
 * Distributed use: `batch_norm` (0 = the B of the call) divides the per-row
 * losses (ProxyNCA, SoftTriple, Normalized Softmax), so P ranks that each
 * pass their B/P rows with batch_norm = the global batch compute shares that
 * sum to the single-process loss and gradients. Proxy-Anchor is not a sum
 * over rows: each proxy's term is the log of a sum over the whole batch, and
 * its positive part is divided by the number of classes present in the
 * batch. Its forward is therefore two halves around a sum over ranks:
 *
 *   baseline_forward_local(&l, x_raw, labels, proxies, B);  // S and the batch sums of this rank
 *   allreduce_sum(l.stats, l.nstats);                      // nstats = 0 for the per-row losses
 *   baseline_forward_finish(&l);                           // the loss and G from the global sums
 *
 * (baseline_forward is the two halves with nothing in between.) Per-proxy
 * terms (Proxy-Anchor's, SoftTriple's regulariser) are reported for the
 * classes [part_begin, part_end) (default [0, C)), so that P ranks each
 * report a slice and the loss sums to the whole, like ProxyGML's regulariser
 * rows; their gradients are split the same way.
 *
 * Memory: _init allocates every buffer for B_max rows; forward and backward
 * never allocate. Threads: OpenMP over rows or proxies, OpenBLAS for the
 * three products (called outside OpenMP regions); sums are formed in a fixed
 * order, so equal inputs and thread counts give equal bits.
 *
 * baseline_ref is the float64 twin: plain loops, the formulas as written
 * (ProxyNCA through the squared distances ||x - w||^2 themselves), for the
 * tests and `check-loss --ref`.
 */
#ifndef PROXYGML_BASELINES_H
#define PROXYGML_BASELINES_H

typedef enum { BASELINE_PROXYNCA, BASELINE_PROXYANCHOR, BASELINE_SOFTTRIPLE, BASELINE_NORMSOFTMAX } BaselineKind;

typedef struct {
  double nca_scale;            /* ProxyNCA: softmax scale s (pytorch-metric-learning: 1) */
  double pa_margin, pa_alpha;  /* Proxy-Anchor: delta 0.1, alpha 32 */
  int st_centers;              /* SoftTriple: k centres per class, 10 */
  double st_lambda, st_gamma;  /* SoftTriple: lambda 20 (logit scale), gamma 0.1 (centre softmax temperature) */
  double st_tau, st_margin;    /* SoftTriple: tau 0.2 (regulariser weight; 0 = none), delta 0.01 */
  double ns_temperature;       /* Normalized Softmax: T 0.05 */
} BaselineParams;

/* the published / pytorch-metric-learning defaults (tau: the paper's 0.2) */
BaselineParams baseline_defaults(void);
/* proxies per class of a kind: st_centers for SoftTriple, else 1 */
int baseline_proxies_per_class(BaselineKind kind, const BaselineParams *p);

typedef struct {
  BaselineKind kind;
  BaselineParams p;
  int B_max, D, C, k, M;       /* k proxies per class, M = C*k */
  int batch_norm;              /* divisor of the per-row losses; 0 = the B of each call */
  int part_begin, part_end;    /* classes whose per-proxy terms are reported here, default [0, C) */
  /* results of the last forward (this process's share) */
  int B;
  float loss, loss_cls, loss_reg;   /* loss = loss_cls + tau * loss_reg (SoftTriple), else loss_cls */
  const int *labels;           /* B, borrowed from the last forward_local */
  /* activations */
  float *x;          /* B_max x D  normalised embeddings */
  float *xnorm;      /* B_max      clamped norms */
  float *W;          /* M x D      normalised proxies */
  float *pnorm;      /* M          clamped proxy norms */
  float *S;          /* B_max x M  cosines x W^T */
  float *Zc;         /* B_max x C  per class: ProxyNCA squared distance, Proxy-Anchor cosine,
                                   SoftTriple relaxed class similarity, Normalized Softmax logit */
  float *G;          /* B_max x M  dL/dS */
  float *GT;         /* M x B      G transposed, for G^T x */
  float *gx;         /* B_max x D  dL/dx */
  float *GW;         /* M x D      dL/dW */
  double *row_loss;  /* B_max      per-row loss terms before the divisor */
  /* Proxy-Anchor: what is summed over ranks between the two halves */
  int nstats;        /* 3C for Proxy-Anchor, else 0 */
  double *stats;     /* 3C: sum of exp(-alpha (s - delta)) over positives, of exp(alpha (s + delta))
                               over negatives, and the rows of each class */
  double *pos, *neg; /* C each: Proxy-Anchor's per-proxy terms pos_c, neg_c */
  double pos_loss, neg_loss;   /* their reduced sums over [part_begin, part_end) */
  int nthreads;
  double *scratch;   /* nthreads x (C + M)  per-row logits and SoftTriple's centre weights */
  float *gram;       /* k x k      SoftTriple: one class's centre Gram matrix, then its regulariser weights */
} Baseline;

void baseline_init(Baseline *l, BaselineKind kind, const BaselineParams *p, int B_max, int D, int C);
void baseline_free(Baseline *l);
/* forward_local + forward_finish; returns this process's share of the loss */
float baseline_forward(Baseline *l, const float *x_raw /* B x D */, const int *labels /* B */,
                       const float *proxies /* M x D */, int B);
void baseline_forward_local(Baseline *l, const float *x_raw /* B x D */, const int *labels /* B */,
                            const float *proxies /* M x D */, int B);
float baseline_forward_finish(Baseline *l);
/* dx_raw += dL/dx_raw (B x D), dproxies += dL/dproxies (M x D) */
void baseline_backward(Baseline *l, float *dx_raw, float *dproxies);

/* ---- the float64 reference ---------------------------------------------- */
typedef struct {
  int B, D, C, k, M;
  double loss, loss_cls, loss_reg;
  double pos_loss, neg_loss;   /* Proxy-Anchor */
  double *x;         /* B x D */
  double *W;         /* M x D */
  double *S;         /* B x M */
  double *Zc;        /* B x C  as Baseline.Zc */
  double *row_loss;  /* B */
  double *pos, *neg; /* C (Proxy-Anchor) */
  double *dx_raw;    /* B x D */
  double *dproxies;  /* M x D */
} BaselineRef;

void baseline_ref(BaselineRef *r, BaselineKind kind, const BaselineParams *p, const double *x_raw /* B x D */,
                  const int *labels /* B */, const double *proxies /* M x D */, int B, int D, int C);
void baseline_ref_free(BaselineRef *r);

#endif
