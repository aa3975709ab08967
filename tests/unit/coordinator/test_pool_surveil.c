/* tests/unit/coordinator/test_pool_surveil.c — pooling surveil rows (pool_surveil, issue 6).
 *
 * Two ok sites and one refused site report rows per period and arm: the
 * pooled counts and person-days must be the sums of what the sites
 * released, a number withheld by one site marks the pooled row
 * lower_bound, the pooled rate must come from the sites that released both
 * events and person-days (and equal surv_rate of those sums), the rate
 * ratio pairs each exposure row with its comparator row, and a refused
 * site contributes nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "pool_surveil.h"
#include "sdefed/surveil_stats.h"

#define EX SDEFED__CELL_STATUS__CELL_EXACT
#define RO SDEFED__CELL_STATUS__CELL_ROUNDED
#define SU SDEFED__CELL_STATUS__CELL_SUPPRESSED

static void row(Sdefed__SurveilRow *x, const char *period, bool cmp, int64_t p,
                Sdefed__CellStatus ps, int64_t e, Sdefed__CellStatus es, int64_t d,
                Sdefed__CellStatus ds)
{
    sdefed__surveil_row__init(x);
    x->period = (char *)period;
    x->comparator = cmp;
    x->persons = p;
    x->persons_status = ps;
    x->events = e;
    x->events_status = es;
    x->person_days = d;
    x->person_days_status = ds;
}

static const Sdefed__SurveilRow *pooled(const Sdefed__FederatedResult *r, const char *period,
                                        bool cmp)
{
    for (size_t i = 0; i < r->n_pooled_surveil; i++)
        if (strcmp(r->pooled_surveil[i]->period, period) == 0 &&
            r->pooled_surveil[i]->comparator == cmp)
            return r->pooled_surveil[i];
    return NULL;
}

static void test_sums_lower_bound_rates_and_ratio(void **state)
{
    (void)state;
    Sdefed__SurveilRow a[4], b[4], c[1];
    Sdefed__SurveilRow *ap[4] = { &a[0], &a[1], &a[2], &a[3] };
    Sdefed__SurveilRow *bp[4] = { &b[0], &b[1], &b[2], &b[3] };
    Sdefed__SurveilRow *cp[1] = { &c[0] };
    row(&a[0], "2019", false, 100, RO, 20, RO, 36500, RO);
    row(&a[1], "2020", false, 50, RO, 0, SU, 18000, RO);
    row(&a[2], "2019", true, 200, RO, 10, RO, 73000, RO);
    row(&a[3], "2020", true, 40, EX, 12, EX, 9000, EX);
    row(&b[0], "2019", false, 60, EX, 15, EX, 20000, EX);
    row(&b[1], "2020", false, 70, EX, 14, EX, 21000, EX);
    row(&b[2], "2019", true, 0, SU, 0, SU, 0, SU);
    row(&b[3], "2020", true, 30, EX, 11, EX, 8000, EX);
    row(&c[0], "2019", false, 999, EX, 999, EX, 999, EX);

    Sdefed__SiteResult s[3], *sp[3] = { &s[0], &s[1], &s[2] };
    for (int i = 0; i < 3; i++)
        sdefed__site_result__init(&s[i]);
    s[0].site = (char *)"a";
    s[0].status = SDEFED__SITE_STATUS__SITE_OK;
    s[0].surveil = ap;
    s[0].n_surveil = 4;
    s[1].site = (char *)"b";
    s[1].status = SDEFED__SITE_STATUS__SITE_OK;
    s[1].surveil = bp;
    s[1].n_surveil = 4;
    s[2].site = (char *)"c";
    s[2].status = SDEFED__SITE_STATUS__SITE_REFUSED;
    s[2].surveil = cp;
    s[2].n_surveil = 1;

    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    r.kind = SDEFED__QUERY_KIND__KIND_SURVEIL;
    r.sites = sp;
    r.n_sites = 3;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled_surveil, 4);

    const Sdefed__SurveilRow *x = pooled(&r, "2019", false);
    assert_non_null(x);
    assert_int_equal(x->persons, 160);
    assert_int_equal(x->persons_status, RO);
    assert_int_equal(x->events, 35);
    assert_int_equal(x->person_days, 56500);
    assert_false(x->lower_bound);
    assert_int_equal(x->sites, 2);
    double rate, lo, hi;
    assert_int_equal(surv_rate(35, 56500, &rate, &lo, &hi), 0);
    assert_true(fabs(x->rate - rate) < 1e-9 && fabs(x->rate_lo - lo) < 1e-9 &&
                fabs(x->rate_hi - hi) < 1e-9);
    assert_int_equal(x->rate_status, RO);

    /* 2020 exposure: site a withheld events -> lower bound, rate from b only */
    x = pooled(&r, "2020", false);
    assert_non_null(x);
    assert_int_equal(x->persons, 120);
    assert_int_equal(x->events, 14);
    assert_int_equal(x->person_days, 39000);
    assert_true(x->lower_bound);
    assert_int_equal(x->sites, 1);
    assert_int_equal(surv_rate(14, 21000, &rate, &lo, &hi), 0);
    assert_true(fabs(x->rate - rate) < 1e-9);
    /* ratio against the comparator's pooled sums (11 + 12 over 17000 days) */
    double rr, rlo, rhi;
    assert_int_equal(surv_rate_ratio(14, 21000, 23, 17000, &rr, &rlo, &rhi), 0);
    assert_int_not_equal(x->rr_status, SU);
    assert_true(fabs(x->rate_ratio - rr) < 1e-9 && fabs(x->rr_lo - rlo) < 1e-9);

    /* 2019 comparator: b withheld everything */
    x = pooled(&r, "2019", true);
    assert_non_null(x);
    assert_int_equal(x->persons, 200);
    assert_true(x->lower_bound);
    assert_int_equal(x->rr_status, SU);   /* comparator rows carry no ratio */
    x = pooled(&r, "2020", true);
    assert_int_equal(x->persons_status, EX);
    assert_int_equal(x->rate_status, EX);

    /* re-pooling frees and rebuilds */
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled_surveil, 4);
    pool_free_cells(&r);
    assert_int_equal(r.n_pooled_surveil, 0);
    assert_null(r.pooled_surveil);
}

static void test_all_suppressed_stays_suppressed(void **state)
{
    (void)state;
    Sdefed__SurveilRow a;
    Sdefed__SurveilRow *ap[1] = { &a };
    row(&a, "all", false, 0, SU, 0, SU, 0, SU);
    Sdefed__SiteResult s;
    Sdefed__SiteResult *sp[1] = { &s };
    sdefed__site_result__init(&s);
    s.site = (char *)"a";
    s.status = SDEFED__SITE_STATUS__SITE_OK;
    s.surveil = ap;
    s.n_surveil = 1;
    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    r.kind = SDEFED__QUERY_KIND__KIND_SURVEIL;
    r.sites = sp;
    r.n_sites = 1;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled_surveil, 1);
    const Sdefed__SurveilRow *x = r.pooled_surveil[0];
    assert_int_equal(x->persons_status, SU);
    assert_int_equal(x->events_status, SU);
    assert_int_equal(x->person_days_status, SU);
    assert_int_equal(x->rate_status, SU);
    assert_true(x->lower_bound);
    assert_int_equal(x->sites, 0);
    pool_free_cells(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sums_lower_bound_rates_and_ratio),
        cmocka_unit_test(test_all_suppressed_stays_suppressed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
