"""One LRU-managed pool of GGUF models per server process (= per editor session).

- Lazy: a model loads on its first ``acquire``, never at start-up; every agent shares the one
  ``Llama`` instance of a model.
- ``acquire`` is a context manager holding that instance's lock: a ``Llama`` is not thread-safe
  (two threads on one instance crash), and calling it after ``close()`` segfaults, so the only
  way to reach an instance is through its lock, and eviction takes the same lock.
- Eviction: by idle time (a reaper thread; pinned models are exempt) and by memory budget (before
  a load, least-recently-used idle models go until the new model's estimate fits). A model in use
  is never evicted. A model that alone exceeds the budget is refused.
- All methods are blocking: call them from worker threads, never from the event loop.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memlsp.config.schema import Config, ModelSpec, PoolConfig
from memlsp.models import assembly, runtime, token_pieces
from memlsp.models.errors import (
    ModelBudgetError,
    ModelCorruptError,
    ModelError,
    PoolClosedError,
    UnknownModelError,
)
from memlsp.models.gguf_meta import GGUFFormatError, read_gguf_info
from memlsp.models.priority import Priority

log = logging.getLogger(__name__)

# Memory estimate before a load, calibrated with tests/benchmarks/bench_pool.py against measured
# RSS growth (load + a full prompt batch): llama.cpp repacks part of the quantized weights for the
# CPU (hence more than the file), keeps an f16 KV cache, and a compute buffer that grows with
# n_ctx x n_batch x heads. After a load the measured growth replaces the estimate if larger.
N_BATCH = 512
_WEIGHTS_FACTOR = 1.3
_FIXED_OVERHEAD = 64 << 20


@dataclass
class ModelStats:
    hits: int = 0
    misses: int = 0
    loads: int = 0
    evictions: int = 0
    load_seconds: float = 0.0
    last_error: str = ""


@dataclass
class _Entry:
    spec: ModelSpec
    lock: threading.Lock = field(default_factory=threading.Lock)
    llama: Any = None
    path: Path | None = None
    users: int = 0  # holders and waiters: an entry with users is never evicted
    bytes_estimate: int = 0
    reserved: bool = False  # counted against the budget (loaded or loading)
    last_used: float = 0.0
    gpu: str = ""
    n_gpu_layers: int = 0
    stats: ModelStats = field(default_factory=ModelStats)


class LoadedModel:
    """What ``acquire`` yields: the shared instance, valid only inside the ``with`` block."""

    def __init__(self, name: str, spec: ModelSpec, llama: Any) -> None:
        self.name = name
        self.spec = spec
        self._llama = llama
        self._valid = True

    @property
    def llama(self) -> Any:
        if not self._valid:
            raise RuntimeError(f"model '{self.name}' used outside its acquire() block")
        return self._llama

    def _invalidate(self) -> None:
        self._valid = False


class _StderrToLog(io.TextIOBase):
    """llama-cpp-python prints load chatter to sys.stderr when verbose: route it to DEBUG."""

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                runtime.llama_log.debug("%s", line)
        return len(text)


LlamaFactory = Callable[..., Any]


def _default_factory(**kwargs: Any) -> Any:
    return runtime.llama_cpp().Llama(**kwargs)


def _rss_bytes() -> int:
    """Resident set size of this process (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ModelPool:
    def __init__(
        self,
        catalogue: dict[str, ModelSpec],
        pool_config: PoolConfig | None = None,
        *,
        cache_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        llama_factory: LlamaFactory = _default_factory,
    ) -> None:
        self._catalogue = dict(catalogue)
        self._config = pool_config or PoolConfig()
        self._cache_dir = cache_dir
        self._clock = clock
        self._factory = llama_factory
        self._cv = threading.Condition()
        self._entries: dict[str, _Entry] = {}
        self._closed = False
        self._reaper: threading.Thread | None = None
        self._reaper_stop = threading.Event()
        # Completions and refactors before reviews, across all the pool's models (priority.py).
        self.priority = Priority()

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> ModelPool:
        return cls(config.models, config.pool, **kwargs)

    # -- configuration -------------------------------------------------------------------

    @property
    def budget_bytes(self) -> int:
        return self._config.memory_budget_mb << 20

    def reconfigure(self, catalogue: dict[str, ModelSpec], pool_config: PoolConfig) -> None:
        """Apply a new config live: new limits now; a changed model spec reloads on next use."""
        with self._cv:
            self._config = pool_config
            self._catalogue = dict(catalogue)
            for name, entry in list(self._entries.items()):
                new_spec = catalogue.get(name)
                if new_spec != entry.spec and entry.users == 0:
                    self._unload_locked(entry, reason="config changed")
                    del self._entries[name]
            self._cv.notify_all()

    def spec(self, name: str) -> ModelSpec:
        try:
            return self._catalogue[name]
        except KeyError:
            known = ", ".join(sorted(self._catalogue)) or "none"
            raise UnknownModelError(
                name, f"model '{name}' is not in the catalogue (known: {known})"
            ) from None

    # -- use -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def acquire(
        self, name: str, timeout: float | None = None, *, interactive: bool = False
    ) -> Iterator[LoadedModel]:
        """Hold model ``name`` (loading it first if needed) for exclusive use by this thread.

        ``interactive``: someone waits for this (a completion, a refactor): background work
        holding the model gives it up, background work on other models pauses while it runs
        (``priority``)."""
        if not interactive:
            with self._hold(name, timeout) as handle:
                yield handle
            return
        with self.priority.wanting(name), self._hold(name, timeout) as handle:
            with self.priority.running(name):
                yield handle

    @contextlib.contextmanager
    def _hold(self, name: str, timeout: float | None) -> Iterator[LoadedModel]:
        wait = self._config.acquire_timeout_s if timeout is None else timeout
        with self._cv:
            if self._closed:
                raise PoolClosedError(name, "the model pool is closed")
            entry = self._entries.get(name)
            if entry is None:
                entry = _Entry(spec=self.spec(name))
                self._entries[name] = entry
            entry.users += 1
        try:
            if not entry.lock.acquire(timeout=wait if wait > 0 else -1):
                raise ModelBudgetError(name, f"model '{name}' stayed busy for {wait:.0f} s")
            try:
                if entry.llama is None:
                    entry.stats.misses += 1
                    self._load(entry)
                else:
                    entry.stats.hits += 1
                handle = LoadedModel(name, entry.spec, entry.llama)
                try:
                    yield handle
                finally:
                    handle._invalidate()
                    entry.last_used = self._clock()
            finally:
                entry.lock.release()
        finally:
            with self._cv:
                entry.users -= 1
                self._cv.notify_all()

    def _load(self, entry: _Entry) -> None:
        """Load under the entry's lock; the budget is reserved first so loads can't overshoot."""
        spec = entry.spec
        try:
            path = assembly.resolve(spec, self._cache_dir)
            estimate = self._estimate(spec, path)
            self._reserve(entry, estimate)
        except ModelError as exc:
            entry.stats.last_error = str(exc)
            raise
        started = time.monotonic()
        try:
            n_gpu_layers, gpu_note = runtime.resolve_gpu_layers(spec.n_gpu_layers)
            kwargs: dict[str, Any] = {
                "model_path": str(path),
                "n_ctx": spec.n_ctx,
                "n_batch": N_BATCH,
                "n_threads": spec.n_threads or (os.cpu_count() or 1),
                # Prompt/embedding batches use their own thread count (default: every core).
                "n_threads_batch": spec.n_threads or (os.cpu_count() or 1),
                "n_gpu_layers": n_gpu_layers,
                # With no layer offloaded, keep the KV cache and the large-batch matrix work
                # off the GPU too: llama.cpp does both by default (seen on an H200 with
                # n_gpu_layers: 0: 316 MB of GPU memory besides the CUDA context), not "CPU".
                "offload_kqv": n_gpu_layers != 0,
                "op_offload": n_gpu_layers != 0,
                "flash_attn": spec.flash_attn,
                "embedding": spec.role == "embed",
                "verbose": True,  # see runtime.py: verbose=False blanks fd 1 during a load
            }
            if spec.chat_format:
                kwargs["chat_format"] = spec.chat_format
            rss_before = _rss_bytes()
            with contextlib.redirect_stderr(_StderrToLog()):
                llama = self._factory(**kwargs)
            grown = _rss_bytes() - rss_before
            # verbose=True was only for the load (see runtime.py); at run time llama-cpp-python
            # would print() per call onto sys.stdout, which the CLI's output owns.
            llama.verbose = False
            token_pieces.install(llama)  # whole pieces in its detokenize (models/token_pieces)
        except Exception as exc:
            with self._cv:
                self._release_reservation(entry)
            error = ModelCorruptError(
                spec.name,
                f"model '{spec.name}': llama.cpp could not load {path} ({exc}). "
                f"If the file is damaged, delete it and run `memlsp models install {spec.name}`"
                f" (needs: {assembly.install_hint(spec)}).",
            )
            entry.stats.last_error = str(error)
            raise error from exc
        seconds = time.monotonic() - started
        entry.llama, entry.path, entry.gpu, entry.n_gpu_layers = llama, path, gpu_note, n_gpu_layers
        if grown > entry.bytes_estimate:
            with self._cv:  # measured beats estimated (another load may have grown too: rare)
                entry.bytes_estimate = grown
        entry.stats.loads += 1
        entry.stats.load_seconds += seconds
        entry.stats.last_error = ""
        log.info("loaded model %s from %s in %.2f s; %s", spec.name, path, seconds, gpu_note)

    def estimate(self, name: str) -> int:
        """Bytes model ``name`` would take once loaded (assembles its file if needed)."""
        spec = self.spec(name)
        return self._estimate(spec, assembly.resolve(spec, self._cache_dir))

    def _estimate(self, spec: ModelSpec, path: Path) -> int:
        try:
            info = read_gguf_info(path)
        except GGUFFormatError as exc:
            raise ModelCorruptError(spec.name, f"model '{spec.name}': {path}: {exc}") from exc
        weights = int(path.stat().st_size * _WEIGHTS_FACTOR)
        compute = spec.n_ctx * N_BATCH * info.head_count * 4
        return weights + info.kv_cache_bytes(spec.n_ctx) + compute + _FIXED_OVERHEAD

    def _reserve(self, entry: _Entry, estimate: int) -> None:
        name = entry.spec.name
        budget = self.budget_bytes
        if estimate > budget:
            raise ModelBudgetError(
                name,
                f"model '{name}' needs about {estimate >> 20} MB (weights + KV cache for "
                f"n_ctx={entry.spec.n_ctx}), more than pool.memory_budget_mb="
                f"{self._config.memory_budget_mb}. Raise the budget or lower n_ctx.",
            )
        deadline = time.monotonic() + self._config.acquire_timeout_s
        with self._cv:
            while True:
                if self._closed:
                    raise PoolClosedError(name, "the model pool is closed")
                self._evict_lru_until(budget - estimate, keep=entry)
                if self._reserved_bytes() + estimate <= budget:
                    entry.bytes_estimate, entry.reserved = estimate, True
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    busy = [e.spec.name for e in self._entries.values() if e.reserved]
                    raise ModelBudgetError(
                        name,
                        f"model '{name}' (~{estimate >> 20} MB) does not fit "
                        f"pool.memory_budget_mb={self._config.memory_budget_mb} beside models "
                        f"in use: {', '.join(busy)}",
                    )
                self._cv.wait(timeout=min(left, 1.0))

    def _reserved_bytes(self) -> int:
        return sum(e.bytes_estimate for e in self._entries.values() if e.reserved)

    def _evict_lru_until(self, target: int, keep: _Entry) -> None:
        """Unload idle models, least recently used first, until reserved bytes <= target."""
        idle = [
            e
            for e in self._entries.values()
            if e is not keep and e.llama is not None and e.users == 0
        ]
        # Pinned models go last: pinning exempts from idle eviction, not from the budget.
        for entry in sorted(idle, key=lambda e: (e.spec.pinned, e.last_used)):
            if self._reserved_bytes() <= target:
                return
            self._unload_locked(entry, reason="memory budget")

    def _release_reservation(self, entry: _Entry) -> None:
        entry.reserved, entry.bytes_estimate = False, 0
        self._cv.notify_all()

    def _unload_locked(self, entry: _Entry, reason: str) -> None:
        """Close an idle model. Caller holds ``_cv`` and has checked ``users == 0``."""
        llama, entry.llama = entry.llama, None
        if llama is not None:
            # users == 0 under _cv means nobody holds or waits for entry.lock.
            with entry.lock:
                llama.close()
            entry.stats.evictions += 1
            log.info("unloaded model %s (%s)", entry.spec.name, reason)
        self._release_reservation(entry)

    # -- eviction ------------------------------------------------------------------------

    def evict(self, name: str) -> bool:
        """Unload ``name`` now if it is loaded and idle; pinned models too (explicit request)."""
        with self._cv:
            entry = self._entries.get(name)
            if entry is None or entry.llama is None or entry.users:
                return False
            self._unload_locked(entry, reason="requested")
            return True

    def evict_idle(self) -> list[str]:
        """Unload unpinned models idle for ``idle_timeout_s``; returns their names."""
        now = self._clock()
        evicted = []
        with self._cv:
            for entry in self._entries.values():
                if (
                    entry.llama is not None
                    and entry.users == 0
                    and not entry.spec.pinned
                    and now - entry.last_used >= self._config.idle_timeout_s
                ):
                    self._unload_locked(entry, reason="idle")
                    evicted.append(entry.spec.name)
        return evicted

    def start_reaper(self, interval_s: float | None = None) -> None:
        """Check for idle models periodically in a daemon thread."""
        if self._reaper is not None:
            return
        every = interval_s or max(0.5, min(30.0, self._config.idle_timeout_s / 4))

        def loop() -> None:
            while not self._reaper_stop.wait(every):
                try:
                    self.evict_idle()
                except Exception:  # the reaper must outlive any one bad close
                    log.exception("idle eviction failed")

        self._reaper = threading.Thread(target=loop, name="memlsp-pool-reaper", daemon=True)
        self._reaper.start()

    def close(self) -> None:
        """Unload everything idle and refuse new work; models in use close when released."""
        self._reaper_stop.set()
        with self._cv:
            self._closed = True
            deadline = time.monotonic() + 5
            while any(e.users for e in self._entries.values()) and time.monotonic() < deadline:
                self._cv.wait(timeout=0.2)
            for entry in self._entries.values():
                if entry.users == 0:
                    self._unload_locked(entry, reason="pool closed")

    # -- introspection -------------------------------------------------------------------

    def is_loaded(self, name: str) -> bool:
        with self._cv:
            entry = self._entries.get(name)
            return entry is not None and entry.llama is not None

    def stats(self) -> dict[str, Any]:
        """JSON-friendly snapshot for `memlsp/status`, `memlsp status` and metrics."""
        now = self._clock()
        with self._cv:
            models = {}
            for name, e in self._entries.items():
                models[name] = {
                    "loaded": e.llama is not None,
                    "in_use": e.users > 0,
                    "pinned": e.spec.pinned,
                    "bytes": e.bytes_estimate if e.reserved else 0,
                    "path": str(e.path) if e.path else "",
                    "idle_s": round(now - e.last_used, 1) if e.last_used else None,
                    "gpu": e.gpu,
                    "n_gpu_layers": e.n_gpu_layers,
                    "hits": e.stats.hits,
                    "misses": e.stats.misses,
                    "loads": e.stats.loads,
                    "evictions": e.stats.evictions,
                    "load_seconds": round(e.stats.load_seconds, 3),
                    "last_error": e.stats.last_error,
                }
            return {
                "budget_bytes": self.budget_bytes,
                "reserved_bytes": self._reserved_bytes(),
                "idle_timeout_s": self._config.idle_timeout_s,
                "models": models,
                "priority": self.priority.stats(),
            }
