/* model.h: the embedding network (the backbone), as a flat list of layer
 * calls over the kernels of layers.h, plus its parameter table.
 *
 * Architectures (input C x H x W, NCHW; embedding dim D, default 128), the
 * networks of the PyTorch reference (bench/torch_train.py):
 *   mlp:    flatten - linear(C*H*W -> 512) - relu - linear(512 -> 512) - relu - linear(512 -> D)
 *   cnn:    conv3x3(C -> 32) - relu - maxpool2 - conv3x3(32 -> 64) - relu - maxpool2
 *           - flatten - linear(64*(H/4)*(W/4) -> 256) - relu - linear(256 -> D)
 *   linear: flatten - linear(C*H*W -> D)      (for precomputed features)
 * The output is the raw embedding; the loss normalises it. (The cnn runs
 * maxpool before relu: the same values and gradients, a quarter of the work.)
 *
 *   Model m;
 *   if (model_init(&m, "cnn", 1, 28, 28, 128, B_max) != 0) fail(err_msg());
 *   size_t n = model_num_params(&m);          // the caller owns params and grads:
 *   model_bind(&m, params, grads);            // one flat block [backbone | proxies]
 *   model_init_params(&m, &rng);
 *   model_forward(&m, images, B);             // m.out: B x D
 *   model_backward(&m, dout, B);              // grads += d loss / d params
 *   model_free(&m);
 *
 * Memory model: model_init allocates the activations, their gradients and
 * the convolutions' caches and scratch for up to B_max samples; forward and backward never
 * allocate. Parameters and gradients are borrowed views into the caller's
 * blocks (layout: the parameter table, in order), so the optimizer, the
 * allreduce and the checkpoint each touch one pointer. model_forward copies
 * its input, so the caller may reuse the batch buffer before the backward.
 *
 * Parameter names are PyTorch's state_dict names of the reference modules
 * (body.0.weight, ..., embedding.bias); each bias follows its weight.
 *
 * Threads: the layers use OpenMP over the batch and OpenBLAS for the dense
 * products; call forward/backward from outside any OpenMP region.
 */
#ifndef PROXYGML_MODEL_H
#define PROXYGML_MODEL_H

#include <hdf5.h>
#include <stddef.h>

#include "rng.h"

#define MODEL_MAX_LAYERS 16
#define MODEL_MAX_PARAMS 16

typedef enum { MODEL_OP_LINEAR, MODEL_OP_CONV3X3, MODEL_OP_RELU, MODEL_OP_MAXPOOL2 } ModelOp;

typedef struct {
  char name[32];       /* PyTorch state_dict name */
  size_t offset;       /* into the flat parameter (and gradient) block */
  size_t count;
  int ndim;
  int shape[4];        /* linear weight O x I; conv weight Cout x Cin x 3 x 3; bias O */
} ModelParam;

typedef struct {
  ModelOp op;
  int c, h, w;         /* input per sample (linear: c = in features, h = w = 1) */
  int oc, oh, ow;      /* output per sample */
  int weight, bias;    /* indices into Model.params, -1 when none */
  float *out;          /* B_max x oc*oh*ow */
  float *dout;         /* B_max x oc*oh*ow, gradient of out (not for the last layer) */
  float *cache;        /* conv3x3: conv3x3_cache_size(B_max, ...) floats, kept for the backward */
  int *idx;            /* maxpool2: B_max x oc*oh*ow argmax */
} ModelLayer;

typedef struct {
  char arch[16];
  int in_c, in_h, in_w, embed_dim, B_max;
  int in_size;         /* in_c*in_h*in_w */
  int nlayers;
  ModelLayer layers[MODEL_MAX_LAYERS];
  int nparams;
  ModelParam params[MODEL_MAX_PARAMS];
  size_t num_params;
  float *param_mem;    /* borrowed: num_params */
  float *grad_mem;     /* borrowed: num_params (may be NULL: inference only) */
  float *inp;          /* B_max x in_size, copy of the last forward's input */
  float *scratch;      /* conv3x3 scratch, shared by the conv layers (the largest conv3x3_scratch_size) */
  float *out;          /* B_max x embed_dim, the last layer's output (raw embeddings) */
  int B;               /* batch of the last forward */
  /* model_backward calls this after each layer with parameters: the
   * gradients in [lo, num_params) are final (the reduction may start) */
  void (*grads_ready)(void *ctx, size_t lo);
  void *grads_ready_ctx;
} Model;

/* Shapes and buffers for `arch` ("mlp", "cnn", "linear"). Returns 0, or -1
 * with err_msg() set (unknown architecture, bad sizes) and nothing allocated. */
int model_init(Model *m, const char *arch, int in_c, int in_h, int in_w, int embed_dim, int B_max);
/* model_init's checks alone, allocating nothing: can `arch` take inputs of
 * in_c x in_h x in_w (a feature vector of F values is F x 1 x 1)? */
int model_check(const char *arch, int in_c, int in_h, int in_w, int embed_dim);
size_t model_num_params(const Model *m);
/* views into the caller's blocks of model_num_params floats; grads may be NULL */
void model_bind(Model *m, float *params, float *grads);
/* PyTorch's default init, in table order (each weight, then its bias), each
 * tensor row-major: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights
 * (kaiming_uniform with a = sqrt(5)) and biases; fan_in = I or Cin*9. */
void model_init_params(Model *m, Rng *rng);
/* Reads every parameter tensor from the dataset `group`/<name> of an open
 * HDF5 file (names as in a PyTorch state_dict: body.1.weight, ...), each with
 * exactly its shape, into the bound parameter block; every value must be
 * finite. Error (err_msg names the tensor) on a missing tensor, another
 * shape or a non-finite value; the block may then be partly overwritten. */
int model_params_read(Model *m, hid_t loc, const char *group);
/* m->out (B x embed_dim) = net(inp), inp B x in_c x in_h x in_w, B <= B_max */
void model_forward(Model *m, const float *inp, int B);
/* grads += d/dparams of sum(dout . out) for the last forward; B as in it */
void model_backward(Model *m, const float *dout /* B x embed_dim */, int B);
/* layer i alone, as model_forward and model_backward run it (the layers
 * before it must have run; dout: the gradient at the network's output) */
void model_layer_forward(Model *m, int i, int B);
void model_layer_backward(Model *m, int i, const float *dout, int B);
/* the parameters of the last (embedding) linear layer, weight then bias:
 * [offset, offset + count) of the block, for warm-up freezing */
void model_embedding_range(const Model *m, size_t *offset, size_t *count);
/* index into m->params by name, or -1 */
int model_param_find(const Model *m, const char *name);
void model_free(Model *m);

#endif
