/* test_reducer.c: under mpirun (np = 1, 2, 3), every reduction path of the
 * reducer (blocking or bucketed and overlapped, replicated or sharded, many
 * bucket sizes) gives each rank the same sums as one blocking MPI_Allreduce,
 * and a sharded Adam step followed by the allgather leaves every rank with
 * the parameters that a whole-block Adam step computes from those sums.
 *
 * What is guaranteed: each element is the sum of P partial sums. On one or
 * two ranks that is at most one addition, the same in any order, so the
 * paths are compared for equality. On three ranks the order of the two
 * additions may differ between collectives: a regrouped sum of P terms moves
 * by at most 2·(P−1)·u·Σ|t| (u = 2⁻²⁴). Adam is elementwise (no contraction),
 * so given the same gradient a piece moves exactly as in the whole block;
 * the gathers and copies move bits. Exit status: the allreduced verdict. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "dist.h"
#include "optim.h"
#include "reducer.h"
#include "rng.h"

enum { N = 5003, NB = 3001, NSTATS = 4 };

static int g_ok = 1;
static void verdict(int rank, int cond, const char *what) {
  if (!cond) g_ok = 0;
  if (rank == 0 || !cond) printf("%s [rank %d] %s\n", cond ? "ok  " : "FAIL", rank, what);
}

/* this rank's partial sums: a seeded spread over several binades */
static void fill(float *g, float *stats, int rank, int salt) {
  Rng r;
  rng_init(&r, (uint64_t)(1000 * salt + rank + 1));
  for (int i = 0; i < N; i++) g[i] = (float)((rng_uniform(&r) - 0.5) * pow(2.0, (double)(i % 9) - 4));
  for (int i = 0; i < NSTATS; i++) stats[i] = (float)(rank + 1) * 0.25f * (float)(i + 1);
}

/* |a - b| within the regrouping bound of P terms whose magnitudes sum to abs_sum */
static int close_enough(float a, float b, float abs_sum, int P) {
  if (P <= 2) return a == b;
  return fabsf(a - b) <= 2.0f * (float)(P - 1) * 0x1p-24f * abs_sum;
}

int main(int argc, char **argv) {
  Dist d;
  dist_init(&d, &argc, &argv);
  const int P = d.size;
  static float g[N], ref[N], abs_sum[N], stats[NSTATS], ref_stats[NSTATS];
  static float p_full[N], p_shard[N], own_in[N], own_out[N], full_root[N];
  const size_t buckets[] = {0, 1, 97, 1024, 3001, 2000000};
  const int nbucket = (int)(sizeof buckets / sizeof buckets[0]);
  int salt = 0;
  for (int shard = 0; shard <= 1; shard++)
    for (int overlap = 0; overlap <= 1; overlap++)
      for (int bi = 0; bi < nbucket; bi++) {
        char what[160];
        snprintf(what, sizeof what, "shard %d overlap %d bucket %zu", shard, overlap, buckets[bi]);
        fill(g, stats, d.rank, ++salt);
        memcpy(ref, g, sizeof g);
        memcpy(ref_stats, stats, sizeof stats);
        for (int i = 0; i < N; i++) abs_sum[i] = fabsf(g[i]);
        dist_allreduce_sum(&d, ref, N);
        dist_allreduce_sum(&d, abs_sum, N);
        dist_allreduce_sum(&d, ref_stats, NSTATS);

        Reducer r;
        reducer_init(&r, &d, N, NB, buckets[bi], shard, overlap);
        int pieces_ok = r.own_total <= (size_t)N && (!r.shard || r.own_total <= (size_t)(N / P + r.nbuckets));
        verdict(d.rank, pieces_ok, "the optimizer's share is 1/P of the block (plus one per bucket)");
        reducer_begin(&r, g, stats, NSTATS);
        /* the frontier as a backward pass moves it: proxies, then layers from the top */
        reducer_ready(&r, NB);
        for (size_t lo = NB; lo > 0;) {
          lo = lo > 700 ? lo - 700 : 0;
          reducer_ready(&r, lo);
        }
        const float *red = reducer_finish(&r);
        int sums_ok = 1;
        for (int k = 0; k < r.nown; k++)
          for (size_t i = r.own[k].begin; i < r.own[k].end; i++) {
            size_t at = r.shard ? r.b[k].own_off + (i - r.own[k].begin) : i;
            sums_ok &= close_enough(red[at], ref[i], abs_sum[i], P);
          }
        for (int i = 0; i < NSTATS; i++) sums_ok &= stats[i] == ref_stats[i];   /* small exact multiples of 1/4 */
        char line[256];
        snprintf(line, sizeof line, "%s: the sums of this rank's pieces and the stats", what);
        verdict(d.rank, sums_ok, line);

        /* one Adam step: whole block from the reference sums, against the
         * pieces from the reducer's sums, then the allgather */
        Adam full, part;
        adam_init(&full, N, 0.9, 0.999, 0.01, 1e-4);
        adam_init(&part, N, 0.9, 0.999, 0.01, 1e-4);
        adam_shard(&part, r.own, r.nown);
        adam_add_group(&full, 0, NB, 1e-3);
        adam_add_group(&full, NB, N, 0.03);
        adam_add_group(&part, 0, NB, 1e-3);
        adam_add_group(&part, NB, N, 0.03);
        for (int i = 0; i < N; i++) p_full[i] = p_shard[i] = 0.001f * (float)(i % 101);
        float *gref = ref;
        if (P > 2 && !r.shard) gref = (float *)red;   /* the same sums on both sides: only Adam is compared */
        if (P > 2 && r.shard) {                       /* the reducer's sums of every piece, gathered */
          reducer_put_own(&r, red, g);
          reducer_gather(&r, g);
          gref = g;
        }
        adam_step(&full, p_full, gref);
        adam_step(&part, p_shard, red);
        reducer_gather(&r, p_shard);
        snprintf(line, sizeof line, "%s: sharded Adam + allgather = whole-block Adam, bitwise", what);
        verdict(d.rank, memcmp(p_full, p_shard, sizeof p_full) == 0, line);

        /* checkpoint moves: gather to rank 0, and a rank's own pieces back */
        for (int i = 0; i < N; i++) own_in[i] = (float)i;
        float *own = xmalloc_f32(r.own_total + 1);
        reducer_take_own(&r, own_in, own);
        reducer_gather_root(&r, own, full_root);
        int move_ok = 1;
        if (d.rank == 0)
          for (int i = 0; i < N; i++) move_ok &= full_root[i] == (float)i;
        memset(own_out, 0, sizeof own_out);
        reducer_put_own(&r, own, own_out);
        for (int k = 0; k < r.nown; k++)
          for (size_t i = r.own[k].begin; i < r.own[k].end; i++) move_ok &= own_out[i] == (float)i;
        snprintf(line, sizeof line, "%s: the moments' gather to rank 0 and the pieces' copies", what);
        verdict(d.rank, move_ok, line);
        free(own);
        adam_free(&full);
        adam_free(&part);
        reducer_free(&r);
      }
  int all = dist_agree(&d, g_ok);
  if (d.rank == 0) printf("%s\n", all ? "all reducer checks passed" : "FAILED");
  dist_finalize(&d);
  return all ? 0 : 1;
}
