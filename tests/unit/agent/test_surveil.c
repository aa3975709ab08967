/* tests/unit/agent/test_surveil.c — the `surveil` kind (issue 6) against truths computed in C.
 *
 * The seeded OMOP generator shared with test_cohort.c (omop_fixture.h):
 * persons with observation periods, deaths, drugs and conditions, kept in
 * C arrays too. Each test runs a surveil spec
 * through spec_parse_json + query_run and compares every period with an
 * answer computed by plain loops over the C arrays: first vs every
 * exposure, censoring at observation end, death, next index and first
 * outcome, quarter/year periods, sex strata, the comparator's rate ratio,
 * and the disclosure rules (suppressed counts withhold rates, small or
 * dominated person-time is withheld).
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
#include "sdefed/surveil_stats.h"
#include "disclosure/stats.h"

#define OMOP_FIXTURE_NAME "surveil"
#include "omop_fixture.h"

/* ---- truth helpers ---- */

static bool in(int c, const int *set, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (set[k] == c)
            return true;
    return false;
}

/* ---- the surveil truth ---- */

static const int NSAID[] = { 1001, 1002, 1003 };   /* 1001 with descendants */
static const int BLEED[] = { 2001, 2002 };        /* 2001 with descendants */

#define NPER 480          /* most periods a test uses */
#define NSEX 3

typedef struct tcell {
    int64_t persons, events;
    double days;
    double contrib[NP];
    size_t n;
} tcell;

static tcell T[NPER * NSEX];
static int compared_days;   /* rows whose person-days were compared */

static int sex_index(int g)
{
    return g == 8507 ? 0 : g == 8532 ? 1 : 2;
}

typedef enum { PER_ALL, PER_MONTH, PER_QUARTER, PER_YEAR } per_kind;

static int period_index(per_kind k, int d)
{
    int y = year_of(d), m = month_of(d);
    switch (k) {
    case PER_MONTH: return (y - 2005) * 12 + m - 1;
    case PER_QUARTER: return (y - 2005) * 4 + (m - 1) / 3;
    case PER_YEAR: return y - 2005;
    default: return 0;
    }
}

static void period_name(per_kind k, int i, char *buf, size_t len)
{
    switch (k) {
    case PER_MONTH: snprintf(buf, len, "%04d-%02d", 2005 + i / 12, i % 12 + 1); break;
    case PER_QUARTER: snprintf(buf, len, "%04d-Q%d", 2005 + i / 4, i % 4 + 1); break;
    case PER_YEAR: snprintf(buf, len, "%04d", 2005 + i); break;
    default: snprintf(buf, len, "all"); break;
    }
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Fill T for exposure set ex (drugs), outcome set oc (conditions), window
 * [ws, we], period kind; by_sex splits by sex (else all in slot 0). */
static void truth(const int *ex, size_t nex, const int *oc, size_t noc, int ws, int we,
                  per_kind k, bool every, bool by_sex)
{
    memset(T, 0, sizeof T);
    static int days[MAXEV];
    for (int p = 1; p <= NP; p++) {
        size_t nd = 0;
        for (size_t e = 0; e < NE; e++)
            if (E[e].p == p && E[e].t == 'd' && in(E[e].concept, ex, nex))
                days[nd++] = E[e].day;
        if (nd == 0)
            continue;
        qsort(days, nd, sizeof days[0], cmp_int);
        size_t u = 1;   /* distinct days */
        for (size_t i = 1; i < nd; i++)
            if (days[i] != days[u - 1])
                days[u++] = days[i];
        nd = every ? u : 1;
        struct { int cell; double d; bool ev; } touched[64];
        size_t nt = 0;
        for (size_t i = 0; i < nd; i++) {
            int idx = days[i];
            int start = idx + ws, end = idx + we;
            if (P[p].op_start <= idx && P[p].op_end < end)
                end = P[p].op_end;
            if (P[p].death >= 0 && P[p].death < end)
                end = P[p].death;
            if (i + 1 < nd && days[i + 1] + ws - 1 < end)
                end = days[i + 1] + ws - 1;
            int o = INT32_MAX;
            for (size_t e = 0; e < NE; e++)
                if (E[e].p == p && E[e].t == 'c' && in(E[e].concept, oc, noc) &&
                    E[e].day >= start && E[e].day < o)
                    o = E[e].day;
            bool hit = o <= end;
            if (hit)
                end = o;
            double d = end >= start ? end - start + 1 : 0;
            int cell = period_index(k, idx) * NSEX + (by_sex ? sex_index(P[p].gender) : 0);
            size_t t;
            for (t = 0; t < nt; t++)
                if (touched[t].cell == cell)
                    break;
            if (t == nt) {
                assert_true(nt < 64);
                touched[nt].cell = cell;
                touched[nt].d = 0;
                touched[nt].ev = false;
                nt++;
            }
            touched[t].d += d;
            touched[t].ev = touched[t].ev || hit;
        }
        for (size_t t = 0; t < nt; t++) {
            tcell *c = &T[touched[t].cell];
            c->persons++;
            c->events += touched[t].ev;
            c->days += touched[t].d;
            c->contrib[c->n++] = touched[t].d;
        }
    }
}

static const Sdefed__SurveilRow *find_row(const Sdefed__QueryResult *r, const char *period,
                                          const char *sex, bool comparator)
{
    for (size_t k = 0; k < r->n_surveil; k++) {
        const Sdefed__SurveilRow *x = r->surveil[k];
        if (strcmp(x->period, period) != 0 || x->comparator != comparator)
            continue;
        if (sex && (x->n_strata != 1 || strcmp(x->strata[0]->value, sex) != 0))
            continue;
        if (!sex && x->n_strata != 0)
            continue;
        return x;
    }
    return NULL;
}

/* Compare every period (x sex) of r with T under the exact policy of cfg. */
static void compare(const Sdefed__QueryResult *r, per_kind k, int n_periods, bool by_sex,
                    bool comparator, int *n_events_rows)
{
    static const char *sexes[NSEX] = { "male", "female", "unknown" };
    for (int i = 0; i < n_periods; i++) {
        char label[16];
        period_name(k, i, label, sizeof label);
        for (int s = 0; s < (by_sex ? NSEX : 1); s++) {
            const tcell *c = &T[i * NSEX + s];
            const Sdefed__SurveilRow *x = find_row(r, label, by_sex ? sexes[s] : NULL,
                                                   comparator);
            if (!x)
                fprintf(stderr, "no row for %s %s\n", label, by_sex ? sexes[s] : "");
            assert_non_null(x);
            assert_int_equal(x->persons, c->persons);
            assert_int_equal(x->events, c->events);
            *n_events_rows += c->events > 0;
            if (c->persons > 0 && disc_dominated(&cfg.policy, c->contrib, c->n)) {
                assert_int_equal(x->person_days_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
                assert_int_equal(x->person_days, 0);
                assert_int_equal(x->rate_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
                continue;
            }
            assert_int_equal(x->person_days_status, SDEFED__CELL_STATUS__CELL_EXACT);
            assert_int_equal(x->person_days, (int64_t)c->days);
            compared_days += c->persons > 0;
            if (c->days > 0) {
                double want = (double)c->events * 365250.0 / c->days;
                assert_int_equal(x->rate_status, SDEFED__CELL_STATUS__CELL_EXACT);
                assert_true(fabs(x->rate - want) <= 1e-9 * (want + 1));
                double lo, hi;
                assert_int_equal(surv_poisson_ci(c->events, 0.95, &lo, &hi), 0);
                assert_true(fabs(x->rate_lo - lo * 365250.0 / c->days) <= 1e-6 * (want + 1));
                assert_true(fabs(x->rate_hi - hi * 365250.0 / c->days) <= 1e-6 * (want + 1));
            } else {
                assert_int_equal(x->rate_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
            }
        }
    }
}

#define SPEC_HEAD \
    "{\"kind\":\"surveil\",\"project\":\"demo\",\"dataset\":\"omop\"," \
    "\"exposure\":{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true}," \
    "\"outcome\":{\"domain\":\"condition\",\"concepts\":[2001],\"descendants\":true},"

static void test_first_exposure_by_quarter_and_sex(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(SPEC_HEAD "\"window_days\":[0,180],\"period\":\"quarter\","
                                    "\"from\":\"2005-01-01\",\"to\":\"2014-12-31\","
                                    "\"by\":[\"sex\"]}");
    truth(NSAID, 3, BLEED, 2, 0, 180, PER_QUARTER, false, true);
    assert_int_equal(r->n_surveil, 40 * NSEX);
    int nev = 0;
    compared_days = 0;
    compare(r, PER_QUARTER, 40, true, false, &nev);
    assert_true(compared_days > 20);
    assert_true(nev > 5);   /* the data has outcomes to find */
    sdefed__query_result__free_unpacked(r, NULL);
}

static void test_every_exposure_by_year(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(SPEC_HEAD "\"window_days\":[7,400],\"period\":\"year\","
                                    "\"every\":true,\"from\":\"2005-01-01\","
                                    "\"to\":\"2014-12-31\"}");
    truth(NSAID, 3, BLEED, 2, 7, 400, PER_YEAR, true, false);
    int nev = 0;
    compare(r, PER_YEAR, 10, false, false, &nev);
    assert_true(nev > 3);
    sdefed__query_result__free_unpacked(r, NULL);
    /* every differs from first: more person-time overall */
    double every_days = 0, first_days = 0;
    for (int i = 0; i < 10; i++)
        every_days += T[i * NSEX].days;
    truth(NSAID, 3, BLEED, 2, 7, 400, PER_YEAR, false, false);
    for (int i = 0; i < 10; i++)
        first_days += T[i * NSEX].days;
    assert_true(every_days > first_days);
}

static void test_comparator_rate_ratio(void **state)
{
    (void)state;
    static const int OTHER[] = { 3001 };
    Sdefed__QueryResult *r = run_ok(SPEC_HEAD "\"window_days\":[0,3650],\"period\":\"all\","
                                    "\"from\":\"2005-01-01\",\"to\":\"2014-12-31\","
                                    "\"comparator\":{\"domain\":\"drug\",\"concepts\":[3001]}}");
    int nev = 0;
    truth(OTHER, 1, BLEED, 2, 0, 3650, PER_ALL, false, false);
    compare(r, PER_ALL, 1, false, true, &nev);
    tcell cmp = T[0];
    truth(NSAID, 3, BLEED, 2, 0, 3650, PER_ALL, false, false);
    compare(r, PER_ALL, 1, false, false, &nev);
    const Sdefed__SurveilRow *x = find_row(r, "all", NULL, false);
    assert_non_null(x);
    assert_true(T[0].events > 0 && cmp.events > 0);
    double rr, lo, hi;
    assert_int_equal(surv_rate_ratio(T[0].events, T[0].days, cmp.events, cmp.days, &rr, &lo,
                                     &hi), 0);
    assert_int_equal(x->rr_status, SDEFED__CELL_STATUS__CELL_EXACT);
    assert_true(fabs(x->rate_ratio - rr) < 1e-9 && fabs(x->rr_lo - lo) < 1e-9 &&
                fabs(x->rr_hi - hi) < 1e-9);
    /* the comparator row has no ratio of its own */
    const Sdefed__SurveilRow *c = find_row(r, "all", NULL, true);
    assert_non_null(c);
    assert_int_equal(c->rr_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    sdefed__query_result__free_unpacked(r, NULL);
}

static void test_disclosure_withholds_rates(void **state)
{
    (void)state;
    Sdefed__QueryResult *r = run_ok(SPEC_HEAD "\"window_days\":[0,365],\"period\":\"month\","
                                    "\"from\":\"2005-01-01\",\"to\":\"2014-12-31\","
                                    "\"policy\":{\"min_cell\":10,\"rounding\":5}}");
    assert_int_equal(r->n_surveil, 120);
    truth(NSAID, 3, BLEED, 2, 0, 365, PER_MONTH, false, false);
    int suppressed_events = 0, small_persons = 0;
    for (size_t k = 0; k < r->n_surveil; k++) {
        const Sdefed__SurveilRow *x = r->surveil[k];
        int i = (atoi(x->period) - 2005) * 12 + atoi(x->period + 5) - 1;
        const tcell *c = &T[i * NSEX];
        if (c->persons > 0 && c->persons < 10) {
            small_persons++;
            assert_int_equal(x->persons_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
            assert_int_equal(x->persons, 0);
            assert_int_equal(x->person_days_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
            assert_int_equal(x->person_days, 0);
        }
        if (c->events > 0 && c->events < 10) {
            suppressed_events++;
            assert_int_equal(x->events_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
            assert_int_equal(x->rate_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
            assert_true(x->rate == 0.0 && x->rate_lo == 0.0 && x->rate_hi == 0.0);
        }
        if (x->person_days_status != SDEFED__CELL_STATUS__CELL_SUPPRESSED)
            assert_int_equal(x->person_days % 5, 0);
    }
    assert_true(suppressed_events > 0);
    assert_true(small_persons > 0);
    sdefed__query_result__free_unpacked(r, NULL);
}

static void test_invalid_specs_refused(void **state)
{
    (void)state;
    static const struct { const char *json, *want; } bad[] = {
        { SPEC_HEAD "\"window_days\":[30,0],\"from\":\"2005-01-01\",\"to\":\"2006-01-01\"}",
          "window_days: end (0) is before start (30)" },
        { SPEC_HEAD "\"window_days\":[0,30],\"period\":\"week\",\"from\":\"2005-01-01\","
                    "\"to\":\"2006-01-01\"}", "period: unknown period" },
        { SPEC_HEAD "\"window_days\":[0,30],\"from\":\"2007-01-01\",\"to\":\"2006-01-01\"}",
          "to: is before from" },
        { SPEC_HEAD "\"window_days\":[0,30],\"from\":\"2007-13-01\",\"to\":\"2008-01-01\"}",
          "from: not a date" },
        { SPEC_HEAD "\"window_days\":[0,30],\"from\":\"1950-01-01\",\"to\":\"2008-01-01\","
                    "\"period\":\"month\"}", "to: more than 600 periods" },
        { SPEC_HEAD "\"window_days\":[0,30],\"from\":\"2005-01-01\",\"to\":\"2008-01-01\","
                    "\"by\":[\"race\"]}", "by[0]: kind surveil is stratified by sex and age_band" },
        { SPEC_HEAD "\"window_days\":[0,30],\"from\":\"2005-01-01\",\"to\":\"2008-01-01\","
                    "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1]}]}}",
          "cohort: not allowed for kind surveil" },
        { "{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
          "[{\"domain\":\"drug\",\"concepts\":[1]}]},\"window_days\":[0,30]}",
          "unknown field" },
        { SPEC_HEAD "\"from\":\"2005-01-01\",\"to\":\"2008-01-01\"}", "window_days: required" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        Sdefed__QuerySpec *s = NULL;
        char err[512] = "";
        int rc = spec_parse_json(bad[i].json, strlen(bad[i].json), &s, err, sizeof err);
        if (rc != SDF_ESPEC || !strstr(err, bad[i].want))
            fprintf(stderr, "case %zu: rc %d err '%s' (wanted '%s')\n", i, rc, err, bad[i].want);
        assert_int_equal(rc, SDF_ESPEC);
        assert_null(s);
        assert_non_null(strstr(err, bad[i].want));
    }
    /* the canonical form round-trips */
    const char *good = SPEC_HEAD "\"window_days\":[3,30],\"period\":\"quarter\",\"every\":true,"
                                 "\"from\":\"2005-01-01\",\"to\":\"2008-01-01\","
                                 "\"comparator\":{\"domain\":\"drug\",\"concepts\":[3001]},"
                                 "\"by\":[\"age_band\"]}";
    Sdefed__QuerySpec *a = NULL, *b = NULL;
    char err[256];
    assert_int_equal(spec_parse_json(good, strlen(good), &a, err, sizeof err), 0);
    json_t *j = spec_to_json(a);
    char *txt = json_dumps(j, JSON_COMPACT);
    assert_int_equal(spec_parse_json(txt, strlen(txt), &b, err, sizeof err), 0);
    size_t na = sdefed__query_spec__get_packed_size(a), nb = sdefed__query_spec__get_packed_size(b);
    assert_int_equal(na, nb);
    uint8_t *pa = malloc(na), *pb = malloc(nb);
    sdefed__query_spec__pack(a, pa);
    sdefed__query_spec__pack(b, pb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
    free(txt);
    json_decref(j);
    sdefed__query_spec__free_unpacked(a, NULL);
    sdefed__query_spec__free_unpacked(b, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_exposure_by_quarter_and_sex),
        cmocka_unit_test(test_every_exposure_by_year),
        cmocka_unit_test(test_comparator_rate_ratio),
        cmocka_unit_test(test_disclosure_withholds_rates),
        cmocka_unit_test(test_invalid_specs_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
