#!/usr/bin/env python3
"""Loaders on the nodes (--data-from nodes, the default on a cluster): a
2-node --dp 2 job whose data path exists on neither the supervisor nor the
client, only through each node's path map (node a's --data-path flag, node
b's cluster-spec "data_paths"); the supervisor sends no tensor byte, and the
run equals the same job with --data-from supervisor bitwise. A node that
cannot read the data fails the job up front, naming the node and the path.

  data_nodes_test.py TROUPE DATA_DIR CASE
"""

import json
import os
import shutil

from cluster_util import (DATA, WORK, all_exit, certs, check, cleanup, read_safetensors,
                          ready_nodes, spawn, start_node, start_supervisor, status,
                          stop_cluster, submit, wait_for)

# A path no process can open: the nodes map it to the real data.
ELSEWHERE = "/nonexistent-troupe-data"


def sent_tensor_bytes(info):
    """Tensor payload bytes the supervisor's process has sent (inline through
    CAF and over the data plane)."""
    t = status(info)["supervisor"]["transport"]
    return t["caf"]["bytes"] + t["dataplane"]["bytes"]


def job(d, info, name, data, extra=()):
    ck = os.path.join(WORK, "ck-" + name)
    client = submit(d, info, ["--model", "mlp", "--dp", "2", "--steps", "20", "--no-eval",
                              "--check-replicas", "1", "--checkpoint", ck, *extra], name=name,
                    data=data)
    ok = all_exit([client], 120) and client.returncode == 0
    check(ok, f"the {name} job succeeded" + ("" if ok else ": " + open(client.log_path).read()[-800:]))
    return ck


def case_loaders():
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2)
    spec = os.path.join(WORK, "cluster.json")
    json.dump({"supervisor": f"127.0.0.1:{info['port']}",
               "nodes": [{"name": "b", "address": "127.0.0.1:1",
                          "devices": [{"kind": "cpu", "cores": 1}],
                          "data_paths": {ELSEWHERE: DATA}}]}, open(spec, "w"))
    nodes = [start_node(d, info["port"], "a", extra=["--data-path", f"{ELSEWHERE}={DATA}"]),
             start_node(d, info["port"], "b", extra=["--cluster", spec])]
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    before = sent_tensor_bytes(info)
    on_nodes = job(d, info, "nodes", os.path.join(ELSEWHERE, "mnist"))
    sent = sent_tensor_bytes(info) - before
    check(sent == 0, f"the supervisor sent no tensor byte while the nodes read the data ({sent})")
    log = open(sup.log_path).read()
    for n in "ab":
        check(f"node {n} read" in log and f"{ELSEWHERE}/mnist" in log,
              f"the supervisor logs that node {n} read the data through its path map")
        reads = log.count(f"node {n} read --data")
        check(reads == 1, f"node {n} read the data once for the job's launch and its first "
                          f"generation ({reads} reads)\n" + "\n".join(
                              l for l in log.splitlines() if " read " in l))
    before = sent_tensor_bytes(info)
    in_supervisor = job(d, info, "supervisor", os.path.join(DATA, "mnist"),
                        ["--data-from", "supervisor"])
    sent = sent_tensor_bytes(info) - before
    inputs = 20 * 64 * 784 * 4  # 20 steps of 64 f32 images
    check(sent >= inputs, f"with --data-from supervisor it ships every input ({sent} >= {inputs})")
    a = read_safetensors(os.path.join(on_nodes, "model.safetensors"))
    b = read_safetensors(os.path.join(in_supervisor, "model.safetensors"))
    check(a.keys() == b.keys() and all(a[k] == b[k] for k in a),
          "loaders on the nodes give bitwise the parameters of loaders in the supervisor")
    # A relative path neither node can read: the client sends it resolved in
    # its own working directory (WORK), and the job fails before any step,
    # naming a node and that absolute path.
    client = spawn(["train", "--supervisor", f"127.0.0.1:{info['port']}", "--certs", d,
                    "--name", "client", "--data", "no-such-data", "--model", "mlp", "--dp", "2",
                    "--steps", "5", "--no-progress"], "bad")
    check(all_exit([client], 60) and client.returncode == 2, "a job with unreadable data exits 2")
    out = open(client.log_path).read()
    check("node " in out and os.path.join(WORK, "no-such-data") in out and
          "--data-from nodes" in out,
          "the error names the node, the client's absolute path and where the data is read: " +
          out.strip()[-300:])
    stop_cluster(sup, nodes)


try:
    {"loaders": case_loaders}[__import__("sys").argv[3]]()
finally:
    cleanup()
shutil.rmtree(WORK, ignore_errors=True)
print("PASS")
