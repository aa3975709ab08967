/* tests/unit/agent/test_alloc_fail.c — every allocation on the query path fails in turn.
 *
 * This test binary interposes malloc/calloc/realloc (glibc lets an
 * executable do that) with a countdown: for N = 1, 2, ... the Nth
 * allocation after arming fails. For each N it runs a real query through
 * query_run() and asserts the agent copes: either no result (out of
 * memory) or a well-formed result whose status is ok with exactly the
 * baseline cells, or error/refused with a reason — never a crash, never a
 * half-filled "ok", and no allocation left behind (live-block count back
 * to where it was). It also tortures spec_parse_json the same way.
 * Under AddressSanitizer (which owns malloc) the test skips.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "db.h"
#include "query.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

#include "alloc_fail.h"

static char tmpdir[256];
static agent_config cfg;

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql: %s", err);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdefed-allocfail-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    memset(&cfg, 0, sizeof cfg);
    disc_policy_default(&cfg.policy);
    snprintf(cfg.site_id, sizeof cfg.site_id, "site-a");
    cfg.n_datasets = 1;
    snprintf(cfg.datasets[0].name, sizeof cfg.datasets[0].name, "omop");
    snprintf(cfg.datasets[0].type, sizeof cfg.datasets[0].type, "omop");
    snprintf(cfg.datasets[0].backend, sizeof cfg.datasets[0].backend, "sqlite");
    snprintf(cfg.datasets[0].path, sizeof cfg.datasets[0].path, "%s/omop.sqlite", tmpdir);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(cfg.datasets[0].path, &db), SQLITE_OK);
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
             "INSERT INTO concept VALUES(1001,'drug'),(1002,'drug child'),(2001,'cond');"
             "INSERT INTO concept_ancestor VALUES(1001,1001,0,0),(1001,1002,1,1),(2001,2001,0,0);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)"
             " INSERT INTO person SELECT i, CASE i%2 WHEN 0 THEN 8532 ELSE 8507 END,"
             " 1930 + i%70, 0, 0 FROM n;"
             "INSERT INTO observation_period SELECT person_id, person_id, '2000-01-01',"
             " '2020-12-31' FROM person;"
             "INSERT INTO drug_exposure SELECT person_id, person_id,"
             " CASE person_id%3 WHEN 0 THEN 1002 ELSE 1001 END, '2010-05-01' FROM person"
             " WHERE person_id % 4 != 0;"
             "INSERT INTO condition_occurrence SELECT person_id, person_id, 2001, '2012-01-01'"
             " FROM person WHERE person_id % 5 = 0;");
    sqlite3_close(db);
    log_set_level(SDF_LOG_ERROR);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *count_json =
    "{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\","
    "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001],\"descendants\":true},"
    "{\"domain\":\"condition\",\"concepts\":[2001]}]},\"by\":[\"sex\",\"age_band\"]}";

#ifndef UNDER_ASAN
static Sdefed__QuerySpec *parse(const char *json)
{
    Sdefed__QuerySpec *s = NULL;
    char err[256];
    assert_int_equal(spec_parse_json(json, strlen(json), &s, err, sizeof err), 0);
    return s;
}

static Sdefed__QueryResult *run(Sdefed__QuerySpec *spec)
{
    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    req.query_id = (char *)"q-alloc";
    req.project_id = (char *)"demo";
    req.requester = (char *)"analyst";
    req.deadline_unix_ms = 0;
    req.spec = spec;
    Sdefed__QueryResult *r = query_run(&cfg, &req, NULL);
    /* Dataset connections are pooled (db_sqlite.c): close the idle one so
     * every run opens the dataset afresh (its allocations are tortured too)
     * and leaves nothing allocated behind. */
    db_sqlite_pool_drain();
    return r;
}

#endif

#ifndef UNDER_ASAN
/* What a failed result must not carry. */
static size_t result_cells(const Sdefed__QueryResult *r)
{
    return r->n_cells;
}
#endif

static void torture_query(const char *json)
{
#ifdef UNDER_ASAN
    (void)json;
    skip();
#else
    Sdefed__QuerySpec *spec = parse(json);
    /* Baseline (also warms SQLite's one-time global state). */
    Sdefed__QueryResult *base = run(spec);
    assert_non_null(base);
    assert_int_equal(base->status, SDEFED__SITE_STATUS__SITE_OK);
    size_t base_len;
    uint8_t *base_bytes = alloc_fail_pack(base, &base_len);
    query_result_free(base);

    long survived = alloc_fail_torture(run, spec, base_bytes, base_len, result_cells);
    print_message("query survived %ld allocation failures\n", survived);
    __libc_free(base_bytes);
    sdefed__query_spec__free_unpacked(spec, NULL);
#endif
}

static void count_survives_every_allocation_failure(void **state)
{
    (void)state;
    torture_query(count_json);
}

/* The same with the count split over row ranges (query_count_split.c):
 * its parts allocate on their own threads and connections. */
static void split_count_survives_every_allocation_failure(void **state)
{
    (void)state;
    cfg.datasets[0].parallel = 3;
    cfg.datasets[0].parallel_min_rows = 1;
    torture_query("{\"kind\":\"count\",\"project\":\"demo\",\"dataset\":\"omop\","
                  "\"cohort\":{\"all\":[{\"domain\":\"drug\",\"concepts\":[1001],"
                  "\"descendants\":true}]},\"by\":[\"sex\"]}");
    cfg.datasets[0].parallel = 0;
}

static void catalog_survives_every_allocation_failure(void **state)
{
    (void)state;
    torture_query("{\"kind\":\"catalog\",\"project\":\"demo\"}");
}

static void spec_parser_survives_every_allocation_failure(void **state)
{
    (void)state;
#ifdef UNDER_ASAN
    skip();
#else
    int completed = 0;
    for (long n = 0; n < 100000 && !completed; n++) {
        long before = atomic_load(&live);
        atomic_store(&failures, 0);
        atomic_store(&countdown, n);
        Sdefed__QuerySpec *s = NULL;
        char err[256] = "";
        int rc = spec_parse_json(count_json, strlen(count_json), &s, err, sizeof err);
        atomic_store(&countdown, -1);
        completed = atomic_load(&failures) == 0;
        if (rc == 0) {
            assert_non_null(s);
            sdefed__query_spec__free_unpacked(s, NULL);
        } else {
            assert_null(s);
            assert_true(rc == SDF_ENOMEM || rc == SDF_ESPEC);
            assert_true(err[0] != '\0');
        }
        if (atomic_load(&live) != before)
            fail_msg("spec parse with allocation %ld failing leaked", n);
    }
    assert_true(completed);
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(count_survives_every_allocation_failure),
        cmocka_unit_test(split_count_survives_every_allocation_failure),
        cmocka_unit_test(catalog_survives_every_allocation_failure),
        cmocka_unit_test(spec_parser_survives_every_allocation_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
