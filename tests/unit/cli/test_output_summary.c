/* tests/unit/cli/test_output_summary.c — rendering summary results (output.c, issue 3).
 *
 * A summary result with one released and one suppressed stratum at a site
 * and pooled statistics: JSON carries numbers with statuses and null for
 * anything suppressed (whatever number the message holds), pooled entries
 * have no quantiles; CSV has the documented columns; the table prints
 * "suppressed" and never the withheld numbers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"

static Sdefed__Stratum st_f = SDEFED__STRATUM__INIT, st_m = SDEFED__STRATUM__INIT;
static Sdefed__Stratum *sf[1] = { &st_f }, *sm[1] = { &st_m };
static Sdefed__Quantile q[3] = { SDEFED__QUANTILE__INIT, SDEFED__QUANTILE__INIT,
                                 SDEFED__QUANTILE__INIT };
static Sdefed__Quantile *qp[3] = { &q[0], &q[1], &q[2] };
static Sdefed__Summary s_f = SDEFED__SUMMARY__INIT, s_m = SDEFED__SUMMARY__INIT,
                       p_f = SDEFED__SUMMARY__INIT;
static Sdefed__Summary *site_s[2] = { &s_f, &s_m }, *pooled_s[1] = { &p_f };
static Sdefed__SiteResult site = SDEFED__SITE_RESULT__INIT, off = SDEFED__SITE_RESULT__INIT;
static Sdefed__SiteResult *sites[2] = { &site, &off };
static Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;

static void build(void)
{
    st_f.name = st_m.name = (char *)"sex";
    st_f.value = (char *)"female";
    st_m.value = (char *)"male";
    const double ps[3] = { 0.25, 0.5, 0.75 }, vs[3] = { 6.25, 7.05, 8.1 };
    for (int i = 0; i < 3; i++) {
        q[i].p = ps[i];
        q[i].value = vs[i];
        q[i].status = SDEFED__CELL_STATUS__CELL_ROUNDED;
    }
    s_f.strata = sf;
    s_f.n_strata = 1;
    s_f.n = 120;
    s_f.n_status = SDEFED__CELL_STATUS__CELL_ROUNDED;
    s_f.mean = 7.123;
    s_f.mean_status = SDEFED__CELL_STATUS__CELL_ROUNDED;
    s_f.sd = 1.232;
    s_f.sd_status = SDEFED__CELL_STATUS__CELL_ROUNDED;
    s_f.quantiles = qp;
    s_f.n_quantiles = 3;
    /* suppressed stratum carrying numbers that must never be shown */
    s_m.strata = sm;
    s_m.n_strata = 1;
    s_m.n = 3;
    s_m.n_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    s_m.mean = 99.77;
    s_m.mean_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    s_m.sd = 55.55;
    s_m.sd_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    site.site = (char *)"site-a";
    site.status = SDEFED__SITE_STATUS__SITE_OK;
    site.reason = (char *)"";
    site.summaries = site_s;
    site.n_summaries = 2;
    off.site = (char *)"site-b";
    off.status = SDEFED__SITE_STATUS__SITE_OFFLINE;
    off.reason = (char *)"not connected";
    p_f = s_f;
    p_f.quantiles = NULL;
    p_f.n_quantiles = 0;
    p_f.partial = true;
    p_f.sites = 1;
    r.query_id = (char *)"q-1";
    r.kind = SDEFED__QUERY_KIND__KIND_SUMMARY;
    r.project = (char *)"demo";
    r.requester = (char *)"analyst";
    r.sites = sites;
    r.n_sites = 2;
    r.pooled_summaries = pooled_s;
    r.n_pooled_summaries = 1;
}

static char *render(out_format fmt)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(out_write_result(f, &r, fmt), 0);
    fclose(f);
    return buf;
}

static void test_json(void **state)
{
    (void)state;
    build();
    json_t *j = out_result_json(&r);
    assert_non_null(j);
    json_t *sum = json_object_get(json_array_get(json_object_get(j, "sites"), 0), "summaries");
    assert_int_equal(json_array_size(sum), 2);
    json_t *f0 = json_array_get(sum, 0), *m0 = json_array_get(sum, 1);
    assert_int_equal(json_integer_value(json_object_get(f0, "n")), 120);
    assert_string_equal(json_string_value(json_object_get(f0, "n_status")), "rounded");
    assert_true(json_real_value(json_object_get(f0, "mean")) > 7.12);
    assert_int_equal(json_array_size(json_object_get(f0, "quantiles")), 3);
    assert_true(json_is_null(json_object_get(m0, "n")));
    assert_true(json_is_null(json_object_get(m0, "mean")));
    assert_true(json_is_null(json_object_get(m0, "sd")));
    assert_string_equal(json_string_value(json_object_get(m0, "mean_status")), "suppressed");
    json_t *pooled = json_array_get(json_object_get(json_object_get(j, "pooled"), "summaries"), 0);
    assert_non_null(pooled);
    assert_null(json_object_get(pooled, "quantiles"));
    assert_true(json_is_true(json_object_get(pooled, "partial")));
    assert_int_equal(json_integer_value(json_object_get(pooled, "sites")), 1);
    char *text = json_dumps(j, JSON_COMPACT);
    assert_null(strstr(text, "99.77"));
    assert_null(strstr(text, "55.55"));
    free(text);
    json_decref(j);
}

static void test_csv(void **state)
{
    (void)state;
    build();
    char *out = render(OUT_CSV);
    assert_non_null(strstr(out, "site,site_status,sex,n,n_status,mean,mean_status,sd,sd_status,"
                                "p25,p50,p75,partial\r\n"));
    assert_non_null(strstr(out, "site-a,ok,female,120,rounded,7.123,rounded,1.232,rounded,"
                                "6.25,7.05,8.1,\r\n"));
    assert_non_null(strstr(out, "site-a,ok,male,,suppressed,,suppressed,,suppressed,,,,\r\n"));
    assert_non_null(strstr(out, "site-b,offline: not connected,"));
    assert_non_null(strstr(out, "pooled,,female,120,rounded,7.123,rounded,1.232,rounded,,,,true"));
    assert_null(strstr(out, "99.77"));
    free(out);
}

static void test_table(void **state)
{
    (void)state;
    build();
    char *out = render(OUT_TABLE);
    assert_non_null(strstr(out, "median"));
    assert_non_null(strstr(out, "7.123"));
    assert_non_null(strstr(out, "suppressed"));
    assert_non_null(strstr(out, "partial"));
    assert_non_null(strstr(out, "not pooled"));
    assert_null(strstr(out, "99.77"));
    assert_null(strstr(out, "55.55"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_csv),
        cmocka_unit_test(test_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
