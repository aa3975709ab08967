"""tests/integration/test_catalog.py — one broken dataset does not hide a site's others.

A site declares a second OMOP dataset whose file is not a database. The
catalog must still describe the good dataset (rounded person count,
version) and list the broken one by name with a data-free error, in every
output format, and the agent must keep answering counts on the good one.
"""

import csv
import io
import os
import signal

from sandbox import SandboxTestCase, expected_release, wait_until


class CatalogPartialTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=1, seed=5, persons=400)

    @classmethod
    def prepare(cls):
        sb = cls.sb
        cls.site = sb.sites[0]
        bad = sb.path("not-a-database.sqlite")
        with open(bad, "wb") as f:
            f.write(b"this is not an SQLite file\n" * 200)
        with open(sb.path("agent-%s.conf" % cls.site), "a") as f:
            f.write("\n[dataset broken]\ntype = omop\nbackend = sqlite\npath = %s\n" % bad)
        off = sb.log_size(cls.site)
        os.kill(sb.pid(cls.site), signal.SIGHUP)
        wait_until(lambda: "configuration reloaded" in sb.log_since(cls.site, off), 15,
                   what="agent reload")

    def catalog(self, fmt="json"):
        return self.sb.query({"kind": "catalog", "project": "demo"}, fmt=fmt)

    def test_good_dataset_described_broken_one_named(self):
        d = self.catalog()
        site = d["sites"][0]
        self.assertEqual(site["status"], "ok", site)
        by = {x["name"]: x for x in site["datasets"]}
        self.assertEqual(sorted(by), ["broken", "omop"])
        self.assertIsNone(by["omop"]["error"])
        self.assertEqual(by["omop"]["person_count"], expected_release(400)[0])
        self.assertEqual(by["broken"]["error"], "database error")
        self.assertIsNone(by["broken"]["person_count"])
        self.assertEqual(by["broken"]["person_count_status"], "suppressed")

    def test_table_and_csv_show_the_error(self):
        table = self.catalog("table").stdout
        line = [l for l in table.splitlines() if "broken" in l]
        self.assertEqual(len(line), 1, table)
        self.assertIn("unavailable: database error", line[0])
        rows = list(csv.DictReader(io.StringIO(self.catalog("csv").stdout)))
        by = {r["dataset"]: r for r in rows}
        self.assertEqual(by["broken"]["error"], "database error")
        self.assertEqual(by["omop"]["error"], "")
        self.assertEqual(by["omop"]["persons"], str(expected_release(400)[0]))

    def test_counts_on_the_good_dataset_still_answer(self):
        d = self.sb.query({"kind": "count", "project": "demo", "dataset": "omop",
                           "cohort": {"all": [{"domain": "condition", "concepts": [201826],
                                               "descendants": True}]}})
        self.assertEqual(d["sites"][0]["status"], "ok", d)
