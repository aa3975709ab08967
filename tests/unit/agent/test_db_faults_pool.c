/* tests/unit/agent/test_db_faults_pool.c — pooled SQLite dataset connections (db_sqlite.c).
 *
 * db_close() parks a healthy connection with its prepared statements and
 * db_sqlite_open() reuses it while the path names the same file. These
 * tests count how often SQLite opens the dataset file (a VFS registered as
 * the default that counts xOpen calls and otherwise is the real one) and
 * check what the pool must never get wrong: a replaced file is reopened, a
 * file changed in place is read afresh, a connection that failed or timed
 * out is never reused, a cached statement never keeps a bound value, and
 * db_sqlite_pool_drain() really closes the idle connections.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "db.h"
#include "sdefed/log.h"

/* ---- a VFS that counts opens of the dataset file ---------------------------------- */

static sqlite3_vfs count_vfs;
static sqlite3_vfs *real_vfs;
static long n_opens;

static int count_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags,
                      int *out_flags)
{
    (void)vfs;
    if (name && strstr(name, "pool-omop.sqlite") && (flags & SQLITE_OPEN_MAIN_DB))
        n_opens++;
    return real_vfs->xOpen(real_vfs, name, f, flags, out_flags);
}

/* ---- fixtures ------------------------------------------------------------------------ */

static char tmpdir[128];
static agent_dataset ds;

static void exec_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    char *err = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
        fail_msg("sql: %s", err);
    sqlite3_close(db);
}

/* A minimal dataset with `persons` rows in person. */
static void make_db(const char *path, int persons)
{
    char sql[512];
    unlink(path);
    snprintf(sql, sizeof sql,
             "CREATE TABLE person(person_id INTEGER PRIMARY KEY, year_of_birth INTEGER);"
             "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d)"
             " INSERT INTO person SELECT i, 1900 + i FROM n;", persons);
    exec_sql(path, sql);
}

static int setup(void **st)
{
    (void)st;
    real_vfs = sqlite3_vfs_find(NULL);
    assert_non_null(real_vfs);
    count_vfs = *real_vfs;   /* the real one in every respect but xOpen */
    count_vfs.zName = "sdefed-count";
    count_vfs.pNext = NULL;
    count_vfs.xOpen = count_open;
    assert_int_equal(sqlite3_vfs_register(&count_vfs, 1), SQLITE_OK);

    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdefed-dbpool-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    memset(&ds, 0, sizeof ds);
    snprintf(ds.name, sizeof ds.name, "omop");
    snprintf(ds.type, sizeof ds.type, "omop");
    snprintf(ds.backend, sizeof ds.backend, "sqlite");
    snprintf(ds.path, sizeof ds.path, "%s/pool-omop.sqlite", tmpdir);
    make_db(ds.path, 10);
    log_set_level((enum sdf_log_level)(SDF_LOG_ERROR - 1));   /* failures here are on purpose */
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    db_sqlite_pool_drain();
    sqlite3_vfs_unregister(&count_vfs);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static int one_int(void *ctx, const db_value *cols, int ncols)
{
    assert_int_equal(ncols, 1);
    *(int64_t *)ctx = cols[0].i;
    return 0;
}

/* COUNT(*) of person through a pooled connection. */
static int64_t count_persons(void)
{
    db_conn *c = NULL;
    int64_t n = -1;
    assert_int_equal(db_open(&ds, 0, NULL, &c), 0);
    assert_int_equal(db_query(c, "SELECT COUNT(*) FROM person", NULL, 0, one_int, &n), 0);
    db_close(c);
    return n;
}

/* ---- tests ------------------------------------------------------------------------- */

static void reuses_a_healthy_connection(void **st)
{
    (void)st;
    db_sqlite_pool_drain();
    long before = n_opens;
    assert_int_equal(count_persons(), 10);
    assert_int_equal(n_opens, before + 1);
    for (int k = 0; k < 5; k++)
        assert_int_equal(count_persons(), 10);
    assert_int_equal(n_opens, before + 1);   /* never opened again */

    /* two at once: the second cannot share the first's connection */
    db_conn *a = NULL, *b = NULL;
    assert_int_equal(db_open(&ds, 0, NULL, &a), 0);
    assert_int_equal(db_open(&ds, 0, NULL, &b), 0);
    assert_ptr_not_equal(a, b);
    assert_int_equal(n_opens, before + 2);
    db_close(a);
    db_close(b);

    db_sqlite_pool_drain();
    assert_int_equal(count_persons(), 10);
    assert_int_equal(n_opens, before + 3);   /* drained: a fresh open */
}

static void replaced_file_is_reopened(void **st)
{
    (void)st;
    assert_int_equal(count_persons(), 10);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s/new.sqlite", tmpdir);
    make_db(tmp, 25);
    assert_int_equal(rename(tmp, ds.path), 0);   /* a new file under the same path */
    long before = n_opens;
    assert_int_equal(count_persons(), 25);
    assert_int_equal(n_opens, before + 1);
    make_db(ds.path, 10);   /* back to 10 for the other tests (unlink + create) */
    assert_int_equal(count_persons(), 10);
}

static void change_in_place_is_seen(void **st)
{
    (void)st;
    assert_int_equal(count_persons(), 10);
    exec_sql(ds.path, "INSERT INTO person VALUES(1000, 1950)");
    assert_int_equal(count_persons(), 11);
    exec_sql(ds.path, "DELETE FROM person WHERE person_id = 1000");
    assert_int_equal(count_persons(), 10);
}

static int failing_row(void *ctx, const db_value *cols, int ncols)
{
    (void)ctx; (void)cols; (void)ncols;
    return SDF_EOVERFLOW;
}

static void failed_connection_is_not_reused(void **st)
{
    (void)st;
    assert_int_equal(count_persons(), 10);   /* one idle in the pool */
    db_conn *c = NULL;
    long before = n_opens;
    assert_int_equal(db_open(&ds, 0, NULL, &c), 0);
    assert_int_equal(n_opens, before);   /* the pooled one */
    assert_int_equal(db_query(c, "SELECT no_such_column FROM person", NULL, 0, NULL, NULL),
                     SDF_EDB);
    db_close(c);
    assert_int_equal(count_persons(), 10);
    assert_int_equal(n_opens, before + 1);   /* the failed one was closed */

    /* a timed-out (interrupted) connection is not reused either */
    before = n_opens;
    atomic_int cancel = 1;
    assert_int_equal(db_open(&ds, 0, &cancel, &c), 0);
    assert_int_equal(n_opens, before);   /* the pooled one */
    assert_int_equal(db_query(c, "SELECT COUNT(*) FROM person", NULL, 0, NULL, NULL),
                     SDF_ETIMEOUT);
    db_close(c);
    assert_int_equal(count_persons(), 10);
    assert_int_equal(n_opens, before + 1);

    /* nor is one whose row callback failed */
    before = n_opens;
    assert_int_equal(db_open(&ds, 0, NULL, &c), 0);
    assert_int_equal(n_opens, before);
    assert_int_equal(db_query(c, "SELECT COUNT(*) FROM person", NULL, 0, failing_row, NULL),
                     SDF_EOVERFLOW);
    db_close(c);
    assert_int_equal(count_persons(), 10);
    assert_int_equal(n_opens, before + 1);
}

static int64_t born_after(int64_t year, const int64_t *ids, size_t n)
{
    db_conn *c = NULL;
    int64_t r = -1;
    db_param p[2] = {
        { .type = DB_PARAM_INT64, .i = year },
        { .type = DB_PARAM_INT64_LIST, .list = ids, .n = n },
    };
    char sql[200], list[64];
    assert_int_equal(db_open(&ds, 0, NULL, &c), 0);
    assert_true(db_sql_int_list(c, 2, list, sizeof list) > 0);
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM person WHERE year_of_birth > ?1 AND person_id IN (%s)", list);
    assert_int_equal(db_query(c, sql, p, 2, one_int, &r), 0);
    db_close(c);
    return r;
}

static void cached_statement_keeps_no_binding(void **st)
{
    (void)st;
    const int64_t all[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
    const int64_t two[] = { 9, 10 };
    long before = n_opens;
    /* the same SQL text with different values: each run sees only its own */
    assert_int_equal(born_after(1905, all, 10), 5);
    assert_int_equal(born_after(1900, all, 10), 10);
    assert_int_equal(born_after(1900, two, 2), 2);
    assert_int_equal(born_after(1909, two, 2), 1);
    assert_int_equal(born_after(1905, all, 10), 5);
    assert_true(n_opens <= before + 1);
    /* a parameter count mismatch is refused, and the statement stays correct */
    db_conn *c = NULL;
    assert_int_equal(db_open(&ds, 0, NULL, &c), 0);
    assert_int_equal(db_query(c, "SELECT COUNT(*) FROM person WHERE person_id > ?1", NULL, 0,
                              NULL, NULL), SDF_EINVAL);
    db_close(c);
    assert_int_equal(born_after(1905, all, 10), 5);
}

static void still_read_only(void **st)
{
    (void)st;
    for (int k = 0; k < 2; k++) {   /* fresh, then pooled */
        db_conn *c = NULL;
        assert_int_equal(db_open(&ds, 0, NULL, &c), 0);
        assert_int_not_equal(db_query(c, "DELETE FROM person", NULL, 0, NULL, NULL), 0);
        db_close(c);
        assert_int_equal(count_persons(), 10);
    }
}

/* Each column's value as text, as SQLite writes it: integers (extremes
 * included), reals, text, NULL. */
static int texts_row(void *ctx, const db_value *cols, int ncols)
{
    char *out = ctx;
    size_t o = 0;
    for (int k = 0; k < ncols; k++)
        o += (size_t)snprintf(out + o, 512 - o, "%s|",
                              cols[k].is_null ? "NULL" : db_value_text(&cols[k]));
    return 0;
}

/* Each column through db_value_double: its value, or the error code. */
typedef struct doubles {
    double v[8];
    int rc[8];
    bool number[8];
} doubles;

static int doubles_row(void *ctx, const db_value *cols, int ncols)
{
    doubles *d = ctx;
    for (int k = 0; k < ncols && k < 8; k++) {
        d->rc[k] = db_value_double(&cols[k], &d->v[k]);
        d->number[k] = cols[k].is_number;
    }
    return 0;
}

static void values_as_numbers(void **st)
{
    (void)st;
    db_conn *c = NULL;
    doubles d;
    memset(&d, 0, sizeof d);
    assert_int_equal(db_open(&ds, 0, NULL, &c), 0);
    assert_int_equal(db_query(c, "SELECT 7, 2.5, 0.1 + 0.2, '3.25', 'abc', NULL, 1e400, '4x'",
                              NULL, 0, doubles_row, &d), 0);
    db_close(c);
    assert_int_equal(d.rc[0], 0);
    assert_true(d.v[0] == 7.0 && d.number[0]);
    assert_int_equal(d.rc[1], 0);
    assert_true(d.v[1] == 2.5 && d.number[1]);
    /* the stored double itself, not its 15-digit text ("0.3") read back */
    assert_int_equal(d.rc[2], 0);
    assert_true(d.v[2] == 0.1 + 0.2);
    assert_true(d.v[2] != 0.3);
    assert_int_equal(d.rc[3], 0);   /* numeric text is read whole */
    assert_true(d.v[3] == 3.25 && !d.number[3]);
    assert_int_equal(d.rc[4], SDF_EINVAL);   /* other text */
    assert_int_equal(d.rc[5], SDF_EINVAL);   /* NULL */
    assert_int_equal(d.rc[6], SDF_EINVAL);   /* infinite */
    assert_int_equal(d.rc[7], SDF_EINVAL);   /* a number with a tail */
}

static void values_as_text(void **st)
{
    (void)st;
    db_conn *c = NULL;
    char got[512] = "";
    assert_int_equal(db_open(&ds, 0, NULL, &c), 0);
    assert_int_equal(db_query(c, "SELECT 0, 7, -42, 9223372036854775807, "
                                 "-9223372036854775807 - 1, 2.5, 'x y', NULL",
                              NULL, 0, texts_row, got), 0);
    db_close(c);
    assert_string_equal(got, "0|7|-42|9223372036854775807|-9223372036854775808|2.5|x y|NULL|");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reuses_a_healthy_connection),
        cmocka_unit_test(replaced_file_is_reopened),
        cmocka_unit_test(change_in_place_is_seen),
        cmocka_unit_test(failed_connection_is_not_reused),
        cmocka_unit_test(cached_statement_keeps_no_binding),
        cmocka_unit_test(still_read_only),
        cmocka_unit_test(values_as_text),
        cmocka_unit_test(values_as_numbers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
