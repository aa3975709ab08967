/* include/sdefed/conn.h — one authenticated protocol connection on libuv.
 *
 * A conn glues a libuv TCP handle, a tls_session and a frame_decoder into a
 * stream of Envelopes. It enforces the transport rules every daemon needs:
 *   - TLS 1.3 mutual auth (via tls.h), handshake deadline (slowloris);
 *   - frame cap of FRAME_MAX_PREAUTH until conn_set_authenticated(), then
 *     limits.max_frame;
 *   - malformed frames/Envelopes and oversized frames close the connection
 *     with a logged reason;
 *   - a cap on unsent output (a peer that stops reading is dropped).
 * It never calls exit() or abort() on peer input: whatever the peer does,
 * only this connection is affected.
 *
 * Ownership follows libuv: the conn is freed in its close callback, after
 * on_close has been called exactly once. Do not touch the conn after
 * on_close returns.
 */
#ifndef SDEFED_CONN_H
#define SDEFED_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sdefed/err.h"
#include "sdefed/tls.h"
#include "sdefed.pb-c.h"

#define SDEFED_PROTOCOL_VERSION 1

typedef struct conn conn;

typedef struct conn_limits {
    size_t max_frame;              /* after authentication; 0 = FRAME_MAX_DEFAULT */
    uint32_t handshake_timeout_ms; /* TLS + Hello must finish in this; 0 = 10000 */
    size_t max_pending_output;     /* unsent bytes before the peer is dropped; 0 = 64 MiB */
} conn_limits;

typedef struct conn_callbacks {
    /* TLS handshake done; conn_peer_cn()/conn_peer_fingerprint() are valid.
     * The application then exchanges Hello/HelloAck and calls
     * conn_set_authenticated(). */
    void (*on_tls_ready)(conn *c);
    /* One decoded Envelope. It is freed by conn when the callback returns;
     * copy what you keep. Not called after conn_close(). */
    void (*on_message)(conn *c, Sdefed__Envelope *env);
    /* Called exactly once when the connection ends for any reason (err is 0
     * for a local conn_close with err 0). `why` is a short human reason. */
    void (*on_close)(conn *c, int err, const char *why);
} conn_callbacks;

/* Accept one pending connection on a listening TCP server as the TLS
 * server side. Returns the conn, or NULL (after logging) on failure; the
 * pending connection is then dropped. */
conn *conn_accept(uv_stream_t *server, tls_ctx *ctx, const conn_callbacks *cb,
                  const conn_limits *lim, void *userdata);

/* Start a TLS client connection to host:port (numeric IPv4/IPv6 or a name,
 * resolved with uv_getaddrinfo). Returns the conn (on_close reports a
 * failure to connect) or NULL if nothing could be started. */
conn *conn_connect(uv_loop_t *loop, const char *host, int port, tls_ctx *ctx,
                   const conn_callbacks *cb, const conn_limits *lim, void *userdata);

/* Serialize, frame, encrypt and queue env. Returns 0, SDF_EFRAME_TOO_BIG,
 * SDF_ENOMEM, SDF_ECLOSED (closing) or SDF_EOVERFLOW (peer not reading: the
 * connection is then closed). Caller keeps ownership of env. */
int conn_send(conn *c, const Sdefed__Envelope *env);

/* Raise the frame cap to limits.max_frame and cancel the handshake timer. */
void conn_set_authenticated(conn *c);

/* Close (idempotent). Sends close_notify if possible, then closes. on_close
 * will be called with err/why from the first call. */
void conn_close(conn *c, int err, const char *why);

void *conn_userdata(const conn *c);
void conn_set_userdata(conn *c, void *userdata);
const char *conn_peer_cn(const conn *c);           /* "" before TLS is done */
const char *conn_peer_fingerprint(const conn *c);  /* hex SHA-256 */
const char *conn_peer_addr(const conn *c);         /* "127.0.0.1:4567" */
int conn_is_closing(const conn *c);
/* tls_session_recheck() on this connection's peer: does its certificate
 * still verify against ctx (e.g. after a CRL reload)? 0 = yes. */
int conn_recheck_peer(const conn *c, const tls_ctx *ctx, char *why, size_t whylen);

/* Build an Error envelope, send it, and close the conn: the way to refuse a
 * peer with a reason it can read. */
void conn_refuse(conn *c, Sdefed__ErrorCode code, const char *message);

#endif
