/* tests/unit/agent/test_gibleed.c — count and catalog over OHDSI's Eunomia GiBleed.
 *
 * When the shared data is present (../shared/data, or $SDEFED_SHARED_DATA),
 * the GiBleed OMOP CDM 5.3 database is decompressed once into the build
 * directory and query_run() is checked against plain, independent SQL over
 * the same file (after applying the disclosure rules to the plain answer),
 * and against the published reference figures. A user's clone has no
 * shared data: the tests then skip, saying why.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "query.h"
#include "sdefed/log.h"

static char xz_path[1024];
static char db_path[1024];
static bool present;
static agent_config cfg;
static sqlite3 *plain;   /* the independent reference connection */

static int decompress(const char *src, const char *dst)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dst, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        return -1;
    }
    if (pid == 0) {
        dup2(fd, STDOUT_FILENO);
        execlp("xz", "xz", "-dk", "-c", src, (char *)NULL);
        _exit(127);
    }
    close(fd);
    int st;
    if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, dst) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    (void)state;
    log_set_level(SDF_LOG_WARN);
    const char *data = getenv("SDEFED_SHARED_DATA");
    snprintf(xz_path, sizeof xz_path, "%s/gibleed/gibleed_cdm53.sqlite.xz",
             data && *data ? data : "../shared/data");
    if (access(xz_path, R_OK) != 0) {
        present = false;
        return 0;
    }
    present = true;
    const char *build = getenv("BUILD");
    char dir[900];
    snprintf(dir, sizeof dir, "%s/data", build && *build ? build : "build");
    mkdir(dir, 0755);   /* parent exists: the test binary lives under it */
    snprintf(db_path, sizeof db_path, "%s/gibleed_cdm53.sqlite", dir);
    if (access(db_path, R_OK) != 0 && decompress(xz_path, db_path) != 0) {
        fprintf(stderr, "cannot decompress %s into %s\n", xz_path, db_path);
        return -1;
    }
    if (sqlite3_open_v2(db_path, &plain, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -1;

    memset(&cfg, 0, sizeof cfg);
    disc_policy_default(&cfg.policy);
    agent_dataset *d = &cfg.datasets[0];
    snprintf(d->name, sizeof d->name, "omop");
    snprintf(d->type, sizeof d->type, "omop");
    snprintf(d->backend, sizeof d->backend, "sqlite");
    snprintf(d->path, sizeof d->path, "%s", db_path);
    cfg.n_datasets = 1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (plain)
        sqlite3_close(plain);
    return 0;
}

static void skip_if_absent(void)
{
    if (!present) {
        print_message("SKIP: ../shared/data/gibleed not present (user clone)\n");
        skip();
    }
}

/* One integer from independent SQL with one bound integer parameter. */
static int64_t plain_int(const char *sql, int64_t param)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(plain, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_bind_parameter_count(st) > 0)
        sqlite3_bind_int64(st, 1, param);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static const char *drug_desc_sql =
    "SELECT COUNT(DISTINCT person_id) FROM drug_exposure WHERE drug_concept_id = ?1"
    " OR drug_concept_id IN (SELECT descendant_concept_id FROM concept_ancestor"
    " WHERE ancestor_concept_id = ?1)";
static const char *cond_desc_sql =
    "SELECT COUNT(DISTINCT person_id) FROM condition_occurrence WHERE condition_concept_id = ?1"
    " OR condition_concept_id IN (SELECT descendant_concept_id FROM concept_ancestor"
    " WHERE ancestor_concept_id = ?1)";

static Sdefed__QueryResult *count_one(Sdefed__Domain dom, int64_t concept, bool desc,
                                      Sdefed__Stratifier by)
{
    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    Sdefed__QuerySpec spec = SDEFED__QUERY_SPEC__INIT;
    Sdefed__Cohort cohort = SDEFED__COHORT__INIT;
    Sdefed__Criterion crit = SDEFED__CRITERION__INIT;
    Sdefed__Criterion *critp = &crit;
    int64_t concepts[1] = { concept };
    Sdefed__Stratifier bys[1] = { by };
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    req.query_id = "gibleed";
    req.deadline_unix_ms = (uint64_t)ts.tv_sec * 1000u + 60000u;
    req.spec = &spec;
    spec.kind = SDEFED__QUERY_KIND__KIND_COUNT;
    spec.project = "demo";
    spec.dataset = "omop";
    spec.cohort = &cohort;
    cohort.n_all = 1;
    cohort.all = &critp;
    crit.domain = dom;
    crit.concepts = concepts;
    crit.n_concepts = 1;
    crit.descendants = desc;
    if (by != SDEFED__STRATIFIER__STRAT_UNSPECIFIED) {
        spec.n_by = 1;
        spec.by = bys;
    }
    Sdefed__QueryResult *r = query_run(&cfg, &req, NULL);
    assert_non_null(r);
    if (r->status != SDEFED__SITE_STATUS__SITE_OK)
        fprintf(stderr, "status %d: %s\n", (int)r->status, r->reason);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_OK);
    return r;
}

static int64_t released(int64_t true_count)
{
    return disc_count(&cfg.policy, true_count, NULL).value;
}

static void check_single(Sdefed__Domain dom, int64_t concept, const char *plain_sql,
                         int64_t published, int64_t published_rounded)
{
    int64_t truth = plain_int(plain_sql, concept);
    assert_int_equal(truth, published);
    assert_int_equal(released(truth), published_rounded);
    Sdefed__QueryResult *r = count_one(dom, concept, true, SDEFED__STRATIFIER__STRAT_UNSPECIFIED);
    assert_int_equal(r->n_cells, 1);
    assert_int_equal(r->cells[0]->value, released(truth));
    assert_int_equal(r->cells[0]->value, published_rounded);
    assert_int_equal(r->cells[0]->status, SDEFED__CELL_STATUS__CELL_ROUNDED);
    query_result_free(r);
}

static void test_celecoxib(void **state)
{
    (void)state;
    skip_if_absent();
    check_single(SDEFED__DOMAIN__DOMAIN_DRUG, 1118084, drug_desc_sql, 1844, 1845);
}

static void test_diclofenac(void **state)
{
    (void)state;
    skip_if_absent();
    check_single(SDEFED__DOMAIN__DOMAIN_DRUG, 1124300, drug_desc_sql, 850, 850);
    /* without descendants: plain SQL on the concept alone */
    int64_t truth = plain_int("SELECT COUNT(DISTINCT person_id) FROM drug_exposure "
                              "WHERE drug_concept_id = ?1", 1124300);
    Sdefed__QueryResult *r = count_one(SDEFED__DOMAIN__DOMAIN_DRUG, 1124300, false,
                                       SDEFED__STRATIFIER__STRAT_UNSPECIFIED);
    assert_int_equal(r->cells[0]->value, released(truth));
    query_result_free(r);
}

static void test_gi_bleed(void **state)
{
    (void)state;
    skip_if_absent();
    check_single(SDEFED__DOMAIN__DOMAIN_CONDITION, 192671, cond_desc_sql, 479, 480);
}

static void test_catalog_persons(void **state)
{
    (void)state;
    skip_if_absent();
    int64_t truth = plain_int("SELECT COUNT(*) FROM person", 0);
    assert_int_equal(truth, 2694);
    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    Sdefed__QuerySpec spec = SDEFED__QUERY_SPEC__INIT;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    req.query_id = "gibleed-cat";
    req.deadline_unix_ms = (uint64_t)ts.tv_sec * 1000u + 60000u;
    req.spec = &spec;
    spec.kind = SDEFED__QUERY_KIND__KIND_CATALOG;
    spec.project = "demo";
    Sdefed__QueryResult *r = query_run(&cfg, &req, NULL);
    assert_non_null(r);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_OK);
    assert_int_equal(r->n_catalog, 1);
    const Sdefed__DatasetInfo *d = r->catalog[0];
    assert_int_equal(d->person_count, released(truth));
    assert_int_equal(d->person_count, 2695);
    assert_int_equal(d->person_count_status, SDEFED__CELL_STATUS__CELL_ROUNDED);
    assert_string_equal(d->omop_version, "5.3");   /* cdm_source says v5.3.1 */
    /* freshness: independent SQL on the same column */
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(plain, "SELECT MAX(observation_period_end_date) "
                                               "FROM observation_period", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal(d->data_freshness, (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    bool drug = false, cond = false;
    for (size_t k = 0; k < d->n_domains; k++) {
        drug |= strcmp(d->domains[k], "drug") == 0;
        cond |= strcmp(d->domains[k], "condition") == 0;
    }
    assert_true(drug && cond);
    query_result_free(r);
}

/* Strata against independent SQL: sex, and age band at the earliest
 * celecoxib exposure. */
static void test_celecoxib_strata(void **state)
{
    (void)state;
    skip_if_absent();
    Sdefed__QueryResult *r = count_one(SDEFED__DOMAIN__DOMAIN_DRUG, 1118084, true,
                                       SDEFED__STRATIFIER__STRAT_SEX);
    assert_int_equal(r->n_cells, 3);
    for (size_t k = 0; k < r->n_cells; k++) {
        const char *sex = r->cells[k]->strata[0]->value;
        int64_t truth = plain_int(
            "SELECT COUNT(*) FROM person p WHERE p.person_id IN (SELECT person_id FROM"
            " drug_exposure WHERE drug_concept_id IN (SELECT descendant_concept_id FROM"
            " concept_ancestor WHERE ancestor_concept_id = 1118084) OR drug_concept_id = 1118084)"
            " AND (CASE p.gender_concept_id WHEN 8507 THEN 1 WHEN 8532 THEN 2 ELSE 0 END) = ?1",
            strcmp(sex, "male") == 0 ? 1 : strcmp(sex, "female") == 0 ? 2 : 0);
        disc_value v = disc_count(&cfg.policy, truth, NULL);
        assert_int_equal(r->cells[k]->value, v.status == DISC_SUPPRESSED ? 0 : v.value);
    }
    query_result_free(r);

    r = count_one(SDEFED__DOMAIN__DOMAIN_DRUG, 1118084, true,
                  SDEFED__STRATIFIER__STRAT_AGE_BAND);
    assert_int_equal(r->n_cells, 11);
    int64_t total = 0;
    for (size_t k = 0; k < r->n_cells; k++) {
        const char *band = r->cells[k]->strata[0]->value;
        int64_t lo = strcmp(band, "unknown") == 0 ? -1 : atoi(band);
        int64_t truth = plain_int(
            "SELECT COUNT(*) FROM (SELECT e.person_id, MIN(e.drug_exposure_start_date) AS d"
            " FROM drug_exposure e WHERE e.drug_concept_id IN (SELECT descendant_concept_id"
            " FROM concept_ancestor WHERE ancestor_concept_id = 1118084) OR e.drug_concept_id ="
            " 1118084 GROUP BY e.person_id) x JOIN person p ON p.person_id = x.person_id"
            " WHERE (CASE WHEN CAST(substr(x.d, 1, 4) AS INTEGER) - p.year_of_birth < 0 THEN -1"
            " WHEN CAST(substr(x.d, 1, 4) AS INTEGER) - p.year_of_birth >= 90 THEN 90"
            " ELSE (CAST(substr(x.d, 1, 4) AS INTEGER) - p.year_of_birth) / 10 * 10 END) = ?1",
            lo);
        total += truth;
        disc_value v = disc_count(&cfg.policy, truth, NULL);
        assert_int_equal(r->cells[k]->value, v.status == DISC_SUPPRESSED ? 0 : v.value);
    }
    assert_int_equal(total, 1844);
    query_result_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_celecoxib),
        cmocka_unit_test(test_diclofenac),
        cmocka_unit_test(test_gi_bleed),
        cmocka_unit_test(test_catalog_persons),
        cmocka_unit_test(test_celecoxib_strata),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
