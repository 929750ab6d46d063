#!/usr/bin/env python3
"""--model FILE.json: model specs from files (docs/models.md).

  model_file_test.py TROUPE DATA_DIR CASE

CASE local: data/models/keras_mlp.json and keras_cnn.json train bitwise like
the zoo mlp and cnn they write out; each bad file exits 2 naming the file and the field; a checkpoint
of a file model records its spec and --resume continues it; `troupe plan`
takes a file. CASE cluster: a supervisor and two node processes run a
--model FILE --pp 2 job (the client reads the file, the nodes never see it)
whose parameters equal the zoo model's single-process run.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cluster"))
from cluster_util import *  # noqa: E402,F401,F403 (TROUPE, DATA, CASE, WORK, helpers)

MODELS = os.path.join(DATA, "models")
MNIST = os.path.join(DATA, "mnist")
QUICK = ["--steps", "3", "--no-eval", "--no-progress", "--threads", "1", "--data", MNIST]


def final_loss(out):
    return out.split("final loss ")[1].split(",")[0]


def why(r):
    """A failed command's stderr tail for a check's message; nothing when it passed."""
    return "" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]


def expect_bad(name, text, *needles):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        f.write(text)
    r = run(["train", "--model", path, *QUICK])
    error = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
    check(r.returncode == 2 and len(error) == 1,
          f"{name}: exit 2 with an error (got {r.returncode}: {r.stderr.strip()[-300:]})")
    for n in (path,) + needles:
        check(n in error[0], f"{name}: the error names {n!r}: {error[0]}")
    check("final loss" not in r.stdout, f"{name}: no step ran")


def spec(layers, **extra):
    return json.dumps({"name": "m", "input_shape": [784], "layers": layers, **extra})


def case_local():
    zoo = run(["train", "--model", "mlp", *QUICK])
    mine = run(["train", "--model", os.path.join(MODELS, "keras_mlp.json"), *QUICK])
    check(zoo.returncode == 0 and mine.returncode == 0, "both runs succeed" + why(mine))
    check(final_loss(mine.stdout) == final_loss(zoo.stdout),
          f"keras_mlp.json trains like the zoo mlp ({final_loss(mine.stdout)})")
    # The CNN too: with models_model_files_test (each Keras file is the zoo
    # model's spec) this is why the zoo models' accuracy bands
    # (actors_accuracy_test) hold for data/models/*.json without training
    # them for minutes again.
    zoo = run(["train", "--model", "cnn", *QUICK])
    mine = run(["train", "--model", os.path.join(MODELS, "keras_cnn.json"), *QUICK])
    check(zoo.returncode == 0 and mine.returncode == 0, "both CNN runs succeed" + why(mine))
    check(final_loss(mine.stdout) == final_loss(zoo.stdout),
          f"keras_cnn.json trains like the zoo cnn ({final_loss(mine.stdout)})")

    expect_bad("notjson.json", '{"name": "m", "input_shape": [784],', "not JSON")
    expect_bad("unknown.json", spec([{"type": "dense2", "in": 784, "out": 10}]),
               "layer 0", "unknown type 'dense2'")
    expect_bad("missing.json", spec([{"type": "dense", "in": 784}]), "layer 0 (dense)",
               "field 'out' is missing")
    expect_bad("wrongtype.json", spec([{"type": "dense", "in": 784, "out": "ten"}]),
               "field 'out' must be an integer")
    expect_bad("typo.json", spec([{"type": "conv2d", "in_channels": 1, "out_channels": 4,
                                   "kernal": 3}]), "unknown field 'kernal'")
    expect_bad("chain.json", spec([{"type": "dense", "in": 784, "out": 32}, {"type": "relu"},
                                   {"type": "dense", "in": 64, "out": 10}]),
               "layer 2 (dense)", "input shape [32] does not fit")
    expect_bad("noshape.json", json.dumps({"name": "m", "layers": []}), "field 'input_shape'")
    expect_bad("extra.json", spec([], optimizer="sgd"), "unknown field 'optimizer'")
    expect_bad("mnist.json", json.dumps({"name": "m", "input_shape": [100], "layers": [
        {"type": "dense", "in": 100, "out": 10}]}), "takes [100] (100 values)")
    r = run(["train", "--model", os.path.join(WORK, "absent.json"), *QUICK])
    check(r.returncode == 2 and "absent.json: cannot open" in r.stderr,
          "a missing file: exit 2 naming it" + why(r))

    # The checkpoint records the spec; --resume continues the file model.
    ck = os.path.join(WORK, "ck")
    cnn = os.path.join(MODELS, "keras_cnn.json")
    base = ["train", "--model", cnn, "--no-eval", "--no-progress", "--threads", "1", "--batch",
            "16", "--data", MNIST]
    r = run([*base, "--steps", "2", "--checkpoint", ck])
    check(r.returncode == 0, "a file model writes a checkpoint" + why(r))
    manifest = json.load(open(os.path.join(ck, "manifest.json")))
    want = json.load(open(cnn))
    got = manifest["model"]
    check(got["name"] == want["name"] and got["input_shape"] == want["input_shape"] and
          [l["type"] for l in got["layers"]] == [l["type"] for l in want["layers"]],
          "the checkpoint's manifest records the file's model spec")
    resumed = run([*base, "--steps", "4", "--resume", ck])
    straight = run([*base, "--steps", "4"])
    check(resumed.returncode == 0, "--resume of a file model's checkpoint" + why(resumed))
    check(final_loss(resumed.stdout) == final_loss(straight.stdout),
          f"and it continues exactly ({final_loss(resumed.stdout)})")
    r = run(["train", "--model", "cnn", "--no-eval", "--no-progress", "--threads", "1", "--batch",
             "16", "--data", MNIST, "--steps", "4", "--resume", ck])
    check(r.returncode == 2 and "different model" in r.stderr,
          "resuming it as another model is refused")

    r = run(["plan", "--model", cnn, "--pp", "2"])
    check(r.returncode == 0 and "model keras_cnn" in r.stdout, "troupe plan takes a file")


def case_cluster():
    d = certs("supervisor", "client", "a", "b")
    sup, info = start_supervisor(d, 2)
    nodes = [start_node(d, info["port"], n) for n in "ab"]
    wait_for(lambda: len(ready_nodes(info)) == 2, 30, "2 ready nodes")
    # The client's copy of the file only: the nodes and supervisor run in WORK/elsewhere.
    model = os.path.join(WORK, "client-only", "mine.json")
    os.makedirs(os.path.dirname(model))
    with open(os.path.join(MODELS, "keras_mlp.json")) as f:
        text = f.read()
    with open(model, "w") as f:
        f.write(text)
    ck = os.path.join(WORK, "ck-cluster")
    report = os.path.join(WORK, "r.json")
    args = ["--threads", "1", "--steps", "10", "--batch", "32"]
    client = submit(d, info, ["--model", model, "--pp", "2", "--no-eval", "--checkpoint", ck,
                              "--report", report, *args])
    check(all_exit([client], 120) and client.returncode == 0, "the --model FILE --pp 2 job ran")
    plan = json.load(open(report))["plan"]
    check(sorted(s["node"] for s in plan["stages"]) == ["a", "b"], "one stage on each node")
    stop_cluster(sup, nodes)
    compare_with_local(ck, args, 0.0, model="mlp")


try:
    {"local": case_local, "cluster": case_cluster}[CASE]()
finally:
    cleanup()
print("PASS", CASE)
