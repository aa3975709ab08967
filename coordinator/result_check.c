/* coordinator/result_check.c — a site's answer checked before it is pooled; see result_check.h. */
#include "result_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "pool_surveil.h"

typedef Sdefed__CellStatus cst;

static int bad(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(char *why, size_t len, const char *fmt, ...)
{
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(why, len, "malformed result: %s", msg);
    return SDF_EINVAL;
}

/* A status an agent puts on a released or withheld number. */
static bool status_known(cst s)
{
    return s == SDEFED__CELL_STATUS__CELL_EXACT || s == SDEFED__CELL_STATUS__CELL_ROUNDED ||
           s == SDEFED__CELL_STATUS__CELL_SUPPRESSED || s == SDEFED__CELL_STATUS__CELL_NOISED;
}

/* A count: known status, 0 when suppressed ("a suppressed number is 0 on
 * the wire"), never negative (noised counts are clamped at the site). */
static int check_count(int64_t v, cst s, const char *what, size_t i, char *why, size_t len)
{
    if (!status_known(s))
        return bad(why, len, "%s[%zu]: unknown status", what, i);
    if (s == SDEFED__CELL_STATUS__CELL_SUPPRESSED && v != 0)
        return bad(why, len, "%s[%zu]: a suppressed number carries a value", what, i);
    if (v < 0)
        return bad(why, len, "%s[%zu]: negative count", what, i);
    return 0;
}

/* A statistic: when suppressed it must be 0; otherwise finite. A status of
 * 0 (unspecified) is allowed only with a 0 value. */
static int check_stat(double v, cst s, const char *what, size_t i, char *why, size_t len)
{
    if (s == SDEFED__CELL_STATUS__CELL_UNSPECIFIED || s == SDEFED__CELL_STATUS__CELL_SUPPRESSED) {
        if (v != 0.0)
            return bad(why, len, "%s[%zu]: a withheld number carries a value", what, i);
        return 0;
    }
    if (!status_known(s))
        return bad(why, len, "%s[%zu]: unknown status", what, i);
    if (!isfinite(v))
        return bad(why, len, "%s[%zu]: not a finite number", what, i);
    return 0;
}

/* Stratum names present and not repeated within one group. */
static int check_strata(Sdefed__Stratum *const *st, size_t n, const char *what, size_t i,
                        char *why, size_t len)
{
    for (size_t a = 0; a < n; a++) {
        if (!st[a] || !st[a]->name || !st[a]->name[0] || !st[a]->value)
            return bad(why, len, "%s[%zu]: stratum without a name or value", what, i);
        for (size_t b = 0; b < a; b++)
            if (strcmp(st[a]->name, st[b]->name) == 0)
                return bad(why, len, "%s[%zu]: the same stratifier twice", what, i);
    }
    return 0;
}

typedef struct keyed {
    char *key;
    size_t index;
} keyed;

static int cmp_keyed(const void *a, const void *b)
{
    const keyed *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* The pooling keys of n groups, each appearing once. key_of writes group
 * i's key into buf (0 or SDF_EOVERFLOW). */
typedef int (*key_fn)(const void *groups, size_t i, char *buf, size_t len);

static int check_unique(const void *groups, size_t n, key_fn key_of, size_t key_max,
                        const char *what, char *why, size_t len)
{
    if (n < 2)
        return 0;
    keyed *ks = calloc(n, sizeof *ks);
    char *buf = malloc(key_max);
    int err = ks && buf ? 0 : SDF_ENOMEM;
    size_t made = 0;
    for (; !err && made < n; made++) {
        if (key_of(groups, made, buf, key_max) != 0) {
            err = bad(why, len, "%s[%zu]: strata too long", what, made);
            break;
        }
        ks[made] = (keyed){ strdup(buf), made };
        if (!ks[made].key)
            err = SDF_ENOMEM;
    }
    if (!err) {
        qsort(ks, n, sizeof *ks, cmp_keyed);
        for (size_t i = 1; i < n && !err; i++)
            if (strcmp(ks[i - 1].key, ks[i].key) == 0)
                err = bad(why, len, "%s[%zu] and %s[%zu]: the same strata twice", what,
                          ks[i - 1].index, what, ks[i].index);
    }
    for (size_t i = 0; ks && i < n; i++)
        free(ks[i].key);
    free(ks);
    free(buf);
    return err;
}

static int cell_key(const void *g, size_t i, char *buf, size_t len)
{
    const Sdefed__Cell *c = ((Sdefed__Cell *const *)g)[i];
    return pool_key(c->strata, c->n_strata, buf, len);
}

static int summary_key(const void *g, size_t i, char *buf, size_t len)
{
    const Sdefed__Summary *s = ((Sdefed__Summary *const *)g)[i];
    return pool_key(s->strata, s->n_strata, buf, len);
}

static int surveil_key(const void *g, size_t i, char *buf, size_t len)
{
    return pool_surveil_key(((Sdefed__SurveilRow *const *)g)[i], buf, len);
}

static int validation_key(const void *g, size_t i, char *buf, size_t len)
{
    const Sdefed__Validation *v = ((Sdefed__Validation *const *)g)[i];
    return pool_key(v->strata, v->n_strata, buf, len);
}

static int check_cells(const Sdefed__QueryResult *r, char *why, size_t len)
{
    for (size_t i = 0; i < r->n_cells; i++) {
        const Sdefed__Cell *c = r->cells[i];
        int err;
        if (!c)
            return bad(why, len, "cells[%zu]: empty", i);
        if ((err = check_strata(c->strata, c->n_strata, "cells", i, why, len)) ||
            (err = check_count(c->value, c->status, "cells", i, why, len)))
            return err;
    }
    return check_unique(r->cells, r->n_cells, cell_key, POOL_KEY_MAX, "cells", why, len);
}

static int check_summaries(const Sdefed__QueryResult *r, char *why, size_t len)
{
    for (size_t i = 0; i < r->n_summaries; i++) {
        const Sdefed__Summary *s = r->summaries[i];
        int err;
        if (!s)
            return bad(why, len, "summaries[%zu]: empty", i);
        if ((err = check_strata(s->strata, s->n_strata, "summaries", i, why, len)) ||
            (err = check_count(s->n, s->n_status, "summaries", i, why, len)) ||
            (err = check_stat(s->mean, s->mean_status, "summaries", i, why, len)) ||
            (err = check_stat(s->sd, s->sd_status, "summaries", i, why, len)))
            return err;
        for (size_t k = 0; k < s->n_quantiles; k++)
            if (!s->quantiles[k] ||
                (err = check_stat(s->quantiles[k]->value, s->quantiles[k]->status, "summaries",
                                  i, why, len)))
                return err ? err : bad(why, len, "summaries[%zu]: empty quantile", i);
    }
    return check_unique(r->summaries, r->n_summaries, summary_key, POOL_KEY_MAX, "summaries",
                        why, len);
}

static int check_surveil(const Sdefed__QueryResult *r, char *why, size_t len)
{
    for (size_t i = 0; i < r->n_surveil; i++) {
        const Sdefed__SurveilRow *x = r->surveil[i];
        int err;
        if (!x)
            return bad(why, len, "surveil[%zu]: empty", i);
        if ((err = check_strata(x->strata, x->n_strata, "surveil", i, why, len)) ||
            (err = check_count(x->persons, x->persons_status, "surveil", i, why, len)) ||
            (err = check_count(x->events, x->events_status, "surveil", i, why, len)) ||
            (err = check_count(x->person_days, x->person_days_status, "surveil", i, why, len)) ||
            (err = check_stat(x->rate, x->rate_status, "surveil", i, why, len)) ||
            (err = check_stat(x->rate_lo, x->rate_status, "surveil", i, why, len)) ||
            (err = check_stat(x->rate_hi, x->rate_status, "surveil", i, why, len)) ||
            (err = check_stat(x->rate_ratio, x->rr_status, "surveil", i, why, len)) ||
            (err = check_stat(x->rr_lo, x->rr_status, "surveil", i, why, len)) ||
            (err = check_stat(x->rr_hi, x->rr_status, "surveil", i, why, len)))
            return err;
    }
    return check_unique(r->surveil, r->n_surveil, surveil_key, POOL_SURVEIL_KEY_MAX, "surveil",
                        why, len);
}

static int check_validations(const Sdefed__QueryResult *r, char *why, size_t len)
{
    for (size_t i = 0; i < r->n_validations; i++) {
        const Sdefed__Validation *v = r->validations[i];
        int err;
        if (!v)
            return bad(why, len, "validations[%zu]: empty", i);
        if ((err = check_strata(v->strata, v->n_strata, "validations", i, why, len)))
            return err;
        if (v->n && (err = check_count(v->n->value, v->n->status, "validations", i, why, len)))
            return err;
        if (v->events &&
            (err = check_count(v->events->value, v->events->status, "validations", i, why, len)))
            return err;
    }
    return check_unique(r->validations, r->n_validations, validation_key, POOL_KEY_MAX,
                        "validations", why, len);
}

static int check_catalog(const Sdefed__QueryResult *r, char *why, size_t len)
{
    for (size_t i = 0; i < r->n_catalog; i++) {
        const Sdefed__DatasetInfo *d = r->catalog[i];
        int err;
        if (!d)
            return bad(why, len, "catalog[%zu]: empty", i);
        if ((err = check_count(d->person_count, d->person_count_status, "catalog", i, why, len)))
            return err;
    }
    return 0;
}

int result_check(Sdefed__QueryKind kind, const Sdefed__QueryResult *res, char *why,
                 size_t whylen)
{
    /* Which payloads each kind answers with; anything else is a stray. */
    bool cells = kind == SDEFED__QUERY_KIND__KIND_COUNT;
    bool catalog = kind == SDEFED__QUERY_KIND__KIND_CATALOG;
    bool summaries = kind == SDEFED__QUERY_KIND__KIND_SUMMARY;
    bool surveil = kind == SDEFED__QUERY_KIND__KIND_SURVEIL;
    bool validations = kind == SDEFED__QUERY_KIND__KIND_VALIDATE;
    if ((res->n_cells && !cells) || (res->n_catalog && !catalog) ||
        (res->n_summaries && !summaries) || (res->n_surveil && !surveil) ||
        (res->n_validations && !validations))
        return bad(why, whylen, "it carries data of another query kind");
    int err;
    if ((err = check_cells(res, why, whylen)) || (err = check_catalog(res, why, whylen)) ||
        (err = check_summaries(res, why, whylen)) ||
        (err = check_surveil(res, why, whylen)) || (err = check_validations(res, why, whylen)))
        return err;
    return 0;
}
