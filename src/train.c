/* train.c: `proxygml train` (see include/train.h): setup with collective
 * error handling, the data-parallel training loop, distributed evaluation
 * and the run file, checkpoints with exact resume, and preemption on
 * SIGUSR1/SIGTERM (checkpoint, exit 75). */
#include "train.h"

#include "cfg.h"
#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "h5io.h"
#include "layers.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "proxygml.h"
#include "rng.h"
#include "runfile.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* loss, loss_cls, loss_reg and the stop request ride at the end of the
 * gradient allreduce: every rank learns the same values at the same step */
enum { LOSS_SLOTS = 4 };

/* SIGUSR1 / SIGTERM: finish the step, checkpoint, exit TRAIN_EXIT_REQUEUE */
static volatile sig_atomic_t g_stop_signal;
static void on_stop_signal(int sig) { g_stop_signal = sig; }
enum { PH_DATA, PH_FORWARD, PH_LOSS, PH_BACKWARD, PH_ALLREDUCE, PH_OPTIM, PH_EVAL, NPHASE };
static const char *const PHASE_NAMES[NPHASE] = {"data", "forward", "loss", "backward", "allreduce", "optimizer",
                                                "evaluation"};

typedef struct {
  Dist d;
  Config cfg;
  char out_dir[CFG_PATH_MAX], run_path[CFG_PATH_MAX + 16];
  char cmdline[4096], start_time[32];
  char data_abs[CFG_PATH_MAX + 16], cwd[CFG_PATH_MAX];
  double session_start, wall_before;   /* now_sec() at start; wall seconds of earlier sessions */
  int force, resume;
  int complete_epochs;         /* epochs of a complete DIR/run.h5 being resumed, else -1 */
  /* sizes */
  int C, N, M, K, D;
  int G, B;                    /* global and per-rank batch */
  int64_t steps_per_epoch;
  /* data: this rank's shards, all training labels */
  DatasetInfo tr_info, te_info;
  DatasetSplit tr, te;
  int32_t *tr_labels;          /* n_train */
  size_t row_bytes;            /* bytes of one stored training row */
  /* model, loss, optimizer over one flat block [backbone | proxies] (+ loss slots in grads) */
  Model model;
  ProxyGML loss;
  Adam opt;
  size_t n_backbone, n_params;
  float *params, *grads;       /* n_params, n_params + LOSS_SLOTS */
  float *proxies, *dproxies;   /* views: M x D */
  int group_body, group_head, group_proxy;
  /* one step's batch */
  int *perm;                   /* n_train */
  int *orders;                 /* epochs x n_train from order_from, or NULL: seeded shuffles */
  int *counts, *displs, *rcounts, *rdispls;   /* size: Alltoallv bookkeeping, in bytes */
  int *cursor;                 /* size: rows received from each owner */
  uint8_t *sendbuf, *recvbuf, *rows;          /* G, B, B rows of row_bytes */
  int *order;                  /* B: recvbuf row of local batch position q */
  int *iota;                   /* B: 0..B-1 */
  float *x;                    /* B x row_size */
  int32_t *y;                  /* B */
  float *dx;                   /* B x D */
  /* evaluation */
  int eval_chunk;
  float *emb_local;            /* te.nrows x D */
  float *emb_all;              /* n_test x D */
  int *te_labels_all;          /* n_test */
  int *recv_counts, *recv_displs;
  float *enorm;                /* eval_chunk: embedding norms */
  float *wn;                   /* M x D normalised proxies */
  float *sim;                  /* eval_chunk x M */
  int *sub_idx;                /* te.nrows x K */
  float *sub_sim;              /* te.nrows x K */
  int64_t *sel_count;          /* M */
  float *topk_v; int *topk_i;  /* K */
  MetricsEval ev;
  int ks[METRICS_MAXK], nk;
  /* record */
  RunTable metrics, timing;
  double phase[NPHASE];        /* seconds in the current epoch */
  double *loss_trace;          /* steps x 3: loss, loss_cls, loss_reg of every step */
  float *grad_dump;            /* dump_grads x n_params on rank 0: the reduced gradients (diagnostics) */
  float dump_margin[1000];     /* the least top-K margin over the global batch of each dumped step */
  int grads_dumped;
  int start_epoch;             /* where the loop starts (after a resume) */
  int64_t start_step_in_epoch;
  /* test-only fault injection (PROXYGML_INJECT_FAULT=rank:step:kind) */
  int fault_rank, fault_kind;
  int64_t fault_step;
  int64_t step;
  int epochs_done;
  int evaluated;               /* emb_local, sub_idx, sel_count hold an evaluation of this session */
  double train_seconds;
} Trainer;

/* ------------------------------------------------------------ collective errors */

/* Every rank calls this with its local verdict. If any rank failed, the
 * lowest failing rank prints its one-line reason and every rank returns 0. */
static int agree(Trainer *T, int ok) {
  int first = dist_first_failing(&T->d, !ok);
  if (first < 0) return 1;
  if (T->d.rank == first) {
    if (T->d.size > 1) fprintf(stderr, "proxygml train: [rank %d] %s\n", first, err_msg());
    else fprintf(stderr, "proxygml train: %s\n", err_msg());
    fflush(stderr);
  }
  return 0;
}

/* ------------------------------------------------------------ setup */

/* Test-only: PROXYGML_INJECT_FAULT="RANK:STEP:KIND" makes one rank fail on
 * purpose, so the tests can check that every rank stops, fast, with one
 * message. KIND: nan (a non-finite loss on that rank at STEP), io (that rank
 * cannot read its data; STEP ignored), and at STEP, just before the gradient
 * allreduce: crash (abort), segv (SIGSEGV), heap (a double free: glibc aborts
 * holding its allocator lock), stop (SIGSTOP: the others wait for it until the
 * watchdog, collective_timeout, ends the job). */
enum { FAULT_NONE, FAULT_NAN, FAULT_IO, FAULT_CRASH, FAULT_SEGV, FAULT_HEAP, FAULT_STOP };
static const char *const FAULT_NAMES[] = {"", "nan", "io", "crash", "segv", "heap", "stop"};
_Static_assert((int)DIST_EXIT_HUNG == (int)TRAIN_EXIT_FAILED, "the watchdog exits with 'the training failed'");

static void parse_fault(Trainer *T) {
  const char *e = getenv("PROXYGML_INJECT_FAULT");
  T->fault_kind = FAULT_NONE;
  if (!e || !*e) return;
  char kind[16] = "";
  long long step = 0;
  if (sscanf(e, "%d:%lld:%15s", &T->fault_rank, &step, kind) != 3) return;
  T->fault_step = step;
  for (int f = FAULT_NAN; f <= FAULT_STOP; f++)
    if (!strcmp(kind, FAULT_NAMES[f])) T->fault_kind = f;
}

static int fault_here(const Trainer *T, int kind, int64_t step) {
  return T->fault_kind == kind && T->fault_rank == T->d.rank && (kind == FAULT_IO || T->fault_step == step);
}

static void fault_crash(const Trainer *T) {
  if (T->fault_kind < FAULT_CRASH || !fault_here(T, T->fault_kind, T->step)) return;
  fprintf(stderr, "proxygml train: [rank %d] injected %s at step %lld\n", T->d.rank, FAULT_NAMES[T->fault_kind],
          (long long)T->step);
  fflush(stderr);
  if (T->fault_kind == FAULT_SEGV) raise(SIGSEGV);
  if (T->fault_kind == FAULT_STOP) {
    raise(SIGSTOP);
    _exit(TRAIN_EXIT_FAILED);   /* continued by mpirun while it ends the job: leave quietly */
  }
  if (T->fault_kind == FAULT_HEAP) {
    char *volatile p = malloc(100000);   /* below the mmap threshold: freed under the arena lock */
    free(p);
    free(p);
  }
  abort();
}

static double peak_rss_mib(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;   /* KiB on Linux */
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: proxygml train --config FILE [--set key=value ...] [--out DIR] [--force] [--resume auto]\n"
          "       mpirun -np P proxygml train ...   (data parallel; batch is the global batch)\n\n"
          "Trains an embedding network with the ProxyGML loss, evaluates it (epoch 0 = untrained)\n"
          "and writes DIR/run.h5 (default DIR: runs/<name or config file name>).\n"
          "  --config FILE   libconfig file (experiments/*.cfg)\n"
          "  --set key=value override one key (repeatable; lists as 20,40)\n"
          "  --out DIR       output directory (created if missing)\n"
          "  --force         replace an existing DIR/run.h5 (and its checkpoints)\n"
          "  --resume auto   continue from the newest complete checkpoint in DIR (a fresh start\n"
          "                  if there is none; nothing to do if DIR/run.h5 is complete, unless\n"
          "                  epochs was raised: then it continues); refuses a directory of another\n"
          "                  configuration, and a run or checkpoint beyond this run's epochs\n"
          "Signals: SIGUSR1 or SIGTERM finish the current step, write a checkpoint, mark the run\n"
          "preempted and exit 75 (requeue, then --resume auto).\n"
          "Exit codes: 0 complete, 2 bad input, 3 training failed, 75 stopped to be requeued.\n\n"
          "Configuration keys (default, meaning):\n");
  cfg_print_help(out);
}

/* rank 0: the output directory exists, is writable, and holds no run we would clobber */
static int prepare_out_dir(Trainer *T) {
  if (common_mkdir_p(T->out_dir) != 0) return -1;
  char probe[CFG_PATH_MAX + 32];
  snprintf(probe, sizeof probe, "%s/.write-test.%d", T->out_dir, (int)getpid());
  FILE *f = fopen(probe, "w");
  if (!f) return err_set("output directory '%s' is not writable: %s", T->out_dir, strerror(errno));
  fclose(f);
  unlink(probe);
  T->complete_epochs = -1;
  if (access(T->run_path, F_OK) == 0 && T->resume) {
    /* the directory must hold a run of this very configuration */
    char hash[32] = "", want[32], status[32] = "";
    int64_t epochs_done = 0;
    hid_t h;
    if (h5io_open(T->run_path, &h) != 0)
      return err_set("cannot resume: %s; move it away to resume from the checkpoints", err_msg());
    hid_t g = H5Gopen2(h, "config", H5P_DEFAULT);
    if (g >= 0) { h5io_attr_str(g, "config_hash", hash, sizeof hash); H5Gclose(g); }
    h5io_attr_str(h, "status", status, sizeof status);
    h5io_attr_i64(h, "epochs_done", &epochs_done);
    H5Fclose(h);
    if (!hash[0]) return err_set("%s has no config/config_hash: not a run file of proxygml; refusing to resume into it",
                                 T->run_path);
    snprintf(want, sizeof want, "%016llx", (unsigned long long)cfg_hash(&T->cfg));
    if (strcmp(hash, want))
      return err_set("%s belongs to another experiment (config hash %s, this one %s): refusing to resume into it",
                     T->run_path, hash, want);
    if (epochs_done > T->cfg.epochs)
      return err_set("%s has %lld epochs done (status %s), more than the %d asked for: refusing to resume; train "
                     "a shorter run into another --out", T->run_path, (long long)epochs_done, status, T->cfg.epochs);
    if (!strcmp(status, "complete")) T->complete_epochs = (int)epochs_done;
  } else if (access(T->run_path, F_OK) == 0 && !T->force) {
    char status[64] = "unreadable";
    hid_t h;
    if (h5io_open(T->run_path, &h) == 0) {
      if (h5io_attr_str(h, "status", status, sizeof status) != 0) snprintf(status, sizeof status, "unknown");
      H5Fclose(h);
    }
    return err_set("%s already exists (status %s): pass --force to replace it, or choose another --out", T->run_path,
                   status);
  }
  if (T->force && !T->resume) {   /* a fresh start: old checkpoints must not be resumed later */
    char dir[CFG_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/checkpoints", T->out_dir);
    DIR *dh = opendir(dir);
    struct dirent *e;
    while (dh && (e = readdir(dh))) {
      if (e->d_name[0] == '.') continue;
      char p[CFG_PATH_MAX + 300];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
    if (dh) closedir(dh);
  }
  int partial = checkpoint_remove_partial(T->out_dir);
  if (partial > 0) printf("removed %d partial checkpoint file%s (step-*.h5.tmp) that a crash left in %s/checkpoints\n",
                          partial, partial > 1 ? "s" : "", T->out_dir);
  return 0;
}

static int parse_args(Trainer *T, int argc, char **argv) {
  const char *cfg_path = NULL, *out = NULL;
  cfg_defaults(&T->cfg);
  size_t len = 0;
  for (int i = 0; i < argc && len + 2 < sizeof T->cmdline; i++)
    len += (size_t)snprintf(T->cmdline + len, sizeof T->cmdline - len, "%s%s", i ? " " : "proxygml ", argv[i]);
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--config") && i + 1 < argc) cfg_path = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
    else if (!strcmp(argv[i], "--force")) T->force = 1;
    else if (!strcmp(argv[i], "--resume") && i + 1 < argc) {
      const char *how = argv[++i];
      if (!strcmp(how, "auto")) T->resume = 1;
      else if (!strcmp(how, "never")) T->resume = 0;
      else return err_set("--resume takes auto or never, got '%s'", how);
    }
    else if (!strcmp(argv[i], "--set") && i + 1 < argc) i++;   /* applied after the file */
    else return err_set("unknown or incomplete argument '%s' (see proxygml train --help)", argv[i]);
  }
  if (!cfg_path) return err_set("--config FILE is required (see proxygml train --help)");
  if (cfg_load(&T->cfg, cfg_path) != 0) return -1;
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--set") && cfg_set(&T->cfg, argv[++i]) != 0) return -1;
  if (cfg_validate(&T->cfg) != 0) return -1;
  if (out) snprintf(T->out_dir, sizeof T->out_dir, "%s", out);
  else {
    const char *base = strrchr(cfg_path, '/') ? strrchr(cfg_path, '/') + 1 : cfg_path;
    char stem[256];
    snprintf(stem, sizeof stem, "%s", T->cfg.name[0] ? T->cfg.name : base);
    char *dot = strrchr(stem, '.');
    if (dot && !T->cfg.name[0]) *dot = 0;
    snprintf(T->out_dir, sizeof T->out_dir, "runs/%s", stem);
  }
  snprintf(T->run_path, sizeof T->run_path, "%s/run.h5", T->out_dir);
  return 0;
}

int train_check_sizes(const Config *c, const DatasetInfo *tr, const DatasetInfo *te, int ranks, TrainSizes *s) {
  memset(s, 0, sizeof *s);
  if (tr->kind != te->kind || tr->row_size != te->row_size)
    return err_set("%s: train and test rows differ in kind or size", c->data);
  s->C = c->C > 0 ? c->C : tr->label_max + 1;
  if (tr->label_max >= s->C)
    return err_set("config key 'C': the training split has label %d, but C = %d", tr->label_max, s->C);
  s->N = c->N;
  s->M = s->C * s->N;
  s->D = c->embed_dim;
  if (cfg_resolve_k(c, s->C, &s->K) != 0) return -1;
  s->G = c->batch;
  if (s->G > tr->n)
    return err_set("config key 'batch': %d is larger than the training split (%lld rows)", s->G, (long long)tr->n);
  if (ranks > 0 && s->G % ranks != 0)
    return err_set("config key 'batch': the global batch %d does not divide over %d ranks", s->G, ranks);
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

int train_sizes_warning(const TrainSizes *s, char *buf, size_t cap) {
  if (s->K > s->N) return 0;
  /* the N proxies of the sample's own class enter every subgraph first */
  snprintf(buf, cap, "K = %d <= N = %d: every subgraph holds only the sample's own class, so the classification "
           "loss is constant and the network learns nothing from it (choose K > N)", s->K, s->N);
  return 1;
}

/* the dataset's splits and the sizes that follow from them (same on every rank) */
static int check_sizes(Trainer *T) {
  const Config *c = &T->cfg;
  if (dataset_info(c->data, "train", &T->tr_info) != 0 || dataset_info(c->data, "test", &T->te_info) != 0) return -1;
  TrainSizes s;
  if (train_check_sizes(c, &T->tr_info, &T->te_info, T->d.size, &s) != 0) return -1;
  T->C = s.C; T->N = s.N; T->M = s.M; T->K = s.K; T->D = s.D; T->G = s.G;
  T->B = T->G / T->d.size;
  T->steps_per_epoch = s.steps_per_epoch;
  T->nk = c->recall_ks.n;
  for (int i = 0; i < T->nk; i++) T->ks[i] = c->recall_ks.v[i];
  return 0;
}

static int64_t shard_start(int64_t n, int rank, int size) { return n * rank / size; }

static int owner_of(int64_t i, int64_t n, int size) {
  int r = (int)(i * size / n);   /* first guess, then fix rounding */
  while (r > 0 && shard_start(n, r, size) > i) r--;
  while (r + 1 < size && shard_start(n, r + 1, size) <= i) r++;
  return r;
}

/* this rank's shards, all labels; local failures (I/O) are agreed on by the caller */
static int load_data(Trainer *T) {
  const char *path = T->cfg.data;
  if (fault_here(T, FAULT_IO, 0)) return err_set("%s: injected I/O fault (PROXYGML_INJECT_FAULT)", path);
  int r = T->d.rank, P = T->d.size;
  int64_t n = T->tr_info.n, nt = T->te_info.n;
  int64_t a = shard_start(n, r, P), b = shard_start(n, r + 1, P);
  if (dataset_split_read(&T->tr, path, "train", a, b - a) != 0) return -1;
  a = shard_start(nt, r, P); b = shard_start(nt, r + 1, P);
  if (dataset_split_read(&T->te, path, "test", a, b - a) != 0) return -1;
  T->tr_labels = xmalloc((size_t)n * sizeof(int32_t));
  if (dataset_labels_read(path, "train", T->tr_labels, n) != 0) return -1;
  T->te_labels_all = xmalloc((size_t)nt * sizeof(int));
  if (dataset_labels_read(path, "test", T->te_labels_all, nt) != 0) return -1;
  T->row_bytes = T->tr_info.kind == DATASET_IMAGES ? (size_t)T->tr_info.H * T->tr_info.W * T->tr_info.channels
                                                   : (size_t)T->tr_info.F * sizeof(float);
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
    else if (nd != 1 || dims[0] != (int64_t)T->n_params)
      rc = err_set("model/parameters holds %lld values, this %s with M = %d, D = %d has %zu",
                   (long long)(nd == 1 ? dims[0] : -1), cfg_arch_name(T->cfg.arch), T->M, T->D, T->n_params);
    else rc = h5io_read(f, "model/parameters", H5T_NATIVE_FLOAT, T->params, T->n_params);
    for (size_t i = 0; rc == 0 && i < T->n_params; i++)
      if (!isfinite(T->params[i])) rc = err_set("model/parameters holds a non-finite value at element %zu", i);
  } else if (h5io_has(f, "params")) {
    rc = model_params_read(&T->model, f, "params");
    if (rc == 0) rc = h5io_shape(f, "params/proxies", &nd, dims);
    if (rc == 0 && (nd != 2 || dims[0] != T->M || dims[1] != T->D))
      rc = err_set("params/proxies must be M x D = %d x %d", T->M, T->D);
    if (rc == 0) rc = h5io_read(f, "params/proxies", H5T_NATIVE_FLOAT, T->proxies, (size_t)T->M * T->D);
    for (size_t i = 0; rc == 0 && i < (size_t)T->M * T->D; i++)
      if (!isfinite(T->proxies[i])) rc = err_set("params/proxies holds a non-finite value at element %zu", i);
    /* a tensor the model does not have: most likely another architecture's file */
    H5G_info_t info = {0};
    hid_t g = rc == 0 ? H5Gopen2(f, "params", H5P_DEFAULT) : -1;
    if (rc == 0 && (g < 0 || H5Gget_info(g, &info) < 0)) rc = err_set("'params' is not a readable group");
    for (hsize_t i = 0; rc == 0 && i < info.nlinks; i++) {
      char name[256] = "";
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

/* order_from: dataset `order`, at least `epochs` rows of n_train, each row a
 * permutation of the training rows (read once and kept: epochs x n_train
 * ints on every rank, 24 MB for 100 epochs of 60000 rows) */
static int load_orders(Trainer *T) {
  const char *path = T->cfg.order_from;
  if (!path[0] || T->cfg.epochs == 0) return 0;
  const int64_t n = T->tr_info.n, E = T->cfg.epochs;
  hid_t f;
  if (h5io_open(path, &f) != 0) return err_set("order_from %s", err_msg());
  int nd, rc = 0;
  int64_t dims[H5IO_MAXDIM];
  H5T_class_t cls;
  size_t tsize;
  H5T_sign_t sign;
  if (h5io_shape(f, "order", &nd, dims) != 0) rc = -1;
  else if (h5io_type(f, "order", &cls, &tsize, &sign) != 0 || cls != H5T_INTEGER)
    rc = err_set("'order' must hold integers");
  else if (nd != 2 || dims[0] < E || dims[1] != n)
    rc = err_set("'order' must be epochs x n_train = %lld x %lld (or more rows)", (long long)E, (long long)n);
  else {
    T->orders = xmalloc((size_t)E * n * sizeof(int));
    rc = h5io_read_rows(f, "order", H5T_NATIVE_INT, 0, E, T->orders);
  }
  H5Fclose(f);
  uint8_t *seen = rc == 0 ? xcalloc((size_t)n, 1) : NULL;
  for (int64_t e = 0; rc == 0 && e < E; e++) {
    const int *o = T->orders + e * n;
    memset(seen, 0, (size_t)n);
    for (int64_t i = 0; rc == 0 && i < n; i++) {
      if (o[i] < 0 || o[i] >= n || seen[o[i]])
        rc = err_set("row %lld (epoch %lld) is not a permutation of 0..%lld: %d at position %lld", (long long)e,
                     (long long)e + 1, (long long)n - 1, o[i], (long long)i);
      else seen[o[i]] = 1;
    }
  }
  free(seen);
  return rc ? err_set("order_from %s: %s", path, err_msg()) : 0;
}

static void build(Trainer *T) {
  const Config *c = &T->cfg;
  int in_c = T->tr_info.kind == DATASET_IMAGES ? T->tr_info.channels : T->tr_info.F;
  int in_h = T->tr_info.kind == DATASET_IMAGES ? T->tr_info.H : 1, in_w = T->tr_info.kind == DATASET_IMAGES ? T->tr_info.W : 1;
  T->eval_chunk = T->B > 256 ? T->B : 256;
  CHECK(model_init(&T->model, cfg_arch_name(c->arch), in_c, in_h, in_w, T->D, T->eval_chunk) == 0, "%s", err_msg());
  T->n_backbone = model_num_params(&T->model);
  T->n_params = T->n_backbone + (size_t)T->M * T->D;
  T->params = xmalloc_f32(T->n_params);
  T->grads = xmalloc_f32(T->n_params + LOSS_SLOTS);
  T->proxies = T->params + T->n_backbone;
  T->dproxies = T->grads + T->n_backbone;
  model_bind(&T->model, T->params, T->grads);
  /* initialisation in PyTorch's order: the network, then the proxies
   * (kaiming_uniform(a=sqrt 5) of a D x M tensor: U(-1/sqrt(M), 1/sqrt(M))) */
  Rng rng;
  rng_init(&rng, (uint64_t)c->seed);
  model_init_params(&T->model, &rng);
  float bound = 1.0f / sqrtf((float)T->M);
  for (int d = 0; d < T->D; d++)   /* drawn in the D x M order of the reference tensor */
    for (int j = 0; j < T->M; j++) T->proxies[(size_t)j * T->D + d] = bound * (2 * rng_uniform(&rng) - 1);

  proxygml_init(&T->loss, T->B, T->D, T->C, T->N, T->K, (float)c->lambda, (float)c->scale);
  T->loss.batch_norm = T->G;   /* the mean over the global batch */
  T->loss.reg_begin = (int)((int64_t)T->M * T->d.rank / T->d.size);   /* each rank its slice of proxy rows */
  T->loss.reg_end = (int)((int64_t)T->M * (T->d.rank + 1) / T->d.size);

  adam_init(&T->opt, T->n_params, c->beta1, c->beta2, c->eps, c->weight_decay);
  size_t head_off, head_cnt;
  model_embedding_range(&T->model, &head_off, &head_cnt);
  T->group_body = adam_add_group(&T->opt, 0, head_off, c->lr);
  T->group_head = adam_add_group(&T->opt, head_off, head_off + head_cnt, c->lr);
  T->group_proxy = adam_add_group(&T->opt, T->n_backbone, T->n_params, c->proxy_lr);

  int P = T->d.size, G = T->G, B = T->B, rs = T->tr_info.row_size;
  T->perm = xmalloc((size_t)T->tr_info.n * sizeof(int));
  T->counts = xmalloc(4 * (size_t)P * sizeof(int));
  T->cursor = xmalloc((size_t)P * sizeof(int));
  T->displs = T->counts + P; T->rcounts = T->counts + 2 * P; T->rdispls = T->counts + 3 * P;
  T->sendbuf = xmalloc((size_t)G * T->row_bytes);
  T->recvbuf = xmalloc((size_t)B * T->row_bytes);
  T->rows = xmalloc((size_t)B * T->row_bytes);
  T->order = xmalloc((size_t)B * sizeof(int));
  T->iota = xmalloc((size_t)T->eval_chunk * sizeof(int));
  for (int i = 0; i < T->eval_chunk; i++) T->iota[i] = i;
  T->x = xmalloc_f32((size_t)T->eval_chunk * rs);
  T->y = xmalloc((size_t)T->eval_chunk * sizeof(int32_t));
  T->dx = xmalloc_f32((size_t)B * T->D);

  int64_t nt = T->te_info.n, nl = T->te.nrows;
  T->emb_local = xmalloc_f32((size_t)(nl ? nl : 1) * T->D);
  T->emb_all = xmalloc_f32((size_t)nt * T->D);
  T->recv_counts = xmalloc(2 * (size_t)P * sizeof(int));
  T->recv_displs = T->recv_counts + P;
  T->enorm = xmalloc_f32((size_t)T->eval_chunk);
  T->wn = xmalloc_f32((size_t)T->M * T->D);
  T->sim = xmalloc_f32((size_t)T->eval_chunk * T->M);
  T->sub_idx = xmalloc((size_t)(nl ? nl : 1) * T->K * sizeof(int));
  T->sub_sim = xmalloc_f32((size_t)(nl ? nl : 1) * T->K);
  T->sel_count = xmalloc((size_t)T->M * sizeof(int64_t));
  T->topk_v = xmalloc_f32((size_t)T->K);
  T->topk_i = xmalloc((size_t)T->K * sizeof(int));
  metrics_eval_init(&T->ev, T->te_labels_all, (int)nt, T->D, T->ks, T->nk, 0, 0);

  const char *mcols[RUNTABLE_MAXCOLS] = {"epoch", "step", "loss", "loss_cls", "loss_reg", "lr", "proxy_lr",
                                         "train_seconds", "eval_seconds"};
  char knames[METRICS_MAXK][32];
  int nm = 9;
  for (int i = 0; i < T->nk; i++) {
    snprintf(knames[i], sizeof knames[i], "recall_at_%d", T->ks[i]);
    mcols[nm++] = knames[i];
  }
  mcols[nm++] = "map_at_r";
  mcols[nm++] = "r_precision";
  mcols[nm++] = "nmi";
  runtable_init(&T->metrics, nm, mcols);
  const char *tcols[NPHASE + 2] = {"epoch", "samples_per_second"};
  for (int p = 0; p < NPHASE; p++) tcols[p + 2] = PHASE_NAMES[p];
  runtable_init(&T->timing, NPHASE + 2, tcols);
  T->loss_trace = xmalloc((size_t)(T->steps_per_epoch * c->epochs + 1) * 3 * sizeof(double));
  if (c->dump_grads > 0 && T->d.rank == 0) T->grad_dump = xmalloc_f32((size_t)c->dump_grads * T->n_params);
  T->start_epoch = 1;
}

static void trainer_free(Trainer *T) {
  model_free(&T->model);
  proxygml_free(&T->loss);
  adam_free(&T->opt);
  metrics_eval_free(&T->ev);
  dataset_split_free(&T->tr);
  dataset_split_free(&T->te);
  runtable_free(&T->metrics);
  runtable_free(&T->timing);
  void *bufs[] = {T->params, T->grads, T->tr_labels, T->perm, T->orders, T->counts, T->cursor, T->sendbuf, T->recvbuf, T->rows, T->order,
                  T->iota, T->x, T->y, T->dx, T->emb_local, T->emb_all, T->te_labels_all, T->recv_counts, T->enorm, T->wn,
                  T->sim, T->sub_idx, T->sub_sim, T->sel_count, T->topk_v, T->topk_i, T->loss_trace, T->grad_dump};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* ------------------------------------------------------------ one step */

/* This rank's slice [r B, (r+1) B) of global batch `step` of the epoch's
 * permutation: owners send the rows they hold (one Alltoallv), then
 * dataset_batch turns them into the network input. */
static void train_gather_batch(Trainer *T, int64_t step) {
  const int P = T->d.size, r = T->d.rank, B = T->B;
  const int64_t n = T->tr_info.n;
  const int *g = T->perm + step * T->G;
  const size_t rb = T->row_bytes;
  const uint8_t *mine = T->tr.images ? T->tr.images : (const uint8_t *)T->tr.features;
  memset(T->counts, 0, 4 * (size_t)P * sizeof(int));
  /* what I send: positions q (any consumer) whose sample I own, in q order */
  size_t off = 0;
  for (int dest = 0; dest < P; dest++) {
    T->displs[dest] = (int)off;
    for (int q = dest * B; q < (dest + 1) * B; q++)
      if (owner_of(g[q], n, P) == r) {
        memcpy(T->sendbuf + off, mine + (size_t)(g[q] - T->tr.row0) * rb, rb);
        off += rb;
      }
    T->counts[dest] = (int)(off - (size_t)T->displs[dest]);
  }
  /* what I receive: my positions, grouped by owner, in q order within each */
  int *cur = T->cursor;
  for (int o = 0; o < P; o++) cur[o] = 0;
  for (int q = 0; q < B; q++) cur[owner_of(g[r * B + q], n, P)]++;
  int acc = 0;
  for (int o = 0; o < P; o++) {
    T->rcounts[o] = cur[o] * (int)rb;
    T->rdispls[o] = acc * (int)rb;
    int c = cur[o];
    cur[o] = acc;
    acc += c;
  }
  for (int q = 0; q < B; q++) {
    int o = owner_of(g[r * B + q], n, P);
    T->order[q] = cur[o]++;
    T->y[q] = T->tr_labels[g[r * B + q]];
  }
  DIST_CHECK(MPI_Alltoallv(T->sendbuf, T->counts, T->displs, MPI_BYTE, T->recvbuf, T->rcounts, T->rdispls, MPI_BYTE,
                           T->d.comm));
  for (int q = 0; q < B; q++) memcpy(T->rows + (size_t)q * rb, T->recvbuf + (size_t)T->order[q] * rb, rb);
  DatasetSplit view = T->tr;   /* the batch rows as a split of B rows */
  view.row0 = 0;
  view.nrows = B;
  view.images = T->tr.images ? T->rows : NULL;
  view.features = T->tr.features ? (float *)T->rows : NULL;
  view.labels = T->y;
  dataset_batch(T->x, NULL, &view, T->iota, B);
}

/* dump_grads: keep the reduced gradient, and how near the step's subgraphs
 * were to a tie (a tie broken differently on another rank count changes the
 * gradient by more than float rounding) */
static void dump_step(Trainer *T) {
  float margin = INFINITY;
  for (int b = 0; b < T->B; b++) {
    float m = proxygml_topk_margin(&T->loss, b, T->y[b]);
    margin = m < margin ? m : margin;
  }
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &margin, 1, MPI_FLOAT, MPI_MIN, T->d.comm));
  if (T->grad_dump) {
    T->dump_margin[T->grads_dumped] = margin;
    memcpy(T->grad_dump + (size_t)T->grads_dumped * T->n_params, T->grads, T->n_params * sizeof(float));
  }
  T->grads_dumped++;
}

static float train_step(Trainer *T, int64_t step) {
  double t0 = now_sec();
  train_gather_batch(T, step);
  double t1 = now_sec();
  model_forward(&T->model, T->x, T->B);
  double t2 = now_sec();
  memset(T->grads, 0, (T->n_params + LOSS_SLOTS) * sizeof(float));
  memset(T->dx, 0, (size_t)T->B * T->D * sizeof(float));
  proxygml_forward(&T->loss, T->model.out, T->y, T->proxies, T->B);
  proxygml_backward(&T->loss, T->dx, T->dproxies);
  double t3 = now_sec();
  model_backward(&T->model, T->dx, T->B);
  double t4 = now_sec();
  float *stats = T->grads + T->n_params;
  stats[0] = T->loss.loss; stats[1] = T->loss.loss_cls; stats[2] = T->loss.loss_reg;
  stats[3] = g_stop_signal ? 1.0f : 0.0f;
  if (fault_here(T, FAULT_NAN, T->step)) stats[0] = NAN;
  fault_crash(T);
  dist_allreduce_sum(&T->d, T->grads, T->n_params + LOSS_SLOTS);
  double t5 = now_sec();
  if (T->grads_dumped < T->cfg.dump_grads) dump_step(T);
  if (isfinite(stats[0])) adam_step(&T->opt, T->params, T->grads);   /* the same verdict on every rank */
  double t6 = now_sec();
  T->phase[PH_DATA] += t1 - t0; T->phase[PH_FORWARD] += t2 - t1; T->phase[PH_LOSS] += t3 - t2;
  T->phase[PH_BACKWARD] += t4 - t3; T->phase[PH_ALLREDUCE] += t5 - t4; T->phase[PH_OPTIM] += t6 - t5;
  return stats[0];
}

/* ------------------------------------------------------------ evaluation */

/* Embeds this rank's test rows, gathers all embeddings, computes the
 * retrieval metrics over this rank's queries (summed over ranks), NMI on
 * rank 0 (broadcast), and the inference subgraphs of this rank's rows. */
static void evaluate(Trainer *T, Metrics *m) {
  const int D = T->D, M = T->M, K = T->K, P = T->d.size;
  T->evaluated = 1;
  const int64_t nl = T->te.nrows, nt = T->te_info.n;
  for (int64_t s = 0; s < nl; s += T->eval_chunk) {
    int cnt = (int)(nl - s < T->eval_chunk ? nl - s : T->eval_chunk);
    int *idx = T->iota;   /* rows s .. s+cnt-1 of the shard */
    DatasetSplit view = T->te;
    view.images = T->te.images ? T->te.images + (size_t)s * T->te_info.H * T->te_info.W * T->te_info.channels : NULL;
    view.features = T->te.features ? T->te.features + (size_t)s * T->te_info.F : NULL;
    view.labels = T->te.labels + s;
    view.nrows = cnt;
    dataset_batch(T->x, NULL, &view, idx, cnt);
    model_forward(&T->model, T->x, cnt);
    l2norm_forward(T->emb_local + (size_t)s * D, T->enorm, T->model.out, cnt, D);
  }
  for (int r = 0; r < P; r++) {
    int64_t a = shard_start(nt, r, P), b = shard_start(nt, r + 1, P);
    T->recv_counts[r] = (int)((b - a) * D);
    T->recv_displs[r] = (int)(a * D);
  }
  DIST_CHECK(MPI_Allgatherv(T->emb_local, (int)(nl * D), MPI_FLOAT, T->emb_all, T->recv_counts, T->recv_displs,
                            MPI_FLOAT, T->d.comm));
  MetricsSums sums;
  metrics_sums_reset(&sums, T->ks, T->nk);
  int q0 = (int)T->te.row0;
  if (nl > 0) metrics_sums_add_range(&sums, &T->ev, T->emb_all, T->te_labels_all, q0, q0 + (int)nl);
  dist_allreduce_sum_f64(&T->d, sums.hits, METRICS_NSUM);
  metrics_finish(m, &sums);
  double nmi = NAN;
  if (T->d.rank == 0) {
    int k = metrics_count_distinct(T->te_labels_all, (int)nt);
    int *assign = xmalloc((size_t)nt * sizeof(int));
    float *cent = xmalloc_f32((size_t)k * D);
    double inertia;
    MetricsKmeansOpts ko = metrics_kmeans_defaults();
    ko.restarts = T->cfg.kmeans_restarts;
    ko.seed = (uint64_t)T->cfg.seed;
    metrics_kmeans(assign, cent, &inertia, T->emb_all, (int)nt, D, k, &ko);
    nmi = metrics_nmi(T->te_labels_all, assign, (int)nt);
    free(assign);
    free(cent);
  }
  /* the other ranks wait here while rank 0 runs k-means, which may outlast
   * collective_timeout on a large test set: this one wait is not watched */
  int watch = dist_set_timeout(&T->d, 0);
  dist_bcast(&T->d, &nmi, sizeof nmi);
  dist_set_timeout(&T->d, watch);
  m->nmi = nmi;

  /* inference subgraphs: the K most similar proxies of each test row */
  for (int j = 0; j < M; j++) {
    const float *p = T->proxies + (size_t)j * D;
    double ss = 0;
    for (int d = 0; d < D; d++) ss += (double)p[d] * p[d];
    float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
    for (int d = 0; d < D; d++) T->wn[(size_t)j * D + d] = p[d] * inv;
  }
  memset(T->sel_count, 0, (size_t)M * sizeof(int64_t));
  for (int64_t s = 0; s < nl; s += T->eval_chunk) {
    int cnt = (int)(nl - s < T->eval_chunk ? nl - s : T->eval_chunk);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cnt, M, D, 1.0f, T->emb_local + (size_t)s * D, D, T->wn, D,
                0.0f, T->sim, M);
    for (int i = 0; i < cnt; i++) {
      int *out = T->sub_idx + (size_t)(s + i) * K;
      proxygml_topk(out, T->sim + (size_t)i * M, M, K, T->topk_v, T->topk_i);
      for (int k = 0; k < K; k++) {
        T->sub_sim[(size_t)(s + i) * K + k] = T->sim[(size_t)i * M + out[k]];
        T->sel_count[out[k]]++;
      }
    }
  }
  if (P > 1)
    DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, T->sel_count, M, MPI_INT64_T, MPI_SUM, T->d.comm));
}

/* ------------------------------------------------------------ record */

static int write_run(Trainer *T, const char *status, const char *message) {
  char end[32] = "";
  if (strcmp(status, "running")) runfile_timestamp(end);
  RunSnapshot s = {
    .path = T->run_path, .cfg = &T->cfg, .status = status, .message = message, .command_line = T->cmdline,
    .start_time = T->start_time, .end_time = end, .ranks = T->d.size, .threads = T->d.threads,
    .data_path = T->data_abs, .cwd = T->cwd, .wall_seconds = T->wall_before + now_sec() - T->session_start,
    .class_names = (const char *const *)T->te.class_names, .n_classes = T->te_info.n_classes,
    .C = T->C, .N = T->N, .K = T->K, .D = T->D, .n_train = T->tr_info.n, .n_test = T->te_info.n,
    .n_params = (int64_t)T->n_params, .steps_done = T->step, .epochs_done = T->epochs_done,
    .metrics = &T->metrics, .timing = &T->timing,
    .emb = T->evaluated ? T->emb_local : NULL, .emb_labels = T->te.labels, .emb_row0 = T->te.row0,
    .emb_rows = T->te.nrows, .proxies = T->proxies,
    .sub_idx = T->evaluated ? T->sub_idx : NULL, .sub_sim = T->sub_sim,
    .sel_count = T->evaluated ? T->sel_count : NULL,
    .loss_trace = T->loss_trace, .params = T->params,
  };
  double rss = peak_rss_mib();
  DIST_CHECK(MPI_Allreduce(&rss, &s.peak_rss_mib, 1, MPI_DOUBLE, MPI_MAX, T->d.comm));
  return runfile_write(&s, &T->d);
}

/* evaluates and appends a row to the metrics table */
static void record_eval(Trainer *T, int epoch, const double *loss) {
  double t0 = now_sec();
  Metrics m;
  evaluate(T, &m);
  double row[RUNTABLE_MAXCOLS];
  int c = 0;
  row[c++] = epoch;
  row[c++] = (double)T->step;
  for (int i = 0; i < 3; i++) row[c++] = loss ? loss[i] : NAN;
  row[c++] = T->opt.groups[T->group_head].lr;
  row[c++] = T->opt.groups[T->group_proxy].lr;
  row[c++] = T->train_seconds;
  row[c++] = now_sec() - t0;
  for (int i = 0; i < T->nk; i++) row[c++] = m.recall[i];
  row[c++] = m.map_r;
  row[c++] = m.r_precision;
  row[c++] = m.nmi;
  runtable_add(&T->metrics, row);
}

/* every rank hashes its parameter bytes; the replicas agree when the
 * smallest and the largest hash over ranks are equal */
static int replicas_agree(Trainer *T) {
  const unsigned char *p = (const unsigned char *)T->params;
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < T->n_params * sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ULL;
  uint64_t lo = h, hi = h;
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, T->d.comm));
  DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, T->d.comm));
  return lo == hi;
}

/* ------------------------------------------------------------ progress */

/* A bar only on a terminal that a person watches. mpirun hands rank 0 a
 * pseudo-terminal even when its own output goes to a file (a Slurm job's
 * log), so under a launcher the answer is lines unless PROXYGML_PROGRESS=bar;
 * PROXYGML_PROGRESS=lines forces lines anywhere. */
static int progress_bar_wanted(void) {
  const char *want = getenv("PROXYGML_PROGRESS");
  if (want && !strcmp(want, "bar")) return 1;
  if (want && !strcmp(want, "lines")) return 0;
  int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_RANK") || getenv("PMIX_RANK") || getenv("SLURM_STEP_ID");
  return !launched && isatty(fileno(stdout));
}

static void progress(Trainer *T, int epoch, int64_t done, int64_t total, double loss, double t_epoch, double t_run,
                     int64_t steps_left, int final) {
  if (T->d.rank != 0) return;
  /* a terminal gets a bar redrawn in place; a file (Slurm's output, a pipe)
   * gets plain lines: one a minute within an epoch, and one at its end */
  static double last_plain;
  int tty = progress_bar_wanted();
  if (!final && !tty && t_run - last_plain < 60) return;
  if (!tty) last_plain = t_run;
  double sps = t_epoch > 0 ? (double)done * T->G / t_epoch : 0;
  double per_step = done > 0 ? t_epoch / (double)done : 0;
  double eta = per_step * (double)steps_left;
  char bar[31];
  int fill = total ? (int)(30 * done / total) : 30;
  for (int i = 0; i < 30; i++) bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  printf("%sepoch %d/%d [%s] %lld/%lld loss %.4f  %.0f samples/s  ETA %d:%02d  (%.0fs)%s", tty ? "\r" : "", epoch,
         T->cfg.epochs, bar, (long long)done, (long long)total, loss, sps, (int)(eta / 60), (int)fmod(eta, 60), t_run,
         final || !tty ? "\n" : "");
  fflush(stdout);
}

static void print_metrics_row(Trainer *T, int r) {
  const double *row = T->metrics.rows + (size_t)r * T->metrics.ncols;
  printf("  %-9s", (int)row[0] == 0 ? "untrained" : "");
  printf("%5d", (int)row[0]);
  for (int c = 9; c < T->metrics.ncols; c++) printf(" %9.4f", row[c]);
  printf("\n");
}

static void print_summary(Trainer *T) {
  if (T->d.rank != 0 || T->metrics.nrows == 0) return;
  printf("\n  %-9s%5s", "", "epoch");
  for (int c = 9; c < T->metrics.ncols; c++) {
    char h[32];
    snprintf(h, sizeof h, "%s", T->metrics.names[c]);
    if (!strncmp(h, "recall_at_", 10)) snprintf(h, sizeof h, "R@%s", T->metrics.names[c] + 10);
    else if (!strcmp(h, "map_at_r")) snprintf(h, sizeof h, "MAP@R");
    else if (!strcmp(h, "r_precision")) snprintf(h, sizeof h, "RP");
    else if (!strcmp(h, "nmi")) snprintf(h, sizeof h, "NMI");
    printf(" %9s", h);
  }
  printf("\n");
  print_metrics_row(T, 0);
  if (T->metrics.nrows > 1) print_metrics_row(T, T->metrics.nrows - 1);
  printf("\npeak memory %.0f MiB per rank; run file: %s\n", peak_rss_mib(), T->run_path);
  fflush(stdout);
}

/* a signal that arrived during an evaluation: agreed on at the epoch's end */
static int g_stop_signal_agreed(Trainer *T) {
  int mine = g_stop_signal != 0, any = 0;
  DIST_CHECK(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, T->d.comm));
  return any;
}

/* ------------------------------------------------------------ checkpoints */

static Checkpoint checkpoint_view(Trainer *T, int epoch, int64_t step_in_epoch) {
  return (Checkpoint){.step = T->step, .epoch = epoch, .step_in_epoch = step_in_epoch,
                      .config_hash = cfg_hash(&T->cfg), .ranks = T->d.size, .train_seconds = T->train_seconds,
                      .wall_seconds = T->wall_before + now_sec() - T->session_start,
                      .n_params = T->n_params, .params = T->params, .opt = &T->opt, .loss_trace = T->loss_trace,
                      .trace_cap = T->steps_per_epoch * T->cfg.epochs, .metrics = &T->metrics, .timing = &T->timing};
}

/* rank 0 writes (the state is the same on every rank); all agree on the outcome */
static int save_checkpoint(Trainer *T, int epoch, int64_t step_in_epoch) {
  Checkpoint c = checkpoint_view(T, epoch, step_in_epoch);
  return agree(T, T->d.rank != 0 || checkpoint_save(T->out_dir, &c) == 0);
}

/* --resume auto: every rank loads the newest complete checkpoint (the same
 * file: the ranks check that they agree on its step and hash). Its header is
 * checked against this configuration before the payload is read into buffers
 * sized for it. Returns 1 resumed, 0 fresh start, -1 refused (message
 * printed). */
static int resume(Trainer *T) {
  Checkpoint c = checkpoint_view(T, 1, 0);
  const uint64_t want = cfg_hash(&T->cfg);
  const int64_t total = T->steps_per_epoch * T->cfg.epochs;
  char used[4200] = "";
  int64_t before = INT64_MAX;
  for (int tried = 0;; tried++) {
    int got = checkpoint_find_latest(T->out_dir, before, T->d.rank == 0, &c, used, sizeof used);
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
                   T->out_dir);
    if (!agree(T, rc == 0)) return -1;
    long long step[2] = {got == 1 ? c.step : -1, got == 1 ? -c.step : 1};
    uint64_t hash[2] = {got == 1 ? c.config_hash : 0, got == 1 ? ~c.config_hash : ~0ULL};
    DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, step, 2, MPI_LONG_LONG, MPI_MIN, T->d.comm));
    DIST_CHECK(MPI_Allreduce(MPI_IN_PLACE, hash, 2, MPI_UINT64_T, MPI_MIN, T->d.comm));
    int same = step[0] == -step[1] && hash[0] == ~hash[1];
    char lo[32] = "no checkpoint";
    if (step[0] >= 0) snprintf(lo, sizeof lo, "step %lld", step[0]);
    if (!same)
      err_set("the ranks see different checkpoints in %s (one %s, another step %lld): is it on a file system that "
              "every rank shares?", T->out_dir, lo, -step[1]);
    if (!agree(T, same)) return -1;
    if (got == 0) return 0;
    int loaded = checkpoint_load(used, &c) == 0;
    int first = dist_first_failing(&T->d, !loaded);
    if (first < 0) break;
    if (T->d.rank == first)
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
  if (c.ranks != T->d.size)
    dist_log(&T->d, "warning: the checkpoint was written by %d ranks, this run has %d: results will differ from an "
                    "uninterrupted run within float tolerance\n", c.ranks, T->d.size);
  dist_log(&T->d, "resuming from %s: epoch %d, step %lld\n", used, c.epoch, (long long)c.step);
  return 1;
}

/* ------------------------------------------------------------ the run */

/* the mean loss terms of the steps [s0, s1) of the trace */
static void trace_mean(const Trainer *T, int64_t s0, int64_t s1, double mean[3]) {
  for (int k = 0; k < 3; k++) {
    double sum = 0;
    for (int64_t s = s0; s < s1; s++) sum += T->loss_trace[3 * s + k];
    mean[k] = s1 > s0 ? sum / (double)(s1 - s0) : NAN;
  }
}

static void print_eval(Trainer *T, const char *prefix) {
  if (T->d.rank != 0) return;
  const double *row = T->metrics.rows + (size_t)(T->metrics.nrows - 1) * T->metrics.ncols;
  printf("%sR@%d %.4f  MAP@R %.4f  NMI %.4f  (eval %.1fs)\n", prefix, T->ks[0], row[9], row[9 + T->nk],
         row[11 + T->nk], row[8]);
  fflush(stdout);
}

static int stop_preempted(Trainer *T, int epoch, int64_t step_in_epoch) {
  char msg[160];
  snprintf(msg, sizeof msg, "stopped by a signal at epoch %d, step %lld; resume with --resume auto", epoch,
           (long long)T->step);
  if (!save_checkpoint(T, epoch, step_in_epoch)) return TRAIN_EXIT_FAILED;
  if (!agree(T, write_run(T, "preempted", msg) == 0)) return TRAIN_EXIT_FAILED;
  dist_log(&T->d, "\n%s\n", msg);
  return TRAIN_EXIT_REQUEUE;
}

/* dump_grads: DIR/grads.h5, dataset grads (steps x n_params), the summed
 * gradient of [backbone | proxies] as Adam received it */
static int write_grad_dump(Trainer *T) {
  if (!T->grad_dump) return 0;
  char path[CFG_PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/grads.h5", T->out_dir);
  hid_t f;
  if (h5io_create(path, &f) != 0) return -1;
  int64_t dims[2] = {T->grads_dumped, (int64_t)T->n_params};
  int rc = h5io_write(f, "grads", H5T_NATIVE_FLOAT, 2, dims, T->grad_dump);
  if (rc == 0) rc = h5io_set_attr_i64(f, "n_backbone", (int64_t)T->n_backbone);
  if (rc == 0) rc = h5io_set_attr_i64(f, "ranks", T->d.size);
  int64_t mdims[1] = {T->grads_dumped};
  if (rc == 0) rc = h5io_write(f, "topk_margin", H5T_NATIVE_FLOAT, 1, mdims, T->dump_margin);
  if (H5Fclose(f) < 0 && rc == 0) rc = err_set("%s: cannot close", path);
  return rc;
}

static int run(Trainer *T) {
  const Config *c = &T->cfg;
  int64_t n = T->tr_info.n, total_steps = T->steps_per_epoch * c->epochs;
  double run_start = now_sec();
  if (g_stop_signal_agreed(T)) return stop_preempted(T, T->start_epoch, T->start_step_in_epoch);   /* during setup */
  if (T->step == 0 && T->metrics.nrows == 0 && cfg_eval_at(c, 0)) {
    record_eval(T, 0, NULL);
    if (!agree(T, write_run(T, "running", "") == 0)) return TRAIN_EXIT_FAILED;
    print_eval(T, "epoch 0 (untrained): ");
  }
  for (int epoch = T->start_epoch; epoch <= c->epochs; epoch++) {
    int64_t s0 = epoch == T->start_epoch ? T->start_step_in_epoch : 0;
    if (s0 == 0) optim_decay_lr(&T->opt, epoch - 1, c->decay_epochs.v, c->decay_epochs.n, c->decay_rate);
    T->opt.groups[T->group_body].frozen = epoch <= c->warm;   /* warm-up: only the embedding layer and proxies */
    if (T->orders) memcpy(T->perm, T->orders + (size_t)(epoch - 1) * n, (size_t)n * sizeof *T->perm);
    else {
      Rng prng;
      rng_init(&prng, (uint64_t)c->seed * 1000003u + (uint64_t)epoch);   /* the epoch's permutation, same on every rank */
      rng_permutation(&prng, T->perm, (int)n);
    }
    memset(T->phase, 0, sizeof T->phase);
    int64_t first = T->step - s0;   /* trace index of the epoch's first step */
    double t_epoch0 = now_sec(), last_print = 0, banked = 0;   /* banked: seconds already in train_seconds */
    for (int64_t s = s0; s < T->steps_per_epoch; s++) {
      float loss = train_step(T, s);
      const float *st = T->grads + T->n_params;
      for (int k = 0; k < 3; k++) T->loss_trace[3 * T->step + k] = st[k];
      T->step++;
      if (!isfinite(loss)) {
        char msg[256];
        snprintf(msg, sizeof msg, "non-finite loss %g at epoch %d step %lld (lower the learning rates or the scale?)",
                 loss, epoch, (long long)T->step);
        if (T->d.rank == 0) fprintf(stderr, "\nproxygml train: %s\n", msg);
        write_run(T, "failed", msg);
        return TRAIN_EXIT_FAILED;
      }
      if (c->check_sync_every > 0 && T->step % c->check_sync_every == 0 && !replicas_agree(T)) {
        char msg[160];
        snprintf(msg, sizeof msg, "the parameter replicas differ across ranks at step %lld", (long long)T->step);
        if (T->d.rank == 0) fprintf(stderr, "\nproxygml train: %s\n", msg);
        write_run(T, "failed", msg);
        return TRAIN_EXIT_FAILED;
      }
      if (st[3] > 0) {   /* a rank got SIGUSR1/SIGTERM: every rank stops after this same step */
        T->train_seconds += now_sec() - t_epoch0 - banked;
        return stop_preempted(T, epoch, s + 1);
      }
      if (c->checkpoint_every > 0 && T->step % c->checkpoint_every == 0 && s + 1 < T->steps_per_epoch) {
        double so_far = now_sec() - t_epoch0;   /* the checkpoint holds the training time so far */
        T->train_seconds += so_far - banked;
        banked = so_far;
        if (!save_checkpoint(T, epoch, s + 1)) return TRAIN_EXIT_FAILED;
      }
      double now = now_sec();
      if (now - last_print > 0.25) {
        last_print = now;
        double m[3];
        trace_mean(T, first, T->step, m);
        progress(T, epoch, s + 1, T->steps_per_epoch, m[0], now - t_epoch0, now - run_start, total_steps - T->step, 0);
      }
    }
    double t_train = now_sec() - t_epoch0;
    T->train_seconds += t_train - banked;
    T->epochs_done = epoch;
    double mean[3];
    trace_mean(T, first, T->step, mean);
    progress(T, epoch, T->steps_per_epoch, T->steps_per_epoch, mean[0], t_train, now_sec() - run_start,
             total_steps - T->step, 1);
    if (cfg_eval_at(c, epoch)) {
      record_eval(T, epoch, mean);
      T->phase[PH_EVAL] = T->metrics.rows[(size_t)(T->metrics.nrows - 1) * T->metrics.ncols + 8];
      print_eval(T, "          ");
    }
    double trow[NPHASE + 2];
    trow[0] = epoch;
    trow[1] = (double)(T->steps_per_epoch - s0) * T->G / t_train;
    for (int p = 0; p < NPHASE; p++) trow[p + 2] = T->phase[p];
    runtable_add(&T->timing, trow);
    int last = epoch == c->epochs;
    if (!agree(T, write_run(T, last ? "complete" : "running", "") == 0)) return TRAIN_EXIT_FAILED;
    if (!last && !save_checkpoint(T, epoch + 1, 0)) return TRAIN_EXIT_FAILED;
    if (!last && g_stop_signal_agreed(T)) return stop_preempted(T, epoch + 1, 0);
  }
  if (c->epochs == 0 && !agree(T, write_run(T, "complete", "") == 0)) return TRAIN_EXIT_FAILED;
  if (!agree(T, T->d.rank != 0 || write_grad_dump(T) == 0)) return TRAIN_EXIT_FAILED;
  print_summary(T);
  return TRAIN_EXIT_OK;
}

int train_cmd_train(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
  static Trainer T;   /* large; zeroed */
  memset(&T, 0, sizeof T);
  /* before anything slow: a preemption during setup must not kill the ranks */
  signal(SIGUSR1, on_stop_signal);
  signal(SIGTERM, on_stop_signal);
  dist_init(&T.d, &argc, &argv);
  runfile_timestamp(T.start_time);
  T.session_start = now_sec();
  parse_fault(&T);
  int rc = TRAIN_EXIT_BAD_INPUT;
  /* every rank parses the same file and data: errors are the same everywhere,
   * rank 0's struct is then broadcast so that all ranks hold the same bytes */
  if (!agree(&T, parse_args(&T, argc, argv) == 0)) goto done;
  dist_bcast(&T.d, &T.cfg, sizeof T.cfg);
  dist_set_timeout(&T.d, (int)T.cfg.collective_timeout);
  if (!realpath(T.cfg.data, T.data_abs)) snprintf(T.data_abs, sizeof T.data_abs, "%s", T.cfg.data);
  if (!getcwd(T.cwd, sizeof T.cwd)) T.cwd[0] = 0;
  if (!agree(&T, check_sizes(&T) == 0)) goto done;
  if (!agree(&T, T.d.rank != 0 || prepare_out_dir(&T) == 0)) goto done;
  /* a complete run has nothing to do (resubmitting a sweep finishes only what
   * is missing), unless `epochs` was raised: then it continues */
  dist_bcast(&T.d, &T.complete_epochs, sizeof T.complete_epochs);
  if (T.resume && T.complete_epochs == T.cfg.epochs) {
    dist_log(&T.d, "%s is complete (%d epochs): nothing to do; raise epochs to continue it\n", T.run_path,
             T.cfg.epochs);
    rc = TRAIN_EXIT_OK;
    goto done;
  }
  if (T.resume && T.complete_epochs >= 0)
    dist_log(&T.d, "%s is complete after %d epochs; epochs = %d: continuing it\n", T.run_path, T.complete_epochs,
             T.cfg.epochs);
  if (!agree(&T, load_data(&T) == 0)) goto done;
  dist_threads(&T.d, T.cfg.threads);
  build(&T);
  int resumed = T.resume ? resume(&T) : 0;   /* a resumed run takes its parameters from the checkpoint */
  if (resumed < 0 || !agree(&T, (resumed || load_init(&T) == 0) && load_orders(&T) == 0)) {
    trainer_free(&T);
    goto done;
  }
  dist_log(&T.d,
           "proxygml %s: %s on %s, %d rank%s x %d thread%s; C=%d N=%d K=%d D=%d, batch %d (%d per rank), "
           "%lld steps/epoch, %zu parameters\n",
           PROXYGML_VERSION, cfg_arch_name(T.cfg.arch), T.cfg.data, T.d.size, T.d.size > 1 ? "s" : "", T.d.threads,
           T.d.threads > 1 ? "s" : "", T.C, T.N, T.K, T.D, T.G, T.B, (long long)T.steps_per_epoch, T.n_params);
  char warning[256];
  if (train_sizes_warning(&(TrainSizes){.K = T.K, .N = T.N}, warning, sizeof warning))
    dist_log(&T.d, "warning: %s\n", warning);
  if (T.d.bound_cpus < T.d.threads)
    dist_log(&T.d, "warning: %d threads on %d bound CPU(s): run mpirun with --bind-to none or --map-by slot:pe=%d\n",
             T.d.threads, T.d.bound_cpus, T.d.threads);
  rc = run(&T);
  trainer_free(&T);
done:
  dist_finalize(&T.d);
  return rc;
}
