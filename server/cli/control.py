"""A small local control socket per server process, for `memlsp status`.

Each running server listens on a Unix socket (mode 0600) named after its pid in a private runtime
folder; `memlsp status` asks every live one for its stats. Local only, one JSON line per request,
bounded sizes; a stale socket left by a killed server is removed by whoever finds it dead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memlsp.config.paths import cache_root, private_folder

log = logging.getLogger(__name__)

MAX_REQUEST = 4096
MAX_RESPONSE = 4 << 20


def runtime_dir() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR")
    return private_folder(Path(base) / "memlsp" if base else cache_root() / "run")


class ControlServer:
    def __init__(self, status: Callable[[], dict[str, Any]], folder: Path | None = None) -> None:
        self._status = status
        self.path = (folder or runtime_dir()) / f"{os.getpid()}.sock"
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # created 0600: other users must not read our status
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        sock.listen(4)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="memlsp-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2)
                try:
                    request = json.loads(_read_line(conn, MAX_REQUEST) or b"{}")
                    reply = self._answer(request)
                except Exception as exc:  # a bad client gets an error, the server goes on
                    reply = {"error": str(exc)}
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps(reply, default=str).encode() + b"\n")

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        if request.get("op") == "status":
            return {"pid": os.getpid(), "status": self._status()}
        return {"error": f"unknown op {request.get('op')!r}; known: status"}

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self.path.unlink(missing_ok=True)


def _read_line(conn: socket.socket, limit: int) -> bytes:
    data = b""
    while b"\n" not in data and len(data) < limit:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def query_all(folder: Path | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Status of every live server on this machine for this user; removes stale sockets."""
    replies = []
    for path in sorted((folder or runtime_dir()).glob("*.sock")):
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(timeout)
                conn.connect(str(path))
                conn.sendall(b'{"op": "status"}\n')
                replies.append(json.loads(_read_line(conn, MAX_RESPONSE)))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)  # its server died without cleaning up
        except (OSError, ValueError) as exc:
            replies.append({"socket": str(path), "error": str(exc)})
    return replies
