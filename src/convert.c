/* convert.c: the helpers of include/convert.h that the converters share:
 * strings and paths, list files, class names, progress lines. */
#include "convert.h"

#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- strings, paths, lines ------------------------------------------------------------- */

char *convert_strdup(const char *s) {
  char *d = strdup(s);
  /* unreachable in tests: allocation failure */
  CHECK(d, "out of memory");
  return d;
}

char *convert_path_join(const char *a, const char *b) {
  size_t n = strlen(a) + strlen(b) + 2;
  char *p = xmalloc(n);
  snprintf(p, n, "%s/%s", a, b);
  return p;
}

int convert_is_dir(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

void convert_strlist_add(ConvertStrList *l, const char *s) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 64;
    char **nv = realloc(l->v, (size_t)l->cap * sizeof *nv);
    /* unreachable in tests: allocation failure */
    CHECK(nv, "out of memory");
    l->v = nv;
  }
  l->v[l->n++] = convert_strdup(s);
}

void convert_strlist_free(ConvertStrList *l) {
  for (int i = 0; l->v && i < l->n; i++) free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

int convert_read_line(FILE *f, char **buf, size_t *cap) {
  ssize_t n = getline(buf, cap, f);
  if (n < 0) return 0;
  while (n > 0 && ((*buf)[n - 1] == '\n' || (*buf)[n - 1] == '\r')) (*buf)[--n] = 0;
  return 1;
}

int convert_blank(const char *s) {
  while (*s && isspace((unsigned char)*s)) s++;
  return *s == 0;
}

int convert_parse_i64(const char *s, int64_t *v) {
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  if (end == s || *end || errno) return -1;
  *v = x;
  return 0;
}

void convert_names_fill(char **names, int n) {
  for (int i = 0; i < n; i++)
    if (!names[i]) {
      char b[32];
      snprintf(b, sizeof b, "class_%d", i);
      names[i] = convert_strdup(b);
    }
}

void convert_names_free(char **names, int n) {
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names);
}

/* ---- progress ---------------------------------------------------------------------------- */

void convert_progress_init(ConvertProgress *p, const char *what, const char *unit, int64_t total, int every) {
  p->what = what;
  p->unit = unit;
  p->total = total;
  p->every = every;
  p->tty = every > 0 && isatty(2);
  p->t0 = p->last = now_sec();
  p->next = every;
}

void convert_progress_step(ConvertProgress *p, int64_t done) {
  if (p->every <= 0) return;
  double t = now_sec(), rate = done / (t - p->t0 > 1e-9 ? t - p->t0 : 1e-9);
  if (p->tty) {
    if (t - p->last < 0.2 && done < p->total) return;
    p->last = t;
    fprintf(stderr, "\r  %s: %lld/%lld %s (%.0f/s)", p->what, (long long)done, (long long)p->total, p->unit, rate);
    if (done >= p->total) fputc('\n', stderr);
  } else if (done >= p->next || done >= p->total) {
    while (p->next <= done) p->next += p->every;
    fprintf(stderr, "  %s: %lld/%lld %s (%.0f/s)\n", p->what, (long long)done, (long long)p->total, p->unit, rate);
  }
}

/* ---- list files ------------------------------------------------------------------------ */

int convert_split_fields(char *line, char **f, int maxf) {
  int n = 0;
  int csv = strchr(line, ',') != NULL;
  char *p = line;
  while (*p && n < maxf) {
    if (!csv) {
      while (isspace((unsigned char)*p)) p++;
      if (!*p) break;
      f[n++] = p;
      while (*p && !isspace((unsigned char)*p)) p++;
      if (*p) *p++ = 0;
      continue;
    }
    while (*p == ' ') p++;
    if (*p == '"') {
      char *w = ++p;
      f[n++] = w;
      while (*p) {
        if (*p == '"' && p[1] == '"') { *w++ = '"'; p += 2; }
        else if (*p == '"') { p++; break; }
        else *w++ = *p++;
      }
      while (*p && *p != ',') p++;
      if (*p) p++;
      *w = 0;
    } else {
      f[n++] = p;
      while (*p && *p != ',') p++;
      if (*p) *p++ = 0;
      char *e = f[n - 1] + strlen(f[n - 1]);
      while (e > f[n - 1] && isspace((unsigned char)e[-1])) *--e = 0;
    }
  }
  return n;
}

void convert_idlines_free(ConvertIdLines *l) {
  for (int64_t i = 0; l->rest && i < l->n; i++) free(l->rest[i]);
  free(l->id);
  free(l->rest);
  memset(l, 0, sizeof *l);
}

int convert_idlines_read(const char *path, ConvertIdLines *l) {
  memset(l, 0, sizeof *l);
  FILE *f = fopen(path, "r");
  if (!f) return err_set("%s: cannot open (%s)", path, strerror(errno));
  char *buf = NULL;
  size_t cap = 0;
  int64_t lineno = 0;
  int rc = 0;
  while (rc == 0 && convert_read_line(f, &buf, &cap)) {
    lineno++;
    if (convert_blank(buf) || buf[0] == '#') continue;
    char *p = buf;
    while (isspace((unsigned char)*p)) p++;
    char *sp = p;
    while (*sp && !isspace((unsigned char)*sp)) sp++;
    char *rest = sp;
    while (isspace((unsigned char)*rest)) rest++;
    *sp = 0;
    int64_t id;
    if (convert_parse_i64(p, &id) != 0 || !*rest) {
      rc = err_set("%s:%lld: expected '<id> <value>', got '%s'", path, (long long)lineno, buf);
      break;
    }
    if (l->n == l->cap) {
      l->cap = l->cap ? 2 * l->cap : 1024;
      l->id = realloc(l->id, (size_t)l->cap * sizeof *l->id);
      l->rest = realloc(l->rest, (size_t)l->cap * sizeof *l->rest);
      /* unreachable in tests: allocation failure */
      CHECK(l->id && l->rest, "out of memory");
    }
    l->id[l->n] = id;
    l->rest[l->n++] = convert_strdup(rest);
  }
  free(buf);
  fclose(f);
  if (rc == 0 && l->n == 0) rc = err_set("%s: no entries", path);
  if (rc != 0) convert_idlines_free(l);
  return rc;
}
