"""Bounded reading of JSON-RPC frames, in front of pygls's read loop.

pygls reads a frame by trusting its header: ``Content-Length: 1000000000000`` makes it ask the
stream for a terabyte at once (MemoryError: the server exits), a header line without a line break
is read whole however long it is, and a frame whose header it cannot read glues its body to the
next header, so every later message is lost. The parser here keeps memory bounded (headers to
``MAX_HEADER_LINE``, bodies to a configured size), resynchronises on the next ``Content-Length``
after anything it cannot read, and hands pygls only well-formed frames. A frame it refuses becomes
a small ``UNREADABLE_METHOD`` notification, so that the protocol (rpc.py) answers it on the event
loop like any other message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

UNREADABLE_METHOD = "$/memlsp/unreadableFrame"
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
MAX_HEADER_LINE = 8192  # real headers are a few dozen bytes
SNIFF_BYTES = 4096  # where a refused body's request id is looked for
CHUNK = 1 << 16
_HEADER_TAIL = 64  # longer than any "Content-Length: N" line

_HEADER_START = re.compile(rb"content-length:", re.IGNORECASE)
_LENGTH_HEADER = re.compile(rb"content-length:[ \t]*([^ \t]*)[ \t]*", re.IGNORECASE)
# A frame header inside a body being skipped: valid JSON can never contain it (a raw CR/LF may
# only be whitespace between tokens, and the letters outside a string are not JSON).
_HEADER_IN_BODY = re.compile(rb"Content-Length:[ \t]*\d+[ \t]*\r?\n", re.IGNORECASE)
# The id of a request whose body is refused, when it comes before "params" (as clients write it).
_LEADING_ID = re.compile(
    rb'\A\s*\{(?:\s*"(?:jsonrpc|method)"\s*:\s*"[^"\\]*"\s*,)*'
    rb'\s*"id"\s*:\s*(-?\d{1,18}|"[^"\\]{0,256}")'
)


@dataclass(frozen=True)
class Unreadable:
    """A frame not passed on; the protocol answers it with this error."""

    code: int
    message: str
    request_id: int | str | None = None

    def as_body(self) -> bytes:
        params = {"code": self.code, "message": self.message, "id": self.request_id}
        message = {"jsonrpc": "2.0", "method": UNREADABLE_METHOD, "params": params}
        return json.dumps(message).encode()


def _leading_id(prefix: bytes) -> int | str | None:
    match = _LEADING_ID.match(prefix)
    if match is None:
        return None
    value = json.loads(match.group(1))
    return value if isinstance(value, int | str) else None


class FrameParser:
    """Bytes in, frame bodies (or ``Unreadable``) out; holds at most one body of ``max_body()``."""

    def __init__(self, max_body: Callable[[], int]) -> None:
        self._max_body = max_body
        self._buffer = bytearray()
        self.frames: deque[bytes | Unreadable] = deque()
        self._in_header = False  # a Content-Length line was seen: the rest are this frame's
        self._length: int | None = None
        self._bad_length: bytes | None = None
        self._body: bytearray | None = None  # the body being read
        self._left = 0  # bytes of it still to come
        self._skipping = False  # the body is over the limit: dropped as it comes
        self._sniffed = bytearray()
        self._skipped_length = 0
        self._dropped = 0  # garbage bytes since the last frame header

    def feed(self, data: bytes) -> None:
        self._buffer += data
        progress = True
        while self._buffer and progress:
            if self._body is not None:
                progress = self._read_body()
            elif self._skipping:
                progress = self._skip_body()
            else:
                progress = self._read_header_line()

    # -- headers ----------------------------------------------------------------------------

    def _read_header_line(self) -> bool:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > MAX_HEADER_LINE:
                self._drop_long_line()
            return False
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        self._header_line(line.rstrip(b"\r\n"))
        return True

    def _drop_long_line(self) -> None:
        """Garbage without a line break: keep only what may start the next header."""
        keep = len(b"content-length:") - 1
        start = _HEADER_START.search(self._buffer, len(self._buffer) - MAX_HEADER_LINE // 2)
        cut = start.start() if start else len(self._buffer) - keep
        self._dropped += cut
        del self._buffer[:cut]
        self._in_header = False

    def _header_line(self, line: bytes) -> None:
        start = _HEADER_START.search(line)
        if start is not None:
            self._dropped += start.start()
            if self._dropped:  # once per run of garbage, not per line
                log.warning("dropped %d bytes before a frame header", self._dropped)
                self._dropped = 0
            self._start_header(line[start.start() :])
        elif not line.strip():
            if self._in_header:
                self._end_header()
            # else: an empty line between frames, harmless
        elif not self._in_header:
            self._dropped += len(line) + 1
        # else: another header of this frame (Content-Type): nothing we need

    def _start_header(self, line: bytes) -> None:
        self._in_header = True
        self._length, self._bad_length = None, None
        match = _LENGTH_HEADER.fullmatch(line)
        value = match.group(1) if match else line
        if match and value.isdigit() and len(value) <= 18:
            self._length = int(value)
        else:
            self._bad_length = value[:40]

    def _end_header(self) -> None:
        self._in_header = False
        length, bad = self._length, self._bad_length
        self._length, self._bad_length = None, None
        if length is None:  # the body cannot be found: its bytes resync like any garbage
            detail = f"bad Content-Length {bad!r}" if bad is not None else "no Content-Length"
            self.frames.append(Unreadable(PARSE_ERROR, f"Parse error: {detail}"))
            return
        if length == 0:
            self.frames.append(Unreadable(PARSE_ERROR, "Parse error: empty message"))
            return
        if length > self._max_body():
            self._skipping, self._left, self._skipped_length = True, length, length
            self._sniffed = bytearray()
            return
        self._body, self._left = bytearray(), length

    # -- bodies -----------------------------------------------------------------------------

    def _read_body(self) -> bool:
        assert self._body is not None
        taken = self._buffer[: self._left]
        del self._buffer[: self._left]
        self._body += taken
        self._left -= len(taken)
        if self._left == 0:
            self.frames.append(bytes(self._body))
            self._body = None
        return True

    def _skip_body(self) -> bool:
        window = self._buffer[: self._left]
        resync = _HEADER_IN_BODY.search(window)
        if resync is not None:  # the client sent less than it announced: the next frame is here
            self._drop(resync.start())
            self._refuse()
            return True
        if len(window) == self._left:
            self._drop(self._left)
            self._refuse()
            return True
        # Keep a tail that may be the start of a header completed by the next read.
        self._drop(max(0, len(window) - _HEADER_TAIL))
        return False

    def _drop(self, size: int) -> None:
        wanted = SNIFF_BYTES - len(self._sniffed)
        if wanted > 0:
            self._sniffed += self._buffer[: min(size, wanted)]
        del self._buffer[:size]
        self._left -= size

    def _refuse(self) -> None:
        self._skipping = False
        limit = self._max_body()
        message = (
            f"message of {self._skipped_length} bytes is larger than server.max_message_bytes "
            f"({limit}); it was not read"
        )
        log.warning("%s", message)
        self.frames.append(Unreadable(INVALID_REQUEST, message, _leading_id(bytes(self._sniffed))))
        self._sniffed = bytearray()


class _CanonicalFrames:
    """What pygls's loop reads: "Content-Length: N" and an empty line, then the body."""

    def __init__(self, max_body: Callable[[], int]) -> None:
        self._parser = FrameParser(max_body)
        self._lines: deque[bytes] = deque()
        self._body = b""

    def _next_line(self) -> bytes | None:
        if self._lines:
            return self._lines.popleft()
        if not self._parser.frames:
            return None
        frame = self._parser.frames.popleft()
        self._body = frame.as_body() if isinstance(frame, Unreadable) else frame
        self._lines.append(b"\r\n")
        return b"Content-Length: %d\r\n" % len(self._body)

    def _take_body(self) -> bytes:
        body, self._body = self._body, b""  # not kept: a big one is freed once handled
        return body


class BoundedStdin(_CanonicalFrames):
    """stdin for pygls's ``start_io`` (which calls it from a worker thread)."""

    def __init__(self, stream: BinaryIO, max_body: Callable[[], int]) -> None:
        super().__init__(max_body)
        self._stream = stream

    def readline(self) -> bytes:
        while (line := self._next_line()) is None:
            read1 = getattr(self._stream, "read1", None)
            chunk = read1(CHUNK) if read1 is not None else self._stream.read(1)
            if not chunk:
                return b""
            self._parser.feed(chunk)
        return line

    def read(self, size: int) -> bytes:
        return self._take_body()


class BoundedStreamReader(_CanonicalFrames):
    """A TCP connection's ``asyncio.StreamReader`` as pygls's ``run_async`` reads it."""

    def __init__(self, stream: asyncio.StreamReader, max_body: Callable[[], int]) -> None:
        super().__init__(max_body)
        self._stream = stream

    async def readline(self) -> bytes:
        while (line := self._next_line()) is None:
            chunk = await self._stream.read(CHUNK)
            if not chunk:
                return b""
            self._parser.feed(chunk)
        return line

    async def readexactly(self, size: int) -> bytes:
        return self._take_body()
