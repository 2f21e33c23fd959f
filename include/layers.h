/* layers.h: the backbone's layers as free functions on raw float arrays.
 *
 * Argument order (as in llm.c): outputs, cached intermediates, inputs,
 * weights, then sizes. Backward mirrors forward with d-prefixed names and
 * ACCUMULATES (+=) into parameter gradients and input gradients, so the
 * caller zeroes gradient buffers once per step. Kernels do not fail: they
 * assert preconditions and return void.
 *
 * Every optimized kernel has a plain double-precision `_ref` twin with the
 * same argument order; the tests hold them against each other and check the
 * `_ref` backward by finite differences.
 */
#ifndef PROXYGML_LAYERS_H
#define PROXYGML_LAYERS_H

/* Row L2 normalisation: out_b = inp_b / max(||inp_b||, 1e-12).
 * reference: docs/proxygml-math.md, 2.1 and 3.3.
 * norm (B) caches the clamped norms for the backward. */
void l2norm_forward(float *out /* B x D */, float *norm /* B */, const float *inp /* B x D */, int B, int D);
/* dinp += (dout - out (out . dout)) / norm, row by row */
void l2norm_backward(float *dinp /* B x D */, const float *dout /* B x D */, const float *out /* B x D */,
                     const float *norm /* B */, int B, int D);
void l2norm_forward_ref(double *out, double *norm, const double *inp, int B, int D);
void l2norm_backward_ref(double *dinp, const double *dout, const double *out, const double *norm, int B, int D);

/* [the other layers (linear, conv3x3, relu, maxpool2) are declared below this line] */

#endif
