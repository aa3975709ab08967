#!/usr/bin/env python3
"""tests/bench/warm_ab.py — warm-connection `count` latency of two (or more) builds, side by side.

Not part of `make check` or `make bench`. On a machine shared with other
work, two runs minutes apart are not comparable; this brings up one sandbox
federation per build (N agents over 2,000-person sites, differencing on,
repeat limit off) at the same time and queries them over one warm analyst
connection each in alternating batches, so every build sees the same load.
Per build it prints p50/p99 over all queries and the median over batches of
the CPU time (user+system, from /proc) per query per agent and at the
coordinator — the machine-independent figure.

    python3 tests/bench/warm_ab.py --agents 8 --batches 8 --per 50 \\
        build/base build/perf build/perf:nodiff

A build is a build directory (holding bin/); ":nodiff" turns differencing
off for that federation.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)   # ahead of tests/integration: its run.py is another module

import run as bench  # noqa: E402
from sandbox import Sandbox  # noqa: E402

SPEC = ('spec { kind: KIND_COUNT project: "demo" dataset: "omop" '
        'cohort { all { domain: DOMAIN_CONDITION concepts: 201826 } } }')


def start(build, n_agents):
    path, _, opt = build.partition(":")
    os.environ["BUILD"] = os.path.abspath(path)
    disc = {"max_identical": 1000000}
    if opt == "nodiff":
        disc["differencing"] = "false"
    sb = Sandbox(sites=n_agents, persons=2000, disclosure=disc, prefix="sdefed-warm-ab-")
    sb.up()
    fed = {"build": build, "sb": sb, "lat": [], "agent": [], "coord": [],
           "pids": {s: sb.pid(s) for s in sb.sites}, "coord_pid": sb.pid("coordinator")}
    fed["client"] = bench.WarmClient(sb, SPEC)
    for _ in range(20):
        fed["client"].query(n_agents)
    return fed


def batch(fed, n_agents, per):
    a0 = {s: bench.proc_cpu_s(p) for s, p in fed["pids"].items()}
    k0 = bench.proc_cpu_s(fed["coord_pid"])
    for _ in range(per):
        t = time.perf_counter()
        fed["client"].query(n_agents)
        fed["lat"].append(time.perf_counter() - t)
    fed["agent"].append(statistics.mean((bench.proc_cpu_s(p) - a0[s]) * 1000 / per
                                        for s, p in fed["pids"].items()))
    fed["coord"].append((bench.proc_cpu_s(fed["coord_pid"]) - k0) * 1000 / per)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=8)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--per", type=int, default=50)
    ap.add_argument("builds", nargs="+")
    args = ap.parse_args()
    feds = []
    try:
        for b in args.builds:
            feds.append(start(b, args.agents))
        for k in range(args.batches):
            for fed in (feds if k % 2 == 0 else feds[::-1]):
                batch(fed, args.agents, args.per)
        for fed in feds:
            lat = sorted(fed["lat"])
            print("%s: %d agents, %d queries: p50 %.2f ms, p99 %.2f ms; CPU per query: "
                  "%.2f ms per agent, %.2f ms coordinator (medians of %d batches); load %.1f"
                  % (fed["build"], args.agents, len(lat), lat[len(lat) // 2] * 1000,
                     lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
                     statistics.median(fed["agent"]), statistics.median(fed["coord"]),
                     args.batches, os.getloadavg()[0]), flush=True)
    finally:
        for fed in feds:
            fed["client"].close()
            fed["sb"].down()


if __name__ == "__main__":
    main()
