/* tests/fuzz/fuzz_query.c — libFuzzer target: a QueryRequest through the agent.
 *
 * The input is a serialized QueryRequest, as the coordinator would send it.
 * It goes the whole way an agent takes it: protobuf unpack, spec_validate,
 * dataset and concept checks, the cohort compiler, SQL execution against a
 * small OMOP database (created once), the disclosure engine and result
 * building. Whatever the bytes, the agent must answer with a well-formed
 * result (or nothing, for bytes that are not a QueryRequest), and an "ok"
 * count must never carry a value in 1..min_cell-1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "query.h"
#include "sdefed/log.h"

static agent_config cfg;

static void setup(void)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sdefed-fuzz-query-%d", (int)getpid());
    mkdir(dir, 0700);
    disc_policy_default(&cfg.policy);
    cfg.policy.differencing = false;        /* keep each run independent */
    cfg.policy.max_identical = 1000000;
    snprintf(cfg.site_id, sizeof cfg.site_id, "site-f");
    snprintf(cfg.state_dir, sizeof cfg.state_dir, "%s/state", dir);
    mkdir(cfg.state_dir, 0700);
    cfg.n_datasets = 1;
    snprintf(cfg.datasets[0].name, sizeof cfg.datasets[0].name, "omop");
    snprintf(cfg.datasets[0].type, sizeof cfg.datasets[0].type, "omop");
    snprintf(cfg.datasets[0].backend, sizeof cfg.datasets[0].backend, "sqlite");
    snprintf(cfg.datasets[0].path, sizeof cfg.datasets[0].path, "%s/omop.sqlite", dir);
    unlink(cfg.datasets[0].path);
    sqlite3 *db;
    if (sqlite3_open(cfg.datasets[0].path, &db) != SQLITE_OK)
        abort();
    const char *sql =
        "CREATE TABLE person(person_id INTEGER PRIMARY KEY, gender_concept_id INTEGER,"
        " year_of_birth INTEGER, month_of_birth INTEGER, day_of_birth INTEGER,"
        " race_concept_id INTEGER, ethnicity_concept_id INTEGER, care_site_id INTEGER);"
        "CREATE TABLE observation_period(observation_period_id INTEGER, person_id INTEGER,"
        " observation_period_start_date TEXT, observation_period_end_date TEXT);"
        "CREATE TABLE drug_exposure(drug_exposure_id INTEGER, person_id INTEGER,"
        " drug_concept_id INTEGER, drug_exposure_start_date TEXT);"
        "CREATE TABLE condition_occurrence(condition_occurrence_id INTEGER, person_id INTEGER,"
        " condition_concept_id INTEGER, condition_start_date TEXT);"
        "CREATE TABLE measurement(measurement_id INTEGER, person_id INTEGER,"
        " measurement_concept_id INTEGER, measurement_date TEXT, value_as_number REAL,"
        " unit_concept_id INTEGER);"
        "CREATE TABLE death(person_id INTEGER, death_date TEXT, cause_concept_id INTEGER);"
        "CREATE TABLE concept(concept_id INTEGER PRIMARY KEY, concept_name TEXT);"
        "CREATE TABLE concept_ancestor(ancestor_concept_id INTEGER, descendant_concept_id INTEGER,"
        " min_levels_of_separation INTEGER, max_levels_of_separation INTEGER);"
        "CREATE TABLE cdm_source(cdm_source_name TEXT, cdm_version TEXT);"
        "INSERT INTO cdm_source VALUES('fuzz','v5.4');"
        "INSERT INTO concept VALUES(1,'a'),(2,'b'),(3,'c'),(4,'m');"
        "INSERT INTO concept_ancestor VALUES(1,1,0,0),(1,2,1,1),(2,2,0,0),(3,3,0,0),(4,4,0,0);"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 120)"
        " INSERT INTO person SELECT i, CASE i%3 WHEN 0 THEN 8532 WHEN 1 THEN 8507 ELSE 0 END,"
        " 1930 + i%80, 1, 1, 0, 0, i%4 FROM n;"
        "INSERT INTO observation_period SELECT person_id, person_id, '2000-01-01', '2020-12-31'"
        " FROM person;"
        "INSERT INTO drug_exposure SELECT person_id, person_id, 1 + person_id%2,"
        " printf('2010-%02d-01', 1 + person_id%12) FROM person;"
        "INSERT INTO condition_occurrence SELECT person_id, person_id, 3, '2012-01-01'"
        " FROM person WHERE person_id%3 = 0;"
        "INSERT INTO measurement SELECT person_id, person_id, 4, '2011-06-01',"
        " 5.0 + (person_id%40)/10.0, 8554 FROM person;";
    char *err = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "fuzz_query setup: %s\n", err);
        abort();
    }
    sqlite3_close(db);
    log_set_level(SDF_LOG_ERROR);
}

static uint64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg.n_datasets)
        setup();
    Sdefed__QueryRequest *req = sdefed__query_request__unpack(NULL, size, data);
    if (!req)
        return 0;
    req->deadline_unix_ms = now_ms() + 2000;   /* bound each run */
    Sdefed__QueryResult *r = query_run(&cfg, req, NULL);
    if (r) {
        if (!r->query_id)
            abort();
        if (r->status == SDEFED__SITE_STATUS__SITE_OK) {
            for (size_t i = 0; i < r->n_cells; i++) {
                const Sdefed__Cell *c = r->cells[i];
                if (c->status == SDEFED__CELL_STATUS__CELL_SUPPRESSED && c->value != 0)
                    abort();   /* a suppressed cell must carry no value */
                if (c->status != SDEFED__CELL_STATUS__CELL_SUPPRESSED && c->value > 0 &&
                    c->value < r->policy->min_cell)
                    abort();   /* a small count escaped */
            }
        } else if (!r->reason || !r->reason[0]) {
            abort();           /* every non-ok answer says why */
        }
        query_result_free(r);
    }
    sdefed__query_request__free_unpacked(req, NULL);
    return 0;
}
