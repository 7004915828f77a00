"""`memlsp demo [PATH]`: the main job end to end, through the real server and a real client.

It starts `memlsp serve` as a subprocess, speaks LSP to it over its pipes and shows each step
with its latency: initialize and indexing with progress, an inline completion, a completion that
needs a fact from another file, diagnostics on save, a resolved code action, and shutdown.
Without PATH it works on a copy of the bundled sample workspace, with a temporary memory store;
with PATH it works on that folder and writes nothing into it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import yaml

from memlsp.server.demo.client import DemoClient, server_argv
from memlsp.server.demo.scenario import Scenario, copy_sample, folder_scenario, sample_scenario
from memlsp.server.demo.steps import DemoRun, StepResult

SHUTDOWN_TIMEOUT_S = 30.0
EXIT_INTERRUPTED = 130
STEP_TITLES = {
    "initialize": "initialize",
    "index": "indexing the workspace",
    "inline": "inline completion",
    "memory_completion": "completion with a fact from another file (workspace memory)",
    "diagnostics": "diagnostics on save",
    "code_action": "code actions, one resolved",
    "shutdown": "shutdown and exit",
}
HEADERS = {
    "initialize": "[1/6] initialize, then indexing with $/progress",
    "inline": "[2/6] inline completion (textDocument/inlineCompletion)",
    "memory_completion": "[3/6] a completion that needs a fact from another file",
    "diagnostics": "[4/6] diagnostics on save (linters + the model's review)",
    "code_action": "[5/6] code actions; one resolved (codeAction/resolve)",
}


def run(args: argparse.Namespace) -> int:
    """The `demo` subcommand: 0 when every step worked, 1 when one failed, 2 for a bad PATH."""
    if args.path is not None:
        root = Path(args.path).expanduser().resolve()
        if not root.is_dir():
            sys.stderr.write(f"memlsp demo: {args.path}: no such folder\n")
            return 2
    out: TextIO = sys.stderr if args.json else sys.stdout  # --json: stdout carries only JSON
    logging.getLogger("pygls").setLevel(logging.WARNING)  # its INFO lines would drown the demo

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    with tempfile.TemporaryDirectory(prefix="memlsp-demo-") as scratch_dir:
        scratch = Path(scratch_dir)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "GGML_NO_BACKTRACE": "1"}
        if args.path is None:
            root = copy_sample(scratch / "sample")
            scenario = sample_scenario(root)
            store = scratch / "store"
            env["XDG_CONFIG_HOME"] = str(_config_with_store(scratch / "config", store))
            say(f"memlsp demo: a copy of the sample workspace in {root}")
            say(f"  (your config applies; the memory store is temporary: {store})")
        else:
            scenario = folder_scenario(root)
            say(f"memlsp demo: {root} (nothing is written there; edits stay unsaved)")
        summary: dict[str, Any] = {"workspace": str(root), "sample": args.path is None}
        try:
            code = asyncio.run(_demo(scenario, env, say, summary))
        except KeyboardInterrupt:
            say("\ninterrupted: the server was stopped")
            summary["interrupted"] = True
            code = EXIT_INTERRUPTED
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    return code


def _config_with_store(config_home: Path, store: Path) -> Path:
    """A config home holding the user's own config file with only the memory store replaced
    (so the sample's index never lands in, or mixes with, the user's cache)."""
    from memlsp.config.loader import user_config_path

    user: dict[str, Any] = {}
    try:
        loaded = yaml.safe_load(user_config_path().read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            user = loaded
    except (OSError, yaml.YAMLError):
        pass  # no file, or one the server would report anyway: the defaults apply
    memory = user.get("memory")
    user["memory"] = {**(memory if isinstance(memory, dict) else {}), "backend": "edge"}
    user["memory"]["path"] = str(store)
    target = config_home / "memlsp" / "config.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(user), encoding="utf-8")
    return config_home


class _Interrupt:
    """Ctrl-C during the demo. asyncio turns it into a cancellation of the demo's task, but on
    Python 3.11 ``asyncio.wait_for`` drops a cancellation that arrives as the future it waits
    for completes (the demo waits on the server's pushes in short slices), and the demo then
    ran to its end; so the request is kept, the task cancelled again until it stops, and it is
    checked between steps."""

    RETRY_S = 0.5

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.requested = False
        self._task = task
        self._active = True

    def install(self) -> None:
        # Where a loop cannot take signal handlers (Windows, not the main thread): asyncio's own.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)

    def _on_sigint(self) -> None:
        self.requested = True
        self._cancel()

    def _cancel(self) -> None:
        if self._active and self._task is not None and not self._task.done():
            self._task.cancel()
            asyncio.get_running_loop().call_later(self.RETRY_S, self._cancel)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def stop(self) -> None:
        """Cleanup has begun: no more cancellations."""
        self._active = False


async def _demo(
    scenario: Scenario, env: dict[str, str], say: Callable[[str], None], summary: dict[str, Any]
) -> int:
    client = DemoClient()
    steps: list[StepResult] = []
    summary["steps"] = steps_json = []
    interrupt = _Interrupt(asyncio.current_task())
    interrupt.install()
    try:
        pid = await client.start_server(server_argv(), env)
        summary["server_pid"] = pid
        say(f"server: memlsp serve (pid {pid}), LSP over its stdin/stdout\n")
        demo = DemoRun(client, scenario, say)
        plan: list[tuple[str, Callable[[], Any]]] = [
            ("initialize", demo.initialize),
            ("index", demo.index),
            ("inline", demo.inline),
            ("memory_completion", demo.cross_file),
            ("diagnostics", demo.diagnostics),
            ("code_action", demo.code_actions),
        ]
        for name, action in plan:
            if name in HEADERS:
                say(HEADERS[name])
            result = await _guarded(action, name, say)
            interrupt.check()
            steps.append(result)
            steps_json.append(_step_json(result))
            if name == "initialize" and not result.ok:
                break
            if name != "initialize":
                say("")
        models = await _models(demo)
        summary["models"] = models
        say("[6/6] shutdown and exit")
        steps.append(await _shutdown(client, say))
        steps_json.append(_step_json(steps[-1]))
    except asyncio.CancelledError:
        if interrupt.requested:  # our handler replaced asyncio's, which would say this
            raise KeyboardInterrupt from None
        raise
    finally:
        interrupt.stop()
        await client.close()
    interrupt.check()  # Ctrl-C during the cleanup, which is not cancelled
    _print_table(steps, say, summary.get("models", {}))
    failed = [s.name for s in steps if s.ok is False]
    summary["ok"] = not failed
    if failed:
        say(f"failed steps: {', '.join(failed)}; the server's last log lines:")
        for line in client.stderr_tail:
            say(f"  {line}")
    return 1 if failed else 0


async def _guarded(action: Callable[[], Any], name: str, say: Callable[[str], None]) -> StepResult:
    """A step that raises (a timeout, the server gone) fails alone; the demo goes on."""
    started = time.perf_counter()
    try:
        result: StepResult = await action()
        return result
    except (TimeoutError, RuntimeError, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        say(f"  failed: {reason}")
        return StepResult(name, False, time.perf_counter() - started, {"error": reason})


async def _models(demo: DemoRun) -> dict[str, Any]:
    try:
        status = await demo.status()
    except (TimeoutError, RuntimeError):
        return {}
    generator = status.get("generator") or {}
    pool = status.get("pool") or {}
    loaded = [m.get("name") for m in pool.get("models") or [] if m.get("loaded")]
    return {"fim": generator.get("model"), "pool": loaded}


async def _shutdown(client: DemoClient, say: Callable[[str], None]) -> StepResult:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(client.shutdown_async(None), SHUTDOWN_TIMEOUT_S)
        client.exit(None)
    except (TimeoutError, RuntimeError) as exc:
        say(f"  shutdown failed: {exc or type(exc).__name__}")
        return StepResult("shutdown", False, time.perf_counter() - started)
    code = await client.wait_exit(SHUTDOWN_TIMEOUT_S)
    seconds = time.perf_counter() - started
    say(f"  server exited with code {code} {seconds * 1000:.0f} ms after shutdown")
    return StepResult("shutdown", code == 0, seconds, {"exit_code": code})


def _step_json(step: StepResult) -> dict[str, Any]:
    return {"name": step.name, "ok": step.ok, "seconds": round(step.seconds, 3), **step.detail}


def _print_table(
    steps: list[StepResult], say: Callable[[str], None], models: dict[str, Any]
) -> None:
    say("\nsummary" + (f" (FIM model {models['fim']})" if models.get("fim") else ""))
    width = max(len(STEP_TITLES[s.name]) for s in steps) if steps else 10
    for step in steps:
        state = {True: "ok", False: "FAILED", None: "skipped"}[step.ok]
        took = f"{step.seconds * 1000:8.0f} ms" if step.ok is not None else " " * 11
        say(f"  {STEP_TITLES[step.name]:<{width}}  {took}  {state}")
