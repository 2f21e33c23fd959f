/* bench_eval.c: `[mpirun -np P] proxygml bench-eval [--n N] [--d D]
 * [--classes C] [--threads T] [--restarts R] [--kmeans-iter I] [--interleaved]
 * [--qblock Q] [--rblock R] [--scan S]`: the evaluation at scale on a
 * synthetic retrieval set (n unit vectors in D dimensions, C equal classes,
 * each a noisy copy of its class centre, so that a query's R same-class
 * items are about n / C and MAP@R needs that depth of neighbours).
 * Every rank holds all n embeddings and ranks the neighbours of its own
 * queries, as the evaluator does; the partial sums are added over ranks.
 * Timed, in turns chunk by chunk: the blocked kNN with the metrics
 * (metrics_sums_add_range) and the same sgemm tiles alone (the kNN's GEMM
 * time: its blocking, its queries, its threads over query blocks); the kNN's
 * phases (metrics_knn_times, thread seconds); and,
 * on rank 0, k-means for NMI (C clusters, R restarts). Reported by rank 0:
 * the slowest rank's times, the metrics, the kNN workspace and the peak RSS
 * of each process (getrusage), against n x D and the n x n floats that are
 * never formed. Exit 0, or 2 on bad arguments. */
#include "tools.h"

#include "common.h"
#include "dist.h"
#include "metrics.h"
#include "rng.h"
#include "sampler.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double peak_rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;   /* Linux: KiB */
}

/* queries [qa, qa + nq) against all n through sgemm alone, with the kNN's
 * blocking and threads (a query block per thread, serial sgemm inside the
 * region, as metrics_knn runs): the kNN's GEMM time */
static void gemm_tiles(const MetricsKnn *w, const float *emb, int n, int D, int qa, int nq) {
  const int nblk = (nq + w->qblock - 1) / w->qblock;
#pragma omp parallel for schedule(dynamic, 1) num_threads(w->nthreads) if (nblk > 1)
  for (int b = 0; b < nblk; b++) {
    const int q = qa + b * w->qblock, bq = qa + nq - q < w->qblock ? qa + nq - q : w->qblock;
    float *tile = w->tile + (size_t)omp_get_thread_num() * w->qblock * w->tilew;
    for (int ra = 0; ra < n; ra += w->rblock) {
      const int nr = n - ra < w->rblock ? n - ra : w->rblock;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, nr, D, 1.0f, emb + (size_t)q * D, D,
                  emb + (size_t)ra * D, D, 0.0f, tile, nr);
    }
  }
}

static int parse_int(const char *s, int lo, int hi, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == 0 || *end || v < lo || v > hi) return -1;
  *out = (int)v;
  return 0;
}

int tool_bench_eval(int argc, char **argv) {
  Dist d;
  dist_init(&d, &argc, &argv);
  int n = 70000, D = 128, C = 10, threads = 0, restarts = 1, kiter = 300, interleaved = 0, qblock = 0, rblock = 0, rc = 0, help = 0;
  int scan = METRICS_KNN_AVX512;   /* the best the CPU has, at most this */
  static const char *scan_names[] = {"portable", "avx2", "avx512"};
  for (int i = 1; i < argc && !rc && !help; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) help = 1;
    else if (!strcmp(a, "--n") && v) rc = parse_int(argv[++i], 3, 1 << 26, &n) ? err_set("--n: an integer in [3, 2^26]") : 0;
    else if (!strcmp(a, "--d") && v) rc = parse_int(argv[++i], 1, 4096, &D) ? err_set("--d: an integer in [1, 4096]") : 0;
    else if (!strcmp(a, "--interleaved")) interleaved = 1;
    else if (!strcmp(a, "--classes") && v)
      rc = parse_int(argv[++i], 2, 1 << 20, &C) ? err_set("--classes: an integer in [2, 2^20]") : 0;
    else if (!strcmp(a, "--threads") && v)
      rc = parse_int(argv[++i], 1, 256, &threads) ? err_set("--threads: an integer in [1, 256]") : 0;
    else if (!strcmp(a, "--kmeans-iter") && v)
      rc = parse_int(argv[++i], 1, 100000, &kiter) ? err_set("--kmeans-iter: an integer in [1, 100000]") : 0;
    else if (!strcmp(a, "--qblock") && v)
      rc = parse_int(argv[++i], 0, 1 << 16, &qblock) ? err_set("--qblock: an integer in [0, 65536] (0: default)") : 0;
    else if (!strcmp(a, "--rblock") && v)
      rc = parse_int(argv[++i], 0, 1 << 20, &rblock) ? err_set("--rblock: an integer in [0, 2^20] (0: default)") : 0;
    else if (!strcmp(a, "--scan") && v) {
      for (scan = METRICS_KNN_AVX512; scan >= 0 && strcmp(argv[i + 1], scan_names[scan]); scan--) {}
      rc = scan < 0 ? err_set("--scan: portable, avx2 or avx512, not '%s'", argv[i + 1]) : 0;
      i++;
    } else if (!strcmp(a, "--restarts") && v)
      rc = parse_int(argv[++i], 0, 100, &restarts) ? err_set("--restarts: an integer in [0, 100] (0: no k-means)") : 0;
    else rc = err_set("unknown argument '%s' (see --help)", a);
  }
  if (!rc && !help && C > n / 2) rc = err_set("--classes %d: at most n / 2 = %d (every class needs two items)", C, n / 2);
  if (help && d.rank == 0)
    printf("usage: [mpirun -np P] proxygml bench-eval [--n 70000] [--d 128] [--classes 10] [--threads T] [--restarts 1]\n"
           "                                          [--kmeans-iter I] [--interleaved] [--qblock Q] [--rblock R]\n"
           "                                          [--scan portable|avx2|avx512]\n"
           "Times the blocked exact kNN behind Recall@k, MAP@R and R-precision on n synthetic unit\n"
           "vectors (queries split over the ranks), the same sgemm tiles alone, and k-means for NMI\n"
           "(rank 0, --restarts seedings; 0 skips it). Reports times, metrics and peak memory.\n");
  if (rc && d.rank == 0) fprintf(stderr, "bench-eval: %s\n", err_msg());
  if (rc || help) {   /* every rank parsed the same arguments: the same exit */
    dist_finalize(&d);
    return rc ? 2 : 0;
  }
  threads = dist_threads(&d, threads);

  /* the data, the same on every rank (the evaluator gathers it): centre of
   * class y plus noise, normalised; labels in blocks of n / C, or with
   * --interleaved item i in class i mod C (as a shuffled test split: a
   * query's neighbours spread over every reference block) */
  double rss0 = peak_rss_mib();
  float *emb = xmalloc_f32((size_t)n * D), *cent = xmalloc_f32((size_t)C * D);   /* n x D, C x D */
  int *labels = xmalloc((size_t)n * sizeof *labels);                             /* n */
  Rng rng;
  rng_init(&rng, 1);
  for (size_t i = 0; i < (size_t)C * D; i++) cent[i] = (float)rng_normal(&rng);
  const float noise = 2.0f;   /* classes overlap: MAP@R well below 1, as on trained embeddings */
  for (int i = 0; i < n; i++) {
    labels[i] = interleaved ? i % C : (int)((int64_t)i * C / n);
    float *e = emb + (size_t)i * D;
    double ss = 0;
    for (int k = 0; k < D; k++) {
      e[k] = cent[(size_t)labels[i] * D + k] + noise * (float)rng_normal(&rng);
      ss += (double)e[k] * e[k];
    }
    float inv = (float)(1.0 / sqrt(ss));
    for (int k = 0; k < D; k++) e[k] *= inv;
  }
  int64_t q0, nq;
  sampler_shard(n, d.rank, d.size, &q0, &nq);
  const int ks[] = {1, 2, 4, 8};
  const int nk = 4;

  /* the retrieval metrics: kNN + metrics of this rank's queries */
  MetricsEval ev;
  metrics_eval_init(&ev, labels, n, D, ks, nk, qblock, rblock);
  if (ev.w.vector > scan) ev.w.vector = scan;   /* --scan: a path the CPU has, at most the one asked for */
  const MetricsKnn *w = &ev.w;
  const size_t T = (size_t)w->nthreads, Q = T * w->qblock;
  const size_t work = Q * w->tilew * sizeof(float) + Q * w->cap * 8 + T * 2 * w->scw * 8 +
                      T * METRICS_KNN_RADIX_TABLE * sizeof(uint32_t) +
                      Q * ev.depth * sizeof(int) + (size_t)n * sizeof(int);
  MetricsSums s;
  metrics_sums_reset(&s, ks, nk);
  DIST_CHECK(MPI_Barrier(d.comm));
  /* chunk by chunk of Q queries, the kNN and the same tiles through sgemm
   * alone, in turns: a neighbour that takes a core slows both alike */
  double t_knn = 0, t_gemm = 0;
  for (int64_t qc = q0, c = 0; qc < q0 + nq; qc += (int64_t)Q, c++) {
    const int nc = (int)(q0 + nq - qc < (int64_t)Q ? q0 + nq - qc : (int64_t)Q);
    for (int turn = 0; turn < 2; turn++) {
      double t0 = now_sec();
      if ((turn ^ (int)(c & 1)) == 0) {
        metrics_sums_add_range(&s, &ev, emb, labels, (int)qc, (int)qc + nc);
        t_knn += now_sec() - t0;
      } else {
        gemm_tiles(w, emb, n, D, (int)qc, nc);
        t_gemm += now_sec() - t0;
      }
    }
  }
  dist_allreduce_sum_f64(&d, s.hits, METRICS_NSUM);
  double rss_knn = peak_rss_mib(), ph[METRICS_KNN_NPHASE];
  long refills;
  metrics_knn_times(ph, &refills, w);
  const int depth = ev.depth, qb = w->qblock, rb = w->rblock, nthr = w->nthreads, used = w->vector;
  metrics_eval_free(&ev);
  double tt[2] = {t_knn, t_gemm};
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, tt, 2, MPI_DOUBLE, MPI_MAX, d.comm));
  Metrics m;
  metrics_finish(&m, &s);

  /* k-means on rank 0 (the evaluator's layout), the others wait */
  double t_km = 0, nmi = NAN, rss_km = 0;
  if (restarts > 0) {
    if (d.rank == 0) {
      int *assign = xmalloc((size_t)n * sizeof *assign);   /* n */
      float *cc = xmalloc_f32((size_t)C * D);               /* C x D */
      double inertia;
      MetricsKmeansOpts ko = metrics_kmeans_defaults();
      ko.restarts = restarts;
      ko.max_iter = kiter;
      double t0 = now_sec();
      metrics_kmeans(assign, cc, &inertia, emb, n, D, C, &ko);
      t_km = now_sec() - t0;
      nmi = metrics_nmi(labels, assign, n);
      rss_km = peak_rss_mib();
      free(assign);
      free(cc);
    }
    int watch = dist_set_timeout(&d, 0);   /* k-means may outlast the watchdog */
    DIST_CHECK(MPI_Barrier(d.comm));
    dist_set_timeout(&d, watch);
  }
  double rss = peak_rss_mib(), rmax[2] = {rss_knn, rss};
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, rmax, 2, MPI_DOUBLE, MPI_MAX, d.comm));
  if (d.rank == 0) {
    const double flops = 2.0 * n * (double)n * D;
    printf("n=%d D=%d classes=%d (%s) ranks=%d threads=%d depth=%d qblock=%d rblock=%d scan=%s\n", n, D, C,
           interleaved ? "interleaved" : "blocks", d.size, nthr, depth, qb, rb, scan_names[used]);
    printf("knn_s=%.3f gemm_s=%.3f knn_over_gemm=%.2f gemm_gflops=%.1f\n", tt[0], tt[1], tt[0] / tt[1],
           flops / d.size / tt[1] * 1e-9);
    printf("rank0_phases_s (thread seconds): sample=%.3f gemm=%.3f scan=%.3f finish=%.3f refilled_queries=%ld\n",
           ph[METRICS_KNN_SAMPLE], ph[METRICS_KNN_GEMM], ph[METRICS_KNN_SCAN], ph[METRICS_KNN_FINISH], refills);
    printf("recall@1=%.4f recall@8=%.4f map_r=%.4f r_precision=%.4f\n", m.recall[0], m.recall[3], m.map_r,
           m.r_precision);
    printf("kmeans_s=%.3f restarts=%d max_iter=%d nmi=%.4f\n", t_km, restarts, kiter, nmi);
    printf("memory: embeddings_mib=%.1f knn_workspace_mib=%.1f peak_rss_mib_before=%.1f after_knn=%.1f "
           "after_kmeans=%.1f (max over ranks %.1f, %.1f) nxn_floats_mib=%.0f\n",
           (double)n * D * 4 / 1048576, work / 1048576.0, rss0, rss_knn, rss_km, rmax[0], rmax[1],
           (double)n * n * 4 / 1048576);
  }
  free(emb); free(cent); free(labels);
  dist_finalize(&d);
  return 0;
}
