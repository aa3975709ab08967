/* agent/agent_config.h — the agent's configuration (one INI file).
 *
 *   [agent]
 *   site_id = site-a                 ; must equal the CN of `cert`
 *   coordinator = 127.0.0.1:7443     ; host:port the agent dials OUT to
 *   cert = /etc/sdefed/site-a.crt
 *   key = /etc/sdefed/site-a.key
 *   ca = /etc/sdefed/ca.crt
 *   coordinator_pin =                ; optional SHA-256 fingerprint of the coordinator cert
 *   state_dir = /var/lib/sdefed
 *   heartbeat_seconds = 10
 *   max_concurrent_queries = 4
 *   reconnect_min_ms = 500
 *   reconnect_max_ms = 30000
 *   max_frame_bytes = 4194304
 *   log_level = info
 *   cert_expiry_warn_days = 30       ; log + status warn this long before cert/CA expiry
 *
 *   [disclosure]
 *   min_cell = 10
 *   rounding = 5
 *   zero_is_disclosive = false
 *   dominance_n = 2                  ; ... see deploy/disclosure.md for every rule
 *   dominance_k = 0.9
 *   min_dof = 10
 *   max_params_ratio = 0.33
 *   max_identical = 7                ; identical queries per requester per window
 *   identical_window_days = 30
 *   differencing = true              ; refuse cohorts 1..min_cell-1 persons from a kept one
 *   differencing_keep = 64           ; cohorts kept per requester and per project
 *   differencing_days = 30
 *   dp_epsilon = 0                   ; > 0 turns on differential privacy for counts
 *   dp_budget = 0                    ; total epsilon per project (ledger in state_dir)
 *   data_version =                   ; optional; default: size+mtime of each dataset file
 *
 *   [dataset omop]                   ; one section per dataset; name after "dataset "
 *   type = omop
 *   backend = sqlite
 *   path = /srv/omop/omop.sqlite
 *   allow_care_site = false          ; may analysts stratify by care_site? (issue 3)
 *
 *   [dataset cdm]                    ; an OMOP CDM held in PostgreSQL
 *   type = omop
 *   backend = postgres
 *   conninfo = host=/run/postgresql dbname=omop user=sdefed_ro   ; libpq conninfo or URI
 *   schema = cdm                     ; OMOP schema (an identifier; default public)
 *
 * A postgres password belongs in a passfile (PGPASSFILE / ~/.pgpass), not in
 * conninfo; if it is there anyway it is never logged (see db_pg.h).
 *
 *   [governance]                     ; optional (issue 7; see deploy/governance.md)
 *   held_result_expiry_hours = 168   ; a held result not reviewed by then is refused
 *   trusted_protocol_key = /etc/sdefed/approvers/hra.pub   ; repeatable: signed protocols
 *                                    ; by these keys are released without review
 *
 * Relative paths are resolved against the config file's directory.
 * Loading parses into a fresh struct; the caller swaps it in only on
 * success, so a failed SIGHUP reload keeps the old configuration.
 */
#ifndef AGENT_CONFIG_H
#define AGENT_CONFIG_H

#include <limits.h>
#include <stddef.h>

#include "disclosure/disclosure.h"
#include "sdefed/log.h"

#define AGENT_MAX_DATASETS 32

/* issue 5: roles of the declared columns of a `type = table` dataset. An
 * identifier is only ever used to join inside the agent, never released. */
typedef enum {
    AGENT_COL_IDENTIFIER = 1,
    AGENT_COL_SCORE = 2,
    AGENT_COL_LABEL = 3,
    AGENT_COL_DATE = 4,
    AGENT_COL_CATEGORY = 5,
    AGENT_COL_MODEL_VERSION = 6,
} agent_column_role;
#define AGENT_MAX_COLUMNS 16
typedef struct agent_column {
    char name[64];             /* a validated identifier ([A-Za-z_][A-Za-z0-9_]*) */
    agent_column_role role;
} agent_column;

#define AGENT_PARALLEL_MAX 16
#define AGENT_PARALLEL_MIN_ROWS 1000000

typedef struct agent_dataset {
    char name[64];
    char type[16];       /* "omop" */
    char backend[16];    /* "sqlite" or "postgres" */
    char path[PATH_MAX]; /* sqlite file */
    char conninfo[1024]; /* postgres: libpq conninfo string (may hold a password) */
    char schema[64];     /* postgres: OMOP schema, a validated identifier */
    bool allow_care_site; /* `allow_care_site = true`: the care_site stratifier may be used
                           * (issue 3; default false: a site's units may be identifying) */
    /* SQLite: a count whose driving table has at least parallel_min_rows
     * rows runs as `parallel` statements over disjoint row ranges at once
     * (query_count_split.c). `parallel = auto` (the default) is the number
     * of online CPUs, at most 4; 0 or 1 (and a zeroed struct) is off. */
    unsigned parallel;
    int64_t parallel_min_rows;
    /* issue 5: `type = table` (a predictions table; docs/validate.md):
     *   table = predictions               ; an identifier
     *   column.person_id = identifier     ; column.NAME = ROLE, one line per column */
    char table[64];
    agent_column columns[AGENT_MAX_COLUMNS];
    size_t n_columns;
} agent_dataset;

/* [governance] section (issue 7), parsed by gov_config_section() in
 * agent/governance/gov_config.c. Projects themselves live in the state
 * database (`sdefed-agent project add ...`), not here. */
#define AGENT_MAX_TRUSTED_KEYS 8
typedef struct agent_governance {
    unsigned held_expiry_s;       /* held results expire after this; default 7 days */
    char trusted_keys[AGENT_MAX_TRUSTED_KEYS][PATH_MAX];  /* approver public keys (PEM) */
    size_t n_trusted_keys;
} agent_governance;

typedef struct agent_config {
    char site_id[64];
    char coordinator_host[256];
    int coordinator_port;
    char cert[PATH_MAX];
    char key[PATH_MAX];
    char ca[PATH_MAX];
    char crl[PATH_MAX];           /* "" = none */
    char coordinator_pin[65];     /* "" = no pin */
    char state_dir[PATH_MAX];
    unsigned heartbeat_ms;
    unsigned max_concurrent;
    unsigned reconnect_min_ms;
    unsigned reconnect_max_ms;
    size_t max_frame;
    enum sdf_log_level log_level;
    disc_policy policy;
    agent_dataset datasets[AGENT_MAX_DATASETS];
    size_t n_datasets;
    unsigned cert_warn_days;      /* warn this many days before a certificate expires */
    /* [disclosure] keys holding real numbers, as written (conf.h has no
     * double type); agent_config_load parses them into policy. */
    char disc_real_text[4][32];   /* dominance_k, max_params_ratio, dp_epsilon, dp_budget */
    char data_version[64];        /* [disclosure] data_version: "" = from dataset file stat */
    agent_governance gov;         /* [governance] (agent/governance/governance.h) */
} agent_config;

/* Load and check a config file into *out (fully overwritten). Returns 0, or
 * SDF_ECONFIG with "FILE:LINE: reason" in err. Never partially applies. */
int agent_config_load(const char *path, agent_config *out, char *err, size_t errlen) SDF_MUSTCHECK;

/* The dataset called name, or NULL. */
const agent_dataset *agent_config_dataset(const agent_config *c, const char *name);

#endif
