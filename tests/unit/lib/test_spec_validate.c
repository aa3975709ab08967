/* tests/unit/lib/test_spec_validate.c — the issue 5 `validate` spec in lib/spec.c.
 *
 * A full spec parses and survives the canonical round trip (and bins = 10
 * canonicalises away); every bad field is refused with a message naming it:
 * thresholds outside [0, 1] or duplicated, too many, bins out of range, by
 * names that are not identifiers (an injection attempt), outcome without
 * dataset / criterion / window, a criterion window inside the outcome,
 * validate on another kind, a cohort on validate. A protobuf spec with a
 * NaN threshold is refused by spec_validate.
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

#include "sdefed/spec.h"

#define HEAD "{\"kind\":\"validate\",\"project\":\"demo\",\"dataset\":\"preds\","

static void refuse(const char *json, const char *want)
{
    Sdefed__QuerySpec *s = NULL;
    char err[512] = "";
    int rc = spec_parse_json(json, strlen(json), &s, err, sizeof err);
    if (rc != SDF_ESPEC || !strstr(err, want))
        fprintf(stderr, "input %.200s\n  rc=%d err=\"%s\" want \"%s\"\n", json, rc, err, want);
    assert_int_equal(rc, SDF_ESPEC);
    assert_null(s);
    assert_non_null(strstr(err, want));
}

static Sdefed__QuerySpec *accept(const char *json)
{
    Sdefed__QuerySpec *s = NULL;
    char err[512] = "";
    int rc = spec_parse_json(json, strlen(json), &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "input %.200s\n  err=\"%s\"\n", json, err);
    assert_int_equal(rc, 0);
    json_t *j = spec_to_json(s);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_COMPACT);
    Sdefed__QuerySpec *s2 = NULL;
    assert_int_equal(spec_parse_json(text, strlen(text), &s2, err, sizeof err), 0);
    json_t *j2 = spec_to_json(s2);
    char *text2 = json_dumps(j2, JSON_COMPACT);
    assert_string_equal(text, text2);
    free(text);
    free(text2);
    json_decref(j);
    json_decref(j2);
    sdefed__query_spec__free_unpacked(s2, NULL);
    return s;
}

static void test_full_spec(void **state)
{
    (void)state;
    Sdefed__QuerySpec *s = accept(
        HEAD "\"validate\":{\"thresholds\":[0.1,0.5],\"bins\":5,\"by\":[\"sex\",\"region\"],"
             "\"model_version\":\"v2\",\"outcome\":{\"dataset\":\"omop\",\"criterion\":"
             "{\"domain\":\"condition\",\"concepts\":[201826],\"descendants\":true},"
             "\"window_days\":[0,365]}}}");
    assert_int_equal(s->kind, SDEFED__QUERY_KIND__KIND_VALIDATE);
    assert_non_null(s->validate);
    assert_int_equal(s->validate->n_thresholds, 2);
    assert_true(s->validate->thresholds[1] == 0.5);
    assert_int_equal(s->validate->bins, 5);
    assert_int_equal(s->validate->n_by, 2);
    assert_string_equal(s->validate->by[1], "region");
    assert_string_equal(s->validate->model_version, "v2");
    assert_string_equal(s->validate->outcome->dataset, "omop");
    assert_int_equal(s->validate->outcome->window->end_days, 365);
    assert_int_equal(s->validate->outcome->criterion->concepts[0], 201826);
    sdefed__query_spec__free_unpacked(s, NULL);

    s = accept(HEAD "\"validate\":{\"bins\":10}}");
    assert_int_equal(s->validate->bins, 0);   /* the default */
    assert_int_equal(s->validate->n_thresholds, 0);
    sdefed__query_spec__free_unpacked(s, NULL);
}

static void test_bad_fields(void **state)
{
    (void)state;
    refuse(HEAD "\"validate\":{\"thresholds\":[1.5]}}", "validate.thresholds[0]");
    refuse(HEAD "\"validate\":{\"thresholds\":[-0.1]}}", "validate.thresholds[0]");
    refuse(HEAD "\"validate\":{\"thresholds\":[0.2,0.2]}}", "duplicate threshold");
    refuse(HEAD "\"validate\":{\"thresholds\":[\"0.2\"]}}", "must be a number");
    refuse(HEAD "\"validate\":{\"thresholds\":[0,0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09,"
                "0.1,0.11,0.12,0.13,0.14,0.15,0.16,0.17,0.18,0.19,0.2]}}",
           "validate.thresholds");
    refuse(HEAD "\"validate\":{\"bins\":0}}", "validate.bins");
    refuse(HEAD "\"validate\":{\"bins\":51}}", "validate.bins");
    refuse(HEAD "\"validate\":{\"by\":[\"sex; DROP TABLE person\"]}}", "validate.by[0]");
    refuse(HEAD "\"validate\":{\"by\":[\"sex\",\"sex\"]}}", "duplicate column");
    refuse(HEAD "\"validate\":{\"by\":[\"a\",\"b\",\"c\",\"d\"]}}", "validate.by");
    refuse(HEAD "\"validate\":{\"model_version\":\"v'1\"}}", "validate.model_version");
    refuse(HEAD "\"validate\":{\"colour\":1}}", "colour");
    refuse(HEAD "\"validate\":{\"outcome\":{\"criterion\":{\"domain\":\"condition\","
                "\"concepts\":[1]},\"window_days\":[0,30]}}}",
           "validate.outcome.dataset");
    refuse(HEAD "\"validate\":{\"outcome\":{\"dataset\":\"omop\",\"window_days\":[0,30]}}}",
           "validate.outcome.criterion");
    refuse(HEAD "\"validate\":{\"outcome\":{\"dataset\":\"omop\",\"criterion\":{\"domain\":"
                "\"condition\",\"concepts\":[1]}}}}",
           "validate.outcome.window_days");
    refuse(HEAD "\"validate\":{\"outcome\":{\"dataset\":\"omop\",\"criterion\":{\"domain\":"
                "\"condition\",\"concepts\":[1]},\"window_days\":[30,0]}}}",
           "validate.outcome.window_days");
    refuse(HEAD "\"validate\":{\"outcome\":{\"dataset\":\"omop\",\"criterion\":{\"domain\":"
                "\"condition\",\"concepts\":[1],\"window\":{\"start_days\":0,\"end_days\":1}},"
                "\"window_days\":[0,30]}}}",
           "validate.outcome.criterion");
    refuse(HEAD "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1]}]},"
                "\"validate\":{}}",
           "cohort");
    refuse("{\"kind\":\"validate\",\"project\":\"demo\",\"dataset\":\"preds\"}",
           "required for kind validate");
    refuse("{\"kind\":\"validate\",\"project\":\"demo\",\"validate\":{}}", "dataset");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\",\"concepts\":[1]}]},\"validate\":{}}",
           "only for kind validate");
}

static void test_protobuf_nan(void **state)
{
    (void)state;
    Sdefed__QuerySpec s = SDEFED__QUERY_SPEC__INIT;
    Sdefed__ValidateSpec v = SDEFED__VALIDATE_SPEC__INIT;
    double th[1] = { NAN };
    s.kind = SDEFED__QUERY_KIND__KIND_VALIDATE;
    s.project = "demo";
    s.dataset = "preds";
    s.validate = &v;
    v.thresholds = th;
    v.n_thresholds = 1;
    char err[256];
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "thresholds[0]"));
    th[0] = 0.3;
    assert_int_equal(spec_validate(&s, err, sizeof err), 0);
    v.bins = 99;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_spec),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_protobuf_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
