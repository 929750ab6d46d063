#!/usr/bin/env python3
"""The `troupe train --supervisor` client's view of its job (issue 18): the
events the supervisor streams (waiting for nodes, the plan, progress, epoch
results, restarts, the summary) as plain lines, as JSON lines
(--json-progress), or only the summary (--quiet).

  client_test.py TROUPE DATA_DIR CASE      CASE: stream, json, quiet
"""

import json
import os
import re
import subprocess
import threading
import time

from cluster_util import *  # noqa: F401,F403 (helpers and TROUPE, DATA, CASE, WORK)

# One short epoch (60 steps of 1000 samples) with its evaluation.
JOB = ["--model", "mlp", "--stages", "2", "--batch", "1000", "--epochs", "1", "--balance", "off"]


class watched:
    """A client whose stdout and stderr lines are read as they come, each
    with its arrival time (time.time())."""

    def __init__(self, d, info, args):
        self.lines = []  # (time, "out" | "err", text)
        self.lock = threading.Lock()
        self.p = subprocess.Popen(
            [TROUPE, "train", "--supervisor", f"127.0.0.1:{info['port']}", "--certs", d,
             "--name", "client", "--data", os.path.join(DATA, "mnist"), *JOB, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=WORK)
        PROCS.append(self.p)
        self.readers = [threading.Thread(target=self.read, args=(s, n), daemon=True)
                        for s, n in ((self.p.stdout, "out"), (self.p.stderr, "err"))]
        for t in self.readers:
            t.start()

    def read(self, stream, name):
        for line in stream:
            with self.lock:
                self.lines.append((time.time(), name, line.rstrip("\n")))

    def first(self, pattern, stream=None):
        with self.lock:
            for t, n, text in self.lines:
                if (stream is None or n == stream) and re.search(pattern, text):
                    return t, text
        return None

    def finish(self, timeout=120):
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            fail("the client did not finish")
        for t in self.readers:
            t.join(5)
        return self.p.returncode

    def text(self, stream):
        return "\n".join(text for _, n, text in self.lines if n == stream)


def cluster_after_client(d, args):
    """Starts the supervisor, the client, then (once the client says it
    waits) the two nodes; returns the finished client."""
    sup, info = start_supervisor(d, 2)
    client = watched(d, info, args)
    return sup, info, client


def join_nodes(d, info):
    nodes = [start_node(d, info["port"], "a")]
    wait_for(lambda: len(ready_nodes(info)) == 1, 30, "node a ready")
    nodes.append(start_node(d, info["port"], "b"))
    return nodes


def case_stream():
    d = certs("supervisor", "client", "a", "b")
    sup, info, c = cluster_after_client(d, [])
    wait_for(lambda: c.first(r"job 1 waits for 2 node\(s\) \(0 ready\)", "err"), 30,
             "the client's waiting line")
    nodes = join_nodes(d, info)
    check(c.finish() == 0, "the client's job succeeded")
    err, out = c.text("err"), c.text("out")
    print(err)
    waiting = c.first(r"waits for 2 node\(s\) \(1 ready\)", "err")
    plan = c.first(r"^plan \(.* partition\):", "err")
    progress = c.first(r"^step \d+/60, \d+% of epoch 1/1, \d+ samples/s, loss \d", "err")
    epoch = c.first(r"^epoch 1: train loss \d.*, test accuracy \d+\.\d\d%", "err")
    summary = c.first(r"^model mlp, [\w+-]+: 60 steps, final loss", "out")
    check(waiting is not None, "the client says when one of the two nodes is ready")
    check(all([plan, progress, epoch, summary]), "the client printed the plan, progress, the "
          "epoch's result and the summary")
    check(waiting[0] <= plan[0] <= progress[0] <= epoch[0] <= summary[0],
          "in that order: waiting, plan, progress, epoch, summary")
    # Progress came while the job ran: before the supervisor's "job 1 done".
    done = supervisor_log_time(sup, r"job 1 done")
    check(done is not None and wall_of_day(progress[0]) < done,
          f"the first progress line came during the job ({wall_of_day(progress[0]):.3f} < {done})")
    check(out.count("\n") == 0, "stdout has the summary line only: " + out)
    stop_cluster(sup, nodes)


def case_json():
    d = certs("supervisor", "client", "a", "b")
    sup, info, c = cluster_after_client(
        d, ["--json-progress", "--inject-fault", "stage=1,step=5", "--snapshot-every", "2"])
    wait_for(lambda: c.first(r'"event":"waiting"', "out"), 30, "the waiting event")
    nodes = join_nodes(d, info)
    check(c.finish() == 0, "the client's job succeeded (after a restart)")
    events = [json.loads(line) for line in c.text("out").splitlines()]
    kinds = [e["event"] for e in events]
    print(kinds)
    for k in ("waiting", "plan", "progress", "epoch", "restart", "recovered", "summary"):
        check(k in kinds, f"a {k} event")
    check(kinds[0] == "waiting" and kinds[-1] == "summary", "waiting first, summary last")
    check(all(e["job"] == 1 and e["time"] > 0 for e in events), "every event has its job and time")
    p = next(e for e in events if e["event"] == "progress")
    check(all(k in p for k in ("step", "total_steps", "epoch", "epochs", "epoch_step",
                               "epoch_steps", "percent", "loss", "samples_per_second")),
          "a progress event has its fields: " + json.dumps(p))
    r = next(e for e in events if e["event"] == "restart")
    check("injected fault" in r["what"] and r["restart"] == 1, "the restart names the failure")
    w = [e for e in events if e["event"] == "waiting"]
    check([(e["ready"], e["expected"]) for e in w] == [(0, 2), (1, 2)],
          "waiting events count the ready nodes")
    e = next(e for e in events if e["event"] == "epoch")
    s = events[-1]
    check(e["epoch"] == 1 and 0 < e["test_accuracy"] <= 1 and s["steps"] == 60 and
          s["test_accuracy"] == e["test_accuracy"], "the epoch and summary events agree")
    stop_cluster(sup, nodes)


def case_quiet():
    d = certs("supervisor", "client", "a", "b")
    sup, info, c = cluster_after_client(d, ["--quiet"])
    wait_for(lambda: status(info)["job"]["phase"] == "waiting", 30, "the job to wait")
    nodes = join_nodes(d, info)
    check(c.finish() == 0, "the client's job succeeded")
    err, out = c.text("err"), c.text("out")
    check(err == "", "--quiet: nothing on stderr: " + err[-300:])
    check(re.fullmatch(r"model mlp, [\w+-]+: 60 steps, final loss [^\n]*", out),
          "--quiet: only the summary on stdout: " + out)
    # A local run takes --quiet too: no bar, no epoch line.
    r = run(["train", "--quiet", "--model", "mlp", "--steps", "3", "--no-eval",
             "--data", os.path.join(DATA, "mnist")])
    check(r.returncode == 0 and r.stderr == "" and
          re.fullmatch(r"model mlp, single: 3 steps, final loss [^\n]*\n", r.stdout),
          "a local --quiet run prints only its summary: " + r.stderr[-300:] + r.stdout)
    # Refused by name where they make no sense.
    r = run(["train", "--quiet", "--json-progress", "--supervisor", "127.0.0.1:1"])
    check(r.returncode == 2 and "--quiet and --json-progress" in r.stderr,
          "--quiet with --json-progress is refused: " + r.stderr.strip())
    r = run(["train", "--json-progress", "--steps", "1"])
    check(r.returncode == 2 and "--json-progress needs --supervisor" in r.stderr,
          "--json-progress without --supervisor is refused: " + r.stderr.strip())
    stop_cluster(sup, nodes)


try:
    {"stream": case_stream, "json": case_json, "quiet": case_quiet}[CASE]()
finally:
    cleanup()
shutil.rmtree(WORK, ignore_errors=True)  # kept (with the logs) when a case fails
print("PASS", CASE)
