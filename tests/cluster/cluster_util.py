#!/usr/bin/env python3
"""What the multi-process cluster tests share: starting a supervisor and nodes
of the troupe binary on 127.0.0.1 (ephemeral ports, mutual TLS), submitting
jobs, reading /status, comparing final parameters with a single-process run.
Imported by cluster_test.py and recovery_test.py, which both take

  SCRIPT TROUPE DATA_DIR CASE
"""

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

TROUPE, DATA, CASE = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
WORK = tempfile.mkdtemp(prefix="troupe-cluster-")
PROCS = []

def fail(msg):
    print("FAIL:", msg)
    for p in PROCS:
        for log in (getattr(p, "log_path", None),):
            if log and os.path.exists(log):
                print(f"--- {log}\n" + open(log).read()[-3000:])
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
    print("ok:", msg)


def spawn(args, name):
    log = os.path.join(WORK, name + ".log")
    p = subprocess.Popen([TROUPE] + args, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=WORK)
    p.log_path = log
    p.name = name
    PROCS.append(p)
    return p


def run(args, timeout=120):
    return subprocess.run([TROUPE] + args, capture_output=True, text=True, timeout=timeout, cwd=WORK)


def certs(*names):
    d = os.path.join(WORK, "certs")
    r = run(["certs", "init", "--dir", d])
    check(r.returncode == 0, "troupe certs init: " + r.stderr.strip())
    for n in names:
        r = run(["certs", "issue", "--dir", d, "--name", n])
        check(r.returncode == 0, f"troupe certs issue {n}")
    return d


def wait_for(pred, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    fail("timed out waiting for " + what)


def start_supervisor(cert_dir, expect, extra=()):
    info = os.path.join(WORK, "supervisor.json")
    sup = spawn(["supervisor", "--listen", "127.0.0.1:0", "--certs", cert_dir, "--expect-nodes",
                 str(expect), "--info-file", info, *extra], "supervisor")
    wait_for(lambda: os.path.exists(info), 20, "the supervisor's info file")
    return sup, json.load(open(info))


def start_node(cert_dir, port, name, devices="cpu:1", extra=()):
    return spawn(["node", "--supervisor", f"127.0.0.1:{port}", "--certs", cert_dir, "--name", name,
                  "--devices", devices, "--no-measure", *extra], "node-" + name)


def http(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.read().decode()


def status(info):
    return json.loads(http(info["status_port"], "/status"))


def ready_nodes(info):
    return [n for n in status(info)["nodes"] if n["ready"]]


def submit(cert_dir, info, args, name="client", data="mnist", balance="off"):
    """Submits a job. `balance` "off" (the default here): these tests compare
    topologies with single-process runs, bitwise or nearly, which measured
    shares would change; hetero_test.py runs the default (None: as given)."""
    if balance and "--balance" not in args:
        args = [*args, "--balance", balance]
    return spawn(["train", "--supervisor", f"127.0.0.1:{info['port']}", "--certs", cert_dir,
                  "--name", "client", "--data", os.path.join(DATA, data), "--no-progress", *args],
                 name)


def all_exit(procs, timeout):
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(max(0.01, deadline - time.time()))
        except subprocess.TimeoutExpired:
            return False
    return True


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        data = raw[8 + n + b:8 + n + e]
        out[k] = struct.unpack(f"<{len(data) // 4}f", data)
    return out


# Runs that add the same gradients in another order are compared under SGD
# with momentum: under Adam, rounding differences grow (a near-zero gradient
# gets a full-size step, a ReLU input near 0 flips). See order_insensitive in
# tests/actors/test_util.hpp for the measured noise floors.
ORDER_INSENSITIVE = ["--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05"]


def rel_diff(a, b):
    num = sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5
    den = max(sum(x * x for x in b) ** 0.5, 1e-30)
    return num / den


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()


def stop_cluster(sup, nodes):
    sup.send_signal(signal.SIGTERM)
    check(all_exit([sup] + nodes, 10), "SIGTERM stops the supervisor, which stops the nodes")
    for p in [sup] + nodes:
        check(p.returncode == 0, f"{p.name} exited 0")


def compare_with_local(ck, args, tolerance, model="mlp", data="mnist", name="ck-local"):
    """Runs `model` in this process with `args` and compares its final
    parameters with the checkpoint `ck` of a cluster run."""
    ck_local = os.path.join(WORK, name)
    r = run(["train", "--model", model, "--no-eval", "--no-progress", "--data",
             os.path.join(DATA, data), "--checkpoint", ck_local, "--overwrite", *args])
    check(r.returncode == 0,
          "the single-process run succeeded" + ("" if r.returncode == 0 else ": " + r.stderr[-300:]))
    a = read_safetensors(os.path.join(ck, "model.safetensors"))
    b = read_safetensors(os.path.join(ck_local, "model.safetensors"))
    check(a.keys() == b.keys(), "same parameter names")
    worst = max(rel_diff(a[k], b[k]) for k in a)
    check(worst <= tolerance,
          f"cluster parameters equal single-process ones (max rel diff {worst:.2e})")


def long_job(d, info, parallel=("--stages", "2"), recover=False):
    """A job that runs until stopped; without `recover` the first failure ends
    it (--max-restarts 0), the path the failure-detection cases test."""
    extra = [] if recover else ["--max-restarts", "0"]
    return submit(d, info, ["--model", "mlp", *parallel, "--epochs", "50", "--no-eval", *extra])


def wait_running(info, steps=5):
    def running():
        s = status(info)["job"]
        return s["phase"] == "running" and s["progress"].get("step", 0) >= steps
    wait_for(running, 60, "the job to be running")


def supervisor_log_time(sup, pattern):
    """The supervisor's own timestamp of the first log line matching pattern."""
    for line in open(sup.log_path):
        if re.search(pattern, line):
            t = re.match(r"\[(\d\d):(\d\d):(\d\d)\.(\d\d\d)\]", line)
            if t:
                h, m, s, ms = map(int, t.groups())
                return h * 3600 + m * 60 + s + ms / 1000
    return None


def wall_of_day(t):
    lt = time.gmtime(t)
    return lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (t % 1)


def job_actors(info):
    """The actors of the job that ran last (or is running), from /status."""
    job = status(info)["job"]
    return job["actors"] or job["previous_actors"]


def start_ps_cluster(d, ps_devices="cpu:1", extra=()):
    """A supervisor, node ps-0 (the cluster spec's ps job: the planner puts
    parameter servers there) and two worker nodes. ps-0 joins first and sorts
    first, so without that preference it would get a replica."""
    sup, info = start_supervisor(d, 3, extra)
    ps = start_node(d, info["port"], "ps-0", devices=ps_devices)
    wait_for(lambda: len(ready_nodes(info)) == 1, 30, "node ps-0 ready")
    workers = [start_node(d, info["port"], f"worker-{i}") for i in range(2)]
    wait_for(lambda: len(ready_nodes(info)) == 3, 30, "3 ready nodes")
    return sup, info, ps, workers
