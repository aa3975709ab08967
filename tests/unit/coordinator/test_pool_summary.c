/* tests/unit/coordinator/test_pool_summary.c — pooling summary statistics (pool_summaries).
 *
 * Two sites release n, mean and sd per stratum; the pooled mean and sd must
 * equal those of the union of the sites' raw values (computed here), a
 * suppressed stratum at one site marks the pooled one partial and is left
 * out, sites that did not answer ok contribute nothing, and quantiles are
 * never pooled.
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

typedef struct fixture {
    Sdefed__Stratum st[4];
    Sdefed__Stratum *stp[4][1];
    Sdefed__Summary sum[4];
    Sdefed__Summary *sump[3][2];
    Sdefed__SiteResult site[3];
    Sdefed__SiteResult *sitep[3];
} fixture;

static void stats(const double *v, size_t n, double *mean, double *sd)
{
    double s = 0, ss = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (v[i] - *mean) * (v[i] - *mean);
    *sd = sqrt(ss / (double)(n - 1));
}

static void summary(fixture *f, size_t k, const char *sex, int64_t n, double mean, double sd,
                    Sdefed__CellStatus st)
{
    sdefed__stratum__init(&f->st[k]);
    f->st[k].name = (char *)"sex";
    f->st[k].value = (char *)sex;
    f->stp[k][0] = &f->st[k];
    sdefed__summary__init(&f->sum[k]);
    f->sum[k].strata = f->stp[k];
    f->sum[k].n_strata = 1;
    f->sum[k].n = n;
    f->sum[k].n_status = st;
    f->sum[k].mean = mean;
    f->sum[k].mean_status = st == SDEFED__CELL_STATUS__CELL_SUPPRESSED ? st
                                                                       : SDEFED__CELL_STATUS__CELL_EXACT;
    f->sum[k].sd = sd;
    f->sum[k].sd_status = f->sum[k].mean_status;
}

static void test_pooled_mean_and_sd_equal_the_union(void **state)
{
    (void)state;
    fixture f;
    double a[] = { 5.1, 6.2, 7.3, 8.0, 6.6, 5.9, 7.7, 6.1, 6.9, 7.2, 8.8, 5.5 };
    double b[] = { 9.0, 8.1, 7.4, 6.5, 7.9, 8.3, 9.9, 7.0, 6.8, 7.5 };
    double ab[22];
    memcpy(ab, a, sizeof a);
    memcpy(ab + 12, b, sizeof b);
    double ma, sa, mb, sb, m, s;
    stats(a, 12, &ma, &sa);
    stats(b, 10, &mb, &sb);
    stats(ab, 22, &m, &s);

    summary(&f, 0, "female", 12, ma, sa, SDEFED__CELL_STATUS__CELL_EXACT);
    summary(&f, 1, "female", 10, mb, sb, SDEFED__CELL_STATUS__CELL_EXACT);
    summary(&f, 2, "male", 0, 0, 0, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    summary(&f, 3, "male", 40, 3.0, 1.0, SDEFED__CELL_STATUS__CELL_ROUNDED);
    for (int i = 0; i < 3; i++) {
        sdefed__site_result__init(&f.site[i]);
        f.site[i].status = SDEFED__SITE_STATUS__SITE_OK;
        f.sitep[i] = &f.site[i];
    }
    f.sump[0][0] = &f.sum[0];
    f.sump[0][1] = &f.sum[2];
    f.site[0].summaries = f.sump[0];
    f.site[0].n_summaries = 2;
    f.sump[1][0] = &f.sum[1];
    f.sump[1][1] = &f.sum[3];
    f.site[1].summaries = f.sump[1];
    f.site[1].n_summaries = 2;
    /* a third site timed out: whatever it carries is ignored */
    f.site[2].status = SDEFED__SITE_STATUS__SITE_TIMEOUT;
    f.sump[2][0] = &f.sum[3];
    f.site[2].summaries = f.sump[2];
    f.site[2].n_summaries = 1;

    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    r.kind = SDEFED__QUERY_KIND__KIND_SUMMARY;
    r.sites = f.sitep;
    r.n_sites = 3;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled_summaries, 2);
    const Sdefed__Summary *fe = r.pooled_summaries[0], *ma_ = r.pooled_summaries[1];
    assert_string_equal(fe->strata[0]->value, "female");
    assert_int_equal(fe->n, 22);
    assert_int_equal(fe->n_status, SDEFED__CELL_STATUS__CELL_EXACT);
    assert_true(fabs(fe->mean - m) < 1e-9);
    assert_true(fabs(fe->sd - s) < 1e-9);
    assert_int_equal(fe->sd_status, SDEFED__CELL_STATUS__CELL_EXACT);
    assert_false(fe->partial);
    assert_int_equal(fe->sites, 2);
    assert_int_equal(fe->n_quantiles, 0);   /* never pooled */

    assert_string_equal(ma_->strata[0]->value, "male");
    assert_true(ma_->partial);               /* site 0 suppressed it */
    assert_int_equal(ma_->n, 40);            /* only site 1 (site 2 timed out) */
    assert_int_equal(ma_->n_status, SDEFED__CELL_STATUS__CELL_ROUNDED);
    assert_true(fabs(ma_->mean - 3.0) < 1e-9);
    assert_int_equal(ma_->mean_status, SDEFED__CELL_STATUS__CELL_ROUNDED);   /* rounded weights */
    assert_int_equal(ma_->sites, 1);
    pool_free_cells(&r);
    assert_null(r.pooled_summaries);
    assert_int_equal(r.n_pooled_summaries, 0);
}

static void test_count_results_have_no_summaries(void **state)
{
    (void)state;
    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    r.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled_summaries, 0);
    pool_free_cells(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pooled_mean_and_sd_equal_the_union),
        cmocka_unit_test(test_count_results_have_no_summaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
