/* tests/unit/cli/test_monitor_cmd.c — `sdefed monitor` argument handling (issue 6).
 *
 * Durations (--every) in every unit and refusals of malformed ones, and the
 * detection of the monitor/alerts commands behind global options.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>

#include "cli/monitor_cmd.h"

static void test_durations(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t ms; } ok[] = {
        { "500ms", 500 }, { "30", 30000 }, { "30s", 30000 }, { "1.5s", 1500 },
        { "5m", 300000 }, { "2h", 7200000 }, { "1d", 86400000 },
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t ms = 0;
        assert_int_equal(monitor_parse_duration(ok[i].s, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    static const char *const bad[] = { "", "soon", "-5s", "0", "5 s", "5w", "1e300d", "0.1ms",
                                       "nan", "inf" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 7;
        assert_int_equal(monitor_parse_duration(bad[i], &ms), SDF_EINVAL);
        assert_int_equal(ms, 7);
    }
}

static void test_command_detection(void **state)
{
    (void)state;
    char *a1[] = { "sdefed", "--config", "monitor", "query", "x.json", NULL };
    assert_false(monitor_is_command(5, a1));   /* "monitor" is the config file here */
    char *a2[] = { "sdefed", "--config", "c.conf", "monitor", "list", NULL };
    assert_true(monitor_is_command(5, a2));
    char *a3[] = { "sdefed", "-f", "json", "alerts", NULL };
    assert_true(monitor_is_command(4, a3));
    char *a4[] = { "sdefed", "query", "monitor", NULL };
    assert_false(monitor_is_command(3, a4));
    char *a5[] = { "sdefed", NULL };
    assert_false(monitor_is_command(1, a5));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_command_detection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
