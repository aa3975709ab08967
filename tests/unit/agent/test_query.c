/* tests/unit/agent/test_query.c — query_run() over a tiny hand-built OMOP DB.
 *
 * The fixture writes a small OMOP CDM database (person, observation_period,
 * drug_exposure, condition_occurrence, concept, concept_ancestor,
 * cdm_source) from a generator whose true answers the test computes in C,
 * independently of the SQL compiler. It checks counts with and without
 * descendants, intersections, strata (sex, age band at the FIRST
 * criterion's earliest event), suppression and rounding, policy merging,
 * refusals, deadlines and cancellation (on a large generated DB), and the
 * catalog.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "query.h"
#include "sdefed/log.h"

/* ---- the generator: persons 1..N_PERSONS ---- */

#define N_PERSONS 97
#define N_BIG_PERSONS 200000

static int gen_gender(int id)
{
    if (id <= 3)
        return 0;                       /* unknown: a stratum of 3 */
    return id % 2 ? 8507 : 8532;
}

static int gen_yob(int id)
{
    if (id == 10)
        return 1915;                    /* 90+ */
    if (id == 20)
        return 2012;                    /* born after the index: unknown */
    return 2010 - ((id % 5) * 10 + 5);
}

typedef struct event {
    const char *table;                  /* "drug" or "cond" */
    int person;
    int concept;
    const char *date;
} event;

static event events[512];
static size_t n_events;

static void gen_events(void)
{
    n_events = 0;
    for (int id = 1; id <= N_PERSONS; id++) {
        if (id <= 60) {
            events[n_events++] = (event){ "drug", id, 1001, "2010-06-15" };
            events[n_events++] = (event){ "drug", id, 1001, "2015-03-01" };
        }
        if (id >= 41 && id <= 80)       /* descendant of 1001, earlier */
            events[n_events++] = (event){ "drug", id, 1002, "2009-02-01" };
        if (id <= 63)
            events[n_events++] = (event){ "drug", id, 3001, "2011-01-01" };
        if (id >= 51 && id <= 70)
            events[n_events++] = (event){ "cond", id, 2001, "2012-01-01" };
        if (id >= 71 && id <= 90)       /* descendant of 2001 */
            events[n_events++] = (event){ "cond", id, 2002, "2012-01-01" };
    }
}

/* True answers computed in C. A criterion matches concepts in set[]. */
typedef struct crit {
    const char *table;
    const int *set;
    size_t n;
} crit;

static bool ev_match(const event *e, const crit *c)
{
    if (strcmp(e->table, c->table) != 0)
        return false;
    for (size_t k = 0; k < c->n; k++)
        if (c->set[k] == e->concept)
            return true;
    return false;
}

/* For each person: in cohort? and the index year (earliest event of the
 * first criterion). */
static int true_cohort(const crit *cs, size_t ncs, int *index_year)
{
    int total = 0;
    for (int id = 1; id <= N_PERSONS; id++) {
        index_year[id] = 0;
        bool all = true;
        for (size_t c = 0; c < ncs && all; c++) {
            bool any = false;
            const char *min_date = NULL;
            for (size_t k = 0; k < n_events; k++) {
                if (events[k].person == id && ev_match(&events[k], &cs[c])) {
                    any = true;
                    if (!min_date || strcmp(events[k].date, min_date) < 0)
                        min_date = events[k].date;
                }
            }
            if (!any)
                all = false;
            else if (c == 0)
                index_year[id] = atoi(min_date);
        }
        if (!all)
            index_year[id] = -1;
        else
            total++;
    }
    return total;
}

static const char *true_sex(int id)
{
    int g = gen_gender(id);
    return g == 8507 ? "male" : g == 8532 ? "female" : "unknown";
}

static void true_band(int id, int index_year, char *buf, size_t len)
{
    int age = index_year - gen_yob(id);
    if (age < 0)
        snprintf(buf, len, "unknown");
    else if (age >= 90)
        snprintf(buf, len, "90+");
    else
        snprintf(buf, len, "%d-%d", age / 10 * 10, age / 10 * 10 + 9);
}

/* ---- fixture ---- */

static char tmpdir[256];
static char small_db[512], big_db[512];
static agent_config cfg;

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "fixture SQL failed: %s\n", msg ? msg : "?");
        sqlite3_free(msg);
        abort();
    }
}

static const char *schema =
    "CREATE TABLE person (person_id INTEGER NOT NULL, gender_concept_id INTEGER NOT NULL,"
    " year_of_birth INTEGER NOT NULL, race_concept_id INTEGER NOT NULL DEFAULT 0,"
    " ethnicity_concept_id INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX idx_person_id ON person (person_id);"
    "CREATE TABLE observation_period (observation_period_id INTEGER NOT NULL,"
    " person_id INTEGER NOT NULL, observation_period_start_date DATE NOT NULL,"
    " observation_period_end_date DATE NOT NULL, period_type_concept_id INTEGER NOT NULL);"
    "CREATE TABLE drug_exposure (drug_exposure_id INTEGER NOT NULL, person_id INTEGER NOT NULL,"
    " drug_concept_id INTEGER NOT NULL, drug_exposure_start_date DATE NOT NULL,"
    " drug_exposure_end_date DATE NOT NULL, drug_type_concept_id INTEGER NOT NULL);"
    "CREATE INDEX idx_drug_person_id_1 ON drug_exposure (person_id);"
    "CREATE INDEX idx_drug_concept_id_1 ON drug_exposure (drug_concept_id);"
    "CREATE TABLE condition_occurrence (condition_occurrence_id INTEGER NOT NULL,"
    " person_id INTEGER NOT NULL, condition_concept_id INTEGER NOT NULL,"
    " condition_start_date DATE NOT NULL, condition_type_concept_id INTEGER NOT NULL);"
    "CREATE INDEX idx_condition_person_id_1 ON condition_occurrence (person_id);"
    "CREATE INDEX idx_condition_concept_id_1 ON condition_occurrence (condition_concept_id);"
    "CREATE TABLE measurement (measurement_id INTEGER NOT NULL, person_id INTEGER NOT NULL,"
    " measurement_concept_id INTEGER NOT NULL, measurement_date DATE NOT NULL);"
    "CREATE TABLE concept (concept_id INTEGER NOT NULL, concept_name TEXT NOT NULL,"
    " domain_id TEXT NOT NULL, vocabulary_id TEXT NOT NULL, concept_class_id TEXT NOT NULL,"
    " standard_concept TEXT, concept_code TEXT NOT NULL, valid_start_date DATE NOT NULL,"
    " valid_end_date DATE NOT NULL, invalid_reason TEXT);"
    "CREATE INDEX idx_concept_concept_id ON concept (concept_id);"
    "CREATE TABLE concept_ancestor (ancestor_concept_id INTEGER NOT NULL,"
    " descendant_concept_id INTEGER NOT NULL, min_levels_of_separation INTEGER NOT NULL,"
    " max_levels_of_separation INTEGER NOT NULL);"
    "CREATE INDEX idx_concept_ancestor_id_1 ON concept_ancestor (ancestor_concept_id);"
    "CREATE TABLE cdm_source (cdm_source_name TEXT NOT NULL, cdm_version TEXT);";

static void concept_rows(sqlite3 *db)
{
    exec_sql(db,
        "INSERT INTO concept VALUES"
        " (1001,'drug A','Drug','RxNorm','Ingredient','S','1','1970-01-01','2099-12-31',NULL),"
        " (1002,'drug A 10mg','Drug','RxNorm','Clinical Drug','S','2','1970-01-01','2099-12-31',NULL),"
        " (3001,'drug B','Drug','RxNorm','Ingredient','S','3','1970-01-01','2099-12-31',NULL),"
        " (3002,'drug C','Drug','RxNorm','Ingredient','S','4','1970-01-01','2099-12-31',NULL),"
        " (2001,'cond X','Condition','SNOMED','Clinical Finding','S','5','1970-01-01','2099-12-31',NULL),"
        " (2002,'cond X sub','Condition','SNOMED','Clinical Finding','S','6','1970-01-01','2099-12-31',NULL);"
        "INSERT INTO concept_ancestor VALUES (1001,1001,0,0),(1001,1002,1,1),"
        " (2001,2001,0,0),(2001,2002,1,1),(1002,1002,0,0),(2002,2002,0,0),(3001,3001,0,0);"
        "INSERT INTO cdm_source VALUES ('test', 'v5.4.0');");
}

static void build_small(void)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(small_db, &db), SQLITE_OK);
    exec_sql(db, "BEGIN");
    exec_sql(db, schema);
    concept_rows(db);
    char sql[512];
    for (int id = 1; id <= N_PERSONS; id++) {
        snprintf(sql, sizeof sql, "INSERT INTO person VALUES (%d, %d, %d, 0, 0);"
                 "INSERT INTO observation_period VALUES (%d, %d, '2000-01-01', '%s', 0);",
                 id, gen_gender(id), gen_yob(id), id, id,
                 id == 5 ? "2020-06-30" : "2019-12-31");
        exec_sql(db, sql);
    }
    gen_events();
    for (size_t k = 0; k < n_events; k++) {
        const event *e = &events[k];
        if (strcmp(e->table, "drug") == 0)
            snprintf(sql, sizeof sql, "INSERT INTO drug_exposure VALUES (%zu, %d, %d, '%s', '%s', 0)",
                     k + 1, e->person, e->concept, e->date, e->date);
        else
            snprintf(sql, sizeof sql,
                     "INSERT INTO condition_occurrence VALUES (%zu, %d, %d, '%s', 0)", k + 1,
                     e->person, e->concept, e->date);
        exec_sql(db, sql);
    }
    exec_sql(db, "COMMIT");
    sqlite3_close(db);
}

/* A large DB for deadline tests: N_BIG_PERSONS persons, 5 exposures each. */
static void build_big(void)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(big_db, &db), SQLITE_OK);
    exec_sql(db, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; BEGIN");
    exec_sql(db, schema);
    concept_rows(db);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
             " INSERT INTO person SELECT i, CASE i %% 2 WHEN 0 THEN 8532 ELSE 8507 END,"
             " 1930 + i %% 70, 0, 0 FROM n;"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
             " INSERT INTO drug_exposure SELECT i, 1 + i %% %d, CASE WHEN i %% 3 = 0"
             " THEN 1002 ELSE 1001 END, printf('%%04d-%%02d-%%02d', 2000 + i %% 20,"
             " 1 + i %% 12, 1 + i %% 28), '2020-01-01', 0 FROM n;"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
             " INSERT INTO condition_occurrence SELECT i, 1 + (i * 7) %% %d, 2001,"
             " '2012-01-01', 0 FROM n;"
             /* a rare condition: 150 persons, every 1000th, one row each */
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150)"
             " INSERT INTO condition_occurrence SELECT 10000000 + i, i * 1000 - 7, 2002,"
             " '2013-05-05', 0 FROM n;",
             N_BIG_PERSONS, N_BIG_PERSONS * 5, N_BIG_PERSONS, N_BIG_PERSONS, N_BIG_PERSONS);
    exec_sql(db, sql);
    exec_sql(db, "COMMIT");
    sqlite3_close(db);
}

static int setup(void **state)
{
    (void)state;
    log_set_level(SDF_LOG_WARN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdefed-test-query-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(small_db, sizeof small_db, "%s/omop.sqlite", tmpdir);
    snprintf(big_db, sizeof big_db, "%s/big omop?#%%.sqlite", tmpdir); /* URI-hostile name */
    build_small();
    build_big();

    memset(&cfg, 0, sizeof cfg);
    disc_policy_default(&cfg.policy);
    const char *names[] = { "omop", "big", "missing" };
    const char *paths[] = { small_db, big_db, "/nonexistent/dir/omop.sqlite" };
    for (size_t k = 0; k < 3; k++) {
        agent_dataset *d = &cfg.datasets[k];
        snprintf(d->name, sizeof d->name, "%s", names[k]);
        snprintf(d->type, sizeof d->type, "omop");
        snprintf(d->backend, sizeof d->backend, "sqlite");
        snprintf(d->path, sizeof d->path, "%s", paths[k]);
    }
    cfg.n_datasets = 1;   /* tests that need more raise it */
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char p[600];
    snprintf(p, sizeof p, "%s", small_db);
    unlink(p);
    unlink(big_db);
    rmdir(tmpdir);
    return 0;
}

/* ---- request builder ---- */

typedef struct req_buf {
    Sdefed__QueryRequest req;
    Sdefed__QuerySpec spec;
    Sdefed__Cohort cohort;
    Sdefed__Criterion crit[4];
    Sdefed__Criterion *critp[4];
    int64_t concepts[4][8];
    Sdefed__Stratifier by[3];
    Sdefed__PolicyRequest policy;
} req_buf;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void req_init(req_buf *b, Sdefed__QueryKind kind, const char *dataset)
{
    memset(b, 0, sizeof *b);
    sdefed__query_request__init(&b->req);
    sdefed__query_spec__init(&b->spec);
    sdefed__cohort__init(&b->cohort);
    b->req.query_id = "q-1";
    b->req.project_id = "demo";
    b->req.requester = "alice";
    b->req.deadline_unix_ms = now_ms() + 60000;
    b->req.spec = &b->spec;
    b->spec.kind = kind;
    b->spec.project = "demo";
    if (dataset)
        b->spec.dataset = (char *)dataset;
    if (kind == SDEFED__QUERY_KIND__KIND_COUNT)
        b->spec.cohort = &b->cohort;
    b->cohort.all = b->critp;
}

static void req_crit(req_buf *b, Sdefed__Domain dom, bool desc, int n, ...)
{
    size_t k = b->cohort.n_all++;
    sdefed__criterion__init(&b->crit[k]);
    b->critp[k] = &b->crit[k];
    b->crit[k].domain = dom;
    b->crit[k].descendants = desc;
    b->crit[k].concepts = b->concepts[k];
    va_list ap;
    va_start(ap, n);
    for (int j = 0; j < n; j++)
        b->concepts[k][j] = va_arg(ap, int);
    va_end(ap);
    b->crit[k].n_concepts = (size_t)n;
}

static void req_by(req_buf *b, Sdefed__Stratifier s)
{
    b->by[b->spec.n_by++] = s;
    b->spec.by = b->by;
}

static void req_policy(req_buf *b, int64_t min_cell, int64_t rounding, bool zero)
{
    sdefed__policy_request__init(&b->policy);
    b->policy.min_cell = min_cell;
    b->policy.rounding = rounding;
    b->policy.zero_is_disclosive = zero;
    b->spec.policy = &b->policy;
}

static Sdefed__QueryResult *run(req_buf *b)
{
    Sdefed__QueryResult *r = query_run(&cfg, &b->req, NULL);
    assert_non_null(r);
    assert_string_equal(r->query_id, "q-1");
    return r;
}

static Sdefed__QueryResult *run_ok(req_buf *b)
{
    Sdefed__QueryResult *r = run(b);
    if (r->status != SDEFED__SITE_STATUS__SITE_OK)
        fprintf(stderr, "unexpected status %d: %s\n", (int)r->status, r->reason);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_OK);
    assert_non_null(r->policy);
    return r;
}

static bool has_rule(const Sdefed__QueryResult *r, const char *name)
{
    for (size_t k = 0; k < r->n_rules_fired; k++)
        if (strcmp(r->rules_fired[k], name) == 0)
            return true;
    return false;
}

/* The cell whose strata match (NULL = no strata). */
static const Sdefed__Cell *find_cell(const Sdefed__QueryResult *r, const char *s0,
                                     const char *s1)
{
    for (size_t k = 0; k < r->n_cells; k++) {
        const Sdefed__Cell *c = r->cells[k];
        size_t want = (s0 != NULL) + (s1 != NULL);
        if (c->n_strata != want)
            continue;
        if (s0 && strcmp(c->strata[0]->value, s0) != 0)
            continue;
        if (s1 && strcmp(c->strata[1]->value, s1) != 0)
            continue;
        return c;
    }
    return NULL;
}

/* Expected released value/status under policy p for true count n. */
static void assert_released(const Sdefed__Cell *c, const disc_policy *p, int64_t n)
{
    assert_non_null(c);
    disc_value v = disc_count(p, n, NULL);
    if (v.status == DISC_SUPPRESSED) {
        assert_int_equal(c->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
        assert_int_equal(c->value, 0);
    } else {
        assert_int_equal(c->value, v.value);
        assert_int_equal(c->status, v.status == DISC_EXACT ? SDEFED__CELL_STATUS__CELL_EXACT
                                                           : SDEFED__CELL_STATUS__CELL_ROUNDED);
    }
}

static const int set_1001[] = { 1001 };
static const int set_1001_desc[] = { 1001, 1002 };
static const int set_2001_desc[] = { 2001, 2002 };
static const int set_3001[] = { 3001 };

/* ---- tests ---- */

static void test_count_plain_and_descendants(void **state)
{
    (void)state;
    int iy[N_PERSONS + 1];
    req_buf b;

    crit c0 = { "drug", set_1001, 1 };
    int t = true_cohort(&c0, 1, iy);
    assert_int_equal(t, 60);
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    Sdefed__QueryResult *r = run_ok(&b);
    assert_int_equal(r->n_cells, 1);
    assert_int_equal(r->cells[0]->n_strata, 0);
    assert_int_equal(r->cells[0]->value, 60);
    assert_int_equal(r->cells[0]->status, SDEFED__CELL_STATUS__CELL_ROUNDED);
    assert_true(has_rule(r, "rounding"));
    assert_false(has_rule(r, "small_count"));
    assert_string_equal(r->reason, "");
    query_result_free(r);

    crit c1 = { "drug", set_1001_desc, 2 };
    t = true_cohort(&c1, 1, iy);
    assert_int_equal(t, 80);
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    r = run_ok(&b);
    assert_int_equal(r->n_cells, 1);
    assert_int_equal(r->cells[0]->value, 80);
    query_result_free(r);

    /* 63 persons on drug B: rounded to 65 */
    crit c2 = { "drug", set_3001, 1 };
    assert_int_equal(true_cohort(&c2, 1, iy), 63);
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 3001);
    r = run_ok(&b);
    assert_int_equal(r->cells[0]->value, 65);
    assert_int_equal(r->cells[0]->status, SDEFED__CELL_STATUS__CELL_ROUNDED);
    query_result_free(r);

    /* a concept list with several ids, no descendants: 1001 or 1002 */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 2, 1002, 1001);
    r = run_ok(&b);
    assert_int_equal(r->cells[0]->value, 80);
    query_result_free(r);

    /* a drug concept asked for in the condition domain: no events */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, true, 1, 1001);
    r = run_ok(&b);
    assert_int_equal(r->cells[0]->value, 0);
    assert_int_equal(r->cells[0]->status, SDEFED__CELL_STATUS__CELL_EXACT);
    query_result_free(r);
}

static void test_count_intersection(void **state)
{
    (void)state;
    int iy[N_PERSONS + 1];
    crit cs[2] = { { "drug", set_1001_desc, 2 }, { "cond", set_2001_desc, 2 } };
    assert_int_equal(true_cohort(cs, 2, iy), 30);   /* persons 51..80 */
    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, true, 1, 2001);
    Sdefed__QueryResult *r = run_ok(&b);
    assert_int_equal(r->n_cells, 1);
    assert_int_equal(r->cells[0]->value, 30);
    query_result_free(r);

    /* by age band: the index date still comes from the FIRST criterion
     * even though the (smaller) condition criterion drives the query */
    static const char *bands[] = { "0-9", "10-19", "20-29", "30-39", "40-49", "50-59",
                                   "60-69", "70-79", "80-89", "90+", "unknown" };
    req_by(&b, SDEFED__STRATIFIER__STRAT_AGE_BAND);
    req_policy(&b, 1, 1, false);
    r = run_ok(&b);
    assert_int_equal(r->n_cells, 11);
    disc_policy p;
    disc_policy_default(&p);
    for (size_t k = 0; k < 11; k++) {
        int64_t n = 0;
        for (int id = 1; id <= N_PERSONS; id++) {
            char band[16];
            if (iy[id] < 0)
                continue;
            true_band(id, iy[id], band, sizeof band);
            n += strcmp(band, bands[k]) == 0;
        }
        assert_released(find_cell(r, bands[k], NULL), &p, n);
    }
    /* persons 51..60 have index 2009 (1002 event), 61..80 likewise: ages
     * at 2009 are 4,14,..,44 by id%5 -> 6 per band */
    assert_int_equal(find_cell(r, "0-9", NULL)->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    query_result_free(r);

    /* reversed order: the condition is first, so its date is the index */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, true, 1, 2001);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_AGE_BAND);
    crit rev[2] = { cs[1], cs[0] };
    assert_int_equal(true_cohort(rev, 2, iy), 30);
    r = run_ok(&b);
    for (size_t k = 0; k < 11; k++) {
        int64_t n = 0;
        for (int id = 1; id <= N_PERSONS; id++) {
            char band[16];
            if (iy[id] < 0)
                continue;
            true_band(id, iy[id], band, sizeof band);
            n += strcmp(band, bands[k]) == 0;
        }
        assert_released(find_cell(r, bands[k], NULL), &p, n);
    }
    query_result_free(r);

    /* without descendants on the condition: persons 51..70 = 20 */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, false, 1, 2001);
    r = run_ok(&b);
    assert_int_equal(r->cells[0]->value, 20);
    query_result_free(r);

    /* three criteria: drug A (plain, 1..60) & cond X+desc (51..90) & drug B (1..63) */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, true, 1, 2001);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 3001);
    r = run_ok(&b);
    assert_int_equal(r->cells[0]->value, 10);     /* persons 51..60 */
    query_result_free(r);

    /* disjoint: cond 2002 (71..90) & drug A plain (1..60) -> 0 */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, false, 1, 2002);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    r = run_ok(&b);
    assert_int_equal(r->cells[0]->value, 0);
    assert_int_equal(r->cells[0]->status, SDEFED__CELL_STATUS__CELL_EXACT);
    query_result_free(r);
}

static void test_count_by_sex(void **state)
{
    (void)state;
    int iy[N_PERSONS + 1];
    crit c0 = { "drug", set_1001, 1 };
    true_cohort(&c0, 1, iy);
    int64_t male = 0, female = 0, unknown = 0;
    for (int id = 1; id <= N_PERSONS; id++) {
        if (iy[id] < 0)
            continue;
        const char *s = true_sex(id);
        if (!strcmp(s, "male"))
            male++;
        else if (!strcmp(s, "female"))
            female++;
        else
            unknown++;
    }
    assert_int_equal(unknown, 3);

    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_SEX);
    Sdefed__QueryResult *r = run_ok(&b);
    assert_int_equal(r->n_cells, 3);   /* the full grid */
    for (size_t k = 0; k < r->n_cells; k++) {
        assert_int_equal(r->cells[k]->n_strata, 1);
        assert_string_equal(r->cells[k]->strata[0]->name, "sex");
    }
    disc_policy p;
    disc_policy_default(&p);
    assert_released(find_cell(r, "male", NULL), &p, male);
    assert_released(find_cell(r, "female", NULL), &p, female);
    const Sdefed__Cell *u = find_cell(r, "unknown", NULL);
    assert_non_null(u);
    assert_int_equal(u->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_int_equal(u->value, 0);
    assert_true(has_rule(r, "small_count"));
    assert_true(has_rule(r, "rounding"));

    /* The 3 appears nowhere in the serialised result: no field carries it. */
    size_t len = sdefed__query_result__get_packed_size(r);
    uint8_t *buf = malloc(len);
    assert_non_null(buf);
    sdefed__query_result__pack(r, buf);
    Sdefed__QueryResult *back = sdefed__query_result__unpack(NULL, len, buf);
    assert_non_null(back);
    for (size_t k = 0; k < back->n_cells; k++) {
        assert_int_not_equal(back->cells[k]->value, 3);
        assert_int_equal(back->cells[k]->value % 5, 0);
        for (size_t j = 0; j < back->cells[k]->n_strata; j++)
            assert_null(strchr(back->cells[k]->strata[j]->value, '3'));
    }
    assert_null(strchr(back->reason, '3'));
    sdefed__query_result__free_unpacked(back, NULL);
    free(buf);
    query_result_free(r);
}

static void check_age_grid(const crit *cs, size_t ncs, bool desc)
{
    int iy[N_PERSONS + 1];
    true_cohort(cs, ncs, iy);
    static const char *bands[] = { "0-9", "10-19", "20-29", "30-39", "40-49", "50-59",
                                   "60-69", "70-79", "80-89", "90+", "unknown" };
    int64_t counts[11] = { 0 };
    for (int id = 1; id <= N_PERSONS; id++) {
        if (iy[id] < 0)
            continue;
        char band[16];
        true_band(id, iy[id], band, sizeof band);
        for (size_t k = 0; k < 11; k++)
            if (!strcmp(band, bands[k]))
                counts[k]++;
    }
    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, desc, 1, 1001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_AGE_BAND);
    req_policy(&b, 0, 1, false);   /* rounding 1 asked: site keeps 5 */
    Sdefed__QueryResult *r = run_ok(&b);
    assert_int_equal(r->n_cells, 11);
    disc_policy p;
    disc_policy_default(&p);
    for (size_t k = 0; k < 11; k++) {
        const Sdefed__Cell *c = find_cell(r, bands[k], NULL);
        assert_non_null(c);
        assert_string_equal(c->strata[0]->name, "age_band");
        assert_released(c, &p, counts[k]);
    }
    query_result_free(r);
}

static void test_count_by_age_band(void **state)
{
    (void)state;
    /* Without descendants the index date is 2010-06-15 (not the later
     * 2015 event); with them persons 41..60 have an earlier 1002 event in
     * 2009, which moves some of them into a lower band. */
    crit c0 = { "drug", set_1001, 1 };
    check_age_grid(&c0, 1, false);
    crit c1 = { "drug", set_1001_desc, 2 };
    check_age_grid(&c1, 1, true);

    /* Independent hand check for the plain case: ages at 2010 are 5,15,..,45
     * by id%5, 12 persons each among 1..60, except id 10 (90+) and id 20
     * (unknown), both with id%5 == 0 (age 5 -> band 0-9). */
    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_AGE_BAND);
    req_policy(&b, 0, 0, false);
    Sdefed__QueryResult *r = run_ok(&b);
    assert_int_equal(find_cell(r, "0-9", NULL)->value, 10);     /* 10 true */
    assert_int_equal(find_cell(r, "10-19", NULL)->value, 10);   /* 12 true */
    assert_int_equal(find_cell(r, "50-59", NULL)->value, 0);
    assert_int_equal(find_cell(r, "50-59", NULL)->status, SDEFED__CELL_STATUS__CELL_EXACT);
    assert_int_equal(find_cell(r, "90+", NULL)->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_int_equal(find_cell(r, "unknown", NULL)->status,
                     SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    query_result_free(r);
}

static void test_count_by_sex_and_age(void **state)
{
    (void)state;
    int iy[N_PERSONS + 1];
    crit c0 = { "drug", set_1001_desc, 2 };
    true_cohort(&c0, 1, iy);
    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_AGE_BAND);
    req_by(&b, SDEFED__STRATIFIER__STRAT_SEX);
    req_policy(&b, 1, 1, false);   /* looser asks: the site floor applies */
    Sdefed__QueryResult *r = run_ok(&b);
    assert_int_equal(r->n_cells, 33);
    disc_policy p;
    disc_policy_default(&p);
    int64_t sum_true = 0;
    for (size_t k = 0; k < r->n_cells; k++) {
        const Sdefed__Cell *c = r->cells[k];
        assert_int_equal(c->n_strata, 2);
        assert_string_equal(c->strata[0]->name, "age_band");   /* `by` order */
        assert_string_equal(c->strata[1]->name, "sex");
        int64_t n = 0;
        for (int id = 1; id <= N_PERSONS; id++) {
            if (iy[id] < 0)
                continue;
            char band[16];
            true_band(id, iy[id], band, sizeof band);
            if (!strcmp(band, c->strata[0]->value) && !strcmp(true_sex(id), c->strata[1]->value))
                n++;
        }
        sum_true += n;
        assert_released(c, &p, n);
    }
    assert_int_equal(sum_true, 80);
    assert_int_equal(r->policy->min_cell, 10);
    assert_int_equal(r->policy->rounding, 5);
    query_result_free(r);
}

static void test_policy_merge_in_result(void **state)
{
    (void)state;
    req_buf b;
    /* stricter request: min_cell 20, rounding 10, zero disclosive */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_SEX);
    req_policy(&b, 20, 10, true);
    Sdefed__QueryResult *r = run_ok(&b);
    disc_policy merged;
    disc_policy_merge(&cfg.policy, 20, 10, true, &merged);
    assert_int_equal(r->policy->min_cell, merged.min_cell);
    assert_int_equal(r->policy->rounding, merged.rounding);
    assert_int_equal(r->policy->zero_is_disclosive, merged.zero_is_disclosive);
    /* issue 4: a stricter request is made a coarsening of the site's
     * answer (disc_policy_merge): min_cell 20 -> 23 (a boundary of the
     * site's 5-rounding), rounding 10 -> 15 (an odd multiple of 5) */
    assert_int_equal(r->policy->min_cell, 23);
    assert_int_equal(r->policy->rounding, 15);
    assert_true(r->policy->zero_is_disclosive);
    /* male 28 -> 30, female 29 -> 30 with rounding 15 */
    assert_int_equal(find_cell(r, "male", NULL)->value, 30);
    assert_int_equal(find_cell(r, "female", NULL)->value, 30);
    assert_true(has_rule(r, "zero_is_disclosive"));   /* bits of suppressed 3 */
    query_result_free(r);

    /* a request asking for min_cell 5 (looser) still gets 10: the 7-person
     * cell stays suppressed. Persons 1..60 with band 90+ or unknown... use
     * the intersection drug A & cond X (51..60 -> 10 persons) by sex:
     * 5 male, 5 female. */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, false, 1, 2001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_SEX);
    req_policy(&b, 5, 0, false);
    r = run_ok(&b);
    assert_int_equal(r->policy->min_cell, 10);
    assert_int_equal(r->policy->rounding, 5);
    assert_false(r->policy->zero_is_disclosive);
    assert_int_equal(find_cell(r, "male", NULL)->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_int_equal(find_cell(r, "female", NULL)->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_int_equal(find_cell(r, "male", NULL)->value, 0);
    /* zero released as 0 under the site's policy */
    assert_int_equal(find_cell(r, "unknown", NULL)->status, SDEFED__CELL_STATUS__CELL_EXACT);
    query_result_free(r);

    /* zero_is_disclosive requested: the empty cell is suppressed too */
    req_policy(&b, 0, 0, true);
    r = run_ok(&b);
    assert_int_equal(find_cell(r, "unknown", NULL)->status,
                     SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    query_result_free(r);

    /* a stricter site floor wins over a request */
    disc_policy saved = cfg.policy;
    cfg.policy.min_cell = 70;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    req_policy(&b, 10, 0, false);
    r = run_ok(&b);
    assert_int_equal(r->policy->min_cell, 70);
    assert_int_equal(r->cells[0]->value, 80);
    query_result_free(r);
    cfg.policy.min_cell = 81;
    r = run_ok(&b);
    assert_int_equal(r->cells[0]->status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_int_equal(r->cells[0]->value, 0);
    query_result_free(r);
    cfg.policy = saved;
}

static void test_refusals(void **state)
{
    (void)state;
    req_buf b;
    Sdefed__QueryResult *r;

    /* unknown dataset */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "nope");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_string_equal(r->reason, "unknown dataset 'nope'");
    assert_int_equal(r->n_cells, 0);
    query_result_free(r);

    /* unknown concept in the first and in the second criterion */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 2, 1001, 123);
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_string_equal(r->reason, "unknown concept id 123 in cohort.all[0]");
    assert_int_equal(r->n_cells, 0);
    query_result_free(r);
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, true, 3, 2001, 4242, 2002);
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_string_equal(r->reason, "unknown concept id 4242 in cohort.all[1]");
    query_result_free(r);

    /* kind unset */
    req_init(&b, SDEFED__QUERY_KIND__KIND_UNSPECIFIED, NULL);
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_true(strlen(r->reason) > 0);
    assert_null(r->policy);
    query_result_free(r);

    /* no spec at all */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    b.req.spec = NULL;
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    query_result_free(r);

    /* count without criteria */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    query_result_free(r);

    /* a domain whose table the dataset lacks */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DEVICE, false, 1, 1001);
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    assert_non_null(strstr(r->reason, "device"));
    query_result_free(r);

    /* a dataset name with SQL in it never reaches SQL; spec_validate refuses */
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop' OR 1=1 --");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_REFUSED);
    query_result_free(r);
}

static void test_database_error(void **state)
{
    (void)state;
    req_buf b;
    cfg.n_datasets = 3;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "missing");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    Sdefed__QueryResult *r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_ERROR);
    assert_string_equal(r->reason, "database error");
    assert_int_equal(r->n_cells, 0);
    query_result_free(r);
    cfg.n_datasets = 1;
}

static void test_deadline_passed(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    b.req.deadline_unix_ms = now_ms() - 1;
    Sdefed__QueryResult *r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_TIMEOUT);
    assert_int_equal(r->n_cells, 0);
    query_result_free(r);
    b.req.deadline_unix_ms = 1;   /* 1970 */
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_TIMEOUT);
    query_result_free(r);
}

static double elapsed_ms(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) * 1e3 + (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

/* The heavy query on the big DB: 1M exposures, by age band and sex. */
static void big_request(req_buf *b)
{
    req_init(b, SDEFED__QUERY_KIND__KIND_COUNT, "big");
    req_crit(b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    req_crit(b, SDEFED__DOMAIN__DOMAIN_CONDITION, false, 1, 2001);
    req_by(b, SDEFED__STRATIFIER__STRAT_AGE_BAND);
    req_by(b, SDEFED__STRATIFIER__STRAT_SEX);
}

static double full_ms;   /* how long the big query takes without a deadline */

static void test_big_query_completes(void **state)
{
    (void)state;
    cfg.n_datasets = 2;
    req_buf b;
    big_request(&b);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Sdefed__QueryResult *r = run_ok(&b);
    full_ms = elapsed_ms(&t0);
    int64_t sum = 0;
    for (size_t k = 0; k < r->n_cells; k++)
        sum += r->cells[k]->value;
    /* every person has exposures and the condition, all born 1930..1999 */
    assert_true(sum > N_BIG_PERSONS - 33 * 5 && sum < N_BIG_PERSONS + 33 * 5);
    query_result_free(r);
    cfg.n_datasets = 1;
    print_message("big query: %.0f ms\n", full_ms);
}

static void test_slow_query_interrupted(void **state)
{
    (void)state;
    assert_true(full_ms > 0);
    cfg.n_datasets = 2;
    req_buf b;
    big_request(&b);
    /* 1 ms: refused at the start or interrupted at once */
    b.req.deadline_unix_ms = now_ms() + 1;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Sdefed__QueryResult *r = run(&b);
    double ms = elapsed_ms(&t0);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_TIMEOUT);
    assert_int_equal(r->n_cells, 0);
    assert_true(ms < full_ms / 2 + 20);
    query_result_free(r);

    /* a deadline a fraction into the run: the SQL itself is interrupted */
    uint64_t slice = (uint64_t)(full_ms / 5) + 1;
    big_request(&b);
    b.req.deadline_unix_ms = now_ms() + slice;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = run(&b);
    ms = elapsed_ms(&t0);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_TIMEOUT);
    assert_string_equal(r->reason, "deadline exceeded");
    assert_int_equal(r->n_cells, 0);
    print_message("interrupted after %.0f ms (deadline %llu ms, full run %.0f ms)\n", ms,
                  (unsigned long long)slice, full_ms);
    assert_true(ms < (double)slice + full_ms / 4 + 20);
    query_result_free(r);
    cfg.n_datasets = 1;
}

static int64_t big_plain_int(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open_v2(big_db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* A rare first criterion and a huge second one: the huge one is checked
 * per person (EXISTS) and a rare second one drives (IN); both give what
 * plain SQL gives. */
static void test_big_driver_choice(void **state)
{
    (void)state;
    cfg.n_datasets = 2;
    disc_policy p;
    disc_policy_default(&p);
    int64_t truth = big_plain_int(
        "SELECT COUNT(DISTINCT person_id) FROM condition_occurrence WHERE"
        " condition_concept_id = 2002 AND person_id IN (SELECT person_id FROM drug_exposure"
        " WHERE drug_concept_id = 1001)");
    assert_true(truth > 50 && truth <= 150);

    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "big");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, false, 1, 2002);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    Sdefed__QueryResult *r = run_ok(&b);
    double ms = elapsed_ms(&t0);
    assert_released(r->cells[0], &p, truth);
    query_result_free(r);
    print_message("rare-first intersection: %.0f ms (full heavy query %.0f ms)\n", ms, full_ms);

    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "big");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, false, 1, 2002);
    req_by(&b, SDEFED__STRATIFIER__STRAT_SEX);
    r = run_ok(&b);
    int64_t male = big_plain_int(
        "SELECT COUNT(DISTINCT c.person_id) FROM condition_occurrence c JOIN person p"
        " ON p.person_id = c.person_id WHERE c.condition_concept_id = 2002"
        " AND p.gender_concept_id = 8507 AND c.person_id IN (SELECT person_id FROM"
        " drug_exposure WHERE drug_concept_id = 1001)");
    assert_released(find_cell(r, "male", NULL), &p, male);
    assert_released(find_cell(r, "female", NULL), &p, truth - male);
    query_result_free(r);

    /* three criteria, the rare one in the middle */
    truth = big_plain_int(
        "SELECT COUNT(DISTINCT person_id) FROM condition_occurrence WHERE"
        " condition_concept_id = 2002 AND person_id IN (SELECT person_id FROM drug_exposure"
        " WHERE drug_concept_id = 1002) AND person_id IN (SELECT person_id FROM"
        " condition_occurrence WHERE condition_concept_id = 2001)");
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "big");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1002);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, false, 1, 2002);
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_CONDITION, false, 1, 2001);
    r = run_ok(&b);
    assert_released(r->cells[0], &p, truth);
    query_result_free(r);
    cfg.n_datasets = 1;
}

typedef struct canceller {
    atomic_int *flag;
    unsigned delay_ms;
} canceller;

static void *cancel_thread(void *arg)
{
    canceller *c = arg;
    struct timespec ts = { .tv_sec = c->delay_ms / 1000,
                           .tv_nsec = (long)(c->delay_ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    atomic_store(c->flag, 1);
    return NULL;
}

static void test_cancel(void **state)
{
    (void)state;
    assert_true(full_ms > 0);
    cfg.n_datasets = 2;
    req_buf b;
    atomic_int flag;

    /* already cancelled */
    atomic_init(&flag, 1);
    big_request(&b);
    Sdefed__QueryResult *r = query_run(&cfg, &b.req, &flag);
    assert_non_null(r);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_TIMEOUT);
    assert_string_equal(r->reason, "cancelled");
    query_result_free(r);

    /* cancelled while running */
    atomic_store(&flag, 0);
    canceller c = { &flag, (unsigned)(full_ms / 5) + 1 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, cancel_thread, &c), 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    r = query_run(&cfg, &b.req, &flag);
    double ms = elapsed_ms(&t0);
    pthread_join(th, NULL);
    assert_non_null(r);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_TIMEOUT);
    assert_string_equal(r->reason, "cancelled");
    assert_int_equal(r->n_cells, 0);
    assert_true(ms < (double)c.delay_ms + full_ms / 4 + 20);
    query_result_free(r);

    /* the flag left at 0 changes nothing */
    atomic_store(&flag, 0);
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    r = query_run(&cfg, &b.req, &flag);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_OK);
    query_result_free(r);
    cfg.n_datasets = 1;
}

static void test_catalog(void **state)
{
    (void)state;
    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_CATALOG, NULL);
    Sdefed__QueryResult *r = run_ok(&b);
    assert_int_equal(r->n_cells, 0);
    assert_int_equal(r->n_catalog, 1);
    const Sdefed__DatasetInfo *d = r->catalog[0];
    assert_string_equal(d->name, "omop");
    assert_string_equal(d->type, "omop");
    assert_string_equal(d->omop_version, "5.4");
    assert_int_equal(d->person_count, 95);   /* 97 persons, rounded */
    assert_int_equal(d->person_count_status, SDEFED__CELL_STATUS__CELL_ROUNDED);
    assert_string_equal(d->data_freshness, "2020-06-30");
    /* drug and condition have rows; measurement exists but is empty;
     * device/procedure/observation/visit tables do not exist */
    assert_int_equal(d->n_domains, 2);
    assert_string_equal(d->domains[0], "condition");
    assert_string_equal(d->domains[1], "drug");
    assert_true(has_rule(r, "rounding"));
    assert_int_equal(r->policy->min_cell, 10);
    query_result_free(r);

    /* a stricter request rounds the person count to 15 (asked 10; odd
     * multiples of the site base only, issue 4): 97 -> 90 */
    req_policy(&b, 0, 10, false);
    r = run_ok(&b);
    assert_int_equal(r->catalog[0]->person_count, 90);
    assert_int_equal(r->policy->rounding, 15);
    query_result_free(r);

    /* min_cell above the person count suppresses it */
    req_policy(&b, 98, 0, false);
    r = run_ok(&b);
    assert_int_equal(r->catalog[0]->person_count, 0);
    assert_int_equal(r->catalog[0]->person_count_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_true(has_rule(r, "small_count"));
    query_result_free(r);

    /* an unreadable dataset is listed with a generic error and no numbers;
     * the readable ones are still described */
    cfg.n_datasets = 3;
    b.spec.policy = NULL;
    r = run(&b);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_OK);
    assert_int_equal(r->n_catalog, 3);
    assert_string_equal(r->catalog[0]->error, "");
    assert_int_equal(r->catalog[0]->person_count, 95);
    assert_string_equal(r->catalog[2]->name, "missing");
    assert_string_equal(r->catalog[2]->error, "database error");
    assert_int_equal(r->catalog[2]->person_count, 0);
    assert_int_equal(r->catalog[2]->person_count_status, SDEFED__CELL_STATUS__CELL_SUPPRESSED);
    assert_string_equal(r->catalog[2]->omop_version, "");
    assert_int_equal(r->catalog[2]->n_domains, 0);
    query_result_free(r);
    cfg.n_datasets = 1;
}

static void test_describe(void **state)
{
    (void)state;
    cfg.n_datasets = 3;
    Sdefed__DatasetInfo **ds = NULL;
    int n = query_describe_datasets(&cfg, &ds);
    assert_int_equal(n, 3);
    assert_string_equal(ds[0]->name, "omop");
    assert_string_equal(ds[0]->omop_version, "5.4");
    assert_int_equal(ds[0]->person_count, 0);   /* no counts in Hello */
    assert_int_equal(ds[0]->n_domains, 0);
    assert_string_equal(ds[1]->name, "big");
    assert_string_equal(ds[2]->name, "missing");   /* still announced */
    assert_string_equal(ds[2]->type, "omop");
    assert_string_equal(ds[2]->omop_version, "");
    for (int k = 0; k < n; k++)
        query_dataset_info_free(ds[k]);
    free(ds);
    cfg.n_datasets = 1;
}

/* Some OMOP exports store dates as numbers: unix seconds or Julian days.
 * Ages and freshness still come out right. */
static void test_numeric_dates(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/numeric.sqlite", tmpdir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    exec_sql(db, schema);
    concept_rows(db);
    char sql[512];
    for (int id = 1; id <= 12; id++) {
        /* 2010-06-15: unix 1276560000, Julian day 2455362.5 */
        snprintf(sql, sizeof sql,
                 "INSERT INTO person VALUES (%d, 8507, 1980, 0, 0);"
                 "INSERT INTO drug_exposure VALUES (%d, %d, 1001, %s, %s, 0);"
                 "INSERT INTO observation_period VALUES (%d, %d, 946684800, %s, 0);",
                 id, id, id, id <= 6 ? "1276560000" : "2455362.5",
                 id <= 6 ? "1276560000" : "2455362.5", id, id,
                 id == 1 ? "1577750400" : "1262304000");   /* 2019-12-31 / 2010-01-01 */
        exec_sql(db, sql);
    }
    sqlite3_close(db);

    static agent_config saved;
    saved = cfg;
    snprintf(cfg.datasets[0].path, sizeof cfg.datasets[0].path, "%s", path);
    cfg.policy.min_cell = 1;
    cfg.policy.rounding = 1;
    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, false, 1, 1001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_AGE_BAND);
    Sdefed__QueryResult *r = run_ok(&b);
    assert_int_equal(find_cell(r, "30-39", NULL)->value, 12);
    assert_int_equal(find_cell(r, "30-39", NULL)->status, SDEFED__CELL_STATUS__CELL_EXACT);
    assert_int_equal(find_cell(r, "unknown", NULL)->value, 0);
    query_result_free(r);

    req_init(&b, SDEFED__QUERY_KIND__KIND_CATALOG, NULL);
    r = run_ok(&b);
    assert_string_equal(r->catalog[0]->data_freshness, "2019-12-31");
    assert_int_equal(r->catalog[0]->person_count, 12);
    query_result_free(r);
    cfg = saved;
    unlink(path);
}

/* The database is opened read-only: the file is never modified. */
static void test_read_only(void **state)
{
    (void)state;
    FILE *f = fopen(small_db, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long before = ftell(f);
    fclose(f);
    req_buf b;
    req_init(&b, SDEFED__QUERY_KIND__KIND_COUNT, "omop");
    req_crit(&b, SDEFED__DOMAIN__DOMAIN_DRUG, true, 1, 1001);
    req_by(&b, SDEFED__STRATIFIER__STRAT_SEX);
    Sdefed__QueryResult *r = run_ok(&b);
    query_result_free(r);
    char j[600];
    snprintf(j, sizeof j, "%s-journal", small_db);
    assert_int_not_equal(access(j, F_OK), 0);
    snprintf(j, sizeof j, "%s-wal", small_db);
    assert_int_not_equal(access(j, F_OK), 0);
    f = fopen(small_db, "rb");
    fseek(f, 0, SEEK_END);
    assert_int_equal(ftell(f), before);
    fclose(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_plain_and_descendants),
        cmocka_unit_test(test_count_intersection),
        cmocka_unit_test(test_count_by_sex),
        cmocka_unit_test(test_count_by_age_band),
        cmocka_unit_test(test_count_by_sex_and_age),
        cmocka_unit_test(test_policy_merge_in_result),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_database_error),
        cmocka_unit_test(test_deadline_passed),
        cmocka_unit_test(test_big_query_completes),
        cmocka_unit_test(test_slow_query_interrupted),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_big_driver_choice),
        cmocka_unit_test(test_catalog),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_numeric_dates),
        cmocka_unit_test(test_read_only),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
