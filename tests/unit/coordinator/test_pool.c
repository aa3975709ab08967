/* tests/unit/coordinator/test_pool.c — pooling of per-site released counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "pool.h"

/* Build a site result with cells {sex=<value>: count/status}. */
typedef struct fake_cell {
    const char *sex;
    int64_t value;
    Sdefed__CellStatus status;
} fake_cell;

typedef struct fake_site {
    Sdefed__SiteResult sr;
    Sdefed__Cell cells[4];
    Sdefed__Cell *cellp[4];
    Sdefed__Stratum strata[4];
    Sdefed__Stratum *stratp[4];
} fake_site;

static void make_site(fake_site *s, const char *name, Sdefed__SiteStatus st, const fake_cell *fc,
                      size_t n)
{
    memset(s, 0, sizeof *s);
    sdefed__site_result__init(&s->sr);
    s->sr.site = (char *)name;
    s->sr.status = st;
    for (size_t i = 0; i < n; i++) {
        sdefed__cell__init(&s->cells[i]);
        sdefed__stratum__init(&s->strata[i]);
        s->strata[i].name = (char *)"sex";
        s->strata[i].value = (char *)fc[i].sex;
        s->stratp[i] = &s->strata[i];
        s->cells[i].strata = &s->stratp[i];
        s->cells[i].n_strata = 1;
        s->cells[i].value = fc[i].value;
        s->cells[i].status = fc[i].status;
        s->cellp[i] = &s->cells[i];
    }
    s->sr.cells = s->cellp;
    s->sr.n_cells = n;
}

static const Sdefed__PooledCell *find(const Sdefed__FederatedResult *r, const char *sex)
{
    for (size_t i = 0; i < r->n_pooled; i++)
        if (strcmp(r->pooled[i]->strata[0]->value, sex) == 0)
            return r->pooled[i];
    return NULL;
}

#define R SDEFED__CELL_STATUS__CELL_ROUNDED
#define S SDEFED__CELL_STATUS__CELL_SUPPRESSED
#define E SDEFED__CELL_STATUS__CELL_EXACT

static void sums_released_values_and_marks_lower_bounds(void **state)
{
    (void)state;
    fake_site a, b, c;
    const fake_cell ca[] = { { "female", 120, R }, { "male", 0, S } };
    const fake_cell cb[] = { { "female", 125, R }, { "male", 85, R } };
    const fake_cell cc[] = { { "female", 999, R } };   /* offline: must not count */
    make_site(&a, "a", SDEFED__SITE_STATUS__SITE_OK, ca, 2);
    make_site(&b, "b", SDEFED__SITE_STATUS__SITE_OK, cb, 2);
    make_site(&c, "c", SDEFED__SITE_STATUS__SITE_OFFLINE, cc, 1);
    Sdefed__SiteResult *sites[] = { &a.sr, &b.sr, &c.sr };
    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    r.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    r.sites = sites;
    r.n_sites = 3;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled, 2);
    const Sdefed__PooledCell *f = find(&r, "female");
    const Sdefed__PooledCell *m = find(&r, "male");
    assert_non_null(f);
    assert_non_null(m);
    assert_int_equal(f->value, 245);
    assert_int_equal(f->status, R);
    assert_false(f->lower_bound);
    assert_int_equal(m->value, 85);
    assert_true(m->lower_bound);
    assert_int_equal(m->status, R);
    pool_free_cells(&r);
}

static void all_suppressed_stays_suppressed_without_value(void **state)
{
    (void)state;
    fake_site a, b;
    const fake_cell ca[] = { { "male", 0, S } };
    const fake_cell cb[] = { { "male", 0, S } };
    make_site(&a, "a", SDEFED__SITE_STATUS__SITE_OK, ca, 1);
    make_site(&b, "b", SDEFED__SITE_STATUS__SITE_OK, cb, 1);
    Sdefed__SiteResult *sites[] = { &a.sr, &b.sr };
    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    r.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    r.sites = sites;
    r.n_sites = 2;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled, 1);
    assert_int_equal(r.pooled[0]->status, S);
    assert_int_equal(r.pooled[0]->value, 0);
    assert_true(r.pooled[0]->lower_bound);
    pool_free_cells(&r);
}

static void suppressed_value_field_is_never_added(void **state)
{
    (void)state;
    /* A (misbehaving) site sends a number in a suppressed cell: pooling must
     * ignore it rather than leak it into the total. */
    fake_site a, b;
    const fake_cell ca[] = { { "female", 7, S } };
    const fake_cell cb[] = { { "female", 50, E } };
    make_site(&a, "a", SDEFED__SITE_STATUS__SITE_OK, ca, 1);
    make_site(&b, "b", SDEFED__SITE_STATUS__SITE_OK, cb, 1);
    Sdefed__SiteResult *sites[] = { &a.sr, &b.sr };
    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    r.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    r.sites = sites;
    r.n_sites = 2;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.pooled[0]->value, 50);
    assert_true(r.pooled[0]->lower_bound);
    assert_int_equal(r.pooled[0]->status, E);
    pool_free_cells(&r);
}

static void no_ok_sites_no_cells(void **state)
{
    (void)state;
    fake_site a;
    const fake_cell ca[] = { { "female", 100, R } };
    make_site(&a, "a", SDEFED__SITE_STATUS__SITE_REFUSED, ca, 1);
    Sdefed__SiteResult *sites[] = { &a.sr };
    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    r.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    r.sites = sites;
    r.n_sites = 1;
    assert_int_equal(pool_result(&r), 0);
    assert_int_equal(r.n_pooled, 0);
    pool_free_cells(&r);
}

static void strata_key_is_ordered_and_bounded(void **state)
{
    (void)state;
    Sdefed__Stratum s1 = SDEFED__STRATUM__INIT, s2 = SDEFED__STRATUM__INIT;
    s1.name = (char *)"sex";
    s1.value = (char *)"female";
    s2.name = (char *)"age_band";
    s2.value = (char *)"40-49";
    Sdefed__Stratum *sp[] = { &s1, &s2 };
    Sdefed__Cell c = SDEFED__CELL__INIT;
    c.strata = sp;
    c.n_strata = 2;
    char buf[64];
    assert_int_equal(pool_strata_key(&c, buf, sizeof buf), 0);
    assert_string_equal(buf, "sex=female|age_band=40-49");
    char tiny[8];
    assert_int_equal(pool_strata_key(&c, tiny, sizeof tiny), SDF_EOVERFLOW);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sums_released_values_and_marks_lower_bounds),
        cmocka_unit_test(all_suppressed_stays_suppressed_without_value),
        cmocka_unit_test(suppressed_value_field_is_never_added),
        cmocka_unit_test(no_ok_sites_no_cells),
        cmocka_unit_test(strata_key_is_ordered_and_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
