/* agent/agent.h — the running agent daemon's state, shared by its parts.
 *
 *   main.c        start-up, signals, reload, shutdown
 *   agent_link.c  the one outbound connection: dial, Hello, heartbeats,
 *                 reconnect with exponential backoff and jitter
 *   agent_jobs.c  queries: each runs on the libuv thread pool (query_run)
 *                 so a slow query never stalls the loop; results go back
 *                 on whatever link is up when they finish
 * Everything here is touched only on the loop thread, except what a job's
 * worker reads (its request and the refcounted config, both immutable).
 */
#ifndef AGENT_AGENT_H
#define AGENT_AGENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent_config.h"
#include "sdefed/conn.h"
#include "sdefed/tls.h"

/* A config shared by the daemon and running jobs; freed when the last
 * holder lets go (loop thread only). */
typedef struct agent_cfg_ref {
    agent_config cfg;
    int refs;
} agent_cfg_ref;

typedef enum {
    LINK_IDLE,        /* waiting for the reconnect timer */
    LINK_CONNECTING,  /* TCP/TLS in progress */
    LINK_HELLO,       /* TLS done, Hello sent, waiting for HelloAck */
    LINK_READY,       /* serving queries */
} link_state;

typedef struct agent_job agent_job;

typedef struct agent {
    uv_loop_t *loop;
    const char *config_path;
    agent_cfg_ref *cfg;          /* current config */
    tls_ctx *tls;                /* current TLS context */

    conn *link;                  /* NULL unless connecting or connected */
    link_state state;
    uint64_t link_generation;    /* bumped per connection, to spot stale results */
    unsigned backoff_ms;
    uint64_t last_rx_ms;         /* last message from the coordinator */
    uv_timer_t reconnect_timer;
    uv_timer_t heartbeat_timer;

    agent_job *jobs;             /* in flight (doubly linked) */
    unsigned n_jobs;
    uint64_t answered, refused, held, failed;

    bool stopping;               /* SIGTERM seen: drain and exit */
    uv_timer_t drain_timer;
    uv_signal_t sig_term, sig_int, sig_hup;
} agent;

/* agent_link.c */
void agent_link_start(agent *a);              /* connect now */
void agent_link_stop(agent *a);               /* close link, no reconnect */
int agent_link_send(agent *a, const Sdefed__Envelope *env);

/* agent_jobs.c */
#define AGENT_MAX_JOBS 256
/* Take ownership of req and run it. Replies on the link when done. */
void agent_jobs_submit(agent *a, Sdefed__QueryRequest *req);
/* Ask every running job to stop at its next progress check. */
void agent_jobs_cancel_all(agent *a);

void agent_cfg_release(agent_cfg_ref *r);

/* main.c: when stopping and nothing is left in flight, finish shutdown. */
void agent_maybe_exit(agent *a);

#endif
