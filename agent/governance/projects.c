/* agent/governance/projects.c — the projects table and the admission rule
 * (projects.h). */
#include "governance/projects.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sdefed/conf.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"
#include "sdefed/stmt_cache.h"

static bool kind_known(const char *name)
{
    const ProtobufCEnumDescriptor *d = &sdefed__query_kind__descriptor;
    for (unsigned i = 0; i < d->n_values; i++) {
        const char *n = spec_kind_name((Sdefed__QueryKind)d->values[i].value);
        if (n[0] && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

bool project_list_valid(const char *list, bool kinds_only, char *why, size_t whylen)
{
    if (strcmp(list, "*") == 0)
        return true;
    size_t len = strlen(list);
    if (len == 0 || len >= PROJECT_LIST_MAX) {
        snprintf(why, whylen, "expected '*' or a comma-separated list (1..%d bytes)",
                 PROJECT_LIST_MAX - 1);
        return false;
    }
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char name[65];
        if (n == 0 || n > 63) {
            snprintf(why, whylen, "empty or over-long name in the list");
            return false;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        if (!conf_valid_name(name)) {
            snprintf(why, whylen, "'%s' is not a valid name ([A-Za-z0-9._-])", name);
            return false;
        }
        if (kinds_only && !kind_known(name)) {
            snprintf(why, whylen, "'%s' is not a query kind", name);
            return false;
        }
        if (!e)
            break;
        p = e + 1;
        if (!*p) {
            snprintf(why, whylen, "trailing comma");
            return false;
        }
    }
    return true;
}

bool project_list_has(const char *list, const char *name)
{
    if (strcmp(list, "*") == 0)
        return true;
    size_t nl = strlen(name);
    if (nl == 0)
        return false;
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == nl && memcmp(p, name, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool text_ok(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n >= max || !isprint((unsigned char)s[n]))
            return false;
    return true;
}

int project_add(state *s, gov_project *p, char *err, size_t errlen)
{
    char why[256];
    if (!conf_valid_name(p->id)) {
        snprintf(err, errlen, "project id must be 1-63 of [A-Za-z0-9._-]");
        return SDF_EINVAL;
    }
    if (!text_ok(p->description, sizeof p->description - 1)) {
        snprintf(err, errlen, "description: printable text up to %zu bytes",
                 sizeof p->description - 1);
        return SDF_EINVAL;
    }
    if (!project_list_valid(p->kinds, true, why, sizeof why)) {
        snprintf(err, errlen, "kinds: %s", why);
        return SDF_EINVAL;
    }
    if (!project_list_valid(p->datasets, false, why, sizeof why)) {
        snprintf(err, errlen, "datasets: %s", why);
        return SDF_EINVAL;
    }
    if (!project_list_valid(p->requesters, false, why, sizeof why)) {
        snprintf(err, errlen, "requesters: %s", why);
        return SDF_EINVAL;
    }
    if (p->release != RELEASE_AUTO && p->release != RELEASE_REVIEW) {
        snprintf(err, errlen, "release: auto or review");
        return SDF_EINVAL;
    }
    if (p->min_cell < 0 || p->min_cell > 1000000 || p->rounding < 0 || p->rounding > 1000000) {
        snprintf(err, errlen, "min_cell and rounding: 0 (site policy) .. 1000000");
        return SDF_EINVAL;
    }
    p->created_ms = now_ms();
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO projects(id, description, kinds, datasets, requesters,"
                           " expires_ms, release, min_cell, rounding, zero_is_disclosive,"
                           " created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "state database: %s", sqlite3_errmsg(db));
        return SDF_EDB;
    }
    sqlite3_bind_text(st, 1, p->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, p->description, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, p->kinds, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, p->datasets, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, p->requesters, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, p->expires_ms);
    sqlite3_bind_text(st, 7, p->release == RELEASE_AUTO ? "auto" : "review", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, p->min_cell);
    sqlite3_bind_int64(st, 9, p->rounding);
    sqlite3_bind_int(st, 10, p->zero_is_disclosive);
    sqlite3_bind_int64(st, 11, p->created_ms);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_CONSTRAINT) {
        snprintf(err, errlen, "project '%s' already exists (revoke it, or pick another id)", p->id);
        return SDF_EREFUSED;
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "state database: %s", sqlite3_errmsg(db));
        return SDF_EDB;
    }
    return 0;
}

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t len)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    snprintf(dst, len, "%s", t ? t : "");
}

#define PROJECT_COLUMNS                                                                     \
    "id, description, kinds, datasets, requesters, expires_ms, release, min_cell, rounding," \
    " zero_is_disclosive, created_ms, revoked_ms, revoke_reason"

static void row_to_project(sqlite3_stmt *st, gov_project *p)
{
    memset(p, 0, sizeof *p);
    copy_col(st, 0, p->id, sizeof p->id);
    copy_col(st, 1, p->description, sizeof p->description);
    copy_col(st, 2, p->kinds, sizeof p->kinds);
    copy_col(st, 3, p->datasets, sizeof p->datasets);
    copy_col(st, 4, p->requesters, sizeof p->requesters);
    p->expires_ms = sqlite3_column_int64(st, 5);
    const char *rel = (const char *)sqlite3_column_text(st, 6);
    p->release = rel && strcmp(rel, "auto") == 0 ? RELEASE_AUTO : RELEASE_REVIEW;
    p->min_cell = sqlite3_column_int64(st, 7);
    p->rounding = sqlite3_column_int64(st, 8);
    p->zero_is_disclosive = sqlite3_column_int(st, 9) != 0;
    p->created_ms = sqlite3_column_int64(st, 10);
    p->revoked_ms = sqlite3_column_int64(st, 11);
    copy_col(st, 12, p->revoke_reason, sizeof p->revoke_reason);
}

int project_get(state *s, const char *id, gov_project *out)
{
    sqlite3 *db = state_db(s);
    stmt_cache *sc = state_stmts(s);   /* run on every query: kept prepared */
    sqlite3_stmt *st;
    if (stmt_cache_get(sc, "SELECT " PROJECT_COLUMNS " FROM projects WHERE id = ?1", &st) !=
        SQLITE_OK) {
        log_error("projects: %s", sqlite3_errmsg(db));
        return SDF_EDB;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row_to_project(st, out);
    else if (rc != SQLITE_DONE)
        log_error("projects: %s", sqlite3_errmsg(db));
    stmt_cache_put(sc, st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? SDF_ENOTFOUND : SDF_EDB;
}

int project_each(state *s, int (*fn)(const gov_project *p, void *arg), void *arg)
{
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, "SELECT " PROJECT_COLUMNS " FROM projects ORDER BY id", -1, &st,
                           NULL) != SQLITE_OK)
        return SDF_EDB;
    gov_project *p = malloc(sizeof *p);
    if (!p) {
        sqlite3_finalize(st);
        return SDF_ENOMEM;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        row_to_project(st, p);
        if (fn(p, arg) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    free(p);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : SDF_EDB;
}

int project_revoke(state *s, const char *id, const char *reason)
{
    sqlite3 *db = state_db(s);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db,
                           "UPDATE projects SET revoked_ms = ?2, revoke_reason = ?3"
                           " WHERE id = ?1 AND revoked_ms = 0",
                           -1, &st, NULL) != SQLITE_OK)
        return SDF_EDB;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms());
    sqlite3_bind_text(st, 3, reason ? reason : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return SDF_EDB;
    if (sqlite3_changes(db) == 1)
        return 0;
    gov_project p;
    rc = project_get(s, id, &p);
    return rc == 0 ? SDF_EREFUSED : rc;
}

int project_admit(const gov_project *p, const Sdefed__QueryRequest *req, int64_t now,
                  char *reason, size_t reasonlen)
{
    const Sdefed__QuerySpec *spec = req->spec;
    if (p->revoked_ms) {
        snprintf(reason, reasonlen, "project '%s' has been revoked", p->id);
        return SDF_EREFUSED;
    }
    if (p->expires_ms && now >= p->expires_ms) {
        char when[40];
        project_format_time(p->expires_ms, when, sizeof when);
        snprintf(reason, reasonlen, "project '%s' expired at %s", p->id, when);
        return SDF_EREFUSED;
    }
    const char *kind = spec ? spec_kind_name(spec->kind) : "";
    if (!kind[0] || !project_list_has(p->kinds, kind)) {
        snprintf(reason, reasonlen, "query kind '%s' is not allowed in project '%s'",
                 kind[0] ? kind : "?", p->id);
        return SDF_EREFUSED;
    }
    const char *ds = spec && spec->dataset ? spec->dataset : "";
    if (ds[0] && !project_list_has(p->datasets, ds)) {
        if (conf_valid_name(ds))
            snprintf(reason, reasonlen, "dataset '%s' is not allowed in project '%s'", ds, p->id);
        else
            snprintf(reason, reasonlen, "dataset not allowed in project '%s'", p->id);
        return SDF_EREFUSED;
    }
    const char *who = req->requester ? req->requester : "";
    if (!project_list_has(p->requesters, who)) {
        if (conf_valid_name(who))
            snprintf(reason, reasonlen, "requester '%s' is not on project '%s'", who, p->id);
        else
            snprintf(reason, reasonlen, "requester is not on project '%s'", p->id);
        return SDF_EREFUSED;
    }
    return 0;
}

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int project_parse_date(const char *s, bool end_of_day, int64_t *ms)
{
    int y, mo, d, h = 0, mi = 0, se = 0, n = 0;
    size_t len = strlen(s);
    if (len == 10) {
        if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
            return SDF_EINVAL;
    } else if (len == 20) {
        if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2dZ%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 ||
            n != 20)
            return SDF_EINVAL;
    } else {
        return SDF_EINVAL;
    }
    static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
        mi > 59 || se > 59)
        return SDF_EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (mo == 2 && d == 29 && !leap)
        return SDF_EINVAL;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d) + (end_of_day && len == 10);
    *ms = ((days * 86400) + h * 3600 + mi * 60 + se) * 1000;
    return 0;
}

void project_format_time(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
