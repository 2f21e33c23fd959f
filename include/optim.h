/* optim.h: Adam exactly as torch.optim.Adam in the published training
 * (docs/loss.md 7): L2 weight decay added to the gradient
 * (not AdamW), bias corrections, eps outside the square root (default 0.01),
 * parameter groups with their own learning rates over ranges of ONE flat
 * parameter block, step decay of the learning rate, and a true freeze.
 *
 *   Adam opt;
 *   adam_init(&opt, n_params, 0.9f, 0.999f, 0.01f, 1e-4f);
 *   int net = adam_add_group(&opt, 0, n_backbone, 1e-3f);        // [begin, end)
 *   int prx = adam_add_group(&opt, n_backbone, n_params, 0.03f);
 *   for each step: adam_step(&opt, params, grads);
 *   at the start of 0-based epoch e: adam_decay_lr(&opt, e, decay_epochs, n_decay, 0.1f);
 *   adam_free(&opt);
 *
 * Each group counts its own steps t (as PyTorch counts per parameter), so a
 * frozen group (opt.groups[g].frozen = 1) is left exactly as it is: no
 * weight decay, no momentum drift, no step count. This is the behaviour of
 * torch 2.x (gradients set to None), not torch 1.x's zeroed gradients.
 *
 * Sharded (ZeRO stage 1, include/reducer.h): adam_shard(&opt, pieces, n)
 * makes the state cover only these pieces of the block; adam_step then
 * takes their gradients compact, piece after piece, updates only them and
 * keeps m and v for them alone. Unsharded, the one piece is [0, n).
 */
#ifndef PROXYGML_OPTIM_H
#define PROXYGML_OPTIM_H

#include <stddef.h>

#define OPTIM_MAX_GROUPS 8

typedef struct {
  size_t begin, end;   /* range in the flat block */
  double lr;
  long t;              /* steps taken by this group */
  int frozen;
} OptimGroup;

typedef struct {
  size_t begin, end;
} OptimRange;

typedef struct {
  size_t n;            /* the whole block */
  int npieces;
  OptimRange *pieces;  /* the ranges this state updates, ascending or not, disjoint */
  size_t *piece_off;   /* npieces: where each piece starts in m, v and the step's grads */
  size_t n_own;        /* the sum of the pieces' lengths */
  float *m;            /* n_own  first moments */
  float *v;            /* n_own  second moments */
  double beta1, beta2, eps, weight_decay;   /* double, as Python holds them: 1 - beta2 in float32 is off by 1e-5 */
  int ngroups;
  OptimGroup groups[OPTIM_MAX_GROUPS];
} Adam;

void adam_init(Adam *o, size_t n, double beta1, double beta2, double eps, double weight_decay);
void adam_free(Adam *o);
/* returns the group index */
int adam_add_group(Adam *o, size_t begin, size_t end, double lr);
/* the state covers pieces[0..npieces) only (moments zeroed); before any step */
void adam_shard(Adam *o, const OptimRange *pieces, int npieces);
/* one step of every group that is not frozen, on the pieces */
void adam_step(Adam *o, float *params /* n */, const float *grads /* n_own, the pieces in order */);
/* the plain double-precision twin, on one range, for the tests */
void adam_step_ref(double *params, double *m, double *v, const double *grads, size_t n, long t, double lr,
                   double beta1, double beta2, double eps, double weight_decay);
/* at the start of 0-based epoch e: if e+1 is listed, every group's lr *= rate */
void adam_decay_lr(Adam *o, int epoch0, const int *decay_epochs, int n_decay, double rate);

#endif
