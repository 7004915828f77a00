"""Keep fd 1 for JSON-RPC only.

One stray byte on stdout corrupts the stream for good. Python prints, C libraries writing to fd 1
and llama-cpp-python's fd juggling during model loads are all possible, so the protocol gets a
private duplicate of fd 1 and fd 1 itself becomes stderr before anything else is imported.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import BinaryIO

log = logging.getLogger(__name__)


def claim_stdout() -> BinaryIO:
    """Return a binary stream on the real stdout; from now on fd 1 and sys.stdout go to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)


class ResyncingStdin:
    """stdin for pygls's reader, finding the next frame after a broken one.

    pygls reads headers line by line and only accepts a line that is exactly
    "Content-Length: N\\r\\n". After a frame whose Content-Length was too short, the rest of its
    body has no line break, so it glues to the next frame's header line, that body glues to the
    one after, and every later message is lost: the server is deaf for good. Dropping whatever
    precedes "Content-Length:" on a line resynchronises on the next frame.
    """

    _HEADER = b"Content-Length:"

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def readline(self) -> bytes:
        line = self._stream.readline()
        start = line.find(self._HEADER)
        if start > 0:
            log.warning("dropped %d bytes before a frame header", start)
            return line[start:]
        return line

    def read(self, size: int) -> bytes:
        return self._stream.read(size)
