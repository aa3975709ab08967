/* include/sdefed/err.h — the one table of sdefed error codes.
 *
 * Every function that can fail returns 0 on success or a negative SDF_E*
 * code from this table (libuv style). The X-macro yields the enum, the
 * symbolic name and the human message, so they can never drift apart.
 * Messages never contain data values: they are safe to log and to send.
 */
#ifndef SDEFED_ERR_H
#define SDEFED_ERR_H

#define SDF_ERRNO_MAP(X)                                              \
    X(NOMEM,          "out of memory")                                \
    X(INVAL,          "invalid argument")                             \
    X(FRAME_TOO_BIG,  "frame exceeds size limit")                     \
    X(FRAME_MALFORMED,"malformed frame")                              \
    X(PROTO,          "protocol violation")                           \
    X(VERSION,        "incompatible protocol version")                \
    X(TLS,            "TLS failure")                                  \
    X(AUTH,           "peer not authorised")                          \
    X(CONFIG,         "invalid configuration")                        \
    X(SPEC,           "invalid query spec")                           \
    X(DB,             "database error")                               \
    X(TIMEOUT,        "deadline exceeded")                            \
    X(REFUSED,        "refused")                                      \
    X(IO,             "I/O error")                                    \
    X(CLOSED,         "connection closed")                            \
    X(NOTFOUND,       "not found")                                    \
    X(OVERFLOW,       "buffer limit exceeded")

enum sdf_err_seq {
#define SDF_X(name, msg) SDF_ERRSEQ_##name,
    SDF_ERRNO_MAP(SDF_X)
#undef SDF_X
    SDF_ERRSEQ__COUNT
};

enum sdf_err {
    SDF_OK = 0,
#define SDF_X(name, msg) SDF_E##name = -(SDF_ERRSEQ_##name + 1),
    SDF_ERRNO_MAP(SDF_X)
#undef SDF_X
};

/* Human message for an error code ("unknown error" for anything else).
 * Returns a static string. */
const char *sdf_strerror(int err);

/* Symbolic name ("SDF_ETIMEOUT"), static string. */
const char *sdf_err_name(int err);

#define SDF_MUSTCHECK __attribute__((warn_unused_result))

#endif
