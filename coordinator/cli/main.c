/* coordinator/cli/main.c — sdefed, the analyst's command-line tool.
 *
 *   sdefed [--config FILE] sites   [--format table|json|csv]
 *   sdefed [--config FILE] query   SPEC.json|- [--format F] [--sites a,b] [--timeout SECONDS]
 *   sdefed [--config FILE] results QUERY_ID [--format F]
 *   sdefed [--config FILE] report  QUERY_ID|--monitor ID -o FILE   (report.c)
 *
 * The spec is parsed and validated here first, so a typo is reported
 * before anything is sent. Exit status: 0 success, 1 error (one line on
 * stderr), 2 usage.
 */
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "monitor_cmd.h"   /* issue 6 */
#include "report.h"        /* issues 5, 6: sdefed report */
#include "output.h"
#include "protocol.h"
#include "sdefed/log.h"
#include "sdefed/spec.h"

#define DEFAULT_TIMEOUT_S 30
#define REPLY_SLACK_MS 10000   /* beyond the query deadline, for pooling and transfer */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sdefed [--config FILE] COMMAND [ARGS]\n"
            "commands:\n"
            "  sites                       list sites, online or not, with their datasets\n"
            "  query SPEC.json|-           run a query at every online site (or --sites)\n"
            "        [--sites a,b] [--timeout SECONDS]\n"
            "  results QUERY_ID            show a stored result again\n"
            "  monitor add|list|show|rm    standing surveillance monitors (see 'sdefed monitor')\n"
            "  alerts                      alerts raised by your monitors\n"
            "  report QUERY_ID -o FILE     HTML report with plots (or --monitor ID; see -h)\n"
            "  protocol keygen|sign|verify signed protocols (see 'sdefed protocol'); no config\n"
            "query also takes a signed protocol (from 'sdefed protocol sign') in place of SPEC.json\n"
            "options for every command: --format table|json|csv (default table)\n"
            "the config file comes from --config or $SDEFED_CONF\n");
}


/* Read a whole file (or stdin for "-") up to SPEC_MAX_JSON bytes. */
static char *read_spec(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(SPEC_MAX_JSON + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        if (f != stdin)
            fclose(f);
        return NULL;
    }
    size_t n = fread(buf, 1, SPEC_MAX_JSON + 1, f);
    bool bad = ferror(f);
    if (f != stdin)
        fclose(f);
    if (bad || n > SPEC_MAX_JSON) {
        snprintf(err, errlen, "%s: %s", path, bad ? "read error" : "spec larger than 1 MiB");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* Split "a,b,c" into a malloc'd array of malloc'd strings. */
static char **split_sites(const char *s, size_t *n)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++)
        cap += *p == ',';
    char **out = calloc(cap, sizeof *out);
    if (!out)
        return NULL;
    *n = 0;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == ',' || *p == '\0') {
            if (p > start) {
                out[*n] = strndup(start, (size_t)(p - start));
                if (!out[*n])
                    return out;
                (*n)++;
            }
            if (*p == '\0')
                break;
            start = p + 1;
        }
    }
    return out;
}

static int report_reply_error(int rc, const char *err)
{
    (void)rc;
    fprintf(stderr, "sdefed: %s\n", err);
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "format", required_argument, NULL, 'f' },
        { "sites", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    /* `sdefed protocol ...` is offline and has its own options. */
    if (argc >= 2 && strcmp(argv[1], "protocol") == 0)
        return protocol_main(argc - 1, argv + 1);
    /* issue 6: `sdefed monitor ...` and `sdefed alerts` take their own options. */
    if (monitor_is_command(argc, argv))
        return monitor_main(argc, argv);
    /* issues 5, 6: `sdefed report ...` takes its own options (-o, --monitor, --spec). */
    if (report_is_command(argc, argv))
        return report_main(argc, argv);
    const char *config_path = getenv("SDEFED_CONF");
    const char *sites_arg = NULL;
    out_format fmt = OUT_TABLE;
    long timeout_s = DEFAULT_TIMEOUT_S;
    bool timeout_given = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "c:f:s:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config_path = optarg; break;
        case 'f':
            if (out_format_parse(optarg, &fmt) != 0)
                return cli_die("unknown format '%s' (use table, json or csv)", optarg), 2;
            break;
        case 's': sites_arg = optarg; break;
        case 't': {
            char *end;
            errno = 0;
            timeout_s = strtol(optarg, &end, 10);
            if (errno || *end || timeout_s < 1 || timeout_s > 86400)
                return cli_die("--timeout: expected 1..86400 seconds, got '%s'", optarg), 2;
            timeout_given = true;
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind];
    int nargs = argc - optind - 1;
    char **args = argv + optind + 1;

    client_config cfg;
    char err[1024];
    if (cli_config(config_path, &cfg) != 0)
        return 1;

    Sdefed__Envelope req = SDEFED__ENVELOPE__INIT;
    Sdefed__SitesRequest sreq = SDEFED__SITES_REQUEST__INIT;
    Sdefed__Fetch fetch = SDEFED__FETCH__INIT;
    Sdefed__Submit submit = SDEFED__SUBMIT__INIT;
    Sdefed__QuerySpec *spec = NULL;
    char **site_list = NULL;
    size_t n_site_list = 0;
    unsigned wait_ms = (unsigned)timeout_s * 1000u + REPLY_SLACK_MS;

    if (strcmp(cmd, "sites") == 0 && nargs == 0) {
        req.body_case = SDEFED__ENVELOPE__BODY_SITES_REQUEST;
        req.sites_request = &sreq;
    } else if (strcmp(cmd, "results") == 0 && nargs == 1) {
        fetch.query_id = args[0];
        req.body_case = SDEFED__ENVELOPE__BODY_FETCH;
        req.fetch = &fetch;
    } else if (strcmp(cmd, "query") == 0 && nargs == 1) {
        size_t len;
        char *text = read_spec(args[0], &len, err, sizeof err);
        if (!text)
            return cli_die("%s", err);
        protocol_query pq;
        int rc = protocol_read_query(text, len, &pq, err, sizeof err);
        spec = pq.spec;
        if (rc == 0 && pq.is_signed) {
            static uint8_t sigbuf[PASSPORT_SIG_LEN];
            static char kidbuf[PASSPORT_KEY_ID_HEX + 1];
            memcpy(sigbuf, pq.sig, sizeof sigbuf);
            memcpy(kidbuf, pq.key_id, sizeof kidbuf);
            submit.protocol_signature.data = sigbuf;
            submit.protocol_signature.len = sizeof sigbuf;
            submit.protocol_key_id = kidbuf;
            if (!pq.embedded_key_ok)
                fprintf(stderr, "sdefed: warning: %s: the signature does not match the spec; "
                                "sites will hold or refuse it\n", args[0]);
        }
        free(text);
        if (rc != 0)
            return cli_die("%s: %s", args[0], err);
        if (sites_arg) {
            site_list = split_sites(sites_arg, &n_site_list);
            if (!site_list || n_site_list == 0)
                return cli_die("--sites: expected a comma-separated list of site ids");
        }
        submit.spec = spec;
        submit.sites = site_list;
        submit.n_sites = n_site_list;
        submit.timeout_ms = timeout_given ? (uint32_t)timeout_s * 1000u : 0;
        req.body_case = SDEFED__ENVELOPE__BODY_SUBMIT;
        req.submit = &submit;
    } else {
        usage(stderr);
        return 2;
    }

    Sdefed__Envelope *reply = NULL;
    int rc = client_call(&cfg, &req, wait_ms, &reply, err, sizeof err);
    if (spec)
        sdefed__query_spec__free_unpacked(spec, NULL);
    for (size_t i = 0; i < n_site_list; i++)
        free(site_list[i]);
    free(site_list);
    if (rc != 0)
        return report_reply_error(rc, err);

    int status = 0;
    if (reply->body_case == SDEFED__ENVELOPE__BODY_SITES_REPLY)
        status = out_write_sites(stdout, reply->sites_reply, fmt);
    else if (reply->body_case == SDEFED__ENVELOPE__BODY_FEDERATED_RESULT)
        status = out_write_result(stdout, reply->federated_result, fmt);
    else
        status = cli_die("unexpected reply from the coordinator");
    sdefed__envelope__free_unpacked(reply, NULL);
    if (fflush(stdout) != 0)
        return cli_die("cannot write output");
    return status ? 1 : 0;
}
