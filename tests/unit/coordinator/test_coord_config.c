/* tests/unit/coordinator/test_coord_config.c — coordinator config and registry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../lib/conf_cases.h"
#include "coord_config.h"

static int load(const char *path, char *err, size_t errlen)
{
    coord_config c;
    int rc = coord_config_load(path, &c, err, errlen);
    coord_config_free(&c);
    return rc;
}

static void bad_configs_are_rejected(void **state)
{
    (void)state;
    assert_true(run_conf_cases("tests/data/coord-conf", load) >= 9);
}

static void registry_lookups_and_pins(void **state)
{
    (void)state;
    coord_config c;
    char err[1024];
    assert_int_equal(coord_config_load("tests/data/coord-conf/good.conf", &c, err, sizeof err), 0);
    assert_int_equal(c.n_sites, 2);
    assert_int_equal(c.n_analysts, 1);
    assert_non_null(coord_config_site(&c, "site-a"));
    assert_string_equal(coord_config_site(&c, "site-a")->fingerprint, "");
    /* pins are normalised to lower case */
    assert_string_equal(coord_config_site(&c, "site-b")->fingerprint,
                        "3f9a000000000000000000000000000000000000000000000000000000000001");
    assert_non_null(coord_config_analyst(&c, "alice"));
    assert_null(coord_config_analyst(&c, "site-a"));   /* roles do not mix */
    assert_null(coord_config_site(&c, "alice"));
    assert_int_equal(c.default_timeout_ms, 20000);
    assert_int_equal(c.max_timeout_ms, 600000);
    coord_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_configs_are_rejected),
        cmocka_unit_test(registry_lookups_and_pins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
