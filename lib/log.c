/* lib/log.c — levelled logging to stderr; see include/sdefed/log.h. */
#include "sdefed/log.h"
#include "sdefed/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static char log_prog[64] = "sdefed";
static char log_ctx[96];
static enum sdf_log_level log_level = SDF_LOG_INFO;

void log_init(const char *prog, const char *context)
{
    snprintf(log_prog, sizeof log_prog, "%s", prog ? prog : "sdefed");
    if (context && *context)
        snprintf(log_ctx, sizeof log_ctx, "[%s]", context);
    else
        log_ctx[0] = '\0';
}

void log_set_level(enum sdf_log_level level) { log_level = level; }
enum sdf_log_level log_get_level(void) { return log_level; }

int log_level_parse(const char *s, enum sdf_log_level *out)
{
    static const struct { const char *name; enum sdf_log_level level; } map[] = {
        { "error", SDF_LOG_ERROR }, { "warn", SDF_LOG_WARN },
        { "warning", SDF_LOG_WARN }, { "info", SDF_LOG_INFO },
        { "debug", SDF_LOG_DEBUG },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        if (strcasecmp(s, map[i].name) == 0) {
            *out = map[i].level;
            return 0;
        }
    }
    return SDF_EINVAL;
}

static const char *level_word(enum sdf_log_level l)
{
    switch (l) {
    case SDF_LOG_ERROR: return "error";
    case SDF_LOG_WARN: return "warning";
    case SDF_LOG_INFO: return "info";
    default: return "debug";
    }
}

void log_msg(enum sdf_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One write per line so lines from threads never interleave. */
    char line[1200];
    int n;
    if (isatty(STDERR_FILENO))
        n = snprintf(line, sizeof line, "%s%s %s: %s\n", log_prog, log_ctx,
                     level_word(level), msg);
    else
        n = snprintf(line, sizeof line, "<%d>%s%s: %s\n", (int)level, log_prog,
                     log_ctx, msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = (int)sizeof line - 1;
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}
