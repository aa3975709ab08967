/* tests/unit/coordinator/test_result_check.c — a site's answer is checked
 * before pooling: every rule is tried with a result that breaks it, next to
 * one that keeps it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "pool.h"
#include "result_check.h"

#define E SDEFED__CELL_STATUS__CELL_EXACT
#define R SDEFED__CELL_STATUS__CELL_ROUNDED
#define S SDEFED__CELL_STATUS__CELL_SUPPRESSED
#define N SDEFED__CELL_STATUS__CELL_NOISED

#define MAXG 8
#define MAXS 3

/* Up to MAXG groups (cells, summaries, rows...) of up to MAXS strata each,
 * all in one struct so a test needs no allocation. */
typedef struct strata_set {
    Sdefed__Stratum st[MAXG][MAXS];
    Sdefed__Stratum *stp[MAXG][MAXS];
} strata_set;

/* Group g's strata from "name", "value", "name", "value", ..., NULL. */
static size_t set_strata(strata_set *ss, size_t g, const char *const *nv)
{
    size_t n = 0;
    for (; nv[2 * n]; n++) {
        sdefed__stratum__init(&ss->st[g][n]);
        ss->st[g][n].name = (char *)nv[2 * n];
        ss->st[g][n].value = (char *)nv[2 * n + 1];
        ss->stp[g][n] = &ss->st[g][n];
    }
    return n;
}

typedef struct fake_cells {
    strata_set ss;
    Sdefed__Cell c[MAXG];
    Sdefed__Cell *cp[MAXG];
    Sdefed__QueryResult r;
} fake_cells;

static void add_cell(fake_cells *f, const char *const *nv, int64_t value, Sdefed__CellStatus st)
{
    size_t g = f->r.n_cells;
    assert_true(g < MAXG);
    sdefed__cell__init(&f->c[g]);
    f->c[g].n_strata = set_strata(&f->ss, g, nv);
    f->c[g].strata = f->ss.stp[g];
    f->c[g].value = value;
    f->c[g].status = st;
    f->cp[g] = &f->c[g];
    f->r.cells = f->cp;
    f->r.n_cells = g + 1;
}

static void init_cells(fake_cells *f)
{
    memset(f, 0, sizeof *f);
    sdefed__query_result__init(&f->r);
    f->r.status = SDEFED__SITE_STATUS__SITE_OK;
}

static const char *const FEMALE[] = { "sex", "female", NULL };
static const char *const MALE[] = { "sex", "male", NULL };
static const char *const NONE[] = { NULL };

static int check(Sdefed__QueryKind kind, const Sdefed__QueryResult *r, char *why, size_t len)
{
    why[0] = '\0';
    return result_check(kind, r, why, len);
}

static void well_formed_count_passes(void **state)
{
    (void)state;
    fake_cells f;
    char why[256];
    init_cells(&f);
    add_cell(&f, FEMALE, 120, R);
    add_cell(&f, MALE, 0, S);
    add_cell(&f, NONE, 130, N);   /* a margin: the total, no strata */
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), 0);
    /* and an empty answer (no strata at all, nothing released) */
    init_cells(&f);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), 0);
}

static void duplicate_stratum_would_weigh_twice(void **state)
{
    (void)state;
    fake_cells f;
    char why[256];
    init_cells(&f);
    add_cell(&f, FEMALE, 120, R);
    add_cell(&f, MALE, 85, R);
    add_cell(&f, FEMALE, 120, R);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "malformed result"));
    assert_non_null(strstr(why, "cells[0] and cells[2]: the same strata twice"));
}

static void strata_that_pool_under_one_key_are_refused(void **state)
{
    (void)state;
    /* Structurally different, but the pooling key "sex=f|age=1" is the same:
     * pooled as one cell, they would add up. */
    static const char *const TRICK[] = { "sex", "f|age=1", NULL };
    static const char *const PAIR[] = { "sex", "f", "age", "1", NULL };
    fake_cells f;
    char why[256];
    init_cells(&f);
    add_cell(&f, TRICK, 40, R);
    add_cell(&f, PAIR, 40, R);
    char ka[64], kb[64];
    assert_int_equal(pool_strata_key(f.cp[0], ka, sizeof ka), 0);
    assert_int_equal(pool_strata_key(f.cp[1], kb, sizeof kb), 0);
    assert_string_equal(ka, kb);   /* the premise */
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "the same strata twice"));
}

static void same_stratifier_twice_in_a_cell(void **state)
{
    (void)state;
    static const char *const TWICE[] = { "sex", "female", "sex", "male", NULL };
    static const char *const NAMELESS[] = { "", "female", NULL };
    fake_cells f;
    char why[256];
    init_cells(&f);
    add_cell(&f, TWICE, 50, R);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "cells[0]: the same stratifier twice"));
    init_cells(&f);
    add_cell(&f, NAMELESS, 50, R);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "without a name"));
}

static void suppressed_cell_carrying_a_value(void **state)
{
    (void)state;
    fake_cells f;
    char why[256];
    init_cells(&f);
    add_cell(&f, FEMALE, 120, R);
    add_cell(&f, MALE, 987654, S);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "cells[1]: a suppressed number carries a value"));
    assert_null(strstr(why, "987654"));   /* the reason names fields, never values */
}

static void negative_or_unknown_status_counts(void **state)
{
    (void)state;
    fake_cells f;
    char why[256];
    init_cells(&f);
    add_cell(&f, FEMALE, -5, N);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "negative count"));
    init_cells(&f);
    add_cell(&f, FEMALE, 120, SDEFED__CELL_STATUS__CELL_UNSPECIFIED);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "unknown status"));
    init_cells(&f);
    add_cell(&f, FEMALE, 120, (Sdefed__CellStatus)77);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
}

static void data_of_another_kind(void **state)
{
    (void)state;
    fake_cells f;
    char why[256];
    init_cells(&f);
    add_cell(&f, FEMALE, 120, R);
    /* count cells in the answer to a summary, surveil, validate or catalog */
    Sdefed__QueryKind others[] = { SDEFED__QUERY_KIND__KIND_SUMMARY,
                                   SDEFED__QUERY_KIND__KIND_SURVEIL,
                                   SDEFED__QUERY_KIND__KIND_VALIDATE,
                                   SDEFED__QUERY_KIND__KIND_CATALOG };
    for (size_t i = 0; i < sizeof others / sizeof *others; i++) {
        assert_int_equal(check(others[i], &f.r, why, sizeof why), SDF_EINVAL);
        assert_non_null(strstr(why, "another query kind"));
    }
}

static void strata_too_long_to_pool(void **state)
{
    (void)state;
    static char big[POOL_KEY_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    const char *const LONG[] = { "sex", big, NULL };
    fake_cells f;
    char why[256];
    init_cells(&f);
    add_cell(&f, LONG, 50, R);
    add_cell(&f, FEMALE, 50, R);
    assert_int_equal(check(SDEFED__QUERY_KIND__KIND_COUNT, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "strata too long"));
}

/* ---- summaries ---- */

typedef struct fake_summaries {
    strata_set ss;
    Sdefed__Summary s[MAXG];
    Sdefed__Summary *sp[MAXG];
    Sdefed__Quantile q[MAXG];
    Sdefed__Quantile *qp[MAXG];
    Sdefed__QueryResult r;
} fake_summaries;

static Sdefed__Summary *add_summary(fake_summaries *f, const char *const *nv)
{
    size_t g = f->r.n_summaries;
    assert_true(g < MAXG);
    Sdefed__Summary *s = &f->s[g];
    sdefed__summary__init(s);
    s->n_strata = set_strata(&f->ss, g, nv);
    s->strata = f->ss.stp[g];
    s->n = 40;
    s->n_status = R;
    s->mean = 7.5;
    s->mean_status = E;
    s->sd = 1.25;
    s->sd_status = E;
    sdefed__quantile__init(&f->q[g]);
    f->q[g].p = 0.5;
    f->q[g].value = 7.0;
    f->q[g].status = E;
    f->qp[g] = &f->q[g];
    s->quantiles = &f->qp[g];
    s->n_quantiles = 1;
    f->sp[g] = s;
    f->r.summaries = f->sp;
    f->r.n_summaries = g + 1;
    return s;
}

static void init_summaries(fake_summaries *f)
{
    memset(f, 0, sizeof *f);
    sdefed__query_result__init(&f->r);
    f->r.status = SDEFED__SITE_STATUS__SITE_OK;
}

static void summaries_checked_like_cells(void **state)
{
    (void)state;
    fake_summaries f;
    char why[256];
    const Sdefed__QueryKind K = SDEFED__QUERY_KIND__KIND_SUMMARY;
    init_summaries(&f);
    add_summary(&f, FEMALE);
    Sdefed__Summary *m = add_summary(&f, MALE);
    m->n = 0;   /* a withheld stratum: every number 0 */
    m->n_status = S;
    m->mean = m->sd = 0.0;
    m->mean_status = m->sd_status = S;
    f.q[1].value = 0.0;
    f.q[1].status = S;
    assert_int_equal(check(K, &f.r, why, sizeof why), 0);

    m->mean = 3.5;   /* withheld, yet a value */
    assert_int_equal(check(K, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "summaries[1]: a withheld number carries a value"));
    m->mean = 0.0;
    f.q[1].value = 2.0;   /* a withheld quantile with a value */
    assert_int_equal(check(K, &f.r, why, sizeof why), SDF_EINVAL);
    f.q[1].value = 0.0;

    f.s[0].sd = NAN;
    assert_int_equal(check(K, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "not a finite number"));
    f.s[0].sd = 1.25;

    add_summary(&f, FEMALE);
    assert_int_equal(check(K, &f.r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "summaries[0] and summaries[2]: the same strata twice"));
}

/* ---- surveil rows ---- */

static void surveil_rows_unique_per_arm_period_and_stratum(void **state)
{
    (void)state;
    strata_set ss;
    Sdefed__SurveilRow x[3], *xp[3];
    Sdefed__QueryResult r = SDEFED__QUERY_RESULT__INIT;
    char why[256];
    memset(&ss, 0, sizeof ss);
    for (size_t i = 0; i < 3; i++) {
        sdefed__surveil_row__init(&x[i]);
        x[i].period = (char *)"2019";
        x[i].n_strata = set_strata(&ss, i, FEMALE);
        x[i].strata = ss.stp[i];
        x[i].persons = 200;
        x[i].persons_status = R;
        x[i].events = 15;
        x[i].events_status = R;
        x[i].person_days = 36500;
        x[i].person_days_status = R;
        x[i].rate = 0.15;
        x[i].rate_lo = 0.08;
        x[i].rate_hi = 0.25;
        x[i].rate_status = R;
        x[i].rr_status = S;   /* no ratio: all three numbers 0 */
        xp[i] = &x[i];
    }
    x[1].comparator = true;   /* the same period and stratum, other arm: fine */
    x[2].period = (char *)"2020";
    r.status = SDEFED__SITE_STATUS__SITE_OK;
    r.surveil = xp;
    r.n_surveil = 3;
    const Sdefed__QueryKind K = SDEFED__QUERY_KIND__KIND_SURVEIL;
    assert_int_equal(check(K, &r, why, sizeof why), 0);

    x[2].period = (char *)"2019";   /* now a repeat of row 0 */
    assert_int_equal(check(K, &r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "surveil[0] and surveil[2]: the same strata twice"));
    x[2].period = (char *)"2020";

    x[0].rate_ratio = 2.0;   /* a withheld ratio with a value */
    assert_int_equal(check(K, &r, why, sizeof why), SDF_EINVAL);
    x[0].rate_ratio = 0.0;
    x[0].events = 3;   /* a suppressed count with a value */
    x[0].events_status = S;
    assert_int_equal(check(K, &r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "surveil[0]: a suppressed number carries a value"));
}

/* ---- validations ---- */

static void validations_unique_and_counts_checked(void **state)
{
    (void)state;
    strata_set ss;
    Sdefed__Validation v[2], *vp[2];
    Sdefed__ValidateCount n[2];
    Sdefed__QueryResult r = SDEFED__QUERY_RESULT__INIT;
    char why[256];
    memset(&ss, 0, sizeof ss);
    for (size_t i = 0; i < 2; i++) {
        sdefed__validation__init(&v[i]);
        sdefed__validate_count__init(&n[i]);
        n[i].value = 500;
        n[i].status = R;
        v[i].n = &n[i];
        v[i].released = true;
        v[i].auc = 0.7;
        vp[i] = &v[i];
    }
    v[0].n_strata = set_strata(&ss, 0, NONE);
    v[1].n_strata = set_strata(&ss, 1, FEMALE);
    v[0].strata = ss.stp[0];
    v[1].strata = ss.stp[1];
    r.status = SDEFED__SITE_STATUS__SITE_OK;
    r.validations = vp;
    r.n_validations = 2;
    const Sdefed__QueryKind K = SDEFED__QUERY_KIND__KIND_VALIDATE;
    assert_int_equal(check(K, &r, why, sizeof why), 0);
    n[1].value = 0;
    n[1].status = S;
    assert_int_equal(check(K, &r, why, sizeof why), 0);
    n[1].value = 4;   /* suppressed n with a value */
    assert_int_equal(check(K, &r, why, sizeof why), SDF_EINVAL);
    n[1].value = 500;
    n[1].status = R;
    v[1].n_strata = set_strata(&ss, 1, NONE);   /* two overall groups */
    assert_int_equal(check(K, &r, why, sizeof why), SDF_EINVAL);
    assert_non_null(strstr(why, "validations[0] and validations[1]: the same strata twice"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(well_formed_count_passes),
        cmocka_unit_test(duplicate_stratum_would_weigh_twice),
        cmocka_unit_test(strata_that_pool_under_one_key_are_refused),
        cmocka_unit_test(same_stratifier_twice_in_a_cell),
        cmocka_unit_test(suppressed_cell_carrying_a_value),
        cmocka_unit_test(negative_or_unknown_status_counts),
        cmocka_unit_test(data_of_another_kind),
        cmocka_unit_test(strata_too_long_to_pool),
        cmocka_unit_test(summaries_checked_like_cells),
        cmocka_unit_test(surveil_rows_unique_per_arm_period_and_stratum),
        cmocka_unit_test(validations_unique_and_counts_checked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
