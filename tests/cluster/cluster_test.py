#!/usr/bin/env python3
"""Multi-process cluster tests: a supervisor and node processes of the troupe
binary on 127.0.0.1 with ephemeral ports and mutual TLS (certificates made
with `troupe certs`).

  cluster_test.py TROUPE DATA_DIR CASE

CASE is one of: equivalence, interleaved, transformer, kill9, sigstop, sigstop_resume,
crash_report,
credentials, garbage, spec, dp, dp_kill9, pp_dp, tp_pp, ps, ps_kill9.
Each case starts its own processes and makes sure none is left behind.
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

from cluster_util import *  # noqa: F401,F403 (helpers and TROUPE, DATA, CASE, WORK)


def case_equivalence():
    d = certs("supervisor", "client", "a", "b", "c")
    sup, info = start_supervisor(d, 3)
    nodes = [start_node(d, info["port"], n) for n in "abc"]
    wait_for(lambda: len(ready_nodes(info)) == 3, 30, "3 ready nodes")
    ck = os.path.join(WORK, "ck-cluster")
    client = submit(d, info, ["--model", "mlp", "--stages", "3", "--steps", "40", "--no-eval",
                              "--checkpoint", ck, "--report", os.path.join(WORK, "r.json")])
    # While it runs, /status lists its actors with their nodes and pids.
    seen = {}

    def job_seen():
        s = status(info)
        for a in s["job"]["actors"] + s["job"]["previous_actors"]:
            if a["kind"] == "layer_shard":
                seen[a["label"]] = a["pid"]
        return client.poll() is not None

    wait_for(job_seen, 120, "the job to end")
    check(client.returncode == 0, "the cluster job succeeded")
    pids = set(seen.values())
    node_pids = {p.pid for p in nodes}
    check(len(seen) == 3 and pids == node_pids,
          f"/status shows the 3 stage actors in the 3 node pids {sorted(pids)}")
    time.sleep(1.0)  # one more heartbeat brings the nodes' final counters
    metrics = http(info["status_port"], "/metrics")
    dp = [float(v) for v in re.findall(
        r'^troupe_dataplane_peer_bytes_sent_total\{node="[abc]",peer="[abc]"\} (\S+)$', metrics, re.M)]
    check(dp and sum(dp) > 0, f"node-to-node data-plane byte counters > 0 ({sum(dp):.0f} bytes)")
    stop_cluster(sup, nodes)
    compare_with_local(ck, ["--stages", "3", "--threads", "3", "--steps", "40"], 1e-6)


def check_nodes_exchanged(info):
    """Nodes a and b each sent the other bytes over the data plane."""
    time.sleep(1.0)  # one more heartbeat brings the nodes' final counters
    metrics = http(info["status_port"], "/metrics")
    dp = [float(v) for v in re.findall(
        r'^troupe_dataplane_peer_bytes_sent_total\{node="[ab]",peer="[ab]"\} (\S+)$', metrics, re.M)]
    check(len(dp) == 2 and min(dp) > 0, f"both nodes sent to each other over the data plane {dp}")


def case_interleaved():
    """Interleaved 1F1B across 2 node processes (2 chunks each, the pipeline
    wrapping from node b back to node a) equals --stages 1 with the same
    micro-batches. --batch 256 makes activations 256 KiB: over the data plane."""
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2)
    nodes = [start_node(d, info["port"], n) for n in "ab"]
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    ck = os.path.join(WORK, "ck-cluster")
    common = ["--batch", "256", "--microbatches", "4", "--steps", "20"]
    client = submit(d, info, ["--model", "mlp", "--stages", "2", "--schedule", "interleaved",
                              "--virtual-stages", "2", "--no-eval", "--checkpoint", ck,
                              "--report", os.path.join(WORK, "r.json"), *common])
    check(all_exit([client], 120) and client.returncode == 0, "the interleaved cluster job succeeded")
    report = json.load(open(os.path.join(WORK, "r.json")))
    chunks = [s["chunks"] for s in report["plan"]["stages"]]
    check(report["plan"]["virtual_stages"] == 2 and all(len(c) == 2 for c in chunks),
          f"each node's shard holds 2 chunks {chunks}")
    check_nodes_exchanged(info)
    stop_cluster(sup, nodes)
    # One BLAS thread, as each node's device has: the same GEMM summation order.
    compare_with_local(ck, ["--stages", "1", "--threads", "1", *common], 1e-5)


def case_transformer():
    """The character language model, 1F1B over 2 node processes with
    clipping (the stages' sums of squares meet at the trainer in the
    supervisor's process) and warm-up + cosine, equals --stages 1 with the same
    micro-batches and schedule in one process (on one stage the schedule only
    orders the micro-batches' backwards, i.e. how their gradients add up, and
    the attention's key bias, whose exact gradient is 0, turns that rounding
    into +-lr Adam updates). --batch 64 in 4 micro-batches makes
    activations [16, 64, 64] f32, 256 KiB: over the data plane."""
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2)
    nodes = [start_node(d, info["port"], n) for n in "ab"]
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    ck = os.path.join(WORK, "ck-cluster")
    common = ["--batch", "64", "--microbatches", "4", "--schedule", "1f1b", "--steps", "20",
              "--optimizer", "adamw", "--lr", "0.01", "--lr-schedule", "cosine",
              "--warmup-steps", "5", "--clip-norm", "0.1"]
    client = submit(d, info, ["--model", "transformer", "--stages", "2", "--no-eval",
                              "--checkpoint", ck, "--report", os.path.join(WORK, "r.json"),
                              *common], data="sherlock.txt")
    check(all_exit([client], 150) and client.returncode == 0,
          "the transformer cluster job succeeded")
    report = json.load(open(os.path.join(WORK, "r.json")))
    check(report["grad_norm"] > 0.1,
          f"clipping was active (last global norm {report['grad_norm']:.3f} > 0.1)")
    check_nodes_exchanged(info)
    stop_cluster(sup, nodes)
    compare_with_local(ck, ["--stages", "1", "--threads", "1", *common], 1e-5,
                       model="transformer", data="sherlock.txt")


def case_failure(sig, parallel=("--stages", "2")):
    """Node b dies (kill -9) or hangs (SIGSTOP) mid-training: with recovery
    off (--max-restarts 0) the job fails naming it within 2 s. With --dp 2 each node holds a replica, so the death
    comes in the middle of gradient all-reduces."""
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2, ["--jobs", "1", "--heartbeat-ms", "250", "--timeout-ms",
                                        "1500"])
    a = start_node(d, info["port"], "a")
    b = start_node(d, info["port"], "b")
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    client = long_job(d, info, parallel)
    wait_running(info)
    t0 = time.time()
    os.kill(b.pid, sig)
    try:
        client.wait(10)
    except subprocess.TimeoutExpired:
        fail("the client did not fail within 10 s")
    t_client = time.time() - t0
    out = open(client.log_path).read()
    check(client.returncode == 1, "the client's job failed (exit 1)")
    check("node b" in out or "on b/" in out, "the error names node b: " + out.strip()[-200:])
    detected = supervisor_log_time(sup, r"job \d+ aborted")
    lag = (detected - wall_of_day(t0)) if detected is not None else t_client
    print(f"detection: supervisor log {lag:.3f} s after the signal, client exit after {t_client:.3f} s")
    check(lag < 2.0, f"failure detected within 2 s ({lag:.3f} s)")
    check(all_exit([sup, a], 5), "the supervisor and the surviving node exit")
    if sig == signal.SIGSTOP:
        os.kill(b.pid, signal.SIGCONT)
    check(all_exit([b], 10), "the failed node's process is gone too")
    if sig == signal.SIGSTOP:
        check(b.returncode >= 0, f"the resumed node ends by exit status, not a signal ({b.returncode})")


def case_patience():
    """--timeout-ms governs the supervisor's own ping of each node agent too:
    with --timeout-ms 6000 on every process, node b stopped (SIGSTOP) for 3 s
    mid-job is waited for, and the job (recovery off) runs on and succeeds.
    With the ping's old fixed 1.2 s deadline the supervisor dropped b and the
    job failed. Then, on the same supervisor, a node silent for longer than the
    timeout is still declared lost, within 2 s of it."""
    d = certs("supervisor", "client", "a", "b")
    patient = ["--heartbeat-ms", "250", "--timeout-ms", "6000"]
    sup, info = start_supervisor(d, 2, patient)
    a, b = (start_node(d, info["port"], n, extra=patient) for n in "ab")
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    client = submit(d, info, ["--model", "mlp", "--stages", "2", "--steps", "300", "--no-eval",
                              "--max-restarts", "0"])
    wait_running(info)
    os.kill(b.pid, signal.SIGSTOP)
    time.sleep(3)
    check(client.poll() is None, "the job still runs while b is stopped for 3 s")
    os.kill(b.pid, signal.SIGCONT)
    check(all_exit([client], 120) and client.returncode == 0,
          "the job succeeded: " + open(client.log_path).read().strip()[-300:])
    check(supervisor_log_time(sup, r"node \w+ lost") is None, "no node was declared lost")
    check(len(ready_nodes(info)) == 2, "both nodes stay")
    client = long_job(d, info)
    wait_running(info)
    t0 = time.time()
    os.kill(b.pid, signal.SIGSTOP)
    check(all_exit([client], 20) and client.returncode == 1, "the job failed (exit 1)")
    lag = time.time() - t0
    print(f"a node stopped for good: the client failed {lag:.3f} s after the signal")
    check(6.0 - 0.3 < lag < 6.0 + 2.0, f"after the 6 s timeout, within 2 s ({lag:.3f} s)")
    out = open(client.log_path).read()
    check("node b" in out or "on b/" in out, "the error names node b: " + out.strip()[-200:])
    os.kill(b.pid, signal.SIGCONT)
    wait_for(lambda: sorted(n["name"] for n in ready_nodes(info)) == ["a", "b"], 30,
             "node b to rejoin")
    stop_cluster(sup, [a, b])


def case_sigstop_resume():
    """A node stopped mid-job (SIGSTOP) is dropped; with recovery off the job
    fails naming it. SIGCONT 4 s later, while the supervisor still runs: the
    resumed node learns it was dropped, says so, and rejoins the cluster as a
    fresh node (a new process image: nothing of its old job survives). Then
    every process ends within 5 s of the supervisor being stopped, exit 0."""
    d = certs("supervisor", "client", "a", "b", "c")
    sup, info = start_supervisor(d, 3)
    nodes = [start_node(d, info["port"], n) for n in "abc"]
    wait_for(lambda: len(ready_nodes(info)) == 3, 30, "3 ready nodes")
    client = submit(d, info, ["--model", "mlp", "--dp", "3", "--batch", "192", "--epochs", "50",
                              "--no-eval", "--max-restarts", "0"])
    wait_running(info)
    victim = nodes[2]
    os.kill(victim.pid, signal.SIGSTOP)
    check(all_exit([client], 15) and client.returncode == 1, "the job failed (exit 1)")
    out = open(client.log_path).read()
    check("node c" in out or "on c/" in out, "the error names node c: " + out.strip()[-200:])
    time.sleep(4)
    os.kill(victim.pid, signal.SIGCONT)
    wait_for(lambda: "rejoining the cluster as a fresh node" in open(victim.log_path).read(), 15,
             "the resumed node to rejoin")
    log = open(victim.log_path).read()
    check(re.search(r"(dropped by the supervisor|supervisor went away)", log) is not None,
          "the resumed node logs why it starts over: " + log.strip()[-300:])
    wait_for(lambda: sorted(n["name"] for n in ready_nodes(info)) == ["a", "b", "c"], 30,
             "node c to be ready again")
    check(victim.poll() is None and victim.pid == [n["pid"] for n in status(info)["nodes"]
                                                   if n["name"] == "c"][0],
          "the same process rejoined (re-executed itself)")
    sup.send_signal(signal.SIGTERM)
    check(all_exit([sup] + nodes, 5), "every process ends within 5 s of the supervisor's stop")
    for p in [sup] + nodes:
        check(p.returncode == 0, f"{p.name} exited 0")


def case_crash_report():
    """A process that dies by a fatal signal leaves a line and a backtrace in
    its log and still ends by that signal (its status and core say what
    happened); SIGINT of a local run says so before the default action."""
    d = certs("supervisor", "a")
    sup, info = start_supervisor(d, 1)
    a = start_node(d, info["port"], "a")
    wait_for(lambda: len(ready_nodes(info)) == 1, 30, "1 ready node")
    os.kill(a.pid, signal.SIGSEGV)
    check(all_exit([a], 10), "the node ends")
    check(a.returncode == -signal.SIGSEGV, f"it ends by SIGSEGV ({a.returncode})")
    log = open(a.log_path).read()
    check(re.search(r"fatal: troupe node \(pid \d+\): signal 11 \(SIGSEGV\); backtrace:", log)
          is not None, "its log says why: " + log.strip()[-300:])
    check(log.count("\n") >= 4, "with a backtrace")
    wait_for(lambda: not ready_nodes(info), 10, "the supervisor to drop node a")
    sup.send_signal(signal.SIGTERM)
    check(all_exit([sup], 5) and sup.returncode == 0, "the supervisor stops cleanly")
    local = spawn(["train", "--model", "mlp", "--epochs", "50", "--no-eval", "--no-progress",
                   "--data", os.path.join(DATA, "mnist")], "local")
    time.sleep(3)
    local.send_signal(signal.SIGINT)
    check(all_exit([local], 10), "a local run ends on SIGINT")
    out = open(local.log_path).read()
    check(re.search(r"interrupted at step \d+: no checkpoint", out) is not None and
          local.returncode == 130, "and says so, exit 130: " + out.strip()[-200:])


def case_dp():
    """--dp 2 across two node processes (one replica each, gradients
    all-reduced between the processes over the data plane): 20 steps equal
    one replica in one process that takes the batch as the same two halves
    (--microbatches 2), bitwise: the all-reduce adds the halves' whole sums
    as one device adds its micro-batches; the replicas are bitwise identical
    after every step; then MNIST for 3 epochs reaches single-device accuracy
    (>= 97.0%)."""
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2)
    nodes = [start_node(d, info["port"], n) for n in "ab"]
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    ck = os.path.join(WORK, "ck-cluster")
    client = submit(d, info, ["--model", "mlp", "--dp", "2", "--steps", "20", "--no-eval",
                              "--check-replicas", "1", "--checkpoint", ck,
                              "--report", os.path.join(WORK, "r.json")])
    check(all_exit([client], 120) and client.returncode == 0, "the --dp 2 cluster job succeeded")
    report = json.load(open(os.path.join(WORK, "r.json")))
    nodes_of = sorted(s["node"] for s in report["plan"]["stages"])
    check(nodes_of == ["a", "b"], f"one replica on each node {nodes_of}")
    check(report["replica_checks"] == 20, "the replicas were bitwise identical after every step")
    check_nodes_exchanged(info)
    metrics = http(info["status_port"], "/metrics")
    reduced = re.findall(r'^troupe_actor_allreduce_bytes_total\{actor="layer_shard replica (\d) '
                         r'stage 0",node="([ab])"\} (\S+)$', metrics, re.M)
    check(sorted((r, n) for r, n, _ in reduced) == [("0", "a"), ("1", "b")] and
          all(float(v) > 0 for _, _, v in reduced),
          f"/metrics shows each replica's all-reduced bytes on its node {reduced}")
    client = submit(d, info, ["--model", "mlp", "--dp", "2", "--epochs", "3",
                              "--report", os.path.join(WORK, "r3.json")])
    check(all_exit([client], 170) and client.returncode == 0, "the 3-epoch --dp 2 job succeeded")
    accuracy = json.load(open(os.path.join(WORK, "r3.json")))["test_accuracy"]
    print(f"--dp 2 across 2 processes, 3 epochs: test accuracy {100 * accuracy:.2f}%")
    check(accuracy >= 0.970, f"3 epochs reach >= 97.0% ({100 * accuracy:.2f}%)")
    stop_cluster(sup, nodes)
    compare_with_local(ck, ["--threads", "1", "--steps", "20", "--microbatches", "2"], 0.0)


def case_pp_dp():
    """--pp 2 --dp 2 (1F1B, 4 micro-batches per replica) across two node
    processes of two devices each: the plan puts each replica's pipeline
    across the two processes (activations of 32 x 1024 f32, 128 KiB, over the
    data plane) and stage k's replicas in one process (its all-reduce stays
    local); 20 steps equal the same pipeline without replicas in one process,
    and one device in one process (the whole batch of 256 at once). Both add
    the gradients in another order: SGD (order_insensitive)."""
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2)
    nodes = [start_node(d, info["port"], n, devices="cpu:2") for n in "ab"]
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    ck = os.path.join(WORK, "ck-cluster")
    common = ["--pp", "2", "--microbatches", "4", "--schedule", "1f1b", "--batch", "256",
              "--steps", "20", *ORDER_INSENSITIVE]
    client = submit(d, info, ["--model", "mlp", "--dp", "2", "--no-eval", "--check-replicas", "1",
                              "--bucket-mb", "1", "--checkpoint", ck,
                              "--report", os.path.join(WORK, "r.json"), *common])
    check(all_exit([client], 120) and client.returncode == 0, "the --pp 2 --dp 2 cluster job succeeded")
    report = json.load(open(os.path.join(WORK, "r.json")))
    check(report["strategy"] == "pipeline+data-parallel", report["strategy"])
    placement = [(s["replica"], s["stage"], s["node"]) for s in report["plan"]["stages"]]
    check(all(r[2] in "ab" for r in placement) and
          {r[2] for r in placement if r[0] == 0} == {"a", "b"},
          f"each replica's pipeline spans both nodes {placement}")
    check(report["replica_checks"] == 20, "the replicas were bitwise identical after every step")
    check_nodes_exchanged(info)
    stop_cluster(sup, nodes)
    compare_with_local(ck, ["--threads", "2", *common], 1e-5)
    # And the same global batch on one device in one process, in one piece.
    compare_with_local(ck, ["--stages", "1", "--threads", "1", "--batch", "256", "--steps", "20",
                            *ORDER_INSENSITIVE], 1e-5, name="ck-local-1")


def data_plane_bytes(info, node, peer, direction="sent"):
    """node's data-plane byte counter towards (from) peer in /metrics."""
    metrics = http(info["status_port"], "/metrics")
    v = re.findall(rf'^troupe_dataplane_peer_bytes_{direction}_total\{{node="{re.escape(node)}",'
                   rf'peer="{re.escape(peer)}"\}} (\S+)$', metrics, re.M)
    return float(v[0]) if v else 0.0


def case_tp_pp():
    """--pp 2 --tp 2 across two node processes of two devices each: with
    --balance off the plan takes devices round-robin across the nodes (auto
    keeps a tp group in one process, the fastest link), so each stage's two
    tensor-parallel ranks sit in different processes (and stage k -> k + 1
    stays in one) and their collectives take the data plane: the flops split
    cuts the MLP's column/row dense pair (layers 0 | 2), so the column layer
    all-gathers its 64 x 1024 f32 output, and the row layer all-reduces its
    64 x 512 one (128 KiB). 20 steps of the MLP and of the transformer equal
    one device in one process (--stages 1, one BLAS thread). SGD: the row
    layer adds partial products, another summation order, and under Adam
    rounding grows (tests/actors/test_util.hpp, order_insensitive)."""
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2)
    nodes = [start_node(d, info["port"], n, devices="cpu:2") for n in "ab"]
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    pid_of = {"a": nodes[0].pid, "b": nodes[1].pid}

    def check_tp_placement(what):
        report = json.load(open(os.path.join(WORK, "r.json")))
        check(report["strategy"] == "layer-placement+tensor-parallel" and report["tp"] == 2,
              f"{what}: strategy {report['strategy']}, tp {report['tp']}")
        by_stage = {}
        for s in report["plan"]["stages"]:
            by_stage.setdefault(s["stage"], {})[s["tp_rank"]] = s["node"]
        check(sorted(by_stage) == [0, 1] and
              all(sorted(r.values()) == ["a", "b"] for r in by_stage.values()),
              f"{what}: each stage's 2 tp ranks on different nodes {by_stage}")
        # /status: each stage's layer shards and tensor-parallel collective
        # ranks run in the two node processes.
        acts = job_actors(info)
        for stage in (0, 1):
            for kind, prefix in (("layer_shard", "layer_shard stage"),
                                 ("collective", "tensor-parallel rank of stage")):
                mine = [a for a in acts if a["kind"] == kind and
                        a["label"].startswith(f"{prefix} {stage} tp rank ")]
                pids = sorted(a["pid"] for a in mine)
                check(pids == sorted(pid_of.values()),
                      f"{what}: /status shows stage {stage}'s {kind} actors in the node pids {pids}")

    ck = os.path.join(WORK, "ck-cluster")
    client = submit(d, info, ["--balance", "off", "--model", "mlp", "--pp", "2", "--tp", "2", "--steps", "20",
                              "--no-eval", "--checkpoint", ck, *ORDER_INSENSITIVE,
                              "--report", os.path.join(WORK, "r.json")])
    check(all_exit([client], 120) and client.returncode == 0, "the --pp 2 --tp 2 MLP job succeeded")
    check_tp_placement("mlp")
    check_nodes_exchanged(info)
    ck_t = os.path.join(WORK, "ck-cluster-t")
    common_t = ["--steps", "20", "--optimizer", "sgd", "--lr", "0.1"]
    client = submit(d, info, ["--balance", "off", "--model", "transformer", "--pp", "2", "--tp", "2", "--no-eval",
                              "--checkpoint", ck_t, "--report", os.path.join(WORK, "r.json"),
                              *common_t], data="sherlock.txt")
    check(all_exit([client], 120) and client.returncode == 0,
          "the --pp 2 --tp 2 transformer job succeeded")
    check_tp_placement("transformer")
    stop_cluster(sup, nodes)
    compare_with_local(ck, ["--stages", "1", "--threads", "1", "--steps", "20",
                            *ORDER_INSENSITIVE], 1e-5)
    compare_with_local(ck_t, ["--stages", "1", "--threads", "1", *common_t], 1e-5,
                       model="transformer", data="sherlock.txt", name="ck-local-t")


def case_ps():
    """Parameter servers across processes: node ps-0 holds 2 ps shards (the
    MLP's two big weights split across both), worker-0 and worker-1 one
    replica each; gradients are pushed and parameters pulled (5.3 MB per
    worker and step) over the data plane. Sync mode for 20 steps equals,
    bitwise, one device in one process with 2 micro-batches (the checkpoint's
    parameters, gathered from the ps shards) with the workers bitwise
    identical after every step.
    Injected faults of a ps shard and of a worker fail their jobs naming them.
    Then a topology saved by `troupe plan` from a TF_CONFIG spec (1 ps shard,
    ssp with staleness 1) runs with `troupe train --plan` on the same cluster."""
    d = certs("supervisor", "client", "worker-0", "worker-1", "ps-0")
    sup, info, ps, workers = start_ps_cluster(d, ps_devices="cpu:2")
    pid_of = {"ps-0": ps.pid, "worker-0": workers[0].pid, "worker-1": workers[1].pid}
    ck = os.path.join(WORK, "ck-cluster")
    client = submit(d, info, ["--model", "mlp", "--ps", "2", "--workers", "2", "--ps-mode", "sync",
                              "--steps", "20", "--no-eval", "--check-replicas", "1",
                              "--checkpoint", ck, "--report", os.path.join(WORK, "r.json")])
    check(all_exit([client], 120) and client.returncode == 0, "the --ps 2 --workers 2 sync job succeeded")
    report = json.load(open(os.path.join(WORK, "r.json")))
    check(report["strategy"] == "data-parallel+parameter-server" and report["ps_mode"] == "sync",
          f"strategy {report['strategy']}, mode {report['ps_mode']}")
    check(report["replica_checks"] == 20, "the workers were bitwise identical after every step")
    stats = {s["shard"]: s for s in report["ps"]}
    check(sorted(stats) == [0, 1] and
          all(s["pushes"] == 40 and s["pulls"] >= 40 and s["updates"] == 20 and s["bytes_in"] > 0
              for s in stats.values()),
          "each ps shard got 2 x 20 pushes and pulls and applied 20 updates " +
          str([(s["pushes"], s["pulls"], s["updates"]) for s in stats.values()]))
    acts = job_actors(info)
    ps_actors = sorted((a["label"].split(" on ")[0], a["node"], a["pid"]) for a in acts
                       if a["kind"] == "ps_shard")
    check(ps_actors == [("ps_shard 0", "ps-0", ps.pid), ("ps_shard 1", "ps-0", ps.pid)],
          f"/status shows both ps_shard actors on node ps-0 (pid {ps.pid}): {ps_actors}")
    shard_nodes = sorted((a["node"], a["pid"]) for a in acts if a["kind"] == "layer_shard")
    check(shard_nodes == [("worker-0", pid_of["worker-0"]), ("worker-1", pid_of["worker-1"])],
          f"/status shows one replica on each worker node {shard_nodes}")
    # 20 pushes and 20 pulls of the 5.3 MB of parameters per worker; the
    # nodes' counters arrive with the supervisor's next pings.
    moved = {}

    def counted():
        moved.update({(w, direction): data_plane_bytes(info, "ps-0", w, direction)
                      for w in ("worker-0", "worker-1") for direction in ("sent", "received")})
        return all(v > 20 * 5e6 for v in moved.values())

    deadline = time.time() + 5
    while not counted() and time.time() < deadline:
        time.sleep(0.2)
    check(counted(), f"ps-0's data plane carried the pushes (received) and pulls (sent) {moved}")
    # Like with like, bitwise: the shards add the 2 workers' whole gradients
    # in worker order, as one device adds 2 micro-batches.
    compare_with_local(ck, ["--stages", "1", "--threads", "1", "--steps", "20",
                            "--microbatches", "2"], 0.0)
    # With recovery off, an injected fault of ps shard 1 (in ps-0's process)
    # and one of worker replica 1 fail their jobs naming the actor and its
    # node; the cluster stays.
    for fault, who in (("ps=1,step=3", "ps_shard 1 on ps-0/cpu:1"),
                       ("stage=0,step=3,replica=1", "layer_shard replica 1 stage 0 on worker-1/")):
        client = submit(d, info, ["--model", "mlp", "--ps", "2", "--workers", "2", "--steps", "20",
                                  "--no-eval", "--inject-fault", fault, "--max-restarts", "0"])
        check(all_exit([client], 60) and client.returncode == 1, f"--inject-fault {fault}: exit 1")
        out = open(client.log_path).read()
        check(who in out and "injected fault" in out, f"the error names {who}: " + out.strip()[-200:])
    check(len(ready_nodes(info)) == 3, "the 3 nodes stay")
    # troupe plan on a TF_CONFIG spec (chief, 2 workers, 1 ps): saved, then run.
    spec = os.path.join(WORK, "tf_config.json")
    json.dump({"cluster": {"chief": ["127.0.0.1:7000"],
                           "worker": ["127.0.0.1:7001", "127.0.0.1:7002"],
                           "ps": ["127.0.0.1:7003"]},
               "task": {"type": "chief", "index": 0}}, open(spec, "w"))
    plan = os.path.join(WORK, "plan.json")
    r = run(["plan", "--model", "mlp", "--ps", "1", "--workers", "2", "--ps-mode", "ssp",
             "--staleness", "1", "--cluster-spec", spec, "--save", plan])
    line = re.search(r"^.*ps 0 on \S+.*$", r.stdout, re.M)
    check(r.returncode == 0 and line is not None and "ps 0 on ps-0/cpu:0" in line.group(0),
          "troupe plan puts the ps shard on ps-0: " +
          (line.group(0).strip() if line else (r.stdout + r.stderr).strip()[-300:]))
    client = submit(d, info, ["--model", "mlp", "--plan", plan, "--steps", "20", "--no-eval",
                              "--report", os.path.join(WORK, "r-ssp.json")])
    check(all_exit([client], 120) and client.returncode == 0,
          "the saved ssp plan (--plan) ran on the cluster")
    report = json.load(open(os.path.join(WORK, "r-ssp.json")))
    check(report["ps_mode"] == "ssp" and len(report["ps"]) == 1 and
          report["ps"][0]["max_gap"] <= 1 and report["ps"][0]["pushes"] == 40,
          f"ssp with staleness 1: {report['ps_mode']}, {report['ps']}")
    ps_nodes = [a["node"] for a in job_actors(info) if a["kind"] == "ps_shard"]
    check(ps_nodes == ["ps-0"], f"the planned ps shard ran on ps-0 {ps_nodes}")
    stop_cluster(sup, [ps] + workers)


def case_ps_kill9():
    """kill -9 of the ps node, then (on the same supervisor, after a new ps-0
    joined) of a worker node, in the middle of a --ps 1 --workers 2 job with
    recovery off: each time the client exits 1 within 2 s of the signal
    naming the node."""
    d = certs("supervisor", "client", "worker-0", "worker-1", "ps-0")
    sup, info, ps, workers = start_ps_cluster(d, extra=["--heartbeat-ms", "250", "--timeout-ms",
                                                        "1500"])

    def kill_mid_job(victim, name):
        client = long_job(d, info, ("--ps", "1", "--workers", "2"))
        wait_running(info)
        acts = status(info)["job"]["actors"]
        on = sorted((a["kind"], a["node"]) for a in acts if a["kind"] in ("ps_shard", "layer_shard"))
        check(on == [("layer_shard", "worker-0"), ("layer_shard", "worker-1"), ("ps_shard", "ps-0")],
              f"the ps shard runs on ps-0, a replica on each worker {on}")
        t0 = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        try:
            client.wait(10)
        except subprocess.TimeoutExpired:
            fail(f"the client did not fail within 10 s of killing {name}")
        t_client = time.time() - t0
        out = open(client.log_path).read()
        print(f"kill -9 {name}: client exit after {t_client:.3f} s")
        check(client.returncode == 1, f"the client's job failed (exit {client.returncode})")
        check(f"node {name}" in out or f"on {name}/" in out,
              f"the error names node {name}: " + out.strip()[-240:])
        check(t_client < 2.0, f"the client exited within 2 s of the signal ({t_client:.3f} s)")
        check(all_exit([victim], 5), f"{name}'s process is gone")
        wait_for(lambda: status(info)["job"]["phase"] == "idle", 5, "the supervisor to be idle")
        check(name in status(info)["job"]["last_error"], "the job was aborted for " + name)
        wait_for(lambda: all(n["transport"].get("actors", 1) == 0 for n in ready_nodes(info)), 5,
                 "the surviving nodes to drop the job's actors")
        check(name not in [n["name"] for n in ready_nodes(info)], f"{name} was dropped")

    kill_mid_job(ps, "ps-0")
    ps = start_node(d, info["port"], "ps-0")
    wait_for(lambda: sorted(n["name"] for n in ready_nodes(info)) ==
             ["ps-0", "worker-0", "worker-1"], 30, "a new ps-0 to join")
    kill_mid_job(workers[1], "worker-1")
    sup.send_signal(signal.SIGTERM)
    check(all_exit([sup, ps, workers[0]], 10), "SIGTERM stops the supervisor and the nodes left")
    check(all(p.returncode == 0 for p in (sup, ps, workers[0])), "all exit 0")


def case_credentials():
    d = certs("supervisor", "client", "a", "b")
    other = os.path.join(WORK, "other")
    run(["certs", "init", "--dir", other])
    run(["certs", "issue", "--dir", other, "--name", "a"])
    sup, info = start_supervisor(d, 1)
    # A certificate from another CA: the TLS handshake fails, nothing joins.
    rogue = start_node(other, info["port"], "a", extra=["--connect-timeout", "2"])
    check(all_exit([rogue], 30) and rogue.returncode != 0, "a node with a foreign CA is rejected")
    # The cluster CA's certificate of "a" used to claim the name "b".
    liar = spawn(["node", "--supervisor", f"127.0.0.1:{info['port']}", "--cert",
                  os.path.join(d, "a.pem"), "--key", os.path.join(d, "a-key.pem"), "--ca",
                  os.path.join(d, "ca.pem"), "--name", "b", "--no-measure"], "liar")
    check(all_exit([liar], 30) and liar.returncode == 2, "a node claiming another name exits 2")
    text = open(liar.log_path).read()
    check("does not match" in text, "and is told why: " + text.strip()[-160:])
    # No credentials at all / plain TCP off loopback are refused up front.
    r = run(["node", "--supervisor", f"127.0.0.1:{info['port']}", "--name", "x"])
    check(r.returncode == 2 and "credentials" in r.stderr, "no credentials: exit 2")
    r = run(["node", "--supervisor", "10.1.2.3:7000", "--insecure-plain", "--name", "x"])
    check(r.returncode == 2 and "loopback" in r.stderr, "--insecure-plain off loopback: exit 2")
    check(status(info)["nodes"] == [], "no node joined")
    sup.send_signal(signal.SIGINT)
    check(all_exit([sup], 10) and sup.returncode == 0, "SIGINT stops the supervisor cleanly")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def send_bytes(port, data, read=True):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
            s.sendall(data)
            if read:
                s.settimeout(0.3)
                try:
                    s.recv(4096)
                except OSError:
                    pass
    except OSError:
        pass


def case_garbage():
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2)
    a = start_node(d, info["port"], "a")
    b = start_node(d, info["port"], "b")
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    ports = [info["port"], info["data_port"], info["status_port"]]
    ports += [n["data_plane"]["port"] for n in ready_nodes(info)]
    before = {p.pid: rss_kib(p.pid) for p in (sup, a, b)}
    basp_header = struct.pack(">IQQQQII", 1, 0, 0, 0, 0, 0xFFFFFFF0, 0)  # claims ~4 GiB payload
    frame_header = b"TRDP" + struct.pack("<H", 1) + b"\x01\x00" + b"\xff" * 96  # bad fields
    huge_len = b"TRDP" + struct.pack("<HBB", 1, 1, 0) + b"\x00" * 8 + struct.pack("<Q", 1 << 62) + b"\x00" * 80
    payloads = [os.urandom(4096), b"\x00" * 16, basp_header, frame_header, frame_header[:50], huge_len,
                b"GET /status HTTP/1.1\r\nHost: x\r\n" + b"X: " + b"a" * 20000 + b"\r\n\r\n",
                b"\x16\x03\x01\xff\xff" + os.urandom(300)]
    for port in ports:
        for data in payloads:
            send_bytes(port, data)
    time.sleep(0.5)
    for p in (sup, a, b):
        check(p.poll() is None, f"{p.name} survived garbage on every port")
        grown = rss_kib(p.pid) - before[p.pid]
        check(grown < 64 * 1024, f"{p.name} allocated no large buffer (RSS +{grown} KiB)")
    client = submit(d, info, ["--model", "mlp", "--stages", "2", "--steps", "10", "--no-eval"])
    check(all_exit([client], 60) and client.returncode == 0, "a job still runs afterwards")
    sup.send_signal(signal.SIGTERM)
    check(all_exit([sup, a, b], 10), "SIGTERM stops the supervisor and it stops the nodes")
    check(all(p.returncode == 0 for p in (sup, a, b)), "all exit 0")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case_spec():
    """TF_CONFIG: the supervisor admits the spec's workers, nodes take their
    names from their task, and a launcher rank outside the spec is refused."""
    d = certs("supervisor", "client", "worker-0", "worker-1", "node-3")
    port = free_port()
    cluster = {"chief": [f"127.0.0.1:{port}"], "worker": ["127.0.0.1:7101", "127.0.0.1:7102"]}
    spec = os.path.join(WORK, "spec.json")
    json.dump({"cluster": cluster, "task": {"type": "chief", "index": 0}}, open(spec, "w"))
    info = os.path.join(WORK, "supervisor.json")
    sup = spawn(["supervisor", "--cluster", spec, "--certs", d, "--info-file", info], "supervisor")
    wait_for(lambda: os.path.exists(info), 20, "the supervisor's info file")
    info = json.load(open(info))
    nodes = []
    for i in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster,
                                                     "task": {"type": "worker", "index": i}}))
        log = os.path.join(WORK, f"worker-{i}.log")
        p = subprocess.Popen([TROUPE, "node", "--certs", d, "--no-measure"], env=env, cwd=WORK,
                             stdout=open(log, "w"), stderr=subprocess.STDOUT)
        p.log_path, p.name = log, f"worker-{i}"
        PROCS.append(p)
        nodes.append(p)
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "the spec's 2 workers")
    check(sorted(n["name"] for n in status(info)["nodes"]) == ["worker-0", "worker-1"],
          "nodes named after their TF_CONFIG task")
    env = dict(os.environ, OMPI_COMM_WORLD_RANK="3", OMPI_COMM_WORLD_SIZE="4")
    r = subprocess.run([TROUPE, "node", "--supervisor", f"127.0.0.1:{port}", "--certs", d,
                        "--no-measure"], env=env, cwd=WORK, capture_output=True, text=True,
                       timeout=60)
    check(r.returncode == 2 and "node-3" in r.stderr and "not in the cluster spec" in r.stderr,
          "an mpirun rank outside the spec is refused: " + r.stderr.strip()[-120:])
    client = submit(d, info, ["--model", "mlp", "--stages", "2", "--steps", "5", "--no-eval"])
    check(all_exit([client], 60) and client.returncode == 0, "a job runs on the spec's workers")
    # Ctrl-C on the submitting client aborts its job; the cluster stays up.
    client = long_job(d, info)
    wait_running(info)
    client.send_signal(signal.SIGINT)
    check(all_exit([client], 10) and client.returncode != 0, "SIGINT ends the client")
    wait_for(lambda: status(info)["job"]["phase"] == "idle", 5, "the job to be aborted")
    check("client" in status(info)["job"]["last_error"], "the job was aborted for its client")
    wait_for(lambda: all(n["transport"].get("actors", 1) == 0 for n in ready_nodes(info)), 5,
             "the nodes to drop the job's actors")
    check(len(ready_nodes(info)) == 2, "both workers stay")
    # The aborted job's late messages (its stages' activations, 256 KiB, take
    # the data plane) are dropped and counted, never errors; the next job runs.
    client = submit(d, info, ["--model", "mlp", "--stages", "2", "--steps", "5", "--no-eval"])
    check(all_exit([client], 60) and client.returncode == 0, "the next job runs")
    late = sum(n["transport"].get("late_transfers", 0) for n in ready_nodes(info))
    print(f"late transfers of the aborted job dropped on the workers: {late}")
    sup.send_signal(signal.SIGTERM)
    check(all_exit([sup] + nodes, 10), "everything stops")
    for p in nodes:
        log = open(p.log_path).read()
        bad = [line for line in log.splitlines()
               if "names another transfer" in line or ("[error]" in line and "data plane" in line)]
        check(not bad, f"{p.name}: no data-plane errors around the abort and the shutdown {bad[:2]}")


try:
    {"equivalence": case_equivalence,
     "spec": case_spec,
     "kill9": lambda: case_failure(signal.SIGKILL),
     "dp": case_dp,
     "pp_dp": case_pp_dp,
     "tp_pp": case_tp_pp,
     "ps": case_ps,
     "ps_kill9": case_ps_kill9,
     "dp_kill9": lambda: case_failure(signal.SIGKILL, ("--dp", "2")),
     "sigstop": lambda: case_failure(signal.SIGSTOP),
     "sigstop_resume": case_sigstop_resume,
     "patience": case_patience,
     "crash_report": case_crash_report,
     "credentials": case_credentials,
     "garbage": case_garbage,
     "interleaved": case_interleaved,
     "transformer": case_transformer}[CASE]()
finally:
    cleanup()
shutil.rmtree(WORK, ignore_errors=True)  # kept (with the logs) when a case fails
print("PASS", CASE)
