/* proxyshard.h: the ProxyGML loss with its proxies sharded by class across
 * the ranks, for label spaces too large to replicate (docs/sharding.md). It
 * computes the same function as include/proxygml.h: the same subgraphs (the
 * same tie rule), the same softmax, the same gradients up to the order of
 * float sums.
 *
 *   ProxyShard s;
 *   proxyshard_init(&s, d, G, D, C, N, K, lambda, scale);   // s.c0, s.c1: this rank's classes
 *   float v = proxyshard_forward(&s, x_raw, labels, slab);   // collective
 *   proxyshard_backward(&s, dx_raw, dslab);                  // collective; both accumulate (+=)
 *   proxyshard_free(&s);
 *
 * Layout: rank r owns the classes [c0, c1) = [C r / P, C (r+1) / P) and all
 * N proxies of each, the rows [j0, j0 + Mp) of the global M x D matrix
 * (j0 = c0 N, Mp = (c1 - c0) N): `slab` is that Mp x D block. Rank r holds
 * the rows [r B, (r+1) B) of the global batch of G = P B samples (x_raw B x
 * D, labels B), as the sampler hands them out.
 *
 * The step: the normalised embeddings and the labels are allgathered; each
 * rank computes the G x Mp similarities to its own proxies; every row's
 * subgraph is selected exactly across ranks (the owner of its class keeps
 * the positives; the K - N best negatives are found by histograms of their
 * values, then of their order keys' digits, summed over the ranks,
 * docs/sharding.md 2); each rank sums its
 * classes' logits, and one allreduce of 2G doubles (num, den) gives every
 * rank the masked softmax. Backward: the proxy gradients stay on their rank;
 * the embedding gradient (G x D partial sums) is reduce-scattered to the
 * rank that owns each row. Traffic per step is O(G D + G 256), whatever C.
 *
 * Ties: entries of equal similarity rank by global proxy index, lower first
 * (the rule of proxygml_select). Requires P <= C and G = P B.
 *
 * The regulariser (lambda > 0) is exact: U (C x D, the class sums of the
 * normalised proxies) is allgathered and each rank computes the terms of its
 * own proxies in chunks; its cost is O(Mp C D) per rank and U is C x D on
 * every rank, affordable up to C ~ 10^5 (docs/sharding.md 3). Beyond, the
 * sampled form (reg_sampled) averages the terms of the batch's classes'
 * proxies only, at O(G N C D / P) per rank.
 */
#ifndef PROXYGML_PROXYSHARD_H
#define PROXYGML_PROXYSHARD_H

#include <stdint.h>

#include "dist.h"

enum { PROXYSHARD_BINS = 256 };   /* first round: bins of equal width over [-1, 1] */

/* one row's bracket of the (K-N)-th best negative (docs/sharding.md 2.2) */
typedef struct {
  int need;          /* negatives still to pick inside the bracket; 0: none at all */
  int bin;           /* the bracket's value bin */
  int count;         /* members of the bracket over all ranks */
  int bits;          /* low bits of the order key still open: the bracket is the keys >> bits == prefix */
  uint32_t prefix;   /* (bits = 32: the whole bin) */
  int whole;         /* the whole bracket is kept */
  int ties_before;   /* bits = 0, part of a tie kept: equal keys on lower ranks */
  int ties_local;    /* equal keys here */
  int nan;           /* a NaN among this rank's candidates of the row (poisons its loss) */
} ProxyShardRow;

typedef struct {
  const Dist *d;
  int P, rank, nt;
  int G, B, D, C, N, M, K;
  float lambda, scale;
  int reg_sampled;             /* the sampled regulariser */
  int c0, c1, j0, Mp;          /* this rank's classes and proxies */
  int row0;                    /* its first row of the global batch: rank * B */
  /* results of the last forward: this rank's share (summed over ranks: the loss) */
  float loss, loss_cls, loss_reg;
  double bytes;                /* volume of this rank's collectives, added up: n bytes for an allgather,
                                * reduce-scatter or scan of n, 2n for an allreduce (a ring moves
                                * (P-1)/P of it per rank) */
  const float *slab;           /* Mp x D, borrowed from the forward */
  float *x;                    /* G x D   normalised embeddings of the global batch */
  float *xnorm;                /* B       clamped norms of this rank's rows */
  int *y;                      /* G       labels */
  float *pnorm;                /* Mp */
  float *S;                    /* G x Mp  similarities */
  ProxyShardRow *row;          /* G */
  int *lhist, *ghist;          /* G x PROXYSHARD_BINS: this rank's counts, the sums over ranks */
  int *cand_start;             /* G + 1   the entries of each row's bracket (CSR) */
  uint32_t *cand_key;          /* their order keys */
  int64_t cand_cap;
  int *active;                 /* G  rows still refining */
  int *hoff;                   /* G  their histograms' offsets in a round */
  long rounds;                 /* collectives of the selection so far (added) */
  int cap;                     /* min(K, Mp): local entries a row can keep */
  int *keep_n;                 /* G */
  int *keep_j;                 /* G x cap  local proxy indices kept, ascending */
  float *keep_g;               /* G x cap  their G_S */
  int *run_c;                  /* G x cap  the classes of the kept entries (one run each) */
  double *run_e;               /* G x cap  exp(s Z) of each run, 0 where masked */
  int *run_n;                  /* G */
  double *numden;              /* 2G  p_y numerator and denominator, then the sums */
  double *zmax;                /* G   the global largest unmasked logit (large s N only) */
  double *row_loss;            /* max(G, 128): per-row loss terms */
  int *csr_start, *csr_b;      /* Mp + 1, G x cap: the kept pairs by proxy */
  float *csr_g;
  float *gx_part;              /* nt x G x D */
  float *gx;                   /* G x D   partial G_x, then this rank's rows (B x D) */
  float *scratch_gw;           /* nt x D */
  /* the regulariser (lambda > 0) */
  float *W;                    /* Mp x D  normalised proxies */
  float *U;                    /* C x D   class sums of W, every class */
  float *GU;                   /* C x D   lambda G^T W over this rank's proxies, then its classes' sums */
  float *GW;                   /* Mp x D  lambda dL_reg/dW */
  float *Zc;                   /* PROXYSHARD_REG_CHUNK x C */
  int *ucounts, *udispls;      /* P: each rank's classes x D */
  int *counts, *displs;        /* P each: each rank's sampled proxies x D */
  /* the sampled regulariser (reg_sampled): U, GU are this rank's classes only (Cp x D) */
  float *Ws;                   /* G N x D  the sampled proxies, normalised, in index order */
  float *GWs;                  /* G N x D  their direct gradients */
  int *cls_s;                  /* G        the batch's classes, ascending */
  double *rmax, *rsum;         /* G N, 3 G N: each sampled row's log-sum-exp parts, its own logit, the global max */
  int reg_count;               /* sampled proxies of the last forward */
} ProxyShard;

/* the classes [*c0, *c1) of rank r of P */
void proxyshard_classes(int C, int P, int r, int *c0, int *c1);
/* reg_sampled (with lambda > 0): the sampled regulariser of docs/sharding.md 3 in place of the exact one */
void proxyshard_init(ProxyShard *s, const Dist *d, int G, int D, int C, int N, int K, float lambda, float scale,
                     int reg_sampled);
void proxyshard_free(ProxyShard *s);
/* returns this rank's share of the loss */
float proxyshard_forward(ProxyShard *s, const float *x_raw /* B x D */, const int *labels /* B */,
                         const float *slab /* Mp x D */);
/* dx_raw += dL/dx_raw (B x D), dslab += dL/dslab (Mp x D) */
void proxyshard_backward(ProxyShard *s, float *dx_raw, float *dslab);
/* Inference subgraphs, collective: the K most similar proxies (every
 * rank's slab) of each of `rows` normalised embeddings (emb, rows x D, the
 * same on every rank), ties to the lower index. Rows [first, first +
 * count) go to out_idx (global indices, ascending) and out_sim (count x K
 * each); sel_count (Mp) counts how many rows keep each of this rank's
 * proxies. The loss's buffers are reused: call it between steps. */
void proxyshard_topk(ProxyShard *s, const float *slab, const float *emb, int rows, int first, int count, int *out_idx,
                     float *out_sim, int64_t *sel_count);
/* collective: the least, over the global batch, of proxygml_topk_margin */
float proxyshard_topk_margin(ProxyShard *s);
/* the global proxy indices kept for global row b by this rank, ascending, into out; returns how many */
int proxyshard_kept(const ProxyShard *s, int b, int *out);

#endif
