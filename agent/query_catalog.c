/* agent/query_catalog.c — describe a dataset for `catalog` queries and Hello.
 *
 * For discovery and feasibility: a dataset's name and type, its OMOP CDM
 * version (cdm_source.cdm_version normalised to "5.3" / "5.4"), and, for
 * catalog queries only, the number of persons (through disc_count, so
 * rounded or suppressed like any other count), the data freshness (latest
 * observation_period_end_date as an ISO date; a date, not patient-level)
 * and the event domains whose tables exist and are non-empty. All SQL here
 * is fixed text over internal table names; nothing from a request reaches it.
 */
#include "query_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disclosure/disclosure.h"
#include "sdefed/log.h"

typedef struct text_out {
    char buf[64];
    bool found;
} text_out;

static int first_text(void *ctx, const db_value *cols, int ncols)
{
    text_out *t = ctx;
    if (t->found)
        return 0;
    t->found = true;
    const char *s = ncols >= 1 ? db_value_text(&cols[0]) : NULL;
    if (s)
        snprintf(t->buf, sizeof t->buf, "%s", s);
    return 0;
}

static int first_int(void *ctx, const db_value *cols, int ncols)
{
    int64_t *v = ctx;
    if (ncols >= 1 && !cols[0].is_null)
        *v = cols[0].i;
    return 0;
}

/* "v5.3.1", "CDM v5.4.0", "5.4" -> "5.3"/"5.4": the first MAJOR.MINOR
 * (one or two digits each) in the text, or "" when there is none. */
static void version_normalise(const char *in, char *out, size_t outlen)
{
    out[0] = '\0';
    for (const char *p = in; *p; p++) {
        if (!isdigit((unsigned char)*p))
            continue;
        const char *q = p;
        size_t maj = 0, min = 0;
        while (isdigit((unsigned char)*q) && maj < 3) {
            q++;
            maj++;
        }
        if (maj > 2 || *q != '.')
            return;
        q++;
        const char *m = q;
        while (isdigit((unsigned char)*q) && min < 3) {
            q++;
            min++;
        }
        if (min == 0 || min > 2)
            return;
        snprintf(out, outlen, "%.*s.%.*s", (int)maj, p, (int)min, m);
        return;
    }
}

/* Accept exactly YYYY-MM-DD. */
static bool is_iso_date(const char *s)
{
    static const char pat[] = "dddd-dd-dd";
    for (size_t k = 0; k < sizeof pat - 1; k++) {
        if (pat[k] == 'd' ? !isdigit((unsigned char)s[k]) : s[k] != pat[k])
            return false;
    }
    return s[sizeof pat - 1] == '\0';
}

static int read_version(db_conn *db, char *out, size_t outlen)
{
    bool ex;
    out[0] = '\0';
    int err = db_table_exists(db, "cdm_source", &ex);
    if (err || !ex)
        return err;
    text_out t = { .found = false };
    err = db_query(db, "SELECT cdm_version FROM cdm_source WHERE cdm_version IS NOT NULL "
                       "LIMIT 1", NULL, 0, first_text, &t);
    if (err)
        return err;
    version_normalise(t.buf, out, outlen);
    return 0;
}

static int read_freshness(db_conn *db, char *out, size_t outlen)
{
    bool ex;
    char expr[1024], sql[1200];
    out[0] = '\0';
    int err = db_table_exists(db, "observation_period", &ex);
    if (err || !ex)
        return err;
    int n = db_sql_date_iso(db, "m", expr, sizeof expr);
    if (n < 0)
        return n;
    n = snprintf(sql, sizeof sql, "SELECT %s FROM (SELECT MAX(observation_period_end_date) "
                                  "AS m FROM observation_period) op", expr);
    if (n < 0 || (size_t)n >= sizeof sql)
        return SDF_EOVERFLOW;
    text_out t = { .found = false };
    err = db_query(db, sql, NULL, 0, first_text, &t);
    if (err)
        return err;
    if (is_iso_date(t.buf) && outlen > 10) {
        memcpy(out, t.buf, 10);
        out[10] = '\0';
    }
    return 0;
}

static int read_domains(db_conn *db, Sdefed__DatasetInfo *info)
{
    info->domains = calloc(query_n_omop_domains, sizeof *info->domains);
    if (!info->domains)
        return SDF_ENOMEM;
    for (size_t k = 0; k < query_n_omop_domains; k++) {
        const omop_domain *d = &query_omop_domains[k];
        bool ex;
        char sql[160];
        int err = db_table_exists(db, d->table, &ex);
        if (err)
            return err;
        if (!ex)
            continue;
        snprintf(sql, sizeof sql, "SELECT EXISTS (SELECT 1 FROM %s)", d->table);
        int64_t any = 0;
        err = db_query(db, sql, NULL, 0, first_int, &any);
        if (err)
            return err;
        if (!any)
            continue;
        info->domains[info->n_domains] = strdup(d->name);
        if (!info->domains[info->n_domains])
            return SDF_ENOMEM;
        info->n_domains++;
    }
    return 0;
}

static int read_persons(query_ctx *q, db_conn *db, Sdefed__DatasetInfo *info)
{
    bool ex;
    int64_t n = 0;
    int err = db_table_exists(db, "person", &ex);
    if (err)
        return err;
    if (ex) {
        err = db_query(db, "SELECT COUNT(*) FROM person", NULL, 0, first_int, &n);
        if (err)
            return err;
    }
    disc_value dv = disc_count(q->policy, n, &q->rules);
    info->person_count = dv.status == DISC_SUPPRESSED ? 0 : dv.value;
    info->person_count_status = dv.status == DISC_EXACT ? SDEFED__CELL_STATUS__CELL_EXACT
                              : dv.status == DISC_ROUNDED ? SDEFED__CELL_STATUS__CELL_ROUNDED
                              : SDEFED__CELL_STATUS__CELL_SUPPRESSED;
    return 0;
}

static int set_str(char **field, const char *v)
{
    char *s = strdup(v);
    if (!s)
        return SDF_ENOMEM;
    *field = s;
    return 0;
}

int query_catalog_dataset(query_ctx *q, const agent_dataset *ds, bool counts,
                          Sdefed__DatasetInfo **out)
{
    db_conn *db = NULL;
    char version[16] = "", fresh[16] = "";
    *out = NULL;

    Sdefed__DatasetInfo *info = malloc(sizeof *info);
    if (!info)
        return SDF_ENOMEM;
    sdefed__dataset_info__init(info);
    int err = set_str(&info->name, ds->name);
    if (!err)
        err = set_str(&info->type, ds->type);
    if (err)
        goto out;
    if (strcmp(ds->type, "omop") != 0) {
        /* Nothing else is described for other dataset types yet. */
        if (counts)
            info->person_count_status = SDEFED__CELL_STATUS__CELL_SUPPRESSED;
        goto out;
    }

    err = db_open(ds, q->deadline_unix_ms, q->cancel, &db);
    if (err) {
        if (err == SDF_ECONFIG)
            err = SDF_EDB;
        goto out;
    }
    err = read_version(db, version, sizeof version);
    if (!err && version[0])
        err = set_str(&info->omop_version, version);
    if (err || !counts)
        goto out;
    err = read_persons(q, db, info);
    if (!err)
        err = read_freshness(db, fresh, sizeof fresh);
    if (!err && fresh[0])
        err = set_str(&info->data_freshness, fresh);
    if (!err)
        err = read_domains(db, info);
out:
    db_close(db);
    if (err) {
        sdefed__dataset_info__free_unpacked(info, NULL);
        return err;
    }
    *out = info;
    return 0;
}
