/* agent/governance/audit.c — append, verify and export the hash-chained
 * audit log (audit.h). */
#include "governance/audit.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "sdefed/log.h"

#define FIELD_MAX 1024
#define N_FIELDS 14
static const char zero_hash[AUDIT_HASH_HEX + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

static const char *const field_names[N_FIELDS] = {
    "seq", "ts_ms", "event", "query_id", "requester", "project", "kind",
    "spec_sha256", "reason", "release_sha256", "signer", "signature", "actor", "prev_hash",
};

void audit_sha256_hex(const void *data, size_t len, char out[AUDIT_HASH_HEX + 1])
{
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The chain hash of one row, from its 14 field values (text). */
static int row_hash(const char *const vals[N_FIELDS], char out[AUDIT_HASH_HEX + 1])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return SDF_ENOMEM;
    }
    static const char magic[] = "sdefed-audit-v1";
    int ok = EVP_DigestUpdate(ctx, magic, sizeof magic - 1);
    for (int i = 0; i < N_FIELDS && ok; i++) {
        char pre[96];
        size_t vl = strlen(vals[i]);
        int n = snprintf(pre, sizeof pre, "\n%s=%zu:", field_names[i], vl);
        ok = EVP_DigestUpdate(ctx, pre, (size_t)n) == 1 && EVP_DigestUpdate(ctx, vals[i], vl) == 1;
    }
    uint8_t md[32];
    unsigned mdl = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdl) == 1 && mdl == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return SDF_ENOMEM;
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* A field value capped at FIELD_MAX bytes (copied into buf when longer). */
static const char *capped(const char *v, char *buf)
{
    if (!v)
        return "";
    size_t n = strnlen(v, FIELD_MAX + 1);
    if (n <= FIELD_MAX)
        return v;
    memcpy(buf, v, FIELD_MAX);
    buf[FIELD_MAX] = '\0';
    return buf;
}

int audit_append_in_tx(state *s, const audit_entry *e, int64_t *seq_out,
                       char hash_out[AUDIT_HASH_HEX + 1])
{
    sqlite3 *db = state_db(s);
    stmt_cache *sc = state_stmts(s);   /* run on every query: kept prepared */
    sqlite3_stmt *st = NULL;
    int64_t seq = 1;
    char prev[AUDIT_HASH_HEX + 1];
    memcpy(prev, zero_hash, sizeof prev);
    if (stmt_cache_get(sc, "SELECT seq, hash FROM audit_head WHERE id = 1", &st) != SQLITE_OK)
        goto dberr;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        seq = sqlite3_column_int64(st, 0) + 1;
        const char *h = (const char *)sqlite3_column_text(st, 1);
        snprintf(prev, sizeof prev, "%s", h ? h : "");
    } else if (rc != SQLITE_DONE) {
        goto dberr;
    }
    stmt_cache_put(sc, st);
    st = NULL;

    char seqs[24], tss[24];
    snprintf(seqs, sizeof seqs, "%lld", (long long)seq);
    snprintf(tss, sizeof tss, "%lld", (long long)now_ms());
    char *bufs = malloc(11 * (FIELD_MAX + 1));
    if (!bufs)
        return SDF_ENOMEM;
    const char *in[11] = { e->event, e->query_id, e->requester, e->project, e->kind,
                           e->spec_sha256, e->reason, e->release_sha256, e->signer,
                           e->signature, e->actor };
    const char *vals[N_FIELDS];
    vals[0] = seqs;
    vals[1] = tss;
    for (int i = 0; i < 11; i++)
        vals[2 + i] = capped(in[i], bufs + (size_t)i * (FIELD_MAX + 1));
    vals[13] = prev;
    char hash[AUDIT_HASH_HEX + 1];
    if (row_hash(vals, hash) != 0) {
        free(bufs);
        return SDF_ENOMEM;
    }
    if (stmt_cache_get(sc, "INSERT INTO audit(seq, ts_ms, event, query_id, requester, project,"
                           " kind, spec_sha256, reason, release_sha256, signer, signature, actor,"
                           " prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10,"
                           " ?11, ?12, ?13, ?14, ?15)", &st) != SQLITE_OK) {
        free(bufs);
        goto dberr;
    }
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, tss, -1, SQLITE_STATIC);
    for (int i = 2; i < N_FIELDS; i++)
        sqlite3_bind_text(st, i + 1, vals[i], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 15, hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    stmt_cache_put(sc, st);
    st = NULL;
    free(bufs);
    if (rc != SQLITE_DONE)
        goto dberr;
    if (stmt_cache_get(sc, "INSERT INTO audit_head(id, seq, hash) VALUES (1, ?1, ?2)"
                           " ON CONFLICT(id) DO UPDATE SET seq = excluded.seq,"
                           " hash = excluded.hash", &st) != SQLITE_OK)
        goto dberr;
    sqlite3_bind_int64(st, 1, seq);
    sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    stmt_cache_put(sc, st);
    if (rc != SQLITE_DONE)
        return log_error("audit: head: %s", sqlite3_errmsg(db)), SDF_EDB;
    if (seq_out)
        *seq_out = seq;
    if (hash_out)
        memcpy(hash_out, hash, sizeof hash);
    return 0;
dberr:
    log_error("audit: append: %s", sqlite3_errmsg(db));
    stmt_cache_put(sc, st);
    return SDF_EDB;
}

int audit_append(state *s, const audit_entry *e, int64_t *seq_out,
                 char hash_out[AUDIT_HASH_HEX + 1])
{
    int rc = state_begin(s);
    if (rc)
        return rc;
    rc = audit_append_in_tx(s, e, seq_out, hash_out);
    if (rc) {
        state_rollback(s);
        return rc;
    }
    return state_commit(s);
}

static const char *col(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? t : "";
}

/* Is column i stored exactly as audit_append writes it: an INTEGER when
 * want_int, else TEXT without an embedded NUL? The hash covers the text up
 * to the first NUL only, so anything else could hide an edit (found by
 * tests/fuzz/fuzz_audit.c). */
static bool col_exact(sqlite3_stmt *st, int i, bool want_int)
{
    if (want_int)
        return sqlite3_column_type(st, i) == SQLITE_INTEGER;
    if (sqlite3_column_type(st, i) != SQLITE_TEXT)
        return false;
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t && strlen(t) == (size_t)sqlite3_column_bytes(st, i);
}

#define ROW_COLUMNS                                                                          \
    "seq, ts_ms, event, query_id, requester, project, kind, spec_sha256, reason,"            \
    " release_sha256, signer, signature, actor, prev_hash, hash"

int audit_verify(state *s, int64_t want_seq, const char *want_hash, audit_report *r)
{
    memset(r, 0, sizeof *r);
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    /* One read transaction, so a concurrent append cannot tear the view. */
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return SDF_EDB;
    int out = SDF_EDB;
    bool have_head = false;
    if (sqlite3_prepare_v2(db, "SELECT seq, hash FROM audit_head WHERE id = 1", -1, &st, NULL) !=
        SQLITE_OK)
        goto done;
    bool head_exact = true;
    if (sqlite3_step(st) == SQLITE_ROW) {
        have_head = true;
        head_exact = col_exact(st, 0, true) && col_exact(st, 1, false);
        r->head_seq = sqlite3_column_int64(st, 0);
        snprintf(r->head_hash, sizeof r->head_hash, "%s", col(st, 1));
    }
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db, "SELECT " ROW_COLUMNS " FROM audit ORDER BY seq", -1, &st,
                           NULL) != SQLITE_OK)
        goto done;

    char prev[AUDIT_HASH_HEX + 1];
    memcpy(prev, zero_hash, sizeof prev);
    int64_t expect = 1;
    bool found_want = false;
    r->ok = true;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        /* Types first: sqlite3_column_text may convert a value in place. */
        bool exact = true;
        for (int i = 0; i <= N_FIELDS && exact; i++)
            exact = col_exact(st, i, i < 2);
        int64_t seq = sqlite3_column_int64(st, 0);
        const char *vals[N_FIELDS];
        for (int i = 0; i < N_FIELDS; i++)
            vals[i] = col(st, i);
        const char *stored = col(st, 14);
        char h[AUDIT_HASH_HEX + 1];
        r->rows++;
        if (!exact) {
            snprintf(r->problem, sizeof r->problem,
                     "a field is not stored as written (wrong type or a NUL byte: row edited)");
            r->bad_seq = seq;
            r->ok = false;
            break;
        }
        if (seq != expect) {
            snprintf(r->problem, sizeof r->problem,
                     seq > expect ? "row(s) %lld..%lld missing (deleted)"
                                  : "unexpected sequence %lld (expected %lld)",
                     (long long)(seq > expect ? expect : seq),
                     (long long)(seq > expect ? seq - 1 : expect));
            r->bad_seq = seq;
            r->ok = false;
            break;
        }
        if (strcmp(vals[13], prev) != 0) {
            snprintf(r->problem, sizeof r->problem,
                     "prev_hash does not match the hash of the row before it (row deleted, "
                     "inserted or reordered)");
            r->bad_seq = seq;
            r->ok = false;
            break;
        }
        if (row_hash(vals, h) != 0) {
            sqlite3_finalize(st);
            out = SDF_ENOMEM;
            goto done;
        }
        if (strcmp(h, stored) != 0) {
            snprintf(r->problem, sizeof r->problem, "content does not match its hash (row edited)");
            r->bad_seq = seq;
            r->ok = false;
            break;
        }
        if (want_seq > 0 && seq == want_seq) {
            found_want = true;
            if (!want_hash || strcmp(want_hash, h) != 0) {
                snprintf(r->problem, sizeof r->problem,
                         "hash differs from the externally kept head (chain rewritten)");
                r->bad_seq = seq;
                r->ok = false;
                break;
            }
        }
        memcpy(prev, h, sizeof prev);
        expect = seq + 1;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        goto done;
    out = 0;
    if (!r->ok)
        goto done;
    int64_t last = expect - 1;
    if (!head_exact) {
        snprintf(r->problem, sizeof r->problem,
                 "the chain head is not stored as written (wrong type or a NUL byte: edited)");
        r->bad_seq = last > 0 ? last : 1;
        r->ok = false;
    } else if (!have_head && last > 0) {
        snprintf(r->problem, sizeof r->problem, "chain head record missing");
        r->bad_seq = last;
        r->ok = false;
    } else if (have_head && (r->head_seq != last || strcmp(r->head_hash, prev) != 0)) {
        if (r->head_seq > last)
            snprintf(r->problem, sizeof r->problem,
                     "log ends at row %lld but the chain head says %lld (last rows deleted)",
                     (long long)last, (long long)r->head_seq);
        else
            snprintf(r->problem, sizeof r->problem,
                     "last row %lld does not match the chain head (row %lld): rows appended or "
                     "head edited",
                     (long long)last, (long long)r->head_seq);
        r->bad_seq = last < r->head_seq ? last + 1 : r->head_seq + 1;
        if (r->bad_seq < 1)
            r->bad_seq = 1;
        r->ok = false;
    } else if (want_seq > 0 && !found_want) {
        snprintf(r->problem, sizeof r->problem, "row %lld (the externally kept head) is missing",
                 (long long)want_seq);
        r->bad_seq = want_seq;
        r->ok = false;
    }
done:
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    return out;
}

int64_t audit_export(state *s, int64_t since_ms, FILE *f)
{
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT " ROW_COLUMNS " FROM audit WHERE ts_ms >= ?1 ORDER BY seq",
                           -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    sqlite3_bind_int64(st, 1, since_ms);
    int64_t n = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = json_object();
        if (!o) {
            sqlite3_finalize(st);
            return SDF_ENOMEM;
        }
        int bad = 0;
        for (int i = 0; i < N_FIELDS; i++) {
            json_t *v = i < 2 ? json_integer(sqlite3_column_int64(st, i)) : json_string(col(st, i));
            bad |= json_object_set_new(o, field_names[i], v);
        }
        bad |= json_object_set_new(o, "hash", json_string(col(st, 14)));
        char *line = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (!line) {
            sqlite3_finalize(st);
            return SDF_ENOMEM;
        }
        int w = fprintf(f, "%s\n", line);
        free(line);
        if (w < 0) {
            sqlite3_finalize(st);
            return SDF_EIO;
        }
        n++;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? n : SDF_EDB;
}
