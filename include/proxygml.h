/* proxygml.h: the ProxyGML loss ("Fewer is More: A Deep Graph Metric
 * Learning Perspective Using Fewer Proxies", NeurIPS 2020), forward and
 * backward, exactly as defined in docs/loss.md.
 *
 * One step, for a batch of B raw embeddings and the C*N proxies:
 *
 *   ProxyGML l;
 *   proxygml_init(&l, B_max, D, C, N, K, lambda, scale);    // K = proxygml_k_from_ratio(r, C, N)
 *   float loss = proxygml_forward(&l, x_raw, labels, proxies, B);
 *   proxygml_backward(&l, dx_raw, dproxies);                // both accumulate (+=)
 *   proxygml_free(&l);
 *
 * Shapes: x_raw B x D (rows are samples), labels B (0 <= y < C), proxies
 * M x D with M = C*N, one proxy per contiguous row; proxy j belongs to class
 * j / N; they must not change between forward and backward. (The golden
 * files store proxies D x M; transpose on load.)
 *
 * Memory model: every buffer is allocated once by _init for up to B_max rows;
 * forward and backward never allocate. The loss normalises both x_raw and the
 * proxies itself, so callers pass raw parameters and get raw gradients.
 *
 * Distributed use: `batch_norm` (default: the B of the call) is the divisor of
 * the classification loss, so P ranks each passing B/P rows and batch_norm = B
 * compute parts that sum to the single-process loss; [reg_begin, reg_end)
 * (default [0, M)) is the slice of proxy rows whose regulariser terms this
 * process computes, so P ranks can split that work exactly.
 *
 * Threads: OpenMP over samples for selection, softmax and the sparse backward;
 * OpenBLAS for the dense products (called outside OpenMP regions).
 *
 * Beside the optimized float32 path, proxygml_ref() is a plain float64
 * implementation with the published code's structure (top-K of S + 1000*Pi
 * by full sort, the M x M proxy similarity matrix) for the tests.
 */
#ifndef PROXYGML_PROXYGML_H
#define PROXYGML_PROXYGML_H

#include <stdint.h>

typedef struct {
  int B_max, D, C, N, M, K;
  float lambda, scale;
  int batch_norm;              /* divisor of L_cls; 0 = the B of each call */
  int reg_begin, reg_end;      /* regulariser rows computed here, default [0, M) */
  int keep_grad_w;             /* 1: backward also stores dL/dW in GW (for inspection) */
  /* results of the last forward (this process's parts) */
  int B;
  float loss, loss_cls, loss_reg;
  const float *proxies;        /* M x D, borrowed from the last forward */
  /* activations, kept for the backward and for inspection */
  float *x;          /* B_max x D  normalised embeddings */
  float *xnorm;      /* B_max      clamped norms of x_raw rows */
  float *pnorm;      /* M          clamped proxy norms */
  float *S;          /* B_max x M  similarities x W^T */
  int *sel;          /* B_max x K  selected proxy indices per row, ascending */
  float *Z;          /* B_max x C  logits: per-class sums of selected S */
  uint8_t *zmask;    /* B_max x C  1 where Z != 0 */
  float *P;          /* B_max x C  masked softmax */
  float *GZ;         /* B_max x C  dL_cls/dZ */
  float *gx;         /* B_max x D  dL/dx (normalised embeddings) */
  /* the regulariser (lambda > 0) works on the dense normalised proxies */
  float *W;          /* M x D      normalised proxies (lambda > 0 only) */
  float *U;          /* C x D      per-class sums of W */
  float *G;          /* M x C      regulariser logits, then dL_reg/dZc */
  float *GU;         /* C x D      dL_reg/dU */
  float *GW;         /* M x D      lambda dL_reg/dW; with keep_grad_w the whole dL/dW after backward */
  /* the selection transposed (CSR by proxy), for a scatter-free proxy backward */
  int *csr_start;    /* M + 1 */
  int *csr_b;        /* B_max x K  row b of each (b, j) pair, grouped by j */
  float *csr_g;      /* B_max x K  its G_S value */
  float *csr_s;      /* B_max x K  its similarity S */
  int nthreads;
  float *scratch_v;  /* nthreads x 2M  selection candidates, softmax scratch */
  int *scratch_i;    /* nthreads x M */
  float *scratch_gw; /* nthreads x D  one proxy's gradient */
  float *gx_part;    /* nthreads x B_max x D  per-thread partial G_x */
  double *row_loss;  /* max(B_max, M)  per-row loss terms, summed in order */
  double *thread_sec; /* nthreads x 2  select / softmax seconds inside the per-row loop */
  /* wall seconds per phase, ADDED by every forward and backward (the caller
   * zeroes it to start a measurement); a few clock reads per call */
  double phase_sec[8];
} ProxyGML;

/* the phases of phase_sec, in the order a step runs them */
enum {
  PROXYGML_PHASE_NORMALISE,     /* x_raw -> x (3.1) */
  PROXYGML_PHASE_SIMILARITY,    /* S = x W^T with the proxy norms (3.1-3.2) */
  PROXYGML_PHASE_SELECT,        /* the subgraph of every row (3.3) */
  PROXYGML_PHASE_SOFTMAX,       /* logits, masked softmax, G_Z (3.4-3.6, 4.2) */
  PROXYGML_PHASE_REG_FORWARD,   /* the regulariser's W, U, G and its loss (3.7) */
  PROXYGML_PHASE_REG_BACKWARD,  /* its class gradient lambda G^T W (4.4) */
  PROXYGML_PHASE_SPARSE_BACKWARD, /* the selection by proxy, G_W and G_x over the K pairs of each row, dproxies
                                     (4.3, 4.5); with lambda also the rest of 4.4, lambda G U, block by block */
  PROXYGML_PHASE_X_BACKWARD,    /* G_x summed over threads, dx_raw (4.5) */
  PROXYGML_NPHASE
};
const char *proxygml_phase_name(int phase);

/* K = ceil((r*C)*N), left to right in double (the published rounding). */
int proxygml_k_from_ratio(double r, int C, int N);

void proxygml_init(ProxyGML *l, int B_max, int D, int C, int N, int K, float lambda, float scale);
void proxygml_free(ProxyGML *l);
/* returns the loss (this process's part); fills x, S, sel, Z, zmask, P, losses */
float proxygml_forward(ProxyGML *l, const float *x_raw /* B x D */, const int *labels /* B */,
                       const float *proxies /* M x D */, int B);
/* dx_raw += dL/dx_raw (B x D), dproxies += dL/dproxies (M x D) */
void proxygml_backward(ProxyGML *l, float *dx_raw, float *dproxies);

/* Row b of the last forward (label y): how far its selection is from
 * changing, the least kept minus the largest dropped similarity among the
 * proxies that compete for the free places (the negatives when K >= N, the
 * positives when K < N); +inf when nothing competes. A perturbation of the
 * similarities smaller than half of it cannot change the subgraph. */
float proxygml_topk_margin(const ProxyGML *l, int b, int y);

/* Row y's subgraph (3.3): its N positives and the K-N most similar negatives
 * (K >= N), or its K most similar positives (K < N); ties: lower index
 * first; out ascending. v: 2M floats and idx: M ints of scratch. A row with
 * a NaN keeps the order of the bounded heap the loss used before.
 * proxygml_select_ref: the same by a plain sort (the tests' twin; no NaN). */
void proxygml_select(int *out /* K */, const float *s /* M */, int y, int C, int N, int K, float *v, int *idx);
void proxygml_select_ref(int *out /* K */, const float *s /* M */, int y, int C, int N, int K);
/* Rows with many negatives take their threshold's lower bound from a sample
 * of one negative in PROXYGML_SELECT_STRIDE: the i-th sampled is the
 * negatives' proxygml_select_sample(i)-th (for tests that defeat the bound). */
enum { PROXYGML_SELECT_STRIDE = 8 };
int proxygml_select_sample(int i);

/* The K largest of s[0..M) (ties: lower index first), ascending indices into
 * out; v, idx: scratch of K each. Inference-time subgraphs (no labels). */
void proxygml_topk(int *out /* K */, const float *s /* M */, int M, int K, float *v, int *idx);

/* ---- pieces shared with the class-sharded loss (include/proxyshard.h) ---- */

/* S (B x M, row stride M) = x W^T with W = proxies / ||proxies|| (norms
 * clamped at 1e-12 into pnorm, M): by blocks of proxies over nt threads;
 * W itself is written too unless NULL */
void proxygml_similarity(float *S, float *pnorm, float *W /* M x D or NULL */, const float *x /* B x D */,
                         const float *proxies /* M x D */, int B, int M, int D, int nt);
/* one row of the regulariser's softmax over the C classes: returns its loss
 * term and leaves (softmax - onehot) / M in zc (C); own: the proxy's class */
double proxygml_regulariser_row(float *zc, int own, int C, int M);
/* proxy j's share of 4.3 and 4.5: its n (row b[e], gradient g[e]) pairs add
 * g x_b to G_W_j (gw, D; pre-filled with the regulariser's part or zero) and
 * g W_j to the rows' partial G_x (gx_part, rows x D); then
 * dp += (G_W_j - W_j (W_j . G_W_j)) / ||P_j||. s (n or NULL): the pairs'
 * similarities W_j . x_b; given, gw's content is not read (G_W_j starts at
 * zero), and W_j . G_W_j comes from them instead of a pass over D */
void proxygml_proxy_backward(float *dp, float *gw, float *gx_part, const float *p, float pnorm, const float *x,
                             const int *b, const float *g, const float *s, int n, int D);

/* unsigned order = float order, -0 = +0 (they compare equal, so they must tie) */
static inline uint32_t proxygml_order_key(float v) {
  v += 0.0f;
  union { float f; uint32_t u; } c = {.f = v};
  return (c.u & 0x80000000u) ? ~c.u : (c.u | 0x80000000u);
}

/* ---- the float64 reference ---------------------------------------------- */
typedef struct {
  int B, D, C, N, M, K;
  double loss, loss_cls, loss_reg;
  double *x;         /* B x D */
  double *W;         /* M x D */
  double *S;         /* B x M */
  uint8_t *sel;      /* B x M  selection mask */
  double *Z;         /* B x C */
  uint8_t *zmask;    /* B x C */
  double *P;         /* B x C */
  double *GZ;        /* B x C */
  double *gx;        /* B x D  dL/dx */
  double *GW;        /* M x D  dL/dW */
  double *dx_raw;    /* B x D */
  double *dproxies;  /* M x D */
} ProxyGMLRef;

void proxygml_ref(ProxyGMLRef *r, const double *x_raw, const int *labels, const double *proxies,
                  int B, int D, int C, int N, int K, double lambda, double scale);
void proxygml_ref_free(ProxyGMLRef *r);

#endif
