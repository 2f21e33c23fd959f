/* cfg.h: the configuration of a training run: every key with its default,
 * meaning and valid range, read from a libconfig file and `--set key=value`
 * overrides, checked, listed for --help, dumped back as a loadable file,
 * written as HDF5 attributes and hashed.
 *
 *   Config c;
 *   cfg_defaults(&c);                                  // never fails
 *   if (cfg_load(&c, "experiments/fmnist_mlp.cfg") != 0 ||
 *       cfg_set(&c, "epochs=1") != 0 ||                // each --set, in order
 *       cfg_set(&c, "decay_epochs=20,40") != 0 ||
 *       cfg_validate(&c) != 0) {                       // cross-key checks, last
 *     fprintf(stderr, "%s\n", err_msg());              // one line naming the key
 *     ...
 *   }
 *   int K;
 *   cfg_resolve_k(&c, C_of_dataset, &K);               // once C is known
 *
 * A file is flat `key = value;` lines (libconfig syntax, `#` comments):
 *
 *   N = 4;                  # integer keys take integers only (4.0 is an error)
 *   r = 0.25;               # number keys take 0.25, 1e-3 or 1
 *   arch = "mlp";           # strings and choices in double quotes
 *   decay_epochs = [20, 40];   # lists: arrays of integers; [] is empty
 *   eval_epochs = "all";    # (eval_epochs only) every epoch, 0 included
 *
 * Layers: cfg_load and cfg_set apply on top of what `c` holds, so defaults <
 * file(s) < overrides. Each value is type- and range-checked as it is stored;
 * a failed call leaves `c` untouched. Cross-key rules (k together with r,
 * eval epochs beyond `epochs`, K against C*N when C is given) are checked by
 * cfg_validate, after the last layer. Unknown keys are always errors (with a
 * "did you mean" hint), never ignored.
 *
 * K: `k` gives it directly, otherwise K = ceil((r*C)*N) evaluated left to
 * right in double (docs/loss.md 2). Only one may be chosen: a file
 * that sets k > 0 together with an r other than the default is an error;
 * setting one of them in a later layer (k > 0, or any r) resets the other, so
 * `--set k=12` works on a file that chose r.
 *
 * The loss: `loss` chooses ProxyGML (N, k or r, lambda, scale) or a baseline
 * (proxynca, proxyanchor, softtriple, normsoftmax), each with keys of its
 * own named after it (proxyanchor_alpha, ...). Keys of a loss that is not
 * chosen are kept but have no effect, and the hash leaves them out.
 *
 * Relative paths (`data`, `init_from`, `order_from`, `@include`): the
 * three files are relative to the working directory; `@include "x.cfg"` to the directory of the including file.
 *
 * Memory model: Config is plain data (fixed arrays, no pointers, no padding),
 * so copying it with `=` and broadcasting it from rank 0 as bytes
 * (MPI_Bcast(&c, sizeof c, MPI_BYTE, 0, comm)) are both complete.
 *
 * Limits of libconfig 1.5: integers beyond 32 bits need an `L` suffix in a
 * file (seed = 5000000000L;); without it libconfig silently wraps them.
 */
#ifndef PROXYGML_CFG_H
#define PROXYGML_CFG_H

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>

#define CFG_LIST_MAX 64     /* entries of one list key */
#define CFG_LIST_ALL (-1)   /* CfgList.n of eval_epochs = "all" */
#define CFG_NAME_MAX 64     /* bytes of `name`, NUL included */
#define CFG_PATH_MAX 1024   /* bytes of `data`, NUL included */

typedef enum { CFG_ARCH_MLP, CFG_ARCH_CNN, CFG_ARCH_LINEAR } CfgArch;
/* the loss (include/loss.h spells the same names) */
typedef enum { CFG_LOSS_PROXYGML, CFG_LOSS_PROXYNCA, CFG_LOSS_PROXYANCHOR, CFG_LOSS_SOFTTRIPLE, CFG_LOSS_NORMSOFTMAX } CfgLoss;

/* ascending, without repeats; n = CFG_LIST_ALL only where "all" is allowed */
typedef struct { int n; int v[CFG_LIST_MAX]; } CfgList;

typedef struct {
  /* run and data */
  char name[CFG_NAME_MAX];      /* run label: letters, digits, . _ - ("" = none) */
  char data[CFG_PATH_MAX];      /* dataset HDF5 file */
  char init_from[CFG_PATH_MAX]; /* initial parameters (HDF5); "" = seeded initialisation */
  char order_from[CFG_PATH_MAX];/* each epoch's sample order (HDF5); "" = seeded shuffle */
  /* loss and optimiser */
  double r;                     /* K = ceil((r*C)*N) when k = 0; (0, 1] */
  double lambda;                /* regulariser weight, >= 0 */
  double scale;                 /* softmax scale s, > 0 */
  double lr, proxy_lr;          /* Adam learning rates: network, proxies */
  double eps, weight_decay;     /* Adam epsilon (> 0), L2 decay on both groups */
  double beta1, beta2;          /* Adam moment decays, [0, 1) */
  double decay_rate;            /* lr factor at each decay epoch, (0, 1] */
  /* the baseline losses' hyper-parameters (docs/baselines.md) */
  double proxynca_scale;        /* ProxyNCA softmax scale, > 0 */
  double proxyanchor_margin;    /* Proxy-Anchor delta, [-1, 1] */
  double proxyanchor_alpha;     /* Proxy-Anchor alpha, (0, 300] */
  double softtriple_lambda;     /* SoftTriple logit scale, > 0 */
  double softtriple_gamma;      /* SoftTriple centre softmax temperature, > 0 */
  double softtriple_tau;        /* SoftTriple regulariser weight, >= 0 */
  double softtriple_margin;     /* SoftTriple delta, >= 0 */
  double normsoftmax_temperature;   /* Normalized Softmax T, > 0 */
  int64_t seed;                 /* initialisation and shuffling, >= 0 */
  int64_t dump_grads;           /* steps whose reduced gradient goes to DIR/grads.h5; 0 = off */
  int64_t collective_timeout;   /* seconds one MPI call may block before the job is ended; 0 = off */
  int64_t shard_proxies;        /* 1: proxies sharded by class across the ranks (include/proxyshard.h) */
  int64_t reg_sampled;          /* 1: the sampled regulariser of the sharded loss */
  int64_t nmi_max_clusters;     /* NMI (k-means, k = test classes) only up to this many; 0 = always */
  double bucket_mib;            /* gradient bucket size when overlapping, > 0 */
  int shard_optimizer;          /* ZeRO-1: Adam state and update split over the ranks */
  int overlap;                  /* reduce gradient buckets during the backward pass */
  int arch;                     /* CfgArch */
  int embed_dim;                /* D */
  int C;                        /* classes; 0 = from the dataset */
  int N;                        /* proxies per class */
  int k;                        /* K directly; 0 = from r */
  int warm;                     /* epochs 1..warm train only embedding layer + proxies */
  int epochs, batch;            /* batch: global, over all ranks */
  int kmeans_restarts;          /* k-means runs for NMI; the best inertia wins */
  int threads;                  /* OpenMP threads per rank; 0 = auto */
  int checkpoint_every;         /* steps; 0 = off */
  int max_steps_per_epoch;      /* 0 = the whole training set */
  int check_sync_every;         /* steps between replica consistency checks; 0 = off */
  int loss;                     /* CfgLoss */
  int softtriple_centers;       /* SoftTriple centres (proxies) per class */
  CfgList decay_epochs;         /* 1-based epochs from which the lr is multiplied by decay_rate */
  CfgList eval_epochs;          /* evaluate after these epochs (0 = untrained); or all */
  CfgList recall_ks;            /* k of Recall@k */
} Config;

void cfg_defaults(Config *c);
/* read a libconfig file on top of c; errors name file:line and the key */
int cfg_load(Config *c, const char *path);
/* one override "key=value"; lists as "20,40" (or "[20,40]", "" = empty) */
int cfg_set(Config *c, const char *key_eq_value);
/* a file libconfig could not parse: sets "FILE:LINE: <libconfig's text>, in: <that
 * line>" (FILE, the file libconfig names, may be an @include), returns -1 */
int cfg_syntax_error(const char *file, int line, const char *text);
/* Call before libconfig reads path: its scanner ends the process (exit 2,
 * "input in flex scanner failed") when an `@include` names a directory.
 * Names resolve as libconfig resolves them: include_dir/NAME, or NAME when
 * include_dir is NULL; included files are checked too. -1 with
 * "FILE:LINE: ..." for a directory, else 0 (libconfig reports the rest). */
int cfg_check_includes(const char *path, const char *include_dir);
/* every range again plus the cross-key rules; needs no file */
int cfg_validate(const Config *c);
/* K for a dataset of C classes (ignores c->C); error unless 1 <= K <= C*N */
int cfg_resolve_k(const Config *c, int C, int *K);

/* every key: default, range and meaning */
void cfg_print_help(FILE *out);
/* c as a commented libconfig file that cfg_load reads back to the same struct */
void cfg_dump(const Config *c, FILE *out);
/* every key as an attribute of loc (lists as text "20,40", "all" or ""),
 * plus "config" (the dump, without comments) and "config_hash" (16 hex digits).
 * Give it a group of its own: same-named attributes are replaced. */
int cfg_write_attrs(const Config *c, hid_t loc);
/* FNV-1a 64 of the canonical dump of the keys that shape the training
 * trajectory. Keys that can change when resuming a run (name, epochs,
 * eval_epochs, recall_ks, kmeans_restarts, nmi_max_clusters, threads, checkpoint_every,
 * check_sync_every, dump_grads, collective_timeout, shard_optimizer, overlap,
 * bucket_mib, shard_proxies) are left out; --help marks them. So are the keys of the
 * losses not chosen, and `loss` itself when it is proxygml: a ProxyGML
 * configuration hashes as it did before the baselines existed, and its
 * checkpoints still resume. */
uint64_t cfg_hash(const Config *c);

/* the schedule, in the keys' own conventions (epochs 1-based, 0 = before training) */
int cfg_eval_at(const Config *c, int epoch);                  /* 1 if evaluating after `epoch` */
double cfg_lr_at(const Config *c, double base_lr, int epoch); /* lr while training `epoch` */
const char *cfg_arch_name(int arch);                          /* "mlp", "cnn", "linear" */
const char *cfg_loss_name(int loss);                          /* "proxygml", "proxynca", ... */
/* proxies per class of the chosen loss: N (proxygml), softtriple_centers, else 1 */
int cfg_proxies_per_class(const Config *c);

#endif
