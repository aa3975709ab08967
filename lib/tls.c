/* lib/tls.c — TLS 1.3 with mutual authentication over memory BIOs.
 *
 * This module owns every OpenSSL call of the transport. A tls_ctx is one
 * configured SSL_CTX (TLS 1.3 only, the federation CA as the single trust
 * anchor, optional CRL and pin); it is reference counted so a configuration
 * reload can drop it while connections made with it live on. A
 * tls_session is one connection's SSL object fed through two memory BIOs:
 * lib/conn.c moves the ciphertext, this file never touches a socket.
 *
 * OpenSSL's error queue is per thread and shared by every session, so each
 * entry point clears it before calling OpenSSL and drains it into the
 * session's own error string afterwards: one session's failure can never be
 * reported by another.
 */
#include "sdefed/tls.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#define TLS_CN_MAX 63
#define TLS_FP_HEX 64
#define TLS_ERR_MAX 512

struct tls_ctx {
    SSL_CTX *ssl;
    tls_role role;
    int refs;                       /* owner + one per live session; loop thread only */
    int has_pin;
    unsigned char pin[32];
    char own_cn[TLS_CN_MAX + 1];
    char own_fp[TLS_FP_HEX + 1];
};

struct tls_session {
    tls_ctx *ctx;                   /* counted reference */
    SSL *ssl;                       /* owns rbio and wbio */
    BIO *rbio;                      /* ciphertext from the network */
    BIO *wbio;                      /* ciphertext for the network */
    int done;                       /* handshake complete and peer accepted */
    int failed;                     /* handshake refused: never retried */
    char peer_cn[TLS_CN_MAX + 1];
    char peer_fp[TLS_FP_HEX + 1];
    char verify_detail[160];        /* why verify_peer refused, "" if it did not */
    char err[TLS_ERR_MAX];
};

/* ---- helpers ------------------------------------------------------------ */

/* Append OpenSSL's error queue for this thread to buf (after prefix text
 * already there) and empty the queue. */
static void append_ssl_errors(char *buf, size_t len)
{
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        size_t used = strlen(buf);
        if (used + 3 < len)
            snprintf(buf + used, len - used, "%s%s", used ? ": " : "", one);
    }
}

static void set_err(char *buf, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *buf, size_t len, const char *fmt, ...)
{
    if (!buf || len == 0) {
        ERR_clear_error();
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    append_ssl_errors(buf, len);
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hex_val(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Parse a SHA-256 fingerprint: 64 hex digits, upper or lower case,
 * optionally separated by ':' as `openssl x509 -fingerprint` prints them. */
static int parse_pin(const char *s, unsigned char out[32])
{
    size_t n = 0;
    int hi = -1;
    for (const char *p = s; *p; p++) {
        if (*p == ':' && hi < 0)
            continue;
        int v = hex_val((unsigned char)*p);
        if (v < 0 || n >= 32)
            return -1;
        if (hi < 0) {
            hi = v;
        } else {
            out[n++] = (unsigned char)(hi << 4 | v);
            hi = -1;
        }
    }
    return (n == 32 && hi < 0) ? 0 : -1;
}

static int cert_fingerprint(X509 *cert, unsigned char md[32], char hex[TLS_FP_HEX + 1])
{
    unsigned int mdlen = 0;
    unsigned char buf[EVP_MAX_MD_SIZE];
    if (!X509_digest(cert, EVP_sha256(), buf, &mdlen) || mdlen != 32)
        return -1;
    memcpy(md, buf, 32);
    hex_encode(buf, 32, hex);
    return 0;
}

/* The subject CN as UTF-8 into out. Refuses a missing or repeated CN,
 * empty or longer than TLS_CN_MAX bytes, embedded NULs and control
 * characters (C0, DEL and C1), so a CN is always safe to log and compare. */
static int cert_cn(X509 *cert, char out[TLS_CN_MAX + 1])
{
    X509_NAME *name = X509_get_subject_name(cert);
    if (!name)
        return -1;
    int idx = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
    if (idx < 0 || X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0)
        return -1;
    X509_NAME_ENTRY *ent = X509_NAME_get_entry(name, idx);
    ASN1_STRING *data = ent ? X509_NAME_ENTRY_get_data(ent) : NULL;
    if (!data)
        return -1;
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, data);
    if (n <= 0 || n > TLS_CN_MAX) {
        OPENSSL_free(utf8);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        unsigned char ch = utf8[i];
        int c1 = ch == 0xc2 && i + 1 < n && utf8[i + 1] >= 0x80 && utf8[i + 1] <= 0x9f;
        if (ch < 0x20 || ch == 0x7f || c1) {
            OPENSSL_free(utf8);
            return -1;
        }
    }
    memcpy(out, utf8, (size_t)n);
    out[n] = '\0';
    OPENSSL_free(utf8);
    return 0;
}

static int load_crl(SSL_CTX *ssl, const char *path, char *err, size_t errlen)
{
    BIO *in = BIO_new_file(path, "r");
    if (!in) {
        set_err(err, errlen, "cannot open CRL %s", path);
        return -1;
    }
    X509_STORE *store = SSL_CTX_get_cert_store(ssl);
    int count = 0;
    X509_CRL *crl;
    while ((crl = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL)) != NULL) {
        int ok = X509_STORE_add_crl(store, crl);
        X509_CRL_free(crl);
        if (!ok) {
            BIO_free(in);
            set_err(err, errlen, "cannot add CRL from %s", path);
            return -1;
        }
        count++;
    }
    BIO_free(in);
    /* The loop ends on a PEM "no start line" error: expected after the
     * last CRL, a failure only if there was none. */
    if (count == 0) {
        set_err(err, errlen, "no CRL found in %s", path);
        return -1;
    }
    ERR_clear_error();
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return 0;
}

/* Our own checks on the peer's leaf certificate, run inside OpenSSL's
 * verification so a refusal fails the handshake with a proper alert (the
 * peer learns it was refused) instead of after it. */
static int verify_peer(int preverify_ok, X509_STORE_CTX *xs)
{
    if (!preverify_ok || X509_STORE_CTX_get_error_depth(xs) != 0)
        return preverify_ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    tls_session *s = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *cert = X509_STORE_CTX_get_current_cert(xs);
    if (!s || !cert) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    unsigned char md[32];
    char fp[TLS_FP_HEX + 1];
    char cn[TLS_CN_MAX + 1];
    if (cert_fingerprint(cert, md, fp) != 0) {
        snprintf(s->verify_detail, sizeof s->verify_detail, "cannot fingerprint peer certificate");
    } else if (s->ctx->has_pin && CRYPTO_memcmp(md, s->ctx->pin, 32) != 0) {
        snprintf(s->verify_detail, sizeof s->verify_detail,
                 "peer certificate %s does not match the pinned fingerprint", fp);
    } else if (cert_cn(cert, cn) != 0) {
        snprintf(s->verify_detail, sizeof s->verify_detail,
                 "peer certificate subject CN missing, repeated, too long or has control characters");
    } else {
        return 1;
    }
    X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* ---- context ------------------------------------------------------------ */

tls_ctx *tls_ctx_create(tls_role role, const tls_opts *opts, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    ERR_clear_error();
    if (!opts || !opts->cert_file || !opts->key_file || !opts->ca_file) {
        set_err(err, errlen, "certificate, key and CA files are required");
        return NULL;
    }
    tls_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    ctx->role = role;
    ctx->refs = 1;
    if (opts->pin_sha256 && *opts->pin_sha256) {
        if (parse_pin(opts->pin_sha256, ctx->pin) != 0) {
            set_err(err, errlen, "pin is not a SHA-256 fingerprint (64 hex digits)");
            goto fail;
        }
        ctx->has_pin = 1;
    }

    ctx->ssl = SSL_CTX_new(role == TLS_ROLE_SERVER ? TLS_server_method() : TLS_client_method());
    if (!ctx->ssl) {
        set_err(err, errlen, "SSL_CTX_new failed");
        goto fail;
    }
    SSL_CTX *s = ctx->ssl;
    if (!SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION)) {
        set_err(err, errlen, "cannot restrict to TLS 1.3");
        goto fail;
    }
    /* No resumption: every connection presents and verifies certificates. */
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET);
    if (role == TLS_ROLE_SERVER)
        SSL_CTX_set_num_tickets(s, 0);

    if (SSL_CTX_use_certificate_chain_file(s, opts->cert_file) != 1) {
        set_err(err, errlen, "cannot load certificate %s", opts->cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(s, opts->key_file, SSL_FILETYPE_PEM) != 1) {
        set_err(err, errlen, "cannot load private key %s", opts->key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(s) != 1) {
        set_err(err, errlen, "private key %s does not match certificate %s",
                opts->key_file, opts->cert_file);
        goto fail;
    }
    /* The federation CA is the only trust anchor: no default paths. */
    if (SSL_CTX_load_verify_locations(s, opts->ca_file, NULL) != 1) {
        set_err(err, errlen, "cannot load CA %s", opts->ca_file);
        goto fail;
    }
    if (role == TLS_ROLE_SERVER) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(opts->ca_file);
        if (!names) {
            set_err(err, errlen, "cannot read CA names from %s", opts->ca_file);
            goto fail;
        }
        SSL_CTX_set_client_CA_list(s, names);
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_peer);
    } else {
        SSL_CTX_set_verify(s, SSL_VERIFY_PEER, verify_peer);
    }
    SSL_CTX_set_verify_depth(s, 4);
    if (opts->crl_file && *opts->crl_file && load_crl(s, opts->crl_file, err, errlen) != 0)
        goto fail;

    X509 *own = SSL_CTX_get0_certificate(s);
    unsigned char md[32];
    if (!own || cert_cn(own, ctx->own_cn) != 0 || cert_fingerprint(own, md, ctx->own_fp) != 0) {
        set_err(err, errlen, "certificate %s has no usable subject CN", opts->cert_file);
        goto fail;
    }
    ERR_clear_error();
    return ctx;

fail:
    SSL_CTX_free(ctx->ssl);
    free(ctx);
    ERR_clear_error();
    return NULL;
}

static void ctx_unref(tls_ctx *ctx)
{
    if (ctx && --ctx->refs == 0) {
        SSL_CTX_free(ctx->ssl);
        free(ctx);
    }
}

void tls_ctx_free(tls_ctx *ctx)
{
    ctx_unref(ctx);
}

const char *tls_ctx_own_cn(const tls_ctx *ctx)
{
    return ctx ? ctx->own_cn : "";
}

/* ---- session ------------------------------------------------------------ */

tls_session *tls_session_new(tls_ctx *ctx)
{
    if (!ctx)
        return NULL;
    ERR_clear_error();
    tls_session *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->ssl = SSL_new(ctx->ssl);
    s->rbio = BIO_new(BIO_s_mem());
    s->wbio = BIO_new(BIO_s_mem());
    if (!s->ssl || !s->rbio || !s->wbio) {
        BIO_free(s->rbio);
        BIO_free(s->wbio);
        SSL_free(s->ssl);
        free(s);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "wait for more", not EOF. */
    BIO_set_mem_eof_return(s->rbio, -1);
    BIO_set_mem_eof_return(s->wbio, -1);
    SSL_set_bio(s->ssl, s->rbio, s->wbio);
    SSL_set_app_data(s->ssl, s);
    if (ctx->role == TLS_ROLE_SERVER)
        SSL_set_accept_state(s->ssl);
    else
        SSL_set_connect_state(s->ssl);
    s->ctx = ctx;
    ctx->refs++;
    return s;
}

void tls_session_free(tls_session *s)
{
    if (!s)
        return;
    SSL_free(s->ssl);
    ctx_unref(s->ctx);
    free(s);
    ERR_clear_error();
}

int tls_session_feed(tls_session *s, const void *data, size_t n)
{
    ERR_clear_error();
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        int w = BIO_write(s->rbio, data, chunk);
        if (w <= 0) {
            set_err(s->err, sizeof s->err, "buffering ciphertext failed");
            return SDF_ENOMEM;
        }
        data = (const uint8_t *)data + w;
        n -= (size_t)w;
    }
    return 0;
}

/* Peer checks OpenSSL does not do for us: a verified certificate must be
 * present, its CN usable, its fingerprint equal to the pin if one is set. */
static int check_peer(tls_session *s)
{
    X509 *peer = SSL_get0_peer_certificate(s->ssl);
    if (!peer) {
        set_err(s->err, sizeof s->err, "peer presented no certificate");
        return SDF_EAUTH;
    }
    long vr = SSL_get_verify_result(s->ssl);
    if (vr != X509_V_OK) {
        set_err(s->err, sizeof s->err, "peer certificate verify failed: %s",
                X509_verify_cert_error_string(vr));
        return SDF_EAUTH;
    }
    unsigned char md[32];
    char fp[TLS_FP_HEX + 1];
    char cn[TLS_CN_MAX + 1];
    if (cert_fingerprint(peer, md, fp) != 0) {
        set_err(s->err, sizeof s->err, "cannot fingerprint peer certificate");
        return SDF_ETLS;
    }
    if (s->ctx->has_pin && CRYPTO_memcmp(md, s->ctx->pin, 32) != 0) {
        set_err(s->err, sizeof s->err, "peer certificate %s does not match the pinned fingerprint", fp);
        return SDF_EAUTH;
    }
    if (cert_cn(peer, cn) != 0) {
        set_err(s->err, sizeof s->err,
                "peer certificate subject CN missing, repeated, too long or has control characters");
        return SDF_EAUTH;
    }
    memcpy(s->peer_cn, cn, sizeof cn);
    memcpy(s->peer_fp, fp, sizeof fp);
    return 0;
}

int tls_session_handshake(tls_session *s)
{
    if (s->done)
        return 1;
    if (s->failed)
        return s->failed;
    ERR_clear_error();
    int r = SSL_do_handshake(s->ssl);
    if (r == 1) {
        int rc = check_peer(s);
        if (rc != 0) {
            /* The TLS layer accepted the peer but we do not: the caller
             * closes the connection. */
            s->failed = rc;
            ERR_clear_error();
            return rc;
        }
        s->done = 1;
        ERR_clear_error();
        return 1;
    }
    int e = SSL_get_error(s->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        ERR_clear_error();
        return 0;
    }
    long vr = SSL_get_verify_result(s->ssl);
    int rc = SDF_ETLS;
    if (vr != X509_V_OK) {
        snprintf(s->err, sizeof s->err, "peer certificate verify failed: %s%s%s",
                 X509_verify_cert_error_string(vr), *s->verify_detail ? ": " : "",
                 s->verify_detail);
        append_ssl_errors(s->err, sizeof s->err);
        rc = SDF_EAUTH;
    } else {
        unsigned long first = ERR_peek_error();
        if (ERR_GET_LIB(first) == ERR_LIB_SSL &&
            (ERR_GET_REASON(first) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE ||
             ERR_GET_REASON(first) == SSL_R_CERTIFICATE_VERIFY_FAILED))
            rc = SDF_EAUTH;
        set_err(s->err, sizeof s->err, "protocol error%s",
                e == SSL_ERROR_SYSCALL ? " (unexpected end of stream)" : "");
    }
    s->failed = rc;
    return rc;
}

int tls_session_read(tls_session *s, void *buf, size_t n)
{
    ERR_clear_error();
    if (n > INT_MAX)
        n = INT_MAX;
    int r = SSL_read(s->ssl, buf, (int)n);
    if (r > 0)
        return r;
    int e = SSL_get_error(s->ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return SDF_ECLOSED;
    default:
        set_err(s->err, sizeof s->err, "TLS read failed");
        return SDF_ETLS;
    }
}

int tls_session_write(tls_session *s, const void *data, size_t n)
{
    ERR_clear_error();
    if (!s->done) {
        snprintf(s->err, sizeof s->err, "TLS write before the handshake completed");
        return SDF_ETLS;
    }
    while (n > 0) {
        size_t w = 0;
        if (SSL_write_ex(s->ssl, data, n, &w) != 1 || w == 0) {
            set_err(s->err, sizeof s->err, "TLS write failed");
            return SDF_ETLS;
        }
        data = (const uint8_t *)data + w;
        n -= w;
    }
    return 0;
}

void tls_session_shutdown(tls_session *s)
{
    ERR_clear_error();
    if (SSL_is_init_finished(s->ssl))
        (void)SSL_shutdown(s->ssl);
    ERR_clear_error();
}

long tls_session_take_output(tls_session *s, uint8_t **out)
{
    *out = NULL;
    size_t n = BIO_ctrl_pending(s->wbio);
    if (n == 0)
        return 0;
    if (n > LONG_MAX || n > INT_MAX)
        n = INT_MAX;
    uint8_t *buf = malloc(n);
    if (!buf)
        return SDF_ENOMEM;
    int r = BIO_read(s->wbio, buf, (int)n);
    if (r <= 0) {
        free(buf);
        ERR_clear_error();
        return 0;
    }
    *out = buf;
    return r;
}

const char *tls_session_peer_cn(const tls_session *s)
{
    return s->done ? s->peer_cn : "";
}

const char *tls_session_peer_fingerprint(const tls_session *s)
{
    return s->done ? s->peer_fp : "";
}

const char *tls_session_error(const tls_session *s)
{
    return s->err;
}

int tls_session_recheck(const tls_session *s, const tls_ctx *ctx, char *why, size_t whylen)
{
    if (!s->done) {
        set_err(why, whylen, "handshake not complete");
        return SDF_EAUTH;
    }
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    if (!cert) {
        set_err(why, whylen, "no peer certificate");
        return SDF_EAUTH;
    }
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    if (!vctx) {
        set_err(why, whylen, "out of memory");
        return SDF_ENOMEM;
    }
    /* The same store (CA, CRL, flags) a new handshake on ctx would use;
     * a server checks client certificates and a client server ones. */
    int rc = SDF_EAUTH;
    if (X509_STORE_CTX_init(vctx, SSL_CTX_get_cert_store(ctx->ssl), cert,
                            SSL_get_peer_cert_chain(s->ssl)) == 1 &&
        X509_STORE_CTX_set_default(vctx, ctx->role == TLS_ROLE_SERVER ? "ssl_client"
                                                                      : "ssl_server") == 1) {
        if (X509_verify_cert(vctx) == 1)
            rc = 0;
        else
            set_err(why, whylen, "%s",
                    X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
    } else {
        set_err(why, whylen, "cannot set up certificate verification");
    }
    X509_STORE_CTX_free(vctx);
    ERR_clear_error();
    return rc;
}
