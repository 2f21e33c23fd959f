/* trainer.c: the training run (include/trainer.h): setup with collective
 * error handling, the loop, checkpoints with exact resume, preemption, the
 * run file. The batch exchange is the sampler's, the evaluation the
 * evaluator's, the tables the recorder's. */
#include "trainer.h"

#include "cfg.h"
#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "evaluator.h"
#include "fault.h"
#include "h5io.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "recorder.h"
#include "reducer.h"
#include "rundir.h"
#include "rng.h"
#include "runfile.h"
#include "sampler.h"

#include <math.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* loss, loss_cls, loss_reg and the stop request are summed with the
 * gradients: every rank learns the same values at the same step */
enum { LOSS_SLOTS = 4 };

/* SIGUSR1 / SIGTERM: finish the step, checkpoint, exit TRAINER_EXIT_REQUEUE */
static volatile sig_atomic_t g_stop_signal;
static void on_stop_signal(int sig) { g_stop_signal = sig; }

void trainer_catch_signals(void) {
  signal(SIGUSR1, on_stop_signal);
  signal(SIGTERM, on_stop_signal);
}
enum { PHASE_DATA, PHASE_FORWARD, PHASE_LOSS, PHASE_BACKWARD, PHASE_ALLREDUCE, PHASE_OPTIM, PHASE_EVAL, NPHASE };
static const char *const PHASE_NAMES[NPHASE] = {"data", "forward", "loss", "backward", "allreduce", "optimizer",
                                                "evaluation"};

typedef struct {
  Dist *d;
  Config cfg;
  const TrainerArgs *args;
  char run_path[CFG_PATH_MAX + 16];
  char start_time[32], data_abs[CFG_PATH_MAX + 16], cwd[CFG_PATH_MAX];
  double session_start, wall_before;   /* now_sec() at start; wall seconds of earlier sessions */
  int complete_epochs;         /* epochs of a complete DIR/run.h5 being resumed, else -1 */
  /* sizes */
  int C, N, M, K, D;
  int G, B;                    /* global and per-rank batch */
  int64_t steps_per_epoch;
  /* data: this rank's shards, all labels */
  DatasetInfo tr_info, te_info;
  DatasetSplit tr, te;
  int32_t *tr_labels;          /* n_train */
  int *te_labels;              /* n_test */
  /* model, loss, optimizer over one flat block [backbone | proxies] */
  Model model;
  Loss loss;
  Adam opt;                    /* this rank's pieces of the block (include/reducer.h) */
  Reducer red;
  size_t n_backbone, n_params;
  float *params, *grads;       /* n_params each */
  /* shard_proxies: this rank holds the proxies [j0, j0 + Mp) only, so its
   * block is [backbone | its slab]; the whole one (n_global) exists on disk */
  int sharded, j0, Mp;
  size_t n_global, slab_off;   /* the whole block's length, where this rank's slab starts in it */
  float stats[LOSS_SLOTS];     /* summed over the ranks with the gradients */
  float *proxies, *dproxies;   /* views: M x D */
  int group_body, group_head, group_proxy;
  /* one step */
  Sampler sampler;
  float *x;                    /* B x row_size */
  int32_t *y;                  /* B */
  float *dx;                   /* B x D */
  /* evaluation and record */
  Evaluator eval;
  int64_t *sel_slab;           /* sharded: Mp, how many test subgraphs hold each of this rank's proxies */
  int evaluated;               /* eval holds an evaluation of this session */
  Recorder rec;
  double phase[NPHASE];        /* seconds in the current epoch */
  float *grad_dump;            /* dump_grads x n_params on rank 0: the reduced gradients (diagnostics) */
  float dump_margin[1000];     /* the least top-K margin over the global batch of each dumped step */
  int grads_dumped;
  int start_epoch;             /* where the loop starts (after a resume) */
  int64_t start_step_in_epoch;
  Fault fault;                 /* test-only (include/fault.h) */
  int64_t step;
  int64_t steps_here;          /* steps of this session */
  double comm_volume;          /* their collectives' volume (include/proxyshard.h's convention), bytes */
  int epochs_done;
  double train_seconds;
} Trainer;

/* ------------------------------------------------------------ collective errors */

/* Every rank calls this with its local verdict. If any rank failed, the
 * lowest failing rank prints its one-line reason and every rank returns 0. */
static int agree(Trainer *T, int ok) { return dist_verdict(T->d, ok, "proxygml train"); }

/* ------------------------------------------------------------ setup */

_Static_assert((int)DIST_EXIT_HUNG == (int)TRAINER_EXIT_FAILED, "the watchdog exits with 'the training failed'");
_Static_assert((int)CFG_LOSS_PROXYGML == (int)LOSS_PROXYGML && (int)CFG_LOSS_PROXYNCA == (int)LOSS_PROXYNCA &&
                   (int)CFG_LOSS_PROXYANCHOR == (int)LOSS_PROXYANCHOR && (int)CFG_LOSS_SOFTTRIPLE == (int)LOSS_SOFTTRIPLE &&
                   (int)CFG_LOSS_NORMSOFTMAX == (int)LOSS_NORMSOFTMAX, "the config's losses are loss.h's, in order");

static double peak_rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;   /* KiB on Linux */
}


int trainer_check_sizes(const Config *c, const DatasetInfo *tr, const DatasetInfo *te, int ranks, TrainerSizes *s) {
  memset(s, 0, sizeof *s);
  if (tr->kind != te->kind || tr->row_size != te->row_size)
    return err_set("%s: train and test rows differ in kind or size", c->data);
  s->C = c->C > 0 ? c->C : tr->label_max + 1;
  if (tr->label_max >= s->C)
    return err_set("config key 'C': the training split has label %d, but C = %d", tr->label_max, s->C);
  s->loss = c->loss;
  s->N = cfg_proxies_per_class(c);
  if ((int64_t)s->C * s->N > INT_MAX)
    return err_set("config key '%s': C*%d = %d*%d proxies is out of range", c->loss == CFG_LOSS_PROXYGML ? "N" :
                   "softtriple_centers", s->N, s->C, s->N);
  s->M = s->C * s->N;
  s->D = c->embed_dim;
  /* the baselines keep no subgraph: the run file's test subgraphs hold each sample's N nearest proxies */
  if (c->loss != CFG_LOSS_PROXYGML) s->K = s->N;
  else if (cfg_resolve_k(c, s->C, &s->K) != 0) return -1;
  s->G = c->batch;
  if (s->G > tr->n)
    return err_set("config key 'batch': %d is larger than the training split (%lld rows)", s->G, (long long)tr->n);
  if (ranks > 0 && s->G % ranks != 0)
    return err_set("config key 'batch': the global batch %d does not divide over %d ranks", s->G, ranks);
  if (c->dump_grads > 0 && (int64_t)s->M * s->D > INT_MAX)
    return err_set("config key 'dump_grads': M x D = %lld proxy values exceed one MPI message; dump smaller runs",
                   (long long)s->M * s->D);
  if (c->shard_proxies && ranks > s->C)
    return err_set("config key 'shard_proxies': %d classes cannot be sharded over %d ranks (one class or more each)",
                   s->C, ranks);
  if (te->n < 2) return err_set("%s: the test split needs at least 2 rows for retrieval", c->data);
  if (ranks > 0 && te->n < ranks) return err_set("%s: fewer test rows than ranks", c->data);
  if (c->recall_ks.n < 1) return err_set("config key 'recall_ks': give at least one k");
  if (c->recall_ks.n > METRICS_MAXK) return err_set("config key 'recall_ks': at most %d values", METRICS_MAXK);
  /* a query ranks the other n_test - 1 rows: a larger k would always count as a hit */
  int kmax = c->recall_ks.v[c->recall_ks.n - 1];
  if (kmax > te->n - 1)
    return err_set("config key 'recall_ks': k = %d, but a query of the test split has only %lld other rows to "
                   "retrieve (R@%d would be 1.0 by construction)", kmax, (long long)te->n - 1, kmax);
  const char *arch = cfg_arch_name(c->arch);
  if (c->arch == CFG_ARCH_CNN && tr->kind == DATASET_FEATURES)
    return err_set("config key 'arch': cnn needs images, but %s holds feature vectors (%d values per row): use mlp "
                   "or linear", c->data, tr->F);
  int in_c = tr->kind == DATASET_IMAGES ? tr->channels : tr->F;
  int in_h = tr->kind == DATASET_IMAGES ? tr->H : 1, in_w = tr->kind == DATASET_IMAGES ? tr->W : 1;
  if (model_check(arch, in_c, in_h, in_w, s->D) != 0)
    return err_set("config key 'arch': %s rows (%d x %d x %d): %s", c->data, in_c, in_h, in_w, err_msg());
  s->steps_per_epoch = tr->n / s->G;   /* the last partial batch is dropped: every step has G samples */
  if (c->max_steps_per_epoch > 0 && c->max_steps_per_epoch < s->steps_per_epoch)
    s->steps_per_epoch = c->max_steps_per_epoch;
  return 0;
}

int trainer_sizes_warning(const TrainerSizes *s, char *buf, size_t cap) {
  if (s->loss != CFG_LOSS_PROXYGML || s->K > s->N) return 0;
  /* the N proxies of the sample's own class enter every subgraph first */
  snprintf(buf, cap, "K = %d <= N = %d: every subgraph holds only the sample's own class, so the classification "
           "loss is constant and the network learns nothing from it (choose K > N)", s->K, s->N);
  return 1;
}

/* the dataset's splits and the sizes that follow from them (same on every rank) */
static int check_sizes(Trainer *T) {
  const Config *c = &T->cfg;
  if (dataset_info(c->data, "train", &T->tr_info) != 0 || dataset_info(c->data, "test", &T->te_info) != 0) return -1;
  TrainerSizes s;
  if (trainer_check_sizes(c, &T->tr_info, &T->te_info, T->d->size, &s) != 0) return -1;
  T->C = s.C; T->N = s.N; T->M = s.M; T->K = s.K; T->D = s.D; T->G = s.G;
  T->B = T->G / T->d->size;
  T->steps_per_epoch = s.steps_per_epoch;
  return 0;
}

/* this rank's shards, all labels; local failures (I/O) are agreed on by the caller */
static int load_data(Trainer *T) {
  const char *path = T->cfg.data;
  if (fault_at(&T->fault, FAULT_IO, T->d->rank, 0)) return err_set("%s: injected I/O fault (PROXYGML_INJECT_FAULT)", path);
  int r = T->d->rank, P = T->d->size;
  int64_t n = T->tr_info.n, nt = T->te_info.n, a, cnt;
  sampler_shard(n, r, P, &a, &cnt);
  if (dataset_split_read(&T->tr, path, "train", a, cnt) != 0) return -1;
  sampler_shard(nt, r, P, &a, &cnt);
  if (dataset_split_read(&T->te, path, "test", a, cnt) != 0) return -1;
  T->tr_labels = xmalloc((size_t)n * sizeof(int32_t));
  if (dataset_labels_read(path, "train", T->tr_labels, n) != 0) return -1;
  T->te_labels = xmalloc((size_t)nt * sizeof(int));
  if (dataset_labels_read(path, "test", T->te_labels, nt) != 0) return -1;
  return 0;
}

/* init_from: a run file's flat model/parameters, or tensors by name under
 * params/ (a PyTorch state_dict plus params/proxies, M x D), nothing else */
static int load_init(Trainer *T) {
  const char *path = T->cfg.init_from;
  if (!path[0]) return 0;
  hid_t f;
  if (h5io_open(path, &f) != 0) return err_set("init_from %s", err_msg());
  int rc = 0, nd;
  int64_t dims[H5IO_MAXDIM];
  if (h5io_has(f, "model/parameters")) {   /* a run file: the block as it was written */
    if (h5io_shape(f, "model/parameters", &nd, dims) != 0) rc = -1;
    else if (nd != 1 || dims[0] != (int64_t)T->n_global)
      rc = err_set("model/parameters holds %lld values, this %s with M = %d, D = %d has %zu",
                   (long long)(nd == 1 ? dims[0] : -1), cfg_arch_name(T->cfg.arch), T->M, T->D, T->n_global);
    else if (!T->sharded) rc = h5io_read(f, "model/parameters", H5T_NATIVE_FLOAT, T->params, T->n_params);
    else if ((rc = h5io_read_rows(f, "model/parameters", H5T_NATIVE_FLOAT, 0, (int64_t)T->n_backbone, T->params)) == 0)
      rc = h5io_read_rows(f, "model/parameters", H5T_NATIVE_FLOAT, (int64_t)T->slab_off,
                          (int64_t)(T->n_params - T->n_backbone), T->proxies);
    for (size_t i = 0; rc == 0 && i < T->n_params; i++)
      if (!isfinite(T->params[i])) rc = err_set("model/parameters holds a non-finite value at element %zu", i);
  } else if (h5io_has(f, "params")) {
    rc = model_params_read(&T->model, f, "params");
    if (rc == 0) rc = h5io_shape(f, "params/proxies", &nd, dims);
    if (rc == 0 && (nd != 2 || dims[0] != T->M || dims[1] != T->D))
      rc = err_set("params/proxies must be M x D = %d x %d", T->M, T->D);
    if (rc == 0) rc = h5io_read_rows(f, "params/proxies", H5T_NATIVE_FLOAT, T->j0, T->Mp, T->proxies);
    for (size_t i = 0; rc == 0 && i < (size_t)T->Mp * T->D; i++)
      if (!isfinite(T->proxies[i])) rc = err_set("params/proxies holds a non-finite value at element %zu", i);
    /* a tensor the model does not have: most likely another architecture's file */
    H5G_info_t info = {0};
    hid_t g = rc == 0 ? H5Gopen2(f, "params", H5P_DEFAULT) : -1;
    /* unreachable in tests: model_params_read has just read every tensor of this group */
    if (rc == 0 && (g < 0 || H5Gget_info(g, &info) < 0)) rc = err_set("'params' is not a readable group");
    for (hsize_t i = 0; rc == 0 && i < info.nlinks; i++) {
      char name[256] = "";
      /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk
       * fault) */
      if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT) < 0)
        rc = err_set("cannot list the tensors of 'params'");
      else if (strcmp(name, "proxies") && model_param_find(&T->model, name) < 0)
        rc = err_set("params/%s is not a tensor of the %s model", name, cfg_arch_name(T->cfg.arch));
    }
    if (g >= 0) H5Gclose(g);
  } else {
    rc = err_set("neither model/parameters (a run file) nor params/ (tensors by name)");
  }
  H5Fclose(f);
  return rc ? err_set("init_from %s: %s", path, err_msg()) : 0;
}

/* the baselines' keys (include/loss.h) */
static BaselineParams loss_baseline_params(const Config *c) {
  return (BaselineParams){.nca_scale = c->proxynca_scale, .pa_margin = c->proxyanchor_margin,
                          .pa_alpha = c->proxyanchor_alpha, .st_centers = c->softtriple_centers,
                          .st_lambda = c->softtriple_lambda, .st_gamma = c->softtriple_gamma,
                          .st_tau = c->softtriple_tau, .st_margin = c->softtriple_margin,
                          .ns_temperature = c->normsoftmax_temperature};
}

/* Proxy-Anchor's batch sums within the forward (docs/baselines.md 6): every rank, every step */
static void reduce_over_ranks(void *d, double *buf, size_t n) { dist_allreduce_sum_f64(d, buf, n); }

/* the model's backward pass reports the gradients it has finished */
static void grads_ready(void *red, size_t lo) { reducer_ready(red, lo); }

static void build(Trainer *T) {
  const Config *c = &T->cfg;
  int in_c = T->tr_info.kind == DATASET_IMAGES ? T->tr_info.channels : T->tr_info.F;
  int in_h = T->tr_info.kind == DATASET_IMAGES ? T->tr_info.H : 1, in_w = T->tr_info.kind == DATASET_IMAGES ? T->tr_info.W : 1;
  const int eval_chunk = T->B > 256 ? T->B : 256;   /* the model's largest batch: training or evaluation */
  /* unreachable in tests: trainer_check_sizes has run model_check on the same arguments */
  CHECK(model_init(&T->model, cfg_arch_name(c->arch), in_c, in_h, in_w, T->D, eval_chunk) == 0, "%s", err_msg());
  T->n_backbone = model_num_params(&T->model);
  T->sharded = (int)c->shard_proxies;
  int c0 = 0, c1 = T->C;
  if (T->sharded) proxyshard_classes(T->C, T->d->size, T->d->rank, &c0, &c1);
  T->j0 = c0 * T->N;
  T->Mp = (c1 - c0) * T->N;
  T->n_params = T->n_backbone + (size_t)T->Mp * T->D;
  T->n_global = T->n_backbone + (size_t)T->M * T->D;
  T->slab_off = T->n_backbone + (size_t)T->j0 * T->D;
  T->params = xmalloc_f32(T->n_params);
  T->grads = xmalloc_f32(T->n_params);
  T->proxies = T->params + T->n_backbone;
  T->dproxies = T->grads + T->n_backbone;
  model_bind(&T->model, T->params, T->grads);
  /* initialisation in PyTorch's order: the network, then the proxies
   * (kaiming_uniform(a=sqrt 5) of a D x M tensor: U(-1/sqrt(M), 1/sqrt(M))) */
  Rng rng;
  rng_init(&rng, (uint64_t)c->seed);
  model_init_params(&T->model, &rng);
  float bound = 1.0f / sqrtf((float)T->M);
  for (int d = 0; d < T->D; d++)   /* drawn in the D x M order of the reference tensor; sharded, each rank keeps its rows */
    for (int j = 0; j < T->M; j++) {
      float u = bound * (2 * rng_uniform(&rng) - 1);
      if (j >= T->j0 && j < T->j0 + T->Mp) T->proxies[(size_t)(j - T->j0) * T->D + d] = u;
    }

  LossParams lp = {.kind = (LossKind)c->loss, .N = T->N, .K = T->K, .lambda = c->lambda, .scale = c->scale,
                   .reg_sampled = (int)c->reg_sampled, .base = loss_baseline_params(c)};
  if (T->sharded) loss_init_sharded(&T->loss, &lp, T->d, T->G, T->D, T->C);
  else loss_init(&T->loss, &lp, T->B, T->D, T->C);
  loss_set_split(&T->loss, T->G, T->d->rank, T->d->size);   /* the global divisor, each rank its per-proxy slice */
  loss_set_reduce(&T->loss, reduce_over_ranks, T->d);

  adam_init(&T->opt, T->n_params, c->beta1, c->beta2, c->eps, c->weight_decay);
  size_t head_off, head_cnt;
  model_embedding_range(&T->model, &head_off, &head_cnt);
  T->group_body = adam_add_group(&T->opt, 0, head_off, c->lr);
  T->group_head = adam_add_group(&T->opt, head_off, head_off + head_cnt, c->lr);
  T->group_proxy = adam_add_group(&T->opt, T->n_backbone, T->n_params, c->proxy_lr);
  size_t bucket = (size_t)(c->bucket_mib * 1048576.0 / sizeof(float));
  /* sharded proxies are no replica: only the network is reduced, the slab is this rank's own */
  reducer_init(&T->red, T->d, T->sharded ? T->n_backbone : T->n_params, T->n_backbone, bucket ? bucket : 1,
               c->shard_optimizer, c->overlap);
  if (T->sharded) reducer_set_tail(&T->red, T->n_params - T->n_backbone);
  T->dproxies = T->sharded ? reducer_tail(&T->red, T->grads) : T->grads + T->n_backbone;
  adam_shard(&T->opt, T->red.own, T->red.nown);
  T->model.grads_ready = grads_ready;
  T->model.grads_ready_ctx = &T->red;

  sampler_init(&T->sampler, T->d, &T->tr, T->tr_labels, T->G);
  T->x = xmalloc_f32((size_t)T->B * T->tr_info.row_size);
  T->y = xmalloc((size_t)T->B * sizeof(int32_t));
  T->dx = xmalloc_f32((size_t)T->B * T->D);
  /* sharded, the inference subgraphs are the sharded loss's (record_eval) */
  evaluator_init(&T->eval, T->d, &T->te, T->te_labels, T->D, T->sharded ? 0 : T->M, T->K, c->recall_ks.v,
                 c->recall_ks.n, eval_chunk);
  if (T->sharded) T->sel_slab = xcalloc((size_t)T->Mp, sizeof(int64_t));
  T->eval.nmi_max_clusters = (int)c->nmi_max_clusters;
  recorder_init(&T->rec, c->recall_ks.v, c->recall_ks.n, T->steps_per_epoch * c->epochs, PHASE_NAMES, NPHASE);
  if (c->dump_grads > 0 && T->d->rank == 0) T->grad_dump = xmalloc_f32((size_t)c->dump_grads * T->n_global);
  T->start_epoch = 1;
}

static void trainer_free(Trainer *T) {
  model_free(&T->model);
  loss_free(&T->loss);
  adam_free(&T->opt);
  reducer_free(&T->red);
  sampler_free(&T->sampler);
  evaluator_free(&T->eval);
  recorder_free(&T->rec);
  dataset_split_free(&T->tr);
  dataset_split_free(&T->te);
  void *bufs[] = {T->params, T->grads, T->tr_labels, T->te_labels, T->x, T->y, T->dx, T->grad_dump, T->sel_slab};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* ------------------------------------------------------------ one step */

/* sharded proxies: every rank's slab of `mine` (Mp x D) into all (M x D) on rank 0 */
static void gather_slabs(Trainer *T, const float *mine, float *all) {
  const int P = T->d->size;
  int *counts = xmalloc(2 * (size_t)P * sizeof(int)), *displs = counts + P;
  for (int r = 0; r < P; r++) {
    int a, b;
    proxyshard_classes(T->C, P, r, &a, &b);
    counts[r] = (b - a) * T->N * T->D;
    displs[r] = a * T->N * T->D;
  }
  DIST_CHECK(MPI_Gatherv(mine, counts[T->d->rank], MPI_FLOAT, all, counts, displs, MPI_FLOAT, 0, T->d->comm));
  free(counts);
}

/* dump_grads: keep the reduced gradient, and how near the step's subgraphs
 * were to a tie (a tie broken differently on another rank count changes the
 * gradient by more than float rounding) */
static void dump_step(Trainer *T) {
  float margin = INFINITY;
  if (T->sharded) margin = proxyshard_topk_margin(&T->loss.shard);
  else {
    for (int b = 0; b < T->B; b++) {
      float m = loss_topk_margin(&T->loss, b, T->y[b]);
      margin = m < margin ? m : margin;
    }
    DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &margin, 1, MPI_FLOAT, MPI_MIN, T->d->comm));
  }
  /* sharded, each rank holds its pieces of the sum: the others' come over */
  if (T->red.shard) {
    reducer_put_own(&T->red, T->red.own_grads, T->grads);
    reducer_gather(&T->red, T->grads);
  }
  float *row = T->grad_dump ? T->grad_dump + (size_t)T->grads_dumped * T->n_global : NULL;
  if (row) {
    T->dump_margin[T->grads_dumped] = margin;
    memcpy(row, T->grads, (T->sharded ? T->n_backbone : T->n_params) * sizeof(float));
  }
  if (T->sharded) gather_slabs(T, T->dproxies, row ? row + T->n_backbone : NULL);
  T->grads_dumped++;
}

static float trainer_step(Trainer *T, int64_t step) {
  double t0 = now_sec();
  sampler_batch(&T->sampler, step, T->x, T->y);
  double t1 = now_sec();
  model_forward(&T->model, T->x, T->B);
  double t2 = now_sec();
  memset(T->grads, 0, T->n_params * sizeof(float));
  if (T->dproxies != T->grads + T->n_backbone) memset(T->dproxies, 0, (size_t)T->Mp * T->D * sizeof(float));
  memset(T->dx, 0, (size_t)T->B * T->D * sizeof(float));
  loss_forward(&T->loss, T->model.out, T->y, T->proxies, T->B);
  loss_backward(&T->loss, T->dx, T->dproxies);
  float *stats = T->stats;
  stats[0] = T->loss.loss; stats[1] = T->loss.loss_cls; stats[2] = T->loss.loss_reg;
  stats[3] = g_stop_signal ? 1.0f : 0.0f;
  if (fault_at(&T->fault, FAULT_NAN, T->d->rank, T->step)) stats[0] = NAN;
  reducer_begin(&T->red, T->grads, stats, LOSS_SLOTS);
  reducer_ready(&T->red, T->n_backbone);   /* the proxies' gradients travel during the network's backward */
  double t3 = now_sec();
  model_backward(&T->model, T->dx, T->B);
  double t4 = now_sec();
  fault_crash(&T->fault, T->d->rank, T->step);
  const float *g = reducer_finish(&T->red);
  double t5 = now_sec();
  if (T->grads_dumped < T->cfg.dump_grads) dump_step(T);
  double t6 = t5;
  if (isfinite(stats[0])) {   /* the same verdict on every rank */
    adam_step(&T->opt, T->params, g);
    t6 = now_sec();
    reducer_gather(&T->red, T->params);
  }
  double t7 = now_sec();
  if (T->d->size > 1) T->comm_volume += 2.0 * (double)T->red.n * sizeof(float);   /* an allreduce, or RS + AG */
  T->steps_here++;
  /* "allreduce": the whole reduction, the sharded optimizer's allgather included */
  T->phase[PHASE_DATA] += t1 - t0; T->phase[PHASE_FORWARD] += t2 - t1; T->phase[PHASE_LOSS] += t3 - t2;
  T->phase[PHASE_BACKWARD] += t4 - t3; T->phase[PHASE_ALLREDUCE] += (t5 - t4) + (t7 - t6);
  T->phase[PHASE_OPTIM] += t6 - t5;
  return stats[0];
}

/* ------------------------------------------------------------ record */

static int write_run(Trainer *T, const char *status, const char *message) {
  char end[32] = "";
  if (strcmp(status, "running")) runfile_timestamp(end);
  RunSnapshot s = {
    .path = T->run_path, .cfg = &T->cfg, .status = status, .message = message, .command_line = T->args->cmdline,
    .start_time = T->start_time, .end_time = end, .ranks = T->d->size, .threads = T->d->threads,
    .data_path = T->data_abs, .cwd = T->cwd, .wall_seconds = T->wall_before + now_sec() - T->session_start,
    .class_names = (const char *const *)T->te.class_names, .n_classes = T->te_info.n_classes,
    .C = T->C, .N = T->N, .K = T->K, .D = T->D, .n_train = T->tr_info.n, .n_test = T->te_info.n,
    .n_params = (int64_t)T->n_global, .steps_done = T->step, .epochs_done = T->epochs_done,
    .metrics = &T->rec.metrics, .timing = &T->rec.timing,
    .emb = T->evaluated ? T->eval.emb : NULL, .emb_labels = T->te.labels, .emb_row0 = T->te.row0,
    .emb_rows = T->te.nrows, .proxies = T->proxies,
    .proxy_row0 = T->sharded ? T->j0 : 0, .proxy_rows = T->sharded ? T->Mp : 0, .n_backbone = (int64_t)T->n_backbone,
    .sub_idx = T->evaluated ? T->eval.sub_idx : NULL, .sub_sim = T->eval.sub_sim,
    .sel_count = !T->evaluated ? NULL : T->sharded ? T->sel_slab : T->eval.sel_count,
    .loss_trace = T->rec.loss_trace, .params = T->params,
  };
  double rss = peak_rss_mib();
  DIST_CHECK(MPI_Allreduce(&rss, &s.peak_rss_mib, 1, MPI_DOUBLE, MPI_MAX, T->d->comm));
  return runfile_write(&s, T->d);
}

/* evaluates and appends a row to the metrics table */
static void record_eval(Trainer *T, int epoch, const double *loss) {
  double t0 = now_sec();
  Metrics m;
  evaluator_run(&T->eval, &T->model, T->proxies, T->cfg.kmeans_restarts, (uint64_t)T->cfg.seed, &m);
  if (T->sharded)
    proxyshard_topk(&T->loss.shard, T->proxies, T->eval.emb_all, (int)T->te_info.n, (int)T->te.row0, (int)T->te.nrows,
                    T->eval.sub_idx, T->eval.sub_sim, T->sel_slab);
  T->evaluated = 1;
  RecorderEval e = {.epoch = epoch, .step = T->step, .loss = loss, .lr = T->opt.groups[T->group_head].lr,
                    .proxy_lr = T->opt.groups[T->group_proxy].lr, .train_seconds = T->train_seconds,
                    .eval_seconds = now_sec() - t0};
  recorder_add_eval(&T->rec, &e, &m);
}

/* every rank hashes its parameter bytes (sharded proxies are no replicas:
 * the network only); the replicas agree when the smallest and the largest
 * hash over ranks are equal */
static int replicas_agree(Trainer *T) {
  const unsigned char *p = (const unsigned char *)T->params;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < (T->sharded ? T->n_backbone : T->n_params) * sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ULL;
  uint64_t lo = h, hi = h;
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, T->d->comm));
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, T->d->comm));
  return lo == hi;
}

/* ------------------------------------------------------------ progress */

static void progress(Trainer *T, int epoch, int64_t done, int64_t total, double loss, double t_epoch, double t_run,
                     int64_t steps_left, int final) {
  if (T->d->rank != 0) return;
  double sps = t_epoch > 0 ? (double)done * T->G / t_epoch : 0;
  double eta = done > 0 ? t_epoch / (double)done * (double)steps_left : 0;
  recorder_progress(stdout, epoch, T->cfg.epochs, done, total, loss, sps, eta, t_run, final);
}

static void print_summary(Trainer *T) {
  if (T->d->rank != 0 || T->rec.metrics.nrows == 0) return;
  recorder_print_summary(&T->rec, stdout);
  printf("\npeak memory %.0f MiB per rank; run file: %s\n", peak_rss_mib(), T->run_path);
  fflush(stdout);
}

/* a signal that arrived during an evaluation: agreed on at the epoch's end */
static int stop_signal_agreed(Trainer *T) {
  int mine = g_stop_signal != 0, any = 0;
  DIST_CHECK(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, T->d->comm));
  return any;
}

/* ------------------------------------------------------------ checkpoints */

/* sharded proxies: the slab's moments, Adam's last piece (include/reducer.h) */
static float *slab_moments(Trainer *T, float *moments) {
  const int last = T->opt.npieces - 1;
  return T->sharded ? moments + T->opt.piece_off[last] + (T->n_backbone - T->opt.pieces[last].begin) : NULL;
}

static Checkpoint checkpoint_view(Trainer *T, int epoch, int64_t step_in_epoch) {
  return (Checkpoint){.step = T->step, .epoch = epoch, .step_in_epoch = step_in_epoch,
                      .config_hash = cfg_hash(&T->cfg), .ranks = T->d->size, .train_seconds = T->train_seconds,
                      .wall_seconds = T->wall_before + now_sec() - T->session_start,
                      .n_params = T->n_global, .params = T->params, .opt = &T->opt, .m = T->opt.m, .v = T->opt.v,
                      .n_backbone = T->n_backbone, .tail_off = T->slab_off,
                      .tail_len = T->sharded ? T->n_params - T->n_backbone : 0,
                      .tail_params = T->proxies, .tail_m = slab_moments(T, T->opt.m), .tail_v = slab_moments(T, T->opt.v),
                      .loss_trace = T->rec.loss_trace,
                      .trace_cap = T->steps_per_epoch * T->cfg.epochs, .metrics = &T->rec.metrics,
                      .timing = &T->rec.timing};
}

/* rank 0 writes (the state is the same on every rank, but for the moments
 * of a sharded optimizer: rank 0 gathers them for the write; and for
 * sharded proxies: every rank writes its slab into the same file); all
 * agree on the outcome */
static int save_checkpoint(Trainer *T, int epoch, int64_t step_in_epoch) {
  Checkpoint c = checkpoint_view(T, epoch, step_in_epoch);
  const size_t n = T->red.n;   /* the reduced part: the block, or the network when the proxies are sharded */
  float *full = NULL;
  if (T->red.shard) {
    if (T->d->rank == 0) full = xmalloc_f32(2 * n);
    reducer_gather_root(&T->red, T->opt.m, full);
    reducer_gather_root(&T->red, T->opt.v, full ? full + n : NULL);
    c.m = full;
    c.v = full ? full + n : NULL;
  }
  int ok = T->sharded ? agree(T, checkpoint_save_sharded(T->args->out_dir, &c, T->d->comm) == 0)
                      : agree(T, T->d->rank != 0 || checkpoint_save(T->args->out_dir, &c) == 0);
  free(full);
  return ok;
}

/* --resume auto: every rank loads the newest complete checkpoint (the same
 * file: the ranks check that they agree on its step and hash). Its header is
 * checked against this configuration before the payload is read into buffers
 * sized for it. Returns 1 resumed, 0 fresh start, -1 refused (message
 * printed). */
static int resume_load(Trainer *T, float *full_moments) {
  Checkpoint c = checkpoint_view(T, 1, 0);
  if (full_moments) {
    c.m = full_moments;
    c.v = full_moments + T->red.n;
  }
  const uint64_t want = cfg_hash(&T->cfg);
  const int64_t total = T->steps_per_epoch * T->cfg.epochs;
  char used[4200] = "";
  int64_t before = INT64_MAX;
  for (int tried = 0;; tried++) {
    int got = checkpoint_find_latest(T->args->out_dir, before, T->d->rank == 0, &c, used, sizeof used);
    int rc = 0;
    if (got == 1 && c.config_hash != want)
      rc = err_set("%s was written by another configuration (hash %016llx, this one %016llx): refusing to resume",
                   used, (unsigned long long)c.config_hash, (unsigned long long)want);
    else if (got == 1 && c.step > total)
      rc = err_set("%s is at step %lld (epoch %d), beyond the %lld steps of this configuration (epochs = %d): "
                   "refusing to resume; train a shorter run into another --out", used, (long long)c.step, c.epoch,
                   (long long)total, T->cfg.epochs);
    else if (got == 1 && (c.epoch < 1 || c.step_in_epoch < 0 || c.step_in_epoch >= T->steps_per_epoch ||
                          c.step != (int64_t)(c.epoch - 1) * T->steps_per_epoch + c.step_in_epoch))
      rc = err_set("%s: epoch %d, step %lld of the epoch and step %lld do not fit %lld steps per epoch: corrupt",
                   used, c.epoch, (long long)c.step_in_epoch, (long long)c.step, (long long)T->steps_per_epoch);
    else if (got == 0 && tried > 0)   /* the parameters may hold part of a checkpoint: no fresh start on them */
      rc = err_set("every checkpoint in %s/checkpoints is truncated or corrupt: move them away to start over",
                   T->args->out_dir);
    if (!agree(T, rc == 0)) return -1;
    long long step[2] = {got == 1 ? c.step : -1, got == 1 ? -c.step : 1};
    uint64_t hash[2] = {got == 1 ? c.config_hash : 0, got == 1 ? ~c.config_hash : ~0ULL};
    DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, step, 2, MPI_LONG_LONG, MPI_MIN, T->d->comm));
    DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, hash, 2, MPI_UINT64_T, MPI_MIN, T->d->comm));
    int same = step[0] == -step[1] && hash[0] == ~hash[1];
    char lo[32] = "no checkpoint";
    if (step[0] >= 0) snprintf(lo, sizeof lo, "step %lld", step[0]);
    if (!same)
      err_set("the ranks see different checkpoints in %s (one %s, another step %lld): is it on a file system that "
              "every rank shares?", T->args->out_dir, lo, -step[1]);
    if (!agree(T, same)) return -1;
    if (got == 0) return 0;
    int loaded = checkpoint_load(used, &c) == 0;
    int first = dist_first_failing(T->d, !loaded);
    if (first < 0) break;
    if (T->d->rank == first)
      fprintf(stderr, "warning: checkpoint %s is truncated or corrupt (%s); trying an older one\n", used, err_msg());
    before = c.step;
  }
  T->step = c.step;
  T->start_epoch = c.epoch;
  T->start_step_in_epoch = c.step_in_epoch;
  T->train_seconds = c.train_seconds;
  T->wall_before = c.wall_seconds;
  T->session_start = now_sec();
  T->epochs_done = c.epoch - 1;
  if (c.ranks != T->d->size)
    dist_log(T->d, "warning: the checkpoint was written by %d ranks, this run has %d: the run continues exactly, "
                    "but sums are regrouped, so the trajectory will differ from an uninterrupted one within float "
                    "tolerance at first, statistically later\n", c.ranks, T->d->size);
  dist_log(T->d, "resuming from %s: epoch %d, step %lld\n", used, c.epoch, (long long)c.step);
  return 1;
}

/* A checkpoint holds the moments of the whole block, whatever the rank count
 * that wrote it: a sharded optimizer reads them all and keeps its pieces
 * (sharded proxies: those of the network, and its slab's directly). */
static int resume(Trainer *T) {
  float *full = T->red.shard ? xmalloc_f32(2 * T->red.n) : NULL;
  int rc = resume_load(T, full);
  if (rc == 1 && full) {
    reducer_take_own(&T->red, full, T->opt.m);
    reducer_take_own(&T->red, full + T->red.n, T->opt.v);
  }
  free(full);
  return rc;
}

/* ------------------------------------------------------------ the run */

static int stop_preempted(Trainer *T, int epoch, int64_t step_in_epoch) {
  char msg[160];
  snprintf(msg, sizeof msg, "stopped by a signal at epoch %d, step %lld; resume with --resume auto", epoch,
           (long long)T->step);
  if (!save_checkpoint(T, epoch, step_in_epoch)) return TRAINER_EXIT_FAILED;
  if (!agree(T, write_run(T, "preempted", msg) == 0)) return TRAINER_EXIT_FAILED;
  dist_log(T->d, "\n%s\n", msg);
  return TRAINER_EXIT_REQUEUE;
}

/* dump_grads: DIR/grads.h5, dataset grads (steps x n_params), the summed
 * gradient of [backbone | proxies] as Adam received it */
static int write_grad_dump(Trainer *T) {
  if (!T->grad_dump) return 0;
  char path[CFG_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/grads.h5", T->args->out_dir);
  hid_t f;
  if (h5io_create(path, &f) != 0) return -1;
  int64_t dims[2] = {T->grads_dumped, (int64_t)T->n_global};
  int rc = h5io_write(f, "grads", H5T_NATIVE_FLOAT, 2, dims, T->grad_dump);
  if (rc == 0) rc = h5io_set_attr_i64(f, "n_backbone", (int64_t)T->n_backbone);
  if (rc == 0) rc = h5io_set_attr_i64(f, "ranks", T->d->size);
  int64_t mdims[1] = {T->grads_dumped};
  if (rc == 0) rc = h5io_write(f, "topk_margin", H5T_NATIVE_FLOAT, 1, mdims, T->dump_margin);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (H5Fclose(f) < 0 && rc == 0) rc = err_set("%s: cannot close", path);
  return rc;
}

/* a failure that every rank sees alike: one line, and the run file marked
 * failed with it (a failure to write that is reported too) */
static int stop_failed(Trainer *T, const char *msg) {
  if (T->d->rank == 0) fprintf(stderr, "\nproxygml train: %s\n", msg);
  agree(T, write_run(T, "failed", msg) == 0);
  return TRAINER_EXIT_FAILED;
}

static int run(Trainer *T) {
  const Config *c = &T->cfg;
  int64_t total_steps = T->steps_per_epoch * c->epochs;
  double run_start = now_sec();
  if (stop_signal_agreed(T)) return stop_preempted(T, T->start_epoch, T->start_step_in_epoch);   /* during setup */
  if (T->step == 0 && T->rec.metrics.nrows == 0 && cfg_eval_at(c, 0)) {
    record_eval(T, 0, NULL);
    if (!agree(T, write_run(T, "running", "") == 0)) return TRAINER_EXIT_FAILED;
    if (T->d->rank == 0) recorder_print_eval(&T->rec, stdout, "epoch 0 (untrained): ");
  }
  for (int epoch = T->start_epoch; epoch <= c->epochs; epoch++) {
    int64_t s0 = epoch == T->start_epoch ? T->start_step_in_epoch : 0;
    if (s0 == 0) adam_decay_lr(&T->opt, epoch - 1, c->decay_epochs.v, c->decay_epochs.n, c->decay_rate);
    T->opt.groups[T->group_body].frozen = epoch <= c->warm;   /* warm-up: only the embedding layer and proxies */
    sampler_epoch(&T->sampler, epoch, (uint64_t)c->seed);
    memset(T->phase, 0, sizeof T->phase);
    int64_t first = T->step - s0;   /* trace index of the epoch's first step */
    double t_epoch0 = now_sec(), last_print = 0, banked = 0;   /* banked: seconds already in train_seconds */
    for (int64_t s = s0; s < T->steps_per_epoch; s++) {
      float loss = trainer_step(T, s);
      const float *st = T->stats;
      recorder_trace(&T->rec, T->step, st);
      T->step++;
      char msg[256];
      if (!isfinite(loss)) {
        snprintf(msg, sizeof msg, "non-finite loss %g at epoch %d step %lld (lower the learning rates or the scale?)",
                 loss, epoch, (long long)T->step);
        return stop_failed(T, msg);
      }
      if (c->check_sync_every > 0 && T->step % c->check_sync_every == 0 && !replicas_agree(T)) {
        snprintf(msg, sizeof msg, "the parameter replicas differ across ranks at step %lld", (long long)T->step);
        return stop_failed(T, msg);
      }
      if (st[3] > 0) {   /* a rank got SIGUSR1/SIGTERM: every rank stops after this same step */
        T->train_seconds += now_sec() - t_epoch0 - banked;
        return stop_preempted(T, epoch, s + 1);
      }
      if (c->checkpoint_every > 0 && T->step % c->checkpoint_every == 0 && s + 1 < T->steps_per_epoch) {
        double so_far = now_sec() - t_epoch0;   /* the checkpoint holds the training time so far */
        T->train_seconds += so_far - banked;
        banked = so_far;
        if (!save_checkpoint(T, epoch, s + 1)) return TRAINER_EXIT_FAILED;
      }
      double now = now_sec();
      if (now - last_print > 0.25) {
        last_print = now;
        double m[3];
        recorder_trace_mean(&T->rec, first, T->step, m);
        progress(T, epoch, s + 1, T->steps_per_epoch, m[0], now - t_epoch0, now - run_start, total_steps - T->step, 0);
      }
    }
    double t_train = now_sec() - t_epoch0;
    T->train_seconds += t_train - banked;
    T->epochs_done = epoch;
    double mean[3];
    recorder_trace_mean(&T->rec, first, T->step, mean);
    progress(T, epoch, T->steps_per_epoch, T->steps_per_epoch, mean[0], t_train, now_sec() - run_start,
             total_steps - T->step, 1);
    if (cfg_eval_at(c, epoch)) {
      record_eval(T, epoch, mean);
      T->phase[PHASE_EVAL] = recorder_get(&T->rec, -1, "eval_seconds");
      if (T->d->rank == 0) recorder_print_eval(&T->rec, stdout, "          ");
    }
    recorder_add_timing(&T->rec, epoch, (double)(T->steps_per_epoch - s0) * T->G / t_train, T->phase);
    int last = epoch == c->epochs;
    if (!agree(T, write_run(T, last ? "complete" : "running", "") == 0)) return TRAINER_EXIT_FAILED;
    if (!last && !save_checkpoint(T, epoch + 1, 0)) return TRAINER_EXIT_FAILED;
    if (!last && stop_signal_agreed(T)) return stop_preempted(T, epoch + 1, 0);
  }
  if (c->epochs == 0 && !agree(T, write_run(T, "complete", "") == 0)) return TRAINER_EXIT_FAILED;
  if (!agree(T, T->d->rank != 0 || write_grad_dump(T) == 0)) return TRAINER_EXIT_FAILED;
  if (T->steps_here > 0 && T->d->size > 1) {   /* per rank: a ring moves (P-1)/P of the volume */
    double vol = T->comm_volume + (T->sharded ? T->loss.shard.bytes : 0), P = T->d->size;
    dist_log(T->d, "communication: %.3f MiB per step per rank (%.3f MiB of it in the loss)\n",
             vol * (P - 1) / P / T->steps_here / 1048576.0,
             (T->sharded ? T->loss.shard.bytes : 0) * (P - 1) / P / T->steps_here / 1048576.0);
  }
  print_summary(T);
  return TRAINER_EXIT_OK;
}

int trainer_main(Dist *d, const TrainerArgs *a) {
  static Trainer T;   /* large; zeroed */
  memset(&T, 0, sizeof T);
  T.d = d;
  T.args = a;
  T.cfg = a->cfg;
  runfile_timestamp(T.start_time);
  T.session_start = now_sec();
  fault_init(&T.fault);
  int rc = TRAINER_EXIT_BAD_INPUT;
  /* every rank parsed the same file: rank 0's struct is broadcast so that all
   * ranks hold the same bytes */
  dist_bcast(d, &T.cfg, sizeof T.cfg);
  dist_set_timeout(d, (int)T.cfg.collective_timeout);
  snprintf(T.run_path, sizeof T.run_path, "%s/run.h5", a->out_dir);
  if (!realpath(T.cfg.data, T.data_abs)) snprintf(T.data_abs, sizeof T.data_abs, "%s", T.cfg.data);
  if (!getcwd(T.cwd, sizeof T.cwd)) T.cwd[0] = 0;
  if (!agree(&T, check_sizes(&T) == 0)) return rc;
  int prepared = d->rank != 0 || rundir_prepare(a->out_dir, T.run_path, cfg_hash(&T.cfg), T.cfg.epochs, a->force,
                                                 a->resume, &T.complete_epochs) == 0;
  if (!agree(&T, prepared)) return rc;
  /* a complete run has nothing to do (resubmitting a sweep finishes only what
   * is missing), unless `epochs` was raised: then it continues */
  dist_bcast(d, &T.complete_epochs, sizeof T.complete_epochs);
  if (a->resume && T.complete_epochs == T.cfg.epochs) {
    dist_log(d, "%s is complete (%d epochs): nothing to do; raise epochs to continue it\n", T.run_path, T.cfg.epochs);
    return TRAINER_EXIT_OK;
  }
  if (a->resume && T.complete_epochs >= 0)
    dist_log(d, "%s is complete after %d epochs; epochs = %d: continuing it\n", T.run_path, T.complete_epochs,
             T.cfg.epochs);
  if (!agree(&T, load_data(&T) == 0)) return rc;
  dist_threads(d, T.cfg.threads);
  build(&T);
  int resumed = a->resume ? resume(&T) : 0;   /* a resumed run takes its parameters from the checkpoint */
  if (resumed < 0 ||
      !agree(&T, (resumed || load_init(&T) == 0) &&
                     (!T.cfg.order_from[0] || sampler_load_orders(&T.sampler, T.cfg.order_from, T.cfg.epochs) == 0))) {
    trainer_free(&T);
    return rc;
  }
  dist_log(d,
           "proxygml %s: %s, %s on %s, %d rank%s x %d thread%s; C=%d N=%d K=%d D=%d, batch %d (%d per rank), "
           "%lld steps/epoch, %zu parameters\n",
           PROXYGML_VERSION, cfg_loss_name(T.cfg.loss), cfg_arch_name(T.cfg.arch), T.cfg.data, d->size, d->size > 1 ? "s" : "", d->threads,
           d->threads > 1 ? "s" : "", T.C, T.N, T.K, T.D, T.G, T.B, (long long)T.steps_per_epoch, T.n_global);
  if (T.sharded)
    dist_log(d, "proxies sharded by class: rank 0 holds %d of the %d proxies (%zu parameters)\n", T.Mp, T.M, T.n_params);
  char warning[256];
  if (trainer_sizes_warning(&(TrainerSizes){.loss = T.cfg.loss, .K = T.K, .N = T.N}, warning, sizeof warning))
    dist_log(d, "warning: %s\n", warning);
  if (T.sharded && T.cfg.lambda > 0 && !T.cfg.reg_sampled && T.C > 100000)
    dist_log(d, "warning: the exact regulariser over C = %d classes costs %.1e flops and two %d x %d buffers per rank "
                "each step: set reg_sampled = 1 (docs/sharding.md 3) or lambda = 0\n",
             T.C, 6.0 * T.Mp * (double)T.C * T.D, T.C, T.D);
  if (T.cfg.nmi_max_clusters > 0 && T.eval.n_classes > T.cfg.nmi_max_clusters)
    dist_log(d, "note: NMI is not computed (NaN): %d test classes > nmi_max_clusters = %lld\n", T.eval.n_classes,
             (long long)T.cfg.nmi_max_clusters);
  if (d->bound_cpus < d->threads)
    dist_log(d, "warning: %d threads on %d bound CPU(s): run mpirun with --bind-to none or --map-by slot:pe=%d\n",
             d->threads, d->bound_cpus, d->threads);
  rc = run(&T);
  trainer_free(&T);
  return rc;
}
