/* tests/unit/lib/test_spec_cohort.c — the issue 3 cohort language in lib/spec.c.
 *
 * Valid specs of every new feature parse and survive the canonical round
 * trip; hostile ones are refused with a message naming the field: 10,000
 * nested groups (before jansson parses them), 10,000 sibling criteria,
 * windows with start after end, injection attempts in every string field,
 * malformed expression trees arriving as protobuf (cycles, shared children,
 * depth, oversize), and features used without the index they need. Specs
 * valid before issue 3 keep their canonical form byte for byte.
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

#define HEAD "{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\","
#define SUMHEAD "{\"kind\":\"summary\",\"project\":\"demo\",\"dataset\":\"omop\","
#define IDX "\"index\":{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":true}"

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

/* Parse, check the canonical round trip, return the spec. */
static Sdefed__QuerySpec *accept(const char *json)
{
    Sdefed__QuerySpec *s = NULL;
    char err[512] = "";
    int rc = spec_parse_json(json, strlen(json), &s, err, sizeof err);
    if (rc)
        fprintf(stderr, "input %.300s\n  refused: %s\n", json, err);
    assert_int_equal(rc, 0);
    json_t *j = spec_to_json(s);
    assert_non_null(j);
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    Sdefed__QuerySpec *again = NULL;
    rc = spec_parse_json(text, strlen(text), &again, err, sizeof err);
    if (rc)
        fprintf(stderr, "canonical %s\n  refused: %s\n", text, err);
    assert_int_equal(rc, 0);
    /* identical messages pack identically */
    size_t a = sdefed__query_spec__get_packed_size(s), b = sdefed__query_spec__get_packed_size(again);
    assert_int_equal(a, b);
    uint8_t *pa = malloc(a + 1), *pb = malloc(b + 1);
    sdefed__query_spec__pack(s, pa);
    sdefed__query_spec__pack(again, pb);
    assert_memory_equal(pa, pb, a);
    free(pa);
    free(pb);
    free(text);
    sdefed__query_spec__free_unpacked(again, NULL);
    return s;
}

static char *canonical(const char *json)
{
    Sdefed__QuerySpec *s = accept(json);
    json_t *j = spec_to_json(s);
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    sdefed__query_spec__free_unpacked(s, NULL);
    return t;
}

static void test_full_language_round_trip(void **state)
{
    (void)state;
    Sdefed__QuerySpec *s = accept(
        HEAD "\"cohort\":{\"index\":{\"domain\":\"drug\",\"concepts\":[1124300,1118084],"
        "\"descendants\":true,\"exclude\":[19019273],\"exclude_descendants\":true,\"event\":\"all\"},"
        "\"all\":[{\"domain\":\"condition\",\"concepts\":[192671],\"descendants\":true,"
        "\"window\":{\"start_days\":0,\"end_days\":365},\"first_only\":true},"
        "{\"any\":[{\"domain\":\"measurement\",\"concepts\":[3004410],\"value\":{\"min\":6.5,"
        "\"max\":20},\"units\":[8554]},{\"not\":{\"domain\":\"death\"}}]}],"
        "\"age\":{\"min\":18,\"max\":80},\"sex\":[\"female\",\"male\"],"
        "\"observation\":{\"prior_days\":365,\"post_days\":30}},"
        "\"by\":[\"year\",\"age_band\",\"race\"],\"age_band_width\":5}");
    const Sdefed__Cohort *co = s->cohort;
    assert_non_null(co->index);
    assert_int_equal(co->index_event, SDEFED__INDEX_EVENT__INDEX_ALL);
    assert_int_equal(co->n_all, 0);
    assert_int_equal(co->n_nodes, 6);   /* all, crit, any, crit, not, crit */
    assert_int_equal(co->nodes[0]->op, SDEFED__NODE_OP__NODE_ALL);
    assert_int_equal(co->nodes[2]->op, SDEFED__NODE_OP__NODE_ANY);
    assert_int_equal(co->nodes[4]->op, SDEFED__NODE_OP__NODE_NOT);
    assert_int_equal(co->nodes[5]->criterion->domain, SDEFED__DOMAIN__DOMAIN_DEATH);
    assert_int_equal(co->nodes[1]->criterion->window->start_days, 0);
    assert_true(co->nodes[3]->criterion->value->has_min);
    assert_int_equal(co->n_sex, 2);
    assert_int_equal(co->sex[0], SDEFED__SEX__SEX_MALE);   /* canonical order */
    assert_int_equal(s->age_band_width, 5);
    sdefed__query_spec__free_unpacked(s, NULL);

    s = accept(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"measurement\","
               "\"concepts\":[3004410],\"units\":[8554],\"window\":{\"start_days\":-365,"
               "\"end_days\":0},\"pick\":\"first\"},\"by\":[\"sex\"]}");
    assert_int_equal(s->kind, SDEFED__QUERY_KIND__KIND_SUMMARY);
    assert_int_equal(s->summary->pick, SDEFED__SUMMARY_PICK__PICK_FIRST);
    sdefed__query_spec__free_unpacked(s, NULL);
    s = accept(SUMHEAD "\"cohort\":{\"all\":[{\"domain\":\"condition\",\"concepts\":[201826]}]},"
               "\"summary\":{\"of\":\"age\"}}");
    sdefed__query_spec__free_unpacked(s, NULL);
    /* clamp (issue 4: DP statistics) survives the canonical round trip */
    s = accept(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"measurement\","
               "\"concepts\":[3004410],\"clamp\":{\"min\":-5,\"max\":25.5}}}");
    assert_non_null(s->summary->clamp);
    assert_true(s->summary->clamp->min == -5.0 && s->summary->clamp->max == 25.5);
    sdefed__query_spec__free_unpacked(s, NULL);
}

/* Specs valid before issue 3 keep their exact canonical text. */
static void test_backward_compatible_canonical_form(void **state)
{
    (void)state;
    char *t = canonical(HEAD "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1118084,1],"
                        "\"descendants\":true},{\"domain\":\"condition\",\"concepts\":[201826]}]},"
                        "\"by\":[\"sex\",\"age_band\"],\"policy\":{\"min_cell\":20}}");
    assert_string_equal(t, "{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\","
                           "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1,1118084],"
                           "\"descendants\":true},{\"domain\":\"condition\",\"concepts\":[201826]}]},"
                           "\"by\":[\"sex\",\"age_band\"],\"policy\":{\"min_cell\":20}}");
    free(t);
    /* width 10 is the old meaning of age_band: canonically omitted */
    t = canonical(HEAD "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1]}]},"
                  "\"by\":[\"age_band\"],\"age_band_width\":10}");
    assert_null(strstr(t, "age_band_width"));
    free(t);
}

static void test_nesting_bombs(void **state)
{
    (void)state;
    /* 10,000 nested "not" groups: refused before jansson recurses */
    size_t n = 10000;
    const char *head = HEAD "\"cohort\":{\"index\":{\"domain\":\"drug\",\"concepts\":[1]},\"all\":[";
    size_t hl = strlen(head);
    char *b = malloc(hl + n * 8 + 200);
    memcpy(b, head, hl);
    size_t o = hl;
    for (size_t i = 0; i < n; i++) {
        memcpy(b + o, "{\"not\":", 7);
        o += 7;
    }
    o += (size_t)sprintf(b + o, "{\"domain\":\"drug\",\"concepts\":[1]}");
    for (size_t i = 0; i < n; i++)
        b[o++] = '}';
    strcpy(b + o, "]}}");
    refuse(b, "nested more than 64 levels deep");
    free(b);

    /* 13 nested groups fit jansson and the bracket limit: our depth limit */
    char d[4096];
    o = (size_t)sprintf(d, HEAD "\"cohort\":{\"all\":[");
    for (int i = 0; i < 13; i++)
        o += (size_t)sprintf(d + o, "{\"any\":[");
    o += (size_t)sprintf(d + o, "{\"domain\":\"drug\",\"concepts\":[1]}");
    for (int i = 0; i < 13; i++)
        o += (size_t)sprintf(d + o, "]}");
    sprintf(d + o, "]}}");
    refuse(d, "groups nested more than 12 deep");

    /* 10,000 sibling criteria */
    char *w = malloc(10000 * 40 + 200);
    o = (size_t)sprintf(w, HEAD "\"cohort\":{\"any\":[");
    for (int i = 0; i < 10000; i++)
        o += (size_t)sprintf(w + o, "%s{\"domain\":\"drug\",\"concepts\":[1]}", i ? "," : "");
    sprintf(w + o, "]}}");
    refuse(w, "more than");
    free(w);
}

static void test_windows_and_ranges(void **state)
{
    (void)state;
    refuse(HEAD "\"cohort\":{" IDX ",\"all\":[{\"domain\":\"condition\",\"concepts\":[1],"
           "\"window\":{\"start_days\":30,\"end_days\":-30}}]}}",
           "cohort.all[0].window: start_days (30) is after end_days (-30)");
    refuse(HEAD "\"cohort\":{\"all\":[{\"domain\":\"condition\",\"concepts\":[1],"
           "\"window\":{\"start_days\":0,\"end_days\":30}}]}}",
           "a criterion with a window needs cohort.index");
    refuse(HEAD "\"cohort\":{" IDX ",\"all\":[{\"domain\":\"condition\",\"concepts\":[1],"
           "\"window\":{\"start_days\":0}}]}}", "needs start_days and end_days");
    refuse(HEAD "\"cohort\":{" IDX ",\"all\":[{\"domain\":\"condition\",\"concepts\":[1],"
           "\"window\":{\"start_days\":0,\"end_days\":99999999}}]}}", "end_days: must be");
    refuse(HEAD "\"cohort\":{\"index\":{\"domain\":\"drug\",\"concepts\":[1],"
           "\"window\":{\"start_days\":0,\"end_days\":1}}}}", "cohort.index.window: unknown field");
    refuse(HEAD "\"cohort\":{\"all\":[{\"domain\":\"condition\",\"concepts\":[1],"
           "\"value\":{\"min\":1}}]}}", "value: only for measurement and observation");
    refuse(HEAD "\"cohort\":{\"all\":[{\"domain\":\"measurement\",\"concepts\":[1],"
           "\"value\":{\"min\":5,\"max\":1}}]}}", "min is greater than max");
    refuse(HEAD "\"cohort\":{\"all\":[{\"domain\":\"measurement\",\"concepts\":[1],"
           "\"value\":{\"min\":\"5\"}}]}}", "value.min: must be a number");
    refuse(HEAD "\"cohort\":{" IDX ",\"age\":{\"min\":80,\"max\":18}}}", "age: min is greater");
    refuse(HEAD "\"cohort\":{" IDX ",\"age\":{\"min\":-1}}}", "age.min: must be an integer 0..150");
    refuse(HEAD "\"cohort\":{\"any\":[{\"domain\":\"drug\",\"concepts\":[1]}],\"age\":{\"min\":1}}}",
           "age: needs cohort.index");
    refuse(HEAD "\"cohort\":{\"any\":[{\"domain\":\"drug\",\"concepts\":[1]}]},\"by\":[\"year\"]}",
           "by[0]: \"year\" needs cohort.index");
    refuse(HEAD "\"cohort\":{" IDX ",\"sex\":[\"female\",\"female\"]}}", "sex[1]: duplicate");
    refuse(HEAD "\"cohort\":{" IDX ",\"observation\":{\"prior_days\":-5}}}", "prior_days");
    refuse(HEAD "\"cohort\":{" IDX "},\"by\":[\"sex\"],\"age_band_width\":5}",
           "age_band_width: needs \"age_band\" in by");
    refuse(HEAD "\"cohort\":{" IDX "},\"by\":[\"age_band\"],\"age_band_width\":0}", "age_band_width");
    refuse(HEAD "\"cohort\":{" IDX ",\"all\":[],\"any\":[]}}", "at most one of all, any, not");
    refuse(HEAD "\"cohort\":{" IDX ",\"not\":[{\"domain\":\"drug\",\"concepts\":[1]}]}}",
           "cohort.not: must be one criterion or group");
    refuse(HEAD "\"cohort\":{\"all\":[{\"any\":[],\"not\":{}}]}}",
           "a group has exactly one of all, any, not");
    refuse(HEAD "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1],"
           "\"exclude_descendants\":true}]}}", "needs a non-empty exclude");
    refuse(HEAD "\"cohort\":{\"all\":[{\"domain\":\"drug\"}]}}", "concepts: required");
    refuse(SUMHEAD "\"cohort\":{" IDX "}}", "summary: required for kind summary");
    refuse(HEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"age\"}}", "summary: only for kind summary");
    refuse(SUMHEAD "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1]}]},"
           "\"summary\":{\"of\":\"measurement\",\"concepts\":[1],\"window\":{\"start_days\":0,"
           "\"end_days\":1}}}", "summary.window: needs cohort.index");
    refuse(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"age\",\"concepts\":[1]}}",
           "age takes no concepts");
    refuse(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"measurement\"}}",
           "summary.concepts: must not be empty");
    refuse(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"measurement\",\"concepts\":[1],"
           "\"clamp\":{\"min\":0}}}", "summary.clamp: needs both min and max");
    refuse(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"measurement\",\"concepts\":[1],"
           "\"clamp\":{\"min\":3,\"max\":3}}}", "summary.clamp: min must be less than max");
    refuse(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"measurement\",\"concepts\":[1],"
           "\"clamp\":{\"min\":0,\"max\":1e300}}}", "summary.clamp: min and max must be finite");
    refuse(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"measurement\",\"concepts\":[1],"
           "\"clamp\":{\"min\":0,\"max\":1,\"mid\":0.5}}}", "summary.clamp");
}

/* Injection attempts in every string field are refused, and the message
 * quotes at most an escaped excerpt. */
static void test_injection_in_strings(void **state)
{
    (void)state;
    refuse("{\"kind\":\"count\",\"project\":\"x'; DROP TABLE person;--\",\"dataset\":\"omop\","
           "\"cohort\":{" IDX "}}", "project: invalid name");
    refuse(HEAD "\"cohort\":{\"index\":{\"domain\":\"drug' OR 1=1 --\",\"concepts\":[1]}}}",
           "unknown domain \"drug' OR 1=1 --\"");
    refuse(HEAD "\"cohort\":{\"index\":{\"domain\":\"drug\",\"concepts\":[1],"
           "\"event\":\"first); DELETE FROM person; --\"}}}", "event: must be \"first\" or \"all\"");
    refuse(HEAD "\"cohort\":{" IDX ",\"sex\":[\"female' --\"]}}", "sex[0]: must be");
    refuse(HEAD "\"cohort\":{" IDX "},\"by\":[\"sex; DROP TABLE x\"]}", "unknown stratifier");
    refuse(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"value_as_number FROM x--\"}}",
           "unknown \"value_as_number FROM x--\"");
    refuse(SUMHEAD "\"cohort\":{" IDX "},\"summary\":{\"of\":\"measurement\",\"concepts\":[1],"
           "\"pick\":\"latest DESC; --\"}}", "pick: must be");
    refuse(HEAD "\"cohort\":{" IDX ",\"all\":[{\"domain\":\"drug\",\"concepts\":[\"1 OR 1=1\"]}]}}",
           "concept id must be an integer");
    refuse(HEAD "\"cohort\":{" IDX ",\"all\":[{\"domain\":\"measurement\",\"concepts\":[1],"
           "\"units\":[\"8554)\"]}]}}", "concept id must be an integer");
}

/* Expression trees that arrive as protobuf (from a hostile coordinator). */
static void test_protobuf_trees(void **state)
{
    (void)state;
    Sdefed__Criterion cr = SDEFED__CRITERION__INIT;
    int64_t c1 = 1;
    cr.domain = SDEFED__DOMAIN__DOMAIN_DRUG;
    cr.n_concepts = 1;
    cr.concepts = &c1;
    Sdefed__CohortNode nodes[SPEC_MAX_NODES + 2];
    Sdefed__CohortNode *np[SPEC_MAX_NODES + 2];
    uint32_t kids[SPEC_MAX_NODES + 2][2];
    for (size_t i = 0; i < SPEC_MAX_NODES + 2; i++) {
        sdefed__cohort_node__init(&nodes[i]);
        np[i] = &nodes[i];
    }
    Sdefed__Cohort co = SDEFED__COHORT__INIT;
    Sdefed__QuerySpec s = SDEFED__QUERY_SPEC__INIT;
    s.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    s.project = (char *)"demo";
    s.dataset = (char *)"omop";
    s.cohort = &co;
    co.nodes = np;
    char err[256];

    /* valid: all(crit, crit) */
    nodes[0].op = SDEFED__NODE_OP__NODE_ALL;
    kids[0][0] = 1;
    kids[0][1] = 2;
    nodes[0].children = kids[0];
    nodes[0].n_children = 2;
    nodes[1].op = nodes[2].op = SDEFED__NODE_OP__NODE_CRITERION;
    nodes[1].criterion = nodes[2].criterion = &cr;
    co.n_nodes = 3;
    assert_int_equal(spec_validate(&s, err, sizeof err), 0);

    /* a cycle: child index not after its parent */
    kids[0][1] = 0;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "out of order or range"));
    /* a shared child (a DAG) */
    kids[0][1] = 1;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "exactly one group"));
    /* out of range */
    kids[0][1] = 77;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    /* not with two children */
    kids[0][1] = 2;
    nodes[0].op = SDEFED__NODE_OP__NODE_NOT;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "exactly one"));
    /* a group carrying a criterion, a criterion with children */
    nodes[0].op = SDEFED__NODE_OP__NODE_ANY;
    nodes[0].criterion = &cr;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    nodes[0].criterion = NULL;
    nodes[1].n_children = 1;
    nodes[1].children = kids[1];
    kids[1][0] = 2;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    nodes[1].n_children = 0;
    /* unknown op */
    nodes[2].op = (Sdefed__NodeOp)42;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    nodes[2].op = SDEFED__NODE_OP__NODE_CRITERION;
    /* both all and nodes */
    Sdefed__Criterion *allp = &cr;
    co.all = &allp;
    co.n_all = 1;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    co.n_all = 0;
    co.all = NULL;

    /* a chain of 13 groups: too deep */
    for (size_t i = 0; i < 13; i++) {
        nodes[i].op = SDEFED__NODE_OP__NODE_NOT;
        nodes[i].criterion = NULL;
        kids[i][0] = (uint32_t)i + 1;
        nodes[i].children = kids[i];
        nodes[i].n_children = 1;
    }
    nodes[13].op = SDEFED__NODE_OP__NODE_CRITERION;
    nodes[13].criterion = &cr;
    nodes[13].n_children = 0;
    co.n_nodes = 14;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "nested more than 12 deep"));
    /* 12 is fine */
    nodes[12].op = SDEFED__NODE_OP__NODE_CRITERION;
    nodes[12].criterion = &cr;
    nodes[12].n_children = 0;
    co.n_nodes = 13;
    assert_int_equal(spec_validate(&s, err, sizeof err), 0);
    /* too many nodes */
    co.n_nodes = SPEC_MAX_NODES + 1;
    assert_int_equal(spec_validate(&s, err, sizeof err), SDF_ESPEC);
    assert_non_null(strstr(err, "more than 128"));
    /* spec_to_json never loops or recurses without bound on a bad tree */
    co.n_nodes = 3;
    nodes[0].op = SDEFED__NODE_OP__NODE_ALL;
    nodes[0].n_children = 2;
    kids[0][0] = 0;   /* self-reference: skipped */
    kids[0][1] = 1;
    json_t *j = spec_to_json(&s);
    assert_non_null(j);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_language_round_trip),
        cmocka_unit_test(test_backward_compatible_canonical_form),
        cmocka_unit_test(test_nesting_bombs),
        cmocka_unit_test(test_windows_and_ranges),
        cmocka_unit_test(test_injection_in_strings),
        cmocka_unit_test(test_protobuf_trees),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
