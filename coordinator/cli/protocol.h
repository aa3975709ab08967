/* coordinator/cli/protocol.h — `sdefed protocol ...`: signed protocols
 * (passports) on the analyst's / approver's side.
 *
 *   sdefed protocol keygen --out PREFIX      -> PREFIX.key (0600), PREFIX.pub
 *   sdefed protocol sign SPEC.json --key PREFIX.key [--out SIGNED.json]
 *   sdefed protocol verify SIGNED.json [--key PREFIX.pub]
 *
 * Signing needs no coordinator and no configuration: an approving body can
 * do it offline. Format and exactly what is signed: include/sdefed/passport.h.
 */
#ifndef CLI_PROTOCOL_H
#define CLI_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sdefed/passport.h"
#include "sdefed.pb-c.h"

/* Run `sdefed protocol ARGS` (argv[0] = "protocol"). Exit status 0/1/2. */
int protocol_main(int argc, char **argv);

/* A spec read for `sdefed query`: plain or signed. */
typedef struct protocol_query {
    Sdefed__QuerySpec *spec;          /* caller frees (sdefed__query_spec__free_unpacked) */
    bool is_signed;
    uint8_t sig[PASSPORT_SIG_LEN];
    char key_id[PASSPORT_KEY_ID_HEX + 1];
    bool embedded_key_ok;             /* signed: the embedded key verifies it */
} protocol_query;

/* Parse text (a plain JSON spec or a signed protocol) into *q. Returns 0,
 * or SDF_ESPEC / SDF_ENOMEM with a reason in err. */
int protocol_read_query(const char *text, size_t len, protocol_query *q, char *err,
                        size_t errlen) SDF_MUSTCHECK;

#endif
