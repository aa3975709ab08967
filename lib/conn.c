/* lib/conn.c — one authenticated protocol connection on libuv.
 *
 * A conn owns a uv_tcp_t, a uv_timer_t, a tls_session and a frame_decoder
 * and turns them into a stream of Envelopes for the daemons. Ciphertext
 * read by libuv goes into the TLS session; decrypted bytes go into the
 * frame decoder; each whole frame is unpacked and handed to on_message.
 * Sending runs the other way: pack, frame, encrypt, uv_write.
 *
 * Lifetime follows libuv: a conn counts its open handles and in-flight
 * requests (writes, connect, getaddrinfo, shutdown) and is freed only when
 * the last of them has called back after conn_close; on_close runs right
 * before that, always from a libuv callback, never from inside a call the
 * application made. A local close is graceful when the socket allows it
 * (close_notify, then shutdown(SHUT_WR) so queued output — e.g. the Error
 * of conn_refuse — still reaches the peer, bounded by a linger timer);
 * peer misbehaviour that makes the stream useless closes at once.
 */
#include "sdefed/conn.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/frame.h"
#include "sdefed/log.h"

#define CONN_DEFAULT_HANDSHAKE_MS 10000u
#define CONN_DEFAULT_MAX_PENDING ((size_t)64 << 20)
#define CONN_LINGER_MS 2000u
#define CONN_WHY_MAX 192

enum close_mode { CLOSE_GRACEFUL, CLOSE_ABORT };

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;         /* handshake deadline, then linger on close */
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    uv_shutdown_t sreq;
    uv_loop_t *loop;
    tls_session *tls;
    frame_decoder dec;
    conn_callbacks cb;
    size_t max_frame;
    size_t max_pending;
    uint32_t handshake_ms;
    void *userdata;

    int refs;                 /* open handles + requests in flight */
    unsigned tls_done : 1;
    unsigned authenticated : 1;
    unsigned connected : 1;
    unsigned closing : 1;     /* conn_close (or an internal close) started */
    unsigned handles_closed : 1;
    unsigned resolving : 1;
    unsigned silent : 1;      /* creation failed: never call on_close */

    int close_err;
    char close_why[CONN_WHY_MAX];
    char peer_addr[80];

    /* Plaintext frames sent before the handshake finished. */
    uint8_t *early;
    size_t early_len;

    uint8_t rbuf[64 * 1024];  /* ciphertext from libuv */
    uint8_t pbuf[16 * 1024];  /* plaintext from TLS */
};

typedef struct conn_write {
    uv_write_t req;
    conn *c;
    uint8_t *buf;
} conn_write;

static void close_conn(conn *c, enum close_mode mode, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- lifetime ----------------------------------------------------------- */

static void conn_finalize(conn *c)
{
    if (!c->silent && c->cb.on_close)
        c->cb.on_close(c, c->close_err, c->close_why);
    tls_session_free(c->tls);
    frame_decoder_free(&c->dec);
    free(c->early);
    free(c);
}

static void conn_unref(conn *c)
{
    if (--c->refs == 0)
        conn_finalize(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void close_handles(conn *c)
{
    if (c->handles_closed)
        return;
    c->handles_closed = 1;
    if (c->resolving)
        (void)uv_cancel((uv_req_t *)&c->gai);
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void format_sockaddr(const struct sockaddr *sa, char *out, size_t n)
{
    char ip[64] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        uv_ip4_name(in, ip, sizeof ip);
        snprintf(out, n, "%s:%u", ip, (unsigned)ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        uv_ip6_name(in6, ip, sizeof ip);
        snprintf(out, n, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
    }
}

static void update_peer_addr(conn *c)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
        format_sockaddr((struct sockaddr *)&ss, c->peer_addr, sizeof c->peer_addr);
}

static void on_timer(uv_timer_t *t);

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn *c = req->data;
    /* Output is flushed and our FIN sent; wait for the peer's EOF (or the
     * linger timer) so unread input never turns our close into a reset. */
    if (status < 0 && status != UV_ECANCELED)
        close_handles(c);
    conn_unref(c);
}

static int flush_output(conn *c);

/* Start closing: record the first reason, log it once, then either close
 * the handles now or flush and shut down first. */
static void close_conn(conn *c, enum close_mode mode, int err, const char *fmt, ...)
{
    if (!c->closing) {
        c->closing = 1;
        c->close_err = err;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->close_why, sizeof c->close_why, fmt, ap);
        va_end(ap);
        const char *cn = tls_session_peer_cn(c->tls);
        if (!c->silent)
            log_info("connection %s%s%s closed: %s (%s)", c->peer_addr,
                     *cn ? " cn=" : "", cn, c->close_why, sdf_err_name(err));
        if (mode == CLOSE_GRACEFUL && c->connected && !c->handles_closed) {
            if (c->tls_done)
                tls_session_shutdown(c->tls);
            c->sreq.data = c;
            if (flush_output(c) == 0 &&
                uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) == 0) {
                c->refs++;
                uv_timer_start(&c->timer, on_timer, CONN_LINGER_MS, 0);
                return;
            }
        }
    }
    close_handles(c);
}

/* ---- output ------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    conn_write *w = (conn_write *)req;
    conn *c = w->c;
    free(w->buf);
    free(w);
    if (status < 0 && status != UV_ECANCELED && !c->closing)
        close_conn(c, CLOSE_ABORT, SDF_EIO, "write failed: %s", uv_strerror(status));
    conn_unref(c);
}

/* Queue all ciphertext the TLS session produced. Returns 0, SDF_ENOMEM,
 * SDF_EIO or SDF_EOVERFLOW (more unsent output than the limit). The caller
 * closes the conn on error. */
static int flush_output(conn *c)
{
    for (;;) {
        uint8_t *buf = NULL;
        long n = tls_session_take_output(c->tls, &buf);
        if (n == 0)
            return 0;
        if (n < 0)
            return (int)n;
        if (c->handles_closed) {
            free(buf);
            return SDF_ECLOSED;
        }
        conn_write *w = malloc(sizeof *w);
        if (!w) {
            free(buf);
            return SDF_ENOMEM;
        }
        w->c = c;
        w->buf = buf;
        uv_buf_t b = uv_buf_init((char *)buf, (unsigned)n);
        int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
        if (r < 0) {
            free(buf);
            free(w);
            return SDF_EIO;
        }
        c->refs++;
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > c->max_pending)
            return SDF_EOVERFLOW;
    }
}

/* Close after a failed flush_output, with the matching reason. */
static void close_after_flush(conn *c, int r)
{
    if (r == SDF_EOVERFLOW)
        close_conn(c, CLOSE_ABORT, SDF_EOVERFLOW, "peer not reading");
    else if (r == SDF_ENOMEM)
        close_conn(c, CLOSE_ABORT, SDF_ENOMEM, "out of memory sending");
    else
        close_conn(c, CLOSE_ABORT, SDF_EIO, "write failed");
}

/* ---- TLS and input ------------------------------------------------------ */

/* Advance the handshake. Returns 1 once it is complete (on_tls_ready has
 * been called), 0 while it needs more input, -1 when the conn is closing. */
static int tls_step(conn *c)
{
    int r = tls_session_handshake(c->tls);
    /* Send handshake messages, or the alert that tells the peer why. */
    int fr = flush_output(c);
    if (r < 0) {
        close_conn(c, CLOSE_GRACEFUL, r, "TLS handshake failed: %s", tls_session_error(c->tls));
        return -1;
    }
    if (fr != 0) {
        close_after_flush(c, fr);
        return -1;
    }
    if (r == 0)
        return 0;
    c->tls_done = 1;
    log_debug("connection %s: TLS 1.3 established, peer cn=%s", c->peer_addr,
              tls_session_peer_cn(c->tls));
    if (c->early_len > 0) {
        int wr = tls_session_write(c->tls, c->early, c->early_len);
        free(c->early);
        c->early = NULL;
        c->early_len = 0;
        if (wr != 0) {
            close_conn(c, CLOSE_ABORT, SDF_ETLS, "TLS write failed: %s", tls_session_error(c->tls));
            return -1;
        }
        if ((fr = flush_output(c)) != 0) {
            close_after_flush(c, fr);
            return -1;
        }
    }
    if (c->cb.on_tls_ready)
        c->cb.on_tls_ready(c);
    return c->closing ? -1 : 1;
}

/* Hand every whole frame in the decoder to on_message, stopping as soon as
 * the conn starts closing. */
static void deliver_frames(conn *c)
{
    while (!c->closing) {
        const uint8_t *payload = NULL;
        size_t len = 0;
        int r = frame_decoder_next(&c->dec, &payload, &len);
        if (r == 0)
            return;
        if (r < 0) {
            close_conn(c, CLOSE_GRACEFUL, SDF_EFRAME_TOO_BIG, "frame exceeds size limit (%zu bytes%s)",
                       c->dec.max_payload, c->authenticated ? "" : ", before authentication");
            return;
        }
        Sdefed__Envelope *env = sdefed__envelope__unpack(NULL, len, payload);
        if (!env || env->body_case == SDEFED__ENVELOPE__BODY__NOT_SET) {
            if (env)
                sdefed__envelope__free_unpacked(env, NULL);
            close_conn(c, CLOSE_GRACEFUL, SDF_EFRAME_MALFORMED, "malformed envelope");
            return;
        }
        if (c->cb.on_message)
            c->cb.on_message(c, env);
        sdefed__envelope__free_unpacked(env, NULL);
    }
}

static void read_plaintext(conn *c)
{
    while (!c->closing) {
        int n = tls_session_read(c->tls, c->pbuf, sizeof c->pbuf);
        if (n == 0)
            break;
        if (n == SDF_ECLOSED) {
            close_conn(c, CLOSE_GRACEFUL, SDF_ECLOSED, "peer closed the connection");
            return;
        }
        if (n < 0) {
            close_conn(c, CLOSE_ABORT, SDF_ETLS, "TLS error: %s", tls_session_error(c->tls));
            return;
        }
        int r = frame_decoder_feed(&c->dec, c->pbuf, (size_t)n);
        if (r == SDF_EFRAME_TOO_BIG) {
            close_conn(c, CLOSE_GRACEFUL, SDF_EFRAME_TOO_BIG, "frame exceeds size limit (%zu bytes%s)",
                       c->dec.max_payload, c->authenticated ? "" : ", before authentication");
            return;
        }
        if (r < 0) {
            close_conn(c, CLOSE_ABORT, r, "cannot buffer input: %s", sdf_strerror(r));
            return;
        }
        deliver_frames(c);
    }
    if (!c->closing) {
        /* Reading can produce output too (e.g. a TLS KeyUpdate reply). */
        int fr = flush_output(c);
        if (fr != 0)
            close_after_flush(c, fr);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    buf->base = (char *)c->rbuf;
    buf->len = sizeof c->rbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = s->data;
    if (nread == 0)
        return;
    if (c->closing) {
        /* Lingering: discard input, finish when the peer is gone. */
        if (nread < 0)
            close_handles(c);
        return;
    }
    if (nread < 0) {
        if (nread != UV_EOF)
            close_conn(c, CLOSE_ABORT, SDF_EIO, "read failed: %s", uv_strerror((int)nread));
        else if (!c->tls_done)
            close_conn(c, CLOSE_ABORT, SDF_ECLOSED, "peer closed during the TLS handshake");
        else if (frame_decoder_pending(&c->dec) > 0)
            close_conn(c, CLOSE_ABORT, SDF_ECLOSED, "peer vanished mid-frame");
        else
            close_conn(c, CLOSE_ABORT, SDF_ECLOSED, "peer closed without close_notify");
        return;
    }
    int r = tls_session_feed(c->tls, buf->base, (size_t)nread);
    if (r != 0) {
        close_conn(c, CLOSE_ABORT, r, "cannot buffer ciphertext");
        return;
    }
    if (!c->tls_done && tls_step(c) <= 0)
        return;
    read_plaintext(c);
}

static void on_timer(uv_timer_t *t)
{
    conn *c = t->data;
    if (c->closing)
        close_handles(c);   /* linger over */
    else if (!c->authenticated)
        close_conn(c, CLOSE_ABORT, SDF_ETIMEOUT, "handshake timeout");
}

/* ---- creation ----------------------------------------------------------- */

static conn *conn_new(uv_loop_t *loop, tls_ctx *ctx, const conn_callbacks *cb,
                      const conn_limits *lim, void *userdata)
{
    conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    if (cb)
        c->cb = *cb;
    c->userdata = userdata;
    c->max_frame = lim && lim->max_frame ? lim->max_frame : FRAME_MAX_DEFAULT;
    c->handshake_ms = lim && lim->handshake_timeout_ms ? lim->handshake_timeout_ms
                                                       : CONN_DEFAULT_HANDSHAKE_MS;
    c->max_pending = lim && lim->max_pending_output ? lim->max_pending_output
                                                    : CONN_DEFAULT_MAX_PENDING;
    snprintf(c->peer_addr, sizeof c->peer_addr, "?");
    frame_decoder_init(&c->dec, FRAME_MAX_PREAUTH);
    c->tls = tls_session_new(ctx);
    if (!c->tls) {
        free(c);
        return NULL;
    }
    if (uv_tcp_init(loop, &c->tcp) != 0) {
        tls_session_free(c->tls);
        free(c);
        return NULL;
    }
    c->tcp.data = c;
    c->refs = 1;
    if (uv_timer_init(loop, &c->timer) != 0) {
        /* Only the TCP handle exists: close it and free in its callback. */
        c->silent = 1;
        c->closing = 1;
        c->handles_closed = 1;
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
        return NULL;
    }
    c->timer.data = c;
    c->refs = 2;
    return c;
}

/* Creation failed after both handles exist: close them without ever
 * calling on_close (the caller gets NULL instead). */
static void conn_abandon(conn *c)
{
    c->silent = 1;
    c->closing = 1;
    close_handles(c);
}

static void socket_ready(conn *c)
{
    c->connected = 1;
    update_peer_addr(c);
    (void)uv_tcp_nodelay(&c->tcp, 1);
    (void)uv_tcp_keepalive(&c->tcp, 1, 60);
}

static void on_dropped(uv_handle_t *h)
{
    free(h);
}

/* libuv stops accepting on a listener until its pending connection is
 * taken, so a connection we cannot serve is accepted into a small handle
 * and closed at once. */
static void drop_pending(uv_stream_t *server)
{
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t)
        return;
    if (uv_tcp_init(server->loop, t) != 0) {
        free(t);
        return;
    }
    (void)uv_accept(server, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, on_dropped);
}

conn *conn_accept(uv_stream_t *server, tls_ctx *ctx, const conn_callbacks *cb,
                  const conn_limits *lim, void *userdata)
{
    if (!server)
        return NULL;
    if (!ctx) {
        log_error("accept: no TLS context, connection dropped");
        drop_pending(server);
        return NULL;
    }
    conn *c = conn_new(server->loop, ctx, cb, lim, userdata);
    if (!c) {
        log_error("accept: out of memory, connection dropped");
        drop_pending(server);
        return NULL;
    }
    int r = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (r != 0) {
        log_error("accept failed: %s", uv_strerror(r));
        conn_abandon(c);
        return NULL;
    }
    socket_ready(c);
    r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (r != 0) {
        log_error("accept from %s: cannot read: %s", c->peer_addr, uv_strerror(r));
        conn_abandon(c);
        return NULL;
    }
    uv_timer_start(&c->timer, on_timer, c->handshake_ms, 0);
    log_debug("accepted connection from %s", c->peer_addr);
    return c;
}

static void on_connected(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (!c->closing) {
        if (status < 0) {
            close_conn(c, CLOSE_ABORT, SDF_EIO, "connect failed: %s", uv_strerror(status));
        } else {
            socket_ready(c);
            int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
            if (r != 0)
                close_conn(c, CLOSE_ABORT, SDF_EIO, "cannot read: %s", uv_strerror(r));
            else
                (void)tls_step(c);   /* sends the ClientHello */
        }
    }
    conn_unref(c);
}

static int start_connect(conn *c, const struct sockaddr *sa)
{
    c->creq.data = c;
    int r = uv_tcp_connect(&c->creq, &c->tcp, sa, on_connected);
    if (r == 0)
        c->refs++;
    return r;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    conn *c = req->data;
    c->resolving = 0;
    if (!c->closing) {
        int r = status;
        if (r == 0 && !res)
            r = UV_EAI_NONAME;
        if (r == 0)
            r = start_connect(c, res->ai_addr);
        if (r != 0)
            close_conn(c, CLOSE_ABORT, SDF_EIO, "cannot connect to %s: %s", c->peer_addr,
                       uv_strerror(r));
    }
    uv_freeaddrinfo(res);
    conn_unref(c);
}

conn *conn_connect(uv_loop_t *loop, const char *host, int port, tls_ctx *ctx,
                   const conn_callbacks *cb, const conn_limits *lim, void *userdata)
{
    if (!loop || !host || !*host || port <= 0 || port > 65535 || !ctx) {
        log_error("connect: invalid host, port or TLS context");
        return NULL;
    }
    conn *c = conn_new(loop, ctx, cb, lim, userdata);
    if (!c) {
        log_error("connect to %s:%d: out of memory", host, port);
        return NULL;
    }
    struct sockaddr_storage ss;
    int r;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0) {
        snprintf(c->peer_addr, sizeof c->peer_addr, "%s:%d", host, port);
        r = start_connect(c, (struct sockaddr *)&ss);
    } else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        snprintf(c->peer_addr, sizeof c->peer_addr, "[%s]:%d", host, port);
        r = start_connect(c, (struct sockaddr *)&ss);
    } else {
        snprintf(c->peer_addr, sizeof c->peer_addr, "%.64s:%d", host, port);
        char service[8];
        snprintf(service, sizeof service, "%d", port);
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        c->gai.data = c;
        r = uv_getaddrinfo(loop, &c->gai, on_resolved, host, service, &hints);
        if (r == 0) {
            c->resolving = 1;
            c->refs++;
        }
    }
    if (r != 0) {
        log_error("connect to %s: %s", c->peer_addr, uv_strerror(r));
        conn_abandon(c);
        return NULL;
    }
    /* The deadline covers connect + TLS + Hello. */
    uv_timer_start(&c->timer, on_timer, c->handshake_ms, 0);
    return c;
}

/* ---- sending ------------------------------------------------------------ */

int conn_send(conn *c, const Sdefed__Envelope *env)
{
    if (!c || !env)
        return SDF_EINVAL;
    if (c->closing)
        return SDF_ECLOSED;
    size_t plen = sdefed__envelope__get_packed_size(env);
    /* Before authentication the peer accepts only small frames: fail here
     * rather than have it drop the connection. */
    size_t cap = c->authenticated ? c->max_frame : FRAME_MAX_PREAUTH;
    uint8_t hdr[FRAME_HEADER_LEN];
    int r = frame_header_write(hdr, plen, cap);
    if (r != 0)
        return r;
    size_t total = FRAME_HEADER_LEN + plen;

    if (!c->tls_done) {
        /* Held until the handshake completes; counts as unsent output. */
        if (total > c->max_pending || c->early_len > c->max_pending - total) {
            close_conn(c, CLOSE_ABORT, SDF_EOVERFLOW, "peer not reading");
            return SDF_EOVERFLOW;
        }
        uint8_t *nb = realloc(c->early, c->early_len + total);
        if (!nb)
            return SDF_ENOMEM;
        c->early = nb;
        memcpy(nb + c->early_len, hdr, FRAME_HEADER_LEN);
        size_t packed = sdefed__envelope__pack(env, nb + c->early_len + FRAME_HEADER_LEN);
        if (packed != plen)
            return SDF_EINVAL;
        c->early_len += total;
        return 0;
    }

    uint8_t *buf = malloc(total);
    if (!buf)
        return SDF_ENOMEM;
    memcpy(buf, hdr, FRAME_HEADER_LEN);
    size_t packed = sdefed__envelope__pack(env, buf + FRAME_HEADER_LEN);
    if (packed != plen) {
        free(buf);
        return SDF_EINVAL;
    }
    r = tls_session_write(c->tls, buf, total);
    free(buf);
    if (r != 0) {
        close_conn(c, CLOSE_ABORT, SDF_ETLS, "TLS write failed: %s", tls_session_error(c->tls));
        return SDF_ECLOSED;
    }
    r = flush_output(c);
    if (r != 0) {
        /* The TLS stream has lost bytes or the peer is not reading: the
         * connection cannot continue either way. */
        close_after_flush(c, r);
        return r == SDF_EOVERFLOW || r == SDF_ENOMEM ? r : SDF_ECLOSED;
    }
    return 0;
}

void conn_set_authenticated(conn *c)
{
    if (!c || c->closing)
        return;
    c->authenticated = 1;
    frame_decoder_set_max(&c->dec, c->max_frame);
    uv_timer_stop(&c->timer);
}

void conn_close(conn *c, int err, const char *why)
{
    if (!c || c->closing)
        return;
    close_conn(c, CLOSE_GRACEFUL, err, "%s", why ? why : "closed");
}

static int refuse_err(Sdefed__ErrorCode code)
{
    switch (code) {
    case SDEFED__ERROR_CODE__ERR_VERSION: return SDF_EVERSION;
    case SDEFED__ERROR_CODE__ERR_PROTOCOL: return SDF_EPROTO;
    case SDEFED__ERROR_CODE__ERR_AUTH: return SDF_EAUTH;
    case SDEFED__ERROR_CODE__ERR_SPEC: return SDF_ESPEC;
    case SDEFED__ERROR_CODE__ERR_NOT_FOUND: return SDF_ENOTFOUND;
    default: return SDF_EREFUSED;
    }
}

void conn_refuse(conn *c, Sdefed__ErrorCode code, const char *message)
{
    if (!c || c->closing)
        return;
    Sdefed__Error err = SDEFED__ERROR__INIT;
    err.code = code;
    err.message = (char *)(message ? message : "");
    Sdefed__Envelope env = SDEFED__ENVELOPE__INIT;
    env.body_case = SDEFED__ENVELOPE__BODY_ERROR;
    env.error = &err;
    (void)conn_send(c, &env);
    conn_close(c, refuse_err(code), message && *message ? message : "refused");
}

/* ---- accessors ---------------------------------------------------------- */

void *conn_userdata(const conn *c) { return c->userdata; }
void conn_set_userdata(conn *c, void *userdata) { c->userdata = userdata; }
const char *conn_peer_cn(const conn *c) { return tls_session_peer_cn(c->tls); }
const char *conn_peer_fingerprint(const conn *c) { return tls_session_peer_fingerprint(c->tls); }
const char *conn_peer_addr(const conn *c) { return c->peer_addr; }
int conn_is_closing(const conn *c) { return c->closing; }

int conn_recheck_peer(const conn *c, const tls_ctx *ctx, char *why, size_t whylen)
{
    return tls_session_recheck(c->tls, ctx, why, whylen);
}
