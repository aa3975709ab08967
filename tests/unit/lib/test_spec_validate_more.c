/* tests/unit/lib/test_spec_validate_more.c — issue 5 items 3/4 of the validate spec.
 *
 * compare_versions, bin_mode, histogram_bins and subgroups_from parse,
 * survive the canonical round trip (defaults "width" and 100 canonicalise
 * away), and every bad value is refused with a message naming the field:
 * a list of 1 or 3 versions, equal versions, a bad name, together with
 * model_version, an unknown bin_mode, histogram_bins outside 10..1000,
 * subgroups_from without sex/age_band in by. age_band_width is accepted
 * for a validate spec with by "age_band" from OMOP and refused without.
 * spec_validate refuses the same things in a protobuf spec.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

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
    if (rc != 0)
        fprintf(stderr, "input %.200s\n  err=\"%s\"\n", json, err);
    assert_int_equal(rc, 0);
    return s;
}

static char *canonical(const Sdefed__QuerySpec *s)
{
    json_t *j = spec_to_json(s);
    assert_non_null(j);
    char *t = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return t;
}

static void test_parse_and_round_trip(void **state)
{
    (void)state;
    Sdefed__QuerySpec *s = accept(
        HEAD "\"age_band_width\":20,\"validate\":{\"compare_versions\":[\"v1\",\"v2\"],"
             "\"bin_mode\":\"quantile\",\"bins\":5,\"histogram_bins\":200,"
             "\"by\":[\"sex\",\"age_band\",\"region\"],\"subgroups_from\":\"omop\"}}");
    const Sdefed__ValidateSpec *v = s->validate;
    assert_int_equal(v->n_compare_versions, 2);
    assert_string_equal(v->compare_versions[0], "v1");
    assert_string_equal(v->compare_versions[1], "v2");
    assert_string_equal(v->bin_mode, "quantile");
    assert_int_equal(v->histogram_bins, 200);
    assert_string_equal(v->subgroups_from, "omop");
    assert_int_equal(s->age_band_width, 20);
    char *t1 = canonical(s);
    assert_non_null(strstr(t1, "\"compare_versions\":[\"v1\",\"v2\"]"));
    assert_non_null(strstr(t1, "\"histogram_bins\":200"));
    Sdefed__QuerySpec *s2 = accept(t1);
    char *t2 = canonical(s2);
    assert_string_equal(t1, t2);
    free(t1);
    free(t2);
    sdefed__query_spec__free_unpacked(s, NULL);
    sdefed__query_spec__free_unpacked(s2, NULL);

    /* the defaults canonicalise away: the same query as without them */
    s = accept(HEAD "\"validate\":{\"bin_mode\":\"width\",\"histogram_bins\":100}}");
    s2 = accept(HEAD "\"validate\":{}}");
    t1 = canonical(s);
    t2 = canonical(s2);
    assert_string_equal(t1, t2);
    assert_int_equal(s->validate->histogram_bins, 0);
    free(t1);
    free(t2);
    sdefed__query_spec__free_unpacked(s, NULL);
    sdefed__query_spec__free_unpacked(s2, NULL);
}

static void test_refusals(void **state)
{
    (void)state;
    refuse(HEAD "\"validate\":{\"compare_versions\":[\"v1\"]}}", "validate.compare_versions");
    refuse(HEAD "\"validate\":{\"compare_versions\":[\"a\",\"b\",\"c\"]}}",
           "validate.compare_versions");
    refuse(HEAD "\"validate\":{\"compare_versions\":\"v1\"}}", "validate.compare_versions");
    refuse(HEAD "\"validate\":{\"compare_versions\":[\"v1\",\"v1\"]}}", "must differ");
    refuse(HEAD "\"validate\":{\"compare_versions\":[\"v1\",3]}}", "validate.compare_versions[1]");
    refuse(HEAD "\"validate\":{\"compare_versions\":[\"v1\",\"\"]}}",
           "validate.compare_versions[1]");
    refuse(HEAD "\"validate\":{\"compare_versions\":[\"v1\",\"x'; DROP\"]}}",
           "validate.compare_versions[1]");
    refuse(HEAD "\"validate\":{\"compare_versions\":[\"v1\",\"v2\"],\"model_version\":\"v1\"}}",
           "model_version");
    refuse(HEAD "\"validate\":{\"bin_mode\":\"deciles\"}}", "validate.bin_mode");
    refuse(HEAD "\"validate\":{\"bin_mode\":3}}", "validate.bin_mode");
    refuse(HEAD "\"validate\":{\"histogram_bins\":9}}", "validate.histogram_bins");
    refuse(HEAD "\"validate\":{\"histogram_bins\":1001}}", "validate.histogram_bins");
    refuse(HEAD "\"validate\":{\"subgroups_from\":\"omop\",\"by\":[\"region\"]}}",
           "validate.subgroups_from");
    refuse(HEAD "\"validate\":{\"subgroups_from\":\"\",\"by\":[\"sex\"]}}",
           "validate.subgroups_from");
    /* age_band_width needs an age band: from OMOP here */
    refuse(HEAD "\"age_band_width\":20,\"validate\":{\"by\":[\"age_band\"]}}", "age_band_width");
    Sdefed__QuerySpec *s = accept(HEAD "\"age_band_width\":5,\"validate\":{\"by\":[\"age_band\"],"
                                       "\"subgroups_from\":\"omop\"}}");
    sdefed__query_spec__free_unpacked(s, NULL);
}

static void test_spec_validate_protobuf(void **state)
{
    (void)state;
    Sdefed__QuerySpec *s = accept(HEAD "\"validate\":{\"compare_versions\":[\"v1\",\"v2\"]}}");
    char err[256];
    assert_int_equal(spec_validate(s, err, sizeof err), 0);
    s->validate->histogram_bins = 5000;   /* as a hostile coordinator might send */
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "histogram_bins"));
    s->validate->histogram_bins = 0;
    s->validate->model_version = (char *)"v1";
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "compare_versions"));
    s->validate->model_version = NULL;
    s->validate->bin_mode = (char *)"QUANTILE";
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "bin_mode"));
    s->validate->bin_mode = NULL;
    s->validate->n_compare_versions = 1;   /* one version: refused (the list is not freed twice) */
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    s->validate->n_compare_versions = 2;
    sdefed__query_spec__free_unpacked(s, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_round_trip),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_spec_validate_protobuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
