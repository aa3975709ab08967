/* tests/unit/agent/test_cohort.c — the issue 3 cohort language against truths computed in C.
 *
 * A generator writes a small OMOP database (persons with sex, birth year,
 * race, ethnicity, care site, observation periods, drugs, conditions,
 * measurements with values and units, deaths) from a seeded PRNG, and keeps
 * the same events in C arrays. Each test runs a JSON spec through
 * spec_parse_json + query_run (site policy min_cell 1, rounding 1, so counts
 * are exact) and compares every stratum with an answer computed here by
 * plain loops over the C arrays — independently of the SQL compiler:
 * windows, index event first/all, exclusions with descendants, any/not,
 * first_only, death, value and unit filters, age/sex/observation filters,
 * year/quarter/race/ethnicity/age-band/care-site strata, summaries, and
 * refusals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "query.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

#define OMOP_FIXTURE_NAME "cohort"
#include "omop_fixture.h"

/* The count in the cell whose strata (in order) have these values. */
static int64_t cell_value(const Sdefed__QueryResult *r, const char *v0, const char *v1)
{
    for (size_t k = 0; k < r->n_cells; k++) {
        const Sdefed__Cell *c = r->cells[k];
        if ((c->n_strata == 0 && !v0) ||
            (c->n_strata >= 1 && v0 && strcmp(c->strata[0]->value, v0) == 0 &&
             (c->n_strata == 1 || (v1 && strcmp(c->strata[1]->value, v1) == 0))))
            return c->value;
    }
    return -1;
}

static int64_t total(const Sdefed__QueryResult *r)
{
    int64_t t = 0;
    for (size_t k = 0; k < r->n_cells; k++)
        t += r->cells[k]->value;
    return t;
}

static const char *sex_label(int g)
{
    return g == 8507 ? "male" : g == 8532 ? "female" : "unknown";
}

/* ---- truth helpers ---- */

static bool in(int c, const int *set, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (set[k] == c)
            return true;
    return false;
}

/* Earliest day of person p's events of type t in set (INT32_MAX if none). */
static int first_day(int p, char t, const int *set, size_t n)
{
    int best = INT32_MAX;
    for (size_t k = 0; k < NE; k++)
        if (E[k].p == p && E[k].t == t && in(E[k].concept, set, n) && E[k].day < best)
            best = E[k].day;
    return best;
}

static bool any_in_window(int p, char t, const int *set, size_t n, int idx, int a, int b)
{
    for (size_t k = 0; k < NE; k++)
        if (E[k].p == p && E[k].t == t && in(E[k].concept, set, n) &&
            E[k].day - idx >= a && E[k].day - idx <= b)
            return true;
    return false;
}

static const int NSAID[] = { 1001, 1002, 1003 };   /* 1001 with descendants */
static const int BLEED[] = { 2001, 2002 };        /* 2001 with descendants */

/* ---- tests ---- */

static void test_window_after_index_by_sex(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
        "\"index\":{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true},"
        "\"all\":[{\"domain\":\"condition\",\"concepts\":[2001],\"descendants\":true,"
        "\"window\":{\"start_days\":0,\"end_days\":365}}]},\"by\":[\"sex\"]}");
    int64_t want[3] = { 0 };   /* male, female, unknown */
    for (int p = 1; p <= NP; p++) {
        int idx = first_day(p, 'd', NSAID, 3);
        if (idx == INT32_MAX || !any_in_window(p, 'c', BLEED, 2, idx, 0, 365))
            continue;
        want[P[p].gender == 8507 ? 0 : P[p].gender == 8532 ? 1 : 2]++;
    }
    assert_true(want[0] + want[1] > 5);   /* the fixture exercises the window */
    assert_int_equal(cell_value(r, "male", NULL), want[0]);
    assert_int_equal(cell_value(r, "female", NULL), want[1]);
    assert_int_equal(cell_value(r, "unknown", NULL), want[2]);
    query_result_free(r);
}

/* Index event "all": any NSAID event may be the index; "first" only the earliest. */
static void test_index_event_all_vs_first(void **state)
{
    (void)state;
#define TMPL(EVENT)                                                                 \
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{" \
        "\"index\":{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true" EVENT "}," \
        "\"all\":[{\"domain\":\"measurement\",\"concepts\":[5001],\"value\":{\"min\":9.5},"   \
        "\"units\":[8554],\"window\":{\"start_days\":-60,\"end_days\":60}}]}}"
    int64_t want_first = 0, want_all = 0;
    for (int p = 1; p <= NP; p++) {
        bool any = false, first = false;
        int f = first_day(p, 'd', NSAID, 3);
        for (size_t k = 0; k < NE; k++) {
            if (E[k].p != p || E[k].t != 'd' || !in(E[k].concept, NSAID, 3))
                continue;
            bool ok = false;
            for (size_t j = 0; j < NE; j++)
                if (E[j].p == p && E[j].t == 'm' && E[j].value >= 9.5 && E[j].unit == 8554 &&
                    E[j].day - E[k].day >= -60 && E[j].day - E[k].day <= 60)
                    ok = true;
            any = any || ok;
            if (E[k].day == f)
                first = first || ok;
        }
        want_all += any;
        want_first += first;
    }
    assert_true(want_all > want_first);   /* the fixture tells them apart */
    Sdefed__QueryResult *r = run_ok(TMPL(""));
    assert_int_equal(total(r), want_first);
    query_result_free(r);
    r = run_ok(TMPL(",\"event\":\"all\""));
    assert_int_equal(total(r), want_all);
    query_result_free(r);
}

static void test_exclude_with_descendants(void **state)
{
    (void)state;
    /* 1001 with descendants minus 1003: persons with a 1001 or 1002 drug */
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
        "{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true,\"exclude\":[1003]}]}}");
    static const int set[] = { 1001, 1002 };
    int64_t want = 0;
    for (int p = 1; p <= NP; p++)
        want += first_day(p, 'd', set, 2) != INT32_MAX;
    assert_int_equal(total(r), want);
    query_result_free(r);
    /* excluding the parent with descendants leaves nothing */
    r = run_ok("{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
               "{\"domain\":\"drug\",\"concepts\":[1002,1003],\"exclude\":[1001],"
               "\"exclude_descendants\":true}]}}");
    assert_int_equal(total(r), 0);
    query_result_free(r);
}

/* Counts that read no index day (no window, age, observation or
 * date stratifier) are compiled without converting any event's date: the
 * same persons must qualify, whether the index is the first or every event. */
static void test_counts_without_index_day(void **state)
{
    (void)state;
#define TMPL_NODAY(EVENT)                                                             \
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"   \
        "\"index\":{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true" EVENT "}," \
        "\"sex\":[\"female\",\"unknown\"],"                                            \
        "\"all\":[{\"domain\":\"condition\",\"concepts\":[2001],\"descendants\":true},"  \
        "{\"not\":{\"domain\":\"drug\",\"concepts\":[3001]}}]},\"by\":[\"sex\"]}"
    static const int d3001[] = { 3001 };
    int64_t want_f = 0, want_u = 0;
    for (int p = 1; p <= NP; p++) {
        if (first_day(p, 'd', NSAID, 3) == INT32_MAX ||
            first_day(p, 'c', BLEED, 2) == INT32_MAX || first_day(p, 'd', d3001, 1) != INT32_MAX)
            continue;
        want_f += P[p].gender == 8532;
        want_u += P[p].gender != 8532 && P[p].gender != 8507;
    }
    assert_true(want_f > 5);
    for (int every = 0; every < 2; every++) {
        Sdefed__QueryResult *r = run_ok(every ? TMPL_NODAY(",\"event\":\"all\"") : TMPL_NODAY(""));
        assert_int_equal(cell_value(r, "female", NULL), want_f);
        assert_int_equal(cell_value(r, "male", NULL) > 0 ? 1 : 0, 0);
        assert_int_equal(total(r), want_f + want_u);
        query_result_free(r);
    }
#undef TMPL_NODAY
}

static void test_any_not_death(void **state)
{
    (void)state;
    /* (bleed OR death with a cause) AND NOT any 3001 drug; no index */
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
        "{\"any\":[{\"domain\":\"condition\",\"concepts\":[2001],\"descendants\":true},"
        "{\"domain\":\"death\",\"concepts\":[6001]}]},"
        "{\"not\":{\"domain\":\"drug\",\"concepts\":[3001]}}]},\"by\":[\"sex\"]}");
    static const int d3001[] = { 3001 };
    int64_t want = 0, any_death = 0;
    for (int p = 1; p <= NP; p++) {
        bool a = first_day(p, 'c', BLEED, 2) != INT32_MAX || P[p].death_cause == 6001;
        bool n = first_day(p, 'd', d3001, 1) == INT32_MAX;
        want += a && n;
        any_death += P[p].death >= 0;
    }
    assert_true(want > 5);
    assert_int_equal(total(r), want);
    query_result_free(r);
    /* death without concepts: any death */
    r = run_ok("{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"any\":["
               "{\"domain\":\"death\"}]}}");
    assert_int_equal(total(r), any_death);
    query_result_free(r);
}

/* first_only: the person's FIRST bleed is within a year after the index. */
static void test_first_only(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
        "\"index\":{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true},"
        "\"all\":[{\"domain\":\"condition\",\"concepts\":[2001],\"descendants\":true,"
        "\"first_only\":true,\"window\":{\"start_days\":0,\"end_days\":3650}}]}}");
    int64_t want = 0, loose = 0;
    for (int p = 1; p <= NP; p++) {
        int idx = first_day(p, 'd', NSAID, 3);
        if (idx == INT32_MAX)
            continue;
        int fb = first_day(p, 'c', BLEED, 2);
        want += fb != INT32_MAX && fb - idx >= 0 && fb - idx <= 3650;
        loose += any_in_window(p, 'c', BLEED, 2, idx, 0, 3650);
    }
    assert_true(loose > want);   /* first_only changes the answer here */
    assert_int_equal(total(r), want);
    query_result_free(r);
}

static void test_age_sex_observation(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
        "\"index\":{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true},"
        "\"age\":{\"min\":40,\"max\":70},\"sex\":[\"female\",\"unknown\"],"
        "\"observation\":{\"prior_days\":365,\"post_days\":30}}}");
    int64_t want = 0;
    for (int p = 1; p <= NP; p++) {
        int idx = first_day(p, 'd', NSAID, 3);
        if (idx == INT32_MAX || P[p].gender == 8507)
            continue;
        int age = year_of(idx) - P[p].yob;
        if (age < 40 || age > 70)
            continue;
        if (P[p].op_start <= idx - 365 && P[p].op_end >= idx + 30)
            want++;
    }
    assert_true(want > 3);
    assert_int_equal(total(r), want);
    query_result_free(r);
}

static void test_strata_year_quarter_race_ethnicity(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
        "\"index\":{\"domain\":\"drug\",\"concepts\":[3001]}},\"by\":[\"year\",\"race\"]}");
    static const int d3001[] = { 3001 };
    /* every (year, race) cell equals the loop's count */
    for (int y = 2005; y <= 2014; y++) {
        static const struct { int c; const char *l; } races[] = {
            { 8527, "white" }, { 8516, "black" }, { 8515, "asian" }, { 0, "unknown" },
            { 44814653, "other" },
        };
        for (size_t k = 0; k < 5; k++) {
            int64_t want = 0;
            for (int p = 1; p <= NP; p++) {
                int idx = first_day(p, 'd', d3001, 1);
                want += idx != INT32_MAX && year_of(idx) == y && P[p].race == races[k].c;
            }
            char ys[8];
            snprintf(ys, sizeof ys, "%d", y);
            assert_int_equal(cell_value(r, ys, races[k].l), want);
        }
    }
    query_result_free(r);

    r = run_ok("{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
               "\"index\":{\"domain\":\"drug\",\"concepts\":[3001]}},"
               "\"by\":[\"quarter\",\"ethnicity\"]}");
    int64_t want = 0;
    for (int p = 1; p <= NP; p++) {
        int idx = first_day(p, 'd', d3001, 1);
        want += idx != INT32_MAX && year_of(idx) == 2010 && (month_of(idx) - 1) / 3 == 2 &&
                P[p].eth == 38003564;
    }
    assert_int_equal(cell_value(r, "2010-Q3", "not_hispanic"), want);
    query_result_free(r);
}

static void test_age_band_width_and_care_site(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
        "{\"domain\":\"drug\",\"concepts\":[3001]}]},\"by\":[\"age_band\"],\"age_band_width\":5}");
    static const int d3001[] = { 3001 };
    int64_t want[20] = { 0 }, want_top = 0;
    for (int p = 1; p <= NP; p++) {
        int idx = first_day(p, 'd', d3001, 1);
        if (idx == INT32_MAX)
            continue;
        int age = year_of(idx) - P[p].yob;
        if (age >= 90)
            want_top++;
        else
            want[age / 5]++;
    }
    for (int b = 0; b < 18; b++) {
        char l[16];
        snprintf(l, sizeof l, "%d-%d", b * 5, b * 5 + 4);
        assert_int_equal(cell_value(r, l, NULL), want[b]);
    }
    assert_int_equal(cell_value(r, "90+", NULL), want_top);
    query_result_free(r);

    const char *cs = "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
                     "\"all\":[{\"domain\":\"drug\",\"concepts\":[3001]}]},\"by\":[\"care_site\"]}";
    r = run(cs);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);   /* not allowed */
    assert_non_null(strstr(r->reason, "care_site"));
    query_result_free(r);
    cfg.datasets[0].allow_care_site = true;
    r = run_ok(cs);
    cfg.datasets[0].allow_care_site = false;
    for (int site = 0; site <= 3; site++) {
        int64_t w = 0;
        for (int p = 1; p <= NP; p++)
            w += first_day(p, 'd', d3001, 1) != INT32_MAX && P[p].care_site == site;
        char l[16];
        snprintf(l, sizeof l, "%d", site);
        assert_int_equal(cell_value(r, site ? l : "unknown", NULL), w);
    }
    query_result_free(r);
}

static void test_summary_measurement_and_age(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"summary\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
        "\"index\":{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true}},"
        "\"summary\":{\"of\":\"measurement\",\"concepts\":[5001],\"units\":[8554],"
        "\"window\":{\"start_days\":-3650,\"end_days\":0}},\"by\":[\"sex\"]}");
    assert_int_equal(r->n_summaries, 3);
    for (size_t k = 0; k < r->n_summaries; k++) {
        const Sdefed__Summary *s = r->summaries[k];
        int64_t n = 0;
        double sum = 0;
        for (int p = 1; p <= NP; p++) {
            int idx = first_day(p, 'd', NSAID, 3);
            if (idx == INT32_MAX || strcmp(sex_label(P[p].gender), s->strata[0]->value) != 0)
                continue;
            /* latest value in [-3650, 0]; ties by the later measurement id */
            int bd = INT32_MIN;
            double bv = 0;
            for (size_t j = 0; j < NE; j++)
                if (E[j].p == p && E[j].t == 'm' && E[j].unit == 8554 &&
                    E[j].day - idx >= -3650 && E[j].day - idx <= 0 && E[j].day >= bd) {
                    bd = E[j].day;
                    bv = E[j].value;
                }
            if (bd != INT32_MIN) {
                n++;
                sum += bv;
            }
        }
        assert_int_equal(s->n, n);
        if (n >= 2) {
            assert_int_equal(s->mean_status, SDEFED__CELL_STATUS__CELL_ROUNDED);
            assert_true(fabs(s->mean - sum / (double)n) < 0.01);
        }
    }
    query_result_free(r);

    r = run_ok("{\"kind\":\"summary\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
               "\"all\":[{\"domain\":\"drug\",\"concepts\":[3001]}]},\"summary\":{\"of\":\"age\"}}");
    static const int d3001[] = { 3001 };
    int64_t n = 0;
    double sum = 0;
    for (int p = 1; p <= NP; p++) {
        int idx = first_day(p, 'd', d3001, 1);
        if (idx != INT32_MAX) {
            n++;
            sum += year_of(idx) - P[p].yob;
        }
    }
    assert_int_equal(r->n_summaries, 1);
    assert_int_equal(r->summaries[0]->n, n);
    assert_true(fabs(r->summaries[0]->mean - sum / (double)n) < 0.05);
    assert_int_equal(r->summaries[0]->n_quantiles, 3);
    query_result_free(r);
}

/* The site's policy applies to summaries: min_cell 10 suppresses small strata. */
static void test_summary_small_strata_suppressed(void **state)
{
    (void)state;
    cfg.policy.min_cell = 10;
    cfg.policy.rounding = 5;
    Sdefed__QueryResult *r = run_ok(
        "{\"kind\":\"summary\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{"
        "\"index\":{\"domain\":\"drug\",\"concepts\":[1002]}},\"summary\":{\"of\":\"age\"},"
        "\"by\":[\"race\",\"sex\"]}");
    bool some_suppressed = false;
    for (size_t k = 0; k < r->n_summaries; k++) {
        const Sdefed__Summary *s = r->summaries[k];
        if (s->n_status == SDEFED__CELL_STATUS__CELL_SUPPRESSED) {
            some_suppressed = true;
            assert_int_equal(s->mean_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
            assert_true(s->mean == 0.0 && s->sd == 0.0);
            for (size_t j = 0; j < s->n_quantiles; j++)
                assert_int_equal(s->quantiles[j]->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
        }
    }
    assert_true(some_suppressed);
    bool named = false;
    for (size_t k = 0; k < r->n_rules_fired; k++)
        named = named || strcmp(r->rules_fired[k], "stats_small_n") == 0;
    assert_true(named);
    query_result_free(r);
    cfg.policy.min_cell = 1;
    cfg.policy.rounding = 1;
}

static void test_refusals(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
        "{\"domain\":\"drug\",\"concepts\":[1001],\"exclude\":[777]}]}}");
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "unknown concept id 777"));
    query_result_free(r);
    r = run("{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
            "{\"domain\":\"measurement\",\"concepts\":[5001],\"units\":[778]}]}}");
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "unknown concept id 778"));
    query_result_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_after_index_by_sex),
        cmocka_unit_test(test_index_event_all_vs_first),
        cmocka_unit_test(test_exclude_with_descendants),
        cmocka_unit_test(test_counts_without_index_day),
        cmocka_unit_test(test_any_not_death),
        cmocka_unit_test(test_first_only),
        cmocka_unit_test(test_age_sex_observation),
        cmocka_unit_test(test_strata_year_quarter_race_ethnicity),
        cmocka_unit_test(test_age_band_width_and_care_site),
        cmocka_unit_test(test_summary_measurement_and_age),
        cmocka_unit_test(test_summary_small_strata_suppressed),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
