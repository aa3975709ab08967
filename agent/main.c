/* agent/main.c — sdefed-agent: start-up, signals, reload and shutdown.
 *
 * The agent runs inside an SDE next to its OMOP data, dials out to the
 * coordinator (agent_link.c) and answers disclosure-controlled queries
 * (agent_jobs.c -> query.c). Signals are loop events: SIGHUP reloads the
 * config and certificates (a failed reload keeps the old ones), SIGTERM or
 * SIGINT drains in-flight queries for a bounded time and exits, and a
 * second such signal exits at once.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "agent_ops.h"
#include "commands.h"
#include "disclosure/guard.h"
#include "disclosure/ledger.h"
#include "governance/governance.h"
#include "db.h"
#include "db_indexes.h"
#include "sdefed/daemon_args.h"
#include "sdefed/log.h"
#include "sdefed/notify.h"

#define DRAIN_MS 10000
/* After the drain time, running queries are cancelled and reported as
 * such; if one still has not returned this much later, the agent exits. */
#define CANCEL_GRACE_MS 5000

static void usage(FILE *f)
{
    fprintf(f, "usage: sdefed-agent --config FILE [--check-config]\n"
               "       sdefed-agent --config FILE COMMAND [ARGS...]\n"
               "  -c, --config FILE    agent configuration (INI)\n"
               "      --check-config   validate the configuration and certificates, then exit\n"
               "  -h, --help           this help\n"
               "The daemon always runs in the foreground (systemd Type=notify, containers);\n"
               "SIGHUP reloads, SIGTERM drains and exits, a second SIGTERM exits at once.\n");
    if (agent_commands[0].name) {
        fprintf(f, "commands:\n");
        for (const agent_command *c = agent_commands; c->name; c++)
            fprintf(f, "  %s\n", c->usage);
    }
}

/* Run an operator subcommand with the loaded configuration. */
static int run_command(const char *config_path, int argc, char **argv)
{
    const agent_command *cmd = NULL;
    for (const agent_command *c = agent_commands; c->name; c++)
        if (strcmp(c->name, argv[0]) == 0)
            cmd = c;
    if (!cmd) {
        fprintf(stderr, "sdefed-agent: unknown command '%s'\n", argv[0]);
        usage(stderr);
        return 2;
    }
    agent_config *cfg = malloc(sizeof *cfg);
    char err[1024];
    if (!cfg) {
        fprintf(stderr, "sdefed-agent: out of memory\n");
        return 1;
    }
    if (agent_config_load(config_path, cfg, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-agent: %s\n", err);
        free(cfg);
        return 1;
    }
    log_init("sdefed-agent", cfg->site_id);
    log_set_level(SDF_LOG_WARN);
    int rc = cmd->run(cfg, argc, argv);
    free(cfg);
    return rc;
}

/* Load config + TLS context together: both or neither. */
static int load_all(const char *path, agent_cfg_ref **cfg_out, tls_ctx **tls_out, char *err,
                    size_t errlen)
{
    agent_cfg_ref *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return SDF_ENOMEM;
    }
    int rc = agent_config_load(path, &r->cfg, err, errlen);
    if (rc != 0) {
        free(r);
        return rc;
    }
    const agent_config *c = &r->cfg;
    tls_opts o = {
        .cert_file = c->cert, .key_file = c->key, .ca_file = c->ca,
        .crl_file = c->crl[0] ? c->crl : NULL,
        .pin_sha256 = c->coordinator_pin[0] ? c->coordinator_pin : NULL,
    };
    char why[512];
    tls_ctx *t = tls_ctx_create(TLS_ROLE_CLIENT, &o, why, sizeof why);
    if (!t) {
        snprintf(err, errlen, "%s: TLS: %s", path, why);
        free(r);
        return SDF_ECONFIG;
    }
    if (strcmp(tls_ctx_own_cn(t), c->site_id) != 0) {
        snprintf(err, errlen, "%s: site_id '%s' does not match the certificate CN '%s'", path,
                 c->site_id, tls_ctx_own_cn(t));
        tls_ctx_free(t);
        free(r);
        return SDF_ECONFIG;
    }
    for (size_t i = 0; i < c->n_datasets; i++) {
        if (strcmp(c->datasets[i].backend, "sqlite") == 0 &&   /* postgres: no file */
            access(c->datasets[i].path, R_OK) != 0) {
            snprintf(err, errlen, "%s: [dataset %s] path %s: %s", path, c->datasets[i].name,
                     c->datasets[i].path, strerror(errno));
            tls_ctx_free(t);
            free(r);
            return SDF_ECONFIG;
        }
    }
    r->refs = 1;
    *cfg_out = r;
    *tls_out = t;
    return 0;
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void agent_maybe_exit(agent *a)
{
    if (!a->stopping || a->n_jobs > 0)
        return;
    log_info("stopped: %llu answered, %llu refused, %llu held, %llu failed",
             (unsigned long long)a->answered, (unsigned long long)a->refused,
             (unsigned long long)a->held, (unsigned long long)a->failed);
    agent_link_stop(a);
    agent_ops_stop(a);
    uv_timer_stop(&a->drain_timer);
    uv_signal_stop(&a->sig_term);
    uv_signal_stop(&a->sig_int);
    uv_signal_stop(&a->sig_hup);
    /* The link closes asynchronously; close every other handle now so the
     * loop ends once the link's handles are gone. */
    uv_close((uv_handle_t *)&a->reconnect_timer, NULL);
    uv_close((uv_handle_t *)&a->heartbeat_timer, NULL);
    uv_close((uv_handle_t *)&a->drain_timer, NULL);
    uv_close((uv_handle_t *)&a->sig_term, NULL);
    uv_close((uv_handle_t *)&a->sig_int, NULL);
    uv_close((uv_handle_t *)&a->sig_hup, NULL);
}

static void cancel_grace_cb(uv_timer_t *t)
{
    agent *a = t->data;
    log_error("%u queries did not stop within %d ms of being cancelled: exiting now", a->n_jobs,
              CANCEL_GRACE_MS);
    _exit(1);
}

static void drain_timeout_cb(uv_timer_t *t)
{
    agent *a = t->data;
    log_warn("drain time exceeded: cancelling %u running queries", a->n_jobs);
    notify_status("cancelling %u queries", a->n_jobs);
    agent_jobs_cancel_all(a);
    uv_timer_start(&a->drain_timer, cancel_grace_cb, CANCEL_GRACE_MS, 0);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    agent *a = s->data;
    if (a->stopping) {
        log_warn("second signal: exiting now");
        _exit(1);
    }
    a->stopping = true;
    notify_send("STOPPING=1");
    notify_status("draining %u queries", a->n_jobs);
    log_info("signal %d: draining %u queries (at most %d ms)", signum, a->n_jobs, DRAIN_MS);
    uv_timer_start(&a->drain_timer, drain_timeout_cb, DRAIN_MS, 0);
    agent_maybe_exit(a);
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
    agent *a = s->data;
    agent_cfg_ref *cfg;
    tls_ctx *tls;
    char err[1024];
    if (a->stopping)
        return;
    notify_reloading();
    if (load_all(a->config_path, &cfg, &tls, err, sizeof err) != 0) {
        log_error("reload failed, keeping the running configuration: %s", err);
        notify_send("READY=1\nSTATUS=reload failed, running the previous configuration");
        return;
    }
    const agent_config *old = &a->cfg->cfg;
    if (strcmp(old->site_id, cfg->cfg.site_id) != 0) {
        log_error("reload failed, keeping the running configuration: site_id cannot change");
        tls_ctx_free(tls);
        agent_cfg_release(cfg);
        notify_send("READY=1\nSTATUS=reload failed, running the previous configuration");
        return;
    }
    bool moved = strcmp(old->coordinator_host, cfg->cfg.coordinator_host) != 0 ||
                 old->coordinator_port != cfg->cfg.coordinator_port;
    agent_cfg_release(a->cfg);
    tls_ctx_free(a->tls);
    a->cfg = cfg;
    a->tls = tls;
    log_set_level(cfg->cfg.log_level);
    agent_ops_check_expiry(a);
    bool new_cert = agent_ops_cert_changed(&cfg->cfg);
    /* The connected coordinator's certificate, checked again against the
     * reloaded CA and CRL: one the operator has revoked gets nothing more
     * (in-flight answers are dropped with the link). A changed
     * coordinator_pin, like the coordinator's own pins, applies from the
     * next connection, so a pinned certificate can be rotated without
     * cutting the site off first. */
    char why[160] = "";
    bool revoked = a->link && !moved && (a->state == LINK_HELLO || a->state == LINK_READY) &&
                   conn_recheck_peer(a->link, tls, why, sizeof why) == SDF_EAUTH;
    if (moved && a->link) {
        conn_close(a->link, 0, "coordinator address changed");
    } else if (revoked) {
        log_warn("coordinator certificate no longer accepted (%s): disconnecting", why);
        conn_close(a->link, SDF_EAUTH, "coordinator certificate no longer accepted");
    } else if (new_cert && a->link) {
        /* Present the new certificate now if nothing is in flight;
         * otherwise it is used from the next connection on. */
        if (a->n_jobs == 0)
            conn_close(a->link, 0, "certificate changed: reconnecting with the new one");
        else
            log_info("new certificate: used from the next connection (%u queries in flight)",
                     a->n_jobs);
    }
    /* Logged last, as the coordinator does: whoever waits for this line
     * (an operator's tail, the tests) then sees every consequence of the
     * reload, such as the disconnect above, already in the log. */
    log_info("configuration reloaded (%zu datasets, min_cell %lld, rounding %lld, log level %d)",
             cfg->cfg.n_datasets, (long long)cfg->cfg.policy.min_cell,
             (long long)cfg->cfg.policy.rounding, (int)cfg->cfg.log_level);
    notify_send("READY=1\nSTATUS=configuration reloaded");
}

int main(int argc, char **argv)
{
    daemon_args args;
    int st = daemon_args_parse(argc, argv, usage, &args);
    if (st >= 0)
        return st;
    const char *config_path = args.config_path;
    bool check_only = args.check_only;
    if (args.sub_argc > 0)
        return run_command(config_path, args.sub_argc, args.sub_argv);

    log_init("sdefed-agent", NULL);
    agent a;
    memset(&a, 0, sizeof a);
    a.config_path = config_path;
    char err[1024];
    if (load_all(config_path, &a.cfg, &a.tls, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-agent: %s\n", err);
        return 1;
    }
    const agent_config *cfg = &a.cfg->cfg;
    if (check_only) {
        printf("%s: configuration OK (site %s, %zu datasets)\n", config_path, cfg->site_id,
               cfg->n_datasets);
        tls_ctx_free(a.tls);
        agent_cfg_release(a.cfg);
        return 0;
    }
    log_init("sdefed-agent", cfg->site_id);
    log_set_level(cfg->log_level);
    if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
        log_error("state_dir %s: %s", cfg->state_dir, strerror(errno));
        return 1;
    }
    /* Create (or check) the site secret now, not in the first queries. */
    unsigned char secret[32];
    if (disc_secret_load(cfg->state_dir, secret) != 0) {
        log_error("cannot create or read the site secret in %s", cfg->state_dir);
        return 1;
    }
    memset(secret, 0, sizeof secret);
    /* Worker threads = concurrent queries; must be set before the pool starts. */
    char nthreads[16];
    snprintf(nthreads, sizeof nthreads, "%u", cfg->max_concurrent);
    setenv("UV_THREADPOOL_SIZE", nthreads, 1);

    int start_failed = 0;
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        log_error("cannot initialise the event loop");
        return 1;
    }
    a.loop = &loop;
    a.backoff_ms = cfg->reconnect_min_ms;
    uv_timer_init(&loop, &a.reconnect_timer);
    uv_timer_init(&loop, &a.heartbeat_timer);
    uv_timer_init(&loop, &a.drain_timer);
    a.reconnect_timer.data = a.heartbeat_timer.data = a.drain_timer.data = &a;
    uv_signal_init(&loop, &a.sig_term);
    uv_signal_init(&loop, &a.sig_int);
    uv_signal_init(&loop, &a.sig_hup);
    a.sig_term.data = a.sig_int.data = a.sig_hup.data = &a;
    uv_signal_start(&a.sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&a.sig_int, on_stop_signal, SIGINT);
    uv_signal_start(&a.sig_hup, on_hup, SIGHUP);
    signal(SIGPIPE, SIG_IGN);

    log_info("starting: coordinator %s:%d, %zu datasets, min_cell %lld, rounding %lld",
             cfg->coordinator_host, cfg->coordinator_port, cfg->n_datasets,
             (long long)cfg->policy.min_cell, (long long)cfg->policy.rounding);
    db_indexes_log_missing(cfg);            /* warns about indexes queries need */
    agent_link_start(&a);
    gov_daemon_start(&a);     /* review-queue poller (agent/governance) */
    (void)agent_ops_cert_changed(cfg);      /* remember the certificate in use */
    if (agent_ops_start(&a) != 0) {
        a.stopping = true;
        agent_maybe_exit(&a);
        start_failed = 1;
    } else {
        notify_send("READY=1\nSTATUS=connecting to the coordinator");
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    uv_walk(&loop, close_walk_cb, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop);
    if (rc != 0)
        log_warn("event loop closed with handles open: %s", uv_strerror(rc));
    /* Close pooled ledger connections cleanly (WAL checkpoint) on the way out. */
    disc_guard_pool_drain();
    db_sqlite_pool_drain();   /* pooled dataset connections */
    tls_ctx_free(a.tls);
    agent_cfg_release(a.cfg);
    return start_failed;
}
