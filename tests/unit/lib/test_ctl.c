/* tests/unit/lib/test_ctl.c — the status socket: a client gets the rendered
 * document; the socket is 0660; a stale socket file is replaced but a live
 * one or a regular file is not; fetching from nobody says "not running";
 * expiry arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "sdefed/ctl.h"

static int renders;

static char *render(void *arg)
{
    renders++;
    return strdup((const char *)arg);
}

typedef struct fetch_job {
    const char *path;
    int rc;
    char *doc;
    uv_async_t *done;
} fetch_job;

static void fetch_thread(void *arg)
{
    fetch_job *j = arg;
    char err[256];
    j->rc = ctl_fetch(j->path, 5000, &j->doc, err, sizeof err);
    uv_async_send(j->done);
}

static ctl_server *g_server;

static void done_cb(uv_async_t *a)
{
    ctl_close(g_server);
    uv_close((uv_handle_t *)a, NULL);
}

static void sock_path(char *out, size_t len, const char *tag)
{
    snprintf(out, len, "/tmp/sdefed-ctl-%s-%d.sock", tag, (int)getpid());
}

static void test_serve_and_fetch(void **state)
{
    (void)state;
    char path[108];
    sock_path(path, sizeof path, "a");
    unlink(path);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    ctl_server s;
    char err[256];
    char doc[] = "{\"hello\": 1}";
    renders = 0;
    assert_int_equal(ctl_listen(&s, &loop, path, render, doc, err, sizeof err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);

    /* A second server on the same live path is refused. */
    ctl_server s2;
    assert_int_equal(ctl_listen(&s2, &loop, path, render, doc, err, sizeof err), SDF_EIO);
    assert_non_null(strstr(err, "another daemon"));

    uv_async_t done;
    uv_async_init(&loop, &done, done_cb);
    g_server = &s;
    fetch_job j = { .path = path, .done = &done };
    uv_thread_t t;
    assert_int_equal(uv_thread_create(&t, fetch_thread, &j), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_thread_join(&t);
    assert_int_equal(j.rc, 0);
    assert_string_equal(j.doc, doc);
    assert_true(renders >= 1);      /* the refused second server's probe may count too */
    free(j.doc);
    /* ctl_close removed the socket file and the loop closes cleanly. */
    assert_int_not_equal(access(path, F_OK), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_not_running(void **state)
{
    (void)state;
    char path[108], err[256];
    sock_path(path, sizeof path, "b");
    unlink(path);
    char *doc = (char *)1;
    assert_int_equal(ctl_fetch(path, 1000, &doc, err, sizeof err), SDF_ECLOSED);
    assert_null(doc);
    assert_non_null(strstr(err, "not running"));
    /* A stale socket (bound, never listening) is "not running" too ... */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    assert_int_equal(ctl_fetch(path, 1000, &doc, err, sizeof err), SDF_ECLOSED);
    /* ... and a server replaces it. */
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    ctl_server s;
    assert_int_equal(ctl_listen(&s, &loop, path, render, "x", err, sizeof err), 0);
    ctl_close(&s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_refuses_other_files(void **state)
{
    (void)state;
    char path[108], err[256];
    sock_path(path, sizeof path, "c");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    ctl_server s;
    assert_int_equal(ctl_listen(&s, &loop, path, render, "x", err, sizeof err), SDF_EIO);
    assert_int_equal(access(path, F_OK), 0);     /* not deleted */
    unlink(path);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    assert_int_equal(ctl_listen(&s, &loop, longp, render, "x", err, sizeof err), SDF_EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_cert_and_days(void **state)
{
    (void)state;
    int64_t na;
    assert_int_equal(ctl_cert_not_after("/nonexistent/cert.pem", &na), SDF_EIO);
    char path[108];
    sock_path(path, sizeof path, "d");
    FILE *f = fopen(path, "w");
    fputs("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", f);
    fclose(f);
    assert_int_equal(ctl_cert_not_after(path, &na), SDF_EINVAL);
    unlink(path);
    assert_int_equal(ctl_days_left(1000 + 86400 * 30, 1000), 30);
    assert_int_equal(ctl_days_left(1000 + 86400 * 30 - 1, 1000), 29);
    assert_int_equal(ctl_days_left(1000, 1000), 0);
    assert_int_equal(ctl_days_left(999, 1000), -1);
    assert_int_equal(ctl_days_left(1000 - 86400, 1000), -1);
    assert_int_equal(ctl_days_left(1000 - 86401, 1000), -2);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);       /* as the daemons do: a client that left is EPIPE */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_and_fetch),
        cmocka_unit_test(test_not_running),
        cmocka_unit_test(test_refuses_other_files),
        cmocka_unit_test(test_cert_and_days),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
