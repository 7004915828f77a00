"""One thread runs every llama.cpp graph computation of the process.

llama.cpp's CPU backend (built with OpenMP, as llama-cpp-python builds it) gives each thread
that calls ``llama_decode`` its own team of OpenMP worker threads. We call it from several
threads: the completion executor, work-ahead and speculation, reviews, the embedder. Once a
second thread has computed, libgomp counts more OpenMP threads than cores and, for every team,
stops spinning between parallel regions: each decode then pays for waking its workers. Measured
(0.5B, 2 cores, the same cold requests in one process): prompt 119 vs 128 tokens/s and decoding
50 vs 39 ms/token once another thread had decoded, which was most of the gap to llama-server's
cold requests (it decodes on one thread).

So every ``llama_decode``/``llama_encode`` call, whichever thread makes it, runs on this one
thread while its caller waits (a hand-off costs tens of microseconds; a decode, milliseconds).
It also makes two models' computations (an embedding pass beside a completion) take turns,
never overlap: two thread pools on the same cores slow each other ~10x. Which thread *holds* a
model is still the pool's business; this only moves the native call.

Installed once, by ``runtime.llama_cpp()``, over llama-cpp-python's bindings: its high-level
``Llama`` (eval, embed, create_completion) and our own batch decoder all reach the graph
through these two functions.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["calls", "install", "on_compute_thread", "run"]

_THREAD_NAME = "memlsp-llama-compute"


class _Call:
    """One native call and its outcome; ``done`` is released when it has run."""

    __slots__ = ("args", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Lock()
        self.done.acquire()


_queue: queue.SimpleQueue[_Call] = queue.SimpleQueue()
_start_lock = threading.Lock()
_thread: threading.Thread | None = None
_calls = 0  # native calls run on the compute thread (status, tests)


def _serve() -> None:
    global _calls
    while True:
        call = _queue.get()
        try:
            call.result = call.fn(*call.args)
        except BaseException as exc:  # handed to the caller, never kills the thread
            call.error = exc
        _calls += 1
        call.done.release()


def _ensure_started() -> None:
    global _thread
    with _start_lock:
        if _thread is None:
            _thread = threading.Thread(target=_serve, name=_THREAD_NAME, daemon=True)
            _thread.start()


def on_compute_thread() -> bool:
    return threading.current_thread() is _thread


def run(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on the compute thread (at once when called there); its result or error."""
    if on_compute_thread():
        return fn(*args)
    _ensure_started()
    call = _Call(fn, args)
    _queue.put(call)
    call.done.acquire()
    if call.error is not None:
        raise call.error
    return call.result


def calls() -> int:
    return _calls


def _routed(native: Callable[..., Any]) -> Callable[..., Any]:
    def on_compute(*args: Any) -> Any:
        return run(native, *args)

    on_compute.__name__ = getattr(native, "__name__", "llama_call")
    on_compute._memlsp_native = native  # type: ignore[attr-defined]
    return on_compute


_ROUTED = ("llama_decode", "llama_encode")


def install(package: ModuleType) -> None:
    """Route the graph computations of the imported ``llama_cpp`` package through the compute
    thread: its bindings module (which llama-cpp-python's own classes call) and the names the
    package re-exports. Idempotent."""
    bindings = getattr(package, "llama_cpp", package)
    for name in _ROUTED:
        native = getattr(bindings, name)
        routed = native if hasattr(native, "_memlsp_native") else _routed(native)
        for module in {id(m): m for m in (bindings, package)}.values():
            if hasattr(module, name):
                setattr(module, name, routed)
