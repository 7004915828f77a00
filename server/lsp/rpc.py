"""JSON-RPC edge cases pygls 2.1.1 leaves unanswered.

A request whose params do not fit the method's lsprotocol type fails while pygls structures it,
before it is dispatched, so no response is ever sent and the client waits forever; so does a
request to a method without an lsprotocol type (``memlsp/status``) that omits params, which
JSON-RPC allows. A frame that is not JSON is only logged. JSON-RPC wants an error response
(InvalidParams with the request's id; ParseError with id null). pygls's default for these is a
window/showMessage popup "Error in server" in the user's editor; a log line is enough once the
client got its answer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pygls.exceptions import JsonRpcException, JsonRpcParseError
from pygls.protocol import LanguageServerProtocol

log = logging.getLogger(__name__)


def error_response(request_id: Any, code: int, message: str) -> dict[str, Any]:
    """A plain dict, so that a null id is written out (lsprotocol's converter would drop it)."""
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


class MemlspProtocol(LanguageServerProtocol):
    def structure_message(self, data: dict[str, Any]) -> Any:
        if "method" in data and "params" not in data and "jsonrpc" in data:
            data = {**data, "params": None}  # JSON-RPC allows omitting params; pygls does not
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            method = data.get("method")
            if method is not None and "id" in data:  # a request: it must get an answer
                self._send_data(error_response(data["id"], exc.code, f"{exc.message}: {method}"))
            raise

    def answered_unreadable(self, error: Exception) -> bool:
        """Handle an error of pygls's read loop; False when it is not one of ours."""
        if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
            log.warning("unreadable message: %s", error)
            self._send_data(error_response(None, JsonRpcParseError.CODE, f"Parse error: {error}"))
            return True
        if isinstance(error, JsonRpcException):  # answered (requests) or dropped (notifications)
            log.warning("message not handled: %s", error.__cause__ or error)
            return True
        return False
