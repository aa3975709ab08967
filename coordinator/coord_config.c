/* coordinator/coord_config.c — load and check the coordinator's INI file.
 *
 * Fixed keys are one table (conf.h); the [sites] and [analysts] sections
 * are the registry: each key is an identity (certificate CN) and the value
 * an optional certificate fingerprint pin.
 */
#include "coord_config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/conf.h"

#define K(sec, name, type, field, def, min, max, req)                                   \
    { sec, name, type, offsetof(coord_config, field), sizeof(((coord_config *)0)->field), \
      def, min, max, req, 0 }

static const conf_key coord_keys[] = {
    K("coordinator", "id", CONF_STR, id, "coordinator", 0, 0, false),
    { "coordinator", "listen", CONF_HOSTPORT, offsetof(coord_config, listen_host),
      sizeof(((coord_config *)0)->listen_host), NULL, 0, 0, true,
      offsetof(coord_config, listen_port) },
    K("coordinator", "cert", CONF_PATH, cert, NULL, 0, 0, true),
    K("coordinator", "key", CONF_PATH, key, NULL, 0, 0, true),
    K("coordinator", "ca", CONF_PATH, ca, NULL, 0, 0, true),
    K("coordinator", "crl", CONF_PATH, crl, NULL, 0, 0, false),
    K("coordinator", "store", CONF_PATH, store, NULL, 0, 0, true),
    K("coordinator", "default_timeout_seconds", CONF_SECONDS_MS, default_timeout_ms, "30", 1,
      86400, false),
    K("coordinator", "max_timeout_seconds", CONF_SECONDS_MS, max_timeout_ms, "600", 1, 86400,
      false),
    K("coordinator", "heartbeat_timeout_seconds", CONF_SECONDS_MS, heartbeat_timeout_ms, "30", 2,
      3600, false),
    K("coordinator", "max_frame_bytes", CONF_SIZE, max_frame, "4194304", 65536, 268435456,
      false),
    K("coordinator", "log_level", CONF_LOGLEVEL, log_level, "info", 0, 0, false),
    K("coordinator", "status_socket", CONF_PATH, status_socket, NULL, 0, 0, false),
    { "coordinator", "metrics_listen", CONF_HOSTPORT, offsetof(coord_config, metrics_host),
      sizeof(((coord_config *)0)->metrics_host), NULL, 0, 0, false,
      offsetof(coord_config, metrics_port) },
    K("coordinator", "drain_timeout_seconds", CONF_SECONDS_MS, drain_timeout_ms, "30", 0, 3600,
      false),
    K("coordinator", "cert_expiry_warn_days", CONF_UINT, cert_warn_days, "30", 0, 3650, false),
    K("coordinator", "alert_command", CONF_STR, alert_command, NULL, 0, 0, false),   /* issue 6 */
};

static bool valid_fingerprint(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (size_t i = 0; i < 64; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

static int add_principal(coord_principal **list, size_t *n, size_t max, const char *what,
                         const char *id, const char *pin, char *err, size_t errlen)
{
    if (!conf_valid_name(id)) {
        snprintf(err, errlen, "%s id must be 1-63 of [A-Za-z0-9._-]", what);
        return SDF_ECONFIG;
    }
    if (*pin && !valid_fingerprint(pin)) {
        snprintf(err, errlen, "%s %s: fingerprint must be 64 hex digits or empty", what, id);
        return SDF_ECONFIG;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*list)[i].id, id) == 0) {
            snprintf(err, errlen, "%s %s listed twice", what, id);
            return SDF_ECONFIG;
        }
    }
    if (*n >= max) {
        snprintf(err, errlen, "too many %ss (max %zu)", what, max);
        return SDF_ECONFIG;
    }
    coord_principal *grown = realloc(*list, (*n + 1) * sizeof **list);
    if (!grown) {
        snprintf(err, errlen, "out of memory");
        return SDF_ENOMEM;
    }
    *list = grown;
    coord_principal *p = &grown[(*n)++];
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "%s", id);
    for (size_t i = 0; pin[i] && i < 64; i++)
        p->fingerprint[i] = (char)tolower((unsigned char)pin[i]);
    return 0;
}

static int registry_section(void *target, const char *section, const char *key,
                            const char *value, const char *dir, char *err, size_t errlen)
{
    (void)dir;
    coord_config *c = target;
    bool sites = strcmp(section, "sites") == 0;
    if (!sites && strcmp(section, "analysts") != 0) {
        snprintf(err, errlen, "unknown section [%s]", section);
        return SDF_ECONFIG;
    }
    if (key == NULL)
        return 0;
    if (sites)
        return add_principal(&c->sites, &c->n_sites, COORD_MAX_SITES, "site", key, value, err,
                             errlen);
    return add_principal(&c->analysts, &c->n_analysts, COORD_MAX_ANALYSTS, "analyst", key, value,
                         err, errlen);
}

int coord_config_load(const char *path, coord_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    int rc = conf_load(path, coord_keys, sizeof coord_keys / sizeof coord_keys[0], out,
                       registry_section, err, errlen);
    if (rc != 0)
        return rc;
    if (out->default_timeout_ms > out->max_timeout_ms) {
        snprintf(err, errlen, "%s: default_timeout_seconds exceeds max_timeout_seconds", path);
        return SDF_ECONFIG;
    }
    for (size_t i = 0; i < out->n_sites; i++) {
        if (coord_config_analyst(out, out->sites[i].id)) {
            snprintf(err, errlen, "%s: '%s' is registered as both a site and an analyst", path,
                     out->sites[i].id);
            return SDF_ECONFIG;
        }
    }
    if (!out->status_socket[0]) {
        /* Default: next to the store, in the coordinator's state directory. */
        const char *slash = strrchr(out->store, '/');
        int dlen = slash ? (int)(slash - out->store) : 1;
        int n = snprintf(out->status_socket, sizeof out->status_socket, "%.*s/coordinator.sock",
                         dlen, slash ? out->store : ".");
        if (n < 0 || (size_t)n >= sizeof out->status_socket) {
            snprintf(err, errlen, "%s: status_socket path too long", path);
            return SDF_ECONFIG;
        }
    }
    if (out->n_sites == 0)
        log_warn("%s: no [sites] registered: no agent can connect", path);
    return 0;
}

void coord_config_free(coord_config *c)
{
    free(c->sites);
    free(c->analysts);
    c->sites = c->analysts = NULL;
    c->n_sites = c->n_analysts = 0;
}

static const coord_principal *find(const coord_principal *list, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].id, id) == 0)
            return &list[i];
    return NULL;
}

const coord_principal *coord_config_site(const coord_config *c, const char *id)
{
    return find(c->sites, c->n_sites, id);
}

const coord_principal *coord_config_analyst(const coord_config *c, const char *id)
{
    return find(c->analysts, c->n_analysts, id);
}
