#!/usr/bin/env python3
"""Smoke test of `troupe bench hetero --quick --no-peer` (issue 15): every
part runs and reports figures, node b is really slower under its quota (b
alone at 1/3 of a core well below a alone), the mid-run slowdown happened
during the runs, and the cgroups the bench made are gone afterwards.

  bench_hetero_test.py TROUPE DATA_DIR SCRIPTS/THROTTLE

Exit 77 (skip) when the bench skips (no writable cgroup cpu controller).
"""

import json
import os
import subprocess
import sys
import tempfile

TROUPE, DATA, THROTTLE = (os.path.abspath(a) for a in sys.argv[1:4])
# Where scripts/throttle makes its groups (cgroup v1, v2, or the override).
GROUP_DIRS = [os.environ.get("TROUPE_CGROUP_CPU", "/sys/fs/cgroup/cpu"), "/sys/fs/cgroup"]
failed = False


def check(cond, msg):
    global failed
    failed |= not cond
    print(("ok: " if cond else "FAIL: ") + msg)


def main():
    work = tempfile.mkdtemp(prefix="troupe-hetero-test-")
    out = os.path.join(work, "hetero.json")
    # One ratio keeps it short (CI); the bench itself runs 2:1 and 3:1.
    p = subprocess.Popen([TROUPE, "bench", "hetero", "--quick", "--no-peer", "--ratios", "3",
                          "--data",
                          os.path.join(DATA, "mnist"), "--throttle-script", THROTTLE, "--json",
                          out, "--work-dir", os.path.join(work, "runs")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    text = p.communicate(timeout=280)[0]
    print(text)
    if p.returncode == 77:
        return 77
    check(p.returncode == 0, f"the bench exited {p.returncode}")
    left = [g for d in GROUP_DIRS if os.path.isdir(d) for g in os.listdir(d)
            if g.startswith(f"troupe-hetero-{p.pid}-")]
    check(not left, f"no cgroups of the bench left behind ({left})")
    if p.returncode != 0:
        return 1
    doc = json.load(open(out))
    runs = [doc["a_alone"]]
    for r in doc["dp"]:
        runs += [r["equal"], r["auto"], r["b_alone"]] + r["hand"]
    runs += [doc["midrun"]["off"], doc["midrun"]["auto"], doc["pipeline"]["auto"],
             doc["pipeline"]["flops"]] + doc["pipeline"]["splits"]
    check(all(r["samples_per_second"] > 0 and r["steps"] == doc["steps"] for r in runs),
          f"{len(runs)} jobs, each with its samples/s and all {doc['steps']} steps")
    check(len(doc["pipeline"]["splits"]) == 4, "the mlp's 4 two-stage splits tried")
    a = doc["a_alone"]["samples_per_second"]
    for r in doc["dp"]:
        b = r["b_alone"]["samples_per_second"]
        # The supervisor's share of the work is not throttled: b alone keeps
        # more than 1/ratio of a alone, but clearly less than a.
        check(b < a * min(0.8, 1.6 / r["ratio"]),
              f"b alone at 1/{r['ratio']:g} of a core: {b:.0f} samples/s, a alone {a:.0f}")
    for mode in ("off", "auto"):
        at = doc["midrun"][mode].get("throttled_at", {}).get("step", -1)
        check(1 <= at < doc["steps"], f"midrun {mode}: b throttled at step {at}, mid-run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
