#!/bin/bash
# GPU offload check on a machine with an NVIDIA GPU and CUDA's compiler but no network and no
# models: builds llama-cpp-python for CUDA from a source tarball, then runs the real CLI (the
# numpy/llama_cpp import-order guard) and bench_gpu.py on a tiny model. Run from the repo root:
#
#   tests/benchmarks/gpu_check.sh DIR
#
# DIR holds: llama-slim.tar.gz (the llama-cpp-python 0.3.36 sdist without vendor/llama.cpp's
# models, docs and .git: 9 MB), tiny-fim.gguf (tests/benchmarks/tiny_fim_model.py), and wheels
# of what the machine lacks (diskcache, pygls, lsprotocol, cattrs). Output goes to $OUT (or
# /tmp/gpu-check). Build: ~210 s on 16 cores for sm_90 alone.
set -uo pipefail
dir=$(cd "$1" && pwd); repo=$PWD; out=${OUT:-/tmp/gpu-check}; mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$dir"/*.whl || exit 1
tar xzf "$dir/llama-slim.tar.gz" -C /tmp || exit 1
(cd /tmp/llama_cpp_python-0.3.36 && CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCH:-90} -DGGML_NATIVE=OFF -DLLAMA_OPENSSL=OFF -DGGML_CUDA_NCCL=OFF -DGGML_CUDA_FA_QUANTS=f16-f16" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python3 -m pip install --no-index --no-deps --no-build-isolation --no-compile --target /tmp/site . > "$out/build.log" 2>&1) || { tail -30 "$out/build.log"; exit 1; }
# memlsp without installing it: the five folders as the memlsp namespace.
mkdir -p /tmp/ns/memlsp /tmp/cfg/memlsp /tmp/w
for d in config models agents server memory; do ln -sfn "$repo/$d" /tmp/ns/memlsp/$d; done
cat > /tmp/cfg/memlsp/config.yaml <<YAML
models:
  tiny-fim:
    role: fim
    source: {kind: path, path: $dir/tiny-fim.gguf}
    n_ctx: 4096
    fim: {}
YAML
export PYTHONPATH=/tmp/ns:/tmp/site XDG_CONFIG_HOME=/tmp/cfg XDG_CACHE_HOME=/tmp/cache
printf 'def fib(n):\n    if n < 2:\n        return n\n    \n' > /tmp/w/fib.py
echo "== memlsp complete on the tiny model (llama_cpp imported first)"
python3 -m memlsp.server.cli complete /tmp/w/fib.py:4:5 --no-memory --model tiny-fim --json; echo "rc=$?"
echo "== auto model (a GPU build picks the 1.5B)"
python3 -m memlsp.server.cli complete /tmp/w/fib.py:4:5 --no-memory --json; echo "rc=$?"
cd tests/benchmarks
python3 bench_gpu.py --model-file "$dir/tiny-fim.gguf" --like qwen2.5-coder-0.5b 2> "$out/bench_gpu.err" | tee "$out/bench_gpu.json"
