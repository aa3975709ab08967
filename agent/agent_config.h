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
 *
 *   [disclosure]
 *   min_cell = 10
 *   rounding = 5
 *   zero_is_disclosive = false
 *
 *   [dataset omop]                   ; one section per dataset; name after "dataset "
 *   type = omop
 *   backend = sqlite
 *   path = /srv/omop/omop.sqlite
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

typedef struct agent_dataset {
    char name[64];
    char type[16];       /* "omop" */
    char backend[16];    /* "sqlite" */
    char path[PATH_MAX]; /* sqlite file */
} agent_dataset;

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
} agent_config;

/* Load and check a config file into *out (fully overwritten). Returns 0, or
 * SDF_ECONFIG with "FILE:LINE: reason" in err. Never partially applies. */
int agent_config_load(const char *path, agent_config *out, char *err, size_t errlen) SDF_MUSTCHECK;

/* The dataset called name, or NULL. */
const agent_dataset *agent_config_dataset(const agent_config *c, const char *name);

#endif
