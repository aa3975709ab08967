/* coordinator/main.c — sdefed-coordinator: start-up, signals, shutdown.
 *
 * The coordinator accepts agents and analysts on one mutual-TLS port
 * (peers.c), fans queries out and pools the answers (dispatch.c, pool.c)
 * and records everything in its store (store.c). SIGTERM/SIGINT finish
 * pending queries with what has arrived, store them, and exit; a second
 * signal exits at once.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coord.h"
#include "sdefed/log.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: sdefed-coordinator --config FILE [--check-config]\n"
               "  -c, --config FILE    coordinator configuration (INI)\n"
               "      --check-config   validate the configuration and certificates, then exit\n"
               "  -h, --help           this help\n");
}

static tls_ctx *make_tls(const coord_config *c, char *err, size_t errlen)
{
    tls_opts o = {
        .cert_file = c->cert, .key_file = c->key, .ca_file = c->ca,
        .crl_file = c->crl[0] ? c->crl : NULL,
    };
    return tls_ctx_create(TLS_ROLE_SERVER, &o, err, errlen);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    coord *co = s->data;
    if (co->stopping) {
        log_warn("second signal: exiting now");
        _exit(1);
    }
    co->stopping = true;
    log_info("signal %d: finishing pending queries and stopping", signum);
    dispatch_abort_all(co);
    peers_close_all(co);
    uv_signal_stop(&co->sig_term);
    uv_signal_stop(&co->sig_int);
    uv_close((uv_handle_t *)&co->sig_term, NULL);
    uv_close((uv_handle_t *)&co->sig_int, NULL);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'C' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const char *config_path = NULL;
    bool check_only = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config_path = optarg; break;
        case 'C': check_only = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!config_path || optind != argc) {
        usage(stderr);
        return 2;
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
    co.sig_term.data = co.sig_int.data = &co;
    uv_signal_start(&co.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&co.sig_int, on_stop_signal, SIGINT);

    uv_run(&loop, UV_RUN_DEFAULT);
    uv_walk(&loop, close_walk_cb, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        log_warn("event loop closed with handles open");

    store_close(co.st);
    tls_ctx_free(co.tls);
    coord_config_free(&co.cfg);
    free(co.sites);
    log_info("stopped");
    return 0;
}
