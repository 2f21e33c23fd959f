/* fsutil.h: the file-system steps every writer of the project shares.
 *
 * Atomic replacement: a file is written under a temporary name beside its
 * final one, flushed to disk, then renamed over the final name, and the
 * directory is flushed too. A crash at any point leaves either the old file
 * or the new one under the final name, never a part of one.
 *
 *   char tmp[PATH_MAX];
 *   fsutil_temp_name(tmp, sizeof tmp, path);     // path + ".tmp.<pid>"
 *   ...write and close tmp...
 *   if (fsutil_commit(tmp, path) != 0) ...      // -1: err_msg() says which step failed
 *
 * Every function returns 0, or -1 with a one-line reason in err_msg().
 */
#ifndef PROXYGML_FSUTIL_H
#define PROXYGML_FSUTIL_H

#include <stddef.h>

/* mkdir -p: creates dir and its missing parents; -1 names the first
 * component that cannot be made (or a file in the way) */
int fsutil_mkdir_p(const char *dir);
/* fsutil_mkdir_p of the directory part of a file path (nothing for a bare name) */
int fsutil_mkdir_parent(const char *path);
/* the temporary name beside `path` for one process's atomic write of it */
void fsutil_temp_name(char *buf, size_t cap, const char *path);
/* flushes tmp to disk, renames it over path, flushes the directory; on
 * failure tmp is removed and path is untouched */
int fsutil_commit(const char *tmp, const char *path);

#endif
