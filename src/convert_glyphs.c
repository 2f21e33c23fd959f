/* convert_glyphs.c: the CJK glyphs benchmark (include/convert_glyphs.h):
 * the characters every face covers, a seeded choice of them, and the
 * rendered, augmented samples (glyphs.c) written through DatasetWriter. */
#include "convert_glyphs.h"

#include "common.h"
#include "config.h"
#include "convert.h"
#include "dataset.h"
#include "dataset_writer.h"
#include "glyphs.h"
#include "h5io.h"
#include "rng.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CJK_LO 0x4E00u
#define CJK_HI 0x9FFFu

/* --train-classes all: every block of CJK Unified Ideographs (extension A,
 * the URO, extensions B to I, G and H). The compatibility ideographs are left
 * out: each is canonically equivalent to a unified one, so it would be the
 * same class twice. */
static const uint32_t ALL_BLOCKS[][2] = {{0x3400u, 0x4DBFu}, {0x4E00u, 0x9FFFu}, {0x20000u, 0x2EE5Fu},
                                         {0x30000u, 0x323AFu}};
#define ALL_BLOCKS_TEXT "U+3400..U+4DBF, U+4E00..U+9FFF, U+20000..U+2EE5F, U+30000..U+323AF"

/* the characters every face covers: of the URO, or (all) of every block, ascending */
static int common_chars(const Glyphs *g, int all, uint32_t **cps, int *n) {
  if (!all) return glyphs_common(g, CJK_LO, CJK_HI, cps, n);
  int nb = (int)(sizeof ALL_BLOCKS / sizeof ALL_BLOCKS[0]);
  *cps = NULL;
  *n = 0;
  for (int b = 0; b < nb; b++) {
    uint32_t *v;
    int k;
    if (glyphs_common(g, ALL_BLOCKS[b][0], ALL_BLOCKS[b][1], &v, &k) != 0) {
      free(*cps);
      *cps = NULL;
      return -1;
    }
    uint32_t *nv = realloc(*cps, (size_t)(*n + k + 1) * sizeof *nv);
    /* unreachable in tests: allocation failure */
    CHECK(nv, "out of memory");
    memcpy(nv + *n, v, (size_t)k * sizeof *v);
    *cps = nv;
    *n += k;
    free(v);
  }
  return 0;
}

/* rows of classes [c0, c1) of chosen into a new split: class x face x augmentation */
static int write_glyph_split(DatasetWriter *w, const char *split, const Glyphs *g, const uint32_t *chosen, int c0,
                             int c1, const ConvertGlyphsOpts *o) {
  const int S = o->size, per = g->nfaces * o->augment;
  if (dataset_writer_begin(w, split, DATASET_IMAGES, S, S, 1) != 0) return -1;
  uint8_t *px = xmalloc((size_t)per * S * S);                  /* per x S x S x 1 */
  int32_t *lab = xmalloc((size_t)per * sizeof *lab);
  ConvertProgress pr;
  convert_progress_init(&pr, split, "glyphs", (int64_t)(c1 - c0) * per, o->progress_every);
  int rc = 0;
  for (int c = c0; rc == 0 && c < c1; c++) {
    for (int f = 0; rc == 0 && f < g->nfaces; f++)
      for (int a = 0; rc == 0 && a < o->augment; a++) {
        int r = f * o->augment + a;
        Rng rng;
        GlyphsAug aug;
        rng_init(&rng, glyphs_seed(o->seed, chosen[c], f, a));
        glyphs_aug_draw(&aug, &rng);
        rc = glyphs_render(g, f, chosen[c], &aug, px + (size_t)r * S * S);
        lab[r] = c;
      }
    if (rc == 0) rc = dataset_writer_append(w, px, lab, per);
    convert_progress_step(&pr, (int64_t)(c + 1 - c0) * per);
  }
  char sel[256];
  snprintf(sel, sizeof sel, "characters %d-%d of the seeded shuffle (ids %d-%d), every face x %d augmentations", c0,
           c1 - 1, c0, c1 - 1, o->augment);
  if (rc == 0) rc = h5io_set_attr_str(w->group, "selection", sel);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "n_source_rows", (int64_t)(c1 - c0) * per);
  if (rc == 0) rc = dataset_writer_end(w);
  free(px);
  free(lab);
  return rc;
}

int convert_glyphs_write(const char *out, const ConvertGlyphsOpts *o) {
  const int all = o->train_classes == CONVERT_GLYPHS_ALL;
  if ((o->train_classes < 1 && !all) || o->test_classes < 1)
    return err_set("--train-classes and --test-classes must be >= 1");
  if (o->augment < 1 || o->augment > 1000) return err_set("--augment %d is outside [1, 1000]", o->augment);
  if (o->size < 8 || o->size > 1024) return err_set("--size %d is outside [8, 1024]", o->size);
  const char *list = o->fonts ? o->fonts : GLYPHS_DEFAULT_FONTS;
  const char *dir = o->font_dir ? o->font_dir : GLYPHS_FONT_DIR;
  ConvertStrList specs = {0};
  char *copy = convert_strdup(list), *save = NULL;
  for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
    if (!convert_blank(t)) convert_strlist_add(&specs, t);
  free(copy);
  if (specs.n == 0) {
    convert_strlist_free(&specs);
    return err_set("--fonts is empty");
  }
  Glyphs g;
  int rc = glyphs_init(&g, (const char *const *)specs.v, specs.n, dir, o->size, o->fonts == NULL);
  convert_strlist_free(&specs);
  if (rc != 0) return -1;
  uint32_t *common = NULL, *chosen = NULL;
  int ncommon = 0, *perm = NULL, need = o->train_classes + o->test_classes, k = 0, T = o->train_classes;
  char **names = NULL;
  double t0 = now_sec();
  rc = common_chars(&g, all, &common, &ncommon);
  if (all) need = ncommon;   /* every drawable one; /train gets what /test leaves */
  if (rc == 0 && !all && ncommon < need)
    rc = err_set("only %d characters of U+%04X..U+%04X are covered by all %d font faces; %d needed "
                 "(--train-classes + --test-classes)", ncommon, CJK_LO, CJK_HI, g.nfaces, need);
  if (rc == 0) {
    /* a seeded shuffle of the common set, walked until `need` drawable characters */
    Rng r;
    rng_init(&r, o->seed);
    perm = xmalloc((size_t)ncommon * sizeof *perm);
    rng_permutation(&r, perm, ncommon);
    chosen = xmalloc((size_t)(all ? ncommon : need) * sizeof *chosen);
    for (int i = 0; i < ncommon && k < need; i++)
      if (glyphs_drawable(&g, common[perm[i]])) chosen[k++] = common[perm[i]];
    if (all) {
      T = k - o->test_classes;
      need = k;
      if (T < 1)
        rc = err_set("only %d characters are covered by (and drawable in) all %d font faces: --test-classes %d "
                     "leaves none for /train", k, g.nfaces, o->test_classes);
    } else if (k < need)
      rc = err_set("only %d of the %d common characters have an outline in every face; %d needed", k, ncommon, need);
  }
  if (rc == 0) {
    names = xcalloc((size_t)need, sizeof *names);
    for (int i = 0; i < need; i++) {
      char b[8];
      glyphs_utf8(chosen[i], b);
      names[i] = convert_strdup(b);
    }
  }
  DatasetWriter w;
  memset(&w, 0, sizeof w);
  w.file = w.group = w.data = -1;
  if (rc == 0) rc = dataset_writer_init(&w, out, need, (const char *const *)names, "proxygml " PROXYGML_VERSION " data glyphs");
  if (rc == 0) {
    /* provenance: every face, one line each: path#index<TAB>family<TAB>style */
    size_t cap = (size_t)g.nfaces * 1400 + 1, len = 0;
    char *fonts = xcalloc(cap, 1);
    for (int i = 0; i < g.nfaces; i++)
      len += (size_t)snprintf(fonts + len, cap - len, "%s%s#%d\t%s\t%s", i ? "\n" : "", g.faces[i].path,
                              g.faces[i].index, g.faces[i].family, g.faces[i].style);
    char src[512], desc[512], aug[512], range[128];
    if (all) snprintf(range, sizeof range, "%s", ALL_BLOCKS_TEXT);
    else snprintf(range, sizeof range, "U+%04X..U+%04X", CJK_LO, CJK_HI);
    snprintf(src, sizeof src, "CJK Unified Ideographs (%s) rendered with FreeType %s from %d font faces", range,
             g.version, g.nfaces);
    snprintf(desc, sizeof desc,
             "classes = characters covered by every face (%d), shuffled with the seed; train: the first %d%s "
             "(ids 0-%d), test: the next %d (ids %d-%d): disjoint classes",
             ncommon, T, all ? " (all but the test ones)" : "", T - 1, o->test_classes, T, need - 1);
    snprintf(aug, sizeof aug,
             "per sample, seeded by (seed, codepoint, face, augmentation): rotation +-%.0f deg, scale %.2f-%.2f, "
             "shift +-%.0f px, stroke width +-%.3f em (FT_Outline_EmboldenXY); em = %.2f x size; bounding box centred; "
             "0 = background, 255 = ink",
             GLYPHS_AUG_ANGLE, GLYPHS_AUG_SCALE_LO, GLYPHS_AUG_SCALE_HI, GLYPHS_AUG_SHIFT, GLYPHS_AUG_STROKE,
             GLYPHS_EM_FRACTION);
    rc = h5io_set_attr_str(w.file, "source", src);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "source_dir", dir);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "protocol", "zeroshot");
    if (rc == 0) rc = h5io_set_attr_str(w.file, "protocol_description", desc);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "fonts", fonts);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "n_fonts", g.nfaces);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "freetype_version", g.version);
    if (rc == 0) rc = h5io_set_attr_str(w.file, "augmentation", aug);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "augment", o->augment);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "seed", (int64_t)o->seed);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "image_size", o->size);
    if (rc == 0) rc = h5io_set_attr_i64(w.file, "n_common_characters", ncommon);
    free(fonts);
  }
  if (rc == 0) rc = write_glyph_split(&w, "train", &g, chosen, 0, T, o);
  if (rc == 0) rc = write_glyph_split(&w, "test", &g, chosen, T, need, o);
  if (rc == 0) rc = dataset_writer_commit(&w);
  if (rc == 0 && o->progress_every > 0)
    fprintf(stderr, "  rendered %lld glyphs from %d faces in %.1f s\n", (long long)need * g.nfaces * o->augment,
            g.nfaces, now_sec() - t0);
  dataset_writer_free(&w);
  convert_names_free(names, need);
  free(common);
  free(chosen);
  free(perm);
  glyphs_free(&g);
  return rc;
}
