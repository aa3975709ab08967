/* agent/db_indexes.c — check and create the indexes the query compilers need (see db_indexes.h).
 *
 * SQLite is inspected with its own short-lived connection (sqlite_master
 * and pragma_index_info), read-only unless --create; PostgreSQL through
 * db_pg.h's administrative connection (pg_index). Table and column names
 * come only from the fixed list below and the OMOP domain map.
 */
#include "db_indexes.h"

#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "db_pg.h"
#include "query_internal.h"
#include "sdefed/log.h"

/* Indexes outside the event domains. */
static const db_index_need fixed_needs[] = {
    { "person", "person_id" },
    { "observation_period", "person_id" },
    { "concept", "concept_id" },
    { "concept_ancestor", "ancestor_concept_id" },
};

static bool need_add(db_index_need *out, size_t max, size_t *n, const char *t, const char *c)
{
    if (!t || !c)
        return true;
    for (size_t k = 0; k < *n; k++)
        if (strcmp(out[k].table, t) == 0 && strcmp(out[k].column, c) == 0)
            return true;
    if (*n >= max)
        return false;
    out[*n].table = t;
    out[*n].column = c;
    (*n)++;
    return true;
}

size_t db_indexes_needed(db_index_need *out, size_t max)
{
    size_t n = 0;
    for (size_t k = 0; k < sizeof fixed_needs / sizeof fixed_needs[0]; k++)
        if (!need_add(out, max, &n, fixed_needs[k].table, fixed_needs[k].column))
            return n;
    for (size_t k = 0; k < query_n_omop_domains; k++) {
        const omop_domain *d = &query_omop_domains[k];
        if (!need_add(out, max, &n, d->table, d->concept_col) ||
            !need_add(out, max, &n, d->table, "person_id"))
            return n;
    }
    return n;
}

/* ---- SQLite ---- */

static int sq_step_any(sqlite3 *db, const char *sql, const char *a, const char *b, bool *any)
{
    sqlite3_stmt *st = NULL;
    *any = false;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    if (b)
        sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *any = (rc == SQLITE_ROW);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SDF_EDB;
}

static int sq_state(sqlite3 *db, const db_index_need *n, db_index_state *out)
{
    bool any;
    int err = sq_step_any(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' "
                              "AND name = ?1 COLLATE NOCASE", n->table, NULL, &any);
    if (err)
        return err;
    if (!any) {
        *out = DB_INDEX_NO_TABLE;
        return 0;
    }
    err = sq_step_any(db, "SELECT 1 FROM sqlite_master m, pragma_index_info(m.name) i "
                          "WHERE m.type = 'index' AND m.tbl_name = ?1 COLLATE NOCASE "
                          "AND i.seqno = 0 AND i.name = ?2 COLLATE NOCASE",
                      n->table, n->column, &any);
    if (!err && !any)   /* an INTEGER PRIMARY KEY is the rowid: indexed */
        err = sq_step_any(db, "SELECT 1 FROM pragma_table_info(?1) WHERE pk = 1 "
                              "AND name = ?2 COLLATE NOCASE AND upper(type) = 'INTEGER' "
                              "AND (SELECT COUNT(*) FROM pragma_table_info(?1) WHERE pk > 0) = 1",
                          n->table, n->column, &any);
    if (err)
        return err;
    *out = any ? DB_INDEX_PRESENT : DB_INDEX_MISSING;
    return 0;
}

static int sq_create(sqlite3 *db, const db_index_need *n)
{
    char sql[256];
    int w = snprintf(sql, sizeof sql,
                     "CREATE INDEX IF NOT EXISTS \"sdefed_%s_%s\" ON \"%s\" (\"%s\")",
                     n->table, n->column, n->table, n->column);
    if (w < 0 || (size_t)w >= sizeof sql)
        return SDF_EOVERFLOW;
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_warn("creating index on %s(%s) failed: %s", n->table, n->column,
                 msg ? msg : "?");
        sqlite3_free(msg);
        return SDF_EDB;
    }
    return 0;
}

static int check_sqlite(const agent_dataset *ds, bool create, const db_index_need *needs,
                        size_t n, db_index_state *states)
{
    sqlite3 *db = NULL;
    int flags = (create ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(ds->path, &db, flags, NULL) != SQLITE_OK) {
        log_warn("dataset %s: cannot open %s for the index check: %s", ds->name, ds->path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return SDF_EDB;
    }
    sqlite3_busy_timeout(db, 5000);
    int err = 0;
    for (size_t k = 0; k < n && !err; k++) {
        err = sq_state(db, &needs[k], &states[k]);
        if (err) {
            log_warn("dataset %s: index check failed: %s", ds->name, sqlite3_errmsg(db));
            break;
        }
        if (create && states[k] == DB_INDEX_MISSING) {
            err = sq_create(db, &needs[k]);
            if (!err)
                states[k] = DB_INDEX_CREATED;
        }
    }
    sqlite3_close(db);
    return err;
}

/* ---- PostgreSQL ---- */

static int check_pg(const agent_dataset *ds, bool create, const db_index_need *needs, size_t n,
                    db_index_state *states)
{
    db_pg_admin *a = NULL;
    int err = db_pg_admin_open(ds, create, &a);
    if (err)
        return err;
    for (size_t k = 0; k < n && !err; k++) {
        bool table = false, present = false;
        err = db_pg_admin_index_exists(a, needs[k].table, needs[k].column, &table, &present);
        if (err)
            break;
        states[k] = !table ? DB_INDEX_NO_TABLE : present ? DB_INDEX_PRESENT : DB_INDEX_MISSING;
        if (create && states[k] == DB_INDEX_MISSING) {
            err = db_pg_admin_index_create(a, needs[k].table, needs[k].column);
            if (!err)
                states[k] = DB_INDEX_CREATED;
        }
    }
    db_pg_admin_close(a);
    return err;
}

int db_indexes_check(const agent_dataset *ds, bool create, db_index_report_fn fn, void *ctx,
                     size_t *n_missing)
{
    db_index_need needs[DB_INDEXES_MAX];
    db_index_state states[DB_INDEXES_MAX];
    size_t n = db_indexes_needed(needs, DB_INDEXES_MAX);
    int err;
    if (n_missing)
        *n_missing = 0;
    if (strcmp(ds->backend, "sqlite") == 0)
        err = check_sqlite(ds, create, needs, n, states);
    else if (strcmp(ds->backend, "postgres") == 0)
        err = check_pg(ds, create, needs, n, states);
    else
        return SDF_ECONFIG;
    if (err)
        return err;
    for (size_t k = 0; k < n; k++) {
        if (fn)
            fn(ctx, &needs[k], states[k]);
        if (n_missing && states[k] == DB_INDEX_MISSING)
            (*n_missing)++;
    }
    return 0;
}

/* ---- start-up warning ---- */

typedef struct missing_list {
    char text[1024];
    size_t len;
    bool truncated;
} missing_list;

static void collect_missing(void *ctx, const db_index_need *need, db_index_state st)
{
    missing_list *m = ctx;
    if (st != DB_INDEX_MISSING)
        return;
    int w = snprintf(m->text + m->len, sizeof m->text - m->len, "%s%s(%s)",
                     m->len ? ", " : "", need->table, need->column);
    if (w < 0 || (size_t)w >= sizeof m->text - m->len) {
        m->truncated = true;
        m->text[m->len] = '\0';
        return;
    }
    m->len += (size_t)w;
}

void db_indexes_log_missing(const agent_config *cfg)
{
    for (size_t i = 0; i < cfg->n_datasets; i++) {
        const agent_dataset *ds = &cfg->datasets[i];
        if (strcmp(ds->type, "omop") != 0)
            continue;   /* the OMOP index list means nothing for a predictions table */
        missing_list m = { .len = 0 };
        size_t n_missing = 0;
        m.text[0] = '\0';
        int err = db_indexes_check(ds, false, collect_missing, &m, &n_missing);
        if (err) {
            log_warn("dataset %s: could not check its indexes (%s)", ds->name, sdf_strerror(err));
            continue;
        }
        if (n_missing)
            log_warn("dataset %s: %zu index(es) the queries need are missing: %s%s; queries "
                     "will be slow on large data (create them with: sdefed-agent --config FILE "
                     "indexes --create)", ds->name, n_missing, m.text, m.truncated ? ", ..." : "");
        else
            log_info("dataset %s: all indexes the queries need are present", ds->name);
    }
}

/* ---- the operator command ---- */

static const char *state_name(db_index_state st)
{
    switch (st) {
    case DB_INDEX_PRESENT: return "present";
    case DB_INDEX_MISSING: return "MISSING";
    case DB_INDEX_NO_TABLE: return "no table";
    case DB_INDEX_CREATED: return "created";
    }
    return "?";
}

static void print_state(void *ctx, const db_index_need *need, db_index_state st)
{
    const char *ds = ctx;
    printf("%-16s %-22s %-22s %s\n", ds, need->table, need->column, state_name(st));
}

int db_indexes_command(const agent_config *cfg, int argc, char **argv)
{
    bool create = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--create") == 0) {
            create = true;
        } else if (strcmp(argv[i], "--dataset") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "sdefed-agent: usage: indexes [--create] [--dataset NAME]\n");
            return 2;
        }
    }
    if (only && !agent_config_dataset(cfg, only)) {
        fprintf(stderr, "sdefed-agent: no dataset '%s' in the configuration\n", only);
        return 1;
    }
    size_t total_missing = 0;
    printf("%-16s %-22s %-22s %s\n", "dataset", "table", "column", "index");
    fflush(stdout);
    for (size_t i = 0; i < cfg->n_datasets; i++) {
        const agent_dataset *ds = &cfg->datasets[i];
        if (only && strcmp(ds->name, only) != 0)
            continue;
        if (strcmp(ds->type, "omop") != 0) {
            if (only) {
                fprintf(stderr, "sdefed-agent: dataset '%s' is not an OMOP dataset\n", only);
                return 1;
            }
            continue;
        }
        size_t n_missing = 0;
        int err = db_indexes_check(ds, create, print_state, (void *)ds->name, &n_missing);
        fflush(stdout);
        if (err) {
            fprintf(stderr, "sdefed-agent: dataset %s: index %s failed: %s\n", ds->name,
                    create ? "creation" : "check", sdf_strerror(err));
            return 1;
        }
        total_missing += n_missing;
    }
    if (total_missing) {
        fprintf(stderr, "sdefed-agent: %zu index(es) missing (run with --create to build them)\n",
                total_missing);
        return 1;
    }
    return 0;
}
