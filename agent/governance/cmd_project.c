/* agent/governance/cmd_project.c — `sdefed-agent project ...` (approved
 * projects; see commands_gov.h and projects.h). */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "governance/audit.h"
#include "governance/commands_gov.h"
#include "governance/projects.h"
#include "state.h"

static int usage(void)
{
    fprintf(stderr,
            "usage: sdefed-agent --config FILE project add ID --requesters LIST [--kinds LIST]\n"
            "           [--datasets LIST] [--expires YYYY-MM-DD] [--release auto|review]\n"
            "           [--min-cell N] [--rounding N] [--zero-is-disclosive] [--description TEXT]\n"
            "       sdefed-agent --config FILE project list\n"
            "       sdefed-agent --config FILE project show ID\n"
            "       sdefed-agent --config FILE project revoke ID [--reason TEXT]\n"
            "LIST: comma-separated names, or '*' for any. Defaults: kinds '*', datasets '*',\n"
            "release review, no expiry, site disclosure policy.\n");
    return 2;
}

void gov_cmd_actor(char *buf, size_t len)
{
    struct passwd *pw = getpwuid(geteuid());
    if (pw && pw->pw_name && pw->pw_name[0])
        snprintf(buf, len, "%s", pw->pw_name);
    else
        snprintf(buf, len, "uid %u", (unsigned)geteuid());
}

static int open_state(const agent_config *cfg, state **s)
{
    char err[512];
    if (state_open(cfg->state_dir, s, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-agent: %s\n", err);
        return 1;
    }
    return 0;
}

static int parse_int(const char *name, const char *v, int64_t *out)
{
    char *end;
    long long x = strtoll(v, &end, 10);
    if (!v[0] || *end || x < 1 || x > 1000000) {
        fprintf(stderr, "sdefed-agent: %s: expected 1..1000000\n", name);
        return -1;
    }
    *out = x;
    return 0;
}

static int copy_arg(const char *name, const char *v, char *dst, size_t len)
{
    if (strlen(v) >= len) {
        fprintf(stderr, "sdefed-agent: %s: too long (max %zu)\n", name, len - 1);
        return -1;
    }
    snprintf(dst, len, "%s", v);
    return 0;
}

static int cmd_add(const agent_config *cfg, int argc, char **argv)
{
    if (argc < 1)
        return usage();
    gov_project *p = calloc(1, sizeof *p);
    if (!p)
        return 1;
    int rc = 2;
    if (copy_arg("ID", argv[0], p->id, sizeof p->id))
        goto out;
    snprintf(p->kinds, sizeof p->kinds, "*");
    snprintf(p->datasets, sizeof p->datasets, "*");
    p->release = RELEASE_REVIEW;
    bool have_requesters = false;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--zero-is-disclosive") == 0) {
            p->zero_is_disclosive = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "sdefed-agent: project add: %s needs a value\n", o);
            goto out;
        }
        const char *v = argv[++i];
        if (strcmp(o, "--requesters") == 0) {
            have_requesters = true;
            if (copy_arg(o, v, p->requesters, sizeof p->requesters))
                goto out;
        } else if (strcmp(o, "--kinds") == 0) {
            if (copy_arg(o, v, p->kinds, sizeof p->kinds))
                goto out;
        } else if (strcmp(o, "--datasets") == 0) {
            if (copy_arg(o, v, p->datasets, sizeof p->datasets))
                goto out;
        } else if (strcmp(o, "--description") == 0) {
            if (copy_arg(o, v, p->description, sizeof p->description))
                goto out;
        } else if (strcmp(o, "--expires") == 0) {
            if (project_parse_date(v, true, &p->expires_ms) != 0) {
                fprintf(stderr, "sdefed-agent: --expires: expected YYYY-MM-DD (the project runs "
                                "through that day, UTC) or YYYY-MM-DDTHH:MM:SSZ\n");
                goto out;
            }
        } else if (strcmp(o, "--release") == 0) {
            if (strcmp(v, "auto") == 0)
                p->release = RELEASE_AUTO;
            else if (strcmp(v, "review") == 0)
                p->release = RELEASE_REVIEW;
            else {
                fprintf(stderr, "sdefed-agent: --release: auto or review\n");
                goto out;
            }
        } else if (strcmp(o, "--min-cell") == 0) {
            if (parse_int(o, v, &p->min_cell))
                goto out;
        } else if (strcmp(o, "--rounding") == 0) {
            if (parse_int(o, v, &p->rounding))
                goto out;
        } else {
            fprintf(stderr, "sdefed-agent: project add: unknown option '%s'\n", o);
            goto out;
        }
    }
    if (!have_requesters) {
        fprintf(stderr, "sdefed-agent: project add: --requesters is required "
                        "(analyst identities, or '*' for any authenticated analyst)\n");
        goto out;
    }
    state *s;
    rc = 1;
    if (open_state(cfg, &s))
        goto out;
    char err[512];
    if (state_begin(s) == 0) {
        int arc = project_add(s, p, err, sizeof err);
        if (arc == 0) {
            char actor[64], reason[3300];
            gov_cmd_actor(actor, sizeof actor);
            snprintf(reason, sizeof reason, "kinds=%s datasets=%s requesters=%s release=%s",
                     p->kinds, p->datasets, p->requesters,
                     p->release == RELEASE_AUTO ? "auto" : "review");
            audit_entry e = { .event = "project_added", .project = p->id, .reason = reason,
                              .actor = actor };
            arc = audit_append_in_tx(s, &e, NULL, NULL);
            if (arc)
                snprintf(err, sizeof err, "cannot write the audit log");
        }
        if (arc == 0 && state_commit(s) == 0) {
            printf("project %s added (release %s)\n", p->id,
                   p->release == RELEASE_AUTO ? "auto" : "review");
            rc = 0;
        } else {
            if (arc)
                state_rollback(s);
            fprintf(stderr, "sdefed-agent: project add: %s\n", arc ? err : "commit failed");
            rc = arc == SDF_EINVAL ? 2 : 1;
        }
    } else {
        fprintf(stderr, "sdefed-agent: state database busy\n");
    }
    state_close(s);
out:
    free(p);
    return rc;
}

static void show_one(const gov_project *p, int64_t now)
{
    char buf[40];
    printf("project      %s\n", p->id);
    printf("description  %s\n", p->description);
    printf("status       %s\n", p->revoked_ms ? "revoked"
                                 : p->expires_ms && now >= p->expires_ms ? "expired" : "active");
    printf("release      %s\n", p->release == RELEASE_AUTO ? "auto" : "review");
    printf("kinds        %s\n", p->kinds);
    printf("datasets     %s\n", p->datasets);
    printf("requesters   %s\n", p->requesters);
    if (p->expires_ms) {
        project_format_time(p->expires_ms, buf, sizeof buf);
        printf("expires      %s (refused from then on)\n", buf);
    } else {
        printf("expires      never\n");
    }
    printf("min_cell     %s%lld\n", p->min_cell ? "" : "site policy ",
           (long long)p->min_cell);
    printf("rounding     %s%lld\n", p->rounding ? "" : "site policy ", (long long)p->rounding);
    printf("zero_is_disclosive %s\n", p->zero_is_disclosive ? "yes" : "site policy");
    project_format_time(p->created_ms, buf, sizeof buf);
    printf("created      %s\n", buf);
    if (p->revoked_ms) {
        project_format_time(p->revoked_ms, buf, sizeof buf);
        printf("revoked      %s %s\n", buf, p->revoke_reason);
    }
}

static int print_row(const gov_project *p, void *arg)
{
    int64_t now = *(int64_t *)arg;
    char exp[40] = "never";
    if (p->expires_ms)
        project_format_time(p->expires_ms, exp, sizeof exp);
    printf("%-20s %-8s %-7s %-21s %-20s %s\n", p->id,
           p->revoked_ms ? "revoked" : p->expires_ms && now >= p->expires_ms ? "expired" : "active",
           p->release == RELEASE_AUTO ? "auto" : "review", exp, p->kinds, p->requesters);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int gov_cmd_project(const agent_config *cfg, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *sub = argv[1];
    if (strcmp(sub, "add") == 0)
        return cmd_add(cfg, argc - 2, argv + 2);
    state *s;
    int64_t now = now_ms();
    if (strcmp(sub, "list") == 0 && argc == 2) {
        if (open_state(cfg, &s))
            return 1;
        printf("%-20s %-8s %-7s %-21s %-20s %s\n", "PROJECT", "STATUS", "RELEASE", "EXPIRES",
               "KINDS", "REQUESTERS");
        int rc = project_each(s, print_row, &now);
        state_close(s);
        return rc ? 1 : 0;
    }
    if (strcmp(sub, "show") == 0 && argc == 3) {
        if (open_state(cfg, &s))
            return 1;
        gov_project *p = malloc(sizeof *p);
        int rc = p ? project_get(s, argv[2], p) : SDF_ENOMEM;
        state_close(s);
        if (rc == 0)
            show_one(p, now);
        else
            fprintf(stderr, "sdefed-agent: project %s: %s\n", argv[2],
                    rc == SDF_ENOTFOUND ? "no such project" : sdf_strerror(rc));
        free(p);
        return rc ? 1 : 0;
    }
    if (strcmp(sub, "revoke") == 0 && (argc == 3 || (argc == 5 && !strcmp(argv[3], "--reason")))) {
        const char *reason = argc == 5 ? argv[4] : "";
        if (strlen(reason) > 200) {
            fprintf(stderr, "sdefed-agent: --reason: at most 200 characters\n");
            return 2;
        }
        if (open_state(cfg, &s))
            return 1;
        int rc = state_begin(s);
        if (rc == 0) {
            rc = project_revoke(s, argv[2], reason);
            if (rc == 0) {
                char actor[64];
                gov_cmd_actor(actor, sizeof actor);
                audit_entry e = { .event = "project_revoked", .project = argv[2],
                                  .reason = reason, .actor = actor };
                rc = audit_append_in_tx(s, &e, NULL, NULL);
            }
            if (rc == 0)
                rc = state_commit(s);
            else
                state_rollback(s);
        }
        state_close(s);
        if (rc == 0) {
            printf("project %s revoked: every later query for it is refused\n", argv[2]);
            return 0;
        }
        fprintf(stderr, "sdefed-agent: project revoke %s: %s\n", argv[2],
                rc == SDF_ENOTFOUND ? "no such project"
                : rc == SDF_EREFUSED ? "already revoked" : sdf_strerror(rc));
        return 1;
    }
    return usage();
}
