"""One API key for the whole server: `--api-key` (or `CHATSTREAM_API_KEY`).

`ApiKeyAuth` is a pure ASGI middleware that lets a request through only with the key, on every
route that generates, changes settings or shows data: /chat_stream and the other default APIs,
the web page and its files, /v1/*, /conversations*, /metrics, /docs and /openapi.json. Open are
`/health` (load balancers need no key) and the login page.

A request proves it has the key in one of two ways:

- **`Authorization: Bearer KEY`** (the OpenAI clients' way; agents and scripts), compared in
  constant time.
- **The login cookie** (browsers): `GET /login` is a small form; posting the right key to
  `POST /login` sets `chatstream_auth`, an HttpOnly, `SameSite=Strict` cookie holding a value
  signed with a secret derived from the key (so it survives restarts, and every cookie stops
  working when the key changes), valid `COOKIE_MAX_AGE_SEC`. `POST /logout` removes it. The page
  needs no change: a browser without the cookie that asks for a page is sent to the login form
  (303), and an API call without it is a 401, on which the page goes to the login form.

A refused request is a 401 JSON error (OpenAI's shape under /v1) with `WWW-Authenticate:
Bearer`. Cross-site requests that would ride on the cookie are stopped before they get here by
`chatstream.http.origin_guard`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
import urllib.parse

from itsdangerous import BadData, URLSafeTimedSerializer
from starlette.types import ASGIApp, Receive, Scope, Send

AUTH_COOKIE = "chatstream_auth"
COOKIE_MAX_AGE_SEC = 7 * 24 * 3600
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
OPEN_PATHS = frozenset({"/health", LOGIN_PATH})
AUTHENTICATED_SCOPE_KEY = "chatstream.authenticated"  # set on requests this middleware let through
MAX_LOGIN_BODY_BYTES = 16 * 1024


def key_matches(given: str, key: str) -> bool:
    # compare_digest takes as long for a near miss as for a far one, so timing reveals nothing.
    return secrets.compare_digest(given.encode("utf-8", "surrogatepass"), key.encode("utf-8", "surrogatepass"))


def bearer_token(headers: dict[bytes, bytes]) -> str | None:
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, api_key: str) -> None:
        if not api_key:
            raise ValueError("api_key must not be empty")
        self.app = app
        self.api_key = api_key
        # The signing secret depends on the key alone: cookies outlive a restart, not a key change.
        secret = hmac.new(api_key.encode("utf-8", "surrogatepass"), b"chatstream login cookie",
                          hashlib.sha256).hexdigest()
        self._signer = URLSafeTimedSerializer(secret, salt="chatstream-auth")

    # -- the cookie ------------------------------------------------------------------------------
    def cookie_value(self) -> str:
        return self._signer.dumps({"auth": 1})

    def cookie_valid(self, value: str) -> bool:
        try:
            return self._signer.loads(value, max_age=COOKIE_MAX_AGE_SEC) == {"auth": 1}
        except BadData:
            return False

    def authenticated(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers", ()))
        token = bearer_token(headers)
        if token is not None:
            return key_matches(token, self.api_key)
        cookie = _cookies(headers).get(AUTH_COOKIE)
        return cookie is not None and self.cookie_valid(cookie)

    # -- ASGI ------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope.get("method", "GET")
        if path == LOGIN_PATH:
            await self._login(scope, receive, send)
            return
        if path == LOGOUT_PATH and method == "POST":
            await _redirect(send, LOGIN_PATH, cookie=f"{AUTH_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
            return
        if self.authenticated(scope):
            scope[AUTHENTICATED_SCOPE_KEY] = True
            await self.app(scope, receive, send)
            return
        if path in OPEN_PATHS or method == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if method == "GET" and _wants_html(scope):
            await _redirect(send, f"{LOGIN_PATH}?next={urllib.parse.quote(path)}")
            return
        await _unauthorized(send, path)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if scope.get("method") != "POST":
            await _html(send, 200, login_page(_safe_next(query.get("next", ["/"])[0]), None))
            return
        form = await _read_form(receive)
        next_path = _safe_next(form.get("next", query.get("next", ["/"]))[0])
        given = form.get("api_key", [""])[0]
        if not given or not key_matches(given, self.api_key):
            await _html(send, 401, login_page(next_path, "That key is not right."))
            return
        secure = "; Secure" if scope.get("scheme") == "https" else ""
        cookie = (f"{AUTH_COOKIE}={self.cookie_value()}; Path=/; Max-Age={COOKIE_MAX_AGE_SEC}; HttpOnly; "
                  f"SameSite=Strict{secure}")
        await _redirect(send, next_path, cookie=cookie)


def _cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies.setdefault(name, value)
    return cookies


def _wants_html(scope: Scope) -> bool:
    accept = dict(scope.get("headers", ())).get(b"accept", b"")
    return b"text/html" in accept


def _safe_next(path: str) -> str:
    """Only a path on this server: never `//host` or `scheme:`, so the login cannot redirect away."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or any(ord(c) < 32 for c in path):
        return "/"
    return path


async def _read_form(receive: Receive) -> dict[str, list[str]]:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > MAX_LOGIN_BODY_BYTES:
            return {}
        if not message.get("more_body", False):
            break
    return urllib.parse.parse_qs(body.decode("utf-8", "replace"))


async def _unauthorized(send: Send, path: str) -> None:
    message = "an API key is required: send `Authorization: Bearer <key>`, or log in at /login"
    if path.startswith("/v1/") or path == "/v1":
        payload: dict[str, object] = {"error": {"message": message, "type": "invalid_request_error",
                                                "param": None, "code": "invalid_api_key"}}
    else:
        payload = {"error": "unauthorized", "detail": message}
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": 401,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"www-authenticate", b"Bearer")]})
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, cookie: str | None = None) -> None:
    headers = [(b"location", location.encode("latin-1", "replace")), (b"content-length", b"0"),
               (b"cache-control", b"no-store")]
    if cookie is not None:
        headers.append((b"set-cookie", cookie.encode("latin-1")))
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


async def _html(send: Send, status: int, page: str) -> None:
    body = page.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"cache-control", b"no-store"), (b"x-frame-options", b"DENY"),
                            (b"content-security-policy",
                             b"default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                             b"frame-ancestors 'none'")]})
    await send({"type": "http.response.body", "body": body})


def login_page(next_path: str, error: str | None) -> str:
    """The login form: one password field, posted to /login with the page to go back to."""
    error_html = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ChatStream · log in</title>
<style>
body {{ font-family: system-ui, sans-serif; display: grid; place-items: center; min-height: 100vh; margin: 0;
       background: #f4f5f7; color: #1d1f23; }}
form {{ background: #fff; padding: 2rem; border-radius: 12px; box-shadow: 0 2px 12px rgba(0,0,0,.08);
       display: grid; gap: .75rem; width: min(22rem, 90vw); }}
h1 {{ font-size: 1.25rem; margin: 0 0 .5rem; }}
input {{ font: inherit; padding: .6rem; border: 1px solid #b8bcc4; border-radius: 8px; }}
button {{ font: inherit; padding: .6rem; border: 0; border-radius: 8px; background: #2456d6; color: #fff; }}
.error {{ color: #b3261e; margin: 0; }}
</style></head>
<body><form method="post" action="{LOGIN_PATH}">
<h1>ChatStream</h1>
<label for="api_key">This server needs its API key</label>
<input id="api_key" name="api_key" type="password" autocomplete="current-password" required autofocus>
<input type="hidden" name="next" value="{html.escape(next_path)}">
{error_html}
<button type="submit">Log in</button>
</form></body></html>
"""
