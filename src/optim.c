/* optim.c: Adam over one flat parameter block (see include/optim.h).
 * reference: docs/loss.md 7. */
#include "optim.h"

#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void adam_init(Adam *o, size_t n, double beta1, double beta2, double eps, double weight_decay) {
  memset(o, 0, sizeof *o);
  o->n = n;
  OptimRange all = {0, n};
  adam_shard(o, &all, 1);
  o->beta1 = beta1; o->beta2 = beta2; o->eps = eps; o->weight_decay = weight_decay;
}

void adam_shard(Adam *o, const OptimRange *pieces, int npieces) {
  free(o->pieces); free(o->piece_off); free(o->m); free(o->v);
  o->npieces = npieces;
  o->pieces = xmalloc((size_t)npieces * sizeof *o->pieces + 1);
  o->piece_off = xmalloc((size_t)npieces * sizeof *o->piece_off + 1);
  o->n_own = 0;
  for (int k = 0; k < npieces; k++) {
    CHECK(pieces[k].begin <= pieces[k].end && pieces[k].end <= o->n, "adam_shard: piece [%zu, %zu) outside [0, %zu)",
          pieces[k].begin, pieces[k].end, o->n);
    o->pieces[k] = pieces[k];
    o->piece_off[k] = o->n_own;
    o->n_own += pieces[k].end - pieces[k].begin;
  }
  o->m = xcalloc(o->n_own + 1, sizeof(float));
  o->v = xcalloc(o->n_own + 1, sizeof(float));
}

void adam_free(Adam *o) {
  free(o->pieces);
  free(o->piece_off);
  free(o->m);
  free(o->v);
  memset(o, 0, sizeof *o);
}

int adam_add_group(Adam *o, size_t begin, size_t end, double lr) {
  CHECK(o->ngroups < OPTIM_MAX_GROUPS, "adam_add_group: more than %d groups", OPTIM_MAX_GROUPS);
  CHECK(begin <= end && end <= o->n, "adam_add_group: range [%zu, %zu) outside [0, %zu)", begin, end, o->n);
  for (int g = 0; g < o->ngroups; g++)
    CHECK(end <= o->groups[g].begin || begin >= o->groups[g].end, "adam_add_group: groups overlap");
  o->groups[o->ngroups] = (OptimGroup){.begin = begin, .end = end, .lr = lr};
  return o->ngroups++;
}

/* n elements of one group: the memory-bound loop of the step */
static PROXYGML_HOT void adam_update(float *params, float *m_, float *v_, const float *grads, long n, float b1,
                                     float b2, float c1, float c2, float eps, float wd, float step, float bc2_sqrt) {
  for (long i = 0; i < n; i++) {
    float grad = grads[i] + wd * params[i];                 /* L2, not AdamW */
    float m = m_[i] * b1 + grad * c1;
    float v = v_[i] * b2 + grad * grad * c2;
    m_[i] = m;
    v_[i] = v;
    params[i] -= step * (m / (sqrtf(v) / bc2_sqrt + eps));
  }
}

enum { ADAM_CHUNK = 16384 };   /* elements per call: 256 KiB of state, in L2 */

void adam_step(Adam *o, float *params, const float *grads) {
  /* scalars rounded to float32 once, as torch does with its Python floats */
  const float b1 = (float)o->beta1, b2 = (float)o->beta2, c1 = (float)(1 - o->beta1), c2 = (float)(1 - o->beta2);
  const float eps = (float)o->eps, wd = (float)o->weight_decay;
  for (int g = 0; g < o->ngroups; g++) {
    OptimGroup *G = &o->groups[g];
    if (G->frozen) continue;
    G->t++;
    /* the bias corrections in double, as Python computes them */
    const float step = (float)(G->lr / (1.0 - pow(b1, (double)G->t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, (double)G->t));
    for (int p = 0; p < o->npieces; p++) {   /* the group's part of each piece */
      const size_t lo_ = G->begin > o->pieces[p].begin ? G->begin : o->pieces[p].begin;
      const size_t hi_ = G->end < o->pieces[p].end ? G->end : o->pieces[p].end;
      if (lo_ >= hi_) continue;
      const long lo = (long)lo_, hi = (long)hi_, off = (long)(o->piece_off[p] + (lo_ - o->pieces[p].begin)) - lo;
      const long nchunk = (hi - lo + ADAM_CHUNK - 1) / ADAM_CHUNK;
#pragma omp parallel for schedule(static) if (hi - lo > 65536)
      for (long k = 0; k < nchunk; k++) {
        long a = lo + k * ADAM_CHUNK, b = a + ADAM_CHUNK < hi ? a + ADAM_CHUNK : hi;
        adam_update(params + a, o->m + off + a, o->v + off + a, grads + off + a, b - a, b1, b2, c1, c2, eps, wd, step,
                    bc2_sqrt);
      }
    }
  }
}

void adam_step_ref(double *params, double *m, double *v, const double *grads, size_t n, long t, double lr,
                   double beta1, double beta2, double eps, double weight_decay) {
  for (size_t i = 0; i < n; i++) {
    double g = grads[i] + weight_decay * params[i];
    m[i] = beta1 * m[i] + (1 - beta1) * g;
    v[i] = beta2 * v[i] + (1 - beta2) * g * g;
    params[i] -= lr / (1 - pow(beta1, (double)t)) * m[i] / (sqrt(v[i]) / sqrt(1 - pow(beta2, (double)t)) + eps);
  }
}

void adam_decay_lr(Adam *o, int epoch0, const int *decay_epochs, int n_decay, double rate) {
  for (int k = 0; k < n_decay; k++)
    if (decay_epochs[k] == epoch0 + 1) {
      for (int g = 0; g < o->ngroups; g++) o->groups[g].lr *= rate;
      return;   /* listed twice still decays once */
    }
}
