/* model.c: the embedding network (see include/model.h): architecture tables,
 * the parameter table, PyTorch's default init, and forward/backward as loops
 * over the layer list. Leaves out: the loss, the optimizer, checkpoints. */
#include "model.h"

#include "common.h"
#include "h5io.h"
#include "layers.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ building */

static size_t layer_out_size(const ModelLayer *l) { return (size_t)l->oc * l->oh * l->ow; }

static int add_param(Model *m, const char *name, int ndim, const int *shape) {
  /* unreachable in tests: the fixed architectures stay far below MODEL_MAX_PARAMS */
  CHECK(m->nparams < MODEL_MAX_PARAMS, "model: too many parameter tensors");
  ModelParam *p = &m->params[m->nparams];
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = ndim;
  p->count = 1;
  for (int i = 0; i < ndim; i++) { p->shape[i] = shape[i]; p->count *= (size_t)shape[i]; }
  p->offset = m->num_params;
  m->num_params += p->count;
  return m->nparams++;
}

/* appends a layer whose input is the previous layer's output (or the model input) */
static ModelLayer *add_layer(Model *m, ModelOp op) {
  /* unreachable in tests: the fixed architectures stay far below MODEL_MAX_LAYERS */
  CHECK(m->nlayers < MODEL_MAX_LAYERS, "model: too many layers");
  ModelLayer *l = &m->layers[m->nlayers++];
  memset(l, 0, sizeof *l);
  l->op = op;
  if (m->nlayers == 1) { l->c = m->in_c; l->h = m->in_h; l->w = m->in_w; }
  else { const ModelLayer *p = l - 1; l->c = p->oc; l->h = p->oh; l->w = p->ow; }
  l->oc = l->c; l->oh = l->h; l->ow = l->w;
  l->weight = l->bias = -1;
  return l;
}

static void add_linear(Model *m, const char *name, int O) {
  ModelLayer *l = add_layer(m, MODEL_OP_LINEAR);
  l->c = l->c * l->h * l->w; l->h = l->w = 1;   /* flatten: a view */
  l->oc = O; l->oh = l->ow = 1;
  char buf[32];
  snprintf(buf, sizeof buf, "%s.weight", name);
  l->weight = add_param(m, buf, 2, (int[]){O, l->c});
  snprintf(buf, sizeof buf, "%s.bias", name);
  l->bias = add_param(m, buf, 1, (int[]){O});
}

static void add_conv3x3(Model *m, const char *name, int Cout) {
  ModelLayer *l = add_layer(m, MODEL_OP_CONV3X3);
  l->oc = Cout;
  char buf[32];
  snprintf(buf, sizeof buf, "%s.weight", name);
  l->weight = add_param(m, buf, 4, (int[]){Cout, l->c, 3, 3});
  snprintf(buf, sizeof buf, "%s.bias", name);
  l->bias = add_param(m, buf, 1, (int[]){Cout});
}

static void add_relu(Model *m) { add_layer(m, MODEL_OP_RELU); }

static void add_maxpool2(Model *m) {
  ModelLayer *l = add_layer(m, MODEL_OP_MAXPOOL2);
  l->oh = l->h / 2; l->ow = l->w / 2;
}

int model_check(const char *arch, int in_c, int in_h, int in_w, int embed_dim) {
  if (in_c < 1 || in_h < 1 || in_w < 1 || embed_dim < 1)
    return err_set("model: bad sizes (input %d x %d x %d, embedding %d)", in_c, in_h, in_w, embed_dim);
  /* unreachable in tests: a dataset file with rows of more than 2^30 values (4 GiB each) */
  if ((long)in_c * in_h * in_w > (1L << 30)) return err_set("model: input %d x %d x %d too large", in_c, in_h, in_w);
  if (strcmp(arch, "mlp") && strcmp(arch, "cnn") && strcmp(arch, "linear"))
    return err_set("unknown architecture '%s' (known: mlp, cnn, linear)", arch);
  if (!strcmp(arch, "cnn") && (in_h < 4 || in_w < 4))
    return err_set("model: cnn needs an input of at least 4 x 4, got %d x %d", in_h, in_w);
  return 0;
}

int model_init(Model *m, const char *arch, int in_c, int in_h, int in_w, int embed_dim, int B_max) {
  memset(m, 0, sizeof *m);
  if (B_max < 1) return err_set("model: bad batch size %d", B_max);
  if (model_check(arch, in_c, in_h, in_w, embed_dim) != 0) return -1;
  layers_blas_warm();
  m->in_c = in_c; m->in_h = in_h; m->in_w = in_w;
  m->embed_dim = embed_dim; m->B_max = B_max;
  m->in_size = in_c * in_h * in_w;
  /* names follow the PyTorch modules (nn.Sequential indices count Flatten,
   * ReLU and MaxPool2d too), so state_dicts map one to one */
  if (!strcmp(arch, "mlp")) {
    add_linear(m, "body.1", 512); add_relu(m);
    add_linear(m, "body.3", 512); add_relu(m);
    add_linear(m, "embedding", embed_dim);
  } else if (!strcmp(arch, "cnn")) {
    /* relu(maxpool(x)) = maxpool(relu(x)), with the same gradients (both are
     * zero where the window's maximum is <= 0), and pooling first runs the
     * relu on a quarter of the values */
    add_conv3x3(m, "body.0", 32); add_maxpool2(m); add_relu(m);
    add_conv3x3(m, "body.3", 64); add_maxpool2(m); add_relu(m);
    add_linear(m, "body.7", 256); add_relu(m);
    add_linear(m, "embedding", embed_dim);
  } else if (!strcmp(arch, "linear")) {
    add_linear(m, "embedding", embed_dim);
  }
  snprintf(m->arch, sizeof m->arch, "%s", arch);

  /* activations for B_max samples */
  size_t scratch = 0;
  m->inp = xmalloc_f32((size_t)B_max * m->in_size);
  for (int i = 0; i < m->nlayers; i++) {
    ModelLayer *l = &m->layers[i];
    size_t n = (size_t)B_max * layer_out_size(l);
    l->out = xmalloc_f32(n);
    if (i + 1 < m->nlayers) l->dout = xmalloc_f32(n);   /* the last layer's comes from the caller */
    if (l->op == MODEL_OP_CONV3X3) {
      l->cache = xmalloc_f32(conv3x3_cache_size(B_max, l->c, l->h, l->w));
      size_t ns = conv3x3_scratch_size(B_max, l->c, l->oc, l->h, l->w);
      if (ns > scratch) scratch = ns;
    }
    if (l->op == MODEL_OP_MAXPOOL2) l->idx = xmalloc((n ? n : 1) * sizeof *l->idx);
  }
  if (scratch) m->scratch = xmalloc_f32(scratch);
  m->out = m->layers[m->nlayers - 1].out;
  return 0;
}

size_t model_num_params(const Model *m) { return m->num_params; }

void model_bind(Model *m, float *params, float *grads) {
  m->param_mem = params;
  m->grad_mem = grads;
}

int model_param_find(const Model *m, const char *name) {
  for (int i = 0; i < m->nparams; i++)
    if (!strcmp(m->params[i].name, name)) return i;
  return -1;
}

void model_init_params(Model *m, Rng *rng) {
  assert(m->param_mem);
  for (int i = 0; i < m->nlayers; i++) {
    const ModelLayer *l = &m->layers[i];
    if (l->weight < 0) continue;
    int fan_in = l->op == MODEL_OP_CONV3X3 ? l->c * 9 : l->c;
    /* kaiming_uniform(a = sqrt 5): gain sqrt(2/(1+5)), bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in);
     * PyTorch's bias bound is the same */
    float bound = (float)(1.0 / sqrt((double)fan_in));
    const int ps[2] = {l->weight, l->bias};
    for (int j = 0; j < 2; j++) {
      const ModelParam *p = &m->params[ps[j]];
      float *w = m->param_mem + p->offset;
      for (size_t k = 0; k < p->count; k++) w[k] = bound * (2.0f * rng_uniform(rng) - 1.0f);
    }
  }
}

int model_params_read(Model *m, hid_t loc, const char *group) {
  assert(m->param_mem);
  for (int i = 0; i < m->nparams; i++) {
    const ModelParam *p = &m->params[i];
    char name[128], want[64] = "", got[64] = "";
    snprintf(name, sizeof name, "%s/%s", group, p->name);
    int nd;
    int64_t dims[H5IO_MAXDIM];
    if (h5io_shape(loc, name, &nd, dims) != 0) return err_set("%s: the %s model needs it", err_msg(), m->arch);
    int same = nd == p->ndim;
    for (int k = 0; k < p->ndim; k++) {
      snprintf(want + strlen(want), sizeof want - strlen(want), "%s%d", k ? " x " : "", p->shape[k]);
      if (same) same = dims[k] == p->shape[k];
    }
    for (int k = 0; k < nd && k < 4; k++)
      snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", k ? " x " : "", (long long)dims[k]);
    if (!same) return err_set("'%s' is %s, the %s model needs %s", name, nd ? got : "a scalar", m->arch, want);
    float *w = m->param_mem + p->offset;
    if (h5io_read(loc, name, H5T_NATIVE_FLOAT, w, p->count) != 0) return -1;
    for (size_t k = 0; k < p->count; k++)
      if (!isfinite(w[k])) return err_set("'%s' holds a non-finite value at element %zu", name, k);
  }
  return 0;
}

void model_embedding_range(const Model *m, size_t *offset, size_t *count) {
  const ModelLayer *l = &m->layers[m->nlayers - 1];
  const ModelParam *w = &m->params[l->weight], *b = &m->params[l->bias];
  assert(l->op == MODEL_OP_LINEAR && b->offset == w->offset + w->count);
  *offset = w->offset;
  *count = w->count + b->count;
}

/* ------------------------------------------------------------- the step */

/* x[0, n) = 0 on all threads: the gradient buffers reach megabytes */
static void zero_f32(float *x, size_t n) {
  const size_t chunk = 16384;   /* floats, 64 KiB */
#pragma omp parallel for schedule(static) if (n > 4 * chunk)
  for (size_t i = 0; i < n; i += chunk) memset(x + i, 0, (n - i < chunk ? n - i : chunk) * sizeof *x);
}

void model_layer_forward(Model *m, int i, int B) {
  ModelLayer *l = &m->layers[i];
  const float *x = i > 0 ? m->layers[i - 1].out : m->inp, *P = m->param_mem;
  switch (l->op) {
  case MODEL_OP_LINEAR:
    linear_forward(l->out, x, P + m->params[l->weight].offset, P + m->params[l->bias].offset, B, l->c, l->oc);
    break;
  case MODEL_OP_CONV3X3:
    conv3x3_forward(l->out, l->cache, m->scratch, x, P + m->params[l->weight].offset, P + m->params[l->bias].offset,
                    B, l->c, l->oc, l->h, l->w);
    break;
  case MODEL_OP_RELU:
    relu_forward(l->out, x, (long)B * layer_out_size(l));
    break;
  case MODEL_OP_MAXPOOL2:
    maxpool2_forward(l->out, l->idx, x, B, l->c, l->h, l->w);
    break;
  }
}

void model_forward(Model *m, const float *inp, int B) {
  assert(m->param_mem && B >= 0 && B <= m->B_max);
  m->B = B;
  memcpy(m->inp, inp, (size_t)B * m->in_size * sizeof *inp);
  for (int i = 0; i < m->nlayers; i++) model_layer_forward(m, i, B);
}

void model_layer_backward(Model *m, int i, const float *dout, int B) {
  ModelLayer *l = &m->layers[i];
  const float *g = i + 1 < m->nlayers ? l->dout : dout, *x = i > 0 ? m->layers[i - 1].out : m->inp;
  const float *P = m->param_mem;
  float *G = m->grad_mem, *dx = NULL;   /* no gradient for the data */
  if (i > 0) {
    dx = m->layers[i - 1].dout;
    zero_f32(dx, (size_t)B * layer_out_size(&m->layers[i - 1]));   /* the layers accumulate */
  }
  switch (l->op) {
  case MODEL_OP_LINEAR:
    linear_backward(dx, G + m->params[l->weight].offset, G + m->params[l->bias].offset, g, x,
                    P + m->params[l->weight].offset, B, l->c, l->oc);
    break;
  case MODEL_OP_CONV3X3:
    conv3x3_backward(dx, G + m->params[l->weight].offset, G + m->params[l->bias].offset, m->scratch, l->cache, g,
                     P + m->params[l->weight].offset, B, l->c, l->oc, l->h, l->w);
    break;
  case MODEL_OP_RELU:
    if (dx) relu_backward(dx, g, l->out, (long)B * layer_out_size(l));
    break;
  case MODEL_OP_MAXPOOL2:
    if (dx) maxpool2_backward(dx, g, l->idx, B, l->c, l->h, l->w);
    break;
  }
}

void model_backward(Model *m, const float *dout, int B) {
  assert(m->param_mem && m->grad_mem && B == m->B);
  size_t frontier = m->num_params;
  for (int i = m->nlayers - 1; i >= 0; i--) {
    model_layer_backward(m, i, dout, B);
    const ModelLayer *l = &m->layers[i];
    if (l->op == MODEL_OP_LINEAR || l->op == MODEL_OP_CONV3X3) {
      size_t w = m->params[l->weight].offset, b = m->params[l->bias].offset;
      frontier = w < frontier ? w : frontier;
      frontier = b < frontier ? b : frontier;
      if (m->grads_ready) m->grads_ready(m->grads_ready_ctx, frontier);
    }
  }
}

void model_free(Model *m) {
  for (int i = 0; i < m->nlayers; i++) {
    free(m->layers[i].out);
    free(m->layers[i].dout);
    free(m->layers[i].cache);
    free(m->layers[i].idx);
  }
  free(m->inp);
  free(m->scratch);
  memset(m, 0, sizeof *m);
}
