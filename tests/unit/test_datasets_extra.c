/* test_datasets_extra.c: the converters beyond Fashion-MNIST and their
 * modules. Real JPEG and PNG files are written here with libjpeg and libpng
 * into a fresh temp dir per test; an image-folder tree, a CUB-layout tree, a
 * Cars CSV, SOP lists, .npy and HDF5 feature files are built from them and
 * converted, and the result is read back through the validating reader. The
 * glyph renderer runs on a handful of characters of two Debian fonts (the
 * glyph tests skip when fonts-ipafont-gothic / fonts-arphic-ukai are not
 * installed). Bad input must fail with a one-line message naming the file. */
#include "common.h"
#include "convert_features.h"
#include "convert_glyphs.h"
#include "convert_images.h"
#include "dataset.h"
#include "glyphs.h"
#include "h5io.h"
#include "imageio.h"
#include "testutil.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

/* ---- a temp dir per test ------------------------------------------------------- */

static char g_dir[256];

static void tmpdir_init(void) { cr_assert(tmpdir_make(g_dir, sizeof g_dir, "dsx") == 0, "mkdtemp failed"); }

static void tmpdir_free(void) { tmpdir_remove(g_dir); }

TestSuite(datasets_extra, .init = tmpdir_init, .fini = tmpdir_free);

/* path under the temp dir; a few rotating buffers */
static const char *tp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tp(const char *fmt, ...) {
  static char buf[8][1024];
  static int k;
  k = (k + 1) % 8;
  char rel[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rel, sizeof rel, fmt, ap);
  va_end(ap);
  snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, rel);
  return buf[k];
}

static void mkdirs(const char *path) {
  char p[1024];
  snprintf(p, sizeof p, "%s", path);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = 0;
      mkdir(p, 0755);
      *s = '/';
    }
  mkdir(p, 0755);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

#define EXPECT_ERR(call, substr)                                                                  \
  do {                                                                                            \
    int rc_ = (call);                                                                             \
    cr_assert_eq(rc_, -1, "%s returned %d, expected -1", #call, rc_);                             \
    cr_assert(strstr(err_msg(), substr), "message '%s' does not mention '%s'", err_msg(), substr); \
  } while (0)

/* ---- writing real image files ------------------------------------------------------ */

/* a w x h image whose colour tells (r, g, b) apart: a flat colour */
static uint8_t *flat(int w, int h, int c, uint8_t r, uint8_t g, uint8_t b) {
  uint8_t *p = xmalloc((size_t)w * h * c);
  for (int i = 0; i < w * h; i++) {
    if (c == 1) p[i] = r;
    else {
      p[c * i] = r;
      p[c * i + 1] = g;
      p[c * i + 2] = b;
      if (c == 4) p[c * i + 3] = 255;
    }
  }
  return p;
}

static void write_png(const char *path, const uint8_t *px, int w, int h, int c) {
  png_image p;
  memset(&p, 0, sizeof p);
  p.version = PNG_IMAGE_VERSION;
  p.width = (png_uint_32)w;
  p.height = (png_uint_32)h;
  p.format = c == 1 ? PNG_FORMAT_GRAY : c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
  cr_assert(png_image_write_to_file(&p, path, 0, px, 0, NULL), "png write %s: %s", path, p.message);
}

static void write_jpeg(const char *path, const uint8_t *px, int w, int h, int c) {
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  struct jpeg_compress_struct j;
  struct jpeg_error_mgr e;
  j.err = jpeg_std_error(&e);
  jpeg_create_compress(&j);
  jpeg_stdio_dest(&j, f);
  j.image_width = (JDIMENSION)w;
  j.image_height = (JDIMENSION)h;
  j.input_components = c;
  j.in_color_space = c == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&j);
  jpeg_set_quality(&j, 95, TRUE);
  jpeg_start_compress(&j, TRUE);
  while (j.next_scanline < j.image_height) {
    JSAMPROW row = (JSAMPROW)(px + (size_t)j.next_scanline * w * c);
    jpeg_write_scanlines(&j, &row, 1);
  }
  jpeg_finish_compress(&j);
  jpeg_destroy_compress(&j);
  fclose(f);
}

static void png_flat(const char *path, int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  uint8_t *p = flat(w, h, 3, r, g, b);
  write_png(path, p, w, h, 3);
  free(p);
}

static void jpeg_flat(const char *path, int w, int h, uint8_t r, uint8_t g, uint8_t b) {
  uint8_t *p = flat(w, h, 3, r, g, b);
  write_jpeg(path, p, w, h, 3);
  free(p);
}

/* a file cut to its first `keep` bytes */
static void truncate_copy(const char *src, const char *dst, long keep) {
  FILE *f = fopen(src, "rb");
  cr_assert(f);
  char *b = xmalloc((size_t)keep);
  size_t n = fread(b, 1, (size_t)keep, f);
  fclose(f);
  FILE *g = fopen(dst, "wb");
  fwrite(b, 1, n, g);
  fclose(g);
  free(b);
}

static ConvertImagesOpts opts(int S, ConvertImagesOnError oe) { return (ConvertImagesOpts){S, oe, 0}; }

/* ---- imageio ----------------------------------------------------------------------- */

Test(datasets_extra, png_decodes_exactly_and_expands_gray) {
  uint8_t px[4 * 3 * 3];
  for (int i = 0; i < 36; i++) px[i] = (uint8_t)(i * 7);
  write_png(tp("rgb.png"), px, 4, 3, 3);
  char why[IMAGEIO_ERR_MAX];
  ImageioImage im;
  cr_assert_eq(imageio_read(&im, tp("rgb.png"), 0, why), 0, "%s", why);
  cr_assert(im.w == 4 && im.h == 3);
  cr_assert_arr_eq(im.rgb, px, sizeof px);
  imageio_free(&im);

  uint8_t g[6] = {0, 50, 100, 150, 200, 250};
  write_png(tp("gray.png"), g, 3, 2, 1);
  cr_assert_eq(imageio_read(&im, tp("gray.png"), 0, why), 0, "%s", why);
  for (int i = 0; i < 6; i++) cr_assert(im.rgb[3 * i] == g[i] && im.rgb[3 * i + 1] == g[i] && im.rgb[3 * i + 2] == g[i]);
  imageio_free(&im);

  /* alpha composited onto white: a fully transparent pixel becomes white */
  uint8_t ra[2 * 4] = {10, 20, 30, 255, 10, 20, 30, 0};
  write_png(tp("rgba.png"), ra, 2, 1, 4);
  cr_assert_eq(imageio_read(&im, tp("rgba.png"), 0, why), 0, "%s", why);
  cr_assert(im.rgb[0] == 10 && im.rgb[1] == 20 && im.rgb[2] == 30);
  cr_assert(im.rgb[3] == 255 && im.rgb[4] == 255 && im.rgb[5] == 255);
  imageio_free(&im);
}

Test(datasets_extra, jpeg_decodes_close_and_gray_expands) {
  jpeg_flat(tp("c.jpg"), 40, 30, 200, 100, 50);
  char why[IMAGEIO_ERR_MAX];
  ImageioImage im;
  cr_assert_eq(imageio_read(&im, tp("c.jpg"), 0, why), 0, "%s", why);
  cr_assert(im.w == 40 && im.h == 30);
  cr_assert(abs(im.rgb[0] - 200) <= 3 && abs(im.rgb[1] - 100) <= 3 && abs(im.rgb[2] - 50) <= 3, "%d %d %d", im.rgb[0],
            im.rgb[1], im.rgb[2]);
  imageio_free(&im);
  uint8_t *g = flat(16, 16, 1, 77, 0, 0);
  write_jpeg(tp("g.jpg"), g, 16, 16, 1);
  free(g);
  cr_assert_eq(imageio_read(&im, tp("g.jpg"), 0, why), 0, "%s", why);
  cr_assert(abs(im.rgb[0] - 77) <= 1 && im.rgb[0] == im.rgb[1] && im.rgb[1] == im.rgb[2]);
  imageio_free(&im);
  /* DCT scaling: a 400 x 300 JPEG wanted at >= 32 decodes at 1/8 */
  jpeg_flat(tp("big.jpg"), 400, 300, 10, 20, 30);
  cr_assert_eq(imageio_read(&im, tp("big.jpg"), 32, why), 0, "%s", why);
  cr_assert(im.w == 50 && im.h == 38, "%d x %d", im.w, im.h);
  imageio_free(&im);
}

Test(datasets_extra, resize_crop_averages_and_centres) {
  /* 8 x 4, left half 0, right half 200, but the centre crop of a wide image
   * keeps the middle 4 columns: 2 black, 2 at 200; S = 2 averages 2x2 blocks */
  ImageioImage im = {8, 4, xcalloc(8 * 4 * 3, 1)};
  for (int y = 0; y < 4; y++)
    for (int x = 4; x < 8; x++)
      for (int c = 0; c < 3; c++) im.rgb[(y * 8 + x) * 3 + c] = 200;
  uint8_t out[2 * 2 * 3];
  imageio_resize_crop(out, &im, 2);
  for (int y = 0; y < 2; y++) {
    cr_assert_eq(out[(y * 2 + 0) * 3], 0);
    cr_assert_eq(out[(y * 2 + 1) * 3], 200);
  }
  /* a 3x shrink of a flat image stays flat; enlarging a flat image too */
  memset(im.rgb, 90, 8 * 4 * 3);
  uint8_t big[12 * 12 * 3];
  imageio_resize_crop(big, &im, 12);
  for (int i = 0; i < 12 * 12 * 3; i++) cr_assert_eq(big[i], 90);
  imageio_free(&im);
  ImageioImage h = {2, 6, xmalloc(2 * 6 * 3)};   /* tall: rows 0-1 = 0, 2-3 = 120, 4-5 = 240 */
  for (int y = 0; y < 6; y++) memset(h.rgb + y * 6, (y / 2) * 120, 6);
  uint8_t o1[3];
  imageio_resize_crop(o1, &h, 1);   /* shorter side 2 -> 1: the middle 2 x 2 block */
  cr_assert_eq(o1[0], 120);
  imageio_free(&h);
}

Test(datasets_extra, corrupt_images_are_reported_by_path) {
  char why[IMAGEIO_ERR_MAX];
  ImageioImage im;
  jpeg_flat(tp("ok.jpg"), 64, 64, 1, 2, 3);
  truncate_copy(tp("ok.jpg"), tp("cut.jpg"), 400);
  cr_assert_eq(imageio_read(&im, tp("cut.jpg"), 0, why), -1);
  cr_assert(strstr(why, "cut.jpg") && (strstr(why, "truncated") || strstr(why, "corrupt")), "%s", why);
  cr_assert_null(im.rgb);
  png_flat(tp("ok.png"), 64, 64, 1, 2, 3);
  truncate_copy(tp("ok.png"), tp("cut.png"), 60);
  cr_assert_eq(imageio_read(&im, tp("cut.png"), 0, why), -1);
  cr_assert(strstr(why, "cut.png") && strstr(why, "PNG"), "%s", why);
  write_text(tp("junk.jpg"), "this is not an image");
  cr_assert_eq(imageio_read(&im, tp("junk.jpg"), 0, why), -1);
  cr_assert(strstr(why, "not a JPEG or PNG"), "%s", why);
  write_text(tp("x.png"), "GIF89a......");
  cr_assert_eq(imageio_read(&im, tp("x.png"), 0, why), -1);
  cr_assert(strstr(why, "GIF"), "%s", why);
  cr_assert_eq(imageio_read(&im, tp("missing.png"), 0, why), -1);
  cr_assert(strstr(why, "missing.png") && strstr(why, "cannot open"), "%s", why);
}

/* ---- the image-folder converter ------------------------------------------------------- */

/* train/{apple,banana}, test/{banana,cherry}: ids apple 0, banana 1, cherry 2 */
static void make_tree(void) {
  mkdirs(tp("tree/train/banana"));
  mkdirs(tp("tree/train/apple"));
  mkdirs(tp("tree/test/cherry"));
  mkdirs(tp("tree/test/banana"));
  png_flat(tp("tree/train/apple/1.png"), 20, 10, 255, 0, 0);
  jpeg_flat(tp("tree/train/apple/2.JPG"), 12, 30, 250, 0, 0);
  jpeg_flat(tp("tree/train/banana/a.jpeg"), 16, 16, 255, 255, 0);
  uint8_t *g = flat(9, 9, 1, 128, 0, 0);
  write_png(tp("tree/train/banana/gray.png"), g, 9, 9, 1);
  free(g);
  write_text(tp("tree/train/banana/notes.txt"), "ignored: not an image extension");
  png_flat(tp("tree/test/banana/t.png"), 8, 8, 255, 255, 0);
  jpeg_flat(tp("tree/test/cherry/c1.jpg"), 20, 20, 128, 0, 64);
  png_flat(tp("tree/test/cherry/c2.png"), 20, 20, 128, 0, 64);
}

Test(datasets_extra, folder_tree_converts_with_global_ids) {
  make_tree();
  ConvertImagesOpts o = opts(8, CONVERT_IMAGES_ON_ERROR_FAIL);
  cr_assert_eq(convert_images_folder(tp("f.h5"), tp("tree"), &o), 0, "%s", err_msg());
  DatasetSplit tr, te;
  cr_assert_eq(dataset_split_read(&tr, tp("f.h5"), "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&te, tp("f.h5"), "test", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(tr.info.n_classes, 3);
  cr_assert(tr.info.H == 8 && tr.info.W == 8 && tr.info.channels == 3);
  cr_assert_str_eq(tr.class_names[0], "apple");
  cr_assert_str_eq(tr.class_names[1], "banana");
  cr_assert_str_eq(tr.class_names[2], "cherry");
  int32_t want_tr[4] = {0, 0, 1, 1}, want_te[3] = {1, 2, 2};
  cr_assert_eq(tr.nrows, 4);
  cr_assert_eq(te.nrows, 3);
  cr_assert_arr_eq(tr.labels, want_tr, sizeof want_tr);
  cr_assert_arr_eq(te.labels, want_te, sizeof want_te);
  /* row 0 is apple/1.png, pure red; row 3 banana/gray.png, 128 in every channel */
  cr_assert(tr.images[0] == 255 && tr.images[1] == 0 && tr.images[2] == 0);
  const uint8_t *g = tr.images + 3 * 8 * 8 * 3;
  cr_assert(g[0] == 128 && g[1] == 128 && g[2] == 128);
  dataset_split_free(&tr);
  dataset_split_free(&te);
  hid_t f;
  int64_t sk;
  cr_assert_eq(h5io_open(tp("f.h5"), &f), 0);
  cr_assert_eq(h5io_attr_i64(f, "n_skipped", &sk), 0);
  cr_assert_eq(sk, 0);
  H5Fclose(f);
}

Test(datasets_extra, folder_corrupt_image_skip_or_fail) {
  make_tree();
  truncate_copy(tp("tree/test/cherry/c1.jpg"), tp("tree/test/cherry/c3.jpg"), 200);
  ConvertImagesOpts o = opts(8, CONVERT_IMAGES_ON_ERROR_FAIL);
  EXPECT_ERR(convert_images_folder(tp("f.h5"), tp("tree"), &o), "c3.jpg");
  cr_assert_neq(access(tp("f.h5"), F_OK), 0, "a failed conversion left its output file");
  o.on_error = CONVERT_IMAGES_ON_ERROR_SKIP;
  cr_assert_eq(convert_images_folder(tp("f.h5"), tp("tree"), &o), 0, "%s", err_msg());
  DatasetInfo in;
  cr_assert_eq(dataset_info(tp("f.h5"), "test", &in), 0);
  cr_assert_eq(in.n, 3);
  hid_t f, g;
  int64_t sk;
  cr_assert_eq(h5io_open(tp("f.h5"), &f), 0);
  g = H5Gopen2(f, "test", H5P_DEFAULT);
  cr_assert_eq(h5io_attr_i64(g, "n_skipped", &sk), 0);
  cr_assert_eq(sk, 1);
  H5Gclose(g);
  H5Fclose(f);
}

Test(datasets_extra, folder_structural_errors) {
  make_tree();
  ConvertImagesOpts o = opts(8, CONVERT_IMAGES_ON_ERROR_SKIP);
  mkdirs(tp("tree/train/durian"));
  EXPECT_ERR(convert_images_folder(tp("f.h5"), tp("tree"), &o), "empty class folder");
  cr_assert(strstr(err_msg(), "durian"), "%s", err_msg());
  EXPECT_ERR(convert_images_folder(tp("f.h5"), tp("nowhere"), &o), "no such directory");
  mkdirs(tp("only/train/a"));
  png_flat(tp("only/train/a/x.png"), 4, 4, 0, 0, 0);
  EXPECT_ERR(convert_images_folder(tp("f.h5"), tp("only"), &o), "only/test");
  cr_assert_neq(access(tp("f.h5"), F_OK), 0);
}

/* ---- CUB, Cars, SOP layouts ------------------------------------------------------------ */

Test(datasets_extra, cub_layout_splits_classes_100_100) {
  mkdirs(tp("CUB/images/001.Black_footed_Albatross"));
  mkdirs(tp("CUB/images/002.Laysan_Albatross"));
  mkdirs(tp("CUB/images/101.White_Pelican"));
  mkdirs(tp("CUB/images/200.Common_Yellowthroat"));
  jpeg_flat(tp("CUB/images/001.Black_footed_Albatross/a.jpg"), 30, 20, 10, 10, 10);
  jpeg_flat(tp("CUB/images/002.Laysan_Albatross/b.jpg"), 30, 20, 20, 20, 20);
  png_flat(tp("CUB/images/101.White_Pelican/c.png"), 30, 20, 30, 30, 30);
  jpeg_flat(tp("CUB/images/101.White_Pelican/d.jpg"), 20, 30, 40, 40, 40);
  jpeg_flat(tp("CUB/images/200.Common_Yellowthroat/e.jpg"), 20, 20, 50, 50, 50);
  write_text(tp("CUB/images.txt"),
             "1 001.Black_footed_Albatross/a.jpg\n2 002.Laysan_Albatross/b.jpg\n3 101.White_Pelican/c.png\n"
             "4 101.White_Pelican/d.jpg\n5 200.Common_Yellowthroat/e.jpg\n");
  write_text(tp("CUB/image_class_labels.txt"), "1 1\n2 2\n3 101\n4 101\n5 200\n");
  write_text(tp("CUB/classes.txt"), "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n101 101.White_Pelican\n");
  ConvertImagesOpts o = opts(6, CONVERT_IMAGES_ON_ERROR_FAIL);
  cr_assert_eq(convert_images_cub(tp("cub.h5"), tp("CUB"), &o), 0, "%s", err_msg());
  DatasetSplit tr, te;
  cr_assert_eq(dataset_split_read(&tr, tp("cub.h5"), "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&te, tp("cub.h5"), "test", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(tr.info.n_classes, 200);
  int32_t wtr[2] = {0, 1}, wte[3] = {100, 100, 199};
  cr_assert_eq(tr.nrows, 2);
  cr_assert_eq(te.nrows, 3);
  cr_assert_arr_eq(tr.labels, wtr, sizeof wtr);
  cr_assert_arr_eq(te.labels, wte, sizeof wte);
  cr_assert_str_eq(tr.class_names[0], "Black_footed_Albatross");
  cr_assert_str_eq(tr.class_names[100], "White_Pelican");
  cr_assert_str_eq(tr.class_names[199], "Common_Yellowthroat");   /* not in classes.txt: from the folder */
  cr_assert_str_eq(tr.class_names[50], "class_50");
  dataset_split_free(&tr);
  dataset_split_free(&te);
  /* an image without a class, and a class out of range */
  write_text(tp("CUB/image_class_labels.txt"), "1 1\n2 2\n3 101\n4 101\n");
  EXPECT_ERR(convert_images_cub(tp("cub2.h5"), tp("CUB"), &o), "has no class");
  write_text(tp("CUB/image_class_labels.txt"), "1 1\n2 2\n3 101\n4 101\n5 201\n");
  EXPECT_ERR(convert_images_cub(tp("cub2.h5"), tp("CUB"), &o), "expected 1-200");
}

Test(datasets_extra, cars_csv_and_sop_lists) {
  mkdirs(tp("cars/car_ims"));
  for (int i = 1; i <= 4; i++) jpeg_flat(tp("cars/car_ims/%06d.jpg", i), 24, 16, (uint8_t)(40 * i), 0, 0);
  write_text(tp("cars/cars_annos.csv"),
             "relative_im_path,class,class_name\ncar_ims/000001.jpg,1,\"AM General Hummer SUV 2000\"\n"
             "car_ims/000002.jpg,98,\"Ford, F-150\"\ncar_ims/000003.jpg,99,X\ncar_ims/000004.jpg,196,Y\n");
  ConvertImagesOpts o = opts(8, CONVERT_IMAGES_ON_ERROR_FAIL);
  cr_assert_eq(convert_images_cars(tp("cars.h5"), tp("cars"), NULL, &o), 0, "%s", err_msg());
  DatasetSplit tr, te;
  cr_assert_eq(dataset_split_read(&tr, tp("cars.h5"), "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&te, tp("cars.h5"), "test", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(tr.info.n_classes, 196);
  cr_assert(tr.nrows == 2 && tr.labels[0] == 0 && tr.labels[1] == 97);
  cr_assert(te.nrows == 2 && te.labels[0] == 98 && te.labels[1] == 195);
  cr_assert_str_eq(tr.class_names[97], "Ford, F-150");
  dataset_split_free(&tr);
  dataset_split_free(&te);
  /* headerless whitespace TXT works too; a bad class fails */
  write_text(tp("cars/annos.txt"), "car_ims/000001.jpg 1\ncar_ims/000004.jpg 150\n");
  cr_assert_eq(convert_images_cars(tp("cars2.h5"), tp("cars"), tp("cars/annos.txt"), &o), 0, "%s", err_msg());
  write_text(tp("cars/bad.txt"), "car_ims/000001.jpg 1\ncar_ims/000004.jpg 197\n");
  EXPECT_ERR(convert_images_cars(tp("cars3.h5"), tp("cars"), tp("cars/bad.txt"), &o), "bad.txt:2");

  mkdirs(tp("sop/bicycle_final"));
  mkdirs(tp("sop/chair_final"));
  png_flat(tp("sop/bicycle_final/111_0.JPG"), 10, 10, 1, 1, 1);
  jpeg_flat(tp("sop/bicycle_final/111_1.JPG"), 10, 10, 2, 2, 2);
  jpeg_flat(tp("sop/chair_final/222_0.JPG"), 10, 10, 3, 3, 3);
  write_text(tp("sop/Ebay_train.txt"),
             "image_id class_id super_class_id path\n1 1 1 bicycle_final/111_0.JPG\n2 1 1 bicycle_final/111_1.JPG\n");
  write_text(tp("sop/Ebay_test.txt"), "image_id class_id super_class_id path\n3 3 2 chair_final/222_0.JPG\n");
  cr_assert_eq(convert_images_sop(tp("sop.h5"), tp("sop"), &o), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&te, tp("sop.h5"), "test", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(te.info.n_classes, 3);
  cr_assert_eq(te.labels[0], 2);
  cr_assert_str_eq(te.class_names[0], "bicycle_final/111");
  cr_assert_str_eq(te.class_names[2], "chair_final/222");
  dataset_split_free(&te);
}

/* ---- features --------------------------------------------------------------------------- */

/* a .npy file: descr like "<f4", shape text like "(3, 2)" */
static void write_npy(const char *path, const char *descr, const char *shape, int fortran, const void *data,
                      size_t bytes) {
  char hdr[256];
  int n = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
                   fortran ? "True" : "False", shape);
  int total = 10 + n + 1;
  int pad = (64 - total % 64) % 64;
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)((n + pad + 1) & 0xFF),
                           (unsigned char)((n + pad + 1) >> 8)};
  fwrite(pre, 1, 10, f);
  fwrite(hdr, 1, (size_t)n, f);
  for (int i = 0; i < pad; i++) fputc(' ', f);
  fputc('\n', f);
  fwrite(data, 1, bytes, f);
  fclose(f);
}

Test(datasets_extra, npy_header_parsing) {
  float x[6] = {1, 2, 3, 4, 5, 6};
  write_npy(tp("a.npy"), "<f4", "(3, 2)", 0, x, sizeof x);
  ConvertFeaturesNpy h;
  cr_assert_eq(convert_features_npy_header(tp("a.npy"), &h), 0, "%s", err_msg());
  cr_assert(h.type == 'f' && h.itemsize == 4 && h.ndim == 2 && h.dims[0] == 3 && h.dims[1] == 2 && h.offset % 64 == 0);
  write_npy(tp("b.npy"), ">f4", "(3, 2)", 0, x, sizeof x);
  EXPECT_ERR(convert_features_npy_header(tp("b.npy"), &h), "big-endian");
  write_npy(tp("c.npy"), "<f4", "(3, 2)", 1, x, sizeof x);
  EXPECT_ERR(convert_features_npy_header(tp("c.npy"), &h), "Fortran");
  write_npy(tp("d.npy"), "<f4", "(4, 2)", 0, x, sizeof x);
  EXPECT_ERR(convert_features_npy_header(tp("d.npy"), &h), "truncated");
  write_npy(tp("e.npy"), "<c8", "(3,)", 0, x, 24);
  EXPECT_ERR(convert_features_npy_header(tp("e.npy"), &h), "not supported");
  write_text(tp("f.npy"), "no magic here");
  EXPECT_ERR(convert_features_npy_header(tp("f.npy"), &h), "bad magic");
  int64_t y[3] = {0, 1, 2};
  write_npy(tp("y.npy"), "<i8", "(3,)", 0, y, sizeof y);
  cr_assert_eq(convert_features_npy_header(tp("y.npy"), &h), 0, "%s", err_msg());
  cr_assert(h.type == 'i' && h.itemsize == 8 && h.ndim == 1 && h.dims[0] == 3);
}

Test(datasets_extra, features_npy_and_h5_convert) {
  double xtr[4 * 3];
  for (int i = 0; i < 12; i++) xtr[i] = 0.5 * i - 1.0;
  float xte[2 * 3] = {9, 8, 7, 6, 5, 4};
  int64_t ytr[4] = {0, 1, 1, 0};
  uint8_t yte[2] = {2, 3};
  write_npy(tp("xtr.npy"), "<f8", "(4, 3)", 0, xtr, sizeof xtr);
  write_npy(tp("ytr.npy"), "<i8", "(4,)", 0, ytr, sizeof ytr);
  write_npy(tp("xte.npy"), "<f4", "(2, 3)", 0, xte, sizeof xte);
  write_npy(tp("yte.npy"), "|u1", "(2,)", 0, yte, sizeof yte);
  ConvertFeaturesSources s = {tp("xtr.npy"), tp("ytr.npy"), tp("xte.npy"), tp("yte.npy"), NULL};
  cr_assert_eq(convert_features_write(tp("f.h5"), &s), 0, "%s", err_msg());
  DatasetSplit tr, te;
  cr_assert_eq(dataset_split_read(&tr, tp("f.h5"), "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&te, tp("f.h5"), "test", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert(tr.info.kind == DATASET_FEATURES && tr.info.F == 3 && tr.info.n_classes == 4);
  for (int i = 0; i < 12; i++) cr_assert_float_eq(tr.features[i], (float)xtr[i], 0.0);
  cr_assert_arr_eq(te.features, xte, sizeof xte);
  cr_assert(te.labels[0] == 2 && te.labels[1] == 3 && tr.labels[2] == 1);
  cr_assert_str_eq(tr.class_names[3], "3");
  dataset_split_free(&tr);
  dataset_split_free(&te);

  /* the same from an HDF5 file, train/x etc. */
  hid_t f;
  cr_assert_eq(h5io_create(tp("in.h5"), &f), 0);
  int64_t d2[2] = {4, 3}, d1[1] = {4}, e2[2] = {2, 3}, e1[1] = {2};
  int32_t yte32[2] = {2, 3};
  cr_assert_eq(h5io_write(f, "train/x", H5T_NATIVE_DOUBLE, 2, d2, xtr), 0);
  cr_assert_eq(h5io_write(f, "train/y", H5T_NATIVE_INT64, 1, d1, ytr), 0);
  cr_assert_eq(h5io_write(f, "test/x", H5T_NATIVE_FLOAT, 2, e2, xte), 0);
  cr_assert_eq(h5io_write(f, "test/y", H5T_NATIVE_INT32, 1, e1, yte32), 0);
  cr_assert_eq(h5io_write(f, "test/bad_y", H5T_NATIVE_INT32, 1, d1, ytr), 0);
  H5Fclose(f);
  char a[4][1200];
  snprintf(a[0], sizeof a[0], "%s:/train/x", tp("in.h5"));
  snprintf(a[1], sizeof a[1], "%s:/train/y", tp("in.h5"));
  snprintf(a[2], sizeof a[2], "%s:/test/x", tp("in.h5"));
  snprintf(a[3], sizeof a[3], "%s:/test/y", tp("in.h5"));
  ConvertFeaturesSources h = {a[0], a[1], a[2], a[3], NULL};
  cr_assert_eq(convert_features_write(tp("g.h5"), &h), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&te, tp("g.h5"), "test", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_arr_eq(te.features, xte, sizeof xte);
  dataset_split_free(&te);
  snprintf(a[3], sizeof a[3], "%s:/test/bad_y", tp("in.h5"));
  EXPECT_ERR(convert_features_write(tp("g2.h5"), &h), "2 test feature rows but");
}

Test(datasets_extra, features_bad_input) {
  float x[6] = {1, 2, 3, 4, 5, 6};
  int32_t y3[3] = {0, 1, 2}, y2[2] = {0, 1}, yneg[3] = {0, -1, 2};
  write_npy(tp("x.npy"), "<f4", "(3, 2)", 0, x, sizeof x);
  write_npy(tp("y3.npy"), "<i4", "(3,)", 0, y3, sizeof y3);
  write_npy(tp("y2.npy"), "<i4", "(2,)", 0, y2, sizeof y2);
  write_npy(tp("y31.npy"), "<i4", "(3, 1)", 0, y3, sizeof y3);
  write_npy(tp("yneg.npy"), "<i4", "(3,)", 0, yneg, sizeof yneg);
  write_npy(tp("x1.npy"), "<f4", "(6,)", 0, x, sizeof x);
  write_npy(tp("xw.npy"), "<f4", "(2, 3)", 0, x, sizeof x);
  float xn[6] = {1, 2, 3, NAN, 5, 6};
  write_npy(tp("xnan.npy"), "<f4", "(3, 2)", 0, xn, sizeof xn);
  char X[1024], Y[1024];   /* copies: tp's buffers rotate */
  snprintf(X, sizeof X, "%s", tp("x.npy"));
  snprintf(Y, sizeof Y, "%s", tp("y3.npy"));
  ConvertFeaturesSources s = {X, tp("y2.npy"), X, Y, NULL};
  EXPECT_ERR(convert_features_write(tp("o.h5"), &s), "3 train feature rows but");
  s = (ConvertFeaturesSources){X, Y, tp("xnan.npy"), Y, NULL};
  EXPECT_ERR(convert_features_write(tp("o.h5"), &s), "row 1, column 1 is NaN");
  s = (ConvertFeaturesSources){tp("x1.npy"), Y, X, Y, NULL};
  EXPECT_ERR(convert_features_write(tp("o.h5"), &s), "must be 2-d");
  s = (ConvertFeaturesSources){X, tp("y31.npy"), X, Y, NULL};
  EXPECT_ERR(convert_features_write(tp("o.h5"), &s), "flatten");
  s = (ConvertFeaturesSources){X, Y, tp("xw.npy"), tp("y2.npy"), NULL};
  EXPECT_ERR(convert_features_write(tp("o.h5"), &s), "F = 2");
  s = (ConvertFeaturesSources){X, tp("yneg.npy"), X, Y, NULL};
  EXPECT_ERR(convert_features_write(tp("o.h5"), &s), "label -1");
  s = (ConvertFeaturesSources){X, Y, X, tp("missing.npy"), NULL};
  EXPECT_ERR(convert_features_write(tp("o.h5"), &s), "missing.npy");
  s = (ConvertFeaturesSources){X, Y, X, "labels.csv", NULL};
  EXPECT_ERR(convert_features_write(tp("o.h5"), &s), "expected X.npy or FILE.h5:DATASET");
  cr_assert_neq(access(tp("o.h5"), F_OK), 0);
}

/* ---- glyphs ----------------------------------------------------------------------------- */

static const char *const TWO_FONTS[2] = {"ipag.ttf", "ukai.ttc#0"};

static int fonts_present(void) {
  Glyphs g;
  if (glyphs_init(&g, TWO_FONTS, 2, GLYPHS_FONT_DIR, 32, 0) != 0) return 0;
  glyphs_free(&g);
  return 1;
}

Test(datasets_extra, glyph_renderer_two_fonts) {
  if (!fonts_present()) cr_skip_test("fonts-ipafont-gothic / fonts-arphic-ukai not installed");
  Glyphs g;
  cr_assert_eq(glyphs_init(&g, TWO_FONTS, 2, GLYPHS_FONT_DIR, 32, 0), 0, "%s", err_msg());
  cr_assert_eq(g.nfaces, 2);
  cr_assert_str_eq(g.faces[0].family, "IPAGothic");
  uint32_t *cps;
  int n;
  cr_assert_eq(glyphs_common(&g, 0x4E00, 0x4E2F, &cps, &n), 0);
  cr_assert(n >= 10 && cps[0] == 0x4E00, "%d common", n);   /* 一 is in every CJK font */
  const uint32_t chars[4] = {0x4E00, 0x4E8C, 0x6C34, 0x99AC};   /* 一 二 水 馬 */
  GlyphsAug id = {0, 1, 0, 0, 0};
  uint8_t a[32 * 32], b[32 * 32];
  for (int f = 0; f < 2; f++)
    for (int c = 0; c < 4; c++) {
      cr_assert(glyphs_drawable(&g, chars[c]));
      cr_assert_eq(glyphs_render(&g, f, chars[c], &id, a), 0, "%s", err_msg());
      /* ink inside, centred: the ink's centre of mass within 2 px of the middle */
      double m = 0, mx = 0, my = 0;
      for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++) {
          m += a[y * 32 + x];
          mx += a[y * 32 + x] * (x + 0.5);
          my += a[y * 32 + x] * (y + 0.5);
        }
      cr_assert(m > 255 * 10, "face %d U+%04X: almost no ink", f, chars[c]);
      if (chars[c] != 0x4E8C) cr_assert(fabs(mx / m - 16) < 3 && fabs(my / m - 16) < 3, "%g %g", mx / m, my / m);
      for (int x = 0; x < 32; x++) cr_assert(a[x] == 0 && a[31 * 32 + x] == 0, "ink on the border");
    }
  /* 一 is a horizontal stroke: wide, not tall */
  glyphs_render(&g, 0, 0x4E00, &id, a);
  int rows = 0, cols = 0;
  for (int y = 0; y < 32; y++) {
    int any = 0;
    for (int x = 0; x < 32; x++) any |= a[y * 32 + x] > 128;
    rows += any;
  }
  for (int x = 0; x < 32; x++) {
    int any = 0;
    for (int y = 0; y < 32; y++) any |= a[y * 32 + x] > 128;
    cols += any;
  }
  cr_assert(cols > 3 * rows, "一 spans %d columns and %d rows", cols, rows);
  /* augmentations: seeded, deterministic, and they change the image */
  GlyphsAug x, y;
  Rng r1, r2;
  rng_init(&r1, glyphs_seed(5, 0x6C34, 1, 2));
  rng_init(&r2, glyphs_seed(5, 0x6C34, 1, 2));
  glyphs_aug_draw(&x, &r1);
  glyphs_aug_draw(&y, &r2);
  cr_assert(fabsf(x.angle) <= GLYPHS_AUG_ANGLE && x.scale >= GLYPHS_AUG_SCALE_LO && x.scale <= GLYPHS_AUG_SCALE_HI);
  glyphs_render(&g, 1, 0x6C34, &x, a);
  glyphs_render(&g, 1, 0x6C34, &y, b);
  cr_assert_arr_eq(a, b, sizeof a);
  glyphs_render(&g, 1, 0x6C34, &id, b);
  cr_assert(memcmp(a, b, sizeof a) != 0);
  /* a thicker stroke has more ink */
  GlyphsAug thick = {0, 1, 0, 0, GLYPHS_AUG_STROKE}, thin = {0, 1, 0, 0, -GLYPHS_AUG_STROKE};
  double ink[2] = {0, 0};
  glyphs_render(&g, 0, 0x99AC, &thick, a);
  glyphs_render(&g, 0, 0x99AC, &thin, b);
  for (int i = 0; i < 32 * 32; i++) ink[0] += a[i], ink[1] += b[i];
  cr_assert(ink[0] > 1.2 * ink[1], "thick %g, thin %g", ink[0], ink[1]);
  char u[8];
  cr_assert_eq(glyphs_utf8(0x6C34, u), 3);
  cr_assert_str_eq(u, "\xE6\xB0\xB4");
  free(cps);
  glyphs_free(&g);
}

Test(datasets_extra, glyphs_converter_small_and_deterministic) {
  if (!fonts_present()) cr_skip_test("fonts-ipafont-gothic / fonts-arphic-ukai not installed");
  ConvertGlyphsOpts o = {3, 2, 16, 2, 7, "ipag.ttf,ukai.ttc#0", NULL, 0};
  cr_assert_eq(convert_glyphs_write(tp("g1.h5"), &o), 0, "%s", err_msg());
  cr_assert_eq(convert_glyphs_write(tp("g2.h5"), &o), 0, "%s", err_msg());
  DatasetSplit a, b;
  cr_assert_eq(dataset_split_read(&a, tp("g1.h5"), "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&b, tp("g2.h5"), "train", 0, DATASET_ALL_ROWS), 0, "%s", err_msg());
  cr_assert(a.info.n_classes == 5 && a.nrows == 3 * 2 * 2 && a.info.H == 16 && a.info.channels == 1);
  cr_assert_arr_eq(a.images, b.images, (size_t)a.nrows * 16 * 16);
  int32_t want[12] = {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2};   /* class x face x augmentation */
  cr_assert_arr_eq(a.labels, want, sizeof want);
  for (int c = 0; c < 5; c++) {   /* one ideograph each, UTF-8, in the block */
    const unsigned char *s = (const unsigned char *)a.class_names[c];
    cr_assert(strlen((const char *)s) == 3 && s[0] >= 0xE4 && s[0] <= 0xE9, "name %d: '%s'", c, s);
  }
  dataset_split_free(&b);
  cr_assert_eq(dataset_split_read(&b, tp("g1.h5"), "test", 0, DATASET_ALL_ROWS), 0);
  cr_assert(b.nrows == 2 * 2 * 2 && b.info.label_min == 3 && b.info.label_max == 4);
  dataset_split_free(&a);
  dataset_split_free(&b);
  hid_t f;
  char fonts[4096], ver[64];
  cr_assert_eq(h5io_open(tp("g1.h5"), &f), 0);
  cr_assert_eq(h5io_attr_str(f, "fonts", fonts, sizeof fonts), 0);
  cr_assert_eq(h5io_attr_str(f, "freetype_version", ver, sizeof ver), 0);
  H5Fclose(f);
  cr_assert(strstr(fonts, "ipag.ttf#0\tIPAGothic") && strstr(fonts, "ukai.ttc#0\tAR PL UKai"), "%s", fonts);
  cr_assert(ver[0] >= '2', "%s", ver);
  /* another seed, other characters */
  o.seed = 8;
  cr_assert_eq(convert_glyphs_write(tp("g3.h5"), &o), 0, "%s", err_msg());
  cr_assert_eq(dataset_split_read(&a, tp("g3.h5"), "train", 0, DATASET_ALL_ROWS), 0);
  cr_assert_eq(dataset_split_read(&b, tp("g2.h5"), "train", 0, DATASET_ALL_ROWS), 0);
  cr_assert(strcmp(a.class_names[0], b.class_names[0]) || strcmp(a.class_names[1], b.class_names[1]));
  dataset_split_free(&a);
  dataset_split_free(&b);
}

Test(datasets_extra, glyphs_bad_fonts) {
  ConvertGlyphsOpts o = {3, 2, 16, 1, 0, "ipag.ttf,no-such-font.ttf", NULL, 0};
  EXPECT_ERR(convert_glyphs_write(tp("g.h5"), &o), "no-such-font.ttf");
  cr_assert(strstr(err_msg(), "no file of that name"), "%s", err_msg());
  o.fonts = "/nonexistent/dir/x.ttc";
  EXPECT_ERR(convert_glyphs_write(tp("g.h5"), &o), "/nonexistent/dir/x.ttc");
  write_text(tp("fake.ttf"), "not a font");
  char spec[1200];
  snprintf(spec, sizeof spec, "%s", tp("fake.ttf"));
  o.fonts = spec;
  EXPECT_ERR(convert_glyphs_write(tp("g.h5"), &o), "not a font file");
  if (fonts_present()) {
    o.fonts = "ukai.ttc#9";
    EXPECT_ERR(convert_glyphs_write(tp("g.h5"), &o), "has 4 faces");
    o.fonts = "ipag.ttf";
    o.train_classes = 20000;
    EXPECT_ERR(convert_glyphs_write(tp("g.h5"), &o), "covered by all 1 font faces");
  }
  cr_assert_neq(access(tp("g.h5"), F_OK), 0);
}
