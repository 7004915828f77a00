"""Where memlsp keeps its files: XDG base directories, overridable by environment."""

from __future__ import annotations

import os
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
