/* agent/query_count_split.c — one large count as several statements over disjoint row ranges, run at once.
 *
 * See query_count_split.h. Part 0 runs on the calling (worker) thread over
 * the caller's connection; parts 1.. each get a thread and a connection of
 * their own (from the dataset pool, same read-only settings, deadline and
 * cancel flag). A part that cannot get a thread runs on the calling thread
 * after part 0, so a short-of-threads agent still answers. Each part sorts
 * its own (person, cell) rows; the caller merges the sorted parts, counting
 * each (person, cell) once and listing each person once.
 */
#include "query_count_split.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/log.h"

typedef struct person_cell {
    int64_t person;
    uint32_t cell;   /* < COHORT_MAX_CELLS */
} person_cell;

typedef struct part {
    const agent_dataset *ds;
    const query_ctx *q;
    const cohort_plan *cp;
    db_param *params;        /* the plan's, with this part's row range */
    db_conn *db;             /* part 0: the caller's; others open their own */
    atomic_size_t *total;    /* rows over all parts, for QUERY_MAX_PERSONS */
    person_cell *rows;
    size_t n, cap;
    int err;
    pthread_t thread;
    bool threaded;
} part;

static int part_row(void *ctx, const db_value *cols, int ncols)
{
    part *p = ctx;
    const cohort_plan *cp = p->cp;
    if ((size_t)ncols != cp->n_strata + 1 || cols[cp->n_strata].is_null)
        return SDF_EDB;
    size_t idx = 0;
    for (size_t k = 0; k < cp->n_strata; k++)
        idx = idx * cp->strata[k].n_levels + cohort_level_index(&cp->strata[k], &cols[k]);
    if (idx >= cp->n_cells || idx > UINT32_MAX)
        return SDF_EDB;
    if (atomic_fetch_add(p->total, 1) >= QUERY_MAX_PERSONS)
        return SDF_EOVERFLOW;
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 1024;
        person_cell *nr = realloc(p->rows, nc * sizeof *nr);
        if (!nr)
            return SDF_ENOMEM;
        p->rows = nr;
        p->cap = nc;
    }
    p->rows[p->n++] = (person_cell){ cols[cp->n_strata].i, (uint32_t)idx };
    return 0;
}

static int cmp_person_cell(const void *a, const void *b)
{
    const person_cell *x = a, *y = b;
    if (x->person != y->person)
        return (x->person > y->person) - (x->person < y->person);
    return (x->cell > y->cell) - (x->cell < y->cell);
}

static void part_run(part *p)
{
    db_conn *own = NULL;
    db_conn *db = p->db;
    if (!db) {
        p->err = db_open(p->ds, p->q->deadline_unix_ms, p->q->cancel, &own);
        if (p->err)
            return;
        db = own;
    }
    p->err = db_query(db, p->cp->sql.p, p->params, p->cp->n_params, part_row, p);
    db_close(own);
    if (p->err == 0 && p->n > 1)
        qsort(p->rows, p->n, sizeof *p->rows, cmp_person_cell);
}

static void *part_thread(void *arg)
{
    part_run(arg);
    return NULL;
}

/* Merge the sorted parts into counts and (want_persons) the distinct
 * persons, ascending. */
static int merge(query_ctx *q, part *parts, size_t k, size_t total, int64_t *counts)
{
    int64_t *persons = NULL;
    size_t n_persons = 0, pos[AGENT_PARALLEL_MAX] = { 0 };
    if (q->want_persons && total > 0 && !(persons = malloc(total * sizeof *persons)))
        return SDF_ENOMEM;
    bool have_last = false;
    person_cell last = { 0, 0 };
    for (;;) {
        size_t best = k;
        for (size_t i = 0; i < k; i++)
            if (pos[i] < parts[i].n &&
                (best == k ||
                 cmp_person_cell(&parts[i].rows[pos[i]], &parts[best].rows[pos[best]]) < 0))
                best = i;
        if (best == k)
            break;
        person_cell r = parts[best].rows[pos[best]++];
        if (have_last && r.person == last.person && r.cell == last.cell)
            continue;   /* the same person found again by another part */
        counts[r.cell]++;
        if (persons && (!have_last || r.person != last.person))
            persons[n_persons++] = r.person;
        last = r;
        have_last = true;
    }
    if (q->want_persons) {
        free(q->persons);
        q->persons = persons;
        q->n_persons = n_persons;
    }
    return 0;
}

/* How many parts: the dataset's `parallel` when the plan can be split and
 * its driving table is large enough (*lo, *hi its row ids), else 1 (or an
 * error from the row-id lookup). */
static int parts_for(const agent_dataset *ds, db_conn *db, const cohort_plan *cp, size_t *k,
                     int64_t *lo, int64_t *hi)
{
    *k = 1;
    size_t want = ds->parallel > AGENT_PARALLEL_MAX ? AGENT_PARALLEL_MAX : ds->parallel;
    const char *table = cohort_plan_split_table(cp);
    if (want < 2 || strcmp(ds->backend, "sqlite") != 0 || !table)
        return 0;
    int err = db_row_id_range(db, table, lo, hi);
    if (err == SDF_EINVAL)
        return 0;   /* no row ids to range over: one statement */
    if (err)
        return err;
    uint64_t span = *hi >= *lo ? (uint64_t)*hi - (uint64_t)*lo + 1 : 0;
    if (span >= (uint64_t)ds->parallel_min_rows && span >= want)
        *k = want;
    return 0;
}

int count_split_run(query_ctx *q, const agent_dataset *ds, db_conn *db, cohort_plan *cp,
                    int64_t *counts, size_t *n_parts)
{
    *n_parts = 0;
    if (!cohort_plan_person_cells(cp))
        return 0;
    size_t k;
    int64_t lo = 0, hi = 0;
    int err = parts_for(ds, db, cp, &k, &lo, &hi);
    if (err)
        return err;
    if (k == 1 && !q->want_persons)
        return 0;   /* the plain count statement is cheaper than fetching persons */

    cp->split = k > 1;
    err = cohort_plan_sql(db, cp, COHORT_SELECT_PERSON_CELLS);
    cp->split = false;
    if (err)
        return err;
    *n_parts = k;
    if (k > 1 && (cp->split_param < 1 || (size_t)cp->split_param + 1 > cp->n_params))
        return SDF_EINVAL;
    if (k == 1) {   /* one statement on the caller's connection */
        atomic_size_t total = 0;
        part one = { .ds = ds, .q = q, .cp = cp, .params = cp->params, .db = db,
                     .total = &total };
        part_run(&one);
        err = one.err ? one.err : merge(q, &one, 1, atomic_load(&total), counts);
        free(one.rows);
        return err;
    }

    part parts[AGENT_PARALLEL_MAX];
    atomic_size_t total = 0;
    memset(parts, 0, sizeof parts);
    db_param *params = calloc(k * cp->n_params, sizeof *params);
    if (!params)
        return SDF_ENOMEM;
    uint64_t step = ((uint64_t)hi - (uint64_t)lo + 1) / k;
    for (size_t i = 0; i < k; i++) {
        part *p = &parts[i];
        *p = (part){ .ds = ds, .q = q, .cp = cp, .params = params + i * cp->n_params,
                     .db = i == 0 ? db : NULL, .total = &total };
        memcpy(p->params, cp->params, cp->n_params * sizeof *p->params);
        /* ranges tile every int64 row id, the ends open */
        int64_t start = (int64_t)((uint64_t)lo + i * step);
        int64_t end = (int64_t)((uint64_t)lo + (i + 1) * step - 1);
        p->params[cp->split_param - 1].i = i == 0 ? INT64_MIN : start;
        p->params[cp->split_param].i = i == k - 1 ? INT64_MAX : end;
    }
    for (size_t i = 1; i < k; i++)
        parts[i].threaded = pthread_create(&parts[i].thread, NULL, part_thread, &parts[i]) == 0;
    part_run(&parts[0]);
    for (size_t i = 1; i < k; i++) {
        if (parts[i].threaded)
            pthread_join(parts[i].thread, NULL);
        else
            part_run(&parts[i]);   /* no thread to be had: here, in turn */
    }
    log_debug("count over dataset %s split by rows of %s into %zu parts", ds->name,
              cohort_plan_split_table(cp), k);

    for (size_t i = 0; i < k && !err; i++)
        err = parts[i].err;
    if (!err)
        err = merge(q, parts, k, atomic_load(&total), counts);
    for (size_t i = 0; i < k; i++)
        free(parts[i].rows);
    free(params);
    return err;
}
