/* convert_images.h: image datasets into dataset files; part of the
 * conversion library (convert.h). `proxygml data folder|cub|cars|sop` is
 * their command line; the layouts are documented in docs/datasets.md.
 *
 *   folder  ROOT/train/<class>/<image>.jpg|png, ROOT/test/<class>/...
 *   cub     CUB-200-2011 (images.txt, image_class_labels.txt, images/)
 *   cars    Cars196 (a CSV/TXT export of cars_annos.mat: relative_im_path,class)
 *   sop     Stanford Online Products (Ebay_train.txt, Ebay_test.txt)
 *
 *   ConvertImagesOpts o = {.size = 224, .on_error = CONVERT_IMAGES_ON_ERROR_SKIP, .progress_every = 1000};
 *   if (convert_images_cub("cub.h5", "CUB_200_2011", &o) != 0) fprintf(stderr, "%s\n", err_msg());
 *
 * Class ids are global over both splits. The converters decode in blocks
 * with OpenMP and write the images S x S x 3 (uint8, RGB, shorter side
 * resized to S, centre crop). A corrupt or unreadable image is reported on
 * stderr with its path and skipped (counted in the split attribute
 * n_skipped), or, with CONVERT_IMAGES_ON_ERROR_FAIL, fails the conversion. A
 * structural problem (missing list file, empty class folder, a label out of
 * range) always fails. Every function returns 0 or -1 with one line in
 * err_msg(); no output file is left behind on failure. */
#ifndef PROXYGML_CONVERT_IMAGES_H
#define PROXYGML_CONVERT_IMAGES_H

typedef enum { CONVERT_IMAGES_ON_ERROR_FAIL = 0, CONVERT_IMAGES_ON_ERROR_SKIP = 1 } ConvertImagesOnError;

#define CONVERT_IMAGES_SIZE_DEFAULT 224
#define CONVERT_IMAGES_PROGRESS_EVERY 1000   /* images between progress lines when stderr is not a terminal */

typedef struct {
  int size;                  /* S */
  ConvertImagesOnError on_error;
  int progress_every;        /* 0 = no progress output */
} ConvertImagesOpts;

int convert_images_folder(const char *out, const char *root, const ConvertImagesOpts *o);
int convert_images_cub(const char *out, const char *root, const ConvertImagesOpts *o);
/* annos: the CSV/TXT export; NULL = ROOT/cars_annos.csv */
int convert_images_cars(const char *out, const char *root, const char *annos, const ConvertImagesOpts *o);
int convert_images_sop(const char *out, const char *root, const ConvertImagesOpts *o);

#endif
