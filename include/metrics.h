/* metrics.h: evaluation of embeddings: exact blocked kNN, Recall@k, MAP@R,
 * R-precision (docs/loss.md 9), k-means with k-means++
 * seeding, and NMI.
 *
 * kNN. Similarity is the inner product of the rows of `emb` (n x D, float32,
 * L2-normalised by the caller). For each query q in [q0, q1) metrics_knn finds
 * the `depth` most similar rows among ALL n, q itself excluded, nearest first,
 * equal similarities ordered by lower index (NaN-free input). The threads
 * take query blocks; each walks the reference blocks in index order with
 * its own cblas_sgemm tile, and each query keeps a threshold, at most the
 * depth-th best similarity seen: a vector compare per 16 similarities
 * rejects most of a tile (AVX-512 or AVX2 where the CPU has it, chosen at
 * init, a portable loop otherwise), the survivors go to a buffer of
 * 2 x depth keys (cut back to depth in place, index order kept, when full),
 * and a radix sort on the similarity over the range held ends it.
 *
 * When n >= 8 x METRICS_KNN_SAMPLE_ROWS the threshold starts from a sample
 * of METRICS_KNN_SAMPLE_ROWS references, one at a hashed position in each of
 * as many equal strata of the index range (metrics_knn_sample_row; hashed so
 * that a period in the data, such as labels i mod C, cannot align with it):
 * a similarity a few standard deviations above the expected depth-th of the
 * sample, so that about depth candidates pass instead of several times that.
 * A query for which fewer than depth pass (an unrepresentative sample) is
 * scanned again without it; the result is exact either way. Memory: per
 * thread, a tile and 2 x depth + 64 keys per query of the block; n x n is
 * never formed. metrics_knn_ref is the naive double-precision full sort that
 * the tests hold it against.
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
 * (also for any thread count). Memory O(k x D + n) for any k; time per
 * restart about 2 n k D (2 + ln k) flops of seeding plus 2 n k D per Lloyd
 * iteration, which is what bounds k in practice (evaluator's
 * nmi_max_clusters). NMI is sklearn's normalized_mutual_info_score with
 * average_method='arithmetic', labels and clusters arbitrary ints; its
 * contingency table is the sorted (label, cluster) pairs, O(n) memory, never
 * labels x clusters.
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

#define METRICS_KNN_SAMPLE_ROWS 1024   /* references sampled for the starting thresholds */

/* where metrics_knn's time goes, summed over threads (metrics_knn_times) */
enum { METRICS_KNN_SAMPLE, METRICS_KNN_GEMM, METRICS_KNN_SCAN, METRICS_KNN_FINISH, METRICS_KNN_NPHASE };

/* the final sort's digits: at most METRICS_KNN_DIGIT bits, at most
 * 32 / METRICS_KNN_DIGIT + 1 of them, so that many counts a thread */
enum { METRICS_KNN_DIGIT = 13, METRICS_KNN_RADIX_TABLE = (32 / METRICS_KNN_DIGIT + 1) << METRICS_KNN_DIGIT };

/* the kNN scan's code paths, in order of preference */
enum { METRICS_KNN_PORTABLE, METRICS_KNN_AVX2, METRICS_KNN_AVX512 };

/* One slot of each buffer per OpenMP thread (T = nthreads, at init). */
typedef struct {
  int D, depth, cap, qblock, rblock, sample, tilew, scw, nthreads;
  int vector;         /* the scan's instructions: the best the CPU has (init), or fewer (tests) */
  float *tile;        /* T x qblock x tilew: one sgemm tile, tilew = max(rblock, sample) */
  uint64_t *keys;     /* T x qblock x cap: per-query candidates (similarity, index), cap = 2 depth + 64 */
  uint64_t *scratch;  /* T x 2 x scw: cut, sort and sample scratch, scw = max(cap, sample) */
  float *thr;         /* T x qblock: per-query filter, at most the depth-th best similarity seen */
  int *count;         /* T x qblock: candidates held */
  float *rows;        /* sample x D: the sampled references of the current call */
  uint32_t *span;     /* T x qblock x 2: bounds (smallest, largest) of the high halves of the keys held */
  long *refills;      /* T: queries scanned twice (sampled threshold too high) */
  double *sec;        /* T x METRICS_KNN_NPHASE: seconds per phase */
  uint32_t *hist;     /* T x METRICS_KNN_RADIX_TABLE: the final sort's digit counts */
} MetricsKnn;

/* qblock, rblock <= 0 pick defaults: 2048 references, 128 queries a thread
 * (fewer if depth is in the thousands: the buffers stay near 32 MB a thread) */
void metrics_knn_init(MetricsKnn *w, int D, int depth, int qblock, int rblock);
void metrics_knn_free(MetricsKnn *w);
/* knn: (q1 - q0) x depth, row i = neighbours of query q0 + i; 1 <= depth <= n - 1 */
void metrics_knn(int *knn, MetricsKnn *w, const float *emb, int n, int q0, int q1);
void metrics_knn_ref(int *knn, const float *emb, int n, int D, int q0, int q1, int depth);
/* the s-th sampled reference (0 <= s < METRICS_KNN_SAMPLE_ROWS) of n >= 8 x that */
int metrics_knn_sample_row(int s, int n);
/* seconds per phase and refilled queries since init, summed over threads */
void metrics_knn_times(double sec[METRICS_KNN_NPHASE], long *refills, const MetricsKnn *w);

/* ---------------------------------------------------- retrieval metrics */

typedef struct {
  int n, D, nk, depth;
  int ks[METRICS_MAXK];
  int *R;          /* n: number of OTHER items with the item's label */
  int *knn;        /* Q x depth: neighbours of the current queries, Q = w.qblock x w.nthreads */
  int *first;      /* Q: rank (1-based) of the first same-label neighbour, depth + 1 if none */
  double *ap;      /* Q: AP@R of each query */
  double *rprec;   /* Q: R-precision of each query */
  double *inv;     /* depth: 1 / (j + 1), the precision weights of AP@R */
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
