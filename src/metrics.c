/* metrics.c: blocked exact kNN (and its naive _ref), Recall@k / MAP@R /
 * R-precision as partial sums, k-means++ / Lloyd k-means and sklearn's NMI
 * (see include/metrics.h). Not here: MPI (callers
 * allreduce MetricsSums) and approximate search (faiss-style) for huge n.
 * reference: docs/loss.md 9. */
#include "metrics.h"

#include "common.h"
#include "layers.h"
#include "rng.h"

#include <cblas.h>
#include <omp.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
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
 * low 32 bits: the index). Integer compares; a buffer kept in index order
 * needs only its high halves sorted (stably) to be in key order. */
static inline uint64_t knn_key(float s, int idx) {
  s += 0.0f;   /* -0 -> +0: they compare equal as floats, so must tie as keys */
  uint32_t b;
  memcpy(&b, &s, sizeof b);
  b ^= (uint32_t)((int32_t)b >> 31) | 0x80000000u;   /* unsigned order = float order, branch-free */
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

/* The k-th smallest of the keys a (n >= k >= 1, distinct), a unchanged.
 * A histogram of the similarity bits, scaled to the range present, finds the
 * bucket that holds it; only that bucket's keys are copied to tmp (n) and
 * selected among: three cheap passes and a small select. */
static PROXYGML_HOT uint64_t knn_kth(const uint64_t *a, uint64_t *tmp, int n, int k) {
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
  while (below + h[b] < (uint32_t)k) below += h[b++];
  int m = 0;
  for (int i = 0; i < n; i++) {
    tmp[m] = a[i];
    m += (((uint32_t)(a[i] >> 32) - lo) >> shift) == b;
  }
  select_u64(tmp, m, k - (int)below - 1);
  return tmp[k - (int)below - 1];
}

/* Keeps the depth smallest keys of a (n > depth) in their order (index
 * order, which the final sort relies on) and returns the largest kept;
 * tmp: n scratch. */
static uint64_t knn_cut(uint64_t *a, uint64_t *tmp, int n, int depth) {
  const uint64_t kth = knn_kth(a, tmp, n, depth);
  int w = 0;
  for (int i = 0; i < n; i++) {
    a[w] = a[i];
    w += a[i] <= kth;
  }
  return kth;
}

/* a (n, ascending index order; lo <= every key's high half <= hi, bounds the
 * scan kept, which saves a pass over keys gone cold) in key order into tmp:
 * a stable LSD radix sort on the similarity half less lo, in as few digits
 * of at most METRICS_KNN_DIGIT bits as the range present needs (two for a few
 * thousand candidates in practice), all digits counted in one read. Equal
 * similarities stay in index order, so the index half needs no pass. a and
 * tmp2 (n each) are overwritten; h: METRICS_KNN_RADIX_TABLE counts. */
static PROXYGML_HOT void knn_best(uint64_t *tmp, uint64_t *tmp2, uint64_t *a, int n, uint32_t lo, uint32_t hi,
                                  uint32_t *h) {
  const int bits = hi > lo ? 32 - __builtin_clz(hi - lo) : 0;
  const int passes = (bits + METRICS_KNN_DIGIT - 1) / METRICS_KNN_DIGIT;
  if (passes == 0) { memcpy(tmp, a, (size_t)n * sizeof *a); return; }
  const int w = (bits + passes - 1) / passes;
  const uint32_t nb = 1u << w, mask = nb - 1;
  memset(h, 0, (size_t)passes * nb * sizeof *h);
  for (int i = 0; i < n; i++) {
    const uint32_t u = (uint32_t)(a[i] >> 32) - lo;
    for (int p = 0; p < passes; p++) h[p * nb + ((u >> (p * w)) & mask)]++;
  }
  uint64_t *src = a, *dst = passes % 2 ? tmp : tmp2;
  for (int p = 0; p < passes; p++) {
    uint32_t *c = h + p * nb;
    for (uint32_t v = 0, sum = 0; v < nb; v++) { uint32_t x = c[v]; c[v] = sum; sum += x; }
    for (int i = 0; i < n; i++) dst[c[(((uint32_t)(src[i] >> 32) - lo) >> (p * w)) & mask]++] = src[i];
    src = dst;
    dst = dst == tmp ? tmp2 : tmp;
  }
}

/* Merges similarities s (nr) of references r0 .. r0 + nr - 1 into one
 * query's buffer (keys: cap; *cnt held), in index order. The filter s >= *thr
 * keeps a superset of what can still make the top depth: *thr is at most the
 * depth-th best similarity of the candidates seen (the keys decide ties), and
 * a NaN (the query's own column) never passes. Chunks of KNN_CHUNK without a
 * survivor cost one vector compare; the others are appended branch-free. A
 * buffer that could overflow is cut back to the best depth and *thr raised
 * to the similarity of the depth-th. span: bounds of the key halves held
 * (smallest, largest), for the final selection's histogram. */
enum { KNN_CHUNK = 16 };

/* whether any of s[0..KNN_CHUNK) is >= t: one vector compare pass */
static inline int knn_any_ge(const float *s, float t) {
  int any = 0;
#pragma omp simd reduction(| : any)
  for (int j = 0; j < KNN_CHUNK; j++) any |= s[j] >= t;
  return any;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* Full chunks with AVX-512, until all nch are done or c passes limit (the
 * caller then cuts back): the keys of the lanes that pass, packed in
 * registers (vpcompressq into a register; its store form is microcoded on
 * some cores) and stored whole, so keys needs 16 free past limit. Returns
 * c; *done: chunks taken. The same keys and bounds as the portable loop. */
__attribute__((target("avx512f"))) static int knn_chunks_avx512(uint64_t *keys, int c, int limit, const float *s,
                                                                 int nch, float t, uint32_t r, uint32_t *lo,
                                                                 uint32_t *hi, int *done) {
  const __m512 tv = _mm512_set1_ps(t);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  uint32_t l0 = *lo, h0 = *hi;
  int k = 0;
  while (k < nch) {
    const __m512 v = _mm512_loadu_ps(s + (size_t)k * KNN_CHUNK);
    const __mmask16 pass = _mm512_cmp_ps_mask(v, tv, _CMP_GE_OQ);
    k++;
    if (!pass) continue;
    __m512i b = _mm512_castps_si512(_mm512_add_ps(v, _mm512_setzero_ps()));   /* -0 as +0 */
    b = _mm512_xor_si512(b, _mm512_or_si512(_mm512_srai_epi32(b, 31), _mm512_set1_epi32((int)0x80000000u)));
    const __m512i u = _mm512_ternarylogic_epi32(b, b, b, 0x55);   /* ~b */
    const uint32_t l = _mm512_mask_reduce_min_epu32(pass, u), h = _mm512_mask_reduce_max_epu32(pass, u);
    l0 = l < l0 ? l : l0;
    h0 = h > h0 ? h : h0;
    const __m512i idx = _mm512_add_epi32(_mm512_set1_epi32((int)(r + (uint32_t)(k - 1) * KNN_CHUNK)), lane);
    const __m512i k0 = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(u)), 32),
                                       _mm512_cvtepu32_epi64(_mm512_castsi512_si256(idx)));
    const __m512i k1 = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(u, 1)), 32),
                                       _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(idx, 1)));
    const int n0 = __builtin_popcount(pass & 0xff);
    _mm512_storeu_si512(keys + c, _mm512_maskz_compress_epi64((__mmask8)(pass & 0xff), k0));
    _mm512_storeu_si512(keys + c + n0, _mm512_maskz_compress_epi64((__mmask8)(pass >> 8), k1));
    c += n0 + __builtin_popcount(pass >> 8);
    if (c > limit) break;
  }
  *lo = l0;
  *hi = h0;
  *done = k;
  return c;
}

/* row m: the 32-bit halves of the 64-bit lanes whose bits are set in m, in
 * order (vpermd indices that pack those lanes to the front) */
static const int32_t knn_pack4[16][8] = {
    {0, 0, 0, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0, 0, 0}, {2, 3, 0, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 0, 0, 0, 0},
    {4, 5, 0, 0, 0, 0, 0, 0}, {0, 1, 4, 5, 0, 0, 0, 0}, {2, 3, 4, 5, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5, 0, 0},
    {6, 7, 0, 0, 0, 0, 0, 0}, {0, 1, 6, 7, 0, 0, 0, 0}, {2, 3, 6, 7, 0, 0, 0, 0}, {0, 1, 2, 3, 6, 7, 0, 0},
    {4, 5, 6, 7, 0, 0, 0, 0}, {0, 1, 4, 5, 6, 7, 0, 0}, {2, 3, 4, 5, 6, 7, 0, 0}, {0, 1, 2, 3, 4, 5, 6, 7}
};

/* The same with AVX2, which has no compress: 64-bit keys four at a time,
 * packed by a permutation from knn_pack4; the bounds kept in vectors. */
__attribute__((target("avx2"))) static int knn_chunks_avx2(uint64_t *keys, int c, int limit, const float *s, int nch,
                                                           float t, uint32_t r, uint32_t *lo, uint32_t *hi,
                                                           int *done) {
  const __m256 tv = _mm256_set1_ps(t);
  const __m256i sign = _mm256_set1_epi32((int)0x80000000u), ones = _mm256_set1_epi32(-1);
  __m256i vlo = _mm256_set1_epi32((int)*lo), vhi = _mm256_set1_epi32((int)*hi);
  int k = 0;
  while (k < nch) {
    for (int half = 0; half < KNN_CHUNK; half += 8) {
      const __m256 v = _mm256_loadu_ps(s + (size_t)k * KNN_CHUNK + half);
      const __m256 pv = _mm256_cmp_ps(v, tv, _CMP_GE_OQ);
      const int pass = _mm256_movemask_ps(pv);
      if (!pass) continue;
      __m256i b = _mm256_castps_si256(_mm256_add_ps(v, _mm256_setzero_ps()));   /* -0 as +0 */
      b = _mm256_xor_si256(b, _mm256_or_si256(_mm256_srai_epi32(b, 31), sign));
      const __m256i u = _mm256_xor_si256(b, ones), pm = _mm256_castps_si256(pv);   /* u = ~b */
      vlo = _mm256_min_epu32(vlo, _mm256_blendv_epi8(ones, u, pm));
      vhi = _mm256_max_epu32(vhi, _mm256_and_si256(u, pm));
      const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)(r + (uint32_t)(k * KNN_CHUNK + half))),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      for (int q = 0; q < 2; q++) {
        const int m = (pass >> (4 * q)) & 15;
        const __m128i uq = q ? _mm256_extracti128_si256(u, 1) : _mm256_castsi256_si128(u);
        const __m128i iq = q ? _mm256_extracti128_si256(idx, 1) : _mm256_castsi256_si128(idx);
        const __m256i key = _mm256_or_si256(_mm256_slli_epi64(_mm256_cvtepu32_epi64(uq), 32), _mm256_cvtepu32_epi64(iq));
        const __m256i perm = _mm256_loadu_si256((const __m256i *)knn_pack4[m]);
        _mm256_storeu_si256((__m256i *)(keys + c), _mm256_permutevar8x32_epi32(key, perm));
        c += __builtin_popcount((unsigned)m);
      }
    }
    k++;
    if (c > limit) break;
  }
  uint32_t l[8], h[8];
  _mm256_storeu_si256((__m256i *)l, vlo);
  _mm256_storeu_si256((__m256i *)h, vhi);
  for (int i = 0; i < 8; i++) {
    *lo = l[i] < *lo ? l[i] : *lo;
    *hi = h[i] > *hi ? h[i] : *hi;
  }
  *done = k;
  return c;
}
#endif

static PROXYGML_HOT void knn_scan(uint64_t *keys, uint64_t *tmp, int *cnt, float *thr, uint32_t *span, int depth,
                                  int cap, const float *s, int r0, int nr, int vec) {
  int c = *cnt;
  float t = *thr;
  uint32_t lo = span[0], hi = span[1];
  for (int j0 = 0; j0 < nr; j0 += KNN_CHUNK) {
    const int m = imin(KNN_CHUNK, nr - j0);
#if defined(__x86_64__) && defined(__GNUC__)
    if (vec && m == KNN_CHUNK) {   /* as many full chunks as come before a cut-back */
      int done;
      c = (vec == METRICS_KNN_AVX512 ? knn_chunks_avx512 : knn_chunks_avx2)(
          keys, c, cap - KNN_CHUNK, s + j0, (nr - j0) / KNN_CHUNK, t, (uint32_t)(r0 + j0), &lo, &hi, &done);
      j0 += (done - 1) * KNN_CHUNK;
    } else
#endif
    if (m == KNN_CHUNK) {
      if (!knn_any_ge(s + j0, t)) continue;
      uint32_t u[KNN_CHUNK];   /* the chunk's key halves, as knn_key makes them, in vector registers */
      int32_t pass[KNN_CHUNK];
      memcpy(u, s + j0, sizeof u);
#pragma omp simd reduction(min : lo) reduction(max : hi)
      for (int j = 0; j < KNN_CHUNK; j++) {
        uint32_t b = u[j] == 0x80000000u ? 0 : u[j];   /* -0 as +0 */
        u[j] = ~(b ^ ((uint32_t)((int32_t)b >> 31) | 0x80000000u));
        pass[j] = s[j0 + j] >= t;
        lo = pass[j] && u[j] < lo ? u[j] : lo;
        hi = pass[j] && u[j] > hi ? u[j] : hi;
      }
      for (int j = 0; j < KNN_CHUNK; j++) {   /* branch-free compaction */
        keys[c] = (uint64_t)u[j] << 32 | (uint32_t)(r0 + j0 + j);
        c += pass[j];
      }
    } else {
      for (int j = j0; j < nr; j++) {
        const uint64_t k = knn_key(s[j], r0 + j);
        const int pass = s[j] >= t;
        keys[c] = k;
        c += pass;
        lo = pass && (uint32_t)(k >> 32) < lo ? (uint32_t)(k >> 32) : lo;
        hi = pass && (uint32_t)(k >> 32) > hi ? (uint32_t)(k >> 32) : hi;
      }
    }
    if (c > cap - KNN_CHUNK) {
      const uint64_t kth = knn_cut(keys, tmp, c, depth);
      t = knn_key_sim(kth);
      hi = (uint32_t)(kth >> 32);
      c = depth;
    }
  }
  *cnt = c;
  *thr = t;
  span[0] = lo;
  span[1] = hi;
}

int metrics_knn_sample_row(int s, int n) { return rng_stratum(s, n / METRICS_KNN_SAMPLE_ROWS); }

/* The per-query thresholds of a query block from a sample of the references
 * (w->rows, gathered by metrics_knn). The sample's j-th best similarity,
 * j a few standard deviations above the depth n / S expected, is with high
 * probability below the depth-th best of all n, so it starts the filter
 * where the running threshold would end. A threshold that proves too high
 * (fewer than depth candidates pass) is caught by knn_finish_query. */
static void knn_sample(MetricsKnn *w, int slot, const float *emb, int n, int qa, int nq) {
  const int D = w->D, S = w->sample;
  float *tile = w->tile + (size_t)slot * w->qblock * w->tilew;    /* nq x S */
  uint64_t *a = w->scratch + (size_t)slot * 2 * w->scw, *tmp = a + w->scw;   /* S each */
  const double p = (double)w->depth / (n - 1), mean = p * (S - 1);
  const int j = (int)ceil(mean + 3 * sqrt(mean * (1 - p)) + 2);
  if (j >= S - 1) return;
  /* tile (nq x S) = emb[qa..] (nq x D) . rows^T (D x S) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, S, D, 1.0f, emb + (size_t)qa * D, D, w->rows, D, 0.0f,
              tile, S);
  for (int i = 0; i < nq; i++) {
    const float *s = tile + (size_t)i * S;
    const int self = qa + i;
    int m = 0;
    for (int r = 0; r < S; r++) {
      const int row = metrics_knn_sample_row(r, n);
      a[m] = knn_key(s[r], row);
      m += row != self;
    }
    w->thr[(size_t)slot * w->qblock + i] = knn_key_sim(knn_kth(a, tmp, m, j));
  }
}

/* The query's column of a tile becomes NaN, which no filter passes. */
static void knn_mask_self(float *s, int self, int nr) {
  if (self >= 0 && self < nr) s[self] = NAN;
}

/* The depth nearest of query q, nearest first, into out (depth). Fewer than
 * depth candidates held means the sampled threshold was above the depth-th
 * best: the query is scanned again without one (rare: a sample far from
 * representative). */
static void knn_finish_query(int *out, MetricsKnn *w, int slot, int i, const float *emb, int n, int q) {
  const int D = w->D, depth = w->depth, cap = w->cap;
  uint64_t *keys = w->keys + ((size_t)slot * w->qblock + i) * cap;   /* cap */
  uint64_t *tmp = w->scratch + (size_t)slot * 2 * w->scw;            /* 2 x scw */
  int *cnt = w->count + (size_t)slot * w->qblock + i;
  float *thr = w->thr + (size_t)slot * w->qblock + i;
  uint32_t *span = w->span + ((size_t)slot * w->qblock + i) * 2;
  if (*cnt < depth) {
    float *s = w->tile + (size_t)slot * w->qblock * w->tilew;         /* rblock: the tile is free now */
    *cnt = 0;
    *thr = -INFINITY;
    span[0] = UINT32_MAX;
    span[1] = 0;
    for (int ra = 0; ra < n; ra += w->rblock) {
      const int nr = imin(w->rblock, n - ra);
      cblas_sgemv(CblasRowMajor, CblasNoTrans, nr, D, 1.0f, emb + (size_t)ra * D, D, emb + (size_t)q * D, 1,
                  0.0f, s, 1);
      knn_mask_self(s, q - ra, nr);
      knn_scan(keys, tmp, cnt, thr, span, depth, cap, s, ra, nr, w->vector);
    }
    w->refills[slot]++;
    if (*cnt < depth) {   /* NaN in the embeddings: marked here, refused by metrics_knn outside the threads */
      out[0] = -1;
      return;
    }
  }
  knn_best(tmp, tmp + w->scw, keys, *cnt, span[0], span[1], w->hist + (size_t)slot * METRICS_KNN_RADIX_TABLE);
  for (int j = 0; j < depth; j++) out[j] = (int)(uint32_t)tmp[j];
}

static int knn_sampled(const MetricsKnn *w, int n) { return w->sample > 0 && n / w->sample >= 8; }

/* queries [qa, qa + nq) with thread slot `slot`'s workspace; out: nq x depth */
static void knn_block(int *out, MetricsKnn *w, int slot, const float *emb, int n, int qa, int nq) {
  const int D = w->D, depth = w->depth, cap = w->cap;
  float *tile = w->tile + (size_t)slot * w->qblock * w->tilew;       /* nq x nr */
  uint64_t *keys = w->keys + (size_t)slot * w->qblock * cap;          /* nq x cap */
  uint64_t *tmp = w->scratch + (size_t)slot * 2 * w->scw;            /* cap */
  float *thr = w->thr + (size_t)slot * w->qblock;                     /* nq */
  int *cnt = w->count + (size_t)slot * w->qblock;                     /* nq */
  uint32_t *span = w->span + (size_t)slot * w->qblock * 2;            /* nq x 2 */
  double *sec = w->sec + (size_t)slot * METRICS_KNN_NPHASE;
  for (int i = 0; i < nq; i++) { cnt[i] = 0; thr[i] = -INFINITY; span[2 * i] = UINT32_MAX; span[2 * i + 1] = 0; }
  double t0 = now_sec(), t1;
  if (knn_sampled(w, n)) knn_sample(w, slot, emb, n, qa, nq);
  t1 = now_sec(); sec[METRICS_KNN_SAMPLE] += t1 - t0; t0 = t1;
  for (int ra = 0; ra < n; ra += w->rblock) {
    const int nr = imin(w->rblock, n - ra);
    /* tile (nq x nr) = emb[qa..] (nq x D) . emb[ra..]^T (D x nr) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nr, D, 1.0f, emb + (size_t)qa * D, D,
                emb + (size_t)ra * D, D, 0.0f, tile, nr);
    t1 = now_sec(); sec[METRICS_KNN_GEMM] += t1 - t0; t0 = t1;
    for (int i = 0; i < nq; i++) {
      float *s = tile + (size_t)i * nr;   /* nr */
      knn_mask_self(s, qa + i - ra, nr);
      knn_scan(keys + (size_t)i * cap, tmp, &cnt[i], &thr[i], span + 2 * i, depth, cap, s, ra, nr, w->vector);
    }
    t1 = now_sec(); sec[METRICS_KNN_SCAN] += t1 - t0; t0 = t1;
  }
  for (int i = 0; i < nq; i++) knn_finish_query(out + (size_t)i * depth, w, slot, i, emb, n, qa + i);
  sec[METRICS_KNN_FINISH] += now_sec() - t0;
}

/* OpenBLAS's OpenMP build runs serially inside our parallel region by itself
 * (and its openblas_set_num_threads is omp_set_num_threads: not to be
 * called); the pthread build is switched to one thread around the region. */
static int blas_serial_begin(void) {
  if (openblas_get_parallel() == 2) return 1;
  int nt = openblas_get_num_threads();
  if (nt != 1) openblas_set_num_threads(1);
  return nt;
}

static void blas_serial_end(int nt) {
  if (nt != 1) openblas_set_num_threads(nt);
}

void metrics_knn_init(MetricsKnn *w, int D, int depth, int qblock, int rblock) {
  CHECK(D >= 1 && depth >= 1, "metrics_knn_init: D = %d, depth = %d", D, depth);
  memset(w, 0, sizeof *w);
  layers_blas_warm();
  w->D = D;
  w->depth = depth;
  w->cap = 2 * depth + 4 * KNN_CHUNK;   /* a cut-back every >= depth + 3 chunks accepted */
  /* default: 128 queries a thread, fewer when deep buffers would pass ~32 MB */
  w->qblock = qblock > 0 ? qblock : imax(1, imin(128, (4 << 20) / w->cap));
  w->rblock = rblock > 0 ? rblock : 2048;
  w->sample = METRICS_KNN_SAMPLE_ROWS;
  w->tilew = imax(w->rblock, w->sample);
  w->nthreads = omp_get_max_threads();
  const size_t T = (size_t)w->nthreads, qb = (size_t)w->qblock;
  w->tile = xmalloc_f32(T * qb * w->tilew);                              /* T x qblock x tilew */
  w->keys = xmalloc(T * qb * w->cap * sizeof *w->keys);                  /* T x qblock x cap */
  w->scw = imax(w->cap, w->sample);
  w->scratch = xmalloc(T * 2 * w->scw * sizeof *w->scratch);             /* T x 2 x max(cap, sample) */
  w->thr = xmalloc_f32(T * qb);                                          /* T x qblock */
  w->count = xmalloc(T * qb * sizeof *w->count);                         /* T x qblock */
  w->rows = xmalloc_f32((size_t)w->sample * D);                          /* sample x D */
  w->span = xmalloc(T * qb * 2 * sizeof *w->span);                       /* T x qblock x 2 */
  w->refills = xcalloc(T, sizeof *w->refills);                           /* T */
  w->sec = xcalloc(T * METRICS_KNN_NPHASE, sizeof *w->sec);              /* T x NPHASE */
  w->hist = xmalloc(T * METRICS_KNN_RADIX_TABLE * sizeof *w->hist);      /* T x METRICS_KNN_RADIX_TABLE */
#if defined(__x86_64__) && defined(__GNUC__)
  w->vector = __builtin_cpu_supports("avx512f") ? METRICS_KNN_AVX512
              : __builtin_cpu_supports("avx2")  ? METRICS_KNN_AVX2
                                                 : METRICS_KNN_PORTABLE;
#endif
}

void metrics_knn_free(MetricsKnn *w) {
  free(w->hist);
  free(w->tile);
  free(w->keys);
  free(w->scratch);
  free(w->thr);
  free(w->count);
  free(w->rows);
  free(w->span);
  free(w->refills);
  free(w->sec);
  memset(w, 0, sizeof *w);
}

void metrics_knn(int *knn, MetricsKnn *w, const float *emb, int n, int q0, int q1) {
  CHECK(0 <= q0 && q0 <= q1 && q1 <= n, "metrics_knn: query range [%d, %d) outside [0, %d)", q0, q1, n);
  CHECK(w->depth <= n - 1, "metrics_knn: depth %d > n - 1 = %d", w->depth, n - 1);
  const int qb = w->qblock, nblk = (q1 - q0 + qb - 1) / qb;
  if (knn_sampled(w, n))
    for (int s = 0; s < w->sample; s++)   /* S x D: the sample's rows, contiguous for sgemm */
      memcpy(w->rows + (size_t)s * w->D, emb + (size_t)metrics_knn_sample_row(s, n) * w->D,
             (size_t)w->D * sizeof *w->rows);
  /* one query block per thread at a time: its own sgemm tiles and buffers,
   * no serial phase and no barrier between tiles */
  const int nt = nblk > 1 ? blas_serial_begin() : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(w->nthreads) if (nblk > 1)
  for (int b = 0; b < nblk; b++) {
    const int qa = q0 + b * qb;
    knn_block(knn + (size_t)(qa - q0) * w->depth, w, omp_get_thread_num(), emb, n, qa, imin(qb, q1 - qa));
  }
  blas_serial_end(nt);
  for (int q = q0; q < q1; q++)
    CHECK(knn[(size_t)(q - q0) * w->depth] >= 0,
          "metrics_knn: query %d has fewer neighbours to compare than the %d asked (NaN in the embeddings)", q, w->depth);
}

void metrics_knn_times(double sec[METRICS_KNN_NPHASE], long *refills, const MetricsKnn *w) {
  for (int p = 0; p < METRICS_KNN_NPHASE; p++) sec[p] = 0;
  *refills = 0;
  for (int t = 0; t < w->nthreads; t++) {
    for (int p = 0; p < METRICS_KNN_NPHASE; p++) sec[p] += w->sec[(size_t)t * METRICS_KNN_NPHASE + p];
    *refills += w->refills[t];
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
  const int qb = e->w.qblock * e->w.nthreads;   /* a query block for each thread */
  e->knn = xmalloc((size_t)qb * e->depth * sizeof *e->knn);   /* Q x depth */
  e->first = xmalloc((size_t)qb * sizeof *e->first);           /* Q */
  e->ap = xmalloc_f64((size_t)qb);                             /* Q */
  e->rprec = xmalloc_f64((size_t)qb);                          /* Q */
  e->inv = xmalloc_f64((size_t)e->depth);                      /* depth */
  for (int j = 0; j < e->depth; j++) e->inv[j] = 1.0 / (j + 1);
}

void metrics_eval_free(MetricsEval *e) {
  free(e->R);
  free(e->knn);
  free(e->first);
  free(e->ap);
  free(e->rprec);
  free(e->inv);
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
  const int qb = e->w.qblock * e->w.nthreads;
  for (int qa = q0; qa < q1; qa += qb) {
    const int nq = imin(qb, q1 - qa);
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
      for (int j = 0; j < R; j++) {   /* R <= depth by construction; branch-free: hits are a coin toss */
        const int hit = labels[nb[j]] == lab;
        rel += hit;
        ap += (double)(hit * rel) * e->inv[j];
      }
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

/* Workspace of one k-means call (allocated once, reused by every restart):
 * O(k x D + n), whatever k. */
typedef struct {
  int n, D, k, pb, sb, trials;
  float *xx;        /* n: ||x_i||^2 */
  float *cc;        /* k: ||c_j||^2 */
  float *tile;      /* max(pb x k, trials x sb): sgemm products */
  float *dot;       /* n: x . c of one centre (seeding) */
  double *closest;  /* n: squared distance to the nearest centre chosen so far (seeding) */
  double *cum;      /* n: running sum of closest */
  float *dist;      /* n: squared distance of each point to its assigned centre */
  double *sums;     /* k x D: per-cluster coordinate sums */
  int *counts;      /* k */
  float *newc;      /* max(k, trials) x D */
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

/* closest[i] = min(closest[i], squared distance of x_i to x_id); returns the
 * new potential, the sum of closest */
static double kmeans_add_centre(Kmeans *w, const float *x, int id) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, w->n, w->D, 1.0f, x, w->D, x + (size_t)id * w->D, 1, 0.0f, w->dot, 1);
  double pot = 0;
  for (int i = 0; i < w->n; i++) {
    w->closest[i] = fmin(w->closest[i], fmax((double)w->xx[i] + w->xx[id] - 2.0 * w->dot[i], 0.0));
    pot += w->closest[i];
  }
  return pot;
}

/* greedy k-means++ (as sklearn's _kmeans_plusplus): each new centre is the
 * best of `trials` D^2-sampled candidates, best = lowest resulting potential.
 * The candidates' potentials come from blocks of sb points (a trials x sb
 * tile, no trials x n buffer); the winner's distances are taken once more. */
static void kmeans_seed(Kmeans *w, float *c, const float *x, Rng *rng) {
  const int n = w->n, D = w->D, k = w->k, T = w->trials;
  int id = (int)rng_below(rng, (uint32_t)n);
  memcpy(c, x + (size_t)id * D, (size_t)D * sizeof *c);
  for (int i = 0; i < n; i++) w->closest[i] = INFINITY;
  double pot = kmeans_add_centre(w, x, id);
  int cid[64];        /* trials <= 2 + ln(INT_MAX) < 64 */
  double cpot[64];    /* each candidate's potential */
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
      cpot[t] = 0;
      memcpy(w->newc + (size_t)t * D, x + (size_t)cid[t] * D, (size_t)D * sizeof(float));
    }
    for (int pa = 0; pa < n; pa += w->sb) {
      const int np = imin(w->sb, n - pa);
      /* tile (T x np) = candidates (T x D) . x[pa..]^T (D x np) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, np, D, 1.0f, w->newc, D, x + (size_t)pa * D, D, 0.0f,
                  w->tile, np);
      for (int t = 0; t < T; t++) {
        const float *dot = w->tile + (size_t)t * np;   /* np */
        double p = 0;
        for (int i = 0; i < np; i++)
          p += fmin(w->closest[pa + i], fmax((double)w->xx[pa + i] + w->xx[cid[t]] - 2.0 * dot[i], 0.0));
        cpot[t] += p;
      }
    }
    int best = 0;
    for (int t = 1; t < T; t++)
      if (cpot[t] < cpot[best]) best = t;
    pot = kmeans_add_centre(w, x, cid[best]);
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
  w.sb = imin(n, 4096);
  w.trials = 2 + (int)log((double)k);
  size_t tile = (size_t)w.trials * w.sb;
  if ((size_t)w.pb * k > tile) tile = (size_t)w.pb * k;
  w.xx = xmalloc_f32((size_t)n);
  w.cc = xmalloc_f32((size_t)k);
  w.tile = xmalloc_f32(tile);
  w.dot = xmalloc_f32((size_t)n);
  w.closest = xmalloc_f64((size_t)n);
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
  free(w.xx); free(w.cc); free(w.tile); free(w.dot); free(w.closest); free(w.cum); free(w.dist);
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
