/* glyphs.c: font discovery without fontconfig, coverage of a codepoint range
 * by every face, seeded augmentations and FreeType rendering (see
 * include/glyphs.h). Outlines are transformed and rasterised directly into
 * the caller's S x S buffer: no intermediate bitmap, no resampling. */
#include "glyphs.h"

#include "common.h"

#include <ft2build.h>
#include FT_FREETYPE_H
#include FT_OUTLINE_H
#include FT_BBOX_H

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- finding a font file by name under font_dir --------------------------------- */

static const char *g_want;    /* nftw has no user pointer: the name looked for ... */
static char g_found[1024];    /* ... and the smallest matching path so far */

static int find_cb(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
  (void)sb;
  if ((type == FTW_F || type == FTW_SL) && !strcmp(path + ftw->base, g_want) &&
      (!g_found[0] || strcmp(path, g_found) < 0) && strlen(path) < sizeof g_found)
    snprintf(g_found, sizeof g_found, "%s", path);
  return 0;
}

/* the lexicographically first path under dir whose file name is `name`
 * (several packages may ship the same name: the choice must not depend on
 * the order of directory entries) */
static int find_font(const char *dir, const char *name, char *out, size_t cap) {
  g_want = name;
  g_found[0] = 0;
  nftw(dir, find_cb, 16, FTW_PHYS);
  if (!g_found[0]) return -1;
  snprintf(out, cap, "%s", g_found);
  return 0;
}

/* ---- init / free ----------------------------------------------------------------- */

static int add_face(Glyphs *g, int *cap, const char *path, int index, int nfaces_file) {
  FT_Face f;
  if (FT_New_Face((FT_Library)g->lib, path, index, &f) != 0)
    return err_set("%s: face %d cannot be loaded by FreeType (of %d)", path, index, nfaces_file);
  if (!FT_IS_SCALABLE(f)) {
    FT_Done_Face(f);
    return err_set("%s: face %d is a bitmap font (scalable outlines needed)", path, index);
  }
  /* em size in 26.6 pixels; unhinted outlines take fractional sizes */
  if (FT_Set_Char_Size(f, 0, (FT_F26Dot6)lrint(GLYPHS_EM_FRACTION * g->size * 64.0), 72, 72) != 0) {
    FT_Done_Face(f);
    /* unreachable in tests: a scalable face takes any size in [8, 1024] unless its header is damaged in a way
     * FT_New_Face let pass */
    return err_set("%s: face %d refuses size %d", path, index, g->size);
  }
  if (g->nfaces == *cap) {
    *cap = *cap ? 2 * *cap : 16;
    GlyphsFace *nf = realloc(g->faces, (size_t)*cap * sizeof *nf);
    /* unreachable in tests: allocation failure */
    CHECK(nf, "out of memory");
    g->faces = nf;
  }
  GlyphsFace *gf = &g->faces[g->nfaces++];
  memset(gf, 0, sizeof *gf);
  snprintf(gf->path, sizeof gf->path, "%s", path);
  gf->index = index;
  snprintf(gf->family, sizeof gf->family, "%s", f->family_name ? f->family_name : "?");
  snprintf(gf->style, sizeof gf->style, "%s", f->style_name ? f->style_name : "?");
  gf->face = f;
  return 0;
}

/* one spec: "path", "name", either with "#index" */
static int add_spec(Glyphs *g, int *cap, const char *spec, const char *font_dir) {
  char file[1024], path[1024];
  int index = -1;
  snprintf(file, sizeof file, "%s", spec);
  char *hash = strrchr(file, '#');
  if (hash) {
    char *end;
    errno = 0;
    long v = strtol(hash + 1, &end, 10);
    if (hash[1] == 0 || *end || errno || v < 0 || v > 1000)
      return err_set("font '%s': '#%s' is not a face index", spec, hash + 1);
    index = (int)v;
    *hash = 0;
  }
  if (!file[0]) return err_set("font '%s': empty file name", spec);
  if (strchr(file, '/')) snprintf(path, sizeof path, "%s", file);
  else if (find_font(font_dir, file, path, sizeof path) != 0)
    return err_set("font '%s': no file of that name under %s (install the font package, or give a path)", spec,
                   font_dir);
  struct stat sb;
  if (stat(path, &sb) != 0) return err_set("font '%s': %s: %s", spec, path, strerror(errno));
  FT_Face f;
  if (FT_New_Face((FT_Library)g->lib, path, -1, &f) != 0)
    return err_set("font '%s': %s is not a font file FreeType can read", spec, path);
  int n = (int)f->num_faces;
  FT_Done_Face(f);
  if (index >= n) return err_set("font '%s': %s has %d face%s (indices 0..%d)", spec, path, n, n == 1 ? "" : "s", n - 1);
  for (int i = index < 0 ? 0 : index; i < (index < 0 ? n : index + 1); i++)
    if (add_face(g, cap, path, i, n) != 0) return -1;
  return 0;
}

int glyphs_init(Glyphs *g, const char *const *specs, int nspecs, const char *font_dir, int size, int optional) {
  memset(g, 0, sizeof *g);
  if (size < 8 || size > 1024) return err_set("glyph size %d is outside [8, 1024]", size);
  g->size = size;
  FT_Library lib;
  /* unreachable in tests: FreeType initialises unless out of memory */
  if (FT_Init_FreeType(&lib) != 0) return err_set("FreeType cannot be initialised");
  g->lib = lib;
  FT_Int ma, mi, pa;
  FT_Library_Version(lib, &ma, &mi, &pa);
  snprintf(g->version, sizeof g->version, "%d.%d.%d", ma, mi, pa);
  int cap = 0;
  for (int i = 0; i < nspecs; i++) {
    int before = g->nfaces;
    if (add_spec(g, &cap, specs[i], font_dir) == 0) continue;
    if (!optional) {
      glyphs_free(g);
      return -1;
    }
    for (int k = before; k < g->nfaces; k++) FT_Done_Face((FT_Face)g->faces[k].face);
    g->nfaces = before;
    fprintf(stderr, "note: default font skipped: %s\n", err_msg());
  }
  if (g->nfaces == 0) {
    glyphs_free(g);
    return err_set("no usable font among the %d given%s", nspecs,
                   optional ? " (install e.g. fonts-noto-cjk, fonts-arphic-ukai; scripts/setup.sh does)" : "");
  }
  return 0;
}

void glyphs_free(Glyphs *g) {
  for (int i = 0; i < g->nfaces; i++) FT_Done_Face((FT_Face)g->faces[i].face);
  free(g->faces);
  if (g->lib) FT_Done_FreeType((FT_Library)g->lib);
  memset(g, 0, sizeof *g);
}

/* ---- coverage ---------------------------------------------------------------------- */

int glyphs_common(const Glyphs *g, uint32_t lo, uint32_t hi, uint32_t **cps, int *n) {
  *cps = NULL;
  *n = 0;
  if (hi < lo || hi - lo > (1u << 21)) return err_set("bad codepoint range U+%04X..U+%04X", lo, hi);
  uint32_t *v = xmalloc((size_t)(hi - lo + 1) * sizeof *v);   /* at most hi - lo + 1 */
  int k = 0;
  for (uint32_t cp = lo; cp <= hi; cp++) {
    int all = 1;
    for (int f = 0; all && f < g->nfaces; f++) all = FT_Get_Char_Index((FT_Face)g->faces[f].face, cp) != 0;
    if (all) v[k++] = cp;
  }
  *cps = v;
  *n = k;
  return 0;
}

int glyphs_drawable(const Glyphs *g, uint32_t cp) {
  for (int f = 0; f < g->nfaces; f++) {
    FT_Face face = (FT_Face)g->faces[f].face;
    FT_UInt gi = FT_Get_Char_Index(face, cp);
    if (!gi || FT_Load_Glyph(face, gi, FT_LOAD_NO_HINTING | FT_LOAD_NO_BITMAP) != 0) return 0;
    const FT_GlyphSlot s = face->glyph;
    if (s->format != FT_GLYPH_FORMAT_OUTLINE || s->outline.n_points < 3 || s->outline.n_contours < 1) return 0;
  }
  return 1;
}

/* ---- augmentation and rendering ------------------------------------------------------ */

static uint64_t mix64(uint64_t z) {   /* splitmix64's finaliser */
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t glyphs_seed(uint64_t seed, uint32_t cp, int face, int aug) {
  uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL);
  h = mix64(h ^ cp);
  return mix64(h ^ ((uint64_t)(uint32_t)face << 32 | (uint32_t)aug));
}

void glyphs_aug_draw(GlyphsAug *a, Rng *r) {
  /* one draw per field, in this order: the stream layout is part of the file format's determinism */
  a->angle = (2.0f * rng_uniform(r) - 1.0f) * GLYPHS_AUG_ANGLE;
  a->scale = GLYPHS_AUG_SCALE_LO + (GLYPHS_AUG_SCALE_HI - GLYPHS_AUG_SCALE_LO) * rng_uniform(r);
  a->dx = (2.0f * rng_uniform(r) - 1.0f) * GLYPHS_AUG_SHIFT;
  a->dy = (2.0f * rng_uniform(r) - 1.0f) * GLYPHS_AUG_SHIFT;
  a->stroke = (2.0f * rng_uniform(r) - 1.0f) * GLYPHS_AUG_STROKE;
}

int glyphs_render(const Glyphs *g, int fi, uint32_t cp, const GlyphsAug *a, uint8_t *out) {
  const int S = g->size;
  FT_Library lib = (FT_Library)g->lib;
  FT_Face face = (FT_Face)g->faces[fi].face;
  FT_UInt gi = FT_Get_Char_Index(face, cp);
  if (!gi) return err_set("%s#%d: no glyph for U+%04X", g->faces[fi].path, g->faces[fi].index, cp);
  /* unreachable in tests: faces are scalable (add_face refuses bitmap fonts), and every caller renders only the
   * characters glyphs_drawable has loaded as outlines */
  if (FT_Load_Glyph(face, gi, FT_LOAD_NO_HINTING | FT_LOAD_NO_BITMAP) != 0 ||
      face->glyph->format != FT_GLYPH_FORMAT_OUTLINE)
    return err_set("%s#%d: glyph of U+%04X cannot be loaded as an outline", g->faces[fi].path, g->faces[fi].index, cp);
  const FT_Outline *src = &face->glyph->outline;
  FT_Outline o;
  /* unreachable in tests: allocation failure */
  if (FT_Outline_New(lib, (FT_UInt)src->n_points, src->n_contours, &o) != 0) return err_set("FreeType: out of memory");
  FT_Outline_Copy(src, &o);
  double em = GLYPHS_EM_FRACTION * S;
  FT_Pos stroke = (FT_Pos)lrint(a->stroke * em * 64.0);
  if (stroke) FT_Outline_EmboldenXY(&o, stroke, stroke);
  double th = a->angle * (3.14159265358979323846 / 180.0);
  double c = cos(th) * a->scale, s = sin(th) * a->scale;
  FT_Matrix m = {(FT_Fixed)lrint(c * 65536.0), (FT_Fixed)lrint(-s * 65536.0), (FT_Fixed)lrint(s * 65536.0),
                 (FT_Fixed)lrint(c * 65536.0)};
  FT_Outline_Transform(&o, &m);
  FT_BBox bb;
  FT_Outline_Get_BBox(&o, &bb);
  /* FreeType's y axis points up and row 0 of the bitmap is its top: dy (down) subtracts */
  FT_Pos tx = (FT_Pos)lrint((S / 2.0 + a->dx) * 64.0) - (bb.xMin + bb.xMax) / 2;
  FT_Pos ty = (FT_Pos)lrint((S / 2.0 - a->dy) * 64.0) - (bb.yMin + bb.yMax) / 2;
  FT_Outline_Translate(&o, tx, ty);
  FT_Bitmap bm;
  memset(&bm, 0, sizeof bm);
  bm.rows = (unsigned)S;
  bm.width = (unsigned)S;
  bm.pitch = S;
  bm.buffer = out;
  bm.num_grays = 256;
  bm.pixel_mode = FT_PIXEL_MODE_GRAY;
  memset(out, 0, (size_t)S * S);
  FT_Error e = FT_Outline_Get_Bitmap(lib, &o, &bm);
  FT_Outline_Done(lib, &o);
  if (e != 0) return err_set("%s#%d: rasterising U+%04X failed (FreeType error %d)", g->faces[fi].path,
                             g->faces[fi].index, cp, e);
  return 0;
}

int glyphs_utf8(uint32_t cp, char *b) {
  int n;
  if (cp < 0x80) { b[0] = (char)cp; n = 1; }
  else if (cp < 0x800) { b[0] = (char)(0xC0 | cp >> 6); b[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
  else if (cp < 0x10000) {
    b[0] = (char)(0xE0 | cp >> 12);
    b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    b[0] = (char)(0xF0 | cp >> 18);
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    b[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  b[n] = 0;
  return n;
}
