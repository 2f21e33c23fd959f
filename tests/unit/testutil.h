/* testutil.h: helpers shared by the Criterion unit tests. */
#ifndef PROXYGML_TESTUTIL_H
#define PROXYGML_TESTUTIL_H

#include <hdf5.h>
#include <stddef.h>

/* path of a file in the shared golden test data ($PROXYGML_TESTDATA/name) */
const char *testdata_path(const char *name);

/* Element-wise |got - want| <= atol + rtol * max|want|; on failure prints the
 * five worst elements under `label` and returns 0. Returns 1 when close. */
int check_close(const char *label, const double *got, const double *want, size_t n, double atol, double rtol);
int check_close_f32(const char *label, const float *got, const double *want, size_t n, double atol, double rtol);
double max_abs(const double *a, size_t n);
double max_abs_diff(const double *a, const double *b, size_t n);

/* a fresh directory $TMPDIR/pgml_TAG_XXXXXX (or under /tmp) into dir; 0 or -1 */
int tmpdir_make(char *dir, size_t size, const char *tag);
/* dir and everything under it */
void tmpdir_remove(const char *dir);

/* read a whole dataset (any numeric type) as doubles; n gets the element count; aborts on failure */
double *read_f64(hid_t f, const char *name, size_t *n);

#endif
