"""Work ahead: in idle time, evaluate the prompt the next inline request will be asked with.

On 2 CPU cores a suggestion costs mostly its prompt (~0.3 s per 64 tokens with the 0.5B), and
the KV cache keeps what a prompt shares with the last one from its start. So where the next
request's prompt can be guessed, the generator prefills it (no generation) as background work
(``models.priority``): it takes its turn beside indexing and reviews, and gives the model up
within one prompt batch to any request. The guesses:

- a document opened: the cursor at its end. Within the prefix window (most files) every later
  cursor's prompt shares the document's tokens up to that cursor;
- the cursor in a new region (a document's first request, or one further than the sticky
  context's reach from its last): that cursor, so the keys typed next find the prompt warm even
  when this request is answered from the cache;
- a suggestion accepted: the cursor after the accepted text;
- a suggestion shown (``agents.generator.speculate``): the whole answer at the cursor after it,
  as if accepted, into the completion cache: accepting it shows the next suggestion at once
  (llama.vim's speculative FIM). Typing cancels it like any other guess.

A newer guess or any other request cancels an older guess. It never loads the model: a session
that asks for no completion (a client without inline completion) never pays for one.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.agents.completion.next_line import next_line_start
from memlsp.agents.completion.sticky_context import STICKY_LINES
from memlsp.server.lsp.feature import Feature

if TYPE_CHECKING:
    from memlsp.server.lsp.documents import DocumentEvent
    from memlsp.server.lsp.session import Session

log = logging.getLogger(__name__)

# A guess waits this long before it computes: a request that follows at once (the editor asking
# as a file opens, the next key of fast typing: 100 ms apart at 10 keys/s) cancels it before its
# first prompt batch, which that request would otherwise wait for (~0.5 s on 2 cores). Measured
# on bench_vs_llama_server's cold requests: up to 0.6 s of a 1-2 s request was that wait.
QUIET_BEFORE_S = 0.15


class WorkAheadService(Feature):
    name = "work_ahead"

    def __init__(self, session: Session) -> None:
        self.session = session
        # One at a time: each replaces the last, and they share the one completion model.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="memlsp-work-ahead")
        self._lock = threading.Lock()
        self._cancel: threading.Event | None = None
        self._speculating: set[tuple[str, str, str]] = set()  # (uri, prefix, suffix) guessed
        self._hurry = threading.Event()  # a request waits for the guess: skip the quiet wait
        self._last_line: dict[str, int] = {}  # document -> line of its last request
        self._scheduled: Counter[str] = Counter()  # by reason: open, region, accepted
        self._skipped = 0  # guesses with no model loaded (or work-ahead off)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "work_ahead": {
                    "enabled": self.session.config.agents.generator.work_ahead,
                    "scheduled": dict(self._scheduled),
                    "skipped": self._skipped,
                }
            }

    def shutdown(self) -> None:
        self.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def cancel(self) -> None:
        with self._lock:
            cancel, self._cancel = self._cancel, None
            self._speculating = set()
        if cancel is not None:
            cancel.set()

    # -- guesses (on the event loop) -------------------------------------------------------

    def document_opened(self, event: DocumentEvent) -> None:
        self._schedule("open", event.uri, event.language_id, event.text, "")

    def document_closed(self, event: DocumentEvent) -> None:
        with self._lock:
            self._last_line.pop(event.uri, None)

    def request_arrived(self, uri: str, language_id: str, prefix: str, suffix: str) -> None:
        """An inline request at this cursor (before its cache lookup)."""
        line = prefix.count("\n")
        with self._lock:
            last = self._last_line.get(uri)
            self._last_line[uri] = line
            if (uri, prefix, suffix) in self._speculating:
                self._hurry.set()
                return  # the guess is this request's answer: the request waits for it
        if last is None or abs(line - last) > STICKY_LINES:
            self._schedule("region", uri, language_id, prefix, suffix)
        else:  # the cursor is known now: an older guess would only displace its prompt
            self.cancel()

    def accepted(self, uri: str, language_id: str, prefix: str, suffix: str) -> None:
        """A suggestion was accepted: ``prefix`` ends with the accepted text."""
        with self._lock:
            if (uri, prefix, suffix) in self._speculating:
                return  # the next suggestion there is under way already
        self._schedule("accepted", uri, language_id, prefix, suffix)

    def shown(self, uri: str, language_id: str, prefix: str, suffix: str) -> None:
        """A suggestion is on screen: ``prefix`` ends with it, as if accepted. The answers
        there, and when it ends its line at the start of the next one (after Enter and the
        editor's indentation), go into the completion cache (agents.generator.speculate)."""
        if self.session.config.agents.generator.speculate:
            after_enter = next_line_start(prefix, suffix, language_id)
            also = None if after_enter is None else prefix + after_enter
            self._schedule("shown", uri, language_id, prefix, suffix, also=also)

    # -- internals -------------------------------------------------------------------------

    def _schedule(
        self,
        reason: str,
        uri: str,
        language_id: str,
        prefix: str,
        suffix: str,
        *,
        also: str | None = None,
    ) -> None:
        """Guess that the next request comes at ``prefix``/``suffix`` (then at ``also``, another
        prefix with the same suffix, for a speculation)."""
        session = self.session
        generator = session.current_generator()
        pool = session.pool
        if (
            not session.config.agents.generator.work_ahead
            or generator is None
            or pool is None
            or not pool.is_loaded(generator.model_name)
        ):
            with self._lock:
                self._skipped += 1
            return
        root = session.workspace_root
        requests = [
            InlineRequest(
                doc_key=uri,
                path=session.relative_path(uri),
                language_id=language_id,
                prefix=guess,
                suffix=suffix,
                repo_name=root.name if root else "",
            )
            for guess in ([prefix] if also is None else [prefix, also])
        ]
        cancel = threading.Event()
        with self._lock:
            previous, self._cancel = self._cancel, cancel
            self._scheduled[reason] += 1
            self._speculating = (
                {(uri, r.prefix, suffix) for r in requests} if reason == "shown" else set()
            )
            self._hurry = hurry = threading.Event()
        if previous is not None:
            previous.set()
        with contextlib.suppress(RuntimeError):  # shut down: nothing to work ahead for
            self._executor.submit(self._run, reason, generator, requests, cancel, hurry)

    def _run(
        self,
        reason: str,
        generator: GeneratorAgent,
        requests: list[InlineRequest],
        cancel: threading.Event,
        hurry: threading.Event,
    ) -> None:
        request = requests[0]
        try:
            quiet_until = time.monotonic() + QUIET_BEFORE_S
            while not hurry.is_set() and time.monotonic() < quiet_until:
                if cancel.wait(0.01):
                    return
            if reason == "shown":
                for guess in requests:
                    if cancel.is_set():
                        break
                    generator.speculate(guess, cancel)
            else:
                generator.work_ahead(request, cancel)
        except Exception:  # a guess: never worth an error shown to the user
            log.debug("work-ahead for %s failed", request.doc_key, exc_info=True)
        finally:
            with self._lock:
                if self._cancel is cancel:
                    self._cancel = None
                    self._speculating = set()
