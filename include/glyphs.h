/* glyphs.h: rendering characters with FreeType into small grayscale images,
 * for the CJK glyphs benchmark (`proxygml data glyphs`, docs/datasets.md).
 * Classes are characters, samples are (font face, augmentation) pairs.
 *
 *   Glyphs g;
 *   const char *fonts[] = {"ipag.ttf", "/usr/share/fonts/truetype/arphic/ukai.ttc#0"};
 *   if (glyphs_init(&g, fonts, 2, GLYPHS_FONT_DIR, 32, 0) != 0) fail(err_msg());
 *   uint32_t *cps; int n;
 *   glyphs_common(&g, 0x4E00, 0x9FFF, &cps, &n);       // covered by every face
 *   GlyphsAug a; Rng r; rng_init(&r, glyphs_seed(0, cps[0], 1, 2));
 *   glyphs_aug_draw(&a, &r);
 *   uint8_t px[32 * 32];                                 // S x S, 0 = paper, 255 = ink
 *   glyphs_render(&g, 1, cps[0], &a, px);
 *   glyphs_free(&g);
 *
 * Fonts: a spec is a path ("/x/y.ttc") or a file name searched (recursively,
 * without fontconfig) under font_dir ("ukai.ttc"); "#i" after it picks face
 * i of a collection, otherwise every face of the file is a font of its own
 * (a .ttc such as Noto Sans CJK holds one face per region). A spec that names
 * no readable font is an error, unless `optional` (the built-in default list:
 * then it is skipped and noted on stderr).
 *
 * Rendering (deterministic for one FreeType version): the outline at
 * GLYPHS_EM_FRACTION * S pixels per em, unhinted, made bolder or thinner by
 * FT_Outline_EmboldenXY (a dilation/erosion of the shape), rotated and
 * scaled about its centre, its bounding box centred in the S x S square and
 * shifted, then rasterised anti-aliased. The identity GlyphsAug renders the
 * plain, centred glyph.
 *
 * Memory: Glyphs owns the FreeType library and faces; glyphs_free releases
 * them (safe on a zeroed struct). Rendering allocates one outline copy per
 * call. Not thread-safe: one Glyphs per thread.
 */
#ifndef PROXYGML_GLYPHS_H
#define PROXYGML_GLYPHS_H

#include <stdint.h>

#include "rng.h"

#define GLYPHS_FONT_DIR "/usr/share/fonts"   /* Debian's font tree, searched by file name */
#define GLYPHS_EM_FRACTION 0.75              /* em size / S: room for rotation, scale and shift */

/* The default fonts: distinct designs from Debian's CJK font packages (one
 * face each: several weights of Noto Sans/Serif CJK, Ming and Kai styles,
 * Japanese Gothic/Mincho, a handwriting-like Kai, two Heiti). */
#define GLYPHS_DEFAULT_FONTS                                                                      \
  "NotoSansCJK-Light.ttc#0,NotoSansCJK-Regular.ttc#2,NotoSansCJK-Black.ttc#3,"                    \
  "NotoSerifCJK-Light.ttc#2,NotoSerifCJK-Regular.ttc#0,NotoSerifCJK-Black.ttc#3,"                 \
  "ukai.ttc#0,uming.ttc#2,ipag.ttf#0,ipam.ttf#0,HanaMinA.ttf#0,LXGWWenKai-Light.ttf#0,"           \
  "LXGWWenKai-Bold.ttf#0,wqy-microhei.ttc#0,wqy-zenhei.ttc#0"

typedef struct {
  char path[1024];
  int index;                /* face index in the file */
  char family[128], style[128];
  void *face;               /* FT_Face */
} GlyphsFace;

typedef struct {
  void *lib;                /* FT_Library */
  int size;                 /* S */
  int nfaces;
  GlyphsFace *faces;        /* nfaces */
  char version[32];         /* FreeType's, "2.12.1" */
} Glyphs;

/* one augmentation; {0, 1, 0, 0, 0} is the identity */
typedef struct {
  float angle;              /* degrees, counter-clockwise */
  float scale;
  float dx, dy;             /* pixels, right and down */
  float stroke;             /* stroke width change, fraction of the em size (negative: thinner) */
} GlyphsAug;

/* ranges of glyphs_aug_draw */
#define GLYPHS_AUG_ANGLE 8.0f        /* +- degrees */
#define GLYPHS_AUG_SCALE_LO 0.9f
#define GLYPHS_AUG_SCALE_HI 1.1f
#define GLYPHS_AUG_SHIFT 2.0f        /* +- pixels */
#define GLYPHS_AUG_STROKE 0.025f     /* +- fraction of the em size (0.6 px at S = 32) */

int glyphs_init(Glyphs *g, const char *const *specs, int nspecs, const char *font_dir, int size, int optional);
void glyphs_free(Glyphs *g);

/* codepoints in [lo, hi] that every face maps to a glyph, ascending (*cps owned by the caller) */
int glyphs_common(const Glyphs *g, uint32_t lo, uint32_t hi, uint32_t **cps, int *n);
/* 1 if every face draws cp with a non-empty outline (some fonts map a code to a blank glyph) */
int glyphs_drawable(const Glyphs *g, uint32_t cp);

/* a seed for the stream of one sample, independent of the order of rendering */
uint64_t glyphs_seed(uint64_t seed, uint32_t cp, int face, int aug);
/* uniform in the ranges above; augmentation 0 of a sample is drawn like the others */
void glyphs_aug_draw(GlyphsAug *a, Rng *r);
/* out: S x S, row 0 at the top, 0 = background, 255 = full ink */
int glyphs_render(const Glyphs *g, int face, uint32_t cp, const GlyphsAug *a, uint8_t *out);

/* UTF-8 of one codepoint into buf (>= 5 bytes), NUL-terminated; returns the length */
int glyphs_utf8(uint32_t cp, char *buf);

#endif
