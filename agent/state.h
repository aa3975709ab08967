/* agent/state.h — the agent's own state database (one SQLite file).
 *
 * `state.db` in the configured state_dir holds what the agent must remember
 * across restarts: approved projects, the review queue, the hash-chained
 * audit log (agent/governance/), and whatever later modules add. It is
 * opened by the daemon and by the operator subcommands (`sdefed-agent
 * project|review|audit ...`), so two processes share it: WAL journal,
 * busy_timeout, short transactions. Created with mode 0600 (the directory is
 * 0700). synchronous=FULL: a committed transaction survives power loss
 * (the audit log relies on it).
 *
 * Schema migrations are versioned with PRAGMA user_version: state.c holds
 * one ordered list of migration steps; step i brings the database from
 * version i to i+1 inside one transaction. A module that needs tables adds
 * a step at the END of that list (never edits an old one). A database newer
 * than this program is refused.
 *
 * Threads: a handle is for one thread at a time. The daemon's loop thread
 * keeps one; anything else opens its own.
 */
#ifndef AGENT_STATE_H
#define AGENT_STATE_H

#include <stddef.h>
#include <sqlite3.h>

#include "sdefed/err.h"
#include "sdefed/stmt_cache.h"

typedef struct state state;

#define STATE_FILE "state.db"

/* Open (creating the directory 0700 and the file 0600 if needed) and
 * migrate state_dir/state.db. Returns 0 and *out, or SDF_EDB / SDF_EIO /
 * SDF_ENOMEM with a reason in err (*out NULL). Close with state_close. */
int state_open(const char *state_dir, state **out, char *err, size_t errlen) SDF_MUSTCHECK;

/* Close (NULL is fine). */
void state_close(state *s);

/* The SQLite handle, valid until state_close. Do not close it yourself. */
sqlite3 *state_db(state *s);

/* Statements kept on that handle (stmt_cache.h), for what runs on every
 * query; valid until state_close. */
stmt_cache *state_stmts(state *s);

/* The schema version this program migrates to (for tests and `--version`). */
int state_schema_version(void);

/* BEGIN IMMEDIATE / COMMIT / ROLLBACK helpers: 0 or SDF_EDB (logged). */
int state_begin(state *s) SDF_MUSTCHECK;
int state_commit(state *s) SDF_MUSTCHECK;
void state_rollback(state *s);

#endif
