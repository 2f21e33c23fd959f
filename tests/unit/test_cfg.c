/* test_cfg.c: the configuration module: defaults, files, overrides, every
 * kind of error message, K resolution, dump round trip, hash and HDF5
 * attributes. */
#include "cfg.h"
#include "common.h"
#include "h5io.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* temporary directories of this test, removed by its fini */
static char g_dirs[32][400];
static int g_ndirs;

static void remove_dirs(void) {
  for (int i = 0; i < g_ndirs; i++) {
    DIR *d = opendir(g_dirs[i]);
    for (struct dirent *e; d && (e = readdir(d));)
      if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlinkat(dirfd(d), e->d_name, 0);
    if (d) closedir(d);
    rmdir(g_dirs[i]);
  }
  g_ndirs = 0;
}

TestSuite(cfg, .fini = remove_dirs);

/* a fresh file with `text` in a fresh directory; the name ends in `name` */
static const char *tmp_file(const char *name, const char *text) {
  static char path[4][512];
  static int next;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  cr_assert_lt(g_ndirs, 32);
  char *dir = g_dirs[g_ndirs];
  snprintf(dir, 400, "%s/cfgtest_XXXXXX", base);
  cr_assert_not_null(mkdtemp(dir));
  g_ndirs++;
  char *p = path[next++ % 4];
  snprintf(p, 512, "%s/%s", dir, name);
  FILE *f = fopen(p, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
  return p;
}

static const char *example(const char *name) {
  static char path[1024];
  const char *src = getenv("PROXYGML_SRC");
  cr_assert_not_null(src, "PROXYGML_SRC is not set (tests/meson.build)");
  snprintf(path, sizeof path, "%s/experiments/%s", src, name);
  return path;
}

#define ASSERT_MSG(...)                                                                        \
  do {                                                                                         \
    const char *want_[] = {__VA_ARGS__};                                                       \
    for (size_t i_ = 0; i_ < sizeof want_ / sizeof want_[0]; i_++)                             \
      cr_assert(strstr(err_msg(), want_[i_]), "message \"%s\" lacks \"%s\"", err_msg(), want_[i_]); \
  } while (0)

/* loading `text` must fail with a message holding every string given */
#define LOAD_FAILS(text, ...)                                           \
  do {                                                                  \
    Config c_;                                                          \
    cfg_defaults(&c_);                                                  \
    Config before_ = c_;                                                \
    cr_assert_eq(cfg_load(&c_, tmp_file("bad.cfg", text)), -1, "loaded: %s", text); \
    ASSERT_MSG(__VA_ARGS__);                                            \
    cr_assert(!memcmp(&c_, &before_, sizeof c_), "a failed load changed the struct"); \
  } while (0)

#define SET_FAILS(kv, ...)                                              \
  do {                                                                  \
    Config c_;                                                          \
    cfg_defaults(&c_);                                                  \
    Config before_ = c_;                                                \
    cr_assert_eq(cfg_set(&c_, kv), -1, "accepted: %s", kv);             \
    ASSERT_MSG(__VA_ARGS__);                                            \
    cr_assert(!memcmp(&c_, &before_, sizeof c_), "a failed set changed the struct"); \
  } while (0)

Test(cfg, defaults_are_valid) {
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_validate(&c), 0, "%s", err_msg());
  cr_assert_eq(c.arch, CFG_ARCH_MLP);
  cr_assert_eq(c.embed_dim, 128);
  cr_assert_eq(c.N, 4);
  cr_assert_eq(c.k, 0);
  cr_assert_eq(c.r, 0.4);
  cr_assert_eq(c.lr, 1e-3);
  cr_assert_eq(c.proxy_lr, 0.03);
  cr_assert_eq(c.eps, 0.01);
  cr_assert_eq(c.weight_decay, 1e-4);
  cr_assert_eq(c.beta2, 0.999);
  cr_assert_eq(c.decay_rate, 0.1);
  cr_assert_eq(c.decay_epochs.n, 0);
  cr_assert_eq(c.eval_epochs.n, CFG_LIST_ALL);
  cr_assert_eq(c.recall_ks.n, 4);
  cr_assert_eq(c.recall_ks.v[3], 8);
  cr_assert_eq(c.kmeans_restarts, 5);
  for (int e = 0; e <= c.epochs; e++) cr_assert(cfg_eval_at(&c, e));
  cr_assert(!cfg_eval_at(&c, c.epochs + 1));
  cr_assert_str_eq(cfg_arch_name(CFG_ARCH_LINEAR), "linear");
}

Test(cfg, examples_load_and_validate) {
  struct { const char *file; int arch, C, epochs, K; const char *data; } ex[] = {
    {"fmnist_mlp.cfg", CFG_ARCH_MLP, 10, 5, 10, "data/fmnist_seen.h5"},
    {"fmnist_cnn.cfg", CFG_ARCH_CNN, 10, 3, 10, "data/fmnist_seen.h5"},
    {"fmnist_zeroshot.cfg", CFG_ARCH_MLP, 5, 5, 8, "data/fmnist_zeroshot.h5"},
  };
  for (int i = 0; i < 3; i++) {
    Config c;
    cfg_defaults(&c);
    cr_assert_eq(cfg_load(&c, example(ex[i].file)), 0, "%s", err_msg());
    cr_assert_eq(cfg_validate(&c), 0, "%s: %s", ex[i].file, err_msg());
    cr_assert_eq(c.arch, ex[i].arch, "%s", ex[i].file);
    cr_assert_eq(c.C, ex[i].C);
    cr_assert_eq(c.N, 4);
    cr_assert_eq(c.epochs, ex[i].epochs);
    cr_assert_str_eq(c.data, ex[i].data);
    cr_assert_eq(c.batch, 64);
    cr_assert_eq(c.lambda, 0.3);
    int K = 0;
    cr_assert_eq(cfg_resolve_k(&c, c.C, &K), 0, "%s", err_msg());
    cr_assert_eq(K, ex[i].K, "%s: K = %d", ex[i].file, K);
  }
}

Test(cfg, unknown_keys_are_errors) {
  LOAD_FAILS("N = 4;\nlamda = 0.3;\n", "bad.cfg:2:", "unknown config key 'lamda'", "did you mean 'lambda'");
  LOAD_FAILS("K = 10;\n", "unknown config key 'K'", "did you mean 'k'");
  LOAD_FAILS("wd = 1e-4;\n", "did you mean 'weight_decay'");
  LOAD_FAILS("zzzzzz = 1;\n", "unknown config key 'zzzzzz'");
  LOAD_FAILS("optimiser = { lr = 4; };\n", "unknown config key 'optimiser'", "top level");
  SET_FAILS("lamda=0.3", "unknown config key 'lamda'", "did you mean 'lambda'");
  SET_FAILS("proxy-lr=0.1", "did you mean 'proxy_lr'");
}

Test(cfg, wrong_types_are_errors) {
  LOAD_FAILS("N = 4.5;\n", "bad.cfg:1:", "config key 'N'", "expected an integer", "float 4.5");
  LOAD_FAILS("N = \"4\";\n", "config key 'N'", "expected an integer", "string");
  LOAD_FAILS("lr = \"fast\";\n", "config key 'lr'", "expected a number");
  LOAD_FAILS("arch = 3;\n", "config key 'arch'", "expected one of");
  LOAD_FAILS("arch = \"resnet\";\n", "config key 'arch'", "must be one of mlp, cnn, linear", "resnet");
  LOAD_FAILS("data = 5;\n", "config key 'data'", "expected a string");
  LOAD_FAILS("decay_epochs = 20;\n", "config key 'decay_epochs'", "expected an array");
  LOAD_FAILS("decay_epochs = [20.0, 40.0];\n", "config key 'decay_epochs'", "integers");
  LOAD_FAILS("recall_ks = \"all\";\n", "config key 'recall_ks'", "expected an array");
  LOAD_FAILS("warm = true;\n", "config key 'warm'", "boolean");
  SET_FAILS("N=abc", "config key 'N'", "expected an integer", "abc");
  SET_FAILS("N=4.0", "config key 'N'", "expected an integer");
  SET_FAILS("lr=1e-3x", "config key 'lr'", "expected a number");
  SET_FAILS("lr=inf", "config key 'lr'", "finite");
  SET_FAILS("lr=nan", "config key 'lr'", "finite");
  SET_FAILS("decay_epochs=20,,40", "config key 'decay_epochs'", "integers separated by commas");
  SET_FAILS("N", "expected key=value");
}

Test(cfg, out_of_range_is_an_error) {
  LOAD_FAILS("epochs = 3;\nN = 0;\n", "bad.cfg:2:", "config key 'N': must be >= 1, got 0");
  LOAD_FAILS("beta1 = 1;\n", "config key 'beta1': must be < 1, got 1");
  LOAD_FAILS("r = 0.0;\n", "config key 'r': must be > 0, got 0");
  LOAD_FAILS("r = 1.5;\n", "config key 'r': must be <= 1, got 1.5");
  LOAD_FAILS("lambda = -0.1;\n", "config key 'lambda': must be >= 0, got -0.1");
  LOAD_FAILS("lr = 1e400;\n", "config key 'lr'", "finite");
  LOAD_FAILS("data = \"\";\n", "config key 'data'", "empty");
  LOAD_FAILS("name = \"my run\";\n", "config key 'name'", "letters, digits");
  LOAD_FAILS("decay_epochs = [0, 5];\n", "config key 'decay_epochs': entries must be >= 1, got 0");
  LOAD_FAILS("decay_epochs = [40, 20];\n", "config key 'decay_epochs'", "increasing", "20 after 40");
  LOAD_FAILS("recall_ks = [1, 1];\n", "config key 'recall_ks'", "increasing");
  SET_FAILS("batch=0", "config key 'batch': must be >= 1, got 0");
  SET_FAILS("scale=0", "config key 'scale': must be > 0, got 0");
  SET_FAILS("eps=-1", "config key 'eps': must be > 0, got -1");
  SET_FAILS("N=99999999999999999999", "config key 'N'", "out of range");
  SET_FAILS("k=-3", "config key 'k': must be >= 0, got -3");
}

/* list keys hold at most CFG_LIST_MAX entries, each an int, from either source */
Test(cfg, list_keys_refusals) {
  char kv[600] = "recall_ks=", text[600] = "recall_ks = [";
  for (int j = 1; j <= CFG_LIST_MAX + 1; j++) {
    snprintf(kv + strlen(kv), sizeof kv - strlen(kv), "%s%d", j > 1 ? "," : "", j);
    snprintf(text + strlen(text), sizeof text - strlen(text), "%s%d", j > 1 ? ", " : "", j);
  }
  strcat(text, "];\n");
  SET_FAILS(kv, "config key 'recall_ks': more than 64 entries");
  LOAD_FAILS(text, "bad.cfg:1:", "config key 'recall_ks': more than 64 entries");
  LOAD_FAILS("recall_ks = [3000000000L];\n", "config key 'recall_ks': entry 3000000000 out of range");
}

/* a Config filled by a caller rather than the parser is checked as strictly */
Test(cfg, validate_a_struct_set_by_hand) {
  Config c;
  cfg_defaults(&c);
  c.arch = 7;
  cr_assert_eq(cfg_validate(&c), -1);
  ASSERT_MSG("config key 'arch': invalid choice 7");
  cfg_defaults(&c);
  c.recall_ks.n = CFG_LIST_MAX + 1;
  cr_assert_eq(cfg_validate(&c), -1);
  ASSERT_MSG("config key 'recall_ks': invalid list length 65");
  cfg_defaults(&c);
  c.r = 1.5;   /* beyond the range cfg_set and cfg_load allow */
  c.N = 4;
  int K = 0;
  cr_assert_eq(cfg_resolve_k(&c, 10, &K), -1);
  ASSERT_MSG("config key 'r': K = ceil(r*C*N) = 60 must be between 1 and C*N = 40 (r = 1.5, C = 10, N = 4)");
}

Test(cfg, k_and_r_together) {
  LOAD_FAILS("C = 10;\nk = 10;\nr = 0.25;\n", "bad.cfg:3:", "'k' and 'r'", "k = 10", "r = 0.25");
  /* k = 0 means "use r", and an r equal to the default chooses nothing */
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_load(&c, tmp_file("a.cfg", "k = 0;\nr = 0.25;\n")), 0, "%s", err_msg());
  cr_assert_eq(c.r, 0.25);
  cfg_defaults(&c);
  cr_assert_eq(cfg_load(&c, tmp_file("a.cfg", "k = 7;\nr = 0.4;\n")), 0, "%s", err_msg());
  cr_assert_eq(c.k, 7);
  /* a hand-built struct is caught by validate */
  cfg_defaults(&c);
  c.k = 10;
  c.r = 0.25;
  cr_assert_eq(cfg_validate(&c), -1);
  ASSERT_MSG("'k' and 'r'");
}

Test(cfg, later_layers_switch_between_k_and_r) {
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_load(&c, example("fmnist_mlp.cfg")), 0, "%s", err_msg());
  cr_assert_eq(c.r, 0.25);
  cr_assert_eq(cfg_set(&c, "k=12"), 0, "%s", err_msg());   /* overrides the file's r */
  cr_assert_eq(c.r, 0.4);
  cr_assert_eq(cfg_validate(&c), 0, "%s", err_msg());
  int K;
  cr_assert_eq(cfg_resolve_k(&c, 10, &K), 0);
  cr_assert_eq(K, 12);
  cr_assert_eq(cfg_set(&c, "r=0.5"), 0);
  cr_assert_eq(c.k, 0);
  cr_assert_eq(cfg_resolve_k(&c, 10, &K), 0);
  cr_assert_eq(K, 20);
  /* a file that sets k drops an r chosen by an earlier layer */
  cr_assert_eq(cfg_load(&c, tmp_file("k.cfg", "k = 9;\n")), 0, "%s", err_msg());
  cr_assert_eq(c.r, 0.4);
  cr_assert_eq(c.k, 9);
  cr_assert_eq(cfg_validate(&c), 0, "%s", err_msg());
}

Test(cfg, syntax_errors_name_file_and_line) {
  LOAD_FAILS("N = 4;\nr = ;\n", "bad.cfg:2:", "syntax error");
  LOAD_FAILS("N = 4;\n\n\nN = 5;\n", "bad.cfg:4:", "duplicate");
  LOAD_FAILS("arch = mlp;\n", "bad.cfg:1:");
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_load(&c, "no/such/dir/x.cfg"), -1);
  ASSERT_MSG("no/such/dir/x.cfg", "No such file");
}

/* "syntax error" alone does not say where to look: the line's text comes along */
Test(cfg, syntax_errors_quote_the_line) {
  LOAD_FAILS("N = 4;\nlr = 0.1 +;\nepochs = 2;\n", "bad.cfg:2: syntax error, in: lr = 0.1 +;");
  LOAD_FAILS("N = 4;\narch = mlp;\n", "bad.cfg:2:", "in: arch = mlp;");
  LOAD_FAILS("N = 4;\nname = \"x;\n", "bad.cfg:", "end of the file", "never closed");
  LOAD_FAILS("@include \"nothere.cfg\"\n", "bad.cfg:1:", "include", "in: @include \"nothere.cfg\"");
}

Test(cfg, include_is_relative_to_the_including_file) {
  const char *base = tmp_file("base.cfg", "N = 6;\nlambda = 0.5;\n");
  char main_path[600];
  snprintf(main_path, sizeof main_path, "%s", base);
  strcpy(strrchr(main_path, '/') + 1, "main.cfg");
  FILE *f = fopen(main_path, "w");
  fputs("@include \"base.cfg\"\nepochs = 2;\n", f);
  fclose(f);
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_load(&c, main_path), 0, "%s", err_msg());
  cr_assert_eq(c.N, 6);
  cr_assert_eq(c.epochs, 2);
}

Test(cfg, set_parses_every_type) {
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_set(&c, "N=8"), 0);
  cr_assert_eq(c.N, 8);
  cr_assert_eq(cfg_set(&c, " lr = 2.5e-4 "), 0);
  cr_assert_eq(c.lr, 2.5e-4);
  cr_assert_eq(cfg_set(&c, "scale=20"), 0);
  cr_assert_eq(c.scale, 20.0);
  cr_assert_eq(cfg_set(&c, "arch=cnn"), 0);
  cr_assert_eq(c.arch, CFG_ARCH_CNN);
  cr_assert_eq(cfg_set(&c, "name=\"quick-run.1\""), 0);
  cr_assert_str_eq(c.name, "quick-run.1");
  cr_assert_eq(cfg_set(&c, "data=some dir/x.h5"), 0);
  cr_assert_str_eq(c.data, "some dir/x.h5");
  cr_assert_eq(cfg_set(&c, "seed=5000000000"), 0);
  cr_assert_eq(c.seed, 5000000000LL);
  cr_assert_eq(cfg_set(&c, "decay_epochs=20,40"), 0);
  cr_assert_eq(c.decay_epochs.n, 2);
  cr_assert_eq(c.decay_epochs.v[0], 20);
  cr_assert_eq(c.decay_epochs.v[1], 40);
  cr_assert_eq(cfg_set(&c, "decay_epochs=[5, 10, 15]"), 0);
  cr_assert_eq(c.decay_epochs.n, 3);
  cr_assert_eq(c.decay_epochs.v[2], 15);
  cr_assert_eq(cfg_set(&c, "decay_epochs="), 0);
  cr_assert_eq(c.decay_epochs.n, 0);
  cr_assert_eq(cfg_set(&c, "eval_epochs=0,5"), 0);
  cr_assert_eq(c.eval_epochs.n, 2);
  cr_assert(cfg_eval_at(&c, 0) && cfg_eval_at(&c, 5) && !cfg_eval_at(&c, 3));
  cr_assert_eq(cfg_set(&c, "eval_epochs=all"), 0);
  cr_assert_eq(c.eval_epochs.n, CFG_LIST_ALL);
  SET_FAILS("decay_epochs=all", "config key 'decay_epochs'");
  /* overrides apply on top of a file, last one wins */
  cr_assert_eq(cfg_load(&c, example("fmnist_zeroshot.cfg")), 0, "%s", err_msg());
  cr_assert_eq(c.N, 4);
  cr_assert_eq(cfg_set(&c, "N=2"), 0);
  cr_assert_eq(cfg_set(&c, "N=3"), 0);
  cr_assert_eq(c.N, 3);
  cr_assert_eq(cfg_validate(&c), 0, "%s", err_msg());
}

Test(cfg, validate_cross_key_rules) {
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_set(&c, "eval_epochs=0,3,9"), 0);   /* fine alone, the run is 5 epochs */
  cr_assert_eq(cfg_validate(&c), -1);
  ASSERT_MSG("config key 'eval_epochs'", "9", "epochs = 5");
  cr_assert_eq(cfg_set(&c, "epochs=9"), 0);
  cr_assert_eq(cfg_validate(&c), 0, "%s", err_msg());
  cr_assert_eq(cfg_set(&c, "C=10"), 0);
  cr_assert_eq(cfg_set(&c, "k=41"), 0);
  cr_assert_eq(cfg_validate(&c), -1);
  ASSERT_MSG("config key 'k'", "K = 41", "C*N = 40");
  memset(c.name, 'x', sizeof c.name);   /* unterminated: a corrupted broadcast */
  cr_assert_eq(cfg_validate(&c), -1);
  ASSERT_MSG("config key 'name'");
}

Test(cfg, resolve_k_rounding_and_limits) {
  Config c;
  cfg_defaults(&c);
  int K = 0;
  c.r = 0.07;
  c.N = 5;
  cr_assert_eq(cfg_resolve_k(&c, 100, &K), 0);
  cr_assert_eq(K, 36, "(0.07*100)*5 is 35.00000000000001, so K = 36; got %d", K);
  c.r = 0.05;
  c.N = 12;
  cr_assert_eq(cfg_resolve_k(&c, 100, &K), 0);
  cr_assert_eq(K, 60, "K = %d", K);
  c.r = 1.0;
  c.N = 4;
  cr_assert_eq(cfg_resolve_k(&c, 10, &K), 0);
  cr_assert_eq(K, 40);
  c.r = 1e-9;
  cr_assert_eq(cfg_resolve_k(&c, 10, &K), 0);
  cr_assert_eq(K, 1);
  c.k = 40;
  cr_assert_eq(cfg_resolve_k(&c, 10, &K), 0);
  cr_assert_eq(K, 40);
  c.k = 41;
  cr_assert_eq(cfg_resolve_k(&c, 10, &K), -1);
  ASSERT_MSG("K = 41", "C*N = 40", "C = 10", "N = 4");
  c.k = 0;
  cr_assert_eq(cfg_resolve_k(&c, 0, &K), -1);
  ASSERT_MSG("C = 0");
}

Test(cfg, lr_schedule) {
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_set(&c, "decay_epochs=2,4"), 0);
  cr_assert_eq(cfg_lr_at(&c, 0.03, 1), 0.03);
  cr_assert_eq(cfg_lr_at(&c, 0.03, 2), 0.03 * 0.1);
  cr_assert_eq(cfg_lr_at(&c, 0.03, 3), 0.03 * 0.1);
  cr_assert_eq(cfg_lr_at(&c, 0.03, 4), 0.03 * 0.1 * 0.1);   /* repeated products, as torch */
}

static void unusual_config(Config *c) {
  cfg_defaults(c);
  const char *sets[] = {"name=odd_run-1.2", "data=dir with \"quotes\"\\and\tbackslash/é.h5", "arch=linear",
                        "embed_dim=64", "C=100", "N=12", "r=0.05", "lambda=0", "scale=20", "lr=0.1",
                        "proxy_lr=3e-7", "eps=1e-8", "weight_decay=0", "beta1=0", "beta2=0.99999",
                        "decay_epochs=1,20,40", "decay_rate=0.5", "warm=1", "epochs=50", "batch=1",
                        "seed=18446744073709", "eval_epochs=0,1,50", "recall_ks=1,10,100,1000",
                        "kmeans_restarts=1", "threads=3", "checkpoint_every=100",
                        "max_steps_per_epoch=7", "check_sync_every=10"};
  for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
    cr_assert_eq(cfg_set(c, sets[i]), 0, "%s: %s", sets[i], err_msg());
  cr_assert_eq(cfg_validate(c), 0, "%s", err_msg());
}

static void round_trip(const Config *a) {
  char *text = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&text, &n);
  cfg_dump(a, f);
  fclose(f);
  Config b;
  cfg_defaults(&b);
  b.N = 1;   /* the dump must set every key, not lean on the defaults */
  cr_assert_eq(cfg_load(&b, tmp_file("dump.cfg", text)), 0, "%s\n%s", err_msg(), text);
  cr_assert(!memcmp(a, &b, sizeof b), "round trip differs:\n%s", text);
  cr_assert_eq(cfg_hash(a), cfg_hash(&b));
  free(text);
}

Test(cfg, dump_load_round_trip) {
  Config c;
  cfg_defaults(&c);
  round_trip(&c);
  unusual_config(&c);
  round_trip(&c);
  cr_assert_eq(cfg_set(&c, "k=60"), 0);
  round_trip(&c);
  cr_assert_eq(cfg_load(&c, example("fmnist_cnn.cfg")), 0, "%s", err_msg());
  round_trip(&c);
  cr_assert_eq(cfg_set(&c, "seed=5000000000"), 0);   /* needs the L suffix in the dump */
  round_trip(&c);
}

Test(cfg, hash_follows_the_trajectory_keys) {
  Config a, b;
  cfg_defaults(&a);
  cfg_defaults(&b);
  uint64_t h = cfg_hash(&a);
  cr_assert_eq(h, cfg_hash(&b));
  cr_assert_eq(cfg_set(&b, "lr=0.002"), 0);
  cr_assert_neq(cfg_hash(&b), h);
  cfg_defaults(&b);
  cr_assert_eq(cfg_set(&b, "decay_epochs=20"), 0);
  cr_assert_neq(cfg_hash(&b), h);
  cfg_defaults(&b);
  cr_assert_eq(cfg_set(&b, "data=other.h5"), 0);
  cr_assert_neq(cfg_hash(&b), h);
  /* what may change on resume does not count */
  cfg_defaults(&b);
  const char *free_keys[] = {"name=x", "epochs=50", "eval_epochs=0,50", "recall_ks=1", "kmeans_restarts=10",
                             "nmi_max_clusters=5", "threads=8", "checkpoint_every=5", "check_sync_every=5", "collective_timeout=30"};
  for (size_t i = 0; i < sizeof free_keys / sizeof free_keys[0]; i++)
    cr_assert_eq(cfg_set(&b, free_keys[i]), 0, "%s", err_msg());
  cr_assert_eq(cfg_hash(&b), h);
}

/* the loss and its keys: choices, ranges, what the hash sees */
Test(cfg, loss_keys) {
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(c.loss, CFG_LOSS_PROXYGML);
  cr_assert_eq(cfg_proxies_per_class(&c), c.N);
  const char *names[] = {"proxygml", "proxynca", "proxyanchor", "softtriple", "normsoftmax"};
  for (int i = 0; i < 5; i++) {
    char kv[64];
    snprintf(kv, sizeof kv, "loss=%s", names[i]);
    cr_assert_eq(cfg_set(&c, kv), 0, "%s", err_msg());
    cr_assert_eq(c.loss, i);
    cr_assert_str_eq(cfg_loss_name(c.loss), names[i]);
    cr_assert_eq(cfg_validate(&c), 0, "%s", err_msg());
    round_trip(&c);
  }
  cr_assert_eq(cfg_set(&c, "softtriple_centers=4"), 0);
  cr_assert_eq(cfg_proxies_per_class(&c), 1, "normsoftmax has one proxy per class");
  cr_assert_eq(cfg_set(&c, "loss=softtriple"), 0);
  cr_assert_eq(cfg_proxies_per_class(&c), 4);
  SET_FAILS("loss=softmax", "config key 'loss'", "proxyanchor", "\"softmax\"");
  SET_FAILS("proxyanchor_alpha=301", "proxyanchor_alpha");
  SET_FAILS("proxyanchor_alpha=0", "proxyanchor_alpha");
  SET_FAILS("proxyanchor_margin=1.5", "proxyanchor_margin");
  SET_FAILS("softtriple_centers=0", "softtriple_centers");
  SET_FAILS("softtriple_gamma=0", "softtriple_gamma");
  SET_FAILS("softtriple_tau=-0.1", "softtriple_tau");
  SET_FAILS("normsoftmax_temperature=0", "normsoftmax_temperature");
  SET_FAILS("proxynca_scale=-1", "proxynca_scale");
  LOAD_FAILS("loss = 2;\n", "config key 'loss'", "loss name");
  /* K is ProxyGML's: a baseline with C given validates whatever k says */
  cfg_defaults(&c);
  cr_assert_eq(cfg_set(&c, "C=10"), 0);
  cr_assert_eq(cfg_set(&c, "k=1000"), 0);
  cr_assert_eq(cfg_validate(&c), -1);
  cr_assert_eq(cfg_set(&c, "loss=proxynca"), 0);
  cr_assert_eq(cfg_validate(&c), 0, "%s", err_msg());
}

Test(cfg, hash_sees_only_the_chosen_loss) {
  Config a, b;
  cfg_defaults(&a);
  uint64_t h = cfg_hash(&a);
  /* a ProxyGML configuration: the baselines' keys are not part of it */
  b = a;
  const char *others[] = {"proxynca_scale=3", "proxyanchor_alpha=16", "softtriple_centers=2", "softtriple_tau=0",
                          "normsoftmax_temperature=0.1"};
  for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) cr_assert_eq(cfg_set(&b, others[i]), 0);
  cr_assert_eq(cfg_hash(&b), h);
  /* choosing a baseline changes it, and so do that baseline's keys, not another's */
  cfg_defaults(&b);
  cr_assert_eq(cfg_set(&b, "loss=softtriple"), 0);
  uint64_t hs = cfg_hash(&b);
  cr_assert_neq(hs, h);
  cr_assert_eq(cfg_set(&b, "proxyanchor_alpha=16"), 0);
  cr_assert_eq(cfg_hash(&b), hs);
  cr_assert_eq(cfg_set(&b, "softtriple_centers=2"), 0);
  cr_assert_neq(cfg_hash(&b), hs);
}

/* h5io_attr_str reads with an ASCII memory type, and HDF5 will not convert the
 * UTF-8 strings h5io_set_attr_str writes into it; read with the stored cset */
static int attr_str(hid_t loc, const char *name, char *buf, size_t cap) {
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  if (a < 0) return -1;
  hid_t t = H5Aget_type(a), mt = H5Tcopy(H5T_C_S1);
  H5Tset_size(mt, H5T_VARIABLE);
  H5Tset_cset(mt, H5Tget_cset(t));
  char *s = NULL;
  int rc = H5Aread(a, mt, &s) < 0 ? -1 : 0;
  if (rc == 0) snprintf(buf, cap, "%s", s ? s : "");
  H5free_memory(s);
  H5Tclose(mt);
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

Test(cfg, attributes_round_trip_through_hdf5) {
  Config c;
  unusual_config(&c);
  const char *path = tmp_file("attrs.h5", "");
  hid_t f;
  cr_assert_eq(h5io_create(path, &f), 0, "%s", err_msg());
  hid_t g = H5Gcreate2(f, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  cr_assert(g >= 0);
  cr_assert_eq(cfg_write_attrs(&c, g), 0, "%s", err_msg());
  H5Gclose(g);
  H5Fclose(f);

  cr_assert_eq(h5io_open(path, &f), 0, "%s", err_msg());
  g = H5Gopen2(f, "config", H5P_DEFAULT);
  int64_t i;
  double x;
  char s[4096];
  cr_assert_eq(h5io_attr_i64(g, "N", &i), 0);
  cr_assert_eq(i, 12);
  cr_assert_eq(h5io_attr_i64(g, "seed", &i), 0);
  cr_assert_eq(i, 18446744073709LL);
  cr_assert_eq(h5io_attr_f64(g, "r", &x), 0);
  cr_assert_eq(x, 0.05);
  cr_assert_eq(h5io_attr_f64(g, "proxy_lr", &x), 0);
  cr_assert_eq(x, 3e-7);
  cr_assert_eq(attr_str(g, "arch", s, sizeof s), 0);
  cr_assert_str_eq(s, "linear");
  cr_assert_eq(attr_str(g, "data", s, sizeof s), 0);
  cr_assert_str_eq(s, c.data);
  cr_assert_eq(attr_str(g, "decay_epochs", s, sizeof s), 0);
  cr_assert_str_eq(s, "1,20,40");
  cr_assert_eq(attr_str(g, "recall_ks", s, sizeof s), 0);
  cr_assert_str_eq(s, "1,10,100,1000");
  cr_assert_eq(attr_str(g, "config_hash", s, sizeof s), 0);
  char want[24];
  snprintf(want, sizeof want, "%016llx", (unsigned long long)cfg_hash(&c));
  cr_assert_str_eq(s, want);
  /* the "config" attribute is a loadable file of the whole struct */
  cr_assert_eq(attr_str(g, "config", s, sizeof s), 0);
  Config back;
  cfg_defaults(&back);
  cr_assert_eq(cfg_load(&back, tmp_file("from_attr.cfg", s)), 0, "%s", err_msg());
  cr_assert(!memcmp(&back, &c, sizeof c));
  H5Gclose(g);
  H5Fclose(f);

  /* default lists: "all" and empty */
  cfg_defaults(&c);
  cr_assert_eq(h5io_create(path, &f), 0);
  cr_assert_eq(cfg_write_attrs(&c, f), 0, "%s", err_msg());
  cr_assert_eq(attr_str(f, "eval_epochs", s, sizeof s), 0);
  cr_assert_str_eq(s, "all");
  cr_assert_eq(attr_str(f, "decay_epochs", s, sizeof s), 0);
  cr_assert_str_eq(s, "");
  H5Fclose(f);
}

Test(cfg, help_lists_every_key) {
  char *text = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&text, &n);
  cfg_print_help(f);
  fclose(f);
  Config c;
  cfg_defaults(&c);
  char *dump = NULL;
  size_t dn = 0;
  f = open_memstream(&dump, &dn);
  cfg_dump(&c, f);
  fclose(f);
  /* every key of the dump appears in the help with its default */
  int keys = 0;
  for (char *line = strtok(dump, "\n"); line; line = strtok(NULL, "\n")) {
    char key[64], val[256];
    if (line[0] == '#' || sscanf(line, "%63s = %255[^;]", key, val) != 2) continue;
    char needle[80];
    snprintf(needle, sizeof needle, "  %s ", key);
    cr_assert(strstr(text, needle), "help lacks key %s:\n%s", key, text);
    cr_assert(strstr(strstr(text, needle), val), "help lacks the default %s of %s", val, key);
    keys++;
  }
  cr_assert_geq(keys, 28);
  free(text);
  free(dump);
}

/* each key within its range, their product beyond an int: the proxy count */
Test(cfg, proxy_count_beyond_int_range) {
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_set(&c, "loss=softtriple"), 0, "%s", err_msg());
  cr_assert_eq(cfg_set(&c, "C=1000000"), 0, "%s", err_msg());
  cr_assert_eq(cfg_set(&c, "softtriple_centers=10000"), 0, "%s", err_msg());
  cr_assert_eq(cfg_validate(&c), -1);
  ASSERT_MSG("config keys 'C' and 'softtriple_centers': C*centres = 1000000*10000 is out of range");
}

/* a label space of millions of classes is a configuration like any other
 * (docs/sharding.md); the bound is the proxy count C*N of an int */
Test(cfg, millions_of_classes) {
  Config c;
  cfg_defaults(&c);
  cr_assert_eq(cfg_set(&c, "C=10000000"), 0, "%s", err_msg());
  cr_assert_eq(cfg_set(&c, "N=2"), 0, "%s", err_msg());
  cr_assert_eq(cfg_set(&c, "shard_proxies=1"), 0, "%s", err_msg());
  cr_assert_eq(cfg_validate(&c), 0, "%s", err_msg());
  cr_assert_eq(cfg_set(&c, "N=300"), 0, "%s", err_msg());
  cr_assert_eq(cfg_validate(&c), -1);
  ASSERT_MSG("config keys 'C' and 'N': C*N = 10000000*300 is out of range");
}
