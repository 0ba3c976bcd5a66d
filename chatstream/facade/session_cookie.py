"""`SessionMiddleware`: fastsession's `FastSessionMiddleware`, safe against any cookie a client sends.

fastsession verifies the signed `sid` cookie with itsdangerous but catches only a bad or expired
*timed* signature: a cookie with no signature at all (`sid=abc`) raises `BadSignature`, and a
validly signed value that is not `{"sid": "<id>"}` breaks later, so such a cookie answered 500 on
every route, `/health` included. Here every cookie that does not decode to a session id counts
as no cookie: the request gets a new session, exactly as an expired one does.
"""

from __future__ import annotations

from typing import Any

from fastsession import FastSessionMiddleware
from itsdangerous import BadData, URLSafeTimedSerializer


class _SessionIdSerializer:
    """fastsession's serializer contract (`encode(dict)`, `decode(token) -> (dict | None, error)`)."""

    def __init__(self, secret_key: str, max_age: int, cookie_name: str) -> None:
        self._signer = URLSafeTimedSerializer(secret_key)
        self._max_age = max_age or None
        self._cookie_name = cookie_name

    def encode(self, value: dict[str, Any]) -> str:
        return self._signer.dumps(value)

    def decode(self, token: str | None) -> tuple[dict[str, str] | None, str | None]:
        if token is None:
            return None, "NoTokenSpecified"
        try:
            value = self._signer.loads(token, max_age=self._max_age)
        except BadData as exc:  # bad, missing or expired signature; a payload that is not JSON
            return None, type(exc).__name__
        session_id = value.get(self._cookie_name) if isinstance(value, dict) else None
        if not isinstance(session_id, str):
            return None, "NotASessionId"
        return value, None


class SessionMiddleware(FastSessionMiddleware):
    def __init__(self, app: Any, secret_key: str, **options: Any) -> None:
        super().__init__(app, secret_key, **options)
        self.serializer = _SessionIdSerializer(secret_key, self.max_age, self.session_cookie_name)
