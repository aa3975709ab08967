/* tests/unit/agent/test_metrics.c — exact validation metrics (agent/metrics.c).
 *
 * Reference values are hand-computed (the 3+3 AUC case, Wilson 5/10, the
 * grouped recalibration fits whose MLE reproduces the group rates exactly)
 * or published (Hanley & McNeil 1982, Radiology 143:29, CT ratings of 109
 * patients: AUC 0.8932; DeLong variance checked against an O(n^2)
 * implementation of the structural components written independently here).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "metrics.h"

#define EPS 1e-9

static void test_auc_hand_case(void **state)
{
    (void)state;
    /* events 0.9 0.8 0.4, non-events 0.7 0.4 0.1: 7.5 of 9 pairs */
    double s[] = { 0.9, 0.7, 0.8, 0.4, 0.4, 0.1 };
    unsigned char y[] = { 1, 0, 1, 1, 0, 0 };
    double auc, var;
    assert_int_equal(metrics_auc_delong(s, y, 6, &auc, &var), 0);
    assert_true(fabs(auc - 7.5 / 9.0) < EPS);
    /* var(V10)/3 + var(V01)/3 = (1/12)/3 + (1/36)/3 = 1/27 */
    assert_true(fabs(var - 1.0 / 27.0) < EPS);
    metrics_ci ci = metrics_auc_ci(auc, var);
    assert_true(fabs(ci.hi - 1.0) < EPS);   /* clipped */
    assert_true(fabs(ci.lo - (auc - METRICS_Z95 * sqrt(1.0 / 27.0))) < EPS);
}

/* Independent O(n^2) DeLong. */
static void delong_ref(const double *s, const unsigned char *y, size_t n, double *auc,
                       double *var)
{
    size_t m = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        y[i] ? m++ : k++;
    double *v10 = calloc(m, sizeof *v10), *v01 = calloc(k, sizeof *v01);
    size_t a = 0;
    for (size_t i = 0; i < n; i++) {
        if (!y[i])
            continue;
        double t = 0;
        for (size_t j = 0; j < n; j++)
            if (!y[j])
                t += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
        v10[a++] = t / (double)k;
    }
    size_t b = 0;
    for (size_t j = 0; j < n; j++) {
        if (y[j])
            continue;
        double t = 0;
        for (size_t i = 0; i < n; i++)
            if (y[i])
                t += s[i] > s[j] ? 1 : s[i] == s[j] ? 0.5 : 0;
        v01[b++] = t / (double)m;
    }
    double mean = 0;
    for (size_t i = 0; i < m; i++)
        mean += v10[i];
    mean /= (double)m;
    double q10 = 0, q01 = 0;
    for (size_t i = 0; i < m; i++)
        q10 += (v10[i] - mean) * (v10[i] - mean);
    for (size_t j = 0; j < k; j++)
        q01 += (v01[j] - mean) * (v01[j] - mean);
    *auc = mean;
    *var = q10 / (double)(m - 1) / (double)m + q01 / (double)(k - 1) / (double)k;
    free(v10);
    free(v01);
}

static void test_auc_hanley_mcneil(void **state)
{
    (void)state;
    /* ratings 1..5; normal 33 6 6 11 2, abnormal 3 2 2 11 33 */
    const int normal[5] = { 33, 6, 6, 11, 2 }, abnormal[5] = { 3, 2, 2, 11, 33 };
    double s[109];
    unsigned char y[109];
    size_t n = 0;
    for (int r = 0; r < 5; r++) {
        for (int c = 0; c < normal[r]; c++) {
            s[n] = r + 1;
            y[n++] = 0;
        }
        for (int c = 0; c < abnormal[r]; c++) {
            s[n] = r + 1;
            y[n++] = 1;
        }
    }
    assert_int_equal(n, 109);
    double auc, var, rauc, rvar;
    assert_int_equal(metrics_auc_delong(s, y, n, &auc, &var), 0);
    assert_true(fabs(auc - 0.8932) < 5e-5);          /* published: 0.8932 */
    assert_true(fabs(auc - 0.89317106152806) < 1e-12);
    delong_ref(s, y, n, &rauc, &rvar);
    assert_true(fabs(auc - rauc) < 1e-12);
    assert_true(fabs(var - rvar) < 1e-12);
    assert_true(fabs(var - 0.000943989270262984) < 1e-12);
}

static void test_auc_random_against_reference(void **state)
{
    (void)state;
    srand(7);
    for (int round = 0; round < 20; round++) {
        size_t n = 20 + (size_t)(rand() % 300);
        double *s = malloc(n * sizeof *s);
        unsigned char *y = malloc(n);
        y[0] = 1;
        y[1] = 0;
        for (size_t i = 0; i < n; i++) {
            if (i > 1)
                y[i] = (unsigned char)(rand() % 3 == 0);
            /* coarse scores so ties happen */
            s[i] = (double)(rand() % 20) / 20.0 + (y[i] ? 0.1 : 0);
        }
        double auc, var, rauc, rvar;
        assert_int_equal(metrics_auc_delong(s, y, n, &auc, &var), 0);
        delong_ref(s, y, n, &rauc, &rvar);
        assert_true(fabs(auc - rauc) < 1e-10);
        assert_true(fabs(var - rvar) < 1e-10);
        free(s);
        free(y);
    }
}

static void test_auc_needs_both_classes(void **state)
{
    (void)state;
    double s[] = { 0.1, 0.2 };
    unsigned char y[] = { 1, 1 };
    double auc, var;
    assert_int_equal(metrics_auc_delong(s, y, 2, &auc, &var), SDF_EINVAL);
    y[0] = y[1] = 0;
    assert_int_equal(metrics_auc_delong(s, y, 2, &auc, &var), SDF_EINVAL);
}

static void test_confusion_and_wilson(void **state)
{
    (void)state;
    double s[] = { 0.9, 0.7, 0.8, 0.4, 0.4, 0.1 };
    unsigned char y[] = { 1, 0, 1, 1, 0, 0 };
    metrics_confusion c;
    metrics_confusion_at(s, y, 6, 0.4, &c);   /* >= 0.4 positive */
    assert_int_equal(c.tp, 3);
    assert_int_equal(c.fp, 2);
    assert_int_equal(c.tn, 1);
    assert_int_equal(c.fn, 0);
    metrics_confusion_at(s, y, 6, 0.75, &c);
    assert_int_equal(c.tp, 2);
    assert_int_equal(c.fp, 0);
    assert_int_equal(c.tn, 3);
    assert_int_equal(c.fn, 1);

    metrics_ci w = metrics_wilson(5, 10);
    assert_true(fabs(w.est - 0.5) < EPS);
    assert_true(fabs(w.lo - 0.2365931) < 1e-6);
    assert_true(fabs(w.hi - 0.7634069) < 1e-6);
    w = metrics_wilson(0, 20);   /* 0/20: [0, 0.1611] */
    assert_true(w.lo == 0.0);
    assert_true(fabs(w.hi - 0.1611251) < 1e-6);
    w = metrics_wilson(1, 0);
    assert_true(isnan(w.est));
}

/* Two groups of 1000 at p = 0.2 and 0.8 with observed rates r1, r2: the
 * MLE reproduces the rates, so the slope/intercept follow by hand. */
static void grouped(double r1, double r2, double *s, unsigned char *y)
{
    for (int i = 0; i < 1000; i++) {
        s[i] = 0.2;
        y[i] = (unsigned char)(i < (int)lround(r1 * 1000));
        s[1000 + i] = 0.8;
        y[1000 + i] = (unsigned char)(i < (int)lround(r2 * 1000));
    }
}

static void test_calibration_fits(void **state)
{
    (void)state;
    static double s[2000];
    static unsigned char y[2000];
    metrics_calibration c;

    grouped(0.1, 0.9, s, y);
    assert_int_equal(metrics_calibration_fit(s, y, 2000, &c), 0);
    assert_true(c.converged);
    assert_true(fabs(c.brier - 0.1) < EPS);
    assert_true(fabs(c.oe_ratio - 1.0) < EPS);
    assert_true(fabs(c.citl) < 1e-8);
    assert_true(fabs(c.intercept) < 1e-8);
    assert_true(fabs(c.slope - log(9.0) / log(4.0)) < 1e-8);

    grouped(0.2, 0.9, s, y);
    assert_int_equal(metrics_calibration_fit(s, y, 2000, &c), 0);
    assert_true(c.converged);
    /* a + b*logit(.2) = logit(.2); a + b*logit(.8) = logit(.9) */
    double l2 = log(0.25), l9 = log(9.0);
    double b = (l9 - l2) / (2 * log(4.0)), a = (l9 + l2) / 2;
    assert_true(fabs(c.slope - b) < 1e-8);
    assert_true(fabs(c.intercept - a) < 1e-8);
    assert_true(fabs(c.oe_ratio - 1100.0 / 1000.0) < EPS);
    assert_true(c.citl > 0);   /* more events than predicted */

    /* constant score: slope not identifiable, reported as not converged */
    for (int i = 0; i < 2000; i++)
        s[i] = 0.5;
    assert_int_equal(metrics_calibration_fit(s, y, 2000, &c), 0);
    assert_false(c.converged);
    assert_true(isnan(c.slope));
    assert_int_equal(metrics_calibration_fit(s, y, 0, &c), SDF_EINVAL);
}

static void test_bins(void **state)
{
    (void)state;
    double s[] = { 0.0, 0.05, 0.1, 0.55, 0.99, 1.0 };
    unsigned char y[] = { 0, 1, 0, 1, 1, 1 };
    metrics_bin b[10];
    assert_int_equal(metrics_bins_fixed(s, y, 6, 10, b), 0);
    assert_int_equal(b[0].n, 2);
    assert_int_equal(b[0].events, 1);
    assert_int_equal(b[1].n, 1);
    assert_int_equal(b[5].n, 1);
    assert_int_equal(b[9].n, 2);   /* 1.0 goes in the last bin */
    assert_true(fabs(b[9].sum_predicted - 1.99) < EPS);
    assert_int_equal(metrics_bins_fixed(s, y, 6, 0, b), SDF_EINVAL);
    assert_int_equal(metrics_bins_fixed(s, y, 6, METRICS_MAX_BINS + 1, b), SDF_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auc_hand_case),
        cmocka_unit_test(test_auc_hanley_mcneil),
        cmocka_unit_test(test_auc_random_against_reference),
        cmocka_unit_test(test_auc_needs_both_classes),
        cmocka_unit_test(test_confusion_and_wilson),
        cmocka_unit_test(test_calibration_fits),
        cmocka_unit_test(test_bins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
