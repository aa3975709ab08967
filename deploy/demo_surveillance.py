#!/usr/bin/env python3
"""deploy/demo_surveillance.py — the post-market surveillance part of `make demo`.

Against a running sandbox federation (deploy/sandbox up DIR ...):
  1. plants a device safety signal in every site's synthetic OMOP file
     (deploy/synth/plant_signal.py): a new leadless pacemaker implanted
     from 2022 to mid-2024, a dislodgement event within 30 days at a base
     risk everywhere, and at ONE site a risk RELATIVE_RISK times higher
     for implants from RISE_FROM on;
  2. measures the historical event rate over 2022 with a `surveil` query
     (pooled over all sites: the "expected" rate a regulator would agree);
  3. adds a standing monitor (Poisson MaxSPRT, quarterly periods from 2023)
     and lets the coordinator catch up period by period;
  4. prints the monitor's looks and alerts, and says when the planted rise
     began and when the first alert came.

    demo_surveillance.py --sdefed BIN --config CLIENT.conf --data DIR/data
                         [--signal-site site-b] [--relative-risk 4] [--json]
                         [--report FILE.html]

With --json it prints one JSON object (monitor id, first alert period,
looks) instead of the tables, for tests. Exit status 0 when the monitor
finished (signalled or ran to its end), 1 otherwise.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PLANT = os.path.join(HERE, "synth", "plant_signal.py")
RISE_FROM = "2023-07-01"
RELATIVE_RISK = 4.0
BASE_RISK = 0.12
PER_MONTH = 60


def spec(period, start, end):
    return {"kind": "surveil", "project": "demo", "dataset": "omop",
            "exposure": {"domain": "device", "concepts": [2000000902]},
            "outcome": {"domain": "condition", "concepts": [2000000901]},
            "window_days": [0, 30], "period": period, "from": start, "to": end}


class Cli:
    def __init__(self, sdefed, config):
        self.base = [sdefed, "--config", config]

    def run(self, *args, input=None, fmt="json"):
        extra = ["--format", fmt] if fmt else []
        p = subprocess.run(self.base + list(args) + extra, input=input,
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise SystemExit("demo_surveillance: sdefed %s failed: %s"
                             % (" ".join(args), p.stderr.strip()))
        return json.loads(p.stdout) if fmt == "json" else p.stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sdefed", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True, help="the sandbox's data directory")
    ap.add_argument("--signal-site", default="site-b")
    ap.add_argument("--relative-risk", type=float, default=RELATIVE_RISK,
                    help="at the signal site from %s (1 = no signal)" % RISE_FROM)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--report", metavar="FILE.html",
                    help="also write the monitor's HTML report (sdefed report --monitor)")
    a = ap.parse_args(argv)
    cli = Cli(a.sdefed, a.config)
    say = (lambda *x: None) if a.json else (lambda *x: print(*x, flush=True))

    sites = sorted(f[:-len(".sqlite")] for f in os.listdir(a.data)
                   if f.endswith(".sqlite") and not f.startswith("preds-"))
    if a.signal_site not in sites:
        raise SystemExit("demo_surveillance: no site %s in %s" % (a.signal_site, a.data))
    for i, site in enumerate(sites):
        extra = ["--rise-from", RISE_FROM, "--relative-risk", str(a.relative_risk)] \
            if site == a.signal_site else []
        subprocess.run([sys.executable, PLANT, os.path.join(a.data, site + ".sqlite"),
                        "--seed", str(100 + i), "--per-month", str(PER_MONTH),
                        "--base-risk", str(BASE_RISK)] + extra,
                       check=True, capture_output=True, timeout=300)
    say("Planted: a new leadless pacemaker at %d sites (%d implants a month each, "
        "2022-01 to 2024-06);\ndislodgement within 30 days at risk %.2f, and at %s %.0f times "
        "that for implants from %s." % (len(sites), PER_MONTH, BASE_RISK, a.signal_site,
                                        a.relative_risk, RISE_FROM))

    base = cli.run("query", "-", input=json.dumps(spec("all", "2022-01-01", "2022-12-31")))
    row = base["pooled"]["surveil"][0]
    if row.get("rate") is None:
        raise SystemExit("demo_surveillance: the 2022 baseline rate was withheld")
    expected = round(row["rate"], 1)
    say("\nHistorical rate over 2022, pooled across the sites: %.1f per 1,000 person-years "
        "(%d events, %d person-days)." % (expected, row["events"], row["person_days"]))

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec("quarter", "2023-01-01", "2024-06-30"), f)
        path = f.name
    try:
        say("\n   $ sdefed monitor add device-surveillance.json --every 200ms --test maxsprt "
            "--expected %.1f --length 450" % expected)
        m = cli.run("monitor", "add", path, "--every", "200ms", "--test", "maxsprt",
                    "--expected", str(expected), "--alpha", "0.05", "--length", "450")
    finally:
        os.unlink(path)
    mid = m["id"]
    deadline = time.time() + 120
    while True:
        show = cli.run("monitor", "show", mid)
        if show["state"] != "active" or time.time() > deadline:
            break
        time.sleep(0.2)
    alerts = [a for a in cli.run("alerts") if a.get("monitor") == mid]
    first = next((l["period"] for l in show["looks"] if l["signal"]), None)
    summary = {"monitor": mid, "state": show["state"], "first_alert": first,
               "rise_from": RISE_FROM, "signal_site": a.signal_site,
               "alert_sites": alerts[0]["alert"]["sites"] if alerts else [],
               "looks": [{"period": l["period"], "signal": l["signal"],
                          "statistic": l["statistic"]} for l in show["looks"]]}
    if a.report:
        cli.run("report", "--monitor", mid, "-o", a.report, "--force", fmt=None)
        summary["report"] = a.report
    if a.json:
        print(json.dumps(summary))
    else:
        print(cli.run("monitor", "show", mid, fmt="table"))
        print(cli.run("alerts", fmt="table"))
        print("The rise was planted at %s for implants from %s; the monitor's first alert "
              "is for period %s." % (a.signal_site, RISE_FROM, first or "(none)"))
        if a.report:
            print("Wrote %s: observed vs expected events per quarter and the MaxSPRT statistic "
                  "against its threshold, the alert marked." % a.report)
    return 0 if show["state"] in ("signalled", "done") else 1


if __name__ == "__main__":
    sys.exit(main())
