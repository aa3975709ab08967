/* agent/governance/review.c — the review queue table (review.h). */
#include "governance/review.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/log.h"

#define HELD_COLUMNS                                                                          \
    "id, query_id, project, requester, kind, spec_json, created_ms, expires_ms, state,"       \
    " decided_ms, decided_by, reason, result, result_sha256, notified"

void held_item_clear(held_item *h)
{
    free(h->spec_json);
    free(h->result);
    h->spec_json = NULL;
    h->result = NULL;
    h->result_len = 0;
}

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t len)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    snprintf(dst, len, "%s", t ? t : "");
}

static int row_to_item(sqlite3_stmt *st, held_item *h)
{
    memset(h, 0, sizeof *h);
    h->id = sqlite3_column_int64(st, 0);
    copy_col(st, 1, h->query_id, sizeof h->query_id);
    copy_col(st, 2, h->project, sizeof h->project);
    copy_col(st, 3, h->requester, sizeof h->requester);
    copy_col(st, 4, h->kind, sizeof h->kind);
    const char *sj = (const char *)sqlite3_column_text(st, 5);
    h->spec_json = strdup(sj ? sj : "");
    h->created_ms = sqlite3_column_int64(st, 6);
    h->expires_ms = sqlite3_column_int64(st, 7);
    copy_col(st, 8, h->state, sizeof h->state);
    h->decided_ms = sqlite3_column_int64(st, 9);
    copy_col(st, 10, h->decided_by, sizeof h->decided_by);
    copy_col(st, 11, h->reason, sizeof h->reason);
    const void *blob = sqlite3_column_blob(st, 12);
    int bl = sqlite3_column_bytes(st, 12);
    h->result = malloc(bl > 0 ? (size_t)bl : 1);
    if (h->result && bl > 0)
        memcpy(h->result, blob, (size_t)bl);
    h->result_len = bl > 0 ? (size_t)bl : 0;
    copy_col(st, 13, h->result_sha256, sizeof h->result_sha256);
    h->notified = sqlite3_column_int(st, 14) != 0;
    if (!h->spec_json || !h->result) {
        held_item_clear(h);
        return SDF_ENOMEM;
    }
    return 0;
}

audit_entry review_audit_entry(const held_item *h, const char *event, const char *actor,
                               const char *reason, char spec_sha[AUDIT_HASH_HEX + 1])
{
    audit_sha256_hex(h->spec_json ? h->spec_json : "", h->spec_json ? strlen(h->spec_json) : 0,
                     spec_sha);
    audit_entry e = {
        .event = event, .query_id = h->query_id, .requester = h->requester,
        .project = h->project, .kind = h->kind, .spec_sha256 = spec_sha,
        .reason = reason, .release_sha256 = h->result_sha256, .actor = actor,
    };
    return e;
}

int review_hold(state *s, const held_item *it, const audit_entry *held_audit, int64_t *id_out)
{
    sqlite3 *db = state_db(s);
    if (state_begin(s) != 0)
        return SDF_EDB;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO held(query_id, project, requester, kind, spec_json,"
                           " created_ms, expires_ms, result, result_sha256)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, it->query_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, it->project, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, it->requester, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, it->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, it->spec_json ? it->spec_json : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, it->created_ms);
    sqlite3_bind_int64(st, 7, it->expires_ms);
    sqlite3_bind_blob(st, 8, it->result ? (const void *)it->result : (const void *)"",
                      (int)it->result_len, SQLITE_STATIC);
    sqlite3_bind_text(st, 9, it->result_sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        goto fail;
    int64_t id = sqlite3_last_insert_rowid(db);
    if (audit_append_in_tx(s, held_audit, NULL, NULL) != 0)
        goto fail;
    if (state_commit(s) != 0)
        return SDF_EDB;
    if (id_out)
        *id_out = id;
    return 0;
fail:
    log_error("review: hold: %s", sqlite3_errmsg(db));
    state_rollback(s);
    return SDF_EDB;
}

static bool all_digits(const char *s)
{
    if (!*s || strlen(s) > 18)
        return false;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

int review_get(state *s, const char *key, held_item *out)
{
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    bool by_id = all_digits(key);
    if (sqlite3_prepare_v2(db,
                           by_id ? "SELECT " HELD_COLUMNS " FROM held WHERE id = ?1"
                                 : "SELECT " HELD_COLUMNS " FROM held WHERE query_id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    if (by_id)
        sqlite3_bind_int64(st, 1, strtoll(key, NULL, 10));
    else
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int out_rc = rc == SQLITE_ROW ? row_to_item(st, out) : rc == SQLITE_DONE ? SDF_ENOTFOUND
                                                                             : SDF_EDB;
    sqlite3_finalize(st);
    return out_rc;
}

int review_each(state *s, bool all, int (*fn)(const held_item *h, void *arg), void *arg)
{
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           all ? "SELECT " HELD_COLUMNS " FROM held ORDER BY id"
                               : "SELECT " HELD_COLUMNS " FROM held WHERE state = 'held'"
                                 " ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    int rc, out = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        held_item h;
        out = row_to_item(st, &h);
        if (out)
            break;
        int stop = fn(&h, arg);
        held_item_clear(&h);
        if (stop)
            break;
    }
    if (out == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        out = SDF_EDB;
    sqlite3_finalize(st);
    return out;
}

/* Set state (and decision fields) of id, inside the caller's transaction. */
static int set_state(state *s, int64_t id, const char *new_state, int64_t now,
                     const char *actor, const char *reason)
{
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "UPDATE held SET state = ?2, decided_ms = ?3, decided_by = ?4,"
                           " reason = ?5 WHERE id = ?1 AND state = 'held'",
                           -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, new_state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, actor ? actor : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, reason ? reason : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return SDF_EDB;
    return sqlite3_changes(db) == 1 ? 0 : SDF_EREFUSED;
}

static bool reason_ok(const char *r)
{
    size_t n = 0;
    for (; r[n]; n++)
        if (n >= 200 || !isprint((unsigned char)r[n]))
            return false;
    return n > 0;
}

int review_decide(state *s, int64_t id, bool approve, const char *actor, const char *reason,
                  int64_t now, char *err, size_t errlen)
{
    if (!approve && (!reason || !reason_ok(reason))) {
        snprintf(err, errlen, "a rejection needs --reason TEXT (printable, 1..200 characters)");
        return SDF_EINVAL;
    }
    if (state_begin(s) != 0) {
        snprintf(err, errlen, "state database busy or unavailable");
        return SDF_EDB;
    }
    char key[24];
    snprintf(key, sizeof key, "%lld", (long long)id);
    held_item h;
    int rc = review_get(s, key, &h);
    if (rc) {
        state_rollback(s);
        snprintf(err, errlen, rc == SDF_ENOTFOUND ? "no held result %lld" : "state database error",
                 (long long)id);
        return rc;
    }
    char spec_sha[AUDIT_HASH_HEX + 1];
    if (strcmp(h.state, "held") != 0) {
        snprintf(err, errlen, "held result %lld is already %s", (long long)id, h.state);
        rc = SDF_EREFUSED;
        goto fail;
    }
    if (h.expires_ms <= now) {
        audit_entry e = review_audit_entry(&h, "expired", actor, "not reviewed in time", spec_sha);
        if (set_state(s, id, "expired", now, actor, "not reviewed in time") != 0 ||
            audit_append_in_tx(s, &e, NULL, NULL) != 0) {
            rc = SDF_EDB;
            snprintf(err, errlen, "state database error");
            goto fail;
        }
        held_item_clear(&h);
        snprintf(err, errlen, "held result %lld expired before it was reviewed", (long long)id);
        return state_commit(s) == 0 ? SDF_ETIMEOUT : SDF_EDB;
    }
    audit_entry e = review_audit_entry(&h, approve ? "approved" : "rejected", actor,
                                       approve ? "approved by the custodian" : reason, spec_sha);
    rc = set_state(s, id, approve ? "approved" : "rejected", now, actor, approve ? "" : reason);
    if (rc == 0)
        rc = audit_append_in_tx(s, &e, NULL, NULL);
    if (rc) {
        snprintf(err, errlen, "state database error");
        goto fail;
    }
    held_item_clear(&h);
    if (state_commit(s) != 0) {
        snprintf(err, errlen, "state database error");
        return SDF_EDB;
    }
    return 0;
fail:
    held_item_clear(&h);
    state_rollback(s);
    return rc;
}

int review_expire_due(state *s, int64_t now)
{
    sqlite3 *db = state_db(s);
    if (state_begin(s) != 0)
        return SDF_EDB;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT " HELD_COLUMNS " FROM held WHERE state = 'held'"
                           " AND expires_ms <= ?1 ORDER BY id LIMIT 64",
                           -1, &st, NULL) != SQLITE_OK) {
        state_rollback(s);
        return SDF_EDB;
    }
    sqlite3_bind_int64(st, 1, now);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        held_item h;
        if (row_to_item(st, &h) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        char spec_sha[AUDIT_HASH_HEX + 1];
        audit_entry e = review_audit_entry(&h, "expired", "agent", "not reviewed in time",
                                           spec_sha);
        int err = set_state(s, h.id, "expired", now, "agent", "not reviewed in time");
        if (err == 0)
            err = audit_append_in_tx(s, &e, NULL, NULL);
        held_item_clear(&h);
        if (err) {
            rc = SQLITE_ERROR;
            break;
        }
        n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        state_rollback(s);
        return SDF_EDB;
    }
    if (n == 0) {
        state_rollback(s);
        return 0;
    }
    return state_commit(s) == 0 ? n : SDF_EDB;
}

int review_next_outgoing(state *s, held_item *out)
{
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "SELECT " HELD_COLUMNS " FROM held WHERE notified = 0"
                           " AND state IN ('approved', 'rejected', 'expired') ORDER BY id LIMIT 1",
                           -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    int rc = sqlite3_step(st);
    int out_rc = rc == SQLITE_ROW ? row_to_item(st, out) : rc == SQLITE_DONE ? SDF_ENOTFOUND
                                                                             : SDF_EDB;
    sqlite3_finalize(st);
    return out_rc;
}

int review_mark_notified(state *s, int64_t id, const audit_entry *e)
{
    sqlite3 *db = state_db(s);
    if (state_begin(s) != 0)
        return SDF_EDB;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "UPDATE held SET notified = 1 WHERE id = ?1", -1, &st, NULL) !=
        SQLITE_OK) {
        state_rollback(s);
        return SDF_EDB;
    }
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || (e && audit_append_in_tx(s, e, NULL, NULL) != 0)) {
        state_rollback(s);
        return SDF_EDB;
    }
    return state_commit(s);
}
