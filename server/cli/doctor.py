"""`memlsp doctor`: check what the defaults need and say how to fix what is broken."""

from __future__ import annotations

import importlib.util
import platform
import shutil
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

from memlsp.config import Config, LoadedConfig, ModelSpec
from memlsp.models import ModelError
from memlsp.models.assembly import check_file, install_hint, target_path

OK, WARN, FAIL = "ok", "warn", "FAIL"
PACKAGES = (
    "pygls",
    "lsprotocol",
    "llama-cpp-python",
    "MemoryOS",
    "qdrant-client",
    "qdrant-edge-py",
    "tree-sitter",
    "pyyaml",
)


@dataclass(frozen=True)
class Check:
    name: str
    state: str  # OK, WARN or FAIL
    detail: str
    fix: str = ""


def run_checks(loaded: LoadedConfig, workspace: Path | None, load_models: bool) -> list[Check]:
    config = loaded.config
    checks = [*_environment(), *_config(loaded)]
    checks += list(_models(config, load_models))
    checks += list(_memory(config, workspace))
    checks += list(_tools(config))
    return checks


def _environment() -> Iterator[Check]:
    yield Check(
        "python",
        OK if sys.version_info >= (3, 11) else FAIL,
        f"{platform.python_version()} ({sys.executable})",
        "use Python 3.11 or 3.12",
    )
    for package in PACKAGES:
        try:
            yield Check(f"package {package}", OK, version(package))
        except PackageNotFoundError:
            yield Check(
                f"package {package}",
                FAIL,
                "not installed",
                "run ./setup.sh (or pip install -e . in the memlsp checkout)",
            )
    try:
        from memlsp.models.runtime import supports_gpu_offload

        gpu = supports_gpu_offload()
        yield Check(
            "llama.cpp build",
            OK,
            "GPU offload supported" if gpu else "CPU only (no GPU offload in this build)",
            ""
            if gpu
            else "for a GPU: CMAKE_ARGS=-DGGML_CUDA=on pip install "
            "--no-cache-dir --force-reinstall llama-cpp-python==0.3.36",
        )
    except Exception as exc:
        yield Check(
            "llama.cpp build",
            FAIL,
            f"cannot import llama_cpp: {exc}",
            "reinstall: pip install --force-reinstall llama-cpp-python==0.3.36",
        )


def _config(loaded: LoadedConfig) -> Iterator[Check]:
    yield Check("config files", OK, ", ".join(loaded.sources) or "built-in defaults only")
    for issue in loaded.issues:
        yield Check("config", WARN, str(issue), "edit the file named above")


def _needed_models(config: Config) -> set[str]:
    """The models the default features use: a broken one of these fails the doctor."""
    from memlsp.server.lsp.session import FIM_DEFAULT_CPU

    needed = {config.agents.quality.model, config.agents.refactor.model}
    generator = config.agents.generator.model
    needed.add(FIM_DEFAULT_CPU if generator == "auto" else generator)
    if config.memory.enabled:
        needed.add("minilm-l6-v2")
    return needed


def _models(config: Config, load: bool) -> Iterator[Check]:
    needed = _needed_models(config)
    for name, spec in config.models.items():
        severity = FAIL if name in needed else WARN
        yield _model_check(name, spec, severity, load)
    for name in sorted(needed - set(config.models)):
        yield Check(
            f"model {name}",
            FAIL,
            "used by a feature but not in the catalogue",
            "fix the model name in your config (see `memlsp models list`)",
        )


def _model_check(name: str, spec: ModelSpec, severity: str, load: bool) -> Check:
    label = f"model {name}"
    path = target_path(spec)
    if not path.is_file():
        installed = all(importlib.util.find_spec(m) is not None for m in spec.source.modules)
        if spec.source.kind != "path" and installed:
            return Check(
                label,
                WARN,
                f"not assembled yet ({path})",
                f"memlsp models install {name} (it is also done on first use)",
            )
        return Check(label, severity, f"missing: {path}", install_hint(spec))
    try:
        check_file(spec, path)
    except ModelError as exc:
        return Check(label, severity, str(exc), f"memlsp models install {name}")
    size = f"{path.stat().st_size / 2**20:,.0f} MB, n_ctx {spec.n_ctx}, {spec.role}"
    if not load:
        return Check(label, OK, f"{size} (not loaded: --no-load)")
    try:
        from memlsp.models.runtime import llama_cpp

        llama = llama_cpp().Llama(
            model_path=str(path), n_ctx=256, verbose=False, embedding=spec.role == "embed"
        )
        llama.close()
    except Exception as exc:
        return Check(
            label,
            severity,
            f"{path} does not load: {exc}",
            f"delete it and run `memlsp models install {name}`",
        )
    return Check(label, OK, f"{size}, loads")


def _memory(config: Config, workspace: Path | None) -> Iterator[Check]:
    memory = config.memory
    if not memory.enabled:
        yield Check("memory", OK, "disabled in config")
        return
    if memory.backend == "qdrant":
        url = memory.url or "(no url)"
        parts = urlsplit(url if "://" in url else f"http://{url}")
        try:
            with socket.create_connection(
                (parts.hostname or "localhost", parts.port or 6333), timeout=3
            ):
                yield Check("memory store", OK, f"Qdrant server {url} reachable")
        except OSError as exc:
            yield Check(
                "memory store",
                FAIL,
                f"Qdrant server {url} not reachable: {exc}",
                "start the server or fix memory.url in your config",
            )
        return
    if workspace is None:
        yield Check("memory store", OK, "embedded Qdrant Edge (no workspace given)")
        return
    from memlsp.memory.store import default_store_path

    path = default_store_path(workspace, memory)
    state = "exists" if path.exists() else "not built yet (built on first run)"
    yield Check("memory store", OK, f"embedded Qdrant Edge at {path}: {state}")


def _tools(config: Config) -> Iterator[Check]:
    tools = config.agents.tools
    if not tools.enabled:
        yield Check("tools", OK, "disabled in config")
        return
    for name, spec in tools.allowed.items():
        if not spec.enabled or not spec.argv:
            continue
        program = spec.argv[0]
        found = sys.executable if program == "python" else shutil.which(program)
        if found is None and spec.fallback_module:
            has_module = importlib.util.find_spec(spec.fallback_module) is not None
            found = f"python -m {spec.fallback_module}" if has_module else None
        yield Check(
            f"tool {name}",
            OK if found else WARN,
            found or f"{program} not found",
            "" if found else f"install {program} or disable agents.tools.allowed.{name}",
        )


def render(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.state:4}  {c.name:{width}}  {c.detail}")
        if c.fix and c.state != OK:
            lines.append(f"{'':4}  {'':{width}}  fix: {c.fix}")
    failed = sum(c.state == FAIL for c in checks)
    warned = sum(c.state == WARN for c in checks)
    lines.append(f"{failed} failed, {warned} warnings, {len(checks) - failed - warned} ok")
    return "\n".join(lines)
