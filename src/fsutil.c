/* fsutil.c: directories and atomic file replacement (include/fsutil.h). */
#include "fsutil.h"

#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fsutil_mkdir_p(const char *dir) {
  char buf[4096];
  if (!dir[0]) return 0;
  if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return err_set("directory name too long: '%.60s...'", dir);
  for (char *p = buf + 1;; p++) {
    if (*p != '/' && *p) continue;
    char c = *p;
    *p = 0;
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) return err_set("cannot create directory '%s': %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) return err_set("cannot create directory '%s': a file is in the way", buf);
    if (!(*p = c)) break;
  }
  return 0;
}

int fsutil_mkdir_parent(const char *path) {
  const char *slash = strrchr(path, '/');
  if (!slash || slash == path) return 0;
  char dir[4096];
  if ((size_t)(slash - path) >= sizeof dir) return err_set("path too long: '%.60s...'", path);
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = 0;
  return fsutil_mkdir_p(dir);
}

void fsutil_temp_name(char *buf, size_t cap, const char *path) {
  snprintf(buf, cap, "%s.tmp.%ld", path, (long)getpid());
}

static int sync_path(const char *path) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return err_set("%s: cannot reopen to flush it (%s)", path, strerror(errno));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  /* unreachable in tests: fsync fails only on a broken disk or file system */
  return rc == 0 ? 0 : err_set("%s: fsync failed (%s)", path, strerror(e));
}

int fsutil_commit(const char *tmp, const char *path) {
  int rc = sync_path(tmp);
  if (rc == 0 && rename(tmp, path) != 0) rc = err_set("%s: cannot rename %s to it (%s)", path, tmp, strerror(errno));
  if (rc != 0) {
    unlink(tmp);
    return -1;
  }
  /* the rename itself reaches the disk with the directory */
  char dir[4096];
  const char *slash = strrchr(path, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else snprintf(dir, sizeof dir, "%.*s", (int)(slash == path ? 1 : slash - path), path);
  return sync_path(dir);
}
