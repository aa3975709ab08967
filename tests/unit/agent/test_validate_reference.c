/* tests/unit/agent/test_validate_reference.c — the agent's AUC and DeLong
 * interval against R's pROC (issue 5: "per-site AUC and DeLong CI agree to
 * 1e-6 with an independent reference implementation").
 *
 * The reference numbers were computed once with R 4.2.2 + pROC 1.18.0 and
 * stored, with the data and the exact R script, in
 * validate_reference_fixture.h, so this test holds where R is absent
 * (tests/integration/test_validate_reference.py repeats the comparison
 * end to end through a sandbox, against a live R, when R is installed).
 * Each case runs agent/metrics.c on the same doubles R saw and requires
 * |agent - pROC| <= 1e-9 for the AUC, the DeLong variance and both CI
 * limits — stricter than the 1e-6 the issue asks for, since both sides
 * compute the same exact statistic in double precision. Each case is also
 * run on the rows in reverse order (the result must not depend on it). The
 * paired comparison of two scores on the same rows is checked against
 * pROC's roc.test(method = "delong", paired = TRUE) the same way.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"
#include "validate_reference_fixture.h"

#define TOL 1e-9

typedef struct ref_case {
    const char *name;
    const int *k;
    const unsigned char *y;
    size_t n;
    double div, auc, var, lo, hi;
} ref_case;

#define CASE(lower, UPPER)                                                                      \
    { #lower, ref_##lower##_k, ref_##lower##_y, sizeof ref_##lower##_k / sizeof(int),           \
      REF_##UPPER##_DIV, REF_##UPPER##_AUC, REF_##UPPER##_VAR, REF_##UPPER##_LO,                \
      REF_##UPPER##_HI }

static const ref_case cases[] = {
    CASE(hanley_mcneil, HANLEY_MCNEIL), CASE(asah_s100b, ASAH_S100B),
    CASE(asah_ndka, ASAH_NDKA),         CASE(asah_wfns, ASAH_WFNS),
    CASE(random_ties, RANDOM_TIES),
};

static void check_close(const char *what, const char *name, double got, double want)
{
    if (!(fabs(got - want) <= TOL)) {
        print_error("%s %s: agent %.17g, pROC %.17g\n", name, what, got, want);
        fail();
    }
}

static void run_case(const ref_case *c, int reversed)
{
    double *s = malloc(c->n * sizeof *s);
    unsigned char *y = malloc(c->n);
    assert_non_null(s);
    assert_non_null(y);
    for (size_t i = 0; i < c->n; i++) {
        size_t j = reversed ? c->n - 1 - i : i;
        s[i] = (double)c->k[j] / c->div;
        y[i] = c->y[j];
    }
    double auc, var;
    assert_int_equal(metrics_auc_delong(s, y, c->n, &auc, &var), 0);
    check_close("AUC", c->name, auc, c->auc);
    check_close("DeLong variance", c->name, var, c->var);
    metrics_ci ci = metrics_auc_ci(auc, var);
    check_close("AUC", c->name, ci.est, c->auc);
    check_close("CI lower", c->name, ci.lo, c->lo);
    check_close("CI upper", c->name, ci.hi, c->hi);
    free(s);
    free(y);
}

static void test_against_proc(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        run_case(&cases[i], 0);
        run_case(&cases[i], 1);
    }
}

/* Paired DeLong (metrics_auc_paired) against pROC's roc.test(r1, r2,
 * method = "delong", paired = TRUE): the AUCs, the difference's SE
 * (pROC reports Z = (auc1 - auc2) / se) and the two-sided p. */
static void run_paired(const char *name, const int *ka, double diva, const int *kb, double divb,
                       const unsigned char *y, size_t n, double auc1, double auc2, double z,
                       double p)
{
    double *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++) {
        a[i] = (double)ka[i] / diva;
        b[i] = (double)kb[i] / divb;
    }
    metrics_auc_diff d;
    assert_int_equal(metrics_auc_paired(a, b, y, n, &d), 0);
    check_close("paired AUC a", name, d.auc_a, auc1);
    check_close("paired AUC b", name, d.auc_b, auc2);
    check_close("paired difference", name, d.diff, auc2 - auc1);
    check_close("paired SE", name, d.se, (auc1 - auc2) / z);
    check_close("paired p", name, d.p, p);
    check_close("paired CI lower", name, d.lo, d.diff - METRICS_Z95 * d.se);
    check_close("paired CI upper", name, d.hi, d.diff + METRICS_Z95 * d.se);
    free(a);
    free(b);
}

static void test_paired_against_roc_test(void **state)
{
    (void)state;
    size_t n = sizeof ref_asah_s100b_k / sizeof(int);
    run_paired("s100b vs ndka", ref_asah_s100b_k, REF_ASAH_S100B_DIV, ref_asah_ndka_k,
               REF_ASAH_NDKA_DIV, ref_asah_s100b_y, n, REF_PAIRED1_AUC1, REF_PAIRED1_AUC2,
               REF_PAIRED1_Z, REF_PAIRED1_P);
    run_paired("wfns vs s100b", ref_asah_wfns_k, REF_ASAH_WFNS_DIV, ref_asah_s100b_k,
               REF_ASAH_S100B_DIV, ref_asah_s100b_y, n, REF_PAIRED2_AUC1, REF_PAIRED2_AUC2,
               REF_PAIRED2_Z, REF_PAIRED2_P);
}

/* The fixture really is the published data: Hanley & McNeil's 109
 * patients give their AUC 0.8932, and pROC's aSAH s100b gives 0.7314 (the
 * value in pROC's documentation). Guards against a mangled fixture. */
static void test_fixture_is_the_published_data(void **state)
{
    (void)state;
    assert_int_equal(sizeof ref_hanley_mcneil_k / sizeof(int), 109);
    assert_int_equal(sizeof ref_asah_s100b_k / sizeof(int), 113);
    assert_int_equal(sizeof ref_random_ties_k / sizeof(int), 3000);
    assert_true(fabs(REF_HANLEY_MCNEIL_AUC - 0.8932) < 5e-5);
    assert_true(fabs(REF_ASAH_S100B_AUC - 0.7314) < 5e-5);
    size_t events = 0;
    for (size_t i = 0; i < 113; i++)
        events += ref_asah_s100b_y[i];
    assert_int_equal(events, 41);   /* 41 Poor outcomes, 72 Good */
}

/* Calibration slope and intercept (logit P(y) = a + b logit(p), scores
 * clamped to [1e-9, 1 - 1e-9] as the agent does) against R 4.2.2:
 *     x <- qlogis(pmin(pmax(k / div, 1e-9), 1 - 1e-9))
 *     coef(glm(y ~ x, family = binomial,
 *              control = glm.control(epsilon = 1e-15, maxit = 200)))
 * on the fixture's data. (R's glm(y ~ offset(x)) diverges on the cases with
 * a score of exactly 1 and no event, so calibration-in-the-large is checked
 * against the root of its score equation found by bisection here, and
 * against R where R converged.) Hanley & McNeil once made our Newton fit
 * overshoot and report "not converged"; step halving fixed it. */
typedef struct cal_case {
    const char *name;
    const int *k;
    const unsigned char *y;
    size_t n;
    double div, intercept, slope, citl;   /* citl NAN: R did not converge */
} cal_case;

static const cal_case cal_cases[] = {
    { "hanley_mcneil", ref_hanley_mcneil_k, ref_hanley_mcneil_y,
      sizeof ref_hanley_mcneil_k / sizeof(int), REF_HANLEY_MCNEIL_DIV,
      -1.1386287666346553, 0.20678217095009366, NAN },
    { "asah_s100b", ref_asah_s100b_k, ref_asah_s100b_y, sizeof ref_asah_s100b_k / sizeof(int),
      REF_ASAH_S100B_DIV, 0.57789855277531033, 0.82526377573297993, 0.82153028735583955 },
    { "asah_wfns", ref_asah_wfns_k, ref_asah_wfns_y, sizeof ref_asah_wfns_k / sizeof(int),
      REF_ASAH_WFNS_DIV, -1.0598366741734015, 0.13295852836630329, NAN },
    { "random_ties", ref_random_ties_k, ref_random_ties_y,
      sizeof ref_random_ties_k / sizeof(int), REF_RANDOM_TIES_DIV,
      -0.64659982144802663, 0.35512565208933644, -0.45954502763656385 },
};

static double logit_clamped(double p)
{
    p = p < 1e-9 ? 1e-9 : p > 1 - 1e-9 ? 1 - 1e-9 : p;
    return log(p / (1 - p));
}

/* The a solving sum(y - expit(a + x)) = 0: decreasing in a, so bisect. */
static double citl_by_bisection(const double *x, const unsigned char *y, size_t n)
{
    double lo = -50, hi = 50;
    for (int it = 0; it < 200; it++) {
        double mid = (lo + hi) / 2, g = 0;
        for (size_t i = 0; i < n; i++)
            g += (double)y[i] - 1 / (1 + exp(-(mid + x[i])));
        if (g > 0)
            lo = mid;
        else
            hi = mid;
    }
    return (lo + hi) / 2;
}

static void test_calibration_against_glm(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof cal_cases / sizeof cal_cases[0]; c++) {
        const cal_case *cc = &cal_cases[c];
        double *score = malloc(cc->n * sizeof *score), *x = malloc(cc->n * sizeof *x);
        assert_non_null(score);
        assert_non_null(x);
        for (size_t i = 0; i < cc->n; i++) {
            score[i] = (double)cc->k[i] / cc->div;
            if (score[i] > 1)
                score[i] = 1;
            x[i] = logit_clamped(score[i]);
        }
        metrics_calibration m;
        assert_int_equal(metrics_calibration_fit(score, cc->y, cc->n, &m), 0);
        if (!m.converged) {
            print_error("%s: calibration fit did not converge\n", cc->name);
            fail();
        }
        if (!(fabs(m.intercept - cc->intercept) <= 1e-7 && fabs(m.slope - cc->slope) <= 1e-7)) {
            print_error("%s: agent a %.17g b %.17g, R a %.17g b %.17g\n", cc->name,
                        m.intercept, m.slope, cc->intercept, cc->slope);
            fail();
        }
        double citl = citl_by_bisection(x, cc->y, cc->n);
        if (!(fabs(m.citl - citl) <= 1e-9) || (!isnan(cc->citl) && !(fabs(m.citl - cc->citl)
                                                                        <= 1e-7))) {
            print_error("%s: agent citl %.17g, bisection %.17g, R %.17g\n", cc->name, m.citl,
                        citl, cc->citl);
            fail();
        }
        free(score);
        free(x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_proc),
        cmocka_unit_test(test_paired_against_roc_test),
        cmocka_unit_test(test_fixture_is_the_published_data),
        cmocka_unit_test(test_calibration_against_glm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
