#!/usr/bin/env python3
"""Load and soak: many agents, many analysts, bounded time; watch resources.

    python3 tests/bench/soak.py [--sites 50] [--analysts 8] [--seconds 600]
                                [--persons 300] [--check]

Brings up a sandbox federation (loopback only), then runs `--analysts`
threads that each submit count queries through the real CLI back to back
for `--seconds`. Every second it samples RSS and open file descriptors of
the coordinator and every agent from /proc. It prints throughput, p50/p99
end-to-end latency, error counts, and resources at start (after warm-up)
and end. With --check it exits 1 if any query failed, if descriptors grew,
or if RSS grew more than the allowed slack after warm-up (the CI smoke run
uses this). Latency figures are reported, never asserted.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from sandbox import Sandbox  # noqa: E402

SPECS = [
    {"kind": "count", "project": "demo", "dataset": "omop",
     "cohort": {"all": [{"domain": "drug", "concepts": [1118084], "descendants": True}]},
     "by": ["sex"]},
    {"kind": "count", "project": "demo", "dataset": "omop",
     "cohort": {"all": [{"domain": "condition", "concepts": [201826], "descendants": True}]},
     "by": ["sex", "age_band"]},
    {"kind": "catalog", "project": "demo"},
]


def proc_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", type=int, default=50)
    ap.add_argument("--analysts", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--persons", type=int, default=300)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--rss-slack", type=float, default=0.25,
                    help="allowed RSS growth after warm-up (fraction), with --check")
    a = ap.parse_args()
    warmup = a.warmup if a.warmup is not None else min(30.0, a.seconds / 4)

    # One query asked thousands of times is the point here: lift the repeat limit.
    sb = Sandbox(sites=a.sites, seed=1, persons=a.persons, timeout=120, prefix="sdefed-soak-",
                 disclosure={"max_identical": 1000000})
    t_up = time.monotonic()
    sb.up()
    print("federation of %d sites up in %.1f s" % (a.sites, time.monotonic() - t_up))
    names = ["coordinator"] + sb.sites
    pids = {n: sb.pid(n) for n in names}
    stop = threading.Event()
    lat, errors, lock = [], [], threading.Lock()
    answers = {}   # spec index -> the first answer seen
    samples = []   # (t, {name: (rss, fds)})

    def analyst(i):
        try:
            analyst_loop(i)
        except Exception as e:   # a crashed analyst thread is a failed run
            with lock:
                errors.append("analyst %d crashed: %r" % (i, e))

    def analyst_loop(i):
        k = i
        while not stop.is_set():
            spec = SPECS[k % len(SPECS)]
            t0 = time.monotonic()
            p = sb.cli("query", "-", "--format", "json", "--timeout", "30",
                       input=json.dumps(spec), timeout=120)
            dt = time.monotonic() - t0
            ok = p.returncode == 0
            if ok:
                d = json.loads(p.stdout)
                bad = [s for s in d["sites"] if s["status"] != "ok"]
                if bad:
                    ok = False
                    p = "%d sites not ok, e.g. %s" % (len(bad), bad[0])
                else:
                    # The same question on the same data must get the same
                    # answer every time: anything else is a mismatched result.
                    answer = json.dumps({"sites": d["sites"], "pooled": d.get("pooled")},
                                        sort_keys=True)
                    with lock:
                        first = answers.setdefault(k % len(SPECS), answer)
                    if answer != first:
                        ok = False
                        p = "mismatched result for spec %d" % (k % len(SPECS))
            k += 1
            with lock:
                if ok:
                    lat.append((time.monotonic(), dt))
                else:
                    errors.append(p if isinstance(p, str) else p.stderr.strip())

    def sampler():
        while not stop.is_set():
            samples.append((time.monotonic(),
                            {n: (proc_rss_kb(pid), proc_fds(pid)) for n, pid in pids.items()}))
            stop.wait(1.0)

    threads = [threading.Thread(target=analyst, args=(i,)) for i in range(a.analysts)]
    threads.append(threading.Thread(target=sampler))
    t_start = time.monotonic()
    for t in threads:
        t.start()
    try:
        time.sleep(a.seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(180)
    t_end = time.monotonic()
    alive = sb.all_alive()
    reports = sb.down()

    steady = [d for (t, d) in lat if t - t_start >= warmup]
    print("\n%d analysts x %.0f s against %d sites (%d persons each), warm-up %.0f s"
          % (a.analysts, a.seconds, a.sites, a.persons, warmup))
    print("queries ok (answer identical to the first for its spec): %d   failed or "
          "mismatched: %d   throughput: %.1f queries/s (steady state)"
          % (len(lat), len(errors), len(steady) / max(1e-9, (t_end - t_start - warmup))))
    if steady:
        q = sorted(steady)
        print("latency end to end (CLI start to exit): p50 %.1f ms  p99 %.1f ms  max %.1f ms"
              % (1000 * q[len(q) // 2], 1000 * q[min(len(q) - 1, int(len(q) * 0.99))],
                 1000 * q[-1]))

    problems = []
    after = [s for s in samples if s[0] - t_start >= warmup]
    if after:
        first, last = after[0][1], after[-1][1]
        print("\nresources (after warm-up -> end):")

        def summary(label, keys):
            r0 = [first[k][0] for k in keys if first[k][0]]
            r1 = [last[k][0] for k in keys if last[k][0]]
            f0 = [first[k][1] for k in keys if first[k][1] is not None]
            f1 = [last[k][1] for k in keys if last[k][1] is not None]
            if not (r0 and r1 and f0 and f1):
                return
            print("  %-12s RSS %7.1f -> %7.1f MiB (max %.1f)   fds %d -> %d"
                  % (label, sum(r0) / 1024 / len(r0), sum(r1) / 1024 / len(r1),
                     max(max(s[1][k][0] or 0 for s in after) for k in keys) / 1024,
                     max(f0), max(f1)))
            if sum(r1) > sum(r0) * (1 + a.rss_slack):
                problems.append("%s RSS grew %.0f%%" % (label, 100 * (sum(r1) / sum(r0) - 1)))
            if max(f1) > max(f0) + 2:
                problems.append("%s descriptors grew %d -> %d" % (label, max(f0), max(f1)))
        summary("coordinator", ["coordinator"])
        summary("agents(avg)", sb.sites)
    if errors:
        problems.append("%d queries failed, first: %s" % (len(errors), errors[0][:300]))
    if not alive:
        problems.append("a daemon died during the run")
    if reports:
        problems.append("sanitizer reports: %s" % reports[:3])
    if problems:
        print("\nPROBLEMS:\n  " + "\n  ".join(problems))
    if a.check:
        print("soak: %d passed, %d failed" % (0 if problems else 1, 1 if problems else 0))
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
