/* coordinator/cli/protocol.c — keygen, sign and verify signed protocols
 * (protocol.h), and reading a possibly signed spec for `sdefed query`. */
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdefed/spec.h"

#define FILE_MAX ((size_t)2 << 20)

static int usage(void)
{
    fprintf(stderr, "usage: sdefed protocol keygen --out PREFIX\n"
                    "       sdefed protocol sign SPEC.json --key PREFIX.key [--out SIGNED.json]\n"
                    "       sdefed protocol verify SIGNED.json [--key PREFIX.pub]\n");
    return 2;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, FILE_MAX + 1, f) : 0;
    bool bad = !buf || ferror(f) || n > FILE_MAX;
    if (f != stdin)
        fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: %s", path, !buf ? "out of memory" : n > FILE_MAX ? "larger than 2 MiB" : "read error");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int protocol_read_query(const char *text, size_t len, protocol_query *q, char *err,
                        size_t errlen)
{
    memset(q, 0, sizeof *q);
    passport_signed ps;
    int rc = passport_parse_signed(text, len, &ps, err, errlen);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return spec_parse_json(text, len, &q->spec, err, errlen);
    q->spec = ps.spec;
    q->is_signed = true;
    memcpy(q->sig, ps.sig, sizeof q->sig);
    memcpy(q->key_id, ps.key_id, sizeof q->key_id);
    q->embedded_key_ok = passport_check_embedded(&ps) == 0;
    return 0;
}

static int die(const char *what, const char *why)
{
    fprintf(stderr, "sdefed: %s: %s\n", what, why);
    return 1;
}

static int cmd_keygen(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--out") != 0)
        return usage();
    char err[512];
    if (passport_keygen(argv[2], err, sizeof err) != 0)
        return die("protocol keygen", err);
    EVP_PKEY *k = NULL;
    char path[4200], kid[PASSPORT_KEY_ID_HEX + 1] = "";
    snprintf(path, sizeof path, "%s.pub", argv[2]);
    k = passport_load_public(path, err, sizeof err);
    if (!k || passport_key_id(k, kid) != 0) {
        EVP_PKEY_free(k);
        return die("protocol keygen", "key written but cannot be read back");
    }
    EVP_PKEY_free(k);
    printf("wrote %s.key (private: keep it offline) and %s.pub (give it to the sites)\n"
           "key id %s\n", argv[2], argv[2], kid);
    return 0;
}

static int cmd_sign(int argc, char **argv)
{
    const char *spec_path = NULL, *key_path = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--key") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc) {
            if (argv[i][2] == 'k')
                key_path = argv[++i];
            else
                out_path = argv[++i];
        } else if (argv[i][0] != '-' && !spec_path) {
            spec_path = argv[i];
        } else {
            return usage();
        }
    }
    if (!spec_path || !key_path)
        return usage();
    char err[1024];
    size_t len;
    char *text = read_file(spec_path, &len, err, sizeof err);
    if (!text)
        return die("protocol sign", err);
    Sdefed__QuerySpec *spec = NULL;
    passport_signed ps;
    int rc = passport_parse_signed(text, len, &ps, err, sizeof err);
    if (rc == 1)
        spec = ps.spec;      /* re-signing a signed file signs its spec */
    else if (rc == 0)
        rc = spec_parse_json(text, len, &spec, err, sizeof err);
    free(text);
    if (rc < 0)
        return die(spec_path, err);
    EVP_PKEY *key = passport_load_private(key_path, err, sizeof err);
    if (!key) {
        sdefed__query_spec__free_unpacked(spec, NULL);
        return die("protocol sign", err);
    }
    uint8_t sig[PASSPORT_SIG_LEN];
    char *out = NULL;
    if (passport_sign(key, spec, sig) == 0)
        out = passport_signed_json(spec, sig, key);
    EVP_PKEY_free(key);
    sdefed__query_spec__free_unpacked(spec, NULL);
    if (!out)
        return die("protocol sign", "signing failed");
    int status = 0;
    if (out_path) {
        int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f) {
            if (fd >= 0)
                close(fd);
            status = die(out_path, strerror(errno));
        } else {
            bool bad = fputs(out, f) < 0;
            if (fclose(f) != 0 || bad)
                status = die(out_path, "write failed");
        }
    } else if (fputs(out, stdout) < 0 || fflush(stdout) != 0) {
        status = die("protocol sign", "cannot write output");
    }
    free(out);
    return status;
}

static int cmd_verify(int argc, char **argv)
{
    if (argc != 2 && !(argc == 4 && strcmp(argv[2], "--key") == 0))
        return usage();
    char err[1024];
    size_t len;
    char *text = read_file(argv[1], &len, err, sizeof err);
    if (!text)
        return die("protocol verify", err);
    passport_signed ps;
    int rc = passport_parse_signed(text, len, &ps, err, sizeof err);
    free(text);
    if (rc == 0)
        return die(argv[1], "not a signed protocol");
    if (rc < 0)
        return die(argv[1], err);
    int ok;
    if (argc == 4) {
        EVP_PKEY *k = passport_load_public(argv[3], err, sizeof err);
        char kid[PASSPORT_KEY_ID_HEX + 1];
        ok = k && passport_key_id(k, kid) == 0 && strcmp(kid, ps.key_id) == 0 &&
             passport_verify(k, ps.spec, ps.sig, PASSPORT_SIG_LEN) == 0;
        EVP_PKEY_free(k);
    } else {
        ok = passport_check_embedded(&ps) == 0;
    }
    sdefed__query_spec__free_unpacked(ps.spec, NULL);
    if (!ok) {
        printf("%s: signature does NOT match the spec%s\n", argv[1],
               argc == 4 ? " under that key" : "");
        return 1;
    }
    printf("%s: valid signature by key %s%s\n", argv[1], ps.key_id,
           argc == 4 ? "" : " (embedded key; sites check against the keys they trust)");
    return 0;
}

int protocol_main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "keygen") == 0)
        return cmd_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "sign") == 0)
        return cmd_sign(argc - 1, argv + 1);
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    return usage();
}
