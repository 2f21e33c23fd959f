/* cfg.c: the table of configuration keys and everything it drives: defaults,
 * parsing of libconfig files and key=value overrides, validation, --help,
 * the loadable dump, HDF5 attributes and the resume hash. Broadcasting is
 * left to the caller: the struct is plain bytes. Adding a key is one line in
 * KEYS plus its field in Config. */
#include "cfg.h"

#include "common.h"
#include "h5io.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* no padding anywhere, so byte copies, broadcasts and memcmp see only fields */
_Static_assert(sizeof(Config) == offsetof(Config, recall_ks) + sizeof(CfgList), "Config has tail padding");
_Static_assert(offsetof(Config, r) == CFG_NAME_MAX + 3 * CFG_PATH_MAX, "Config has padding after the strings");

enum { T_INT, T_I64, T_F64, T_STR, T_ENUM, T_LIST };
enum {
  F_MIN_OPEN = 1,   /* min itself is out of range */
  F_MAX_OPEN = 2,
  F_ALL = 4,        /* list may be "all" */
  F_RESUME = 8,     /* may change when resuming: left out of the hash */
  F_NAME = 16,      /* string restricted to a file-name-safe alphabet */
};

typedef struct {
  const char *key;
  int type;
  size_t off, size;           /* field in Config */
  const char *def;            /* default, in --set syntax */
  double min, max;            /* value range (lists: of each entry; strings: min = least length) */
  int flags;
  const char *section;        /* non-NULL: first key of a section in help and dump */
  const char *help;
} Key;

static const char *const ARCH_NAMES[] = {"mlp", "cnn", "linear"};   /* CfgArch order */
#define NARCH ((int)(sizeof ARCH_NAMES / sizeof ARCH_NAMES[0]))
static const char *const LOSS_NAMES[] = {"proxygml", "proxynca", "proxyanchor", "softtriple", "normsoftmax"};
#define NLOSS ((int)(sizeof LOSS_NAMES / sizeof LOSS_NAMES[0]))

#define FLD(f) offsetof(Config, f), sizeof(((Config *)0)->f)
#define BIG 1e6             /* bound on counts of epochs: catches typos, limits nothing real */
#define IMAX 2147483647.0

static const Key KEYS[] = {
  {"name", T_STR, FLD(name), "", 0, 0, F_NAME | F_RESUME, "run",
   "label of the run, recorded with its results (letters, digits, . _ -)"},
  {"data", T_STR, FLD(data), "data/fmnist_zeroshot.h5", 1, 0, 0, NULL,
   "dataset HDF5 file, relative to the working directory"},
  {"arch", T_ENUM, FLD(arch), "mlp", 0, 0, 0, "network",
   "embedding network: mlp, cnn (as in the PyTorch baseline) or linear (one layer)"},
  {"embed_dim", T_INT, FLD(embed_dim), "128", 1, 65536, 0, NULL, "D, the embedding dimension"},
  {"loss", T_ENUM, FLD(loss), "proxygml", 0, 0, 0, "loss",
   "the loss: proxygml, or a baseline: proxynca, proxyanchor, softtriple, normsoftmax (docs/baselines.md)"},
  {"C", T_INT, FLD(C), "0", 0, IMAX, 0, NULL, "training classes; 0 = as many as the dataset has (C*N <= 2^31 - 1)"},
  {"N", T_INT, FLD(N), "4", 1, 10000, 0, NULL, "proxygml: proxies per class"},
  {"k", T_INT, FLD(k), "0", 0, IMAX, 0, NULL, "K, proxies kept in each sample's subgraph; 0 = from r"},
  {"r", T_F64, FLD(r), "0.4", 0, 1, F_MIN_OPEN, NULL, "when k = 0: K = ceil(r*C*N), in double, left to right"},
  {"lambda", T_F64, FLD(lambda), "0.3", 0, HUGE_VAL, 0, NULL, "weight of the proxy regulariser; 0 = off"},
  {"scale", T_F64, FLD(scale), "1", 0, HUGE_VAL, F_MIN_OPEN, NULL, "softmax scale s of the class logits"},
  {"proxynca_scale", T_F64, FLD(proxynca_scale), "1", 0, HUGE_VAL, F_MIN_OPEN, NULL,
   "proxynca: softmax scale s of -s * squared distance"},
  {"proxyanchor_margin", T_F64, FLD(proxyanchor_margin), "0.1", -1, 1, 0, NULL, "proxyanchor: margin delta"},
  {"proxyanchor_alpha", T_F64, FLD(proxyanchor_alpha), "32", 0, 300, F_MIN_OPEN, NULL,
   "proxyanchor: scale alpha (at most 300: exp(alpha (1 + |delta|)) stays finite in double)"},
  {"softtriple_centers", T_INT, FLD(softtriple_centers), "10", 1, 10000, 0, NULL,
   "softtriple: centres (proxies) per class"},
  {"softtriple_lambda", T_F64, FLD(softtriple_lambda), "20", 0, HUGE_VAL, F_MIN_OPEN, NULL,
   "softtriple: scale lambda of the class logits"},
  {"softtriple_gamma", T_F64, FLD(softtriple_gamma), "0.1", 0, HUGE_VAL, F_MIN_OPEN, NULL,
   "softtriple: temperature gamma of the softmax over a class's centres"},
  {"softtriple_tau", T_F64, FLD(softtriple_tau), "0.2", 0, HUGE_VAL, 0, NULL,
   "softtriple: weight tau of the centre regulariser; 0 = none (as pytorch-metric-learning)"},
  {"softtriple_margin", T_F64, FLD(softtriple_margin), "0.01", 0, HUGE_VAL, 0, NULL, "softtriple: margin delta"},
  {"normsoftmax_temperature", T_F64, FLD(normsoftmax_temperature), "0.05", 0, HUGE_VAL, F_MIN_OPEN, NULL,
   "normsoftmax: temperature T of the cosine logits"},
  {"lr", T_F64, FLD(lr), "1e-3", 0, HUGE_VAL, 0, "optimiser", "Adam learning rate of the network"},
  {"proxy_lr", T_F64, FLD(proxy_lr), "0.03", 0, HUGE_VAL, 0, NULL, "Adam learning rate of the proxies"},
  {"eps", T_F64, FLD(eps), "0.01", 0, HUGE_VAL, F_MIN_OPEN, NULL, "Adam epsilon"},
  {"weight_decay", T_F64, FLD(weight_decay), "1e-4", 0, HUGE_VAL, 0, NULL,
   "L2 term added to the gradients of both groups (Adam, not AdamW)"},
  {"beta1", T_F64, FLD(beta1), "0.9", 0, 1, F_MAX_OPEN, NULL, "Adam first-moment decay"},
  {"beta2", T_F64, FLD(beta2), "0.999", 0, 1, F_MAX_OPEN, NULL, "Adam second-moment decay"},
  {"decay_epochs", T_LIST, FLD(decay_epochs), "", 1, BIG, 0, NULL,
   "1-based epochs from which both learning rates are multiplied by decay_rate"},
  {"decay_rate", T_F64, FLD(decay_rate), "0.1", 0, 1, F_MIN_OPEN, NULL, "learning-rate factor at each decay epoch"},
  {"warm", T_INT, FLD(warm), "0", 0, BIG, 0, NULL, "epochs 1..warm train only the embedding layer and the proxies"},
  {"epochs", T_INT, FLD(epochs), "5", 0, BIG, F_RESUME, "training",
   "training epochs; 0 = only evaluate the untrained network"},
  {"batch", T_INT, FLD(batch), "64", 1, 1 << 24, 0, NULL, "global batch size, split over the ranks"},
  {"seed", T_I64, FLD(seed), "0", 0, HUGE_VAL, 0, NULL, "seed of initialisation and shuffling"},
  {"init_from", T_STR, FLD(init_from), "", 0, 0, 0, NULL,
   "initial parameters: a run file, or params/<state_dict name> + params/proxies (docs/run-file.md); \"\" = seeded"},
  {"order_from", T_STR, FLD(order_from), "", 0, 0, 0, NULL,
   "each epoch's sample order: dataset order, epochs x n_train permutations (docs/run-file.md); \"\" = seeded"},
  {"max_steps_per_epoch", T_INT, FLD(max_steps_per_epoch), "0", 0, IMAX, 0, NULL,
   "cap on the steps of an epoch, for smoke tests; 0 = the whole training set"},
  {"eval_epochs", T_LIST, FLD(eval_epochs), "all", 0, BIG, F_ALL | F_RESUME, "evaluation",
   "evaluate after these epochs (0 = the untrained network); \"all\" = after every one"},
  {"recall_ks", T_LIST, FLD(recall_ks), "1,2,4,8", 1, IMAX, F_RESUME, NULL, "the k of Recall@k"},
  {"kmeans_restarts", T_INT, FLD(kmeans_restarts), "5", 1, 1000, F_RESUME, NULL,
   "k-means runs for NMI, the one of least inertia is kept"},
  {"nmi_max_clusters", T_I64, FLD(nmi_max_clusters), "20000", 0, IMAX, F_RESUME, NULL,
   "NMI is computed only when the test split has at most this many classes (k-means costs n x classes x D "
   "per iteration); above, it is NaN and the run says so; 0 = always"},
  {"threads", T_INT, FLD(threads), "0", 0, 4096, F_RESUME, "system", "OpenMP threads per rank; 0 = the OpenMP default"},
  {"checkpoint_every", T_INT, FLD(checkpoint_every), "0", 0, IMAX, F_RESUME, NULL, "steps between checkpoints; 0 = none"},
  {"check_sync_every", T_INT, FLD(check_sync_every), "0", 0, IMAX, F_RESUME, NULL,
   "steps between checks that all ranks hold the same parameters; 0 = never"},
  {"dump_grads", T_I64, FLD(dump_grads), "0", 0, 1000, F_RESUME, NULL,
   "diagnostics: the summed gradient of the first n steps goes to DIR/grads.h5 (n x parameters)"},
  {"collective_timeout", T_I64, FLD(collective_timeout), "600", 0, BIG, F_RESUME, NULL,
   "seconds one MPI call may wait for the other ranks before the job is ended as hung (exit 3); 0 = never"},
  {"shard_optimizer", T_INT, FLD(shard_optimizer), "1", 0, 1, F_RESUME, NULL,
   "1 = each rank keeps Adam's moments of 1/P of the parameters and updates only those (reduce-scatter, "
   "allgather); 0 = every rank updates the whole replica"},
  {"overlap", T_INT, FLD(overlap), "0", 0, 1, F_RESUME, NULL,
   "1 = reduce the gradients in buckets while the backward pass runs (pays when MPI has a core of its own to "
   "progress on, docs/scaling.md); 0 = one blocking reduction after it"},
  {"shard_proxies", T_I64, FLD(shard_proxies), "0", 0, 1, F_RESUME, NULL,
   "1 = each rank holds the proxies of C/P classes and their Adam state; the subgraphs are selected exactly "
   "across the ranks (ProxyGML only, docs/sharding.md); 0 = every rank holds every proxy"},
  {"reg_sampled", T_I64, FLD(reg_sampled), "0", 0, 1, 0, NULL,
   "with shard_proxies = 1 and lambda > 0: 1 = the regulariser averages the terms of the batch's classes' proxies "
   "only (docs/sharding.md 3), for C beyond ~10^5; 0 = every proxy's term (exact)"},
  {"bucket_mib", T_F64, FLD(bucket_mib), "1", 0, 8192, F_MIN_OPEN | F_RESUME, NULL,
   "size of a gradient bucket in MiB when overlap = 1"},
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

/* names people bring from the published script or the PyTorch baseline */
static const char *const ALIASES[][2] = {
  {"lam", "lambda"},         {"wd", "weight_decay"},      {"rate", "decay_rate"},
  {"centerlr", "proxy_lr"},  {"new_epoch_to_decay", "decay_epochs"},
  {"max_batches", "max_steps_per_epoch"}, {"dim", "embed_dim"}, {"batch_size", "batch"},
  {"dataset", "data"},       {"epoch", "epochs"},
};

/* one parsed value of any type */
typedef struct {
  int64_t i;          /* T_INT, T_I64, T_ENUM (index) */
  double f;           /* T_F64 */
  char s[CFG_PATH_MAX];
  CfgList l;
} Val;

/* the names of a choice key, in its enum's order */
static const char *const *choices(const Key *k, int *n) {
  int loss = !strcmp(k->key, "loss");
  *n = loss ? NLOSS : NARCH;
  return loss ? LOSS_NAMES : ARCH_NAMES;
}

static const char *choice_name(const Key *k, int64_t i) {
  int n;
  const char *const *names = choices(k, &n);
  return i >= 0 && i < n ? names[i] : "?";
}

static int nchoices(const Key *k) {
  int n;
  choices(k, &n);
  return n;
}

static const Key *find_key(const char *name) {
  for (int i = 0; i < NKEYS; i++)
    if (!strcmp(KEYS[i].key, name)) return &KEYS[i];
  return NULL;
}

static int is_key(const Key *k, const char *name) { return !strcmp(k->key, name); }

/* ---- "did you mean" --------------------------------------------------------- */

static int edit_distance(const char *a, const char *b) {   /* case-insensitive Levenshtein */
  int n = (int)strlen(a), m = (int)strlen(b);
  if (n > 63 || m > 63) return 99;
  int row[64];
  for (int j = 0; j <= m; j++) row[j] = j;
  for (int i = 1; i <= n; i++) {
    int diag = row[0];
    row[0] = i;
    for (int j = 1; j <= m; j++) {
      int up = row[j];
      int sub = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      int best = sub < up + 1 ? sub : up + 1;
      row[j] = best < row[j - 1] + 1 ? best : row[j - 1] + 1;
      diag = up;
    }
  }
  return row[m];
}

static int unknown_key(const char *name) {
  const char *hint = NULL;
  for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++)
    if (!strcmp(ALIASES[i][0], name)) hint = ALIASES[i][1];
  int best = 3;
  for (int i = 0; !hint && i < NKEYS; i++) {
    int d = edit_distance(name, KEYS[i].key);
    if (d < best && d < (int)strlen(name)) { best = d; hint = KEYS[i].key; }
  }
  if (hint) return err_set("unknown config key '%s' (did you mean '%s'?)", name, hint);
  return err_set("unknown config key '%s' (--help lists the keys)", name);
}

/* ---- checks ----------------------------------------------------------------- */

static int out_of_range(const Key *k, double v) {
  if (k->flags & F_MIN_OPEN ? v <= k->min : v < k->min) return -1;
  if (k->flags & F_MAX_OPEN ? v >= k->max : v > k->max) return 1;
  return 0;
}

/* "config key 'N': must be >= 1, got 0"; `what` names a part ("entries ") or is "" */
static int range_error(const Key *k, const char *what, double v) {
  int side = out_of_range(k, v);
  const char *op = side < 0 ? (k->flags & F_MIN_OPEN ? ">" : ">=") : (k->flags & F_MAX_OPEN ? "<" : "<=");
  return err_set("config key '%s': %smust be %s %.15g, got %.15g", k->key, what, op, side < 0 ? k->min : k->max, v);
}

static int check(const Key *k, const Val *v) {
  switch (k->type) {
  case T_INT:
  case T_I64:
    return out_of_range(k, (double)v->i) ? range_error(k, "", (double)v->i) : 0;
  case T_F64:
    if (!isfinite(v->f)) return err_set("config key '%s': must be a finite number, got %g", k->key, v->f);
    return out_of_range(k, v->f) ? range_error(k, "", v->f) : 0;
  case T_STR:
    if (strlen(v->s) < (size_t)k->min) return err_set("config key '%s': must not be empty", k->key);
    if (k->flags & F_NAME)
      for (const char *p = v->s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._-", *p))
          return err_set("config key '%s': may hold only letters, digits, '.', '_' and '-', got \"%s\"", k->key, v->s);
    return 0;
  case T_ENUM:
    if (v->i < 0 || v->i >= nchoices(k)) return err_set("config key '%s': invalid choice %lld", k->key, (long long)v->i);
    return 0;
  case T_LIST:
    if (v->l.n == CFG_LIST_ALL && (k->flags & F_ALL)) return 0;
    if (v->l.n < 0 || v->l.n > CFG_LIST_MAX)
      return err_set("config key '%s': invalid list length %d", k->key, v->l.n);
    for (int j = 0; j < v->l.n; j++) {
      if (out_of_range(k, v->l.v[j])) return range_error(k, "entries ", v->l.v[j]);
      if (j > 0 && v->l.v[j] <= v->l.v[j - 1])
        return err_set("config key '%s': entries must be increasing without repeats, got %d after %d", k->key,
                       v->l.v[j], v->l.v[j - 1]);
    }
    return 0;
  }
  /* unreachable in tests: every key type of the table has its case above */
  return err_set("config key '%s': bad table entry", k->key);
}

/* ---- values in and out of the struct ---------------------------------------- */

static void put(Config *c, const Key *k, const Val *v) {
  char *p = (char *)c + k->off;
  switch (k->type) {
  case T_INT:
  case T_ENUM: *(int *)p = (int)v->i; break;
  case T_I64: *(int64_t *)p = v->i; break;
  case T_F64: *(double *)p = v->f; break;
  case T_STR:
    memset(p, 0, k->size);        /* no stale bytes after the NUL: structs compare bytewise */
    memcpy(p, v->s, strlen(v->s));
    break;
  case T_LIST: {
    CfgList l = v->l;
    for (int j = l.n < 0 ? 0 : l.n; j < CFG_LIST_MAX; j++) l.v[j] = 0;
    *(CfgList *)p = l;
    break;
  }
  }
}

static int get(const Config *c, const Key *k, Val *v) {
  const char *p = (const char *)c + k->off;
  memset(v, 0, sizeof *v);
  switch (k->type) {
  case T_INT:
  case T_ENUM: v->i = *(const int *)p; break;
  case T_I64: v->i = *(const int64_t *)p; break;
  case T_F64: v->f = *(const double *)p; break;
  case T_STR:
    if (!memchr(p, 0, k->size)) return err_set("config key '%s': string is not terminated", k->key);
    memcpy(v->s, p, strlen(p) + 1);
    break;
  case T_LIST: v->l = *(const CfgList *)p; break;
  }
  return 0;
}

/* ---- parsing: text of --set and of the defaults ------------------------------ */

static void trim(char *s) {
  size_t n = strlen(s), b = 0;
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = 0;
  while (isspace((unsigned char)s[b])) b++;
  memmove(s, s + b, n - b + 1);
}

static int parse_int(const Key *k, const char *t, int64_t *out) {
  char *end;
  errno = 0;
  long long x = strtoll(t, &end, 10);
  if (!*t || *end) return err_set("config key '%s': expected an integer, got '%s'", k->key, t);
  if (errno == ERANGE) return err_set("config key '%s': integer out of range: '%s'", k->key, t);
  *out = x;
  return 0;
}

static int parse_choice(const Key *k, const char *t, int64_t *out) {
  int n;
  const char *const *names = choices(k, &n);
  char list[256] = "";
  for (int j = 0; j < n; j++) {
    if (!strcmp(t, names[j])) { *out = j; return 0; }
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", j ? ", " : "", names[j]);
  }
  return err_set("config key '%s': must be one of %s, got \"%s\"", k->key, list, t);
}

static int parse_string(const Key *k, const char *t, Val *v) {
  size_t n = strlen(t);
  if (n >= k->size) return err_set("config key '%s': longer than %zu characters", k->key, k->size - 1);
  memcpy(v->s, t, n + 1);   /* k->size <= sizeof v->s */
  return 0;
}

static int parse_text(const Key *k, const char *text, Val *v) {
  char t[CFG_PATH_MAX + 8];
  if (strlen(text) >= sizeof t) return err_set("config key '%s': value too long", k->key);
  strcpy(t, text);
  trim(t);
  memset(v, 0, sizeof *v);
  switch (k->type) {
  case T_INT:
  case T_I64: return parse_int(k, t, &v->i);
  case T_F64: {
    char *end;
    v->f = strtod(t, &end);
    if (!*t || *end) return err_set("config key '%s': expected a number, got '%s'", k->key, t);
    return 0;
  }
  case T_STR:
  case T_ENUM: {
    size_t n = strlen(t);
    if (n >= 2 && t[0] == '"' && t[n - 1] == '"') {   /* quotes copied from a file are fine */
      t[n - 1] = 0;
      memmove(t, t + 1, n - 1);
    }
    return k->type == T_STR ? parse_string(k, t, v) : parse_choice(k, t, &v->i);
  }
  case T_LIST: {
    if ((k->flags & F_ALL) && !strcmp(t, "all")) { v->l.n = CFG_LIST_ALL; return 0; }
    size_t n = strlen(t);
    if (n >= 2 && t[0] == '[' && t[n - 1] == ']') {
      t[n - 1] = 0;
      memmove(t, t + 1, n - 1);
      trim(t);
    }
    if (!*t) return 0;
    for (char *tok = t;;) {
      char *comma = strchr(tok, ',');
      if (comma) *comma = 0;
      trim(tok);
      int64_t x = 0;
      if (!*tok || parse_int(k, tok, &x) != 0)
        return err_set("config key '%s': expected integers separated by commas%s, got '%s'", k->key,
                       k->flags & F_ALL ? " (or all)" : "", text);
      if (v->l.n == CFG_LIST_MAX) return err_set("config key '%s': more than %d entries", k->key, CFG_LIST_MAX);
      if (x < INT_MIN || x > INT_MAX) return err_set("config key '%s': entry %lld out of range", k->key, (long long)x);
      v->l.v[v->l.n++] = (int)x;
      if (!comma) break;
      tok = comma + 1;
    }
    return 0;
  }
  }
  /* unreachable in tests: every key type of the table has its case above */
  return err_set("config key '%s': bad table entry", k->key);
}

/* ---- parsing: libconfig settings -------------------------------------------- */

static const char *expected(const Key *k) {
  switch (k->type) {
  case T_INT:
  case T_I64: return "an integer";
  case T_F64: return "a number";
  case T_STR: return "a string in double quotes";
  case T_ENUM: return !strcmp(k->key, "loss") ? "a loss name in double quotes (\"proxygml\", \"softtriple\", ...)"
                                              : "one of \"mlp\", \"cnn\", \"linear\"";
  case T_LIST: return k->flags & F_ALL ? "an array of integers like [0, 5] or \"all\"" : "an array of integers like [20, 40]";
  }
  return "?";
}

static int type_error(const Key *k, const config_setting_t *s) {
  char got[96];
  switch (config_setting_type(s)) {
  case CONFIG_TYPE_INT:
  case CONFIG_TYPE_INT64: snprintf(got, sizeof got, "the integer %lld", config_setting_get_int64(s)); break;
  case CONFIG_TYPE_FLOAT: snprintf(got, sizeof got, "the float %g", config_setting_get_float(s)); break;
  case CONFIG_TYPE_STRING: snprintf(got, sizeof got, "the string \"%.60s\"", config_setting_get_string(s)); break;
  case CONFIG_TYPE_BOOL: snprintf(got, sizeof got, "a boolean"); break;
  case CONFIG_TYPE_ARRAY: snprintf(got, sizeof got, "an array"); break;
  case CONFIG_TYPE_LIST: snprintf(got, sizeof got, "a list"); break;
  default: snprintf(got, sizeof got, "a group"); break;
  }
  return err_set("config key '%s': expected %s, got %s", k->key, expected(k), got);
}

static int is_int(const config_setting_t *s) {
  int t = config_setting_type(s);
  return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

static int parse_setting(const Key *k, const config_setting_t *s, Val *v) {
  int t = config_setting_type(s);
  memset(v, 0, sizeof *v);
  switch (k->type) {
  case T_INT:
  case T_I64:
    if (!is_int(s)) return type_error(k, s);
    v->i = config_setting_get_int64(s);
    return 0;
  case T_F64:
    if (is_int(s)) v->f = (double)config_setting_get_int64(s);
    else if (t == CONFIG_TYPE_FLOAT) v->f = config_setting_get_float(s);
    else return type_error(k, s);
    return 0;
  case T_STR:
  case T_ENUM:
    if (t != CONFIG_TYPE_STRING) return type_error(k, s);
    return k->type == T_STR ? parse_string(k, config_setting_get_string(s), v)
                            : parse_choice(k, config_setting_get_string(s), &v->i);
  case T_LIST:
    if (t == CONFIG_TYPE_STRING && (k->flags & F_ALL) && !strcmp(config_setting_get_string(s), "all")) {
      v->l.n = CFG_LIST_ALL;
      return 0;
    }
    if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) return type_error(k, s);
    int n = config_setting_length(s);
    if (n > CFG_LIST_MAX) return err_set("config key '%s': more than %d entries", k->key, CFG_LIST_MAX);
    for (int j = 0; j < n; j++) {
      const config_setting_t *e = config_setting_get_elem(s, (unsigned)j);
      if (!is_int(e)) return err_set("config key '%s': entries must be integers (entry %d is not)", k->key, j + 1);
      long long x = config_setting_get_int64(e);
      if (x < INT_MIN || x > INT_MAX) return err_set("config key '%s': entry %lld out of range", k->key, x);
      v->l.v[j] = (int)x;
    }
    v->l.n = n;
    return 0;
  }
  /* unreachable in tests: every key type of the table has its case above */
  return err_set("config key '%s': bad table entry", k->key);
}

/* ---- k and r: two spellings of K -------------------------------------------- */

static double default_r(void) { return strtod(find_key("r")->def, NULL); }

static int both_k_and_r(const Config *c) {
  return err_set("config keys 'k' and 'r' are both set (k = %d, r = %g): set only one, k for K itself or r "
                 "for K = ceil(r*C*N)", c->k, c->r);
}

/* a later layer that chooses K one way drops the earlier choice */
static void k_or_r_chosen(Config *c, int set_k, int set_r) {
  if (set_k && !set_r && c->k > 0) c->r = default_r();
  if (set_r && !set_k) c->k = 0;
}

/* ---- public: defaults, load, set, validate, K ------------------------------- */

void cfg_defaults(Config *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < NKEYS; i++) {
    Val v;
    /* unreachable in tests: the built-in defaults pass their own checks (test_cfg: defaults_are_valid) */
    CHECK(parse_text(&KEYS[i], KEYS[i].def, &v) == 0 && check(&KEYS[i], &v) == 0, "bad default: %s", err_msg());
    put(c, &KEYS[i], &v);
  }
}

static int at_line(const char *file, int line) { return err_set("%s:%d: %s", file, line, err_msg()); }

static int load_root(Config *c, const config_t *lc, const char *path) {
  Config t = *c;
  const config_setting_t *root = config_root_setting(lc);
  int set_k = 0, set_r = 0, last_line = 0;
  for (int i = 0; i < config_setting_length(root); i++) {
    const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
    const char *file = config_setting_source_file(s) ? config_setting_source_file(s) : path;
    int line = config_setting_source_line(s);
    const char *name = config_setting_name(s);
    const Key *k = find_key(name);
    if (!k && config_setting_type(s) == CONFIG_TYPE_GROUP) {
      err_set("unknown config key '%s' (keys are not nested in groups: write them at top level)", name);
      return at_line(file, line);
    }
    if (!k) {
      unknown_key(name);
      return at_line(file, line);
    }
    Val v;
    if (parse_setting(k, s, &v) != 0 || check(k, &v) != 0) return at_line(file, line);
    put(&t, k, &v);
    set_k |= is_key(k, "k");
    set_r |= is_key(k, "r");
    if (is_key(k, "k") || is_key(k, "r")) last_line = line;
  }
  if (set_k && set_r && t.k > 0 && t.r != default_r()) {
    both_k_and_r(&t);
    return at_line(path, last_line);
  }
  k_or_r_chosen(&t, set_k, set_r);
  *c = t;
  return 0;
}

int cfg_syntax_error(const char *file, int line, const char *text) {
  char src[160] = "";
  int found = 0;
  FILE *f = line > 0 ? fopen(file, "r") : NULL;
  int opened = f != NULL;
  for (int n = 1; f && fgets(src, sizeof src, f); n++) {
    if ((found = n == line)) break;
    src[0] = 0;
  }
  if (f) fclose(f);
  src[strcspn(src, "\r\n")] = 0;
  trim(src);
  if (opened && !found)   /* libconfig reached the end of the file inside something */
    return err_set("%s:%d: %s at the end of the file (a string, ( [ or { that is never closed?)", file, line, text);
  if (!src[0]) return err_set("%s:%d: %s", file, line, text);
  return err_set("%s:%d: %s, in: %s", file, line, text, src);
}

/* 1: nesting deeper than libconfig follows (it reports that itself), stop */
static int check_includes(const char *path, const char *dir, int depth) {
  if (depth > 10) return 1;
  FILE *f = fopen(path, "r");
  if (!f) return 0;   /* libconfig reports it */
  char line[CFG_PATH_MAX + 64], full[2 * CFG_PATH_MAX + 64];
  int rc = 0;
  for (int n = 1; rc == 0 && fgets(line, sizeof line, f); n++) {
    const char *p = line + strspn(line, " \t");   /* libconfig: ^[ \t]*@include[ \t]+"NAME" */
    if (strncmp(p, "@include", 8) || !strchr(" \t", p[8])) continue;
    p += 8 + strspn(p + 8, " \t");
    if (*p++ != '"') continue;
    int len = (int)strcspn(p, "\"");
    if (dir) snprintf(full, sizeof full, "%s/%.*s", dir, len, p);
    else snprintf(full, sizeof full, "%.*s", len, p);
    struct stat st;
    if (stat(full, &st) != 0) continue;   /* libconfig reports a missing file */
    if (S_ISDIR(st.st_mode)) rc = err_set("%s:%d: @include \"%.*s\" is a directory, not a file", path, n, len, p);
    else rc = check_includes(full, dir, depth + 1);
  }
  fclose(f);
  return rc;
}

int cfg_check_includes(const char *path, const char *include_dir) {
  return check_includes(path, include_dir, 0) < 0 ? -1 : 0;
}

int cfg_load(Config *c, const char *path) {
  FILE *f = fopen(path, "r");   /* libconfig reports a missing file without the reason */
  if (!f) return err_set("cannot open config file '%s': %s", path, strerror(errno));
  fclose(f);
  char dir[CFG_PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash) slash[slash == dir ? 1 : 0] = 0;
  else strcpy(dir, ".");
  if (cfg_check_includes(path, dir) != 0) return -1;
  config_t lc;
  config_init(&lc);
  config_set_include_dir(&lc, dir);
  int rc;
  if (!config_read_file(&lc, path))
    rc = cfg_syntax_error(config_error_file(&lc) ? config_error_file(&lc) : path, config_error_line(&lc),
                          config_error_text(&lc));
  else
    rc = load_root(c, &lc, path);
  config_destroy(&lc);
  return rc;
}

int cfg_set(Config *c, const char *key_eq_value) {
  const char *eq = strchr(key_eq_value, '=');
  if (!eq) return err_set("config override '%s': expected key=value", key_eq_value);
  char name[64];
  if ((size_t)(eq - key_eq_value) >= sizeof name) return err_set("config override '%s': key too long", key_eq_value);
  memcpy(name, key_eq_value, (size_t)(eq - key_eq_value));
  name[eq - key_eq_value] = 0;
  trim(name);
  const Key *k = find_key(name);
  if (!k) return unknown_key(name);
  Val v;
  if (parse_text(k, eq + 1, &v) != 0 || check(k, &v) != 0) return -1;
  put(c, k, &v);
  k_or_r_chosen(c, is_key(k, "k"), is_key(k, "r"));
  return 0;
}

int cfg_resolve_k(const Config *c, int C, int *K) {
  if (C < 1) return err_set("config: K needs the number of classes, got C = %d", C);
  int64_t M = (int64_t)C * c->N;
  if (c->N < 1 || M > INT_MAX) return err_set("config keys 'C' and 'N': C*N = %d*%d is out of range", C, c->N);
  double Kd;
  if (c->k > 0) Kd = c->k;
  else Kd = ceil(c->r * C * c->N);   /* (r*C)*N in double: the published rounding (docs/loss.md 2) */
  if (Kd < 1 || Kd > (double)M) {
    if (c->k > 0)
      return err_set("config key 'k': K = %d must be between 1 and C*N = %lld (C = %d, N = %d)", c->k,
                     (long long)M, C, c->N);
    return err_set("config key 'r': K = ceil(r*C*N) = %.0f must be between 1 and C*N = %lld (r = %g, C = %d, N = %d)",
                   Kd, (long long)M, c->r, C, c->N);
  }
  *K = (int)Kd;
  return 0;
}

int cfg_validate(const Config *c) {
  for (int i = 0; i < NKEYS; i++) {
    Val v;
    if (get(c, &KEYS[i], &v) != 0 || check(&KEYS[i], &v) != 0) return -1;
  }
  if (c->k > 0 && c->r != default_r()) return both_k_and_r(c);
  for (int j = 0; j < c->eval_epochs.n; j++)
    if (c->eval_epochs.v[j] > c->epochs)
      return err_set("config key 'eval_epochs': epoch %d is after the last one (epochs = %d)", c->eval_epochs.v[j],
                     c->epochs);
  if (c->shard_proxies && c->loss != CFG_LOSS_PROXYGML)
    return err_set("config key 'shard_proxies': only the proxygml loss shards its proxies (loss = %s)",
                   cfg_loss_name(c->loss));
  if (c->reg_sampled && !c->shard_proxies)
    return err_set("config key 'reg_sampled': the sampled regulariser needs shard_proxies = 1");
  int K;   /* K is ProxyGML's: the baselines keep no subgraph */
  if (c->loss == CFG_LOSS_PROXYGML && c->C > 0 && cfg_resolve_k(c, c->C, &K) != 0) return -1;
  if (c->C > 0 && (int64_t)c->C * cfg_proxies_per_class(c) > INT_MAX)
    return err_set("config keys 'C' and 'softtriple_centers': C*centres = %d*%d is out of range", c->C,
                   c->softtriple_centers);
  return 0;
}

/* ---- schedule helpers ------------------------------------------------------- */

int cfg_eval_at(const Config *c, int epoch) {
  if (epoch < 0 || epoch > c->epochs) return 0;
  if (c->eval_epochs.n == CFG_LIST_ALL) return 1;
  for (int j = 0; j < c->eval_epochs.n; j++)
    if (c->eval_epochs.v[j] == epoch) return 1;
  return 0;
}

double cfg_lr_at(const Config *c, double base_lr, int epoch) {
  double lr = base_lr;   /* one multiplication per decay, as the published script does */
  for (int j = 0; j < c->decay_epochs.n; j++)
    if (c->decay_epochs.v[j] <= epoch) lr *= c->decay_rate;
  return lr;
}

const char *cfg_arch_name(int arch) { return arch >= 0 && arch < NARCH ? ARCH_NAMES[arch] : "?"; }
const char *cfg_loss_name(int loss) { return loss >= 0 && loss < NLOSS ? LOSS_NAMES[loss] : "?"; }

int cfg_proxies_per_class(const Config *c) {
  return c->loss == CFG_LOSS_PROXYGML ? c->N : c->loss == CFG_LOSS_SOFTTRIPLE ? c->softtriple_centers : 1;
}

/* the loss a key belongs to by its prefix (proxyanchor_alpha: proxyanchor), or -1 */
static int key_loss(const Key *k) {
  for (int i = 1; i < NLOSS; i++) {
    size_t n = strlen(LOSS_NAMES[i]);
    if (!strncmp(k->key, LOSS_NAMES[i], n) && k->key[n] == '_') return i;
  }
  return -1;
}

/* left out of the hash: the keys of a loss not chosen, and `loss` = proxygml
 * (the text hashed before the baselines existed, docs/baselines.md 7) */
static int hash_skips(const Config *c, const Key *k) {
  int owner = key_loss(k);
  if (owner >= 0) return owner != c->loss;
  return is_key(k, "loss") && c->loss == CFG_LOSS_PROXYGML;
}

/* ---- text out: help, dump, hash, attributes --------------------------------- */

/* shortest text that reads back to the same double, always a libconfig float */
static void fmt_double(double x, char *buf, size_t cap) {
  for (int p = 1; p <= 17; p++) {
    snprintf(buf, cap, "%.*g", p, x);
    if (strtod(buf, NULL) == x) break;
  }
  if (!strpbrk(buf, ".eEni")) strncat(buf, ".0", cap - strlen(buf) - 1);
}

/* a value as libconfig text (file = 1) or as plain text (file = 0: attributes) */
static void fmt_value(const Key *k, const Val *v, int file, char *buf, size_t cap) {
  size_t n = 0;
  buf[0] = 0;
  switch (k->type) {
  case T_INT: snprintf(buf, cap, "%lld", (long long)v->i); break;
  case T_I64:   /* libconfig 1.5 wraps integers beyond 32 bits unless they carry L */
    snprintf(buf, cap, "%lld%s", (long long)v->i, file && (v->i > INT_MAX || v->i < INT_MIN) ? "L" : "");
    break;
  case T_F64: fmt_double(v->f, buf, cap); break;
  case T_ENUM: snprintf(buf, cap, file ? "\"%s\"" : "%s", choice_name(k, v->i)); break;
  case T_STR:
    if (!file) { snprintf(buf, cap, "%s", v->s); break; }
    n += (size_t)snprintf(buf + n, cap - n, "\"");
    for (const unsigned char *p = (const unsigned char *)v->s; *p && n + 8 < cap; p++) {
      if (*p == '"' || *p == '\\') n += (size_t)snprintf(buf + n, cap - n, "\\%c", *p);
      else if (*p < 0x20 || *p == 0x7f) n += (size_t)snprintf(buf + n, cap - n, "\\x%02x", *p);
      else buf[n++] = (char)*p, buf[n] = 0;
    }
    snprintf(buf + n, cap - n, "\"");
    break;
  case T_LIST:
    if (v->l.n == CFG_LIST_ALL) { snprintf(buf, cap, file ? "\"all\"" : "all"); break; }
    if (file) n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int j = 0; j < v->l.n && n + 16 < cap; j++)
      n += (size_t)snprintf(buf + n, cap - n, "%s%d", j ? (file ? ", " : ",") : "", v->l.v[j]);
    if (file) snprintf(buf + n, cap - n, "]");
    break;
  }
}

#define VALBUF (4 * CFG_PATH_MAX + 64)   /* worst case: every byte of data escaped as \xHH */

static void range_text(const Key *k, char *buf, size_t cap) {
  const char *lo = k->flags & F_MIN_OPEN ? "(" : "[", *hi = k->flags & F_MAX_OPEN ? ")" : "]";
  const char *pre = k->type == T_LIST ? "entries " : "";
  switch (k->type) {
  case T_INT:
  case T_I64:
  case T_F64:
  case T_LIST:
    if (k->max >= IMAX) snprintf(buf, cap, "%s%s %.15g", pre, k->flags & F_MIN_OPEN ? ">" : ">=", k->min);
    else snprintf(buf, cap, "%s%s%.15g, %.15g%s", pre, lo, k->min, k->max, hi);
    if (k->type == T_LIST) strncat(buf, ", increasing", cap - strlen(buf) - 1);
    break;
  case T_ENUM:   /* the help text lists the choices */
  case T_STR: buf[0] = 0; break;
  }
}

void cfg_print_help(FILE *out) {
  fprintf(out, "Configuration keys. A file (libconfig syntax) holds `key = value;` lines; --set key=value\n"
               "overrides one key (lists as 20,40). Keys marked * may differ when a run is resumed.\n");
  for (int i = 0; i < NKEYS; i++) {
    const Key *k = &KEYS[i];
    char def[VALBUF], range[96];
    Val v;
    parse_text(k, k->def, &v);
    fmt_value(k, &v, 1, def, sizeof def);
    range_text(k, range, sizeof range);
    if (k->section) fprintf(out, "\n%s:\n", k->section);
    fprintf(out, "  %-20s %-12s %s%s%s%s%s\n", k->key, def, k->flags & F_RESUME ? "* " : "", k->help,
            range[0] ? " (" : "", range, range[0] ? ")" : "");
  }
}

enum { OUT_COMMENTS = 1, OUT_HASHED_ONLY = 2 };

static void write_cfg(const Config *c, FILE *out, int how) {
  char val[VALBUF], line[VALBUF + 64];
  if (how & OUT_COMMENTS)
    fprintf(out, "# proxygml configuration (libconfig syntax); --help explains every key\n");
  for (int i = 0; i < NKEYS; i++) {
    const Key *k = &KEYS[i];
    if ((how & OUT_HASHED_ONLY) && (k->flags & F_RESUME)) continue;
    Val v;
    get(c, k, &v);
    /* an unset optional file (init_from, order_from) leaves the hashed text
     * as it was before those keys existed: older checkpoints still resume */
    if ((how & OUT_HASHED_ONLY) && k->type == T_STR && !v.s[0]) continue;
    if ((how & OUT_HASHED_ONLY) && hash_skips(c, k)) continue;
    fmt_value(k, &v, 1, val, sizeof val);
    if (!(how & OUT_COMMENTS)) { fprintf(out, "%s = %s;\n", k->key, val); continue; }
    if (k->section) fprintf(out, "\n# --- %s ---\n", k->section);
    snprintf(line, sizeof line, "%s = %s;", k->key, val);
    fprintf(out, "%-34s # %s\n", line, k->help);
  }
}

void cfg_dump(const Config *c, FILE *out) { write_cfg(c, out, OUT_COMMENTS); }

static char *cfg_text(const Config *c, int how, size_t *len) {
  char *buf = NULL;
  FILE *f = open_memstream(&buf, len);
  /* unreachable in tests: open_memstream fails only when out of memory */
  CHECK(f, "open_memstream failed");
  write_cfg(c, f, how);
  fclose(f);
  return buf;
}

uint64_t cfg_hash(const Config *c) {
  size_t n;
  char *text = cfg_text(c, OUT_HASHED_ONLY, &n);
  uint64_t h = 0xcbf29ce484222325ULL;          /* FNV-1a 64 */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)text[i]) * 0x100000001b3ULL;
  free(text);
  return h;
}

int cfg_write_attrs(const Config *c, hid_t loc) {
  for (int i = 0; i < NKEYS; i++) {
    const Key *k = &KEYS[i];
    Val v;
    char text[VALBUF];
    get(c, k, &v);
    int rc;
    if (k->type == T_INT || k->type == T_I64) rc = h5io_set_attr_i64(loc, k->key, v.i);
    else if (k->type == T_F64) rc = h5io_set_attr_f64(loc, k->key, v.f);
    else {
      fmt_value(k, &v, 0, text, sizeof text);
      rc = h5io_set_attr_str(loc, k->key, text);
    }
    if (rc != 0) return -1;
  }
  size_t n;
  char *text = cfg_text(c, 0, &n), hash[24];
  int rc = h5io_set_attr_str(loc, "config", text);
  free(text);
  snprintf(hash, sizeof hash, "%016llx", (unsigned long long)cfg_hash(c));
  if (rc == 0) rc = h5io_set_attr_str(loc, "config_hash", hash);
  return rc;
}
