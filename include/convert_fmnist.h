/* convert_fmnist.h: Fashion-MNIST from its four gzipped IDX files
 * (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-...) into a
 * dataset file of uint8 images H x W x 1 (28 x 28); part of the conversion
 * library (convert.h). `proxygml data fashion-mnist` is its command line.
 *
 *   if (convert_fmnist_write("fmnist.h5", CONVERT_FMNIST_DEFAULT_DIR, CONVERT_FMNIST_SEEN) != 0)
 *     fprintf(stderr, "%s\n", err_msg());
 *
 * The IDX files are checked completely: magic, dimensions, exact length,
 * labels 0-9, matching counts and image sizes. Returns 0 or -1 with one line in err_msg(). */
#ifndef PROXYGML_CONVERT_FMNIST_H
#define PROXYGML_CONVERT_FMNIST_H

typedef enum { CONVERT_FMNIST_SEEN = 0, CONVERT_FMNIST_ZEROSHOT = 1 } ConvertFmnistProtocol;

#define CONVERT_FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"  /* Debian dataset-fashion-mnist */

/* Reads the four gzipped IDX files in idx_dir and writes out atomically
 * (out.tmp.<pid>, validated, then renamed), so a failure leaves no file and
 * never replaces an existing one. seen: all of train -> /train, all of t10k
 * -> /test; zeroshot: classes 0-4 of train -> /train, classes 5-9 of t10k ->
 * /test. */
int convert_fmnist_write(const char *out, const char *idx_dir, ConvertFmnistProtocol protocol);

#endif
