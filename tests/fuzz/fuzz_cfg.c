/* fuzz_cfg.c: libFuzzer harness of the configuration parser (include/cfg.h).
 *
 * Input: a config file up to the first NUL byte, then `--set` overrides, one
 * per NUL-terminated piece. The file is loaded with cfg_load from the
 * harness's working directory, every override applied with cfg_set, then
 * cfg_validate and cfg_resolve_k run. Beyond "no crash, no sanitizer report":
 *   - a failed cfg_load or cfg_set leaves the Config as it was (cfg.h);
 *   - K from cfg_resolve_k lies in [1, C*N], and is k when k is set;
 *     a valid Config with C > 0 resolves K for its own C;
 *   - a valid Config survives cfg_dump -> cfg_load byte for byte (cfg.h:
 *     "a commented libconfig file that cfg_load reads back to the same
 *     struct"), with the same cfg_hash, and cfg_write_attrs writes it
 *     (one valid config in 64: an HDF5 file costs a hundred parses).
 * `@include` may name only what is in the working directory: inc.cfg,
 * bad.cfg, list.cfg, the directory sub (written here), the input itself or
 * the directory itself (fuzz_include_ok).
 */
#include "fuzz_util.h"

#include "cfg.h"
#include "common.h"

#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SETS 64

static void setup(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  static const char INC[] = "N = 8;\nk = 12;\n", BAD[] = "N = ;\n",
                    LIST[] = "decay_epochs = [2, 4];\neval_epochs = \"all\";\nrecall_ks = [1, 10];\n";
  fuzz_write("inc.cfg", INC, sizeof INC - 1);
  fuzz_write("bad.cfg", BAD, sizeof BAD - 1);
  fuzz_write("list.cfg", LIST, sizeof LIST - 1);
  mkdir("sub", 0777);   /* what an @include or config may wrongly name */
}

static void check_k(const Config *c, int valid) {
  static const int CS[] = {1, 2, 3, 10, 100, 1000, 65536, 1 << 24, INT_MAX, 0, -1};
  for (int i = 0; i <= (int)(sizeof CS / sizeof CS[0]); i++) {
    int C = i < (int)(sizeof CS / sizeof CS[0]) ? CS[i] : c->C, K = -7;
    if (cfg_resolve_k(c, C, &K) != 0) {
      FUZZ_CHECK(K == -7, "cfg_resolve_k failed but wrote K = %d", K);
      FUZZ_CHECK(!(valid && C == c->C && C > 0), "a valid config does not resolve K for its C = %d: %s", C, err_msg());
      continue;
    }
    FUZZ_CHECK(C >= 1 && K >= 1 && (int64_t)K <= (int64_t)C * c->N, "K = %d outside [1, C*N] (C = %d, N = %d)", K, C,
               c->N);
    FUZZ_CHECK(c->k <= 0 || K == c->k, "K = %d but k = %d", K, c->k);
  }
}

static void check_valid(const Config *c) {
  for (int e = -1; e <= 3; e++) {
    cfg_eval_at(c, e);
    double lr = cfg_lr_at(c, c->lr, e);
    FUZZ_CHECK(isfinite(lr) && lr >= 0 && lr <= c->lr, "cfg_lr_at(epoch %d) = %g from lr %g", e, lr, c->lr);
  }
  cfg_eval_at(c, c->epochs);

  char *dump = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&dump, &n);
  FUZZ_CHECK(f, "open_memstream failed");
  cfg_dump(c, f);
  fclose(f);
  fuzz_write("dump.cfg", dump, n);
  Config d;
  cfg_defaults(&d);
  FUZZ_CHECK(cfg_load(&d, "dump.cfg") == 0, "cfg_load refuses what cfg_dump wrote: %s\n%s", err_msg(), dump);
  FUZZ_CHECK(!memcmp(&d, c, sizeof d), "cfg_dump -> cfg_load changed the configuration:\n%s", dump);
  FUZZ_CHECK(cfg_hash(&d) == cfg_hash(c), "cfg_hash differs after cfg_dump -> cfg_load");
  free(dump);

  /* about 10 ms each (HDF5 under ASan): one valid config in 64, chosen by its hash */
  if (cfg_hash(c) % 64) return;
  /* in memory: the core driver without a backing store writes no file */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(fapl, 1 << 16, 0);
  hid_t file = H5Fcreate("attrs.h5", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  FUZZ_CHECK(file >= 0, "cannot create an in-memory HDF5 file");
  fuzz_h5_mark();
  FUZZ_CHECK(cfg_write_attrs(c, file) == 0, "cfg_write_attrs failed on a valid config: %s", err_msg());
  fuzz_h5_check("cfg_write_attrs");
  H5Fclose(file);
}

static int run(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    setup();
    ready = 1;
  }
  char *buf = malloc(size + 1);   /* size + 1: the last piece gets its NUL */
  FUZZ_CHECK(buf, "out of memory");
  memcpy(buf, data, size);
  buf[size] = 0;
  size_t tlen = strlen(buf);
  if (!fuzz_include_ok(buf)) {
    free(buf);
    return -1;
  }
  fuzz_write("fuzz.cfg", buf, tlen);

  Config c, before;
  cfg_defaults(&c);
  before = c;
  if (cfg_load(&c, "fuzz.cfg") != 0)
    FUZZ_CHECK(!memcmp(&c, &before, sizeof c), "a failed cfg_load changed the configuration (%s)", err_msg());
  int nset = 0;
  for (char *s = buf + tlen + 1; s <= buf + size && nset < MAX_SETS; s += strlen(s) + 1, nset++) {
    before = c;
    if (cfg_set(&c, s) != 0)
      FUZZ_CHECK(!memcmp(&c, &before, sizeof c), "a failed cfg_set(\"%s\") changed the configuration (%s)", s, err_msg());
  }
  int valid = cfg_validate(&c) == 0;
  check_k(&c, valid);
  if (valid) check_valid(&c);
  free(buf);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_enter();
  int rc = run(data, size);
  fuzz_leave();
  return rc;
}
