/* tests/fuzz/fuzz_spec.c — libFuzzer target for the JSON query-spec parser.
 *
 * Any input: spec_parse_json must not crash, leak or hang; a refusal must
 * leave *out NULL and give a one-line, printable message. An accepted spec
 * must pass spec_validate, and its canonical JSON (spec_to_json) must parse
 * again to the identical QuerySpec and the identical canonical text.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE \
 *     -Iinclude -Ibuild/spec/gen tests/fuzz/fuzz_spec.c lib/spec.c lib/err.c \
 *     build/spec/gen/sdefed.pb-c.c -ljansson -lprotobuf-c -o build/spec/fuzz_spec
 *   build/spec/fuzz_spec -dict=tests/fuzz/spec.dict -max_len=4096 \
 *     -max_total_time=60 build/spec/fuzz-corpus tests/fuzz/corpus/spec
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sdefed/spec.h"

static uint8_t *packed(const Sdefed__QuerySpec *s, size_t *n)
{
    *n = sdefed__query_spec__get_packed_size(s);
    uint8_t *b = malloc(*n ? *n : 1);
    if (!b)
        abort();
    sdefed__query_spec__pack(s, b);
    return b;
}

static char *canonical(const Sdefed__QuerySpec *s)
{
    json_t *j = spec_to_json(s);
    if (!j)
        abort();
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!t)
        abort();
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Sdefed__QuerySpec *s = (Sdefed__QuerySpec *)&size;   /* must be overwritten */
    char err[256];

    int rc = spec_parse_json((const char *)data, size, &s, err, sizeof err);
    if (rc != 0) {
        if (rc != SDF_ESPEC || s != NULL || err[0] == '\0')
            abort();
        for (const char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
                abort();
        return 0;
    }
    if (!s || spec_validate(s, err, sizeof err) != 0)
        abort();

    char *t1 = canonical(s);
    Sdefed__QuerySpec *s2 = NULL;
    if (spec_parse_json(t1, strlen(t1), &s2, err, sizeof err) != 0 || !s2)
        abort();
    size_t n1, n2;
    uint8_t *b1 = packed(s, &n1), *b2 = packed(s2, &n2);
    if (n1 != n2 || memcmp(b1, b2, n1) != 0)
        abort();
    char *t2 = canonical(s2);
    if (strcmp(t1, t2) != 0)
        abort();

    free(t1);
    free(t2);
    free(b1);
    free(b2);
    sdefed__query_spec__free_unpacked(s, NULL);
    sdefed__query_spec__free_unpacked(s2, NULL);
    return 0;
}
