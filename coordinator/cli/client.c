/* coordinator/cli/client.c — one request/reply exchange with the coordinator. */
#include "client.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sdefed/conf.h"
#include "sdefed/log.h"
#include "sdefed/conn.h"
#include "sdefed/pbcopy.h"
#include "sdefed/tls.h"

#define K(name, type, field, req)                                                           \
    { "client", name, type, offsetof(client_config, field), sizeof(((client_config *)0)->field), \
      NULL, 0, 0, req, 0 }

static const conf_key client_keys[] = {
    { "client", "coordinator", CONF_HOSTPORT, offsetof(client_config, coordinator_host),
      sizeof(((client_config *)0)->coordinator_host), NULL, 0, 0, true,
      offsetof(client_config, coordinator_port) },
    K("cert", CONF_PATH, cert, true),
    K("key", CONF_PATH, key, true),
    K("ca", CONF_PATH, ca, true),
};

int client_config_load(const char *path, client_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    return conf_load(path, client_keys, sizeof client_keys / sizeof client_keys[0], out, NULL,
                     err, errlen);
}

typedef struct call_state {
    Sdefed__Envelope *req;
    Sdefed__Envelope *reply;
    bool hello_done;
    bool done;
    int rc;
    char *err;
    size_t errlen;
    uv_timer_t timer;
    conn *c;
} call_state;

static void fail(call_state *st, int rc, const char *why)
{
    if (st->done)
        return;
    st->done = true;
    st->rc = rc;
    snprintf(st->err, st->errlen, "%s", why);
    uv_timer_stop(&st->timer);
    if (st->c)
        conn_close(st->c, 0, "client done");
}

static void on_tls_ready(conn *c)
{
    call_state *st = conn_userdata(c);
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    Sdefed__Hello hello = SDEFED__HELLO__INIT;
    hello.protocol_version = SDEFED_PROTOCOL_VERSION;
    hello.role = SDEFED__ROLE__ROLE_ANALYST;
    hello.software = (char *)"sdefed 0.1.0";
    env.body_case = SDEFED__ENVELOPE__BODY_HELLO;
    env.hello = &hello;
    if (conn_send(c, &env) != 0)
        fail(st, SDF_EIO, "cannot send Hello");
}

static void on_message(conn *c, Sdefed__Envelope *env)
{
    call_state *st = conn_userdata(c);
    if (env->body_case == SDEFED__ENVELOPE__BODY_ERROR) {
        char why[600];
        snprintf(why, sizeof why, "%s", env->error->message ? env->error->message : "error");
        fail(st, env->error->code == SDEFED__ERROR_CODE__ERR_AUTH ? SDF_EAUTH
                 : env->error->code == SDEFED__ERROR_CODE__ERR_NOT_FOUND ? SDF_ENOTFOUND
                 : env->error->code == SDEFED__ERROR_CODE__ERR_SPEC ? SDF_ESPEC
                                                                     : SDF_EREFUSED,
             why);
        return;
    }
    if (!st->hello_done) {
        if (env->body_case != SDEFED__ENVELOPE__BODY_HELLO_ACK) {
            fail(st, SDF_EPROTO, "coordinator did not acknowledge Hello");
            return;
        }
        st->hello_done = true;
        conn_set_authenticated(c);
        if (conn_send(c, st->req) != 0)
            fail(st, SDF_EIO, "cannot send the request");
        return;
    }
    if (env->request_id != st->req->request_id)
        return;   /* not ours (e.g. a heartbeat) */
    st->reply = (Sdefed__Envelope *)pb_copy(&env->base);
    if (!st->reply) {
        fail(st, SDF_ENOMEM, "out of memory");
        return;
    }
    st->done = true;
    st->rc = 0;
    uv_timer_stop(&st->timer);
    conn_close(c, 0, "client done");
}

static void on_close(conn *c, int err, const char *why)
{
    call_state *st = conn_userdata(c);
    st->c = NULL;
    if (!st->done) {
        char msg[512];
        snprintf(msg, sizeof msg, "connection closed: %s", why && *why ? why : sdf_strerror(err));
        fail(st, err ? err : SDF_ECLOSED, msg);
    }
    uv_timer_stop(&st->timer);
    uv_close((uv_handle_t *)&st->timer, NULL);
}

static void timeout_cb(uv_timer_t *t)
{
    fail(t->data, SDF_ETIMEOUT, "no reply from the coordinator in time");
}

int client_call(const client_config *cfg, Sdefed__Envelope *req, unsigned timeout_ms,
                Sdefed__Envelope **reply, char *err, size_t errlen)
{
    *reply = NULL;
    tls_opts o = { .cert_file = cfg->cert, .key_file = cfg->key, .ca_file = cfg->ca };
    char why[512];
    tls_ctx *tls = tls_ctx_create(TLS_ROLE_CLIENT, &o, why, sizeof why);
    if (!tls) {
        snprintf(err, errlen, "TLS: %s", why);
        return SDF_ETLS;
    }
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        tls_ctx_free(tls);
        snprintf(err, errlen, "cannot create an event loop");
        return SDF_ENOMEM;
    }
    call_state st = { .req = req, .err = err, .errlen = errlen, .rc = SDF_ECLOSED };
    req->request_id = 1;
    uv_timer_init(&loop, &st.timer);
    st.timer.data = &st;
    uv_timer_start(&st.timer, timeout_cb, timeout_ms, 0);
    static const conn_callbacks cb = { on_tls_ready, on_message, on_close };
    st.c = conn_connect(&loop, cfg->coordinator_host, cfg->coordinator_port, tls, &cb, NULL, &st);
    if (!st.c) {
        snprintf(err, errlen, "cannot connect to %s:%d", cfg->coordinator_host,
                 cfg->coordinator_port);
        uv_close((uv_handle_t *)&st.timer, NULL);
        st.rc = SDF_EIO;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0) {
        /* Handles still open would be a bug in conn; do not hide it. */
        fprintf(stderr, "sdefed: warning: event loop not empty at exit\n");
    }
    tls_ctx_free(tls);
    if (st.rc == 0)
        *reply = st.reply;
    else if (st.reply)
        sdefed__envelope__free_unpacked(st.reply, NULL);
    return st.rc;
}

int cli_die(const char *fmt, ...)
{
    va_list ap;
    fputs("sdefed: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int cli_config(const char *config_path, client_config *cfg)
{
    log_init("sdefed", NULL);
    log_set_level(SDF_LOG_WARN);
    if (!config_path)
        return cli_die("no configuration: use --config FILE or set SDEFED_CONF");
    char err[1024];
    if (client_config_load(config_path, cfg, err, sizeof err) != 0)
        return cli_die("%s", err);
    return 0;
}
