/* rng.c: xoshiro256** (Blackman & Vigna), seeded with splitmix64. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_init(Rng *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t rng_u64(Rng *r) {
  uint64_t *s = r->s;
  uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
  s[2] ^= t; s[3] = rotl(s[3], 45);
  return out;
}

uint32_t rng_below(Rng *r, uint32_t n) {
  /* Lemire's multiply-and-reject: no modulo bias */
  uint64_t m = (uint64_t)(uint32_t)(rng_u64(r) >> 32) * n;
  uint32_t low = (uint32_t)m;
  if (low < n) {
    uint32_t threshold = (uint32_t)(-n) % n;
    while (low < threshold) {
      m = (uint64_t)(uint32_t)(rng_u64(r) >> 32) * n;
      low = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

double rng_uniform_f64(Rng *r) { return (double)(rng_u64(r) >> 11) * 0x1.0p-53; }
float rng_uniform(Rng *r) { return (float)(rng_u64(r) >> 40) * 0x1.0p-24f; }

double rng_normal(Rng *r) {
  double u1 = 1.0 - rng_uniform_f64(r);   /* (0, 1]: log stays finite */
  double u2 = rng_uniform_f64(r);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void rng_permutation(Rng *r, int *perm, int n) {
  for (int i = 0; i < n; i++) perm[i] = i;
  for (int i = n - 1; i > 0; i--) {
    int j = (int)rng_below(r, (uint32_t)(i + 1));
    int t = perm[i]; perm[i] = perm[j]; perm[j] = t;
  }
}
