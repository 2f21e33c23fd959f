/* bench_reduce.c: `proxygml bench-reduce [--mib LIST] [--reps N]`, under
 * mpirun: the time of the step's gradient reduction for blocks of the given
 * sizes, every way the trainer does it: one allreduce (shard_optimizer = 0)
 * or reduce-scatter + allgather (= 1), with the blocking collectives
 * (overlap = 0) or the non-blocking ones of one bucket (= 1). Rank 0 prints
 * one line per size with the medians and the bus bandwidths 2(P-1)/P·S/t,
 * the numbers the step-time model of docs/scaling.md takes as α and β. */
#include "tools.h"

#include "common.h"
#include "dist.h"
#include "reducer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* median seconds of one reduction of n floats: blocking (overlap 0), or
 * the non-blocking calls of one bucket started and waited for (overlap 1) */
static double time_path(Dist *d, size_t n, int shard, int overlap, int reps) {
  Reducer r;
  reducer_init(&r, d, n, n, 0, shard, overlap);
  float *g = xmalloc_f32(n), *p = xmalloc_f32(n), stat = 1;
  for (size_t i = 0; i < n; i++) g[i] = p[i] = (float)(i % 7);
  double *t = xmalloc((size_t)reps * sizeof *t);
  for (int k = -2; k < reps; k++) {   /* two warm-up rounds */
    DIST_CHECK(MPI_Barrier(d->comm));
    double t0 = now_sec();
    reducer_begin(&r, g, &stat, 1);
    reducer_ready(&r, 0);
    reducer_finish(&r);
    reducer_gather(&r, p);
    double dt = now_sec() - t0;
    DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, d->comm));
    if (k >= 0) t[k] = dt;
  }
  qsort(t, (size_t)reps, sizeof *t, cmp_double);
  double med = t[reps / 2];
  free(t); free(g); free(p);
  reducer_free(&r);
  return med;
}

/* the arguments: 0, 1 (--help) or 2 with the reason in err_msg() */
static int parse(int argc, char **argv, double *sizes, int *nsizes, int *reps) {
  char mib[256] = "0.25,1,4,16";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    if (!strcmp(argv[i], "--mib") && i + 1 < argc) {
      snprintf(mib, sizeof mib, "%s", argv[++i]);
    } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      *reps = atoi(argv[++i]);
      if (*reps < 1 || *reps > 100000) return err_set("--reps %s: not in 1..100000", argv[i]), 2;
    } else {
      return err_set("unknown argument '%s' (see --help)", argv[i]), 2;
    }
  }
  *nsizes = 0;
  for (char *s = mib, *tok; (tok = strtok(s, ",")) && *nsizes < 32; s = NULL) {
    char *end;
    double v = strtod(tok, &end);
    if (*end || !(v > 0 && v <= 4096)) return err_set("--mib: '%s' is not a size in (0, 4096] MiB", tok), 2;
    sizes[(*nsizes)++] = v;
  }
  return 0;
}

int tool_bench_reduce(int argc, char **argv) {
  Dist d;
  dist_init(&d, &argc, &argv);
  double sizes[32];
  int nsizes = 0, reps = 20;
  int rc = parse(argc, argv, sizes, &nsizes, &reps);
  if (rc == 1 && d.rank == 0)
    printf("usage: mpirun -np P proxygml bench-reduce [--mib 0.25,1,4,16] [--reps 20]\n"
           "Median time of the gradient reduction of blocks of these sizes: one allreduce, and\n"
           "reduce-scatter + allgather (the sharded optimizer's), blocking and non-blocking,\n"
           "with the bus bandwidths.\n");
  if (rc == 2 && d.rank == 0) fprintf(stderr, "bench-reduce: %s\n", err_msg());
  if (rc) {   /* every rank parsed the same arguments: the same exit */
    dist_finalize(&d);
    return rc == 1 ? 0 : 2;
  }
  const int P = d.size;
  if (d.rank == 0) printf("ranks=%d\n", P);
  for (int k = 0; k < nsizes; k++) {
    size_t n = (size_t)(sizes[k] * 1048576.0 / sizeof(float));
    double t[4];   /* blocking allreduce, blocking rs+ag, non-blocking allreduce, non-blocking rs+ag */
    for (int v = 0; v < 4; v++) t[v] = time_path(&d, n, v & 1, v >> 1, reps);
    double bus = P > 1 ? 2.0 * (P - 1) / P * (double)n * sizeof(float) : 0;
    if (d.rank == 0)
      printf("mib=%g allreduce_ms=%.3f rs_ag_ms=%.3f iallreduce_ms=%.3f irs_iag_ms=%.3f bus_GBps=%.2f %.2f %.2f %.2f\n",
             sizes[k], 1e3 * t[0], 1e3 * t[1], 1e3 * t[2], 1e3 * t[3], t[0] > 0 ? bus / t[0] / 1e9 : 0,
             t[1] > 0 ? bus / t[1] / 1e9 : 0, t[2] > 0 ? bus / t[2] / 1e9 : 0, t[3] > 0 ? bus / t[3] / 1e9 : 0);
  }
  dist_finalize(&d);
  return 0;
}
