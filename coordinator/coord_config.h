/* coordinator/coord_config.h — the coordinator's configuration (one INI file).
 *
 *   [coordinator]
 *   id = coordinator                  ; name reported to peers in HelloAck
 *   listen = 127.0.0.1:7443           ; one TLS port for agents and analysts
 *   cert = /etc/sdefed/coordinator.crt
 *   key = /etc/sdefed/coordinator.key
 *   ca = /etc/sdefed/ca.crt
 *   store = /var/lib/sdefed/coordinator.db
 *   default_timeout_seconds = 30      ; per-query deadline when the analyst gives none
 *   max_timeout_seconds = 600
 *   heartbeat_timeout_seconds = 30    ; an agent silent this long is dropped as offline
 *   max_frame_bytes = 4194304
 *   log_level = info
 *   crl = /etc/sdefed/ca.crl          ; optional revocation list (deploy/pki crl)
 *   status_socket =                   ; default: coordinator.sock next to `store`
 *   metrics_listen = 127.0.0.1:9464   ; optional Prometheus listener (plain HTTP)
 *   drain_timeout_seconds = 30        ; SIGTERM: how long in-flight queries may finish
 *   cert_expiry_warn_days = 30        ; log + status warn this long before cert/CA expiry
 *   alert_command =                   ; issue 6: program run with each monitor alert as
 *                                     ; JSON on stdin (words split on spaces, no shell)
 *
 *   [sites]                           ; registry: one key per site; id = certificate CN
 *   site-a =                          ; value: optional SHA-256 pin of the site's certificate
 *   site-b = 3f9a...e1
 *
 *   [analysts]                        ; one key per analyst; id = certificate CN
 *   alice =
 *
 * Anyone whose certificate CN is not registered in the role they claim is
 * refused at the Hello. Relative paths resolve against the file's directory.
 */
#ifndef COORD_CONFIG_H
#define COORD_CONFIG_H

#include <limits.h>
#include <stddef.h>

#include "sdefed/err.h"
#include "sdefed/log.h"

#define COORD_MAX_SITES 1024
#define COORD_MAX_ANALYSTS 1024

typedef struct coord_principal {
    char id[64];
    char fingerprint[65];   /* "" = no pin */
} coord_principal;

typedef struct coord_config {
    char id[64];
    char listen_host[256];
    int listen_port;
    char cert[PATH_MAX];
    char key[PATH_MAX];
    char ca[PATH_MAX];
    char crl[PATH_MAX];
    char store[PATH_MAX];
    unsigned default_timeout_ms;
    unsigned max_timeout_ms;
    unsigned heartbeat_timeout_ms;
    size_t max_frame;
    enum sdf_log_level log_level;
    coord_principal *sites;      /* owned */
    size_t n_sites;
    coord_principal *analysts;   /* owned */
    size_t n_analysts;
    char status_socket[PATH_MAX];
    char metrics_host[256];      /* "" = no metrics listener */
    int metrics_port;
    unsigned drain_timeout_ms;
    unsigned cert_warn_days;
    char alert_command[1024];    /* issue 6: "" = none (docs/surveillance.md) */
} coord_config;

/* Load into *out. Returns 0 or SDF_ECONFIG with "FILE:LINE: reason". The
 * caller frees with coord_config_free() (also after failure). */
int coord_config_load(const char *path, coord_config *out, char *err, size_t errlen) SDF_MUSTCHECK;
void coord_config_free(coord_config *c);

const coord_principal *coord_config_site(const coord_config *c, const char *id);
const coord_principal *coord_config_analyst(const coord_config *c, const char *id);

#endif
