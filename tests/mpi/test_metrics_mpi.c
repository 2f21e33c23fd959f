/* test_metrics_mpi.c: under mpirun (np = 1, 2, 3), the retrieval metrics
 * summed over ranks that each take a range of queries agree with the
 * single-process result and with the golden metrics file, for identical
 * embeddings. Prints one verdict line per quantity; the exit status is the
 * allreduced verdict.
 *
 * What is guaranteed: Recall@k sums hit counts, integers that a double holds
 * exactly in any order, so it is compared for equality. MAP@R and R-precision
 * sum n per-query values in [0, 1]: regrouping that double sum over ranks
 * moves it by at most 2 n u sum|t| <= 2 n^2 u (u = 2^-53), so the mean moves
 * by at most 2 n u = 2.2e-13 for n = 500. */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"
#include "dist.h"
#include "h5io.h"
#include "metrics.h"

int main(int argc, char **argv) {
  DIST_CHECK(MPI_Init(&argc, &argv));
  int rank, size;
  DIST_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  DIST_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.h5", getenv("PROXYGML_TESTDATA") ? getenv("PROXYGML_TESTDATA") : ".");
  hid_t f;
  CHECK(h5io_open(path, &f) == 0, "%s", err_msg());
  int nd; int64_t dims[H5IO_MAXDIM];
  CHECK(h5io_shape(f, "embeddings", &nd, dims) == 0, "%s", err_msg());
  int n = (int)dims[0], D = (int)dims[1];
  float *emb = xmalloc_f32((size_t)n * D);
  int *labels = xmalloc((size_t)n * sizeof(int)), ks[4];
  CHECK(h5io_read(f, "embeddings", H5T_NATIVE_FLOAT, emb, (size_t)n * D) == 0, "%s", err_msg());
  CHECK(h5io_read(f, "labels", H5T_NATIVE_INT, labels, (size_t)n) == 0, "%s", err_msg());
  CHECK(h5io_read(f, "ks", H5T_NATIVE_INT, ks, 4) == 0, "%s", err_msg());
  double want_rk[4], want_map, want_rp;
  CHECK(h5io_read(f, "recall_at_k", H5T_NATIVE_DOUBLE, want_rk, 4) == 0, "%s", err_msg());
  CHECK(h5io_read(f, "map_at_r", H5T_NATIVE_DOUBLE, &want_map, 1) == 0, "%s", err_msg());
  CHECK(h5io_read(f, "r_precision", H5T_NATIVE_DOUBLE, &want_rp, 1) == 0, "%s", err_msg());
  H5Fclose(f);

  /* distributed: each rank its query range, partial sums allreduced */
  MetricsEval ev;
  metrics_eval_init(&ev, labels, n, D, ks, 4, 64, 128);   /* small blocks: several tiles per rank */
  MetricsSums s;
  metrics_sums_reset(&s, ks, 4);
  int q0 = (int)((long)n * rank / size), q1 = (int)((long)n * (rank + 1) / size);
  metrics_sums_add_range(&s, &ev, emb, labels, q0, q1);
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, s.hits, METRICS_NSUM, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD));
  Metrics dist, whole;
  metrics_finish(&dist, &s);
  metrics_evaluate(&whole, emb, labels, n, D, ks, 4, NULL);

  int ok = 1;
  for (int i = 0; i < 4; i++) {
    int good = fabs(dist.recall[i] - want_rk[i]) < 1e-12 && dist.recall[i] == whole.recall[i];
    if (rank == 0) printf("%s Recall@%d distributed %.6f single %.6f golden %.6f\n", good ? "ok  " : "FAIL", ks[i], dist.recall[i], whole.recall[i], want_rk[i]);
    ok &= good;
  }
  const double regroup = 2.0 * n * 0x1p-53;   /* the bound above */
  int good = fabs(dist.map_r - want_map) < 1e-12 && fabs(dist.map_r - whole.map_r) <= regroup;
  if (rank == 0) printf("%s MAP@R distributed %.15f golden %.15f\n", good ? "ok  " : "FAIL", dist.map_r, want_map);
  ok &= good;
  good = fabs(dist.r_precision - want_rp) < 1e-12 && fabs(dist.r_precision - whole.r_precision) <= regroup;
  if (rank == 0) printf("%s R-precision distributed %.15f golden %.15f\n", good ? "ok  " : "FAIL", dist.r_precision, want_rp);
  ok &= good;
  int all = 0;
  DIST_CHECK(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (rank == 0) printf("%s on %d ranks\n", all ? "passed" : "FAILED", size);
  metrics_eval_free(&ev);
  free(emb); free(labels);
  DIST_CHECK(MPI_Finalize());
  return all ? 0 : 1;
}
