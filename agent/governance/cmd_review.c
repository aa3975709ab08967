/* agent/governance/cmd_review.c — `sdefed-agent review ...`: the custodian
 * lists held results, inspects exactly what would leave (every field of the
 * stored QueryResult, rendered generically from its protobuf descriptor so
 * no field can be hidden, plus the disclosure rules that fired), and
 * approves or rejects. The running agent sends the outcome. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "governance/commands_gov.h"
#include "governance/projects.h"
#include "governance/review.h"
#include "governance/governance.h"
#include "sdefed/spec.h"
#include "sdefed.pb-c.h"
#include "state.h"

static int usage(void)
{
    fprintf(stderr, "usage: sdefed-agent --config FILE review list [--all]\n"
                    "       sdefed-agent --config FILE review show ID\n"
                    "       sdefed-agent --config FILE review approve ID\n"
                    "       sdefed-agent --config FILE review reject ID --reason TEXT\n");
    return 2;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- protobuf message -> JSON by reflection --------------------------------- */

static json_t *msg_json(const ProtobufCMessage *m, int depth);

static json_t *value_json(const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return json_integer((json_int_t) * (const uint64_t *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_ENUM: {
        int v = *(const int *)p;
        const ProtobufCEnumValue *ev =
            protobuf_c_enum_descriptor_get_value((const ProtobufCEnumDescriptor *)f->descriptor, v);
        return ev ? json_string(ev->name) : json_integer(v);
    }
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        json_t *j = json_string(s ? s : "");
        return j ? j : json_string("(not UTF-8)");
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        char *buf = malloc(4 * ((b->len + 2) / 3) + 1);
        if (!buf)
            return NULL;
        EVP_EncodeBlock((unsigned char *)buf, b->data, (int)b->len);
        json_t *j = json_string(buf);
        free(buf);
        return j;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        return sub ? msg_json(sub, depth + 1) : json_null();
    }
    }
    return json_null();
}

static size_t type_size(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_INT64: case PROTOBUF_C_TYPE_SINT64: case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64: case PROTOBUF_C_TYPE_FIXED64: return 8;
    case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING: case PROTOBUF_C_TYPE_MESSAGE: return sizeof(void *);
    case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
    default: return 4;
    }
}

/* Whether a singular field holds its default (proto3: not on the wire). */
static bool is_default(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return !s || !*s;
    }
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(void *const *)p == NULL;
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)p)->len == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)p == 0.0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)p == 0.0f;
    default: {
        size_t n = type_size(f->type);
        static const uint8_t zero[8];
        return memcmp(p, zero, n) == 0;
    }
    }
}

static json_t *msg_json(const ProtobufCMessage *m, int depth)
{
    if (depth > 16)
        return json_string("(nested too deep)");
    const ProtobufCMessageDescriptor *d = m->descriptor;
    json_t *o = json_object();
    if (!o)
        return NULL;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        const void *member = base + f->offset;
        json_t *v = NULL;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            if (n == 0)
                continue;
            const char *arr = *(char *const *)member;
            v = json_array();
            for (size_t k = 0; v && k < n; k++)
                json_array_append_new(v, value_json(f, arr + k * type_size(f->type), depth));
        } else {
            if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
                if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
                    continue;
            } else if (is_default(f, member)) {
                continue;
            }
            v = value_json(f, member, depth);
        }
        if (v)
            json_object_set_new(o, f->name, v);
    }
    return o;
}

/* ---- commands ------------------------------------------------------------------ */

static int print_row(const held_item *h, void *arg)
{
    (void)arg;
    char held[40], exp[40];
    project_format_time(h->created_ms, held, sizeof held);
    project_format_time(h->expires_ms, exp, sizeof exp);
    printf("%-5lld %-9s %-34s %-16s %-16s %-8s %-21s %s\n", (long long)h->id, h->state,
           h->query_id, h->project, h->requester, h->kind, held, exp);
    return 0;
}

static const char *rule_meaning(const char *r)
{
    static const struct { const char *name, *meaning; } t[] = {
        { "small_count", "counts below min_cell were suppressed" },
        { "rounding", "counts were rounded to the rounding base" },
        { "zero_is_disclosive", "zero counts were suppressed" },
        { "secondary_suppression", "further cells suppressed so none can be recovered by subtraction" },
        { "dominance", "a statistic dominated by few contributors was suppressed" },
        { "noise", "differential-privacy noise was added" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].name, r) == 0)
            return t[i].meaning;
    return "";
}

static int show(state *s, const char *key)
{
    held_item h;
    int rc = review_get(s, key, &h);
    if (rc) {
        fprintf(stderr, "sdefed-agent: review show %s: %s\n", key,
                rc == SDF_ENOTFOUND ? "no such held result" : sdf_strerror(rc));
        return 1;
    }
    Sdefed__QueryResult *r = sdefed__query_result__unpack(NULL, h.result_len, h.result);
    if (!r) {
        fprintf(stderr, "sdefed-agent: held result %lld does not decode\n", (long long)h.id);
        held_item_clear(&h);
        return 1;
    }
    char held[40], exp[40], dec[40] = "";
    project_format_time(h.created_ms, held, sizeof held);
    project_format_time(h.expires_ms, exp, sizeof exp);
    if (h.decided_ms)
        project_format_time(h.decided_ms, dec, sizeof dec);
    printf("held result  %lld\n", (long long)h.id);
    printf("state        %s%s%s%s%s\n", h.state, h.decided_by[0] ? " by " : "", h.decided_by,
           dec[0] ? " at " : "", dec);
    if (h.reason[0])
        printf("reason       %s\n", h.reason);
    printf("query        %s\n", h.query_id);
    printf("project      %s\n", h.project);
    printf("requester    %s\n", h.requester);
    printf("kind         %s\n", h.kind);
    printf("held since   %s\n", held);
    printf("expires      %s\n", exp);
    printf("spec         %s\n", h.spec_json);
    printf("\nWhat would leave this site (every field of the result, exactly as sent;\n"
           "%zu bytes, SHA-256 %s):\n", h.result_len, h.result_sha256);
    json_t *j = msg_json(&r->base, 0);
    char *text = j ? json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    printf("%s\n", text ? text : "(cannot render)");
    free(text);
    json_decref(j);
    printf("\nDisclosure rules that fired:%s\n", r->n_rules_fired ? "" : " none");
    for (size_t i = 0; i < r->n_rules_fired; i++) {
        const char *m = rule_meaning(r->rules_fired[i]);
        printf("  %s%s%s\n", r->rules_fired[i], m[0] ? ": " : "", m);
    }
    if (r->policy)
        printf("Effective policy: min_cell %lld, rounding %lld, zero_is_disclosive %s\n",
               (long long)r->policy->min_cell, (long long)r->policy->rounding,
               r->policy->zero_is_disclosive ? "yes" : "no");
    sdefed__query_result__free_unpacked(r, NULL);
    held_item_clear(&h);
    return 0;
}

int gov_cmd_review(const agent_config *cfg, int argc, char **argv)
{
    if (argc < 2)
        return usage();
    const char *sub = argv[1];
    bool list = strcmp(sub, "list") == 0 &&
                (argc == 2 || (argc == 3 && strcmp(argv[2], "--all") == 0));
    bool shw = strcmp(sub, "show") == 0 && argc == 3;
    bool approve = strcmp(sub, "approve") == 0 && argc == 3;
    bool reject = strcmp(sub, "reject") == 0 && argc == 5 && strcmp(argv[3], "--reason") == 0;
    if (!list && !shw && !approve && !reject)
        return usage();
    state *s;
    char err[512];
    if (state_open(cfg->state_dir, &s, err, sizeof err) != 0) {
        fprintf(stderr, "sdefed-agent: %s\n", err);
        return 1;
    }
    int rc = 0;
    if (list) {
        printf("%-5s %-9s %-34s %-16s %-16s %-8s %-21s %s\n", "ID", "STATE", "QUERY", "PROJECT",
               "REQUESTER", "KIND", "HELD SINCE", "EXPIRES");
        rc = review_each(s, argc == 3, print_row, NULL) ? 1 : 0;
    } else if (shw) {
        rc = show(s, argv[2]);
    } else {
        held_item h;
        int g = review_get(s, argv[2], &h);
        if (g) {
            fprintf(stderr, "sdefed-agent: review %s %s: %s\n", sub, argv[2],
                    g == SDF_ENOTFOUND ? "no such held result" : sdf_strerror(g));
            state_close(s);
            return 1;
        }
        int64_t id = h.id;
        char qid[64];
        snprintf(qid, sizeof qid, "%s", h.query_id);
        held_item_clear(&h);
        char actor[64];
        gov_cmd_actor(actor, sizeof actor);
        g = review_decide(s, id, approve, actor, reject ? argv[4] : NULL, now_ms(), err,
                          sizeof err);
        if (g == 0) {
            if (approve)
                printf("approved #%lld (query %s): the running agent sends it to the "
                       "coordinator within %d seconds of being connected\n",
                       (long long)id, qid, GOV_POLL_MS / 1000);
            else
                printf("rejected #%lld (query %s): the analyst is told the reason\n",
                       (long long)id, qid);
        } else {
            fprintf(stderr, "sdefed-agent: review %s: %s\n", sub, err);
            rc = g == SDF_EINVAL ? 2 : 1;
        }
    }
    state_close(s);
    return rc;
}
