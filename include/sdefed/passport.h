/* include/sdefed/passport.h — signed protocols ("passports") for query specs.
 *
 * An approving body (an ethics committee, a data access committee, NHS
 * England) approves a query protocol once and signs it; every SDE whose
 * agent trusts that body's public key then releases matching queries
 * automatically instead of asking its custodian again ("one approval, not
 * one hospital at a time"). The CLI signs (`sdefed protocol sign`), the
 * agent verifies (agent/governance/passport.c); both use this module so the
 * signed bytes can never drift apart.
 *
 * What is signed (precisely):
 *   message = "sdefed-protocol-v1\n" || canonical_spec
 *   canonical_spec = json_dumps(spec_to_json(spec), JSON_COMPACT | JSON_SORT_KEYS)
 * where spec is the structured QuerySpec (so the agent recomputes the same
 * bytes from the protobuf it receives; concept lists are sorted and
 * de-duplicated by spec_to_json, every other field — kind, project, dataset,
 * cohort, stratifiers, policy — is covered, and changing any of them breaks
 * the signature). The signature is Ed25519 (RFC 8032, pure, no pre-hash)
 * made with OpenSSL's EVP_PKEY_ED25519: 64 bytes.
 *
 * Key id = lowercase hex SHA-256 of the raw 32-byte Ed25519 public key
 * (64 characters). Keys are PEM files: PREFIX.key (PKCS#8 private, mode
 * 0600) and PREFIX.pub (SubjectPublicKeyInfo).
 *
 * Signed file (what `sdefed protocol sign` writes, `sdefed query` reads):
 *   {"sdefed_signed_protocol": 1,
 *    "spec": { ...canonical spec... },
 *    "key_id": "<64 hex>",
 *    "signature": "<base64 of 64 bytes>",
 *    "public_key": "<base64 of the raw 32-byte key>"}   (informational)
 * The agent never trusts public_key: it looks the key id up among the key
 * files its operator configured.
 */
#ifndef SDEFED_PASSPORT_H
#define SDEFED_PASSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

#define PASSPORT_SIG_LEN 64
#define PASSPORT_KEY_ID_HEX 64       /* characters, without the NUL */
#define PASSPORT_DOMAIN "sdefed-protocol-v1\n"

/* The exact bytes that are signed for spec s (see above). Returns 0 and a
 * malloc'd buffer in *out (caller frees) of *len bytes (NUL-terminated for
 * convenience, NUL not counted), or SDF_ENOMEM. */
int passport_message(const Sdefed__QuerySpec *s, char **out, size_t *len) SDF_MUSTCHECK;

/* Create a new Ed25519 key pair: writes PREFIX.key (0600, refuses to
 * overwrite an existing file) and PREFIX.pub. Returns 0, or SDF_EIO /
 * SDF_ETLS with a reason in err. */
int passport_keygen(const char *prefix, char *err, size_t errlen) SDF_MUSTCHECK;

/* Load a PEM private / public Ed25519 key. NULL with a reason in err on
 * failure (unreadable, not PEM, not Ed25519). Free with EVP_PKEY_free. */
EVP_PKEY *passport_load_private(const char *path, char *err, size_t errlen);
EVP_PKEY *passport_load_public(const char *path, char *err, size_t errlen);

/* Key id of an Ed25519 key (public or private) into out[65]. 0 or SDF_ETLS. */
int passport_key_id(EVP_PKEY *key, char out[PASSPORT_KEY_ID_HEX + 1]) SDF_MUSTCHECK;

/* Sign spec s with priv. Returns 0 and the 64-byte signature, or SDF_ETLS /
 * SDF_ENOMEM. */
int passport_sign(EVP_PKEY *priv, const Sdefed__QuerySpec *s,
                  uint8_t sig[PASSPORT_SIG_LEN]) SDF_MUSTCHECK;

/* Verify sig (siglen bytes) over spec s with pub. Returns 0 when valid,
 * SDF_EAUTH when the signature does not match (any changed field, wrong
 * key, wrong length), SDF_ENOMEM. Never logs. */
int passport_verify(EVP_PKEY *pub, const Sdefed__QuerySpec *s, const uint8_t *sig,
                    size_t siglen) SDF_MUSTCHECK;

/* The signed-file JSON for (s, sig, key): a malloc'd NUL-terminated text
 * (ends with a newline), or NULL on ENOMEM / key export failure. */
char *passport_signed_json(const Sdefed__QuerySpec *s, const uint8_t sig[PASSPORT_SIG_LEN],
                           EVP_PKEY *key);

/* A parsed signed file. */
typedef struct passport_signed {
    Sdefed__QuerySpec *spec;          /* free with sdefed__query_spec__free_unpacked */
    uint8_t sig[PASSPORT_SIG_LEN];
    char key_id[PASSPORT_KEY_ID_HEX + 1];
    uint8_t public_key[32];           /* as embedded; informational only */
    bool has_public_key;
} passport_signed;

/* Parse text as a signed file. Returns 1 and fills *out when it is one
 * (spec validated with spec_parse_json), 0 when text is not a signed file
 * (no "sdefed_signed_protocol" member: treat it as a plain spec), or
 * SDF_ESPEC / SDF_ENOMEM with a reason in err when it claims to be signed
 * but is malformed. */
int passport_parse_signed(const char *text, size_t len, passport_signed *out, char *err,
                          size_t errlen) SDF_MUSTCHECK;

/* Check the embedded public key of a parsed file against its signature.
 * 0 valid, SDF_EAUTH not (or no embedded key), SDF_ETLS. Informational:
 * the CLI warns, the agents decide. */
int passport_check_embedded(const passport_signed *p) SDF_MUSTCHECK;

#endif
