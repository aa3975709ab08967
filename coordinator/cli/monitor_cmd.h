/* coordinator/cli/monitor_cmd.h — `sdefed monitor ...` and `sdefed alerts` (issue 6).
 *
 * main.c hands these commands over whole (they take their own options).
 */
#ifndef CLI_MONITOR_CMD_H
#define CLI_MONITOR_CMD_H

#include <stdbool.h>
#include <stdint.h>

#include "sdefed/err.h"

/* True when argv's command word is `monitor` or `alerts`. */
bool monitor_is_command(int argc, char **argv);

/* Run it; returns the exit status (0 ok, 1 error, 2 usage). */
int monitor_main(int argc, char **argv);

/* "500ms", "30s", "30", "5m", "2h", "1d" -> milliseconds. 0 or SDF_EINVAL. */
int monitor_parse_duration(const char *s, uint64_t *ms) SDF_MUSTCHECK;

#endif
