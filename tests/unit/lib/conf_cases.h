/* tests/unit/lib/conf_cases.h — run a directory of config files against a loader.
 *
 * Each file starts with "; expect: TEXT". TEXT "OK" means the file must
 * load; anything else must make the loader fail with an error containing
 * TEXT (which may include ":LINE:"). Used by the agent and coordinator
 * config tests so a new bad config is one new file, no code.
 */
#ifndef TEST_CONF_CASES_H
#define TEST_CONF_CASES_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int (*conf_loader)(const char *path, char *err, size_t errlen);

/* Returns the number of files checked; fails the cmocka test on a mismatch. */
static int run_conf_cases(const char *dir, conf_loader load)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".conf") != 0)
            continue;
        char path[1024], line[512], err[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        fclose(f);
        assert_true(strncmp(line, "; expect: ", 10) == 0);
        char *expect = line + 10;
        expect[strcspn(expect, "\n")] = '\0';
        err[0] = '\0';
        int rc = load(path, err, sizeof err);
        if (strcmp(expect, "OK") == 0) {
            if (rc != 0)
                fail_msg("%s should load but failed: %s", path, err);
        } else {
            if (rc == 0)
                fail_msg("%s should be rejected (%s) but loaded", path, expect);
            if (!strstr(err, expect))
                fail_msg("%s: error \"%s\" does not contain \"%s\"", path, err, expect);
            if (!strstr(err, e->d_name))
                fail_msg("%s: error \"%s\" does not name the file", path, err);
        }
        n++;
    }
    closedir(d);
    return n;
}

#endif
