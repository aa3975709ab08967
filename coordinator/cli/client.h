/* coordinator/cli/client.h — the analyst side of the protocol.
 *
 * One request per connection: connect over mutual TLS, Hello as an analyst,
 * send the request, wait for the reply with the same request id (or an
 * Error), close. Synchronous for the caller; runs its own libuv loop.
 */
#ifndef CLI_CLIENT_H
#define CLI_CLIENT_H

#include <limits.h>
#include <stddef.h>

#include "sdefed/err.h"
#include "sdefed.pb-c.h"

typedef struct client_config {
    char coordinator_host[256];
    int coordinator_port;
    char cert[PATH_MAX];
    char key[PATH_MAX];
    char ca[PATH_MAX];
} client_config;

/* Load the [client] INI file. Returns 0 or SDF_ECONFIG with reason. */
int client_config_load(const char *path, client_config *out, char *err, size_t errlen) SDF_MUSTCHECK;

/* "sdefed: " + the message + newline on stderr; returns 1 (the exit
 * status of a failed command). */
int cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* What every networked command does first: quiet the connection chatter
 * (the CLI reports problems itself) and load the client config from
 * config_path (NULL: none given). Returns 0, or prints why and returns 1. */
int cli_config(const char *config_path, client_config *cfg);

/* Send req (its request_id is set here) and wait up to timeout_ms for the
 * reply. Returns 0 and *reply (free with sdefed__envelope__free_unpacked),
 * or an SDF_E* code with a one-line reason in err (unreachable, TLS or
 * authentication failure, timeout, refused with the coordinator's Error). */
int client_call(const client_config *cfg, Sdefed__Envelope *req, unsigned timeout_ms,
                Sdefed__Envelope **reply, char *err, size_t errlen) SDF_MUSTCHECK;

#endif
