#!/usr/bin/env bash
# usage: run_install_test.sh CMAKE BINARY_DIR EXAMPLES_SOURCE_DIR WORK_DIR CXX_COMPILER MNIST_DIR
# Installs BINARY_DIR into WORK_DIR/prefix, configures and builds the examples
# against it (CMAKE_PREFIX_PATH only, as a user would) and runs them:
# mlp_step, custom_topology (3 steps of a hand-edited plan on MNIST_DIR),
# own_dataset (a data set generated in code), and custom_layer_node (a user's
# binary with its own layer type) as the supervisor, two nodes and the client
# of a 2-node --pp 2 cluster job.
set -euo pipefail
cmake=$1 binary_dir=$2 examples=$3 work=$4 cxx=$5 mnist=$6

# A fresh directory per run, private to this test (under the build tree).
rm -rf "$work"
mkdir -p "$work"
prefix=$work/prefix

echo "--- install $binary_dir -> $prefix"
"$cmake" --install "$binary_dir" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log"; exit 1; }
config=$(find "$prefix" -name troupeConfig.cmake -print -quit)
[[ -n $config ]] || { echo "no troupeConfig.cmake under $prefix"; exit 1; }
echo "    $config"

echo "--- configure examples against $prefix"
"$cmake" -S "$examples" -B "$work/examples" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release

echo "--- build examples"
"$cmake" --build "$work/examples" -j2

echo "--- run mlp_step"
"$work/examples/mlp_step"

echo "--- run custom_topology"
"$work/examples/custom_topology" "$mnist"
echo "--- run own_dataset"
"$work/examples/own_dataset"

echo "--- custom layer: a 2-node cluster of custom_layer_node"
app=$work/examples/custom_layer_node
run=$work/cluster
mkdir -p "$run"
cat >"$run/custom.json" <<'JSON'
{"name": "tanh_mlp", "input_shape": [784], "layers": [
  {"type": "dense", "in": 784, "out": 64},
  {"type": "scaled_tanh", "scale": 1.5},
  {"type": "dense", "in": 64, "out": 10}]}
JSON
# The installed troupe does not know the layer: its error names the file and type.
if "$prefix/bin/troupe" train --model "$run/custom.json" --data "$mnist" --steps 1 \
    --no-progress >"$run/plain.log" 2>&1; then
  echo "FAIL: the plain troupe binary trained a model with an unregistered layer"; exit 1
fi
grep -q "custom.json: layer 1: unknown type 'scaled_tanh'" "$run/plain.log" ||
  { echo "FAIL: unexpected error:"; cat "$run/plain.log"; exit 1; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$app" supervisor --listen 127.0.0.1:0 --insecure-plain --expect-nodes 2 --jobs 1 \
  --info-file "$run/sup.json" >"$run/sup.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s $run/sup.json ]] && break; sleep 0.1; done
port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["port"])' "$run/sup.json")
for n in a b; do
  "$app" node --supervisor "127.0.0.1:$port" --insecure-plain --name "$n" --no-measure \
    >"$run/node-$n.log" 2>&1 &
  pids+=($!)
done
"$app" train --supervisor "127.0.0.1:$port" --insecure-plain --model "$run/custom.json" \
  --data "$mnist" --pp 2 --split 1,2 --balance off --steps 40 --no-eval --no-progress \
  --report "$run/report.json" ||
  { echo "FAIL: the cluster job"; tail -n 20 "$run"/*.log; exit 1; }
python3 - "$run/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
nodes = sorted(s["node"] for s in r["plan"]["stages"])
assert nodes == ["a", "b"], f"one stage per node: {nodes}"
assert r["steps"] == 40, r["steps"]
assert r["final_loss"] < 2.0, f"the loss falls from ln(10) = 2.30: {r['final_loss']}"
print(f"custom layer on 2 nodes: stages on {nodes}, final loss {r['final_loss']:.3f}")
PY
# --jobs 1: the supervisor stops after the job, and stops its nodes.
for p in "${pids[@]}"; do wait "$p" || { echo "FAIL: a cluster process exited $?"; exit 1; }; done
pids=()
echo "--- install test passed"
