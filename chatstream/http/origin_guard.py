"""`OriginGuard`: no other web site can make a visitor's browser post to this server.

A browser sends some cross-site requests without asking the server first (CORS "simple"
requests: a form post, or a `fetch` with a `text/plain` body), and sends them with the visitor's
cookies when SameSite allows. For a server on the visitor's own machine (127.0.0.1), that is
every web page the visitor opens. This pure ASGI middleware refuses, for every state-changing
method (POST, PUT, PATCH, DELETE):

- a request whose `Origin` is not this server's own (its host and port, as the `Host` header
  names them) nor one of the CORS origins the operator allowed: 403 `forbidden_origin`;
- a request without `Origin` that the browser marks as cross-site (`Sec-Fetch-Site`): 403;
- a body that is not JSON (`Content-Type` other than `application/json` or `...+json`) on a JSON
  route, i.e. every route but the login form: 415, so a cross-site page cannot send one without
  the CORS preflight that this server does not grant.

Requests from programs (no `Origin`, no `Sec-Fetch-Site`) pass: they carry no visitor's cookies.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_PATHS = frozenset({"/login", "/logout"})


class OriginGuard:
    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        origins = {origin.rstrip("/").lower() for origin in allowed_origins}
        self.any_origin = "*" in origins
        self.allowed_origins = frozenset(origins - {"*"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in UNSAFE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        refusal = self._origin_refusal(headers) or _content_type_refusal(scope.get("path", ""), headers)
        if refusal is not None:
            await _refuse(send, *refusal)
            return
        await self.app(scope, receive, send)

    def _origin_refusal(self, headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
        origin = headers.get(b"origin")
        if origin is None:
            site = headers.get(b"sec-fetch-site", b"").lower()
            if site in (b"cross-site", b"same-site"):
                return 403, "forbidden_origin", "a cross-site request may not change anything on this server"
            return None
        text = origin.decode("latin-1").rstrip("/").lower()
        if self.any_origin or text in self.allowed_origins:
            return None
        host = headers.get(b"host", b"").decode("latin-1").lower()
        netloc = urllib.parse.urlsplit(text).netloc if "://" in text else ""
        if host and netloc == host:
            return None
        return 403, "forbidden_origin", (f"requests from the origin {text[:100]!r} are not allowed "
                                         "(only this server's own pages and the configured CORS origins)")


def _content_type_refusal(path: str, headers: dict[bytes, bytes]) -> tuple[int, str, str] | None:
    if path in FORM_PATHS or not _has_body(headers):
        return None
    media_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
    if media_type == b"application/json" or (media_type.startswith(b"application/") and media_type.endswith(b"+json")):
        return None
    shown = media_type.decode("latin-1")[:60] or "none"
    return 415, "unsupported_media_type", f"the body must be JSON sent as Content-Type: application/json (got {shown})"


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    return b"transfer-encoding" in headers


async def _refuse(send: Send, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
