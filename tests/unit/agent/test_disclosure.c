/* tests/unit/agent/test_disclosure.c — try to break every disclosure rule.
 *
 * Exhaustive over small counts and small policy grids: nothing in 1..min_cell-1
 * is ever released, released counts are multiples of the rounding base and
 * within half a base of the truth, a non-zero count is never shown as 0, the
 * merge never goes below the site floor, nothing overflows, and the rule
 * bits never tell a suppressed zero from a suppressed small count.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "disclosure/disclosure.h"

static void test_defaults(void **state)
{
    (void)state;
    disc_policy p;
    memset(&p, 0xff, sizeof p);
    disc_policy_default(&p);
    assert_int_equal(p.min_cell, 10);
    assert_int_equal(p.rounding, 5);
    assert_false(p.zero_is_disclosive);
    char err[128] = "";
    assert_int_equal(disc_policy_check(&p, err, sizeof err), 0);
}

static void test_check_rejects(void **state)
{
    (void)state;
    char err[128];
    disc_policy p;
    disc_policy_default(&p);
    p.min_cell = 0;
    err[0] = '\0';
    assert_int_equal(disc_policy_check(&p, err, sizeof err), SDF_ECONFIG);
    assert_non_null(strstr(err, "min_cell"));
    p.min_cell = -5;
    assert_int_equal(disc_policy_check(&p, err, sizeof err), SDF_ECONFIG);
    p.min_cell = 1000000001;
    assert_int_equal(disc_policy_check(&p, err, sizeof err), SDF_ECONFIG);
    p.min_cell = 1000000000;
    assert_int_equal(disc_policy_check(&p, err, sizeof err), 0);
    disc_policy_default(&p);
    p.rounding = 0;
    err[0] = '\0';
    assert_int_equal(disc_policy_check(&p, err, sizeof err), SDF_ECONFIG);
    assert_non_null(strstr(err, "rounding"));
    p.rounding = INT64_MAX;
    assert_int_equal(disc_policy_check(&p, err, sizeof err), SDF_ECONFIG);
    p.rounding = 1;
    assert_int_equal(disc_policy_check(&p, err, sizeof err), 0);
    /* err may be NULL */
    p.rounding = 0;
    assert_int_equal(disc_policy_check(&p, NULL, 0), SDF_ECONFIG);
}

/* Every count 0..1000 under the default policy. */
static void test_default_policy_exhaustive(void **state)
{
    (void)state;
    disc_policy p;
    disc_policy_default(&p);
    for (int64_t n = 0; n <= 1000; n++) {
        unsigned rules = 0;
        disc_value v = disc_count(&p, n, &rules);
        if (v.status == DISC_SUPPRESSED) {
            assert_int_equal(v.value, 0);
            assert_true(n >= 1 && n <= 9);
            assert_int_equal(rules, DISC_RULE_SMALL_COUNT);
            continue;
        }
        /* never a released value in 1..9 */
        assert_false(v.value >= 1 && v.value <= 9);
        assert_int_equal(v.value % 5, 0);
        int64_t diff = v.value > n ? v.value - n : n - v.value;
        assert_true(diff <= 2);
        if (n > 0) {
            assert_true(v.value != 0);
            assert_int_equal(v.status, DISC_ROUNDED);
            assert_int_equal(rules, DISC_RULE_ROUNDING);
        } else {
            assert_int_equal(v.value, 0);
            assert_int_equal(v.status, DISC_EXACT);
            assert_int_equal(rules, 0);
        }
        assert_true(n >= 10 || n == 0);
    }
}

static void test_half_rounds_up(void **state)
{
    (void)state;
    disc_policy p = { .min_cell = 1, .rounding = 10, .zero_is_disclosive = false };
    assert_int_equal(disc_count(&p, 15, NULL).value, 20);
    assert_int_equal(disc_count(&p, 14, NULL).value, 10);
    assert_int_equal(disc_count(&p, 25, NULL).value, 30);
    p.rounding = 5;
    assert_int_equal(disc_count(&p, 12, NULL).value, 10);
    assert_int_equal(disc_count(&p, 13, NULL).value, 15);
    /* a multiple already is still "rounded": status must not reveal residue */
    unsigned rules = 0;
    disc_value v = disc_count(&p, 20, &rules);
    assert_int_equal(v.value, 20);
    assert_int_equal(v.status, DISC_ROUNDED);
    assert_int_equal(rules, DISC_RULE_ROUNDING);
}

/* min_cell / rounding / zero variants over a grid. */
static void test_policy_variants(void **state)
{
    (void)state;
    static const int64_t mins[] = { 1, 2, 3, 5, 7, 10, 11, 20, 100 };
    static const int64_t rounds[] = { 1, 2, 3, 5, 7, 10, 25 };
    for (size_t a = 0; a < sizeof mins / sizeof mins[0]; a++)
        for (size_t b = 0; b < sizeof rounds / sizeof rounds[0]; b++)
            for (int z = 0; z <= 1; z++) {
                disc_policy p = { .min_cell = mins[a], .rounding = rounds[b],
                                  .zero_is_disclosive = z };
                for (int64_t n = -3; n <= 400; n++) {
                    unsigned rules = 0;
                    disc_value v = disc_count(&p, n, &rules);
                    bool must_suppress = n < 0 || (n > 0 && n < p.min_cell) ||
                                         (n == 0 && z);
                    if (must_suppress) {
                        assert_int_equal(v.status, DISC_SUPPRESSED);
                        assert_int_equal(v.value, 0);
                        assert_true(rules & DISC_RULE_SMALL_COUNT);
                        continue;
                    }
                    assert_int_not_equal(v.status, DISC_SUPPRESSED);
                    if (n == 0) {
                        assert_int_equal(v.value, 0);
                        assert_int_equal(v.status, DISC_EXACT);
                        continue;
                    }
                    assert_true(v.value > 0);
                    assert_int_equal(v.value % p.rounding, 0);
                    if (p.rounding == 1) {
                        assert_int_equal(v.value, n);
                        assert_int_equal(v.status, DISC_EXACT);
                        assert_int_equal(rules, 0);
                    } else {
                        assert_int_equal(v.status, DISC_ROUNDED);
                        assert_int_equal(rules, DISC_RULE_ROUNDING);
                        int64_t diff = v.value > n ? v.value - n : n - v.value;
                        if (n >= p.rounding / 2 + (p.rounding % 2))
                            assert_true(2 * diff <= p.rounding);
                        else   /* small non-zero counts go up to the base */
                            assert_int_equal(v.value, p.rounding);
                    }
                }
            }
}

/* min_cell 1 with rounding 5: a count of 1 or 2 would round to 0, but a
 * non-zero count is never shown as 0. */
static void test_nonzero_never_zero(void **state)
{
    (void)state;
    disc_policy p = { .min_cell = 1, .rounding = 5, .zero_is_disclosive = false };
    for (int64_t n = 1; n <= 4; n++) {
        disc_value v = disc_count(&p, n, NULL);
        assert_int_equal(v.value, 5);
        assert_int_equal(v.status, DISC_ROUNDED);
    }
    p.rounding = 1000;
    assert_int_equal(disc_count(&p, 1, NULL).value, 1000);
    assert_int_equal(disc_count(&p, 499, NULL).value, 1000);
    assert_int_equal(disc_count(&p, 1499, NULL).value, 1000);
    assert_int_equal(disc_count(&p, 1500, NULL).value, 2000);
}

static void test_zero_is_disclosive(void **state)
{
    (void)state;
    disc_policy p;
    disc_policy_default(&p);
    disc_value v = disc_count(&p, 0, NULL);
    assert_int_equal(v.status, DISC_EXACT);
    assert_int_equal(v.value, 0);

    p.zero_is_disclosive = true;
    unsigned r0 = 0, r3 = 0;
    v = disc_count(&p, 0, &r0);
    assert_int_equal(v.status, DISC_SUPPRESSED);
    assert_int_equal(v.value, 0);
    disc_value v3 = disc_count(&p, 3, &r3);
    assert_int_equal(v3.status, DISC_SUPPRESSED);
    /* A suppressed 0 and a suppressed 3 must be indistinguishable, rule
     * bits included. */
    assert_int_equal(r0, r3);
    assert_memory_equal(&v, &v3, sizeof v);
    assert_true(r0 & DISC_RULE_ZERO);
    assert_true(r0 & DISC_RULE_SMALL_COUNT);
}

static void test_negative_suppressed(void **state)
{
    (void)state;
    disc_policy p = { .min_cell = 1, .rounding = 1, .zero_is_disclosive = false };
    static const int64_t negs[] = { -1, -2, -10, -1000, INT64_MIN, INT64_MIN + 1 };
    for (size_t k = 0; k < sizeof negs / sizeof negs[0]; k++) {
        disc_value v = disc_count(&p, negs[k], NULL);
        assert_int_equal(v.status, DISC_SUPPRESSED);
        assert_int_equal(v.value, 0);
    }
}

static void test_huge_counts(void **state)
{
    (void)state;
    static const int64_t rounds[] = { 1, 2, 5, 7, 10, 1000000000, INT64_MAX / 2, INT64_MAX };
    static const int64_t counts[] = { INT64_MAX, INT64_MAX - 1, INT64_MAX - 4, INT64_MAX / 2,
                                      INT64_MAX / 2 + 1, (int64_t)1 << 62 };
    for (size_t a = 0; a < sizeof rounds / sizeof rounds[0]; a++)
        for (size_t b = 0; b < sizeof counts / sizeof counts[0]; b++) {
            disc_policy p = { .min_cell = 10, .rounding = rounds[a] };
            disc_value v = disc_count(&p, counts[b], NULL);
            assert_int_not_equal(v.status, DISC_SUPPRESSED);
            assert_true(v.value > 0);
            assert_int_equal(v.value % rounds[a], 0);
            /* saturating at the top: never further than one base away */
            int64_t diff = v.value > counts[b] ? v.value - counts[b] : counts[b] - v.value;
            assert_true(diff <= rounds[a]);
        }
    disc_policy p;
    disc_policy_default(&p);
    /* INT64_MAX = ...807, nearest multiple of 5 below is ...805 */
    assert_int_equal(disc_count(&p, INT64_MAX, NULL).value, INT64_MAX - 2);
    /* huge min_cell suppresses everything below it, no overflow */
    p.min_cell = INT64_MAX;
    assert_int_equal(disc_count(&p, INT64_MAX - 1, NULL).status, DISC_SUPPRESSED);
    assert_int_equal(disc_count(&p, INT64_MAX, NULL).status, DISC_ROUNDED);
}

/* Merge is never looser than the site floor, for every combination. */
static void test_merge_never_looser(void **state)
{
    (void)state;
    static const int64_t site_vals[] = { 1, 2, 3, 5, 10, 11 };
    static const int64_t req_vals[] = { INT64_MIN, -10, -1, 0, 1, 2, 3, 4, 5, 6, 7, 9, 10,
                                        11, 12, 20, 1000000000, 1000000001, INT64_MAX };
    for (size_t sm = 0; sm < sizeof site_vals / sizeof site_vals[0]; sm++)
        for (size_t sr = 0; sr < sizeof site_vals / sizeof site_vals[0]; sr++)
            for (int sz = 0; sz <= 1; sz++)
                for (size_t rm = 0; rm < sizeof req_vals / sizeof req_vals[0]; rm++)
                    for (size_t rr = 0; rr < sizeof req_vals / sizeof req_vals[0]; rr++)
                        for (int rz = 0; rz <= 1; rz++) {
                            disc_policy site = { .min_cell = site_vals[sm], .rounding = site_vals[sr],
                                                 .zero_is_disclosive = sz };
                            disc_policy out;
                            memset(&out, 0, sizeof out);
                            disc_policy_merge(&site, req_vals[rm], req_vals[rr], rz, &out);
                            assert_true(out.min_cell >= site.min_cell);
                            assert_true(out.rounding >= site.rounding);
                            /* released values stay multiples of the site base */
                            assert_int_equal(out.rounding % site.rounding, 0);
                            if (sz)
                                assert_true(out.zero_is_disclosive);
                            if (rz)
                                assert_true(out.zero_is_disclosive);
                            /* stricter requests are honoured (up to the cap),
                             * coarsened to the site's grid (issue 4) */
                            if (req_vals[rm] > site.min_cell && req_vals[rm] <= 1000000000 -
                                                                    2 * site.rounding)
                                assert_true(out.min_cell >= req_vals[rm] &&
                                            out.min_cell <= req_vals[rm] + 2 * site.rounding);
                            if (req_vals[rr] > 0)
                                assert_true(out.rounding >= req_vals[rr] ||
                                            out.rounding > 1000000000 - 2 * site.rounding);
                            /* odd multiples of the site base only */
                            assert_int_equal((out.rounding / site.rounding) % 2, 1);
                            /* looser or unset requests change nothing */
                            if (req_vals[rm] <= site.min_cell)
                                assert_int_equal(out.min_cell, site.min_cell);
                            if (req_vals[rr] <= site.rounding)
                                assert_int_equal(out.rounding, site.rounding);
                            assert_int_equal(disc_policy_check(&out, NULL, 0), 0);
                            /* and the merged policy really suppresses what the
                             * site would: every count the site suppresses stays
                             * suppressed */
                            for (int64_t n = 0; n < 15; n++) {
                                disc_value vs = disc_count(&site, n, NULL);
                                disc_value vo = disc_count(&out, n, NULL);
                                if (vs.status == DISC_SUPPRESSED)
                                    assert_int_equal(vo.status, DISC_SUPPRESSED);
                            }
                        }
}

static void test_merge_examples(void **state)
{
    (void)state;
    disc_policy site, out;
    disc_policy_default(&site);
    /* asking for min_cell 5 (looser) still gets 10 */
    disc_policy_merge(&site, 5, 0, false, &out);
    assert_int_equal(out.min_cell, 10);
    assert_int_equal(out.rounding, 5);
    assert_false(out.zero_is_disclosive);
    /* min_cell 20 -> 23: the next value where the site's 5-rounding
     * changes (23 -> 25, 22 -> 20); rounding 10 -> 15 (odd multiple) */
    disc_policy_merge(&site, 20, 10, true, &out);
    assert_int_equal(out.min_cell, 23);
    assert_int_equal(out.rounding, 15);
    assert_true(out.zero_is_disclosive);
    /* 7 is rounded up to an odd multiple of the site base */
    disc_policy_merge(&site, 0, 7, false, &out);
    assert_int_equal(out.rounding, 15);
    disc_policy_merge(&site, 18, 15, false, &out);
    assert_int_equal(out.min_cell, 18);
    assert_int_equal(out.rounding, 15);
    disc_policy_merge(&site, 0, 16, false, &out);
    assert_int_equal(out.rounding, 25);
    /* the rest of the policy comes from the site, defaults filled in */
    assert_int_equal(out.max_identical, 7);
    assert_int_equal(out.identical_window_days, 30);
    assert_int_equal(out.dominance_n, 2);
    assert_true(out.dominance_k > 0.89 && out.dominance_k < 0.91);
    assert_int_equal(out.min_dof, 10);
    /* a site policy that was never checked is still a floor */
    disc_policy bad = { .min_cell = 0, .rounding = 0, .zero_is_disclosive = false };
    disc_policy_merge(&bad, 0, 0, false, &out);
    assert_int_equal(out.min_cell, 1);
    assert_int_equal(out.rounding, 1);
}

static void test_rule_names(void **state)
{
    (void)state;
    const char *names[8];
    assert_int_equal(disc_rule_names(0, names, 8), 0);
    assert_int_equal(disc_rule_names(DISC_RULE_SMALL_COUNT, names, 8), 1);
    assert_string_equal(names[0], "small_count");
    assert_int_equal(disc_rule_names(DISC_RULE_ROUNDING, names, 8), 1);
    assert_string_equal(names[0], "rounding");
    assert_int_equal(disc_rule_names(DISC_RULE_ZERO, names, 8), 1);
    assert_string_equal(names[0], "zero_is_disclosive");
    unsigned all = DISC_RULE_SMALL_COUNT | DISC_RULE_ROUNDING | DISC_RULE_ZERO;
    assert_int_equal(disc_rule_names(all, names, 8), 3);
    assert_string_equal(names[0], "small_count");
    assert_string_equal(names[1], "rounding");
    assert_string_equal(names[2], "zero_is_disclosive");
    /* respects max */
    names[1] = NULL;
    assert_int_equal(disc_rule_names(all, names, 1), 1);
    assert_null(names[1]);
    assert_int_equal(disc_rule_names(all, names, 0), 0);
    /* unknown bits are ignored */
    assert_int_equal(disc_rule_names(1u << 20, names, 8), 0);
}

static void test_rules_accumulate(void **state)
{
    (void)state;
    disc_policy p;
    disc_policy_default(&p);
    unsigned rules = 0;
    (void)disc_count(&p, 100, &rules);
    assert_int_equal(rules, DISC_RULE_ROUNDING);
    (void)disc_count(&p, 3, &rules);
    assert_int_equal(rules, DISC_RULE_ROUNDING | DISC_RULE_SMALL_COUNT);
    (void)disc_count(&p, 0, &rules);   /* released 0 fires nothing new */
    assert_int_equal(rules, DISC_RULE_ROUNDING | DISC_RULE_SMALL_COUNT);
    /* NULL rules pointer is fine */
    assert_int_equal(disc_count(&p, 3, NULL).status, DISC_SUPPRESSED);
}

/* The open question of the query engine: an analyst asking for several
 * policies must not learn more than under the site's alone. For every site
 * policy and every request, the merged answer is a FUNCTION of the site
 * answer: no two counts with the same site answer get different merged
 * answers (so intersecting intervals gains nothing). */
static void test_merge_is_coarsening(void **state)
{
    (void)state;
    static const int64_t site_mc[] = { 1, 3, 5, 10, 11 };
    static const int64_t site_r[] = { 1, 2, 3, 5, 10 };
    for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 5; b++)
            for (int64_t rm = 0; rm <= 40; rm += 1)
                for (int64_t rr = 0; rr <= 40; rr += 3)
                    for (int z = 0; z <= 1; z++) {
                        disc_policy site;
                        disc_policy_default(&site);
                        site.min_cell = site_mc[a];
                        site.rounding = site_r[b];
                        disc_policy m;
                        disc_policy_merge(&site, rm, rr, z, &m);
                        /* map site answer -> merged answer over n in 0..400 */
                        int64_t seen_val[1000];
                        int seen_st[1000];
                        for (size_t k = 0; k < 1000; k++)
                            seen_st[k] = -1;
                        for (int64_t n = 0; n <= 400; n++) {
                            disc_value s = disc_count(&site, n, NULL);
                            disc_value o = disc_count(&m, n, NULL);
                            size_t key = s.status == DISC_SUPPRESSED ? 999
                                                                    : (size_t)s.value;
                            assert_true(key < 1000);
                            int st = (int)o.status;
                            if (seen_st[key] < 0) {
                                seen_st[key] = st;
                                seen_val[key] = o.value;
                            } else {
                                assert_int_equal(seen_st[key], st);
                                assert_int_equal(seen_val[key], o.value);
                            }
                        }
                    }
}

/* ...and the naive merge (any multiple, any threshold) would leak: with
 * rounding 10 next to the site's 5, n = 13 and n = 17 share the site answer
 * 15 but get 10 and 20. This is the attack the rule above prevents. */
static void test_even_multiple_would_leak(void **state)
{
    (void)state;
    disc_policy site, naive;
    disc_policy_default(&site);
    naive = site;
    naive.rounding = 10;
    assert_int_equal(disc_count(&site, 13, NULL).value, disc_count(&site, 17, NULL).value);
    assert_int_not_equal(disc_count(&naive, 13, NULL).value, disc_count(&naive, 17, NULL).value);
}

/* Deterministic noise: same key and index, same noise; different index or
 * key, independent draws; roughly the right spread; noised counts are
 * never released below min_cell and carry status NOISED. */
static void test_noise(void **state)
{
    (void)state;
    unsigned char k1[32], k2[32];
    memset(k1, 1, sizeof k1);
    memset(k2, 2, sizeof k2);
    assert_int_equal(disc_geometric_noise(k1, 7, 1.0, 1.0), disc_geometric_noise(k1, 7, 1.0, 1.0));
    int differ_idx = 0, differ_key = 0;
    double sum = 0, sumsq = 0;
    for (uint64_t i = 0; i < 4000; i++) {
        int64_t a = disc_geometric_noise(k1, i, 0.5, 1.0);
        differ_idx += a != disc_geometric_noise(k1, i + 1, 0.5, 1.0);
        differ_key += a != disc_geometric_noise(k2, i, 0.5, 1.0);
        sum += (double)a;
        sumsq += (double)a * (double)a;
    }
    assert_true(differ_idx > 3000);
    assert_true(differ_key > 3000);
    /* two-sided geometric, alpha = e^-0.5: variance 2a/(1-a)^2 ~ 7.83 */
    double mean = sum / 4000, var = sumsq / 4000 - mean * mean;
    assert_true(mean > -0.5 && mean < 0.5);
    assert_true(var > 5.5 && var < 10.5);
    disc_policy p;
    disc_policy_default(&p);
    p.dp_epsilon = 0.5;
    p.dp_budget = 5;
    int noised = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        unsigned rules = 0;
        disc_value v = disc_count_noised(&p, (int64_t)(i % 40), k1, i, &rules);
        assert_true(rules & DISC_RULE_NOISE);
        if (v.status == DISC_SUPPRESSED) {
            assert_int_equal(v.value, 0);
            continue;
        }
        assert_int_equal(v.status, DISC_NOISED);
        assert_true(v.value == 0 || v.value >= p.min_cell);
        assert_int_equal(v.value % p.rounding, 0);
        noised++;
    }
    assert_true(noised > 300);
    /* policy checks of the new fields */
    assert_int_equal(disc_policy_check(&p, NULL, 0), 0);
    p.dp_budget = 0.1;
    assert_int_equal(disc_policy_check(&p, NULL, 0), SDF_ECONFIG);
    disc_policy_default(&p);
    p.dominance_k = 1.5;
    assert_int_equal(disc_policy_check(&p, NULL, 0), SDF_ECONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_is_coarsening),
        cmocka_unit_test(test_even_multiple_would_leak),
        cmocka_unit_test(test_noise),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_check_rejects),
        cmocka_unit_test(test_default_policy_exhaustive),
        cmocka_unit_test(test_half_rounds_up),
        cmocka_unit_test(test_policy_variants),
        cmocka_unit_test(test_nonzero_never_zero),
        cmocka_unit_test(test_zero_is_disclosive),
        cmocka_unit_test(test_negative_suppressed),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_merge_never_looser),
        cmocka_unit_test(test_merge_examples),
        cmocka_unit_test(test_rule_names),
        cmocka_unit_test(test_rules_accumulate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
