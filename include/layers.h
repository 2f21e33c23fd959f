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
 *
 * Threads: the kernels parallelise with OpenMP and call OpenBLAS
 * single-threaded inside (one pool of threads, never two); call them from
 * outside OpenMP regions. OMP_NUM_THREADS (omp_set_num_threads) sets the
 * thread count.
 */
#ifndef PROXYGML_LAYERS_H
#define PROXYGML_LAYERS_H

#include <stddef.h>

/* Before the first product, on every thread OpenMP will use (again only if
 * that count grew): touches OpenBLAS's work buffers (layers.c says why). */
void layers_blas_warm(void);

/* Row L2 normalisation: out_b = inp_b / max(||inp_b||, 1e-12).
 * reference: docs/loss.md 3.1 and 4.5.
 * norm (B) caches the clamped norms for the backward. */
void l2norm_forward(float *out /* B x D */, float *norm /* B */, const float *inp /* B x D */, int B, int D);
/* dinp += (dout - out (out . dout)) / norm, row by row */
void l2norm_backward(float *dinp /* B x D */, const float *dout /* B x D */, const float *out /* B x D */,
                     const float *norm /* B */, int B, int D);
void l2norm_forward_ref(double *out, double *norm, const double *inp, int B, int D);
void l2norm_backward_ref(double *dinp, const double *dout, const double *out, const double *norm, int B, int D);

/* Linear (PyTorch nn.Linear): out = inp W^T + b, W stored Fout x Fin
 * (out features x in features).
 * Threads own blocks of output (input, for dinp) features, each one
 * single-threaded sgemm. dinp may be NULL when the input needs no gradient
 * (the data). */
void linear_forward(float *out /* B x Fout */, const float *inp /* B x Fin */, const float *weight /* Fout x Fin */,
                    const float *bias /* Fout */, int B, int Fin, int Fout);
void linear_backward(float *dinp /* B x Fin or NULL */, float *dweight /* Fout x Fin */, float *dbias /* Fout */,
                     const float *dout /* B x Fout */, const float *inp /* B x Fin */,
                     const float *weight /* Fout x Fin */, int B, int Fin, int Fout);
void linear_forward_ref(double *out, const double *inp, const double *weight, const double *bias,
                        int B, int Fin, int Fout);
void linear_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout, const double *inp,
                         const double *weight, int B, int Fin, int Fout);

/* 3x3 convolution, stride 1, zero padding 1 (PyTorch nn.Conv2d(Cin, Cout, 3,
 * padding=1)), NCHW, weight Cout x Cin x 3 x 3 (= Cout x Cin*9 row-major).
 * Two algorithms, picked by conv3x3_winograd(Cin): im2col + one sgemm per
 * sample for few input channels (a first layer), Winograd F(2x2, 3x3)
 * otherwise (2.25x fewer flops in 16 sgemms per chunk of samples; float
 * results differ from the direct sum by a few ulps of the largest terms).
 * cache: written by the forward, read by the backward (the input rearranged:
 * im2col columns, or channels-last with a zero border), so the input itself
 * is not needed there; conv3x3_cache_size floats.
 * scratch: conv3x3_scratch_size floats, clobbered by both calls, may be shared
 * between layers. dinp may be NULL (the input is the data: no gradient).
 * OpenMP inside, single-threaded BLAS; call from outside OpenMP regions. */
int conv3x3_winograd(int Cin);
size_t conv3x3_cache_size(int B, int Cin, int H, int W);
size_t conv3x3_scratch_size(int B, int Cin, int Cout, int H, int W);
void conv3x3_forward(float *out /* B x Cout x H x W */, float *cache, float *scratch,
                     const float *inp /* B x Cin x H x W */, const float *weight /* Cout x Cin x 3 x 3 */,
                     const float *bias /* Cout */, int B, int Cin, int Cout, int H, int W);
void conv3x3_backward(float *dinp /* B x Cin x H x W or NULL */, float *dweight /* Cout x Cin x 3 x 3 */,
                      float *dbias /* Cout */, float *scratch, const float *cache,
                      const float *dout /* B x Cout x H x W */,
                      const float *weight /* Cout x Cin x 3 x 3 */, int B, int Cin, int Cout, int H, int W);
/* the _ref twins: the direct sum, on the input (no cache) */
void conv3x3_forward_ref(double *out, const double *inp, const double *weight, const double *bias,
                         int B, int Cin, int Cout, int H, int W);
void conv3x3_backward_ref(double *dinp, double *dweight, double *dbias, const double *dout, const double *inp,
                          const double *weight, int B, int Cin, int Cout, int H, int W);

/* ReLU over n elements; the backward reads the output (out > 0), as PyTorch
 * does. out may alias inp; dinp must not alias dout (it accumulates). */
void relu_forward(float *out /* n */, const float *inp /* n */, long n);
void relu_backward(float *dinp /* n */, const float *dout /* n */, const float *out /* n */, long n);
void relu_forward_ref(double *out, const double *inp, long n);
void relu_backward_ref(double *dinp, const double *dout, const double *out, long n);

/* 2x2 max pooling, stride 2 (nn.MaxPool2d(2)): Ho = H/2, Wo = W/2 (floor; an
 * odd last row/column is dropped). idx caches the argmax as an offset inside
 * the input plane (y*W + x, as PyTorch's return_indices); ties go to the
 * first element in row-major order and NaN wins, as in PyTorch. */
void maxpool2_forward(float *out /* B x C x Ho x Wo */, int *idx /* B x C x Ho x Wo */,
                      const float *inp /* B x C x H x W */, int B, int C, int H, int W);
void maxpool2_backward(float *dinp /* B x C x H x W */, const float *dout /* B x C x Ho x Wo */,
                       const int *idx /* B x C x Ho x Wo */, int B, int C, int H, int W);
void maxpool2_forward_ref(double *out, int *idx, const double *inp, int B, int C, int H, int W);
void maxpool2_backward_ref(double *dinp, const double *dout, const int *idx, int B, int C, int H, int W);

/* Flatten (B x C x H x W -> B x C*H*W) is a no-op: NCHW rows are already
 * PyTorch's flatten order (c, y, x). */

#endif
