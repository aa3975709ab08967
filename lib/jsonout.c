/* lib/jsonout.c — JSON building helpers; see jsonout.h. */
#include "sdefed/jsonout.h"

#include <stdlib.h>
#include <string.h>

json_t *jo_str(const char *s)
{
    if (!s)
        s = "";
    json_t *v = json_string(s);
    if (v)
        return v;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

bool jo_put(json_t *o, const char *k, json_t *v)
{
    return json_object_set_new(o, k, v) == 0;
}

bool jo_push(json_t *a, json_t *v)
{
    return json_array_append_new(a, v) == 0;
}
