"""Optional Prometheus metrics (`memlsp serve --metrics-port N`), off by default.

Latencies are observed as requests finish; everything else (pool, index) is read from the
session's status when scraped, so there is one source of truth. Binds to 127.0.0.1 unless told
otherwise. prometheus-client comes with our dependency tree (through MemOS) and is imported only
when metrics are switched on.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

LATENCY_BUCKETS = (0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class RequestMetrics:
    """Counts and latency histograms per feature and outcome; cheap, thread-safe, always on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(LATENCY_BUCKETS))
        self._sums: dict[str, float] = defaultdict(float)
        self._totals: dict[str, int] = defaultdict(int)

    def observe(self, feature: str, seconds: float, outcome: str = "ok") -> None:
        with self._lock:
            self._counts[(feature, outcome)] += 1
            buckets = self._buckets[feature]
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self._sums[feature] += seconds
            self._totals[feature] += 1

    def timer(self, feature: str) -> Callable[[str], None]:
        """Start timing; call the result with the outcome when the request finishes."""
        started = time.perf_counter()

        def done(outcome: str = "ok") -> None:
            self.observe(feature, time.perf_counter() - started, outcome)

        return done

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            # Nested, with identifier-like keys: JSON clients (pygls' among them) turn objects
            # into records and rename keys such as "completion/ok".
            counts: dict[str, dict[str, int]] = {}
            for (feature, outcome), n in sorted(self._counts.items()):
                counts.setdefault(feature, {})[outcome] = n
            return {
                "counts": counts,
                "latency": {
                    f: {
                        "count": self._totals[f],
                        "sum_s": round(self._sums[f], 4),
                        "buckets": dict(zip(LATENCY_BUCKETS, self._buckets[f], strict=True)),
                    }
                    for f in sorted(self._totals)
                },
            }


def start_exporter(
    port: int, host: str, metrics: RequestMetrics, status: Callable[[], dict[str, Any]]
) -> Callable[[], None]:
    """Serve /metrics on host:port; returns a function that stops it."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
    from prometheus_client.registry import Collector

    class SessionCollector(Collector):
        def collect(self) -> Iterator[Any]:
            snap = metrics.snapshot()
            requests = CounterMetricFamily(
                "memlsp_requests", "Requests by feature and outcome", labels=["feature", "outcome"]
            )
            for feature, outcomes in snap["counts"].items():
                for outcome, count in outcomes.items():
                    requests.add_metric([feature, outcome], count)
            yield requests
            latency = HistogramMetricFamily(
                "memlsp_request_seconds", "Request latency by feature", labels=["feature"]
            )
            for feature, data in snap["latency"].items():
                latency.add_metric(
                    [feature],
                    [(str(b), n) for b, n in data["buckets"].items()] + [("+Inf", data["count"])],
                    sum_value=data["sum_s"],
                )
            yield latency
            yield from _status_metrics(status())

    registry = CollectorRegistry()
    registry.register(SessionCollector())
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=2)

    return stop


def _status_metrics(status: dict[str, Any]) -> Iterator[Any]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    pool = status.get("pool") or {}
    loaded = GaugeMetricFamily("memlsp_model_loaded", "1 if the model is loaded", labels=["model"])
    model_bytes = GaugeMetricFamily(
        "memlsp_model_bytes", "Memory held by the model", labels=["model"]
    )
    loads = CounterMetricFamily("memlsp_model_loads", "Model loads", labels=["model"])
    evictions = CounterMetricFamily("memlsp_model_evictions", "Model evictions", labels=["model"])
    for model in pool.get("models", []):
        name = model["name"]
        loaded.add_metric([name], 1 if model["loaded"] else 0)
        model_bytes.add_metric([name], model["bytes"])
        loads.add_metric([name], model["loads"])
        evictions.add_metric([name], model["evictions"])
    yield from (loaded, model_bytes, loads, evictions)
    yield GaugeMetricFamily(
        "memlsp_pool_reserved_bytes",
        "Bytes reserved by loaded models",
        value=pool.get("reserved_bytes", 0),
    )
    priority = pool.get("priority") or {}
    yield CounterMetricFamily(
        "memlsp_background_paused_seconds",
        "Seconds reviews spent paused for completions and refactors",
        value=priority.get("background_paused_s", 0.0),
    )
    generator = status.get("generator") or {}
    yield CounterMetricFamily(
        "memlsp_completion_cancellations",
        "Cancelled completions",
        value=generator.get("cancelled", 0),
    )
    memory = status.get("memory")
    if isinstance(memory, dict):
        chunks = GaugeMetricFamily(
            "memlsp_index_chunks", "Chunks in the workspace index", labels=["folder"]
        )
        lag = GaugeMetricFamily(
            "memlsp_index_lag_files", "Files waiting to be indexed", labels=["folder"]
        )
        for folder in memory.get("folders", []):
            chunks.add_metric([str(folder.get("root", ""))], folder.get("chunks", 0) or 0)
            lag.add_metric([str(folder.get("root", ""))], folder.get("lag", 0) or 0)
        yield from (chunks, lag)
