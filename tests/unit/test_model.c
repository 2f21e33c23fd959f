/* test_model.c: the backbone. Architecture tables (parameter names, shapes,
 * counts), the unknown-architecture error, PyTorch-default init statistics,
 * model_forward/backward against the same layer list run through the double
 * `_ref` kernels, finite differences of that double path, and (when PyTorch
 * is available to the system python) the outputs and gradients of the
 * PyTorch modules of the reference script, computed at test time. */
#include <criterion/criterion.h>

#include "common.h"
#include "config.h"
#include "layers.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---------------------------------------------------------- helpers */

typedef struct {
  Model m;
  float *params, *grads;   /* num_params */
} Net;

static void net_init(Net *n, const char *arch, int c, int h, int w, int d, int B_max, uint64_t seed) {
  cr_assert(model_init(&n->m, arch, c, h, w, d, B_max) == 0, "%s", err_msg());
  size_t np = model_num_params(&n->m);
  n->params = xmalloc_f32(np);
  n->grads = xcalloc(np, sizeof *n->grads);
  model_bind(&n->m, n->params, n->grads);
  Rng r; rng_init(&r, seed);
  model_init_params(&n->m, &r);
}

static void net_free(Net *n) {
  model_free(&n->m);
  free(n->params);
  free(n->grads);
}

static float *rand_f32(Rng *r, size_t n, float lo, float hi) {
  float *x = xmalloc_f32(n ? n : 1);
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * rng_uniform(r);
  return x;
}

static size_t layer_size(const ModelLayer *l) { return (size_t)l->oc * l->oh * l->ow; }

/* The model's layer list run through the double `_ref` kernels. The relu
 * masks and argmax indices of a forward are kept, so the finite differences
 * can tell when a step crossed a kink or a tie. */
typedef struct {
  const Model *m;
  int B;
  double *params;                    /* num_params */
  double *inp;                       /* B x in_size */
  double *act[MODEL_MAX_LAYERS];     /* B x layer_size */
  int *idx[MODEL_MAX_LAYERS];        /* maxpool2 argmax */
} Ref;

static void ref_init(Ref *r, const Model *m, int B, const float *params, const float *inp) {
  memset(r, 0, sizeof *r);
  r->m = m; r->B = B;
  r->params = xmalloc_f64(m->num_params);
  for (size_t i = 0; i < m->num_params; i++) r->params[i] = params[i];
  r->inp = xmalloc_f64((size_t)B * m->in_size);
  for (size_t i = 0; i < (size_t)B * m->in_size; i++) r->inp[i] = inp[i];
  for (int i = 0; i < m->nlayers; i++) {
    r->act[i] = xmalloc_f64((size_t)B * layer_size(&m->layers[i]));
    r->idx[i] = xmalloc((size_t)B * layer_size(&m->layers[i]) * sizeof(int));
  }
}

static void ref_free(Ref *r) {
  free(r->params); free(r->inp);
  for (int i = 0; i < r->m->nlayers; i++) { free(r->act[i]); free(r->idx[i]); }
}

static void ref_forward(Ref *r) {
  const Model *m = r->m;
  const double *x = r->inp;
  for (int i = 0; i < m->nlayers; i++) {
    const ModelLayer *l = &m->layers[i];
    const double *w = l->weight >= 0 ? r->params + m->params[l->weight].offset : NULL;
    const double *b = l->bias >= 0 ? r->params + m->params[l->bias].offset : NULL;
    switch (l->op) {
    case MODEL_OP_LINEAR: linear_forward_ref(r->act[i], x, w, b, r->B, l->c, l->oc); break;
    case MODEL_OP_CONV3X3: conv3x3_forward_ref(r->act[i], x, w, b, r->B, l->c, l->oc, l->h, l->w); break;
    case MODEL_OP_RELU: relu_forward_ref(r->act[i], x, (long)r->B * layer_size(l)); break;
    case MODEL_OP_MAXPOOL2: maxpool2_forward_ref(r->act[i], r->idx[i], x, r->B, l->c, l->h, l->w); break;
    }
    x = r->act[i];
  }
}

/* grads (num_params, zeroed by the caller) += d sum(dout . out) / d params */
static void ref_backward(Ref *r, const double *dout, double *grads) {
  const Model *m = r->m;
  double *g = xmalloc_f64((size_t)r->B * m->embed_dim);
  memcpy(g, dout, (size_t)r->B * m->embed_dim * sizeof *g);
  for (int i = m->nlayers - 1; i >= 0; i--) {
    const ModelLayer *l = &m->layers[i];
    const double *x = i > 0 ? r->act[i - 1] : r->inp;
    double *dx = i > 0 ? xcalloc((size_t)r->B * layer_size(&m->layers[i - 1]), sizeof *dx) : NULL;
    const double *w = l->weight >= 0 ? r->params + m->params[l->weight].offset : NULL;
    double *dw = l->weight >= 0 ? grads + m->params[l->weight].offset : NULL;
    double *db = l->bias >= 0 ? grads + m->params[l->bias].offset : NULL;
    switch (l->op) {
    case MODEL_OP_LINEAR: linear_backward_ref(dx, dw, db, g, x, w, r->B, l->c, l->oc); break;
    case MODEL_OP_CONV3X3: conv3x3_backward_ref(dx, dw, db, g, x, w, r->B, l->c, l->oc, l->h, l->w); break;
    case MODEL_OP_RELU: if (dx) relu_backward_ref(dx, g, r->act[i], (long)r->B * layer_size(l)); break;
    case MODEL_OP_MAXPOOL2: if (dx) maxpool2_backward_ref(dx, g, r->idx[i], r->B, l->c, l->h, l->w); break;
    }
    free(g);
    g = dx;
  }
  free(g);
}

static double ref_loss(Ref *r, const double *dout) {
  ref_forward(r);
  const double *out = r->act[r->m->nlayers - 1];
  double s = 0;
  for (size_t i = 0; i < (size_t)r->B * r->m->embed_dim; i++) s += dout[i] * out[i];
  return s;
}

/* the non-smooth state of the last ref forward: relu signs, argmax indices */
static size_t ref_state(const Ref *r, unsigned char *buf) {
  size_t k = 0;
  for (int i = 0; i < r->m->nlayers; i++) {
    const ModelLayer *l = &r->m->layers[i];
    size_t n = (size_t)r->B * layer_size(l);
    if (l->op == MODEL_OP_RELU)
      for (size_t j = 0; j < n; j++) buf[k++] = r->act[i][j] > 0;
    if (l->op == MODEL_OP_MAXPOOL2)
      for (size_t j = 0; j < n; j++) buf[k++] = (unsigned char)r->idx[i][j];
  }
  return k;
}

/* an upper bound of ref_state's size */
static size_t ref_state_size(const Ref *r) {
  size_t k = 0;
  for (int i = 0; i < r->m->nlayers; i++) k += (size_t)r->B * layer_size(&r->m->layers[i]);
  return k;
}

/* ---------------------------------------------------------- tables */

Test(model, unknown_architecture) {
  Model m;
  cr_expect(model_init(&m, "resnet50", 1, 28, 28, 128, 64) == -1);
  cr_expect(strstr(err_msg(), "unknown architecture 'resnet50'") != NULL, "message: %s", err_msg());
  cr_expect(strstr(err_msg(), "known: mlp, cnn, linear") != NULL, "message: %s", err_msg());
  model_free(&m);   /* safe after a failed init */
  cr_expect(model_init(&m, "cnn", 1, 3, 28, 128, 64) == -1, "a 3-pixel-high input cannot be pooled twice");
  cr_expect(model_init(&m, "mlp", 1, 28, 28, 0, 64) == -1);
  cr_expect(model_init(&m, "mlp", 1, 28, 28, 128, 0) == -1);
  /* the same checks without allocating: what train and sweep plan ask before building */
  cr_expect(model_check("cnn", 784, 1, 1, 128) == -1 && strstr(err_msg(), "at least 4 x 4"), "%s", err_msg());
  cr_expect(model_check("resnet50", 1, 28, 28, 128) == -1 && strstr(err_msg(), "resnet50"), "%s", err_msg());
  cr_expect(model_check("mlp", 784, 1, 1, 128) == 0 && model_check("cnn", 1, 28, 28, 128) == 0);
}

static void expect_param(const Model *m, const char *name, int ndim, int d0, int d1, int d2, int d3) {
  int i = model_param_find(m, name);
  cr_assert(i >= 0, "%s: no parameter %s", m->arch, name);
  const ModelParam *p = &m->params[i];
  const int want[4] = {d0, d1, d2, d3};
  cr_expect(p->ndim == ndim, "%s %s: ndim %d", m->arch, name, p->ndim);
  size_t count = 1;
  for (int k = 0; k < ndim; k++) {
    cr_expect(p->shape[k] == want[k], "%s %s: dim %d is %d, want %d", m->arch, name, k, p->shape[k], want[k]);
    count *= (size_t)want[k];
  }
  cr_expect(p->count == count);
}

Test(model, tables) {
  Model m;
  cr_assert(model_init(&m, "mlp", 1, 28, 28, 128, 64) == 0, "%s", err_msg());
  cr_expect(m.nparams == 6);
  expect_param(&m, "body.1.weight", 2, 512, 784, 0, 0);
  expect_param(&m, "body.1.bias", 1, 512, 0, 0, 0);
  expect_param(&m, "body.3.weight", 2, 512, 512, 0, 0);
  expect_param(&m, "body.3.bias", 1, 512, 0, 0, 0);
  expect_param(&m, "embedding.weight", 2, 128, 512, 0, 0);
  expect_param(&m, "embedding.bias", 1, 128, 0, 0, 0);
  cr_expect(model_num_params(&m) == (size_t)(784 * 512 + 512) + (512 * 512 + 512) + (512 * 128 + 128));
  size_t off, cnt;
  model_embedding_range(&m, &off, &cnt);
  cr_expect(off == model_num_params(&m) - (512 * 128 + 128) && cnt == 512 * 128 + 128);
  model_free(&m);

  cr_assert(model_init(&m, "cnn", 1, 28, 28, 128, 64) == 0, "%s", err_msg());
  cr_expect(m.nparams == 8);
  expect_param(&m, "body.0.weight", 4, 32, 1, 3, 3);
  expect_param(&m, "body.0.bias", 1, 32, 0, 0, 0);
  expect_param(&m, "body.3.weight", 4, 64, 32, 3, 3);
  expect_param(&m, "body.3.bias", 1, 64, 0, 0, 0);
  expect_param(&m, "body.7.weight", 2, 256, 64 * 7 * 7, 0, 0);
  expect_param(&m, "body.7.bias", 1, 256, 0, 0, 0);
  expect_param(&m, "embedding.weight", 2, 128, 256, 0, 0);
  expect_param(&m, "embedding.bias", 1, 128, 0, 0, 0);
  cr_expect(model_num_params(&m) ==
            (size_t)(32 * 9 + 32) + (64 * 32 * 9 + 64) + (256 * 3136 + 256) + (128 * 256 + 128));
  model_embedding_range(&m, &off, &cnt);
  cr_expect(off == m.params[6].offset && cnt == 128 * 256 + 128);
  /* parameters tile the block in table order */
  size_t next = 0;
  for (int i = 0; i < m.nparams; i++) { cr_expect(m.params[i].offset == next); next += m.params[i].count; }
  cr_expect(next == model_num_params(&m));
  model_free(&m);

  /* other input shapes and embedding sizes */
  cr_assert(model_init(&m, "cnn", 3, 32, 30, 64, 8) == 0, "%s", err_msg());
  expect_param(&m, "body.0.weight", 4, 32, 3, 3, 3);
  expect_param(&m, "body.7.weight", 2, 256, 64 * 8 * 7, 0, 0);
  expect_param(&m, "embedding.weight", 2, 64, 256, 0, 0);
  model_free(&m);
  cr_assert(model_init(&m, "linear", 2048, 1, 1, 128, 8) == 0, "%s", err_msg());
  cr_expect(m.nparams == 2);
  expect_param(&m, "embedding.weight", 2, 128, 2048, 0, 0);
  model_embedding_range(&m, &off, &cnt);
  cr_expect(off == 0 && cnt == model_num_params(&m));
  model_free(&m);
}

/* ---------------------------------------------------------- init */

Test(model, init_statistics) {
  Net n;
  net_init(&n, "cnn", 1, 28, 28, 128, 4, 7);
  const Model *m = &n.m;
  for (int i = 0; i < m->nparams; i++) {
    const ModelParam *p = &m->params[i];
    const ModelParam *wt = &m->params[p->ndim == 1 ? i - 1 : i];   /* a bias follows its weight */
    int fan_in = wt->ndim == 4 ? wt->shape[1] * 9 : wt->shape[1];
    double bound = 1 / sqrt((double)fan_in), s = 0, ss = 0, mx = 0;
    const float *w = n.params + p->offset;
    for (size_t k = 0; k < p->count; k++) { s += w[k]; ss += (double)w[k] * w[k]; mx = fmax(mx, fabs(w[k])); }
    double mean = s / p->count, var = ss / p->count - mean * mean, sd_mean = bound / sqrt(3.0 * p->count);
    cr_expect(mx <= bound, "%s: max |w| %g above the bound %g", p->name, mx, bound);
    cr_expect(fabs(mean) < 5 * sd_mean, "%s: mean %g (sd of the mean %g)", p->name, mean, sd_mean);
    if (p->count >= 1000) {   /* U(-a, a) has variance a^2/3, and reaches its bounds */
      cr_expect(fabs(var / (bound * bound / 3) - 1) < 0.1, "%s: variance %g, want %g", p->name, var,
                bound * bound / 3);
      cr_expect(mx > 0.99 * bound, "%s: max |w| %g, bound %g", p->name, mx, bound);
    }
  }
  /* the same seed gives the same parameters */
  float *again = xmalloc_f32(m->num_params);
  model_bind(&n.m, again, n.grads);
  Rng r; rng_init(&r, 7);
  model_init_params(&n.m, &r);
  cr_expect(memcmp(again, n.params, m->num_params * sizeof *again) == 0);
  free(again);
  net_free(&n);
}

/* ---------------------------------------------------------- forward/backward */

static void compare_case(const char *arch, int c, int h, int w, int d, int B, uint64_t seed) {
  Net n;
  net_init(&n, arch, c, h, w, d, B + 3, seed);
  Model *m = &n.m;
  Rng r; rng_init(&r, seed + 100);
  float *x = rand_f32(&r, (size_t)B * m->in_size, 0, 1), *g = rand_f32(&r, (size_t)B * d, -1, 1);
  model_forward(m, x, B);
  memset(x, 0, (size_t)B * m->in_size * sizeof *x);   /* the model keeps its own copy */
  model_backward(m, g, B);

  Ref ref;
  Rng r2; rng_init(&r2, seed + 100);
  float *x2 = rand_f32(&r2, (size_t)B * m->in_size, 0, 1);
  ref_init(&ref, m, B, n.params, x2);
  double *gd = xmalloc_f64((size_t)B * d), *grads = xcalloc(m->num_params, sizeof *grads);
  for (size_t i = 0; i < (size_t)B * d; i++) gd[i] = g[i];
  ref_forward(&ref);
  ref_backward(&ref, gd, grads);

  char lab[96];
  snprintf(lab, sizeof lab, "%s %dx%dx%d D=%d B=%d", arch, c, h, w, d, B);
  cr_expect(check_close_f32(lab, m->out, ref.act[m->nlayers - 1], (size_t)B * d, 1e-6, 1e-5), "%s: out", lab);
  for (int i = 0; i < m->nparams; i++) {
    const ModelParam *p = &m->params[i];
    cr_expect(check_close_f32(p->name, n.grads + p->offset, grads + p->offset, p->count, 1e-6, 1e-5), "%s: grad %s",
              lab, p->name);
  }
  /* a second backward accumulates */
  model_backward(m, g, B);
  for (size_t i = 0; i < m->num_params; i++) grads[i] *= 2;
  cr_expect(check_close_f32("twice", n.grads, grads, m->num_params, 1e-6, 1e-5), "%s: backward accumulates", lab);
  ref_free(&ref);
  free(x); free(x2); free(g); free(gd); free(grads);
  net_free(&n);
}

Test(model, matches_ref_path) {
  compare_case("mlp", 1, 28, 28, 128, 5, 1);
  compare_case("mlp", 2, 5, 7, 9, 3, 2);
  compare_case("cnn", 1, 28, 28, 128, 4, 3);
  compare_case("cnn", 3, 13, 11, 7, 3, 4);   /* odd sizes: the pools drop a row and a column */
  compare_case("linear", 37, 1, 1, 5, 6, 5);
}

/* finite differences of the whole double ref path on a subset of the
 * parameters, skipping steps that flip a relu sign or an argmax */
static void fd_case(const char *arch, int c, int h, int w, int d, int B, uint64_t seed) {
  Net n;
  net_init(&n, arch, c, h, w, d, B, seed);
  Model *m = &n.m;
  Rng r; rng_init(&r, seed + 100);
  float *x = rand_f32(&r, (size_t)B * m->in_size, 0, 1);
  Ref ref;
  ref_init(&ref, m, B, n.params, x);
  double *gd = xmalloc_f64((size_t)B * d), *grads = xcalloc(m->num_params, sizeof *grads);
  for (int i = 0; i < B * d; i++) gd[i] = 2 * rng_uniform_f64(&r) - 1;
  ref_forward(&ref);
  ref_backward(&ref, gd, grads);
  unsigned char *s0 = xmalloc(ref_state_size(&ref)), *s1 = xmalloc(ref_state_size(&ref));
  size_t ns = ref_state(&ref, s0);
  const double h_ = 1e-6;
  int checked = 0, skipped = 0;
  for (int i = 0; i < m->nparams; i++) {
    const ModelParam *p = &m->params[i];
    for (int t = 0; t < 12; t++) {   /* 12 random entries of every tensor */
      size_t k = p->offset + rng_below(&r, (uint32_t)p->count);
      double keep = ref.params[k];
      ref.params[k] = keep + h_;
      double lp = ref_loss(&ref, gd);
      int smooth = ref_state(&ref, s1) == ns && !memcmp(s0, s1, ns);
      ref.params[k] = keep - h_;
      double lm = ref_loss(&ref, gd);
      smooth = smooth && ref_state(&ref, s1) == ns && !memcmp(s0, s1, ns);
      ref.params[k] = keep;
      if (!smooth) { skipped++; continue; }
      double num = (lp - lm) / (2 * h_);
      cr_expect(fabs(num - grads[k]) <= 1e-6 + 1e-5 * fabs(num), "%s %s[%zu]: analytic %.10g, numeric %.10g", arch,
                p->name, k - p->offset, grads[k], num);
      checked++;
    }
  }
  cr_expect(checked > 8 * m->nparams, "%s: only %d of %d points were smooth", arch, checked, checked + skipped);
  ref_free(&ref);
  free(x); free(gd); free(grads); free(s0); free(s1);
  net_free(&n);
}

Test(model, ref_path_finite_differences) {
  fd_case("mlp", 1, 4, 5, 6, 3, 21);
  fd_case("cnn", 2, 9, 7, 5, 2, 22);
  fd_case("linear", 11, 1, 1, 4, 3, 23);
}

/* ---------------------------------------------------------- PyTorch */

static void write_f32(const char *dir, const char *name, const float *x, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  cr_assert(f && fwrite(x, sizeof *x, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

static double *read_raw_f64(const char *dir, const char *name, size_t n) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb");
  cr_assert(f, "cannot read %s", path);
  double *x = xmalloc_f64(n);
  size_t got = fread(x, sizeof *x, n, f);
  int extra = fgetc(f) != EOF;
  fclose(f);
  cr_assert(got == n && !extra, "%s: want %zu doubles", path, n);
  return x;
}

static void torch_case(const char *arch, int c, int h, int w, int d, int B, uint64_t seed) {
  /* Debian's system interpreter carries python3-torch; PROXYGML_PYTHON overrides */
  const char *py = getenv("PROXYGML_PYTHON") ? getenv("PROXYGML_PYTHON") : "/usr/bin/python3";
  const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  char dir[1024];
  snprintf(dir, sizeof dir, "%s/test_model_XXXXXX", tmp);
  cr_assert(mkdtemp(dir), "mkdtemp %s failed", dir);

  Net n;
  net_init(&n, arch, c, h, w, d, B, seed);
  Model *m = &n.m;
  Rng r; rng_init(&r, seed + 100);
  float *x = rand_f32(&r, (size_t)B * m->in_size, 0, 1), *g = rand_f32(&r, (size_t)B * d, -1, 1);
  char path[2048];
  snprintf(path, sizeof path, "%s/names.txt", dir);
  FILE *f = fopen(path, "w");
  cr_assert(f);
  for (int i = 0; i < m->nparams; i++) {
    fprintf(f, "%s", m->params[i].name);
    for (int k = 0; k < m->params[i].ndim; k++) fprintf(f, " %d", m->params[i].shape[k]);
    fprintf(f, "\n");
  }
  fclose(f);
  write_f32(dir, "params.f32", n.params, m->num_params);
  write_f32(dir, "inp.f32", x, (size_t)B * m->in_size);
  write_f32(dir, "dout.f32", g, (size_t)B * d);
  char cmd[16384];
  snprintf(cmd, sizeof cmd, "'%s' '%s/tests/unit/torch_model_ref.py' %s %d %d %d %d %d '%s'", py, PROXYGML_SOURCE_ROOT,
           arch, c, h, w, d, B, dir);
  int st = system(cmd);
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (code == 0) {
    model_forward(m, x, B);
    model_backward(m, g, B);
    double *out = read_raw_f64(dir, "out.f64", (size_t)B * d), *grads = read_raw_f64(dir, "grads.f64", m->num_params);
    char lab[96];
    snprintf(lab, sizeof lab, "torch %s %dx%dx%d D=%d B=%d", arch, c, h, w, d, B);
    cr_expect(check_close_f32(lab, m->out, out, (size_t)B * d, 1e-6, 1e-5), "%s: out", lab);
    for (int i = 0; i < m->nparams; i++) {
      const ModelParam *p = &m->params[i];
      cr_expect(check_close_f32(p->name, n.grads + p->offset, grads + p->offset, p->count, 1e-6, 1e-5),
                "%s: grad %s", lab, p->name);
    }
    free(out); free(grads);
  }
  const char *files[] = {"names.txt", "params.f32", "inp.f32", "dout.f32", "out.f64", "grads.f64"};
  for (int i = 0; i < 6; i++) { snprintf(path, sizeof path, "%s/%s", dir, files[i]); unlink(path); }
  rmdir(dir);
  free(x); free(g);
  net_free(&n);
  if (code == 77 || code == 127) cr_skip_test("%s cannot import torch (or is missing): PyTorch check skipped", py);
  cr_assert(code == 0, "%s failed with status %d", cmd, code);
}

Test(model, matches_pytorch) {
  torch_case("mlp", 1, 28, 28, 128, 6, 31);
  torch_case("cnn", 1, 28, 28, 128, 5, 32);
  torch_case("cnn", 3, 15, 10, 16, 3, 33);
  torch_case("linear", 2, 3, 5, 8, 4, 34);
}
