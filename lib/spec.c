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
 *   - fields in the fixed order kind, project, dataset, cohort, by, policy;
 *     inside a criterion: domain, concepts, descendants; inside policy:
 *     min_cell, rounding, zero_is_disclosive;
 *   - fields holding their default are omitted: dataset "" , cohort without
 *     criteria, descendants false, by [], policy min_cell 0 / rounding 0 /
 *     zero_is_disclosive false, and the whole policy object when all of its
 *     fields are default (spec_parse_json then leaves spec->policy NULL);
 *   - a criterion's concept list is a set: spec_parse_json sorts it
 *     ascending and drops duplicates, and spec_to_json emits it sorted and
 *     de-duplicated too. Criteria and stratifiers keep their order (the
 *     stratifier order is the output's column order).
 * So semantically equal specs have byte-identical json_dumps(spec_to_json(),
 * JSON_COMPACT) output, and spec_parse_json(json_dumps(spec_to_json(s)))
 * equals s for every s that spec_parse_json produced.
 */
#include "sdefed/spec.h"

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
};
static const char *const domain_names[] = {
    [SDEFED__DOMAIN__DOMAIN_CONDITION] = "condition",
    [SDEFED__DOMAIN__DOMAIN_DRUG] = "drug",
    [SDEFED__DOMAIN__DOMAIN_DEVICE] = "device",
    [SDEFED__DOMAIN__DOMAIN_PROCEDURE] = "procedure",
    [SDEFED__DOMAIN__DOMAIN_MEASUREMENT] = "measurement",
    [SDEFED__DOMAIN__DOMAIN_OBSERVATION] = "observation",
    [SDEFED__DOMAIN__DOMAIN_VISIT] = "visit",
};
static const char *const strat_names[] = {
    [SDEFED__STRATIFIER__STRAT_SEX] = "sex",
    [SDEFED__STRATIFIER__STRAT_AGE_BAND] = "age_band",
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

static int validate_criterion(const Sdefed__Criterion *c, struct path *p, char *err, size_t errlen)
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
    if (c->n_concepts == 0)
        rc = fail(err, errlen, p, "must not be empty");
    else if (c->n_concepts > SPEC_MAX_CONCEPTS)
        rc = fail(err, errlen, p, "more than %d concepts", SPEC_MAX_CONCEPTS);
    else if (!c->concepts)
        rc = fail(err, errlen, p, "missing");
    for (size_t i = 0; rc == 0 && i < c->n_concepts; i++) {
        if (c->concepts[i] < 1 || c->concepts[i] > CONCEPT_MAX) {
            path_push_index(p, i);
            rc = fail(err, errlen, p, "concept id must be 1..%d", CONCEPT_MAX);
        }
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
    bool count = s->kind == SDEFED__QUERY_KIND__KIND_COUNT;

    const char *project = str_or_empty(s->project);
    old = path_push_key(&p, "project");
    rc = check_name(project, strlen(project), &p, err, errlen);
    path_pop(&p, old);
    if (rc)
        return rc;

    const char *dataset = str_or_empty(s->dataset);
    old = path_push_key(&p, "dataset");
    if (count)
        rc = *dataset ? check_name(dataset, strlen(dataset), &p, err, errlen)
                      : fail(err, errlen, &p, "required for kind count");
    else if (*dataset)
        rc = fail(err, errlen, &p, "not allowed for kind catalog");
    path_pop(&p, old);
    if (rc)
        return rc;

    old = path_push_key(&p, "cohort");
    size_t n_all = s->cohort ? s->cohort->n_all : 0;
    if (!count) {
        if (n_all > 0)
            rc = fail(err, errlen, &p, "not allowed for kind catalog");
    } else if (!s->cohort) {
        rc = fail(err, errlen, &p, "required for kind count");
    } else {
        size_t o2 = path_push_key(&p, "all");
        if (n_all == 0)
            rc = fail(err, errlen, &p, "must have at least one criterion");
        else if (n_all > SPEC_MAX_CRITERIA)
            rc = fail(err, errlen, &p, "more than %d criteria", SPEC_MAX_CRITERIA);
        else if (!s->cohort->all)
            rc = fail(err, errlen, &p, "missing");
        for (size_t i = 0; rc == 0 && i < n_all; i++) {
            size_t o3 = path_push_index(&p, i);
            rc = validate_criterion(s->cohort->all[i], &p, err, errlen);
            path_pop(&p, o3);
        }
        path_pop(&p, o2);
    }
    path_pop(&p, old);
    if (rc)
        return rc;

    old = path_push_key(&p, "by");
    if (s->n_by > 0 && !count)
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
        path_pop(&p, o2);
    }
    path_pop(&p, old);
    if (rc)
        return rc;

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
 * arrays are ours and freed by build_free(). */
struct build {
    Sdefed__QuerySpec spec;
    Sdefed__Cohort cohort;
    Sdefed__Criterion *crit;
    Sdefed__Criterion **critp;
    Sdefed__Stratifier by[SPEC_MAX_STRATIFIERS];
    Sdefed__PolicyRequest policy;
};

static void build_free(struct build *b)
{
    if (b->crit)
        for (size_t i = 0; i < b->cohort.n_all; i++)
            free(b->crit[i].concepts);
    free(b->crit);
    free(b->critp);
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

static int parse_criterion(json_t *c, Sdefed__Criterion *out, struct path *p,
                           char *err, size_t errlen)
{
    static const char *const keys[] = { "domain", "concepts", "descendants", NULL };
    const char *domain;
    size_t len, old;
    int rc;

    if (!json_is_object(c))
        return fail(err, errlen, p, "must be an object, got %s", jtype(c));
    if ((rc = check_keys(c, keys, p, err, errlen)))
        return rc;

    if ((rc = get_string(c, "domain", &domain, &len, p, err, errlen)))
        return rc;
    old = path_push_key(p, "domain");
    if (!domain)
        rc = fail(err, errlen, p, "required");
    else if (strlen(domain) != len ||
             !(out->domain = value_of(domain_names, COUNT_OF(domain_names), domain)))
        rc = fail(err, errlen, p, "unknown domain %s (expected condition, drug, device, "
                  "procedure, measurement, observation or visit)", quote(domain, len).s);
    path_pop(p, old);
    if (rc)
        return rc;

    json_t *concepts = json_object_get(c, "concepts");
    old = path_push_key(p, "concepts");
    if (!concepts)
        rc = fail(err, errlen, p, "required");
    else if (!json_is_array(concepts))
        rc = fail(err, errlen, p, "must be an array of concept ids, got %s", jtype(concepts));
    else if (json_array_size(concepts) == 0)
        rc = fail(err, errlen, p, "must not be empty");
    else if (json_array_size(concepts) > SPEC_MAX_CONCEPTS)
        rc = fail(err, errlen, p, "more than %d concepts", SPEC_MAX_CONCEPTS);
    if (rc) {
        path_pop(p, old);
        return rc;
    }
    size_t n = json_array_size(concepts);
    out->concepts = calloc(n, sizeof out->concepts[0]);
    if (!out->concepts) {
        path_pop(p, old);
        set_err(err, errlen, "spec: out of memory");
        return SDF_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(concepts, i);
        size_t o2 = path_push_index(p, i);
        if (!json_is_integer(v))
            rc = fail(err, errlen, p, "concept id must be an integer 1..%d, got %s",
                      CONCEPT_MAX, jtype(v));
        else if (json_integer_value(v) < 1 || json_integer_value(v) > CONCEPT_MAX)
            rc = fail(err, errlen, p, "concept id must be 1..%d", CONCEPT_MAX);
        path_pop(p, o2);
        if (rc)
            break;
        out->concepts[i] = json_integer_value(v);
    }
    path_pop(p, old);
    if (rc)
        return rc;
    out->n_concepts = n;
    sort_unique(out->concepts, &out->n_concepts);

    return get_bool(c, "descendants", &out->descendants, p, err, errlen);
}

static int parse_cohort(json_t *cohort, struct build *b, struct path *p, char *err, size_t errlen)
{
    static const char *const keys[] = { "all", NULL };
    int rc;

    if (!json_is_object(cohort))
        return fail(err, errlen, p, "must be an object, got %s", jtype(cohort));
    if ((rc = check_keys(cohort, keys, p, err, errlen)))
        return rc;

    json_t *all = json_object_get(cohort, "all");
    size_t old = path_push_key(p, "all");
    if (!all)
        rc = fail(err, errlen, p, "required");
    else if (!json_is_array(all))
        rc = fail(err, errlen, p, "must be an array of criteria, got %s", jtype(all));
    else if (json_array_size(all) == 0)
        rc = fail(err, errlen, p, "must have at least one criterion");
    else if (json_array_size(all) > SPEC_MAX_CRITERIA)
        rc = fail(err, errlen, p, "more than %d criteria", SPEC_MAX_CRITERIA);
    if (rc) {
        path_pop(p, old);
        return rc;
    }

    size_t n = json_array_size(all);
    b->crit = calloc(n, sizeof b->crit[0]);
    b->critp = calloc(n, sizeof b->critp[0]);
    if (!b->crit || !b->critp) {
        path_pop(p, old);
        set_err(err, errlen, "spec: out of memory");
        return SDF_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        sdefed__criterion__init(&b->crit[i]);
        b->critp[i] = &b->crit[i];
    }
    b->cohort.n_all = n;
    b->cohort.all = b->critp;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t o2 = path_push_index(p, i);
        rc = parse_criterion(json_array_get(all, i), &b->crit[i], p, err, errlen);
        path_pop(p, o2);
    }
    path_pop(p, old);
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
            rc = fail(err, errlen, p, "unknown stratifier %s (expected sex or age_band)",
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

static int parse_root(json_t *root, struct build *b, char *err, size_t errlen)
{
    static const char *const keys[] = { "kind", "project", "dataset", "cohort", "by",
                                        "policy", NULL };
    struct path p = { "" };
    const char *kind, *s;
    size_t len, old;
    int rc;

    if (!json_is_object(root))
        return fail(err, errlen, NULL, "must be a JSON object, got %s", jtype(root));
    if ((rc = check_keys(root, keys, &p, err, errlen)))
        return rc;

    if ((rc = get_string(root, "kind", &kind, &len, &p, err, errlen)))
        return rc;
    old = path_push_key(&p, "kind");
    if (!kind)
        rc = fail(err, errlen, &p, "required (catalog or count)");
    else if (strlen(kind) != len ||
             !(b->spec.kind = value_of(kind_names, COUNT_OF(kind_names), kind)))
        rc = fail(err, errlen, &p, "unknown kind %s (expected catalog or count)",
                  quote(kind, len).s);
    path_pop(&p, old);
    if (rc)
        return rc;
    bool count = b->spec.kind == SDEFED__QUERY_KIND__KIND_COUNT;

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
    if (count && !s)
        rc = fail(err, errlen, &p, "required for kind count");
    else if (!count && s)
        rc = fail(err, errlen, &p, "not allowed for kind catalog");
    path_pop(&p, old);
    if (rc)
        return rc;
    if (s)
        b->spec.dataset = (char *)s;

    json_t *v = json_object_get(root, "cohort");
    old = path_push_key(&p, "cohort");
    if (count && !v)
        rc = fail(err, errlen, &p, "required for kind count");
    else if (!count && v)
        rc = fail(err, errlen, &p, "not allowed for kind catalog");
    else if (v) {
        rc = parse_cohort(v, b, &p, err, errlen);
        b->spec.cohort = &b->cohort;
    }
    path_pop(&p, old);
    if (rc)
        return rc;

    if ((v = json_object_get(root, "by"))) {
        old = path_push_key(&p, "by");
        rc = count ? parse_by(v, b, &p, err, errlen)
                   : fail(err, errlen, &p, "not allowed for kind catalog");
        path_pop(&p, old);
        if (rc)
            return rc;
    }

    if ((v = json_object_get(root, "policy"))) {
        old = path_push_key(&p, "policy");
        rc = parse_policy(v, b, &p, err, errlen);
        path_pop(&p, old);
    }
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

    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return json_fail(&je, err, errlen);

    memset(&b, 0, sizeof b);
    sdefed__query_spec__init(&b.spec);
    sdefed__cohort__init(&b.cohort);
    sdefed__policy_request__init(&b.policy);
    b.spec.by = b.by;

    rc = parse_root(root, &b, err, errlen);
    if (rc == 0)
        rc = spec_validate(&b.spec, err, errlen);   /* the one set of limits */
    if (rc == 0) {
        size_t n = sdefed__query_spec__get_packed_size(&b.spec);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf) {
            size_t packed = sdefed__query_spec__pack(&b.spec, buf);
            *out = sdefed__query_spec__unpack(NULL, packed, buf);
            free(buf);
        }
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

/* A JSON string for s; bytes that are not valid UTF-8 make jansson refuse,
 * so such a string (only possible in a spec that fails spec_validate) is
 * emitted with every non-ASCII byte replaced by '?'. NULL only on ENOMEM. */
static json_t *jstr(const char *s)
{
    s = str_or_empty(s);
    json_t *v = json_string(s);
    if (v)
        return v;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

/* Set o[k] = v; v is always consumed (jansson drops it on failure).
 * False when v is NULL or on ENOMEM. */
static bool put(json_t *o, const char *k, json_t *v)
{
    return json_object_set_new(o, k, v) == 0;
}

static bool push(json_t *a, json_t *v)
{
    return json_array_append_new(a, v) == 0;
}

static json_t *criterion_json(const Sdefed__Criterion *c)
{
    json_t *o = json_object();
    json_t *cs = json_array();
    int64_t *sorted = NULL;
    size_t n = c->n_concepts;
    bool ok = o && cs;

    if (ok && n > 0 && c->concepts) {
        sorted = malloc(n * sizeof sorted[0]);
        ok = sorted != NULL;
        if (ok) {
            memcpy(sorted, c->concepts, n * sizeof sorted[0]);
            sort_unique(sorted, &n);
            for (size_t i = 0; ok && i < n; i++)
                ok = push(cs, json_integer(sorted[i]));
        }
    }
    free(sorted);
    ok = ok && put(o, "domain", json_string(spec_domain_name(c->domain)));
    if (ok) {
        ok = put(o, "concepts", cs);    /* put() owns cs from here on */
        cs = NULL;
    }
    if (ok && c->descendants)
        ok = put(o, "descendants", json_true());
    json_decref(cs);
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

    ok = ok && put(o, "kind", json_string(spec_kind_name(s->kind)));
    ok = ok && put(o, "project", jstr(s->project));
    if (ok && s->dataset && *s->dataset)
        ok = put(o, "dataset", jstr(s->dataset));
    if (ok && s->cohort && s->cohort->n_all > 0 && s->cohort->all) {
        json_t *cohort = json_object(), *all = json_array();
        ok = cohort && all;
        for (size_t i = 0; ok && i < s->cohort->n_all; i++) {
            const Sdefed__Criterion *c = s->cohort->all[i];
            if (c)
                ok = push(all, criterion_json(c));
        }
        if (ok) {
            ok = put(cohort, "all", all);   /* put() owns all from here on */
            all = NULL;
        }
        if (ok) {
            ok = put(o, "cohort", cohort);
            cohort = NULL;
        }
        json_decref(all);
        json_decref(cohort);
    }
    if (ok && s->n_by > 0 && s->by) {
        json_t *by = json_array();
        ok = by != NULL;
        for (size_t i = 0; ok && i < s->n_by; i++)
            ok = push(by, json_string(spec_stratifier_name(s->by[i])));
        if (ok)
            ok = put(o, "by", by);
        else
            json_decref(by);
    }
    const Sdefed__PolicyRequest *pol = s->policy;
    if (ok && pol && (pol->min_cell || pol->rounding || pol->zero_is_disclosive)) {
        json_t *po = json_object();
        ok = po != NULL;
        if (ok && pol->min_cell)
            ok = put(po, "min_cell", json_integer(pol->min_cell));
        if (ok && pol->rounding)
            ok = put(po, "rounding", json_integer(pol->rounding));
        if (ok && pol->zero_is_disclosive)
            ok = put(po, "zero_is_disclosive", json_true());
        if (ok)
            ok = put(o, "policy", po);
        else
            json_decref(po);
    }
    if (!ok) {
        json_decref(o);
        return NULL;
    }
    return o;
}
