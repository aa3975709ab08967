/* tests/unit/agent/test_count_persons.c — the counts and the cohort's person ids from one statement.
 *
 * With differencing on, query_count_run() returns the cells AND the cohort's
 * distinct person ids, ascending (query_count.c runs the count SELECT and the
 * person ids UNION ALL'ed over one materialised cohort). These tests compare
 * both against the same query with want_persons off (the cells must be
 * byte-identical) and against the person ids computed independently with
 * plain SQL over the fixture, with and without stratifiers, for a cohort that
 * is empty, and for a cohort whose index criterion has several events per
 * person (each person must appear once).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "db.h"
#include "disclosure/disclosure.h"
#include "query_internal.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

static char tmpdir[128];
static agent_config cfg;

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql: %s", err);
}

static int setup(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdefed-persons-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    memset(&cfg, 0, sizeof cfg);
    disc_policy_default(&cfg.policy);
    cfg.n_datasets = 1;
    agent_dataset *ds = &cfg.datasets[0];
    snprintf(ds->name, sizeof ds->name, "omop");
    snprintf(ds->type, sizeof ds->type, "omop");
    snprintf(ds->backend, sizeof ds->backend, "sqlite");
    snprintf(ds->path, sizeof ds->path, "%s/omop.sqlite", tmpdir);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(ds->path, &db), SQLITE_OK);
    exec_sql(db,
             "CREATE TABLE person(person_id INTEGER PRIMARY KEY, gender_concept_id INTEGER,"
             " year_of_birth INTEGER, race_concept_id INTEGER, ethnicity_concept_id INTEGER);"
             "CREATE TABLE observation_period(observation_period_id INTEGER, person_id INTEGER,"
             " observation_period_start_date TEXT, observation_period_end_date TEXT);"
             "CREATE TABLE drug_exposure(drug_exposure_id INTEGER, person_id INTEGER,"
             " drug_concept_id INTEGER, drug_exposure_start_date TEXT);"
             "CREATE TABLE condition_occurrence(condition_occurrence_id INTEGER, person_id INTEGER,"
             " condition_concept_id INTEGER, condition_start_date TEXT);"
             "CREATE TABLE concept(concept_id INTEGER PRIMARY KEY, concept_name TEXT);"
             "CREATE TABLE concept_ancestor(ancestor_concept_id INTEGER,"
             " descendant_concept_id INTEGER, min_levels_of_separation INTEGER,"
             " max_levels_of_separation INTEGER);"
             "CREATE TABLE cdm_source(cdm_source_name TEXT, cdm_version TEXT);"
             "INSERT INTO cdm_source VALUES('t','v5.4');"
             "INSERT INTO concept VALUES(1001,'drug'),(1002,'drug child'),(2001,'cond'),"
             " (3001,'unused');"
             "INSERT INTO concept_ancestor VALUES(1001,1001,0,0),(1001,1002,1,1),(2001,2001,0,0);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)"
             " INSERT INTO person SELECT i * 7, CASE i%3 WHEN 0 THEN 8532 WHEN 1 THEN 8507"
             " ELSE 0 END, 1930 + i%70, 0, 0 FROM n;"
             "INSERT INTO observation_period SELECT person_id, person_id, '2000-01-01',"
             " '2020-12-31' FROM person;"
             /* two or three drug events per drug user: duplicates must collapse */
             "INSERT INTO drug_exposure SELECT person_id, person_id,"
             " CASE person_id%3 WHEN 0 THEN 1002 ELSE 1001 END, '2010-05-01' FROM person"
             " WHERE person_id % 4 != 0;"
             "INSERT INTO drug_exposure SELECT person_id + 100000, person_id, 1001, '2011-02-03'"
             " FROM person WHERE person_id % 4 != 0;"
             "INSERT INTO drug_exposure SELECT person_id + 200000, person_id, 1002, '2009-07-08'"
             " FROM person WHERE person_id % 6 = 1;"
             "INSERT INTO condition_occurrence SELECT person_id, person_id, 2001, '2012-01-01'"
             " FROM person WHERE person_id % 5 = 0;");
    sqlite3_close(db);
    log_set_level(SDF_LOG_WARN);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    db_sqlite_pool_drain();
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Person ids from plain SQL over the fixture (ascending). */
static size_t expected_ids(const char *where, int64_t *out, size_t cap)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    char sql[512];
    size_t n = 0;
    assert_int_equal(sqlite3_open_v2(cfg.datasets[0].path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    snprintf(sql, sizeof sql, "SELECT person_id FROM person WHERE %s ORDER BY person_id", where);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        assert_true(n < cap);
        out[n++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static uint8_t *pack_cells(const Sdefed__QueryResult *r, size_t *len)
{
    *len = sdefed__query_result__get_packed_size(r);
    uint8_t *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    sdefed__query_result__pack(r, b);
    return b;
}

/* Run spec with and without want_persons; the cells must be identical and
 * the person ids those `where` selects. */
static void check(const char *json, const char *where)
{
    Sdefed__QuerySpec *spec = NULL;
    char err[256];
    if (spec_parse_json(json, strlen(json), &spec, err, sizeof err) != 0)
        fail_msg("spec: %s", err);
    disc_policy policy = cfg.policy;
    char reason[256] = "";
    uint8_t *packed[2];
    size_t len[2];
    static int64_t want[1000];
    size_t n_want = expected_ids(where, want, 1000);

    for (int with = 0; with <= 1; with++) {
        query_ctx q = {
            .cfg = &cfg, .policy = &policy, .reason = reason, .reason_len = sizeof reason,
            .want_persons = with,
        };
        Sdefed__QueryResult res = SDEFED__QUERY_RESULT__INIT;
        int rc = query_count_run(&q, &cfg.datasets[0], spec, &res);
        if (rc != 0)
            fail_msg("query_count_run: %d (%s)", rc, reason);
        packed[with] = pack_cells(&res, &len[with]);
        for (size_t k = 0; k < res.n_cells; k++)
            sdefed__cell__free_unpacked(res.cells[k], NULL);
        free(res.cells);
        if (with) {
            assert_int_equal(q.n_persons, n_want);
            for (size_t k = 0; k < n_want; k++)
                if (q.persons[k] != want[k])
                    fail_msg("person %zu: got %lld, want %lld", k, (long long)q.persons[k],
                             (long long)want[k]);
        } else {
            assert_int_equal(q.n_persons, 0);
        }
        free(q.persons);
    }
    assert_int_equal(len[0], len[1]);
    assert_memory_equal(packed[0], packed[1], len[0]);
    free(packed[0]);
    free(packed[1]);
    sdefed__query_spec__free_unpacked(spec, NULL);
}

static void persons_without_strata(void **st)
{
    (void)st;
    check("{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
          "{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true}]}}",
          "person_id % 4 != 0");
}

static void persons_with_strata(void **st)
{
    (void)st;
    check("{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
          "{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true},"
          "{\"domain\":\"condition\",\"concepts\":[2001]}]},\"by\":[\"sex\",\"age_band\"]}",
          "person_id % 4 != 0 AND person_id % 5 = 0");
}

static void persons_of_an_empty_cohort(void **st)
{
    (void)st;
    check("{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
          "{\"domain\":\"drug\",\"concepts\":[1002]},"
          "{\"domain\":\"condition\",\"concepts\":[3001]}]},\"by\":[\"sex\"]}",
          "0");
}

static void persons_of_a_child_concept(void **st)
{
    (void)st;
    /* 1002 alone (no descendants): persons with id%3 == 0 or id%6 == 1 */
    check("{\"kind\":\"count\",\"project\":\"p\",\"dataset\":\"omop\",\"cohort\":{\"all\":["
          "{\"domain\":\"drug\",\"concepts\":[1002]}]},\"by\":[\"sex\"]}",
          "person_id % 4 != 0 AND person_id % 3 = 0 OR person_id % 6 = 1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(persons_without_strata),
        cmocka_unit_test(persons_with_strata),
        cmocka_unit_test(persons_of_an_empty_cohort),
        cmocka_unit_test(persons_of_a_child_concept),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
