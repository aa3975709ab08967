/* agent/db_value.c — a result column read as a number (see db.h). */
#include "db.h"

#include <math.h>
#include <stdlib.h>

int db_value_double(const db_value *v, double *out)
{
    if (v->is_null)
        return SDF_EINVAL;
    double x;
    if (v->is_number) {
        x = v->d;
    } else {
        const char *s = db_value_text(v);
        char *end = NULL;
        if (!s)
            return SDF_ENOMEM;
        x = strtod(s, &end);
        if (end == s || *end != '\0')
            return SDF_EINVAL;
    }
    if (!isfinite(x))
        return SDF_EINVAL;
    *out = x;
    return 0;
}
