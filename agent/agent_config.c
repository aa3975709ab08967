/* agent/agent_config.c — load and check the agent's INI configuration.
 *
 * Fixed keys are one table (see conf.h); "[dataset NAME]" sections are
 * parsed by dataset_section(). Everything lands in a fresh agent_config,
 * so a failed reload never disturbs the running one.
 */
#include "agent_config.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db_pg.h"
#include "governance/governance.h"
#include "sdefed/conf.h"

#define K(sec, name, type, field, def, min, max, req)                                   \
    { sec, name, type, offsetof(agent_config, field), sizeof(((agent_config *)0)->field), \
      def, min, max, req, 0 }

static const conf_key agent_keys[] = {
    K("agent", "site_id", CONF_STR, site_id, NULL, 0, 0, true),
    { "agent", "coordinator", CONF_HOSTPORT, offsetof(agent_config, coordinator_host),
      sizeof(((agent_config *)0)->coordinator_host), NULL, 0, 0, true,
      offsetof(agent_config, coordinator_port) },
    K("agent", "cert", CONF_PATH, cert, NULL, 0, 0, true),
    K("agent", "key", CONF_PATH, key, NULL, 0, 0, true),
    K("agent", "ca", CONF_PATH, ca, NULL, 0, 0, true),
    K("agent", "crl", CONF_PATH, crl, NULL, 0, 0, false),
    K("agent", "coordinator_pin", CONF_STR, coordinator_pin, NULL, 0, 0, false),
    K("agent", "state_dir", CONF_PATH, state_dir, NULL, 0, 0, true),
    K("agent", "heartbeat_seconds", CONF_SECONDS_MS, heartbeat_ms, "10", 1, 3600, false),
    K("agent", "max_concurrent_queries", CONF_UINT, max_concurrent, "4", 1, 64, false),
    K("agent", "reconnect_min_ms", CONF_UINT, reconnect_min_ms, "500", 10, 600000, false),
    K("agent", "reconnect_max_ms", CONF_UINT, reconnect_max_ms, "30000", 10, 3600000, false),
    K("agent", "max_frame_bytes", CONF_SIZE, max_frame, "4194304", 65536, 268435456, false),
    K("agent", "log_level", CONF_LOGLEVEL, log_level, "info", 0, 0, false),
    K("agent", "cert_expiry_warn_days", CONF_UINT, cert_warn_days, "30", 0, 3650, false),
    K("disclosure", "min_cell", CONF_INT64, policy.min_cell, "10", 1, 1000000, false),
    K("disclosure", "rounding", CONF_INT64, policy.rounding, "5", 1, 1000000, false),
    K("disclosure", "zero_is_disclosive", CONF_BOOL, policy.zero_is_disclosive, "false", 0, 0,
      false),
    K("disclosure", "dominance_n", CONF_INT64, policy.dominance_n, "2", 1, 100, false),
    K("disclosure", "dominance_k", CONF_STR, disc_real_text[0], "0.9", 0, 0, false),
    K("disclosure", "min_dof", CONF_INT64, policy.min_dof, "10", 1, 1000000, false),
    K("disclosure", "max_params_ratio", CONF_STR, disc_real_text[1], "0.33", 0, 0, false),
    K("disclosure", "max_identical", CONF_INT64, policy.max_identical, "7", 1, 1000000, false),
    K("disclosure", "identical_window_days", CONF_INT64, policy.identical_window_days, "30", 1,
      3650, false),
    K("disclosure", "differencing", CONF_BOOL, policy.differencing, "true", 0, 0, false),
    K("disclosure", "differencing_keep", CONF_INT64, policy.differencing_keep, "64", 1, 4096,
      false),
    K("disclosure", "differencing_days", CONF_INT64, policy.differencing_days, "30", 1, 3650,
      false),
    K("disclosure", "dp_epsilon", CONF_STR, disc_real_text[2], "0", 0, 0, false),
    K("disclosure", "dp_budget", CONF_STR, disc_real_text[3], "0", 0, 0, false),
    K("disclosure", "data_version", CONF_STR, data_version, "", 0, 0, false),
};

/* issue 5: a table or column name of a `type = table` dataset. */
/* `parallel = auto`: a connection per online CPU, at most 4 (beyond that
 * a count's parts mostly wait on each other's memory traffic). */
static unsigned parallel_auto(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 4 ? 4 : (unsigned)n;
}

static int parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || errno || *end || v < min || v > max)
        return SDF_EINVAL;
    *out = v;
    return 0;
}

static bool table_ident_valid(const char *s)
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

static const struct {
    const char *name;
    agent_column_role role;
} column_roles[] = {
    { "identifier", AGENT_COL_IDENTIFIER }, { "score", AGENT_COL_SCORE },
    { "label", AGENT_COL_LABEL },           { "date", AGENT_COL_DATE },
    { "category", AGENT_COL_CATEGORY },     { "model_version", AGENT_COL_MODEL_VERSION },
};

/* `column.NAME = ROLE` in a [dataset] section (issue 5). */
static int table_column(agent_dataset *d, const char *key, const char *value, char *err,
                        size_t errlen)
{
    const char *name = key + 7;
    if (!table_ident_valid(name)) {
        snprintf(err, errlen, "column.NAME: NAME must be an identifier of 1-63 of "
                              "[A-Za-z0-9_], not starting with a digit");
        return SDF_ECONFIG;
    }
    agent_column_role role = 0;
    for (size_t i = 0; i < sizeof column_roles / sizeof column_roles[0]; i++)
        if (strcmp(value, column_roles[i].name) == 0)
            role = column_roles[i].role;
    if (!role) {
        snprintf(err, errlen, "%s: role must be identifier, score, label, date, category or "
                              "model_version", key);
        return SDF_ECONFIG;
    }
    for (size_t i = 0; i < d->n_columns; i++) {
        if (strcmp(d->columns[i].name, name) == 0) {
            snprintf(err, errlen, "%s: set twice", key);
            return SDF_ECONFIG;
        }
        if (role != AGENT_COL_CATEGORY && d->columns[i].role == role) {
            snprintf(err, errlen, "%s: only one column may have role %s", key, value);
            return SDF_ECONFIG;
        }
    }
    if (d->n_columns == AGENT_MAX_COLUMNS) {
        snprintf(err, errlen, "too many columns (max %d)", AGENT_MAX_COLUMNS);
        return SDF_ECONFIG;
    }
    agent_column *c = &d->columns[d->n_columns++];
    snprintf(c->name, sizeof c->name, "%s", name);
    c->role = role;
    return 0;
}

static int dataset_section(void *target, const char *section, const char *key,
                           const char *value, const char *dir, char *err, size_t errlen)
{
    agent_config *c = target;
    if (strcmp(section, "governance") == 0)
        return gov_config_section(&c->gov, key, value, dir, err, errlen);
    if (strncmp(section, "dataset ", 8) != 0) {
        snprintf(err, errlen, "unknown section [%s]", section);
        return SDF_ECONFIG;
    }
    const char *name = section + 8;
    if (key == NULL) {                       /* a new [dataset NAME] section */
        if (!conf_valid_name(name)) {
            snprintf(err, errlen, "dataset name must be 1-63 of [A-Za-z0-9._-]");
            return SDF_ECONFIG;
        }
        if (agent_config_dataset(c, name)) {
            snprintf(err, errlen, "dataset '%s' declared twice", name);
            return SDF_ECONFIG;
        }
        if (c->n_datasets == AGENT_MAX_DATASETS) {
            snprintf(err, errlen, "too many datasets (max %d)", AGENT_MAX_DATASETS);
            return SDF_ECONFIG;
        }
        agent_dataset *d = &c->datasets[c->n_datasets++];
        memset(d, 0, sizeof *d);
        snprintf(d->name, sizeof d->name, "%s", name);
        snprintf(d->backend, sizeof d->backend, "sqlite");
        d->parallel = parallel_auto();
        d->parallel_min_rows = AGENT_PARALLEL_MIN_ROWS;
        return 0;
    }
    if (c->n_datasets == 0 || strcmp(c->datasets[c->n_datasets - 1].name, name) != 0) {
        snprintf(err, errlen, "key outside a valid [dataset NAME] section");
        return SDF_ECONFIG;
    }
    agent_dataset *d = &c->datasets[c->n_datasets - 1];
    /* inih merges two adjacent sections of the same name, so a repeated
     * key is how a duplicated [dataset NAME] shows up. */
    if ((strcmp(key, "type") == 0 && d->type[0]) || (strcmp(key, "path") == 0 && d->path[0]) ||
        (strcmp(key, "conninfo") == 0 && d->conninfo[0]) ||
        (strcmp(key, "schema") == 0 && d->schema[0])) {
        snprintf(err, errlen, "%s: set twice in [%s]", key, section);
        return SDF_ECONFIG;
    }
    if (strcmp(key, "type") == 0) {
        if (strcmp(value, "omop") != 0 && strcmp(value, "table") != 0) {   /* table: issue 5 */
            snprintf(err, errlen,
                     "type: only 'omop' is supported, or 'table' for a predictions table");
            return SDF_ECONFIG;
        }
        snprintf(d->type, sizeof d->type, "%s", value);
    } else if (strcmp(key, "backend") == 0) {
        if (strcmp(value, "sqlite") != 0 && strcmp(value, "postgres") != 0) {
            snprintf(err, errlen, "backend: must be 'sqlite' or 'postgres'");
            return SDF_ECONFIG;
        }
        snprintf(d->backend, sizeof d->backend, "%s", value);
    } else if (strcmp(key, "path") == 0) {
        if (conf_resolve_path(dir, value, d->path, sizeof d->path) != 0) {
            snprintf(err, errlen, "path: too long");
            return SDF_ECONFIG;
        }
    } else if (strcmp(key, "conninfo") == 0) {
        /* Never echo the value: it may hold a password. */
        if (!value[0] || strlen(value) >= sizeof d->conninfo) {
            snprintf(err, errlen, "conninfo: empty or longer than %zu bytes",
                     sizeof d->conninfo - 1);
            return SDF_ECONFIG;
        }
        if (!db_pg_conninfo_valid(value)) {
            snprintf(err, errlen, "conninfo: not a valid libpq connection string");
            return SDF_ECONFIG;
        }
        snprintf(d->conninfo, sizeof d->conninfo, "%s", value);
    } else if (strcmp(key, "schema") == 0) {
        if (!db_pg_ident_valid(value)) {
            snprintf(err, errlen, "schema: must be an identifier of 1-63 of [a-z0-9_], "
                                  "not starting with a digit");
            return SDF_ECONFIG;
        }
        snprintf(d->schema, sizeof d->schema, "%s", value);
    } else if (strcmp(key, "allow_care_site") == 0) {
        /* issue 3: the care_site stratifier is opt-in per dataset */
        if (strcmp(value, "true") == 0)
            d->allow_care_site = true;
        else if (strcmp(value, "false") == 0)
            d->allow_care_site = false;
        else {
            snprintf(err, errlen, "allow_care_site: must be true or false");
            return SDF_ECONFIG;
        }
    } else if (strcmp(key, "parallel") == 0) {
        long long v;
        if (strcmp(value, "auto") == 0)
            d->parallel = parallel_auto();
        else if (parse_int(value, 0, AGENT_PARALLEL_MAX, &v) == 0)
            d->parallel = (unsigned)v;
        else {
            snprintf(err, errlen, "parallel: must be 'auto' or 0..%d", AGENT_PARALLEL_MAX);
            return SDF_ECONFIG;
        }
    } else if (strcmp(key, "parallel_min_rows") == 0) {
        long long v;
        if (parse_int(value, 1, (long long)1 << 50, &v) != 0) {
            snprintf(err, errlen, "parallel_min_rows: must be a whole number of rows, >= 1");
            return SDF_ECONFIG;
        }
        d->parallel_min_rows = v;
    } else if (strcmp(key, "table") == 0) {   /* issue 5: type = table */
        if (d->table[0] || !table_ident_valid(value)) {
            snprintf(err, errlen, "table: set twice, or not an identifier of 1-63 of "
                                  "[A-Za-z0-9_] not starting with a digit");
            return SDF_ECONFIG;
        }
        snprintf(d->table, sizeof d->table, "%s", value);
    } else if (strncmp(key, "column.", 7) == 0) {
        return table_column(d, key, value, err, errlen);
    } else {
        snprintf(err, errlen, "unknown key '%s' in [%s]", key, section);
        return SDF_ECONFIG;
    }
    return 0;
}

int agent_config_load(const char *path, agent_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = conf_load(path, agent_keys, sizeof agent_keys / sizeof agent_keys[0], out,
                       dataset_section, err, errlen);
    if (rc != 0)
        return rc;

    if (!conf_valid_name(out->site_id)) {
        snprintf(err, errlen, "%s: [agent] site_id must be 1-63 of [A-Za-z0-9._-]", path);
        return SDF_ECONFIG;
    }
    if (out->coordinator_port == 0) {
        snprintf(err, errlen, "%s: [agent] coordinator: port 0 is not valid", path);
        return SDF_ECONFIG;
    }
    if (out->coordinator_pin[0] && strlen(out->coordinator_pin) != 64) {
        snprintf(err, errlen, "%s: [agent] coordinator_pin must be 64 hex digits", path);
        return SDF_ECONFIG;
    }
    if (out->reconnect_min_ms > out->reconnect_max_ms) {
        snprintf(err, errlen, "%s: [agent] reconnect_min_ms exceeds reconnect_max_ms", path);
        return SDF_ECONFIG;
    }
    static const char *const real_keys[4] = { "dominance_k", "max_params_ratio", "dp_epsilon",
                                              "dp_budget" };
    double *real_dst[4] = { &out->policy.dominance_k, &out->policy.max_params_ratio,
                            &out->policy.dp_epsilon, &out->policy.dp_budget };
    for (size_t i = 0; i < 4; i++) {
        char *end = NULL;
        const char *t = out->disc_real_text[i];
        double v = strtod(t, &end);
        if (!t[0] || end == t || *end != '\0' || !(v == v) || v < 0.0 || v > 1e9) {
            snprintf(err, errlen, "%s: [disclosure] %s must be a non-negative number", path,
                     real_keys[i]);
            return SDF_ECONFIG;
        }
        *real_dst[i] = v;
    }
    char why[256];
    if (disc_policy_check(&out->policy, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: [disclosure] %s", path, why);
        return SDF_ECONFIG;
    }
    if (out->n_datasets == 0) {
        snprintf(err, errlen, "%s: no [dataset NAME] section: the agent has nothing to answer over",
                 path);
        return SDF_ECONFIG;
    }
    for (size_t i = 0; i < out->n_datasets; i++) {
        const agent_dataset *d = &out->datasets[i];
        bool pg = strcmp(d->backend, "postgres") == 0;
        if (!d->type[0] || (pg ? !d->conninfo[0] : !d->path[0])) {
            snprintf(err, errlen, "%s: [dataset %s] needs type and %s", path, d->name,
                     pg ? "conninfo" : "path");
            return SDF_ECONFIG;
        }
        if (pg ? d->path[0] != '\0' : (d->conninfo[0] || d->schema[0])) {
            snprintf(err, errlen, "%s: [dataset %s] %s", path, d->name,
                     pg ? "path is for backend sqlite (postgres uses conninfo)"
                        : "conninfo and schema need backend = postgres");
            return SDF_ECONFIG;
        }
        /* issue 5: a table dataset names its table, one identifier and one
         * score column; the other keys belong to it alone. */
        bool is_table = strcmp(d->type, "table") == 0;
        int have_id = 0, have_score = 0;
        for (size_t k = 0; k < d->n_columns; k++) {
            have_id += d->columns[k].role == AGENT_COL_IDENTIFIER;
            have_score += d->columns[k].role == AGENT_COL_SCORE;
        }
        if (is_table && (!d->table[0] || !have_id || !have_score)) {
            snprintf(err, errlen, "%s: [dataset %s] type table needs table, an identifier "
                                  "column and a score column", path, d->name);
            return SDF_ECONFIG;
        }
        if (!is_table && (d->table[0] || d->n_columns)) {
            snprintf(err, errlen, "%s: [dataset %s] table and column.* need type = table",
                     path, d->name);
            return SDF_ECONFIG;
        }
    }
    return 0;
}

const agent_dataset *agent_config_dataset(const agent_config *c, const char *name)
{
    for (size_t i = 0; i < c->n_datasets; i++)
        if (strcmp(c->datasets[i].name, name) == 0)
            return &c->datasets[i];
    return NULL;
}
