"""Reading a file that someone else may have planted: regular files only, bounded, never blocking.

A cloned repository decides what its paths are. Git stores symlinks, so ``.memlsp.yaml`` or a
``.gitignore`` can be a link to ``/dev/stdin`` (the LSP stream would be read as YAML), to
``/dev/zero`` (an endless read) or to a file outside the workspace; a FIFO would block the
``open`` itself. Every read of a workspace-named file goes through :func:`read_regular_file`:

- the path, links followed, must stay inside ``inside`` (when given);
- it is opened with ``O_NONBLOCK`` (a FIFO or device never blocks the open) and ``O_NOFOLLOW``
  on the resolved path (a link swapped in after the check is refused, not followed);
- the opened descriptor must be a regular file (``fstat``, so a swap between check and open
  cannot slip a FIFO or device through) and, on Linux, still inside ``inside``;
- no more than ``max_bytes`` are ever read.

A refusal is :class:`RefusedFile` (an ``OSError``, so existing ``except OSError`` callers stay
safe), whose message names the file and the reason. A missing file is ``FileNotFoundError``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Final, Literal

__all__ = ["RefusalKind", "RefusedFile", "open_regular_file", "read_regular_file"]

RefusalKind = Literal["outside", "not a regular file", "too large", "unresolvable"]

_OPEN_FLAGS: Final = (
    os.O_RDONLY
    | os.O_NONBLOCK
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
_PROC_FD: Final = Path("/proc/self/fd")


class RefusedFile(OSError):
    """A file that was not read, and why (``kind``); ``str()`` names the file."""

    def __init__(self, path: Path, kind: RefusalKind, detail: str) -> None:
        super().__init__(errno.EPERM, f"refused: {detail}", str(path))
        self.path = path
        self.kind: RefusalKind = kind

    def __str__(self) -> str:
        return f"{self.path}: {self.strerror}"


def _kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _resolved(path: Path, inside: Path | None) -> Path:
    """``path`` with every link followed; refused when that leaves ``inside``."""
    try:
        real = Path(os.path.realpath(path, strict=False))
        root = Path(os.path.realpath(inside, strict=False)) if inside is not None else None
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL in the name
        raise RefusedFile(path, "unresolvable", f"cannot be resolved ({exc})") from None
    if root is not None and not _within(real, root):
        raise RefusedFile(
            path, "outside", f"it leads to {real}, outside the workspace {root} (never read)"
        )
    return real


def open_regular_file(path: Path, *, inside: Path | None = None) -> tuple[int, os.stat_result]:
    """A read-only descriptor of ``path`` and its ``fstat``, checked as the module says.

    The caller closes the descriptor. Raises :class:`RefusedFile`, or ``FileNotFoundError``
    (and other ``OSError``) from the open itself.
    """
    real = _resolved(path, inside)
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link put in its place after we resolved it
            raise RefusedFile(path, "outside", "it became a symbolic link while opened") from None
        if exc.errno == errno.ENXIO:  # a Unix socket, or a FIFO's open on some systems
            raise RefusedFile(path, "not a regular file", "it is not a regular file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _kind_of(info.st_mode)
            raise RefusedFile(path, "not a regular file", f"it is {kind}, not a regular file")
        if inside is not None:
            _check_opened_within(fd, path, inside)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _check_opened_within(fd: int, path: Path, inside: Path) -> None:
    """Where the kernel says the descriptor is (Linux): a folder on the way may have been
    swapped for a link between resolving and opening."""
    try:
        opened = Path(os.readlink(_PROC_FD / str(fd)))
    except OSError:  # no /proc: the resolved path's check stands
        return
    root = Path(os.path.realpath(inside))
    if not _within(opened, root):
        raise RefusedFile(path, "outside", f"it was opened at {opened}, outside {root}")


def read_regular_file(path: Path, *, max_bytes: int, inside: Path | None = None) -> bytes:
    """The whole content of ``path``, at most ``max_bytes`` long, checked as the module says."""
    fd, info = open_regular_file(path, inside=inside)
    try:
        if info.st_size > max_bytes:
            raise _too_large(path, info.st_size, max_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:  # the file may grow after fstat: never read past the cap + 1
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(path, size, max_bytes)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(path: Path, size: int, max_bytes: int) -> RefusedFile:
    return RefusedFile(
        path, "too large", f"it is {size:,} bytes or more, over the {max_bytes:,}-byte limit"
    )
