/* agent/disclosure/disclosure.c — the disclosure-control engine.
 *
 * Every number the agent releases passes through disc_count(). The code is
 * pure (no I/O, no clocks, no globals) so every rule can be tested
 * exhaustively. Two choices go beyond the header and are deliberate:
 *
 *  - Status and rule bits never depend on the exact value of a count
 *    within a class: a released count is "rounded" (and the rounding bit
 *    is set) whenever rounding applies, even if the count happened to be a
 *    multiple already; otherwise "exact" would reveal the residue. And a
 *    suppressed count sets the same bits whether it was 0 or 1..min_cell-1
 *    (small_count, plus zero_is_disclosive when that policy is on), so
 *    rules_fired cannot tell a suppressed zero from a suppressed small count.
 *  - A merged rounding base is the smallest multiple of the site's base that
 *    is >= the requested one, so every released count stays a multiple of
 *    the site's base whatever a query asks for.
 */
/* disclosure.h uses size_t without including <stddef.h>; include it first. */
#include <stddef.h>

#include "disclosure/disclosure.h"

#include <stdio.h>

/* Largest min_cell / rounding a policy may hold; requested values above it
 * are clamped (they would suppress everything anyway). */
#define DISC_MAX_PARAM 1000000000LL

void disc_policy_default(disc_policy *p)
{
    p->min_cell = 10;
    p->rounding = 5;
    p->zero_is_disclosive = false;
}

int disc_policy_check(const disc_policy *p, char *err, size_t errlen)
{
    if (p->min_cell < 1 || p->min_cell > DISC_MAX_PARAM) {
        if (err && errlen)
            snprintf(err, errlen, "min_cell must be between 1 and %lld",
                     (long long)DISC_MAX_PARAM);
        return SDF_ECONFIG;
    }
    if (p->rounding < 1 || p->rounding > DISC_MAX_PARAM) {
        if (err && errlen)
            snprintf(err, errlen, "rounding must be between 1 and %lld",
                     (long long)DISC_MAX_PARAM);
        return SDF_ECONFIG;
    }
    return 0;
}

static int64_t clamp_param(int64_t v)
{
    if (v < 1)
        return 1;
    if (v > DISC_MAX_PARAM)
        return DISC_MAX_PARAM;
    return v;
}

void disc_policy_merge(const disc_policy *site, int64_t req_min_cell,
                       int64_t req_rounding, bool req_zero_is_disclosive,
                       disc_policy *out)
{
    /* The site values are a floor even if they were never checked: clamp
     * into the valid range first (a site min_cell of 0 becomes 1, etc.). */
    int64_t min_cell = clamp_param(site->min_cell);
    int64_t rounding = clamp_param(site->rounding);

    if (req_min_cell > min_cell)
        min_cell = req_min_cell > DISC_MAX_PARAM ? DISC_MAX_PARAM : req_min_cell;

    if (req_rounding > rounding) {
        int64_t req = req_rounding > DISC_MAX_PARAM ? DISC_MAX_PARAM : req_rounding;
        /* Smallest multiple of the site base >= req (no overflow: both
         * are <= 1e9). */
        int64_t k = (req + rounding - 1) / rounding;
        if (k * rounding > DISC_MAX_PARAM)   /* stay within the cap */
            k = DISC_MAX_PARAM / rounding;
        rounding = k * rounding;
    }

    out->min_cell = min_cell;
    out->rounding = rounding;
    out->zero_is_disclosive = site->zero_is_disclosive || req_zero_is_disclosive;
}

/* n rounded to the nearest multiple of r (halves up), n >= 0, r >= 1,
 * saturating at the largest multiple of r that fits in int64_t. */
static int64_t round_nearest(int64_t n, int64_t r)
{
    int64_t q = n / r;
    int64_t rem = n % r;
    /* rem*2 >= r, written without overflow; at the very top of the range
     * rounding up would overflow, so stay on the largest multiple that fits. */
    if (rem >= r - rem && q < INT64_MAX / r)
        q++;
    return q * r;
}

disc_value disc_count(const disc_policy *p, int64_t true_count, unsigned *rules)
{
    disc_value out = { .value = 0, .status = DISC_SUPPRESSED };
    unsigned fired = 0;
    int64_t min_cell = p->min_cell < 1 ? 1 : p->min_cell;
    int64_t rounding = p->rounding < 1 ? 1 : p->rounding;

    if (true_count < 0 || (true_count > 0 && true_count < min_cell) ||
        (true_count == 0 && p->zero_is_disclosive)) {
        /* Suppressed: value carries nothing; bits are the same for a
         * suppressed 0 and a suppressed small count (see top comment). */
        fired |= DISC_RULE_SMALL_COUNT;
        if (p->zero_is_disclosive)
            fired |= DISC_RULE_ZERO;
        if (rules)
            *rules |= fired;
        return out;
    }

    if (true_count == 0) {
        out.value = 0;
        out.status = DISC_EXACT;
        return out;
    }

    if (rounding <= 1) {
        out.value = true_count;
        out.status = DISC_EXACT;
        return out;
    }

    int64_t v = round_nearest(true_count, rounding);
    if (v < rounding)              /* a non-zero count is never shown as 0 */
        v = rounding;
    out.value = v;
    out.status = DISC_ROUNDED;
    fired |= DISC_RULE_ROUNDING;
    if (rules)
        *rules |= fired;
    return out;
}

int disc_rule_names(unsigned rules, const char **out, int max)
{
    static const struct { unsigned bit; const char *name; } names[] = {
        { DISC_RULE_SMALL_COUNT, "small_count" },
        { DISC_RULE_ROUNDING, "rounding" },
        { DISC_RULE_ZERO, "zero_is_disclosive" },
    };
    int n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && n < max; i++)
        if (rules & names[i].bit)
            out[n++] = names[i].name;
    return n;
}
