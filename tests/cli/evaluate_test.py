"""troupe evaluate / predict / generate and train --eval-every (issue 17).

Usage: evaluate_test.py path/to/troupe repo_root

- A short MNIST --steps run evaluates at its end and every --eval-every steps
  (the report's "evaluations"); evaluate on its checkpoint reports exactly its
  test accuracy and loss, on one device and on --pp 2 --tp 2; a checkpoint
  trained on --pp 2 --tp 2 evaluates on one device to its training figures.
- predict writes logits whose argmax accuracy against the MNIST test labels is
  evaluate's accuracy (.npy on one device, .csv on --pp 2: the same classes).
- generate on a short transformer run's checkpoint: the same text twice for a
  seed; a prompt byte outside the vocabulary exits 2.
- Bad input exits 2 naming the file: missing / corrupt checkpoint, data not
  matching the model, an unknown --out suffix, predict on a language model.
"""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

troupe, root = sys.argv[1], sys.argv[2]
mnist = os.path.join(root, "data", "mnist")
sherlock = os.path.join(root, "data", "sherlock.txt")
tmp = tempfile.mkdtemp()
QUIET = ["--no-progress", "--threads", "2"]


def run(args, want=0, contains=None):
    p = subprocess.run([troupe] + args, capture_output=True, text=True, errors="replace",
                       timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == want, f"troupe {' '.join(args)} -> {p.returncode}, want {want}:\n{out}"
    if contains is not None:
        assert contains in out, f"troupe {' '.join(args)}: {contains!r} not in:\n{out}"
    return out


def report(path):
    with open(path) as f:
        return json.load(f)


def test_labels():
    with gzip.open(os.path.join(mnist, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    assert magic == 2049
    return list(data[8 : 8 + n])


def read_npy(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", "not an npy file"
    hlen = struct.unpack("<H", data[8:10])[0]
    header = data[10 : 10 + hlen].decode()
    assert "'<f4'" in header and "False" in header, header
    shape = tuple(int(x) for x in header.split("(")[1].split(")")[0].split(",") if x.strip())
    body = data[10 + hlen :]
    n, c = shape
    assert len(body) == 4 * n * c, (len(body), shape)
    vals = struct.unpack(f"<{n * c}f", body)
    return [vals[i * c : (i + 1) * c] for i in range(n)]


def argmax(row):
    return max(range(len(row)), key=lambda j: (row[j], -j))


def check_same_figures(got, want, what, same_topology=True):
    """The accuracy exactly; the loss exactly on the training's topology, else
    to float rounding (tensor parallelism adds a layer's sums in another order)."""
    acc, loss = got["test_accuracy"], got["test_loss"]
    assert acc == want["test_accuracy"], f"{what}: test_accuracy {acc!r} != {want['test_accuracy']!r}"
    if same_topology:
        assert loss == want["test_loss"], f"{what}: test_loss {loss!r} != {want['test_loss']!r}"
    else:
        assert abs(loss - want["test_loss"]) <= 1e-6 * abs(want["test_loss"]), (what, loss)


try:
    # Training: MNIST --steps run, evaluated at step 20 and at its end.
    ck1, r1 = os.path.join(tmp, "ck1"), os.path.join(tmp, "r1.json")
    run(["train", "--steps", "40", "--eval-every", "20", "--checkpoint", ck1, "--report", r1] + QUIET)
    t1 = report(r1)
    assert t1["test_accuracy"] is not None and t1["test_accuracy"] > 0.5, t1["test_accuracy"]
    steps = [e["step"] for e in t1["evaluations"]]
    assert steps == [20, 40], steps
    assert t1["evaluations"][-1]["test_accuracy"] == t1["test_accuracy"]
    assert t1["evaluations"][0]["test_accuracy"] != t1["test_accuracy"]  # another model then

    # evaluate: exactly training's figures, on one device and on --pp 2 --tp 2.
    e1 = os.path.join(tmp, "e1.json")
    out = run(["evaluate", "--checkpoint", ck1, "--report", e1] + QUIET, contains="test accuracy")
    ev = report(e1)
    check_same_figures(ev, t1, "evaluate")
    assert ev["steps"] == 40 and ev["test_samples"] == 10000, ev
    e2 = os.path.join(tmp, "e2.json")
    run(["evaluate", "--checkpoint", ck1, "--pp", "2", "--tp", "2", "--report", e2] + QUIET)
    assert report(e2)["strategy"] != ev["strategy"]
    check_same_figures(report(e2), t1, "evaluate --pp 2 --tp 2", False)

    # A checkpoint of --pp 2 --tp 2 training evaluates on one device.
    ck2, r2 = os.path.join(tmp, "ck2"), os.path.join(tmp, "r2.json")
    run(["train", "--steps", "20", "--pp", "2", "--tp", "2", "--microbatches", "2",
         "--checkpoint", ck2, "--report", r2] + QUIET)
    e3 = os.path.join(tmp, "e3.json")
    run(["evaluate", "--checkpoint", ck2, "--report", e3] + QUIET)
    check_same_figures(report(e3), report(r2), "evaluate of a --pp 2 --tp 2 checkpoint", False)

    # predict: argmax accuracy of the logits equals evaluate's accuracy.
    labels = test_labels()
    p1 = os.path.join(tmp, "p1.npy")
    run(["predict", "--checkpoint", ck1, "--out", p1] + QUIET, contains="wrote")
    rows = read_npy(p1)
    assert len(rows) == len(labels) == 10000 and len(rows[0]) == 10
    classes = [argmax(r) for r in rows]
    acc = sum(int(c == y) for c, y in zip(classes, labels)) / len(labels)
    assert acc == ev["test_accuracy"], f"predict's argmax accuracy {acc} != {ev['test_accuracy']}"
    p2 = os.path.join(tmp, "p2.csv")
    run(["predict", "--checkpoint", ck1, "--pp", "2", "--microbatches", "3", "--out", p2] + QUIET)
    with open(p2) as f:
        lines = f.read().splitlines()
    assert lines[0].startswith("index,predicted,output_0"), lines[0]
    csv_classes = [int(l.split(",")[1]) for l in lines[1:]]
    assert csv_classes == classes, "predict --pp 2 (.csv) gives other classes"

    # generate: a short transformer run; one seed, one text.
    ck3, r3 = os.path.join(tmp, "ck3"), os.path.join(tmp, "r3.json")
    run(["train", "--model", "transformer", "--data", sherlock, "--steps", "2", "--batch", "8",
         "--checkpoint", ck3, "--report", r3] + QUIET)
    gen = ["generate", "--checkpoint", ck3, "--prompt", "Holmes", "--tokens", "20", "--seed", "7"]
    a, b = run(gen), run(gen)
    assert a == b and a.startswith("Holmes") and len(a) > len("Holmes"), (a, b)
    c = run(gen[:-1] + ["8"])
    assert c != a, "another seed gave the same text"
    g1 = run(gen + ["--temperature", "0"])
    assert g1 == run(gen[:-2] + ["--seed", "9", "--temperature", "0"]), "greedy depends on the seed"
    run(["generate", "--checkpoint", ck3, "--prompt", "Holmes\x01", "--tokens", "3"], want=2,
        contains="--prompt")
    # evaluate of the language model: training's held-out figures.
    e4 = os.path.join(tmp, "e4.json")
    run(["evaluate", "--checkpoint", ck3, "--report", e4] + QUIET, contains="bits/char")
    assert report(e4)["bits_per_char"] == report(r3)["bits_per_char"]
    assert report(e4)["test_loss"] == report(r3)["test_loss"]

    # Bad input: exit 2, naming the file.
    missing = os.path.join(tmp, "nope")
    run(["evaluate", "--checkpoint", missing] + QUIET, want=2, contains=missing)
    bad = os.path.join(tmp, "bad")
    shutil.copytree(ck1, bad)
    with open(os.path.join(bad, "model.safetensors"), "r+b") as f:
        f.truncate(100)
    run(["evaluate", "--checkpoint", bad] + QUIET, want=2, contains="model.safetensors")
    run(["predict", "--checkpoint", bad, "--out", p1] + QUIET, want=2, contains="model.safetensors")
    run(["generate", "--checkpoint", bad, "--prompt", "a", "--tokens", "1"], want=2,
        contains="model.safetensors")
    run(["evaluate", "--checkpoint", ck1, "--data", sherlock] + QUIET, want=2, contains=sherlock)
    run(["evaluate", "--checkpoint", ck3, "--data", mnist] + QUIET, want=2, contains=mnist)
    run(["predict", "--checkpoint", ck1, "--out", os.path.join(tmp, "p.txt")] + QUIET, want=2,
        contains="p.txt")
    run(["predict", "--checkpoint", ck3, "--out", p1] + QUIET, want=2, contains="language model")
    run(["generate", "--checkpoint", ck1, "--prompt", "a", "--tokens", "1"], want=2,
        contains="manifest.json")
    print("evaluate_test: ok")
finally:
    shutil.rmtree(tmp, ignore_errors=True)
