/* tests/unit/agent/test_metrics_more.c — issue 5 items 3/4 in agent/metrics.c.
 *
 * Paired DeLong comparison of two scores: a hand case (8 persons; the
 * structural components worked out by hand below) and random tied data
 * against an O(n^2) computation of the components written independently
 * here; histogram coarsening (every coarse count is 0 or >= min_cell, a
 * known example, determinism, refusal when the totals fail, zero
 * disclosive); quantile edges and bins at given edges.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

#define EPS 1e-12

static void test_paired_hand_case(void **state)
{
    (void)state;
    /* events: rows 0, 1, 2, 6. Version a: events 0.9 0.8 0.4 0.7 against
     * non-events 0.6 0.3 0.2 0.5 -> V10 = 1, 1, 1/2, 1 (AUC 7/8); V01 of
     * the non-events = 3/4, 1, 1, 3/4. Version b: events 0.8 0.9 0.7 0.6
     * against 0.3 0.4 0.1 0.6 -> V10 = 1, 1, 1, 7/8 (the tie at 0.6 counts
     * one half; AUC 31/32); V01 = 1, 1, 1, 7/8.
     * The variance of the difference is that of D = Vb - Va: over events
     * D = 0, 0, 1/2, -1/8 (mean 3/32, sum of squared deviations 59/256),
     * over non-events D = 1/4, 0, 0, 1/8 (mean 3/32, 11/256), so
     *   var = 59/256 / 3 / 4 + 11/256 / 3 / 4 = 70/3072 = 35/1536. */
    double a[] = { 0.9, 0.8, 0.4, 0.6, 0.3, 0.2, 0.7, 0.5 };
    double b[] = { 0.8, 0.9, 0.7, 0.3, 0.4, 0.1, 0.6, 0.6 };
    unsigned char y[] = { 1, 1, 1, 0, 0, 0, 1, 0 };
    double comp[8];
    assert_int_equal(metrics_delong_components(a, y, 8, comp), 0);
    double want_a[] = { 1, 1, 0.5, 0.75, 1, 1, 1, 0.75 };
    for (int i = 0; i < 8; i++)
        assert_true(fabs(comp[i] - want_a[i]) < EPS);
    assert_int_equal(metrics_delong_components(b, y, 8, comp), 0);
    double want_b[] = { 1, 1, 1, 1, 1, 1, 0.875, 0.875 };
    for (int i = 0; i < 8; i++)
        assert_true(fabs(comp[i] - want_b[i]) < EPS);
    metrics_auc_diff d;
    assert_int_equal(metrics_auc_paired(a, b, y, 8, &d), 0);
    assert_true(fabs(d.auc_a - 0.875) < EPS);
    assert_true(fabs(d.auc_b - 0.96875) < EPS);
    assert_true(fabs(d.diff - 0.09375) < EPS);
    assert_true(fabs(d.se - sqrt(35.0 / 1536.0)) < 1e-12);
    assert_true(fabs(d.lo - (0.09375 - METRICS_Z95 * d.se)) < EPS);
    assert_true(fabs(d.hi - (0.09375 + METRICS_Z95 * d.se)) < EPS);
    assert_true(fabs(d.p - erfc(fabs(0.09375 / d.se) / sqrt(2.0))) < EPS);
    assert_true(fabs(d.p - 0.5345608020345052) < 1e-9);
    /* the same score twice: difference 0, SE 0, p 1 */
    assert_int_equal(metrics_auc_paired(a, a, y, 8, &d), 0);
    assert_true(d.diff == 0 && d.se == 0 && d.p == 1.0);
    /* no non-event */
    unsigned char ones[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    assert_int_equal(metrics_auc_paired(a, b, ones, 8, &d), SDF_EINVAL);
}

static uint64_t rng_state = 88172645463325252ULL;
static double urand(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* O(n^2): psi(x, y) = 1 if x > y, 1/2 if equal. */
static double psi(double x, double yv)
{
    return x > yv ? 1.0 : x == yv ? 0.5 : 0.0;
}

static void ref_paired(const double *a, const double *b, const unsigned char *y, size_t n,
                       double *diff, double *var)
{
    size_t m = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        y[i] ? m++ : k++;
    double *va = calloc(n, sizeof *va), *vb = calloc(n, sizeof *vb);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            if (y[i] && !y[j]) {   /* event i, non-event j */
                va[i] += psi(a[i], a[j]) / (double)k;
                vb[i] += psi(b[i], b[j]) / (double)k;
                va[j] += psi(a[i], a[j]) / (double)m;
                vb[j] += psi(b[i], b[j]) / (double)m;
            }
        }
    double Aa = 0, Ab = 0;
    for (size_t i = 0; i < n; i++)
        if (y[i]) {
            Aa += va[i] / (double)m;
            Ab += vb[i] / (double)m;
        }
    /* S10, S01 as 2x2 matrices; var(diff) = L S10 L'/m + L S01 L'/k, L = (-1, 1) */
    double v = 0;
    for (int lab = 1; lab >= 0; lab--) {
        double s = 0;
        size_t c = lab ? m : k;
        for (size_t i = 0; i < n; i++)
            if (y[i] == lab) {
                double d = (vb[i] - Ab) - (va[i] - Aa);
                s += d * d;
            }
        v += s / (double)(c - 1) / (double)c;
    }
    *diff = Ab - Aa;
    *var = v;
    free(va);
    free(vb);
}

static void test_paired_random_against_reference(void **state)
{
    (void)state;
    for (int rep = 0; rep < 5; rep++) {
        size_t n = 150 + (size_t)rep * 37;
        double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
        unsigned char *y = malloc(n);
        for (size_t i = 0; i < n; i++) {
            y[i] = urand() < 0.3;
            /* coarse values: many ties within and across labels */
            a[i] = floor((urand() + 0.3 * y[i]) * 20) / 20;
            b[i] = floor((0.5 * a[i] + 0.5 * urand() + 0.2 * y[i]) * 25) / 25;
        }
        y[0] = 1;
        y[1] = 0;
        double rd, rv;
        ref_paired(a, b, y, n, &rd, &rv);
        metrics_auc_diff d;
        assert_int_equal(metrics_auc_paired(a, b, y, n, &d), 0);
        assert_true(fabs(d.diff - rd) < 1e-12);
        assert_true(fabs(d.se * d.se - rv) < 1e-12);
        double auc, var;
        assert_int_equal(metrics_auc_delong(b, y, n, &auc, &var), 0);
        assert_true(fabs(d.auc_b - auc) < 1e-12);
        free(a);
        free(b);
        free(y);
    }
}

static int passes(int64_t c, int64_t mc, int zero_ok)
{
    return c == 0 ? zero_ok : c >= mc;
}

static void test_coarsen_known_example(void **state)
{
    (void)state;
    /* min_cell 3: bins close at the first fine bin where both pass */
    int64_t ev[] = { 0, 1, 2, 0, 0, 5, 1, 0, 1 };
    int64_t ne[] = { 4, 0, 1, 0, 3, 0, 2, 0, 0 };
    size_t ends[9], n = 0;
    assert_int_equal(metrics_hist_coarsen(ev, ne, 9, 3, 1, ends, &n), 0);
    /* [0]: (0,4) passes -> ends 1; [1..2]: (3,1) no, [1..4]: (3,4) -> ends 5;
     * [5]: (5,0) -> ends 6; [6..8]: (2,2) fails -> merged back: (7,2) fails,
     * then with [1..4]: (10,6) -> one bin [1..8] */
    assert_int_equal(n, 2);
    assert_int_equal(ends[0], 1);
    assert_int_equal(ends[1], 9);
    /* zero disclosive: [0..2] (3,5) -> ends 3; [3..5] (5,3) -> ends 6;
     * [6..8] (2,2) fails and is merged back: (7,5) -> ends 9 */
    assert_int_equal(metrics_hist_coarsen(ev, ne, 9, 3, 0, ends, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ends[0], 3);
    assert_int_equal(ends[1], 9);
    /* totals that fail: no partition */
    int64_t e2[] = { 1, 1 }, n2[] = { 5, 5 };
    assert_int_equal(metrics_hist_coarsen(e2, n2, 2, 3, 1, ends, &n), SDF_EINVAL);
    assert_int_equal(metrics_hist_coarsen(e2, n2, 0, 3, 1, ends, &n), SDF_EINVAL);
    /* trailing empty fine bins join the last bin */
    int64_t e3[] = { 3, 0, 0 }, n3[] = { 3, 0, 0 };
    assert_int_equal(metrics_hist_coarsen(e3, n3, 3, 3, 1, ends, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ends[0], 3);
}

static void test_coarsen_random_never_small(void **state)
{
    (void)state;
    enum { H = 200 };
    for (int rep = 0; rep < 200; rep++) {
        int64_t ev[H], ne[H];
        int64_t mc = 1 + rep % 12;
        int zero_ok = rep % 3 != 0;
        for (size_t i = 0; i < H; i++) {
            ev[i] = urand() < 0.6 ? (int64_t)(urand() * 4) : 0;
            ne[i] = urand() < 0.5 ? (int64_t)(urand() * 6) : 0;
        }
        ev[7] += mc;   /* the totals pass */
        ne[9] += mc;
        size_t ends[H], ends2[H], n = 0, n2 = 0;
        assert_int_equal(metrics_hist_coarsen(ev, ne, H, mc, zero_ok, ends, &n), 0);
        assert_int_equal(metrics_hist_coarsen(ev, ne, H, mc, zero_ok, ends2, &n2), 0);
        assert_int_equal(n, n2);   /* deterministic */
        assert_memory_equal(ends, ends2, n * sizeof *ends);
        assert_true(n >= 1);
        assert_int_equal(ends[n - 1], H);   /* covers everything */
        size_t start = 0;
        for (size_t c = 0; c < n; c++) {
            assert_true(ends[c] > start);   /* non-empty ranges, increasing */
            int64_t e = 0, m = 0;
            for (size_t i = start; i < ends[c]; i++) {
                e += ev[i];
                m += ne[i];
            }
            assert_true(passes(e, mc, zero_ok));
            assert_true(passes(m, mc, zero_ok));
            assert_true(e + m > 0 || n == 1);
            start = ends[c];
        }
    }
}

static void test_quantile_edges_and_bins(void **state)
{
    (void)state;
    double s[100];
    unsigned char y[100];
    for (int i = 0; i < 100; i++) {
        s[i] = (double)((i * 37) % 100) / 100.0 + 0.0004;   /* a permutation of k/100 + 4e-4 */
        y[i] = i % 3 == 0;
    }
    double e[METRICS_MAX_BINS + 1];
    size_t nb = 0;
    assert_int_equal(metrics_quantile_edges(s, 100, 4, e, &nb), 0);
    /* edge k: the mean of sorted[25k - 5 .. 25k + 4] = (25k - 0.5)/100 + 4e-4,
     * rounded: 0.2454 -> 0.245, 0.4954 -> 0.495, 0.7454 -> 0.745 */
    assert_int_equal(nb, 4);
    assert_true(e[0] == 0.0 && e[1] == 0.245 && e[2] == 0.495 && e[3] == 0.745 &&
                e[4] == 1.0);
    metrics_bin b[METRICS_MAX_BINS];
    assert_int_equal(metrics_bins_edges(s, y, 100, e, nb, b), 0);
    assert_int_equal(b[0].n, 25);   /* [0, 0.245): 0.0004 .. 0.2404 */
    assert_int_equal(b[1].n, 25);
    assert_int_equal(b[3].n, 25);
    /* no edge is one row's score */
    for (int i = 0; i < 100; i++)
        for (size_t k = 1; k < nb; k++)
            assert_true(round(s[i] * 1000) / 1000 != e[k]);
    /* ten rows: every edge is the mean of all ten (0.27): one edge, 2 bins */
    double t[10] = { 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.9 };
    assert_int_equal(metrics_quantile_edges(t, 10, 5, e, &nb), 0);
    assert_int_equal(nb, 2);
    assert_true(e[1] == 0.27);
    assert_int_equal(metrics_quantile_edges(t, 0, 5, e, &nb), SDF_EINVAL);
    assert_int_equal(metrics_quantile_edges(t, 10, 0, e, &nb), SDF_EINVAL);
    /* bad edges */
    double bad[] = { 0.0, 0.5, 0.5, 1.0 };
    assert_int_equal(metrics_bins_edges(s, y, 100, bad, 3, b), SDF_EINVAL);
    /* a score of exactly 1 is in the last bin, a score on an edge in the upper bin */
    double u[] = { 1.0, 0.5, 0.0 };
    unsigned char uy[] = { 1, 0, 1 };
    double two[] = { 0.0, 0.5, 1.0 };
    assert_int_equal(metrics_bins_edges(u, uy, 3, two, 2, b), 0);
    assert_int_equal(b[0].n, 1);
    assert_int_equal(b[1].n, 2);
    assert_int_equal(b[1].events, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paired_hand_case),
        cmocka_unit_test(test_paired_random_against_reference),
        cmocka_unit_test(test_coarsen_known_example),
        cmocka_unit_test(test_coarsen_random_never_small),
        cmocka_unit_test(test_quantile_edges_and_bins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
