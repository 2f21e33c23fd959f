/* sampler.c: epoch permutations and the batch exchange (include/sampler.h). */
#include "sampler.h"

#include "common.h"
#include "h5io.h"
#include "rng.h"

#include <stdlib.h>
#include <string.h>

void sampler_shard(int64_t n, int rank, int size, int64_t *begin, int64_t *count) {
  *begin = n * rank / size;
  *count = n * (rank + 1) / size - *begin;
}

static int owner_of(int64_t i, int64_t n, int size) {
  int r = (int)(i * size / n);   /* first guess, then fix rounding */
  while (r > 0 && n * r / size > i) r--;
  while (r + 1 < size && n * (r + 1) / size <= i) r++;
  return r;
}

void sampler_init(Sampler *s, const Dist *d, const DatasetSplit *shard, const int32_t *labels, int G) {
  memset(s, 0, sizeof *s);
  const int P = d->size;
  s->d = d;
  s->shard = shard;
  s->labels = labels;
  s->n = shard->info.n;
  s->G = G;
  s->B = G / P;
  s->row_bytes = shard->info.kind == DATASET_IMAGES ? (size_t)shard->info.H * shard->info.W * shard->info.channels
                                                    : (size_t)shard->info.F * sizeof(float);
  s->perm = xmalloc((size_t)s->n * sizeof(int));
  s->counts = xmalloc(4 * (size_t)P * sizeof(int));
  s->displs = s->counts + P;
  s->rcounts = s->counts + 2 * P;
  s->rdispls = s->counts + 3 * P;
  s->cursor = xmalloc((size_t)P * sizeof(int));
  s->sendbuf = xmalloc((size_t)G * s->row_bytes);
  s->recvbuf = xmalloc((size_t)s->B * s->row_bytes);
  s->rows = xmalloc((size_t)s->B * s->row_bytes);
  s->order = xmalloc((size_t)s->B * sizeof(int));
  s->iota = xmalloc((size_t)s->B * sizeof(int));
  for (int i = 0; i < s->B; i++) s->iota[i] = i;
}

void sampler_free(Sampler *s) {
  void *bufs[] = {s->perm, s->orders, s->counts, s->cursor, s->sendbuf, s->recvbuf, s->rows, s->order, s->iota};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
  memset(s, 0, sizeof *s);
}

int sampler_load_orders(Sampler *s, const char *path, int epochs) {
  const int64_t n = s->n, E = epochs;
  if (E == 0) return 0;
  hid_t f;
  if (h5io_open(path, &f) != 0) return err_set("order_from %s", err_msg());
  int nd, rc = 0;
  int64_t dims[H5IO_MAXDIM];
  H5T_class_t cls;
  size_t tsize;
  H5T_sign_t sign;
  if (h5io_shape(f, "order", &nd, dims) != 0) rc = -1;
  else if (h5io_type(f, "order", &cls, &tsize, &sign) != 0 || cls != H5T_INTEGER)
    rc = err_set("'order' must hold integers");
  else if (nd != 2 || dims[0] < E || dims[1] != n)
    rc = err_set("'order' must be epochs x n_train = %lld x %lld (or more rows)", (long long)E, (long long)n);
  else {
    s->orders = xmalloc((size_t)E * n * sizeof(int));
    rc = h5io_read_rows(f, "order", H5T_NATIVE_INT, 0, E, s->orders);
  }
  H5Fclose(f);
  uint8_t *seen = rc == 0 ? xcalloc((size_t)n, 1) : NULL;
  for (int64_t e = 0; rc == 0 && e < E; e++) {
    const int *o = s->orders + e * n;
    memset(seen, 0, (size_t)n);
    for (int64_t i = 0; rc == 0 && i < n; i++) {
      if (o[i] < 0 || o[i] >= n || seen[o[i]])
        rc = err_set("row %lld (epoch %lld) is not a permutation of 0..%lld: %d at position %lld", (long long)e,
                     (long long)e + 1, (long long)n - 1, o[i], (long long)i);
      else seen[o[i]] = 1;
    }
  }
  free(seen);
  return rc ? err_set("order_from %s: %s", path, err_msg()) : 0;
}

void sampler_epoch(Sampler *s, int epoch, uint64_t seed) {
  if (s->orders) {
    memcpy(s->perm, s->orders + (size_t)(epoch - 1) * s->n, (size_t)s->n * sizeof *s->perm);
    return;
  }
  Rng prng;
  rng_init(&prng, seed * 1000003u + (uint64_t)epoch);   /* the same on every rank */
  rng_permutation(&prng, s->perm, (int)s->n);
}

void sampler_batch(Sampler *s, int64_t step, float *x, int32_t *y) {
  const int P = s->d->size, r = s->d->rank, B = s->B;
  const int64_t n = s->n;
  const int *g = s->perm + step * s->G;
  const size_t rb = s->row_bytes;
  const DatasetSplit *sh = s->shard;
  const uint8_t *mine = sh->images ? sh->images : (const uint8_t *)sh->features;
  memset(s->counts, 0, 4 * (size_t)P * sizeof(int));
  /* what I send: positions q (any consumer) whose sample I own, in q order */
  size_t off = 0;
  for (int dest = 0; dest < P; dest++) {
    s->displs[dest] = (int)off;
    for (int q = dest * B; q < (dest + 1) * B; q++)
      if (owner_of(g[q], n, P) == r) {
        memcpy(s->sendbuf + off, mine + (size_t)(g[q] - sh->row0) * rb, rb);
        off += rb;
      }
    s->counts[dest] = (int)(off - (size_t)s->displs[dest]);
  }
  /* what I receive: my positions, grouped by owner, in q order within each */
  int *cur = s->cursor;
  for (int o = 0; o < P; o++) cur[o] = 0;
  for (int q = 0; q < B; q++) cur[owner_of(g[r * B + q], n, P)]++;
  int acc = 0;
  for (int o = 0; o < P; o++) {
    s->rcounts[o] = cur[o] * (int)rb;
    s->rdispls[o] = acc * (int)rb;
    int c = cur[o];
    cur[o] = acc;
    acc += c;
  }
  for (int q = 0; q < B; q++) {
    int o = owner_of(g[r * B + q], n, P);
    s->order[q] = cur[o]++;
    y[q] = s->labels[g[r * B + q]];
  }
  DIST_CHECK(MPI_Alltoallv(s->sendbuf, s->counts, s->displs, MPI_BYTE, s->recvbuf, s->rcounts, s->rdispls, MPI_BYTE,
                           s->d->comm));
  for (int q = 0; q < B; q++) memcpy(s->rows + (size_t)q * rb, s->recvbuf + (size_t)s->order[q] * rb, rb);
  DatasetSplit view = *sh;   /* the batch rows as a split of B rows */
  view.row0 = 0;
  view.nrows = B;
  view.images = sh->images ? s->rows : NULL;
  view.features = sh->features ? (float *)s->rows : NULL;
  view.labels = y;
  dataset_batch(x, NULL, &view, s->iota, B);
}
