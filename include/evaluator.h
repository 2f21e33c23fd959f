/* evaluator.h: distributed evaluation of an embedding network on the test
 * split: retrieval metrics (Recall@k, MAP@R, R-precision) through metrics'
 * blocked kNN, NMI of k-means, and the inference subgraphs (each test row's
 * K most similar proxies) that the run file records.
 *
 *   Evaluator e;
 *   evaluator_init(&e, &dist, &test_shard, test_labels, D, M, K, ks, nk, chunk);
 *   evaluator_run(&e, &model, proxies, kmeans_restarts, seed, &metrics);
 *   ... e.emb (this rank's embeddings), e.sub_idx, e.sub_sim, e.sel_count ...
 *   evaluator_free(&e);
 *
 * Each rank embeds its shard of the test rows (in chunks of `chunk` rows,
 * the model's largest batch), the embeddings are gathered on every rank
 * (n_test x D), each rank ranks the neighbours of its own queries and the
 * partial sums are added over ranks; rank 0 runs k-means and broadcasts NMI,
 * unless there are more than nmi_max_clusters test classes (NMI is NaN).
 * M = 0 (proxies sharded across the ranks): sub_idx and sub_sim are
 * allocated but left to the caller (proxyshard_topk).
 * Memory: O(n_test x D) per rank, never n_test^2.
 */
#ifndef PROXYGML_EVALUATOR_H
#define PROXYGML_EVALUATOR_H

#include "dataset.h"
#include "dist.h"
#include "metrics.h"
#include "model.h"

#include <stdint.h>

typedef struct {
  Dist *d;                     /* borrowed; the k-means wait lifts its watchdog */
  const DatasetSplit *shard;   /* this rank's test rows (borrowed) */
  const int *labels;           /* n_test: every test label (borrowed) */
  int64_t n;                   /* test rows in all */
  int D, M, K, chunk;
  int n_classes;               /* distinct test labels: the k of NMI's k-means */
  int nmi_max_clusters;        /* NMI only when n_classes <= this; 0 = always (set by the caller, default 0) */
  MetricsEval ev;
  int ks[METRICS_MAXK], nk;
  float *x;                    /* chunk x row_size: network input */
  float *enorm;                /* chunk */
  float *emb;                  /* shard rows x D: this rank's embeddings of the last run */
  float *emb_all;              /* n x D */
  int *recv_counts, *recv_displs;   /* P each */
  int *iota;                   /* chunk: 0..chunk-1 */
  float *wn;                   /* M x D: normalised proxies */
  float *sim;                  /* chunk x M */
  int *sub_idx;                /* shard rows x K: the subgraph of each row, ascending proxy ids */
  float *sub_sim;              /* shard rows x K: their similarities */
  int64_t *sel_count;          /* M: subgraphs (over all ranks) holding each proxy */
  float *topk_v;               /* K */
  int *topk_i;                 /* K */
} Evaluator;

void evaluator_init(Evaluator *e, Dist *d, const DatasetSplit *shard, const int *labels, int D, int M, int K,
                    const int *ks, int nk, int chunk);
void evaluator_free(Evaluator *e);
/* evaluates `model` (batch capacity >= chunk) with the proxies (M x D);
 * every rank gets the same metrics */
void evaluator_run(Evaluator *e, Model *model, const float *proxies, int kmeans_restarts, uint64_t seed, Metrics *m);

#endif
