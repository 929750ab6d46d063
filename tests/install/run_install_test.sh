#!/usr/bin/env bash
# usage: run_install_test.sh CMAKE BINARY_DIR EXAMPLES_SOURCE_DIR WORK_DIR CXX_COMPILER MNIST_DIR
# Installs BINARY_DIR into WORK_DIR/prefix, configures and builds the examples
# against it (CMAKE_PREFIX_PATH only, as a user would) and runs them:
# mlp_step, custom_topology (3 steps of a hand-edited plan on MNIST_DIR) and
# own_dataset (a data set generated in code).
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
