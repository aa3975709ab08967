/* deploy/synth/synth_main.c — command line of sdefed-synth, the synthetic OMOP site generator.
 *
 *   sdefed-synth --out FILE.sqlite --seed N --persons P [--profile NAME] [--force]
 *
 * Writes FILE.sqlite.tmp, then moves it into place only when complete: with
 * --force by rename(2) over any existing file, otherwise by link(2), which
 * fails rather than replace a file that appeared meanwhile. The same seed,
 * person count and profile always give byte-identical files. stderr gets one
 * summary line on success or one error line on failure. Exit status: 0 done,
 * 1 could not generate (existing output, I/O or database error), 2 bad
 * arguments.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "synth.h"

#define PROG          "sdefed-synth"
#define PERSONS_MAX   10000000LL
#define PATH_CAP      4096

struct options {
    const char *out;
    const char *profile;
    uint64_t seed;
    long long persons;
    int have_seed, force;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " PROG " --out FILE.sqlite --seed N --persons P [--profile NAME] [--force]\n"
            "  --out FILE      database to write (refused if it exists, unless --force)\n"
            "  --seed N        0..18446744073709551615; same seed, same site\n"
            "  --persons P     1..%lld\n"
            "  --profile NAME  site case mix (default chosen from the seed):\n",
            PERSONS_MAX);
    for (size_t i = 0; i < profile_count(); i++)
        fprintf(f, "                    %-15s %s\n", profile_at(i)->name,
                profile_at(i)->description);
    fprintf(f, "  --force         replace an existing FILE\n");
}

__attribute__((format(printf, 1, 2)))
static int bad_args(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, PROG ": ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, struct options *o)
{
    memset(o, 0, sizeof *o);
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *val = NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(arg, "--force") == 0) {
            o->force = 1;
            continue;
        }
        static const char *const with_value[] = { "--out", "--seed", "--persons", "--profile" };
        size_t k, n = sizeof with_value / sizeof with_value[0];
        for (k = 0; k < n; k++) {
            size_t len = strlen(with_value[k]);
            if (strncmp(arg, with_value[k], len) == 0 && (arg[len] == '\0' || arg[len] == '=')) {
                if (arg[len] == '=')
                    val = arg + len + 1;
                else if (i + 1 < argc)
                    val = argv[++i];
                else
                    return bad_args("%s needs a value", with_value[k]);
                break;
            }
        }
        if (k == n)
            return bad_args("unknown argument '%s'", arg);
        if (k == 0) {
            if (o->out)
                return bad_args("%s given twice", "--out");
            if (!*val || strlen(val) > PATH_CAP - 8)
                return bad_args("%s needs a file name of reasonable length", "--out");
            o->out = val;
        } else if (k == 1) {
            if (o->have_seed)
                return bad_args("%s given twice", "--seed");
            if (parse_u64(val, UINT64_MAX, &o->seed))
                return bad_args("--seed must be an integer from 0 to 18446744073709551615, not '%s'", val);
            o->have_seed = 1;
        } else if (k == 2) {
            uint64_t v;
            if (o->persons)
                return bad_args("%s given twice", "--persons");
            if (parse_u64(val, (uint64_t)PERSONS_MAX, &v) || v == 0)
                return bad_args("--persons must be an integer from 1 to 10000000, not '%s'", val);
            o->persons = (long long)v;
        } else {
            if (o->profile)
                return bad_args("%s given twice", "--profile");
            if (!profile_find(val))
                return bad_args("unknown profile '%s'", val);
            o->profile = val;
        }
    }
    if (!o->out)
        return bad_args("%s is required", "--out");
    if (!o->have_seed)
        return bad_args("%s is required", "--seed");
    if (!o->persons)
        return bad_args("%s is required", "--persons");
    return -1;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Move the finished temporary file into place. Returns 0 or -1 (errno set). */
static int publish(const char *tmp, const char *out, int force)
{
    if (force)
        return rename(tmp, out);
    if (link(tmp, out) == 0)
        return unlink(tmp);
    if (errno != EPERM && errno != ENOTSUP && errno != EXDEV)
        return -1;
    /* No hard links here (some filesystems): best effort no-clobber. */
    struct stat sb;
    if (stat(out, &sb) == 0) {
        errno = EEXIST;
        return -1;
    }
    return rename(tmp, out);
}

static int generate(const struct options *o, const struct synth_profile *p,
                    const char *tmp, uint64_t *events)
{
    struct synth_db w;
    int n_sites = (int)(o->persons / 4000 + 2);
    if (n_sites > 50)
        n_sites = 50;
    int rc = db_open(&w, tmp);
    if (rc == 0)
        rc = db_write_site(&w, p, o->seed, n_sites);
    for (long long pid = 1; rc == 0 && pid <= o->persons; pid++)
        rc = person_generate(&w, p, o->seed, pid, n_sites);
    if (rc) {
        db_abort(&w);
        return rc;
    }
    *events = 0;
    for (int i = ST_VISIT; i < ST__COUNT; i++)
        *events += w.rows[i];
    return db_finish(&w);
}

int main(int argc, char **argv)
{
    struct options o;
    int st = parse_args(argc, argv, &o);
    if (st >= 0)
        return st;
    const struct synth_profile *p = o.profile ? profile_find(o.profile) : profile_default(o.seed);

    struct stat sb;
    if (!o.force && stat(o.out, &sb) == 0) {
        fprintf(stderr, PROG ": %s exists; not overwriting it without --force\n", o.out);
        return 1;
    }
    char tmp[PATH_CAP];
    snprintf(tmp, sizeof tmp, "%s.tmp", o.out);
    if (unlink(tmp) != 0 && errno != ENOENT) {
        fprintf(stderr, PROG ": cannot remove stale %s: %s\n", tmp, strerror(errno));
        return 1;
    }

    double t0 = now_seconds();
    uint64_t events = 0;
    int rc = generate(&o, p, tmp, &events);
    if (rc) {
        fprintf(stderr, PROG ": cannot write %s: %s\n", tmp, sdf_strerror(rc));
        unlink(tmp);
        return 1;
    }
    if (publish(tmp, o.out, o.force) != 0) {
        fprintf(stderr, PROG ": cannot move %s to %s: %s\n", tmp, o.out, strerror(errno));
        unlink(tmp);
        return 1;
    }
    fprintf(stderr, PROG ": %lld persons, %llu events, %.2f s (profile %s, seed %llu) -> %s\n",
            o.persons, (unsigned long long)events, now_seconds() - t0, p->name,
            (unsigned long long)o.seed, o.out);
    return 0;
}
