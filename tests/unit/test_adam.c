/* test_adam.c: Adam against torch.optim.Adam's numbers in the golden adam.h5
 * (single steps with given state, and a 12-step trajectory with a learning
 * rate drop), the float64 twin, groups, true freezing, and the step decay. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "h5io.h"
#include "optim.h"
#include "testutil.h"

static double attr(hid_t g, const char *name) {
  double v;
  cr_assert_eq(h5io_attr_f64(g, name, &v), 0, "%s", err_msg());
  return v;
}

static void check_single_step(const char *group) {
  hid_t f, g;
  cr_assert_eq(h5io_open(testdata_path("adam.h5"), &f), 0, "%s", err_msg());
  g = H5Gopen2(f, group, H5P_DEFAULT);
  cr_assert_geq(g, 0, "group %s missing", group);
  size_t n;
  double *p = read_f64(g, "param", &n), *gr = read_f64(g, "grad", NULL), *m = read_f64(g, "m", NULL),
         *v = read_f64(g, "v", NULL);
  Adam o;
  adam_init(&o, n, attr(g, "beta1"), attr(g, "beta2"), attr(g, "eps"), attr(g, "weight_decay"));
  adam_add_group(&o, 0, n, attr(g, "lr"));
  o.groups[0].t = (long)attr(g, "t") - 1;   /* state before this step */
  float *pf = xmalloc_f32(n), *gf = xmalloc_f32(n);
  for (size_t i = 0; i < n; i++) { pf[i] = (float)p[i]; gf[i] = (float)gr[i]; o.m[i] = (float)m[i]; o.v[i] = (float)v[i]; }
  adam_step(&o, pf, gf);
  double *np = read_f64(g, "new_param", NULL), *nm = read_f64(g, "new_m", NULL), *nv = read_f64(g, "new_v", NULL);
  cr_assert(check_close_f32(group, pf, np, n, 0, 1e-6), "%s: new_param", group);
  cr_assert(check_close_f32(group, o.m, nm, n, 0, 1e-6), "%s: new_m", group);
  cr_assert(check_close_f32(group, o.v, nv, n, 0, 1e-6), "%s: new_v", group);
  /* the float64 twin agrees to round-off */
  adam_step_ref(p, m, v, gr, n, (long)attr(g, "t"), attr(g, "lr"), attr(g, "beta1"), attr(g, "beta2"), attr(g, "eps"),
                attr(g, "weight_decay"));
  cr_assert(check_close(group, p, np, n, 0, 1e-12), "%s: ref new_param", group);
  cr_assert(check_close(group, m, nm, n, 0, 1e-12), "%s: ref new_m", group);
  free(p); free(gr); free(m); free(v); free(np); free(nm); free(nv); free(pf); free(gf);
  adam_free(&o);
  H5Gclose(g);
  H5Fclose(f);
}

Test(adam, first_step_proxy_lr) { check_single_step("first_step_proxy_lr"); }
Test(adam, step10_model_lr) { check_single_step("step10_model_lr"); }
Test(adam, step250_no_wd) { check_single_step("step250_no_wd"); }
Test(adam, step3_decayed_lr_odd_betas) { check_single_step("step3_decayed_lr_odd_betas"); }

Test(adam, trajectory_with_lr_drop) {
  hid_t f, g;
  cr_assert_eq(h5io_open(testdata_path("adam.h5"), &f), 0, "%s", err_msg());
  g = H5Gopen2(f, "trajectory", H5P_DEFAULT);
  cr_assert_geq(g, 0);
  size_t n, ng, nl;
  double *p0 = read_f64(g, "param0", &n), *grads = read_f64(g, "grads", &ng), *lr = read_f64(g, "lr", &nl);
  double *params = read_f64(g, "params", NULL), *fm = read_f64(g, "final_m", NULL), *fv = read_f64(g, "final_v", NULL);
  int steps = (int)attr(g, "steps");
  cr_assert_eq(ng, (size_t)steps * n);
  Adam o;
  adam_init(&o, n, attr(g, "beta1"), attr(g, "beta2"), attr(g, "eps"), attr(g, "weight_decay"));
  adam_add_group(&o, 0, n, lr[0]);
  float *pf = xmalloc_f32(n), *gf = xmalloc_f32(n);
  for (size_t i = 0; i < n; i++) pf[i] = (float)p0[i];
  for (int t = 0; t < steps; t++) {
    o.groups[0].lr = lr[t];
    for (size_t i = 0; i < n; i++) gf[i] = (float)grads[(size_t)t * n + i];
    adam_step(&o, pf, gf);
    char lab[64];
    snprintf(lab, sizeof lab, "trajectory step %d", t + 1);
    cr_assert(check_close_f32(lab, pf, params + (size_t)t * n, n, 0, 1e-5), "%s", lab);
  }
  cr_assert(check_close_f32("final_m", o.m, fm, n, 0, 1e-5));
  cr_assert(check_close_f32("final_v", o.v, fv, n, 0, 1e-5));
  free(p0); free(grads); free(lr); free(params); free(fm); free(fv); free(pf); free(gf);
  adam_free(&o);
  H5Gclose(g);
  H5Fclose(f);
}

/* two groups with their own learning rates behave as two separate optimizers */
Test(adam, groups_are_independent) {
  enum { N = 10 };
  float p[N], g[N], q[N];
  for (int i = 0; i < N; i++) { p[i] = q[i] = 0.1f * i - 0.3f; g[i] = 0.01f * (i % 3) - 0.01f; }
  Adam both, a, b;
  adam_init(&both, N, 0.9f, 0.999f, 0.01f, 1e-4f);
  adam_add_group(&both, 0, 4, 1e-3f);
  adam_add_group(&both, 4, N, 0.03f);
  adam_init(&a, 4, 0.9f, 0.999f, 0.01f, 1e-4f);
  adam_add_group(&a, 0, 4, 1e-3f);
  adam_init(&b, N - 4, 0.9f, 0.999f, 0.01f, 1e-4f);
  adam_add_group(&b, 0, N - 4, 0.03f);
  for (int s = 0; s < 3; s++) {
    adam_step(&both, p, g);
    adam_step(&a, q, g);
    adam_step(&b, q + 4, g + 4);
  }
  cr_assert_eq(memcmp(p, q, sizeof p), 0);
  adam_free(&both); adam_free(&a); adam_free(&b);
}

/* a frozen group does not move at all, not even by weight decay, and its step
 * count stands still, so unfreezing continues as if no time had passed */
Test(adam, freeze_is_true) {
  enum { N = 6 };
  float p[N] = {1, -2, 3, -4, 5, -6}, g[N] = {0.1f, 0.2f, -0.1f, 0.3f, 0, -0.2f}, before[N];
  Adam o;
  adam_init(&o, N, 0.9f, 0.999f, 0.01f, 1e-2f);
  adam_add_group(&o, 0, 3, 1e-2f);
  int frozen = adam_add_group(&o, 3, N, 1e-2f);
  adam_step(&o, p, g);
  memcpy(before, p, sizeof p);
  float m_before[N];
  memcpy(m_before, o.m, sizeof m_before);
  o.groups[frozen].frozen = 1;
  for (int s = 0; s < 5; s++) adam_step(&o, p, g);
  cr_assert_eq(memcmp(p + 3, before + 3, 3 * sizeof(float)), 0, "frozen parameters moved");
  cr_assert_eq(memcmp(o.m + 3, m_before + 3, 3 * sizeof(float)), 0, "frozen moments moved");
  cr_assert_eq(o.groups[frozen].t, 1);
  cr_assert_eq(o.groups[0].t, 6);
  cr_assert_neq(memcmp(p, before, 3 * sizeof(float)), 0, "the other group should move");
  adam_free(&o);
}

Test(adam, step_decay_at_listed_epochs) {
  Adam o;
  adam_init(&o, 2, 0.9f, 0.999f, 0.01f, 0);
  adam_add_group(&o, 0, 1, 1e-4f);
  adam_add_group(&o, 1, 2, 0.03f);
  const int decay[] = {20, 40};
  float net[50], prx[50];
  for (int e = 0; e < 50; e++) {
    adam_decay_lr(&o, e, decay, 2, 0.1f);
    net[e] = o.groups[0].lr;
    prx[e] = o.groups[1].lr;
  }
  /* the 20th and 40th (1-based) epochs are the first with the lower rate */
  cr_assert_float_eq(net[18], 1e-4f, 1e-12);
  cr_assert_float_eq(net[19], 1e-5f, 1e-12);
  cr_assert_float_eq(net[38], 1e-5f, 1e-12);
  cr_assert_float_eq(net[39], 1e-6f, 1e-13);
  cr_assert_float_eq(prx[19], 0.003f, 1e-9);
  cr_assert_float_eq(prx[49], 0.0003f, 1e-10);
  adam_free(&o);
}

/* Sharded (ZeRO-1): a state over pieces of the block, given their gradients
 * compact, moves those parameters exactly as the whole-block state does.
 * Guaranteed bitwise: the update is elementwise, the same float operations
 * per element (no contraction: -ffp-contract=off), the same scalars. The
 * pieces come in bucket order (top first) and cross the group boundary. */
Test(adam, sharded_pieces_update_as_the_whole_block) {
  enum { N = 1000, NB = 300 };
  static float p[N], q[N], g[N], gq[N];
  for (int i = 0; i < N; i++) { p[i] = q[i] = 0.01f * (float)(i % 37) - 0.2f; }
  const OptimRange pieces[] = {{900, 1000}, {250, 420}, {0, 40}};
  Adam full, shard;
  adam_init(&full, N, 0.9, 0.999, 0.01, 1e-4);
  adam_init(&shard, N, 0.9, 0.999, 0.01, 1e-4);
  adam_shard(&shard, pieces, 3);
  cr_assert_eq(shard.n_own, 100 + 170 + 40, "the moments cover the pieces only");
  for (Adam *o = &full; o; o = o == &full ? &shard : NULL) {
    adam_add_group(o, 0, NB, 1e-3);
    adam_add_group(o, NB, N, 0.03);
  }
  for (int s = 0; s < 4; s++) {
    for (int i = 0; i < N; i++) g[i] = 0.001f * (float)((i * 7 + s * 13) % 23) - 0.01f;
    size_t k = 0;
    for (int j = 0; j < 3; j++)
      for (size_t i = pieces[j].begin; i < pieces[j].end; i++) gq[k++] = g[i];
    adam_step(&full, p, g);
    adam_step(&shard, q, gq);
  }
  for (int j = 0; j < 3; j++) {
    size_t a = pieces[j].begin, len = pieces[j].end - a;
    cr_assert_eq(memcmp(p + a, q + a, len * sizeof(float)), 0, "piece %d moved differently", j);
    cr_assert_eq(memcmp(full.m + a, shard.m + shard.piece_off[j], len * sizeof(float)), 0);
    cr_assert_eq(memcmp(full.v + a, shard.v + shard.piece_off[j], len * sizeof(float)), 0);
  }
  cr_assert_eq(q[500], 0.01f * (float)(500 % 37) - 0.2f, "outside the pieces nothing moves");
  adam_free(&full); adam_free(&shard);
}
