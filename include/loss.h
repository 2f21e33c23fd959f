/* loss.h: the loss of a training step, whichever it is: ProxyGML
 * (include/proxygml.h) or one of the baselines (include/baselines.h:
 * ProxyNCA, Proxy-Anchor, SoftTriple, Normalized Softmax), behind one
 * forward and one backward so that the trainer's step does not change with
 * the loss. The definitions: docs/loss.md (ProxyGML), docs/baselines.md.
 *
 *   LossParams p = loss_defaults();
 *   loss_kind_parse("softtriple", &p.kind);
 *   Loss l;
 *   loss_init(&l, &p, B_max, D, C);                // M = C * loss_proxies_per_class(&p) proxies
 *   loss_set_split(&l, G, rank, ranks);            // under MPI: global divisor, per-proxy slices
 *   loss_set_reduce(&l, allreduce_f64, ctx);       // under MPI: the sum over ranks Proxy-Anchor needs
 *   float v = loss_forward(&l, x_raw, labels, proxies, B);
 *   loss_backward(&l, dx_raw, dproxies);           // both accumulate (+=)
 *   loss_free(&l);
 *
 * Shapes: x_raw B x D, labels B in [0, C), proxies M x D (proxy j of class
 * j / N, N = loss_proxies_per_class). After a forward, loss, loss_cls and
 * loss_reg hold this process's share: summed over the ranks they are the
 * loss of the global batch (loss = loss_cls + weight * loss_reg, the weight
 * being ProxyGML's lambda or SoftTriple's tau).
 *
 * Distributed use: loss_set_split(G, r, P) makes each rank's per-row terms
 * divide by the global batch G and hands rank r the slice
 * [r*X/P, (r+1)*X/P) of the per-proxy terms (ProxyGML's regulariser rows,
 * X = M; Proxy-Anchor's proxy terms and SoftTriple's regulariser, X = C).
 * Proxy-Anchor also needs sums over the whole global batch before its loss
 * exists: loss_forward calls the reduce function on Baseline.stats (3C
 * doubles) between the two halves of its forward, on every rank, every
 * step; the other losses never call it. Without a reduce function (one
 * process) nothing is summed.
 *
 * Memory and threads: those of the loss inside (proxygml.h, baselines.h).
 */
#ifndef PROXYGML_LOSS_H
#define PROXYGML_LOSS_H

#include <stddef.h>

#include "baselines.h"
#include "proxygml.h"
#include "proxyshard.h"

typedef enum {
  LOSS_PROXYGML,
  LOSS_PROXYNCA,
  LOSS_PROXYANCHOR,
  LOSS_SOFTTRIPLE,
  LOSS_NORMSOFTMAX,
  LOSS_NKINDS
} LossKind;

typedef struct {
  LossKind kind;
  int N, K;                    /* ProxyGML: proxies per class, kept per subgraph */
  double lambda, scale;        /* ProxyGML: regulariser weight, softmax scale */
  int reg_sampled;             /* ProxyGML sharded: the sampled regulariser (include/proxyshard.h) */
  BaselineParams base;         /* the baselines' hyper-parameters */
} LossParams;

/* the sum over ranks of n doubles, in place (dist_allreduce_sum_f64 in the trainer) */
typedef void (*LossReduceFn)(void *ctx, double *buf, size_t n);

typedef struct {
  LossKind kind;
  int D, C, N, M;              /* N proxies per class, M = C*N */
  float loss, loss_cls, loss_reg;   /* this process's share, after a forward */
  ProxyGML gml;                /* kind == LOSS_PROXYGML */
  int sharded;                 /* ProxyGML with its proxies sharded by class (loss_init_sharded) */
  ProxyShard shard;
  Baseline base;               /* the other kinds */
  LossReduceFn reduce;
  void *reduce_ctx;
} Loss;

/* "proxygml", "proxynca", "proxyanchor", "softtriple", "normsoftmax" */
const char *loss_kind_name(LossKind kind);
/* 0 and *kind, or -1 with err_msg() listing the names */
int loss_kind_parse(const char *name, LossKind *kind);
/* ProxyGML with N = 1, K = 1 and the baselines' published defaults */
LossParams loss_defaults(void);
/* proxies per class: N (ProxyGML), the centres (SoftTriple), else 1 */
int loss_proxies_per_class(const LossParams *p);

void loss_init(Loss *l, const LossParams *p, int B_max, int D, int C);
/* ProxyGML over the ranks of d with its proxies sharded by class
 * (include/proxyshard.h): each rank passes its B = global_batch / P rows and
 * its slab of shard.Mp proxies (rows [shard.j0, shard.j0 + shard.Mp) of the
 * M x D matrix) to loss_forward and loss_backward, which are then collective.
 * The shares and the split are built in: no loss_set_split. */
void loss_init_sharded(Loss *l, const LossParams *p, const Dist *d, int global_batch, int D, int C);
void loss_free(Loss *l);
void loss_set_split(Loss *l, int global_batch, int rank, int ranks);
void loss_set_reduce(Loss *l, LossReduceFn fn, void *ctx);
float loss_forward(Loss *l, const float *x_raw /* B x D */, const int *labels /* B */,
                   const float *proxies /* M x D */, int B);
void loss_backward(Loss *l, float *dx_raw /* B x D */, float *dproxies /* M x D */);
/* ProxyGML: how near row b's subgraph was to changing (proxygml_topk_margin);
 * the baselines select nothing: +inf */
float loss_topk_margin(const Loss *l, int b, int y);

#endif
