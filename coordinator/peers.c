/* coordinator/peers.c — connections to the coordinator and who they are.
 *
 * Agents and analysts share one TLS port. A peer must complete mutual TLS
 * (certificate from the federation CA) and then send Hello with the
 * current protocol version and its role; its certificate CN must be in the
 * registry for that role ([sites] or [analysts]) and match the pinned
 * fingerprint if one is configured. Anything else gets an Error with the
 * reason and is disconnected; nobody else is affected. Agents are tracked
 * in the live site table; a site silent longer than heartbeat_timeout is
 * dropped as offline.
 */
#include "coord.h"
#include "monitors.h"   /* issue 6 */

#include <stdlib.h>
#include <string.h>

#include "sdefed/log.h"
#include "sdefed/pbcopy.h"
#include "sdefed/spec.h"

#define SOFTWARE_ID "sdefed-coordinator 0.1.0"

static void on_tls_ready(conn *c);
static void on_message(conn *c, Sdefed__Envelope *env);
static void on_close(conn *c, int err, const char *why);
static const conn_callbacks peer_callbacks = { on_tls_ready, on_message, on_close };

uint64_t coord_now_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

int peer_send(peer *p, const Sdefed__Envelope *env)
{
    if (!p || !p->c)
        return SDF_ECLOSED;
    return conn_send(p->c, env);
}

void peer_send_error(peer *p, uint64_t request_id, Sdefed__ErrorCode code, const char *msg)
{
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    Sdefed__Error e = SDEFED__ERROR__INIT;
    e.code = code;
    e.message = (char *)msg;
    env.request_id = request_id;
    env.body_case = SDEFED__ENVELOPE__BODY_ERROR;
    env.error = &e;
    (void)peer_send(p, &env);
}

static void free_datasets(site_state *s)
{
    for (size_t i = 0; i < s->n_datasets; i++)
        sdefed__dataset_info__free_unpacked(s->datasets[i], NULL);
    free(s->datasets);
    s->datasets = NULL;
    s->n_datasets = 0;
}

/* Keep a copy of the datasets an agent announced (names and types only). */
static void remember_datasets(site_state *s, const Sdefed__Hello *h)
{
    free_datasets(s);
    if (h->n_datasets == 0)
        return;
    s->datasets = calloc(h->n_datasets, sizeof *s->datasets);
    if (!s->datasets)
        return;
    for (size_t i = 0; i < h->n_datasets && i < 64; i++) {
        Sdefed__DatasetInfo d = SDEFED__DATASET_INFO__INIT;
        d.name = h->datasets[i]->name;
        d.type = h->datasets[i]->type;
        d.omop_version = h->datasets[i]->omop_version;
        Sdefed__DatasetInfo *copy = (Sdefed__DatasetInfo *)pb_copy(&d.base);
        if (!copy)
            break;
        s->datasets[s->n_datasets++] = copy;
    }
}

/* The peer's certificate identity, pin and address. A peer without a
 * connection (the in-process harness tests/fuzz/fuzz_coord.c) stands for
 * the identity already in p->id, unpinned, at no address. */
static const char *peer_cn(const peer *p)
{
    return p->c ? conn_peer_cn(p->c) : p->id;
}

static const char *peer_fingerprint(const peer *p)
{
    return p->c ? conn_peer_fingerprint(p->c) : "";
}

static const char *peer_addr(const peer *p)
{
    return p->c ? conn_peer_addr(p->c) : "-";
}

static void refuse(peer *p, Sdefed__ErrorCode code, const char *why)
{
    log_warn("refusing %s (%s): %s", peer_cn(p), peer_addr(p), why);
    p->co->n_refused_peers++;
    conn_refuse(p->c, code, why);
}

static void handle_hello(peer *p, const Sdefed__Hello *h)
{
    coord *co = p->co;
    char cn[sizeof p->id];
    snprintf(cn, sizeof cn, "%s", peer_cn(p));
    if (h->protocol_version != SDEFED_PROTOCOL_VERSION) {
        char why[128];
        snprintf(why, sizeof why, "protocol version %u not supported (this coordinator speaks %u)",
                 h->protocol_version, SDEFED_PROTOCOL_VERSION);
        refuse(p, SDEFED__ERROR_CODE__ERR_VERSION, why);
        return;
    }
    const coord_principal *who = NULL;
    if (h->role == SDEFED__ROLE__ROLE_AGENT)
        who = coord_config_site(&co->cfg, cn);
    else if (h->role == SDEFED__ROLE__ROLE_ANALYST)
        who = coord_config_analyst(&co->cfg, cn);
    else {
        refuse(p, SDEFED__ERROR_CODE__ERR_AUTH, "unknown role");
        return;
    }
    if (!who) {
        refuse(p, SDEFED__ERROR_CODE__ERR_AUTH,
               h->role == SDEFED__ROLE__ROLE_AGENT ? "not a registered site"
                                                   : "not a registered analyst");
        return;
    }
    if (who->fingerprint[0] && strcmp(who->fingerprint, peer_fingerprint(p)) != 0) {
        refuse(p, SDEFED__ERROR_CODE__ERR_AUTH, "certificate does not match the registered pin");
        return;
    }
    snprintf(p->id, sizeof p->id, "%s", cn);

    if (h->role == SDEFED__ROLE__ROLE_AGENT) {
        size_t idx = (size_t)(who - co->cfg.sites);
        site_state *s = &co->sites[idx];
        if (s->link) {
            /* A reconnecting agent replaces its old (probably half-open) link. */
            log_info("site %s reconnected: dropping its previous connection", cn);
            peer *old = s->link;
            s->link = NULL;
            dispatch_site_lost(co, idx);
            conn_close(old->c, 0, "replaced by a new connection from the same site");
        }
        p->role = PEER_AGENT;
        p->site_index = idx;
        s->link = p;
        s->last_seen_ms = coord_now_ms();
        s->n_connects++;
        snprintf(s->address, sizeof s->address, "%s", peer_addr(p));
        remember_datasets(s, h);
        log_info("site %s online from %s (%s, %zu datasets)", cn, s->address,
                 h->software ? h->software : "?", s->n_datasets);
    } else {
        p->role = PEER_ANALYST;
        log_info("analyst %s connected from %s", cn, peer_addr(p));
    }
    conn_set_authenticated(p->c);

    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    Sdefed__HelloAck ack = SDEFED__HELLO_ACK__INIT;
    ack.protocol_version = SDEFED_PROTOCOL_VERSION;
    ack.peer_id = p->id;
    ack.coordinator_id = co->cfg.id;
    env.body_case = SDEFED__ENVELOPE__BODY_HELLO_ACK;
    env.hello_ack = &ack;
    (void)peer_send(p, &env);
}

static void reply_sites(peer *p, uint64_t request_id)
{
    coord *co = p->co;
    size_t n = co->cfg.n_sites;
    Sdefed__SiteInfo *infos = calloc(n ? n : 1, sizeof *infos);
    Sdefed__SiteInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!infos || !ptrs) {
        free(infos);
        free(ptrs);
        peer_send_error(p, request_id, SDEFED__ERROR_CODE__ERR_INTERNAL, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        site_state *s = &co->sites[i];
        sdefed__site_info__init(&infos[i]);
        infos[i].site = co->cfg.sites[i].id;
        infos[i].online = s->link != NULL;
        infos[i].last_seen_unix_ms = s->last_seen_ms;
        infos[i].address = s->address;
        infos[i].n_datasets = s->n_datasets;
        infos[i].datasets = s->datasets;
        ptrs[i] = &infos[i];
    }
    Sdefed__SitesReply reply = SDEFED__SITES_REPLY__INIT;
    reply.n_sites = n;
    reply.sites = ptrs;
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = SDEFED__ENVELOPE__BODY_SITES_REPLY;
    env.sites_reply = &reply;
    (void)peer_send(p, &env);
    free(infos);
    free(ptrs);
}

static void reply_fetch(peer *p, uint64_t request_id, const Sdefed__Fetch *f)
{
    Sdefed__FederatedResult *r = NULL;
    const char *qid = f->query_id ? f->query_id : "";
    int rc = store_query_load(p->co->st, qid, &r);
    if (rc == SDF_ENOTFOUND) {
        peer_send_error(p, request_id, SDEFED__ERROR_CODE__ERR_NOT_FOUND, "no such query");
        return;
    }
    if (rc == SDF_EREFUSED) {
        peer_send_error(p, request_id, SDEFED__ERROR_CODE__ERR_UNAVAILABLE,
                        "query is still running");
        return;
    }
    if (rc != 0) {
        peer_send_error(p, request_id, SDEFED__ERROR_CODE__ERR_INTERNAL, "store error");
        return;
    }
    if (r->requester && strcmp(r->requester, p->id) != 0) {
        /* Analysts see their own queries only. */
        sdefed__federated_result__free_unpacked(r, NULL);
        peer_send_error(p, request_id, SDEFED__ERROR_CODE__ERR_NOT_FOUND, "no such query");
        return;
    }
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    env.request_id = request_id;
    env.body_case = SDEFED__ENVELOPE__BODY_FEDERATED_RESULT;
    env.federated_result = r;
    (void)peer_send(p, &env);
    sdefed__federated_result__free_unpacked(r, NULL);
}

static void on_tls_ready(conn *c)
{
    log_debug("TLS up with %s (%s)", conn_peer_cn(c), conn_peer_addr(c));
}

static void on_message(conn *c, Sdefed__Envelope *env)
{
    peers_handle_message(conn_userdata(c), env);
}

void peers_handle_message(peer *p, Sdefed__Envelope *env)
{
    coord *co = p->co;

    if (p->role == PEER_NEW) {
        if (env->body_case != SDEFED__ENVELOPE__BODY_HELLO) {
            refuse(p, SDEFED__ERROR_CODE__ERR_PROTOCOL, "expected Hello first");
            return;
        }
        handle_hello(p, env->hello);
        return;
    }

    if (p->role == PEER_AGENT) {
        site_state *s = &co->sites[p->site_index];
        s->last_seen_ms = coord_now_ms();
        switch (env->body_case) {
        case SDEFED__ENVELOPE__BODY_HEARTBEAT: {
            Sdefed__Envelope reply = SDEFED__ENVELOPE__INIT;
            Sdefed__Heartbeat hb = SDEFED__HEARTBEAT__INIT;
            hb.unix_ms = coord_now_ms();
            reply.body_case = SDEFED__ENVELOPE__BODY_HEARTBEAT;
            reply.heartbeat = &hb;
            (void)peer_send(p, &reply);
            break;
        }
        case SDEFED__ENVELOPE__BODY_QUERY_RESULT: {
            Sdefed__QueryResult *res = env->query_result;
            s->n_results[(unsigned)res->status < 8 ? (unsigned)res->status : 7]++;
            env->query_result = NULL;
            env->body_case = SDEFED__ENVELOPE__BODY__NOT_SET;
            dispatch_result(co, p->site_index, res);
            break;
        }
        case SDEFED__ENVELOPE__BODY_ERROR:
            log_warn("site %s reports: %s", p->id, env->error->message ? env->error->message : "");
            break;
        default:
            refuse(p, SDEFED__ERROR_CODE__ERR_PROTOCOL, "unexpected message from an agent");
            break;
        }
        return;
    }

    switch (env->body_case) {        /* analyst */
    case SDEFED__ENVELOPE__BODY_SUBMIT:
        co->n_submitted++;
        dispatch_submit(co, p, env->request_id, env->submit);
        break;
    case SDEFED__ENVELOPE__BODY_SITES_REQUEST:
        reply_sites(p, env->request_id);
        break;
    case SDEFED__ENVELOPE__BODY_FETCH:
        reply_fetch(p, env->request_id, env->fetch);
        break;
    case SDEFED__ENVELOPE__BODY_MONITOR_REQUEST:   /* issue 6: monitors.c */
        monitors_request(co, p, env->request_id, env->monitor_request);
        break;
    case SDEFED__ENVELOPE__BODY_HEARTBEAT:
        break;
    default:
        refuse(p, SDEFED__ERROR_CODE__ERR_PROTOCOL, "unexpected message from an analyst");
        break;
    }
}

static void on_close(conn *c, int err, const char *why)
{
    (void)err;
    (void)why;
    peers_handle_close(conn_userdata(c));
}

void peers_handle_close(peer *p)
{
    coord *co = p->co;
    if (p->role == PEER_AGENT && co->sites[p->site_index].link == p) {
        co->sites[p->site_index].link = NULL;
        log_info("site %s offline", p->id);
        dispatch_site_lost(co, p->site_index);
    } else if (p->role == PEER_ANALYST) {
        dispatch_analyst_lost(co, p);
    }
    if (p->prev)
        p->prev->next = p->next;
    else
        co->peers = p->next;
    if (p->next)
        p->next->prev = p->prev;
    free(p);
}

static void on_connection(uv_stream_t *server, int status)
{
    coord *co = server->data;
    if (status < 0) {
        log_warn("accept: %s", uv_strerror(status));
        return;
    }
    peer *p = calloc(1, sizeof *p);
    if (!p) {
        log_error("accept: out of memory");
        return;
    }
    p->co = co;
    conn_limits lim = { .max_frame = co->cfg.max_frame };
    p->c = conn_accept(server, co->tls, &peer_callbacks, &lim, p);
    if (!p->c) {
        free(p);
        return;
    }
    p->next = co->peers;
    if (co->peers)
        co->peers->prev = p;
    co->peers = p;
}

static void sweep_cb(uv_timer_t *t)
{
    coord *co = t->data;
    uint64_t now = coord_now_ms();
    for (size_t i = 0; i < co->cfg.n_sites; i++) {
        site_state *s = &co->sites[i];
        if (s->link && now - s->last_seen_ms > co->cfg.heartbeat_timeout_ms)
            conn_close(s->link->c, SDF_ETIMEOUT, "no heartbeat within heartbeat_timeout");
    }
}

int peers_listen(coord *co)
{
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(co->cfg.listen_host, co->cfg.listen_port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        rc = uv_ip6_addr(co->cfg.listen_host, co->cfg.listen_port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        log_error("listen address %s is not a numeric IPv4/IPv6 address", co->cfg.listen_host);
        return SDF_ECONFIG;
    }
    uv_tcp_init(co->loop, &co->server);
    co->server.data = co;
    rc = uv_tcp_bind(&co->server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&co->server, 128, on_connection);
    if (rc != 0) {
        log_error("cannot listen on %s:%d: %s", co->cfg.listen_host, co->cfg.listen_port,
                  uv_strerror(rc));
        return SDF_EIO;
    }
    uv_timer_init(co->loop, &co->sweep_timer);
    co->sweep_timer.data = co;
    uv_timer_start(&co->sweep_timer, sweep_cb, 1000, 1000);
    log_info("listening on %s:%d (%zu sites, %zu analysts registered)", co->cfg.listen_host,
             co->cfg.listen_port, co->cfg.n_sites, co->cfg.n_analysts);
    return 0;
}

void peers_close_all(coord *co)
{
    uv_timer_stop(&co->sweep_timer);
    if (!uv_is_closing((uv_handle_t *)&co->server))
        uv_close((uv_handle_t *)&co->server, NULL);
    if (!uv_is_closing((uv_handle_t *)&co->sweep_timer))
        uv_close((uv_handle_t *)&co->sweep_timer, NULL);
    for (peer *p = co->peers; p; p = p->next)
        conn_close(p->c, 0, "coordinator shutting down");
    for (size_t i = 0; i < co->cfg.n_sites; i++)
        free_datasets(&co->sites[i]);
}
