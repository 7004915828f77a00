"""Saved KV-cache states of recently left documents, so a file switch does not cost a whole prompt.

llama.cpp reuses only the longest common token prefix with what its KV cache holds. A user who
edits one function in ``a.py``, then one in ``b.py``, then goes back to ``a.py`` would have the
whole prompt of ``a.py`` evaluated again (500-1,000 tokens: seconds on 2 CPU cores). Before a
prompt for another document runs, the state of the document being left is copied out of the
context (one sequence: KV cells only, ~12 KB a token on the 0.5B); when a later prompt shares
more with a saved state than with the live cache, that state is copied back first.

Correctness never depends on which document a state was saved for: a state is stored with the
tokens the cache held, and a restore sets the model's token record to exactly those, so the
usual prefix comparison (``prefill``) decides what is reused. The document only names the slot
to replace. States are dropped when the model instance changes (evicted and loaded again).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["KvStates", "Snapshot", "common_prefix", "restore", "shared_prefix", "snapshot"]

log = logging.getLogger(__name__)

# A restore copies the whole state back: worth it only when it saves this many more tokens
# than the live cache already shares with the prompt (~0.15 s of prompt evaluation on 2 cores).
MIN_GAIN_TOKENS = 32
# Saving a short cache gains nothing a fresh evaluation would not do as fast.
MIN_SAVE_TOKENS = 64


def common_prefix(llama: Any, tokens: Sequence[int]) -> int:
    """How many leading ``tokens`` the model's KV cache holds already."""
    return _common(np.asarray(llama.input_ids[: int(llama.n_tokens)]), tokens)


def shared_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    return _common(np.asarray(a), b)


def _common(held: np.ndarray, tokens: Sequence[int] | np.ndarray) -> int:
    limit = min(len(held), len(tokens))
    mismatch = np.nonzero(held[:limit] != np.asarray(tokens[:limit]))[0]
    return int(mismatch[0]) if mismatch.size else limit


@dataclass
class Snapshot:
    """A model's cache (sequence 0) copied out, with the token record that goes with it."""

    tokens: np.ndarray  # what the cache held: the restored model's token record
    data: Any  # ctypes uint8 array from llama_state_seq_get_data


def snapshot(llama: Any, max_bytes: int | None = None) -> Snapshot | None:
    """The cache's contents now; None when it holds too little to be worth a copy, the copy
    would exceed ``max_bytes``, or llama.cpp could not give it."""
    n_tokens = int(llama.n_tokens)
    if n_tokens < MIN_SAVE_TOKENS:
        return None
    from memlsp.models.runtime import llama_cpp

    lib = llama_cpp()
    size = int(lib.llama_state_seq_get_size(llama.ctx, 0))
    if size <= 0 or (max_bytes is not None and size > max_bytes):
        return None
    data = (ctypes.c_uint8 * size)()
    if int(lib.llama_state_seq_get_data(llama.ctx, data, size, 0)) != size:
        return None
    return Snapshot(np.array(llama.input_ids[:n_tokens], copy=True), data)


def restore(llama: Any, saved: Snapshot) -> bool:
    """Put ``saved`` back into the cache; on failure the cache is emptied (it may be half
    written) and False returned."""
    from memlsp.models.runtime import llama_cpp

    lib = llama_cpp()
    ok = int(lib.llama_state_seq_set_data(llama.ctx, saved.data, len(saved.data), 0)) > 0
    n = len(saved.tokens) if ok else 0
    if ok:
        llama.input_ids[:n] = saved.tokens
    else:
        lib.llama_memory_seq_rm(lib.llama_get_memory(llama.ctx), 0, -1, -1)
        log.warning("could not restore a saved KV state (%d bytes)", len(saved.data))
    llama.n_tokens = n
    return ok


@dataclass
class KvStateStats:
    saved: int = 0
    restored: int = 0
    restored_tokens: int = 0  # prompt tokens a restore spared from evaluation
    failed: int = 0


class KvStates:
    """An LRU of per-document KV states for one model instance, bounded in bytes.

    Call ``switch_to`` with the model held (its lock serialises every use of the context),
    right before the prompt is evaluated."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.stats = KvStateStats()
        self._saved: OrderedDict[str, Snapshot] = OrderedDict()
        self._bytes = 0
        self._model: weakref.ref[Any] | None = None
        self._owner: str | None = None  # the document whose prompt the cache holds
        self._owner_prompt: np.ndarray | None = None
        self._lock = threading.Lock()  # stats() may run on another thread

    def switch_to(self, llama: Any, key: str, prompt: Sequence[int]) -> int:
        """Make the cache hold as much of ``prompt`` as any saved state can; returns the tokens
        a restore brought back (0 when the live cache was kept)."""
        if self.budget_bytes <= 0:
            return 0
        if self._model is None or self._model() is not llama:
            self._reset(llama)
        if self._owner is not None and self._owner != key:
            self._save_current(llama, self._owner)
        self._owner, self._owner_prompt = key, np.asarray(prompt)
        live = common_prefix(llama, prompt)
        best_key, best = None, live
        for saved_key, saved in self._saved.items():
            shared = _common(saved.tokens, prompt)
            if shared > best:
                best_key, best = saved_key, shared
        if best_key is None or best - live < MIN_GAIN_TOKENS:
            return 0
        return best if self._restore(llama, best_key, gain=best - live) else 0

    def keep(self, llama: Any, key: str, held: Sequence[int]) -> None:
        """Save the cache's state now as ``key``'s (it holds ``held``): for an agent that
        evaluates a long prompt once and will come back to it (the surprise review's pass
        over a file), rather than at the next switch."""
        if self.budget_bytes <= 0:
            return
        if self._model is None or self._model() is not llama:
            self._reset(llama)
        self._owner_prompt = np.asarray(held)
        self._save_current(llama, key)
        self._owner = self._owner_prompt = None  # what follows is not worth saving

    def stats_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "documents": len(self._saved),
                "bytes": self._bytes,
                "saved": self.stats.saved,
                "restored": self.stats.restored,
                "restored_tokens": self.stats.restored_tokens,
                "failed": self.stats.failed,
            }

    # -- internals -----------------------------------------------------------------------

    def _reset(self, llama: Any) -> None:
        with self._lock:
            self._saved.clear()
            self._bytes = 0
        self._model = weakref.ref(llama)
        self._owner = self._owner_prompt = None

    def _save_current(self, llama: Any, key: str) -> None:
        n_tokens = int(llama.n_tokens)
        owner = self._owner_prompt
        if n_tokens < MIN_SAVE_TOKENS or owner is None:
            return
        held = np.asarray(llama.input_ids[:n_tokens])
        # Another agent on the same model may have replaced the owner's cache since: then it
        # holds someone else's prompt, not worth a slot.
        if _common(held, owner) < min(n_tokens, len(owner)) // 2:
            return
        saved = snapshot(llama, self.budget_bytes)
        if saved is None:
            return
        size = len(saved.data)
        with self._lock:
            old = self._saved.pop(key, None)
            if old is not None:
                self._bytes -= len(old.data)
            self._saved[key] = saved
            self._bytes += size
            self.stats.saved += 1
            while self._bytes > self.budget_bytes and len(self._saved) > 1:
                _, dropped = self._saved.popitem(last=False)
                self._bytes -= len(dropped.data)

    def _restore(self, llama: Any, key: str, *, gain: int) -> bool:
        saved = self._saved[key]
        ok = restore(llama, saved)
        with self._lock:
            if ok:
                self._saved.move_to_end(key)
                self.stats.restored += 1
                self.stats.restored_tokens += gain
            else:
                self.stats.failed += 1
        return ok
