"""The tool executor agent: runs allow-listed linters on a saved file and parses their findings.

No model involved. The workspace is untrusted (a cloned repository), so a run is fenced in:

* only tools from the user's allow-list (``agents.tools.allowed``; the loader keeps workspace
  config and editor options out of it), never through a shell;
* only regular files inside the workspace root after resolving symlinks, and only names free
  of shell metacharacters, control characters and a leading ``-`` (no shell is involved, but a
  name that would mean something to one is refused anyway: defense in depth);
* a minimal environment (no secrets from ours), stdin closed, cwd the workspace root, Python
  told not to import from the cwd (``PYTHONSAFEPATH``: ``python -m py_compile`` would otherwise
  import a ``py_compile.py`` that the repository ships) and to keep bytecode out of the
  workspace;
* a timeout that kills the whole process group, and a cap on the output read.

``run`` and ``run_all`` block; callers run them on worker threads.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from memlsp.agents.review.tool_parsers import Finding, ToolOutput, parse_output
from memlsp.config.schema import ToolsConfig, ToolSpec

__all__ = [
    "ToolExecutor",
    "ToolRefused",
    "ToolResult",
    "ToolStatus",
    "check_file",
    "minimal_env",
]

logger = logging.getLogger(__name__)

# ok: ran to the end (or was stopped at the output cap; see ``truncated``).
ToolStatus = Literal["ok", "refused", "skipped", "missing", "timed_out", "error"]


@dataclass(frozen=True)
class ToolResult:
    tool: str
    file: Path  # as the caller gave it
    status: ToolStatus
    message: str = ""  # why the status is not "ok"
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()  # parser remarks, truncation
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    truncated: bool = False
    duration_s: float = 0.0


class ToolRefused(Exception):
    """A request we will not run; the message says why."""


# -- what may be run on --------------------------------------------------------------------

# Shell (POSIX and cmd.exe) metacharacters. Space is allowed: harmless without a shell, and common.
_META = frozenset(";&|$`<>*?![]{}()'\"\\~^%")
# Control characters, invisible formatting (bidi overrides) and line/paragraph separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})


def check_file(root: Path, file: Path) -> Path:
    """The file's resolved path, or :class:`ToolRefused`. ``root`` must be resolved already; a
    relative ``file`` is relative to it."""
    given = file if file.is_absolute() else root / file
    _check_name(given.name)
    try:
        resolved = given.resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops raise RuntimeError before 3.13
        raise ToolRefused(f"{given} cannot be resolved: {exc}") from exc
    if not resolved.is_relative_to(root):
        raise ToolRefused(f"{given} resolves to {resolved}, outside the workspace root {root}")
    for part in resolved.relative_to(root).parts:
        _check_name(part)
    if not resolved.is_file():  # a folder would lint the whole tree; a FIFO would hang
        raise ToolRefused(f"{given} is not a regular file")
    return resolved


def _check_name(name: str) -> None:
    if name.startswith("-"):
        raise ToolRefused(f"file name {name!r} starts with '-' (it could pass for an option)")
    for char in name:
        if char in _META:
            raise ToolRefused(f"file name {name!r} contains the shell metacharacter {char!r}")
        if unicodedata.category(char) in _BAD_CATEGORIES:
            raise ToolRefused(f"file name {name!r} contains the control character {char!r}")


# -- how it runs ----------------------------------------------------------------------------

# Passed through from our environment: where tools find themselves, their user config and temp
# space. Windows needs its system variables to start processes at all.
_PASSED_ENV = (
    "HOME",
    "TMPDIR",
    "TEMP",
    "TMP",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "SYSTEMROOT",
    "SYSTEMDRIVE",
    "WINDIR",
    "PATHEXT",
    "USERPROFILE",
    "APPDATA",
    "LOCALAPPDATA",
)


def minimal_env(pycache_prefix: str, source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment tools get: a few essentials from ``source`` (default ``os.environ``)
    and fixed settings; nothing else, so tokens and keys in ours never reach a tool."""
    source = os.environ if source is None else source
    env = {name: source[name] for name in _PASSED_ENV if name in source}
    env["PATH"] = os.pathsep.join(_search_path(source))
    env.update(
        LANG="C.UTF-8",
        PYTHONUTF8="1",
        PYTHONSAFEPATH="1",  # no sys.path entry for the cwd (the workspace) or script folder
        PYTHONPYCACHEPREFIX=pycache_prefix,  # py_compile writes its .pyc here, not __pycache__
        NO_COLOR="1",
    )
    return env


def _search_path(source: Mapping[str, str]) -> list[str]:
    # Relative entries (and empty ones, which mean ".") would find commands in the workspace.
    entries = source.get("PATH", os.defpath).split(os.pathsep)
    return [entry for entry in entries if entry and os.path.isabs(entry)]


def _which(name: str, path: list[str]) -> str | None:
    """``name`` on ``path``. Not shutil.which: on Windows that looks in the cwd first."""
    suffixes = [""]
    if sys.platform == "win32":
        suffixes += os.environ.get("PATHEXT", ".COM;.EXE;.BAT;.CMD").lower().split(";")
    for folder in path:
        for suffix in suffixes:
            candidate = os.path.join(folder, name + suffix)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


_PLACEHOLDER = re.compile(r"\{(file|root)\}")


def _expand(argv: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    # One pass, so a value that itself contains "{root}" is not expanded again (nor is
    # str.format's attribute syntax available to a config file).
    return [_PLACEHOLDER.sub(lambda m: values[m[1]], arg) for arg in argv]


# Pipes are read in chunks of this size, up to the tool's max_output_kb in all.
_CHUNK = 64 * 1024
# After a kill, how long to wait for the pipes to close and the process to be reaped.
_REAP_S = 5.0


class _Capture:
    """Reads stdout and stderr on two threads into one byte budget shared by both."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.truncated = False
        self.done = threading.Event()  # both pipes at EOF, or the budget spent
        self._used = 0
        self._open = 2
        self._lock = threading.Lock()

    def start(self, proc: subprocess.Popen[bytes]) -> list[threading.Thread]:
        assert proc.stdout is not None and proc.stderr is not None
        threads = [
            threading.Thread(target=self._pump, args=(pipe, sink), daemon=True)
            for pipe, sink in ((proc.stdout, self.stdout), (proc.stderr, self.stderr))
        ]
        for thread in threads:
            thread.start()
        return threads

    def _pump(self, pipe: IO[bytes], sink: bytearray) -> None:
        try:
            while chunk := pipe.read(_CHUNK):
                with self._lock:
                    room = self.limit - self._used
                    sink += chunk[:room]
                    self._used += min(room, len(chunk))
                    if len(chunk) > room:
                        self.truncated = True  # stop reading; the caller stops the tool
                        return
        except (OSError, ValueError):
            pass
        finally:
            pipe.close()
            with self._lock:
                self._open -= 1
                if self._open == 0 or self.truncated:
                    self.done.set()


def _popen_options() -> dict[str, Any]:
    # Its own process group / session, so a timeout can kill what the tool started too.
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill the tool and its process group. Only called before the process has been reaped, so
    its pid (the group id) cannot have been reused."""
    if sys.platform == "win32":
        proc.kill()
        return
    with contextlib.suppress(ProcessLookupError):  # the whole group already exited
        os.killpg(proc.pid, signal.SIGKILL)


# -- the executor ---------------------------------------------------------------------------


class ToolExecutor:
    """Runs the allow-listed ``tools`` on files inside ``root``. Thread-safe."""

    def __init__(self, tools: Mapping[str, ToolSpec], root: Path) -> None:
        self._root = Path(root).resolve()
        if not self._root.is_dir():
            raise ValueError(f"workspace root {root} is not a folder")
        self._tools = dict(tools)
        self._pycache = tempfile.TemporaryDirectory(prefix="memlsp-pycache-")
        self._env = minimal_env(self._pycache.name)
        self._path = self._env["PATH"].split(os.pathsep)
        self._missing_logged: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_config(cls, config: ToolsConfig, root: Path) -> ToolExecutor:
        return cls(config.allowed if config.enabled else {}, root)

    @property
    def root(self) -> Path:
        return self._root

    def tools_for(self, language_id: str) -> list[str]:
        """The enabled tools that apply to ``language_id``, in config order."""
        return [
            name
            for name, spec in self._tools.items()
            if spec.enabled and (not spec.languages or language_id in spec.languages)
        ]

    def run_all(self, file: Path, language_id: str) -> list[ToolResult]:
        """Every enabled tool for the language, one after the other."""
        return [self.run(name, file, language_id) for name in self.tools_for(language_id)]

    def run(self, tool_name: str, file: Path, language_id: str) -> ToolResult:
        """Run one tool on ``file``; never raises for a refused, missing or failing tool."""
        file = Path(file)
        spec = self._tools.get(tool_name)
        if spec is None:
            allowed = ", ".join(self._tools) or "none"
            message = f"tool {tool_name!r} is not allow-listed (allowed: {allowed})"
            return ToolResult(tool_name, file, "refused", message)
        if self._closed:
            return ToolResult(tool_name, file, "error", "the tool executor is closed")
        if not spec.enabled:
            return ToolResult(tool_name, file, "skipped", f"tool {tool_name!r} is disabled")
        if spec.languages and language_id not in spec.languages:
            message = f"tool {tool_name!r} does not apply to {language_id!r} files"
            return ToolResult(tool_name, file, "skipped", message)
        try:
            resolved = check_file(self._root, file)
        except ToolRefused as exc:
            return ToolResult(tool_name, file, "refused", str(exc))
        if not spec.argv:
            return ToolResult(tool_name, file, "error", f"tool {tool_name!r} has an empty argv")
        argv = self._command(tool_name, spec, resolved)
        if argv is None:
            return ToolResult(tool_name, file, "missing", f"{spec.argv[0]} is not installed")
        return self._execute(tool_name, spec, argv, file, resolved)

    def close(self) -> None:
        """Remove the bytecode folder; later runs answer with an error."""
        self._closed = True
        self._pycache.cleanup()

    def __enter__(self) -> ToolExecutor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals

    def _command(self, tool_name: str, spec: ToolSpec, file: Path) -> list[str] | None:
        """The argv to execute, with argv[0] made absolute; None (logged once) if missing."""
        argv = _expand(spec.argv, {"file": str(file), "root": str(self._root)})
        head = argv[0]
        if head == "python":
            return [sys.executable, *argv[1:]]
        if os.sep in head or (os.altsep and os.altsep in head):
            path = Path(head) if os.path.isabs(head) else self._root / head
            found = str(path) if path.is_file() and os.access(path, os.X_OK) else None
        else:
            found = _which(head, self._path)
        if found is not None:
            return [found, *argv[1:]]
        if spec.fallback_module and _has_module(spec.fallback_module):
            return [sys.executable, "-m", spec.fallback_module, *argv[1:]]
        self._log_missing(tool_name, f"{head} is not on PATH")
        return None

    def _log_missing(self, tool_name: str, why: str) -> None:
        # Once per tool per executor (one per session): it would repeat on every save.
        with self._lock:
            if tool_name in self._missing_logged:
                return
            self._missing_logged.add(tool_name)
        logger.warning("tool %s skipped: %s", tool_name, why)

    def _execute(
        self, tool_name: str, spec: ToolSpec, argv: list[str], file: Path, resolved: Path
    ) -> ToolResult:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                shell=False,
                cwd=self._root,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,  # raw pipes: read() returns what is there, not a full chunk
                close_fds=True,
                **_popen_options(),
            )
        except FileNotFoundError:  # removed between the lookup and the start
            self._log_missing(tool_name, f"{argv[0]} not found")
            return ToolResult(tool_name, file, "missing", f"{argv[0]} is not installed")
        except OSError as exc:
            return ToolResult(tool_name, file, "error", f"cannot start {argv[0]}: {exc}")

        capture = _Capture(spec.max_output_kb * 1024)
        threads = capture.start(proc)
        deadline = started + spec.timeout_s
        timed_out = not capture.done.wait(spec.timeout_s)
        if not timed_out and not capture.truncated:
            try:  # the pipes closed; the tool is normally exiting
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out or capture.truncated:
            _kill(proc)
        reap_deadline = time.monotonic() + _REAP_S
        for thread in threads:
            thread.join(max(0.0, reap_deadline - time.monotonic()))
        try:
            exit_code: int | None = proc.wait(max(0.0, reap_deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # unkillable (Windows grandchildren): leave it
            exit_code = None
        duration = time.monotonic() - started

        stdout = capture.stdout.decode("utf-8", errors="replace")
        stderr = capture.stderr.decode("utf-8", errors="replace")
        common: dict[str, Any] = {
            "exit_code": exit_code,
            "stdout": stdout,
            "stderr": stderr,
            "truncated": capture.truncated,
            "duration_s": duration,
        }
        if timed_out:
            logger.warning("tool %s timed out after %gs on %s", tool_name, spec.timeout_s, file)
            message = f"timed out after {spec.timeout_s:g} s (killed)"
            return ToolResult(tool_name, file, "timed_out", message, **common)
        output = ToolOutput(tool_name, stdout, stderr, exit_code, resolved, self._root)
        parsed = parse_output(spec.parser, output)
        notes = parsed.notes
        if capture.truncated:
            cap = f"output over {spec.max_output_kb} KB: truncated, and the tool was stopped"
            notes = (cap, *notes)
        return ToolResult(tool_name, file, "ok", "", parsed.findings, notes, **common)
