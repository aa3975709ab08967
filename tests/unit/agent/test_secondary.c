/* tests/unit/agent/test_secondary.c — property tests of margins and
 * complementary suppression (agent/disclosure/secondary.c).
 *
 * On thousands of random tables (1, 2 and 3 stratifiers, many small
 * counts): no released count is in 1..min_cell-1, every released count is
 * a multiple of the rounding base within half a base of the truth, margins
 * are the true totals, and — checked independently of the engine with
 * exact integer (Bareiss, __int128) rank computations — no withheld cell is
 * determined by the released cells and the margin equations. The same
 * checker finds determined cells when only primary suppression is applied,
 * so the property has teeth.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "disclosure/disclosure.h"
#include "disclosure/secondary.h"

/* ---- an independent exact checker ---------------------------------------- */

typedef struct tshape {
    size_t nd, lv[3], ext[3], stride[3], n;
} tshape;

static void tshape_init(tshape *t, size_t nd, const size_t *lv)
{
    memset(t, 0, sizeof *t);
    t->nd = nd;
    t->n = 1;
    for (size_t d = 0; d < nd; d++) {
        t->lv[d] = lv[d];
        t->ext[d] = lv[d] + 1;
    }
    size_t st = 1;
    for (size_t d = nd; d-- > 0;) {
        t->stride[d] = st;
        st *= t->ext[d];
    }
    t->n = st;
}

static size_t tcoord(const tshape *t, size_t c, size_t d)
{
    return (c / t->stride[d]) % t->ext[d];
}

/* Rank of an m x u integer matrix by fraction-free (Bareiss) elimination. */
static size_t bareiss_rank(__int128 *M, size_t m, size_t u)
{
    size_t rank = 0;
    __int128 prev = 1;
    for (size_t col = 0; col < u && rank < m; col++) {
        size_t piv = rank;
        while (piv < m && M[piv * u + col] == 0)
            piv++;
        if (piv == m)
            continue;
        if (piv != rank)
            for (size_t k = 0; k < u; k++) {
                __int128 t = M[rank * u + k];
                M[rank * u + k] = M[piv * u + k];
                M[piv * u + k] = t;
            }
        for (size_t r = rank + 1; r < m; r++) {
            for (size_t k = col + 1; k < u; k++)
                M[r * u + k] = (M[rank * u + col] * M[r * u + k] -
                                M[r * u + col] * M[rank * u + k]) / prev;
            M[r * u + col] = 0;
        }
        prev = M[rank * u + col];
        rank++;
    }
    return rank;
}

/* Equations restricted to the withheld cells, skipping column `skip`
 * (SIZE_MAX = none); returns the rank. */
static size_t eq_rank(const tshape *t, const unsigned char *wh, size_t skip)
{
    size_t cols[1100], u = 0;
    size_t colof[1100];
    for (size_t c = 0; c < t->n; c++) {
        colof[c] = SIZE_MAX;
        if (wh[c] && c != skip) {
            colof[c] = u;
            cols[u++] = c;
        }
    }
    (void)cols;
    if (u == 0)
        return 0;
    size_t m = 0;
    __int128 *M = calloc(t->n * t->nd * u + 1, sizeof *M);
    assert_non_null(M);
    for (size_t c = 0; c < t->n; c++)
        for (size_t d = 0; d < t->nd; d++) {
            if (tcoord(t, c, d) != t->lv[d])
                continue;
            if (colof[c] != SIZE_MAX)
                M[m * u + colof[c]] = -1;
            for (size_t i = 0; i < t->lv[d]; i++) {
                size_t ch = c - t->lv[d] * t->stride[d] + i * t->stride[d];
                if (colof[ch] != SIZE_MAX)
                    M[m * u + colof[ch]] = 1;
            }
            m++;
        }
    size_t r = bareiss_rank(M, m, u);
    free(M);
    return r;
}

/* Number of withheld cells whose value is determined (exactly, over Q). */
static size_t exact_determined(const tshape *t, const unsigned char *wh)
{
    size_t full = eq_rank(t, wh, SIZE_MAX), n = 0;
    for (size_t c = 0; c < t->n; c++)
        if (wh[c] && eq_rank(t, wh, c) < full)
            n++;
    return n;
}

/* ---- random tables -------------------------------------------------------- */

static uint64_t rng = 88172645463325252ULL;
static uint64_t xr(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int64_t draw_count(void)
{
    switch (xr() % 4) {
    case 0: return 0;
    case 1: return (int64_t)(1 + xr() % 9);     /* small */
    case 2: return (int64_t)(10 + xr() % 20);
    default: return (int64_t)(xr() % 500);
    }
}

static void check_table(const disc_policy *p, size_t nd, const size_t *lv, size_t *n_secondary)
{
    tshape t;
    tshape_init(&t, nd, lv);
    size_t n_inner = 1;
    for (size_t d = 0; d < nd; d++)
        n_inner *= lv[d];
    int64_t counts[1100];
    for (size_t k = 0; k < n_inner; k++)
        counts[k] = draw_count();
    assert_int_equal(disc_table_size(nd, lv), t.n);
    disc_value out[1100];
    int64_t truth[1100];
    unsigned rules = 0;
    assert_int_equal(disc_table_control(p, nd, lv, counts, out, truth, &rules), 0);

    /* truth of margins: each equals the sum of its children */
    for (size_t c = 0; c < t.n; c++)
        for (size_t d = 0; d < nd; d++) {
            if (tcoord(&t, c, d) != lv[d])
                continue;
            int64_t sum = 0;
            for (size_t i = 0; i < lv[d]; i++)
                sum += truth[c - lv[d] * t.stride[d] + i * t.stride[d]];
            assert_int_equal(sum, truth[c]);
        }

    unsigned char wh[1100];
    size_t primary = 0, withheld = 0;
    for (size_t c = 0; c < t.n; c++) {
        wh[c] = out[c].status == DISC_SUPPRESSED;
        withheld += wh[c];
        if (wh[c]) {
            assert_int_equal(out[c].value, 0);
            continue;
        }
        /* never a small count, multiples of the base, close to the truth */
        assert_false(out[c].value > 0 && out[c].value < p->min_cell);
        assert_int_equal(out[c].value % p->rounding, 0);
        assert_true(out[c].value - truth[c] <= p->rounding / 2 + 1);
        assert_true(truth[c] - out[c].value <= p->rounding / 2);
        if (truth[c] > 0)
            assert_true(out[c].value > 0);
    }
    for (size_t c = 0; c < t.n; c++) {
        bool small = (truth[c] > 0 && truth[c] < p->min_cell) ||
                     (truth[c] == 0 && p->zero_is_disclosive);
        if (small)
            assert_true(wh[c]);
        primary += small;
    }
    /* the core property, checked exactly */
    assert_int_equal(exact_determined(&t, wh), 0);
    /* and the engine's own checker agrees */
    size_t first;
    assert_int_equal(disc_table_determined(nd, lv, wh, &first), 0);
    if (withheld > primary) {
        assert_true(rules & DISC_RULE_SECONDARY);
        (*n_secondary)++;
    }
}

static void test_random_tables(void **state)
{
    (void)state;
    static const size_t shapes[][4] = {
        /* nd, levels... */
        { 1, 2, 0, 0 }, { 1, 3, 0, 0 }, { 1, 11, 0, 0 }, { 2, 3, 11, 0 }, { 2, 2, 2, 0 },
        { 2, 4, 5, 0 }, { 2, 3, 3, 0 }, { 3, 2, 2, 2 }, { 3, 3, 2, 4 }, { 3, 3, 11, 2 },
    };
    disc_policy p;
    disc_policy_default(&p);
    size_t n_secondary = 0;
    for (int round = 0; round < 60; round++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            if (shapes[s][0] == 3 && shapes[s][2] == 11 && round % 10)
                continue;   /* the big 3-D shape less often (exact checker is slow) */
            check_table(&p, shapes[s][0], &shapes[s][1], &n_secondary);
        }
    /* other policies: stricter, zero disclosive, no rounding */
    disc_policy q = p;
    q.min_cell = 20;
    q.rounding = 10;
    q.zero_is_disclosive = true;
    disc_policy r = p;
    r.rounding = 1;
    r.min_cell = 3;
    for (int round = 0; round < 40; round++) {
        size_t lv[2] = { 3, 11 };
        check_table(&q, 2, lv, &n_secondary);
        check_table(&r, 2, lv, &n_secondary);
    }
    /* secondary suppression really happened in many tables */
    assert_true(n_secondary > 100);
}

/* Without secondary suppression the margins give cells away: the exact
 * checker (and the engine's) find determined cells in primary-only
 * patterns, so the property above is not vacuous. */
static void test_primary_only_leaks(void **state)
{
    (void)state;
    disc_policy p;
    disc_policy_default(&p);
    size_t lv[2] = { 3, 11 };
    tshape t;
    tshape_init(&t, 2, lv);
    size_t leaky = 0;
    for (int round = 0; round < 100; round++) {
        int64_t counts[33];
        for (size_t k = 0; k < 33; k++)
            counts[k] = draw_count();
        unsigned char wh[48];
        /* primary only: suppress what disc_count suppresses, margins incl. */
        disc_value out[48];
        int64_t truth[48];
        assert_int_equal(disc_table_control(&p, 2, lv, counts, out, truth, NULL), 0);
        for (size_t c = 0; c < t.n; c++)
            wh[c] = disc_count(&p, truth[c], NULL).status == DISC_SUPPRESSED;
        size_t ex = exact_determined(&t, wh);
        int eng = disc_table_determined(2, lv, wh, NULL);
        assert_int_equal((size_t)eng, ex);
        leaky += ex > 0;
    }
    assert_true(leaky > 50);
}

/* A worked 2x2 example: one small cell; the line rule must add three more
 * (its row, its column, and the opposite corner). */
static void test_two_by_two(void **state)
{
    (void)state;
    disc_policy p;
    disc_policy_default(&p);
    size_t lv[2] = { 2, 2 };
    int64_t counts[4] = { 3, 50, 40, 60 };
    disc_value out[9];
    int64_t truth[9];
    unsigned rules = 0;
    assert_int_equal(disc_table_control(&p, 2, lv, counts, out, truth, &rules), 0);
    /* extended grid 3x3: [0]=(0,0) [1]=(0,1) [2]=(0,T) [3]=(1,0) ... [8]=(T,T) */
    assert_int_equal(truth[2], 53);
    assert_int_equal(truth[6], 43);
    assert_int_equal(truth[8], 153);
    assert_int_equal(out[0].status, DISC_SUPPRESSED);
    assert_int_equal(out[1].status, DISC_SUPPRESSED);   /* row complement */
    assert_int_equal(out[3].status, DISC_SUPPRESSED);   /* column complement */
    assert_int_equal(out[4].status, DISC_SUPPRESSED);   /* corner */
    assert_int_equal(out[2].status, DISC_ROUNDED);
    assert_int_equal(out[2].value, 55);
    assert_int_equal(out[8].value, 155);
    assert_true(rules & DISC_RULE_SECONDARY);
    assert_true(rules & DISC_RULE_SMALL_COUNT);
}

/* A small grand total: margins suppressed too, and nothing determined. */
static void test_small_total(void **state)
{
    (void)state;
    disc_policy p;
    disc_policy_default(&p);
    size_t lv[1] = { 3 };
    int64_t counts[3] = { 4, 0, 0 };
    disc_value out[4];
    assert_int_equal(disc_table_control(&p, 1, lv, counts, out, NULL, NULL), 0);
    assert_int_equal(out[0].status, DISC_SUPPRESSED);
    assert_int_equal(out[3].status, DISC_SUPPRESSED);
    unsigned char wh[4];
    for (int c = 0; c < 4; c++)
        wh[c] = out[c].status == DISC_SUPPRESSED;
    assert_int_equal(disc_table_determined(1, lv, wh, NULL), 0);
}

static void test_shape_limits(void **state)
{
    (void)state;
    disc_policy p;
    disc_policy_default(&p);
    size_t big[3] = { 20, 20, 20 };
    assert_int_equal(disc_table_size(3, big), 0);
    disc_value out[1];
    int64_t c[1] = { 0 };
    assert_int_equal(disc_table_control(&p, 3, big, c, out, NULL, NULL), SDF_EINVAL);
    size_t zero[1] = { 0 };
    assert_int_equal(disc_table_size(1, zero), 0);
    assert_int_equal(disc_table_size(4, big), 0);
    assert_int_equal(disc_table_size(0, big), 1);
    /* overflowing totals */
    size_t two[1] = { 2 };
    int64_t huge[2] = { INT64_MAX, 5 };
    disc_value o3[3];
    assert_int_equal(disc_table_control(&p, 1, two, huge, o3, NULL, NULL), SDF_EOVERFLOW);
    assert_int_equal(o3[0].status, DISC_SUPPRESSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_by_two),
        cmocka_unit_test(test_small_total),
        cmocka_unit_test(test_shape_limits),
        cmocka_unit_test(test_primary_only_leaks),
        cmocka_unit_test(test_random_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
