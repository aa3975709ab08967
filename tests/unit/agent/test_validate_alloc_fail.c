/* tests/unit/agent/test_validate_alloc_fail.c — the validate path under allocation failure.
 *
 * The same torture as test_alloc_fail.c (malloc/calloc/realloc interposed
 * with a countdown: for N = 1, 2, ... the Nth allocation after arming
 * fails), over a `validate` query with thresholds, bins and a `by` column,
 * and one whose outcome comes from an OMOP criterion: every run either
 * gives no result, the baseline answer byte for byte, or error/refused with
 * a reason and no validations; never a crash or a leaked block. Skips
 * under AddressSanitizer (which owns malloc). Issue 5 items 3/4: also a
 * query with quantile bins, a score histogram and OMOP sex/age subgroups,
 * and one comparing two model versions (table preds2). Every run drains
 * the SQLite connection pool, so that a pooled connection closed by a
 * failing run does not look like a block freed twice.
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
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdefed-vallocfail-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    memset(&cfg, 0, sizeof cfg);
    disc_policy_default(&cfg.policy);
    snprintf(cfg.site_id, sizeof cfg.site_id, "site-a");
    cfg.n_datasets = 3;
    agent_dataset *o = &cfg.datasets[0], *p = &cfg.datasets[1];
    snprintf(o->name, sizeof o->name, "omop");
    snprintf(o->type, sizeof o->type, "omop");
    snprintf(o->backend, sizeof o->backend, "sqlite");
    snprintf(o->path, sizeof o->path, "%s/db.sqlite", tmpdir);
    snprintf(p->name, sizeof p->name, "preds");
    snprintf(p->type, sizeof p->type, "table");
    snprintf(p->backend, sizeof p->backend, "sqlite");
    snprintf(p->path, sizeof p->path, "%s/db.sqlite", tmpdir);
    snprintf(p->table, sizeof p->table, "preds");
    const char *names[] = { "pid", "score", "y", "d", "sex" };
    agent_column_role roles[] = { AGENT_COL_IDENTIFIER, AGENT_COL_SCORE, AGENT_COL_LABEL,
                                  AGENT_COL_DATE, AGENT_COL_CATEGORY };
    for (size_t k = 0; k < 5; k++) {
        snprintf(p->columns[k].name, sizeof p->columns[k].name, "%s", names[k]);
        p->columns[k].role = roles[k];
    }
    p->n_columns = 5;
    agent_dataset *p2 = &cfg.datasets[2];   /* issue 5 items 3/4: two model versions */
    *p2 = *p;
    snprintf(p2->name, sizeof p2->name, "preds2");
    snprintf(p2->table, sizeof p2->table, "preds2");
    snprintf(p2->columns[5].name, sizeof p2->columns[5].name, "mv");
    p2->columns[5].role = AGENT_COL_MODEL_VERSION;
    p2->n_columns = 6;

    sqlite3 *db;
    assert_int_equal(sqlite3_open(o->path, &db), SQLITE_OK);
    exec_sql(db,
             "CREATE TABLE condition_occurrence(condition_occurrence_id INTEGER,"
             " person_id INTEGER, condition_concept_id INTEGER, condition_start_date TEXT);"
             "CREATE TABLE concept_ancestor(ancestor_concept_id INTEGER,"
             " descendant_concept_id INTEGER);"
             "INSERT INTO concept_ancestor VALUES(2001,2001),(2001,2002);"
             "CREATE TABLE preds(pid INTEGER, score REAL, y INTEGER, d TEXT, sex TEXT);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 160)"
             " INSERT INTO preds SELECT i, (i % 97) / 97.0, (i % 3 = 0 OR i % 97 > 80),"
             " '2015-01-01', CASE i % 2 WHEN 0 THEN 'female' ELSE 'male' END FROM n;"
             "INSERT INTO condition_occurrence SELECT pid, pid,"
             " CASE pid % 2 WHEN 0 THEN 2001 ELSE 2002 END, '2015-06-01' FROM preds"
             " WHERE pid % 3 = 0 OR pid % 97 > 70;"
             "CREATE TABLE person(person_id INTEGER, gender_concept_id INTEGER,"
             " year_of_birth INTEGER, month_of_birth INTEGER, day_of_birth INTEGER);"
             "INSERT INTO person SELECT pid, CASE pid % 2 WHEN 0 THEN 8532 ELSE 8507 END,"
             " 1940 + pid % 60, 1 + pid % 12, 1 + pid % 28 FROM preds WHERE pid % 10 <> 0;"
             "CREATE TABLE preds2 AS SELECT pid, score, y, d, sex, 'a' AS mv FROM preds;"
             "INSERT INTO preds2 SELECT pid, (pid % 89) / 89.0, y, d, sex, 'b' FROM preds;");
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
    req.spec = spec;
    Sdefed__QueryResult *r = query_run(&cfg, &req, NULL);
    db_sqlite_pool_drain();   /* no pooled connection outlives the run */
    return r;
}

#endif

#ifndef UNDER_ASAN
/* What a failed result must not carry. */
static size_t result_validations(const Sdefed__QueryResult *r)
{
    return r->n_validations;
}
#endif

static void torture_query(const char *json)
{
#ifdef UNDER_ASAN
    (void)json;
    skip();
#else
    Sdefed__QuerySpec *spec = parse(json);
    Sdefed__QueryResult *base = run(spec);
    assert_non_null(base);
    if (base->status != SDEFED__SITE_STATUS__SITE_OK)
        fail_msg("baseline: %s", base->reason);
    assert_true(base->n_validations >= 1);
    assert_true(base->validations[0]->released);
    size_t base_len;
    uint8_t *base_bytes = alloc_fail_pack(base, &base_len);
    query_result_free(base);

    long survived = alloc_fail_torture(run, spec, base_bytes, base_len, result_validations);
    print_message("validate survived %ld allocation failures\n", survived);
    __libc_free(base_bytes);
    sdefed__query_spec__free_unpacked(spec, NULL);
#endif
}

static void label_survives_every_allocation_failure(void **state)
{
    (void)state;
    torture_query("{\"kind\":\"validate\",\"project\":\"demo\",\"dataset\":\"preds\","
                  "\"validate\":{\"thresholds\":[0.2,0.6],\"bins\":4,\"by\":[\"sex\"]}}");
}

static void omop_outcome_survives_every_allocation_failure(void **state)
{
    (void)state;
    torture_query("{\"kind\":\"validate\",\"project\":\"demo\",\"dataset\":\"preds\","
                  "\"validate\":{\"thresholds\":[0.5],\"outcome\":{\"dataset\":\"omop\","
                  "\"criterion\":{\"domain\":\"condition\",\"concepts\":[2001],"
                  "\"descendants\":true},\"window_days\":[0,365]}}}");
}

static void histogram_quantile_subgroups_survive_every_allocation_failure(void **state)
{
    (void)state;
    torture_query("{\"kind\":\"validate\",\"project\":\"demo\",\"dataset\":\"preds\","
                  "\"validate\":{\"thresholds\":[0.3],\"bin_mode\":\"quantile\",\"bins\":5,"
                  "\"histogram_bins\":20,\"by\":[\"sex\",\"age_band\"],"
                  "\"subgroups_from\":\"omop\"}}");
}

static void comparison_survives_every_allocation_failure(void **state)
{
    (void)state;
    torture_query("{\"kind\":\"validate\",\"project\":\"demo\",\"dataset\":\"preds2\","
                  "\"validate\":{\"thresholds\":[0.4],\"compare_versions\":[\"a\",\"b\"],"
                  "\"by\":[\"sex\"]}}");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(label_survives_every_allocation_failure),
        cmocka_unit_test(omop_outcome_survives_every_allocation_failure),
        cmocka_unit_test(histogram_quantile_subgroups_survive_every_allocation_failure),
        cmocka_unit_test(comparison_survives_every_allocation_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
