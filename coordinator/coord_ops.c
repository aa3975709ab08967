/* coordinator/coord_ops.c — what an operator sees of a running coordinator.
 *
 * Three things, none of them on the federation's TLS port:
 *   - the status socket (sdefed/ctl.h; default coordinator.sock next to the
 *     store): a JSON document with every registered site (online, last seen,
 *     address, results by status), query and connection counters and the
 *     certificate expiry; `sdefed-coordinator --config FILE status` prints it;
 *   - an optional Prometheus listener (metrics_listen = HOST:PORT, plain
 *     HTTP, GET /metrics only; see metrics_* below): the same operational
 *     counters in the text exposition format. No query content, no cohort
 *     sizes, no data values are ever exposed: only counts of queries,
 *     results by status and connections;
 *   - a daily certificate-expiry check (cert_expiry_warn_days).
 * The HTTP side is deliberately tiny: requests are capped at 4 KiB and must
 * arrive within 5 s, at most 8 clients at a time, one response per
 * connection, then close.
 */
#include "coord.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "sdefed/ctl.h"
#include "sdefed/log.h"

#define EXPIRY_CHECK_MS (24u * 3600u * 1000u)
#define HTTP_MAX_REQUEST 4096
#define HTTP_TIMEOUT_MS 5000
#define HTTP_MAX_CLIENTS 8

struct coord_ops {
    coord *co;
    ctl_server ctl;
    int ctl_up;
    uv_timer_t expiry_timer;
    uv_tcp_t metrics;
    int metrics_up;
    unsigned n_http;
    uint64_t n_scrapes;
    int stopped;
};

/* Indexed by Sdefed__SiteStatus; 7 collects anything newer. */
static const char *const status_names[] = { "unset", "ok", "offline", "timeout", "refused",
                                            "error", "held", "other" };

static const char *status_name(size_t i)
{
    return i < sizeof status_names / sizeof status_names[0] ? status_names[i] : "other";
}

static char *render_status(void *arg)
{
    coord *co = arg;
    time_t now = time(NULL);
    uint64_t now_ms = coord_now_ms();
    json_t *o = json_object();
    json_t *sites = json_array();
    if (!o || !sites) {
        json_decref(o);
        json_decref(sites);
        return NULL;
    }
    char listen[300];
    snprintf(listen, sizeof listen, "%s:%d", co->cfg.listen_host, co->cfg.listen_port);
    size_t online = 0;
    for (size_t i = 0; i < co->cfg.n_sites; i++) {
        const site_state *s = &co->sites[i];
        json_t *j = json_object();
        if (!j)
            continue;
        online += s->link != NULL;
        json_object_set_new(j, "site", json_string(co->cfg.sites[i].id));
        json_object_set_new(j, "online", json_boolean(s->link != NULL));
        if (s->last_seen_ms) {
            char when[32];
            ctl_iso_time((time_t)(s->last_seen_ms / 1000), when, sizeof when);
            json_object_set_new(j, "last_seen", json_string(when));
            json_object_set_new(j, "last_seen_seconds_ago",
                                json_integer((json_int_t)((now_ms - s->last_seen_ms) / 1000)));
        } else {
            json_object_set_new(j, "last_seen", json_null());
        }
        json_object_set_new(j, "address", s->address[0] ? json_string(s->address) : json_null());
        json_t *res = json_object();
        uint64_t total = 0;
        for (size_t k = 1; k < 8; k++) {
            total += s->n_results[k];
            if (s->n_results[k] && res)
                json_object_set_new(res, status_name(k), json_integer((json_int_t)s->n_results[k]));
        }
        json_object_set_new(j, "queries_answered", json_integer((json_int_t)total));
        json_object_set_new(j, "malformed_results", json_integer((json_int_t)s->n_malformed));
        if (res)
            json_object_set_new(j, "results", res);
        json_object_set_new(j, "connects", json_integer((json_int_t)s->n_connects));
        json_array_append_new(sites, j);
    }
    json_object_set_new(o, "daemon", json_string("sdefed-coordinator"));
    json_object_set_new(o, "id", json_string(co->cfg.id));
    json_object_set_new(o, "state", json_string(co->stopping ? "stopping" : "running"));
    json_object_set_new(o, "listen", json_string(listen));
    json_object_set_new(o, "uptime_seconds",
                        json_integer((json_int_t)((now_ms - co->started_ms) / 1000)));
    json_object_set_new(o, "sites_registered", json_integer((json_int_t)co->cfg.n_sites));
    json_object_set_new(o, "sites_online", json_integer((json_int_t)online));
    json_object_set_new(o, "analysts_registered", json_integer((json_int_t)co->cfg.n_analysts));
    json_object_set_new(o, "queries_submitted", json_integer((json_int_t)co->n_submitted));
    json_object_set_new(o, "queries_in_flight", json_integer((json_int_t)dispatch_in_flight(co)));
    json_object_set_new(o, "connections_refused", json_integer((json_int_t)co->n_refused_peers));
    json_object_set_new(o, "reloads", json_integer((json_int_t)co->n_reloads));
    json_object_set_new(o, "reload_failures", json_integer((json_int_t)co->n_reload_failures));
    json_t *certs = json_object();
    if (certs) {
        json_object_set_new(certs, "coordinator", ctl_cert_json(co->cfg.cert, co->cfg.cert_warn_days, now));
        json_object_set_new(certs, "ca", ctl_cert_json(co->cfg.ca, co->cfg.cert_warn_days, now));
        json_object_set_new(o, "certificates", certs);
    }
    json_object_set_new(o, "sites", sites);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

/* ---- Prometheus text exposition ----------------------------------------- */

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int failed;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2;
        if (cap > CTL_MAX_DOC) {
            b->failed = 1;
            return;
        }
        char *grown = realloc(b->p, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
}

/* Site ids are [A-Za-z0-9._-] (conf_valid_name), safe inside a label. */
static char *render_metrics(coord *co)
{
    strbuf b = { malloc(8192), 0, 8192, 0 };
    if (!b.p)
        return NULL;
    uint64_t now_ms = coord_now_ms();
    size_t online = 0;
    for (size_t i = 0; i < co->cfg.n_sites; i++)
        online += co->sites[i].link != NULL;
    sb_printf(&b, "# HELP sdefed_up 1 while the coordinator is serving.\n"
                  "# TYPE sdefed_up gauge\nsdefed_up %d\n", co->stopping ? 0 : 1);
    sb_printf(&b, "# HELP sdefed_uptime_seconds Seconds since start.\n"
                  "# TYPE sdefed_uptime_seconds gauge\nsdefed_uptime_seconds %llu\n",
              (unsigned long long)((now_ms - co->started_ms) / 1000));
    sb_printf(&b, "# HELP sdefed_sites_registered Sites in the registry.\n"
                  "# TYPE sdefed_sites_registered gauge\nsdefed_sites_registered %zu\n",
              co->cfg.n_sites);
    sb_printf(&b, "# HELP sdefed_sites_online Sites connected now.\n"
                  "# TYPE sdefed_sites_online gauge\nsdefed_sites_online %zu\n", online);
    sb_printf(&b, "# HELP sdefed_queries_submitted_total Queries submitted by analysts.\n"
                  "# TYPE sdefed_queries_submitted_total counter\n"
                  "sdefed_queries_submitted_total %llu\n",
              (unsigned long long)co->n_submitted);
    sb_printf(&b, "# HELP sdefed_queries_in_flight Queries waiting for sites.\n"
                  "# TYPE sdefed_queries_in_flight gauge\nsdefed_queries_in_flight %zu\n",
              dispatch_in_flight(co));
    sb_printf(&b, "# HELP sdefed_connections_refused_total Connections refused at Hello.\n"
                  "# TYPE sdefed_connections_refused_total counter\n"
                  "sdefed_connections_refused_total %llu\n",
              (unsigned long long)co->n_refused_peers);
    sb_printf(&b, "# HELP sdefed_reloads_total Configuration reloads (SIGHUP).\n"
                  "# TYPE sdefed_reloads_total counter\n"
                  "sdefed_reloads_total{result=\"ok\"} %llu\n"
                  "sdefed_reloads_total{result=\"failed\"} %llu\n",
              (unsigned long long)co->n_reloads, (unsigned long long)co->n_reload_failures);
    int64_t na;
    if (ctl_cert_not_after(co->cfg.cert, &na) == 0)
        sb_printf(&b, "# HELP sdefed_cert_expiry_timestamp_seconds When the coordinator's "
                      "certificate expires.\n"
                      "# TYPE sdefed_cert_expiry_timestamp_seconds gauge\n"
                      "sdefed_cert_expiry_timestamp_seconds %lld\n", (long long)na);
    sb_printf(&b, "# HELP sdefed_site_online 1 if the site is connected.\n"
                  "# TYPE sdefed_site_online gauge\n");
    for (size_t i = 0; i < co->cfg.n_sites; i++)
        sb_printf(&b, "sdefed_site_online{site=\"%s\"} %d\n", co->cfg.sites[i].id,
                  co->sites[i].link != NULL);
    sb_printf(&b, "# HELP sdefed_site_last_seen_timestamp_seconds Last message from the site.\n"
                  "# TYPE sdefed_site_last_seen_timestamp_seconds gauge\n");
    for (size_t i = 0; i < co->cfg.n_sites; i++)
        if (co->sites[i].last_seen_ms)
            sb_printf(&b, "sdefed_site_last_seen_timestamp_seconds{site=\"%s\"} %llu\n",
                      co->cfg.sites[i].id,
                      (unsigned long long)(co->sites[i].last_seen_ms / 1000));
    sb_printf(&b, "# HELP sdefed_site_connects_total Accepted connections from the site.\n"
                  "# TYPE sdefed_site_connects_total counter\n");
    for (size_t i = 0; i < co->cfg.n_sites; i++)
        sb_printf(&b, "sdefed_site_connects_total{site=\"%s\"} %llu\n", co->cfg.sites[i].id,
                  (unsigned long long)co->sites[i].n_connects);
    sb_printf(&b, "# HELP sdefed_site_results_total Query results received, by status.\n"
                  "# TYPE sdefed_site_results_total counter\n");
    for (size_t i = 0; i < co->cfg.n_sites; i++)
        for (size_t k = 1; k < 8; k++)
            if (co->sites[i].n_results[k])
                sb_printf(&b, "sdefed_site_results_total{site=\"%s\",status=\"%s\"} %llu\n",
                          co->cfg.sites[i].id, status_name(k),
                          (unsigned long long)co->sites[i].n_results[k]);
    sb_printf(&b, "# HELP sdefed_site_malformed_results_total Ok answers refused as malformed "
                  "before pooling (coordinator/result_check.h).\n"
                  "# TYPE sdefed_site_malformed_results_total counter\n");
    for (size_t i = 0; i < co->cfg.n_sites; i++)
        sb_printf(&b, "sdefed_site_malformed_results_total{site=\"%s\"} %llu\n",
                  co->cfg.sites[i].id, (unsigned long long)co->sites[i].n_malformed);
    if (b.failed) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

typedef struct http_client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t req;
    struct coord_ops *ops;
    char in[HTTP_MAX_REQUEST];
    size_t in_len;
    char *out;
    int closing;
    int handles;             /* open handles left (tcp + timer) */
} http_client;

static void http_handle_closed(uv_handle_t *h)
{
    http_client *c = h->data;
    if (--c->handles > 0)
        return;
    c->ops->n_http--;
    free(c->out);
    free(c);
}

static void http_close(http_client *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->tcp, http_handle_closed);
    uv_close((uv_handle_t *)&c->timer, http_handle_closed);
}

static void http_written(uv_write_t *req, int status)
{
    (void)status;
    http_close(req->data);
}

static void http_reply(http_client *c, const char *status, const char *type, const char *body)
{
    uv_read_stop((uv_stream_t *)&c->tcp);
    size_t blen = strlen(body);
    size_t cap = blen + 256;
    c->out = malloc(cap);
    if (!c->out) {
        http_close(c);
        return;
    }
    int n = snprintf(c->out, cap,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s", status, type, blen, body);
    if (n < 0 || (size_t)n >= cap) {
        http_close(c);
        return;
    }
    uv_buf_t buf = uv_buf_init(c->out, (unsigned)n);
    c->req.data = c;
    if (uv_write(&c->req, (uv_stream_t *)&c->tcp, &buf, 1, http_written) != 0)
        http_close(c);
}

static void http_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    http_client *c = h->data;
    *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof c->in - 1 - c->in_len));
}

static void http_request(http_client *c)
{
    c->in[c->in_len] = '\0';
    char *eol = strstr(c->in, "\r\n");
    if (eol)
        *eol = '\0';
    if (strncmp(c->in, "GET ", 4) != 0) {
        http_reply(c, "405 Method Not Allowed", "text/plain", "only GET\n");
        return;
    }
    const char *target = c->in + 4;
    if (strncmp(target, "/metrics ", 9) != 0 && strcmp(target, "/metrics") != 0) {
        http_reply(c, "404 Not Found", "text/plain", "try /metrics\n");
        return;
    }
    char *text = render_metrics(c->ops->co);
    if (!text) {
        http_reply(c, "500 Internal Server Error", "text/plain", "out of memory\n");
        return;
    }
    c->ops->n_scrapes++;
    http_reply(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", text);
    free(text);
}

static void http_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    http_client *c = s->data;
    if (n < 0) {
        http_close(c);
        return;
    }
    c->in_len += (size_t)n;
    c->in[c->in_len] = '\0';
    if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n")) {
        http_request(c);
        return;
    }
    if (c->in_len >= sizeof c->in - 1)
        http_reply(c, "431 Request Header Fields Too Large", "text/plain", "request too large\n");
}

static void http_timeout(uv_timer_t *t)
{
    http_close(t->data);
}

static void on_metrics_connection(uv_stream_t *server, int status)
{
    struct coord_ops *ops = server->data;
    if (status < 0)
        return;
    http_client *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->ops = ops;
    c->handles = 2;
    ops->n_http++;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || ops->n_http > HTTP_MAX_CLIENTS) {
        http_close(c);
        return;
    }
    uv_timer_start(&c->timer, http_timeout, HTTP_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, http_alloc, http_read) != 0)
        http_close(c);
}

static int metrics_listen(struct coord_ops *ops, coord *co)
{
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(co->cfg.metrics_host, co->cfg.metrics_port, (struct sockaddr_in *)&addr);
    if (rc != 0)
        rc = uv_ip6_addr(co->cfg.metrics_host, co->cfg.metrics_port,
                         (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        log_error("metrics_listen %s is not a numeric IPv4/IPv6 address", co->cfg.metrics_host);
        return SDF_ECONFIG;
    }
    uv_tcp_init(co->loop, &ops->metrics);
    ops->metrics.data = ops;
    ops->metrics_up = 1;
    rc = uv_tcp_bind(&ops->metrics, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&ops->metrics, 16, on_metrics_connection);
    if (rc != 0) {
        log_error("cannot listen for metrics on %s:%d: %s", co->cfg.metrics_host,
                  co->cfg.metrics_port, uv_strerror(rc));
        return SDF_EIO;
    }
    log_info("metrics on http://%s:%d/metrics", co->cfg.metrics_host, co->cfg.metrics_port);
    return 0;
}

/* ---- expiry ----------------------------------------------------------------- */

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

void coord_ops_check_expiry(const coord *co)
{
    check_one("coordinator", co->cfg.cert, co->cfg.cert_warn_days);
    check_one("CA", co->cfg.ca, co->cfg.cert_warn_days);
}

static void expiry_cb(uv_timer_t *t)
{
    coord_ops_check_expiry(t->data);
}

int coord_ops_start(coord *co)
{
    struct coord_ops *ops = calloc(1, sizeof *ops);
    if (!ops) {
        log_error("out of memory");
        return SDF_ENOMEM;
    }
    ops->co = co;
    co->ops = ops;
    uv_timer_init(co->loop, &ops->expiry_timer);
    ops->expiry_timer.data = co;
    uv_timer_start(&ops->expiry_timer, expiry_cb, 0, EXPIRY_CHECK_MS);
    char err[512];
    if (ctl_listen(&ops->ctl, co->loop, co->cfg.status_socket, render_status, co, err,
                   sizeof err) != 0) {
        log_error("%s", err);
        return SDF_EIO;
    }
    ops->ctl_up = 1;
    log_info("status socket %s", co->cfg.status_socket);
    if (co->cfg.metrics_host[0])
        return metrics_listen(ops, co);
    return 0;
}

void coord_ops_stop(coord *co)
{
    struct coord_ops *ops = co->ops;
    if (!ops || ops->stopped)
        return;
    ops->stopped = 1;
    if (ops->ctl_up)
        ctl_close(&ops->ctl);
    if (ops->metrics_up && !uv_is_closing((uv_handle_t *)&ops->metrics))
        uv_close((uv_handle_t *)&ops->metrics, NULL);
    uv_timer_stop(&ops->expiry_timer);
    if (!uv_is_closing((uv_handle_t *)&ops->expiry_timer))
        uv_close((uv_handle_t *)&ops->expiry_timer, NULL);
}

void coord_ops_free(coord *co)
{
    free(co->ops);
    co->ops = NULL;
}

/* ---- the `status` command ----------------------------------------------------- */

int coord_ops_status_command(const coord_config *cfg, int argc, char **argv)
{
    bool as_json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else {
            fprintf(stderr, "usage: sdefed-coordinator --config FILE status [--json]\n");
            return 2;
        }
    }
    char *doc = NULL, err[512];
    if (ctl_fetch(cfg->status_socket, 5000, &doc, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-coordinator: status: %s\n", err);
        return 1;
    }
    if (as_json) {
        printf("%s\n", doc);
        free(doc);
        return 0;
    }
    json_error_t jerr;
    json_t *o = json_loads(doc, 0, &jerr);
    free(doc);
    if (!json_is_object(o)) {
        json_decref(o);
        fprintf(stderr, "sdefed-coordinator: status: the daemon's answer is not JSON\n");
        return 1;
    }
    printf("coordinator %s: %s, listening on %s, up %llds\n",
           json_string_value(json_object_get(o, "id")),
           json_string_value(json_object_get(o, "state")),
           json_string_value(json_object_get(o, "listen")),
           (long long)json_integer_value(json_object_get(o, "uptime_seconds")));
    printf("sites %lld/%lld online; queries submitted %lld, in flight %lld; "
           "connections refused %lld; reloads %lld (failed %lld)\n",
           (long long)json_integer_value(json_object_get(o, "sites_online")),
           (long long)json_integer_value(json_object_get(o, "sites_registered")),
           (long long)json_integer_value(json_object_get(o, "queries_submitted")),
           (long long)json_integer_value(json_object_get(o, "queries_in_flight")),
           (long long)json_integer_value(json_object_get(o, "connections_refused")),
           (long long)json_integer_value(json_object_get(o, "reloads")),
           (long long)json_integer_value(json_object_get(o, "reload_failures")));
    json_t *certs = json_object_get(o, "certificates");
    const char *k;
    json_t *v;
    json_object_foreach(certs, k, v) {
        if (json_object_get(v, "error"))
            printf("certificate %-12s unreadable (%s)\n", k,
                   json_string_value(json_object_get(v, "file")));
        else
            printf("certificate %-12s expires %s (%lld days)%s\n", k,
                   json_string_value(json_object_get(v, "not_after")),
                   (long long)json_integer_value(json_object_get(v, "days_left")),
                   json_is_true(json_object_get(v, "warning")) ? "  WARNING" : "");
    }
    printf("\n%-24s %-7s %-21s %-22s %s\n", "SITE", "ONLINE", "LAST SEEN", "ADDRESS", "ANSWERED");
    size_t i;
    json_array_foreach(json_object_get(o, "sites"), i, v) {
        json_t *seen = json_object_get(v, "last_seen");
        json_t *addr = json_object_get(v, "address");
        printf("%-24s %-7s %-21s %-22s %lld\n", json_string_value(json_object_get(v, "site")),
               json_is_true(json_object_get(v, "online")) ? "yes" : "no",
               json_is_string(seen) ? json_string_value(seen) : "never",
               json_is_string(addr) ? json_string_value(addr) : "-",
               (long long)json_integer_value(json_object_get(v, "queries_answered")));
    }
    json_decref(o);
    return 0;
}
