/* fuzz_util.c: the helpers of the fuzz harnesses (fuzz_util.h). */
#include "fuzz_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Noreturn void fuzz_fail(const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "fuzz: %s:%d: ", file, line);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  fflush(stderr);
  abort();
}

uint8_t fuzz_u8(FuzzIn *in) { return in->i < in->n ? in->p[in->i++] : 0; }

uint32_t fuzz_u32(FuzzIn *in) {
  uint32_t v = 0;
  for (int b = 0; b < 4; b++) v = v << 8 | fuzz_u8(in);
  return v;
}

int fuzz_below(FuzzIn *in, int n) { return n <= 1 ? 0 : (int)(fuzz_u8(in) % (unsigned)n); }

int64_t fuzz_pick(FuzzIn *in, const int64_t *table, int n) { return table[fuzz_below(in, n)]; }

int fuzz_done(const FuzzIn *in) { return in->i >= in->n; }

/* ---- files ------------------------------------------------------------------ */

static char g_dir[256];
static int g_home = -1;   /* the directory we came from */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  remove(path);
  return 0;
}

void fuzz_rm_tree(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void remove_workdir(void) {
  if (g_dir[0]) fuzz_rm_tree(g_dir);
}

void fuzz_enter(void) {
  if (!g_dir[0]) {
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/proxygml-fuzz.XXXXXX", base);
    FUZZ_CHECK(mkdtemp(g_dir), "cannot make a directory %s: %s", g_dir, strerror(errno));
    atexit(remove_workdir);
  }
  if (g_home < 0) FUZZ_CHECK((g_home = open(".", O_RDONLY | O_DIRECTORY)) >= 0, "cannot open .: %s", strerror(errno));
  FUZZ_CHECK(chdir(g_dir) == 0, "cannot enter %s: %s", g_dir, strerror(errno));
}

void fuzz_leave(void) { FUZZ_CHECK(fchdir(g_home) == 0, "cannot return: %s", strerror(errno)); }

void fuzz_write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  FUZZ_CHECK(f, "cannot write %s: %s", path, strerror(errno));
  FUZZ_CHECK(fwrite(data, 1, n, f) == n && fclose(f) == 0, "cannot write %s", path);
}

int fuzz_include_ok(const char *text) {
  for (const char *p = strstr(text, "@include"); p; p = strstr(p + 1, "@include")) {
    const char *q = p + 8;
    while (*q == ' ' || *q == '\t') q++;
    if (*q++ != '"') continue;   /* not an include directive */
    for (; isalnum((unsigned char)*q) || *q == '_' || *q == '-' || *q == '.'; q++)
      if (q[0] == '.' && q[1] == '.') return 0;
    if (*q != '"') return 0;
  }
  return 1;
}

/* ---- HDF5 identifiers ----------------------------------------------------------- */

static const H5I_type_t KINDS[] = {H5I_FILE, H5I_GROUP, H5I_DATATYPE, H5I_DATASPACE, H5I_DATASET, H5I_ATTR};
static const char *const KIND_NAMES[] = {"file", "group", "datatype", "dataspace", "dataset", "attribute"};
#define NKINDS ((int)(sizeof KINDS / sizeof KINDS[0]))
static hsize_t g_marked[NKINDS];

void fuzz_h5_mark(void) {
  for (int k = 0; k < NKINDS; k++) {
    g_marked[k] = 0;
    H5Inmembers(KINDS[k], &g_marked[k]);
  }
}

void fuzz_h5_check(const char *call) {
  for (int k = 0; k < NKINDS; k++) {
    hsize_t now = 0;
    H5Inmembers(KINDS[k], &now);
    FUZZ_CHECK(now <= g_marked[k], "%s left %llu HDF5 %s identifier(s) open", call,
               (unsigned long long)(now - g_marked[k]), KIND_NAMES[k]);
  }
}

/* ---- HDF5 edits ----------------------------------------------------------------- */

hid_t fuzz_h5_type(int kind) {
  static const hid_t *const PLAIN[] = {&H5T_STD_U8LE_g,  &H5T_STD_I8LE_g,   &H5T_STD_U16LE_g,  &H5T_STD_I16BE_g,
                                       &H5T_STD_I32LE_g, &H5T_STD_I32BE_g,  &H5T_STD_U32LE_g,  &H5T_STD_I64LE_g,
                                       &H5T_STD_U64BE_g, &H5T_IEEE_F32LE_g, &H5T_IEEE_F32BE_g, &H5T_IEEE_F64LE_g};
  hid_t t;
  if (kind >= 0 && kind < 12) return H5Tcopy(*PLAIN[kind]);
  switch (kind) {
  case 12:   /* IEEE half precision, as h5py writes float16 */
    t = H5Tcopy(H5T_IEEE_F32LE);
    if (H5Tset_fields(t, 15, 10, 5, 0, 10) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 15) < 0) {
      H5Tclose(t);
      return -1;
    }
    return t;
  case 13:
  case 14:
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, kind == 13 ? 1 : 8);
    return t;
  case 15:
  case 16:
    t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, kind == 15 ? H5T_CSET_UTF8 : H5T_CSET_ASCII);
    return t;
  case 17: return H5Tcopy(H5T_STD_B8LE);
  case 18: return H5Tcreate(H5T_OPAQUE, 4);
  case 19: {
    int a = 0, b = 1;
    t = H5Tenum_create(H5T_NATIVE_INT);
    H5Tenum_insert(t, "a", &a);
    H5Tenum_insert(t, "b", &b);
    return t;
  }
  case 20:
    t = H5Tcreate(H5T_COMPOUND, 4);
    H5Tinsert(t, "a", 0, H5T_NATIVE_INT32);
    return t;
  case 21: {
    hsize_t two = 2;
    return H5Tarray_create2(H5T_NATIVE_INT32, 1, &two);
  }
  case 22: return H5Tvlen_create(H5T_NATIVE_INT32);
  case 23: return H5Tcopy(H5T_STD_REF_OBJ);
  }
  return -1;
}

/* values that are plain bytes (no pointers or references inside) */
static int plain_type(hid_t t) {
  H5T_class_t c = H5Tget_class(t);
  return c != H5T_VLEN && c != H5T_REFERENCE && !(c == H5T_STRING && H5Tis_variable_str(t) > 0);
}

static hid_t make_space(FuzzIn *in, const int64_t *rows, int nrows, const int64_t *dims, int ndims, hsize_t *nelem) {
  int kind = fuzz_below(in, 8);
  *nelem = 1;
  if (kind == 0) return H5Screate(H5S_SCALAR);
  if (kind == 1) {
    *nelem = 0;
    return H5Screate(H5S_NULL);
  }
  int rank = kind == 7 ? 1 + fuzz_below(in, 5) : kind - 1;
  hsize_t d[5];
  for (int i = 0; i < rank; i++) {
    d[i] = (hsize_t)(i == 0 ? fuzz_pick(in, rows, nrows) : fuzz_pick(in, dims, ndims));
    *nelem = d[i] && *nelem > UINT64_MAX / d[i] ? UINT64_MAX : *nelem * d[i];
  }
  return H5Screate_simple(rank, d, NULL);
}

static hid_t lcpl_parents(void) {
  hid_t l = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(l, 1);
  return l;
}

void fuzz_h5_dataset(hid_t loc, const char *name, FuzzIn *in, const int64_t *rows, int nrows, const int64_t *dims,
                     int ndims) {
  H5Ldelete(loc, name, H5P_DEFAULT);
  hid_t t = fuzz_h5_type(fuzz_below(in, FUZZ_H5_NTYPES));
  hsize_t nelem;
  hid_t s = make_space(in, rows, nrows, dims, ndims, &nelem);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), l = lcpl_parents();
  int small = nelem <= 4096 && t >= 0 && H5Tget_size(t) <= 16;
  if (!small && H5Sget_simple_extent_type(s) == H5S_SIMPLE) {
    /* chunks of at most 2^13 elements: few to visit when a reader reads it all,
     * small enough for the allocator of ASan to reuse (larger ones are mmapped) */
    hsize_t d[5], chunk[5], room = 1 << 13;
    int rank = H5Sget_simple_extent_dims(s, d, NULL);
    for (int i = rank - 1; i >= 0; i--) {
      chunk[i] = d[i] < room ? (d[i] ? d[i] : 1) : room;
      room /= chunk[i];
      if (room < 1) room = 1;
    }
    H5Pset_chunk(dcpl, rank, chunk);
  }
  hid_t d = t >= 0 ? H5Dcreate2(loc, name, t, s, l, dcpl, H5P_DEFAULT) : -1;
  if (d >= 0 && small && nelem > 0 && plain_type(t)) {
    size_t bytes = (size_t)nelem * H5Tget_size(t);
    uint8_t *buf = malloc(bytes), seed[16];
    FUZZ_CHECK(buf, "out of memory");
    for (int i = 0; i < 16; i++) seed[i] = fuzz_u8(in);
    for (size_t i = 0; i < bytes; i++) buf[i] = seed[i % 16];
    H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    free(buf);
  }
  if (d >= 0) H5Dclose(d);
  H5Pclose(dcpl);
  H5Pclose(l);
  H5Sclose(s);
  if (t >= 0) H5Tclose(t);
}

void fuzz_h5_attr(hid_t file, const char *obj, const char *name, FuzzIn *in, const int64_t *values, int nvalues) {
  hid_t loc = H5Oopen(file, obj, H5P_DEFAULT);
  if (loc < 0) return;
  if (H5Aexists(loc, name) > 0) H5Adelete(loc, name);
  int how = fuzz_below(in, 8);
  if (how == 0) {
    H5Oclose(loc);
    return;
  }
  hid_t t = fuzz_h5_type(fuzz_below(in, FUZZ_H5_NTYPES));
  hsize_t n = how == 1 ? 0 : 2;
  hid_t s = how <= 2 ? H5Screate_simple(1, &n, NULL) : how == 3 ? H5Screate(H5S_NULL) : H5Screate(H5S_SCALAR);
  int64_t v[2] = {fuzz_pick(in, values, nvalues), fuzz_pick(in, values, nvalues)};
  hid_t a = t >= 0 ? H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT) : -1;
  if (a >= 0 && how != 1 && how != 3) {
    if (H5Tget_class(t) == H5T_STRING) {
      char text[2][32];
      snprintf(text[0], sizeof text[0], "%lld", (long long)v[0]);
      snprintf(text[1], sizeof text[1], "%016llx", (unsigned long long)v[1]);
      if (H5Tis_variable_str(t) > 0) {
        const char *p[2] = {text[0], text[1]};
        H5Awrite(a, t, p);
      } else {
        char fixed[2][8];
        memcpy(fixed[0], text[0], 8);
        memcpy(fixed[1], text[1], 8);
        H5Awrite(a, t, fixed);
      }
    } else if (H5Awrite(a, H5T_NATIVE_INT64, v) < 0 && plain_type(t)) {   /* no conversion: raw bytes */
      uint8_t raw[64] = {0};
      memcpy(raw, v, sizeof v);
      H5Awrite(a, t, raw);
    }
  }
  if (a >= 0) H5Aclose(a);
  H5Sclose(s);
  if (t >= 0) H5Tclose(t);
  H5Oclose(loc);
}

/* a is b or one of its ancestors */
static int contains(const char *a, const char *b) {
  size_t n = strlen(a);
  return !strncmp(a, b, n) && (b[n] == '/' || !b[n]);
}

/* every component of path exists (H5Lexists wants its parents to) */
static int exists(hid_t file, const char *path) {
  char part[256];
  for (const char *p = path;; p++) {
    if (*p && *p != '/') continue;
    snprintf(part, sizeof part, "%.*s", (int)(p - path), path);
    if (H5Lexists(file, part, H5P_DEFAULT) <= 0) return 0;
    if (!*p) return 1;
  }
}

void fuzz_h5_link(hid_t file, const char *name, const char *other, int how) {
  H5Ldelete(file, name, H5P_DEFAULT);
  hid_t l = lcpl_parents();
  char abs[256];
  snprintf(abs, sizeof abs, "/%s", other);
  switch (how % 4) {
  case 1: H5Gclose(H5Gcreate2(file, name, l, H5P_DEFAULT, H5P_DEFAULT)); break;
  case 2: H5Lcreate_soft(abs, file, name, l, H5P_DEFAULT); break;
  case 3:   /* HDF5 1.10 crashes on hard links into a deleted group or between an object and its parent */
    if (!contains(name, other) && !contains(other, name) && exists(file, other))
      H5Lcreate_hard(file, other, file, name, l, H5P_DEFAULT);
    break;
  }
  H5Pclose(l);
}
