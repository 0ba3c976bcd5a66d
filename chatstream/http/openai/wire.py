"""What every OpenAI wire model shares: the error type and the base models.

`OpenAIError` is raised anywhere below a route and answered as
`{"error": {"message", "type", "param", "code"}}` with its HTTP status. Request bodies are parsed
by `RequestModel`s, which refuse unknown top-level fields as OpenAI does ("Unrecognized request
argument supplied"); nested objects (`WireModel`) ignore extra keys, as OpenAI does for e.g. a
message's `refusal` or a tool call's extras.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class OpenAIError(Exception):
    """An error answered in OpenAI's shape; `headers` go on the HTTP response (e.g. Retry-After)."""

    def __init__(self, status_code: int, message: str, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status_code, self.message, self.type, self.param, self.code = status_code, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class WireModel(BaseModel):
    """A nested object of a request: extra keys are ignored. strict: a JSON value must already have
    the field's type ("stream": "yes" is not true, false is not token 0, 1.5 is not an integer)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)


class RequestModel(BaseModel):
    """A request body: an unknown top-level field is a 400 naming it (see `chatstream.http.openai_routes`)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


def unsupported(field: str, why: str = "") -> OpenAIError:
    """The 400 for a known field this server cannot honour."""
    reason = f": {why}" if why else ""
    return OpenAIError(400, f"{field} is not supported by this server{reason}", param=field,
                       code="unsupported_parameter")
