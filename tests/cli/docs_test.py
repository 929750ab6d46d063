#!/usr/bin/env python3
"""The user docs cannot drift from what troupe writes (issue 18):

  - every field of a training report (top level, stages[], evaluations[],
    recovery, balance) and of an evaluation report is named in docs/report.md;
  - the numpy / PyTorch loader in docs/checkpoints.md, taken from the page,
    runs on a checkpoint troupe just wrote and gets the run's test accuracy;
  - the JSON examples of docs/cluster-spec.md parse (`troupe plan --cluster-spec`).

Usage: docs_test.py TROUPE_BINARY SOURCE_DIR
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

TROUPE, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
WORK = tempfile.mkdtemp(prefix="troupe_docs_")
MNIST = os.path.join(SRC, "data", "mnist")
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def run(args, timeout=300):
    return subprocess.run([TROUPE] + args, capture_output=True, text=True, timeout=timeout,
                          cwd=WORK)


def doc(name):
    return open(os.path.join(SRC, "docs", name)).read()


def undocumented(keys, text):
    return sorted(k for k in keys if f"`{k}`" not in text)


def report_fields():
    ck, rep = os.path.join(WORK, "ck"), os.path.join(WORK, "r.json")
    # --dp 2: the stages' data-parallel fields too; --eval-every: evaluations[].
    r = run(["train", "--model", "mlp", "--steps", "20", "--dp", "2", "--eval-every", "10",
             "--no-progress", "--data", MNIST, "--checkpoint", ck, "--report", rep])
    check(r.returncode == 0, "a training run writes a report" + ("" if r.returncode == 0 else
                                                                  ": " + r.stderr[-400:]))
    if r.returncode != 0:
        return None, None
    report = json.load(open(rep))
    text = doc("report.md")
    missing = undocumented(report.keys(), text)
    for part in ("stages", "evaluations", "epoch_log", "ps"):
        for entry in report[part]:
            missing += [f"{part}[].{k}" for k in undocumented(entry.keys(), text)]
    for part in ("recovery", "balance", "input_normalization"):
        missing += [f"{part}.{k}" for k in undocumented(report[part].keys(), text)]
    check(not missing, "docs/report.md names every field of the training report" +
          (f"; missing: {missing}" if missing else ""))
    erep = os.path.join(WORK, "e.json")
    r = run(["evaluate", "--checkpoint", ck, "--data", MNIST, "--report", erep])
    check(r.returncode == 0, "troupe evaluate writes a report")
    if r.returncode == 0:
        section = text[text.index("## The evaluation report"):]
        missing = undocumented(json.load(open(erep)).keys(), section)
        check(not missing, "docs/report.md's evaluation section names every field of its report" +
              (f"; missing: {missing}" if missing else ""))
    return ck, report


def checkpoint_script(ck, report):
    blocks = re.findall(r"```python\n(.*?)```", doc("checkpoints.md"), re.S)
    check(len(blocks) == 1, "docs/checkpoints.md has one python script")
    script = os.path.join(WORK, "load_checkpoint.py")
    open(script, "w").write(blocks[0])
    # Debian's python3-numpy and python3-torch are for /usr/bin/python3.
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    r = subprocess.run([python, script, ck, MNIST], capture_output=True, text=True, timeout=300)
    check(r.returncode == 0, "the script runs" + ("" if r.returncode == 0 else ": " + r.stderr[-500:]))
    got = re.search(r"numpy accuracy (\S+)", r.stdout)
    want = report["test_accuracy"]
    check(got and abs(float(got.group(1)) - want) <= 1e-3,
          f"numpy's accuracy {got.group(1) if got else '?'} is the report's {want:.4f}")
    t = re.search(r"torch accuracy (\S+), agrees with numpy on (\S+)", r.stdout)
    if t:
        check(abs(float(t.group(1)) - want) <= 1e-3 and float(t.group(2)) >= 0.999,
              f"PyTorch's nn.Sequential with the same tensors: {t.group(0)}")
    else:
        print("skip PyTorch is not installed for", python)


def cluster_spec_examples():
    blocks = re.findall(r"```json\n(.*?)```", doc("cluster-spec.md"), re.S)
    check(len(blocks) == 2, "docs/cluster-spec.md has the TF_CONFIG and troupe examples")
    tf = re.search(r"export TF_CONFIG='(.*?)'", doc("cluster-spec.md"))
    check(tf is not None, "and a TF_CONFIG launch line")
    for i, text in enumerate(blocks + ([tf.group(1)] if tf else [])):
        f = os.path.join(WORK, f"spec{i}.json")
        open(f, "w").write(text)
        r = run(["plan", "--model", "mlp", "--stages", "2", "--cluster-spec", f])
        check(r.returncode == 0, f"example {i + 1} is a valid cluster spec" +
              ("" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]))


def main():
    ck, report = report_fields()
    if ck:
        checkpoint_script(ck, report)
    cluster_spec_examples()
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    shutil.rmtree(WORK, ignore_errors=True)
    print("all checks passed")


main()
