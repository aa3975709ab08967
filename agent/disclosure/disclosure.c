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
 *  - A merged rounding base is the smallest ODD multiple of the site's base
 *    that is >= the requested one, and a merged min_cell sits on a boundary
 *    of the site's rounding intervals, so an answer under a stricter policy
 *    is always a function of the answer under the site's (see
 *    disc_policy_merge in disclosure.h): intersecting them gains nothing.
 */
#include <stddef.h>

#include "disclosure/disclosure.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Largest min_cell / rounding a policy may hold; requested values above it
 * are clamped (they would suppress everything anyway). */
#define DISC_MAX_PARAM 1000000000LL

void disc_policy_default(disc_policy *p)
{
    memset(p, 0, sizeof *p);
    p->min_cell = 10;
    p->rounding = 5;
    p->zero_is_disclosive = false;
    p->dominance_n = 2;
    p->dominance_k = 0.9;
    p->min_dof = 10;
    p->max_params_ratio = 0.33;
    p->max_identical = 7;
    p->identical_window_days = 30;
    p->differencing = true;
    p->differencing_keep = 64;
    p->differencing_days = 30;
    p->dp_epsilon = 0.0;
    p->dp_budget = 0.0;
}

static int bad(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return SDF_ECONFIG;
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
    /* The fields below were added later; 0 means "the default" so that
     * policies built with positional initialisers stay valid. */
    if (p->dominance_n < 0 || p->dominance_n > 100)
        return bad(err, errlen, "dominance_n must be between 1 and 100");
    if (!(p->dominance_k > 0.0 && p->dominance_k <= 1.0))
        return bad(err, errlen, "dominance_k must be in (0, 1]");
    if (p->min_dof < 0 || p->min_dof > DISC_MAX_PARAM)
        return bad(err, errlen, "min_dof must be between 1 and 1000000000");
    if (!(p->max_params_ratio >= 0.0 && p->max_params_ratio <= 1.0))
        return bad(err, errlen, "max_params_ratio must be in (0, 1]");
    if (p->max_identical < 0 || p->max_identical > 1000000)
        return bad(err, errlen, "max_identical must be between 1 and 1000000");
    if (p->identical_window_days < 0 || p->identical_window_days > 3650)
        return bad(err, errlen, "identical_window_days must be between 1 and 3650");
    if (p->differencing_keep < 0 || p->differencing_keep > 4096)
        return bad(err, errlen, "differencing_keep must be between 1 and 4096");
    if (p->differencing_days < 0 || p->differencing_days > 3650)
        return bad(err, errlen, "differencing_days must be between 1 and 3650");
    if (!(p->dp_epsilon >= 0.0 && p->dp_epsilon <= 100.0))
        return bad(err, errlen, "dp_epsilon must be between 0 (off) and 100");
    if (!(p->dp_budget >= 0.0 && p->dp_budget <= 100000.0))
        return bad(err, errlen, "dp_budget must be between 0 and 100000");
    if (p->dp_epsilon > 0.0 && p->dp_budget < p->dp_epsilon)
        return bad(err, errlen, "dp_budget must be at least dp_epsilon when dp_epsilon is set");
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

/* Smallest m >= want at which the site's released value changes between
 * m-1 and m: m mod r == ceil(r/2), but not below r + ceil(r/2), because
 * every count 1..r+ceil(r/2)-1 is released as r (a non-zero count is never
 * shown as 0). For r == 1 every m. Both <= 1e9, no overflow. */
static int64_t align_threshold(int64_t want, int64_t r)
{
    if (r <= 1 || want <= 1)
        return want;
    int64_t h = (r + 1) / 2;
    if (want < r + h)
        want = r + h;
    int64_t rem = ((want - h) % r + r) % r;
    int64_t m = rem ? want + (r - rem) : want;
    return m > DISC_MAX_PARAM ? DISC_MAX_PARAM : m;
}

void disc_policy_merge(const disc_policy *site, int64_t req_min_cell,
                       int64_t req_rounding, bool req_zero_is_disclosive,
                       disc_policy *out)
{
    disc_policy def;
    disc_policy_default(&def);
    /* The site values are a floor even if they were never checked: clamp
     * into the valid range first (a site min_cell of 0 becomes 1, etc.). */
    int64_t min_cell = clamp_param(site->min_cell);
    int64_t rounding = clamp_param(site->rounding);
    int64_t base = rounding;

    if (req_rounding > rounding) {
        int64_t req = req_rounding > DISC_MAX_PARAM ? DISC_MAX_PARAM : req_rounding;
        /* Smallest ODD multiple of the site base >= req (no overflow: both
         * are <= 1e9); capped at the largest odd multiple within range. */
        int64_t k = (req + base - 1) / base;
        if (k % 2 == 0)
            k++;
        while (k > 1 && k * base > DISC_MAX_PARAM)
            k -= 2;
        rounding = k * base;
    }

    if (req_min_cell > min_cell) {
        int64_t req = req_min_cell > DISC_MAX_PARAM ? DISC_MAX_PARAM : req_min_cell;
        min_cell = align_threshold(req, base);
    }

    /* Copy the non-count rules, filling unset (0) ones from the defaults. */
    disc_policy o = *site;
    if (o.dominance_n <= 0)
        o.dominance_n = def.dominance_n;
    if (!(o.dominance_k > 0.0))
        o.dominance_k = def.dominance_k;
    if (o.min_dof <= 0)
        o.min_dof = def.min_dof;
    if (!(o.max_params_ratio > 0.0))
        o.max_params_ratio = def.max_params_ratio;
    if (o.max_identical <= 0)
        o.max_identical = def.max_identical;
    if (o.identical_window_days <= 0)
        o.identical_window_days = def.identical_window_days;
    if (o.differencing_keep <= 0)
        o.differencing_keep = def.differencing_keep;
    if (o.differencing_days <= 0)
        o.differencing_days = def.differencing_days;
    o.min_cell = min_cell;
    o.rounding = rounding;
    o.zero_is_disclosive = site->zero_is_disclosive || req_zero_is_disclosive;
    *out = o;
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
        { DISC_RULE_SECONDARY, "secondary_suppression" },
        { DISC_RULE_NOISE, "dp_noise" },
        { DISC_RULE_REPEAT, "repeat_limit" },
        { DISC_RULE_DIFFERENCING, "differencing" },
        { DISC_RULE_DP_BUDGET, "dp_budget" },
    };
    int n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0] && n < max; i++)
        if (rules & names[i].bit)
            out[n++] = names[i].name;
    return n;
}

/* A uniform double in (0, 1) from 52 bits of b (never 0, never 1). */
static double unit_open(const unsigned char *b)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | b[i];
    x >>= 12;                                   /* 52 bits */
    return ((double)x + 0.5) / 4503599627370496.0;  /* 2^52 */
}

/* HMAC-SHA256(key, big-endian index): the randomness behind one noise draw. */
static int noise_mac(const unsigned char key[32], uint64_t index, unsigned char mac[32])
{
    unsigned char msg[8], buf[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    for (int i = 0; i < 8; i++)
        msg[i] = (unsigned char)(index >> (56 - 8 * i));
    if (!HMAC(EVP_sha256(), key, 32, msg, sizeof msg, buf, &maclen) || maclen < 32)
        return -1;
    memcpy(mac, buf, 32);
    return 0;
}

double disc_laplace_noise(const unsigned char key[32], uint64_t index, double b)
{
    unsigned char mac[32];
    if (!(b > 0.0) || !isfinite(b) || noise_mac(key, index, mac) != 0)
        return 0.0;
    /* u in (-1/2, 1/2): noise = -b sgn(u) ln(1 - 2|u|) */
    double u = unit_open(mac) - 0.5;
    double a = fabs(u);
    return (u < 0 ? b : -b) * log1p(-2.0 * a);
}

int64_t disc_geometric_noise(const unsigned char key[32], uint64_t index, double epsilon,
                             double sensitivity)
{
    unsigned char msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    for (int i = 0; i < 8; i++)
        msg[i] = (unsigned char)(index >> (56 - 8 * i));
    if (!HMAC(EVP_sha256(), key, 32, msg, sizeof msg, mac, &maclen) || maclen < 16)
        return 0;   /* cannot happen with SHA-256; callers never see it */
    if (!(epsilon > 0.0))
        return 0;
    if (sensitivity < 1.0)
        sensitivity = 1.0;
    /* Difference of two geometric variables with success 1-alpha is the
     * two-sided geometric (discrete Laplace) distribution. */
    double alpha = exp(-epsilon / sensitivity);
    double la = log(alpha);
    double g1 = floor(log(unit_open(mac)) / la);
    double g2 = floor(log(unit_open(mac + 8)) / la);
    if (g1 > 1e12)
        g1 = 1e12;
    if (g2 > 1e12)
        g2 = 1e12;
    return (int64_t)g1 - (int64_t)g2;
}

disc_value disc_count_noised(const disc_policy *p, int64_t true_count,
                             const unsigned char key[32], uint64_t index, unsigned *rules)
{
    int64_t t = true_count < 0 ? 0 : true_count;
    int64_t noise = disc_geometric_noise(key, index, p->dp_epsilon, 1.0);
    int64_t v = t;
    if (noise > 0 && v > INT64_MAX - noise)
        v = INT64_MAX;
    else
        v += noise;
    if (v < 0)
        v = 0;
    /* The usual count rules apply to the noised value (post-processing):
     * noised small values are still suppressed, the rest rounded. */
    unsigned fired = DISC_RULE_NOISE;
    disc_value out = disc_count(p, v, &fired);
    if (out.status != DISC_SUPPRESSED)
        out.status = DISC_NOISED;
    if (rules)
        *rules |= fired;
    return out;
}
