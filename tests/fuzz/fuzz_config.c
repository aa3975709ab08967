/* tests/fuzz/fuzz_config.c — libFuzzer target for the INI config loaders.
 *
 * Writes the input to a temporary file (the loaders read files, as the
 * daemons do) and loads it as an agent and as a coordinator config. Any
 * outcome is fine except a crash, a leak or a sanitizer report; a refusal
 * must come with a message naming the file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_config.h"
#include "../../coordinator/coord_config.h"
#include "../../coordinator/coord_config.c"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/sdefed-fuzz-config-%d.conf", (int)getpid());
        log_set_level(SDF_LOG_ERROR);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    fwrite(data, 1, size, f);
    fclose(f);

    char err[1024];
    static agent_config ac;
    if (agent_config_load(path, &ac, err, sizeof err) != 0 && !strstr(err, path))
        abort();
    coord_config cc;
    if (coord_config_load(path, &cc, err, sizeof err) != 0 && !strstr(err, path))
        abort();
    coord_config_free(&cc);
    return 0;
}
