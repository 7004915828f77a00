"""Credential values out of what a model reads, and never written back from what it answers.

Every prompt path (the FIM prompt's prefix, suffix and context chunks; every chat message of a
review or a refactor) passes its text through :func:`mask_credentials`, the masking the index
uses: the name stays (it tells the model what the code does), the value becomes ``***``. Lines
are never added or removed, so row numbers in prompts stay right.

A model rewriting masked code copies the ``***`` back. :func:`restore_credentials` puts the
original line back where the model kept a masked line as it was, and refuses (None) an answer
that would still write a mask the original line did not have: an edit never replaces a real
credential with ``***``.
"""

from __future__ import annotations

from typing import Final

from memlsp.memory.filters import mask_secrets

__all__ = ["MASK", "mask_credentials", "restore_credentials"]

MASK: Final = "***"


def mask_credentials(text: str) -> str:
    """``text`` with credential values replaced by ``***`` (see ``filters.mask_secrets``)."""
    return mask_secrets(text)


def restore_credentials(original: str, answer: str) -> str | None:
    """``answer`` (a model's rewrite of some of ``original``, which it saw masked) with masked
    lines restored; None if a mask would remain on a line the original does not have."""
    masked = mask_secrets(original)
    originals: dict[str, str | None] = {}  # masked line -> original line (None: ambiguous)
    if masked != original:
        for before, after in zip(original.split("\n"), masked.split("\n"), strict=True):
            if before != after:
                key, value = after.strip(), before.strip()
                originals[key] = value if originals.get(key, value) == value else None
    known = {line.strip() for line in original.split("\n")}
    lines = []
    for line in answer.split("\n"):
        if MASK in line:
            body = line.strip()
            replacement = originals.get(body)
            if replacement is not None:
                start = line.index(body)
                line = line[:start] + replacement + line[start + len(body) :]
            elif body not in known:
                return None
        lines.append(line)
    return "\n".join(lines)
