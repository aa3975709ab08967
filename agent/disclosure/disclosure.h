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
    /* Rules beyond counts (defaults from ACRO / DataSHIELD / SHRINE; see
     * deploy/disclosure.md). Appended after the count fields so that
     * positional initialisers { min_cell, rounding, zero } keep working;
     * zero in any of these after such an initialiser means "the default"
     * to disc_policy_merge (which fills them from disc_policy_default). */
    int64_t dominance_n;       /* top-n contributors of a sum; default 2 */
    double dominance_k;        /* ... may hold at most this share; default 0.9 */
    int64_t min_dof;           /* regression residual dof; default 10 */
    double max_params_ratio;   /* parameters <= ratio * n; default 0.33 */
    int64_t max_identical;     /* identical queries per window per requester; default 7 */
    int64_t identical_window_days;  /* default 30 */
    bool differencing;         /* refuse near-identical cohorts; default true */
    int64_t differencing_keep; /* cohorts kept per requester and per project; default 64 */
    int64_t differencing_days; /* how long a kept cohort counts; default 30 */
    double dp_epsilon;         /* per-query epsilon of Laplace/geometric noise; 0 = off */
    double dp_budget;          /* per-project total epsilon; used when dp_epsilon > 0 */
} disc_policy;

typedef enum {
    DISC_EXACT = 1,
    DISC_ROUNDED = 2,
    DISC_SUPPRESSED = 3,
    DISC_NOISED = 4,
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
    DISC_RULE_SECONDARY = 1u << 3,     /* "secondary_suppression" */
    DISC_RULE_NOISE = 1u << 4,         /* "dp_noise" */
    DISC_RULE_REPEAT = 1u << 5,        /* "repeat_limit" (refusals) */
    DISC_RULE_DIFFERENCING = 1u << 6,  /* "differencing" (refusals) */
    DISC_RULE_DP_BUDGET = 1u << 7,     /* "dp_budget" (refusals) */
    /* 1u << 16 and up are left for the statistics rules (stats.c). */
};

/* The defaults: min_cell 10, rounding 5, zero released, dominance 2/0.9,
 * min_dof 10, max_params_ratio 0.33, 7 identical queries per 30 days,
 * differencing on (64 cohorts kept, 30 days), differential privacy off. */
void disc_policy_default(disc_policy *p);

/* Check a site policy from config. Returns 0 or SDF_ECONFIG with a reason
 * (e.g. min_cell < 1, rounding < 1, values above 1e9, dominance_k outside
 * (0,1], dp_epsilon > dp_budget). */
int disc_policy_check(const disc_policy *p, char *err, size_t errlen);

/* Effective policy = the stricter of site (floor) and requested on every
 * rule; a requested field of 0 means "not set". Fields beyond the count
 * rules are copied from the site (0 there = the default).
 *
 * Rounding intersections: an analyst who gets the same count under two
 * rounding bases (or two thresholds) could intersect the intervals. So a
 * stricter request is always made a coarsening of the site's answer:
 *   - a requested rounding becomes the smallest ODD multiple of the site
 *     base that is >= the request (odd multiples put every interval
 *     boundary on a boundary of the site's intervals; even ones split them);
 *   - a requested min_cell above the site's becomes the smallest value
 *     >= the request where the site's rounding changes value (n with
 *     n mod r == ceil(r/2)), so "suppressed or not" is a function of the
 *     site's released value.
 * Hence every answer under a merged policy is a function of the answer
 * under the site policy (tested exhaustively), and asking twice with
 * different policies reveals nothing the site policy alone would not. */
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

/* ---- deterministic noise (differential privacy mode) ----------------------
 * Noise is never drawn from a clock or /dev/urandom at query time: it is a
 * pure function of a 32-byte key (HMAC-SHA256 of the site secret, the
 * canonical spec and the data version, computed by the caller) and the
 * cell's index, so a repeated identical query gets the identical answer and
 * averaging repeats gains nothing. */

/* Two-sided geometric noise (the discrete Laplace mechanism) with
 * parameter alpha = exp(-epsilon / sensitivity), drawn from key+index.
 * epsilon > 0, sensitivity >= 1. */
int64_t disc_geometric_noise(const unsigned char key[32], uint64_t index, double epsilon,
                             double sensitivity);

/* Continuous Laplace noise with scale b (> 0), drawn from key+index the
 * same way (inverse CDF of a uniform derived by HMAC). For sums under DP:
 * a sum of sensitivity D gets scale D / epsilon. Returns 0 for b <= 0. */
double disc_laplace_noise(const unsigned char key[32], uint64_t index, double b);

/* A count released under differential privacy: true + noise, then clamped
 * at 0 and rounded like any count (rounding is post-processing and costs no
 * epsilon). Status DISC_NOISED; no small-count suppression (the noise
 * protects). Sets DISC_RULE_NOISE. */
disc_value disc_count_noised(const disc_policy *p, int64_t true_count,
                             const unsigned char key[32], uint64_t index, unsigned *rules);

#endif
