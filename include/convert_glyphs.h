/* convert_glyphs.h: the synthetic CJK glyphs benchmark: CJK Unified
 * Ideographs covered by every given font face, rendered with FreeType
 * (glyphs.h) as grayscale S x S samples, each face x `augment` seeded
 * augmentations; the first train_classes characters of a seeded shuffle go
 * to /train, the next test_classes to /test. With train_classes =
 * CONVERT_GLYPHS_ALL the characters are those of every CJK Unified
 * Ideographs block (extension A, the URO, extensions B to I) that every face
 * covers, and /train gets all of them but the test_classes ones: tens of
 * thousands of classes with fonts that cover the extensions (Noto CJK).
 * Part of the conversion library
 * (convert.h); `proxygml data glyphs` is its command line, docs/datasets.md
 * the benchmark's description.
 *
 *   ConvertGlyphsOpts o = {.train_classes = 1000, .test_classes = 1000, .size = 32, .augment = 3};
 *   if (convert_glyphs_write("glyphs.h5", &o) != 0) fprintf(stderr, "%s\n", err_msg());
 *
 * The same options, fonts and FreeType version give the same samples. Returns
 * 0 or -1 with one line in err_msg(); no output file is left behind on
 * failure. */
#ifndef PROXYGML_CONVERT_GLYPHS_H
#define PROXYGML_CONVERT_GLYPHS_H

#include <stdint.h>

#define CONVERT_GLYPHS_ALL (-1)   /* train_classes: every covered character the test split leaves */

typedef struct {
  int train_classes, test_classes;
  int size;                  /* S */
  int augment;               /* samples per (character, face) */
  uint64_t seed;
  const char *fonts;         /* comma-separated font specs; NULL = GLYPHS_DEFAULT_FONTS (missing ones skipped) */
  const char *font_dir;      /* NULL = GLYPHS_FONT_DIR */
  int progress_every;        /* glyphs between progress lines when not a terminal; 0 = quiet */
} ConvertGlyphsOpts;
int convert_glyphs_write(const char *out, const ConvertGlyphsOpts *o);

#endif
