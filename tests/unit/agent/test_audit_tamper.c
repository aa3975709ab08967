/* tests/unit/agent/test_audit_tamper.c — regression tests for tampering the
 * audit verifier used to miss (found by tests/fuzz/fuzz_audit.c).
 *
 * The row hash covers each field as text up to its first NUL byte, so a
 * field rewritten as text with bytes after a NUL, or as a BLOB / INTEGER /
 * REAL with the same text, changed what is stored without changing the
 * hash; likewise a chain head whose seq is the TEXT "4abc". audit_verify
 * must now report each of these as not ok, and still pass an untouched log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "governance/audit.h"
#include "sdefed/log.h"
#include "state.h"

typedef struct fixture {
    char dir[64];
    state *s;
} fixture;

static int setup(void **st)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    snprintf(f->dir, sizeof f->dir, "/tmp/sdefed-audit-tamper-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[256];
    assert_int_equal(state_open(f->dir, &f->s, err, sizeof err), 0);
    static const char *const events[3] = { "received", "answered", "released" };
    for (int i = 0; i < 3; i++) {
        audit_entry e = { .event = events[i], .query_id = "q-1", .requester = "alice",
                          .project = "P1", .kind = "count", .actor = "agent" };
        assert_int_equal(audit_append(f->s, &e, NULL, NULL), 0);
    }
    *st = f;
    return 0;
}

static int teardown(void **st)
{
    fixture *f = *st;
    state_close(f->s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Run sql with one bound value (type: 't' text of len bytes, 'b' blob,
 * 'i' integer from text, 'r' real from text) and verify; returns r.ok. */
static bool tamper(fixture *f, const char *sql, char type, const char *v, int len)
{
    sqlite3 *db = state_db(f->s);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    switch (type) {
    case 't': sqlite3_bind_text(st, 1, v, len, SQLITE_TRANSIENT); break;
    case 'b': sqlite3_bind_blob(st, 1, v, len, SQLITE_TRANSIENT); break;
    case 'i': sqlite3_bind_int64(st, 1, strtoll(v, NULL, 10)); break;
    default: sqlite3_bind_double(st, 1, strtod(v, NULL)); break;
    }
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    assert_int_equal(sqlite3_changes(db), 1);
    sqlite3_finalize(st);
    audit_report r;
    assert_int_equal(audit_verify(f->s, 0, NULL, &r), 0);
    if (!r.ok)
        assert_true(r.problem[0] != '\0');
    return r.ok;
}

static void test_untouched_passes(void **st)
{
    fixture *f = *st;
    audit_report r;
    assert_int_equal(audit_verify(f->s, 0, NULL, &r), 0);
    assert_true(r.ok);
    assert_int_equal(r.rows, 3);
}

static void test_bytes_after_nul(void **st)
{
    /* The fuzzer's case: signature "" became "\0\0\x08\xce". */
    fixture *f = *st;
    assert_false(tamper(f, "UPDATE audit SET signature = ?1 WHERE seq = 3", 't', "\0\0\x08\xce", 4));
}

static void test_nul_appended_to_text(void **st)
{
    fixture *f = *st;
    assert_false(tamper(f, "UPDATE audit SET requester = ?1 WHERE seq = 2", 't', "alice\0mallory",
                        13));
}

static void test_same_text_as_blob(void **st)
{
    fixture *f = *st;
    assert_false(tamper(f, "UPDATE audit SET reason = ?1 WHERE seq = 1", 'b', "", 0));
    assert_false(tamper(f, "UPDATE audit SET event = ?1 WHERE seq = 1", 'b', "received", 8));
}

static void test_hash_with_trailer(void **st)
{
    fixture *f = *st;
    sqlite3 *db = state_db(f->s);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT hash FROM audit WHERE seq = 3", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    char h[80];
    snprintf(h, sizeof h, "%s", (const char *)sqlite3_column_text(q, 0));
    sqlite3_finalize(q);
    memcpy(h + 64, "\0xyz", 4);
    assert_false(tamper(f, "UPDATE audit SET hash = ?1 WHERE seq = 3", 't', h, 68));
}

static void test_same_value_rewritten_passes(void **st)
{
    /* Writing a field's own value back changes nothing stored. */
    fixture *f = *st;
    assert_true(tamper(f, "UPDATE audit SET query_id = ?1 WHERE seq = 1", 't', "q-1", 3));
    assert_true(tamper(f, "UPDATE audit SET seq = ?1 WHERE seq = 2", 'i', "2", 0));
}

static void test_head_seq_as_text(void **st)
{
    fixture *f = *st;
    assert_false(tamper(f, "UPDATE audit_head SET seq = ?1", 't', "3abc", 4));
}

static void test_head_hash_with_trailer(void **st)
{
    fixture *f = *st;
    assert_false(tamper(f, "UPDATE audit_head SET hash = hash || ?1", 't', "\0z", 2));
}

int main(void)
{
    log_set_level(SDF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_untouched_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bytes_after_nul, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nul_appended_to_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_text_as_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_with_trailer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_value_rewritten_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_seq_as_text, setup, teardown),
        cmocka_unit_test_setup_teardown(test_head_hash_with_trailer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
