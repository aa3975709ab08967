/* agent/disclosure/guard.c — repeat control, DP budget and differencing
 * around one query; see guard.h.
 */
#include "disclosure/guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "sdefed/log.h"
#include "sdefed/spec.h"

static int64_t now_seconds(void)
{
    return (int64_t)time(NULL);
}

static const char *who(const char *s)
{
    return s && s[0] ? s : "(anonymous)";
}

/* The data version: the operator's data_version, else size+mtime of the
 * dataset file (a postgres dataset without data_version: "live"). */
static void data_version(const agent_config *cfg, const agent_dataset *ds, char *out, size_t n)
{
    struct stat st;
    if (cfg->data_version[0])
        snprintf(out, n, "%s", cfg->data_version);
    else if (ds && ds->path[0] && stat(ds->path, &st) == 0)
        snprintf(out, n, "%lld:%lld.%09ld", (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    else
        snprintf(out, n, "live");
}

int disc_guard_begin(disc_guard *g, const agent_config *cfg, const Sdefed__QueryRequest *req,
                     const agent_dataset *ds, const disc_policy *pol, char *reason,
                     size_t reason_len)
{
    memset(g, 0, sizeof *g);
    const Sdefed__QuerySpec *spec = req->spec;
    if (!spec || !spec->cohort || !cfg->state_dir[0])
        return 0;
    data_version(cfg, ds, g->data_version, sizeof g->data_version);

    json_t *j = spec_to_json(spec);
    char *canon = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!canon)
        return SDF_ENOMEM;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int hl = 0;
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
              EVP_DigestUpdate(md, canon, strlen(canon) + 1) &&
              EVP_DigestUpdate(md, g->data_version, strlen(g->data_version)) &&
              EVP_DigestFinal_ex(md, g->qhash, &hl) && hl == 32;
    EVP_MD_CTX_free(md);
    free(canon);
    if (!ok)
        return SDF_ENOMEM;

    unsigned char secret[32];
    int err = disc_secret_load(cfg->state_dir, secret);
    if (err)
        return err;
    unsigned int ml = 0;
    ok = HMAC(EVP_sha256(), secret, 32, g->qhash, 32, g->noise_key, &ml) && ml == 32;
    memset(secret, 0, sizeof secret);
    if (!ok)
        return SDF_ENOMEM;

    err = disc_ledger_open(cfg->state_dir, &g->ledger);
    if (err)
        return err;
    g->active = true;

    bool refused = false;
    err = disc_ledger_repeat(g->ledger, who(req->requester), g->qhash, now_seconds(),
                             pol->identical_window_days * 86400, pol->max_identical, &refused);
    if (err)
        return err;
    if (refused) {
        g->rules |= DISC_RULE_REPEAT;
        snprintf(reason, reason_len,
                 "repeat_limit: this query was already answered %lld times in %lld days",
                 (long long)pol->max_identical, (long long)pol->identical_window_days);
        return SDF_EREFUSED;
    }

    if (pol->dp_epsilon > 0.0) {
        const char *project = spec->project && spec->project[0] ? spec->project : who(NULL);
        err = disc_ledger_dp_spend(g->ledger, project, pol->dp_epsilon, pol->dp_budget,
                                   &g->dp_spent, &refused);
        if (err)
            return err;
        if (refused) {
            g->rules |= DISC_RULE_DP_BUDGET;
            snprintf(reason, reason_len,
                     "dp_budget: project's epsilon budget %.3g would be exceeded",
                     pol->dp_budget);
            return SDF_EREFUSED;
        }
    }
    return 0;
}

int disc_guard_cohort(disc_guard *g, const disc_policy *pol, const Sdefed__QueryRequest *req,
                      const int64_t *persons, size_t n, char *reason, size_t reason_len)
{
    if (!g->active || !pol->differencing)
        return 0;
    const char *project = req->spec && req->spec->project ? req->spec->project : "";
    bool refused = false;
    int err = disc_ledger_cohort(g->ledger, who(req->requester), project, persons, n,
                                 pol->min_cell, now_seconds(), pol->differencing_days * 86400,
                                 pol->differencing_keep, &refused);
    if (err)
        return err;
    if (refused) {
        g->rules |= DISC_RULE_DIFFERENCING;
        snprintf(reason, reason_len,
                 "differencing: the cohort differs from a recently answered cohort by fewer "
                 "than %lld persons", (long long)pol->min_cell);
        return SDF_EREFUSED;
    }
    return 0;
}

void disc_guard_end(disc_guard *g)
{
    disc_ledger_close(g->ledger);
    g->ledger = NULL;
    g->active = false;
    memset(g->noise_key, 0, sizeof g->noise_key);
}
