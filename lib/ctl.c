/* lib/ctl.c — serve and fetch a daemon's status over a local Unix socket.
 *
 * The daemon side (ctl_listen) is a libuv pipe server that writes one
 * rendered document per connection and closes; the client side (ctl_fetch)
 * is a plain blocking socket used by the `status` commands. See ctl.h.
 */
#include "sdefed/ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "sdefed/log.h"

typedef struct ctl_client {
    uv_pipe_t pipe;
    uv_write_t req;
    ctl_server *server;
    char *doc;
} ctl_client;

static void client_closed_cb(uv_handle_t *h)
{
    ctl_client *c = h->data;
    c->server->n_clients--;
    free(c->doc);
    free(c);
}

static void client_written_cb(uv_write_t *req, int status)
{
    ctl_client *c = req->data;
    if (status < 0)
        log_debug("status client went away: %s", uv_strerror(status));
    uv_close((uv_handle_t *)&c->pipe, client_closed_cb);
}

static void on_client(uv_stream_t *server, int status)
{
    ctl_server *s = server->data;
    if (status < 0) {
        log_warn("status socket: accept: %s", uv_strerror(status));
        return;
    }
    ctl_client *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("status socket: out of memory");
        return;
    }
    c->server = s;
    s->n_clients++;
    uv_pipe_init(server->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->req.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        uv_close((uv_handle_t *)&c->pipe, client_closed_cb);
        return;
    }
    if (s->n_clients > CTL_MAX_CLIENTS) {
        log_warn("status socket: too many clients, closing one");
        uv_close((uv_handle_t *)&c->pipe, client_closed_cb);
        return;
    }
    c->doc = s->render(s->arg);
    size_t len = c->doc ? strlen(c->doc) : 0;
    if (!c->doc || len > CTL_MAX_DOC) {
        log_error("status socket: cannot render the status document");
        uv_close((uv_handle_t *)&c->pipe, client_closed_cb);
        return;
    }
    uv_buf_t buf = uv_buf_init(c->doc, (unsigned)len);
    if (uv_write(&c->req, (uv_stream_t *)&c->pipe, &buf, 1, client_written_cb) != 0)
        uv_close((uv_handle_t *)&c->pipe, client_closed_cb);
}

int ctl_listen(ctl_server *s, uv_loop_t *loop, const char *path, ctl_render_fn render,
               void *arg, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (strlen(path) >= sizeof s->path) {
        snprintf(err, errlen, "status socket path %s is longer than %zu bytes", path,
                 sizeof s->path - 1);
        return SDF_EINVAL;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "status socket %s: exists and is not a socket", path);
            return SDF_EIO;
        }
        /* Left behind by a previous run (a running daemon would answer). */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            close(fd);
            snprintf(err, errlen, "status socket %s: another daemon is answering on it", path);
            return SDF_EIO;
        }
        if (fd >= 0)
            close(fd);
        unlink(path);
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    s->render = render;
    s->arg = arg;
    uv_pipe_init(loop, &s->pipe, 0);
    s->pipe.data = s;
    int rc = uv_pipe_bind(&s->pipe, path);
    if (rc == 0 && chmod(path, 0660) != 0)
        rc = uv_translate_sys_error(errno);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->pipe, 16, on_client);
    if (rc != 0) {
        snprintf(err, errlen, "status socket %s: %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&s->pipe, NULL);
        unlink(path);
        s->path[0] = '\0';
        return SDF_EIO;
    }
    s->listening = 1;
    return 0;
}

void ctl_close(ctl_server *s)
{
    if (!s->listening)
        return;
    s->listening = 0;
    if (!uv_is_closing((uv_handle_t *)&s->pipe))
        uv_close((uv_handle_t *)&s->pipe, NULL);
    unlink(s->path);
}

static long ms_left(const struct timespec *end)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)((end->tv_sec - now.tv_sec) * 1000 + (end->tv_nsec - now.tv_nsec) / 1000000);
}

int ctl_fetch(const char *path, unsigned timeout_ms, char **out, char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path) {
        snprintf(err, errlen, "%s: path too long for a Unix socket", path);
        return SDF_EINVAL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return SDF_EIO;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        close(fd);
        if (e == EACCES || e == EPERM) {
            snprintf(err, errlen, "%s: permission denied (run as the service user or a member "
                     "of its group)", path);
            return SDF_EAUTH;
        }
        if (e == ENOENT || e == ECONNREFUSED) {
            snprintf(err, errlen, "%s: the daemon is not running (%s)", path, strerror(e));
            return SDF_ECLOSED;
        }
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return SDF_EIO;
    }
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += timeout_ms / 1000;
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) {
        end.tv_sec++;
        end.tv_nsec -= 1000000000L;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    int rc = 0;
    if (!buf)
        rc = SDF_ENOMEM;
    while (rc == 0) {
        long left = ms_left(&end);
        if (left <= 0) {
            snprintf(err, errlen, "%s: no answer within %u ms", path, timeout_ms);
            rc = SDF_ETIMEOUT;
            break;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            rc = SDF_EIO;
            break;
        }
        if (pr == 0)
            continue;
        if (len + 1 >= cap) {
            if (cap > CTL_MAX_DOC) {
                snprintf(err, errlen, "%s: status document larger than %d bytes", path,
                         CTL_MAX_DOC);
                rc = SDF_EOVERFLOW;
                break;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                rc = SDF_ENOMEM;
                break;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "%s: read: %s", path, strerror(errno));
            rc = SDF_EIO;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (rc == SDF_ENOMEM)
        snprintf(err, errlen, "out of memory");
    if (rc != 0) {
        free(buf);
        return rc;
    }
    if (len == 0) {
        free(buf);
        snprintf(err, errlen, "%s: the daemon closed without an answer", path);
        return SDF_EIO;
    }
    buf[len] = '\0';
    *out = buf;
    return 0;
}

int ctl_cert_not_after(const char *path, int64_t *not_after)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return SDF_EIO;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x)
        return SDF_EINVAL;
    struct tm tm;
    int ok = ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
    X509_free(x);
    if (ok != 1)
        return SDF_EINVAL;
    *not_after = (int64_t)timegm(&tm);
    return 0;
}

long ctl_days_left(int64_t not_after, time_t now)
{
    int64_t d = not_after - (int64_t)now;
    /* floor division */
    return (long)(d >= 0 ? d / 86400 : -((-d + 86399) / 86400));
}

void ctl_iso_time(time_t t, char *out, size_t len)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

json_t *ctl_cert_json(const char *path, unsigned warn_days, time_t now)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "file", json_string(path));
    int64_t na;
    if (ctl_cert_not_after(path, &na) != 0) {
        json_object_set_new(o, "error", json_string("cannot read the certificate"));
        return o;
    }
    char when[32];
    ctl_iso_time((time_t)na, when, sizeof when);
    long days = ctl_days_left(na, now);
    json_object_set_new(o, "not_after", json_string(when));
    json_object_set_new(o, "days_left", json_integer(days));
    json_object_set_new(o, "warning", json_boolean(days < (long)warn_days));
    return o;
}
