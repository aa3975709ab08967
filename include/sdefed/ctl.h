/* include/sdefed/ctl.h — the local status socket of a daemon.
 *
 * Each daemon serves its status on a Unix stream socket in its state
 * directory (agent.sock, coordinator.sock). Access control is the file
 * system: the socket is created mode 0660 inside a directory only the
 * service user (and its group) can enter, so there is no network port and
 * no password. The protocol is one-shot: a client connects, the daemon
 * writes one JSON document (the render callback's text) and closes. The
 * daemon never reads from the client, so a client can make it do nothing
 * but render. `sdefed-agent status` and `sdefed-coordinator status` are the
 * clients (ctl_fetch). The serving process must ignore SIGPIPE (both
 * daemons do): a client that leaves early is then just EPIPE.
 *
 * Also here: the certificate expiry check both daemons log and report.
 */
#ifndef SDEFED_CTL_H
#define SDEFED_CTL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <uv.h>

#include "sdefed/err.h"

/* Largest status document served or accepted (bytes). */
#define CTL_MAX_DOC (1024 * 1024)
/* Simultaneous status clients; more are accepted and closed at once. */
#define CTL_MAX_CLIENTS 16

/* Returns a malloc'd NUL-terminated document (freed by ctl), or NULL when
 * out of memory (the client is then closed without an answer). */
typedef char *(*ctl_render_fn)(void *arg);

typedef struct ctl_server {
    uv_pipe_t pipe;
    char path[108];
    ctl_render_fn render;
    void *arg;
    unsigned n_clients;
    int listening;
} ctl_server;

/* Listen on path (an old socket file left by a crash is replaced; any other
 * kind of file there is an error). s must stay valid until ctl_close's
 * close callback has run (the loop has run after ctl_close). Returns 0,
 * SDF_EINVAL (path too long for a Unix socket) or SDF_EIO; err says why. */
int ctl_listen(ctl_server *s, uv_loop_t *loop, const char *path, ctl_render_fn render,
               void *arg, char *err, size_t errlen) SDF_MUSTCHECK;

/* Stop listening and remove the socket file (idempotent; no-op when never
 * listening). Clients being served finish on their own. */
void ctl_close(ctl_server *s);

/* Client: connect to path, read the whole document (at most CTL_MAX_DOC
 * bytes, waiting at most timeout_ms in total) into a malloc'd string
 * *out the caller frees. Returns 0, SDF_ECLOSED (nobody listening: the
 * daemon is not running), SDF_EAUTH (permission denied), SDF_ETIMEOUT,
 * SDF_EOVERFLOW, SDF_ENOMEM or SDF_EIO; err says why. Blocking. */
int ctl_fetch(const char *path, unsigned timeout_ms, char **out, char *err, size_t errlen)
    SDF_MUSTCHECK;

/* Read a PEM certificate file and set *not_after (Unix time) to the end of
 * its validity. Returns 0, SDF_EIO (cannot read) or SDF_EINVAL (not a
 * certificate). */
int ctl_cert_not_after(const char *path, int64_t *not_after) SDF_MUSTCHECK;

/* Days from now until not_after, rounded down (negative once expired). */
long ctl_days_left(int64_t not_after, time_t now);

/* "2026-11-23T14:00:00Z" for t, into out (at least 21 bytes). */
void ctl_iso_time(time_t t, char *out, size_t len);

/* Status JSON for one certificate file: {"file", "not_after", "days_left",
 * "warning": days_left < warn_days} or {"file", "error"}. New reference,
 * NULL on ENOMEM. Shared by both daemons' status documents. */
json_t *ctl_cert_json(const char *path, unsigned warn_days, time_t now);

#endif
