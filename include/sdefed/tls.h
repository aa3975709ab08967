/* include/sdefed/tls.h — TLS 1.3 with mutual authentication, socket-free.
 *
 * OpenSSL is fed through memory BIOs: the caller (lib/conn.c) moves
 * ciphertext between libuv and a tls_session, so libuv keeps the socket and
 * this module never does I/O. Only TLS 1.3 is offered or accepted, and both
 * sides must present a certificate chaining to the federation CA. Peer
 * identity = certificate subject CN plus the SHA-256 fingerprint of the
 * peer's DER certificate (lower-case hex, 64 chars).
 */
#ifndef SDEFED_TLS_H
#define SDEFED_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "sdefed/err.h"

typedef struct tls_ctx tls_ctx;
typedef struct tls_session tls_session;

typedef enum { TLS_ROLE_SERVER, TLS_ROLE_CLIENT } tls_role;

typedef struct tls_opts {
    const char *cert_file;      /* PEM certificate (chain) of this side */
    const char *key_file;       /* PEM private key */
    const char *ca_file;        /* PEM federation CA: the only trust anchor */
    const char *crl_file;       /* optional PEM CRL, NULL = none */
    const char *pin_sha256;     /* optional: peer cert fingerprint (hex) that must match */
} tls_opts;

/* Create a context. On failure returns NULL and writes a one-line reason
 * (including OpenSSL's error queue) into err. Files are read now; the
 * context does not keep the paths. Free with tls_ctx_free(). */
tls_ctx *tls_ctx_create(tls_role role, const tls_opts *opts, char *err, size_t errlen);
void tls_ctx_free(tls_ctx *ctx);

/* Subject CN and SHA-256 fingerprint of this side's own certificate.
 * Static storage inside ctx, valid until tls_ctx_free. */
const char *tls_ctx_own_cn(const tls_ctx *ctx);

/* A session on one connection. NULL on allocation failure. The session holds
 * a reference on ctx, so the ctx may be freed (e.g. replaced on reload)
 * while sessions using it live on. */
tls_session *tls_session_new(tls_ctx *ctx);
void tls_session_free(tls_session *s);

/* Hand ciphertext received from the network to the session.
 * Returns 0 or SDF_ENOMEM. */
int tls_session_feed(tls_session *s, const void *data, size_t n) SDF_MUSTCHECK;

/* Advance the handshake. Returns 1 when complete and the peer verified,
 * 0 when it needs more input (send pending output first), or SDF_ETLS /
 * SDF_EAUTH (peer certificate missing, untrusted or not matching the pin);
 * tls_session_error() then says why. */
int tls_session_handshake(tls_session *s) SDF_MUSTCHECK;

/* Read decrypted application data. Returns the number of bytes (> 0), 0 when
 * none is available yet, SDF_ECLOSED on a clean close_notify, or SDF_ETLS. */
int tls_session_read(tls_session *s, void *buf, size_t n) SDF_MUSTCHECK;

/* Encrypt n bytes of application data (all of it, or fail).
 * Returns 0 or SDF_ETLS. The ciphertext is then available through
 * tls_session_take_output(). */
int tls_session_write(tls_session *s, const void *data, size_t n) SDF_MUSTCHECK;

/* Queue a close_notify alert (output must then be sent). */
void tls_session_shutdown(tls_session *s);

/* Move all pending ciphertext out. Returns the number of bytes and sets *out
 * to a malloc'd buffer the caller frees, 0 (and *out = NULL) when there is
 * none, or SDF_ENOMEM. */
long tls_session_take_output(tls_session *s, uint8_t **out);

/* Peer identity after a successful handshake ("" before). Valid until
 * tls_session_free. */
const char *tls_session_peer_cn(const tls_session *s);
const char *tls_session_peer_fingerprint(const tls_session *s);

/* Check the peer certificate of an established session again, against the
 * trust store of ctx (its CA and CRL; e.g. a context rebuilt on reload).
 * Returns 0 when it still verifies, SDF_EAUTH when it does not (revoked,
 * expired, other CA; `why` says which, no data) or before the handshake is
 * done, SDF_ENOMEM. Does not change the session. */
int tls_session_recheck(const tls_session *s, const tls_ctx *ctx, char *why, size_t whylen);

/* Last failure reason for this session, "" if none. */
const char *tls_session_error(const tls_session *s);

#endif
