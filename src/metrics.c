/* metrics.c: blocked exact kNN (and its naive _ref), Recall@k / MAP@R /
 * R-precision as partial sums, k-means++ / Lloyd k-means, sklearn's NMI, and
 * the check-metrics subcommand (see include/metrics.h). Not here: MPI (callers
 * allreduce MetricsSums) and approximate search (faiss-style) for huge n.
 * reference: docs/loss.md 9. */
#include "metrics.h"

#include "common.h"
#include "h5io.h"
#include "rng.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(offsetof(MetricsSums, n_query) - offsetof(MetricsSums, hits) ==
               (METRICS_NSUM - 1) * sizeof(double), "MetricsSums sums must be contiguous doubles");

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* sorted distinct values of v (n); returns an allocation of *nu ints */
static int *sorted_unique(const int *v, int n, int *nu) {
  int *s = xmalloc((size_t)imax(n, 1) * sizeof *s);   /* n */
  memcpy(s, v, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_int);
  int m = 0;
  for (int i = 0; i < n; i++)
    if (m == 0 || s[m - 1] != s[i]) s[m++] = s[i];
  *nu = m;
  return s;
}

/* first index i in s (n, ascending) with s[i] >= v */
static int lower_bound(const int *s, int n, int v) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (s[mid] < v) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/* first index i in s (n, ascending) with s[i] > v */
static int upper_bound(const int *s, int n, int v) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (s[mid] <= v) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/* ================================================================== kNN */

/* A candidate is one uint64 key: ascending keys = nearest first, equal
 * similarities by lower index (high 32 bits: the similarity, order-flipped;
 * low 32 bits: the index). Integer compares, and a radix sort at the end. */
static inline uint64_t knn_key(float s, int idx) {
  s += 0.0f;   /* -0 -> +0: they compare equal as floats, so must tie as keys */
  uint32_t b;
  memcpy(&b, &s, sizeof b);
  b = (b & 0x80000000u) ? ~b : (b | 0x80000000u);   /* unsigned order = float order */
  return ((uint64_t)~b << 32) | (uint32_t)idx;
}

static inline float knn_key_sim(uint64_t key) {
  uint32_t b = ~(uint32_t)(key >> 32);
  b = (b & 0x80000000u) ? (b & 0x7fffffffu) : ~b;
  float s;
  memcpy(&s, &b, sizeof s);
  return s;
}

/* quickselect: a[k] becomes the (k+1)-th smallest of a[0..n), smaller ones before it (keys are distinct) */
static void select_u64(uint64_t *a, int n, int k) {
  int lo = 0, hi = n - 1;
  while (hi > lo) {
    int mid = lo + (hi - lo) / 2;
    uint64_t t;
    if (a[mid] < a[lo]) { t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
    if (a[hi] < a[lo]) { t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
    if (a[hi] < a[mid]) { t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
    const uint64_t p = a[mid];
    int i = lo, j = hi;
    while (i <= j) {
      while (a[i] < p) i++;
      while (a[j] > p) j--;
      if (i <= j) { t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
}

/* Moves the depth smallest keys of a (n > depth) to a[0..depth), the
 * largest of them to a[depth - 1]. Buckets on
 * the similarity bits, scaled to the range present, find the bucket holding
 * the depth-th key; two branch-free partitions, then an exact select inside
 * that one bucket. About four cheap passes instead of a branchy quickselect. */
static void knn_cut(uint64_t *a, int n, int depth) {
  enum { NB = 2048 };
  uint32_t lo = UINT32_MAX, hi = 0;
  for (int i = 0; i < n; i++) {
    uint32_t u = (uint32_t)(a[i] >> 32);
    lo = u < lo ? u : lo;
    hi = u > hi ? u : hi;
  }
  int shift = 0;
  while (((hi - lo) >> shift) >= NB) shift++;
  uint32_t h[NB];
  memset(h, 0, sizeof h);
  for (int i = 0; i < n; i++) h[((uint32_t)(a[i] >> 32) - lo) >> shift]++;
  uint32_t b = 0, below = 0;   /* keys in buckets < b */
  while (below + h[b] < (uint32_t)depth) below += h[b++];
  int w = 0;
  for (int i = 0; i < n; i++) {   /* buckets <= b to the front */
    uint64_t t = a[i];
    a[i] = a[w]; a[w] = t;
    w += (((uint32_t)(t >> 32) - lo) >> shift) <= b;
  }
  int v = 0;
  for (int i = 0; i < w; i++) {   /* of those, buckets < b to the front */
    uint64_t t = a[i];
    a[i] = a[v]; a[v] = t;
    v += (((uint32_t)(t >> 32) - lo) >> shift) < b;
  }
  select_u64(a + v, w - v, depth - v - 1);
}

/* LSD radix sort of a (n) with scratch tmp (n); bytes that are equal in
 * every key (the high bytes of small indices, say) cost no pass */
static void radix_sort_u64(uint64_t *a, uint64_t *tmp, int n) {
  uint32_t cnt[8][256];
  memset(cnt, 0, sizeof cnt);
  for (int i = 0; i < n; i++)
    for (int b = 0; b < 8; b++) cnt[b][(a[i] >> (8 * b)) & 255]++;
  uint64_t *src = a, *dst = tmp;
  for (int b = 0; b < 8; b++) {
    uint32_t *c = cnt[b];
    if (c[(src[0] >> (8 * b)) & 255] == (uint32_t)n) continue;
    uint32_t sum = 0;
    for (int v = 0; v < 256; v++) { uint32_t t = c[v]; c[v] = sum; sum += t; }
    for (int i = 0; i < n; i++) dst[c[(src[i] >> (8 * b)) & 255]++] = src[i];
    uint64_t *t = src; src = dst; dst = t;
  }
  if (src != a) memcpy(a, src, (size_t)n * sizeof *a);
}

/* Merge similarities s[j0..j1) of references r0 + j into one query's buffer
 * (keys: cap; *cnt held). Until the first compaction everything is taken;
 * after it only similarities above *thr, the depth-th best so far. References
 * arrive in increasing index order, so a candidate equal to *thr loses the
 * tie: strict > is exact. A full buffer is cut back to the best depth; the
 * new threshold is the largest key kept. */
static void knn_scan(uint64_t *keys, int *cnt, int *pruned, float *thr, int depth, int cap, const float *s,
                     int r0, int j0, int j1) {
  int c = *cnt, p = *pruned, j = j0;
  float t = *thr;
  while (j < j1) {
    if (!p)
      for (; j < j1 && c < cap; j++) keys[c++] = knn_key(s[j], r0 + j);
    else
      for (; j < j1 && c < cap; j++)
        if (s[j] > t) keys[c++] = knn_key(s[j], r0 + j);
    if (c == cap) {
      knn_cut(keys, c, depth);
      c = depth;
      t = knn_key_sim(keys[depth - 1]);
      p = 1;
    }
  }
  *cnt = c;
  *pruned = p;
  *thr = t;
}

/* the best depth keys of a query, nearest first, as indices into out (depth) */
static void knn_finish(int *out, uint64_t *keys, int cnt, int depth) {
  if (cnt > depth) knn_cut(keys, cnt, depth);
  radix_sort_u64(keys, keys + depth, depth);   /* cap >= 2 depth: the rest is scratch */
  for (int j = 0; j < depth; j++) out[j] = (int)(uint32_t)keys[j];
}

void metrics_knn_init(MetricsKnn *w, int D, int depth, int qblock, int rblock) {
  CHECK(D >= 1 && depth >= 1, "metrics_knn_init: D = %d, depth = %d", D, depth);
  memset(w, 0, sizeof *w);
  w->D = D;
  w->depth = depth;
  w->cap = 4 * depth + 32;   /* a cut-back every >= 3 depth + 32 accepted candidates */
  /* default: 256 queries, fewer when deep buffers would pass ~32 MB */
  w->qblock = qblock > 0 ? qblock : imax(1, imin(256, (4 << 20) / w->cap));
  w->rblock = rblock > 0 ? rblock : 4096;
  w->tile = xmalloc_f32((size_t)w->qblock * w->rblock);                   /* qblock x rblock */
  w->keys = xmalloc((size_t)w->qblock * w->cap * sizeof *w->keys);        /* qblock x cap */
  w->thr = xmalloc_f32((size_t)w->qblock);                                /* qblock */
  w->count = xmalloc((size_t)w->qblock * sizeof *w->count);               /* qblock */
  w->pruned = xmalloc((size_t)w->qblock * sizeof *w->pruned);             /* qblock */
}

void metrics_knn_free(MetricsKnn *w) {
  free(w->tile);
  free(w->keys);
  free(w->thr);
  free(w->count);
  free(w->pruned);
  memset(w, 0, sizeof *w);
}

void metrics_knn(int *knn, MetricsKnn *w, const float *emb, int n, int q0, int q1) {
  const int D = w->D, depth = w->depth, cap = w->cap;
  CHECK(0 <= q0 && q0 <= q1 && q1 <= n, "metrics_knn: query range [%d, %d) outside [0, %d)", q0, q1, n);
  CHECK(depth <= n - 1, "metrics_knn: depth %d > n - 1 = %d", depth, n - 1);
  for (int qa = q0; qa < q1; qa += w->qblock) {
    const int nq = imin(w->qblock, q1 - qa);
    for (int i = 0; i < nq; i++) { w->count[i] = 0; w->pruned[i] = 0; w->thr[i] = 0; }
    for (int ra = 0; ra < n; ra += w->rblock) {
      const int nr = imin(w->rblock, n - ra);
      const int last = ra + nr == n;
      /* tile (nq x nr) = emb[qa..] (nq x D) . emb[ra..]^T (D x nr) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nr, D, 1.0f, emb + (size_t)qa * D, D,
                  emb + (size_t)ra * D, D, 0.0f, w->tile, nr);
#pragma omp parallel for schedule(dynamic, 4)
      for (int i = 0; i < nq; i++) {
        const float *s = w->tile + (size_t)i * nr;      /* nr */
        uint64_t *keys = w->keys + (size_t)i * cap;     /* cap */
        const int self = qa + i - ra;                   /* the query's column, if in this block */
        if (self >= 0 && self < nr) {
          knn_scan(keys, &w->count[i], &w->pruned[i], &w->thr[i], depth, cap, s, ra, 0, self);
          knn_scan(keys, &w->count[i], &w->pruned[i], &w->thr[i], depth, cap, s, ra, self + 1, nr);
        } else {
          knn_scan(keys, &w->count[i], &w->pruned[i], &w->thr[i], depth, cap, s, ra, 0, nr);
        }
        if (last) knn_finish(knn + (size_t)(qa - q0 + i) * depth, keys, w->count[i], depth);
      }
    }
  }
}

typedef struct { double s; int i; } KnnCand;

static int cmp_cand(const void *a, const void *b) {
  const KnnCand *x = a, *y = b;
  if (x->s != y->s) return x->s > y->s ? -1 : 1;   /* more similar first */
  return (x->i > y->i) - (x->i < y->i);             /* then lower index */
}

void metrics_knn_ref(int *knn, const float *emb, int n, int D, int q0, int q1, int depth) {
  CHECK(0 <= q0 && q0 <= q1 && q1 <= n && depth >= 1 && depth <= n - 1, "metrics_knn_ref: bad sizes");
  KnnCand *c = xmalloc((size_t)n * sizeof *c);   /* n - 1 candidates */
  for (int q = q0; q < q1; q++) {
    int m = 0;
    for (int r = 0; r < n; r++) {
      if (r == q) continue;
      double dot = 0;
      for (int d = 0; d < D; d++) dot += (double)emb[(size_t)q * D + d] * emb[(size_t)r * D + d];
      c[m].s = dot; c[m].i = r; m++;
    }
    qsort(c, (size_t)m, sizeof *c, cmp_cand);
    for (int j = 0; j < depth; j++) knn[(size_t)(q - q0) * depth + j] = c[j].i;
  }
  free(c);
}

/* ==================================================== retrieval metrics */

void metrics_eval_init(MetricsEval *e, const int *labels, int n, int D, const int *ks, int nk,
                       int qblock, int rblock) {
  CHECK(n >= 2 && D >= 1, "metrics_eval_init: n = %d, D = %d (need n >= 2)", n, D);
  CHECK(nk >= 1 && nk <= METRICS_MAXK, "metrics_eval_init: %d ks (1..%d)", nk, METRICS_MAXK);
  memset(e, 0, sizeof *e);
  e->n = n; e->D = D; e->nk = nk;
  int maxk = 0;
  for (int i = 0; i < nk; i++) {
    CHECK(ks[i] >= 1, "metrics_eval_init: k = %d", ks[i]);
    e->ks[i] = ks[i];
    maxk = imax(maxk, ks[i]);
  }
  /* R over all n: a query's relevant items may live in any rank's range */
  int *s = xmalloc((size_t)n * sizeof *s);   /* n: sorted labels */
  memcpy(s, labels, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, cmp_int);
  e->R = xmalloc((size_t)n * sizeof *e->R);  /* n */
  int maxR = 0;
  for (int i = 0; i < n; i++) {
    e->R[i] = upper_bound(s, n, labels[i]) - lower_bound(s, n, labels[i]) - 1;
    maxR = imax(maxR, e->R[i]);
  }
  free(s);
  e->depth = imin(n - 1, imax(maxk, maxR));
  metrics_knn_init(&e->w, D, e->depth, qblock, rblock);
  const int qb = e->w.qblock;
  e->knn = xmalloc((size_t)qb * e->depth * sizeof *e->knn);   /* qblock x depth */
  e->first = xmalloc((size_t)qb * sizeof *e->first);           /* qblock */
  e->ap = xmalloc_f64((size_t)qb);                             /* qblock */
  e->rprec = xmalloc_f64((size_t)qb);                          /* qblock */
}

void metrics_eval_free(MetricsEval *e) {
  free(e->R);
  free(e->knn);
  free(e->first);
  free(e->ap);
  free(e->rprec);
  metrics_knn_free(&e->w);
  memset(e, 0, sizeof *e);
}

void metrics_sums_reset(MetricsSums *s, const int *ks, int nk) {
  CHECK(nk >= 1 && nk <= METRICS_MAXK, "metrics_sums_reset: %d ks (1..%d)", nk, METRICS_MAXK);
  memset(s, 0, sizeof *s);
  s->nk = nk;
  for (int i = 0; i < nk; i++) s->ks[i] = ks[i];
}

/* reference: docs/loss.md 9.1-9.3 (neighbours, Recall@k, R-precision and AP@R) */
void metrics_sums_add_range(MetricsSums *s, MetricsEval *e, const float *emb, const int *labels,
                            int q0, int q1) {
  CHECK(s->nk == e->nk && !memcmp(s->ks, e->ks, sizeof s->ks[0] * (size_t)s->nk),
        "metrics_sums_add_range: sums and eval have different ks");
  const int depth = e->depth;
  for (int qa = q0; qa < q1; qa += e->w.qblock) {
    const int nq = imin(e->w.qblock, q1 - qa);
    metrics_knn(e->knn, &e->w, emb, e->n, qa, qa + nq);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nq; i++) {
      const int *nb = e->knn + (size_t)i * depth;   /* depth neighbours, nearest first */
      const int lab = labels[qa + i], R = e->R[qa + i];
      int first = depth + 1;
      for (int j = 0; j < depth; j++)
        if (labels[nb[j]] == lab) { first = j + 1; break; }
      e->first[i] = first;
      double ap = 0;
      int rel = 0;
      for (int j = 0; j < R; j++)   /* R <= depth by construction */
        if (labels[nb[j]] == lab) { rel++; ap += (double)rel / (j + 1); }
      e->ap[i] = R > 0 ? ap / R : 0;
      e->rprec[i] = R > 0 ? (double)rel / R : 0;
    }
    /* sequential in query order: the sums do not depend on the thread count */
    for (int i = 0; i < nq; i++) {
      for (int k = 0; k < s->nk; k++) s->hits[k] += e->first[i] <= s->ks[k];
      if (e->R[qa + i] > 0) {
        s->ap_sum += e->ap[i];
        s->rprec_sum += e->rprec[i];
        s->n_rel += 1;
      }
      s->n_query += 1;
    }
  }
}

void metrics_sums_merge(MetricsSums *acc, const MetricsSums *part) {
  CHECK(acc->nk == part->nk, "metrics_sums_merge: different ks");
  for (int k = 0; k < acc->nk; k++) acc->hits[k] += part->hits[k];
  acc->ap_sum += part->ap_sum;
  acc->rprec_sum += part->rprec_sum;
  acc->n_rel += part->n_rel;
  acc->n_query += part->n_query;
}

void metrics_finish(Metrics *m, const MetricsSums *s) {
  memset(m, 0, sizeof *m);
  m->nk = s->nk;
  for (int k = 0; k < s->nk; k++) {
    m->ks[k] = s->ks[k];
    m->recall[k] = s->n_query > 0 ? s->hits[k] / s->n_query : NAN;
  }
  m->map_r = s->n_rel > 0 ? s->ap_sum / s->n_rel : NAN;
  m->r_precision = s->n_rel > 0 ? s->rprec_sum / s->n_rel : NAN;
  m->nmi = NAN;
  m->n_query = s->n_query;
  m->n_rel = s->n_rel;
}

/* ============================================================== k-means */

MetricsKmeansOpts metrics_kmeans_defaults(void) {
  MetricsKmeansOpts o = {.restarts = 4, .max_iter = 300, .tol = 1e-4, .seed = 0};
  return o;
}

int metrics_count_distinct(const int *labels, int n) {
  int nu;
  free(sorted_unique(labels, n, &nu));
  return nu;
}

/* Workspace of one k-means call (allocated once, reused by every restart). */
typedef struct {
  int n, D, k, pb, trials;
  float *xx;        /* n: ||x_i||^2 */
  float *cc;        /* k: ||c_j||^2 */
  float *tile;      /* max(pb x k, trials x n): sgemm products */
  double *closest;  /* n: squared distance to the nearest centre chosen so far (seeding) */
  double *cand;     /* trials x n: the same if a candidate were added */
  double *cum;      /* n: running sum of closest */
  float *dist;      /* n: squared distance of each point to its assigned centre */
  double *sums;     /* k x D: per-cluster coordinate sums */
  int *counts;      /* k */
  float *newc;      /* k x D */
} Kmeans;

/* assign each point to its nearest centre (ties: lower id); dist gets the distance */
static void kmeans_assign(Kmeans *w, int *assign, const float *x, const float *c) {
  const int n = w->n, D = w->D, k = w->k;
  for (int j = 0; j < k; j++) {
    double s = 0;
    for (int d = 0; d < D; d++) s += (double)c[(size_t)j * D + d] * c[(size_t)j * D + d];
    w->cc[j] = (float)s;
  }
  for (int pa = 0; pa < n; pa += w->pb) {
    const int np = imin(w->pb, n - pa);
    /* tile (np x k) = x[pa..] (np x D) . c^T (D x k) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, np, k, D, 1.0f, x + (size_t)pa * D, D, c, D, 0.0f,
                w->tile, k);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < np; i++) {
      const float *t = w->tile + (size_t)i * k;
      int best = 0;
      float bv = w->cc[0] - 2.0f * t[0];
      for (int j = 1; j < k; j++) {
        float v = w->cc[j] - 2.0f * t[j];
        if (v < bv) { bv = v; best = j; }
      }
      assign[pa + i] = best;
      w->dist[pa + i] = fmaxf(w->xx[pa + i] + bv, 0.0f);
    }
  }
}

/* greedy k-means++ (as sklearn's _kmeans_plusplus): each new centre is the
 * best of `trials` D^2-sampled candidates, best = lowest resulting potential */
static void kmeans_seed(Kmeans *w, float *c, const float *x, Rng *rng) {
  const int n = w->n, D = w->D, k = w->k, T = w->trials;
  int id = (int)rng_below(rng, (uint32_t)n);
  memcpy(c, x + (size_t)id * D, (size_t)D * sizeof *c);
  /* squared distances to the first centre: ||x||^2 + ||c||^2 - 2 x.c, as in assignment */
  cblas_sgemv(CblasRowMajor, CblasNoTrans, n, D, 1.0f, x, D, c, 1, 0.0f, w->tile, 1);
  double pot = 0;
  for (int i = 0; i < n; i++) {
    w->closest[i] = fmax((double)w->xx[i] + w->xx[id] - 2.0 * w->tile[i], 0.0);
    pot += w->closest[i];
  }
  int cid[64];   /* trials <= 2 + ln(INT_MAX) < 64 */
  for (int j = 1; j < k; j++) {
    double run = 0;
    for (int i = 0; i < n; i++) { run += w->closest[i]; w->cum[i] = run; }
    for (int t = 0; t < T; t++) {
      double v = rng_uniform_f64(rng) * pot;
      int lo = 0, hi = n;   /* first i with cum[i] >= v (numpy searchsorted, side left) */
      while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (w->cum[mid] < v) lo = mid + 1; else hi = mid;
      }
      cid[t] = imin(lo, n - 1);
      memcpy(w->newc + (size_t)t * D, x + (size_t)cid[t] * D, (size_t)D * sizeof(float));
    }
    /* tile (T x n) = candidates (T x D) . x^T (D x n) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, n, D, 1.0f, w->newc, D, x, D, 0.0f, w->tile, n);
    int best = 0;
    double best_pot = INFINITY;
    for (int t = 0; t < T; t++) {
      double *cd = w->cand + (size_t)t * n;   /* n */
      const float *dot = w->tile + (size_t)t * n;
      double p = 0;
      for (int i = 0; i < n; i++) {
        double d = fmax((double)w->xx[i] + w->xx[cid[t]] - 2.0 * dot[i], 0.0);
        cd[i] = fmin(w->closest[i], d);
        p += cd[i];
      }
      if (p < best_pot) { best_pot = p; best = t; }
    }
    pot = best_pot;
    memcpy(w->closest, w->cand + (size_t)best * n, (size_t)n * sizeof *w->closest);
    memcpy(c + (size_t)j * D, x + (size_t)cid[best] * D, (size_t)D * sizeof *c);
  }
}

/* centroid update from assign; empty clusters take the points farthest from
 * their centre. Returns sum ||c_new - c||^2 and leaves c = c_new. */
static double kmeans_update(Kmeans *w, float *c, int *assign, const float *x) {
  const int n = w->n, D = w->D, k = w->k;
  memset(w->sums, 0, (size_t)k * D * sizeof *w->sums);
  memset(w->counts, 0, (size_t)k * sizeof *w->counts);
  for (int i = 0; i < n; i++) {   /* sequential: the same sums for any thread count */
    double *s = w->sums + (size_t)assign[i] * D;
    const float *xi = x + (size_t)i * D;
    for (int d = 0; d < D; d++) s[d] += xi[d];
    w->counts[assign[i]]++;
  }
  for (int j = 0; j < k; j++) {
    if (w->counts[j] > 0) continue;
    int far = -1;
    for (int i = 0; i < n; i++)
      if (w->counts[assign[i]] > 1 && (far < 0 || w->dist[i] > w->dist[far])) far = i;
    if (far < 0) continue;   /* fewer distinct points than clusters: leave it empty */
    const float *xf = x + (size_t)far * D;
    double *from = w->sums + (size_t)assign[far] * D, *to = w->sums + (size_t)j * D;
    for (int d = 0; d < D; d++) { from[d] -= xf[d]; to[d] = xf[d]; }
    w->counts[assign[far]]--;
    w->counts[j] = 1;
    assign[far] = j;
    w->dist[far] = 0;
  }
  double shift = 0;
  for (int j = 0; j < k; j++) {
    for (int d = 0; d < D; d++) {
      size_t o = (size_t)j * D + d;
      float v = w->counts[j] > 0 ? (float)(w->sums[o] / w->counts[j]) : c[o];
      shift += ((double)v - c[o]) * ((double)v - c[o]);
      c[o] = v;
    }
  }
  return shift;
}

void metrics_kmeans(int *assign, float *centroids, double *inertia, const float *x, int n, int D, int k,
                    const MetricsKmeansOpts *opt) {
  CHECK(n >= 1 && D >= 1 && k >= 1 && k <= n, "metrics_kmeans: n = %d, D = %d, k = %d", n, D, k);
  CHECK(opt->restarts >= 1 && opt->max_iter >= 1, "metrics_kmeans: restarts %d, max_iter %d", opt->restarts,
        opt->max_iter);
  Kmeans w = {.n = n, .D = D, .k = k};
  w.pb = imax(1, imin(n, (1 << 20) / k));
  w.trials = 2 + (int)log((double)k);
  size_t tile = (size_t)w.trials * n;   /* >= n, which the sgemv of the first centre needs */
  if ((size_t)w.pb * k > tile) tile = (size_t)w.pb * k;
  w.xx = xmalloc_f32((size_t)n);
  w.cc = xmalloc_f32((size_t)k);
  w.tile = xmalloc_f32(tile);
  w.closest = xmalloc_f64((size_t)n);
  w.cand = xmalloc_f64((size_t)w.trials * n);
  w.cum = xmalloc_f64((size_t)n);
  w.dist = xmalloc_f32((size_t)n);
  w.sums = xmalloc_f64((size_t)k * D);
  w.counts = xmalloc((size_t)k * sizeof *w.counts);
  w.newc = xmalloc_f32((size_t)imax(k, w.trials) * D);
  float *c = xmalloc_f32((size_t)k * D);              /* k x D: this restart's centres */
  int *a = xmalloc((size_t)n * sizeof *a);            /* n: this restart's assignment */
  double *pd = xmalloc_f64((size_t)n);                /* n: per-point squared error */

  /* tolerance relative to the data's scale, as sklearn */
  double var = 0;
  for (int d = 0; d < D; d++) {
    double m = 0, m2 = 0;
    for (int i = 0; i < n; i++) m += x[(size_t)i * D + d];
    m /= n;
    for (int i = 0; i < n; i++) { double t = x[(size_t)i * D + d] - m; m2 += t * t; }
    var += m2 / n;
  }
  const double tol = opt->tol * var / D;
  for (int i = 0; i < n; i++) {
    double s = 0;
    for (int d = 0; d < D; d++) s += (double)x[(size_t)i * D + d] * x[(size_t)i * D + d];
    w.xx[i] = (float)s;
  }

  Rng rng;
  rng_init(&rng, opt->seed);
  double best = INFINITY;
  for (int r = 0; r < opt->restarts; r++) {
    kmeans_seed(&w, c, x, &rng);
    for (int it = 0; it < opt->max_iter; it++) {
      kmeans_assign(&w, a, x, c);
      if (kmeans_update(&w, c, a, x) <= tol) break;   /* unchanged labels give shift 0 */
    }
    kmeans_assign(&w, a, x, c);   /* labels consistent with the final centres */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
      const float *xi = x + (size_t)i * D, *ci = c + (size_t)a[i] * D;
      double s = 0;
      for (int d = 0; d < D; d++) s += ((double)xi[d] - ci[d]) * ((double)xi[d] - ci[d]);
      pd[i] = s;
    }
    double in = 0;
    for (int i = 0; i < n; i++) in += pd[i];
    if (in < best) {
      best = in;
      memcpy(assign, a, (size_t)n * sizeof *a);
      memcpy(centroids, c, (size_t)k * D * sizeof *c);
    }
  }
  *inertia = best;
  free(w.xx); free(w.cc); free(w.tile); free(w.closest); free(w.cand); free(w.cum); free(w.dist);
  free(w.sums); free(w.counts); free(w.newc); free(c); free(a); free(pd);
}

/* ================================================================== NMI */

/* -sum p log p of counts (m) that sum to tot, as sklearn's entropy() */
static double entropy_counts(const int64_t *cnt, int m, double tot) {
  if (m == 1) return 0.0;
  double h = 0, lt = log(tot);
  for (int i = 0; i < m; i++) h += ((double)cnt[i] / tot) * (log((double)cnt[i]) - lt);
  return -h;
}

/* reference: docs/loss.md 9.4 (NMI); sklearn 1.2
 * normalized_mutual_info_score, including its edge cases and eps clipping */
double metrics_nmi(const int *a, const int *b, int n) {
  if (n == 0) return 1.0;
  int ca, cb;
  int *ua = sorted_unique(a, n, &ca), *ub = sorted_unique(b, n, &cb);
  double nmi;
  if (ca == 1 && cb == 1) nmi = 1.0;        /* both a single cluster: a perfect match */
  else if (ca == 1 || cb == 1) nmi = 0.0;   /* one entropy is zero, so is the MI */
  else {
    int64_t *key = xmalloc((size_t)n * sizeof *key);              /* n: row-major contingency cell */
    int64_t *pi = xcalloc((size_t)ca, sizeof *pi);                /* ca: class sizes */
    int64_t *pj = xcalloc((size_t)cb, sizeof *pj);                /* cb: cluster sizes */
    for (int i = 0; i < n; i++) {
      int ia = lower_bound(ua, ca, a[i]), ib = lower_bound(ub, cb, b[i]);
      key[i] = (int64_t)ia * cb + ib;
      pi[ia]++; pj[ib]++;
    }
    qsort(key, (size_t)n, sizeof *key, cmp_i64);
    /* sklearn's mutual_info_score term by term, over nonzero cells in row-major order */
    const double N = n, lN = log(N);
    double mi = 0;
    for (int s = 0; s < n;) {
      int e = s;
      while (e < n && key[e] == key[s]) e++;
      const double v = e - s, nm = v / N;
      const int64_t outer = pi[key[s] / cb] * pj[key[s] % cb];
      const double log_outer = -log((double)outer) + lN + lN;
      double t = nm * (log(v) - lN) + nm * log_outer;
      if (fabs(t) < DBL_EPSILON) t = 0;
      mi += t;
      s = e;
    }
    mi = fmax(mi, 0.0);
    if (mi == 0) nmi = 0.0;
    else nmi = mi / ((entropy_counts(pi, ca, N) + entropy_counts(pj, cb, N)) / 2);
    free(key); free(pi); free(pj);
  }
  free(ua); free(ub);
  return nmi;
}

void metrics_evaluate(Metrics *m, const float *emb, const int *labels, int n, int D, const int *ks, int nk,
                      const MetricsKmeansOpts *km) {
  MetricsEval ev;
  MetricsSums s;
  metrics_eval_init(&ev, labels, n, D, ks, nk, 0, 0);
  metrics_sums_reset(&s, ks, nk);
  metrics_sums_add_range(&s, &ev, emb, labels, 0, n);
  metrics_finish(m, &s);
  metrics_eval_free(&ev);
  if (km) {
    int k = metrics_count_distinct(labels, n);
    int *assign = xmalloc((size_t)n * sizeof *assign);      /* n */
    float *cent = xmalloc_f32((size_t)k * D);               /* k x D */
    double inertia;
    metrics_kmeans(assign, cent, &inertia, emb, n, D, k, km);
    m->nmi = metrics_nmi(labels, assign, n);
    free(assign);
    free(cent);
  }
}

/* ======================================================== check-metrics */

static void check_usage(FILE *out) {
  fprintf(out,
          "usage: proxygml check-metrics FILE.h5\n"
          "\n"
          "Recomputes kNN, Recall@k, MAP@R, R-precision and NMI from FILE.h5 and compares them\n"
          "with the expected values stored there (layout of the golden metrics.h5).\n"
          "  required:  embeddings (n x D, finite), labels (n), ks (1..%d values >= 1), n >= 2\n"
          "  compared when present:  recall_at_k (len(ks)), map_at_r, r_precision (scalars),\n"
          "    R (n), knn (n x depth, depth <= n - 1), nmi_labels + nmi_assignment + nmi,\n"
          "    nmi2_labels + nmi2_assignment + nmi2\n"
          "exit status: 0 all within 1e-9 (knn, R: exactly equal), 1 a mismatch, 2 bad input\n",
          METRICS_MAXK);
}

static void fmt_shape(char *buf, size_t cap, int nd, const int64_t *dims) {
  if (nd == 0) { snprintf(buf, cap, "scalar"); return; }
  size_t o = 0;
  for (int i = 0; i < nd && o < cap; i++)
    o += (size_t)snprintf(buf + o, cap - o, i ? " x %lld" : "%lld", (long long)dims[i]);
}

/* shape of `name` must be nd x dims (nd = 0: a scalar, or one element) */
static int check_shape(hid_t f, const char *name, int nd, const int64_t *dims) {
  int got;
  int64_t gd[H5IO_MAXDIM];
  if (h5io_shape(f, name, &got, gd) != 0) return -1;
  int ok = nd == 0 ? (got == 0 || (got == 1 && gd[0] == 1)) : got == nd;
  for (int i = 0; ok && i < nd; i++) ok = gd[i] == dims[i];
  if (ok) return 0;
  char a[64], b[64];
  fmt_shape(a, sizeof a, got, gd);
  fmt_shape(b, sizeof b, nd, dims);
  return err_set("dataset '%s' has shape %s, expected %s", name, a, b);
}

static int read_f64_checked(hid_t f, const char *name, int nd, const int64_t *dims, double *buf) {
  size_t count = 1;
  for (int i = 0; i < nd; i++) count *= (size_t)dims[i];
  if (check_shape(f, name, nd, dims) != 0 || h5io_read(f, name, H5T_NATIVE_DOUBLE, buf, count) != 0) return -1;
  for (size_t i = 0; i < count; i++)
    if (!isfinite(buf[i])) return err_set("dataset '%s' holds a NaN or infinity at element %zu", name, i);
  return 0;
}

static int read_i32_checked(hid_t f, const char *name, int nd, const int64_t *dims, int *buf) {
  size_t count = 1;
  for (int i = 0; i < nd; i++) count *= (size_t)dims[i];
  if (check_shape(f, name, nd, dims) != 0) return -1;
  return h5io_read(f, name, H5T_NATIVE_INT, buf, count);
}

/* length of a 1-D dataset, checked to be in [lo, hi] */
static int len_1d(hid_t f, const char *name, int64_t lo, int64_t hi, int *len) {
  int nd;
  int64_t d[H5IO_MAXDIM];
  if (h5io_shape(f, name, &nd, d) != 0) return -1;
  if (nd != 1) return err_set("dataset '%s' must be one-dimensional (it has %d dimensions)", name, nd);
  if (d[0] < lo || d[0] > hi)
    return err_set("dataset '%s' has %lld elements, expected %lld to %lld", name, (long long)d[0], (long long)lo,
                   (long long)hi);
  *len = (int)d[0];
  return 0;
}

static int report(const char *name, double err, double tol) {
  int ok = err <= tol;
  printf("  %-14s max abs err %.3e  %s\n", name, err, ok ? "ok" : "MISMATCH");
  return ok;
}

/* one expected NMI: prefix_labels, prefix_assignment (m each) and prefix */
typedef struct {
  const char *name;
  int present, m;
  int *lab, *asg;   /* m, m */
  double want;
} NmiCase;

/* reads the triple if any of it is present (then all of it must be) */
static int read_nmi(hid_t f, NmiCase *c) {
  char nl[64], na[64];
  snprintf(nl, sizeof nl, "%s_labels", c->name);
  snprintf(na, sizeof na, "%s_assignment", c->name);
  const char *names[3] = {nl, na, c->name};
  for (int i = 0; i < 3; i++) c->present += h5io_has(f, names[i]);
  if (!c->present) return 0;
  for (int i = 0; i < 3; i++)
    if (!h5io_has(f, names[i]))
      return err_set("dataset '%s' is missing (other %s datasets are present)", names[i], c->name);
  if (len_1d(f, nl, 1, INT32_MAX, &c->m) != 0) return -1;
  const int64_t dm[1] = {c->m};
  c->lab = xmalloc((size_t)c->m * sizeof *c->lab);
  c->asg = xmalloc((size_t)c->m * sizeof *c->asg);
  if (read_i32_checked(f, nl, 1, dm, c->lab) != 0 || read_i32_checked(f, na, 1, dm, c->asg) != 0) return -1;
  return read_f64_checked(f, c->name, 0, NULL, &c->want);
}

int metrics_cmd_check(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) { check_usage(stdout); return 0; }
  if (argc != 2 || argv[1][0] == '-') { check_usage(stderr); return 2; }
  const char *path = argv[1];
  hid_t f = H5I_INVALID_HID;
  float *emb = NULL;                             /* n x D */
  int *labels = NULL, *R = NULL;                 /* n, n */
  int *knn_want = NULL, *knn_got = NULL;         /* n x kk each */
  double *recall = NULL;                         /* nk */
  MetricsEval ev = {0};
  MetricsKnn kw = {0};
  NmiCase nmi[2] = {{.name = "nmi"}, {.name = "nmi2"}};
  int rc = 2, nk = 0, ks[METRICS_MAXK];
  int nd;
  int64_t dims[H5IO_MAXDIM];

  if (h5io_open(path, &f) != 0) {
    fprintf(stderr, "check-metrics: %s\n", err_msg());
    return 2;
  }
  /* --- the inputs */
  if (h5io_shape(f, "embeddings", &nd, dims) != 0) goto bad;
  if (nd != 2) { err_set("dataset 'embeddings' must be n x D (it has %d dimensions)", nd); goto bad; }
  if (dims[0] < 2 || dims[1] < 1 || dims[0] > INT32_MAX || dims[1] > INT32_MAX) {
    err_set("dataset 'embeddings' is %lld x %lld: need n >= 2 items and D >= 1", (long long)dims[0],
            (long long)dims[1]);
    goto bad;
  }
  const int n = (int)dims[0], D = (int)dims[1];
  const int64_t dn[1] = {n};
  emb = xmalloc_f32((size_t)n * D);
  if (h5io_read(f, "embeddings", H5T_NATIVE_FLOAT, emb, (size_t)n * D) != 0) goto bad;
  for (size_t i = 0; i < (size_t)n * D; i++)
    if (!isfinite(emb[i])) {
      err_set("dataset 'embeddings' holds a NaN or infinity (row %zu)", i / (size_t)D);
      goto bad;
    }
  labels = xmalloc((size_t)n * sizeof *labels);
  if (read_i32_checked(f, "labels", 1, dn, labels) != 0) goto bad;
  if (len_1d(f, "ks", 1, METRICS_MAXK, &nk) != 0 || h5io_read(f, "ks", H5T_NATIVE_INT, ks, (size_t)nk) != 0) goto bad;
  for (int i = 0; i < nk; i++)
    if (ks[i] < 1) { err_set("dataset 'ks' holds k = %d (need k >= 1)", ks[i]); goto bad; }

  /* --- the expected values: read (and validate) all before computing anything */
  const int64_t dk[1] = {nk};
  double map_want = 0, rprec_want = 0;
  int has_recall = h5io_has(f, "recall_at_k"), has_map = h5io_has(f, "map_at_r");
  int has_rprec = h5io_has(f, "r_precision"), has_R = h5io_has(f, "R"), has_knn = h5io_has(f, "knn");
  recall = xmalloc_f64((size_t)nk);
  if (has_recall && read_f64_checked(f, "recall_at_k", 1, dk, recall) != 0) goto bad;
  if (has_map && read_f64_checked(f, "map_at_r", 0, NULL, &map_want) != 0) goto bad;
  if (has_rprec && read_f64_checked(f, "r_precision", 0, NULL, &rprec_want) != 0) goto bad;
  if (has_R) {
    R = xmalloc((size_t)n * sizeof *R);
    if (read_i32_checked(f, "R", 1, dn, R) != 0) goto bad;
  }
  int kk = 0;
  if (has_knn) {
    if (h5io_shape(f, "knn", &nd, dims) != 0) goto bad;
    if (nd != 2 || dims[0] != n || dims[1] < 1 || dims[1] > n - 1) {
      char a[64];
      fmt_shape(a, sizeof a, nd, dims);
      err_set("dataset 'knn' has shape %s, expected %d x depth with 1 <= depth <= %d", a, n, n - 1);
      goto bad;
    }
    kk = (int)dims[1];
    knn_want = xmalloc((size_t)n * kk * sizeof *knn_want);
    knn_got = xmalloc((size_t)n * kk * sizeof *knn_got);
    if (h5io_read(f, "knn", H5T_NATIVE_INT, knn_want, (size_t)n * kk) != 0) goto bad;
  }
  for (int i = 0; i < 2; i++)
    if (read_nmi(f, &nmi[i]) != 0) goto bad;
  if (!(has_recall || has_map || has_rprec || has_R || has_knn || nmi[0].present || nmi[1].present)) {
    err_set("no expected values to compare (recall_at_k, map_at_r, r_precision, R, knn, nmi, nmi2)");
    goto bad;
  }

  /* --- compute and compare */
  int all_ok = 1, nchecked = 0;
  printf("check-metrics %s: n = %d, D = %d\n", path, n, D);
  if (has_recall || has_map || has_rprec || has_R) {
    MetricsSums s;
    Metrics m;
    metrics_eval_init(&ev, labels, n, D, ks, nk, 0, 0);
    metrics_sums_reset(&s, ks, nk);
    metrics_sums_add_range(&s, &ev, emb, labels, 0, n);
    metrics_finish(&m, &s);
    if (has_recall) {
      double err = 0;
      for (int i = 0; i < nk; i++) err = fmax(err, fabs(m.recall[i] - recall[i]));
      all_ok &= report("recall_at_k", err, 1e-9);
      nchecked++;
    }
    /* no query with R > 0 makes MAP@R NaN: any expected value is then a mismatch */
    if (has_map) { all_ok &= report("map_at_r", isnan(m.map_r) ? INFINITY : fabs(m.map_r - map_want), 1e-9); nchecked++; }
    if (has_rprec) {
      all_ok &= report("r_precision", isnan(m.r_precision) ? INFINITY : fabs(m.r_precision - rprec_want), 1e-9);
      nchecked++;
    }
    if (has_R) {
      double err = 0;
      for (int i = 0; i < n; i++) err = fmax(err, fabs((double)ev.R[i] - R[i]));
      all_ok &= report("R", err, 0);
      nchecked++;
    }
  }
  if (has_knn) {
    metrics_knn_init(&kw, D, kk, 0, 0);
    metrics_knn(knn_got, &kw, emb, n, 0, n);
    double err = 0;
    size_t bad_n = 0;
    for (size_t i = 0; i < (size_t)n * kk; i++) {
      err = fmax(err, fabs((double)knn_got[i] - knn_want[i]));
      bad_n += knn_got[i] != knn_want[i];
    }
    all_ok &= report("knn", err, 0);
    if (bad_n) printf("  %-14s %zu of %zu indices differ\n", "", bad_n, (size_t)n * kk);
    nchecked++;
  }
  for (int i = 0; i < 2; i++) {
    if (!nmi[i].present) continue;
    all_ok &= report(nmi[i].name, fabs(metrics_nmi(nmi[i].lab, nmi[i].asg, nmi[i].m) - nmi[i].want), 1e-9);
    nchecked++;
  }
  printf("check-metrics: %s (%d quantities)\n", all_ok ? "all match" : "MISMATCH", nchecked);
  rc = all_ok ? 0 : 1;
  goto done;

bad:
  fprintf(stderr, "check-metrics: %s: %s\n", path, err_msg());
  rc = 2;
done:
  metrics_eval_free(&ev);
  metrics_knn_free(&kw);
  free(emb); free(labels); free(R); free(knn_want); free(knn_got); free(recall);
  for (int i = 0; i < 2; i++) { free(nmi[i].lab); free(nmi[i].asg); }
  if (f >= 0) H5Fclose(f);
  return rc;
}
