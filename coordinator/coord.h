/* coordinator/coord.h — the running coordinator's state, shared by its parts.
 *
 *   main.c      start-up, signals, shutdown
 *   peers.c     accepting connections, Hello/role checks, heartbeats,
 *               the live site table, analyst requests (sites, fetch)
 *   dispatch.c  fan a Submit out to sites with a deadline, gather results,
 *               pool, store, reply
 *   pool.c      pooling of per-site results (pure)
 *   store.c     the SQLite store of queries and results
 * All state is touched on the loop thread only.
 */
#ifndef COORD_COORD_H
#define COORD_COORD_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "coord_config.h"
#include "sdefed/conn.h"
#include "sdefed/tls.h"
#include "store.h"

typedef enum { PEER_NEW, PEER_AGENT, PEER_ANALYST } peer_role;

typedef struct coord coord;
typedef struct pending_query pending_query;

/* One accepted connection (conn userdata). */
typedef struct peer {
    coord *co;
    conn *c;
    peer_role role;
    char id[64];               /* authenticated identity (CN) */
    size_t site_index;         /* for agents: index into co->sites */
    struct peer *prev, *next;
} peer;

/* Live state of one registered site (parallel to cfg->sites). */
typedef struct site_state {
    peer *link;                  /* NULL = offline */
    uint64_t last_seen_ms;       /* 0 = never */
    Sdefed__DatasetInfo **datasets;  /* from the agent's Hello (owned) */
    size_t n_datasets;
    char address[64];
} site_state;

struct coord {
    uv_loop_t *loop;
    const char *config_path;
    coord_config cfg;
    tls_ctx *tls;
    uv_tcp_t server;
    uv_timer_t sweep_timer;
    uv_signal_t sig_term, sig_int;
    bool stopping;

    peer *peers;
    site_state *sites;           /* cfg.n_sites entries */
    pending_query *queries;      /* in flight */
    store *st;
};

/* peers.c */
int peers_listen(coord *co);                 /* bind + listen; 0 or SDF_E* (logged) */
void peers_close_all(coord *co);
uint64_t coord_now_ms(void);
int peer_send(peer *p, const Sdefed__Envelope *env);
void peer_send_error(peer *p, uint64_t request_id, Sdefed__ErrorCode code, const char *msg);

/* dispatch.c */
/* Handle an analyst's Submit (request_id echoed in the reply). */
void dispatch_submit(coord *co, peer *analyst, uint64_t request_id, const Sdefed__Submit *sub);
/* An agent's QueryResult arrived; takes ownership of res. */
void dispatch_result(coord *co, size_t site_index, Sdefed__QueryResult *res);
/* A site's link went away: pending queries mark it offline. */
void dispatch_site_lost(coord *co, size_t site_index);
/* An analyst connection went away: its queries still complete and are stored. */
void dispatch_analyst_lost(coord *co, peer *analyst);
/* Shutdown: finish every pending query now (remaining sites: "coordinator shutting down"). */
void dispatch_abort_all(coord *co);

#endif
