/* coordinator/pool.c — pool per-site released values; see pool.h. */
#include "pool.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pool_strata_key(const Sdefed__Cell *c, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < c->n_strata; i++) {
        const Sdefed__Stratum *s = c->strata[i];
        int n = snprintf(buf + used, len - used, "%s%s=%s", i ? "|" : "",
                         s->name ? s->name : "", s->value ? s->value : "");
        if (n < 0 || (size_t)n >= len - used)
            return SDF_EOVERFLOW;
        used += (size_t)n;
    }
    return 0;
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

void pool_free_cells(Sdefed__FederatedResult *r)
{
    for (size_t i = 0; i < r->n_pooled; i++)
        free_cell(r->pooled[i]);
    free(r->pooled);
    r->pooled = NULL;
    r->n_pooled = 0;
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
    char key[1024];
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
    /* A suppressed pooled cell carries no value. */
    for (size_t i = 0; i < a.n; i++)
        if (a.cells[i]->status == SDEFED__CELL_STATUS__CELL_SUPPRESSED)
            a.cells[i]->value = 0;
    r->pooled = a.cells;
    r->n_pooled = a.n;
    return 0;
}
