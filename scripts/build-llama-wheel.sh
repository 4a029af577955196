#!/usr/bin/env bash
# Build the llama-cpp-python wheel once (about 8 minutes on 2 cores) and keep it in a cache folder, so later
# environments on this machine install it in seconds. -DGGML_NATIVE=OFF makes the wheel safe on any x86-64 CPU
# (it still uses AVX2/FMA at run time); on a Pi (aarch64) it builds for the Cortex-A72 the same way.
set -euo pipefail

version="${1:?usage: build-llama-wheel.sh VERSION WHEEL_DIR}"
wheels="${2:?usage: build-llama-wheel.sh VERSION WHEEL_DIR}"
python="${PYTHON:-python3}"

mkdir -p "$wheels"
if compgen -G "$wheels/llama_cpp_python-${version}-*.whl" > /dev/null; then
    echo "llama-cpp-python ${version}: cached wheel in ${wheels}"
    exit 0
fi
echo "llama-cpp-python ${version}: building the wheel (once per machine; about 8 minutes on 2 cores)"
start=$(date +%s)
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$python" -m pip wheel --no-deps "llama-cpp-python==${version}" -w "$wheels"
echo "llama-cpp-python ${version}: built in $(( $(date +%s) - start )) s"
