"""JSON-RPC 2.0 and the LSP lifecycle, enforced where messages enter (not per handler).

pygls 2.1.1 leaves many messages unanswered, and the client waits forever:
- a request whose params do not fit the method's lsprotocol type fails while pygls structures it,
  before dispatch; so does one that omits params (JSON-RPC allows it);
- a batch, a bare scalar, a missing or wrong ``jsonrpc``, an object or array id: JSON-RPC wants
  InvalidRequest (-32600) with the id, or null where there is none; invalid or too deeply nested
  JSON wants ParseError (-32700) with id null;
- the lifecycle: before ``initialize`` a request gets ServerNotInitialized (-32002) and a
  notification is dropped (``exit`` excepted); ``initialize`` is accepted once; after
  ``shutdown`` a request gets InvalidRequest and only ``exit`` is handled; ``exit`` ends the
  process with 0 after ``shutdown`` and 1 otherwise.
pygls's default for errors in its read loop is a window/showMessage popup "Error in server" in
the user's editor; a log line is enough once the client got its answer.

pygls structures messages in ``json.loads``'s object_hook, which sees every nested object (a
params object with an "id" and a "method" would be taken for a message) and never the whole
message; here the hook keeps plain dicts and ``handle_message`` checks and structures the
top-level message.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcParseError
from pygls.protocol import LanguageServerProtocol

from memlsp.server.lsp.framing import INVALID_REQUEST, UNREADABLE_METHOD

log = logging.getLogger(__name__)

SERVER_NOT_INITIALIZED = -32002


def error_response(request_id: Any, code: int, message: str) -> dict[str, Any]:
    """A plain dict, so that a null id is written out (lsprotocol's converter would drop it)."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _valid_id(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def envelope_problem(message: Any) -> str | None:
    """Why ``message`` is not a JSON-RPC 2.0 request, notification or response; None if it is."""
    if isinstance(message, list):
        return "batch messages are not supported"
    if not isinstance(message, dict):
        return "a message must be a JSON object"
    if message.get("jsonrpc") != "2.0":
        return 'a message must have "jsonrpc": "2.0"'
    if "id" in message and not _valid_id(message["id"]) and "method" in message:
        return "a request id must be a string or an integer"
    if "method" in message:
        if not isinstance(message["method"], str):
            return "method must be a string"
        return None
    if "error" in message and message.get("id") is None:
        return None  # the client could not read one of our requests
    if not ("result" in message or "error" in message) or not _valid_id(message.get("id")):
        return "neither a request, a notification nor a response"
    return None


class MemlspProtocol(LanguageServerProtocol):
    initialize_seen = False
    shutdown_seen = False
    exit_code: int | None = None  # set by `exit`: 0 after `shutdown`, else 1 (the LSP rule)

    def structure_message(self, data: dict[str, Any]) -> Any:
        return data  # json.loads's hook: the whole message is structured in handle_message

    def handle_message(self, message: Any) -> None:
        problem = envelope_problem(message)
        if problem is not None:
            found = message.get("id") if isinstance(message, dict) else None
            log.warning("invalid JSON-RPC message: %s", problem)
            self._send_data(
                error_response(found if _valid_id(found) else None, INVALID_REQUEST, problem)
            )
            return
        method = message.get("method")
        is_request = method is not None and "id" in message
        if method == UNREADABLE_METHOD:  # a frame framing.py could not pass on
            self._answer_unreadable(message.get("params"))
            return
        refusal = self._lifecycle_refusal(method)
        if refusal is not None:
            if is_request:
                self._send_data(error_response(message["id"], *refusal))
            else:
                log.warning("notification %s dropped: %s", method, refusal[1])
            return
        if "params" not in message and method is not None:
            message = {**message, "params": None}  # JSON-RPC allows omitting params; pygls not
        try:
            structured = super().structure_message(message)
        except JsonRpcException as exc:
            log.warning("message not handled: %s", exc.__cause__ or exc)
            if is_request:
                self._send_data(error_response(message["id"], exc.code, f"{exc.message}: {method}"))
            return
        if method == lsp.INITIALIZE:
            self.initialize_seen = True
        elif method == lsp.SHUTDOWN:
            self.shutdown_seen = True
        elif method == lsp.EXIT:
            self.exit_code = 0 if self.shutdown_seen else 1
            self._shutdown = self.shutdown_seen  # what pygls's own exit reads
        super().handle_message(structured)

    def _answer_unreadable(self, params: Any) -> None:
        """Any client may send this method too: it only ever gets its own error back."""
        if not isinstance(params, dict):
            return
        code, text, found = params.get("code"), params.get("message"), params.get("id")
        if isinstance(code, int) and isinstance(text, str):
            self._send_data(error_response(found if _valid_id(found) else None, code, text))

    def _lifecycle_refusal(self, method: str | None) -> tuple[int, str] | None:
        if method is None or method == lsp.EXIT:  # responses to our requests; exit at any time
            return None
        if self.shutdown_seen:
            return INVALID_REQUEST, f"server is shutting down: {method} refused"
        if method == lsp.INITIALIZE:
            return (INVALID_REQUEST, "server already initialized") if self.initialize_seen else None
        if not self.initialize_seen:
            return SERVER_NOT_INITIALIZED, f"server not initialized: {method} refused"
        return None

    def answered_unreadable(self, error: Exception) -> bool:
        """Handle an error of pygls's read loop; False when it is not one of ours."""
        if isinstance(error, json.JSONDecodeError | UnicodeDecodeError | RecursionError):
            log.warning("unreadable message: %s", error)
            self._send_data(error_response(None, JsonRpcParseError.CODE, f"Parse error: {error}"))
            return True
        if isinstance(error, JsonRpcException):  # answered (requests) or dropped (notifications)
            log.warning("message not handled: %s", error.__cause__ or error)
            return True
        return False
