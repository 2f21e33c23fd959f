/* reducer.h: the gradient reduction of a step, in buckets that start while
 * the backward pass is still running, and the optimizer shards (ZeRO stage 1).
 *
 *   Reducer r;
 *   reducer_init(&r, d, n_params, n_backbone, bucket_elems, shard, overlap);
 *   adam_shard(&opt, r.own, r.nown);               // Adam keeps this rank's pieces only
 *   per step:
 *     reducer_begin(&r, grads, stats, nstats);     // stats: summed over ranks, e.g. the loss
 *     ... loss backward:  reducer_ready(&r, n_backbone);    // the proxy gradients are final
 *     ... each layer:     reducer_ready(&r, lowest offset whose gradient is final);
 *     const float *g = reducer_finish(&r);         // the reduced gradient of this rank's pieces
 *     adam_step(&opt, params, g);
 *     reducer_gather(&r, params);                  // every rank gets every updated piece
 *   reducer_free(&r);
 *
 * The flat block [0, n) is cut into buckets at n_backbone and every
 * bucket_elems elements counted from the top, because backward produces the
 * gradients from the top: the proxies right after the loss, then the network
 * from its last layer down. A bucket starts (MPI_Iallreduce, or
 * MPI_Ireduce_scatter when sharded) as soon as the frontier passes its lower
 * end; each reducer_ready also tests the buckets in flight, which is what
 * moves them on (Open MPI progresses non-blocking collectives inside MPI calls).
 *
 * Sharded, rank p owns the p-th of P near-equal pieces of every bucket: it
 * receives only their reduced gradient (own_grads, compact, in bucket order),
 * Adam updates only them and keeps only their moments, and reducer_gather
 * allgathers the parameters. Bytes on the wire are those of one allreduce
 * (reduce-scatter + allgather), the optimizer's work and memory are 1/P.
 *
 * Without overlap there is one bucket, reduced after the backward pass by
 * the blocking collectives (MPI_Allreduce, or MPI_Reduce_scatter and
 * MPI_Allgatherv), for which Open MPI picks its tuned algorithms. Per element every path adds the same P partial sums, so on
 * 2 ranks all paths are bitwise equal (one addition, commutative); on more
 * ranks the order of the additions may differ between paths (2·P·u relative,
 * docs/scaling.md).
 */
#ifndef PROXYGML_REDUCER_H
#define PROXYGML_REDUCER_H

#include <stddef.h>

#include "dist.h"
#include "optim.h"

enum { REDUCER_MAX_STATS = 8 };

typedef struct {
  size_t begin, end;          /* [begin, end) of the flat block */
  int *counts, *displs;       /* P: each rank's piece, relative to begin (sharded) */
  size_t own_off;             /* this rank's piece in own_grads (sharded) */
  int started;
} ReducerBucket;

typedef struct {
  const Dist *d;
  size_t n;
  int shard, overlap;
  int nbuckets;
  ReducerBucket *b;           /* in the order they become ready: from the top of the block down */
  int nown;
  OptimRange *own;            /* nown: this rank's piece of each bucket (sharded), else the whole block */
  size_t own_total;           /* the sum of their lengths, a tail excluded */
  float *own_grads;           /* own_total (sharded), else NULL: the grads block is reduced in place */
  MPI_Request *req;           /* nbuckets + 1 (the stats) */
  float *grads, *stats;       /* of the current step */
  int nstats, stats_started;
  size_t frontier;            /* gradients in [frontier, n) are final */
  size_t n_tail;              /* reducer_set_tail */
} Reducer;

/* bucket_elems = 0: one bucket for the network, one for the proxies. A single
 * rank has nothing to reduce: every call below returns at once. */
void reducer_init(Reducer *r, const Dist *d, size_t n, size_t n_backbone, size_t bucket_elems, int shard, int overlap);
void reducer_free(Reducer *r);
/* A tail [n, n + n_tail) of the block that each rank owns alone (the
 * proxies sharded by class, include/proxyshard.h): never reduced, always
 * this rank's last own piece, so that Adam updates it with the rest. Its
 * gradients go to reducer_tail(r, grads): grads + n, or the end of the
 * compact own_grads when sharded. Call before adam_shard. */
void reducer_set_tail(Reducer *r, size_t n_tail);
float *reducer_tail(const Reducer *r, float *grads);
/* a new step: grads (n) will hold this rank's sums; stats (nstats, final
 * before the first reducer_ready) are summed over the ranks in place, in a
 * small reduction of their own */
void reducer_begin(Reducer *r, float *grads, float *stats, int nstats);
/* the gradients in [lo, n) are final: start the buckets they complete, and
 * move the ones in flight on */
void reducer_ready(Reducer *r, size_t lo);
/* start the rest, wait for all; returns the reduced gradient of this rank's
 * pieces: own_grads (sharded) or grads */
const float *reducer_finish(Reducer *r);
/* sharded: every rank's updated pieces of `full` (n) to every rank */
void reducer_gather(Reducer *r, float *full);
/* sharded: the compact pieces of every rank (own_total on each) into full (n) on rank 0;
 * these three move the reduced pieces only, never a tail */
void reducer_gather_root(Reducer *r, const float *own, float *full);
/* this rank's pieces of full (n) into own (own_total), and back; copies, no MPI */
void reducer_take_own(const Reducer *r, const float *full, float *own);
void reducer_put_own(const Reducer *r, const float *own, float *full);

#endif
