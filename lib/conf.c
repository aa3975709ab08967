/* lib/conf.c — table-driven INI loading on top of inih; see conf.h. */
#include "sdefed/conf.h"
#include "sdefed/log.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct load_state {
    const conf_key *keys;
    size_t n_keys;
    void *target;
    conf_section_fn other;
    char dir[PATH_MAX];
    char last_section[128];
    unsigned char *seen;    /* one flag per key */
    bool failed;            /* inih goes on after an error; the first one counts */
    char reason[512];
} load_state;

bool conf_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            return false;
    }
    return true;
}

int conf_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = true; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = false; return 0; }
    }
    return SDF_EINVAL;
}

static int parse_ll(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    if (*s == '\0')
        return SDF_EINVAL;
    long long v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return SDF_EINVAL;
    *out = v;
    return 0;
}

int conf_parse_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (*s == '[') {            /* [::1]:7443 */
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return SDF_EINVAL;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return SDF_EINVAL;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return SDF_EINVAL;
    long long p;
    if (parse_ll(colon + 1, 0, 65535, &p) != 0)
        return SDF_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

int conf_resolve_path(const char *dir, const char *value, char *out, size_t outlen)
{
    int n;
    if (value[0] == '/' || dir[0] == '\0')
        n = snprintf(out, outlen, "%s", value);
    else
        n = snprintf(out, outlen, "%s/%s", dir, value);
    return (n < 0 || (size_t)n >= outlen) ? SDF_EINVAL : 0;
}

static int set_value(load_state *st, const conf_key *k, const char *value)
{
    char *base = (char *)st->target;
    long long v;
    switch (k->type) {
    case CONF_STR:
        if (strlen(value) >= k->size) {
            snprintf(st->reason, sizeof st->reason, "%s: value too long (max %zu)", k->name,
                     k->size - 1);
            return SDF_ECONFIG;
        }
        memcpy(base + k->offset, value, strlen(value) + 1);
        return 0;
    case CONF_PATH:
        if (conf_resolve_path(st->dir, value, base + k->offset, k->size) != 0) {
            snprintf(st->reason, sizeof st->reason, "%s: path too long", k->name);
            return SDF_ECONFIG;
        }
        return 0;
    case CONF_UINT:
    case CONF_SIZE:
    case CONF_INT64:
    case CONF_SECONDS_MS:
        if (parse_ll(value, k->min, k->max, &v) != 0) {
            snprintf(st->reason, sizeof st->reason,
                     "%s: expected an integer between %lld and %lld", k->name, k->min, k->max);
            return SDF_ECONFIG;
        }
        if (k->type == CONF_UINT)
            *(unsigned *)(base + k->offset) = (unsigned)v;
        else if (k->type == CONF_SIZE)
            *(size_t *)(base + k->offset) = (size_t)v;
        else if (k->type == CONF_INT64)
            *(int64_t *)(base + k->offset) = (int64_t)v;
        else
            *(unsigned *)(base + k->offset) = (unsigned)(v * 1000);
        return 0;
    case CONF_BOOL:
        if (conf_parse_bool(value, (bool *)(base + k->offset)) != 0) {
            snprintf(st->reason, sizeof st->reason, "%s: expected true or false", k->name);
            return SDF_ECONFIG;
        }
        return 0;
    case CONF_HOSTPORT:
        if (conf_parse_hostport(value, base + k->offset, k->size,
                                (int *)(base + k->offset2)) != 0) {
            snprintf(st->reason, sizeof st->reason, "%s: expected HOST:PORT", k->name);
            return SDF_ECONFIG;
        }
        return 0;
    case CONF_LOGLEVEL:
        if (log_level_parse(value, (enum sdf_log_level *)(base + k->offset)) != 0) {
            snprintf(st->reason, sizeof st->reason,
                     "%s: expected error, warn, info or debug", k->name);
            return SDF_ECONFIG;
        }
        return 0;
    }
    return SDF_ECONFIG;
}

static bool table_has_section(const load_state *st, const char *section)
{
    for (size_t i = 0; i < st->n_keys; i++)
        if (strcmp(st->keys[i].section, section) == 0)
            return true;
    return false;
}

/* inih handler: returning 0 makes ini_parse report this line as the error. */
static int handle_line(load_state *st, const char *section, const char *name, const char *value);

static int handler(void *user, const char *section, const char *name, const char *value)
{
    load_state *st = user;
    if (st->failed)
        return 1;      /* keep the first error's line and reason */
    if (handle_line(st, section, name, value))
        return 1;
    st->failed = true;
    return 0;
}

static int handle_line(load_state *st, const char *section, const char *name, const char *value)
{
    bool fixed = table_has_section(st, section);

    bool new_section = strcmp(st->last_section, section) != 0;
    if (new_section)
        snprintf(st->last_section, sizeof st->last_section, "%s", section);
    if (!fixed && new_section) {
        if (!st->other) {
            snprintf(st->reason, sizeof st->reason, "unknown section [%s]", section);
            return 0;
        }
        if (st->other(st->target, section, NULL, NULL, st->dir, st->reason,
                      sizeof st->reason) != 0)
            return 0;
    }
    if (fixed) {
        for (size_t i = 0; i < st->n_keys; i++) {
            const conf_key *k = &st->keys[i];
            if (strcmp(k->section, section) == 0 && strcmp(k->name, name) == 0) {
                if (st->seen[i]) {
                    snprintf(st->reason, sizeof st->reason, "%s: set twice", name);
                    return 0;
                }
                st->seen[i] = 1;
                return set_value(st, k, value) == 0;
            }
        }
        snprintf(st->reason, sizeof st->reason, "unknown key '%s' in [%s]", name, section);
        return 0;
    }
    return st->other(st->target, section, name, value, st->dir, st->reason,
                     sizeof st->reason) == 0;
}

int conf_load(const char *path, const conf_key *keys, size_t n_keys, void *target,
              conf_section_fn other, char *err, size_t errlen)
{
    load_state st;
    memset(&st, 0, sizeof st);
    st.keys = keys;
    st.n_keys = n_keys;
    st.target = target;
    st.other = other;

    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    snprintf(st.dir, sizeof st.dir, "%s", dirname(tmp));

    for (size_t i = 0; i < n_keys; i++) {
        if (keys[i].def && set_value(&st, &keys[i], keys[i].def) != 0) {
            snprintf(err, errlen, "%s: bad built-in default for %s", path, keys[i].name);
            return SDF_ECONFIG;
        }
    }
    st.seen = calloc(n_keys ? n_keys : 1, 1);
    if (!st.seen) {
        snprintf(err, errlen, "%s: out of memory", path);
        return SDF_ENOMEM;
    }

    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        free(st.seen);
        return SDF_ECONFIG;
    }
    int line = ini_parse_file(f, handler, &st);
    fclose(f);
    if (line != 0) {
        if (line > 0)
            snprintf(err, errlen, "%s:%d: %s", path, line,
                     st.reason[0] ? st.reason : "syntax error");
        else
            snprintf(err, errlen, "%s: cannot parse (%d)", path, line);
        free(st.seen);
        return SDF_ECONFIG;
    }
    for (size_t i = 0; i < n_keys; i++) {
        if (keys[i].required && !st.seen[i]) {
            snprintf(err, errlen, "%s: [%s] %s is required", path, keys[i].section,
                     keys[i].name);
            free(st.seen);
            return SDF_ECONFIG;
        }
    }
    free(st.seen);
    return 0;
}
