/* tests/unit/agent/test_count_split.c — a count split over row ranges (query_count_split.c) equals the single statement.
 *
 * The cohort fixture (omop_fixture.h) with its event tables shuffled, so a
 * person's events are spread over every row range and most persons are
 * found by several parts. For each spec the cells of the plain count
 * statement (query_count_run without persons and with `parallel` off;
 * checked against truths computed in C by test_cohort.c) and the person
 * ids of the ordinary path must equal count_split_run's for 2, 3, 7 and
 * 16 parts; the split must really have been used where the plan allows it,
 * one statement where a criterion is a set built once, and the path
 * declined where an index day is read (windows, age bands). Also: a passed
 * deadline gives SDF_ETIMEOUT, and an empty cohort.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "db.h"
#include "query.h"
#include "query_cohort.h"
#include "query_count_split.h"
#include "query_internal.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

#define OMOP_FIXTURE_NAME "split"
#include "omop_fixture.h"

static int setup_shuffled(void **state)
{
    if (setup(state))
        return -1;
    if (getenv("TEST_DEBUG"))
        log_set_level(SDF_LOG_DEBUG);
    sqlite3 *db;
    if (sqlite3_open(db_path, &db) != SQLITE_OK)
        return -1;
    static const char *const tables[] = { "drug_exposure", "condition_occurrence",
                                          "measurement", "person" };
    for (size_t k = 0; k < sizeof tables / sizeof tables[0]; k++) {
        char sql[400];
        snprintf(sql, sizeof sql,
                 "CREATE TEMP TABLE t AS SELECT * FROM %s ORDER BY random();"
                 "DELETE FROM %s; INSERT INTO %s SELECT * FROM t; DROP TABLE t;",
                 tables[k], tables[k], tables[k]);
        exec_sql(db, sql);
    }
    sqlite3_close(db);
    db_sqlite_pool_drain();
    return 0;
}

typedef struct outcome {
    int rc;
    int64_t counts[64];
    size_t n_cells;
    int64_t *persons;
    size_t n_persons;
    size_t parts;   /* count_split_run's: 0 declined, 1 one statement, k split */
} outcome;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static Sdefed__QuerySpec *parse(const char *json)
{
    Sdefed__QuerySpec *spec = NULL;
    char err[256];
    if (spec_parse_json(json, strlen(json), &spec, err, sizeof err) != 0)
        fail_msg("spec: %s", err);
    return spec;
}

/* The ordinary path with `parallel` off: cells from query_count_run
 * (exact: min_cell 1, rounding 1); with want_persons, its person ids. */
static outcome run_plain(const char *json, bool want_persons)
{
    Sdefed__QuerySpec *spec = parse(json);
    char reason[256] = "";
    agent_dataset ds = cfg.datasets[0];
    ds.parallel = 0;
    disc_policy policy = cfg.policy;
    policy.min_cell = 1;
    policy.rounding = 1;
    query_ctx q = { .cfg = &cfg, .policy = &policy, .reason = reason,
                    .reason_len = sizeof reason, .want_persons = want_persons,
                    .deadline_unix_ms = now_ms() + 60000 };
    outcome o = { 0 };
    Sdefed__QueryResult res = SDEFED__QUERY_RESULT__INIT;
    o.rc = query_count_run(&q, &ds, spec, &res);
    assert_true(res.n_cells <= sizeof o.counts / sizeof o.counts[0]);
    o.n_cells = res.n_cells;
    for (size_t k = 0; k < res.n_cells; k++) {
        o.counts[k] = res.cells[k]->value;
        sdefed__cell__free_unpacked(res.cells[k], NULL);
    }
    free(res.cells);
    o.persons = q.persons;
    o.n_persons = q.n_persons;
    sdefed__query_spec__free_unpacked(spec, NULL);
    return o;
}

/* count_split_run itself with `parallel` = parts and persons wanted. */
static outcome run_parts(const char *json, unsigned parts, uint64_t deadline)
{
    Sdefed__QuerySpec *spec = parse(json);
    char reason[256] = "";
    agent_dataset ds = cfg.datasets[0];
    ds.parallel = parts;
    ds.parallel_min_rows = 1;
    disc_policy policy = cfg.policy;
    query_ctx q = { .cfg = &cfg, .policy = &policy, .reason = reason,
                    .reason_len = sizeof reason, .want_persons = true,
                    .deadline_unix_ms = deadline };
    outcome o = { 0 };
    db_conn *db = NULL;
    cohort_plan cp;
    memset(&cp, 0, sizeof cp);
    o.rc = db_open(&ds, deadline, NULL, &db);
    if (o.rc == 0)
        o.rc = cohort_plan_init(&q, db, &ds, spec, &cp);
    if (o.rc == 0) {
        o.n_cells = cp.n_cells;
        assert_true(o.n_cells <= sizeof o.counts / sizeof o.counts[0]);
        o.rc = count_split_run(&q, &ds, db, &cp, o.counts, &o.parts);
    }
    o.persons = q.persons;
    o.n_persons = q.n_persons;
    cohort_plan_free(&cp);
    db_close(db);
    sdefed__query_spec__free_unpacked(spec, NULL);
    return o;
}

/* Splits into 2, 3, 7 and 16 parts (where the plan can be split; else one
 * statement) give the cells of the plain count statement and the person
 * ids of the ordinary path. */
static void check_split(const char *json, bool splittable)
{
    outcome cells = run_plain(json, false);
    outcome persons = run_plain(json, true);
    assert_int_equal(cells.rc, 0);
    assert_int_equal(persons.rc, 0);
    static const unsigned parts[] = { 2, 3, 7, 16 };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        outcome s = run_parts(json, parts[i], now_ms() + 60000);
        assert_int_equal(s.rc, 0);
        assert_int_equal(s.parts, splittable ? parts[i] : 1);
        assert_int_equal(s.n_cells, cells.n_cells);
        for (size_t k = 0; k < cells.n_cells; k++)
            if (s.counts[k] != cells.counts[k])
                fail_msg("%u parts, cell %zu: %lld, count statement %lld", parts[i], k,
                         (long long)s.counts[k], (long long)cells.counts[k]);
        assert_int_equal(s.n_persons, persons.n_persons);
        if (persons.n_persons)
            assert_memory_equal(s.persons, persons.persons,
                                persons.n_persons * sizeof *persons.persons);
        free(s.persons);
    }
    free(persons.persons);
}

/* A cohort that reads an index day is not this path's: declined. */
static void check_declined(const char *json)
{
    outcome s = run_parts(json, 4, now_ms() + 60000);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.parts, 0);
    assert_null(s.persons);
}

#define SPEC(COHORT, BY)                                                              \
    "{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":" COHORT  \
    BY "}"

static void test_plain_and_by_person_attributes(void **state)
{
    (void)state;
    check_split(SPEC("{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true}]}",
                     ""), true);
    check_split(SPEC("{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true}]}",
                     ",\"by\":[\"sex\",\"race\"]"), true);
    check_split(SPEC("{\"index\":{\"domain\":\"measurement\",\"concepts\":[5001],"
                     "\"event\":\"all\"},\"sex\":[\"female\",\"unknown\"]}",
                     ",\"by\":[\"ethnicity\"]"), true);
}

static void test_criteria_checked_per_person(void **state)
{
    (void)state;
    /* no index, nothing required: every person is a row (person split) */
    check_split(SPEC("{\"all\":[{\"not\":{\"domain\":\"drug\",\"concepts\":[3001]}}]}",
                     ",\"by\":[\"sex\"]"), true);
    /* (bleed OR death) AND NOT 3001: no index, no driver */
    check_split(SPEC("{\"all\":[{\"any\":[{\"domain\":\"condition\",\"concepts\":[2001],"
                     "\"descendants\":true},{\"domain\":\"death\",\"concepts\":[6001]}]},"
                     "{\"not\":{\"domain\":\"drug\",\"concepts\":[3001]}}]}", ""), true);
}

static void test_not_split_when_it_cannot_be(void **state)
{
    (void)state;
    /* an index day is needed (windows, age bands): not this path at all */
    check_declined(SPEC("{\"index\":{\"domain\":\"drug\",\"concepts\":[1001]},\"all\":["
                        "{\"domain\":\"condition\",\"concepts\":[2001],"
                        "\"window\":{\"start_days\":0,\"end_days\":365}}]}", ""));
    check_declined(SPEC("{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001]}]}",
                        ",\"by\":[\"age_band\"]"));
    /* the first criterion (the index) is read per person, the second
     * (smallest) drives: splittable; a third of similar size is a person
     * set built once over its whole table: one statement */
    check_split(SPEC("{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true},"
                     "{\"domain\":\"condition\",\"concepts\":[2001],\"descendants\":true}]}",
                     ""), true);
    check_split(SPEC("{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true},"
                     "{\"domain\":\"condition\",\"concepts\":[2001],\"descendants\":true},"
                     "{\"domain\":\"measurement\",\"concepts\":[5001]}]}", ""), false);
    /* a first_only criterion's first days are a set built over its table */
    check_split(SPEC("{\"index\":{\"domain\":\"measurement\",\"concepts\":[5001]},\"all\":["
                     "{\"domain\":\"drug\",\"concepts\":[1001],\"first_only\":true}]}",
                     ""), false);
}

static void test_empty_cohort(void **state)
{
    (void)state;
    check_split(SPEC("{\"all\":[{\"domain\":\"measurement\",\"concepts\":[5001],"
                     "\"value\":{\"min\":1000}}]}", ",\"by\":[\"sex\"]"), true);
}

static void test_deadline(void **state)
{
    (void)state;
    /* planned before the deadline, run after it: a timeout, no persons */
    Sdefed__QuerySpec *spec = NULL;
    char err[256], reason[256] = "";
    const char *json =
        SPEC("{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true}]}", "");
    assert_int_equal(spec_parse_json(json, strlen(json), &spec, err, sizeof err), 0);
    agent_dataset ds = cfg.datasets[0];
    ds.parallel = 4;
    ds.parallel_min_rows = 1;
    disc_policy policy = cfg.policy;
    uint64_t deadline = now_ms() + 300;
    query_ctx q = { .cfg = &cfg, .policy = &policy, .reason = reason,
                    .reason_len = sizeof reason, .want_persons = true,
                    .deadline_unix_ms = deadline };
    db_conn *db = NULL;
    cohort_plan cp;
    assert_int_equal(db_open(&ds, deadline, NULL, &db), 0);
    assert_int_equal(cohort_plan_init(&q, db, &ds, spec, &cp), 0);
    while (now_ms() <= deadline + 5)
        usleep(10000);
    int64_t counts[8] = { 0 };
    size_t parts = 0;
    assert_int_equal(count_split_run(&q, &ds, db, &cp, counts, &parts), SDF_ETIMEOUT);
    assert_null(q.persons);
    cohort_plan_free(&cp);
    db_close(db);
    sdefed__query_spec__free_unpacked(spec, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_and_by_person_attributes),
        cmocka_unit_test(test_criteria_checked_per_person),
        cmocka_unit_test(test_not_split_when_it_cannot_be),
        cmocka_unit_test(test_empty_cohort),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, setup_shuffled, teardown);
}
