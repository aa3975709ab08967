/* lib/daemon_args.c — the command line both daemons share (daemon_args.h). */
#include "sdefed/daemon_args.h"

#include <getopt.h>
#include <string.h>

int daemon_args_parse(int argc, char **argv, void (*usage)(FILE *), daemon_args *out)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "check-config", no_argument, NULL, 'C' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    memset(out, 0, sizeof *out);
    optind = 0;   /* glibc: full reinitialisation */
    int ch;
    /* "+": stop at the first non-option, which is a subcommand. */
    while ((ch = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': out->config_path = optarg; break;
        case 'C': out->check_only = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!out->config_path || (out->check_only && optind != argc)) {
        usage(stderr);
        return 2;
    }
    if (optind < argc) {
        out->sub_argc = argc - optind;
        out->sub_argv = argv + optind;
    }
    return -1;
}
