/* tests/unit/lib/test_stmt_cache.c — prepared statements kept on a handle. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "sdefed/stmt_cache.h"

static sqlite3 *open_mem(void)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x INTEGER)", NULL, NULL, NULL),
                     SQLITE_OK);
    return db;
}

static void test_same_text_same_statement_reset_between_uses(void **state)
{
    (void)state;
    sqlite3 *db = open_mem();
    stmt_cache c;
    stmt_cache_init(&c, db);
    sqlite3_stmt *a = NULL, *b = NULL;
    assert_int_equal(stmt_cache_get(&c, "INSERT INTO t VALUES (?1)", &a), SQLITE_OK);
    sqlite3_bind_int(a, 1, 7);
    assert_int_equal(sqlite3_step(a), SQLITE_DONE);
    stmt_cache_put(&c, a);
    /* the same text (another copy of it) gives the kept statement, reset,
     * with its bindings cleared (NULL, not 7) */
    char copy[64];
    snprintf(copy, sizeof copy, "%s", "INSERT INTO t VALUES (?1)");
    assert_int_equal(stmt_cache_get(&c, copy, &b), SQLITE_OK);
    assert_ptr_equal(a, b);
    assert_int_equal(sqlite3_step(b), SQLITE_DONE);
    stmt_cache_put(&c, b);
    sqlite3_stmt *q = NULL;
    assert_int_equal(stmt_cache_get(&c, "SELECT COUNT(*), COUNT(x), SUM(x) FROM t", &q),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 2);
    assert_int_equal(sqlite3_column_int(q, 1), 1);   /* the second insert bound nothing */
    assert_int_equal(sqlite3_column_int(q, 2), 7);
    /* put mid-row: the read is reset, so a writer is not blocked */
    stmt_cache_put(&c, q);
    assert_int_equal(sqlite3_stmt_busy(q), 0);
    assert_int_equal(c.n, 2);
    stmt_cache_clear(&c);
    assert_int_equal(c.n, 0);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);   /* nothing left unfinalized */
}

static void test_bad_sql_and_overflow(void **state)
{
    (void)state;
    sqlite3 *db = open_mem();
    stmt_cache c;
    stmt_cache_init(&c, db);
    sqlite3_stmt *st = (sqlite3_stmt *)&c;   /* must be set to NULL on failure */
    assert_int_not_equal(stmt_cache_get(&c, "SELEKT nothing", &st), SQLITE_OK);
    assert_null(st);
    assert_int_equal(c.n, 0);
    stmt_cache_put(&c, NULL);
    /* more distinct statements than fit: the extra ones are finalized on put */
    static char sql[STMT_CACHE_MAX + 2][48];
    for (int i = 0; i < STMT_CACHE_MAX + 2; i++) {
        snprintf(sql[i], sizeof sql[i], "SELECT %d FROM t", i);
        assert_int_equal(stmt_cache_get(&c, sql[i], &st), SQLITE_OK);
        stmt_cache_put(&c, st);
    }
    assert_int_equal(c.n, STMT_CACHE_MAX);
    stmt_cache_clear(&c);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static void test_exec_kept_transactions_and_pragmas(void **state)
{
    (void)state;
    sqlite3 *db = open_mem();
    stmt_cache c;
    stmt_cache_init(&c, db);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(stmt_cache_exec(&c, "PRAGMA synchronous=NORMAL"), SQLITE_OK);
        assert_int_equal(stmt_cache_exec(&c, "BEGIN IMMEDIATE"), SQLITE_OK);
        assert_int_equal(sqlite3_get_autocommit(db), 0);
        assert_int_equal(sqlite3_exec(db, "INSERT INTO t VALUES (1)", NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(stmt_cache_exec(&c, "COMMIT"), SQLITE_OK);
        assert_int_equal(sqlite3_get_autocommit(db), 1);
    }
    assert_int_equal(c.n, 3);   /* each text prepared once */
    /* an error comes back as SQLite's code, the statement reusable */
    assert_int_equal(stmt_cache_exec(&c, "COMMIT"), SQLITE_ERROR);
    assert_int_equal(stmt_cache_exec(&c, "BEGIN IMMEDIATE"), SQLITE_OK);
    assert_int_equal(stmt_cache_exec(&c, "COMMIT"), SQLITE_OK);
    assert_int_not_equal(stmt_cache_exec(&c, "SELEKT"), SQLITE_OK);
    sqlite3_stmt *q = NULL;
    assert_int_equal(stmt_cache_get(&c, "SELECT COUNT(*) FROM t", &q), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), 3);
    stmt_cache_put(&c, q);
    stmt_cache_clear(&c);
    assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_text_same_statement_reset_between_uses),
        cmocka_unit_test(test_bad_sql_and_overflow),
        cmocka_unit_test(test_exec_kept_transactions_and_pragmas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
