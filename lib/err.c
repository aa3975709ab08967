/* lib/err.c — messages and names for the SDF_E* error table. */
#include "sdefed/err.h"

static const char *const messages[] = {
#define SDF_X(name, msg) msg,
    SDF_ERRNO_MAP(SDF_X)
#undef SDF_X
};

static const char *const names[] = {
#define SDF_X(name, msg) "SDF_E" #name,
    SDF_ERRNO_MAP(SDF_X)
#undef SDF_X
};

const char *sdf_strerror(int err)
{
    if (err == 0)
        return "success";
    if (err < 0 && -err <= SDF_ERRSEQ__COUNT)
        return messages[-err - 1];
    return "unknown error";
}

const char *sdf_err_name(int err)
{
    if (err == 0)
        return "SDF_OK";
    if (err < 0 && -err <= SDF_ERRSEQ__COUNT)
        return names[-err - 1];
    return "SDF_EUNKNOWN";
}
