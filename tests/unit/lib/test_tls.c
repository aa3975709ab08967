/* tests/unit/lib/test_tls.c — TLS 1.3 mutual authentication (lib/tls.c).
 *
 * A throw-away PKI is minted with the openssl CLI in a mkdtemp directory:
 * the federation CA, a server (CN=coord) and client (CN=site-a), a revoked
 * and an expired client, a client-only certificate, and a second CA with
 * its own "site-a". Client and server sessions are pumped against each
 * other in memory. Each refusal test tries to get an untrusted peer in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "sdefed/tls.h"

static char pki[64];

static const char pki_script[] =
    "set -e\n"
    "cat > ca.cnf <<'EOF'\n"
    "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = unused\n"
    "[v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier = hash\n"
    "[v3_server]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = serverAuth\n"
    "[v3_client]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
    "extendedKeyUsage = clientAuth\n"
    "[ca]\ndefault_ca = ca1\n"
    "[ca1]\ndatabase = ./index.txt\nnew_certs_dir = ./newcerts\ncertificate = ./ca.pem\n"
    "private_key = ./ca.key\nserial = ./serial\ncrlnumber = ./crlnumber\ndefault_md = sha256\n"
    "default_days = 30\ndefault_crl_days = 30\npolicy = pol\nunique_subject = no\n"
    "copy_extensions = none\n"
    "[pol]\ncommonName = supplied\n"
    "EOF\n"
    "mkdir -p newcerts; : > index.txt; echo 1000 > serial; echo 1000 > crlnumber\n"
    "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1.key; }\n"
    "issue() { n=$1; cn=$2; ext=$3; shift 3; key $n;\n"
    "  openssl req -config ca.cnf -new -key $n.key -subj \"/CN=$cn\" -out $n.csr;\n"
    "  openssl ca -config ca.cnf -batch -notext -extensions $ext -in $n.csr -out $n.pem \"$@\"; }\n"
    "key ca\n"
    "openssl req -config ca.cnf -new -x509 -key ca.key -subj /CN=test-ca -days 30 -extensions v3_ca -out ca.pem\n"
    "issue server coord v3_server\n"
    "issue client site-a v3_client\n"
    "issue revoked site-r v3_client\n"
    "issue expired site-x v3_client -startdate 20200101000000Z -enddate 20210101000000Z\n"
    "issue future site-f v3_client -startdate 20990101000000Z -enddate 21000101000000Z\n"
    "issue clientonly site-b v3_client\n"
    "openssl ca -config ca.cnf -revoke revoked.pem\n"
    "openssl ca -config ca.cnf -gencrl -out crl.pem\n"
    "key ca2\n"
    "openssl req -config ca.cnf -new -x509 -key ca2.key -subj /CN=other-ca -days 30 -extensions v3_ca -out ca2.pem\n"
    "key other\n"
    "openssl req -config ca.cnf -new -key other.key -subj /CN=site-a -out other.csr\n"
    "openssl x509 -req -in other.csr -CA ca2.pem -CAkey ca2.key -CAcreateserial -days 30 "
    "-extfile ca.cnf -extensions v3_client -out other.pem\n";

static const char *path(const char *name)
{
    static char buf[8][128];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 128, "%s/%s", pki, name);
    return p;
}

/* Write a certificate signed by the test CA whose subject CN is `cn`
 * (bytes as given, so it can hold control characters), key in name.key. */
static void mint_cert_with_cn(const char *name, const char *cn, int cnlen)
{
    FILE *f = fopen(path("ca.key"), "r");
    assert_non_null(f);
    EVP_PKEY *cakey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    f = fopen(path("ca.pem"), "r");
    assert_non_null(f);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(cakey);
    assert_non_null(ca);

    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 424242);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_NAME *nm = X509_NAME_new();
    assert_int_equal(X509_NAME_add_entry_by_NID(nm, NID_commonName, MBSTRING_ASC,
                                                (const unsigned char *)cn, cnlen, -1, 0), 1);
    X509_set_subject_name(x, nm);
    X509_NAME_free(nm);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);

    char fn[64];
    snprintf(fn, sizeof fn, "%s.pem", name);
    f = fopen(path(fn), "w");
    assert_non_null(f);
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(fn, sizeof fn, "%s.key", name);
    f = fopen(path(fn), "w");
    assert_non_null(f);
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
}

static int setup_pki(void **state)
{
    (void)state;
    snprintf(pki, sizeof pki, "/tmp/sdefed-tls-XXXXXX");
    if (!mkdtemp(pki))
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/pki.sh", pki);
    FILE *f = fopen(cmd, "w");
    if (!f)
        return -1;
    fputs(pki_script, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cd %s && sh pki.sh > pki.log 2>&1", pki);
    if (system(cmd) != 0) {
        snprintf(cmd, sizeof cmd, "cat %s/pki.log >&2", pki);
        (void)system(cmd);
        return -1;
    }
    mint_cert_with_cn("ctlcn", "site\nfake-log-line", 18);
    mint_cert_with_cn("longcn", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 64);
    return 0;
}

static int teardown_pki(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", pki);
    return system(cmd) == 0 ? 0 : -1;
}

/* SHA-256 fingerprint as the openssl CLI prints it, normalised to
 * lower-case hex without colons. */
static void cli_fingerprint(const char *pem, char out[65])
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "openssl x509 -noout -fingerprint -sha256 -in %s", path(pem));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256] = "";
    assert_non_null(fgets(line, sizeof line, p));
    pclose(p);
    char *eq = strchr(line, '=');
    assert_non_null(eq);
    size_t n = 0;
    for (char *c = eq + 1; *c && *c != '\n'; c++) {
        if (*c == ':')
            continue;
        assert_true(n < 64);
        out[n++] = (char)(*c >= 'A' && *c <= 'F' ? *c - 'A' + 'a' : *c);
    }
    out[n] = '\0';
    assert_int_equal(n, 64);
}

/* Raw colon form, as an operator would paste it into a config. */
static void cli_fingerprint_raw(const char *pem, char *out, size_t len)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "openssl x509 -noout -fingerprint -sha256 -in %s", path(pem));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[256] = "";
    assert_non_null(fgets(line, sizeof line, p));
    pclose(p);
    char *eq = strchr(line, '=');
    assert_non_null(eq);
    snprintf(out, len, "%s", eq + 1);
    out[strcspn(out, "\n")] = '\0';
}

static tls_ctx *make_ctx(tls_role role, const char *name, const char *ca, const char *crl,
                         const char *pin)
{
    char cert[128], key[128], caf[128], crlf[128];
    snprintf(cert, sizeof cert, "%s/%s.pem", pki, name);
    snprintf(key, sizeof key, "%s/%s.key", pki, name);
    snprintf(caf, sizeof caf, "%s/%s", pki, ca);
    if (crl)
        snprintf(crlf, sizeof crlf, "%s/%s", pki, crl);
    tls_opts o = { cert, key, caf, crl ? crlf : NULL, pin };
    char err[512];
    tls_ctx *ctx = tls_ctx_create(role, &o, err, sizeof err);
    if (!ctx)
        fail_msg("tls_ctx_create(%s): %s", name, err);
    return ctx;
}

/* Move all pending ciphertext from a to b. */
static void move(tls_session *a, tls_session *b)
{
    uint8_t *buf;
    long n = tls_session_take_output(a, &buf);
    assert_true(n >= 0);
    if (n > 0) {
        assert_int_equal(tls_session_feed(b, buf, (size_t)n), 0);
        free(buf);
    }
}

/* Run both handshakes until each side has finished or failed. */
static void handshake(tls_session *cl, tls_session *sv, int *crc, int *src)
{
    *crc = 0;
    *src = 0;
    for (int i = 0; i < 20 && (*crc == 0 || *src == 0); i++) {
        if (*crc == 0)
            *crc = tls_session_handshake(cl);
        move(cl, sv);
        if (*src == 0)
            *src = tls_session_handshake(sv);
        move(sv, cl);
    }
}

/* After the server refused, the client must not be left with a usable
 * channel: either its handshake failed, or its next read does. */
static void assert_client_cut_off(tls_session *cl, int crc)
{
    if (crc == 1) {
        char buf[64];
        int r = tls_session_read(cl, buf, sizeof buf);
        assert_int_equal(r, SDF_ETLS);
        assert_true(strlen(tls_session_error(cl)) > 0);
    } else {
        assert_true(crc == SDF_ETLS || crc == SDF_EAUTH);
    }
}

static void test_handshake_and_data(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    tls_ctx *cctx = make_ctx(TLS_ROLE_CLIENT, "client", "ca.pem", NULL, NULL);
    assert_string_equal(tls_ctx_own_cn(sctx), "coord");
    assert_string_equal(tls_ctx_own_cn(cctx), "site-a");
    tls_session *sv = tls_session_new(sctx);
    tls_session *cl = tls_session_new(cctx);
    assert_non_null(sv);
    assert_non_null(cl);
    assert_string_equal(tls_session_peer_cn(sv), "");
    assert_string_equal(tls_session_peer_fingerprint(sv), "");

    int crc, src;
    handshake(cl, sv, &crc, &src);
    assert_int_equal(crc, 1);
    assert_int_equal(src, 1);

    char fp_client[65], fp_server[65];
    cli_fingerprint("client.pem", fp_client);
    cli_fingerprint("server.pem", fp_server);
    assert_string_equal(tls_session_peer_cn(sv), "site-a");
    assert_string_equal(tls_session_peer_fingerprint(sv), fp_client);
    assert_string_equal(tls_session_peer_cn(cl), "coord");
    assert_string_equal(tls_session_peer_fingerprint(cl), fp_server);
    assert_string_equal(tls_session_error(sv), "");
    assert_string_equal(tls_session_error(cl), "");

    /* Client -> server. */
    assert_int_equal(tls_session_write(cl, "ping", 4), 0);
    move(cl, sv);
    char buf[4096];
    assert_int_equal(tls_session_read(sv, buf, sizeof buf), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(tls_session_read(sv, buf, sizeof buf), 0);

    /* Server -> client, several records. */
    size_t big = 100 * 1024;
    uint8_t *out = malloc(big), *in = malloc(big);
    assert_non_null(out);
    assert_non_null(in);
    for (size_t i = 0; i < big; i++)
        out[i] = (uint8_t)(i * 31);
    assert_int_equal(tls_session_write(sv, out, big), 0);
    move(sv, cl);
    size_t got = 0;
    int r;
    while ((r = tls_session_read(cl, in + got, big - got)) > 0)
        got += (size_t)r;
    assert_int_equal(r, 0);
    assert_int_equal(got, big);
    assert_memory_equal(in, out, big);
    free(out);
    free(in);

    /* Clean close. */
    tls_session_shutdown(cl);
    move(cl, sv);
    assert_int_equal(tls_session_read(sv, buf, sizeof buf), SDF_ECLOSED);

    tls_session_free(sv);
    tls_session_free(cl);
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
}

static void test_ctx_freed_while_sessions_live(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    tls_ctx *cctx = make_ctx(TLS_ROLE_CLIENT, "client", "ca.pem", NULL, NULL);
    tls_session *sv = tls_session_new(sctx);
    tls_session *cl = tls_session_new(cctx);
    /* A reload drops the contexts; the sessions keep theirs alive. */
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
    int crc, src;
    handshake(cl, sv, &crc, &src);
    assert_int_equal(crc, 1);
    assert_int_equal(src, 1);
    assert_string_equal(tls_session_peer_cn(sv), "site-a");
    tls_session_free(sv);
    tls_session_free(cl);
}

/* One refusal case: server and client contexts given, expect the server
 * (or, with server_side = 0, the client) to fail with want. */
static void expect_refused(tls_ctx *sctx, tls_ctx *cctx, int server_side, int want,
                           const char *reason_part)
{
    tls_session *sv = tls_session_new(sctx);
    tls_session *cl = tls_session_new(cctx);
    int crc, src;
    handshake(cl, sv, &crc, &src);
    if (server_side) {
        assert_int_equal(src, want);
        assert_string_equal(tls_session_peer_cn(sv), "");
        if (reason_part && !strstr(tls_session_error(sv), reason_part))
            fail_msg("server error '%s' lacks '%s'", tls_session_error(sv), reason_part);
        assert_client_cut_off(cl, crc);
    } else {
        assert_int_equal(crc, want);
        assert_string_equal(tls_session_peer_cn(cl), "");
        if (reason_part && !strstr(tls_session_error(cl), reason_part))
            fail_msg("client error '%s' lacks '%s'", tls_session_error(cl), reason_part);
        assert_true(src != 1 || crc < 0);
    }
    /* Nothing left behind in the shared error queue. */
    assert_int_equal(ERR_peek_error(), 0);
    tls_session_free(sv);
    tls_session_free(cl);
}

static void test_client_from_other_ca_refused(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    /* Same CN "site-a", but issued by an unrelated CA. */
    tls_ctx *cctx = make_ctx(TLS_ROLE_CLIENT, "other", "ca.pem", NULL, NULL);
    expect_refused(sctx, cctx, 1, SDF_EAUTH, "unable to get local issuer certificate");
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
}

static void test_server_from_other_ca_refused(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    /* The client trusts only CA2, so the real server is not trusted. */
    tls_ctx *cctx = make_ctx(TLS_ROLE_CLIENT, "other", "ca2.pem", NULL, NULL);
    expect_refused(sctx, cctx, 0, SDF_EAUTH, "verify failed");
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
}

static void test_expired_client_refused(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    tls_ctx *cctx = make_ctx(TLS_ROLE_CLIENT, "expired", "ca.pem", NULL, NULL);
    expect_refused(sctx, cctx, 1, SDF_EAUTH, "certificate has expired");
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
}

static void test_not_yet_valid_client_refused(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    tls_ctx *cctx = make_ctx(TLS_ROLE_CLIENT, "future", "ca.pem", NULL, NULL);
    expect_refused(sctx, cctx, 1, SDF_EAUTH, "certificate is not yet valid");
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
}

static void test_crl(void **state)
{
    (void)state;
    tls_ctx *plain = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    tls_ctx *withcrl = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", "crl.pem", NULL);
    tls_ctx *revoked = make_ctx(TLS_ROLE_CLIENT, "revoked", "ca.pem", NULL, NULL);
    tls_ctx *good = make_ctx(TLS_ROLE_CLIENT, "client", "ca.pem", NULL, NULL);
    int crc, src;

    /* Without the CRL the revoked certificate is still valid ... */
    tls_session *sv = tls_session_new(plain), *cl = tls_session_new(revoked);
    handshake(cl, sv, &crc, &src);
    assert_int_equal(src, 1);
    tls_session_free(sv);
    tls_session_free(cl);

    /* ... with it, refused; an unrevoked client still gets in. */
    expect_refused(withcrl, revoked, 1, SDF_EAUTH, "certificate revoked");
    sv = tls_session_new(withcrl);
    cl = tls_session_new(good);
    handshake(cl, sv, &crc, &src);
    assert_int_equal(src, 1);
    assert_int_equal(crc, 1);
    tls_session_free(sv);
    tls_session_free(cl);

    tls_ctx_free(plain);
    tls_ctx_free(withcrl);
    tls_ctx_free(revoked);
    tls_ctx_free(good);
}

static void test_pin(void **state)
{
    (void)state;
    char server_fp[128], client_fp[128];
    cli_fingerprint_raw("server.pem", server_fp, sizeof server_fp);
    cli_fingerprint_raw("client.pem", client_fp, sizeof client_fp);
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);

    /* Pin = the server's own fingerprint (colon form, upper case): ok. */
    tls_ctx *pinned = make_ctx(TLS_ROLE_CLIENT, "client", "ca.pem", NULL, server_fp);
    tls_session *sv = tls_session_new(sctx), *cl = tls_session_new(pinned);
    int crc, src;
    handshake(cl, sv, &crc, &src);
    assert_int_equal(crc, 1);
    assert_int_equal(src, 1);
    tls_session_free(sv);
    tls_session_free(cl);

    /* Pin of some other certificate of the same CA: the server is refused
     * although its chain is perfectly valid. */
    tls_ctx *wrong = make_ctx(TLS_ROLE_CLIENT, "client", "ca.pem", NULL, client_fp);
    expect_refused(sctx, wrong, 0, SDF_EAUTH, "pinned");

    /* A server may pin its client too. */
    char fp_hex[65];
    cli_fingerprint("client.pem", fp_hex);
    tls_ctx *spin = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, fp_hex);
    tls_ctx *other = make_ctx(TLS_ROLE_CLIENT, "revoked", "ca.pem", NULL, NULL);
    expect_refused(spin, other, 1, SDF_EAUTH, "pinned");

    tls_ctx_free(sctx);
    tls_ctx_free(pinned);
    tls_ctx_free(wrong);
    tls_ctx_free(spin);
    tls_ctx_free(other);
}

static void test_client_cert_cannot_act_as_server(void **state)
{
    (void)state;
    /* A site's certificate (clientAuth only) must not let it impersonate
     * the coordinator to another site. */
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "clientonly", "ca.pem", NULL, NULL);
    tls_ctx *cctx = make_ctx(TLS_ROLE_CLIENT, "client", "ca.pem", NULL, NULL);
    expect_refused(sctx, cctx, 0, SDF_EAUTH, "unsuitable certificate purpose");
    tls_ctx_free(sctx);
    tls_ctx_free(cctx);
}

/* A raw OpenSSL client, to do what tls_ctx_create never would. */
static SSL_CTX *raw_client(int max_version, const char *name)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(ctx);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, max_version);
    assert_int_equal(SSL_CTX_load_verify_locations(ctx, path("ca.pem"), NULL), 1);
    if (name) {
        char f[64];
        snprintf(f, sizeof f, "%s.pem", name);
        assert_int_equal(SSL_CTX_use_certificate_chain_file(ctx, path(f)), 1);
        snprintf(f, sizeof f, "%s.key", name);
        assert_int_equal(SSL_CTX_use_PrivateKey_file(ctx, path(f), SSL_FILETYPE_PEM), 1);
    }
    return ctx;
}

/* Pump a raw client SSL against a server session; returns the server's
 * handshake result. */
static int raw_handshake(SSL_CTX *rctx, tls_session *sv, int *client_ok)
{
    SSL *ssl = SSL_new(rctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    int src = 0, crc = 0;
    for (int i = 0; i < 20 && src == 0; i++) {
        crc = SSL_do_handshake(ssl);
        char buf[16384];
        int n;
        while ((n = BIO_read(wb, buf, sizeof buf)) > 0)
            assert_int_equal(tls_session_feed(sv, buf, (size_t)n), 0);
        src = tls_session_handshake(sv);
        uint8_t *out;
        long m = tls_session_take_output(sv, &out);
        if (m > 0) {
            BIO_write(rb, out, (int)m);
            free(out);
        }
    }
    /* Let the client see the server's last flight or alert. */
    crc = SSL_do_handshake(ssl);
    if (crc == 1) {
        char b[16];
        crc = SSL_read(ssl, b, sizeof b) > 0 ? 1 : 0;
    }
    *client_ok = crc == 1;
    SSL_free(ssl);
    ERR_clear_error();
    return src;
}

static void test_tls12_client_refused(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    SSL_CTX *r12 = raw_client(TLS1_2_VERSION, "client");
    tls_session *sv = tls_session_new(sctx);
    int client_ok = 1;
    assert_int_equal(raw_handshake(r12, sv, &client_ok), SDF_ETLS);
    assert_false(client_ok);
    assert_non_null(strstr(tls_session_error(sv), "protocol"));
    tls_session_free(sv);

    /* Control: the same raw client allowed TLS 1.3 gets in, so the refusal
     * above is about the version and nothing else. */
    SSL_CTX *r13 = raw_client(TLS1_3_VERSION, "client");
    sv = tls_session_new(sctx);
    assert_int_equal(raw_handshake(r13, sv, &client_ok), 1);
    tls_session_free(sv);

    SSL_CTX_free(r12);
    SSL_CTX_free(r13);
    tls_ctx_free(sctx);
}

static void test_client_without_cert_refused(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    SSL_CTX *anon = raw_client(TLS1_3_VERSION, NULL);
    tls_session *sv = tls_session_new(sctx);
    int client_ok = 1;
    int r = raw_handshake(anon, sv, &client_ok);
    assert_true(r == SDF_EAUTH);
    assert_false(client_ok);
    assert_string_equal(tls_session_peer_cn(sv), "");
    tls_session_free(sv);
    SSL_CTX_free(anon);
    tls_ctx_free(sctx);
}

static void test_bad_cn_refused(void **state)
{
    (void)state;
    /* tls_ctx_create refuses such certificates for itself, so the client
     * is raw OpenSSL. Valid chain, but a CN with a newline could forge log
     * lines, and one of 64 bytes is over our limit. */
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    const char *names[] = { "ctlcn", "longcn" };
    for (int i = 0; i < 2; i++) {
        SSL_CTX *raw = raw_client(TLS1_3_VERSION, names[i]);
        tls_session *sv = tls_session_new(sctx);
        int client_ok = 1;
        assert_int_equal(raw_handshake(raw, sv, &client_ok), SDF_EAUTH);
        assert_false(client_ok);
        assert_non_null(strstr(tls_session_error(sv), "CN"));
        assert_string_equal(tls_session_peer_cn(sv), "");
        tls_session_free(sv);
        SSL_CTX_free(raw);
    }
    char err[512];
    char cert[128], key[128], ca[128];
    snprintf(cert, sizeof cert, "%s", path("ctlcn.pem"));
    snprintf(key, sizeof key, "%s", path("ctlcn.key"));
    snprintf(ca, sizeof ca, "%s", path("ca.pem"));
    tls_opts o = { cert, key, ca, NULL, NULL };
    assert_null(tls_ctx_create(TLS_ROLE_CLIENT, &o, err, sizeof err));
    assert_non_null(strstr(err, "CN"));
    tls_ctx_free(sctx);
}

static void test_garbage_refused(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    tls_session *sv = tls_session_new(sctx);
    const char junk[] = "GET / HTTP/1.1\r\nHost: coord\r\n\r\n";
    assert_int_equal(tls_session_feed(sv, junk, sizeof junk - 1), 0);
    assert_int_equal(tls_session_handshake(sv), SDF_ETLS);
    assert_true(strlen(tls_session_error(sv)) > 0);
    /* Failure is sticky. */
    assert_int_equal(tls_session_handshake(sv), SDF_ETLS);
    assert_int_equal(ERR_peek_error(), 0);
    tls_session_free(sv);
    tls_ctx_free(sctx);
}

static void test_errors_do_not_leak_between_sessions(void **state)
{
    (void)state;
    tls_ctx *sctx = make_ctx(TLS_ROLE_SERVER, "server", "ca.pem", NULL, NULL);
    tls_ctx *bad = make_ctx(TLS_ROLE_CLIENT, "other", "ca.pem", NULL, NULL);
    tls_ctx *good = make_ctx(TLS_ROLE_CLIENT, "client", "ca.pem", NULL, NULL);

    /* Leave a failing session half-dead, then run a good one alongside. */
    tls_session *sv1 = tls_session_new(sctx), *cl1 = tls_session_new(bad);
    int crc, src;
    handshake(cl1, sv1, &crc, &src);
    assert_int_equal(src, SDF_EAUTH);
    /* Plant a stray error in the thread's queue, as other code might. */
    ERR_put_error(ERR_LIB_SSL, 0, SSL_R_BAD_LENGTH, __FILE__, __LINE__);

    tls_session *sv2 = tls_session_new(sctx), *cl2 = tls_session_new(good);
    handshake(cl2, sv2, &crc, &src);
    assert_int_equal(crc, 1);
    assert_int_equal(src, 1);
    assert_string_equal(tls_session_error(sv2), "");
    assert_string_equal(tls_session_error(cl2), "");
    assert_int_equal(tls_session_write(cl2, "x", 1), 0);
    move(cl2, sv2);
    char b[8];
    assert_int_equal(tls_session_read(sv2, b, sizeof b), 1);
    assert_string_equal(tls_session_error(sv2), "");
    assert_non_null(strstr(tls_session_error(sv1), "verify"));

    tls_session_free(sv1);
    tls_session_free(cl1);
    tls_session_free(sv2);
    tls_session_free(cl2);
    tls_ctx_free(sctx);
    tls_ctx_free(bad);
    tls_ctx_free(good);
}

static void test_ctx_create_errors(void **state)
{
    (void)state;
    char err[512];
    char cert[128], key[128], ca[128], otherkey[128], crl[128];
    snprintf(cert, sizeof cert, "%s", path("server.pem"));
    snprintf(key, sizeof key, "%s", path("server.key"));
    snprintf(ca, sizeof ca, "%s", path("ca.pem"));
    snprintf(otherkey, sizeof otherkey, "%s", path("client.key"));
    snprintf(crl, sizeof crl, "%s", path("nope.crl"));

    tls_opts o = { "/nonexistent/cert.pem", key, ca, NULL, NULL };
    assert_null(tls_ctx_create(TLS_ROLE_SERVER, &o, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/cert.pem"));
    assert_non_null(strstr(err, "error:"));   /* OpenSSL's queue is included */

    tls_opts mism = { cert, otherkey, ca, NULL, NULL };
    assert_null(tls_ctx_create(TLS_ROLE_SERVER, &mism, err, sizeof err));
    assert_non_null(strstr(err, otherkey));
    assert_non_null(strstr(err, "mismatch"));

    tls_opts noca = { cert, key, "/nonexistent/ca.pem", NULL, NULL };
    assert_null(tls_ctx_create(TLS_ROLE_CLIENT, &noca, err, sizeof err));
    assert_non_null(strstr(err, "CA"));

    tls_opts badpin = { cert, key, ca, NULL, "abcd" };
    assert_null(tls_ctx_create(TLS_ROLE_CLIENT, &badpin, err, sizeof err));
    assert_non_null(strstr(err, "pin"));

    tls_opts badcrl = { cert, key, ca, crl, NULL };
    assert_null(tls_ctx_create(TLS_ROLE_SERVER, &badcrl, err, sizeof err));
    assert_non_null(strstr(err, "CRL"));

    /* A CRL path that holds no CRL (a certificate) is refused too. */
    tls_opts notcrl = { cert, key, ca, ca, NULL };
    assert_null(tls_ctx_create(TLS_ROLE_SERVER, &notcrl, err, sizeof err));

    tls_opts none = { NULL, key, ca, NULL, NULL };
    assert_null(tls_ctx_create(TLS_ROLE_SERVER, &none, err, sizeof err));
    assert_int_equal(ERR_peek_error(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_and_data),
        cmocka_unit_test(test_ctx_freed_while_sessions_live),
        cmocka_unit_test(test_client_from_other_ca_refused),
        cmocka_unit_test(test_server_from_other_ca_refused),
        cmocka_unit_test(test_expired_client_refused),
        cmocka_unit_test(test_not_yet_valid_client_refused),
        cmocka_unit_test(test_crl),
        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_client_cert_cannot_act_as_server),
        cmocka_unit_test(test_bad_cn_refused),
        cmocka_unit_test(test_tls12_client_refused),
        cmocka_unit_test(test_client_without_cert_refused),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_errors_do_not_leak_between_sessions),
        cmocka_unit_test(test_ctx_create_errors),
    };
    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
