/* imageio.h: decoding JPEG (libjpeg) and PNG (libpng) files to 8-bit RGB,
 * and the one resampling every image converter uses: scale the shorter side
 * to S, then crop the centre S x S. Writing PNG is here for tests and
 * previews. No other formats (GIF, BMP, WebP, TIFF are reported as such).
 *
 *   uint8_t px[S * S * 3];                       // S x S x 3, HWC
 *   char why[IMAGEIO_ERR_MAX];
 *   if (imageio_read_square(px, path, S, why) != 0) fprintf(stderr, "skipped %s\n", why);
 *
 * Errors: unlike the rest of the project the decoders write their one-line
 * message ("a/b.jpg: truncated JPEG data") into a caller buffer, not
 * err_msg(), so that converters can decode in an OpenMP loop. A truncated
 * JPEG (premature end of data) is an error, not a grey-filled image; other
 * libjpeg warnings (extraneous bytes, ...) are tolerated as other decoders do.
 *
 * Colour: grayscale is expanded to 3 equal channels; PNG alpha is composited
 * onto white; 16-bit PNG is reduced to 8 bits; CMYK/YCCK JPEG (Adobe,
 * inverted) is converted naively to RGB. No colour management (ICC profiles
 * are ignored).
 *
 * Resampling: per axis, output pixel o covers the source interval
 * [(o + off) / scale, (o + 1 + off) / scale) with scale = S / min(w, h) and
 * off the centring offset. Shrinking averages that interval (area), enlarging
 * interpolates linearly at its centre; separable, in float, rounded to
 * nearest. JPEGs much larger than S are first decoded at 1/2, 1/4 or 1/8
 * scale by libjpeg (its DCT scaling), never below S on the shorter side.
 */
#ifndef PROXYGML_IMAGEIO_H
#define PROXYGML_IMAGEIO_H

#include <stdint.h>

#define IMAGEIO_ERR_MAX 512
#define IMAGEIO_MAX_PIXELS (1 << 28)   /* larger images are refused (memory) */

typedef enum { IMAGEIO_UNKNOWN = 0, IMAGEIO_JPEG = 1, IMAGEIO_PNG = 2 } ImageioFormat;

typedef struct {
  int w, h;
  uint8_t *rgb;     /* h x w x 3 */
} ImageioImage;

/* format from the first bytes of a file (n of them), not the extension */
ImageioFormat imageio_sniff(const uint8_t *head, int n);

/* Decodes path into im (owned; imageio_free). min_side > 0 lets a JPEG be
 * decoded at a reduced scale whose shorter side is still >= min_side. On
 * failure im is zeroed and why holds the message. */
int imageio_read(ImageioImage *im, const char *path, int min_side, char why[IMAGEIO_ERR_MAX]);
void imageio_free(ImageioImage *im);

/* shorter side to S, centre crop: out S x S x 3 */
void imageio_resize_crop(uint8_t *out, const ImageioImage *im, int S);

/* imageio_read + imageio_resize_crop */
int imageio_read_square(uint8_t *out /* S x S x 3 */, const char *path, int S, char why[IMAGEIO_ERR_MAX]);

/* 8-bit gray (channels 1) or RGB (3) PNG; err_msg() on failure */
int imageio_write_png(const char *path, const uint8_t *px /* h x w x channels */, int w, int h, int channels);

#endif
