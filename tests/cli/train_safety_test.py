"""troupe train's checks before training, Ctrl-C, checkpoints and flags (issue 18).

Usage: train_safety_test.py path/to/troupe repo_root

- An unwritable --report, --trace, --metrics-csv or --checkpoint exits 2 naming
  the flag and the path before any data is read (the --data given does not
  exist: its error would come first otherwise), creating nothing; a --supervisor
  client checks its own --report before connecting.
- --metrics-csv writes one CSV row per step with the columns documented.
- SIGINT after the first progress line stops at a step boundary, writes a
  checkpoint that --resume continues, prints one line and exits 130; without
  --checkpoint it says so; a --resume with nothing left to do says so, exit 0.
- --checkpoint onto another model's / topology's / the same checkpoint is
  refused naming what differs unless --overwrite.
- --plan with a topology flag of another value, --schedule interleaved without
  --virtual-stages, a language model without --data: exit 2 naming the flag;
  more devices than threads: one warning with the counts.
"""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile

TROUPE, ROOT = sys.argv[1], sys.argv[2]
MNIST = os.path.join(ROOT, "data", "mnist")
WORK = tempfile.mkdtemp(prefix="troupe-safety-")
QUIET = ["--no-progress", "--threads", "1"]
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def troupe(args, timeout=120):
    return subprocess.run([TROUPE] + args, capture_output=True, text=True, errors="replace",
                          timeout=timeout)


def expect(args, code, text, what):
    r = troupe(args)
    out = r.stdout + r.stderr
    check(r.returncode == code and text in out,
          "%s: exit %d, %r (got %d: %s)" % (what, code, text, r.returncode, out.strip()[-400:]))
    return r


# A tiny regression of one's own: 64 CSV rows, batch 32 (2 steps an epoch).
rng = random.Random(5)
data = os.path.join(WORK, "tiny.csv")
with open(data, "w") as f:
    f.write("a,b,c,d,y\n")
    for _ in range(64):
        x = [rng.uniform(-1, 1) for _ in range(4)]
        f.write(",".join("%.5f" % v for v in x) + ",%.5f\n" % sum(x))


def model_file(name, hidden):
    path = os.path.join(WORK, name + ".json")
    json.dump({"name": name, "input_dtype": "f32", "input_shape": [4], "layers": [
        {"type": "dense", "in": 4, "out": hidden}, {"type": "relu"},
        {"type": "dense", "in": hidden, "out": 1}]}, open(path, "w"))
    return path


small, other = model_file("small", 8), model_file("other", 16)
TINY = ["--data", data, "--y-name", "y", "--batch", "32", "--no-eval"] + QUIET

# 1. Output paths, checked before the data: --data names a missing file.
afile = os.path.join(WORK, "afile")
open(afile, "w").close()
missing_data = ["--data", os.path.join(WORK, "no-such-data"), "--steps", "1"] + QUIET
for flag, path in [("--report", os.path.join(WORK, "nodir", "r.json")),
                   ("--metrics-csv", os.path.join(WORK, "nodir", "m.csv")),
                   ("--trace", os.path.join(afile, "t.json")),
                   ("--checkpoint", os.path.join(afile, "ck")),
                   ("--checkpoint", afile)]:
    expect(["train", flag, path] + missing_data, 2, flag + " " + path + ": ",
           "unwritable %s %s refused before the data" % (flag, path))
expect(["train", "--report", os.path.join(WORK, "nodir", "r.json")] + missing_data, 2,
       "directory %s does not exist" % os.path.join(WORK, "nodir"), "--report says which directory")
expect(["train", "--checkpoint", os.path.join(WORK, "newck"), "--report",
        os.path.join(WORK, "nodir", "r.json")] + missing_data, 2, "--report", "a refused run")
check(not os.path.exists(os.path.join(WORK, "newck")), "a refused run leaves no checkpoint directory")
expect(["train", "--supervisor", "127.0.0.1:1", "--connect-timeout", "1", "--report",
        os.path.join(WORK, "nodir", "r.json")] + missing_data, 2, "--report " + WORK,
       "a --supervisor client checks its --report before connecting")

# 2. --metrics-csv on a 2-stage run of 5 steps.
m = os.path.join(WORK, "m.csv")
expect(["train", "--model", small, "--pp", "2", "--epochs", "3", "--steps", "5", "--lr", "0.01",
        "--metrics-csv", m] + TINY, 0, "final loss", "--metrics-csv run")
rows = list(csv.DictReader(open(m))) if os.path.exists(m) else []
header = list(rows[0].keys()) if rows else None
check(header and header[:4] == ["step", "steps", "epoch", "loss"] and
      header[-4:] == ["lr", "samples_per_second", "busy_stage0", "busy_stage1"],
      "CSV header: %s" % header)
check([r["step"] for r in rows] == ["1", "2", "3", "4", "5"] and
      all(r["steps"] == "1" for r in rows) and
      [r["epoch"] for r in rows] == ["1", "1", "2", "2", "3"], "one row per step, with its epoch")
check(len(rows) == 5 and all(float(r["lr"]) == 0.01 and float(r["loss"]) > 0 and
                             float(r["samples_per_second"]) > 0 and
                             0 < float(r.get("busy_stage0") or "nan") <= 1.5 for r in rows),
      "lr, loss, rate and busy values")

# 3. SIGINT after the first progress line; then --resume from the checkpoint.
def interrupted_run(extra):
    p = subprocess.Popen([TROUPE, "train", "--data", MNIST, "--no-eval", "--threads", "1",
                          "--batch", "16"] + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, errors="replace")
    first = p.stderr.readline()
    while first and not first.startswith("epoch 1/1"):
        first = p.stderr.readline()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    return p.returncode, out + err, first


ck = os.path.join(WORK, "ck-int")
code, out, first = interrupted_run(["--checkpoint", ck])
line = [l for l in out.splitlines() if l.startswith("interrupted at step")]
check(first.startswith("epoch 1/1") and code == 130 and len(line) == 1 and
      line[0].endswith(": checkpoint written to " + ck), "SIGINT: exit 130, %r (got %d: %s)" %
      ("interrupted at step N: checkpoint written to " + ck, code, out.strip()[-300:]))
check("final loss" not in out, "no summary after an interrupt")
step = int(line[0].split()[3].rstrip(":")) if line else 0
state = json.load(open(os.path.join(ck, "trainer_state.json"))) if line else {}
check(state.get("global_step") == step and step > 0, "the checkpoint holds step %d" % step)
r = os.path.join(WORK, "resumed.json")
expect(["train", "--data", MNIST, "--no-eval", "--batch", "16", "--resume", ck, "--checkpoint", ck,
        "--steps", str(step + 3), "--report", r] + QUIET, 0, "final loss", "--resume after SIGINT")
rep = json.load(open(r)) if os.path.exists(r) else {}
check(rep.get("steps") == step + 3 and rep.get("steps_this_run") == 3,
      "the resumed run continued from step %d" % step)
code, out, _ = interrupted_run([])
check(code == 130 and "no checkpoint (pass --checkpoint DIR to keep progress)" in out,
      "SIGINT without --checkpoint says so (%d: %s)" % (code, out.strip()[-200:]))

# 5. A --resume with nothing left to do.
done = os.path.join(WORK, "ck-done")
expect(["train", "--model", small, "--epochs", "2", "--checkpoint", done] + TINY, 0, "final loss",
       "a 2-epoch run")
r = expect(["train", "--model", small, "--epochs", "2", "--resume", done] + TINY, 0,
           "checkpoint %s already finished 2 epochs (step 4): nothing to do; raise --epochs or "
           "--steps to train further" % done, "--resume of a finished checkpoint")
check("samples/s" not in r.stdout, "no summary for a resume with nothing to do")

# 4. --checkpoint onto an existing checkpoint.
expect(["train", "--model", other, "--steps", "1", "--checkpoint", done] + TINY, 2,
       "--checkpoint %s holds a checkpoint of another model (%s, not --model %s)" % (done, small, other),
       "another model's checkpoint is refused")
expect(["train", "--model", small, "--pp", "2", "--steps", "1", "--checkpoint", done] + TINY, 2,
       "holds a checkpoint of another topology: --pp 2 (the checkpoint has 1)",
       "another topology's checkpoint is refused")
expect(["train", "--model", small, "--steps", "1", "--checkpoint", done] + TINY, 2,
       "already holds a checkpoint of this model and topology (step 4): pass --resume %s to "
       "continue or --overwrite to replace it" % done, "the same model's checkpoint is refused")
expect(["train", "--model", other, "--steps", "1", "--checkpoint", done, "--overwrite"] + TINY, 0,
       "final loss", "--overwrite replaces it")
manifest = json.load(open(os.path.join(done, "manifest.json")))
check(manifest["config"]["model"] == other, "the checkpoint is now the other model's")

# 6. Flags a plan fixes, flags that do nothing, oversubscription.
plan = os.path.join(WORK, "plan.json")
expect(["plan", "--dp", "2", "--pp", "2", "--save", plan], 0, "saved", "troupe plan --save")
expect(["train", "--plan", plan, "--dp", "4"] + missing_data, 2,
       "--dp 4 conflicts with plan.json's 2 replicas: drop --dp or edit the plan", "--plan --dp 4")
expect(["train", "--plan", plan, "--pp", "3"] + missing_data, 2,
       "--pp 3 conflicts with plan.json's 2 stages", "--plan --pp 3")
expect(["train", "--plan", plan, "--microbatches", "4"] + missing_data, 2,
       "--microbatches 4 conflicts with plan.json's 1 micro-batches", "--plan --microbatches 4")
expect(["train", "--plan", plan, "--schedule", "1f1b"] + missing_data, 2,
       "--schedule 1f1b conflicts with plan.json's schedule gpipe", "--plan --schedule 1f1b")
expect(["train", "--pp", "2", "--schedule", "interleaved"] + missing_data, 2,
       "--schedule interleaved needs --virtual-stages V", "interleaved without --virtual-stages")
expect(["train", "--model", "transformer", "--steps", "1"] + QUIET, 2,
       "--model transformer is a character language model: pass --data FILE",
       "a language model without --data")
cores = os.cpu_count() or 1
if cores <= 8:  # one replica more than cores (a device each); bigger machines skip it
    r = troupe(["train", "--model", small, "--dp", str(cores + 1), "--steps", "1"] + TINY)
    warnings = [l for l in r.stderr.splitlines() if "devices on" in l]
    check(r.returncode == 0 and warnings == [
        "warning: %d devices on %d cores: each device gets less than a core; expect slower steps"
        % (cores + 1, cores)], "one oversubscription warning (%s)" % r.stderr.strip()[-300:])
else:
    print("skip the oversubscription warning on %d cores" % cores)
r = troupe(["train", "--model", small, "--dp", "1", "--steps", "1"] + TINY)
check(r.returncode == 0 and "devices on" not in r.stderr, "no warning for one device")

print("%d failure(s)" % len(failures))
sys.exit(1 if failures else 0)
