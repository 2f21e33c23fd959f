/* losscheck.h: a loss against a golden HDF5 file (tests/data/loss_*.h5 for
 * ProxyGML, tests/data/baselines/ for the baselines; layouts in
 * tests/data/README.md): read and validate the inputs, compute
 * every quantity the files hold with the float32 loss or the float64
 * reference, and compare them one by one with the tolerances of the golden
 * data. `proxygml check-loss` is this module plus printing.
 *
 *   hid_t f; h5io_open(path, &f);
 *   LossCheckCase c;
 *   if (losscheck_case_read(&c, f) != 0) { ... err_msg() ...; losscheck_case_free(&c); }
 *   LossCheckOut o;
 *   losscheck_compute(&o, &c, use_ref);
 *   LossCheckItem it[LOSSCHECK_NITEMS];
 *   int n = losscheck_items(it, &o, &c, use_ref);
 *   for (int i = 0; i < n; i++) {
 *     LossCheckResult r;
 *     int rc = losscheck_compare(&r, f, &it[i]);   // 1 compared, 0 not in the file, -1 unreadable
 *   }
 *   losscheck_out_free(&o); losscheck_case_free(&c); H5Fclose(f);
 *
 * A ProxyGML file holds the inputs x_raw (B x D), labels (B), proxies (D x M,
 * transposed on load into the loss's M x D) and the attributes C, N, K or r,
 * lambda, scale; every other dataset it holds is an expected value.
 *
 * A baseline file says which loss in its attribute `loss_name` (ProxyNCALoss,
 * ProxyAnchorLoss, SoftTripleLoss, NormalizedSoftmaxLoss) and holds its
 * hyper-parameters under the reference library's names (softmax_scale;
 * margin, alpha; centers_per_class, la, gamma, margin, and tau if a
 * regulariser was applied; temperature), and proxies in the layout its
 * attribute `proxies_layout` names ("C x D", or "D x ..." transposed).
 */
#ifndef PROXYGML_LOSSCHECK_H
#define PROXYGML_LOSSCHECK_H

#include <hdf5.h>
#include <stddef.h>

#include "loss.h"

#define LOSSCHECK_NITEMS 16   /* quantities a golden file may hold, at most */

typedef struct {
  LossKind kind;   /* LOSS_PROXYGML for the files without `loss_name` */
  int B, D, C, N, M, K;   /* baselines: N = proxies per class, K unused */
  double lambda, scale;
  BaselineParams base;    /* the baselines' hyper-parameters */
  int proxies_dm;         /* 1: the file stores proxies D x M (transposed on load) */
  float *x_raw;    /* B x D */
  int *labels;     /* B */
  float *proxies;  /* M x D (transposed from the file's D x M) */
} LossCheckCase;

/* Reads and validates the inputs of an open golden file: 0, or -1 with a
 * one-line reason (a missing attribute, a shape, K out of range, a NaN, a
 * label outside [0, C)). c is zeroed first; call losscheck_case_free either way. */
int losscheck_case_read(LossCheckCase *c, hid_t f);
void losscheck_case_free(LossCheckCase *c);

/* Everything the golden files hold, as doubles in the files' layouts
 * (proxy-side arrays D x M, selections as 0/1 masks). */
typedef struct {
  double loss, loss_cls, loss_reg;
  double *x;          /* B x D */
  double *S;          /* B x M */
  double *sel;        /* B x M  selection mask */
  double *Z;          /* B x C */
  double *zmask;      /* B x C */
  double *P;          /* B x C */
  double *dx_raw;     /* B x D */
  double *dproxies;   /* the file's layout: D x M (ProxyGML, proxies_dm) or M x D */
  double *gx;         /* B x D */
  double *GZ;         /* B x C */
  double *GS;         /* B x M */
  double *W;          /* D x M  normalised proxies */
  double *GW;         /* D x M */
  /* the baselines' intermediates (docs/baselines.md) */
  double *Zc;         /* B x C  squared distances, cosines, class similarities or logits */
  double *row_loss;   /* B */
  double *pos, *neg;  /* C   Proxy-Anchor's per-proxy terms */
  double pos_loss, neg_loss;
} LossCheckOut;

/* one forward and backward of the float32 loss (use_ref = 0) or of the
 * float64 reference (use_ref = 1) on the case's inputs */
void losscheck_compute(LossCheckOut *o, const LossCheckCase *c, int use_ref);
void losscheck_out_free(LossCheckOut *o);

typedef struct {
  const char *name;    /* the dataset of the golden file */
  const double *got;   /* n values, borrowed from the LossCheckOut */
  size_t n;
  double atol, rtol;   /* |got - want| <= atol + rtol * max|want| */
  int exact;           /* 1: must be equal */
} LossCheckItem;

/* The comparisons for the case's loss (at most LOSSCHECK_NITEMS; returns
 * how many), in the order they are reported, with the tolerances of the
 * golden data's README (float64 reference: ~1e-12). */
int losscheck_items(LossCheckItem items[LOSSCHECK_NITEMS], const LossCheckOut *o, const LossCheckCase *c,
                     int use_ref);

typedef struct {
  double max_abs, max_rel, tol;
  int ok;
} LossCheckResult;

/* Compares one item with its dataset in f: 1 compared (r filled), 0 the
 * file does not hold it, -1 it is there but unreadable (err_msg). */
int losscheck_compare(LossCheckResult *r, hid_t f, const LossCheckItem *it);

#endif
