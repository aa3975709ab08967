/* agent/agent_link.c — the agent's one outbound link to the coordinator.
 *
 * SDEs forbid inbound connections, so the agent dials out and keeps one
 * long-lived mutual-TLS connection. After TLS it sends Hello (protocol
 * version, role, datasets) and serves queries once HelloAck arrives. It
 * sends a heartbeat every heartbeat interval and treats three intervals of
 * silence from the coordinator as a dead link (half-open TCP). After any
 * failure it waits an exponentially growing delay with jitter, from
 * reconnect_min_ms up to reconnect_max_ms, so a coordinator restart is not
 * hit by every site at the same instant.
 */
#include "agent.h"

#include <stdlib.h>
#include <string.h>

#include "agent_ops.h"
#include "query.h"
#include "sdefed/log.h"

#define SOFTWARE "sdefed-agent 0.1.0"

static void on_tls_ready(conn *c);
static void on_message(conn *c, Sdefed__Envelope *env);
static void on_close(conn *c, int err, const char *why);

static const conn_callbacks link_callbacks = { on_tls_ready, on_message, on_close };

static uint64_t now_ms(void)
{
    uv_timeval64_t tv;
    uv_gettimeofday(&tv);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

static unsigned jitter(unsigned base)
{
    /* "Equal jitter": half fixed, half random, so delays never collapse to 0. */
    static uint64_t x;
    if (x == 0)
        x = uv_hrtime() | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return base / 2 + (unsigned)(x % (base / 2 + 1));
}

static void reconnect_cb(uv_timer_t *t)
{
    agent_link_start(t->data);
}

static void schedule_reconnect(agent *a)
{
    if (a->stopping)
        return;
    const agent_config *cfg = &a->cfg->cfg;
    if (a->backoff_ms < cfg->reconnect_min_ms)
        a->backoff_ms = cfg->reconnect_min_ms;
    unsigned delay = jitter(a->backoff_ms);
    log_info("reconnecting to %s:%d in %u ms", cfg->coordinator_host, cfg->coordinator_port,
             delay);
    a->state = LINK_IDLE;
    uv_timer_start(&a->reconnect_timer, reconnect_cb, delay, 0);
    a->backoff_ms = a->backoff_ms >= cfg->reconnect_max_ms / 2 ? cfg->reconnect_max_ms
                                                               : a->backoff_ms * 2;
}

void agent_link_start(agent *a)
{
    const agent_config *cfg = &a->cfg->cfg;
    if (a->link || a->stopping)
        return;
    conn_limits lim = { .max_frame = cfg->max_frame };
    a->state = LINK_CONNECTING;
    a->link_generation++;
    conn *c = conn_connect(a->loop, cfg->coordinator_host, cfg->coordinator_port, a->tls,
                           &link_callbacks, &lim, a);
    if (c && a->state == LINK_CONNECTING)
        a->link = c;
    if (!c) {
        log_warn("cannot start connection to %s:%d", cfg->coordinator_host,
                 cfg->coordinator_port);
        schedule_reconnect(a);
    }
}

void agent_link_stop(agent *a)
{
    uv_timer_stop(&a->reconnect_timer);
    uv_timer_stop(&a->heartbeat_timer);
    if (a->link)
        conn_close(a->link, 0, "agent shutting down");
}

int agent_link_send(agent *a, const Sdefed__Envelope *env)
{
    if (!a->link || a->state != LINK_READY)
        return SDF_ECLOSED;
    return conn_send(a->link, env);
}

static void heartbeat_cb(uv_timer_t *t)
{
    agent *a = t->data;
    const agent_config *cfg = &a->cfg->cfg;
    if (!a->link || a->state != LINK_READY)
        return;
    if (now_ms() - a->last_rx_ms > 3ull * cfg->heartbeat_ms) {
        conn_close(a->link, SDF_ETIMEOUT, "coordinator silent for 3 heartbeat intervals");
        return;
    }
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    Sdefed__Heartbeat hb = SDEFED__HEARTBEAT__INIT;
    hb.unix_ms = now_ms();
    env.body_case = SDEFED__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    (void)conn_send(a->link, &env);
}

static void on_tls_ready(conn *c)
{
    agent *a = conn_userdata(c);
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    Sdefed__Hello hello = SDEFED__HELLO__INIT;
    Sdefed__DatasetInfo **ds = NULL;
    int n = query_describe_datasets(&a->cfg->cfg, &ds);

    hello.protocol_version = SDEFED_PROTOCOL_VERSION;
    hello.role = SDEFED__ROLE__ROLE_AGENT;
    hello.software = (char *)SOFTWARE;
    if (n > 0) {
        hello.n_datasets = (size_t)n;
        hello.datasets = ds;
    }
    env.body_case = SDEFED__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    a->state = LINK_HELLO;
    a->last_rx_ms = now_ms();
    log_debug("TLS up with %s (%s); sending Hello", conn_peer_cn(c), conn_peer_addr(c));
    (void)conn_send(c, &env);
    for (int i = 0; i < n; i++)
        query_dataset_info_free(ds[i]);
    free(ds);
}

static void handle_hello_ack(agent *a, conn *c, const Sdefed__HelloAck *ack)
{
    if (ack->protocol_version != SDEFED_PROTOCOL_VERSION) {
        log_error("coordinator speaks protocol version %u, this agent %u",
                  ack->protocol_version, SDEFED_PROTOCOL_VERSION);
        conn_close(c, SDF_EVERSION, "protocol version mismatch");
        return;
    }
    conn_set_authenticated(c);
    a->state = LINK_READY;
    a->backoff_ms = a->cfg->cfg.reconnect_min_ms;
    log_info("connected to coordinator %s at %s as %s",
             ack->coordinator_id && *ack->coordinator_id ? ack->coordinator_id : conn_peer_cn(c),
             conn_peer_addr(c), ack->peer_id ? ack->peer_id : "?");
    uv_timer_start(&a->heartbeat_timer, heartbeat_cb, a->cfg->cfg.heartbeat_ms,
                   a->cfg->cfg.heartbeat_ms);
    agent_ops_note_connected(a);
}

static void on_message(conn *c, Sdefed__Envelope *env)
{
    agent *a = conn_userdata(c);
    a->last_rx_ms = now_ms();

    if (a->state == LINK_HELLO) {
        if (env->body_case == SDEFED__ENVELOPE__BODY_HELLO_ACK) {
            handle_hello_ack(a, c, env->hello_ack);
        } else if (env->body_case == SDEFED__ENVELOPE__BODY_ERROR) {
            log_error("coordinator refused this agent: %s",
                      env->error->message ? env->error->message : "no reason");
            conn_close(c, SDF_EAUTH, "refused by coordinator");
        } else {
            conn_close(c, SDF_EPROTO, "expected HelloAck");
        }
        return;
    }

    switch (env->body_case) {
    case SDEFED__ENVELOPE__BODY_HEARTBEAT:
        break;
    case SDEFED__ENVELOPE__BODY_QUERY_REQUEST: {
        /* Take the request out of the envelope so it outlives this callback. */
        Sdefed__QueryRequest *req = env->query_request;
        env->query_request = NULL;
        env->body_case = SDEFED__ENVELOPE__BODY__NOT_SET;
        agent_jobs_submit(a, req);
        break;
    }
    case SDEFED__ENVELOPE__BODY_ERROR:
        log_warn("coordinator error: %s", env->error->message ? env->error->message : "");
        break;
    default:
        conn_close(c, SDF_EPROTO, "unexpected message from coordinator");
        break;
    }
}

static void on_close(conn *c, int err, const char *why)
{
    agent *a = conn_userdata(c);
    if (a->link && a->link != c)
        return;     /* an older connection, already replaced */
    bool was_ready = a->state == LINK_READY;
    a->link = NULL;
    a->state = LINK_IDLE;
    uv_timer_stop(&a->heartbeat_timer);
    if (err != 0 || !a->stopping)
        log_warn("link to coordinator %s: %s", was_ready ? "lost" : "failed",
                 why ? why : sdf_strerror(err));
    agent_ops_note_error(a, why ? why : sdf_strerror(err));
    schedule_reconnect(a);
}
