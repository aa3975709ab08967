/* agent/governance/audit.h — the agent's tamper-evident audit log.
 *
 * An append-only table `audit` in the state database, one row per event:
 * received, refused, answered, held, approved, rejected, expired, released,
 * failed. A row says who asked (requester), for which project, which query
 * (query id, kind, SHA-256 of the canonical spec), what was decided and
 * why (reason), the SHA-256 of exactly what left the site (the packed
 * QueryResult), the signed-protocol signer and signature when one was
 * used, and which operator acted (actor). Never a data value, a row, an
 * identifier from the data, or a count below the disclosure threshold.
 *
 * Hash chain: row n stores prev_hash = hash of row n-1 (64 zeros for row 1)
 * and hash = hex SHA-256 of its canonical content:
 *   "sdefed-audit-v1" then, for each field in this order
 *   seq, ts_ms, event, query_id, requester, project, kind, spec_sha256,
 *   reason, release_sha256, signer, signature, actor, prev_hash
 *   the bytes "\n" NAME "=" LENGTH ":" VALUE   (LENGTH decimal, VALUE raw)
 * The chain head (last seq and hash) is also kept in table audit_head,
 * updated in the same transaction, and written to the daemon's log; so an
 * edited, inserted, deleted or reordered row — including the last one — is
 * found by audit_verify(). Someone able to rewrite the whole database can
 * rebuild a consistent chain: compare the head with a copy kept elsewhere
 * (journald, `audit verify --head SEQ:HASH`).
 *
 * Durability: each append is one IMMEDIATE transaction (row + head) on a
 * WAL database with synchronous=FULL, so a committed entry survives a crash
 * and a kill -9 mid-append leaves either the whole entry or none.
 */
#ifndef AGENT_GOV_AUDIT_H
#define AGENT_GOV_AUDIT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "state.h"

#define AUDIT_HASH_HEX 64

typedef struct audit_entry {
    const char *event;           /* required: received|refused|answered|held|... */
    const char *query_id;        /* the rest may be NULL (stored as "") */
    const char *requester;
    const char *project;
    const char *kind;
    const char *spec_sha256;
    const char *reason;
    const char *release_sha256;
    const char *signer;          /* key id of a signed protocol */
    const char *signature;       /* base64 */
    const char *actor;           /* "agent" or the operator's user name */
} audit_entry;

/* Append e (ts = now) in its own transaction. Returns 0 and, when not
 * NULL, the new row's seq and hash; or SDF_EDB / SDF_ENOMEM. Strings are
 * capped at 1024 bytes each. */
int audit_append(state *s, const audit_entry *e, int64_t *seq_out,
                 char hash_out[AUDIT_HASH_HEX + 1]) SDF_MUSTCHECK;

/* Same, inside a transaction the caller already began (state_begin). */
int audit_append_in_tx(state *s, const audit_entry *e, int64_t *seq_out,
                       char hash_out[AUDIT_HASH_HEX + 1]) SDF_MUSTCHECK;

typedef struct audit_report {
    bool ok;
    int64_t rows;                 /* rows checked */
    int64_t bad_seq;              /* first bad row (seq), or 0 */
    char problem[256];            /* what is wrong with it */
    int64_t head_seq;             /* chain head from audit_head */
    char head_hash[AUDIT_HASH_HEX + 1];
} audit_report;

/* Walk the whole chain. Returns 0 with *r filled (r->ok says whether the
 * log is intact), or SDF_EDB when it cannot be read. If want_seq > 0 the
 * row want_seq must also exist with hash want_hash (an externally kept
 * head). */
int audit_verify(state *s, int64_t want_seq, const char *want_hash, audit_report *r) SDF_MUSTCHECK;

/* Write every row with ts_ms >= since_ms as one JSON object per line.
 * Returns the number of rows, or SDF_EDB / SDF_EIO / SDF_ENOMEM. */
int64_t audit_export(state *s, int64_t since_ms, FILE *out);

/* Lowercase hex SHA-256 of data into out[65]. */
void audit_sha256_hex(const void *data, size_t len, char out[AUDIT_HASH_HEX + 1]);

#endif
