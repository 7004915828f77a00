"""A simulated editing session replayed through the real server over stdio (issue #10 soak).

Used by ``tests/benchmarks/bench_soak.py`` (prints the JSON) and ``tests/stress/test_soak.py``
(a short
run with assertions). Self-contained on purpose: the benchmark loads this file by path, so it
cannot import the other test helpers.

What one "editor" does here, as VS Code or Neovim would:
- types realistic Python at 10-15 characters/s, appending to the file it has open, with short
  pauses at line ends and longer ones between functions;
- after each keystroke waits a short debounce, then asks for an inline completion; a key that
  arrives while the previous request is unanswered sends ``$/cancelRequest`` for it first;
- writes the file and sends ``didSave`` every ``save_every_s`` (the quality review runs);
- saves after each function it types, pauses a few seconds, and switches to another file;
- now and then changes a file it does not have open, on disk, and reports it with
  ``workspace/didChangeWatchedFiles``.

Measured: inline latency (answered, not cancelled) per window, counts, and the RSS of each server
process with its children, sampled every few seconds. Then a second server process is started on
the same folder (the memory coordinator makes it a client of the first one's store) and both
editors type at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from lsp_helpers import plain
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException
from pytest_lsp import LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES, register_lsp_features

from memlsp.config.schema import GeneratorConfig

SERVER = [sys.executable, "-m", "memlsp.server.cli", "serve"]
REQUEST_CANCELLED = -32800
CONTENT_MODIFIED = -32801  # the server dropped a request overtaken by an edit: also a cancellation
RPC_TIMEOUT_S = 120.0
# Generous: on a loaded 2-core machine a cold model's first answer has taken ~55 s; "answered"
# is the question here, not how fast.
MEMORY_READY_S = 240.0
MB = 1024 * 1024
# Saved KV states of recently left files (agents.generator.kv_state_mb's default): held
# outside the pool's budget, so the RSS bound counts them.
KV_STATES_MB = GeneratorConfig().kv_state_mb

# The workspace the session starts from: a small billing package.
WORKSPACE = {
    "billing/__init__.py": '"""Billing: invoices, customers and reports."""\n',
    "billing/models.py": textwrap.dedent(
        '''\
        """Billing records."""
        from __future__ import annotations

        from dataclasses import dataclass, field
        from datetime import date


        @dataclass
        class Customer:
            """Someone we send invoices to."""

            customer_id: str
            email: str
            country: str = "DE"


        @dataclass
        class Invoice:
            """An invoice sent to a customer."""

            invoice_number: str
            customer: Customer
            issued_on: date
            amount_due_cents: int
            paid_cents: int = 0
            tags: list[str] = field(default_factory=list)

            @property
            def is_paid(self) -> bool:
                return self.paid_cents >= self.amount_due_cents
        '''
    ),
    "billing/tax.py": textwrap.dedent(
        '''\
        """VAT rates and rounding."""
        from __future__ import annotations

        VAT_RATES = {"DE": 0.19, "FR": 0.20, "NL": 0.21, "AT": 0.20}


        def vat_rate(country: str) -> float:
            """The VAT rate of a country; 0 outside the table."""
            return VAT_RATES.get(country, 0.0)


        def round_cents(value: float) -> int:
            """Commercial rounding to whole cents."""
            return int(value + 0.5)
        '''
    ),
    "billing/report.py": textwrap.dedent(
        '''\
        """Reports over invoices."""
        from __future__ import annotations

        from collections import defaultdict

        from memlsp. import Invoice
        from memlsp. import round_cents, vat_rate
        '''
    ),
    "billing/storage.py": textwrap.dedent(
        '''\
        """Invoices on disk as JSON lines."""
        from __future__ import annotations

        import json
        from pathlib import Path
        '''
    ),
    "README.md": "# billing\n\nInvoices, customers, VAT and reports.\n",
}

# What the user types, one function at a time; {n} keeps repeated functions distinct so the
# completion cache does not answer everything after the first round.
SNIPPETS: dict[str, list[str]] = {
    "billing/report.py": [
        '''
def overdue_{n}(invoices: list[Invoice], today) -> list[Invoice]:
    """Invoices issued more than 30 days ago and still unpaid."""
    result = []
    for invoice in invoices:
        age = (today - invoice.issued_on).days
        if age > 30 and not invoice.is_paid:
            result.append(invoice)
    return result
''',
        '''
def totals_by_country_{n}(invoices: list[Invoice]) -> dict[str, int]:
    """Gross amount due per customer country, in cents."""
    totals: dict[str, int] = defaultdict(int)
    for invoice in invoices:
        rate = vat_rate(invoice.customer.country)
        totals[invoice.customer.country] += round_cents(invoice.amount_due_cents * (1 + rate))
    return dict(totals)
''',
    ],
    "billing/storage.py": [
        '''
def save_invoices_{n}(path: Path, invoices: list[dict]) -> None:
    """Write one JSON object per line."""
    with path.open("w", encoding="utf-8") as fh:
        for invoice in invoices:
            fh.write(json.dumps(invoice, sort_keys=True) + "\\n")
''',
        '''
def load_invoices_{n}(path: Path) -> list[dict]:
    """Read the invoices back; blank lines are skipped."""
    invoices = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                invoices.append(json.loads(line))
    return invoices
''',
    ],
    "billing/tax.py": [
        '''
def net_from_gross_{n}(gross_cents: int, country: str) -> int:
    """The net amount in a gross one."""
    rate = vat_rate(country)
    return round_cents(gross_cents / (1 + rate))
''',
        '''
def vat_amount_{n}(net_cents: int, country: str) -> int:
    """The VAT on a net amount, rounded to cents."""
    if net_cents < 0:
        raise ValueError("a net amount is never negative")
    return round_cents(net_cents * vat_rate(country))
''',
    ],
    "billing/models.py": [
        '''

def open_balance_{n}(invoices: list[Invoice]) -> int:
    """What customers still owe, in cents."""
    return sum(i.amount_due_cents - i.paid_cents for i in invoices if not i.is_paid)
''',
    ],
}


@dataclass
class Request:
    client: str
    sent: float
    future: asyncio.Future[Any]
    msg_id: str
    cancel_sent: bool = False


@dataclass
class EditorStats:
    """What one editor (one client, one server process) saw."""

    name: str
    keystrokes: int = 0
    requests: int = 0
    cancel_sent: int = 0
    answered: int = 0
    answered_cancelled: int = 0  # an error reply for a cancelled request
    answered_after_cancel: int = 0  # a result came back although we had cancelled
    non_empty: int = 0
    unanswered: int = 0
    other_errors: list[str] = field(default_factory=list)
    saves: int = 0
    file_switches: int = 0
    external_changes: int = 0
    diagnostics_published: int = 0
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (sent at, seconds)
    sent_at: list[float] = field(default_factory=list)
    pending: list[Request] = field(default_factory=list)


@dataclass
class Settings:
    duration_s: float = 1800.0
    window_s: float = 300.0
    pair_duration_s: float = 120.0
    model: str = "qwen2.5-coder-0.5b"
    quality_model: str = ""  # empty: the configured default
    save_every_s: float = 30.0
    external_every_s: float = 45.0
    rss_every_s: float = 5.0
    debounce_s: float = 0.05
    drain_timeout_s: float = 300.0  # after typing stops, for the last requests to be answered
    min_cps: float = 10.0
    max_cps: float = 15.0
    seed: int = 0
    server_log: str = ""  # non-empty: every server logs at debug level to this file


class Editor:
    """One LSP client driving one real server process."""

    def __init__(self, name: str, root: Path, settings: Settings) -> None:
        self.name = name
        self.root = root
        self.settings = settings
        self.stats = EditorStats(name)
        self.client = LanguageClient()

        # pygls passes the client first to handlers whose first parameter is named ``ls``.
        def on_diagnostics(ls: LanguageClient, params: lsp.PublishDiagnosticsParams) -> None:
            self.stats.diagnostics_published += 1
            ls.diagnostics[params.uri] = params.diagnostics

        def on_register(ls: LanguageClient, params: lsp.RegistrationParams) -> None:
            return None  # an editor that watches files as asked

        register_lsp_features(
            self.client,
            {
                **DEFAULT_CLIENT_FEATURES,
                lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: on_diagnostics,
                lsp.CLIENT_REGISTER_CAPABILITY: on_register,
            },
        )
        self.texts: dict[str, str] = {}
        self.versions: dict[str, int] = {}
        self.rng = random.Random(f"{settings.seed}-{name}")

    @property
    def pid(self) -> int:
        server = self.client._server
        assert server is not None
        return int(server.pid)

    def alive(self) -> bool:
        server = self.client._server
        return server is not None and server.returncode is None

    async def start(self, config_home: Path, **init_options: Any) -> None:
        env = {**os.environ, "XDG_CONFIG_HOME": str(config_home), "PYTHONUNBUFFERED": "1"}
        await self.client.start_io(SERVER[0], *SERVER[1:], env=env)
        caps = lsp.ClientCapabilities(
            text_document=lsp.TextDocumentClientCapabilities(
                inline_completion=lsp.InlineCompletionClientCapabilities(),
                synchronization=lsp.TextDocumentSyncClientCapabilities(did_save=True),
                publish_diagnostics=lsp.PublishDiagnosticsClientCapabilities(),
            ),
            workspace=lsp.WorkspaceClientCapabilities(
                did_change_watched_files=lsp.DidChangeWatchedFilesClientCapabilities(
                    dynamic_registration=True
                ),
                workspace_folders=True,
            ),
            window=lsp.WindowClientCapabilities(work_done_progress=True),
        )
        await asyncio.wait_for(
            self.client.initialize_session(
                lsp.InitializeParams(
                    capabilities=caps,
                    root_uri=self.root.as_uri(),
                    workspace_folders=[lsp.WorkspaceFolder(uri=self.root.as_uri(), name="ws")],
                    initialization_options=init_options or None,
                )
            ),
            RPC_TIMEOUT_S,
        )

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.shutdown_session(), 60)

    async def status(self) -> dict[str, Any]:
        reply = await asyncio.wait_for(
            self.client.protocol.send_request_async("memlsp/status", {}), RPC_TIMEOUT_S
        )
        return plain(reply)  # type: ignore[no-any-return]

    # -- documents --------------------------------------------------------------------------

    def open(self, rel: str) -> str:
        path = self.root / rel
        uri = path.as_uri()
        if uri not in self.texts:
            self.texts[uri] = path.read_text(encoding="utf-8")
            self.versions[uri] = 1
            self.client.text_document_did_open(
                lsp.DidOpenTextDocumentParams(
                    text_document=lsp.TextDocumentItem(
                        uri=uri, language_id="python", version=1, text=self.texts[uri]
                    )
                )
            )
        return uri

    def _end(self, uri: str) -> lsp.Position:
        text = self.texts[uri]
        last = text[text.rfind("\n") + 1 :]
        return lsp.Position(line=text.count("\n"), character=len(last.encode("utf-16-le")) // 2)

    def type_key(self, uri: str, char: str) -> lsp.Position:
        here = self._end(uri)
        self.versions[uri] += 1
        self.texts[uri] += char
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[
                    lsp.TextDocumentContentChangePartial(
                        range=lsp.Range(start=here, end=here), text=char
                    )
                ],
            )
        )
        self.stats.keystrokes += 1
        return self._end(uri)

    def save(self, uri: str) -> None:
        path = self.root / uri.removeprefix(self.root.as_uri() + "/")
        path.write_text(self.texts[uri], encoding="utf-8")
        self.client.text_document_did_save(
            lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
        )
        self.stats.saves += 1

    def change_on_disk(self, n: int) -> None:
        """Another tool (git pull, a generator) changes a file this editor has not open."""
        rel = f"billing/external_{n % 3}.py"
        path = self.root / rel
        kind = lsp.FileChangeType.Changed if path.exists() else lsp.FileChangeType.Created
        path.write_text(
            f'"""Written by another tool (change {n})."""\n\n\n'
            f"def external_value_{n}() -> int:\n    return {n}\n",
            encoding="utf-8",
        )
        self.client.workspace_did_change_watched_files(
            lsp.DidChangeWatchedFilesParams(changes=[lsp.FileEvent(uri=path.as_uri(), type=kind)])
        )
        self.stats.external_changes += 1

    # -- inline completion ------------------------------------------------------------------

    def cancel_pending(self) -> None:
        for request in self.stats.pending:
            if not request.future.done() and not request.cancel_sent:
                self.client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=request.msg_id))
                request.cancel_sent = True
                self.stats.cancel_sent += 1

    def request_inline(self, uri: str, at: lsp.Position, t0: float) -> None:
        params = lsp.InlineCompletionParams(
            text_document=lsp.TextDocumentIdentifier(uri=uri),
            position=at,
            context=lsp.InlineCompletionContext(
                trigger_kind=lsp.InlineCompletionTriggerKind.Automatic
            ),
        )
        msg_id = f"{self.name}-{self.stats.requests}"
        future = asyncio.wrap_future(
            self.client.protocol.send_request(
                lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id
            )
        )
        request = Request(self.name, time.monotonic() - t0, future, msg_id)
        stats = self.stats  # the phase it was sent in, even if the answer comes later
        future.add_done_callback(lambda f: self._answered(stats, request, t0))
        stats.requests += 1
        stats.sent_at.append(request.sent)
        stats.pending.append(request)

    def _answered(self, stats: EditorStats, request: Request, t0: float) -> None:
        stats.pending.remove(request)
        stats.answered += 1
        future = request.future
        if future.cancelled():  # only when the client itself goes away
            stats.other_errors.append("future cancelled locally")
            return
        exc = future.exception()
        if isinstance(exc, JsonRpcException) and exc.code in (REQUEST_CANCELLED, CONTENT_MODIFIED):
            if request.cancel_sent:
                stats.answered_cancelled += 1
            else:
                stats.other_errors.append(f"{request.msg_id}: cancelled without $/cancelRequest")
            return
        if exc is not None:
            stats.other_errors.append(f"{request.msg_id}: {type(exc).__name__}: {exc}"[:300])
            return
        if request.cancel_sent:
            stats.answered_after_cancel += 1
            return
        stats.latencies.append((request.sent, time.monotonic() - t0 - request.sent))
        result = future.result()
        items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
        if any(_insert_text(i).strip() for i in items):
            stats.non_empty += 1

    async def drain(self, timeout_s: float) -> None:
        """Wait for every request to be answered; what is still open then counts as unanswered."""
        pending = [r.future for r in self.stats.pending]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=timeout_s)
            self.stats.unanswered += len(still)

    # -- the typist -------------------------------------------------------------------------

    async def type_for(self, seconds: float, t0: float, files: list[str], round_: int) -> None:
        """Type functions into the files in turn for ``seconds``; save and touch disk on a
        schedule."""
        s = self.settings
        deadline = time.monotonic() + seconds
        next_save = time.monotonic() + s.save_every_s
        next_external = time.monotonic() + s.external_every_s
        turn = 0
        while time.monotonic() < deadline:
            rel = files[turn % len(files)]
            snippets = SNIPPETS[rel]
            snippet = snippets[(turn // len(files)) % len(snippets)]
            uri = self.open(rel)
            if turn:
                self.stats.file_switches += 1
            turn += 1
            for char in snippet.format(n=f"{round_}_{turn}"):
                if time.monotonic() >= deadline:
                    break
                self.cancel_pending()
                at = self.type_key(uri, char)
                interval = 1.0 / self.rng.uniform(s.min_cps, s.max_cps)
                if char == "\n" and self.rng.random() < 0.3:
                    interval += self.rng.uniform(0.3, 1.5)  # reading what was written
                await asyncio.sleep(min(s.debounce_s, interval))
                self.request_inline(uri, at, t0)
                await asyncio.sleep(max(0.0, interval - s.debounce_s))
                now = time.monotonic()
                if now >= next_save:
                    self.save(uri)
                    next_save = now + s.save_every_s
                if now >= next_external:
                    self.change_on_disk(self.stats.external_changes)
                    next_external = now + s.external_every_s
            self.save(uri)  # a function done: save, read it over, think about the next one
            await asyncio.sleep(self.rng.uniform(3.0, 8.0))


def _insert_text(item: lsp.InlineCompletionItem) -> str:
    text = item.insert_text
    return text if isinstance(text, str) else text.value


# -- memory ----------------------------------------------------------------------------------


def tree_rss(pid: int) -> int:
    """RSS of a process and all its children (llama.cpp and Qdrant Edge may fork helpers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += proc.memory_info().rss
    return total


class RssSampler:
    """Samples the RSS of some server processes every few seconds in the background."""

    def __init__(self, every_s: float, t0: float) -> None:
        self.every_s = every_s
        self.t0 = t0
        self.samples: dict[str, list[tuple[float, float]]] = {}
        self.watched: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, name: str, pid: int) -> None:
        self.watched[name] = pid
        self.samples.setdefault(name, [])
        self.sample_now()

    def unwatch(self, name: str) -> None:
        self.watched.pop(name, None)

    def sample_now(self) -> None:
        now = time.monotonic() - self.t0
        for name, pid in self.watched.items():
            rss = tree_rss(pid)
            if rss:
                self.samples[name].append((now, rss / MB))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self.sample_now()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of RSS over time, in MB per minute."""
    if len(samples) < 3:
        return None
    ts = [t for t, _ in samples]
    mean_t = statistics.fmean(ts)
    mean_r = statistics.fmean(r for _, r in samples)
    var = sum((t - mean_t) ** 2 for t in ts)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return round(cov / var * 60.0, 2)


# -- reporting -------------------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def windows(stats: EditorStats, window_s: float) -> list[dict[str, Any]]:
    """Per window of send time: requests sent, and the latency of those answered with a result
    (not cancelled); windows where nothing completed are listed too."""
    sent: dict[int, int] = {}
    for at in stats.sent_at:
        sent[int(at // window_s)] = sent.get(int(at // window_s), 0) + 1
    done: dict[int, list[float]] = {}
    for at, seconds in stats.latencies:
        done.setdefault(int(at // window_s), []).append(seconds)
    last = max([*sent, *done], default=-1)
    return [
        {
            "from_s": round(k * window_s),
            "to_s": round((k + 1) * window_s),
            "requests": sent.get(k, 0),
            **percentiles(done.get(k, [])),
        }
        for k in range(last + 1)
    ]


def counts(stats: EditorStats) -> dict[str, Any]:
    return {
        "keystrokes": stats.keystrokes,
        "requests": stats.requests,
        "answered": stats.answered,
        "unanswered": stats.unanswered,
        "cancel_sent": stats.cancel_sent,
        "answered_cancelled": stats.answered_cancelled,
        "answered_after_cancel": stats.answered_after_cancel,
        "completed": len(stats.latencies),
        "non_empty": stats.non_empty,
        "other_errors": len(stats.other_errors),
        "other_error_examples": stats.other_errors[:5],
        "saves": stats.saves,
        "file_switches": stats.file_switches,
        "external_changes": stats.external_changes,
        "diagnostics_published": stats.diagnostics_published,
    }


def rss_report(
    samples: list[tuple[float, float]],
    second_half_from_s: float | None,
    window_s: float | None = None,
) -> dict[str, Any]:
    """``window_s``: also the largest RSS of each window (a plateau or a climb)."""
    if not samples:
        return {"samples": 0}
    tail = [s for s in samples if second_half_from_s is None or s[0] >= second_half_from_s]
    report: dict[str, Any] = {
        "samples": len(samples),
        "first_mb": round(samples[0][1], 1),
        "max_mb": round(max(r for _, r in samples), 1),
        "last_mb": round(samples[-1][1], 1),
        "slope_mb_per_min_second_half": slope_mb_per_min(tail),
    }
    if window_s:
        largest: dict[int, float] = {}
        for at, rss in samples:
            window = int(at // window_s)
            largest[window] = max(largest.get(window, 0.0), rss)
        report["max_mb_by_window"] = [round(largest[w], 1) for w in sorted(largest)]
    return report


# -- the run ---------------------------------------------------------------------------------


def make_workspace() -> Path:
    root = Path(tempfile.mkdtemp(prefix="memlsp-soak-ws-"))
    for rel, text in WORKSPACE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def init_options(settings: Settings) -> dict[str, Any]:
    agents: dict[str, Any] = {"generator": {"model": settings.model}}
    if settings.quality_model:
        agents["quality"] = {"model": settings.quality_model, "instruct": True}
    return {"agents": agents}


async def wait_for_memory(editor: Editor, deadline_s: float) -> dict[str, Any]:
    """The memory folder's status once the store is open (and the first pass has ended)."""
    deadline = time.monotonic() + deadline_s
    folders: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        memory = (await editor.status()).get("memory") or {}
        folders = memory.get("folders") or []
        ready = bool(folders) and folders[0].get("role") in ("owner", "client")
        if ready and folders[0].get("state") != "indexing":
            return folders[0]  # type: ignore[no-any-return]
        await asyncio.sleep(0.5)
    return folders[0] if folders else {}


async def measure_overhead(settings: Settings, config_home: Path) -> dict[str, Any]:
    """RSS of a server after initialize, with its memory store open and no model loaded: the
    fixed part that the pool's budget does not cover."""
    empty = Path(tempfile.mkdtemp(prefix="memlsp-soak-empty-"))
    editor = Editor("overhead", empty, settings)
    await editor.start(config_home, **init_options(settings))
    try:
        folder = await wait_for_memory(editor, MEMORY_READY_S)
        await asyncio.sleep(2.0)  # let the store settle
        rss = max(tree_rss(editor.pid) for _ in range(3))
        pool = (await editor.status()).get("pool") or {}
        loaded = [m["name"] for m in pool.get("models", []) if m.get("loaded")]
    finally:
        await editor.stop()
    return {
        "rss_mb": round(rss / MB, 1),
        "memory_role": folder.get("role"),
        "models_loaded": loaded,
    }


async def run(settings: Settings) -> dict[str, Any]:
    config_home = Path(tempfile.mkdtemp(prefix="memlsp-soak-cfg-"))
    if settings.server_log:  # the user's own config: a workspace or client may not set log_file
        user_config = config_home / "memlsp" / "config.yaml"
        user_config.parent.mkdir(parents=True)
        user_config.write_text(
            f"server:\n  log_level: debug\n  log_file: {json.dumps(settings.server_log)}\n"
        )
    started = time.monotonic()
    overhead = await measure_overhead(settings, config_home)
    timeline = {"overhead_measured_s": round(time.monotonic() - started, 1)}

    root = make_workspace()
    t0 = time.monotonic()
    sampler = RssSampler(settings.rss_every_s, t0)
    first = Editor("first", root, settings)
    await first.start(config_home, **init_options(settings))
    sampler.watch("first", first.pid)
    sampler.start()
    timeline["first_started_s"] = round(time.monotonic() - t0, 1)
    budget_mb = ((await first.status()).get("pool") or {}).get("budget_bytes", 0) / MB

    files = list(SNIPPETS)
    await first.type_for(settings.duration_s, t0, files, round_=1)
    solo_end = time.monotonic() - t0
    await first.drain(settings.drain_timeout_s)
    timeline["solo_drained_s"] = round(time.monotonic() - t0, 1)
    solo_stats = first.stats

    # Two windows on one workspace: a second server process on the same folder.
    pair_from = time.monotonic() - t0
    first.stats = EditorStats("first")  # count the pair phase separately
    second = Editor("second", root, settings)
    await second.start(config_home, **init_options(settings))
    sampler.watch("second", second.pid)
    second_memory = await wait_for_memory(second, MEMORY_READY_S)
    timeline["second_started_s"] = round(time.monotonic() - t0, 1)
    await asyncio.gather(
        first.type_for(settings.pair_duration_s, t0, files[:2], round_=2),
        second.type_for(settings.pair_duration_s, t0, files[2:], round_=3),
    )
    timeline["pair_typed_s"] = round(time.monotonic() - t0, 1)
    await asyncio.gather(
        first.drain(settings.drain_timeout_s), second.drain(settings.drain_timeout_s)
    )
    timeline["pair_drained_s"] = round(time.monotonic() - t0, 1)
    second_status = await second.status()
    sampler.unwatch("second")
    await second.stop()
    timeline["second_stopped_s"] = round(time.monotonic() - t0, 1)

    first_status = await first.status()
    first_alive = first.alive()
    await sampler.stop()
    await first.stop()
    timeline["first_stopped_s"] = round(time.monotonic() - t0, 1)

    solo_rss = [x for x in sampler.samples.get("first", []) if x[0] <= solo_end]
    max_rss = max((r for s in sampler.samples.values() for _, r in s), default=0.0)
    result: dict[str, Any] = {
        "settings": {k: v for k, v in vars(settings).items()},
        "machine": {"cpus": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2)},
        "timeline_s": timeline,
        "solo": {
            "seconds": round(solo_end, 1),
            "inline_windows": windows(solo_stats, settings.window_s),
            "inline_all": percentiles([s for _, s in solo_stats.latencies]),
            "counts": counts(solo_stats),
            "rss": rss_report(solo_rss, solo_end / 2, settings.window_s),
        },
        "pair": {
            "seconds": round(settings.pair_duration_s, 1),
            "first": counts(first.stats),
            "second": counts(second.stats),
            "first_inline": percentiles([s for _, s in first.stats.latencies]),
            "second_inline": percentiles([s for _, s in second.stats.latencies]),
            "second_memory_role": second_memory.get("role"),
            "second_memory_owner_is_first": second_memory.get("owner_pid") == first.pid,
            "rss_first": rss_report(
                [x for x in sampler.samples.get("first", []) if x[0] >= pair_from], None
            ),
            "rss_second": rss_report(sampler.samples.get("second", []), None),
        },
        "memory_bound": {
            "pool_budget_mb": round(budget_mb, 1),
            "overhead_mb": overhead["rss_mb"],
            "overhead_measured": overhead,
            "kv_states_mb": KV_STATES_MB,
            "bound_mb": round(budget_mb + overhead["rss_mb"] + KV_STATES_MB, 1),
            "max_rss_mb": round(max_rss, 1),
            "headroom_mb": round(budget_mb + overhead["rss_mb"] + KV_STATES_MB - max_rss, 1),
        },
        "server_at_end": {
            "alive": first_alive,
            "generator": first_status.get("generator"),
            "quality": first_status.get("quality"),
            "requests": first_status.get("requests"),
            "debounce": first_status.get("debounce"),
            # reviews paused for completions (models/priority.py)
            "priority": (first_status.get("pool") or {}).get("priority"),
            "pool_models_loaded": [
                m["name"]
                for m in (first_status.get("pool") or {}).get("models", [])
                if m.get("loaded")
            ],
            "second_generator": second_status.get("generator"),
            "memory": [
                {k: f.get(k) for k in ("role", "state", "files_indexed", "chunks", "last_error")}
                for f in (first_status.get("memory") or {}).get("folders") or []
            ],
        },
    }
    return result


def parse_args(argv: list[str] | None) -> Settings:
    d = Settings()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=d.duration_s, help="solo phase, seconds")
    p.add_argument("--window", type=float, default=d.window_s, help="latency window, seconds")
    p.add_argument("--pair-duration", type=float, default=d.pair_duration_s)
    p.add_argument("--model", default=d.model)
    p.add_argument("--quality-model", default=d.quality_model)
    p.add_argument("--save-every", type=float, default=d.save_every_s)
    p.add_argument("--external-every", type=float, default=d.external_every_s)
    p.add_argument("--rss-every", type=float, default=d.rss_every_s)
    p.add_argument("--debounce", type=float, default=d.debounce_s)
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--server-log", default="", help="debug log of every server, appended here")
    a = p.parse_args(argv)
    return Settings(
        duration_s=a.duration,
        window_s=a.window,
        pair_duration_s=a.pair_duration,
        model=a.model,
        quality_model=a.quality_model,
        save_every_s=a.save_every,
        external_every_s=a.external_every,
        rss_every_s=a.rss_every,
        debounce_s=a.debounce,
        drain_timeout_s=a.drain_timeout,
        seed=a.seed,
        server_log=a.server_log,
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    return asyncio.run(run(parse_args(argv)))
