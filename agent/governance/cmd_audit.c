/* agent/governance/cmd_audit.c — `sdefed-agent audit verify|export` for the
 * custodian and the auditor (audit.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "governance/audit.h"
#include "governance/commands_gov.h"
#include "governance/projects.h"
#include "state.h"

static int usage(void)
{
    fprintf(stderr, "usage: sdefed-agent --config FILE audit verify [--head SEQ:HASH]\n"
                    "       sdefed-agent --config FILE audit export [--out FILE] [--since DATE]\n"
                    "DATE: YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)\n");
    return 2;
}

static int verify(state *s, int64_t want_seq, const char *want_hash)
{
    audit_report r;
    if (audit_verify(s, want_seq, want_hash, &r) != 0) {
        fprintf(stderr, "sdefed-agent: audit verify: cannot read the audit log\n");
        return 1;
    }
    if (!r.ok) {
        printf("audit log BROKEN at entry %lld: %s\n", (long long)r.bad_seq, r.problem);
        printf("(%lld entries read; recorded head #%lld %s)\n", (long long)r.rows,
               (long long)r.head_seq, r.head_hash[0] ? r.head_hash : "-");
        return 1;
    }
    printf("audit log OK: %lld entries, head #%lld %s\n", (long long)r.rows,
           (long long)r.head_seq, r.head_hash[0] ? r.head_hash : "-");
    return 0;
}

int gov_cmd_audit(const agent_config *cfg, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *sub = argv[1];
    const char *out_path = NULL, *since = NULL, *head = NULL;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--out") == 0 && strcmp(sub, "export") == 0)
            out_path = argv[++i];
        else if (strcmp(argv[i], "--since") == 0 && strcmp(sub, "export") == 0)
            since = argv[++i];
        else if (strcmp(argv[i], "--head") == 0 && strcmp(sub, "verify") == 0)
            head = argv[++i];
        else
            return usage();
    }
    int64_t since_ms = 0, want_seq = 0;
    char want_hash[AUDIT_HASH_HEX + 1] = "";
    if (since && project_parse_date(since, false, &since_ms) != 0) {
        fprintf(stderr, "sdefed-agent: --since: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ\n");
        return 2;
    }
    if (head) {
        const char *colon = strchr(head, ':');
        char *end;
        want_seq = colon ? strtoll(head, &end, 10) : 0;
        if (!colon || end != colon || want_seq < 1 || strlen(colon + 1) != AUDIT_HASH_HEX) {
            fprintf(stderr, "sdefed-agent: --head: expected SEQ:HASH (as logged by the agent)\n");
            return 2;
        }
        snprintf(want_hash, sizeof want_hash, "%s", colon + 1);
    }
    if (strcmp(sub, "verify") != 0 && strcmp(sub, "export") != 0)
        return usage();
    state *s;
    char err[512];
    if (state_open(cfg->state_dir, &s, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-agent: %s\n", err);
        return 1;
    }
    int rc;
    if (strcmp(sub, "verify") == 0) {
        rc = verify(s, want_seq, head ? want_hash : NULL);
    } else {
        FILE *f = stdout;
        if (out_path) {
            int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
            f = fd >= 0 ? fdopen(fd, "w") : NULL;
            if (!f) {
                fprintf(stderr, "sdefed-agent: %s: %s\n", out_path, strerror(errno));
                if (fd >= 0)
                    close(fd);
                state_close(s);
                return 1;
            }
        }
        int64_t n = audit_export(s, since_ms, f);
        int werr = (f != stdout ? fclose(f) : fflush(f)) != 0;
        if (n < 0 || werr) {
            fprintf(stderr, "sdefed-agent: audit export: %s\n",
                    n < 0 ? sdf_strerror((int)n) : "write failed");
            rc = 1;
        } else {
            if (out_path)
                fprintf(stderr, "exported %lld audit entries to %s\n", (long long)n, out_path);
            rc = 0;
        }
    }
    state_close(s);
    return rc;
}
