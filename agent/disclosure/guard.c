/* agent/disclosure/guard.c — repeat control, DP budget and differencing
 * around one query; see guard.h.
 */
#include "disclosure/guard.h"

#include <limits.h>
#include <pthread.h>
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

/* Idle ledger handles kept open between queries (opening one per query
 * cost an open, a schema check and, on the last close, a WAL checkpoint
 * with two fsyncs). A handle is taken out of the pool by one query at a
 * time, so no two threads ever use it at once; it is returned only if
 * every ledger call on it succeeded, and reused only while
 * state_dir/disclosure.db is still the file it was opened on (the open
 * handle pins the inode, so dev+inode cannot be recycled under it). */
#define LEDGER_POOL 8

typedef struct ledger_slot {
    disc_ledger *l;
    dev_t dev;
    ino_t ino;
    char dir[PATH_MAX];
} ledger_slot;

static pthread_mutex_t g_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static ledger_slot g_pool[LEDGER_POOL];

static bool ledger_file_id(const char *state_dir, dev_t *dev, ino_t *ino)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s", state_dir, DISC_LEDGER_FILE) >= (int)sizeof path ||
        stat(path, &st) != 0)
        return false;
    *dev = st.st_dev;
    *ino = st.st_ino;
    return true;
}

/* A pooled handle for state_dir, or a freshly opened one. */
static int ledger_take(const char *state_dir, disc_ledger **out, dev_t *dev, ino_t *ino)
{
    disc_ledger *stale[LEDGER_POOL];
    size_t n_stale = 0;
    *out = NULL;
    bool have_id = ledger_file_id(state_dir, dev, ino);
    pthread_mutex_lock(&g_pool_mu);
    for (size_t i = 0; i < LEDGER_POOL; i++) {
        ledger_slot *s = &g_pool[i];
        if (!s->l || strcmp(s->dir, state_dir) != 0)
            continue;
        if (have_id && s->dev == *dev && s->ino == *ino && !*out) {
            *out = s->l;
        } else if (!have_id || s->dev != *dev || s->ino != *ino) {
            stale[n_stale++] = s->l;   /* the file was replaced or removed */
        } else {
            continue;
        }
        s->l = NULL;
    }
    pthread_mutex_unlock(&g_pool_mu);
    for (size_t i = 0; i < n_stale; i++)
        disc_ledger_close(stale[i]);
    if (*out)
        return 0;
    int err = disc_ledger_open(state_dir, out);
    if (err == 0 && !ledger_file_id(state_dir, dev, ino))
        *dev = 0, *ino = 0;   /* not poolable */
    return err;
}

/* Return a healthy handle to the pool (or close it if the pool is full). */
static void ledger_give(disc_ledger *l, const char *state_dir, dev_t dev, ino_t ino)
{
    if (!l)
        return;
    if (ino != 0 && strlen(state_dir) < PATH_MAX) {
        pthread_mutex_lock(&g_pool_mu);
        for (size_t i = 0; i < LEDGER_POOL; i++) {
            ledger_slot *s = &g_pool[i];
            if (!s->l) {
                s->l = l;
                s->dev = dev;
                s->ino = ino;
                snprintf(s->dir, sizeof s->dir, "%s", state_dir);
                l = NULL;
                break;
            }
        }
        pthread_mutex_unlock(&g_pool_mu);
    }
    disc_ledger_close(l);
}

void disc_guard_pool_drain(void)
{
    disc_ledger *all[LEDGER_POOL];
    pthread_mutex_lock(&g_pool_mu);
    for (size_t i = 0; i < LEDGER_POOL; i++) {
        all[i] = g_pool[i].l;
        g_pool[i].l = NULL;
    }
    pthread_mutex_unlock(&g_pool_mu);
    for (size_t i = 0; i < LEDGER_POOL; i++)
        disc_ledger_close(all[i]);
}

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
    /* Every kind but the catalog (which releases only rounded dataset
     * sizes) is subject to repeat control, DP and, where it has a cohort,
     * differencing. */
    if (!spec || spec->kind == SDEFED__QUERY_KIND__KIND_CATALOG || !cfg->state_dir[0])
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

    err = ledger_take(cfg->state_dir, &g->ledger, &g->ledger_dev, &g->ledger_ino);
    if (err)
        return err;
    g->active = true;
    snprintf(g->state_dir, sizeof g->state_dir, "%s", cfg->state_dir);

    /* The repeat record must be on disk before anything is released. When
     * a FULL commit on this ledger follows before any release (the DP
     * charge, before data is read; or the differencing record, after the
     * count and before release), commit it without its own fsync: WAL
     * frames reach the disk in order, so that later fsync covers it. A
     * query refused or failed before that commit releases nothing. */
    bool count_like = spec->kind == SDEFED__QUERY_KIND__KIND_COUNT ||
                      spec->kind == SDEFED__QUERY_KIND__KIND_SUMMARY ||
                      spec->kind == SDEFED__QUERY_KIND__KIND_SURVEIL;
    bool later_full = pol->dp_epsilon > 0.0 || (pol->differencing && count_like);
    bool refused = false;
    err = later_full ? disc_ledger_set_full_sync(g->ledger, false) : 0;
    if (err == 0)
        err = disc_ledger_repeat(g->ledger, who(req->requester), g->qhash, now_seconds(),
                                 pol->identical_window_days * 86400, pol->max_identical,
                                 &refused);
    /* Back to FULL whatever happened; a handle that cannot be switched
     * back fails the query and is never reused. */
    if (later_full && disc_ledger_set_full_sync(g->ledger, true) != 0 && err == 0)
        err = SDF_EDB;
    if (err) {
        g->ledger_failed = true;
        return err;
    }
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
        if (err) {
            g->ledger_failed = true;
            return err;
        }
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
    const int64_t *sets[DISC_MAX_SETS];
    size_t ns[DISC_MAX_SETS], n_sets = 0, start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && persons[i] != DISC_COHORT_SEPARATOR)
            continue;
        if (n_sets == DISC_MAX_SETS)
            return SDF_EINVAL;
        sets[n_sets] = persons ? persons + start : persons;
        ns[n_sets++] = i - start;
        start = i + 1;
    }
    bool refused = false;
    int err = disc_ledger_cohorts(g->ledger, who(req->requester), project, sets, ns, n_sets,
                                  pol->min_cell, now_seconds(), pol->differencing_days * 86400,
                                  pol->differencing_keep, NULL, &refused);
    if (err) {
        g->ledger_failed = true;
        return err;
    }
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
    if (g->ledger_failed)
        disc_ledger_close(g->ledger);   /* never reuse a handle that failed */
    else
        ledger_give(g->ledger, g->state_dir, g->ledger_dev, g->ledger_ino);
    g->ledger = NULL;
    g->active = false;
    memset(g->noise_key, 0, sizeof g->noise_key);
}
