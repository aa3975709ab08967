/* agent/agent_jobs.c — run queries on the libuv thread pool.
 *
 * Each QueryRequest becomes a job: query_run() executes on a worker thread
 * against an immutable, refcounted config, so heartbeats and other queries
 * keep flowing while a slow one runs. The result is sent back on the loop
 * thread on whatever link is up. The log records who asked what and the
 * outcome, never a released value.
 */
#include "agent.h"

#include <stdlib.h>
#include <string.h>

#include "governance/governance.h"
#include "query.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

struct agent_job {
    uv_work_t work;
    agent *a;
    agent_cfg_ref *cfg;
    Sdefed__QueryRequest *req;
    Sdefed__QueryResult *res;
    atomic_int cancel;
    agent_job *prev, *next;
    gov_ticket *gov;          /* governance admission (agent/governance) */
};

void agent_cfg_release(agent_cfg_ref *r)
{
    if (r && --r->refs == 0)
        free(r);
}

static void send_result(agent *a, const Sdefed__QueryResult *res)
{
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    env.body_case = SDEFED__ENVELOPE__BODY_QUERY_RESULT;
    env.query_result = (Sdefed__QueryResult *)res;
    int rc = agent_link_send(a, &env);
    if (rc != 0)
        log_warn("query %s: result not delivered (%s)", res->query_id, sdf_strerror(rc));
}

/* Reply without running anything (busy, shutting down). */
static void reply_status(agent *a, const char *query_id, Sdefed__SiteStatus status,
                         const char *reason)
{
    Sdefed__QueryResult res = SDEFED__QUERY_RESULT__INIT;
    res.query_id = (char *)query_id;
    res.status = status;
    res.reason = (char *)reason;
    send_result(a, &res);
}

static void work_cb(uv_work_t *w)
{
    agent_job *j = w->data;
    j->res = query_run(&j->cfg->cfg, j->req, &j->cancel);
}

static void after_work_cb(uv_work_t *w, int status)
{
    agent_job *j = w->data;
    agent *a = j->a;
    const char *qid = j->req->query_id ? j->req->query_id : "";

    /* Audit, and hold the result instead when the project is `review`. */
    gov_finish(a, j->gov, j->req, status == UV_ECANCELED ? NULL : j->res);
    if (status == UV_ECANCELED || !j->res) {
        reply_status(a, qid, SDEFED__SITE_STATUS__SITE_ERROR,
                     status == UV_ECANCELED ? "cancelled" : "agent out of memory");
        a->failed++;
    } else {
        const Sdefed__QueryResult *r = j->res;
        const Sdefed__QuerySpec *spec = j->req->spec;
        log_info("query %s project=%s requester=%s kind=%s: %s%s%s", qid,
                 j->req->project_id ? j->req->project_id : "",
                 j->req->requester ? j->req->requester : "",
                 spec ? spec_kind_name(spec->kind) : "?", spec_site_status_name(r->status),
                 r->reason && *r->reason ? " - " : "", r->reason ? r->reason : "");
        if (r->status == SDEFED__SITE_STATUS__SITE_OK)
            a->answered++;
        else if (r->status == SDEFED__SITE_STATUS__SITE_REFUSED)
            a->refused++;
        else if (r->status == SDEFED__SITE_STATUS__SITE_HELD)
            a->held++;
        else
            a->failed++;
        send_result(a, r);
    }

    if (j->prev)
        j->prev->next = j->next;
    else
        a->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    a->n_jobs--;

    query_result_free(j->res);
    sdefed__query_request__free_unpacked(j->req, NULL);
    agent_cfg_release(j->cfg);
    free(j);
    agent_maybe_exit(a);
}

void agent_jobs_submit(agent *a, Sdefed__QueryRequest *req)
{
    const char *qid = req->query_id ? req->query_id : "";
    if (a->stopping || a->n_jobs >= AGENT_MAX_JOBS) {
        log_warn("query %s refused: %s", qid,
                 a->stopping ? "agent shutting down" : "too many queries in flight");
        reply_status(a, qid, SDEFED__SITE_STATUS__SITE_ERROR,
                     a->stopping ? "agent shutting down" : "agent busy");
        sdefed__query_request__free_unpacked(req, NULL);
        return;
    }
    /* Projects, requesters, kinds, datasets: checked before any data is touched. */
    gov_ticket *ticket = NULL;
    char why[256];
    if (gov_admit(a, req, &ticket, why, sizeof why) != 0) {
        log_info("query %s refused: %s", qid, why);
        reply_status(a, qid, SDEFED__SITE_STATUS__SITE_REFUSED, why);
        a->refused++;
        sdefed__query_request__free_unpacked(req, NULL);
        return;
    }
    agent_job *j = calloc(1, sizeof *j);
    if (!j) {
        gov_finish(a, ticket, req, NULL);
        reply_status(a, qid, SDEFED__SITE_STATUS__SITE_ERROR, "agent out of memory");
        sdefed__query_request__free_unpacked(req, NULL);
        return;
    }
    j->gov = ticket;
    j->a = a;
    j->req = req;
    j->cfg = a->cfg;
    j->cfg->refs++;
    atomic_init(&j->cancel, 0);
    j->work.data = j;
    int rc = uv_queue_work(a->loop, &j->work, work_cb, after_work_cb);
    if (rc != 0) {
        log_error("query %s: cannot queue work: %s", qid, uv_strerror(rc));
        reply_status(a, qid, SDEFED__SITE_STATUS__SITE_ERROR, "agent internal error");
        gov_finish(a, j->gov, req, NULL);
        agent_cfg_release(j->cfg);
        sdefed__query_request__free_unpacked(req, NULL);
        free(j);
        return;
    }
    j->next = a->jobs;
    if (a->jobs)
        a->jobs->prev = j;
    a->jobs = j;
    a->n_jobs++;
    log_debug("query %s queued (%u in flight)", qid, a->n_jobs);
}

void agent_jobs_cancel_all(agent *a)
{
    for (agent_job *j = a->jobs; j; j = j->next) {
        atomic_store(&j->cancel, 1);
        uv_cancel((uv_req_t *)&j->work);   /* drops jobs not yet started */
    }
}
