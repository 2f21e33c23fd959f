/* metrics.h: evaluation of embeddings: exact blocked kNN, Recall@k, MAP@R,
 * R-precision (docs/loss.md 9), k-means with k-means++
 * seeding, and NMI.
 *
 * kNN. Similarity is the inner product of the rows of `emb` (n x D, float32,
 * L2-normalised by the caller). For each query q in [q0, q1) metrics_knn finds
 * the `depth` most similar rows among ALL n, q itself excluded, nearest first,
 * equal similarities ordered by lower index. It walks query blocks x
 * reference blocks: one cblas_sgemm per tile, then every query (OpenMP)
 * keeps the candidates that beat its current depth-th best in a bounded
 * buffer (cut back by quickselect when full, radix-sorted at the end).
 * Memory is the tile plus 2 x depth candidates per query of the block; n x n
 * is never formed. metrics_knn_ref is the naive
 * double-precision full sort that the tests hold it against.
 *
 * Retrieval metrics are partial sums so that ranks can split the queries:
 *
 *   MetricsEval ev; metrics_eval_init(&ev, labels, n, D, ks, nk, 0, 0);
 *   MetricsSums s;  metrics_sums_reset(&s, ks, nk);
 *   metrics_sums_add_range(&s, &ev, emb, labels, q0, q1);   // this rank's queries
 *   // MPI: MPI_Allreduce(MPI_IN_PLACE, s.hits, METRICS_NSUM, MPI_DOUBLE, MPI_SUM, comm)
 *   Metrics m; metrics_finish(&m, &s);                       // m.recall[i], m.map_r, ...
 *   metrics_eval_free(&ev);
 *
 * Every rank needs all n embeddings and labels (the references); R (other
 * items with the query's label) is counted over all n at init. The neighbour
 * depth is max(max k, max R), capped at n - 1; per-query memory is that depth.
 * A query whose label is unique is a Recall miss and is skipped by MAP@R and
 * R-precision. Labels may be any ints.
 *
 * k-means: k-means++ seeding (greedy, 2 + ln k candidates per centre, as in
 * sklearn) from the project's Rng, then Lloyd iterations with sgemm distance
 * blocks; `restarts` seedings, the lowest inertia wins. Same seed, same result
 * (also for any thread count). NMI is sklearn's normalized_mutual_info_score
 * with average_method='arithmetic', labels and clusters arbitrary ints.
 *
 * Kernels return void and CHECK their preconditions. (`proxygml check-metrics`,
 * tools/check_metrics.c, holds them against an HDF5 file of expected values.)
 */
#ifndef PROXYGML_METRICS_H
#define PROXYGML_METRICS_H

#include <stdint.h>

#define METRICS_MAXK 16                  /* at most this many k in a Recall@k list */
#define METRICS_NSUM (METRICS_MAXK + 4)  /* doubles from MetricsSums.hits to n_query */

/* ------------------------------------------------------------------ kNN */

typedef struct {
  int D, depth, cap, qblock, rblock;
  float *tile;      /* qblock x rblock: similarities of one sgemm tile */
  uint64_t *keys;   /* qblock x cap: per-query candidates (similarity, index), cap = 2 depth + 32 */
  float *thr;       /* qblock: similarity to beat once a query's buffer has been cut back */
  int *count;       /* qblock: candidates held */
  int *pruned;      /* qblock: 1 once thr is in force */
} MetricsKnn;

/* qblock, rblock <= 0 pick defaults: 4096 references, 256 queries (fewer if
 * depth is in the thousands: the buffers stay near 32 MB) */
void metrics_knn_init(MetricsKnn *w, int D, int depth, int qblock, int rblock);
void metrics_knn_free(MetricsKnn *w);
/* knn: (q1 - q0) x depth, row i = neighbours of query q0 + i; 1 <= depth <= n - 1 */
void metrics_knn(int *knn, MetricsKnn *w, const float *emb, int n, int q0, int q1);
void metrics_knn_ref(int *knn, const float *emb, int n, int D, int q0, int q1, int depth);

/* ---------------------------------------------------- retrieval metrics */

typedef struct {
  int n, D, nk, depth;
  int ks[METRICS_MAXK];
  int *R;          /* n: number of OTHER items with the item's label */
  int *knn;        /* qblock x depth: neighbours of the current query block */
  int *first;      /* qblock: rank (1-based) of the first same-label neighbour, depth + 1 if none */
  double *ap;      /* qblock: AP@R of each query of the block */
  double *rprec;   /* qblock: R-precision of each query of the block */
  MetricsKnn w;
} MetricsEval;

/* Summable partial results: hits..n_query are METRICS_NSUM contiguous doubles
 * (counts are exact in a double), so one allreduce sums them. */
typedef struct {
  int nk;
  int ks[METRICS_MAXK];
  double hits[METRICS_MAXK];  /* queries with a same-label item among their ks[i] nearest */
  double ap_sum;              /* sum of AP@R over queries with R > 0 */
  double rprec_sum;           /* sum of R-precision over queries with R > 0 */
  double n_rel;               /* queries with R > 0 */
  double n_query;             /* all queries */
} MetricsSums;

typedef struct {
  int nk;
  int ks[METRICS_MAXK];
  double recall[METRICS_MAXK];  /* Recall@ks[i] */
  double map_r;                 /* MAP@R (NaN when no query has R > 0) */
  double r_precision;           /* NaN likewise */
  double nmi;                   /* NaN unless set by metrics_evaluate */
  double n_query, n_rel;
} Metrics;

/* labels: n; ks: nk values >= 1, 1 <= nk <= METRICS_MAXK; n >= 2 */
void metrics_eval_init(MetricsEval *e, const int *labels, int n, int D, const int *ks, int nk,
                       int qblock, int rblock);
void metrics_eval_free(MetricsEval *e);
void metrics_sums_reset(MetricsSums *s, const int *ks, int nk);
/* adds queries [q0, q1); emb: n x D and labels: n, the same as at init */
void metrics_sums_add_range(MetricsSums *s, MetricsEval *e, const float *emb, const int *labels,
                            int q0, int q1);
void metrics_sums_merge(MetricsSums *acc, const MetricsSums *part);
void metrics_finish(Metrics *m, const MetricsSums *s);

/* -------------------------------------------------------- k-means, NMI */

typedef struct {
  int restarts;     /* k-means++ seedings; the lowest inertia wins */
  int max_iter;     /* Lloyd iterations per restart */
  double tol;       /* stop when sum ||c_new - c||^2 <= tol * mean per-dimension variance */
  uint64_t seed;
} MetricsKmeansOpts;

MetricsKmeansOpts metrics_kmeans_defaults(void);   /* 4 restarts, 300 iterations, 1e-4, seed 0 */
/* assign: n cluster ids in [0, k); centroids: k x D; x: n x D; 1 <= k <= n */
void metrics_kmeans(int *assign, float *centroids, double *inertia, const float *x, int n, int D, int k,
                    const MetricsKmeansOpts *opt);
int metrics_count_distinct(const int *labels, int n);
/* sklearn normalized_mutual_info_score(a, b, average_method='arithmetic'); a, b: n */
double metrics_nmi(const int *a, const int *b, int n);

/* All of it on one process: retrieval metrics over all n queries, and, when
 * km is not NULL, NMI of k-means (k = distinct labels) against the labels. */
void metrics_evaluate(Metrics *m, const float *emb, const int *labels, int n, int D, const int *ks, int nk,
                      const MetricsKmeansOpts *km);

#endif
