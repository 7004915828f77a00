"""Retrieval alone for the cross-file tasks (bench_crossfile.py --retrieval-only): no LSP, no
completion model. Opens (indexing if needed) the workspace store in-process, then asks, per
task, what the memory would put in the prompt: the hybrid search's hits for the cursor's query,
and what the context provider renders within the generator's character budget.

This is where "memory did not help" is taken apart: was the defining file found at all (recall),
found but not rendered (budget), or rendered without the defining chunk?
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crossfile_tasks import Task

from memlsp.base.context import ContextRequest
from memlsp.config import MemoryConfig, load_config
from memlsp.memory.embedder import Embedder
from memlsp.memory.filters import FileFilter
from memlsp.memory.indexer import Indexer
from memlsp.memory.records import Hit
from memlsp.memory.retrieval import HybridSearch, MemoryContextProvider, imported_names, query_text
from memlsp.memory.store import MemoryStore
from memlsp.models import ModelPool


def defines(text: str, name: str) -> bool:
    """Whether a chunk's text holds the top-level definition of ``name``."""
    return any(
        line.startswith((f"def {name}(", f"class {name}(", f"class {name}:", f"{name} ="))
        for line in text.split("\n")
    )


def probe(root: Path, store_dir: Path, tasks: list[Task], imports: bool = True) -> dict[str, Any]:
    """``imports``: look up the definitions of imported names (off: the hybrid search alone)."""
    config = load_config(None, user_file=Path("/nonexistent.yaml")).config
    memory = MemoryConfig(path=str(store_dir))
    budget_chars = config.agents.generator.context_tokens * 3  # as the generator asks
    pool = ModelPool(config.models)
    store = MemoryStore(root, memory, Embedder(pool))
    store.open()
    file_filter = FileFilter(root, max_file_bytes=memory.max_file_kb * 1024)
    indexer = Indexer(root, memory, store, file_filter)
    started = time.monotonic()
    indexer.start()
    indexer.wait_idle(None)
    index_s = time.monotonic() - started
    search = HybridSearch(store, indexer.lexical, lexical_weight=memory.lexical_weight)

    def find(query: str, k: int, path: str | None, names: Sequence[str]) -> list[Hit]:
        return search.search(query, k, path, names if imports else ())

    provider = MemoryContextProvider(find, k=memory.search_k, budget_s=600)
    rows = []
    for task in tasks:
        names = imported_names(task.prefix)
        hits = find(query_text(task.prefix), memory.search_k, task.path, names)
        file_ranks = [n for n, h in enumerate(hits) if h.record.path == task.defined_in]
        def_ranks = [
            n
            for n, h in enumerate(hits)
            if h.record.path == task.defined_in and defines(h.record.text, task.name)
        ]
        request = ContextRequest(task.path, task.prefix, task.suffix, "python")
        chunks = provider.context_for(request, budget_chars)
        rows.append(
            {
                "file_rank": file_ranks[0] if file_ranks else None,
                "definition_rank": def_ranks[0] if def_ranks else None,
                "rendered_file": any(c.path == task.defined_in for c in chunks),
                "rendered_definition": any(
                    c.path == task.defined_in and defines(c.text, task.name) for c in chunks
                ),
                "rendered_chunks": len(chunks),
                "rendered_chars": sum(len(c.text) for c in chunks),
                "hit_chars": [len(h.record.text) for h in hits],
            }
        )
    provider.close()
    indexer.close()
    store.close()
    pool.close()
    n = max(1, len(rows))

    def share(key: str) -> float:
        return round(sum(bool(r[key]) for r in rows) / n, 3)

    return {
        "imported_names": imports,
        "index_s": round(index_s, 1),
        "k": memory.search_k,
        "budget_chars": budget_chars,
        "defining_file_in_hits": round(sum(r["file_rank"] is not None for r in rows) / n, 3),
        "definition_in_hits": round(sum(r["definition_rank"] is not None for r in rows) / n, 3),
        "rendered_defining_file": share("rendered_file"),
        "rendered_definition": share("rendered_definition"),
        "rendered_chunks_mean": round(sum(r["rendered_chunks"] for r in rows) / n, 2),
        "hits_longer_than_budget": round(
            sum(sum(c > budget_chars for c in r["hit_chars"]) for r in rows)
            / max(1, sum(len(r["hit_chars"]) for r in rows)),
            3,
        ),
        "rows": rows,
    }
