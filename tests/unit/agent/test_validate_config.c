/* tests/unit/agent/test_validate_config.c — `type = table` datasets in the agent config (issue 5).
 *
 * A predictions dataset with every role loads; each mistake is refused
 * with a reason: no score or identifier column, an unknown role, a column
 * or table name that is not an identifier (SQL injection attempts), two
 * score columns, the same column twice, table keys on an OMOP dataset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_config.h"

static agent_config cfg;

#define BASE                                                                                  \
    "[agent]\nsite_id = site-a\ncoordinator = 127.0.0.1:7443\ncert = a.crt\nkey = a.key\n"    \
    "ca = ca.crt\nstate_dir = state\n"

#define TABLE "[dataset preds]\ntype = table\npath = preds.sqlite\ntable = predictions\n"

static int load_text(const char *text, char *err, size_t errlen)
{
    char path[] = "/tmp/sdefed-vconf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    int rc = agent_config_load(path, &cfg, err, errlen);
    unlink(path);
    return rc;
}

static void refused(const char *text, const char *want)
{
    char err[1024] = "";
    int rc = load_text(text, err, sizeof err);
    if (rc != SDF_ECONFIG || !strstr(err, want))
        fprintf(stderr, "err=\"%s\" want \"%s\"\n", err, want);
    assert_int_equal(rc, SDF_ECONFIG);
    assert_non_null(strstr(err, want));
}

static void test_table_dataset_loads(void **state)
{
    (void)state;
    char err[1024] = "";
    assert_int_equal(load_text(BASE TABLE "column.person_id = identifier\ncolumn.score = score\n"
                                          "column.label = label\ncolumn.pdate = date\n"
                                          "column.sex = category\ncolumn.region = category\n"
                                          "column.mv = model_version\n",
                               err, sizeof err),
                     0);
    const agent_dataset *d = agent_config_dataset(&cfg, "preds");
    assert_non_null(d);
    assert_string_equal(d->type, "table");
    assert_string_equal(d->table, "predictions");
    assert_int_equal(d->n_columns, 7);
    assert_string_equal(d->columns[0].name, "person_id");
    assert_int_equal(d->columns[0].role, AGENT_COL_IDENTIFIER);
    assert_int_equal(d->columns[4].role, AGENT_COL_CATEGORY);
    assert_int_equal(d->columns[5].role, AGENT_COL_CATEGORY);
    assert_int_equal(d->columns[6].role, AGENT_COL_MODEL_VERSION);
}

static void test_table_mistakes(void **state)
{
    (void)state;
    refused(BASE TABLE "column.person_id = identifier\n", "needs table, an identifier column and "
                                                          "a score column");
    refused(BASE TABLE "column.score = score\n", "identifier column");
    refused(BASE "[dataset preds]\ntype = table\npath = p.sqlite\ncolumn.id = identifier\n"
                 "column.s = score\n",
            "needs table");
    refused(BASE TABLE "column.id = identifier\ncolumn.s = score\ncolumn.x = weight\n", "role");
    refused(BASE TABLE "column.id = identifier\ncolumn.s = score\ncolumn.t = score\n",
            "only one column");
    refused(BASE TABLE "column.id = identifier\ncolumn.s = score\ncolumn.s = label\n",
            "set twice");
    refused(BASE TABLE "column.id = identifier\ncolumn.s\"-- = score\n", "identifier");
    refused(BASE TABLE "column.id = identifier\ncolumn.1s = score\n", "identifier");
    refused(BASE "[dataset preds]\ntype = table\npath = p.sqlite\ntable = p; DROP TABLE x\n"
                 "column.id = identifier\ncolumn.s = score\n",
            "table:");
    refused(BASE "[dataset omop]\ntype = omop\npath = o.sqlite\ntable = person\n",
            "need type = table");
    refused(BASE "[dataset omop]\ntype = omop\npath = o.sqlite\ncolumn.id = identifier\n",
            "need type = table");
    refused(BASE "[dataset x]\ntype = csv\npath = o.sqlite\n", "or 'table'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_dataset_loads),
        cmocka_unit_test(test_table_mistakes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
