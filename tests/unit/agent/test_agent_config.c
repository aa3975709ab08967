/* tests/unit/agent/test_agent_config.c — agent config: good and bad files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <unistd.h>

#include "../lib/conf_cases.h"
#include "agent_config.h"

static agent_config cfg;

static int load(const char *path, char *err, size_t errlen)
{
    return agent_config_load(path, &cfg, err, errlen);
}

static void bad_configs_are_rejected_with_file_line_reason(void **state)
{
    (void)state;
    int n = run_conf_cases("tests/data/agent-conf", load);
    assert_true(n >= 15);
}

static void good_config_values_and_relative_paths(void **state)
{
    (void)state;
    char err[1024];
    assert_int_equal(agent_config_load("tests/data/agent-conf/good.conf", &cfg, err, sizeof err),
                     0);
    assert_string_equal(cfg.site_id, "site-a");
    assert_string_equal(cfg.coordinator_host, "127.0.0.1");
    assert_int_equal(cfg.coordinator_port, 7443);
    assert_string_equal(cfg.cert, "tests/data/agent-conf/a.crt");
    assert_string_equal(cfg.datasets[0].path, "tests/data/agent-conf/omop.sqlite");
    assert_int_equal(cfg.n_datasets, 1);
    assert_int_equal(cfg.policy.min_cell, 20);
    assert_int_equal(cfg.policy.rounding, 10);
    assert_true(cfg.policy.zero_is_disclosive);
    assert_int_equal(cfg.heartbeat_ms, 10000);   /* default, from seconds */
    assert_ptr_equal(agent_config_dataset(&cfg, "omop"), &cfg.datasets[0]);
    assert_null(agent_config_dataset(&cfg, "nope"));
    /* split counts: on by default (a connection per CPU, at most 4) for
     * tables of a million rows or more */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(cfg.datasets[0].parallel, cpus > 4 ? 4 : cpus < 1 ? 1 : cpus);
    assert_int_equal(cfg.datasets[0].parallel_min_rows, 1000000);
}

static void missing_file_is_an_error(void **state)
{
    (void)state;
    char err[1024];
    assert_int_equal(agent_config_load("tests/data/agent-conf/none.conf", &cfg, err, sizeof err),
                     SDF_ECONFIG);
    assert_non_null(strstr(err, "No such file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_configs_are_rejected_with_file_line_reason),
        cmocka_unit_test(good_config_values_and_relative_paths),
        cmocka_unit_test(missing_file_is_an_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
