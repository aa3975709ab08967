/* coordinator/reload.c — SIGHUP: new configuration, registry and certificates.
 *
 * The new file is parsed into a fresh coord_config and a fresh TLS context
 * is built from it (certificate, key, CA and CRL are read again). Only when
 * both succeed is anything changed, so a broken file or certificate leaves
 * the coordinator running exactly as before. The live site table is
 * parallel to cfg.sites, so it is rebuilt in the new registry's order:
 * connected sites keep their link and counters, sites no longer registered
 * are disconnected, and pending queries are told the new indexes (dispatch_sites_remapped).
 * Established TLS sessions keep the context they started with; new
 * connections use the new one, so a regenerated CRL refuses a revoked
 * certificate from the next connection on.
 */
#include "coord.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/log.h"

static void drop_datasets(site_state *s)
{
    for (size_t i = 0; i < s->n_datasets; i++)
        sdefed__dataset_info__free_unpacked(s->datasets[i], NULL);
    free(s->datasets);
    s->datasets = NULL;
    s->n_datasets = 0;
}

/* Settings bound at start-up: keep the running value, say a restart is needed. */
static void keep_fixed(const coord_config *old, coord_config *nc)
{
    if (strcmp(old->listen_host, nc->listen_host) != 0 || old->listen_port != nc->listen_port) {
        log_warn("reload: 'listen' changes only on restart; still listening on %s:%d",
                 old->listen_host, old->listen_port);
        memcpy(nc->listen_host, old->listen_host, sizeof nc->listen_host);
        nc->listen_port = old->listen_port;
    }
    if (strcmp(old->store, nc->store) != 0) {
        log_warn("reload: 'store' changes only on restart; still using %s", old->store);
        memcpy(nc->store, old->store, sizeof nc->store);
    }
    if (strcmp(old->metrics_host, nc->metrics_host) != 0 ||
        old->metrics_port != nc->metrics_port) {
        log_warn("reload: 'metrics_listen' changes only on restart");
        memcpy(nc->metrics_host, old->metrics_host, sizeof nc->metrics_host);
        nc->metrics_port = old->metrics_port;
    }
    if (strcmp(old->status_socket, nc->status_socket) != 0) {
        log_warn("reload: 'status_socket' changes only on restart; still %s",
                 old->status_socket);
        memcpy(nc->status_socket, old->status_socket, sizeof nc->status_socket);
    }
}

static bool pin_mismatch(const coord_principal *who, const peer *p)
{
    return who->fingerprint[0] && strcmp(who->fingerprint, conn_peer_fingerprint(p->c)) != 0;
}

int coord_reload(coord *co)
{
    coord_config nc;
    char err[1024];
    int rc = coord_config_load(co->config_path, &nc, err, sizeof err);
    if (rc != 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
        coord_config_free(&nc);
        co->n_reload_failures++;
        return rc;
    }
    char why[512];
    tls_opts o = {
        .cert_file = nc.cert, .key_file = nc.key, .ca_file = nc.ca,
        .crl_file = nc.crl[0] ? nc.crl : NULL,
    };
    tls_ctx *tls = tls_ctx_create(TLS_ROLE_SERVER, &o, why, sizeof why);
    if (!tls) {
        log_error("reload failed, keeping the running configuration: %s: TLS: %s",
                  co->config_path, why);
        coord_config_free(&nc);
        co->n_reload_failures++;
        return SDF_ECONFIG;
    }
    size_t n_old = co->cfg.n_sites;
    size_t *map = malloc((n_old ? n_old : 1) * sizeof *map);
    site_state *sites = calloc(nc.n_sites ? nc.n_sites : 1, sizeof *sites);
    if (!map || !sites) {
        log_error("reload failed, keeping the running configuration: out of memory");
        free(map);
        free(sites);
        tls_ctx_free(tls);
        coord_config_free(&nc);
        co->n_reload_failures++;
        return SDF_ENOMEM;
    }
    keep_fixed(&co->cfg, &nc);

    /* Move each surviving site's live state to its new index. */
    size_t removed = 0, added = nc.n_sites;
    for (size_t i = 0; i < n_old; i++) {
        site_state *s = &co->sites[i];
        const coord_principal *who = coord_config_site(&nc, co->cfg.sites[i].id);
        if (!who) {
            map[i] = SIZE_MAX;
            removed++;
            if (s->link) {
                peer *p = s->link;
                log_info("site %s removed from the registry: disconnecting it", p->id);
                p->role = PEER_NEW;   /* its on_close must not touch the site table */
                conn_close(p->c, SDF_EAUTH, "site removed from the registry");
            }
            drop_datasets(s);
            continue;
        }
        size_t j = (size_t)(who - nc.sites);
        map[i] = j;
        added--;
        sites[j] = *s;
        if (s->link)
            s->link->site_index = j;
    }
    coord_config old = co->cfg;
    site_state *old_sites = co->sites;
    co->cfg = nc;
    co->sites = sites;
    free(old_sites);
    dispatch_sites_remapped(co, map, n_old, &old);
    free(map);
    coord_config_free(&old);

    /* A connected peer whose certificate no longer verifies against the new
     * trust store (revoked by a reloaded CRL, expired, another CA) is cut
     * off now rather than at its next connection. */
    for (peer *p = co->peers; p; p = p->next) {
        if (conn_is_closing(p->c) || (p->role != PEER_AGENT && p->role != PEER_ANALYST))
            continue;
        char cwhy[160] = "";
        if (conn_recheck_peer(p->c, tls, cwhy, sizeof cwhy) == SDF_EAUTH) {
            log_warn("%s %s: certificate no longer accepted (%s): disconnecting",
                     p->role == PEER_AGENT ? "site" : "analyst", p->id, cwhy);
            conn_close(p->c, SDF_EAUTH, "certificate no longer accepted");
        }
    }

    /* Analysts no longer registered are disconnected. A connected peer whose
     * certificate does not match a changed pin keeps its connection (the pin
     * is checked at Hello): that is what lets an operator rotate a pinned
     * certificate without downtime (new pin first, then the new cert at
     * the site). To cut a peer off now, remove it from the registry. */
    for (peer *p = co->peers; p; p = p->next) {
        if (conn_is_closing(p->c))
            continue;
        if (p->role == PEER_AGENT) {
            if (pin_mismatch(&co->cfg.sites[p->site_index], p))
                log_info("site %s: connected with a certificate that does not match the new "
                         "pin; the pin applies from its next connection", p->id);
        } else if (p->role == PEER_ANALYST) {
            const coord_principal *who = coord_config_analyst(&co->cfg, p->id);
            if (!who) {
                log_info("analyst %s removed from the registry: disconnecting", p->id);
                conn_close(p->c, SDF_EAUTH, "analyst removed from the registry");
            }
        }
    }

    tls_ctx_free(co->tls);
    co->tls = tls;
    log_set_level(co->cfg.log_level);
    co->n_reloads++;
    log_info("configuration reloaded: %zu sites (%zu new, %zu removed), %zu analysts%s",
             co->cfg.n_sites, added, removed, co->cfg.n_analysts,
             co->cfg.crl[0] ? ", CRL reloaded" : "");
    coord_ops_check_expiry(co);
    return 0;
}
