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
    uint64_t n_results[8];       /* results received, by Sdefed__SiteStatus (metrics) */
    uint64_t n_malformed;        /* ok answers refused by result_check (metrics) */
    uint64_t n_connects;         /* accepted Hellos (metrics) */
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

    /* operations (coord_ops.c, metrics.c, reload.c) */
    uv_signal_t sig_hup;
    uv_timer_t drain_timer;      /* SIGTERM: polls until queries finish or the bound */
    uint64_t drain_started_ms;
    uint64_t started_ms;
    struct coord_ops *ops;       /* status socket + metrics listener (coord_ops.c) */
    uint64_t n_submitted;        /* Submit messages received */
    uint64_t n_refused_peers;    /* connections refused at Hello */
    uint64_t n_reloads, n_reload_failures;
    struct monitors *mon;        /* issue 6: surveillance monitors (monitors.c) */
};

/* peers.c */
int peers_listen(coord *co);                 /* bind + listen; 0 or SDF_E* (logged) */
void peers_close_all(coord *co);
uint64_t coord_now_ms(void);
int peer_send(peer *p, const Sdefed__Envelope *env);
void peer_send_error(peer *p, uint64_t request_id, Sdefed__ErrorCode code, const char *msg);
/* What a connection's callbacks do, without the connection (on_message,
 * on_close call these; tests/fuzz/fuzz_coord.c drives them directly with
 * p->c NULL and p->id the peer's identity). handle_message may refuse the
 * peer (its connection then closes); handle_close unlinks and frees p. */
void peers_handle_message(peer *p, Sdefed__Envelope *env);
void peers_handle_close(peer *p);

/* dispatch.c */
/* Handle an analyst's Submit (request_id echoed in the reply). */
void dispatch_submit(coord *co, peer *analyst, uint64_t request_id, const Sdefed__Submit *sub);
/* issue 6: a query submitted by the coordinator itself (monitors) on
 * behalf of `requester`. `done` is called exactly once: with the pooled
 * result (borrowed for the call; already stored) and NULL, or with NULL
 * and a reason when the query could not start. It may be called before
 * dispatch_submit_internal returns. */
typedef void (*dispatch_done_fn)(void *ctx, const Sdefed__FederatedResult *r, const char *error);
void dispatch_submit_internal(coord *co, const char *requester, const Sdefed__Submit *sub,
                              dispatch_done_fn done, void *done_ctx);
/* An agent's QueryResult arrived; takes ownership of res. */
void dispatch_result(coord *co, size_t site_index, Sdefed__QueryResult *res);
/* A site's link went away: pending queries mark it offline. */
void dispatch_site_lost(coord *co, size_t site_index);
/* An analyst connection went away: its queries still complete and are stored. */
void dispatch_analyst_lost(coord *co, peer *analyst);
/* Shutdown: finish every pending query now (remaining sites: "coordinator shutting down"). */
void dispatch_abort_all(coord *co);
/* Number of queries in flight. */
size_t dispatch_in_flight(const coord *co);
/* The site registry was reloaded: map[old index] is the new index, or
 * SIZE_MAX for a site that was removed (its slot is left out of pending
 * results). co->cfg is already the new config; old_cfg names old sites. */
void dispatch_sites_remapped(coord *co, const size_t *map, size_t n_old,
                             const coord_config *old_cfg);

/* reload.c: SIGHUP. Load config + certificates into fresh structures and
 * swap them in; on any failure log why and keep everything running as it
 * was. Sites removed from [sites] and analysts removed from [analysts] are
 * disconnected; a changed pin applies from a peer's next connection.
 * listen, store, metrics_listen and status_socket need a restart.
 * Returns 0 or the SDF_E* code of the failure. */
int coord_reload(coord *co);

/* coord_ops.c: status socket + metrics listener + daily certificate expiry
 * check. Start returns 0 or SDF_E* (logged). Stop is idempotent. */
int coord_ops_start(coord *co);
void coord_ops_stop(coord *co);
/* Free what coord_ops_start allocated, once the loop has closed every handle. */
void coord_ops_free(coord *co);
void coord_ops_check_expiry(const coord *co);
/* `sdefed-coordinator --config FILE status [--json]`; exit status. */
int coord_ops_status_command(const coord_config *cfg, int argc, char **argv);

#endif
