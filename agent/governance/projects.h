/* agent/governance/projects.h — approved projects ("safe projects").
 *
 * A project, held in the state database's `projects` table and managed
 * with `sdefed-agent project add|list|show|revoke`, says which query kinds
 * may run over which datasets, for which requesters (analyst identities as
 * authenticated by the coordinator: certificate CNs), until when, whether
 * results are released automatically (`auto`) or held for the custodian
 * (`review`), and optional stricter disclosure settings. Lists are comma
 * separated names; "*" means any. Revoking keeps the row (for the audit
 * trail) and refuses every later query.
 */
#ifndef AGENT_GOV_PROJECTS_H
#define AGENT_GOV_PROJECTS_H

#include <stdbool.h>
#include <stdint.h>

#include "state.h"
#include "sdefed.pb-c.h"

#define PROJECT_LIST_MAX 1024

typedef enum { RELEASE_AUTO = 1, RELEASE_REVIEW = 2 } release_mode;

typedef struct gov_project {
    char id[64];
    char description[256];
    char kinds[PROJECT_LIST_MAX];       /* "count,catalog" or "*" */
    char datasets[PROJECT_LIST_MAX];
    char requesters[PROJECT_LIST_MAX];
    int64_t expires_ms;                 /* 0 = never; refused from this instant */
    release_mode release;
    int64_t min_cell, rounding;         /* 0 = site policy */
    bool zero_is_disclosive;
    int64_t created_ms;
    int64_t revoked_ms;                 /* 0 = active */
    char revoke_reason[256];
} gov_project;

/* Check a comma list of names ("*" alone, or 1..64 names of
 * [A-Za-z0-9._-], no empties). kinds_only: every name must be a query kind
 * this build knows. Returns true when valid; otherwise writes why. */
bool project_list_valid(const char *list, bool kinds_only, char *why, size_t whylen);

/* Whether name is in list ("*" matches everything). */
bool project_list_has(const char *list, const char *name);

/* Insert p (created_ms is set here). SDF_EINVAL with reason when a field
 * is invalid, SDF_EREFUSED when the id exists, SDF_EDB. */
int project_add(state *s, gov_project *p, char *err, size_t errlen) SDF_MUSTCHECK;

/* Load project id. 0, SDF_ENOTFOUND or SDF_EDB. */
int project_get(state *s, const char *id, gov_project *out) SDF_MUSTCHECK;

/* Call fn for every project in id order; stops when fn returns non-zero.
 * Returns 0 or SDF_EDB. */
int project_each(state *s, int (*fn)(const gov_project *p, void *arg), void *arg) SDF_MUSTCHECK;

/* Revoke (idempotent refusal: SDF_EREFUSED when already revoked). */
int project_revoke(state *s, const char *id, const char *reason) SDF_MUSTCHECK;

/* The admission rule, pure: may req run under p at now_ms? Returns 0, or
 * SDF_EREFUSED with a reason that names the project/kind/dataset/requester
 * (only names that passed validation are echoed). */
int project_admit(const gov_project *p, const Sdefed__QueryRequest *req, int64_t now_ms,
                  char *reason, size_t reasonlen) SDF_MUSTCHECK;

/* "2026-01-31" or "2026-01-31T12:00:00Z" -> unix ms (UTC). 0 or SDF_EINVAL.
 * With end_of_day, a bare date means the start of the NEXT day (a project
 * "expiring 2026-01-31" runs through that day). */
int project_parse_date(const char *s, bool end_of_day, int64_t *ms) SDF_MUSTCHECK;

/* ISO 8601 UTC text of ms into buf ("2026-01-31T23:59:59Z"). */
void project_format_time(int64_t ms, char *buf, size_t len);

#endif
