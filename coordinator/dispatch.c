/* coordinator/dispatch.c — fan a query out to sites and gather the answers.
 *
 * An analyst's Submit is validated (spec_validate: the coordinator never
 * forwards a spec it cannot parse), given a query id, recorded in the store
 * and sent to every chosen site that is online, with a deadline. Each site
 * ends in exactly one state: ok, refused, error, timeout (no answer by the
 * deadline) or offline (not connected, or lost during the query), with a
 * reason. When every site has answered or the deadline passes, the results
 * are pooled, stored and sent to the analyst if it is still connected.
 */
#include "coord.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "pool.h"
#include "result_check.h"
#include "sdefed/pbcopy.h"
#include "sdefed/log.h"
#include "sdefed/result_data.h"
#include "sdefed/spec.h"

/* Grace after the deadline for the agents' own "timeout" answers to arrive. */
#define DEADLINE_GRACE_MS 250

typedef struct site_slot {
    size_t site_index;
    bool pending;
    Sdefed__SiteStatus status;
    char reason[160];
    Sdefed__QueryResult *res;     /* owned, when answered */
} site_slot;

struct pending_query {
    coord *co;
    char query_id[48];
    peer *analyst;                /* NULL once the analyst has gone */
    uint64_t request_id;
    char requester[64];
    Sdefed__QuerySpec *spec;      /* owned copy */
    uint64_t submitted_ms;
    uv_timer_t timer;
    site_slot *slots;
    size_t n_slots, n_pending;
    bool finished;
    pending_query *prev, *next;
    dispatch_done_fn done;        /* issue 6: internal submitter (monitors), or NULL */
    void *done_ctx;
};

static void make_query_id(char *out, size_t len)
{
    unsigned char rnd[4] = { 0 };
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        log_warn("RAND_bytes failed; query id less random");
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    snprintf(out, len, "q-%04d%02d%02d-%02d%02d%02d-%02x%02x%02x%02x", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rnd[0], rnd[1], rnd[2],
             rnd[3]);
}

static void query_free_cb(uv_handle_t *h)
{
    pending_query *q = h->data;
    for (size_t i = 0; i < q->n_slots; i++)
        if (q->slots[i].res)
            sdefed__query_result__free_unpacked(q->slots[i].res, NULL);
    free(q->slots);
    if (q->spec)
        sdefed__query_spec__free_unpacked(q->spec, NULL);
    free(q);
}

static void slot_set(site_slot *s, Sdefed__SiteStatus st, const char *reason)
{
    s->pending = false;
    s->status = st;
    snprintf(s->reason, sizeof s->reason, "%s", reason ? reason : "");
}

/* Build, pool, store and deliver the federated result; then free q. */
static void finish(pending_query *q)
{
    coord *co = q->co;
    if (q->finished)
        return;
    q->finished = true;
    uv_timer_stop(&q->timer);

    Sdefed__FederatedResult r = SDEFED__FEDERATED_RESULT__INIT;
    Sdefed__SiteResult *srs = calloc(q->n_slots ? q->n_slots : 1, sizeof *srs);
    Sdefed__SiteResult **ptrs = calloc(q->n_slots ? q->n_slots : 1, sizeof *ptrs);
    r.query_id = q->query_id;
    r.kind = q->spec->kind;
    r.project = q->spec->project;
    r.submitted_unix_ms = q->submitted_ms;
    r.requester = q->requester;
    r.spec = q->spec;   /* borrowed: stored and returned with the result */
    if (srs && ptrs) {
        for (size_t i = 0; i < q->n_slots; i++) {
            site_slot *s = &q->slots[i];
            Sdefed__SiteResult *sr = &srs[i];
            sdefed__site_result__init(sr);
            sr->site = co->cfg.sites[s->site_index].id;
            if (s->pending)
                slot_set(s, SDEFED__SITE_STATUS__SITE_TIMEOUT, "no answer before the deadline");
            sr->status = s->status;
            sr->reason = s->reason;
            if (s->res && s->status == SDEFED__SITE_STATUS__SITE_OK) {
                sr->n_cells = s->res->n_cells;
                sr->cells = s->res->cells;
                sr->n_catalog = s->res->n_catalog;
                sr->catalog = s->res->catalog;
                sr->n_rules_fired = s->res->n_rules_fired;
                sr->rules_fired = s->res->rules_fired;
                sr->n_summaries = s->res->n_summaries;   /* summary kind (issue 3) */
                sr->summaries = s->res->summaries;
                sr->n_surveil = s->res->n_surveil;       /* surveil kind (issue 6) */
                sr->surveil = s->res->surveil;
                sr->n_validations = s->res->n_validations;   /* validate kind (issue 5) */
                sr->validations = s->res->validations;
            }
            if (s->res)
                sr->policy = s->res->policy;
            ptrs[i] = sr;
        }
        r.n_sites = q->n_slots;
        r.sites = ptrs;
        if (pool_result(&r) != 0)
            log_error("query %s: out of memory while pooling", q->query_id);
    } else {
        log_error("query %s: out of memory building the result", q->query_id);
    }

    size_t ok = 0;
    for (size_t i = 0; i < q->n_slots; i++)
        ok += q->slots[i].status == SDEFED__SITE_STATUS__SITE_OK;
    log_info("query %s done: %zu of %zu sites ok", q->query_id, ok, q->n_slots);

    if (store_query_finish(co->st, &r, coord_now_ms()) != 0)
        log_error("query %s: result not stored", q->query_id);
    if (q->analyst) {
        Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
        env.request_id = q->request_id;
        env.body_case = SDEFED__ENVELOPE__BODY_FEDERATED_RESULT;
        env.federated_result = &r;
        int rc = peer_send(q->analyst, &env);
        if (rc != 0)
            log_warn("query %s: result not delivered to %s (%s)", q->query_id, q->requester,
                     sdf_strerror(rc));
    }
    if (q->done)   /* issue 6: an internal submitter (monitors) */
        q->done(q->done_ctx, srs && ptrs ? &r : NULL, srs && ptrs ? NULL : "out of memory");
    pool_free_cells(&r);
    free(srs);
    free(ptrs);

    if (q->prev)
        q->prev->next = q->next;
    else
        co->queries = q->next;
    if (q->next)
        q->next->prev = q->prev;
    uv_close((uv_handle_t *)&q->timer, query_free_cb);
}

static void deadline_cb(uv_timer_t *t)
{
    finish(t->data);
}

static void maybe_finish(pending_query *q)
{
    if (q->n_pending == 0)
        finish(q);
}

/* Parse "a,b" site lists from the Submit into registry indexes. */
static int choose_sites(coord *co, const Sdefed__Submit *sub, site_slot **out, size_t *n_out,
                        char *err, size_t errlen)
{
    size_t n = sub->n_sites ? sub->n_sites : co->cfg.n_sites;
    site_slot *slots = calloc(n ? n : 1, sizeof *slots);
    if (!slots) {
        snprintf(err, errlen, "out of memory");
        return SDF_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        size_t idx = i;
        if (sub->n_sites) {
            const coord_principal *p = coord_config_site(&co->cfg, sub->sites[i]);
            if (!p) {
                snprintf(err, errlen, "unknown site '%.63s'", sub->sites[i]);
                free(slots);
                return SDF_ENOTFOUND;
            }
            idx = (size_t)(p - co->cfg.sites);
            for (size_t j = 0; j < i; j++) {
                if (slots[j].site_index == idx) {
                    snprintf(err, errlen, "site '%s' listed twice", p->id);
                    free(slots);
                    return SDF_EINVAL;
                }
            }
        }
        slots[i].site_index = idx;
    }
    *out = slots;
    *n_out = n;
    return 0;
}

static char *sites_text(coord *co, const site_slot *slots, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(co->cfg.sites[slots[i].site_index].id) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            strcat(s, ",");
        strcat(s, co->cfg.sites[slots[i].site_index].id);
    }
    return s;
}

/* issue 6: an error for the analyst, or for an internal submitter's callback. */
static void submit_error(peer *analyst, uint64_t request_id, dispatch_done_fn done,
                         void *done_ctx, Sdefed__ErrorCode code, const char *msg)
{
    if (analyst)
        peer_send_error(analyst, request_id, code, msg);
    else if (done)
        done(done_ctx, NULL, msg);
}

/* The body of dispatch_submit and dispatch_submit_internal (issue 6):
 * exactly one of analyst and done is set. */
static void submit_any(coord *co, peer *analyst, const char *requester, uint64_t request_id,
                       const Sdefed__Submit *sub, dispatch_done_fn done, void *done_ctx)
{
    char err[256];
    if (co->stopping) {
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_UNAVAILABLE,
                        "coordinator is shutting down");
        return;
    }
    if (!sub->spec) {
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_SPEC,
                     "submit has no spec");
        return;
    }
    if (spec_validate(sub->spec, err, sizeof err) != 0) {
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_SPEC, err);
        return;
    }
    if ((sub->protocol_signature.len != 0 && sub->protocol_signature.len != 64) ||
        (sub->protocol_key_id && strlen(sub->protocol_key_id) > 64)) {
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_SPEC,
                        "signed protocol: signature must be 64 bytes, key id at most 64 characters");
        return;
    }
    if (co->cfg.n_sites == 0) {
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_UNAVAILABLE,
                        "no sites are registered");
        return;
    }
    pending_query *q = calloc(1, sizeof *q);
    if (!q) {
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_INTERNAL,
                     "out of memory");
        return;
    }
    int rc = choose_sites(co, sub, &q->slots, &q->n_slots, err, sizeof err);
    if (rc != 0) {
        free(q);
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_SPEC, err);
        return;
    }
    q->spec = (Sdefed__QuerySpec *)pb_copy(&sub->spec->base);
    json_t *spec_json = spec_to_json(sub->spec);
    char *spec_text = spec_json ? json_dumps(spec_json, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(spec_json);
    char *sites = sites_text(co, q->slots, q->n_slots);
    if (!q->spec || !spec_text || !sites) {
        free(spec_text);
        free(sites);
        if (q->spec)
            sdefed__query_spec__free_unpacked(q->spec, NULL);
        free(q->slots);
        free(q);
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_INTERNAL,
                     "out of memory");
        return;
    }

    q->co = co;
    q->analyst = analyst;
    q->request_id = request_id;
    snprintf(q->requester, sizeof q->requester, "%s", requester);
    q->done = done;   /* issue 6 */
    q->done_ctx = done_ctx;
    q->submitted_ms = coord_now_ms();
    make_query_id(q->query_id, sizeof q->query_id);

    unsigned timeout = sub->timeout_ms ? sub->timeout_ms : co->cfg.default_timeout_ms;
    if (timeout > co->cfg.max_timeout_ms)
        timeout = co->cfg.max_timeout_ms;

    rc = store_query_begin(co->st, q->query_id, q->submitted_ms, q->requester,
                           q->spec->project, spec_kind_name(q->spec->kind), spec_text, sites);
    free(spec_text);
    free(sites);
    if (rc != 0) {
        sdefed__query_spec__free_unpacked(q->spec, NULL);
        free(q->slots);
        free(q);
        submit_error(analyst, request_id, done, done_ctx, SDEFED__ERROR_CODE__ERR_INTERNAL,
                        "cannot record the query");
        return;
    }

    uv_timer_init(co->loop, &q->timer);
    q->timer.data = q;
    q->next = co->queries;
    if (co->queries)
        co->queries->prev = q;
    co->queries = q;

    Sdefed__QueryRequest req = SDEFED__QUERY_REQUEST__INIT;
    req.query_id = q->query_id;
    req.project_id = q->spec->project;
    req.requester = q->requester;
    req.deadline_unix_ms = q->submitted_ms + timeout;
    req.spec = q->spec;
    /* A signed protocol travels as is; each agent verifies it itself. */
    req.protocol_signature = sub->protocol_signature;
    req.protocol_key_id = sub->protocol_key_id;
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    env.body_case = SDEFED__ENVELOPE__BODY_QUERY_REQUEST;
    env.query_request = &req;

    log_info("query %s from %s: %s project=%s to %zu sites, timeout %u ms", q->query_id,
             q->requester, spec_kind_name(q->spec->kind), q->spec->project, q->n_slots, timeout);
    for (size_t i = 0; i < q->n_slots; i++) {
        site_slot *s = &q->slots[i];
        site_state *st = &co->sites[s->site_index];
        if (!st->link) {
            slot_set(s, SDEFED__SITE_STATUS__SITE_OFFLINE, "not connected");
            continue;
        }
        int src = peer_send(st->link, &env);
        if (src != 0) {
            slot_set(s, SDEFED__SITE_STATUS__SITE_ERROR, sdf_strerror(src));
            continue;
        }
        s->pending = true;
        q->n_pending++;
    }
    if (q->n_pending == 0) {
        finish(q);
        return;
    }
    uv_timer_start(&q->timer, deadline_cb, timeout + DEADLINE_GRACE_MS, 0);
}

void dispatch_submit(coord *co, peer *analyst, uint64_t request_id, const Sdefed__Submit *sub)
{
    submit_any(co, analyst, analyst->id, request_id, sub, NULL, NULL);
}

void dispatch_submit_internal(coord *co, const char *requester, const Sdefed__Submit *sub,
                              dispatch_done_fn done, void *done_ctx)
{
    submit_any(co, NULL, requester, 0, sub, done, done_ctx);
}

/* An ok answer that fails result_check() becomes SITE_ERROR with the
 * reason and without its data, so nothing of it is pooled, stored or
 * shown, and counts in the site's malformed total (status, metrics).
 * (Out of memory for the reason text: the site's own reason stays.) */
static void result_screen(coord *co, size_t site_index, Sdefed__QueryKind kind, const char *qid,
                          Sdefed__QueryResult *res)
{
    if (res->status != SDEFED__SITE_STATUS__SITE_OK)
        return;
    char why[256];
    int rc = result_check(kind, res, why, sizeof why);
    if (rc == 0)
        return;
    if (rc == SDF_ENOMEM) {
        snprintf(why, sizeof why, "coordinator out of memory checking the result");
    } else {
        co->sites[site_index].n_malformed++;
        log_warn("query %s: site %s: %s", qid, co->cfg.sites[site_index].id, why);
    }
    result_data_clear(res);
    res->status = SDEFED__SITE_STATUS__SITE_ERROR;
    char *reason = strdup(why);
    if (!reason)
        return;
    if (res->reason && res->reason != protobuf_c_empty_string)
        free(res->reason);
    res->reason = reason;
}

/* Put res (status OK, REFUSED, or ERROR after result_screen) into a site
 * result that said HELD: move its contents over. Returns false when sr was
 * not held or res is not an allowed outcome. */
static bool late_apply(Sdefed__SiteResult *sr, Sdefed__QueryResult *res)
{
    if (sr->status != SDEFED__SITE_STATUS__SITE_HELD ||
        (res->status != SDEFED__SITE_STATUS__SITE_OK &&
         res->status != SDEFED__SITE_STATUS__SITE_REFUSED &&
         res->status != SDEFED__SITE_STATUS__SITE_ERROR))
        return false;
    char *reason = strdup(res->reason ? res->reason : "");
    if (!reason)
        return false;
    /* sr came from protobuf unpack (the store): free what it held. */
    for (size_t k = 0; k < sr->n_cells; k++)
        sdefed__cell__free_unpacked(sr->cells[k], NULL);
    free(sr->cells);
    for (size_t k = 0; k < sr->n_catalog; k++)
        sdefed__dataset_info__free_unpacked(sr->catalog[k], NULL);
    free(sr->catalog);
    for (size_t k = 0; k < sr->n_rules_fired; k++)
        free(sr->rules_fired[k]);
    free(sr->rules_fired);
    if (sr->policy)
        sdefed__policy_applied__free_unpacked(sr->policy, NULL);
    for (size_t k = 0; k < sr->n_summaries; k++)
        sdefed__summary__free_unpacked(sr->summaries[k], NULL);
    free(sr->summaries);
    for (size_t k = 0; k < sr->n_surveil; k++)   /* issue 6 */
        sdefed__surveil_row__free_unpacked(sr->surveil[k], NULL);
    free(sr->surveil);
    for (size_t k = 0; k < sr->n_validations; k++)   /* issue 5 */
        sdefed__validation__free_unpacked(sr->validations[k], NULL);
    free(sr->validations);
    if (sr->reason && sr->reason != protobuf_c_empty_string)
        free(sr->reason);
    sr->status = res->status;
    sr->reason = reason;
    sr->n_cells = res->n_cells;
    sr->cells = res->cells;
    sr->n_catalog = res->n_catalog;
    sr->catalog = res->catalog;
    sr->n_rules_fired = res->n_rules_fired;
    sr->rules_fired = res->rules_fired;
    sr->policy = res->policy;
    sr->n_summaries = res->n_summaries;
    sr->summaries = res->summaries;
    res->n_summaries = 0;
    res->summaries = NULL;
    sr->n_surveil = res->n_surveil;   /* issue 6 */
    sr->surveil = res->surveil;
    res->n_surveil = 0;
    res->surveil = NULL;
    sr->n_validations = res->n_validations;   /* issue 5 */
    sr->validations = res->validations;
    res->n_validations = 0;
    res->validations = NULL;
    res->n_cells = res->n_catalog = res->n_rules_fired = 0;
    res->cells = NULL;
    res->catalog = NULL;
    res->rules_fired = NULL;
    res->policy = NULL;
    return true;
}

/* A result arriving after its query finished: the outcome of a result the
 * site held for review (approved: the result; rejected or expired: a
 * refusal). Only a site whose stored status is `held` may change it, and
 * only to ok or refused; the stored federated result is then re-pooled and
 * stored again, so `sdefed results QUERY_ID` shows it. Takes res. */
static void dispatch_late_result(coord *co, size_t site_index, Sdefed__QueryResult *res)
{
    const char *qid = res->query_id ? res->query_id : "";
    const char *site = co->cfg.sites[site_index].id;
    /* Still in flight (another site is slow): update the slot. */
    for (pending_query *q = co->queries; q; q = q->next) {
        if (q->finished || strcmp(q->query_id, qid) != 0)
            continue;
        for (size_t i = 0; i < q->n_slots; i++) {
            site_slot *s = &q->slots[i];
            if (s->site_index != site_index || s->pending ||
                s->status != SDEFED__SITE_STATUS__SITE_HELD ||
                (res->status != SDEFED__SITE_STATUS__SITE_OK &&
                 res->status != SDEFED__SITE_STATUS__SITE_REFUSED))
                continue;
            result_screen(co, site_index, q->spec->kind, qid, res);
            log_info("query %s: site %s released its held result (%s)", qid, site,
                     spec_site_status_name(res->status));
            slot_set(s, res->status, res->reason);
            if (s->res)
                sdefed__query_result__free_unpacked(s->res, NULL);
            s->res = res;
            return;
        }
        break;
    }
    Sdefed__FederatedResult *r = NULL;
    int rc = qid[0] ? store_query_load(co->st, qid, &r) : SDF_ENOTFOUND;
    bool applied = false;
    if (rc == 0 && (res->status == SDEFED__SITE_STATUS__SITE_OK ||
                    res->status == SDEFED__SITE_STATUS__SITE_REFUSED)) {
        result_screen(co, site_index, r->kind, qid, res);
        for (size_t i = 0; i < r->n_sites; i++) {
            Sdefed__SiteResult *sr = r->sites[i];
            if (sr->site && strcmp(sr->site, site) == 0) {
                applied = late_apply(sr, res);
                break;
            }
        }
    }
    if (!applied) {
        log_debug("dropping result for %s from site %s: no pending or held query", qid, site);
        if (r)
            sdefed__federated_result__free_unpacked(r, NULL);
        sdefed__query_result__free_unpacked(res, NULL);
        return;
    }
    for (size_t k = 0; k < r->n_pooled; k++)
        sdefed__pooled_cell__free_unpacked(r->pooled[k], NULL);
    free(r->pooled);
    r->pooled = NULL;
    r->n_pooled = 0;
    for (size_t k = 0; k < r->n_pooled_summaries; k++)   /* issue 3: re-pooled too */
        sdefed__summary__free_unpacked(r->pooled_summaries[k], NULL);
    free(r->pooled_summaries);
    r->pooled_summaries = NULL;
    r->n_pooled_summaries = 0;
    for (size_t k = 0; k < r->n_pooled_validations; k++)   /* issue 5: re-pooled too */
        sdefed__pooled_validation__free_unpacked(r->pooled_validations[k], NULL);
    free(r->pooled_validations);
    r->pooled_validations = NULL;
    r->n_pooled_validations = 0;
    if (pool_result(r) != 0)
        log_error("query %s: out of memory while re-pooling", qid);
    if (store_query_finish(co->st, r, coord_now_ms()) != 0)
        log_error("query %s: updated result not stored", qid);
    else
        log_info("query %s: site %s released its held result (%s); stored result updated", qid,
                 site, spec_site_status_name(res->status));
    pool_free_cells(r);
    sdefed__federated_result__free_unpacked(r, NULL);
    sdefed__query_result__free_unpacked(res, NULL);
}

void dispatch_result(coord *co, size_t site_index, Sdefed__QueryResult *res)
{
    const char *qid = res->query_id ? res->query_id : "";
    for (pending_query *q = co->queries; q; q = q->next) {
        if (q->finished || strcmp(q->query_id, qid) != 0)
            continue;
        for (size_t i = 0; i < q->n_slots; i++) {
            site_slot *s = &q->slots[i];
            if (s->site_index != site_index || !s->pending)
                continue;
            /* Only the statuses an agent may report are accepted. */
            Sdefed__SiteStatus st = res->status;
            if (st != SDEFED__SITE_STATUS__SITE_OK && st != SDEFED__SITE_STATUS__SITE_REFUSED &&
                st != SDEFED__SITE_STATUS__SITE_TIMEOUT && st != SDEFED__SITE_STATUS__SITE_ERROR &&
                st != SDEFED__SITE_STATUS__SITE_HELD)
                st = SDEFED__SITE_STATUS__SITE_ERROR;
            /* An ok answer is checked before it can be pooled. */
            if (st == SDEFED__SITE_STATUS__SITE_OK) {
                result_screen(co, site_index, q->spec->kind, qid, res);
                st = res->status;
            }
            slot_set(s, st, res->reason);
            s->res = res;
            q->n_pending--;
            maybe_finish(q);
            return;
        }
        break;
    }
    /* Late: maybe the outcome of a result this site held for review. */
    dispatch_late_result(co, site_index, res);
}

void dispatch_site_lost(coord *co, size_t site_index)
{
    pending_query *next;
    for (pending_query *q = co->queries; q; q = next) {
        next = q->next;
        if (q->finished)
            continue;
        for (size_t i = 0; i < q->n_slots; i++) {
            site_slot *s = &q->slots[i];
            if (s->site_index == site_index && s->pending) {
                slot_set(s, SDEFED__SITE_STATUS__SITE_OFFLINE, "disconnected during the query");
                q->n_pending--;
            }
        }
        maybe_finish(q);
    }
}

void dispatch_analyst_lost(coord *co, peer *analyst)
{
    for (pending_query *q = co->queries; q; q = q->next)
        if (q->analyst == analyst)
            q->analyst = NULL;
}

void dispatch_abort_all(coord *co)
{
    pending_query *next;
    for (pending_query *q = co->queries; q; q = next) {
        next = q->next;
        for (size_t i = 0; i < q->n_slots; i++)
            if (q->slots[i].pending)
                slot_set(&q->slots[i], SDEFED__SITE_STATUS__SITE_ERROR,
                         "coordinator shutting down");
        q->n_pending = 0;
        finish(q);
    }
}

size_t dispatch_in_flight(const coord *co)
{
    size_t n = 0;
    for (const pending_query *q = co->queries; q; q = q->next)
        n += !q->finished;
    return n;
}

void dispatch_sites_remapped(coord *co, const size_t *map, size_t n_old,
                             const coord_config *old_cfg)
{
    pending_query *next;
    for (pending_query *q = co->queries; q; q = next) {
        next = q->next;
        if (q->finished)
            continue;
        size_t kept = 0;
        for (size_t i = 0; i < q->n_slots; i++) {
            site_slot s = q->slots[i];
            size_t to = s.site_index < n_old ? map[s.site_index] : SIZE_MAX;
            if (to == SIZE_MAX) {
                log_warn("query %s: site %s was removed from the registry; it is left out of "
                         "the result", q->query_id,
                         s.site_index < old_cfg->n_sites ? old_cfg->sites[s.site_index].id : "?");
                if (s.pending)
                    q->n_pending--;
                if (s.res)
                    sdefed__query_result__free_unpacked(s.res, NULL);
                continue;
            }
            s.site_index = to;
            q->slots[kept++] = s;
        }
        q->n_slots = kept;
        maybe_finish(q);
    }
}
