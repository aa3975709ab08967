/* coordinator/cli/monitor_cmd.c — `sdefed monitor ...` and `sdefed alerts` (issue 6).
 *
 *   sdefed [--config FILE] monitor add SPEC.json --every DURATION
 *          [--test maxsprt|cusum] [--expected RATE] [--alpha 0.05] [--length EVENTS]
 *   sdefed [--config FILE] monitor add VALIDATE_SPEC.json --every DURATION
 *          --period month|quarter|year --from YYYY-MM-DD [--to YYYY-MM-DD]
 *          [--auc-min X] [--auc-max X] [--slope-min X] [--slope-max X]   (drift)
 *   sdefed [--config FILE] monitor list
 *   sdefed [--config FILE] monitor show ID
 *   sdefed [--config FILE] monitor rm ID
 *   sdefed [--config FILE] alerts
 *   options: --format table|json|csv
 *
 * DURATION: a number with an optional unit ms, s (default), m, h or d. The
 * coordinator answers with JSON (MonitorReply); --format json prints it,
 * table and csv render the interesting columns. See docs/surveillance.md.
 */
#include "cli/monitor_cmd.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/client.h"
#include "cli/output.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

#define MON_WAIT_MS 30000


static void musage(FILE *f)
{
    fprintf(f, "usage: sdefed [--config FILE] monitor add SPEC.json --every DURATION\n"
               "                 [--test maxsprt|cusum] [--expected RATE] [--alpha A] "
               "[--length EVENTS]\n"
               "       sdefed [--config FILE] monitor add VALIDATE_SPEC.json --every DURATION\n"
               "                 --period month|quarter|year --from DATE [--to DATE]\n"
               "                 [--auc-min X] [--auc-max X] [--slope-min X] [--slope-max X]\n"
               "       sdefed [--config FILE] monitor list | show ID | rm ID\n"
               "       sdefed [--config FILE] alerts\n"
               "DURATION: number with unit ms, s, m, h or d (default s); RATE: events per "
               "1,000 person-years\n"
               "options: --format table|json|csv\n");
}

int monitor_parse_duration(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0.0) || !isfinite(v))
        return SDF_EINVAL;
    double mult;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60e3;
    else if (strcmp(end, "h") == 0)
        mult = 3600e3;
    else if (strcmp(end, "d") == 0)
        mult = 86400e3;
    else
        return SDF_EINVAL;
    double r = v * mult;
    if (r < 1.0 || r > 1e13)
        return SDF_EINVAL;
    *ms = (uint64_t)llround(r);
    return 0;
}

static char *read_all(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(SPEC_MAX_JSON + 1);
    size_t n = buf ? fread(buf, 1, SPEC_MAX_JSON + 1, f) : 0;
    bool bad = !buf || ferror(f) || n > SPEC_MAX_JSON;
    if (f != stdin)
        fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: %s", path, !buf ? "out of memory" : "cannot read (or > 1 MiB)");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- rendering ---- */

static void text_of(json_t *v, char *buf, size_t len)
{
    if (!v || json_is_null(v))
        snprintf(buf, len, "-");
    else if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(buf, len, "%.3f", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(buf, len, "%s", json_is_true(v) ? "yes" : "no");
    else {
        char *t = json_dumps(v, JSON_COMPACT);
        snprintf(buf, len, "%s", t ? t : "?");
        free(t);
    }
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

#define MAX_COLS 12
#define CELL 96

/* Print rows (objects) of `a` with the given keys as a table or CSV. A key
 * "a.b" reads member b of member a. */
static void print_rows(json_t *a, const char *const *keys, size_t nk, bool csv)
{
    size_t w[MAX_COLS];
    char cell[CELL];
    for (size_t k = 0; k < nk; k++)
        w[k] = strlen(keys[k]);
    for (int pass = csv ? 1 : 0; pass < 2; pass++) {
        if (pass == 1) {
            for (size_t k = 0; k < nk; k++) {
                if (csv)
                    printf("%s%s", k ? "," : "", keys[k]);
                else
                    printf("%s%-*s", k ? "  " : "", (int)w[k], keys[k]);
            }
            fputs(csv ? "\r\n" : "\n", stdout);
        }
        for (size_t i = 0; i < json_array_size(a); i++) {
            json_t *o = json_array_get(a, i);
            for (size_t k = 0; k < nk; k++) {
                const char *dot = strchr(keys[k], '.');
                json_t *v;
                if (dot) {
                    char head[32];
                    snprintf(head, sizeof head, "%.*s", (int)(dot - keys[k]), keys[k]);
                    v = json_object_get(json_object_get(o, head), dot + 1);
                } else {
                    v = json_object_get(o, keys[k]);
                }
                text_of(v, cell, sizeof cell);
                if (pass == 0) {
                    if (strlen(cell) > w[k])
                        w[k] = strlen(cell);
                } else if (csv) {
                    bool q = strpbrk(cell, ",\"") != NULL;
                    printf("%s%s", k ? "," : "", q ? "\"" : "");
                    for (const char *p = cell; *p; p++)
                        printf(*p == '"' ? "\"\"" : "%c", *p);
                    printf("%s", q ? "\"" : "");
                } else {
                    printf("%s%-*s", k ? "  " : "", (int)w[k], cell);
                }
            }
            if (pass == 1)
                fputs(csv ? "\r\n" : "\n", stdout);
        }
    }
}

/* "a=3/2.1 b=0/1.9": each site's events / expected events of a look. */
static void look_sites_text(json_t *look)
{
    json_t *sites = json_object_get(look, "sites");
    char buf[CELL * 2] = "";
    for (size_t i = 0; i < json_array_size(sites); i++) {
        json_t *s = json_array_get(sites, i);
        size_t l = strlen(buf);
        json_t *e = json_object_get(s, "events");
        if (e)
            snprintf(buf + l, sizeof buf - l, "%s%s=%" JSON_INTEGER_FORMAT "/%.1f", l ? " " : "",
                     json_string_value(json_object_get(s, "site")), json_integer_value(e),
                     json_real_value(json_object_get(s, "expected")));
        else
            snprintf(buf + l, sizeof buf - l, "%s%s=%s", l ? " " : "",
                     json_string_value(json_object_get(s, "site")),
                     json_string_value(json_object_get(s, "status")));
    }
    json_object_set_new(look, "site_series", json_string(buf));
}

/* "auc>=0.7 slope 0.8..1.2": a drift monitor's band, as member band_text. */
static void band_text(json_t *mon)
{
    json_t *b = json_object_get(mon, "band");
    if (!json_is_object(b))
        return;
    char buf[CELL] = "";
    static const char *const names[] = { "auc", "slope" };
    for (int k = 0; k < 2; k++) {
        char lo_key[16], hi_key[16];
        snprintf(lo_key, sizeof lo_key, "%s_min", names[k]);
        snprintf(hi_key, sizeof hi_key, "%s_max", names[k]);
        json_t *lo = json_object_get(b, lo_key), *hi = json_object_get(b, hi_key);
        bool hl = json_is_number(lo), hh = json_is_number(hi);
        size_t l = strlen(buf);
        if (hl && hh)
            snprintf(buf + l, sizeof buf - l, "%s%s %g..%g", l ? " " : "", names[k],
                     json_number_value(lo), json_number_value(hi));
        else if (hl)
            snprintf(buf + l, sizeof buf - l, "%s%s>=%g", l ? " " : "", names[k],
                     json_number_value(lo));
        else if (hh)
            snprintf(buf + l, sizeof buf - l, "%s%s<=%g", l ? " " : "", names[k],
                     json_number_value(hi));
    }
    json_object_set_new(mon, "band_text", json_string(buf));
}

static double num_or_nan(json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Flatten a drift look for the table: auc, auc_ci, cal_slope, out_of_band
 * and "a=0.81/0.97 b=-": each site's AUC / calibration slope. */
static void drift_look_text(json_t *look)
{
    json_t *d = json_object_get(look, "drift");
    json_t *pooled = json_object_get(d, "pooled");
    char buf[CELL * 2] = "";
    json_object_set(look, "auc", json_object_get(pooled, "auc"));
    json_object_set(look, "cal_slope", json_object_get(pooled, "cal_slope"));
    double lo = num_or_nan(json_object_get(pooled, "auc_lo"));
    double hi = num_or_nan(json_object_get(pooled, "auc_hi"));
    if (isfinite(lo) && isfinite(hi)) {
        snprintf(buf, sizeof buf, "%.3f-%.3f", lo, hi);
        json_object_set_new(look, "auc_ci", json_string(buf));
    }
    buf[0] = '\0';
    json_t *out = json_object_get(d, "out_of_band");
    for (size_t i = 0; i < json_array_size(out); i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, sizeof buf - l, "%s%s", l ? "," : "",
                 json_string_value(json_array_get(out, i)));
    }
    json_object_set_new(look, "out_of_band", json_string(buf));
    buf[0] = '\0';
    json_t *sites = json_object_get(d, "sites");
    for (size_t i = 0; i < json_array_size(sites); i++) {
        json_t *s = json_array_get(sites, i);
        size_t l = strlen(buf);
        double a = num_or_nan(json_object_get(s, "auc"));
        double c = num_or_nan(json_object_get(s, "cal_slope"));
        const char *name = json_string_value(json_object_get(s, "site"));
        if (!json_is_true(json_object_get(s, "released")))
            snprintf(buf + l, sizeof buf - l, "%s%s=%s", l ? " " : "", name ? name : "?",
                     json_string_value(json_object_get(s, "status")));
        else if (isfinite(c))
            snprintf(buf + l, sizeof buf - l, "%s%s=%.3f/%.2f", l ? " " : "", name ? name : "?",
                     a, c);
        else
            snprintf(buf + l, sizeof buf - l, "%s%s=%.3f/-", l ? " " : "", name ? name : "?", a);
    }
    json_object_set_new(look, "site_series", json_string(buf));
}

static int render(const char *op, const char *text, out_format fmt)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j)
        return cli_die("the coordinator sent invalid JSON");
    if (fmt == OUT_JSON) {
        char *t = json_dumps(j, JSON_INDENT(2));
        if (t)
            puts(t);
        free(t);
        json_decref(j);
        return 0;
    }
    bool csv = fmt == OUT_CSV;
    if (strcmp(op, "list") == 0) {
        for (size_t i = 0; i < json_array_size(j); i++)
            band_text(json_array_get(j, i));
        static const char *const k[] = { "id", "kind", "state", "test", "every_ms",
                                         "next_period", "looks", "alerts", "observed",
                                         "expected", "threshold", "band_text" };
        print_rows(j, k, 12, csv);
    } else if (strcmp(op, "alerts") == 0) {
        static const char *const k[] = { "id", "alert.monitor", "alert.period", "alert.sites",
                                         "alert.test", "alert.metric", "alert.statistic",
                                         "alert.threshold", "alert.observed", "alert.expected" };
        print_rows(j, k, 10, csv);
    } else if (strcmp(op, "show") == 0 && json_object_get(j, "band")) {
        /* a drift monitor: pooled AUC (CI) and calibration slope per period */
        band_text(j);
        json_t *looks = json_object_get(j, "looks");
        for (size_t i = 0; i < json_array_size(looks); i++)
            drift_look_text(json_array_get(looks, i));
        if (!csv) {
            char a[CELL], b[CELL];
            text_of(json_object_get(j, "state"), a, sizeof a);
            text_of(json_object_get(j, "band_text"), b, sizeof b);
            printf("monitor %s: %s, drift by %s, band %s\n",
                   json_string_value(json_object_get(j, "id")), a,
                   json_string_value(json_object_get(j, "period")), b);
        }
        static const char *const k[] = { "period", "auc", "auc_ci", "cal_slope", "signal",
                                          "out_of_band", "partial", "site_series" };
        print_rows(looks, k, 8, csv);
        if (!csv && json_array_size(json_object_get(j, "alerts")) > 0)
            printf("%zu alert(s): see 'sdefed alerts'\n",
                   json_array_size(json_object_get(j, "alerts")));
    } else if (strcmp(op, "show") == 0) {
        json_t *looks = json_object_get(j, "looks");
        for (size_t i = 0; i < json_array_size(looks); i++)
            look_sites_text(json_array_get(looks, i));
        if (!csv) {
            char a[CELL], b[CELL], c[CELL], d[CELL];
            text_of(json_object_get(j, "state"), a, sizeof a);
            text_of(json_object_get(j, "test"), b, sizeof b);
            text_of(json_object_get(j, "threshold"), c, sizeof c);
            text_of(json_object_get(j, "expected_rate"), d, sizeof d);
            printf("monitor %s: %s, %s, threshold %s, expected rate %s per 1,000 "
                   "person-years (0: comparator)\n",
                   json_string_value(json_object_get(j, "id")), a, b, c, d);
        }
        static const char *const k[] = { "period", "events", "person_days", "expected",
                                         "statistic", "signal", "partial", "site_series" };
        print_rows(looks, k, 8, csv);
        if (!csv && json_array_size(json_object_get(j, "alerts")) > 0)
            printf("%zu alert(s): see 'sdefed alerts'\n",
                   json_array_size(json_object_get(j, "alerts")));
    } else if (strcmp(op, "add") == 0 && json_object_get(j, "band")) {
        band_text(j);
        printf("monitor %s added (drift by %s, band %s)\n",
               json_string_value(json_object_get(j, "id")),
               json_string_value(json_object_get(j, "period")),
               json_string_value(json_object_get(j, "band_text")));
    } else if (strcmp(op, "add") == 0) {
        char c[CELL];
        text_of(json_object_get(j, "threshold"), c, sizeof c);
        printf("monitor %s added (%s, threshold %s)\n",
               json_string_value(json_object_get(j, "id")),
               json_string_value(json_object_get(j, "test")), c);
    } else {
        printf("monitor %s removed\n", json_string_value(json_object_get(j, "id")));
    }
    json_decref(j);
    return 0;
}

int monitor_main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },  { "format", required_argument, NULL, 'f' },
        { "every", required_argument, NULL, 'e' },   { "test", required_argument, NULL, 'T' },
        { "expected", required_argument, NULL, 'x' }, { "alpha", required_argument, NULL, 'a' },
        { "length", required_argument, NULL, 'l' },  { "help", no_argument, NULL, 'h' },
        { "period", required_argument, NULL, 'P' },  { "from", required_argument, NULL, 'F' },
        { "to", required_argument, NULL, 'U' },      { "auc-min", required_argument, NULL, '1' },
        { "auc-max", required_argument, NULL, '2' }, { "slope-min", required_argument, NULL, '3' },
        { "slope-max", required_argument, NULL, '4' }, { NULL, 0, NULL, 0 },
    };
    const char *config_path = getenv("SDEFED_CONF");
    out_format fmt = OUT_TABLE;
    Sdefed__MonitorRequest mr = SDEFED__MONITOR_REQUEST__INIT;
    bool every_given = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:f:h", opts, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'c': config_path = optarg; break;
        case 'f':
            if (out_format_parse(optarg, &fmt) != 0)
                return cli_die("unknown format '%s' (use table, json or csv)", optarg), 2;
            break;
        case 'e':
            if (monitor_parse_duration(optarg, &mr.every_ms) != 0)
                return cli_die("--every: expected a duration like 30s, 5m, 1d or 500ms, got '%s'",
                            optarg), 2;
            every_given = true;
            break;
        case 'T': mr.test = optarg; break;
        case 'x':
            errno = 0;
            mr.expected_rate = strtod(optarg, &end);
            if (errno || *end || !(mr.expected_rate > 0.0))
                return cli_die("--expected: expected a positive rate per 1,000 person-years"), 2;
            break;
        case 'a':
            errno = 0;
            mr.alpha = strtod(optarg, &end);
            if (errno || *end || !(mr.alpha > 0.0) || mr.alpha > 0.5)
                return cli_die("--alpha: expected a number in (0, 0.5]"), 2;
            break;
        case 'l':
            errno = 0;
            mr.length = strtod(optarg, &end);
            if (errno || *end || !(mr.length > 0.0) || mr.length > 1000.0)
                return cli_die("--length: expected 0..1000 expected events"), 2;
            break;
        case 'P': mr.period = optarg; break;
        case 'F': mr.from = optarg; break;
        case 'U': mr.to = optarg; break;
        case '1': case '2': case '3': case '4': {
            static const char *const names[] = { "--auc-min", "--auc-max", "--slope-min",
                                                 "--slope-max" };
            errno = 0;
            double v = strtod(optarg, &end);
            if (errno || *end || end == optarg || !isfinite(v))
                return cli_die("%s: expected a number", names[ch - '1']), 2;
            double *dst[] = { &mr.auc_min, &mr.auc_max, &mr.slope_min, &mr.slope_max };
            protobuf_c_boolean *has[] = { &mr.has_auc_min, &mr.has_auc_max, &mr.has_slope_min,
                                          &mr.has_slope_max };
            *dst[ch - '1'] = v;
            *has[ch - '1'] = 1;
            break;
        }
        case 'h': musage(stdout); return 0;
        default: musage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        musage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;
    const char *op = NULL;
    Sdefed__QuerySpec *spec = NULL;
    char err[1024];
    if (strcmp(cmd, "alerts") == 0 && nargs == 0) {
        op = "alerts";
    } else if (strcmp(cmd, "monitor") == 0 && nargs >= 1) {
        op = args[0];
        if ((strcmp(op, "list") == 0 && nargs == 1) ||
            ((strcmp(op, "show") == 0 || strcmp(op, "rm") == 0) && nargs == 2)) {
            mr.id = nargs == 2 ? args[1] : NULL;
        } else if (strcmp(op, "add") == 0 && nargs == 2) {
            if (!every_given)
                return cli_die("monitor add: --every DURATION is required"), 2;
            size_t len;
            char *text = read_all(args[1], &len, err, sizeof err);
            if (!text)
                return cli_die("%s", err);
            int rc = spec_parse_json(text, len, &spec, err, sizeof err);
            free(text);
            if (rc != 0)
                return cli_die("%s: %s", args[1], err);
            if (spec->kind == SDEFED__QUERY_KIND__KIND_VALIDATE) {
                const char *miss = !mr.period ? "--period month|quarter|year"
                                   : !mr.from ? "--from YYYY-MM-DD"
                                   : !(mr.has_auc_min || mr.has_auc_max || mr.has_slope_min ||
                                       mr.has_slope_max)
                                       ? "at least one of --auc-min, --auc-max, --slope-min, "
                                         "--slope-max"
                                       : NULL;
                if (miss) {
                    sdefed__query_spec__free_unpacked(spec, NULL);
                    return cli_die("monitor add: a drift monitor (validate spec) needs %s", miss), 2;
                }
            } else if (spec->kind != SDEFED__QUERY_KIND__KIND_SURVEIL) {
                sdefed__query_spec__free_unpacked(spec, NULL);
                return cli_die("%s: a monitor needs a spec of kind surveil or validate", args[1]);
            }
            mr.spec = spec;
        } else {
            musage(stderr);
            return 2;
        }
    } else {
        musage(stderr);
        return 2;
    }
    mr.op = (char *)op;

    client_config cfg;
    if (cli_config(config_path, &cfg) != 0) {
        if (spec)
            sdefed__query_spec__free_unpacked(spec, NULL);
        return 1;
    }
    Sdefed__Envelope req = SDEFED__ENVELOPE__INIT;
    req.body_case = SDEFED__ENVELOPE__BODY_MONITOR_REQUEST;
    req.monitor_request = &mr;
    Sdefed__Envelope *reply = NULL;
    int rc = client_call(&cfg, &req, MON_WAIT_MS, &reply, err, sizeof err);
    if (spec)
        sdefed__query_spec__free_unpacked(spec, NULL);
    if (rc != 0)
        return cli_die("%s", err);
    int status;
    if (reply->body_case == SDEFED__ENVELOPE__BODY_MONITOR_REPLY && reply->monitor_reply->json)
        status = render(op, reply->monitor_reply->json, fmt);
    else
        status = cli_die("unexpected reply from the coordinator");
    sdefed__envelope__free_unpacked(reply, NULL);
    if (fflush(stdout) != 0)
        return cli_die("cannot write output");
    return status;
}

bool monitor_is_command(int argc, char **argv)
{
    /* the first word that is not an option or an option's value */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0 || strcmp(a, "--format") == 0 ||
            strcmp(a, "-f") == 0) {
            i++;
            continue;
        }
        if (a[0] == '-')
            continue;
        return strcmp(a, "monitor") == 0 || strcmp(a, "alerts") == 0;
    }
    return false;
}
