"""Stop a llama.cpp computation in flight when its request is cancelled.

A prompt evaluated in batches of 64 tokens, with the cancel flag checked between them, wastes up
to a batch after a cancel; one large batch is faster (the 1.5B on 2 cores: 63 tokens/s in
64-token batches, 65.5 in 512) but used to hold the model until it ended. llama.cpp checks a
context's abort callback after each node of its graph (hundreds per batch), and an aborted
``llama_decode`` returns 2 and removes the aborted batch's cells from the KV cache, keeping what
earlier batches computed. So with the callback wired to the cancel flag a prompt goes in one
batch and still stops within milliseconds.

The callback must not be Python code: ctypes would take the GIL once per graph node, and any
other thread running Python (the event loop) would hold it up for its switch interval (5 ms).
It is libc's ``strlen`` over a two-byte flag: 0 while the first byte is 0, 1 once it is set,
which the caller reads as its ``bool`` (the low byte of the return register, on every ABI we
build for). Where libc cannot be found, ``for_model`` returns None and callers keep small
batches.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from memlsp.models import runtime

__all__ = ["Cancel", "ComputeAbort", "for_model"]

log = logging.getLogger(__name__)

_ATTRIBUTE = "_memlsp_abort"


class Cancel(threading.Event):
    """A cancel flag that also tells hooks when it is set (``ComputeAbort`` stops the graph)."""

    def __init__(self) -> None:
        super().__init__()
        self._hooks: list[Callable[[], None]] = []
        self._hooks_lock = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._hooks_lock:
            hooks = list(self._hooks)
        for hook in hooks:
            hook()

    @contextlib.contextmanager
    def hooked(self, hook: Callable[[], None]) -> Iterator[None]:
        """Call ``hook`` when the flag is set while inside (at once when it already is)."""
        with self._hooks_lock:
            self._hooks.append(hook)
        try:
            if self.is_set():
                hook()
            yield
        finally:
            with self._hooks_lock:
                self._hooks.remove(hook)


def _strlen_address() -> int | None:
    try:
        address = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p).value
    except (OSError, AttributeError, TypeError):
        return None
    return int(address) if address else None


class ComputeAbort:
    """One llama context's abort flag. Armed only inside ``armed``: a flag left set by a late
    cancel would abort the next, unrelated computation."""

    def __init__(self, lib: Any, ctx: Any, strlen_address: int) -> None:
        self._flag = ctypes.create_string_buffer(2)
        self._lock = threading.Lock()
        self._armed = False
        # Kept referenced: the context holds only the raw pointers.
        self._callback = lib.ggml_abort_callback(strlen_address)
        lib.llama_set_abort_callback(ctx, self._callback, ctypes.cast(self._flag, ctypes.c_void_p))

    def _trip(self) -> None:
        with self._lock:
            if self._armed:
                self._flag[0] = b"\x01"

    @contextlib.contextmanager
    def armed(self, cancel: Cancel) -> Iterator[None]:
        """Inside, setting ``cancel`` aborts the computation in flight (``llama_decode``
        returns 2; llama-cpp-python raises RuntimeError) and every later one."""
        with self._lock:
            self._armed = True
            self._flag[0] = b"\x00"
        try:
            with cancel.hooked(self._trip):
                yield
        finally:
            with self._lock:
                self._armed = False
                self._flag[0] = b"\x00"


def for_model(llama: Any) -> ComputeAbort | None:
    """The abort flag of a loaded ``Llama``, wired on first use; None where unavailable (no
    libc ``strlen``, or not a llama-cpp-python model)."""
    existing = getattr(llama, _ATTRIBUTE, None)
    if existing is not None:
        return existing if isinstance(existing, ComputeAbort) else None
    ctx = getattr(llama, "ctx", None)
    address = _strlen_address()
    abort: ComputeAbort | bool = False
    if ctx is not None and address is not None:
        try:
            abort = ComputeAbort(runtime.llama_cpp().llama_cpp, ctx, address)
        except (AttributeError, TypeError, ctypes.ArgumentError) as exc:
            log.debug("no abort callback on this model: %s", exc)
    with contextlib.suppress(AttributeError):  # a test double without attributes
        setattr(llama, _ATTRIBUTE, abort)
    return abort if isinstance(abort, ComputeAbort) else None
