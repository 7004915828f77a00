"""Workspace memory benchmark on a real codebase: indexing, restart, incremental updates, search,
and Qdrant Edge against qdrant-client's local mode on the same chunks.

Prints JSON. Usage:
    .venv/bin/python tests/benchmarks/bench_index.py [--package networkx] [--limit-files 60]
        [--queries 40] [--embed-threads 1] [--no-compare]

The codebase is an installed pure-Python package from the venv (networkx by default: 580 files,
8 MB), copied into a temporary folder. Everything runs in one process, one phase after another,
with the real store, embedder and indexer; figures of one run are comparable with each other.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts tests/ on the import path)
import psutil
from embedding_pool import one_thread_llama

from memlsp.config import MemoryConfig, load_config
from memlsp.memory.embedder import Embedder
from memlsp.memory.filters import FileFilter
from memlsp.memory.indexer import Indexer
from memlsp.memory.lexical import LexicalIndex, symbol_leaf
from memlsp.memory.manifest import Manifest
from memlsp.memory.retrieval import HybridSearch, query_text, rrf
from memlsp.memory.store import FILE_PATH, MemoryStore, load_memos
from memlsp.models import ModelPool

# BM25 weights tried in the fusion (1.0: plain RRF; the default is retrieval.LEXICAL_WEIGHT).
LEXICAL_WEIGHTS = (1.0, 1.5, 2.0, 3.0)


def rss_mb() -> float:
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def folder_mb(path: Path) -> dict[str, float]:
    """Apparent size, and what is allocated on disk (Edge preallocates sparse segment files)."""
    files = [f.stat() for f in path.rglob("*") if f.is_file()]
    return {
        "apparent_mb": round(sum(s.st_size for s in files) / 2**20, 2),
        "on_disk_mb": round(sum(s.st_blocks * 512 for s in files) / 2**20, 2),
    }


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.5), "p95_ms": at(0.95), "max_ms": round(ordered[-1] * 1000, 2)}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def copy_codebase(package: str, limit: int, dest: Path) -> dict[str, Any]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {package!r} is not installed in this venv")
    source = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(p for p in source.rglob("*.py") if "__pycache__" not in p.parts)
    if limit:
        files = files[:limit]
    for path in files:
        target = dest / package / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return {
        "package": package,
        "source": str(source),
        "files": len(files),
        "mb": round(sum(p.stat().st_size for p in files) / 2**20, 2),
    }


def make_pool(embed_threads: int) -> ModelPool:
    models = load_config(None, user_file=Path("/nonexistent.yaml")).config.models
    if not embed_threads:
        return ModelPool(models)
    models["minilm-l6-v2"] = dataclasses.replace(models["minilm-l6-v2"], n_threads=embed_threads)
    return ModelPool(models, llama_factory=one_thread_llama)  # the memory tests' factory


# -- phases ----------------------------------------------------------------------------------------


def open_indexer(root: Path, config: MemoryConfig, embedder: Embedder) -> tuple[Any, ...]:
    store = MemoryStore(root, config, embedder)
    _, open_s = timed(store.open)
    indexer = Indexer(
        root,
        config,
        store,
        FileFilter(root, max_file_bytes=config.max_file_kb * 1024),
    )
    return store, indexer, open_s


def full_index(root: Path, config: MemoryConfig, embedder: Embedder) -> dict[str, Any]:
    rss_before = rss_mb()
    store, indexer, open_s = open_indexer(root, config, embedder)
    texts = embedder.texts_embedded
    _, index_s = timed(lambda: (indexer.start(), indexer.wait_idle(None)))
    status = indexer.status()
    chunks = status["chunks"]
    result = {
        "store_open_s": round(open_s, 3),
        "index_s": round(index_s, 2),
        "files": status["files_indexed"],
        "chunks": chunks,
        "embedded": embedder.texts_embedded - texts,
        "skipped": status["skipped"],
        "failed": status["files_failed"],
        "files_per_s": round(status["files_indexed"] / index_s, 2),
        "chunks_per_s": round(chunks / index_s, 2),
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_mb(),
        "peak_rss_mb": peak_rss_mb(),
        "store_mb": folder_mb(store.path),
        "manifest_kb": round(indexer.manifest.path.stat().st_size / 1024, 1),
    }
    indexer.close()
    store.close()
    return result


def restart(root: Path, config: MemoryConfig, embedder: Embedder) -> dict[str, Any]:
    """Re-open: the store, one scan of it (the lexical index is rebuilt from the stored
    texts), then a full pass in which every file is unchanged."""
    store, indexer, open_s = open_indexer(root, config, embedder)
    scanned, scan_s = timed(lambda: store.stored_chunks())
    lexical = LexicalIndex()
    _, lexical_s = timed(
        lambda: lexical.add_many((c.id, c.path, c.symbol, c.text) for c in scanned)
    )
    _, manifest_s = timed(lambda: Manifest.load(indexer.manifest.path, store.collection))
    texts = embedder.texts_embedded
    _, pass_s = timed(lambda: (indexer.start(), indexer.wait_idle(None)))
    result = {
        "store_open_s": round(open_s, 3),
        "scan_store_s": round(scan_s, 3),
        "lexical_rebuild_s": round(lexical_s, 3),
        "manifest_load_s": round(manifest_s, 3),
        "load_and_full_pass_s": round(pass_s, 3),
        "embedded": embedder.texts_embedded - texts,
    }
    return {"result": result, "store": store, "indexer": indexer}


def incremental(indexer: Indexer, embedder: Embedder, count: int) -> dict[str, Any]:
    """Append a function to a file, as a save would, and wait until it is searchable."""
    rng = random.Random(7)
    files = rng.sample(indexer.manifest.paths(), min(count, len(indexer.manifest)))
    times, embedded = [], []
    for n, rel in enumerate(files):
        path = indexer.root / rel
        path.write_text(
            path.read_text() + f"\n\ndef bench_added_{n}(value):\n    return value + {n}\n"
        )
        texts = embedder.texts_embedded
        _, took = timed(lambda path=path: (indexer.update([path]), indexer.wait_idle(None)))
        times.append(took)
        embedded.append(embedder.texts_embedded - texts)
    return {
        "files": len(files),
        "seconds": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "embedded_per_update": embedded,
        "goal_s": 1.0,
    }


def leaf_name(symbol: str) -> str:
    leaf = symbol_leaf(symbol)
    return "" if leaf.startswith("<") else leaf


def search_bench(store: MemoryStore, indexer: Indexer, queries: int) -> dict[str, Any]:
    rng = random.Random(11)
    chunks = store.stored_chunks()
    by_id = {c.id: c for c in chunks}
    # Names defined once in the codebase (a name defined twice has no single right answer).
    defined = Counter(leaf_name(c.symbol) for c in chunks)
    named = [
        (c.id, leaf_name(c.symbol))
        for c in chunks
        if defined[leaf_name(c.symbol)] == 1 and leaf_name(c.symbol)[:1].isalpha()
    ]
    name_queries = rng.sample(named, min(queries, len(named)))
    # The provider's real workload: the code before a cursor somewhere in the codebase.
    cursor_queries = []
    for cid in rng.sample(sorted(by_id), min(queries, len(by_id))):
        chunk = by_id[cid]
        lines = chunk.text.split("\n")
        cut = rng.randrange(1, max(2, len(lines)))
        cursor_queries.append((chunk.path, query_text("\n".join(lines[:cut]))))
    hybrid = HybridSearch(store, indexer.lexical)
    embedder = store._embedder
    db: Any = store._open_db()

    totals, embeds, vectors, lexicals = [], [], [], []
    for path, query in cursor_queries:
        _, took = timed(lambda q=query, p=path: hybrid.search(q, 8, p))
        totals.append(took)
        vector, took = timed(lambda q=query: embedder.embed([q])[0])
        embeds.append(took)
        selector = {"must_not": {FILE_PATH: path}}
        _, took = timed(lambda v=vector, s=selector: db.search(v, 20, s))
        vectors.append(took)
        _, took = timed(lambda q=query, p=path: indexer.lexical.search(q, 20, p))
        lexicals.append(took)

    # hit@1, hit@5 per ranking; fused variants weight BM25's ranking by LEXICAL_WEIGHTS.
    found: dict[str, list[int]] = {}
    for cid, name in name_queries:
        vector_ids = [h.record.id for h in store.search_vectors(name, 20)]
        lexical_ids = [c for c, _ in indexer.lexical.search(name, 20)]
        rankings = {"vector": vector_ids, "lexical": lexical_ids}
        for weight in LEXICAL_WEIGHTS:
            fused = rrf([vector_ids, lexical_ids], weights=(1.0, weight))
            rankings[f"rrf_lexical_x{weight}"] = [key for key, _ in fused]
        for kind, ids in rankings.items():
            hits = found.setdefault(kind, [0, 0])
            hits[0] += ids[:1] == [cid]
            hits[1] += cid in ids[:5]
    n = max(1, len(name_queries))
    return {
        "cursor_queries": len(cursor_queries),
        "hybrid_total": percentiles(totals),
        "embed_query": percentiles(embeds),
        "vector_search_filtered": percentiles(vectors),
        "lexical_search": percentiles(lexicals),
        "store_and_fusion_p50_ms": round(
            statistics.median(t - e for t, e in zip(totals, embeds, strict=True)) * 1000, 2
        ),
        "goal_ms": 20,
        "name_queries": len(name_queries),
        "find_function_by_name": {
            kind: {"hit@1": round(h1 / n, 3), "hit@5": round(h5 / n, 3)}
            for kind, (h1, h5) in found.items()
        },
    }


def time_searches(db: Any, probes: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Search latency per probe vector: plain, and leaving out the probe's own file."""
    plain, filtered = [], []
    for probe in probes:
        started = time.perf_counter()
        db.search(probe["vector"], 10)
        plain.append(time.perf_counter() - started)
        selector = {"must_not": {FILE_PATH: probe["payload"]["metadata"]["file_path"]}}
        started = time.perf_counter()
        db.search(probe["vector"], 10, selector)
        filtered.append(time.perf_counter() - started)
    return plain, filtered


def compare_backends(store: MemoryStore, folder: Path, queries: int) -> dict[str, Any]:
    """The same points (vectors and payloads from the Edge store) into a fresh Edge shard and
    into qdrant-client's local mode (``QdrantClient(path=...)``), through the same MemOS
    vector-store interface."""
    load_memos()
    from memos.configs.vec_db import VectorDBConfigFactory
    from memos.vec_dbs.factory import VecDBFactory

    source: Any = store._open_db()
    points = [
        {"id": i.id, "vector": i.vector, "payload": i.payload}
        for i in source.scroll(None, None, True)
    ]
    rng = random.Random(5)
    probes = rng.sample(points, min(queries, len(points)))
    result: dict[str, Any] = {"points": len(points)}
    for backend in ("qdrant_edge", "qdrant_server"):
        config = {
            "collection_name": "bench",
            "vector_dimension": len(points[0]["vector"]),
            "distance_metric": "cosine",
            "path": str(folder / backend),
        }

        def make(config: dict[str, Any] = config, backend: str = backend) -> Any:
            factory = VectorDBConfigFactory(backend=backend, config=config)
            return VecDBFactory.from_config(factory)

        rss_before = rss_mb()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode: "payload indexes have no effect"
            db, create_s = timed(make)
            if backend == "qdrant_server":
                db.ensure_payload_indexes([FILE_PATH])
            started = time.perf_counter()
            for start in range(0, len(points), 256):
                db.add(points[start : start + 256])
            add_s = time.perf_counter() - started
            plain, filtered = time_searches(db, probes)
            count = db.count()
            db.close()
            again, reopen_s = timed(make)
            reopened_count = again.count()
            again.close()
        result["edge" if backend == "qdrant_edge" else "qdrant_client_local"] = {
            "create_s": round(create_s, 3),
            "add_points_per_s": round(len(points) / add_s, 1),
            "search": percentiles(plain),
            "search_filtered": percentiles(filtered),
            "reopen_s": round(reopen_s, 3),
            "count_ok": count == reopened_count == len(points),
            "disk_mb": folder_mb(folder / backend),
            "rss_growth_mb": round(rss_mb() - rss_before, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", default="networkx")
    parser.add_argument("--limit-files", type=int, default=0, help="0: every .py file")
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument(
        "--embed-threads", type=int, default=1, help="0: the pool's default (one per core)"
    )
    parser.add_argument("--no-compare", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = {"argv": sys.argv[1:], "cpus": psutil.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="memlsp-bench-") as tmp:
        folder = Path(tmp)
        root = folder / "ws"
        results["codebase"] = copy_codebase(args.package, args.limit_files, root)
        config = MemoryConfig(path=str(folder / "store"))
        pool = make_pool(args.embed_threads)
        embedder = Embedder(pool)
        _, import_s = timed(load_memos)
        results["memos_import_s"] = round(import_s, 2)
        results["rss_after_import_mb"] = rss_mb()
        results["full_index"] = full_index(root, config, embedder)
        again = restart(root, config, embedder)
        results["restart"] = again["result"]
        store, indexer = again["store"], again["indexer"]
        results["search"] = search_bench(store, indexer, args.queries)
        results["incremental"] = incremental(indexer, embedder, args.updates)
        if not args.no_compare:
            results["backends"] = compare_backends(store, folder / "compare", args.queries)
        indexer.close()
        store.close()
        pool.close()
    results["peak_rss_mb"] = peak_rss_mb()
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
