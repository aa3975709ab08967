/* include/sdefed/notify.h — tell systemd how a daemon is doing (sd_notify).
 *
 * A unit with Type=notify starts the daemon with $NOTIFY_SOCKET naming a
 * Unix datagram socket (a path, or "@name" for the abstract namespace).
 * The daemon sends newline-separated assignments such as "READY=1",
 * "RELOADING=1", "STOPPING=1" or "STATUS=free text". This is the whole
 * protocol we need; it is implemented here so that sdefed does not depend
 * on libsystemd. Outside systemd (no $NOTIFY_SOCKET) every call is a no-op.
 */
#ifndef SDEFED_NOTIFY_H
#define SDEFED_NOTIFY_H

#include "sdefed/err.h"

/* Send `state` (e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET.
 * Returns 1 when sent, 0 when $NOTIFY_SOCKET is unset or empty (not under
 * systemd: nothing to do), SDF_EINVAL for a malformed socket address or
 * state (NULL, empty), or SDF_EIO when the datagram could not be sent.
 * Never blocks; never changes the environment. */
int notify_send(const char *state);

/* notify_send() of "STATUS=" plus printf-style text (truncated to 200
 * bytes; newlines are replaced by spaces). Same return values. */
int notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
