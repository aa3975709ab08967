/* agent/query.c — run one QueryRequest: validate, dispatch, control, answer.
 *
 * query_run() is the single entry point worker threads call. It checks the
 * deadline before any work, re-validates the spec (spec_validate: the agent
 * trusts nothing the coordinator sends), merges the site's disclosure
 * policy (a floor) with what the spec asks for, dispatches on the query
 * kind to the compilers (query_count.c, query_catalog.c), and turns their
 * outcome into a QueryResult: OK with cells/catalog, the applied policy and
 * the names of the disclosure rules that fired; REFUSED with a reason;
 * TIMEOUT; or ERROR with the generic "database error" (details are logged
 * by the backend). No reason ever carries a data value.
 */
#include "query.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query_internal.h"
#include "query_surveil.h"   /* issue 6 */
#include "query_validate.h"  /* issue 5 */
#include "disclosure/disclosure.h"
#include "disclosure/guard.h"
#include "disclosure/stats.h"
#include "sdefed/log.h"
#include "sdefed/result_data.h"
#include "sdefed/spec.h"

/* A request without a deadline (0) still gets one: queries never run
 * unbounded. */
#define QUERY_DEFAULT_TIMEOUT_MS 300000u
/* Deadline used to read dataset versions for Hello. */
#define QUERY_DESCRIBE_TIMEOUT_MS 5000u

static uint64_t now_unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Our own lookup, so this module does not depend on agent_config.c. */
static const agent_dataset *dataset_find(const agent_config *cfg, const char *name)
{
    for (size_t k = 0; k < cfg->n_datasets && k < AGENT_MAX_DATASETS; k++)
        if (strcmp(cfg->datasets[k].name, name) == 0)
            return &cfg->datasets[k];
    return NULL;
}

/* A name safe to echo in a reason: 1..64 of [A-Za-z0-9_.-]. */
static bool name_is_plain(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char ch = (unsigned char)s[n];
        if (n >= 64 || !(isalnum(ch) || ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return n > 0;
}

static int set_reason(Sdefed__QueryResult *r, const char *reason)
{
    if (r->reason && r->reason != protobuf_c_empty_string)
        free(r->reason);
    r->reason = strdup(reason);
    if (!r->reason) {
        r->reason = (char *)protobuf_c_empty_string;
        return SDF_ENOMEM;
    }
    return 0;
}

static int set_policy(Sdefed__QueryResult *r, const disc_policy *p, unsigned rules)
{
    r->policy = malloc(sizeof *r->policy);
    if (!r->policy)
        return SDF_ENOMEM;
    sdefed__policy_applied__init(r->policy);
    r->policy->min_cell = p->min_cell;
    r->policy->rounding = p->rounding;
    r->policy->zero_is_disclosive = p->zero_is_disclosive;
    r->policy->dominance_n = p->dominance_n;
    r->policy->dominance_k = p->dominance_k;
    r->policy->min_dof = p->min_dof;
    r->policy->max_params_ratio = p->max_params_ratio;
    r->policy->max_identical = p->max_identical;
    r->policy->identical_window_days = p->identical_window_days;
    r->policy->differencing = p->differencing;
    r->policy->dp_epsilon = p->dp_epsilon;
    r->policy->dp_budget = p->dp_budget;

    const char *names[12];
    int n = disc_rule_names(rules, names, 8);
    n += disc_stats_rule_names(rules, names + n, 12 - n);   /* issue 3: summary rules */
    if (n == 0)
        return 0;
    r->rules_fired = calloc((size_t)n, sizeof *r->rules_fired);
    if (!r->rules_fired)
        return SDF_ENOMEM;
    for (int k = 0; k < n; k++) {
        r->rules_fired[k] = strdup(names[k]);
        if (!r->rules_fired[k])
            return SDF_ENOMEM;
        r->n_rules_fired++;
    }
    return 0;
}

/* issue 4: the rest of the effective policy, and what repeat control and
 * the DP ledger keyed on. Call after set_policy. */
static int set_policy_extra(Sdefed__QueryResult *r, const disc_guard *g)
{
    if (!r->policy || !g->active)
        return 0;
    r->policy->dp_spent = g->dp_spent;
    char *v = strdup(g->data_version);
    if (!v)
        return SDF_ENOMEM;
    r->policy->data_version = v;
    return 0;
}

/* Catalog covers every declared dataset (spec_validate refuses a
 * dataset field on catalog specs). */
static int run_catalog(query_ctx *q, Sdefed__QueryResult *r)
{
    const agent_config *cfg = q->cfg;
    size_t n = cfg->n_datasets < AGENT_MAX_DATASETS ? cfg->n_datasets : AGENT_MAX_DATASETS;
    if (n == 0)
        return 0;
    r->catalog = calloc(n, sizeof *r->catalog);
    if (!r->catalog)
        return SDF_ENOMEM;
    for (size_t k = 0; k < n; k++) {
        const agent_dataset *ds = &cfg->datasets[k];
        int err = query_catalog_dataset(q, ds, true, &r->catalog[k]);
        if (err == SDF_ENOMEM || err == SDF_ETIMEOUT)
            return err;
        if (err) {
            /* One unreadable dataset must not hide the others: describe it
             * by name with the (data-free) error and carry on. */
            log_warn("catalog: dataset %s: %s", ds->name, sdf_strerror(err));
            Sdefed__DatasetInfo *d = malloc(sizeof *d);
            if (!d)
                return SDF_ENOMEM;
            sdefed__dataset_info__init(d);
            r->catalog[k] = d;
            d->name = strdup(ds->name);
            d->type = strdup(ds->type);
            d->error = strdup(sdf_strerror(err));
            d->person_count_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
            if (!d->name || !d->type || !d->error) {
                r->n_catalog++;   /* freed with the result */
                return SDF_ENOMEM;
            }
        }
        r->n_catalog++;
    }
    return 0;
}

static int run_count(query_ctx *q, const Sdefed__QuerySpec *spec, Sdefed__QueryResult *r)
{
    if (!spec->dataset || !spec->dataset[0]) {
        snprintf(q->reason, q->reason_len, "dataset: required for count");
        return SDF_EREFUSED;
    }
    const agent_dataset *ds = dataset_find(q->cfg, spec->dataset);
    if (!ds) {
        if (name_is_plain(spec->dataset))
            snprintf(q->reason, q->reason_len, "unknown dataset '%s'", spec->dataset);
        else
            snprintf(q->reason, q->reason_len, "unknown dataset");
        return SDF_EREFUSED;
    }
    if (spec->kind == SDEFED__QUERY_KIND__KIND_SURVEIL)   /* issue 6 */
        return query_surveil_run(q, ds, spec, r);
    if (spec->kind == SDEFED__QUERY_KIND__KIND_VALIDATE)  /* issue 5 */
        return query_validate_run(q, ds, spec, r);
    return query_count_run(q, ds, spec, r);
}

Sdefed__QueryResult *query_run(const agent_config *cfg, const Sdefed__QueryRequest *req,
                               atomic_int *cancel)
{
    char reason[256] = "";
    disc_policy policy;
    disc_guard guard = { 0 };   /* issue 4: cross-query rules (guard.h) */
    int64_t *persons = NULL;

    Sdefed__QueryResult *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    sdefed__query_result__init(r);
    r->query_id = strdup(req->query_id ? req->query_id : "");
    if (!r->query_id) {
        r->query_id = (char *)protobuf_c_empty_string;
        goto nomem;
    }

    uint64_t now = now_unix_ms();
    uint64_t deadline = req->deadline_unix_ms ? req->deadline_unix_ms
                                              : now + QUERY_DEFAULT_TIMEOUT_MS;
    if (now >= deadline) {
        r->status = SDEFED__SITE_STATUS__SITE_TIMEOUT;
        if (set_reason(r, "deadline passed before the query started"))
            goto nomem;
        return r;
    }
    if (cancel && atomic_load(cancel)) {
        r->status = SDEFED__SITE_STATUS__SITE_TIMEOUT;
        if (set_reason(r, "cancelled"))
            goto nomem;
        return r;
    }

    const Sdefed__QuerySpec *spec = req->spec;
    int err;
    if (!spec) {
        snprintf(reason, sizeof reason, "missing query spec");
        err = SDF_EREFUSED;
        goto done;
    }
    err = spec_validate(spec, reason, sizeof reason);
    if (err == SDF_ENOMEM)
        goto nomem;
    if (err) {
        if (!reason[0])
            snprintf(reason, sizeof reason, "invalid query spec");
        err = SDF_EREFUSED;
        goto done;
    }

    const Sdefed__PolicyRequest *pr = spec->policy;
    disc_policy_merge(&cfg->policy, pr ? pr->min_cell : 0, pr ? pr->rounding : 0,
                      pr ? pr->zero_is_disclosive : false, &policy);

    /* issue 4: repeat control and DP budget before any data is read. */
    if (spec->margins && policy.dp_epsilon > 0.0) {
        snprintf(reason, sizeof reason, "margins: not available with differential privacy "
                                        "(pool the noised cells instead)");
        err = SDF_EREFUSED;
        goto done;
    }
    /* Under DP a statistic's noise is scaled to the range one person can
     * move it by, so a measurement summary must say that range (age has a
     * natural one); refuse before any data or budget is touched. */
    if (spec->kind == SDEFED__QUERY_KIND__KIND_SUMMARY && policy.dp_epsilon > 0.0 &&
        spec->summary && !spec->summary->clamp &&
        spec->summary->of != SDEFED__SUMMARY_OF__SUMMARY_AGE) {
        snprintf(reason, sizeof reason,
                 "summary.clamp: required under differential privacy (the range every value "
                 "is clamped to bounds one person's influence)");
        err = SDF_EREFUSED;
        goto done;
    }
    err = disc_guard_begin(&guard, cfg, req,
                           spec->dataset ? dataset_find(cfg, spec->dataset) : NULL, &policy,
                           reason, sizeof reason);
    if (err == SDF_ENOMEM)
        goto nomem;
    if (err)
        goto done;
    if (policy.dp_epsilon > 0.0 && spec->cohort && !guard.active) {
        snprintf(reason, sizeof reason, "dp_budget: no state_dir to keep the epsilon ledger");
        err = SDF_EREFUSED;
        goto done;
    }

    query_ctx q = {
        .cfg = cfg,
        .policy = &policy,
        .deadline_unix_ms = deadline,
        .cancel = cancel,
        .rules = 0,
        .reason = reason,
        .reason_len = sizeof reason,
        .want_persons = guard.active && policy.differencing,
        .noise_key = guard.active && policy.dp_epsilon > 0.0 ? guard.noise_key : NULL,
    };
    switch (spec->kind) {
    case SDEFED__QUERY_KIND__KIND_CATALOG:
        err = run_catalog(&q, r);
        break;
    case SDEFED__QUERY_KIND__KIND_COUNT:
    case SDEFED__QUERY_KIND__KIND_SUMMARY:   /* issue 3: query_count_run dispatches it */
    case SDEFED__QUERY_KIND__KIND_SURVEIL:   /* issue 6: run_count dispatches it */
    case SDEFED__QUERY_KIND__KIND_VALIDATE:  /* issue 5: run_count dispatches it */
        err = run_count(&q, spec, r);
        break;
    default:
        snprintf(reason, sizeof reason, "kind: not supported by this agent");
        err = SDF_EREFUSED;
        break;
    }
    persons = q.persons;
    if (err == 0 && q.want_persons && (spec->kind == SDEFED__QUERY_KIND__KIND_COUNT ||
                                       spec->kind == SDEFED__QUERY_KIND__KIND_SUMMARY ||
                                       spec->kind == SDEFED__QUERY_KIND__KIND_SURVEIL))
        err = disc_guard_cohort(&guard, &policy, req, q.persons, q.n_persons, reason,
                                sizeof reason);
    free(persons);
    persons = NULL;
    if (err == 0) {
        r->status = SDEFED__SITE_STATUS__SITE_OK;
        if (set_policy(r, &policy, q.rules) || set_policy_extra(r, &guard))
            goto nomem;
        disc_guard_end(&guard);
        return r;
    }

done:
    result_data_clear(r);
    if (err == SDF_EREFUSED && guard.rules && !r->policy &&
        (set_policy(r, &policy, guard.rules) || set_policy_extra(r, &guard)))
        goto nomem;
    disc_guard_end(&guard);
    switch (err) {
    case SDF_EREFUSED:
        r->status = SDEFED__SITE_STATUS__SITE_REFUSED;
        break;
    case SDF_ETIMEOUT:
        r->status = SDEFED__SITE_STATUS__SITE_TIMEOUT;
        snprintf(reason, sizeof reason, "%s",
                 cancel && atomic_load(cancel) ? "cancelled" : "deadline exceeded");
        break;
    case SDF_ENOMEM:
        goto nomem;
    default:
        r->status = SDEFED__SITE_STATUS__SITE_ERROR;
        snprintf(reason, sizeof reason, "database error");
        break;
    }
    log_info("query %s: %s", name_is_plain(r->query_id) ? r->query_id : "(id)",
             r->status == SDEFED__SITE_STATUS__SITE_REFUSED ? "refused"
             : r->status == SDEFED__SITE_STATUS__SITE_TIMEOUT ? "timed out" : "failed");
    if (set_reason(r, reason))
        goto nomem;
    return r;

nomem:
    free(persons);
    disc_guard_end(&guard);
    query_result_free(r);
    return NULL;
}

void query_result_free(Sdefed__QueryResult *r)
{
    if (r)
        sdefed__query_result__free_unpacked(r, NULL);
}

int query_describe_datasets(const agent_config *cfg, Sdefed__DatasetInfo ***out)
{
    disc_policy policy = cfg->policy;
    char reason[64];
    size_t n = cfg->n_datasets < AGENT_MAX_DATASETS ? cfg->n_datasets : AGENT_MAX_DATASETS;
    query_ctx q = {
        .cfg = cfg,
        .policy = &policy,
        .deadline_unix_ms = now_unix_ms() + QUERY_DESCRIBE_TIMEOUT_MS,
        .reason = reason,
        .reason_len = sizeof reason,
    };
    *out = NULL;
    Sdefed__DatasetInfo **arr = calloc(n ? n : 1, sizeof *arr);
    if (!arr)
        return SDF_ENOMEM;
    for (size_t k = 0; k < n; k++) {
        const agent_dataset *ds = &cfg->datasets[k];
        int err = query_catalog_dataset(&q, ds, false, &arr[k]);
        if (err == SDF_ENOMEM)
            goto nomem;
        if (err) {
            /* An unreadable dataset is still announced, without a version. */
            log_warn("dataset %s: cannot read its version (%s)", ds->name, sdf_strerror(err));
            Sdefed__DatasetInfo *d = malloc(sizeof *d);
            if (!d)
                goto nomem;
            sdefed__dataset_info__init(d);
            arr[k] = d;
            d->name = strdup(ds->name);
            d->type = strdup(ds->type);
            if (!d->name || !d->type)
                goto nomem;
        }
    }
    *out = arr;
    return (int)n;
nomem:
    for (size_t k = 0; k < n; k++)
        if (arr[k])
            query_dataset_info_free(arr[k]);
    free(arr);
    return SDF_ENOMEM;
}

void query_dataset_info_free(Sdefed__DatasetInfo *d)
{
    if (d)
        sdefed__dataset_info__free_unpacked(d, NULL);
}
