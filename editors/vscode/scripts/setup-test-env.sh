#!/usr/bin/env bash
# Prepare everything tests/editors/test_vscode.py needs to run the extension in a real VS Code, and build
# the extension's .vsix. Idempotent: a second run only checks and rebuilds what changed.
#
#   1. Debian packages: chromium (the browser playwright drives), ripgrep (VS Code's search
#      binary; its npm package would download it from GitHub), libkrb5-dev (code-server's
#      kerberos module compiles against it), tmux (tests/editors/test_nvim_screen.py runs Neovim's
#      terminal UI in it and screenshots it with chromium), emacs-nox and elpa-eglot
#      (tests/editors/test_emacs.py), nodejs and npm when node is missing.
#   2. code-server (VS Code in a browser, from npm) and playwright-core, in a cache folder outside
#      the repository: $MEMLSP_VSCODE_TEST_DIR, by default ~/.cache/memlsp/vscode-test.
#   3. The extension: npm ci in editors/vscode, tsc, then vsce package -> editors/vscode/dist/.
#
# MEMLSP_VSCODE_TEST_DIR moves the cache folder; MEMLSP_CHROMIUM names another Chromium binary
# (then the chromium package is not installed). tests/editors/test_vscode.py reads the same variables.
#
# Needs node >= 20 and npm. Root (or sudo-less apt) only for step 1 when a package is missing.
# ./setup.sh runs this too, so the README's test command finds the real editors.
set -euo pipefail

CODE_SERVER_VERSION=4.100.3     # = VS Code 1.100.3, the newest that runs on node 20
PLAYWRIGHT_VERSION=1.65.1
# @vscode/ripgrep (a code-server dependency) fetches this archive from GitHub at install time;
# we put Debian's rg in its download cache instead (the machine reaches only package registries).
RG_CACHE_NAME=vscode-ripgrep-cache-1.15.11
RG_ARCHIVE=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz

here="$(cd "$(dirname "$0")/.." && pwd)"                     # editors/vscode
test_dir="${MEMLSP_VSCODE_TEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/memlsp/vscode-test}"
started=$SECONDS
say() { echo "setup-test-env: $*"; }
mkdir -p "$test_dir"
# One run at a time (./setup.sh and .ci/run both call this): two would clash in apt and npm.
exec 9>"$test_dir/.lock"
flock 9

# -- 1. system packages --------------------------------------------------------------------
missing=()
[ -n "${MEMLSP_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v rg >/dev/null 2>&1 || missing+=(ripgrep)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
[ -e /usr/include/krb5.h ] || [ -e /usr/include/gssapi/gssapi.h ] || missing+=(libkrb5-dev)
command -v emacs >/dev/null 2>&1 || missing+=(emacs-nox)
# Eglot: Debian's package, unless this Emacs has it built in (29+).
compgen -G "/usr/share/emacs/site-lisp/elpa/eglot-*" >/dev/null \
  || emacs --batch -Q --eval "(require 'eglot)" >/dev/null 2>&1 || missing+=(elpa-eglot)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)  # the distribution's: >= 20 or not
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
fi
for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 || { say "$tool is missing (node >= 20 needed)" >&2; exit 1; }
done
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || { say "node >= 20 needed, found $(node --version)" >&2; exit 1; }

# -- 2. code-server and playwright-core ------------------------------------------------------
want="code-server@$CODE_SERVER_VERSION playwright-core@$PLAYWRIGHT_VERSION"
stamp="$test_dir/.installed"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$test_dir/node_modules/.bin/code-server" ]; then
  say "installing $want into $test_dir (a few minutes the first time)"
  tmp="${TMPDIR:-/tmp}"
  rg_cache="$tmp/$RG_CACHE_NAME"
  if [ ! -s "$rg_cache/$RG_ARCHIVE" ]; then
    mkdir -p "$rg_cache"
    staging="$(mktemp -d)"
    cp "$(command -v rg)" "$staging/rg"
    tar -czf "$rg_cache/$RG_ARCHIVE" -C "$staging" rg
    rm -rf "$staging"
  fi
  cat >"$test_dir/package.json" <<EOF
{
  "name": "memlsp-vscode-test-env",
  "private": true,
  "description": "code-server and playwright-core for memlsp's VS Code test (made by setup-test-env.sh)",
  "dependencies": {
    "code-server": "$CODE_SERVER_VERSION",
    "playwright-core": "$PLAYWRIGHT_VERSION"
  }
}
EOF
  # unsafe_perm: as root, npm would drop privileges for install scripts (and fail on the cache);
  # yes: node-pty's postinstall runs npx; nodedir: compile native modules against the installed
  # node headers instead of downloading them.
  (cd "$test_dir" && npm_config_unsafe_perm=true npm_config_yes=true npm_config_nodedir=/usr \
     npm install --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
else
  say "$want already in $test_dir"
fi

# -- 3. the extension ------------------------------------------------------------------------
cd "$here"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci in $here"
  npm ci --no-audit --no-fund --loglevel=error
fi
vsix=dist/memlsp.vsix
if [ -f "$vsix" ] && [ -z "$(find src images package.json package-lock.json tsconfig.json README.md \
      LICENSE .vscodeignore -newer "$vsix" -print -quit)" ]; then
  say "$vsix is up to date"
else
  # vsce lists every packaged file: keep that in a log, show its last line.
  npm run --silent package >"$test_dir/vsce.log" 2>&1 || { cat "$test_dir/vsce.log" >&2; exit 1; }
  tail -n 1 "$test_dir/vsce.log"
fi
say "ready in $((SECONDS - started)) s: $here/dist/memlsp.vsix"
