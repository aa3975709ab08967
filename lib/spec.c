/* lib/spec.c — JSON query specs <-> protobuf QuerySpec; see include/sdefed/spec.h.
 *
 * The analyst's CLI turns a JSON spec into a QuerySpec here, and every agent
 * re-checks the QuerySpec it receives with spec_validate(): the same limits
 * hold whichever way a spec arrives. Nothing in this file trusts its input.
 *
 * Parsing: the size is checked before jansson sees a byte; jansson parses
 * with JSON_REJECT_DUPLICATES (and its own nesting-depth limit). The JSON is
 * then walked field by field into a temporary QuerySpec whose strings point
 * into the jansson tree; that temporary is validated, packed and unpacked, so
 * the caller always gets a protobuf-c-owned message and has ONE ownership
 * rule: sdefed__query_spec__free_unpacked(spec, NULL).
 *
 * Error messages are "<path>: <problem>" on one line, where path names the
 * field ("cohort.all[0].concepts[2]"). Any excerpt of user input (unknown
 * keys, bad names) is at most 40 bytes, with quotes, backslashes, control
 * characters and non-ASCII bytes escaped, so a message is safe to log and to
 * print on a terminal.
 *
 * Canonical form (spec_to_json and, equally, spec_parse_json's result):
 *   - fields in the fixed order kind, project, dataset, cohort, by, margins
 *     (issue 4; emitted only when true), policy;
 *     inside a criterion: domain, concepts, descendants; inside policy:
 *     min_cell, rounding, zero_is_disclosive;
 *   - fields holding their default are omitted: dataset "" , cohort without
 *     criteria, descendants false, by [], policy min_cell 0 / rounding 0 /
 *     zero_is_disclosive false, and the whole policy object when all of its
 *     fields are default (spec_parse_json then leaves spec->policy NULL);
 *   - validate.scorecard (issue 5 item 2): link, intercept, then the terms
 *     in their order (coef, the covariate, lookback_days, missing); its
 *     outcome.dataset (and subgroups_from with `by`) default to the spec's
 *     dataset and are always emitted, so every coefficient is part of the
 *     canonical spec;
 *   - a criterion's concept list is a set: spec_parse_json sorts it
 *     ascending and drops duplicates, and spec_to_json emits it sorted and
 *     de-duplicated too. Criteria and stratifiers keep their order (the
 *     stratifier order is the output's column order).
 * So semantically equal specs have byte-identical json_dumps(spec_to_json(),
 * JSON_COMPACT) output, and spec_parse_json(json_dumps(spec_to_json(s)))
 * equals s for every s that spec_parse_json produced.
 */
#include "sdefed/spec.h"
#include "sdefed/jsonout.h"
#include "sdefed/pbcopy.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXCERPT_MAX 40          /* bytes of user input quoted in a message */
#define POLICY_MAX 1000000      /* min_cell and rounding upper bound */
#define CONCEPT_MAX 2147483647  /* OMOP concept ids are int32 */

/* ---- names ---------------------------------------------------------------- */

static const char *const kind_names[] = {
    [SDEFED__QUERY_KIND__KIND_CATALOG] = "catalog",
    [SDEFED__QUERY_KIND__KIND_COUNT] = "count",
    [SDEFED__QUERY_KIND__KIND_SUMMARY] = "summary",
    [SDEFED__QUERY_KIND__KIND_SURVEIL] = "surveil",   /* issue 6 */
    [SDEFED__QUERY_KIND__KIND_VALIDATE] = "validate", /* issue 5 */
};
static const char *const domain_names[] = {
    [SDEFED__DOMAIN__DOMAIN_CONDITION] = "condition",
    [SDEFED__DOMAIN__DOMAIN_DRUG] = "drug",
    [SDEFED__DOMAIN__DOMAIN_DEVICE] = "device",
    [SDEFED__DOMAIN__DOMAIN_PROCEDURE] = "procedure",
    [SDEFED__DOMAIN__DOMAIN_MEASUREMENT] = "measurement",
    [SDEFED__DOMAIN__DOMAIN_OBSERVATION] = "observation",
    [SDEFED__DOMAIN__DOMAIN_VISIT] = "visit",
    [SDEFED__DOMAIN__DOMAIN_DEATH] = "death",
};
static const char *const strat_names[] = {
    [SDEFED__STRATIFIER__STRAT_SEX] = "sex",
    [SDEFED__STRATIFIER__STRAT_AGE_BAND] = "age_band",
    [SDEFED__STRATIFIER__STRAT_YEAR] = "year",
    [SDEFED__STRATIFIER__STRAT_QUARTER] = "quarter",
    [SDEFED__STRATIFIER__STRAT_RACE] = "race",
    [SDEFED__STRATIFIER__STRAT_ETHNICITY] = "ethnicity",
    [SDEFED__STRATIFIER__STRAT_CARE_SITE] = "care_site",
};
/* Cohort language (issue 3). */
static const char *const sex_names[] = {
    [SDEFED__SEX__SEX_MALE] = "male",
    [SDEFED__SEX__SEX_FEMALE] = "female",
    [SDEFED__SEX__SEX_UNKNOWN] = "unknown",
};
static const char *const summary_of_names[] = {
    [SDEFED__SUMMARY_OF__SUMMARY_MEASUREMENT] = "measurement",
    [SDEFED__SUMMARY_OF__SUMMARY_AGE] = "age",
};
static const char *const cell_status_names[] = {
    [SDEFED__CELL_STATUS__CELL_EXACT] = "exact",
    [SDEFED__CELL_STATUS__CELL_ROUNDED] = "rounded",
    [SDEFED__CELL_STATUS__CELL_SUPPRESSED] = "suppressed",
    [SDEFED__CELL_STATUS__CELL_NOISED] = "noised",
};
static const char *const site_status_names[] = {
    [SDEFED__SITE_STATUS__SITE_OK] = "ok",
    [SDEFED__SITE_STATUS__SITE_OFFLINE] = "offline",
    [SDEFED__SITE_STATUS__SITE_TIMEOUT] = "timeout",
    [SDEFED__SITE_STATUS__SITE_REFUSED] = "refused",
    [SDEFED__SITE_STATUS__SITE_ERROR] = "error",
    [SDEFED__SITE_STATUS__SITE_HELD] = "held",
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

/* Name of enum value v in table t, "" when v is 0 or out of range. The
 * enums are int-sized but may hold any value off the wire. */
static const char *name_of(const char *const *t, size_t n, int v)
{
    if (v <= 0 || (size_t)v >= n || !t[v])
        return "";
    return t[v];
}

/* Value whose name is s in table t, 0 when none. */
static int value_of(const char *const *t, size_t n, const char *s)
{
    for (size_t i = 1; i < n; i++)
        if (t[i] && strcmp(t[i], s) == 0)
            return (int)i;
    return 0;
}

const char *spec_kind_name(Sdefed__QueryKind k)
{
    return name_of(kind_names, COUNT_OF(kind_names), (int)k);
}

const char *spec_domain_name(Sdefed__Domain d)
{
    return name_of(domain_names, COUNT_OF(domain_names), (int)d);
}

const char *spec_stratifier_name(Sdefed__Stratifier s)
{
    return name_of(strat_names, COUNT_OF(strat_names), (int)s);
}

const char *spec_cell_status_name(Sdefed__CellStatus s)
{
    return name_of(cell_status_names, COUNT_OF(cell_status_names), (int)s);
}

const char *spec_site_status_name(Sdefed__SiteStatus s)
{
    return name_of(site_status_names, COUNT_OF(site_status_names), (int)s);
}

/* ---- messages --------------------------------------------------------------- */

/* Append an escaped excerpt of s[0..n) (at most EXCERPT_MAX bytes, "..."
 * when cut) to out, which has room for outlen bytes including the NUL. Only
 * printable ASCII other than '"' and '\\' is copied as is. */
static void escape_into(char *out, size_t outlen, const char *s, size_t n)
{
    size_t o = strlen(out);
    size_t take = n > EXCERPT_MAX ? EXCERPT_MAX : n;

    for (size_t i = 0; i < take; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[5];
        if (c == '"' || c == '\\')
            snprintf(tmp, sizeof tmp, "\\%c", c);
        else if (c == '\n')
            snprintf(tmp, sizeof tmp, "\\n");
        else if (c == '\t')
            snprintf(tmp, sizeof tmp, "\\t");
        else if (c < 0x20 || c >= 0x7f)
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
        else
            snprintf(tmp, sizeof tmp, "%c", c);
        size_t tl = strlen(tmp);
        if (o + tl + 1 > outlen)
            return;
        memcpy(out + o, tmp, tl + 1);
        o += tl;
    }
    if (take < n && o + 4 <= outlen)
        memcpy(out + o, "...", 4);
}

/* A quoted, escaped excerpt of s for messages. */
struct excerpt { char s[EXCERPT_MAX * 4 + 8]; };

static struct excerpt quote(const char *s, size_t n)
{
    struct excerpt e;
    e.s[0] = '"';
    e.s[1] = '\0';
    escape_into(e.s, sizeof e.s - 1, s, n);
    size_t l = strlen(e.s);
    e.s[l] = '"';
    e.s[l + 1] = '\0';
    return e;
}

/* The field path of the value being examined, e.g. "cohort.all[1].domain". */
struct path {
    char s[512];
};

static size_t path_push_key(struct path *p, const char *key)
{
    size_t old = strlen(p->s);
    if (old > 0 && old + 1 < sizeof p->s) {
        p->s[old] = '.';
        p->s[old + 1] = '\0';
    }
    escape_into(p->s, sizeof p->s, key, strlen(key));
    return old;
}

static size_t path_push_index(struct path *p, size_t i)
{
    size_t old = strlen(p->s);
    snprintf(p->s + old, sizeof p->s - old, "[%zu]", i);
    return old;
}

static void path_pop(struct path *p, size_t old)
{
    p->s[old] = '\0';
}

/* Write "<path>: <problem>" into err and return SDF_ESPEC. */
__attribute__((format(printf, 4, 5)))
static int fail(char *err, size_t errlen, const struct path *p, const char *fmt, ...)
{
    if (err && errlen > 0) {
        int n = snprintf(err, errlen, "%s: ", p && p->s[0] ? p->s : "spec");
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return SDF_ESPEC;
}

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

static const char *jtype(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown type";
}

/* ---- shared rules --------------------------------------------------------- */

static bool name_char_ok(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* Project and dataset names: 1..SPEC_MAX_NAME bytes of [A-Za-z0-9._-]. */
static int check_name(const char *s, size_t n, const struct path *p, char *err, size_t errlen)
{
    if (n == 0)
        return fail(err, errlen, p, "must not be empty");
    if (n > SPEC_MAX_NAME)
        return fail(err, errlen, p, "longer than %d characters", SPEC_MAX_NAME);
    for (size_t i = 0; i < n; i++)
        if (!name_char_ok((unsigned char)s[i]))
            return fail(err, errlen, p, "invalid name %s (allowed: A-Z a-z 0-9 . _ -)",
                        quote(s, n).s);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Sort v[0..*n) ascending and drop duplicates. */
static void sort_unique(int64_t *v, size_t *n)
{
    if (*n < 2)
        return;
    qsort(v, *n, sizeof v[0], cmp_i64);
    size_t w = 1;
    for (size_t i = 1; i < *n; i++)
        if (v[i] != v[w - 1])
            v[w++] = v[i];
    *n = w;
}

/* ---- validation of a QuerySpec ------------------------------------------------ */

static const char *str_or_empty(const char *s) { return s ? s : ""; }

/* A list of concept ids: at most max, each 1..CONCEPT_MAX. */
static int check_ids(const int64_t *v, size_t n, size_t max, struct path *p, char *err,
                     size_t errlen)
{
    if (n > max)
        return fail(err, errlen, p, "more than %zu concepts", max);
    if (n > 0 && !v)
        return fail(err, errlen, p, "missing");
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 1 || v[i] > CONCEPT_MAX) {
            path_push_index(p, i);
            return fail(err, errlen, p, "concept id must be 1..%d", CONCEPT_MAX);
        }
    }
    return 0;
}

static bool has_values(Sdefed__Domain d)
{
    return d == SDEFED__DOMAIN__DOMAIN_MEASUREMENT || d == SDEFED__DOMAIN__DOMAIN_OBSERVATION;
}

static int check_window(const Sdefed__Window *w, struct path *p, char *err, size_t errlen)
{
    if (w->start_days < -SPEC_MAX_DAYS || w->start_days > SPEC_MAX_DAYS ||
        w->end_days < -SPEC_MAX_DAYS || w->end_days > SPEC_MAX_DAYS)
        return fail(err, errlen, p, "days must be within -%d..%d", SPEC_MAX_DAYS, SPEC_MAX_DAYS);
    if (w->start_days > w->end_days)
        return fail(err, errlen, p, "start_days (%d) is after end_days (%d)",
                    (int)w->start_days, (int)w->end_days);
    return 0;
}

/* One criterion. `is_index`: the cohort's index criterion (no window, no
 * first_only). *windowed is set when the criterion has a window. */
static int validate_criterion_ex(const Sdefed__Criterion *c, bool is_index, bool *windowed,
                                 struct path *p, char *err, size_t errlen)
{
    size_t old;
    int rc = 0;

    if (!c)
        return fail(err, errlen, p, "missing criterion");
    old = path_push_key(p, "domain");
    if (!*spec_domain_name(c->domain))
        rc = fail(err, errlen, p, "unknown domain value %d", (int)c->domain);
    path_pop(p, old);
    if (rc)
        return rc;

    old = path_push_key(p, "concepts");
    if (c->n_concepts == 0 && c->domain != SDEFED__DOMAIN__DOMAIN_DEATH)
        rc = fail(err, errlen, p, "must not be empty");
    else
        rc = check_ids(c->concepts, c->n_concepts, SPEC_MAX_CONCEPTS, p, err, errlen);
    path_pop(p, old);
    if (rc)
        return rc;

    old = path_push_key(p, "exclude");
    rc = check_ids(c->exclude, c->n_exclude, SPEC_MAX_CONCEPTS, p, err, errlen);
    path_pop(p, old);
    if (rc)
        return rc;
    if (c->exclude_descendants && c->n_exclude == 0) {
        old = path_push_key(p, "exclude_descendants");
        rc = fail(err, errlen, p, "needs a non-empty exclude");
        path_pop(p, old);
        return rc;
    }

    if (c->window) {
        old = path_push_key(p, "window");
        rc = is_index ? fail(err, errlen, p, "not allowed on the index (it is the reference)")
                      : check_window(c->window, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        if (windowed)
            *windowed = true;
    }
    if (c->first_only && is_index) {
        old = path_push_key(p, "first_only");
        rc = fail(err, errlen, p, "not allowed on the index (use \"event\": \"first\")");
        path_pop(p, old);
        return rc;
    }

    if (c->value) {
        const Sdefed__ValueRange *v = c->value;
        old = path_push_key(p, "value");
        if (!has_values(c->domain))
            rc = fail(err, errlen, p, "only for measurement and observation");
        else if (!v->has_min && !v->has_max)
            rc = fail(err, errlen, p, "needs min or max");
        else if ((v->has_min && !isfinite(v->min)) || (v->has_max && !isfinite(v->max)))
            rc = fail(err, errlen, p, "min and max must be finite numbers");
        else if (v->has_min && v->has_max && v->min > v->max)
            rc = fail(err, errlen, p, "min is greater than max");
        path_pop(p, old);
        if (rc)
            return rc;
    }
    old = path_push_key(p, "units");
    if (c->n_units > 0 && !has_values(c->domain))
        rc = fail(err, errlen, p, "only for measurement and observation");
    else
        rc = check_ids(c->units, c->n_units, SPEC_MAX_UNITS, p, err, errlen);
    path_pop(p, old);
    return rc;
}

/* The flat expression tree: iterative, so no input can make it recurse.
 * Children come after their group (index > group's), every node but the
 * root has exactly one parent, groups nest at most SPEC_MAX_DEPTH deep. */
static int validate_nodes(const Sdefed__Cohort *co, size_t *n_crit, bool *windowed,
                          struct path *p, char *err, size_t errlen)
{
    unsigned char depth[SPEC_MAX_NODES];
    unsigned char parents[SPEC_MAX_NODES];
    size_t n = co->n_nodes;
    int rc = 0;

    if (n > SPEC_MAX_NODES)
        return fail(err, errlen, p, "more than %d criteria and groups", SPEC_MAX_NODES);
    if (!co->nodes)
        return fail(err, errlen, p, "missing");
    memset(depth, 0, sizeof depth);
    memset(parents, 0, sizeof parents);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const Sdefed__CohortNode *nd = co->nodes[i];
        size_t old = path_push_index(p, i);
        if (!nd) {
            rc = fail(err, errlen, p, "missing node");
        } else if (i > 0 && parents[i] != 1) {
            rc = fail(err, errlen, p, "must be the child of exactly one group");
        } else if (nd->op == SDEFED__NODE_OP__NODE_CRITERION) {
            if (nd->n_children)
                rc = fail(err, errlen, p, "a criterion has no children");
            else {
                size_t o2 = path_push_key(p, "criterion");
                rc = validate_criterion_ex(nd->criterion, false, windowed, p, err, errlen);
                path_pop(p, o2);
                (*n_crit)++;
            }
        } else if (nd->op == SDEFED__NODE_OP__NODE_ALL || nd->op == SDEFED__NODE_OP__NODE_ANY ||
                   nd->op == SDEFED__NODE_OP__NODE_NOT) {
            if (nd->criterion)
                rc = fail(err, errlen, p, "a group has no criterion of its own");
            else if (nd->n_children == 0 || !nd->children)
                rc = fail(err, errlen, p, "empty group");
            else if (nd->op == SDEFED__NODE_OP__NODE_NOT && nd->n_children != 1)
                rc = fail(err, errlen, p, "not takes exactly one criterion or group");
            else if (depth[i] + 1 > SPEC_MAX_DEPTH)
                rc = fail(err, errlen, p, "groups nested more than %d deep", SPEC_MAX_DEPTH);
            for (size_t k = 0; rc == 0 && k < nd->n_children; k++) {
                uint32_t c = nd->children[k];
                if (c <= i || c >= n) {
                    rc = fail(err, errlen, p, "child %u out of order or range", (unsigned)c);
                } else {
                    if (parents[c] < 2)
                        parents[c]++;
                    depth[c] = (unsigned char)(depth[i] + 1);
                }
            }
        } else {
            rc = fail(err, errlen, p, "unknown node op %d", (int)nd->op);
        }
        path_pop(p, old);
    }
    if (rc == 0 && *n_crit > SPEC_MAX_CRITERIA)
        rc = fail(err, errlen, p, "more than %d criteria", SPEC_MAX_CRITERIA);
    return rc;
}

/* The cohort: expression (`all` or `nodes`, not both; either may be empty
 * when an index is given), index, age, sex, observation. *explicit_index /
 * *any_index say whether index-relative features can be used. */
static int validate_cohort(const Sdefed__Cohort *co, bool *explicit_index, bool *any_index,
                           struct path *p, char *err, size_t errlen)
{
    size_t old;
    int rc = 0;
    bool windowed = false;
    size_t n_crit = 0;

    *explicit_index = co->index != NULL;
    *any_index = co->index != NULL || co->n_all > 0;
    if (co->n_all > 0 && co->n_nodes > 0)
        return fail(err, errlen, p, "all and nodes are exclusive");
    if (co->n_all == 0 && co->n_nodes == 0 && !co->index) {
        old = path_push_key(p, "all");
        rc = fail(err, errlen, p, "must have at least one criterion");
        path_pop(p, old);
        return rc;
    }
    if (co->index) {
        old = path_push_key(p, "index");
        rc = validate_criterion_ex(co->index, true, NULL, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
    }
    if (co->index_event != SDEFED__INDEX_EVENT__INDEX_FIRST &&
        co->index_event != SDEFED__INDEX_EVENT__INDEX_ALL)
        return fail(err, errlen, p, "unknown index event value %d", (int)co->index_event);
    if (co->index_event == SDEFED__INDEX_EVENT__INDEX_ALL && !co->index)
        return fail(err, errlen, p, "index event \"all\" needs an index");

    if (co->n_all > 0) {
        old = path_push_key(p, "all");
        if (co->n_all > SPEC_MAX_CRITERIA)
            rc = fail(err, errlen, p, "more than %d criteria", SPEC_MAX_CRITERIA);
        else if (!co->all)
            rc = fail(err, errlen, p, "missing");
        for (size_t i = 0; rc == 0 && i < co->n_all; i++) {
            size_t o3 = path_push_index(p, i);
            rc = validate_criterion_ex(co->all[i], false, &windowed, p, err, errlen);
            path_pop(p, o3);
        }
        path_pop(p, old);
    } else if (co->n_nodes > 0) {
        old = path_push_key(p, "nodes");
        rc = validate_nodes(co, &n_crit, &windowed, p, err, errlen);
        path_pop(p, old);
    }
    if (rc)
        return rc;
    if (windowed && !co->index)
        return fail(err, errlen, p, "a criterion with a window needs cohort.index");

    if (co->age) {
        const Sdefed__AgeRange *a = co->age;
        old = path_push_key(p, "age");
        if (!a->has_min && !a->has_max)
            rc = fail(err, errlen, p, "needs min or max");
        else if ((a->has_min && (a->min < 0 || a->min > SPEC_MAX_AGE)) ||
                 (a->has_max && (a->max < 0 || a->max > SPEC_MAX_AGE)))
            rc = fail(err, errlen, p, "ages must be 0..%d", SPEC_MAX_AGE);
        else if (a->has_min && a->has_max && a->min > a->max)
            rc = fail(err, errlen, p, "min is greater than max");
        else if (!*any_index)
            rc = fail(err, errlen, p, "needs cohort.index (age is taken at the index date)");
        path_pop(p, old);
        if (rc)
            return rc;
    }
    old = path_push_key(p, "sex");
    if (co->n_sex > 3 || (co->n_sex > 0 && !co->sex))
        rc = fail(err, errlen, p, "at most male, female and unknown");
    for (size_t i = 0; rc == 0 && i < co->n_sex; i++) {
        size_t o2 = path_push_index(p, i);
        if (!name_of(sex_names, COUNT_OF(sex_names), (int)co->sex[i])[0])
            rc = fail(err, errlen, p, "unknown sex value %d", (int)co->sex[i]);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (co->sex[j] == co->sex[i])
                rc = fail(err, errlen, p, "duplicate");
        path_pop(p, o2);
    }
    path_pop(p, old);
    if (rc)
        return rc;
    if (co->observation) {
        const Sdefed__ObservationRequirement *o = co->observation;
        old = path_push_key(p, "observation");
        if (o->prior_days < 0 || o->prior_days > SPEC_MAX_DAYS || o->post_days < 0 ||
            o->post_days > SPEC_MAX_DAYS)
            rc = fail(err, errlen, p, "prior_days and post_days must be 0..%d", SPEC_MAX_DAYS);
        else if (!*any_index)
            rc = fail(err, errlen, p, "needs cohort.index");
        path_pop(p, old);
    }
    return rc;
}

/* The summary variable (kind summary only). */
static int validate_summary(const Sdefed__SummarySpec *sm, bool explicit_index, bool any_index,
                            struct path *p, char *err, size_t errlen)
{
    size_t old;
    int rc = 0;

    if (sm->clamp) {
        const Sdefed__ValueRange *c = sm->clamp;
        old = path_push_key(p, "clamp");
        if (!c->has_min || !c->has_max)
            rc = fail(err, errlen, p, "needs both min and max");
        else if (!isfinite(c->min) || !isfinite(c->max) || fabs(c->min) > SPEC_MAX_CLAMP ||
                 fabs(c->max) > SPEC_MAX_CLAMP)
            rc = fail(err, errlen, p, "min and max must be finite numbers within +-%g",
                      SPEC_MAX_CLAMP);
        else if (!(c->min < c->max))
            rc = fail(err, errlen, p, "min must be less than max");
        path_pop(p, old);
        if (rc)
            return rc;
    }

    if (sm->of == SDEFED__SUMMARY_OF__SUMMARY_MEASUREMENT) {
        old = path_push_key(p, "concepts");
        rc = sm->n_concepts == 0 ? fail(err, errlen, p, "must not be empty")
                                 : check_ids(sm->concepts, sm->n_concepts, SPEC_MAX_CONCEPTS,
                                             p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        old = path_push_key(p, "units");
        rc = check_ids(sm->units, sm->n_units, SPEC_MAX_UNITS, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        if (sm->window) {
            old = path_push_key(p, "window");
            rc = check_window(sm->window, p, err, errlen);
            if (rc == 0 && !explicit_index)
                rc = fail(err, errlen, p, "needs cohort.index");
            path_pop(p, old);
            if (rc)
                return rc;
        }
        if (sm->pick != SDEFED__SUMMARY_PICK__PICK_LATEST &&
            sm->pick != SDEFED__SUMMARY_PICK__PICK_FIRST) {
            old = path_push_key(p, "pick");
            rc = fail(err, errlen, p, "unknown pick value %d", (int)sm->pick);
            path_pop(p, old);
        }
        return rc;
    }
    if (sm->of == SDEFED__SUMMARY_OF__SUMMARY_AGE) {
        if (sm->n_concepts || sm->descendants || sm->n_units || sm->window ||
            sm->pick != SDEFED__SUMMARY_PICK__PICK_LATEST)
            return fail(err, errlen, p, "age takes no concepts, units, window or pick");
        if (!any_index)
            return fail(err, errlen, p, "age needs cohort.index");
        return 0;
    }
    old = path_push_key(p, "of");
    rc = fail(err, errlen, p, "unknown value %d (expected measurement or age)", (int)sm->of);
    path_pop(p, old);
    return rc;
}

/* ---- surveil kind (issue 6; docs/surveillance.md) ---- */

static const char *const period_names[] = {
    [SDEFED__SURVEIL_PERIOD__PERIOD_ALL] = "all",
    [SDEFED__SURVEIL_PERIOD__PERIOD_MONTH] = "month",
    [SDEFED__SURVEIL_PERIOD__PERIOD_QUARTER] = "quarter",
    [SDEFED__SURVEIL_PERIOD__PERIOD_YEAR] = "year",
};

/* "YYYY-MM-DD" (a real calendar date, years 1900..2200) -> months since
 * year 0 in *ym and a sortable yyyymmdd in *key. */
static bool surveil_date(const char *d, int64_t *ym, int64_t *key)
{
    static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (!d || strlen(d) != 10 || d[4] != '-' || d[7] != '-')
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && (d[i] < '0' || d[i] > '9'))
            return false;
    int y = atoi(d), m = atoi(d + 5), dd = atoi(d + 8);
    if (y < 1900 || y > 2200 || m < 1 || m > 12 || dd < 1 || dd > mdays[m - 1])
        return false;
    if (m == 2 && dd == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    *ym = (int64_t)y * 12 + (m - 1);
    *key = (int64_t)y * 10000 + m * 100 + dd;
    return true;
}

static int validate_surveil(const Sdefed__SurveilSpec *sv, struct path *p, char *err,
                            size_t errlen)
{
    size_t old;
    int rc = 0;

    old = path_push_key(p, "exposure");
    rc = sv->exposure ? validate_criterion_ex(sv->exposure, true, NULL, p, err, errlen)
                      : fail(err, errlen, p, "required for kind surveil");
    path_pop(p, old);
    if (rc)
        return rc;
    old = path_push_key(p, "outcome");
    if (!sv->outcome)
        rc = fail(err, errlen, p, "required for kind surveil");
    else if (sv->outcome->window)
        rc = fail(err, errlen, p, "no window here (use window_days)");
    else if (sv->outcome->first_only)
        rc = fail(err, errlen, p, "first_only is implied (the first outcome in the window)");
    else
        rc = validate_criterion_ex(sv->outcome, false, NULL, p, err, errlen);
    path_pop(p, old);
    if (rc)
        return rc;
    if (sv->comparator) {
        old = path_push_key(p, "comparator");
        rc = validate_criterion_ex(sv->comparator, true, NULL, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
    }
    old = path_push_key(p, "window_days");
    if (!sv->window)
        rc = fail(err, errlen, p, "required for kind surveil ([start, end] days after index)");
    else if (sv->window->start_days < 0 || sv->window->end_days > SPEC_MAX_DAYS)
        rc = fail(err, errlen, p, "days must be within 0..%d after the index", SPEC_MAX_DAYS);
    else if (sv->window->end_days < sv->window->start_days)
        rc = fail(err, errlen, p, "end (%d) is before start (%d)", (int)sv->window->end_days,
                  (int)sv->window->start_days);
    path_pop(p, old);
    if (rc)
        return rc;
    old = path_push_key(p, "period");
    if ((int)sv->period != 0 && !*name_of(period_names, COUNT_OF(period_names), (int)sv->period))
        rc = fail(err, errlen, p, "unknown period value %d", (int)sv->period);
    path_pop(p, old);
    if (rc)
        return rc;
    int64_t fym = 0, tym = 0, fk = 0, tk = 0;
    old = path_push_key(p, "from");
    if (!sv->from || !*sv->from)
        rc = fail(err, errlen, p, "required for kind surveil (YYYY-MM-DD)");
    else if (!surveil_date(sv->from, &fym, &fk))
        rc = fail(err, errlen, p, "not a date YYYY-MM-DD (years 1900..2200)");
    path_pop(p, old);
    if (rc)
        return rc;
    old = path_push_key(p, "to");
    if (!sv->to || !*sv->to)
        rc = fail(err, errlen, p, "required for kind surveil (YYYY-MM-DD)");
    else if (!surveil_date(sv->to, &tym, &tk))
        rc = fail(err, errlen, p, "not a date YYYY-MM-DD (years 1900..2200)");
    else if (tk < fk)
        rc = fail(err, errlen, p, "is before from");
    else if ((sv->period == SDEFED__SURVEIL_PERIOD__PERIOD_MONTH ? tym - fym + 1
              : sv->period == SDEFED__SURVEIL_PERIOD__PERIOD_QUARTER ? tym / 3 - fym / 3 + 1
                                                                     : 1) >
             SPEC_SURVEIL_MAX_PERIODS)
        rc = fail(err, errlen, p, "more than %d periods after from", SPEC_SURVEIL_MAX_PERIODS);
    path_pop(p, old);
    return rc;
}

/* issue 5: the `validate` object (docs/validate.md). */
static bool column_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char ch = s[n];
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
        if (n >= 63 || !(alpha || (n > 0 && ch >= '0' && ch <= '9')))
            return false;
    }
    return n > 0;
}

/* issue 5 items 3/4: compare_versions, bin_mode, histogram_bins,
 * subgroups_from (docs/validate.md). */
static int validate_validate_more(const Sdefed__ValidateSpec *v, struct path *p, char *err,
                                  size_t errlen)
{
    size_t old;
    int rc = 0;
    if (v->n_compare_versions) {
        old = path_push_key(p, "compare_versions");
        if (v->n_compare_versions != 2)
            rc = fail(err, errlen, p, "must be a list of exactly 2 model versions");
        else if (*str_or_empty(v->model_version))
            rc = fail(err, errlen, p, "not allowed together with model_version");
        else if (v->scorecard)
            rc = fail(err, errlen, p, "not available with a scorecard");
        for (size_t i = 0; rc == 0 && i < 2; i++) {
            const char *x = str_or_empty(v->compare_versions[i]);
            size_t o2 = path_push_index(p, i);
            rc = check_name(x, strlen(x), p, err, errlen);
            path_pop(p, o2);
        }
        if (rc == 0 && strcmp(v->compare_versions[0], v->compare_versions[1]) == 0)
            rc = fail(err, errlen, p, "the two versions must differ");
        path_pop(p, old);
        if (rc)
            return rc;
    }
    const char *bm = str_or_empty(v->bin_mode);
    if (*bm && strcmp(bm, "width") != 0 && strcmp(bm, "quantile") != 0) {
        old = path_push_key(p, "bin_mode");
        rc = fail(err, errlen, p, "must be \"width\" or \"quantile\"");
        path_pop(p, old);
        return rc;
    }
    if (v->histogram_bins && (v->histogram_bins < SPEC_MIN_HISTOGRAM_BINS ||
                              v->histogram_bins > SPEC_MAX_HISTOGRAM_BINS)) {
        old = path_push_key(p, "histogram_bins");
        rc = fail(err, errlen, p, "must be %d..%d", SPEC_MIN_HISTOGRAM_BINS,
                  SPEC_MAX_HISTOGRAM_BINS);
        path_pop(p, old);
        return rc;
    }
    const char *sf = str_or_empty(v->subgroups_from);
    if (*sf) {
        old = path_push_key(p, "subgroups_from");
        rc = check_name(sf, strlen(sf), p, err, errlen);
        bool any = false;
        for (size_t i = 0; i < v->n_by; i++)
            any = any || strcmp(str_or_empty(v->by[i]), "sex") == 0 ||
                  strcmp(str_or_empty(v->by[i]), "age_band") == 0;
        if (rc == 0 && !any)
            rc = fail(err, errlen, p, "needs \"sex\" or \"age_band\" in by");
        path_pop(p, old);
    }
    return rc;
}

static int validate_validate(const Sdefed__ValidateSpec *v, struct path *p, char *err,
                             size_t errlen)
{
    size_t old;
    int rc = 0;
    old = path_push_key(p, "thresholds");
    if (v->n_thresholds > SPEC_MAX_THRESHOLDS)
        rc = fail(err, errlen, p, "more than %d thresholds", SPEC_MAX_THRESHOLDS);
    for (size_t i = 0; rc == 0 && i < v->n_thresholds; i++) {
        size_t o2 = path_push_index(p, i);
        double x = v->thresholds[i];
        if (!(x >= 0.0 && x <= 1.0))
            rc = fail(err, errlen, p, "must be a number in [0, 1]");
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (v->thresholds[j] == x)
                rc = fail(err, errlen, p, "duplicate threshold");
        path_pop(p, o2);
    }
    path_pop(p, old);
    if (rc)
        return rc;
    old = path_push_key(p, "bins");
    if (v->bins > SPEC_MAX_BINS)
        rc = fail(err, errlen, p, "must be 1..%d", SPEC_MAX_BINS);
    path_pop(p, old);
    if (rc)
        return rc;
    old = path_push_key(p, "by");
    if (v->n_by > SPEC_MAX_STRATIFIERS)
        rc = fail(err, errlen, p, "more than %d columns", SPEC_MAX_STRATIFIERS);
    for (size_t i = 0; rc == 0 && i < v->n_by; i++) {
        size_t o2 = path_push_index(p, i);
        if (!v->by[i] || !column_name_ok(v->by[i]))
            rc = fail(err, errlen, p, "must be a column name of 1-63 of [A-Za-z0-9_]");
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (strcmp(v->by[j], v->by[i]) == 0)
                rc = fail(err, errlen, p, "duplicate column");
        path_pop(p, o2);
    }
    path_pop(p, old);
    if (rc)
        return rc;
    const char *mv = str_or_empty(v->model_version);
    if (*mv) {
        old = path_push_key(p, "model_version");
        rc = check_name(mv, strlen(mv), p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
    }
    if ((rc = validate_validate_more(v, p, err, errlen)))   /* issue 5 items 3/4 */
        return rc;
    /* issue 6 item 3: prediction dates in [from, to] (either may be absent) */
    int64_t vym = 0, vfk = 0, vtk = 0;
    if (*str_or_empty(v->from)) {
        old = path_push_key(p, "from");
        if (!surveil_date(v->from, &vym, &vfk))
            rc = fail(err, errlen, p, "not a date YYYY-MM-DD (years 1900..2200)");
        path_pop(p, old);
        if (rc)
            return rc;
    }
    if (*str_or_empty(v->to)) {
        old = path_push_key(p, "to");
        if (!surveil_date(v->to, &vym, &vtk))
            rc = fail(err, errlen, p, "not a date YYYY-MM-DD (years 1900..2200)");
        else if (vfk && vtk < vfk)
            rc = fail(err, errlen, p, "is before from");
        path_pop(p, old);
        if (rc)
            return rc;
    }
    if (v->outcome) {
        const Sdefed__ValidateOutcome *o = v->outcome;
        old = path_push_key(p, "outcome");
        const char *ds = str_or_empty(o->dataset);
        size_t o2 = path_push_key(p, "dataset");
        rc = *ds ? check_name(ds, strlen(ds), p, err, errlen)
                 : fail(err, errlen, p, "required (the OMOP dataset of the outcome)");
        path_pop(p, o2);
        if (rc == 0) {
            bool windowed = false;
            o2 = path_push_key(p, "criterion");
            if (!o->criterion)
                rc = fail(err, errlen, p, "required");
            else
                rc = validate_criterion_ex(o->criterion, false, &windowed, p, err, errlen);
            if (rc == 0 && (o->criterion->window || o->criterion->value ||
                            o->criterion->n_units || o->criterion->first_only))
                rc = fail(err, errlen, p, "only domain, concepts, descendants and exclude "
                                          "(the window is outcome.window_days)");
            path_pop(p, o2);
        }
        if (rc == 0) {
            o2 = path_push_key(p, "window_days");
            if (!o->window)
                rc = fail(err, errlen, p, "required");
            else if (o->window->start_days > o->window->end_days ||
                     o->window->start_days < 0 || o->window->end_days > SPEC_MAX_DAYS)
                rc = fail(err, errlen, p, "must be [start, end] with 0 <= start <= end <= %d",
                          SPEC_MAX_DAYS);
            path_pop(p, o2);
        }
        path_pop(p, old);
    }
    return rc;
}

/* issue 5 item 2: a model shipped as a scorecard (docs/validate.md). Called
 * with "validate" on the path; checks validate.scorecard, validate.cohort
 * and what a scorecard changes about the rest of the validate object. */
static bool coef_ok(double x)
{
    return isfinite(x) && fabs(x) <= SPEC_SCORECARD_MAX_COEF;
}

static int validate_scorecard_term(const Sdefed__ScorecardTerm *t, struct path *p, char *err,
                                   size_t errlen)
{
    size_t old;
    int rc = 0;
    if (!t)
        return fail(err, errlen, p, "missing term");
    if (!coef_ok(t->coef)) {
        old = path_push_key(p, "coef");
        rc = fail(err, errlen, p, "must be a finite number with magnitude at most %g",
                  SPEC_SCORECARD_MAX_COEF);
        path_pop(p, old);
        return rc;
    }
    bool crit = t->covariate == SDEFED__SCORECARD_COVARIATE__SCORECARD_INDICATOR ||
                t->covariate == SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT;
    bool meas = t->covariate == SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT;
    switch (t->covariate) {
    case SDEFED__SCORECARD_COVARIATE__SCORECARD_AGE:
        break;
    case SDEFED__SCORECARD_COVARIATE__SCORECARD_SEX:
        if (!name_of(sex_names, COUNT_OF(sex_names), (int)t->sex)[0]) {
            old = path_push_key(p, "sex");
            rc = fail(err, errlen, p, "must be \"male\", \"female\" or \"unknown\"");
            path_pop(p, old);
            return rc;
        }
        break;
    case SDEFED__SCORECARD_COVARIATE__SCORECARD_INDICATOR:
    case SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT:
        break;
    default:
        return fail(err, errlen, p, "needs exactly one of age, sex, indicator, measurement");
    }
    if (t->covariate != SDEFED__SCORECARD_COVARIATE__SCORECARD_SEX && t->sex)
        return fail(err, errlen, p, "sex is only for a sex term");
    if (!crit && (t->criterion || t->lookback_days || t->has_missing))
        return fail(err, errlen, p, "age and sex terms take no criterion, lookback_days or "
                                    "missing");
    if (!crit)
        return 0;
    const char *key = meas ? "measurement" : "indicator";
    old = path_push_key(p, key);
    rc = validate_criterion_ex(t->criterion, false, NULL, p, err, errlen);
    if (rc == 0 && (t->criterion->window || t->criterion->first_only))
        rc = fail(err, errlen, p, "no window or first_only (the window is lookback_days)");
    if (rc == 0 && meas && !has_values(t->criterion->domain))
        rc = fail(err, errlen, p, "domain must be measurement or observation (a value)");
    if (rc == 0 && meas && t->criterion->value)
        rc = fail(err, errlen, p, "no value range (the value is the covariate)");
    path_pop(p, old);
    if (rc)
        return rc;
    old = path_push_key(p, "lookback_days");
    if (t->lookback_days < 0 || t->lookback_days > SPEC_MAX_DAYS)
        rc = fail(err, errlen, p, "must be 0..%d", SPEC_MAX_DAYS);
    path_pop(p, old);
    if (rc)
        return rc;
    if (t->has_missing) {
        old = path_push_key(p, "missing");
        if (!meas)
            rc = fail(err, errlen, p, "only for a measurement term");
        else if (!coef_ok(t->missing))
            rc = fail(err, errlen, p, "must be a finite number with magnitude at most %g",
                      SPEC_SCORECARD_MAX_COEF);
        path_pop(p, old);
    }
    return rc;
}

static int validate_scorecard(const Sdefed__QuerySpec *s, struct path *p, char *err,
                              size_t errlen)
{
    const Sdefed__ValidateSpec *v = s->validate;
    const Sdefed__ValidateScorecard *sc = v->scorecard;
    size_t old;
    int rc = 0;
    if (!sc) {
        if (!v->cohort)
            return 0;
        old = path_push_key(p, "cohort");
        rc = fail(err, errlen, p, "only with a scorecard");
        path_pop(p, old);
        return rc;
    }
    old = path_push_key(p, "cohort");
    if (!v->cohort) {
        rc = fail(err, errlen, p, "required with a scorecard (the persons to score)");
    } else {
        bool explicit_index = false, any_index = false;
        rc = validate_cohort(v->cohort, &explicit_index, &any_index, p, err, errlen);
        if (rc == 0 && !any_index)
            rc = fail(err, errlen, p, "needs an index (each person is scored at their index "
                                      "date)");
    }
    path_pop(p, old);
    if (rc)
        return rc;
    /* from/to bound the index date (the prediction date): see
     * agent/scorecard.c; that is what lets a drift monitor watch a scorecard */
    const char *off = v->model_version && *v->model_version ? "model_version"
                      : v->n_compare_versions                 ? "compare_versions"
                                                              : NULL;
    if (off) {
        old = path_push_key(p, off);
        rc = fail(err, errlen, p, "not available with a scorecard");
        path_pop(p, old);
        return rc;
    }
    /* subgroups: sex and age_band from the dataset's own person table */
    old = path_push_key(p, "by");
    for (size_t i = 0; rc == 0 && i < v->n_by; i++) {
        const char *by = str_or_empty(v->by[i]);
        size_t o2 = path_push_index(p, i);
        if (strcmp(by, "sex") != 0 && strcmp(by, "age_band") != 0)
            rc = fail(err, errlen, p, "with a scorecard, only \"sex\" and \"age_band\" (from "
                                      "the OMOP person table)");
        path_pop(p, o2);
    }
    path_pop(p, old);
    if (rc)
        return rc;
    const char *sf = str_or_empty(v->subgroups_from);
    if ((v->n_by > 0 || *sf) && strcmp(sf, str_or_empty(s->dataset)) != 0) {
        old = path_push_key(p, "subgroups_from");
        rc = fail(err, errlen, p, "with a scorecard, must be the spec's dataset (or left out)");
        path_pop(p, old);
        return rc;
    }
    old = path_push_key(p, "outcome");
    if (!v->outcome)
        rc = fail(err, errlen, p, "required with a scorecard");
    else if (strcmp(str_or_empty(v->outcome->dataset), str_or_empty(s->dataset)) != 0) {
        size_t o2 = path_push_key(p, "dataset");
        rc = fail(err, errlen, p, "with a scorecard, must be the spec's dataset (or left out)");
        path_pop(p, o2);
    }
    path_pop(p, old);
    if (rc)
        return rc;

    old = path_push_key(p, "scorecard");
    size_t o2 = path_push_key(p, "link");
    if (sc->link != SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC &&
        sc->link != SDEFED__SCORECARD_LINK__SCORECARD_LINEAR)
        rc = fail(err, errlen, p, "must be \"logistic\" or \"linear\"");
    path_pop(p, o2);
    if (rc == 0 && !coef_ok(sc->intercept)) {
        o2 = path_push_key(p, "intercept");
        rc = fail(err, errlen, p, "must be a finite number with magnitude at most %g",
                  SPEC_SCORECARD_MAX_COEF);
        path_pop(p, o2);
    }
    if (rc == 0) {
        o2 = path_push_key(p, "terms");
        if (sc->n_terms == 0 || !sc->terms)
            rc = fail(err, errlen, p, "at least one term is required");
        else if (sc->n_terms > SPEC_SCORECARD_MAX_TERMS)
            rc = fail(err, errlen, p, "more than %d terms", SPEC_SCORECARD_MAX_TERMS);
        for (size_t i = 0; rc == 0 && i < sc->n_terms; i++) {
            size_t o3 = path_push_index(p, i);
            rc = validate_scorecard_term(sc->terms[i], p, err, errlen);
            path_pop(p, o3);
        }
        path_pop(p, o2);
    }
    path_pop(p, old);
    return rc;
}

int spec_validate(const Sdefed__QuerySpec *s, char *err, size_t errlen)
{
    struct path p = { "" };
    size_t old;
    int rc = 0;

    if (!s)
        return fail(err, errlen, NULL, "missing");

    old = path_push_key(&p, "kind");
    if (!*spec_kind_name(s->kind))
        rc = fail(err, errlen, &p, "unknown kind value %d", (int)s->kind);
    path_pop(&p, old);
    if (rc)
        return rc;
    /* summary takes everything count does, plus `summary` */
    bool count = s->kind == SDEFED__QUERY_KIND__KIND_COUNT ||
                 s->kind == SDEFED__QUERY_KIND__KIND_SUMMARY;
    bool explicit_index = false, any_index = false;
    bool surveil = s->kind == SDEFED__QUERY_KIND__KIND_SURVEIL;   /* issue 6 */
    bool validate = s->kind == SDEFED__QUERY_KIND__KIND_VALIDATE; /* issue 5 */

    const char *project = str_or_empty(s->project);
    old = path_push_key(&p, "project");
    rc = check_name(project, strlen(project), &p, err, errlen);
    path_pop(&p, old);
    if (rc)
        return rc;

    const char *dataset = str_or_empty(s->dataset);
    old = path_push_key(&p, "dataset");
    if (count || surveil || validate)
        rc = *dataset ? check_name(dataset, strlen(dataset), &p, err, errlen)
                      : fail(err, errlen, &p, "required for kind count");
    else if (*dataset)
        rc = fail(err, errlen, &p, "not allowed for kind catalog");
    path_pop(&p, old);
    if (rc)
        return rc;

    old = path_push_key(&p, "cohort");
    size_t n_all = s->cohort ? s->cohort->n_all : 0;
    if (surveil) {
        if (s->cohort)
            rc = fail(err, errlen, &p, "not allowed for kind surveil (use exposure)");
    } else if (!count) {
        if (n_all > 0 || (s->cohort && (s->cohort->n_nodes || s->cohort->index)))
            rc = fail(err, errlen, &p, "not allowed for kind catalog");
    } else if (!s->cohort) {
        rc = fail(err, errlen, &p, "required for kind %s", spec_kind_name(s->kind));
    } else {
        rc = validate_cohort(s->cohort, &explicit_index, &any_index, &p, err, errlen);
    }
    path_pop(&p, old);
    if (rc)
        return rc;

    old = path_push_key(&p, "summary");
    if (s->kind == SDEFED__QUERY_KIND__KIND_SUMMARY && !s->summary)
        rc = fail(err, errlen, &p, "required for kind summary");
    else if (s->kind != SDEFED__QUERY_KIND__KIND_SUMMARY && s->summary)
        rc = fail(err, errlen, &p, "only for kind summary");
    else if (s->summary)
        rc = validate_summary(s->summary, explicit_index, any_index, &p, err, errlen);
    path_pop(&p, old);
    if (rc)
        return rc;

    if (surveil || s->surveil) {   /* issue 6 */
        old = path_push_key(&p, "surveil");
        if (!surveil)
            rc = fail(err, errlen, &p, "only for kind surveil");
        else if (!s->surveil)
            rc = fail(err, errlen, &p, "required for kind surveil");
        path_pop(&p, old);
        if (rc == 0)
            rc = validate_surveil(s->surveil, &p, err, errlen);
        if (rc)
            return rc;
        any_index = true;   /* the exposure is the index */
    }

    if (validate || s->validate) {   /* issue 5 */
        old = path_push_key(&p, "validate");
        if (!validate)
            rc = fail(err, errlen, &p, "only for kind validate");
        else if (!s->validate)
            rc = fail(err, errlen, &p, "required for kind validate");
        else
            rc = validate_validate(s->validate, &p, err, errlen);
        if (rc == 0 && validate && s->validate)   /* issue 5 item 2 */
            rc = validate_scorecard(s, &p, err, errlen);
        path_pop(&p, old);
        if (rc)
            return rc;
    }

    old = path_push_key(&p, "by");
    if (s->n_by > 0 && !count && !surveil)
        rc = fail(err, errlen, &p, "not allowed for kind catalog");
    else if (s->n_by > SPEC_MAX_STRATIFIERS)
        rc = fail(err, errlen, &p, "more than %d stratifiers", SPEC_MAX_STRATIFIERS);
    else if (s->n_by > 0 && !s->by)
        rc = fail(err, errlen, &p, "missing");
    for (size_t i = 0; rc == 0 && i < s->n_by; i++) {
        size_t o2 = path_push_index(&p, i);
        if (!*spec_stratifier_name(s->by[i]))
            rc = fail(err, errlen, &p, "unknown stratifier value %d", (int)s->by[i]);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if (s->by[j] == s->by[i])
                rc = fail(err, errlen, &p, "duplicate stratifier \"%s\"",
                          spec_stratifier_name(s->by[i]));
        if (rc == 0 && surveil && s->by[i] != SDEFED__STRATIFIER__STRAT_SEX &&
            s->by[i] != SDEFED__STRATIFIER__STRAT_AGE_BAND)   /* issue 6 */
            rc = fail(err, errlen, &p, "kind surveil is stratified by sex and age_band only");
        if (rc == 0 && !any_index &&
            (s->by[i] == SDEFED__STRATIFIER__STRAT_AGE_BAND ||
             s->by[i] == SDEFED__STRATIFIER__STRAT_YEAR ||
             s->by[i] == SDEFED__STRATIFIER__STRAT_QUARTER))
            rc = fail(err, errlen, &p, "\"%s\" needs cohort.index",
                      spec_stratifier_name(s->by[i]));
        path_pop(&p, o2);
    }
    path_pop(&p, old);
    if (rc)
        return rc;

    if (s->age_band_width) {
        bool banded = false;
        for (size_t i = 0; i < s->n_by && s->by; i++)
            banded = banded || s->by[i] == SDEFED__STRATIFIER__STRAT_AGE_BAND;
        /* issue 5: validate.by "age_band" with validate.subgroups_from */
        for (size_t i = 0; s->validate && *str_or_empty(s->validate->subgroups_from) &&
                           i < s->validate->n_by; i++)
            banded = banded || strcmp(str_or_empty(s->validate->by[i]), "age_band") == 0;
        old = path_push_key(&p, "age_band_width");
        if (s->age_band_width > SPEC_MAX_AGE_BAND_WIDTH)
            rc = fail(err, errlen, &p, "must be 1..%d", SPEC_MAX_AGE_BAND_WIDTH);
        else if (!banded)
            rc = fail(err, errlen, &p, "needs \"age_band\" in by");
        path_pop(&p, old);
        if (rc)
            return rc;
    }

    if (s->margins) {
        old = path_push_key(&p, "margins");
        if (s->kind != SDEFED__QUERY_KIND__KIND_COUNT)
            rc = fail(err, errlen, &p, "only for kind count");
        else if (s->n_by == 0)
            rc = fail(err, errlen, &p, "needs at least one stratifier in by");
        path_pop(&p, old);
        if (rc)
            return rc;
    }

    if (s->policy) {
        old = path_push_key(&p, "policy");
        size_t o2 = path_push_key(&p, "min_cell");
        if (s->policy->min_cell < 0 || s->policy->min_cell > POLICY_MAX)
            rc = fail(err, errlen, &p, "must be 1..%d (0 = not set)", POLICY_MAX);
        path_pop(&p, o2);
        o2 = path_push_key(&p, "rounding");
        if (rc == 0 && (s->policy->rounding < 0 || s->policy->rounding > POLICY_MAX))
            rc = fail(err, errlen, &p, "must be 1..%d (0 = not set)", POLICY_MAX);
        path_pop(&p, o2);
        path_pop(&p, old);
    }
    return rc;
}

/* ---- JSON -> temporary QuerySpec ----------------------------------------------- */

/* The temporary spec being built. Strings point into the jansson tree;
 * arrays are ours and freed by build_free(). Criteria and expression
 * nodes live in fixed pools (SPEC_MAX_NODES + 1 criteria: the expression's
 * and the index) allocated on first use. */
struct crit_store {
    Sdefed__Criterion c;
    Sdefed__Window w;
    Sdefed__ValueRange v;
};

struct build {
    Sdefed__QuerySpec spec;
    Sdefed__Cohort cohort;
    struct crit_store *crit;
    size_t n_crit;                  /* used in the pool */
    size_t n_expr_crit;             /* criteria of the expression (limit SPEC_MAX_CRITERIA) */
    Sdefed__Criterion **critp;      /* the flat `all` form */
    Sdefed__CohortNode *nodes;
    Sdefed__CohortNode **nodep;
    Sdefed__Stratifier by[SPEC_MAX_STRATIFIERS];
    Sdefed__PolicyRequest policy;
    Sdefed__AgeRange age;
    Sdefed__Sex sex[3];
    Sdefed__ObservationRequirement obs;
    Sdefed__SummarySpec summary;
    Sdefed__Window summary_window;
    Sdefed__ValueRange summary_clamp;
    Sdefed__SurveilSpec surveil;    /* issue 6 */
    Sdefed__Window surveil_window;
    Sdefed__ValidateSpec validate;  /* issue 5 */
    Sdefed__ValidateOutcome vout;
    Sdefed__Window vout_window;
    char *vcompare[2];              /* issue 5: validate.compare_versions */
    Sdefed__ValidateScorecard scorecard;   /* issue 5 item 2 */
    Sdefed__ScorecardTerm *sc_terms;
    Sdefed__ScorecardTerm **sc_termp;
    struct crit_store *sc_crit;            /* one per term */
    size_t n_sc;
};

static void build_free(struct build *b)
{
    if (b->crit)
        for (size_t i = 0; i < b->n_crit; i++) {
            free(b->crit[i].c.concepts);
            free(b->crit[i].c.exclude);
            free(b->crit[i].c.units);
        }
    free(b->crit);
    free(b->critp);
    if (b->nodes)
        for (size_t i = 0; i < b->cohort.n_nodes; i++)
            free(b->nodes[i].children);
    free(b->nodes);
    free(b->nodep);
    free(b->summary.concepts);
    free(b->summary.units);
    free(b->validate.thresholds);   /* issue 5 */
    free(b->validate.by);
    for (size_t i = 0; b->sc_crit && i < b->n_sc; i++) {   /* issue 5 item 2 */
        free(b->sc_crit[i].c.concepts);
        free(b->sc_crit[i].c.exclude);
        free(b->sc_crit[i].c.units);
    }
    free(b->sc_crit);
    free(b->sc_terms);
    free(b->sc_termp);
}

/* Refuse any key of object o not in the NULL-terminated list known. */
static int check_keys(json_t *o, const char *const *known, struct path *p, char *err, size_t errlen)
{
    const char *key;
    json_t *v;

    json_object_foreach(o, key, v) {
        bool ok = false;
        for (size_t i = 0; known[i]; i++)
            if (strcmp(key, known[i]) == 0)
                ok = true;
        if (!ok) {
            size_t old = path_push_key(p, key);
            int rc = fail(err, errlen, p, "unknown field");
            path_pop(p, old);
            return rc;
        }
    }
    return 0;
}

/* A string field. *out is NULL when absent. */
static int get_string(json_t *o, const char *key, const char **out, size_t *len,
                      struct path *p, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    *len = 0;
    if (!v)
        return 0;
    if (!json_is_string(v)) {
        size_t old = path_push_key(p, key);
        int rc = fail(err, errlen, p, "must be a string, got %s", jtype(v));
        path_pop(p, old);
        return rc;
    }
    *out = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static int get_bool(json_t *o, const char *key, protobuf_c_boolean *out,
                    struct path *p, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        size_t old = path_push_key(p, key);
        int rc = fail(err, errlen, p, "must be true or false, got %s", jtype(v));
        path_pop(p, old);
        return rc;
    }
    *out = json_is_true(v);
    return 0;
}

/* An integer field in lo..hi; leaves *out alone when absent. */
static int get_int(json_t *o, const char *key, int64_t lo, int64_t hi, int64_t *out,
                   struct path *p, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    size_t old = path_push_key(p, key);
    int rc = 0;
    if (!json_is_integer(v))
        rc = fail(err, errlen, p, "must be an integer %lld..%lld, got %s",
                  (long long)lo, (long long)hi, jtype(v));
    else if (json_integer_value(v) < lo || json_integer_value(v) > hi)
        rc = fail(err, errlen, p, "must be an integer %lld..%lld",
                  (long long)lo, (long long)hi);
    else
        *out = json_integer_value(v);
    path_pop(p, old);
    return rc;
}

/* A project/dataset name. Absent leaves *out NULL. */
static int get_name(json_t *o, const char *key, const char **out,
                    struct path *p, char *err, size_t errlen)
{
    size_t len;
    int rc = get_string(o, key, out, &len, p, err, errlen);
    if (rc || !*out)
        return rc;
    size_t old = path_push_key(p, key);
    rc = check_name(*out, len, p, err, errlen);
    path_pop(p, old);
    return rc;
}

static int nomem(char *err, size_t errlen)
{
    set_err(err, errlen, "spec: out of memory");
    return SDF_ENOMEM;
}

/* An array of concept ids under key: absent leaves *out NULL; present
 * must be an array of at most max ids 1..CONCEPT_MAX, non-empty unless
 * allow_empty. Sorted and de-duplicated (canonical form). */
static int get_ids(json_t *o, const char *key, bool required, bool allow_empty, size_t max,
                   int64_t **out, size_t *n_out, struct path *p, char *err, size_t errlen)
{
    json_t *a = json_object_get(o, key);
    size_t old = path_push_key(p, key);
    int rc = 0;
    *out = NULL;
    *n_out = 0;
    if (!a) {
        rc = required ? fail(err, errlen, p, "required") : 0;
        path_pop(p, old);
        return rc;
    }
    if (!json_is_array(a))
        rc = fail(err, errlen, p, "must be an array of concept ids, got %s", jtype(a));
    else if (json_array_size(a) == 0 && !allow_empty)
        rc = fail(err, errlen, p, "must not be empty");
    else if (json_array_size(a) > max)
        rc = fail(err, errlen, p, "more than %zu concepts", max);
    size_t n = rc ? 0 : json_array_size(a);
    if (rc == 0 && n > 0) {
        *out = calloc(n, sizeof **out);
        if (!*out)
            rc = nomem(err, errlen);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_t *v = json_array_get(a, i);
        size_t o2 = path_push_index(p, i);
        if (!json_is_integer(v))
            rc = fail(err, errlen, p, "concept id must be an integer 1..%d, got %s",
                      CONCEPT_MAX, jtype(v));
        else if (json_integer_value(v) < 1 || json_integer_value(v) > CONCEPT_MAX)
            rc = fail(err, errlen, p, "concept id must be 1..%d", CONCEPT_MAX);
        else
            (*out)[i] = json_integer_value(v);
        path_pop(p, o2);
    }
    path_pop(p, old);
    if (rc == 0) {
        *n_out = n;
        sort_unique(*out, n_out);
    }
    return rc;
}

static int get_object(json_t *o, const char *key, json_t **out, struct path *p, char *err,
                      size_t errlen)
{
    *out = json_object_get(o, key);
    if (*out && !json_is_object(*out)) {
        size_t old = path_push_key(p, key);
        int rc = fail(err, errlen, p, "must be an object, got %s", jtype(*out));
        path_pop(p, old);
        return rc;
    }
    return 0;
}

/* {"start_days": a, "end_days": b}, both required. */
static int parse_window(json_t *w, Sdefed__Window *out, struct path *p, char *err,
                        size_t errlen)
{
    static const char *const keys[] = { "start_days", "end_days", NULL };
    int64_t a = INT64_MIN, e = INT64_MIN;
    int rc;
    if ((rc = check_keys(w, keys, p, err, errlen)) ||
        (rc = get_int(w, "start_days", -SPEC_MAX_DAYS, SPEC_MAX_DAYS, &a, p, err, errlen)) ||
        (rc = get_int(w, "end_days", -SPEC_MAX_DAYS, SPEC_MAX_DAYS, &e, p, err, errlen)))
        return rc;
    if (a == INT64_MIN || e == INT64_MIN)
        return fail(err, errlen, p, "needs start_days and end_days");
    sdefed__window__init(out);
    out->start_days = (int32_t)a;
    out->end_days = (int32_t)e;
    return 0;
}

static int get_number(json_t *o, const char *key, protobuf_c_boolean *has, double *out,
                      struct path *p, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        return 0;
    if (!json_is_number(v)) {
        size_t old = path_push_key(p, key);
        int rc = fail(err, errlen, p, "must be a number, got %s", jtype(v));
        path_pop(p, old);
        return rc;
    }
    *has = true;
    *out = json_number_value(v);
    return 0;
}

/* A criterion object; with is_index also its "event" (first|all). */
static int parse_criterion(json_t *c, struct crit_store *cs, bool is_index,
                           Sdefed__IndexEvent *event, struct path *p, char *err, size_t errlen)
{
    static const char *const keys[] = { "domain", "concepts", "descendants", "exclude",
                                        "exclude_descendants", "window", "value", "units",
                                        "first_only", NULL };
    static const char *const index_keys[] = { "domain", "concepts", "descendants", "exclude",
                                              "exclude_descendants", "value", "units",
                                              "event", NULL };
    Sdefed__Criterion *out = &cs->c;
    const char *domain;
    size_t len, old;
    json_t *v;
    int rc;

    if (!json_is_object(c))
        return fail(err, errlen, p, "must be an object, got %s", jtype(c));
    if ((rc = check_keys(c, is_index ? index_keys : keys, p, err, errlen)))
        return rc;

    if ((rc = get_string(c, "domain", &domain, &len, p, err, errlen)))
        return rc;
    old = path_push_key(p, "domain");
    if (!domain)
        rc = fail(err, errlen, p, "required");
    else if (strlen(domain) != len ||
             !(out->domain = value_of(domain_names, COUNT_OF(domain_names), domain)))
        rc = fail(err, errlen, p, "unknown domain %s (expected condition, drug, device, "
                  "procedure, measurement, observation, visit or death)", quote(domain, len).s);
    path_pop(p, old);
    if (rc)
        return rc;

    bool death = out->domain == SDEFED__DOMAIN__DOMAIN_DEATH;
    if ((rc = get_ids(c, "concepts", !death, death, SPEC_MAX_CONCEPTS, &out->concepts,
                      &out->n_concepts, p, err, errlen)) ||
        (rc = get_bool(c, "descendants", &out->descendants, p, err, errlen)) ||
        (rc = get_ids(c, "exclude", false, false, SPEC_MAX_CONCEPTS, &out->exclude,
                      &out->n_exclude, p, err, errlen)) ||
        (rc = get_bool(c, "exclude_descendants", &out->exclude_descendants, p, err, errlen)) ||
        (rc = get_ids(c, "units", false, false, SPEC_MAX_UNITS, &out->units, &out->n_units,
                      p, err, errlen)) ||
        (rc = get_bool(c, "first_only", &out->first_only, p, err, errlen)))
        return rc;
    if ((rc = get_object(c, "window", &v, p, err, errlen)))
        return rc;
    if (v) {
        old = path_push_key(p, "window");
        rc = parse_window(v, &cs->w, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        out->window = &cs->w;
    }
    if ((rc = get_object(c, "value", &v, p, err, errlen)))
        return rc;
    if (v) {
        static const char *const vkeys[] = { "min", "max", NULL };
        old = path_push_key(p, "value");
        sdefed__value_range__init(&cs->v);
        if (!(rc = check_keys(v, vkeys, p, err, errlen)) &&
            !(rc = get_number(v, "min", &cs->v.has_min, &cs->v.min, p, err, errlen)))
            rc = get_number(v, "max", &cs->v.has_max, &cs->v.max, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        out->value = &cs->v;
    }
    if (is_index && (v = json_object_get(c, "event"))) {
        old = path_push_key(p, "event");
        if (json_is_string(v) && strcmp(json_string_value(v), "first") == 0)
            *event = SDEFED__INDEX_EVENT__INDEX_FIRST;
        else if (json_is_string(v) && strcmp(json_string_value(v), "all") == 0)
            *event = SDEFED__INDEX_EVENT__INDEX_ALL;
        else
            rc = fail(err, errlen, p, "must be \"first\" or \"all\"");
        path_pop(p, old);
    }
    return rc;
}

static struct crit_store *crit_new(struct build *b, char *err, size_t errlen, int *rc)
{
    if (!b->crit) {
        b->crit = calloc(SPEC_MAX_NODES + 1, sizeof b->crit[0]);
        if (!b->crit) {
            *rc = nomem(err, errlen);
            return NULL;
        }
    }
    if (b->n_crit >= SPEC_MAX_NODES + 1) {
        *rc = fail(err, errlen, NULL, "more than %d criteria", SPEC_MAX_CRITERIA);
        return NULL;
    }
    struct crit_store *cs = &b->crit[b->n_crit++];
    sdefed__criterion__init(&cs->c);
    return cs;
}

static int parse_node(json_t *v, struct build *b, unsigned depth, uint32_t *idx,
                      struct path *p, char *err, size_t errlen);

/* A node object is a group when it has all, any or not; else a criterion
 * (whose own checks then name what is wrong with it). */
static bool is_group(json_t *v)
{
    return json_is_object(v) && (json_object_get(v, "all") || json_object_get(v, "any") ||
                                 json_object_get(v, "not"));
}

/* A group: `list` is the array (all/any) or the single node (not). The
 * group's node is reserved before its children, so children always come
 * after their parent (what spec_validate checks). */
static int parse_group(json_t *list, Sdefed__NodeOp op, struct build *b, unsigned depth,
                       uint32_t *idx, struct path *p, char *err, size_t errlen)
{
    if (depth > SPEC_MAX_DEPTH)
        return fail(err, errlen, p, "groups nested more than %d deep", SPEC_MAX_DEPTH);
    if (op == SDEFED__NODE_OP__NODE_NOT ? !json_is_object(list) : !json_is_array(list))
        return fail(err, errlen, p, "must be %s, got %s",
                    op == SDEFED__NODE_OP__NODE_NOT ? "one criterion or group (an object)"
                                                    : "an array of criteria",
                    jtype(list));
    size_t n = op == SDEFED__NODE_OP__NODE_NOT ? 1 : json_array_size(list);
    if (n == 0)
        return fail(err, errlen, p, "must not be empty");
    if (n > SPEC_MAX_NODES || b->cohort.n_nodes >= SPEC_MAX_NODES)
        return fail(err, errlen, p, "more than %d criteria and groups", SPEC_MAX_NODES);
    uint32_t me = (uint32_t)b->cohort.n_nodes++;
    Sdefed__CohortNode *nd = &b->nodes[me];
    sdefed__cohort_node__init(nd);
    nd->op = op;
    nd->children = calloc(n, sizeof nd->children[0]);
    if (!nd->children)
        return nomem(err, errlen);
    *idx = me;
    for (size_t i = 0; i < n; i++) {
        size_t old = op == SDEFED__NODE_OP__NODE_NOT ? strlen(p->s) : path_push_index(p, i);
        uint32_t child = 0;
        int rc = parse_node(op == SDEFED__NODE_OP__NODE_NOT ? list : json_array_get(list, i),
                            b, depth + 1, &child, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        b->nodes[me].children[b->nodes[me].n_children++] = child;
    }
    return 0;
}

static int parse_node(json_t *v, struct build *b, unsigned depth, uint32_t *idx,
                      struct path *p, char *err, size_t errlen)
{
    static const char *const group_keys[] = { "all", "any", "not", NULL };
    int rc = 0;
    if (!json_is_object(v))
        return fail(err, errlen, p, "must be a criterion or a group (an object), got %s",
                    jtype(v));
    if (!is_group(v)) {
        if (b->cohort.n_nodes >= SPEC_MAX_NODES)
            return fail(err, errlen, p, "more than %d criteria and groups", SPEC_MAX_NODES);
        if (++b->n_expr_crit > SPEC_MAX_CRITERIA)
            return fail(err, errlen, p, "more than %d criteria", SPEC_MAX_CRITERIA);
        struct crit_store *cs = crit_new(b, err, errlen, &rc);
        if (!cs)
            return rc;
        if ((rc = parse_criterion(v, cs, false, NULL, p, err, errlen)))
            return rc;
        uint32_t me = (uint32_t)b->cohort.n_nodes++;
        sdefed__cohort_node__init(&b->nodes[me]);
        b->nodes[me].op = SDEFED__NODE_OP__NODE_CRITERION;
        b->nodes[me].criterion = &cs->c;
        *idx = me;
        return 0;
    }
    if ((rc = check_keys(v, group_keys, p, err, errlen)))
        return rc;
    if (json_object_size(v) != 1)
        return fail(err, errlen, p, "a group has exactly one of all, any, not "
                                    "(a criterion has a domain)");
    const char *key = json_object_iter_key(json_object_iter(v));
    Sdefed__NodeOp op = strcmp(key, "all") == 0   ? SDEFED__NODE_OP__NODE_ALL
                        : strcmp(key, "any") == 0 ? SDEFED__NODE_OP__NODE_ANY
                                                  : SDEFED__NODE_OP__NODE_NOT;
    size_t old = path_push_key(p, key);
    rc = parse_group(json_object_get(v, key), op, b, depth, idx, p, err, errlen);
    path_pop(p, old);
    return rc;
}

/* True when no element of array a is a group (has all, any or not). */
static bool all_criteria(json_t *a)
{
    for (size_t i = 0; i < json_array_size(a); i++)
        if (is_group(json_array_get(a, i)))
            return false;
    return true;
}

static int parse_flat_all(json_t *all, struct build *b, struct path *p, char *err,
                          size_t errlen)
{
    int rc = 0;
    size_t n = json_array_size(all);
    if (n == 0)
        return fail(err, errlen, p, "must have at least one criterion");
    if (n > SPEC_MAX_CRITERIA)
        return fail(err, errlen, p, "more than %d criteria", SPEC_MAX_CRITERIA);
    b->critp = calloc(n, sizeof b->critp[0]);
    if (!b->critp)
        return nomem(err, errlen);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t o2 = path_push_index(p, i);
        struct crit_store *cs = crit_new(b, err, errlen, &rc);
        if (cs) {
            b->critp[i] = &cs->c;
            b->cohort.n_all = i + 1;
            rc = parse_criterion(json_array_get(all, i), cs, false, NULL, p, err, errlen);
        }
        path_pop(p, o2);
    }
    b->cohort.all = b->critp;
    return rc;
}

static int parse_cohort(json_t *cohort, struct build *b, struct path *p, char *err, size_t errlen)
{
    static const char *const keys[] = { "index", "all", "any", "not", "age", "sex",
                                        "observation", NULL };
    json_t *v;
    size_t old;
    int rc;

    if (!json_is_object(cohort))
        return fail(err, errlen, p, "must be an object, got %s", jtype(cohort));
    if ((rc = check_keys(cohort, keys, p, err, errlen)))
        return rc;

    json_t *index = json_object_get(cohort, "index");
    if (index) {
        old = path_push_key(p, "index");
        struct crit_store *cs = crit_new(b, err, errlen, &rc);
        if (cs)
            rc = parse_criterion(index, cs, true, &b->cohort.index_event, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        b->cohort.index = &cs->c;
    }

    const char *ekey = NULL;
    int n_expr = 0;
    static const char *const ekeys[] = { "all", "any", "not" };
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(cohort, ekeys[i])) {
            ekey = ekeys[i];
            n_expr++;
        }
    if (n_expr > 1)
        return fail(err, errlen, p, "at most one of all, any, not (nest groups inside it)");
    if (!ekey) {
        if (index)
            goto rest;
        old = path_push_key(p, "all");
        rc = fail(err, errlen, p, "required (or an index)");
        path_pop(p, old);
        return rc;
    }
    json_t *expr = json_object_get(cohort, ekey);
    old = path_push_key(p, ekey);
    if (strcmp(ekey, "all") == 0 && json_is_array(expr) && all_criteria(expr)) {
        rc = parse_flat_all(expr, b, p, err, errlen);
    } else {
        b->nodes = calloc(SPEC_MAX_NODES, sizeof b->nodes[0]);
        b->nodep = calloc(SPEC_MAX_NODES, sizeof b->nodep[0]);
        if (!b->nodes || !b->nodep) {
            rc = nomem(err, errlen);
        } else {
            uint32_t root = 0;
            Sdefed__NodeOp op = strcmp(ekey, "all") == 0   ? SDEFED__NODE_OP__NODE_ALL
                                : strcmp(ekey, "any") == 0 ? SDEFED__NODE_OP__NODE_ANY
                                                           : SDEFED__NODE_OP__NODE_NOT;
            rc = parse_group(expr, op, b, 1, &root, p, err, errlen);
            for (size_t i = 0; i < b->cohort.n_nodes; i++)
                b->nodep[i] = &b->nodes[i];
            b->cohort.nodes = b->nodep;
        }
    }
    path_pop(p, old);
    if (rc)
        return rc;

rest:
    if ((rc = get_object(cohort, "age", &v, p, err, errlen)))
        return rc;
    if (v) {
        static const char *const akeys[] = { "min", "max", NULL };
        int64_t lo = -1, hi = -1;
        old = path_push_key(p, "age");
        if (!(rc = check_keys(v, akeys, p, err, errlen)) &&
            !(rc = get_int(v, "min", 0, SPEC_MAX_AGE, &lo, p, err, errlen)))
            rc = get_int(v, "max", 0, SPEC_MAX_AGE, &hi, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        sdefed__age_range__init(&b->age);
        b->age.has_min = lo >= 0;
        b->age.min = lo >= 0 ? (int32_t)lo : 0;
        b->age.has_max = hi >= 0;
        b->age.max = hi >= 0 ? (int32_t)hi : 0;
        b->cohort.age = &b->age;
    }
    if ((v = json_object_get(cohort, "sex"))) {
        old = path_push_key(p, "sex");
        if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > 3)
            rc = fail(err, errlen, p, "must be a list of 1..3 of male, female, unknown");
        for (size_t i = 0; rc == 0 && i < json_array_size(v); i++) {
            json_t *e = json_array_get(v, i);
            size_t o2 = path_push_index(p, i);
            int sx = json_is_string(e) && strlen(json_string_value(e)) == json_string_length(e)
                         ? value_of(sex_names, COUNT_OF(sex_names), json_string_value(e)) : 0;
            if (!sx)
                rc = fail(err, errlen, p, "must be \"male\", \"female\" or \"unknown\"");
            for (size_t j = 0; rc == 0 && j < b->cohort.n_sex; j++)
                if ((int)b->sex[j] == sx)
                    rc = fail(err, errlen, p, "duplicate");
            if (rc == 0)
                b->sex[b->cohort.n_sex++] = (Sdefed__Sex)sx;
            path_pop(p, o2);
        }
        path_pop(p, old);
        if (rc)
            return rc;
        /* canonical: ascending */
        for (size_t i = 1; i < b->cohort.n_sex; i++)
            for (size_t j = i; j > 0 && b->sex[j - 1] > b->sex[j]; j--) {
                Sdefed__Sex t = b->sex[j];
                b->sex[j] = b->sex[j - 1];
                b->sex[j - 1] = t;
            }
        b->cohort.sex = b->sex;
    }
    if ((rc = get_object(cohort, "observation", &v, p, err, errlen)))
        return rc;
    if (v) {
        static const char *const okeys[] = { "prior_days", "post_days", NULL };
        int64_t pr = 0, po = 0;
        old = path_push_key(p, "observation");
        if (!(rc = check_keys(v, okeys, p, err, errlen)) &&
            !(rc = get_int(v, "prior_days", 0, SPEC_MAX_DAYS, &pr, p, err, errlen)))
            rc = get_int(v, "post_days", 0, SPEC_MAX_DAYS, &po, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        sdefed__observation_requirement__init(&b->obs);
        b->obs.prior_days = (int32_t)pr;
        b->obs.post_days = (int32_t)po;
        b->cohort.observation = &b->obs;
    }
    return 0;
}

static int parse_summary(json_t *sm, struct build *b, struct path *p, char *err, size_t errlen)
{
    static const char *const keys[] = { "of", "concepts", "descendants", "units", "window",
                                        "pick", "clamp", NULL };
    Sdefed__SummarySpec *o = &b->summary;
    const char *s;
    size_t len, old;
    json_t *v;
    int rc;

    if (!json_is_object(sm))
        return fail(err, errlen, p, "must be an object, got %s", jtype(sm));
    if ((rc = check_keys(sm, keys, p, err, errlen)) ||
        (rc = get_string(sm, "of", &s, &len, p, err, errlen)))
        return rc;
    old = path_push_key(p, "of");
    if (!s)
        rc = fail(err, errlen, p, "required (measurement or age)");
    else if (strlen(s) != len ||
             !(o->of = value_of(summary_of_names, COUNT_OF(summary_of_names), s)))
        rc = fail(err, errlen, p, "unknown %s (expected measurement or age)", quote(s, len).s);
    path_pop(p, old);
    if (rc)
        return rc;
    if ((rc = get_ids(sm, "concepts", false, false, SPEC_MAX_CONCEPTS, &o->concepts,
                      &o->n_concepts, p, err, errlen)) ||
        (rc = get_bool(sm, "descendants", &o->descendants, p, err, errlen)) ||
        (rc = get_ids(sm, "units", false, false, SPEC_MAX_UNITS, &o->units, &o->n_units, p,
                      err, errlen)) ||
        (rc = get_object(sm, "window", &v, p, err, errlen)))
        return rc;
    if (v) {
        old = path_push_key(p, "window");
        rc = parse_window(v, &b->summary_window, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        o->window = &b->summary_window;
    }
    if ((rc = get_object(sm, "clamp", &v, p, err, errlen)))
        return rc;
    if (v) {
        static const char *const ckeys[] = { "min", "max", NULL };
        Sdefed__ValueRange *cr = &b->summary_clamp;
        old = path_push_key(p, "clamp");
        if (!(rc = check_keys(v, ckeys, p, err, errlen)) &&
            !(rc = get_number(v, "min", &cr->has_min, &cr->min, p, err, errlen)))
            rc = get_number(v, "max", &cr->has_max, &cr->max, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        o->clamp = cr;
    }
    if ((rc = get_string(sm, "pick", &s, &len, p, err, errlen)))
        return rc;
    if (s) {
        old = path_push_key(p, "pick");
        if (strcmp(s, "latest") == 0 && strlen(s) == len)
            o->pick = SDEFED__SUMMARY_PICK__PICK_LATEST;
        else if (strcmp(s, "first") == 0 && strlen(s) == len)
            o->pick = SDEFED__SUMMARY_PICK__PICK_FIRST;
        else
            rc = fail(err, errlen, p, "must be \"latest\" or \"first\"");
        path_pop(p, old);
    }
    if (rc == 0)
        b->spec.summary = o;
    return rc;
}

static int parse_by(json_t *by, struct build *b, struct path *p, char *err, size_t errlen)
{
    int rc = 0;

    if (!json_is_array(by))
        return fail(err, errlen, p, "must be an array of stratifier names, got %s", jtype(by));
    if (json_array_size(by) > SPEC_MAX_STRATIFIERS)
        return fail(err, errlen, p, "more than %d stratifiers", SPEC_MAX_STRATIFIERS);
    for (size_t i = 0; rc == 0 && i < json_array_size(by); i++) {
        json_t *v = json_array_get(by, i);
        size_t old = path_push_index(p, i);
        int s = 0;
        if (!json_is_string(v))
            rc = fail(err, errlen, p, "must be a string, got %s", jtype(v));
        else if (strlen(json_string_value(v)) != json_string_length(v) ||
                 !(s = value_of(strat_names, COUNT_OF(strat_names), json_string_value(v))))
            rc = fail(err, errlen, p, "unknown stratifier %s (expected sex, age_band, year, "
                      "quarter, race, ethnicity or care_site)",
                      quote(json_string_value(v), json_string_length(v)).s);
        for (size_t j = 0; rc == 0 && j < i; j++)
            if ((int)b->by[j] == s)
                rc = fail(err, errlen, p, "duplicate stratifier \"%s\"", strat_names[s]);
        path_pop(p, old);
        if (rc == 0)
            b->by[b->spec.n_by++] = (Sdefed__Stratifier)s;
    }
    return rc;
}

static int parse_policy(json_t *pol, struct build *b, struct path *p, char *err, size_t errlen)
{
    static const char *const keys[] = { "min_cell", "rounding", "zero_is_disclosive", NULL };
    int rc;

    if (!json_is_object(pol))
        return fail(err, errlen, p, "must be an object, got %s", jtype(pol));
    if ((rc = check_keys(pol, keys, p, err, errlen)) ||
        (rc = get_int(pol, "min_cell", 1, POLICY_MAX, &b->policy.min_cell, p, err, errlen)) ||
        (rc = get_int(pol, "rounding", 1, POLICY_MAX, &b->policy.rounding, p, err, errlen)) ||
        (rc = get_bool(pol, "zero_is_disclosive", &b->policy.zero_is_disclosive, p, err, errlen)))
        return rc;
    /* Canonical form: a policy that asks for nothing is no policy. */
    if (b->policy.min_cell || b->policy.rounding || b->policy.zero_is_disclosive)
        b->spec.policy = &b->policy;
    return 0;
}

/* The surveil keys at the top level of a spec (issue 6). */
static const char *const surveil_keys[] = { "exposure", "outcome", "window_days", "period",
                                            "from", "to", "every", "comparator", NULL };

static int parse_surveil_crit(json_t *root, const char *key, bool is_index, struct build *b,
                              Sdefed__Criterion **out, struct path *p, char *err, size_t errlen)
{
    json_t *v = json_object_get(root, key);
    int rc = 0;
    if (!v)
        return 0;
    size_t old = path_push_key(p, key);
    struct crit_store *cs = crit_new(b, err, errlen, &rc);
    if (cs)
        rc = parse_criterion(v, cs, false, NULL, p, err, errlen);
    path_pop(p, old);
    (void)is_index;
    if (rc == 0)
        *out = &cs->c;
    return rc;
}

static int parse_surveil(json_t *root, struct build *b, struct path *p, char *err,
                         size_t errlen)
{
    Sdefed__SurveilSpec *o = &b->surveil;
    const char *s;
    size_t len, old;
    int rc;

    if ((rc = parse_surveil_crit(root, "exposure", true, b, &o->exposure, p, err, errlen)) ||
        (rc = parse_surveil_crit(root, "outcome", false, b, &o->outcome, p, err, errlen)) ||
        (rc = parse_surveil_crit(root, "comparator", true, b, &o->comparator, p, err, errlen)))
        return rc;
    json_t *w = json_object_get(root, "window_days");
    if (w) {
        old = path_push_key(p, "window_days");
        json_t *a = json_array_get(w, 0), *e = json_array_get(w, 1);
        if (!json_is_array(w) || json_array_size(w) != 2 || !json_is_integer(a) ||
            !json_is_integer(e))
            rc = fail(err, errlen, p, "must be [start, end]: two whole numbers of days");
        else if (json_integer_value(a) < 0 || json_integer_value(e) > SPEC_MAX_DAYS ||
                 json_integer_value(a) > SPEC_MAX_DAYS || json_integer_value(e) < 0)
            rc = fail(err, errlen, p, "days must be within 0..%d after the index",
                      SPEC_MAX_DAYS);
        path_pop(p, old);
        if (rc)
            return rc;
        sdefed__window__init(&b->surveil_window);
        b->surveil_window.start_days = (int32_t)json_integer_value(a);
        b->surveil_window.end_days = (int32_t)json_integer_value(e);
        o->window = &b->surveil_window;
    }
    if ((rc = get_string(root, "period", &s, &len, p, err, errlen)))
        return rc;
    if (s) {
        old = path_push_key(p, "period");
        int v = strlen(s) == len ? value_of(period_names, COUNT_OF(period_names), s) : 0;
        if (v == 0 && strcmp(s, "all") != 0)
            rc = fail(err, errlen, p, "unknown period %s (expected month, quarter, year or all)",
                      quote(s, len).s);
        path_pop(p, old);
        if (rc)
            return rc;
        o->period = (Sdefed__SurveilPeriod)v;
    }
    if ((rc = get_string(root, "from", &s, &len, p, err, errlen)))
        return rc;
    o->from = (char *)s;
    if ((rc = get_string(root, "to", &s, &len, p, err, errlen)))
        return rc;
    o->to = (char *)s;
    if ((rc = get_bool(root, "every", &o->every, p, err, errlen)))
        return rc;
    b->spec.surveil = o;
    return 0;
}

/* issue 5 item 2: "scorecard": {"link": "logistic"|"linear", "intercept": x,
 * "terms": [{"coef": c, "age": true | "sex": "female" | "indicator": {criterion}
 * | "measurement": {criterion}, "lookback_days": d, "missing": m}, ...]} */
static int parse_scorecard_term(json_t *t, struct build *b, size_t i, struct path *p, char *err,
                                size_t errlen)
{
    static const char *const keys[] = { "coef", "age", "sex", "indicator", "measurement",
                                        "lookback_days", "missing", NULL };
    static const char *const cov[] = { "age", "sex", "indicator", "measurement" };
    Sdefed__ScorecardTerm *o = &b->sc_terms[i];
    protobuf_c_boolean has = false;
    size_t old;
    int rc;
    sdefed__scorecard_term__init(o);
    if (!json_is_object(t))
        return fail(err, errlen, p, "must be an object, got %s", jtype(t));
    if ((rc = check_keys(t, keys, p, err, errlen)) ||
        (rc = get_number(t, "coef", &has, &o->coef, p, err, errlen)))
        return rc;
    if (!has) {
        old = path_push_key(p, "coef");
        rc = fail(err, errlen, p, "required");
        path_pop(p, old);
        return rc;
    }
    const char *which = NULL;
    for (size_t k = 0; k < COUNT_OF(cov); k++)
        if (json_object_get(t, cov[k])) {
            if (which)
                return fail(err, errlen, p, "exactly one of age, sex, indicator, measurement");
            which = cov[k];
        }
    if (!which)
        return fail(err, errlen, p, "needs one of age, sex, indicator, measurement");
    json_t *v = json_object_get(t, which);
    old = path_push_key(p, which);
    if (strcmp(which, "age") == 0) {
        o->covariate = SDEFED__SCORECARD_COVARIATE__SCORECARD_AGE;
        if (!json_is_true(v))
            rc = fail(err, errlen, p, "must be true");
    } else if (strcmp(which, "sex") == 0) {
        o->covariate = SDEFED__SCORECARD_COVARIATE__SCORECARD_SEX;
        int sx = json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v)
                     ? value_of(sex_names, COUNT_OF(sex_names), json_string_value(v)) : 0;
        if (!sx)
            rc = fail(err, errlen, p, "must be \"male\", \"female\" or \"unknown\"");
        o->sex = (Sdefed__Sex)sx;
    } else {
        o->covariate = strcmp(which, "indicator") == 0
                           ? SDEFED__SCORECARD_COVARIATE__SCORECARD_INDICATOR
                           : SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT;
        sdefed__criterion__init(&b->sc_crit[i].c);
        rc = parse_criterion(v, &b->sc_crit[i], false, NULL, p, err, errlen);
        if (rc == 0)
            o->criterion = &b->sc_crit[i].c;
    }
    path_pop(p, old);
    if (rc)
        return rc;
    int64_t lb = 0;
    if ((rc = get_int(t, "lookback_days", 0, SPEC_MAX_DAYS, &lb, p, err, errlen)) ||
        (rc = get_number(t, "missing", &o->has_missing, &o->missing, p, err, errlen)))
        return rc;
    o->lookback_days = (int32_t)lb;
    if (o->criterion && !json_object_get(t, "lookback_days")) {
        old = path_push_key(p, "lookback_days");
        rc = fail(err, errlen, p, "required for %s (days before the index date)", which);
        path_pop(p, old);
    }
    return rc;
}

static int parse_scorecard(json_t *v, struct build *b, struct path *p, char *err, size_t errlen)
{
    static const char *const keys[] = { "link", "intercept", "terms", NULL };
    Sdefed__ValidateScorecard *o = &b->scorecard;
    const char *s;
    size_t len, old;
    protobuf_c_boolean has = false;
    int rc;
    sdefed__validate_scorecard__init(o);
    if (!json_is_object(v))
        return fail(err, errlen, p, "must be an object, got %s", jtype(v));
    if ((rc = check_keys(v, keys, p, err, errlen)) ||
        (rc = get_string(v, "link", &s, &len, p, err, errlen)))
        return rc;
    old = path_push_key(p, "link");
    if (s && strlen(s) == len && strcmp(s, "logistic") == 0)
        o->link = SDEFED__SCORECARD_LINK__SCORECARD_LOGISTIC;
    else if (s && strlen(s) == len && strcmp(s, "linear") == 0)
        o->link = SDEFED__SCORECARD_LINK__SCORECARD_LINEAR;
    else
        rc = s ? fail(err, errlen, p, "unknown link %s (expected logistic or linear)",
                      quote(s, len).s)
               : fail(err, errlen, p, "required (logistic or linear)");
    path_pop(p, old);
    if (rc || (rc = get_number(v, "intercept", &has, &o->intercept, p, err, errlen)))
        return rc;
    json_t *a = json_object_get(v, "terms");
    old = path_push_key(p, "terms");
    if (!a || !json_is_array(a) || json_array_size(a) == 0)
        rc = fail(err, errlen, p, "required: a list of 1..%d terms", SPEC_SCORECARD_MAX_TERMS);
    else if (json_array_size(a) > SPEC_SCORECARD_MAX_TERMS)
        rc = fail(err, errlen, p, "more than %d terms", SPEC_SCORECARD_MAX_TERMS);
    size_t n = rc ? 0 : json_array_size(a);
    if (n) {
        b->sc_terms = calloc(n, sizeof *b->sc_terms);
        b->sc_termp = calloc(n, sizeof *b->sc_termp);
        b->sc_crit = calloc(n, sizeof *b->sc_crit);
        if (!b->sc_terms || !b->sc_termp || !b->sc_crit)
            rc = nomem(err, errlen);
        b->n_sc = rc ? 0 : n;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t o2 = path_push_index(p, i);
        rc = parse_scorecard_term(json_array_get(a, i), b, i, p, err, errlen);
        b->sc_termp[i] = &b->sc_terms[i];
        path_pop(p, o2);
    }
    path_pop(p, old);
    if (rc)
        return rc;
    o->terms = b->sc_termp;
    o->n_terms = n;
    return 0;
}

/* issue 5 items 3/4: "compare_versions": ["a", "b"], "bin_mode": "width" |
 * "quantile", "histogram_bins": 10..1000, "subgroups_from": "omop"; the
 * limits are checked by validate_validate_more(). */
static int parse_validate_more(json_t *v, struct build *b, struct path *p, char *err,
                               size_t errlen)
{
    Sdefed__ValidateSpec *o = &b->validate;
    const char *s;
    int rc = 0;
    json_t *a = json_object_get(v, "compare_versions");
    if (a) {
        size_t old = path_push_key(p, "compare_versions");
        if (!json_is_array(a) || json_array_size(a) != 2)
            rc = fail(err, errlen, p, "must be a list of exactly 2 model versions");
        for (size_t i = 0; rc == 0 && i < 2; i++) {
            json_t *x = json_array_get(a, i);
            size_t o2 = path_push_index(p, i);
            if (!json_is_string(x) || strlen(json_string_value(x)) != json_string_length(x))
                rc = fail(err, errlen, p, "must be a model version name");
            else
                b->vcompare[i] = (char *)json_string_value(x);
            path_pop(p, o2);
        }
        path_pop(p, old);
        if (rc)
            return rc;
        o->compare_versions = b->vcompare;
        o->n_compare_versions = 2;
    }
    size_t len;
    if ((rc = get_string(v, "bin_mode", &s, &len, p, err, errlen)))
        return rc;
    if (s && strcmp(s, "width") != 0)   /* "width" is the default: canonical "" */
        o->bin_mode = (char *)s;
    if (json_object_get(v, "histogram_bins")) {
        int64_t n = 0;
        if ((rc = get_int(v, "histogram_bins", SPEC_MIN_HISTOGRAM_BINS, SPEC_MAX_HISTOGRAM_BINS,
                          &n, p, err, errlen)))
            return rc;
        o->histogram_bins = n == SPEC_DEFAULT_HISTOGRAM_BINS ? 0 : (uint32_t)n;
    }
    if ((rc = get_name(v, "subgroups_from", &s, p, err, errlen)))
        return rc;
    if (s)
        o->subgroups_from = (char *)s;
    return 0;
}

/* issue 5: "validate": {"thresholds": [...], "bins": 10, "by": [...],
 * "model_version": "...", "outcome": {"dataset", "criterion", "window_days"}} */
static int parse_validate(json_t *v, struct build *b, struct path *p, char *err, size_t errlen)
{
    static const char *const keys[] = { "thresholds", "bins", "by", "model_version", "outcome",
                                        "from", "to", /* issue 6 item 3 */
                                        "compare_versions", "bin_mode", "histogram_bins",
                                        "subgroups_from", /* issue 5 items 3/4 */
                                        "scorecard", "cohort", /* issue 5 item 2 */
                                        NULL };
    static const char *const okeys[] = { "dataset", "criterion", "window_days", NULL };
    Sdefed__ValidateSpec *o = &b->validate;
    const char *s;
    size_t old;
    int rc;
    if (!json_is_object(v))
        return fail(err, errlen, p, "must be an object, got %s", jtype(v));
    if ((rc = check_keys(v, keys, p, err, errlen)))
        return rc;
    json_t *a = json_object_get(v, "thresholds");
    if (a) {
        old = path_push_key(p, "thresholds");
        if (!json_is_array(a) || json_array_size(a) > SPEC_MAX_THRESHOLDS)
            rc = fail(err, errlen, p, "must be a list of at most %d numbers",
                      SPEC_MAX_THRESHOLDS);
        else if (json_array_size(a) &&
                 !(o->thresholds = calloc(json_array_size(a), sizeof *o->thresholds)))
            rc = nomem(err, errlen);
        for (size_t i = 0; rc == 0 && i < json_array_size(a); i++) {
            json_t *x = json_array_get(a, i);
            if (!json_is_number(x)) {
                size_t o2 = path_push_index(p, i);
                rc = fail(err, errlen, p, "must be a number, got %s", jtype(x));
                path_pop(p, o2);
            } else {
                o->thresholds[o->n_thresholds++] = json_number_value(x);
            }
        }
        path_pop(p, old);
        if (rc)
            return rc;
    }
    if (json_object_get(v, "bins")) {
        int64_t n = 0;
        if ((rc = get_int(v, "bins", 1, SPEC_MAX_BINS, &n, p, err, errlen)))
            return rc;
        o->bins = n == 10 ? 0 : (uint32_t)n;   /* 10 is the default */
    }
    a = json_object_get(v, "by");
    if (a) {
        old = path_push_key(p, "by");
        if (!json_is_array(a) || json_array_size(a) > SPEC_MAX_STRATIFIERS)
            rc = fail(err, errlen, p, "must be a list of at most %d column names",
                      SPEC_MAX_STRATIFIERS);
        else if (json_array_size(a) && !(o->by = calloc(json_array_size(a), sizeof *o->by)))
            rc = nomem(err, errlen);
        for (size_t i = 0; rc == 0 && i < json_array_size(a); i++) {
            json_t *x = json_array_get(a, i);
            size_t o2 = path_push_index(p, i);
            if (!json_is_string(x) || strlen(json_string_value(x)) != json_string_length(x) ||
                !column_name_ok(json_string_value(x)))
                rc = fail(err, errlen, p, "must be a column name of 1-63 of [A-Za-z0-9_]");
            else
                o->by[o->n_by++] = (char *)json_string_value(x);
            path_pop(p, o2);
        }
        path_pop(p, old);
        if (rc)
            return rc;
    }
    if ((rc = get_name(v, "model_version", &s, p, err, errlen)))
        return rc;
    if (s)
        o->model_version = (char *)s;
    if ((rc = parse_validate_more(v, b, p, err, errlen)))   /* issue 5 items 3/4 */
        return rc;
    size_t dlen;   /* issue 6 item 3: checked by validate_validate */
    if ((rc = get_string(v, "from", &s, &dlen, p, err, errlen)))
        return rc;
    if (s)
        o->from = (char *)s;
    if ((rc = get_string(v, "to", &s, &dlen, p, err, errlen)))
        return rc;
    if (s)
        o->to = (char *)s;
    json_t *out = json_object_get(v, "outcome");
    if (out) {
        old = path_push_key(p, "outcome");
        if (!json_is_object(out))
            rc = fail(err, errlen, p, "must be an object, got %s", jtype(out));
        else
            rc = check_keys(out, okeys, p, err, errlen);
        if (rc == 0)
            rc = get_name(out, "dataset", &s, p, err, errlen);
        if (rc == 0 && s)
            b->vout.dataset = (char *)s;
        json_t *c = rc == 0 ? json_object_get(out, "criterion") : NULL;
        if (c) {
            size_t o2 = path_push_key(p, "criterion");
            struct crit_store *cs = crit_new(b, err, errlen, &rc);
            if (cs)
                rc = parse_criterion(c, cs, false, NULL, p, err, errlen);
            if (rc == 0)
                b->vout.criterion = &cs->c;
            path_pop(p, o2);
        }
        json_t *w = rc == 0 ? json_object_get(out, "window_days") : NULL;
        if (w) {
            size_t o2 = path_push_key(p, "window_days");
            json_t *w0 = json_array_get(w, 0), *w1 = json_array_get(w, 1);
            if (!json_is_array(w) || json_array_size(w) != 2 || !json_is_integer(w0) ||
                !json_is_integer(w1) || json_integer_value(w0) < 0 ||
                json_integer_value(w1) > SPEC_MAX_DAYS ||
                json_integer_value(w0) > json_integer_value(w1))
                rc = fail(err, errlen, p, "must be [start, end] with 0 <= start <= end <= %d",
                          SPEC_MAX_DAYS);
            else {
                sdefed__window__init(&b->vout_window);
                b->vout_window.start_days = (int32_t)json_integer_value(w0);
                b->vout_window.end_days = (int32_t)json_integer_value(w1);
                b->vout.window = &b->vout_window;
            }
            path_pop(p, o2);
        }
        path_pop(p, old);
        if (rc)
            return rc;
        o->outcome = &b->vout;
    }
    json_t *sc = json_object_get(v, "scorecard");   /* issue 5 item 2 */
    if (sc) {
        old = path_push_key(p, "scorecard");
        rc = parse_scorecard(sc, b, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        o->scorecard = &b->scorecard;
        if (o->outcome && !*str_or_empty(b->vout.dataset))   /* read from the same dataset */
            b->vout.dataset = b->spec.dataset;
        bool omop_by = false;   /* sex, age_band: from the same dataset's person table */
        for (size_t i = 0; i < o->n_by; i++)
            omop_by = omop_by || strcmp(o->by[i], "sex") == 0 || strcmp(o->by[i], "age_band") == 0;
        if (omop_by && !*str_or_empty(o->subgroups_from))
            o->subgroups_from = b->spec.dataset;
    }
    json_t *co = json_object_get(v, "cohort");   /* the top-level cohort is refused here */
    if (co) {
        old = path_push_key(p, "cohort");
        rc = parse_cohort(co, b, p, err, errlen);
        path_pop(p, old);
        if (rc)
            return rc;
        o->cohort = &b->cohort;
    }
    b->spec.validate = o;
    return 0;
}

static int parse_root(json_t *root, struct build *b, char *err, size_t errlen)
{
    static const char *const keys[] = { "kind", "project", "dataset", "cohort", "by",
                                        "policy", "margins", "summary", "age_band_width",
                                        "validate", NULL };
    struct path p = { "" };
    const char *kind, *s;
    size_t len, old;
    int rc;

    if (!json_is_object(root))
        return fail(err, errlen, NULL, "must be a JSON object, got %s", jtype(root));
    /* issue 6: the surveil keys are checked here, the rest as before */
    bool is_surveil = json_is_string(json_object_get(root, "kind")) &&
                      strcmp(json_string_value(json_object_get(root, "kind")), "surveil") == 0;
    if (is_surveil) {
        json_t *tmp = json_deep_copy(root);
        if (!tmp)
            return nomem(err, errlen);
        for (size_t i = 0; surveil_keys[i]; i++)
            json_object_del(tmp, surveil_keys[i]);
        rc = check_keys(tmp, keys, &p, err, errlen);
        json_decref(tmp);
    } else {
        rc = check_keys(root, keys, &p, err, errlen);
    }
    if (rc)
        return rc;

    if ((rc = get_string(root, "kind", &kind, &len, &p, err, errlen)))
        return rc;
    old = path_push_key(&p, "kind");
    if (!kind)
        rc = fail(err, errlen, &p, "required (catalog, count or summary)");
    else if (strlen(kind) != len ||
             !(b->spec.kind = value_of(kind_names, COUNT_OF(kind_names), kind)))
        rc = fail(err, errlen, &p, "unknown kind %s (expected catalog, count or summary)",
                  quote(kind, len).s);
    path_pop(&p, old);
    if (rc)
        return rc;
    /* summary takes everything count does (issue 3) */
    bool count = b->spec.kind == SDEFED__QUERY_KIND__KIND_COUNT ||
                 b->spec.kind == SDEFED__QUERY_KIND__KIND_SUMMARY;
    const char *kname = kind_names[b->spec.kind];
    bool surveil = b->spec.kind == SDEFED__QUERY_KIND__KIND_SURVEIL;   /* issue 6 */
    if (surveil && (rc = parse_surveil(root, b, &p, err, errlen)))
        return rc;

    if ((rc = get_name(root, "project", &s, &p, err, errlen)))
        return rc;
    if (!s) {
        old = path_push_key(&p, "project");
        rc = fail(err, errlen, &p, "required");
        path_pop(&p, old);
        return rc;
    }
    b->spec.project = (char *)s;

    if ((rc = get_name(root, "dataset", &s, &p, err, errlen)))
        return rc;
    old = path_push_key(&p, "dataset");
    bool validate = b->spec.kind == SDEFED__QUERY_KIND__KIND_VALIDATE;   /* issue 5 */
    if ((count || surveil || validate) && !s)
        rc = fail(err, errlen, &p, "required for kind %s", kname);
    else if (!count && !surveil && !validate && s)
        rc = fail(err, errlen, &p, "not allowed for kind catalog");
    path_pop(&p, old);
    if (rc)
        return rc;
    if (s)
        b->spec.dataset = (char *)s;

    json_t *v = json_object_get(root, "cohort");
    old = path_push_key(&p, "cohort");
    if (count && !v)
        rc = fail(err, errlen, &p, "required for kind %s", kname);
    else if (surveil && v)
        rc = fail(err, errlen, &p, "not allowed for kind surveil (use exposure)");
    else if (!count && v)
        rc = fail(err, errlen, &p, "not allowed for kind catalog");
    else if (v) {
        rc = parse_cohort(v, b, &p, err, errlen);
        b->spec.cohort = &b->cohort;
    }
    path_pop(&p, old);
    if (rc)
        return rc;

    v = json_object_get(root, "summary");
    old = path_push_key(&p, "summary");
    if (b->spec.kind == SDEFED__QUERY_KIND__KIND_SUMMARY && !v)
        rc = fail(err, errlen, &p, "required for kind summary");
    else if (b->spec.kind != SDEFED__QUERY_KIND__KIND_SUMMARY && v)
        rc = fail(err, errlen, &p, "only for kind summary");
    else if (v)
        rc = parse_summary(v, b, &p, err, errlen);
    path_pop(&p, old);
    if (rc)
        return rc;

    v = json_object_get(root, "validate");   /* issue 5 */
    old = path_push_key(&p, "validate");
    if (validate && !v)
        rc = fail(err, errlen, &p, "required for kind validate");
    else if (!validate && v)
        rc = fail(err, errlen, &p, "only for kind validate");
    else if (v)
        rc = parse_validate(v, b, &p, err, errlen);
    path_pop(&p, old);
    if (rc)
        return rc;

    if (json_object_get(root, "age_band_width")) {
        int64_t w = 0;
        rc = get_int(root, "age_band_width", 1, SPEC_MAX_AGE_BAND_WIDTH, &w, &p, err, errlen);
        if (rc)
            return rc;
        b->spec.age_band_width = w == 10 ? 0 : (uint32_t)w;   /* 10 is the default */
    }

    if ((v = json_object_get(root, "by"))) {
        old = path_push_key(&p, "by");
        rc = count || surveil ? parse_by(v, b, &p, err, errlen)
                   : fail(err, errlen, &p, "not allowed for kind catalog");
        path_pop(&p, old);
        if (rc)
            return rc;
    }

    if ((v = json_object_get(root, "policy"))) {
        old = path_push_key(&p, "policy");
        rc = parse_policy(v, b, &p, err, errlen);
        path_pop(&p, old);
        if (rc)
            return rc;
    }

    /* issue 4: "margins": true releases totals with a stratified count. */
    if (json_object_get(root, "margins"))
        rc = get_bool(root, "margins", &b->spec.margins, &p, err, errlen);
    return rc;
}

/* A jansson syntax error as one safe line: the token jansson quotes after
 * "near" is re-quoted through the excerpt escaper. */
static int json_fail(const json_error_t *je, char *err, size_t errlen)
{
    char text[sizeof je->text];
    char near_tok[sizeof(struct excerpt) + 8] = "";
    const char *nearp;

    snprintf(text, sizeof text, "%s", je->text);
    nearp = strstr(text, " near '");
    if (nearp) {
        const char *tok = nearp + 7;
        size_t tl = strlen(tok);
        if (tl > 0 && tok[tl - 1] == '\'')
            tl--;
        snprintf(near_tok, sizeof near_tok, " near %s", quote(tok, tl).s);
        text[nearp - text] = '\0';
    }
    /* jansson's own words are ASCII, but escape them anyway. */
    char clean[sizeof text * 4];
    clean[0] = '\0';
    for (size_t i = 0, o = 0; text[i] && o + 2 < sizeof clean; i++) {
        unsigned char c = (unsigned char)text[i];
        clean[o++] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
        clean[o] = '\0';
    }
    if (err && errlen > 0)
        snprintf(err, errlen, "json: line %d column %d: %s%s", je->line, je->column,
                 clean, near_tok);
    return SDF_ESPEC;
}

/* Deepest bracket nesting of JSON text (outside strings), counted before
 * jansson parses, so a hostile spec of thousands of nested groups is refused
 * with a clear message; stops counting once past the limit. */
static size_t json_depth(const char *text, size_t len)
{
    size_t depth = 0, max = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len && max <= SPEC_MAX_JSON_DEPTH; i++) {
        char c = text[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                max = depth;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return max;
}

int spec_parse_json(const char *text, size_t len, Sdefed__QuerySpec **out,
                    char *err, size_t errlen)
{
    struct build b;
    json_error_t je;
    int rc;

    if (err && errlen > 0)
        err[0] = '\0';
    if (!out)
        return fail(err, errlen, NULL, "no output given");
    *out = NULL;
    if (!text)
        return fail(err, errlen, NULL, "no input");
    if (len > SPEC_MAX_JSON)
        return fail(err, errlen, NULL, "input is %zu bytes, more than the limit of %zu",
                    len, SPEC_MAX_JSON);

    size_t depth = json_depth(text, len);
    if (depth > SPEC_MAX_JSON_DEPTH)
        return fail(err, errlen, NULL, "nested more than %d levels deep (cohort groups may "
                    "nest at most %d)", SPEC_MAX_JSON_DEPTH, SPEC_MAX_DEPTH);
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return json_fail(&je, err, errlen);

    memset(&b, 0, sizeof b);
    sdefed__query_spec__init(&b.spec);
    sdefed__cohort__init(&b.cohort);
    sdefed__policy_request__init(&b.policy);
    sdefed__summary_spec__init(&b.summary);
    sdefed__value_range__init(&b.summary_clamp);
    sdefed__surveil_spec__init(&b.surveil);   /* issue 6 */
    sdefed__validate_spec__init(&b.validate);   /* issue 5 */
    sdefed__validate_outcome__init(&b.vout);
    b.spec.by = b.by;

    rc = parse_root(root, &b, err, errlen);
    if (rc == 0)
        rc = spec_validate(&b.spec, err, errlen);   /* the one set of limits */
    if (rc == 0) {
        *out = (Sdefed__QuerySpec *)pb_copy(&b.spec.base);
        if (!*out) {
            set_err(err, errlen, "spec: out of memory");
            rc = SDF_ENOMEM;
        }
    }
    build_free(&b);
    json_decref(root);
    return rc;
}

/* ---- QuerySpec -> canonical JSON ------------------------------------------------ */

/* A sorted, de-duplicated JSON array of ids; NULL on ENOMEM. */
static json_t *ids_json(const int64_t *v, size_t n)
{
    json_t *a = json_array();
    int64_t *sorted = NULL;
    bool ok = a != NULL;
    if (ok && n > 0 && v) {
        sorted = malloc(n * sizeof sorted[0]);
        ok = sorted != NULL;
        if (ok) {
            memcpy(sorted, v, n * sizeof sorted[0]);
            sort_unique(sorted, &n);
            for (size_t i = 0; ok && i < n; i++)
                ok = jo_push(a, json_integer(sorted[i]));
        }
    }
    free(sorted);
    if (!ok) {
        json_decref(a);
        return NULL;
    }
    return a;
}

static json_t *window_json(const Sdefed__Window *w)
{
    json_t *o = json_object();
    if (o && jo_put(o, "start_days", json_integer(w->start_days)) &&
        jo_put(o, "end_days", json_integer(w->end_days)))
        return o;
    json_decref(o);
    return NULL;
}

/* event: NULL for a plain criterion, "all" for an index with event all. */
static json_t *criterion_json_ex(const Sdefed__Criterion *c, const char *event)
{
    json_t *o = json_object();
    bool ok = o != NULL;

    ok = ok && jo_put(o, "domain", json_string(spec_domain_name(c->domain)));
    if (ok && (c->n_concepts > 0 || c->domain != SDEFED__DOMAIN__DOMAIN_DEATH))
        ok = jo_put(o, "concepts", ids_json(c->concepts, c->n_concepts));
    if (ok && c->descendants)
        ok = jo_put(o, "descendants", json_true());
    if (ok && c->n_exclude > 0)
        ok = jo_put(o, "exclude", ids_json(c->exclude, c->n_exclude));
    if (ok && c->exclude_descendants)
        ok = jo_put(o, "exclude_descendants", json_true());
    if (ok && c->window)
        ok = jo_put(o, "window", window_json(c->window));
    if (ok && c->value) {
        json_t *v = json_object();
        ok = v != NULL;
        if (ok && c->value->has_min)
            ok = jo_put(v, "min", json_real(c->value->min));
        if (ok && c->value->has_max)
            ok = jo_put(v, "max", json_real(c->value->max));
        if (ok)
            ok = jo_put(o, "value", v);
        else
            json_decref(v);
    }
    if (ok && c->n_units > 0)
        ok = jo_put(o, "units", ids_json(c->units, c->n_units));
    if (ok && c->first_only)
        ok = jo_put(o, "first_only", json_true());
    if (ok && event)
        ok = jo_put(o, "event", json_string(event));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *criterion_json(const Sdefed__Criterion *c)
{
    return criterion_json_ex(c, NULL);
}

static const char *node_key(Sdefed__NodeOp op)
{
    return op == SDEFED__NODE_OP__NODE_ALL ? "all" : op == SDEFED__NODE_OP__NODE_ANY ? "any"
                                                                                    : "not";
}

/* The value of a group node: an array (all/any) or one node (not).
 * Recursion is bounded: only children after their parent are followed,
 * and not deeper than SPEC_MAX_DEPTH + 1 (an invalid spec just stops). */
static json_t *node_json(const Sdefed__Cohort *co, size_t i, unsigned depth);

static json_t *group_json(const Sdefed__Cohort *co, size_t i, unsigned depth)
{
    const Sdefed__CohortNode *nd = co->nodes[i];
    bool not_ = nd->op == SDEFED__NODE_OP__NODE_NOT;
    json_t *a = not_ ? NULL : json_array();
    if (!not_ && !a)
        return NULL;
    for (size_t k = 0; k < nd->n_children && nd->children; k++) {
        uint32_t c = nd->children[k];
        if (c <= i || c >= co->n_nodes)
            continue;
        json_t *v = node_json(co, c, depth + 1);
        if (!v) {
            json_decref(a);
            return NULL;
        }
        if (not_)
            return v;
        if (!jo_push(a, v)) {
            json_decref(a);
            return NULL;
        }
    }
    return not_ ? json_object() : a;
}

static json_t *node_json(const Sdefed__Cohort *co, size_t i, unsigned depth)
{
    const Sdefed__CohortNode *nd = co->nodes ? co->nodes[i] : NULL;
    if (!nd || depth > SPEC_MAX_DEPTH + 1)
        return json_object();
    if (nd->op == SDEFED__NODE_OP__NODE_CRITERION)
        return nd->criterion ? criterion_json(nd->criterion) : json_object();
    json_t *o = json_object();
    if (o && jo_put(o, node_key(nd->op), group_json(co, i, depth)))
        return o;
    json_decref(o);
    return NULL;
}

static json_t *cohort_json(const Sdefed__Cohort *co)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    if (ok && co->index)
        ok = jo_put(o, "index", criterion_json_ex(co->index, co->index_event ==
                                               SDEFED__INDEX_EVENT__INDEX_ALL ? "all" : NULL));
    if (ok && co->n_all > 0 && co->all) {
        json_t *all = json_array();
        ok = all != NULL;
        for (size_t i = 0; ok && i < co->n_all; i++)
            if (co->all[i])
                ok = jo_push(all, criterion_json(co->all[i]));
        if (ok)
            ok = jo_put(o, "all", all);
        else
            json_decref(all);
    } else if (ok && co->n_nodes > 0 && co->nodes && co->nodes[0]) {
        const Sdefed__CohortNode *root = co->nodes[0];
        if (root->op == SDEFED__NODE_OP__NODE_CRITERION) {
            json_t *all = json_array();
            ok = all && jo_push(all, node_json(co, 0, 1)) && jo_put(o, "all", all);
        } else {
            ok = jo_put(o, node_key(root->op), group_json(co, 0, 1));
        }
    }
    if (ok && co->age) {
        json_t *a = json_object();
        ok = a != NULL;
        if (ok && co->age->has_min)
            ok = jo_put(a, "min", json_integer(co->age->min));
        if (ok && co->age->has_max)
            ok = jo_put(a, "max", json_integer(co->age->max));
        ok = ok && jo_put(o, "age", a);
    }
    if (ok && co->n_sex > 0 && co->sex) {
        json_t *a = json_array();
        ok = a != NULL;
        for (int sx = 1; ok && sx <= 3; sx++)
            for (size_t i = 0; ok && i < co->n_sex; i++)
                if ((int)co->sex[i] == sx) {
                    ok = jo_push(a, json_string(sex_names[sx]));
                    break;
                }
        ok = ok && jo_put(o, "sex", a);
    }
    if (ok && co->observation) {
        json_t *a = json_object();
        ok = a && jo_put(a, "prior_days", json_integer(co->observation->prior_days)) &&
             jo_put(a, "post_days", json_integer(co->observation->post_days)) &&
             jo_put(o, "observation", a);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *summary_json(const Sdefed__SummarySpec *sm)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    ok = ok && jo_put(o, "of", json_string(name_of(summary_of_names, COUNT_OF(summary_of_names),
                                                 (int)sm->of)));
    if (ok && sm->n_concepts > 0)
        ok = jo_put(o, "concepts", ids_json(sm->concepts, sm->n_concepts));
    if (ok && sm->descendants)
        ok = jo_put(o, "descendants", json_true());
    if (ok && sm->n_units > 0)
        ok = jo_put(o, "units", ids_json(sm->units, sm->n_units));
    if (ok && sm->window)
        ok = jo_put(o, "window", window_json(sm->window));
    if (ok && sm->pick == SDEFED__SUMMARY_PICK__PICK_FIRST)
        ok = jo_put(o, "pick", json_string("first"));
    if (ok && sm->clamp) {
        json_t *c = json_pack("{s:f, s:f}", "min", sm->clamp->min, "max", sm->clamp->max);
        ok = c && jo_put(o, "clamp", c);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The surveil fields, at the top level of o (issue 6). */
static bool surveil_json(json_t *o, const Sdefed__SurveilSpec *sv)
{
    bool ok = true;
    if (sv->exposure)
        ok = jo_put(o, "exposure", criterion_json(sv->exposure));
    if (ok && sv->outcome)
        ok = jo_put(o, "outcome", criterion_json(sv->outcome));
    if (ok && sv->window)
        ok = jo_put(o, "window_days", json_pack("[ii]", (int)sv->window->start_days,
                                             (int)sv->window->end_days));
    if (ok)
        ok = jo_put(o, "period", json_string(sv->period ? name_of(period_names,
                                                               COUNT_OF(period_names),
                                                               (int)sv->period)
                                                     : "all"));
    if (ok && sv->from && *sv->from)
        ok = jo_put(o, "from", jo_str(sv->from));
    if (ok && sv->to && *sv->to)
        ok = jo_put(o, "to", jo_str(sv->to));
    if (ok && sv->every)
        ok = jo_put(o, "every", json_true());
    if (ok && sv->comparator)
        ok = jo_put(o, "comparator", criterion_json(sv->comparator));
    return ok;
}

/* issue 5 item 2: the scorecard, terms in their order. */
static json_t *scorecard_json(const Sdefed__ValidateScorecard *sc)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    ok = ok && jo_put(o, "link", json_string(sc->link == SDEFED__SCORECARD_LINK__SCORECARD_LINEAR
                                                 ? "linear" : "logistic"));
    ok = ok && jo_put(o, "intercept", json_real(sc->intercept));
    json_t *a = ok ? json_array() : NULL;
    ok = a != NULL;
    for (size_t i = 0; ok && i < sc->n_terms; i++) {
        const Sdefed__ScorecardTerm *t = sc->terms[i];
        json_t *to = json_object();
        bool tok = to && jo_put(to, "coef", json_real(t->coef));
        switch (t->covariate) {
        case SDEFED__SCORECARD_COVARIATE__SCORECARD_AGE:
            tok = tok && jo_put(to, "age", json_true());
            break;
        case SDEFED__SCORECARD_COVARIATE__SCORECARD_SEX:
            tok = tok && jo_put(to, "sex", json_string(name_of(sex_names, COUNT_OF(sex_names),
                                                               (int)t->sex)));
            break;
        default:
            if (t->criterion)
                tok = tok && jo_put(to, t->covariate ==
                                            SDEFED__SCORECARD_COVARIATE__SCORECARD_MEASUREMENT
                                        ? "measurement" : "indicator",
                                    criterion_json(t->criterion));
            tok = tok && jo_put(to, "lookback_days", json_integer(t->lookback_days));
            break;
        }
        if (tok && t->has_missing)
            tok = jo_put(to, "missing", json_real(t->missing));
        if (!tok) {
            json_decref(to);
            ok = false;
        } else {
            ok = jo_push(a, to);
        }
    }
    ok = ok ? jo_put(o, "terms", a) : (json_decref(a), false);
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* issue 5 */
static json_t *validate_json(const Sdefed__ValidateSpec *v)
{
    json_t *o = json_object();
    bool ok = o != NULL;
    if (ok && v->n_thresholds) {
        json_t *a = json_array();
        ok = a != NULL;
        for (size_t i = 0; ok && i < v->n_thresholds; i++)
            ok = jo_push(a, json_real(v->thresholds[i]));
        ok = ok ? jo_put(o, "thresholds", a) : (json_decref(a), false);
    }
    if (ok && v->bins && v->bins != 10)
        ok = jo_put(o, "bins", json_integer(v->bins));
    if (ok && v->n_by) {
        json_t *a = json_array();
        ok = a != NULL;
        for (size_t i = 0; ok && i < v->n_by; i++)
            ok = jo_push(a, jo_str(v->by[i]));
        ok = ok ? jo_put(o, "by", a) : (json_decref(a), false);
    }
    if (ok && v->model_version && *v->model_version)
        ok = jo_put(o, "model_version", jo_str(v->model_version));
    if (ok && v->n_compare_versions == 2)   /* issue 5 items 3/4 */
        ok = jo_put(o, "compare_versions",
                    json_pack("[ss]", v->compare_versions[0] ? v->compare_versions[0] : "",
                              v->compare_versions[1] ? v->compare_versions[1] : ""));
    if (ok && v->bin_mode && *v->bin_mode && strcmp(v->bin_mode, "width") != 0)
        ok = jo_put(o, "bin_mode", jo_str(v->bin_mode));
    if (ok && v->histogram_bins && v->histogram_bins != SPEC_DEFAULT_HISTOGRAM_BINS)
        ok = jo_put(o, "histogram_bins", json_integer(v->histogram_bins));
    if (ok && v->subgroups_from && *v->subgroups_from)
        ok = jo_put(o, "subgroups_from", jo_str(v->subgroups_from));
    if (ok && v->from && *v->from)   /* issue 6 item 3 */
        ok = jo_put(o, "from", jo_str(v->from));
    if (ok && v->to && *v->to)
        ok = jo_put(o, "to", jo_str(v->to));
    if (ok && v->outcome) {
        json_t *oc = json_object();
        ok = oc != NULL;
        if (ok)
            ok = jo_put(oc, "dataset", jo_str(v->outcome->dataset));
        if (ok && v->outcome->criterion)
            ok = jo_put(oc, "criterion", criterion_json(v->outcome->criterion));
        if (ok && v->outcome->window)
            ok = jo_put(oc, "window_days", json_pack("[ii]", (int)v->outcome->window->start_days,
                                                  (int)v->outcome->window->end_days));
        ok = ok ? jo_put(o, "outcome", oc) : (json_decref(oc), false);
    }
    if (ok && v->scorecard)   /* issue 5 item 2 */
        ok = jo_put(o, "scorecard", scorecard_json(v->scorecard));
    if (ok && v->cohort)
        ok = jo_put(o, "cohort", cohort_json(v->cohort));
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *spec_to_json(const Sdefed__QuerySpec *s)
{
    if (!s)
        return NULL;
    json_t *o = json_object();
    bool ok = o != NULL;

    ok = ok && jo_put(o, "kind", json_string(spec_kind_name(s->kind)));
    ok = ok && jo_put(o, "project", jo_str(s->project));
    if (ok && s->dataset && *s->dataset)
        ok = jo_put(o, "dataset", jo_str(s->dataset));
    if (ok && s->cohort &&
        ((s->cohort->n_all > 0 && s->cohort->all) || s->cohort->n_nodes > 0 || s->cohort->index))
        ok = jo_put(o, "cohort", cohort_json(s->cohort));
    if (ok && s->summary)
        ok = jo_put(o, "summary", summary_json(s->summary));
    if (ok && s->surveil)   /* issue 6 */
        ok = surveil_json(o, s->surveil);
    if (ok && s->validate)   /* issue 5 */
        ok = jo_put(o, "validate", validate_json(s->validate));
    if (ok && s->n_by > 0 && s->by) {
        json_t *by = json_array();
        ok = by != NULL;
        for (size_t i = 0; ok && i < s->n_by; i++)
            ok = jo_push(by, json_string(spec_stratifier_name(s->by[i])));
        if (ok)
            ok = jo_put(o, "by", by);
        else
            json_decref(by);
    }
    if (ok && s->age_band_width && s->age_band_width != 10)
        ok = jo_put(o, "age_band_width", json_integer(s->age_band_width));
    if (ok && s->margins)
        ok = jo_put(o, "margins", json_true());
    const Sdefed__PolicyRequest *pol = s->policy;
    if (ok && pol && (pol->min_cell || pol->rounding || pol->zero_is_disclosive)) {
        json_t *po = json_object();
        ok = po != NULL;
        if (ok && pol->min_cell)
            ok = jo_put(po, "min_cell", json_integer(pol->min_cell));
        if (ok && pol->rounding)
            ok = jo_put(po, "rounding", json_integer(pol->rounding));
        if (ok && pol->zero_is_disclosive)
            ok = jo_put(po, "zero_is_disclosive", json_true());
        if (ok)
            ok = jo_put(o, "policy", po);
        else
            json_decref(po);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}
