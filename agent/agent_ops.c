/* agent/agent_ops.c — the agent's status socket, expiry warnings, `status`.
 *
 * Operators ask a running agent how it is doing without any network port:
 * the daemon renders a small JSON document on STATE_DIR/agent.sock
 * (mode 0660 in a 0700/0750 state directory) and `sdefed-agent status`
 * prints it. The document holds operational facts only — no data values,
 * no cohort sizes. See agent_ops.h.
 */
#include "agent_ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "sdefed/ctl.h"
#include "sdefed/log.h"
#include "sdefed/notify.h"

#define EXPIRY_CHECK_MS (24u * 3600u * 1000u)

static struct {
    ctl_server ctl;
    uv_timer_t expiry_timer;
    int started;
    time_t started_at;
    time_t connected_at;        /* 0 = not connected */
    time_t last_error_at;
    char last_error[256];
    unsigned char cert_digest[EVP_MAX_MD_SIZE];
    unsigned cert_digest_len;
} ops;

static const char *state_name(link_state s)
{
    switch (s) {
    case LINK_IDLE: return "disconnected";
    case LINK_CONNECTING: return "connecting";
    case LINK_HELLO: return "authenticating";
    case LINK_READY: return "connected";
    }
    return "unknown";
}

static char *render(void *arg)
{
    agent *a = arg;
    const agent_config *c = &a->cfg->cfg;
    time_t now = time(NULL);
    char coord[300];
    snprintf(coord, sizeof coord, "%s:%d", c->coordinator_host, c->coordinator_port);
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "daemon", json_string("sdefed-agent"));
    json_object_set_new(o, "site", json_string(c->site_id));
    json_object_set_new(o, "pid", json_integer(getpid()));
    json_object_set_new(o, "state", json_string(a->stopping ? "stopping" : "running"));
    json_object_set_new(o, "connection", json_string(state_name(a->state)));
    json_object_set_new(o, "coordinator", json_string(coord));
    json_object_set_new(o, "uptime_seconds", json_integer((json_int_t)(now - ops.started_at)));
    json_object_set_new(o, "connected_seconds",
                        ops.connected_at && a->state == LINK_READY
                            ? json_integer((json_int_t)(now - ops.connected_at))
                            : json_null());
    json_object_set_new(o, "queries_answered", json_integer((json_int_t)a->answered));
    json_object_set_new(o, "queries_refused", json_integer((json_int_t)a->refused));
    json_object_set_new(o, "queries_failed", json_integer((json_int_t)a->failed));
    json_object_set_new(o, "queries_in_flight", json_integer(a->n_jobs));
    json_object_set_new(o, "datasets", json_integer((json_int_t)c->n_datasets));
    if (ops.last_error[0]) {
        char when[32];
        ctl_iso_time(ops.last_error_at, when, sizeof when);
        json_object_set_new(o, "last_error", json_string(ops.last_error));
        json_object_set_new(o, "last_error_at", json_string(when));
    } else {
        json_object_set_new(o, "last_error", json_null());
    }
    json_t *certs = json_object();
    if (certs) {
        json_object_set_new(certs, "site", ctl_cert_json(c->cert, c->cert_warn_days, now));
        json_object_set_new(certs, "ca", ctl_cert_json(c->ca, c->cert_warn_days, now));
        json_object_set_new(o, "certificates", certs);
    }
    json_object_set_new(o, "cert_expiry_warn_days", json_integer(c->cert_warn_days));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

static void check_one(const char *what, const char *path, unsigned warn_days)
{
    int64_t na;
    if (ctl_cert_not_after(path, &na) != 0) {
        log_warn("%s certificate %s: cannot read its expiry date", what, path);
        return;
    }
    long days = ctl_days_left(na, time(NULL));
    if (days < 0)
        log_error("%s certificate %s has EXPIRED", what, path);
    else if (days < (long)warn_days)
        log_warn("%s certificate %s expires in %ld days: rotate it (deploy/README.md)", what,
                 path, days);
}

void agent_ops_check_expiry(agent *a)
{
    const agent_config *c = &a->cfg->cfg;
    check_one("site", c->cert, c->cert_warn_days);
    check_one("CA", c->ca, c->cert_warn_days);
}

static void expiry_cb(uv_timer_t *t)
{
    agent_ops_check_expiry(t->data);
}

bool agent_ops_cert_changed(const agent_config *cfg)
{
    unsigned char md[EVP_MAX_MD_SIZE], buf[4096];
    unsigned mdlen = 0;
    FILE *f = fopen(cfg->cert, "rb");
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok = f && ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    size_t n, total = 0;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0 && total < (1u << 20)) {
        total += n;
        ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
    if (f)
        fclose(f);
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return false;
    bool changed = ops.cert_digest_len != 0 &&
                   (mdlen != ops.cert_digest_len || memcmp(md, ops.cert_digest, mdlen) != 0);
    memcpy(ops.cert_digest, md, mdlen);
    ops.cert_digest_len = mdlen;
    return changed;
}

void agent_ops_socket_path(const agent_config *cfg, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/agent.sock", cfg->state_dir);
    if (n < 0 || (size_t)n >= outlen)
        out[0] = '\0';             /* ctl_listen / ctl_fetch then fail with a reason */
}

int agent_ops_start(agent *a)
{
    ops.started_at = time(NULL);
    uv_timer_init(a->loop, &ops.expiry_timer);
    ops.expiry_timer.data = a;
    uv_timer_start(&ops.expiry_timer, expiry_cb, 0, EXPIRY_CHECK_MS);
    ops.started = 1;
    char path[4096], err[512];
    agent_ops_socket_path(&a->cfg->cfg, path, sizeof path);
    if (ctl_listen(&ops.ctl, a->loop, path, render, a, err, sizeof err) != 0) {
        log_error("%s", err);
        return SDF_EIO;
    }
    log_info("status socket %s", path);
    return 0;
}

void agent_ops_stop(agent *a)
{
    (void)a;
    if (!ops.started)
        return;
    ops.started = 0;
    ctl_close(&ops.ctl);
    uv_timer_stop(&ops.expiry_timer);
    if (!uv_is_closing((uv_handle_t *)&ops.expiry_timer))
        uv_close((uv_handle_t *)&ops.expiry_timer, NULL);
}

void agent_ops_note_error(agent *a, const char *why)
{
    (void)a;
    ops.connected_at = 0;
    ops.last_error_at = time(NULL);
    snprintf(ops.last_error, sizeof ops.last_error, "%s", why && *why ? why : "link closed");
    if (!a->stopping)
        notify_status("not connected to the coordinator: %s", ops.last_error);
}

void agent_ops_note_connected(agent *a)
{
    ops.connected_at = time(NULL);
    notify_status("connected to %s:%d", a->cfg->cfg.coordinator_host,
                  a->cfg->cfg.coordinator_port);
}

/* ---- the `status` command ------------------------------------------------ */

static void print_human(json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        if (json_is_object(v)) {
            printf("%s:\n", k);
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2) {
                if (json_is_object(v2)) {
                    json_t *e = json_object_get(v2, "error");
                    if (e) {
                        printf("  %-10s %s (%s)\n", k2, json_string_value(e),
                               json_string_value(json_object_get(v2, "file")));
                    } else {
                        printf("  %-10s expires %s (%lld days)%s\n", k2,
                               json_string_value(json_object_get(v2, "not_after")),
                               (long long)json_integer_value(json_object_get(v2, "days_left")),
                               json_is_true(json_object_get(v2, "warning")) ? "  WARNING" : "");
                    }
                } else {
                    char *s = json_dumps(v2, JSON_ENCODE_ANY | JSON_COMPACT);
                    printf("  %-10s %s\n", k2, s ? s : "?");
                    free(s);
                }
            }
            continue;
        }
        if (json_is_string(v))
            printf("%-20s %s\n", k, json_string_value(v));
        else if (json_is_null(v))
            printf("%-20s -\n", k);
        else {
            char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            printf("%-20s %s\n", k, s ? s : "?");
            free(s);
        }
    }
}

int agent_ops_status_command(const agent_config *cfg, int argc, char **argv)
{
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else {
            fprintf(stderr, "usage: sdefed-agent --config FILE status [--json]\n");
            return 2;
        }
    }
    char path[4096], err[512];
    agent_ops_socket_path(cfg, path, sizeof path);
    char *doc = NULL;
    if (ctl_fetch(path, 5000, &doc, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-agent: status: %s\n", err);
        return 1;
    }
    if (as_json) {
        fputs(doc, stdout);
        fputc('\n', stdout);
        free(doc);
        return 0;
    }
    json_error_t jerr;
    json_t *o = json_loads(doc, 0, &jerr);
    free(doc);
    if (!json_is_object(o)) {
        json_decref(o);
        fprintf(stderr, "sdefed-agent: status: the daemon's answer is not JSON\n");
        return 1;
    }
    print_human(o);
    json_decref(o);
    return 0;
}
