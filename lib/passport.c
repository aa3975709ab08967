/* lib/passport.c — Ed25519 signed protocols over canonical query specs.
 *
 * Shared by the analyst CLI (keygen, sign) and the agent (verify), so the
 * signed bytes are computed by one function: passport_message(). See
 * include/sdefed/passport.h for the exact format.
 */
#include "sdefed/passport.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "sdefed/spec.h"

#define PASSPORT_FILE_MAX ((size_t)2 << 20)

static void ossl_reason(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
}

int passport_message(const Sdefed__QuerySpec *s, char **out, size_t *len)
{
    *out = NULL;
    json_t *j = spec_to_json(s);
    if (!j)
        return SDF_ENOMEM;
    char *canon = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    if (!canon)
        return SDF_ENOMEM;
    size_t dl = strlen(PASSPORT_DOMAIN), cl = strlen(canon);
    char *m = malloc(dl + cl + 1);
    if (!m) {
        free(canon);
        return SDF_ENOMEM;
    }
    memcpy(m, PASSPORT_DOMAIN, dl);
    memcpy(m + dl, canon, cl + 1);
    free(canon);
    *out = m;
    *len = dl + cl;
    return 0;
}

/* Write text to path with mode; O_EXCL so a key is never overwritten. */
static int write_new_file(const char *path, const char *text, size_t len, mode_t mode,
                          char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return SDF_EIO;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            close(fd);
            unlink(path);
            return SDF_EIO;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(path);
        return SDF_EIO;
    }
    return 0;
}

/* PEM text of a key via a memory BIO; malloc'd, NULL on failure. */
static char *pem_text(EVP_PKEY *k, bool priv, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return NULL;
    int ok = priv ? PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)
                  : PEM_write_bio_PUBKEY(b, k);
    char *data = NULL;
    long n = ok ? BIO_get_mem_data(b, &data) : 0;
    char *out = n > 0 ? malloc((size_t)n + 1) : NULL;
    if (out) {
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
        *len = (size_t)n;
    }
    BIO_free(b);
    return out;
}

int passport_keygen(const char *prefix, char *err, size_t errlen)
{
    char kpath[4096], ppath[4096];
    if ((size_t)snprintf(kpath, sizeof kpath, "%s.key", prefix) >= sizeof kpath ||
        (size_t)snprintf(ppath, sizeof ppath, "%s.pub", prefix) >= sizeof ppath) {
        snprintf(err, errlen, "key path too long");
        return SDF_EINVAL;
    }
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!k) {
        ossl_reason(err, errlen, "Ed25519 key generation failed");
        return SDF_ETLS;
    }
    size_t klen = 0, plen = 0;
    char *ktext = pem_text(k, true, &klen);
    char *ptext = pem_text(k, false, &plen);
    EVP_PKEY_free(k);
    int rc;
    if (!ktext || !ptext) {
        ossl_reason(err, errlen, "cannot encode the key");
        rc = SDF_ETLS;
    } else if ((rc = write_new_file(kpath, ktext, klen, 0600, err, errlen)) == 0) {
        rc = write_new_file(ppath, ptext, plen, 0644, err, errlen);
        if (rc != 0)
            unlink(kpath);
    }
    if (ktext)
        OPENSSL_cleanse(ktext, klen);
    free(ktext);
    free(ptext);
    return rc;
}

static EVP_PKEY *load_key(const char *path, bool priv, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = priv ? PEM_read_PrivateKey(f, NULL, NULL, NULL)
                       : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!k) {
        char what[4200];
        snprintf(what, sizeof what, "%s: not a PEM %s key", path, priv ? "private" : "public");
        ossl_reason(err, errlen, what);
        return NULL;
    }
    if (EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
        snprintf(err, errlen, "%s: not an Ed25519 key", path);
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

EVP_PKEY *passport_load_private(const char *path, char *err, size_t errlen)
{
    return load_key(path, true, err, errlen);
}

EVP_PKEY *passport_load_public(const char *path, char *err, size_t errlen)
{
    return load_key(path, false, err, errlen);
}

int passport_key_id(EVP_PKEY *key, char out[PASSPORT_KEY_ID_HEX + 1])
{
    uint8_t raw[32];
    size_t rl = sizeof raw;
    if (EVP_PKEY_get_raw_public_key(key, raw, &rl) != 1 || rl != sizeof raw) {
        ERR_clear_error();
        return SDF_ETLS;
    }
    uint8_t md[SHA256_DIGEST_LENGTH];
    SHA256(raw, rl, md);
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int passport_sign(EVP_PKEY *priv, const Sdefed__QuerySpec *s, uint8_t sig[PASSPORT_SIG_LEN])
{
    char *msg;
    size_t len;
    int rc = passport_message(s, &msg, &len);
    if (rc)
        return rc;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    size_t sl = PASSPORT_SIG_LEN;
    rc = 0;
    if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, priv) != 1 ||
        EVP_DigestSign(ctx, sig, &sl, (const uint8_t *)msg, len) != 1 || sl != PASSPORT_SIG_LEN) {
        ERR_clear_error();
        rc = ctx ? SDF_ETLS : SDF_ENOMEM;
    }
    EVP_MD_CTX_free(ctx);
    free(msg);
    return rc;
}

int passport_verify(EVP_PKEY *pub, const Sdefed__QuerySpec *s, const uint8_t *sig,
                    size_t siglen)
{
    if (!sig || siglen != PASSPORT_SIG_LEN)
        return SDF_EAUTH;
    char *msg;
    size_t len;
    int rc = passport_message(s, &msg, &len);
    if (rc)
        return rc;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        free(msg);
        return SDF_ENOMEM;
    }
    rc = SDF_EAUTH;
    if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
        EVP_DigestVerify(ctx, sig, siglen, (const uint8_t *)msg, len) == 1)
        rc = 0;
    ERR_clear_error();
    EVP_MD_CTX_free(ctx);
    free(msg);
    return rc;
}

static json_t *b64_json(const uint8_t *data, size_t len)
{
    char *buf = malloc(4 * ((len + 2) / 3) + 1);
    if (!buf)
        return NULL;
    EVP_EncodeBlock((unsigned char *)buf, data, (int)len);
    json_t *j = json_string(buf);
    free(buf);
    return j;
}

/* Decode base64 text into exactly want bytes. 0 or -1. */
static int b64_exact(const char *text, uint8_t *out, size_t want)
{
    size_t tl = strlen(text);
    if (tl == 0 || tl % 4 != 0 || tl > 4 * ((want + 2) / 3))
        return -1;
    uint8_t buf[128];
    if (tl / 4 * 3 > sizeof buf)
        return -1;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)text, (int)tl);
    if (n < 0)
        return -1;
    size_t pad = (text[tl - 1] == '=') + (tl > 1 && text[tl - 2] == '=');
    if ((size_t)n - pad != want)
        return -1;
    memcpy(out, buf, want);
    return 0;
}

char *passport_signed_json(const Sdefed__QuerySpec *s, const uint8_t sig[PASSPORT_SIG_LEN],
                           EVP_PKEY *key)
{
    char kid[PASSPORT_KEY_ID_HEX + 1];
    uint8_t raw[32];
    size_t rl = sizeof raw;
    if (passport_key_id(key, kid) != 0 || EVP_PKEY_get_raw_public_key(key, raw, &rl) != 1) {
        ERR_clear_error();
        return NULL;
    }
    json_t *o = json_object();
    json_t *spec = spec_to_json(s);
    json_t *sj = b64_json(sig, PASSPORT_SIG_LEN);
    json_t *pj = b64_json(raw, rl);
    char *text = NULL;
    if (o && spec && sj && pj &&
        json_object_set_new(o, "sdefed_signed_protocol", json_integer(1)) == 0 &&
        json_object_set(o, "spec", spec) == 0 &&
        json_object_set_new(o, "key_id", json_string(kid)) == 0 &&
        json_object_set(o, "signature", sj) == 0 &&
        json_object_set(o, "public_key", pj) == 0) {
        char *t = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (t) {
            size_t n = strlen(t);
            text = malloc(n + 2);
            if (text) {
                memcpy(text, t, n);
                text[n] = '\n';
                text[n + 1] = '\0';
            }
            free(t);
        }
    }
    json_decref(o);
    json_decref(spec);
    json_decref(sj);
    json_decref(pj);
    return text;
}

static bool is_hex64(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == PASSPORT_KEY_ID_HEX;
}

int passport_parse_signed(const char *text, size_t len, passport_signed *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (len > PASSPORT_FILE_MAX) {
        snprintf(err, errlen, "signed protocol larger than 2 MiB");
        return SDF_ESPEC;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root) || !json_object_get(root, "sdefed_signed_protocol")) {
        json_decref(root);
        return 0;       /* not a signed file: let the plain spec parser report */
    }
    int rc = SDF_ESPEC;
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "sdefed_signed_protocol") && strcmp(k, "spec") && strcmp(k, "key_id") &&
            strcmp(k, "signature") && strcmp(k, "public_key")) {
            snprintf(err, errlen, "signed protocol: unknown field '%.40s'", k);
            goto out;
        }
    }
    json_t *ver = json_object_get(root, "sdefed_signed_protocol");
    json_t *spec = json_object_get(root, "spec");
    json_t *kid = json_object_get(root, "key_id");
    json_t *sig = json_object_get(root, "signature");
    json_t *pub = json_object_get(root, "public_key");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
        snprintf(err, errlen, "signed protocol: sdefed_signed_protocol must be 1");
        goto out;
    }
    if (!json_is_object(spec)) {
        snprintf(err, errlen, "signed protocol: spec: expected an object");
        goto out;
    }
    if (!json_is_string(kid) || !is_hex64(json_string_value(kid))) {
        snprintf(err, errlen, "signed protocol: key_id: expected 64 lowercase hex digits");
        goto out;
    }
    if (!json_is_string(sig) || b64_exact(json_string_value(sig), out->sig, PASSPORT_SIG_LEN)) {
        snprintf(err, errlen, "signed protocol: signature: expected base64 of 64 bytes");
        goto out;
    }
    if (pub) {
        if (!json_is_string(pub) || b64_exact(json_string_value(pub), out->public_key, 32)) {
            snprintf(err, errlen, "signed protocol: public_key: expected base64 of 32 bytes");
            goto out;
        }
        out->has_public_key = true;
    }
    snprintf(out->key_id, sizeof out->key_id, "%s", json_string_value(kid));
    char *spec_text = json_dumps(spec, JSON_COMPACT);
    if (!spec_text) {
        rc = SDF_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    char why[512];
    int prc = spec_parse_json(spec_text, strlen(spec_text), &out->spec, why, sizeof why);
    free(spec_text);
    if (prc != 0) {
        snprintf(err, errlen, "signed protocol: spec: %s", why);
        rc = prc == SDF_ENOMEM ? SDF_ENOMEM : SDF_ESPEC;
        goto out;
    }
    rc = 1;
out:
    json_decref(root);
    if (rc != 1) {
        if (out->spec)
            sdefed__query_spec__free_unpacked(out->spec, NULL);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int passport_check_embedded(const passport_signed *p)
{
    if (!p->has_public_key || !p->spec)
        return SDF_EAUTH;
    EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, p->public_key, 32);
    if (!k) {
        ERR_clear_error();
        return SDF_ETLS;
    }
    char kid[PASSPORT_KEY_ID_HEX + 1];
    int rc = passport_key_id(k, kid);
    if (rc == 0 && strcmp(kid, p->key_id) != 0)
        rc = SDF_EAUTH;
    if (rc == 0)
        rc = passport_verify(k, p->spec, p->sig, PASSPORT_SIG_LEN);
    EVP_PKEY_free(k);
    return rc;
}
