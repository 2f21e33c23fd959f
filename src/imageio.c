/* imageio.c: JPEG/PNG decoding to RGB8, shorter-side resize + centre crop,
 * PNG writing (see include/imageio.h). Files are read whole into memory
 * first: the format is sniffed from the bytes and both decoders then work
 * from memory, which keeps the libjpeg longjmp path free of open FILEs. */
#include "imageio.h"

#include "common.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jpeglib.h>
#include <jerror.h>   /* JWRN_JPEG_EOF */
#include <png.h>

#define FILE_MAX_BYTES ((size_t)1 << 30)   /* no image file of a dataset is near 1 GiB */

ImageioFormat imageio_sniff(const uint8_t *b, int n) {
  if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return IMAGEIO_JPEG;
  if (n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) return IMAGEIO_PNG;
  return IMAGEIO_UNKNOWN;
}

/* name of a format we do not decode, for the message */
static const char *other_format(const uint8_t *b, size_t n) {
  if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "GIF";
  if (n >= 2 && b[0] == 'B' && b[1] == 'M') return "BMP";
  if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return "WebP";
  if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "TIFF";
  return NULL;
}

static int read_file(const char *path, uint8_t **buf, size_t *len, char *why) {
  *buf = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(why, IMAGEIO_ERR_MAX, "%s: cannot open (%s)", path, strerror(errno));
    return -1;
  }
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    snprintf(why, IMAGEIO_ERR_MAX, "%s: not a regular file", path);
    return -1;
  }
  if ((size_t)sb.st_size > FILE_MAX_BYTES) {
    fclose(f);
    snprintf(why, IMAGEIO_ERR_MAX, "%s: %lld bytes, larger than any image we accept", path, (long long)sb.st_size);
    return -1;
  }
  size_t n = (size_t)sb.st_size;
  *buf = xmalloc(n ? n : 1);
  size_t got = fread(*buf, 1, n, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || got != n) {
    free(*buf);
    *buf = NULL;
    snprintf(why, IMAGEIO_ERR_MAX, "%s: read error (%s)", path, bad ? strerror(errno) : "short read");
    return -1;
  }
  *len = n;
  return 0;
}

/* ---- JPEG ------------------------------------------------------------------- */

typedef struct {
  struct jpeg_error_mgr pub;
  jmp_buf jb;
  int truncated;             /* libjpeg saw the data end early and padded it */
  char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_fail(j_common_ptr c) {
  JpegErr *e = (JpegErr *)c->err;
  (*c->err->format_message)(c, e->msg);
  longjmp(e->jb, 1);
}

/* warnings are not printed; a premature end of data is remembered */
static void jpeg_note(j_common_ptr c, int level) {
  JpegErr *e = (JpegErr *)c->err;
  if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
}

static int decode_jpeg(ImageioImage *im, const char *path, const uint8_t *buf, size_t len, int min_side, char *why) {
  struct jpeg_decompress_struct d;
  JpegErr e;
  uint8_t *volatile row = NULL;   /* volatile: freed after a longjmp */
  memset(&e, 0, sizeof e);
  d.err = jpeg_std_error(&e.pub);
  e.pub.error_exit = jpeg_fail;
  e.pub.emit_message = jpeg_note;
  if (setjmp(e.jb)) {
    jpeg_destroy_decompress(&d);
    free(row);
    imageio_free(im);
    snprintf(why, IMAGEIO_ERR_MAX, "%s: corrupt JPEG (%s)", path, e.msg);
    return -1;
  }
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, buf, (unsigned long)len);
  jpeg_read_header(&d, TRUE);
  int cmyk = d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK;
  d.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;   /* libjpeg converts gray and YCbCr to RGB itself */
  if ((uint64_t)d.image_width * d.image_height > IMAGEIO_MAX_PIXELS) {
    snprintf(why, IMAGEIO_ERR_MAX, "%s: %u x %u pixels is larger than %d", path, d.image_width, d.image_height,
             IMAGEIO_MAX_PIXELS);
    jpeg_destroy_decompress(&d);
    return -1;
  }
  /* DCT scaling: decoding at 1/k is much faster and is itself an area filter */
  unsigned short_side = d.image_width < d.image_height ? d.image_width : d.image_height;
  d.scale_num = 1;
  d.scale_denom = 1;
  for (unsigned k = 8; min_side > 0 && k > 1; k /= 2)
    if (short_side / k >= (unsigned)min_side) {
      d.scale_denom = k;
      break;
    }
  jpeg_start_decompress(&d);
  int w = (int)d.output_width, h = (int)d.output_height, nc = d.output_components;
  im->w = w;
  im->h = h;
  im->rgb = xmalloc((size_t)w * h * 3);
  row = xmalloc((size_t)w * nc);
  while (d.output_scanline < d.output_height) {
    int y = (int)d.output_scanline;
    JSAMPROW rp = (JSAMPROW)row;
    jpeg_read_scanlines(&d, &rp, 1);
    uint8_t *o = im->rgb + (size_t)y * w * 3;
    if (nc == 3) memcpy(o, row, (size_t)w * 3);
    else if (nc == 4)
      for (int x = 0; x < w; x++) {
        /* Adobe writes CMYK inverted: the stored value is 255 - ink, so R = C' * K' / 255 */
        unsigned k = row[4 * x + 3];
        for (int c = 0; c < 3; c++) o[3 * x + c] = (uint8_t)((row[4 * x + c] * k + 127) / 255);
      }
    else
      for (int x = 0; x < w; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = row[(size_t)x * nc];
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  free(row);
  if (e.truncated) {
    imageio_free(im);
    snprintf(why, IMAGEIO_ERR_MAX, "%s: truncated JPEG data (premature end of the file)", path);
    return -1;
  }
  return 0;
}

/* ---- PNG -------------------------------------------------------------------- */

static int decode_png(ImageioImage *im, const char *path, const uint8_t *buf, size_t len, char *why) {
  png_image p;
  memset(&p, 0, sizeof p);
  p.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&p, buf, len)) {
    snprintf(why, IMAGEIO_ERR_MAX, "%s: corrupt PNG (%s)", path, p.message);
    return -1;
  }
  if ((uint64_t)p.width * p.height > IMAGEIO_MAX_PIXELS) {
    snprintf(why, IMAGEIO_ERR_MAX, "%s: %u x %u pixels is larger than %d", path, p.width, p.height,
             IMAGEIO_MAX_PIXELS);
    png_image_free(&p);
    return -1;
  }
  p.format = PNG_FORMAT_RGB;
  im->w = (int)p.width;
  im->h = (int)p.height;
  im->rgb = xmalloc(PNG_IMAGE_SIZE(p));
  png_color white = {255, 255, 255};
  if (!png_image_finish_read(&p, &white, im->rgb, 0, NULL)) {
    snprintf(why, IMAGEIO_ERR_MAX, "%s: corrupt PNG (%s)", path, p.message);
    png_image_free(&p);
    imageio_free(im);
    return -1;
  }
  return 0;
}

/* ---- public ----------------------------------------------------------------- */

int imageio_read(ImageioImage *im, const char *path, int min_side, char why[IMAGEIO_ERR_MAX]) {
  memset(im, 0, sizeof *im);
  uint8_t *buf;
  size_t len;
  if (read_file(path, &buf, &len, why) != 0) return -1;
  int rc;
  switch (imageio_sniff(buf, len < 16 ? (int)len : 16)) {
  case IMAGEIO_JPEG: rc = decode_jpeg(im, path, buf, len, min_side, why); break;
  case IMAGEIO_PNG: rc = decode_png(im, path, buf, len, why); break;
  default: {
    const char *o = other_format(buf, len);
    if (len == 0) snprintf(why, IMAGEIO_ERR_MAX, "%s: empty file", path);
    else if (o) snprintf(why, IMAGEIO_ERR_MAX, "%s: a %s file (only JPEG and PNG are decoded)", path, o);
    else snprintf(why, IMAGEIO_ERR_MAX, "%s: not a JPEG or PNG file (unknown signature)", path);
    rc = -1;
  }
  }
  free(buf);
  if (rc == 0 && (im->w < 1 || im->h < 1)) {
    snprintf(why, IMAGEIO_ERR_MAX, "%s: image has no pixels", path);
    imageio_free(im);
    rc = -1;
  }
  return rc;
}

void imageio_free(ImageioImage *im) {
  free(im->rgb);
  memset(im, 0, sizeof *im);
}

/* For each of the S output pixels of one axis: first source index, tap count
 * and weights (summing to 1). src: source length; scale = S / shorter side. */
typedef struct {
  int *first, *count;   /* S each */
  float *w;             /* S x maxc */
  int maxc;
} Taps;

static void taps_init(Taps *t, int src, int S, double scale) {
  double off = ((double)src * scale - S) / 2.0;   /* centring, in output pixels */
  double span = 1.0 / scale;                      /* source pixels per output pixel */
  t->maxc = (int)ceil(span) + 2;
  t->first = xmalloc((size_t)S * sizeof *t->first);
  t->count = xmalloc((size_t)S * sizeof *t->count);
  t->w = xcalloc((size_t)S * t->maxc, sizeof *t->w);
  for (int o = 0; o < S; o++) {
    double a = (o + off) / scale, b = a + span;
    float *w = t->w + (size_t)o * t->maxc;
    if (span >= 1.0) {   /* area: overlap of [a, b) with each source pixel [i, i + 1) */
      int i0 = (int)floor(a), i1 = (int)ceil(b) - 1, c = 0;
      for (int i = i0; i <= i1 && c < t->maxc; i++, c++) {
        double lo = a > i ? a : i, hi = b < i + 1 ? b : i + 1;
        w[c] = (float)((hi - lo) / span);
      }
      t->first[o] = i0;
      t->count[o] = c;
    } else {             /* linear at the interval's centre */
      double x = (a + b) / 2.0 - 0.5;
      int i0 = (int)floor(x);
      float f = (float)(x - i0);
      t->first[o] = i0;
      t->count[o] = 2;
      w[0] = 1.0f - f;
      w[1] = f;
    }
  }
  /* clamp at the borders: taps outside [0, src) fold onto the edge pixel;
   * clamped indices stay non-decreasing, so equal neighbours merge in place */
  for (int o = 0; o < S; o++) {
    float *w = t->w + (size_t)o * t->maxc;
    int f = t->first[o], c = t->count[o], nc = 0, nf = 0;
    for (int k = 0; k < c; k++) {
      int i = f + k < 0 ? 0 : f + k > src - 1 ? src - 1 : f + k;
      if (nc > 0 && i == nf + nc - 1) w[nc - 1] += w[k];
      else {
        if (nc == 0) nf = i;
        w[nc++] = w[k];
      }
    }
    for (int k = nc; k < t->maxc; k++) w[k] = 0.0f;
    t->first[o] = nf;
    t->count[o] = nc;
  }
}

static void taps_free(Taps *t) {
  free(t->first);
  free(t->count);
  free(t->w);
}

void imageio_resize_crop(uint8_t *out, const ImageioImage *im, int S) {
  int w = im->w, h = im->h;
  double scale = (double)S / (w < h ? w : h);
  Taps tx, ty;
  taps_init(&tx, w, S, scale);
  taps_init(&ty, h, S, scale);
  int y0 = ty.first[0], y1 = ty.first[S - 1] + ty.count[S - 1];   /* source rows used */
  float *tmp = xmalloc_f32((size_t)(y1 - y0) * S * 3);           /* (y1 - y0) x S x 3: rows resampled in x */
  for (int y = y0; y < y1; y++) {
    const uint8_t *src = im->rgb + (size_t)y * w * 3;
    float *t = tmp + (size_t)(y - y0) * S * 3;
    for (int o = 0; o < S; o++) {
      const float *wt = tx.w + (size_t)o * tx.maxc;
      float acc[3] = {0, 0, 0};
      for (int k = 0; k < tx.count[o]; k++) {
        const uint8_t *p = src + (size_t)(tx.first[o] + k) * 3;
        acc[0] += wt[k] * p[0];
        acc[1] += wt[k] * p[1];
        acc[2] += wt[k] * p[2];
      }
      t[3 * o] = acc[0];
      t[3 * o + 1] = acc[1];
      t[3 * o + 2] = acc[2];
    }
  }
  for (int o = 0; o < S; o++) {
    const float *wt = ty.w + (size_t)o * ty.maxc;
    uint8_t *dst = out + (size_t)o * S * 3;
    for (int x = 0; x < S * 3; x++) {
      float acc = 0.0f;
      for (int k = 0; k < ty.count[o]; k++) acc += wt[k] * tmp[(size_t)(ty.first[o] + k - y0) * S * 3 + x];
      long v = lrintf(acc);
      dst[x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
  free(tmp);
  taps_free(&tx);
  taps_free(&ty);
}

int imageio_read_square(uint8_t *out, const char *path, int S, char why[IMAGEIO_ERR_MAX]) {
  ImageioImage im;
  if (imageio_read(&im, path, S, why) != 0) return -1;
  imageio_resize_crop(out, &im, S);
  imageio_free(&im);
  return 0;
}

int imageio_write_png(const char *path, const uint8_t *px, int w, int h, int channels) {
  if (channels != 1 && channels != 3) return err_set("%s: PNG writer takes 1 or 3 channels, got %d", path, channels);
  png_image p;
  memset(&p, 0, sizeof p);
  p.version = PNG_IMAGE_VERSION;
  p.width = (png_uint_32)w;
  p.height = (png_uint_32)h;
  p.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  if (!png_image_write_to_file(&p, path, 0, px, 0, NULL))
    return err_set("%s: cannot write PNG (%s)", path, p.message);
  return 0;
}
