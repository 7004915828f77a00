"""Property-based fuzzing of text synchronisation through the real server over stdio.

Random didOpen/didChange sequences (incremental changes with random ranges touching CRLF, lone CR,
emoji, characters str.splitlines() breaks at, the end of the document, positions past the end of
lines) are checked against the reference model in protocol_fuzzing.py after every notification,
using the MEMLSP_TEST_HOOKS request; code action and inline completion responses are checked
against the lsprotocol types. One server per encoding; tests/benchmarks/bench_fuzz.py runs many
more examples.

Hostile input on its own server: broken frames (wrong, huge, negative, junk or missing
Content-Length, headers and bodies cut across writes, garbage between frames) and JSON-RPC
envelopes (batches, scalars, wrong or missing keys of any type, random JSON); after each example
the server must still be running and answer a well-formed request, with no error popup.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_fuzzing import FUZZ_OPTIONS, RawServer, fuzz_document, hostile_bytes, still_answers

FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,  # no .hypothesis folder in the repository
    suppress_health_check=list(HealthCheck),
)


class FuzzSession:
    def __init__(self, root: Path, encoding: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.root = root
        self.encoding = encoding
        self.server = self.run(RawServer.start(root / "cfg"))
        encodings = None if encoding == "utf-16" else [encoding]
        reply = self.run(self.server.initialize(root, encodings=encodings, **FUZZ_OPTIONS))
        negotiated = reply["result"]["capabilities"].get("positionEncoding", "utf-16")
        assert negotiated == encoding
        self.names = itertools.count()

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    def fuzz(self, data: Any, *, model_calls: bool) -> int:
        uri = (self.root / f"doc{next(self.names)}.py").as_uri()
        return int(
            self.run(fuzz_document(self.server, data, uri, self.encoding, model_calls=model_calls))
        )

    def close(self) -> int:
        code = int(self.run(self.server.close()))
        self.loop.close()
        return code


def _session(tmp_path_factory: pytest.TempPathFactory, encoding: str) -> Iterator[FuzzSession]:
    session = FuzzSession(tmp_path_factory.mktemp(f"fuzz-{encoding}"), encoding)
    yield session
    assert not session.server.unframed, session.server.unframed[:3]
    assert session.close() == 0


@pytest.fixture(scope="module")
def utf16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzSession]:
    yield from _session(tmp_path_factory, "utf-16")


@pytest.fixture(scope="module")
def utf8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzSession]:
    yield from _session(tmp_path_factory, "utf-8")


def test_text_sync_matches_the_reference_model_utf16(utf16: FuzzSession) -> None:
    checks = []

    @FUZZ_SETTINGS
    @given(st.data())
    def case(data: Any) -> None:
        checks.append(utf16.fuzz(data, model_calls=True))

    case()
    assert len(checks) >= 20 and sum(checks) >= len(checks)  # it really ran


def test_text_sync_matches_the_reference_model_utf8(utf8: FuzzSession) -> None:
    checks = []

    @settings(FUZZ_SETTINGS, max_examples=20)
    @given(st.data())
    def case(data: Any) -> None:
        checks.append(utf8.fuzz(data, model_calls=False))

    case()
    assert len(checks) >= 10 and sum(checks) >= len(checks)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzSession]:
    yield from _session(tmp_path_factory, "utf-16")


def _write_hostile(session: FuzzSession, data: Any) -> None:
    async def write() -> None:
        for piece in hostile_bytes(data):
            await session.server.write(piece)
            await asyncio.sleep(0)
        await still_answers(session.server)

    session.run(write())


def test_hostile_frames_and_envelopes_never_stop_the_server(hostile: FuzzSession) -> None:
    examples = []

    @settings(FUZZ_SETTINGS, max_examples=150)
    @given(st.data())
    def case(data: Any) -> None:
        _write_hostile(hostile, data)
        examples.append(1)

    case()
    popups = [m for m in hostile.server.notifications if m["method"] == "window/showMessage"]
    assert not popups, popups[:3]
    assert len(examples) >= 100  # it really ran
    print(f"hostile examples: {len(examples)}")  # the count docs/reliability.md cites (-s)
