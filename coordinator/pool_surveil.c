/* coordinator/pool_surveil.c — pooling `surveil` results across sites (issue 6).
 *
 * See pool_surveil.h. Rows are matched by arm, period and strata; counts
 * and person-days add up; pooled rates come from the pooled sums, never
 * from averaging site rates.
 */
#include "pool_surveil.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/surveil_stats.h"

#define POOL_SURVEIL_MAX_ROWS 200000
#define KEY_MAX POOL_SURVEIL_KEY_MAX

typedef struct prow {
    Sdefed__SurveilRow *row;
    char key[KEY_MAX];
    bool any[3], rounded[3], missing[3];
    int64_t rate_events;     /* sums over sites that released events and days */
    int64_t rate_days;
    uint32_t rate_sites;
} prow;

static void row_free(Sdefed__SurveilRow *row)
{
    if (row)
        sdefed__surveil_row__free_unpacked(row, NULL);
}

void pool_surveil_free(Sdefed__FederatedResult *r)
{
    for (size_t i = 0; i < r->n_pooled_surveil; i++)
        row_free(r->pooled_surveil[i]);
    free(r->pooled_surveil);
    r->pooled_surveil = NULL;
    r->n_pooled_surveil = 0;
}

int pool_surveil_key(const Sdefed__SurveilRow *x, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%c|%s", x->comparator ? 'c' : 'e', x->period ? x->period : "");
    if (n < 0 || (size_t)n >= len)
        return SDF_EOVERFLOW;
    size_t off = (size_t)n;
    for (size_t k = 0; k < x->n_strata; k++) {
        const Sdefed__Stratum *s = x->strata[k];
        n = snprintf(buf + off, len - off, "|%s=%s", s && s->name ? s->name : "",
                     s && s->value ? s->value : "");
        if (n < 0 || (size_t)n >= len - off)
            return SDF_EOVERFLOW;
        off += (size_t)n;
    }
    return 0;
}

static Sdefed__SurveilRow *row_new(const Sdefed__SurveilRow *x)
{
    Sdefed__SurveilRow *p = malloc(sizeof *p);
    if (!p)
        return NULL;
    sdefed__surveil_row__init(p);
    p->period = strdup(x->period ? x->period : "");
    p->strata = calloc(x->n_strata ? x->n_strata : 1, sizeof *p->strata);
    if (!p->period || !p->strata) {
        row_free(p);
        return NULL;
    }
    for (size_t k = 0; k < x->n_strata; k++) {
        Sdefed__Stratum *s = malloc(sizeof *s);
        if (!s) {
            row_free(p);
            return NULL;
        }
        sdefed__stratum__init(s);
        p->strata[p->n_strata++] = s;
        s->name = strdup(x->strata[k] && x->strata[k]->name ? x->strata[k]->name : "");
        s->value = strdup(x->strata[k] && x->strata[k]->value ? x->strata[k]->value : "");
        if (!s->name || !s->value) {
            row_free(p);
            return NULL;
        }
    }
    p->comparator = x->comparator;
    return p;
}

static bool released(Sdefed__CellStatus s)
{
    return s == SDEFED__CELL_STATUS__CELL_EXACT || s == SDEFED__CELL_STATUS__CELL_ROUNDED ||
           s == SDEFED__CELL_STATUS__CELL_NOISED;
}

static void add(prow *p, int i, int64_t *sum, int64_t v, Sdefed__CellStatus st)
{
    if (released(st)) {
        *sum += v;
        p->any[i] = true;
        p->rounded[i] = p->rounded[i] || st != SDEFED__CELL_STATUS__CELL_EXACT;
    } else {
        p->missing[i] = true;
    }
}

static Sdefed__CellStatus status(const prow *p, int i)
{
    if (!p->any[i])
        return SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    return p->rounded[i] ? SDEFED__CELL_STATUS__CELL_ROUNDED : SDEFED__CELL_STATUS__CELL_EXACT;
}

int pool_surveil(Sdefed__FederatedResult *r)
{
    prow *rows = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;

    pool_surveil_free(r);
    for (size_t i = 0; i < r->n_sites && rc == 0; i++) {
        const Sdefed__SiteResult *sr = r->sites[i];
        if (!sr || sr->status != SDEFED__SITE_STATUS__SITE_OK)
            continue;
        for (size_t k = 0; k < sr->n_surveil && rc == 0; k++) {
            const Sdefed__SurveilRow *x = sr->surveil[k];
            char key[KEY_MAX];
            if (!x || pool_surveil_key(x, key, sizeof key) != 0)
                continue;
            size_t j;
            for (j = 0; j < n; j++)
                if (strcmp(rows[j].key, key) == 0)
                    break;
            if (j == n) {
                if (n >= POOL_SURVEIL_MAX_ROWS)
                    continue;
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 64;
                    prow *np = realloc(rows, nc * sizeof *np);
                    if (!np) {
                        rc = SDF_ENOMEM;
                        break;
                    }
                    rows = np;
                    cap = nc;
                }
                memset(&rows[n], 0, sizeof rows[n]);
                memcpy(rows[n].key, key, sizeof key);
                rows[n].row = row_new(x);
                if (!rows[n].row) {
                    rc = SDF_ENOMEM;
                    break;
                }
                n++;
            }
            prow *p = &rows[j];
            add(p, 0, &p->row->persons, x->persons, x->persons_status);
            add(p, 1, &p->row->events, x->events, x->events_status);
            add(p, 2, &p->row->person_days, x->person_days, x->person_days_status);
            if (released(x->events_status) && released(x->person_days_status)) {
                p->rate_events += x->events;
                p->rate_days += x->person_days;
                p->rate_sites++;
            }
        }
    }
    if (rc != 0) {
        for (size_t j = 0; j < n; j++)
            row_free(rows[j].row);
        free(rows);
        return rc;
    }
    for (size_t j = 0; j < n; j++) {
        prow *p = &rows[j];
        Sdefed__SurveilRow *o = p->row;
        o->persons_status = status(p, 0);
        o->events_status = status(p, 1);
        o->person_days_status = status(p, 2);
        o->lower_bound = p->missing[0] || p->missing[1] || p->missing[2];
        o->sites = p->rate_sites;
        o->rate_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
        o->rr_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
        if (p->rate_sites > 0 && p->rate_days > 0 &&
            surv_rate(p->rate_events, (double)p->rate_days, &o->rate, &o->rate_lo,
                      &o->rate_hi) == 0)
            o->rate_status = p->rounded[1] || p->rounded[2] ? SDEFED__CELL_STATUS__CELL_ROUNDED
                                                            : SDEFED__CELL_STATUS__CELL_EXACT;
    }
    /* rate ratios: exposure row against the comparator row of its period/stratum */
    for (size_t j = 0; j < n; j++) {
        prow *p = &rows[j];
        if (p->row->comparator || p->row->rate_status == SDEFED__CELL_STATUS__CELL_SUPPRESSED)
            continue;
        char ck[KEY_MAX];
        memcpy(ck, p->key, sizeof ck);
        ck[0] = 'c';
        for (size_t k = 0; k < n; k++) {
            prow *c = &rows[k];
            if (!c->row->comparator || strcmp(c->key, ck) != 0 ||
                c->row->rate_status == SDEFED__CELL_STATUS__CELL_SUPPRESSED)
                continue;
            Sdefed__SurveilRow *o = p->row;
            if (surv_rate_ratio(p->rate_events, (double)p->rate_days, c->rate_events,
                                (double)c->rate_days, &o->rate_ratio, &o->rr_lo,
                                &o->rr_hi) == 0)
                o->rr_status = o->rate_status == SDEFED__CELL_STATUS__CELL_EXACT &&
                                       c->row->rate_status == SDEFED__CELL_STATUS__CELL_EXACT
                                   ? SDEFED__CELL_STATUS__CELL_EXACT
                                   : SDEFED__CELL_STATUS__CELL_ROUNDED;
            break;
        }
    }
    r->pooled_surveil = calloc(n ? n : 1, sizeof *r->pooled_surveil);
    if (!r->pooled_surveil) {
        for (size_t j = 0; j < n; j++)
            row_free(rows[j].row);
        free(rows);
        return SDF_ENOMEM;
    }
    for (size_t j = 0; j < n; j++)
        r->pooled_surveil[j] = rows[j].row;
    r->n_pooled_surveil = n;
    free(rows);
    return 0;
}
