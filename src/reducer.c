/* reducer.c: bucketed, overlapped gradient reduction and optimizer shards
 * (see include/reducer.h). */
#include "reducer.h"

#include "common.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* buckets from the top of [lo, hi) down, each at most `size` elements */
static int cut(ReducerBucket *b, int nb, size_t lo, size_t hi, size_t size) {
  for (size_t end = hi; end > lo;) {
    size_t begin = end - lo > size ? end - size : lo;
    if (b) b[nb] = (ReducerBucket){.begin = begin, .end = end};
    nb++;
    end = begin;
  }
  return nb;
}

void reducer_init(Reducer *r, const Dist *d, size_t n, size_t n_backbone, size_t bucket_elems, int shard,
                  int overlap) {
  memset(r, 0, sizeof *r);
  r->d = d;
  r->n = n;
  r->shard = shard && d->size > 1;
  r->overlap = overlap && d->size > 1;
  const int P = d->size;
  /* MPI counts are int; a sharded bucket's counts are pieces, smaller */
  size_t size = (size_t)INT_MAX;
  if (r->overlap && bucket_elems > 0 && bucket_elems < size) size = bucket_elems;
  if (!r->overlap) {
    r->nbuckets = cut(NULL, 0, 0, n, size);
  } else {
    r->nbuckets = cut(NULL, cut(NULL, 0, n_backbone, n, size), 0, n_backbone, size);
  }
  r->b = xcalloc((size_t)r->nbuckets + 1, sizeof *r->b);
  if (!r->overlap) cut(r->b, 0, 0, n, size);
  else cut(r->b, cut(r->b, 0, n_backbone, n, size), 0, n_backbone, size);
  r->own = xmalloc(((size_t)r->nbuckets + 1) * sizeof *r->own);
  r->req = xmalloc(((size_t)r->nbuckets + 1) * sizeof *r->req);
  for (int k = 0; k < r->nbuckets; k++) {
    ReducerBucket *b = &r->b[k];
    size_t len = b->end - b->begin;
    b->counts = xmalloc((size_t)P * sizeof(int));
    b->displs = xmalloc((size_t)P * sizeof(int));
    for (int p = 0; p < P; p++) {   /* piece p: [len·p/P, len·(p+1)/P) */
      size_t lo = len * (size_t)p / (size_t)P, hi = len * (size_t)(p + 1) / (size_t)P;
      b->counts[p] = (int)(hi - lo);
      b->displs[p] = (int)lo;
    }
    if (!r->shard) continue;
    r->own[k] = (OptimRange){b->begin + (size_t)b->displs[d->rank],
                             b->begin + (size_t)b->displs[d->rank] + (size_t)b->counts[d->rank]};
    b->own_off = r->own_total;
    r->own_total += r->own[k].end - r->own[k].begin;
  }
  r->nown = r->shard ? r->nbuckets : 1;
  if (r->shard) {
    r->own_grads = xmalloc_f32(r->own_total + 1);
  } else {
    r->own[0] = (OptimRange){0, n};
    r->own_total = n;
  }
}

void reducer_set_tail(Reducer *r, size_t n_tail) {
  r->n_tail = n_tail;
  if (!r->shard) {
    r->own[0].end = r->n + n_tail;
    return;
  }
  r->own[r->nown++] = (OptimRange){r->n, r->n + n_tail};
  free(r->own_grads);
  r->own_grads = xmalloc_f32(r->own_total + n_tail + 1);
}

float *reducer_tail(const Reducer *r, float *grads) {
  return r->shard ? r->own_grads + r->own_total : grads + r->n;
}

void reducer_free(Reducer *r) {
  for (int k = 0; k < r->nbuckets; k++) {
    free(r->b[k].counts);
    free(r->b[k].displs);
  }
  free(r->b);
  free(r->own);
  free(r->req);
  free(r->own_grads);
  memset(r, 0, sizeof *r);
}

/* each request in flight holds a schedule and its buffers in Open MPI: a
 * block cut into thousands of small buckets keeps at most this many going */
enum { REDUCER_IN_FLIGHT = 16 };

static void start(Reducer *r, int k) {
  ReducerBucket *b = &r->b[k];
  if (k >= REDUCER_IN_FLIGHT) DIST_CHECK(MPI_Wait(&r->req[k - REDUCER_IN_FLIGHT], MPI_STATUS_IGNORE));
  float *g = r->grads + b->begin;
  if (r->shard)
    DIST_CHECK(MPI_Ireduce_scatter(g, r->own_grads + b->own_off, b->counts, MPI_FLOAT, MPI_SUM, r->d->comm, &r->req[k]));
  else
    DIST_CHECK(MPI_Iallreduce(MPI_IN_PLACE, g, (int)(b->end - b->begin), MPI_FLOAT, MPI_SUM, r->d->comm, &r->req[k]));
  b->started = 1;
}

static void start_stats(Reducer *r) {
  if (r->stats_started || r->nstats == 0) return;
  r->stats_started = 1;
  DIST_CHECK(MPI_Iallreduce(MPI_IN_PLACE, r->stats, r->nstats, MPI_FLOAT, MPI_SUM, r->d->comm, &r->req[r->nbuckets]));
}

void reducer_begin(Reducer *r, float *grads, float *stats, int nstats) {
  CHECK(nstats <= REDUCER_MAX_STATS, "reducer_begin: %d stats", nstats);
  r->grads = grads;
  r->stats = stats;
  r->nstats = nstats;
  r->frontier = r->n;
  r->stats_started = 0;
  for (int k = 0; k <= r->nbuckets; k++) r->req[k] = MPI_REQUEST_NULL;
  for (int k = 0; k < r->nbuckets; k++) r->b[k].started = 0;
}

void reducer_ready(Reducer *r, size_t lo) {
  if (r->d->size == 1 || !r->overlap) return;
  if (lo < r->frontier) r->frontier = lo;
  start_stats(r);
  for (int k = 0; k < r->nbuckets; k++)
    if (!r->b[k].started && r->b[k].begin >= r->frontier) start(r, k);
  int done;   /* a test is what makes Open MPI move the collectives on */
  DIST_CHECK(MPI_Testall(r->nbuckets + 1, r->req, &done, MPI_STATUSES_IGNORE));
}

const float *reducer_finish(Reducer *r) {
  if (r->d->size == 1) return r->grads;
  if (!r->overlap) {   /* the blocking collectives: Open MPI's tuned algorithms */
    if (r->nstats) DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, r->stats, r->nstats, MPI_FLOAT, MPI_SUM, r->d->comm));
    for (int k = 0; k < r->nbuckets; k++) {   /* one, unless the block exceeds an int count */
      const ReducerBucket *b = &r->b[k];
      if (r->shard)
        DIST_CHECK(MPI_Reduce_scatter(r->grads + b->begin, r->own_grads + b->own_off, b->counts, MPI_FLOAT, MPI_SUM,
                                      r->d->comm));
      else
        DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, r->grads + b->begin, (int)(b->end - b->begin), MPI_FLOAT, MPI_SUM,
                                 r->d->comm));
    }
    return r->shard ? r->own_grads : r->grads;
  }
  start_stats(r);
  for (int k = 0; k < r->nbuckets; k++)
    if (!r->b[k].started) start(r, k);
  DIST_CHECK(MPI_Waitall(r->nbuckets + 1, r->req, MPI_STATUSES_IGNORE));
  return r->shard ? r->own_grads : r->grads;
}

void reducer_gather(Reducer *r, float *full) {
  if (!r->shard) return;
  if (!r->overlap) {
    for (int k = 0; k < r->nbuckets; k++)
      DIST_CHECK(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, full + r->b[k].begin, r->b[k].counts,
                                r->b[k].displs, MPI_FLOAT, r->d->comm));
    return;
  }
  for (int k = 0; k < r->nbuckets; k++) {
    if (k >= REDUCER_IN_FLIGHT) DIST_CHECK(MPI_Wait(&r->req[k - REDUCER_IN_FLIGHT], MPI_STATUS_IGNORE));
    DIST_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, full + r->b[k].begin, r->b[k].counts,
                               r->b[k].displs, MPI_FLOAT, r->d->comm, &r->req[k]));
  }
  DIST_CHECK(MPI_Waitall(r->nbuckets, r->req, MPI_STATUSES_IGNORE));
}

void reducer_gather_root(Reducer *r, const float *own, float *full) {
  if (!r->shard) {
    if (r->d->rank == 0 && full != own) memcpy(full, own, r->n * sizeof(float));
    return;
  }
  for (int k = 0; k < r->nbuckets; k++) {
    const ReducerBucket *b = &r->b[k];
    DIST_CHECK(MPI_Gatherv(own + b->own_off, b->counts[r->d->rank], MPI_FLOAT, r->d->rank == 0 ? full + b->begin : NULL,
                           b->counts, b->displs, MPI_FLOAT, 0, r->d->comm));
  }
}

void reducer_take_own(const Reducer *r, const float *full, float *own) {
  if (!r->shard) {
    if (own != full) memcpy(own, full, r->n * sizeof(float));
    return;
  }
  for (int k = 0; k < r->nbuckets; k++)
    memcpy(own + r->b[k].own_off, full + r->own[k].begin, (r->own[k].end - r->own[k].begin) * sizeof(float));
}

void reducer_put_own(const Reducer *r, const float *own, float *full) {
  if (!r->shard) {
    if (own != full) memcpy(full, own, r->n * sizeof(float));
    return;
  }
  for (int k = 0; k < r->nbuckets; k++)
    memcpy(full + r->own[k].begin, own + r->b[k].own_off, (r->own[k].end - r->own[k].begin) * sizeof(float));
}
