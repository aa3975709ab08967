/* include/sdefed/log.h — levelled logging to stderr (journald picks it up).
 *
 * Lines look like "<3>sdefed-agent[site-a]: message" when stderr is not a
 * terminal (the <N> prefix is the syslog priority journald understands) and
 * "sdefed-agent[site-a] error: message" on a terminal. Never pass data
 * values, rows or identifiers to these functions: only counts of things,
 * names of sites, query ids and reasons.
 */
#ifndef SDEFED_LOG_H
#define SDEFED_LOG_H

enum sdf_log_level {
    SDF_LOG_ERROR = 3,
    SDF_LOG_WARN = 4,
    SDF_LOG_INFO = 6,
    SDF_LOG_DEBUG = 7,
};

/* Set the program name and context tag (e.g. the site id; may be NULL).
 * Both strings are copied. */
void log_init(const char *prog, const char *context);

void log_set_level(enum sdf_log_level level);
enum sdf_log_level log_get_level(void);

/* Parse "error|warn|info|debug". Returns 0 and sets *out, or SDF_EINVAL. */
int log_level_parse(const char *s, enum sdf_log_level *out);

void log_msg(enum sdf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(SDF_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(SDF_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(SDF_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(SDF_LOG_DEBUG, __VA_ARGS__)

#endif
