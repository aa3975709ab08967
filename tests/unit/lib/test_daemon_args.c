/* tests/unit/lib/test_daemon_args.c — the daemons' shared command line. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "sdefed/daemon_args.h"

static int usage_calls;
static FILE *usage_stream;

static void fake_usage(FILE *f)
{
    usage_calls++;
    usage_stream = f;
}

static int parse(daemon_args *a, int argc, ...)
{
    static char buf[8][64];
    static char *argv[9];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        snprintf(buf[i], sizeof buf[i], "%s", va_arg(ap, const char *));
        argv[i] = buf[i];
    }
    va_end(ap);
    argv[argc] = NULL;
    usage_calls = 0;
    usage_stream = NULL;
    return daemon_args_parse(argc, argv, fake_usage, a);
}

static void test_config_only(void **state)
{
    (void)state;
    daemon_args a;
    assert_int_equal(parse(&a, 3, "d", "--config", "/etc/x.conf"), -1);
    assert_string_equal(a.config_path, "/etc/x.conf");
    assert_false(a.check_only);
    assert_int_equal(a.sub_argc, 0);
    assert_null(a.sub_argv);
    assert_int_equal(usage_calls, 0);
}

static void test_check_config(void **state)
{
    (void)state;
    daemon_args a;
    assert_int_equal(parse(&a, 3, "d", "--check-config", "-c/x.conf"), -1);
    assert_true(a.check_only);
    assert_string_equal(a.config_path, "/x.conf");
}

static void test_subcommand_keeps_its_own_options(void **state)
{
    (void)state;
    daemon_args a;
    /* "+": options after the subcommand belong to it */
    assert_int_equal(parse(&a, 5, "d", "-c", "x.conf", "status", "--json"), -1);
    assert_int_equal(a.sub_argc, 2);
    assert_string_equal(a.sub_argv[0], "status");
    assert_string_equal(a.sub_argv[1], "--json");
}

static void test_usage_errors(void **state)
{
    (void)state;
    daemon_args a;
    assert_int_equal(parse(&a, 1, "d"), 2);                       /* no --config */
    assert_int_equal(usage_calls, 1);
    assert_ptr_equal(usage_stream, stderr);
    assert_int_equal(parse(&a, 4, "d", "-c", "x", "--bogus"), 2);  /* unknown option */
    assert_int_equal(parse(&a, 5, "d", "-c", "x", "--check-config", "status"), 2);
    assert_int_equal(parse(&a, 2, "d", "--config"), 2);           /* missing value */
}

static void test_help(void **state)
{
    (void)state;
    daemon_args a;
    assert_int_equal(parse(&a, 2, "d", "--help"), 0);
    assert_int_equal(usage_calls, 1);
    assert_ptr_equal(usage_stream, stdout);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_only),
        cmocka_unit_test(test_check_config),
        cmocka_unit_test(test_subcommand_keeps_its_own_options),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
