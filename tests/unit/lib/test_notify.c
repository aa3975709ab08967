/* tests/unit/lib/test_notify.c — sd_notify datagrams reach the socket named
 * by $NOTIFY_SOCKET (file path and abstract "@name"), and nothing happens
 * without it or with a malformed address. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "sdefed/notify.h"

/* Bind a datagram socket at path ("@x" = abstract); returns the fd. */
static int bind_dgram(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t len = strlen(path);
    memcpy(sa.sun_path, path, len);
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';
    else
        salen++;
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, salen), 0);
    return fd;
}

static void recv_text(int fd, char *buf, size_t len)
{
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(fd, buf, len - 1, 0);
    assert_true(n > 0);
    buf[n] = '\0';
}

static void test_path_socket(void **state)
{
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/sdefed-notify-%d.sock", (int)getpid());
    unlink(path);
    int fd = bind_dgram(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(notify_send("READY=1"), 1);
    char buf[512];
    recv_text(fd, buf, sizeof buf);
    assert_string_equal(buf, "READY=1");
    assert_int_equal(notify_status("draining %d queries\nnow", 3), 1);
    recv_text(fd, buf, sizeof buf);
    assert_string_equal(buf, "STATUS=draining 3 queries now");
    close(fd);
    unlink(path);
    /* Nobody listening any more: an error, never a crash or a block. */
    assert_int_equal(notify_send("STOPPING=1"), SDF_EIO);
    unsetenv("NOTIFY_SOCKET");
}

static void test_abstract_socket(void **state)
{
    (void)state;
    char name[64];
    snprintf(name, sizeof name, "@sdefed-notify-test-%d", (int)getpid());
    int fd = bind_dgram(name);
    setenv("NOTIFY_SOCKET", name, 1);
    assert_int_equal(notify_send("RELOADING=1\nMONOTONIC_USEC=1"), 1);
    char buf[512];
    recv_text(fd, buf, sizeof buf);
    assert_string_equal(buf, "RELOADING=1\nMONOTONIC_USEC=1");
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_not_under_systemd(void **state)
{
    (void)state;
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(notify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(notify_send("READY=1"), 0);
    unsetenv("NOTIFY_SOCKET");
}

static void test_bad_input(void **state)
{
    (void)state;
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    assert_int_equal(notify_send("READY=1"), SDF_EINVAL);
    setenv("NOTIFY_SOCKET", "@", 1);
    assert_int_equal(notify_send("READY=1"), SDF_EINVAL);
    char longp[300];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    setenv("NOTIFY_SOCKET", longp, 1);
    assert_int_equal(notify_send("READY=1"), SDF_EINVAL);
    setenv("NOTIFY_SOCKET", "/tmp/x", 1);
    assert_int_equal(notify_send(""), SDF_EINVAL);
    assert_int_equal(notify_send(NULL), SDF_EINVAL);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_not_under_systemd),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
