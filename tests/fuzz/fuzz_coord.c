/* tests/fuzz/fuzz_coord.c — libFuzzer target for the coordinator's handling
 * of whole messages from agents and analysts.
 *
 * Once: a coordinator config in a temporary directory (sites site-a,
 * site-b, site-c; analysts alice, bob). Per input: a fresh event loop, an
 * in-memory store, the monitors, and eight peers without a connection
 * (p->c NULL, p->id the identity their certificate would carry):
 *   0 site-a  1 site-b  2 alice  3 bob  4 site-a (again)  5 eve (unknown)
 *   6 alice (again)  7 site-c
 * The input is a list of records: byte 0 = peer (low 3 bits) and whether to
 * drop that peer's link instead of sending (bit 7); bytes 1-2 = length
 * (big-endian); then that many bytes of a packed Envelope, which goes to
 * peers_handle_message exactly as conn.c would deliver it (Hello first,
 * then anything). A QueryResult or Fetch whose query_id is "#N" gets the
 * id of the N-th QueryRequest the coordinator sent, so results can meet
 * their pending query.
 *
 * peer_send is wrapped (-Wl,--wrap=peer_send, Makefile): for these peers it
 * packs every message the coordinator sends (which must succeed), records
 * QueryRequest ids and reports success, so dispatch really waits for the
 * agents. A refused peer or one replaced by a reconnect is closed through
 * peers_handle_close, as its connection's close callback would. At the end
 * everything is shut down as main.c does and the loop must close cleanly;
 * LeakSanitizer checks that nothing is left.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord.h"
#include "monitors.h"
#include "sdefed/log.h"
#include "store.h"

#define N_PEERS 8
#define N_IDS 8

static const char *const peer_ids[N_PEERS] = { "site-a", "site-b", "alice", "bob",
                                               "site-a", "eve",    "alice", "site-c" };

static coord_config cfg;
static bool loaded;
static char sent_ids[N_IDS][64];
static unsigned n_sent;

int __real_peer_send(peer *p, const Sdefed__Envelope *env);

int __wrap_peer_send(peer *p, const Sdefed__Envelope *env)
{
    if (!p || p->c)
        return __real_peer_send(p, env);
    size_t n = sdefed__envelope__get_packed_size(env);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return SDF_ENOMEM;
    if (sdefed__envelope__pack(env, buf) != n)
        abort();
    free(buf);
    if (env->body_case == SDEFED__ENVELOPE__BODY_QUERY_REQUEST && env->query_request->query_id) {
        snprintf(sent_ids[n_sent % N_IDS], sizeof sent_ids[0], "%s",
                 env->query_request->query_id);
        n_sent++;
    }
    return 0;
}

static void load_config(void)
{
    char dir[] = "/tmp/sdefed-fuzz-coord-XXXXXX";
    if (!mkdtemp(dir))
        abort();
    char path[128];
    snprintf(path, sizeof path, "%s/coord.conf", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        abort();
    fprintf(f,
            "[coordinator]\nlisten = 127.0.0.1:7443\ncert = c.crt\nkey = c.key\nca = ca.crt\n"
            "store = coord.db\ndefault_timeout_seconds = 20\nlog_level = error\n"
            "[sites]\nsite-a =\nsite-b =\nsite-c =\n[analysts]\nalice =\nbob =\n");
    fclose(f);
    char err[512];
    if (coord_config_load(path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_coord: %s\n", err);
        abort();
    }
    unlink(path);
    rmdir(dir);
    log_set_level(SDF_LOG_ERROR);
    loaded = true;
}

/* "#N" -> the N-th query id sent (as free_unpacked will free it). */
static void resolve_id(char **id)
{
    if (!*id || (*id)[0] != '#' || n_sent == 0)
        return;
    unsigned k = (unsigned)atoi(*id + 1) % (n_sent < N_IDS ? n_sent : N_IDS);
    char *dup = strdup(sent_ids[k]);
    if (!dup)
        return;
    free(*id);
    *id = dup;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!loaded)
        load_config();
    n_sent = 0;

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        abort();
    coord co;
    memset(&co, 0, sizeof co);
    co.loop = &loop;
    co.cfg = cfg;            /* read-only here: no reload */
    co.started_ms = coord_now_ms();
    char err[256];
    co.st = store_open(":memory:", err, sizeof err);
    co.sites = calloc(cfg.n_sites, sizeof *co.sites);
    if (!co.st || !co.sites || monitors_start(&co) != 0)
        abort();

    peer *peers[N_PEERS];
    for (int i = 0; i < N_PEERS; i++) {
        peer *p = calloc(1, sizeof *p);
        if (!p)
            abort();
        p->co = &co;
        snprintf(p->id, sizeof p->id, "%s", peer_ids[i]);
        p->next = co.peers;
        if (co.peers)
            co.peers->prev = p;
        co.peers = p;
        peers[i] = p;
    }

    size_t i = 0;
    while (i + 3 <= size) {
        uint8_t who = data[i];
        size_t len = (size_t)data[i + 1] << 8 | data[i + 2];
        i += 3;
        if (len > size - i)
            len = size - i;
        const uint8_t *body = data + i;
        i += len;
        int k = who & 7;
        peer *p = peers[k];
        if (!p)
            continue;
        if (who & 0x80) {                /* the link drops */
            peers_handle_close(p);
            peers[k] = NULL;
            continue;
        }
        Sdefed__Envelope *env = sdefed__envelope__unpack(NULL, len, body);
        if (!env)
            continue;
        if (env->body_case == SDEFED__ENVELOPE__BODY_QUERY_RESULT)
            resolve_id(&env->query_result->query_id);
        else if (env->body_case == SDEFED__ENVELOPE__BODY_FETCH)
            resolve_id(&env->fetch->query_id);
        uint64_t refused = co.n_refused_peers;
        peers_handle_message(p, env);
        sdefed__envelope__free_unpacked(env, NULL);
        if (co.n_refused_peers != refused) {     /* conn_refuse: the link closes */
            peers_handle_close(p);
            peers[k] = NULL;
        }
        for (int j = 0; j < N_PEERS; j++) {      /* replaced by a reconnect: closed */
            peer *q = peers[j];
            if (q && q->role == PEER_AGENT && co.sites[q->site_index].link != q) {
                peers_handle_close(q);
                peers[j] = NULL;
            }
        }
        uv_run(&loop, UV_RUN_NOWAIT);
    }

    /* Shut down as main.c does. */
    co.stopping = true;
    dispatch_abort_all(&co);
    monitors_stop(&co);
    for (int k = 0; k < N_PEERS; k++)
        if (peers[k])
            peers_handle_close(peers[k]);
    if (co.peers)
        abort();                 /* every peer unlinked itself */
    for (int r = 0; r < 4; r++)
        uv_run(&loop, UV_RUN_NOWAIT);
    uv_walk(&loop, close_walk_cb, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        abort();
    if (dispatch_in_flight(&co) != 0)
        abort();
    monitors_free(&co);
    for (size_t s = 0; s < cfg.n_sites; s++) {
        for (size_t d = 0; d < co.sites[s].n_datasets; d++)
            sdefed__dataset_info__free_unpacked(co.sites[s].datasets[d], NULL);
        free(co.sites[s].datasets);
    }
    free(co.sites);
    store_close(co.st);
    return 0;
}
