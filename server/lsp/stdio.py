"""Keep fd 1 for JSON-RPC only.

One stray byte on stdout corrupts the stream for good. Python prints, C libraries writing to fd 1
and llama-cpp-python's fd juggling during model loads are all possible, so the protocol gets a
private duplicate of fd 1 and fd 1 itself becomes stderr before anything else is imported.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO


def claim_stdout() -> BinaryIO:
    """Return a binary stream on the real stdout; from now on fd 1 and sys.stdout go to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)
