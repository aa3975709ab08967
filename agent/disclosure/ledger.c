/* agent/disclosure/ledger.c — durable memory for the cross-query rules
 * (repeats, differencing, differential-privacy budget); see ledger.h.
 */
#include "disclosure/ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>
#include <sqlite3.h>

#include "sdefed/log.h"
#include "sdefed/stmt_cache.h"

struct disc_ledger {
    sqlite3 *db;
    stmt_cache stmts;   /* the ledger's statements, kept for the next query */
};

static int stmt_get(disc_ledger *l, const char *sql, sqlite3_stmt **st)
{
    return stmt_cache_get(&l->stmts, sql, st);
}

static void stmt_put(disc_ledger *l, sqlite3_stmt *st)
{
    stmt_cache_put(&l->stmts, st);
}

/* ---- site secret ---------------------------------------------------------- */

static int read_exact(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    unsigned char extra;
    return read(fd, &extra, 1) == 0 ? 0 : -1;   /* exactly n bytes */
}

int disc_secret_load(const char *state_dir, unsigned char out[32])
{
    char path[PATH_MAX];
    if (!state_dir || snprintf(path, sizeof path, "%s/%s", state_dir, DISC_SECRET_FILE) >=
                          (int)sizeof path)
        return SDF_EINVAL;
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            int rc = read_exact(fd, out, 32);
            close(fd);
            if (rc != 0) {
                log_error("%s: not a 32-byte secret", path);
                return SDF_EIO;
            }
            return 0;
        }
        if (errno != ENOENT) {
            log_error("%s: %s", path, strerror(errno));
            return SDF_EIO;
        }
        /* Create it once; a concurrent creator wins and we re-read. The
         * bytes are written to a temporary file, fsync'd, then linked in
         * place, so a crash never leaves a short secret. */
        /* mkstemp: a unique name per creator (worker threads share a pid),
         * mode 0600. */
        char tmp[PATH_MAX];
        if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp)
            return SDF_EINVAL;
        unsigned char key[32];
        if (RAND_bytes(key, sizeof key) != 1)
            return SDF_EIO;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
            log_error("%s: %s", tmp, strerror(errno));
            return SDF_EIO;
        }
        bool ok = write(fd, key, sizeof key) == (ssize_t)sizeof key && fsync(fd) == 0;
        close(fd);
        if (ok && link(tmp, path) != 0 && errno != EEXIST)
            ok = false;
        unlink(tmp);
        if (!ok) {
            log_error("%s: cannot create the site secret", path);
            return SDF_EIO;
        }
    }
    return SDF_EIO;
}

/* ---- database -------------------------------------------------------------- */

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS repeats(requester TEXT NOT NULL, qhash BLOB NOT NULL,"
    " at INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS repeats_rq ON repeats(requester, qhash, at);"
    /* expiry by time alone: deleting through repeats_rq read every one of
     * the requester's rows in the window, on every query */
    "CREATE INDEX IF NOT EXISTS repeats_at ON repeats(at);"
    "CREATE TABLE IF NOT EXISTS cohorts(id INTEGER PRIMARY KEY, owner_kind INTEGER NOT NULL,"
    " owner TEXT NOT NULL, at INTEGER NOT NULL, n INTEGER NOT NULL, persons BLOB NOT NULL);"
    /* (owner_kind, owner, at, n): covers a check's filter, so a check does
     * not read the cohorts' rows (whose person lists overflow into other
     * pages) except those it decodes; replaces the older cohorts_owner */
    "CREATE INDEX IF NOT EXISTS cohorts_owner_n ON cohorts(owner_kind, owner, at, n);"
    "DROP INDEX IF EXISTS cohorts_owner;"
    /* a cohort's sketch, apart from its persons: a check reads every kept
     * sketch but few person lists, and a column stored after a large blob
     * can only be reached through the blob's overflow pages. A cohort
     * without one (kept before sketches existed) is always decoded. */
    "CREATE TABLE IF NOT EXISTS cohort_sketches(id INTEGER PRIMARY KEY, sketch BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS dp_ledger(project TEXT PRIMARY KEY, spent REAL NOT NULL);";

int disc_ledger_open(const char *state_dir, disc_ledger **out)
{
    char path[PATH_MAX];
    *out = NULL;
    if (!state_dir || snprintf(path, sizeof path, "%s/%s", state_dir, DISC_LEDGER_FILE) >=
                          (int)sizeof path)
        return SDF_EINVAL;
    /* Create the file 0600 before SQLite does (it would use 0644). */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        log_error("%s: %s", path, strerror(errno));
        return SDF_EIO;
    }
    close(fd);
    disc_ledger *l = calloc(1, sizeof *l);
    if (!l)
        return SDF_ENOMEM;
    if (sqlite3_open_v2(path, &l->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(l->db, 10000);
    if (sqlite3_exec(l->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL,
                     NULL) != SQLITE_OK ||
        sqlite3_exec(l->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        goto fail;
    stmt_cache_init(&l->stmts, l->db);
    *out = l;
    return 0;
fail:
    log_error("%s: %s", path, l->db ? sqlite3_errmsg(l->db) : "cannot open");
    sqlite3_close(l->db);
    free(l);
    return SDF_EDB;
}

void disc_ledger_close(disc_ledger *l)
{
    if (!l)
        return;
    stmt_cache_clear(&l->stmts);
    sqlite3_close(l->db);
    free(l);
}

int disc_ledger_set_full_sync(disc_ledger *l, bool full)
{
    const char *sql = full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
    if (stmt_cache_exec(&l->stmts, sql) != SQLITE_OK) {
        log_error("disclosure ledger: %s", sqlite3_errmsg(l->db));
        return SDF_EDB;
    }
    return 0;
}

static int begin(disc_ledger *l)
{
    return stmt_cache_exec(&l->stmts, "BEGIN IMMEDIATE") == SQLITE_OK ? 0 : SDF_EDB;
}

static int commit(disc_ledger *l)
{
    if (stmt_cache_exec(&l->stmts, "COMMIT") == SQLITE_OK)
        return 0;
    sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
    return SDF_EDB;
}

static void rollback(disc_ledger *l)
{
    sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
}

static int db_fail(disc_ledger *l, sqlite3_stmt *st)
{
    log_error("disclosure ledger: %s", sqlite3_errmsg(l->db));
    stmt_put(l, st);
    rollback(l);
    return SDF_EDB;
}

/* ---- repeats -------------------------------------------------------------------- */

int disc_ledger_repeat(disc_ledger *l, const char *requester, const unsigned char qhash[32],
                       int64_t now_s, int64_t window_s, int64_t max, bool *refused)
{
    sqlite3_stmt *st = NULL;
    *refused = false;
    if (begin(l))
        return db_fail(l, NULL);
    /* every requester's expired rows: no check reads them again */
    if (stmt_get(l, "DELETE FROM repeats WHERE at <= ?1", &st) != SQLITE_OK)
        return db_fail(l, st);
    sqlite3_bind_int64(st, 1, now_s - window_s);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_fail(l, st);
    stmt_put(l, st);
    /* counted up to max only: that is all the answer depends on */
    if (stmt_get(l, "SELECT COUNT(*) FROM (SELECT 1 FROM repeats WHERE requester = ?1 AND "
                    "qhash = ?2 AND at > ?3 LIMIT ?4)", &st) != SQLITE_OK)
        return db_fail(l, st);
    sqlite3_bind_text(st, 1, requester, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, qhash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_s - window_s);
    sqlite3_bind_int64(st, 4, max);
    if (sqlite3_step(st) != SQLITE_ROW)
        return db_fail(l, st);
    int64_t seen = sqlite3_column_int64(st, 0);
    stmt_put(l, st);
    if (seen >= max) {
        *refused = true;
        rollback(l);
        return 0;
    }
    if (stmt_get(l, "INSERT INTO repeats(requester, qhash, at) VALUES(?1,?2,?3)", &st) != SQLITE_OK)
        return db_fail(l, st);
    sqlite3_bind_text(st, 1, requester, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, qhash, 32, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_s);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_fail(l, st);
    stmt_put(l, st);
    return commit(l);
}

/* ---- person sets ------------------------------------------------------------------- */

int disc_personset_encode(const int64_t *ids, size_t n, unsigned char **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    unsigned char *buf = malloc(n * 10 + 1);
    if (!buf)
        return SDF_ENOMEM;
    size_t len = 0;
    int64_t prev = -1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] <= prev) {
            free(buf);
            return SDF_EINVAL;
        }
        uint64_t d = (uint64_t)ids[i] - (uint64_t)prev;   /* >= 1, no signed overflow */
        prev = ids[i];
        do {
            unsigned char b = d & 0x7f;
            d >>= 7;
            buf[len++] = (unsigned char)(b | (d ? 0x80 : 0));
        } while (d);
    }
    *out = buf;
    *outlen = len;
    return 0;
}

/* Next id from an encoding: 1 with *id set, 0 at the end, -1 if corrupt. */
static int dec_next(const unsigned char *enc, size_t len, size_t *pos, int64_t *prev, int64_t *id)
{
    if (*pos >= len)
        return 0;
    uint64_t d = 0;
    for (int shift = 0; shift < 63; shift += 7) {
        if (*pos >= len)
            return -1;
        unsigned char b = enc[(*pos)++];
        d |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            /* prev >= -1: the largest delta keeping the id <= INT64_MAX */
            if (d == 0 || d > (uint64_t)INT64_MAX - (uint64_t)*prev)
                return -1;
            *prev = (int64_t)((uint64_t)*prev + d);
            *id = *prev;
            return 1;
        }
    }
    return -1;
}

int64_t disc_personset_symdiff(const int64_t *ids, size_t n, const unsigned char *enc,
                               size_t enclen, int64_t cap)
{
    size_t i = 0, pos = 0;
    int64_t prev = -1, b = 0, diff = 0;
    int more = dec_next(enc, enclen, &pos, &prev, &b);
    while ((i < n || more == 1) && diff < cap) {
        if (more < 0)
            return SDF_EINVAL;
        if (more == 0 || (i < n && ids[i] < b)) {
            diff++;
            i++;
        } else if (i >= n || b < ids[i]) {
            diff++;
            more = dec_next(enc, enclen, &pos, &prev, &b);
        } else {
            i++;
            more = dec_next(enc, enclen, &pos, &prev, &b);
        }
    }
    if (more < 0)
        return SDF_EINVAL;
    return diff < cap ? diff : cap;
}

/* ---- sketches: a cheap, exact lower bound on a symmetric difference ---- */

static uint32_t sketch_bucket(int64_t id)
{
    uint64_t z = (uint64_t)id + 0x9e3779b97f4a7c15ULL;   /* splitmix64 finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (uint32_t)(z % DISC_SKETCH_BUCKETS);
}

void disc_personset_sketch(const int64_t *ids, size_t n, unsigned char out[DISC_SKETCH_BYTES])
{
    uint32_t cnt[DISC_SKETCH_BUCKETS] = { 0 };
    for (size_t i = 0; i < n; i++)
        cnt[sketch_bucket(ids[i])]++;
    for (size_t b = 0; b < DISC_SKETCH_BUCKETS; b++) {   /* little-endian on disk */
        out[4 * b] = (unsigned char)cnt[b];
        out[4 * b + 1] = (unsigned char)(cnt[b] >> 8);
        out[4 * b + 2] = (unsigned char)(cnt[b] >> 16);
        out[4 * b + 3] = (unsigned char)(cnt[b] >> 24);
    }
}

int64_t disc_sketch_lower_bound(const unsigned char a[DISC_SKETCH_BYTES],
                                const unsigned char b[DISC_SKETCH_BYTES])
{
    int64_t sum = 0;
    for (size_t k = 0; k < DISC_SKETCH_BUCKETS; k++) {
        int64_t x = (int64_t)a[4 * k] | (int64_t)a[4 * k + 1] << 8 | (int64_t)a[4 * k + 2] << 16 |
                    (int64_t)a[4 * k + 3] << 24;
        int64_t y = (int64_t)b[4 * k] | (int64_t)b[4 * k + 1] << 8 | (int64_t)b[4 * k + 2] << 16 |
                    (int64_t)b[4 * k + 3] << 24;
        sum += x > y ? x - y : y - x;
    }
    return sum;
}

/* ---- differencing ------------------------------------------------------------------- */

enum { OWNER_REQUESTER = 1, OWNER_PROJECT = 2 };

/* Drop owner's cohorts that are too old or beyond the newest `keep`
 * (newest = largest (at, id)). The keep-th newest row is found once in the
 * owner's index; the deletes then touch only the rows they drop, not the
 * whole list (which would cost O(keep) row reads per query). */
static int trim(disc_ledger *l, int kind, const char *owner, int64_t keep, int64_t cutoff)
{
    sqlite3_stmt *st = NULL;
    int64_t b_at = INT64_MIN, b_id = 0;
    if (stmt_get(l, "SELECT at, id FROM cohorts WHERE owner_kind = ?1 AND owner = ?2 "
                    "ORDER BY at DESC, id DESC LIMIT 1 OFFSET ?3", &st) != SQLITE_OK) {
        stmt_put(l, st);
        return SDF_EDB;
    }
    sqlite3_bind_int(st, 1, kind);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, keep);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        b_at = sqlite3_column_int64(st, 0);
        b_id = sqlite3_column_int64(st, 1);
    }
    stmt_put(l, st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return SDF_EDB;
    static const char *const sql[2] = {
        "DELETE FROM cohort_sketches WHERE id IN (SELECT id FROM cohorts WHERE owner_kind = ?1 "
        "AND owner = ?2 AND at <= max(?3, ?4) AND (at <= ?3 OR (at, id) <= (?4, ?5)))",
        "DELETE FROM cohorts WHERE owner_kind = ?1 AND owner = ?2 AND at <= max(?3, ?4) "
        "AND (at <= ?3 OR (at, id) <= (?4, ?5))",
    };
    for (int k = 0; k < 2; k++) {
        st = NULL;
        if (stmt_get(l, sql[k], &st) != SQLITE_OK) {
            stmt_put(l, st);
            return SDF_EDB;
        }
        sqlite3_bind_int(st, 1, kind);
        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, cutoff);
        sqlite3_bind_int64(st, 4, b_at);
        sqlite3_bind_int64(st, 5, b_id);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : SDF_EDB;
        stmt_put(l, st);
        if (rc)
            return rc;
    }
    return 0;
}

/* One new set compared with every kept cohort of requester or project
 * (younger than cutoff): *refused when some symmetric difference is
 * 1..min_cell-1. Kept cohorts whose size differs by min_cell or more, or
 * whose sketch already shows a difference of min_cell or more, are skipped
 * without decoding (both are exact lower bounds, so nothing is missed); so
 * is one whose encoding is byte-identical to the new set's (difference 0).
 * same[owner_kind - 1] gets the id of such an identical kept cohort (0 if
 * none), which the caller refreshes instead of keeping the set twice. */
static int check_kept(disc_ledger *l, const char *requester, const char *project,
                      const int64_t *persons, size_t n, const unsigned char *enc, size_t enclen,
                      const unsigned char *sk, int64_t min_cell, int64_t cutoff,
                      disc_cohort_stats *stats, int64_t same[2], bool *refused)
{
    sqlite3_stmt *st = NULL, *get = NULL;
    same[0] = same[1] = 0;
    if (stmt_get(l, "SELECT c.id, s.sketch, c.owner_kind FROM cohorts c "
                    "LEFT JOIN cohort_sketches s "
                    "ON s.id = c.id WHERE c.at > ?1 AND ((c.owner_kind = 1 AND "
                    "c.owner = ?2) OR (c.owner_kind = 2 AND c.owner = ?3)) "
                    "AND c.n > ?4 AND c.n < ?5", &st) != SQLITE_OK ||
        stmt_get(l, "SELECT persons FROM cohorts WHERE id = ?1", &get) != SQLITE_OK) {
        stmt_put(l, st);
        stmt_put(l, get);
        return SDF_EDB;
    }
    sqlite3_bind_int64(st, 1, cutoff);
    sqlite3_bind_text(st, 2, requester, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, project, -1, SQLITE_STATIC);
    /* |n - m| >= min_cell means symmetric difference >= min_cell: skip */
    sqlite3_bind_int64(st, 4, (int64_t)n - min_cell);
    sqlite3_bind_int64(st, 5, (int64_t)n + min_cell);
    int rc, err = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (stats)
            stats->candidates++;
        if (sqlite3_column_bytes(st, 1) == DISC_SKETCH_BYTES &&
            disc_sketch_lower_bound(sk, sqlite3_column_blob(st, 1)) >= min_cell)
            continue;
        sqlite3_reset(get);
        sqlite3_bind_int64(get, 1, sqlite3_column_int64(st, 0));
        if (sqlite3_step(get) != SQLITE_ROW) {
            err = SDF_EDB;
            break;
        }
        const unsigned char *blob = sqlite3_column_blob(get, 0);
        size_t blen = (size_t)sqlite3_column_bytes(get, 0);
        /* the same set encodes to the same bytes (a re-asked cohort): a
         * difference of 0 without decoding */
        if (blen == enclen && blob && memcmp(blob, enc, enclen) == 0) {
            if (stats)
                stats->identical++;
            int kind = sqlite3_column_int(st, 2);
            if (kind == OWNER_REQUESTER || kind == OWNER_PROJECT)
                same[kind - 1] = sqlite3_column_int64(st, 0);
            continue;
        }
        if (stats)
            stats->decoded++;
        int64_t d = disc_personset_symdiff(persons, n, blob ? blob : (const unsigned char *)"",
                                           blen, min_cell);
        if (d < 0) {
            log_warn("disclosure ledger: a kept cohort is corrupt; refusing to be safe");
            d = 1;
        }
        if (d >= 1 && d < min_cell) {
            *refused = true;
            break;
        }
    }
    if (!err && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = SDF_EDB;
    stmt_put(l, st);
    stmt_put(l, get);
    return err;
}

int disc_ledger_cohorts(disc_ledger *l, const char *requester, const char *project,
                        const int64_t *const *sets, const size_t *ns, size_t n_sets,
                        int64_t min_cell, int64_t now_s, int64_t max_age_s, int64_t keep,
                        disc_cohort_stats *stats, bool *refused)
{
    sqlite3_stmt *st = NULL;
    unsigned char **enc = NULL, (*sk)[DISC_SKETCH_BYTES] = NULL;
    int64_t (*same)[2] = NULL;
    size_t *enclen = NULL;
    int err = SDF_ENOMEM;
    bool in_tx = false;
    *refused = false;
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (n_sets == 0)
        return 0;
    if (n_sets > DISC_MAX_SETS)
        return SDF_EINVAL;
    enc = calloc(n_sets, sizeof *enc);
    enclen = calloc(n_sets, sizeof *enclen);
    sk = calloc(n_sets, sizeof *sk);
    same = calloc(n_sets, sizeof *same);
    if (!enc || !enclen || !sk || !same)
        goto out;
    for (size_t i = 0; i < n_sets; i++) {
        if ((err = disc_personset_encode(sets[i], ns[i], &enc[i], &enclen[i])))
            goto out;
        disc_personset_sketch(sets[i], ns[i], sk[i]);
    }
    /* The sets of one result against each other first: two arms released
     * together must not differ by a few persons either. */
    for (size_t i = 0; i < n_sets && !*refused; i++)
        for (size_t j = 0; j < i && !*refused; j++) {
            int64_t d = disc_personset_symdiff(sets[i], ns[i], enc[j], enclen[j], min_cell);
            *refused = d >= 1 && d < min_cell;
        }
    if (*refused) {
        err = 0;
        goto out;
    }
    err = SDF_EDB;
    if (begin(l))
        goto dbfail;
    in_tx = true;
    int64_t cutoff = now_s - max_age_s;
    for (size_t i = 0; i < n_sets && !*refused; i++)
        if (check_kept(l, requester, project, sets[i], ns[i], enc[i], enclen[i], sk[i],
                       min_cell, cutoff, stats, same[i], refused))
            goto dbfail;
    if (*refused) {
        rollback(l);
        err = 0;
        goto out;
    }
    /* A set already kept for this owner is refreshed (its age restarts),
     * not kept twice: re-asking a cohort neither grows the checks nor
     * pushes other cohorts out of the `keep` newest. */
    for (size_t i = 0; i < n_sets; i++)
        for (int kind = OWNER_REQUESTER; kind <= OWNER_PROJECT; kind++) {
            const char *owner = kind == OWNER_REQUESTER ? requester : project;
            if (same[i][kind - 1]) {
                if (stmt_get(l, "UPDATE cohorts SET at = ?1 WHERE id = ?2", &st) != SQLITE_OK)
                    goto dbfail;
                sqlite3_bind_int64(st, 1, now_s);
                sqlite3_bind_int64(st, 2, same[i][kind - 1]);
                if (sqlite3_step(st) != SQLITE_DONE)
                    goto dbfail;
                stmt_put(l, st);
                st = NULL;
                continue;
            }
            if (stmt_get(l, "INSERT INTO cohorts(owner_kind, owner, at, n, persons) "
                            "VALUES(?1,?2,?3,?4,?5)", &st) != SQLITE_OK)
                goto dbfail;
            sqlite3_bind_int(st, 1, kind);
            sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, now_s);
            sqlite3_bind_int64(st, 4, (int64_t)ns[i]);
            sqlite3_bind_blob(st, 5, enc[i], (int)enclen[i], SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto dbfail;
            stmt_put(l, st);
            st = NULL;
            if (stmt_get(l, "INSERT INTO cohort_sketches(id, sketch) VALUES(?1, ?2)",
                         &st) != SQLITE_OK)
                goto dbfail;
            sqlite3_bind_int64(st, 1, sqlite3_last_insert_rowid(l->db));
            sqlite3_bind_blob(st, 2, sk[i], DISC_SKETCH_BYTES, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE)
                goto dbfail;
            stmt_put(l, st);
            st = NULL;
        }
    for (int kind = OWNER_REQUESTER; kind <= OWNER_PROJECT; kind++)
        if (trim(l, kind, kind == OWNER_REQUESTER ? requester : project, keep, cutoff))
            goto dbfail;
    in_tx = false;
    err = commit(l);
    goto out;
dbfail:
    log_error("disclosure ledger: %s", sqlite3_errmsg(l->db));
    stmt_put(l, st);
    if (in_tx)
        rollback(l);
    err = SDF_EDB;
out:
    for (size_t i = 0; enc && i < n_sets; i++)
        free(enc[i]);
    free(enc);
    free(enclen);
    free(sk);
    free(same);
    return err;
}

int disc_ledger_cohort(disc_ledger *l, const char *requester, const char *project,
                       const int64_t *persons, size_t n, int64_t min_cell, int64_t now_s,
                       int64_t max_age_s, int64_t keep, bool *refused)
{
    const int64_t *sets[1] = { persons };
    size_t ns[1] = { n };
    return disc_ledger_cohorts(l, requester, project, sets, ns, 1, min_cell, now_s, max_age_s,
                               keep, NULL, refused);
}

/* ---- differential privacy budget ------------------------------------------------ */

static int spent_of(disc_ledger *l, const char *project, double *spent)
{
    sqlite3_stmt *st = NULL;
    *spent = 0.0;
    if (stmt_get(l, "SELECT spent FROM dp_ledger WHERE project = ?1", &st) != SQLITE_OK) {
        stmt_put(l, st);
        return SDF_EDB;
    }
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *spent = sqlite3_column_double(st, 0);
    stmt_put(l, st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SDF_EDB;
}

int disc_ledger_dp_spent(disc_ledger *l, const char *project, double *spent)
{
    return spent_of(l, project, spent);
}

int disc_ledger_dp_spend(disc_ledger *l, const char *project, double epsilon, double budget,
                         double *spent_after, bool *refused)
{
    sqlite3_stmt *st = NULL;
    *refused = false;
    if (begin(l))
        return db_fail(l, NULL);
    double spent;
    if (spent_of(l, project, &spent))
        return db_fail(l, NULL);
    /* a tiny tolerance so that budget/epsilon whole queries fit exactly */
    if (spent + epsilon > budget * (1.0 + 1e-9)) {
        *refused = true;
        *spent_after = spent;
        rollback(l);
        return 0;
    }
    if (stmt_get(l, "INSERT INTO dp_ledger(project, spent) VALUES(?1, ?2) "
                    "ON CONFLICT(project) DO UPDATE SET spent = excluded.spent",
                    &st) != SQLITE_OK)
        return db_fail(l, st);
    sqlite3_bind_text(st, 1, project, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, spent + epsilon);
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_fail(l, st);
    stmt_put(l, st);
    *spent_after = spent + epsilon;
    return commit(l);
}
