/* tests/unit/agent/omop_fixture.h — a seeded OMOP database with its truth in C.
 *
 * Shared by test_cohort.c and test_surveil.c (include it once, after
 * defining OMOP_FIXTURE_NAME, which names the temporary directory). The
 * generator writes a small OMOP CDM database (persons with sex, birth year,
 * race, ethnicity, care site, observation periods, drugs, conditions,
 * measurements with values and units, deaths) from a seeded PRNG and keeps
 * the same events in C arrays, so tests can compute every answer by plain
 * loops, independently of the SQL compiler. setup/teardown are cmocka
 * group fixtures; run()/run_ok() push a JSON spec through spec_parse_json
 * and query_run with an exact site policy (min_cell 1, rounding 1).
 */
#ifndef TEST_OMOP_FIXTURE_H
#define TEST_OMOP_FIXTURE_H

#ifndef OMOP_FIXTURE_NAME
#error "define OMOP_FIXTURE_NAME before including omop_fixture.h"
#endif

#define NP 400            /* persons */
#define MAXEV 20000

/* ---- days <-> ISO (proleptic Gregorian, days since 1970-01-01) ---- */

static void iso_of(int z, char *buf)
{
    z += 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int y = (int)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    snprintf(buf, 16, "%04d-%02u-%02u", y, (unsigned)(m % 100), (unsigned)(d % 100));
}

__attribute__((unused)) static int year_of(int z)
{
    char b[16];
    iso_of(z, b);
    return atoi(b);
}

__attribute__((unused)) static int month_of(int z)
{
    char b[16];
    iso_of(z, b);
    return atoi(b + 5);
}

/* ---- the generated data ---- */

typedef struct person {
    int gender, yob, race, eth, care_site;   /* care_site 0 = NULL */
    int op_start, op_end;
    int death;                               /* day or -1 */
    int death_cause;                         /* 0 = NULL */
} person;

typedef struct ev {
    char t;          /* 'd' drug, 'c' condition, 'm' measurement */
    int p, concept, day;
    double value;    /* measurement */
    int unit;
} ev;

static person P[NP + 1];
static ev E[MAXEV];
static size_t NE;
static uint64_t rng = 12345;

static unsigned rnd(unsigned n)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)((rng >> 33) % n);
}

static const int D2005 = 12784;   /* 2005-01-01 */

static void generate(void)
{
    static const int genders[] = { 8507, 8532, 8532, 8507, 0 };
    static const int races[] = { 8527, 8527, 8516, 8515, 0, 44814653 };
    static const int eths[] = { 38003563, 38003564, 38003564, 0 };
    NE = 0;
    for (int p = 1; p <= NP; p++) {
        person *x = &P[p];
        x->gender = genders[rnd(5)];
        x->yob = 1930 + (int)rnd(70);
        x->race = races[rnd(6)];
        x->eth = eths[rnd(4)];
        x->care_site = (int)rnd(4);   /* 0 = NULL */
        x->op_start = D2005 - 800 + (int)rnd(1200);
        x->op_end = D2005 + 2000 + (int)rnd(2500);
        x->death = rnd(6) == 0 ? D2005 + (int)rnd(4000) : -1;
        x->death_cause = x->death >= 0 && rnd(2) ? 6001 : 0;
        int nd = (int)rnd(4), nc = (int)rnd(3), nm = (int)rnd(5);
        static const int drugs[] = { 1001, 1002, 1003, 3001, 3001 };
        static const int conds[] = { 2001, 2002, 2003 };
        for (int k = 0; k < nd; k++)
            E[NE++] = (ev){ 'd', p, drugs[rnd(5)], D2005 + (int)rnd(3650), 0, 0 };
        for (int k = 0; k < nc; k++)
            E[NE++] = (ev){ 'c', p, conds[rnd(3)], D2005 + (int)rnd(3650), 0, 0 };
        for (int k = 0; k < nm; k++)
            E[NE++] = (ev){ 'm', p, 5001, D2005 + (int)rnd(3650), 4.0 + rnd(100) / 10.0,
                            rnd(4) ? 8554 : 8576 };
    }
}

/* ---- the database ---- */

static char tmpdir[64], db_path[128];
static agent_config cfg;

static void exec_sql(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "fixture SQL failed: %s\n", msg);
        sqlite3_free(msg);
        abort();
    }
}

static const char *schema =
    "CREATE TABLE person (person_id INTEGER, gender_concept_id INTEGER, year_of_birth INTEGER,"
    " race_concept_id INTEGER, ethnicity_concept_id INTEGER, care_site_id INTEGER);"
    "CREATE TABLE observation_period (observation_period_id INTEGER, person_id INTEGER,"
    " observation_period_start_date TEXT, observation_period_end_date TEXT);"
    "CREATE TABLE drug_exposure (drug_exposure_id INTEGER, person_id INTEGER,"
    " drug_concept_id INTEGER, drug_exposure_start_date TEXT);"
    "CREATE TABLE condition_occurrence (condition_occurrence_id INTEGER, person_id INTEGER,"
    " condition_concept_id INTEGER, condition_start_date TEXT);"
    "CREATE TABLE measurement (measurement_id INTEGER, person_id INTEGER,"
    " measurement_concept_id INTEGER, measurement_date TEXT, value_as_number REAL,"
    " unit_concept_id INTEGER);"
    "CREATE TABLE death (person_id INTEGER, death_date TEXT, cause_concept_id INTEGER);"
    "CREATE TABLE care_site (care_site_id INTEGER, care_site_name TEXT);"
    "CREATE TABLE concept (concept_id INTEGER, concept_name TEXT);"
    "CREATE TABLE concept_ancestor (ancestor_concept_id INTEGER, descendant_concept_id INTEGER);"
    "CREATE INDEX i1 ON drug_exposure (drug_concept_id); CREATE INDEX i2 ON drug_exposure (person_id);"
    "CREATE INDEX i3 ON condition_occurrence (condition_concept_id);"
    "CREATE INDEX i4 ON condition_occurrence (person_id);"
    "CREATE INDEX i5 ON measurement (measurement_concept_id); CREATE INDEX i6 ON measurement (person_id);"
    "CREATE INDEX i7 ON person (person_id); CREATE INDEX i8 ON death (person_id);"
    "CREATE INDEX i9 ON observation_period (person_id);"
    "INSERT INTO care_site VALUES (1, 'a'), (2, 'b'), (3, 'c');"
    "INSERT INTO concept (concept_id, concept_name) VALUES (1001,'d'),(1002,'d'),(1003,'d'),"
    " (3001,'d'),(2001,'c'),(2002,'c'),(2003,'c'),(5001,'m'),(6001,'x'),(8554,'%'),(8576,'mg'),"
    " (8507,'M'),(8532,'F');"
    "INSERT INTO concept_ancestor VALUES (1001,1001),(1002,1002),(1003,1003),(1001,1002),"
    " (1001,1003),(2001,2001),(2002,2002),(2001,2002),(2003,2003),(3001,3001),(5001,5001);";

static void build_db(void)
{
    sqlite3 *db;
    char sql[512], a[16], b[16];
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    exec_sql(db, "BEGIN");
    exec_sql(db, schema);
    for (int p = 1; p <= NP; p++) {
        person *x = &P[p];
        char cs[16];
        snprintf(cs, sizeof cs, x->care_site ? "%d" : "NULL", x->care_site);
        snprintf(sql, sizeof sql, "INSERT INTO person VALUES (%d, %d, %d, %d, %d, %s)", p,
                 x->gender, x->yob, x->race, x->eth, cs);
        exec_sql(db, sql);
        iso_of(x->op_start, a);
        iso_of(x->op_end, b);
        snprintf(sql, sizeof sql, "INSERT INTO observation_period VALUES (%d, %d, '%s', '%s')",
                 p, p, a, b);
        exec_sql(db, sql);
        if (x->death >= 0) {
            iso_of(x->death, a);
            snprintf(sql, sizeof sql, "INSERT INTO death VALUES (%d, '%s', %s)", p, a,
                     x->death_cause ? "6001" : "NULL");
            exec_sql(db, sql);
        }
    }
    for (size_t k = 0; k < NE; k++) {
        const ev *e = &E[k];
        iso_of(e->day, a);
        if (e->t == 'd')
            snprintf(sql, sizeof sql, "INSERT INTO drug_exposure VALUES (%zu, %d, %d, '%s')", k,
                     e->p, e->concept, a);
        else if (e->t == 'c')
            snprintf(sql, sizeof sql,
                     "INSERT INTO condition_occurrence VALUES (%zu, %d, %d, '%s')", k, e->p,
                     e->concept, a);
        else
            snprintf(sql, sizeof sql,
                     "INSERT INTO measurement VALUES (%zu, %d, %d, '%s', %.1f, %d)", k, e->p,
                     e->concept, a, e->value, e->unit);
        exec_sql(db, sql);
    }
    exec_sql(db, "COMMIT");
    sqlite3_close(db);
}

static int setup(void **state)
{
    (void)state;
    log_set_level(SDF_LOG_ERROR);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdefed-test-" OMOP_FIXTURE_NAME "-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(db_path, sizeof db_path, "%s/cohort.sqlite", tmpdir);
    generate();
    build_db();
    memset(&cfg, 0, sizeof cfg);
    disc_policy_default(&cfg.policy);
    cfg.policy.min_cell = 1;
    cfg.policy.rounding = 1;
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
    unlink(db_path);
    rmdir(tmpdir);
    return 0;
}

/* ---- running specs ---- */

static Sdefed__QueryResult *run(const char *json)
{
    Sdefed__QuerySpec *spec = NULL;
    char err[512];
    int rc = spec_parse_json(json, strlen(json), &spec, err, sizeof err);
    if (rc) {
        fprintf(stderr, "spec refused: %s\n", err);
        fail();
    }
    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    req.query_id = (char *)"q-test";
    req.spec = spec;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    req.deadline_unix_ms = (uint64_t)ts.tv_sec * 1000u + 60000u;
    Sdefed__QueryResult *r = query_run(&cfg, &req, NULL);
    sdefed__query_spec__free_unpacked(spec, NULL);
    assert_non_null(r);
    return r;
}

__attribute__((unused)) static Sdefed__QueryResult *run_ok(const char *json)
{
    Sdefed__QueryResult *r = run(json);
    if (r->status != SDEFED__SITE_STATUS__SITE_OK)
        fprintf(stderr, "status %d: %s\n", r->status, r->reason);
    assert_int_equal(r->status, SDEFED__SITE_STATUS__SITE_OK);
    return r;
}

#endif
