/* agent/state.c — open and migrate the agent's state database (state.h). */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sdefed/log.h"

struct state {
    sqlite3 *db;
    stmt_cache stmts;   /* statements run on every query (the audit log) */
};

/* Ordered migrations: migrations[i] takes user_version i to i+1. Append
 * only; never edit a step that has shipped. */
static const char *const migrations[] = {
    /* 1: governance (issue 7) — projects, review queue, audit log. */
    "CREATE TABLE projects ("
    "  id TEXT PRIMARY KEY,"
    "  description TEXT NOT NULL DEFAULT '',"
    "  kinds TEXT NOT NULL,"            /* comma list or '*' */
    "  datasets TEXT NOT NULL,"
    "  requesters TEXT NOT NULL,"
    "  expires_ms INTEGER NOT NULL DEFAULT 0,"   /* 0 = never */
    "  release TEXT NOT NULL CHECK (release IN ('auto','review')),"
    "  min_cell INTEGER NOT NULL DEFAULT 0,"     /* 0 = site policy */
    "  rounding INTEGER NOT NULL DEFAULT 0,"
    "  zero_is_disclosive INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL,"
    "  revoked_ms INTEGER NOT NULL DEFAULT 0,"
    "  revoke_reason TEXT NOT NULL DEFAULT '');"
    "CREATE TABLE held ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  query_id TEXT NOT NULL UNIQUE,"
    "  project TEXT NOT NULL,"
    "  requester TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  spec_json TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'held'"
    "    CHECK (state IN ('held','approved','rejected','expired')),"
    "  decided_ms INTEGER NOT NULL DEFAULT 0,"
    "  decided_by TEXT NOT NULL DEFAULT '',"
    "  reason TEXT NOT NULL DEFAULT '',"
    "  result BLOB NOT NULL,"                    /* packed QueryResult: controlled values only */
    "  result_sha256 TEXT NOT NULL,"
    "  notified INTEGER NOT NULL DEFAULT 0);"    /* outcome sent to the coordinator */
    "CREATE INDEX held_state ON held(state, notified);"
    "CREATE TABLE audit ("
    "  seq INTEGER PRIMARY KEY,"
    "  ts_ms INTEGER NOT NULL,"
    "  event TEXT NOT NULL,"
    "  query_id TEXT NOT NULL,"
    "  requester TEXT NOT NULL,"
    "  project TEXT NOT NULL,"
    "  kind TEXT NOT NULL,"
    "  spec_sha256 TEXT NOT NULL,"
    "  reason TEXT NOT NULL,"
    "  release_sha256 TEXT NOT NULL,"
    "  signer TEXT NOT NULL,"
    "  signature TEXT NOT NULL,"
    "  actor TEXT NOT NULL,"
    "  prev_hash TEXT NOT NULL,"
    "  hash TEXT NOT NULL);"
    "CREATE TABLE audit_head ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  seq INTEGER NOT NULL,"
    "  hash TEXT NOT NULL);",
};

#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

int state_schema_version(void)
{
    return N_MIGRATIONS;
}

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return SDF_EDB;
    }
    return 0;
}

static int user_version(sqlite3 *db, int *v)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : SDF_EDB;
}

static int migrate(sqlite3 *db, const char *path, char *err, size_t errlen)
{
    char why[512];
    /* Up to date (the usual case): no write lock, so an operator command
     * opening the file never waits behind the daemon's appends. */
    int current = 0;
    if (user_version(db, &current) == 0 && current == N_MIGRATIONS)
        return 0;
    /* IMMEDIATE: two processes starting together must not both migrate. */
    if (exec(db, "BEGIN IMMEDIATE", why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return SDF_EDB;
    }
    int v = 0;
    if (user_version(db, &v) != 0) {
        snprintf(err, errlen, "%s: cannot read the schema version: %s", path, sqlite3_errmsg(db));
        goto fail;
    }
    if (v > N_MIGRATIONS) {
        snprintf(err, errlen, "%s: schema version %d is newer than this program (%d)", path, v,
                 N_MIGRATIONS);
        goto fail;
    }
    for (; v < N_MIGRATIONS; v++) {
        char sql[64];
        if (exec(db, migrations[v], why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: migration to version %d: %s", path, v + 1, why);
            goto fail;
        }
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (exec(db, sql, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s: %s", path, why);
            goto fail;
        }
    }
    if (exec(db, "COMMIT", why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    return 0;
fail:
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return SDF_EDB;
}

int state_open(const char *state_dir, state **out, char *err, size_t errlen)
{
    *out = NULL;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", state_dir, STATE_FILE) >= sizeof path) {
        snprintf(err, errlen, "state_dir path too long");
        return SDF_EINVAL;
    }
    if (mkdir(state_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "state_dir %s: %s", state_dir, strerror(errno));
        return SDF_EIO;
    }
    /* Create the file 0600 ourselves: SQLite would use the umask. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return SDF_EIO;
    }
    close(fd);

    state *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return SDF_ENOMEM;
    }
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    char why[512];
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    if (exec(s->db,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
             "PRAGMA secure_delete=ON;",
             why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        goto fail;
    }
    if (migrate(s->db, path, err, errlen) != 0)
        goto fail;
    stmt_cache_init(&s->stmts, s->db);
    *out = s;
    return 0;
fail:
    sqlite3_close(s->db);
    free(s);
    return SDF_EDB;
}

void state_close(state *s)
{
    if (!s)
        return;
    stmt_cache_clear(&s->stmts);
    sqlite3_close(s->db);
    free(s);
}

stmt_cache *state_stmts(state *s)
{
    return &s->stmts;
}

sqlite3 *state_db(state *s)
{
    return s->db;
}

int state_begin(state *s)
{
    if (stmt_cache_exec(&s->stmts, "BEGIN IMMEDIATE") != SQLITE_OK) {
        log_error("state: begin: %s", sqlite3_errmsg(s->db));
        return SDF_EDB;
    }
    return 0;
}

int state_commit(state *s)
{
    if (stmt_cache_exec(&s->stmts, "COMMIT") != SQLITE_OK) {
        log_error("state: commit: %s", sqlite3_errmsg(s->db));
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return SDF_EDB;
    }
    return 0;
}

void state_rollback(state *s)
{
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}
