/* tests/unit/coordinator/test_pool_validate.c — pooling of `validate` results.
 *
 * DerSimonian-Laird against values computed by hand (a separate python
 * transcription of the textbook formulas, numbers pasted here), the
 * homogeneous case (tau^2 = I^2 = 0, equals the fixed-effect estimate),
 * refusal of bad inputs, the t quantiles, and the message-level pooling:
 * confusion cells summed, a withheld cell makes the threshold partial (no
 * pooled rates), withheld groups never contribute.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "pool_validate.h"

static void test_dl_hand(void **state)
{
    (void)state;
    double y[] = { 0.5, 1.0, 1.5, 0.8 }, v[] = { 0.04, 0.09, 0.0625, 0.01 };
    pool_meta m;
    assert_int_equal(pool_meta_dl(y, v, 4, &m), 0);
    assert_true(fabs(m.q - 10.303871439006574) < 1e-9);
    assert_true(fabs(m.tau2 - 0.09156593406593405) < 1e-9);
    assert_true(fabs(m.mu - 0.9142747048483588) < 1e-9);
    assert_true(fabs(m.se - 0.1842869802394942) < 1e-9);
    assert_true(fabs(m.i2 - 0.7088472990216929) < 1e-9);
    assert_true(m.has_pi);
    assert_true(fabs(m.pi_lo - (-0.6101498953529882)) < 1e-6);
    assert_true(fabs(m.lo - (m.mu - 1.959963984540054 * m.se)) < 1e-12);
}

static void test_dl_homogeneous(void **state)
{
    (void)state;
    double y[] = { 1.0, 1.0 }, v[] = { 0.1, 0.3 };
    pool_meta m;
    assert_int_equal(pool_meta_dl(y, v, 2, &m), 0);
    assert_true(m.tau2 == 0.0);
    assert_true(m.i2 == 0.0);
    assert_true(fabs(m.mu - 1.0) < 1e-12);
    assert_true(fabs(m.se - sqrt(1.0 / (10.0 + 1.0 / 0.3))) < 1e-12);
    assert_false(m.has_pi);   /* needs 3 studies */
    double bad[] = { 0.1, 0.0 };
    assert_int_equal(pool_meta_dl(y, bad, 2, &m), SDF_EINVAL);
    assert_int_equal(pool_meta_dl(y, v, 0, &m), SDF_EINVAL);
}

static void test_auc_logit(void **state)
{
    (void)state;
    double auc[] = { 0.70, 0.75, 0.80 }, se[] = { 0.03, 0.02, 0.025 };
    pool_meta m;
    assert_int_equal(pool_meta_auc(auc, se, 3, &m), 0);
    assert_true(fabs(m.q - 6.483092601220956) < 1e-9);
    assert_true(fabs(m.tau2 - 0.04021315852405841) < 1e-9);
    assert_true(fabs(m.mu - 0.75111475059859) < 1e-9);
    assert_true(fabs(m.lo - 0.696579033440114) < 1e-9);
    assert_true(fabs(m.pi_hi - 0.9853534362001795) < 1e-6);
    double one[] = { 1.0 };
    assert_int_equal(pool_meta_auc(one, se, 1, &m), SDF_EINVAL);
}

static void test_t_quantiles(void **state)
{
    (void)state;
    assert_true(fabs(pool_t975(1) - 12.7062047) < 1e-7);
    assert_true(fabs(pool_t975(10) - 2.2281389) < 1e-7);
    assert_true(fabs(pool_t975(40) - 2.0210754) < 1e-5);
    assert_true(fabs(pool_t975(1000) - 1.9623391) < 1e-5);
}

/* ---- message level ---- */

static Sdefed__ValidateCount *vc(int64_t v, Sdefed__CellStatus st)
{
    Sdefed__ValidateCount *c = malloc(sizeof *c);
    sdefed__validate_count__init(c);
    c->value = v;
    c->status = st;
    return c;
}

#define R SDEFED__CELL_STATUS__CELL_ROUNDED
#define S SDEFED__CELL_STATUS__CELL_SUPPRESSED

static Sdefed__Validation *val(double auc, double se, int64_t tp, int64_t fp, int64_t tn,
                               int64_t fn, Sdefed__CellStatus fn_status)
{
    Sdefed__Validation *v = malloc(sizeof *v);
    sdefed__validation__init(v);
    v->released = true;
    v->auc = auc;
    v->auc_se = se;
    v->n = vc(tp + fp + tn + fn, R);
    v->events = vc(tp + fn, R);
    v->n_thresholds = 1;
    v->thresholds = calloc(1, sizeof *v->thresholds);
    Sdefed__ThresholdMetrics *t = malloc(sizeof *t);
    sdefed__threshold_metrics__init(t);
    t->threshold = 0.5;
    t->tp = vc(tp, R);
    t->fp = vc(fp, R);
    t->tn = vc(tn, R);
    t->fn = vc(fn_status == S ? 0 : fn, fn_status);
    v->thresholds[0] = t;
    v->n_bins = 1;
    v->bins = calloc(1, sizeof *v->bins);
    Sdefed__CalibrationBin *b = malloc(sizeof *b);
    sdefed__calibration_bin__init(b);
    b->lo = 0;
    b->hi = 1;
    b->n = vc(tp + fp + tn + fn, R);
    b->events = vc(tp + fn, R);
    b->released = true;
    b->mean_predicted = auc;   /* any number: checks the n-weighted mean */
    v->bins[0] = b;
    return v;
}

static void run_pool(Sdefed__Validation **vs, size_t n, Sdefed__FederatedResult *r,
                     Sdefed__SiteResult *srs, Sdefed__SiteResult **ptrs)
{
    for (size_t i = 0; i < n; i++) {
        sdefed__site_result__init(&srs[i]);
        srs[i].status = SDEFED__SITE_STATUS__SITE_OK;
        srs[i].n_validations = 1;
        srs[i].validations = &vs[i];
        ptrs[i] = &srs[i];
    }
    sdefed__federated_result__init(r);
    r->kind = SDEFED__QUERY_KIND__KIND_VALIDATE;
    r->n_sites = n;
    r->sites = ptrs;
    assert_int_equal(pool_result(r), 0);
}

static void test_pool_messages(void **state)
{
    (void)state;
    Sdefed__Validation *vs[3] = {
        val(0.70, 0.03, 40, 20, 100, 15, R),
        val(0.75, 0.02, 50, 30, 200, 25, R),
        val(0.80, 0.025, 60, 10, 300, 0, S),
    };
    Sdefed__SiteResult srs[3], *ptrs[3];
    Sdefed__FederatedResult r;

    run_pool(vs, 2, &r, srs, ptrs);
    assert_int_equal(r.n_pooled_validations, 1);
    Sdefed__PooledValidation *p = r.pooled_validations[0];
    assert_int_equal(p->sites, 2);
    assert_int_equal(p->n_thresholds, 1);
    assert_int_equal(p->thresholds[0]->tp->value, 90);
    assert_int_equal(p->thresholds[0]->fn->value, 40);
    assert_true(p->thresholds[0]->released);
    assert_true(fabs(p->thresholds[0]->sensitivity - 90.0 / 130.0) < 1e-12);
    assert_false(p->partial);
    assert_true(p->bins[0]->released);
    assert_int_equal(p->bins[0]->n->value, 175 + 305);
    assert_true(fabs(p->bins[0]->mean_predicted - (0.70 * 175 + 0.75 * 305) / 480.0) < 1e-12);
    pool_free_cells(&r);

    /* third site withheld its FN cell: pooled cells are lower bounds, no rates */
    run_pool(vs, 3, &r, srs, ptrs);
    p = r.pooled_validations[0];
    assert_int_equal(p->sites, 3);
    assert_true(fabs(p->auc - 0.75111475059859) < 1e-9);
    assert_true(p->partial);
    assert_false(p->thresholds[0]->released);
    assert_true(p->thresholds[0]->sensitivity == 0.0);
    assert_int_equal(p->thresholds[0]->fn->value, 40);
    pool_free_cells(&r);

    /* a withheld group contributes nothing */
    vs[0]->released = false;
    run_pool(vs, 1, &r, srs, ptrs);
    assert_int_equal(r.n_pooled_validations, 0);
    pool_free_cells(&r);

    /* a (hostile) site repeating its group 3 times still counts once:
     * never more meta-analysis entries than sites */
    vs[0]->released = true;
    Sdefed__Validation *dup[3] = { vs[0], vs[0], vs[0] };
    Sdefed__SiteResult one = SDEFED__SITE_RESULT__INIT, *onep = &one;
    one.status = SDEFED__SITE_STATUS__SITE_OK;
    one.n_validations = 3;
    one.validations = dup;
    sdefed__federated_result__init(&r);
    r.kind = SDEFED__QUERY_KIND__KIND_VALIDATE;
    r.n_sites = 1;
    r.sites = &onep;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled_validations, 1);
    assert_int_equal(r.pooled_validations[0]->sites, 1);
    pool_free_cells(&r);

    for (size_t i = 0; i < 3; i++)
        sdefed__validation__free_unpacked(vs[i], NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dl_hand),
        cmocka_unit_test(test_dl_homogeneous),
        cmocka_unit_test(test_auc_logit),
        cmocka_unit_test(test_t_quantiles),
        cmocka_unit_test(test_pool_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
