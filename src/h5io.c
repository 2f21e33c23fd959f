/* h5io.c: HDF5 helpers with one-line errors (see include/h5io.h). */
#include "h5io.h"

#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void h5io_quiet(void) { if (!getenv("PROXYGML_H5_DEBUG")) H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* HDF5's signature sits at byte 0, 512, 1024, 2048, ... (a user block may come first) */
static int has_signature(FILE *f, long long size) {
  static const unsigned char SIG[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  for (long long off = 0; off + 8 <= size; off = off ? 2 * off : 512) {
    unsigned char b[8];
    if (fseeko(f, (off_t)off, SEEK_SET) != 0 || fread(b, 1, 8, f) != 8) return 0;
    if (!memcmp(b, SIG, 8)) return 1;
  }
  return 0;
}

static herr_t find_truncated(unsigned n, const H5E_error2_t *e, void *found) {
  (void)n;
  if (e->desc && strstr(e->desc, "truncated")) *(int *)found = 1;
  return 0;
}

/* why H5Fopen failed, in the words a user can act on: missing, unreadable,
 * not HDF5 at all, cut short (a copy or write that did not finish), corrupt */
static int open_failed(const char *path) {
  int truncated = 0;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_truncated, &truncated);
  struct stat st;
  if (stat(path, &st) != 0) {
    if (errno == ENOENT) return err_set("%s: no such file", path);
    return err_set("%s: cannot read it: %s", path, strerror(errno));
  }
  if (S_ISDIR(st.st_mode)) return err_set("%s: is a directory, not an HDF5 file", path);
  FILE *f = fopen(path, "rb");
  /* unreachable in tests: stat has just succeeded; fopen then fails only without read permission, which root,
   * the tests' user, always has */
  if (!f) return err_set("%s: cannot read it: %s", path, strerror(errno));
  int sig = has_signature(f, (long long)st.st_size);
  fclose(f);
  if (!sig) return err_set("%s: not an HDF5 file (%lld bytes, no HDF5 signature)", path, (long long)st.st_size);
  if (truncated)
    return err_set("%s: truncated HDF5 file (%lld bytes, shorter than its header says: an interrupted write or copy?)",
                   path, (long long)st.st_size);
  return err_set("%s: corrupt HDF5 file (it has the HDF5 signature but cannot be opened)", path);
}

static int open_with(const char *path, hid_t fapl, hid_t *file) {
  h5io_quiet();
  *file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (*file < 0) return open_failed(path);
  return 0;
}

int h5io_open(const char *path, hid_t *file) { return open_with(path, H5P_DEFAULT, file); }

int h5io_open_parallel(const char *path, MPI_Comm comm, hid_t *file) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  int rc = open_with(path, fapl, file);
  H5Pclose(fapl);
  return rc;
}

static int create_with(const char *path, hid_t fapl, hid_t *file) {
  h5io_quiet();
  *file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (*file < 0) return err_set("%s: cannot create HDF5 file (directory missing or not writable?)", path);
  return 0;
}

int h5io_create(const char *path, hid_t *file) { return create_with(path, H5P_DEFAULT, file); }

int h5io_create_parallel(const char *path, MPI_Comm comm, hid_t *file) {
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  int rc = create_with(path, fapl, file);
  H5Pclose(fapl);
  return rc;
}

int h5io_has(hid_t loc, const char *name) {
  h5io_quiet();
  return H5Lexists(loc, name, H5P_DEFAULT) > 0;
}

int h5io_shape(hid_t loc, const char *name, int *ndim, int64_t dims[H5IO_MAXDIM]) {
  if (!h5io_has(loc, name)) return err_set("dataset '%s' is missing", name);
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  if (d < 0) return err_set("'%s' is not a readable dataset", name);
  hid_t s = H5Dget_space(d);
  int nd = H5Sget_simple_extent_ndims(s);
  hsize_t hd[H5IO_MAXDIM];
  int rc = 0;
  if (nd < 0 || nd > H5IO_MAXDIM) rc = err_set("dataset '%s' has an unsupported rank", name);
  else {
    H5Sget_simple_extent_dims(s, hd, NULL);
    *ndim = nd;
    for (int i = 0; i < nd; i++) dims[i] = (int64_t)hd[i];
  }
  H5Sclose(s);
  H5Dclose(d);
  return rc;
}

int h5io_type(hid_t loc, const char *name, H5T_class_t *cls, size_t *size, H5T_sign_t *sign) {
  h5io_quiet();
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  if (d < 0) return -1;
  hid_t t = H5Dget_type(d);
  *cls = H5Tget_class(t);
  *size = H5Tget_size(t);
  *sign = *cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_NONE;
  H5Tclose(t);
  H5Dclose(d);
  return 0;
}

int h5io_read(hid_t loc, const char *name, hid_t memtype, void *buf, size_t count) {
  int nd; int64_t dims[H5IO_MAXDIM];
  if (h5io_shape(loc, name, &nd, dims) != 0) return -1;
  size_t n = 1;
  for (int i = 0; i < nd; i++) n *= (size_t)dims[i];
  if (n != count) return err_set("dataset '%s' has %zu elements, expected %zu", name, n, count);
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  herr_t st = H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  H5Dclose(d);
  if (st < 0) return err_set("dataset '%s': read failed (corrupt data or a type that does not convert)", name);
  return 0;
}

int h5io_read_rows(hid_t loc, const char *name, hid_t memtype, int64_t row0, int64_t nrows, void *buf) {
  int nd; int64_t dims[H5IO_MAXDIM];
  if (h5io_shape(loc, name, &nd, dims) != 0) return -1;
  if (nd < 1 || row0 < 0 || nrows < 0 || row0 + nrows > dims[0])
    return err_set("dataset '%s': rows [%lld, %lld) out of range", name, (long long)row0,
                   (long long)(row0 + nrows));
  hsize_t start[H5IO_MAXDIM] = {0}, cnt[H5IO_MAXDIM];
  start[0] = (hsize_t)row0;
  cnt[0] = (hsize_t)nrows;
  for (int i = 1; i < nd; i++) cnt[i] = (hsize_t)dims[i];
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  hid_t fs = H5Dget_space(d);
  hid_t ms = H5Screate_simple(nd, cnt, NULL);
  herr_t st = 0;
  if (nrows > 0) {
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    st = H5Dread(d, memtype, ms, fs, H5P_DEFAULT, buf);
  }
  H5Sclose(ms);
  H5Sclose(fs);
  H5Dclose(d);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (st < 0) return err_set("dataset '%s': read of rows failed", name);
  return 0;
}

static int attr_read(hid_t loc, const char *name, hid_t memtype, void *out) {
  h5io_quiet();
  if (H5Aexists(loc, name) <= 0) return err_set("attribute '%s' is missing", name);
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  hid_t s = H5Aget_space(a);
  hssize_t n = H5Sget_simple_extent_npoints(s);
  herr_t st = n == 1 ? H5Aread(a, memtype, out) : -1;
  H5Sclose(s);
  H5Aclose(a);
  if (st < 0) return err_set("attribute '%s' is not a single number", name);
  return 0;
}

int h5io_attr_i64(hid_t loc, const char *name, int64_t *out) { return attr_read(loc, name, H5T_NATIVE_INT64, out); }
int h5io_attr_f64(hid_t loc, const char *name, double *out) { return attr_read(loc, name, H5T_NATIVE_DOUBLE, out); }

int h5io_attr_str(hid_t loc, const char *name, char *buf, size_t cap) {
  h5io_quiet();
  if (H5Aexists(loc, name) <= 0) return err_set("attribute '%s' is missing", name);
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
  hssize_t npoints = H5Sget_simple_extent_npoints(sp);
  H5Sclose(sp);
  int rc = 0;
  if (H5Tget_class(t) != H5T_STRING) rc = err_set("attribute '%s' is not a string", name);
  /* H5Aread writes every element: an array of strings would overrun one */
  else if (npoints != 1) rc = err_set("attribute '%s' is not a single string (%lld elements)", name, (long long)npoints);
  else if (H5Tis_variable_str(t) > 0) {
    char *s = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(t));   /* HDF5 will not convert UTF-8 to ASCII */
    /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
    if (H5Aread(a, mt, &s) < 0) rc = err_set("attribute '%s': read failed", name);
    else {
      snprintf(buf, cap, "%s", s ? s : "");
      H5free_memory(s);
    }
    H5Tclose(mt);
  } else {
    size_t n = H5Tget_size(t);
    char *tmp = xcalloc(n + 1, 1);
    hid_t mt = H5Tcopy(H5T_C_S1);
    H5Tset_size(mt, n + 1);
    H5Tset_cset(mt, H5Tget_cset(t));
    /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
    if (H5Aread(a, mt, tmp) < 0) rc = err_set("attribute '%s': read failed", name);
    else snprintf(buf, cap, "%s", tmp);
    H5Tclose(mt);
    free(tmp);
  }
  H5Tclose(t);
  H5Aclose(a);
  return rc;
}

int h5io_write(hid_t loc, const char *name, hid_t memtype, int ndim, const int64_t *dims, const void *buf) {
  h5io_quiet();
  hsize_t hd[H5IO_MAXDIM];
  size_t n = 1;
  for (int i = 0; i < ndim; i++) { hd[i] = (hsize_t)dims[i]; n *= (size_t)dims[i]; }
  hid_t s = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, hd, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (ndim > 0 && n > 4096 && dims[0] > 0) {
    /* chunks of whole rows, about 1 MiB */
    hsize_t chunk[H5IO_MAXDIM];
    size_t row = n / (size_t)dims[0];
    size_t rows = (1u << 20) / (H5Tget_size(memtype) * (row ? row : 1));
    if (rows < 1) rows = 1;
    if (rows > (size_t)dims[0]) rows = (size_t)dims[0];
    chunk[0] = rows;
    for (int i = 1; i < ndim; i++) chunk[i] = hd[i];
    H5Pset_chunk(dcpl, ndim, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 4);
  }
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t d = H5Dcreate2(loc, name, memtype, s, lcpl, dcpl, H5P_DEFAULT);
  herr_t st = d < 0 ? -1 : H5Dwrite(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  if (d >= 0) H5Dclose(d);
  H5Pclose(lcpl);
  H5Pclose(dcpl);
  H5Sclose(s);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (st < 0) return err_set("cannot write dataset '%s'", name);
  return 0;
}

int h5io_write_rows(hid_t loc, const char *name, hid_t memtype, int ndim, const int64_t *dims, int64_t row0,
                    int64_t nrows, const void *buf) {
  return h5io_write_pieces(loc, name, memtype, ndim, dims, 1, &row0, &nrows, &buf);
}

int h5io_write_pieces(hid_t loc, const char *name, hid_t memtype, int ndim, const int64_t *dims, int npieces,
                      const int64_t *row0, const int64_t *nrows, const void *const *bufs) {
  h5io_quiet();
  hsize_t hd[H5IO_MAXDIM], start[H5IO_MAXDIM] = {0}, cnt[H5IO_MAXDIM];
  for (int i = 0; i < ndim; i++) { hd[i] = (hsize_t)dims[i]; cnt[i] = hd[i]; }
  for (int k = 0; k < npieces; k++)
    if (ndim < 1 || row0[k] < 0 || nrows[k] < 0 || row0[k] + nrows[k] > dims[0])
      return err_set("dataset '%s': rows [%lld, %lld) out of range", name, (long long)row0[k],
                     (long long)(row0[k] + nrows[k]));
  hid_t fs = H5Screate_simple(ndim, hd, NULL);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t d = H5Dcreate2(loc, name, memtype, fs, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = d >= 0 ? 0 : -1;
  hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
  hid_t fid = H5Iget_file_id(loc), fapl = H5Fget_access_plist(fid);
  H5Fclose(fid);   /* H5Iget_file_id takes a reference */
  if (H5Pget_driver(fapl) == H5FD_MPIO) H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
  H5Pclose(fapl);
  /* an empty table has nothing to write (MPI-IO rejects it); each piece is
   * one collective write, so every rank passes the same npieces and makes
   * every write, even after one failed */
  for (int k = 0; k < npieces && d >= 0 && dims[0] > 0; k++) {
    start[0] = (hsize_t)row0[k];
    cnt[0] = (hsize_t)nrows[k];
    hid_t ms = H5Screate_simple(ndim, cnt, NULL);
    if (nrows[k] > 0) H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    else { H5Sselect_none(fs); H5Sselect_none(ms); }
    if (H5Dwrite(d, memtype, ms, fs, dxpl, bufs[k]) < 0) st = -1;
    H5Sclose(ms);
  }
  H5Pclose(dxpl);
  if (d >= 0) H5Dclose(d);
  H5Pclose(lcpl);
  H5Sclose(fs);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (st < 0) return err_set("cannot write dataset '%s'", name);
  return 0;
}

static int attr_write(hid_t loc, const char *name, hid_t type, const void *v) {
  h5io_quiet();
  if (H5Aexists(loc, name) > 0) H5Adelete(loc, name);
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(loc, name, type, s, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = a < 0 ? -1 : H5Awrite(a, type, v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(s);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (st < 0) return err_set("cannot write attribute '%s'", name);
  return 0;
}

int h5io_set_attr_i64(hid_t loc, const char *name, int64_t v) { return attr_write(loc, name, H5T_NATIVE_INT64, &v); }
int h5io_set_attr_f64(hid_t loc, const char *name, double v) { return attr_write(loc, name, H5T_NATIVE_DOUBLE, &v); }

int h5io_set_attr_str(hid_t loc, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  int rc = attr_write(loc, name, t, &v);
  H5Tclose(t);
  return rc;
}

int h5io_set_attr_strs(hid_t loc, const char *name, const char *const *v, int n) {
  h5io_quiet();
  if (H5Aexists(loc, name) > 0) H5Adelete(loc, name);
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hsize_t dim = (hsize_t)n;
  hid_t s = H5Screate_simple(1, &dim, NULL);
  hid_t a = H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = a < 0 ? -1 : H5Awrite(a, t, v);
  if (a >= 0) H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
  /* unreachable in tests: HDF5 fails here only after the same file was opened or created (a library or disk fault) */
  if (st < 0) return err_set("cannot write attribute '%s'", name);
  return 0;
}
