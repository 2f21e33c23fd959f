/* rng.h: the one random number generator of the project (xoshiro256**,
 * seeded through splitmix64). Same seed -> same stream on every machine and
 * rank; no global state. Used for initialisation, shuffling, k-means++ and
 * data augmentation.
 *
 *   Rng r; rng_init(&r, 42);
 *   float u = rng_uniform(&r);            // [0, 1)
 *   rng_permutation(&r, perm, n);         // Fisher-Yates over 0..n-1
 */
#ifndef PROXYGML_RNG_H
#define PROXYGML_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } Rng;

void rng_init(Rng *r, uint64_t seed);
uint64_t rng_u64(Rng *r);
uint32_t rng_below(Rng *r, uint32_t n);        /* uniform in [0, n), unbiased */
double rng_uniform_f64(Rng *r);                /* [0, 1), 53 bits */
float rng_uniform(Rng *r);                     /* [0, 1), 24 bits */
double rng_normal(Rng *r);                     /* standard normal (Box-Muller) */
void rng_permutation(Rng *r, int *perm, int n);

/* The i-th of one pick per stride of `stride` (>= 1) items: a position
 * i * stride + h(i) mod stride, h a fixed multiplicative hash, so that no
 * period of the data lines up with the picks, the same on every run. The
 * loss's and the kNN's samples for their thresholds. */
static inline int rng_stratum(int i, int stride) {
  return i * stride + (int)(((uint32_t)i * 2654435761u >> 16) % (uint32_t)stride);
}

#endif
