/* check_loss.c: `proxygml check-loss [--ref] FILE.h5 [FILE.h5 ...]`, the loss
 * against golden HDF5 files (include/losscheck.h). Exit 0 all within
 * tolerance, 1 a mismatch, 2 bad input (one line naming the problem). */
#include "tools.h"

#include "common.h"
#include "h5io.h"
#include "losscheck.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* 0 all within tolerance, 1 mismatch, 2 bad input */
static int check_one(const char *path, int use_ref) {
  hid_t f;
  if (h5io_open(path, &f) != 0) {
    fprintf(stderr, "check-loss: %s\n", err_msg());
    return 2;
  }
  LossCheckCase c;
  if (losscheck_case_read(&c, f) != 0) {
    fprintf(stderr, "check-loss: %s: %s\n", path, err_msg());
    losscheck_case_free(&c);
    H5Fclose(f);
    return 2;
  }
  LossCheckOut o;
  losscheck_compute(&o, &c, use_ref);
  const char *prec = use_ref ? "float64 reference" : "float32";
  const BaselineParams *h = &c.base;
  switch (c.kind) {
  case LOSS_PROXYGML:
    printf("%s: proxygml B=%d D=%d C=%d N=%d K=%d lambda=%g scale=%g (%s)\n", path, c.B, c.D, c.C, c.N, c.K, c.lambda,
           c.scale, prec);
    break;
  case LOSS_PROXYNCA: printf("%s: proxynca B=%d D=%d C=%d scale=%g (%s)\n", path, c.B, c.D, c.C, h->nca_scale, prec); break;
  case LOSS_PROXYANCHOR:
    printf("%s: proxyanchor B=%d D=%d C=%d margin=%g alpha=%g (%s)\n", path, c.B, c.D, c.C, h->pa_margin, h->pa_alpha,
           prec);
    break;
  case LOSS_SOFTTRIPLE:
    printf("%s: softtriple B=%d D=%d C=%d centers=%d lambda=%g gamma=%g tau=%g margin=%g (%s)\n", path, c.B, c.D,
           c.C, h->st_centers, h->st_lambda, h->st_gamma, h->st_tau, h->st_margin, prec);
    break;
  default:
    printf("%s: normsoftmax B=%d D=%d C=%d temperature=%g (%s)\n", path, c.B, c.D, c.C, h->ns_temperature, prec);
    break;
  }
  LossCheckItem items[LOSSCHECK_NITEMS];
  int nitems = losscheck_items(items, &o, &c, use_ref);
  int failures = 0, compared = 0;
  double worst_ratio = 0;
  for (int i = 0; i < nitems; i++) {
    LossCheckResult r;
    int got = losscheck_compare(&r, f, &items[i]);
    if (got < 0) {
      printf("  %-18s unreadable: %s\n", items[i].name, err_msg());
      failures++;
    } else if (got > 0) {
      printf("  %-18s max_abs %.3e  max_rel %.3e  tol %.1e  %s\n", items[i].name, r.max_abs, r.max_rel, r.tol,
             r.ok ? "ok" : "MISMATCH");
      compared++;
      if (!r.ok) failures++;
      if (r.tol > 0) worst_ratio = fmax(worst_ratio, r.max_abs / r.tol);
    }
  }
  int rc = failures ? 1 : 0;
  if (!compared) {
    fprintf(stderr, "check-loss: %s: holds no expected dataset to compare with\n", path);
    rc = 2;
  }
  printf("%s: %s (%d quantities, worst at %.2f of its tolerance)\n", path, rc == 0 ? "ok" : "MISMATCH", compared,
         worst_ratio);
  losscheck_out_free(&o);
  losscheck_case_free(&c);
  H5Fclose(f);
  return rc;
}

int tool_check_loss(int argc, char **argv) {
  int use_ref = 0, nfiles = 0, worst = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("usage: proxygml check-loss [--ref] FILE.h5 [FILE.h5 ...]\n"
             "Computes a loss and its gradients from the inputs of each golden file (x_raw,\n"
             "labels, proxies) and compares every expected dataset present. Which loss: a\n"
             "file with attribute loss_name (ProxyNCALoss, ProxyAnchorLoss, SoftTripleLoss,\n"
             "NormalizedSoftmaxLoss) is a baseline with its hyper-parameters as attributes\n"
             "(tests/data/README.md); otherwise ProxyGML (attributes C, N, K or r, lambda,\n"
             "scale). --ref uses the float64 reference instead of the float32 implementation\n"
             "(tolerance ~1e-10). Exit 0 ok, 1 mismatch, 2 bad input.\n");
      return 0;
    }
    if (!strcmp(argv[i], "--ref")) { use_ref = 1; continue; }
    if (argv[i][0] == '-') {
      fprintf(stderr, "check-loss: unknown option '%s'\n", argv[i]);
      return 2;
    }
  }
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-') continue;
    int rc = check_one(argv[i], use_ref);
    nfiles++;
    if (rc == 2 || (rc == 1 && worst != 2)) worst = rc;
  }
  if (!nfiles) {
    fprintf(stderr, "check-loss: no file given (usage: proxygml check-loss [--ref] FILE.h5 ...)\n");
    return 2;
  }
  return worst;
}
