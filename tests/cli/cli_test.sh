#!/usr/bin/env bash
# Bad input to the troupe CLI gets a clear error that names the problem and a
# non-zero exit (2), never a crash or a hang. Usage: cli_test.sh path/to/troupe
set -u
troupe=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
passed=0

# expect STATUS PATTERN -- ARGS...: runs troupe, checks the exit status and
# that stderr+stdout match PATTERN (grep -E); the output stays in $last_out.
expect() {
  local want=$1 pattern=$2
  shift 3
  local out status
  out=$(timeout 120 "$troupe" "$@" 2>&1)
  status=$?
  last_out=$out
  if [[ $status -ne $want ]] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL: troupe $* -> status $status (want $want), output:"
    echo "$out" | tail -5 | sed 's/^/    /'
    failures=$((failures + 1))
  else
    passed=$((passed + 1))
  fi
}

quick=(--steps 3 --no-eval --no-progress --threads 1)

# Help for every subcommand.
expect 0 "train" -- --help
expect 0 "--model" -- train --help
expect 0 "train" -- bench --help

# Flags.
expect 2 "resnet" -- train --model resnet "${quick[@]}"
expect 2 "reads a text file.*data/mnist' is a directory" -- train --model transformer \
  --data data/mnist "${quick[@]}"
expect 2 "--model transformer is a character language model: pass --data FILE" -- \
  train --model transformer "${quick[@]}"
expect 2 "--batch" -- train --batch 0 "${quick[@]}"
expect 2 "--epochs" -- train --epochs -1 "${quick[@]}"
expect 2 "--lr" -- train --lr abc "${quick[@]}"
expect 2 "--stages" -- train --stages 0 "${quick[@]}"
expect 2 "--stages 9" -- train --stages 9 "${quick[@]}"
expect 2 "zigzag" -- train --schedule zigzag "${quick[@]}"
expect 2 "frobnicate" -- train --frobnicate "${quick[@]}"
expect 2 "inject-fault" -- train --inject-fault nonsense "${quick[@]}"
expect 2 "log-level" -- --log-level loud train "${quick[@]}"

# --pp is the pipeline name of --stages.
expect 0 "layer-placement" -- train --pp 2 "${quick[@]}"

# Interleaved 1F1B: 2 devices x 2 chunks of the mlp's 5 layers; more chunks
# than layers, or chunks without the interleaved schedule, are refused.
expect 0 "pipeline" -- train --pp 2 --microbatches 4 --schedule interleaved --virtual-stages 2 "${quick[@]}"
expect 2 "6 chunks.*only 5 layers" -- train --pp 2 --schedule interleaved --virtual-stages 3 "${quick[@]}"
expect 2 "--virtual-stages 2 needs --schedule interleaved" -- train --pp 2 --virtual-stages 2 "${quick[@]}"
expect 2 "--virtual-stages" -- train --pp 2 --schedule interleaved --virtual-stages 0 "${quick[@]}"
# Zero-bubble schedules: zbv takes its two chunks per device by itself.
expect 0 "pipeline" -- train --pp 2 --microbatches 4 --schedule zb1 "${quick[@]}"
expect 0 "pipeline" -- train --pp 2 --microbatches 4 --schedule zbv "${quick[@]}"
expect 2 "zbv runs two chunks per device" -- train --pp 2 --schedule zbv --virtual-stages 3 "${quick[@]}"

# Data files.
expect 2 "/nonexistent/mnist" -- train --data /nonexistent/mnist "${quick[@]}"
mkdir -p "$tmp/trunc" "$tmp/magic" "$tmp/raw"
cp "$root"/data/mnist/*.gz "$tmp/trunc/"
head -c 100000 "$root/data/mnist/train-images-idx3-ubyte.gz" >"$tmp/trunc/train-images-idx3-ubyte.gz"
expect 2 "train-images-idx3-ubyte" -- train --data "$tmp/trunc" "${quick[@]}"
cp "$root"/data/mnist/*.gz "$tmp/magic/"
rm "$tmp/magic/train-labels-idx1-ubyte.gz"
printf '\x00\x00\x09\x01\x00\x00\x00\x02\x05\x00' >"$tmp/magic/train-labels-idx1-ubyte"
expect 2 "train-labels-idx1-ubyte" -- train --data "$tmp/magic" "${quick[@]}"
cp "$root"/data/mnist/*.gz "$tmp/raw/"
rm "$tmp/raw/t10k-labels-idx1-ubyte.gz"
printf '\x00\x00\x08\x01\x00\x00\x27\x10\x07' >"$tmp/raw/t10k-labels-idx1-ubyte"
expect 2 "t10k-labels-idx1-ubyte" -- train --data "$tmp/raw" --steps 3 --no-progress --threads 1

# The character language model reads a text file; a missing one, bad
# schedule and clipping flags, or a warm-up as long as the run are refused.
lm=(--model transformer --data "$root/data/sherlock.txt")
expect 2 "text file.*/nonexistent/sherlock.txt" -- train --model transformer \
  --data /nonexistent/sherlock.txt "${quick[@]}"
expect 2 "--lr-schedule" -- train "${lm[@]}" --lr-schedule linear "${quick[@]}"
expect 2 "--clip-norm" -- train "${lm[@]}" --clip-norm -1 "${quick[@]}"
expect 2 "--warmup-steps 3 must be fewer than the run's 3" -- train "${lm[@]}" --warmup-steps 3 \
  "${quick[@]}"
expect 0 "held-out [0-9.]+ bits/char" -- train "${lm[@]}" --pp 2 --microbatches 2 --batch 8 \
  --lr-schedule cosine --warmup-steps 1 --clip-norm 1 --steps 3 --no-progress --threads 1

# Checkpoints.
touch "$tmp/not-a-dir"
expect 2 "not-a-dir" -- train "${quick[@]}" --checkpoint "$tmp/not-a-dir/ck"
expect 0 "final loss" -- train "${quick[@]}" --checkpoint "$tmp/ck"
cp -r "$tmp/ck" "$tmp/ck-corrupt"
printf 'XXXX' | dd of="$tmp/ck-corrupt/model.safetensors" bs=1 seek=200 conv=notrunc status=none
expect 2 "model.safetensors" -- train "${quick[@]}" --resume "$tmp/ck-corrupt"
cp -r "$tmp/ck" "$tmp/ck-nomanifest"
rm "$tmp/ck-nomanifest/manifest.json"
expect 2 "manifest.json" -- train "${quick[@]}" --resume "$tmp/ck-nomanifest"
expect 2 "batch" -- train "${quick[@]}" --batch 32 --resume "$tmp/ck"
expect 2 "different model" -- train --model cnn "${quick[@]}" --resume "$tmp/ck"
expect 2 "/nonexistent" -- train "${quick[@]}" --resume /nonexistent/ck
expect 0 "final loss" -- train --steps 6 --no-eval --no-progress --threads 1 --resume "$tmp/ck"

# Reports.
expect 2 "not-a-dir" -- train "${quick[@]}" --report "$tmp/not-a-dir/r.json"
expect 0 "final loss" -- train "${quick[@]}" --report "$tmp/r.json"
if ! grep -q '"test_accuracy"' "$tmp/r.json"; then
  echo "FAIL: report lacks test_accuracy"
  failures=$((failures + 1))
fi

# Traces: an unwritable place is refused up front; a pipeline's trace is
# Chrome trace-event JSON with a named track per stage.
expect 2 "--trace .*not-a-dir" -- train "${quick[@]}" --trace "$tmp/not-a-dir/t.json"
expect 2 "--trace must name a file" -- train "${quick[@]}" --trace "$tmp/"
expect 0 "final loss" -- train "${quick[@]}" --pp 2 --microbatches 2 --schedule 1f1b \
  --trace "$tmp/trace/t.json"
if ! python3 - "$tmp/trace/t.json" <<'EOF_PY'
import json, sys
doc = json.load(open(sys.argv[1]))
names = [e["args"]["name"] for e in doc["traceEvents"] if e["name"] == "thread_name"]
assert any(n.startswith("stage 0 (") for n in names) and any(n.startswith("stage 1 (") for n in names), names
assert sum(e["name"] == "forward" for e in doc["traceEvents"]) == 3 * 2 * 2
EOF_PY
then
  echo "FAIL: --trace wrote no valid trace with a track per stage"
  failures=$((failures + 1))
fi

# troupe bench train: bad flags, a broken peer, and a tiny run that writes JSON.
expect 2 "--threads" -- bench train --threads 0
expect 2 "--optimizer" -- bench train --optimizer rmsprop
expect 2 "--repeats" -- bench train --repeats 0
expect 2 "--peer" -- bench train --peer "$tmp/no-such-peer" --steps 1 --repeats 1
expect 2 "/nonexistent" -- bench train --data /nonexistent --steps 1 --repeats 1
expect 1 "exited with status" -- bench train --peer /bin/false --steps 2 --warmup 1 --repeats 1
expect 0 "ratio troupe/libtorch" -- bench train --steps 3 --warmup 1 --repeats 1 --json "$tmp/bench.json"
for key in troupe_steps_per_second libtorch_steps_per_second '"ratio"' '"same_core_us"'; do
  if ! grep -q "$key" "$tmp/bench.json"; then
    echo "FAIL: bench JSON lacks $key"
    failures=$((failures + 1))
  fi
done
# Its "where the time goes" line: printed, parts (ms, 3 decimals) summing to
# the step it names within rounding, the JSON's too; the GEMM-bound limit.
printf '%s\n' "$last_out" >"$tmp/bench.out"
if ! python3 - "$root/tests/cli/where_time_goes.py" "$tmp/bench.json" "$tmp/bench.out" <<'EOF_PY'
import json, runpy, sys
check = runpy.run_path(sys.argv[1])
lines = check["lines_of"](open(sys.argv[3]).read(), "where the time goes (ms/step")
assert len(lines) == 1, lines
check["parts_sum_to_step"](lines[0], "a traced run after the repeats, step ")
doc = json.load(open(sys.argv[2]))
check["json_sums_to_step"](doc["where_the_time_goes"])
g = doc["gemm_bound"]
assert g["gemm_flops_per_step"] == 408813568, g
assert g["min_step_ms"] > 0 and g["percent_of_limit"] > 0, g
# The limit is measured beside each repeat: the percent is of the medians,
# and per repeat (one repeat here: the same figure).
assert abs(100 * g["min_step_ms"] / g["troupe_step_ms"] - g["percent_of_limit"]) < 1e-6, g
p = g["percent_of_limit_per_repeat"]
assert p["min"] == p["median"] == p["max"], g
assert abs(p["median"] - g["percent_of_limit"]) < 1e-6, g
EOF_PY
then
  echo "FAIL: bench train's where-the-time-goes line or GEMM-bound limit missing or not adding up"
  failures=$((failures + 1))
fi
if ! grep -qE "GEMM-bound limit \(1 BLAS thread\(s\)\): 0\.4088 GFLOP/step" <<<"$last_out"; then
  echo "FAIL: bench train printed no GEMM-bound limit"
  failures=$((failures + 1))
fi

# troupe certs: a CA, a node certificate and its check; a missing CA, a bad
# name and existing files are refused with exit 2 and a message naming them.
expect 0 "ca-key.pem" -- certs init --dir "$tmp/certs/ca"
expect 0 "node-a-key.pem" -- certs issue --dir "$tmp/certs/ca" --name node-a \
  --host 127.0.0.1 --host node-a.example --out "$tmp/certs/nodes"
expect 0 "CN: +node-a" -- certs check --dir "$tmp/certs/nodes" --name node-a \
  --ca "$tmp/certs/ca/ca.pem"
expect 0 "DNS:node-a.example" -- certs check --cert "$tmp/certs/nodes/node-a.pem" \
  --key "$tmp/certs/nodes/node-a-key.pem" --ca "$tmp/certs/ca/ca.pem"
expect 0 "client-key.pem" -- certs issue --dir "$tmp/certs/ca" --name client
expect 0 "CN: +client" -- certs check --dir "$tmp/certs/ca" --name client
if [[ $(stat -c %a "$tmp/certs/nodes/node-a-key.pem") != 600 ]]; then
  echo "FAIL: troupe certs issue wrote a key that is not mode 600"
  failures=$((failures + 1))
fi
expect 2 "no-ca/ca.pem" -- certs issue --dir "$tmp/certs/no-ca" --name node-b
expect 2 "invalid --name '\.\./evil'" -- certs issue --dir "$tmp/certs/ca" --name ../evil
expect 2 "ca.pem' already exists.*--force" -- certs init --dir "$tmp/certs/ca"
expect 2 "node-a.pem' already exists" -- certs issue --dir "$tmp/certs/ca" --name node-a \
  --out "$tmp/certs/nodes"
expect 2 "does not belong" -- certs check --cert "$tmp/certs/nodes/node-a.pem" \
  --key "$tmp/certs/ca/client-key.pem" --ca "$tmp/certs/ca/ca.pem"

# troupe bench transport: bad flags, and a small run (4 KiB .. 256 KiB, one
# round) whose JSON rows carry the issue's four fields with positive values.
# No timing thresholds: the figures depend on the machine and its load.
expect 2 "--reps" -- bench transport --reps 0
expect 2 "--max-size" -- bench transport --max-size 1000
expect 2 "frobnicate" -- bench transport --frobnicate
expect 0 "dp/tcp" -- bench transport --max-size 262144 --reps 1 --json "$tmp/transport.json"
if ! python3 - "$tmp/transport.json" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["wake_latency"]["same_core_us"] > 0, doc["wake_latency"]
rows = doc["rows"]
assert [r["size_bytes"] for r in rows] == [4096, 16384, 65536, 262144], rows
for r in rows:
    for key in ("size_bytes", "dataplane_gbps", "caf_gbps", "tcp_gbps"):
        assert isinstance(r[key], (int, float)) and r[key] > 0, (key, r)
EOF
then
  echo "FAIL: bench transport JSON lacks a wake-up latency, or rows positive size_bytes/dataplane_gbps/caf_gbps/tcp_gbps"
  failures=$((failures + 1))
fi

# troupe bench pipeline: bad flags, then tiny runs of every schedule (gpipe,
# 1f1b, interleaved, zb1, zbv; balanced and with stage 1 slowed; in process, and 1f1b across processes) whose JSON
# rows carry every figure, finite. No timing thresholds.
expect 2 "--schedule" -- bench pipeline --schedule zigzag
expect 2 "--slow-stage must be" -- bench pipeline --stages 2 --slow-stage 5 --steps 1
expect 2 "--microbatches" -- bench pipeline --microbatches 0
pipeline=(bench pipeline --model mlp --stages 2 --microbatches 4 --steps 3 --warmup 1)
expect 0 "interleaved V=2 +stage 1 x2" -- "${pipeline[@]}" --schedule all --slow-stage 1 \
  --json "$tmp/pipeline.json"
# A "where the time goes" line per stage and row (6 rows x 2 stages), each
# adding up to the trainer step it names, in the JSON too.
printf '%s\n' "$last_out" >"$tmp/pipeline.out"
if ! python3 - "$root/tests/cli/where_time_goes.py" "$tmp/pipeline.json" "$tmp/pipeline.out" <<'EOF_PY'
import json, runpy, sys
check = runpy.run_path(sys.argv[1])
lines = check["lines_of"](open(sys.argv[3]).read(), "where the time goes, stage ")
assert len(lines) == 20, lines  # 10 rows (5 schedules, balanced and slowed) x 2 stages
for line in lines:
    check["parts_sum_to_step"](line, "% of the ")
for r in json.load(open(sys.argv[2]))["rows"]:
    for s in r["stages"]:
        check["json_sums_to_step"](s["where_the_time_goes"])
EOF_PY
then
  echo "FAIL: bench pipeline's where-the-time-goes lines missing or not adding up"
  failures=$((failures + 1))
fi
expect 0 "1f1b" -- "${pipeline[@]}" --schedule 1f1b --processes --json "$tmp/pipeline-procs.json"
if ! python3 - "$tmp/pipeline.json" 10 "$tmp/pipeline-procs.json" 1 <<'EOF_PY'
import json, math, sys
for path, rows in zip(sys.argv[1::2], sys.argv[2::2]):
    doc = json.load(open(path))
    assert len(doc["rows"]) == int(rows), (path, doc["rows"])
    for r in doc["rows"]:
        for key in ("samples_per_second", "step_ms", "bubble_measured", "bubble_theory",
                    "bubble_simulated", "bubble_measured_min", "bubble_measured_max",
                    "forward_ms_per_microbatch", "backward_ms_per_microbatch",
                    "weight_ms_per_microbatch"):
            assert isinstance(r[key], (int, float)) and math.isfinite(r[key]), (key, r)
        assert r["timed_steps"] == 3, r
        assert len(r["stages"]) == 2, r
        # Each stage's layer chunks as placed: two per stage where it has
        # virtual stages, together every one of the mlp's 5 layers once.
        chunks = [c for st in r["layers"] for c in st.split(" | ")]
        per_stage = 2 if r["schedule"] in ("interleaved", "zbv") else 1
        assert len(r["layers"]) == 2 and len(chunks) == 2 * per_stage, r
        spans = [tuple(int(x) for x in c.strip("[)").split(", ")) for c in chunks]
        assert sorted(l for b, e in spans for l in range(b, e)) == list(range(5)), r
        for s in r["stages"]:
            for key in ("overhead_us_per_microbatch", "busy_ms", "wait_ms", "forward_ms",
                        "backward_ms", "weight_ms", "optimizer_ms", "peak_activation_bytes"):
                assert isinstance(s[key], (int, float)) and math.isfinite(s[key]), (key, s)
            assert s["peak_activation_bytes"] > 0, s
            # Only the split schedules run weight actions.
            assert (s["weight_ms"] > 0) == (r["schedule"] in ("zb1", "zbv")), (r["schedule"], s)
EOF_PY
then
  echo "FAIL: bench pipeline JSON rows lack finite figures or the layers of each stage"
  failures=$((failures + 1))
fi

# troupe bench ps: bad flags, then a tiny run of every part (1 MiB of synthetic
# parameters on 1 and 2 shards, in process and across processes; 3-step
# training runs) whose JSON parses and has positive figures. No timing thresholds.
expect 2 "--shards: '0'" -- bench ps --shards 0
expect 2 "--parts: unknown 'frobnicate'" -- bench ps --parts frobnicate
expect 0 "ratio to all-reduce" -- bench ps --mb 1 --shards 1,2 --rounds 3 --round-warmup 1 \
  --steps 3 --warmup 1 --batch 32 --repeats 1 --json "$tmp/ps.json"
if ! python3 - "$tmp/ps.json" <<'EOF_PY'
import json, sys
doc = json.load(open(sys.argv[1]))
rows = doc["pushpull"]["rows"]
assert [(r["where"], r["shards"]) for r in rows] == [("in process", 1), ("in process", 2),
                                                      ("processes", 1), ("processes", 2)], rows
for r in rows:
    assert r["gbps"]["median"] > 0 and r["runs"][0]["shard_bytes_in_per_round"] > 0, r
train = doc["training"]
assert len(train["modes"]["rows"]) == 6 and len(train["vs_allreduce"]["rows"]) == 3, train
for r in train["modes"]["rows"] + train["vs_allreduce"]["rows"]:
    assert r["samples_per_second"]["median"] > 0, r
EOF_PY
then
  echo "FAIL: bench ps JSON lacks its push+pull and training rows"
  failures=$((failures + 1))
fi

# troupe bench recovery: bad flags, then the dp scenario alone (a local cluster
# of 3 node processes; kill -9 and SIGSTOP of a replica's node, no peers) whose
# JSON has the restart of each run; no process of it is left. No timing thresholds.
expect 2 "--scenarios: unknown 'frobnicate'" -- bench recovery --scenarios frobnicate
expect 2 "--repeats" -- bench recovery --repeats 0
expect 2 "--data: no /nonexistent" -- bench recovery --data /nonexistent
expect 0 "detection <= 2 s, SIGSTOP" -- bench recovery --scenarios dp --no-peers \
  --work-dir "$tmp/recovery" --json "$tmp/recovery.json"
if ! python3 - "$tmp/recovery.json" <<'EOF_PY'
import json, sys
doc = json.load(open(sys.argv[1]))
(dp,) = doc["scenarios"]
for run in (dp["kill9"], dp["sigstop"]):
    assert run["restore_source"] == "replicas" and run["steps_redone"] == 0, run
    assert run["detection_seconds"] > 0 and run["back_at_step_seconds"] > 0, run
    assert run["wall_seconds"] > 0, run
assert dp["baseline_wall_seconds"] > 0 and doc["torchrun"]["skipped"] == "--no-peers", doc
EOF_PY
then
  echo "FAIL: bench recovery JSON lacks its dp runs"
  failures=$((failures + 1))
fi
if pgrep -f "$tmp/recovery" >/dev/null; then
  echo "FAIL: bench recovery left a process behind: $(pgrep -af "$tmp/recovery")"
  failures=$((failures + 1))
fi

# troupe plan: the topology of the training flags, without running anything
# or reading data; --save writes it for `troupe train --plan`, which then runs
# exactly that topology.
expect 0 "memory per device" -- plan --pp 2 --tp 2 --dp 2
out=$(timeout 120 "$troupe" plan --pp 2 --tp 2 --dp 2 --data /nonexistent 2>&1)
if [[ $(grep -cE '^replica [01] stage [01] tp rank [01]: layers' <<<"$out") -ne 8 ]] ||
  ! grep -q '^data-parallel groups' <<<"$out" || ! grep -q '^tensor-parallel groups' <<<"$out" ||
  ! grep -q '^  stage 1 tp rank 1: local/cpu:3 local/cpu:7$' <<<"$out" ||
  ! grep -q '^  replica 1 stage 0: local/cpu:4 local/cpu:5$' <<<"$out"; then
  echo "FAIL: troupe plan --pp 2 --tp 2 --dp 2 does not show 8 layer shards and their groups:"
  echo "$out" | sed 's/^/    /'
  failures=$((failures + 1))
fi
expect 0 '"tp": 2' -- plan --pp 2 --tp 2 --json
expect 0 "ps 1 on local/cpu:3" -- plan --ps 2 --workers 2 --ps-mode ssp --staleness 1
expect 0 "replica 1 stage 2: layers .* on local/cpu:5" -- plan --pp 3 --dp 2 --devices 8
expect 2 "needs 8 devices, the cluster has 4" -- plan --pp 2 --tp 2 --dp 2 --devices 4
expect 2 "--devices excludes --cluster-spec|--cluster-spec excludes --devices" -- plan --devices 2 \
  --cluster-spec "$tmp/none.json"
cat >"$tmp/tf_config.json" <<'EOF_SPEC'
{"cluster": {"chief": ["127.0.0.1:7000"], "worker": ["127.0.0.1:7001", "127.0.0.1:7002"],
             "ps": ["127.0.0.1:7003"]},
 "task": {"type": "chief", "index": 0}}
EOF_SPEC
expect 0 "replica 1 stage 0: layers .* on worker-1/cpu:0" -- plan --dp 2 --ps 1 \
  --cluster-spec "$tmp/tf_config.json"
expect 2 "no-such-spec.json" -- plan --cluster-spec "$tmp/no-such-spec.json"
bare=(--steps 3 --batch 32 --no-eval --no-progress --threads 1)
topologies=("--pp 2 --microbatches 2 --schedule 1f1b --dp 2"
  "--pp 2 --tp 2 --dp 2 --microbatches 2"
  "--ps 2 --workers 2 --ps-split-mb 0.5")
for i in "${!topologies[@]}"; do
  read -ra topology <<<"${topologies[$i]}"
  expect 0 "saved to $tmp/plan$i.json" -- plan "${topology[@]}" "${bare[@]}" --save "$tmp/plan$i.json"
  expect 0 "final loss" -- train "${topology[@]}" "${bare[@]}" --report "$tmp/direct$i.json"
  expect 0 "final loss" -- train "${topology[@]}" "${bare[@]}" --plan "$tmp/plan$i.json" \
    --report "$tmp/planned$i.json"
  # The plan alone fixes the topology: no topology flags needed.
  expect 0 "final loss" -- train "${bare[@]}" --plan "$tmp/plan$i.json" \
    --report "$tmp/planned-bare$i.json"
  if ! python3 - "$tmp/direct$i.json" "$tmp/planned$i.json" "$tmp/planned-bare$i.json" <<'EOF_PY'
import json, sys
direct, *planned = [json.load(open(f)) for f in sys.argv[1:]]
for p in planned:
    assert p["strategy"] == direct["strategy"], (p["strategy"], direct["strategy"])
    assert p["final_loss"] == direct["final_loss"], (p["final_loss"], direct["final_loss"])
EOF_PY
  then
    echo "FAIL: troupe train --plan (saved by troupe plan ${topology[*]}) differs from troupe train"
    failures=$((failures + 1))
  fi
done
cp "$tmp/plan0.json" "$tmp/plan.json"
expect 0 "replica 1 stage 1: layers" -- plan --plan "$tmp/plan.json"
echo '{"model": 1}' >"$tmp/broken-plan.json"
expect 2 "--plan .*broken-plan.json: plan: " -- train "${quick[@]}" --plan "$tmp/broken-plan.json"
expect 2 "--plan .*broken-plan.json: plan: " -- plan --plan "$tmp/broken-plan.json"
echo '{"model": ' >"$tmp/cut-plan.json"
expect 2 "--plan .*cut-plan.json: not JSON" -- train "${quick[@]}" --plan "$tmp/cut-plan.json"
python3 - "$tmp/plan.json" "$tmp/bad-device-plan.json" <<'EOF_PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["stages"][3]["device"] = "cpu:42"
json.dump(p, open(sys.argv[2], "w"))
EOF_PY
expect 2 "bad-device-plan.json: plan: stages\[3\]: device local/cpu:42 is not one of" -- \
  train "${quick[@]}" --plan "$tmp/bad-device-plan.json"

# A CPU-only machine is the normal case: the GPU probe's reason (the CUDA
# driver's error text) is a debug line, not noise before every command.
expect 0 "final loss" -- train "${quick[@]}"
if grep -q "no usable GPU" <<<"$last_out"; then
  echo "FAIL: the GPU probe's outcome is logged at info:"; grep "no usable GPU" <<<"$last_out"
  failures=$((failures + 1))
else
  passed=$((passed + 1))
fi
expect 0 "no usable GPU|usable CUDA device" -- --log-level debug train "${quick[@]}"
# --log-level is accepted after the subcommand too (and checked there).
expect 0 "no usable GPU|usable CUDA device" -- train "${quick[@]}" --log-level debug
expect 2 "log-level" -- train "${quick[@]}" --log-level loud

echo "$passed passed, $failures failed"
[[ $failures -eq 0 ]]
