/* tests/unit/lib/test_surveil_stats.c — incomplete gamma, exact Poisson limits, rates (issue 6).
 *
 * Reference values: chi-square quantiles from standard tables (R qchisq),
 * exact Poisson 95% limits from Garwood (1936) / R poisson.test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <cmocka.h>

#include "sdefed/surveil_stats.h"

#define NEAR(a, b, tol) assert_true(fabs((a) - (b)) <= (tol))

static void test_gamma_p_closed_forms(void **state)
{
    (void)state;
    /* a = 1: exponential */
    for (double x = 0.0; x < 20.0; x += 0.7)
        NEAR(surv_gamma_p(1.0, x), 1.0 - exp(-x), 1e-12);
    /* a = 0.5: P(0.5, x) = erf(sqrt(x)) */
    for (double x = 0.01; x < 30.0; x *= 1.9)
        NEAR(surv_gamma_p(0.5, x), erf(sqrt(x)), 1e-11);
    assert_true(isnan(surv_gamma_p(0.0, 1.0)));
    assert_true(isnan(surv_gamma_p(1.0, -1.0)));
    NEAR(surv_gamma_p(3.0, 0.0), 0.0, 0.0);
}

static void test_chi2_quantiles(void **state)
{
    (void)state;
    NEAR(surv_chi2_inv(0.95, 1.0), 3.841459, 1e-5);
    NEAR(surv_chi2_inv(0.975, 10.0), 20.483177, 1e-5);
    NEAR(surv_chi2_inv(0.025, 2.0), 0.050636, 1e-5);
    NEAR(surv_chi2_inv(0.5, 200.0), 199.333730, 1e-4);
    NEAR(surv_chi2_inv(0.999, 3.0), 16.266236, 1e-5);
    assert_true(isnan(surv_gamma_inv(0.0, 2.0)));
    assert_true(isnan(surv_gamma_inv(1.0, 2.0)));
    assert_true(isnan(surv_chi2_inv(0.5, 0.0)));
}

static void test_poisson_ci_known(void **state)
{
    (void)state;
    static const struct { int64_t k; double lo, hi; } t[] = {
        { 0, 0.0, 3.688879 },     { 1, 0.025318, 5.571643 },  { 2, 0.242209, 7.224688 },
        { 5, 1.623486, 11.668332 }, { 10, 4.795389, 18.390356 },
        { 100, 81.363991, 121.626794 },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        double lo = -1, hi = -1;
        assert_int_equal(surv_poisson_ci(t[i].k, 0.95, &lo, &hi), 0);
        NEAR(lo, t[i].lo, 1e-5);
        NEAR(hi, t[i].hi, 1e-5);
    }
    double lo, hi;
    assert_int_equal(surv_poisson_ci(-1, 0.95, &lo, &hi), SDF_EINVAL);
    assert_int_equal(surv_poisson_ci(3, 1.0, &lo, &hi), SDF_EINVAL);
    /* 90%: narrower */
    double lo90, hi90;
    assert_int_equal(surv_poisson_ci(10, 0.90, &lo90, &hi90), 0);
    assert_true(lo90 > 4.795389 && hi90 < 18.390356);
}

static void test_rate_and_ratio(void **state)
{
    (void)state;
    double r, lo, hi;
    /* 10 events in 10 person-years: 1000 per 1,000 person-years */
    assert_int_equal(surv_rate(10, 10 * SURV_DAYS_PER_YEAR, &r, &lo, &hi), 0);
    NEAR(r, 1000.0, 1e-9);
    NEAR(lo, 479.5389, 1e-3);
    NEAR(hi, 1839.0356, 1e-3);
    assert_int_equal(surv_rate(0, 365.25, &r, &lo, &hi), 0);
    NEAR(r, 0.0, 0.0);
    NEAR(hi, 3688.879, 1e-2);
    assert_int_equal(surv_rate(3, 0.0, &r, &lo, &hi), SDF_EINVAL);

    assert_int_equal(surv_rate_ratio(20, 1000.0, 10, 1000.0, &r, &lo, &hi), 0);
    NEAR(r, 2.0, 1e-12);
    NEAR(lo, 0.93618, 1e-4);
    NEAR(hi, 4.27267, 1e-4);
    assert_int_equal(surv_rate_ratio(0, 1000.0, 10, 1000.0, &r, &lo, &hi), SDF_EINVAL);
    assert_int_equal(surv_rate_ratio(5, 1000.0, 0, 1000.0, &r, &lo, &hi), SDF_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gamma_p_closed_forms),
        cmocka_unit_test(test_chi2_quantiles),
        cmocka_unit_test(test_poisson_ci_known),
        cmocka_unit_test(test_rate_and_ratio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
