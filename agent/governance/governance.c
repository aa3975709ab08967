/* agent/governance/governance.c — the running agent's governance hooks:
 * admission, release decision, signed-protocol check and the review-queue
 * poller (governance.h). Everything here runs on the loop thread and uses
 * one state database handle that no other thread touches.
 */
#include "governance/governance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "agent.h"
#include "governance/audit.h"
#include "governance/projects.h"
#include "governance/review.h"
#include "sdefed/conf.h"
#include "sdefed/log.h"
#include "sdefed/passport.h"
#include "sdefed/spec.h"
#include "state.h"

struct gov_ticket {
    bool review;                       /* hold for the custodian */
    bool signed_ok;                    /* released under a signed protocol */
    char why[200];                     /* why auto / why held */
    char signer[PASSPORT_KEY_ID_HEX + 1];
    char sig_b64[96];
    char spec_sha[AUDIT_HASH_HEX + 1];
    char *spec_json;                   /* canonical spec (malloc'd) */
    char project[64];
    char kind[32];
};

/* The loop thread's state database and poller. */
static state *g_state;
static uv_timer_t g_timer;
static bool g_timer_started;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- helpers -------------------------------------------------------------------- */

static void close_state_at_exit(void)
{
    state_close(g_state);
    g_state = NULL;
}

static state *gov_state(const agent_config *cfg)
{
    static bool registered;
    if (g_state)
        return g_state;
    char err[512];
    if (state_open(cfg->state_dir, &g_state, err, sizeof err) != 0) {
        log_error("governance: %s", err);
        g_state = NULL;
    } else if (!registered) {
        atexit(close_state_at_exit);
        registered = true;
    }
    return g_state;
}

static void log_head(int64_t seq, const char *hash)
{
    log_info("audit #%lld %s", (long long)seq, hash);
}

/* Append, logging the new chain head; 0 or SDF_E*. */
static int audit(state *s, const audit_entry *e, bool log_it)
{
    int64_t seq;
    char hash[AUDIT_HASH_HEX + 1];
    int rc = audit_append(s, e, &seq, hash);
    if (rc)
        log_error("audit log append failed (%s)", sdf_strerror(rc));
    else if (log_it)
        log_head(seq, hash);
    return rc;
}

/* Append the "received" entry without its own fsync (synchronous=NORMAL
 * for this one commit). It is committed and atomic at once, and reaches
 * the disk with the next FULL commit on state.db (WAL frames are made
 * durable in order) — at the latest the entry that records what is sent,
 * which is fsync'd before the answer leaves. A power loss before that
 * loses only the record of a query that released nothing. If the handle
 * cannot be switched back to FULL it is closed (the next use reopens it
 * with FULL) and the query is refused. 0 or SDF_E*. */
static int audit_received(state *s, const audit_entry *e)
{
    sqlite3 *db = state_db(s);
    if (stmt_cache_exec(state_stmts(s), "PRAGMA synchronous=NORMAL") != SQLITE_OK)
        return audit(s, e, false);   /* stays FULL: just slower */
    int rc = audit(s, e, false);
    if (stmt_cache_exec(state_stmts(s), "PRAGMA synchronous=FULL") != SQLITE_OK) {
        log_error("governance: cannot restore synchronous=FULL: %s", sqlite3_errmsg(db));
        if (s == g_state) {
            state_close(g_state);
            g_state = NULL;
        }
        return SDF_EDB;
    }
    return rc;
}

static void ticket_free(gov_ticket *t)
{
    if (t) {
        free(t->spec_json);
        free(t);
    }
}

static audit_entry ticket_entry(const gov_ticket *t, const Sdefed__QueryRequest *req,
                                const char *event, const char *reason, const char *release)
{
    audit_entry e = {
        .event = event,
        .query_id = req->query_id,
        .requester = req->requester,
        .project = t->project,
        .kind = t->kind,
        .spec_sha256 = t->spec_sha,
        .reason = reason,
        .release_sha256 = release,
        .signer = t->signer,
        .signature = t->sig_b64,
        .actor = "agent",
    };
    return e;
}

/* Is req's signed protocol valid under one of cfg's trusted keys? */
static bool passport_ok(const agent_config *cfg, const Sdefed__QueryRequest *req, char *why,
                        size_t whylen)
{
    const char *kid = req->protocol_key_id ? req->protocol_key_id : "";
    for (size_t i = 0; i < cfg->gov.n_trusted_keys; i++) {
        char err[512], id[PASSPORT_KEY_ID_HEX + 1];
        EVP_PKEY *k = passport_load_public(cfg->gov.trusted_keys[i], err, sizeof err);
        if (!k) {
            log_warn("governance: trusted key unreadable: %s", err);
            continue;
        }
        bool match = passport_key_id(k, id) == 0 && strcmp(id, kid) == 0;
        int rc = match ? passport_verify(k, req->spec, req->protocol_signature.data,
                                         req->protocol_signature.len)
                       : SDF_EAUTH;
        EVP_PKEY_free(k);
        if (match) {
            if (rc == 0)
                return true;
            snprintf(why, whylen, "signed protocol does not match this spec");
            return false;
        }
    }
    snprintf(why, whylen, "signed protocol key is not trusted at this site");
    return false;
}

/* Make req's policy at least as strict as the project's. */
static int tighten_policy(Sdefed__QuerySpec *spec, const gov_project *p)
{
    if (!p->min_cell && !p->rounding && !p->zero_is_disclosive)
        return 0;
    if (!spec->policy) {
        spec->policy = malloc(sizeof *spec->policy);
        if (!spec->policy)
            return SDF_ENOMEM;
        sdefed__policy_request__init(spec->policy);
    }
    Sdefed__PolicyRequest *pr = spec->policy;
    if (p->min_cell > pr->min_cell)
        pr->min_cell = p->min_cell;
    if (p->rounding > pr->rounding)
        pr->rounding = p->rounding;
    if (p->zero_is_disclosive)
        pr->zero_is_disclosive = true;
    return 0;
}

/* ---- admission ---------------------------------------------------------------------- */

int gov_admit(agent *a, Sdefed__QueryRequest *req, gov_ticket **ticket, char *reason,
              size_t reasonlen)
{
    const agent_config *cfg = &a->cfg->cfg;
    *ticket = NULL;
    state *s = gov_state(cfg);
    if (!s) {
        snprintf(reason, reasonlen, "agent state database unavailable");
        return SDF_EREFUSED;
    }
    gov_ticket *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(reason, reasonlen, "agent out of memory");
        return SDF_EREFUSED;
    }
    Sdefed__QuerySpec *spec = req->spec;
    const char *proj = spec && spec->project ? spec->project : "";
    snprintf(t->project, sizeof t->project, "%s", conf_valid_name(proj) ? proj : "");
    snprintf(t->kind, sizeof t->kind, "%s", spec ? spec_kind_name(spec->kind) : "");
    if (spec) {
        json_t *j = spec_to_json(spec);
        t->spec_json = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
    } else {
        t->spec_json = strdup("");
    }
    if (!t->spec_json) {
        ticket_free(t);
        snprintf(reason, reasonlen, "agent out of memory");
        return SDF_EREFUSED;
    }
    audit_sha256_hex(t->spec_json, strlen(t->spec_json), t->spec_sha);
    bool has_sig = req->protocol_signature.len > 0;
    if (has_sig) {
        const char *kid = req->protocol_key_id ? req->protocol_key_id : "";
        bool hex = strlen(kid) == PASSPORT_KEY_ID_HEX && strspn(kid, "0123456789abcdef") ==
                                                            PASSPORT_KEY_ID_HEX;
        snprintf(t->signer, sizeof t->signer, "%s", hex ? kid : "(invalid key id)");
        if (req->protocol_signature.len <= 64)
            EVP_EncodeBlock((unsigned char *)t->sig_b64, req->protocol_signature.data,
                            (int)req->protocol_signature.len);
        else
            snprintf(t->sig_b64, sizeof t->sig_b64, "(over-long signature)");
    }

    audit_entry rec = ticket_entry(t, req, "received", "", "");
    if (audit_received(s, &rec) != 0) {
        ticket_free(t);
        snprintf(reason, reasonlen, "agent cannot write its audit log");
        return SDF_EREFUSED;
    }

    gov_project *p = malloc(sizeof *p);
    int rc = p ? 0 : SDF_ENOMEM;
    if (!spec) {
        snprintf(reason, reasonlen, "missing query spec");
        rc = SDF_EREFUSED;
    } else if (req->project_id && req->project_id[0] && strcmp(req->project_id, proj) != 0) {
        snprintf(reason, reasonlen, "request and spec name different projects");
        rc = SDF_EREFUSED;
    } else if (rc == 0) {
        rc = project_get(s, proj, p);
        if (rc == SDF_ENOTFOUND) {
            if (conf_valid_name(proj))
                snprintf(reason, reasonlen, "unknown project '%s'", proj);
            else
                snprintf(reason, reasonlen, "unknown project");
            rc = SDF_EREFUSED;
        } else if (rc == 0) {
            rc = project_admit(p, req, now_ms(), reason, reasonlen);
        }
    }
    if (rc == 0) {
        /* Verify the signature on the spec as received, before any change. */
        if (has_sig && p->release == RELEASE_REVIEW)
            t->signed_ok = passport_ok(cfg, req, t->why, sizeof t->why);
        t->review = p->release == RELEASE_REVIEW && !t->signed_ok;
        if (!t->review)
            snprintf(t->why, sizeof t->why, "%s",
                     t->signed_ok ? "signed protocol: released without review"
                                  : "project release mode auto");
        else if (!has_sig)
            snprintf(t->why, sizeof t->why, "project release mode review");
        rc = tighten_policy(spec, p);
    }
    free(p);
    if (rc == SDF_ENOMEM || rc == SDF_EDB) {
        snprintf(reason, reasonlen, rc == SDF_EDB ? "agent state database error"
                                                  : "agent out of memory");
        rc = SDF_EREFUSED;
    }
    if (rc != 0) {
        audit_entry e = ticket_entry(t, req, "refused", reason, "");
        (void)audit(s, &e, true);
        ticket_free(t);
        return SDF_EREFUSED;
    }
    *ticket = t;
    return 0;
}

/* ---- release ------------------------------------------------------------------------- */

/* protobuf-c allocator that frees everything but the top-level message. */
static void *keep_alloc(void *data, size_t size)
{
    (void)data;
    return malloc(size);
}
static void keep_free(void *data, void *ptr)
{
    if (ptr != data)
        free(ptr);
}

/* Replace everything in res by (status, reason), keeping its query id. */
static void result_replace(Sdefed__QueryResult *res, Sdefed__SiteStatus st, const char *reason)
{
    char *qid = res->query_id;
    res->query_id = NULL;
    ProtobufCAllocator keep = { keep_alloc, keep_free, res };
    sdefed__query_result__free_unpacked(res, &keep);
    sdefed__query_result__init(res);
    res->query_id = qid ? qid : (char *)protobuf_c_empty_string;
    res->status = st;
    char *r = strdup(reason);
    res->reason = r ? r : (char *)protobuf_c_empty_string;
}

/* SHA-256 of the packed result into out; the packed bytes into *buf when
 * buf is not NULL (caller frees). 0 or SDF_ENOMEM. */
static int result_digest(const Sdefed__QueryResult *r, char out[AUDIT_HASH_HEX + 1],
                         uint8_t **buf, size_t *len)
{
    size_t n = sdefed__query_result__get_packed_size(r);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return SDF_ENOMEM;
    sdefed__query_result__pack(r, b);
    audit_sha256_hex(b, n, out);
    if (buf) {
        *buf = b;
        *len = n;
    } else {
        free(b);
    }
    return 0;
}

void gov_finish(agent *a, gov_ticket *t, const Sdefed__QueryRequest *req,
                Sdefed__QueryResult *res)
{
    if (!t)
        return;
    const agent_config *cfg = &a->cfg->cfg;
    state *s = gov_state(cfg);
    char digest[AUDIT_HASH_HEX + 1] = "";
    if (!s) {
        /* The database went away after admission: fail closed. */
        if (res)
            result_replace(res, SDEFED__SITE_STATUS__SITE_ERROR, "agent state database unavailable");
        ticket_free(t);
        return;
    }
    if (!res) {
        audit_entry e = ticket_entry(t, req, "failed", "cancelled or out of memory", "");
        (void)audit(s, &e, true);
        ticket_free(t);
        return;
    }
    if (res->status != SDEFED__SITE_STATUS__SITE_OK) {
        const char *ev = res->status == SDEFED__SITE_STATUS__SITE_REFUSED ? "refused" : "failed";
        if (result_digest(res, digest, NULL, NULL) != 0)
            digest[0] = '\0';
        audit_entry e = ticket_entry(t, req, ev, res->reason, digest);
        (void)audit(s, &e, true);
        ticket_free(t);
        return;
    }
    if (!t->review) {
        if (result_digest(res, digest, NULL, NULL) != 0) {
            result_replace(res, SDEFED__SITE_STATUS__SITE_ERROR, "agent out of memory");
        } else {
            audit_entry e = ticket_entry(t, req, "answered", t->why, digest);
            if (audit(s, &e, true) != 0)
                result_replace(res, SDEFED__SITE_STATUS__SITE_ERROR,
                               "agent cannot write its audit log");
        }
        ticket_free(t);
        return;
    }

    /* Review: hold the controlled result, tell the coordinator it is held. */
    held_item h;
    memset(&h, 0, sizeof h);
    int rc = result_digest(res, h.result_sha256, &h.result, &h.result_len);
    if (rc == 0) {
        snprintf(h.query_id, sizeof h.query_id, "%s", req->query_id ? req->query_id : "");
        snprintf(h.project, sizeof h.project, "%s", t->project);
        snprintf(h.requester, sizeof h.requester, "%s", req->requester ? req->requester : "");
        snprintf(h.kind, sizeof h.kind, "%s", t->kind);
        h.spec_json = t->spec_json;
        h.created_ms = now_ms();
        h.expires_ms = h.created_ms + (int64_t)gov_held_expiry_s(cfg) * 1000;
        audit_entry e = ticket_entry(t, req, "held", t->why, h.result_sha256);
        int64_t id = 0;
        rc = review_hold(s, &h, &e, &id);
        if (rc == 0)
            log_info("query %s held for review as #%lld (%s)", h.query_id, (long long)id, t->why);
    }
    free(h.result);
    char reason[160];
    if (rc == 0) {
        snprintf(reason, sizeof reason, "held for review at site %s", cfg->site_id);
        result_replace(res, SDEFED__SITE_STATUS__SITE_HELD, reason);
    } else {
        log_error("query %s: result could not be held for review; not released",
                  req->query_id ? req->query_id : "");
        result_replace(res, SDEFED__SITE_STATUS__SITE_ERROR,
                       "agent could not hold the result for review");
        audit_entry e = ticket_entry(t, req, "failed", "could not hold the result for review", "");
        (void)audit(s, &e, true);
    }
    ticket_free(t);
}

/* ---- the review-queue poller ------------------------------------------------------------ */

static int send_result(agent *a, Sdefed__QueryResult *r)
{
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    env.body_case = SDEFED__ENVELOPE__BODY_QUERY_RESULT;
    env.query_result = r;
    return agent_link_send(a, &env);
}

/* Undo review_mark_notified's flag (not its audit entry) for item id. */
static int held_unmark_notified(state *s, int64_t id)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(state_db(s), "UPDATE held SET notified = 0 WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return SDF_EDB;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : SDF_EDB;
}

int gov_daemon_poll(agent *a)
{
    const agent_config *cfg = &a->cfg->cfg;
    state *s = gov_state(cfg);
    if (!s)
        return 0;
    int n = review_expire_due(s, now_ms());
    if (n > 0)
        log_info("%d held result(s) expired without review", n);
    if (a->state != LINK_READY || !a->link)
        return 0;
    int sent = 0;
    for (int i = 0; i < 16; i++) {
        held_item h;
        if (review_next_outgoing(s, &h) != 0)
            break;
        Sdefed__QueryResult *r = NULL;
        char reason[400];
        bool approved = strcmp(h.state, "approved") == 0;
        if (approved) {
            r = sdefed__query_result__unpack(NULL, h.result_len, h.result);
            if (!r)
                log_error("held result #%lld does not decode; sending a refusal",
                          (long long)h.id);
        }
        if (!r) {
            r = malloc(sizeof *r);
            if (!r) {
                held_item_clear(&h);
                break;
            }
            sdefed__query_result__init(r);
            r->query_id = strdup(h.query_id);
            if (strcmp(h.state, "rejected") == 0)
                snprintf(reason, sizeof reason, "rejected by the custodian at site %s: %s",
                         cfg->site_id, h.reason);
            else if (approved)
                snprintf(reason, sizeof reason, "held result unreadable at site %s",
                         cfg->site_id);
            else
                snprintf(reason, sizeof reason,
                         "held for review at site %s and not reviewed in time", cfg->site_id);
            r->status = approved ? SDEFED__SITE_STATUS__SITE_ERROR
                                 : SDEFED__SITE_STATUS__SITE_REFUSED;
            r->reason = strdup(reason);
            if (!r->query_id || !r->reason) {
                sdefed__query_result__free_unpacked(r, NULL);
                held_item_clear(&h);
                break;
            }
        }
        /* Record the release before anything leaves: if the state database
         * cannot take the audit entry (disk full, I/O error, busy), nothing
         * is sent and the item stays outgoing for a later tick. */
        char spec_sha[AUDIT_HASH_HEX + 1];
        audit_entry e = review_audit_entry(&h, "released", "agent",
                                           "approved result sent to the coordinator", spec_sha);
        if (review_mark_notified(s, h.id, approved ? &e : NULL) != 0) {
            log_error("held result #%lld not sent: its release cannot be recorded",
                      (long long)h.id);
            sdefed__query_result__free_unpacked(r, NULL);
            held_item_clear(&h);
            break;
        }
        int rc = send_result(a, r);
        sdefed__query_result__free_unpacked(r, NULL);
        if (rc != 0) {
            /* Not delivered after all: make it outgoing again so it is sent
             * on a later tick (the audit log then over-states, never
             * under-states, what left). */
            log_warn("held result #%lld recorded as released but not delivered (%s); "
                     "it will be sent again", (long long)h.id, sdf_strerror(rc));
            if (held_unmark_notified(s, h.id) != 0)
                log_error("held result #%lld: cannot mark it outgoing again", (long long)h.id);
            held_item_clear(&h);
            break;     /* link down: try again on a later tick */
        }
        log_info("query %s: %s result #%lld sent to the coordinator", h.query_id, h.state,
                 (long long)h.id);
        held_item_clear(&h);
        sent++;
    }
    return sent;
}

static void poll_cb(uv_timer_t *t)
{
    (void)gov_daemon_poll(t->data);
}

void gov_daemon_start(agent *a)
{
    if (g_timer_started)
        return;
    (void)gov_state(&a->cfg->cfg);
    uv_timer_init(a->loop, &g_timer);
    g_timer.data = a;
    /* Unreferenced: the poller never keeps a stopping agent alive; main's
     * final walk closes it. */
    uv_unref((uv_handle_t *)&g_timer);
    uv_timer_start(&g_timer, poll_cb, GOV_POLL_MS, GOV_POLL_MS);
    g_timer_started = true;
}
