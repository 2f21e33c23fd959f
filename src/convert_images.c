/* convert_images.c: the image converters of include/convert_images.h
 * (image folders, CUB-200-2011, Cars196, Stanford Online Products): each
 * reads its layout into two lists of (path, class id), then one pipeline
 * decodes (imageio), resizes and writes both splits through DatasetWriter. */
#include "convert_images.h"

#include "common.h"
#include "config.h"
#include "convert.h"
#include "dataset.h"
#include "dataset_writer.h"
#include "h5io.h"
#include "imageio.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- images -> a split ------------------------------------------------------------------ */

typedef struct {
  char *path;
  int32_t label;
} ImgItem;

typedef struct {
  ImgItem *v;
  int64_t n, cap;
} ImgList;

static void imglist_add(ImgList *l, char *path_owned, int32_t label) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 1024;
    ImgItem *nv = realloc(l->v, (size_t)l->cap * sizeof *nv);
    /* unreachable in tests: allocation failure */
    CHECK(nv, "out of memory");
    l->v = nv;
  }
  l->v[l->n++] = (ImgItem){path_owned, label};
}

static void imglist_free(ImgList *l) {
  for (int64_t i = 0; l->v && i < l->n; i++) free(l->v[i].path);
  free(l->v);
  memset(l, 0, sizeof *l);
}

#define DECODE_BLOCK 64   /* images decoded in parallel, then appended in list order */

/* Decodes, resizes and appends every image of L to a new split. Skipped
 * images are listed on stderr and counted in *skipped and the split
 * attribute n_skipped. The group is left open for the caller's attributes. */
static int write_images(DatasetWriter *w, const char *split, const ImgList *L, const ConvertImagesOpts *o,
                        int64_t *skipped) {
  const int S = o->size;
  const size_t row = (size_t)S * S * 3;
  *skipped = 0;
  if (L->n == 0) return err_set("%s: the %s split has no images", w->out, split);
  if (dataset_writer_begin(w, split, DATASET_IMAGES, S, S, 3) != 0) return -1;
  uint8_t *px = xmalloc(DECODE_BLOCK * row);                    /* DECODE_BLOCK x S x S x 3 */
  int32_t lab[DECODE_BLOCK];
  int ok[DECODE_BLOCK];
  char(*why)[IMAGEIO_ERR_MAX] = xmalloc(DECODE_BLOCK * sizeof *why);
  ConvertProgress pr;
  convert_progress_init(&pr, split, "images", L->n, o->progress_every);
  int rc = 0;
  for (int64_t b0 = 0; rc == 0 && b0 < L->n; b0 += DECODE_BLOCK) {
    int m = L->n - b0 < DECODE_BLOCK ? (int)(L->n - b0) : DECODE_BLOCK;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < m; i++) ok[i] = imageio_read_square(px + (size_t)i * row, L->v[b0 + i].path, S, why[i]) == 0;
    int k = 0;
    for (int i = 0; i < m; i++) {
      if (!ok[i]) {
        if (o->on_error == CONVERT_IMAGES_ON_ERROR_FAIL) {
          rc = err_set("%s (use --on-error skip to leave it out)", why[i]);
          break;
        }
        fprintf(stderr, "%sskipped %s\n", pr.tty ? "\n" : "", why[i]);
        (*skipped)++;
        continue;
      }
      if (k != i) memcpy(px + (size_t)k * row, px + (size_t)i * row, row);
      lab[k++] = L->v[b0 + i].label;
    }
    if (rc == 0) rc = dataset_writer_append(w, px, lab, k);
    convert_progress_step(&pr, b0 + m);
  }
  if (rc != 0 && pr.tty) fputc('\n', stderr);   /* end the progress line before the error */
  if (rc == 0 && w->n == 0) rc = err_set("%s: every image of the %s split failed to decode", w->out, split);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "n_skipped", *skipped);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "n_source_rows", L->n);
  if (rc == 0) rc = h5io_set_attr_i64(w->group, "image_size", S);
  free(px);
  free(why);
  return rc;
}

/* root attributes shared by the image converters */
static int image_root_attrs(DatasetWriter *w, const char *source, const char *dir, const char *protocol_desc,
                            const ConvertImagesOpts *o) {
  int rc = h5io_set_attr_str(w->file, "source", source);
  if (rc == 0) rc = h5io_set_attr_str(w->file, "source_dir", dir);
  if (rc == 0) rc = h5io_set_attr_str(w->file, "protocol", "zeroshot");
  if (rc == 0) rc = h5io_set_attr_str(w->file, "protocol_description", protocol_desc);
  if (rc == 0)
    rc = h5io_set_attr_str(w->file, "preprocessing",
                           "decoded to RGB (gray expanded, alpha over white), shorter side resized to image_size "
                           "(area average when shrinking, linear when enlarging), centre crop image_size x image_size");
  if (rc == 0)
    rc = h5io_set_attr_str(w->file, "on_error", o->on_error == CONVERT_IMAGES_ON_ERROR_SKIP ? "skip" : "fail");
  return rc;
}

/* Both splits, committed. sel: the selection attribute of each split. */
static int write_image_file(const char *out, const char *converter, int n_classes, char **names, const ImgList *tr,
                            const ImgList *te, const char *source, const char *dir, const char *protocol_desc,
                            const char *sel[2], const ConvertImagesOpts *o) {
  if (o->size < 1 || o->size > 4096) return err_set("--size %d is outside [1, 4096]", o->size);
  DatasetWriter w;
  int64_t sk[2] = {0, 0};
  int rc = dataset_writer_init(&w, out, n_classes, (const char *const *)names, converter);
  if (rc == 0) rc = image_root_attrs(&w, source, dir, protocol_desc, o);
  if (rc == 0) rc = write_images(&w, "train", tr, o, &sk[0]);
  if (rc == 0) rc = h5io_set_attr_str(w.group, "selection", sel[0]);
  if (rc == 0) rc = dataset_writer_end(&w);
  if (rc == 0) rc = write_images(&w, "test", te, o, &sk[1]);
  if (rc == 0) rc = h5io_set_attr_str(w.group, "selection", sel[1]);
  if (rc == 0) rc = dataset_writer_end(&w);
  if (rc == 0) rc = h5io_set_attr_i64(w.file, "n_skipped", sk[0] + sk[1]);
  if (rc == 0) rc = dataset_writer_commit(&w);
  dataset_writer_free(&w);
  if (rc == 0 && sk[0] + sk[1] > 0)
    fprintf(stderr, "note: %lld image(s) could not be decoded and were skipped (attribute n_skipped)\n",
            (long long)(sk[0] + sk[1]));
  return rc;
}

/* ---- folder ----------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_image_ext(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

/* sorted visible entries of dir: sub-directories (want_dirs) or image files */
static int list_dir(const char *dir, int want_dirs, ConvertStrList *out) {
  DIR *d = opendir(dir);
  /* unreachable in tests: the caller has just seen a directory here, and opendir then fails only without read
   * permission, which root, the tests' user, always has */
  if (!d) return err_set("%s: cannot open directory (%s)", dir, strerror(errno));
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *p = convert_path_join(dir, e->d_name);
    int isd = convert_is_dir(p);
    if (want_dirs ? isd : (!isd && has_image_ext(e->d_name))) convert_strlist_add(out, e->d_name);
    free(p);
  }
  closedir(d);
  if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof *out->v, cmp_str);
  return 0;
}

static int find_name(char **names, int n, const char *s) {
  for (int i = 0; i < n; i++)
    if (!strcmp(names[i], s)) return i;
  return -1;
}

int convert_images_folder(const char *out, const char *root, const ConvertImagesOpts *o) {
  if (!convert_is_dir(root)) return err_set("%s: no such directory", root);
  ConvertStrList cls[2] = {{0}, {0}};
  static const char *const SPLITS[2] = {"train", "test"};
  ImgList lists[2] = {{0}, {0}};
  char **names = NULL;
  int nc = 0, rc = 0;
  for (int s = 0; rc == 0 && s < 2; s++) {
    char *sd = convert_path_join(root, SPLITS[s]);
    if (!convert_is_dir(sd))
      rc = err_set("%s: no such directory (expected ROOT/train/<class>/ and ROOT/test/<class>/)", sd);
    else if (list_dir(sd, 1, &cls[s]) != 0) rc = -1;
    else if (cls[s].n == 0) rc = err_set("%s: no class folders in it", sd);
    free(sd);
  }
  if (rc == 0) {
    /* ids: train classes sorted, then the test-only classes sorted */
    names = xcalloc((size_t)cls[0].n + cls[1].n, sizeof *names);
    for (int i = 0; i < cls[0].n; i++) names[nc++] = convert_strdup(cls[0].v[i]);
    for (int i = 0; i < cls[1].n; i++)
      if (find_name(names, cls[0].n, cls[1].v[i]) < 0) names[nc++] = convert_strdup(cls[1].v[i]);
  }
  for (int s = 0; rc == 0 && s < 2; s++)
    for (int c = 0; rc == 0 && c < cls[s].n; c++) {
      char *sd = convert_path_join(root, SPLITS[s]), *cd = convert_path_join(sd, cls[s].v[c]);
      ConvertStrList files = {0};
      if (list_dir(cd, 0, &files) != 0) rc = -1;
      else if (files.n == 0) rc = err_set("%s: empty class folder (no .jpg, .jpeg or .png files)", cd);
      int id = find_name(names, nc, cls[s].v[c]);
      for (int i = 0; rc == 0 && i < files.n; i++) imglist_add(&lists[s], convert_path_join(cd, files.v[i]), id);
      convert_strlist_free(&files);
      free(sd);
      free(cd);
    }
  if (rc == 0) {
    int shared = cls[1].n - (nc - cls[0].n);
    char desc[512];
    snprintf(desc, sizeof desc,
             "train: ROOT/train/<class>/ (%d classes, ids 0-%d in sorted order); test: ROOT/test/<class>/ (%d classes, "
             "%d also in train with the same ids, the others after the train classes)",
             cls[0].n, cls[0].n - 1, cls[1].n, shared);
    const char *sel[2] = {"all .jpg/.jpeg/.png files of ROOT/train/<class>/", "all .jpg/.jpeg/.png files of ROOT/test/<class>/"};
    rc = write_image_file(out, "proxygml " PROXYGML_VERSION " data folder", nc, names, &lists[0], &lists[1],
                          "image folders ROOT/{train,test}/<class>/", root, desc, sel, o);
  }
  convert_names_free(names, nc);
  for (int s = 0; s < 2; s++) {
    convert_strlist_free(&cls[s]);
    imglist_free(&lists[s]);
  }
  return rc;
}

/* ---- CUB-200-2011 --------------------------------------------------------------------- */

/* "001.Black_footed_Albatross" -> "Black_footed_Albatross" */
static char *strip_number(const char *s) {
  const char *p = s;
  while (isdigit((unsigned char)*p)) p++;
  return convert_strdup(p > s && *p == '.' && p[1] ? p + 1 : s);
}

int convert_images_cub(const char *out, const char *root, const ConvertImagesOpts *o) {
  enum { NC = 200, SPLIT_AT = 100 };   /* classes 1-100 train, 101-200 test */
  if (!convert_is_dir(root)) return err_set("%s: no such directory", root);
  char *p_img = convert_path_join(root, "images.txt"), *p_lab = convert_path_join(root, "image_class_labels.txt"),
       *p_cls = convert_path_join(root, "classes.txt"), *p_dir = convert_path_join(root, "images");
  ConvertIdLines im = {0}, lb = {0}, cl = {0};
  ImgList lists[2] = {{0}, {0}};
  char **names = xcalloc(NC, sizeof *names);
  int64_t *cls_of = NULL;   /* image id -> class id (1-based), 0 = none */
  int64_t max_id = 0;
  int rc = 0;
  if (convert_idlines_read(p_img, &im) != 0 || convert_idlines_read(p_lab, &lb) != 0) rc = -1;
  if (rc == 0 && access(p_cls, F_OK) == 0 && convert_idlines_read(p_cls, &cl) != 0) rc = -1;
  if (rc == 0 && !convert_is_dir(p_dir)) rc = err_set("%s: no such directory (the CUB images)", p_dir);
  for (int64_t i = 0; rc == 0 && i < im.n; i++) {
    if (im.id[i] < 1 || im.id[i] > 100000000) rc = err_set("%s: image id %lld out of range", p_img, (long long)im.id[i]);
    if (im.id[i] > max_id) max_id = im.id[i];
  }
  if (rc == 0) cls_of = xcalloc((size_t)max_id + 1, sizeof *cls_of);
  for (int64_t i = 0; rc == 0 && i < lb.n; i++) {
    int64_t c;
    if (convert_parse_i64(lb.rest[i], &c) != 0 || c < 1 || c > NC)
      rc = err_set("%s: image %lld has class '%s' (expected 1-%d)", p_lab, (long long)lb.id[i], lb.rest[i], NC);
    else if (lb.id[i] >= 1 && lb.id[i] <= max_id) cls_of[lb.id[i]] = c;
  }
  for (int64_t i = 0; rc == 0 && i < cl.n; i++)
    if (cl.id[i] >= 1 && cl.id[i] <= NC && !names[cl.id[i] - 1]) names[cl.id[i] - 1] = strip_number(cl.rest[i]);
  for (int64_t i = 0; rc == 0 && i < im.n; i++) {
    int64_t c = cls_of[im.id[i]];
    if (c == 0) {
      rc = err_set("%s: image %lld (%s) has no class", p_lab, (long long)im.id[i], im.rest[i]);
      break;
    }
    if (!names[c - 1]) {   /* no classes.txt: the image's folder names the class */
      char *d = convert_strdup(im.rest[i]), *sl = strchr(d, '/');
      if (sl) {
        *sl = 0;
        names[c - 1] = strip_number(d);
      }
      free(d);
    }
    imglist_add(&lists[c > SPLIT_AT], convert_path_join(p_dir, im.rest[i]), (int32_t)(c - 1));
  }
  if (rc == 0) {
    convert_names_fill(names, NC);
    const char *sel[2] = {"images of classes 1-100 (ids 0-99)", "images of classes 101-200 (ids 100-199)"};
    rc = write_image_file(out, "proxygml " PROXYGML_VERSION " data cub", NC, names, &lists[0], &lists[1],
                          "CUB-200-2011 (Wah et al. 2011): images.txt, image_class_labels.txt, images/", root,
                          "train: classes 1-100 (ids 0-99); test: classes 101-200 (ids 100-199), the metric-learning "
                          "split (train_test_split.txt is not used)",
                          sel, o);
  }
  convert_names_free(names, NC);
  free(cls_of);
  convert_idlines_free(&im);
  convert_idlines_free(&lb);
  convert_idlines_free(&cl);
  imglist_free(&lists[0]);
  imglist_free(&lists[1]);
  free(p_img);
  free(p_lab);
  free(p_cls);
  free(p_dir);
  return rc;
}

/* ---- Cars196 ------------------------------------------------------------------------------ */

int convert_images_cars(const char *out, const char *root, const char *annos, const ConvertImagesOpts *o) {
  enum { NC = 196, SPLIT_AT = 98, MAXF = 32 };   /* classes 1-98 train, 99-196 test */
  if (!convert_is_dir(root)) return err_set("%s: no such directory", root);
  char *ap = annos ? convert_strdup(annos) : convert_path_join(root, "cars_annos.csv");
  FILE *f = fopen(ap, "r");
  if (!f) {
    int e = errno;
    int rc = err_set("%s: cannot open (%s); export cars_annos.mat to CSV first (docs/datasets.md)", ap, strerror(e));
    free(ap);
    return rc;
  }
  ImgList lists[2] = {{0}, {0}};
  char **names = xcalloc(NC, sizeof *names);
  char *buf = NULL;
  size_t cap = 0;
  int64_t lineno = 0;
  int col_path = 0, col_class = 1, col_name = -1, rc = 0, first = 1;
  while (rc == 0 && convert_read_line(f, &buf, &cap)) {
    lineno++;
    if (convert_blank(buf) || buf[0] == '#') continue;
    char *fl[MAXF];
    int nf = convert_split_fields(buf, fl, MAXF);
    if (first) {
      first = 0;
      int hp = -1, hc = -1, hn = -1;
      for (int i = 0; i < nf; i++) {
        if (!strcmp(fl[i], "relative_im_path")) hp = i;
        else if (!strcmp(fl[i], "class")) hc = i;
        else if (!strcmp(fl[i], "class_name")) hn = i;
      }
      if (hp >= 0 || hc >= 0) {   /* a header: columns by name */
        if (hp < 0 || hc < 0) {
          rc = err_set("%s:1: the header needs the columns relative_im_path and class", ap);
          break;
        }
        col_path = hp;
        col_class = hc;
        col_name = hn;
        continue;
      }
      if (nf >= 3) col_name = 2;   /* no header: path, class[, class_name] */
    }
    int64_t c;
    if (nf <= col_path || nf <= col_class) {
      rc = err_set("%s:%lld: expected relative_im_path,class", ap, (long long)lineno);
      break;
    }
    if (convert_parse_i64(fl[col_class], &c) != 0 || c < 1 || c > NC) {
      rc = err_set("%s:%lld: class '%s' (expected 1-%d)", ap, (long long)lineno, fl[col_class], NC);
      break;
    }
    if (col_name >= 0 && col_name < nf && fl[col_name][0] && !names[c - 1]) names[c - 1] = convert_strdup(fl[col_name]);
    imglist_add(&lists[c > SPLIT_AT], convert_path_join(root, fl[col_path]), (int32_t)(c - 1));
  }
  free(buf);
  fclose(f);
  if (rc == 0 && lists[0].n + lists[1].n == 0) rc = err_set("%s: no annotations", ap);
  if (rc == 0) {
    convert_names_fill(names, NC);
    const char *sel[2] = {"images of classes 1-98 (ids 0-97)", "images of classes 99-196 (ids 98-195)"};
    rc = write_image_file(out, "proxygml " PROXYGML_VERSION " data cars", NC, names, &lists[0], &lists[1],
                          "Cars196 (Krause et al. 2013): a CSV export of cars_annos.mat (relative_im_path,class)",
                          root, "train: classes 1-98 (ids 0-97); test: classes 99-196 (ids 98-195); the 'test' flag "
                                "of cars_annos.mat is not used",
                          sel, o);
  }
  convert_names_free(names, NC);
  imglist_free(&lists[0]);
  imglist_free(&lists[1]);
  free(ap);
  return rc;
}

/* ---- Stanford Online Products ------------------------------------------------------------------ */

/* one Ebay_*.txt: "image_id class_id super_class_id path" after a header line */
static int read_sop_list(const char *path, const char *root, ImgList *l, char ***names, int *cap_names,
                         int *max_class) {
  FILE *f = fopen(path, "r");
  if (!f) return err_set("%s: cannot open (%s)", path, strerror(errno));
  char *buf = NULL;
  size_t cap = 0;
  int64_t lineno = 0;
  int rc = 0;
  while (rc == 0 && convert_read_line(f, &buf, &cap)) {
    lineno++;
    if (convert_blank(buf)) continue;
    char *fl[8];
    int nf = convert_split_fields(buf, fl, 8);
    if (lineno == 1 && nf >= 1 && !strcmp(fl[0], "image_id")) continue;
    int64_t img, c, sc;
    if (nf != 4 || convert_parse_i64(fl[0], &img) != 0 || convert_parse_i64(fl[1], &c) != 0 ||
        convert_parse_i64(fl[2], &sc) != 0) {
      rc = err_set("%s:%lld: expected 'image_id class_id super_class_id path'", path, (long long)lineno);
      break;
    }
    if (c < 1 || c > CONVERT_MAX_CLASSES) {
      rc = err_set("%s:%lld: class_id %lld out of range", path, (long long)lineno, (long long)c);
      break;
    }
    if (c > *cap_names) {
      int nc = *cap_names ? *cap_names : 1024;
      while (nc < c) nc *= 2;
      char **nn = realloc(*names, (size_t)nc * sizeof *nn);
      /* unreachable in tests: allocation failure */
      CHECK(nn, "out of memory");
      memset(nn + *cap_names, 0, (size_t)(nc - *cap_names) * sizeof *nn);
      *names = nn;
      *cap_names = nc;
    }
    if (!(*names)[c - 1]) {
      /* "bicycle_final/111085122871_0.JPG" -> "bicycle_final/111085122871": folder and product */
      char *n = convert_strdup(fl[3]), *sl = strrchr(n, '/'), *us = strrchr(n, '_');
      if (us && (!sl || us > sl)) *us = 0;
      (*names)[c - 1] = n;
    }
    if (c > *max_class) *max_class = (int)c;
    imglist_add(l, convert_path_join(root, fl[3]), (int32_t)(c - 1));
  }
  free(buf);
  fclose(f);
  if (rc == 0 && l->n == 0) rc = err_set("%s: no images listed", path);
  return rc;
}

int convert_images_sop(const char *out, const char *root, const ConvertImagesOpts *o) {
  if (!convert_is_dir(root)) return err_set("%s: no such directory", root);
  char *p_tr = convert_path_join(root, "Ebay_train.txt"), *p_te = convert_path_join(root, "Ebay_test.txt");
  ImgList lists[2] = {{0}, {0}};
  char **names = NULL;
  int cap = 0, nc = 0;
  int rc = read_sop_list(p_tr, root, &lists[0], &names, &cap, &nc);
  if (rc == 0) rc = read_sop_list(p_te, root, &lists[1], &names, &cap, &nc);
  if (rc == 0) {
    convert_names_fill(names, nc);
    const char *sel[2] = {"the images of Ebay_train.txt", "the images of Ebay_test.txt"};
    rc = write_image_file(out, "proxygml " PROXYGML_VERSION " data sop", nc, names, &lists[0], &lists[1],
                          "Stanford Online Products (Oh Song et al. 2016): Ebay_train.txt, Ebay_test.txt", root,
                          "train: Ebay_train.txt; test: Ebay_test.txt (disjoint products); id = class_id - 1", sel,
                          o);
  }
  convert_names_free(names, cap);
  imglist_free(&lists[0]);
  imglist_free(&lists[1]);
  free(p_tr);
  free(p_te);
  return rc;
}

