/* loss.c: one interface over ProxyGML and the baseline losses
 * (include/loss.h). Dispatch only: the mathematics is in proxygml.c and
 * baselines.c. */
#include "loss.h"

#include "common.h"

#include <math.h>
#include <string.h>

static const char *const NAMES[LOSS_NKINDS] = {"proxygml", "proxynca", "proxyanchor", "softtriple", "normsoftmax"};
/* the baseline of each kind (LOSS_PROXYGML has none) */
static const BaselineKind BASE_KIND[LOSS_NKINDS] = {0, BASELINE_PROXYNCA, BASELINE_PROXYANCHOR, BASELINE_SOFTTRIPLE,
                                                    BASELINE_NORMSOFTMAX};

const char *loss_kind_name(LossKind kind) { return kind >= 0 && kind < LOSS_NKINDS ? NAMES[kind] : "?"; }

int loss_kind_parse(const char *name, LossKind *kind) {
  for (int i = 0; i < LOSS_NKINDS; i++)
    if (!strcmp(name, NAMES[i])) { *kind = (LossKind)i; return 0; }
  return err_set("unknown loss '%s' (proxygml, proxynca, proxyanchor, softtriple, normsoftmax)", name);
}

LossParams loss_defaults(void) {
  return (LossParams){.kind = LOSS_PROXYGML, .N = 1, .K = 1, .lambda = 0, .scale = 1, .base = baseline_defaults()};
}

int loss_proxies_per_class(const LossParams *p) {
  if (p->kind == LOSS_PROXYGML) return p->N;
  return baseline_proxies_per_class(BASE_KIND[p->kind], &p->base);
}

void loss_init(Loss *l, const LossParams *p, int B_max, int D, int C) {
  CHECK(p->kind >= 0 && p->kind < LOSS_NKINDS, "loss_init: bad kind %d", (int)p->kind);
  memset(l, 0, sizeof *l);
  l->kind = p->kind;
  l->D = D; l->C = C; l->N = loss_proxies_per_class(p); l->M = C * l->N;
  if (p->kind == LOSS_PROXYGML) proxygml_init(&l->gml, B_max, D, C, p->N, p->K, (float)p->lambda, (float)p->scale);
  else baseline_init(&l->base, BASE_KIND[p->kind], &p->base, B_max, D, C);
}

void loss_init_sharded(Loss *l, const LossParams *p, const Dist *d, int global_batch, int D, int C) {
  CHECK(p->kind == LOSS_PROXYGML, "loss_init_sharded: only ProxyGML shards its proxies");
  memset(l, 0, sizeof *l);
  l->kind = p->kind;
  l->sharded = 1;
  l->D = D; l->C = C; l->N = p->N; l->M = C * p->N;
  proxyshard_init(&l->shard, d, global_batch, D, C, p->N, p->K, (float)p->lambda, (float)p->scale, p->reg_sampled);
}

void loss_free(Loss *l) {
  if (l->sharded) proxyshard_free(&l->shard);
  else if (l->kind == LOSS_PROXYGML) proxygml_free(&l->gml);
  else baseline_free(&l->base);
  memset(l, 0, sizeof *l);
}

void loss_set_split(Loss *l, int global_batch, int rank, int ranks) {
  CHECK(ranks >= 1 && rank >= 0 && rank < ranks, "loss_set_split: rank %d of %d", rank, ranks);
  if (l->sharded) return;
  if (l->kind == LOSS_PROXYGML) {   /* docs/loss.md 6.2 */
    l->gml.batch_norm = global_batch;
    l->gml.reg_begin = (int)((int64_t)l->M * rank / ranks);
    l->gml.reg_end = (int)((int64_t)l->M * (rank + 1) / ranks);
  } else {                          /* docs/baselines.md 6 */
    l->base.batch_norm = global_batch;
    l->base.part_begin = (int)((int64_t)l->C * rank / ranks);
    l->base.part_end = (int)((int64_t)l->C * (rank + 1) / ranks);
  }
}

void loss_set_reduce(Loss *l, LossReduceFn fn, void *ctx) {
  l->reduce = fn;
  l->reduce_ctx = ctx;
}

float loss_forward(Loss *l, const float *x_raw, const int *labels, const float *proxies, int B) {
  if (l->sharded) {
    /* unreachable in tests: the trainer passes its rows per rank, G / P, which is what the sharded loss was made for */
    CHECK(B == l->shard.B, "loss_forward: %d rows, the sharded loss takes %d", B, l->shard.B);
    proxyshard_forward(&l->shard, x_raw, labels, proxies);
    l->loss = l->shard.loss; l->loss_cls = l->shard.loss_cls; l->loss_reg = l->shard.loss_reg;
    return l->loss;
  }
  if (l->kind == LOSS_PROXYGML) {
    proxygml_forward(&l->gml, x_raw, labels, proxies, B);
    l->loss = l->gml.loss; l->loss_cls = l->gml.loss_cls; l->loss_reg = l->gml.loss_reg;
    return l->loss;
  }
  baseline_forward_local(&l->base, x_raw, labels, proxies, B);
  if (l->base.nstats > 0 && l->reduce) l->reduce(l->reduce_ctx, l->base.stats, (size_t)l->base.nstats);
  baseline_forward_finish(&l->base);
  l->loss = l->base.loss; l->loss_cls = l->base.loss_cls; l->loss_reg = l->base.loss_reg;
  return l->loss;
}

void loss_backward(Loss *l, float *dx_raw, float *dproxies) {
  if (l->sharded) proxyshard_backward(&l->shard, dx_raw, dproxies);
  else if (l->kind == LOSS_PROXYGML) proxygml_backward(&l->gml, dx_raw, dproxies);
  else baseline_backward(&l->base, dx_raw, dproxies);
}

float loss_topk_margin(const Loss *l, int b, int y) {
  /* unreachable in tests: the trainer asks a sharded loss for proxyshard_topk_margin instead */
  CHECK(!l->sharded, "loss_topk_margin: a sharded loss's margin is collective (proxyshard_topk_margin)");
  return l->kind == LOSS_PROXYGML ? proxygml_topk_margin(&l->gml, b, y) : INFINITY;
}
