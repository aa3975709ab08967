/* agent/db_pg.h — PostgreSQL-specific entry points besides the db_ops table.
 *
 * The query path reaches PostgreSQL only through db.h (db_open() dispatches
 * to db_pg_open() for `backend = postgres`). This header adds what the
 * configuration loader and the operator's `indexes` command need: the pure
 * helpers (identifier and conninfo checks, password redaction for logs) and
 * a small administrative connection that can be opened read-write, used
 * only by `sdefed-agent --config F indexes --create`.
 */
#ifndef AGENT_DB_PG_H
#define AGENT_DB_PG_H

#include <stdbool.h>
#include <stddef.h>

#include "agent_config.h"
#include "sdefed/err.h"

/* Maximum length of a schema identifier (PostgreSQL's NAMEDATALEN - 1). */
#define DB_PG_IDENT_MAX 63

/* True when s is 1..63 characters of [A-Za-z0-9_] not starting with a
 * digit. Only such names are ever written into SQL (always double-quoted,
 * so case is kept exactly). Pure; s may be NULL (false). */
bool db_pg_ident_valid(const char *s);

/* True when libpq can parse conninfo (keyword=value form or a
 * postgresql:// URI). Pure: nothing is contacted. */
bool db_pg_conninfo_valid(const char *conninfo);

/* Write a loggable form of conninfo into out: every option it sets as
 * keyword='value', with the password's value replaced by ***. Returns 0,
 * SDF_EINVAL if conninfo does not parse (out then says so, without any of
 * the input), SDF_EOVERFLOW if out is too small (out is then empty), or
 * SDF_ENOMEM. Never copies a password into out in any case. */
int db_pg_conninfo_redact(const char *conninfo, char *out, size_t len) SDF_MUSTCHECK;

/* ---- administrative connection (the `indexes` operator command) -------- */

typedef struct db_pg_admin db_pg_admin;

/* Connect to dataset ds (backend postgres) with search_path set to its
 * schema. Read-only unless writable. Returns 0 and *out (free with
 * db_pg_admin_close), SDF_EDB (logged, password redacted) or SDF_ENOMEM. */
int db_pg_admin_open(const agent_dataset *ds, bool writable, db_pg_admin **out) SDF_MUSTCHECK;

/* *table_exists = the table exists in the schema; *exists = some index on
 * it has `column` as its first key column. Names are our fixed internal
 * names and are passed as parameters. Returns 0 or SDF_EDB. */
int db_pg_admin_index_exists(db_pg_admin *a, const char *table, const char *column,
                             bool *table_exists, bool *exists) SDF_MUSTCHECK;

/* CREATE INDEX IF NOT EXISTS sdefed_TABLE_COLUMN ON TABLE (COLUMN), then
 * ANALYZE TABLE. table and column must be identifiers (checked: SDF_EINVAL
 * otherwise). Needs a writable connection. Returns 0 or SDF_EDB. */
int db_pg_admin_index_create(db_pg_admin *a, const char *table, const char *column) SDF_MUSTCHECK;

/* Close (NULL is fine). */
void db_pg_admin_close(db_pg_admin *a);

#endif
