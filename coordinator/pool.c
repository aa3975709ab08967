/* coordinator/pool.c — pool per-site released values; see pool.h. */
#include "pool.h"
#include "pool_validate.h"   /* validate kind (issue 5) */
#include "pool_surveil.h"    /* surveil kind (issue 6) */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

int pool_key(Sdefed__Stratum *const *strata, size_t n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const Sdefed__Stratum *s = strata[i];
        int w = snprintf(buf + used, len - used, "%s%s=%s", i ? "|" : "",
                         s && s->name ? s->name : "", s && s->value ? s->value : "");
        if (w < 0 || (size_t)w >= len - used)
            return SDF_EOVERFLOW;
        used += (size_t)w;
    }
    return 0;
}

int pool_strata_key(const Sdefed__Cell *c, char *buf, size_t len)
{
    return pool_key(c->strata, c->n_strata, buf, len);
}

static void free_cell(Sdefed__PooledCell *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_strata; i++) {
        free(p->strata[i]->name);
        free(p->strata[i]->value);
        free(p->strata[i]);
    }
    free(p->strata);
    free(p);
}

static void free_summary(Sdefed__Summary *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_strata; i++) {
        free(s->strata[i]->name);
        free(s->strata[i]->value);
        free(s->strata[i]);
    }
    free(s->strata);
    free(s);
}

void pool_free_cells(Sdefed__FederatedResult *r)
{
    for (size_t i = 0; i < r->n_pooled; i++)
        free_cell(r->pooled[i]);
    free(r->pooled);
    r->pooled = NULL;
    r->n_pooled = 0;
    for (size_t i = 0; i < r->n_pooled_summaries; i++)
        free_summary(r->pooled_summaries[i]);
    free(r->pooled_summaries);
    r->pooled_summaries = NULL;
    r->n_pooled_summaries = 0;
    pool_validations_free(r);   /* validate kind (issue 5) */
    pool_surveil_free(r);       /* surveil kind (issue 6) */
}

static Sdefed__PooledCell *new_cell(Sdefed__Stratum **strata, size_t n)
{
    Sdefed__PooledCell *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    sdefed__pooled_cell__init(p);
    p->strata = calloc(n ? n : 1, sizeof *p->strata);
    if (!p->strata) {
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        Sdefed__Stratum *s = calloc(1, sizeof *s);
        if (!s) {
            free_cell(p);
            return NULL;
        }
        sdefed__stratum__init(s);
        p->strata[p->n_strata++] = s;
        s->name = strdup(strata[i]->name ? strata[i]->name : "");
        s->value = strdup(strata[i]->value ? strata[i]->value : "");
        if (!s->name || !s->value) {
            free_cell(p);
            return NULL;
        }
    }
    /* Start "suppressed" until some site contributes a released value. */
    p->status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    return p;
}

/* Accumulator: pooled cells with their keys, kept in first-seen order. */
typedef struct acc {
    Sdefed__PooledCell **cells;
    char **keys;
    size_t n, cap;
} acc;

static Sdefed__PooledCell *acc_get(acc *a, const char *key, Sdefed__Stratum **strata,
                                   size_t n_strata)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->keys[i], key) == 0)
            return a->cells[i];
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        Sdefed__PooledCell **c = realloc(a->cells, cap * sizeof *c);
        if (!c)
            return NULL;
        a->cells = c;
        char **k = realloc(a->keys, cap * sizeof *k);
        if (!k)
            return NULL;
        a->keys = k;
        a->cap = cap;
    }
    Sdefed__PooledCell *p = new_cell(strata, n_strata);
    char *k = strdup(key);
    if (!p || !k) {
        free_cell(p);
        free(k);
        return NULL;
    }
    a->cells[a->n] = p;
    a->keys[a->n] = k;
    a->n++;
    return p;
}

static void add_value(Sdefed__PooledCell *p, int64_t value, Sdefed__CellStatus status)
{
    if (status == SDEFED__CELL_STATUS__CELL_SUPPRESSED) {
        p->lower_bound = true;
        return;
    }
    if (p->status == SDEFED__CELL_STATUS__CELL_SUPPRESSED) {
        /* first released contribution; earlier suppressions keep lower_bound */
        p->status = status;
        p->value = 0;
    } else if (status != p->status) {
        /* mixing exact and rounded/noised: the sum is only as exact as its
         * least exact part */
        if (p->status == SDEFED__CELL_STATUS__CELL_EXACT ||
            status == SDEFED__CELL_STATUS__CELL_NOISED)
            p->status = status;
    }
    p->value += value;
}

int pool_result(Sdefed__FederatedResult *r)
{
    acc a = { 0 };
    char key[POOL_KEY_MAX];
    int rc = 0;

    for (size_t s = 0; s < r->n_sites && rc == 0; s++) {
        const Sdefed__SiteResult *sr = r->sites[s];
        if (sr->status != SDEFED__SITE_STATUS__SITE_OK)
            continue;
        if (r->kind == SDEFED__QUERY_KIND__KIND_CATALOG) {
            /* Persons per dataset name across sites. */
            for (size_t d = 0; d < sr->n_catalog && rc == 0; d++) {
                const Sdefed__DatasetInfo *di = sr->catalog[d];
                Sdefed__Stratum st = SDEFED__STRATUM__INIT;
                Sdefed__Stratum *stp = &st;
                st.name = (char *)"dataset";
                st.value = di->name ? di->name : (char *)"";
                snprintf(key, sizeof key, "dataset=%s", st.value);
                Sdefed__PooledCell *p = acc_get(&a, key, &stp, 1);
                if (!p)
                    rc = SDF_ENOMEM;
                else
                    add_value(p, di->person_count, di->person_count_status);
            }
            continue;
        }
        for (size_t c = 0; c < sr->n_cells && rc == 0; c++) {
            const Sdefed__Cell *cell = sr->cells[c];
            if (pool_strata_key(cell, key, sizeof key) != 0)
                continue;
            Sdefed__PooledCell *p = acc_get(&a, key, cell->strata, cell->n_strata);
            if (!p)
                rc = SDF_ENOMEM;
            else
                add_value(p, cell->value, cell->status);
        }
    }
    for (size_t i = 0; i < a.n; i++)
        free(a.keys[i]);
    free(a.keys);
    if (rc != 0) {
        for (size_t i = 0; i < a.n; i++)
            free_cell(a.cells[i]);
        free(a.cells);
        return rc;
    }
    if ((r->kind == SDEFED__QUERY_KIND__KIND_SUMMARY && pool_summaries(r) != 0) ||
        (r->kind == SDEFED__QUERY_KIND__KIND_VALIDATE && pool_validations(r) != 0) ||
        (r->kind == SDEFED__QUERY_KIND__KIND_SURVEIL && pool_surveil(r) != 0)) {   /* issue 6 */
        for (size_t i = 0; i < a.n; i++)
            free_cell(a.cells[i]);
        free(a.cells);
        return SDF_ENOMEM;
    }
    /* A suppressed pooled cell carries no value. */
    for (size_t i = 0; i < a.n; i++)
        if (a.cells[i]->status == SDEFED__CELL_STATUS__CELL_SUPPRESSED)
            a.cells[i]->value = 0;
    r->pooled = a.cells;
    r->n_pooled = a.n;
    return 0;
}

/* ---- summary kind (issue 3) ---- */

typedef struct sum_acc {
    Sdefed__Summary *s;
    char *key;
    long double n_mean, sum_nm, n_var, ss_within;   /* sums over contributing sites */
    long double sum_n_m2;                           /* sum n_i mean_i^2 (for between) */
    long double n_sd;
    bool rounded;
} sum_acc;

static bool released(Sdefed__CellStatus st)
{
    return st == SDEFED__CELL_STATUS__CELL_EXACT || st == SDEFED__CELL_STATUS__CELL_ROUNDED ||
           st == SDEFED__CELL_STATUS__CELL_NOISED;
}

static Sdefed__Summary *summary_new(Sdefed__Stratum **strata, size_t n)
{
    Sdefed__Summary *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    sdefed__summary__init(s);
    s->strata = calloc(n ? n : 1, sizeof *s->strata);
    if (!s->strata) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        Sdefed__Stratum *st = calloc(1, sizeof *st);
        if (!st) {
            free_summary(s);
            return NULL;
        }
        sdefed__stratum__init(st);
        s->strata[s->n_strata++] = st;
        st->name = strdup(strata[i]->name ? strata[i]->name : "");
        st->value = strdup(strata[i]->value ? strata[i]->value : "");
        if (!st->name || !st->value) {
            free_summary(s);
            return NULL;
        }
    }
    s->n_status = s->mean_status = s->sd_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    return s;
}

int pool_summaries(Sdefed__FederatedResult *r)
{
    sum_acc *sums = NULL;
    size_t n = 0, cap = 0;
    char key[POOL_KEY_MAX];
    int rc = 0;

    for (size_t si = 0; si < r->n_sites && rc == 0; si++) {
        const Sdefed__SiteResult *sr = r->sites[si];
        if (sr->status != SDEFED__SITE_STATUS__SITE_OK)
            continue;
        for (size_t k = 0; k < sr->n_summaries && rc == 0; k++) {
            const Sdefed__Summary *x = sr->summaries[k];
            if (pool_key(x->strata, x->n_strata, key, sizeof key) != 0)
                continue;
            size_t i = 0;
            while (i < n && strcmp(sums[i].key, key) != 0)
                i++;
            if (i == n) {
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 16;
                    sum_acc *na = realloc(sums, nc * sizeof *na);
                    if (!na) {
                        rc = SDF_ENOMEM;
                        break;
                    }
                    sums = na;
                    cap = nc;
                }
                memset(&sums[n], 0, sizeof sums[n]);
                sums[n].s = summary_new(x->strata, x->n_strata);
                sums[n].key = strdup(key);
                n++;
                if (!sums[i].s || !sums[i].key) {
                    rc = SDF_ENOMEM;
                    break;
                }
            }
            sum_acc *a = &sums[i];
            Sdefed__Summary *p = a->s;
            bool n_ok = released(x->n_status) && x->n > 0;
            bool mean_ok = n_ok && released(x->mean_status);
            bool sd_ok = mean_ok && released(x->sd_status);
            if (!released(x->n_status) || (x->n > 0 && (!mean_ok || !sd_ok)))
                p->partial = true;
            if (released(x->n_status)) {
                if (p->n_status == SDEFED__CELL_STATUS__CELL_SUPPRESSED ||
                    x->n_status != SDEFED__CELL_STATUS__CELL_EXACT)
                    p->n_status = p->n_status == SDEFED__CELL_STATUS__CELL_SUPPRESSED
                                      ? x->n_status
                                      : (x->n_status == SDEFED__CELL_STATUS__CELL_EXACT
                                             ? p->n_status : x->n_status);
                p->n += x->n;
            }
            if (x->n_status != SDEFED__CELL_STATUS__CELL_EXACT && n_ok)
                a->rounded = true;
            if (mean_ok) {
                a->n_mean += x->n;
                a->sum_nm += (long double)x->n * x->mean;
                p->sites++;
            }
            if (sd_ok) {
                a->n_sd += x->n;
                a->ss_within += (long double)(x->n - 1) * x->sd * x->sd;
                a->sum_n_m2 += (long double)x->n * x->mean * x->mean;
                a->n_var += (long double)x->n * x->mean;   /* sum n_i m_i over sd sites */
            }
        }
    }
    if (rc == 0 && n > 0) {
        r->pooled_summaries = calloc(n, sizeof *r->pooled_summaries);
        if (!r->pooled_summaries)
            rc = SDF_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        sum_acc *a = &sums[i];
        Sdefed__Summary *p = a->s;
        if (rc == 0 && p) {
            Sdefed__CellStatus st = a->rounded ? SDEFED__CELL_STATUS__CELL_ROUNDED
                                               : SDEFED__CELL_STATUS__CELL_EXACT;
            if (a->n_mean > 0) {
                p->mean = (double)(a->sum_nm / a->n_mean);
                p->mean_status = st;
            }
            if (a->n_sd > 1) {
                /* total SS = within + between, between about the sd sites' mean */
                long double m = a->n_var / a->n_sd;
                long double between = a->sum_n_m2 - a->n_sd * m * m;
                long double var = (a->ss_within + (between > 0 ? between : 0)) / (a->n_sd - 1);
                p->sd = (double)sqrtl(var);
                p->sd_status = st;
            }
            if (p->n_status == SDEFED__CELL_STATUS__CELL_SUPPRESSED)
                p->n = 0;
            r->pooled_summaries[r->n_pooled_summaries++] = p;
        } else {
            free_summary(p);
        }
        free(a->key);
    }
    free(sums);
    return rc;
}
