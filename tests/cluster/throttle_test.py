#!/usr/bin/env python3
"""scripts/throttle really slows a process (issue 15's unlike nodes on one
machine): a busy loop pinned to one core gets 0.25 of it under the quota and
all of it again after `clear`, measured from its own CPU time
(/proc/PID/stat utime + stime), never from sleeps.

  throttle_test.py SCRIPTS/THROTTLE

Exit 77 (skip) where scripts/throttle check says no cgroup cpu controller is
writable here.
"""

import os
import subprocess
import sys
import time

THROTTLE = os.path.abspath(sys.argv[1])
NAME = f"test-{os.getpid()}"
TICK = os.sysconf("SC_CLK_TCK")
# Where scripts/throttle makes its groups (cgroup v1, v2, or the override).
GROUP_DIRS = [os.environ.get("TROUPE_CGROUP_CPU", "/sys/fs/cgroup/cpu"), "/sys/fs/cgroup"]


def throttle(*args):
    r = subprocess.run([THROTTLE, *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        print(f"FAIL: throttle {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        sys.exit(1)


def cpu_seconds(pid):
    """utime + stime of `pid` in seconds (fields 14 and 15 of /proc/PID/stat,
    counted after the command name, which may hold spaces)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cpu_share(pid, seconds=1.5):
    """The process's CPU time over `seconds` of wall time, per wall second."""
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def main():
    r = subprocess.run([THROTTLE, "check"], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        print("SKIP:", (r.stderr or r.stdout).strip())
        return 77
    print(r.stdout.strip())
    core = str(max(os.sched_getaffinity(0)))
    # A high priority (root may raise it) keeps a build on the same core from
    # taking half of it: the quota, not the neighbours, must decide.
    nice = ["nice", "-n", "-20"] if os.geteuid() == 0 else []
    busy = subprocess.Popen(nice + ["taskset", "-c", core, sys.executable, "-c",
                                    "while True: pass"])
    failed = False
    try:
        time.sleep(0.3)  # past the interpreter's start
        throttle("set", NAME, str(busy.pid), "0.25")
        share = cpu_share(busy.pid)
        ok = 0.15 <= share <= 0.35
        failed |= not ok
        print(f"{'ok' if ok else 'FAIL'}: at 0.25 of core {core} the loop used {share:.3f} "
              "of wall time (want 0.15 .. 0.35)")
        throttle("clear", NAME)
        gone = not any(os.path.isdir(os.path.join(d, f"troupe-{NAME}")) for d in GROUP_DIRS)
        share = cpu_share(busy.pid)
        ok = share > 0.8 and gone
        failed |= not ok
        print(f"{'ok' if ok else 'FAIL'}: after clear it used {share:.3f} (want > 0.8), "
              f"group {'removed' if gone else 'still there'}")
    finally:
        busy.kill()
        busy.wait()
        subprocess.run([THROTTLE, "clear", NAME], capture_output=True, timeout=30)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
