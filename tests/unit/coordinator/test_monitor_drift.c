/* tests/unit/coordinator/test_monitor_drift.c — drift monitor band evaluation (issue 6 item 3).
 *
 * monitor_band_out: limits apply only when set, the edges are inside, NaN
 * (a withheld number) is never out of band. monitor_drift_look over a
 * hand-built validate FederatedResult: the pooled AUC and CI are the
 * coordinator's (whole-site group only), the pooled calibration slope is the
 * n-weighted mean of the released, converged site slopes, sites that are
 * refused or withheld contribute nothing and make the look partial, and
 * out_of_band names exactly the metrics outside the band.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "monitors.h"

static void test_band_out(void **state)
{
    (void)state;
    assert_false(monitor_band_out(0.5, false, 0, false, 0));        /* no limits */
    assert_true(monitor_band_out(0.69, true, 0.7, false, 0));
    assert_false(monitor_band_out(0.7, true, 0.7, false, 0));       /* edge is inside */
    assert_false(monitor_band_out(0.9, true, 0.7, false, 0));
    assert_true(monitor_band_out(1.31, true, 0.8, true, 1.3));
    assert_false(monitor_band_out(1.3, true, 0.8, true, 1.3));
    assert_true(monitor_band_out(0.79, true, 0.8, true, 1.3));
    assert_false(monitor_band_out(-5.0, false, 0.8, true, 1.3));    /* only the upper limit */
    assert_false(monitor_band_out(NAN, true, 0.7, true, 0.9));
    assert_true(monitor_band_out(-0.1, true, 0.0, false, 0));       /* 0 is a real limit */
}

/* ---- a hand-built FederatedResult ---- */

typedef struct fixture {
    Sdefed__FederatedResult r;
    Sdefed__SiteResult s[3], *sp[3];
    Sdefed__Validation v[3], *vp[3][2], sub;   /* sub: a subgroup (strata), ignored */
    Sdefed__ValidateCount n[3];
    Sdefed__Stratum st;
    Sdefed__Stratum *stp;
    Sdefed__PooledValidation pooled, pooled_sub, *pp[2];
} fixture;

static void site(fixture *f, int i, const char *name, Sdefed__SiteStatus status, bool released,
                 int64_t n, double auc, double slope, bool converged)
{
    sdefed__site_result__init(&f->s[i]);
    sdefed__validation__init(&f->v[i]);
    sdefed__validate_count__init(&f->n[i]);
    f->s[i].site = (char *)name;
    f->s[i].status = status;
    f->n[i].value = n;
    f->n[i].status = SDEFED__CELL_STATUS__CELL_ROUNDED;
    f->v[i].released = released;
    f->v[i].n = &f->n[i];
    f->v[i].auc = auc;
    f->v[i].auc_lo = auc - 0.05;
    f->v[i].auc_hi = auc + 0.05;
    f->v[i].cal_slope = slope;
    f->v[i].cal_converged = converged;
    f->vp[i][0] = &f->sub;       /* the subgroup first: must be skipped */
    f->vp[i][1] = &f->v[i];
    f->s[i].validations = f->vp[i];
    f->s[i].n_validations = status == SDEFED__SITE_STATUS__SITE_OK ? 2 : 0;
    f->sp[i] = &f->s[i];
}

static void fixture_init(fixture *f)
{
    memset(f, 0, sizeof *f);
    sdefed__federated_result__init(&f->r);
    sdefed__stratum__init(&f->st);
    f->stp = &f->st;
    sdefed__validation__init(&f->sub);
    f->sub.strata = &f->stp;
    f->sub.n_strata = 1;
    f->sub.released = true;
    f->sub.auc = 0.1;          /* far out of any band: must not count */
    f->sub.cal_slope = 9.0;
    f->sub.cal_converged = true;
    site(f, 0, "a", SDEFED__SITE_STATUS__SITE_OK, true, 1000, 0.80, 1.10, true);
    site(f, 1, "b", SDEFED__SITE_STATUS__SITE_OK, true, 3000, 0.60, 0.70, true);
    site(f, 2, "c", SDEFED__SITE_STATUS__SITE_OK, true, 500, 0.75, 5.00, false);
    f->r.sites = f->sp;
    f->r.n_sites = 3;
    sdefed__pooled_validation__init(&f->pooled);
    sdefed__pooled_validation__init(&f->pooled_sub);
    f->pooled.sites = 3;
    f->pooled.auc = 0.66;
    f->pooled.auc_lo = 0.61;
    f->pooled.auc_hi = 0.71;
    f->pooled_sub.strata = &f->stp;
    f->pooled_sub.n_strata = 1;
    f->pooled_sub.sites = 3;
    f->pooled_sub.auc = 0.99;
    f->pp[0] = &f->pooled_sub;
    f->pp[1] = &f->pooled;
    f->r.pooled_validations = f->pp;
    f->r.n_pooled_validations = 2;
}

static double num(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

static bool out_has(json_t *look, const char *metric)
{
    json_t *a = json_object_get(look, "out_of_band");
    for (size_t i = 0; i < json_array_size(a); i++)
        if (strcmp(json_string_value(json_array_get(a, i)), metric) == 0)
            return true;
    return false;
}

static void test_pooled_values_and_band(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    monitor_band b = { .has_auc_min = true, .auc_min = 0.7, .has_slope_min = true,
                       .slope_min = 0.8, .has_slope_max = true, .slope_max = 1.2 };
    bool partial = false;
    json_t *look = monitor_drift_look(&f.r, &b, &partial);
    assert_non_null(look);
    json_t *p = json_object_get(look, "pooled");
    assert_true(fabs(num(p, "auc") - 0.66) < 1e-12);
    assert_true(fabs(num(p, "auc_lo") - 0.61) < 1e-12);
    assert_true(fabs(num(p, "auc_hi") - 0.71) < 1e-12);
    /* n-weighted over a and b; c did not converge */
    double want = (1000 * 1.10 + 3000 * 0.70) / 4000.0;
    assert_true(fabs(num(p, "cal_slope") - want) < 1e-12);
    assert_int_equal((int)num(p, "slope_sites"), 2);
    assert_false(partial);
    json_t *sites = json_object_get(look, "sites");
    assert_int_equal(json_array_size(sites), 3);
    json_t *c = json_array_get(sites, 2);
    assert_string_equal(json_string_value(json_object_get(c, "site")), "c");
    assert_true(json_is_null(json_object_get(c, "cal_slope")));
    assert_true(fabs(num(c, "auc") - 0.75) < 1e-12);
    assert_true(fabs(num(json_array_get(sites, 0), "auc") - 0.80) < 1e-12);
    /* AUC 0.66 < 0.7 out; slope 0.8 inside [0.8, 1.2] */
    assert_true(out_has(look, "auc"));
    assert_false(out_has(look, "cal_slope"));
    json_decref(look);

    /* a slope band above the pooled slope; no AUC band */
    monitor_band b2 = { .has_slope_min = true, .slope_min = 0.9 };
    look = monitor_drift_look(&f.r, &b2, &partial);
    assert_non_null(look);
    assert_false(out_has(look, "auc"));
    assert_true(out_has(look, "cal_slope"));
    json_decref(look);

    /* everything inside */
    monitor_band b3 = { .has_auc_min = true, .auc_min = 0.5, .has_auc_max = true,
                        .auc_max = 0.9 };
    look = monitor_drift_look(&f.r, &b3, &partial);
    assert_int_equal(json_array_size(json_object_get(look, "out_of_band")), 0);
    json_decref(look);
}

static void test_withheld_and_refused_sites(void **state)
{
    (void)state;
    fixture f;
    fixture_init(&f);
    /* b withheld its group, c refused: only a's slope; partial */
    f.v[1].released = false;
    site(&f, 2, "c", SDEFED__SITE_STATUS__SITE_REFUSED, false, 0, 0, 0, false);
    monitor_band b = { .has_slope_max = true, .slope_max = 1.05 };
    bool partial = false;
    json_t *look = monitor_drift_look(&f.r, &b, &partial);
    assert_non_null(look);
    json_t *p = json_object_get(look, "pooled");
    assert_true(fabs(num(p, "cal_slope") - 1.10) < 1e-12);
    assert_true(partial);   /* b answered ok but withheld the group */
    assert_true(out_has(look, "cal_slope"));
    json_t *sb = json_array_get(json_object_get(look, "sites"), 1);
    assert_false(json_is_true(json_object_get(sb, "released")));
    assert_true(json_is_null(json_object_get(sb, "auc")));
    json_t *sc = json_array_get(json_object_get(look, "sites"), 2);
    assert_string_equal(json_string_value(json_object_get(sc, "status")), "refused");
    json_decref(look);

    /* all released but one site refused: partial too */
    fixture g;
    fixture_init(&g);
    site(&g, 1, "b", SDEFED__SITE_STATUS__SITE_REFUSED, false, 0, 0, 0, false);
    partial = false;
    json_t *lk = monitor_drift_look(&g.r, &b, &partial);
    assert_non_null(lk);
    assert_true(partial);
    json_decref(lk);
    fixture_init(&g);
    partial = false;
    lk = monitor_drift_look(&g.r, &b, &partial);
    assert_false(partial);
    json_decref(lk);

    /* no pooled AUC at all (no site released): null, partial, never out of band */
    f.pooled.sites = 0;
    f.v[0].released = false;
    monitor_band b2 = { .has_auc_min = true, .auc_min = 0.99, .has_slope_min = true,
                        .slope_min = 5.0 };
    partial = false;
    look = monitor_drift_look(&f.r, &b2, &partial);
    assert_non_null(look);
    p = json_object_get(look, "pooled");
    assert_true(json_is_null(json_object_get(p, "auc")));
    assert_true(json_is_null(json_object_get(p, "cal_slope")));
    assert_true(partial);
    assert_int_equal(json_array_size(json_object_get(look, "out_of_band")), 0);
    json_decref(look);
}

/* The per-site excess test an alert uses to name sites: exact Poisson
 * upper tails, hand-computed as 1 - sum_{k<c} e^-mu mu^k / k!. */
static void test_site_excess_p(void **state)
{
    (void)state;
    assert_true(fabs(monitor_site_excess_p(1, 1.0) - 0.6321205588285577) < 1e-9);
    assert_true(fabs(monitor_site_excess_p(3, 0.5) - 0.014387677966970713) < 1e-9);
    assert_true(fabs(monitor_site_excess_p(20, 19.9) - 0.5208376631733144) < 1e-9);
    assert_true(fabs(monitor_site_excess_p(30, 16.7) - 0.0021178972913832306) < 1e-9);
    assert_true(monitor_site_excess_p(0, 5.0) == 1.0);
    assert_true(monitor_site_excess_p(4, 0.0) == 0.0);
    /* a site at its expectation is not named; one far above it is */
    assert_false(monitor_site_excess_p(20, 19.9) < MON_SITE_ALPHA);
    assert_true(monitor_site_excess_p(80, 16.7) < MON_SITE_ALPHA);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_site_excess_p),
        cmocka_unit_test(test_band_out),
        cmocka_unit_test(test_pooled_values_and_band),
        cmocka_unit_test(test_withheld_and_refused_sites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
