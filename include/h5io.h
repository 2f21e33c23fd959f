/* h5io.h: small HDF5 helpers shared by every module that reads or writes files.
 *
 * All functions return 0 on success and -1 on failure, with a one-line reason
 * (naming the file or dataset) in err_msg(). HDF5's own error stack printing is
 * switched off: the caller reports the one line.
 *
 *   hid_t f;
 *   if (h5io_open(path, &f) != 0) { fprintf(stderr, "%s\n", err_msg()); ... }
 *   int nd; int64_t dims[H5IO_MAXDIM];
 *   h5io_shape(f, "x_raw", &nd, dims);                     // B x D
 *   h5io_read(f, "x_raw", H5T_NATIVE_FLOAT, x, (size_t)(dims[0] * dims[1]));
 *   H5Fclose(f);
 *
 * Reads convert between numeric types (a float64 dataset into a float buffer
 * and so on). `count` is the buffer size in elements and must equal the
 * dataset's element count: a mismatch is an error, never a silent overrun.
 */
#ifndef PROXYGML_H5IO_H
#define PROXYGML_H5IO_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#define H5IO_MAXDIM 8

void h5io_quiet(void);                          /* turn off HDF5's automatic error printing */

/* read-only, serial driver; the message tells a missing file, one that is not
 * HDF5, a truncated one and a corrupt one apart */
int h5io_open(const char *path, hid_t *file);
int h5io_open_parallel(const char *path, MPI_Comm comm, hid_t *file);    /* read-only, MPI-IO */
int h5io_create(const char *path, hid_t *file);                          /* truncate, serial */
int h5io_create_parallel(const char *path, MPI_Comm comm, hid_t *file);  /* truncate, MPI-IO */

int h5io_has(hid_t loc, const char *name);      /* 1 if a link `name` exists (no error set) */
int h5io_shape(hid_t loc, const char *name, int *ndim, int64_t dims[H5IO_MAXDIM]);
/* the stored element type: class, size in bytes, sign (H5T_SGN_NONE unless an
 * integer); -1 (no message) if the dataset cannot be opened */
int h5io_type(hid_t loc, const char *name, H5T_class_t *cls, size_t *size, H5T_sign_t *sign);
int h5io_read(hid_t loc, const char *name, hid_t memtype, void *buf, size_t count);
/* rows [row0, row0 + nrows) along the first dimension (a hyperslab: what one rank reads) */
int h5io_read_rows(hid_t loc, const char *name, hid_t memtype, int64_t row0, int64_t nrows, void *buf);

int h5io_attr_i64(hid_t loc, const char *name, int64_t *out);
int h5io_attr_f64(hid_t loc, const char *name, double *out);
int h5io_attr_str(hid_t loc, const char *name, char *buf, size_t cap);

/* Writes a whole dataset from one process (serial files, or rank 0 of a
 * parallel file with independent I/O). Chunked + shuffle + deflate above
 * 4096 elements. ndim = 0 writes a scalar. */
int h5io_write(hid_t loc, const char *name, hid_t memtype, int ndim, const int64_t *dims, const void *buf);
/* Collective form for a file opened with h5io_create_parallel: every rank
 * calls it with the same name and full dims; each writes its rows
 * [row0, row0 + nrows) of buf (nrows = 0: writes nothing). Replicated data:
 * rank 0 passes all rows, the others none. Contiguous, unfiltered. */
int h5io_write_rows(hid_t loc, const char *name, hid_t memtype, int ndim, const int64_t *dims, int64_t row0,
                    int64_t nrows, const void *buf);
/* the same with several pieces per rank: piece k is rows [row0[k], +nrows[k])
 * from bufs[k], one collective write each (npieces equal on every rank) */
int h5io_write_pieces(hid_t loc, const char *name, hid_t memtype, int ndim, const int64_t *dims, int npieces,
                      const int64_t *row0, const int64_t *nrows, const void *const *bufs);
int h5io_set_attr_i64(hid_t loc, const char *name, int64_t v);
int h5io_set_attr_f64(hid_t loc, const char *name, double v);
int h5io_set_attr_str(hid_t loc, const char *name, const char *v);
/* an array of n UTF-8 strings as one attribute (collective in parallel files: same values on every rank) */
int h5io_set_attr_strs(hid_t loc, const char *name, const char *const *v, int n);

#endif
