"""`SessionCookieMiddleware`: the session cookie, holding only a signed session id.

A pure ASGI middleware. For each HTTP request it reads the cookie (`sid`), checks its signature
(itsdangerous' `TimestampSigner`, with the app's secret key) and puts a `StoreSession` on
`request.state.session`; the session record itself lives in the conversation store and is read
or created only by the routes that need it (`chatstream.facade.sessions`). A missing, unsigned,
tampered or malformed cookie is simply no session: never an error. `Set-Cookie` is sent only when
a route created the session, or renewed when a cookie older than a day named a session a route
used, so /health, /metrics, /v1 and static files never carry one.

Why not fastsession, which the original used: it creates and stores a session for every request
(every `/health` probe included), keeps sessions in one process's memory, and lets a bad cookie
signature crash the request. Starlette's own `SessionMiddleware` would put the session's data in
the cookie. The original's quick start, a user's own `FastSessionMiddleware`, still works: the
handlers then use its session id (see `bind_session`).

Agents that send `X-FastSession-Skip: skip` (the original's header) get no session.
"""

from __future__ import annotations

import logging
import secrets
import time
from http.cookies import SimpleCookie
from typing import Any

from itsdangerous import BadData, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatstream.conversations import StoreError
from chatstream.conversations.ids import check_session_id
from chatstream.conversations.errors import InvalidId
from chatstream.facade.sessions import StoreSession
from chatstream.facade.store_handle import StoreHandle

logger = logging.getLogger("chatstream")

COOKIE_NAME = "sid"
SKIP_SESSION_HEADER = ("x-fastsession-skip", "skip")
DEFAULT_MAX_AGE_S = 14 * 86400  # as long as a session is kept in the store by default
RENEW_AFTER_S = 86400
_SALT = "chatstream.session"


class SessionCookie:
    """Signs session ids into cookie values and reads them back."""

    def __init__(self, secret_key: str | bytes, *, name: str = COOKIE_NAME, secure: bool = False,
                 same_site: str | None = "lax", max_age: int = DEFAULT_MAX_AGE_S) -> None:
        if not secret_key:
            raise ValueError("the session secret key must not be empty")
        if same_site is not None and same_site.lower() not in ("lax", "strict", "none"):
            raise ValueError(f"same_site must be 'lax', 'strict', 'none' or None, got {same_site!r}")
        self.signer = TimestampSigner(secret_key, salt=_SALT)
        self.name = name
        self.secure = secure
        self.same_site = same_site
        self.max_age = max_age

    def read(self, value: str | None) -> tuple[str | None, float]:
        """(the session id, the cookie's age in seconds); (None, 0) for anything not ours."""
        if not value:
            return None, 0.0
        try:
            raw, signed_at = self.signer.unsign(value, return_timestamp=True)
            session_id = check_session_id(raw.decode("ascii"))
        except (BadData, InvalidId, UnicodeDecodeError, ValueError):
            return None, 0.0
        return session_id, max(0.0, time.time() - signed_at.timestamp())

    def header(self, session_id: str) -> str:
        """The Set-Cookie header value for `session_id`."""
        cookie: SimpleCookie = SimpleCookie()
        cookie[self.name] = self.signer.sign(session_id).decode("ascii")
        morsel = cookie[self.name]
        morsel["path"] = "/"
        morsel["httponly"] = True
        if self.secure:
            morsel["secure"] = True
        if self.same_site:
            morsel["samesite"] = self.same_site
        if self.max_age > 0:
            morsel["max-age"] = self.max_age
        return morsel.OutputString()


class SessionCookieMiddleware:
    def __init__(self, app: ASGIApp, stores: StoreHandle, secret_key: str | bytes | None = None,
                 **cookie_options: Any) -> None:
        self.app = app
        self.stores = stores
        self.cookie = SessionCookie(secret_key or secrets.token_urlsafe(32), **cookie_options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _skips_session(scope):
            await self.app(scope, receive, send)
            return
        session_id, age = self.cookie.read(_cookie_value(scope, self.cookie.name))
        session = StoreSession(self.stores, session_id, cookie_is_old=age > RENEW_AFTER_S)
        scope.setdefault("state", {})["session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                await _flush(session)
                if session.cookie_needed:
                    MutableHeaders(scope=message).append("set-cookie", self.cookie.header(session.get_session_id()))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


async def _flush(session: StoreSession) -> None:
    try:
        await session.flush()
    except StoreError as exc:  # the route answered already; the change is lost, the answer is not
        logger.warning("session changes could not be saved: %s", exc)


def _skips_session(scope: Scope) -> bool:
    name, value = SKIP_SESSION_HEADER
    for key, raw in scope.get("headers", ()):
        if key.decode("latin-1").lower() == name and raw.decode("latin-1") == value:
            return True
    return False


def _cookie_value(scope: Scope, name: str) -> str | None:
    for key, raw in scope.get("headers", ()):
        if key.lower() == b"cookie":
            value = cookie_parser(raw.decode("latin-1")).get(name)  # lenient: bad pairs are skipped
            if value is not None:
                return value
    return None
