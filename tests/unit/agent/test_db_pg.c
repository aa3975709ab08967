/* tests/unit/agent/test_db_pg.c — the PostgreSQL backend's pure parts, without a server.
 *
 * Identifier validation (the only thing ever written into SQL from the
 * configuration), conninfo parsing and password redaction for logs, the
 * configuration keys of `backend = postgres`, the list of indexes the
 * compilers need, and that a failed connection's log line carries no
 * password. The backend against a real server is covered by
 * tests/integration/test_backends.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_config.h"
#include "db.h"
#include "db_indexes.h"
#include "db_pg.h"

static void identifiers(void **state)
{
    (void)state;
    assert_true(db_pg_ident_valid("cdm"));
    assert_true(db_pg_ident_valid("CDM_5_4"));
    assert_true(db_pg_ident_valid("_x9"));
    char max[64];
    memset(max, 'a', 63);
    max[63] = '\0';
    assert_true(db_pg_ident_valid(max));

    char over[65];
    memset(over, 'a', 64);
    over[64] = '\0';
    assert_false(db_pg_ident_valid(over));
    assert_false(db_pg_ident_valid(NULL));
    assert_false(db_pg_ident_valid(""));
    assert_false(db_pg_ident_valid("1cdm"));
    assert_false(db_pg_ident_valid("cdm\""));
    assert_false(db_pg_ident_valid("cdm\"; DROP TABLE person; --"));
    assert_false(db_pg_ident_valid("cdm.person"));
    assert_false(db_pg_ident_valid("cdm,public"));
    assert_false(db_pg_ident_valid("cdm "));
    assert_false(db_pg_ident_valid("c$dm"));
    assert_false(db_pg_ident_valid("cdm'"));
    assert_false(db_pg_ident_valid("\xc3\xa9t\xc3\xa9"));   /* non-ASCII */
}

static void conninfo_validity(void **state)
{
    (void)state;
    assert_true(db_pg_conninfo_valid("host=/tmp dbname=omop user=ro"));
    assert_true(db_pg_conninfo_valid("postgresql://ro@localhost:5433/omop?sslmode=require"));
    assert_true(db_pg_conninfo_valid(""));          /* libpq: all defaults */
    assert_false(db_pg_conninfo_valid(NULL));
    assert_false(db_pg_conninfo_valid("host=/tmp nosuchkeyword=1"));
    assert_false(db_pg_conninfo_valid("host='unterminated"));
}

static void redaction_hides_passwords(void **state)
{
    (void)state;
    char out[512];
    assert_int_equal(db_pg_conninfo_redact("host=/tmp dbname=omop user=ro password=hunter2",
                                           out, sizeof out), 0);
    assert_null(strstr(out, "hunter2"));
    assert_non_null(strstr(out, "password='***'"));
    assert_non_null(strstr(out, "dbname='omop'"));
    assert_non_null(strstr(out, "user='ro'"));

    /* Quoted, with spaces and quotes inside. */
    assert_int_equal(db_pg_conninfo_redact("dbname=omop password='a b\\'c secret'", out,
                                           sizeof out), 0);
    assert_null(strstr(out, "secret"));
    assert_null(strstr(out, "a b"));

    /* URI form: the password in the authority part. */
    assert_int_equal(db_pg_conninfo_redact("postgresql://ro:s3cr3tpw@db.example:5432/omop", out,
                                           sizeof out), 0);
    assert_null(strstr(out, "s3cr3tpw"));
    assert_non_null(strstr(out, "host='db.example'"));
    assert_non_null(strstr(out, "password='***'"));

    /* URI form: password as a query parameter. */
    assert_int_equal(db_pg_conninfo_redact("postgresql:///omop?password=qpw999&user=x", out,
                                           sizeof out), 0);
    assert_null(strstr(out, "qpw999"));

    /* Values with quote and backslash are escaped, so the output parses
     * back to the same options. */
    assert_int_equal(db_pg_conninfo_redact("dbname='o\\'m'", out, sizeof out), 0);
    assert_string_equal(out, "dbname='o\\'m'");
    assert_true(db_pg_conninfo_valid(out));

    /* Unparseable input: a fixed text, nothing of the input. */
    assert_int_equal(db_pg_conninfo_redact("password=leak99 host='x", out, sizeof out),
                     SDF_EINVAL);
    assert_null(strstr(out, "leak99"));

    /* Too small: empty, never a prefix holding part of a secret. */
    char tiny[20];
    assert_int_equal(db_pg_conninfo_redact("dbname=omop password=hunter2 user=ro", tiny,
                                           sizeof tiny), SDF_EOVERFLOW);
    assert_string_equal(tiny, "");
    assert_int_equal(db_pg_conninfo_redact("dbname=omop", out, 0), SDF_EOVERFLOW);
}

static void config_keys(void **state)
{
    (void)state;
    char path[] = "/tmp/sdefed-test-pgconf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fprintf(f, "[agent]\nsite_id = site-a\ncoordinator = 127.0.0.1:7443\ncert = a.crt\n"
               "key = a.key\nca = ca.crt\nstate_dir = state\n"
               "[dataset cdm]\ntype = omop\nbackend = postgres\n"
               "conninfo = host=/run/postgresql dbname=omop user=ro\nschema = cdm54\n"
               "[dataset lite]\ntype = omop\npath = omop.sqlite\n");
    fclose(f);
    agent_config *cfg = malloc(sizeof *cfg);
    assert_non_null(cfg);
    char err[1024];
    int rc = agent_config_load(path, cfg, err, sizeof err);
    unlink(path);
    assert_int_equal(rc, 0);
    const agent_dataset *d = agent_config_dataset(cfg, "cdm");
    assert_non_null(d);
    assert_string_equal(d->backend, "postgres");
    assert_string_equal(d->conninfo, "host=/run/postgresql dbname=omop user=ro");
    assert_string_equal(d->schema, "cdm54");
    assert_string_equal(d->path, "");
    d = agent_config_dataset(cfg, "lite");
    assert_string_equal(d->backend, "sqlite");
    assert_string_equal(d->conninfo, "");
    free(cfg);
}

static void bad_conninfo_error_never_echoes_it(void **state)
{
    (void)state;
    agent_config *cfg = malloc(sizeof *cfg);
    assert_non_null(cfg);
    char err[1024] = "";
    assert_int_equal(agent_config_load("tests/data/agent-conf/bad-pg-conninfo.conf", cfg, err,
                                       sizeof err), SDF_ECONFIG);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "conninfo"));
    free(cfg);
}

/* A connection that fails logs the redacted conninfo: capture stderr and
 * look for the password. The socket directory does not exist, so libpq
 * fails at once without a server. */
static void failed_connect_logs_no_password(void **state)
{
    (void)state;
    agent_dataset ds;
    memset(&ds, 0, sizeof ds);
    snprintf(ds.name, sizeof ds.name, "cdm");
    snprintf(ds.type, sizeof ds.type, "omop");
    snprintf(ds.backend, sizeof ds.backend, "postgres");
    snprintf(ds.conninfo, sizeof ds.conninfo,
             "host=/nonexistent/sdefed-no-such-dir port=1 dbname=omop user=ro "
             "password=TopSecret42 connect_timeout=2");
    snprintf(ds.schema, sizeof ds.schema, "cdm");

    char logpath[] = "/tmp/sdefed-test-pglog-XXXXXX";
    int lfd = mkstemp(logpath);
    assert_true(lfd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(lfd, STDERR_FILENO) >= 0);

    db_conn *c = NULL;
    int rc = db_open(&ds, 0, NULL, &c);
    size_t missing = 99;
    int irc = db_indexes_check(&ds, false, NULL, NULL, &missing);

    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    assert_int_equal(rc, SDF_EDB);
    assert_null(c);
    assert_int_equal(irc, SDF_EDB);

    char buf[8192];
    ssize_t n = pread(lfd, buf, sizeof buf - 1, 0);
    close(lfd);
    unlink(logpath);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_null(strstr(buf, "TopSecret42"));
    assert_non_null(strstr(buf, "cannot connect"));
    assert_non_null(strstr(buf, "password='***'"));
}

/* A schema that is not an identifier never reaches a connection. */
static void bad_schema_refused_before_connecting(void **state)
{
    (void)state;
    agent_dataset ds;
    memset(&ds, 0, sizeof ds);
    snprintf(ds.name, sizeof ds.name, "cdm");
    snprintf(ds.backend, sizeof ds.backend, "postgres");
    snprintf(ds.conninfo, sizeof ds.conninfo, "host=/nonexistent dbname=omop");
    snprintf(ds.schema, sizeof ds.schema, "x\"; DROP SCHEMA cdm; --");
    db_conn *c = NULL;
    assert_int_equal(db_open(&ds, 0, NULL, &c), SDF_ECONFIG);
    assert_null(c);
}

static void needed_indexes(void **state)
{
    (void)state;
    db_index_need n[DB_INDEXES_MAX];
    size_t k = db_indexes_needed(n, DB_INDEXES_MAX);
    bool drug_concept = false, drug_person = false, ancestor = false;
    for (size_t i = 0; i < k; i++) {
        assert_true(db_pg_ident_valid(n[i].table));
        assert_true(db_pg_ident_valid(n[i].column));
        for (size_t j = 0; j < i; j++)
            assert_false(strcmp(n[i].table, n[j].table) == 0 &&
                         strcmp(n[i].column, n[j].column) == 0);
        if (strcmp(n[i].table, "drug_exposure") == 0) {
            drug_concept |= strcmp(n[i].column, "drug_concept_id") == 0;
            drug_person |= strcmp(n[i].column, "person_id") == 0;
        }
        ancestor |= strcmp(n[i].table, "concept_ancestor") == 0 &&
                    strcmp(n[i].column, "ancestor_concept_id") == 0;
    }
    assert_true(drug_concept && drug_person && ancestor);
    /* The cap is respected. */
    assert_int_equal(db_indexes_needed(n, 3), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(identifiers),
        cmocka_unit_test(conninfo_validity),
        cmocka_unit_test(redaction_hides_passwords),
        cmocka_unit_test(config_keys),
        cmocka_unit_test(bad_conninfo_error_never_echoes_it),
        cmocka_unit_test(failed_connect_logs_no_password),
        cmocka_unit_test(bad_schema_refused_before_connecting),
        cmocka_unit_test(needed_indexes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
