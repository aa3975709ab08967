/* tests/fuzz/fuzz_audit.c — libFuzzer target for the audit-log verifier.
 *
 * Once: a real state database in a temporary directory with a few genuine
 * rows appended through audit_append, and a pristine copy of the audit and
 * audit_head tables kept beside them. Per input: restore the pristine
 * tables, then read the input as a list of tampering operations, each run
 * through SQL with bound parameters:
 *
 *   byte 0      operation (mod 7): update a field, delete a row, insert a
 *               row, update the head, delete the head, move a row to
 *               another seq, copy one row's field into another row
 *   byte 1      row (seq 0..N+2)      byte 2  column (mod 15)
 *   byte 3      value type (mod 5: integer, text, blob, real, NULL)
 *   byte 4      value length, then that many value bytes
 *
 * Then audit_verify runs, with and without the externally kept head. It
 * must never crash, and:
 *   - if the operations left every stored value (type and bytes) of every
 *     row and of the head as it was, both verifications say ok;
 *   - otherwise the verification against the external head says not ok,
 *     and so does the one without it, unless the log was emptied entirely
 *     (rows and head: indistinguishable from a new log — documented in
 *     audit.h, which is why the head is also kept elsewhere).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "governance/audit.h"
#include "sdefed/log.h"
#include "state.h"

#define N_ROWS 4

static const char *const cols[15] = {
    "seq", "ts_ms", "event", "query_id", "requester", "project", "kind", "spec_sha256",
    "reason", "release_sha256", "signer", "signature", "actor", "prev_hash", "hash",
};

static state *st;
static sqlite3 *db;
static int64_t ext_seq;
static char ext_hash[AUDIT_HASH_HEX + 1];
static uint8_t pristine[32];

static void die(const char *what)
{
    fprintf(stderr, "fuzz_audit: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    abort();
}

/* SHA-256 over the type and bytes of every stored value of both tables. */
static void fingerprint(uint8_t out[32], int64_t *n_rows, int *have_head)
{
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    if (!h || EVP_DigestInit_ex(h, EVP_sha256(), NULL) != 1)
        die("digest");
    const char *q[2] = { "SELECT * FROM audit ORDER BY seq", "SELECT * FROM audit_head" };
    for (int t = 0; t < 2; t++) {
        sqlite3_stmt *s;
        if (sqlite3_prepare_v2(db, q[t], -1, &s, NULL) != SQLITE_OK)
            die("fingerprint");
        int64_t n = 0;
        while (sqlite3_step(s) == SQLITE_ROW) {
            n++;
            for (int i = 0; i < sqlite3_column_count(s); i++) {
                uint8_t ty = (uint8_t)sqlite3_column_type(s, i);
                const void *b = ty == SQLITE_BLOB ? sqlite3_column_blob(s, i)
                                                  : (const void *)sqlite3_column_text(s, i);
                uint32_t len = (uint32_t)sqlite3_column_bytes(s, i);
                EVP_DigestUpdate(h, &ty, 1);
                EVP_DigestUpdate(h, &len, sizeof len);
                if (b && len)
                    EVP_DigestUpdate(h, b, len);
            }
            uint8_t sep = 0xff;
            EVP_DigestUpdate(h, &sep, 1);
        }
        sqlite3_finalize(s);
        uint8_t sep = 0xfe;
        EVP_DigestUpdate(h, &sep, 1);
        if (t == 0 && n_rows)
            *n_rows = n;
        if (t == 1 && have_head)
            *have_head = n > 0;
    }
    unsigned ol = 0;
    if (EVP_DigestFinal_ex(h, out, &ol) != 1)
        die("digest");
    EVP_MD_CTX_free(h);
}

static char dir[] = "/tmp/sdefed-fuzz-audit-XXXXXX";

/* libFuzzer ends with exit(): remove the temporary database then. */
static void cleanup(void)
{
    state_close(st);
    static const char *const files[] = { STATE_FILE, STATE_FILE "-wal", STATE_FILE "-shm" };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[128];
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void exec(const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        die(sql);
}

static void setup(void)
{
    log_set_level(SDF_LOG_ERROR);
    if (!mkdtemp(dir))
        die("mkdtemp");
    char err[256];
    if (state_open(dir, &st, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_audit: %s\n", err);
        abort();
    }
    atexit(cleanup);
    db = state_db(st);
    static const char *const events[N_ROWS] = { "received", "answered", "held", "released" };
    for (int i = 0; i < N_ROWS; i++) {
        audit_entry e = { .event = events[i], .query_id = "q-0001", .requester = "alice",
                          .project = "P1", .kind = "count",
                          .spec_sha256 = "ab", .reason = i == 2 ? "small cells" : NULL,
                          .actor = "agent" };
        if (audit_append(st, &e, &ext_seq, ext_hash) != 0)
            die("append");
    }
    exec("PRAGMA synchronous=OFF");
    exec("CREATE TEMP TABLE p_audit AS SELECT * FROM main.audit;"
         "CREATE TEMP TABLE p_head AS SELECT * FROM main.audit_head;");
    fingerprint(pristine, NULL, NULL);
    audit_report r;
    if (audit_verify(st, ext_seq, ext_hash, &r) != 0 || !r.ok)
        die("genuine log does not verify");
}

static void restore(void)
{
    exec("BEGIN;"
         "DELETE FROM main.audit; INSERT INTO main.audit SELECT * FROM p_audit;"
         "DELETE FROM main.audit_head; INSERT INTO main.audit_head SELECT * FROM p_head;"
         "COMMIT;");
}

static void bind_value(sqlite3_stmt *s, int idx, uint8_t type, const uint8_t *v, size_t n)
{
    switch (type % 5) {
    case 0: {
        int64_t x = 0;
        memcpy(&x, v, n < sizeof x ? n : sizeof x);
        if (n <= 1)          /* small numbers (a plausible seq) are the interesting ones */
            x = n ? (int8_t)v[0] : 0;
        sqlite3_bind_int64(s, idx, x);
        break;
    }
    case 1:
        sqlite3_bind_text(s, idx, (const char *)v, (int)n, SQLITE_TRANSIENT);
        break;
    case 2:
        sqlite3_bind_blob(s, idx, n ? (const void *)v : "", (int)n, SQLITE_TRANSIENT);
        break;
    case 3: {
        double d = 0;
        memcpy(&d, v, n < sizeof d ? n : sizeof d);
        if (n < sizeof d)
            d = (double)(n ? (int8_t)v[0] : 0) + (n > 1 ? 0.5 : 0.0);
        sqlite3_bind_double(s, idx, d);
        break;
    }
    default:
        sqlite3_bind_null(s, idx);
        break;
    }
}

/* Run one statement; constraint failures (NOT NULL, PRIMARY KEY) are fine. */
static void run(const char *sql, int64_t a, int64_t b, uint8_t type, const uint8_t *v, size_t n)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        die(sql);
    int np = sqlite3_bind_parameter_count(s);
    if (np >= 1)
        sqlite3_bind_int64(s, 1, a);
    if (np >= 2)
        sqlite3_bind_int64(s, 2, b);
    if (np >= 3)
        bind_value(s, 3, type, v, n);
    (void)sqlite3_step(s);
    sqlite3_finalize(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!st)
        setup();
    restore();

    char sql[256];
    size_t i = 0;
    for (int ops = 0; i + 5 <= size && ops < 8; ops++) {
        uint8_t op = data[i] % 7, row = data[i + 1] % (N_ROWS + 3), col = data[i + 2] % 15,
                ty = data[i + 3], len = data[i + 4];
        i += 5;
        size_t n = len <= size - i ? len : size - i;
        const uint8_t *v = data + i;
        i += n;
        uint8_t row2 = n ? v[0] % (N_ROWS + 3) : 1;
        switch (op) {
        case 0:
            snprintf(sql, sizeof sql, "UPDATE audit SET %s = ?3 WHERE seq = ?1 AND ?2 = ?2",
                     cols[col]);
            run(sql, row, 0, ty, v, n);
            break;
        case 1:
            run("DELETE FROM audit WHERE seq = ?1", row, 0, 0, NULL, 0);
            break;
        case 2:   /* a copy of row `row` at seq row2 with one field replaced */
            run("CREATE TEMP TABLE IF NOT EXISTS scratch AS SELECT * FROM audit WHERE 0", 0, 0, 0,
                NULL, 0);
            run("DELETE FROM scratch", 0, 0, 0, NULL, 0);
            run("INSERT INTO scratch SELECT * FROM audit WHERE seq = ?1", row, 0, 0, NULL, 0);
            run("UPDATE scratch SET seq = ?1", row2, 0, 0, NULL, 0);
            snprintf(sql, sizeof sql, "UPDATE scratch SET %s = ?3 WHERE ?1 = ?1 AND ?2 = ?2",
                     cols[col]);
            if (col != 0)
                run(sql, 0, 0, ty, v, n);
            run("INSERT INTO audit SELECT * FROM scratch", 0, 0, 0, NULL, 0);
            break;
        case 3:
            run(col & 1 ? "UPDATE audit_head SET hash = ?3 WHERE ?1 = ?1 AND ?2 = ?2"
                        : "UPDATE audit_head SET seq = ?3 WHERE ?1 = ?1 AND ?2 = ?2",
                0, 0, ty, v, n);
            break;
        case 4:
            run("DELETE FROM audit_head", 0, 0, 0, NULL, 0);
            break;
        case 5:
            run("UPDATE audit SET seq = ?2 WHERE seq = ?1", row, row2, 0, NULL, 0);
            break;
        default:
            snprintf(sql, sizeof sql,
                     "UPDATE audit SET %s = (SELECT %s FROM audit WHERE seq = ?2) WHERE seq = ?1",
                     cols[col], cols[col]);
            run(sql, row, row2, 0, NULL, 0);
            break;
        }
    }

    uint8_t now[32];
    int64_t n_rows = 0;
    int have_head = 0;
    fingerprint(now, &n_rows, &have_head);
    int changed = memcmp(now, pristine, sizeof now) != 0;

    audit_report plain, ext;
    if (audit_verify(st, 0, NULL, &plain) != 0 || audit_verify(st, ext_seq, ext_hash, &ext) != 0)
        die("verify could not read the log");
    if (!plain.ok && !plain.problem[0])
        die("a failed verification gave no reason");
    if (!changed && (!plain.ok || !ext.ok)) {
        fprintf(stderr, "untouched log fails: %s / %s\n", plain.problem, ext.problem);
        abort();
    }
    if (changed && ext.ok) {
        fprintf(stderr, "tampered log verifies against the external head\n");
        abort();
    }
    if (changed && plain.ok && !(n_rows == 0 && !have_head)) {
        fprintf(stderr, "tampered log verifies (rows %lld)\n", (long long)plain.rows);
        abort();
    }
    return 0;
}
