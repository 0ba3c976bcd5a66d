"""The conversation store's errors as HTTP answers (JSON, in the shape of the native API's errors).

| error | status | body `error` |
|---|---|---|
| `ValidationFailed` (`InvalidId`, `InvalidCursor`) | 400 | `invalid_request`, with `field` and `problems` |
| `NotFound` (unknown id, or another session's) | 404 | `not_found` |
| `NothingToRegenerate` | 400 | `invalid_request` (the original's "regenerate requested even though the prompt is empty") |
| `Conflict` (`TurnInProgress`, `ReplyClosed`) | 409 | `conflict` |
| `StoreUnavailable` | 503 | `store_unavailable`, with `Retry-After` |
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from chatstream.conversations import (
    Conflict, NotFound, NothingToRegenerate, StoreError, StoreUnavailable, ValidationFailed)
from chatstream.facade.request_handler import ChatRequestError

STORE_RETRY_AFTER_S = 5


def store_error_payload(exc: StoreError) -> tuple[int, dict[str, Any]]:
    if isinstance(exc, ValidationFailed):
        payload: dict[str, Any] = {"error": "invalid_request", "detail": str(exc),
                                   "problems": [{"field": p.field, "message": p.message} for p in exc.problems]}
        if exc.field is not None:
            payload["field"] = exc.field
        return 400, payload
    if isinstance(exc, NotFound):
        return 404, {"error": "not_found", "detail": str(exc)}
    if isinstance(exc, NothingToRegenerate):
        return 400, {"error": "invalid_request", "field": "regenerate",
                     "detail": "regenerate requested even though the prompt is empty"}
    if isinstance(exc, Conflict):
        return 409, {"error": "conflict", "detail": str(exc)}
    if isinstance(exc, StoreUnavailable):
        return 503, {"error": "store_unavailable", "detail": f"the conversation store is unavailable: {exc}"}
    return 500, {"error": "internal_server_error", "detail": "conversation store"}


def store_error_response(exc: StoreError) -> JSONResponse:
    status, payload = store_error_payload(exc)
    headers = {"Retry-After": str(STORE_RETRY_AFTER_S)} if status == 503 else None
    return JSONResponse(payload, status_code=status, headers=headers)


class StoreRequestError(ChatRequestError):
    """A /chat_stream request refused because of the store (its answer keeps the store's mapping)."""

    def __init__(self, exc: StoreError) -> None:
        status, payload = store_error_payload(exc)
        super().__init__(status, payload["error"], payload["detail"], payload.get("field"),
                         f"unknown_error_occurred,while {payload['detail']}")
        self.payload = payload
        self.retry_after = STORE_RETRY_AFTER_S if status == 503 else None

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after else None
        return JSONResponse(self.payload, status_code=self.status_code, headers=headers)
