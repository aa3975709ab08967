/* agent/governance/gov_config.c — the [governance] section of the agent
 * config (governance.h). Kept apart from the daemon hooks so loading a
 * config never pulls in the daemon. */
#include "governance/governance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "sdefed/conf.h"
#include "sdefed/passport.h"

int gov_config_section(agent_governance *g, const char *key, const char *value,
                       const char *dir, char *err, size_t errlen)
{
    if (!key)
        return 0;
    if (strcmp(key, "held_result_expiry_hours") == 0) {
        char *end;
        long v = strtol(value, &end, 10);
        if (!value[0] || *end || v < 1 || v > 8760) {
            snprintf(err, errlen, "held_result_expiry_hours: expected 1..8760");
            return SDF_ECONFIG;
        }
        if (g->held_expiry_s) {
            snprintf(err, errlen, "held_result_expiry_hours: set twice in [governance]");
            return SDF_ECONFIG;
        }
        g->held_expiry_s = (unsigned)v * 3600u;
        return 0;
    }
    if (strcmp(key, "trusted_protocol_key") == 0) {
        if (g->n_trusted_keys == AGENT_MAX_TRUSTED_KEYS) {
            snprintf(err, errlen, "trusted_protocol_key: at most %d keys",
                     AGENT_MAX_TRUSTED_KEYS);
            return SDF_ECONFIG;
        }
        char *path = g->trusted_keys[g->n_trusted_keys];
        if (conf_resolve_path(dir, value, path, PATH_MAX) != 0) {
            snprintf(err, errlen, "trusted_protocol_key: path too long");
            return SDF_ECONFIG;
        }
        char why[512];
        EVP_PKEY *k = passport_load_public(path, why, sizeof why);
        if (!k) {
            snprintf(err, errlen, "trusted_protocol_key: %s", why);
            return SDF_ECONFIG;
        }
        EVP_PKEY_free(k);
        g->n_trusted_keys++;
        return 0;
    }
    snprintf(err, errlen, "unknown key '%s' in [governance]", key);
    return SDF_ECONFIG;
}

unsigned gov_held_expiry_s(const agent_config *cfg)
{
    return cfg->gov.held_expiry_s ? cfg->gov.held_expiry_s : GOV_DEFAULT_HELD_EXPIRY_S;
}

