/* proxygml.c: the ProxyGML loss, forward and backward, in float32 (the fast
 * path) and float64 (proxygml_ref, the published structure).
 * reference: docs/loss.md 2-6; bare section numbers in comments below refer to it.
 * The golden-file check is losscheck.c; the benchmark is tools/bench_loss.c. */
#include "proxygml.h"

#include "common.h"
#include "layers.h"
#include "rng.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* proxies per block of the proxy loop: with lambda > 0 the block's rows of
 * lambda G U (128 KiB at D = 512) are formed by one product and stay in L2 */
enum { BWD_BLOCK = 64 };

_Static_assert(sizeof(((ProxyGML *)0)->phase_sec) == PROXYGML_NPHASE * sizeof(double), "one slot per phase");

const char *proxygml_phase_name(int phase) {
  static const char *names[PROXYGML_NPHASE] = {"normalise", "similarity", "select", "softmax",
                                               "reg_forward", "reg_backward", "sparse_backward", "x_backward"};
  return phase >= 0 && phase < PROXYGML_NPHASE ? names[phase] : "?";
}

int proxygml_k_from_ratio(double r, int C, int N) {
  return (int)ceil(r * C * N);   /* (r*C)*N: the order matters at exact multiples (2) */
}

void proxygml_init(ProxyGML *l, int B_max, int D, int C, int N, int K, float lambda, float scale) {
  CHECK(B_max >= 1 && D >= 1 && C >= 1 && N >= 1, "proxygml_init: bad sizes B=%d D=%d C=%d N=%d", B_max, D, C, N);
  int M = C * N;
  CHECK(K >= 1 && K <= M, "proxygml_init: K=%d outside [1, C*N=%d]", K, M);
  memset(l, 0, sizeof *l);
  layers_blas_warm();
  l->B_max = B_max; l->D = D; l->C = C; l->N = N; l->M = M; l->K = K;
  l->lambda = lambda; l->scale = scale;
  l->reg_begin = 0; l->reg_end = M;
  size_t Bm = (size_t)B_max;
  l->x = xmalloc_f32(Bm * D);
  l->xnorm = xmalloc_f32(Bm);
  l->pnorm = xmalloc_f32(M);
  l->S = xmalloc_f32(Bm * M);
  l->sel = xmalloc(Bm * K * sizeof(int));
  l->Z = xmalloc_f32(Bm * C);
  l->zmask = xmalloc(Bm * C);
  l->P = xmalloc_f32(Bm * C);
  l->GZ = xmalloc_f32(Bm * C);
  l->gx = xmalloc_f32(Bm * D);
  if (lambda > 0) {
    l->W = xmalloc_f32((size_t)M * D);
    l->U = xmalloc_f32((size_t)C * D);
    l->G = xmalloc_f32((size_t)M * C);
    l->GU = xmalloc_f32((size_t)C * D);
  }
  l->GW = xmalloc_f32((size_t)M * D);
  l->csr_start = xmalloc((size_t)(M + 1) * sizeof(int));
  l->csr_b = xmalloc(Bm * K * sizeof(int));
  l->csr_g = xmalloc_f32(Bm * K);
  l->csr_s = xmalloc_f32(Bm * K);
  l->nthreads = omp_get_max_threads();
  l->scratch_v = xmalloc_f32((size_t)l->nthreads * 2 * M);   /* also K doubles of the softmax */
  l->scratch_i = xmalloc((size_t)l->nthreads * M * sizeof(int));
  l->scratch_gw = xmalloc_f32((size_t)l->nthreads * BWD_BLOCK * D);
  l->gx_part = xmalloc_f32((size_t)l->nthreads * Bm * D);
  l->row_loss = xmalloc((size_t)(Bm > (size_t)M ? Bm : (size_t)M) * sizeof(double));
  l->thread_sec = xcalloc((size_t)l->nthreads * 2, sizeof(double));
}

void proxygml_free(ProxyGML *l) {
  void *bufs[] = {l->x, l->xnorm, l->pnorm, l->S, l->sel, l->Z, l->zmask, l->P, l->GZ, l->gx, l->W, l->U,
                  l->G, l->GU, l->GW, l->csr_start, l->csr_b, l->csr_g, l->csr_s, l->scratch_v, l->scratch_i, l->scratch_gw, l->gx_part, l->row_loss, l->thread_sec};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------ selection */

/* a ranks before b: larger value first, then lower index (a fixed tie rule,
 * shared with the reference, so both select the same set) */
static inline int better(float va, int ia, float vb, int ib) { return va > vb || (va == vb && ia < ib); }

/* A bounded heap of the k best (value, index) pairs seen so far, the worst
 * of them at the root: one comparison rejects most candidates, so a row costs
 * about one pass over its M similarities. */
typedef struct { float *v; int *i; int n, k; } BestK;

static inline void bestk_sift(BestK *h, int at) {
  for (;;) {
    int l = 2 * at + 1, r = l + 1, w = at;
    if (l < h->n && better(h->v[w], h->i[w], h->v[l], h->i[l])) w = l;
    if (r < h->n && better(h->v[w], h->i[w], h->v[r], h->i[r])) w = r;
    if (w == at) return;
    float tv = h->v[at]; int ti = h->i[at];
    h->v[at] = h->v[w]; h->i[at] = h->i[w]; h->v[w] = tv; h->i[w] = ti;
    at = w;
  }
}

static inline void bestk_push(BestK *h, float v, int i) {
  if (h->n < h->k) {   /* not full: append and sift up (worst to the root) */
    int at = h->n++;
    h->v[at] = v; h->i[at] = i;
    while (at > 0) {
      int up = (at - 1) / 2;
      if (!better(h->v[up], h->i[up], h->v[at], h->i[at])) break;
      float tv = h->v[at]; int ti = h->i[at];
      h->v[at] = h->v[up]; h->i[at] = h->i[up]; h->v[up] = tv; h->i[up] = ti;
      at = up;
    }
  } else if (better(v, i, h->v[0], h->i[0])) {
    h->v[0] = v; h->i[0] = i;
    bestk_sift(h, 0);
  }
}

/* pushes s[j0..j1) (index j) into h: fill, then a cheap reject of everything
 * below the current K-th best, which is most of a row */
static void bestk_scan(BestK *h, const float *s, int j0, int j1) {
  int j = j0;
  for (; j < j1 && h->n < h->k; j++) bestk_push(h, s[j], j);
  for (; j < j1; j++)
    if (!(s[j] < h->v[0])) bestk_push(h, s[j], j);
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* The heap path of the selection below: rows with a NaN (whose order the
 * heap defines, as it always has) and K < N. */
static void select_row_heap(int *out /* K */, const float *s /* M */, int y, int C, int N, int K, float *v, int *idx) {
  int M = C * N, p0 = y * N;
  if (K >= N) {
    for (int n = 0; n < N; n++) out[n] = p0 + n;
    BestK h = {v, idx, 0, K - N};
    if (h.k > 0) {
      bestk_scan(&h, s, 0, p0);
      bestk_scan(&h, s, p0 + N, M);
      memcpy(out + N, idx, (size_t)h.k * sizeof(int));
    }
  } else {
    BestK h = {v, idx, 0, K};
    bestk_scan(&h, s, p0, p0 + N);
    memcpy(out, idx, (size_t)K * sizeof(int));
  }
  qsort(out, (size_t)K, sizeof(int), cmp_int);   /* ascending: sums below run in index order */
}

/* larger = ranks first: larger value, then lower index (better()'s rule as one integer) */
static inline uint64_t rank_key(float v, int j) { return (uint64_t)proxygml_order_key(v) << 32 | (uint32_t)~(uint32_t)j; }

/* the k-th largest of a[0..n) (1 <= k <= n, distinct keys), by quickselect; reorders a */
static uint64_t kth_largest(uint64_t *a, int n, int k) {
  int lo = 0, hi = n - 1, want = k - 1;   /* position in descending order */
  while (lo < hi) {
    uint64_t p = a[lo + (hi - lo) / 2], t;
    int i = lo, j = hi;
    while (i <= j) {
      while (a[i] > p) i++;
      while (a[j] < p) j--;
      if (i <= j) { t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return a[want];
  }
  return a[want];
}

enum { SELECT_BUCKETS = 256 };

/* The k-th largest rank key among s[idx[0..m)] (1 <= k <= m, no NaN): a
 * histogram of the values over the range present, linear (so the sparse top
 * of a row spreads over many buckets; (s - lo) * scale never decreases as s
 * grows, so the buckets keep the order), then an exact select among the
 * members of the bucket that holds it. a: m keys of scratch. */
static uint64_t kth_among(const float *s, const int *idx, int m, int k, uint64_t *a) {
  float lo = INFINITY, hi = -INFINITY;
  for (int i = 0; m >= SELECT_BUCKETS && i < m; i++) {
    lo = s[idx[i]] < lo ? s[idx[i]] : lo;
    hi = s[idx[i]] > hi ? s[idx[i]] : hi;
  }
  if (m < SELECT_BUCKETS || !(hi - lo <= FLT_MAX)) {   /* too few to pay, or a span beyond float: select all */
    for (int i = 0; i < m; i++) a[i] = rank_key(s[idx[i]], idx[i]);
    return kth_largest(a, m, k);
  }
  float scale = (SELECT_BUCKETS - 1) / (hi - lo);
  if (!(scale <= FLT_MAX)) scale = 0;   /* no span, or a tiny one: one bucket (s - lo stays finite) */
  uint32_t hist[SELECT_BUCKETS] = {0};
  for (int i = 0; i < m; i++) hist[(int)((s[idx[i]] - lo) * scale)]++;
  int b = SELECT_BUCKETS - 1;
  uint32_t above = 0;   /* keys in buckets > b */
  while (above + hist[b] < (uint32_t)k) above += hist[b--];
  int n = 0;
  for (int i = 0; i < m; i++) {
    const int j = idx[i];
    if ((int)((s[j] - lo) * scale) == b) a[n++] = rank_key(s[j], j);
  }
  return kth_largest(a, n, k - (int)above);
}

int proxygml_select_sample(int i) { return rng_stratum(i, PROXYGML_SELECT_STRIDE); }

/* The negatives' threshold from a sample, for rows where k is a small part of
 * them (sop: 565 of 11317): one negative in PROXYGML_SELECT_STRIDE, at a
 * hashed offset in each stride so that no period of the row lines up with
 * it. The sample's r-th best, r four standard deviations above the k / stride
 * expected, is below the k-th best of the row unless the row is far from
 * random. One pass keeps the negatives at or above it (a few k, in index
 * order), an exact select among them gives the threshold, and they are
 * filtered in place. Returns 0 when the bound proved too high (fewer than k
 * kept) or the row has a NaN: the caller takes the histogram path. The same
 * set as that path: every negative left out is below every one kept. */
static int select_sampled(int *out, const float *s, int p0, int N, int M, int k, float *v, int *idx) {
  const int ns = (M - N) / PROXYGML_SELECT_STRIDE;
  const double mean = (double)k / PROXYGML_SELECT_STRIDE;
  const int r = (int)(mean + 4 * sqrt(mean)) + 8;
  if (r >= ns / 4) return 0;
  uint64_t *a = (uint64_t *)v;   /* M keys at most */
  for (int i = 0; i < ns; i++) {
    const int j = proxygml_select_sample(i);
    idx[i] = j + (j >= p0 ? N : 0);   /* the negatives' j-th: positives skipped */
  }
  int nan = 0;
  for (int i = 0; i < ns; i++) nan |= s[idx[i]] != s[idx[i]];
  if (nan) return 0;
  const float bound = s[(uint32_t)~(uint32_t)kth_among(s, idx, ns, r, a)];
  int m = 0;   /* branch-free: idx[m] is written whether kept or not */
  for (int j = 0; j < p0; j++) { idx[m] = j; m += s[j] >= bound; nan |= s[j] != s[j]; }
  const int before = m;
  for (int j = p0 + N; j < M; j++) { idx[m] = j; m += s[j] >= bound; nan |= s[j] != s[j]; }
  if (m < k || nan) return 0;
  const uint64_t thr = kth_among(s, idx, m, k, a);
  int n = 0, lo = 0;   /* in place: n <= i */
  for (int i = 0; i < m; i++) {
    const int j = idx[i], keep = rank_key(s[j], j) >= thr;
    idx[n] = j;
    lo += i < before && keep;
    n += keep;
  }
  memcpy(out, idx, (size_t)lo * sizeof(int));
  for (int q = 0; q < N; q++) out[lo + q] = p0 + q;
  memcpy(out + lo + N, idx + lo, (size_t)(k - lo) * sizeof(int));
  return 1;
}

enum { SELECT_BITS = 11 };   /* histogram of the top bits of the keys: 2048 buckets, 8 KiB on the stack */

/* Row b keeps its N positives plus the K-N most similar negatives (K >= N), or
 * its K most similar positives (K < N): the top-K of S + 1000*Pi without the
 * float32 ties that the +1000 would create (3.3, 5.5). Ties: lower index first.
 * The K-N negatives are found by a threshold, not a heap: a histogram of the
 * keys' top bits gives the bucket holding the (K-N)-th best, an exact select
 * among that bucket's few members gives the threshold itself, and one scan in
 * index order keeps everything at or above it, ascending, with no sort.
 * v: 2M floats (M keys of 8 bytes), idx: M ints of scratch. */
void proxygml_select(int *out, const float *s, int y, int C, int N, int K, float *v, int *idx) {
  const int M = C * N, p0 = y * N, k = K - N;
  if (K < N || k == 0) { select_row_heap(out, s, y, C, N, K, v, idx); return; }
  if (select_sampled(out, s, p0, N, M, k, v, idx)) return;
  uint32_t hist[1 << SELECT_BITS];
  memset(hist, 0, sizeof hist);
  int nan = 0;
  for (int j = 0; j < M; j++) {
    if (j == p0) { j += N - 1; continue; }
    nan |= s[j] != s[j];
    hist[proxygml_order_key(s[j]) >> (32 - SELECT_BITS)]++;
  }
  if (nan) { select_row_heap(out, s, y, C, N, K, v, idx); return; }
  int b = (1 << SELECT_BITS) - 1;
  uint32_t above = 0;   /* negatives in buckets > b */
  while (above + hist[b] < (uint32_t)k) above += hist[b--];
  uint64_t *a = (uint64_t *)v;   /* the members of bucket b: M at most */
  int m = 0;
  for (int j = 0; j < M; j++) {
    if (j == p0) { j += N - 1; continue; }
    if ((int)(proxygml_order_key(s[j]) >> (32 - SELECT_BITS)) == b) a[m++] = rank_key(s[j], j);
  }
  const uint64_t thr = kth_largest(a, m, k - (int)above);
  int n = 0;   /* branch-free: idx[n] is written whether kept or not, so idx (M > K) and not out (K) */
  for (int j = 0; j < p0; j++) { idx[n] = j; n += rank_key(s[j], j) >= thr; }
  for (int j = p0; j < p0 + N; j++) idx[n++] = j;
  for (int j = p0 + N; j < M; j++) { idx[n] = j; n += rank_key(s[j], j) >= thr; }
  memcpy(out, idx, (size_t)K * sizeof(int));
}

typedef struct { int positive; double v; int j; } RefItem;
static int cmp_ref_item(const void *a, const void *b) {   /* positives first, then value descending, index ascending */
  const RefItem *x = a, *y = b;
  if (x->positive != y->positive) return y->positive - x->positive;
  if (x->v != y->v) return x->v > y->v ? -1 : 1;
  return (x->j > y->j) - (x->j < y->j);
}

/* the positives ahead of every negative, as S + 1000 Pi ranks them, but by a
 * flag: no float ties, even with an infinite similarity; K < N keeps the K
 * best positives the same way */
void proxygml_select_ref(int *out, const float *s, int y, int C, int N, int K) {
  const int M = C * N;
  RefItem *it = xmalloc((size_t)M * sizeof *it);
  for (int j = 0; j < M; j++) it[j] = (RefItem){j / N == y, s[j], j};
  qsort(it, (size_t)M, sizeof *it, cmp_ref_item);
  for (int i = 0; i < K; i++) out[i] = it[i].j;
  free(it);
  qsort(out, (size_t)K, sizeof(int), cmp_int);
}

float proxygml_topk_margin(const ProxyGML *l, int b, int y) {
  const int N = l->N, M = l->M, K = l->K, p0 = y * N;
  const int *sel = l->sel + (size_t)b * K;
  const float *s = l->S + (size_t)b * M;
  float kept = INFINITY, dropped = -INFINITY;
  for (int j = 0, i = 0; j < M; j++) {
    int positive = j >= p0 && j < p0 + N;
    while (i < K && sel[i] < j) i++;
    if (positive == (K >= N)) continue;   /* not competing */
    if (i < K && sel[i] == j) kept = s[j] < kept ? s[j] : kept;
    else dropped = s[j] > dropped ? s[j] : dropped;
  }
  return kept == INFINITY || dropped == -INFINITY ? INFINITY : kept - dropped;
}

void proxygml_topk(int *out, const float *s, int M, int K, float *v, int *idx) {
  BestK h = {v, idx, 0, K};
  bestk_scan(&h, s, 0, M);
  memcpy(out, idx, (size_t)K * sizeof(int));
  qsort(out, (size_t)K, sizeof(int), cmp_int);
}

/* ------------------------------------------------------------ forward */

enum { PROXY_BLOCK = 256 };   /* proxies per similarity block: 512 KiB at D = 512, stays in L2 */

/* in double: the norms enter every gradient (multi-versioned: the portable
 * baseline converts and adds two doubles at a time, a third of sop's similarity pass) */
static PROXYGML_HOT double sum_squares(const float *p, int D) {
  double ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int d = 0; d < D; d++) ss += (double)p[d] * p[d];
  return ss;
}

/* y = x * s over one row (multi-versioned, as add_row below): W from P */
static PROXYGML_HOT void scale_row(float *y, const float *x, float s, int D) {
  for (int d = 0; d < D; d++) y[d] = x[d] * s;
}

static PROXYGML_HOT void divide_by(float *s, const float *by, int n) {
  for (int j = 0; j < n; j++) s[j] /= by[j];
}

/* S = x W^T with W = P / ||P|| by blocks of proxies: each block's norms are
 * taken while it is in cache and its columns of x P^T are scaled by them, so
 * the M x D proxies are read from memory once, and W is written only where
 * the regulariser wants it (from the block in cache, not a second pass). */
void proxygml_similarity(float *S, float *pnorm, float *W, const float *x, const float *proxies, int B, int M, int D,
                         int nt) {
  const int nblk = (M + PROXY_BLOCK - 1) / PROXY_BLOCK;
  /* the pthread build only: in the OpenMP one this call is omp_set_num_threads,
   * and BLAS inside our region is serial anyway */
  const int switch_blas = nt > 1 && openblas_get_parallel() != 2;
  if (switch_blas) openblas_set_num_threads(1);   /* parallel over blocks, not inside each small sgemm */
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nblk > 1)
  for (int k = 0; k < nblk; k++) {
    int j0 = k * PROXY_BLOCK, nj = M - j0 < PROXY_BLOCK ? M - j0 : PROXY_BLOCK;
    for (int j = j0; j < j0 + nj; j++) pnorm[j] = (float)fmax(sqrt(sum_squares(proxies + (size_t)j * D, D)), 1e-12);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, nj, D, 1.0f, x, D, proxies + (size_t)j0 * D, D,
                0.0f, S + j0, M);
    for (int b = 0; b < B; b++) divide_by(S + (size_t)b * M + j0, pnorm + j0, nj);
    if (W)
      for (int j = j0; j < j0 + nj; j++)
        scale_row(W + (size_t)j * D, proxies + (size_t)j * D, 1.0f / pnorm[j], D);
  }
  if (switch_blas) openblas_set_num_threads(nt);
}

/* 3.4-3.6 and 4.2 for one row: logits, mask, masked softmax, its loss term
 * and G_Z. Only the classes of the K selected proxies can be unmasked, so the
 * work is O(K) after clearing the rows (SOP: K = 566 of C = 11318 classes).
 * cls, zs: scratch of K. Returns -log(p_y + 1e-20). */
static double softmax_row(float *z, uint8_t *mask, float *p, float *gz, int *cls, double *zs, const int *sel,
                          const float *srow, int y, int C, int N, int K, double s, double inv_b) {
  memset(z, 0, (size_t)C * sizeof(float));
  memset(mask, 0, (size_t)C);
  memset(p, 0, (size_t)C * sizeof(float));
  memset(gz, 0, (size_t)C * sizeof(float));
  int nc = 0;
  for (int i = 0; i < K; i++) {   /* sel is ascending: one run per class */
    int c = sel[i] / N;
    if (nc == 0 || cls[nc - 1] != c) { cls[nc] = c; zs[nc] = 0; nc++; }
    zs[nc - 1] += srow[sel[i]];
  }
  double zmax = -INFINITY;
  for (int i = 0; i < nc; i++) {
    float zf = (float)zs[i];
    z[cls[i]] = zf;
    mask[cls[i]] = zf != 0.0f;   /* the literal exact-zero test */
    if (zf != 0.0f && zf > zmax) zmax = zf;
  }
  /* exp(s Z) / (1e-8 + sum) rewritten with exp(s (Z - m)) and the 1e-8
   * scaled by exp(-s m): no overflow in float32 at large scale (5.2) */
  double den = zmax == -INFINITY ? 1e-8 : exp(log(1e-8) - s * zmax);
  for (int i = 0; i < nc; i++) {
    int c = cls[i];
    zs[i] = mask[c] ? exp(s * (z[c] - zmax)) : 0.0;   /* zs now holds E */
    den += zs[i];
  }
  double py = 0;
  for (int i = 0; i < nc; i++)
    if (cls[i] == y) py = zs[i] / den;
  double rho = py / (py + 1e-20), g = s * inv_b * rho;
  for (int i = 0; i < nc; i++) {
    double pc = zs[i] / den;
    p[cls[i]] = (float)pc;
    gz[cls[i]] = (float)(g * pc);
  }
  gz[y] = (float)(g * (py - 1.0));
  return -log(py + 1e-20);
}

/* e^x for x <= 0 in float operations alone, so that a loop of it vectorises
 * (libm's expf is a call per element, and cub's regulariser takes 1200 x 100
 * a step). x = n ln2 + r with |r| <= ln2 / 2: n rounded to nearest by adding
 * and removing 1.5 * 2^23 (floorf would not vectorise), ln2 split in two so
 * that n ln2 is exact; e^r by its Taylor series to r^7 (remainder below
 * 1e-8); 2^n through the exponent bits. Below -87 (and for NaN), e^x < 2^-125
 * and it returns 0: beside a row's largest term, e^0 = 1, that adds nothing
 * to a float. No branch, and every step is one rounded IEEE operation, so any
 * vector width gives the same bits. */
static inline float exp_nonpos(float x) {
  uint32_t live = -(uint32_t)(x >= -87.0f), xb, vb;   /* all ones, or 0 */
  memcpy(&xb, &x, sizeof xb);
  xb &= live;   /* x outside [-87, 0] becomes 0: n stays a small integer */
  memcpy(&x, &xb, sizeof x);
  float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;
  float r = (x - n * 0.693145751953125f) - n * 1.42860677e-6f;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float two_n, v;
  memcpy(&two_n, &bits, sizeof two_n);
  v = p * two_n;
  memcpy(&vb, &v, sizeof vb);
  vb &= live;
  memcpy(&v, &vb, sizeof v);
  return v;
}

PROXYGML_HOT double proxygml_regulariser_row(float *zc, int own, int C, int M) {
  float m = -INFINITY;
#pragma omp simd reduction(max : m)   /* the maximum is the same in any order */
  for (int c = 0; c < C; c++) m = zc[c] > m ? zc[c] : m;
  double zown = zc[own], part[8] = {0};
#pragma omp simd
  for (int c = 0; c < C; c++) zc[c] = exp_nonpos(zc[c] - m);
  for (int c = 0; c < C; c++) part[c % 8] += zc[c];   /* eight fixed lanes: one order on every ISA */
  double se = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  float inv = (float)(1.0 / (se * M)), onehot = 1.0f / M;
  for (int c = 0; c < C; c++) zc[c] *= inv;
  zc[own] -= onehot;
  return m + log(se) - zown;
}

/* y += x over one row (multi-versioned: M x D each, a few
 * hundred microseconds of cub's step in the portable baseline) */
static PROXYGML_HOT void add_row(float *y, const float *x, int D) {
  for (int d = 0; d < D; d++) y[d] += x[d];
}

/* 3.7 and 4.4: rows [rb, re) of the regulariser through U = W Y (never the
 * M x M matrix); leaves (softmax - onehot) / M in G. Returns their loss sum. */
static double regulariser_forward(ProxyGML *l) {
  const int D = l->D, C = l->C, N = l->N, M = l->M, rb = l->reg_begin, Mr = l->reg_end - l->reg_begin;
  for (int c = 0; c < C; c++) {
    float *u = l->U + (size_t)c * D;
    memcpy(u, l->W + (size_t)c * N * D, (size_t)D * sizeof(float));
    for (int n = 1; n < N; n++) cblas_saxpy(D, 1.0f, l->W + ((size_t)c * N + n) * D, 1, u, 1);
  }
  if (Mr <= 0) return 0;
  float *G = l->G + (size_t)rb * C;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Mr, C, D, 1.0f, l->W + (size_t)rb * D, D, l->U, D, 0.0f, G, C);
  double *row_loss = l->row_loss;   /* summed below in a fixed order: OpenMP reductions are not */
#pragma omp parallel for schedule(static) num_threads(l->nthreads) if (Mr > 256)
  for (int i = 0; i < Mr; i++) row_loss[i] = proxygml_regulariser_row(G + (size_t)i * C, (rb + i) / N, C, M);
  double reg = 0;
  for (int i = 0; i < Mr; i++) reg += row_loss[i];
  return reg;
}

float proxygml_forward(ProxyGML *l, const float *x_raw, const int *labels, const float *proxies, int B) {
  CHECK(B >= 1 && B <= l->B_max, "proxygml_forward: B=%d outside [1, %d]", B, l->B_max);
  const int C = l->C, N = l->N, M = l->M, K = l->K;
  const double inv_b = 1.0 / (l->batch_norm > 0 ? l->batch_norm : B);
  l->B = B;
  l->proxies = proxies;

  double *ph = l->phase_sec, t0 = now_sec(), t1;
  l2norm_forward(l->x, l->xnorm, x_raw, B, l->D);          /* 3.1 */
  ph[PROXYGML_PHASE_NORMALISE] += (t1 = now_sec()) - t0;
  proxygml_similarity(l->S, l->pnorm, l->lambda > 0 ? l->W : NULL, l->x, proxies, B, M, l->D, l->nthreads);   /* 3.1-3.2 */
  ph[PROXYGML_PHASE_SIMILARITY] += (t0 = now_sec()) - t1;
  memset(l->thread_sec, 0, (size_t)l->nthreads * 2 * sizeof(double));
#pragma omp parallel for schedule(dynamic, 1) num_threads(l->nthreads) if ((long)B * M > 16384)
  for (int b = 0; b < B; b++) {
    int t = omp_get_thread_num();
    double r0 = now_sec();
    int *sel = l->sel + (size_t)b * K;
    const float *srow = l->S + (size_t)b * M;
    proxygml_select(sel, srow, labels[b], C, N, K, l->scratch_v + (size_t)t * 2 * M, l->scratch_i + (size_t)t * M);  /* 3.3 */
    double r1 = now_sec();
    size_t o = (size_t)b * C;
    l->row_loss[b] = softmax_row(l->Z + o, l->zmask + o, l->P + o, l->GZ + o, l->scratch_i + (size_t)t * M,
                                 (double *)(l->scratch_v + (size_t)t * 2 * M), sel, srow, labels[b], C, N, K, l->scale,
                                 inv_b);
    l->thread_sec[2 * t] += r1 - r0;
    l->thread_sec[2 * t + 1] += now_sec() - r1;
  }
  {   /* the loop's wall time, split in the proportion of the threads' time in each part */
    double sel_s = 0, sm_s = 0, wall = (t1 = now_sec()) - t0;
    for (int t = 0; t < l->nthreads; t++) { sel_s += l->thread_sec[2 * t]; sm_s += l->thread_sec[2 * t + 1]; }
    double f = sel_s + sm_s > 0 ? sel_s / (sel_s + sm_s) : 0.5;
    ph[PROXYGML_PHASE_SELECT] += wall * f;
    ph[PROXYGML_PHASE_SOFTMAX] += wall * (1 - f);
  }
  double loss_cls = 0;
  for (int b = 0; b < B; b++) loss_cls += l->row_loss[b];
  l->loss_cls = (float)(loss_cls * inv_b);
  l->loss_reg = l->lambda > 0 ? (float)(regulariser_forward(l) / M) : 0.0f;
  ph[PROXYGML_PHASE_REG_FORWARD] += now_sec() - t1;
  l->loss = l->loss_cls + l->lambda * l->loss_reg;
  return l->loss;
}

/* ------------------------------------------------------------ backward */

/* lambda dL_reg/dW = lambda (U G^T + (W G) Y^T), restricted to G's rows
 * [rb, re). Here only the class gradient GU = lambda G^T W; the proxy loop
 * forms lambda G U a block of rows at a time (regulariser_block) and adds
 * GU's row of the class while the rows are in cache: GW never makes the
 * round trip through memory, nor do two passes over M x D. */
static void regulariser_backward(ProxyGML *l) {
  const int D = l->D, C = l->C, rb = l->reg_begin, Mr = l->reg_end - l->reg_begin;
  if (Mr <= 0) {
    memset(l->GU, 0, (size_t)C * D * sizeof(float));
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, Mr, l->lambda, l->G + (size_t)rb * C, C,
              l->W + (size_t)rb * D, D, 0.0f, l->GU, D);
}

/* gw (n x D) = lambda dL_reg/dW for the proxies [j0, j0 + n) */
static void regulariser_block(const ProxyGML *l, float *gw, int j0, int n) {
  const int D = l->D, C = l->C, N = l->N;
  int a = j0 > l->reg_begin ? j0 : l->reg_begin, b = j0 + n < l->reg_end ? j0 + n : l->reg_end;
  for (int j = j0; j < j0 + n; j++)
    if (j < a || j >= b) memcpy(gw + (size_t)(j - j0) * D, l->GU + (size_t)(j / N) * D, (size_t)D * sizeof(float));
  if (a >= b) return;
  float *g = gw + (size_t)(a - j0) * D;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, b - a, D, C, l->lambda, l->G + (size_t)a * C, C, l->U, D,
              0.0f, g, D);
  for (int j = a; j < b; j++) add_row(g + (size_t)(j - a) * D, l->GU + (size_t)(j / N) * D, D);
}

PROXYGML_HOT void proxygml_proxy_backward(float *dp, float *gw, float *gx_part, const float *p, float pnorm,
                                        const float *x, const int *b, const float *g, const float *s, int n, int D) {
  const float inv = 1.0f / pnorm;
  if (s) {   /* gw starts at zero: W_j . G_W_j = sum_e g_e (W_j . x_b), known before any pass over D */
    double wg = 0;
    for (int e = 0; e < n; e++) wg += (double)g[e] * s[e];
    const float wdot = pnorm <= 1e-12f ? 0.0f : (float)wg * inv;
    memset(gw, 0, (size_t)D * sizeof(float));
    for (int e = 0; e < n; e++) {   /* the last pair finishes dp: no pass of its own */
      const float *xb = x + (size_t)b[e] * D;
      float *gxb = gx_part + (size_t)b[e] * D;
      const float ge = g[e], gi = ge * inv;
      if (e < n - 1) {
        for (int d = 0; d < D; d++) {
          gw[d] += ge * xb[d];
          gxb[d] += gi * p[d];
        }
      } else {
        for (int d = 0; d < D; d++) {
          float gwd = gw[d] + ge * xb[d];
          gxb[d] += gi * p[d];
          gw[d] = gwd;
          dp[d] += (gwd - p[d] * wdot) * inv;
        }
      }
    }
    return;
  }
  for (int e = 0; e < n; e++) {
    const float *xb = x + (size_t)b[e] * D;
    float *gxb = gx_part + (size_t)b[e] * D;
    const float ge = g[e], gi = ge * inv;
    for (int d = 0; d < D; d++) {
      gw[d] += ge * xb[d];
      gxb[d] += gi * p[d];
    }
  }
  double wg = 0;
#pragma omp simd reduction(+ : wg)
  for (int d = 0; d < D; d++) wg += (double)p[d] * gw[d];
  float wdot = (float)(wg * inv) * inv;   /* (W_j . G_W_j) / ||P_j||, W_j = P_j / ||P_j|| */
  if (pnorm <= 1e-12f) wdot = 0;          /* clamped norm: the map is linear */
  for (int d = 0; d < D; d++) dp[d] += (gw[d] - p[d] * wdot) * inv;
}

/* The proxy loop below is bound by memory: each proxy's row and its gradient
 * row come from DRAM (23 MB each for sop) and the hardware prefetcher does
 * not start on a row before the loop touches it. Asking a few rows ahead
 * overlaps those misses with the work on the current row. */
enum { PREFETCH_AHEAD = 4 };

static inline void prefetch_rows(const float *p, const float *dp, int D) {
  for (int d = 0; d < D; d += 16) {   /* 16 floats: one cache line */
    __builtin_prefetch(p + d, 0, 3);
    __builtin_prefetch(dp + d, 1, 3);
  }
}

void proxygml_backward(ProxyGML *l, float *dx_raw, float *dproxies) {
  const int B = l->B, D = l->D, C = l->C, N = l->N, M = l->M, K = l->K;
  const int nt = l->nthreads;
  const float *P = l->proxies;
  double *ph = l->phase_sec, t0 = now_sec(), t1;

  /* 4.3 sparse: G_S[b,j] = G_Z[b, c(j)] on the K selected j of row b only.
   * The (b, j) pairs grouped by proxy, b ascending, so that one pass over the
   * proxies forms both products while each proxy row is in cache:
   * G_W_j = sum_b G_S[b,j] x_b (one thread per proxy, fixed order) and
   * G_x_b += G_S[b,j] W_j (into per-thread partial sums, W_j = P_j / ||P_j||) */
  int *start = l->csr_start;
  memset(start, 0, (size_t)(M + 1) * sizeof(int));
  for (int e = 0; e < B * K; e++) start[l->sel[e] + 1]++;
  for (int j = 0; j < M; j++) start[j + 1] += start[j];
  for (int b = 0; b < B; b++)
    for (int i = 0; i < K; i++) {
      int j = l->sel[(size_t)b * K + i], e = start[j]++;
      l->csr_b[e] = b;
      l->csr_g[e] = l->GZ[(size_t)b * C + j / N];
      l->csr_s[e] = l->S[(size_t)b * M + j];
    }
  for (int j = M; j > 0; j--) start[j] = start[j - 1];   /* undo the fill's shift */
  start[0] = 0;

  int reg = l->lambda > 0;
  t1 = now_sec();
  if (reg) regulariser_backward(l);
  ph[PROXYGML_PHASE_REG_BACKWARD] += now_sec() - t1;
  t1 = now_sec() - (t1 - t0);   /* the selection by proxy above counts as sparse backward */
  int keep = l->keep_grad_w;
  memset(l->gx_part, 0, (size_t)nt * B * D * sizeof(float));
  const int nblk = (M + BWD_BLOCK - 1) / BWD_BLOCK;
  const int switch_blas = reg && nt > 1 && openblas_get_parallel() != 2;   /* as in proxygml_similarity */
  if (switch_blas) openblas_set_num_threads(1);
  /* 4.5, columns: dP_j += (G_W_j - W_j (W_j . G_W_j)) / ||P_j||, only for proxies with a gradient */
#pragma omp parallel num_threads(nt) if ((long)M * D + (long)B * K * D > 131072)
  {
    int t = omp_get_thread_num();
    float *gw_local = l->scratch_gw + (size_t)t * BWD_BLOCK * D;
    float *gx_part = l->gx_part + (size_t)t * B * D;
#pragma omp for schedule(static)   /* static: the partial sums stay the same run to run */
    for (int k = 0; k < nblk; k++) {
      int j0 = k * BWD_BLOCK, n = M - j0 < BWD_BLOCK ? M - j0 : BWD_BLOCK;
      float *gw_blk = keep ? l->GW + (size_t)j0 * D : gw_local;
      if (reg) regulariser_block(l, gw_blk, j0, n);
      for (int j = j0; j < j0 + n; j++) {
        int e0 = start[j], e1 = start[j + 1];
        float *gw = reg || keep ? gw_blk + (size_t)(j - j0) * D : gw_local;   /* one row, kept in L1 */
        if (!reg && e0 == e1) {
          if (keep) memset(gw, 0, (size_t)D * sizeof(float));
          continue;
        }
        if (j + PREFETCH_AHEAD < M)
          prefetch_rows(P + (size_t)(j + PREFETCH_AHEAD) * D, dproxies + (size_t)(j + PREFETCH_AHEAD) * D, D);
        proxygml_proxy_backward(dproxies + (size_t)j * D, gw, gx_part, P + (size_t)j * D, l->pnorm[j], l->x,
                                l->csr_b + e0, l->csr_g + e0, reg ? NULL : l->csr_s + e0, e1 - e0, D);
      }
    }
  }
  if (switch_blas) openblas_set_num_threads(nt);
  ph[PROXYGML_PHASE_SPARSE_BACKWARD] += (t0 = now_sec()) - t1;
  /* G_x: the per-thread partial sums in thread order, then 4.5 for the rows */
#pragma omp parallel for schedule(static) num_threads(nt) if (B * D > 32768)
  for (int i = 0; i < B * D; i++) {
    float acc = 0;
    for (int t = 0; t < nt; t++) acc += l->gx_part[(size_t)t * B * D + i];
    l->gx[i] = acc;
  }
  l2norm_backward(dx_raw, l->gx, l->x, l->xnorm, B, D);
  ph[PROXYGML_PHASE_X_BACKWARD] += now_sec() - t0;
}

/* ------------------------------------------------------------ float64 reference */

void proxygml_ref_free(ProxyGMLRef *r) {
  void *bufs[] = {r->x, r->W, r->S, r->sel, r->Z, r->zmask, r->P, r->GZ, r->gx, r->GW, r->dx_raw, r->dproxies};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  memset(r, 0, sizeof *r);
}

typedef struct { double v; int j; } RankItem;
static int cmp_rank(const void *a, const void *b) {
  const RankItem *x = a, *y = b;
  if (x->v != y->v) return x->v > y->v ? -1 : 1;
  return x->j - y->j;
}

/* Straight from the published structure: top-K of S + 1000*Pi by a full sort,
 * logits through the dense one-hot Y, regulariser through the M x M matrix. */
void proxygml_ref(ProxyGMLRef *r, const double *x_raw, const int *labels, const double *proxies,
                  int B, int D, int C, int N, int K, double lambda, double scale) {
  int M = C * N;
  memset(r, 0, sizeof *r);
  r->B = B; r->D = D; r->C = C; r->N = N; r->M = M; r->K = K;
  r->x = xcalloc((size_t)B * D, sizeof(double));
  r->W = xcalloc((size_t)M * D, sizeof(double));
  r->S = xcalloc((size_t)B * M, sizeof(double));
  r->sel = xcalloc((size_t)B * M, 1);
  r->Z = xcalloc((size_t)B * C, sizeof(double));
  r->zmask = xcalloc((size_t)B * C, 1);
  r->P = xcalloc((size_t)B * C, sizeof(double));
  r->GZ = xcalloc((size_t)B * C, sizeof(double));
  r->gx = xcalloc((size_t)B * D, sizeof(double));
  r->GW = xcalloc((size_t)M * D, sizeof(double));
  r->dx_raw = xcalloc((size_t)B * D, sizeof(double));
  r->dproxies = xcalloc((size_t)M * D, sizeof(double));
  double *xn = xcalloc(B, sizeof(double)), *pn = xcalloc(M, sizeof(double));
  l2norm_forward_ref(r->x, xn, x_raw, B, D);
  l2norm_forward_ref(r->W, pn, proxies, M, D);
  RankItem *items = xcalloc(M, sizeof *items);
  double loss_cls = 0;
  for (int b = 0; b < B; b++) {
    for (int j = 0; j < M; j++) {
      double s = 0;
      for (int d = 0; d < D; d++) s += r->x[b * D + d] * r->W[(size_t)j * D + d];
      r->S[(size_t)b * M + j] = s;
      items[j].v = s + 1000.0 * (j / N == labels[b]);
      items[j].j = j;
    }
    qsort(items, M, sizeof *items, cmp_rank);
    for (int i = 0; i < K; i++) r->sel[(size_t)b * M + items[i].j] = 1;
    for (int c = 0; c < C; c++) {
      double z = 0;
      for (int j = 0; j < M; j++)   /* A Y with the dense one-hot Y */
        z += r->sel[(size_t)b * M + j] * r->S[(size_t)b * M + j] * (j / N == c);
      r->Z[b * C + c] = z;
      r->zmask[b * C + c] = z != 0.0;
    }
    double den = 1e-8;
    for (int c = 0; c < C; c++) den += exp(scale * r->Z[b * C + c]) * r->zmask[b * C + c];
    for (int c = 0; c < C; c++) r->P[b * C + c] = exp(scale * r->Z[b * C + c]) * r->zmask[b * C + c] / den;
    double py = r->P[b * C + labels[b]];
    loss_cls += -log(py + 1e-20);
    double rho = py / (py + 1e-20);
    for (int c = 0; c < C; c++) r->GZ[b * C + c] = scale / B * rho * (r->P[b * C + c] - (c == labels[b]));
  }
  r->loss_cls = loss_cls / B;
  /* G_x = G_S W, G_W = G_S^T x */
  for (int b = 0; b < B; b++)
    for (int j = 0; j < M; j++) {
      if (!r->sel[(size_t)b * M + j]) continue;
      double g = r->GZ[b * C + j / N];
      for (int d = 0; d < D; d++) {
        r->gx[b * D + d] += g * r->W[(size_t)j * D + d];
        r->GW[(size_t)j * D + d] += g * r->x[b * D + d];
      }
    }
  if (lambda > 0) {
    /* S_c = W W^T (M x M), Z_c = S_c Y, cross-entropy per proxy row */
    double *Sc = xcalloc((size_t)M * M, sizeof(double)), *Zc = xcalloc((size_t)M * C, sizeof(double));
    for (int i = 0; i < M; i++)
      for (int j = 0; j < M; j++) {
        double s = 0;
        for (int d = 0; d < D; d++) s += r->W[(size_t)i * D + d] * r->W[(size_t)j * D + d];
        Sc[(size_t)i * M + j] = s;
      }
    for (int i = 0; i < M; i++)
      for (int j = 0; j < M; j++) Zc[(size_t)i * C + j / N] += Sc[(size_t)i * M + j];
    double reg = 0;
    double *GSc = xcalloc((size_t)M * M, sizeof(double));
    for (int i = 0; i < M; i++) {
      double m = -INFINITY, se = 0;
      for (int c = 0; c < C; c++) m = fmax(m, Zc[(size_t)i * C + c]);
      for (int c = 0; c < C; c++) se += exp(Zc[(size_t)i * C + c] - m);
      reg += m + log(se) - Zc[(size_t)i * C + i / N];
      /* G_Sc = G_Zc Y^T: entry (i, j) gets G_Zc[i, c(j)] */
      for (int j = 0; j < M; j++) {
        int c = j / N;
        GSc[(size_t)i * M + j] = (exp(Zc[(size_t)i * C + c] - m) / se - (c == i / N)) / M;
      }
    }
    r->loss_reg = reg / M;
    /* G_W^reg = (G_Sc + G_Sc^T) W, rows of W as proxies */
    for (int i = 0; i < M; i++)
      for (int j = 0; j < M; j++) {
        double g = lambda * (GSc[(size_t)i * M + j] + GSc[(size_t)j * M + i]);
        if (g == 0) continue;
        for (int d = 0; d < D; d++) r->GW[(size_t)i * D + d] += g * r->W[(size_t)j * D + d];
      }
    free(Sc); free(Zc); free(GSc);
  }
  r->loss = r->loss_cls + lambda * r->loss_reg;
  l2norm_backward_ref(r->dx_raw, r->gx, r->x, xn, B, D);
  l2norm_backward_ref(r->dproxies, r->GW, r->W, pn, M, D);
  free(items); free(xn); free(pn);
}
