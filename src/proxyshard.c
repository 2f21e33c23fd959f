/* proxyshard.c: the class-sharded ProxyGML loss (include/proxyshard.h).
 * reference: docs/loss.md for the function, docs/sharding.md for the
 * distributed form; bare section numbers refer to docs/loss.md. */
#include "proxyshard.h"

#include "common.h"
#include "layers.h"
#include "proxygml.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

enum { REG_CHUNK = 128 };   /* proxies per regulariser block: REG_CHUNK x C logits at a time */
enum { REG_BLOCK = 1024 };  /* classes per block of the sampled regulariser: ns x REG_BLOCK logits at a time */

void proxyshard_classes(int C, int P, int r, int *c0, int *c1) {
  *c0 = (int)((int64_t)C * r / P);
  *c1 = (int)((int64_t)C * (r + 1) / P);
}

void proxyshard_init(ProxyShard *s, const Dist *d, int G, int D, int C, int N, int K, float lambda, float scale,
                     int reg_sampled) {
  const int P = d->size;
  CHECK(G >= P && G % P == 0, "proxyshard_init: the global batch %d does not divide over %d ranks", G, P);
  CHECK(C >= P, "proxyshard_init: %d classes cannot be sharded over %d ranks", C, P);
  CHECK(N >= 1 && D >= 1 && (int64_t)C * N <= INT32_MAX && K >= 1 && K <= C * N,
        "proxyshard_init: bad sizes C=%d N=%d K=%d D=%d", C, N, K, D);
  memset(s, 0, sizeof *s);
  layers_blas_warm();
  s->d = d; s->P = P; s->rank = d->rank; s->nt = omp_get_max_threads();
  s->G = G; s->B = G / P; s->D = D; s->C = C; s->N = N; s->M = C * N; s->K = K;
  s->lambda = lambda; s->scale = scale;
  s->reg_sampled = lambda > 0 && reg_sampled;
  proxyshard_classes(C, P, s->rank, &s->c0, &s->c1);
  s->j0 = s->c0 * N;
  s->Mp = (s->c1 - s->c0) * N;
  s->row0 = s->rank * s->B;
  s->cap = K < s->Mp ? K : s->Mp;
  size_t g = (size_t)G, gc = g * (size_t)s->cap;
  s->x = xmalloc_f32(g * D);
  s->xnorm = xmalloc_f32((size_t)s->B);
  s->y = xmalloc(g * sizeof(int));
  s->pnorm = xmalloc_f32((size_t)s->Mp);
  s->S = xmalloc_f32(g * (size_t)s->Mp);
  s->row = xcalloc(g, sizeof *s->row);
  s->lhist = xmalloc(g * PROXYSHARD_BINS * sizeof(int));
  s->ghist = xmalloc(g * PROXYSHARD_BINS * sizeof(int));
  s->cand_start = xmalloc((g + 1) * sizeof(int));
  s->active = xmalloc(g * sizeof(int));
  s->hoff = xmalloc(g * sizeof(int));
  s->keep_n = xcalloc(g, sizeof(int));
  s->keep_j = xmalloc(gc * sizeof(int));
  s->keep_g = xmalloc_f32(gc);
  s->run_c = xmalloc(gc * sizeof(int));
  s->run_e = xmalloc_f64(gc);
  s->run_n = xcalloc(g, sizeof(int));
  s->numden = xmalloc_f64(2 * g);
  s->zmax = xmalloc_f64(g);
  s->row_loss = xmalloc_f64(g > REG_CHUNK ? g : REG_CHUNK);   /* also the regulariser's rows */
  s->csr_start = xmalloc(((size_t)s->Mp + 1) * sizeof(int));
  s->csr_b = xmalloc(gc * sizeof(int));
  s->csr_g = xmalloc_f32(gc);
  s->gx_part = xmalloc_f32((size_t)s->nt * g * D);
  s->gx = xmalloc_f32(g * D);
  s->scratch_gw = xmalloc_f32((size_t)s->nt * D);
  s->counts = xmalloc(2 * (size_t)P * sizeof(int));
  s->displs = s->counts + P;
  if (s->reg_sampled) {
    int ns = G * N, Cp = s->c1 - s->c0;
    s->U = xmalloc_f32((size_t)Cp * D);
    s->GU = xmalloc_f32((size_t)Cp * D);
    s->GW = xmalloc_f32((size_t)s->Mp * D);
    s->Ws = xmalloc_f32((size_t)ns * D);
    s->GWs = xmalloc_f32((size_t)ns * D);
    s->Zc = xmalloc_f32((size_t)ns * REG_BLOCK);
    s->cls_s = xmalloc(g * sizeof(int));
    s->rmax = xmalloc_f64((size_t)ns);
    s->rsum = xmalloc_f64(3 * (size_t)ns);
  } else if (lambda > 0) {
    s->W = xmalloc_f32((size_t)s->Mp * D);
    s->U = xmalloc_f32((size_t)C * D);
    s->GU = xmalloc_f32((size_t)C * D);
    s->GW = xmalloc_f32((size_t)s->Mp * D);
    s->Zc = xmalloc_f32((size_t)REG_CHUNK * C);
    s->ucounts = xmalloc((size_t)P * sizeof(int));
    s->udispls = xmalloc((size_t)P * sizeof(int));
    for (int r = 0; r < P; r++) {
      int a, b;
      proxyshard_classes(C, P, r, &a, &b);
      /* unreachable in tests: C x D beyond 2^31 floats (8 GiB of class sums per rank) is beyond any test machine */
      CHECK((int64_t)C * D <= INT32_MAX, "proxyshard_init: the regulariser's C x D = %d x %d exceeds MPI counts", C, D);
      s->ucounts[r] = (b - a) * D;
      s->udispls[r] = a * D;
    }
  }
}

void proxyshard_free(ProxyShard *s) {
  void *bufs[] = {s->x, s->xnorm, s->y, s->pnorm, s->S, s->row, s->lhist, s->ghist, s->cand_start, s->cand_key,
                  s->active, s->hoff, s->keep_n, s->keep_j, s->keep_g, s->run_c, s->run_e, s->run_n, s->numden, s->zmax,
                  s->row_loss, s->csr_start, s->csr_b, s->csr_g, s->gx_part, s->gx, s->scratch_gw, s->W, s->U,
                  s->GU, s->GW, s->Zc, s->ucounts, s->udispls, s->counts, s->Ws, s->GWs, s->cls_s, s->rmax,
                  s->rsum};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ selection */

/* A monotone map of [-1, 1] onto PROXYSHARD_BINS bins (each step rounds
 * monotonically, so a <= b gives bin(a) <= bin(b)); outside values clamp, a
 * NaN lands in bin 0 (every rank counts alike, so none waits; the loss is
 * made NaN by poison_non_finite) */
static inline int value_bin(float v) {
  float t = (v + 1.0f) * (PROXYSHARD_BINS / 2);
  if (!(t >= 0)) return 0;
  return t >= PROXYSHARD_BINS - 1 ? PROXYSHARD_BINS - 1 : (int)t;
}

static inline int row_owned(const ProxyShard *s, int y) { return y >= s->c0 && y < s->c1; }

/* is local proxy j a positive of row label y */
static inline int positive(const ProxyShard *s, int j, int y) { return (s->j0 + j) / s->N == y; }

/* From the top bin (or byte) down: the first whose count, added to those
 * above it, reaches st->need; st->need becomes the rank inside it */
static int descend(ProxyShardRow *st, const int *h, int top) {
  int b = top, above = 0;
  while (b > 0 && above + h[b] < st->need) above += h[b--];
  st->need -= above;
  st->whole = h[b] == st->need;
  return b;
}

static void allreduce_ints(ProxyShard *s, int *send, int *recv, size_t n) {
  DIST_CHECK(MPI_Allreduce(send, recv, (int)n, MPI_INT, MPI_SUM, s->d->comm));
  s->bytes += 2.0 * n * sizeof(int);
}

/* round 0: the negatives of rows [0, G) counted into value bins; the bin of
 * the k-th best becomes the row's bracket, its members the candidates */
static void select_bins(ProxyShard *s, int G, int k) {
  const int Mp = s->Mp;
#pragma omp parallel for schedule(dynamic, 4) num_threads(s->nt)
  for (int b = 0; b < G; b++) {
    int *h = s->lhist + (size_t)b * PROXYSHARD_BINS;
    memset(h, 0, PROXYSHARD_BINS * sizeof(int));
    s->row[b].nan = 0;
    if (k <= 0) continue;
    const float *srow = s->S + (size_t)b * Mp;
    int y = s->y[b], nan = 0;
    for (int j = 0; j < Mp; j++) {
      h[value_bin(srow[j])]++;
      nan |= srow[j] != srow[j];
    }
    s->row[b].nan = nan;
    if (row_owned(s, y))   /* the positives do not compete */
      for (int j = (y - s->c0) * s->N, e = j + s->N; j < e; j++) h[value_bin(srow[j])]--;
  }
  allreduce_ints(s, s->lhist, s->ghist, (size_t)G * PROXYSHARD_BINS);
  s->rounds++;
  int64_t total = 0;
  for (int b = 0; b < G; b++) {
    ProxyShardRow *st = &s->row[b];
    *st = (ProxyShardRow){.need = k > 0 ? k : 0, .nan = st->nan};
    s->cand_start[b] = (int)total;
    if (!st->need) continue;
    st->bin = descend(st, s->ghist + (size_t)b * PROXYSHARD_BINS, PROXYSHARD_BINS - 1);
    st->count = s->ghist[(size_t)b * PROXYSHARD_BINS + st->bin];
    if (!st->whole) total += s->lhist[(size_t)b * PROXYSHARD_BINS + st->bin];
  }
  /* unreachable in tests: 2^31 candidates in the brackets of one step need a similarity block of 8 GiB or more */
  CHECK(total <= INT32_MAX, "proxyshard: %lld candidates exceed int indices", (long long)total);
  s->cand_start[G] = (int)total;
  if (total > s->cand_cap) {
    free(s->cand_key);
    s->cand_cap = total + total / 4 + 1024;
    s->cand_key = xmalloc((size_t)s->cand_cap * sizeof(uint32_t));
  }
#pragma omp parallel for schedule(dynamic, 4) num_threads(s->nt)
  for (int b = 0; b < G; b++) {
    const ProxyShardRow *st = &s->row[b];
    if (!st->need || st->whole) continue;
    const float *srow = s->S + (size_t)b * Mp;
    int y = s->y[b], own = row_owned(s, y), n = s->cand_start[b];
    for (int j = 0; j < Mp; j++)
      if (value_bin(srow[j]) == st->bin && !(own && positive(s, j, y))) s->cand_key[n++] = proxygml_order_key(srow[j]);
  }
}

/* the candidates of row b in its bracket: keys whose top 32 - bits bits are the prefix */
static inline int in_bracket(uint32_t key, const ProxyShardRow *st) {
  return (uint64_t)key >> st->bits == st->prefix;
}

/* the digit width of a round: enough buckets that the bracket's members
 * mostly fall apart (then a bucket holding exactly what is needed ends the
 * row), at most a byte */
static int digit_bits(const ProxyShardRow *st) {
  int d = 1;
  while (d < 8 && (1 << d) < 2 * st->count) d++;
  return d < st->bits ? d : st->bits;
}

/* After round 0: the candidates' 32-bit order keys, from the highest bit in
 * which the bracket's smallest and largest key differ (one allreduce of
 * both), a digit at a time, until each bracket is kept whole or holds one
 * exact key; then the tie rule at that key. */
static void select_digits(ProxyShard *s, int G) {
  int na = 0;
  for (int b = 0; b < G; b++) {
    ProxyShardRow *st = &s->row[b];
    st->bits = 32;
    st->prefix = 0;
    if (st->need && !st->whole) s->active[na++] = b;
  }
  if (na == 0) return;   /* the same on every rank: the counts are global */
  /* the bracket's global key range: MAX of (~min, max) */
  uint32_t *mm = (uint32_t *)s->lhist, *gmm = (uint32_t *)s->ghist;
#pragma omp parallel for schedule(dynamic, 4) num_threads(s->nt)
  for (int a = 0; a < na; a++) {
    int b = s->active[a];
    uint32_t lo = UINT32_MAX, hi = 0;
    for (int e = s->cand_start[b]; e < s->cand_start[b + 1]; e++) {
      lo = s->cand_key[e] < lo ? s->cand_key[e] : lo;
      hi = s->cand_key[e] > hi ? s->cand_key[e] : hi;
    }
    mm[2 * a] = ~lo;
    mm[2 * a + 1] = hi;
  }
  DIST_CHECK(MPI_Allreduce(mm, gmm, 2 * na, MPI_UINT32_T, MPI_MAX, s->d->comm));
  s->bytes += 2.0 * 2 * na * sizeof(uint32_t);
  s->rounds++;
  for (int a = 0; a < na; a++) {
    ProxyShardRow *st = &s->row[s->active[a]];
    uint32_t lo = ~gmm[2 * a], hi = gmm[2 * a + 1];
    st->bits = lo == hi ? 0 : 32 - __builtin_clz(lo ^ hi);
    st->prefix = (uint32_t)((uint64_t)lo >> st->bits);
    if (st->bits == 0) st->ties_local = s->cand_start[s->active[a] + 1] - s->cand_start[s->active[a]];
  }
  for (;;) {
    na = 0;
    for (int b = 0; b < G; b++)
      if (s->row[b].need && !s->row[b].whole && s->row[b].bits > 0) s->active[na++] = b;
    if (na == 0) break;
    /* each row's histogram at its offset: the same layout on every rank */
    int *off = s->hoff, total = 0;
    for (int a = 0; a < na; a++) {
      off[a] = total;
      total += 1 << digit_bits(&s->row[s->active[a]]);
    }
#pragma omp parallel for schedule(dynamic, 4) num_threads(s->nt)
    for (int a = 0; a < na; a++) {
      int b = s->active[a];
      const ProxyShardRow *st = &s->row[b];
      const int d = digit_bits(st), shift = st->bits - d;
      int *h = s->lhist + off[a];
      memset(h, 0, ((size_t)1 << d) * sizeof(int));
      for (int e = s->cand_start[b]; e < s->cand_start[b + 1]; e++)
        if (in_bracket(s->cand_key[e], st)) h[(s->cand_key[e] >> shift) & ((1u << d) - 1)]++;
    }
    allreduce_ints(s, s->lhist, s->ghist, (size_t)total);
    s->rounds++;
    for (int a = 0; a < na; a++) {
      ProxyShardRow *st = &s->row[s->active[a]];
      const int d = digit_bits(st);
      int digit = descend(st, s->ghist + off[a], (1 << d) - 1);
      st->count = s->ghist[off[a] + digit];
      st->bits -= d;
      st->prefix = st->prefix << d | (uint32_t)digit;
      if (st->bits == 0) st->ties_local = s->lhist[off[a] + digit];
    }
  }
  /* equal keys at the boundary: the lowest global indices win, and the
   * ranks hold the proxies in index order, so the ties of the ranks below
   * come first */
  int any = 0;
  for (int b = 0; b < G; b++) any |= s->row[b].need && !s->row[b].whole;
  if (!any) return;
  int *mine = s->lhist, *below = s->ghist;
  for (int b = 0; b < G; b++) mine[b] = s->row[b].need && !s->row[b].whole ? s->row[b].ties_local : 0;
  DIST_CHECK(MPI_Exscan(mine, below, G, MPI_INT, MPI_SUM, s->d->comm));
  s->bytes += (double)G * sizeof(int);
  s->rounds++;
  for (int b = 0; b < G; b++) s->row[b].ties_before = s->rank == 0 ? 0 : below[b];   /* rank 0's is undefined */
}

/* the K positives of row b with the largest S (K < N), ties to the lower
 * index: an insertion into the best K so far (j ascending, so an equal value
 * never displaces an earlier one), then ascending indices */
static int keep_best_positives(const ProxyShard *s, const float *srow, int p0, int *out) {
  const int K = s->K;
  int n = 0;
  for (int j = p0; j < p0 + s->N; j++) {
    if (n == K && !(srow[j] > srow[out[K - 1]])) continue;
    int i = n < K ? n++ : K - 1;
    for (; i > 0 && srow[j] > srow[out[i - 1]]; i--) out[i] = out[i - 1];
    out[i] = j;
  }
  for (int i = 1; i < n; i++)
    for (int t = i; t > 0 && out[t] < out[t - 1]; t--) { int u = out[t]; out[t] = out[t - 1]; out[t - 1] = u; }
  return n;
}

/* row b's kept local entries, ascending (labelled: a training row, whose
 * positives come first) */
static void keep_row(ProxyShard *s, int b, int labelled) {
  const ProxyShardRow *st = &s->row[b];
  const float *srow = s->S + (size_t)b * s->Mp;
  int *out = s->keep_j + (size_t)b * s->cap, n = 0, y = s->y[b], own = row_owned(s, y);
  int p0 = own ? (y - s->c0) * s->N : -1;
  if (labelled && s->K < s->N) {
    s->keep_n[b] = own ? keep_best_positives(s, srow, p0, out) : 0;
    return;
  }
  int ties = st->ties_before;
  for (int j = 0; j < s->Mp; j++) {
    if (j == p0) {   /* the positives: always */
      for (int e = p0 + s->N; j < e; j++) out[n++] = j;
      j--;
      continue;
    }
    if (!st->need) continue;
    int bin = value_bin(srow[j]);
    if (bin != st->bin) {
      if (bin > st->bin) out[n++] = j;
      continue;
    }
    uint64_t top = (uint64_t)proxygml_order_key(srow[j]) >> st->bits;   /* bits = 32: the whole bin */
    if (top > st->prefix || (top == st->prefix && (st->whole || ties++ < st->need))) out[n++] = j;
  }
  s->keep_n[b] = n;
}

/* ------------------------------------------------------------ softmax */

/* Row b's classes: one run of kept entries each (ascending, so a class's
 * entries are adjacent), its logit summed in index order as proxygml does */
static void logits_local(ProxyShard *s, int b) {
  const int *kj = s->keep_j + (size_t)b * s->cap;
  int *rc = s->run_c + (size_t)b * s->cap, nr = 0;
  double *rz = s->run_e + (size_t)b * s->cap;
  const float *srow = s->S + (size_t)b * s->Mp;
  for (int i = 0; i < s->keep_n[b]; nr++) {
    int c = (s->j0 + kj[i]) / s->N;
    double z = 0;
    for (; i < s->keep_n[b] && (s->j0 + kj[i]) / s->N == c; i++) z += srow[kj[i]];
    rc[nr] = c;
    rz[nr] = (float)z;
  }
  s->run_n[b] = nr;
}

/* the logits become exp(s (Z - zmax)), 0 where masked (the literal
 * exact-zero test); this rank's numerator (the label's class) and
 * denominator into numden */
static void exp_local(ProxyShard *s, int b, double zmax) {
  double *re = s->run_e + (size_t)b * s->cap, num = 0, den = 0;
  const int *rc = s->run_c + (size_t)b * s->cap;
  for (int r = 0; r < s->run_n[b]; r++) {
    re[r] = re[r] != 0.0 ? exp(s->scale * (re[r] - zmax)) : 0.0;
    den += re[r];
    if (rc[r] == s->y[b]) num = re[r];
  }
  s->numden[b] = num;
  s->numden[s->G + b] = den;
}

/* A NaN similarity among a row's competing negatives (a non-finite proxy
 * or embedding) makes the replicated row NaN, but the selection here may
 * well drop it (a NaN falls in the lowest bin): the sums that every rank
 * adds up carry it instead, so that every rank sees the same NaN loss and
 * stops. (A NaN positive is kept and makes its logit NaN by itself.) */
static void poison_non_finite(ProxyShard *s) {
  for (int b = 0; b < s->G; b++)
    if (s->row[b].nan) s->numden[s->G + b] = NAN;
}

/* every row's largest unmasked logit over all ranks (-inf: none) */
static void global_zmax(ProxyShard *s) {
  for (int b = 0; b < s->G; b++) {
    double m = -INFINITY;
    const double *rz = s->run_e + (size_t)b * s->cap;
    for (int r = 0; r < s->run_n[b]; r++)
      if (rz[r] != 0.0) m = fmax(m, rz[r]);
    s->zmax[b] = m;
  }
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, s->zmax, s->G, MPI_DOUBLE, MPI_MAX, s->d->comm));
  s->bytes += 2.0 * s->G * sizeof(double);
}

/* ------------------------------------------------------------ regulariser */

/* 3.7 and 4.4 over this rank's proxies: U gathered whole, the logits of
 * REG_CHUNK proxies at a time, lambda dL_reg/dW into GW (the class-sum part
 * reduce-scattered to the owners); W came with the similarity pass. Returns
 * this rank's sum of loss terms. */
static double regulariser(ProxyShard *s) {
  const int D = s->D, C = s->C, N = s->N, Mp = s->Mp, Cp = s->c1 - s->c0;
  float *Up = s->U + (size_t)s->c0 * D;
  for (int c = 0; c < Cp; c++) {
    float *u = Up + (size_t)c * D;
    memcpy(u, s->W + (size_t)c * N * D, (size_t)D * sizeof(float));
    for (int n = 1; n < N; n++) cblas_saxpy(D, 1.0f, s->W + ((size_t)c * N + n) * D, 1, u, 1);
  }
  DIST_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, s->U, s->ucounts, s->udispls, MPI_FLOAT, s->d->comm));
  s->bytes += (double)C * D * sizeof(float);
  memset(s->GU, 0, (size_t)C * D * sizeof(float));
  double reg = 0;
  for (int i0 = 0; i0 < Mp; i0 += REG_CHUNK) {
    int R = Mp - i0 < REG_CHUNK ? Mp - i0 : REG_CHUNK;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, C, D, 1.0f, s->W + (size_t)i0 * D, D, s->U, D, 0.0f,
                s->Zc, C);
    double *rl = s->row_loss;   /* summed in order below: OpenMP reductions are not */
#pragma omp parallel for schedule(static) num_threads(s->nt)
    for (int i = 0; i < R; i++) rl[i] = proxygml_regulariser_row(s->Zc + (size_t)i * C, (s->j0 + i0 + i) / N, C, s->M);
    for (int i = 0; i < R; i++) reg += rl[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, D, C, s->lambda, s->Zc, C, s->U, D, 0.0f,
                s->GW + (size_t)i0 * D, D);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, C, D, R, s->lambda, s->Zc, C, s->W + (size_t)i0 * D, D,
                1.0f, s->GU, D);
  }
  /* every rank's G^T W summed, each class's row delivered to its owner */
  DIST_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, s->GU, s->ucounts, MPI_FLOAT, MPI_SUM, s->d->comm));
  s->bytes += (double)C * D * sizeof(float);
  for (int j = 0; j < Mp; j++) cblas_saxpy(D, 1.0f, s->GU + (size_t)(j / N) * D, 1, s->GW + (size_t)j * D, 1);
  return reg;
}

/* The sampled regulariser (docs/sharding.md 3): the terms of the proxies
 * of the classes in the global batch only (ns = their count times N),
 * each against every class sum U_c, averaged over those ns proxies. Each
 * rank holds the sums of its own classes; the sampled proxies are
 * allgathered (ns x D), the softmax over classes is reduced like the
 * loss's (a MAX, then the rescaled sums), and the gradient of a sampled
 * proxy's direct path is reduce-scattered to its owner. Leaves lambda
 * dL_reg/dW in GW; returns this rank's share of the loss (its sampled
 * proxies' terms / ns). */
static double regulariser_sampled(ProxyShard *s, const float *slab) {
  const int D = s->D, N = s->N, P = s->P, Cp = s->c1 - s->c0, G = s->G;
  /* the batch's classes, ascending: their proxies in global index order */
  int nc = 0;
  memcpy(s->cls_s, s->y, (size_t)G * sizeof(int));
  for (int i = 1; i < G; i++)   /* insertion sort: G is small */
    for (int t = i; t > 0 && s->cls_s[t] < s->cls_s[t - 1]; t--) { int u = s->cls_s[t]; s->cls_s[t] = s->cls_s[t - 1]; s->cls_s[t - 1] = u; }
  for (int i = 0; i < G; i++)
    if (nc == 0 || s->cls_s[nc - 1] != s->cls_s[i]) s->cls_s[nc++] = s->cls_s[i];
  const int ns = nc * N;
  int mine0 = 0, mine = 0;   /* this rank's sampled proxies: rows [mine0, mine0 + mine) of Ws */
  for (int r = 0, i = 0; r < P; r++) {
    int a, b, n = 0;
    proxyshard_classes(s->C, P, r, &a, &b);
    while (i < nc && s->cls_s[i] < b) { i++; n++; }
    s->counts[r] = n * N * D;
    s->displs[r] = (i - n) * N * D;
    if (r == s->rank) { mine0 = (i - n) * N; mine = n * N; }
  }
  for (int e = 0; e < mine; e++) {
    int j = (s->cls_s[mine0 / N + e / N] - s->c0) * N + e % N;
    for (int d = 0; d < D; d++) s->Ws[(size_t)(mine0 + e) * D + d] = slab[(size_t)j * D + d] / s->pnorm[j];
  }
  DIST_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, s->Ws, s->counts, s->displs, MPI_FLOAT, s->d->comm));
  s->bytes += (double)ns * D * sizeof(float);
  /* U of this rank's classes */
  memset(s->U, 0, (size_t)Cp * D * sizeof(float));
  for (int j = 0; j < s->Mp; j++)
    for (int d = 0; d < D; d++) s->U[(size_t)(j / N) * D + d] += slab[(size_t)j * D + d] / s->pnorm[j];
  /* forward: each row's largest logit and its sum of exp over this rank's classes, a block at a time */
  double *m = s->rmax, *sum = s->rsum, *zown = s->rsum + ns;
  for (int i = 0; i < ns; i++) { m[i] = -INFINITY; sum[i] = 0; zown[i] = 0; }
  for (int c0 = 0; c0 < Cp; c0 += REG_BLOCK) {
    int nb = Cp - c0 < REG_BLOCK ? Cp - c0 : REG_BLOCK;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ns, nb, D, 1.0f, s->Ws, D, s->U + (size_t)c0 * D, D, 0.0f,
                s->Zc, nb);
#pragma omp parallel for schedule(static) num_threads(s->nt)
    for (int i = 0; i < ns; i++) {
      const float *z = s->Zc + (size_t)i * nb;
      double bm = -INFINITY, bs = 0;
      for (int c = 0; c < nb; c++) bm = fmax(bm, z[c]);
      for (int c = 0; c < nb; c++) bs += exp(z[c] - bm);
      double nm = fmax(m[i], bm);   /* a running log-sum-exp */
      sum[i] = sum[i] * exp(m[i] - nm) + bs * exp(bm - nm);
      m[i] = nm;
      int own = s->cls_s[i / N] - s->c0 - c0;
      if (own >= 0 && own < nb) zown[i] = z[own];
    }
  }
  double *gm = s->rsum + 2 * ns;
  memcpy(gm, m, (size_t)ns * sizeof(double));
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, gm, ns, MPI_DOUBLE, MPI_MAX, s->d->comm));
  for (int i = 0; i < ns; i++) sum[i] = sum[i] > 0 ? sum[i] * exp(m[i] - gm[i]) : 0;
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, sum, 2 * ns, MPI_DOUBLE, MPI_SUM, s->d->comm));
  s->bytes += 2.0 * ns * sizeof(double) + 4.0 * ns * sizeof(double);
  double share = 0;
  for (int i = 0; i < ns; i++) {
    m[i] = gm[i] + log(sum[i]);   /* now the log of the whole denominator */
    if (i >= mine0 && i < mine0 + mine) share += m[i] - zown[i];
  }
  /* backward: G = (softmax - onehot) / ns, block by block again */
  const float lam = s->lambda;
  memset(s->GWs, 0, (size_t)ns * D * sizeof(float));
  for (int c0 = 0; c0 < Cp; c0 += REG_BLOCK) {
    int nb = Cp - c0 < REG_BLOCK ? Cp - c0 : REG_BLOCK;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ns, nb, D, 1.0f, s->Ws, D, s->U + (size_t)c0 * D, D, 0.0f,
                s->Zc, nb);
#pragma omp parallel for schedule(static) num_threads(s->nt)
    for (int i = 0; i < ns; i++) {
      float *z = s->Zc + (size_t)i * nb;
      for (int c = 0; c < nb; c++) z[c] = (float)(exp(z[c] - m[i]) / ns);
      int own = s->cls_s[i / N] - s->c0 - c0;
      if (own >= 0 && own < nb) z[own] -= 1.0f / ns;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ns, D, nb, lam, s->Zc, nb, s->U + (size_t)c0 * D, D, 1.0f,
                s->GWs, D);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nb, D, ns, lam, s->Zc, nb, s->Ws, D, 0.0f,
                s->GU + (size_t)c0 * D, D);
  }
  /* the direct path's partial sums, each sampled proxy's to its owner */
  DIST_CHECK(MPI_Reduce_scatter(MPI_IN_PLACE, s->GWs, s->counts, MPI_FLOAT, MPI_SUM, s->d->comm));
  s->bytes += (double)ns * D * sizeof(float);
  for (int j = 0; j < s->Mp; j++) memcpy(s->GW + (size_t)j * D, s->GU + (size_t)(j / N) * D, (size_t)D * sizeof(float));
  for (int e = 0; e < mine; e++) {
    int j = (s->cls_s[mine0 / N + e / N] - s->c0) * N + e % N;
    cblas_saxpy(D, 1.0f, s->GWs + (size_t)e * D, 1, s->GW + (size_t)j * D, 1);
  }
  s->reg_count = ns;
  return share / ns;
}

/* ------------------------------------------------------------ forward */

float proxyshard_forward(ProxyShard *s, const float *x_raw, const int *labels, const float *slab) {
  const int G = s->G, B = s->B, D = s->D;
  s->slab = slab;
  float *xo = s->x + (size_t)s->row0 * D;
  l2norm_forward(xo, s->xnorm, x_raw, B, D);
  memcpy(s->y + s->row0, labels, (size_t)B * sizeof(int));
  DIST_CHECK(MPI_Allgather(MPI_IN_PLACE, 0, MPI_FLOAT, s->x, B * D, MPI_FLOAT, s->d->comm));
  DIST_CHECK(MPI_Allgather(MPI_IN_PLACE, 0, MPI_INT, s->y, B, MPI_INT, s->d->comm));
  s->bytes += (double)G * D * sizeof(float) + (double)G * sizeof(int);
  proxygml_similarity(s->S, s->pnorm, s->W, s->x, slab, G, s->Mp, D, s->nt);   /* W: the full regulariser's only */
  if (s->K > s->N) {   /* negatives to choose (rows start with need = 0 otherwise) */
    select_bins(s, G, s->K - s->N);
    select_digits(s, G);
  }
#pragma omp parallel for schedule(dynamic, 4) num_threads(s->nt)
  for (int b = 0; b < G; b++) keep_row(s, b, 1);
#pragma omp parallel for schedule(static) num_threads(s->nt)
  for (int b = 0; b < G; b++) logits_local(s, b);
  /* exp(s Z) with |Z| <= N fits a double up to s N ~ 700; beyond, each row's
   * largest logit is subtracted first (as proxygml does at any scale) */
  const int shifted = (double)s->scale * s->N > 600;
  if (shifted) global_zmax(s);
#pragma omp parallel for schedule(static) num_threads(s->nt)
  for (int b = 0; b < G; b++) exp_local(s, b, shifted && s->zmax[b] > -INFINITY ? s->zmax[b] : 0);
  poison_non_finite(s);
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, s->numden, 2 * G, MPI_DOUBLE, MPI_SUM, s->d->comm));
  s->bytes += 4.0 * G * sizeof(double);
  const double inv_g = 1.0 / G;
  double cls = 0;
  for (int b = 0; b < G; b++) {
    /* the 1e-8 of the denominator, on the scale of exp(s (Z - zmax)) */
    double eps = shifted && s->zmax[b] > -INFINITY ? exp(log(1e-8) - s->scale * s->zmax[b]) : 1e-8;
    double den = s->numden[G + b] + eps, py = s->numden[b] / den, g = s->scale * inv_g * (py / (py + 1e-20));
    s->row_loss[b] = -log(py + 1e-20);
    if (b >= s->row0 && b < s->row0 + B) cls += s->row_loss[b];
    /* G_Z of this rank's classes (4.2) onto their kept entries (4.3) */
    const int *kj = s->keep_j + (size_t)b * s->cap;
    float *kg = s->keep_g + (size_t)b * s->cap;
    const int *rc = s->run_c + (size_t)b * s->cap;
    const double *re = s->run_e + (size_t)b * s->cap;
    for (int i = 0, r = 0; r < s->run_n[b]; r++) {
      float gz = (float)(rc[r] == s->y[b] ? g * (py - 1.0) : g * (re[r] / den));
      for (; i < s->keep_n[b] && (s->j0 + kj[i]) / s->N == rc[r]; i++) kg[i] = gz;
    }
  }
  s->loss_cls = (float)(cls * inv_g);
  s->loss_reg = s->reg_sampled ? (float)regulariser_sampled(s, slab)
                : s->lambda > 0 ? (float)(regulariser(s) / s->M) : 0.0f;
  s->loss = s->loss_cls + s->lambda * s->loss_reg;
  return s->loss;
}

/* ------------------------------------------------------------ backward */

void proxyshard_backward(ProxyShard *s, float *dx_raw, float *dslab) {
  const int G = s->G, D = s->D, Mp = s->Mp, nt = s->nt;
  /* the kept (b, j) pairs by proxy, b ascending: one pass over the proxies
   * forms G_W and the partial G_x while each proxy row is in cache */
  int *start = s->csr_start;
  memset(start, 0, ((size_t)Mp + 1) * sizeof(int));
  for (int b = 0; b < G; b++)
    for (int i = 0; i < s->keep_n[b]; i++) start[s->keep_j[(size_t)b * s->cap + i] + 1]++;
  for (int j = 0; j < Mp; j++) start[j + 1] += start[j];
  for (int b = 0; b < G; b++)
    for (int i = 0; i < s->keep_n[b]; i++) {
      int e = start[s->keep_j[(size_t)b * s->cap + i]]++;
      s->csr_b[e] = b;
      s->csr_g[e] = s->keep_g[(size_t)b * s->cap + i];
    }
  for (int j = Mp; j > 0; j--) start[j] = start[j - 1];
  start[0] = 0;
  const int reg = s->lambda > 0;
  memset(s->gx_part, 0, (size_t)nt * G * D * sizeof(float));
#pragma omp parallel num_threads(nt)
  {
    int t = omp_get_thread_num();
    float *gx_part = s->gx_part + (size_t)t * G * D;
#pragma omp for schedule(static)   /* static: the partial sums stay the same run to run */
    for (int j = 0; j < Mp; j++) {
      int e0 = start[j], e1 = start[j + 1];
      if (!reg && e0 == e1) continue;
      float *gw = reg ? s->GW + (size_t)j * D : s->scratch_gw + (size_t)t * D;
      if (!reg) memset(gw, 0, (size_t)D * sizeof(float));
      proxygml_proxy_backward(dslab + (size_t)j * D, gw, gx_part, s->slab + (size_t)j * D, s->pnorm[j], s->x,
                              s->csr_b + e0, s->csr_g + e0, NULL, e1 - e0, D);
    }
  }
  for (size_t i = 0; i < (size_t)G * D; i++) {
    float acc = 0;
    for (int t = 0; t < nt; t++) acc += s->gx_part[(size_t)t * G * D + i];
    s->gx[i] = acc;
  }
  /* every rank's share of G_x summed and each row delivered to its owner */
  DIST_CHECK(MPI_Reduce_scatter_block(MPI_IN_PLACE, s->gx, s->B * D, MPI_FLOAT, MPI_SUM, s->d->comm));
  s->bytes += (double)G * D * sizeof(float);
  l2norm_backward(dx_raw, s->gx, s->x + (size_t)s->row0 * D, s->xnorm, s->B, D);
}

/* ------------------------------------------------------------ inference */

void proxyshard_topk(ProxyShard *s, const float *slab, const float *emb, int rows, int first, int count, int *out_idx,
                     float *out_sim, int64_t *sel_count) {
  const int G = s->G, D = s->D, P = s->P, K = s->K;
  const double bytes0 = s->bytes;   /* the counters are the training step's */
  const long rounds0 = s->rounds;
  int *cnt = s->counts, *dsp = s->displs;   /* P each */
  int *all_n = xmalloc((size_t)P * G * sizeof(int));
  int *send_j = xmalloc((size_t)G * s->cap * sizeof(int)), *recv_j = xmalloc((size_t)G * K * sizeof(int));
  float *send_v = xmalloc_f32((size_t)G * s->cap), *recv_v = xmalloc_f32((size_t)G * K);
  memset(sel_count, 0, (size_t)s->Mp * sizeof(int64_t));
  for (int r0 = 0; r0 < rows; r0 += G) {
    const int n = rows - r0 < G ? rows - r0 : G;
    memcpy(s->x, emb + (size_t)r0 * D, (size_t)n * D * sizeof(float));
    for (int b = 0; b < n; b++) s->y[b] = -1;   /* no label: no positives */
    proxygml_similarity(s->S, s->pnorm, NULL, s->x, slab, n, s->Mp, D, s->nt);
    select_bins(s, n, K);
    select_digits(s, n);
#pragma omp parallel for schedule(dynamic, 4) num_threads(s->nt)
    for (int b = 0; b < n; b++) keep_row(s, b, 0);
    /* every rank's kept entries of every row, in rank order: ascending global indices */
    int m = 0;
    for (int b = 0; b < n; b++)
      for (int i = 0; i < s->keep_n[b]; i++) {
        int j = s->keep_j[(size_t)b * s->cap + i];
        send_j[m] = s->j0 + j;
        send_v[m++] = s->S[(size_t)b * s->Mp + j];
        sel_count[j]++;
      }
    DIST_CHECK(MPI_Allgather(s->keep_n, n, MPI_INT, all_n, n, MPI_INT, s->d->comm));
    for (int r = 0, at = 0; r < P; r++) {
      cnt[r] = 0;
      for (int b = 0; b < n; b++) cnt[r] += all_n[(size_t)r * n + b];
      dsp[r] = at;
      at += cnt[r];
    }
    DIST_CHECK(MPI_Allgatherv(send_j, m, MPI_INT, recv_j, cnt, dsp, MPI_INT, s->d->comm));
    DIST_CHECK(MPI_Allgatherv(send_v, m, MPI_FLOAT, recv_v, cnt, dsp, MPI_FLOAT, s->d->comm));
    /* rows [first, first + count) are the caller's */
    for (int b = 0; b < n; b++) {
      int row = r0 + b;
      if (row < first || row >= first + count) continue;
      int o = 0;
      for (int r = 0; r < P; r++) {
        int e = dsp[r];
        for (int bb = 0; bb < b; bb++) e += all_n[(size_t)r * n + bb];
        for (int i = 0; i < all_n[(size_t)r * n + b]; i++, o++) {
          out_idx[(size_t)(row - first) * K + o] = recv_j[e + i];
          out_sim[(size_t)(row - first) * K + o] = recv_v[e + i];
        }
      }
    }
  }
  free(all_n);
  free(send_j);
  free(recv_j);
  free(send_v);
  free(recv_v);
  s->bytes = bytes0;
  s->rounds = rounds0;
}

/* ------------------------------------------------------------ inspection */

int proxyshard_kept(const ProxyShard *s, int b, int *out) {
  for (int i = 0; i < s->keep_n[b]; i++) out[i] = s->j0 + s->keep_j[(size_t)b * s->cap + i];
  return s->keep_n[b];
}

float proxyshard_topk_margin(ProxyShard *s) {
  const int G = s->G;
  double *kept = s->numden, *dropped = s->numden + G;   /* the least kept and (negated) the largest dropped */
  for (int b = 0; b < G; b++) {
    const float *srow = s->S + (size_t)b * s->Mp;
    const int *kj = s->keep_j + (size_t)b * s->cap;
    int y = s->y[b];
    double lo = INFINITY, hi = -INFINITY;
    for (int j = 0, i = 0; j < s->Mp; j++) {
      if (positive(s, j, y) == (s->K >= s->N)) continue;   /* not competing */
      while (i < s->keep_n[b] && kj[i] < j) i++;
      if (i < s->keep_n[b] && kj[i] == j) lo = fmin(lo, srow[j]);
      else hi = fmax(hi, srow[j]);
    }
    kept[b] = lo;
    dropped[b] = -hi;
  }
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, s->numden, 2 * G, MPI_DOUBLE, MPI_MIN, s->d->comm));
  double m = INFINITY;
  for (int b = 0; b < G; b++)
    if (kept[b] != INFINITY && dropped[b] != INFINITY) m = fmin(m, kept[b] + dropped[b]);
  return (float)m;
}
