/* tests/unit/agent/validate_fixture.h — what the validate query tests share.
 *
 * A predictions table `p` (pid identifier, score, y label, grp category,
 * mv model_version) in an SQLite file under a temp dir, declared as the
 * `type = table` dataset "preds" of a one-dataset agent config with the
 * default disclosure policy; a validate request to fill in; query_run()
 * with the expected site status. Each test file writes its own rows
 * (fixture_create() then fixture_exec() INSERTs) and includes this once.
 */
#ifndef TEST_VALIDATE_FIXTURE_H
#define TEST_VALIDATE_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "query.h"

static char tmpdir[256], dbpath[300];
static agent_config cfg;

static void fixture_exec(sqlite3 *db, const char *sql)
{
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", sql, e);
        sqlite3_free(e);
        fail();
    }
}

/* A fresh temp dir and database with an empty table p, opened in a
 * transaction; the caller inserts, then fixture_declare(). */
static sqlite3 *fixture_create(const char *prefix)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/%s-XXXXXX", prefix);
    assert_non_null(mkdtemp(tmpdir));
    snprintf(dbpath, sizeof dbpath, "%s/preds.sqlite", tmpdir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    fixture_exec(db, "CREATE TABLE p (pid INTEGER, score REAL, y INTEGER, grp TEXT, mv TEXT)");
    fixture_exec(db, "BEGIN");
    return db;
}

/* Commit, close, and declare the table as dataset "preds" in cfg. */
static void fixture_declare(sqlite3 *db)
{
    fixture_exec(db, "COMMIT");
    sqlite3_close(db);
    memset(&cfg, 0, sizeof cfg);
    disc_policy_default(&cfg.policy);   /* min_cell 10, rounding 5 */
    agent_dataset *d = &cfg.datasets[0];
    snprintf(d->name, sizeof d->name, "preds");
    snprintf(d->type, sizeof d->type, "table");
    snprintf(d->backend, sizeof d->backend, "sqlite");
    snprintf(d->path, sizeof d->path, "%s", dbpath);
    snprintf(d->table, sizeof d->table, "p");
    const char *names[] = { "pid", "score", "y", "grp", "mv" };
    agent_column_role roles[] = { AGENT_COL_IDENTIFIER, AGENT_COL_SCORE, AGENT_COL_LABEL,
                                  AGENT_COL_CATEGORY, AGENT_COL_MODEL_VERSION };
    for (size_t k = 0; k < 5; k++) {
        snprintf(d->columns[k].name, sizeof d->columns[k].name, "%s", names[k]);
        d->columns[k].role = roles[k];
    }
    d->n_columns = 5;
    cfg.n_datasets = 1;
}

static int teardown(void **state)
{
    (void)state;
    unlink(dbpath);
    rmdir(tmpdir);
    return 0;
}

typedef struct req_buf {
    Sdefed__QueryRequest req;
    Sdefed__QuerySpec spec;
    Sdefed__ValidateSpec v;
    double th[8];
    char *by[2];
    char *cmp[2];
} req_buf;

/* A validate request for dataset "preds", project "demo", nothing set. */
static void req_init(req_buf *b)
{
    memset(b, 0, sizeof *b);
    sdefed__query_request__init(&b->req);
    sdefed__query_spec__init(&b->spec);
    sdefed__validate_spec__init(&b->v);
    b->req.query_id = "q-1";
    b->req.spec = &b->spec;
    b->spec.kind = SDEFED__QUERY_KIND__KIND_VALIDATE;
    b->spec.project = "demo";
    b->spec.dataset = "preds";
    b->spec.validate = &b->v;
    b->v.thresholds = b->th;
    b->v.by = b->by;
}

static Sdefed__QueryResult *run(req_buf *b, Sdefed__SiteStatus want)
{
    Sdefed__QueryResult *r = query_run(&cfg, &b->req, NULL);
    assert_non_null(r);
    if (r->status != want)
        fprintf(stderr, "status %d reason %s\n", r->status, r->reason);
    assert_int_equal(r->status, want);
    return r;
}

#endif
