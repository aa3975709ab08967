/* tests/unit/agent/test_governance.c — projects, review queue, signed
 * protocols and the hash-chained audit log, against real state databases.
 *
 * The audit tests tamper with the SQLite file the way an insider with
 * database access would — edit a field, delete a middle row, delete the
 * last row, append a forged row, swap two rows, rewrite one row with a
 * freshly computed hash, edit the head — and assert that audit_verify()
 * names the first bad row. A child process appending in a loop is killed
 * with SIGKILL and the log must still verify.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "governance/audit.h"
#include "governance/projects.h"
#include "governance/review.h"
#include "sdefed/log.h"
#include "sdefed/passport.h"
#include "sdefed/spec.h"
#include "state.h"

static char tmpdir[256];

static int setup_dir(void **st)
{
    (void)st;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sdefed-gov-XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return 0;
}

static int teardown_dir(void **st)
{
    (void)st;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static state *open_fresh(const char *name)
{
    char dir[512], err[512];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    state *s = NULL;
    assert_int_equal(state_open(dir, &s, err, sizeof err), 0);
    return s;
}

static void append_n(state *s, int n)
{
    for (int i = 0; i < n; i++) {
        char qid[32];
        snprintf(qid, sizeof qid, "q-%d", i + 1);
        audit_entry e = { .event = i % 2 ? "answered" : "received", .query_id = qid,
                          .requester = "analyst", .project = "demo", .kind = "count",
                          .reason = "auto", .actor = "agent" };
        assert_int_equal(audit_append(s, &e, NULL, NULL), 0);
    }
}

static void exec_sql(state *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(state_db(s), sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : "?");
}

static audit_report verify(state *s)
{
    audit_report r;
    assert_int_equal(audit_verify(s, 0, NULL, &r), 0);
    return r;
}

/* ---- audit ---- */

static void test_audit_intact(void **st)
{
    (void)st;
    state *s = open_fresh("intact");
    audit_report r = verify(s);
    assert_true(r.ok);
    assert_int_equal(r.rows, 0);
    int64_t seq;
    char hash[AUDIT_HASH_HEX + 1];
    append_n(s, 5);
    audit_entry e = { .event = "refused", .reason = "unknown project 'x'" };
    assert_int_equal(audit_append(s, &e, &seq, hash), 0);
    assert_int_equal(seq, 6);
    r = verify(s);
    assert_true(r.ok);
    assert_int_equal(r.rows, 6);
    assert_int_equal(r.head_seq, 6);
    assert_string_equal(r.head_hash, hash);
    /* The externally kept head matches... */
    assert_int_equal(audit_verify(s, 6, hash, &r), 0);
    assert_true(r.ok);
    /* ...and a wrong one does not. */
    char wrong[AUDIT_HASH_HEX + 1];
    memcpy(wrong, hash, sizeof wrong);
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    assert_int_equal(audit_verify(s, 6, wrong, &r), 0);
    assert_false(r.ok);
    state_close(s);
}

static void test_audit_edit_field(void **st)
{
    (void)st;
    const char *edits[] = {
        "UPDATE audit SET reason = 'nothing to see' WHERE seq = 3",
        "UPDATE audit SET requester = 'someone-else' WHERE seq = 3",
        "UPDATE audit SET ts_ms = ts_ms + 1 WHERE seq = 3",
        "UPDATE audit SET event = 'refused' WHERE seq = 3",
        "UPDATE audit SET release_sha256 = 'ff' WHERE seq = 3",
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "edit%zu", i);
        state *s = open_fresh(name);
        append_n(s, 5);
        exec_sql(s, edits[i]);
        audit_report r = verify(s);
        assert_false(r.ok);
        assert_int_equal(r.bad_seq, 3);
        state_close(s);
    }
}

static void test_audit_edit_with_rehash(void **st)
{
    (void)st;
    /* Edit row 2 and give it a correct-looking hash: row 3's link breaks. */
    state *s = open_fresh("rehash");
    append_n(s, 5);
    exec_sql(s, "UPDATE audit SET reason = 'x', hash = (SELECT hash FROM audit WHERE seq = 4)"
                " WHERE seq = 2");
    audit_report r = verify(s);
    assert_false(r.ok);
    assert_int_equal(r.bad_seq, 2);
    state_close(s);
}

static void test_audit_delete_middle(void **st)
{
    (void)st;
    state *s = open_fresh("delmid");
    append_n(s, 5);
    exec_sql(s, "DELETE FROM audit WHERE seq = 3");
    audit_report r = verify(s);
    assert_false(r.ok);
    assert_int_equal(r.bad_seq, 4);
    /* Renumbering to close the gap breaks the hashes instead. */
    exec_sql(s, "UPDATE audit SET seq = seq - 1 WHERE seq > 3");
    r = verify(s);
    assert_false(r.ok);
    assert_int_equal(r.bad_seq, 3);
    state_close(s);
}

static void test_audit_delete_last(void **st)
{
    (void)st;
    state *s = open_fresh("dellast");
    append_n(s, 5);
    char hash5[AUDIT_HASH_HEX + 1];
    audit_report r = verify(s);
    memcpy(hash5, r.head_hash, sizeof hash5);
    exec_sql(s, "DELETE FROM audit WHERE seq = 5");
    r = verify(s);
    assert_false(r.ok);
    assert_int_equal(r.bad_seq, 5);
    /* Rolling the head back too is caught by the externally kept head. */
    exec_sql(s, "UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit WHERE seq = 4)");
    r = verify(s);
    assert_true(r.ok);
    assert_int_equal(audit_verify(s, 5, hash5, &r), 0);
    assert_false(r.ok);
    assert_int_equal(r.bad_seq, 5);
    state_close(s);
}

static void test_audit_delete_all_and_head(void **st)
{
    (void)st;
    state *s = open_fresh("delall");
    append_n(s, 3);
    exec_sql(s, "DELETE FROM audit");
    audit_report r = verify(s);
    assert_false(r.ok);
    exec_sql(s, "DELETE FROM audit_head");
    append_n(s, 0);
    r = verify(s);
    assert_true(r.ok);   /* an empty log: only an external head can tell */
    state_close(s);
}

static void test_audit_insert_forged(void **st)
{
    (void)st;
    state *s = open_fresh("forge");
    append_n(s, 4);
    /* A forged row at the end, with the right prev_hash. */
    exec_sql(s, "INSERT INTO audit SELECT 5, ts_ms, 'answered', 'q-x', requester, project, kind,"
                " spec_sha256, reason, release_sha256, signer, signature, actor, hash, hash"
                " FROM audit WHERE seq = 4");
    audit_report r = verify(s);
    assert_false(r.ok);
    assert_int_equal(r.bad_seq, 5);
    state_close(s);

    /* A row squeezed in the middle (seq 2.5 is not possible: renumber). */
    s = open_fresh("forge2");
    append_n(s, 4);
    exec_sql(s, "UPDATE audit SET seq = seq + 100 WHERE seq >= 3;"
                "UPDATE audit SET seq = seq - 99 WHERE seq >= 100");
    exec_sql(s, "INSERT INTO audit SELECT 3, ts_ms, 'answered', 'q-x', requester, project, kind,"
                " spec_sha256, reason, release_sha256, signer, signature, actor, hash, hash"
                " FROM audit WHERE seq = 2");
    r = verify(s);
    assert_false(r.ok);
    assert_int_equal(r.bad_seq, 3);
    state_close(s);
}

static void test_audit_reorder(void **st)
{
    (void)st;
    state *s = open_fresh("reorder");
    append_n(s, 5);
    /* Swap rows 2 and 3 (contents and hashes) by swapping their seqs. */
    exec_sql(s, "UPDATE audit SET seq = 100 WHERE seq = 2;"
                "UPDATE audit SET seq = 2 WHERE seq = 3;"
                "UPDATE audit SET seq = 3 WHERE seq = 100;");
    audit_report r = verify(s);
    assert_false(r.ok);
    assert_int_equal(r.bad_seq, 2);
    state_close(s);
}

static void test_audit_head_edited(void **st)
{
    (void)st;
    state *s = open_fresh("head");
    append_n(s, 3);
    exec_sql(s, "UPDATE audit_head SET hash = 'deadbeef'");
    audit_report r = verify(s);
    assert_false(r.ok);
    exec_sql(s, "DELETE FROM audit_head");
    r = verify(s);
    assert_false(r.ok);
    state_close(s);
}

static void test_audit_kill9_mid_append(void **st)
{
    (void)st;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/kill", tmpdir);
    state *s = open_fresh("kill");
    state_close(s);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        state *cs;
        if (state_open(dir, &cs, err, sizeof err) != 0)
            _exit(3);
        for (int i = 0;; i++) {
            audit_entry e = { .event = "received", .query_id = "q-loop", .actor = "agent",
                              .reason = "appending until killed" };
            if (audit_append(cs, &e, NULL, NULL) != 0)
                _exit(4);
        }
    }
    /* Wait until the child has committed a good number of rows. */
    s = open_fresh("kill");
    for (int tries = 0; tries < 20000; tries++) {
        sqlite3_stmt *q;
        int64_t n = 0;
        if (sqlite3_prepare_v2(state_db(s), "SELECT count(*) FROM audit", -1, &q, NULL) ==
            SQLITE_OK) {
            if (sqlite3_step(q) == SQLITE_ROW)
                n = sqlite3_column_int64(q, 0);
            sqlite3_finalize(q);
        }
        if (n >= 150)
            break;
        usleep(2000);
    }
    kill(pid, SIGKILL);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    audit_report r = verify(s);
    assert_true(r.ok);
    assert_true(r.rows >= 150);
    assert_int_equal(r.head_seq, r.rows);
    /* And appending after the crash continues the chain. */
    append_n(s, 1);
    r = verify(s);
    assert_true(r.ok);
    state_close(s);
}

static void test_audit_export(void **st)
{
    (void)st;
    state *s = open_fresh("export");
    append_n(s, 3);
    char path[512];
    snprintf(path, sizeof path, "%s/export.jsonl", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(audit_export(s, 0, f), 3);
    fclose(f);
    f = fopen(path, "r");
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "seq")), n + 1);
        assert_int_equal(strlen(json_string_value(json_object_get(j, "hash"))), 64);
        json_decref(j);
        n++;
    }
    fclose(f);
    assert_int_equal(n, 3);
    /* --since in the future: nothing. */
    f = fopen(path, "w");
    assert_int_equal(audit_export(s, INT64_MAX, f), 0);
    fclose(f);
    state_close(s);
}

/* ---- projects ---- */

static Sdefed__QuerySpec *spec_from(const char *json)
{
    Sdefed__QuerySpec *sp = NULL;
    char err[256];
    assert_int_equal(spec_parse_json(json, strlen(json), &sp, err, sizeof err), 0);
    return sp;
}

#define COUNT_SPEC                                                                          \
    "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop\",\"cohort\":{\"all\":"     \
    "[{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":true}]},\"by\":[\"sex\"]}"

static void test_project_admit(void **st)
{
    (void)st;
    gov_project p;
    memset(&p, 0, sizeof p);
    snprintf(p.id, sizeof p.id, "p1");
    snprintf(p.kinds, sizeof p.kinds, "count");
    snprintf(p.datasets, sizeof p.datasets, "omop");
    snprintf(p.requesters, sizeof p.requesters, "alice,bob");
    p.release = RELEASE_AUTO;
    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    req.spec = spec_from(COUNT_SPEC);
    req.requester = "alice";
    char why[256];
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), 0);

    req.requester = "mallory";
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), SDF_EREFUSED);
    assert_string_equal(why, "requester 'mallory' is not on project 'p1'");
    req.requester = "ali";                  /* a prefix is not a member */
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), SDF_EREFUSED);
    req.requester = "alice,bob";            /* nor is the list itself */
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), SDF_EREFUSED);
    req.requester = "bob";
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), 0);

    snprintf(p.kinds, sizeof p.kinds, "catalog");
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), SDF_EREFUSED);
    assert_string_equal(why, "query kind 'count' is not allowed in project 'p1'");
    snprintf(p.kinds, sizeof p.kinds, "*");

    snprintf(p.datasets, sizeof p.datasets, "other");
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), SDF_EREFUSED);
    assert_string_equal(why, "dataset 'omop' is not allowed in project 'p1'");
    snprintf(p.datasets, sizeof p.datasets, "*");

    p.expires_ms = 1000;
    assert_int_equal(project_admit(&p, &req, 999, why, sizeof why), 0);
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), SDF_EREFUSED);
    assert_non_null(strstr(why, "expired"));
    p.expires_ms = 0;
    p.revoked_ms = 5;
    assert_int_equal(project_admit(&p, &req, 1000, why, sizeof why), SDF_EREFUSED);
    assert_string_equal(why, "project 'p1' has been revoked");
    sdefed__query_spec__free_unpacked(req.spec, NULL);
}

static void test_project_lists_and_dates(void **st)
{
    (void)st;
    char why[128];
    assert_true(project_list_valid("*", false, why, sizeof why));
    assert_true(project_list_valid("a,b.c,d-e", false, why, sizeof why));
    assert_false(project_list_valid("", false, why, sizeof why));
    assert_false(project_list_valid("a,,b", false, why, sizeof why));
    assert_false(project_list_valid("a,", false, why, sizeof why));
    assert_false(project_list_valid("a b", false, why, sizeof why));
    assert_false(project_list_valid("a,*", false, why, sizeof why));
    assert_true(project_list_valid("count,catalog", true, why, sizeof why));
    assert_false(project_list_valid("count,sql", true, why, sizeof why));
    assert_true(project_list_has("a,bb,c", "bb"));
    assert_false(project_list_has("a,bb,c", "b"));
    assert_false(project_list_has("a,bb,c", ""));
    assert_true(project_list_has("*", "anything"));

    int64_t ms;
    assert_int_equal(project_parse_date("1970-01-01", false, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(project_parse_date("1970-01-01", true, &ms), 0);
    assert_int_equal(ms, 86400000);
    assert_int_equal(project_parse_date("2024-02-29T12:00:00Z", false, &ms), 0);
    assert_int_equal(ms, 1709208000000LL);
    assert_int_equal(project_parse_date("2023-02-29", false, &ms), SDF_EINVAL);
    assert_int_equal(project_parse_date("2024-13-01", false, &ms), SDF_EINVAL);
    assert_int_equal(project_parse_date("2024-1-01", false, &ms), SDF_EINVAL);
    assert_int_equal(project_parse_date("2024-01-01 ", false, &ms), SDF_EINVAL);
}

static void test_project_store(void **st)
{
    (void)st;
    state *s = open_fresh("projects");
    gov_project p;
    memset(&p, 0, sizeof p);
    char err[256];
    snprintf(p.id, sizeof p.id, "p1");
    snprintf(p.kinds, sizeof p.kinds, "count");
    snprintf(p.datasets, sizeof p.datasets, "*");
    snprintf(p.requesters, sizeof p.requesters, "alice");
    p.release = RELEASE_REVIEW;
    p.min_cell = 20;
    assert_int_equal(project_add(s, &p, err, sizeof err), 0);
    assert_int_equal(project_add(s, &p, err, sizeof err), SDF_EREFUSED);
    gov_project q;
    assert_int_equal(project_get(s, "p1", &q), 0);
    assert_string_equal(q.requesters, "alice");
    assert_int_equal(q.release, RELEASE_REVIEW);
    assert_int_equal(q.min_cell, 20);
    assert_int_equal(project_get(s, "nope", &q), SDF_ENOTFOUND);
    snprintf(p.id, sizeof p.id, "p2");
    snprintf(p.kinds, sizeof p.kinds, "drop table");
    assert_int_equal(project_add(s, &p, err, sizeof err), SDF_EINVAL);
    assert_int_equal(project_revoke(s, "p1", "ethics approval withdrawn"), 0);
    assert_int_equal(project_revoke(s, "p1", "again"), SDF_EREFUSED);
    assert_int_equal(project_revoke(s, "nope", ""), SDF_ENOTFOUND);
    assert_int_equal(project_get(s, "p1", &q), 0);
    assert_true(q.revoked_ms > 0);
    state_close(s);
}

/* ---- review queue ---- */

static void hold_one(state *s, const char *qid, int64_t created, int64_t expires)
{
    held_item h;
    memset(&h, 0, sizeof h);
    snprintf(h.query_id, sizeof h.query_id, "%s", qid);
    snprintf(h.project, sizeof h.project, "p1");
    snprintf(h.requester, sizeof h.requester, "alice");
    snprintf(h.kind, sizeof h.kind, "count");
    h.spec_json = (char *)"{}";
    uint8_t blob[3] = { 1, 2, 3 };
    h.result = blob;
    h.result_len = sizeof blob;
    audit_sha256_hex(blob, sizeof blob, h.result_sha256);
    h.created_ms = created;
    h.expires_ms = expires;
    audit_entry e = { .event = "held", .query_id = qid, .actor = "agent" };
    int64_t id;
    assert_int_equal(review_hold(s, &h, &e, &id), 0);
}

static void test_review_queue(void **st)
{
    (void)st;
    state *s = open_fresh("review");
    hold_one(s, "q-1", 1000, 10000);
    hold_one(s, "q-2", 1000, 10000);
    hold_one(s, "q-3", 1000, 5000);
    char err[256];
    held_item h;
    assert_int_equal(review_next_outgoing(s, &h), SDF_ENOTFOUND);
    /* A rejection needs a reason. */
    assert_int_equal(review_decide(s, 2, false, "custodian", NULL, 2000, err, sizeof err),
                     SDF_EINVAL);
    assert_int_equal(review_decide(s, 2, false, "custodian", "", 2000, err, sizeof err),
                     SDF_EINVAL);
    assert_int_equal(review_decide(s, 1, true, "custodian", NULL, 2000, err, sizeof err), 0);
    assert_int_equal(review_decide(s, 1, false, "custodian", "no", 2000, err, sizeof err),
                     SDF_EREFUSED);
    assert_int_equal(review_decide(s, 2, false, "custodian", "small cohort", 2000, err,
                                   sizeof err), 0);
    /* q-3 is past its expiry when the custodian gets to it. */
    assert_int_equal(review_decide(s, 3, true, "custodian", NULL, 6000, err, sizeof err),
                     SDF_ETIMEOUT);
    assert_int_equal(review_decide(s, 9, true, "custodian", NULL, 6000, err, sizeof err),
                     SDF_ENOTFOUND);

    assert_int_equal(review_next_outgoing(s, &h), 0);
    assert_string_equal(h.query_id, "q-1");
    assert_string_equal(h.state, "approved");
    assert_int_equal(h.result_len, 3);
    assert_int_equal(review_mark_notified(s, h.id, NULL), 0);
    held_item_clear(&h);
    assert_int_equal(review_get(s, "q-2", &h), 0);
    assert_string_equal(h.state, "rejected");
    assert_string_equal(h.reason, "small cohort");
    held_item_clear(&h);

    hold_one(s, "q-4", 1000, 7000);
    assert_int_equal(review_expire_due(s, 6999), 0);
    assert_int_equal(review_expire_due(s, 7000), 1);
    assert_int_equal(review_get(s, "4", &h), 0);
    assert_string_equal(h.state, "expired");
    held_item_clear(&h);
    /* Everything above was audited, and the chain holds. */
    audit_report r = verify(s);
    assert_true(r.ok);
    assert_int_equal(r.rows, 4 + 2 + 1 + 1);
    state_close(s);
}

static void test_state_reopen_and_version(void **st)
{
    (void)st;
    state *s = open_fresh("version");
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(state_db(s), "PRAGMA user_version", -1, &q, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(q, 0), state_schema_version());
    sqlite3_finalize(q);
    exec_sql(s, "PRAGMA user_version = 999");
    state_close(s);
    char dir[512], err[512];
    snprintf(dir, sizeof dir, "%s/version", tmpdir);
    assert_int_equal(state_open(dir, &s, err, sizeof err), SDF_EDB);
    assert_non_null(strstr(err, "newer"));
}

/* ---- signed protocols ---- */

static void test_passport(void **st)
{
    (void)st;
    char prefix[512], path[600], err[512];
    snprintf(prefix, sizeof prefix, "%s/approver", tmpdir);
    assert_int_equal(passport_keygen(prefix, err, sizeof err), 0);
    assert_int_not_equal(passport_keygen(prefix, err, sizeof err), 0);   /* never overwrites */
    snprintf(path, sizeof path, "%s.key", prefix);
    EVP_PKEY *priv = passport_load_private(path, err, sizeof err);
    assert_non_null(priv);
    snprintf(path, sizeof path, "%s.pub", prefix);
    EVP_PKEY *pub = passport_load_public(path, err, sizeof err);
    assert_non_null(pub);
    char kid1[65], kid2[65];
    assert_int_equal(passport_key_id(priv, kid1), 0);
    assert_int_equal(passport_key_id(pub, kid2), 0);
    assert_string_equal(kid1, kid2);

    Sdefed__QuerySpec *spec = spec_from(COUNT_SPEC);
    uint8_t sig[PASSPORT_SIG_LEN];
    assert_int_equal(passport_sign(priv, spec, sig), 0);
    assert_int_equal(passport_verify(pub, spec, sig, sizeof sig), 0);
    assert_int_equal(passport_verify(pub, spec, sig, 63), SDF_EAUTH);

    /* Changing any field breaks the signature. */
    const char *changed[] = {
        "{\"kind\":\"count\",\"project\":\"p2\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":true}]},\"by\":[\"sex\"]}",
        "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop2\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":true}]},\"by\":[\"sex\"]}",
        "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
        "[{\"domain\":\"condition\",\"concepts\":[1118084],\"descendants\":true}]},\"by\":[\"sex\"]}",
        "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[1118085],\"descendants\":true}]},\"by\":[\"sex\"]}",
        "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[1118084,1118085],\"descendants\":true}]},\"by\":[\"sex\"]}",
        "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":false}]},\"by\":[\"sex\"]}",
        "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":true}]},\"by\":[\"age_band\"]}",
        "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":true}]}}",
        "{\"kind\":\"count\",\"project\":\"p1\",\"dataset\":\"omop\",\"cohort\":{\"all\":"
        "[{\"domain\":\"drug\",\"concepts\":[1118084],\"descendants\":true}]},\"by\":[\"sex\"],"
        "\"policy\":{\"min_cell\":20}}",
        "{\"kind\":\"catalog\",\"project\":\"p1\"}",
    };
    for (size_t i = 0; i < sizeof changed / sizeof changed[0]; i++) {
        Sdefed__QuerySpec *c = spec_from(changed[i]);
        assert_int_equal(passport_verify(pub, c, sig, sizeof sig), SDF_EAUTH);
        sdefed__query_spec__free_unpacked(c, NULL);
    }
    /* The same spec written differently (key order, whitespace) still matches. */
    Sdefed__QuerySpec *same = spec_from(
        "{ \"by\": [\"sex\"], \"project\": \"p1\", \"kind\": \"count\", \"dataset\": \"omop\","
        "  \"cohort\": {\"all\": [{\"descendants\": true, \"concepts\": [1118084],"
        " \"domain\": \"drug\"}]} }");
    assert_int_equal(passport_verify(pub, same, sig, sizeof sig), 0);
    sdefed__query_spec__free_unpacked(same, NULL);

    /* Another key's signature does not verify. */
    char prefix2[512];
    snprintf(prefix2, sizeof prefix2, "%s/other", tmpdir);
    assert_int_equal(passport_keygen(prefix2, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s.key", prefix2);
    EVP_PKEY *priv2 = passport_load_private(path, err, sizeof err);
    uint8_t sig2[PASSPORT_SIG_LEN];
    assert_int_equal(passport_sign(priv2, spec, sig2), 0);
    assert_int_equal(passport_verify(pub, spec, sig2, sizeof sig2), SDF_EAUTH);

    /* The signed file round-trips. */
    char *text = passport_signed_json(spec, sig, priv);
    assert_non_null(text);
    passport_signed ps;
    assert_int_equal(passport_parse_signed(text, strlen(text), &ps, err, sizeof err), 1);
    assert_string_equal(ps.key_id, kid1);
    assert_memory_equal(ps.sig, sig, sizeof sig);
    assert_int_equal(passport_check_embedded(&ps), 0);
    assert_int_equal(passport_verify(pub, ps.spec, ps.sig, sizeof ps.sig), 0);
    sdefed__query_spec__free_unpacked(ps.spec, NULL);
    /* A plain spec is not a signed file; a broken signed file is an error. */
    assert_int_equal(passport_parse_signed(COUNT_SPEC, strlen(COUNT_SPEC), &ps, err, sizeof err), 0);
    const char *bad = "{\"sdefed_signed_protocol\":1,\"spec\":{\"kind\":\"catalog\",\"project\":\"p\"},"
                      "\"key_id\":\"00\",\"signature\":\"AA==\"}";
    assert_int_equal(passport_parse_signed(bad, strlen(bad), &ps, err, sizeof err), SDF_ESPEC);
    free(text);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(priv2);
    EVP_PKEY_free(pub);
    sdefed__query_spec__free_unpacked(spec, NULL);
}

int main(void)
{
    log_init("test_governance", NULL);
    log_set_level(SDF_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_intact),
        cmocka_unit_test(test_audit_edit_field),
        cmocka_unit_test(test_audit_edit_with_rehash),
        cmocka_unit_test(test_audit_delete_middle),
        cmocka_unit_test(test_audit_delete_last),
        cmocka_unit_test(test_audit_delete_all_and_head),
        cmocka_unit_test(test_audit_insert_forged),
        cmocka_unit_test(test_audit_reorder),
        cmocka_unit_test(test_audit_head_edited),
        cmocka_unit_test(test_audit_kill9_mid_append),
        cmocka_unit_test(test_audit_export),
        cmocka_unit_test(test_project_admit),
        cmocka_unit_test(test_project_lists_and_dates),
        cmocka_unit_test(test_project_store),
        cmocka_unit_test(test_review_queue),
        cmocka_unit_test(test_state_reopen_and_version),
        cmocka_unit_test(test_passport),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
