/* tests/unit/lib/test_spec.c — JSON spec parsing, validation and canonical form.
 *
 * Valid specs must become exactly the right QuerySpec and survive
 * spec_to_json -> spec_parse_json unchanged; every invalid spec must be
 * refused with a one-line message naming the field and the problem; hostile
 * input (oversize, deep nesting, control characters, bad UTF-8) must be
 * refused without crashing or echoing more than a short escaped excerpt.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sdefed/spec.h"

#define ISSUE_EXAMPLE \
    "{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":" \
    "[{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":true}]},\"by\":[\"sex\"]}"

/* A valid count spec with one criterion; %s is spliced in before the closing brace. */
#define COUNT_PREFIX \
    "{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\"," \
    "\"cohort\":{\"all\":[{\"domain\":\"condition\",\"concepts\":[201826]}]}"

static Sdefed__QuerySpec *parse_ok(const char *json)
{
    Sdefed__QuerySpec *s = NULL;
    char err[256] = "";
    int rc = spec_parse_json(json, strlen(json), &s, err, sizeof err);
    if (rc != 0)
        print_error("unexpected refusal of %s: %s\n", json, err);
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

/* Parse must refuse json with SDF_ESPEC and a message containing want. */
static void refuse_len(const char *json, size_t len, const char *want)
{
    Sdefed__QuerySpec *s = (Sdefed__QuerySpec *)0x1;
    char err[512] = "";
    int rc = spec_parse_json(json, len, &s, err, sizeof err);
    if (rc != SDF_ESPEC || !strstr(err, want))
        print_error("input %.200s\n  rc=%d err=\"%s\" want \"%s\"\n", json, rc, err, want);
    assert_int_equal(rc, SDF_ESPEC);
    assert_null(s);
    assert_non_null(strstr(err, want));
    /* one line, no control characters, bounded */
    for (const char *c = err; *c; c++)
        assert_true((unsigned char)*c >= 0x20 && (unsigned char)*c != 0x7f);
    assert_true(strlen(err) < 300);
}

static void refuse(const char *json, const char *want)
{
    refuse_len(json, strlen(json), want);
}

/* Two specs are equal when their wire forms are. */
static void assert_spec_equal(const Sdefed__QuerySpec *a, const Sdefed__QuerySpec *b)
{
    size_t na = sdefed__query_spec__get_packed_size(a);
    size_t nb = sdefed__query_spec__get_packed_size(b);
    assert_int_equal(na, nb);
    uint8_t *ba = malloc(na + 1), *bb = malloc(nb + 1);
    assert_non_null(ba);
    assert_non_null(bb);
    sdefed__query_spec__pack(a, ba);
    sdefed__query_spec__pack(b, bb);
    assert_memory_equal(ba, bb, na);
    free(ba);
    free(bb);
}

static char *canonical(const Sdefed__QuerySpec *s)
{
    json_t *j = spec_to_json(s);
    assert_non_null(j);
    char *t = json_dumps(j, JSON_COMPACT);
    assert_non_null(t);
    json_decref(j);
    return t;
}

/* ---- valid specs ------------------------------------------------------------ */

static void test_issue_example(void **state)
{
    (void)state;
    Sdefed__QuerySpec *s = parse_ok(ISSUE_EXAMPLE);
    assert_int_equal(s->kind, SDEFED__QUERY_KIND__KIND_COUNT);
    assert_string_equal(s->project, "demo");
    assert_string_equal(s->dataset, "omop");
    assert_non_null(s->cohort);
    assert_int_equal(s->cohort->n_all, 1);
    Sdefed__Criterion *c = s->cohort->all[0];
    assert_int_equal(c->domain, SDEFED__DOMAIN__DOMAIN_DRUG);
    assert_int_equal(c->n_concepts, 1);
    assert_int_equal(c->concepts[0], 1118084);
    assert_true(c->descendants);
    assert_int_equal(s->n_by, 1);
    assert_int_equal(s->by[0], SDEFED__STRATIFIER__STRAT_SEX);
    assert_null(s->policy);
    char err[128];
    assert_int_equal(spec_validate(s, err, sizeof err), 0);
    sdefed__query_spec__free_unpacked(s, NULL);
}

static void test_catalog(void **state)
{
    (void)state;
    Sdefed__QuerySpec *s = parse_ok("{\"kind\":\"catalog\",\"project\":\"proj_1.a-b\"}");
    assert_int_equal(s->kind, SDEFED__QUERY_KIND__KIND_CATALOG);
    assert_string_equal(s->project, "proj_1.a-b");
    assert_string_equal(s->dataset, "");
    assert_null(s->cohort);
    assert_int_equal(s->n_by, 0);
    assert_null(s->policy);
    char *t = canonical(s);
    assert_string_equal(t, "{\"kind\":\"catalog\",\"project\":\"proj_1.a-b\"}");
    free(t);
    sdefed__query_spec__free_unpacked(s, NULL);

    /* a catalog may ask for a stricter policy */
    s = parse_ok("{\"policy\":{\"rounding\":100},\"project\":\"p\",\"kind\":\"catalog\"}");
    assert_non_null(s->policy);
    assert_int_equal(s->policy->rounding, 100);
    assert_int_equal(s->policy->min_cell, 0);
    sdefed__query_spec__free_unpacked(s, NULL);
}

static void test_full_spec(void **state)
{
    (void)state;
    Sdefed__QuerySpec *s = parse_ok(
        "{\"by\":[\"age_band\",\"sex\"],\"policy\":{\"zero_is_disclosive\":true,"
        "\"min_cell\":20,\"rounding\":10},\"kind\":\"count\",\"dataset\":\"omop-54\","
        "\"project\":\"P\",\"cohort\":{\"all\":["
        "{\"domain\":\"condition\",\"concepts\":[201826,4,201826,3,2147483647],"
        "\"descendants\":false},"
        "{\"concepts\":[1],\"domain\":\"visit\",\"descendants\":true},"
        "{\"domain\":\"device\",\"concepts\":[7]},"
        "{\"domain\":\"procedure\",\"concepts\":[7]},"
        "{\"domain\":\"measurement\",\"concepts\":[7]},"
        "{\"domain\":\"observation\",\"concepts\":[7]}]}}");
    assert_int_equal(s->cohort->n_all, 6);
    Sdefed__Criterion *c = s->cohort->all[0];
    assert_int_equal(c->domain, SDEFED__DOMAIN__DOMAIN_CONDITION);
    /* concept lists are sets: sorted, duplicates dropped */
    assert_int_equal(c->n_concepts, 4);
    assert_int_equal(c->concepts[0], 3);
    assert_int_equal(c->concepts[1], 4);
    assert_int_equal(c->concepts[2], 201826);
    assert_int_equal(c->concepts[3], 2147483647);
    assert_false(c->descendants);
    assert_int_equal(s->cohort->all[1]->domain, SDEFED__DOMAIN__DOMAIN_VISIT);
    assert_true(s->cohort->all[1]->descendants);
    assert_int_equal(s->cohort->all[2]->domain, SDEFED__DOMAIN__DOMAIN_DEVICE);
    assert_int_equal(s->cohort->all[3]->domain, SDEFED__DOMAIN__DOMAIN_PROCEDURE);
    assert_int_equal(s->cohort->all[4]->domain, SDEFED__DOMAIN__DOMAIN_MEASUREMENT);
    assert_int_equal(s->cohort->all[5]->domain, SDEFED__DOMAIN__DOMAIN_OBSERVATION);
    assert_int_equal(s->n_by, 2);
    assert_int_equal(s->by[0], SDEFED__STRATIFIER__STRAT_AGE_BAND);
    assert_int_equal(s->by[1], SDEFED__STRATIFIER__STRAT_SEX);
    assert_non_null(s->policy);
    assert_int_equal(s->policy->min_cell, 20);
    assert_int_equal(s->policy->rounding, 10);
    assert_true(s->policy->zero_is_disclosive);

    /* canonical form: fixed field order, defaults omitted */
    char *t = canonical(s);
    assert_string_equal(t,
        "{\"kind\":\"count\",\"project\":\"P\",\"dataset\":\"omop-54\",\"cohort\":{\"all\":["
        "{\"domain\":\"condition\",\"concepts\":[3,4,201826,2147483647]},"
        "{\"domain\":\"visit\",\"concepts\":[1],\"descendants\":true},"
        "{\"domain\":\"device\",\"concepts\":[7]},"
        "{\"domain\":\"procedure\",\"concepts\":[7]},"
        "{\"domain\":\"measurement\",\"concepts\":[7]},"
        "{\"domain\":\"observation\",\"concepts\":[7]}]},"
        "\"by\":[\"age_band\",\"sex\"],"
        "\"policy\":{\"min_cell\":20,\"rounding\":10,\"zero_is_disclosive\":true}}");
    free(t);
    sdefed__query_spec__free_unpacked(s, NULL);
}

static void test_defaults_omitted(void **state)
{
    (void)state;
    /* an empty policy, an empty "by" and descendants:false are all defaults */
    Sdefed__QuerySpec *s = parse_ok(COUNT_PREFIX ",\"by\":[],\"policy\":{\"zero_is_disclosive\":false}}");
    assert_null(s->policy);
    assert_int_equal(s->n_by, 0);
    char *t = canonical(s);
    assert_string_equal(t, "{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\","
                           "\"cohort\":{\"all\":[{\"domain\":\"condition\",\"concepts\":[201826]}]}}");
    free(t);
    sdefed__query_spec__free_unpacked(s, NULL);
}

static void test_round_trip(void **state)
{
    (void)state;
    static const char *const specs[] = {
        ISSUE_EXAMPLE,
        "{\"kind\":\"catalog\",\"project\":\"demo\"}",
        "{\"kind\":\"catalog\",\"project\":\"demo\",\"policy\":{\"min_cell\":1000000}}",
        COUNT_PREFIX "}",
        COUNT_PREFIX ",\"by\":[\"age_band\",\"sex\"],\"policy\":{\"min_cell\":11,\"rounding\":1}}",
        "{\"kind\":\"count\",\"project\":\"x\",\"dataset\":\"y\",\"cohort\":{\"all\":["
        "{\"domain\":\"drug\",\"concepts\":[9,8,7,9],\"descendants\":true},"
        "{\"domain\":\"condition\",\"concepts\":[1]}]},\"policy\":{\"zero_is_disclosive\":true}}",
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        Sdefed__QuerySpec *a = parse_ok(specs[i]);
        char *t1 = canonical(a);
        Sdefed__QuerySpec *b = parse_ok(t1);
        assert_spec_equal(a, b);
        char *t2 = canonical(b);
        assert_string_equal(t1, t2);   /* canonical form is a fixed point */
        free(t1);
        free(t2);
        sdefed__query_spec__free_unpacked(a, NULL);
        sdefed__query_spec__free_unpacked(b, NULL);
    }
}

static void test_canonical_ignores_order(void **state)
{
    (void)state;
    Sdefed__QuerySpec *a = parse_ok(
        "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"d\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[3,1,2]}]},\"policy\":{\"rounding\":5,\"min_cell\":10}}");
    Sdefed__QuerySpec *b = parse_ok(
        "{\"policy\":{\"min_cell\":10,\"rounding\":5},\"cohort\":{\"all\":"
        "[{\"concepts\":[1,2,3,3],\"domain\":\"drug\",\"descendants\":false}]},"
        "\"dataset\":\"d\",\"project\":\"p\",\"kind\":\"count\"}");
    char *ta = canonical(a), *tb = canonical(b);
    assert_string_equal(ta, tb);
    assert_spec_equal(a, b);
    free(ta);
    free(tb);
    sdefed__query_spec__free_unpacked(a, NULL);
    sdefed__query_spec__free_unpacked(b, NULL);
}

static void test_limits_accepted(void **state)
{
    (void)state;
    /* 64-character project name and 3 stratifier slots are within limits */
    char buf[512];
    char name[SPEC_MAX_NAME + 1];
    memset(name, 'a', SPEC_MAX_NAME);
    name[SPEC_MAX_NAME] = '\0';
    snprintf(buf, sizeof buf, "{\"kind\":\"catalog\",\"project\":\"%s\"}", name);
    Sdefed__QuerySpec *s = parse_ok(buf);
    assert_int_equal(strlen(s->project), SPEC_MAX_NAME);
    sdefed__query_spec__free_unpacked(s, NULL);

    /* a valid spec padded with whitespace to exactly the size limit */
    char *big = malloc(SPEC_MAX_JSON);
    assert_non_null(big);
    memset(big, ' ', SPEC_MAX_JSON);
    memcpy(big, ISSUE_EXAMPLE, strlen(ISSUE_EXAMPLE));
    s = NULL;
    char err[256];
    assert_int_equal(spec_parse_json(big, SPEC_MAX_JSON, &s, err, sizeof err), 0);
    sdefed__query_spec__free_unpacked(s, NULL);
    free(big);
}

/* 64 criteria and 10000 concepts are fine; one more of either is refused. */
static char *spec_with(size_t criteria, size_t concepts)
{
    size_t cap = 256 + criteria * 64 + concepts * 12;
    char *b = malloc(cap);
    assert_non_null(b);
    size_t o = (size_t)snprintf(b, cap, "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"d\","
                                        "\"cohort\":{\"all\":[");
    for (size_t i = 0; i < criteria; i++) {
        o += (size_t)snprintf(b + o, cap - o, "%s{\"domain\":\"drug\",\"concepts\":[",
                              i ? "," : "");
        size_t nc = i == 0 ? concepts : 1;
        for (size_t j = 0; j < nc; j++)
            o += (size_t)snprintf(b + o, cap - o, "%s%zu", j ? "," : "", j + 1);
        o += (size_t)snprintf(b + o, cap - o, "]}");
    }
    snprintf(b + o, cap - o, "]}}");
    return b;
}

static void test_count_limits(void **state)
{
    (void)state;
    char *t = spec_with(SPEC_MAX_CRITERIA, SPEC_MAX_CONCEPTS);
    Sdefed__QuerySpec *s = parse_ok(t);
    assert_int_equal(s->cohort->n_all, SPEC_MAX_CRITERIA);
    assert_int_equal(s->cohort->all[0]->n_concepts, SPEC_MAX_CONCEPTS);
    sdefed__query_spec__free_unpacked(s, NULL);
    free(t);

    t = spec_with(SPEC_MAX_CRITERIA + 1, 1);
    refuse(t, "cohort.all: more than 64 criteria");
    free(t);
    t = spec_with(1, SPEC_MAX_CONCEPTS + 1);
    refuse(t, "cohort.all[0].concepts: more than 10000 concepts");
    free(t);
}

/* ---- refusals --------------------------------------------------------------- */

static void test_unknown_fields(void **state)
{
    (void)state;
    refuse(COUNT_PREFIX ",\"extra\":1}", "extra: unknown field");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\",\"concept\":[1]}]}}",
           "cohort.all[0].concept: unknown field");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\",\"concepts\":[1]}],\"anyof\":[]}}",
           "cohort.anyof: unknown field");
    refuse(COUNT_PREFIX ",\"policy\":{\"min_cells\":10}}", "policy.min_cells: unknown field");
    /* a SQL field is just an unknown field */
    refuse(COUNT_PREFIX ",\"sql\":\"SELECT * FROM person\"}", "sql: unknown field");
}

static void test_hostile_key_is_escaped(void **state)
{
    (void)state;
    /* escape sequences and a long key: quoted at most 40 bytes, escaped */
    char buf[1024];
    char key[301];
    memset(key, 'K', 300);
    key[300] = '\0';
    snprintf(buf, sizeof buf, "{\"kind\":\"catalog\",\"project\":\"p\",\"\\u001b[31m%s\":1}", key);
    Sdefed__QuerySpec *s = NULL;
    char err[512];
    assert_int_equal(spec_parse_json(buf, strlen(buf), &s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "\\x1b[31mKKK"));
    assert_non_null(strstr(err, "...: unknown field"));
    assert_null(strchr(err, 0x1b));
    /* 40 input bytes: ESC (4 escaped chars) + "[31m" + 35 K's */
    assert_null(strstr(err, "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK"));   /* 36 K's */
    assert_non_null(strstr(err, "KKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKKK"));  /* 35 K's */

    /* a non-ASCII project name: refused, bytes escaped */
    refuse("{\"kind\":\"catalog\",\"project\":\"caf\xc3\xa9\"}",
           "project: invalid name \"caf\\xc3\\xa9\"");
    /* a quote and backslash in a stratifier name are escaped, not echoed raw */
    refuse(COUNT_PREFIX ",\"by\":[\"se\\\"x\\\\\"]}", "by[0]: unknown stratifier \"se\\\"x\\\\\"");
}

static void test_wrong_types(void **state)
{
    (void)state;
    refuse("{\"kind\":2,\"project\":\"demo\"}", "kind: must be a string, got an integer");
    refuse("{\"kind\":\"catalog\",\"project\":[\"demo\"]}", "project: must be a string, got an array");
    refuse("{\"kind\":\"catalog\",\"project\":null}", "project: must be a string, got null");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":[]}",
           "cohort: must be an object, got an array");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":{}}}",
           "cohort.all: must be an array of criteria, got an object");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":[1]}}",
           "cohort.all[0]: must be an object, got an integer");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\",\"concepts\":1118084}]}}",
           "cohort.all[0].concepts: must be an array of concept ids, got an integer");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\",\"concepts\":[1],\"descendants\":\"yes\"}]}}",
           "cohort.all[0].descendants: must be true or false, got a string");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\",\"concepts\":[1],\"descendants\":1}]}}",
           "cohort.all[0].descendants: must be true or false, got an integer");
    refuse(COUNT_PREFIX ",\"by\":\"sex\"}", "by: must be an array of stratifier names, got a string");
    refuse(COUNT_PREFIX ",\"by\":[1]}", "by[0]: must be a string, got an integer");
    refuse(COUNT_PREFIX ",\"policy\":[]}", "policy: must be an object, got an array");
    refuse(COUNT_PREFIX ",\"policy\":{\"min_cell\":\"10\"}}", "policy.min_cell: must be an integer 1..1000000, got a string");
    refuse(COUNT_PREFIX ",\"policy\":{\"rounding\":5.0}}", "policy.rounding: must be an integer 1..1000000, got a real number");
    refuse(COUNT_PREFIX ",\"policy\":{\"zero_is_disclosive\":0}}", "policy.zero_is_disclosive: must be true or false");
}

static void test_unknown_names(void **state)
{
    (void)state;
    refuse("{\"kind\":\"sql\",\"project\":\"demo\"}", "kind: unknown kind \"sql\"");
    refuse("{\"kind\":\"Count\",\"project\":\"demo\"}", "kind: unknown kind \"Count\"");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drugs\",\"concepts\":[1]}]}}",
           "cohort.all[0].domain: unknown domain \"drugs\"");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\",\"concepts\":[1]},{\"domain\":\"\",\"concepts\":[1]}]}}",
           "cohort.all[1].domain: unknown domain \"\"");
    refuse(COUNT_PREFIX ",\"by\":[\"sex\",\"ethnic\"]}", "by[1]: unknown stratifier \"ethnic\"");
}

static void test_concepts(void **state)
{
    (void)state;
#define CONCEPTS(list) \
    "{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":" \
    "[{\"domain\":\"drug\",\"concepts\":" list "}]}}"
    refuse(CONCEPTS("[]"), "cohort.all[0].concepts: must not be empty");
    refuse(CONCEPTS("[0]"), "cohort.all[0].concepts[0]: concept id must be 1..2147483647");
    refuse(CONCEPTS("[5,-1]"), "cohort.all[0].concepts[1]: concept id must be 1..2147483647");
    refuse(CONCEPTS("[1.5]"), "cohort.all[0].concepts[0]: concept id must be an integer 1..2147483647, got a real number");
    refuse(CONCEPTS("[1.0]"), "got a real number");
    refuse(CONCEPTS("[1e3]"), "got a real number");
    refuse(CONCEPTS("[\"123\"]"), "cohort.all[0].concepts[0]: concept id must be an integer 1..2147483647, got a string");
    refuse(CONCEPTS("[2147483648]"), "cohort.all[0].concepts[0]: concept id must be 1..2147483647");
    refuse(CONCEPTS("[9223372036854775807]"), "concept id must be 1..2147483647");
    refuse(CONCEPTS("[99999999999999999999]"), "json:");   /* jansson: too big integer */
    refuse(CONCEPTS("[true]"), "got a boolean");
    refuse(CONCEPTS("[null]"), "got null");
    refuse(CONCEPTS("[[1]]"), "got an array");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\"}]}}", "cohort.all[0].concepts: required");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"concepts\":[1]}]}}", "cohort.all[0].domain: required");
#undef CONCEPTS
}

static void test_structure(void **state)
{
    (void)state;
    refuse(COUNT_PREFIX ",\"by\":[\"sex\",\"sex\"]}", "by[1]: duplicate stratifier \"sex\"");
    refuse(COUNT_PREFIX ",\"by\":[\"sex\",\"age_band\",\"sex\",\"age_band\"]}", "by: more than 3 stratifiers");
    refuse("{\"kind\":\"catalog\",\"project\":\"demo\",\"dataset\":\"omop\"}", "dataset: not allowed for kind catalog");
    refuse("{\"kind\":\"catalog\",\"project\":\"demo\",\"cohort\":{\"all\":[]}}", "cohort: not allowed for kind catalog");
    refuse("{\"kind\":\"catalog\",\"project\":\"demo\",\"by\":[\"sex\"]}", "by: not allowed for kind catalog");
    refuse("{\"kind\":\"catalog\"}", "project: required");
    refuse("{\"project\":\"demo\"}", "kind: required");
    refuse("{}", "kind: required");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1]}]}}",
           "dataset: required for kind count");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\"}", "cohort: required for kind count");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{}}", "cohort.all: required");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":[]}}",
           "cohort.all: must have at least one criterion");
    refuse(COUNT_PREFIX ",\"policy\":{\"min_cell\":0}}", "policy.min_cell: must be an integer 1..1000000");
    refuse(COUNT_PREFIX ",\"policy\":{\"min_cell\":1000001}}", "policy.min_cell: must be an integer 1..1000000");
    refuse(COUNT_PREFIX ",\"policy\":{\"rounding\":-5}}", "policy.rounding: must be an integer 1..1000000");
}

static void test_names(void **state)
{
    (void)state;
    refuse("{\"kind\":\"catalog\",\"project\":\"'; DROP TABLE person; --\"}",
           "project: invalid name \"'; DROP TABLE person; --\"");
    refuse("{\"kind\":\"catalog\",\"project\":\"\"}", "project: must not be empty");
    refuse("{\"kind\":\"catalog\",\"project\":\"a b\"}", "project: invalid name \"a b\"");
    refuse("{\"kind\":\"catalog\",\"project\":\"../etc\"}", "project: invalid name");
    refuse("{\"kind\":\"catalog\",\"project\":\"p\\u0000x\"}", "json:");   /* NUL refused by jansson */
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop;\",\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1]}]}}",
           "dataset: invalid name \"omop;\"");
    char buf[256], name[SPEC_MAX_NAME + 2];
    memset(name, 'a', SPEC_MAX_NAME + 1);
    name[SPEC_MAX_NAME + 1] = '\0';
    snprintf(buf, sizeof buf, "{\"kind\":\"catalog\",\"project\":\"%s\"}", name);
    refuse(buf, "project: longer than 64 characters");
}

static void test_json_syntax(void **state)
{
    (void)state;
    refuse("{\"kind\":\"catalog\",\"kind\":\"count\",\"project\":\"demo\"}", "duplicate object key");
    refuse("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
           "[{\"domain\":\"drug\",\"concepts\":[1],\"concepts\":[2]}]}}", "duplicate object key");
    refuse("[{\"kind\":\"catalog\",\"project\":\"demo\"}]", "spec: must be a JSON object, got an array");
    refuse("\"catalog\"", "json:");
    refuse("42", "json:");
    refuse("", "json:");
    refuse("{\"kind\":\"catalog\",\"project\":\"de", "json: line 1");
    refuse("{\"kind\":\"catalog\",\"project\":\"demo\"", "json:");
    refuse("{\"kind\":\"catalog\",\"project\":\"demo\"}{}", "json:");   /* trailing document */
    refuse("{\"kind\":\"catalog\",\"project\":\"demo\"} x", "json:");
    refuse("{\"kind\":\"catalog\",\"project\":\"\xff\xfe\"}", "json:");  /* invalid UTF-8 */
    refuse("{'kind':'catalog'}", "json:");
    /* an embedded NUL byte inside the buffer */
    static const char nul[] = "{\"kind\":\"catalog\",\0\"project\":\"demo\"}";
    refuse_len(nul, sizeof nul - 1, "json:");

    /* a long token in a syntax error is excerpted, not echoed whole */
    char buf[600];
    char junk[401];
    memset(junk, 'Z', 400);
    junk[400] = '\0';
    snprintf(buf, sizeof buf, "{\"kind\":%s}", junk);
    refuse(buf, "json: line 1");
}

static void test_oversize(void **state)
{
    (void)state;
    size_t n = 2u << 20;   /* 2 MiB */
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    memcpy(big, ISSUE_EXAMPLE, strlen(ISSUE_EXAMPLE));
    refuse_len(big, n, "more than the limit of 1048576");
    refuse_len(big, SPEC_MAX_JSON + 1, "more than the limit");
    free(big);
}

static void test_deep_nesting(void **state)
{
    (void)state;
    /* 100000 nested arrays inside a valid-looking spec: jansson's depth
     * limit must refuse it without exhausting the stack. */
    size_t depth = 100000;
    const char *head = "{\"kind\":\"catalog\",\"project\":\"demo\",\"x\":";
    size_t hl = strlen(head);
    char *b = malloc(hl + 2 * depth + 2);
    assert_non_null(b);
    memcpy(b, head, hl);
    memset(b + hl, '[', depth);
    memset(b + hl + depth, ']', depth);
    b[hl + 2 * depth] = '}';
    b[hl + 2 * depth + 1] = '\0';
    refuse(b, "spec: nested more than 64 levels deep");   /* counted before jansson */
    free(b);

    /* nested objects, unterminated */
    size_t od = 50000;
    b = malloc(od * 6 + 1);
    assert_non_null(b);
    for (size_t i = 0; i < od; i++)
        memcpy(b + i * 6, "{\"a\":[", 6);
    b[od * 6] = '\0';
    refuse(b, "spec: nested more than 64 levels deep");
    free(b);

    /* nesting that jansson accepts is still refused as an unknown field or
     * wrong type, never crashes */
    refuse("{\"kind\":\"catalog\",\"project\":\"demo\",\"policy\":{\"min_cell\":[[[[[[[[1]]]]]]]]}}",
           "policy.min_cell: must be an integer 1..1000000, got an array");
}

static void test_error_buffer_edges(void **state)
{
    (void)state;
    const char *bad = "{\"kind\":\"sql\",\"project\":\"demo\"}";
    Sdefed__QuerySpec *s = NULL;
    /* NULL error buffer or zero length: still refused, no crash */
    assert_int_equal(spec_parse_json(bad, strlen(bad), &s, NULL, 0), SDF_ESPEC);
    assert_null(s);
    char tiny[8];
    memset(tiny, 'X', sizeof tiny);
    assert_int_equal(spec_parse_json(bad, strlen(bad), &s, tiny, sizeof tiny), SDF_ESPEC);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    assert_memory_equal(tiny, "kind: u", 7);
    /* NULL text */
    char err[64];
    assert_int_equal(spec_parse_json(NULL, 0, &s, err, sizeof err), SDF_ESPEC);
    assert_null(s);
    /* NULL out */
    assert_int_equal(spec_parse_json(ISSUE_EXAMPLE, strlen(ISSUE_EXAMPLE), NULL, err, sizeof err), SDF_ESPEC);
}

/* ---- spec_validate on protobuf ------------------------------------------------ */

struct pb {
    Sdefed__QuerySpec spec;
    Sdefed__Cohort cohort;
    Sdefed__Criterion crit[SPEC_MAX_CRITERIA + 1];
    Sdefed__Criterion *critp[SPEC_MAX_CRITERIA + 1];
    int64_t concepts[3];
    Sdefed__Stratifier by[SPEC_MAX_STRATIFIERS + 2];
    Sdefed__PolicyRequest policy;
};

/* A valid count spec built by hand. */
static void pb_init(struct pb *p)
{
    memset(p, 0, sizeof *p);
    sdefed__query_spec__init(&p->spec);
    sdefed__cohort__init(&p->cohort);
    sdefed__policy_request__init(&p->policy);
    for (size_t i = 0; i <= SPEC_MAX_CRITERIA; i++) {
        sdefed__criterion__init(&p->crit[i]);
        p->crit[i].domain = SDEFED__DOMAIN__DOMAIN_DRUG;
        p->crit[i].n_concepts = 3;
        p->crit[i].concepts = p->concepts;
        p->critp[i] = &p->crit[i];
    }
    p->concepts[0] = 30;   /* unsorted is fine on the wire */
    p->concepts[1] = 1;
    p->concepts[2] = 2147483647;
    p->spec.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    p->spec.project = "demo";
    p->spec.dataset = "omop";
    p->spec.cohort = &p->cohort;
    p->cohort.n_all = 1;
    p->cohort.all = p->critp;
    p->by[0] = SDEFED__STRATIFIER__STRAT_SEX;
    p->by[1] = SDEFED__STRATIFIER__STRAT_AGE_BAND;
    p->spec.n_by = 2;
    p->spec.by = p->by;
}

static void invalid(const struct pb *p, const char *want)
{
    char err[256] = "";
    int rc = spec_validate(&p->spec, err, sizeof err);
    if (rc != SDF_ESPEC || !strstr(err, want))
        print_error("rc=%d err=\"%s\" want \"%s\"\n", rc, err, want);
    assert_int_equal(rc, SDF_ESPEC);
    assert_non_null(strstr(err, want));
}

static void test_validate_protobuf(void **state)
{
    (void)state;
    struct pb p;
    char err[256];

    pb_init(&p);
    assert_int_equal(spec_validate(&p.spec, err, sizeof err), 0);

    pb_init(&p); p.spec.kind = (Sdefed__QueryKind)99;
    invalid(&p, "kind: unknown kind value 99");
    pb_init(&p); p.spec.kind = SDEFED__QUERY_KIND__KIND_UNSPECIFIED;
    invalid(&p, "kind: unknown kind value 0");
    pb_init(&p); p.spec.kind = (Sdefed__QueryKind)-1;
    invalid(&p, "kind: unknown kind value -1");
    pb_init(&p); p.crit[0].domain = (Sdefed__Domain)99;
    invalid(&p, "cohort.all[0].domain: unknown domain value 99");
    pb_init(&p); p.crit[0].domain = SDEFED__DOMAIN__DOMAIN_UNSPECIFIED;
    invalid(&p, "cohort.all[0].domain: unknown domain value 0");
    pb_init(&p); p.by[1] = (Sdefed__Stratifier)99;
    invalid(&p, "by[1]: unknown stratifier value 99");
    pb_init(&p); p.by[1] = SDEFED__STRATIFIER__STRAT_SEX;
    invalid(&p, "by[1]: duplicate stratifier \"sex\"");
    pb_init(&p); p.spec.n_by = SPEC_MAX_STRATIFIERS + 1;
    invalid(&p, "by: more than 3 stratifiers");
    pb_init(&p); p.cohort.n_all = SPEC_MAX_CRITERIA + 1;
    invalid(&p, "cohort.all: more than 64 criteria");
    pb_init(&p); p.cohort.n_all = SPEC_MAX_CRITERIA;
    assert_int_equal(spec_validate(&p.spec, err, sizeof err), 0);
    pb_init(&p); p.cohort.n_all = 0;
    invalid(&p, "cohort.all: must have at least one criterion");
    pb_init(&p); p.spec.cohort = NULL;
    invalid(&p, "cohort: required for kind count");
    pb_init(&p); p.crit[0].n_concepts = SPEC_MAX_CONCEPTS + 1;   /* never read: refused by count */
    invalid(&p, "cohort.all[0].concepts: more than 10000 concepts");
    pb_init(&p); p.crit[0].n_concepts = 0;
    invalid(&p, "cohort.all[0].concepts: must not be empty");
    pb_init(&p); p.concepts[1] = 0;
    invalid(&p, "cohort.all[0].concepts[1]: concept id must be 1..2147483647");
    pb_init(&p); p.concepts[2] = 2147483648LL;
    invalid(&p, "cohort.all[0].concepts[2]: concept id must be 1..2147483647");
    pb_init(&p); p.concepts[0] = INT64_MIN;
    invalid(&p, "cohort.all[0].concepts[0]");
    pb_init(&p); p.critp[0] = NULL;
    invalid(&p, "cohort.all[0]: missing criterion");
    pb_init(&p); p.spec.project = "";
    invalid(&p, "project: must not be empty");
    pb_init(&p); p.spec.project = NULL;
    invalid(&p, "project: must not be empty");
    pb_init(&p); p.spec.project = "demo\n";
    invalid(&p, "project: invalid name \"demo\\n\"");
    pb_init(&p); p.spec.dataset = "";
    invalid(&p, "dataset: required for kind count");
    pb_init(&p); p.spec.dataset = "om op";
    invalid(&p, "dataset: invalid name");
    pb_init(&p); p.spec.policy = &p.policy; p.policy.min_cell = -1;
    invalid(&p, "policy.min_cell: must be 1..1000000");
    pb_init(&p); p.spec.policy = &p.policy; p.policy.rounding = 1000001;
    invalid(&p, "policy.rounding: must be 1..1000000");
    pb_init(&p); p.spec.policy = &p.policy; p.policy.min_cell = 1000000; p.policy.rounding = 0;
    assert_int_equal(spec_validate(&p.spec, err, sizeof err), 0);

    /* catalog: no dataset, cohort criteria or stratifiers */
    pb_init(&p); p.spec.kind = SDEFED__QUERY_KIND__KIND_CATALOG;
    invalid(&p, "dataset: not allowed for kind catalog");
    p.spec.dataset = "";
    invalid(&p, "cohort: not allowed for kind catalog");
    p.spec.cohort = NULL;
    invalid(&p, "by: not allowed for kind catalog");
    p.spec.n_by = 0;
    assert_int_equal(spec_validate(&p.spec, err, sizeof err), 0);

    assert_int_equal(spec_validate(NULL, err, sizeof err), SDF_ESPEC);
}

/* A spec that crossed the wire (pack/unpack) with hostile enum values is
 * refused by the agent-side check. */
static void test_validate_wire(void **state)
{
    (void)state;
    struct pb p;
    pb_init(&p);
    p.spec.kind = (Sdefed__QueryKind)7;
    size_t n = sdefed__query_spec__get_packed_size(&p.spec);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    sdefed__query_spec__pack(&p.spec, buf);
    Sdefed__QuerySpec *s = sdefed__query_spec__unpack(NULL, n, buf);
    free(buf);
    assert_non_null(s);
    char err[128];
    assert_int_equal(spec_validate(s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "kind: unknown kind value 7"));

    /* to_json of an invalid spec does not crash, and its output is refused */
    json_t *j = spec_to_json(s);
    assert_non_null(j);
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    Sdefed__QuerySpec *back = NULL;
    assert_int_equal(spec_parse_json(t, strlen(t), &back, err, sizeof err), SDF_ESPEC);
    assert_null(back);
    free(t);
    sdefed__query_spec__free_unpacked(s, NULL);

    /* and a valid parsed spec survives the wire and validates */
    s = parse_ok(ISSUE_EXAMPLE);
    n = sdefed__query_spec__get_packed_size(s);
    buf = malloc(n);
    assert_non_null(buf);
    sdefed__query_spec__pack(s, buf);
    Sdefed__QuerySpec *w = sdefed__query_spec__unpack(NULL, n, buf);
    free(buf);
    assert_non_null(w);
    assert_int_equal(spec_validate(w, err, sizeof err), 0);
    assert_spec_equal(s, w);
    sdefed__query_spec__free_unpacked(w, NULL);
    sdefed__query_spec__free_unpacked(s, NULL);
}

static void test_names_helpers(void **state)
{
    (void)state;
    assert_string_equal(spec_kind_name(SDEFED__QUERY_KIND__KIND_CATALOG), "catalog");
    assert_string_equal(spec_kind_name(SDEFED__QUERY_KIND__KIND_COUNT), "count");
    assert_string_equal(spec_kind_name(SDEFED__QUERY_KIND__KIND_UNSPECIFIED), "");
    assert_string_equal(spec_kind_name((Sdefed__QueryKind)99), "");
    assert_string_equal(spec_kind_name((Sdefed__QueryKind)-5), "");
    assert_string_equal(spec_domain_name(SDEFED__DOMAIN__DOMAIN_VISIT), "visit");
    assert_string_equal(spec_domain_name((Sdefed__Domain)99), "");
    assert_string_equal(spec_stratifier_name(SDEFED__STRATIFIER__STRAT_AGE_BAND), "age_band");
    assert_string_equal(spec_stratifier_name((Sdefed__Stratifier)1000), "");
    assert_string_equal(spec_cell_status_name(SDEFED__CELL_STATUS__CELL_EXACT), "exact");
    assert_string_equal(spec_cell_status_name(SDEFED__CELL_STATUS__CELL_ROUNDED), "rounded");
    assert_string_equal(spec_cell_status_name(SDEFED__CELL_STATUS__CELL_SUPPRESSED), "suppressed");
    assert_string_equal(spec_cell_status_name(SDEFED__CELL_STATUS__CELL_NOISED), "noised");
    assert_string_equal(spec_cell_status_name(SDEFED__CELL_STATUS__CELL_UNSPECIFIED), "");
    assert_string_equal(spec_site_status_name(SDEFED__SITE_STATUS__SITE_OK), "ok");
    assert_string_equal(spec_site_status_name(SDEFED__SITE_STATUS__SITE_OFFLINE), "offline");
    assert_string_equal(spec_site_status_name(SDEFED__SITE_STATUS__SITE_TIMEOUT), "timeout");
    assert_string_equal(spec_site_status_name(SDEFED__SITE_STATUS__SITE_REFUSED), "refused");
    assert_string_equal(spec_site_status_name(SDEFED__SITE_STATUS__SITE_ERROR), "error");
    assert_string_equal(spec_site_status_name(SDEFED__SITE_STATUS__SITE_HELD), "held");
    assert_string_equal(spec_site_status_name((Sdefed__SiteStatus)99), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_issue_example),
        cmocka_unit_test(test_catalog),
        cmocka_unit_test(test_full_spec),
        cmocka_unit_test(test_defaults_omitted),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_canonical_ignores_order),
        cmocka_unit_test(test_limits_accepted),
        cmocka_unit_test(test_count_limits),
        cmocka_unit_test(test_unknown_fields),
        cmocka_unit_test(test_hostile_key_is_escaped),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_unknown_names),
        cmocka_unit_test(test_concepts),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_json_syntax),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_error_buffer_edges),
        cmocka_unit_test(test_validate_protobuf),
        cmocka_unit_test(test_validate_wire),
        cmocka_unit_test(test_names_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
