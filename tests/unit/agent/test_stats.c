/* tests/unit/agent/test_stats.c — disclosure control of summary statistics (stats.c).
 *
 * Each rule is attacked: a stratum below min_cell, a sum dominated by one
 * or two outliers (positive, negative, in the variance only), quantiles
 * that would be single values, a mean that would reveal the exact n behind
 * a rounded count, and the guarantee that min and max never appear.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disclosure/stats.h"

static disc_policy pol(void)
{
    disc_policy p;
    disc_policy_default(&p);
    return p;
}

static void test_small_n_suppresses_everything(void **state)
{
    (void)state;
    disc_policy p = pol();
    for (size_t n = 1; n < 10; n++) {
        double v[10];
        for (size_t i = 0; i < n; i++)
            v[i] = 5.0 + (double)i;
        disc_summary s;
        unsigned rules = 0;
        assert_int_equal(disc_stats(&p, v, n, &s, &rules), 0);
        assert_int_equal(s.n.status, DISC_SUPPRESSED);
        assert_int_equal(s.n.value, 0);
        assert_int_equal(s.mean.status, DISC_SUPPRESSED);
        assert_true(s.mean.value == 0.0);
        assert_int_equal(s.sd.status, DISC_SUPPRESSED);
        for (int k = 0; k < DISC_N_QUANTILES; k++)
            assert_int_equal(s.q[k].status, DISC_SUPPRESSED);
        assert_true(rules & DISC_RULE_STATS_N);
    }
    /* a stricter min_cell from the query wins */
    p.min_cell = 50;
    double v[40];
    for (int i = 0; i < 40; i++)
        v[i] = i;
    disc_summary s;
    assert_int_equal(disc_stats(&p, v, 40, &s, NULL), 0);
    assert_int_equal(s.mean.status, DISC_SUPPRESSED);
}

static void test_empty_stratum(void **state)
{
    (void)state;
    disc_policy p = pol();
    disc_summary s;
    unsigned rules = 0;
    assert_int_equal(disc_stats(&p, NULL, 0, &s, &rules), 0);
    assert_int_equal(s.n.status, DISC_EXACT);   /* 0 is released as 0 by default */
    assert_int_equal(s.mean.status, DISC_SUPPRESSED);
    p.zero_is_disclosive = true;
    assert_int_equal(disc_stats(&p, NULL, 0, &s, &rules), 0);
    assert_int_equal(s.n.status, DISC_SUPPRESSED);
}

static void test_released_values(void **state)
{
    (void)state;
    disc_policy p = pol();
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = 50 + i;   /* 50..149: mean 99.5, sd 29.01 */
    disc_summary s;
    unsigned rules = 0;
    assert_int_equal(disc_stats(&p, v, 100, &s, &rules), 0);
    assert_int_equal(s.n.status, DISC_ROUNDED);
    assert_int_equal(s.n.value, 100);
    assert_int_equal(s.mean.status, DISC_ROUNDED);
    assert_true(fabs(s.mean.value - 99.5) < 0.05);
    assert_true(fabs(s.sd.value - 29.01) < 0.05);
    /* quartiles near 74.75, 99.5, 124.25 (bins of >= 10 values) */
    assert_true(fabs(s.q[0].value - 74.75) < 6);
    assert_true(fabs(s.q[1].value - 99.5) < 6);
    assert_true(fabs(s.q[2].value - 124.25) < 6);
    assert_false(rules & DISC_RULE_DOMINANCE);
}

/* No released number equals the minimum or maximum, and each quantile is
 * the mean of at least min_cell values. */
static void test_no_min_max_and_bins_hold_min_cell(void **state)
{
    (void)state;
    disc_policy p = pol();
    /* 10 values exactly: everything comes from one bin of 10 */
    double v[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 100 };
    disc_summary s;
    assert_int_equal(disc_stats(&p, v, 10, &s, NULL), 0);
    for (int k = 0; k < DISC_N_QUANTILES; k++) {
        if (s.q[k].status == DISC_SUPPRESSED)
            continue;
        assert_true(s.q[k].value != 1.0 && s.q[k].value != 100.0);
        assert_true(s.q[k].value > 1.0 && s.q[k].value < 100.0);
    }
    /* 25 values on a wide spread: the first quartile may not be a value */
    double w[25];
    for (int i = 0; i < 25; i++)
        w[i] = i * 7.0 + 1;
    assert_int_equal(disc_stats(&p, w, 25, &s, NULL), 0);
    for (int k = 0; k < DISC_N_QUANTILES; k++) {
        /* a mean of a bin of >= 10 of the 25 values lies between the
         * 5th and the 21st value: never the minimum or maximum */
        assert_int_equal(s.q[k].status, DISC_ROUNDED);
        assert_true(s.q[k].value >= w[4] && s.q[k].value <= w[20]);
    }
}

static void test_dominance_one_outlier(void **state)
{
    (void)state;
    disc_policy p = pol();
    double v[20];
    for (int i = 0; i < 19; i++)
        v[i] = 1.0;
    v[19] = 1000000.0;   /* one person holds > 90% of the sum */
    disc_summary s;
    unsigned rules = 0;
    assert_int_equal(disc_stats(&p, v, 20, &s, &rules), 0);
    assert_int_equal(s.n.status, DISC_ROUNDED);   /* n itself is fine */
    assert_int_equal(s.mean.status, DISC_SUPPRESSED);
    assert_int_equal(s.sd.status, DISC_SUPPRESSED);
    assert_true(rules & DISC_RULE_DOMINANCE);
}

static void test_dominance_two_outliers_and_negative(void **state)
{
    (void)state;
    disc_policy p = pol();
    double v[30];
    for (int i = 0; i < 28; i++)
        v[i] = 0.5;
    v[28] = -5000.0;   /* sign does not hide a contributor */
    v[29] = 5000.0;    /* the sum is ~14, but |x| is dominated by two */
    assert_true(disc_dominated(&p, v, 30));
    disc_summary s;
    unsigned rules = 0;
    assert_int_equal(disc_stats(&p, v, 30, &s, &rules), 0);
    assert_int_equal(s.mean.status, DISC_SUPPRESSED);
    assert_true(rules & DISC_RULE_DOMINANCE);
    /* dominance_n = 1 at the site: two equal outliers are not one */
    p.dominance_n = 1;
    assert_false(disc_dominated(&p, v, 30));
}

/* The mean passes but the variance is dominated by one outlier. */
static void test_dominance_in_variance(void **state)
{
    (void)state;
    disc_policy p = pol();
    double v[100];
    for (int i = 0; i < 99; i++)
        v[i] = 100.0 + (i % 2);   /* tight */
    v[99] = 400.0;                /* < 90% of the sum, but all of the variance */
    assert_false(disc_dominated(&p, v, 100));
    disc_summary s;
    unsigned rules = 0;
    assert_int_equal(disc_stats(&p, v, 100, &s, &rules), 0);
    assert_int_equal(s.mean.status, DISC_ROUNDED);
    assert_int_equal(s.sd.status, DISC_SUPPRESSED);
    assert_true(rules & DISC_RULE_DOMINANCE);
}

static void test_dominated_edge_cases(void **state)
{
    (void)state;
    disc_policy p = pol();
    double zeros[12] = { 0 };
    assert_false(disc_dominated(&p, zeros, 12));
    double eq[20];
    for (int i = 0; i < 20; i++)
        eq[i] = 3.0;
    assert_false(disc_dominated(&p, eq, 20));   /* top 2 hold 10% */
    double two[2] = { 1, 1 };
    assert_true(disc_dominated(&p, two, 2));    /* two contributors are the whole sum */
    p.dominance_k = 1.0;
    assert_false(disc_dominated(&p, two, 2));   /* k = 1 switches the rule off */
    /* defaults when the policy fields are 0 */
    disc_policy z = { .min_cell = 10, .rounding = 5 };
    double v[10] = { 1, 1, 1, 1, 1, 1, 1, 1, 50, 50 };
    assert_true(disc_dominated(&z, v, 10));
}

/* A full-precision mean would reveal the exact n behind a rounded n: the
 * released mean has only 4 significant digits. */
static void test_mean_does_not_reveal_exact_n(void **state)
{
    (void)state;
    disc_policy p = pol();
    double v[379];
    for (int i = 0; i < 379; i++)
        v[i] = 6.0 + (double)(i % 23) / 10.0;   /* HbA1c-like: tenths */
    disc_summary s;
    assert_int_equal(disc_stats(&p, v, 379, &s, NULL), 0);
    assert_int_equal(s.n.value, 380);
    /* for every candidate n near the rounded one, some sum of tenths is
     * consistent with the released mean: n stays hidden */
    int consistent = 0;
    for (int n = 378; n <= 382; n++) {
        double sum = s.mean.value * n;
        double lo = (s.mean.value - 0.0005 * s.mean.value) * n, hi = sum + 0.0005 * s.mean.value * n;
        if (floor(hi * 10) >= ceil(lo * 10))
            consistent++;
    }
    assert_int_equal(consistent, 5);
    char buf[64];
    snprintf(buf, sizeof buf, "%.10g", s.mean.value);
    assert_true(strlen(buf) <= 6);   /* d.ddd */
}

static void test_rule_names(void **state)
{
    (void)state;
    const char *names[4];
    assert_int_equal(disc_stats_rule_names(DISC_RULE_STATS_N | DISC_RULE_DOMINANCE, names, 4), 2);
    assert_string_equal(names[0], "stats_small_n");
    assert_string_equal(names[1], "dominance");
    assert_int_equal(disc_stats_rule_names(DISC_RULE_DOMINANCE, names, 0), 0);
    assert_int_equal(disc_stats_rule_names(1u, names, 4), 0);
}

/* ---- differential privacy (disc_stats_noised, disc_laplace_noise) ---- */

static void key_of(unsigned char key[32], unsigned seed)
{
    for (int i = 0; i < 32; i++)
        key[i] = (unsigned char)(seed * 131u + (unsigned)i * 7u);
}

static void test_laplace_noise_distribution(void **state)
{
    (void)state;
    unsigned char key[32];
    key_of(key, 1);
    /* Laplace(b): mean 0, E|X| = b, Var = 2 b^2; 40,000 draws */
    const double b = 3.0;
    const int n = 40000;
    double s = 0, sa = 0, ss = 0;
    for (int i = 0; i < n; i++) {
        double x = disc_laplace_noise(key, (uint64_t)i, b);
        s += x;
        sa += fabs(x);
        ss += x * x;
    }
    assert_true(fabs(s / n) < 0.06);                 /* sd of the mean: b*sqrt(2/n) = 0.021 */
    assert_true(fabs(sa / n - b) < 0.05 * b);
    assert_true(fabs(ss / n - 2 * b * b) < 0.08 * 2 * b * b);
    /* a pure function of key and index */
    assert_true(disc_laplace_noise(key, 17, b) == disc_laplace_noise(key, 17, b));
    assert_true(disc_laplace_noise(key, 17, b) != disc_laplace_noise(key, 18, b));
    assert_true(disc_laplace_noise(key, 17, 0.0) == 0.0);
}

static void test_noised_stats_bad_arguments(void **state)
{
    (void)state;
    disc_policy p = pol();
    unsigned char key[32];
    key_of(key, 2);
    double v[3] = { 1, 2, 3 };
    disc_summary s;
    p.dp_epsilon = 0.0;
    assert_int_equal(disc_stats_noised(&p, v, 3, 0, 10, key, 0, &s, NULL), SDF_EINVAL);
    p.dp_epsilon = 1.0;
    assert_int_equal(disc_stats_noised(&p, v, 3, 10, 10, key, 0, &s, NULL), SDF_EINVAL);
    assert_int_equal(disc_stats_noised(&p, v, 3, 0, INFINITY, key, 0, &s, NULL), SDF_EINVAL);
    assert_int_equal(s.n.status, DISC_SUPPRESSED);
    assert_int_equal(s.mean.status, DISC_SUPPRESSED);
}

static void test_noised_stats_release(void **state)
{
    (void)state;
    disc_policy p = pol();
    p.dp_epsilon = 3.0;
    unsigned char key[32];
    key_of(key, 3);
    /* 200 values around 50, one wild outlier that clamping must bound */
    double v[200];
    for (int i = 0; i < 200; i++)
        v[i] = 40.0 + (double)(i % 21);
    v[7] = 1e9;
    disc_summary s;
    unsigned rules = 0;
    assert_int_equal(disc_stats_noised(&p, v, 200, 0, 100, key, 40, &s, &rules), 0);
    assert_int_equal(s.n.status, DISC_NOISED);
    assert_int_equal(s.mean.status, DISC_NOISED);
    assert_int_equal(s.sd.status, DISC_NOISED);
    for (int i = 0; i < DISC_N_QUANTILES; i++)
        assert_int_equal(s.q[i].status, DISC_SUPPRESSED);
    assert_true(rules & DISC_RULE_NOISE);
    assert_true(rules & DISC_RULE_DP_NO_QUANTILES);
    assert_false(rules & DISC_RULE_DOMINANCE);
    /* the outlier counts as 100 (clamped): the true clamped mean is ~50.3,
     * and at eps 3 the noise is small, so the release is near it */
    assert_true(s.mean.value >= 0 && s.mean.value <= 100);
    assert_true(fabs(s.mean.value - 50.3) < 2.0);
    assert_true(s.sd.value > 3.0 && s.sd.value < 12.0);
    assert_true(s.n.value % 5 == 0 && llabs(s.n.value - 200) <= 10);
    /* deterministic in the key; another key, another draw */
    disc_summary s2;
    assert_int_equal(disc_stats_noised(&p, v, 200, 0, 100, key, 40, &s2, NULL), 0);
    assert_true(s2.mean.value == s.mean.value && s2.sd.value == s.sd.value);
    key_of(key, 4);
    assert_int_equal(disc_stats_noised(&p, v, 200, 0, 100, key, 40, &s2, NULL), 0);
    assert_true(s2.mean.value != s.mean.value || s2.sd.value != s.sd.value);
}

static void test_noised_stats_small_noised_n(void **state)
{
    (void)state;
    disc_policy p = pol();
    p.dp_epsilon = 30.0;          /* almost no noise: n stays 3 */
    unsigned char key[32];
    key_of(key, 5);
    double v[3] = { 120.0, 121.0, 122.0 };
    disc_summary s;
    unsigned rules = 0;
    assert_int_equal(disc_stats_noised(&p, v, 3, 0, 200, key, 0, &s, &rules), 0);
    assert_int_equal(s.n.status, DISC_SUPPRESSED);
    assert_int_equal(s.mean.status, DISC_SUPPRESSED);
    assert_int_equal(s.sd.status, DISC_SUPPRESSED);
    assert_true(rules & DISC_RULE_STATS_N);
}

/* The mechanism's noise really scales with the clamp range: the spread of
 * released means over many keys is about (r / (eps/3)) / n * sqrt(2). */
static void test_noised_mean_spread_follows_the_range(void **state)
{
    (void)state;
    disc_policy p = pol();
    p.dp_epsilon = 3.0;
    double v[100];
    for (int i = 0; i < 100; i++)
        v[i] = 5.0;
    double spread[2];
    const double his[2] = { 10.0, 1000.0 };
    for (int h = 0; h < 2; h++) {
        double s = 0, ss = 0;
        for (unsigned k = 0; k < 400; k++) {
            unsigned char key[32];
            key_of(key, 100 + k);
            disc_summary out;
            assert_int_equal(disc_stats_noised(&p, v, 100, 0, his[h], key, 0, &out, NULL), 0);
            s += out.mean.value;
            ss += out.mean.value * out.mean.value;
        }
        spread[h] = sqrt(ss / 400 - (s / 400) * (s / 400));
    }
    /* r = 5 vs 500 (100x): the small range's means barely move, the large
     * range's are far noisier */
    assert_true(spread[0] < 0.3);
    assert_true(spread[1] > 10 * spread[0]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_n_suppresses_everything),
        cmocka_unit_test(test_empty_stratum),
        cmocka_unit_test(test_released_values),
        cmocka_unit_test(test_no_min_max_and_bins_hold_min_cell),
        cmocka_unit_test(test_dominance_one_outlier),
        cmocka_unit_test(test_dominance_two_outliers_and_negative),
        cmocka_unit_test(test_dominance_in_variance),
        cmocka_unit_test(test_dominated_edge_cases),
        cmocka_unit_test(test_mean_does_not_reveal_exact_n),
        cmocka_unit_test(test_rule_names),
        cmocka_unit_test(test_laplace_noise_distribution),
        cmocka_unit_test(test_noised_stats_bad_arguments),
        cmocka_unit_test(test_noised_stats_release),
        cmocka_unit_test(test_noised_stats_small_noised_n),
        cmocka_unit_test(test_noised_mean_spread_follows_the_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
