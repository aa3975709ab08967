/* coordinator/main.c — sdefed-coordinator: start-up, signals, shutdown.
 *
 * The coordinator accepts agents and analysts on one mutual-TLS port
 * (peers.c), fans queries out and pools the answers (dispatch.c, pool.c)
 * and records everything in its store (store.c). SIGHUP reloads the
 * configuration, registry and certificates (reload.c; a failed reload keeps
 * the old ones). SIGTERM/SIGINT stop accepting connections and queries, let
 * queries in flight finish for up to drain_timeout_seconds, then finish the
 * rest with what has arrived ("coordinator shutting down"), store them and
 * exit; a second signal exits at once. The daemon never forks: it runs in
 * the foreground under systemd (Type=notify, see sdefed/notify.h) or in a
 * container. coord_ops.c serves the status socket and metrics.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coord.h"
#include "monitors.h"   /* issue 6 */
#include "sdefed/daemon_args.h"
#include "sdefed/log.h"
#include "sdefed/notify.h"

#define DRAIN_POLL_MS 100

static void usage(FILE *f)
{
    fprintf(f, "usage: sdefed-coordinator --config FILE [--check-config]\n"
               "       sdefed-coordinator --config FILE status [--json]\n"
               "  -c, --config FILE    coordinator configuration (INI)\n"
               "      --check-config   validate the configuration and certificates, then exit\n"
               "  -h, --help           this help\n"
               "  status               ask the running coordinator (status socket) for its sites\n"
               "The daemon always runs in the foreground (systemd Type=notify, containers);\n"
               "SIGHUP reloads, SIGTERM drains and exits, a second SIGTERM exits at once.\n");
}

static tls_ctx *make_tls(const coord_config *c, char *err, size_t errlen)
{
    tls_opts o = {
        .cert_file = c->cert, .key_file = c->key, .ca_file = c->ca,
        .crl_file = c->crl[0] ? c->crl : NULL,
    };
    return tls_ctx_create(TLS_ROLE_SERVER, &o, err, errlen);
}

/* Everything is answered (or the bound passed): close all and let the loop end. */
static void shutdown_now(coord *co)
{
    if (dispatch_in_flight(co) > 0) {
        log_warn("drain time exceeded: finishing %zu queries with the answers received",
                 dispatch_in_flight(co));
        dispatch_abort_all(co);
    }
    peers_close_all(co);
    coord_ops_stop(co);
    monitors_stop(co);   /* issue 6 */
    uv_timer_stop(&co->drain_timer);
    uv_close((uv_handle_t *)&co->drain_timer, NULL);
    uv_signal_stop(&co->sig_term);
    uv_signal_stop(&co->sig_int);
    uv_signal_stop(&co->sig_hup);
    uv_close((uv_handle_t *)&co->sig_term, NULL);
    uv_close((uv_handle_t *)&co->sig_int, NULL);
    uv_close((uv_handle_t *)&co->sig_hup, NULL);
}

static void drain_poll_cb(uv_timer_t *t)
{
    coord *co = t->data;
    if (dispatch_in_flight(co) == 0 ||
        coord_now_ms() - co->drain_started_ms >= co->cfg.drain_timeout_ms)
        shutdown_now(co);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    coord *co = s->data;
    if (co->stopping) {
        log_warn("second signal: exiting now");
        _exit(1);
    }
    co->stopping = true;          /* dispatch_submit now refuses new queries */
    notify_send("STOPPING=1");
    size_t n = dispatch_in_flight(co);
    log_info("signal %d: no new queries; waiting for %zu in flight (at most %u ms)", signum, n,
             co->cfg.drain_timeout_ms);
    notify_status("draining %zu queries", n);
    /* No new connections either; connected agents stay to answer. */
    if (!uv_is_closing((uv_handle_t *)&co->server))
        uv_close((uv_handle_t *)&co->server, NULL);
    co->drain_started_ms = coord_now_ms();
    if (n == 0)
        shutdown_now(co);
    else
        uv_timer_start(&co->drain_timer, drain_poll_cb, DRAIN_POLL_MS, DRAIN_POLL_MS);
}

/* RELOADING=1 with the monotonic time systemd >= 253 asks for. */
static void notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    char msg[96];
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
    notify_send(msg);
}

static void on_hup(uv_signal_t *s, int signum)
{
    (void)signum;
    coord *co = s->data;
    if (co->stopping)
        return;
    notify_reloading();
    if (coord_reload(co) == 0)
        notify_send("READY=1\nSTATUS=configuration reloaded");
    else
        notify_send("READY=1\nSTATUS=reload failed, running the previous configuration");
}

static int run_status(const char *config_path, int argc, char **argv)
{
    if (strcmp(argv[0], "status") != 0) {
        fprintf(stderr, "sdefed-coordinator: unknown command '%s'\n", argv[0]);
        usage(stderr);
        return 2;
    }
    coord_config cfg;
    char err[1024];
    if (coord_config_load(config_path, &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-coordinator: %s\n", err);
        coord_config_free(&cfg);
        return 1;
    }
    int rc = coord_ops_status_command(&cfg, argc, argv);
    coord_config_free(&cfg);
    return rc;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    daemon_args args;
    int st = daemon_args_parse(argc, argv, usage, &args);
    if (st >= 0)
        return st;
    const char *config_path = args.config_path;
    bool check_only = args.check_only;
    if (args.sub_argc > 0) {
        log_init("sdefed-coordinator", NULL);
        log_set_level(SDF_LOG_WARN);
        return run_status(config_path, args.sub_argc, args.sub_argv);
    }
    log_init("sdefed-coordinator", NULL);

    coord co;
    memset(&co, 0, sizeof co);
    co.config_path = config_path;
    char err[1024];
    if (coord_config_load(config_path, &co.cfg, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-coordinator: %s\n", err);
        coord_config_free(&co.cfg);
        return 1;
    }
    char why[512];
    co.tls = make_tls(&co.cfg, why, sizeof why);
    if (!co.tls) {
        fprintf(stderr, "sdefed-coordinator: %s: TLS: %s\n", config_path, why);
        coord_config_free(&co.cfg);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK (%zu sites, %zu analysts)\n", config_path, co.cfg.n_sites,
               co.cfg.n_analysts);
        tls_ctx_free(co.tls);
        coord_config_free(&co.cfg);
        return 0;
    }
    log_set_level(co.cfg.log_level);

    co.st = store_open(co.cfg.store, err, sizeof err);
    if (!co.st) {
        log_error("%s", err);
        tls_ctx_free(co.tls);
        coord_config_free(&co.cfg);
        return 1;
    }
    int recovered = store_recover(co.st);
    if (recovered > 0)
        log_warn("%d queries were interrupted by the previous shutdown", recovered);

    co.sites = calloc(co.cfg.n_sites ? co.cfg.n_sites : 1, sizeof *co.sites);
    uv_loop_t loop;
    if (!co.sites || uv_loop_init(&loop) != 0) {
        log_error("cannot initialise");
        return 1;
    }
    co.loop = &loop;
    signal(SIGPIPE, SIG_IGN);
    if (peers_listen(&co) != 0) {
        uv_walk(&loop, close_walk_cb, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        store_close(co.st);
        tls_ctx_free(co.tls);
        coord_config_free(&co.cfg);
        free(co.sites);
        return 1;
    }
    uv_signal_init(&loop, &co.sig_term);
    uv_signal_init(&loop, &co.sig_int);
    uv_signal_init(&loop, &co.sig_hup);
    uv_timer_init(&loop, &co.drain_timer);
    co.sig_term.data = co.sig_int.data = co.sig_hup.data = &co;
    co.drain_timer.data = &co;
    uv_signal_start(&co.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&co.sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&co.sig_hup, on_hup, SIGHUP);
    co.started_ms = coord_now_ms();
    int start_failed = 0;
    if (coord_ops_start(&co) != 0 || monitors_start(&co) != 0) {   /* issue 6: monitors */
        start_failed = 1;
        co.stopping = true;
        shutdown_now(&co);
    } else {
        notify_send("READY=1\nSTATUS=listening");
    }

    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_walk_cb, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        log_warn("event loop closed with handles open");

    coord_ops_free(&co);
    monitors_free(&co);   /* issue 6 */
    store_close(co.st);
    tls_ctx_free(co.tls);
    coord_config_free(&co.cfg);
    free(co.sites);
    log_info("stopped");
    return start_failed;
}
