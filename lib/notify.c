/* lib/notify.c — the sd_notify datagram protocol, without libsystemd.
 *
 * systemd's Type=notify units learn that a daemon is ready, reloading or
 * stopping from one datagram per state change on $NOTIFY_SOCKET. Both
 * daemons call this at start-up, around SIGHUP reloads and when draining;
 * see notify.h for the contract.
 */
#include "sdefed/notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int notify_send(const char *state)
{
    if (!state || !*state)
        return SDF_EINVAL;
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    size_t len = strlen(path);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if ((path[0] != '/' && path[0] != '@') || len < 2 || len >= sizeof sa.sun_path)
        return SDF_EINVAL;
    memcpy(sa.sun_path, path, len);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';           /* abstract namespace: no trailing NUL */
    else
        salen++;                         /* include the path's NUL */

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return SDF_EIO;
    ssize_t n;
    do {
        n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
    } while (n < 0 && errno == EINTR);
    close(fd);
    return n == (ssize_t)strlen(state) ? 1 : SDF_EIO;
}

int notify_status(const char *fmt, ...)
{
    char buf[7 + 201];
    memcpy(buf, "STATUS=", 7);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + 7, sizeof buf - 7, fmt, ap);
    va_end(ap);
    if (n < 0)
        return SDF_EINVAL;
    for (char *p = buf + 7; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return notify_send(buf);
}
