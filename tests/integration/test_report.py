"""tests/integration/test_report.py — `sdefed report` end to end (issues 5 and 6).

Three synthetic sites. Each gets a predictions table (as in
test_validate.py: site-c's scores deliberately mis-calibrated, site-a's
"region" column with a 9-event level that must be withheld). A validate
query (by region), a surveil query (metformin -> hypertension per year,
where disclosure control withholds some points) and a monitor of that
surveil spec are each turned into a report with `sdefed report`. Every
report must be one self-contained HTML document: tags balance (checked
with html.parser), each <svg> parses as XML (xml.etree) and has a viewBox,
no URL, no script, no src=; the numbers shown agree with the JSON result;
withheld things say "withheld" with their reason. The validate report is
rendered in headless Chromium (skipped, with the reason, when chromium is
not installed: `deploy/deps.sh browser`) and the screenshot is decoded
here (zlib, no imaging library) to check its size, that it is not blank
and that the plot colours are on it.
"""

import html.parser
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import tempfile
import unittest
import xml.etree.ElementTree as ET
import zlib

from sandbox import SandboxTestCase, wait_until

SITES = ["site-a", "site-b", "site-c"]
THRESHOLDS = [0.1, 0.2, 0.3, 0.5]
TABLE = """
[dataset preds]
type = table
backend = sqlite
path = %s
table = predictions
column.person_id = identifier
column.score = score
column.label = label
column.prediction_date = date
column.sex = category
column.region = category
"""

SITE_COLORS = {"#0072b2": (0x00, 0x72, 0xb2), "#e69f00": (0xe6, 0x9f, 0x00),
               "#009e73": (0x00, 0x9e, 0x73)}
VOID = {"meta", "br", "hr", "img", "input", "link", "wbr", "col", "area", "base", "source"}


class TagBalance(html.parser.HTMLParser):
    """Checks that every element is closed in order (void elements aside)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.svgs = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "svg":
            self.svgs += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes %r" % (tag, self.stack[-1:]))
        else:
            self.stack.pop()


def png_decode(path):
    """(width, height, channels, rows) of an 8-bit RGB/RGBA PNG, rows as bytes."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError("not a PNG")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or interlace != 0 or ctype not in (2, 6):
        raise AssertionError("unexpected PNG format %r" % (hdr,))
    ch = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * ch
    rows, prev = [], bytearray(stride)
    for y in range(h):
        base = y * (stride + 1)
        ft = raw[base]
        cur = bytearray(raw[base + 1:base + 1 + stride])
        if ft == 1:
            for i in range(ch, stride):
                cur[i] = (cur[i] + cur[i - ch]) & 255
        elif ft == 2:
            cur = bytearray((a + b) & 255 for a, b in zip(cur, prev))
        elif ft == 3:
            for i in range(stride):
                left = cur[i - ch] if i >= ch else 0
                cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 255
        elif ft == 4:
            for i in range(stride):
                a = cur[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(cur))
        prev = cur
    return w, h, ch, rows


def write_predictions(path, seed, miscalibrated, rare_region):
    """A predictions table over the persons of an OMOP file: a logistic
    model of age and sex plus noise; site-c's scores shifted (poorly
    calibrated); with rare_region, 9 events and 40 non-events in region
    "rare" (withheld) and 12 + 40 in "mid" (withheld by complementary
    suppression)."""
    rng = random.Random(1000 + seed)
    db = sqlite3.connect(path)
    rows = []
    for pid, gender, yob in db.execute("SELECT person_id, gender_concept_id, year_of_birth "
                                       "FROM person ORDER BY person_id").fetchall():
        male = gender == 8507
        eta = -1.6 + 0.03 * (2019 - (yob or 1970) - 50) + 0.6 * male
        label = 1 if rng.random() < 1 / (1 + math.exp(-eta)) else 0
        score = 1 / (1 + math.exp(-(eta + (1.2 if miscalibrated else 0) + rng.gauss(0, 0.6))))
        rows.append([pid, score, label, "male" if male else "female", "common"])
    if rare_region:
        ev = [r for r in rows if r[2] == 1]
        ne = [r for r in rows if r[2] == 0]
        for r in ev[:9] + ne[:40]:
            r[4] = "rare"
        for r in ev[9:21] + ne[40:80]:
            r[4] = "mid"
    db.execute("CREATE TABLE predictions (person_id INTEGER, score REAL, label INTEGER, "
               "prediction_date TEXT, sex TEXT, region TEXT)")
    db.executemany("INSERT INTO predictions VALUES (?, ?, ?, '2015-01-01', ?, ?)", rows)
    db.commit()
    db.close()


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def fmt4(v):
    """A number as the report prints it (%.4g)."""
    return "%.4g" % v


SURVEIL = {"kind": "surveil", "project": "demo", "dataset": "omop",
           "exposure": {"domain": "drug", "concepts": [1503297], "descendants": True},
           "outcome": {"domain": "condition", "concepts": [320128], "descendants": True},
           "window_days": [0, 365], "period": "year", "from": "2010-01-01", "to": "2019-12-31"}


class ReportTest(SandboxTestCase):
    SANDBOX_ARGS = dict(sites=3, seed=41, persons=3000)

    @classmethod
    def prepare(cls):
        sb = cls.sb
        cls.tmp = tempfile.mkdtemp(prefix="sdefed-it-report-")
        for n, site in enumerate(SITES):
            dst = sb.path("preds-%s.sqlite" % site)
            shutil.copyfile(sb.db_path(site), dst)
            write_predictions(dst, n, site == "site-c", site == "site-a")
            with open(sb.path("agent-%s.conf" % site), "a") as f:
                f.write(TABLE % dst)
            off = sb.log_size(site)
            os.kill(sb.pid(site), signal.SIGHUP)
            wait_until(lambda: "configuration reloaded" in sb.log_since(site, off), 15,
                       what="%s reload" % site)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)
        super().tearDownClass()

    # -- helpers --
    def report(self, *args):
        p = self.sb.cli("report", *args)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p

    def check_document(self, text, min_svgs):
        """Common checks; returns the parsed SVG roots."""
        self.assertTrue(text.startswith("<!DOCTYPE html>"))
        self.assertTrue(text.rstrip().endswith("</html>"))
        for bad in ("http:", "https:", "src=", "href=", "url(", "@import"):
            self.assertNotIn(bad, text)
        self.assertIsNone(re.search(r"<\s*script", text, re.I))
        self.assertIn("suppressed values are shown as withheld", text)
        bal = TagBalance()
        bal.feed(text)
        bal.close()
        self.assertEqual(bal.errors, [])
        self.assertEqual(bal.stack, [])
        frags = re.findall(r"<svg\b.*?</svg>", text, re.S)
        self.assertEqual(len(frags), bal.svgs)
        self.assertGreaterEqual(len(frags), min_svgs)
        roots = []
        for frag in frags:
            root = ET.fromstring(frag)          # well-formed XML
            self.assertEqual(root.tag, "svg")
            self.assertRegex(root.get("viewBox"), r"^0 0 \d+(\.\d+)? \d+(\.\d+)?$")
            self.assertEqual(root.get("width"), "100%")
            self.assertIsNotNone(root.find("title"))
            roots.append(root)
        return roots

    # -- validate --
    def test_a_validate_report(self):
        spec = {"kind": "validate", "project": "demo", "dataset": "preds",
                "validate": {"thresholds": THRESHOLDS, "by": ["region"]}}
        d = self.sb.query(spec)
        qid = d["query_id"]
        spec_path = os.path.join(self.tmp, "validate.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        out = os.path.join(self.tmp, "validate.html")
        self.report(qid, "-o", out, "--spec", spec_path)
        with open(out, encoding="utf-8") as f:
            text = f.read()
        roots = self.check_document(text, 4)
        self.assertIn(qid, text)
        self.assertIn("&quot;dataset&quot;: &quot;preds&quot;", text)
        # the forest plot: one point per site with a CI, a diamond for the pooled estimate
        forest = [r for r in roots if r.findtext("title", "").startswith("AUC per site and pooled, "
                                                                         "whole")]
        self.assertEqual(len(forest), 1)
        pooled = [g for g in d["pooled"]["validations"] if g["strata"] == {}][0]
        titles = [t.text for t in forest[0].iter("title")]
        want = "%s [%s, %s]" % (fmt4(pooled["auc"]), fmt4(pooled["auc_ci"][0]),
                                fmt4(pooled["auc_ci"][1]))
        self.assertIn(want, titles)
        self.assertTrue(any(p.find("title") is not None and p.find("title").text == want
                            for p in forest[0].iter("polygon")), "pooled diamond")
        for s in d["sites"]:
            g = [v for v in s["validations"] if v["strata"] == {}][0]
            self.assertIn("%s [%s, %s]" % (fmt4(g["auc"]), fmt4(g["auc_ci"][0]),
                                           fmt4(g["auc_ci"][1])), titles)
        self.assertEqual(len(forest[0].findall("circle")), len(d["sites"]))
        # ROC and calibration figures, subgroups
        self.assertIn("ROC curves per site and pooled", text)
        self.assertIn("Calibration: mean predicted vs observed per bin", text)
        self.assertIn("Subgroup region=common", text)
        # the 9-event region is withheld with its reason, and so is its complement
        self.assertIn("Subgroup region=rare", text)
        self.assertIn("withheld: fewer than min_cell events or non-events", text)
        self.assertIn("complementary", text)
        rare = text[text.index("Subgroup region=rare"):]
        rare = rare[:rare.index("</table>")]
        row = re.search(r"<td>site-a</td>(.*?)</tr>", rare, re.S).group(1)
        self.assertIn("withheld", row)
        self.assertIsNone(re.search(r"\d", re.sub(r"<[^>]*>", "", row)), row)

        # overwrite: refused, then --force; -o - writes to stdout
        p = self.sb.cli("report", qid, "-o", out)
        self.assertEqual(p.returncode, 1)
        self.assertIn("exists", p.stderr)
        self.report(qid, "-o", out, "--force")
        p = self.report(qid, "-o", "-")
        self.assertTrue(p.stdout.startswith("<!DOCTYPE html>"))
        # without --spec the spec comes from the stored result
        self.assertIn("&quot;thresholds&quot;", p.stdout)
        self.assertNotIn("stored without its spec", p.stdout)
        p = self.sb.cli("report", "no-such-query", "-o", "-")
        self.assertEqual(p.returncode, 1)
        # a spec of another kind is refused
        spath = os.path.join(self.tmp, "surveil.json")
        with open(spath, "w") as f:
            json.dump(SURVEIL, f)
        p = self.sb.cli("report", qid, "-o", "-", "--spec", spath)
        self.assertEqual(p.returncode, 1)
        self.assertIn("differs", p.stderr)
        type(self).validate_html = out

    def test_c_screenshot(self):
        browser = chromium()
        if browser is None:
            self.skipTest("chromium not installed (deploy/deps.sh browser): no screenshot")
        html_path = getattr(type(self), "validate_html", None)
        if html_path is None:
            self.fail("test_a did not write the validate report")
        png = os.path.join(self.tmp, "validate.png")
        profile = os.path.join(self.tmp, "chromium-profile")
        p = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                            "--user-data-dir=" + profile, "--screenshot=" + png,
                            "--window-size=1200,3000", "file://" + html_path],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, HOME=self.tmp))
        self.assertTrue(os.path.isfile(png), "no screenshot: %s" % p.stderr[-2000:])
        w, h, ch, rows = png_decode(png)
        self.assertEqual((w, h), (1200, 3000))
        nonwhite = 0
        found = {name: 0 for name in SITE_COLORS}
        for row in rows[::2]:
            for x in range(0, w * ch, ch * 2):
                px = (row[x], row[x + 1], row[x + 2])
                if px != (255, 255, 255):
                    nonwhite += 1
                for name, c in SITE_COLORS.items():
                    if all(abs(px[i] - c[i]) <= 12 for i in range(3)):
                        found[name] += 1
        sampled = (h // 2) * (w // 2)
        self.assertGreater(nonwhite / sampled, 0.03, "the screenshot is (nearly) blank")
        self.assertLess(nonwhite / sampled, 0.9)
        for name, n in found.items():
            self.assertGreater(n, 20, "plot colour %s missing from the screenshot" % name)

    # -- surveil and monitor --
    def test_b_surveil_and_monitor_reports(self):
        d = self.sb.query(SURVEIL)
        qid = d["query_id"]
        out = os.path.join(self.tmp, "surveil.html")
        self.report(qid, "-o", out)
        with open(out, encoding="utf-8") as f:
            text = f.read()
        roots = self.check_document(text, 1)
        self.assertEqual(roots[0].findtext("title"), "Rate per 1,000 person-years: exposure")
        # every released pooled rate is drawn with its value in a tooltip;
        # every withheld one is listed as withheld
        tips = [t.text for t in roots[0].iter("title")]
        withheld = 0
        for r in d["pooled"]["surveil"]:
            if r["rate"] is not None:
                self.assertIn("pooled %s: %s [%s, %s]" % (r["period"], fmt4(r["rate"]),
                                                          fmt4(r["rate_lo"]), fmt4(r["rate_hi"])),
                              tips)
            else:
                withheld += 1
                self.assertTrue(any(t.startswith("pooled %s: withheld" % r["period"])
                                    for t in tips))
                self.assertIn("pooled, %s: <span class=\"withheld\">withheld" % r["period"], text)
        self.assertGreater(withheld, 0, "the spec should give some withheld points")

        # a monitor of the same spec
        spath = os.path.join(self.tmp, "monitor.json")
        with open(spath, "w") as f:
            json.dump(SURVEIL, f)
        m = self.sb.cli_json("monitor", "add", spath, "--every", "200ms", "--expected", "300")
        mid = m["id"]
        wait_until(lambda: len(self.sb.cli_json("monitor", "show", mid)["looks"]) >= 3, 60,
                   what="monitor looks")
        out = os.path.join(self.tmp, "monitor.html")
        self.report("--monitor", mid, "-o", out)
        with open(out, encoding="utf-8") as f:
            text = f.read()
        roots = self.check_document(text, 2)
        names = [r.findtext("title") for r in roots]
        self.assertIn("Observed and expected events per period", names)
        self.assertIn("Sequential test statistic (maxsprt) and its threshold", names)
        self.assertNotIn("Model drift", text)     # no drift keys in a surveil monitor
        self.assertIn("&quot;kind&quot;: &quot;surveil&quot;", text)
        p = self.sb.cli("report", "--monitor", "no-such-monitor", "-o", "-")
        self.assertEqual(p.returncode, 1)
        self.sb.cli("monitor", "rm", mid)


if __name__ == "__main__":
    unittest.main()
