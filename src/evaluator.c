/* evaluator.c: distributed retrieval metrics, NMI and inference subgraphs
 * (include/evaluator.h). */
#include "evaluator.h"

#include "common.h"
#include "layers.h"
#include "proxygml.h"
#include "sampler.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void evaluator_init(Evaluator *e, Dist *d, const DatasetSplit *shard, const int *labels, int D, int M, int K,
                    const int *ks, int nk, int chunk) {
  memset(e, 0, sizeof *e);
  e->d = d;
  e->shard = shard;
  e->labels = labels;
  e->n = shard->info.n;
  e->D = D; e->M = M; e->K = K; e->chunk = chunk;
  e->nk = nk;
  memcpy(e->ks, ks, (size_t)nk * sizeof *ks);
  const int64_t nl = shard->nrows ? shard->nrows : 1;
  const int P = d->size;
  e->x = xmalloc_f32((size_t)chunk * shard->info.row_size);
  e->enorm = xmalloc_f32((size_t)chunk);
  e->emb = xmalloc_f32((size_t)nl * D);
  e->emb_all = xmalloc_f32((size_t)e->n * D);
  e->recv_counts = xmalloc(2 * (size_t)P * sizeof(int));
  e->recv_displs = e->recv_counts + P;
  e->iota = xmalloc((size_t)chunk * sizeof(int));
  for (int i = 0; i < chunk; i++) e->iota[i] = i;
  e->wn = xmalloc_f32((size_t)M * D);
  e->sim = xmalloc_f32((size_t)chunk * M);
  e->sub_idx = xmalloc((size_t)nl * K * sizeof(int));
  e->sub_sim = xmalloc_f32((size_t)nl * K);
  e->sel_count = xmalloc((size_t)M * sizeof(int64_t));
  e->topk_v = xmalloc_f32((size_t)K);
  e->topk_i = xmalloc((size_t)K * sizeof(int));
  metrics_eval_init(&e->ev, labels, (int)e->n, D, e->ks, nk, 0, 0);
  e->n_classes = metrics_count_distinct(labels, (int)e->n);
}

void evaluator_free(Evaluator *e) {
  metrics_eval_free(&e->ev);
  void *bufs[] = {e->x, e->enorm, e->emb, e->emb_all, e->recv_counts, e->iota, e->wn, e->sim, e->sub_idx, e->sub_sim,
                  e->sel_count, e->topk_v, e->topk_i};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  memset(e, 0, sizeof *e);
}

/* this rank's test rows through the network, L2-normalised, into e->emb */
static void embed_shard(Evaluator *e, Model *model) {
  const DatasetSplit *te = e->shard;
  const int64_t nl = te->nrows;
  const size_t image = (size_t)te->info.H * te->info.W * te->info.channels;
  for (int64_t s = 0; s < nl; s += e->chunk) {
    int cnt = (int)(nl - s < e->chunk ? nl - s : e->chunk);
    DatasetSplit view = *te;   /* rows s .. s+cnt-1 of the shard */
    view.images = te->images ? te->images + (size_t)s * image : NULL;
    view.features = te->features ? te->features + (size_t)s * te->info.F : NULL;
    view.labels = te->labels + s;
    view.nrows = cnt;
    dataset_batch(e->x, NULL, &view, e->iota, cnt);
    model_forward(model, e->x, cnt);
    l2norm_forward(e->emb + (size_t)s * e->D, e->enorm, model->out, cnt, e->D);
  }
}

/* NMI of k-means (as many clusters as test classes) on rank 0, broadcast;
 * NaN on every rank alike (all hold every label) beyond nmi_max_clusters */
static double nmi_of_kmeans(Evaluator *e, int restarts, uint64_t seed) {
  double nmi = NAN;
  if (e->nmi_max_clusters > 0 && e->n_classes > e->nmi_max_clusters) return nmi;
  if (e->d->rank == 0) {
    int k = e->n_classes;
    int *assign = xmalloc((size_t)e->n * sizeof(int));
    float *cent = xmalloc_f32((size_t)k * e->D);
    double inertia;
    MetricsKmeansOpts ko = metrics_kmeans_defaults();
    ko.restarts = restarts;
    ko.seed = seed;
    metrics_kmeans(assign, cent, &inertia, e->emb_all, (int)e->n, e->D, k, &ko);
    nmi = metrics_nmi(e->labels, assign, (int)e->n);
    free(assign);
    free(cent);
  }
  /* the other ranks wait here while rank 0 runs k-means, which may outlast
   * collective_timeout on a large test set: this one wait is not watched */
  int watch = dist_set_timeout(e->d, 0);
  dist_bcast(e->d, &nmi, sizeof nmi);
  dist_set_timeout(e->d, watch);
  return nmi;
}

/* the K most similar proxies of each of this rank's test rows */
static void subgraphs(Evaluator *e, const float *proxies) {
  const int D = e->D, M = e->M, K = e->K;
  const int64_t nl = e->shard->nrows;
  if (M == 0) return;
  for (int j = 0; j < M; j++) {
    const float *p = proxies + (size_t)j * D;
    double ss = 0;
    for (int d = 0; d < D; d++) ss += (double)p[d] * p[d];
    float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
    for (int d = 0; d < D; d++) e->wn[(size_t)j * D + d] = p[d] * inv;
  }
  memset(e->sel_count, 0, (size_t)M * sizeof(int64_t));
  for (int64_t s = 0; s < nl; s += e->chunk) {
    int cnt = (int)(nl - s < e->chunk ? nl - s : e->chunk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cnt, M, D, 1.0f, e->emb + (size_t)s * D, D, e->wn, D, 0.0f,
                e->sim, M);
    for (int i = 0; i < cnt; i++) {
      int *out = e->sub_idx + (size_t)(s + i) * K;
      proxygml_topk(out, e->sim + (size_t)i * M, M, K, e->topk_v, e->topk_i);
      for (int k = 0; k < K; k++) {
        e->sub_sim[(size_t)(s + i) * K + k] = e->sim[(size_t)i * M + out[k]];
        e->sel_count[out[k]]++;
      }
    }
  }
  if (e->d->size > 1) DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, e->sel_count, M, MPI_INT64_T, MPI_SUM, e->d->comm));
}

void evaluator_run(Evaluator *e, Model *model, const float *proxies, int kmeans_restarts, uint64_t seed, Metrics *m) {
  const int D = e->D, P = e->d->size;
  const int64_t nl = e->shard->nrows;
  embed_shard(e, model);
  for (int r = 0; r < P; r++) {
    int64_t a, cnt;
    sampler_shard(e->n, r, P, &a, &cnt);
    e->recv_counts[r] = (int)(cnt * D);
    e->recv_displs[r] = (int)(a * D);
  }
  DIST_CHECK(MPI_Allgatherv(e->emb, (int)(nl * D), MPI_FLOAT, e->emb_all, e->recv_counts, e->recv_displs, MPI_FLOAT,
                            e->d->comm));
  MetricsSums sums;   /* this rank's queries, summed over ranks */
  metrics_sums_reset(&sums, e->ks, e->nk);
  int q0 = (int)e->shard->row0;
  if (nl > 0) metrics_sums_add_range(&sums, &e->ev, e->emb_all, e->labels, q0, q0 + (int)nl);
  dist_allreduce_sum_f64(e->d, sums.hits, METRICS_NSUM);
  metrics_finish(m, &sums);
  m->nmi = nmi_of_kmeans(e, kmeans_restarts, seed);
  subgraphs(e, proxies);
}
