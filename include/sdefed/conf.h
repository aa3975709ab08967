/* include/sdefed/conf.h — table-driven INI configuration loading.
 *
 * Each daemon describes its fixed keys in one table (section, key, type,
 * where it goes, default, bounds, required) and hands named sections such as
 * "[dataset omop]" or "[site site-a]" to a callback. Files are parsed with
 * inih into a caller-provided fresh struct: the caller swaps it in only when
 * conf_load() succeeds, so a failed reload leaves the running config alone.
 * Errors read "FILE:LINE: reason" (or "FILE: reason" for missing keys).
 */
#ifndef SDEFED_CONF_H
#define SDEFED_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "sdefed/err.h"

typedef enum {
    CONF_STR,       /* char[size]; value must fit */
    CONF_PATH,      /* char[size]; relative paths resolve against the file's dir */
    CONF_UINT,      /* unsigned; min..max */
    CONF_SIZE,      /* size_t; min..max */
    CONF_INT64,     /* int64_t; min..max */
    CONF_BOOL,      /* bool; true|false|yes|no|on|off|1|0 */
    CONF_SECONDS_MS,/* unsigned milliseconds, written in the file as seconds (min..max seconds) */
    CONF_HOSTPORT,  /* char[size] host at offset, int port at offset2 */
    CONF_LOGLEVEL,  /* enum sdf_log_level */
} conf_type;

typedef struct conf_key {
    const char *section;
    const char *name;
    conf_type type;
    size_t offset;          /* into the target struct */
    size_t size;            /* for strings: buffer size */
    const char *def;        /* default as text, NULL = none */
    long long min, max;     /* numeric bounds (inclusive) */
    bool required;
    size_t offset2;         /* CONF_HOSTPORT: offset of the int port */
} conf_key;

/* Called for keys in sections not covered by the table, with the full
 * section name ("dataset omop"), or with key == NULL once when such a
 * section starts. Return 0 or SDF_ECONFIG after writing a reason (no
 * file/line prefix) into err. */
typedef int (*conf_section_fn)(void *target, const char *section, const char *key,
                               const char *value, const char *config_dir,
                               char *err, size_t errlen);

/* Apply defaults, parse path, check required keys. `other` may be NULL
 * (then any unknown section/key is an error). Returns 0 or SDF_ECONFIG. */
int conf_load(const char *path, const conf_key *keys, size_t n_keys, void *target,
              conf_section_fn other, char *err, size_t errlen) SDF_MUSTCHECK;

/* Helpers for section callbacks. */
int conf_parse_bool(const char *s, bool *out);
int conf_parse_hostport(const char *s, char *host, size_t hostlen, int *port);
/* Resolve a possibly relative path against dir into out (PATH_MAX). */
int conf_resolve_path(const char *dir, const char *value, char *out, size_t outlen);
/* Identifier check for site/analyst/dataset/project names: [A-Za-z0-9._-]{1,63}. */
bool conf_valid_name(const char *s);

#endif
