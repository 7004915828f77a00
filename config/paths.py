"""Where memlsp keeps its files: XDG base directories, overridable by environment."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def cache_root() -> Path:
    """`$MEMLSP_CACHE_DIR`, else `$XDG_CACHE_HOME/memlsp`, else `~/.cache/memlsp`."""
    explicit = os.environ.get("MEMLSP_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "memlsp"


def model_cache_dir() -> Path:
    """Assembled GGUF files live here (one copy per machine, shared by every session)."""
    return cache_root() / "models"


# memlsp's files hold the user's code (store payloads, logs): its owner's alone, whatever the
# umask. `memlsp` sets this umask at start (Qdrant Edge's own files honour it too).
PRIVATE_UMASK = 0o077
_OTHERS = 0o077


def use_private_umask() -> None:
    """Files and folders this process creates from now on are 0600 and 0700."""
    os.umask(PRIVATE_UMASK)


def private_folder(path: Path) -> Path:
    """`path`, created 0700 if missing; an existing one is tightened (its content is not)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    make_private(path, recursive=False)
    return path


def make_private(path: Path, *, recursive: bool = True) -> int:
    """Take group and other permissions off `path` (and, recursively, what it holds); the
    number of entries changed. Links are not followed and only entries this user owns are
    changed, so a link planted in the folder cannot turn this onto someone else's files."""
    changed = _tighten(path)
    if recursive and path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path, followlinks=False):
            for name in (*dirs, *files):
                changed += _tighten(Path(folder, name))
    return changed


def _tighten(path: Path) -> int:
    try:
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or not info.st_mode & _OTHERS:
            return 0
        # A link swapped in after the lstat would pass this on to its target: at worst a file of
        # this same user loses group and other access, nothing more.
        os.chmod(path, stat.S_IMODE(info.st_mode) & ~_OTHERS)
    except OSError:  # gone meanwhile, or not ours to change
        return 0
    return 1
