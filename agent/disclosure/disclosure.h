/* agent/disclosure/disclosure.h — the disclosure-control engine.
 *
 * Pure code: no I/O, no clocks, no globals. Every number an agent releases
 * passes through here; nothing else in the agent decides what may leave.
 * The site's policy is a floor: disc_policy_merge() lets a query or
 * coordinator ask for stricter rules, never looser ones.
 *
 * Rules (design.md section 6):
 *   - a count in 1..min_cell-1 is suppressed (value withheld);
 *   - any other count is rounded to the nearest multiple of `rounding`
 *     (halves round up), status "rounded" (or "exact" if rounding <= 1);
 *   - a released non-zero count is never rounded below `rounding` (so a
 *     true count is never shown as 0);
 *   - 0 is released as 0 ("exact") unless zero_is_disclosive, then suppressed.
 */
#ifndef AGENT_DISCLOSURE_H
#define AGENT_DISCLOSURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sdefed/err.h"

typedef struct disc_policy {
    int64_t min_cell;          /* >= 1; default 10 */
    int64_t rounding;          /* >= 1 (1 = no rounding); default 5 */
    bool zero_is_disclosive;   /* default false */
} disc_policy;

typedef enum {
    DISC_EXACT = 1,
    DISC_ROUNDED = 2,
    DISC_SUPPRESSED = 3,
} disc_status;

typedef struct disc_value {
    int64_t value;        /* 0 when suppressed: carries no information */
    disc_status status;
} disc_value;

/* Bits naming the rules that changed something, for QueryResult.rules_fired. */
enum {
    DISC_RULE_SMALL_COUNT = 1u << 0,   /* "small_count" */
    DISC_RULE_ROUNDING = 1u << 1,      /* "rounding" */
    DISC_RULE_ZERO = 1u << 2,          /* "zero_is_disclosive" */
};

/* The defaults: min_cell 10, rounding 5, zero released. */
void disc_policy_default(disc_policy *p);

/* Check a site policy from config. Returns 0 or SDF_ECONFIG with a reason
 * (e.g. min_cell < 1, rounding < 1, values above 1e9). */
int disc_policy_check(const disc_policy *p, char *err, size_t errlen);

/* Effective policy = the stricter of site (floor) and requested on every
 * rule. requested may be NULL; a requested field of 0 means "not set". */
void disc_policy_merge(const disc_policy *site, int64_t req_min_cell,
                       int64_t req_rounding, bool req_zero_is_disclosive,
                       disc_policy *out);

/* Apply the count rules to one true count (>= 0; negative counts are
 * treated as suppressed). *rules (may be NULL) gets DISC_RULE_* bits OR-ed
 * in for every rule that fired. */
disc_value disc_count(const disc_policy *p, int64_t true_count, unsigned *rules);

/* Names of the rule bits, for the result: writes up to max names into out
 * and returns how many. Static strings. */
int disc_rule_names(unsigned rules, const char **out, int max);

#endif
