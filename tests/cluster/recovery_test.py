#!/usr/bin/env python3
"""Recovery across processes (actors/cluster/recovery.hpp): a supervisor and
node processes on 127.0.0.1 over mutual TLS; a node is killed (kill -9) or
stopped (SIGSTOP) mid-job, and the job heals itself with no user action and
finishes equal to the same job run without the fault in one process.

  recovery_test.py TROUPE DATA_DIR CASE

CASE is one of: dp_kill9, pp_spare, pp_shrink, sigstop_grow, tp, ps, cut, exhausted,
chaos:SEED.
"""

import json
import os
import random
import re
import signal
import subprocess
import time

from cluster_util import *  # noqa: F401,F403 (helpers and TROUPE, DATA, CASE, WORK)

# "Equal to the failure-free run" (issue 14): the largest per-tensor
# norm-relative difference of the final parameters.
EQUAL = 1e-4
FAST_HEARTBEAT = ["--heartbeat-ms", "250", "--timeout-ms", "1500"]


def report_of(path):
    return json.load(open(path))


def restarts(report):
    return report["recovery"]["restarts"]


def node_of(info, label_part):
    """The node of the job actor whose label contains label_part."""
    for a in status(info)["job"]["actors"]:
        if label_part in a["label"]:
            return a["node"]
    fail(f"no job actor {label_part} in /status")


def cluster(names, expect=None, extra=()):
    d = certs("supervisor", "client", *names)
    sup, info = start_supervisor(d, expect or len(names), [*FAST_HEARTBEAT, *extra])
    nodes = {n: start_node(d, info["port"], n) for n in names}
    wait_for(lambda: len(ready_nodes(info)) == len(names), 30, f"{len(names)} ready nodes")
    return d, sup, info, nodes


def kill_at(info, victim, sig, step):
    wait_running(info, step)
    t0 = time.time()
    os.kill(victim.pid, sig)
    return t0


def finish(client, what, timeout=120):
    check(all_exit([client], timeout), f"{what}: the client ends")
    out = open(client.log_path).read()
    check(client.returncode == 0, f"{what}: the job finished with exit 0 and no user action "
          f"(exit {client.returncode}): " + out.strip()[-400:])


def detection(sup, t0, pattern=r"recovering \(restart"):
    detected = supervisor_log_time(sup, pattern)
    return detected - wall_of_day(t0) if detected is not None else None


def strip_degrees(args):
    """`args` without the parallel degrees and the steps (a schedule sets them
    per range)."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a in ("--dp", "--stages", "--tp", "--workers", "--steps"):
            skip = True
        else:
            out.append(a)
    return out


def compare_with_schedule(ck, report, args, steps, tolerance=1e-6):
    """The same job on the same degree schedule run by hand in one process:
    each range of the report's recovery.degrees trained with its degrees and
    continued from the previous range's checkpoint (--resume). Equal to the
    recovered run: the recovery restored the right step and state, and only
    the summation order of the degrees it ran with separates it from the
    failure-free run (under which small rounding differences grow with the
    steps: see docs/architecture.md, "Which results are bitwise")."""
    ranges = report["recovery"]["degrees"]
    base = strip_degrees(args)
    previous = None
    for i, g in enumerate(ranges):
        end = ranges[i + 1]["from_step"] if i + 1 < len(ranges) else steps
        if end <= g["from_step"]:
            continue
        name = f"ck-schedule-{i}"
        degrees = ["--dp", str(g["dp"]), "--stages", str(g["stages"]), "--tp", str(g["tp"])]
        extra = ["--resume", os.path.join(WORK, previous)] if previous else []
        r = run(["train", "--model", "mlp", "--no-eval", "--no-progress", "--data",
                 os.path.join(DATA, "mnist"), "--checkpoint", os.path.join(WORK, name),
                 "--threads", "1", *base, *degrees, "--steps", str(end), *extra])
        check(r.returncode == 0, f"schedule range {i} ({g}) ran: " + r.stderr[-300:])
        previous = name
    a = read_safetensors(os.path.join(ck, "model.safetensors"))
    b = read_safetensors(os.path.join(WORK, previous, "model.safetensors"))
    worst = max(rel_diff(a[k], b[k]) for k in a)
    check(worst <= tolerance, f"equal to the same degree schedule run by hand in one process "
          f"(max rel diff {worst:.2e})")


def case_dp_kill9():
    """dp 3 over 3 nodes, no spare: kill -9 of node c mid-epoch. The two
    replicas left hold the state (no step redone); the global batch is
    re-split over them, so the math is unchanged: equal to the failure-free
    run (order-insensitive optimizer: 3 -> 2 replicas add in another order)."""
    d, sup, info, nodes = cluster("abc")
    ck, r = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    args = ["--dp", "3", "--batch", "768", "--steps", "60", *ORDER_INSENSITIVE]
    client = submit(d, info, ["--model", "mlp", "--no-eval", "--checkpoint", ck, "--report", r,
                              *args])
    t0 = kill_at(info, nodes["c"], signal.SIGKILL, 20)
    finish(client, "kill -9 of a replica's node")
    lag = detection(sup, t0)
    print(f"detection: {lag:.3f} s after kill -9")
    check(lag is not None and lag < 0.5, f"detected within 0.5 s ({lag})")
    rep = report_of(r)
    rs = restarts(rep)
    check(len(rs) == 1, f"one restart {rs}")
    check(rs[0]["restore_source"] == "replicas" and rs[0]["steps_redone"] == 0,
          f"restored from the live replicas, no step redone {rs[0]}")
    check(any("node c" in f for f in rs[0]["failures"]), f"the restart names node c {rs[0]}")
    check(rs[0]["dp"] == 2, "continued on 2 replicas")
    degrees = [(g["dp"], g["from_step"]) for g in rep["recovery"]["degrees"]]
    check(degrees[0] == (3, 0) and degrees[1][0] == 2, f"dp per step range {degrees}")
    print(f"seconds lost: {rs[0]['seconds_lost']}, re-plan: {rs[0]['replan_seconds']}")
    stop_cluster(sup, [nodes["a"], nodes["b"]])
    compare_with_local(ck, ["--threads", "1", *args], EQUAL)
    compare_with_schedule(ck, rep, args, 60)


def case_pp_spare():
    """pp 3 on 4 nodes (one spare) with --snapshot-every 10: kill -9 of stage
    1's node. The stage is re-placed on the spare, the job resumes from the
    snapshot in the supervisor's process (at most 10 steps redone), equal to
    the failure-free run."""
    d, sup, info, nodes = cluster("abcd")
    ck, r = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    args = ["--stages", "3", "--steps", "150", "--snapshot-every", "10"]
    client = submit(d, info, ["--model", "mlp", "--no-eval", "--checkpoint", ck, "--report", r,
                              *args])
    wait_running(info, 5)
    victim = node_of(info, "stage 1")
    used = {a["node"] for a in status(info)["job"]["actors"] if a["kind"] == "layer_shard"}
    spare = ({"a", "b", "c", "d"} - used).pop()
    t0 = kill_at(info, nodes[victim], signal.SIGKILL, 33)
    finish(client, "kill -9 of a pipeline stage's node")
    print(f"detection: {detection(sup, t0):.3f} s after kill -9")
    rs = restarts(report_of(r))
    check(len(rs) == 1 and rs[0]["restore_source"] == "snapshot", f"from the snapshot {rs}")
    check(rs[0]["steps_redone"] <= 10, f"steps redone <= the interval ({rs[0]['steps_redone']})")
    check(rs[0]["stages"] == 3, "still 3 stages")
    placed = {s["node"] for s in report_of(r)["plan"]["stages"]}
    check(spare in placed and victim not in placed, f"re-placed on the spare {spare}: {placed}")
    stop_cluster(sup, [p for n, p in nodes.items() if n != victim])
    compare_with_local(ck, ["--threads", "1", *args], EQUAL)


def case_pp_shrink():
    """pp 3 on 3 nodes, no spare, --checkpoint-every 10 and no snapshots:
    kill -9 of stage 2's node. The job shrinks to the 2 nodes left (the
    layers re-partitioned over 2 stages), resumes from the last complete
    checkpoint, and is equal to the failure-free run; the checkpoint left at
    the end is complete and loads."""
    d, sup, info, nodes = cluster("abc")
    ck, r = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    args = ["--stages", "3", "--steps", "150", "--checkpoint-every", "10", "--snapshot-every", "0"]
    client = submit(d, info, ["--model", "mlp", "--no-eval", "--checkpoint", ck, "--report", r,
                              *args])
    wait_running(info, 5)
    victim = node_of(info, "stage 2")
    kill_at(info, nodes[victim], signal.SIGKILL, 35)
    finish(client, "kill -9 of a stage's node, no spare")
    rs = restarts(report_of(r))
    check(len(rs) == 1 and rs[0]["restore_source"] == "checkpoint", f"from the checkpoint {rs}")
    check(rs[0]["stages"] == 2, f"re-partitioned over 2 stages {rs[0]}")
    check(rs[0]["steps_redone"] <= 25, f"steps redone {rs[0]['steps_redone']}")
    stop_cluster(sup, [p for n, p in nodes.items() if n != victim])
    compare_with_local(ck, ["--threads", "1", "--stages", "3", "--steps", "150"], EQUAL)


def late_transfers(info):
    return sum(n["transport"].get("late_transfers", 0) for n in ready_nodes(info))


def case_sigstop_grow():
    """Elastic data parallelism: dp 3 over 3 nodes, SIGSTOP of node c. The
    job goes on with 2 replicas (from the live replicas' state); c is
    resumed (SIGCONT): its late messages of the old generation are dropped
    (counted), it is told it was dropped and rejoins as a fresh node, and the
    job grows back to 3 replicas at a step boundary. Equal to the
    failure-free run; the report shows the dp degree per step range."""
    d, sup, info, nodes = cluster("abc")
    ck, r = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    args = ["--dp", "3", "--batch", "768", "--steps", "80", *ORDER_INSENSITIVE]
    client = submit(d, info, ["--model", "mlp", "--no-eval", "--checkpoint", ck, "--report", r,
                              *args])
    t0 = kill_at(info, nodes["c"], signal.SIGSTOP, 15)
    wait_for(lambda: status(info)["job"]["generation"] >= 2 and
             status(info)["job"]["phase"] == "running", 15, "the job to run on 2 replicas")
    lag = detection(sup, t0)
    print(f"detection of SIGSTOP: {lag:.3f} s")
    check(lag is not None and lag < 2.0, f"a stopped node detected within 2 s ({lag})")
    # Some steps on 2 replicas before c comes back.
    restored = status(info)["job"]["recovery"]["restarts"][0]["restored_step"]
    wait_for(lambda: status(info)["job"]["progress"].get("step", 0) >= restored + 5, 30,
             "5 steps on 2 replicas")
    late_before = late_transfers(info)
    os.kill(nodes["c"].pid, signal.SIGCONT)
    wait_for(lambda: "rejoining the cluster as a fresh node" in open(nodes["c"].log_path).read(),
             15, "node c to rejoin")
    finish(client, "SIGSTOP, SIGCONT and growing back")
    rep = report_of(r)
    degrees = [g["dp"] for g in rep["recovery"]["degrees"]]
    print(f"dp per step range: {rep['recovery']['degrees']}")
    check(degrees == [3, 2, 3], f"dp 3 -> 2 -> 3 {degrees}")
    rs = restarts(rep)
    check(rs[0]["restore_source"] == "replicas" and rs[1]["planned"], f"restarts {rs}")
    check(all(x["seconds_lost"] is not None for x in rs), "every restart's seconds lost known")
    late = late_transfers(info) - late_before
    print(f"late transfers of the old generation dropped on the other nodes: {late}")
    log_c = open(nodes["c"].log_path).read()
    check(re.search(r"dropped by the supervisor|supervisor went away", log_c) is not None,
          "node c was told it was dropped")
    stop_cluster(sup, list(nodes.values()))
    compare_with_local(ck, ["--threads", "1", *args], EQUAL)
    compare_with_schedule(ck, rep, args, 80)


def case_tp():
    """--tp 2 on 3 nodes (one spare), --snapshot-every 10: kill -9 of tensor-
    parallel rank 1's node; recovered on the spare, equal to failure-free."""
    d, sup, info, nodes = cluster("abc")
    ck, r = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    args = ["--tp", "2", "--steps", "150", "--snapshot-every", "10"]
    client = submit(d, info, ["--model", "mlp", "--no-eval", "--checkpoint", ck, "--report", r,
                              *args])
    wait_running(info, 5)
    victim = node_of(info, "tp rank 1")
    kill_at(info, nodes[victim], signal.SIGKILL, 30)
    finish(client, "kill -9 of a tensor-parallel rank's node")
    rs = restarts(report_of(r))
    check(len(rs) == 1 and rs[0]["tp"] == 2 and rs[0]["restore_source"] == "snapshot",
          f"tp 2 again, from the snapshot {rs}")
    stop_cluster(sup, [p for n, p in nodes.items() if n != victim])
    compare_with_local(ck, ["--threads", "1", *args], EQUAL)


def case_ps():
    """A sync parameter server's node killed (ps-0, workers worker-0 and
    worker-1, no spare): the job re-plans with the ps shard beside a worker
    (one replica left), restores the snapshot, and is equal to failure-free."""
    d = certs("supervisor", "client", "worker-0", "worker-1", "ps-0")
    sup, info, ps, workers = start_ps_cluster(d, extra=FAST_HEARTBEAT)
    ck, r = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    args = ["--ps", "1", "--workers", "2", "--steps", "100", "--snapshot-every", "10",
            *ORDER_INSENSITIVE]
    client = submit(d, info, ["--model", "mlp", "--no-eval", "--checkpoint", ck, "--report", r,
                              *args])
    kill_at(info, ps, signal.SIGKILL, 30)
    finish(client, "kill -9 of the ps node")
    rep = report_of(r)
    rs = restarts(rep)
    check(len(rs) == 1 and rs[0]["restore_source"] == "snapshot", f"from the snapshot {rs}")
    stop_cluster(sup, workers)
    compare_with_local(ck, ["--threads", "1", *args], EQUAL)


def case_cut():
    """--inject-fault cut: stage 1's node cuts its data-plane connections at
    step 20 of a 2-stage pipeline over 2 nodes (activations over the data
    plane). The connection is reported and rebuilt, or the job recovers:
    either way it finishes equal to the failure-free run. While it runs,
    /status shows what each job actor does."""
    d, sup, info, nodes = cluster("ab")
    ck, r = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    args = ["--stages", "2", "--microbatches", "4", "--batch", "256", "--steps", "60",
            "--snapshot-every", "10", "--stall-timeout", "3"]
    client = submit(d, info, ["--model", "mlp", "--no-eval", "--checkpoint", ck, "--report", r,
                              "--inject-fault", "cut:stage=1,step=20", *args])
    wait_running(info, 3)

    def doing_shown():
        acts = [a for a in status(info)["job"]["actors"]
                if a["kind"] in ("trainer", "layer_shard")]
        return len(acts) == 3 and all(isinstance(a["doing"], dict) and "action" in a["doing"]
                                      for a in acts)
    wait_for(doing_shown, 10, "/status to show every job actor's current action")
    print("doing:", [a["doing"] for a in status(info)["job"]["actors"] if a["doing"]])
    finish(client, "a cut data plane")
    log = "".join(open(p.log_path).read() for p in [sup, *nodes.values()])
    check("injected cut of the data plane at step 20" in log, "the cut happened")
    print("restarts:", restarts(report_of(r)))
    stop_cluster(sup, list(nodes.values()))
    compare_with_local(ck, ["--threads", "1", *args], EQUAL)


def case_exhausted():
    """Restarts exhausted and no plan possible: pp 2 on 2 nodes with
    --max-restarts 1 --rejoin-wait 3. kill -9 of one node: the job shrinks to
    the other; kill -9 of that one: no device is left, the job waits 3 s for
    nodes, then fails (exit 1) naming both failures; no process is left."""
    d, sup, info, nodes = cluster("ab")
    client = submit(d, info, ["--model", "mlp", "--stages", "2", "--epochs", "50", "--no-eval",
                              "--max-restarts", "2", "--rejoin-wait", "3"])
    wait_running(info, 10)
    os.kill(nodes["b"].pid, signal.SIGKILL)
    wait_for(lambda: status(info)["job"]["generation"] == 2 and
             status(info)["job"]["phase"] == "running", 15, "the job to run on node a")
    t0 = time.time()
    os.kill(nodes["a"].pid, signal.SIGKILL)
    check(all_exit([client], 3 + 5), "the client ends within --rejoin-wait + 5 s")
    took = time.time() - t0
    out = open(client.log_path).read()
    print(f"failed {took:.1f} s after the last node died: " + out.strip()[-300:])
    check(client.returncode == 1, f"exit 1 ({client.returncode})")
    check("no plan fits" in out and "node b lost" in out and "node a lost" in out,
          "the error names every failure")
    check(took >= 3 - 0.5, "it waited for nodes to join first")
    sup.send_signal(signal.SIGTERM)
    check(all_exit([sup, *nodes.values()], 10), "no process is left")


def case_chaos(seed):
    """Supervisor + 4 nodes, a random topology, kill -9 or SIGSTOP of a random
    node at a random step: the job finishes, equal to the failure-free run
    (sync modes), and no process is left behind."""
    rnd = random.Random(seed)
    topology = rnd.choice([["--stages", "3"], ["--dp", "3", "--batch", "192"],
                           ["--stages", "2", "--dp", "2", "--batch", "128"], ["--tp", "2"],
                           ["--ps", "1", "--workers", "2"]])
    sig = rnd.choice([signal.SIGKILL, signal.SIGSTOP])
    step = rnd.randrange(10, 40)
    print(f"chaos seed {seed}: {' '.join(topology)}, signal {sig.name} at step {step}")
    names = ["ps-0", "n1", "n2", "n3"] if "--ps" in topology else ["n0", "n1", "n2", "n3"]
    d, sup, info, nodes = cluster(names)
    ck, r = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    args = [*topology, "--steps", "100", "--snapshot-every", "10", *ORDER_INSENSITIVE]
    client = submit(d, info, ["--model", "mlp", "--no-eval", "--checkpoint", ck, "--report", r,
                              *args])
    wait_running(info, 3)
    used = sorted({a["node"] for a in status(info)["job"]["actors"]
                   if a["kind"] in ("layer_shard", "ps_shard")})
    victim = rnd.choice(used)
    kill_at(info, nodes[victim], sig, step)
    finish(client, f"chaos {seed}")
    rep = report_of(r)
    rs = restarts(rep)
    check(len(rs) >= 1, f"restarted {[(x['restore_source'], x['steps_redone']) for x in rs]}")
    print("degrees per step range:", rep["recovery"]["degrees"])
    if sig == signal.SIGSTOP:  # it comes back as a fresh node
        os.kill(nodes[victim].pid, signal.SIGCONT)
        wait_for(lambda: len(ready_nodes(info)) == len(names), 30, f"{victim} to rejoin")
    sup.send_signal(signal.SIGTERM)
    check(all_exit([sup, *nodes.values()], 15), "no process is left behind")
    compare_with_local(ck, ["--threads", "1", *args], EQUAL)
    if "--ps" not in topology:  # a ps schedule would need its ps placement by hand
        compare_with_schedule(ck, rep, args, 100)


try:
    if CASE.startswith("chaos:"):
        case_chaos(int(CASE.split(":")[1]))
    else:
        {"dp_kill9": case_dp_kill9,
         "pp_spare": case_pp_spare,
         "pp_shrink": case_pp_shrink,
         "sigstop_grow": case_sigstop_grow,
         "tp": case_tp,
         "ps": case_ps,
         "cut": case_cut,
         "exhausted": case_exhausted}[CASE]()
finally:
    cleanup()
shutil.rmtree(WORK, ignore_errors=True)  # kept (with the logs) when a case fails
print("PASS", CASE)
