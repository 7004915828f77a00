"""Human-readable rendering of a server's status (for `memlsp status`)."""

from __future__ import annotations

from typing import Any


def _mb(value: Any) -> str:
    return f"{int(value or 0) / 2**20:,.0f} MB"


def render_status(reply: dict[str, Any]) -> str:
    if "error" in reply:
        return f"{reply.get('socket', '?')}: {reply['error']}"
    status = reply.get("status", {})
    lines = [
        f"memlsp {status.get('version', '?')} (pid {reply.get('pid')}) "
        f"workspace: {status.get('workspace') or '-'}"
    ]
    pool = status.get("pool") or {}
    lines.append(f"  pool: {_mb(pool.get('reserved_bytes'))} of {_mb(pool.get('budget_bytes'))}")
    for model in pool.get("models", []):
        state = "loaded" if model.get("loaded") else "unloaded"
        lines.append(
            f"    {model['name']:24} {state:8} {_mb(model.get('bytes')):>9}  hits {model['hits']}"
            f"  misses {model['misses']}  loads {model['loads']}  evictions {model['evictions']}"
            + (f"  error: {model['last_error']}" if model.get("last_error") else "")
        )
    gen = status.get("generator")
    if gen:
        lines.append(
            f"  completions: model {gen['model']}, {gen['requests']} requests, "
            f"{gen['model_calls']} model calls, {gen['cache_hits']} cache hits, "
            f"{gen['typed_through']} typed-through, {gen['cancelled']} cancelled"
        )
    for row in status.get("acceptance") or []:
        lines.append(
            f"  accepted ({row['language']}, {row['model']}): {row['accepted']} full + "
            f"{row['partially_accepted']} partial of {row['shown']} shown"
        )
    lasting = status.get("statistics")
    if isinstance(lasting, dict) and lasting.get("enabled"):
        state = lasting.get("state", "nothing recorded yet")
        lines.append(f"  statistics: {state}, {lasting.get('file')} (`memlsp stats`)")
    memory = status.get("memory")
    if isinstance(memory, dict):
        for folder in memory.get("folders", []):
            lines.append(
                f"  memory {folder.get('root')}: {folder.get('role')}, "
                f"{folder.get('files_indexed', 0)} files, {folder.get('chunks', 0)} chunks, "
                f"lag {folder.get('lag', 0)}"
                + (f", last error: {folder['last_error']}" if folder.get("last_error") else "")
            )
    for issue in status.get("config_issues") or []:
        lines.append(f"  config: {issue}")
    return "\n".join(lines)
